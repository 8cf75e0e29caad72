// The gateway's HTTP and WebSocket server on libwebsockets: routing with path parameters,
// bearer authentication before any body is read, request bodies in memory or spooled to disk
// under a size limit, handlers on a worker pool, files streamed from disk with Range support,
// and WebSocket endpoints registered by path.
//
// Threading contract:
// - One libwebsockets context serviced by one thread (the service thread). Every lws callback,
//   all transaction and WebSocket connection state live on it and need no lock.
// - Route handlers run on a bounded worker pool, never on the service thread, unless the route
//   is marked `on_service_thread` (only for handlers that never block: static files, redirects).
//   A handler's Response is handed back through the mailbox, which wakes the loop with
//   lws_cancel_service(); a response for a client that has gone is dropped.
// - WsEndpoint callbacks run on the service thread and must not block. send_ws()/close_ws() are
//   thread-safe: they post to the loop.
// - Lock order: Impl::box_mutex, then Mailbox::mutex. Neither is held while a handler, an
//   endpoint callback or a mailbox task runs.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gemstream::gateway {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method; // "GET", "POST", ...
  std::string path;   // URL-decoded, as libwebsockets normalised it
  std::vector<std::pair<std::string, std::string>> query; // decoded name=value pairs, in order
  Headers headers;                                        // lower-case names
  std::map<std::string, std::string> params; // route parameters ("{cardId}" -> "cardId")
  std::string user;                          // the authenticated user; empty on public routes
  std::string body;                          // BodyMode::Memory
  std::filesystem::path body_file; // BodyMode::File: removed once the handler has returned
  std::uint64_t body_bytes = 0;

  std::string header(std::string_view name) const;
  std::optional<std::string> query_param(std::string_view name) const;
};

// A file region streamed from disk. The descriptor is owned and closed with the response.
struct FileBody {
  explicit FileBody(int fd) : fd(fd) {}
  ~FileBody();
  FileBody(const FileBody &) = delete;
  FileBody &operator=(const FileBody &) = delete;

  int fd = -1;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

struct Response {
  int status = 200;
  std::string content_type; // empty: no Content-Type
  Headers headers;          // extra headers
  std::string body;
  std::shared_ptr<FileBody> file; // when set, sent instead of `body`
  bool close = false;             // close the connection after answering

  // {"error":{"code":N,"status":"NOT_FOUND","message":"...","reason":"..."}} (reason optional),
  // the shape the Gemini API uses, so engine clients decode it with decode_http_error().
  static Response error(int status, std::string message, std::string reason = {});
  static Response json(int status, const nlohmann::json &body);
};

// The google.rpc-style status name of an HTTP status ("INVALID_ARGUMENT" for 400, ...).
const char *status_name(int status) noexcept;

enum class Auth { Required, Public };
enum class BodyMode { None, Memory, File };

// Resolves a bearer token to a user id; nullopt when the token is unknown. Called on the service
// thread: must not block.
using Authenticator = std::function<std::optional<std::string>(std::string_view token)>;

struct Route {
  std::string method;  // "GET", "POST"
  std::string pattern; // "/api/v1/cards/{cardId}/generate-cover"; a final "*" segment matches
                       // one or more remaining segments, joined with '/' into params["*"]
  Auth auth = Auth::Required;
  BodyMode body = BodyMode::None;
  std::uint64_t max_body_bytes = 64 * 1024;
  bool on_service_thread = false;
  std::function<Response(Request &)> handler;
};

// One WebSocket connection as an endpoint sees it.
struct WsSession {
  std::uint64_t id = 0;
  std::string user;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
};

class WsEndpoint {
public:
  virtual ~WsEndpoint() = default;
  // Service thread; none may block.
  virtual void on_open(const WsSession &session) = 0;
  virtual void on_message(const WsSession &session, std::string_view data, bool binary) = 0;
  virtual void on_close(const WsSession &session) = 0;
};

struct WsRoute {
  std::string path;
  Auth auth = Auth::Required;
  std::shared_ptr<WsEndpoint> endpoint;
  std::size_t max_message_bytes = 64 * 1024; // a larger message closes with 1009
  std::size_t max_queued_bytes = 4 << 20;    // unsent output beyond this closes with 1008
};

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;                // 0: ephemeral
  std::filesystem::path tls_certificate; // both set: HTTPS and WSS only
  std::filesystem::path tls_private_key;
  std::filesystem::path spool_dir; // BodyMode::File bodies are written here
  std::size_t worker_threads = 8;
  std::size_t max_pending_requests = 256; // beyond it: 503
  std::string server_name = "gemstream-gateway";
  // Origins whose pages may call the HTTP routes from a browser (CORS): exact origins such as
  // "https://app.example.com", or "*" for any. Empty: no CORS headers, so browsers allow only
  // pages of the gateway's own origin. Preflight requests (OPTIONS) need no token; pages may
  // send the headers Authorization, Content-Type and Range.
  std::vector<std::string> cors_origins;
  // One line per finished request: method, path (never the query), status, user, duration.
  std::function<void(const std::string &)> access_log;
  std::function<void(const std::string &)> error_log;
};

class Server {
public:
  Server(ServerOptions options, Authenticator authenticator);
  ~Server(); // stops
  Server(const Server &) = delete;
  Server &operator=(const Server &) = delete;

  // Registration happens before start().
  void add_route(Route route);
  void add_ws_route(WsRoute route);

  // Binds and starts the service thread and the workers. Throws Error(Io) if it cannot bind,
  // Error(Config) for unusable TLS files.
  void start();
  // Closes every connection, waits for running handlers to return and joins the threads.
  void stop();
  std::uint16_t port() const;
  std::string base_url() const; // "http://127.0.0.1:PORT" (https with TLS)

  // Thread-safe. Queue a message on an open WebSocket connection; false if it is gone or over
  // its queue limit (the connection is then closed with 1008).
  void send_ws(std::uint64_t connection, std::string payload, bool binary = false);
  // Closes after the messages already queued have been sent (at most 5 s), so an error
  // message sent just before arrives.
  void close_ws(std::uint64_t connection, int code, std::string reason);

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

// Bearer token of a request: "Authorization: Bearer T" (case-insensitive scheme).
std::optional<std::string> bearer_token(std::string_view authorization);

} // namespace gemstream::gateway
