// A scripted loopback WebSocket server for Live client tests: libwebsockets in server role on
// 127.0.0.1 (ephemeral port), serviced by its own thread. It records everything each client
// sends and does what the test tells it to, in order: send frames (binary, pretty-printed JSON
// like the real service; optionally fragmented), close with a status, or drop the TCP
// connection without a close frame.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gemstream::testing {

struct WsMessage {
  std::string data;
  bool binary = false;
  int frames = 1; // WebSocket frames the message arrived in
};

// One client connection as the server saw it.
struct WsConnection {
  int id = 0;                         // 0-based, in order of the upgrades
  std::string path;                   // request path, without the query
  std::string query;                  // "" when there is none
  std::optional<std::string> api_key; // the x-goog-api-key header, if sent
  std::vector<WsMessage> received;
  // What happened, in order: "rx <payload>" for each message received, "tx <payload>" once a
  // message was fully written, "close <code>" / "drop" when the server ended the connection.
  std::vector<std::string> events;
  bool open = true;
  std::optional<int> client_close_code; // status in the client's close frame (1005: none)

  // The decoded JSON messages received (non-JSON ones are skipped).
  std::vector<nlohmann::json> json_messages() const;
};

class WsTestServer {
public:
  struct Options {
    // Answer every {"setup":...} with {"setupComplete":{}} at once (binary, pretty-printed).
    bool auto_setup_complete = true;
    std::string session_id; // sessionId in the automatic setupComplete, when non-empty
  };
  // Called on the server thread for every complete message, after the automatic answers.
  using Handler =
      std::function<void(WsTestServer &server, int connection, const std::string &message)>;

  WsTestServer();
  explicit WsTestServer(Options options);
  ~WsTestServer();
  WsTestServer(const WsTestServer &) = delete;
  WsTestServer &operator=(const WsTestServer &) = delete;

  std::uint16_t port() const;
  std::string base_url() const; // "http://127.0.0.1:PORT"

  void set_handler(Handler handler);
  void set_auto_setup_complete(bool enabled);

  // Thread-safe (also from the handler); carried out on the server thread in call order.
  void send(int connection, std::string payload, bool binary = true, int frames = 1);
  // Pretty-printed with a trailing newline in a binary frame, as the real service sends.
  void send_json(int connection, const nlohmann::json &message, int frames = 1);
  void close(int connection, int code, std::string reason);
  void drop(int connection); // no close frame: the client sees 1006

  std::vector<WsConnection> connections() const;
  std::size_t connection_count() const;
  // Waits until `pred` holds for the recorded connections; false on timeout.
  bool wait_for(const std::function<bool(const std::vector<WsConnection> &)> &pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream::testing
