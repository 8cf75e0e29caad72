// The local backend: a loopback server answering the Gemini REST surface with the real service's
// paths, JSON shapes and error bodies, serving real PNGs and MP4s, with scripted faults.
//
// Threading contract:
// - One libwebsockets context, serviced by one thread. Every lws callback, every request handler
//   and all connection, operation and file state live on that thread and need no lock.
// - Media rendering runs on process-wide worker threads (MediaWorkers), so a render never stalls
//   the loop, renders survive a backend restart and the video cache serves the next backend.
//   A worker hands its answer back through the backend's Mailbox, which wakes the loop with
//   lws_cancel_service(); the loop then attaches the answer to the connection, if still open.
// - Public methods touch only `Impl::mutex`-guarded state (faults, request log) and the Live
//   faults (their own mutex); actions on open Live sessions are posted to the loop as tasks.
//
// The Live API WebSocket (/ws/google.ai.generativelanguage.{v1alpha,v1beta}.GenerativeService.
// BidiGenerateContent[Constrained], also with a doubled leading slash) is served by this same
// context and port: upgrades to those paths are accepted, every other upgrade is refused, and
// WebSocket reasons go to backend::LiveServer (live_server.h), which holds the session logic.
//
// Admin endpoint, for scripting faults from another process (no API key needed, not logged):
//   POST /_backend/faults   {"fail_next":{"count":2,"status":503,"retry_after_s":1},
//                            "latency_ms":200,"drop_next_download_after":1000,
//                            "polls_until_done":3,"reset":true,
//                            "live":{"drop_after_chunks":3,"malformed":"invalid_json",
//                                    "fail_next_setup":{"code":1011,"reason":"..."},
//                                    "close_sessions":{"code":1011,"reason":"..."},
//                                    "go_away_after_ms":1000,"go_away_time_left_ms":500}}
//       Every member is optional; "reset" first clears all faults (latency 0, no failures, no
//       drop, polls_until_done and the Live goAway timing back to the constructor's values).
//       live.malformed is "invalid_json" or "wrong_types"; null clears drop_after_chunks,
//       malformed and fail_next_setup; close_sessions acts at once on the open Live sessions
//       (code 1006 drops them without a close frame).
//       Answers the resulting state, with live.sessions counting open Live connections.
//   GET  /_backend/faults   the current state, same shape.
//   GET  /_backend/requests {"requests":[{"method","path","query","headers":{name:value},
//                            "body","status"}]}, API keys redacted; Live WebSocket upgrades
//                            appear as GET with status 101.
//   DELETE /_backend/requests  clears the log.
// Faults apply to API requests (/v1, /v1beta, /v1alpha) after the key check; latency also delays
// media downloads; admin calls are never delayed, failed or logged.
//
// Files API (files_api.h): resumable uploads at /upload/{version}/files, GET/DELETE
// {version}/files/{id}, GET {version}/files. Text models answer from the media they receive and
// ground googleSearch requests in a local corpus (understanding.h).
//
// Not served: chunked request bodies (411: lws 4.1 does not decode them server-side), HEAD.
//
// Safety fault trigger: a prompt containing the word "forbidden-content" is "blocked": Gemini
// image models answer finishReason IMAGE_SAFETY without image, Imagen answers raiFilteredReason
// entries (or {} without includeRaiReason, as the real API), Veo operations finish with
// raiMediaFilteredCount 1 and no samples, text models answer finishReason SAFETY.
#include "gemstream/local_backend.h"

#include "files_api.h"
#include "live_server.h"
#include "media.h"
#include "understanding.h"
#include "wire.h"
#include "work_queue.h"

#include <libwebsockets.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>

namespace gemstream {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Blob = std::shared_ptr<const std::string>;
using Headers = std::vector<std::pair<std::string, std::string>>;
using backend::base64_decode;
using backend::base64_encode;
using backend::camel_case;
using backend::lower_ascii;
using backend::query_param;
using backend::text_tokens;
using backend::WorkQueue;

const json *member(const json &object, std::string_view camel) {
  return backend::member(object, camel);
}

constexpr std::string_view kSafetyTrigger = "forbidden-content";
constexpr std::string_view kJsonType = "application/json; charset=UTF-8";
constexpr std::size_t kWriteChunk = 64 * 1024;
// Output tokens Gemini 2.5 Flash Image bills per generated image, and input tokens per image.
constexpr int kImageOutputTokens = 1290;
constexpr int kImageInputTokens = 258;
constexpr std::size_t kVideoCacheEntries = 16;

constexpr std::string_view kUnregisteredCaller =
    "Method doesn't allow unregistered callers (callers without established identity). Please "
    "use API Key or other form of API consumer identity to call this API.";
constexpr std::string_view kKeyInvalid = "API key not valid. Please pass a valid API key.";
constexpr std::string_view kNotFound = "Requested entity was not found.";

// Headers lws does not tokenise are only reachable by name (4.1 cannot enumerate them): these are
// the ones Google's clients send, recorded for tests.
constexpr std::array<std::string_view, 10> kCustomHeaders = {
    "x-goog-api-key",
    "x-goog-api-client",
    "x-goog-user-project",
    "x-goog-request-params",
    "x-server-timeout",
    "x-goog-upload-protocol",
    "x-goog-upload-command",
    "x-goog-upload-offset",
    "x-goog-upload-header-content-length",
    "x-goog-upload-header-content-type",
};

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string dump(const json &j) { return backend::pretty_json(j); }

std::string redact_query(std::string_view query) {
  std::string out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto item = query.substr(0, amp);
    const auto eq = item.find('=');
    const auto name = item.substr(0, eq);
    if (!out.empty())
      out += '&';
    if (eq != std::string_view::npos && (name == "key" || name == "access_token"))
      out += std::string(name) + "=REDACTED";
    else
      out += item;
    if (amp == std::string_view::npos)
      break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

std::string_view rpc_status(int http_status) {
  switch (http_status) {
  case 400: return "INVALID_ARGUMENT";
  case 401: return "UNAUTHENTICATED";
  case 403: return "PERMISSION_DENIED";
  case 404: return "NOT_FOUND";
  case 409: return "ABORTED";
  case 429: return "RESOURCE_EXHAUSTED";
  case 499: return "CANCELLED";
  case 500: return "INTERNAL";
  case 501: return "UNIMPLEMENTED";
  case 503: return "UNAVAILABLE";
  case 504: return "DEADLINE_EXCEEDED";
  default: return http_status >= 500 ? "UNKNOWN" : "FAILED_PRECONDITION";
  }
}

// What the real service says for each status when a fault is injected.
std::string_view fault_message(int http_status) {
  switch (http_status) {
  case 400: return "Request contains an invalid argument.";
  case 401: return "Request had invalid authentication credentials.";
  case 403: return "The caller does not have permission";
  case 404: return kNotFound;
  case 429:
    return "You exceeded your current quota, please check your plan and billing details. For "
           "more information on this error, head to: "
           "https://ai.google.dev/gemini-api/docs/rate-limits.";
  case 500:
    return "An internal error has occurred. Please retry or report in "
           "https://developers.generativeai.google/guide/troubleshooting";
  case 503: return "The model is overloaded. Please try again later.";
  case 504: return "Deadline expired before operation could complete.";
  default: return "The service could not handle the request (injected fault).";
  }
}

// ---------------------------------------------------------------------------------------------
// Responses

struct Response {
  int status = 200;
  std::string content_type;  // empty: no Content-Type header
  Headers headers;           // extra headers, names lower-case
  Blob body;                 // shared: cached media are served without a copy
  std::uint64_t begin = 0;   // body range to send
  std::uint64_t end = 0;
  std::optional<std::uint64_t> drop_after;  // body bytes to send before dropping the connection
  bool close = false;                       // close after answering (request body left unread)
};

Response body_response(int status, std::string_view content_type, std::string body) {
  Response r;
  r.status = status;
  r.content_type = std::string(content_type);
  r.end = body.size();
  r.body = std::make_shared<const std::string>(std::move(body));
  return r;
}

Response json_response(const json &j, int status = 200) {
  return body_response(status, kJsonType, dump(j));
}

Response error_response(int status, std::string_view message, json details = json()) {
  json error = {{"code", status}, {"message", message}, {"status", rpc_status(status)}};
  if (details.is_array() && !details.empty())
    error["details"] = std::move(details);
  return json_response({{"error", std::move(error)}}, status);
}

Response invalid_argument(std::string_view message) { return error_response(400, message); }

// A handler answers now, or names work to run on a media worker (which must not touch Impl).
using Work = std::function<Response()>;
using Reply = std::variant<Response, Work>;

// ---------------------------------------------------------------------------------------------
// Models

enum class ModelKind { Text, Image, Imagen, Veo, Live };

struct ModelInfo {
  std::string_view id;
  std::string_view display_name;
  ModelKind kind;
  int input_token_limit;
  int output_token_limit;
};

constexpr ModelInfo kModels[] = {
    {"gemini-2.5-flash", "Gemini 2.5 Flash", ModelKind::Text, 1048576, 65536},
    {"gemini-2.5-pro", "Gemini 2.5 Pro", ModelKind::Text, 1048576, 65536},
    {"gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", ModelKind::Text, 1048576, 65536},
    {"gemini-2.0-flash", "Gemini 2.0 Flash", ModelKind::Text, 1048576, 8192},
    {"gemini-2.5-flash-image", "Nano Banana", ModelKind::Image, 32768, 32768},
    {"gemini-2.5-flash-image-preview", "Nano Banana (preview)", ModelKind::Image, 32768, 32768},
    {"gemini-3-pro-image-preview", "Nano Banana Pro", ModelKind::Image, 65536, 32768},
    {"imagen-4.0-generate-001", "Imagen 4", ModelKind::Imagen, 480, 8192},
    {"imagen-4.0-fast-generate-001", "Imagen 4 Fast", ModelKind::Imagen, 480, 8192},
    {"imagen-4.0-ultra-generate-001", "Imagen 4 Ultra", ModelKind::Imagen, 480, 8192},
    {"veo-3.0-generate-001", "Veo 3", ModelKind::Veo, 480, 8192},
    {"veo-3.0-fast-generate-001", "Veo 3 Fast", ModelKind::Veo, 480, 8192},
    {"veo-3.1-generate-preview", "Veo 3.1", ModelKind::Veo, 1024, 8192},
    {"veo-3.1-fast-generate-preview", "Veo 3.1 Fast", ModelKind::Veo, 1024, 8192},
    {"gemini-live-2.5-flash-preview-native-audio", "Gemini Live 2.5 Flash Native Audio",
     ModelKind::Live, 131072, 8192},
    {"gemini-3.1-flash-live-preview", "Gemini 3.1 Flash Live", ModelKind::Live, 131072, 8192},
    {"gemini-live-2.5-flash-native-audio", "Gemini 2.5 Flash Native Audio", ModelKind::Live,
     131072, 8192},
    {"gemini-2.5-flash-native-audio-preview-09-2025", "Gemini 2.5 Flash Native Audio Preview",
     ModelKind::Live, 131072, 8192},
    {"gemini-2.5-flash-native-audio-preview-12-2025", "Gemini 2.5 Flash Native Audio Preview",
     ModelKind::Live, 131072, 8192},
    {"gemini-2.5-flash-native-audio-latest", "Gemini 2.5 Flash Native Audio", ModelKind::Live,
     131072, 8192},
};

const ModelInfo *find_model(std::string_view id) {
  for (const auto &m : kModels)
    if (m.id == id)
      return &m;
  return nullptr;
}

std::vector<std::string_view> methods_of(ModelKind kind) {
  switch (kind) {
  case ModelKind::Text:
  case ModelKind::Image: return {"generateContent", "streamGenerateContent", "countTokens"};
  case ModelKind::Imagen: return {"predict"};
  case ModelKind::Veo: return {"predictLongRunning"};
  case ModelKind::Live: return {"bidiGenerateContent"};
  }
  return {};
}

json model_resource(const ModelInfo &m) {
  return {{"name", "models/" + std::string(m.id)},
          {"version", "001"},
          {"displayName", m.display_name},
          {"description", std::string(m.display_name) + " (gemstream local backend)"},
          {"inputTokenLimit", m.input_token_limit},
          {"outputTokenLimit", m.output_token_limit},
          {"supportedGenerationMethods", methods_of(m.kind)}};
}

Response model_not_found(std::string_view model, std::string_view version,
                         std::string_view method) {
  return error_response(404, "models/" + std::string(model) + " is not found for API version " +
                                 std::string(version) + ", or is not supported for " +
                                 std::string(method) +
                                 ". Call ListModels to see the list of available models and "
                                 "their supported methods.");
}

// ---------------------------------------------------------------------------------------------
// Media workers, shared by every backend in the process.

// Images and videos have separate queues so a seconds-long video render never delays an image.
// Videos are cached by (prompt, size, duration, start image): tests reuse renders.
class MediaWorkers {
public:
  static MediaWorkers &instance() {
    static MediaWorkers workers;
    return workers;
  }

  void post_image_job(std::function<void()> job) { images_.post(std::move(job)); }

  std::shared_future<Blob> render_video(const backend::VideoSpec &spec) {
    std::string key = spec.prompt;
    key += '\x1f' + std::to_string(spec.width) + 'x' + std::to_string(spec.height) + '@' +
           std::to_string(spec.fps) + '/' + std::to_string(spec.seconds) + '\x1f';
    key += std::to_string(spec.start_image.size()) + ':' +
           std::to_string(std::hash<std::string>{}(spec.start_image));

    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(key); it != cache_.end())
      return it->second;
    auto promise = std::make_shared<std::promise<Blob>>();
    std::shared_future<Blob> future = promise->get_future().share();
    cache_.emplace(key, future);
    order_.push_back(key);
    if (order_.size() > kVideoCacheEntries) {
      cache_.erase(order_.front());
      order_.pop_front();
    }
    videos_.post([promise, spec] {
      try {
        promise->set_value(std::make_shared<const std::string>(backend::render_mp4(spec)));
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
    });
    return future;
  }

private:
  MediaWorkers() = default;

  std::mutex mutex_;
  std::map<std::string, std::shared_future<Blob>> cache_;
  std::deque<std::string> order_;
  WorkQueue images_;  // queues last: joined before the cache goes away
  WorkQueue videos_;
};

// Where workers drop finished answers for one running backend. `context` is cleared under the
// mutex before the context is destroyed, so lws_cancel_service() never races destruction.
struct Mailbox {
  std::mutex mutex;
  lws_context *context = nullptr;
  std::vector<std::pair<std::uint64_t, Response>> done;
  std::vector<std::function<void()>> tasks;  // run on the loop (Live sessions)

  void post(std::uint64_t transaction, Response response) {
    std::lock_guard lock(mutex);
    if (!context)
      return;
    done.emplace_back(transaction, std::move(response));
    lws_cancel_service(context);
  }

  void post_task(std::function<void()> task) {
    std::lock_guard lock(mutex);
    if (!context)
      return;
    tasks.push_back(std::move(task));
    lws_cancel_service(context);
  }
};

// ---------------------------------------------------------------------------------------------
// Per-request and server state (service thread only)

struct Transaction {
  std::uint64_t id = 0;
  lws *wsi = nullptr;
  std::string method;
  std::string path;
  std::string query;
  Headers headers;
  std::string body;
  std::uint64_t content_length = 0;
  Clock::time_point due;      // the answer leaves no earlier than this (latency fault)
  std::uint64_t record = 0;   // sequence number in the request log, 0 = not logged
  std::optional<Response> response;
  std::optional<Response> rejection;  // answered once the unread body has been discarded
  bool headers_sent = false;
  std::uint64_t position = 0;  // next body byte to send
  bool drop_now = false;

  std::string header(std::string_view name) const {
    for (const auto &[k, v] : headers)
      if (k == name)
        return v;
    return {};
  }
};

// lws allocates and zero-fills this per connection and frees it without running destructors, so
// it only names the HTTP transaction or the Live session, which Impl and LiveServer own.
struct Session {
  std::uint64_t transaction;
  std::uint64_t live;
};

struct Operation {
  std::string model;
  bool filtered = false;
  std::shared_future<Blob> render;  // invalid when filtered
  int polls = 0;
  std::string file_id;              // set once done
};

struct StoredFile {
  Blob data;
  std::string mime_type;
  std::string token;  // the redirect target's credential, like a signed URL
};

struct Faults {
  int fail_count = 0;
  int fail_status = 503;
  std::chrono::seconds retry_after{0};
  std::chrono::milliseconds latency{0};
  std::optional<std::uint64_t> drop_download_after;
  int polls_until_done = 2;
};

struct LoggedRequest {
  std::uint64_t seq;
  RecordedRequest request;
};

json faults_json(const Faults &f) {
  return {{"fail_next",
           {{"count", f.fail_count},
            {"status", f.fail_status},
            {"retry_after_s", f.retry_after.count()}}},
          {"latency_ms", f.latency.count()},
          {"drop_next_download_after",
           f.drop_download_after ? json(*f.drop_download_after) : json(nullptr)},
          {"polls_until_done", f.polls_until_done}};
}

} // namespace

namespace {

// Method, headers, query and Content-Length of the request on `wsi` (an HTTP request or a
// WebSocket upgrade, whose headers lws keeps until LWS_CALLBACK_ESTABLISHED returns).
void read_request_head(lws *wsi, Transaction &tx) {
  static constexpr std::pair<lws_token_indexes, const char *> kMethods[] = {
      {WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
      {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_PATCH_URI, "PATCH"},
      {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
      {WSI_TOKEN_HEAD_URI, "HEAD"},
  };
  for (const auto &[token, name] : kMethods) {
    if (lws_hdr_total_length(wsi, token) > 0) {
      tx.method = name;
      break;
    }
  }

  std::string value;
  auto copy_token = [&](lws_token_indexes token) -> bool {
    const int n = lws_hdr_total_length(wsi, token);
    if (n <= 0)
      return false;
    value.resize(std::size_t(n) + 1);
    const int got = lws_hdr_copy(wsi, value.data(), n + 1, token);
    if (got < 0)
      return false;
    value.resize(std::size_t(got));
    return true;
  };

  for (int t = 0; t < WSI_TOKEN_COUNT; ++t) {
    const auto token = static_cast<lws_token_indexes>(t);
    const char *name = reinterpret_cast<const char *>(lws_token_to_string(token));
    if (!name || !*name || name[0] == ':')
      continue;
    const std::string_view n(name);
    if (n.back() != ':')
      continue;  // request-line tokens ("get ", "post ", ...)
    if (copy_token(token))
      tx.headers.emplace_back(std::string(n.substr(0, n.size() - 1)), value);
  }
  for (std::string_view name : kCustomHeaders) {
    const std::string key = std::string(name) + ":";
    const int n = lws_hdr_custom_length(wsi, key.c_str(), int(key.size()));
    if (n < 0)
      continue;
    value.resize(std::size_t(n) + 1);
    const int got = lws_hdr_custom_copy(wsi, value.data(), n + 1, key.c_str(), int(key.size()));
    if (got < 0)
      continue;
    value.resize(std::size_t(got));
    tx.headers.emplace_back(std::string(name), value);
  }

  {
    char fragment[4096];
    for (int i = 0;; ++i) {
      const int n = lws_hdr_copy_fragment(wsi, fragment, sizeof fragment,
                                          WSI_TOKEN_HTTP_URI_ARGS, i);
      if (n < 0)
        break;
      if (!tx.query.empty())
        tx.query += '&';
      tx.query.append(fragment, std::size_t(n));
    }
  }

  if (copy_token(WSI_TOKEN_HTTP_CONTENT_LENGTH)) {
    std::uint64_t length = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
    if (ec == std::errc())
      tx.content_length = length;
  }

}

} // namespace

// ---------------------------------------------------------------------------------------------

struct LocalBackend::Impl {
  explicit Impl(LocalBackendOptions o)
      : options(std::move(o)), rng(std::random_device{}()),
        live_faults(options.live_go_away_after, options.live_go_away_time_left) {
    faults.polls_until_done = std::max(1, options.polls_until_done);
    write_buffer.resize(LWS_PRE + kWriteChunk);
  }

  void start();
  void stop();
  std::string base_url() const;

  static int callback(lws *wsi, lws_callback_reasons reason, void *user, void *in,
                      size_t len);

  // HTTP transaction lifecycle (service thread).
  int on_http(lws *wsi, Session *session, std::string_view path);
  void on_body(Session *session, const char *data, std::size_t len);
  void on_complete(Transaction &tx);
  int on_writeable(lws *wsi, Session *session);
  void deliver(Transaction &tx, Response response);
  void drain_mailbox();
  void drop_transaction(Session *session);
  Transaction *find(std::uint64_t id);

  // Routing and handlers (service thread).
  Reply dispatch(Transaction &tx);
  std::optional<Response> check_api_key(const Transaction &tx) const;
  std::optional<Response> take_fault();
  Reply admin(const Transaction &tx);
  Reply media(const Transaction &tx);
  Reply model_method(const ModelInfo &model, std::string_view version, std::string_view method,
                     const json &body, const Transaction &tx);
  Reply generate_content(const ModelInfo &model, const json &body, bool stream, bool sse);
  Reply predict(const ModelInfo &model, const json &body);
  Reply predict_long_running(const ModelInfo &model, const json &body);
  Response get_operation(const std::string &name);
  Response download(std::string_view file_id, const Transaction &tx);

  std::string random_id(std::size_t length, std::string_view alphabet);
  std::filesystem::path capabilities_file() const;
  // Runs `task` on the loop if the backend is running (any thread).
  void post_task(std::function<void()> task);
  // Logs a Live API WebSocket upgrade (status 101), so tests can check how clients connect.
  void record_upgrade(lws *wsi);
  // Logs the request (admin calls are not logged) and sets when its answer may leave.
  void record(Transaction &tx, bool api);
  void record_status(std::uint64_t seq, int status);
  Response payload_too_large() const {
    return invalid_argument("Request payload size exceeds the limit: " +
                            std::to_string(options.max_request_bytes) + " bytes.");
  }

  const LocalBackendOptions options;

  // Service-thread state (also touched by start/stop while no service thread runs).
  lws_context *context = nullptr;
  std::array<lws_protocols, 2> protocols{};
  std::thread service;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint16_t> port{0};
  std::shared_ptr<Mailbox> mailbox;
  std::unordered_map<std::uint64_t, std::unique_ptr<Transaction>> transactions;
  std::uint64_t next_transaction = 1;
  std::mt19937_64 rng;
  std::map<std::string, Operation> operations;  // by full name models/{m}/operations/{id}
  std::map<std::string, StoredFile> files;      // by file id
  backend::FilesApi files_api;                  // uploaded files
  std::vector<unsigned char> write_buffer;

  // Live API sessions (service thread); created by the first start() and kept across restarts,
  // so resumption handles outlive a restart like the real service's.
  std::unique_ptr<backend::LiveServer> live;

  // Shared with API callers.
  backend::LiveFaults live_faults;  // own mutex
  mutable std::mutex mutex;
  Faults faults;
  std::vector<LoggedRequest> log;
  std::uint64_t next_record = 1;
};

namespace {

void log_emit(int level, const char *line) {
  // lws lines end with a newline already.
  std::fprintf(stderr, "gemstream-backend[lws %d]: %s", level, line);
}

} // namespace

void LocalBackend::Impl::start() {
  if (context)
    throw std::logic_error("LocalBackend::start(): already started");

  static std::once_flag log_once;
  std::call_once(log_once, [] { lws_set_log_level(LLL_ERR | LLL_WARN, log_emit); });

  protocols[0] = {};
  protocols[0].name = "gemstream";
  protocols[0].callback = &Impl::callback;
  protocols[0].per_session_data_size = sizeof(Session);
  protocols[0].rx_buffer_size = 0;
  protocols[1] = {};  // terminator

  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  if (options.bind_address.find(':') == std::string::npos)
    info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  info.user = this;
  info.port = options.port;
  info.iface = options.bind_address.c_str();
  info.protocols = protocols.data();
  info.server_string = "gemstream-local-backend";
  info.max_http_header_data = 16384;
  info.pt_serv_buf_size = 64 * 1024;
  // A response may wait on latency faults and renders; lws must not time the connection out
  // meanwhile.
  info.timeout_secs = 300;

  lws_context *ctx = lws_create_context(&info);
  if (!ctx)
    throw std::runtime_error("local backend: cannot create the libwebsockets context");
  lws_vhost *vhost = lws_create_vhost(ctx, &info);
  const int bound = vhost ? lws_get_vhost_listen_port(vhost) : -1;
  if (!vhost || bound <= 0) {
    lws_context_destroy(ctx);
    throw std::runtime_error("local backend: cannot listen on " + options.bind_address + ":" +
                             std::to_string(options.port) +
                             " (address in use or not available)");
  }

  if (!live) {
    try {
      live = std::make_unique<backend::LiveServer>(
          backend::LiveServerOptions{options.required_api_key, capabilities_file()}, live_faults);
    } catch (...) {
      lws_context_destroy(ctx);
      throw;
    }
  }
  context = ctx;
  port = static_cast<std::uint16_t>(bound);
  {
    std::lock_guard lock(mutex);
    mailbox = std::make_shared<Mailbox>();
    mailbox->context = ctx;
  }
  live->attach(ctx, [box = mailbox](std::function<void()> task) {
    box->post_task(std::move(task));
  });
  stopping = false;
  service = std::thread([this] {
    while (!stopping.load(std::memory_order_acquire)) {
      if (lws_service(context, 0) < 0)
        break;
    }
  });
}

void LocalBackend::Impl::stop() {
  if (!context)
    return;
  stopping.store(true, std::memory_order_release);
  lws_cancel_service(context);
  service.join();
  {
    std::lock_guard lock(mailbox->mutex);
    mailbox->context = nullptr;
    mailbox->done.clear();
    mailbox->tasks.clear();
  }
  {
    std::lock_guard lock(mutex);
    mailbox.reset();
  }
  lws_context_destroy(context);  // Live sessions see LWS_CALLBACK_CLOSED here
  context = nullptr;
  live->detach();
  transactions.clear();
  port = 0;
}

std::string LocalBackend::Impl::base_url() const {
  const bool v6 = options.bind_address.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + options.bind_address + "]" : options.bind_address) + ":" +
         std::to_string(port.load());
}

std::filesystem::path LocalBackend::Impl::capabilities_file() const {
  std::filesystem::path dir = options.data_dir;
  if (dir.empty()) {
    if (const char *env = std::getenv("GEMSTREAM_DATA_DIR"); env && *env)
      dir = env;
  }
#ifdef GEMSTREAM_SOURCE_DATA_DIR
  if (dir.empty()) {
    const std::filesystem::path source = GEMSTREAM_SOURCE_DATA_DIR;
    std::error_code ec;
    if (std::filesystem::is_directory(source / "config", ec))
      dir = source;
  }
#endif
#ifdef GEMSTREAM_INSTALL_DATA_DIR
  if (dir.empty())
    dir = GEMSTREAM_INSTALL_DATA_DIR;
#endif
  return dir.empty() ? dir : dir / "config" / "agent_capabilities.json";
}

void LocalBackend::Impl::post_task(std::function<void()> task) {
  std::shared_ptr<Mailbox> box;
  {
    std::lock_guard lock(mutex);
    box = mailbox;
  }
  if (box)
    box->post_task(std::move(task));
}

std::string LocalBackend::Impl::random_id(std::size_t length, std::string_view alphabet) {
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::string id(length, ' ');
  for (auto &c : id)
    c = alphabet[pick(rng)];
  return id;
}

Transaction *LocalBackend::Impl::find(std::uint64_t id) {
  auto it = transactions.find(id);
  return it == transactions.end() ? nullptr : it->second.get();
}

void LocalBackend::Impl::drop_transaction(Session *session) {
  if (session && session->transaction) {
    transactions.erase(session->transaction);
    session->transaction = 0;
  }
}

void LocalBackend::Impl::record(Transaction &tx, bool api) {
  std::lock_guard lock(mutex);
  tx.due = Clock::now() + (api ? faults.latency : std::chrono::milliseconds(0));
  if (api && !tx.record) {
    tx.record = next_record++;
    log.push_back({tx.record, {tx.method, tx.path, tx.query, tx.headers, tx.body, 0}});
  }
}

void LocalBackend::Impl::record_upgrade(lws *wsi) {
  Transaction head;
  std::array<char, 1024> uri{};
  if (lws_hdr_copy(wsi, uri.data(), int(uri.size()), WSI_TOKEN_GET_URI) > 0)
    head.path = uri.data();
  read_request_head(wsi, head);
  record(head, /*api=*/true);
  record_status(head.record, 101);
}

void LocalBackend::Impl::record_status(std::uint64_t seq, int status) {
  if (!seq)
    return;
  std::lock_guard lock(mutex);
  for (auto it = log.rbegin(); it != log.rend(); ++it) {
    if (it->seq == seq) {
      it->request.status = status;
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// lws glue

int LocalBackend::Impl::callback(lws *wsi, lws_callback_reasons reason, void *user, void *in,
                                 size_t len) {
  auto *self = static_cast<Impl *>(lws_context_user(lws_get_context(wsi)));
  auto *session = static_cast<Session *>(user);
  try {
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
      // Only the Live API endpoints upgrade to WebSocket.
      std::array<char, 1024> uri{};
      if (lws_hdr_copy(wsi, uri.data(), int(uri.size()), WSI_TOKEN_GET_URI) <= 0)
        return 1;
      return backend::LiveServer::is_live_path(uri.data()) ? 0 : 1;
    }
    case LWS_CALLBACK_ESTABLISHED:
      if (!session)
        return -1;
      self->record_upgrade(wsi);
      return self->live->callback(wsi, reason, session->live, in, len);
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_CLOSED:
      if (!session)
        return -1;
      return self->live->callback(wsi, reason, session->live, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
      return 0;
    case LWS_CALLBACK_HTTP:
      return self->on_http(wsi, session, {static_cast<const char *>(in), len});
    case LWS_CALLBACK_HTTP_BODY:
      self->on_body(session, static_cast<const char *>(in), len);
      return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
      if (Transaction *tx = session ? self->find(session->transaction) : nullptr;
          tx && !tx->response) {
        if (tx->rejection)
          self->deliver(*tx, *std::exchange(tx->rejection, std::nullopt));
        else
          self->on_complete(*tx);
      }
      return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
      return self->on_writeable(wsi, session);
    case LWS_CALLBACK_TIMER:
      if (session && session->live)
        return self->live->callback(wsi, reason, session->live, in, len);
      lws_callback_on_writable(wsi);
      return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
      self->drop_transaction(session);
      break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
      self->drain_mailbox();
      return 0;
    default:
      break;
    }
  } catch (const std::exception &e) {
    lwsl_err("local backend: request handling failed: %s\n", e.what());
    return -1;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int LocalBackend::Impl::on_http(lws *wsi, Session *session, std::string_view path) {
  drop_transaction(session);  // keep-alive: a new request on the same connection

  auto owned = std::make_unique<Transaction>();
  Transaction &tx = *owned;
  tx.id = next_transaction++;
  tx.wsi = wsi;
  tx.path = std::string(path);

  read_request_head(wsi, tx);

  transactions.emplace(tx.id, std::move(owned));
  session->transaction = tx.id;

  if (lower_ascii(tx.header("transfer-encoding")).find("chunked") != std::string::npos) {
    // lws 4.1 does not decode chunked request bodies on the server side.
    record(tx, /*api=*/true);
    Response r = error_response(411, "The local backend needs a Content-Length: chunked request "
                                     "bodies are not supported.");
    r.close = true;
    deliver(tx, std::move(r));
    return 0;
  }
  const bool has_body = tx.method != "GET" && tx.method != "HEAD" && tx.content_length > 0;
  if (!has_body) {
    on_complete(tx);
    return 0;
  }
  // lws leaves "Expect: 100-continue" to the application; without an answer curl stalls a
  // second before sending any body over 1 MB.
  const bool expects_continue = lower_ascii(tx.header("expect")) == "100-continue";
  if (tx.content_length > options.max_request_bytes) {
    record(tx, /*api=*/true);
    if (expects_continue) {
      // The client waits for the verdict before sending the body: answer now and close.
      Response r = payload_too_large();
      r.close = true;
      deliver(tx, std::move(r));
    } else {
      // Read and discard the body first: closing with unread input resets the connection
      // before the client has read the answer.
      tx.rejection = payload_too_large();
    }
    return 0;
  }
  if (expects_continue) {
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    std::array<unsigned char, LWS_PRE + sizeof kContinue> buffer;
    std::memcpy(buffer.data() + LWS_PRE, kContinue, sizeof kContinue - 1);
    if (lws_write(wsi, buffer.data() + LWS_PRE, sizeof kContinue - 1, LWS_WRITE_HTTP) < 0)
      return -1;
  }
  tx.body.reserve(std::size_t(tx.content_length));
  return 0;  // LWS_CALLBACK_HTTP_BODY_COMPLETION follows
}

void LocalBackend::Impl::on_body(Session *session, const char *data, std::size_t len) {
  Transaction *tx = session ? find(session->transaction) : nullptr;
  if (!tx || tx->response || tx->rejection)
    return;
  if (tx->body.size() + len > options.max_request_bytes) {
    tx->body.clear();
    tx->body.shrink_to_fit();
    record(*tx, /*api=*/true);
    tx->rejection = payload_too_large();
    return;
  }
  tx->body.append(data, len);
}

void LocalBackend::Impl::on_complete(Transaction &tx) {
  record(tx, tx.path.rfind("/_backend/", 0) != 0);

  Reply reply;
  try {
    reply = dispatch(tx);
  } catch (const json::exception &e) {
    reply = invalid_argument(std::string("Invalid JSON payload received. ") + e.what());
  } catch (const std::exception &e) {
    reply = error_response(500, std::string("Internal error in the local backend: ") + e.what());
  }

  if (auto *response = std::get_if<Response>(&reply)) {
    deliver(tx, std::move(*response));
    return;
  }
  // Hold the connection open without lws timing it out while the worker renders.
  lws_set_timeout(tx.wsi, NO_PENDING_TIMEOUT, 0);
  MediaWorkers::instance().post_image_job(
      [box = mailbox, id = tx.id, work = std::move(std::get<Work>(reply))] {
        Response r;
        try {
          r = work();
        } catch (const std::exception &e) {
          r = error_response(500, std::string("Rendering failed in the local backend: ") +
                                      e.what());
        }
        box->post(id, std::move(r));
      });
}

void LocalBackend::Impl::deliver(Transaction &tx, Response response) {
  record_status(tx.record, response.status);
  tx.response = std::move(response);
  tx.position = tx.response->begin;
  const auto now = Clock::now();
  if (tx.due > now) {
    const auto wait = std::chrono::duration_cast<std::chrono::microseconds>(tx.due - now);
    lws_set_timeout(tx.wsi, NO_PENDING_TIMEOUT, 0);
    lws_set_timer_usecs(tx.wsi, lws_usec_t(wait.count()));
  } else {
    lws_callback_on_writable(tx.wsi);
  }
}

void LocalBackend::Impl::drain_mailbox() {
  if (!mailbox)
    return;
  std::vector<std::pair<std::uint64_t, Response>> done;
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(mailbox->mutex);
    done.swap(mailbox->done);
    tasks.swap(mailbox->tasks);
  }
  for (auto &task : tasks)
    task();
  for (auto &[id, response] : done) {
    if (Transaction *tx = find(id))  // the client may have gone meanwhile
      deliver(*tx, std::move(response));
  }
}

int LocalBackend::Impl::on_writeable(lws *wsi, Session *session) {
  Transaction *tx = session ? find(session->transaction) : nullptr;
  if (!tx || !tx->response)
    return 0;
  if (tx->drop_now)
    return -1;
  Response &r = *tx->response;
  const std::uint64_t length = r.end - r.begin;

  auto finish = [&]() -> int {
    const bool close = r.close;
    drop_transaction(session);
    if (close)
      return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  };

  if (!tx->headers_sent) {
    std::array<unsigned char, LWS_PRE + 8192> buffer;
    unsigned char *start = buffer.data() + LWS_PRE;
    unsigned char *p = start;
    unsigned char *end = buffer.data() + buffer.size() - 1;
    if (lws_add_http_common_headers(wsi, unsigned(r.status),
                                    r.content_type.empty() ? nullptr : r.content_type.c_str(),
                                    lws_filepos_t(length), &p, end))
      return -1;
    for (const auto &[name, value] : r.headers) {
      const std::string key = name + ":";
      if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char *>(key.c_str()),
                                      reinterpret_cast<const unsigned char *>(value.data()),
                                      int(value.size()), &p, end))
        return -1;
    }
    if (r.close &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                     reinterpret_cast<const unsigned char *>("close"), 5, &p, end))
      return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
      return -1;
    tx->headers_sent = true;
    if (length == 0)
      return finish();
    lws_callback_on_writable(wsi);
    return 0;
  }

  std::uint64_t limit = r.end;
  if (r.drop_after)
    limit = std::min(limit, r.begin + *r.drop_after);
  if (tx->position >= limit)
    return -1;  // dropping with nothing left to send
  const std::size_t n = std::size_t(std::min<std::uint64_t>(kWriteChunk, limit - tx->position));
  const bool last = tx->position + n == r.end;
  std::memcpy(write_buffer.data() + LWS_PRE, r.body->data() + tx->position, n);
  if (lws_write(wsi, write_buffer.data() + LWS_PRE, n,
                last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < int(n))
    return -1;
  tx->position += n;
  if (last)
    return finish();
  // The drop happens on the next writeable callback, once lws has flushed these bytes.
  if (tx->position == limit)
    tx->drop_now = true;
  lws_callback_on_writable(wsi);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Routing

std::optional<Response> LocalBackend::Impl::check_api_key(const Transaction &tx) const {
  if (options.required_api_key.empty())
    return std::nullopt;
  std::string key = tx.header("x-goog-api-key");
  if (key.empty())
    key = query_param(tx.query, "key").value_or("");
  if (key.empty())
    return error_response(403, kUnregisteredCaller);
  if (key != options.required_api_key) {
    return error_response(
        400, kKeyInvalid,
        json::array({{{"@type", "type.googleapis.com/google.rpc.ErrorInfo"},
                      {"reason", "API_KEY_INVALID"},
                      {"domain", "googleapis.com"},
                      {"metadata", {{"service", "generativelanguage.googleapis.com"}}}},
                     {{"@type", "type.googleapis.com/google.rpc.LocalizedMessage"},
                      {"locale", "en-US"},
                      {"message", kKeyInvalid}}}));
  }
  return std::nullopt;
}

std::optional<Response> LocalBackend::Impl::take_fault() {
  int status = 0;
  std::chrono::seconds retry_after{0};
  {
    std::lock_guard lock(mutex);
    if (faults.fail_count <= 0)
      return std::nullopt;
    --faults.fail_count;
    status = faults.fail_status;
    retry_after = faults.retry_after;
  }
  json details = json::array();
  if (retry_after.count() > 0) {
    details.push_back({{"@type", "type.googleapis.com/google.rpc.RetryInfo"},
                       {"retryDelay", std::to_string(retry_after.count()) + "s"}});
  }
  Response r = error_response(status, fault_message(status), std::move(details));
  if (retry_after.count() > 0)
    r.headers.emplace_back("retry-after", std::to_string(retry_after.count()));
  return r;
}

Reply LocalBackend::Impl::dispatch(Transaction &tx) {
  const std::string_view path = tx.path;
  if (path.rfind("/_backend/", 0) == 0)
    return admin(tx);
  if (path.rfind("/_media/", 0) == 0)
    return media(tx);

  // /{version}/{rest}, or /upload/{version}/files for the Files API's uploads
  const bool upload = path.rfind("/upload/", 0) == 0;
  std::string_view rest = path.substr(upload ? 8 : path.empty() ? 0 : 1);
  const auto slash = rest.find('/');
  const std::string_view version = rest.substr(0, slash);
  if (slash == std::string_view::npos ||
      (version != "v1" && version != "v1beta" && version != "v1alpha"))
    return error_response(404, "The requested URL " + tx.path + " was not found on this server.");
  rest.remove_prefix(slash + 1);

  if (auto denied = check_api_key(tx))
    return std::move(*denied);
  if (auto fault = take_fault())
    return std::move(*fault);

  const auto files_reply = [&](backend::FilesReply reply) {
    Response r = reply.body.empty() ? Response{}
                                    : body_response(reply.status, kJsonType, std::move(reply.body));
    r.status = reply.status;
    r.headers = std::move(reply.headers);
    return r;
  };
  const auto files_request = [&] {
    return backend::FilesRequest{tx.method, tx.path, tx.query,
                                 [&tx](std::string_view name) { return tx.header(name); }, tx.body,
                                 base_url()};
  };
  if (upload) {
    if (rest != "files")
      return error_response(404, "The requested URL " + tx.path + " was not found on this server.");
    return files_reply(files_api.upload(files_request()));
  }
  if (rest == "files")
    return files_reply(files_api.files(files_request(), version, ""));

  auto method_not_found = [&] {
    return error_response(404, "Method not found: " + tx.method + " " + tx.path);
  };

  if (rest == "models") {
    if (tx.method != "GET")
      return method_not_found();
    json models = json::array();
    for (const auto &m : kModels)
      models.push_back(model_resource(m));
    return json_response({{"models", std::move(models)}});
  }

  if (rest.rfind("models/", 0) == 0) {
    std::string_view tail = rest.substr(7);
    const auto op = tail.find("/operations/");
    if (op != std::string_view::npos) {
      if (tx.method != "GET")
        return method_not_found();
      return get_operation("models/" + std::string(tail));
    }
    const auto colon = tail.find(':');
    const std::string_view model_id = tail.substr(0, colon);
    if (model_id.empty() || model_id.find('/') != std::string_view::npos)
      return method_not_found();
    const ModelInfo *model = find_model(model_id);
    if (colon == std::string_view::npos) {
      if (tx.method != "GET")
        return method_not_found();
      if (!model)
        return model_not_found(model_id, version, "get");
      return json_response(model_resource(*model));
    }
    const std::string_view method = tail.substr(colon + 1);
    if (tx.method != "POST")
      return method_not_found();
    const auto methods = model ? methods_of(model->kind) : std::vector<std::string_view>{};
    if (std::find(methods.begin(), methods.end(), method) == methods.end())
      return model_not_found(model_id, version, method);

    json body;
    try {
      body = json::parse(tx.body.empty() ? std::string_view("{}") : std::string_view(tx.body));
    } catch (const json::parse_error &e) {
      return invalid_argument("Invalid JSON payload received. Unexpected token at byte " +
                              std::to_string(e.byte) + ".");
    }
    if (!body.is_object())
      return invalid_argument("Invalid JSON payload received. Expected an object.");
    return model_method(*model, version, method, body, tx);
  }

  if (rest.rfind("files/", 0) == 0) {
    const std::string_view tail = rest.substr(6);
    const auto colon = tail.find(':');
    if (colon != std::string_view::npos && tail.substr(colon + 1) == "download" &&
        tx.method == "GET")
      return download(tail.substr(0, colon), tx);
    if (colon == std::string_view::npos && tail.find('/') == std::string_view::npos)
      return files_reply(files_api.files(files_request(), version, rest.substr(5)));
    return method_not_found();
  }

  return method_not_found();
}

Reply LocalBackend::Impl::model_method(const ModelInfo &model, std::string_view,
                                       std::string_view method, const json &body,
                                       const Transaction &tx) {
  if (method == "generateContent")
    return generate_content(model, body, false, false);
  if (method == "streamGenerateContent")
    return generate_content(model, body, true, query_param(tx.query, "alt") == "sse");
  if (method == "predict")
    return predict(model, body);
  if (method == "predictLongRunning")
    return predict_long_running(model, body);
  if (method == "countTokens") {
    const json *request = member(body, "generateContentRequest");
    const json &source = request ? *request : body;
    int tokens = 0;
    if (const json *contents = member(source, "contents"); contents && contents->is_array()) {
      for (const auto &content : *contents) {
        if (const json *parts = member(content, "parts"); parts && parts->is_array()) {
          for (const auto &part : *parts) {
            if (const json *text = member(part, "text"); text && text->is_string())
              tokens += text_tokens(text->get_ref<const std::string &>());
          }
        }
      }
    }
    return json_response(
        {{"totalTokens", tokens},
         {"promptTokensDetails", json::array({{{"modality", "TEXT"}, {"tokenCount", tokens}}})}});
  }
  return error_response(501, "Method " + std::string(method) + " is not implemented.");
}

// ---------------------------------------------------------------------------------------------
// generateContent

namespace {

// The real service rejects unknown fields: so does the local backend, which keeps the engine's
// requests honest.
std::optional<Response> unknown_field(const json &object,
                                      std::initializer_list<std::string_view> known,
                                      std::string_view where) {
  if (!object.is_object())
    return std::nullopt;
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string name = camel_case(it.key());
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string message = "Invalid JSON payload received. Unknown name \"" + it.key() + "\"";
      if (!where.empty())
        message += " at '" + std::string(where) + "'";
      message += ": Cannot find field.";
      return invalid_argument(message);
    }
  }
  return std::nullopt;
}

std::string invalid_value(std::string_view where, std::string_view type, const json &value) {
  return "Invalid value at '" + std::string(where) + "' (" + std::string(type) + "), " +
         dump(value);
}

struct GenerateResult {
  json response;
  bool stream = false;
  bool sse = false;
};

Response finish_generate(const GenerateResult &g) {
  if (!g.stream)
    return json_response(g.response);
  if (g.sse) {
    // One event carrying the whole answer: a stream that happens to have one chunk.
    return body_response(200, "text/event-stream",
                         "data: " + g.response.dump(-1, ' ', false, json::error_handler_t::replace) +
                             "\r\n\r\n");
  }
  return json_response(json::array({g.response}));
}

json usage(int prompt_text_tokens, int prompt_image_tokens, std::string_view output_modality,
           int output_tokens) {
  json prompt_details = json::array({{{"modality", "TEXT"}, {"tokenCount", prompt_text_tokens}}});
  if (prompt_image_tokens > 0)
    prompt_details.push_back({{"modality", "IMAGE"}, {"tokenCount", prompt_image_tokens}});
  const int prompt = prompt_text_tokens + prompt_image_tokens;
  return {{"promptTokenCount", prompt},
          {"candidatesTokenCount", output_tokens},
          {"totalTokenCount", prompt + output_tokens},
          {"promptTokensDetails", std::move(prompt_details)},
          {"candidatesTokensDetails",
           json::array({{{"modality", output_modality}, {"tokenCount", output_tokens}}})}};
}

} // namespace

Reply LocalBackend::Impl::generate_content(const ModelInfo &model, const json &body, bool stream,
                                           bool sse) {
  if (auto bad = unknown_field(body,
                               {"model", "contents", "tools", "toolConfig", "safetySettings",
                                "systemInstruction", "generationConfig", "cachedContent"},
                               ""))
    return std::move(*bad);

  const json *contents = member(body, "contents");
  if (!contents || !contents->is_array() || contents->empty())
    return invalid_argument("* GenerateContentRequest.contents: contents is not specified\n");

  std::string prompt;
  int input_images = 0;
  for (std::size_t i = 0; i < contents->size(); ++i) {
    const json &content = (*contents)[i];
    const json *parts = member(content, "parts");
    if (!parts || !parts->is_array() || parts->empty())
      return invalid_argument("* GenerateContentRequest.contents[" + std::to_string(i) +
                              "].parts: contents.parts must not be empty.\n");
    for (const auto &part : *parts) {
      if (const json *text = member(part, "text")) {
        if (!text->is_string())
          return invalid_argument(invalid_value("contents[" + std::to_string(i) + "].parts.text",
                                                "TYPE_STRING", *text));
        if (!prompt.empty())
          prompt += '\n';
        prompt += text->get_ref<const std::string &>();
      } else if (const json *inline_data = member(part, "inlineData")) {
        const json *mime = member(*inline_data, "mimeType");
        if (mime && mime->is_string() && mime->get_ref<const std::string &>().rfind("image/", 0) == 0)
          ++input_images;
      }
    }
  }

  std::vector<std::string> modalities;
  std::string aspect_ratio = "1:1";
  if (const json *config = member(body, "generationConfig")) {
    if (auto bad = unknown_field(
            *config,
            {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
             "_responseJsonSchema", "responseModalities", "candidateCount", "maxOutputTokens",
             "temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty",
             "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
             "thinkingConfig", "imageConfig", "mediaResolution"},
            "generation_config"))
      return std::move(*bad);
    if (const json *m = member(*config, "responseModalities")) {
      if (!m->is_array())
        return invalid_argument(invalid_value("generation_config.response_modalities",
                                              "TYPE_ENUM", *m));
      for (std::size_t i = 0; i < m->size(); ++i) {
        const json &v = (*m)[i];
        static constexpr std::string_view kModalities[] = {"MODALITY_UNSPECIFIED", "TEXT", "IMAGE",
                                                           "AUDIO"};
        if (!v.is_string() || std::find(std::begin(kModalities), std::end(kModalities),
                                        v.get_ref<const std::string &>()) == std::end(kModalities))
          return invalid_argument(invalid_value(
              "generation_config.response_modalities[" + std::to_string(i) + "]",
              "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality",
              v));
        modalities.push_back(v.get<std::string>());
      }
    }
    if (const json *image_config = member(*config, "imageConfig")) {
      if (auto bad = unknown_field(*image_config, {"aspectRatio", "imageSize"},
                                   "generation_config.image_config"))
        return std::move(*bad);
      if (const json *ar = member(*image_config, "aspectRatio")) {
        if (!ar->is_string())
          return invalid_argument(invalid_value("generation_config.image_config.aspect_ratio",
                                                "TYPE_STRING", *ar));
        aspect_ratio = ar->get<std::string>();
      }
      if (const json *size = member(*image_config, "imageSize")) {
        if (!size->is_string() || (*size != "1K" && *size != "2K" && *size != "4K"))
          return invalid_argument("Invalid imageConfig.imageSize " + dump(*size) +
                                  ": supported values are 1K, 2K and 4K.");
      }
    }
  }

  const bool wants_image =
      std::find(modalities.begin(), modalities.end(), "IMAGE") != modalities.end();
  const bool blocked = prompt.find(kSafetyTrigger) != std::string::npos;
  const int prompt_tokens = text_tokens(prompt);
  const int image_tokens = input_images * kImageInputTokens;
  const std::string model_version(model.id);
  const std::string response_id =
      random_id(22, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");

  if (model.kind == ModelKind::Image && wants_image) {
    const auto size = backend::image_size_for(model_version, aspect_ratio);
    const int width = size.first;
    const int height = size.second;
    if (width <= 0 || height <= 0) {
      std::string supported;
      for (const char *ar : {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9",
                             "21:9"}) {
        if (backend::image_size_for(model_version, ar).first > 0)
          supported += std::string(supported.empty() ? "" : ", ") + ar;
      }
      return invalid_argument("Unsupported aspect ratio \"" + aspect_ratio + "\" for " +
                              model_version + ". Supported values: " + supported + ".");
    }
    if (blocked) {
      GenerateResult g;
      g.stream = stream;
      g.sse = sse;
      g.response = {{"candidates", json::array({{{"finishReason", "IMAGE_SAFETY"}, {"index", 0}}})},
                    {"usageMetadata", usage(prompt_tokens, image_tokens, "IMAGE", 0)},
                    {"modelVersion", model_version},
                    {"responseId", response_id}};
      g.response["usageMetadata"].erase("candidatesTokensDetails");
      return finish_generate(g);
    }
    return Work([=] {
      backend::ImageSpec spec;
      spec.width = width;
      spec.height = height;
      spec.prompt = prompt;
      GenerateResult g;
      g.stream = stream;
      g.sse = sse;
      g.response = {
          {"candidates",
           json::array({{{"content",
                          {{"role", "model"},
                           {"parts", json::array({{{"inlineData",
                                                    {{"mimeType", "image/png"},
                                                     {"data", base64_encode(
                                                                  backend::render_png(spec))}}}}})}}},
                         {"finishReason", "STOP"},
                         {"index", 0}}})},
          {"usageMetadata", usage(prompt_tokens, image_tokens, "IMAGE", kImageOutputTokens)},
          {"modelVersion", model_version},
          {"responseId", response_id}};
      return finish_generate(g);
    });
  }

  if (model.kind == ModelKind::Text && wants_image)
    return invalid_argument("Model does not support the requested response modalities: image");

  if (model.kind == ModelKind::Text && !blocked) {
    auto parsed = backend::parse_text_request(
        body, [this](std::string_view uri, std::string_view mime)
                  -> std::variant<backend::MediaInput, backend::HttpError> {
          auto file = files_api.resolve(uri);
          if (auto *error = std::get_if<backend::FilesError>(&file))
            return backend::HttpError{error->status, error->message};
          auto &content = std::get<backend::FileContent>(file);
          return backend::MediaInput{mime.empty() ? content.mime_type : std::string(mime),
                                     content.data, std::nullopt, std::nullopt, std::nullopt};
        });
    if (auto *error = std::get_if<backend::HttpError>(&parsed))
      return error_response(error->status, error->message);
    auto &request = std::get<backend::TextRequest>(parsed);
    if (!request.media.empty() || request.google_search) {
      return Work([request = std::move(request), model_version, response_id, stream, sse] {
        GenerateResult g;
        g.stream = stream;
        g.sse = sse;
        g.response = backend::answer_text_request(request, model_version, response_id);
        return finish_generate(g);
      });
    }
  }

  GenerateResult g;
  g.stream = stream;
  g.sse = sse;
  if (blocked) {
    g.response = {{"candidates", json::array({{{"finishReason", "SAFETY"}, {"index", 0}}})},
                  {"usageMetadata", usage(prompt_tokens, image_tokens, "TEXT", 0)},
                  {"modelVersion", model_version},
                  {"responseId", response_id}};
    return finish_generate(g);
  }
  std::string answer;
  if (model.kind == ModelKind::Image)
    answer = "I can describe the image you asked for (ask for the IMAGE response modality to "
             "receive it): ";
  else
    answer = "Local backend answer to: ";
  answer += prompt.size() > 200 ? prompt.substr(0, 200) + "..." : prompt;
  const int answer_tokens = text_tokens(answer);
  g.response = {
      {"candidates",
       json::array({{{"content",
                      {{"role", "model"}, {"parts", json::array({{{"text", answer}}})}}},
                     {"finishReason", "STOP"},
                     {"index", 0}}})},
      {"usageMetadata", usage(prompt_tokens, image_tokens, "TEXT", answer_tokens)},
      {"modelVersion", model_version},
      {"responseId", response_id}};
  return finish_generate(g);
}

// ---------------------------------------------------------------------------------------------
// Imagen predict

Reply LocalBackend::Impl::predict(const ModelInfo &model, const json &body) {
  const json *instances = member(body, "instances");
  if (!instances || !instances->is_array() || instances->empty())
    return invalid_argument("instances must contain one instance with a prompt.");
  const json *prompt_value = member((*instances)[0], "prompt");
  if (!prompt_value || !prompt_value->is_string() ||
      prompt_value->get_ref<const std::string &>().empty())
    return invalid_argument("instances[0].prompt is required.");
  const std::string prompt = prompt_value->get<std::string>();

  static const json kEmpty = json::object();
  const json *params = member(body, "parameters");
  if (!params)
    params = &kEmpty;
  if (!params->is_object())
    return invalid_argument("parameters must be an object.");

  // The Gemini API's Imagen default is 4 samples.
  int sample_count = 4;
  if (const json *n = member(*params, "sampleCount")) {
    if (!n->is_number_integer() || n->get<int>() < 1 || n->get<int>() > 4)
      return invalid_argument("sampleCount must be an integer from 1 to 4, got " + dump(*n) + ".");
    sample_count = n->get<int>();
  }
  std::string aspect_ratio = "1:1";
  if (const json *ar = member(*params, "aspectRatio")) {
    if (!ar->is_string())
      return invalid_argument("aspectRatio must be a string, got " + dump(*ar) + ".");
    aspect_ratio = ar->get<std::string>();
  }
  auto [width, height] = backend::image_size_for(std::string(model.id), aspect_ratio);
  if (width <= 0 || height <= 0)
    return invalid_argument("Unsupported aspect ratio \"" + aspect_ratio + "\" for " +
                            std::string(model.id) + ". Supported values: 1:1, 3:4, 4:3, 9:16, 16:9.");
  if (const json *size = member(*params, "sampleImageSize")) {
    if (!size->is_string() || (*size != "1K" && *size != "2K"))
      return invalid_argument("sampleImageSize must be 1K or 2K, got " + dump(*size) + ".");
    if (*size == "2K") {
      if (model.id == "imagen-4.0-fast-generate-001")
        return invalid_argument("sampleImageSize 2K is not supported by " +
                                std::string(model.id) + ".");
      width *= 2;
      height *= 2;
    }
  }
  if (const json *person = member(*params, "personGeneration")) {
    if (!person->is_string() ||
        (*person != "dont_allow" && *person != "allow_adult" && *person != "allow_all"))
      return invalid_argument("personGeneration must be dont_allow, allow_adult or allow_all, got " +
                              dump(*person) + ".");
  }
  if (const json *output = member(*params, "outputOptions")) {
    const json *mime = member(*output, "mimeType");
    if (mime && *mime != "image/png")
      return invalid_argument("outputOptions.mimeType " + dump(*mime) +
                              " is not supported by the local backend: use image/png.");
  }
  const json *rai = member(*params, "includeRaiReason");
  const bool include_rai = rai && rai->is_boolean() && rai->get<bool>();

  if (prompt.find(kSafetyTrigger) != std::string::npos) {
    // Without includeRaiReason the real API drops filtered samples silently: `{}` when all are.
    if (!include_rai)
      return json_response(json::object());
    json predictions = json::array();
    for (int i = 0; i < sample_count; ++i)
      predictions.push_back(
          {{"raiFilteredReason",
            "Your current safety filter threshold filtered out the generated image. You will not "
            "be charged. Please try rephrasing the prompt. Support codes: 56562880"}});
    return json_response({{"predictions", std::move(predictions)}});
  }

  return Work([=, w = width, h = height] {
    backend::ImageSpec spec;
    spec.width = w;
    spec.height = h;
    spec.prompt = prompt;
    // render_png is deterministic, so every sample is the same picture: render it once.
    const std::string encoded = base64_encode(backend::render_png(spec));
    json predictions = json::array();
    for (int i = 0; i < sample_count; ++i)
      predictions.push_back({{"bytesBase64Encoded", encoded}, {"mimeType", "image/png"}});
    return json_response({{"predictions", std::move(predictions)}});
  });
}

// ---------------------------------------------------------------------------------------------
// Veo

Reply LocalBackend::Impl::predict_long_running(const ModelInfo &model, const json &body) {
  const json *instances = member(body, "instances");
  if (!instances || !instances->is_array() || instances->empty() || !(*instances)[0].is_object())
    return invalid_argument("instances must contain one instance with a prompt.");
  const json &instance = (*instances)[0];

  std::string prompt;
  if (const json *p = member(instance, "prompt")) {
    if (!p->is_string())
      return invalid_argument("instances[0].prompt must be a string.");
    prompt = p->get<std::string>();
  }
  std::string start_image;
  if (const json *image = member(instance, "image")) {
    const json *data = member(*image, "bytesBase64Encoded");
    const json *mime = member(*image, "mimeType");
    if (!data || !data->is_string())
      return invalid_argument("instances[0].image.bytesBase64Encoded is required.");
    if (!mime || (*mime != "image/png" && *mime != "image/jpeg"))
      return invalid_argument("instances[0].image.mimeType must be image/png or image/jpeg.");
    auto decoded = base64_decode(data->get_ref<const std::string &>());
    if (!decoded || decoded->empty())
      return invalid_argument("instances[0].image.bytesBase64Encoded is not valid base64.");
    start_image = std::move(*decoded);
  }
  if (prompt.empty() && start_image.empty())
    return invalid_argument("instances[0] needs a prompt or an image.");

  static const json kEmpty = json::object();
  const json *params = member(body, "parameters");
  if (!params)
    params = &kEmpty;
  if (!params->is_object())
    return invalid_argument("parameters must be an object.");
  if (member(*params, "generateAudio"))
    return invalid_argument("generateAudio parameter is not supported in Gemini API.");

  std::string aspect_ratio = "16:9";
  if (const json *ar = member(*params, "aspectRatio")) {
    if (*ar != "16:9" && *ar != "9:16")
      return invalid_argument("Unsupported aspectRatio " + dump(*ar) +
                              ": supported values are 16:9 and 9:16.");
    aspect_ratio = ar->get<std::string>();
  }
  std::string resolution = "720p";
  if (const json *r = member(*params, "resolution")) {
    if (*r != "720p" && *r != "1080p")
      return invalid_argument("Unsupported resolution " + dump(*r) +
                              ": supported values are 720p and 1080p.");
    resolution = r->get<std::string>();
  }
  if (resolution == "1080p" && aspect_ratio != "16:9")
    return invalid_argument("Resolution 1080p is only supported with aspect ratio 16:9.");

  int seconds = 8;
  if (const json *d = member(*params, "durationSeconds")) {
    // int32 fields may travel as numbers or numeric strings in proto JSON.
    int value = 0;
    bool ok = false;
    if (d->is_number_integer()) {
      value = d->get<int>();
      ok = true;
    } else if (d->is_string()) {
      const auto &s = d->get_ref<const std::string &>();
      ok = std::from_chars(s.data(), s.data() + s.size(), value).ec == std::errc();
    }
    if (!ok || (value != 4 && value != 6 && value != 8))
      return invalid_argument("Unsupported durationSeconds " + dump(*d) +
                              ": supported values are 4, 6 and 8.");
    seconds = value;
  }
  if (resolution == "1080p" && seconds != 8)
    return invalid_argument("Resolution 1080p requires durationSeconds 8.");
  if (const json *n = member(*params, "sampleCount")) {
    if (*n != 1)
      return invalid_argument("sampleCount must be 1 for " + std::string(model.id) + ", got " +
                              dump(*n) + ".");
  }
  if (const json *person = member(*params, "personGeneration")) {
    if (*person != "allow_all" && *person != "allow_adult" && *person != "dont_allow")
      return invalid_argument("personGeneration must be allow_all, allow_adult or dont_allow, "
                              "got " + dump(*person) + ".");
  }
  if (const json *negative = member(*params, "negativePrompt"); negative && !negative->is_string())
    return invalid_argument("negativePrompt must be a string.");

  Operation op;
  op.model = std::string(model.id);
  op.filtered = prompt.find(kSafetyTrigger) != std::string::npos;
  if (!op.filtered) {
    backend::VideoSpec spec;
    const bool full_hd = resolution == "1080p";
    spec.width = aspect_ratio == "16:9" ? (full_hd ? 1920 : 1280) : 720;
    spec.height = aspect_ratio == "16:9" ? (full_hd ? 1080 : 720) : 1280;
    spec.fps = 24;
    spec.seconds = seconds;
    spec.prompt = prompt;
    spec.start_image = std::move(start_image);
    op.render = MediaWorkers::instance().render_video(spec);
  }
  const std::string name = "models/" + op.model + "/operations/" +
                           random_id(12, "abcdefghijklmnopqrstuvwxyz0123456789");
  operations.emplace(name, std::move(op));
  return json_response({{"name", name}});
}

Response LocalBackend::Impl::get_operation(const std::string &name) {
  auto it = operations.find(name);
  if (it == operations.end())
    return error_response(404, kNotFound);
  Operation &op = it->second;
  int polls_needed = 0;
  {
    std::lock_guard lock(mutex);
    polls_needed = faults.polls_until_done;
  }
  ++op.polls;
  const bool rendered =
      op.filtered || op.render.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  if (op.polls < polls_needed || !rendered)
    return json_response({{"name", name}});  // the real API omits "done" while running

  json result = {{"name", name}, {"done", true}};
  if (op.filtered) {
    result["response"] = {
        {"@type", "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"},
        {"generateVideoResponse",
         {{"raiMediaFilteredCount", 1},
          {"raiMediaFilteredReasons",
           json::array({"Unable to generate videos because the prompt violates our usage "
                        "guidelines. Please rephrase the prompt and try again. Support codes: "
                        "58061214"})}}}};
    return json_response(result);
  }
  Blob video;
  try {
    video = op.render.get();
  } catch (const std::exception &e) {
    result["error"] = {{"code", 13}, {"message", std::string("Video generation failed: ") + e.what()}};
    return json_response(result);
  }
  if (op.file_id.empty()) {
    op.file_id = random_id(12, "abcdefghijklmnopqrstuvwxyz0123456789");
    files[op.file_id] = {video, "video/mp4", random_id(32, "0123456789abcdef")};
  }
  result["response"] = {
      {"@type", "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"},
      {"generateVideoResponse",
       {{"generatedSamples",
         json::array({{{"video",
                        {{"uri", base_url() + "/v1beta/files/" + op.file_id +
                                     ":download?alt=media"}}}}})}}}};
  return json_response(result);
}

// ---------------------------------------------------------------------------------------------
// Files and media

Response LocalBackend::Impl::download(std::string_view file_id, const Transaction &) {
  auto it = files.find(std::string(file_id));
  if (it == files.end())
    return error_response(404, kNotFound);
  // Like the real service: redirect to a short-lived URL on the media host that needs no key.
  Response r;
  r.status = 302;
  r.headers.emplace_back("location",
                         base_url() + "/_media/" + it->first + "?token=" + it->second.token);
  return r;
}

Reply LocalBackend::Impl::media(const Transaction &tx) {
  if (tx.method != "GET")
    return error_response(404, "Method not found: " + tx.method + " " + tx.path);
  const std::string id = tx.path.substr(std::string_view("/_media/").size());
  auto it = files.find(id);
  if (it == files.end())
    return error_response(404, kNotFound);
  if (query_param(tx.query, "token") != it->second.token)
    return error_response(403, "The media link is invalid or has expired.");

  const StoredFile &file = it->second;
  Response r;
  r.status = 200;
  r.content_type = file.mime_type;
  r.body = file.data;
  r.begin = 0;
  r.end = file.data->size();
  r.headers.emplace_back("accept-ranges", "bytes");

  // Single ranges ("bytes=N-" and "bytes=N-M"), enough for resuming an interrupted download.
  const std::string range = tx.header("range");
  if (range.rfind("bytes=", 0) == 0 && range.find(',') == std::string::npos) {
    const std::string_view spec = std::string_view(range).substr(6);
    const auto dash = spec.find('-');
    std::uint64_t first = 0;
    std::uint64_t last = r.end ? r.end - 1 : 0;
    bool ok = dash != std::string_view::npos && dash > 0 &&
              std::from_chars(spec.data(), spec.data() + dash, first).ec == std::errc();
    if (ok && dash + 1 < spec.size()) {
      ok = std::from_chars(spec.data() + dash + 1, spec.data() + spec.size(), last).ec ==
           std::errc();
      last = std::min<std::uint64_t>(last, r.end - 1);
    }
    if (!ok || first >= r.end || first > last) {
      Response bad = error_response(416, "Requested range not satisfiable.");
      bad.headers.emplace_back("content-range", "bytes */" + std::to_string(r.end));
      return bad;
    }
    r.status = 206;
    r.headers.emplace_back("content-range", "bytes " + std::to_string(first) + "-" +
                                                std::to_string(last) + "/" +
                                                std::to_string(r.end));
    r.begin = first;
    r.end = last + 1;
  }

  {
    std::lock_guard lock(mutex);
    if (faults.drop_download_after) {
      r.drop_after = faults.drop_download_after;
      faults.drop_download_after.reset();
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Admin

Reply LocalBackend::Impl::admin(const Transaction &tx) {
  if (tx.path == "/_backend/faults") {
    auto state = [this](const Faults &f) {
      json j = faults_json(f);
      j["live"] = live_faults.to_json();
      j["live"]["sessions"] = live ? live->session_count() : 0;
      return j;
    };
    if (tx.method == "GET") {
      Faults current;
      {
        std::lock_guard lock(mutex);
        current = faults;
      }
      return json_response(state(current));
    }
    if (tx.method != "POST")
      return error_response(404, "Method not found: " + tx.method + " " + tx.path);
    json body;
    try {
      body = json::parse(tx.body.empty() ? std::string_view("{}") : std::string_view(tx.body));
    } catch (const json::parse_error &e) {
      return invalid_argument(std::string("Invalid JSON payload received. ") + e.what());
    }
    if (auto bad = unknown_field(body,
                                 {"failNext", "latencyMs", "dropNextDownloadAfter",
                                  "pollsUntilDone", "reset", "live"},
                                 ""))
      return std::move(*bad);

    auto as_int = [](const json &v, std::string_view what, long long min,
                     long long max) -> long long {
      if (!v.is_number_integer() || v.get<long long>() < min || v.get<long long>() > max)
        throw std::invalid_argument(std::string(what) + " must be an integer from " +
                                    std::to_string(min) + " to " + std::to_string(max));
      return v.get<long long>();
    };
    Faults updated;
    std::optional<backend::CloseSpec> close_live;
    try {
      const json *reset = member(body, "reset");
      const bool resetting = reset && *reset == true;
      if (resetting)
        live_faults.reset();
      if (const json *live_request = member(body, "live")) {
        close_live = live_faults.apply(*live_request);
        if (member(*live_request, "goAwayAfterMs") && live)
          live->reschedule_go_away();
      } else if (resetting && live) {
        live->reschedule_go_away();
      }
      std::lock_guard lock(mutex);
      updated = faults;
      if (resetting) {
        updated = Faults{};
        updated.polls_until_done = std::max(1, options.polls_until_done);
      }
      if (const json *fail = member(body, "failNext")) {
        if (auto bad = unknown_field(*fail, {"count", "status", "retryAfterS"}, "fail_next"))
          return std::move(*bad);
        const json *count = member(*fail, "count");
        const json *status = member(*fail, "status");
        updated.fail_count = int(count ? as_int(*count, "fail_next.count", 0, 1000000) : 1);
        updated.fail_status = int(status ? as_int(*status, "fail_next.status", 400, 599) : 503);
        const json *retry = member(*fail, "retryAfterS");
        updated.retry_after =
            std::chrono::seconds(retry ? as_int(*retry, "fail_next.retry_after_s", 0, 86400) : 0);
      }
      if (const json *latency = member(body, "latencyMs"))
        updated.latency = std::chrono::milliseconds(as_int(*latency, "latency_ms", 0, 600000));
      if (const json *drop = member(body, "dropNextDownloadAfter")) {
        if (drop->is_null())
          updated.drop_download_after.reset();
        else
          updated.drop_download_after =
              std::uint64_t(as_int(*drop, "drop_next_download_after", 0, 1ll << 50));
      }
      if (const json *polls = member(body, "pollsUntilDone"))
        updated.polls_until_done = int(as_int(*polls, "polls_until_done", 1, 1000000));
      faults = updated;
    } catch (const std::invalid_argument &e) {
      return invalid_argument(e.what());
    }
    if (close_live && live)
      live->close_sessions(*close_live);  // admin requests run on the loop already
    return json_response(state(updated));
  }

  if (tx.path == "/_backend/requests") {
    std::lock_guard lock(mutex);
    if (tx.method == "DELETE") {
      log.clear();
      return json_response(json::object());
    }
    if (tx.method != "GET")
      return error_response(404, "Method not found: " + tx.method + " " + tx.path);
    json list = json::array();
    for (const auto &entry : log) {
      const RecordedRequest &r = entry.request;
      json headers = json::object();
      for (const auto &[name, value] : r.headers)
        headers[name] = (name == "x-goog-api-key" || name == "authorization") ? "REDACTED" : value;
      list.push_back({{"method", r.method},
                      {"path", r.path},
                      {"query", redact_query(r.query)},
                      {"headers", std::move(headers)},
                      {"body", r.body},
                      {"status", r.status}});
    }
    return json_response({{"requests", std::move(list)}});
  }
  return error_response(404, "Unknown admin endpoint " + tx.path +
                                 " (have /_backend/faults and /_backend/requests).");
}

// ---------------------------------------------------------------------------------------------
// Public API

LocalBackend::LocalBackend(LocalBackendOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

LocalBackend::~LocalBackend() { stop(); }

void LocalBackend::start() { impl_->start(); }

void LocalBackend::stop() { impl_->stop(); }

std::uint16_t LocalBackend::port() const { return impl_->port.load(); }

std::string LocalBackend::base_url() const { return impl_->base_url(); }

void LocalBackend::fail_next(int count, int http_status, std::chrono::seconds retry_after) {
  if (http_status < 400 || http_status > 599)
    throw std::invalid_argument("LocalBackend::fail_next: status must be 4xx or 5xx, got " +
                                std::to_string(http_status));
  std::lock_guard lock(impl_->mutex);
  impl_->faults.fail_count = std::max(0, count);
  impl_->faults.fail_status = http_status;
  impl_->faults.retry_after = std::max(std::chrono::seconds(0), retry_after);
}

void LocalBackend::set_latency(std::chrono::milliseconds latency) {
  std::lock_guard lock(impl_->mutex);
  impl_->faults.latency = std::max(std::chrono::milliseconds(0), latency);
}

void LocalBackend::drop_next_download_after(std::uint64_t bytes) {
  std::lock_guard lock(impl_->mutex);
  impl_->faults.drop_download_after = bytes;
}

void LocalBackend::set_polls_until_done(int polls) {
  std::lock_guard lock(impl_->mutex);
  impl_->faults.polls_until_done = std::max(1, polls);
}

void LocalBackend::drop_live_after_chunks(int chunks) {
  impl_->live_faults.drop_after_chunks(chunks);
}

void LocalBackend::send_malformed_live_message(LiveMalformed kind) {
  impl_->live_faults.send_malformed(kind == LiveMalformed::InvalidJson
                                        ? backend::MalformedKind::InvalidJson
                                        : backend::MalformedKind::WrongTypes);
}

namespace {

void check_close_code(const char *method, int code) {
  if (code < 1000 || code > 4999)
    throw std::invalid_argument(std::string("LocalBackend::") + method +
                                ": a close code is 1000 to 4999, got " + std::to_string(code));
}

} // namespace

void LocalBackend::fail_next_live_setup(int code, std::string reason) {
  check_close_code("fail_next_live_setup", code);
  impl_->live_faults.fail_next_setup({code, std::move(reason)});
}

void LocalBackend::close_live_sessions(int code, std::string reason) {
  check_close_code("close_live_sessions", code);
  Impl *impl = impl_.get();
  impl->post_task([impl, close = backend::CloseSpec{code, std::move(reason)}] {
    impl->live->close_sessions(close);
  });
}

void LocalBackend::set_live_go_away(std::chrono::milliseconds after,
                                    std::chrono::milliseconds time_left) {
  impl_->live_faults.set_go_away(after, time_left);
  Impl *impl = impl_.get();
  impl->post_task([impl] { impl->live->reschedule_go_away(); });
}

std::size_t LocalBackend::live_session_count() const {
  return impl_->live ? impl_->live->session_count() : 0;
}

std::vector<LiveAudioCount> LocalBackend::live_audio() const {
  std::vector<LiveAudioCount> out;
  if (impl_->live)
    for (const backend::AudioCount &c : impl_->live->audio_counts())
      out.push_back({c.received_bytes, c.resumed_bytes, c.open});
  return out;
}

std::vector<RecordedRequest> LocalBackend::requests() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<RecordedRequest> out;
  out.reserve(impl_->log.size());
  for (const auto &entry : impl_->log)
    out.push_back(entry.request);
  return out;
}

void LocalBackend::clear_requests() {
  std::lock_guard lock(impl_->mutex);
  impl_->log.clear();
}

} // namespace gemstream
