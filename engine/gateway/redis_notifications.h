// Notifications between gateways sharing a Redis job store: a job may finish on any gateway,
// its owner's sockets may be on any other. Each gateway delivers its own events to its local
// sockets at once and publishes them on PREFIX "notifications:" DB (pub/sub channels are
// server-wide, not per database, so the name carries the database number); a thread of its
// own subscribes to that channel and delivers the events of the other gateways, skipping the
// ones tagged with its own origin. Like the WebSocket itself this is at most once: an event
// published while a subscriber reconnects is lost to it (clients read the job on reconnect).
//
// Threading: publish() from any thread (one command at a time on the publishing connection);
// `deliver` and `log` are called on the subscriber thread and on publish()'s caller.
#pragma once

#include "redis_connection.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace gemstream::gateway {

class RedisNotificationBus {
public:
  using Deliver = std::function<void(const std::string &owner, const nlohmann::json &event)>;
  using Log = std::function<void(const std::string &line)>;

  // `origin` identifies this gateway (its worker id). Throws Error(Config) on a bad URL; does
  // not connect until start() / publish().
  RedisNotificationBus(const std::string &url, const std::string &prefix, std::string origin,
                       Deliver deliver, Log log);
  ~RedisNotificationBus();
  RedisNotificationBus(const RedisNotificationBus &) = delete;
  RedisNotificationBus &operator=(const RedisNotificationBus &) = delete;

  // Starts the subscriber thread; it reconnects with backoff until stop().
  void start();
  // Wakes the subscriber and joins it; returns promptly even while Redis is unreachable.
  void stop();

  // Publishes the event for the other gateways; a failure is logged, not thrown (the local
  // sockets already have the event).
  void publish(const std::string &owner, const nlohmann::json &event);

  const std::string &channel() const noexcept { return channel_; }

private:
  void run();
  // One subscribed session, until stop() or a connection error (thrown as Error(Io)).
  void listen();
  void handle(const redisReply &reply);
  // Sleeps up to `ms` milliseconds; false when stop() was called.
  bool wait(int ms);
  RedisContextPtr connect(const char *purpose) const;

  RedisUrl url_;
  std::string channel_;
  std::string origin_;
  Deliver deliver_;
  Log log_;
  int wake_fd_ = -1; // eventfd, written by stop(); polled by the subscriber
  std::atomic<bool> stopping_{false};
  int backoff_ms_ = 0; // subscriber thread only
  bool failing_ = false; // subscriber thread only: the last attempt failed (logged once)
  std::thread thread_;
  std::mutex publish_mutex_;
  RedisContextPtr publisher_; // guarded by publish_mutex_
};

} // namespace gemstream::gateway
