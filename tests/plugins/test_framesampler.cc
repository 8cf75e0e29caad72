// framesampler: the rate grid, near-duplicate dropping (and max-interval), scaling (sizes,
// formats, aspect, no upscaling), output caps, timestamps, untimed frames, flushing, caps and
// property changes while playing, state changes, and a real pipeline into jpegenc.
#include "common/gst_helpers.h"

#include <gst/app/gstappsink.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

using gemstream::test::Pipeline;
using namespace std::chrono_literals;

namespace {

using LumaFn = std::function<guint8(int x, int y)>;

GstClockTime frame_time(guint64 i, int fps = 30) {
  return gst_util_uint64_scale(i, GST_SECOND, static_cast<guint64>(fps));
}

GstVideoInfo video_info(GstVideoFormat format, int w, int h, int fps_n = 30, int fps_d = 1) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, format, static_cast<guint>(w), static_cast<guint>(h));
  GST_VIDEO_INFO_FPS_N(&info) = fps_n;
  GST_VIDEO_INFO_FPS_D(&info) = fps_d;
  return info;
}

std::string caps_string(const GstVideoInfo &info) {
  GstCaps *caps = gst_video_info_to_caps(&info);
  gchar *s = gst_caps_to_string(caps);
  std::string out = s;
  g_free(s);
  gst_caps_unref(caps);
  return out;
}

// An I420 frame with exactly the given luma and neutral chroma.
GstBuffer *i420_frame(int w, int h, const LumaFn &luma) {
  GstVideoInfo info = video_info(GST_VIDEO_FORMAT_I420, w, h);
  GstBuffer *buf = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  GstVideoFrame frame;
  EXPECT_TRUE(gst_video_frame_map(&frame, &info, buf, GST_MAP_WRITE));
  auto *y = static_cast<guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  const int ys = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
  for (int row = 0; row < h; ++row)
    for (int x = 0; x < w; ++x)
      y[row * ys + x] = luma(x, row);
  for (guint p = 1; p < 3; ++p) {
    auto *d = static_cast<guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, p));
    const int s = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, p);
    for (int row = 0; row < GST_VIDEO_FRAME_COMP_HEIGHT(&frame, p); ++row)
      std::memset(d + row * s, 128, GST_VIDEO_FRAME_COMP_WIDTH(&frame, p));
  }
  gst_video_frame_unmap(&frame);
  return buf;
}

GstBuffer *flat_i420(int w, int h, guint8 luma) {
  return i420_frame(w, h, [luma](int, int) { return luma; });
}

// Converts a frame between formats (and sizes) with GstVideoConverter.
GstBuffer *convert(GstBuffer *in, const GstVideoInfo &in_info, const GstVideoInfo &out_info) {
  GstBuffer *out = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&out_info), nullptr);
  GstVideoFrame src, dst;
  EXPECT_TRUE(gst_video_frame_map(&src, &in_info, in, GST_MAP_READ));
  EXPECT_TRUE(gst_video_frame_map(&dst, &out_info, out, GST_MAP_WRITE));
  GstVideoInfo in_copy = in_info, out_copy = out_info;
  GST_VIDEO_INFO_FPS_N(&out_copy) = GST_VIDEO_INFO_FPS_N(&in_copy);
  GST_VIDEO_INFO_FPS_D(&out_copy) = GST_VIDEO_INFO_FPS_D(&in_copy);
  GstVideoConverter *conv = gst_video_converter_new(&in_copy, &out_copy, nullptr);
  gst_video_converter_frame(conv, &src, &dst);
  gst_video_converter_free(conv);
  gst_video_frame_unmap(&dst);
  gst_video_frame_unmap(&src);
  return out;
}

// A frame of any format with (approximately, after colour conversion) the given luma.
GstBuffer *frame_in_format(const GstVideoInfo &info, const LumaFn &luma) {
  const int w = GST_VIDEO_INFO_WIDTH(&info), h = GST_VIDEO_INFO_HEIGHT(&info);
  GstBuffer *i420 = i420_frame(w, h, luma);
  if (GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_I420)
    return i420;
  GstBuffer *out = convert(i420, video_info(GST_VIDEO_FORMAT_I420, w, h), info);
  gst_buffer_unref(i420);
  return out;
}

// The luma plane of a frame of any format, as 8-bit values, row-major without padding.
std::vector<guint8> luma_of(GstBuffer *buf, const GstVideoInfo &info) {
  const int w = GST_VIDEO_INFO_WIDTH(&info), h = GST_VIDEO_INFO_HEIGHT(&info);
  GstVideoInfo i420 = video_info(GST_VIDEO_FORMAT_I420, w, h);
  GstBuffer *conv = GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_I420
                        ? gst_buffer_ref(buf)
                        : convert(buf, info, i420);
  GstVideoFrame frame;
  EXPECT_TRUE(gst_video_frame_map(&frame, &i420, conv, GST_MAP_READ));
  std::vector<guint8> out(static_cast<std::size_t>(w * h));
  const auto *y = static_cast<const guint8 *>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  for (int row = 0; row < h; ++row)
    std::memcpy(&out[static_cast<std::size_t>(row * w)],
                y + row * GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0), static_cast<std::size_t>(w));
  gst_video_frame_unmap(&frame);
  gst_buffer_unref(conv);
  return out;
}

std::vector<guint8> bytes_of(GstBuffer *buf) {
  GstMapInfo map;
  EXPECT_TRUE(gst_buffer_map(buf, &map, GST_MAP_READ));
  std::vector<guint8> out(map.data, map.data + map.size);
  gst_buffer_unmap(buf, &map);
  return out;
}

// A luma ramp moving 3 pixels a frame: every frame differs clearly from the ones a second away.
LumaFn moving_ramp(int i) {
  return [i](int x, int) { return static_cast<guint8>((x * 4 + i * 12) % 256); };
}

struct HarnessDeleter {
  void operator()(GstHarness *h) const { gst_harness_teardown(h); }
};
using HarnessPtr = std::unique_ptr<GstHarness, HarnessDeleter>;

using Props = std::vector<std::pair<const char *, const char *>>;

HarnessPtr new_harness(const Props &props, const GstVideoInfo &info) {
  GstElement *e = gst_element_factory_make("framesampler", nullptr);
  EXPECT_NE(e, nullptr);
  for (const auto &[name, value] : props)
    gst_util_set_object_arg(G_OBJECT(e), name, value);
  HarnessPtr h(gst_harness_new_with_element(e, "sink", "src"));
  gst_object_unref(e);
  gst_harness_set_src_caps_str(h.get(), caps_string(info).c_str());
  return h;
}

GstFlowReturn push(GstHarness *h, GstBuffer *buf, GstClockTime pts,
                   GstClockTime duration = GST_CLOCK_TIME_NONE) {
  GST_BUFFER_PTS(buf) = pts;
  GST_BUFFER_DURATION(buf) = duration;
  return gst_harness_push(h, buf);
}

struct Out {
  std::vector<GstClockTime> pts, duration;
  std::vector<std::vector<guint8>> data;
  std::vector<bool> discont;
};

Out pull_all(GstHarness *h) {
  Out out;
  while (GstBuffer *buf = gst_harness_try_pull(h)) {
    out.pts.push_back(GST_BUFFER_PTS(buf));
    out.duration.push_back(GST_BUFFER_DURATION(buf));
    out.discont.push_back(GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT));
    out.data.push_back(bytes_of(buf));
    gst_buffer_unref(buf);
  }
  return out;
}

guint64 stat(GstHarness *h, const char *name) {
  guint64 v = 0;
  g_object_get(h->element, name, &v, nullptr);
  return v;
}

GstVideoInfo output_info(GstHarness *h) {
  GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
  GstVideoInfo info;
  gst_video_info_init(&info);
  EXPECT_NE(caps, nullptr);
  if (caps) {
    EXPECT_TRUE(gst_video_info_from_caps(&info, caps));
    gst_caps_unref(caps);
  }
  return info;
}

int output_width(GstHarness *h) {
  GstVideoInfo info = output_info(h);
  return GST_VIDEO_INFO_WIDTH(&info);
}

const GstStructure *output_structure(GstHarness *h, GstCaps **keep) {
  *keep = gst_pad_get_current_caps(h->sinkpad);
  return *keep ? gst_caps_get_structure(*keep, 0) : nullptr;
}

std::vector<GstEventType> drain_events(GstHarness *h) {
  std::vector<GstEventType> types;
  while (GstEvent *ev = gst_harness_try_pull_event(h)) {
    types.push_back(GST_EVENT_TYPE(ev));
    gst_event_unref(ev);
  }
  return types;
}

const GstVideoInfo kSmall = video_info(GST_VIDEO_FORMAT_I420, 64, 48);

} // namespace

// ---- rate -----------------------------------------------------------------------------------

TEST(FrameSampler, OneFramePerSecondFromThirtyKeepsTheChosenFramesUntouched) {
  HarnessPtr h = new_harness({}, kSmall); // defaults: max-fps 1/1, duplicate-threshold 2
  std::vector<std::vector<guint8>> input;
  for (int i = 0; i < 90; ++i) {
    GstBuffer *buf = i420_frame(64, 48, moving_ramp(i));
    input.push_back(bytes_of(buf));
    ASSERT_EQ(push(h.get(), buf, frame_time(i), frame_time(i + 1) - frame_time(i)), GST_FLOW_OK);
  }
  Out out = pull_all(h.get());
  ASSERT_EQ(out.pts.size(), 3u);
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(out.pts[k], k * GST_SECOND);
    EXPECT_EQ(out.duration[k], frame_time(30 * k + 1) - frame_time(30 * k));
    EXPECT_EQ(out.data[k], input[30 * k]) << "output " << k << " is not input frame " << 30 * k;
    EXPECT_FALSE(out.discont[k]) << "dropping by design is not a discontinuity";
  }
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 87u);
  EXPECT_EQ(stat(h.get(), "dropped-duplicates"), 0u);
}

TEST(FrameSampler, SlotGridHoldsTheAverageRateWithoutDrift) {
  // 24 fps at max-fps=10: slots every 100 ms; each takes the first frame at or after its start.
  // A rule of "previous output + 100 ms" would only reach 8 fps here (every third frame).
  HarnessPtr h = new_harness({{"max-fps", "10/1"}, {"duplicate-threshold", "0"}},
                             video_info(GST_VIDEO_FORMAT_I420, 64, 48, 24));
  for (int i = 0; i < 72; ++i)
    ASSERT_EQ(push(h.get(), i420_frame(64, 48, moving_ramp(i)), frame_time(i, 24)), GST_FLOW_OK);
  Out out = pull_all(h.get());
  ASSERT_EQ(out.pts.size(), 30u);
  for (int k = 0; k < 30; ++k) {
    const int first = (k * 24 + 9) / 10; // ceil(k * 2.4)
    EXPECT_EQ(out.pts[k], frame_time(first, 24)) << "slot " << k;
  }
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 42u);
}

TEST(FrameSampler, MaxFpsZeroWithoutDuplicateCheckPassesEveryFrameAndKeepsTheRate) {
  HarnessPtr h = new_harness({{"max-fps", "0/1"}, {"duplicate-threshold", "0"}}, kSmall);
  for (int i = 0; i < 30; ++i)
    ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), frame_time(i)), GST_FLOW_OK);
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 30u);
  GstVideoInfo info = output_info(h.get());
  EXPECT_EQ(GST_VIDEO_INFO_FPS_N(&info), 30);
  EXPECT_EQ(GST_VIDEO_INFO_FPS_D(&info), 1);
  EXPECT_EQ(stat(h.get(), "dropped-rate") + stat(h.get(), "dropped-duplicates"), 0u);
}

TEST(FrameSampler, OutputCapsAreVariableRateBoundedByMaxFpsAndTheInputRate) {
  struct Case {
    const char *max_fps;
    int in_n, in_d;
    int max_n, max_d; // expected max-framerate; 0: none
  } cases[] = {{"1/1", 30, 1, 1, 1},
               {"1/1", 1, 2, 1, 2},
               {"0/1", 25, 1, 25, 1},
               {"5/2", 0, 1, 5, 2},
               {"0/1", 0, 1, 0, 1}};
  for (const Case &c : cases) {
    HarnessPtr h = new_harness({{"max-fps", c.max_fps}},
                               video_info(GST_VIDEO_FORMAT_I420, 64, 48, c.in_n, c.in_d));
    ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), 0), GST_FLOW_OK);
    GstCaps *caps;
    const GstStructure *s = output_structure(h.get(), &caps);
    ASSERT_NE(s, nullptr);
    gint n = -1, d = -1;
    EXPECT_TRUE(gst_structure_get_fraction(s, "framerate", &n, &d));
    EXPECT_EQ(n, 0) << c.max_fps << " from " << c.in_n << "/" << c.in_d;
    if (c.max_n > 0) {
      EXPECT_TRUE(gst_structure_get_fraction(s, "max-framerate", &n, &d));
      EXPECT_EQ(gst_util_fraction_compare(n, d, c.max_n, c.max_d), 0)
          << c.max_fps << " from " << c.in_n << "/" << c.in_d << ": " << n << "/" << d;
    } else {
      EXPECT_FALSE(gst_structure_has_field(s, "max-framerate"));
    }
    gst_caps_unref(caps);
  }
}

TEST(FrameSampler, AfterAPauseTheGridRestartsAtTheNextFrame) {
  HarnessPtr h = new_harness({{"duplicate-threshold", "0"}}, kSmall);
  const GstClockTime times[] = {0,
                                900 * GST_MSECOND,
                                1000 * GST_MSECOND, // 0 and 1 s pass
                                5300 * GST_MSECOND, // after a pause
                                6200 * GST_MSECOND,
                                6300 * GST_MSECOND}; // grid at 5.3 s
  for (GstClockTime t : times)
    ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), t), GST_FLOW_OK);
  Out out = pull_all(h.get());
  const std::vector<GstClockTime> want = {0, GST_SECOND, 5300 * GST_MSECOND, 6300 * GST_MSECOND};
  EXPECT_EQ(out.pts, want);
}

TEST(FrameSampler, TimeGoingBackwardsRestartsTheGrid) {
  HarnessPtr h = new_harness({{"duplicate-threshold", "0"}}, kSmall);
  const GstClockTime times[] = {0, 5 * GST_SECOND, GST_SECOND, 1500 * GST_MSECOND, 2 * GST_SECOND};
  for (GstClockTime t : times)
    ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), t), GST_FLOW_OK);
  Out out = pull_all(h.get());
  const std::vector<GstClockTime> want = {0, 5 * GST_SECOND, GST_SECOND, 2 * GST_SECOND};
  EXPECT_EQ(out.pts, want);
}

TEST(FrameSampler, SelectsOnRunningTimeAndDropsFramesOutsideTheSegment) {
  HarnessPtr h = new_harness({{"duplicate-threshold", "0"}}, kSmall);
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  segment.start = 10 * GST_SECOND;
  segment.time = 10 * GST_SECOND;
  ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
  const GstClockTime times[] = {9 * GST_SECOND, 10 * GST_SECOND, 10500 * GST_MSECOND,
                                11 * GST_SECOND};
  for (GstClockTime t : times)
    ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), t, 33 * GST_MSECOND), GST_FLOW_OK);
  Out out = pull_all(h.get());
  const std::vector<GstClockTime> want = {10 * GST_SECOND, 11 * GST_SECOND};
  EXPECT_EQ(out.pts, want);
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 1u) << "frames outside the segment are not counted";
}

TEST(FrameSampler, FramesWithoutTimestampsAreTimedByTheFrameRateOrTheirDuration) {
  for (bool durations : {false, true}) {
    // Without durations the caps frame rate times the frames; with them, variable-rate caps.
    HarnessPtr h = new_harness({{"duplicate-threshold", "0"}},
                               video_info(GST_VIDEO_FORMAT_I420, 64, 48, durations ? 0 : 30, 1));
    std::vector<std::vector<guint8>> input;
    for (int i = 0; i < 90; ++i) {
      GstBuffer *buf = i420_frame(64, 48, moving_ramp(i));
      input.push_back(bytes_of(buf));
      ASSERT_EQ(push(h.get(), buf, GST_CLOCK_TIME_NONE,
                     durations ? frame_time(i + 1) - frame_time(i) : GST_CLOCK_TIME_NONE),
                GST_FLOW_OK);
    }
    Out out = pull_all(h.get());
    ASSERT_EQ(out.data.size(), 3u) << (durations ? "durations" : "frame rate");
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(out.data[k], input[30 * k]);
      EXPECT_EQ(out.pts[k], GST_CLOCK_TIME_NONE);
    }
  }
}

TEST(FrameSampler, FramesWithNoTimingAtAllAreTimedByTheClock) {
  HarnessPtr h =
      new_harness({{"duplicate-threshold", "0"}}, video_info(GST_VIDEO_FORMAT_I420, 64, 48, 0, 1));
  ASSERT_TRUE(gst_harness_set_time(h.get(), 0));
  ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), GST_CLOCK_TIME_NONE), GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_set_time(h.get(), 400 * GST_MSECOND));
  ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), GST_CLOCK_TIME_NONE), GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_set_time(h.get(), 1000 * GST_MSECOND));
  ASSERT_EQ(push(h.get(), flat_i420(64, 48, 90), GST_CLOCK_TIME_NONE), GST_FLOW_OK);
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 2u);
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 1u);
}

// ---- duplicates -----------------------------------------------------------------------------

TEST(FrameSampler, StillSceneSendsTheFirstFrameThenOneEveryMaxInterval) {
  HarnessPtr h = new_harness({}, kSmall); // max-interval 10 s
  GstBuffer *still = flat_i420(64, 48, 120);
  for (int i = 0; i < 750; ++i) // 25 s
    ASSERT_EQ(push(h.get(), gst_buffer_copy(still), frame_time(i)), GST_FLOW_OK);
  gst_buffer_unref(still);
  Out out = pull_all(h.get());
  const std::vector<GstClockTime> want = {0, 10 * GST_SECOND, 20 * GST_SECOND};
  EXPECT_EQ(out.pts, want);
  // After each output, 29 frames come before the next slot; from then on every frame is due
  // but a duplicate until max-interval forces one out.
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 3u * 29);
  EXPECT_EQ(stat(h.get(), "dropped-duplicates"), 750u - 3 - 3 * 29);
}

TEST(FrameSampler, MaxIntervalZeroNeverRepeatsAStillScene) {
  HarnessPtr h = new_harness({{"max-interval", "0"}}, kSmall);
  GstBuffer *still = flat_i420(64, 48, 120);
  for (int i = 0; i < 750; ++i)
    ASSERT_EQ(push(h.get(), gst_buffer_copy(still), frame_time(i)), GST_FLOW_OK);
  gst_buffer_unref(still);
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 1u);
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 29u);
  EXPECT_EQ(stat(h.get(), "dropped-duplicates"), 720u);
}

TEST(FrameSampler, SmallChangesAreDroppedLargeOnesPassComparedWithTheLastOutput) {
  HarnessPtr h = new_harness({{"max-fps", "0/1"}}, kSmall); // threshold 2 luma levels
  auto square = [](int x, int y) -> guint8 { return x < 16 && y < 16 ? 255 : 102; };
  auto dot = [](int x, int y) -> guint8 { return x == 40 && y == 30 ? 0 : 102; };
  struct Step {
    GstBuffer *frame;
    bool passes;
  } steps[] = {
      {flat_i420(64, 48, 100), true},
      {flat_i420(64, 48, 101), false}, // 1 level from the last output
      {flat_i420(64, 48, 101), false},
      {flat_i420(64, 48, 102), true},      // 2 levels from the last output (100): drift adds up
      {i420_frame(64, 48, square), true},  // a bright square over a twelfth of the picture
      {i420_frame(64, 48, square), false}, // the same again
      {flat_i420(64, 48, 102), true},      // the square is gone
      {i420_frame(64, 48, dot), false},    // one pixel changed
  };
  std::vector<GstClockTime> want;
  for (std::size_t i = 0; i < std::size(steps); ++i) {
    if (steps[i].passes)
      want.push_back(frame_time(i));
    ASSERT_EQ(push(h.get(), steps[i].frame, frame_time(i)), GST_FLOW_OK);
  }
  EXPECT_EQ(pull_all(h.get()).pts, want);
  EXPECT_EQ(stat(h.get(), "dropped-duplicates"), 4u);
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 0u);
}

TEST(FrameSampler, SensorNoiseIsNotAChange) {
  const GstVideoInfo vga = video_info(GST_VIDEO_FORMAT_I420, 640, 480);
  HarnessPtr h = new_harness({{"max-fps", "0/1"}, {"max-size", "0"}}, vga);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> noise(-10, 10);
  auto noisy = [&](int base_left, int base_right) {
    return i420_frame(640, 480, [&](int x, int) {
      return static_cast<guint8>((x < 320 ? base_left : base_right) + noise(rng));
    });
  };
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(push(h.get(), noisy(80, 160), frame_time(i)), GST_FLOW_OK);
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 1u);
  ASSERT_EQ(push(h.get(), noisy(80, 200), frame_time(10)), GST_FLOW_OK); // the right half brightens
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 2u);
  EXPECT_EQ(stat(h.get(), "dropped-duplicates"), 9u);
}

// ---- scaling --------------------------------------------------------------------------------

TEST(FrameSampler, ScalesFullHdToFitWithin768KeepingAspectAndContent) {
  const GstVideoInfo hd = video_info(GST_VIDEO_FORMAT_I420, 1920, 1080);
  HarnessPtr h = new_harness({}, hd);
  ASSERT_EQ(push(h.get(), i420_frame(1920, 1080, [](int x, int) { return x < 960 ? 40 : 200; }),
                 5 * GST_SECOND, 33 * GST_MSECOND),
            GST_FLOW_OK);
  GstVideoInfo out = output_info(h.get());
  EXPECT_EQ(GST_VIDEO_INFO_FORMAT(&out), GST_VIDEO_FORMAT_I420);
  EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&out), 768);
  EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&out), 432);
  EXPECT_EQ(GST_VIDEO_INFO_PAR_N(&out), 1);
  EXPECT_EQ(GST_VIDEO_INFO_PAR_D(&out), 1);

  GstBuffer *buf = gst_harness_pull(h.get());
  ASSERT_NE(buf, nullptr);
  EXPECT_EQ(gst_buffer_get_size(buf), GST_VIDEO_INFO_SIZE(&out));
  EXPECT_EQ(GST_BUFFER_PTS(buf), 5 * GST_SECOND);
  EXPECT_EQ(GST_BUFFER_DURATION(buf), 33 * GST_MSECOND);
  const auto luma = luma_of(buf, out);
  for (int y : {10, 216, 420}) {
    EXPECT_NEAR(luma[y * 768 + 100], 40, 2);
    EXPECT_NEAR(luma[y * 768 + 668], 200, 2);
  }
  gst_buffer_unref(buf);
}

TEST(FrameSampler, FramesThatFitAreNeverUpscaledAndPassWithoutACopy) {
  const GstVideoInfo vga = video_info(GST_VIDEO_FORMAT_I420, 640, 480);
  HarnessPtr h = new_harness({}, vga);
  GstBuffer *in = i420_frame(640, 480, moving_ramp(3));
  gst_buffer_ref(in);
  ASSERT_EQ(push(h.get(), in, 0), GST_FLOW_OK);
  GstVideoInfo out = output_info(h.get());
  EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&out), 640);
  EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&out), 480);
  GstBuffer *buf = gst_harness_pull(h.get());
  EXPECT_EQ(buf, in);
  gst_buffer_unref(buf);
  gst_buffer_unref(in);
}

TEST(FrameSampler, MaxSizeZeroDisablesScaling) {
  HarnessPtr h = new_harness({{"max-size", "0"}}, video_info(GST_VIDEO_FORMAT_I420, 1920, 1080));
  ASSERT_EQ(push(h.get(), flat_i420(1920, 1080, 50), 0), GST_FLOW_OK);
  GstVideoInfo out = output_info(h.get());
  EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&out), 1920);
  EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&out), 1080);
}

TEST(FrameSampler, DownstreamFixingOneDimensionGetsTheOtherInProportion) {
  const GstVideoInfo hd = video_info(GST_VIDEO_FORMAT_I420, 1280, 720);
  GstElement *e = gst_element_factory_make("framesampler", nullptr);
  HarnessPtr h(gst_harness_new_with_element(e, "sink", "src"));
  gst_object_unref(e);
  gst_harness_set_sink_caps_str(h.get(), "video/x-raw,width=320");
  gst_harness_set_src_caps_str(h.get(), caps_string(hd).c_str());
  ASSERT_EQ(push(h.get(), flat_i420(1280, 720, 50), 0), GST_FLOW_OK);
  GstVideoInfo out = output_info(h.get());
  EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&out), 320);
  EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&out), 180);
}

TEST(FrameSampler, ScaledSizesKeepTheAspectAndSuitTheFormat) {
  struct Case {
    GstVideoFormat format;
    int in_w, in_h;
    const char *max_size;
    int out_w, out_h;
  } cases[] = {
      {GST_VIDEO_FORMAT_I420, 1921, 1081, "768", 768, 432},
      {GST_VIDEO_FORMAT_I420, 1000, 751, "768", 768, 576}, // 576.8 → 577 → even
      {GST_VIDEO_FORMAT_I420, 751, 1000, "768", 576, 768},
      {GST_VIDEO_FORMAT_NV12, 1921, 1081, "767", 766, 432},
      {GST_VIDEO_FORMAT_YUY2, 1000, 751, "768", 768, 577}, // only the width is subsampled
      {GST_VIDEO_FORMAT_YUY2, 751, 1000, "768", 576, 768},
      {GST_VIDEO_FORMAT_RGB, 1000, 751, "768", 768, 577},
      {GST_VIDEO_FORMAT_RGB, 751, 1000, "768", 577, 768},
      {GST_VIDEO_FORMAT_BGRx, 1921, 1081, "767", 767, 432},
      {GST_VIDEO_FORMAT_I420, 4000, 30, "768", 768, 6},
  };
  for (const Case &c : cases) {
    const GstVideoInfo in = video_info(c.format, c.in_w, c.in_h);
    HarnessPtr h = new_harness({{"max-size", c.max_size}}, in);
    ASSERT_EQ(push(h.get(), frame_in_format(in, moving_ramp(0)), 0), GST_FLOW_OK);
    GstVideoInfo out = output_info(h.get());
    const std::string what = std::string(gst_video_format_to_string(c.format)) + " " +
                             std::to_string(c.in_w) + "x" + std::to_string(c.in_h);
    EXPECT_EQ(GST_VIDEO_INFO_FORMAT(&out), c.format) << what;
    EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&out), c.out_w) << what;
    EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&out), c.out_h) << what;
    GstBuffer *buf = gst_harness_pull(h.get());
    ASSERT_NE(buf, nullptr) << what;
    EXPECT_EQ(gst_buffer_get_size(buf), GST_VIDEO_INFO_SIZE(&out)) << what;
    gst_buffer_unref(buf);
  }
}

TEST(FrameSampler, EveryFormatIsScaledInPlaceOfItselfAndComparedForDuplicates) {
  const GstVideoFormat formats[] = {
      GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_YV12, GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_NV21,
      GST_VIDEO_FORMAT_Y42B, GST_VIDEO_FORMAT_Y444, GST_VIDEO_FORMAT_AYUV, GST_VIDEO_FORMAT_YUY2,
      GST_VIDEO_FORMAT_UYVY, GST_VIDEO_FORMAT_YVYU, GST_VIDEO_FORMAT_RGBA, GST_VIDEO_FORMAT_BGRA,
      GST_VIDEO_FORMAT_ARGB, GST_VIDEO_FORMAT_ABGR, GST_VIDEO_FORMAT_RGBx, GST_VIDEO_FORMAT_BGRx,
      GST_VIDEO_FORMAT_xRGB, GST_VIDEO_FORMAT_xBGR, GST_VIDEO_FORMAT_RGB,  GST_VIDEO_FORMAT_BGR,
      GST_VIDEO_FORMAT_GRAY8};
  const LumaFn dark_left = [](int x, int) { return x < 640 ? 50 : 190; };
  const LumaFn dark_right = [](int x, int) { return x < 640 ? 190 : 50; };
  for (GstVideoFormat format : formats) {
    const char *name = gst_video_format_to_string(format);
    const GstVideoInfo in = video_info(format, 1280, 720);
    HarnessPtr h = new_harness({}, in);
    GstBuffer *a = frame_in_format(in, dark_left);
    ASSERT_EQ(push(h.get(), gst_buffer_copy(a), 0), GST_FLOW_OK) << name;
    ASSERT_EQ(push(h.get(), a, GST_SECOND), GST_FLOW_OK) << name; // a duplicate
    ASSERT_EQ(push(h.get(), frame_in_format(in, dark_right), 2 * GST_SECOND), GST_FLOW_OK) << name;
    EXPECT_EQ(stat(h.get(), "dropped-duplicates"), 1u) << name;

    GstVideoInfo out = output_info(h.get());
    EXPECT_EQ(GST_VIDEO_INFO_FORMAT(&out), format) << name;
    EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&out), 768) << name;
    EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&out), 432) << name;
    ASSERT_EQ(gst_harness_buffers_in_queue(h.get()), 2u) << name;
    for (int k = 0; k < 2; ++k) {
      GstBuffer *buf = gst_harness_pull(h.get());
      EXPECT_EQ(GST_BUFFER_PTS(buf), 2 * k * GST_SECOND) << name;
      const auto luma = luma_of(buf, out);
      const int left = luma[216 * 768 + 100], right = luma[216 * 768 + 668];
      EXPECT_NEAR(k == 0 ? left : right, 50, 12) << name << " output " << k;
      EXPECT_NEAR(k == 0 ? right : left, 190, 12) << name << " output " << k;
      gst_buffer_unref(buf);
    }
  }
}

// ---- events, changes while playing, states ---------------------------------------------------

TEST(FrameSampler, FlushForgetsTheLastOutputFrame) {
  HarnessPtr h = new_harness({}, kSmall);
  ASSERT_EQ(push(h.get(), flat_i420(64, 48, 70), 0), GST_FLOW_OK);
  ASSERT_EQ(push(h.get(), flat_i420(64, 48, 70), 500 * GST_MSECOND), GST_FLOW_OK);
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 1u);

  ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_start()));
  ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_flush_stop(TRUE)));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_segment(&segment)));
  // Both too soon and a duplicate of the last output before the flush.
  ASSERT_EQ(push(h.get(), flat_i420(64, 48, 70), 600 * GST_MSECOND), GST_FLOW_OK);
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 2u);
  EXPECT_EQ(stat(h.get(), "dropped-rate"), 1u) << "statistics survive a flush";

  auto events = drain_events(h.get());
  EXPECT_NE(std::find(events.begin(), events.end(), GST_EVENT_FLUSH_START), events.end());
  EXPECT_NE(std::find(events.begin(), events.end(), GST_EVENT_FLUSH_STOP), events.end());
}

TEST(FrameSampler, GapAndEosPassThrough) {
  HarnessPtr h = new_harness({}, kSmall);
  ASSERT_EQ(push(h.get(), flat_i420(64, 48, 70), 0), GST_FLOW_OK);
  ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_gap(GST_SECOND, GST_SECOND)));
  ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_eos()));
  auto events = drain_events(h.get());
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[events.size() - 2], GST_EVENT_GAP);
  EXPECT_EQ(events.back(), GST_EVENT_EOS);
}

TEST(FrameSampler, CapsChangeMidStreamRescalesAndKeepsTheRateGrid) {
  const GstVideoInfo hd = video_info(GST_VIDEO_FORMAT_I420, 1920, 1080);
  const GstVideoInfo vga = video_info(GST_VIDEO_FORMAT_I420, 640, 480);
  HarnessPtr h = new_harness({}, hd);
  ASSERT_EQ(push(h.get(), flat_i420(1920, 1080, 60), 0), GST_FLOW_OK);
  EXPECT_EQ(output_width(h.get()), 768);

  gst_harness_set_src_caps_str(h.get(), caps_string(vga).c_str());
  ASSERT_EQ(push(h.get(), flat_i420(640, 480, 160), 500 * GST_MSECOND), GST_FLOW_OK);
  ASSERT_EQ(push(h.get(), flat_i420(640, 480, 160), GST_SECOND), GST_FLOW_OK);
  Out out = pull_all(h.get());
  const std::vector<GstClockTime> want = {0, GST_SECOND};
  EXPECT_EQ(out.pts, want);
  GstVideoInfo info = output_info(h.get());
  EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&info), 640);
  EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&info), 480);
  EXPECT_EQ(out.data.back().size(), GST_VIDEO_INFO_SIZE(&info));
}

TEST(FrameSampler, MaxSizeAndMaxFpsCanChangeWhilePlaying) {
  const GstVideoInfo hd = video_info(GST_VIDEO_FORMAT_I420, 1280, 720);
  HarnessPtr h = new_harness({{"duplicate-threshold", "0"}}, hd);
  ASSERT_EQ(push(h.get(), flat_i420(1280, 720, 60), 0), GST_FLOW_OK);
  EXPECT_EQ(output_width(h.get()), 768);

  g_object_set(h->element, "max-size", 320u, nullptr);
  ASSERT_EQ(push(h.get(), flat_i420(1280, 720, 60), GST_SECOND), GST_FLOW_OK);
  GstVideoInfo info = output_info(h.get());
  EXPECT_EQ(GST_VIDEO_INFO_WIDTH(&info), 320);
  EXPECT_EQ(GST_VIDEO_INFO_HEIGHT(&info), 180);

  // Two per second from now on: the new grid starts at the last output (1 s).
  gst_util_set_object_arg(G_OBJECT(h->element), "max-fps", "2/1");
  ASSERT_EQ(push(h.get(), flat_i420(1280, 720, 60), 1400 * GST_MSECOND), GST_FLOW_OK);
  ASSERT_EQ(push(h.get(), flat_i420(1280, 720, 60), 1500 * GST_MSECOND), GST_FLOW_OK);
  Out out = pull_all(h.get());
  const std::vector<GstClockTime> want = {0, GST_SECOND, 1500 * GST_MSECOND};
  EXPECT_EQ(out.pts, want);
  EXPECT_EQ(out.data.back().size(), GST_VIDEO_INFO_SIZE(&info));
}

TEST(FrameSampler, RestartingResetsStatisticsAndSelection) {
  HarnessPtr h = new_harness({}, kSmall);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 10; ++i)
      ASSERT_EQ(push(h.get(), flat_i420(64, 48, 70), frame_time(i)), GST_FLOW_OK);
    EXPECT_EQ(stat(h.get(), "dropped-rate"), 9u) << "round " << round;
    ASSERT_NE(gst_element_set_state(h->element, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
    ASSERT_NE(gst_element_set_state(h->element, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
    EXPECT_EQ(stat(h.get(), "dropped-rate"), 0u);
    ASSERT_TRUE(gst_harness_push_event(h.get(), gst_event_new_stream_start("restart")));
    gst_harness_set_src_caps_str(h.get(), caps_string(kSmall).c_str());
  }
  EXPECT_EQ(gst_harness_buffers_received(h.get()), 3u);
}

TEST(FrameSampler, PropertiesHaveTheDocumentedDefaults) {
  GstElement *e = gst_element_factory_make("framesampler", nullptr);
  ASSERT_NE(e, nullptr);
  GValue fps = G_VALUE_INIT;
  g_value_init(&fps, GST_TYPE_FRACTION);
  g_object_get_property(G_OBJECT(e), "max-fps", &fps);
  EXPECT_EQ(gst_value_get_fraction_numerator(&fps), 1);
  EXPECT_EQ(gst_value_get_fraction_denominator(&fps), 1);
  guint max_size = 0;
  gdouble threshold = 0;
  guint64 interval = 0, dropped = 1;
  g_object_get(e, "max-size", &max_size, "duplicate-threshold", &threshold, "max-interval",
               &interval, "dropped-duplicates", &dropped, nullptr);
  EXPECT_EQ(max_size, 768u);
  EXPECT_DOUBLE_EQ(threshold, 2.0);
  EXPECT_EQ(interval, 10 * GST_SECOND);
  EXPECT_EQ(dropped, 0u);

  gst_util_set_object_arg(G_OBJECT(e), "max-fps", "1/5");
  g_object_get_property(G_OBJECT(e), "max-fps", &fps);
  EXPECT_EQ(gst_value_get_fraction_numerator(&fps), 1);
  EXPECT_EQ(gst_value_get_fraction_denominator(&fps), 5);
  g_value_unset(&fps);

  GParamSpec *spec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), "dropped-rate");
  ASSERT_NE(spec, nullptr);
  EXPECT_FALSE(spec->flags & G_PARAM_WRITABLE);
  gst_object_unref(e);
}

TEST(FrameSampler, PipelineIntoJpegencRunsToEos) {
  // A scrolling pattern: every sampled frame differs. 2 s at 30 fps: frames at 0 s and 1 s.
  Pipeline p("videotestsrc num-buffers=60 pattern=smpte horizontal-speed=16 ! "
             "video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! "
             "framesampler name=s ! jpegenc ! appsink name=out sync=false wait-on-eos=false");
  ASSERT_TRUE(p.get()) << p.parse_error();
  ASSERT_EQ(p.run(20s), GST_MESSAGE_EOS);
  GstElement *sink = p.by_name("out");
  std::vector<GstClockTime> pts;
  while (GstSample *sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 0)) {
    GstBuffer *buf = gst_sample_get_buffer(sample);
    pts.push_back(GST_BUFFER_PTS(buf));
    const auto bytes = bytes_of(buf);
    EXPECT_GT(bytes.size(), 1000u);
    EXPECT_EQ(bytes[0], 0xFF);
    EXPECT_EQ(bytes[1], 0xD8) << "not a JPEG";
    const GstStructure *s = gst_caps_get_structure(gst_sample_get_caps(sample), 0);
    gint w = 0, h = 0;
    EXPECT_TRUE(gst_structure_get_int(s, "width", &w));
    EXPECT_TRUE(gst_structure_get_int(s, "height", &h));
    EXPECT_EQ(w, 768);
    EXPECT_EQ(h, 432);
    gst_sample_unref(sample);
  }
  gst_object_unref(sink);
  const std::vector<GstClockTime> want = {0, GST_SECOND};
  EXPECT_EQ(pts, want);

  // The same test pattern standing still: one frame.
  Pipeline still("videotestsrc num-buffers=60 pattern=smpte ! "
                 "video/x-raw,width=1280,height=720,framerate=30/1 ! "
                 "framesampler ! jpegenc ! appsink name=out sync=false wait-on-eos=false");
  ASSERT_EQ(still.run(20s), GST_MESSAGE_EOS);
  sink = still.by_name("out");
  int samples = 0;
  while (GstSample *sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 0)) {
    ++samples;
    gst_sample_unref(sample);
  }
  gst_object_unref(sink);
  EXPECT_EQ(samples, 1);
}
