// LiveSession against a scripted loopback WebSocket server: what goes on the wire, when, and
// what the session does on goAway, drops, fatal closes and close().
#include "codec.h"
#include "common/scripted_server.h"
#include "common/ws_test_server.h"
#include "live_codec.h"

#include "gemstream/live.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace gemstream {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::WsConnection;
using testing::WsTestServer;

constexpr const char *kKey = "test-key-123";
constexpr milliseconds kWait{5000};

// Everything the callbacks report, in order, thread-safe.
class Recorder {
public:
  LiveCallbacks callbacks() {
    LiveCallbacks cb;
    cb.on_state = [this](LiveState s) { add(std::string("state:") + to_string(s)); };
    cb.on_setup_complete = [this](const std::string &id) { add("setup_complete:" + id); };
    cb.on_audio = [this](std::vector<std::int16_t> pcm, int rate) {
      std::lock_guard lock(mutex_);
      audio_.insert(audio_.end(), pcm.begin(), pcm.end());
      push_locked("audio:" + std::to_string(pcm.size()) + "@" + std::to_string(rate));
    };
    cb.on_text = [this](const std::string &t) { add("text:" + t); };
    cb.on_input_transcription = [this](const std::string &t, bool f) {
      add("input_transcription:" + t + (f ? "|finished" : ""));
    };
    cb.on_output_transcription = [this](const std::string &t, bool f) {
      add("output_transcription:" + t + (f ? "|finished" : ""));
    };
    cb.on_interrupted = [this] { add("interrupted"); };
    cb.on_generation_complete = [this] { add("generation_complete"); };
    cb.on_turn_complete = [this](const std::string &r) { add("turn_complete:" + r); };
    cb.on_tool_call = [this](const std::vector<LiveFunctionCall> &calls) {
      for (const auto &c : calls)
        add("tool_call:" + c.id + ":" + c.name + ":" + c.args_json);
      if (on_tool_call)
        on_tool_call(calls);
    };
    cb.on_tool_call_cancellation = [this](const std::vector<std::string> &ids) {
      for (const auto &id : ids)
        add("cancel:" + id);
    };
    cb.on_grounding = [this](const std::string &g) { add("grounding:" + g); };
    cb.on_usage = [this](const LiveUsage &u) {
      add("usage:" + std::to_string(u.total_token_count));
    };
    cb.on_go_away = [this](milliseconds left) { add("go_away:" + std::to_string(left.count())); };
    cb.on_resumption_update = [this](const LiveResumptionUpdate &u) {
      add("resumption:" + u.new_handle + (u.resumable ? "" : "|not-resumable"));
    };
    cb.on_error = [this](const Error &e) {
      std::lock_guard lock(mutex_);
      error_ = e;
      push_locked(std::string("error:") + to_string(e.kind()));
    };
    cb.on_warning = [this](const std::string &w) { add("warning:" + w); };
    return cb;
  }

  std::function<void(const std::vector<LiveFunctionCall> &)> on_tool_call;

  bool wait_for(const std::function<bool(const std::vector<std::string> &)> &pred,
                milliseconds timeout = kWait) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return pred(events_); });
  }
  // Waits for an event equal to `event`, or starting with it when it ends in ':'.
  bool wait_event(const std::string &event, milliseconds timeout = kWait) {
    return wait_for([&](const auto &evs) { return has(evs, event); }, timeout);
  }
  static bool has(const std::vector<std::string> &evs, const std::string &event) {
    return std::any_of(evs.begin(), evs.end(),
                       [&](const std::string &e) { return matches(e, event); });
  }
  static bool matches(const std::string &e, const std::string &event) {
    return event.back() == ':' ? e.rfind(event, 0) == 0 : e == event;
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<std::int16_t> audio() const {
    std::lock_guard lock(mutex_);
    return audio_;
  }
  std::optional<Error> error() const {
    std::lock_guard lock(mutex_);
    return error_;
  }
  // Events matching the prefix, in order.
  std::vector<std::string> filtered(const std::string &prefix) const {
    std::vector<std::string> out;
    for (const auto &e : events())
      if (e.rfind(prefix, 0) == 0)
        out.push_back(e);
    return out;
  }

private:
  void add(std::string e) {
    std::lock_guard lock(mutex_);
    push_locked(std::move(e));
  }
  void push_locked(std::string e) {
    events_.push_back(std::move(e));
    cv_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::vector<std::int16_t> audio_;
  std::optional<Error> error_;
};

LiveConfig test_config() {
  LiveConfig c;
  c.reconnect_backoff_initial = milliseconds(20);
  c.reconnect_backoff_max = milliseconds(100);
  c.connect_timeout = milliseconds(3000);
  return c;
}

Endpoint endpoint_for(const std::string &base_url, std::string key = kKey) {
  Endpoint ep;
  ep.base_url = base_url;
  ep.api_key = std::move(key);
  return ep;
}

// Messages the client sent on a connection after its setup.
std::vector<json> inputs(const WsConnection &c) {
  auto all = c.json_messages();
  if (!all.empty() && all.front().contains("setup"))
    all.erase(all.begin());
  return all;
}

bool is_audio(const json &m) {
  return m.contains("realtimeInput") && m["realtimeInput"].contains("audio");
}

std::vector<std::int16_t> samples_of(const json &m) {
  const std::string bytes =
      codec::base64_decode(m["realtimeInput"]["audio"]["data"].get<std::string>());
  std::vector<std::int16_t> pcm(bytes.size() / 2);
  for (std::size_t i = 0; i < pcm.size(); ++i)
    pcm[i] = static_cast<std::int16_t>(static_cast<std::uint8_t>(bytes[2 * i]) |
                                       (static_cast<std::uint8_t>(bytes[2 * i + 1]) << 8));
  return pcm;
}

std::vector<std::int16_t> audio_of(const WsConnection &c) {
  std::vector<std::int16_t> out;
  for (const json &m : inputs(c))
    if (is_audio(m)) {
      auto s = samples_of(m);
      out.insert(out.end(), s.begin(), s.end());
    }
  return out;
}

std::size_t audio_message_count(const WsConnection &c) {
  auto msgs = inputs(c);
  return static_cast<std::size_t>(std::count_if(msgs.begin(), msgs.end(), is_audio));
}

std::vector<std::int16_t> ramp(int from, int count) {
  std::vector<std::int16_t> v(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i)
    v[static_cast<std::size_t>(i)] = static_cast<std::int16_t>(from + i);
  return v;
}

std::string pcm_base64(const std::vector<std::int16_t> &pcm) {
  std::string bytes;
  for (std::int16_t s : pcm) {
    bytes += static_cast<char>(static_cast<std::uint16_t>(s) & 0xff);
    bytes += static_cast<char>(static_cast<std::uint16_t>(s) >> 8);
  }
  return codec::base64_encode(bytes);
}

// Index of the first event starting with `prefix`, or -1.
int event_index(const WsConnection &c, const std::string &prefix, int from = 0) {
  for (std::size_t i = static_cast<std::size_t>(from); i < c.events.size(); ++i)
    if (c.events[i].rfind(prefix, 0) == 0)
      return static_cast<int>(i);
  return -1;
}

auto has_connections(std::size_t n) {
  return [n](const std::vector<WsConnection> &cs) { return cs.size() >= n; };
}

auto conn_messages(int id, std::size_t n) {
  return [id, n](const std::vector<WsConnection> &cs) {
    return cs.size() > static_cast<std::size_t>(id) &&
           cs[static_cast<std::size_t>(id)].received.size() >= n;
  };
}

auto conn_audio_samples(int id, std::size_t n) {
  return [id, n](const std::vector<WsConnection> &cs) {
    return cs.size() > static_cast<std::size_t>(id) &&
           audio_of(cs[static_cast<std::size_t>(id)]).size() >= n;
  };
}

struct Harness {
  explicit Harness(WsTestServer::Options options = {}, LiveConfig config = test_config(),
                   std::string key = kKey)
      : server(std::move(options)), config(std::move(config)) {
    session = std::make_unique<LiveSession>(endpoint_for(server.base_url(), std::move(key)),
                                            this->config, recorder.callbacks());
  }
  void connect_ready() {
    session->connect();
    ASSERT_TRUE(recorder.wait_event("state:Ready")) << ::testing::PrintToString(recorder.events());
  }

  Recorder recorder; // outlives the session: callbacks point into it
  WsTestServer server;
  LiveConfig config;
  std::unique_ptr<LiveSession> session;
};

// ---- connection and setup -----------------------------------------------------------------------

TEST(LiveSession, KeyTravelsInTheHeaderAndSetupComesFirst) {
  WsTestServer::Options opts;
  opts.session_id = "sess-1";
  Harness h(opts);
  EXPECT_EQ(h.session->state(), LiveState::Idle);
  h.connect_ready();
  EXPECT_TRUE(h.recorder.wait_event("setup_complete:sess-1"));
  EXPECT_EQ(h.recorder.filtered("state:"),
            (std::vector<std::string>{"state:Connecting", "state:SettingUp", "state:Ready"}));

  const auto conns = h.server.connections();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0].path,
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent");
  EXPECT_EQ(conns[0].query, "");
  EXPECT_EQ(conns[0].api_key, std::optional<std::string>(kKey));
  ASSERT_EQ(conns[0].received.size(), 1u);
  EXPECT_FALSE(conns[0].received[0].binary); // compact JSON in a text frame
  EXPECT_EQ(json::parse(conns[0].received[0].data), live_codec::encode_setup(h.config, {}));
  EXPECT_EQ(conns[0].received[0].data.find('\n'), std::string::npos);
}

TEST(LiveSession, NoKeyHeaderWithoutAKey) {
  Harness h({}, test_config(), "");
  h.connect_ready();
  const auto conns = h.server.connections();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_FALSE(conns[0].api_key.has_value());
}

TEST(LiveSession, NothingIsSentBeforeSetupComplete) {
  WsTestServer::Options opts;
  opts.auto_setup_complete = false;
  Harness h(opts);
  h.session->connect();
  EXPECT_TRUE(h.session->send_text("early"));
  const auto pcm = ramp(0, 640);
  EXPECT_TRUE(h.session->send_audio(pcm.data(), pcm.size()));
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 1)));
  EXPECT_TRUE(h.recorder.wait_event("state:SettingUp"));
  EXPECT_TRUE(h.session->send_text("while setting up")); // with the socket open
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_EQ(h.server.connections()[0].received.size(), 1u) << "input before setupComplete";

  h.server.send_json(0, {{"setupComplete", json::object()}});
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 4)));
  const WsConnection c = h.server.connections()[0];
  const auto in = inputs(c);
  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[0], live_codec::encode_text("early"));
  EXPECT_EQ(samples_of(in[1]), pcm);
  EXPECT_EQ(in[2], live_codec::encode_text("while setting up"));
  const int tx = event_index(c, "tx ");
  EXPECT_GT(tx, event_index(c, "rx {\"setup\""));
  EXPECT_LT(tx, event_index(c, "rx {\"realtimeInput\""));
}

// ---- input --------------------------------------------------------------------------------------

TEST(LiveSession, AudioIsCutIntoChunksOfTheConfiguredDuration) {
  Harness h;
  h.connect_ready();
  const auto pcm = ramp(-8000, 16100); // 1.00625 s at 16 kHz
  for (std::size_t off = 0; off < pcm.size(); off += 333)
    ASSERT_TRUE(
        h.session->send_audio(pcm.data() + off, std::min<std::size_t>(333, pcm.size() - off)));
  ASSERT_TRUE(h.session->audio_stream_end()); // flushes the partial chunk first

  ASSERT_TRUE(h.server.wait_for([](const auto &cs) {
    return !cs.empty() && !inputs(cs[0]).empty() &&
           inputs(cs[0]).back().contains("realtimeInput") &&
           inputs(cs[0]).back()["realtimeInput"].contains("audioStreamEnd");
  }));
  const auto in = inputs(h.server.connections()[0]);
  ASSERT_EQ(in.size(), 27u); // 25 full chunks, the 100-sample rest, audioStreamEnd
  for (std::size_t i = 0; i < 25; ++i) {
    EXPECT_EQ(in[i]["realtimeInput"]["audio"]["mimeType"], "audio/pcm;rate=16000");
    EXPECT_EQ(samples_of(in[i]).size(), 640u) << "40 ms at 16 kHz";
  }
  EXPECT_EQ(samples_of(in[25]).size(), 100u);
  EXPECT_EQ(in[26], live_codec::encode_audio_stream_end());
  EXPECT_EQ(audio_of(h.server.connections()[0]), pcm);
}

TEST(LiveSession, ChunkDurationIsConfigurable) {
  LiveConfig config = test_config();
  config.audio_chunk = milliseconds(100);
  Harness h({}, config);
  h.connect_ready();
  const auto pcm = ramp(0, 3200);
  ASSERT_TRUE(h.session->send_audio(pcm.data(), pcm.size()));
  ASSERT_TRUE(h.server.wait_for(conn_audio_samples(0, 3200)));
  const auto in = inputs(h.server.connections()[0]);
  ASSERT_EQ(in.size(), 2u);
  EXPECT_EQ(samples_of(in[0]).size(), 1600u);
  EXPECT_EQ(samples_of(in[1]).size(), 1600u);
}

TEST(LiveSession, ManualActivityMarkersNeedAutomaticDetectionOff) {
  {
    Harness h;
    EXPECT_THROW(h.session->activity_start(), Error);
    EXPECT_THROW(h.session->activity_end(), Error);
  }
  LiveConfig config = test_config();
  config.activity_detection.automatic = false;
  Harness h({}, config);
  h.connect_ready();
  const auto pcm = ramp(0, 700);
  ASSERT_TRUE(h.session->activity_start());
  ASSERT_TRUE(h.session->send_audio(pcm.data(), pcm.size()));
  ASSERT_TRUE(h.session->activity_end());
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 5)));
  const WsConnection c = h.server.connections()[0];
  EXPECT_EQ(c.json_messages()[0]["setup"]["realtimeInputConfig"]["automaticActivityDetection"]
                             ["disabled"],
            true);
  const auto in = inputs(c);
  ASSERT_EQ(in.size(), 4u);
  EXPECT_EQ(in[0], live_codec::encode_activity_start());
  EXPECT_EQ(samples_of(in[1]).size(), 640u);
  EXPECT_EQ(samples_of(in[2]).size(), 60u);
  EXPECT_EQ(in[3], live_codec::encode_activity_end());
}

TEST(LiveSession, LargeVideoFramesGoOutInSeveralFrames) {
  Harness h;
  h.connect_ready();
  std::string jpeg(200 * 1024, '\0');
  std::mt19937 rng(7);
  for (char &c : jpeg)
    c = static_cast<char>(rng());
  jpeg[0] = '\xff';
  ASSERT_TRUE(h.session->send_video_jpeg(jpeg));
  ASSERT_TRUE(h.session->send_text("after"));
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 3)));
  const WsConnection c = h.server.connections()[0];
  ASSERT_EQ(c.received.size(), 3u);
  EXPECT_GT(c.received[1].frames, 1);
  const json video = json::parse(c.received[1].data);
  EXPECT_EQ(video["realtimeInput"]["video"]["mimeType"], "image/jpeg");
  EXPECT_EQ(codec::base64_decode(video["realtimeInput"]["video"]["data"].get<std::string>()), jpeg);
  EXPECT_EQ(json::parse(c.received[2].data), live_codec::encode_text("after"));
}

TEST(LiveSession, BufferedAudioIsBoundedAndDropsTheOldest) {
  WsTestServer::Options opts;
  opts.auto_setup_complete = false;
  LiveConfig config = test_config();
  config.max_buffered_audio = milliseconds(200);
  Harness h(opts, config);
  h.session->connect();
  const auto pcm = ramp(0, 16000);
  ASSERT_TRUE(h.session->send_audio(pcm.data(), pcm.size()));
  EXPECT_EQ(h.session->stats().dropped_audio_samples, 12800u);
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 1)));
  h.server.send_json(0, {{"setupComplete", json::object()}});
  ASSERT_TRUE(h.server.wait_for(conn_audio_samples(0, 3200)));
  EXPECT_EQ(audio_of(h.server.connections()[0]), ramp(12800, 3200));
  EXPECT_TRUE(h.recorder.wait_event("warning:dropped 800 ms of input audio:"));
}

// ---- server messages ----------------------------------------------------------------------------

TEST(LiveSession, ModelAudioTextTranscriptsAndTurnEvents) {
  Harness h;
  h.connect_ready();
  const auto speech = ramp(-2400, 4800);
  json audio;
  audio["serverContent"]["modelTurn"]["parts"] = json::array(
      {{{"inlineData", {{"mimeType", "audio/pcm;rate=24000"}, {"data", pcm_base64(speech)}}}}});
  h.server.send_json(0, audio, /*frames=*/3);
  // A text frame with compact JSON, as a proxy might send.
  h.server.send(
      0,
      R"({"serverContent":{"modelTurn":{"parts":[{"text":"hi"}]},"outputTranscription":{"text":"hi"}}})",
      /*binary=*/false);
  h.server.send_json(
      0,
      json::parse(R"({"serverContent":{"inputTranscription":{"text":"stop","finished":true}}})"));
  h.server.send_json(0, json::parse(R"({"serverContent":{"interrupted":true}})"));
  h.server.send_json(
      0,
      json::parse(
          R"({"serverContent":{"turnComplete":true},"usageMetadata":{"totalTokenCount":"77","responseTokenCount":70}})"));
  ASSERT_TRUE(h.recorder.wait_event("usage:77"));

  std::vector<std::string> turn;
  for (const auto &e : h.recorder.events())
    if (e.rfind("state:", 0) != 0 && e.rfind("setup_complete:", 0) != 0)
      turn.push_back(e);
  EXPECT_EQ(turn,
            (std::vector<std::string>{"audio:4800@24000", "text:hi", "output_transcription:hi",
                                      "input_transcription:stop|finished", "interrupted",
                                      "turn_complete:", "usage:77"}));
  EXPECT_EQ(h.recorder.audio(), speech);
  const auto conns = h.server.connections();
  EXPECT_EQ(conns[0].received.size(), 1u); // the client answered nothing
}

TEST(LiveSession, ToolCallAnsweredFromTheCallback) {
  Harness h;
  h.recorder.on_tool_call = [&](const std::vector<LiveFunctionCall> &calls) {
    // On the network thread: must neither block nor deadlock.
    h.session->send_tool_response({{calls[0].id, calls[0].name, R"({"result":"sunny"})"}});
  };
  h.connect_ready();
  h.server.send_json(
      0,
      json::parse(
          R"({"toolCall":{"functionCalls":[{"id":"call-1","name":"get_weather","args":{"city":"Oslo"}}]}})"));
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 2)));
  EXPECT_TRUE(
      Recorder::has(h.recorder.events(), R"(tool_call:call-1:get_weather:{"city":"Oslo"})"));
  EXPECT_EQ(inputs(h.server.connections()[0]).at(0),
            json::parse(R"({"toolResponse":{"functionResponses":[
                {"id":"call-1","name":"get_weather","response":{"result":"sunny"}}]}})"));
}

TEST(LiveSession, MalformedMessagesAreCountedAndSkipped) {
  Harness h;
  h.connect_ready();
  h.server.send(0, "not json at all");
  h.server.send_json(0, json::parse(R"({"serverContent":5})"));
  h.server.send_json(
      0, json::parse(R"({"serverContent":{"modelTurn":{"parts":[{"text":"still here"}]}}})"));
  ASSERT_TRUE(h.recorder.wait_event("text:still here"));
  EXPECT_EQ(h.session->malformed_count(), 2u);
  EXPECT_EQ(h.session->stats().malformed_messages, 2u);
  EXPECT_EQ(h.recorder.filtered("warning:ignored malformed Live message").size(), 2u);
  EXPECT_EQ(h.session->state(), LiveState::Ready);
}

// A serverContent whose only modelTurn part carries `base64` as 24 kHz audio.
json model_audio_message(std::string base64) {
  return {{"serverContent",
           {{"modelTurn",
             {{"parts", json::array({{{"inlineData",
                                       {{"mimeType", "audio/pcm;rate=24000"},
                                        {"data", std::move(base64)}}}}})}}}}}};
}

TEST(LiveSession, OversizedServerMessagesAreSkippedAndCounted) {
  LiveConfig config = test_config();
  config.max_message_bytes = 256 * 1024;
  Harness h({}, config);
  h.connect_ready();
  // Over the limit: in one frame, and in 16 fragments. Neither is held whole nor delivered.
  const json oversized = model_audio_message(std::string(400 * 1024, 'A'));
  h.server.send_json(0, oversized);
  h.server.send_json(0, oversized, 16);
  // Under the limit, a large audio part arrives whole.
  const auto big = ramp(-20000, 90000); // 180 000 bytes of PCM, 240 000 of base64
  h.server.send_json(0, model_audio_message(pcm_base64(big)));
  // A broken part costs only itself: the other part and the turn's end still count.
  h.server.send_json(0, json::parse(R"({"serverContent":{"modelTurn":{"parts":[
      {"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"@@@@"}},
      {"text":"after the broken part"}]},"turnComplete":true}})"));
  h.server.send_json(
      0, json::parse(R"({"serverContent":{"modelTurn":{"parts":[{"text":"still here"}]}}})"));
  ASSERT_TRUE(h.recorder.wait_event("text:still here"));

  EXPECT_EQ(h.recorder.filtered("audio:"), std::vector<std::string>{"audio:90000@24000"});
  EXPECT_EQ(h.recorder.audio(), big);
  EXPECT_TRUE(Recorder::has(h.recorder.events(), "text:after the broken part"));
  EXPECT_TRUE(Recorder::has(h.recorder.events(), "turn_complete:"));
  const LiveStats stats = h.session->stats();
  EXPECT_EQ(stats.malformed_messages, 3u);
  EXPECT_EQ(stats.messages_received, 6u); // setupComplete and the five above
  const auto warnings = h.recorder.filtered("warning:");
  ASSERT_EQ(warnings.size(), 3u);
  for (int i : {0, 1})
    EXPECT_NE(warnings[i].find("larger than 262144 bytes (LiveConfig::max_message_bytes)"),
              std::string::npos)
        << warnings[i];
  EXPECT_NE(warnings[2].find("serverContent.modelTurn.parts[0].inlineData.data"), std::string::npos)
      << warnings[2];
  EXPECT_EQ(h.session->state(), LiveState::Ready);
}

// ---- resumption and reconnection ----------------------------------------------------------------

TEST(LiveSession, GoAwayReconnectsWithTheNewestHandleAndLosesNoInput) {
  Harness h;
  h.connect_ready();

  const auto a = ramp(0, 3200); // five 40 ms chunks
  ASSERT_TRUE(h.session->send_audio(a.data(), a.size()));
  ASSERT_TRUE(h.server.wait_for(conn_audio_samples(0, 3200)));
  h.server.send_json(
      0, json::parse(R"({"sessionResumptionUpdate":{"newHandle":"h-0","resumable":true}})"));
  h.server.send_json(
      0, json::parse(R"({"sessionResumptionUpdate":{"newHandle":"h-1","resumable":true}})"));
  ASSERT_TRUE(h.recorder.wait_event("resumption:h-1"));

  const auto b = ramp(3200, 3200); // written after h-1: must be sent again
  ASSERT_TRUE(h.session->send_audio(b.data(), b.size()));
  ASSERT_TRUE(h.server.wait_for(conn_audio_samples(0, 6400)));
  h.server.send_json(0, json::parse(R"({"sessionResumptionUpdate":{"resumable":false}})"));
  ASSERT_TRUE(h.recorder.wait_event("resumption:|not-resumable"));

  h.server.set_auto_setup_complete(false);
  h.server.send_json(0, json::parse(R"({"goAway":{"timeLeft":"30s"}})"));
  ASSERT_TRUE(h.recorder.wait_event("go_away:30000"));
  ASSERT_TRUE(h.server.wait_for(conn_messages(1, 1)));
  ASSERT_TRUE(
      h.server.wait_for([](const auto &cs) { return cs[0].client_close_code.has_value(); }));
  EXPECT_EQ(h.server.connections()[0].client_close_code, std::optional<int>(1000));
  EXPECT_EQ(h.server.connections()[1].json_messages()[0]["setup"]["sessionResumption"],
            json({{"handle", "h-1"}}));

  // Captured while the new connection is being set up.
  const auto c = ramp(6400, 3200);
  ASSERT_TRUE(h.session->send_audio(c.data(), c.size()));
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_EQ(h.server.connections()[1].received.size(), 1u) << "input before setupComplete";

  h.server.send_json(1, {{"setupComplete", json::object()}});
  ASSERT_TRUE(h.server.wait_for(conn_audio_samples(1, 6400)));
  const WsConnection second = h.server.connections()[1];
  EXPECT_EQ(audio_of(second), ramp(3200, 6400)) << "replay of b, then c, in order";
  EXPECT_LT(event_index(second, "tx "), event_index(second, "rx {\"realtimeInput\""));
  EXPECT_EQ(audio_message_count(h.server.connections()[0]), 10u);

  ASSERT_TRUE(h.recorder.wait_for(
      [](const auto &evs) { return std::count(evs.begin(), evs.end(), "state:Ready") == 2; }));
  const LiveStats stats = h.session->stats();
  EXPECT_EQ(stats.reconnects, 1u);
  EXPECT_EQ(stats.replayed_messages, 5u);
  EXPECT_EQ(stats.dropped_audio_samples, 0u);
  EXPECT_TRUE(h.recorder.filtered("warning:").empty()) << "a planned reconnect is no fault";
  EXPECT_EQ(h.server.connection_count(), 2u);
}

TEST(LiveSession, GoAwayDuringATurnWaitsForTheTurnToComplete) {
  Harness h;
  h.connect_ready();
  h.server.send_json(
      0, json::parse(R"({"serverContent":{"modelTurn":{"parts":[{"text":"long answer"}]}}})"));
  h.server.send_json(0, json::parse(R"({"goAway":{"timeLeft":"20s"}})"));
  ASSERT_TRUE(h.recorder.wait_event("go_away:20000"));
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(h.server.connection_count(), 1u) << "reconnected in the middle of a turn";
  h.server.send_json(0, json::parse(R"({"serverContent":{"turnComplete":true}})"));
  ASSERT_TRUE(h.server.wait_for(has_connections(2)));
  ASSERT_TRUE(h.recorder.wait_for(
      [](const auto &evs) { return std::count(evs.begin(), evs.end(), "state:Ready") == 2; }));
}

TEST(LiveSession, DroppedConnectionReconnectsAndResumes) {
  Harness h;
  h.connect_ready();
  h.server.send_json(
      0, json::parse(R"({"sessionResumptionUpdate":{"newHandle":"h-9","resumable":true}})"));
  ASSERT_TRUE(h.recorder.wait_event("resumption:h-9"));
  const auto a = ramp(100, 1920);
  ASSERT_TRUE(h.session->send_audio(a.data(), a.size()));
  ASSERT_TRUE(h.server.wait_for(conn_audio_samples(0, 1920)));

  h.server.drop(0);
  ASSERT_TRUE(h.recorder.wait_event("state:Reconnecting"));
  ASSERT_TRUE(h.server.wait_for(conn_audio_samples(1, 1920)));
  const WsConnection second = h.server.connections()[1];
  EXPECT_EQ(second.json_messages()[0]["setup"]["sessionResumption"]["handle"], "h-9");
  EXPECT_EQ(second.api_key, std::optional<std::string>(kKey));
  EXPECT_EQ(audio_of(second), a);
  const auto warnings = h.recorder.filtered("warning:");
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("1006"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("reconnecting"), std::string::npos) << warnings[0];
  EXPECT_TRUE(h.recorder.wait_for(
      [](const auto &evs) { return std::count(evs.begin(), evs.end(), "state:Ready") == 2; }));
  EXPECT_FALSE(h.recorder.error().has_value());
}

TEST(LiveSession, UnansweredToolCallsAreCancelledWhenTheConnectionIsLost) {
  Harness h;
  h.connect_ready();
  h.server.send_json(0,
                     json::parse(R"({"toolCall":{"functionCalls":[{"id":"c-1","name":"slow"}]}})"));
  ASSERT_TRUE(h.recorder.wait_event("tool_call:c-1:slow:{}"));
  h.server.drop(0);
  ASSERT_TRUE(h.recorder.wait_event("cancel:c-1"));
  ASSERT_TRUE(h.recorder.wait_for(
      [](const auto &evs) { return std::count(evs.begin(), evs.end(), "state:Ready") == 2; }));
  // The late answer must not reach a session that never issued the call.
  ASSERT_TRUE(h.session->send_tool_response({{"c-1", "slow", R"({"result":1})"}}));
  ASSERT_TRUE(h.session->send_text("next"));
  ASSERT_TRUE(h.server.wait_for(conn_messages(1, 2)));
  const auto in = inputs(h.server.connections()[1]);
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0], live_codec::encode_text("next"));
  EXPECT_TRUE(h.recorder.wait_event("warning:dropped the response to function call \"c-1\":"));
}

TEST(LiveSession, ServiceInternalErrorIsRetried) {
  Harness h;
  h.connect_ready();
  h.server.close(0, 1011, "Internal error occurred.");
  ASSERT_TRUE(h.server.wait_for(has_connections(2)));
  ASSERT_TRUE(h.recorder.wait_event("warning:"));
  EXPECT_NE(h.recorder.filtered("warning:")[0].find("Internal error occurred."), std::string::npos);
  EXPECT_FALSE(h.recorder.error().has_value());
}

// ---- fatal errors -------------------------------------------------------------------------------

// A server that answers every setup with a close frame.
Harness *closing_harness(Harness &h, int code, std::string reason) {
  h.server.set_auto_setup_complete(false);
  h.server.set_handler([code, reason](WsTestServer &s, int conn, const std::string &msg) {
    if (msg.find("\"setup\"") != std::string::npos)
      s.close(conn, code, reason);
  });
  return &h;
}

TEST(LiveSession, UnknownModelIsNotFoundAndNotRetried) {
  LiveConfig config = test_config();
  config.model = "gemini-no-such-model";
  Harness h({}, config);
  closing_harness(h, 1008, "Requested entity was not found.");
  h.session->connect();
  ASSERT_TRUE(h.recorder.wait_event("state:Failed"));
  const auto err = h.recorder.error();
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->kind(), ErrorKind::NotFound);
  EXPECT_NE(err->message().find("Requested entity was not found."), std::string::npos);
  EXPECT_NE(err->message().find("models/gemini-no-such-model"), std::string::npos);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(h.server.connection_count(), 1u);
  EXPECT_EQ(h.session->state(), LiveState::Failed);
  EXPECT_FALSE(h.session->send_text("too late"));
  const auto events = h.recorder.events();
  EXPECT_EQ(events.back(), "state:Failed");
  EXPECT_EQ(events[events.size() - 2], "error:NotFound");
}

TEST(LiveSession, RejectedKeyIsUnauthenticatedAndNeverEchoed) {
  Harness h;
  closing_harness(h, 1007, "API key not valid. Please pass a valid API key.");
  h.session->connect();
  ASSERT_TRUE(h.recorder.wait_event("state:Failed"));
  const auto err = h.recorder.error();
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->kind(), ErrorKind::Unauthenticated);
  EXPECT_EQ(std::string(err->what()).find(kKey), std::string::npos);
  for (const auto &e : h.recorder.events())
    EXPECT_EQ(e.find(kKey), std::string::npos) << e;
  EXPECT_EQ(h.server.connection_count(), 1u);
}

TEST(LiveSession, BadSetupIsInvalidArgument) {
  Harness h;
  closing_harness(h, 1007, "Request contains an invalid argument.");
  h.session->connect();
  ASSERT_TRUE(h.recorder.wait_event("state:Failed"));
  EXPECT_EQ(h.recorder.error()->kind(), ErrorKind::InvalidArgument);
}

TEST(LiveSession, GivesUpAfterMaxReconnectAttempts) {
  LiveConfig config = test_config();
  config.max_reconnect_attempts = 2;
  config.reconnect_backoff_initial = milliseconds(10);
  Harness h({}, config);
  h.server.set_auto_setup_complete(false);
  h.server.set_handler([](WsTestServer &s, int conn, const std::string &) { s.drop(conn); });
  h.session->connect();
  ASSERT_TRUE(h.recorder.wait_event("state:Failed"));
  const auto err = h.recorder.error();
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->kind(), ErrorKind::Network);
  EXPECT_NE(err->message().find("gave up after 2 reconnection attempts"), std::string::npos)
      << err->message();
  EXPECT_EQ(h.server.connection_count(), 3u);
  EXPECT_EQ(h.recorder.filtered("warning:").size(), 2u);
}

TEST(LiveSession, UnreachableServerFailsWithNetworkError) {
  LiveConfig config = test_config();
  config.max_reconnect_attempts = 1;
  config.reconnect_backoff_initial = milliseconds(10);
  Recorder rec;
  LiveSession session(
      endpoint_for("http://127.0.0.1:" + std::to_string(testing::ScriptedServer::closed_port())),
      config, rec.callbacks());
  session.connect();
  ASSERT_TRUE(rec.wait_event("state:Failed"));
  EXPECT_EQ(rec.error()->kind(), ErrorKind::Network);
}

TEST(LiveSession, HttpRejectionOfTheUpgradeIsFatal) {
  testing::ScriptedServer http;
  http.push(testing::ScriptedResponse::json(
      404, R"({"error":{"code":404,"message":"Not found","status":"NOT_FOUND"}})"));
  http.push(testing::ScriptedResponse::json(
      404, R"({"error":{"code":404,"message":"Not found","status":"NOT_FOUND"}})"));
  Recorder rec;
  LiveSession session(endpoint_for(http.base_url()), test_config(), rec.callbacks());
  session.connect();
  ASSERT_TRUE(rec.wait_event("state:Failed"));
  EXPECT_EQ(rec.error()->kind(), ErrorKind::NotFound) << rec.error()->what();
  EXPECT_EQ(http.request_count(), 1u);
  const auto req = http.requests().at(0);
  EXPECT_EQ(req.header("x-goog-api-key"), kKey);
  EXPECT_EQ(req.target.find("key="), std::string::npos);
}

// ---- closing ------------------------------------------------------------------------------------

TEST(LiveSession, CloseIsFastSendsANormalClosureAndEndsCallbacks) {
  Harness h;
  h.connect_ready();
  const auto start = std::chrono::steady_clock::now();
  h.session->close();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, milliseconds(200));
  EXPECT_EQ(h.session->state(), LiveState::Closed);
  EXPECT_EQ(h.recorder.events().back(), "state:Closed");
  ASSERT_TRUE(
      h.server.wait_for([](const auto &cs) { return cs[0].client_close_code.has_value(); }));
  EXPECT_EQ(h.server.connections()[0].client_close_code, std::optional<int>(1000));

  const std::size_t seen = h.recorder.events().size();
  EXPECT_FALSE(h.session->send_text("after close"));
  h.server.send_json(0, json::parse(R"({"serverContent":{"turnComplete":true}})"));
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(h.recorder.events().size(), seen);
  h.session->close(); // idempotent
}

TEST(LiveSession, CloseInterruptsTheReconnectBackoff) {
  LiveConfig config = test_config();
  config.reconnect_backoff_initial = milliseconds(10000);
  config.reconnect_backoff_max = milliseconds(10000);
  Harness h({}, config);
  h.connect_ready();
  h.server.drop(0);
  ASSERT_TRUE(h.recorder.wait_event("state:Reconnecting"));
  // No connection is being made: queued input is not worth waiting 10 s for.
  const auto pcm = ramp(0, 3200);
  ASSERT_TRUE(h.session->send_audio(pcm.data(), pcm.size()));
  const auto start = std::chrono::steady_clock::now();
  h.session->close();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(200));
  EXPECT_EQ(h.session->state(), LiveState::Closed);
}

TEST(LiveSession, CloseWhileConnectingAndBeforeConnect) {
  {
    Recorder rec;
    LiveSession never(endpoint_for("http://127.0.0.1:1"), test_config(), rec.callbacks());
    never.close();
    EXPECT_EQ(never.state(), LiveState::Closed);
    EXPECT_FALSE(never.send_text("x"));
    EXPECT_THROW(never.connect(), Error);
    EXPECT_TRUE(rec.events().empty());
  }
  WsTestServer::Options opts;
  opts.auto_setup_complete = false;
  Harness h(opts);
  h.session->connect();
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 1)));
  const auto start = std::chrono::steady_clock::now();
  h.session.reset(); // the destructor closes
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(200));
}

TEST(LiveSession, CloseWritesTheQueuedInputFirst) {
  WsTestServer::Options opts;
  opts.auto_setup_complete = false;
  Harness h(opts);
  h.session->connect();
  // A short file, all of it queued before the service is ready, ending in a partial chunk.
  const auto pcm = ramp(0, 16100);
  ASSERT_TRUE(h.session->send_audio(pcm.data(), pcm.size()));
  ASSERT_TRUE(h.server.wait_for(conn_messages(0, 1)));
  const std::size_t seen = h.recorder.events().size();
  std::thread service([&h] {
    std::this_thread::sleep_for(milliseconds(150));
    h.server.send_json(0, {{"setupComplete", json::object()}});
  });
  const auto start = std::chrono::steady_clock::now();
  h.session->close();
  const auto took = std::chrono::steady_clock::now() - start;
  service.join();
  EXPECT_GE(took, milliseconds(100)) << "close() did not wait for the setup";
  EXPECT_LT(took, h.config.close_drain_timeout);
  EXPECT_EQ(h.session->state(), LiveState::Closed);
  EXPECT_FALSE(h.session->send_audio(pcm.data(), 10));

  ASSERT_TRUE(
      h.server.wait_for([](const auto &cs) { return cs[0].client_close_code.has_value(); }));
  const WsConnection c = h.server.connections()[0];
  EXPECT_EQ(audio_of(c), pcm);
  EXPECT_EQ(audio_message_count(c), 26u); // 25 chunks of 40 ms and the 100-sample tail
  EXPECT_EQ(c.client_close_code, std::optional<int>(1000));
  // Nothing reached the application while close() drained, but the final state.
  const auto events = h.recorder.events();
  EXPECT_EQ(
      std::vector<std::string>(events.begin() + static_cast<std::ptrdiff_t>(seen), events.end()),
      std::vector<std::string>{"state:Closed"});
}

TEST(LiveSession, CloseDrainIsBoundedAndCanBeSkipped) {
  WsTestServer::Options opts;
  opts.auto_setup_complete = false; // the input can never go out
  LiveConfig config = test_config();
  config.close_drain_timeout = milliseconds(300);
  const auto pcm = ramp(0, 3200);
  for (const bool skip : {false, true}) {
    SCOPED_TRACE(skip ? "close(0 ms)" : "close()");
    Harness h(opts, config);
    h.session->connect();
    ASSERT_TRUE(h.session->send_audio(pcm.data(), pcm.size()));
    ASSERT_TRUE(h.server.wait_for(conn_messages(0, 1)));
    const auto start = std::chrono::steady_clock::now();
    if (skip)
      h.session->close(milliseconds(0));
    else
      h.session->close();
    const auto took = std::chrono::steady_clock::now() - start;
    if (skip) {
      EXPECT_LT(took, milliseconds(200));
    } else {
      EXPECT_GE(took, milliseconds(290));
      EXPECT_LT(took, milliseconds(300 + 250));
    }
    EXPECT_EQ(h.session->state(), LiveState::Closed);
    ASSERT_TRUE(h.server.wait_for([](const auto &cs) { return !cs[0].open; }));
    EXPECT_EQ(h.server.connections()[0].received.size(), 1u); // the setup only
  }
}

TEST(LiveSession, DestroyedFromItsOwnCallback) {
  Harness h;
  std::atomic<bool> destroyed{false};
  LiveCallbacks cb = h.recorder.callbacks();
  auto session = std::make_shared<std::unique_ptr<LiveSession>>();
  cb.on_setup_complete = [session, &destroyed](const std::string &) {
    session->reset();
    destroyed = true;
  };
  *session = std::make_unique<LiveSession>(endpoint_for(h.server.base_url()), test_config(), cb);
  (*session)->connect();
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!destroyed && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(5));
  ASSERT_TRUE(destroyed);
  // The detached network thread finishes the close on its own.
  ASSERT_TRUE(h.server.wait_for([](const auto &cs) { return !cs.empty() && !cs[0].open; }));
}

TEST(LiveSession, ConnectRejectsBadConfiguration) {
  LiveConfig config = test_config();
  config.audio_chunk = milliseconds(10);
  LiveSession a(endpoint_for("http://127.0.0.1:1"), config);
  EXPECT_THROW(a.connect(), Error);

  LiveSession b(endpoint_for("ftp://127.0.0.1:1"), test_config());
  try {
    b.connect();
    ADD_FAILURE() << "accepted an ftp base URL";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
  }
  config = test_config();
  config.functions.push_back({"f", "", "[1]"});
  LiveSession c(endpoint_for("http://127.0.0.1:1"), config);
  EXPECT_THROW(c.connect(), Error);
}

} // namespace
} // namespace gemstream
