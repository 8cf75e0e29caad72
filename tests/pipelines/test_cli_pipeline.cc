// gemstream run / inspect / pipelines against the local backend: exit codes, output, Ctrl-C.
#include "common/run_command.h"
#include "pipelines/pipeline_test_util.h"

#include <gemstream/local_backend.h>
#include <gtest/gtest.h>

#include <csignal>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace gemstream::test;
using namespace std::chrono_literals;

namespace {

struct CliRun {
  int code = -1;
  std::string output; // stdout and stderr
};

std::string shell_quote(const std::string &s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CliRun run(const std::vector<std::string> &args, const std::string &env = {}) {
  std::string cmd = env + " " GEMSTREAM_CLI;
  for (const auto &a : args)
    cmd += " " + shell_quote(a);
  cmd += " 2>&1";
  auto r = gemstream::testing::run_command(cmd);
  return {r.code, std::move(r.out)};
}

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

class CliPipeline : public ::testing::Test {
protected:
  void SetUp() override {
    backend_.start();
    env_ = "GOOGLE_API_KEY= GEMINI_API_KEY= GEMSTREAM_BASE_URL=" + backend_.base_url();
  }
  gemstream::LocalBackend backend_;
  TempDir dir_;
  std::string env_;
};

} // namespace

TEST_F(CliPipeline, PipelinesListsEachFileWithItsParameters) {
  CliRun r = run({"pipelines"});
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char *name : {"cover-image", "background-video", "background-loop"})
    EXPECT_TRUE(contains(r.output, std::string(name) + "\n")) << name << "\n" << r.output;
  EXPECT_TRUE(
      contains(r.output, "style            enum: none|minimal|abstract|nature|cosmic; optional"))
      << r.output;
  EXPECT_TRUE(
      contains(r.output, "crossfade        duration [40ms..60s] (e.g. 500ms, 2s); default 1s"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "prompt           string; required")) << r.output;
}

TEST_F(CliPipeline, InspectPrintsTheResolvedLaunchLine) {
  CliRun r = run({"inspect", "cover-image", "prompt=owl \" ! filesink location=/etc/passwd",
                  "output=/tmp/o.png"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output, "imagegensrc name=src prompt=\"owl \\\" ! filesink location=/etc/passwd\" "
                      "use-template=\"true\" aspect-ratio=\"1:1\" ! filesink name=sink "
                      "location=\"/tmp/o.png\"\n");
  const fs::path file = fs::path(GEMSTREAM_SOURCE_DIR) / "pipelines" / "background-loop.json";
  r = run({"inspect", file.string(), "input=" + file.string(), "formats=poster", "audio=no"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "jpegenc")) << r.output;
  EXPECT_FALSE(contains(r.output, "x264enc")) << r.output;
}

TEST_F(CliPipeline, BadParametersExitTwoNamingFileAndParameter) {
  CliRun r = run({"inspect", "cover-image"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(
      contains(r.output, "pipelines/cover-image.json: parameter 'prompt': missing required value"))
      << r.output;
  r = run({"run", "cover-image", "prompt=owl", "style=baroque"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "parameter 'style': \"baroque\" is not one of: none, minimal"))
      << r.output;
  r = run({"run", "cover-image", "prompt"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "expected name=value, got \"prompt\"")) << r.output;
  // Outputs are checked before any work: a directory, a file two outputs share, the input.
  const fs::path clip = dir_ / "in.mp4";
  std::ofstream(clip) << "not read";
  for (const auto &[args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"mp4-output=" + dir_.path().string()},
            "parameter 'mp4-output': " + dir_.path().string() + " is a directory"},
           {{"mp4-output=" + (dir_ / "same").string(), "webm-output=" + (dir_ / "same").string()},
            "parameters 'mp4-output' and 'webm-output' both write " + (dir_ / "same").string()},
           {{"poster-output=" + clip.string()},
            "parameter 'poster-output': " + clip.string() + " is the input 'input'"}}) {
    std::vector<std::string> argv = {"run", "background-loop", "input=" + clip.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    r = run(argv);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, message)) << r.output;
  }
  EXPECT_EQ(slurp(clip), "not read");
  r = run({"run", "no-such-pipeline"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "no pipeline named \"no-such-pipeline\"")) << r.output;
}

TEST_F(CliPipeline, RunWritesTheImageAndReportsCost) {
  const fs::path out = dir_ / "owl.png";
  CliRun r =
      run({"run", "cover-image", "prompt=owl", "style=minimal", "output=" + out.string()}, env_);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(slurp(out).substr(1, 3), "PNG");
  EXPECT_TRUE(contains(r.output, "model: gemini-2.5-flash-image, cost: $")) << r.output;
  EXPECT_TRUE(contains(r.output, "cover-image: done")) << r.output;
}

TEST_F(CliPipeline, RunErrorExitsOneWithTheElementsMessage) {
  backend_.fail_next(1, 403);
  CliRun r = run({"run", "cover-image", "prompt=owl", "output=" + (dir_ / "x.png").string()}, env_);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "error: src: ")) << r.output;
}

// Runs the CLI with `args` and the environment assignments `env` through sh, its output in
// `log`; presses Ctrl-C once `ready` shows in the log and returns the exit status (-1 when it
// does not exit within 10 s of the signal).
int interrupt_when(const std::string &env, const std::string &args, const fs::path &log,
                   const std::string &ready) {
  const std::string line =
      env + " exec " GEMSTREAM_CLI " " + args + " > " + log.string() + " 2>&1";
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char *>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 400 && !contains(slurp(log), ready); ++i)
    std::this_thread::sleep_for(25ms);
  EXPECT_TRUE(contains(slurp(log), ready)) << slurp(log);
  kill(pid, SIGINT);
  int status = 0;
  const auto t0 = std::chrono::steady_clock::now();
  pid_t done = 0;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - t0 < 10s)
    std::this_thread::sleep_for(20ms);
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ADD_FAILURE() << "the CLI did not stop within 10 s of Ctrl-C:\n" << slurp(log);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(CliPipeline, CtrlCStopsCleanlyWithEos) {
  backend_.set_polls_until_done(100000);
  const fs::path out = dir_ / "never.mp4", log = dir_ / "log";
  const int code = interrupt_when(
      env_, "run background-video prompt=waves poll-interval=50ms output=" + out.string(), log,
      "operation: ");
  EXPECT_TRUE(contains(slurp(log), "Stopping (press Ctrl-C again to abort)")) << slurp(log);
  // veosrc answers EOS by cancelling the poll: the run ends in EOS.
  EXPECT_EQ(code, 0) << slurp(log);
}

// background-loop's "interrupt" is "cancel": EOS would end the clip early, and the loop made
// of the part read so far would look complete but be wrong. Nothing is kept.
TEST_F(CliPipeline, CtrlCCancelsABackgroundLoopAndKeepsNothing) {
  if (!gst_is_initialized())
    gst_init(nullptr, nullptr);
  const fs::path clip = dir_ / "clip.mp4", out = dir_ / "out", log = dir_ / "log";
  ASSERT_EQ(make_clip(clip, 240, true), "");
  fs::create_directories(out);
  // 1080p output: the encoders take seconds, so the signal comes mid-run.
  const int code = interrupt_when(env_,
                                  "run background-loop input=" + clip.string() +
                                      " height=1080 mp4-output=" + (out / "loop.mp4").string() +
                                      " webm-output=" + (out / "loop.webm").string() +
                                      " poster-output=" + (out / "poster.jpg").string(),
                                  log, "Looping");
  EXPECT_EQ(code, 130) << slurp(log);
  EXPECT_TRUE(contains(slurp(log), "Cancelled.")) << slurp(log);
  EXPECT_FALSE(contains(slurp(log), "done")) << slurp(log);
  EXPECT_TRUE(fs::is_empty(out)) << "kept: " << fs::directory_iterator(out)->path();
}

// Outputs are written under temporary names and renamed after EOS: a failed run keeps the
// files of an earlier one and leaves nothing else (filesink truncated them at once before).
TEST_F(CliPipeline, RunWritesItsOutputsOnlyWhenItSucceeds) {
  if (!gst_is_initialized())
    gst_init(nullptr, nullptr);
  const fs::path silent = dir_ / "silent.mp4", out = dir_ / "out";
  ASSERT_EQ(make_clip(silent, 48, false), "");
  fs::create_directories(out);
  const std::string earlier = "the loop of an earlier run";
  for (const char *name : {"loop.mp4", "loop.webm", "poster.jpg"})
    std::ofstream(out / name) << earlier;
  const std::vector<std::string> args = {
      "run", "background-loop", "input=" + silent.string(), "crossfade=500ms",
      "mp4-output=" + (out / "loop.mp4").string(), "webm-output=" + (out / "loop.webm").string(),
      "poster-output=" + (out / "poster.jpg").string(), "-q"};

  // audio=true for a clip without audio: decodebin3 never adds audio_0, an error.
  CliRun r = run(args, env_);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "no audio stream")) << r.output;
  std::set<std::string> names;
  for (const auto &e : fs::directory_iterator(out))
    names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"loop.mp4", "loop.webm", "poster.jpg"}));
  for (const char *name : {"loop.mp4", "loop.webm", "poster.jpg"})
    EXPECT_EQ(slurp(out / name), earlier) << name;

  std::vector<std::string> ok = args;
  ok.push_back("audio=false");
  r = run(ok, env_);
  ASSERT_EQ(r.code, 0) << r.output;
  names.clear();
  for (const auto &e : fs::directory_iterator(out))
    names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"loop.mp4", "loop.webm", "poster.jpg"}));
  EXPECT_EQ(slurp(out / "poster.jpg").substr(0, 2), "\xff\xd8");
  EXPECT_NE(slurp(out / "loop.mp4").find("moov"), std::string::npos);
}
