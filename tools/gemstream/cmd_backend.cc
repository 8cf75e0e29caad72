// gemstream backend: the local backend as a standalone loopback server.
#include "cli_args.h"
#include "commands.h"

#include <gemstream/local_backend.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <semaphore.h>

namespace gemstream::cli {
namespace {
sem_t g_stop;
void on_signal(int) { sem_post(&g_stop); }
} // namespace

const char *const kBackendUsage =
    "usage: gemstream backend [--port N] [--polls N] [--bind ADDRESS] [--require-key]\n"
    "Runs the local backend and prints its base URL; --require-key checks x-goog-api-key\n"
    "against $GEMSTREAM_BACKEND_KEY.";

int cmd_backend(const std::vector<std::string> &argv) {
  Args args(argv, {"port", "polls", "bind"}, {"require-key"});
  if (!args.positionals().empty())
    throw UsageError(kBackendUsage);
  LocalBackendOptions options;
  options.port = static_cast<std::uint16_t>(args.integer("port", 0, 0, 65535));
  options.polls_until_done =
      static_cast<int>(args.integer("polls", options.polls_until_done, 0, 1000000));
  options.bind_address = args.get_or("bind", options.bind_address);
  if (args.has_flag("require-key")) {
    const char *key = std::getenv("GEMSTREAM_BACKEND_KEY");
    if (!key || !*key)
      throw UsageError("--require-key needs the expected key in GEMSTREAM_BACKEND_KEY");
    options.required_api_key = key;
  }
  LocalBackend backend(options);
  backend.start();
  std::printf("%s\n", backend.base_url().c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "local backend listening; use GEMSTREAM_BASE_URL=%s. Ctrl-C stops.\n",
               backend.base_url().c_str());
  sem_init(&g_stop, 0, 0);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  while (sem_wait(&g_stop) != 0) {
  }
  backend.stop();
  return 0;
}

} // namespace gemstream::cli
