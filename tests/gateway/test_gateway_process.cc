// `gemstream serve` as a process: killed with SIGKILL while a job polls its Veo operation, a new
// gateway on the same database finishes the job once the lease runs out, without a second
// predictLongRunning, and makes the loop outputs with the background-loop pipeline file.
#include "gateway_test_util.h"

#include <gemstream/job_store.h>
#include <gemstream/media_probe.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

using namespace gemstream;
using namespace gemstream::testing;

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A `gemstream serve` child process; its stderr goes to a file, its first stdout line is the
// base URL.
class ServeProcess {
public:
  ServeProcess(const fs::path &config, const std::string &backend_url, const fs::path &log) {
    int out[2];
    if (::pipe(out) != 0)
      throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<std::string> env = {"GEMSTREAM_BASE_URL=" + backend_url, "GOOGLE_API_KEY=",
                                    "GEMINI_API_KEY=", "GEMSTREAM_DATA_DIR=" GEMSTREAM_SOURCE_DIR,
                                    "GEMSTREAM_DAILY_BUDGET_USD="};
    for (char **e = environ; *e; ++e) {
      const std::string entry = *e;
      if (entry.rfind("GEMSTREAM_", 0) != 0 && entry.rfind("GOOGLE_API_KEY=", 0) != 0 &&
          entry.rfind("GEMINI_API_KEY=", 0) != 0)
        env.push_back(entry);
    }
    std::vector<char *> envp;
    for (auto &e : env)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = {GEMSTREAM_CLI,   "serve",  "--config",
                                     config.string(), "--port", "0"};
    std::vector<char *> argv;
    for (auto &a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, GEMSTREAM_CLI, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      throw std::runtime_error("cannot start " GEMSTREAM_CLI);
    }
    // The base URL, once the gateway listens.
    std::string line;
    pollfd p{out[0], POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      if (::poll(&p, 1, 200) <= 0)
        continue;
      char buf[256];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0)
        break;
      line.append(buf, std::size_t(n));
    }
    ::close(out[0]);
    url_ = line.substr(0, line.find('\n'));
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  const std::string &url() const { return url_; }
  void kill_hard() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // SIGTERM; the exit status.
  int terminate() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

private:
  pid_t pid_ = -1;
  std::string url_;
};

HttpResult call(const std::string &method, const std::string &url, const std::string &body = {}) {
  HttpCall c;
  c.method = method;
  c.url = url;
  c.headers = {bearer(kAliceToken), "Content-Type: application/json"};
  if (!body.empty())
    c.body = body;
  return http(c);
}

int count(const LocalBackend &backend, const std::string &part) {
  int n = 0;
  for (const auto &r : backend.requests())
    if (r.path.find(part) != std::string::npos)
      ++n;
  return n;
}

TEST(GatewayProcess, KilledMidJobLosesNothingAndPaysOnce) {
  TempDir dir;
  LocalBackendOptions bo;
  bo.polls_until_done = 1000000;
  LocalBackend backend(bo);
  backend.start();
  const fs::path config = write_config(
      dir.path(), {{"queue", {{"lease_seconds", 1}, {"poll_interval_seconds", 0.05}}},
                   {"loop", {{"enabled", true}, {"formats", {"poster"}}, {"height", 180}}}});
  const fs::path log = dir.path() / "serve.log";

  std::string id, operation;
  {
    ServeProcess first(config, backend.base_url(), log);
    ASSERT_EQ(first.url().rfind("http://127.0.0.1:", 0), 0u) << slurp(log);
    const HttpResult accepted = call("POST", first.url() + "/api/v1/media/generate-video",
                                     R"({"description":"peaceful beach sunset","mood":"calm"})");
    ASSERT_EQ(accepted.status, 202) << accepted.body;
    id = accepted.json_body()["jobId"];
    const auto deadline = std::chrono::steady_clock::now() + seconds(30);
    while (count(backend, "/operations/") < 3 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(20));
    ASSERT_GE(count(backend, "/operations/"), 3) << slurp(log);
    first.kill_hard();
  }
  {
    const auto job = gateway::open_sqlite_job_store(dir.path() / "jobs.sqlite")->get(id);
    ASSERT_TRUE(job);
    EXPECT_EQ(job->state, gateway::JobState::Running);
    EXPECT_FALSE(job->lease_owner.empty()) << "a killed gateway hands nothing back";
    ASSERT_FALSE(job->operation.empty());
    operation = job->operation;
  }
  const int polls_before = count(backend, operation.substr(operation.rfind('/')));

  backend.set_polls_until_done(1);
  ServeProcess second(config, backend.base_url(), log);
  ASSERT_FALSE(second.url().empty()) << slurp(log);
  json done;
  const auto deadline = std::chrono::steady_clock::now() + seconds(90);
  while (std::chrono::steady_clock::now() < deadline) {
    done = call("GET", second.url() + "/api/v1/media/jobs/" + id).json_body();
    if (done.value("state", "") == "succeeded" || done.value("state", "") == "failed")
      break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_EQ(done.value("state", ""), "succeeded") << done.dump() << "\n" << slurp(log);
  EXPECT_EQ(done["attempts"], 2) << "the killed attempt counts";
  EXPECT_EQ(count(backend, ":predictLongRunning"), 1) << "resumed, not started again";
  EXPECT_GT(count(backend, operation.substr(operation.rfind('/'))), polls_before);

  const fs::path job_dir = dir.path() / "media" / "videos" / "alice" / id;
  EXPECT_EQ(done["urls"]["clip"], "/media/videos/alice/" + id + "/clip.mp4");
  EXPECT_EQ(done["posterUrl"], "/media/videos/alice/" + id + "/poster.jpg");
  EXPECT_FALSE(done["urls"].contains("loopMp4")) << "only the configured formats";
  const std::string poster = slurp(job_dir / "poster.jpg");
  ASSERT_GT(poster.size(), 100u);
  EXPECT_EQ(poster.substr(0, 2), "\xff\xd8") << "a JPEG";
  for (const auto &entry : fs::directory_iterator(job_dir))
    EXPECT_NE(entry.path().filename().string().front(), '.') << "no temporary file left";
  const HttpResult served = call("GET", second.url() + done["posterUrl"].get<std::string>());
  EXPECT_EQ(served.status, 200);
  EXPECT_EQ(served.body, poster);

  CostLedger ledger(dir.path() / "ledger.sqlite");
  const auto entries = ledger.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].request_id, operation);
  EXPECT_EQ(entries[0].user, "alice");
  EXPECT_EQ(second.terminate(), 0) << slurp(log);
}

TEST(GatewayProcess, RefusesABadConfigurationNamingTheField) {
  TempDir dir;
  const fs::path config = write_config(dir.path(), {{"queue", {{"concurrency", "two"}}}});
  const std::string command =
      std::string(GEMSTREAM_CLI) + " serve --config " + config.string() + " 2>&1";
  FILE *pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe))
    output += buf;
  const int status = ::pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(output.find("gateway.json: /queue/concurrency: expected an integer, got string"),
            std::string::npos)
      << output;
}

} // namespace
