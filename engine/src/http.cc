#include "gemstream/http.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <system_error>

namespace gemstream {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Error bodies are kept only to decode the google.rpc status; anything beyond this is noise.
constexpr std::size_t kMaxErrorBodyBytes = 1u << 20;
constexpr int kMaxRedirects = 10;
// Upper bound of one curl_multi_poll(); curl shortens it to its own timers, and cancellation
// interrupts it through curl_multi_wakeup().
constexpr int kPollIntervalMs = 1000;
constexpr std::size_t kErrorSnippetChars = 200;
constexpr const char *kUserAgent = "gemstream/0.1";

void ensure_curl_initialized() {
  // curl_global_init() is not thread-safe on every libcurl build; never call curl_global_cleanup:
  // other libraries in the process may share libcurl.
  static std::once_flag once;
  static CURLcode result = CURLE_OK;
  std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (result != CURLE_OK)
    throw Error(ErrorKind::Network,
                std::string("cannot initialise libcurl: ") + curl_easy_strerror(result));
}

struct EasyDeleter {
  void operator()(CURL *easy) const { curl_easy_cleanup(easy); }
};
struct MultiDeleter {
  void operator()(CURLM *multi) const { curl_multi_cleanup(multi); }
};
struct SlistDeleter {
  void operator()(curl_slist *list) const { curl_slist_free_all(list); }
};
struct UrlDeleter {
  void operator()(CURLU *url) const { curl_url_cleanup(url); }
};
struct FileCloser {
  void operator()(std::FILE *file) const { std::fclose(file); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;
using UrlPtr = std::unique_ptr<CURLU, UrlDeleter>;
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

template <typename T> void set_option(CURL *easy, CURLoption option, T value) {
  const CURLcode rc = curl_easy_setopt(easy, option, value);
  if (rc != CURLE_OK)
    throw Error(ErrorKind::Config, std::string("libcurl rejected an option (") +
                                       curl_easy_strerror(rc) + "); is it built with HTTP/TLS?");
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

bool is_success(long status) { return status >= 200 && status < 300; }

const char *reason_phrase(long status) {
  switch (status) {
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "";
  }
}

// A server's error page squeezed into one printable line, cut on a UTF-8 boundary.
std::string sanitize_snippet(std::string_view body, std::size_t max_chars) {
  std::string out;
  bool pending_space = false;
  bool truncated = false;
  for (char c : body) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      pending_space = !out.empty();
      continue;
    }
    if (out.size() + (pending_space ? 1 : 0) >= max_chars) {
      truncated = true;
      break;
    }
    if (pending_space) {
      out += ' ';
      pending_space = false;
    }
    out += c;
  }
  if (truncated) {
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80)
      out.pop_back();
    if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0xC0)
      out.pop_back();
    out += "...";
  }
  return out;
}

void replace_all(std::string &s, std::string_view from, std::string_view to) {
  if (from.empty())
    return;
  for (std::size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

struct Origin {
  std::string scheme, host, port;
  bool operator==(const Origin &) const = default;
};

std::optional<Origin> origin_of(const std::string &url) {
  UrlPtr u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
    return std::nullopt;
  const auto part = [&](CURLUPart which, unsigned flags) -> std::optional<std::string> {
    char *value = nullptr;
    if (curl_url_get(u.get(), which, &value, flags) != CURLUE_OK || value == nullptr)
      return std::nullopt;
    std::string out = lower(value);
    curl_free(value);
    return out;
  };
  auto scheme = part(CURLUPART_SCHEME, 0);
  auto host = part(CURLUPART_HOST, 0);
  auto port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!scheme || !host || !port)
    return std::nullopt;
  return Origin{std::move(*scheme), std::move(*host), std::move(*port)};
}

bool same_origin(const std::string &a, const std::string &b) {
  const auto oa = origin_of(a);
  const auto ob = origin_of(b);
  return oa && ob && *oa == *ob;
}

std::optional<std::uint64_t> parse_uint(std::string_view s) {
  s = trim(s);
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    return std::nullopt;
  return value;
}

// The body of a successful download, written to "<path>.part" and renamed on success.
// Removes what it created unless committed.
class DownloadFile {
public:
  explicit DownloadFile(const std::string &path)
      : final_path_(path), part_path_(path.empty() ? std::string() : path + ".part") {}
  DownloadFile(const DownloadFile &) = delete;
  DownloadFile &operator=(const DownloadFile &) = delete;
  ~DownloadFile() {
    file_.reset();
    if (created_ && !committed_)
      std::remove(part_path_.c_str());
  }

  bool enabled() const { return !final_path_.empty(); }
  const std::string &final_path() const { return final_path_; }

  // Opens (truncating) the part file; returns an error text on failure.
  std::string open() {
    file_.reset(std::fopen(part_path_.c_str(), "wb"));
    if (!file_)
      return "cannot create " + part_path_ + ": " + std::strerror(errno);
    created_ = true;
    return {};
  }
  bool is_open() const { return static_cast<bool>(file_); }

  std::string write(const char *data, std::size_t size) {
    if (std::fwrite(data, 1, size, file_.get()) != size)
      return "cannot write " + part_path_ + ": " + std::strerror(errno);
    return {};
  }

  std::string commit() {
    if (!file_) {
      if (auto err = open(); !err.empty())
        return err;
    }
    std::FILE *file = file_.release();
    const bool flushed = std::fflush(file) == 0;
    const int flush_errno = errno;
    if (std::fclose(file) != 0 || !flushed)
      return "cannot write " + part_path_ + ": " + std::strerror(flushed ? errno : flush_errno);
    std::error_code ec;
    std::filesystem::rename(part_path_, final_path_, ec);
    if (ec)
      return "cannot rename " + part_path_ + " to " + final_path_ + ": " + ec.message();
    committed_ = true;
    return {};
  }

private:
  std::string final_path_;
  std::string part_path_;
  FilePtr file_;
  bool created_ = false;
  bool committed_ = false;
};

// Per-hop state shared with libcurl's callbacks, which run on the thread driving the transfer.
struct Sink {
  const HttpRequest &req;
  DownloadFile &download;
  HttpResponse resp;
  long status = 0; // from the latest status line
  std::uint64_t content_length = 0;
  bool too_large = false;
  std::string io_error;
  std::exception_ptr callback_error;
};

std::size_t on_header(char *data, std::size_t size, std::size_t count, void *user) {
  auto &sink = *static_cast<Sink *>(user);
  const std::size_t len = size * count;
  std::string_view line(data, len);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n'))
    line.remove_suffix(1);

  // A new status line starts a new header block (after 100 Continue, for instance).
  if (line.starts_with("HTTP/")) {
    sink.resp.headers.clear();
    sink.content_length = 0;
    sink.status = 0;
    const auto space = line.find(' ');
    if (space != std::string_view::npos) {
      std::string_view code = line.substr(space + 1, 3);
      std::from_chars(code.data(), code.data() + code.size(), sink.status);
    }
    return len;
  }

  if (line.empty()) {
    // End of the header block: refuse an oversized success body before any of it arrives.
    if (is_success(sink.status)) {
      const auto it = sink.resp.headers.find("content-length");
      if (it != sink.resp.headers.end()) {
        sink.content_length = parse_uint(it->second).value_or(0);
        if (sink.content_length > sink.req.max_body_bytes) {
          sink.too_large = true;
          return 0;
        }
      }
    }
    return len;
  }

  const auto colon = line.find(':');
  if (colon != std::string_view::npos)
    sink.resp.headers[lower(trim(line.substr(0, colon)))] =
        std::string(trim(line.substr(colon + 1)));
  return len;
}

std::size_t on_body(char *data, std::size_t size, std::size_t count, void *user) {
  auto &sink = *static_cast<Sink *>(user);
  const std::size_t len = size * count;
  HttpResponse &resp = sink.resp;

  if (!is_success(sink.status)) {
    if (resp.body.size() < kMaxErrorBodyBytes)
      resp.body.append(data, std::min(len, kMaxErrorBodyBytes - resp.body.size()));
    resp.body_bytes += len;
    return len;
  }

  if (resp.body_bytes + len > sink.req.max_body_bytes) {
    sink.too_large = true;
    return CURL_WRITEFUNC_ERROR;
  }
  if (sink.download.enabled()) {
    if (!sink.download.is_open())
      sink.io_error = sink.download.open();
    if (sink.io_error.empty())
      sink.io_error = sink.download.write(data, len);
    if (!sink.io_error.empty())
      return CURL_WRITEFUNC_ERROR;
  } else {
    resp.body.append(data, len);
  }
  resp.body_bytes += len;

  if (sink.req.on_progress) {
    try {
      sink.req.on_progress(resp.body_bytes, sink.content_length);
    } catch (...) {
      sink.callback_error = std::current_exception();
      return CURL_WRITEFUNC_ERROR;
    }
  }
  return len;
}

// Drives one transfer to completion. Returns nullopt when cancelled.
std::optional<CURLcode> drive(CURLM *multi, CURL *easy, const CancelToken &cancel) {
  if (const CURLMcode mc = curl_multi_add_handle(multi, easy); mc != CURLM_OK)
    throw Error(ErrorKind::Network, std::string("libcurl: ") + curl_multi_strerror(mc));
  struct Detach {
    CURLM *multi;
    CURL *easy;
    ~Detach() { curl_multi_remove_handle(multi, easy); }
  } detach{multi, easy};

  for (;;) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc == CURLM_OK && running != 0 && !cancel.cancelled())
      mc = curl_multi_poll(multi, nullptr, 0, kPollIntervalMs, nullptr);
    if (mc != CURLM_OK)
      throw Error(ErrorKind::Network, std::string("libcurl: ") + curl_multi_strerror(mc));
    if (cancel.cancelled())
      return std::nullopt;
    if (running == 0)
      break;
  }

  int queued = 0;
  while (CURLMsg *msg = curl_multi_info_read(multi, &queued)) {
    if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy)
      return msg->data.result;
  }
  throw Error(ErrorKind::Network, "libcurl finished a transfer without reporting its result");
}

Error transport_error(CURLcode code, const char *errbuf, const std::string &url,
                      const std::string &what, bool request_sent, milliseconds timeout) {
  std::string detail = (errbuf != nullptr && errbuf[0] != '\0') ? errbuf : curl_easy_strerror(code);
  // curl's texts name hosts, not queries; make sure a query can never leak through them.
  if (const auto q = url.find('?'); q != std::string::npos && url.size() - q > 1)
    replace_all(detail, std::string_view(url).substr(q), "?<query>");

  ErrorKind kind = ErrorKind::Network;
  std::string message;
  switch (code) {
  case CURLE_OPERATION_TIMEDOUT:
    // A connection that never came up is a network fault worth retrying; a server that
    // received the request and did not finish answering in time is a client-side deadline.
    if (request_sent) {
      kind = ErrorKind::Timeout;
      message = what + ": no complete response within " + std::to_string(timeout.count()) +
                " ms (" + detail + ")";
    } else {
      message = what + ": cannot connect (" + detail + ")";
    }
    break;
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    kind = ErrorKind::Config;
    message = what + ": invalid URL (" + detail + ")";
    break;
  case CURLE_TOO_MANY_REDIRECTS:
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_BAD_CONTENT_ENCODING:
    kind = ErrorKind::Protocol;
    message = what + ": malformed response (" + detail + ")";
    break;
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING: message = what + ": connection lost (" + detail + ")"; break;
  default: message = what + " failed: " + detail; break;
  }
  Error err(kind, std::move(message));
  err.with_http(0, {}, url_path(url));
  return err;
}

milliseconds backoff_delay(const RetryPolicy &policy, int attempt) {
  if (policy.initial_backoff.count() <= 0)
    return milliseconds(0);
  const double cap =
      static_cast<double>(std::max(policy.max_backoff, policy.initial_backoff).count());
  double base = static_cast<double>(policy.initial_backoff.count()) *
                std::pow(std::max(policy.multiplier, 1.0), attempt - 1);
  base = std::min(base, cap);
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_real_distribution<double> spread(1.0 - jitter, 1.0 + jitter);
  return milliseconds(std::llround(base * spread(rng)));
}

Error redact(const Error &err, const std::string &secret) {
  if (secret.empty() || err.message().find(secret) == std::string::npos)
    return err;
  std::string message = err.message();
  replace_all(message, secret, "<redacted>");
  Error out(err.kind(), std::move(message));
  out.with_http(err.http_status(), err.status(), err.path());
  if (!err.reason().empty())
    out.with_reason(err.reason());
  if (err.retry_after())
    out.with_retry_after(*err.retry_after());
  return out;
}

} // namespace

HttpClient::HttpClient(std::string api_key) : api_key_(std::move(api_key)) {
  ensure_curl_initialized();
  for (char c : api_key_) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f)
      throw Error(ErrorKind::Config, "the API key contains whitespace or control characters");
  }
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::perform(const HttpRequest &req, const CancelToken &cancel) {
  const std::string what = req.method + " " + url_path(req.url);
  const auto cancelled = [&] {
    Error err(ErrorKind::Cancelled, what + " cancelled");
    err.with_http(0, {}, url_path(req.url));
    return err;
  };
  if (cancel.cancelled())
    throw cancelled();

  MultiPtr multi(curl_multi_init());
  if (!multi)
    throw Error(ErrorKind::Network, "cannot create a libcurl multi handle");
  // Declared after `multi` so it is destroyed first: remove_callback() waits for a wake-up in
  // flight on another thread, after which the multi handle may go.
  struct WakeOnCancel {
    const CancelToken &token;
    int id;
    ~WakeOnCancel() { token.remove_callback(id); }
  } wake{cancel, cancel.add_callback([m = multi.get()] { curl_multi_wakeup(m); })};

  const auto deadline =
      req.timeout.count() > 0 ? Clock::now() + req.timeout : Clock::time_point::max();
  DownloadFile download(req.download_path);
  std::string url = req.url;
  std::string method = req.method;
  bool send_body = true;
  bool send_key = !api_key_.empty();

  for (int hop = 0;; ++hop) {
    long timeout_ms = 0;
    if (deadline != Clock::time_point::max()) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        Error err(ErrorKind::Timeout, what + ": no complete response within " +
                                          std::to_string(req.timeout.count()) + " ms");
        err.with_http(0, {}, url_path(req.url));
        throw err;
      }
      timeout_ms = static_cast<long>(left);
    }

    EasyPtr easy(curl_easy_init());
    if (!easy)
      throw Error(ErrorKind::Network, "cannot create a libcurl easy handle");
    CURL *e = easy.get();
    char errbuf[CURL_ERROR_SIZE] = {};
    Sink sink{req, download, {}, 0, 0, false, {}, nullptr};

    SlistPtr headers;
    const auto add_header = [&](const std::string &line) {
      curl_slist *next = curl_slist_append(headers.get(), line.c_str());
      if (next == nullptr)
        throw Error(ErrorKind::Network, "out of memory building request headers");
      (void)headers.release();
      headers.reset(next);
    };
    bool has_expect = false;
    for (const auto &[name, value] : req.headers) {
      has_expect = has_expect || iequals(name, "expect");
      add_header(value.empty() ? name + ";" : name + ": " + value);
    }
    // curl sends "Expect: 100-continue" for larger bodies and then stalls a second on servers
    // that do not answer it.
    if (!has_expect)
      add_header("Expect:");
    if (send_key)
      add_header("x-goog-api-key: " + api_key_);

    set_option(e, CURLOPT_URL, url.c_str());
    set_option(e, CURLOPT_ERRORBUFFER, errbuf);
    set_option(e, CURLOPT_NOSIGNAL, 1L);
    set_option(e, CURLOPT_VERBOSE, 0L);
    set_option(e, CURLOPT_PROTOCOLS_STR, "http,https");
    set_option(e, CURLOPT_FOLLOWLOCATION, 0L);
    set_option(e, CURLOPT_ACCEPT_ENCODING, "");
    set_option(e, CURLOPT_USERAGENT, kUserAgent);
    set_option(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.connect_timeout.count()));
    set_option(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    set_option(e, CURLOPT_HTTPHEADER, headers.get());
    set_option(e, CURLOPT_HEADERFUNCTION, &on_header);
    set_option(e, CURLOPT_HEADERDATA, static_cast<void *>(&sink));
    set_option(e, CURLOPT_WRITEFUNCTION, &on_body);
    set_option(e, CURLOPT_WRITEDATA, static_cast<void *>(&sink));
    if (method == "GET") {
      set_option(e, CURLOPT_HTTPGET, 1L);
    } else if (method == "HEAD") {
      set_option(e, CURLOPT_NOBODY, 1L);
    } else {
      if (method != "POST")
        set_option(e, CURLOPT_CUSTOMREQUEST, method.c_str());
      if (send_body && (method == "POST" || !req.body.empty())) {
        set_option(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
        set_option(e, CURLOPT_POSTFIELDS, req.body.data());
      }
    }

    const std::optional<CURLcode> result = drive(multi.get(), e, cancel);
    if (!result)
      throw cancelled();
    if (sink.callback_error)
      std::rethrow_exception(sink.callback_error);
    if (sink.too_large) {
      std::string message = what + ": response body exceeds the limit of " +
                            std::to_string(req.max_body_bytes) + " bytes";
      if (sink.content_length > req.max_body_bytes)
        message += " (Content-Length " + std::to_string(sink.content_length) + ")";
      Error err(ErrorKind::TooLarge, std::move(message));
      err.with_http(0, {}, url_path(req.url));
      throw err;
    }
    if (!sink.io_error.empty())
      throw Error(ErrorKind::Io, what + ": " + sink.io_error);
    if (*result != CURLE_OK) {
      long request_bytes = 0;
      curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &request_bytes);
      throw transport_error(*result, errbuf, url, what, request_bytes > 0, req.timeout);
    }

    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    const bool redirect =
        status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
    char *location = nullptr;
    if (redirect && req.follow_redirects)
      curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &location);
    if (location != nullptr) {
      if (hop + 1 > kMaxRedirects) {
        Error err(ErrorKind::Protocol,
                  what + ": more than " + std::to_string(kMaxRedirects) + " redirects");
        err.with_http(static_cast<int>(status), {}, url_path(req.url));
        throw err;
      }
      std::string next = location;
      // The key must not follow a redirect to another origin (curl would forward custom
      // headers anywhere); signed download URLs carry their own authorisation.
      send_key = send_key && same_origin(url, next);
      if ((status == 303 && method != "HEAD") ||
          ((status == 301 || status == 302) && method == "POST")) {
        method = "GET";
        send_body = false;
      }
      url = std::move(next);
      continue;
    }

    HttpResponse resp = std::move(sink.resp);
    resp.status = status;
    resp.effective_url = url;
    if (download.enabled() && is_success(status)) {
      if (auto err = download.commit(); !err.empty())
        throw Error(ErrorKind::Io, what + ": " + err);
    }
    return resp;
  }
}

HttpResponse HttpClient::request(const HttpRequest &req, const RetryPolicy &policy,
                                 const CancelToken &cancel, const RetryObserver &on_retry) {
  const std::string path = url_path(req.url);
  const int max_attempts = std::max(1, policy.max_attempts);
  for (int attempt = 1;; ++attempt) {
    std::optional<Error> failure;
    try {
      HttpResponse resp = perform(req, cancel);
      if (is_success(resp.status))
        return resp;
      failure = redact(decode_http_error(resp, path), api_key_);
    } catch (const Error &err) {
      if (!err.retryable() || attempt >= max_attempts)
        throw;
      failure = err;
    }
    if (!failure->retryable() || attempt >= max_attempts)
      throw *failure;

    milliseconds delay = backoff_delay(policy, attempt);
    if (const auto hint = failure->retry_after())
      delay = std::max(delay, *hint);
    if (on_retry)
      on_retry(attempt + 1, *failure, delay);
    if (!cancel.wait_for(delay)) {
      Error err(ErrorKind::Cancelled,
                req.method + " " + path + " cancelled while waiting to retry");
      err.with_http(0, {}, path);
      throw err;
    }
  }
}

std::optional<milliseconds> parse_retry_after(const std::string &value) {
  const std::string_view v = trim(value);
  if (v.empty())
    return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (v.size() > 9)
      return std::nullopt;
    return std::chrono::seconds(*parse_uint(v));
  }
  const std::time_t when = curl_getdate(std::string(v).c_str(), nullptr);
  if (when == -1)
    return std::nullopt;
  const std::time_t now = std::time(nullptr);
  return milliseconds(when > now ? static_cast<std::int64_t>(when - now) * 1000 : 0);
}

Error decode_http_error(const HttpResponse &resp, const std::string &path) {
  const int code = static_cast<int>(resp.status);
  std::string message, status, reason;
  std::optional<milliseconds> retry_after;

  const nlohmann::json doc = nlohmann::json::parse(resp.body, nullptr, false);
  // Some Google endpoints wrap the error object in a one-element array.
  const nlohmann::json *root = &doc;
  if (doc.is_array() && !doc.empty())
    root = &doc.front();
  const bool decoded = root->is_object() && root->contains("error") && (*root)["error"].is_object();
  if (decoded) {
    const nlohmann::json &e = (*root)["error"];
    if (const auto it = e.find("message"); it != e.end() && it->is_string())
      message = it->get<std::string>();
    if (const auto it = e.find("status"); it != e.end() && it->is_string())
      status = it->get<std::string>();
    if (const auto it = e.find("details"); it != e.end() && it->is_array()) {
      for (const auto &detail : *it) {
        if (!detail.is_object())
          continue;
        const auto type = detail.value("@type", std::string());
        if (type.ends_with("google.rpc.ErrorInfo")) {
          if (const auto r = detail.find("reason"); r != detail.end() && r->is_string())
            reason = r->get<std::string>();
        } else if (type.ends_with("google.rpc.RetryInfo")) {
          if (const auto d = detail.find("retryDelay"); d != detail.end() && d->is_string())
            retry_after = parse_duration(d->get<std::string>());
        }
      }
    }
  }

  if (message.empty()) {
    message = "HTTP " + std::to_string(code);
    if (const char *phrase = reason_phrase(code); phrase[0] != '\0')
      message += std::string(" ") + phrase;
    if (!decoded && !trim(resp.body).empty())
      message += ": " + sanitize_snippet(resp.body, kErrorSnippetChars);
  }

  if (const auto it = resp.headers.find("retry-after"); it != resp.headers.end()) {
    if (const auto hint = parse_retry_after(it->second))
      retry_after = retry_after ? std::max(*retry_after, *hint) : *hint;
  }

  Error err(error_kind_from_http(code, status, reason), std::move(message));
  err.with_http(code, std::move(status), path);
  if (!reason.empty())
    err.with_reason(std::move(reason));
  if (retry_after)
    err.with_retry_after(*retry_after);
  return err;
}

std::optional<milliseconds> parse_duration(const std::string &s) {
  // google.protobuf.Duration in JSON: decimal seconds, up to 9 fraction digits, suffix "s".
  std::string_view v = s;
  if (v.size() < 2 || v.back() != 's')
    return std::nullopt;
  v.remove_suffix(1);
  const auto dot = v.find('.');
  const std::string_view whole = v.substr(0, dot);
  const std::string_view frac =
      dot == std::string_view::npos ? std::string_view() : v.substr(dot + 1);
  const auto digits = [](std::string_view d) {
    return std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || whole.size() > 12 || !digits(whole))
    return std::nullopt;
  if (dot != std::string_view::npos && (frac.empty() || frac.size() > 9 || !digits(frac)))
    return std::nullopt;

  std::int64_t ms = static_cast<std::int64_t>(*parse_uint(whole)) * 1000;
  if (!frac.empty()) {
    std::string nanos(frac);
    nanos.append(9 - nanos.size(), '0');
    const auto ns = static_cast<std::int64_t>(*parse_uint(nanos));
    // Round up: a server's "wait at least" must not be shortened.
    ms += (ns + 999'999) / 1'000'000;
  }
  return milliseconds(ms);
}

std::string url_path(const std::string &url) {
  std::string_view rest = url;
  const auto scheme = rest.find("://");
  const bool absolute = scheme != std::string_view::npos && scheme < rest.find_first_of("/?#");
  if (absolute) {
    rest.remove_prefix(scheme + 3);
    const auto path_start = rest.find_first_of("/?#");
    rest = path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  }
  rest = rest.substr(0, rest.find_first_of("?#"));
  if (rest.empty() && absolute)
    return "/";
  return std::string(rest);
}

} // namespace gemstream
