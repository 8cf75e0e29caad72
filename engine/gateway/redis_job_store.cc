// The shared job store: a Redis server. Keys, all under the configured prefix:
//   PREFIXschema            "gemstream-jobs 1": marks the prefix as a job store
//   PREFIXjob:ID            hash, one field per JobRecord member (times in ms since the epoch)
//   PREFIXactive            zset of unfinished (queued, running) job ids, score created_ms
//   PREFIXowner:OWNER       zset of the owner's job ids, score created_ms (list())
//   PREFIXunfinished:OWNER  set of the owner's queued and running job ids (budget reservations)
//   PREFIXstarts            zset of job ids, score started_ms (the start-rate limit)
// Every method is one command or one Lua script, so each is atomic against every gateway
// sharing the server. The scripts touch keys they compute from the prefix, which a Redis
// Cluster would refuse; the store expects a single server (or a replicated primary).
#include "gemstream/job_store.h"

#include "gemstream/error.h"
#include "redis_connection.h"
#include "store_time.h"

#include <hiredis/hiredis.h>

#include <charconv>
#include <cstdio>
#include <mutex>

namespace gemstream::gateway {
namespace {

constexpr const char *kSchemaMarker = "gemstream-jobs 1";
constexpr timeval kConnectTimeout{5, 0};
constexpr timeval kCommandTimeout{10, 0};
// Start records older than this are dropped; far longer than the one-minute window so that
// workers whose clocks differ a little still count each other's starts.
constexpr std::int64_t kStartsKeptMs = 3'600'000;

std::int64_t now_ms() {
  return to_ms(std::chrono::system_clock::now());
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::int64_t parse_int(const std::string &s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// The fields of a job hash, in the order read_job() expects them.
constexpr const char *kFields[] = {"id",          "owner",          "kind",
                                   "spec",        "state",          "phase",
                                   "progress",    "operation",      "operation_started_ms",
                                   "attempts",    "lease_owner",    "lease_until_ms",
                                   "created_ms",  "updated_ms",     "started_ms",
                                   "finished_ms", "estimate_nanos", "cost_nanos",
                                   "result",      "error"};
constexpr std::size_t kFieldCount = std::size(kFields);

// KEYS: job, active, owner zset, unfinished set. ARGV: id, created_ms, field/value pairs.
constexpr const char *kCreateScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1
)lua";

// KEYS: active, starts. ARGV: prefix, now, worker, lease_until, concurrency, starts_per_minute,
// updated_ms, starts cutoff. Returns the claimed id or false. The order matches the SQLite
// store: resumable operations first, then running jobs whose worker died before the operation
// was known, then queued jobs; oldest first, then by id.
constexpr const char *kClaimScript = R"lua(
local prefix, now = ARGV[1], tonumber(ARGV[2])
local running = 0
local best, best_rank
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', prefix .. 'job:' .. id, 'state', 'lease_until_ms', 'operation',
                       'created_ms')
  if f[1] == 'running' and tonumber(f[2]) > now then
    running = running + 1
  elseif f[1] == 'running' or f[1] == 'queued' then
    local rank = {f[3] == '' and 1 or 0, f[1] == 'queued' and 1 or 0, tonumber(f[4]), id}
    local better = best == nil
    if not better then
      for i = 1, 4 do
        if rank[i] ~= best_rank[i] then better = rank[i] < best_rank[i]; break end
      end
    end
    if better then best, best_rank = id, rank end
  end
end
if best == nil or running >= tonumber(ARGV[5]) then return false end
if best_rank[1] == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[8])
  local started = redis.call('ZCOUNT', KEYS[2], '(' .. (now - 60000), '+inf')
  if started >= tonumber(ARGV[6]) then
    -- No start slot: only a resumable operation may be claimed, and those rank first.
    return false
  end
end
local key = prefix .. 'job:' .. best
redis.call('HSET', key, 'state', 'running', 'lease_owner', ARGV[3], 'lease_until_ms', ARGV[4],
           'updated_ms', ARGV[7])
redis.call('HINCRBY', key, 'attempts', 1)
if best_rank[1] == 1 then
  redis.call('HSET', key, 'started_ms', ARGV[2], 'phase', 'starting')
  redis.call('ZADD', KEYS[2], ARGV[2], best)
end
return best
)lua";

// KEYS: job, active. ARGV: prefix, worker, mode, field/value pairs. Writes only while `worker`
// holds the running job's lease. mode "finish" takes the job out of the queue; "release" also
// uncounts the attempt.
constexpr const char *kGuardedWriteScript = R"lua(
local f = redis.call('HMGET', KEYS[1], 'state', 'lease_owner', 'owner', 'id', 'attempts')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[3] == 'finish' then
  redis.call('ZREM', KEYS[2], f[4])
  redis.call('SREM', ARGV[1] .. 'unfinished:' .. f[3], f[4])
elseif ARGV[3] == 'release' and tonumber(f[5]) > 0 then
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
end
return 1
)lua";

// KEYS: unfinished set. ARGV: prefix. The estimates of the owner's unfinished jobs.
constexpr const char *kReservedScript = R"lua(
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = redis.call('HGET', ARGV[1] .. 'job:' .. id, 'estimate_nanos') or '0'
end
return out
)lua";

using Reply = RedisReplyPtr;

class RedisJobStore final : public JobStore {
public:
  RedisJobStore(const std::string &url, std::string prefix);

  void create(const JobRecord &job) override;
  std::optional<JobRecord> get(const std::string &id) const override;
  std::vector<JobRecord> list(const std::string &owner, std::size_t limit) const override;
  std::int64_t reserved_nanos(const std::string &owner) const override;
  std::size_t unfinished_count(const std::string &owner) const override;
  std::optional<JobRecord> claim(const ClaimLimits &limits, TimePoint now) override;
  bool heartbeat(const std::string &id, const std::string &worker, TimePoint lease_until,
                 const std::string &phase, double progress) override;
  bool set_operation(const std::string &id, const std::string &worker, const std::string &operation,
                     TimePoint now) override;
  bool succeed(const std::string &id, const std::string &worker, const std::string &result_json,
               std::int64_t cost_nanos) override;
  bool fail(const std::string &id, const std::string &worker, const std::string &reason) override;
  bool release(const std::string &id, const std::string &worker) override;

private:
  struct Script {
    const char *body;
    std::string sha;
  };

  // Sends one command; throws Error(Io) on a lost connection (dropping it, so that the next
  // call reconnects) and on an error reply. Callers hold mutex_.
  Reply command(const std::vector<std::string> &args) const;
  Reply eval(Script &script, const std::vector<std::string> &keys,
             const std::vector<std::string> &args) const;
  void connect() const;
  std::optional<JobRecord> get_locked(const std::string &id) const;
  bool guarded_write(const std::string &id, const std::string &worker, const char *mode,
                     std::vector<std::string> fields);
  [[noreturn]] void fail_io(const std::string &what) const;

  std::string key(const std::string &name) const { return prefix_ + name; }
  std::string job_key(const std::string &id) const { return prefix_ + "job:" + id; }

  RedisUrl url_;
  std::string prefix_;
  mutable std::mutex mutex_; // one command at a time on the shared connection
  mutable RedisContextPtr ctx_;
  mutable Script create_{kCreateScript, {}};
  mutable Script claim_{kClaimScript, {}};
  mutable Script guarded_{kGuardedWriteScript, {}};
  mutable Script reserved_{kReservedScript, {}};
};

RedisJobStore::RedisJobStore(const std::string &url, std::string prefix)
    : url_(parse_redis_url(url)), prefix_(std::move(prefix)) {
  std::lock_guard lock(mutex_);
  connect();
  Reply marker = command({"SET", key("schema"), kSchemaMarker, "NX"});
  if (marker->type == REDIS_REPLY_NIL) {
    Reply existing = command({"GET", key("schema")});
    const std::string value = existing->type == REDIS_REPLY_STRING
                                  ? std::string(existing->str, existing->len)
                                  : std::string();
    if (value != kSchemaMarker)
      throw Error(ErrorKind::Config, url_.display + " prefix \"" + prefix_ +
                                         "\" is not a gemstream job store (" + key("schema") +
                                         " holds \"" + value + "\")");
  }
}

void RedisJobStore::fail_io(const std::string &what) const {
  throw Error(ErrorKind::Io, "job store " + url_.display + ": " + what);
}

void RedisJobStore::connect() const {
  redisContext *raw = redisConnectWithTimeout(url_.host.c_str(), url_.port, kConnectTimeout);
  if (!raw)
    throw Error(ErrorKind::Io, "job store " + url_.display + ": out of memory");
  ctx_.reset(raw);
  if (raw->err) {
    const std::string why = raw->errstr;
    ctx_.reset();
    fail_io("cannot connect: " + why + " (is redis-server running?)");
  }
  redisSetTimeout(raw, kCommandTimeout);
  if (!url_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!url_.user.empty())
      auth.push_back(url_.user);
    auth.push_back(url_.password);
    try {
      command(auth);
    } catch (const Error &) {
      ctx_.reset();
      // The server's reply may quote what it was sent; say only that it refused.
      fail_io("the server refused the credentials in the URL");
    }
  }
  if (url_.db != 0) {
    try {
      command({"SELECT", std::to_string(url_.db)});
    } catch (const Error &) {
      ctx_.reset(); // a connection on the wrong database must not be used
      throw;
    }
  }
}

Reply RedisJobStore::command(const std::vector<std::string> &args) const {
  if (!ctx_)
    connect();
  std::vector<const char *> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto &a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  Reply reply(static_cast<redisReply *>(
      redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(), lengths.data())));
  if (!reply) {
    const std::string why = ctx_->errstr;
    ctx_.reset();
    fail_io(args.front() + " failed: " + why);
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    const std::string why(reply->str, reply->len);
    if (why.rfind("NOSCRIPT", 0) == 0)
      return reply;
    fail_io(args.front() + " failed: " + why);
  }
  return reply;
}

Reply RedisJobStore::eval(Script &script, const std::vector<std::string> &keys,
                          const std::vector<std::string> &args) const {
  if (script.sha.empty()) {
    Reply sha = command({"SCRIPT", "LOAD", script.body});
    script.sha.assign(sha->str, sha->len);
  }
  std::vector<std::string> call = {"EVALSHA", script.sha, std::to_string(keys.size())};
  call.insert(call.end(), keys.begin(), keys.end());
  call.insert(call.end(), args.begin(), args.end());
  Reply reply = command(call);
  if (reply->type == REDIS_REPLY_ERROR) {
    // NOSCRIPT: the server restarted or ran SCRIPT FLUSH; EVAL runs it and caches it again.
    call[0] = "EVAL";
    call[1] = script.body;
    reply = command(call);
    script.sha.clear();
  }
  return reply;
}

JobRecord read_job(const redisReply &r) {
  auto text = [&](std::size_t i) {
    const redisReply *e = r.element[i];
    return e->type == REDIS_REPLY_STRING ? std::string(e->str, e->len) : std::string();
  };
  JobRecord j;
  j.id = text(0);
  j.owner = text(1);
  j.kind = text(2);
  j.spec_json = text(3);
  j.state = job_state_from_string(text(4)).value_or(JobState::Failed);
  j.phase = text(5);
  j.progress = std::strtod(text(6).c_str(), nullptr);
  j.operation = text(7);
  j.operation_started = from_ms(parse_int(text(8)));
  j.attempts = static_cast<int>(parse_int(text(9)));
  j.lease_owner = text(10);
  j.lease_until = from_ms(parse_int(text(11)));
  j.created = from_ms(parse_int(text(12)));
  j.updated = from_ms(parse_int(text(13)));
  j.started = from_ms(parse_int(text(14)));
  j.finished = from_ms(parse_int(text(15)));
  j.estimate_nanos = parse_int(text(16));
  j.cost_nanos = parse_int(text(17));
  j.result_json = text(18);
  j.error = text(19);
  return j;
}

std::optional<JobRecord> RedisJobStore::get_locked(const std::string &id) const {
  std::vector<std::string> args = {"HMGET", job_key(id)};
  args.insert(args.end(), std::begin(kFields), std::end(kFields));
  Reply reply = command(args);
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != kFieldCount)
    fail_io("HMGET returned an unexpected reply");
  if (reply->element[0]->type != REDIS_REPLY_STRING)
    return std::nullopt;
  return read_job(*reply);
}

void RedisJobStore::create(const JobRecord &job) {
  std::lock_guard lock(mutex_);
  const std::int64_t now = now_ms();
  const std::string created = std::to_string(job.created == TimePoint{} ? now : to_ms(job.created));
  const std::vector<std::string> args = {job.id,
                                         created,
                                         "id",
                                         job.id,
                                         "owner",
                                         job.owner,
                                         "kind",
                                         job.kind,
                                         "spec",
                                         job.spec_json,
                                         "state",
                                         "queued",
                                         "phase",
                                         "queued",
                                         "progress",
                                         "0",
                                         "operation",
                                         "",
                                         "operation_started_ms",
                                         "0",
                                         "attempts",
                                         "0",
                                         "lease_owner",
                                         "",
                                         "lease_until_ms",
                                         "0",
                                         "created_ms",
                                         created,
                                         "updated_ms",
                                         std::to_string(now),
                                         "started_ms",
                                         "0",
                                         "finished_ms",
                                         "0",
                                         "estimate_nanos",
                                         std::to_string(job.estimate_nanos),
                                         "cost_nanos",
                                         "0",
                                         "result",
                                         "",
                                         "error",
                                         ""};
  Reply reply = eval(
      create_,
      {job_key(job.id), key("active"), key("owner:" + job.owner), key("unfinished:" + job.owner)},
      args);
  if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
    fail_io("a job with id " + job.id + " already exists");
}

std::optional<JobRecord> RedisJobStore::get(const std::string &id) const {
  std::lock_guard lock(mutex_);
  return get_locked(id);
}

std::vector<JobRecord> RedisJobStore::list(const std::string &owner, std::size_t limit) const {
  std::lock_guard lock(mutex_);
  std::vector<JobRecord> out;
  if (limit == 0)
    return out;
  Reply ids = command({"ZREVRANGE", key("owner:" + owner), "0", std::to_string(limit - 1)});
  for (std::size_t i = 0; i < ids->elements; ++i) {
    const redisReply *e = ids->element[i];
    if (auto job = get_locked(std::string(e->str, e->len)))
      out.push_back(std::move(*job));
  }
  return out;
}

std::int64_t RedisJobStore::reserved_nanos(const std::string &owner) const {
  std::lock_guard lock(mutex_);
  Reply reply = eval(reserved_, {key("unfinished:" + owner)}, {prefix_});
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < reply->elements; ++i) {
    const redisReply *e = reply->element[i];
    if (e->type == REDIS_REPLY_STRING)
      sum += parse_int(std::string(e->str, e->len));
  }
  return sum;
}

std::size_t RedisJobStore::unfinished_count(const std::string &owner) const {
  std::lock_guard lock(mutex_);
  Reply reply = command({"SCARD", key("unfinished:" + owner)});
  return static_cast<std::size_t>(reply->integer);
}

std::optional<JobRecord> RedisJobStore::claim(const ClaimLimits &limits, TimePoint now_tp) {
  std::lock_guard lock(mutex_);
  const std::int64_t now = to_ms(now_tp);
  Reply reply = eval(claim_, {key("active"), key("starts")},
                     {prefix_, std::to_string(now), limits.worker,
                      std::to_string(now + static_cast<std::int64_t>(limits.lease.count())),
                      std::to_string(limits.concurrency), std::to_string(limits.starts_per_minute),
                      std::to_string(now_ms()), std::to_string(now - kStartsKeptMs)});
  if (reply->type != REDIS_REPLY_STRING)
    return std::nullopt;
  return get_locked(std::string(reply->str, reply->len));
}

bool RedisJobStore::guarded_write(const std::string &id, const std::string &worker,
                                  const char *mode, std::vector<std::string> fields) {
  std::lock_guard lock(mutex_);
  fields.insert(fields.begin(), {prefix_, worker, mode});
  Reply reply = eval(guarded_, {job_key(id), key("active")}, fields);
  return reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
}

bool RedisJobStore::heartbeat(const std::string &id, const std::string &worker,
                              TimePoint lease_until, const std::string &phase, double progress) {
  return guarded_write(id, worker, "set",
                       {"lease_until_ms", std::to_string(to_ms(lease_until)), "phase", phase,
                        "progress", number(progress), "updated_ms", std::to_string(now_ms())});
}

bool RedisJobStore::set_operation(const std::string &id, const std::string &worker,
                                  const std::string &operation, TimePoint now) {
  return guarded_write(id, worker, "set",
                       {"operation", operation, "operation_started_ms", std::to_string(to_ms(now)),
                        "phase", "generating", "updated_ms", std::to_string(now_ms())});
}

bool RedisJobStore::succeed(const std::string &id, const std::string &worker,
                            const std::string &result_json, std::int64_t cost_nanos) {
  const std::string now = std::to_string(now_ms());
  return guarded_write(id, worker, "finish",
                       {"state", "succeeded", "phase", "done", "progress", "1", "result",
                        result_json, "cost_nanos", std::to_string(cost_nanos), "finished_ms", now,
                        "updated_ms", now, "lease_owner", "", "lease_until_ms", "0"});
}

bool RedisJobStore::fail(const std::string &id, const std::string &worker,
                         const std::string &reason) {
  const std::string now = std::to_string(now_ms());
  return guarded_write(id, worker, "finish",
                       {"state", "failed", "phase", "failed", "error", reason, "finished_ms", now,
                        "updated_ms", now, "lease_owner", "", "lease_until_ms", "0"});
}

bool RedisJobStore::release(const std::string &id, const std::string &worker) {
  return guarded_write(
      id, worker, "release",
      {"lease_owner", "", "lease_until_ms", "0", "updated_ms", std::to_string(now_ms())});
}

} // namespace

std::unique_ptr<JobStore> open_redis_job_store(const std::string &url, const std::string &prefix) {
  return std::make_unique<RedisJobStore>(url, prefix);
}

} // namespace gemstream::gateway
