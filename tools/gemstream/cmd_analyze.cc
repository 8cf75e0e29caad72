// gemstream analyze: ask a Gemini model about a video file (inline, Files API upload, or N
// sampled frames).
#include "cli_args.h"
#include "commands.h"
#include "spending.h"

#include <gemstream/config.h>
#include <gemstream/genai.h>
#include <gemstream/video_analysis.h>

#include <unistd.h>

#include <cstdio>

namespace gemstream::cli {

const char *const kAnalyzeUsage =
    "usage: gemstream analyze FILE \"QUESTION\" [--frames N] [--model gemini-2.5-flash]\n"
    "         [--fps F] [--inline-limit 20MB] [--max-size 2GB] [--keep-upload] [--user NAME]\n"
    "Asks a Gemini model about a video (mp4, mov, webm, avi, mpeg), validated first. Up to\n"
    "--inline-limit (the whole request) it is sent inline, larger files are uploaded with the\n"
    "Files API; --frames N sends N evenly spaced frames as JPEG images instead (cheaper).\n"
    "--fps sets the sampling rate the model uses (1 frame per second by default).";

int cmd_analyze(const std::vector<std::string> &argv) {
  Args args(argv, {"frames", "model", "fps", "inline-limit", "max-size", "user"}, {"keep-upload"});
  if (args.positionals().size() != 2 || args.positionals()[1].empty())
    throw UsageError(kAnalyzeUsage);
  const std::string file = args.positionals()[0];
  const std::string question = args.positionals()[1];
  const MediaConfig media = MediaConfig::load_default();
  const Spending spending = Spending::open(args);

  AnalysisOptions options;
  options.model_id = args.get_or("model", media.pricing.video_analysis.model);
  options.user = spending.user;
  options.keep_upload = args.has_flag("keep-upload");
  if (auto frames = args.get("frames")) {
    const double n = args.number("frames", 0);
    if (n < 1 || n > 3600 || n != static_cast<int>(n))
      throw UsageError("--frames expects a whole number from 1 to 3600, got \"" + *frames + "\"");
    options.frames = static_cast<int>(n);
  }
  if (args.get("fps")) {
    const double fps = args.number("fps", 1);
    if (fps <= 0 || fps > 24)
      throw UsageError("--fps expects a rate above 0 and at most 24");
    options.fps = fps;
  }
  if (auto limit = args.get("inline-limit"))
    options.inline_limit_bytes = parse_size("inline-limit", *limit);
  if (auto max = args.get("max-size"))
    options.limits.max_bytes = parse_size("max-size", *max);

  const bool tty = isatty(STDERR_FILENO);
  int last_percent = -1;
  auto progress = [&](const AnalysisProgress &p) {
    if (p.phase == "upload" && p.total > 0) {
      const int percent = static_cast<int>(100 * p.done / p.total);
      if (percent == last_percent)
        return;
      last_percent = percent;
      std::fprintf(stderr,
                   tty ? "\ruploading: %3d%% (%llu of %llu bytes)"
                       : "uploading: %d%% (%llu of %llu bytes)\n",
                   percent, static_cast<unsigned long long>(p.done),
                   static_cast<unsigned long long>(p.total));
      if (tty && p.done == p.total)
        std::fputc('\n', stderr);
      return;
    }
    std::fprintf(stderr, "%s\n", p.text.c_str());
  };

  VideoAnalyzer analyzer(resolve_endpoint(), media, spending.ledger);
  const AnalysisResult result = analyzer.analyze(file, question, options, CancelToken(), progress);

  const MediaInfo &info = result.media;
  std::string how = "sent inline";
  if (result.method == AnalysisMethod::Upload)
    how = "uploaded as " + result.file_name +
          (options.keep_upload ? " (kept)" : " (deleted after use)");
  else if (result.method == AnalysisMethod::Frames)
    how = "sent as " + std::to_string(options.frames) + " JPEG frames";
  if (const MediaStreamInfo *v = info.video())
    std::fprintf(stderr, "video: %.1f s, %dx%d %s, %.1f MB; %s\n", info.duration_s, v->width,
                 v->height, v->codec.c_str(), static_cast<double>(info.size_bytes) / 1e6,
                 how.c_str());
  std::printf("%s\n", result.text.c_str());
  std::fprintf(stderr, "model: %s, cost: %s\n", options.model_id.c_str(),
               format_usd(result.cost.usd()).c_str());
  return 0;
}

} // namespace gemstream::cli
