/**
 * SECTION:element-veosrc
 * @title: veosrc
 *
 * Generates an 8-second video with Veo 3 / Veo 3 Fast and outputs the MP4 as a
 * `video/quicktime` byte stream, so `veosrc ! qtdemux` and `veosrc ! decodebin3` work.
 *
 * The element starts a long-running `predictLongRunning` operation (or resumes the one named by
 * `operation`, so a timed-out generation is not paid for twice), polls it every `poll-interval`
 * milliseconds, then downloads the video. All network work runs on a worker thread started in
 * READY→PAUSED; the streaming thread only waits for the download, and stopping the pipeline
 * cancels everything within a second. While it waits it posts `GST_MESSAGE_PROGRESS` messages
 * (codes `start`, `poll`, `download`, `complete`; fields `operation`, `poll`, `elapsed-seconds`,
 * `percent`). The operation name is also posted as a `gemstream-operation` element message and
 * readable through the `operation` property; a timeout error names it so it can be resumed.
 * A `gemstream-cost` element message is posted when a newly started operation completes.
 *
 * The downloaded file is offered with random access (pull mode), so demuxers can read an MP4
 * whose moov atom comes last. With `location` set, it is kept there; otherwise it lives in a
 * temporary directory removed when the element stops.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 veosrc prompt="peaceful beach sunset" mood=calm ! decodebin3 ! videoconvert ! autovideosink
 * gst-launch-1.0 veosrc prompt="neon city at night" location=clip.mp4 ! qtdemux ! fakesink
 * gst-launch-1.0 veosrc operation=models/veo-3.0-fast-generate-001/operations/abc123 ! filesink location=clip.mp4
 * ]|
 */
#include "veosrc.h"

#include "common/async_job.h"
#include "common/element_util.h"
#include "common/gst_ref.h"

#include <gemstream/config.h>
#include <gemstream/genai.h>
#include <gemstream/prompts.h>

#include <glib/gstdio.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unistd.h>

GST_DEBUG_CATEGORY_STATIC(gem_veo_src_debug);
#define GST_CAT_DEFAULT gem_veo_src_debug

namespace {

using gemstream::Error;
using gemstream::ErrorKind;

enum GemVeoModel { MODEL_DEFAULT, MODEL_VEO_3, MODEL_VEO_3_FAST };
enum GemVeoMood { MOOD_NONE, MOOD_CALM, MOOD_ENERGETIC, MOOD_MYSTERIOUS, MOOD_FOCUSED };
enum GemVeoAspectRatio { ASPECT_16_9, ASPECT_9_16 };
enum GemVeoResolution { RES_720P, RES_1080P };

constexpr const char *kModelKeys[] = {"", "veo_3", "veo_3_fast"};
constexpr const char *kMoodKeys[] = {"", "calm", "energetic", "mysterious", "focused"};
constexpr const char *kAspectRatios[] = {"16:9", "9:16"};
constexpr const char *kResolutions[] = {"720p", "1080p"};

constexpr guint kDefaultPollIntervalMs = 10000;
constexpr guint kMinPollIntervalMs = 10;
constexpr guint kMaxPollIntervalMs = 600000;
constexpr guint kDefaultTimeoutSec = 600;
constexpr guint kMaxTimeoutSec = 24 * 3600;
constexpr guint kBlockSize = 64 * 1024;

enum {
  PROP_0,
  PROP_PROMPT,
  PROP_MODEL,
  PROP_MOOD,
  PROP_ASPECT_RATIO,
  PROP_RESOLUTION,
  PROP_NEGATIVE_PROMPT,
  PROP_IMAGE_LOCATION,
  PROP_POLL_INTERVAL,
  PROP_TIMEOUT,
  PROP_OPERATION,
  PROP_LOCATION,
  PROP_USE_TEMPLATE,
  PROP_API_KEY,
  PROP_BASE_URL,
};

struct Settings {
  std::string prompt;
  GemVeoModel model = MODEL_DEFAULT;
  GemVeoMood mood = MOOD_NONE;
  GemVeoAspectRatio aspect_ratio = ASPECT_16_9;
  GemVeoResolution resolution = RES_720P;
  std::string negative_prompt;
  std::string image_location;
  guint poll_interval_ms = kDefaultPollIntervalMs;
  guint timeout_sec = kDefaultTimeoutSec;
  std::string operation;
  std::string location;
  bool use_template = true;
  std::string api_key;
  std::string base_url;
};

// Everything the worker needs, fixed at start().
struct JobSpec {
  std::shared_ptr<gemstream::GenAiClient> client;
  gemstream::VideoRequest request;
  std::string image_location;
  std::string resume_operation;
  std::string model_key;
  double usd_per_second = 0;
  std::chrono::milliseconds poll_interval{kDefaultPollIntervalMs};
  std::chrono::milliseconds timeout{std::chrono::seconds(kDefaultTimeoutSec)};
  std::string path;  // where the MP4 is written
};

} // namespace

// Lock order: `lock` before the job's own lock; neither is held while posting or pushing.
struct GemVeoSrcImpl {
  std::mutex lock;
  Settings settings;
  // State, set up in start() and reset in stop(). The worker (start or resume, poll, download)
  // is started by the first create(); its result is the size of the downloaded file.
  gemstream::gst::AsyncJob<std::uint64_t> job;
  std::shared_ptr<const JobSpec> spec;
  bool error_posted = false;
  int fd = -1;
  std::string path;
  std::string temp_dir;  // removed in stop() when we own the file
};

struct _GemVeoSrc {
  GstBaseSrc parent;
  GemVeoSrcImpl *impl;
};

G_DEFINE_TYPE(GemVeoSrc, gem_veo_src, GST_TYPE_BASE_SRC)

GType gem_veo_model_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {MODEL_DEFAULT, "GEMINI_VIDEO_MODEL, else the config's background_video default", "default"},
      {MODEL_VEO_3, "Veo 3 (veo-3.0-generate-001)", "veo-3"},
      {MODEL_VEO_3_FAST, "Veo 3 Fast (veo-3.0-fast-generate-001)", "veo-3-fast"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemVeoModel", values));
  return type;
}

GType gem_veo_mood_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {{MOOD_NONE, "No mood preset", "none"},
                                      {MOOD_CALM, "Calm, slow movement", "calm"},
                                      {MOOD_ENERGETIC, "Energetic, lively motion", "energetic"},
                                      {MOOD_MYSTERIOUS, "Mysterious, dim atmosphere", "mysterious"},
                                      {MOOD_FOCUSED, "Focused, steady and minimal", "focused"},
                                      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemVeoMood", values));
  return type;
}

GType gem_veo_aspect_ratio_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {{ASPECT_16_9, "Landscape 16:9", "16:9"},
                                      {ASPECT_9_16, "Portrait 9:16", "9:16"},
                                      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemVeoAspectRatio", values));
  return type;
}

GType gem_veo_resolution_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {{RES_720P, "720p (1280x720 or 720x1280)", "720p"},
                                      {RES_1080P, "1080p (1920x1080, 16:9 only)", "1080p"},
                                      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemVeoResolution", values));
  return type;
}

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS("video/quicktime, variant=(string)iso"));

namespace {

void post_progress(GstElement *element, GstProgressType type, const char *code,
                   const std::string &text, const std::string &operation, int percent,
                   int poll = -1, double elapsed_s = -1) {
  GstMessage *msg = gst_message_new_progress(GST_OBJECT(element), type, code, text.c_str());
  GstStructure *s = gst_message_writable_structure(msg);
  gst_structure_set(s, "percent", G_TYPE_INT, percent, "operation", G_TYPE_STRING,
                    operation.c_str(), nullptr);
  if (poll >= 0)
    gst_structure_set(s, "poll", G_TYPE_INT, poll, nullptr);
  if (elapsed_s >= 0)
    gst_structure_set(s, "elapsed-seconds", G_TYPE_DOUBLE, elapsed_s, nullptr);
  gst_element_post_message(element, msg);
}

std::string sniff_image_mime(const std::string &bytes) {
  if (bytes.size() > 8 && bytes.compare(0, 4, "\x89PNG") == 0)
    return "image/png";
  if (bytes.size() > 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
      static_cast<unsigned char>(bytes[1]) == 0xD8)
    return "image/jpeg";
  return {};
}

// The worker: start or resume the operation, poll, download. Runs off the streaming thread.
std::uint64_t run_job(GemVeoSrc *self, GemVeoSrcImpl *impl, const JobSpec &spec,
                      const gemstream::CancelToken &cancel) {
  GstElement *element = GST_ELEMENT(self);
  std::string operation = spec.resume_operation;
  try {
    if (operation.empty()) {
      gemstream::VideoRequest request = spec.request;
      if (!spec.image_location.empty()) {
        request.image_bytes = gemstream::gst::read_file(spec.image_location);
        request.image_mime = sniff_image_mime(request.image_bytes);
        if (request.image_mime.empty())
          throw Error(ErrorKind::InvalidArgument,
                      "image-location " + spec.image_location + " is neither a PNG nor a JPEG");
      }
      gemstream::Operation op = spec.client->start_video(request, cancel);
      operation = op.name;
      {
        std::lock_guard<std::mutex> guard(impl->lock);
        impl->settings.operation = operation;
      }
      g_object_notify(G_OBJECT(self), "operation");
      gst_element_post_message(
          element, gst_message_new_element(
                       GST_OBJECT(element),
                       gst_structure_new("gemstream-operation", "operation", G_TYPE_STRING,
                                         operation.c_str(), "model", G_TYPE_STRING,
                                         spec.request.model_id.c_str(), nullptr)));
      post_progress(element, GST_PROGRESS_TYPE_START, "start",
                    "Started Veo operation " + operation, operation, 0);
    } else {
      post_progress(element, GST_PROGRESS_TYPE_START, "start",
                    "Resuming Veo operation " + operation, operation, 0);
    }
    GST_DEBUG_OBJECT(self, "polling %s every %lld ms", operation.c_str(),
                     static_cast<long long>(spec.poll_interval.count()));

    gemstream::Operation done = spec.client->wait_operation(
        operation, spec.poll_interval, spec.timeout, cancel,
        [&](int poll, std::chrono::milliseconds elapsed) {
          double secs = elapsed.count() / 1000.0;
          post_progress(element, GST_PROGRESS_TYPE_CONTINUE, "poll",
                        "Generating video (" + std::to_string(poll) + " polls, " +
                            std::to_string(static_cast<int>(secs)) + " s)",
                        operation, -1, poll, secs);
        });

    if (done.video_uris.empty())
      throw Error(ErrorKind::Protocol, "operation " + operation + " finished without a video");
    int last_percent = -1;
    std::uint64_t size = spec.client->download_video(
        done.video_uris.front(), spec.path, cancel,
        [&](std::uint64_t now, std::uint64_t total) {
          int percent = total ? static_cast<int>(now * 100 / total) : -1;
          if (percent / 10 == last_percent / 10)
            return;
          last_percent = percent;
          post_progress(element, GST_PROGRESS_TYPE_CONTINUE, "download",
                        "Downloading video (" + std::to_string(now) + " bytes)", operation,
                        percent);
        });
    post_progress(element, GST_PROGRESS_TYPE_COMPLETE, "complete",
                  "Video ready (" + std::to_string(size / 1024) + " KiB)", operation, 100);
    if (spec.resume_operation.empty())
      gemstream::gst::post_cost_message(element, "video", spec.request.model_id, spec.model_key,
                                        spec.usd_per_second * spec.request.duration_seconds,
                                        spec.request.duration_seconds);
    return size;
  } catch (const Error &e) {
    bool cancelled = e.kind() == ErrorKind::Cancelled;
    post_progress(element, cancelled ? GST_PROGRESS_TYPE_CANCELED : GST_PROGRESS_TYPE_ERROR,
                  cancelled ? "cancelled" : "error", e.message(), operation, -1);
    throw;
  }
}

} // namespace

static void gem_veo_src_set_property(GObject *object, guint prop_id, const GValue *value,
                                     GParamSpec *pspec) {
  auto *impl = GEM_VEO_SRC(object)->impl;
  using gemstream::gst::value_to_string;
  std::lock_guard<std::mutex> guard(impl->lock);
  Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_PROMPT: s.prompt = value_to_string(value); break;
  case PROP_MODEL: s.model = static_cast<GemVeoModel>(g_value_get_enum(value)); break;
  case PROP_MOOD: s.mood = static_cast<GemVeoMood>(g_value_get_enum(value)); break;
  case PROP_ASPECT_RATIO:
    s.aspect_ratio = static_cast<GemVeoAspectRatio>(g_value_get_enum(value));
    break;
  case PROP_RESOLUTION:
    s.resolution = static_cast<GemVeoResolution>(g_value_get_enum(value));
    break;
  case PROP_NEGATIVE_PROMPT: s.negative_prompt = value_to_string(value); break;
  case PROP_IMAGE_LOCATION: s.image_location = value_to_string(value); break;
  case PROP_POLL_INTERVAL: s.poll_interval_ms = g_value_get_uint(value); break;
  case PROP_TIMEOUT: s.timeout_sec = g_value_get_uint(value); break;
  case PROP_OPERATION: s.operation = value_to_string(value); break;
  case PROP_LOCATION: s.location = value_to_string(value); break;
  case PROP_USE_TEMPLATE: s.use_template = g_value_get_boolean(value); break;
  case PROP_API_KEY: s.api_key = value_to_string(value); break;
  case PROP_BASE_URL: s.base_url = value_to_string(value); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static void gem_veo_src_get_property(GObject *object, guint prop_id, GValue *value,
                                     GParamSpec *pspec) {
  auto *impl = GEM_VEO_SRC(object)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  const Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_PROMPT: g_value_set_string(value, s.prompt.c_str()); break;
  case PROP_MODEL: g_value_set_enum(value, s.model); break;
  case PROP_MOOD: g_value_set_enum(value, s.mood); break;
  case PROP_ASPECT_RATIO: g_value_set_enum(value, s.aspect_ratio); break;
  case PROP_RESOLUTION: g_value_set_enum(value, s.resolution); break;
  case PROP_NEGATIVE_PROMPT: g_value_set_string(value, s.negative_prompt.c_str()); break;
  case PROP_IMAGE_LOCATION: g_value_set_string(value, s.image_location.c_str()); break;
  case PROP_POLL_INTERVAL: g_value_set_uint(value, s.poll_interval_ms); break;
  case PROP_TIMEOUT: g_value_set_uint(value, s.timeout_sec); break;
  case PROP_OPERATION: g_value_set_string(value, s.operation.c_str()); break;
  case PROP_LOCATION: g_value_set_string(value, s.location.c_str()); break;
  case PROP_USE_TEMPLATE: g_value_set_boolean(value, s.use_template); break;
  case PROP_BASE_URL: g_value_set_string(value, s.base_url.c_str()); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static gboolean gem_veo_src_start(GstBaseSrc *src) {
  auto *self = GEM_VEO_SRC(src);
  auto *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(src), FALSE, [&]() -> gboolean {
    Settings s;
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      s = impl->settings;
    }
    if (s.prompt.empty() && s.operation.empty()) {
      GST_ELEMENT_ERROR(src, RESOURCE, SETTINGS, ("No prompt set."),
                        ("Set 'prompt' to describe the video, or 'operation' to resume one."));
      return FALSE;
    }
    if (s.resolution == RES_1080P && s.aspect_ratio == ASPECT_9_16) {
      GST_ELEMENT_ERROR(src, RESOURCE, SETTINGS, ("1080p is only available for 16:9 videos."),
                        ("Use resolution=720p with aspect-ratio=9:16."));
      return FALSE;
    }

    auto config = gemstream::MediaConfig::load_default();
    auto env = gemstream::EnvSettings::from_environment();
    std::string model_name = kModelKeys[s.model];
    if (s.model == MODEL_DEFAULT)
      model_name = env.video_model.empty() ? config.defaults.background_video : env.video_model;
    const gemstream::VideoModel &model = config.video_model(model_name);

    JobSpec spec;
    spec.request.model_id = model.id;
    spec.request.aspect_ratio = kAspectRatios[s.aspect_ratio];
    spec.request.resolution = kResolutions[s.resolution];
    spec.request.duration_seconds = model.duration_seconds;
    if (!s.prompt.empty())
      spec.request.prompt =
          s.use_template ? gemstream::build_background_video_prompt(config, {s.prompt, kMoodKeys[s.mood]})
                         : s.prompt;
    spec.request.negative_prompt =
        !s.negative_prompt.empty() ? s.negative_prompt
                                   : (s.use_template ? config.background_video.negative_prompt : "");
    spec.image_location = s.image_location;
    spec.resume_operation = s.operation;
    spec.model_key = model.key;
    spec.usd_per_second = model.usd_per_second;
    spec.poll_interval = std::chrono::milliseconds(s.poll_interval_ms);
    spec.timeout = std::chrono::seconds(s.timeout_sec);
    spec.client = std::make_shared<gemstream::GenAiClient>(
        gemstream::resolve_endpoint(s.api_key, s.base_url));

    std::string temp_dir;
    if (s.location.empty()) {
      gemstream::gst::GErrorPtr gerr;
      GError *raw = nullptr;
      gchar *dir = g_dir_make_tmp("gemstream-veo-XXXXXX", &raw);
      gerr.reset(raw);
      if (!dir) {
        GST_ELEMENT_ERROR(src, RESOURCE, OPEN_WRITE, ("Cannot create a temporary directory."),
                          ("%s", gerr->message));
        return FALSE;
      }
      temp_dir = dir;
      g_free(dir);
      spec.path = temp_dir + "/veo.mp4";
    } else {
      spec.path = s.location;
    }

    GST_DEBUG_OBJECT(self, "model %s, %s %s, output %s", model.id.c_str(),
                     spec.request.aspect_ratio.c_str(), spec.request.resolution.c_str(),
                     spec.path.c_str());
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->spec = std::make_shared<const JobSpec>(std::move(spec));
    impl->error_posted = false;
    impl->path = impl->spec->path;
    impl->temp_dir = temp_dir;
    return TRUE;
  });
}

static gboolean gem_veo_src_stop(GstBaseSrc *src) {
  auto *impl = GEM_VEO_SRC(src)->impl;
  impl->job.cancel_and_join();
  std::string temp_dir;
  int fd;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->spec.reset();
    temp_dir = std::exchange(impl->temp_dir, std::string());
    fd = std::exchange(impl->fd, -1);
  }
  if (fd >= 0)
    close(fd);
  if (!temp_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir, ec);
  }
  return TRUE;
}

static gboolean gem_veo_src_unlock(GstBaseSrc *src) {
  GEM_VEO_SRC(src)->impl->job.set_flushing(true);
  return TRUE;
}

static gboolean gem_veo_src_unlock_stop(GstBaseSrc *src) {
  GEM_VEO_SRC(src)->impl->job.set_flushing(false);
  return TRUE;
}

static gboolean gem_veo_src_is_seekable(GstBaseSrc *) { return TRUE; }

static gboolean gem_veo_src_get_size(GstBaseSrc *src, guint64 *size) {
  auto &job = GEM_VEO_SRC(src)->impl->job;
  if (!job.finished() || !job.result())
    return FALSE;
  *size = *job.result();
  return TRUE;
}

static GstFlowReturn gem_veo_src_create(GstBaseSrc *src, guint64 offset, guint length,
                                        GstBuffer **out) {
  auto *self = GEM_VEO_SRC(src);
  auto *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(src), GST_FLOW_ERROR, [&]() -> GstFlowReturn {
    std::shared_ptr<const JobSpec> spec;
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      spec = impl->spec;
    }
    if (!spec)
      return GST_FLOW_FLUSHING;
    impl->job.start_once([self, impl, spec](const gemstream::CancelToken &cancel) {
      return run_job(self, impl, *spec, cancel);
    });
    if (impl->job.wait() == gemstream::gst::AsyncJob<std::uint64_t>::Wait::Flushing)
      return GST_FLOW_FLUSHING;
    if (const auto &error = impl->job.error()) {
      if (error->kind() == ErrorKind::Cancelled)
        return GST_FLOW_FLUSHING;
      bool first;
      {
        std::lock_guard<std::mutex> guard(impl->lock);
        first = !std::exchange(impl->error_posted, true);
      }
      if (first)
        GEM_POST_ENGINE_ERROR(src, *error, "Video generation failed");
      return GST_FLOW_ERROR;
    }
    const std::uint64_t size = *impl->job.result();
    int fd, open_errno = 0;
    std::string path;
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      if (impl->fd < 0) {
        impl->fd = g_open(impl->path.c_str(), O_RDONLY | O_CLOEXEC, 0);
        open_errno = errno;
      }
      fd = impl->fd;
      path = impl->path;
    }
    if (fd < 0) {
      GST_ELEMENT_ERROR(src, RESOURCE, OPEN_READ, ("Cannot open the downloaded video."),
                        ("%s: %s", path.c_str(), g_strerror(open_errno)));
      return GST_FLOW_ERROR;
    }
    if (offset >= size)
      return GST_FLOW_EOS;
    guint n = static_cast<guint>(std::min<std::uint64_t>(length, size - offset));
    GstBuffer *buf = gst_buffer_new_allocate(nullptr, n, nullptr);
    GstMapInfo map;
    gst_buffer_map(buf, &map, GST_MAP_WRITE);
    ssize_t got = pread(fd, map.data, n, static_cast<off_t>(offset));
    int err = errno;
    gst_buffer_unmap(buf, &map);
    if (got <= 0) {
      gst_buffer_unref(buf);
      GST_ELEMENT_ERROR(src, RESOURCE, READ, ("Cannot read the downloaded video."),
                        ("pread at %" G_GUINT64_FORMAT ": %s", offset,
                         got < 0 ? g_strerror(err) : "unexpected end of file"));
      return GST_FLOW_ERROR;
    }
    gst_buffer_set_size(buf, got);
    GST_BUFFER_OFFSET(buf) = offset;
    GST_BUFFER_OFFSET_END(buf) = offset + got;
    GST_TRACE_OBJECT(self, "read %zd bytes at %" G_GUINT64_FORMAT, got, offset);
    *out = buf;
    return GST_FLOW_OK;
  });
}

static void gem_veo_src_finalize(GObject *object) {
  auto *self = GEM_VEO_SRC(object);
  delete self->impl;
  self->impl = nullptr;
  G_OBJECT_CLASS(gem_veo_src_parent_class)->finalize(object);
}

static void gem_veo_src_init(GemVeoSrc *self) {
  self->impl = new GemVeoSrcImpl();
  gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_BYTES);
  gst_base_src_set_blocksize(GST_BASE_SRC(self), kBlockSize);
}

static void gem_veo_src_class_init(GemVeoSrcClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);
  auto *basesrc_class = GST_BASE_SRC_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gem_veo_src_debug, "veosrc", 0, "gemstream Veo video source");

  gobject_class->set_property = gem_veo_src_set_property;
  gobject_class->get_property = gem_veo_src_get_property;
  gobject_class->finalize = gem_veo_src_finalize;

  const auto flags =
      static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  g_object_class_install_property(
      gobject_class, PROP_PROMPT,
      g_param_spec_string("prompt", "Prompt",
                          "What the video shows. With use-template=true (the default) it is the "
                          "description in the background-video template of "
                          "config/media_generation.json. Required unless 'operation' is set.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_enum("model", "Model",
                        "Video model. 'default' uses GEMINI_VIDEO_MODEL if set, else the config's "
                        "background_video default (Veo 3 Fast).",
                        GEM_TYPE_VEO_MODEL, MODEL_DEFAULT, flags));
  g_object_class_install_property(
      gobject_class, PROP_MOOD,
      g_param_spec_enum("mood", "Mood", "Mood preset from the background-video template.",
                        GEM_TYPE_VEO_MOOD, MOOD_NONE, flags));
  g_object_class_install_property(
      gobject_class, PROP_ASPECT_RATIO,
      g_param_spec_enum("aspect-ratio", "Aspect ratio", "Frame shape of the video.",
                        GEM_TYPE_VEO_ASPECT_RATIO, ASPECT_16_9, flags));
  g_object_class_install_property(
      gobject_class, PROP_RESOLUTION,
      g_param_spec_enum("resolution", "Resolution", "Video resolution (1080p needs 16:9).",
                        GEM_TYPE_VEO_RESOLUTION, RES_720P, flags));
  g_object_class_install_property(
      gobject_class, PROP_NEGATIVE_PROMPT,
      g_param_spec_string("negative-prompt", "Negative prompt",
                          "What the video must not show. Empty: the template's negative prompt "
                          "(none with use-template=false).",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_IMAGE_LOCATION,
      g_param_spec_string("image-location", "Start image location",
                          "PNG or JPEG file used as the first frame (for example a cover made by "
                          "imagegensrc). Empty for none.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_POLL_INTERVAL,
      g_param_spec_uint("poll-interval", "Poll interval",
                        "Time between polls of the operation, in milliseconds (Google recommends "
                        "10000).",
                        kMinPollIntervalMs, kMaxPollIntervalMs, kDefaultPollIntervalMs, flags));
  g_object_class_install_property(
      gobject_class, PROP_TIMEOUT,
      g_param_spec_uint("timeout", "Timeout",
                        "Give up waiting for the operation after this many seconds; the error "
                        "names the operation so it can be resumed with 'operation'.",
                        1, kMaxTimeoutSec, kDefaultTimeoutSec, flags));
  g_object_class_install_property(
      gobject_class, PROP_OPERATION,
      g_param_spec_string("operation", "Operation",
                          "Name of an existing operation to resume instead of starting (and "
                          "paying for) a new one, e.g. models/veo-3.0-fast-generate-001/"
                          "operations/abc123. Set by the element once it starts an operation.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_LOCATION,
      g_param_spec_string("location", "Location",
                          "Keep the downloaded MP4 at this path. Empty: a temporary file removed "
                          "when the element stops.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_USE_TEMPLATE,
      g_param_spec_boolean("use-template", "Use template",
                           "Expand the prompt with the background-video template (cinematography, "
                           "mood). FALSE sends the prompt verbatim.",
                           TRUE, flags));
  g_object_class_install_property(
      gobject_class, PROP_API_KEY,
      g_param_spec_string("api-key", "API key",
                          "Gemini API key, sent in the x-goog-api-key header. Write-only. Empty: "
                          "GOOGLE_API_KEY or GEMINI_API_KEY from the environment.",
                          "",
                          static_cast<GParamFlags>(G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS |
                                                   GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(
      gobject_class, PROP_BASE_URL,
      g_param_spec_string("base-url", "Base URL",
                          "API base URL, e.g. http://127.0.0.1:8080. Empty: GEMSTREAM_BASE_URL, "
                          "else Google's endpoint when a key is set, else an in-process local "
                          "backend.",
                          "", flags));

  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Veo video source", "Source/Video/Network",
      "Generates a video with Veo 3 and outputs it as an MP4 byte stream",
      "gemstream developers <dev@gemstream.local>");

  basesrc_class->start = GST_DEBUG_FUNCPTR(gem_veo_src_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR(gem_veo_src_stop);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR(gem_veo_src_unlock);
  basesrc_class->unlock_stop = GST_DEBUG_FUNCPTR(gem_veo_src_unlock_stop);
  basesrc_class->is_seekable = GST_DEBUG_FUNCPTR(gem_veo_src_is_seekable);
  basesrc_class->get_size = GST_DEBUG_FUNCPTR(gem_veo_src_get_size);
  basesrc_class->create = GST_DEBUG_FUNCPTR(gem_veo_src_create);

  gst_type_mark_as_plugin_api(GEM_TYPE_VEO_MODEL, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GEM_TYPE_VEO_MOOD, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GEM_TYPE_VEO_ASPECT_RATIO, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GEM_TYPE_VEO_RESOLUTION, static_cast<GstPluginAPIFlags>(0));
}
