/**
 * SECTION:element-imagegensrc
 * @title: imagegensrc
 *
 * Generates one image with Google's image models — Gemini 2.5 Flash Image ("Nano Banana",
 * generateContent with the IMAGE modality) or Imagen 4 / Imagen 4 Fast (predict) — and pushes
 * it as a single `image/png` buffer followed by EOS.
 *
 * The prompt is the motif of a card cover; it is expanded with the card-cover template of
 * `config/media_generation.json` (style modifier, palette, constraints) unless
 * `use-template=false`. Without `GOOGLE_API_KEY` (or `api-key`) and `base-url`, requests go to the
 * in-process local backend. The request runs on a worker thread started in READY→PAUSED; the
 * streaming thread only waits for it, and a state change to READY/NULL cancels it at once.
 *
 * A `gemstream-cost` element message (kind, model, model-key, usd, units) is posted when the image
 * arrives.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 imagegensrc prompt="meditation practice" style=minimal ! pngdec ! imagefreeze num-buffers=100 ! videoconvert ! autovideosink
 * gst-launch-1.0 imagegensrc prompt="mountain lake" model=imagen-4-fast aspect-ratio=16:9 ! filesink location=cover.png
 * ]|
 */
#include "imagegensrc.h"

#include "common/async_job.h"
#include "common/element_util.h"

#include <gemstream/config.h>
#include <gemstream/genai.h>
#include <gemstream/prompts.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>

GST_DEBUG_CATEGORY_STATIC(gem_image_gen_src_debug);
#define GST_CAT_DEFAULT gem_image_gen_src_debug

namespace {

using gemstream::Error;
using gemstream::ErrorKind;

enum GemImageGenModel { MODEL_NANO_BANANA, MODEL_IMAGEN_4, MODEL_IMAGEN_4_FAST };
enum GemImageGenStyle { STYLE_NONE, STYLE_MINIMAL, STYLE_ABSTRACT, STYLE_NATURE, STYLE_COSMIC };

// Config keys, indexed by the enums above.
constexpr const char *kModelKeys[] = {"nano_banana", "imagen_4", "imagen_4_fast"};
constexpr const char *kStyleKeys[] = {"", "minimal", "abstract", "nature", "cosmic"};

constexpr GemImageGenModel kDefaultModel = MODEL_NANO_BANANA;
constexpr GemImageGenStyle kDefaultStyle = STYLE_NONE;
constexpr const char *kDefaultAspectRatio = "1:1";
constexpr guint kDefaultTimeoutSec = 120;
constexpr guint kMaxTimeoutSec = 3600;

enum {
  PROP_0,
  PROP_PROMPT,
  PROP_MODEL,
  PROP_STYLE,
  PROP_PALETTE,
  PROP_ASPECT_RATIO,
  PROP_USE_TEMPLATE,
  PROP_API_KEY,
  PROP_BASE_URL,
  PROP_TIMEOUT,
};

// Written by set_property, snapshotted in start().
struct Settings {
  std::string prompt;
  GemImageGenModel model = kDefaultModel;
  bool model_set = false;  // an explicit property wins over GEMINI_IMAGE_MODEL
  GemImageGenStyle style = kDefaultStyle;
  std::string palette;
  std::string aspect_ratio = kDefaultAspectRatio;
  bool use_template = true;
  std::string api_key;
  std::string base_url;
  guint timeout_sec = kDefaultTimeoutSec;
};

} // namespace

// Lock order: `lock` before the job's own lock; neither is held while pushing or posting.
struct GemImageGenSrcImpl {
  std::mutex lock;
  Settings settings;
  // State, set up in start() and reset in stop(). The request runs on `job`'s thread, started
  // by the first create().
  gemstream::gst::AsyncJob<gemstream::ImageResult> job;
  std::shared_ptr<gemstream::GenAiClient> client;
  gemstream::ImageRequest request;
  bool pushed = false;
  std::string model_id;
  std::string model_key;
  double usd_per_image = 0;
};

struct _GemImageGenSrc {
  GstBaseSrc parent;
  GemImageGenSrcImpl *impl;
};

G_DEFINE_TYPE(GemImageGenSrc, gem_image_gen_src, GST_TYPE_BASE_SRC)

GType gem_image_gen_model_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {MODEL_NANO_BANANA, "Gemini 2.5 Flash Image (gemini-2.5-flash-image)", "nano-banana"},
      {MODEL_IMAGEN_4, "Imagen 4 (imagen-4.0-generate-001)", "imagen-4"},
      {MODEL_IMAGEN_4_FAST, "Imagen 4 Fast (imagen-4.0-fast-generate-001)", "imagen-4-fast"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemImageGenModel", values));
  return type;
}

GType gem_image_gen_style_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {STYLE_NONE, "No style modifier", "none"},
      {STYLE_MINIMAL, "Minimal flat design", "minimal"},
      {STYLE_ABSTRACT, "Abstract geometric shapes", "abstract"},
      {STYLE_NATURE, "Organic, nature-inspired forms", "nature"},
      {STYLE_COSMIC, "Cosmic, starry atmosphere", "cosmic"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemImageGenStyle", values));
  return type;
}

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS("image/png"));

namespace {

// Width and height from a PNG's IHDR chunk; nullopt if the bytes are not a PNG.
std::optional<std::pair<guint32, guint32>> png_size(const std::string &png) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (png.size() < 24 || png.compare(0, 8, reinterpret_cast<const char *>(sig), 8) != 0 ||
      png.compare(12, 4, "IHDR") != 0)
    return std::nullopt;
  auto be32 = [&](size_t off) {
    return (guint32(guint8(png[off])) << 24) | (guint32(guint8(png[off + 1])) << 16) |
           (guint32(guint8(png[off + 2])) << 8) | guint32(guint8(png[off + 3]));
  };
  return std::make_pair(be32(16), be32(20));
}

} // namespace

static void gem_image_gen_src_set_property(GObject *object, guint prop_id, const GValue *value,
                                           GParamSpec *pspec) {
  auto *impl = GEM_IMAGE_GEN_SRC(object)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_PROMPT:
    s.prompt = gemstream::gst::value_to_string(value);
    break;
  case PROP_MODEL:
    s.model = static_cast<GemImageGenModel>(g_value_get_enum(value));
    s.model_set = true;
    break;
  case PROP_STYLE:
    s.style = static_cast<GemImageGenStyle>(g_value_get_enum(value));
    break;
  case PROP_PALETTE:
    s.palette = gemstream::gst::value_to_string(value);
    break;
  case PROP_ASPECT_RATIO:
    s.aspect_ratio = gemstream::gst::value_to_string(value);
    break;
  case PROP_USE_TEMPLATE:
    s.use_template = g_value_get_boolean(value);
    break;
  case PROP_API_KEY:
    s.api_key = gemstream::gst::value_to_string(value);
    break;
  case PROP_BASE_URL:
    s.base_url = gemstream::gst::value_to_string(value);
    break;
  case PROP_TIMEOUT:
    s.timeout_sec = g_value_get_uint(value);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gem_image_gen_src_get_property(GObject *object, guint prop_id, GValue *value,
                                           GParamSpec *pspec) {
  auto *impl = GEM_IMAGE_GEN_SRC(object)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  const Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_PROMPT:
    g_value_set_string(value, s.prompt.c_str());
    break;
  case PROP_MODEL:
    g_value_set_enum(value, s.model);
    break;
  case PROP_STYLE:
    g_value_set_enum(value, s.style);
    break;
  case PROP_PALETTE:
    g_value_set_string(value, s.palette.c_str());
    break;
  case PROP_ASPECT_RATIO:
    g_value_set_string(value, s.aspect_ratio.c_str());
    break;
  case PROP_USE_TEMPLATE:
    g_value_set_boolean(value, s.use_template);
    break;
  case PROP_BASE_URL:
    g_value_set_string(value, s.base_url.c_str());
    break;
  case PROP_TIMEOUT:
    g_value_set_uint(value, s.timeout_sec);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static gboolean gem_image_gen_src_start(GstBaseSrc *src) {
  auto *self = GEM_IMAGE_GEN_SRC(src);
  auto *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(src), FALSE, [&]() -> gboolean {
    Settings s;
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      s = impl->settings;
    }
    if (s.prompt.empty()) {
      GST_ELEMENT_ERROR(src, RESOURCE, SETTINGS, ("No prompt set."),
                        ("Set the 'prompt' property to what the image should show."));
      return FALSE;
    }

    auto config = gemstream::MediaConfig::load_default();
    auto env = gemstream::EnvSettings::from_environment();
    const std::string model_name =
        (!s.model_set && !env.image_model.empty()) ? env.image_model : kModelKeys[s.model];
    const gemstream::ImageModel &model = config.image_model(model_name);

    gemstream::ImageRequest request;
    request.model_id = model.id;
    request.api = model.api;
    request.aspect_ratio = s.aspect_ratio;
    request.prompt = s.use_template
                         ? gemstream::build_card_cover_prompt(
                               config, {s.prompt, kStyleKeys[s.style], s.palette})
                         : s.prompt;

    gemstream::ClientOptions options;
    options.request_timeout = std::chrono::seconds(s.timeout_sec);
    auto client = std::make_shared<gemstream::GenAiClient>(
        gemstream::resolve_endpoint(s.api_key, s.base_url), options);

    GST_DEBUG_OBJECT(self, "will generate with %s (%s), aspect ratio %s", model.id.c_str(),
                     model.key.c_str(), s.aspect_ratio.c_str());

    std::lock_guard<std::mutex> guard(impl->lock);
    impl->client = std::move(client);
    impl->request = std::move(request);
    impl->pushed = false;
    impl->model_id = model.id;
    impl->model_key = model.key;
    impl->usd_per_image = model.usd_per_image;
    return TRUE;
  });
}

static gboolean gem_image_gen_src_stop(GstBaseSrc *src) {
  auto *impl = GEM_IMAGE_GEN_SRC(src)->impl;
  impl->job.cancel_and_join();
  std::lock_guard<std::mutex> guard(impl->lock);
  impl->client.reset();
  impl->pushed = false;
  return TRUE;
}

static gboolean gem_image_gen_src_unlock(GstBaseSrc *src) {
  GEM_IMAGE_GEN_SRC(src)->impl->job.set_flushing(true);
  return TRUE;
}

static gboolean gem_image_gen_src_unlock_stop(GstBaseSrc *src) {
  GEM_IMAGE_GEN_SRC(src)->impl->job.set_flushing(false);
  return TRUE;
}

// Caps are only known once the image arrives; create() sets them.
static gboolean gem_image_gen_src_negotiate(GstBaseSrc *) { return TRUE; }

static gboolean gem_image_gen_src_is_seekable(GstBaseSrc *) { return FALSE; }

static GstFlowReturn gem_image_gen_src_create(GstBaseSrc *src, guint64, guint, GstBuffer **out) {
  auto *self = GEM_IMAGE_GEN_SRC(src);
  auto *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(src), GST_FLOW_ERROR, [&]() -> GstFlowReturn {
    std::shared_ptr<gemstream::GenAiClient> client;
    gemstream::ImageRequest request;
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      if (impl->pushed)
        return GST_FLOW_EOS;
      client = impl->client;
      request = impl->request;
    }
    impl->job.start_once([client, request](const gemstream::CancelToken &cancel) {
      return client->generate_image(request, cancel);
    });
    if (impl->job.wait() == gemstream::gst::AsyncJob<gemstream::ImageResult>::Wait::Flushing)
      return GST_FLOW_FLUSHING;
    if (const auto &error = impl->job.error()) {
      if (error->kind() == ErrorKind::Cancelled)
        return GST_FLOW_FLUSHING;
      GEM_POST_ENGINE_ERROR(src, *error, "Image generation failed");
      return GST_FLOW_ERROR;
    }
    std::string bytes = impl->job.result()->bytes;
    std::string model_id, model_key;
    double usd = 0;
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      impl->pushed = true;
      model_id = impl->model_id;
      model_key = impl->model_key;
      usd = impl->usd_per_image;
    }

    auto size = png_size(bytes);
    if (!size) {
      GST_ELEMENT_ERROR(src, STREAM, WRONG_TYPE, ("The service returned an image that is not a PNG."),
                        ("%zu bytes without a PNG signature/IHDR", bytes.size()));
      return GST_FLOW_ERROR;
    }
    GST_DEBUG_OBJECT(self, "got a %ux%u PNG of %zu bytes", size->first, size->second, bytes.size());

    GstCaps *caps = gst_caps_new_simple("image/png", "width", G_TYPE_INT, gint(size->first),
                                        "height", G_TYPE_INT, gint(size->second), "framerate",
                                        GST_TYPE_FRACTION, 0, 1, nullptr);
    gboolean caps_ok = gst_base_src_set_caps(src, caps);
    gst_caps_unref(caps);
    if (!caps_ok)
      return GST_FLOW_NOT_NEGOTIATED;

    gemstream::gst::post_cost_message(GST_ELEMENT(src), "image", model_id, model_key, usd, 1);

    auto *holder = new std::string(std::move(bytes));
    GstBuffer *buf = gst_buffer_new_wrapped_full(
        GST_MEMORY_FLAG_READONLY, holder->data(), holder->size(), 0, holder->size(), holder,
        [](gpointer p) { delete static_cast<std::string *>(p); });
    GST_BUFFER_PTS(buf) = 0;
    GST_BUFFER_DTS(buf) = 0;
    GST_BUFFER_OFFSET(buf) = 0;
    GST_BUFFER_OFFSET_END(buf) = holder->size();
    *out = buf;
    return GST_FLOW_OK;
  });
}

static void gem_image_gen_src_finalize(GObject *object) {
  auto *self = GEM_IMAGE_GEN_SRC(object);
  delete self->impl;
  self->impl = nullptr;
  G_OBJECT_CLASS(gem_image_gen_src_parent_class)->finalize(object);
}

static void gem_image_gen_src_init(GemImageGenSrc *self) {
  self->impl = new GemImageGenSrcImpl();
  gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
  gst_base_src_set_live(GST_BASE_SRC(self), FALSE);
}

static void gem_image_gen_src_class_init(GemImageGenSrcClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);
  auto *basesrc_class = GST_BASE_SRC_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gem_image_gen_src_debug, "imagegensrc", 0,
                          "gemstream image generation source");

  gobject_class->set_property = gem_image_gen_src_set_property;
  gobject_class->get_property = gem_image_gen_src_get_property;
  gobject_class->finalize = gem_image_gen_src_finalize;

  const auto flags =
      static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  g_object_class_install_property(
      gobject_class, PROP_PROMPT,
      g_param_spec_string("prompt", "Prompt",
                          "What the image shows. With use-template=true (the default) this is the "
                          "motif of a card cover, expanded with the card-cover template of "
                          "config/media_generation.json. Required.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_enum("model", "Model",
                        "Image model. When not set, GEMINI_IMAGE_MODEL (a config key or model id) "
                        "is used if present, else nano-banana.",
                        GEM_TYPE_IMAGE_GEN_MODEL, kDefaultModel, flags));
  g_object_class_install_property(
      gobject_class, PROP_STYLE,
      g_param_spec_enum("style", "Style",
                        "Style modifier added to the prompt from the card-cover template.",
                        GEM_TYPE_IMAGE_GEN_STYLE, kDefaultStyle, flags));
  g_object_class_install_property(
      gobject_class, PROP_PALETTE,
      g_param_spec_string("palette", "Palette",
                          "Colour palette hint, e.g. \"teal and gold\". Empty for none.", "",
                          flags));
  g_object_class_install_property(
      gobject_class, PROP_ASPECT_RATIO,
      g_param_spec_string("aspect-ratio", "Aspect ratio",
                          "Aspect ratio as W:H. Nano Banana: 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, "
                          "9:16, 16:9, 21:9. Imagen 4: 1:1, 3:4, 4:3, 9:16, 16:9.",
                          kDefaultAspectRatio, flags));
  g_object_class_install_property(
      gobject_class, PROP_USE_TEMPLATE,
      g_param_spec_boolean("use-template", "Use template",
                           "Expand the prompt with the card-cover template (style, palette, "
                           "constraints). FALSE sends the prompt verbatim.",
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
  g_object_class_install_property(
      gobject_class, PROP_TIMEOUT,
      g_param_spec_uint("timeout", "Timeout",
                        "Deadline for each HTTP request, in seconds (retries included per "
                        "attempt).",
                        1, kMaxTimeoutSec, kDefaultTimeoutSec, flags));

  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Generated image source", "Source/Image/Network",
      "Generates an image with Gemini 2.5 Flash Image or Imagen 4 and outputs it as PNG",
      "gemstream developers <dev@gemstream.local>");

  basesrc_class->start = GST_DEBUG_FUNCPTR(gem_image_gen_src_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR(gem_image_gen_src_stop);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR(gem_image_gen_src_unlock);
  basesrc_class->unlock_stop = GST_DEBUG_FUNCPTR(gem_image_gen_src_unlock_stop);
  basesrc_class->negotiate = GST_DEBUG_FUNCPTR(gem_image_gen_src_negotiate);
  basesrc_class->is_seekable = GST_DEBUG_FUNCPTR(gem_image_gen_src_is_seekable);
  basesrc_class->create = GST_DEBUG_FUNCPTR(gem_image_gen_src_create);

  gst_type_mark_as_plugin_api(GEM_TYPE_IMAGE_GEN_MODEL, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GEM_TYPE_IMAGE_GEN_STYLE, static_cast<GstPluginAPIFlags>(0));
}
