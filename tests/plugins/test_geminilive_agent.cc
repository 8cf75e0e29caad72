// The plan's acceptance phrases spoken (flite's rms voice) through geminilivesink with
// capabilities=default, against the local backend, whose stand-in model recognises the speech
// and calls the capabilities: consent is asked and given by voice, and the artefacts appear.
#include "common/gst_helpers.h"
#include "media.h"

#include <gemstream/local_backend.h>
#include <gtest/gtest.h>
#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using gemstream::test::Pipeline;

namespace {

std::string str_field(const GstStructure *s, const char *field) {
  const gchar *v = gst_structure_get_string(s, field);
  return v ? v : "";
}

bool has_flite() {
  gchar *flite = g_find_program_in_path("flite");
  g_free(flite);
  return flite != nullptr;
}

std::string read_file(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// 16 kHz mono S16 samples of a flite WAV (rms voice), skipping the header's chunks.
std::vector<std::int16_t> speak(const std::string &text, const fs::path &dir) {
  const fs::path wav = dir / "utterance.wav";
  const std::string cmd = "flite -voice rms -t \"" + text + "\" -o " + wav.string();
  if (std::system(cmd.c_str()) != 0)
    return {};
  const std::string b = read_file(wav);
  fs::remove(wav);
  std::vector<std::int16_t> pcm;
  for (std::size_t o = 12; o + 8 <= b.size();) {
    const std::size_t size = GST_READ_UINT32_LE(b.data() + o + 4);
    if (b.compare(o, 4, "data") == 0) {
      for (std::size_t i = 0; i + 1 < std::min(size, b.size() - o - 8); i += 2)
        pcm.push_back(std::int16_t(GST_READ_UINT16_LE(b.data() + o + 8 + i)));
    }
    o += 8 + size + (size & 1);
  }
  return pcm;
}

// The utterances with `gap` of silence after each: what a user says, pausing for the answer.
void write_conversation(const fs::path &path, const std::vector<std::string> &utterances,
                        std::chrono::milliseconds gap, const fs::path &dir) {
  constexpr int kRate = 16000;
  std::vector<std::int16_t> pcm(kRate / 2, 0);
  for (const auto &u : utterances) {
    const auto speech = speak(u, dir);
    ASSERT_FALSE(speech.empty()) << u;
    pcm.insert(pcm.end(), speech.begin(), speech.end());
    pcm.insert(pcm.end(), std::size_t(gap.count()) * kRate / 1000, 0);
  }
  std::string b = "RIFF";
  auto u32 = [&](guint32 v) {
    for (int i = 0; i < 4; ++i)
      b += char((v >> (8 * i)) & 0xff);
  };
  auto u16 = [&](guint16 v) {
    b += char(v & 0xff);
    b += char(v >> 8);
  };
  u32(guint32(36 + pcm.size() * 2));
  b += "WAVEfmt ";
  u32(16), u16(1), u16(1), u32(kRate), u32(kRate * 2), u16(2), u16(16);
  b += "data";
  u32(guint32(pcm.size() * 2));
  for (std::int16_t s : pcm)
    u16(guint16(s));
  std::ofstream(path, std::ios::binary) << b;
}

class LiveAgentTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (!has_flite())
      GTEST_SKIP() << "flite is not installed";
    gchar *d = g_dir_make_tmp("geminilive-agent-XXXXXX", nullptr);
    ASSERT_NE(d, nullptr);
    dir_ = d;
    g_free(d);
    g_setenv("GEMSTREAM_LEDGER", (dir_ / "ledger.sqlite").c_str(), TRUE);
    g_unsetenv("GEMSTREAM_DAILY_BUDGET_USD");
    backend_.start();
    backend_.set_polls_until_done(2);
  }
  void TearDown() override {
    if (!dir_.empty())
      fs::remove_all(dir_);
  }

  // Speaks the utterances into geminilivesink (capabilities=default) and runs to EOS.
  std::unique_ptr<Pipeline> converse(const std::vector<std::string> &utterances,
                                     const std::string &extra = {},
                                     const std::string &video_branch = {}) {
    const fs::path wav = dir_ / "conversation.wav";
    write_conversation(wav, utterances, 6s, dir_);
    auto p = std::make_unique<Pipeline>(
        "filesrc location=" + wav.string() +
        " ! wavparse ! audioconvert ! audioresample ! geminilivesink name=live sync=true "
        "session=agent capabilities=default user=alice job-poll-interval=100 "
        "reply-timeout=10000 media-dir=" +
        dir_.string() + " base-url=" + backend_.base_url() + " " + extra +
        "  geminilivesrc session=agent ! fakesink sync=false  " + video_branch);
    EXPECT_TRUE(p->get()) << p->parse_error();
    if (!p->get())
      return p;
    const GstMessageType end = p->run(120s);
    if (end == GST_MESSAGE_ERROR) {
      GError *err = nullptr;
      gst_message_parse_error(p->first_error(), &err, nullptr);
      ADD_FAILURE() << err->message;
      g_error_free(err);
    }
    EXPECT_EQ(end, GST_MESSAGE_EOS);
    gst_element_set_state(p->get(), GST_STATE_NULL);
    return p;
  }

  static std::string transcript(const Pipeline &p, const char *direction) {
    std::string text;
    for (const GstStructure *s : p.element_messages("gemstream-live-transcript"))
      if (str_field(s, "direction") == direction)
        text += str_field(s, "text");
    return text;
  }

  static std::vector<std::string> events(const Pipeline &p) {
    std::vector<std::string> out;
    for (const GstStructure *s : p.element_messages("gemstream-capability"))
      out.push_back(str_field(s, "capability") + ":" + str_field(s, "event"));
    return out;
  }

  static const GstStructure *finished(const Pipeline &p) {
    for (const GstStructure *s : p.element_messages("gemstream-capability"))
      if (str_field(s, "event") == "finished")
        return s;
    return nullptr;
  }

  fs::path dir_;
  gemstream::LocalBackend backend_;
};

} // namespace

TEST_F(LiveAgentTest, SpokenCardRequestIsConfirmedByVoiceAndMakesThePng) {
  auto p = converse({"create a card with a meditation image", "yes"});
  std::printf("[ agent    ] heard \"%s\"\n[ agent    ] said \"%s\"\n",
              transcript(*p, "input").c_str(), transcript(*p, "output").c_str());

  const auto calls = p->element_messages("gemstream-live-tool-call");
  ASSERT_EQ(calls.size(), 2u);
  for (const GstStructure *c : calls) {
    EXPECT_EQ(str_field(c, "name"), "generate_card_image");
    gboolean handled = FALSE;
    EXPECT_TRUE(gst_structure_get_boolean(c, "handled", &handled) && handled);
    EXPECT_NE(str_field(c, "args").find("\"motif\":\"meditation\""), std::string::npos)
        << str_field(c, "args");
  }
  EXPECT_EQ(events(*p), (std::vector<std::string>{"generate_card_image:consent-requested",
                                                  "generate_card_image:started",
                                                  "generate_card_image:finished"}));
  // The question the model was given to ask (the user's "yes" may cut its speech short).
  const GstStructure *asked = p->element_messages("gemstream-capability").at(0);
  EXPECT_NE(str_field(asked, "message").find("Shall I create a card cover showing meditation? "
                                             "It costs about $0.001."),
            std::string::npos)
      << str_field(asked, "message");

  const GstStructure *done = finished(*p);
  ASSERT_NE(done, nullptr);
  const fs::path png = str_field(done, "artefact");
  EXPECT_EQ(png.parent_path(), dir_ / "covers");
  const std::string bytes = read_file(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  double usd = 0;
  EXPECT_TRUE(gst_structure_get_double(done, "usd", &usd));
  EXPECT_DOUBLE_EQ(usd, 0.001);
}

TEST_F(LiveAgentTest, SpokenBackgroundRequestRunsAJobAndTheModelSaysWhenItIsReady) {
  auto p = converse({"make my chat background a peaceful beach sunset", "yes"});
  std::printf("[ agent    ] heard \"%s\"\n[ agent    ] said \"%s\"\n",
              transcript(*p, "input").c_str(), transcript(*p, "output").c_str());
  const auto calls = p->element_messages("gemstream-live-tool-call");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(str_field(calls[1], "name"), "generate_background_video");
  EXPECT_NE(str_field(calls[1], "args").find("\"description\":\"peaceful beach sunset\""),
            std::string::npos)
      << str_field(calls[1], "args");

  const GstStructure *done = finished(*p);
  ASSERT_NE(done, nullptr) << "no finished job before EOS";
  EXPECT_FALSE(str_field(done, "job-id").empty());
  const fs::path clip = str_field(done, "artefact");
  EXPECT_EQ(clip.parent_path(), dir_ / "backgrounds");
  const std::string mp4 = read_file(clip);
  ASSERT_GT(mp4.size(), 10000u);
  EXPECT_EQ(mp4.substr(4, 4), "ftyp");
  // ...and its loop outputs, next to it.
  const GValue *outputs = gst_structure_get_value(done, "outputs");
  ASSERT_NE(outputs, nullptr);
  std::vector<std::string> names;
  for (guint i = 0; i < gst_value_array_get_size(outputs); ++i) {
    const fs::path out = g_value_get_string(gst_value_array_get_value(outputs, i));
    EXPECT_EQ(out.parent_path(), clip.parent_path() / clip.stem());
    EXPECT_GT(fs::file_size(out), 1000u) << out;
    names.push_back(out.filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"loop.mp4", "loop.webm", "poster.jpg"}));

  // The job's end was reported to the model after its "on its way" turn, and it told the user.
  const std::string said = transcript(*p, "output");
  const auto on_its_way = said.find("on its way");
  ASSERT_NE(on_its_way, std::string::npos) << said;
  EXPECT_NE(said.find("is ready", on_its_way), std::string::npos) << said;
}

TEST_F(LiveAgentTest, SpokenNewsQuestionIsGroundedWithCitations) {
  auto p = converse({"what's the latest on AI regulation"}, "enable-search=true");
  std::printf("[ agent    ] heard \"%s\"\n[ agent    ] said \"%s\"\n",
              transcript(*p, "input").c_str(), transcript(*p, "output").c_str());
  const auto grounding = p->element_messages("gemstream-live-grounding");
  ASSERT_GE(grounding.size(), 1u);
  const std::string citations = str_field(grounding[0], "citations");
  EXPECT_EQ(citations.rfind("[1] ", 0), 0u) << citations;
  EXPECT_NE(citations.find("https://"), std::string::npos) << citations;
  EXPECT_TRUE(p->element_messages("gemstream-capability").empty())
      << "search is the service's googleSearch tool, not a function the sink runs";
}

TEST_F(LiveAgentTest, HereIsMyWorkoutVideoIsAnsweredFromTheFramesSent) {
  gemstream::backend::VideoSpec spec;
  spec.seconds = 4;
  spec.width = 320;
  spec.height = 180;
  spec.prompt = "energetic orange workout";
  const fs::path video = dir_ / "workout.mp4";
  std::ofstream(video, std::ios::binary) << gemstream::backend::render_mp4(spec);

  // The video is shown while the question is asked, as a webcam or a shared clip would be.
  auto p = converse({"here is my workout video what do you see"}, {},
                    "filesrc location=" + video.string() +
                        " ! qtdemux ! decodebin ! videoconvert ! framesampler max-fps=2 ! "
                        "jpegenc ! live.video");
  const std::string said = transcript(*p, "output");
  std::printf("[ agent    ] heard \"%s\"\n[ agent    ] said \"%s\"\n",
              transcript(*p, "input").c_str(), said.c_str());
  EXPECT_NE(said.find("You have sent me "), std::string::npos) << said;
  EXPECT_NE(said.find("(320x180)"), std::string::npos) << said;
  EXPECT_NE(said.find("dominant colours"), std::string::npos) << said;
  EXPECT_NE(said.find("motion"), std::string::npos) << said;
  // About 2 frames per second of the clip were sampled and sent while the question was asked.
  const auto sent = said.find("You have sent me ");
  ASSERT_NE(sent, std::string::npos);
  const int frames = std::atoi(said.c_str() + sent + 17);
  EXPECT_GE(frames, 4) << said;
  EXPECT_LE(frames, 9) << said;
}
