// imagegensrc against the local backend: real PNGs, aspect ratios, errors, retries, secrets.
#include "common/gst_helpers.h"

#include <gemstream/local_backend.h>
#include <gst/check/gstharness.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

using gemstream::LocalBackend;
using gemstream::test::Pipeline;
using namespace std::chrono_literals;

namespace {

class ImageGenSrcTest : public ::testing::Test {
protected:
  void SetUp() override {
    backend_ = std::make_unique<LocalBackend>();
    backend_->start();
  }
  std::string base() const { return backend_->base_url(); }

  std::unique_ptr<LocalBackend> backend_;
};

// Width/height of the first decoded frame of "<launch> ! pngdec" pulled through a harness.
std::pair<int, int> decoded_size(GstHarness *h) {
  GstBuffer *buf = gst_harness_pull(h);
  EXPECT_NE(buf, nullptr);
  if (!buf)
    return {0, 0};
  gst_buffer_unref(buf);
  GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
  GstStructure *s = gst_caps_get_structure(caps, 0);
  int w = 0, h2 = 0;
  gst_structure_get_int(s, "width", &w);
  gst_structure_get_int(s, "height", &h2);
  EXPECT_STREQ(gst_structure_get_name(s), "video/x-raw");
  gst_caps_unref(caps);
  return {w, h2};
}

} // namespace

TEST_F(ImageGenSrcTest, NanoBananaPngDecodesAtAspectRatioSize) {
  std::string launch = "imagegensrc prompt=\"meditation practice\" style=minimal aspect-ratio=16:9 "
                       "base-url=" + base() + " ! pngdec";
  GstHarness *h = gst_harness_new_parse(launch.c_str());
  gst_harness_play(h);
  auto [w, ht] = decoded_size(h);
  EXPECT_EQ(w, 1344);
  EXPECT_EQ(ht, 768);

  // One image, then EOS.
  bool eos = false;
  while (GstEvent *ev = gst_harness_pull_event(h)) {
    eos |= GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
    gst_event_unref(ev);
    if (eos)
      break;
  }
  EXPECT_TRUE(eos);
  EXPECT_EQ(gst_harness_buffers_in_queue(h), 0u);
  gst_harness_teardown(h);

  // The wire request: generateContent with the IMAGE modality and the templated prompt.
  auto reqs = backend_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].path, "/v1beta/models/gemini-2.5-flash-image:generateContent");
  EXPECT_NE(reqs[0].body.find("\"responseModalities\":[\"IMAGE\"]"), std::string::npos);
  EXPECT_NE(reqs[0].body.find("\\\"meditation practice\\\""), std::string::npos);
  EXPECT_NE(reqs[0].body.find("\"aspectRatio\":\"16:9\""), std::string::npos);
}

TEST_F(ImageGenSrcTest, ImagenUsesPredictAndItsSizes) {
  std::string launch = "imagegensrc prompt=lighthouse model=imagen-4-fast aspect-ratio=9:16 "
                       "base-url=" + base() + " ! pngdec";
  GstHarness *h = gst_harness_new_parse(launch.c_str());
  gst_harness_play(h);
  auto [w, ht] = decoded_size(h);
  EXPECT_EQ(w, 768);
  EXPECT_EQ(ht, 1408);
  gst_harness_teardown(h);
  auto reqs = backend_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].path, "/v1beta/models/imagen-4.0-fast-generate-001:predict");
}

TEST_F(ImageGenSrcTest, OutputCapsCarryThePngSize) {
  std::string launch = "imagegensrc prompt=owl aspect-ratio=1:1 base-url=" + base();
  GstHarness *h = gst_harness_new_parse(launch.c_str());
  gst_harness_play(h);
  GstBuffer *buf = gst_harness_pull(h);
  ASSERT_NE(buf, nullptr);
  GstMapInfo map;
  gst_buffer_map(buf, &map, GST_MAP_READ);
  ASSERT_GT(map.size, 8u);
  EXPECT_EQ(std::string(reinterpret_cast<char *>(map.data) + 1, 3), "PNG");
  gst_buffer_unmap(buf, &map);
  gst_buffer_unref(buf);
  GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
  GstCaps *expected = gst_caps_from_string("image/png,width=1024,height=1024,framerate=0/1");
  EXPECT_TRUE(gst_caps_is_equal(caps, expected)) << gst_caps_to_string(caps);
  gst_caps_unref(caps);
  gst_caps_unref(expected);
  gst_harness_teardown(h);
}

TEST_F(ImageGenSrcTest, PostsCostMessage) {
  Pipeline p("imagegensrc prompt=owl model=imagen-4 base-url=" + base() + " ! fakesink");
  ASSERT_EQ(p.run(), GST_MESSAGE_EOS);
  auto costs = p.element_messages("gemstream-cost");
  ASSERT_EQ(costs.size(), 1u);
  double usd = 0;
  EXPECT_TRUE(gst_structure_get_double(costs[0], "usd", &usd));
  EXPECT_DOUBLE_EQ(usd, 0.04);
  EXPECT_STREQ(gst_structure_get_string(costs[0], "model"), "imagen-4.0-generate-001");
  EXPECT_STREQ(gst_structure_get_string(costs[0], "kind"), "image");
}

TEST_F(ImageGenSrcTest, BadRequestSurfacesServiceMessage) {
  Pipeline p("imagegensrc prompt=owl aspect-ratio=7:3 base-url=" + base() + " ! fakesink");
  ASSERT_EQ(p.run(), GST_MESSAGE_ERROR);
  GError *err = nullptr;
  gchar *debug = nullptr;
  gst_message_parse_error(p.first_error(), &err, &debug);
  EXPECT_EQ(err->domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(err->code, GST_RESOURCE_ERROR_SETTINGS);
  EXPECT_NE(std::string(err->message).find("7:3"), std::string::npos) << err->message;
  const GstStructure *details = nullptr;
  gst_message_parse_error_details(p.first_error(), &details);
  ASSERT_NE(details, nullptr);
  guint status = 0;
  EXPECT_TRUE(gst_structure_get_uint(details, "http-status-code", &status));
  EXPECT_EQ(status, 400u);
  g_error_free(err);
  g_free(debug);
  EXPECT_EQ(backend_->requests().size(), 1u) << "a 400 is never retried";
}

TEST_F(ImageGenSrcTest, UnauthorizedIsNotAuthorized) {
  backend_->fail_next(1, 401);
  Pipeline p("imagegensrc prompt=owl base-url=" + base() + " ! fakesink");
  ASSERT_EQ(p.run(), GST_MESSAGE_ERROR);
  GError *err = nullptr;
  gst_message_parse_error(p.first_error(), &err, nullptr);
  EXPECT_EQ(err->domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(err->code, GST_RESOURCE_ERROR_NOT_AUTHORIZED);
  g_error_free(err);
}

TEST(ImageGenSrcAuth, WrongKeyIsNotAuthorizedAndKeyTravelsInHeader) {
  gemstream::LocalBackendOptions opts;
  opts.required_api_key = "right-key-0123456789";
  LocalBackend backend(opts);
  backend.start();
  Pipeline p("imagegensrc prompt=owl api-key=wrong-key-9876543210 base-url=" + backend.base_url() +
             " ! fakesink");
  ASSERT_EQ(p.run(), GST_MESSAGE_ERROR);
  GError *err = nullptr;
  gchar *debug = nullptr;
  gst_message_parse_error(p.first_error(), &err, &debug);
  EXPECT_EQ(err->code, GST_RESOURCE_ERROR_NOT_AUTHORIZED);
  EXPECT_EQ(std::string(err->message).find("wrong-key"), std::string::npos);
  EXPECT_EQ(std::string(debug ? debug : "").find("wrong-key"), std::string::npos);
  g_error_free(err);
  g_free(debug);
  auto reqs = backend.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].query.find("key"), std::string::npos);
  bool header = false;
  for (auto &[k, v] : reqs[0].headers)
    header |= k == "x-goog-api-key";
  EXPECT_TRUE(header);
}

TEST_F(ImageGenSrcTest, RetriesAfter503sAndHonoursRetryAfter) {
  backend_->fail_next(2, 503);
  {
    Pipeline p("imagegensrc prompt=owl base-url=" + base() + " ! fakesink");
    EXPECT_EQ(p.run(), GST_MESSAGE_EOS);
  }
  EXPECT_EQ(backend_->requests().size(), 3u);

  backend_->clear_requests();
  backend_->fail_next(1, 429, 2s);
  auto t0 = std::chrono::steady_clock::now();
  Pipeline p("imagegensrc prompt=owl base-url=" + base() + " ! fakesink");
  EXPECT_EQ(p.run(), GST_MESSAGE_EOS);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1900ms) << "Retry-After: 2 was not honoured";
  EXPECT_EQ(backend_->requests().size(), 2u);
}

TEST_F(ImageGenSrcTest, SafetyFilteredIsReportedAsSuch) {
  Pipeline p("imagegensrc prompt=\"forbidden-content\" base-url=" + base() + " ! fakesink");
  ASSERT_EQ(p.run(), GST_MESSAGE_ERROR);
  GError *err = nullptr;
  gst_message_parse_error(p.first_error(), &err, nullptr);
  EXPECT_EQ(err->domain, GST_STREAM_ERROR);
  EXPECT_NE(std::string(err->message).find("SAFETY"), std::string::npos) << err->message;
  g_error_free(err);
}

TEST_F(ImageGenSrcTest, MissingPromptFailsToStart) {
  Pipeline p("imagegensrc base-url=" + base() + " ! fakesink");
  EXPECT_EQ(gst_element_set_state(p.get(), GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  ASSERT_EQ(p.wait_for(GST_MESSAGE_ERROR, 1s), GST_MESSAGE_ERROR);
  GError *err = nullptr;
  gst_message_parse_error(p.first_error(), &err, nullptr);
  EXPECT_EQ(err->code, GST_RESOURCE_ERROR_SETTINGS);
  EXPECT_NE(std::string(err->message).find("prompt"), std::string::npos);
  g_error_free(err);
}

namespace {
std::mutex g_log_mutex;
std::string g_captured_log;
void capture_log(GstDebugCategory *cat, GstDebugLevel level, const gchar *file,
                 const gchar *function, gint line, GObject *object, GstDebugMessage *message,
                 gpointer) {
  const gchar *text = gst_debug_message_get(message);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_captured_log += std::string(gst_debug_category_get_name(cat)) + " " + gst_debug_level_get_name(level) +
           " " + file + ":" + function + ":" + std::to_string(line) + " " +
           (object ? G_OBJECT_TYPE_NAME(object) : "") + " " + (text ? text : "") + "\n";
}
} // namespace

TEST_F(ImageGenSrcTest, KeyNeverInFullDebugLog) {
  const std::string key = "AIzaSyTESTKEY-never-log-me-42";
  gst_debug_add_log_function(capture_log, nullptr, nullptr);
  gst_debug_remove_log_function(gst_debug_log_default);  // keep the test output readable
  gst_debug_set_active(TRUE);
  GstDebugLevel old = gst_debug_get_default_threshold();
  gst_debug_set_default_threshold(GST_LEVEL_MEMDUMP);
  {
    Pipeline p("imagegensrc prompt=owl name=src base-url=" + base() + " ! fakesink");
    GstElement *src = p.by_name("src");
    g_object_set(src, "api-key", key.c_str(), nullptr);
    gst_object_unref(src);
    EXPECT_EQ(p.run(), GST_MESSAGE_EOS);
  }
  {
    // Also through an error path (bad key → error text and debug strings).
    backend_->fail_next(1, 403);
    Pipeline p("imagegensrc prompt=owl name=src base-url=" + base() + " ! fakesink");
    GstElement *src = p.by_name("src");
    g_object_set(src, "api-key", key.c_str(), nullptr);
    gst_object_unref(src);
    EXPECT_EQ(p.run(), GST_MESSAGE_ERROR);
  }
  gst_debug_set_default_threshold(old);
  gst_debug_remove_log_function(capture_log);
  gst_debug_add_log_function(gst_debug_log_default, nullptr, nullptr);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  EXPECT_GT(g_captured_log.size(), 10000u) << "the log capture did not work";
  EXPECT_EQ(g_captured_log.find(key), std::string::npos) << "API key leaked into the debug log";
  // The key did reach the server, in the header.
  bool sent = false;
  for (auto &r : backend_->requests())
    for (auto &[k, v] : r.headers)
      sent |= k == "x-goog-api-key" && v == key;
  EXPECT_TRUE(sent);
}
