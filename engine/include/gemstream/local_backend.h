// The local backend: a loopback server speaking the Gemini wire protocols (REST, and the Live API
// WebSocket on the same port), producing real PNGs, MP4s and speech, with fault injection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#if defined(__GNUC__)
#define GEMSTREAM_BACKEND_API __attribute__((visibility("default")))
#else
#define GEMSTREAM_BACKEND_API
#endif

namespace gemstream {

struct LocalBackendOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 = ephemeral
  // When non-empty, requests must carry this key (header x-goog-api-key or ?key=): a missing key
  // is 403 PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT with reason API_KEY_INVALID, as
  // the real service answers. When empty, any key (or none) is accepted.
  std::string required_api_key;
  // A Veo operation reports done on this poll (1 = the first GET already sees done).
  int polls_until_done = 2;
  // Larger request bodies are answered 400 INVALID_ARGUMENT "Request payload size exceeds the
  // limit: N bytes." (the real service's answer) without reading them.
  std::uint64_t max_request_bytes = 64ull << 20;

  // Live API (WebSocket, same port). A connection receives goAway this long after it opened, as
  // the real service does after about 10 minutes...
  std::chrono::milliseconds live_go_away_after = std::chrono::minutes(10);
  // ...and is closed (code 1000) this long after the goAway, which announces it as timeLeft.
  std::chrono::milliseconds live_go_away_time_left = std::chrono::seconds(50);
  // Directory holding config/agent_capabilities.json (the functions the Live stand-in model
  // calls). Empty: $GEMSTREAM_DATA_DIR, else the source tree, else the installed data directory.
  std::string data_dir;
};

// A malformed Live server message, for fault injection.
enum class LiveMalformed {
  InvalidJson,  // a truncated JSON document
  WrongTypes,   // valid JSON with known fields of the wrong types
};

// Input audio of one Live API connection, for tests of loss-free reconnection.
struct LiveAudioCount {
  // realtimeInput audio received on this connection: decoded bytes, as sent (before any
  // resampling).
  std::uint64_t received_bytes = 0;
  // The conversation's input audio before this connection: what the session resumption handle
  // of its setup carried (0 for a new session). A handle carries the audio its session had
  // received when the handle was issued.
  std::uint64_t resumed_bytes = 0;
  bool open = true;  // the connection is still open
};

// One recorded request, for tests (headers lower-cased). Live API WebSocket upgrades are
// recorded too, as GET with status 101.
struct RecordedRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int status = 0;     // what the backend answered
};

class GEMSTREAM_BACKEND_API LocalBackend {
public:
  explicit LocalBackend(LocalBackendOptions options = {});
  ~LocalBackend();  // stops
  LocalBackend(const LocalBackend &) = delete;
  LocalBackend &operator=(const LocalBackend &) = delete;

  // Binds and starts the service thread. Throws std::runtime_error if it cannot bind.
  void start();
  void stop();
  std::uint16_t port() const;
  std::string base_url() const;  // "http://127.0.0.1:PORT"

  // Fault injection (thread-safe; also reachable over HTTP at POST /_backend/faults, see .cc).
  // Fail the next `count` API requests with `http_status` (google.rpc body). A positive
  // retry_after adds a Retry-After header and a RetryInfo detail.
  void fail_next(int count, int http_status, std::chrono::seconds retry_after = std::chrono::seconds(0));
  // Delay every answer by this much (never blocks the service thread).
  void set_latency(std::chrono::milliseconds latency);
  // The next video download sends this many bytes, then drops the connection.
  void drop_next_download_after(std::uint64_t bytes);
  void set_polls_until_done(int polls);

  // Live API faults (thread-safe; also under "live" in POST /_backend/faults).
  // The next model turn of any session stops after `chunks` model chunks (audio, or text parts)
  // and its socket is dropped without a close frame: the client sees 1006.
  void drop_live_after_chunks(int chunks);
  // One malformed message is sent before the next server message of any set-up session.
  void send_malformed_live_message(LiveMalformed kind = LiveMalformed::InvalidJson);
  // The next Live setup is answered by closing with this code and reason.
  void fail_next_live_setup(int code, std::string reason);
  // Closes every open Live session now with this code and reason. Code 1006, which no close
  // frame may carry, drops the connections without a close frame, as a network failure does.
  void close_live_sessions(int code, std::string reason);
  // goAway timing (see LocalBackendOptions) for new connections and those still waiting for it.
  void set_live_go_away(std::chrono::milliseconds after, std::chrono::milliseconds time_left);
  // Live WebSocket connections currently open.
  std::size_t live_session_count() const;
  // Input audio of the latest Live connections (up to 256), in the order they opened. The
  // input audio of a conversation as the backend holds it is resumed_bytes + received_bytes of
  // its latest connection: equal to what the client was given to send when reconnections lost
  // nothing and resent nothing twice.
  std::vector<LiveAudioCount> live_audio() const;

  std::vector<RecordedRequest> requests() const;
  void clear_requests();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream
