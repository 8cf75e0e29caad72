/**
 * SECTION:element-framesampler
 * @title: framesampler
 *
 * Picks the frames of a raw video stream that are worth showing to a multimodal model and
 * shrinks them to the size the model needs: at most `max-fps` frames per second, no frame that
 * looks like the previous output frame, and no frame larger than `max-size` × `max-size`. It
 * sits between a camera or decoder and an encoder — `jpegenc` in front of `geminilivesink`'s
 * video pad (the Live API takes about one frame per second; 768 × 768 is enough detail for
 * it), or in front of a file sink to sample a video for analysis.
 *
 * Each frame is judged at its running time (its PTS on the segment's timeline):
 *
 * 1. Rate: time is divided into slots of 1 / `max-fps`, anchored at the first output frame. A
 *    frame passes when its running time has reached the next free slot, so there is at most one
 *    output frame per slot and the average rate is exactly `max-fps` when the input is faster
 *    (30 fps at `max-fps=1` gives the frames at 0 s, 1 s, 2 s, …; 24 fps at `max-fps=10` gives
 *    10 frames every second, without drift). After a pause longer than a slot, or when time
 *    goes backwards, the grid restarts at the next frame. Frames dropped here are counted in
 *    `dropped-rate`.
 * 2. Similarity: the frame's luma is box-averaged down to a 32 × 32 thumbnail (which averages
 *    sensor noise away) and compared with the thumbnail of the last output frame. If the mean
 *    absolute difference, in 8-bit luma levels, is below `duplicate-threshold`, the frame is
 *    dropped and counted in `dropped-duplicates` — unless `max-interval` has passed since the
 *    last output frame, so the model still sees a still scene now and then. A dropped duplicate
 *    does not use up its slot: the first frame that differs goes out at once. Comparing with the
 *    last output, not the previous input, lets slow drifts through once they add up.
 *
 * The first frame, and the first frame after a flush, always passes. Frames outside the segment
 * are dropped, as a sink would drop them. A frame without a PTS is placed one duration (the
 * buffer's, or 1 / the caps' frame rate) after the previous frame; failing that, at the
 * pipeline clock's running time; failing that, it is not rate-limited (with a warning).
 *
 * Output frames keep their input PTS, DTS, duration and flags; the duration stays that of the
 * input frame and is not stretched over the dropped frames. Frames are scaled to fit within
 * `max-size` × `max-size` keeping their aspect ratio (and pixel aspect ratio), never upscaled,
 * with dimensions rounded down to even numbers where the format subsamples chroma; the format
 * is never changed. Frames that already fit pass without a copy. A downstream caps filter asking
 * for a different (smaller) size is honoured. While frames can be dropped, the output caps say
 * `framerate=0/1` (variable) with `max-framerate` the upper bound, which `jpegenc` and the
 * encoders accept; with `max-fps=0` and `duplicate-threshold=0` nothing is dropped and the input
 * frame rate is kept.
 *
 * No input buffer is held, so small upstream buffer pools (cameras) never run dry. Nothing is
 * posted per frame. Every property can be changed while playing; a change of `max-size` or
 * `max-fps` renegotiates the output caps at the next frame. The statistics are reset when the
 * element goes from READY to PAUSED.
 *
 * `jpegenc` writes the YUV it is given into a JFIF file, which viewers (and the model) read
 * as full-range BT.601, while decoded video and cameras are mostly limited range: black would
 * come out dark grey. Convert to RGB in front of it, after the sampler so that only the chosen
 * frames are converted, and libjpeg makes the JFIF colours itself:
 * `framesampler ! videoconvert ! video/x-raw,format=RGB ! jpegenc`. (Asking for a full-range
 * YUV colorimetry there instead would be passed upstream as a preference, and a converter in
 * front could then convert the whole stream.)
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! framesampler ! videoconvert ! video/x-raw,format=RGB ! \
 *     jpegenc ! multifilesink location=frame-%05d.jpg
 * gst-launch-1.0 v4l2src ! videoconvert ! framesampler max-fps=2 max-size=512 duplicate-threshold=4 ! jpegenc ! fakesink
 * gst-launch-1.0 filesrc location=talk.mp4 ! decodebin ! videoconvert ! \
 *     framesampler max-fps=1/10 duplicate-threshold=0 ! videoconvert ! video/x-raw,format=RGB ! \
 *     jpegenc ! multifilesink location=frame-%03d.jpg
 * ]|
 */
#include "framesampler.h"

#include "common/element_util.h"
#include "common/video_frame.h"

#include <gst/video/video.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(gem_frame_sampler_debug);
#define GST_CAT_DEFAULT gem_frame_sampler_debug

namespace {

constexpr gint kDefaultMaxFpsN = 1;
constexpr gint kDefaultMaxFpsD = 1;
constexpr gint kMaxMaxFps = 1000;
constexpr guint kDefaultMaxSize = 768;
constexpr guint kMaxMaxSize = 32768;
constexpr gdouble kDefaultDuplicateThreshold = 2.0;
constexpr gdouble kMaxDuplicateThreshold = 255.0;
constexpr guint64 kDefaultMaxInterval = 10 * GST_SECOND;

// The similarity thumbnail: kThumbSize × kThumbSize bins, each the mean luma of its block,
// from at most kRowsPerBin evenly spread rows per block (all columns).
constexpr int kThumbSize = 32;
constexpr int kRowsPerBin = 4;

enum {
  PROP_0,
  PROP_MAX_FPS,
  PROP_MAX_SIZE,
  PROP_DUPLICATE_THRESHOLD,
  PROP_MAX_INTERVAL,
  PROP_DROPPED_RATE,
  PROP_DROPPED_DUPLICATES,
};

struct Settings {
  gint max_fps_n = kDefaultMaxFpsN;
  gint max_fps_d = kDefaultMaxFpsD;
  guint max_size = kDefaultMaxSize;
  gdouble duplicate_threshold = kDefaultDuplicateThreshold;
  guint64 max_interval = kDefaultMaxInterval;

  bool rate_limited() const { return max_fps_n > 0; }
  bool drops_frames() const { return rate_limited() || duplicate_threshold > 0; }
};

struct Thumbnail {
  int width = 0; // 0: none
  int height = 0;
  std::array<float, kThumbSize * kThumbSize> luma{};
};

// Slots of 1/max-fps: slot i starts at base + i/max-fps. `base` is the running time of the
// output frame that (re)started the grid.
struct RateGrid {
  GstClockTime base = GST_CLOCK_TIME_NONE;
  guint64 index = 0;
  gint fps_n = 0;
  gint fps_d = 1;

  GstClockTime next_slot() const {
    return base + gst_util_uint64_scale(index, GST_SECOND * static_cast<guint64>(fps_d),
                                        static_cast<guint64>(fps_n));
  }
  void restart(GstClockTime t, gint n, gint d) {
    base = t;
    index = 1;
    fps_n = n;
    fps_d = d;
  }
  // `t`, at or after next_slot(), has just been output.
  void advance(GstClockTime t, gint n, gint d) {
    if (!GST_CLOCK_TIME_IS_VALID(base) || n != fps_n || d != fps_d) {
      restart(t, n, d);
      return;
    }
    ++index;
    if (t >= next_slot()) // the output came more than a slot late: a pause in the input
      restart(t, n, d);
  }
};

struct VideoConverterDeleter {
  void operator()(GstVideoConverter *c) const noexcept { gst_video_converter_free(c); }
};
using ConverterPtr = std::unique_ptr<GstVideoConverter, VideoConverterDeleter>;

// Selection state, owned by the streaming thread (chain and serialized events, under the sink
// pad's STREAM_LOCK); start()/stop() touch it only while the pads are inactive.
struct StreamState {
  RateGrid grid;
  GstClockTime last_out_time = GST_CLOCK_TIME_NONE;
  Thumbnail last_out_thumb;
  // Where frames without a PTS are placed: at the end of the previous frame if it had a
  // duration, else frames_since_anchor frame periods (of the caps) after the anchor, the last
  // frame placed by its PTS, a duration or the clock.
  GstClockTime next_by_duration = GST_CLOCK_TIME_NONE;
  GstClockTime anchor = GST_CLOCK_TIME_NONE;
  guint64 frames_since_anchor = 0;
  bool warned_untimed = false;

  void reset() { *this = StreamState(); }
};

enum class Verdict { Pass, TooSoon, Duplicate, OutsideSegment };

const char *to_string(Verdict v) {
  switch (v) {
  case Verdict::Pass: return "pass";
  case Verdict::TooSoon: return "too soon";
  case Verdict::Duplicate: return "duplicate";
  case Verdict::OutsideSegment: return "outside the segment";
  }
  return "?";
}

} // namespace

// Lock order: the sink pad's STREAM_LOCK → lock. `lock` is a leaf guarding `settings`; it is
// never held while pushing, sending events, posting messages or renegotiating.
struct GemFrameSamplerImpl {
  std::mutex lock;
  Settings settings;

  std::atomic<guint64> dropped_rate{0};
  std::atomic<guint64> dropped_duplicates{0};

  // Streaming thread only (see StreamState); `converter` is set in set_info, used in
  // transform_frame, both on the streaming thread, and is null in passthrough.
  StreamState state;
  ConverterPtr converter;
  std::vector<guint8> line;      // one unpacked line, thumbnail scratch
  std::vector<guint32> bin_sums; // thumbnail scratch
  std::vector<guint32> bin_counts;
  std::vector<int> column_bins;

  Settings snapshot() {
    std::lock_guard<std::mutex> guard(lock);
    return settings;
  }
};

struct _GemFrameSampler {
  GstVideoFilter parent;
  GemFrameSamplerImpl *impl;
};

G_DEFINE_TYPE(GemFrameSampler, gem_frame_sampler, GST_TYPE_VIDEO_FILTER)

// 8-bit formats only: the thumbnail reads the unpacked AYUV / ARGB lines.
#define FRAME_SAMPLER_FORMATS                                                                      \
  "{ I420, YV12, NV12, NV21, Y42B, Y444, AYUV, YUY2, UYVY, YVYU, RGBA, BGRA, ARGB, ABGR, RGBx, "   \
  "BGRx, xRGB, xBGR, RGB, BGR, GRAY8 }"

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(FRAME_SAMPLER_FORMATS)));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(FRAME_SAMPLER_FORMATS)));

namespace {

// ---- sizes and caps ---------------------------------------------------------------------------

struct Size {
  gint width;
  gint height;
};

// Size granularity of a format: 2 where chroma is subsampled in that direction.
Size alignment_of(const GstVideoFormatInfo *finfo) {
  Size a{1, 1};
  for (guint c = 0; c < GST_VIDEO_FORMAT_INFO_N_COMPONENTS(finfo); ++c) {
    a.width = std::max(a.width, 1 << GST_VIDEO_FORMAT_INFO_W_SUB(finfo, c));
    a.height = std::max(a.height, 1 << GST_VIDEO_FORMAT_INFO_H_SUB(finfo, c));
  }
  return a;
}

gint align_down(gint v, gint unit, gint limit) {
  return std::min(limit, std::max(unit, v - v % unit));
}

// The output size for an input frame: within max_size × max_size, aspect ratio kept, never
// larger than the input, aligned for the format whenever it is scaled.
Size target_size(const GstVideoFormatInfo *finfo, Size in, guint max_size) {
  const auto limit = static_cast<gint>(std::min<guint>(max_size, G_MAXINT));
  if (max_size == 0 || (in.width <= limit && in.height <= limit))
    return in;
  Size out;
  if (in.width >= in.height) {
    out.width = limit;
    out.height = gst_util_uint64_scale_int_round(in.height, limit, in.width);
  } else {
    out.height = limit;
    out.width = gst_util_uint64_scale_int_round(in.width, limit, in.height);
  }
  const Size unit = alignment_of(finfo);
  out.width = align_down(out.width, unit.width, in.width);
  out.height = align_down(out.height, unit.height, in.height);
  return out;
}

// Any size from 1 up to the largest the field allows: the element only scales down.
void allow_downscale(GstStructure *s, const char *field) {
  const GValue *v = gst_structure_get_value(s, field);
  gint max = G_MAXINT;
  if (v && G_VALUE_HOLDS_INT(v))
    max = g_value_get_int(v);
  else if (v && GST_VALUE_HOLDS_INT_RANGE(v))
    max = gst_value_get_int_range_max(v);
  if (max > 1)
    gst_structure_set(s, field, GST_TYPE_INT_RANGE, 1, max, nullptr);
  else
    gst_structure_set(s, field, G_TYPE_INT, 1, nullptr);
}

bool fixed_fraction(const GstStructure *s, const char *field, gint *n, gint *d) {
  const GValue *v = gst_structure_get_value(s, field);
  if (!v || !GST_VALUE_HOLDS_FRACTION(v))
    return false;
  *n = gst_value_get_fraction_numerator(v);
  *d = gst_value_get_fraction_denominator(v);
  return true;
}

// Output rate of a stream from which frames are dropped: variable, bounded by the smaller of
// max-fps and the input rate when either is known.
void set_variable_rate(GstStructure *s, const Settings &settings) {
  gint in_n = 0, in_d = 1;
  bool in_known = fixed_fraction(s, "framerate", &in_n, &in_d) && in_n > 0;
  if (!in_known)
    in_known = fixed_fraction(s, "max-framerate", &in_n, &in_d) && in_n > 0;

  gint max_n = 0, max_d = 1;
  if (settings.rate_limited()) {
    max_n = settings.max_fps_n;
    max_d = settings.max_fps_d;
    if (in_known && gst_util_fraction_compare(in_n, in_d, max_n, max_d) < 0) {
      max_n = in_n;
      max_d = in_d;
    }
  } else if (in_known) {
    max_n = in_n;
    max_d = in_d;
  }
  gst_structure_set(s, "framerate", GST_TYPE_FRACTION, 0, 1, nullptr);
  if (max_n > 0)
    gst_structure_set(s, "max-framerate", GST_TYPE_FRACTION, max_n, max_d, nullptr);
  else
    gst_structure_remove_field(s, "max-framerate");
}

// ---- frame timing -----------------------------------------------------------------------------

struct FrameTime {
  GstClockTime running_time = GST_CLOCK_TIME_NONE; // NONE: cannot be known
  bool outside_segment = false;
};

// The running time at which a frame is judged.
FrameTime frame_time(GemFrameSampler *self, GstBuffer *buf) {
  auto *trans = GST_BASE_TRANSFORM(self);
  StreamState &st = self->impl->state;
  const GstVideoInfo &info = GST_VIDEO_FILTER(self)->in_info;

  GstClockTime t = GST_CLOCK_TIME_NONE;
  bool counted = false;
  const GstClockTime pts = GST_BUFFER_PTS(buf);
  if (GST_CLOCK_TIME_IS_VALID(pts)) {
    if (trans->segment.format == GST_FORMAT_TIME) {
      t = gst_segment_to_running_time(&trans->segment, GST_FORMAT_TIME, pts);
      if (!GST_CLOCK_TIME_IS_VALID(t))
        return {GST_CLOCK_TIME_NONE, true};
    } else {
      t = pts;
    }
  } else if (GST_CLOCK_TIME_IS_VALID(st.next_by_duration)) {
    t = st.next_by_duration;
  } else if (GST_CLOCK_TIME_IS_VALID(st.anchor) && GST_VIDEO_INFO_FPS_N(&info) > 0) {
    // Counted from the anchor, so the rounding of 1/fps does not accumulate.
    t = st.anchor + gst_util_uint64_scale(++st.frames_since_anchor,
                                          GST_SECOND * GST_VIDEO_INFO_FPS_D(&info),
                                          GST_VIDEO_INFO_FPS_N(&info));
    counted = true;
  } else {
    t = gst_element_get_current_running_time(GST_ELEMENT(self));
    // Only differences matter: without a clock, the first frame opens the timeline at 0.
    if (!GST_CLOCK_TIME_IS_VALID(t) && !GST_CLOCK_TIME_IS_VALID(st.anchor))
      t = 0;
  }

  if (!counted && GST_CLOCK_TIME_IS_VALID(t)) {
    st.anchor = t;
    st.frames_since_anchor = 0;
  }
  st.next_by_duration = GST_CLOCK_TIME_IS_VALID(t) && GST_BUFFER_DURATION_IS_VALID(buf)
                            ? t + GST_BUFFER_DURATION(buf)
                            : GST_CLOCK_TIME_NONE;
  return {t, false};
}

// ---- similarity -------------------------------------------------------------------------------


// Box-averaged luma thumbnail of a frame. Every supported format unpacks to 8-bit AYUV (luma
// in byte 1) or ARGB (luma from BT.601 weights), so one loop serves them all.
bool compute_thumbnail(GemFrameSampler *self, GstBuffer *buf, Thumbnail *out) {
  GemFrameSamplerImpl *impl = self->impl;
  gemstream::gst::MappedFrame mapped(&GST_VIDEO_FILTER(self)->in_info, buf);
  if (!mapped) {
    GST_WARNING_OBJECT(self, "cannot map frame %" GST_PTR_FORMAT "; not comparing it", buf);
    return false;
  }
  GstVideoFrame *frame = mapped.get();
  const GstVideoFormatInfo *finfo = frame->info.finfo;
  if (finfo->unpack_format != GST_VIDEO_FORMAT_AYUV &&
      finfo->unpack_format != GST_VIDEO_FORMAT_ARGB)
    return false;
  const bool rgb = finfo->unpack_format == GST_VIDEO_FORMAT_ARGB;
  const int width = GST_VIDEO_FRAME_WIDTH(frame);
  const int height = GST_VIDEO_FRAME_HEIGHT(frame);
  if (width <= 0 || height <= 0)
    return false;
  const int tw = std::min(kThumbSize, width);
  const int th = std::min(kThumbSize, height);

  // Unpack functions may write one pixel past an odd width for subsampled formats.
  impl->line.resize(static_cast<std::size_t>(width + 2) * 4);
  impl->bin_sums.assign(static_cast<std::size_t>(tw * th), 0);
  impl->bin_counts.assign(static_cast<std::size_t>(tw * th), 0);
  impl->column_bins.resize(static_cast<std::size_t>(width));
  for (int x = 0; x < width; ++x)
    impl->column_bins[x] = static_cast<int>(static_cast<gint64>(x) * tw / width);

  const int row_step = std::max(1, height / (th * kRowsPerBin));
  for (int y = 0; y < height; y += row_step) {
    finfo->unpack_func(finfo, GST_VIDEO_PACK_FLAG_NONE, impl->line.data(), frame->data,
                       frame->info.stride, 0, y, width);
    const int row_bin = static_cast<int>(static_cast<gint64>(y) * th / height) * tw;
    const guint8 *p = impl->line.data();
    for (int x = 0; x < width; ++x, p += 4) {
      const guint32 luma = rgb ? (77u * p[1] + 150u * p[2] + 29u * p[3]) >> 8 : p[1];
      const auto bin = static_cast<std::size_t>(row_bin + impl->column_bins[x]);
      impl->bin_sums[bin] += luma;
      impl->bin_counts[bin] += 1;
    }
  }
  out->width = tw;
  out->height = th;
  for (std::size_t i = 0; i < impl->bin_sums.size(); ++i)
    out->luma[i] = impl->bin_counts[i] ? static_cast<float>(impl->bin_sums[i]) /
                                             static_cast<float>(impl->bin_counts[i])
                                       : 0.0f;
  return true;
}

// Mean absolute difference in luma levels; negative when the thumbnails are not comparable.
double thumbnail_difference(const Thumbnail &a, const Thumbnail &b) {
  if (a.width == 0 || a.width != b.width || a.height != b.height)
    return -1.0;
  const int n = a.width * a.height;
  double sum = 0;
  for (int i = 0; i < n; ++i)
    sum += std::abs(a.luma[i] - b.luma[i]);
  return sum / n;
}

// ---- selection --------------------------------------------------------------------------------

Verdict select_frame(GemFrameSampler *self, GstBuffer *buf) {
  GemFrameSamplerImpl *impl = self->impl;
  StreamState &st = impl->state;
  const Settings settings = impl->snapshot();

  const FrameTime ft = frame_time(self, buf);
  if (ft.outside_segment)
    return Verdict::OutsideSegment;
  const GstClockTime t = ft.running_time;
  const bool timed = GST_CLOCK_TIME_IS_VALID(t);
  if (!timed && settings.rate_limited() && !st.warned_untimed) {
    st.warned_untimed = true;
    GST_WARNING_OBJECT(self, "frames have no timestamps, no duration and no frame rate, and "
                             "there is no clock: max-fps cannot limit them");
  }

  if (timed && GST_CLOCK_TIME_IS_VALID(st.last_out_time) && t < st.last_out_time) {
    GST_DEBUG_OBJECT(self,
                     "time went back from %" GST_TIME_FORMAT " to %" GST_TIME_FORMAT
                     "; restarting the rate grid",
                     GST_TIME_ARGS(st.last_out_time), GST_TIME_ARGS(t));
    st.grid = RateGrid();
    st.last_out_time = GST_CLOCK_TIME_NONE;
  }

  if (settings.rate_limited() && timed && GST_CLOCK_TIME_IS_VALID(st.last_out_time)) {
    // Also when max-fps was changed while playing: the new grid starts at the last output.
    if (!GST_CLOCK_TIME_IS_VALID(st.grid.base) || st.grid.fps_n != settings.max_fps_n ||
        st.grid.fps_d != settings.max_fps_d)
      st.grid.restart(st.last_out_time, settings.max_fps_n, settings.max_fps_d);
    if (t < st.grid.next_slot())
      return Verdict::TooSoon;
  }

  Thumbnail thumb;
  if (settings.duplicate_threshold > 0 && compute_thumbnail(self, buf, &thumb)) {
    const double diff = thumbnail_difference(thumb, st.last_out_thumb);
    const bool overdue = settings.max_interval > 0 && timed &&
                         GST_CLOCK_TIME_IS_VALID(st.last_out_time) &&
                         t - st.last_out_time >= settings.max_interval;
    GST_TRACE_OBJECT(self, "difference to the last output frame: %.3f", diff);
    if (diff >= 0 && diff < settings.duplicate_threshold && !overdue)
      return Verdict::Duplicate;
  }

  st.last_out_thumb = thumb;
  if (timed) {
    st.last_out_time = t;
    if (settings.rate_limited())
      st.grid.advance(t, settings.max_fps_n, settings.max_fps_d);
  }
  return Verdict::Pass;
}

} // namespace

// ---- GstBaseTransform / GstVideoFilter ------------------------------------------------------

static GstCaps *gem_frame_sampler_transform_caps(GstBaseTransform *trans, GstPadDirection direction,
                                                 GstCaps *caps, GstCaps *filter) {
  auto *self = GEM_FRAME_SAMPLER(trans);
  return GEM_GUARDED(GST_ELEMENT(self), static_cast<GstCaps *>(nullptr), [&]() -> GstCaps * {
    const Settings settings = self->impl->snapshot();
    GstCaps *result = gst_caps_new_empty();
    for (guint i = 0; i < gst_caps_get_size(caps); ++i) {
      GstStructure *s = gst_structure_copy(gst_caps_get_structure(caps, i));
      if (direction == GST_PAD_SINK) {
        allow_downscale(s, "width");
        allow_downscale(s, "height");
        if (settings.drops_frames())
          set_variable_rate(s, settings);
      } else {
        gst_structure_set(s, "width", GST_TYPE_INT_RANGE, 1, G_MAXINT, "height", GST_TYPE_INT_RANGE,
                          1, G_MAXINT, nullptr);
        if (settings.drops_frames())
          gst_structure_remove_fields(s, "framerate", "max-framerate", nullptr);
      }
      result = gst_caps_merge_structure_full(
          result, s, gst_caps_features_copy(gst_caps_get_features(caps, i)));
    }
    if (filter) {
      GstCaps *filtered = gst_caps_intersect_full(filter, result, GST_CAPS_INTERSECT_FIRST);
      gst_caps_unref(result);
      result = filtered;
    }
    GST_DEBUG_OBJECT(self, "%s %" GST_PTR_FORMAT " → %" GST_PTR_FORMAT,
                     direction == GST_PAD_SINK ? "downstream of" : "upstream of", caps, result);
    return result;
  });
}

static GstCaps *gem_frame_sampler_fixate_caps(GstBaseTransform *trans, GstPadDirection direction,
                                              GstCaps *caps, GstCaps *othercaps) {
  auto *self = GEM_FRAME_SAMPLER(trans);
  othercaps = gst_caps_make_writable(gst_caps_truncate(othercaps));
  GstVideoInfo in;
  if (direction != GST_PAD_SINK || !gst_video_info_from_caps(&in, caps))
    return gst_caps_fixate(othercaps);

  const Settings settings = self->impl->snapshot();
  const Size in_size{GST_VIDEO_INFO_WIDTH(&in), GST_VIDEO_INFO_HEIGHT(&in)};
  Size want = target_size(in.finfo, in_size, settings.max_size);

  // A downstream filter that fixes one dimension gets the other one in proportion.
  GstStructure *s = gst_caps_get_structure(othercaps, 0);
  const Size unit = alignment_of(in.finfo);
  gint fixed;
  const bool width_fixed = gst_structure_get_int(s, "width", &fixed);
  if (width_fixed && !gst_structure_has_field_typed(s, "height", G_TYPE_INT))
    want.height = align_down(gst_util_uint64_scale_int_round(in_size.height, fixed, in_size.width),
                             unit.height, in_size.height);
  else if (!width_fixed && gst_structure_get_int(s, "height", &fixed))
    want.width = align_down(gst_util_uint64_scale_int_round(in_size.width, fixed, in_size.height),
                            unit.width, in_size.width);

  gst_structure_fixate_field_nearest_int(s, "width", want.width);
  gst_structure_fixate_field_nearest_int(s, "height", want.height);
  othercaps = gst_caps_fixate(othercaps);
  GST_DEBUG_OBJECT(self, "fixated to %" GST_PTR_FORMAT, othercaps);
  return othercaps;
}

static gboolean gem_frame_sampler_set_info(GstVideoFilter *filter, GstCaps *, GstVideoInfo *in_info,
                                           GstCaps *, GstVideoInfo *out_info) {
  auto *self = GEM_FRAME_SAMPLER(filter);
  GemFrameSamplerImpl *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(self), FALSE, [&]() -> gboolean {
    impl->converter.reset();
    if (GST_VIDEO_INFO_FORMAT(in_info) != GST_VIDEO_INFO_FORMAT(out_info) ||
        GST_VIDEO_INFO_WIDTH(out_info) > GST_VIDEO_INFO_WIDTH(in_info) ||
        GST_VIDEO_INFO_HEIGHT(out_info) > GST_VIDEO_INFO_HEIGHT(in_info)) {
      GST_WARNING_OBJECT(self,
                         "refusing %s %dx%d → %s %dx%d: framesampler only scales down and "
                         "never converts formats",
                         GST_VIDEO_INFO_NAME(in_info), GST_VIDEO_INFO_WIDTH(in_info),
                         GST_VIDEO_INFO_HEIGHT(in_info), GST_VIDEO_INFO_NAME(out_info),
                         GST_VIDEO_INFO_WIDTH(out_info), GST_VIDEO_INFO_HEIGHT(out_info));
      return FALSE;
    }
    const bool same_size = GST_VIDEO_INFO_WIDTH(in_info) == GST_VIDEO_INFO_WIDTH(out_info) &&
                           GST_VIDEO_INFO_HEIGHT(in_info) == GST_VIDEO_INFO_HEIGHT(out_info);
    if (!same_size) {
      // The converter wants equal frame rates; the output's variable rate is not its business.
      GstVideoInfo scaled = *out_info;
      GST_VIDEO_INFO_FPS_N(&scaled) = GST_VIDEO_INFO_FPS_N(in_info);
      GST_VIDEO_INFO_FPS_D(&scaled) = GST_VIDEO_INFO_FPS_D(in_info);
      impl->converter.reset(gst_video_converter_new(
          in_info, &scaled,
          gst_structure_new("GstVideoConverterConfig", GST_VIDEO_CONVERTER_OPT_DITHER_METHOD,
                            GST_TYPE_VIDEO_DITHER_METHOD, GST_VIDEO_DITHER_NONE, nullptr)));
      if (!impl->converter) {
        GST_WARNING_OBJECT(self, "no scaler for %s %dx%d → %dx%d", GST_VIDEO_INFO_NAME(in_info),
                           GST_VIDEO_INFO_WIDTH(in_info), GST_VIDEO_INFO_HEIGHT(in_info),
                           GST_VIDEO_INFO_WIDTH(out_info), GST_VIDEO_INFO_HEIGHT(out_info));
        return FALSE;
      }
    }
    gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), same_size);
    GST_DEBUG_OBJECT(self, "%s %dx%d → %dx%d%s", GST_VIDEO_INFO_NAME(in_info),
                     GST_VIDEO_INFO_WIDTH(in_info), GST_VIDEO_INFO_HEIGHT(in_info),
                     GST_VIDEO_INFO_WIDTH(out_info), GST_VIDEO_INFO_HEIGHT(out_info),
                     same_size ? " (passthrough)" : "");
    return TRUE;
  });
}

static GstFlowReturn gem_frame_sampler_transform_frame(GstVideoFilter *filter,
                                                       GstVideoFrame *in_frame,
                                                       GstVideoFrame *out_frame) {
  GemFrameSamplerImpl *impl = GEM_FRAME_SAMPLER(filter)->impl;
  if (!impl->converter) {
    GST_ELEMENT_ERROR(filter, CORE, NEGOTIATION, (nullptr),
                      ("frame to scale but no scaler is configured"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  gst_video_converter_frame(impl->converter.get(), in_frame, out_frame);
  return GST_FLOW_OK;
}

// Frames are selected before an output buffer is allocated, so dropped frames cost no scaling
// and no allocation. A dropped frame yields no output and no DISCONT flag: dropping is the
// element's purpose, not a discontinuity.
static GstFlowReturn gem_frame_sampler_generate_output(GstBaseTransform *trans,
                                                       GstBuffer **outbuf) {
  auto *self = GEM_FRAME_SAMPLER(trans);
  GemFrameSamplerImpl *impl = self->impl;
  *outbuf = nullptr;
  return GEM_GUARDED(GST_ELEMENT(self), GST_FLOW_ERROR, [&]() -> GstFlowReturn {
    if (GstBuffer *in = trans->queued_buf) {
      const Verdict verdict = select_frame(self, in);
      GST_TRACE_OBJECT(self, "frame %" GST_TIME_FORMAT ": %s", GST_TIME_ARGS(GST_BUFFER_PTS(in)),
                       to_string(verdict));
      if (verdict != Verdict::Pass) {
        if (verdict == Verdict::TooSoon)
          impl->dropped_rate.fetch_add(1, std::memory_order_relaxed);
        else if (verdict == Verdict::Duplicate)
          impl->dropped_duplicates.fetch_add(1, std::memory_order_relaxed);
        trans->queued_buf = nullptr;
        gst_buffer_unref(in);
        return GST_FLOW_OK;
      }
    }
    return GST_BASE_TRANSFORM_CLASS(gem_frame_sampler_parent_class)->generate_output(trans, outbuf);
  });
}

static gboolean gem_frame_sampler_sink_event(GstBaseTransform *trans, GstEvent *event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
    GST_DEBUG_OBJECT(trans, "flushed: the next frame passes");
    GEM_FRAME_SAMPLER(trans)->impl->state.reset();
  }
  return GST_BASE_TRANSFORM_CLASS(gem_frame_sampler_parent_class)->sink_event(trans, event);
}

static gboolean gem_frame_sampler_start(GstBaseTransform *trans) {
  GemFrameSamplerImpl *impl = GEM_FRAME_SAMPLER(trans)->impl;
  impl->state.reset();
  impl->dropped_rate = 0;
  impl->dropped_duplicates = 0;
  return TRUE;
}

static gboolean gem_frame_sampler_stop(GstBaseTransform *trans) {
  GemFrameSamplerImpl *impl = GEM_FRAME_SAMPLER(trans)->impl;
  impl->state.reset();
  impl->converter.reset();
  impl->line = {};
  impl->bin_sums = {};
  impl->bin_counts = {};
  impl->column_bins = {};
  return TRUE;
}

// ---- GObject --------------------------------------------------------------------------------

static void gem_frame_sampler_set_property(GObject *object, guint prop_id, const GValue *value,
                                           GParamSpec *pspec) {
  auto *self = GEM_FRAME_SAMPLER(object);
  GemFrameSamplerImpl *impl = self->impl;
  bool renegotiate = false;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    Settings &s = impl->settings;
    const bool dropped_frames = s.drops_frames();
    switch (prop_id) {
    case PROP_MAX_FPS: {
      const gint n = gst_value_get_fraction_numerator(value);
      const gint d = gst_value_get_fraction_denominator(value);
      renegotiate = gst_util_fraction_compare(n, d, s.max_fps_n, s.max_fps_d) != 0;
      s.max_fps_n = n;
      s.max_fps_d = n > 0 ? d : 1;
      break;
    }
    case PROP_MAX_SIZE:
      renegotiate = g_value_get_uint(value) != s.max_size;
      s.max_size = g_value_get_uint(value);
      break;
    case PROP_DUPLICATE_THRESHOLD: s.duplicate_threshold = g_value_get_double(value); break;
    case PROP_MAX_INTERVAL: s.max_interval = g_value_get_uint64(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
    }
    renegotiate = renegotiate || dropped_frames != s.drops_frames();
  }
  if (renegotiate)
    gst_base_transform_reconfigure_src(GST_BASE_TRANSFORM(self));
}

static void gem_frame_sampler_get_property(GObject *object, guint prop_id, GValue *value,
                                           GParamSpec *pspec) {
  GemFrameSamplerImpl *impl = GEM_FRAME_SAMPLER(object)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  const Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_MAX_FPS: gst_value_set_fraction(value, s.max_fps_n, s.max_fps_d); break;
  case PROP_MAX_SIZE: g_value_set_uint(value, s.max_size); break;
  case PROP_DUPLICATE_THRESHOLD: g_value_set_double(value, s.duplicate_threshold); break;
  case PROP_MAX_INTERVAL: g_value_set_uint64(value, s.max_interval); break;
  case PROP_DROPPED_RATE:
    g_value_set_uint64(value, impl->dropped_rate.load(std::memory_order_relaxed));
    break;
  case PROP_DROPPED_DUPLICATES:
    g_value_set_uint64(value, impl->dropped_duplicates.load(std::memory_order_relaxed));
    break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static void gem_frame_sampler_finalize(GObject *object) {
  auto *self = GEM_FRAME_SAMPLER(object);
  delete self->impl;
  self->impl = nullptr;
  G_OBJECT_CLASS(gem_frame_sampler_parent_class)->finalize(object);
}

static void gem_frame_sampler_init(GemFrameSampler *self) {
  self->impl = new GemFrameSamplerImpl();
}

static void gem_frame_sampler_class_init(GemFrameSamplerClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);
  auto *trans_class = GST_BASE_TRANSFORM_CLASS(klass);
  auto *filter_class = GST_VIDEO_FILTER_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gem_frame_sampler_debug, "framesampler", 0,
                          "gemstream frame sampler (rate limit, duplicate drop, downscale)");

  gobject_class->set_property = gem_frame_sampler_set_property;
  gobject_class->get_property = gem_frame_sampler_get_property;
  gobject_class->finalize = gem_frame_sampler_finalize;

  const auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                              GST_PARAM_MUTABLE_PLAYING);
  const auto stats = static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(
      gobject_class, PROP_MAX_FPS,
      gst_param_spec_fraction(
          "max-fps", "Maximum frame rate",
          "Most frames output per second of running time, as a fraction (1/5: one frame every "
          "5 seconds). Frames are taken on a grid of 1/max-fps slots, at most one per slot. "
          "0/1: no rate limit.",
          0, 1, kMaxMaxFps, 1, kDefaultMaxFpsN, kDefaultMaxFpsD, flags));
  g_object_class_install_property(
      gobject_class, PROP_MAX_SIZE,
      g_param_spec_uint("max-size", "Maximum size",
                        "Frames larger than this many pixels in width or height are scaled down "
                        "to fit within max-size x max-size, keeping the aspect ratio; frames are "
                        "never scaled up. 0: no scaling.",
                        0, kMaxMaxSize, kDefaultMaxSize, flags));
  g_object_class_install_property(
      gobject_class, PROP_DUPLICATE_THRESHOLD,
      g_param_spec_double(
          "duplicate-threshold", "Duplicate threshold",
          "A frame whose 32x32 luma thumbnail differs from that of the last output frame by "
          "less than this mean absolute difference, in 8-bit luma levels (0-255), is dropped as "
          "a near-duplicate. 0: keep duplicates.",
          0.0, kMaxDuplicateThreshold, kDefaultDuplicateThreshold, flags));
  g_object_class_install_property(
      gobject_class, PROP_MAX_INTERVAL,
      g_param_spec_uint64(
          "max-interval", "Maximum interval",
          "Longest time without output, in nanoseconds of running time: a near-duplicate frame "
          "is output anyway once this much time has passed since the last output frame (the "
          "max-fps limit still applies). 0: drop near-duplicates however long the scene is "
          "still.",
          0, G_MAXUINT64, kDefaultMaxInterval, flags));
  g_object_class_install_property(
      gobject_class, PROP_DROPPED_RATE,
      g_param_spec_uint64("dropped-rate", "Dropped by rate",
                          "Frames dropped because they came before the next max-fps slot, "
                          "since the element last went from READY to PAUSED.",
                          0, G_MAXUINT64, 0, stats));
  g_object_class_install_property(
      gobject_class, PROP_DROPPED_DUPLICATES,
      g_param_spec_uint64("dropped-duplicates", "Dropped duplicates",
                          "Frames dropped as near-duplicates of the last output frame, since the "
                          "element last went from READY to PAUSED.",
                          0, G_MAXUINT64, 0, stats));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Frame sampler", "Filter/Effect/Video/Scaler",
      "Limits the frame rate, drops frames that look like the previous output frame and scales "
      "frames down, to feed a multimodal model",
      "gemstream developers <dev@gemstream.local>");

  trans_class->transform_caps = GST_DEBUG_FUNCPTR(gem_frame_sampler_transform_caps);
  trans_class->fixate_caps = GST_DEBUG_FUNCPTR(gem_frame_sampler_fixate_caps);
  trans_class->generate_output = GST_DEBUG_FUNCPTR(gem_frame_sampler_generate_output);
  trans_class->sink_event = GST_DEBUG_FUNCPTR(gem_frame_sampler_sink_event);
  trans_class->start = GST_DEBUG_FUNCPTR(gem_frame_sampler_start);
  trans_class->stop = GST_DEBUG_FUNCPTR(gem_frame_sampler_stop);
  filter_class->set_info = GST_DEBUG_FUNCPTR(gem_frame_sampler_set_info);
  filter_class->transform_frame = GST_DEBUG_FUNCPTR(gem_frame_sampler_transform_frame);
}
