#include "notifications.h"

namespace gemstream::gateway {

using json = nlohmann::json;

std::size_t NotificationHub::publish(const std::string &user, const json &event) {
  const std::string text = event.dump(-1, ' ', false, json::error_handler_t::replace);
  std::lock_guard lock(mutex_);
  const auto it = subscribers_.find(user);
  if (it == subscribers_.end())
    return 0;
  for (const std::uint64_t id : it->second)
    server_.send_ws(id, text);
  return it->second.size();
}

void NotificationHub::on_open(const WsSession &session) {
  {
    std::lock_guard lock(mutex_);
    subscribers_[session.user].insert(session.id);
  }
  server_.send_ws(session.id, json{{"type", "ready"}, {"user", session.user}}.dump());
}

void NotificationHub::on_message(const WsSession &session, std::string_view data, bool binary) {
  if (binary)
    return;
  const json message = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (message.is_object() && message.value("type", "") == "ping")
    server_.send_ws(session.id, R"({"type":"pong"})");
}

void NotificationHub::on_close(const WsSession &session) {
  std::lock_guard lock(mutex_);
  const auto it = subscribers_.find(session.user);
  if (it == subscribers_.end())
    return;
  it->second.erase(session.id);
  if (it->second.empty())
    subscribers_.erase(it);
}

} // namespace gemstream::gateway
