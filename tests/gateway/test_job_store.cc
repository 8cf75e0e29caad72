// The job store contract, run against both stores (SQLite, and Redis on a redis-server the
// suite starts on loopback): claim order and limits (concurrency, starts per minute), leases
// (expiry, takeover, writes refused to a worker that lost its lease), release on shutdown, and
// durability across reopening, from two connections as two processes would use it.
#include "gateway_test_util.h"
#include "redis_test_util.h"

#include <gemstream/error.h>
#include <gemstream/job_store.h>

#include <set>
#include <thread>

using namespace gemstream;
using namespace gemstream::gateway;
using namespace gemstream::testing;

namespace {

using std::chrono::milliseconds;

TimePoint at(std::int64_t ms) {
  return TimePoint(milliseconds(ms));
}

JobRecord job(const std::string &id, const std::string &owner = "alice", std::int64_t created = 0,
              std::int64_t estimate = 4'000'000'000) {
  JobRecord j;
  j.id = id;
  j.owner = owner;
  j.spec_json = R"({"description":"x"})";
  j.created = at(1'000'000 + created);
  j.estimate_nanos = estimate;
  return j;
}

enum class Backend { Sqlite, Redis };

// One store per test: a file in a fresh directory, or a fresh key prefix on the suite's server.
class JobStoreContract : public ::testing::TestWithParam<Backend> {
protected:
  static void SetUpTestSuite() {
    if (const auto binary = find_redis_server())
      redis_ = std::make_unique<RedisServer>(*binary);
  }
  static void TearDownTestSuite() { redis_.reset(); }

  void SetUp() override {
    if (GetParam() == Backend::Redis && !redis_)
      GTEST_SKIP() << "redis-server is not installed (tools/setup.sh installs it)";
    prefix_ = "test-" + new_job_id().substr(4, 12) + ":";
  }

  // A new connection to this test's store, as another process would open it.
  std::unique_ptr<JobStore> open() const {
    if (GetParam() == Backend::Redis)
      return open_redis_job_store(redis_->url(), prefix_);
    return open_sqlite_job_store(dir_.path() / "jobs.sqlite");
  }

  static inline std::unique_ptr<RedisServer> redis_;
  TempDir dir_;
  std::string prefix_;
};

ClaimLimits limits(const std::string &worker, int concurrency = 2, int per_minute = 10,
                   milliseconds lease = milliseconds(30000)) {
  ClaimLimits l;
  l.worker = worker;
  l.concurrency = concurrency;
  l.starts_per_minute = per_minute;
  l.lease = lease;
  return l;
}

TEST_P(JobStoreContract, ClaimsOldestFirstAndCountsAttempts) {
  auto store = open();
  store->create(job("job_b", "alice", 20));
  store->create(job("job_a", "alice", 10));
  const auto first = store->claim(limits("w1"), at(2'000'000));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->id, "job_a");
  EXPECT_EQ(first->state, JobState::Running);
  EXPECT_EQ(first->lease_owner, "w1");
  EXPECT_EQ(first->attempts, 1);
  EXPECT_EQ(first->phase, "starting");
  EXPECT_EQ(first->started, at(2'000'000));
  EXPECT_EQ(first->lease_until, at(2'030'000));
  EXPECT_EQ(store->claim(limits("w1"), at(2'000'001))->id, "job_b");
  EXPECT_FALSE(store->claim(limits("w1", 5), at(2'000'002)));
  EXPECT_EQ(store->reserved_nanos("alice"), 8'000'000'000);
  EXPECT_EQ(store->unfinished_count("alice"), 2u);
  EXPECT_EQ(store->reserved_nanos("bob"), 0);
}

TEST_P(JobStoreContract, ConcurrencyCountsLiveLeasesOfEveryWorker) {
  auto a = open();
  auto b = open(); // a second process's connection
  for (int i = 0; i < 3; ++i)
    a->create(job("job_" + std::to_string(i), "alice", i));
  ASSERT_TRUE(a->claim(limits("w1", 2), at(2'000'000)));
  ASSERT_TRUE(b->claim(limits("w2", 2), at(2'000'000)));
  EXPECT_FALSE(a->claim(limits("w1", 2), at(2'000'001))) << "two jobs already run";
  EXPECT_FALSE(b->claim(limits("w2", 2), at(2'000'001)));
  ASSERT_TRUE(a->succeed("job_0", "w1", "{}", 1));
  const auto third = b->claim(limits("w2", 2), at(2'000'002));
  ASSERT_TRUE(third);
  EXPECT_EQ(third->id, "job_2");
}

TEST_P(JobStoreContract, StartRateLimitsNewOperationsButNotResumes) {
  auto store = open();
  store->create(job("job_a", "alice", 1));
  store->create(job("job_b", "alice", 2));
  store->create(job("job_c", "alice", 3));
  const auto l = limits("w1", 10, 1, milliseconds(1000));
  ASSERT_EQ(store->claim(l, at(2'000'000))->id, "job_a");
  EXPECT_FALSE(store->claim(l, at(2'030'000))) << "one start per minute";
  ASSERT_TRUE(store->set_operation("job_a", "w1", "models/veo/operations/a", at(2'000'100)));
  // job_a's worker dies; its lease expires. Resuming it is not a new start.
  const auto resumed = store->claim(limits("w2", 10, 1), at(2'030'000));
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->id, "job_a");
  EXPECT_EQ(resumed->operation, "models/veo/operations/a");
  EXPECT_EQ(resumed->phase, "generating");
  EXPECT_EQ(resumed->attempts, 2);
  EXPECT_EQ(resumed->started, at(2'000'000)) << "a resume does not use a start slot";
  ASSERT_TRUE(store->succeed("job_a", "w2", "{}", 1));
  ASSERT_EQ(store->claim(l, at(2'060'001))->id, "job_b") << "a minute later";
}

TEST_P(JobStoreContract, LostLeaseRefusesEveryWrite) {
  auto store = open();
  store->create(job("job_a"));
  const auto l1 = limits("w1", 2, 10, milliseconds(1000));
  ASSERT_TRUE(store->claim(l1, at(2'000'000)));
  EXPECT_TRUE(store->heartbeat("job_a", "w1", at(2'001'500), "generating", 0.3));
  EXPECT_FALSE(store->claim(limits("w2"), at(2'001'000))) << "the renewed lease still holds";
  const auto taken = store->claim(limits("w2"), at(2'001'600));
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->lease_owner, "w2");
  EXPECT_DOUBLE_EQ(taken->progress, 0.3);
  EXPECT_FALSE(store->heartbeat("job_a", "w1", at(2'003'000), "generating", 0.5));
  EXPECT_FALSE(store->set_operation("job_a", "w1", "op", at(2'003'000)));
  EXPECT_FALSE(store->succeed("job_a", "w1", "{}", 5));
  EXPECT_FALSE(store->fail("job_a", "w1", "no"));
  EXPECT_FALSE(store->release("job_a", "w1"));
  ASSERT_TRUE(store->succeed("job_a", "w2", R"({"urls":{}})", 4'000'000'000));
  const auto done = store->get("job_a");
  EXPECT_EQ(done->state, JobState::Succeeded);
  EXPECT_EQ(done->cost_nanos, 4'000'000'000);
  EXPECT_EQ(done->progress, 1.0);
  EXPECT_FALSE(store->succeed("job_a", "w2", "{}", 1)) << "completes once";
  EXPECT_FALSE(store->claim(limits("w3"), at(9'000'000)));
  EXPECT_EQ(store->reserved_nanos("alice"), 0);
}

TEST_P(JobStoreContract, ReleaseHandsTheJobOverAtOnceWithoutCountingTheAttempt) {
  auto store = open();
  store->create(job("job_a"));
  ASSERT_TRUE(store->claim(limits("w1"), at(2'000'000)));
  ASSERT_TRUE(store->set_operation("job_a", "w1", "models/veo/operations/x", at(2'000'000)));
  ASSERT_TRUE(store->release("job_a", "w1"));
  const auto again = store->claim(limits("w2"), at(2'000'001));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempts, 1);
  EXPECT_EQ(again->operation, "models/veo/operations/x");
}

TEST_P(JobStoreContract, SurvivesReopeningAndListsNewestFirst) {
  {
    auto store = open();
    store->create(job("job_a", "alice", 1));
    store->create(job("job_b", "alice", 2));
    store->create(job("job_c", "bob", 3));
    ASSERT_TRUE(store->claim(limits("w1"), at(2'000'000)));
    ASSERT_TRUE(store->fail("job_a", "w1", "the model returned no video"));
  }
  auto store = open();
  const auto alice = store->list("alice", 10);
  ASSERT_EQ(alice.size(), 2u);
  EXPECT_EQ(alice[0].id, "job_b");
  EXPECT_EQ(alice[1].id, "job_a");
  EXPECT_EQ(alice[1].state, JobState::Failed);
  EXPECT_EQ(alice[1].error, "the model returned no video");
  EXPECT_EQ(store->list("bob", 10).size(), 1u);
  EXPECT_FALSE(store->get("job_x"));
}

// Workers racing for jobs on separate connections: every job is claimed by exactly one.
TEST_P(JobStoreContract, ConcurrentClaimsTakeEachJobOnce) {
  constexpr int kJobs = 24, kWorkers = 4;
  {
    auto store = open();
    for (int i = 0; i < kJobs; ++i)
      store->create(job("job_" + std::to_string(100 + i), "alice", i));
  }
  std::vector<std::vector<std::string>> claimed(kWorkers);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w)
    threads.emplace_back([&, w] {
      auto store = open();
      const auto l = limits("w" + std::to_string(w), 1000, 1000);
      while (auto j = store->claim(l, at(2'000'000)))
        claimed[w].push_back(j->id);
    });
  for (auto &t : threads)
    t.join();
  std::set<std::string> all;
  std::size_t total = 0;
  for (const auto &ids : claimed) {
    total += ids.size();
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(total, std::size_t(kJobs)) << "no job claimed twice";
  EXPECT_EQ(all.size(), std::size_t(kJobs)) << "every job claimed";
  auto store = open();
  for (const auto &id : all) {
    const auto j = store->get(id);
    EXPECT_EQ(j->attempts, 1) << id;
    EXPECT_EQ(j->state, JobState::Running);
  }
}

TEST_P(JobStoreContract, RefusesADuplicateId) {
  auto store = open();
  store->create(job("job_a"));
  EXPECT_THROW(store->create(job("job_a", "bob")), Error);
  EXPECT_EQ(store->get("job_a")->owner, "alice");
  EXPECT_EQ(store->unfinished_count("bob"), 0u);
}

INSTANTIATE_TEST_SUITE_P(Stores, JobStoreContract,
                         ::testing::Values(Backend::Sqlite, Backend::Redis),
                         [](const ::testing::TestParamInfo<Backend> &info) {
                           return info.param == Backend::Sqlite ? "Sqlite" : "Redis";
                         });

class RedisJobStoreTest : public JobStoreContract {};

TEST_P(RedisJobStoreTest, UnreachableServerNamesTheUrlButNotThePassword) {
  const int port = free_loopback_port(); // nothing listens there
  try {
    open_redis_job_store("redis://gw:s3cret-pass@127.0.0.1:" + std::to_string(port) + "/2", "x:");
    FAIL() << "connected to a closed port";
  } catch (const Error &e) {
    const std::string what = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(what.find("redis://127.0.0.1:" + std::to_string(port) + "/2"), std::string::npos)
        << what;
    EXPECT_NE(what.find("cannot connect"), std::string::npos) << what;
    EXPECT_EQ(what.find("s3cret"), std::string::npos) << what;
  }
  try {
    open_redis_job_store("http://127.0.0.1:6379", "x:");
    FAIL() << "accepted a URL that is not redis://";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
  }
  EXPECT_THROW(open_redis_job_store("redis://127.0.0.1:99999/0", "x:"), Error);
}

TEST_P(RedisJobStoreTest, RefusesAPrefixThatIsNotAJobStore) {
  const std::string command = "redis-cli -p " + std::to_string(redis_->port()) + " SET '" +
                              prefix_ + "schema' 'something else' >/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0);
  try {
    open();
    FAIL() << "opened a prefix that holds other data";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(std::string(e.what()).find("is not a gemstream job store"), std::string::npos)
        << e.what();
  }
}

TEST_P(RedisJobStoreTest, PrefixesAndDatabasesKeepQueuesApart) {
  auto a = open();
  auto other_prefix = open_redis_job_store(redis_->url(), prefix_ + "other:");
  auto other_db = open_redis_job_store(redis_->url(3), prefix_);
  a->create(job("job_a"));
  EXPECT_FALSE(other_prefix->get("job_a"));
  EXPECT_FALSE(other_db->get("job_a"));
  EXPECT_FALSE(other_prefix->claim(limits("w2"), at(2'000'000)));
  EXPECT_FALSE(other_db->claim(limits("w2"), at(2'000'000)));
  EXPECT_EQ(other_db->unfinished_count("alice"), 0u);
  EXPECT_TRUE(a->claim(limits("w1"), at(2'000'000)));
}

TEST_P(RedisJobStoreTest, ReconnectsAfterTheServerDropsTheConnection) {
  auto store = open();
  store->create(job("job_a"));
  const std::string command =
      "redis-cli -p " + std::to_string(redis_->port()) + " CLIENT KILL TYPE normal >/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0);
  try {
    store->get("job_a");
    FAIL() << "a dropped connection went unnoticed";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find(redis_->url()), std::string::npos) << e.what();
  }
  const auto again = store->get("job_a");
  ASSERT_TRUE(again) << "the next call reconnects";
  EXPECT_EQ(again->owner, "alice");
  EXPECT_TRUE(store->claim(limits("w1"), at(2'000'000)));
}

TEST_P(RedisJobStoreTest, AuthenticatesWithThePasswordInTheUrl) {
  const std::string port = std::to_string(redis_->port());
  const std::string cli = "redis-cli -p " + port + " --no-auth-warning";
  ASSERT_EQ(std::system((cli + " CONFIG SET requirepass gw-s3cret-pass >/dev/null").c_str()), 0);
  struct Reset { // the server is shared by the suite's tests
    std::string cli;
    ~Reset() {
      [[maybe_unused]] const int rc =
          std::system((cli + " -a gw-s3cret-pass CONFIG SET requirepass '' >/dev/null").c_str());
    }
  } reset{cli};

  auto refused = [&](const std::string &url) {
    try {
      open_redis_job_store(url, prefix_);
      return std::string("opened");
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::Io) << e.what();
      EXPECT_EQ(std::string(e.what()).find("wrong-pass"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("redis://127.0.0.1:" + port + "/0"), std::string::npos)
          << e.what();
      return std::string(e.what());
    }
  };
  EXPECT_NE(refused(redis_->url()).find("NOAUTH"), std::string::npos);
  EXPECT_NE(refused("redis://:wrong-pass@127.0.0.1:" + port + "/0")
                .find("refused the credentials"),
            std::string::npos);

  auto store = open_redis_job_store("redis://:gw-s3cret-pass@127.0.0.1:" + port + "/0", prefix_);
  store->create(job("job_p"));
  // user:password (Redis 6 ACL form) with the default user.
  auto other =
      open_redis_job_store("redis://default:gw-s3cret-pass@127.0.0.1:" + port + "/0", prefix_);
  ASSERT_TRUE(other->get("job_p"));
  // A reconnect authenticates again.
  ASSERT_EQ(std::system((cli + " -a gw-s3cret-pass CLIENT KILL TYPE normal >/dev/null").c_str()), 0);
  EXPECT_THROW(store->get("job_p"), Error);
  EXPECT_TRUE(store->get("job_p"));
}

INSTANTIATE_TEST_SUITE_P(Redis, RedisJobStoreTest, ::testing::Values(Backend::Redis),
                         [](const ::testing::TestParamInfo<Backend> &) { return "Redis"; });

TEST(JobStore, RefusesAFileThatIsNotAJobStore) {
  TempDir dir;
  { CostLedger ledger(dir.path() / "ledger.sqlite"); }
  try {
    open_sqlite_job_store(dir.path() / "ledger.sqlite");
    FAIL() << "opened a cost ledger as a job store";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(std::string(e.what()).find("is not a gemstream job store"), std::string::npos);
  }
}

TEST(JobStore, JobIdsAreRandomHex) {
  const std::string a = new_job_id(), b = new_job_id();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a.substr(0, 4), "job_");
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef", 4), std::string::npos);
}

} // namespace
