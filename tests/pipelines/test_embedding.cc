// The embedding API: typed events through the queue and callbacks (bus thread and GLib main
// context), stop semantics, typed errors, lifetime rules.
#include "pipelines/pipeline_test_util.h"

#include <gemstream/local_backend.h>
#include <gemstream/pipeline.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <mutex>
#include <thread>

using namespace gemstream;
using namespace gemstream::test;
using namespace std::chrono_literals;

namespace {

std::vector<Event> drain(Pipeline &p, std::chrono::seconds limit = 60s) {
  std::vector<Event> events;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    auto e = p.wait_event(500ms);
    if (!e) {
      if (p.finished())
        break;
      continue;
    }
    events.push_back(*e);
  }
  return events;
}

template <typename T> std::size_t count(const std::vector<Event> &events) {
  return static_cast<std::size_t>(std::count_if(
      events.begin(), events.end(), [](const Event &e) { return std::holds_alternative<T>(e); }));
}

// How a finished run ended. wait() returns once the terminal event has also been dispatched,
// a moment after finished() turns true: a zero timeout here would race the bus thread.
std::optional<Outcome::Ending> ending_of(Pipeline &p) {
  const auto outcome = p.wait(10s);
  return outcome ? std::optional(outcome->ending) : std::nullopt;
}

std::string index_names(const std::vector<Event> &events) {
  std::string out;
  for (const auto &e : events)
    out += std::to_string(e.index()) + " ";
  return out;
}

// Runs `launch` to its end (20 s at most) and returns the error it ended with.
std::optional<events::Error> run_to_error(const std::string &launch) {
  auto p = Pipeline::from_launch(launch);
  p->start();
  const auto events = drain(*p, 20s);
  EXPECT_TRUE(p->finished()) << "the run did not end: " << launch;
  EXPECT_EQ(ending_of(*p), Outcome::Ending::Error);
  const auto *e = events.empty() ? nullptr : std::get_if<events::Error>(&events.back());
  EXPECT_NE(e, nullptr) << "last events: " << index_names(events);
  return e ? std::optional(*e) : std::nullopt;
}

class Embedding : public ::testing::Test {
protected:
  TempDir dir_;
};

} // namespace

TEST_F(Embedding, FindsThePluginInTheBuildTree) {
  const std::string file = find_gemstream_plugin();
  EXPECT_EQ(file, std::string(GEMSTREAM_BINARY_DIR) + "/plugins/libgstgemstream.so");
}

TEST_F(Embedding, QueueDeliversEveryEventEndingWithEos) {
  const fs::path out = dir_ / "owl.png";
  auto p = Pipeline::load("cover-image", {{"prompt", "owl"}, {"output", out.string()}});
  p->start();
  const auto events = drain(*p);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(std::holds_alternative<events::Eos>(events.back())) << index_names(events);
  EXPECT_EQ(count<events::Eos>(events), 1u);
  EXPECT_EQ(count<events::Cost>(events), 1u);
  // The pipeline's own state changes, reaching PLAYING.
  bool playing = false;
  for (const auto &e : events)
    if (const auto *s = std::get_if<events::StateChanged>(&e))
      playing |= s->new_state == events::State::Playing;
  EXPECT_TRUE(playing);
  const auto outcome = p->wait(10s); // see ending_of()
  ASSERT_TRUE(outcome);
  EXPECT_TRUE(outcome->ok());
  EXPECT_FALSE(outcome->stop_requested);
  // Eos comes after NULL: the file is complete when it arrives.
  EXPECT_EQ(slurp(out).substr(1, 3), "PNG");
  EXPECT_FALSE(p->wait_event(0ms)); // over: nothing more
  EXPECT_EQ(p->dropped_events(), 0u);
}

TEST_F(Embedding, BusThreadCallbackSeesTheSameEventsOffTheCallingThread) {
  auto p =
      Pipeline::from_launch("audiotestsrc num-buffers=20 ! level interval=10000000 ! fakesink");
  std::mutex m;
  std::vector<Event> seen;
  std::set<std::thread::id> threads;
  p->set_callback([&](const Event &e) {
    std::lock_guard lock(m);
    seen.push_back(e);
    threads.insert(std::this_thread::get_id());
  });
  p->start();
  const auto queued = drain(*p);
  ASSERT_TRUE(p->wait(5s));
  std::lock_guard lock(m);
  ASSERT_EQ(seen.size(), queued.size());
  for (std::size_t i = 0; i < seen.size(); ++i)
    EXPECT_EQ(seen[i].index(), queued[i].index()) << i;
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(*threads.begin(), std::this_thread::get_id());
  // level's element messages as JSON.
  std::size_t levels = 0;
  for (const auto &e : queued) {
    const auto *el = std::get_if<events::Element>(&e);
    if (!el || el->name != "level")
      continue;
    ++levels;
    EXPECT_EQ(el->source, "level0");
    const auto fields = nlohmann::json::parse(el->fields);
    ASSERT_TRUE(fields.at("rms").is_array()) << el->fields;
    EXPECT_TRUE(fields.at("rms").at(0).is_number()) << el->fields;
    EXPECT_TRUE(fields.at("endtime").is_number_unsigned()) << el->fields;
  }
  EXPECT_GE(levels, 10u);
}

TEST_F(Embedding, MainContextCallbacksRunInTheApplicationsMainLoop) {
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  GMainLoop *loop = g_main_loop_new(ctx, FALSE);
  PipelineOptions options;
  options.callback_context = CallbackContext::MainContext;
  auto p = Pipeline::from_launch("videotestsrc num-buffers=5 ! fakesink", options);
  std::vector<std::thread::id> threads;
  std::vector<Event> seen;
  p->set_callback([&](const Event &e) {
    threads.push_back(std::this_thread::get_id());
    seen.push_back(e);
    if (is_terminal(e))
      g_main_loop_quit(loop);
  });
  p->start();
  // A watchdog: never hang the suite.
  GSource *timeout = g_timeout_source_new_seconds(20);
  g_source_set_callback(
      timeout,
      [](gpointer l) {
        g_main_loop_quit(static_cast<GMainLoop *>(l));
        return G_SOURCE_REMOVE;
      },
      loop, nullptr);
  g_source_attach(timeout, ctx);
  g_main_loop_run(loop);
  g_source_destroy(timeout);
  g_source_unref(timeout);
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(std::holds_alternative<events::Eos>(seen.back())) << index_names(seen);
  for (auto id : threads)
    EXPECT_EQ(id, std::this_thread::get_id());
  p.reset();
  g_main_loop_unref(loop);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}

TEST_F(Embedding, StopSendsEosSoFilesAreComplete) {
  const fs::path out = dir_ / "live.mp4";
  auto p = Pipeline::from_launch(
      "videotestsrc is-live=true ! video/x-raw,width=160,height=90,framerate=30/1 ! "
      "x264enc tune=zerolatency speed-preset=ultrafast ! mp4mux ! filesink location=" +
      out.string());
  p->start();
  std::this_thread::sleep_for(700ms);
  EXPECT_FALSE(p->finished());
  const Outcome outcome = p->stop(5s);
  EXPECT_EQ(outcome.ending, Outcome::Ending::Eos);
  EXPECT_TRUE(outcome.stop_requested);
  // mp4mux writes the moov box on EOS only.
  const MediaInfo info = probe(out);
  ASSERT_TRUE(info.ok);
  EXPECT_GT(info.seconds, 0.3);
  EXPECT_NE(slurp(out).find("moov"), std::string::npos);
  // Idempotent.
  EXPECT_EQ(p->stop(1s).ending, Outcome::Ending::Eos);
}

TEST_F(Embedding, StopForcesNullWhenEosCannotArriveInTime) {
  // The sink waits 10 s on the clock for the second frame, so EOS cannot reach it in 300 ms.
  auto p = Pipeline::from_launch(
      "videotestsrc ! video/x-raw,width=16,height=16,framerate=1/10 ! fakesink sync=true");
  p->start();
  std::this_thread::sleep_for(300ms);
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome outcome = p->stop(300ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(outcome.ending, Outcome::Ending::Stopped);
  EXPECT_TRUE(outcome.stop_requested);
  EXPECT_LT(took, 3s);
  const auto events = drain(*p, 1s);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(std::holds_alternative<events::Stopped>(events.back()));
}

TEST_F(Embedding, ServiceErrorsArriveTyped) {
  LocalBackend backend;
  backend.start();
  backend.fail_next(1, 404);
  auto p = Pipeline::from_launch("imagegensrc name=gen prompt=owl base-url=" + backend.base_url() +
                                 " ! fakesink");
  p->start();
  const auto events = drain(*p);
  ASSERT_FALSE(events.empty());
  const auto *e = std::get_if<events::Error>(&events.back());
  ASSERT_NE(e, nullptr) << index_names(events);
  EXPECT_EQ(e->source, "gen");
  EXPECT_EQ(e->domain, "resource");
  EXPECT_EQ(e->code, GST_RESOURCE_ERROR_NOT_FOUND);
  EXPECT_EQ(e->kind, ErrorKind::NotFound);
  EXPECT_EQ(e->details.at("http-status-code"), "404");
  EXPECT_EQ(e->details.at("error-kind"), "NotFound");
  const auto outcome = p->wait(1s);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->ending, Outcome::Ending::Error);
  ASSERT_TRUE(outcome->error);
  EXPECT_EQ(outcome->error->kind, ErrorKind::NotFound);
}

TEST_F(Embedding, ALinkThatFailsWhenItsPadAppearsEndsTheRunInsteadOfHanging) {
  // The demuxer's video pad cannot link to an audio decoder. gst_parse only warns about such
  // a delayed link; the audio branch then reaches EOS while the other sink waits for ever.
  if (!gst_is_initialized())
    gst_init(nullptr, nullptr);
  const fs::path clip = dir_ / "clip.mp4";
  ASSERT_EQ(make_clip(clip, 24, true), "");
  const auto e = run_to_error("filesrc location=" + clip.string() +
                              " ! qtdemux name=d  d.audio_0 ! queue ! fakesink"
                              "  d.video_0 ! avdec_aac ! fakesink");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->source, "d");
  EXPECT_EQ(e->kind, ErrorKind::Config);
  EXPECT_NE(e->message.find("video_0"), std::string::npos) << e->message;
  EXPECT_NE(e->message.find("could not be made when its pad appeared"), std::string::npos)
      << e->message;
}

TEST_F(Embedding, ABranchForAStreamDecodebin3DidNotSelectEndsTheRunInsteadOfHanging) {
  // decodebin3 never adds audio_0 for a clip without audio, and never signals no-more-pads:
  // the audio branch's sink would wait for ever for preroll.
  if (!gst_is_initialized())
    gst_init(nullptr, nullptr);
  const fs::path clip = dir_ / "silent.mp4";
  ASSERT_EQ(make_clip(clip, 24, false), "");
  gchar *uri_raw = gst_filename_to_uri(clip.c_str(), nullptr);
  ASSERT_NE(uri_raw, nullptr);
  const std::string uri = uri_raw;
  g_free(uri_raw);
  // uridecodebin3 selects its streams in the decodebin3 inside it, which posts the message;
  // the link is named after the uridecodebin3.
  for (const std::string &decoder : {"filesrc location=" + clip.string() + " ! decodebin3",
                                    "uridecodebin3 uri=" + uri}) {
    SCOPED_TRACE(decoder);
    const auto e = run_to_error(decoder + " name=dec  dec.video_0 ! queue ! fakesink"
                                          "  dec.audio_0 ! queue ! fakesink");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->source, "dec");
    EXPECT_EQ(e->kind, ErrorKind::Config);
    EXPECT_NE(e->message.find("no audio stream for the link from dec.audio_0"), std::string::npos)
        << e->message;

    // The same clip through a pipeline that links only the streams it has plays to the end.
    auto ok = Pipeline::from_launch(decoder + " name=dec  dec.video_0 ! queue ! fakesink");
    ok->start();
    drain(*ok, 20s);
    ASSERT_TRUE(ok->finished());
    EXPECT_EQ(ending_of(*ok), Outcome::Ending::Eos);
  }
}

TEST_F(Embedding, StartThrowsTheErrorThatPreventsPlaying) {
  auto p =
      Pipeline::from_launch("filesrc name=input location=" + (dir_ / "missing.mp4").string() +
                            " ! fakesink");
  try {
    p->start();
    FAIL() << "start() did not throw";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound) << e.what();
    EXPECT_NE(e.message().find("input"), std::string::npos) << e.what();
  }
  ASSERT_TRUE(p->finished());
  EXPECT_EQ(ending_of(*p), Outcome::Ending::Error);
  EXPECT_THROW(p->start(), Error); // a pipeline runs once
}

TEST_F(Embedding, BuildErrorsAreTyped) {
  try {
    Pipeline::from_launch("nosuchelement ! fakesink");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_NE(e.message().find("missing GStreamer element(s): nosuchelement"), std::string::npos)
        << e.what();
  }
  try {
    Pipeline::from_launch("fakesrc nosuchproperty=1 ! fakesink");
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(e.message().find("nosuchproperty"), std::string::npos) << e.what();
  }
  try {
    Pipeline::load("cover-image", {{"style", "baroque"}, {"prompt", "owl"}});
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(e.message().find("parameter 'style'"), std::string::npos) << e.what();
  }
}

TEST_F(Embedding, DestroyingARunningPipelineStopsIt) {
  auto p = Pipeline::from_launch("videotestsrc is-live=true ! fakesink");
  p->start();
  std::this_thread::sleep_for(100ms);
  const auto t0 = std::chrono::steady_clock::now();
  p.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST_F(Embedding, APipelineMayBeDestroyedFromItsBusThreadCallback) {
  auto p = Pipeline::from_launch("videotestsrc num-buffers=3 ! fakesink");
  std::atomic<bool> destroyed{false};
  std::mutex m;
  std::condition_variable cv;
  Pipeline *raw = p.get();
  raw->set_callback([&](const Event &e) {
    if (!is_terminal(e))
      return;
    std::lock_guard lock(m);
    p.reset(); // from the bus thread
    destroyed = true;
    cv.notify_all();
  });
  raw->start();
  std::unique_lock lock(m);
  EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return destroyed.load(); }));
}

TEST_F(Embedding, ABoundedQueueDropsTheOldestEvents) {
  PipelineOptions options;
  options.max_queued_events = 3;
  auto p = Pipeline::from_launch("audiotestsrc num-buffers=50 ! level interval=1000000 ! fakesink",
                                 options);
  p->start();
  ASSERT_TRUE(p->wait(10s));
  EXPECT_GT(p->dropped_events(), 0u);
  std::vector<Event> left;
  while (auto e = p->wait_event(0ms))
    left.push_back(*e);
  ASSERT_EQ(left.size(), 3u);
  EXPECT_TRUE(std::holds_alternative<events::Eos>(left.back()));
}

TEST_F(Embedding, StoppingBeforeStartEndsTheRun) {
  auto p = Pipeline::from_launch("fakesrc ! fakesink");
  const Outcome o = p->stop();
  EXPECT_EQ(o.ending, Outcome::Ending::Stopped);
  EXPECT_TRUE(p->finished());
  EXPECT_FALSE(p->wait_event(0ms));
}
