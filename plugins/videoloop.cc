/**
 * SECTION:element-videoloop
 * @title: videoloop
 *
 * Turns a clip into a seamless loop: the last `crossfade` of the clip is crossfaded into its
 * first `crossfade`, so the output, played over and over, has no visible or audible seam.
 *
 * With input frames f0 … f(N-1) and a crossfade of K frames the output is
 *
 *     fK, f(K+1), … f(N-K-1), blend(f(N-K), f0), … blend(f(N-1), f(K-1))
 *
 * where the weight of the head frame fj is (j + 1) / K. The last output frame is exactly
 * f(K-1) and the next loop starts with fK, so the step across the seam is an ordinary step
 * between neighbouring frames. The output is N - K frames long (input duration minus the
 * crossfade), timestamped from 0 at the input frame rate; the middle frames are passed through
 * untouched. The clip must be at least twice as long as the crossfade.
 *
 * By default the head (K frames) and a delay line of the newest K frames are held: the
 * tail is only known at EOS, so output runs 2 × crossfade behind the input and the element needs
 * a finite, non-live clip. When the clip's frame count N is known beforehand (a probe of the
 * file), set the `frames` property: each tail frame is then blended into its head frame as it
 * arrives, and that finished output frame is pushed at once, so only the head is held (half the
 * memory, less as the tail goes out) and output follows the input without a delay.
 * `frames` must be exact; a clip that turns out shorter or longer is an error (STREAM/FAILED
 * with the detail `reason` = `frame-count-mismatch`, so an application can run again without
 * it). A constant frame rate is required (put `videorate` in front of a variable-rate source).
 *
 * ## Buffers
 * Upstream's allocation query is answered by videoloop itself, at once: it accepts frames in any
 * layout described by a GstVideoMeta (a decoder can then decode straight into the buffers it
 * pushes, padded planes and all) and asks for a pool of upstream's own. It does not wait for
 * downstream's answer, which behind a `tee` and its queues comes only after every encoder has
 * started. Downstream is asked instead before the first output frame; if it does not read the
 * GstVideoMeta, frames in another layout than the caps' default are copied into it on the way
 * out. Head frames are held by reference, and copied only when they come from a pool with a
 * fixed number of buffers (a camera's, a hardware decoder's), which holding them would starve.
 *
 * Audio is optional: request the `audio_sink` pad and the matching `audio_src` pad appears. The
 * audio is cut at the video's timeline, sample-accurately: it is delayed by the crossfade, its
 * last crossfade is blended into its head with an equal-power curve, and it ends with the
 * video. Audio shorter than the video is padded with silence (with a warning); longer audio is
 * cut. One element handles both streams rather than a pair of elements because the audio cut
 * points are defined by the video frame count, known only at the video's EOS; a pair would
 * have to share that state out of band. The audio is pushed from its own pad task, so neither
 * stream ever waits for the other inside a streaming thread and demuxer/muxer pipelines do not
 * deadlock.
 *
 * Flushing seeks to the start (position 0) are passed upstream and restart the loop; other
 * seeks are refused, since an output position maps onto two input positions in the crossfade.
 * Position queries are refused too (the input runs ahead of the output); progress is reported
 * with messages instead.
 *
 * ## Progress
 * The element posts `GST_MESSAGE_PROGRESS` messages with the code `loop`: type `start` at the
 * first video frame, `continue` each time the integer percentage of the input processed grows,
 * and `complete` once the last (blended) frame has been pushed. Their structure carries the
 * usual `type`, `code` and `text` fields plus `percent` (int, 0-100; -1 while the clip length
 * is unknown), computed from the `frames` property, else from upstream's duration (a TIME
 * duration query on the video input, asked at the first frame) and the frames received. A
 * flushing seek to the start begins a new `start`.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 videotestsrc pattern=ball num-buffers=192 ! video/x-raw,framerate=24/1 ! videoloop
 * ! videoconvert ! x264enc ! mp4mux ! filesink location=loop.mp4
 * gst-launch-1.0 filesrc location=clip.mp4 ! qtdemux name=d  videoloop name=loop
 * crossfade=500000000 \
 *     d.video_0 ! queue ! decodebin ! videoconvert ! loop.video_sink \
 *     d.audio_0 ! queue ! decodebin ! audioconvert ! loop.audio_sink \
 *     loop.video_src ! queue ! videoconvert ! x264enc ! mp4mux name=mux ! filesink
 * location=loop.mp4 \ loop.audio_src ! queue ! audioconvert ! avenc_aac ! mux.
 * ]|
 */
#include "videoloop.h"

#include "common/element_util.h"
#include "common/video_frame.h"
#include "common/gst_ref.h"
#include "videoloop_blend.h"

#include <gst/audio/audio.h>
#include <gst/video/video.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(gem_video_loop_debug);
#define GST_CAT_DEFAULT gem_video_loop_debug

namespace {

using gemstream::gst::Ref;
using BufferRef = Ref<GstBuffer>;
using CapsRef = Ref<GstCaps>;

constexpr guint64 kDefaultCrossfade = GST_SECOND;
constexpr guint64 kMinCrossfade = 40 * GST_MSECOND;
constexpr guint64 kMaxCrossfade = 60 * GST_SECOND;
constexpr guint64 kDefaultFrames = 0; // unknown
// Output audio buffers are at most 1/50 s long.
constexpr guint kAudioBuffersPerSecond = 50;

enum { PROP_0, PROP_CROSSFADE, PROP_FRAMES };

double seconds(GstClockTime t) { return static_cast<double>(t) / GST_SECOND; }

// Frame-rate arithmetic, fixed by the video caps.
struct Timeline {
  gint fps_n = 0;
  gint fps_d = 1;
  guint64 k = 0; // crossfade, in frames

  GstClockTime frame_time(guint64 frame) const {
    return gst_util_uint64_scale(frame, GST_SECOND * static_cast<guint64>(fps_d),
                                 static_cast<guint64>(fps_n));
  }
  guint64 samples(guint64 frames, gint rate) const {
    return gst_util_uint64_scale_round(frames, static_cast<guint64>(rate) * fps_d,
                                       static_cast<guint64>(fps_n));
  }
};

// A byte queue that is appended at the back and consumed at the front.
class ByteFifo {
public:
  std::size_t size() const { return data_.size() - front_; }
  const guint8 *data() const { return data_.data() + front_; }
  void append(const guint8 *p, std::size_t n) { data_.insert(data_.end(), p, p + n); }
  void append_zeros(std::size_t n) { data_.resize(data_.size() + n, 0); }
  void prepend_zeros(std::size_t n) {
    data_.insert(data_.begin() + static_cast<std::ptrdiff_t>(front_), n, 0);
  }
  void consume(std::size_t n) {
    front_ += std::min(n, size());
    if (front_ >= 64 * 1024 && front_ * 2 >= data_.size()) {
      data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(front_));
      front_ = 0;
    }
  }
  void clear() {
    data_.clear();
    data_.shrink_to_fit();
    front_ = 0;
  }

private:
  std::vector<guint8> data_;
  std::size_t front_ = 0;
};

// Video state owned by the video_sink streaming thread (chain and serialized events, under its
// STREAM_LOCK), and touched by state changes only while the pads are inactive.
struct VideoState {
  CapsRef caps;
  GstVideoInfo info{};
  Timeline timeline;
  guint64 frames = 0; // the `frames` property, snapshotted at READY→PAUSED; 0: unknown
  // f0 … f(K-1), by reference (copies when upstream's pool is bounded). Without `frames` they
  // are blended at EOS; with it, each tail frame is blended in as it arrives and the head frame
  // pushed (its slot empties). Blending makes a head frame writable first.
  std::vector<BufferRef> head;
  std::deque<BufferRef> window; // without `frames`: the newest ≤ K frames after the head
  // With `frames`, past the head: the newest input frame, repeated to fill a GAP (otherwise
  // the newest frame is the last of the window or of the head).
  BufferRef last;
  guint64 received = 0;
  guint64 pushed = 0;
  bool need_segment = true;
  bool eos = false;
  GstSegment segment; // upstream's, for the frames' running times
  // Whether downstream reads GstVideoMeta, asked before the first output frame (and again after
  // a RECONFIGURE); without it, frames in a non-default layout are copied on the way out.
  bool downstream_checked = false;
  bool downstream_video_meta = false;
  guint32 seqnum = GST_SEQNUM_INVALID;
  // Progress messages: the clip length in frames used for the percentage (0: not asked yet,
  // G_MAXUINT64: unknown) and the last percentage posted (-2: no message posted yet).
  guint64 progress_total = 0;
  int progress_percent = -2;

  VideoState() { gst_segment_init(&segment, GST_FORMAT_TIME); }

  // The tail is blended into the head as it arrives.
  bool progressive() const { return frames > 0; }

  void reset_stream() {
    head.clear();
    window.clear();
    last.reset();
    received = 0;
    pushed = 0;
    need_segment = true;
    eos = false;
    gst_segment_init(&segment, GST_FORMAT_TIME);
    downstream_checked = false;
    progress_total = 0;
    progress_percent = -2;
  }
  void reset_all() {
    reset_stream();
    caps.reset();
    gst_video_info_init(&info);
    timeline = {};
    frames = 0;
    seqnum = GST_SEQNUM_INVALID;
  }
};

// What the audio side needs to know about the video, published under Impl::lock.
struct VideoProgress {
  bool configured = false;
  Timeline timeline;
  guint64 frames = 0;   // the `frames` property once configured; 0: unknown
  guint64 received = 0; // frames so far; the clip length once eos is set
  bool eos = false;
  bool flushing = false;
  // Running times of the first and the newest frame: the audio is placed against the first.
  GstClockTime start_rt = GST_CLOCK_TIME_NONE;
  GstClockTime latest_rt = GST_CLOCK_TIME_NONE;
  bool untimed = false; // the first frame had no timestamp: the audio is taken as it comes

  // The clip length in frames is known: from `frames` (the audio may then run as far ahead of
  // the video as its own input allows, which the video no longer lags behind) or at EOS.
  bool length_known() const { return eos || frames > 0; }
  guint64 length() const { return eos ? received : frames; }
};

// Audio state, under Impl::lock: written by the audio_sink streaming thread, consumed by the
// audio_src task.
struct AudioState {
  CapsRef caps;
  GstAudioInfo info{};
  std::vector<guint8> head; // the first crossfade of input, zero-padded if the input is shorter
  bool head_ready = false;
  ByteFifo body; // input samples from index body_base on
  guint64 body_base = 0;
  guint64 received = 0; // input samples stored (head included)
  bool eos = false;     // upstream EOS seen
  // Input sample 0 is at running time `origin`: the first audio buffer's until the first video
  // frame's is known, then that one (aligned), silence before late audio, early audio dropped.
  GstSegment segment;
  GstClockTime origin = GST_CLOCK_TIME_NONE;
  bool aligned = false;
  guint64 out_pos = 0;  // output samples produced
  bool need_segment = true;
  bool eos_pushed = false;
  bool length_checked = false;
  bool flushing = true; // the task must not run; set until the src pad is activated
  GstFlowReturn last_flow = GST_FLOW_OK;
  guint32 seqnum = GST_SEQNUM_INVALID;

  AudioState() { gst_segment_init(&segment, GST_FORMAT_TIME); }

  // The audio's input samples are placed in time, against the video's first frame.
  bool placed() const { return aligned || (eos && !GST_CLOCK_TIME_IS_VALID(origin)); }

  void reset_stream() {
    head.clear();
    head_ready = false;
    body.clear();
    body_base = 0;
    received = 0;
    eos = false;
    gst_segment_init(&segment, GST_FORMAT_TIME);
    origin = GST_CLOCK_TIME_NONE;
    aligned = false;
    out_pos = 0;
    need_segment = true;
    eos_pushed = false;
    length_checked = false;
    last_flow = GST_FLOW_OK;
  }
  void reset_all() {
    reset_stream();
    caps.reset();
    gst_audio_info_init(&info);
    seqnum = GST_SEQNUM_INVALID;
  }
};

// One unit of work for the audio task, computed under the lock and pushed without it.
struct AudioWork {
  bool segment = false;
  BufferRef buffer;
  bool eos = false;
  double short_by = 0; // seconds of missing audio to warn about
  guint32 seqnum = GST_SEQNUM_INVALID;
};

struct Settings {
  guint64 crossfade = kDefaultCrossfade;
  guint64 frames = kDefaultFrames;
};

} // namespace

// Lock order: a pad's STREAM_LOCK (held by the streaming thread or the audio task) → lock.
// `lock` is a leaf: never held while pushing, sending events, posting messages or starting and
// stopping the audio task.
struct GemVideoLoopImpl {
  GstPad *video_sink = nullptr;
  GstPad *video_src = nullptr;

  std::mutex lock;
  std::condition_variable cond; // audio task: new audio, video progress, flushing, fatal
  Settings settings;
  guint64 crossfade = kDefaultCrossfade; // settings.crossfade, snapshotted at READY→PAUSED
  guint64 frames = kDefaultFrames;       // settings.frames, likewise
  GstPad *audio_sink = nullptr;          // the request pad and its partner; owned by the element
  GstPad *audio_src = nullptr;
  VideoProgress progress;
  AudioState audio;
  bool fatal = false; // an error was posted; both streams stop

  VideoState video; // see VideoState for its threading contract
};

struct _GemVideoLoop {
  GstElement parent;
  GemVideoLoopImpl *impl;
};

G_DEFINE_TYPE(GemVideoLoop, gem_video_loop, GST_TYPE_ELEMENT)

#define VIDEO_FORMATS                                                                              \
  "{ I420, YV12, NV12, NV21, Y42B, Y444, AYUV, YUY2, UYVY, RGBA, BGRA, ARGB, ABGR, RGBx, BGRx, "   \
  "xRGB, xBGR, RGB, BGR, GRAY8 }"

static GstStaticPadTemplate video_sink_template =
    GST_STATIC_PAD_TEMPLATE("video_sink", GST_PAD_SINK, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(VIDEO_FORMATS)));
static GstStaticPadTemplate video_src_template = GST_STATIC_PAD_TEMPLATE(
    "video_src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(VIDEO_FORMATS)));

#define AUDIO_CAPS                                                                                 \
  "audio/x-raw, format = (string) { F32LE, S16LE }, rate = (int) [ 1, MAX ], "                     \
  "channels = (int) [ 1, MAX ], layout = (string) interleaved"

static GstStaticPadTemplate audio_sink_template = GST_STATIC_PAD_TEMPLATE(
    "audio_sink", GST_PAD_SINK, GST_PAD_REQUEST, GST_STATIC_CAPS(AUDIO_CAPS));
static GstStaticPadTemplate audio_src_template = GST_STATIC_PAD_TEMPLATE(
    "audio_src", GST_PAD_SRC, GST_PAD_SOMETIMES, GST_STATIC_CAPS(AUDIO_CAPS));

namespace {

GstPad *audio_src_pad(GemVideoLoopImpl *impl) {
  std::lock_guard<std::mutex> guard(impl->lock);
  return impl->audio_src;
}

// Marks the element failed after an error was posted, waking the audio task so it stops.
void set_fatal(GemVideoLoopImpl *impl) {
  std::lock_guard<std::mutex> guard(impl->lock);
  impl->fatal = true;
  impl->cond.notify_all();
}

GstEvent *new_segment_event(guint32 seqnum) {
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  GstEvent *event = gst_event_new_segment(&segment);
  if (seqnum != GST_SEQNUM_INVALID)
    gst_event_set_seqnum(event, seqnum);
  return event;
}

// Posts the error for a failed push from an event handler or the audio task, as upstream
// elements do for their streaming task.
void post_flow_error(GemVideoLoop *self, GstFlowReturn ret) {
  if (ret == GST_FLOW_NOT_LINKED || ret < GST_FLOW_EOS)
    GST_ELEMENT_FLOW_ERROR(self, ret);
}

// ---- video ----------------------------------------------------------------------------------


// head = blend(tail, head) with the head's weight w / 256, plane by plane. The head is made
// writable first: a frame held by reference may still be shared (upstream's reference picture,
// a GAP's repeated frame), and the blend must then go to a copy.
bool blend_frame(const GstVideoInfo *info, BufferRef &head, GstBuffer *tail, unsigned w) {
  head = BufferRef::adopt(gst_buffer_make_writable(head.release()));
  gemstream::gst::MappedFrame h(info, head.get(), GST_MAP_READWRITE);
  gemstream::gst::MappedFrame t(info, tail, GST_MAP_READ);
  if (!h || !t)
    return false;
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(h.get()); ++p) {
    gint comp[GST_VIDEO_MAX_COMPONENTS];
    gst_video_format_info_component(h.get()->info.finfo, p, comp);
    const gint c = comp[0];
    const gsize row_bytes = static_cast<gsize>(GST_VIDEO_FRAME_COMP_WIDTH(h.get(), c)) *
                            GST_VIDEO_FRAME_COMP_PSTRIDE(h.get(), c);
    const gint rows = GST_VIDEO_FRAME_COMP_HEIGHT(h.get(), c);
    auto *hd = static_cast<guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(h.get(), p));
    const auto *td = static_cast<const guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(t.get(), p));
    const gint hs = GST_VIDEO_FRAME_PLANE_STRIDE(h.get(), p);
    const gint ts = GST_VIDEO_FRAME_PLANE_STRIDE(t.get(), p);
    for (gint y = 0; y < rows; ++y)
      gemstream::videoloop::blend_bytes(hd + static_cast<gsize>(y) * hs,
                                        td + static_cast<gsize>(y) * ts, row_bytes, w);
  }
  return true;
}

// Whether a head frame may be held by reference for the whole clip: not when it comes from a
// pool with a fixed number of buffers (a camera's, a hardware decoder's), which holding K of
// them would starve.
bool can_hold(GstBuffer *frame) {
  if (!frame->pool)
    return true;
  GstStructure *config = gst_buffer_pool_get_config(frame->pool);
  guint max = 0;
  const bool ok = gst_buffer_pool_config_get_params(config, nullptr, nullptr, nullptr, &max);
  gst_structure_free(config);
  return ok && max == 0;
}

// Whether the frame's planes lie where the caps' default layout puts them (no GstVideoMeta, or
// one that describes that layout).
bool has_default_layout(const GstVideoInfo *info, GstBuffer *frame) {
  const GstVideoMeta *meta = gst_buffer_get_video_meta(frame);
  if (!meta)
    return true;
  if (meta->n_planes != GST_VIDEO_INFO_N_PLANES(info))
    return false;
  for (guint p = 0; p < meta->n_planes; ++p)
    if (meta->offset[p] != GST_VIDEO_INFO_PLANE_OFFSET(info, p) ||
        meta->stride[p] != GST_VIDEO_INFO_PLANE_STRIDE(info, p))
      return false;
  return true;
}

// A copy of `frame` in the caps' default layout, with its flags and metas but no GstVideoMeta,
// for a downstream that does not read one; nullptr when a frame cannot be mapped.
GstBuffer *copy_to_default_layout(const GstVideoInfo *info, GstBuffer *frame) {
  GstBuffer *out = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(info), nullptr);
  gst_buffer_copy_into(out, frame,
                       static_cast<GstBufferCopyFlags>(GST_BUFFER_COPY_FLAGS | GST_BUFFER_COPY_META),
                       0, static_cast<gsize>(-1));
  while (GstVideoMeta *meta = gst_buffer_get_video_meta(out))
    if (!gst_buffer_remove_meta(out, &meta->meta))
      break;
  gemstream::gst::MappedFrame from(info, frame, GST_MAP_READ);
  bool ok = false;
  {
    gemstream::gst::MappedFrame to(info, out, GST_MAP_WRITE);
    ok = from && to && gst_video_frame_copy(to.get(), from.get());
  }
  if (!ok)
    gst_buffer_unref(out);
  return ok ? out : nullptr;
}

// Posts a GST_MESSAGE_PROGRESS with the code "loop" and a `percent` field (-1: unknown).
void post_progress(GemVideoLoop *self, GstProgressType type, int percent, const char *text) {
  GstMessage *msg = gst_message_new_progress(GST_OBJECT(self), type, "loop", text);
  gst_structure_set(gst_message_writable_structure(msg), "percent", G_TYPE_INT, percent, nullptr);
  gst_element_post_message(GST_ELEMENT(self), msg);
}

// Reports the input processed so far: a start message at the first frame, then one each time
// the integer percentage grows. Called from the video streaming thread after each frame.
void update_progress(GemVideoLoop *self) {
  VideoState &v = self->impl->video;
  if (v.progress_total == 0) {
    v.progress_total = G_MAXUINT64;
    gint64 duration = -1;
    if (v.frames > 0)
      v.progress_total = v.frames;
    else if (gst_pad_peer_query_duration(self->impl->video_sink, GST_FORMAT_TIME, &duration) &&
             duration > 0)
      v.progress_total = std::max<guint64>(
          1, gst_util_uint64_scale_round(static_cast<guint64>(duration),
                                         static_cast<guint64>(v.timeline.fps_n),
                                         GST_SECOND * static_cast<guint64>(v.timeline.fps_d)));
  }
  const bool known = v.progress_total != G_MAXUINT64;
  // 100 is kept for the complete message, which follows the blended tail.
  const int percent =
      known ? static_cast<int>(std::min<guint64>(99, v.received * 100 / v.progress_total)) : -1;
  if (v.progress_percent != -2 && percent <= v.progress_percent)
    return;
  const bool first = v.progress_percent == -2;
  v.progress_percent = percent;
  char text[96];
  if (known)
    std::snprintf(text, sizeof text, "Looping: %d%% of %.1f s", percent,
                  seconds(v.timeline.frame_time(v.progress_total)));
  else
    std::snprintf(text, sizeof text, "Looping: %.1f s read",
                  seconds(v.timeline.frame_time(v.received)));
  post_progress(self, first ? GST_PROGRESS_TYPE_START : GST_PROGRESS_TYPE_CONTINUE, percent, text);
}

// Ends the progress report of a clip that failed, if one was started.
void fail_progress(GemVideoLoop *self) {
  if (self->impl->video.progress_percent != -2)
    post_progress(self, GST_PROGRESS_TYPE_ERROR, self->impl->video.progress_percent,
                  "Looping failed");
}

// The `frames` property did not match the clip. The details let an application that set it
// from a probe run again without it.
void post_frame_count_mismatch(GemVideoLoop *self, guint64 received, bool more) {
  const VideoState &v = self->impl->video;
  GST_ELEMENT_ERROR_WITH_DETAILS(
      self, STREAM, FAILED,
      ("The clip has %s video frames than the frames property says (%" G_GUINT64_FORMAT
       "); set frames=0 when the exact count is not known.",
       more ? "more" : "fewer", v.frames),
      ("%" G_GUINT64_FORMAT " frames %s", received, more ? "so far" : "in all"),
      ("reason", G_TYPE_STRING, "frame-count-mismatch", "expected-frames", G_TYPE_UINT64, v.frames,
       "received-frames", G_TYPE_UINT64, received, nullptr));
  fail_progress(self);
  set_fatal(self->impl);
}

// Asks downstream whether it reads GstVideoMeta. This happens at the first output frame, when
// the branches behind a tee have long processed the caps, so the answer is immediate.
void check_downstream(GemVideoLoop *self) {
  VideoState &v = self->impl->video;
  GstQuery *query = gst_query_new_allocation(v.caps.get(), FALSE);
  v.downstream_video_meta = gst_pad_peer_query(self->impl->video_src, query) &&
                            gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr);
  gst_query_unref(query);
  v.downstream_checked = true;
  GST_DEBUG_OBJECT(self, "downstream %s GstVideoMeta",
                   v.downstream_video_meta ? "reads" : "does not read");
}

// Pushes output frame number `pushed` with timestamps on the output timeline. With keep_last
// the frame is also kept as the newest input frame (taken once it is writable, so holding it
// costs no copy).
GstFlowReturn video_push(GemVideoLoop *self, BufferRef frame, bool keep_last = false) {
  GemVideoLoopImpl *impl = self->impl;
  VideoState &v = impl->video;
  if (v.need_segment) {
    gst_pad_push_event(impl->video_src, new_segment_event(v.seqnum));
    v.need_segment = false;
  }
  if (!v.downstream_checked || gst_pad_check_reconfigure(impl->video_src))
    check_downstream(self);
  if (!v.downstream_video_meta && !has_default_layout(&v.info, frame.get())) {
    GstBuffer *copy = copy_to_default_layout(&v.info, frame.get());
    if (!copy) {
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Cannot map a video frame to copy it."),
                        (nullptr));
      return GST_FLOW_ERROR;
    }
    frame = BufferRef::adopt(copy);
  }
  const guint64 i = v.pushed++;
  GstBuffer *out = gst_buffer_make_writable(frame.release());
  const GstClockTime pts = v.timeline.frame_time(i);
  GST_BUFFER_PTS(out) = pts;
  GST_BUFFER_DTS(out) = GST_CLOCK_TIME_NONE;
  GST_BUFFER_DURATION(out) = v.timeline.frame_time(i + 1) - pts;
  GST_BUFFER_OFFSET(out) = i;
  GST_BUFFER_OFFSET_END(out) = i + 1;
  if (i == 0)
    GST_BUFFER_FLAG_SET(out, GST_BUFFER_FLAG_DISCONT);
  else
    GST_BUFFER_FLAG_UNSET(out, GST_BUFFER_FLAG_DISCONT);
  GST_BUFFER_FLAG_UNSET(out, GST_BUFFER_FLAG_RESYNC);
  if (keep_last)
    v.last = BufferRef::retain(out);
  GST_TRACE_OBJECT(self, "frame %" G_GUINT64_FORMAT " at %" GST_TIME_FORMAT, i, GST_TIME_ARGS(pts));
  return gst_pad_push(impl->video_src, out);
}

void audio_align(GemVideoLoopImpl *impl);
void audio_fill_behind_video(GemVideoLoopImpl *impl);

GstFlowReturn video_take_frame(GemVideoLoop *self, BufferRef frame) {
  GemVideoLoopImpl *impl = self->impl;
  VideoState &v = impl->video;
  if (!v.caps) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Received a video frame before its caps."),
                      (nullptr));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  const GstClockTime rt =
      GST_BUFFER_PTS_IS_VALID(frame.get())
          ? gst_segment_to_running_time(&v.segment, GST_FORMAT_TIME, GST_BUFFER_PTS(frame.get()))
          : GST_CLOCK_TIME_NONE;
  if (v.eos)
    return GST_FLOW_EOS;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    if (impl->fatal)
      return GST_FLOW_ERROR;
  }
  const guint64 i = v.received;
  const guint64 k = v.timeline.k;
  if (v.progressive() && i >= v.frames) {
    post_frame_count_mismatch(self, i + 1, true);
    return GST_FLOW_ERROR;
  }
  BufferRef out;
  bool keep_out = false;
  if (i < k) {
    // The head is held for the whole clip; a frame of a bounded pool is copied out of it.
    if (!can_hold(frame.get())) {
      GstBuffer *copy = gst_buffer_copy_deep(frame.get());
      if (!copy) {
        GST_ELEMENT_ERROR(self, RESOURCE, NO_SPACE_LEFT, ("Cannot copy a video frame."),
                          (nullptr));
        return GST_FLOW_ERROR;
      }
      frame = BufferRef::adopt(copy);
    }
    v.head.push_back(std::move(frame));
  } else if (v.progressive() && i >= v.frames - k) {
    const guint64 j = i - (v.frames - k);
    if (!blend_frame(&v.info, v.head[j], frame.get(),
                     gemstream::videoloop::head_weight_256(j, k))) {
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Cannot map a video frame for blending."),
                        (nullptr));
      set_fatal(impl);
      return GST_FLOW_ERROR;
    }
    v.last = std::move(frame);
    // Output frame N - 2K + j is complete: pushing it now keeps the encoders fed while the
    // tail is decoded, and frees the head frame as soon as downstream is done with it.
    out = std::move(v.head[j]);
  } else if (v.progressive()) {
    out = std::move(frame);
    keep_out = true;
  } else {
    v.window.push_back(std::move(frame));
    if (v.window.size() > k) {
      out = std::move(v.window.front());
      v.window.pop_front();
    }
  }
  ++v.received;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->progress.received = v.received;
    if (GST_CLOCK_TIME_IS_VALID(rt) && !impl->progress.untimed) {
      if (!GST_CLOCK_TIME_IS_VALID(impl->progress.start_rt)) {
        impl->progress.start_rt = rt;
        audio_align(impl);
      }
      impl->progress.latest_rt = rt;
      audio_fill_behind_video(impl);
    } else if (!GST_CLOCK_TIME_IS_VALID(impl->progress.start_rt) && !impl->progress.untimed) {
      impl->progress.untimed = true;
      audio_align(impl);
    }
    impl->cond.notify_all();
  }
  update_progress(self);
  return out ? video_push(self, std::move(out), keep_out) : GST_FLOW_OK;
}

gboolean video_set_caps(GemVideoLoop *self, GstCaps *caps) {
  GemVideoLoopImpl *impl = self->impl;
  VideoState &v = impl->video;
  if (v.caps && gst_caps_is_equal(v.caps.get(), caps))
    return TRUE;
  if (v.caps && v.received > 0) {
    gemstream::gst::GCharPtr from(gst_caps_to_string(v.caps.get()));
    gemstream::gst::GCharPtr to(gst_caps_to_string(caps));
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("The video format changed in the middle of the clip; videoloop can only "
                       "loop a clip with one format. Convert it to one size and format before "
                       "videoloop (videoconvert ! videoscale ! capsfilter)."),
                      ("from %s to %s", from.get(), to.get()));
    set_fatal(impl);
    return FALSE;
  }
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps)) {
    gemstream::gst::GCharPtr s(gst_caps_to_string(caps));
    GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Invalid video caps."), ("%s", s.get()));
    return FALSE;
  }
  if (GST_VIDEO_INFO_FPS_N(&info) <= 0 || GST_VIDEO_INFO_FPS_D(&info) <= 0) {
    GST_ELEMENT_ERROR(
        self, STREAM, FORMAT,
        ("videoloop needs a constant frame rate, but the video has a variable "
         "one (framerate=0/1). Put videorate and a caps filter before it, e.g. "
         "videorate ! video/x-raw,framerate=24/1."),
        ("framerate %d/%d", GST_VIDEO_INFO_FPS_N(&info), GST_VIDEO_INFO_FPS_D(&info)));
    set_fatal(impl);
    return FALSE;
  }
  Timeline t;
  t.fps_n = GST_VIDEO_INFO_FPS_N(&info);
  t.fps_d = GST_VIDEO_INFO_FPS_D(&info);
  guint64 frames;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    t.k = std::max<guint64>(
        1, gst_util_uint64_scale_round(impl->crossfade, static_cast<guint64>(t.fps_n),
                                       GST_SECOND * static_cast<guint64>(t.fps_d)));
    frames = impl->frames;
  }
  if (frames > 0 && frames < 2 * t.k) {
    // Known before the first frame: fail before any work.
    GST_ELEMENT_ERROR(self, STREAM, FAILED,
                      ("The clip is %.2f s long; it needs at least 2 × crossfade = %.2f s. Lower "
                       "the crossfade property.",
                       seconds(t.frame_time(frames)), seconds(t.frame_time(2 * t.k))),
                      ("frames property %" G_GUINT64_FORMAT ", crossfade %" G_GUINT64_FORMAT
                       " frames",
                       frames, t.k));
    set_fatal(impl);
    return FALSE;
  }
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->progress.configured = true;
    impl->progress.timeline = t;
    impl->progress.frames = frames;
    impl->cond.notify_all();
  }
  v.caps = CapsRef::retain(caps);
  v.info = info;
  v.timeline = t;
  v.frames = frames;
  GST_DEBUG_OBJECT(self,
                   "video %dx%d at %d/%d fps, crossfade %" G_GUINT64_FORMAT
                   " frames, clip %" G_GUINT64_FORMAT " frames (0: unknown)",
                   GST_VIDEO_INFO_WIDTH(&info), GST_VIDEO_INFO_HEIGHT(&info), t.fps_n, t.fps_d, t.k,
                   frames);
  return TRUE;
}

// Takes ownership of `event`.
gboolean video_eos(GemVideoLoop *self, GstEvent *event) {
  GemVideoLoopImpl *impl = self->impl;
  VideoState &v = impl->video;
  v.eos = true;
  const guint64 n = v.received;
  const guint64 k = v.timeline.k;
  const bool mismatch = v.progressive() && n != v.frames;
  const bool usable = n > 0 && n >= 2 * k && !mismatch;
  {
    // fatal is set together with eos so the audio task never sees an unusable clip length.
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->progress.eos = true;
    impl->progress.received = n;
    impl->fatal = impl->fatal || !usable;
    impl->cond.notify_all();
  }
  if (n == 0) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED,
                      ("No video arrived before the end of the stream. videoloop loops a video "
                       "clip: link a video stream to its video_sink pad (audio alone cannot be "
                       "looped)."),
                      (nullptr));
    gst_event_unref(event);
    return FALSE;
  }
  if (mismatch) {
    post_frame_count_mismatch(self, n, false);
    gst_event_unref(event);
    return FALSE;
  }
  if (n < 2 * k) {
    GST_ELEMENT_ERROR(
        self, STREAM, FAILED,
        ("The clip is %.2f s long; it needs at least 2 × crossfade = %.2f s. Lower "
         "the crossfade property.",
         seconds(v.timeline.frame_time(n)), seconds(v.timeline.frame_time(2 * k))),
        ("%" G_GUINT64_FORMAT " frames, crossfade %" G_GUINT64_FORMAT " frames", n, k));
    fail_progress(self);
    gst_event_unref(event);
    return FALSE;
  }
  GST_DEBUG_OBJECT(self, "EOS after %" G_GUINT64_FORMAT " frames", n);
  GstFlowReturn ret = GST_FLOW_OK;
  // With `frames` the blended head has left already, frame by frame.
  for (guint64 j = 0; j < k && !v.progressive() && ret == GST_FLOW_OK; ++j) {
    BufferRef head = std::move(v.head[j]);
    if (!blend_frame(&v.info, head, v.window[j].get(),
                     gemstream::videoloop::head_weight_256(j, k))) {
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Cannot map a video frame for blending."),
                        (nullptr));
      fail_progress(self);
      set_fatal(impl);
      gst_event_unref(event);
      return FALSE;
    }
    ret = video_push(self, std::move(head));
  }
  v.head.clear();
  v.window.clear();
  v.last.reset();
  if (ret != GST_FLOW_OK) {
    GST_DEBUG_OBJECT(self, "pushing the blended tail: %s", gst_flow_get_name(ret));
    post_flow_error(self, ret);
    if (ret == GST_FLOW_FLUSHING) {
      gst_event_unref(event);
      return FALSE;
    }
  } else {
    char text[96];
    std::snprintf(text, sizeof text, "Looped: %" G_GUINT64_FORMAT " frames, %.2f s", n - k,
                  seconds(v.timeline.frame_time(n - k)));
    v.progress_percent = 100;
    post_progress(self, GST_PROGRESS_TYPE_COMPLETE, 100, text);
  }
  return gst_pad_push_event(impl->video_src, event);
}

// Fills a video GAP by repeating the last frame, keeping the frame count on the timeline.
gboolean video_gap(GemVideoLoop *self, GstEvent *event) {
  VideoState &v = self->impl->video;
  GstClockTime timestamp, duration;
  gst_event_parse_gap(event, &timestamp, &duration);
  gst_event_unref(event);
  if (!v.caps || !GST_CLOCK_TIME_IS_VALID(duration))
    return TRUE;
  const BufferRef last = v.last              ? v.last
                         : !v.window.empty() ? v.window.back()
                         : !v.head.empty()   ? v.head.back()
                                             : BufferRef();
  if (!last) {
    GST_DEBUG_OBJECT(self, "ignoring a gap before the first frame");
    return TRUE;
  }
  const guint64 frames =
      gst_util_uint64_scale_round(duration, static_cast<guint64>(v.timeline.fps_n),
                                  GST_SECOND * static_cast<guint64>(v.timeline.fps_d));
  GST_DEBUG_OBJECT(
      self, "gap of %" GST_TIME_FORMAT ": repeating the last frame %" G_GUINT64_FORMAT " times",
      GST_TIME_ARGS(duration), frames);
  for (guint64 i = 0; i < frames; ++i)
    if (video_take_frame(self, last) != GST_FLOW_OK)
      return FALSE;
  return TRUE;
}

// ---- audio ----------------------------------------------------------------------------------

// Copies input samples [x, x + n) to dst; samples past the input are silence. Needs the lock.
void read_input(const AudioState &a, guint64 x, guint64 n, guint8 *dst) {
  const gsize bpf = GST_AUDIO_INFO_BPF(&a.info);
  const guint64 avail = a.received > x ? std::min(n, a.received - x) : 0;
  if (avail > 0)
    std::memcpy(dst, a.body.data() + (x - a.body_base) * bpf, avail * bpf);
  std::memset(dst + avail * bpf, 0, (n - avail) * bpf);
}

// Decides what the audio task pushes next. Needs the lock; returns false (changing nothing
// observable) when there is nothing to do yet.
//
// Output sample s is input sample s + Ca (Ca = the crossfade in samples) up to Sa = La - Ca,
// where La = the output length = samples(N - K); samples [Sa, La) blend input s + Ca with head
// sample s - Sa. N is the `frames` property when set; otherwise, before the video's EOS,
// N ≥ frames received, which bounds how far the audio may run ahead of the video without
// knowing the clip length.
bool next_audio_work(GemVideoLoopImpl *impl, AudioWork &w) {
  AudioState &a = impl->audio;
  const VideoProgress &p = impl->progress;
  if (a.eos_pushed)
    return false;
  if (!a.caps) {
    if (!a.eos)
      return false;
    w.eos = true;
    a.eos_pushed = true;
    return true;
  }
  if (!p.configured || p.flushing || !a.placed())
    return false;

  const Timeline &t = p.timeline;
  const gint rate = GST_AUDIO_INFO_RATE(&a.info);
  const gsize bpf = GST_AUDIO_INFO_BPF(&a.info);
  const guint64 ca = t.samples(t.k, rate);

  if (!a.head_ready) {
    if (a.received < ca && !a.eos)
      return false;
    const guint64 have = std::min(a.received, ca);
    a.head.assign(ca * bpf, 0);
    std::memcpy(a.head.data(), a.body.data(), have * bpf);
    a.body.consume(have * bpf);
    a.body_base = have;
    a.head_ready = true;
  }

  const bool known = p.length_known();
  const guint64 clip = known ? p.length() : p.received;
  const guint64 frames_after_k = clip >= 2 * t.k ? clip - t.k : 0;
  const guint64 loop_end = frames_after_k ? t.samples(frames_after_k, rate) : 0; // La
  const guint64 straight_end = loop_end ? loop_end - ca : 0;                     // Sa
  const guint64 input_end = a.eos ? G_MAXUINT64 : (a.received > ca ? a.received - ca : 0);

  guint64 end = 0;
  bool blend = false;
  if (a.out_pos < straight_end) {
    end = std::min(straight_end, input_end);
  } else if (known && a.out_pos < loop_end) {
    end = std::min(loop_end, input_end);
    blend = true;
  } else if (known) {
    w.eos = true;
    a.eos_pushed = true;
    w.seqnum = a.seqnum;
    if (!a.length_checked) {
      a.length_checked = true;
      const guint64 expected = loop_end + ca;
      const guint64 tolerance = t.samples(1, rate);
      if (a.received + tolerance < expected)
        w.short_by = static_cast<double>(expected - a.received) / rate;
    }
    return true;
  }
  if (end <= a.out_pos)
    return false;

  const guint64 n = std::min<guint64>(
      end - a.out_pos, std::max(1u, static_cast<guint>(rate) / kAudioBuffersPerSecond));
  GstBuffer *buf = gst_buffer_new_allocate(nullptr, n * bpf, nullptr);
  GstMapInfo map;
  gst_buffer_map(buf, &map, GST_MAP_WRITE);
  if (!blend) {
    read_input(a, a.out_pos + ca, n, map.data);
  } else {
    std::vector<guint8> tail(n * bpf);
    read_input(a, a.out_pos + ca, n, tail.data());
    const guint64 j0 = a.out_pos - straight_end;
    const guint8 *head = a.head.data() + j0 * bpf;
    const gint channels = GST_AUDIO_INFO_CHANNELS(&a.info);
    if (GST_AUDIO_INFO_FORMAT(&a.info) == GST_AUDIO_FORMAT_F32LE)
      gemstream::videoloop::crossfade_f32(
          reinterpret_cast<float *>(map.data), reinterpret_cast<const float *>(tail.data()),
          reinterpret_cast<const float *>(head), n, channels, j0, ca);
    else
      gemstream::videoloop::crossfade_s16(
          reinterpret_cast<gint16 *>(map.data), reinterpret_cast<const gint16 *>(tail.data()),
          reinterpret_cast<const gint16 *>(head), n, channels, j0, ca);
  }
  gst_buffer_unmap(buf, &map);

  const GstClockTime pts = gst_util_uint64_scale(a.out_pos, GST_SECOND, rate);
  GST_BUFFER_PTS(buf) = pts;
  GST_BUFFER_DURATION(buf) = gst_util_uint64_scale(a.out_pos + n, GST_SECOND, rate) - pts;
  GST_BUFFER_OFFSET(buf) = a.out_pos;
  GST_BUFFER_OFFSET_END(buf) = a.out_pos + n;
  if (a.out_pos == 0)
    GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
  w.buffer = BufferRef::adopt(buf);
  if (a.need_segment) {
    w.segment = true;
    a.need_segment = false;
  }
  w.seqnum = a.seqnum;

  a.out_pos += n;
  const guint64 keep_from = a.out_pos + ca;
  if (keep_from > a.body_base) {
    const guint64 drop = std::min<guint64>(keep_from - a.body_base, a.body.size() / bpf);
    a.body.consume(drop * bpf);
    a.body_base += drop;
  }
  return true;
}

void audio_loop_once(GemVideoLoop *self) {
  GemVideoLoopImpl *impl = self->impl;
  AudioWork w;
  GstPad *src;
  {
    std::unique_lock<std::mutex> guard(impl->lock);
    impl->cond.wait(
        guard, [&] { return impl->audio.flushing || impl->fatal || next_audio_work(impl, w); });
    src = impl->audio_src;
    if (impl->audio.flushing || impl->fatal) {
      guard.unlock();
      GST_DEBUG_OBJECT(self, "pausing the audio task");
      gst_pad_pause_task(src);
      return;
    }
  }
  if (w.short_by > 0)
    GST_ELEMENT_WARNING(self, STREAM, FAILED,
                        ("The audio is %.2f s shorter than the video; the missing part of the "
                         "loop is silent.",
                         w.short_by),
                        (nullptr));
  if (w.segment)
    gst_pad_push_event(src, new_segment_event(w.seqnum));
  GstFlowReturn ret = GST_FLOW_OK;
  if (w.buffer) {
    GST_TRACE_OBJECT(self, "audio at %" GST_TIME_FORMAT ", %" G_GUINT64_FORMAT " samples",
                     GST_TIME_ARGS(GST_BUFFER_PTS(w.buffer.get())),
                     GST_BUFFER_OFFSET_END(w.buffer.get()) - GST_BUFFER_OFFSET(w.buffer.get()));
    ret = gst_pad_push(src, w.buffer.release());
  }
  if (ret == GST_FLOW_OK && w.eos) {
    GstEvent *eos = gst_event_new_eos();
    if (w.seqnum != GST_SEQNUM_INVALID)
      gst_event_set_seqnum(eos, w.seqnum);
    GST_DEBUG_OBJECT(self, "audio complete");
    gst_pad_push_event(src, eos);
    gst_pad_pause_task(src);
    return;
  }
  if (ret != GST_FLOW_OK) {
    GST_DEBUG_OBJECT(self, "audio push: %s", gst_flow_get_name(ret));
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      impl->audio.last_flow = ret;
    }
    gst_pad_pause_task(src);
    if (ret == GST_FLOW_NOT_LINKED || ret < GST_FLOW_EOS) {
      post_flow_error(self, ret);
      gst_pad_push_event(src, gst_event_new_eos());
    }
  }
}

void audio_loop(gpointer data) {
  auto *self = GEM_VIDEO_LOOP(data);
  GEM_GUARDED(GST_ELEMENT(self), false, [&] {
    audio_loop_once(self);
    return true;
  });
}

gboolean audio_set_caps(GemVideoLoop *self, GstCaps *caps) {
  GemVideoLoopImpl *impl = self->impl;
  GstAudioInfo info;
  if (!gst_audio_info_from_caps(&info, caps)) {
    gemstream::gst::GCharPtr s(gst_caps_to_string(caps));
    GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Invalid audio caps."), ("%s", s.get()));
    return FALSE;
  }
  std::unique_lock<std::mutex> guard(impl->lock);
  AudioState &a = impl->audio;
  if (a.caps && gst_caps_is_equal(a.caps.get(), caps))
    return TRUE;
  if (a.caps && a.received > 0) {
    gemstream::gst::GCharPtr from(gst_caps_to_string(a.caps.get()));
    gemstream::gst::GCharPtr to(gst_caps_to_string(caps));
    impl->fatal = true;
    impl->cond.notify_all();
    guard.unlock();
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("The audio format changed in the middle of the clip; videoloop can only "
                       "loop a clip with one format. Put audioconvert ! audioresample and a caps "
                       "filter before videoloop's audio_sink."),
                      ("from %s to %s", from.get(), to.get()));
    return FALSE;
  }
  a.caps = CapsRef::retain(caps);
  a.info = info;
  impl->cond.notify_all();
  GST_DEBUG_OBJECT(self, "audio %s, %d Hz, %d channels",
                   gst_audio_format_to_string(GST_AUDIO_INFO_FORMAT(&info)),
                   GST_AUDIO_INFO_RATE(&info), GST_AUDIO_INFO_CHANNELS(&info));
  return TRUE;
}

// The input samples the loop needs (its length plus the crossfade), or G_MAXUINT64 while the
// clip length is not known. Needs the lock and the audio caps.
guint64 audio_needed(const GemVideoLoopImpl *impl) {
  const VideoProgress &p = impl->progress;
  if (!p.length_known() || !p.configured || p.length() < 2 * p.timeline.k)
    return G_MAXUINT64;
  const gint rate = GST_AUDIO_INFO_RATE(&impl->audio.info);
  return p.timeline.samples(p.length() - p.timeline.k, rate) +
         p.timeline.samples(p.timeline.k, rate);
}

// Signed samples from running time `from` to `to`.
gint64 samples_between(GstClockTime from, GstClockTime to, gint rate) {
  const GstClockTime d = to > from ? to - from : from - to;
  const auto n = static_cast<gint64>(gst_util_uint64_scale_round(d, rate, GST_SECOND));
  return to >= from ? n : -n;
}

// Audio input differing from its timestamps by less than this is taken as contiguous: AAC and
// Opus frames carry rounded timestamps, and silence put in for a few samples would click.
constexpr GstClockTime kAudioSlack = 10 * GST_MSECOND;

// How far the video input may run ahead of the audio input before the audio missing in between
// is taken as silence. A demuxer interleaves its streams by time, so audio this late is audio
// that ended early or has a hole (Matroska sends no GAP for it): the muxers downstream wait for
// audio as far as the video they hold, and the branches' queues (1 s before libvpx) would
// fill and stop the whole pipeline.
constexpr GstClockTime kAudioLagLimit = 500 * GST_MSECOND;

// Appends input (or, with data == nullptr, silence) to the audio store, up to what the loop
// needs once the clip length is known. Needs the lock.
void audio_store(GemVideoLoopImpl *impl, const guint8 *data, guint64 samples) {
  AudioState &a = impl->audio;
  const guint64 needed = audio_needed(impl);
  samples = a.received < needed ? std::min(samples, needed - a.received) : 0;
  const gsize bytes = samples * GST_AUDIO_INFO_BPF(&a.info);
  if (data)
    a.body.append(data, bytes);
  else
    a.body.append_zeros(bytes);
  a.received += samples;
  impl->cond.notify_all();
}

// Once the first video frame's running time is known, moves input sample 0 to it: silence
// before audio that starts later, the part of earlier audio before it dropped. Needs the lock.
void audio_align(GemVideoLoopImpl *impl) {
  AudioState &a = impl->audio;
  const VideoProgress &p = impl->progress;
  if (a.aligned || !a.caps || !GST_CLOCK_TIME_IS_VALID(a.origin))
    return;
  if (p.untimed) {
    a.aligned = true;
    impl->cond.notify_all();
    return;
  }
  if (!GST_CLOCK_TIME_IS_VALID(p.start_rt))
    return;
  const gsize bpf = GST_AUDIO_INFO_BPF(&a.info);
  const gint64 lead = samples_between(p.start_rt, a.origin, GST_AUDIO_INFO_RATE(&a.info));
  if (lead > 0) {
    a.body.prepend_zeros(static_cast<std::size_t>(lead) * bpf);
    a.received += static_cast<guint64>(lead);
  } else if (lead < 0) {
    const guint64 drop = std::min<guint64>(static_cast<guint64>(-lead), a.received);
    a.body.consume(drop * bpf);
    a.received -= drop;
  }
  a.origin = p.start_rt;
  a.aligned = true;
  impl->cond.notify_all();
}

// Fills the audio input with silence up to kAudioLagLimit behind the newest video frame, when
// the audio has fallen that far behind (see kAudioLagLimit). Needs the lock.
void audio_fill_behind_video(GemVideoLoopImpl *impl) {
  AudioState &a = impl->audio;
  const VideoProgress &p = impl->progress;
  if (!a.aligned || a.eos || !GST_CLOCK_TIME_IS_VALID(p.latest_rt) ||
      p.latest_rt < p.start_rt + kAudioLagLimit)
    return;
  const gint64 until =
      samples_between(p.start_rt, p.latest_rt - kAudioLagLimit, GST_AUDIO_INFO_RATE(&a.info));
  if (until > static_cast<gint64>(a.received))
    audio_store(impl, nullptr, static_cast<guint64>(until) - a.received);
}

GstFlowReturn audio_take_buffer(GemVideoLoop *self, GstBuffer *buffer) {
  GemVideoLoopImpl *impl = self->impl;
  std::unique_lock<std::mutex> guard(impl->lock);
  AudioState &a = impl->audio;
  if (impl->fatal)
    return GST_FLOW_ERROR;
  if (a.flushing)
    return GST_FLOW_FLUSHING;
  if (a.last_flow != GST_FLOW_OK)
    return a.last_flow;
  if (!a.caps) {
    guard.unlock();
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Received audio before its caps."), (nullptr));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  // Once the loop has all the audio it needs (a clip's audio usually overhangs its video),
  // upstream may stop sending it, as after a downstream EOS: a demuxer goes on with the video.
  if (a.eos || a.received >= audio_needed(impl))
    return GST_FLOW_EOS;
  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_READ)) {
    guard.unlock();
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Cannot read an audio buffer."), (nullptr));
    return GST_FLOW_ERROR;
  }
  const gsize bpf = GST_AUDIO_INFO_BPF(&a.info);
  if (map.size % bpf != 0)
    GST_WARNING_OBJECT(self, "audio buffer of %" G_GSIZE_FORMAT " bytes is not whole frames",
                       map.size);
  const guint8 *data = map.data;
  guint64 samples = map.size / bpf;
  // Place the buffer by its running time: silence for a hole before it, its start dropped
  // where it overlaps what is stored (audio from before the video's start, or audio that came
  // later than kAudioLagLimit behind the video).
  const GstClockTime rt =
      GST_BUFFER_PTS_IS_VALID(buffer)
          ? gst_segment_to_running_time(&a.segment, GST_FORMAT_TIME, GST_BUFFER_PTS(buffer))
          : GST_CLOCK_TIME_NONE;
  if (!GST_CLOCK_TIME_IS_VALID(a.origin)) {
    const VideoProgress &p = impl->progress;
    a.origin = GST_CLOCK_TIME_IS_VALID(rt)           ? rt
               : GST_CLOCK_TIME_IS_VALID(p.start_rt) ? p.start_rt
                                                     : 0;
    audio_align(impl);
  }
  if (GST_CLOCK_TIME_IS_VALID(rt)) {
    const gint rate = GST_AUDIO_INFO_RATE(&a.info);
    const gint64 at = samples_between(a.origin, rt, rate);
    const gint64 slack = samples_between(0, kAudioSlack, rate);
    const auto stored = static_cast<gint64>(a.received);
    if (at > stored + slack) {
      GST_DEBUG_OBJECT(self, "audio resumes at %" GST_TIME_FORMAT ": %" G_GINT64_FORMAT
                       " samples of silence before it", GST_TIME_ARGS(rt), at - stored);
      audio_store(impl, nullptr, static_cast<guint64>(at - stored));
    } else if (at < stored - slack) {
      const guint64 drop = std::min<guint64>(static_cast<guint64>(stored - at), samples);
      GST_LOG_OBJECT(self, "dropping %" G_GUINT64_FORMAT " audio samples before %" G_GUINT64_FORMAT,
                     drop, a.received);
      data += drop * bpf;
      samples -= drop;
    }
  }
  audio_store(impl, data, samples);
  gst_buffer_unmap(buffer, &map);
  return GST_FLOW_OK;
}

gboolean audio_gap(GemVideoLoop *self, GstEvent *event) {
  GemVideoLoopImpl *impl = self->impl;
  GstClockTime timestamp, duration;
  gst_event_parse_gap(event, &timestamp, &duration);
  gst_event_unref(event);
  std::lock_guard<std::mutex> guard(impl->lock);
  if (!impl->audio.caps || !GST_CLOCK_TIME_IS_VALID(duration) || impl->audio.eos)
    return TRUE;
  const guint64 samples =
      gst_util_uint64_scale_round(duration, GST_AUDIO_INFO_RATE(&impl->audio.info), GST_SECOND);
  GST_DEBUG_OBJECT(self,
                   "audio gap of %" GST_TIME_FORMAT ": %" G_GUINT64_FORMAT " samples of silence",
                   GST_TIME_ARGS(duration), samples);
  audio_store(impl, nullptr, samples);
  return TRUE;
}

gboolean audio_eos(GemVideoLoop *self, GstEvent *event) {
  GemVideoLoopImpl *impl = self->impl;
  gst_event_unref(event);
  bool no_video;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    no_video = impl->progress.received == 0 && !impl->progress.eos;
  }
  if (no_video && !gst_pad_is_linked(impl->video_sink)) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED,
                      ("No video: videoloop's video_sink pad is not linked. videoloop loops a "
                       "video clip with optional audio; audio alone cannot be looped."),
                      (nullptr));
    set_fatal(impl);
    return FALSE;
  }
  std::lock_guard<std::mutex> guard(impl->lock);
  impl->audio.eos = true;
  impl->cond.notify_all();
  return TRUE;
}

// ---- pads -----------------------------------------------------------------------------------

gboolean video_sink_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  auto *self = GEM_VIDEO_LOOP(parent);
  GemVideoLoopImpl *impl = self->impl;
  GST_LOG_OBJECT(pad, "%" GST_PTR_FORMAT, event);
  return GEM_GUARDED(GST_ELEMENT(self), FALSE, [&]() -> gboolean {
    switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps *caps;
      gst_event_parse_caps(event, &caps);
      if (!video_set_caps(self, caps)) {
        gst_event_unref(event);
        return FALSE;
      }
      return gst_pad_push_event(impl->video_src, event);
    }
    case GST_EVENT_SEGMENT: {
      // Replaced by a segment from 0 before the first output frame; kept for the frames'
      // running times, which place the audio.
      const GstSegment *segment;
      gst_event_parse_segment(event, &segment);
      impl->video.seqnum = gst_event_get_seqnum(event);
      if (segment->format == GST_FORMAT_TIME)
        gst_segment_copy_into(segment, &impl->video.segment);
      gst_event_unref(event);
      return TRUE;
    }
    case GST_EVENT_GAP:
      return video_gap(self, event);
    case GST_EVENT_EOS:
      return video_eos(self, event);
    case GST_EVENT_FLUSH_START: {
      std::lock_guard<std::mutex> guard(impl->lock);
      impl->progress.flushing = true;
      impl->cond.notify_all();
      break;
    }
    case GST_EVENT_FLUSH_STOP: {
      impl->video.reset_stream();
      std::lock_guard<std::mutex> guard(impl->lock);
      impl->progress.received = 0;
      impl->progress.eos = false;
      impl->progress.start_rt = GST_CLOCK_TIME_NONE;
      impl->progress.latest_rt = GST_CLOCK_TIME_NONE;
      impl->progress.untimed = false;
      impl->progress.flushing = false;
      impl->fatal = false;
      impl->cond.notify_all();
      break;
    }
    default:
      break;
    }
    return gst_pad_event_default(pad, parent, event);
  });
}

gboolean audio_sink_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  auto *self = GEM_VIDEO_LOOP(parent);
  GemVideoLoopImpl *impl = self->impl;
  GST_LOG_OBJECT(pad, "%" GST_PTR_FORMAT, event);
  return GEM_GUARDED(GST_ELEMENT(self), FALSE, [&]() -> gboolean {
    switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps *caps;
      gst_event_parse_caps(event, &caps);
      if (!audio_set_caps(self, caps)) {
        gst_event_unref(event);
        return FALSE;
      }
      break;
    }
    case GST_EVENT_SEGMENT: {
      const GstSegment *segment;
      gst_event_parse_segment(event, &segment);
      std::lock_guard<std::mutex> guard(impl->lock);
      impl->audio.seqnum = gst_event_get_seqnum(event);
      if (segment->format == GST_FORMAT_TIME)
        gst_segment_copy_into(segment, &impl->audio.segment);
      gst_event_unref(event);
      return TRUE;
    }
    case GST_EVENT_GAP:
      return audio_gap(self, event);
    case GST_EVENT_EOS:
      return audio_eos(self, event);
    case GST_EVENT_TAG: {
      // Tags go on to the loop's audio. The loop may have ended already (it needs less audio
      // than the clip has), and a tag refused after that EOS is no failure of upstream's:
      // answering FALSE would make upstream's next push fail with an error.
      GstPad *src = audio_src_pad(impl);
      if (src)
        gst_pad_push_event(src, event);
      else
        gst_event_unref(event);
      return TRUE;
    }
    case GST_EVENT_FLUSH_START: {
      {
        std::lock_guard<std::mutex> guard(impl->lock);
        impl->audio.flushing = true;
        impl->cond.notify_all();
      }
      GstPad *src = audio_src_pad(impl);
      gboolean ok = gst_pad_push_event(src, event);
      gst_pad_pause_task(src);
      return ok;
    }
    case GST_EVENT_FLUSH_STOP: {
      GstPad *src = audio_src_pad(impl);
      gboolean ok = gst_pad_push_event(src, event);
      {
        std::lock_guard<std::mutex> guard(impl->lock);
        impl->audio.reset_stream();
        impl->audio.flushing = false;
      }
      gst_pad_start_task(src, audio_loop, self, nullptr);
      return ok;
    }
    default:
      break;
    }
    return gst_pad_event_default(pad, parent, event);
  });
}

GstFlowReturn video_chain(GstPad *, GstObject *parent, GstBuffer *buffer) {
  auto *self = GEM_VIDEO_LOOP(parent);
  BufferRef frame = BufferRef::adopt(buffer);
  return GEM_GUARDED(GST_ELEMENT(self), GST_FLOW_ERROR,
                     [&] { return video_take_frame(self, std::move(frame)); });
}

GstFlowReturn audio_chain(GstPad *, GstObject *parent, GstBuffer *buffer) {
  auto *self = GEM_VIDEO_LOOP(parent);
  BufferRef samples = BufferRef::adopt(buffer);
  return GEM_GUARDED(GST_ELEMENT(self), GST_FLOW_ERROR,
                     [&] { return audio_take_buffer(self, samples.get()); });
}

gboolean video_sink_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  auto *self = GEM_VIDEO_LOOP(parent);
  if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION) {
    // Answered here rather than downstream, whose answer behind a tee waits for every branch's
    // queue to drain its caps (an encoder's start-up): GstVideoMeta is accepted, since frames
    // in another layout are copied on the way out to a downstream that does not read it. Ask
    // for a pool of upstream's own with no upper bound, so the head and the delay line can be
    // held by reference. Without `frames` the delay line holds K frames; with `frames` only the
    // newest frame is held (for GAPs), and a larger minimum would only make upstream
    // preallocate frames nobody uses. The query is serialized, so the video state may be read.
    const VideoState &v = self->impl->video;
    GstCaps *caps = nullptr;
    gst_query_parse_allocation(query, &caps, nullptr);
    GstVideoInfo info;
    if (!caps || !gst_video_info_from_caps(&info, caps))
      return FALSE;
    gst_query_add_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr);
    const guint64 held = v.caps && !v.progressive() ? v.timeline.k : 0;
    gst_query_add_allocation_pool(query, nullptr, static_cast<guint>(GST_VIDEO_INFO_SIZE(&info)),
                                  static_cast<guint>(held + 2), 0);
    return TRUE;
  }
  return gst_pad_query_default(pad, parent, query);
}

GstPad *sink_for(GemVideoLoopImpl *impl, GstPad *src) {
  std::lock_guard<std::mutex> guard(impl->lock);
  GstPad *sink = src == impl->video_src   ? impl->video_sink
                 : src == impl->audio_src ? impl->audio_sink
                                          : nullptr;
  return sink ? GST_PAD(gst_object_ref(sink)) : nullptr;
}

gboolean src_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  auto *self = GEM_VIDEO_LOOP(parent);
  GemVideoLoopImpl *impl = self->impl;
  switch (GST_QUERY_TYPE(query)) {
  case GST_QUERY_DURATION: {
    GstFormat format;
    gst_query_parse_duration(query, &format, nullptr);
    if (format != GST_FORMAT_TIME)
      return FALSE;
    Ref<GstPad> sink = Ref<GstPad>::adopt(sink_for(impl, pad));
    if (!sink || !gst_pad_peer_query(sink.get(), query))
      return FALSE;
    gint64 duration;
    gst_query_parse_duration(query, nullptr, &duration);
    if (duration < 0)
      return TRUE;
    GstClockTime crossfade;
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      crossfade = impl->progress.configured
                      ? impl->progress.timeline.frame_time(impl->progress.timeline.k)
                      : impl->crossfade;
    }
    gst_query_set_duration(query, GST_FORMAT_TIME,
                           std::max<gint64>(0, duration - static_cast<gint64>(crossfade)));
    return TRUE;
  }
  case GST_QUERY_POSITION:
    // Upstream positions are on the input timeline, which runs ahead of the loop; sinks know
    // the output position.
    return FALSE;
  default:
    return gst_pad_query_default(pad, parent, query);
  }
}

gboolean src_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_SEEK) {
    gdouble rate;
    GstFormat format;
    GstSeekFlags flags;
    GstSeekType start_type, stop_type;
    gint64 start, stop;
    gst_event_parse_seek(event, &rate, &format, &flags, &start_type, &start, &stop_type, &stop);
    const bool to_start =
        rate == 1.0 && format == GST_FORMAT_TIME && (flags & GST_SEEK_FLAG_FLUSH) &&
        start_type == GST_SEEK_TYPE_SET && start == 0 &&
        (stop_type == GST_SEEK_TYPE_NONE || (stop_type == GST_SEEK_TYPE_SET && stop == -1));
    if (!to_start) {
      GST_DEBUG_OBJECT(pad, "refusing %" GST_PTR_FORMAT ": only flushing seeks to 0 are supported",
                       event);
      gst_event_unref(event);
      return FALSE;
    }
  }
  return gst_pad_event_default(pad, parent, event);
}

GstIterator *iterate_internal_links(GstPad *pad, GstObject *parent) {
  GemVideoLoopImpl *impl = GEM_VIDEO_LOOP(parent)->impl;
  GValue value = G_VALUE_INIT;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    GstPad *other = pad == impl->video_sink   ? impl->video_src
                    : pad == impl->video_src  ? impl->video_sink
                    : pad == impl->audio_sink ? impl->audio_src
                    : pad == impl->audio_src  ? impl->audio_sink
                                              : nullptr;
    if (!other)
      return nullptr;
    g_value_init(&value, GST_TYPE_PAD);
    g_value_set_object(&value, other);
  }
  GstIterator *it = gst_iterator_new_single(GST_TYPE_PAD, &value);
  g_value_unset(&value);
  return it;
}

gboolean audio_src_activate_mode(GstPad *pad, GstObject *parent, GstPadMode mode, gboolean active) {
  auto *self = GEM_VIDEO_LOOP(parent);
  GemVideoLoopImpl *impl = self->impl;
  if (mode != GST_PAD_MODE_PUSH)
    return FALSE;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->audio.flushing = !active;
    impl->audio.last_flow = GST_FLOW_OK;
    impl->cond.notify_all();
  }
  return active ? gst_pad_start_task(pad, audio_loop, self, nullptr) : gst_pad_stop_task(pad);
}

} // namespace

// ---- element --------------------------------------------------------------------------------

static GstPad *gem_video_loop_request_new_pad(GstElement *element, GstPadTemplate *templ,
                                              const gchar *, const GstCaps *) {
  auto *self = GEM_VIDEO_LOOP(element);
  GemVideoLoopImpl *impl = self->impl;
  if (templ != gst_element_class_get_pad_template(GST_ELEMENT_GET_CLASS(element), "audio_sink"))
    return nullptr;
  GstPad *sink = gst_pad_new_from_static_template(&audio_sink_template, "audio_sink");
  GstPad *src = gst_pad_new_from_static_template(&audio_src_template, "audio_src");
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    if (impl->audio_sink) {
      GST_WARNING_OBJECT(self, "videoloop has a single audio stream; audio_sink exists already");
      gst_object_unref(gst_object_ref_sink(sink));
      gst_object_unref(gst_object_ref_sink(src));
      return nullptr;
    }
    impl->audio_sink = sink;
    impl->audio_src = src;
    impl->audio.reset_all();
  }
  gst_pad_set_chain_function(sink, GST_DEBUG_FUNCPTR(audio_chain));
  gst_pad_set_event_function(sink, GST_DEBUG_FUNCPTR(audio_sink_event));
  gst_pad_set_iterate_internal_links_function(sink, GST_DEBUG_FUNCPTR(iterate_internal_links));
  GST_PAD_SET_PROXY_CAPS(sink);
  gst_pad_set_event_function(src, GST_DEBUG_FUNCPTR(src_event));
  gst_pad_set_query_function(src, GST_DEBUG_FUNCPTR(src_query));
  gst_pad_set_activatemode_function(src, GST_DEBUG_FUNCPTR(audio_src_activate_mode));
  gst_pad_set_iterate_internal_links_function(src, GST_DEBUG_FUNCPTR(iterate_internal_links));
  GST_PAD_SET_PROXY_CAPS(src);
  // Added in PAUSED or PLAYING, the pads are activated here, which starts the audio task.
  gst_element_add_pad(element, src);
  gst_element_add_pad(element, sink);
  GST_DEBUG_OBJECT(self, "audio pads added");
  return sink;
}

static void gem_video_loop_release_pad(GstElement *element, GstPad *pad) {
  auto *self = GEM_VIDEO_LOOP(element);
  GemVideoLoopImpl *impl = self->impl;
  GstPad *src;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    if (pad != impl->audio_sink)
      return;
    src = impl->audio_src;
  }
  gst_pad_set_active(pad, FALSE);
  gst_pad_set_active(src, FALSE);
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->audio_sink = nullptr;
    impl->audio_src = nullptr;
    impl->audio.reset_all();
  }
  gst_element_remove_pad(element, src);
  gst_element_remove_pad(element, pad);
  GST_DEBUG_OBJECT(self, "audio pads released");
}

static GstStateChangeReturn gem_video_loop_change_state(GstElement *element,
                                                        GstStateChange transition) {
  auto *self = GEM_VIDEO_LOOP(element);
  GemVideoLoopImpl *impl = self->impl;
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    impl->video.reset_all();
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->crossfade = impl->settings.crossfade;
    impl->frames = impl->settings.frames;
    impl->progress = {};
    impl->audio.reset_all();
    impl->fatal = false;
  }
  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS(gem_video_loop_parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE)
    return ret;
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) {
    // The pads are inactive now: no streaming thread or task touches the state.
    impl->video.reset_all();
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->progress = {};
    impl->audio.reset_all();
  }
  return ret;
}

static void gem_video_loop_set_property(GObject *object, guint prop_id, const GValue *value,
                                        GParamSpec *pspec) {
  GemVideoLoopImpl *impl = GEM_VIDEO_LOOP(object)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  switch (prop_id) {
  case PROP_CROSSFADE:
    impl->settings.crossfade = g_value_get_uint64(value);
    break;
  case PROP_FRAMES: impl->settings.frames = g_value_get_uint64(value); break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gem_video_loop_get_property(GObject *object, guint prop_id, GValue *value,
                                        GParamSpec *pspec) {
  GemVideoLoopImpl *impl = GEM_VIDEO_LOOP(object)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  switch (prop_id) {
  case PROP_CROSSFADE:
    g_value_set_uint64(value, impl->settings.crossfade);
    break;
  case PROP_FRAMES: g_value_set_uint64(value, impl->settings.frames); break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gem_video_loop_finalize(GObject *object) {
  auto *self = GEM_VIDEO_LOOP(object);
  delete self->impl;
  self->impl = nullptr;
  G_OBJECT_CLASS(gem_video_loop_parent_class)->finalize(object);
}

static void gem_video_loop_init(GemVideoLoop *self) {
  auto *impl = new GemVideoLoopImpl();
  self->impl = impl;

  impl->video_sink = gst_pad_new_from_static_template(&video_sink_template, "video_sink");
  gst_pad_set_chain_function(impl->video_sink, GST_DEBUG_FUNCPTR(video_chain));
  gst_pad_set_event_function(impl->video_sink, GST_DEBUG_FUNCPTR(video_sink_event));
  gst_pad_set_query_function(impl->video_sink, GST_DEBUG_FUNCPTR(video_sink_query));
  gst_pad_set_iterate_internal_links_function(impl->video_sink,
                                              GST_DEBUG_FUNCPTR(iterate_internal_links));
  GST_PAD_SET_PROXY_CAPS(impl->video_sink);
  gst_element_add_pad(GST_ELEMENT(self), impl->video_sink);

  impl->video_src = gst_pad_new_from_static_template(&video_src_template, "video_src");
  gst_pad_set_event_function(impl->video_src, GST_DEBUG_FUNCPTR(src_event));
  gst_pad_set_query_function(impl->video_src, GST_DEBUG_FUNCPTR(src_query));
  gst_pad_set_iterate_internal_links_function(impl->video_src,
                                              GST_DEBUG_FUNCPTR(iterate_internal_links));
  GST_PAD_SET_PROXY_CAPS(impl->video_src);
  gst_element_add_pad(GST_ELEMENT(self), impl->video_src);
}

static void gem_video_loop_class_init(GemVideoLoopClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gem_video_loop_debug, "videoloop", 0,
                          "gemstream seamless loop (crossfades a clip's tail into its head)");

  gobject_class->set_property = gem_video_loop_set_property;
  gobject_class->get_property = gem_video_loop_get_property;
  gobject_class->finalize = gem_video_loop_finalize;

  g_object_class_install_property(
      gobject_class, PROP_CROSSFADE,
      g_param_spec_uint64(
          "crossfade", "Crossfade",
          "Length of the crossfade from the end of the clip into its start, in nanoseconds, "
          "rounded to whole video frames. The output is this much shorter than the input, and "
          "the input must be at least twice as long.",
          kMinCrossfade, kMaxCrossfade, kDefaultCrossfade,
          static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                   GST_PARAM_MUTABLE_READY)));

  g_object_class_install_property(
      gobject_class, PROP_FRAMES,
      g_param_spec_uint64(
          "frames", "Frames",
          "Number of video frames in the clip, when it is known exactly beforehand (e.g. from a "
          "probe of the file); 0: unknown. With it, each frame of the tail is blended into the "
          "head and pushed as it arrives, so only the head is held instead of also a delay line "
          "of as many frames, and output is not delayed. A clip with a different number of "
          "frames fails.",
          0, G_MAXUINT64, kDefaultFrames,
          static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                   GST_PARAM_MUTABLE_READY)));

  gst_element_class_add_static_pad_template(element_class, &video_sink_template);
  gst_element_class_add_static_pad_template(element_class, &video_src_template);
  gst_element_class_add_static_pad_template(element_class, &audio_sink_template);
  gst_element_class_add_static_pad_template(element_class, &audio_src_template);
  gst_element_class_set_static_metadata(
      element_class, "Seamless video loop", "Filter/Effect/Video/Audio",
      "Crossfades the end of a clip into its start so that the output loops without a seam",
      "gemstream developers <dev@gemstream.local>");

  element_class->change_state = GST_DEBUG_FUNCPTR(gem_video_loop_change_state);
  element_class->request_new_pad = GST_DEBUG_FUNCPTR(gem_video_loop_request_new_pad);
  element_class->release_pad = GST_DEBUG_FUNCPTR(gem_video_loop_release_pad);
}
