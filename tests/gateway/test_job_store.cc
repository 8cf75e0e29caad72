// The SQLite job store: claim order and limits (concurrency, starts per minute), leases
// (expiry, takeover, writes refused to a worker that lost its lease), release on shutdown, and
// durability across reopening, from two connections as two processes would use it.
#include "gateway_test_util.h"

#include <gemstream/error.h>
#include <gemstream/job_store.h>

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

ClaimLimits limits(const std::string &worker, int concurrency = 2, int per_minute = 10,
                   milliseconds lease = milliseconds(30000)) {
  ClaimLimits l;
  l.worker = worker;
  l.concurrency = concurrency;
  l.starts_per_minute = per_minute;
  l.lease = lease;
  return l;
}

TEST(JobStore, ClaimsOldestFirstAndCountsAttempts) {
  TempDir dir;
  auto store = open_sqlite_job_store(dir.path() / "jobs.sqlite");
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

TEST(JobStore, ConcurrencyCountsLiveLeasesOfEveryWorker) {
  TempDir dir;
  auto a = open_sqlite_job_store(dir.path() / "jobs.sqlite");
  auto b = open_sqlite_job_store(dir.path() / "jobs.sqlite"); // a second process's connection
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

TEST(JobStore, StartRateLimitsNewOperationsButNotResumes) {
  TempDir dir;
  auto store = open_sqlite_job_store(dir.path() / "jobs.sqlite");
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

TEST(JobStore, LostLeaseRefusesEveryWrite) {
  TempDir dir;
  auto store = open_sqlite_job_store(dir.path() / "jobs.sqlite");
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

TEST(JobStore, ReleaseHandsTheJobOverAtOnceWithoutCountingTheAttempt) {
  TempDir dir;
  auto store = open_sqlite_job_store(dir.path() / "jobs.sqlite");
  store->create(job("job_a"));
  ASSERT_TRUE(store->claim(limits("w1"), at(2'000'000)));
  ASSERT_TRUE(store->set_operation("job_a", "w1", "models/veo/operations/x", at(2'000'000)));
  ASSERT_TRUE(store->release("job_a", "w1"));
  const auto again = store->claim(limits("w2"), at(2'000'001));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempts, 1);
  EXPECT_EQ(again->operation, "models/veo/operations/x");
}

TEST(JobStore, SurvivesReopeningAndListsNewestFirst) {
  TempDir dir;
  {
    auto store = open_sqlite_job_store(dir.path() / "jobs.sqlite");
    store->create(job("job_a", "alice", 1));
    store->create(job("job_b", "alice", 2));
    store->create(job("job_c", "bob", 3));
    ASSERT_TRUE(store->claim(limits("w1"), at(2'000'000)));
    ASSERT_TRUE(store->fail("job_a", "w1", "the model returned no video"));
  }
  auto store = open_sqlite_job_store(dir.path() / "jobs.sqlite");
  const auto alice = store->list("alice", 10);
  ASSERT_EQ(alice.size(), 2u);
  EXPECT_EQ(alice[0].id, "job_b");
  EXPECT_EQ(alice[1].id, "job_a");
  EXPECT_EQ(alice[1].state, JobState::Failed);
  EXPECT_EQ(alice[1].error, "the model returned no video");
  EXPECT_EQ(store->list("bob", 10).size(), 1u);
  EXPECT_FALSE(store->get("job_x"));
}

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
