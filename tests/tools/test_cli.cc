// The gemstream command line against an in-process local backend: files written, exit codes,
// messages, and no partial output on failure.
#include "common/run_command.h"
#include "media.h"

#include <gemstream/local_backend.h>
#include <gemstream/media_probe.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct CliRun {
  int code = -1;
  std::string output;  // stdout and stderr
};

CliRun run(const std::string &args, const std::string &env = {}) {
  auto r = gemstream::testing::run_command(env + " " GEMSTREAM_CLI " " + args + " 2>&1");
  return {r.code, std::move(r.out)};
}

std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The temporary files ("*.part") left in `dir`; none after any run, failed or not.
std::vector<std::string> part_files(const fs::path &dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".part")
      names.push_back(it->path().filename().string());
  return names;
}

class CliTest : public ::testing::Test {
protected:
  void SetUp() override {
    backend_.start();
    dir_ = fs::temp_directory_path() / ("gemstream-cli-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    env_ = "GOOGLE_API_KEY= GEMINI_API_KEY= GEMSTREAM_BASE_URL=" + backend_.base_url();
  }
  void TearDown() override { fs::remove_all(dir_); }
  gemstream::LocalBackend backend_;
  fs::path dir_;
  std::string env_;
};

} // namespace

TEST_F(CliTest, ImageWritesPngAndPrintsCost) {
  auto out = dir_ / "cover.png";
  CliRun r = run("image \"meditation practice\" --style minimal --aspect-ratio 16:9 -o " + out.string(), env_);
  ASSERT_EQ(r.code, 0) << r.output;
  std::string png = slurp(out);
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  EXPECT_NE(r.output.find("cost: $0.001"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(out.string()), std::string::npos);
}

TEST_F(CliTest, VideoWritesMp4WithProgress) {
  auto out = dir_ / "clip.mp4";
  CliRun r = run("video \"peaceful beach sunset\" --mood calm --poll-interval 100ms -o " + out.string(), env_);
  ASSERT_EQ(r.code, 0) << r.output;
  std::string mp4 = slurp(out);
  ASSERT_GT(mp4.size(), 10000u);
  EXPECT_EQ(mp4.substr(4, 4), "ftyp");
  EXPECT_NE(r.output.find("Generating video"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cost: $4.000"), std::string::npos) << r.output;
  EXPECT_EQ(part_files(dir_), std::vector<std::string>{});
}

TEST_F(CliTest, FailureLeavesNoPartialFileAndSaysWhy) {
  backend_.fail_next(1, 400);
  auto out = dir_ / "never.png";
  CliRun r = run("image owl -o " + out.string(), env_);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("error:"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(part_files(dir_), std::vector<std::string>{});
}

TEST_F(CliTest, TimeoutPrintsTheResumeCommand) {
  backend_.set_polls_until_done(100000);
  auto out = dir_ / "slow.mp4";
  CliRun r = run("video waves --poll-interval 100ms --timeout 1 -o " + out.string(), env_);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("resume with: gemstream video --operation models/"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  CliRun r = run("image owl --style baroque", env_);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("one of: none, minimal, abstract, nature, cosmic"), std::string::npos) << r.output;
  EXPECT_EQ(run("frobnicate").code, 2);
  // Values are checked whole and before any request: background pays for its clip first.
  const auto out = (dir_ / "bg").string();
  backend_.clear_requests();
  for (const auto &[args, message] : std::vector<std::pair<std::string, std::string>>{
           {"--height 361", "the output height must be 0 (the input's) or an even number of "
                            "pixels from 16 to 4320 (H.264 and VP9 halve the colour resolution; "
                            "x264 needs 16), not 361"},
           {"--height 8", "an even number of pixels from 16 to 4320"},
           {"--crossfade 10ms", "the crossfade must be between 40 ms and 60 s, not 0.01 s"},
           {"--height 1e10", "--height expects a whole number from 0 to 4320, got \"1e10\""},
           {"--height 240ms", "--height expects a whole number from 0 to 4320, got \"240ms\""},
           {"--crossfade nan", "--crossfade expects a duration such as 500ms, 1.5s or 2min"},
           {"--crossfade 2x", "--crossfade expects a duration such as 500ms, 1.5s or 2min"},
           {"--crossfade 5s", "--crossfade: veo-3-fast makes clips of 8 s, and a crossfade can "
                              "be at most half of the clip, got \"5s\""}}) {
    r = run("background beach --out " + out + " " + args, env_);
    EXPECT_EQ(r.code, 2) << args << ": " << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << ": " << r.output;
  }
  EXPECT_EQ(backend_.requests().size(), 0u) << "a request was sent for a usage error";
  r = run("loop " + (dir_ / "any.mp4").string() + " --out ''", env_);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--out: give the directory"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  CliRun help = run("video --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.output.find("--mood"), std::string::npos);
}

TEST_F(CliTest, LoopWritesMp4WebmAndPosterOfTheLoopDuration) {
  gemstream::backend::VideoSpec spec;
  spec.seconds = 4;
  spec.width = 320;
  spec.height = 180;
  spec.prompt = "calm teal waves";
  auto clip = dir_ / "clip.mp4";
  std::ofstream(clip, std::ios::binary) << gemstream::backend::render_mp4(spec);
  auto out = dir_ / "loop";
  CliRun r = run("loop " + clip.string() + " --out " + out.string() + " --crossfade 1s", env_);
  ASSERT_EQ(r.code, 0) << r.output;
  auto mp4 = gemstream::probe_media(out / "loop.mp4");
  EXPECT_NEAR(mp4.duration_s, 3.0, 0.1);
  EXPECT_EQ(mp4.video()->codec, "h264");
  ASSERT_NE(mp4.audio(), nullptr);
  EXPECT_EQ(mp4.audio()->codec, "aac");
  auto webm = gemstream::probe_media(out / "loop.webm");
  EXPECT_EQ(webm.video()->codec, "vp9");
  EXPECT_EQ(webm.audio()->codec, "opus");
  EXPECT_NEAR(webm.duration_s, 3.0, 0.1);
  EXPECT_EQ(slurp(out / "poster.jpg").substr(0, 2), "\xff\xd8");
  EXPECT_EQ(part_files(out), std::vector<std::string>{});
}

TEST_F(CliTest, LoopRefusesABadInputBeforeWorkAndWritesNothing) {
  auto bad = dir_ / "truncated.mp4";
  std::ofstream(bad, std::ios::binary) << std::string("\0\0\0\x18" "ftypisom", 12) << std::string(5000, 'x');
  auto out = dir_ / "never";
  CliRun r = run("loop " + bad.string() + " --out " + out.string(), env_);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  // Only that message: libavformat's own ("[mov,mp4,... @ 0x...] moov atom not found") goes to
  // the GStreamer debug log, not into the tool's output.
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_EQ(r.output.find(" @ 0x"), std::string::npos) << r.output;
  CliRun logged = run("loop " + bad.string() + " --out " + out.string(),
                      env_ + " GST_DEBUG=gemstream-libav:1 GST_DEBUG_NO_COLOR=1");
  EXPECT_NE(logged.output.find("moov atom not found"), std::string::npos) << logged.output;
  EXPECT_FALSE(fs::exists(out / "loop.mp4"));
  EXPECT_EQ(part_files(out), std::vector<std::string>{});
}
