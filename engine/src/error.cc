#include "gemstream/error.h"

#include <string_view>
#include <utility>

namespace gemstream {
namespace {

// what() is read by people in logs and GStreamer debug output: keep it on one line even when
// the service's message spans several.
void append_one_line(std::string &out, std::string_view text) {
  bool pending_space = false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      pending_space = true;
      continue;
    }
    if (pending_space && !out.empty() && out.back() != ' ')
      out += ' ';
    pending_space = false;
    out += c;
  }
}

std::string format_delay(std::chrono::milliseconds delay) {
  const auto ms = delay.count();
  if (ms % 1000 == 0)
    return std::to_string(ms / 1000) + "s";
  std::string frac = std::to_string(ms % 1000);
  frac.insert(0, 3 - frac.size(), '0');
  while (frac.back() == '0')
    frac.pop_back();
  return std::to_string(ms / 1000) + "." + frac + "s";
}

} // namespace

const char *to_string(ErrorKind kind) noexcept {
  switch (kind) {
  case ErrorKind::InvalidArgument: return "InvalidArgument";
  case ErrorKind::Unauthenticated: return "Unauthenticated";
  case ErrorKind::PermissionDenied: return "PermissionDenied";
  case ErrorKind::NotFound: return "NotFound";
  case ErrorKind::ResourceExhausted: return "ResourceExhausted";
  case ErrorKind::Internal: return "Internal";
  case ErrorKind::Unavailable: return "Unavailable";
  case ErrorKind::DeadlineExceeded: return "DeadlineExceeded";
  case ErrorKind::Network: return "Network";
  case ErrorKind::Timeout: return "Timeout";
  case ErrorKind::Cancelled: return "Cancelled";
  case ErrorKind::Protocol: return "Protocol";
  case ErrorKind::SafetyFiltered: return "SafetyFiltered";
  case ErrorKind::Config: return "Config";
  case ErrorKind::Io: return "Io";
  case ErrorKind::TooLarge: return "TooLarge";
  case ErrorKind::BudgetExceeded: return "BudgetExceeded";
  }
  return "Unknown";
}

Error::Error(ErrorKind kind, std::string message)
    : std::runtime_error(std::string()), kind_(kind), message_(std::move(message)) {
  refresh_what();
}

Error &Error::with_http(int http_status, std::string status, std::string path) {
  http_status_ = http_status;
  status_ = std::move(status);
  path_ = std::move(path);
  refresh_what();
  return *this;
}

Error &Error::with_retry_after(std::chrono::milliseconds delay) {
  retry_after_ = delay;
  refresh_what();
  return *this;
}

Error &Error::with_reason(std::string reason) {
  reason_ = std::move(reason);
  refresh_what();
  return *this;
}

bool Error::retryable() const noexcept {
  switch (kind_) {
  case ErrorKind::ResourceExhausted:
  case ErrorKind::Internal:
  case ErrorKind::Unavailable:
  case ErrorKind::DeadlineExceeded:
  case ErrorKind::Network: return true;
  default: return false;
  }
}

// std::runtime_error keeps its text in a reference-counted string that copies share, so the
// text is rebuilt by assigning a fresh base whenever a builder changes what it shows.
void Error::refresh_what() {
  std::string text;
  if (http_status_ != 0) {
    text = "HTTP " + std::to_string(http_status_);
    if (!status_.empty())
      text += " " + status_;
    if (!reason_.empty())
      text += " (" + reason_ + ")";
    if (!path_.empty())
      text += " on " + path_;
    text += ": ";
  }
  append_one_line(text, message_.empty() ? std::string_view(to_string(kind_)) : message_);
  if (retry_after_)
    text += " (retry after " + format_delay(*retry_after_) + ")";
  static_cast<std::runtime_error &>(*this) = std::runtime_error(text);
}

ErrorKind error_kind_from_http(int http_status, const std::string &rpc_status,
                               const std::string &reason) {
  // Google reports a bad or expired key as 400 INVALID_ARGUMENT with ErrorInfo reason
  // API_KEY_INVALID; callers act on it like a 401.
  if (reason == "API_KEY_INVALID" &&
      (http_status == 0 || (http_status >= 400 && http_status < 500)))
    return ErrorKind::Unauthenticated;

  switch (http_status) {
  case 400: return ErrorKind::InvalidArgument;
  case 401: return ErrorKind::Unauthenticated;
  case 403: return ErrorKind::PermissionDenied;
  case 404: return ErrorKind::NotFound;
  case 413: return ErrorKind::TooLarge;
  case 429: return ErrorKind::ResourceExhausted;
  case 500: return ErrorKind::Internal;
  case 503: return ErrorKind::Unavailable;
  case 504: return ErrorKind::DeadlineExceeded;
  default: break;
  }
  if (http_status >= 400 && http_status < 500)
    return ErrorKind::InvalidArgument;
  if (http_status >= 500 && http_status < 600)
    return ErrorKind::Internal;

  // No usable HTTP status (e.g. the error of a finished long-running operation, which carries
  // a google.rpc code instead): go by the status name.
  static constexpr std::pair<std::string_view, ErrorKind> kByRpcStatus[] = {
      {"INVALID_ARGUMENT", ErrorKind::InvalidArgument},
      {"FAILED_PRECONDITION", ErrorKind::InvalidArgument},
      {"OUT_OF_RANGE", ErrorKind::InvalidArgument},
      {"UNAUTHENTICATED", ErrorKind::Unauthenticated},
      {"PERMISSION_DENIED", ErrorKind::PermissionDenied},
      {"NOT_FOUND", ErrorKind::NotFound},
      {"RESOURCE_EXHAUSTED", ErrorKind::ResourceExhausted},
      {"INTERNAL", ErrorKind::Internal},
      {"UNKNOWN", ErrorKind::Internal},
      {"DATA_LOSS", ErrorKind::Internal},
      {"UNAVAILABLE", ErrorKind::Unavailable},
      {"DEADLINE_EXCEEDED", ErrorKind::DeadlineExceeded},
      {"CANCELLED", ErrorKind::Cancelled},
  };
  for (const auto &[name, kind] : kByRpcStatus) {
    if (rpc_status == name)
      return kind;
  }
  return http_status == 0 ? ErrorKind::Internal : ErrorKind::Protocol;
}

} // namespace gemstream
