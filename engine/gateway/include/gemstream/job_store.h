// The gateway's durable job queue: what a store must guarantee so that one or several gateway
// processes share jobs without losing one or running one twice to completion.
//
// Delivery is at least once, with leases: a worker claims a job for a lease period and renews
// the lease (heartbeat) while it works; a job whose lease runs out (its worker died) is claimed
// again by any worker. Every write after the claim names the worker and only succeeds while it
// holds the lease, so a worker that lost its job (paused past its lease) cannot complete it
// after another worker took it over.
//
// A video job remembers its Veo operation as soon as it is known; a worker that takes over such
// a job resumes polling that operation instead of starting (and paying for) a new one. The only
// window in which a takeover pays twice is between the predictLongRunning request leaving and
// set_operation() returning; Veo offers no idempotency key to close it.
//
// Implementations: open_sqlite_job_store() (one file, WAL, shared by the processes of one
// machine); open_redis_job_store() (a Redis server, shared by the gateways of several machines).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#if defined(__GNUC__)
#define GEMSTREAM_GATEWAY_API __attribute__((visibility("default")))
#else
#define GEMSTREAM_GATEWAY_API
#endif

namespace gemstream::gateway {

using TimePoint = std::chrono::system_clock::time_point;

enum class JobState { Queued, Running, Succeeded, Failed };

GEMSTREAM_GATEWAY_API const char *to_string(JobState state) noexcept; // "queued", ...
GEMSTREAM_GATEWAY_API std::optional<JobState> job_state_from_string(std::string_view s) noexcept;

struct JobRecord {
  std::string id;    // "job_" + 32 hex digits
  std::string owner; // user id
  std::string kind = "video";
  std::string spec_json; // what to make (the validated request), JSON object
  JobState state = JobState::Queued;
  std::string phase = "queued"; // queued, starting, generating, downloading, post-processing, done
  double progress = 0;          // 0..1, an estimate while generating
  std::string operation;        // the Veo operation, once known
  TimePoint operation_started{};
  int attempts = 0; // claims that did not hand the job back (see release())
  std::string lease_owner;
  TimePoint lease_until{};
  TimePoint created{};
  TimePoint updated{};
  TimePoint started{}; // when a worker last claimed it to start a new operation (rate limit)
  TimePoint finished{};
  std::int64_t estimate_nanos = 0; // what it will cost, reserved against the owner's budget
  std::int64_t cost_nanos = 0;     // what it cost, once succeeded
  std::string result_json;         // succeeded: {"urls":{...}, ...}
  std::string error;               // failed: the reason, for the owner
};

struct ClaimLimits {
  std::string worker; // unique per worker process
  std::chrono::milliseconds lease{30000};
  // Jobs running with an unexpired lease, across every worker sharing the store; none is
  // claimed while this many run.
  int concurrency = 2;
  // New operations started in the last minute, across every worker; when reached, only jobs
  // with an operation to resume are claimed.
  int starts_per_minute = 10;
};

class GEMSTREAM_GATEWAY_API JobStore {
public:
  virtual ~JobStore() = default;

  // Inserts a new job (state Queued). Throws Error(Io) on failure.
  virtual void create(const JobRecord &job) = 0;
  virtual std::optional<JobRecord> get(const std::string &id) const = 0;
  // The owner's jobs, newest first.
  virtual std::vector<JobRecord> list(const std::string &owner, std::size_t limit) const = 0;
  // Sum of estimate_nanos over the owner's queued and running jobs (money already promised),
  // and how many there are.
  virtual std::int64_t reserved_nanos(const std::string &owner) const = 0;
  virtual std::size_t unfinished_count(const std::string &owner) const = 0;

  // Atomically picks the next job a worker may run, or nullopt: a running job whose lease has
  // expired or was released (operation known first), else the oldest queued job, within the
  // concurrency and start-rate limits. The claimed job is Running, leased to limits.worker
  // until now + lease, attempts incremented; `started` is set when it has no operation yet.
  virtual std::optional<JobRecord> claim(const ClaimLimits &limits, TimePoint now) = 0;

  // Each returns false when `worker` no longer holds the job's lease (it must stop working on
  // it). heartbeat() extends the lease and records progress.
  virtual bool heartbeat(const std::string &id, const std::string &worker, TimePoint lease_until,
                         const std::string &phase, double progress) = 0;
  virtual bool set_operation(const std::string &id, const std::string &worker,
                             const std::string &operation, TimePoint now) = 0;
  virtual bool succeed(const std::string &id, const std::string &worker,
                       const std::string &result_json, std::int64_t cost_nanos) = 0;
  virtual bool fail(const std::string &id, const std::string &worker,
                    const std::string &reason) = 0;
  // Hands the job back (graceful shutdown): it stays Running with its operation, its lease ends
  // now so any worker takes it over at once, and the attempt is not counted.
  virtual bool release(const std::string &id, const std::string &worker) = 0;
};

// SQLite in WAL mode with synchronous=FULL: every state change is one transaction on disk when
// the call returns, so a kill -9 loses nothing committed. Claims run in BEGIN IMMEDIATE
// transactions, so several processes can share the file. Creates the file (mode 0600) and its
// directory. Throws Error(Io) naming the path, Error(Config) for a file that is not a gemstream
// job store.
GEMSTREAM_GATEWAY_API std::unique_ptr<JobStore>
open_sqlite_job_store(const std::filesystem::path &path);

// A Redis server: every job is a hash under `prefix`; claim() and the lease-guarded writes are
// Lua scripts, so they are atomic across every gateway sharing the server. `url` is
// redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by default). Durability is the
// server's (appendonly with fsync for a kill -9 of the server to lose nothing). Connects at
// once; throws Error(Config) for a malformed URL, Error(Io) naming host, port and db (never the
// password) when the server is unreachable or refuses, Error(Config) when `prefix` holds
// something that is not a gemstream job store. A call that loses the connection throws Error(Io)
// and the next call reconnects.
GEMSTREAM_GATEWAY_API std::unique_ptr<JobStore> open_redis_job_store(const std::string &url,
                                                                     const std::string &prefix);

// "job_" + 32 random hex digits from the system's CSPRNG.
GEMSTREAM_GATEWAY_API std::string new_job_id();

} // namespace gemstream::gateway
