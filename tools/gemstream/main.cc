// gemstream: the command-line front end of the engine and the elements.
#include "cli_args.h"
#include "commands.h"

#include <gemstream/error.h>
#include <gst/gst.h>

extern "C" {
#include <libavutil/log.h>
}

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace {

const char *kUsage =
    "usage: gemstream COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  demo [--out DIR]            generate a card cover and a background clip (the quick start)\n"
    "  image \"MOTIF\" [options]     generate a card cover image (gemstream image --help)\n"
    "  video \"DESCRIPTION\" [opts]  generate an 8 s background video with Veo\n"
    "  loop IN --out DIR           seamless loop of a clip: MP4, WebM and poster outputs\n"
    "  background \"DESC\" --out DIR a Veo clip and its loop outputs in one command\n"
    "  backend [--port N]          run the local backend on 127.0.0.1 and print its base URL\n"
    "  run FILE [NAME=VALUE ...]   run a pipeline file (a path or a name from `pipelines`)\n"
    "  inspect FILE [NAME=VALUE]   print the launch line a pipeline file resolves to\n"
    "  pipelines                   list the installed pipeline files and their parameters\n"
    "  ask \"QUESTION\" [--search]   ask a model; --search answers with citations and sources\n"
    "  agent \"MESSAGE\"...         a typed Live conversation that may make images, videos, searches\n"
    "  analyze FILE \"QUESTION\"     ask a model about a video (inline, upload or --frames N)\n"
    "  costs [--user U] [--day D]  spending per day, user, kind and model; daily budgets\n"
    "  serve --config FILE         the media gateway: REST, WebSocket notifications, job queue\n"
    "\n"
    "Without GOOGLE_API_KEY (or GEMINI_API_KEY) and GEMSTREAM_BASE_URL, requests go to an\n"
    "in-process local backend that speaks the Gemini API on loopback.\n";

// From the build tree, find the plugin next to this binary's build; installed, GStreamer's
// own plugin path has it.
void add_build_plugin_path() {
  std::error_code ec;
  if (!std::filesystem::is_directory(GEMSTREAM_PLUGIN_BUILD_DIR, ec))
    return;
  std::string path = GEMSTREAM_PLUGIN_BUILD_DIR;
  if (const char *old = std::getenv("GST_PLUGIN_PATH"); old && *old)
    path += std::string(":") + old;
  setenv("GST_PLUGIN_PATH", path.c_str(), 1);
}

GST_DEBUG_CATEGORY_STATIC(libav_log);

// libavformat and libavcodec print their diagnostics ("moov atom not found", "Packet corrupt")
// to stderr, where they would run into this tool's own messages, which already say what is
// wrong with an input, and through --quiet. Send them to GStreamer's debug log instead, as
// gst-libav does once it is loaded: GST_DEBUG=gemstream-libav:4 shows them.
void libav_to_gst_debug(void *avcl, int level, const char *fmt, va_list vl) {
  GstDebugLevel gst_level = level <= AV_LOG_ERROR     ? GST_LEVEL_ERROR
                            : level <= AV_LOG_WARNING ? GST_LEVEL_WARNING
                            : level <= AV_LOG_INFO    ? GST_LEVEL_INFO
                            : level <= AV_LOG_VERBOSE ? GST_LEVEL_DEBUG
                            : level <= AV_LOG_DEBUG   ? GST_LEVEL_LOG
                                                      : GST_LEVEL_TRACE;
  if (gst_level > gst_debug_category_get_threshold(libav_log))
    return;
  char line[1024];
  int print_prefix = 1;
  av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &print_prefix);
  std::string text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  if (!text.empty())
    GST_CAT_LEVEL_LOG(libav_log, gst_level, nullptr, "%s", text.c_str());
}

} // namespace

int main(int argc, char **argv) {
  // Results go to stdout, progress to stderr: keep their order on a terminal and in logs.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::printf("gemstream %s\n", VERSION);
    return 0;
  }
  add_build_plugin_path();
  gst_init(nullptr, nullptr);
  GST_DEBUG_CATEGORY_INIT(libav_log, "gemstream-libav", 0, "libavformat/libavcodec messages");
  av_log_set_callback(libav_to_gst_debug);

  struct Command {
    int (*run)(const std::vector<std::string> &);
    const char *usage;
  };
  namespace cli = gemstream::cli;
  const std::map<std::string, Command> commands = {
      {"demo", {cli::cmd_demo, cli::kDemoUsage}},
      {"loop", {cli::cmd_loop, cli::kLoopUsage}},
      {"background", {cli::cmd_background, cli::kBackgroundUsage}},
      {"image", {cli::cmd_image, cli::kImageUsage}},
      {"video", {cli::cmd_video, cli::kVideoUsage}},
      {"backend", {cli::cmd_backend, cli::kBackendUsage}},
      {"run", {cli::cmd_run, cli::kRunUsage}},
      {"inspect", {cli::cmd_inspect, cli::kInspectUsage}},
      {"pipelines", {cli::cmd_pipelines, cli::kPipelinesUsage}},
      {"ask", {cli::cmd_ask, cli::kAskUsage}},
      {"agent", {cli::cmd_agent, cli::kAgentUsage}},
      {"analyze", {cli::cmd_analyze, cli::kAnalyzeUsage}},
      {"costs", {cli::cmd_costs, cli::kCostsUsage}},
      {"serve", {cli::cmd_serve, cli::kServeUsage}},
  };
  auto it = commands.find(args[0]);
  if (it == commands.end()) {
    std::fprintf(stderr, "gemstream: unknown command '%s'\n\n%s", args[0].c_str(), kUsage);
    return 2;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (std::find(rest.begin(), rest.end(), "--help") != rest.end() ||
      std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
    std::printf("%s\n", it->second.usage);
    return 0;
  }
  try {
    return it->second.run(rest);
  } catch (const gemstream::cli::UsageError &e) {
    std::fprintf(stderr, "gemstream %s: %s\n", args[0].c_str(), e.what());
    return 2;
  } catch (const gemstream::Error &e) {
    std::fprintf(stderr, "gemstream %s: %s\n", args[0].c_str(), e.what());
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "gemstream %s: %s\n", args[0].c_str(), e.what());
    return 1;
  }
}
