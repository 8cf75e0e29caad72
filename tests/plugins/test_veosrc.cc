// veosrc end to end against the local backend: a real 8 s MP4, progress, resume, cancellation.
#include "common/gst_helpers.h"

#include <gemstream/local_backend.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

using gemstream::LocalBackend;
using gemstream::test::Pipeline;
using namespace std::chrono_literals;

namespace {

class VeoSrcTest : public ::testing::Test {
protected:
  void SetUp() override {
    backend_ = std::make_unique<LocalBackend>();
    backend_->start();
    backend_->set_polls_until_done(2);
  }
  std::string src(const std::string &props) const {
    return "veosrc name=src poll-interval=50 base-url=" + backend_->base_url() + " " + props;
  }
  int count(const std::string &path_suffix) const {
    int n = 0;
    for (auto &r : backend_->requests())
      n += r.path.size() >= path_suffix.size() &&
           r.path.compare(r.path.size() - path_suffix.size(), path_suffix.size(), path_suffix) == 0;
    return n;
  }
  std::unique_ptr<LocalBackend> backend_;
};

// What a demuxed stream looked like.
struct StreamStats {
  std::string caps_name;
  int width = 0, height = 0, fps_n = 0, fps_d = 0, rate = 0, channels = 0;
  int buffers = 0;
  GstClockTime first_pts = GST_CLOCK_TIME_NONE, end = 0;
};

struct Demuxed {
  StreamStats video, audio;
};

GstPadProbeReturn count_buffer(GstPad *, GstPadProbeInfo *info, gpointer data) {
  auto *st = static_cast<StreamStats *>(data);
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER(info);
  st->buffers++;
  if (GST_BUFFER_PTS_IS_VALID(buf)) {
    if (!GST_CLOCK_TIME_IS_VALID(st->first_pts) || GST_BUFFER_PTS(buf) < st->first_pts)
      st->first_pts = GST_BUFFER_PTS(buf);
    GstClockTime end = GST_BUFFER_PTS(buf) + (GST_BUFFER_DURATION_IS_VALID(buf) ? GST_BUFFER_DURATION(buf) : 0);
    st->end = std::max(st->end, end);
  }
  return GST_PAD_PROBE_OK;
}

void on_pad_added(GstElement *demux, GstPad *pad, gpointer data) {
  auto *d = static_cast<Demuxed *>(data);
  GstCaps *caps = gst_pad_get_current_caps(pad);
  GstStructure *s = gst_caps_get_structure(caps, 0);
  bool video = g_str_has_prefix(gst_structure_get_name(s), "video/");
  StreamStats *st = video ? &d->video : &d->audio;
  st->caps_name = gst_structure_get_name(s);
  gst_structure_get_int(s, "width", &st->width);
  gst_structure_get_int(s, "height", &st->height);
  gst_structure_get_fraction(s, "framerate", &st->fps_n, &st->fps_d);
  gst_structure_get_int(s, "rate", &st->rate);
  gst_structure_get_int(s, "channels", &st->channels);
  gst_caps_unref(caps);

  GstElement *pipeline = GST_ELEMENT(gst_element_get_parent(demux));
  // A queue per branch: the demuxer's one thread must not block on a prerolled sink.
  GstElement *queue = gst_element_factory_make("queue", nullptr);
  GstElement *sink = gst_element_factory_make("fakesink", nullptr);
  g_object_set(sink, "sync", FALSE, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), queue, sink, nullptr);
  gst_element_link(queue, sink);
  gst_element_sync_state_with_parent(sink);
  gst_element_sync_state_with_parent(queue);
  GstPad *sinkpad = gst_element_get_static_pad(queue, "sink");
  gst_pad_link(pad, sinkpad);
  gst_pad_add_probe(sinkpad, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, st, nullptr);
  gst_object_unref(sinkpad);
  gst_object_unref(pipeline);
}

Demuxed demux_run(Pipeline &p, GstMessageType *result) {
  Demuxed d;
  GstElement *demux = p.by_name("demux");
  g_signal_connect(demux, "pad-added", G_CALLBACK(on_pad_added), &d);
  gst_object_unref(demux);
  *result = p.run(90s);
  gst_element_set_state(p.get(), GST_STATE_NULL);
  return d;
}

} // namespace

TEST_F(VeoSrcTest, ClipDemuxesToEightSecondsOf720p24WithAudio) {
  Pipeline p(src("prompt=\"peaceful beach sunset\" mood=calm") + " ! qtdemux name=demux");
  GstMessageType result;
  Demuxed d = demux_run(p, &result);
  ASSERT_EQ(result, GST_MESSAGE_EOS);
  EXPECT_EQ(d.video.caps_name, "video/x-h264");
  EXPECT_EQ(d.video.width, 1280);
  EXPECT_EQ(d.video.height, 720);
  EXPECT_EQ(d.video.fps_n, 24);
  EXPECT_EQ(d.video.fps_d, 1);
  EXPECT_EQ(d.video.buffers, 192);
  EXPECT_NEAR((d.video.end - d.video.first_pts) / 1e9, 8.0, 0.1);
  EXPECT_EQ(d.audio.caps_name, "audio/mpeg");
  EXPECT_GT(d.audio.buffers, 0);
  EXPECT_NEAR(d.audio.end / 1e9, 8.0, 0.1);

  // The wire: predictLongRunning, polls of the operation, a download.
  EXPECT_EQ(count(":predictLongRunning"), 1);
  EXPECT_GE(count(":download"), 1);
  auto reqs = backend_->requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_NE(reqs[0].body.find("peaceful beach sunset"), std::string::npos);
  EXPECT_NE(reqs[0].body.find("\"aspectRatio\":\"16:9\""), std::string::npos);
  EXPECT_EQ(reqs[0].body.find("generateAudio"), std::string::npos);

  // Progress: start, polls, complete; and the cost of 8 s of Veo 3 Fast.
  bool start = false, poll = false, complete = false;
  for (GstMessage *m : p.messages(GST_MESSAGE_PROGRESS)) {
    GstProgressType type;
    gchar *code = nullptr;
    gst_message_parse_progress(m, &type, &code, nullptr);
    start |= type == GST_PROGRESS_TYPE_START;
    poll |= type == GST_PROGRESS_TYPE_CONTINUE && g_str_equal(code, "poll");
    complete |= type == GST_PROGRESS_TYPE_COMPLETE;
    g_free(code);
  }
  EXPECT_TRUE(start);
  EXPECT_TRUE(poll);
  EXPECT_TRUE(complete);
  auto costs = p.element_messages("gemstream-cost");
  ASSERT_EQ(costs.size(), 1u);
  double usd = 0;
  gst_structure_get_double(costs[0], "usd", &usd);
  EXPECT_DOUBLE_EQ(usd, 4.0);
}

TEST_F(VeoSrcTest, PortraitThroughDecodebin3) {
  Pipeline p(src("prompt=\"city rain\" aspect-ratio=9:16 model=veo-3") +
             " ! decodebin3 ! video/x-raw ! fakesink name=sink sync=false");
  ASSERT_FALSE(p.get() == nullptr) << p.parse_error();
  GstElement *sink = p.by_name("sink");
  GstPad *pad = gst_element_get_static_pad(sink, "sink");
  StreamStats st;
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, &st, nullptr);
  ASSERT_EQ(p.run(90s), GST_MESSAGE_EOS);
  GstCaps *caps = gst_pad_get_current_caps(pad);
  ASSERT_NE(caps, nullptr);
  GstStructure *s = gst_caps_get_structure(caps, 0);
  int w = 0, h = 0;
  gst_structure_get_int(s, "width", &w);
  gst_structure_get_int(s, "height", &h);
  EXPECT_EQ(w, 720);
  EXPECT_EQ(h, 1280);
  EXPECT_EQ(st.buffers, 192);
  gst_caps_unref(caps);
  gst_object_unref(pad);
  gst_object_unref(sink);
  EXPECT_EQ(count("/models/veo-3.0-generate-001:predictLongRunning"), 1);
}

TEST_F(VeoSrcTest, NullMidPollReturnsWithinOneSecond) {
  backend_->set_polls_until_done(100000);
  Pipeline p(src("prompt=waves poll-interval=200") + " ! fakesink");
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  ASSERT_EQ(p.wait_for(GST_MESSAGE_PROGRESS, 10s,
                       [](GstMessage *m) {
                         GstProgressType type;
                         gst_message_parse_progress(m, &type, nullptr, nullptr);
                         return type == GST_PROGRESS_TYPE_CONTINUE;
                       }),
            GST_MESSAGE_PROGRESS);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(gst_element_set_state(p.get(), GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 1s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
}

TEST_F(VeoSrcTest, TimeoutNamesOperationAndResumeDoesNotPayAgain) {
  backend_->set_polls_until_done(100000);
  std::string operation;
  {
    Pipeline p(src("prompt=\"mountain fog\" timeout=1") + " ! fakesink");
    ASSERT_EQ(p.run(10s), GST_MESSAGE_ERROR);
    GError *err = nullptr;
    gchar *debug = nullptr;
    gst_message_parse_error(p.first_error(), &err, &debug);
    std::string text = err->message;
    EXPECT_NE(text.find("operations/"), std::string::npos) << text;
    g_error_free(err);
    g_free(debug);
    GstElement *s = p.by_name("src");
    gchar *op = nullptr;
    g_object_get(s, "operation", &op, nullptr);
    operation = op ? op : "";
    g_free(op);
    gst_object_unref(s);
    EXPECT_NE(text.find(operation), std::string::npos);
  }
  ASSERT_FALSE(operation.empty());
  backend_->set_polls_until_done(1);
  backend_->clear_requests();
  auto file = std::filesystem::temp_directory_path() / ("veosrc-resume-" + std::to_string(getpid()) + ".mp4");
  Pipeline p(src("operation=" + operation + " location=" + file.string()) + " ! fakesink");
  ASSERT_EQ(p.run(60s), GST_MESSAGE_EOS);
  EXPECT_EQ(count(":predictLongRunning"), 0);
  EXPECT_TRUE(p.element_messages("gemstream-cost").empty()) << "a resumed operation is not paid again";
  gst_element_set_state(p.get(), GST_STATE_NULL);
  ASSERT_TRUE(std::filesystem::exists(file)) << "location keeps the download";
  EXPECT_GT(std::filesystem::file_size(file), 10000u);
  std::filesystem::remove(file);
}

TEST_F(VeoSrcTest, StartImageTravelsInTheRequest) {
  auto png = std::filesystem::temp_directory_path() / ("veosrc-start-" + std::to_string(getpid()) + ".png");
  {
    Pipeline p("imagegensrc prompt=owl aspect-ratio=16:9 base-url=" + backend_->base_url() +
               " ! filesink location=" + png.string());
    ASSERT_EQ(p.run(), GST_MESSAGE_EOS);
  }
  backend_->clear_requests();
  Pipeline p(src("prompt=owl image-location=" + png.string()) + " ! fakesink");
  ASSERT_EQ(p.run(60s), GST_MESSAGE_EOS);
  auto reqs = backend_->requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_NE(reqs[0].body.find("\"image\":{"), std::string::npos);
  EXPECT_NE(reqs[0].body.find("\"mimeType\":\"image/png\""), std::string::npos);
  std::filesystem::remove(png);
}

TEST_F(VeoSrcTest, DroppedDownloadIsRetried) {
  backend_->drop_next_download_after(10000);
  // One dropped download is retried and succeeds.
  Pipeline p(src("prompt=surf") + " ! fakesink");
  EXPECT_EQ(p.run(60s), GST_MESSAGE_EOS);
  EXPECT_GE(count(":download"), 2);
}
