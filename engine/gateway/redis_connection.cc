#include "redis_connection.h"

#include "gemstream/error.h"

#include <charconv>
#include <string_view>

namespace gemstream::gateway {

RedisUrl parse_redis_url(const std::string &url) {
  constexpr std::string_view kScheme = "redis://";
  auto bad = [](const std::string &why) {
    return Error(ErrorKind::Config,
                 "job store: " + why + " (expected redis://[[user]:password@]host[:port][/db])");
  };
  if (url.rfind(kScheme, 0) != 0)
    throw bad("the Redis URL must start with redis://");
  std::string rest = url.substr(kScheme.size());
  RedisUrl u;
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = credentials.find(':');
    if (colon == std::string::npos) {
      u.password = credentials;
    } else {
      u.user = credentials.substr(0, colon);
      u.password = credentials.substr(colon + 1);
    }
  }
  std::string path;
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  std::string port;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos)
      throw bad("unterminated IPv6 address in the Redis URL");
    u.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':')
        throw bad("unexpected text after the IPv6 address in the Redis URL");
      port = rest.substr(close + 2);
    }
  } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    u.host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  } else {
    u.host = rest;
  }
  if (u.host.empty())
    throw bad("the Redis URL has no host");
  auto parse_small = [&](const std::string &text, int max, const char *what) {
    int v = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v < 0 || v > max)
      throw bad(std::string("the Redis URL's ") + what + " must be a number from 0 to " +
                std::to_string(max) + ", got \"" + text + "\"");
    return v;
  };
  if (!port.empty())
    u.port = parse_small(port, 65535, "port");
  if (!path.empty())
    u.db = parse_small(path, 1 << 20, "database number");
  const bool v6 = u.host.find(':') != std::string::npos;
  u.display = "redis://" + (v6 ? "[" + u.host + "]" : u.host) + ":" + std::to_string(u.port) + "/" +
              std::to_string(u.db);
  return u;
}

} // namespace gemstream::gateway
