// Typed engine errors. Every failure the engine reports is a gemstream::Error.
#pragma once

#include "gemstream/export.h"

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

namespace gemstream {

// What went wrong, at the level a caller acts on. Service statuses map 1:1 to the
// google.rpc codes the API returns; the rest are client-side.
enum class ErrorKind {
  InvalidArgument,     // 400 INVALID_ARGUMENT / FAILED_PRECONDITION
  Unauthenticated,     // 401, or 400 with reason API_KEY_INVALID (a bad key)
  PermissionDenied,    // 403
  NotFound,            // 404 (unknown model, operation or file)
  ResourceExhausted,   // 429 (quota / rate limit)
  Internal,            // 500
  Unavailable,         // 503
  DeadlineExceeded,    // 504
  Network,             // connection refused/reset, DNS, TLS
  Timeout,             // a client-side deadline ran out (request or operation)
  Cancelled,           // the caller cancelled
  Protocol,            // the server answered something we cannot decode
  SafetyFiltered,      // the service refused to produce the media (safety / RAI)
  Config,              // bad configuration file or value
  Io,                  // local file I/O
  TooLarge,            // a body or download exceeded its size limit
  BudgetExceeded,      // refused before any request: the user's daily budget would be exceeded
};

GEMSTREAM_API const char *to_string(ErrorKind kind) noexcept;

class GEMSTREAM_API Error : public std::runtime_error {
public:
  Error(ErrorKind kind, std::string message);

  ErrorKind kind() const noexcept { return kind_; }
  // The human message (the service's "message" field for API errors). Never holds a secret.
  const std::string &message() const noexcept { return message_; }

  // API errors: HTTP status, google.rpc status name ("INVALID_ARGUMENT"), request path
  // (no host, no query), and the server's requested delay before a retry.
  int http_status() const noexcept { return http_status_; }
  const std::string &status() const noexcept { return status_; }
  const std::string &path() const noexcept { return path_; }
  std::optional<std::chrono::milliseconds> retry_after() const noexcept { return retry_after_; }
  // For API errors: the google.rpc.ErrorInfo reason, e.g. "API_KEY_INVALID".
  const std::string &reason() const noexcept { return reason_; }

  Error &with_http(int http_status, std::string status, std::string path);
  Error &with_retry_after(std::chrono::milliseconds delay);
  Error &with_reason(std::string reason);

  // True for the kinds worth retrying: 429, 500, 503, 504 and network failures.
  bool retryable() const noexcept;

private:
  void refresh_what();

  ErrorKind kind_;
  std::string message_;
  int http_status_ = 0;
  std::string status_;
  std::string path_;
  std::string reason_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

// Maps an HTTP status (and google.rpc status string, may be empty) to an ErrorKind.
GEMSTREAM_API ErrorKind error_kind_from_http(int http_status, const std::string &rpc_status,
                               const std::string &reason = {});

} // namespace gemstream
