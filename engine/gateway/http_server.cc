#include "http_server.h"

#include "gemstream/error.h"

#include <libwebsockets.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace gemstream::gateway {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kWriteChunk = 64 * 1024;
constexpr std::size_t kHeaderBuffer = 8192;
constexpr std::uint64_t kMaxDiscardedBody = 16 << 20;
constexpr int kCloseDrainSeconds = 5;

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (auto &c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && lower_ascii(a) == lower_ascii(b);
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/')
    return out;
  path.remove_prefix(1);
  while (true) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos)
      break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

// The request-time pieces lws keeps in its header table: only readable while the header table
// is attached (HTTP callbacks, and a WebSocket upgrade until ESTABLISHED returns).
struct RequestHead {
  std::string method;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  Headers headers;
  std::optional<std::uint64_t> content_length;

  std::string header(std::string_view name) const {
    for (const auto &[k, v] : headers)
      if (k == name)
        return v;
    return {};
  }
};

std::optional<std::string> copy_token(lws *wsi, lws_token_indexes token) {
  const int n = lws_hdr_total_length(wsi, token);
  if (n <= 0)
    return std::nullopt;
  std::string value(std::size_t(n) + 1, '\0');
  const int got = lws_hdr_copy(wsi, value.data(), n + 1, token);
  if (got < 0)
    return std::nullopt;
  value.resize(std::size_t(got));
  return value;
}

RequestHead read_head(lws *wsi) {
  RequestHead head;
  static constexpr std::pair<lws_token_indexes, const char *> kMethods[] = {
      {WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
      {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_PATCH_URI, "PATCH"},
      {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
      {WSI_TOKEN_HEAD_URI, "HEAD"},
  };
  for (const auto &[token, name] : kMethods) {
    if (auto uri = copy_token(wsi, token)) {
      head.method = name;
      head.path = std::move(*uri);
      break;
    }
  }
  for (int t = 0; t < WSI_TOKEN_COUNT; ++t) {
    const auto token = static_cast<lws_token_indexes>(t);
    const char *name = reinterpret_cast<const char *>(lws_token_to_string(token));
    if (!name || !*name || name[0] == ':')
      continue;
    const std::string_view n(name);
    if (n.back() != ':')
      continue; // request-line tokens ("get ", "post ", ...)
    if (auto value = copy_token(wsi, token))
      head.headers.emplace_back(std::string(n.substr(0, n.size() - 1)), std::move(*value));
  }
  char fragment[4096];
  for (int i = 0;; ++i) {
    const int n = lws_hdr_copy_fragment(wsi, fragment, sizeof fragment, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (n < 0)
      break;
    const std::string_view item(fragment, std::size_t(n));
    const auto eq = item.find('=');
    head.query.emplace_back(std::string(item.substr(0, eq)),
                            eq == std::string_view::npos ? std::string()
                                                         : std::string(item.substr(eq + 1)));
  }
  if (const std::string length = head.header("content-length"); !length.empty()) {
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), value);
    if (ec == std::errc() && end == length.data() + length.size())
      head.content_length = value;
  }
  return head;
}

// Disk spool for a request body; removed unless handed over.
struct Spool {
  std::filesystem::path path;
  int fd = -1;
  ~Spool() {
    if (fd >= 0)
      ::close(fd);
    if (!path.empty()) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }
};

struct Transaction {
  std::uint64_t id = 0;
  lws *wsi = nullptr;
  Clock::time_point started;
  RequestHead head;
  const Route *route = nullptr;
  std::map<std::string, std::string> params;
  std::string user;
  std::string body;
  std::unique_ptr<Spool> spool;
  std::uint64_t body_bytes = 0;
  std::optional<Response> rejection; // sent once the unread body has been discarded
  std::optional<Response> response;
  bool dispatched = false;
  bool headers_sent = false;
  std::uint64_t position = 0; // body bytes sent
  std::uint64_t length = 0;   // body bytes to send
};

struct WsConnection {
  std::uint64_t id = 0;
  lws *wsi = nullptr;
  WsSession session;
  const WsRoute *route = nullptr;
  std::deque<std::pair<std::string, bool>> out; // LWS_PRE bytes of headroom, then the payload
  std::size_t queued_bytes = 0;
  std::string partial;
  bool partial_binary = false;
  std::optional<std::pair<int, std::string>> closing;
  bool drain_before_close = false; // send what is queued first (close_ws)
};

// What lws allocates (zero-filled, freed without destructors) per connection.
struct ConnData {
  std::uint64_t transaction;
  std::uint64_t ws;
};

struct Mailbox {
  std::mutex mutex;
  lws_context *context = nullptr;
  std::vector<std::function<void()>> tasks;

  bool post(std::function<void()> task) {
    std::lock_guard lock(mutex);
    if (!context)
      return false;
    tasks.push_back(std::move(task));
    lws_cancel_service(context);
    return true;
  }
};

// A fixed set of threads running queued jobs; try_post refuses when the queue is full.
class WorkerPool {
public:
  WorkerPool(std::size_t threads, std::size_t capacity) : capacity_(capacity) {
    for (std::size_t i = 0; i < std::max<std::size_t>(1, threads); ++i)
      threads_.emplace_back([this] { run(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      jobs_.clear();
    }
    cv_.notify_all();
    for (auto &t : threads_)
      t.join();
  }
  bool try_post(std::function<void()> job) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || jobs_.size() >= capacity_)
        return false;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (stopping_)
          return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

std::string json_dump(const nlohmann::json &j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace

// ---------------------------------------------------------------------------------------------

FileBody::~FileBody() {
  if (fd >= 0)
    ::close(fd);
}

const char *status_name(int status) noexcept {
  switch (status) {
  case 400: return "INVALID_ARGUMENT";
  case 401: return "UNAUTHENTICATED";
  case 403: return "PERMISSION_DENIED";
  case 404: return "NOT_FOUND";
  case 405: return "METHOD_NOT_ALLOWED";
  case 409: return "ABORTED";
  case 411: return "LENGTH_REQUIRED";
  case 413: return "PAYLOAD_TOO_LARGE";
  case 415: return "UNSUPPORTED_MEDIA_TYPE";
  case 416: return "RANGE_NOT_SATISFIABLE";
  case 422: return "FAILED_PRECONDITION";
  case 429: return "RESOURCE_EXHAUSTED";
  case 500: return "INTERNAL";
  case 502: return "BAD_GATEWAY";
  case 503: return "UNAVAILABLE";
  case 504: return "DEADLINE_EXCEEDED";
  default: return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

Response Response::error(int status, std::string message, std::string reason) {
  nlohmann::json error = {{"code", status}, {"status", status_name(status)}, {"message", message}};
  if (!reason.empty())
    error["reason"] = std::move(reason);
  return json(status, {{"error", std::move(error)}});
}

Response Response::json(int status, const nlohmann::json &body) {
  Response r;
  r.status = status;
  r.content_type = "application/json; charset=utf-8";
  r.body = json_dump(body);
  r.body += '\n';
  return r;
}

std::string Request::header(std::string_view name) const {
  for (const auto &[k, v] : headers)
    if (k == name)
      return v;
  return {};
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  for (const auto &[k, v] : query)
    if (k == name)
      return v;
  return std::nullopt;
}

std::optional<std::string> bearer_token(std::string_view authorization) {
  while (!authorization.empty() && authorization.front() == ' ')
    authorization.remove_prefix(1);
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() ||
      !iequals(authorization.substr(0, kScheme.size()), kScheme) ||
      authorization[kScheme.size()] != ' ')
    return std::nullopt;
  authorization.remove_prefix(kScheme.size());
  while (!authorization.empty() && authorization.front() == ' ')
    authorization.remove_prefix(1);
  while (!authorization.empty() && authorization.back() == ' ')
    authorization.remove_suffix(1);
  if (authorization.empty())
    return std::nullopt;
  return std::string(authorization);
}

// ---------------------------------------------------------------------------------------------

struct Server::Impl {
  Impl(ServerOptions o, Authenticator a) : options(std::move(o)), authenticate(std::move(a)) {
    write_buffer.resize(LWS_PRE + kWriteChunk);
  }

  static int callback(lws *wsi, lws_callback_reasons reason, void *user, void *in, size_t len);

  // HTTP (service thread).
  int on_http(lws *wsi, ConnData *conn);
  void on_body(ConnData *conn, const char *data, std::size_t len);
  void on_body_complete(ConnData *conn);
  void dispatch(Transaction &tx);
  bool cors_allowed(const std::string &origin) const;
  void deliver(Transaction &tx, Response response);
  int on_http_writeable(lws *wsi, ConnData *conn);
  void drop_transaction(ConnData *conn);
  Transaction *find(std::uint64_t id) {
    auto it = transactions.find(id);
    return it == transactions.end() ? nullptr : it->second.get();
  }
  void log_access(const Transaction &tx);

  // WebSocket (service thread).
  int on_confirm_upgrade(lws *wsi);
  int on_ws_established(lws *wsi, ConnData *conn);
  int on_ws_receive(lws *wsi, ConnData *conn, const char *data, std::size_t len);
  int on_ws_writeable(lws *wsi, ConnData *conn);
  void on_ws_closed(ConnData *conn);
  void queue_ws(std::uint64_t id, std::string payload, bool binary);
  // Immediately, or after the queued messages (bounded by kCloseDrainSeconds) with `drain`.
  void request_close(WsConnection &c, int code, std::string reason, bool drain = false);
  const WsRoute *find_ws_route(const std::string &path) const;
  // The user of a request, from "Authorization: Bearer", else (WebSocket only) the "token"
  // query parameter or a "bearer.TOKEN" subprotocol. nullopt: no credentials; "": unknown.
  std::optional<std::string> credentials_user(const RequestHead &head, bool websocket) const;

  void drain_mailbox();
  void post(std::function<void()> task) {
    std::shared_ptr<Mailbox> box;
    {
      std::lock_guard lock(box_mutex);
      box = mailbox;
    }
    if (box)
      box->post(std::move(task));
  }
  void error(const std::string &line) const {
    if (options.error_log)
      options.error_log(line);
  }

  const ServerOptions options;
  const Authenticator authenticate;
  std::vector<Route> routes;
  std::vector<WsRoute> ws_routes;

  lws_context *context = nullptr;
  std::array<lws_protocols, 2> protocols{};
  lws_retry_bo_t retry{};
  std::thread service;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint16_t> port{0};
  std::unique_ptr<WorkerPool> workers;
  std::mutex box_mutex;
  std::shared_ptr<Mailbox> mailbox;

  std::unordered_map<std::uint64_t, std::unique_ptr<Transaction>> transactions;
  std::uint64_t next_transaction = 1;
  std::unordered_map<std::uint64_t, WsConnection> ws_connections;
  std::uint64_t next_ws = 1;
  std::vector<unsigned char> write_buffer;
};

Server::Server(ServerOptions options, Authenticator authenticator)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(authenticator))) {}

Server::~Server() {
  stop();
}

void Server::add_route(Route route) {
  if (impl_->context)
    throw std::logic_error("gateway server: routes are registered before start()");
  impl_->routes.push_back(std::move(route));
}

void Server::add_ws_route(WsRoute route) {
  if (impl_->context)
    throw std::logic_error("gateway server: routes are registered before start()");
  impl_->ws_routes.push_back(std::move(route));
}

void Server::start() {
  Impl &s = *impl_;
  if (s.context)
    throw std::logic_error("gateway server: already started");
  const bool tls = !s.options.tls_certificate.empty();
  if (tls) {
    for (const auto &file : {s.options.tls_certificate, s.options.tls_private_key}) {
      if (::access(file.c_str(), R_OK) != 0)
        throw Error(ErrorKind::Config,
                    "cannot read the TLS file " + file.string() + ": " + std::strerror(errno));
    }
  }

  // libwebsockets logs process-wide; its notices (context creation, ...) are noise here.
  static std::once_flag log_once;
  std::call_once(log_once, [] {
    lws_set_log_level(LLL_ERR | LLL_WARN, [](int level, const char *line) {
      std::fprintf(stderr, "gemstream-gateway[lws %d]: %s", level, line);
    });
  });

  s.protocols[0] = {};
  // Browsers name this subprotocol to authenticate a WebSocket (see credentials_user()).
  s.protocols[0].name = "gemstream.v1";
  s.protocols[0].callback = &Impl::callback;
  s.protocols[0].per_session_data_size = sizeof(ConnData);
  s.protocols[1] = {};

  // WebSocket keep-alive: ping after 30 s of silence, hang up after 70 s without an answer.
  s.retry = {};
  s.retry.secs_since_valid_ping = 30;
  s.retry.secs_since_valid_hangup = 70;

  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  if (tls)
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  if (s.options.bind_address.find(':') == std::string::npos)
    info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  info.user = &s;
  info.port = s.options.port;
  info.iface = s.options.bind_address.c_str();
  info.protocols = s.protocols.data();
  info.server_string = s.options.server_name.c_str();
  info.max_http_header_data = 16384;
  info.pt_serv_buf_size = 64 * 1024;
  info.timeout_secs = 300; // handlers may take minutes (video analysis); see dispatch()
  info.retry_and_idle_policy = &s.retry;
  if (tls) {
    info.ssl_cert_filepath = s.options.tls_certificate.c_str();
    info.ssl_private_key_filepath = s.options.tls_private_key.c_str();
    info.alpn = "http/1.1"; // request bodies and WebSockets are handled as HTTP/1.1
  }

  lws_context *ctx = lws_create_context(&info);
  if (!ctx)
    throw Error(ErrorKind::Io, "gateway: cannot create the libwebsockets context");
  lws_vhost *vhost = lws_create_vhost(ctx, &info);
  const int bound = vhost ? lws_get_vhost_listen_port(vhost) : -1;
  if (!vhost || bound <= 0) {
    lws_context_destroy(ctx);
    if (tls && !vhost)
      throw Error(ErrorKind::Config, "gateway: cannot listen with the TLS certificate " +
                                         s.options.tls_certificate.string() + " and key " +
                                         s.options.tls_private_key.string() +
                                         " (unreadable, mismatched or not PEM?), or cannot bind " +
                                         s.options.bind_address + ":" +
                                         std::to_string(s.options.port));
    throw Error(ErrorKind::Io, "gateway: cannot listen on " + s.options.bind_address + ":" +
                                   std::to_string(s.options.port) +
                                   " (address in use or not available)");
  }
  s.context = ctx;
  s.port = static_cast<std::uint16_t>(bound);
  s.workers =
      std::make_unique<WorkerPool>(s.options.worker_threads, s.options.max_pending_requests);
  {
    std::lock_guard lock(s.box_mutex);
    s.mailbox = std::make_shared<Mailbox>();
    s.mailbox->context = ctx;
  }
  s.stopping = false;
  s.service = std::thread([&s] {
    while (!s.stopping.load(std::memory_order_acquire)) {
      if (lws_service(s.context, 0) < 0)
        break;
    }
  });
}

void Server::stop() {
  Impl &s = *impl_;
  if (!s.context)
    return;
  s.stopping.store(true, std::memory_order_release);
  lws_cancel_service(s.context);
  s.service.join();
  {
    std::lock_guard lock(s.mailbox->mutex);
    s.mailbox->context = nullptr;
    s.mailbox->tasks.clear();
  }
  {
    std::lock_guard lock(s.box_mutex);
    s.mailbox.reset();
  }
  lws_context_destroy(s.context); // WebSocket endpoints see on_close() here
  s.context = nullptr;
  s.workers.reset(); // waits for running handlers; their answers have nowhere to go
  s.transactions.clear();
  s.ws_connections.clear();
  s.port = 0;
}

std::uint16_t Server::port() const {
  return impl_->port.load();
}

std::string Server::base_url() const {
  const std::string &address = impl_->options.bind_address;
  const bool v6 = address.find(':') != std::string::npos;
  const std::string host = address == "0.0.0.0" ? "127.0.0.1"
                           : address == "::"    ? "[::1]"
                           : v6                 ? "[" + address + "]"
                                                : address;
  return (impl_->options.tls_certificate.empty() ? "http://" : "https://") + host + ":" +
         std::to_string(port());
}

void Server::send_ws(std::uint64_t connection, std::string payload, bool binary) {
  impl_->post([s = impl_.get(), connection, payload = std::move(payload), binary]() mutable {
    s->queue_ws(connection, std::move(payload), binary);
  });
}

void Server::close_ws(std::uint64_t connection, int code, std::string reason) {
  impl_->post([s = impl_.get(), connection, code, reason = std::move(reason)]() mutable {
    auto it = s->ws_connections.find(connection);
    if (it != s->ws_connections.end())
      s->request_close(it->second, code, std::move(reason), /*drain=*/true);
  });
}

// ---------------------------------------------------------------------------------------------
// lws glue

int Server::Impl::callback(lws *wsi, lws_callback_reasons reason, void *user, void *in,
                           size_t len) {
  lws_context *ctx = lws_get_context(wsi);
  auto *self = ctx ? static_cast<Impl *>(lws_context_user(ctx)) : nullptr;
  auto *conn = static_cast<ConnData *>(user);
  if (!self)
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  try {
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
      if (!in || std::strcmp(static_cast<const char *>(in), "websocket") != 0)
        return -1;
      return self->on_confirm_upgrade(wsi);
    case LWS_CALLBACK_ESTABLISHED: return conn ? self->on_ws_established(wsi, conn) : -1;
    case LWS_CALLBACK_RECEIVE:
      return conn ? self->on_ws_receive(wsi, conn, static_cast<const char *>(in), len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE: return conn ? self->on_ws_writeable(wsi, conn) : -1;
    case LWS_CALLBACK_CLOSED: self->on_ws_closed(conn); return 0;
    case LWS_CALLBACK_HTTP: return conn ? self->on_http(wsi, conn) : -1;
    case LWS_CALLBACK_HTTP_BODY: self->on_body(conn, static_cast<const char *>(in), len); return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: self->on_body_complete(conn); return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: return self->on_http_writeable(wsi, conn);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL: self->drop_transaction(conn); break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: self->drain_mailbox(); return 0;
    default: break;
    }
  } catch (const std::exception &e) {
    self->error(std::string("gateway: request handling failed: ") + e.what());
    return -1;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

void Server::Impl::drain_mailbox() {
  std::shared_ptr<Mailbox> box;
  {
    std::lock_guard lock(box_mutex);
    box = mailbox;
  }
  if (!box)
    return;
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(box->mutex);
    tasks.swap(box->tasks);
  }
  for (auto &task : tasks)
    task();
}

// ---------------------------------------------------------------------------------------------
// HTTP

std::optional<std::string> Server::Impl::credentials_user(const RequestHead &head,
                                                          bool websocket) const {
  std::optional<std::string> token;
  if (const std::string auth = head.header("authorization"); !auth.empty())
    token = bearer_token(auth).value_or("");
  if (!token && websocket) {
    // Browsers cannot set headers on a WebSocket: they offer the subprotocols
    // ["gemstream.v1", "bearer.TOKEN"] (the server answers "gemstream.v1", never the token),
    // or, where subprotocols are not available, put ?token=TOKEN in the URL.
    const std::string protocols = head.header("sec-websocket-protocol");
    std::string_view list = protocols;
    while (!list.empty() && !token) {
      const auto comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      while (!item.empty() && item.front() == ' ')
        item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ')
        item.remove_suffix(1);
      if (item.rfind("bearer.", 0) == 0)
        token = std::string(item.substr(7));
      if (comma == std::string_view::npos)
        break;
      list.remove_prefix(comma + 1);
    }
    if (!token) {
      for (const auto &[name, value] : head.query)
        if (name == "token")
          token = value;
    }
  }
  if (!token)
    return std::nullopt;
  if (token->empty())
    return std::string();
  return authenticate(*token).value_or("");
}

namespace {

struct RouteMatch {
  const Route *route = nullptr;
  std::map<std::string, std::string> params;
  std::vector<std::string> allowed; // methods of routes whose pattern matched
};

bool match_pattern(std::string_view pattern, std::string_view path,
                   std::map<std::string, std::string> &params) {
  const auto want = split_path(pattern);
  const auto got = split_path(path);
  params.clear();
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i] == "*") {
      if (i + 1 != want.size() || got.size() <= i)
        return false;
      std::string rest;
      for (std::size_t j = i; j < got.size(); ++j) {
        if (j > i)
          rest += '/';
        rest += got[j];
      }
      params["*"] = std::move(rest);
      return true;
    }
    if (i >= got.size())
      return false;
    if (want[i].size() > 2 && want[i].front() == '{' && want[i].back() == '}') {
      params[std::string(want[i].substr(1, want[i].size() - 2))] = std::string(got[i]);
      continue;
    }
    if (want[i] != got[i])
      return false;
  }
  return want.size() == got.size();
}

RouteMatch match_route(const std::vector<Route> &routes, const std::string &method,
                       const std::string &path) {
  RouteMatch m;
  std::map<std::string, std::string> params;
  for (const auto &route : routes) {
    if (!match_pattern(route.pattern, path, params))
      continue;
    if (route.method == method) {
      m.route = &route;
      m.params = std::move(params);
      return m;
    }
    m.allowed.push_back(route.method);
  }
  return m;
}

std::string join(const std::vector<std::string> &items) {
  std::string out;
  for (const auto &i : items) {
    if (!out.empty())
      out += ", ";
    out += i;
  }
  return out;
}

Response unauthorized(bool had_credentials) {
  Response r = had_credentials
                   ? Response::error(401, "the bearer token is not valid", "invalid_token")
                   : Response::error(401,
                                     "authentication required: send \"Authorization: Bearer "
                                     "TOKEN\" with a token from the gateway configuration",
                                     "missing_token");
  r.headers.emplace_back("www-authenticate",
                         had_credentials ? "Bearer realm=\"gemstream\", error=\"invalid_token\""
                                         : "Bearer realm=\"gemstream\"");
  return r;
}

} // namespace

int Server::Impl::on_http(lws *wsi, ConnData *conn) {
  drop_transaction(conn); // keep-alive: a new request on the same connection

  auto owned = std::make_unique<Transaction>();
  Transaction &tx = *owned;
  tx.id = next_transaction++;
  tx.wsi = wsi;
  tx.started = Clock::now();
  tx.head = read_head(wsi);
  transactions.emplace(tx.id, std::move(owned));
  conn->transaction = tx.id;

  const bool has_body = tx.head.content_length.value_or(0) > 0;
  // A rejection is answered once the body (if any) has been read: closing with unread input
  // resets the connection before the client has read the answer. A client that announced
  // "Expect: 100-continue" is waiting for the verdict before it sends the body: answer now
  // and close.
  const bool expects_continue = lower_ascii(tx.head.header("expect")) == "100-continue";
  auto reject = [&](Response r) {
    if (!has_body) {
      deliver(tx, std::move(r));
    } else if (expects_continue || *tx.head.content_length > kMaxDiscardedBody) {
      // Reading a huge body only to discard it wastes more than the client's lost answer.
      r.close = true;
      deliver(tx, std::move(r));
    } else {
      tx.rejection = std::move(r);
    }
    return 0;
  };

  if (lower_ascii(tx.head.header("transfer-encoding")).find("chunked") != std::string::npos) {
    Response r = Response::error(411, "send the request body with a Content-Length (chunked "
                                      "request bodies are not supported)");
    r.close = true;
    deliver(tx, std::move(r));
    return 0;
  }

  RouteMatch match = match_route(routes, tx.head.method, tx.head.path);
  if (!match.route && tx.head.method == "OPTIONS" && !match.allowed.empty() &&
      !tx.head.header("origin").empty()) {
    // A browser's CORS preflight: it carries no credentials, so it is answered before auth.
    if (!cors_allowed(tx.head.header("origin")))
      return reject(Response::error(403,
                                    "pages of the origin " + tx.head.header("origin") +
                                        " may not call this gateway (see cors.allowed_origins "
                                        "in its configuration)",
                                    "origin_not_allowed"));
    Response r;
    r.status = 204;
    r.headers = {{"access-control-allow-methods", join(match.allowed)},
                 {"access-control-allow-headers", "authorization, content-type, range"},
                 {"access-control-max-age", "600"}};
    return reject(std::move(r));
  }
  if (!match.route) {
    if (match.allowed.empty())
      return reject(Response::error(404, "no such resource: " + tx.head.path, "not_found"));
    Response r = Response::error(405,
                                 tx.head.method + " is not allowed on " + tx.head.path +
                                     " (allowed: " + join(match.allowed) + ")",
                                 "method_not_allowed");
    r.headers.emplace_back("allow", join(match.allowed));
    return reject(std::move(r));
  }
  tx.route = match.route;
  tx.params = std::move(match.params);

  if (tx.route->auth == Auth::Required) {
    const auto user = credentials_user(tx.head, /*websocket=*/false);
    if (!user || user->empty())
      return reject(unauthorized(user.has_value()));
    tx.user = *user;
  }

  if (!has_body) {
    dispatch(tx);
    return 0;
  }
  if (tx.route->body == BodyMode::None)
    return 0; // an unexpected body is read and ignored; BODY_COMPLETION dispatches
  if (*tx.head.content_length > tx.route->max_body_bytes)
    return reject(Response::error(413,
                                  "the request body is " + std::to_string(*tx.head.content_length) +
                                      " bytes; the limit is " +
                                      std::to_string(tx.route->max_body_bytes) + " bytes",
                                  "too_large"));
  if (tx.route->body == BodyMode::File) {
    auto spool = std::make_unique<Spool>();
    std::error_code ec;
    std::filesystem::create_directories(options.spool_dir, ec);
    std::string pattern = (options.spool_dir / "upload-XXXXXX").string();
    spool->fd = ::mkstemp(pattern.data());
    if (spool->fd < 0) {
      error("gateway: cannot create an upload file in " + options.spool_dir.string() + ": " +
            std::strerror(errno));
      return reject(Response::error(500, "the server cannot store the upload"));
    }
    spool->path = pattern;
    tx.spool = std::move(spool);
  } else {
    tx.body.reserve(std::size_t(*tx.head.content_length));
  }
  if (expects_continue) {
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    std::array<unsigned char, LWS_PRE + sizeof kContinue> buffer;
    std::memcpy(buffer.data() + LWS_PRE, kContinue, sizeof kContinue - 1);
    if (lws_write(wsi, buffer.data() + LWS_PRE, sizeof kContinue - 1, LWS_WRITE_HTTP) < 0)
      return -1;
  }
  return 0; // LWS_CALLBACK_HTTP_BODY_COMPLETION follows
}

void Server::Impl::on_body(ConnData *conn, const char *data, std::size_t len) {
  Transaction *tx = conn ? find(conn->transaction) : nullptr;
  if (!tx || tx->response || tx->rejection || !tx->route || tx->route->body == BodyMode::None)
    return;
  tx->body_bytes += len;
  if (tx->body_bytes > tx->route->max_body_bytes) {
    tx->body.clear();
    tx->body.shrink_to_fit();
    tx->spool.reset();
    tx->rejection = Response::error(413,
                                    "the request body exceeds the limit of " +
                                        std::to_string(tx->route->max_body_bytes) + " bytes",
                                    "too_large");
    return;
  }
  if (tx->spool) {
    while (len > 0) {
      const ssize_t n = ::write(tx->spool->fd, data, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        error("gateway: cannot write the upload to " + tx->spool->path.string() + ": " +
              std::strerror(errno));
        tx->spool.reset();
        tx->rejection = Response::error(500, "the server cannot store the upload");
        return;
      }
      data += n;
      len -= std::size_t(n);
    }
  } else {
    tx->body.append(data, len);
  }
}

void Server::Impl::on_body_complete(ConnData *conn) {
  Transaction *tx = conn ? find(conn->transaction) : nullptr;
  if (!tx || tx->response || tx->dispatched)
    return;
  if (tx->rejection) {
    deliver(*tx, *std::exchange(tx->rejection, std::nullopt));
    return;
  }
  if (!tx->route)
    return;
  dispatch(*tx);
}

void Server::Impl::dispatch(Transaction &tx) {
  tx.dispatched = true;
  Request req;
  req.method = tx.head.method;
  req.path = tx.head.path;
  req.query = tx.head.query;
  req.headers = tx.head.headers;
  req.params = tx.params;
  req.user = tx.user;
  req.body = std::move(tx.body);
  req.body_bytes = tx.route->body == BodyMode::Memory ? req.body.size() : tx.body_bytes;
  std::shared_ptr<Spool> spool;
  if (tx.spool) {
    ::close(std::exchange(tx.spool->fd, -1));
    req.body_file = tx.spool->path;
    spool = std::shared_ptr<Spool>(std::move(tx.spool));
  }
  const Route *route = tx.route;

  auto run = [this, route](Request &r) -> Response {
    try {
      return route->handler(r);
    } catch (const std::exception &e) {
      error("gateway: " + r.method + " " + r.path + " failed: " + e.what());
      return Response::error(500, "internal error while handling the request");
    }
  };

  if (route->on_service_thread) {
    deliver(tx, run(req));
    return;
  }
  // The connection waits for the worker: lws must not time it out meanwhile.
  lws_set_timeout(tx.wsi, NO_PENDING_TIMEOUT, 0);
  const bool queued = workers->try_post(
      [this, run, id = tx.id, req = std::move(req), spool = std::move(spool)]() mutable {
        Response response = run(req);
        spool.reset(); // the upload is removed before the answer leaves
        post([this, id, response = std::move(response)]() mutable {
          if (Transaction *t = find(id))
            deliver(*t, std::move(response));
        });
      });
  if (!queued) {
    Response r = Response::error(503, "the server is busy; retry shortly", "busy");
    r.headers.emplace_back("retry-after", "1");
    deliver(tx, std::move(r));
  }
}

bool Server::Impl::cors_allowed(const std::string &origin) const {
  return !origin.empty() &&
         std::any_of(options.cors_origins.begin(), options.cors_origins.end(),
                     [&](const std::string &o) { return o == "*" || o == origin; });
}

void Server::Impl::deliver(Transaction &tx, Response response) {
  if (!options.cors_origins.empty()) {
    // The answer depends on the Origin header: caches must not hand it to another origin.
    response.headers.emplace_back("vary", "origin");
    if (const std::string origin = tx.head.header("origin"); cors_allowed(origin)) {
      response.headers.emplace_back("access-control-allow-origin", origin);
      response.headers.emplace_back("access-control-expose-headers",
                                    "location, retry-after, etag, content-range, accept-ranges");
    }
  }
  tx.response = std::move(response);
  tx.length = tx.response->file ? tx.response->file->length : tx.response->body.size();
  tx.position = 0;
  lws_callback_on_writable(tx.wsi);
}

void Server::Impl::drop_transaction(ConnData *conn) {
  if (conn && conn->transaction) {
    transactions.erase(conn->transaction);
    conn->transaction = 0;
  }
}

void Server::Impl::log_access(const Transaction &tx) {
  if (!options.access_log || !tx.response)
    return;
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - tx.started).count();
  options.access_log(tx.head.method + " " + tx.head.path + " " +
                     std::to_string(tx.response->status) + " " + (tx.user.empty() ? "-" : tx.user) +
                     " " + std::to_string(tx.length) + "B " + std::to_string(ms) + "ms");
}

int Server::Impl::on_http_writeable(lws *wsi, ConnData *conn) {
  Transaction *tx = conn ? find(conn->transaction) : nullptr;
  if (!tx || !tx->response)
    return 0;
  Response &r = *tx->response;

  auto finish = [&]() -> int {
    log_access(*tx);
    const bool close = r.close;
    drop_transaction(conn);
    if (close)
      return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  };

  if (!tx->headers_sent) {
    std::array<unsigned char, LWS_PRE + kHeaderBuffer> buffer;
    unsigned char *start = buffer.data() + LWS_PRE;
    unsigned char *p = start;
    unsigned char *end = buffer.data() + buffer.size() - 1;
    if (lws_add_http_common_headers(wsi, unsigned(r.status),
                                    r.content_type.empty() ? nullptr : r.content_type.c_str(),
                                    lws_filepos_t(tx->length), &p, end))
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
    if (tx->length == 0 || tx->head.method == "HEAD")
      return finish();
    lws_callback_on_writable(wsi);
    return 0;
  }

  const std::size_t n =
      std::size_t(std::min<std::uint64_t>(kWriteChunk, tx->length - tx->position));
  unsigned char *out = write_buffer.data() + LWS_PRE;
  if (r.file) {
    std::size_t got = 0;
    while (got < n) {
      const ssize_t k =
          ::pread(r.file->fd, out + got, n - got, off_t(r.file->offset + tx->position + got));
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0) {
        error("gateway: reading a media file failed while sending it: " +
              std::string(k < 0 ? std::strerror(errno) : "the file shrank"));
        return -1;
      }
      got += std::size_t(k);
    }
  } else {
    std::memcpy(out, r.body.data() + tx->position, n);
  }
  const bool last = tx->position + n == tx->length;
  if (lws_write(wsi, out, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < int(n))
    return -1;
  tx->position += n;
  if (last)
    return finish();
  lws_callback_on_writable(wsi);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// WebSocket

const WsRoute *Server::Impl::find_ws_route(const std::string &path) const {
  for (const auto &r : ws_routes)
    if (r.path == path)
      return &r;
  return nullptr;
}

int Server::Impl::on_confirm_upgrade(lws *wsi) {
  const RequestHead head = read_head(wsi);
  std::optional<Response> refusal;
  const WsRoute *route = find_ws_route(head.path);
  if (!route) {
    refusal = Response::error(404, "no WebSocket endpoint at " + head.path, "not_found");
  } else if (route->auth == Auth::Required) {
    const auto user = credentials_user(head, /*websocket=*/true);
    if (!user || user->empty())
      refusal = unauthorized(user.has_value());
  }
  if (!refusal)
    return 0;

  // The header table is still attached: answer the upgrade request with a plain HTTP error in
  // one write, and lws closes the connection.
  std::vector<unsigned char> buffer(LWS_PRE + kHeaderBuffer + refusal->body.size());
  unsigned char *start = buffer.data() + LWS_PRE;
  unsigned char *p = start;
  unsigned char *end = buffer.data() + buffer.size() - 1;
  if (lws_add_http_common_headers(wsi, unsigned(refusal->status), refusal->content_type.c_str(),
                                  refusal->body.size(), &p, end))
    return -1;
  for (const auto &[name, value] : refusal->headers) {
    const std::string key = name + ":";
    if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char *>(key.c_str()),
                                    reinterpret_cast<const unsigned char *>(value.data()),
                                    int(value.size()), &p, end))
      return -1;
  }
  if (lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                   reinterpret_cast<const unsigned char *>("close"), 5, &p, end) ||
      lws_finalize_http_header(wsi, &p, end))
    return -1;
  std::memcpy(p, refusal->body.data(), refusal->body.size());
  p += refusal->body.size();
  if (lws_write(wsi, start, std::size_t(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
    return -1;
  if (options.access_log)
    options.access_log("GET " + head.path + " (websocket) " + std::to_string(refusal->status) +
                       " -");
  return 1;
}

int Server::Impl::on_ws_established(lws *wsi, ConnData *conn) {
  // The header table is attached until this callback returns.
  const RequestHead head = read_head(wsi);
  const WsRoute *route = find_ws_route(head.path);
  if (!route)
    return -1;
  std::string user;
  if (route->auth == Auth::Required) {
    const auto u = credentials_user(head, /*websocket=*/true);
    if (!u || u->empty())
      return -1;
    user = *u;
  }
  WsConnection c;
  c.id = next_ws++;
  c.wsi = wsi;
  c.route = route;
  c.session = {c.id, user, head.path, head.query};
  conn->ws = c.id;
  conn->transaction = 0;
  auto [it, inserted] = ws_connections.emplace(c.id, std::move(c));
  if (options.access_log)
    options.access_log("GET " + head.path + " (websocket) 101 " + (user.empty() ? "-" : user));
  route->endpoint->on_open(it->second.session);
  return 0;
}

int Server::Impl::on_ws_receive(lws *wsi, ConnData *conn, const char *data, std::size_t len) {
  auto it = ws_connections.find(conn->ws);
  if (it == ws_connections.end())
    return -1;
  WsConnection &c = it->second;
  if (c.closing)
    return 0;
  if (lws_is_first_fragment(wsi)) {
    c.partial.clear();
    c.partial_binary = lws_frame_is_binary(wsi);
  }
  if (c.partial.size() + len > c.route->max_message_bytes) {
    request_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                  "message larger than " + std::to_string(c.route->max_message_bytes) + " bytes");
    return 0;
  }
  c.partial.append(data, len);
  if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
    return 0;
  std::string message = std::move(c.partial);
  c.partial.clear();
  c.route->endpoint->on_message(c.session, message, c.partial_binary);
  return 0;
}

void Server::Impl::queue_ws(std::uint64_t id, std::string payload, bool binary) {
  auto it = ws_connections.find(id);
  if (it == ws_connections.end() || it->second.closing)
    return;
  WsConnection &c = it->second;
  if (c.queued_bytes + payload.size() > c.route->max_queued_bytes) {
    request_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "the client reads too slowly");
    return;
  }
  std::string framed(LWS_PRE, '\0');
  framed += payload;
  c.queued_bytes += payload.size();
  c.out.emplace_back(std::move(framed), binary);
  lws_callback_on_writable(c.wsi);
}

void Server::Impl::request_close(WsConnection &c, int code, std::string reason, bool drain) {
  if (c.closing) { // the first close decides the code; an urgent one stops the draining
    c.drain_before_close = c.drain_before_close && drain;
    lws_callback_on_writable(c.wsi);
    return;
  }
  if (reason.size() > 120)
    reason.resize(120); // a close frame's payload is at most 125 bytes
  c.closing = {code, std::move(reason)};
  c.drain_before_close = drain;
  if (drain) // a client that stops reading must not keep the connection open
    lws_set_timeout(c.wsi, PENDING_TIMEOUT_CLOSE_SEND, kCloseDrainSeconds);
  lws_callback_on_writable(c.wsi);
}

int Server::Impl::on_ws_writeable(lws *wsi, ConnData *conn) {
  auto it = ws_connections.find(conn->ws);
  if (it == ws_connections.end())
    return -1;
  WsConnection &c = it->second;
  if (c.closing && (c.out.empty() || !c.drain_before_close)) {
    lws_close_reason(wsi, static_cast<lws_close_status>(c.closing->first),
                     reinterpret_cast<unsigned char *>(c.closing->second.data()),
                     c.closing->second.size());
    return -1;
  }
  if (c.out.empty())
    return 0;
  auto &[framed, binary] = c.out.front();
  const std::size_t n = framed.size() - LWS_PRE;
  if (lws_write(wsi, reinterpret_cast<unsigned char *>(framed.data()) + LWS_PRE, n,
                binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < int(n))
    return -1;
  c.queued_bytes -= n;
  c.out.pop_front();
  if (!c.out.empty() || c.closing)
    lws_callback_on_writable(wsi);
  return 0;
}

void Server::Impl::on_ws_closed(ConnData *conn) {
  if (!conn || !conn->ws)
    return;
  auto it = ws_connections.find(conn->ws);
  conn->ws = 0;
  if (it == ws_connections.end())
    return;
  const WsSession session = it->second.session;
  const WsRoute *route = it->second.route;
  ws_connections.erase(it);
  route->endpoint->on_close(session);
}

} // namespace gemstream::gateway
