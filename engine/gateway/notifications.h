// WS /api/v1/notifications: events for the authenticated user's jobs, as JSON text messages.
//
// On connect the server sends {"type":"ready","user":"..."}; from then on every event of that
// user's jobs arrives: {"type":"video_generation_complete","jobId",...,"urls":{...}} and
// {"type":"video_generation_failed","jobId","reason"}. A client may send {"type":"ping"} and
// gets {"type":"pong"}. Events are not replayed: a client that was away reads
// GET /api/v1/media/jobs/{id}.
//
// Threading: on_open/on_message/on_close run on the server's service thread; publish() from any
// thread. Lock order: `mutex_`, then the server's mailbox.
#pragma once

#include "http_server.h"

#include <nlohmann/json.hpp>

#include <map>
#include <mutex>
#include <set>
#include <string>

namespace gemstream::gateway {

class NotificationHub final : public WsEndpoint {
public:
  explicit NotificationHub(Server &server) : server_(server) {}

  // Sends the event to every open notification connection of `user`; returns how many.
  std::size_t publish(const std::string &user, const nlohmann::json &event);

  void on_open(const WsSession &session) override;
  void on_message(const WsSession &session, std::string_view data, bool binary) override;
  void on_close(const WsSession &session) override;

private:
  Server &server_;
  std::mutex mutex_;
  std::map<std::string, std::set<std::uint64_t>> subscribers_;
};

} // namespace gemstream::gateway
