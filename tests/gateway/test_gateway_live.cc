// WS /api/v1/live-session against a running gateway and the local backend: flite speech in as
// Opus packets or PCM, the model's speech back as Opus (decoded here) or PCM, transcripts, tools
// (a background video through the gateway's durable queue), limits and refusals.
#include "gateway_test_util.h"
#include "codec.h"  // base64
#include "speech.h" // the local backend's flite synthesis

#include <opus.h>

#include <cmath>

namespace gemstream::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kInRate = 16000;

// Half a second of silence, the speech, then `after` of silence: a user pausing for the answer.
std::vector<std::int16_t> utterance(const std::string &text,
                                    std::chrono::milliseconds after = 1500ms) {
  std::vector<std::int16_t> pcm(kInRate / 2, 0);
  const auto speech = backend::synthesize_speech(text); // flite's rms voice, 16 kHz
  pcm.insert(pcm.end(), speech.begin(), speech.end());
  pcm.insert(pcm.end(), std::size_t(after.count()) * kInRate / 1000, 0);
  return pcm;
}

std::vector<std::string> opus_packets(const std::vector<std::int16_t> &pcm) {
  int err = 0;
  OpusEncoder *enc = opus_encoder_create(kInRate, 1, OPUS_APPLICATION_VOIP, &err);
  EXPECT_EQ(err, OPUS_OK);
  opus_encoder_ctl(enc, OPUS_SET_BITRATE(32000)); // what the kiosk page asks WebCodecs for
  std::vector<std::string> packets;
  unsigned char buf[1500];
  constexpr int kFrame = kInRate / 50;
  for (std::size_t at = 0; at + kFrame <= pcm.size(); at += kFrame) {
    const int n = opus_encode(enc, pcm.data() + at, kFrame, buf, sizeof buf);
    EXPECT_GT(n, 0);
    packets.emplace_back(reinterpret_cast<const char *>(buf), std::size_t(n));
  }
  opus_encoder_destroy(enc);
  return packets;
}

std::string protocols(const std::string &token) {
  return "Sec-WebSocket-Protocol: gemstream.v1, bearer." + token;
}

// What a conversation's socket delivered, message by message.
struct Received {
  std::vector<json> events;         // text messages, in order
  std::vector<std::size_t> audio_before; // per event: binary messages received before it
  std::vector<std::string> audio;   // binary messages
  std::string user_text, model_text; // the transcripts, pieces joined

  std::size_t count(const std::string &type) const {
    return std::size_t(std::count_if(events.begin(), events.end(),
                                     [&](const json &e) { return e.value("type", "") == type; }));
  }
  const json *first(const std::string &type) const {
    for (const auto &e : events)
      if (e.value("type", "") == type)
        return &e;
    return nullptr;
  }
};

// Reads messages until `done` says so or `timeout` passes.
void read_until(WsClient &ws, Received &r, const std::function<bool(const Received &)> &done,
                std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(r)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return;
    bool binary = false;
    auto m = ws.next(left, &binary);
    if (!m)
      return;
    if (binary) {
      r.audio.push_back(std::move(*m));
      continue;
    }
    json j = json::parse(*m, nullptr, false);
    ASSERT_TRUE(j.is_object()) << *m;
    if (j.value("type", "") == "transcript")
      (j.value("role", "") == "user" ? r.user_text : r.model_text) += j.value("text", "");
    r.events.push_back(std::move(j));
    r.audio_before.push_back(r.audio.size());
  }
}

bool turn_done(const Received &r) {
  return r.count("turn_complete") > 0;
}

std::string lower(std::string s) {
  for (auto &c : s)
    c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class GatewayLive : public ::testing::Test {
protected:
  TempDir dir_;
};

TEST_F(GatewayLive, SpokenOpusInOpusOut) {
  GatewayHarness h(dir_.path());
  h.start();
  const auto pcm = utterance("hello how are you");
  ASSERT_FALSE(pcm.empty());

  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101)
      << ws.response_head;
  Received r;
  read_until(ws, r, [](const Received &x) { return x.count("ready") > 0; }, 15s);
  const json *ready = r.first("ready");
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ((*ready)["input"]["encoding"], "opus");
  EXPECT_EQ((*ready)["output"],
            json({{"encoding", "opus"}, {"sampleRate", 24000}, {"channels", 1},
                  {"frameDurationMs", 20}}));

  // In real time, as a microphone would.
  const auto packets = opus_packets(pcm);
  auto next = std::chrono::steady_clock::now();
  for (const auto &p : packets) {
    ASSERT_TRUE(ws.send_binary(p));
    next += 20ms;
    std::this_thread::sleep_until(next);
  }
  read_until(ws, r, turn_done, 30s);
  ASSERT_TRUE(turn_done(r)) << "no turn_complete; events: " << json(r.events).dump();
  EXPECT_NE(lower(r.user_text).find("hello how are"), std::string::npos) << r.user_text;
  EXPECT_FALSE(r.model_text.empty());

  // Every binary message is one 20 ms Opus packet; decoded, they are the model's speech.
  ASSERT_GT(r.audio.size(), 25u);
  int err = 0;
  OpusDecoder *dec = opus_decoder_create(24000, 1, &err);
  ASSERT_EQ(err, OPUS_OK);
  std::vector<std::int16_t> out(5760);
  double energy = 0;
  std::size_t samples = 0;
  for (const auto &p : r.audio) {
    const auto *data = reinterpret_cast<const unsigned char *>(p.data());
    ASSERT_EQ(opus_packet_get_nb_samples(data, opus_int32(p.size()), 24000), 480);
    const int n = opus_decode(dec, data, opus_int32(p.size()), out.data(), int(out.size()), 0);
    ASSERT_EQ(n, 480);
    for (int i = 0; i < n; ++i)
      energy += double(out[std::size_t(i)]) * out[std::size_t(i)];
    samples += std::size_t(n);
  }
  opus_decoder_destroy(dec);
  EXPECT_GT(samples, 24000u / 2) << "less than half a second of speech";
  EXPECT_GT(std::sqrt(energy / double(samples)), 300.0) << "the decoded answer is silent";
  // The turn's last words (padded to a whole packet) came before turn_complete: nothing follows.
  const std::size_t answered = r.audio.size();
  read_until(ws, r, [](const Received &) { return false; }, 500ms);
  EXPECT_EQ(r.audio.size(), answered);
  EXPECT_EQ(r.events.back().value("type", ""), "turn_complete");
}

TEST_F(GatewayLive, PcmInPcmOutWithSamplesSplitAcrossMessages) {
  GatewayHarness h(dir_.path());
  h.start();
  const auto pcm = utterance("hello how are you");
  ASSERT_FALSE(pcm.empty());
  std::string bytes;
  for (const auto s : pcm) {
    bytes += char(std::uint16_t(s) & 0xff);
    bytes += char(std::uint16_t(s) >> 8);
  }

  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session?input=pcm&rate=16000&output=pcm",
                       {protocols(kAliceToken)}),
            101);
  // 999 bytes: every other message ends in the middle of a sample. Sent without pacing, before
  // the session is ready: the gateway holds it.
  for (std::size_t at = 0; at < bytes.size(); at += 999)
    ASSERT_TRUE(ws.send_binary(bytes.substr(at, 999)));
  // The microphone pauses: what is left of the last 40 ms message goes out too.
  ASSERT_TRUE(ws.send_text(R"({"type":"audio_end"})"));
  Received r;
  read_until(ws, r, turn_done, 30s);
  ASSERT_TRUE(turn_done(r)) << json(r.events).dump();
  const json *ready = r.first("ready");
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ((*ready)["input"], json({{"encoding", "pcm"}, {"sampleRate", 16000}}));
  EXPECT_EQ((*ready)["output"]["encoding"], "pcm");
  EXPECT_NE(lower(r.user_text).find("hello how are"), std::string::npos) << r.user_text;
  // Every byte reached the service, the samples cut across messages put back together.
  const auto counts = h.backend().live_audio();
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].received_bytes, bytes.size());
  std::size_t total = 0;
  for (const auto &a : r.audio) {
    EXPECT_EQ(a.size() % 2, 0u);
    total += a.size() / 2;
  }
  EXPECT_GT(total, 24000u / 2);
}

TEST_F(GatewayLive, TypedQuestionWithSearchGroundingAndCostInTheLedger) {
  GatewayHarness h(dir_.path());
  h.start();
  {
    WsClient ws;
    ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kBobToken)}), 101);
    ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"what's the latest on AI regulation?"})"));
    Received r;
    read_until(
        ws, r,
        [](const Received &x) { return x.count("grounding") > 0 && x.count("turn_complete") > 0; },
        40s);
    const json *grounding = r.first("grounding");
    ASSERT_NE(grounding, nullptr) << json(r.events).dump();
    ASSERT_FALSE((*grounding)["sources"].empty());
    for (const auto &s : (*grounding)["sources"])
      EXPECT_EQ(s["uri"].get<std::string>().rfind("https://", 0), 0u) << s;
    EXPECT_FALSE(r.model_text.empty());
  }
  // The conversation's tokens are priced in the ledger, under bob, once it has closed.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  json live_entry;
  while (std::chrono::steady_clock::now() < deadline && live_entry.is_null()) {
    const auto costs = h.get("/api/v1/costs", kBobToken).json_body();
    for (const auto &k : costs.value("totals", json::array()))
      if (k.value("kind", "") == "live")
        live_entry = k;
    if (live_entry.is_null())
      std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(live_entry.is_null()) << h.get("/api/v1/costs", kBobToken).body;
  EXPECT_GT(live_entry["usdNanos"].get<std::int64_t>(), 0);
  EXPECT_GT(live_entry["inputTokens"].get<std::int64_t>(), 0);
}

TEST_F(GatewayLive, BackgroundVideoGoesThroughTheDurableQueue) {
  GatewayHarness h(dir_.path());
  h.start();
  WsClient notes;
  ASSERT_EQ(notes.connect(h.port(), "/api/v1/notifications", {protocols(kAliceToken)}), 101);
  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
  Received r;
  ASSERT_TRUE(ws.send_text(
      R"({"type":"text","text":"make my chat background a peaceful beach sunset"})"));
  read_until(ws, r, turn_done, 40s);
  const json *consent = r.first("capability");
  ASSERT_NE(consent, nullptr) << json(r.events).dump();
  EXPECT_EQ((*consent)["event"], "consent-requested");
  EXPECT_EQ((*consent)["capability"], "generate_background_video");
  EXPECT_NE((*consent)["message"].get<std::string>().find("$"), std::string::npos);
  EXPECT_TRUE(h.get("/api/v1/media/jobs").json_body()["jobs"].empty()) << "nothing before a yes";

  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"yes"})"));
  std::string job_id;
  read_until(
      ws, r,
      [&](const Received &x) {
        for (const auto &e : x.events)
          if (e.value("type", "") == "capability" && e.value("event", "") == "finished")
            return true;
        return false;
      },
      60s);
  for (const auto &e : r.events)
    if (e.value("type", "") == "capability" && e.value("event", "") == "started")
      job_id = e.value("jobId", "");
  ASSERT_FALSE(job_id.empty()) << json(r.events).dump();
  // It is a job of the gateway's queue, owned by alice, and it succeeded.
  const json job = h.get("/api/v1/media/jobs/" + job_id).json_body();
  EXPECT_EQ(job["state"], "succeeded") << job;
  EXPECT_EQ(h.get("/api/v1/media/jobs/" + job_id, kBobToken).status, 404);
  const auto note = notes.next_event(5s);
  ASSERT_TRUE(note);
  EXPECT_EQ((*note)["type"], "video_generation_complete");
  EXPECT_EQ((*note)["jobId"], job_id);

  // The model is told, between its turns, and tells the user.
  read_until(
      ws, r, [](const Received &x) { return lower(x.model_text).find("is ready") != std::string::npos; },
      30s);
  EXPECT_NE(lower(r.model_text).find("peaceful beach sunset is ready"), std::string::npos)
      << r.model_text;
}

TEST_F(GatewayLive, SpeakingOverTheModelInterruptsIt) {
  GatewayHarness h(dir_.path());
  h.start();
  const auto pcm = utterance("hello how are you");
  ASSERT_FALSE(pcm.empty());
  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session?input=pcm&output=pcm",
                       {protocols(kAliceToken)}),
            101);
  Received r;
  // A long answer (the search result, read out in real time)...
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"what's the latest on AI regulation?"})"));
  read_until(ws, r, [](const Received &x) { return x.audio.size() >= 10; }, 30s);
  ASSERT_GE(r.audio.size(), 10u);
  ASSERT_EQ(r.count("turn_complete"), 0u);
  // ...that the user talks over, in real time, reading as the microphone streams.
  auto next = std::chrono::steady_clock::now();
  constexpr std::size_t kChunk = kInRate / 50;
  for (std::size_t at = 0; at + kChunk <= pcm.size(); at += kChunk) {
    std::string bytes;
    for (std::size_t i = at; i < at + kChunk; ++i) {
      bytes += char(std::uint16_t(pcm[i]) & 0xff);
      bytes += char(std::uint16_t(pcm[i]) >> 8);
    }
    ASSERT_TRUE(ws.send_binary(bytes));
    next += 20ms;
    read_until(ws, r, [&](const Received &) { return std::chrono::steady_clock::now() >= next; },
               std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::max(next - std::chrono::steady_clock::now(),
                            std::chrono::steady_clock::duration::zero())));
  }
  read_until(ws, r, [](const Received &x) { return x.count("turn_complete") >= 2; }, 30s);

  std::size_t interrupted = r.events.size();
  for (std::size_t i = 0; i < r.events.size(); ++i)
    if (r.events[i].value("type", "") == "interrupted") {
      interrupted = i;
      break;
    }
  ASSERT_LT(interrupted, r.events.size()) << json(r.events).dump();
  // The interrupted turn ends at once, with no more of its audio after the interruption...
  ASSERT_LT(interrupted + 1, r.events.size());
  std::size_t end = interrupted + 1;
  while (end < r.events.size() && r.events[end].value("type", "") != "turn_complete")
    ++end;
  ASSERT_LT(end, r.events.size());
  EXPECT_EQ(r.audio_before[end], r.audio_before[interrupted]);
  // ...and the model answers what the user said instead.
  EXPECT_NE(lower(r.user_text).find("hello how are"), std::string::npos) << r.user_text;
  EXPECT_GT(r.audio.size(), r.audio_before[end]) << "no spoken answer to the new question";
}

TEST_F(GatewayLive, UpstreamDropIsResumedOnTheSameSocket) {
  GatewayHarness h(dir_.path());
  h.start();
  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
  Received r;
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"hello how are you"})"));
  read_until(ws, r, turn_done, 30s);
  ASSERT_TRUE(turn_done(r)) << json(r.events).dump();

  h.backend().close_live_sessions(1006, "");
  read_until(
      ws, r,
      [](const Received &x) {
        for (const auto &e : x.events)
          if (e.value("type", "") == "state" && e.value("state", "") == "ready")
            return true;
        return false;
      },
      15s);
  std::vector<std::string> states;
  for (const auto &e : r.events)
    if (e.value("type", "") == "state")
      states.push_back(e.value("state", ""));
  EXPECT_EQ(states, (std::vector<std::string>{"reconnecting", "ready"}));
  EXPECT_EQ(r.count("ready"), 1u) << "the resumed session is not a new conversation";
  EXPECT_EQ(r.count("error"), 0u);

  const std::size_t turns = r.count("turn_complete");
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"thank you"})"));
  read_until(ws, r, [&](const Received &x) { return x.count("turn_complete") > turns; }, 40s);
  EXPECT_GT(r.count("turn_complete"), turns) << json(r.events).dump();
}

TEST_F(GatewayLive, RefusedUpstreamSetupIsAnErrorForTheClient) {
  GatewayHarness h(dir_.path(), {{"live", {{"max_sessions_per_user", 1}}}});
  h.start();
  h.backend().fail_next_live_setup(1008, "API key not valid. Please pass a valid API key.");
  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
  Received r;
  read_until(ws, r, [](const Received &x) { return x.count("error") > 0; }, 15s);
  const json *error = r.first("error");
  ASSERT_NE(error, nullptr) << json(r.events).dump();
  EXPECT_EQ((*error)["reason"], "upstream_error");
  EXPECT_NE((*error)["message"].get<std::string>().find("Gemini Live"), std::string::npos);
  EXPECT_FALSE(ws.next(5s));
  EXPECT_EQ(ws.close_code, 1011);
  // The place it held is free again.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  std::unique_ptr<WsClient> again;
  Received x;
  while (std::chrono::steady_clock::now() < deadline && !x.first("ready")) {
    again = std::make_unique<WsClient>();
    x = Received();
    ASSERT_EQ(again->connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
    read_until(*again, x, [](const Received &y) { return !y.events.empty(); }, 10s);
  }
  EXPECT_NE(x.first("ready"), nullptr) << json(x.events).dump();
}

TEST_F(GatewayLive, TheDailyBudgetIsCheckedBeforeAndDuringAConversation) {
  // bob: less than a minute of conversation left; alice: $5.
  GatewayHarness h(dir_.path(), {{"budget", {{"daily_usd", 5}, {"users", {{"bob", 0.001}}}}}});
  h.start();
  {
    WsClient ws;
    ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kBobToken)}), 101);
    ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"hello how are you"})"));
    Received r;
    read_until(ws, r, [](const Received &x) { return x.count("error") > 0; }, 10s);
    const json *error = r.first("error");
    ASSERT_NE(error, nullptr) << json(r.events).dump();
    EXPECT_EQ((*error)["reason"], "budget_exceeded");
    EXPECT_NE((*error)["message"].get<std::string>().find("a minute of live conversation"),
              std::string::npos)
        << *error;
    EXPECT_FALSE(ws.next(5s));
    EXPECT_EQ(ws.close_code, 1008);
    // The upstream session never started: nothing was said, heard or paid for.
    EXPECT_EQ(r.events.size(), 1u) << json(r.events).dump();
    EXPECT_EQ(r.audio.size(), 0u);
    EXPECT_TRUE(h.backend().live_audio().empty());
  }

  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
  Received r;
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"hello how are you"})"));
  read_until(ws, r, turn_done, 30s);
  ASSERT_TRUE(turn_done(r)) << json(r.events).dump();
  ASSERT_EQ(r.count("error"), 0u);
  // Alice spends the rest of today's budget elsewhere; the conversation ends at its next turn.
  {
    CostLedger ledger(h.ledger_path());
    CostEntry video;
    video.user = "alice";
    video.kind = CostKind::Video;
    video.model = "veo-3.0-generate-001";
    video.usd_nanos = 5'000'000'000;
    ledger.record(video);
  }
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"thank you"})"));
  read_until(ws, r, [](const Received &x) { return x.count("error") > 0; }, 30s);
  const json *error = r.first("error");
  ASSERT_NE(error, nullptr) << json(r.events).dump();
  EXPECT_EQ((*error)["reason"], "budget_exceeded");
  EXPECT_NE((*error)["message"].get<std::string>().find("this live conversation so far"),
            std::string::npos)
      << *error;
  // The model stops at once, whatever the browser does with its socket.
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (h.backend().live_session_count() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(h.backend().live_session_count(), 0u);
  EXPECT_FALSE(ws.next(5s));
  EXPECT_EQ(ws.close_code, 1008);
}

TEST_F(GatewayLive, WebcamFramesPingAndWhatIsDropped) {
  GatewayHarness h(dir_.path());
  h.start();
  const fs::path jpeg_file = dir_.path() / "frame.jpg";
  ASSERT_EQ(std::system(("ffmpeg -loglevel error -y -f lavfi -i color=c=red:s=160x120 "
                         "-frames:v 1 " +
                         jpeg_file.string())
                            .c_str()),
            0);
  const std::string frame = json{{"type", "video_frame"},
                                 {"mimeType", "image/jpeg"},
                                 {"data", codec::base64_encode(slurp(jpeg_file))}}
                                .dump();
  WsClient ws;
  ASSERT_EQ(ws.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
  Received r;
  ASSERT_TRUE(ws.send_text(R"({"type":"ping"})"));
  read_until(ws, r, [](const Received &x) { return x.count("pong") > 0; }, 10s);
  ASSERT_EQ(r.count("pong"), 1u);

  // Empty Opus packets are dropped, not decoded into concealment audio.
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(ws.send_binary(""));
  // Three frames reach the model; one sent 50 ms after another is dropped.
  ASSERT_TRUE(ws.send_text(frame));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(ws.send_text(frame));
  for (int i = 0; i < 2; ++i) {
    std::this_thread::sleep_for(300ms);
    ASSERT_TRUE(ws.send_text(frame));
  }
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"what do you see"})"));
  // The answer's first sentence is enough (the rest describes the frames for a while).
  read_until(
      ws, r, [](const Received &x) { return x.model_text.find(" seconds.") != std::string::npos; },
      30s);
  EXPECT_NE(r.model_text.find("You have sent me 3 frames"), std::string::npos) << r.model_text;
  EXPECT_EQ(r.count("error"), 0u);
  ASSERT_EQ(h.backend().live_audio().size(), 1u);
  EXPECT_EQ(h.backend().live_audio()[0].received_bytes, 0u);

  // Typed turns faster than one per 250 ms are refused.
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"thank you"})"));
  ASSERT_TRUE(ws.send_text(R"({"type":"text","text":"thank you"})"));
  read_until(ws, r, [](const Received &x) { return x.count("error") > 0; }, 10s);
  ASSERT_NE(r.first("error"), nullptr);
  EXPECT_EQ((*r.first("error"))["reason"], "rate_limited");
  EXPECT_FALSE(ws.next(10s));
  EXPECT_EQ(ws.close_code, 1008);
}

TEST_F(GatewayLive, RefusalsAndLimits) {
  GatewayHarness h(dir_.path(), {{"live", {{"max_sessions_per_user", 1}}}});
  h.start();

  WsClient anonymous;
  EXPECT_EQ(anonymous.connect(h.port(), "/api/v1/live-session"), 401);

  WsClient bad_query;
  ASSERT_EQ(bad_query.connect(h.port(), "/api/v1/live-session?input=mp3", {protocols(kAliceToken)}),
            101);
  auto m = bad_query.next_event(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["type"], "error");
  EXPECT_EQ((*m)["reason"], "invalid_argument");
  EXPECT_FALSE(bad_query.next(5s));
  EXPECT_EQ(bad_query.close_code, 1008);

  WsClient first;
  ASSERT_EQ(first.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
  Received r;
  read_until(first, r, [](const Received &x) { return x.count("ready") > 0; }, 15s);
  ASSERT_EQ(r.count("ready"), 1u);
  WsClient second;
  ASSERT_EQ(second.connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
  m = second.next_event(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)["reason"], "too_many_sessions");
  EXPECT_FALSE(second.next(5s));
  EXPECT_EQ(second.close_code, 1013);

  // Binary messages that are not Opus: a clear error, then the socket closes.
  for (int i = 0; i < 30; ++i)
    first.send_binary(std::string(7, '\xff'));
  read_until(first, r, [](const Received &x) { return x.count("error") > 0; }, 5s);
  const json *error = r.first("error");
  ASSERT_NE(error, nullptr);
  EXPECT_EQ((*error)["reason"], "invalid_audio");
  EXPECT_NE((*error)["message"].get<std::string>().find("input=pcm"), std::string::npos);
  EXPECT_FALSE(first.next(5s));
  EXPECT_EQ(first.close_code, 1003);

  // A message of an unknown type; a frame that is not a JPEG.
  for (const char *bad : {R"({"type":"dance"})",
                          R"({"type":"video_frame","mimeType":"image/jpeg","data":"aGVsbG8="})"}) {
    // The closed conversation above frees its place a moment later.
    const auto wait_free = std::chrono::steady_clock::now() + 5s;
    std::unique_ptr<WsClient> ws;
    Received x;
    for (;;) {
      ws = std::make_unique<WsClient>();
      x = Received();
      ASSERT_EQ(ws->connect(h.port(), "/api/v1/live-session", {protocols(kAliceToken)}), 101);
      read_until(*ws, x, [](const Received &y) { return !y.events.empty(); }, 5s);
      if (x.first("ready"))
        break;
      ASSERT_LT(std::chrono::steady_clock::now(), wait_free) << json(x.events).dump();
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(ws->send_text(bad));
    read_until(*ws, x, [](const Received &y) { return y.count("error") > 0; }, 5s);
    ASSERT_NE(x.first("error"), nullptr) << bad;
    EXPECT_EQ((*x.first("error"))["reason"], "invalid_message") << bad;
    EXPECT_FALSE(ws->next(5s));
    EXPECT_EQ(ws->close_code, 1003) << bad;
  }
}

} // namespace
} // namespace gemstream::testing
