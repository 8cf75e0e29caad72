// gemstream agent: the plan's acceptance phrases typed into a Live conversation against an
// in-process local backend. The stand-in model calls the capabilities; the CLI runs them through
// LiveToolBridge with consent, the budget and the ledger, and the artefacts are checked.
#include "common/run_command.h"

#include <gemstream/local_backend.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct CliRun {
  int code = -1;
  std::string out;
  std::string all;
};

class CliAgentTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gemstream-cli-agent-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    backend_.start();
    backend_.set_polls_until_done(2);
    env_ = "GOOGLE_API_KEY= GEMINI_API_KEY= GEMSTREAM_DAILY_BUDGET_USD= USER=alice "
           "GEMSTREAM_BASE_URL=" +
           backend_.base_url() + " GEMSTREAM_LEDGER=" + (dir_ / "ledger.sqlite").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun run(const std::string &args, const std::string &extra_env = {}) {
    const fs::path err = dir_ / "stderr.txt";
    auto r = gemstream::testing::run_command(env_ + " " + extra_env + " " GEMSTREAM_CLI " " +
                                             args + " </dev/null 2>" + err.string());
    std::ifstream in(err);
    std::string all = r.out + std::string(std::istreambuf_iterator<char>(in), {});
    return {r.code, std::move(r.out), std::move(all)};
  }

  // The --json summary printed after the conversation.
  static json summary(const CliRun &r) {
    const auto start = r.out.find("\n{");
    if (start == std::string::npos)
      return json();
    return json::parse(r.out.substr(start + 1), nullptr, false);
  }

  json costs() {
    const CliRun r = run("costs --json");
    EXPECT_EQ(r.code, 0) << r.all;
    return json::parse(r.out, nullptr, false);
  }

  std::size_t count_requests(const std::string &path_part) const {
    std::size_t n = 0;
    for (const auto &req : backend_.requests())
      if (req.path.find(path_part) != std::string::npos)
        ++n;
    return n;
  }

  std::string agent(const std::string &message, const std::string &answer) {
    return "agent \"" + message + "\" " + answer + " --json --out " + dir_.string() +
           " --poll-interval 0.1s --timeout 120s";
  }

  fs::path dir_;
  gemstream::LocalBackend backend_;
  std::string env_;
};

std::string read_file(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

TEST_F(CliAgentTest, CreateACardWithAMeditationImageAsksThenMakesThePng) {
  const CliRun r = run(agent("create a card with a meditation image", "--yes"));
  ASSERT_EQ(r.code, 0) << r.all;
  const json s = summary(r);
  ASSERT_TRUE(s.is_object()) << r.out;

  // First the call without consent, then the confirmed one, both for the motif.
  const json &calls = s.at("tool_calls");
  ASSERT_EQ(calls.size(), 2u) << s.dump(2);
  for (const auto &call : calls) {
    EXPECT_EQ(call.at("name"), "generate_card_image");
    EXPECT_EQ(call.at("args").at("motif"), "meditation");
  }
  EXPECT_EQ(calls[0].at("args").at("confirmed"), false);
  EXPECT_EQ(calls[1].at("args").at("confirmed"), true);

  // The model asked the capability's question with the price from the config, and was answered.
  const json &turns = s.at("turns");
  ASSERT_GE(turns.size(), 4u) << s.dump(2);
  EXPECT_NE(turns[1].at("text").get<std::string>().find(
                "Shall I create a card cover showing meditation? It costs about $0.001."),
            std::string::npos)
      << turns[1];
  EXPECT_EQ(turns[2].at("text"), "yes");
  EXPECT_NE(turns.back().at("text").get<std::string>().find("is ready"), std::string::npos);

  ASSERT_EQ(s.at("files").size(), 1u);
  const fs::path png = s.at("files")[0].get<std::string>();
  EXPECT_EQ(png.parent_path(), dir_ / "covers");
  const std::string bytes = read_file(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(count_requests(":generateContent"), 1u);

  const json c = costs();
  ASSERT_EQ(c.at("totals").size(), 1u) << c.dump(2);
  EXPECT_EQ(c.at("totals")[0].at("kind"), "image");
  EXPECT_DOUBLE_EQ(c.at("totals")[0].at("usd").get<double>(), 0.001);
}

TEST_F(CliAgentTest, ABackgroundVideoIsAJobWhoseEndTheModelAnnounces) {
  const CliRun r = run(agent("make my chat background a peaceful beach sunset", "--yes"));
  ASSERT_EQ(r.code, 0) << r.all;
  const json s = summary(r);
  ASSERT_TRUE(s.is_object()) << r.out;
  const json &calls = s.at("tool_calls");
  ASSERT_EQ(calls.size(), 2u) << s.dump(2);
  EXPECT_EQ(calls[1].at("name"), "generate_background_video");
  EXPECT_EQ(calls[1].at("args").at("description"), "peaceful beach sunset");
  EXPECT_EQ(calls[1].at("args").at("confirmed"), true);

  // The call answers at once ("on its way"); the job's end is reported to the model after
  // that turn, and its answer is the last turn.
  const json &turns = s.at("turns");
  ASSERT_GE(turns.size(), 5u) << s.dump(2);
  EXPECT_NE(turns[turns.size() - 2].at("text").get<std::string>().find("on its way"),
            std::string::npos)
      << s.dump(2);
  EXPECT_NE(turns.back().at("text").get<std::string>().find("is ready"), std::string::npos)
      << s.dump(2);

  // One Veo operation, paid once; the clip and its loop outputs are on disk.
  EXPECT_EQ(count_requests(":predictLongRunning"), 1u);
  const json &files = s.at("files");
  ASSERT_GE(files.size(), 1u) << s.dump(2);
  const fs::path clip = files[0].get<std::string>();
  EXPECT_EQ(clip.parent_path(), dir_ / "backgrounds");
  const std::string mp4 = read_file(clip);
  ASSERT_GT(mp4.size(), 10000u);
  EXPECT_EQ(mp4.substr(4, 4), "ftyp");
  ASSERT_EQ(files.size(), 4u) << s.dump(2);
  for (std::size_t i = 1; i < files.size(); ++i) {
    const fs::path out = files[i].get<std::string>();
    EXPECT_EQ(out.parent_path(), clip.parent_path() / clip.stem());
    EXPECT_GT(fs::file_size(out), 1000u) << out;
  }
  EXPECT_EQ(read_file(clip.parent_path() / clip.stem() / "loop.mp4").substr(4, 4), "ftyp");
  const json c = costs();
  ASSERT_EQ(c.at("totals").size(), 1u) << c.dump(2);
  EXPECT_EQ(c.at("totals")[0].at("kind"), "video");
  EXPECT_DOUBLE_EQ(c.at("totals")[0].at("usd").get<double>(), 4.0);
}

TEST_F(CliAgentTest, NoMeansNothingIsMadeOrSpent) {
  const CliRun r = run(agent("create a card with a meditation image", "--no"));
  ASSERT_EQ(r.code, 0) << r.all;
  const json s = summary(r);
  ASSERT_TRUE(s.is_object()) << r.out;
  ASSERT_EQ(s.at("tool_calls").size(), 1u) << s.dump(2);
  EXPECT_EQ(s.at("tool_calls")[0].at("args").at("confirmed"), false);
  EXPECT_TRUE(s.at("files").empty());
  EXPECT_EQ(count_requests(":generateContent"), 0u);
  EXPECT_FALSE(fs::exists(dir_ / "covers"));
  const json c = costs();
  EXPECT_TRUE(c.at("totals").empty()) << c.dump(2);
}

TEST_F(CliAgentTest, WithoutATerminalOrAnAnswerConsentIsNo) {
  // stdin is /dev/null: nobody can say yes.
  const CliRun r = run("agent \"create a card with a meditation image\" --json --out " +
                       dir_.string() + " --timeout 60s");
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_EQ(count_requests(":generateContent"), 0u);
  EXPECT_FALSE(fs::exists(dir_ / "covers"));
}

TEST_F(CliAgentTest, AVideoOverTheDailyBudgetIsRefusedBeforeAnyRequest) {
  const CliRun r = run(agent("make my chat background a peaceful beach sunset", "--yes"),
                       "GEMSTREAM_DAILY_BUDGET_USD=1");
  ASSERT_EQ(r.code, 0) << r.all;
  const json s = summary(r);
  ASSERT_TRUE(s.is_object()) << r.out;
  EXPECT_EQ(count_requests(":predictLongRunning"), 0u);
  EXPECT_TRUE(s.at("files").empty());
  // The model was told why, and said so.
  EXPECT_NE(s.at("turns").back().at("text").get<std::string>().find("budget"), std::string::npos)
      << s.dump(2);
  const json c = costs();
  EXPECT_TRUE(c.at("totals").empty()) << c.dump(2);
}

TEST_F(CliAgentTest, TheLatestOnAiRegulationComesWithSources) {
  const CliRun r = run(agent("what's the latest on AI regulation?", ""));
  ASSERT_EQ(r.code, 0) << r.all;
  const json s = summary(r);
  ASSERT_TRUE(s.is_object()) << r.out;
  const json &answer = s.at("turns").back();
  ASSERT_TRUE(answer.contains("sources")) << s.dump(2);
  ASSERT_GE(answer.at("sources").size(), 1u);
  EXPECT_EQ(answer.at("sources")[0].at("uri").get<std::string>().rfind("https://", 0), 0u);
  EXPECT_NE(r.out.find("Sources:\n[1] "), std::string::npos) << r.out;
}
