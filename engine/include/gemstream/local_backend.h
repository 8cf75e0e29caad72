// The local backend: a loopback server speaking the Gemini wire protocols (REST now, Live
// WebSocket on the same port later), producing real PNGs and MP4s, with fault injection.
#pragma once

#include <chrono>
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
};

// One recorded request, for tests (headers lower-cased).
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

  std::vector<RecordedRequest> requests() const;
  void clear_requests();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream
