// HTTP client on libcurl with cancellation, timeouts and retries.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/error.h"
#include "gemstream/export.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gemstream {

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // never contains a secret
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Whole-request deadline (connect + transfer). Zero = no deadline.
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(15)};
  bool follow_redirects = false;
  // When set, a 2xx body is streamed to this file (written to "<path>.part", renamed on success).
  std::string download_path;
  // Limit for the response body, in memory or on disk. Exceeding it is Error(TooLarge).
  std::uint64_t max_body_bytes = 64ull << 20;
  // Progress callback for downloads: (bytes so far, total or 0 if unknown).
  std::function<void(std::uint64_t, std::uint64_t)> on_progress;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased, last value wins
  std::string body;                            // empty when streamed to a file
  std::uint64_t body_bytes = 0;
  std::string effective_url;                   // after redirects
};

struct RetryPolicy {
  int max_attempts = 5;  // including the first
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{32000};
  double multiplier = 2.0;
  double jitter = 0.2;  // +- fraction of each delay
};

// Called before each retry: (attempt number starting at 2, the error, the delay chosen).
using RetryObserver = std::function<void(int, const Error &, std::chrono::milliseconds)>;

class GEMSTREAM_API HttpClient {
public:
  // The key is sent as the x-goog-api-key header on every request, and nowhere else.
  explicit HttpClient(std::string api_key = {});
  ~HttpClient();
  HttpClient(const HttpClient &) = delete;
  HttpClient &operator=(const HttpClient &) = delete;

  // One attempt. Returns any HTTP status; throws Error(Network/Timeout/Cancelled/TooLarge/Io).
  // Cancellation takes effect within milliseconds (curl_multi_wakeup).
  HttpResponse perform(const HttpRequest &req, const CancelToken &cancel);

  // perform() plus: non-2xx decoded into Error (google.rpc body), retried per policy on
  // 429/500/503/504 and network failures with exponential backoff and jitter, honouring
  // Retry-After and RetryInfo.retryDelay. Returns only 2xx responses.
  HttpResponse request(const HttpRequest &req, const RetryPolicy &policy, const CancelToken &cancel,
                       const RetryObserver &on_retry = {});

private:
  std::string api_key_;
};

// Decodes a non-2xx response into an Error: {"error":{"code","message","status","details"}}
// (falls back to the HTTP reason when the body is not JSON). `path` is the request path.
GEMSTREAM_API Error decode_http_error(const HttpResponse &resp, const std::string &path);

// Parses "17s", "1.5s" (google.protobuf.Duration JSON) to milliseconds; nullopt if malformed.
GEMSTREAM_API std::optional<std::chrono::milliseconds> parse_duration(const std::string &s);

// Parses a Retry-After header value: delay-seconds ("120") or an HTTP-date (a past date gives
// zero); nullopt if malformed.
GEMSTREAM_API std::optional<std::chrono::milliseconds> parse_retry_after(const std::string &value);

// Returns the path of a URL (no scheme, host or query): for error messages and logs.
GEMSTREAM_API std::string url_path(const std::string &url);

} // namespace gemstream
