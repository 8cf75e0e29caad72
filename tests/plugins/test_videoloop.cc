// videoloop: frame and sample counts, timestamps, byte-exact passthrough of the middle, the
// blend itself, seam continuity (video and audio), errors, flushing, gaps and state changes.
#include "common/gst_helpers.h"

#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numbers>
#include <string>
#include <vector>

using gemstream::test::Pipeline;
using namespace std::chrono_literals;

namespace {

constexpr int kWidth = 64;
constexpr int kHeight = 48;
constexpr int kFps = 24;
constexpr const char *kVideoCaps = "video/x-raw,format=I420,width=64,height=48,framerate=24/1";

GstClockTime frame_time(guint64 i) { return gst_util_uint64_scale(i, GST_SECOND, kFps); }

GstVideoInfo video_info() {
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_I420, kWidth, kHeight);
  GST_VIDEO_INFO_FPS_N(&info) = kFps;
  GST_VIDEO_INFO_FPS_D(&info) = 1;
  return info;
}

// A horizontal triangle-wave luma ramp shifted by `shift` pixels: steady motion, so the mean
// difference between neighbouring frames is the same everywhere, and no two frames of a clip
// are alike.
guint8 ramp(int x) {
  const int v = (x * 4) % 512;
  return static_cast<guint8>(v < 256 ? v : 511 - v);
}

GstBuffer *gradient_frame(int shift) {
  GstVideoInfo info = video_info();
  GstBuffer *buf = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  GstVideoFrame frame;
  EXPECT_TRUE(gst_video_frame_map(&frame, &info, buf, GST_MAP_WRITE));
  auto *y = static_cast<guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  const int ys = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
  for (int row = 0; row < kHeight; ++row)
    for (int x = 0; x < kWidth; ++x)
      y[row * ys + x] = ramp(x + shift);
  for (guint p = 1; p < 3; ++p) {
    auto *d = static_cast<guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, p));
    const int s = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, p);
    for (int row = 0; row < GST_VIDEO_FRAME_COMP_HEIGHT(&frame, p); ++row)
      std::memset(d + row * s, static_cast<int>(96 + 16 * p),
                  GST_VIDEO_FRAME_COMP_WIDTH(&frame, p));
  }
  gst_video_frame_unmap(&frame);
  return buf;
}

std::vector<guint8> bytes_of(GstBuffer *buf) {
  GstMapInfo map;
  EXPECT_TRUE(gst_buffer_map(buf, &map, GST_MAP_READ));
  std::vector<guint8> out(map.data, map.data + map.size);
  gst_buffer_unmap(buf, &map);
  return out;
}

// Mean absolute luma difference per pixel of two I420 frames of the given size.
double luma_mad(const std::vector<guint8> &a, const std::vector<guint8> &b, int w = kWidth,
                int h = kHeight) {
  double sum = 0;
  for (int i = 0; i < w * h; ++i)
    sum += std::abs(int(a[i]) - int(b[i]));
  return sum / (w * h);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Frames {
  std::vector<GstClockTime> pts, duration;
  std::vector<std::vector<guint8>> data;
  std::vector<bool> discont;
};

Frames pull_all(GstHarness *h) {
  Frames out;
  while (GstBuffer *buf = gst_harness_try_pull(h)) {
    out.pts.push_back(GST_BUFFER_PTS(buf));
    out.duration.push_back(GST_BUFFER_DURATION(buf));
    out.discont.push_back(GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT));
    out.data.push_back(bytes_of(buf));
    gst_buffer_unref(buf);
  }
  return out;
}

// Event types in the order the harness received them (non-blocking).
std::vector<GstEventType> drain_events(GstHarness *h, std::vector<GstEvent *> *keep = nullptr) {
  std::vector<GstEventType> types;
  while (GstEvent *ev = gst_harness_try_pull_event(h)) {
    types.push_back(GST_EVENT_TYPE(ev));
    if (keep)
      keep->push_back(ev);
    else
      gst_event_unref(ev);
  }
  return types;
}

GstHarness *new_video_harness(const char *crossfade = nullptr, guint64 frames = 0) {
  GstElement *loop = gst_element_factory_make("videoloop", nullptr);
  EXPECT_NE(loop, nullptr);
  if (crossfade)
    gst_util_set_object_arg(G_OBJECT(loop), "crossfade", crossfade);
  g_object_set(loop, "frames", frames, nullptr);
  GstHarness *h = gst_harness_new_with_element(loop, "video_sink", "video_src");
  gst_object_unref(loop);
  gst_harness_set_src_caps_str(h, kVideoCaps);
  return h;
}

// Pushes frames [first, first + n) made by `make`, timestamped, keeping a reference to each
// in `kept`.
template <typename Make>
void push_frames(GstHarness *h, int n, Make make, std::vector<GstBuffer *> *kept = nullptr,
                 int first = 0) {
  for (int i = first; i < first + n; ++i) {
    GstBuffer *buf = make(i);
    GST_BUFFER_PTS(buf) = frame_time(i);
    GST_BUFFER_DURATION(buf) = frame_time(i + 1) - frame_time(i);
    if (kept)
      kept->push_back(gst_buffer_ref(buf));
    ASSERT_EQ(gst_harness_push(h, buf), GST_FLOW_OK) << "frame " << i;
  }
}

void push_gradient_clip(GstHarness *h, int frames, int first = 0) {
  push_frames(h, frames, gradient_frame, nullptr, first);
}

// After READY → PLAYING the element's pads have lost their sticky events; send them again.
void restart_stream(GstHarness *h, const char *caps) {
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_stream_start("restart")));
  gst_harness_set_src_caps_str(h, caps);
}

GstMessage *pop_error(GstBus *bus) {
  return gst_bus_timed_pop_filtered(bus, 5 * GST_SECOND, GST_MESSAGE_ERROR);
}

std::string error_text(GstMessage *msg, GQuark *domain = nullptr, gint *code = nullptr) {
  GError *err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  std::string text = err ? err->message : "";
  if (domain)
    *domain = err ? err->domain : 0;
  if (code)
    *code = err ? err->code : 0;
  if (err)
    g_error_free(err);
  return text;
}

} // namespace

TEST(VideoLoop, OutputIsInputMinusCrossfadeWithContinuousTimestamps) {
  GstHarness *h = new_video_harness(); // crossfade 1 s = 24 frames
  push_gradient_clip(h, 96);
  // Nothing may leave before the tail is known except frames past the head and the delay line.
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 96u - 2 * 24);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));

  Frames out = pull_all(h);
  ASSERT_EQ(out.pts.size(), 72u);
  for (guint64 i = 0; i < out.pts.size(); ++i) {
    EXPECT_EQ(out.pts[i], frame_time(i)) << i;
    EXPECT_EQ(out.duration[i], frame_time(i + 1) - frame_time(i)) << i;
    EXPECT_EQ(out.discont[i], i == 0) << i;
  }
  EXPECT_EQ(out.pts.back() + out.duration.back(), 3 * GST_SECOND);

  std::vector<GstEvent *> events;
  auto types = drain_events(h, &events);
  ASSERT_GE(types.size(), 4u);
  EXPECT_EQ(types[0], GST_EVENT_STREAM_START);
  EXPECT_EQ(types[1], GST_EVENT_CAPS);
  EXPECT_EQ(types[2], GST_EVENT_SEGMENT);
  EXPECT_EQ(types.back(), GST_EVENT_EOS);
  const GstSegment *segment;
  gst_event_parse_segment(events[2], &segment);
  EXPECT_EQ(segment->format, GST_FORMAT_TIME);
  EXPECT_EQ(segment->start, 0u);
  EXPECT_EQ(segment->time, 0u);
  for (auto *ev : events)
    gst_event_unref(ev);
  gst_harness_teardown(h);
}

TEST(VideoLoop, MiddlePassesThroughByteExactAndTheTailIsBlendedIntoTheHead) {
  constexpr int n = 60, k = 12;
  GstHarness *h = new_video_harness("500000000");
  push_gradient_clip(h, n);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  Frames out = pull_all(h);
  ASSERT_EQ(out.data.size(), size_t(n - k));

  auto input = [](int i) {
    GstBuffer *b = gradient_frame(i);
    auto v = bytes_of(b);
    gst_buffer_unref(b);
    return v;
  };
  for (int i = 0; i < n - 2 * k; ++i)
    ASSERT_EQ(out.data[i], input(k + i)) << "output frame " << i << " is not input " << k + i;

  for (int j = 0; j < k; ++j) {
    const auto tail = input(n - k + j), head = input(j);
    const unsigned w = (256 * (j + 1) + k / 2) / k;
    const auto &o = out.data[n - 2 * k + j];
    ASSERT_EQ(o.size(), head.size());
    for (size_t x = 0; x < o.size(); x += 97)
      ASSERT_EQ(o[x], (tail[x] * (256 - w) + head[x] * w + 128) >> 8)
          << "blended frame " << j << " byte " << x;
  }
  // The last output frame is exactly the last head frame: the loop continues with frame k.
  EXPECT_EQ(out.data.back(), input(k - 1));
  EXPECT_EQ(out.data.front(), input(k));
  gst_harness_teardown(h);
}

TEST(VideoLoop, SeamStepIsNoLargerThanAnOrdinaryFrameStep) {
  GstHarness *h = new_video_harness();
  push_gradient_clip(h, 96);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  Frames out = pull_all(h);
  ASSERT_EQ(out.data.size(), 72u);

  std::vector<double> steps;
  for (size_t i = 0; i + 1 < out.data.size(); ++i)
    steps.push_back(luma_mad(out.data[i], out.data[i + 1]));
  const double typical = median(steps);
  const double seam = luma_mad(out.data.back(), out.data.front());
  EXPECT_GT(typical, 1.0);
  EXPECT_LE(seam, typical * 1.05) << "seam " << seam << " vs typical step " << typical;

  // The metric can tell: looping the raw input jumps far more than a frame step.
  GstBuffer *first = gradient_frame(0), *last = gradient_frame(95);
  EXPECT_GT(luma_mad(bytes_of(last), bytes_of(first)), 5 * typical);
  gst_buffer_unref(first);
  gst_buffer_unref(last);
  gst_harness_teardown(h);
}

namespace {

constexpr const char *kBallClip = "videotestsrc pattern=ball num-buffers=96 ! "
                                  "video/x-raw,format=I420,width=64,height=48,framerate=24/1";

// Plays a launch line through a harness and returns every frame up to EOS.
std::vector<std::vector<guint8>> play_to_eos(const std::string &launch, size_t frames) {
  GstHarness *h = gst_harness_new_parse(launch.c_str());
  gst_harness_play(h);
  std::vector<std::vector<guint8>> out;
  for (size_t i = 0; i < frames; ++i) {
    GstBuffer *buf = gst_harness_pull(h);
    EXPECT_NE(buf, nullptr) << "frame " << i;
    if (!buf)
      break;
    out.push_back(bytes_of(buf));
    gst_buffer_unref(buf);
  }
  bool eos = false;
  while (GstEvent *ev = gst_harness_pull_event(h)) {
    eos = GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
    gst_event_unref(ev);
    if (eos)
      break;
  }
  EXPECT_TRUE(eos);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 0u);
  gst_harness_teardown(h);
  return out;
}

} // namespace

// The ball of videotestsrc moves at a varying speed, so a "typical" step is not one number:
// the seam must be the clip's own step at that point (frame K-1 to K) and look like the steps
// around it in the output, and far smaller than the jump of a plain loop.
TEST(VideoLoop, SeamOfARealMovingPattern) {
  const auto input = play_to_eos(std::string(kBallClip) + " ! identity", 96);
  const auto out = play_to_eos(std::string(kBallClip) + " ! videoloop crossfade=500000000", 84);
  ASSERT_EQ(input.size(), 96u);
  ASSERT_EQ(out.size(), 84u);
  constexpr int k = 12;

  const double seam = luma_mad(out.back(), out.front());
  EXPECT_DOUBLE_EQ(seam, luma_mad(input[k - 1], input[k]));
  const double after = luma_mad(out[0], out[1]);
  const double before = luma_mad(out[out.size() - 2], out.back());
  EXPECT_GT(after, 0.0);
  EXPECT_LE(seam, 1.1 * std::max(after, before))
      << "seam " << seam << ", steps around it " << before << " and " << after;
  const double plain_loop = luma_mad(input.back(), input.front());
  EXPECT_LT(seam, plain_loop / 2) << "a plain loop jumps by " << plain_loop;
}

TEST(VideoLoop, CrossfadePropertyIsRoundedToWholeFrames) {
  struct Case {
    const char *crossfade;
    guint64 k;
  } cases[] = {{"250000000", 6}, {"300000000", 7}, {"40000000", 1}, {"2000000000", 48}};
  for (const auto &c : cases) {
    GstHarness *h = new_video_harness(c.crossfade);
    guint64 value = 0;
    g_object_get(h->element, "crossfade", &value, nullptr);
    EXPECT_EQ(value, g_ascii_strtoull(c.crossfade, nullptr, 10));
    push_gradient_clip(h, 96);
    ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
    EXPECT_EQ(gst_harness_buffers_in_queue(h), 96 - c.k) << "crossfade " << c.crossfade;
    gst_harness_teardown(h);
  }
  GParamSpec *spec = g_object_class_find_property(
      G_OBJECT_CLASS(g_type_class_peek(g_type_from_name("GemVideoLoop"))), "crossfade");
  ASSERT_NE(spec, nullptr);
  EXPECT_EQ(G_PARAM_SPEC_UINT64(spec)->default_value, GST_SECOND);
  EXPECT_EQ(G_PARAM_SPEC_UINT64(spec)->minimum, 40 * GST_MSECOND);
  EXPECT_TRUE(spec->flags & GST_PARAM_MUTABLE_READY);
}

TEST(VideoLoop, ClipShorterThanTwoCrossfadesFailsWithAdvice) {
  Pipeline p("videotestsrc num-buffers=40 ! video/x-raw,width=64,height=48,framerate=24/1 ! "
             "videoloop ! fakesink");
  ASSERT_EQ(p.run(10s), GST_MESSAGE_ERROR);
  GQuark domain;
  gint code;
  const std::string text = error_text(p.first_error(), &domain, &code);
  EXPECT_EQ(domain, GST_STREAM_ERROR);
  EXPECT_EQ(code, GST_STREAM_ERROR_FAILED);
  EXPECT_NE(text.find("The clip is 1.67 s long"), std::string::npos) << text;
  EXPECT_NE(text.find("2 × crossfade = 2.00 s"), std::string::npos) << text;
  EXPECT_NE(text.find("Lower the crossfade property"), std::string::npos) << text;
}

TEST(VideoLoop, ClipOfExactlyTwoCrossfadesIsAllCrossfade) {
  GstHarness *h = new_video_harness("250000000"); // 6 frames
  push_gradient_clip(h, 12);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  Frames out = pull_all(h);
  ASSERT_EQ(out.data.size(), 6u);
  GstBuffer *head_last = gradient_frame(5);
  EXPECT_EQ(out.data.back(), bytes_of(head_last));
  gst_buffer_unref(head_last);
  gst_harness_teardown(h);
}

TEST(VideoLoop, AudioWithoutVideoFails) {
  Pipeline p("videoloop name=l audiotestsrc num-buffers=10 ! l.audio_sink l.audio_src ! fakesink");
  ASSERT_TRUE(p.parse_error().empty()) << p.parse_error();
  ASSERT_EQ(p.run(10s), GST_MESSAGE_ERROR);
  GQuark domain;
  const std::string text = error_text(p.first_error(), &domain);
  EXPECT_EQ(domain, GST_STREAM_ERROR);
  EXPECT_NE(text.find("No video"), std::string::npos) << text;
  EXPECT_NE(text.find("audio alone cannot be looped"), std::string::npos) << text;
}

TEST(VideoLoop, VariableFrameRateFails) {
  Pipeline p("videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48,framerate=0/1 ! "
             "videoloop ! fakesink");
  ASSERT_EQ(p.run(10s), GST_MESSAGE_ERROR);
  GQuark domain;
  gint code;
  const std::string text = error_text(p.first_error(), &domain, &code);
  EXPECT_EQ(domain, GST_STREAM_ERROR);
  EXPECT_EQ(code, GST_STREAM_ERROR_FORMAT);
  EXPECT_NE(text.find("constant frame rate"), std::string::npos) << text;
  EXPECT_NE(text.find("videorate"), std::string::npos) << text;
}

TEST(VideoLoop, CapsChangeMidStreamFails) {
  GstHarness *h = new_video_harness();
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  push_gradient_clip(h, 5);
  GstCaps *other =
      gst_caps_from_string("video/x-raw,format=I420,width=32,height=24,framerate=24/1");
  // Sticky events are stored even when refused; the error is what tells.
  gst_harness_push_event(h, gst_event_new_caps(other));
  gst_caps_unref(other);
  GstMessage *msg = pop_error(bus);
  ASSERT_NE(msg, nullptr);
  GQuark domain;
  gint code;
  const std::string text = error_text(msg, &domain, &code);
  EXPECT_EQ(domain, GST_STREAM_ERROR);
  EXPECT_EQ(code, GST_STREAM_ERROR_FORMAT);
  EXPECT_NE(text.find("changed in the middle of the clip"), std::string::npos) << text;
  gst_message_unref(msg);
  // The refused caps stay pending on the harness pad, so the push fails on them or on the
  // element's failed state.
  EXPECT_NE(gst_harness_push(h, gradient_frame(5)), GST_FLOW_OK);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(VideoLoop, FlushRestartsTheLoop) {
  GstHarness *h = new_video_harness();
  push_gradient_clip(h, 50, 1000);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 2u);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
  pull_all(h);
  drain_events(h);
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_segment(&segment)));

  push_gradient_clip(h, 96);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  Frames out = pull_all(h);
  ASSERT_EQ(out.data.size(), 72u);
  EXPECT_EQ(out.pts.front(), 0u);
  EXPECT_TRUE(out.discont.front());
  GstBuffer *expected_first = gradient_frame(24), *expected_last = gradient_frame(23);
  EXPECT_EQ(out.data.front(), bytes_of(expected_first));
  EXPECT_EQ(out.data.back(), bytes_of(expected_last));
  gst_buffer_unref(expected_first);
  gst_buffer_unref(expected_last);
  auto types = drain_events(h);
  EXPECT_NE(std::find(types.begin(), types.end(), GST_EVENT_SEGMENT), types.end());
  EXPECT_EQ(types.back(), GST_EVENT_EOS);
  gst_harness_teardown(h);
}

TEST(VideoLoop, VideoGapRepeatsTheLastFrame) {
  GstHarness *h = new_video_harness();
  push_gradient_clip(h, 40);
  ASSERT_TRUE(gst_harness_push_event(
      h, gst_event_new_gap(frame_time(40), frame_time(50) - frame_time(40))));
  push_gradient_clip(h, 46, 50);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  Frames out = pull_all(h);
  ASSERT_EQ(out.data.size(), 72u);
  // Input frames 40..49 are copies of frame 39: output frames 16..25.
  GstBuffer *f39 = gradient_frame(39);
  const auto expected = bytes_of(f39);
  gst_buffer_unref(f39);
  for (int i = 15; i <= 25; ++i)
    EXPECT_EQ(out.data[i], expected) << i;
  GstBuffer *f50 = gradient_frame(50);
  EXPECT_EQ(out.data[26], bytes_of(f50));
  gst_buffer_unref(f50);
  gst_harness_teardown(h);
}

TEST(VideoLoop, StoppingReleasesHeldFramesAndTheElementRestarts) {
  GstHarness *h = new_video_harness();
  std::vector<GstBuffer *> mine;
  for (int i = 0; i < 30; ++i) {
    GstBuffer *buf = gradient_frame(i);
    GST_BUFFER_PTS(buf) = frame_time(i);
    mine.push_back(buf);
    ASSERT_EQ(gst_harness_push(h, gst_buffer_ref(buf)), GST_FLOW_OK);
  }
  // The head (0..23) and the delay line (24..29) are held by reference, not copied.
  EXPECT_EQ(GST_MINI_OBJECT_REFCOUNT_VALUE(mine[0]), 2);
  EXPECT_EQ(GST_MINI_OBJECT_REFCOUNT_VALUE(mine[29]), 2);
  for (int round = 0; round < 3; ++round) {
    ASSERT_NE(gst_element_set_state(h->element, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
    for (auto *buf : mine)
      EXPECT_EQ(GST_MINI_OBJECT_REFCOUNT_VALUE(buf), 1);
    ASSERT_NE(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  }
  for (auto *buf : mine)
    gst_buffer_unref(buf);

  restart_stream(h, kVideoCaps);
  push_gradient_clip(h, 96);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 72u);
  gst_harness_teardown(h);
}

TEST(VideoLoop, DurationQueryAnswersTheLoopLength) {
  GstHarness *h = new_video_harness();
  static GstPadQueryFunction harness_query = GST_PAD_QUERYFUNC(h->srcpad);
  gst_pad_set_query_function(h->srcpad,
                             [](GstPad *pad, GstObject *parent, GstQuery *q) -> gboolean {
                               if (GST_QUERY_TYPE(q) == GST_QUERY_DURATION) {
                                 gst_query_set_duration(q, GST_FORMAT_TIME, 4 * GST_SECOND);
                                 return TRUE;
                               }
                               return harness_query(pad, parent, q);
                             });
  GstPad *src = gst_element_get_static_pad(h->element, "video_src");
  gint64 duration = 0;
  EXPECT_TRUE(gst_pad_query_duration(src, GST_FORMAT_TIME, &duration));
  EXPECT_EQ(duration, gint64(3 * GST_SECOND));

  // Only a flushing seek back to the start makes sense on a loop, and it goes upstream.
  EXPECT_FALSE(gst_pad_send_event(src, gst_event_new_seek(1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
                                                          GST_SEEK_TYPE_SET, GST_SECOND,
                                                          GST_SEEK_TYPE_NONE, -1)));
  EXPECT_TRUE(
      gst_pad_send_event(src, gst_event_new_seek(1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH,
                                                 GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1)));
  bool got_seek = false;
  while (GstEvent *ev = gst_harness_try_pull_upstream_event(h)) {
    got_seek |= GST_EVENT_TYPE(ev) == GST_EVENT_SEEK;
    gst_event_unref(ev);
  }
  EXPECT_TRUE(got_seek);
  gst_object_unref(src);
  gst_harness_teardown(h);
}

namespace {

GstHarness *new_counted_harness(guint64 frames, const char *crossfade = nullptr) {
  return new_video_harness(crossfade, frames);
}

// The progress messages on a bus: type, percent.
std::vector<std::pair<GstProgressType, int>> progress_messages(GstBus *bus) {
  std::vector<std::pair<GstProgressType, int>> out;
  while (GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_PROGRESS)) {
    GstProgressType type;
    gchar *code = nullptr, *text = nullptr;
    gst_message_parse_progress(m, &type, &code, &text);
    EXPECT_STREQ(code, "loop");
    EXPECT_NE(text, nullptr);
    int percent = -100;
    EXPECT_TRUE(gst_structure_get_int(gst_message_get_structure(m), "percent", &percent));
    out.emplace_back(type, percent);
    g_free(code);
    g_free(text);
    gst_message_unref(m);
  }
  return out;
}

} // namespace

TEST(VideoLoop, KnownFrameCountGivesTheSameLoopWithoutTheDelayLine) {
  constexpr int n = 60, k = 12;
  GstHarness *plain = new_video_harness("500000000");
  push_gradient_clip(plain, n);
  ASSERT_TRUE(gst_harness_push_event(plain, gst_event_new_eos()));
  Frames expected = pull_all(plain);
  gst_harness_teardown(plain);

  GstHarness *h = new_counted_harness(n, "500000000");
  // The middle leaves as soon as it arrives: nothing waits for the tail.
  push_gradient_clip(h, k + 3);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 3u);
  push_gradient_clip(h, n - 2 * k - 3, k + 3);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), guint(n - 2 * k));
  // Each tail frame completes a head frame, which leaves at once.
  push_gradient_clip(h, 1, n - k);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), guint(n - 2 * k + 1));
  push_gradient_clip(h, k - 1, n - k + 1);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), guint(n - k));
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  Frames out = pull_all(h);
  ASSERT_EQ(out.data.size(), size_t(n - k));
  EXPECT_EQ(out.pts, expected.pts);
  for (size_t i = 0; i < out.data.size(); ++i)
    ASSERT_EQ(out.data[i], expected.data[i]) << "output frame " << i;
  gst_harness_teardown(h);
}

TEST(VideoLoop, GapsWithAKnownFrameCountRepeatTheLastInputFrame) {
  // 96 frames in all: 10 of them fill a gap in the middle, 4 a gap in the tail (the repeated
  // frame is blended into the head like any tail frame).
  GstHarness *plain = new_video_harness();
  GstHarness *h = new_counted_harness(96);
  for (GstHarness *x : {plain, h}) {
    push_gradient_clip(x, 40);
    ASSERT_TRUE(gst_harness_push_event(
        x, gst_event_new_gap(frame_time(40), frame_time(50) - frame_time(40))));
    push_gradient_clip(x, 30, 50);
    ASSERT_TRUE(gst_harness_push_event(
        x, gst_event_new_gap(frame_time(80), frame_time(84) - frame_time(80))));
    push_gradient_clip(x, 12, 84);
    ASSERT_TRUE(gst_harness_push_event(x, gst_event_new_eos()));
  }
  Frames expected = pull_all(plain);
  Frames out = pull_all(h);
  ASSERT_EQ(out.data.size(), 72u);
  ASSERT_EQ(expected.data.size(), 72u);
  for (size_t i = 0; i < out.data.size(); ++i)
    ASSERT_EQ(out.data[i], expected.data[i]) << "output frame " << i;
  GstBuffer *f39 = gradient_frame(39);
  EXPECT_EQ(out.data[25], bytes_of(f39)); // input 49, the gap's last copy of 39
  gst_buffer_unref(f39);
  gst_harness_teardown(plain);
  gst_harness_teardown(h);
}

TEST(VideoLoop, AllocationQueryWithAKnownFrameCountAsksForNoDelayLine) {
  GstHarness *h = new_counted_harness(96);
  GstCaps *caps = gst_caps_from_string(kVideoCaps);
  GstQuery *query = gst_query_new_allocation(caps, TRUE);
  gst_caps_unref(caps);
  ASSERT_TRUE(gst_pad_peer_query(h->srcpad, query));
  ASSERT_EQ(gst_query_get_n_allocation_pools(query), 1u);
  guint size = 0, min = 0, max = 1;
  gst_query_parse_nth_allocation_pool(query, 0, nullptr, &size, &min, &max);
  EXPECT_EQ(min, 2u);
  EXPECT_EQ(max, 0u);
  gst_query_unref(query);
  gst_harness_teardown(h);
}

TEST(VideoLoop, MoreFramesThanAnnouncedFailWithAMismatchDetail) {
  GstHarness *h = new_counted_harness(50);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  push_gradient_clip(h, 50);
  EXPECT_EQ(gst_harness_push(h, gradient_frame(50)), GST_FLOW_ERROR);
  GstMessage *msg = pop_error(bus);
  ASSERT_NE(msg, nullptr);
  GQuark domain;
  gint code;
  const std::string text = error_text(msg, &domain, &code);
  EXPECT_EQ(domain, GST_STREAM_ERROR);
  EXPECT_EQ(code, GST_STREAM_ERROR_FAILED);
  EXPECT_NE(text.find("more video frames than the frames property says (50)"), std::string::npos)
      << text;
  const GstStructure *details = nullptr;
  gst_message_parse_error_details(msg, &details);
  ASSERT_NE(details, nullptr);
  EXPECT_STREQ(gst_structure_get_string(details, "reason"), "frame-count-mismatch");
  guint64 expected = 0, received = 0;
  EXPECT_TRUE(gst_structure_get_uint64(details, "expected-frames", &expected));
  EXPECT_TRUE(gst_structure_get_uint64(details, "received-frames", &received));
  EXPECT_EQ(expected, 50u);
  EXPECT_EQ(received, 51u);
  gst_message_unref(msg);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(VideoLoop, FewerFramesThanAnnouncedFailAtTheEnd) {
  GstHarness *h = new_counted_harness(60);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  push_gradient_clip(h, 59);
  EXPECT_FALSE(gst_harness_push_event(h, gst_event_new_eos()));
  GstMessage *msg = pop_error(bus);
  ASSERT_NE(msg, nullptr);
  const std::string text = error_text(msg);
  EXPECT_NE(text.find("fewer video frames than the frames property says (60)"), std::string::npos)
      << text;
  const GstStructure *details = nullptr;
  gst_message_parse_error_details(msg, &details);
  ASSERT_NE(details, nullptr);
  EXPECT_STREQ(gst_structure_get_string(details, "reason"), "frame-count-mismatch");
  gst_message_unref(msg);
  // The progress report that began ends as failed.
  auto progress = progress_messages(bus);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().first, GST_PROGRESS_TYPE_ERROR);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(VideoLoop, KnownFrameCountTooShortForTheCrossfadeFailsBeforeAnyFrame) {
  Pipeline p("videotestsrc num-buffers=40 ! video/x-raw,width=64,height=48,framerate=24/1 ! "
             "videoloop frames=40 ! fakesink");
  ASSERT_EQ(p.run(10s), GST_MESSAGE_ERROR);
  const std::string text = error_text(p.first_error());
  EXPECT_NE(text.find("The clip is 1.67 s long"), std::string::npos) << text;
  EXPECT_NE(text.find("2 × crossfade = 2.00 s"), std::string::npos) << text;
  // Refused at the caps, before the first frame: no progress report started.
  EXPECT_TRUE(p.messages(GST_MESSAGE_PROGRESS).empty());
}

TEST(VideoLoop, ProgressMessagesCountTheInputUpToComplete) {
  GstHarness *h = new_counted_harness(96);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  push_gradient_clip(h, 48);
  auto during = progress_messages(bus);
  ASSERT_FALSE(during.empty());
  EXPECT_EQ(during.front(), std::make_pair(GST_PROGRESS_TYPE_START, 1)); // 1 of 96 frames
  EXPECT_EQ(during.back(), std::make_pair(GST_PROGRESS_TYPE_CONTINUE, 50));
  for (size_t i = 1; i < during.size(); ++i) {
    EXPECT_EQ(during[i].first, GST_PROGRESS_TYPE_CONTINUE);
    EXPECT_GT(during[i].second, during[i - 1].second);
  }
  push_gradient_clip(h, 48, 48);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  auto after = progress_messages(bus);
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.back(), std::make_pair(GST_PROGRESS_TYPE_COMPLETE, 100));
  EXPECT_EQ(after[after.size() - 2].second, 99); // 100 waits for the blended tail
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(VideoLoop, ProgressUsesUpstreamDurationWhenTheFrameCountIsUnknown) {
  // videotestsrc with num-buffers answers the duration query: 96 frames = 4 s.
  Pipeline p("videotestsrc num-buffers=96 ! video/x-raw,width=64,height=48,framerate=24/1 ! "
             "videoloop ! fakesink");
  ASSERT_EQ(p.run(20s), GST_MESSAGE_EOS);
  std::vector<int> percents;
  GstProgressType last_type = GST_PROGRESS_TYPE_START;
  for (GstMessage *m : p.messages(GST_MESSAGE_PROGRESS)) {
    int percent = -100;
    gst_structure_get_int(gst_message_get_structure(m), "percent", &percent);
    gchar *code = nullptr, *text = nullptr;
    gst_message_parse_progress(m, &last_type, &code, &text);
    g_free(code);
    g_free(text);
    percents.push_back(percent);
  }
  ASSERT_GE(percents.size(), 50u);
  EXPECT_EQ(percents.front(), 1);
  EXPECT_EQ(percents.back(), 100);
  EXPECT_EQ(last_type, GST_PROGRESS_TYPE_COMPLETE);
  EXPECT_TRUE(std::is_sorted(percents.begin(), percents.end()));
}

TEST(VideoLoop, ProgressWithoutAnyLengthIsUnknownUntilComplete) {
  GstHarness *h = new_video_harness(); // the harness answers no duration query
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  push_gradient_clip(h, 60);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  auto progress = progress_messages(bus);
  ASSERT_EQ(progress.size(), 2u);
  EXPECT_EQ(progress[0], std::make_pair(GST_PROGRESS_TYPE_START, -1));
  EXPECT_EQ(progress[1], std::make_pair(GST_PROGRESS_TYPE_COMPLETE, 100));
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// A gradient frame in a padded layout (wider strides, rows of padding below each plane), as a
// decoder that decodes in place writes it, described by a GstVideoMeta.
GstBuffer *padded_gradient_frame(int shift) {
  GstVideoInfo info = video_info();
  GstVideoAlignment align;
  gst_video_alignment_reset(&align);
  align.padding_right = 16;
  align.padding_bottom = 8;
  EXPECT_TRUE(gst_video_info_align(&info, &align));
  GstBuffer *buf = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  gst_buffer_memset(buf, 0, 0xee, GST_VIDEO_INFO_SIZE(&info)); // visible if read as unpadded
  gst_buffer_add_video_meta_full(buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_FORMAT_I420, kWidth,
                                 kHeight, GST_VIDEO_INFO_N_PLANES(&info), info.offset, info.stride);
  GstBuffer *plain = gradient_frame(shift);
  GstVideoInfo plain_info = video_info();
  GstVideoFrame from, to;
  EXPECT_TRUE(gst_video_frame_map(&from, &plain_info, plain, GST_MAP_READ));
  EXPECT_TRUE(gst_video_frame_map(&to, &plain_info, buf, GST_MAP_WRITE)); // uses the meta
  EXPECT_TRUE(gst_video_frame_copy(&to, &from));
  gst_video_frame_unmap(&to);
  gst_video_frame_unmap(&from);
  gst_buffer_unref(plain);
  return buf;
}

TEST(VideoLoop, AllocationQueryIsAnsweredAtOnceAndAcceptsVideoMeta) {
  // Behind a tee, downstream's answer waits for every branch's queue to drain the caps, i.e.
  // for each encoder to start; videoloop answers upstream itself.
  GstHarness *h = new_video_harness();
  static int downstream_queries = 0;
  static GstPadQueryFunction harness_query = GST_PAD_QUERYFUNC(h->sinkpad);
  gst_pad_set_query_function(h->sinkpad, [](GstPad *pad, GstObject *parent, GstQuery *query) {
    if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION)
      ++downstream_queries;
    return harness_query(pad, parent, query);
  });
  GstCaps *caps = gst_caps_from_string(kVideoCaps);
  GstQuery *query = gst_query_new_allocation(caps, TRUE);
  gst_caps_unref(caps);
  ASSERT_TRUE(gst_pad_peer_query(h->srcpad, query));
  EXPECT_EQ(downstream_queries, 0);
  EXPECT_TRUE(gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr));
  gst_query_unref(query);
  // Downstream is asked once, before the first output frame.
  push_gradient_clip(h, 49);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 1u);
  EXPECT_EQ(downstream_queries, 1);
  gst_harness_teardown(h);
}

TEST(VideoLoop, PaddedFramesAreCopiedToTheDefaultLayoutForADownstreamWithoutVideoMeta) {
  constexpr int n = 60;
  GstHarness *plain = new_video_harness("500000000");
  push_gradient_clip(plain, n);
  ASSERT_TRUE(gst_harness_push_event(plain, gst_event_new_eos()));
  const Frames expected = pull_all(plain);
  gst_harness_teardown(plain);

  for (guint64 frames : {guint64(0), guint64(n)}) {
    GstHarness *h = new_video_harness("500000000", frames); // the harness reads no GstVideoMeta
    push_frames(h, n, [](int i) {
      GstBuffer *buf = padded_gradient_frame(i);
      GstCaps *clock = gst_caps_new_empty_simple("timestamp/x-test");
      gst_buffer_add_reference_timestamp_meta(buf, clock, frame_time(i), GST_CLOCK_TIME_NONE);
      gst_caps_unref(clock);
      return buf;
    });
    ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
    ASSERT_EQ(gst_harness_buffers_in_queue(h), expected.data.size());
    for (size_t i = 0; i < expected.data.size(); ++i) {
      GstBuffer *out = gst_harness_pull(h);
      EXPECT_EQ(gst_buffer_get_video_meta(out), nullptr) << "frame " << i;
      EXPECT_NE(gst_buffer_get_meta(out, GST_REFERENCE_TIMESTAMP_META_API_TYPE), nullptr)
          << "the frame's other metas are kept: frame " << i;
      ASSERT_EQ(bytes_of(out), expected.data[i]) << "frames=" << frames << ", frame " << i;
      gst_buffer_unref(out);
    }
    gst_harness_teardown(h);
  }
}

TEST(VideoLoop, PaddedFramesPassThroughUncopiedToADownstreamReadingVideoMeta) {
  constexpr int n = 60, k = 12;
  GstHarness *h = new_video_harness("500000000", n);
  gst_harness_add_propose_allocation_meta(h, GST_VIDEO_META_API_TYPE, nullptr);
  std::vector<GstBuffer *> in;
  push_frames(h, n, padded_gradient_frame, &in);
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  ASSERT_EQ(gst_harness_buffers_in_queue(h), guint(n - k));
  GstVideoInfo info = video_info();
  for (int i = 0; i < n - k; ++i) {
    GstBuffer *out = gst_harness_pull(h);
    const GstVideoMeta *meta = gst_buffer_get_video_meta(out);
    ASSERT_NE(meta, nullptr) << "frame " << i;
    EXPECT_NE(meta->stride[0], GST_VIDEO_INFO_PLANE_STRIDE(&info, 0)) << "frame " << i;
    if (i < n - 2 * k) { // the middle: the very memory upstream decoded into
      EXPECT_EQ(gst_buffer_peek_memory(out, 0), gst_buffer_peek_memory(in[k + i], 0)) << i;
    }
    // Read through the meta, every frame is the one expected.
    GstVideoFrame frame;
    ASSERT_TRUE(gst_video_frame_map(&frame, &info, out, GST_MAP_READ));
    const auto *y = static_cast<const guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
    const int row = kHeight - 1, ys = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
    if (i < n - 2 * k)
      EXPECT_EQ(y[row * ys + 5], ramp(5 + k + i)) << "frame " << i;
    else // the blend of two ramps lies between them
      EXPECT_NE(y[row * ys + 5], 0xee) << "frame " << i;
    gst_video_frame_unmap(&frame);
    gst_buffer_unref(out);
  }
  for (auto *buf : in)
    gst_buffer_unref(buf);
  gst_harness_teardown(h);
}

TEST(VideoLoop, BlendingNeverWritesIntoAFrameUpstreamStillHolds) {
  constexpr int n = 60, k = 12;
  for (guint64 frames : {guint64(0), guint64(n)}) {
    GstHarness *h = new_video_harness("500000000", frames);
    std::vector<GstBuffer *> in;
    push_frames(h, n, gradient_frame, &in);
    ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
    const Frames out = pull_all(h);
    ASSERT_EQ(out.data.size(), size_t(n - k));
    for (int j = 0; j < k; ++j) {
      GstBuffer *fresh = gradient_frame(j);
      EXPECT_EQ(bytes_of(in[j]), bytes_of(fresh)) << "frames=" << frames << ", head " << j;
      if (j < k - 1) { // the last output frame is exactly f(K-1)
        EXPECT_NE(out.data[n - 2 * k + j], bytes_of(fresh)) << "head " << j << " not blended";
      }
      gst_buffer_unref(fresh);
    }
    for (auto *buf : in)
      gst_buffer_unref(buf);
    gst_harness_teardown(h);
  }
}

TEST(VideoLoop, HeadFramesOfABoundedPoolAreCopiedSoThePoolNeverRunsDry) {
  // A camera's or a hardware decoder's pool has a fixed number of buffers; holding the head
  // by reference would starve it.
  constexpr int n = 60;
  GstVideoInfo info = video_info();
  GstBufferPool *pool = gst_video_buffer_pool_new();
  GstStructure *config = gst_buffer_pool_get_config(pool);
  GstCaps *caps = gst_caps_from_string(kVideoCaps);
  gst_buffer_pool_config_set_params(config, caps, GST_VIDEO_INFO_SIZE(&info), 4, 4);
  gst_caps_unref(caps);
  ASSERT_TRUE(gst_buffer_pool_set_config(pool, config));
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  GstHarness *h = new_video_harness("500000000", n);
  GstBufferPoolAcquireParams params{};
  params.flags = GST_BUFFER_POOL_ACQUIRE_FLAG_DONTWAIT;
  for (int i = 0; i < n; ++i) {
    GstBuffer *buf = nullptr;
    ASSERT_EQ(gst_buffer_pool_acquire_buffer(pool, &buf, &params), GST_FLOW_OK)
        << "the pool ran dry at frame " << i;
    GstBuffer *src = gradient_frame(i);
    GstMapInfo map;
    ASSERT_TRUE(gst_buffer_map(src, &map, GST_MAP_READ));
    gst_buffer_fill(buf, 0, map.data, map.size);
    gst_buffer_unmap(src, &map);
    gst_buffer_unref(src);
    GST_BUFFER_PTS(buf) = frame_time(i);
    ASSERT_EQ(gst_harness_push(h, buf), GST_FLOW_OK);
    while (GstBuffer *out = gst_harness_try_pull(h)) // downstream consumes as it goes
      gst_buffer_unref(out);
  }
  ASSERT_TRUE(gst_harness_push_event(h, gst_event_new_eos()));
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 0u);
  gst_harness_teardown(h);
  gst_buffer_pool_set_active(pool, FALSE);
  gst_object_unref(pool);
}

TEST(VideoLoop, AllocationQueryLeavesRoomForTheDelayLine) {
  GstHarness *h = new_video_harness(); // 24 frames of crossfade
  GstCaps *caps = gst_caps_from_string(kVideoCaps);
  GstQuery *query = gst_query_new_allocation(caps, TRUE);
  gst_caps_unref(caps);
  ASSERT_TRUE(gst_pad_peer_query(h->srcpad, query));
  ASSERT_EQ(gst_query_get_n_allocation_pools(query), 1u);
  GstBufferPool *pool = nullptr;
  guint size = 0, min = 0, max = 1;
  gst_query_parse_nth_allocation_pool(query, 0, &pool, &size, &min, &max);
  EXPECT_EQ(pool, nullptr) << "upstream must use a pool of its own";
  EXPECT_EQ(size, guint(kWidth * kHeight * 3 / 2));
  EXPECT_EQ(min, 26u);
  EXPECT_EQ(max, 0u);
  gst_query_unref(query);
  gst_harness_teardown(h);
}

namespace {

constexpr int kRate = 8000;
constexpr double kTwoPi = 2 * std::numbers::pi;

// Video and audio harnesses on one element, fed like a demuxer would: one frame, then the
// audio of that frame.
struct AvHarness {
  GstHarness *video;
  GstHarness *audio;

  explicit AvHarness(const char *audio_caps, guint64 frames = 0) {
    video = new_video_harness(nullptr, frames);
    audio = gst_harness_new_with_element(video->element, "audio_sink", "audio_src");
    gst_harness_set_src_caps_str(audio, audio_caps);
  }
  ~AvHarness() {
    gst_harness_teardown(audio);
    gst_harness_teardown(video);
  }
};

guint64 audio_samples(guint64 frames) { return gst_util_uint64_scale_round(frames, kRate, kFps); }

template <typename T> GstBuffer *audio_buffer(const std::vector<T> &all, guint64 from, guint64 to) {
  GstBuffer *buf = gst_buffer_new_memdup(all.data() + from, (to - from) * sizeof(T));
  GST_BUFFER_PTS(buf) = gst_util_uint64_scale(from, GST_SECOND, kRate);
  GST_BUFFER_DURATION(buf) = gst_util_uint64_scale(to, GST_SECOND, kRate) - GST_BUFFER_PTS(buf);
  return buf;
}

// Pulls audio until `samples` sample frames have arrived and EOS follows, checking that the
// timestamps and offsets are continuous from 0.
template <typename T>
std::vector<T> pull_audio(GstHarness *h, guint64 samples, guint channels = 1) {
  std::vector<T> out;
  while (out.size() < samples * channels) {
    GstBuffer *buf = gst_harness_pull(h);
    EXPECT_NE(buf, nullptr) << "after " << out.size() << " samples";
    if (!buf)
      break;
    EXPECT_EQ(GST_BUFFER_OFFSET(buf), out.size() / channels);
    EXPECT_EQ(GST_BUFFER_PTS(buf), gst_util_uint64_scale(out.size() / channels, GST_SECOND, kRate));
    auto bytes = bytes_of(buf);
    const T *p = reinterpret_cast<const T *>(bytes.data());
    out.insert(out.end(), p, p + bytes.size() / sizeof(T));
    EXPECT_EQ(GST_BUFFER_PTS(buf) + GST_BUFFER_DURATION(buf),
              gst_util_uint64_scale(out.size() / channels, GST_SECOND, kRate));
    gst_buffer_unref(buf);
  }
  bool eos = false;
  while (!eos) {
    GstEvent *ev = gst_harness_pull_event(h);
    if (!ev)
      break;
    eos = GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
    gst_event_unref(ev);
  }
  EXPECT_TRUE(eos) << "no EOS on audio_src";
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 0u);
  return out;
}

} // namespace

TEST(VideoLoop, AudioIsCutOnTheVideoTimelineAndLoopsWithoutAClick) {
  AvHarness av("audio/x-raw,format=F32LE,rate=8000,channels=1,layout=interleaved");
  constexpr int n = 96, k = 24;
  const guint64 total = audio_samples(n), ca = audio_samples(k), la = audio_samples(n - k);
  std::vector<float> in(total);
  for (guint64 s = 0; s < total; ++s)
    in[s] = static_cast<float>(0.5 * std::sin(kTwoPi * 441.3 * s / kRate));

  for (int i = 0; i < n; ++i) {
    GstBuffer *frame = gradient_frame(i);
    GST_BUFFER_PTS(frame) = frame_time(i);
    ASSERT_EQ(gst_harness_push(av.video, frame), GST_FLOW_OK);
    ASSERT_EQ(gst_harness_push(av.audio, audio_buffer(in, audio_samples(i), audio_samples(i + 1))),
              GST_FLOW_OK);
  }
  ASSERT_TRUE(gst_harness_push_event(av.audio, gst_event_new_eos()));
  ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_eos()));

  std::vector<float> out = pull_audio<float>(av.audio, la);
  ASSERT_EQ(out.size(), la);
  EXPECT_EQ(la, total - ca);
  EXPECT_EQ(gst_util_uint64_scale(la, GST_SECOND, kRate), frame_time(n - k))
      << "audio and video loops differ in length";
  EXPECT_EQ(gst_harness_buffers_in_queue(av.video), size_t(n - k));

  const guint64 sa = la - ca;
  for (guint64 s = 0; s < sa; ++s)
    ASSERT_EQ(out[s], in[s + ca]) << "sample " << s;
  EXPECT_EQ(out[la - 1], in[ca - 1]);

  float typical = 0;
  for (guint64 s = 0; s + 1 < sa; ++s)
    typical = std::max(typical, std::abs(out[s + 1] - out[s]));
  const float seam = std::abs(out.front() - out.back());
  EXPECT_LE(seam, typical * 1.01f) << "click at the loop seam";
  // 441.3 Hz does not fit the clip a whole number of times: a plain loop clicks.
  EXPECT_GT(std::abs(in.front() - in.back()), 2 * typical);
  float crossfade_step = 0;
  for (guint64 s = sa - 1; s + 1 < la; ++s)
    crossfade_step = std::max(crossfade_step, std::abs(out[s + 1] - out[s]));
  EXPECT_LE(crossfade_step, typical * 1.5f) << "click inside the crossfade";
}

TEST(VideoLoop, ShortS16AudioIsPaddedWithSilenceAndWarns) {
  AvHarness av("audio/x-raw,format=S16LE,rate=8000,channels=2,layout=interleaved");
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(av.video->element, bus);
  constexpr int n = 96, k = 24;
  const guint64 ca = audio_samples(k), la = audio_samples(n - k);
  const guint64 have = audio_samples(n) - 4000; // half a second short
  std::vector<gint16> in(have * 2);
  for (guint64 s = 0; s < have; ++s)
    in[2 * s] = in[2 * s + 1] = static_cast<gint16>(1000 + s % 7000);

  push_gradient_clip(av.video, n);
  ASSERT_EQ(gst_harness_push(av.audio, gst_buffer_new_memdup(in.data(), in.size() * 2)),
            GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(av.audio, gst_event_new_eos()));
  ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_eos()));

  std::vector<gint16> out = pull_audio<gint16>(av.audio, la, 2);
  ASSERT_EQ(out.size(), la * 2);
  const guint64 sa = la - ca;
  for (guint64 s = 0; s < sa; ++s) {
    const gint16 expected = s + ca < have ? in[2 * (s + ca)] : 0;
    ASSERT_EQ(out[2 * s], expected) << s;
    ASSERT_EQ(out[2 * s + 1], expected) << s;
  }
  EXPECT_EQ(out[2 * (la - 1)], in[2 * (ca - 1)]);

  GstMessage *warning = gst_bus_timed_pop_filtered(bus, 5 * GST_SECOND, GST_MESSAGE_WARNING);
  ASSERT_NE(warning, nullptr);
  GError *err = nullptr;
  gst_message_parse_warning(warning, &err, nullptr);
  EXPECT_NE(std::string(err->message).find("0.50 s shorter than the video"), std::string::npos)
      << err->message;
  g_error_free(err);
  gst_message_unref(warning);
  gst_element_set_bus(av.video->element, nullptr);
  gst_object_unref(bus);
}

namespace {

// The loop needs less audio than a clip usually has (AAC overhangs the video), so its audio
// can end before upstream's. What upstream sends after that is no error: a tag (audioconvert
// sends one at the end) is accepted, and the next push learns that the loop needs no more
// audio (GST_FLOW_EOS, on which a demuxer goes on with its video). Refusing the tag made that
// push fail with GST_FLOW_ERROR, and the queue upstream failed the run ("Internal data stream
// error").
void expect_audio_past_the_loop_is_refused_with_eos(bool frame_count_known) {
  constexpr int n = 96, k = 24;
  AvHarness av("audio/x-raw,format=F32LE,rate=8000,channels=1,layout=interleaved",
               frame_count_known ? n : 0);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(av.video->element, bus);
  // Upstream has half a second more audio than the clip's video.
  const guint64 needed = audio_samples(n), overhang = audio_samples(12);
  std::vector<float> in(needed + overhang);
  for (guint64 s = 0; s < in.size(); ++s)
    in[s] = static_cast<float>(s % 100) / 100;
  // The loop's audio can end once the clip length is known: from `frames` as soon as the first
  // video frame has placed the audio in time, otherwise at the video's EOS.
  if (frame_count_known) {
    push_gradient_clip(av.video, 1);
  } else {
    push_gradient_clip(av.video, n);
    ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_eos()));
  }
  ASSERT_EQ(gst_harness_push(av.audio, audio_buffer(in, 0, needed)), GST_FLOW_OK);
  std::vector<float> out = pull_audio<float>(av.audio, audio_samples(n - k));
  ASSERT_EQ(out.size(), audio_samples(n - k)) << "the loop's audio did not end";
  EXPECT_EQ(out.front(), in[audio_samples(k)]);

  GstTagList *tags = gst_tag_list_new(GST_TAG_ENCODER, "audioconvert's tag", nullptr);
  EXPECT_TRUE(gst_harness_push_event(av.audio, gst_event_new_tag(tags)))
      << "a tag after the loop's audio ended was refused";
  EXPECT_EQ(gst_harness_push(av.audio, audio_buffer(in, needed, needed + overhang / 2)),
            GST_FLOW_EOS);
  EXPECT_EQ(gst_harness_push(av.audio, audio_buffer(in, needed + overhang / 2, in.size())),
            GST_FLOW_EOS);
  EXPECT_TRUE(gst_harness_push_event(av.audio, gst_event_new_eos()));
  EXPECT_EQ(gst_harness_buffers_in_queue(av.audio), 0u) << "audio past the loop's end";

  if (frame_count_known) {
    push_gradient_clip(av.video, n - 1, 1);
    ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_eos()));
  }
  EXPECT_EQ(pull_all(av.video).data.size(), size_t(n - k));
  GstMessage *error = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  EXPECT_EQ(error, nullptr) << error_text(error);
  if (error)
    gst_message_unref(error);
  gst_element_set_bus(av.video->element, nullptr);
  gst_object_unref(bus);
}

} // namespace

TEST(VideoLoop, AudioPastTheLoopIsRefusedWithEosWhenTheFrameCountIsKnown) {
  expect_audio_past_the_loop_is_refused_with_eos(true);
}

TEST(VideoLoop, AudioPastTheLoopIsRefusedWithEosAfterTheVideoEnded) {
  expect_audio_past_the_loop_is_refused_with_eos(false);
}

TEST(VideoLoop, AudioFlushAndStateCyclesRestartTheTask) {
  AvHarness av("audio/x-raw,format=F32LE,rate=8000,channels=1,layout=interleaved");
  std::vector<float> in(audio_samples(96), 0.25f);
  push_gradient_clip(av.video, 60);
  ASSERT_EQ(gst_harness_push(av.audio, audio_buffer(in, 0, audio_samples(60))), GST_FLOW_OK);
  // 60 frames received: audio up to the video's output position (12 frames) may leave.
  GstBuffer *first = gst_harness_pull(av.audio);
  ASSERT_NE(first, nullptr);
  gst_buffer_unref(first);

  ASSERT_TRUE(gst_harness_push_event(av.audio, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(av.audio, gst_event_new_flush_stop(TRUE)));
  ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_flush_stop(TRUE)));
  for (int round = 0; round < 3; ++round) {
    ASSERT_NE(gst_element_set_state(av.video->element, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
    ASSERT_NE(gst_element_set_state(av.video->element, GST_STATE_PLAYING),
              GST_STATE_CHANGE_FAILURE);
  }
  while (GstBuffer *b = gst_harness_try_pull(av.audio))
    gst_buffer_unref(b);
  pull_all(av.video);

  restart_stream(av.video, kVideoCaps);
  restart_stream(av.audio, "audio/x-raw,format=F32LE,rate=8000,channels=1,layout=interleaved");
  push_gradient_clip(av.video, 96);
  ASSERT_EQ(gst_harness_push(av.audio, audio_buffer(in, 0, in.size())), GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_eos()));
  ASSERT_TRUE(gst_harness_push_event(av.audio, gst_event_new_eos()));
  auto out = pull_audio<float>(av.audio, audio_samples(72));
  EXPECT_EQ(out.size(), audio_samples(72));
  EXPECT_EQ(gst_harness_buffers_in_queue(av.video), 72u);
}

TEST(VideoLoop, AudioAndVideoPipelineRunsToEos) {
  Pipeline p(
      "videoloop name=l crossfade=500000000 "
      "videotestsrc num-buffers=96 ! video/x-raw,format=I420,width=64,height=48,framerate=24/1 ! "
      "l.video_sink l.video_src ! queue ! fakesink name=vsink sync=false signal-handoffs=true "
      "audiotestsrc num-buffers=100 samplesperbuffer=320 ! "
      "audio/x-raw,format=F32LE,rate=8000,channels=1 ! l.audio_sink "
      "l.audio_src ! queue ! fakesink name=asink sync=false signal-handoffs=true");
  ASSERT_TRUE(p.parse_error().empty()) << p.parse_error();
  struct Count {
    guint64 frames = 0;
    GstClockTime video_end = 0;
    guint64 samples = 0;
    GstClockTime audio_end = 0;
  } count;
  GstElement *vsink = p.by_name("vsink");
  GstElement *asink = p.by_name("asink");
  g_signal_connect(vsink, "handoff",
                   G_CALLBACK(+[](GstElement *, GstBuffer *b, GstPad *, gpointer d) {
                     auto *c = static_cast<Count *>(d);
                     ++c->frames;
                     c->video_end = GST_BUFFER_PTS(b) + GST_BUFFER_DURATION(b);
                   }),
                   &count);
  g_signal_connect(asink, "handoff",
                   G_CALLBACK(+[](GstElement *, GstBuffer *b, GstPad *, gpointer d) {
                     auto *c = static_cast<Count *>(d);
                     c->samples += gst_buffer_get_size(b) / sizeof(float);
                     c->audio_end = GST_BUFFER_PTS(b) + GST_BUFFER_DURATION(b);
                   }),
                   &count);
  EXPECT_EQ(p.run(20s), GST_MESSAGE_EOS);
  gst_element_set_state(p.get(), GST_STATE_NULL);
  EXPECT_EQ(count.frames, 84u);
  EXPECT_EQ(count.samples, 28000u);
  EXPECT_EQ(count.video_end, frame_time(84));
  EXPECT_EQ(count.audio_end, count.video_end);
  gst_object_unref(vsink);
  gst_object_unref(asink);
}

// Audio is placed by its timestamps against the first video frame: a track that starts 1.5 s
// into the clip (a late audio start, an edit list) keeps its place, with silence before it,
// instead of being moved to the start of the clip.
TEST(VideoLoop, AudioThatStartsLateKeepsItsPlaceAgainstTheVideo) {
  constexpr int n = 96, k = 24, late = 36;
  AvHarness av("audio/x-raw,format=F32LE,rate=8000,channels=1,layout=interleaved", n);
  push_gradient_clip(av.video, 1);
  std::vector<float> in(audio_samples(n), 0.5f);
  ASSERT_EQ(gst_harness_push(av.audio, audio_buffer(in, audio_samples(late), in.size())),
            GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(av.audio, gst_event_new_eos()));
  push_gradient_clip(av.video, n - 1, 1);
  ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_eos()));

  // Output sample s is input sample s + K: silent up to input frame 36, output frame 12.
  const std::vector<float> out = pull_audio<float>(av.audio, audio_samples(n - k));
  ASSERT_EQ(out.size(), audio_samples(n - k));
  const guint64 edge = audio_samples(late - k);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[edge - 1], 0.0f);
  EXPECT_EQ(out[edge], 0.5f);
  EXPECT_EQ(out[audio_samples(n - 2 * k) - 1], 0.5f);
  // The crossfade blends the tail (0.5) into the head, which is silent: it fades out.
  EXPECT_LT(out.back(), 0.05f);
}

// Audio that ends before the video without an EOS yet (a Matroska track shorter than the
// video: the demuxer sends EOS only at the end of the file) is taken as silence once the video
// has run half a second past it, so the loop's audio goes on and the muxers downstream, which
// wait for audio as far as the video they hold, do not stop the pipeline.
TEST(VideoLoop, AudioThatStopsWithoutEosIsSilenceOnceTheVideoRunsAhead) {
  constexpr int n = 96, k = 24;
  AvHarness av("audio/x-raw,format=F32LE,rate=8000,channels=1,layout=interleaved", n);
  std::vector<float> in(audio_samples(n), 0.5f);
  push_gradient_clip(av.video, 1);
  ASSERT_EQ(gst_harness_push(av.audio, audio_buffer(in, 0, audio_samples(k + 12))), GST_FLOW_OK);
  push_gradient_clip(av.video, 72, 1); // input up to 3 s, no EOS on either pad

  // Audio input 1.5 s, video at 3 s: the input up to 2.5 s is complete, the output (1 s
  // behind) up to 1.5 s: the 0.5 s of audio, then silence.
  const guint64 want = audio_samples(36);
  std::vector<float> out;
  while (out.size() < want) {
    GstBuffer *buf = gst_harness_pull(av.audio);
    ASSERT_NE(buf, nullptr) << "the loop's audio stopped after " << out.size() << " samples";
    GstMapInfo map;
    ASSERT_TRUE(gst_buffer_map(buf, &map, GST_MAP_READ));
    const auto *f = reinterpret_cast<const float *>(map.data);
    out.insert(out.end(), f, f + map.size / sizeof(float));
    gst_buffer_unmap(buf, &map);
    gst_buffer_unref(buf);
  }
  EXPECT_EQ(out[audio_samples(12) - 1], 0.5f);
  EXPECT_EQ(out[audio_samples(12)], 0.0f);
  EXPECT_EQ(out[want - 1], 0.0f);

  // Audio arriving now for the time already filled is dropped; the loop still ends in order.
  ASSERT_EQ(gst_harness_push(av.audio, audio_buffer(in, audio_samples(k + 12), in.size())),
            GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(av.audio, gst_event_new_eos()));
  push_gradient_clip(av.video, n - 73, 73);
  ASSERT_TRUE(gst_harness_push_event(av.video, gst_event_new_eos()));
  EXPECT_EQ(pull_all(av.video).data.size(), size_t(n - k));
}
