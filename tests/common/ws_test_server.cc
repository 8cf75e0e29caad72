#include "common/ws_test_server.h"

#include <libwebsockets.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace gemstream::testing {

std::vector<nlohmann::json> WsConnection::json_messages() const {
  std::vector<nlohmann::json> out;
  for (const WsMessage &m : received) {
    auto j = nlohmann::json::parse(m.data, nullptr, false);
    if (!j.is_discarded())
      out.push_back(std::move(j));
  }
  return out;
}

namespace {

struct Action {
  enum class Kind { Data, Close, Drop } kind = Kind::Data;
  std::string payload;
  bool binary = true;
  int frames = 1;
  int code = 0;
  // progress of a Data action
  int frames_written = 0;
  std::size_t offset = 0;
};

struct Conn {
  WsConnection record;
  lws *wsi = nullptr;
  std::deque<Action> actions;
  std::string rx;
  bool rx_binary = false;
  int rx_frames = 0;
};

// Per-session data: only the index of the connection (lws zero-fills it).
struct Pss {
  int index_plus_one;
};

} // namespace

struct WsTestServer::Impl {
  Options options;
  WsTestServer *owner = nullptr;
  lws_context *context = nullptr;
  std::uint16_t port = 0;
  std::thread thread;
  std::atomic<bool> stopping{false};
  lws_protocols protocols[2] = {};

  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::uint64_t version = 0; // bumped with every recorded change
  std::vector<Conn> conns;
  Handler handler;
  std::map<lws *, WsConnection> upgrading; // headers seen before ESTABLISHED
  std::vector<unsigned char> txbuf;

  void bump() { // `mutex` held
    ++version;
    changed.notify_all();
  }
  static int callback(lws *wsi, lws_callback_reasons reason, void *user, void *in, size_t len);
  int on_event(lws *wsi, lws_callback_reasons reason, Pss *pss, void *in, size_t len);
  int on_writeable(lws *wsi, Conn &c);
  void queue(int connection, Action action);
};

namespace {

std::string header(lws *wsi, enum lws_token_indexes token) {
  const int n = lws_hdr_total_length(wsi, token);
  if (n <= 0)
    return {};
  std::string out(static_cast<std::size_t>(n) + 1, '\0');
  lws_hdr_copy(wsi, out.data(), n + 1, token);
  out.resize(static_cast<std::size_t>(n));
  return out;
}

} // namespace

int WsTestServer::Impl::callback(lws *wsi, lws_callback_reasons reason, void *user, void *in,
                                 size_t len) {
  auto *self = static_cast<Impl *>(lws_context_user(lws_get_context(wsi)));
  if (self == nullptr || self->stopping.load())
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  const int r = self->on_event(wsi, reason, static_cast<Pss *>(user), in, len);
  if (r != 1000)
    return r;
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int WsTestServer::Impl::on_event(lws *wsi, lws_callback_reasons reason, Pss *pss, void *in,
                                 size_t len) {
  switch (reason) {
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
    WsConnection rec;
    rec.path = header(wsi, WSI_TOKEN_GET_URI);
    rec.query = header(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    static const char kKey[] = "x-goog-api-key:";
    const int n = lws_hdr_custom_length(wsi, kKey, static_cast<int>(sizeof kKey - 1));
    if (n >= 0) {
      std::string value(static_cast<std::size_t>(n) + 1, '\0');
      lws_hdr_custom_copy(wsi, value.data(), n + 1, kKey, static_cast<int>(sizeof kKey - 1));
      value.resize(static_cast<std::size_t>(n));
      rec.api_key = value;
    }
    std::lock_guard lock(mutex);
    upgrading[wsi] = std::move(rec);
    return 0;
  }
  case LWS_CALLBACK_ESTABLISHED: {
    std::lock_guard lock(mutex);
    Conn c;
    if (auto it = upgrading.find(wsi); it != upgrading.end()) {
      c.record = std::move(it->second);
      upgrading.erase(it);
    }
    c.record.id = static_cast<int>(conns.size());
    c.wsi = wsi;
    pss->index_plus_one = c.record.id + 1;
    conns.push_back(std::move(c));
    bump();
    return 0;
  }
  case LWS_CALLBACK_RECEIVE: {
    if (pss->index_plus_one == 0)
      return -1;
    const int id = pss->index_plus_one - 1;
    std::string complete;
    Handler h;
    {
      std::lock_guard lock(mutex);
      Conn &c = conns[static_cast<std::size_t>(id)];
      if (c.rx.empty() && c.rx_frames == 0)
        c.rx_binary = lws_frame_is_binary(wsi) != 0;
      c.rx.append(static_cast<const char *>(in), len);
      if (lws_remaining_packet_payload(wsi) == 0)
        ++c.rx_frames;
      if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) != 0)
        return 0;
      complete = std::move(c.rx);
      c.rx.clear();
      c.record.received.push_back({complete, c.rx_binary, c.rx_frames});
      c.record.events.push_back("rx " + complete);
      c.rx_frames = 0;
      h = handler;
      bump();
    }
    if (options.auto_setup_complete) {
      auto j = nlohmann::json::parse(complete, nullptr, false);
      if (j.is_object() && j.contains("setup")) {
        nlohmann::json done = nlohmann::json::object();
        if (!options.session_id.empty())
          done["sessionId"] = options.session_id;
        Action a;
        a.payload = nlohmann::json{{"setupComplete", done}}.dump(2) + "\n";
        queue(id, std::move(a));
      }
    }
    if (h)
      h(*owner, id, complete); // on this thread, without the lock: it may drive the server
    return 0;
  }
  case LWS_CALLBACK_SERVER_WRITEABLE: {
    if (pss->index_plus_one == 0)
      return 0;
    std::lock_guard lock(mutex);
    return on_writeable(wsi, conns[static_cast<std::size_t>(pss->index_plus_one - 1)]);
  }
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
    if (pss->index_plus_one == 0)
      return 0;
    std::lock_guard lock(mutex);
    const auto *b = static_cast<const unsigned char *>(in);
    conns[static_cast<std::size_t>(pss->index_plus_one - 1)].record.client_close_code =
        len >= 2 ? (b[0] << 8) | b[1] : 1005;
    bump();
    return 0;
  }
  case LWS_CALLBACK_CLOSED: {
    std::lock_guard lock(mutex);
    upgrading.erase(wsi);
    if (pss != nullptr && pss->index_plus_one != 0) {
      Conn &c = conns[static_cast<std::size_t>(pss->index_plus_one - 1)];
      c.wsi = nullptr;
      c.record.open = false;
      c.actions.clear();
    }
    bump();
    return 0;
  }
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
    std::lock_guard lock(mutex);
    for (Conn &c : conns) {
      if (c.wsi != nullptr && !c.actions.empty())
        lws_callback_on_writable(c.wsi);
    }
    return 0;
  }
  default: return 1000;
  }
}

// `mutex` held.
int WsTestServer::Impl::on_writeable(lws *wsi, Conn &c) {
  if (c.actions.empty())
    return 0;
  Action &a = c.actions.front();
  if (a.kind == Action::Kind::Close) {
    c.record.events.push_back("close " + std::to_string(a.code));
    std::string reason = std::move(a.payload);
    lws_close_reason(wsi, static_cast<lws_close_status>(a.code),
                     reinterpret_cast<unsigned char *>(reason.data()), reason.size());
    c.actions.clear();
    bump();
    return -1;
  }
  if (a.kind == Action::Kind::Drop) {
    c.record.events.push_back("drop");
    c.actions.clear();
    // Shut the socket down first so that lws cannot send a close frame on the way out.
    ::shutdown(lws_get_socket_fd(wsi), SHUT_RDWR);
    bump();
    return -1;
  }
  const int frames = std::max(1, a.frames);
  const std::size_t per_frame =
      (a.payload.size() + static_cast<std::size_t>(frames) - 1) / static_cast<std::size_t>(frames);
  const std::size_t n = std::min(per_frame, a.payload.size() - a.offset);
  const bool first = a.frames_written == 0;
  const bool last = a.offset + n == a.payload.size();
  txbuf.resize(LWS_PRE + n);
  std::memcpy(txbuf.data() + LWS_PRE, a.payload.data() + a.offset, n);
  const int flags = lws_write_ws_flags(a.binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, first, last);
  if (lws_write(wsi, txbuf.data() + LWS_PRE, n, static_cast<lws_write_protocol>(flags)) <
      static_cast<int>(n))
    return -1;
  a.offset += n;
  ++a.frames_written;
  if (last) {
    c.record.events.push_back("tx " + a.payload);
    c.actions.pop_front();
    bump();
  }
  if (!c.actions.empty())
    lws_callback_on_writable(wsi);
  return 0;
}

void WsTestServer::Impl::queue(int connection, Action action) {
  std::lock_guard lock(mutex);
  if (connection < 0 || static_cast<std::size_t>(connection) >= conns.size())
    throw std::out_of_range("WsTestServer: no connection " + std::to_string(connection));
  Conn &c = conns[static_cast<std::size_t>(connection)];
  if (c.wsi == nullptr)
    return;
  c.actions.push_back(std::move(action));
  lws_cancel_service(context);
}

WsTestServer::WsTestServer() : WsTestServer(Options{}) {}

WsTestServer::WsTestServer(Options options) : impl_(std::make_unique<Impl>()) {
  Impl &i = *impl_;
  lws_set_log_level(LLL_ERR | LLL_WARN, nullptr);
  i.options = std::move(options);
  i.owner = this;
  i.protocols[0].name = "gemini-live-test";
  i.protocols[0].callback = &Impl::callback;
  i.protocols[0].per_session_data_size = sizeof(Pss);
  i.protocols[0].rx_buffer_size = 16 * 1024;
  i.protocols[1] = {};

  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6 |
                 LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  info.user = &i;
  info.port = 0;
  info.iface = "127.0.0.1";
  info.protocols = i.protocols;
  info.fd_limit_per_thread = 64;
  lws_context *ctx = lws_create_context(&info);
  if (ctx == nullptr)
    throw std::runtime_error("WsTestServer: cannot create the lws context");
  lws_vhost *vh = lws_create_vhost(ctx, &info);
  const int port = vh != nullptr ? lws_get_vhost_listen_port(vh) : -1;
  if (port <= 0) {
    lws_context_destroy(ctx);
    throw std::runtime_error("WsTestServer: cannot listen on 127.0.0.1");
  }
  i.context = ctx;
  i.port = static_cast<std::uint16_t>(port);
  i.thread = std::thread([&i] {
    while (!i.stopping.load()) {
      if (lws_service(i.context, 0) < 0)
        break;
    }
  });
}

WsTestServer::~WsTestServer() {
  impl_->stopping.store(true);
  lws_cancel_service(impl_->context);
  impl_->thread.join();
  lws_context_destroy(impl_->context);
}

std::uint16_t WsTestServer::port() const {
  return impl_->port;
}

std::string WsTestServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port);
}

void WsTestServer::set_handler(Handler handler) {
  std::lock_guard lock(impl_->mutex);
  impl_->handler = std::move(handler);
}

void WsTestServer::set_auto_setup_complete(bool enabled) {
  std::lock_guard lock(impl_->mutex);
  impl_->options.auto_setup_complete = enabled;
}

void WsTestServer::send(int connection, std::string payload, bool binary, int frames) {
  Action a;
  a.payload = std::move(payload);
  a.binary = binary;
  a.frames = frames;
  impl_->queue(connection, std::move(a));
}

void WsTestServer::send_json(int connection, const nlohmann::json &message, int frames) {
  send(connection, message.dump(2) + "\n", true, frames);
}

void WsTestServer::close(int connection, int code, std::string reason) {
  Action a;
  a.kind = Action::Kind::Close;
  a.code = code;
  a.payload = std::move(reason);
  impl_->queue(connection, std::move(a));
}

void WsTestServer::drop(int connection) {
  Action a;
  a.kind = Action::Kind::Drop;
  impl_->queue(connection, std::move(a));
}

std::vector<WsConnection> WsTestServer::connections() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<WsConnection> out;
  for (const Conn &c : impl_->conns)
    out.push_back(c.record);
  return out;
}

std::size_t WsTestServer::connection_count() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->conns.size();
}

bool WsTestServer::wait_for(const std::function<bool(const std::vector<WsConnection> &)> &pred,
                            std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(impl_->mutex);
  while (true) {
    std::vector<WsConnection> snapshot;
    for (const Conn &c : impl_->conns)
      snapshot.push_back(c.record);
    const std::uint64_t seen = impl_->version;
    lock.unlock();
    if (pred(snapshot))
      return true;
    lock.lock();
    if (!impl_->changed.wait_until(lock, deadline, [&] { return impl_->version != seen; }))
      return false;
  }
}

} // namespace gemstream::testing
