// gemstream ask / analyze / costs, and the ledger and budget behaviour of image and video,
// through the command line against an in-process local backend.
#include "common/run_command.h"
#include "media.h"

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
  std::string out; // stdout
  std::string all; // stdout and stderr
};

class CliCapsTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("gemstream-cli-caps-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    gemstream::backend::VideoSpec spec;
    spec.seconds = 3;
    spec.width = 256;
    spec.height = 144;
    spec.prompt = "energetic orange workout";
    std::ofstream(dir_ / "workout.mp4", std::ios::binary) << gemstream::backend::render_mp4(spec);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    backend_.start();
    ledger_ = dir_ / (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                      ".sqlite");
    env_ = "GOOGLE_API_KEY= GEMINI_API_KEY= GEMSTREAM_DAILY_BUDGET_USD= USER=alice "
           "GEMSTREAM_BASE_URL=" +
           backend_.base_url() + " GEMSTREAM_LEDGER=" + ledger_.string();
  }

  CliRun run(const std::string &args, const std::string &extra_env = {}) {
    const fs::path err = dir_ / "stderr.txt";
    auto r = gemstream::testing::run_command(env_ + " " + extra_env + " " GEMSTREAM_CLI " " +
                                             args + " 2>" + err.string());
    std::ifstream in(err);
    std::string all = r.out + std::string(std::istreambuf_iterator<char>(in), {});
    return {r.code, std::move(r.out), std::move(all)};
  }

  json costs(const std::string &args = {}) {
    const CliRun r = run("costs --json " + args);
    EXPECT_EQ(r.code, 0) << r.all;
    return json::parse(r.out);
  }

  static inline fs::path dir_;
  gemstream::LocalBackend backend_;
  fs::path ledger_;
  std::string env_;
};

} // namespace

TEST_F(CliCapsTest, AskWithSearchPrintsCitationsAndSources) {
  const CliRun r = run("ask \"What's the latest on AI regulation?\" --search");
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_NE(r.out.find("artificial intelligence.[1]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("AI regulation.[1][2]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nSources:\n[1] AI Act | Shaping Europe\u2019s digital future - "
                       "https://digital-strategy.ec.europa.eu/en/policies/regulatory-framework-ai\n"
                       "[2] OECD AI Principles overview - https://oecd.ai/en/ai-principles\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.all.find("searched for: \"latest AI regulation news\""), std::string::npos) << r.all;
  const json c = costs();
  ASSERT_EQ(c.at("totals").size(), 1u);
  EXPECT_EQ(c.at("totals")[0].at("kind"), "search");
  EXPECT_EQ(c.at("totals")[0].at("user"), "alice");
  EXPECT_EQ(c.at("totals")[0].at("key").get<std::string>().rfind("costs:alice:", 0), 0u);
}

TEST_F(CliCapsTest, AnalyzeInlineUploadAndFrames) {
  const std::string video = (dir_ / "workout.mp4").string();
  CliRun r = run("analyze " + video + " \"here is my workout video, what do you see?\"");
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_NE(r.out.find("3.0 seconds long, 256x144 at 24 frames per second (72 frames"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.all.find("sent inline"), std::string::npos) << r.all;

  r = run("analyze " + video + " \"what happens?\" --inline-limit 10KB");
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_NE(r.all.find("uploaded as files/"), std::string::npos) << r.all;
  EXPECT_NE(r.all.find("uploading: 100%"), std::string::npos) << r.all;
  EXPECT_NE(r.out.find("72 frames"), std::string::npos) << r.out;

  r = run("analyze " + video + " \"what happens?\" --frames 3");
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_NE(r.out.find("I looked at 3 images (256x144)"), std::string::npos) << r.out;
  EXPECT_NE(r.all.find("sent as 3 JPEG frames"), std::string::npos) << r.all;

  const json c = costs("--user alice");
  std::int64_t calls = 0;
  for (const auto &t : c.at("totals"))
    if (t.at("kind") == "analysis")
      calls += t.at("calls").get<std::int64_t>();
  EXPECT_EQ(calls, 3);
}

TEST_F(CliCapsTest, AnalyzeFramesAreSampledByFramesamplerEvenly) {
  const std::string video = (dir_ / "workout.mp4").string();
  const CliRun r = run("analyze " + video + " \"what happens?\" --frames 4 --user bob");
  ASSERT_EQ(r.code, 0) << r.all;
  // The backend describes the images it received.
  EXPECT_NE(r.out.find("I looked at 4 images (256x144)"), std::string::npos) << r.out;
  EXPECT_NE(r.all.find("sampling 4 frames (one every 0.750 s)"), std::string::npos) << r.all;
  EXPECT_NE(r.all.find("sent as 4 JPEG frames sampled by framesampler"), std::string::npos)
      << r.all;

  json body;
  int generate = 0;
  for (const auto &req : backend_.requests())
    if (req.path.find(":generateContent") != std::string::npos) {
      body = json::parse(req.body);
      ++generate;
    }
  ASSERT_EQ(generate, 1);
  std::vector<std::string> labels;
  std::string label, last_text;
  for (const auto &p : body.at("contents").at(0).at("parts")) {
    if (p.contains("text"))
      label = last_text = p.at("text").get<std::string>();
    if (p.contains("inlineData")) {
      EXPECT_EQ(p.at("inlineData").at("mimeType"), "image/jpeg");
      labels.push_back(label);
    }
  }
  // Exactly 4 frames, a quarter of the 3 s clip apart, then the question.
  EXPECT_EQ(labels, (std::vector<std::string>{"Frame at 0.00 s:", "Frame at 0.75 s:",
                                              "Frame at 1.50 s:", "Frame at 2.25 s:"}));
  EXPECT_EQ(last_text, "what happens?");

  // Recorded once, by the element, for the user given.
  const json c = costs("--user bob");
  ASSERT_EQ(c.at("totals").size(), 1u);
  EXPECT_EQ(c.at("totals")[0].at("kind"), "analysis");
  EXPECT_EQ(c.at("totals")[0].at("calls"), 1);
}

TEST_F(CliCapsTest, BadVideosFailClearly) {
  const std::string bytes = [&] {
    std::ifstream in(dir_ / "workout.mp4", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  std::ofstream(dir_ / "cut.mp4", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  std::ofstream(dir_ / "text.mp4") << "not a video at all";
  CliRun r = run("analyze " + (dir_ / "cut.mp4").string() + " \"what?\"");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.all.find("truncated"), std::string::npos) << r.all;
  r = run("analyze " + (dir_ / "text.mp4").string() + " \"what?\"");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.all.find("not a video file"), std::string::npos) << r.all;
  r = run("analyze " + (dir_ / "workout.mp4").string() + " \"what?\" --max-size 1KB");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.all.find("too large"), std::string::npos) << r.all;
  r = run("analyze " + (dir_ / "cut.mp4").string() + " \"what?\" --frames 4");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.all.find("truncated"), std::string::npos) << r.all;
  r = run("analyze " + (dir_ / "workout.mp4").string() + " \"what?\" --frames 0");
  EXPECT_EQ(r.code, 2) << r.all;
  EXPECT_TRUE(backend_.requests().empty());
}

TEST_F(CliCapsTest, ImageAndVideoAreLedgeredAndBudgeted) {
  CliRun r = run("image meditation -o " + (dir_ / "m.png").string());
  ASSERT_EQ(r.code, 0) << r.all;
  json c = costs();
  ASSERT_EQ(c.at("totals").size(), 1u);
  EXPECT_EQ(c.at("totals")[0].at("usd_nanos"), 1'000'000);
  EXPECT_EQ(c.at("totals")[0].at("model"), "gemini-2.5-flash-image");

  // $0.001 spent; a $2 budget leaves no room for a $4.00 video: refused before any request.
  backend_.clear_requests();
  r = run("video \"peaceful beach sunset\" -o " + (dir_ / "v.mp4").string(),
          "GEMSTREAM_DAILY_BUDGET_USD=2");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.all.find("this video would cost $4.00; today's spending for alice is $0.001 of the "
                       "$2.00 daily budget"),
            std::string::npos)
      << r.all;
  EXPECT_TRUE(backend_.requests().empty());
  EXPECT_FALSE(fs::exists(dir_ / "v.mp4"));

  r = run("video \"peaceful beach sunset\" --poll-interval 50ms -o " + (dir_ / "v.mp4").string(),
          "GEMSTREAM_DAILY_BUDGET_USD=10");
  ASSERT_EQ(r.code, 0) << r.all;
  c = costs();
  EXPECT_EQ(c.at("total_usd_nanos"), 4'001'000'000);
  EXPECT_EQ(c.at("budget").at("spent_usd_nanos"), 4'001'000'000);

  // Another user's ledger line, and the per-user filter.
  r = run("image owl --user bob -o " + (dir_ / "o.png").string());
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_EQ(costs("--user bob").at("total_usd_nanos"), 1'000'000);
  EXPECT_EQ(costs("--user alice --day today").at("total_usd_nanos"), 4'001'000'000);
  EXPECT_TRUE(costs("--day 2001-01-01").at("totals").empty());
}

TEST_F(CliCapsTest, CostsPrintsTotalsAndBudgets) {
  ASSERT_EQ(run("image owl -o " + (dir_ / "a.png").string()).code, 0);
  ASSERT_EQ(run("image owl --model imagen-4 -o " + (dir_ / "b.png").string()).code, 0);
  CliRun r = run("costs --set-budget 5 --user alice");
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_EQ(r.out, "daily budget for alice: $5.00\n");
  r = run("costs");
  ASSERT_EQ(r.code, 0) << r.all;
  EXPECT_NE(r.out.find("costs:alice:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("image     gemini-2.5-flash-image"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("image     imagen-4.0-generate-001"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("total: $0.041"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("alice has spent $0.041 of the $5.00 daily budget"), std::string::npos)
      << r.out;
  EXPECT_EQ(run("costs --day someday").code, 2);
  EXPECT_EQ(run("costs --set-budget lots").code, 2);
}
