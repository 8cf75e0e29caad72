// gemstream serve: the media gateway (gemstream/gateway.h) as a server process. Video jobs get
// their loop outputs (loop.mp4, loop.webm, poster.jpg next to clip.mp4) from make_loop()
// (gemstream/loop.h), as `gemstream loop` does.
#include "cli_args.h"
#include "commands.h"

#include <gemstream/error.h>
#include <gemstream/gateway.h>
#include <gemstream/loop.h>

#include <semaphore.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

namespace gemstream::cli {
namespace {

sem_t g_stop;
void on_signal(int) {
  sem_post(&g_stop);
}

// The post-processing step of a video job: the seamless loop outputs of its clip.
std::vector<gateway::PostProcessOutput>
make_loop_outputs(const gateway::PostProcessRequest &request, const CancelToken &cancel,
                  const std::function<void(double)> &progress) {
  LoopRequest loop;
  loop.input = request.clip;
  loop.out_dir = request.out_dir;
  std::string formats;
  for (const auto &f : request.settings.formats)
    formats += (formats.empty() ? "" : ",") + f;
  loop.formats = parse_loop_formats(formats);
  loop.crossfade = std::chrono::nanoseconds(std::llround(request.settings.crossfade_seconds * 1e9));
  loop.height = request.settings.height;
  const LoopResult result =
      make_loop(loop, cancel, [&progress](double percent) { progress(percent / 100.0); });
  std::vector<gateway::PostProcessOutput> outputs;
  for (const auto &[format, file] : result.files) {
    const char *name = format == LoopFormat::Mp4    ? "loopMp4"
                       : format == LoopFormat::Webm ? "loopWebm"
                                                    : "poster";
    outputs.push_back({name, file});
  }
  return outputs;
}

} // namespace

const char *const kServeUsage =
    "usage: gemstream serve --config FILE [--port N] [--bind ADDRESS] [--media-dir DIR]\n"
    "         [--db FILE] [--ledger FILE] [--quiet]\n"
    "       gemstream serve --hash-token TOKEN|-\n"
    "Runs the media gateway: REST for covers, video jobs, video analysis and costs, WebSocket\n"
    "notifications, generated media under /media/. FILE is a gateway configuration (see\n"
    "config/gateway.example.json); the options override its values. Prints the base URL on\n"
    "stdout once listening (--port 0 picks a free port). SIGINT/SIGTERM stop it: running jobs\n"
    "are handed back to the job store and resume at the next start. With \"store\": {\"redis\":\n"
    "URL} in FILE the job queue is on that Redis server, shared by every gateway configured\n"
    "with it (--db then does not apply). --hash-token prints the token_sha256 to store in the\n"
    "configuration instead of the token (- reads it from stdin).";

int cmd_serve(const std::vector<std::string> &argv) {
  Args args(argv, {"config", "port", "bind", "media-dir", "db", "ledger", "hash-token"}, {"quiet"});
  if (!args.positionals().empty())
    throw UsageError(kServeUsage);
  if (auto token = args.get("hash-token")) {
    // "-": read it from stdin, keeping it out of the shell history and the process list.
    if (*token == "-") {
      token->clear();
      for (int c; (c = std::getchar()) != EOF && c != '\n';)
        *token += static_cast<char>(c);
    }
    if (token->empty())
      throw UsageError("--hash-token needs a token (or - to read it from stdin)");
    std::printf("%s\n", gateway::token_sha256_hex(*token).c_str());
    return 0;
  }
  const auto config_file = args.get("config");
  if (!config_file)
    throw UsageError("--config FILE is required (start from config/gateway.example.json)\n\n" +
                     std::string(kServeUsage));
  gateway::GatewayConfig config = gateway::GatewayConfig::load(*config_file);
  if (args.get("port"))
    config.port = static_cast<std::uint16_t>(args.integer("port", 0, 0, 65535));
  config.listen_address = args.get_or("bind", config.listen_address);
  if (auto dir = args.get("media-dir"))
    config.media_dir = *dir;
  if (auto db = args.get("db"))
    config.database = *db;
  if (auto ledger = args.get("ledger"))
    config.ledger = *ledger;

  gateway::GatewayOptions options;
  options.store = gateway::open_job_store(config);
  options.post_process = make_loop_outputs;
  options.access_log = !args.has_flag("quiet");
  gateway::Gateway gateway(std::move(config), std::move(options));
  gateway.start();
  std::printf("%s\n", gateway.base_url().c_str());
  std::fflush(stdout);
  sem_init(&g_stop, 0, 0);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  while (sem_wait(&g_stop) != 0) {
  }
  std::fprintf(stderr, "gemstream serve: stopping; running jobs are handed back to the queue\n");
  gateway.stop();
  return 0;
}

} // namespace gemstream::cli
