/**
 * SECTION:element-geminianalyzesink
 * @title: geminianalyzesink
 * @see_also: framesampler, geminilivesink
 *
 * Asks a Gemini model a question about the JPEG frames it receives (generateContent with the
 * frames as inline `image/jpeg` parts, each labelled with its time, then the question) and posts
 * the answer on the bus. Put `framesampler ! videoconvert ! video/x-raw,format=RGB ! jpegenc` in
 * front of it: framesampler picks and shrinks the frames, the conversion to RGB gives the JPEGs
 * their proper full-range colours (see framesampler), and this sink keeps at most `max-frames`
 * of them per request.
 *
 * Two modes:
 * - `interval=0` (the default, for files): the frames are collected until EOS, then sent in one
 *   request. The EOS message is posted only after the answer has arrived and its
 *   `gemstream-analysis` message has been posted, so a pipeline that reached EOS has its answer.
 * - `interval` > 0 (for live sources such as a webcam): the frames of each `interval` seconds of
 *   running time are sent as soon as the next interval begins, and each answer is posted when it
 *   arrives. If the previous answer is still outstanding when an interval ends, the frames keep
 *   accumulating (thinned to `max-frames`) and go with the next request, so requests never pile
 *   up. At EOS the frames left are analysed as well, and EOS waits for that answer.
 *
 * When more than `max-frames` frames arrive for one request they are thinned evenly: the sink
 * holds every k-th frame (k doubles whenever more than 2 × `max-frames` are held) and the newest
 * one, and sends the `max-frames` of them closest to evenly spaced times from the first to the
 * last.
 *
 * Requests run on a worker thread, never on the streaming thread. The streaming thread only
 * waits for the outstanding answers at EOS, interruptibly: a flush or a state change to READY
 * ends that wait at once, and PAUSED→READY cancels the request in flight. Each answer is priced
 * from its usageMetadata at the video_analysis rate of config/media_generation.json and recorded
 * in the cost ledger (`GEMSTREAM_LEDGER`, else ~/.local/share/gemstream/ledger.sqlite) for
 * `user`; a request that would exceed that user's daily budget is refused before it is sent.
 *
 * ## Element messages
 * Posted from the worker thread, in this order for each answer.
 * - `gemstream-analysis`: `text` (string, the model's answer), `frames` (uint, frames sent),
 *   `model` (string), `usd` (double, the answer's cost), `start` (guint64, stream time of the
 *   first frame sent, in nanoseconds; GST_CLOCK_TIME_NONE when unknown), `duration` (guint64,
 *   from the first to the last frame sent, in nanoseconds; GST_CLOCK_TIME_NONE when unknown),
 *   `final` (boolean: the frames left at EOS), `response-id` (string).
 * - `gemstream-cost`: `kind` "analysis", `model`, `model-key` "video_analysis", `usd`, `units`
 *   (tokens, prompt and answer).
 *
 * Errors: EOS with `interval=0` before any frame arrived is `STREAM/FAILED`; a rejected API key
 * `RESOURCE/NOT_AUTHORIZED`; an unknown model `RESOURCE/NOT_FOUND`; more frames than fit in one
 * request `RESOURCE/SETTINGS`; the daily budget `RESOURCE/FAILED` (details `error-kind`
 * BudgetExceeded); an unreachable service `RESOURCE/OPEN_READ`.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 -m filesrc location=workout.mp4 ! decodebin ! videoconvert ! \
 *     framesampler max-fps=1 duplicate-threshold=0 ! videoconvert ! video/x-raw,format=RGB ! \
 *     jpegenc ! geminianalyzesink question="What exercise is this?" max-frames=16
 * gst-launch-1.0 -m v4l2src ! videoconvert ! framesampler max-fps=1 ! videoconvert ! \
 *     video/x-raw,format=RGB ! jpegenc ! \
 *     geminianalyzesink question="Is anyone at the door?" interval=10
 * ]|
 */
#include "geminianalyzesink.h"

#include "common/element_util.h"

#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/genai.h>
#include <gemstream/video_analysis.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(gem_gemini_analyze_sink_debug);
#define GST_CAT_DEFAULT gem_gemini_analyze_sink_debug

namespace {

using gemstream::Error;
using gemstream::ErrorKind;

constexpr guint kDefaultMaxFrames = 32;
constexpr guint kMaxMaxFrames = 3600; // Gemini takes at most 3600 images per request
constexpr double kDefaultIntervalSec = 0;
constexpr double kMaxIntervalSec = 24 * 3600;
constexpr guint kDefaultTimeoutSec = 120;
constexpr guint kMaxTimeoutSec = 3600;
constexpr const char *kCostModelKey = "video_analysis";

enum {
  PROP_0,
  PROP_QUESTION,
  PROP_MODEL,
  PROP_API_KEY,
  PROP_BASE_URL,
  PROP_MAX_FRAMES,
  PROP_INTERVAL,
  PROP_USER,
  PROP_TIMEOUT,
  PROP_ANALYSES,
  PROP_TOTAL_USD,
};

// Written by set_property, snapshotted in READY→PAUSED.
struct Settings {
  std::string question;
  std::string model;
  std::string api_key;
  std::string base_url;
  guint max_frames = kDefaultMaxFrames;
  double interval_sec = kDefaultIntervalSec;
  std::string user;
  guint timeout_sec = kDefaultTimeoutSec;
};

// What the worker needs for every request, fixed in READY→PAUSED.
struct Job {
  std::shared_ptr<gemstream::VideoAnalyzer> analyzer;
  std::string question;
  gemstream::AnalysisOptions options;
  std::string source; // what the frames are, for the request and the ledger note
};

struct HeldFrame {
  GstClockTime stream_time = GST_CLOCK_TIME_NONE;
  gemstream::SampledFrame frame;
};

// Holds an unbounded sequence of frames in bounded memory, evenly: every stride-th frame (the
// stride doubles whenever more than 2 * max are held) plus the newest frame.
class FrameStore {
public:
  void reset(std::size_t max) {
    max_ = max;
    kept_.clear();
    newest_.reset();
    stride_ = 1;
    arrived_ = 0;
  }
  void clear() { reset(max_); }
  bool empty() const { return arrived_ == 0; }

  void add(HeldFrame frame) {
    if (arrived_++ % stride_ != 0) {
      newest_ = std::move(frame);
      return;
    }
    newest_.reset();
    kept_.push_back(std::move(frame));
    if (kept_.size() > 2 * max_) {
      // Positions are multiples of the stride: keeping the even ones doubles it.
      std::size_t w = 1; // kept_[0] stays where it is
      for (std::size_t r = 2; r < kept_.size(); r += 2)
        kept_[w++] = std::move(kept_[r]);
      kept_.resize(w);
      stride_ *= 2;
    }
  }

  // At most `max` frames, evenly spread from the first to the newest; the store is emptied.
  std::vector<HeldFrame> take() {
    std::vector<HeldFrame> all = std::move(kept_);
    if (newest_)
      all.push_back(std::move(*newest_));
    reset(max_);
    return select(std::move(all), max_);
  }

private:
  // The `m` frames nearest to m evenly spaced times from the first frame to the last (by
  // stream time when every frame has one, else by position), in order, without repeats.
  static std::vector<HeldFrame> select(std::vector<HeldFrame> all, std::size_t m) {
    const std::size_t n = all.size();
    if (n <= m)
      return all;
    bool timed = true;
    for (const auto &f : all)
      timed = timed && GST_CLOCK_TIME_IS_VALID(f.stream_time);
    timed = timed && all.back().stream_time > all.front().stream_time;
    auto at = [&](std::size_t i) {
      return timed ? static_cast<double>(all[i].stream_time) : static_cast<double>(i);
    };
    std::vector<HeldFrame> out;
    out.reserve(m);
    std::size_t k = 0;
    for (std::size_t j = 0; j < m; ++j) {
      const double target = m == 1 ? (at(0) + at(n - 1)) / 2
                                   : at(0) + (at(n - 1) - at(0)) * static_cast<double>(j) /
                                                 static_cast<double>(m - 1);
      const std::size_t lo = k, hi = n - m + j; // leave room for the frames still to pick
      std::size_t i = lo;
      while (i < hi && at(i) < target)
        ++i;
      if (i > lo && target - at(i - 1) <= at(i) - target)
        --i;
      out.push_back(std::move(all[i]));
      k = i + 1;
    }
    return out;
  }

  std::size_t max_ = kDefaultMaxFrames;
  std::vector<HeldFrame> kept_;
  std::optional<HeldFrame> newest_;
  std::uint64_t stride_ = 1;
  std::uint64_t arrived_ = 0;
};

// One request's frames.
struct Batch {
  std::vector<gemstream::SampledFrame> frames;
  GstClockTime start = GST_CLOCK_TIME_NONE;
  GstClockTime duration = GST_CLOCK_TIME_NONE;
  bool final = false;
};

Batch make_batch(std::vector<HeldFrame> held, bool final) {
  Batch b;
  b.final = final;
  GstClockTime first = GST_CLOCK_TIME_NONE, last = GST_CLOCK_TIME_NONE;
  double previous_s = 0;
  for (auto &h : held) {
    if (GST_CLOCK_TIME_IS_VALID(h.stream_time)) {
      if (!GST_CLOCK_TIME_IS_VALID(first))
        first = h.stream_time;
      last = h.stream_time;
      h.frame.time_s = static_cast<double>(h.stream_time) / GST_SECOND;
    } else {
      h.frame.time_s = previous_s; // an untimed frame is labelled with its predecessor's time
    }
    previous_s = h.frame.time_s;
    b.frames.push_back(std::move(h.frame));
  }
  b.start = first;
  if (GST_CLOCK_TIME_IS_VALID(first))
    b.duration = last - first;
  return b;
}

bool blank(const std::string &text) {
  return text.find_first_not_of(" \t\r\n") == std::string::npos;
}

} // namespace

// Threads: the streaming thread (render, event, wait_event, under the sink pad's STREAM_LOCK)
// owns the stream state; the worker thread runs the requests; state changes start and join the
// worker while no buffer flows. Lock order: `settings_lock` and `lock` are never held together;
// neither is held while posting a message.
struct GemGeminiAnalyzeSinkImpl {
  std::mutex settings_lock;
  Settings settings;

  // Stream state (streaming thread; reset in READY→PAUSED and on FLUSH_STOP).
  FrameStore store;
  GstClockTime interval = 0; // ns of running time; 0 = once at EOS
  GstClockTime window_start = GST_CLOCK_TIME_NONE;
  int width = 0;
  int height = 0;

  // Shared with the worker, under `lock`.
  std::mutex lock;
  std::condition_variable cond;
  std::deque<Batch> queue; // at most one interval batch and the EOS batch
  bool busy = false;       // the worker is running a request
  bool posting = false;    // ... or still posting its answer
  bool stopping = false;
  bool unlocked = false; // GstBaseSink::unlock() until unlock_stop()
  bool failed = false;   // a request failed; its error was posted
  guint64 analyses = 0;
  double total_usd = 0;
  std::shared_ptr<const Job> job;
  gemstream::CancelToken cancel;
  std::thread worker;
};

struct _GemGeminiAnalyzeSink {
  GstBaseSink parent;
  GemGeminiAnalyzeSinkImpl *impl;
};

G_DEFINE_TYPE(GemGeminiAnalyzeSink, gem_gemini_analyze_sink, GST_TYPE_BASE_SINK)

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("image/jpeg"));

namespace {

struct Answer {
  std::optional<gemstream::AnalysisResult> result;
  std::optional<Error> error; // neither: cancelled while stopping
  std::string exception;      // an unexpected exception's text
};

// Worker thread, no lock held: the request.
Answer request(GemGeminiAnalyzeSink *self, const Job &job, Batch &batch,
               const gemstream::CancelToken &cancel) {
  GST_DEBUG_OBJECT(self, "asking %s about %zu frames%s", job.options.model_id.c_str(),
                   batch.frames.size(), batch.final ? " (final)" : "");
  Answer answer;
  try {
    answer.result = job.analyzer->analyze_frames(std::move(batch.frames), job.question, job.options,
                                                 cancel, job.source);
  } catch (const Error &e) {
    if (cancel.cancelled())
      GST_DEBUG_OBJECT(self, "request cancelled");
    else
      answer.error = e;
  } catch (const std::exception &e) {
    answer.exception = e.what();
  }
  return answer;
}

// Worker thread, no lock held: the answer's messages, or the error. Returns false for an error.
bool post_answer(GemGeminiAnalyzeSink *self, const Job &job, const Batch &batch,
                 const Answer &answer) {
  if (answer.error) {
    GEM_POST_ENGINE_ERROR(self, *answer.error, "Video analysis failed");
    return false;
  }
  if (!answer.exception.empty()) {
    gemstream::gst::post_exception(GST_ELEMENT(self), std::runtime_error(answer.exception),
                                   __FILE__, GST_FUNCTION, __LINE__);
    return false;
  }
  if (!answer.result)
    return true;
  const gemstream::AnalysisResult &result = *answer.result;
  const double usd = result.cost.usd();
  GST_DEBUG_OBJECT(self, "answer %s: %zu bytes, %s", result.response_id.c_str(), result.text.size(),
                   gemstream::format_usd(usd).c_str());
  GstStructure *s = gst_structure_new(
      "gemstream-analysis", "text", G_TYPE_STRING, result.text.c_str(), "frames", G_TYPE_UINT,
      static_cast<guint>(result.frames), "model", G_TYPE_STRING, job.options.model_id.c_str(),
      "usd", G_TYPE_DOUBLE, usd, "start", G_TYPE_UINT64, static_cast<guint64>(batch.start),
      "duration", G_TYPE_UINT64, static_cast<guint64>(batch.duration), "final", G_TYPE_BOOLEAN,
      batch.final, "response-id", G_TYPE_STRING, result.response_id.c_str(), nullptr);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
  gemstream::gst::post_cost_message(GST_ELEMENT(self), "analysis", job.options.model_id,
                                    kCostModelKey, usd, result.cost.units);
  return true;
}

// One request at a time. `busy` covers the request only, so the next interval may be handed
// over as soon as an answer is in; `posting` also covers its messages, which an EOS waits for.
void worker_main(GemGeminiAnalyzeSink *self) {
  GemGeminiAnalyzeSinkImpl *impl = self->impl;
  std::unique_lock<std::mutex> lk(impl->lock);
  for (;;) {
    impl->cond.wait(lk, [&] { return impl->stopping || !impl->queue.empty(); });
    if (impl->stopping)
      return;
    Batch batch = std::move(impl->queue.front());
    impl->queue.pop_front();
    impl->busy = impl->posting = true;
    const std::shared_ptr<const Job> job = impl->job;
    const gemstream::CancelToken cancel = impl->cancel;
    lk.unlock();
    const Answer answer = request(self, *job, batch, cancel);
    lk.lock();
    impl->busy = false;
    if (answer.result) {
      ++impl->analyses;
      impl->total_usd += answer.result->cost.usd();
    }
    lk.unlock();
    const bool ok = post_answer(self, *job, batch, answer);
    lk.lock();
    impl->posting = false;
    impl->failed = impl->failed || !ok;
    impl->cond.notify_all();
  }
}

// READY→PAUSED: snapshot the settings, open the ledger, start the worker.
bool prepare(GemGeminiAnalyzeSink *self) {
  GemGeminiAnalyzeSinkImpl *impl = self->impl;
  Settings s;
  {
    std::lock_guard<std::mutex> guard(impl->settings_lock);
    s = impl->settings;
  }
  if (blank(s.question)) {
    GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("No question set."),
                      ("Set the 'question' property to what the model should answer about the "
                       "frames."));
    return false;
  }
  const gemstream::MediaConfig config = gemstream::MediaConfig::load_default();
  auto job = std::make_shared<Job>();
  job->question = s.question;
  job->options.model_id = s.model.empty() ? config.pricing.video_analysis.model : s.model;
  job->options.user = s.user;
  job->source = s.interval_sec > 0 ? "a live video" : "a video";
  std::shared_ptr<gemstream::CostLedger> ledger;
  try {
    ledger = std::make_shared<gemstream::CostLedger>();
  } catch (const Error &e) {
    GEM_POST_ENGINE_ERROR(self, e,
                          "Cannot open the cost ledger (set GEMSTREAM_LEDGER to a writable file)");
    return false;
  }
  gemstream::ClientOptions client;
  client.request_timeout = std::chrono::seconds(s.timeout_sec);
  job->analyzer = std::make_shared<gemstream::VideoAnalyzer>(
      gemstream::resolve_endpoint(s.api_key, s.base_url), config, std::move(ledger), client);
  GST_DEBUG_OBJECT(self, "will ask %s about at most %u frames %s", job->options.model_id.c_str(),
                   s.max_frames, s.interval_sec > 0 ? "per interval" : "at EOS");

  impl->store.reset(s.max_frames);
  impl->interval = static_cast<GstClockTime>(s.interval_sec * GST_SECOND);
  impl->window_start = GST_CLOCK_TIME_NONE;
  impl->width = impl->height = 0;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->queue.clear();
    impl->busy = impl->posting = impl->stopping = impl->unlocked = impl->failed = false;
    impl->analyses = 0;
    impl->total_usd = 0;
    impl->job = std::move(job);
    impl->cancel = gemstream::CancelToken();
  }
  impl->worker = std::thread(worker_main, self);
  return true;
}

// Cancels the request in flight and stops the worker from taking another batch.
void begin_shutdown(GemGeminiAnalyzeSinkImpl *impl) {
  gemstream::CancelToken cancel;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->stopping = true;
    impl->cond.notify_all();
    cancel = impl->cancel;
  }
  cancel.cancel();
}

// Joins the worker; called when no streaming thread is in the element any more.
void finish_shutdown(GemGeminiAnalyzeSinkImpl *impl) {
  if (impl->worker.joinable())
    impl->worker.join();
  std::lock_guard<std::mutex> guard(impl->lock);
  impl->queue.clear();
  impl->job.reset();
  impl->busy = impl->posting = false;
}

// Streaming thread, interval mode: when the frames held span an interval and the worker is idle,
// they become a request; otherwise they keep accumulating.
void maybe_close_window(GemGeminiAnalyzeSink *self, GstClockTime running_time) {
  GemGeminiAnalyzeSinkImpl *impl = self->impl;
  if (impl->interval == 0 || !GST_CLOCK_TIME_IS_VALID(running_time))
    return;
  if (impl->store.empty() || !GST_CLOCK_TIME_IS_VALID(impl->window_start)) {
    impl->window_start = running_time;
    return;
  }
  if (running_time < impl->window_start + impl->interval)
    return;
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    if (impl->busy || !impl->queue.empty()) {
      GST_LOG_OBJECT(self, "previous answer outstanding; this interval joins the next one");
      return;
    }
  }
  Batch batch = make_batch(impl->store.take(), false);
  GST_DEBUG_OBJECT(self, "interval from %" GST_TIME_FORMAT " ends: %zu frames",
                   GST_TIME_ARGS(impl->window_start), batch.frames.size());
  {
    std::lock_guard<std::mutex> guard(impl->lock);
    impl->queue.push_back(std::move(batch));
    impl->cond.notify_all();
  }
  impl->window_start = running_time;
}

} // namespace

static void gem_gemini_analyze_sink_set_property(GObject *object, guint prop_id,
                                                 const GValue *value, GParamSpec *pspec) {
  auto *impl = GEM_GEMINI_ANALYZE_SINK(object)->impl;
  std::lock_guard<std::mutex> guard(impl->settings_lock);
  Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_QUESTION: s.question = gemstream::gst::value_to_string(value); break;
  case PROP_MODEL: s.model = gemstream::gst::value_to_string(value); break;
  case PROP_API_KEY: s.api_key = gemstream::gst::value_to_string(value); break;
  case PROP_BASE_URL: s.base_url = gemstream::gst::value_to_string(value); break;
  case PROP_MAX_FRAMES: s.max_frames = g_value_get_uint(value); break;
  case PROP_INTERVAL: s.interval_sec = g_value_get_double(value); break;
  case PROP_USER: s.user = gemstream::gst::value_to_string(value); break;
  case PROP_TIMEOUT: s.timeout_sec = g_value_get_uint(value); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static void gem_gemini_analyze_sink_get_property(GObject *object, guint prop_id, GValue *value,
                                                 GParamSpec *pspec) {
  auto *impl = GEM_GEMINI_ANALYZE_SINK(object)->impl;
  if (prop_id == PROP_ANALYSES || prop_id == PROP_TOTAL_USD) {
    std::lock_guard<std::mutex> guard(impl->lock);
    if (prop_id == PROP_ANALYSES)
      g_value_set_uint64(value, impl->analyses);
    else
      g_value_set_double(value, impl->total_usd);
    return;
  }
  std::lock_guard<std::mutex> guard(impl->settings_lock);
  const Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_QUESTION: g_value_set_string(value, s.question.c_str()); break;
  case PROP_MODEL: g_value_set_string(value, s.model.c_str()); break;
  case PROP_BASE_URL: g_value_set_string(value, s.base_url.c_str()); break;
  case PROP_MAX_FRAMES: g_value_set_uint(value, s.max_frames); break;
  case PROP_INTERVAL: g_value_set_double(value, s.interval_sec); break;
  case PROP_USER: g_value_set_string(value, s.user.c_str()); break;
  case PROP_TIMEOUT: g_value_set_uint(value, s.timeout_sec); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static GstStateChangeReturn gem_gemini_analyze_sink_change_state(GstElement *element,
                                                                 GstStateChange transition) {
  auto *self = GEM_GEMINI_ANALYZE_SINK(element);
  switch (transition) {
  case GST_STATE_CHANGE_READY_TO_PAUSED:
    if (!GEM_GUARDED(element, false, [&] { return prepare(self); }))
      return GST_STATE_CHANGE_FAILURE;
    break;
  case GST_STATE_CHANGE_PAUSED_TO_READY: begin_shutdown(self->impl); break;
  default: break;
  }

  const GstStateChangeReturn ret =
      GST_ELEMENT_CLASS(gem_gemini_analyze_sink_parent_class)->change_state(element, transition);

  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED && ret == GST_STATE_CHANGE_FAILURE)
    begin_shutdown(self->impl);
  if ((transition == GST_STATE_CHANGE_READY_TO_PAUSED && ret == GST_STATE_CHANGE_FAILURE) ||
      transition == GST_STATE_CHANGE_PAUSED_TO_READY)
    finish_shutdown(self->impl); // the pad is inactive: no streaming thread is in the element
  return ret;
}

static gboolean gem_gemini_analyze_sink_set_caps(GstBaseSink *sink, GstCaps *caps) {
  auto *impl = GEM_GEMINI_ANALYZE_SINK(sink)->impl;
  const GstStructure *s = gst_caps_get_structure(caps, 0);
  if (!gst_structure_get_int(s, "width", &impl->width))
    impl->width = 0;
  if (!gst_structure_get_int(s, "height", &impl->height))
    impl->height = 0;
  return TRUE;
}

static GstFlowReturn gem_gemini_analyze_sink_render(GstBaseSink *sink, GstBuffer *buffer) {
  auto *self = GEM_GEMINI_ANALYZE_SINK(sink);
  auto *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(sink), GST_FLOW_ERROR, [&]() -> GstFlowReturn {
    {
      std::lock_guard<std::mutex> guard(impl->lock);
      if (impl->failed)
        return GST_FLOW_ERROR;
    }
    HeldFrame held;
    GstMapInfo map;
    if (!gst_buffer_map(buffer, &map, GST_MAP_READ)) {
      GST_ELEMENT_ERROR(sink, RESOURCE, READ, ("Cannot read a frame."), ("gst_buffer_map failed"));
      return GST_FLOW_ERROR;
    }
    held.frame.jpeg.assign(reinterpret_cast<const char *>(map.data), map.size);
    gst_buffer_unmap(buffer, &map);
    if (held.frame.jpeg.empty()) {
      GST_WARNING_OBJECT(self, "dropping an empty buffer");
      return GST_FLOW_OK;
    }
    held.frame.width = impl->width;
    held.frame.height = impl->height;

    const GstSegment &segment = sink->segment;
    const GstClockTime pts = GST_BUFFER_PTS(buffer);
    GstClockTime running_time = GST_CLOCK_TIME_NONE;
    if (GST_CLOCK_TIME_IS_VALID(pts) && segment.format == GST_FORMAT_TIME) {
      held.stream_time = gst_segment_to_stream_time(&segment, GST_FORMAT_TIME, pts);
      running_time = gst_segment_to_running_time(&segment, GST_FORMAT_TIME, pts);
    }
    if (!GST_CLOCK_TIME_IS_VALID(running_time) && impl->interval > 0)
      running_time = gst_element_get_current_running_time(GST_ELEMENT(sink));
    GST_TRACE_OBJECT(self, "frame of %zu bytes at %" GST_TIME_FORMAT, held.frame.jpeg.size(),
                     GST_TIME_ARGS(held.stream_time));

    maybe_close_window(self, running_time);
    impl->store.add(std::move(held));
    return GST_FLOW_OK;
  });
}

static gboolean gem_gemini_analyze_sink_event(GstBaseSink *sink, GstEvent *event) {
  auto *impl = GEM_GEMINI_ANALYZE_SINK(sink)->impl;
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
    // Frames from before a seek are not what is shown next; a request in flight still answers.
    impl->store.clear();
    impl->window_start = GST_CLOCK_TIME_NONE;
  }
  return GST_BASE_SINK_CLASS(gem_gemini_analyze_sink_parent_class)->event(sink, event);
}

// EOS: once GstBaseSink is done with it (preroll, clock), the frames left become the last
// request and the EOS message waits for every outstanding answer. Called with the PREROLL_LOCK
// held, which GstBaseSink::unlock() precedes: a flush or PLAYING→PAUSED wakes the wait, and
// gst_base_sink_wait_preroll() tells the two apart.
static GstFlowReturn gem_gemini_analyze_sink_wait_event(GstBaseSink *sink, GstEvent *event) {
  GstFlowReturn ret =
      GST_BASE_SINK_CLASS(gem_gemini_analyze_sink_parent_class)->wait_event(sink, event);
  if (ret != GST_FLOW_OK || GST_EVENT_TYPE(event) != GST_EVENT_EOS)
    return ret;
  auto *self = GEM_GEMINI_ANALYZE_SINK(sink);
  auto *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(sink), GST_FLOW_ERROR, [&]() -> GstFlowReturn {
    if (impl->store.empty() && impl->interval == 0) {
      GST_ELEMENT_ERROR(sink, STREAM, FAILED,
                        ("No frames arrived before the end of the stream: there is nothing to "
                         "analyse."),
                        ("EOS without any buffer since the last flush or READY->PAUSED"));
      return GST_FLOW_ERROR;
    }
    std::optional<Batch> last;
    if (!impl->store.empty())
      last = make_batch(impl->store.take(), true);
    std::unique_lock<std::mutex> lk(impl->lock);
    if (last) {
      impl->queue.push_back(std::move(*last));
      impl->cond.notify_all();
    }
    GST_DEBUG_OBJECT(self, "EOS waits for %zu queued requests%s", impl->queue.size(),
                     impl->posting ? " and the one in flight" : "");
    for (;;) {
      const auto answered = [&] { return impl->queue.empty() && !impl->posting; };
      impl->cond.wait(lk, [&] { return impl->failed || impl->unlocked || answered(); });
      if (impl->failed)
        return GST_FLOW_ERROR;
      if (answered())
        return GST_FLOW_OK;
      lk.unlock();
      ret = gst_base_sink_wait_preroll(sink);
      if (ret != GST_FLOW_OK) {
        GST_DEBUG_OBJECT(self, "EOS wait interrupted: %s", gst_flow_get_name(ret));
        return ret;
      }
      lk.lock();
    }
  });
}

static gboolean gem_gemini_analyze_sink_unlock(GstBaseSink *sink) {
  auto *impl = GEM_GEMINI_ANALYZE_SINK(sink)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  impl->unlocked = true;
  impl->cond.notify_all();
  return TRUE;
}

static gboolean gem_gemini_analyze_sink_unlock_stop(GstBaseSink *sink) {
  auto *impl = GEM_GEMINI_ANALYZE_SINK(sink)->impl;
  std::lock_guard<std::mutex> guard(impl->lock);
  impl->unlocked = false;
  return TRUE;
}

static void gem_gemini_analyze_sink_finalize(GObject *object) {
  auto *self = GEM_GEMINI_ANALYZE_SINK(object);
  begin_shutdown(self->impl);
  finish_shutdown(self->impl);
  delete self->impl;
  self->impl = nullptr;
  G_OBJECT_CLASS(gem_gemini_analyze_sink_parent_class)->finalize(object);
}

static void gem_gemini_analyze_sink_init(GemGeminiAnalyzeSink *self) {
  self->impl = new GemGeminiAnalyzeSinkImpl();
  // A file is analysed as fast as it decodes; live sources bring their own pace.
  gst_base_sink_set_sync(GST_BASE_SINK(self), FALSE);
  gst_base_sink_set_last_sample_enabled(GST_BASE_SINK(self), FALSE);
  gst_base_sink_set_qos_enabled(GST_BASE_SINK(self), FALSE);
}

static void gem_gemini_analyze_sink_class_init(GemGeminiAnalyzeSinkClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);
  auto *basesink_class = GST_BASE_SINK_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gem_gemini_analyze_sink_debug, "geminianalyzesink", 0,
                          "gemstream video analysis sink");

  gobject_class->set_property = gem_gemini_analyze_sink_set_property;
  gobject_class->get_property = gem_gemini_analyze_sink_get_property;
  gobject_class->finalize = gem_gemini_analyze_sink_finalize;

  const auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                              GST_PARAM_MUTABLE_READY);
  const auto stat_flags = static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(
      gobject_class, PROP_QUESTION,
      g_param_spec_string("question", "Question",
                          "What the model should answer about the frames, e.g. \"What exercise "
                          "is the person doing?\". Required.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "Gemini model id, e.g. gemini-2.5-flash or gemini-2.5-pro. Empty: the "
                          "video_analysis model of config/media_generation.json.",
                          "", flags));
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
      gobject_class, PROP_MAX_FRAMES,
      g_param_spec_uint("max-frames", "Maximum frames",
                        "Most frames sent in one request (about 258 input tokens each). When "
                        "more arrive before EOS, or within one interval, they are thinned "
                        "evenly over their span.",
                        1, kMaxMaxFrames, kDefaultMaxFrames, flags));
  g_object_class_install_property(
      gobject_class, PROP_INTERVAL,
      g_param_spec_double("interval", "Interval",
                          "For live sources such as a webcam: the frames of each interval of "
                          "this many seconds of running time are analysed together, with a "
                          "gemstream-analysis message per interval. 0: all frames are analysed "
                          "once, at EOS (files).",
                          0, kMaxIntervalSec, kDefaultIntervalSec, flags));
  g_object_class_install_property(
      gobject_class, PROP_USER,
      g_param_spec_string("user", "User",
                          "Who pays: each answer is recorded in the cost ledger for this user, "
                          "and a request that would exceed the user's daily budget is refused. "
                          "Empty: $USER.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_TIMEOUT,
      g_param_spec_uint("timeout", "Timeout",
                        "Deadline for each HTTP request, in seconds (retries included per "
                        "attempt).",
                        1, kMaxTimeoutSec, kDefaultTimeoutSec, flags));
  g_object_class_install_property(
      gobject_class, PROP_ANALYSES,
      g_param_spec_uint64("analyses", "Analyses",
                          "Answers received since the element last went from READY to PAUSED.", 0,
                          G_MAXUINT64, 0, stat_flags));
  g_object_class_install_property(
      gobject_class, PROP_TOTAL_USD,
      g_param_spec_double("total-usd", "Total cost",
                          "Cost of the answers received since the element last went from READY "
                          "to PAUSED, in US dollars, as recorded in the cost ledger.",
                          0, G_MAXDOUBLE, 0, stat_flags));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_set_static_metadata(
      element_class, "Gemini video analysis sink", "Sink/Video/Network",
      "Asks a Gemini model a question about the JPEG frames it receives and posts the answer as "
      "a message",
      "gemstream developers <dev@gemstream.local>");

  element_class->change_state = GST_DEBUG_FUNCPTR(gem_gemini_analyze_sink_change_state);
  basesink_class->set_caps = GST_DEBUG_FUNCPTR(gem_gemini_analyze_sink_set_caps);
  basesink_class->render = GST_DEBUG_FUNCPTR(gem_gemini_analyze_sink_render);
  basesink_class->event = GST_DEBUG_FUNCPTR(gem_gemini_analyze_sink_event);
  basesink_class->wait_event = GST_DEBUG_FUNCPTR(gem_gemini_analyze_sink_wait_event);
  basesink_class->unlock = GST_DEBUG_FUNCPTR(gem_gemini_analyze_sink_unlock);
  basesink_class->unlock_stop = GST_DEBUG_FUNCPTR(gem_gemini_analyze_sink_unlock_stop);
}
