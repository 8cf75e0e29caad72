// gemstream image / video / demo: the cover-image and background-video pipeline files, run
// through the embedding API (the same code path an application uses); loop / background:
// gemstream::make_loop(), the loop job an application or the gateway runs.
#include "cli_args.h"
#include "commands.h"
#include "pipeline_runner.h"
#include "spending.h"
#include "stop_signals.h"

#include <gemstream/cancel.h>
#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/loop.h>
#include <gemstream/media_probe.h>
#include <gemstream/output_files.h>
#include <gemstream/pipeline.h>
#include <gst/pbutils/pbutils.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <thread>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace gemstream::cli {
namespace {

namespace fs = std::filesystem;

// Loads one of the project's pipeline files. A value the file rejects is a usage error, named
// after the command-line option that carries it ("--style: ...").
std::unique_ptr<Pipeline> load_pipeline(const std::string &name,
                                        const std::map<std::string, std::string> &values) {
  const PipelineFile file = PipelineFile::load(PipelineFile::find(name));
  try {
    file.validate(values);
  } catch (const Error &e) {
    const std::string &text = e.message();
    const std::string marker = ": parameter '";
    const auto at = text.find(marker);
    if (e.kind() != ErrorKind::InvalidArgument || at == std::string::npos)
      throw;
    const auto name_end = text.find('\'', at + marker.size());
    throw UsageError("--" + text.substr(at + marker.size(), name_end - at - marker.size()) +
                     text.substr(name_end + 1));
  }
  return Pipeline::from_file(file, values);
}

// The output file of an image or video run, written under a temporary name and put in place
// only when the run succeeds (OutputFiles).
fs::path temporary_output(OutputFiles &files, const fs::path &out) {
  if (out.has_parent_path())
    fs::create_directories(out.parent_path());
  return files.add(out);
}

bool have_api_key() { return !EnvSettings::from_environment().api_key.empty(); }

// The config key of a --model value ("nano-banana" -> "nano_banana"), else the fallback.
std::string model_key(const std::string &option, const std::string &fallback) {
  if (option.empty() || option == "default")
    return fallback;
  std::string key = option;
  std::replace(key.begin(), key.end(), '-', '_');
  return key;
}

// Every gemstream-cost message of the run becomes a ledger row.
void record_costs(PipelineRunner &runner, const Spending &spending, std::string what) {
  runner.on_event = [&spending, what = std::move(what)](const Event &event) {
    const auto *c = std::get_if<events::Cost>(&event);
    if (!c)
      return;
    CostEntry e;
    e.kind = cost_kind_from_string(c->kind).value_or(CostKind::Image);
    e.model = c->model;
    e.units = c->units;
    e.unit = e.kind == CostKind::Video ? "second" : "image";
    e.usd_nanos = usd_to_nanos(c->usd);
    e.note = what;
    spending.record(e);
  };
}

struct ImageJob {
  std::string motif;
  std::string style, palette, model, aspect_ratio;
  bool raw = false;
  fs::path out;
};

int run_image(const ImageJob &job, const Spending &spending, double *usd) {
  const MediaConfig config = MediaConfig::load_default();
  const std::string env_model = EnvSettings::from_environment().image_model;
  const std::string key = model_key(job.model, env_model.empty() ? "nano_banana" : env_model);
  spending.check(price_images(config, key).usd(), "this image");
  OutputFiles output;
  std::map<std::string, std::string> values = {
      {"prompt", job.motif}, {"output", temporary_output(output, job.out).string()}};
  if (job.raw)
    values["use-template"] = "false";
  if (!job.style.empty())
    values["style"] = job.style;
  if (!job.model.empty())
    values["model"] = job.model;
  if (!job.palette.empty())
    values["palette"] = job.palette;
  if (!job.aspect_ratio.empty())
    values["aspect-ratio"] = job.aspect_ratio;
  PipelineRunner runner(load_pipeline("cover-image", values));
  record_costs(runner, spending, "image \"" + job.motif + "\" -> " + job.out.string());

  RunOutcome outcome = runner.run();
  if (usd)
    *usd += outcome.usd;
  // An interrupted run also ends in EOS, but its output is incomplete.
  if (outcome.eos && outcome.error.empty() && !outcome.interrupted) {
    output.commit(true);
    std::printf("image: %s\n", job.out.c_str());
  }
  return outcome.interrupted && outcome.error.empty() ? 130 : report_outcome(outcome);
}

struct VideoJob {
  std::string description;
  std::string mood, model, aspect_ratio, resolution, image, negative_prompt, operation;
  double poll_interval_s = 0;  // 0: 10 s against Google, 1 s against the local backend
  double timeout_s = 600;
  bool raw = false;
  fs::path out;
};

// Seconds as a duration value ("1.500s").
std::string seconds(double s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3fs", s);
  return buf;
}

int run_video(const VideoJob &job, const Spending &spending, double *usd) {
  if (job.operation.empty()) {  // a resumed operation was paid for when it started
    const MediaConfig config = MediaConfig::load_default();
    const std::string env_model = EnvSettings::from_environment().video_model;
    const VideoModel &model = config.video_model(
        model_key(job.model, env_model.empty() ? config.defaults.background_video : env_model));
    spending.check(price_video(config, model.key, model.duration_seconds).usd(), "this video");
  }
  OutputFiles output;
  std::map<std::string, std::string> values = {
      {"output", temporary_output(output, job.out).string()}};
  if (!job.description.empty())
    values["prompt"] = job.description;
  if (job.raw)
    values["use-template"] = "false";
  if (!job.mood.empty())
    values["mood"] = job.mood;
  if (!job.model.empty())
    values["model"] = job.model;
  if (!job.aspect_ratio.empty())
    values["aspect-ratio"] = job.aspect_ratio;
  if (!job.resolution.empty())
    values["resolution"] = job.resolution;
  if (!job.image.empty())
    values["image"] = job.image;
  if (!job.negative_prompt.empty())
    values["negative-prompt"] = job.negative_prompt;
  if (!job.operation.empty())
    values["operation"] = job.operation;
  values["poll-interval"] =
      seconds(job.poll_interval_s > 0 ? job.poll_interval_s : (have_api_key() ? 10.0 : 1.0));
  values["timeout"] = seconds(std::max(1.0, job.timeout_s));
  PipelineRunner runner(load_pipeline("background-video", values));
  record_costs(runner, spending, "video \"" + job.description + "\" -> " + job.out.string());

  RunOutcome outcome = runner.run();
  if (usd)
    *usd += outcome.usd;
  if (outcome.eos && outcome.error.empty() && !outcome.interrupted) {
    output.commit(true);
    std::printf("video: %s\n", job.out.c_str());
  } else if (!outcome.error.empty() && !outcome.operation.empty() && job.operation.empty()) {
    std::fprintf(stderr, "resume with: gemstream video --operation %s -o %s\n",
                 outcome.operation.c_str(), job.out.c_str());
  }
  return outcome.interrupted && outcome.error.empty() ? 130 : report_outcome(outcome);
}

// One line describing a media file, read back with GstDiscoverer, to show what was made.
std::string describe(const fs::path &file) {
  GError *err = nullptr;
  GstDiscoverer *disc = gst_discoverer_new(10 * GST_SECOND, &err);
  if (!disc) {
    g_clear_error(&err);
    return {};
  }
  gchar *uri = gst_filename_to_uri(file.c_str(), nullptr);
  GstDiscovererInfo *info = gst_discoverer_discover_uri(disc, uri, &err);
  g_free(uri);
  std::string text;
  if (info && gst_discoverer_info_get_result(info) == GST_DISCOVERER_OK) {
    char buf[256];
    GList *videos = gst_discoverer_info_get_video_streams(info);
    GList *audios = gst_discoverer_info_get_audio_streams(info);
    if (videos) {
      auto *v = GST_DISCOVERER_VIDEO_INFO(videos->data);
      guint w = gst_discoverer_video_info_get_width(v), h = gst_discoverer_video_info_get_height(v);
      guint fn = gst_discoverer_video_info_get_framerate_num(v);
      guint fd = gst_discoverer_video_info_get_framerate_denom(v);
      GstClockTime dur = gst_discoverer_info_get_duration(info);
      if (gst_discoverer_video_info_is_image(v))
        std::snprintf(buf, sizeof buf, "%ux%u image", w, h);
      else
        std::snprintf(buf, sizeof buf, "%.1f s, %ux%u, %.3g fps%s", dur / 1e9, w, h,
                      fd ? double(fn) / fd : 0.0, audios ? ", with audio" : "");
      text = buf;
    }
    gst_discoverer_stream_info_list_free(videos);
    gst_discoverer_stream_info_list_free(audios);
  }
  g_clear_error(&err);
  if (info)
    g_object_unref(info);
  g_object_unref(disc);
  return text;
}

const std::set<std::string> kImageOptions = {"style", "palette", "model", "aspect-ratio",
                                             "o",     "output",  "user"};
const std::set<std::string> kVideoOptions = {"mood", "model", "aspect-ratio", "resolution", "image",
                                             "negative-prompt", "operation", "poll-interval",
                                             "timeout", "o", "output", "user"};

struct LoopJob {
  LoopRequest request;
  bool quiet = false;
};

std::atomic<int> g_loop_signal{0};

extern "C" void on_loop_interrupt(int signal_number) {
  g_loop_signal.store(signal_number);
}

// The stop signals cancel `token` while in scope, so the run's temporary files are removed. A
// signal handler may not take the token's lock, so a watcher thread turns the number the
// handler stores into cancel(). The number is reset before the handler is installed.
class CancelOnInterrupt {
public:
  explicit CancelOnInterrupt(CancelToken token)
      : token_(std::move(token)), signals_((g_loop_signal.store(0), on_loop_interrupt)) {
    watcher_ = std::thread([this] {
      while (done_.wait_for(std::chrono::milliseconds(50)))
        if (g_loop_signal.load() != 0) {
          token_.cancel();
          return;
        }
    });
  }
  ~CancelOnInterrupt() {
    done_.cancel();
    watcher_.join();
  }
  // The signal that cancelled the run, 0 if none did.
  static int signal_number() { return g_loop_signal.load(); }
  CancelOnInterrupt(const CancelOnInterrupt &) = delete;
  CancelOnInterrupt &operator=(const CancelOnInterrupt &) = delete;

private:
  CancelToken token_;
  CancelToken done_;
  StopSignalScope signals_;
  std::thread watcher_;
};

// The loop's progress bar on stderr, drawn only when stderr is a terminal.
class LoopBar {
public:
  LoopBar(bool quiet, std::string what)
      : show_(!quiet && isatty(STDERR_FILENO)), what_(std::move(what)) {}
  void update(double percent) {
    if (!show_)
      return;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(percent * kWidth / 100);
    std::fprintf(stderr, "\r[%-*s] %3.0f%% looping %-40.40s", kWidth,
                 std::string(static_cast<std::size_t>(filled), '=').c_str(), percent,
                 what_.c_str());
    std::fflush(stderr);
    open_ = true;
  }
  void finish() {
    if (open_)
      std::fputc('\n', stderr);
    open_ = false;
  }

private:
  bool show_;
  std::string what_;
  bool open_ = false;
};

int run_loop(const LoopJob &job) {
  CancelToken cancel;
  CancelOnInterrupt interrupt(cancel);
  LoopBar bar(job.quiet, job.request.input.filename().string());
  LoopResult result;
  try {
    result = make_loop(job.request, cancel, [&bar](double percent) { bar.update(percent); });
  } catch (const Error &e) {
    bar.finish();
    if (e.kind() == ErrorKind::Cancelled) {
      const int signal_number = CancelOnInterrupt::signal_number();
      std::fprintf(stderr, "interrupted (SIG%s): no loop output was written\n",
                   sigabbrev_np(signal_number ? signal_number : SIGINT));
      return 128 + (signal_number ? signal_number : SIGINT);
    }
    throw;
  }
  bar.finish();
  if (job.quiet)
    return 0;
  for (const std::string &warning : result.warnings)
    std::fprintf(stderr, "warning: %s\n", warning.c_str());
  const MediaStreamInfo &v = *result.input.video();
  const bool turned = v.rotation == 90 || v.rotation == 270; // shown upright, as looped
  std::fprintf(stderr, "looped %s (%.1f s, %dx%d%s, %s): %.2f s loop\n",
               job.request.input.c_str(), result.input.duration_s, turned ? v.height : v.width,
               turned ? v.width : v.height, v.rotation ? " upright" : "",
               result.audio ? "with audio" : "no audio", result.duration_s);
  for (const auto &[format, path] : result.files)
    std::printf("%s: %s\n", to_string(format), path.c_str());
  return 0;
}

// The loop options shared by `loop` and `background`.
void loop_options(const Args &args, LoopJob &job) {
  if (auto formats = args.get("formats")) {
    try {
      job.request.formats = parse_loop_formats(*formats);
    } catch (const Error &e) {
      throw UsageError("--formats: " + e.message());
    }
  }
  job.request.crossfade = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(args.seconds("crossfade", 1.0)));
  job.request.height = static_cast<int>(args.integer("height", 0, 0, kMaxLoopHeight));
  try {
    check_loop_request(job.request);
  } catch (const Error &e) {
    throw UsageError(e.message());
  }
}

const std::set<std::string> kLoopOptions = {"out", "formats", "crossfade", "height"};

} // namespace

const char *const kImageUsage =
    "usage: gemstream image \"MOTIF\" [--style minimal|abstract|nature|cosmic]\n"
    "         [--palette \"teal and gold\"] [--model nano-banana|imagen-4|imagen-4-fast]\n"
    "         [--aspect-ratio 1:1] [--raw] [--user NAME] [-o FILE]\n"
    "Generates a card cover from the card-cover template (--raw sends MOTIF verbatim).";
const char *const kVideoUsage =
    "usage: gemstream video \"DESCRIPTION\" [--mood calm|energetic|mysterious|focused]\n"
    "         [--model veo-3|veo-3-fast] [--aspect-ratio 16:9|9:16] [--resolution 720p|1080p]\n"
    "         [--image START.png] [--negative-prompt TEXT] [--operation NAME]\n"
    "         [--poll-interval 10s] [--timeout 600s] [--raw] [--user NAME] [-o FILE]\n"
    "Generates an 8 s video with Veo; --operation resumes an operation instead of paying again.";
const char *const kLoopUsage =
    "usage: gemstream loop INPUT --out DIR [--formats mp4,webm,poster] [--crossfade 1s]\n"
    "         [--height N] [--quiet]\n"
    "Makes a seamless loop of a clip (the tail crossfaded into the head): DIR/loop.mp4 (H.264 +\n"
    "AAC, faststart), DIR/loop.webm (VP9 + Opus), DIR/poster.jpg. The input is validated\n"
    "before any work; outputs appear only when complete (Ctrl-C leaves none).";
const char *const kBackgroundUsage =
    "usage: gemstream background \"DESCRIPTION\" [--mood calm|energetic|mysterious|focused]\n"
    "         --out DIR [--model veo-3|veo-3-fast] [--formats mp4,webm,poster] [--crossfade 1s]\n"
    "         [--height N]\n"
    "Generates a Veo clip (DIR/clip.mp4) and its loop outputs in one command.";
const char *const kDemoUsage =
    "usage: gemstream demo [--out DIR] [--user NAME]\n"
    "Generates a card cover (DIR/cover.png) and a background clip (DIR/background.mp4).";

int cmd_image(const std::vector<std::string> &argv) {
  Args args(argv, kImageOptions, {"raw"});
  if (args.positionals().size() != 1)
    throw UsageError(kImageUsage);
  ImageJob job;
  job.motif = args.positionals()[0];
  job.style = args.get_or("style", "");
  job.palette = args.get_or("palette", "");
  job.model = args.get_or("model", "");
  job.aspect_ratio = args.get_or("aspect-ratio", "");
  job.raw = args.has_flag("raw");
  job.out = args.get_or("o", args.get_or("output", slugify(job.motif) + ".png"));
  return run_image(job, Spending::open(args), nullptr);
}

int cmd_video(const std::vector<std::string> &argv) {
  Args args(argv, kVideoOptions, {"raw"});
  if (args.positionals().size() > 1 || (args.positionals().empty() && !args.get("operation")))
    throw UsageError(kVideoUsage);
  VideoJob job;
  job.description = args.positionals().empty() ? "" : args.positionals()[0];
  job.mood = args.get_or("mood", "");
  job.model = args.get_or("model", "");
  job.aspect_ratio = args.get_or("aspect-ratio", "");
  job.resolution = args.get_or("resolution", "");
  job.image = args.get_or("image", "");
  job.negative_prompt = args.get_or("negative-prompt", "");
  job.operation = args.get_or("operation", "");
  job.poll_interval_s = args.seconds("poll-interval", 0);
  job.timeout_s = args.seconds("timeout", 600);
  job.raw = args.has_flag("raw");
  job.out = args.get_or("o", args.get_or("output", slugify(job.description.empty() ? "video" : job.description) + ".mp4"));
  return run_video(job, Spending::open(args), nullptr);
}

int cmd_demo(const std::vector<std::string> &argv) {
  Args args(argv, {"out", "user"});
  if (!args.positionals().empty())
    throw UsageError(kDemoUsage);
  fs::path dir = args.get_or("out", "gemstream-out");
  const bool local = !have_api_key() && !g_getenv("GEMSTREAM_BASE_URL");
  std::printf("gemstream demo: a card cover and a background clip, on %s\n",
              local ? "the local backend (no GOOGLE_API_KEY set)" : "the configured API endpoint");
  const Spending spending = Spending::open(args);
  double usd = 0;
  ImageJob image{"meditation practice", "minimal", "teal and gold", "", "", false, dir / "cover.png"};
  if (int rc = run_image(image, spending, &usd))
    return rc;
  VideoJob video;
  video.description = "peaceful beach sunset";
  video.mood = "calm";
  video.image = "";
  video.out = dir / "background.mp4";
  if (int rc = run_video(video, spending, &usd))
    return rc;
  std::printf("\n%s  %s\n%s  %s\ntotal cost: $%.3f%s\n", image.out.c_str(),
              describe(image.out).c_str(), video.out.c_str(), describe(video.out).c_str(), usd,
              local ? " (priced as on Google's API; the local backend charges nothing)" : "");
  return 0;
}

} // namespace gemstream::cli

namespace gemstream::cli {

int cmd_loop(const std::vector<std::string> &argv) {
  Args args(argv, kLoopOptions, {"quiet"});
  if (args.positionals().size() != 1 || !args.get("out"))
    throw UsageError(kLoopUsage);
  LoopJob job;
  job.request.input = args.positionals()[0];
  job.request.out_dir = *args.get("out");
  if (job.request.out_dir.empty())
    throw UsageError("--out: give the directory to write the loop to");
  loop_options(args, job);
  job.quiet = args.has_flag("quiet");
  return run_loop(job);
}

int cmd_background(const std::vector<std::string> &argv) {
  std::set<std::string> options = kLoopOptions;
  options.insert({"mood", "model", "user", "poll-interval"});
  Args args(argv, options);
  if (args.positionals().size() != 1 || !args.get("out"))
    throw UsageError(kBackgroundUsage);
  const fs::path dir = *args.get("out");
  if (dir.empty())
    throw UsageError("--out: give the directory to write the clip and its loop to");
  LoopJob loop;
  loop_options(args, loop); // usage errors before paying for the video
  VideoJob video;
  video.description = args.positionals()[0];
  video.mood = args.get_or("mood", "");
  video.model = args.get_or("model", "");
  video.poll_interval_s = args.seconds("poll-interval", 0);
  video.out = dir / "clip.mp4";
  {
    // The clip's length is the model's: a crossfade it cannot hold fails before paying.
    const MediaConfig config = MediaConfig::load_default();
    const std::string env_model = EnvSettings::from_environment().video_model;
    const VideoModel &model = config.video_model(
        model_key(video.model, env_model.empty() ? config.defaults.background_video : env_model));
    const double crossfade_s = std::chrono::duration<double>(loop.request.crossfade).count();
    if (2 * crossfade_s > model.duration_seconds)
      throw UsageError("--crossfade: " + slugify(model.key) + " makes clips of " +
                       std::to_string(model.duration_seconds) +
                       " s, and a crossfade can be at most half of the clip, got \"" +
                       args.get_or("crossfade", "") + "\"");
  }
  if (int rc = run_video(video, Spending::open(args), nullptr))
    return rc;
  loop.request.input = video.out;
  loop.request.out_dir = dir;
  return run_loop(loop);
}

} // namespace gemstream::cli
