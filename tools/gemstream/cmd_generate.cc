// gemstream image / video / demo: generation through the imagegensrc and veosrc elements.
#include "cli_args.h"
#include "commands.h"
#include "pipeline_runner.h"

#include <gemstream/config.h>
#include <gst/pbutils/pbutils.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace gemstream::cli {
namespace {

namespace fs = std::filesystem;

GstElement *make(const char *factory, const char *name) {
  GstElement *e = gst_element_factory_make(factory, name);
  if (!e)
    throw std::runtime_error(std::string("GStreamer element '") + factory +
                             "' is missing: is the gemstream plugin built and installed?");
  return e;
}

// Sets an enum property from its nick, with a usage error listing the allowed values.
void set_enum(GstElement *e, const char *prop, const std::string &nick, const char *option) {
  GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), prop);
  GEnumClass *klass = G_ENUM_CLASS(g_type_class_ref(pspec->value_type));
  GEnumValue *v = g_enum_get_value_by_nick(klass, nick.c_str());
  if (!v) {
    std::string allowed;
    for (guint i = 0; i < klass->n_values; ++i)
      allowed += std::string(i ? ", " : "") + klass->values[i].value_nick;
    g_type_class_unref(klass);
    throw UsageError(std::string("--") + option + ": unknown value \"" + nick + "\" (one of: " +
                     allowed + ")");
  }
  g_object_set(e, prop, v->value, nullptr);
  g_type_class_unref(klass);
}

// Writes through "<out>.part" and renames on success, so a failure never leaves a partial file.
class AtomicOutput {
public:
  explicit AtomicOutput(fs::path out) : out_(std::move(out)), part_(out_.string() + ".part") {
    if (out_.has_parent_path())
      fs::create_directories(out_.parent_path());
  }
  ~AtomicOutput() {
    std::error_code ec;
    if (!committed_)
      fs::remove(part_, ec);
  }
  const fs::path &part() const { return part_; }
  void commit() {
    fs::rename(part_, out_);
    committed_ = true;
  }

private:
  fs::path out_;
  fs::path part_;
  bool committed_ = false;
};

bool have_api_key() { return !EnvSettings::from_environment().api_key.empty(); }

struct ImageJob {
  std::string motif;
  std::string style, palette, model, aspect_ratio;
  bool raw = false;
  fs::path out;
};

int run_image(const ImageJob &job, double *usd) {
  AtomicOutput output(job.out);
  GstElement *pipeline = gst_pipeline_new("image");
  GstElement *src = make("imagegensrc", "imagegensrc");
  GstElement *sink = make("filesink", "sink");
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  gst_element_link(src, sink);
  PipelineRunner runner(pipeline);
  g_object_set(src, "prompt", job.motif.c_str(), "use-template", !job.raw, nullptr);
  if (!job.style.empty())
    set_enum(src, "style", job.style, "style");
  if (!job.model.empty())
    set_enum(src, "model", job.model, "model");
  if (!job.palette.empty())
    g_object_set(src, "palette", job.palette.c_str(), nullptr);
  if (!job.aspect_ratio.empty())
    g_object_set(src, "aspect-ratio", job.aspect_ratio.c_str(), nullptr);
  g_object_set(sink, "location", output.part().c_str(), nullptr);

  RunOutcome outcome = runner.run();
  if (usd)
    *usd += outcome.usd;
  if (outcome.eos && outcome.error.empty()) {
    output.commit();
    std::printf("image: %s\n", job.out.c_str());
  }
  return report_outcome(outcome);
}

struct VideoJob {
  std::string description;
  std::string mood, model, aspect_ratio, resolution, image, negative_prompt, operation;
  double poll_interval_s = 0;  // 0: 10 s against Google, 1 s against the local backend
  double timeout_s = 600;
  bool raw = false;
  fs::path out;
};

int run_video(const VideoJob &job, double *usd) {
  AtomicOutput output(job.out);
  GstElement *pipeline = gst_pipeline_new("video");
  GstElement *src = make("veosrc", "veosrc");
  GstElement *sink = make("filesink", "sink");
  gst_bin_add_many(GST_BIN(pipeline), src, sink, nullptr);
  gst_element_link(src, sink);
  PipelineRunner runner(pipeline);
  runner.on_element_message = [](const GstStructure *s) {
    if (gst_structure_has_name(s, "gemstream-operation"))
      std::fprintf(stderr, "operation: %s\n", gst_structure_get_string(s, "operation"));
  };
  if (!job.description.empty())
    g_object_set(src, "prompt", job.description.c_str(), nullptr);
  g_object_set(src, "use-template", !job.raw, nullptr);
  if (!job.mood.empty())
    set_enum(src, "mood", job.mood, "mood");
  if (!job.model.empty())
    set_enum(src, "model", job.model, "model");
  if (!job.aspect_ratio.empty())
    set_enum(src, "aspect-ratio", job.aspect_ratio, "aspect-ratio");
  if (!job.resolution.empty())
    set_enum(src, "resolution", job.resolution, "resolution");
  if (!job.image.empty())
    g_object_set(src, "image-location", job.image.c_str(), nullptr);
  if (!job.negative_prompt.empty())
    g_object_set(src, "negative-prompt", job.negative_prompt.c_str(), nullptr);
  if (!job.operation.empty())
    g_object_set(src, "operation", job.operation.c_str(), nullptr);
  double poll = job.poll_interval_s > 0 ? job.poll_interval_s : (have_api_key() ? 10.0 : 1.0);
  g_object_set(src, "poll-interval", static_cast<guint>(poll * 1000), "timeout",
               static_cast<guint>(std::max(1.0, job.timeout_s)), nullptr);
  g_object_set(sink, "location", output.part().c_str(), nullptr);

  RunOutcome outcome = runner.run();
  if (usd)
    *usd += outcome.usd;
  if (outcome.eos && outcome.error.empty()) {
    output.commit();
    std::printf("video: %s\n", job.out.c_str());
  } else if (!outcome.error.empty()) {
    gchar *op = nullptr;
    g_object_get(src, "operation", &op, nullptr);
    if (op && *op && job.operation.empty())
      std::fprintf(stderr, "resume with: gemstream video --operation %s -o %s\n", op, job.out.c_str());
    g_free(op);
  }
  return report_outcome(outcome);
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

const std::set<std::string> kImageOptions = {"style", "palette", "model", "aspect-ratio", "o", "output"};
const std::set<std::string> kVideoOptions = {"mood", "model", "aspect-ratio", "resolution", "image",
                                             "negative-prompt", "operation", "poll-interval",
                                             "timeout", "o", "output"};

} // namespace

const char *const kImageUsage =
    "usage: gemstream image \"MOTIF\" [--style minimal|abstract|nature|cosmic]\n"
    "         [--palette \"teal and gold\"] [--model nano-banana|imagen-4|imagen-4-fast]\n"
    "         [--aspect-ratio 1:1] [--raw] [-o FILE]\n"
    "Generates a card cover from the card-cover template (--raw sends MOTIF verbatim).";
const char *const kVideoUsage =
    "usage: gemstream video \"DESCRIPTION\" [--mood calm|energetic|mysterious|focused]\n"
    "         [--model veo-3|veo-3-fast] [--aspect-ratio 16:9|9:16] [--resolution 720p|1080p]\n"
    "         [--image START.png] [--negative-prompt TEXT] [--operation NAME]\n"
    "         [--poll-interval 10s] [--timeout 600s] [--raw] [-o FILE]\n"
    "Generates an 8 s video with Veo; --operation resumes an operation instead of paying again.";
const char *const kDemoUsage =
    "usage: gemstream demo [--out DIR]\n"
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
  return run_image(job, nullptr);
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
  job.poll_interval_s = args.number("poll-interval", 0);
  job.timeout_s = args.number("timeout", 600);
  job.raw = args.has_flag("raw");
  job.out = args.get_or("o", args.get_or("output", slugify(job.description.empty() ? "video" : job.description) + ".mp4"));
  return run_video(job, nullptr);
}

int cmd_demo(const std::vector<std::string> &argv) {
  Args args(argv, {"out"});
  if (!args.positionals().empty())
    throw UsageError(kDemoUsage);
  fs::path dir = args.get_or("out", "gemstream-out");
  const bool local = !have_api_key() && !g_getenv("GEMSTREAM_BASE_URL");
  std::printf("gemstream demo: a card cover and a background clip, on %s\n",
              local ? "the local backend (no GOOGLE_API_KEY set)" : "the configured API endpoint");
  double usd = 0;
  ImageJob image{"meditation practice", "minimal", "teal and gold", "", "", false, dir / "cover.png"};
  if (int rc = run_image(image, &usd))
    return rc;
  VideoJob video;
  video.description = "peaceful beach sunset";
  video.mood = "calm";
  video.image = "";
  video.out = dir / "background.mp4";
  if (int rc = run_video(video, &usd))
    return rc;
  std::printf("\n%s  %s\n%s  %s\ntotal cost: $%.3f%s\n", image.out.c_str(),
              describe(image.out).c_str(), video.out.c_str(), describe(video.out).c_str(), usd,
              local ? " (priced as on Google's API; the local backend charges nothing)" : "");
  return 0;
}

} // namespace gemstream::cli
