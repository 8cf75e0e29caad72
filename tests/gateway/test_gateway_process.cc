// `gemstream serve` as a process: killed with SIGKILL while a job polls its Veo operation, a new
// gateway on the same database finishes the job once the lease runs out, without a second
// predictLongRunning, and makes the loop outputs with the background-loop pipeline file. Two
// gateways on one Redis job store share the queue, notify the owner's sockets on either of them
// of jobs the other finished, and survive one of them being killed.
#include "gateway_test_util.h"
#include "redis_test_util.h"

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

std::uint16_t port_of(const std::string &base_url) {
  return static_cast<std::uint16_t>(std::stoi(base_url.substr(base_url.rfind(':') + 1)));
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

// The worker id a `gemstream serve` process logged when it started listening.
std::string worker_of(const fs::path &log) {
  const std::string text = slurp(log);
  const std::string marker = "(job worker ";
  const auto at = text.find(marker);
  if (at == std::string::npos)
    return {};
  const auto start = at + marker.size();
  return text.substr(start, text.find(')', start) - start);
}

bool logged(const fs::path &log, const std::string &text) {
  return slurp(log).find(text) != std::string::npos;
}

template <typename Predicate> bool wait_until(Predicate done, seconds timeout = seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

TEST(GatewayProcess, TwoGatewaysShareARedisQueueAndSurviveOneBeingKilled) {
  const auto redis_binary = find_redis_server();
  if (!redis_binary)
    GTEST_SKIP() << "redis-server is not installed (tools/setup.sh installs it)";
  RedisServer redis(*redis_binary);
  TempDir dir;
  LocalBackendOptions bo;
  bo.polls_until_done = 1000000;
  LocalBackend backend(bo);
  backend.start();
  // One media directory and ledger (shared storage in a real deployment), one Redis queue. The
  // concurrency limit counts the jobs of every worker: A stops claiming at 2, B at 4.
  const json store = {{"redis", redis.url(1)}, {"prefix", "gw-test:"}};
  const fs::path config_a = write_config(
      dir.path(),
      {{"store", store},
       {"queue", {{"lease_seconds", 1}, {"concurrency", 2}, {"jobs_per_minute", 100}}}});
  const fs::path config_b = dir.path() / "gateway-b.json";
  {
    json b = json::parse(slurp(config_a));
    b["queue"]["concurrency"] = 4;
    b.erase("database");
    write_file(config_b, b.dump(2));
  }
  auto store_view = gateway::open_redis_job_store(redis.url(1), "gw-test:");
  const fs::path log_a = dir.path() / "a.log", log_b = dir.path() / "b.log";
  auto submit = [&](const std::string &base_url, int n) {
    const HttpResult accepted =
        call("POST", base_url + "/api/v1/media/generate-video",
             R"({"description":"lighthouse at dusk, take )" + std::to_string(n) + R"("})");
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    return accepted.status == 202 ? accepted.json_body()["jobId"].get<std::string>()
                                  : std::string();
  };
  auto holder = [&](const std::string &id) {
    const auto job = store_view->get(id);
    return job ? job->lease_owner : std::string();
  };

  auto a = std::make_unique<ServeProcess>(config_a, backend.base_url(), log_a);
  ASSERT_FALSE(a->url().empty()) << slurp(log_a);
  const std::string worker_a = worker_of(log_a);
  ASSERT_FALSE(worker_a.empty()) << slurp(log_a);
  // Alice listens on A only; A subscribed to the other gateways' notifications.
  WsClient alice;
  ASSERT_EQ(alice.connect(port_of(a->url()), "/api/v1/notifications", {bearer(kAliceToken)}), 101);
  ASSERT_TRUE(alice.next(seconds(5))); // ready
  ASSERT_TRUE(wait_until([&] { return logged(log_a, "notifications: subscribed to gw-test:"); }))
      << slurp(log_a);

  // A alone takes the first two jobs and reaches its limit; B, started next, takes the two
  // that follow although they are submitted to A.
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i)
    ids.push_back(submit(a->url(), i));
  ASSERT_TRUE(wait_until([&] { return count(backend, ":predictLongRunning") == 2; }))
      << slurp(log_a);
  auto b = std::make_unique<ServeProcess>(config_b, backend.base_url(), log_b);
  ASSERT_FALSE(b->url().empty()) << slurp(log_b);
  const std::string worker_b = worker_of(log_b);
  ASSERT_FALSE(worker_b.empty());
  ASSERT_NE(worker_a, worker_b);
  for (int i = 2; i < 4; ++i)
    ids.push_back(submit(a->url(), i));
  ASSERT_TRUE(wait_until([&] { return count(backend, ":predictLongRunning") == 4; }))
      << slurp(log_a) << slurp(log_b);
  EXPECT_EQ(holder(ids[0]), worker_a);
  EXPECT_EQ(holder(ids[1]), worker_a);
  EXPECT_EQ(holder(ids[2]), worker_b);
  EXPECT_EQ(holder(ids[3]), worker_b);

  backend.set_polls_until_done(1);
  for (const auto &id : ids)
    ASSERT_TRUE(wait_until([&] {
      return store_view->get(id)->state == gateway::JobState::Succeeded;
    })) << id
        << "\n"
        << slurp(log_a) << slurp(log_b);
  EXPECT_TRUE(logged(log_a, "job " + ids[0] + ": done"));
  EXPECT_TRUE(logged(log_a, "job " + ids[1] + ": done"));
  EXPECT_TRUE(logged(log_b, "job " + ids[2] + ": done"));
  EXPECT_TRUE(logged(log_b, "job " + ids[3] + ": done"));
  // Alice's socket on A heard of every job once, the two B finished included.
  std::map<std::string, int> completions;
  for (std::size_t i = 0; i < 4; ++i) {
    const auto event = alice.next_event(seconds(10));
    ASSERT_TRUE(event) << "notification " << i << " missing\n" << slurp(log_a) << slurp(log_b);
    EXPECT_EQ((*event)["type"], "video_generation_complete") << event->dump();
    ++completions[event->value("jobId", "")];
  }
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_EQ(completions[ids[i]], 1) << ids[i];
  const auto extra = alice.next_event(milliseconds(500));
  EXPECT_FALSE(extra) << "delivered twice: " << extra->dump();

  // A job B finished, read through A: both see one queue.
  const json seen = call("GET", a->url() + "/api/v1/media/jobs/" + ids[3]).json_body();
  EXPECT_EQ(seen.value("state", ""), "succeeded") << seen.dump();

  // Two more jobs start; the gateway holding the first is killed mid-job.
  backend.set_polls_until_done(1000000);
  for (int i = 4; i < 6; ++i)
    ids.push_back(submit(a->url(), i));
  ASSERT_TRUE(wait_until([&] { return count(backend, ":predictLongRunning") == 6; }))
      << slurp(log_a) << slurp(log_b);
  ASSERT_TRUE(wait_until([&] { return !store_view->get(ids[4])->operation.empty(); }));
  const bool kill_a = holder(ids[4]) == worker_a;
  ASSERT_TRUE(kill_a || holder(ids[4]) == worker_b) << holder(ids[4]);
  std::unique_ptr<ServeProcess> &victim = kill_a ? a : b;
  std::unique_ptr<ServeProcess> &survivor = kill_a ? b : a;
  const fs::path survivor_log = kill_a ? log_b : log_a;
  victim->kill_hard();
  victim.reset();

  backend.set_polls_until_done(1);
  json done;
  for (std::size_t i = 4; i < ids.size(); ++i) {
    ASSERT_TRUE(wait_until(
        [&] {
          done = call("GET", survivor->url() + "/api/v1/media/jobs/" + ids[i]).json_body();
          return done.value("state", "") == "succeeded";
        },
        seconds(60)))
        << done.dump() << "\n"
        << slurp(survivor_log);
  }
  EXPECT_TRUE(logged(survivor_log, "job " + ids[4] + ": resuming")) << slurp(survivor_log);
  EXPECT_EQ(store_view->get(ids[4])->attempts, 2) << "the killed attempt counts";
  EXPECT_EQ(count(backend, ":predictLongRunning"), 6)
      << "one operation per job, none started twice";
  for (const auto &id : ids) {
    const auto job = store_view->get(id);
    EXPECT_EQ(job->state, gateway::JobState::Succeeded) << id;
    const MediaInfo clip = probe_media(dir.path() / "media" / "videos" / "alice" / id / "clip.mp4");
    EXPECT_NE(clip.video(), nullptr) << id;
  }
  CostLedger ledger(dir.path() / "ledger.sqlite");
  EXPECT_EQ(ledger.entries().size(), ids.size()) << "each job charged once";
  EXPECT_EQ(store_view->unfinished_count("alice"), 0u);
  EXPECT_EQ(survivor->terminate(), 0) << slurp(survivor_log);
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
