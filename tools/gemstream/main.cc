// gemstream: the command-line front end of the engine and the elements.
#include "cli_args.h"
#include "commands.h"

#include <gemstream/error.h>
#include <gst/gst.h>

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
    "  backend [--port N]          run the local backend on 127.0.0.1 and print its base URL\n"
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

  struct Command {
    int (*run)(const std::vector<std::string> &);
    const char *usage;
  };
  namespace cli = gemstream::cli;
  const std::map<std::string, Command> commands = {
      {"demo", {cli::cmd_demo, cli::kDemoUsage}},
      {"image", {cli::cmd_image, cli::kImageUsage}},
      {"video", {cli::cmd_video, cli::kVideoUsage}},
      {"backend", {cli::cmd_backend, cli::kBackendUsage}},
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
