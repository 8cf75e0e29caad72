// What the Redis job store and the notification bus share: the URL of the server and RAII for
// hiredis objects.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <string>

namespace gemstream::gateway {

struct RedisContextFree {
  void operator()(redisContext *c) const noexcept { redisFree(c); }
};
struct RedisReplyFree {
  void operator()(redisReply *r) const noexcept { freeReplyObject(r); }
};
using RedisContextPtr = std::unique_ptr<redisContext, RedisContextFree>;
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

struct RedisUrl {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string user;
  std::string password;
  std::string display; // without the credentials, for messages
};

// redis://[[user]:password@]host[:port][/db]; throws Error(Config) saying what is wrong.
RedisUrl parse_redis_url(const std::string &url);

} // namespace gemstream::gateway
