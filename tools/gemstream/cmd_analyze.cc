// gemstream analyze: ask a Gemini model about a video file (inline, Files API upload, or N
// frames sampled by framesampler through the video-analysis pipeline file).
#include "cli_args.h"
#include "commands.h"
#include "pipeline_runner.h"
#include "spending.h"

#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/genai.h>
#include <gemstream/media_probe.h>
#include <gemstream/pipeline.h>
#include <gemstream/video_analysis.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

namespace gemstream::cli {
namespace {

// The pipeline file's frame-interval range.
constexpr std::int64_t kMinFrameIntervalUs = 1000;
constexpr std::int64_t kMaxFrameIntervalUs = 30ll * 60 * 1000 * 1000;

void print_media(const MediaInfo &info, const std::string &how) {
  if (const MediaStreamInfo *v = info.video())
    std::fprintf(stderr, "video: %.1f s, %dx%d %s, %.1f MB; %s\n", info.duration_s, v->width,
                 v->height, v->codec.c_str(), static_cast<double>(info.size_bytes) / 1e6,
                 how.c_str());
}

// --frames N: the video-analysis pipeline file (decode, framesampler, jpegenc,
// geminianalyzesink), with framesampler's rate set so N frames come out evenly spaced over the
// probed video, duplicates kept. The sink records the cost in the ledger itself.
int analyze_frames(const std::string &file, const std::string &question, int frames,
                   const AnalysisOptions &options) {
  const MediaInfo info = probe_media(file, options.limits);
  const MediaStreamInfo *video = info.video();
  // The video stream's own span (up to the end of its last frame) puts the last of the N
  // framesampler slots before its last frame and a slot N+1 after it.
  const double span_s = video && video->duration_s > 0 ? video->duration_s : info.duration_s;
  const std::int64_t interval_us =
      std::clamp(static_cast<std::int64_t>(std::floor(span_s * 1e6 / frames)), kMinFrameIntervalUs,
                 kMaxFrameIntervalUs);
  const std::map<std::string, std::string> values = {
      {"input", file},
      {"question", question},
      {"frames", std::to_string(frames)},
      {"frame-interval", std::to_string(interval_us) + "us"},
      {"model", options.model_id},
      {"user", options.user}};
  std::fprintf(stderr, "sampling %d frames (one every %.3f s) and asking %s\n", frames,
               static_cast<double>(interval_us) / 1e6, options.model_id.c_str());

  PipelineRunner runner(Pipeline::load("video-analysis", values));
  runner.quiet = true;
  std::optional<nlohmann::json> answer;
  runner.on_event = [&answer](const Event &event) {
    if (const auto *e = std::get_if<events::Element>(&event)) {
      if (e->name == "gemstream-analysis")
        answer = nlohmann::json::parse(e->fields, nullptr, false);
    } else if (const auto *w = std::get_if<events::Warning>(&event)) {
      std::fprintf(stderr, "warning: %s: %s\n", w->source.c_str(), w->message.c_str());
    }
  };
  const RunOutcome outcome = runner.run();
  if (!outcome.error.empty() || !outcome.eos)
    return report_outcome(outcome);
  if (!answer || !answer->is_object()) {
    if (outcome.interrupted)
      return 130;
    throw Error(ErrorKind::Protocol, "the analysis pipeline ended without an answer");
  }

  const auto sent = answer->value("frames", 0u);
  print_media(info, "sent as " + std::to_string(sent) + " JPEG frame" + (sent == 1 ? "" : "s") +
                        " sampled by framesampler");
  std::printf("%s\n", answer->value("text", std::string()).c_str());
  std::fprintf(stderr, "model: %s, cost: %s\n", answer->value("model", options.model_id).c_str(),
               format_usd(answer->value("usd", 0.0)).c_str());
  if (outcome.interrupted) {
    // Ctrl-C stops with EOS: the sink answered about the frames sampled until then.
    std::fprintf(stderr, "interrupted: the answer covers only the frames sampled before Ctrl-C\n");
    return 130;
  }
  return 0;
}

} // namespace

const char *const kAnalyzeUsage =
    "usage: gemstream analyze FILE \"QUESTION\" [--frames N] [--model gemini-2.5-flash]\n"
    "         [--fps F] [--inline-limit 20MB] [--max-size 2GB] [--keep-upload] [--user NAME]\n"
    "Asks a Gemini model about a video (mp4, mov, webm, avi, mpeg), validated first. Up to\n"
    "--inline-limit (the whole request) it is sent inline, larger files are uploaded with the\n"
    "Files API; --frames N sends N evenly spaced frames as JPEG images instead (cheaper),\n"
    "sampled by framesampler through the video-analysis pipeline file.\n"
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
  const int frames = static_cast<int>(args.integer("frames", 0, 1, 3600)); // 0: not given
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
  if (frames > 0) {
    if (options.fps)
      throw UsageError("--fps applies to a video sent whole; with --frames the frames are the "
                       "samples");
    return analyze_frames(file, question, frames, options);
  }

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

  std::string how = "sent inline";
  if (result.method == AnalysisMethod::Upload)
    how = "uploaded as " + result.file_name +
          (options.keep_upload ? " (kept)" : " (deleted after use)");
  print_media(result.media, how);
  std::printf("%s\n", result.text.c_str());
  std::fprintf(stderr, "model: %s, cost: %s\n", options.model_id.c_str(),
               format_usd(result.cost.usd()).c_str());
  return 0;
}

} // namespace gemstream::cli
