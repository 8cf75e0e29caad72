/**
 * SECTION:element-geminilivesrc
 * @title: geminilivesrc
 * @see_also: geminilivesink
 *
 * A live source of the model's speech in a Gemini Live conversation: S16LE, 24 kHz, mono. It
 * pairs with the #geminilivesink whose `session` property has the same value, in the same
 * pipeline or in another one of the process; the sink owns the connection, this element only
 * plays what the model says. Either element may start first. Without a sink (or while the model
 * is silent) the source sends `GAP` events every 100 ms, so downstream mixers and muxers never
 * wait for data.
 *
 * Timestamps are running times: the first buffer of a burst of model speech is stamped with the
 * running time at which it is pushed, the following ones follow contiguously until the speech
 * pauses. The service sends speech faster than real time, so buffers run ahead of the clock and
 * an audio sink downstream paces them. The latency query is answered as live,
 * with `latency` as the minimum; place the source in a pipeline whose sink synchronises to the
 * clock (an audio sink) for real-time playback, or in front of an encoder and `filesink` to
 * record the reply.
 *
 * Barge-in: when the service reports that the user interrupted the model (`interrupted`), the
 * queued speech is dropped and `FLUSH_START` is pushed downstream at once from the thread that
 * received the message, which also unblocks an audio sink waiting in its ring buffer; the
 * streaming thread then sends `FLUSH_STOP` (without resetting the running time) and a new segment,
 * and continues. Each interruption is reported by a `gemstream-live-flushed` element message:
 *
 * - `dropped-ms` (#guint64): queued model speech dropped, in milliseconds.
 * - `arrival-us` (#gint64): g_get_monotonic_time() when the interruption was received.
 * - `latency-us` (#gint64): microseconds from the arrival to `FLUSH_START` having been handled
 *   downstream (-1 when nothing was flushed because no stream was running yet).
 *
 * The stream ends (EOS) once the paired sink's input ended, the model completed its last turn
 * (see #geminilivesink) and the queued speech was pushed. An EOS sent to the element (for
 * example by `gst-launch-1.0 -e`) ends the stream at once.
 *
 * The element is a plain #GstElement with its own streaming task rather than a #GstBaseSrc: a
 * barge-in must flush downstream while the streaming thread is blocked inside a push, and a
 * base source pauses its task on such a flush.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 autoaudiosrc ! audioconvert ! audioresample ! geminilivesink  geminilivesrc ! audioconvert ! autoaudiosink
 * gst-launch-1.0 filesrc location=question.wav ! wavparse ! audioconvert ! audioresample ! geminilivesink sync=true \
 *     geminilivesrc ! wavenc ! filesink location=reply.wav
 * ]|
 */
#include "geminilivesrc.h"

#include "common/element_util.h"
#include "common/live_hub.h"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(gem_gemini_live_src_debug);
#define GST_CAT_DEFAULT gem_gemini_live_src_debug

namespace {

using gemstream::gst::LiveAudioListener;
using gemstream::gst::LiveHub;

constexpr int kSampleRate = 24000;
constexpr std::size_t kChunkSamples = kSampleRate / 50;  // 20 ms per buffer
constexpr GstClockTime kGapInterval = 100 * GST_MSECOND;
// A pause in the speech shorter than this (network jitter between messages) keeps the timestamps
// contiguous.
constexpr GstClockTime kJoinTolerance = 20 * GST_MSECOND;
constexpr const char *kDefaultSession = "default";
constexpr guint kDefaultLatencyMs = 100;
constexpr guint kMaxLatencyMs = 10000;
constexpr guint kDefaultMaxBufferedMs = 10000;
constexpr guint kMinMaxBufferedMs = 100;
constexpr guint kMaxMaxBufferedMs = 600000;

enum {
  PROP_0,
  PROP_SESSION,
  PROP_LATENCY,
  PROP_MAX_BUFFERED,
  PROP_BUFFERED_MS,
  PROP_DROPPED_ON_INTERRUPT_MS,
  PROP_DROPPED_OVERFLOW_MS,
  PROP_INTERRUPTIONS,
  PROP_FLUSH_LATENCY,
};

struct Settings {
  std::string session = kDefaultSession;
  guint latency_ms = kDefaultLatencyMs;
  guint max_buffered_ms = kDefaultMaxBufferedMs;
};

struct Stats {
  guint64 buffered_ms = 0;
  guint64 dropped_on_interrupt_ms = 0;
  guint64 dropped_overflow_ms = 0;
  guint64 interruptions = 0;
  gint64 flush_latency_us = -1;
};

guint64 samples_to_ms(guint64 samples) { return samples * 1000 / kSampleRate; }

// The queue between the session's network thread and the streaming task, and the task itself.
// Owned by the element; shared with the hub while attached (READY→PAUSED to PAUSED→READY). The
// element outlives every call: the hub stops calling before detach_listener() returns, and the
// task is stopped when the pad is deactivated.
//
// Lock order: the hub's dispatch lock → lock_. lock_ is never held while pushing, posting or
// waiting on the clock.
class SrcStream final : public LiveAudioListener {
public:
  SrcStream(GstElement *element, GstPad *pad) : element_(element), pad_(pad) {}

  // READY→PAUSED, before the task starts.
  void prepare(guint max_buffered_ms) {
    std::lock_guard lock(lock_);
    max_samples_ = std::size_t(max_buffered_ms) * kSampleRate / 1000;
    queue_.clear();
    stopping_ = playing_ = started_ = interrupting_ = flush_stop_needed_ = false;
    eos_pending_ = eos_sent_ = false;
    position_ = GST_CLOCK_TIME_NONE;
    offset_ = 0;
    discont_ = true;
    in_burst_ = false;
    mono_origin_us_ = -1;
    stats_ = {};
  }

  // Wakes every wait so the task can be stopped (pad deactivation, PAUSED→READY).
  void unlock_for_stop() {
    std::lock_guard lock(lock_);
    stopping_ = true;
    wake_locked();
  }

  void set_playing(bool playing) {
    std::lock_guard lock(lock_);
    playing_ = playing;
    if (playing && mono_origin_us_ < 0)
      mono_origin_us_ = g_get_monotonic_time();
    wake_locked();
  }

  // An EOS sent to the element: end the stream now, dropping queued speech.
  void request_eos() {
    std::lock_guard lock(lock_);
    queue_.clear();
    eos_pending_ = true;
    wake_locked();
  }

  Stats stats() {
    std::lock_guard lock(lock_);
    Stats s = stats_;
    s.buffered_ms = samples_to_ms(queue_.size());
    return s;
  }

  // ---- LiveAudioListener (network thread / sink thread) ----

  void on_model_audio(std::vector<std::int16_t> pcm, int sample_rate) override {
    if (sample_rate != kSampleRate) {
      // Every current Live model speaks at 24 kHz; the caps are fixed to it.
      GST_WARNING_OBJECT(element_, "dropping %zu samples of model speech at %d Hz (expected %d)",
                         pcm.size(), sample_rate, kSampleRate);
      return;
    }
    std::lock_guard lock(lock_);
    if (eos_pending_ || eos_sent_)
      return;
    queue_.insert(queue_.end(), pcm.begin(), pcm.end());
    if (queue_.size() > max_samples_) {
      // The consumer stalled (downstream blocked, PAUSED): keep the newest speech.
      const std::size_t excess = queue_.size() - max_samples_;
      queue_.erase(queue_.begin(), queue_.begin() + std::ptrdiff_t(excess));
      overflow_samples_ += excess;
      stats_.dropped_overflow_ms = samples_to_ms(overflow_samples_);
    }
    GST_TRACE_OBJECT(element_, "queued %zu samples, %zu waiting", pcm.size(), queue_.size());
    wake_locked();
  }

  void on_interrupted(std::int64_t arrival_us) override {
    bool flush;
    std::size_t dropped;
    {
      std::lock_guard lock(lock_);
      dropped = queue_.size();
      queue_.clear();
      interrupted_samples_ += dropped;
      stats_.dropped_on_interrupt_ms = samples_to_ms(interrupted_samples_);
      ++stats_.interruptions;
      flush = started_ && !stopping_ && !eos_sent_;
      if (flush)
        interrupting_ = true;
      wake_locked();
    }
    gint64 latency_us = -1;
    if (flush) {
      // Pushed from this thread, not the task's: the task may be blocked in a push into a sink
      // that only a flush releases. Out-of-band: no stream lock is needed.
      gst_pad_push_event(pad_, gst_event_new_flush_start());
      latency_us = g_get_monotonic_time() - arrival_us;
      std::lock_guard lock(lock_);
      interrupting_ = false;
      flush_stop_needed_ = true;
      stats_.flush_latency_us = latency_us;
      wake_locked();
    }
    GST_DEBUG_OBJECT(element_, "interrupted: dropped %" G_GUINT64_FORMAT " ms, flush latency %"
                     G_GINT64_FORMAT " us", samples_to_ms(dropped), latency_us);
    gst_element_post_message(
        element_, gst_message_new_element(
                      GST_OBJECT(element_),
                      gst_structure_new("gemstream-live-flushed", "dropped-ms", G_TYPE_UINT64,
                                        guint64(samples_to_ms(dropped)), "arrival-us",
                                        G_TYPE_INT64, gint64(arrival_us), "latency-us",
                                        G_TYPE_INT64, latency_us, nullptr)));
  }

  void on_finished() override {
    std::lock_guard lock(lock_);
    GST_DEBUG_OBJECT(element_, "conversation finished; EOS after %zu queued samples",
                     queue_.size());
    eos_pending_ = true;
    wake_locked();
  }

  void on_sink_attached(bool attached) override {
    GST_DEBUG_OBJECT(element_, "paired sink %s", attached ? "attached" : "detached");
  }

  // ---- the streaming task ----

  void loop() {
    std::unique_lock lk(lock_);
    for (;;) {
      if (stopping_ || eos_sent_) {
        lk.unlock();
        gst_pad_pause_task(pad_);
        return;
      }
      if (interrupting_) {
        cond_.wait(lk);
        continue;
      }
      if (flush_stop_needed_) {
        flush_stop_needed_ = false;
        const bool started = started_;
        lk.unlock();
        push_flush_stop(started);
        lk.lock();
        discont_ = true;
        in_burst_ = false;
        position_ = GST_CLOCK_TIME_NONE;  // restamp at the current running time
        continue;
      }
      if (!playing_) {
        cond_.wait(lk);
        continue;
      }
      if (!started_) {
        started_ = true;
        lk.unlock();
        if (!push_stream_start()) {
          lk.lock();
          // A flush or a stop raced with the first events: send them again afterwards.
          started_ = false;
          if (!interrupting_ && !flush_stop_needed_ && !stopping_) {
            lk.unlock();
            GST_ELEMENT_ERROR(element_, CORE, NEGOTIATION, ("Downstream refused the audio format."),
                              ("audio/x-raw,format=S16LE,rate=24000,channels=1 not accepted"));
            gst_pad_pause_task(pad_);
            return;
          }
          continue;
        }
        lk.lock();
        continue;
      }

      const GstClockTime now = running_time_now();
      if (!GST_CLOCK_TIME_IS_VALID(position_))
        position_ = now;

      if (!queue_.empty()) {
        push_chunk(lk, now);
        return;
      }
      in_burst_ = false;
      if (eos_pending_) {
        eos_sent_ = true;
        lk.unlock();
        GST_DEBUG_OBJECT(element_, "pushing EOS");
        gst_pad_push_event(pad_, gst_event_new_eos());
        gst_pad_pause_task(pad_);
        return;
      }
      if (now >= position_ + kGapInterval) {
        const GstClockTime start = position_;
        position_ = now;
        lk.unlock();
        GST_TRACE_OBJECT(element_, "gap %" GST_TIME_FORMAT " + %" GST_TIME_FORMAT,
                         GST_TIME_ARGS(start), GST_TIME_ARGS(now - start));
        gst_pad_push_event(pad_, gst_event_new_gap(start, now - start));
        return;
      }
      wait_until_locked(lk, position_ + kGapInterval);
    }
  }

private:
  // Running time of the element now, from its clock; without a clock (a harness, or before the
  // pipeline distributed one) from the monotonic clock since PLAYING.
  GstClockTime running_time_now() {
    GstClock *clock = gst_element_get_clock(element_);
    if (clock == nullptr) {
      const gint64 origin = mono_origin_us_ < 0 ? g_get_monotonic_time() : mono_origin_us_;
      return GstClockTime(g_get_monotonic_time() - origin) * GST_USECOND;
    }
    const GstClockTime now = gst_clock_get_time(clock);
    gst_object_unref(clock);
    const GstClockTime base = gst_element_get_base_time(element_);
    return now > base ? now - base : 0;
  }

  // Waits until the running time reaches `deadline`, or a wake-up. lk is held on entry and exit.
  void wait_until_locked(std::unique_lock<std::mutex> &lk, GstClockTime deadline) {
    GstClock *clock = gst_element_get_clock(element_);
    if (clock == nullptr) {
      const GstClockTime now = running_time_now();
      const auto left = std::chrono::nanoseconds(deadline > now ? deadline - now : 0);
      cond_.wait_for(lk, left);
      return;
    }
    GstClockID id =
        gst_clock_new_single_shot_id(clock, gst_element_get_base_time(element_) + deadline);
    gst_object_unref(clock);
    clock_id_ = id;
    lk.unlock();
    gst_clock_id_wait(id, nullptr);
    lk.lock();
    clock_id_ = nullptr;
    gst_clock_id_unref(id);
  }

  void wake_locked() {
    if (clock_id_ != nullptr)
      gst_clock_id_unschedule(clock_id_);
    cond_.notify_all();
  }

  bool push_stream_start() {
    gchar *stream_id = gst_pad_create_stream_id(pad_, element_, nullptr);
    GstEvent *start = gst_event_new_stream_start(stream_id);
    g_free(stream_id);
    gst_event_set_group_id(start, gst_util_group_id_next());
    if (!gst_pad_push_event(pad_, start))
      return false;
    GstCaps *caps = gst_pad_get_pad_template_caps(pad_);
    const gboolean caps_ok = gst_pad_push_event(pad_, gst_event_new_caps(caps));
    gst_caps_unref(caps);
    return caps_ok && push_segment();
  }

  bool push_segment() {
    GstSegment segment;
    gst_segment_init(&segment, GST_FORMAT_TIME);
    return gst_pad_push_event(pad_, gst_event_new_segment(&segment));
  }

  void push_flush_stop(bool started) {
    GST_DEBUG_OBJECT(element_, "flush stop after an interruption");
    gst_pad_push_event(pad_, gst_event_new_flush_stop(FALSE));
    if (started)
      push_segment();
  }

  // Pushes up to one chunk of queued speech. lk is held on entry and released on return.
  void push_chunk(std::unique_lock<std::mutex> &lk, GstClockTime now) {
    const std::size_t n = std::min(queue_.size(), kChunkSamples);
    GstBuffer *buf = gst_buffer_new_allocate(nullptr, n * 2, nullptr);
    GstMapInfo map;
    gst_buffer_map(buf, &map, GST_MAP_WRITE);
    for (std::size_t i = 0; i < n; ++i)
      GST_WRITE_UINT16_LE(map.data + 2 * i, guint16(queue_[i]));
    gst_buffer_unmap(buf, &map);
    queue_.erase(queue_.begin(), queue_.begin() + std::ptrdiff_t(n));

    // Within a burst (speech was waiting all along) buffers are contiguous, however late the
    // pushes return: the speech is continuous, and a syncing sink returns only at pts + latency.
    // A burst that follows a pause starts at the current running time, unless the pause was a
    // mere gap between two network messages of a stream arriving in real time.
    bool discont = discont_;
    GstClockTime pts = position_;
    if (!in_burst_ && pts + kJoinTolerance < now) {
      discont = discont || offset_ != 0;
      pts = now;
    }
    const GstClockTime duration = gst_util_uint64_scale_int(n, GST_SECOND, kSampleRate);
    GST_BUFFER_PTS(buf) = pts;
    GST_BUFFER_DURATION(buf) = duration;
    GST_BUFFER_OFFSET(buf) = offset_;
    GST_BUFFER_OFFSET_END(buf) = offset_ + n;
    if (discont)
      GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
    position_ = pts + duration;
    offset_ += n;
    discont_ = false;
    in_burst_ = true;
    lk.unlock();

    GST_TRACE_OBJECT(element_, "pushing %zu samples at %" GST_TIME_FORMAT " (running time %"
                     GST_TIME_FORMAT ")", n, GST_TIME_ARGS(pts), GST_TIME_ARGS(now));
    const GstFlowReturn ret = gst_pad_push(pad_, buf);
    if (ret == GST_FLOW_OK)
      return;

    lk.lock();
    const bool interrupted = interrupting_ || flush_stop_needed_;
    lk.unlock();
    if (ret == GST_FLOW_FLUSHING && interrupted)
      return;  // our own barge-in flush: the loop sends FLUSH_STOP and continues
    GST_DEBUG_OBJECT(element_, "pausing task: %s", gst_flow_get_name(ret));
    if (ret == GST_FLOW_NOT_LINKED || ret < GST_FLOW_EOS) {
      GST_ELEMENT_FLOW_ERROR(element_, ret);
      gst_pad_push_event(pad_, gst_event_new_eos());
    }
    gst_pad_pause_task(pad_);
  }

  GstElement *const element_;
  GstPad *const pad_;

  std::mutex lock_;
  std::condition_variable cond_;
  std::deque<std::int16_t> queue_;  // model speech not pushed yet
  std::size_t max_samples_ = std::size_t(kDefaultMaxBufferedMs) * kSampleRate / 1000;
  bool in_burst_ = false;            // speech was queued at every step since the last pause
  GstClockID clock_id_ = nullptr;   // the task's current clock wait
  bool stopping_ = false;
  bool playing_ = false;
  bool started_ = false;             // stream-start, caps and segment sent
  bool interrupting_ = false;        // FLUSH_START is being pushed by another thread
  bool flush_stop_needed_ = false;   // FLUSH_START went out; the task owes FLUSH_STOP
  bool eos_pending_ = false;
  bool eos_sent_ = false;
  bool discont_ = true;
  GstClockTime position_ = GST_CLOCK_TIME_NONE;  // running time where the next output starts
  guint64 offset_ = 0;
  gint64 mono_origin_us_ = -1;
  guint64 interrupted_samples_ = 0;
  guint64 overflow_samples_ = 0;
  Stats stats_;
};

} // namespace

// Lock order: `lock` (settings, hub) is never held while calling into the stream or the hub.
struct GemGeminiLiveSrcImpl {
  std::mutex lock;
  Settings settings;
  std::shared_ptr<SrcStream> stream;
  std::shared_ptr<LiveHub> hub;  // READY→PAUSED .. PAUSED→READY
};

struct _GemGeminiLiveSrc {
  GstElement parent;
  GstPad *srcpad;
  GemGeminiLiveSrcImpl *impl;
};

G_DEFINE_TYPE(GemGeminiLiveSrc, gem_gemini_live_src, GST_TYPE_ELEMENT)

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format=(string)S16LE, rate=(int)24000, channels=(int)1, "
                    "layout=(string)interleaved"));

static void gem_gemini_live_src_loop(gpointer user_data) {
  auto *self = GEM_GEMINI_LIVE_SRC(user_data);
  GEM_GUARDED(GST_ELEMENT(self), false, [&] {
    self->impl->stream->loop();
    return true;
  });
}

static gboolean gem_gemini_live_src_activate_mode(GstPad *pad, GstObject *parent, GstPadMode mode,
                                                  gboolean active) {
  auto *self = GEM_GEMINI_LIVE_SRC(parent);
  if (mode != GST_PAD_MODE_PUSH)
    return FALSE;
  if (active)
    return gst_pad_start_task(pad, gem_gemini_live_src_loop, self, nullptr);
  self->impl->stream->unlock_for_stop();
  return gst_pad_stop_task(pad);
}

static gboolean gem_gemini_live_src_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  auto *self = GEM_GEMINI_LIVE_SRC(parent);
  switch (GST_QUERY_TYPE(query)) {
  case GST_QUERY_LATENCY: {
    guint latency_ms, max_ms;
    {
      std::lock_guard guard(self->impl->lock);
      latency_ms = self->impl->settings.latency_ms;
      max_ms = self->impl->settings.max_buffered_ms;
    }
    // Live; we hold up to max-buffered of speech, so downstream may add that much latency.
    gst_query_set_latency(query, TRUE, latency_ms * GST_MSECOND,
                          std::max(latency_ms, max_ms) * GST_MSECOND);
    return TRUE;
  }
  case GST_QUERY_SCHEDULING:
    gst_query_set_scheduling(query, GST_SCHEDULING_FLAG_SEQUENTIAL, 1, -1, 0);
    gst_query_add_scheduling_mode(query, GST_PAD_MODE_PUSH);
    return TRUE;
  default:
    return gst_pad_query_default(pad, parent, query);
  }
}

static gboolean gem_gemini_live_src_event(GstPad *, GstObject *, GstEvent *event) {
  // Upstream events: nothing to seek, nothing upstream to forward to.
  const GstEventType type = GST_EVENT_TYPE(event);
  gst_event_unref(event);
  return type == GST_EVENT_LATENCY || type == GST_EVENT_RECONFIGURE || type == GST_EVENT_QOS;
}

static gboolean gem_gemini_live_src_send_event(GstElement *element, GstEvent *event) {
  auto *self = GEM_GEMINI_LIVE_SRC(element);
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) {
    GST_DEBUG_OBJECT(self, "EOS requested by the application");
    self->impl->stream->request_eos();
    gst_event_unref(event);
    return TRUE;
  }
  return GST_ELEMENT_CLASS(gem_gemini_live_src_parent_class)->send_event(element, event);
}

static GstStateChangeReturn gem_gemini_live_src_change_state(GstElement *element,
                                                            GstStateChange transition) {
  auto *self = GEM_GEMINI_LIVE_SRC(element);
  GemGeminiLiveSrcImpl *impl = self->impl;

  switch (transition) {
  case GST_STATE_CHANGE_READY_TO_PAUSED: {
    Settings s;
    {
      std::lock_guard guard(impl->lock);
      s = impl->settings;
    }
    impl->stream->prepare(s.max_buffered_ms);
    auto hub = LiveHub::acquire(s.session);
    if (!hub->attach_listener(impl->stream)) {
      GST_ELEMENT_ERROR(self, RESOURCE, BUSY,
                        ("Another geminilivesrc already plays Live session \"%s\".",
                         s.session.c_str()),
                        ("Give each geminilivesink/geminilivesrc pair its own 'session' name."));
      return GST_STATE_CHANGE_FAILURE;
    }
    GST_DEBUG_OBJECT(self, "attached to Live session \"%s\"", s.session.c_str());
    std::lock_guard guard(impl->lock);
    impl->hub = std::move(hub);
    break;
  }
  case GST_STATE_CHANGE_PLAYING_TO_PAUSED:
    impl->stream->set_playing(false);
    break;
  case GST_STATE_CHANGE_PAUSED_TO_READY:
    impl->stream->unlock_for_stop();
    break;
  default:
    break;
  }

  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS(gem_gemini_live_src_parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE) {
    if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
      std::shared_ptr<LiveHub> hub;
      {
        std::lock_guard guard(impl->lock);
        hub = std::move(impl->hub);
      }
      if (hub)
        hub->detach_listener(impl->stream.get());
    }
    return ret;
  }

  switch (transition) {
  case GST_STATE_CHANGE_READY_TO_PAUSED:
  case GST_STATE_CHANGE_PLAYING_TO_PAUSED:
    // A live source produces nothing in PAUSED.
    ret = GST_STATE_CHANGE_NO_PREROLL;
    break;
  case GST_STATE_CHANGE_PAUSED_TO_PLAYING:
    impl->stream->set_playing(true);
    break;
  case GST_STATE_CHANGE_PAUSED_TO_READY: {
    // The task is stopped; the hub stops calling the stream once detached.
    std::shared_ptr<LiveHub> hub;
    {
      std::lock_guard guard(impl->lock);
      hub = std::move(impl->hub);
    }
    if (hub)
      hub->detach_listener(impl->stream.get());
    break;
  }
  default:
    break;
  }
  return ret;
}

static void gem_gemini_live_src_set_property(GObject *object, guint prop_id, const GValue *value,
                                             GParamSpec *pspec) {
  auto *impl = GEM_GEMINI_LIVE_SRC(object)->impl;
  std::lock_guard guard(impl->lock);
  Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_SESSION:
    s.session = gemstream::gst::value_to_string(value);
    break;
  case PROP_LATENCY:
    s.latency_ms = g_value_get_uint(value);
    break;
  case PROP_MAX_BUFFERED:
    s.max_buffered_ms = g_value_get_uint(value);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gem_gemini_live_src_get_property(GObject *object, guint prop_id, GValue *value,
                                             GParamSpec *pspec) {
  auto *impl = GEM_GEMINI_LIVE_SRC(object)->impl;
  switch (prop_id) {
  case PROP_SESSION: {
    std::lock_guard guard(impl->lock);
    g_value_set_string(value, impl->settings.session.c_str());
    return;
  }
  case PROP_LATENCY: {
    std::lock_guard guard(impl->lock);
    g_value_set_uint(value, impl->settings.latency_ms);
    return;
  }
  case PROP_MAX_BUFFERED: {
    std::lock_guard guard(impl->lock);
    g_value_set_uint(value, impl->settings.max_buffered_ms);
    return;
  }
  default:
    break;
  }
  const Stats st = impl->stream->stats();
  switch (prop_id) {
  case PROP_BUFFERED_MS:
    g_value_set_uint64(value, st.buffered_ms);
    break;
  case PROP_DROPPED_ON_INTERRUPT_MS:
    g_value_set_uint64(value, st.dropped_on_interrupt_ms);
    break;
  case PROP_DROPPED_OVERFLOW_MS:
    g_value_set_uint64(value, st.dropped_overflow_ms);
    break;
  case PROP_INTERRUPTIONS:
    g_value_set_uint64(value, st.interruptions);
    break;
  case PROP_FLUSH_LATENCY:
    g_value_set_int64(value, st.flush_latency_us);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gem_gemini_live_src_finalize(GObject *object) {
  auto *self = GEM_GEMINI_LIVE_SRC(object);
  delete self->impl;
  self->impl = nullptr;
  G_OBJECT_CLASS(gem_gemini_live_src_parent_class)->finalize(object);
}

static void gem_gemini_live_src_init(GemGeminiLiveSrc *self) {
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_activatemode_function(self->srcpad,
                                    GST_DEBUG_FUNCPTR(gem_gemini_live_src_activate_mode));
  gst_pad_set_query_function(self->srcpad, GST_DEBUG_FUNCPTR(gem_gemini_live_src_query));
  gst_pad_set_event_function(self->srcpad, GST_DEBUG_FUNCPTR(gem_gemini_live_src_event));
  gst_pad_use_fixed_caps(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  self->impl = new GemGeminiLiveSrcImpl();
  self->impl->stream = std::make_shared<SrcStream>(GST_ELEMENT(self), self->srcpad);
  GST_OBJECT_FLAG_SET(self, GST_ELEMENT_FLAG_SOURCE);
}

static void gem_gemini_live_src_class_init(GemGeminiLiveSrcClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gem_gemini_live_src_debug, "geminilivesrc", 0,
                          "gemstream Gemini Live speech source");

  gobject_class->set_property = gem_gemini_live_src_set_property;
  gobject_class->get_property = gem_gemini_live_src_get_property;
  gobject_class->finalize = gem_gemini_live_src_finalize;

  const auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                              GST_PARAM_MUTABLE_READY);
  const auto ro = static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(
      gobject_class, PROP_SESSION,
      g_param_spec_string("session", "Session",
                          "Name of the Live session to play: the geminilivesink with the same "
                          "session name, in any pipeline of this process, owns the connection.",
                          kDefaultSession, flags));
  g_object_class_install_property(
      gobject_class, PROP_LATENCY,
      g_param_spec_uint("latency", "Latency",
                        "Minimum latency reported to the pipeline, in milliseconds: how far "
                        "behind the clock downstream sinks render the model's speech, which "
                        "absorbs network jitter.",
                        0, kMaxLatencyMs, kDefaultLatencyMs, flags));
  g_object_class_install_property(
      gobject_class, PROP_MAX_BUFFERED,
      g_param_spec_uint("max-buffered", "Maximum buffered",
                        "Most model speech held while downstream does not consume it, in "
                        "milliseconds; beyond it the oldest speech is dropped (counted in "
                        "dropped-overflow-ms). Also the maximum latency reported.",
                        kMinMaxBufferedMs, kMaxMaxBufferedMs, kDefaultMaxBufferedMs, flags));
  g_object_class_install_property(
      gobject_class, PROP_BUFFERED_MS,
      g_param_spec_uint64("buffered-ms", "Buffered",
                          "Model speech received and not pushed yet, in milliseconds.", 0,
                          G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_DROPPED_ON_INTERRUPT_MS,
      g_param_spec_uint64("dropped-on-interrupt-ms", "Dropped on interrupt",
                          "Queued model speech dropped because the user interrupted the model, "
                          "in milliseconds, since the element started.",
                          0, G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_DROPPED_OVERFLOW_MS,
      g_param_spec_uint64("dropped-overflow-ms", "Dropped on overflow",
                          "Model speech dropped because more than max-buffered was waiting, in "
                          "milliseconds, since the element started.",
                          0, G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_INTERRUPTIONS,
      g_param_spec_uint64("interruptions", "Interruptions",
                          "Number of times the user interrupted the model (barge-in) since the "
                          "element started.",
                          0, G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_FLUSH_LATENCY,
      g_param_spec_int64("flush-latency", "Flush latency",
                         "Time from the last interruption's arrival until downstream had handled "
                         "the flush, in microseconds; -1 before the first flush.",
                         -1, G_MAXINT64, -1, ro));

  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "Gemini Live speech source", "Source/Audio/Network",
      "Plays the model's speech of a Gemini Live conversation held by a geminilivesink",
      "gemstream developers <dev@gemstream.local>");

  element_class->change_state = GST_DEBUG_FUNCPTR(gem_gemini_live_src_change_state);
  element_class->send_event = GST_DEBUG_FUNCPTR(gem_gemini_live_src_send_event);
}
