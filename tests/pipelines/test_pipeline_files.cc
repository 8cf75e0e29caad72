// Every file in pipelines/ parses with test values and builds; those the local backend can
// serve run to EOS and their outputs are probed.
#include "common/seam_metric.h"
#include "pipelines/pipeline_test_util.h"

#include <gemstream/config.h>
#include <gemstream/pipeline.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <set>

using namespace gemstream;
using namespace gemstream::test;
using namespace std::chrono_literals;

namespace {

fs::path pipelines_dir() {
  return fs::path(GEMSTREAM_SOURCE_DIR) / "pipelines";
}

// Values for the required parameters of any pipeline file, plus outputs into `dir`.
std::map<std::string, std::string> test_values(const PipelineFile &file, const TempDir &dir,
                                               const fs::path &existing_file) {
  std::map<std::string, std::string> values;
  for (const auto &p : file.parameters()) {
    if (p.type == ParameterType::Path && (p.must_exist || p.required()))
      values[p.name] = existing_file.string();
    else if (p.type == ParameterType::Path)
      values[p.name] = (dir / (p.name + ".out")).string();
    else if (p.required())
      values[p.name] = p.type == ParameterType::String ? "test value" : p.allowed.at(0);
  }
  return values;
}

struct RunResult {
  Outcome outcome;
  std::vector<Event> events;
  template <typename T> std::vector<T> all() const {
    std::vector<T> out;
    for (const auto &e : events)
      if (const auto *t = std::get_if<T>(&e))
        out.push_back(*t);
    return out;
  }
};

RunResult run_to_end(Pipeline &p, std::chrono::seconds limit = 90s) {
  RunResult run;
  p.start();
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    auto e = p.wait_event(1s);
    if (!e)
      continue;
    run.events.push_back(*e);
    if (is_terminal(*e))
      break;
  }
  auto outcome = p.wait(1s);
  EXPECT_TRUE(outcome.has_value()) << "the run did not end within " << limit.count() << " s";
  if (outcome)
    run.outcome = *outcome;
  return run;
}

std::string describe(const RunResult &run) {
  if (run.outcome.error)
    return run.outcome.error->source + ": " + run.outcome.error->message + " (" +
           run.outcome.error->debug + ")";
  return "ending " + std::to_string(static_cast<int>(run.outcome.ending));
}

class PipelineFiles : public ::testing::Test {
protected:
  void SetUp() override {
    if (!gst_is_initialized())
      gst_init(nullptr, nullptr);
    ASSERT_FALSE(find_gemstream_plugin().empty());
  }
  TempDir dir_;
};

} // namespace

TEST_F(PipelineFiles, EveryFileParsesAndBuildsWithTestValues) {
  const fs::path clip = dir_ / "clip.mp4";
  ASSERT_EQ(make_clip(clip, 12, true), "");
  const auto files = PipelineFile::list(pipelines_dir());
  ASSERT_GE(files.size(), 3u);
  std::set<std::string> names;
  for (const auto &path : files) {
    SCOPED_TRACE(path.string());
    const PipelineFile file = PipelineFile::load(path);
    names.insert(file.name());
    EXPECT_FALSE(file.description().empty());
    for (const auto &p : file.parameters())
      EXPECT_FALSE(p.doc.empty()) << p.name;
    const auto values = test_values(file, dir_, clip);
    // Builds (every element exists, every property is set, every static link is made) but does
    // not run.
    auto pipeline = Pipeline::from_file(file, values);
    EXPECT_FALSE(pipeline->launch_line().empty());
  }
  EXPECT_TRUE(names.count("cover-image"));
  EXPECT_TRUE(names.count("background-video"));
  EXPECT_TRUE(names.count("background-loop"));
  EXPECT_TRUE(names.count("video-analysis"));
  EXPECT_TRUE(names.count("webcam-analysis"));
}

TEST_F(PipelineFiles, BackgroundLoopBuildsForEveryBranchCombination) {
  const fs::path clip = dir_ / "clip.mp4";
  ASSERT_EQ(make_clip(clip, 12, true), "");
  const PipelineFile file = PipelineFile::load(pipelines_dir() / "background-loop.json");
  for (const char *formats :
       {"mp4", "webm", "poster", "mp4,webm", "mp4,poster", "webm,poster", "mp4,webm,poster"}) {
    for (const char *audio : {"true", "false"}) {
      for (const char *height : {"0", "90"}) {
        SCOPED_TRACE(std::string(formats) + " audio=" + audio + " height=" + height);
        auto p = Pipeline::from_file(
            file,
            {{"input", clip.string()}, {"formats", formats}, {"audio", audio}, {"height", height}});
        const std::string &line = p->launch_line();
        EXPECT_EQ(line.find("x264enc") != std::string::npos,
                  std::string(formats).find("mp4") != std::string::npos);
        EXPECT_EQ(line.find("vp9enc") != std::string::npos,
                  std::string(formats).find("webm") != std::string::npos);
        EXPECT_EQ(line.find("jpegenc") != std::string::npos,
                  std::string(formats).find("poster") != std::string::npos);
        EXPECT_EQ(line.find("loop.audio_sink") != std::string::npos, std::string(audio) == "true");
        // The main path is scaled only for a height (the poster scales its one frame).
        EXPECT_EQ(line.find("video/x-raw,height=" + std::string(height)) != std::string::npos,
                  std::string(height) != "0");
      }
    }
  }
}

TEST_F(PipelineFiles, CoverImageRunsToEos) {
  const fs::path out = dir_ / "cover.png";
  auto p = Pipeline::load("cover-image", {{"prompt", "meditation practice"},
                                          {"style", "minimal"},
                                          {"palette", "teal and gold"},
                                          {"aspect-ratio", "16:9"},
                                          {"output", out.string()}});
  RunResult run = run_to_end(*p);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);
  const std::string png = slurp(out);
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const MediaInfo info = probe(out);
  EXPECT_TRUE(info.image);
  EXPECT_GT(info.width, info.height); // 16:9
  const auto costs = run.all<events::Cost>();
  ASSERT_EQ(costs.size(), 1u);
  EXPECT_EQ(costs[0].kind, "image");
  EXPECT_EQ(costs[0].model_key, "nano_banana");
  EXPECT_DOUBLE_EQ(costs[0].usd,
                   MediaConfig::load_default().image_model("nano_banana").usd_per_image);
}

TEST_F(PipelineFiles, BackgroundVideoRunsToEosWithProgress) {
  const fs::path out = dir_ / "background.mp4";
  auto p = Pipeline::load("background-video", {{"prompt", "peaceful beach sunset"},
                                               {"mood", "calm"},
                                               {"poll-interval", "50ms"},
                                               {"output", out.string()}});
  RunResult run = run_to_end(*p);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);
  const MediaInfo info = probe(out);
  ASSERT_TRUE(info.ok);
  EXPECT_NEAR(info.seconds, 8.0, 0.2);
  EXPECT_EQ(info.height, 720);
  EXPECT_NE(info.video_caps.find("video/x-h264"), std::string::npos);
  EXPECT_FALSE(info.audio_caps.empty());
  const auto progress = run.all<events::Progress>();
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front().code, "start");
  EXPECT_EQ(progress.front().source, "src");
  const auto ops = run.all<events::Operation>();
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].name.rfind("models/", 0), 0u) << ops[0].name;
  ASSERT_EQ(run.all<events::Cost>().size(), 1u);
  EXPECT_EQ(run.all<events::Cost>()[0].kind, "video");
}

TEST_F(PipelineFiles, BackgroundLoopWritesAllThreeFormats) {
  const fs::path clip = dir_ / "clip.mp4";
  ASSERT_EQ(make_clip(clip, 72, true), ""); // 3 s
  const fs::path mp4 = dir_ / "loop.mp4", webm = dir_ / "loop.webm", poster = dir_ / "poster.jpg";
  auto p = Pipeline::load("background-loop", {{"input", clip.string()},
                                              {"crossfade", "500ms"},
                                              {"h264-preset", "ultrafast"},
                                              {"mp4-output", mp4.string()},
                                              {"webm-output", webm.string()},
                                              {"poster-output", poster.string()}});
  RunResult run = run_to_end(*p);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);

  const MediaInfo m = probe(mp4);
  ASSERT_TRUE(m.ok);
  EXPECT_NEAR(m.seconds, 2.5, 0.1); // input minus the crossfade
  EXPECT_EQ(m.width, 320);
  EXPECT_NE(m.video_caps.find("video/x-h264"), std::string::npos) << m.video_caps;
  EXPECT_NE(m.video_caps.find("chroma-format=(string)4:2:0"), std::string::npos) << m.video_caps;
  EXPECT_NE(m.audio_caps.find("audio/mpeg"), std::string::npos) << m.audio_caps;
  // faststart: the moov box comes before the media data.
  const std::string bytes = slurp(mp4);
  ASSERT_NE(bytes.find("moov"), std::string::npos);
  EXPECT_LT(bytes.find("moov"), bytes.find("mdat"));

  const MediaInfo w = probe(webm);
  ASSERT_TRUE(w.ok);
  EXPECT_NEAR(w.seconds, 2.5, 0.1);
  EXPECT_NE(w.container_caps.find("video/webm"), std::string::npos) << w.container_caps;
  EXPECT_NE(w.video_caps.find("video/x-vp9"), std::string::npos) << w.video_caps;
  EXPECT_NE(w.audio_caps.find("audio/x-opus"), std::string::npos) << w.audio_caps;

  const MediaInfo j = probe(poster);
  ASSERT_TRUE(j.ok);
  EXPECT_TRUE(j.image);
  EXPECT_EQ(j.width, 320);
  EXPECT_EQ(j.height, 180);
  EXPECT_EQ(slurp(poster).substr(0, 2), "\xff\xd8");
  // The poster is the loop's first frame (the ball has moved by the middle of the clip).
  const auto loop_frames = grey_frames(mp4, 30);
  const auto poster_frames = grey_frames(poster, 1);
  ASSERT_EQ(loop_frames.size(), 30u);
  ASSERT_EQ(poster_frames.size(), 1u);
  const double to_first = mean_abs_diff(poster_frames[0], loop_frames[0]);
  const double to_middle = mean_abs_diff(poster_frames[0], loop_frames[29]);
  EXPECT_LT(to_first, 3.0);
  EXPECT_GT(to_middle, 2 * to_first + 1.0) << to_first << " vs " << to_middle;
}

TEST_F(PipelineFiles, BackgroundLoopScalesAVideoOnlyClipToAPoster) {
  const fs::path clip = dir_ / "silent.mp4";
  ASSERT_EQ(make_clip(clip, 24, false), "");
  const fs::path poster = dir_ / "small.jpg";
  auto p = Pipeline::load("background-loop", {{"input", clip.string()},
                                              {"audio", "false"},
                                              {"formats", "poster"},
                                              {"height", "90"},
                                              {"crossfade", "200ms"},
                                              {"poster-output", poster.string()}});
  RunResult run = run_to_end(*p);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);
  const MediaInfo j = probe(poster);
  ASSERT_TRUE(j.ok);
  EXPECT_EQ(j.width, 160);
  EXPECT_EQ(j.height, 90);
}

TEST_F(PipelineFiles, VoiceFileAnswersASpokenQuestionWithSpeechAndTranscripts) {
  // The question, spoken by flite (the voice the local backend recognises best).
  const fs::path question = dir_ / "question.wav";
  ASSERT_EQ(std::system(("flite -voice rms -t 'hello how are you' -o " + question.string()).c_str()), 0);
  const fs::path reply = dir_ / "reply.wav";
  auto p = Pipeline::load("voice-file", {{"input", question.string()}, {"output", reply.string()}});
  RunResult run = run_to_end(*p, 60s);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);
  // The WAV header: 24 kHz mono S16, and more than half a second of it.
  const std::string wav = slurp(reply);
  ASSERT_GT(wav.size(), 44u);
  ASSERT_EQ(wav.substr(0, 4), "RIFF");
  auto le = [&](size_t off, int n) {
    std::uint32_t v = 0;
    for (int i = n - 1; i >= 0; --i)
      v = (v << 8) | static_cast<unsigned char>(wav[off + i]);
    return v;
  };
  EXPECT_EQ(le(22, 2), 1u);      // channels
  EXPECT_EQ(le(24, 4), 24000u);  // sample rate
  EXPECT_EQ(le(34, 2), 16u);     // bits per sample
  EXPECT_GT((wav.size() - 44) / 2.0 / 24000, 0.5) << "the reply should be spoken";
  std::int64_t energy = 0;
  for (size_t i = 44; i + 1 < wav.size(); i += 2)
    energy += std::abs(static_cast<std::int16_t>(le(i, 2)));
  EXPECT_GT(energy / std::max<size_t>(1, (wav.size() - 44) / 2), 100) << "the reply is silent";
  bool input = false, output = false;
  for (const auto &e : run.all<events::Element>()) {
    if (e.name != "gemstream-live-transcript")
      continue;
    input |= e.fields.find("\"input\"") != std::string::npos;
    output |= e.fields.find("\"output\"") != std::string::npos;
  }
  EXPECT_TRUE(input) << "no input transcription";
  EXPECT_TRUE(output) << "no output transcription";
}

namespace {

// The fields of the gemstream-analysis messages of a run.
std::vector<nlohmann::json> analyses(const RunResult &run) {
  std::vector<nlohmann::json> out;
  for (const auto &e : run.all<events::Element>())
    if (e.name == "gemstream-analysis")
      out.push_back(nlohmann::json::parse(e.fields));
  return out;
}

} // namespace

TEST_F(PipelineFiles, VideoAnalysisAnswersAboutSampledFramesBeforeEos) {
  const fs::path clip = dir_ / "clip.mp4";
  ASSERT_EQ(make_clip(clip, 72, true), ""); // 3 s with an audio track nothing links
  auto p = Pipeline::load("video-analysis", {{"input", clip.string()},
                                             {"question", "what happens?"},
                                             {"frames", "4"},
                                             {"frame-interval", "750ms"}});
  RunResult run = run_to_end(*p);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);
  const auto answers = analyses(run);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].at("frames"), 4);
  EXPECT_EQ(answers[0].at("duration"), 2250000000u); // 0, 0.75, 1.5 and 2.25 s
  EXPECT_NE(answers[0].at("text").get<std::string>().find("I looked at 4 images (320x180)"),
            std::string::npos)
      << answers[0].dump();
  const auto costs = run.all<events::Cost>();
  ASSERT_EQ(costs.size(), 1u);
  EXPECT_EQ(costs[0].kind, "analysis");
  EXPECT_EQ(costs[0].source, "analysis");
  // The answer comes before the end of the run.
  std::size_t answer_at = 0, eos_at = 0;
  for (std::size_t i = 0; i < run.events.size(); ++i) {
    if (const auto *e = std::get_if<events::Element>(&run.events[i]))
      if (e->name == "gemstream-analysis")
        answer_at = i;
    if (std::holds_alternative<events::Eos>(run.events[i]))
      eos_at = i;
  }
  EXPECT_LT(answer_at, eos_at);
}

TEST_F(PipelineFiles, FramesForTheModelAreJpegsInTheColoursOfTheVideo) {
  // JFIF means full-range BT.601 while decoded video is limited range: a JPEG written from the
  // video's YUV as it is shows black as dark grey (16) and shifts the colours. The same graph
  // as video-analysis, with the frames written to files instead of sent to the model.
  const fs::path clip = dir_ / "clip.mp4";
  ASSERT_EQ(make_clip(clip, 24, false), ""); // a white ball on black, 320x180
  const PipelineFile file = PipelineFile::load(pipelines_dir() / "video-analysis.json");
  std::string line = file.resolve(
      {{"input", clip.string()}, {"question", "what happens?"}, {"frames", "2"}});
  const auto sink = line.find("geminianalyzesink");
  ASSERT_NE(sink, std::string::npos) << line;
  line = line.substr(0, sink) + "multifilesink location=" + (dir_ / "frame-%02d.jpg").string();
  auto p = Pipeline::from_launch(line);
  RunResult run = run_to_end(*p);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);
  const RgbFrame jpeg = first_frame_rgb((dir_ / "frame-00.jpg").string());
  const RgbFrame video = first_frame_rgb(clip.string());
  EXPECT_EQ(*std::min_element(jpeg.rgb.begin(), jpeg.rgb.end()), 0);
  EXPECT_LT(rgb_mad(jpeg, video), 3.0);
}

TEST_F(PipelineFiles, WebcamAnalysisAnswersPerIntervalWithATestCamera) {
  const PipelineFile file = PipelineFile::load(pipelines_dir() / "webcam-analysis.json");
  std::string line =
      file.resolve({{"question", "is anyone there?"}, {"interval", "1"}, {"max-fps", "2"}});
  // The same graph with a live 1.5 s test pattern instead of the V4L2 camera (live, as a
  // camera is: the graph's leaky queue would drop the frames of a faster-than-real-time source).
  const std::string camera = "v4l2src name=camera ";
  const auto at = line.find(camera);
  ASSERT_NE(at, std::string::npos) << line;
  line.replace(at, camera.size(),
               "videotestsrc name=camera is-live=true pattern=ball num-buffers=30 ! "
               "video/x-raw,width=320,height=180,framerate=20/1 ");
  auto p = Pipeline::from_launch(line);
  RunResult run = run_to_end(*p);
  ASSERT_TRUE(run.outcome.ok()) << describe(run);
  const auto answers = analyses(run);
  // The first interval is answered on its own; later ones may be merged while an answer is
  // out; the frames left at EOS come last.
  ASSERT_GE(answers.size(), 2u);
  std::int64_t frames = 0;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    EXPECT_EQ(answers[i].at("final").get<bool>(), i + 1 == answers.size()) << i;
    frames += answers[i].at("frames").get<std::int64_t>();
  }
  EXPECT_EQ(answers[0].at("frames"), 2); // 0 and 0.5 s
  EXPECT_EQ(frames, 3);                  // 0, 0.5 and 1 s: every sampled frame is analysed
  EXPECT_EQ(run.all<events::Cost>().size(), answers.size());
}
