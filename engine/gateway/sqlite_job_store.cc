// The embedded job store: one SQLite file in WAL mode. Every method is one transaction; claim()
// is a BEGIN IMMEDIATE transaction, so the limits it checks and the job it takes cannot race a
// claim from another thread or process.
#include "gemstream/job_store.h"

#include "gemstream/error.h"

#include "sqlite_util.h"
#include "store_time.h"

#include <openssl/rand.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <mutex>
#include <system_error>

namespace gemstream::gateway {
namespace {

// 'gmjb': marks the database as a gemstream job store (PRAGMA application_id).
constexpr int kApplicationId = 0x676d6a62;
constexpr int kSchemaVersion = 1;
constexpr int kBusyTimeoutMs = 10000;

constexpr const char *kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  kind TEXT NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
  phase TEXT NOT NULL,
  progress REAL NOT NULL DEFAULT 0,
  operation TEXT NOT NULL DEFAULT '',
  operation_started_ms INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_until_ms INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  estimate_nanos INTEGER NOT NULL DEFAULT 0,
  cost_nanos INTEGER NOT NULL DEFAULT 0,
  result TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_ms);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_ms);
)sql";

constexpr const char *kColumns =
    "id, owner, kind, spec, state, phase, progress, operation, operation_started_ms, attempts, "
    "lease_owner, lease_until_ms, created_ms, updated_ms, started_ms, finished_ms, "
    "estimate_nanos, cost_nanos, result, error";

using sqlite::DbPtr;

// The shared statement wrapper, naming this database in its errors.
class Statement : public sqlite::Statement {
public:
  Statement(sqlite3 *db, const char *sql, const std::filesystem::path &path)
      : sqlite::Statement(db, sql, "job store", path) {}
};

void exec(sqlite3 *db, const char *sql, const std::filesystem::path &path) {
  sqlite::exec(db, sql, "job store", path);
}

JobRecord read_job(const Statement &q) {
  JobRecord j;
  j.id = q.text(0);
  j.owner = q.text(1);
  j.kind = q.text(2);
  j.spec_json = q.text(3);
  j.state = job_state_from_string(q.text(4)).value_or(JobState::Failed);
  j.phase = q.text(5);
  j.progress = q.real(6);
  j.operation = q.text(7);
  j.operation_started = from_ms(q.integer(8));
  j.attempts = static_cast<int>(q.integer(9));
  j.lease_owner = q.text(10);
  j.lease_until = from_ms(q.integer(11));
  j.created = from_ms(q.integer(12));
  j.updated = from_ms(q.integer(13));
  j.started = from_ms(q.integer(14));
  j.finished = from_ms(q.integer(15));
  j.estimate_nanos = q.integer(16);
  j.cost_nanos = q.integer(17);
  j.result_json = q.text(18);
  j.error = q.text(19);
  return j;
}

std::int64_t now_ms() {
  return to_ms(std::chrono::system_clock::now());
}

class SqliteJobStore final : public JobStore {
public:
  explicit SqliteJobStore(std::filesystem::path path);

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
  std::optional<JobRecord> get_locked(const std::string &id) const;

  std::filesystem::path path_;
  DbPtr db_;
  mutable std::mutex mutex_; // one transaction at a time on the shared connection
};

SqliteJobStore::SqliteJobStore(std::filesystem::path path) : path_(std::move(path)) {
  if (path_.has_parent_path()) {
    std::error_code ec;
    const bool created = std::filesystem::create_directories(path_.parent_path(), ec);
    if (ec)
      throw Error(ErrorKind::Io, "cannot create the directory of the job store " + path_.string() +
                                     ": " + ec.message());
    if (created)
      ::chmod(path_.parent_path().c_str(), 0700);
  }
  sqlite3 *raw = nullptr;
  const int rc =
      sqlite3_open_v2(path_.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK)
    throw Error(ErrorKind::Io, "cannot open the job store " + path_.string() + ": " +
                                   (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  sqlite3 *db = db_.get();
  ::chmod(path_.c_str(), 0600); // job specs hold users' prompts
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  {
    Statement id(db, "PRAGMA application_id", path_);
    id.step();
    const std::int64_t app = id.integer(0);
    if (app != 0 && app != kApplicationId)
      throw Error(ErrorKind::Config, path_.string() + " is not a gemstream job store");
    if (app == 0) {
      Statement tables(db,
                       "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'jobs%' AND name "
                       "NOT LIKE 'sqlite_%'",
                       path_);
      tables.step();
      if (tables.integer(0) != 0)
        throw Error(ErrorKind::Config, path_.string() + " is not a gemstream job store");
    }
  }
  {
    Statement wal(db, "PRAGMA journal_mode = WAL", path_);
    if (!wal.step() || wal.text(0) != "wal")
      throw Error(ErrorKind::Io, "job store " + path_.string() +
                                     ": cannot switch to write-ahead logging (is it on a network "
                                     "file system?)");
  }
  exec(db, "PRAGMA synchronous = FULL", path_);
  exec(db, "BEGIN IMMEDIATE", path_);
  try {
    Statement version(db, "PRAGMA user_version", path_);
    version.step();
    if (version.integer(0) > kSchemaVersion)
      throw Error(ErrorKind::Config, "the job store " + path_.string() + " has schema version " +
                                         std::to_string(version.integer(0)) +
                                         "; this build reads version " +
                                         std::to_string(kSchemaVersion));
    exec(db, kSchema, path_);
    exec(db, ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str(), path_);
    exec(db, ("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str(), path_);
    exec(db, "COMMIT", path_);
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void SqliteJobStore::create(const JobRecord &job) {
  std::lock_guard lock(mutex_);
  const std::int64_t now = now_ms();
  Statement insert(
      db_.get(),
      "INSERT INTO jobs (id, owner, kind, spec, state, phase, progress, created_ms, "
      "updated_ms, estimate_nanos) VALUES (?, ?, ?, ?, 'queued', 'queued', 0, ?, ?, ?)",
      path_);
  insert.bind(1, job.id)
      .bind(2, job.owner)
      .bind(3, job.kind)
      .bind(4, job.spec_json)
      .bind(5, job.created == TimePoint{} ? now : to_ms(job.created))
      .bind(6, now)
      .bind(7, job.estimate_nanos);
  insert.step();
}

std::optional<JobRecord> SqliteJobStore::get_locked(const std::string &id) const {
  const std::string sql = std::string("SELECT ") + kColumns + " FROM jobs WHERE id = ?";
  Statement q(db_.get(), sql.c_str(), path_);
  q.bind(1, id);
  if (!q.step())
    return std::nullopt;
  return read_job(q);
}

std::optional<JobRecord> SqliteJobStore::get(const std::string &id) const {
  std::lock_guard lock(mutex_);
  return get_locked(id);
}

std::vector<JobRecord> SqliteJobStore::list(const std::string &owner, std::size_t limit) const {
  std::lock_guard lock(mutex_);
  const std::string sql = std::string("SELECT ") + kColumns +
                          " FROM jobs WHERE owner = ? ORDER BY created_ms DESC, id LIMIT ?";
  Statement q(db_.get(), sql.c_str(), path_);
  q.bind(1, owner).bind(2, static_cast<std::int64_t>(limit));
  std::vector<JobRecord> out;
  while (q.step())
    out.push_back(read_job(q));
  return out;
}

std::int64_t SqliteJobStore::reserved_nanos(const std::string &owner) const {
  std::lock_guard lock(mutex_);
  Statement q(db_.get(),
              "SELECT coalesce(sum(estimate_nanos), 0) FROM jobs WHERE owner = ? AND state IN "
              "('queued', 'running')",
              path_);
  q.bind(1, owner);
  q.step();
  return q.integer(0);
}

std::size_t SqliteJobStore::unfinished_count(const std::string &owner) const {
  std::lock_guard lock(mutex_);
  Statement q(db_.get(),
              "SELECT count(*) FROM jobs WHERE owner = ? AND state IN ('queued', 'running')",
              path_);
  q.bind(1, owner);
  q.step();
  return static_cast<std::size_t>(q.integer(0));
}

std::optional<JobRecord> SqliteJobStore::claim(const ClaimLimits &limits, TimePoint now_tp) {
  std::lock_guard lock(mutex_);
  sqlite3 *db = db_.get();
  const std::int64_t now = to_ms(now_tp);
  exec(db, "BEGIN IMMEDIATE", path_);
  try {
    std::optional<JobRecord> claimed;
    Statement running(
        db, "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until_ms > ?", path_);
    running.bind(1, now);
    running.step();
    if (running.integer(0) < limits.concurrency) {
      Statement starts(db, "SELECT count(*) FROM jobs WHERE started_ms > ?", path_);
      starts.bind(1, now - 60'000);
      starts.step();
      const std::int64_t may_start = starts.integer(0) < limits.starts_per_minute ? 1 : 0;
      // Resumable operations first, then jobs that crashed before their operation was known,
      // then queued jobs, oldest first.
      Statement pick(db,
                     "SELECT id FROM jobs WHERE ((state = 'running' AND lease_until_ms <= ?) OR "
                     "state = 'queued') AND (operation != '' OR ? = 1) "
                     "ORDER BY operation = '', state = 'queued', created_ms, id LIMIT 1",
                     path_);
      pick.bind(1, now).bind(2, may_start);
      if (pick.step()) {
        const std::string id = pick.text(0);
        Statement take(db,
                       "UPDATE jobs SET state = 'running', lease_owner = ?, lease_until_ms = ?, "
                       "attempts = attempts + 1, updated_ms = ?, "
                       "started_ms = CASE WHEN operation = '' THEN ? ELSE started_ms END, "
                       "phase = CASE WHEN operation = '' THEN 'starting' ELSE phase END "
                       "WHERE id = ?",
                       path_);
        take.bind(1, limits.worker)
            .bind(2, now + static_cast<std::int64_t>(limits.lease.count()))
            .bind(3, now)
            .bind(4, now)
            .bind(5, id);
        take.update();
        claimed = get_locked(id);
      }
    }
    exec(db, "COMMIT", path_);
    return claimed;
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

bool SqliteJobStore::heartbeat(const std::string &id, const std::string &worker,
                               TimePoint lease_until, const std::string &phase, double progress) {
  std::lock_guard lock(mutex_);
  Statement q(db_.get(),
              "UPDATE jobs SET lease_until_ms = ?, phase = ?, progress = ?, updated_ms = ? "
              "WHERE id = ? AND lease_owner = ? AND state = 'running'",
              path_);
  q.bind(1, to_ms(lease_until)).bind(2, phase).bind(3, progress).bind(4, now_ms()).bind(5, id);
  q.bind(6, worker);
  return q.update() == 1;
}

bool SqliteJobStore::set_operation(const std::string &id, const std::string &worker,
                                   const std::string &operation, TimePoint now) {
  std::lock_guard lock(mutex_);
  Statement q(db_.get(),
              "UPDATE jobs SET operation = ?, operation_started_ms = ?, phase = 'generating', "
              "updated_ms = ? WHERE id = ? AND lease_owner = ? AND state = 'running'",
              path_);
  q.bind(1, operation).bind(2, to_ms(now)).bind(3, now_ms()).bind(4, id).bind(5, worker);
  return q.update() == 1;
}

bool SqliteJobStore::succeed(const std::string &id, const std::string &worker,
                             const std::string &result_json, std::int64_t cost_nanos) {
  std::lock_guard lock(mutex_);
  const std::int64_t now = now_ms();
  Statement q(db_.get(),
              "UPDATE jobs SET state = 'succeeded', phase = 'done', progress = 1, result = ?, "
              "cost_nanos = ?, finished_ms = ?, updated_ms = ?, lease_owner = '', "
              "lease_until_ms = 0 WHERE id = ? AND lease_owner = ? AND state = 'running'",
              path_);
  q.bind(1, result_json).bind(2, cost_nanos).bind(3, now).bind(4, now).bind(5, id).bind(6, worker);
  return q.update() == 1;
}

bool SqliteJobStore::fail(const std::string &id, const std::string &worker,
                          const std::string &reason) {
  std::lock_guard lock(mutex_);
  const std::int64_t now = now_ms();
  Statement q(db_.get(),
              "UPDATE jobs SET state = 'failed', phase = 'failed', error = ?, finished_ms = ?, "
              "updated_ms = ?, lease_owner = '', lease_until_ms = 0 "
              "WHERE id = ? AND lease_owner = ? AND state = 'running'",
              path_);
  q.bind(1, reason).bind(2, now).bind(3, now).bind(4, id).bind(5, worker);
  return q.update() == 1;
}

bool SqliteJobStore::release(const std::string &id, const std::string &worker) {
  std::lock_guard lock(mutex_);
  Statement q(db_.get(),
              "UPDATE jobs SET lease_owner = '', lease_until_ms = 0, updated_ms = ?, "
              "attempts = max(attempts - 1, 0) "
              "WHERE id = ? AND lease_owner = ? AND state = 'running'",
              path_);
  q.bind(1, now_ms()).bind(2, id).bind(3, worker);
  return q.update() == 1;
}

} // namespace

const char *to_string(JobState state) noexcept {
  switch (state) {
  case JobState::Queued: return "queued";
  case JobState::Running: return "running";
  case JobState::Succeeded: return "succeeded";
  case JobState::Failed: return "failed";
  }
  return "failed";
}

std::optional<JobState> job_state_from_string(std::string_view s) noexcept {
  if (s == "queued")
    return JobState::Queued;
  if (s == "running")
    return JobState::Running;
  if (s == "succeeded")
    return JobState::Succeeded;
  if (s == "failed")
    return JobState::Failed;
  return std::nullopt;
}

std::unique_ptr<JobStore> open_sqlite_job_store(const std::filesystem::path &path) {
  return std::make_unique<SqliteJobStore>(path);
}

std::string new_job_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw Error(ErrorKind::Internal, "the system random number generator failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "job_";
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

} // namespace gemstream::gateway
