// Gemini Live session: libwebsockets client, session resumption and reconnection.
//
// Threading contract:
// - One lws context per session, serviced by one network thread. Every lws callback, every
//   timer, all connection state and every user callback live on that thread; the members under
//   "network thread only" need no lock.
// - Sending threads touch only the members under `mutex` (the outbox, the partial audio chunk,
//   the wake flag, close_requested, the context pointer) and wake the loop with
//   lws_cancel_service(). The network thread takes `mutex` only briefly and never while calling
//   back into user code. There is no other lock, so there is no lock order.
// - The network thread owns the context: it destroys it on the way out, after clearing
//   `context` under `mutex`, so a late sender never wakes a destroyed context.
//
// Input delivery across reconnects. The Gemini Developer API has no transparent resumption (no
// lastConsumedClientMessageIndex), so the client keeps the input written since the newest
// resumption handle (`journal`) and writes it again on the next connection, after the new
// setupComplete and before anything queued meanwhile (`outbox`). Video frames are not replayed
// (stale by then), nor are tool responses: calls left unanswered when a connection is lost are
// reported cancelled, because the resumed session predates them (the service issues no
// resumable handle while a call is pending) and answers for unknown ids must not reach it.
#include "gemstream/live.h"

#include "codec.h"
#include "live_codec.h"

#include <libwebsockets.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>

namespace gemstream {
namespace {

constexpr const char *kProtocolName = "gemstream-live";
constexpr std::size_t kFragmentBytes = 32 * 1024;
constexpr std::size_t kMaxJournalEntries = 8192;
// Below this, even setupComplete and short server messages could be refused.
constexpr std::size_t kMinMessageLimit = 4096;
// How long close() lets the close handshake run before the socket is simply dropped.
constexpr std::chrono::milliseconds kCloseGrace{120};
// Reconnect this long before goAway's timeLeft runs out (at most half of timeLeft).
constexpr std::chrono::milliseconds kGoAwayMargin{5000};
constexpr std::chrono::milliseconds kDropWarningInterval{2000};

// Half-open TCP connections (a NAT forgetting us) would otherwise look alive forever; the
// service answers pings.
const lws_retry_bo_t kKeepalive = {.retry_ms_table = nullptr,
                                   .retry_ms_table_count = 0,
                                   .conceal_count = 0,
                                   .secs_since_valid_ping = 30,
                                   .secs_since_valid_hangup = 75,
                                   .jitter_percent = 0};

struct ParsedUrl {
  bool tls = false;
  std::string host; // for connect(): no brackets around IPv6 literals
  int port = 0;
  std::string host_header; // Host: value, with the port when it is not the default
  std::string path_prefix; // base URL path, no trailing slash
};

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size())
    return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i])
      return false;
  }
  return true;
}

bool contains_ci(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size())
    return false;
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    if (starts_with_ci(haystack.substr(i), needle))
      return true;
  }
  return false;
}

ParsedUrl parse_base_url(const std::string &base_url) {
  ParsedUrl url;
  std::string_view rest = base_url;
  if (starts_with_ci(rest, "https://")) {
    url.tls = true;
    rest.remove_prefix(8);
  } else if (starts_with_ci(rest, "http://")) {
    rest.remove_prefix(7);
  } else {
    throw Error(ErrorKind::Config, "base URL \"" + base_url +
                                       "\" must start with http:// or https:// (the Live "
                                       "WebSocket URL is derived from it)");
  }
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  while (!path.empty() && path.back() == '/')
    path.remove_suffix(1);
  auto bad = [&](const char *why) {
    return Error(ErrorKind::Config, "base URL \"" + base_url + "\": " + why);
  };
  if (authority.empty())
    throw bad("no host");
  if (authority.find('@') != std::string_view::npos) // not echoed: it may hold a password
    throw Error(ErrorKind::Config, "the base URL must not contain credentials");
  if (authority.find_first_of("?#") != std::string_view::npos ||
      path.find_first_of("?#") != std::string_view::npos)
    throw bad("queries and fragments are not allowed");
  std::string_view host = authority;
  std::string_view port;
  if (authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos)
      throw bad("unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        throw bad("garbage after the IPv6 address");
      port = after.substr(1);
    }
  } else if (const std::size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty())
    throw bad("no host");
  url.host = std::string(host);
  url.port = url.tls ? 443 : 80;
  if (!port.empty()) {
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535)
        throw bad("invalid port");
      p = p * 10 + (c - '0');
    }
    if (p <= 0 || p > 65535)
      throw bad("invalid port");
    url.port = p;
  }
  const bool default_port = url.port == (url.tls ? 443 : 80);
  url.host_header =
      std::string(authority.front() == '[' ? authority.substr(0, authority.find(']') + 1) : host);
  if (!default_port)
    url.host_header += ":" + std::to_string(url.port);
  url.path_prefix = std::string(path);
  return url;
}

std::string live_path(const ParsedUrl &url, const std::string &api_version) {
  return url.path_prefix + "/ws/google.ai.generativelanguage." +
         (api_version.empty() ? std::string("v1beta") : api_version) +
         ".GenerativeService.BidiGenerateContent";
}

// Close reasons come from the network: keep them printable and short before they reach a log.
std::string printable(std::string_view text, std::size_t max = 300) {
  std::string out;
  for (char c : text.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return out;
}

std::string format_ms(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

// What a close frame from the service means, and whether reconnecting could help.
struct CloseVerdict {
  Error error;
  bool fatal;
};

CloseVerdict classify_close(int code, const std::string &reason, const std::string &model) {
  const std::string detail = "Live session closed by the service (" + std::to_string(code) +
                             (reason.empty() ? std::string(")") : "): " + reason);
  switch (code) {
  case 1007: // INVALID_ARGUMENT, including bad and expired keys
    if (contains_ci(reason, "api key") || contains_ci(reason, "api_key"))
      return {Error(ErrorKind::Unauthenticated, detail + " (check the API key)"), true};
    return {Error(ErrorKind::InvalidArgument, detail), true};
  case 1008: // NOT_FOUND / PERMISSION_DENIED
    if (contains_ci(reason, "permission"))
      return {Error(ErrorKind::PermissionDenied, detail), true};
    return {Error(ErrorKind::NotFound, detail + " (model \"" + model +
                                           "\": check the id and that it supports the Live API)"),
            true};
  case 1002:
  case 1003:
  case 1010: return {Error(ErrorKind::Protocol, detail), true};
  case 1009: return {Error(ErrorKind::TooLarge, detail), true};
  case 1011: // INTERNAL / UNAVAILABLE / RESOURCE_EXHAUSTED
    if (contains_ci(reason, "quota") || contains_ci(reason, "exhausted") ||
        contains_ci(reason, "rate limit"))
      return {Error(ErrorKind::ResourceExhausted, detail), false};
    if (contains_ci(reason, "internal"))
      return {Error(ErrorKind::Internal, detail), false};
    return {Error(ErrorKind::Unavailable, detail), false};
  default: // 1000/1001 without goAway, 1013 try again later, ...
    return {Error(ErrorKind::Unavailable, detail), false};
  }
}

struct Outgoing {
  enum class Kind : std::uint8_t {
    Setup,
    Audio,
    Video,
    Text,
    Activity,
    ClientContent,
    ToolResponse
  };
  Kind kind = Kind::Text;
  std::string payload; // compact JSON
  std::size_t samples = 0;
  std::vector<LiveFunctionResponse> responses; // ToolResponse only
  bool sent_before = false;

  bool replayable() const {
    return kind != Kind::Setup && kind != Kind::Video && kind != Kind::ToolResponse;
  }
};

} // namespace

const char *to_string(LiveState state) noexcept {
  switch (state) {
  case LiveState::Idle: return "Idle";
  case LiveState::Connecting: return "Connecting";
  case LiveState::SettingUp: return "SettingUp";
  case LiveState::Ready: return "Ready";
  case LiveState::Reconnecting: return "Reconnecting";
  case LiveState::Closed: return "Closed";
  case LiveState::Failed: return "Failed";
  }
  return "Unknown";
}

std::string live_websocket_url(const Endpoint &endpoint) {
  const ParsedUrl url = parse_base_url(endpoint.base_url);
  return std::string(url.tls ? "wss://" : "ws://") + url.host_header +
         live_path(url, endpoint.api_version);
}

struct LiveSession::Impl {
  Impl(Endpoint e, LiveConfig c, LiveCallbacks cb)
      : endpoint(std::move(e)), config(std::move(c)), callbacks(std::move(cb)),
        rng(std::random_device{}()) {
    // Sizes are needed before connect() (input may be queued early); connect() validates them.
    const auto samples = [rate =
                              std::max(config.input_sample_rate, 0)](std::chrono::milliseconds d) {
      return static_cast<std::size_t>(rate) *
             static_cast<std::size_t>(std::max<std::int64_t>(d.count(), 0)) / 1000;
    };
    close_drain = config.close_drain_timeout;
    chunk_samples = std::max<std::size_t>(1, samples(config.audio_chunk));
    max_buffered_samples = samples(config.max_buffered_audio);
    max_replay_samples = samples(config.max_replay_audio);
  }

  // ---- immutable once connect() has started the thread ----
  Endpoint endpoint;
  LiveConfig config;
  LiveCallbacks callbacks;
  ParsedUrl url;
  std::string path;
  std::string model_resource;
  std::size_t chunk_samples = 0;
  std::size_t max_buffered_samples = 0;
  std::size_t max_replay_samples = 0;
  lws_protocols protocols[2] = {};
  std::thread thread;
  std::atomic<std::thread::id> thread_id{};
  std::mutex join_mutex;

  // ---- shared, guarded by `mutex` ----
  mutable std::mutex mutex;
  lws_context *context = nullptr; // set while the network thread may service it
  bool started = false;
  bool close_requested = false;
  std::chrono::milliseconds close_drain; // the drain bound of the first close()
  bool wake_pending = false;
  std::deque<Outgoing> outbox;
  std::size_t outbox_samples = 0;
  std::size_t outbox_video = 0;
  std::vector<std::int16_t> partial; // audio waiting to fill a chunk

  // ---- readable from any thread ----
  std::atomic<LiveState> state{LiveState::Idle};
  std::atomic<bool> suppress_callbacks{false};
  std::atomic<std::uint64_t> messages_sent{0}, messages_received{0}, malformed{0}, reconnects{0},
      replayed{0}, dropped_audio{0}, dropped_video{0}, trimmed_replay{0};

  // ---- network thread only ----
  enum class Phase { None, Connecting, SettingUp, Ready, Closing };
  struct Timer {
    lws_sorted_usec_list_t sul{}; // first member: the lws callback gets its address
    Impl *self = nullptr;
  };

  lws *wsi = nullptr;
  std::uintptr_t generation = 0; // tags each connection's wsi; stale events are ignored
  Phase phase = Phase::None;
  bool exit = false;
  bool destroying = false;
  bool draining = false; // close() was called; the queued input is being written
  std::chrono::steady_clock::time_point drain_deadline;
  bool closing = false;               // close() was called and the input is written or given up
  bool close_frame_requested = false; // lws is sending our close frame
  bool failed = false;
  bool ever_ready = false;
  bool planned_reconnect = false;
  bool go_away_pending = false;
  bool turn_active = false;
  int attempts = 0;
  bool in_connect_call = false;
  std::string connect_call_error;
  std::optional<int> peer_close_code;
  std::string peer_close_reason;
  std::string rx;
  bool rx_overflow = false;
  std::optional<Outgoing> current;
  std::size_t current_offset = 0;
  std::vector<unsigned char> txbuf;
  std::deque<Outgoing> journal; // written since the newest resumption handle
  std::size_t journal_samples = 0;
  std::deque<Outgoing> resend; // to write again after the next setupComplete
  std::string resume_handle;
  std::set<std::string> pending_calls;
  std::set<std::string> stale_calls;
  std::uint64_t reported_drops = 0;
  std::chrono::steady_clock::time_point last_drop_warning{};
  std::minstd_rand rng;
  Timer reconnect_timer, setup_timer, go_away_timer, close_timer, drain_timer;

  // ---- setup, any thread ----
  void validate_and_prepare();
  void start();

  // ---- senders, any thread; `mutex` held ----
  bool accepting_locked() const;
  void enqueue_locked(Outgoing msg);
  void flush_partial_locked();
  void wake_locked();
  // Queues a non-audio message behind any partial audio chunk (takes `mutex`). False once the
  // session no longer accepts input.
  bool enqueue_message(Outgoing msg);

  // ---- network thread ----
  static int lws_callback(lws *wsi, lws_callback_reasons reason, void *user, void *in, size_t len);
  int on_event(lws *wsi, lws_callback_reasons reason, void *user, void *in, size_t len);
  void run();
  void start_connection();
  void abandon_connection();
  void connection_lost(const Error &error, bool fatal);
  void fail(const Error &error);
  void begin_close();
  void finish_close();
  bool has_unsent_input();
  void begin_planned_reconnect();
  void on_wake();
  int on_writeable();
  bool next_message();
  void on_message_written(Outgoing &msg);
  void on_receive(lws *w, const char *data, std::size_t len);
  void on_message(const std::string &payload);
  void on_setup_complete(const std::string &session_id);
  void on_server_content(live_codec::ServerContent &content);
  void on_resumption_update(const LiveResumptionUpdate &update);
  void on_go_away(std::chrono::milliseconds time_left);
  void malformed_message(const std::string &detail);
  void report_drops();
  void set_state(LiveState s);
  void warn(const std::string &text);
  std::chrono::milliseconds backoff(int attempt);
  void schedule(Timer &timer, sul_cb_t cb, std::chrono::microseconds delay);

  template <typename F, typename... Args> void emit(const F &fn, Args &&...args) {
    if (!fn || draining || suppress_callbacks.load(std::memory_order_acquire))
      return;
    try {
      fn(std::forward<Args>(args)...);
    } catch (const std::exception &e) {
      lwsl_err("gemstream live: a session callback threw: %s\n", e.what());
    } catch (...) {
      lwsl_err("gemstream live: a session callback threw\n");
    }
  }

  static Impl *owner(lws_sorted_usec_list_t *sul) { return reinterpret_cast<Timer *>(sul)->self; }
};

// ---------------------------------------------------------------------------------------------
// Setup

void LiveSession::Impl::validate_and_prepare() {
  url = parse_base_url(endpoint.base_url);
  path = live_path(url, endpoint.api_version);
  const LiveConfig &c = config;
  if (c.input_sample_rate < 8000 || c.input_sample_rate > 48000)
    throw Error(ErrorKind::Config, "Live input sample rate " + std::to_string(c.input_sample_rate) +
                                       " Hz is outside 8000..48000");
  if (c.audio_chunk < std::chrono::milliseconds(20) ||
      c.audio_chunk > std::chrono::milliseconds(100))
    throw Error(ErrorKind::Config,
                "Live audio chunk of " + format_ms(c.audio_chunk) + " is outside 20..100 ms");
  if (c.max_buffered_audio < c.audio_chunk || c.max_replay_audio.count() < 0)
    throw Error(ErrorKind::Config, "Live max_buffered_audio must hold at least one audio chunk and "
                                   "max_replay_audio must not be negative");
  if (c.max_reconnect_attempts < 0 || c.reconnect_backoff_initial.count() < 0 ||
      c.reconnect_backoff_max < c.reconnect_backoff_initial)
    throw Error(ErrorKind::Config, "Live reconnection settings: attempts and backoff must not be "
                                   "negative and the maximum backoff must not be below the "
                                   "initial one");
  if (c.connect_timeout < std::chrono::milliseconds(100))
    throw Error(ErrorKind::Config, "Live connect timeout must be at least 100 ms");
  if (c.close_drain_timeout.count() < 0)
    throw Error(ErrorKind::Config, "Live close drain timeout must not be negative");
  if (c.max_message_bytes < kMinMessageLimit)
    throw Error(ErrorKind::Config, "Live max_message_bytes of " +
                                       std::to_string(c.max_message_bytes) + " is below " +
                                       std::to_string(kMinMessageLimit));
  for (char ch : endpoint.api_key) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f)
      throw Error(ErrorKind::Config, "the API key contains whitespace or control characters");
  }
  // Encoding the setup once checks the model id and every function schema before any thread
  // or socket exists.
  (void)live_codec::encode_setup(c, c.resume_handle);
  model_resource = codec::model_resource(c.model);
  resume_handle = c.resume_handle;
}

void LiveSession::Impl::start() {
  // lws logs every context creation at NOTICE level; one line per Live session is noise in an
  // application's stderr. Process-wide, as lws logging is; errors and warnings stay.
  static std::once_flag quiet_once;
  std::call_once(quiet_once, [] { lws_set_log_level(LLL_ERR | LLL_WARN, nullptr); });

  protocols[0] = {};
  protocols[0].name = kProtocolName;
  protocols[0].callback = &Impl::lws_callback;
  protocols[0].rx_buffer_size = 64 * 1024;
  protocols[1] = {};

  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols;
  info.user = this;
  if (url.tls)
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  // The event pipe, the socket and its replacement during a reconnect: a small table suffices,
  // and sizing it by the process fd limit would allocate megabytes per session.
  info.fd_limit_per_thread = 16;
  info.pt_serv_buf_size = 32 * 1024;
  const auto timeout_s = std::chrono::duration_cast<std::chrono::seconds>(config.connect_timeout);
  info.timeout_secs = static_cast<unsigned>(std::max<std::int64_t>(1, timeout_s.count()));
  info.connect_timeout_secs = info.timeout_secs;

  lws_context *ctx = lws_create_context(&info);
  if (ctx == nullptr)
    throw Error(ErrorKind::Network, "cannot create the libwebsockets context for the Live session");
  for (Timer *t : {&reconnect_timer, &setup_timer, &go_away_timer, &close_timer, &drain_timer})
    t->self = this;
  std::lock_guard lock(mutex);
  context = ctx;
}

// ---------------------------------------------------------------------------------------------
// Senders

bool LiveSession::Impl::accepting_locked() const {
  const LiveState s = state.load(std::memory_order_acquire);
  return !close_requested && s != LiveState::Closed && s != LiveState::Failed;
}

void LiveSession::Impl::enqueue_locked(Outgoing msg) {
  if (msg.kind == Outgoing::Kind::Audio)
    outbox_samples += msg.samples;
  if (msg.kind == Outgoing::Kind::Video)
    ++outbox_video;
  outbox.push_back(std::move(msg));

  // Overflow policy: the oldest unsent audio (and video) goes first. Other input is small and
  // rare, and losing a turn marker or a tool response would confuse the conversation.
  auto drop_oldest = [this](Outgoing::Kind kind) {
    auto it = std::find_if(outbox.begin(), outbox.end(),
                           [kind](const Outgoing &o) { return o.kind == kind; });
    if (it == outbox.end())
      return;
    if (kind == Outgoing::Kind::Audio) {
      outbox_samples -= it->samples;
      dropped_audio.fetch_add(it->samples, std::memory_order_relaxed);
    } else {
      --outbox_video;
      dropped_video.fetch_add(1, std::memory_order_relaxed);
    }
    outbox.erase(it);
  };
  while (outbox_samples > max_buffered_samples)
    drop_oldest(Outgoing::Kind::Audio);
  while (outbox_video > config.max_buffered_video_frames)
    drop_oldest(Outgoing::Kind::Video);
  wake_locked();
}

void LiveSession::Impl::flush_partial_locked() {
  if (partial.empty())
    return;
  Outgoing msg{
      Outgoing::Kind::Audio,
      live_codec::encode_audio(partial.data(), partial.size(), config.input_sample_rate).dump(),
      partial.size(),
      {},
      false};
  partial.clear();
  enqueue_locked(std::move(msg));
}

void LiveSession::Impl::wake_locked() {
  // One pending wake is enough: the loop drains everything it finds. This also keeps a stalled
  // loop from filling lws's cancel pipe.
  if (context != nullptr && !wake_pending) {
    wake_pending = true;
    lws_cancel_service(context);
  }
}

// ---------------------------------------------------------------------------------------------
// Network thread: lws glue

int LiveSession::Impl::lws_callback(lws *wsi, lws_callback_reasons reason, void *user, void *in,
                                    size_t len) {
  auto *self = static_cast<Impl *>(lws_context_user(lws_get_context(wsi)));
  if (self == nullptr || self->destroying)
    return 0;
  try {
    return self->on_event(wsi, reason, user, in, len);
  } catch (const std::exception &e) {
    lwsl_err("gemstream live: event %d failed: %s\n", static_cast<int>(reason), e.what());
    return 0;
  }
}

int LiveSession::Impl::on_event(lws *w, lws_callback_reasons reason, void *user, void *in,
                                size_t len) {
  if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
    on_wake();
    return 0;
  }
  const auto tag = reinterpret_cast<std::uintptr_t>(lws_get_opaque_user_data(w));
  const bool ours = tag != 0 && tag == generation;

  switch (reason) {
  case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
    if (endpoint.api_key.empty())
      return 0;
    auto **p = reinterpret_cast<unsigned char **>(in);
    unsigned char *end = *p + len;
    if (lws_add_http_header_by_name(
            w, reinterpret_cast<const unsigned char *>("x-goog-api-key:"),
            reinterpret_cast<const unsigned char *>(endpoint.api_key.data()),
            static_cast<int>(endpoint.api_key.size()), p, end) != 0)
      return -1;
    return 0;
  }
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
    const std::string why =
        in != nullptr
            ? printable(std::string_view(static_cast<const char *>(in),
                                         len ? len : std::strlen(static_cast<const char *>(in))))
            : "unknown error";
    if (!ours) {
      // lws may fail inside lws_client_connect_via_info() before it tags the wsi.
      if (in_connect_call)
        connect_call_error = why;
      return 0;
    }
    const unsigned status = lws_http_client_http_response(w);
    if (status >= 400) {
      const ErrorKind kind = error_kind_from_http(static_cast<int>(status), {});
      Error err(kind, "Live WebSocket upgrade to " + url.host_header + path +
                          " rejected with HTTP " + std::to_string(status));
      const bool fatal = kind != ErrorKind::ResourceExhausted && !err.retryable();
      wsi = nullptr;
      connection_lost(err, fatal);
    } else {
      wsi = nullptr;
      connection_lost(Error(ErrorKind::Network,
                            "cannot open the Live WebSocket to " + url.host_header + ": " + why),
                      false);
    }
    return 0;
  }
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    if (!ours)
      return 0;
    wsi = w;
    phase = Phase::SettingUp;
    set_state(LiveState::SettingUp);
    current = Outgoing{Outgoing::Kind::Setup,
                       live_codec::encode_setup(config, resume_handle).dump(),
                       0,
                       {},
                       false};
    current_offset = 0;
    lws_callback_on_writable(w);
    return 0;
  case LWS_CALLBACK_CLIENT_WRITEABLE:
    if (!ours)
      return 0;
    return on_writeable();
  case LWS_CALLBACK_CLIENT_RECEIVE:
    if (ours)
      on_receive(w, static_cast<const char *>(in), len);
    return 0;
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (ours) {
      const auto *bytes = static_cast<const unsigned char *>(in);
      if (len >= 2) {
        peer_close_code = (bytes[0] << 8) | bytes[1];
        peer_close_reason =
            printable(std::string_view(reinterpret_cast<const char *>(bytes) + 2, len - 2));
      } else {
        peer_close_code = 1005; // no status code in the frame
        peer_close_reason.clear();
      }
    }
    return 0; // lws echoes the close frame
  case LWS_CALLBACK_CLIENT_CLOSED:
  case LWS_CALLBACK_WSI_DESTROY:
    if (!ours)
      return 0;
    wsi = nullptr;
    if (phase == Phase::Closing) {
      phase = Phase::None;
      exit = true;
      return 0;
    }
    if (peer_close_code == 1005) {
      connection_lost(Error(ErrorKind::Unavailable, "the service closed the Live connection to " +
                                                        url.host_header + " without a status"),
                      false);
    } else if (peer_close_code) {
      CloseVerdict v = classify_close(*peer_close_code, peer_close_reason, model_resource);
      connection_lost(v.error, v.fatal);
    } else {
      connection_lost(Error(ErrorKind::Network, "the Live connection to " + url.host_header +
                                                    " dropped without a close status (1006)"),
                      false);
    }
    return 0;
  default: break;
  }
  return lws_callback_http_dummy(w, reason, user, in, len);
}

void LiveSession::Impl::run() {
  emit(callbacks.on_state, LiveState::Connecting);
  start_connection();
  while (!exit) {
    if (lws_service(context, 0) < 0)
      break;
  }
  for (Timer *t : {&reconnect_timer, &setup_timer, &go_away_timer, &close_timer, &drain_timer})
    lws_sul_cancel(&t->sul);
  draining = false;
  if (!failed)
    set_state(LiveState::Closed);

  lws_context *ctx = nullptr;
  {
    std::lock_guard lock(mutex);
    std::swap(ctx, context);
    outbox.clear();
    partial.clear();
  }
  // lws calls back while it tears connections down; nothing may reach user code then.
  destroying = true;
  lws_context_destroy(ctx);
}

void LiveSession::Impl::schedule(Timer &timer, sul_cb_t cb, std::chrono::microseconds delay) {
  lws_sul_schedule(context, 0, &timer.sul, cb, std::max<lws_usec_t>(1, delay.count()));
}

void LiveSession::Impl::start_connection() {
  rx.clear();
  rx_overflow = false;
  peer_close_code.reset();
  peer_close_reason.clear();
  phase = Phase::Connecting;
  const std::uintptr_t tag = ++generation;

  lws_client_connect_info ci{};
  ci.context = context;
  ci.address = url.host.c_str();
  ci.port = url.port;
  ci.ssl_connection = url.tls ? LCCSCF_USE_SSL : 0;
  ci.path = path.c_str();
  ci.host = url.host_header.c_str();
  ci.origin = nullptr;
  ci.protocol = nullptr; // the service negotiates no subprotocol
  ci.local_protocol_name = kProtocolName;
  ci.alpn = "http/1.1"; // WebSocket upgrade needs HTTP/1.1, never h2
  ci.opaque_user_data = reinterpret_cast<void *>(tag);
  ci.retry_and_idle_policy = &kKeepalive;
  ci.pwsi = &wsi;

  schedule(
      setup_timer,
      [](lws_sorted_usec_list_t *sul) {
        Impl *self = owner(sul);
        if (self->phase != Phase::Connecting && self->phase != Phase::SettingUp)
          return;
        if (self->wsi != nullptr)
          lws_set_timeout(self->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        self->wsi = nullptr;
        self->connection_lost(
            Error(ErrorKind::Timeout, "no Live setupComplete from " + self->url.host_header +
                                          " within " + format_ms(self->config.connect_timeout)),
            false);
      },
      config.connect_timeout);

  in_connect_call = true;
  connect_call_error.clear();
  lws *created = lws_client_connect_via_info(&ci);
  in_connect_call = false;
  if (created == nullptr && generation == tag) {
    // Failed before a tagged callback could tell us (e.g. DNS): like a refused connection.
    wsi = nullptr;
    connection_lost(
        Error(ErrorKind::Network,
              "cannot open the Live WebSocket to " + url.host_header + ": " +
                  (connect_call_error.empty() ? std::string("host lookup or socket setup failed")
                                              : connect_call_error)),
        false);
  }
}

// Forgets the current connection (its late events are ignored) and prepares what must be sent
// again on the next one.
void LiveSession::Impl::abandon_connection() {
  lws_sul_cancel(&setup_timer.sul);
  lws_sul_cancel(&go_away_timer.sul);
  ++generation;
  wsi = nullptr;
  phase = Phase::None;
  planned_reconnect = false;
  go_away_pending = false;
  turn_active = false;
  rx.clear();
  rx_overflow = false;

  std::deque<Outgoing> again = std::move(journal);
  journal.clear();
  journal_samples = 0;
  if (current && current->kind != Outgoing::Kind::Setup)
    again.push_back(std::move(*current));
  current.reset();
  current_offset = 0;
  for (Outgoing &o : resend)
    again.push_back(std::move(o));
  resend = std::move(again);

  if (!pending_calls.empty()) {
    std::vector<std::string> ids(pending_calls.begin(), pending_calls.end());
    stale_calls.insert(pending_calls.begin(), pending_calls.end());
    pending_calls.clear();
    emit(callbacks.on_tool_call_cancellation, ids);
  }
}

void LiveSession::Impl::connection_lost(const Error &error, bool fatal) {
  if (closing || failed)
    return;
  if (draining) {
    // No reconnection for the sake of a drain: what was not written is given up.
    finish_close();
    return;
  }
  abandon_connection();
  if (fatal) {
    fail(error);
    return;
  }
  if (attempts >= config.max_reconnect_attempts) {
    if (config.max_reconnect_attempts == 0) {
      fail(error);
    } else {
      Error final(error.kind(), "gave up after " + std::to_string(attempts) +
                                    " reconnection attempts: " + error.message());
      fail(final);
    }
    return;
  }
  ++attempts;
  const std::chrono::milliseconds delay = backoff(attempts);
  set_state(LiveState::Reconnecting);
  warn(std::string(error.what()) + "; reconnecting in " + format_ms(delay) + " (attempt " +
       std::to_string(attempts) + " of " + std::to_string(config.max_reconnect_attempts) + ")");
  if (closing || failed)
    return; // a callback closed the session
  schedule(
      reconnect_timer, [](lws_sorted_usec_list_t *sul) { owner(sul)->start_connection(); }, delay);
}

std::chrono::milliseconds LiveSession::Impl::backoff(int attempt) {
  const auto initial = config.reconnect_backoff_initial.count();
  std::int64_t delay = initial;
  for (int i = 1; i < attempt && delay < config.reconnect_backoff_max.count(); ++i)
    delay *= 2;
  delay = std::min<std::int64_t>(delay, config.reconnect_backoff_max.count());
  // Up to 20% jitter, so that clients dropped together do not come back together.
  std::uniform_int_distribution<std::int64_t> jitter(0, delay / 5);
  return std::chrono::milliseconds(delay + jitter(rng));
}

void LiveSession::Impl::fail(const Error &error) {
  if (failed || closing)
    return;
  failed = true;
  for (Timer *t : {&reconnect_timer, &setup_timer, &go_away_timer})
    lws_sul_cancel(&t->sul);
  if (wsi != nullptr)
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  wsi = nullptr;
  ++generation;
  phase = Phase::None;
  emit(callbacks.on_error, error);
  set_state(LiveState::Failed);
  exit = true;
}

bool LiveSession::Impl::has_unsent_input() {
  if (!resend.empty() || (current && current->kind != Outgoing::Kind::Setup))
    return true;
  std::lock_guard lock(mutex);
  return !outbox.empty() || !partial.empty();
}

// close() was called: write the input still queued if a connection is up or being made, within
// the drain bound, then close.
void LiveSession::Impl::begin_close() {
  if (closing || failed || draining)
    return;
  std::chrono::milliseconds drain;
  {
    std::lock_guard lock(mutex);
    drain = close_drain;
  }
  const bool connection =
      phase == Phase::Connecting || phase == Phase::SettingUp || phase == Phase::Ready;
  if (drain.count() <= 0 || !connection || !has_unsent_input()) {
    finish_close();
    return;
  }
  {
    std::lock_guard lock(mutex);
    flush_partial_locked(); // the tail of the audio goes out as a short chunk
  }
  draining = true;
  drain_deadline = std::chrono::steady_clock::now() + drain;
  // The service still takes input until goAway's timeLeft runs out: no planned reconnect now.
  planned_reconnect = false;
  go_away_pending = false;
  lws_sul_cancel(&go_away_timer.sul);
  schedule(
      drain_timer, [](lws_sorted_usec_list_t *sul) { owner(sul)->finish_close(); }, drain);
  if (phase == Phase::Ready && wsi != nullptr)
    lws_callback_on_writable(wsi);
}

void LiveSession::Impl::finish_close() {
  if (closing || failed)
    return;
  // After a drain, the service's answer to our close frame is the proof that it read all the
  // input before it: wait for it until the drain's deadline. Giving up earlier would close a
  // socket with unread data, whose reset makes the service's kernel discard input it had not
  // read yet.
  std::chrono::microseconds grace = kCloseGrace;
  if (draining)
    grace = std::max(grace, std::chrono::duration_cast<std::chrono::microseconds>(
                                drain_deadline - std::chrono::steady_clock::now()));
  closing = true;
  draining = false;
  for (Timer *t : {&reconnect_timer, &setup_timer, &go_away_timer, &drain_timer})
    lws_sul_cancel(&t->sul);
  if (wsi != nullptr && (phase == Phase::SettingUp || phase == Phase::Ready)) {
    phase = Phase::Closing;
    lws_callback_on_writable(wsi);
    schedule(
        close_timer, [](lws_sorted_usec_list_t *sul) { owner(sul)->exit = true; }, grace);
    return;
  }
  if (wsi != nullptr)
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  wsi = nullptr;
  phase = Phase::None;
  exit = true;
}

void LiveSession::Impl::begin_planned_reconnect() {
  if (wsi == nullptr || (phase != Phase::SettingUp && phase != Phase::Ready) || planned_reconnect ||
      draining)
    return;
  planned_reconnect = true;
  lws_sul_cancel(&go_away_timer.sul);
  lws_callback_on_writable(wsi);
}

void LiveSession::Impl::on_wake() {
  bool close_now = false;
  bool has_output = false;
  {
    std::lock_guard lock(mutex);
    wake_pending = false;
    close_now = close_requested;
    has_output = !outbox.empty();
  }
  if (close_now) {
    begin_close();
    return;
  }
  report_drops();
  if (has_output && phase == Phase::Ready && wsi != nullptr)
    lws_callback_on_writable(wsi);
}

void LiveSession::Impl::report_drops() {
  const std::uint64_t dropped = dropped_audio.load(std::memory_order_relaxed);
  const auto now = std::chrono::steady_clock::now();
  if (dropped == reported_drops || now - last_drop_warning < kDropWarningInterval)
    return;
  const auto ms =
      (dropped - reported_drops) * 1000 / static_cast<std::uint64_t>(config.input_sample_rate);
  reported_drops = dropped;
  last_drop_warning = now;
  warn("dropped " + std::to_string(ms) +
       " ms of input audio: it could not be sent in time (disconnected or slow network)");
}

// ---------------------------------------------------------------------------------------------
// Network thread: writing

int LiveSession::Impl::on_writeable() {
  if (phase == Phase::Closing) {
    // lws sends the close frame after we return -1 once, then waits for the service's answer
    // (or the close timer). Returning -1 again would drop the socket at once, possibly with the
    // service's last messages unread, and the reset that follows discards input the service
    // had not read yet.
    if (close_frame_requested)
      return 0;
    close_frame_requested = true;
    lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
    return -1;
  }
  if (planned_reconnect && !current) {
    // Between messages only: a half-written message would leave the old socket mid-frame.
    lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
    abandon_connection();
    set_state(LiveState::Reconnecting);
    schedule(
        reconnect_timer, [](lws_sorted_usec_list_t *sul) { owner(sul)->start_connection(); },
        std::chrono::microseconds(0));
    return -1;
  }
  if (!current && (phase != Phase::Ready || !next_message())) {
    if (draining && phase == Phase::Ready)
      finish_close(); // everything queued is written
    return 0;
  }

  Outgoing &msg = *current;
  const std::size_t remaining = msg.payload.size() - current_offset;
  const std::size_t n = std::min(remaining, kFragmentBytes);
  const bool first = current_offset == 0;
  const bool last = n == remaining;
  txbuf.resize(LWS_PRE + n);
  std::memcpy(txbuf.data() + LWS_PRE, msg.payload.data() + current_offset, n);
  const int flags = lws_write_ws_flags(LWS_WRITE_TEXT, first ? 1 : 0, last ? 1 : 0);
  if (lws_write(wsi, txbuf.data() + LWS_PRE, n, static_cast<lws_write_protocol>(flags)) <
      static_cast<int>(n))
    return -1; // CLIENT_CLOSED follows and reconnects
  current_offset += n;
  if (last) {
    Outgoing done = std::move(*current);
    current.reset();
    current_offset = 0;
    on_message_written(done);
  }
  bool more =
      current.has_value() || planned_reconnect || (phase == Phase::Ready && !resend.empty());
  if (!more && phase == Phase::Ready) {
    std::lock_guard lock(mutex);
    more = !outbox.empty();
  }
  if (more)
    lws_callback_on_writable(wsi);
  else if (draining && phase == Phase::Ready)
    finish_close();
  return 0;
}

// Moves the next message to write into `current`: first what must be sent again after a
// reconnect, then new input. Returns false when there is nothing to send.
bool LiveSession::Impl::next_message() {
  while (!current) {
    Outgoing msg;
    if (!resend.empty()) {
      msg = std::move(resend.front());
      resend.pop_front();
    } else {
      std::lock_guard lock(mutex);
      if (outbox.empty())
        return false;
      msg = std::move(outbox.front());
      outbox.pop_front();
      if (msg.kind == Outgoing::Kind::Audio)
        outbox_samples -= msg.samples;
      if (msg.kind == Outgoing::Kind::Video)
        --outbox_video;
    }
    if (msg.kind == Outgoing::Kind::ToolResponse && !stale_calls.empty()) {
      std::vector<LiveFunctionResponse> keep;
      for (LiveFunctionResponse &r : msg.responses) {
        if (stale_calls.count(r.id) != 0)
          warn("dropped the response to function call \"" + r.id +
               "\": the call was cancelled when the connection was lost");
        else
          keep.push_back(std::move(r));
      }
      if (keep.empty())
        continue;
      if (keep.size() != msg.responses.size())
        msg.payload = live_codec::encode_tool_response(keep).dump();
      msg.responses = std::move(keep);
    }
    if (msg.sent_before)
      replayed.fetch_add(1, std::memory_order_relaxed);
    current = std::move(msg);
    current_offset = 0;
  }
  return true;
}

void LiveSession::Impl::on_message_written(Outgoing &msg) {
  messages_sent.fetch_add(1, std::memory_order_relaxed);
  if (msg.kind == Outgoing::Kind::ToolResponse) {
    for (const LiveFunctionResponse &r : msg.responses)
      pending_calls.erase(r.id);
  }
  if (!msg.replayable() || !config.session_resumption || max_replay_samples == 0)
    return;
  msg.sent_before = true;
  journal_samples += msg.samples;
  journal.push_back(std::move(msg));
  while (!journal.empty() &&
         (journal_samples > max_replay_samples || journal.size() > kMaxJournalEntries)) {
    journal_samples -= journal.front().samples;
    trimmed_replay.fetch_add(journal.front().samples, std::memory_order_relaxed);
    journal.pop_front();
  }
}

// ---------------------------------------------------------------------------------------------
// Network thread: reading

void LiveSession::Impl::on_receive(lws *w, const char *data, std::size_t len) {
  if (closing)
    return; // close() was called: nothing more reaches the application
  // The service sends pretty-printed JSON in binary frames, possibly fragmented; clients and
  // proxies may use text frames. Both are one JSON document per message.
  if (!rx_overflow) {
    if (rx.size() + len > config.max_message_bytes) {
      rx_overflow = true;
      rx.clear();
      rx.shrink_to_fit();
    } else {
      rx.append(data, len);
    }
  }
  if (!lws_is_final_fragment(w) || lws_remaining_packet_payload(w) != 0)
    return;
  messages_received.fetch_add(1, std::memory_order_relaxed);
  if (rx_overflow) {
    rx_overflow = false;
    malformed_message("a message larger than " + std::to_string(config.max_message_bytes) +
                      " bytes (LiveConfig::max_message_bytes) was skipped");
    return;
  }
  const std::string payload = std::move(rx);
  rx.clear();
  on_message(payload);
}

void LiveSession::Impl::malformed_message(const std::string &detail) {
  malformed.fetch_add(1, std::memory_order_relaxed);
  warn("ignored malformed Live message: " + detail);
}

void LiveSession::Impl::on_message(const std::string &payload) {
  live_codec::ServerMessage msg;
  try {
    msg = live_codec::decode_server_message(payload);
  } catch (const Error &e) {
    malformed_message(e.message());
    return;
  }
  if (!msg.errors.empty()) {
    std::string detail;
    for (const std::string &e : msg.errors)
      detail += (detail.empty() ? "" : "; ") + e;
    malformed_message(detail + " (the rest of the message was used)");
  }
  const std::uintptr_t tag = generation;
  // A callback may close the session or cause a reconnect: stop at once when it did.
  auto still_here = [&] { return generation == tag && !closing && !failed; };

  if (msg.setup_complete)
    on_setup_complete(*msg.setup_complete);
  if (msg.server_content && still_here())
    on_server_content(*msg.server_content);
  if (msg.tool_call && still_here()) {
    for (const LiveFunctionCall &c : *msg.tool_call)
      pending_calls.insert(c.id);
    turn_active = true;
    emit(callbacks.on_tool_call, *msg.tool_call);
  }
  if (msg.tool_call_cancellation && still_here()) {
    for (const std::string &id : *msg.tool_call_cancellation)
      pending_calls.erase(id);
    emit(callbacks.on_tool_call_cancellation, *msg.tool_call_cancellation);
  }
  if (msg.resumption_update && still_here())
    on_resumption_update(*msg.resumption_update);
  if (msg.go_away && still_here())
    on_go_away(*msg.go_away);
  if (msg.usage && !closing && !failed)
    emit(callbacks.on_usage, *msg.usage);
}

void LiveSession::Impl::on_setup_complete(const std::string &session_id) {
  if (phase != Phase::SettingUp) {
    warn("ignored an unexpected setupComplete");
    return;
  }
  lws_sul_cancel(&setup_timer.sul);
  phase = Phase::Ready;
  attempts = 0;
  if (ever_ready)
    reconnects.fetch_add(1, std::memory_order_relaxed);
  ever_ready = true;
  set_state(LiveState::Ready);
  emit(callbacks.on_setup_complete, session_id);
  if (wsi != nullptr && phase == Phase::Ready)
    lws_callback_on_writable(wsi);
}

void LiveSession::Impl::on_server_content(live_codec::ServerContent &content) {
  const std::uintptr_t tag = generation;
  auto still_here = [&] { return generation == tag && !closing && !failed; };
  if (!content.parts.empty() || content.output_transcription)
    turn_active = true;
  for (live_codec::ModelPart &part : content.parts) {
    if (!still_here())
      return;
    if (auto *audio = std::get_if<live_codec::AudioChunk>(&part))
      emit(callbacks.on_audio, std::move(audio->pcm), audio->sample_rate);
    else if (auto *text = std::get_if<live_codec::TextChunk>(&part))
      emit(callbacks.on_text, text->text);
  }
  if (content.input_transcription && still_here())
    emit(callbacks.on_input_transcription, content.input_transcription->text,
         content.input_transcription->finished);
  if (content.output_transcription && still_here())
    emit(callbacks.on_output_transcription, content.output_transcription->text,
         content.output_transcription->finished);
  if (content.grounding_metadata_json && still_here())
    emit(callbacks.on_grounding, *content.grounding_metadata_json);
  if (content.interrupted && still_here())
    emit(callbacks.on_interrupted);
  if (content.generation_complete && still_here())
    emit(callbacks.on_generation_complete);
  if (content.turn_complete && still_here()) {
    turn_active = false;
    emit(callbacks.on_turn_complete, content.turn_complete_reason);
    if (go_away_pending && still_here())
      begin_planned_reconnect();
  }
}

void LiveSession::Impl::on_resumption_update(const LiveResumptionUpdate &update) {
  if (update.resumable && !update.new_handle.empty()) {
    resume_handle = update.new_handle;
    // What was written before this update is part of the state the handle resumes.
    journal.clear();
    journal_samples = 0;
  }
  emit(callbacks.on_resumption_update, update);
}

void LiveSession::Impl::on_go_away(std::chrono::milliseconds time_left) {
  emit(callbacks.on_go_away, time_left);
  if (closing || failed || draining || phase != Phase::Ready)
    return;
  go_away_pending = true;
  if (!turn_active) {
    begin_planned_reconnect();
    return;
  }
  // Finish the turn if it ends in time; otherwise reconnect well before the service cuts us off.
  const auto margin = std::min(kGoAwayMargin, time_left / 2);
  schedule(
      go_away_timer, [](lws_sorted_usec_list_t *sul) { owner(sul)->begin_planned_reconnect(); },
      time_left - margin);
}

void LiveSession::Impl::set_state(LiveState s) {
  if (state.exchange(s, std::memory_order_acq_rel) != s)
    emit(callbacks.on_state, s);
}

void LiveSession::Impl::warn(const std::string &text) {
  emit(callbacks.on_warning, text);
}

// ---------------------------------------------------------------------------------------------
// Public API

LiveSession::LiveSession(Endpoint endpoint, LiveConfig config, LiveCallbacks callbacks)
    : impl_(std::make_shared<Impl>(std::move(endpoint), std::move(config), std::move(callbacks))) {}

LiveSession::~LiveSession() {
  Impl &impl = *impl_;
  if (std::this_thread::get_id() == impl.thread_id) {
    // Destroyed from one of its own callbacks: the thread cannot join itself. It keeps the
    // shared Impl alive, finishes the close and delivers nothing more.
    impl.suppress_callbacks.store(true, std::memory_order_release);
    {
      std::lock_guard lock(impl.mutex);
      impl.close_requested = true;
      impl.wake_pending = false;
      impl.wake_locked();
    }
    std::lock_guard join_lock(impl.join_mutex);
    if (impl.thread.joinable())
      impl.thread.detach();
    return;
  }
  close();
}

void LiveSession::connect() {
  Impl &impl = *impl_;
  {
    std::lock_guard lock(impl.mutex);
    if (impl.started || impl.close_requested)
      throw Error(ErrorKind::InvalidArgument,
                  "LiveSession::connect(): a session connects once; create a new one");
  }
  impl.validate_and_prepare();
  impl.start();
  std::lock_guard join_lock(impl.join_mutex);
  {
    std::lock_guard lock(impl.mutex);
    impl.started = true;
    impl.state.store(LiveState::Connecting, std::memory_order_release);
  }
  try {
    // The thread holds its own reference: see ~LiveSession().
    impl.thread = std::thread([keep = impl_] {
      keep->thread_id.store(std::this_thread::get_id());
      keep->run();
    });
  } catch (const std::system_error &e) {
    lws_context *ctx = nullptr;
    {
      std::lock_guard lock(impl.mutex);
      std::swap(ctx, impl.context);
      impl.started = false;
      impl.state.store(LiveState::Idle, std::memory_order_release);
    }
    impl.destroying = true;
    lws_context_destroy(ctx);
    throw Error(ErrorKind::Network,
                std::string("cannot start the Live network thread: ") + e.what());
  }
  impl.thread_id.store(impl.thread.get_id());
}

void LiveSession::close() {
  close(impl_->config.close_drain_timeout);
}

void LiveSession::close(std::chrono::milliseconds drain_timeout) {
  Impl &impl = *impl_;
  {
    std::lock_guard lock(impl.mutex);
    if (!impl.close_requested)
      impl.close_drain = std::max(std::chrono::milliseconds(0), drain_timeout);
    impl.close_requested = true;
    if (!impl.started) {
      impl.state.store(LiveState::Closed, std::memory_order_release);
      impl.outbox.clear();
      impl.partial.clear();
      return;
    }
    impl.wake_pending = false; // force a wake even if one is pending
    impl.wake_locked();
  }
  if (std::this_thread::get_id() == impl.thread_id)
    return; // from a callback: the loop closes once the callback returns
  std::lock_guard join_lock(impl.join_mutex);
  if (impl.thread.joinable())
    impl.thread.join();
}

LiveState LiveSession::state() const noexcept {
  return impl_->state.load(std::memory_order_acquire);
}

std::uint64_t LiveSession::malformed_count() const noexcept {
  return impl_->malformed.load(std::memory_order_relaxed);
}

LiveStats LiveSession::stats() const noexcept {
  const Impl &i = *impl_;
  LiveStats s;
  s.messages_sent = i.messages_sent.load(std::memory_order_relaxed);
  s.messages_received = i.messages_received.load(std::memory_order_relaxed);
  s.malformed_messages = i.malformed.load(std::memory_order_relaxed);
  s.reconnects = i.reconnects.load(std::memory_order_relaxed);
  s.replayed_messages = i.replayed.load(std::memory_order_relaxed);
  s.dropped_audio_samples = i.dropped_audio.load(std::memory_order_relaxed);
  s.dropped_video_frames = i.dropped_video.load(std::memory_order_relaxed);
  s.trimmed_replay_samples = i.trimmed_replay.load(std::memory_order_relaxed);
  return s;
}

bool LiveSession::send_audio(const std::int16_t *pcm, std::size_t samples) {
  Impl &impl = *impl_;
  std::lock_guard lock(impl.mutex);
  if (!impl.accepting_locked())
    return false;
  if (samples == 0)
    return true;
  impl.partial.insert(impl.partial.end(), pcm, pcm + samples);
  const std::size_t chunk = impl.chunk_samples;
  std::size_t offset = 0;
  for (; impl.partial.size() - offset >= chunk; offset += chunk) {
    impl.enqueue_locked({Outgoing::Kind::Audio,
                         live_codec::encode_audio(impl.partial.data() + offset, chunk,
                                                  impl.config.input_sample_rate)
                             .dump(),
                         chunk,
                         {},
                         false});
  }
  impl.partial.erase(impl.partial.begin(),
                     impl.partial.begin() + static_cast<std::ptrdiff_t>(offset));
  return true;
}

bool LiveSession::send_video_jpeg(std::string_view jpeg) {
  if (jpeg.empty())
    throw Error(ErrorKind::InvalidArgument, "send_video_jpeg(): empty frame");
  std::string payload = live_codec::encode_video_jpeg(jpeg).dump();
  Impl &impl = *impl_;
  std::lock_guard lock(impl.mutex);
  if (!impl.accepting_locked())
    return false;
  impl.enqueue_locked({Outgoing::Kind::Video, std::move(payload), 0, {}, false});
  return true;
}

bool LiveSession::Impl::enqueue_message(Outgoing msg) {
  std::lock_guard lock(mutex);
  if (!accepting_locked())
    return false;
  flush_partial_locked();
  enqueue_locked(std::move(msg));
  return true;
}

bool LiveSession::send_text(const std::string &text) {
  return impl_->enqueue_message(
      {Outgoing::Kind::Text, live_codec::encode_text(text).dump(), 0, {}, false});
}

bool LiveSession::activity_start() {
  if (impl_->config.activity_detection.automatic)
    throw Error(ErrorKind::InvalidArgument,
                "activity_start() needs automatic activity detection disabled "
                "(LiveConfig::activity_detection.automatic = false)");
  return impl_->enqueue_message(
      {Outgoing::Kind::Activity, live_codec::encode_activity_start().dump(), 0, {}, false});
}

bool LiveSession::activity_end() {
  if (impl_->config.activity_detection.automatic)
    throw Error(ErrorKind::InvalidArgument,
                "activity_end() needs automatic activity detection disabled "
                "(LiveConfig::activity_detection.automatic = false)");
  return impl_->enqueue_message(
      {Outgoing::Kind::Activity, live_codec::encode_activity_end().dump(), 0, {}, false});
}

bool LiveSession::audio_stream_end() {
  return impl_->enqueue_message(
      {Outgoing::Kind::Activity, live_codec::encode_audio_stream_end().dump(), 0, {}, false});
}

bool LiveSession::send_client_content(const std::vector<LiveTurn> &turns, bool turn_complete) {
  return impl_->enqueue_message({Outgoing::Kind::ClientContent,
                                 live_codec::encode_client_content(turns, turn_complete).dump(),
                                 0,
                                 {},
                                 false});
}

bool LiveSession::send_tool_response(const std::vector<LiveFunctionResponse> &responses) {
  return impl_->enqueue_message({Outgoing::Kind::ToolResponse,
                                 live_codec::encode_tool_response(responses).dump(), 0, responses,
                                 false});
}

} // namespace gemstream
