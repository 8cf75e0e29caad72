// geminianalyzesink against the local backend (and a scripted server that never answers): the
// frames and the question on the wire, thinning, per-interval answers, EOS only after the
// answer, errors, cancellation, and state changes that leave no thread behind.
#include "common/base64.h"
#include "common/gst_helpers.h"
#include "common/scripted_server.h"

#include <gemstream/costs.h>
#include <gemstream/local_backend.h>
#include <gst/check/gstharness.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using gemstream::LocalBackend;
using json = nlohmann::json;
using gemstream::testing::b64decode;
using namespace std::chrono_literals;

namespace {

constexpr const char *kQuestion = "What happens in these frames?";

// `count` distinct JPEG frames (a moving ball), 160x90.
std::vector<std::string> make_jpegs(int count) {
  const std::string launch = "videotestsrc pattern=ball num-buffers=" + std::to_string(count) +
                             " ! video/x-raw,width=160,height=90,framerate=4/1 ! jpegenc";
  GstHarness *h = gst_harness_new_parse(launch.c_str());
  gst_harness_play(h);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    GstBuffer *buf = gst_harness_pull(h);
    if (!buf)
      break;
    GstMapInfo map;
    gst_buffer_map(buf, &map, GST_MAP_READ);
    out.emplace_back(reinterpret_cast<const char *>(map.data), map.size);
    gst_buffer_unmap(buf, &map);
    gst_buffer_unref(buf);
  }
  gst_harness_teardown(h);
  return out;
}

GstBuffer *frame_buffer(const std::string &jpeg, GstClockTime pts) {
  GstBuffer *buf = gst_buffer_new_memdup(jpeg.data(), jpeg.size());
  GST_BUFFER_PTS(buf) = pts;
  GST_BUFFER_DURATION(buf) = 250 * GST_MSECOND;
  return buf;
}

int thread_count() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Threads:", 0) == 0)
      return std::stoi(line.substr(8));
  return -1;
}

std::string error_text(GstMessage *m, GError **err_out = nullptr) {
  GError *err = nullptr;
  gchar *debug = nullptr;
  gst_message_parse_error(m, &err, &debug);
  std::string text = std::string(err->message) + " | " + (debug ? debug : "");
  g_free(debug);
  if (err_out)
    *err_out = err;
  else
    g_error_free(err);
  return text;
}

// The generateContent requests the backend received, parsed.
std::vector<json> generate_requests(const LocalBackend &backend) {
  std::vector<json> out;
  for (const auto &r : backend.requests())
    if (r.path.find(":generateContent") != std::string::npos)
      out.push_back(json::parse(r.body));
  return out;
}

struct SentFrame {
  std::string label;
  std::string jpeg;
};
// The labelled images of a request, in order.
std::vector<SentFrame> sent_frames(const json &body) {
  std::vector<SentFrame> out;
  std::string label;
  for (const auto &p : body.at("contents").at(0).at("parts")) {
    if (p.contains("text"))
      label = p.at("text").get<std::string>();
    if (p.contains("inlineData")) {
      EXPECT_EQ(p.at("inlineData").at("mimeType"), "image/jpeg");
      out.push_back({label, b64decode(p.at("inlineData").at("data").get<std::string>())});
    }
  }
  return out;
}

// A harness around one geminianalyzesink with a bus of its own.
class Sink {
public:
  explicit Sink(const std::string &properties) {
    h_ = gst_harness_new_parse(("geminianalyzesink name=s " + properties).c_str());
    bus_ = gst_bus_new();
    gst_element_set_bus(element(), bus_);
    gst_harness_set_src_caps_str(h_, "image/jpeg,width=160,height=90,framerate=0/1");
    sink_ = gst_bin_get_by_name(GST_BIN(h_->element), "s");
  }
  ~Sink() {
    if (eos_.valid())
      eos_.wait();
    gst_object_unref(sink_);
    gst_harness_teardown(h_);
    gst_object_unref(bus_);
  }
  // The bin the harness drives (state changes).
  GstElement *element() const { return h_->element; }
  // The geminianalyzesink in it (properties).
  GstElement *sink() const { return sink_; }

  void play() { gst_harness_play(h_); }
  GstFlowReturn push(const std::string &jpeg, double seconds) {
    return gst_harness_push(h_,
                            frame_buffer(jpeg, static_cast<GstClockTime>(seconds * GST_SECOND)));
  }
  // EOS blocks the pushing thread until the answer is in: push it from another one.
  void push_eos_async() {
    eos_ = std::async(std::launch::async,
                      [this] { return gst_harness_push_event(h_, gst_event_new_eos()) != FALSE; });
  }
  bool eos_push_result() { return eos_.get(); }
  bool eos_push_returned_within(std::chrono::milliseconds d) {
    return eos_.wait_for(d) == std::future_status::ready;
  }

  // The next EOS, ERROR or element message; nullptr on timeout. Caller unrefs.
  GstMessage *next(std::chrono::milliseconds timeout = 30s) {
    return gst_bus_timed_pop_filtered(
        bus_, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count(),
        GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT));
  }
  // The next gemstream-analysis structure (a copy), failing on anything else but cost messages.
  GstStructure *next_analysis(std::chrono::milliseconds timeout = 30s) {
    for (;;) {
      GstMessage *m = next(timeout);
      if (!m) {
        ADD_FAILURE() << "no gemstream-analysis message";
        return nullptr;
      }
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT &&
          gst_structure_has_name(gst_message_get_structure(m), "gemstream-analysis")) {
        GstStructure *s = gst_structure_copy(gst_message_get_structure(m));
        gst_message_unref(m);
        return s;
      }
      const bool cost = GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT &&
                        gst_structure_has_name(gst_message_get_structure(m), "gemstream-cost");
      if (!cost)
        ADD_FAILURE() << "unexpected " << GST_MESSAGE_TYPE_NAME(m) << " message"
                      << (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR ? ": " + error_text(m) : "");
      gst_message_unref(m);
      if (!cost)
        return nullptr;
    }
  }

private:
  GstHarness *h_ = nullptr;
  GstElement *sink_ = nullptr;
  GstBus *bus_ = nullptr;
  std::future<bool> eos_;
};

std::string str(const GstStructure *s, const char *field) {
  const gchar *v = gst_structure_get_string(s, field);
  return v ? v : "";
}
guint64 u64(const GstStructure *s, const char *field) {
  guint64 v = 0;
  EXPECT_TRUE(gst_structure_get_uint64(s, field, &v)) << field;
  return v;
}

class AnalyzeSinkTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() { jpegs_ = make_jpegs(16); }

  void SetUp() override {
    ASSERT_EQ(jpegs_.size(), 16u);
    dir_ = fs::temp_directory_path() / ("gemstream-analyzesink-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    ledger_ = dir_ / (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
                      ".sqlite");
    setenv("GEMSTREAM_LEDGER", ledger_.c_str(), 1);
    unsetenv("GEMSTREAM_DAILY_BUDGET_USD");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void start_backend(gemstream::LocalBackendOptions options = {}) {
    backend_ = std::make_unique<LocalBackend>(options);
    backend_->start();
  }
  std::string base() const { return "base-url=" + backend_->base_url(); }

  static inline std::vector<std::string> jpegs_;
  fs::path dir_;
  fs::path ledger_;
  std::unique_ptr<LocalBackend> backend_;
};

} // namespace

TEST_F(AnalyzeSinkTest, SendsEvenlyThinnedFramesWithTheQuestionAndPostsEosAfterTheAnswer) {
  start_backend();
  backend_->set_latency(300ms);
  Sink sink(base() + " max-frames=4 user=carol question=\"" + kQuestion + "\"");
  sink.play();
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(sink.push(jpegs_[i], i), GST_FLOW_OK);
  EXPECT_TRUE(generate_requests(*backend_).empty()) << "nothing is sent before EOS";
  sink.push_eos_async();
  // The answer takes 300 ms: the EOS is still held after 100 ms.
  EXPECT_FALSE(sink.eos_push_returned_within(100ms));

  GstStructure *a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  EXPECT_NE(str(a, "text").find("I looked at 4 images (160x90)"), std::string::npos)
      << str(a, "text");
  guint frames = 0;
  EXPECT_TRUE(gst_structure_get_uint(a, "frames", &frames));
  EXPECT_EQ(frames, 4u);
  EXPECT_EQ(str(a, "model"), "gemini-2.5-flash");
  EXPECT_EQ(u64(a, "start"), 0u);
  EXPECT_EQ(u64(a, "duration"), 9 * GST_SECOND); // the first and the last frame are sent
  gboolean final = FALSE;
  EXPECT_TRUE(gst_structure_get_boolean(a, "final", &final));
  EXPECT_TRUE(final);
  double usd = 0;
  EXPECT_TRUE(gst_structure_get_double(a, "usd", &usd));
  EXPECT_GT(usd, 0);
  EXPECT_FALSE(str(a, "response-id").empty());
  gst_structure_free(a);

  GstMessage *m = sink.next();
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(GST_MESSAGE_TYPE(m), GST_MESSAGE_ELEMENT);
  const GstStructure *cost = gst_message_get_structure(m);
  EXPECT_TRUE(gst_structure_has_name(cost, "gemstream-cost"));
  EXPECT_EQ(str(cost, "kind"), "analysis");
  EXPECT_EQ(str(cost, "model-key"), "video_analysis");
  double cost_usd = 0, units = 0;
  gst_structure_get_double(cost, "usd", &cost_usd);
  gst_structure_get_double(cost, "units", &units);
  EXPECT_DOUBLE_EQ(cost_usd, usd);
  EXPECT_GT(units, 4 * 258);
  gst_message_unref(m);
  m = sink.next();
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(GST_MESSAGE_TYPE(m), GST_MESSAGE_EOS);
  gst_message_unref(m);
  EXPECT_TRUE(sink.eos_push_result());

  // On the wire: the intro, four labelled JPEGs taken from the pushed frames, the question.
  const auto requests = generate_requests(*backend_);
  ASSERT_EQ(requests.size(), 1u);
  const json &parts = requests[0].at("contents").at(0).at("parts");
  EXPECT_EQ(parts.at(0).at("text"), "4 frames of a video, in order, each after its time:");
  EXPECT_EQ(parts.back().at("text"), kQuestion);
  const auto sent = sent_frames(requests[0]);
  ASSERT_EQ(sent.size(), 4u);
  double previous = -1;
  for (const auto &f : sent) {
    double t = -1;
    ASSERT_EQ(std::sscanf(f.label.c_str(), "Frame at %lf s:", &t), 1) << f.label;
    EXPECT_GT(t, previous);
    previous = t;
    ASSERT_EQ(t, std::floor(t)) << f.label;
    EXPECT_EQ(f.jpeg, jpegs_.at(static_cast<std::size_t>(t))) << "the image sent as " << f.label;
  }
  EXPECT_EQ(sent.front().label, "Frame at 0.00 s:");
  EXPECT_EQ(sent.back().label, "Frame at 9.00 s:");

  guint64 analyses = 0;
  double total = 0;
  g_object_get(sink.sink(), "analyses", &analyses, "total-usd", &total, nullptr);
  EXPECT_EQ(analyses, 1u);
  EXPECT_DOUBLE_EQ(total, usd);
  const auto rows = gemstream::CostLedger(ledger_).entries();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, gemstream::CostKind::Analysis);
  EXPECT_EQ(rows[0].user, "carol");
  EXPECT_EQ(rows[0].usd(), usd);
}

TEST_F(AnalyzeSinkTest, EveryFrameGoesWhenNoMoreThanMaxFramesArrive) {
  start_backend();
  Sink sink(base() + " max-frames=4 question=\"" + kQuestion + "\"");
  sink.play();
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(sink.push(jpegs_[i], 0.5 * i), GST_FLOW_OK);
  sink.push_eos_async();
  GstStructure *a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  gst_structure_free(a);
  const auto sent = sent_frames(generate_requests(*backend_).at(0));
  ASSERT_EQ(sent.size(), 4u);
  for (std::size_t i = 0; i < sent.size(); ++i)
    EXPECT_EQ(sent[i].jpeg, jpegs_[i]) << i;
  EXPECT_EQ(sent[1].label, "Frame at 0.50 s:");
}

TEST_F(AnalyzeSinkTest, IntervalModeAnswersEachIntervalAndTheRestAtEos) {
  start_backend();
  Sink sink(base() + " interval=1 max-frames=8 question=\"" + kQuestion + "\"");
  sink.play();
  // 0 .. 0.75 s, then the frame at 1 s closes the first interval.
  for (int i = 0; i <= 4; ++i)
    ASSERT_EQ(sink.push(jpegs_[i], 0.25 * i), GST_FLOW_OK);
  GstStructure *a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  guint frames = 0;
  gboolean final = TRUE;
  gst_structure_get_uint(a, "frames", &frames);
  gst_structure_get_boolean(a, "final", &final);
  EXPECT_EQ(frames, 4u);
  EXPECT_FALSE(final);
  EXPECT_EQ(u64(a, "start"), 0u);
  EXPECT_EQ(u64(a, "duration"), 750 * GST_MSECOND);
  EXPECT_NE(str(a, "text").find("I looked at 4 images"), std::string::npos) << str(a, "text");
  gst_structure_free(a);

  for (int i = 5; i <= 8; ++i) // 1.25 .. 2 s: the second interval is 1 .. 1.75 s
    ASSERT_EQ(sink.push(jpegs_[i], 0.25 * i), GST_FLOW_OK);
  a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  gst_structure_get_uint(a, "frames", &frames);
  EXPECT_EQ(frames, 4u);
  EXPECT_EQ(u64(a, "start"), GST_SECOND);
  gst_structure_free(a);

  sink.push_eos_async(); // the frame at 2 s is left
  a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  gst_structure_get_uint(a, "frames", &frames);
  gst_structure_get_boolean(a, "final", &final);
  EXPECT_EQ(frames, 1u);
  EXPECT_TRUE(final);
  EXPECT_EQ(u64(a, "start"), 2 * GST_SECOND);
  gst_structure_free(a);
  GstMessage *m = sink.next();
  ASSERT_NE(m, nullptr);
  if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT) { // the final answer's cost
    gst_message_unref(m);
    m = sink.next();
    ASSERT_NE(m, nullptr);
  }
  EXPECT_EQ(GST_MESSAGE_TYPE(m), GST_MESSAGE_EOS);
  gst_message_unref(m);
  EXPECT_EQ(generate_requests(*backend_).size(), 3u);
}

TEST_F(AnalyzeSinkTest, IntervalsWaitingForAnAnswerGoWithTheNextRequest) {
  start_backend();
  backend_->set_latency(400ms);
  Sink sink(base() + " interval=1 max-frames=4 question=\"" + kQuestion + "\"");
  sink.play();
  for (int i = 0; i <= 12; ++i) // 0 .. 3 s: the request for 0 .. 0.75 s is still out at 3 s
    ASSERT_EQ(sink.push(jpegs_[i], 0.25 * i), GST_FLOW_OK);
  GstStructure *a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(u64(a, "duration"), 750 * GST_MSECOND);
  gst_structure_free(a);
  EXPECT_EQ(generate_requests(*backend_).size(), 1u) << "requests must not pile up";

  // The worker is idle again: the next frame sends 1 .. 3 s, thinned to 4 frames.
  ASSERT_EQ(sink.push(jpegs_[13], 3.25), GST_FLOW_OK);
  a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  guint frames = 0;
  gst_structure_get_uint(a, "frames", &frames);
  EXPECT_EQ(frames, 4u);
  EXPECT_EQ(u64(a, "start"), GST_SECOND);
  EXPECT_EQ(u64(a, "duration"), 2 * GST_SECOND);
  gst_structure_free(a);
  const auto requests = generate_requests(*backend_);
  ASSERT_EQ(requests.size(), 2u);
  const auto sent = sent_frames(requests[1]);
  ASSERT_EQ(sent.size(), 4u);
  EXPECT_EQ(sent.front().label, "Frame at 1.00 s:");
  EXPECT_EQ(sent.back().label, "Frame at 3.00 s:");
  EXPECT_EQ(requests[1].at("contents").at(0).at("parts").at(0).at("text"),
            "4 frames of a live video, in order, each after its time:");
}

TEST_F(AnalyzeSinkTest, PausingWhileTheAnswerIsOutKeepsItAndTheEos) {
  start_backend();
  backend_->set_latency(400ms);
  Sink sink(base() + " question=\"" + kQuestion + "\"");
  sink.play();
  ASSERT_EQ(sink.push(jpegs_[0], 0), GST_FLOW_OK);
  sink.push_eos_async();
  while (generate_requests(*backend_).empty())
    std::this_thread::sleep_for(5ms);
  EXPECT_NE(gst_element_set_state(sink.element(), GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  EXPECT_NE(gst_element_set_state(sink.element(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  GstStructure *a = sink.next_analysis();
  ASSERT_NE(a, nullptr);
  gst_structure_free(a);
  bool eos = false;
  while (GstMessage *m = sink.next(5s)) {
    eos = eos || GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
    EXPECT_NE(GST_MESSAGE_TYPE(m), GST_MESSAGE_ERROR) << error_text(m);
    gst_message_unref(m);
    if (eos)
      break;
  }
  EXPECT_TRUE(eos);
  EXPECT_TRUE(sink.eos_push_result());
}

TEST_F(AnalyzeSinkTest, RejectedKeyIsNotAuthorizedAndNoEosFollows) {
  gemstream::LocalBackendOptions options;
  options.required_api_key = "right-key-0123456789";
  start_backend(options);
  Sink sink(base() + " api-key=wrong-key-9876543210 question=\"" + kQuestion + "\"");
  sink.play();
  ASSERT_EQ(sink.push(jpegs_[0], 0), GST_FLOW_OK);
  sink.push_eos_async();
  GstMessage *m = sink.next();
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(GST_MESSAGE_TYPE(m), GST_MESSAGE_ERROR);
  GError *err = nullptr;
  const std::string text = error_text(m, &err);
  EXPECT_EQ(err->domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(err->code, GST_RESOURCE_ERROR_NOT_AUTHORIZED);
  EXPECT_NE(std::string(err->message).find("API key was rejected"), std::string::npos) << text;
  EXPECT_EQ(text.find("wrong-key"), std::string::npos) << "the key leaked: " << text;
  g_error_free(err);
  gst_message_unref(m);
  EXPECT_FALSE(sink.eos_push_result());
  EXPECT_EQ(sink.next(200ms), nullptr) << "nothing, and no EOS, after the error";
  EXPECT_TRUE(gemstream::CostLedger(ledger_).entries().empty());
}

TEST_F(AnalyzeSinkTest, BudgetIsCheckedBeforeAnyRequest) {
  start_backend();
  setenv("GEMSTREAM_DAILY_BUDGET_USD", "0.0000001", 1);
  Sink sink(base() + " question=\"" + kQuestion + "\"");
  sink.play();
  ASSERT_EQ(sink.push(jpegs_[0], 0), GST_FLOW_OK);
  sink.push_eos_async();
  GstMessage *m = sink.next();
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(GST_MESSAGE_TYPE(m), GST_MESSAGE_ERROR);
  const std::string text = error_text(m);
  EXPECT_NE(text.find("daily budget"), std::string::npos) << text;
  gst_message_unref(m);
  EXPECT_FALSE(sink.eos_push_result());
  EXPECT_TRUE(backend_->requests().empty());
  unsetenv("GEMSTREAM_DAILY_BUDGET_USD");
}

TEST_F(AnalyzeSinkTest, EosWithoutFramesIsAStreamError) {
  start_backend();
  Sink sink(base() + " question=\"" + kQuestion + "\"");
  sink.play();
  sink.push_eos_async();
  GstMessage *m = sink.next();
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(GST_MESSAGE_TYPE(m), GST_MESSAGE_ERROR);
  GError *err = nullptr;
  const std::string text = error_text(m, &err);
  EXPECT_EQ(err->domain, GST_STREAM_ERROR);
  EXPECT_NE(text.find("No frames arrived"), std::string::npos) << text;
  g_error_free(err);
  gst_message_unref(m);
  EXPECT_TRUE(backend_->requests().empty());
}

TEST_F(AnalyzeSinkTest, MissingQuestionFailsTheStateChange) {
  start_backend();
  GstElement *e = gst_element_factory_make("geminianalyzesink", nullptr);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  EXPECT_EQ(gst_element_set_state(e, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  ASSERT_NE(m, nullptr);
  GError *err = nullptr;
  error_text(m, &err);
  EXPECT_EQ(err->code, GST_RESOURCE_ERROR_SETTINGS);
  g_error_free(err);
  gst_message_unref(m);
  gst_element_set_state(e, GST_STATE_NULL);
  gst_object_unref(e);
  gst_object_unref(bus);
}

TEST_F(AnalyzeSinkTest, StoppingMidRequestCancelsItPromptly) {
  gemstream::testing::ScriptedServer server;
  gemstream::testing::ScriptedResponse silent;
  silent.never_answer = true;
  server.push(silent);
  Sink sink("base-url=" + server.base_url() + " question=\"" + kQuestion + "\"");
  sink.play();
  ASSERT_EQ(sink.push(jpegs_[0], 0), GST_FLOW_OK);
  sink.push_eos_async();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server.request_count() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(server.request_count(), 1u);

  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(gst_element_set_state(sink.element(), GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 1s) << "stopping waited for the service";
  EXPECT_FALSE(sink.eos_push_result());
  // A cancelled request is not an error, and no answer or EOS is posted.
  EXPECT_EQ(sink.next(100ms), nullptr);
}

TEST_F(AnalyzeSinkTest, StateCyclesLeaveNoThreadBehind) {
  start_backend();
  const int threads_before = thread_count();
  for (int round = 0; round < 20; ++round) {
    GstElement *e = gst_element_factory_make("geminianalyzesink", nullptr);
    g_object_set(e, "question", kQuestion, "base-url", backend_->base_url().c_str(), nullptr);
    for (GstState s : {GST_STATE_READY, GST_STATE_PAUSED, GST_STATE_PLAYING, GST_STATE_PAUSED,
                       GST_STATE_READY, GST_STATE_PLAYING, GST_STATE_NULL})
      ASSERT_NE(gst_element_set_state(e, s), GST_STATE_CHANGE_FAILURE)
          << gst_element_state_get_name(s);
    gst_object_unref(e);
  }
  EXPECT_EQ(thread_count(), threads_before);
  EXPECT_TRUE(backend_->requests().empty());
}
