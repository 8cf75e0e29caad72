#include "redis_notifications.h"

#include "gemstream/error.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace gemstream::gateway {

using json = nlohmann::json;

namespace {

constexpr timeval kConnectTimeout{2, 0};
// Bounds PUBLISH on the job worker's thread and the SUBSCRIBE handshake.
constexpr timeval kCommandTimeout{5, 0};
constexpr int kFirstBackoffMs = 100;
constexpr int kMaxBackoffMs = 5000;

std::string reply_text(const redisReply &r) {
  return r.str ? std::string(r.str, r.len) : std::string();
}

} // namespace

RedisNotificationBus::RedisNotificationBus(const std::string &url, const std::string &prefix,
                                           std::string origin, Deliver deliver, Log log)
    : url_(parse_redis_url(url)),
      channel_(prefix + "notifications:" + std::to_string(url_.db)), origin_(std::move(origin)),
      deliver_(std::move(deliver)), log_(std::move(log)) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0)
    throw Error(ErrorKind::Io, std::string("notifications: eventfd failed: ") +
                                   std::strerror(errno));
}

RedisNotificationBus::~RedisNotificationBus() {
  stop();
  ::close(wake_fd_);
}

void RedisNotificationBus::start() {
  if (thread_.joinable())
    return;
  std::uint64_t drained = 0;
  while (::read(wake_fd_, &drained, sizeof drained) > 0) {
  }
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void RedisNotificationBus::stop() {
  if (!thread_.joinable())
    return;
  stopping_ = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
  thread_.join();
}

RedisContextPtr RedisNotificationBus::connect(const char *purpose) const {
  const std::string where = std::string("notifications ") + purpose + " " + url_.display + ": ";
  RedisContextPtr ctx(redisConnectWithTimeout(url_.host.c_str(), url_.port, kConnectTimeout));
  if (!ctx)
    throw Error(ErrorKind::Io, where + "out of memory");
  if (ctx->err)
    throw Error(ErrorKind::Io, where + "cannot connect: " + ctx->errstr);
  redisSetTimeout(ctx.get(), kCommandTimeout);
  redisEnableKeepAlive(ctx.get());
  if (!url_.password.empty()) {
    RedisReplyPtr reply(static_cast<redisReply *>(
        url_.user.empty()
            ? redisCommand(ctx.get(), "AUTH %b", url_.password.data(), url_.password.size())
            : redisCommand(ctx.get(), "AUTH %b %b", url_.user.data(), url_.user.size(),
                           url_.password.data(), url_.password.size())));
    // The server's reply may quote what it was sent; say only that it refused.
    if (!reply || reply->type == REDIS_REPLY_ERROR)
      throw Error(ErrorKind::Io, where + "the server refused the credentials in the URL");
  }
  return ctx;
}

void RedisNotificationBus::publish(const std::string &owner, const json &event) {
  const std::string message =
      json{{"origin", origin_}, {"owner", owner}, {"event", event}}.dump(
          -1, ' ', false, json::error_handler_t::replace);
  std::lock_guard lock(publish_mutex_);
  try {
    if (!publisher_)
      publisher_ = connect("publisher");
    RedisReplyPtr reply(static_cast<redisReply *>(
        redisCommand(publisher_.get(), "PUBLISH %b %b", channel_.data(), channel_.size(),
                     message.data(), message.size())));
    if (!reply) {
      const std::string why = publisher_->errstr;
      publisher_.reset(); // the next publish() reconnects
      throw Error(ErrorKind::Io, "notifications publisher " + url_.display + ": " + why);
    }
    if (reply->type == REDIS_REPLY_ERROR)
      throw Error(ErrorKind::Io, "notifications publisher " + url_.display +
                                     ": PUBLISH failed: " + reply_text(*reply));
  } catch (const Error &e) {
    if (log_)
      log_(std::string(e.what()) + "; only this gateway's sockets got " +
           event.value("type", "the event") + " for " + owner);
  }
}

bool RedisNotificationBus::wait(int ms) {
  pollfd p{wake_fd_, POLLIN, 0};
  ::poll(&p, 1, ms);
  return !stopping_;
}

void RedisNotificationBus::run() {
  backoff_ms_ = kFirstBackoffMs;
  failing_ = false;
  while (!stopping_) {
    try {
      listen();
      return;
    } catch (const Error &e) {
      if (stopping_)
        return;
      // One line per outage, not one per retry.
      if (!failing_ && log_)
        log_(std::string(e.what()) + "; other gateways' notifications are not delivered here "
                                     "until it reconnects (retrying with backoff)");
      failing_ = true;
    }
    if (!wait(backoff_ms_))
      return;
    backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  }
}

void RedisNotificationBus::listen() {
  RedisContextPtr ctx = connect("subscriber");
  const std::string where = "notifications subscriber " + url_.display + ": ";
  RedisReplyPtr ack(static_cast<redisReply *>(
      redisCommand(ctx.get(), "SUBSCRIBE %b", channel_.data(), channel_.size())));
  if (!ack)
    throw Error(ErrorKind::Io, where + "SUBSCRIBE failed: " + ctx->errstr);
  if (ack->type != REDIS_REPLY_ARRAY)
    throw Error(ErrorKind::Io, where + "SUBSCRIBE failed: " + reply_text(*ack));
  if (log_)
    log_(std::string(failing_ ? "notifications: reconnected, " : "notifications: ") +
         "subscribed to " + channel_ + " on " + url_.display);
  failing_ = false;
  backoff_ms_ = kFirstBackoffMs;

  // Poll rather than block in redisGetReply(): a hiredis context is unusable after a read
  // timeout, and stop() must be able to interrupt the wait.
  pollfd fds[2] = {{ctx->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (!stopping_) {
    // Replies already buffered (read along with the acknowledgement) first: poll() would not
    // report them.
    for (;;) {
      void *raw = nullptr;
      if (redisGetReplyFromReader(ctx.get(), &raw) != REDIS_OK)
        throw Error(ErrorKind::Io, where + "bad reply: " + ctx->errstr);
      if (!raw)
        break;
      handle(*RedisReplyPtr(static_cast<redisReply *>(raw)));
    }
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      throw Error(ErrorKind::Io, where + "poll failed: " + std::strerror(errno));
    }
    if (fds[1].revents != 0 || stopping_)
      return;
    if (redisBufferRead(ctx.get()) != REDIS_OK)
      throw Error(ErrorKind::Io, where + "connection lost: " + ctx->errstr);
  }
}

void RedisNotificationBus::handle(const redisReply &reply) {
  // ["message", channel, payload]; the subscribe acknowledgements are ignored.
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 3 ||
      reply.element[0]->type != REDIS_REPLY_STRING || reply_text(*reply.element[0]) != "message")
    return;
  const json message =
      json::parse(reply_text(*reply.element[2]), nullptr, /*allow_exceptions=*/false);
  if (!message.is_object() || !message.contains("event") || !message["event"].is_object() ||
      !message.contains("owner") || !message["owner"].is_string()) {
    if (log_)
      log_("notifications: ignored a malformed message on " + channel_);
    return;
  }
  if (message.value("origin", "") == origin_)
    return; // delivered locally when it was published
  deliver_(message["owner"].get<std::string>(), message["event"]);
}

} // namespace gemstream::gateway
