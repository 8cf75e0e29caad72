// The cost ledger: prices from the config, exact totals, budgets, concurrency and crash safety
// (a writer killed with SIGKILL mid-transaction leaves a sound database with every committed
// row).
#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/error.h>
#include <gemstream/genai.h>
#include <gemstream/live.h>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace gemstream;

namespace {

class CostsTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gemstream-costs-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    unsetenv("GEMSTREAM_DAILY_BUDGET_USD");
  }
  void TearDown() override {
    unsetenv("GEMSTREAM_DAILY_BUDGET_USD");
    fs::remove_all(dir_);
  }
  fs::path ledger_path() const { return dir_ / "sub" / "ledger.sqlite"; }

  MediaConfig config_ = MediaConfig::load_default();
  fs::path dir_;
};

CostFilter filter(std::string user, std::string day = {}, std::optional<CostKind> kind = {}) {
  CostFilter f;
  f.user = std::move(user);
  f.day = std::move(day);
  f.kind = kind;
  return f;
}

CostEntry entry(const std::string &user, std::int64_t nanos, CostKind kind = CostKind::Image,
                const std::string &model = "gemini-2.5-flash-image") {
  CostEntry e;
  e.user = user;
  e.kind = kind;
  e.model = model;
  e.units = 1;
  e.unit = "image";
  e.usd_nanos = nanos;
  return e;
}

} // namespace

TEST_F(CostsTest, PricesFollowTheConfig) {
  const CostEntry image = price_images(config_, "nano_banana", 3);
  EXPECT_EQ(image.kind, CostKind::Image);
  EXPECT_EQ(image.model, "gemini-2.5-flash-image");
  EXPECT_EQ(image.usd_nanos, 3'000'000); // 3 x $0.001
  EXPECT_EQ(price_images(config_, "imagen-4.0-generate-001").usd_nanos, 40'000'000);

  const CostEntry video = price_video(config_, "veo_3_fast", 8);
  EXPECT_EQ(video.usd_nanos, 4 * kNanosPerUsd); // the plan's $4.00 per 8 s clip
  EXPECT_EQ(video.unit, "second");
  EXPECT_EQ(price_video(config_, "veo_3", 8).usd_nanos, 6 * kNanosPerUsd);
  EXPECT_THROW(price_video(config_, "sora", 8), Error);

  LiveUsage live;
  live.prompt_token_count = 1'000'000;
  live.response_token_count = 500'000;
  live.prompt_tokens_details = {{"AUDIO", 900'000}, {"TEXT", 100'000}};
  live.response_tokens_details = {{"AUDIO", 500'000}};
  const TokenUsage lt = token_usage(live);
  EXPECT_EQ(lt.input_by_modality.at("AUDIO"), 900'000);
  const CostEntry l = price_live(config_, kDefaultLiveModel, lt);
  EXPECT_EQ(l.usd_nanos, 1 * kNanosPerUsd + 1'500'000'000); // $1/M in + $3/M out

  UsageDetails usage;
  usage.prompt_tokens = 2322; // 8 frames and a question
  usage.candidates_tokens = 178;
  usage.prompt_details = {{"VIDEO", 2064}, {"AUDIO", 256}, {"TEXT", 2}};
  const TokenUsage at = token_usage(usage);
  const CostEntry analysis = price_analysis(config_, "gemini-2.5-flash", at);
  EXPECT_EQ(analysis.usd_nanos, 750'000); // 2500 tokens at $0.30/M
  EXPECT_EQ(analysis.units, 2500);
  const CostEntry search = price_search(config_, "gemini-2.5-flash", at);
  EXPECT_EQ(search.kind, CostKind::Search);
  EXPECT_EQ(search.usd_nanos, 750'000 + 35'000); // + $0.035 / 1000 requests

  EXPECT_EQ(format_usd(4.0), "$4.00");
  EXPECT_EQ(format_usd(9.5), "$9.50");
  EXPECT_EQ(format_usd(0.5), "$0.50");
  EXPECT_EQ(format_usd(0.001), "$0.001");
  EXPECT_EQ(format_usd(0.035), "$0.035");
  EXPECT_EQ(format_usd(0.000035), "$0.000035");
  EXPECT_EQ(format_usd(0), "$0.00");
}

TEST_F(CostsTest, TotalsAreExactSumsPerDayUserKindAndModel) {
  CostLedger ledger(ledger_path());
  EXPECT_EQ(ledger.integrity_check(), "ok");
  // The directory is private.
  struct stat st {};
  ASSERT_EQ(::stat(ledger_path().parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(ledger_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::vector<CostEntry> calls;
  for (int i = 0; i < 7; ++i)
    calls.push_back(price_images(config_, "nano_banana"));
  calls.push_back(price_video(config_, "veo_3_fast", 8));
  calls.push_back(price_video(config_, "veo_3", 8));
  UsageDetails usage;
  usage.prompt_tokens = 1234;
  usage.candidates_tokens = 77;
  usage.prompt_details = {{"VIDEO", 1032}, {"TEXT", 202}};
  calls.push_back(price_analysis(config_, "gemini-2.5-flash", token_usage(usage)));
  calls.push_back(price_search(config_, "gemini-2.5-flash", token_usage(usage)));

  std::int64_t sum = 0;
  for (auto c : calls) {
    c.user = "alice";
    sum += c.usd_nanos;
    EXPECT_GT(ledger.record(c), 0);
  }
  auto bob = price_images(config_, "imagen_4");
  bob.user = "bob";
  ledger.record(bob);

  const std::string today = utc_day(std::chrono::system_clock::now());
  EXPECT_EQ(ledger.spent_nanos("alice", today), sum);
  std::int64_t total = 0;
  std::map<std::pair<std::string, std::string>, CostTotal> by_key;
  for (const auto &t : ledger.totals(filter("alice", today))) {
    total += t.usd_nanos;
    by_key[{to_string(t.kind), t.model}] = t;
  }
  EXPECT_EQ(total, sum);
  const CostTotal &images = by_key.at({"image", "gemini-2.5-flash-image"});
  EXPECT_EQ(images.calls, 7);
  EXPECT_DOUBLE_EQ(images.units, 7);
  EXPECT_EQ(images.usd_nanos, 7'000'000);
  EXPECT_EQ(by_key.at({"video", "veo-3.0-fast-generate-001"}).usd_nanos, 4 * kNanosPerUsd);
  EXPECT_EQ(by_key.at({"analysis", "gemini-2.5-flash"}).input_tokens, 1234);
  EXPECT_EQ(by_key.size(), 5u);

  // Rows come back as written, tokens by modality included.
  const auto rows = ledger.entries(filter("alice", {}, CostKind::Analysis));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].tokens.input_by_modality.at("VIDEO"), 1032);
  EXPECT_EQ(rows[0].day(), today);
  EXPECT_EQ(ledger.entries(filter("bob")).size(), 1u);
  EXPECT_TRUE(ledger.entries(filter({}, "1999-01-01")).empty());
}

TEST_F(CostsTest, BudgetRefusesWithAClearMessage) {
  CostLedger ledger(ledger_path());
  for (int i = 0; i < 19; ++i)
    ledger.record(entry("alice", 500'000'000)); // $9.50 today
  EXPECT_FALSE(ledger.budget_status("alice").budget_nanos);
  EXPECT_NO_THROW(ledger.check_budget("alice", 4.0, "this video")); // no budget set

  ledger.set_daily_budget("alice", 10.0);
  try {
    ledger.check_budget("alice", 4.0, "this video");
    FAIL() << "not refused";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::BudgetExceeded);
    EXPECT_STREQ(to_string(e.kind()), "BudgetExceeded");
    EXPECT_EQ(e.message(), "this video would cost $4.00; today's spending for alice is $9.50 of "
                           "the $10.00 daily budget (set by the ledger setting for alice)");
  }
  EXPECT_NO_THROW(ledger.check_budget("alice", 0.5)); // exactly reaches the budget
  EXPECT_NO_THROW(ledger.check_budget("bob", 4.0));   // only alice has one

  ledger.set_daily_budget("", 1.0); // the default for everyone else
  EXPECT_THROW(ledger.check_budget("bob", 4.0), Error);
  ledger.set_daily_budget("alice", std::nullopt);
  EXPECT_EQ(ledger.budget_status("alice").budget_nanos, kNanosPerUsd);

  setenv("GEMSTREAM_DAILY_BUDGET_USD", "20", 1); // the environment wins
  EXPECT_NO_THROW(ledger.check_budget("alice", 4.0));
  EXPECT_EQ(ledger.budget_status("bob").source, "GEMSTREAM_DAILY_BUDGET_USD");
  setenv("GEMSTREAM_DAILY_BUDGET_USD", "ten dollars", 1);
  EXPECT_THROW(ledger.check_budget("alice", 1.0), Error);
  EXPECT_THROW(ledger.set_daily_budget("alice", -1.0), Error);
}

TEST_F(CostsTest, ConcurrentWritersLoseNothing) {
  { CostLedger create(ledger_path()); }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([this, t] {
      CostLedger ledger(ledger_path()); // its own connection, like another process
      for (int i = 0; i < 25; ++i)
        ledger.record(entry("user" + std::to_string(t), 1000 + i));
    });
  CostLedger shared(ledger_path());
  std::vector<std::thread> more;
  for (int t = 0; t < 2; ++t)
    more.emplace_back([&shared] {
      for (int i = 0; i < 25; ++i)
        shared.record(entry("shared", 7));
    });
  for (auto &th : threads)
    th.join();
  for (auto &th : more)
    th.join();
  EXPECT_EQ(shared.entries().size(), 150u);
  std::int64_t total = 0;
  for (const auto &t : shared.totals())
    total += t.usd_nanos;
  EXPECT_EQ(total, 4 * (25 * 1000 + 300) + 50 * 7);
}

TEST_F(CostsTest, SurvivesKillNineDuringWrites) {
  { CostLedger create(ledger_path()); }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    try {
      CostLedger ledger(ledger_path());
      for (std::int64_t i = 0;; ++i) {
        CostEntry e = entry("crash", 1 + i % 1000);
        e.note = std::string(2000, 'n'); // multi-page rows: a kill lands inside a write
        const std::int64_t id = ledger.record(e);
        if (write(fds[1], &id, sizeof id) != sizeof id)
          _exit(3);
      }
    } catch (...) {
      _exit(2);
    }
  }
  close(fds[1]);
  std::set<std::int64_t> committed;
  std::int64_t id = 0;
  while (committed.size() < 150 && read(fds[0], &id, sizeof id) == sizeof id)
    committed.insert(id);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited on its own: " << status;
  while (read(fds[0], &id, sizeof id) == sizeof id) // reported before the kill landed
    committed.insert(id);
  close(fds[0]);
  ASSERT_GE(committed.size(), 150u);

  CostLedger reopened(ledger_path());
  EXPECT_EQ(reopened.integrity_check(), "ok");
  std::set<std::int64_t> present;
  for (const auto &e : reopened.entries(filter("crash")))
    present.insert(e.id);
  for (std::int64_t c : committed)
    EXPECT_TRUE(present.contains(c)) << "committed row " << c << " lost";
  // Still writable afterwards.
  EXPECT_GT(reopened.record(entry("after", 1)), *committed.rbegin());
}

TEST_F(CostsTest, RefusesFilesThatAreNotLedgers) {
  fs::create_directories(dir_);
  const auto path = dir_ / "other.sqlite";
  {
    CostLedger ok(path); // creates a ledger
  }
  EXPECT_NO_THROW(CostLedger again(path));
  const auto junk = dir_ / "junk.sqlite";
  std::ofstream(junk) << "this is not a database at all, just some text that sqlite rejects....";
  try {
    CostLedger bad(junk);
    FAIL() << "opened a non-database";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(junk.string()), std::string::npos) << e.what();
  }
  const char *old = std::getenv("GEMSTREAM_LEDGER");
  const std::string saved = old ? old : "";
  setenv("GEMSTREAM_LEDGER", (dir_ / "env.sqlite").c_str(), 1);
  EXPECT_EQ(CostLedger::default_path(), dir_ / "env.sqlite");
  unsetenv("GEMSTREAM_LEDGER");
  setenv("XDG_DATA_HOME", "/data/home", 1);
  EXPECT_EQ(CostLedger::default_path(), fs::path("/data/home/gemstream/ledger.sqlite"));
  unsetenv("XDG_DATA_HOME");
  if (!saved.empty())
    setenv("GEMSTREAM_LEDGER", saved.c_str(), 1);
}
