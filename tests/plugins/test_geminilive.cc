// geminilivesink / geminilivesrc against a scripted loopback Live server: what goes on the wire,
// what comes out on the bus and the src pad, pairing, EOS, errors, and barge-in latency.
#include "codec.h"
#include "common/gst_helpers.h"
#include "common/element_util.h"
#include "common/ws_test_server.h"

#include <gemstream/capabilities.h>
#include <gemstream/local_backend.h>

#include <glib/gstdio.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/check/gstharness.h>
#include <gst/check/gsttestclock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using gemstream::test::Pipeline;
using gemstream::testing::WsConnection;
using gemstream::testing::WsTestServer;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char *kCaps16k = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";

std::vector<std::int16_t> ramp(int from, int count) {
  std::vector<std::int16_t> v(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i)
    v[static_cast<std::size_t>(i)] = static_cast<std::int16_t>(from + i);
  return v;
}

json model_audio(const std::vector<std::int16_t> &pcm) {
  std::string bytes;
  for (std::int16_t s : pcm) {
    bytes += static_cast<char>(static_cast<std::uint16_t>(s) & 0xff);
    bytes += static_cast<char>(static_cast<std::uint16_t>(s) >> 8);
  }
  json m;
  m["serverContent"]["modelTurn"]["parts"] = json::array(
      {{{"inlineData",
         {{"mimeType", "audio/pcm;rate=24000"}, {"data", gemstream::codec::base64_encode(bytes)}}}}});
  return m;
}

// The client messages of a connection other than the setup.
std::vector<json> inputs(const WsConnection &c) {
  std::vector<json> out;
  for (auto &j : c.json_messages())
    if (!j.contains("setup"))
      out.push_back(std::move(j));
  return out;
}

// Bytes of realtimeInput.audio received on a connection.
std::size_t audio_bytes(const WsConnection &c) {
  std::size_t n = 0;
  for (const auto &j : inputs(c))
    if (j.contains("realtimeInput") && j["realtimeInput"].contains("audio"))
      n += gemstream::codec::base64_decode(j["realtimeInput"]["audio"]["data"].get<std::string>())
               .size();
  return n;
}

// A launch line fragment feeding `seconds` of a 440 Hz tone as fast as possible.
std::string tone(double seconds) {
  return "audiotestsrc num-buffers=" + std::to_string(int(seconds * 10)) +
         " samplesperbuffer=1600 ! " + kCaps16k;
}

std::string live_tone() {
  return std::string("audiotestsrc is-live=true samplesperbuffer=320 ! ") + kCaps16k;
}

bool wait_until(const std::function<bool()> &pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

GstMessageType wait_element(Pipeline &p, const char *name, std::chrono::milliseconds timeout = 5s) {
  return p.wait_for(GST_MESSAGE_ELEMENT, timeout, [name](GstMessage *m) {
    return gst_structure_has_name(gst_message_get_structure(m), name);
  });
}

std::string str_field(const GstStructure *s, const char *field) {
  const gchar *v = gst_structure_get_string(s, field);
  return v ? v : "";
}

// The error domain/code of the pipeline's first error, after waiting for one.
std::pair<GQuark, gint> wait_error(Pipeline &p, std::string *text = nullptr,
                                   std::string *debug = nullptr) {
  if (p.wait_for(GST_MESSAGE_ERROR, 10s) != GST_MESSAGE_ERROR)
    return {0, 0};
  GError *err = nullptr;
  gchar *dbg = nullptr;
  gst_message_parse_error(p.first_error(), &err, &dbg);
  std::pair<GQuark, gint> out{err->domain, err->code};
  if (text)
    *text = err->message;
  if (debug)
    *debug = dbg ? dbg : "";
  g_error_free(err);
  g_free(dbg);
  return out;
}

class GeminiLiveTest : public ::testing::Test {
protected:
  // A session name no other test uses: the pairing registry is process-wide.
  std::string session() const {
    return ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  std::string sink_props() const {
    return "base-url=" + server.base_url() + " session=" + session();
  }
  bool wait_setup(int connection = 0) {
    return server.wait_for([connection](const std::vector<WsConnection> &cs) {
      return int(cs.size()) > connection && !cs[std::size_t(connection)].received.empty();
    });
  }
  WsConnection conn(int i = 0) const { return server.connections().at(std::size_t(i)); }

  WsTestServer server;
};

} // namespace

// ---- geminilivesink: input -------------------------------------------------------------------

TEST_F(GeminiLiveTest, SinkRefusesAudioThatIsNotS16Mono16k) {
  GstElement *sink = gst_element_factory_make("geminilivesink", nullptr);
  g_object_set(sink, "base-url", server.base_url().c_str(), "session", session().c_str(), nullptr);
  GstHarness *h = gst_harness_new_with_element(sink, "audio", nullptr);
  gst_harness_play(h);
  GstPad *pad = gst_element_get_static_pad(sink, "audio");

  for (const char *caps : {"audio/x-raw,format=S16LE,rate=44100,channels=1,layout=interleaved",
                           "audio/x-raw,format=S16LE,rate=16000,channels=2,layout=interleaved",
                           "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved"}) {
    GstCaps *c = gst_caps_from_string(caps);
    EXPECT_FALSE(gst_pad_query_accept_caps(pad, c)) << caps;
    gst_caps_unref(c);
  }
  gst_harness_set_src_caps_str(h, "audio/x-raw,format=S16LE,rate=44100,channels=1,layout=interleaved");
  EXPECT_EQ(gst_harness_push(h, gst_buffer_new_allocate(nullptr, 882, nullptr)),
            GST_FLOW_NOT_NEGOTIATED);

  GstCaps *good = gst_caps_from_string(kCaps16k);
  EXPECT_TRUE(gst_pad_query_accept_caps(pad, good));
  gst_caps_unref(good);
  gst_object_unref(pad);
  gst_harness_teardown(h);
  gst_object_unref(sink);
}

TEST_F(GeminiLiveTest, SinkSendsTheSetupThenTheAudioThenAudioStreamEnd) {
  Pipeline p(tone(1.0) + " ! geminilivesink name=s reply-timeout=200 " + sink_props() +
             " voice=Puck language=en-US system-instruction=\"Be brief.\" enable-search=true");
  ASSERT_TRUE(p.get()) << p.parse_error();
  GstElement *s = p.by_name("s");
  g_object_set(s, "tools",
               R"([{"name":"get_weather","description":"Weather for a city",
                    "parameters":{"type":"OBJECT","properties":{"city":{"type":"STRING"}}}}])",
               nullptr);
  ASSERT_EQ(p.run(10s), GST_MESSAGE_EOS);

  const WsConnection c = conn();
  ASSERT_FALSE(c.received.empty());
  const json setup = json::parse(c.received[0].data);
  ASSERT_TRUE(setup.contains("setup")) << setup.dump();
  const json &st = setup["setup"];
  EXPECT_EQ(st["model"], "models/gemini-live-2.5-flash-preview-native-audio");
  EXPECT_EQ(st["generationConfig"]["responseModalities"], json::array({"AUDIO"}));
  EXPECT_EQ(st["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
            "Puck");
  EXPECT_EQ(st["generationConfig"]["speechConfig"]["languageCode"], "en-US");
  EXPECT_EQ(st["systemInstruction"]["parts"][0]["text"], "Be brief.");
  EXPECT_EQ(st["inputAudioTranscription"], json::object());
  EXPECT_EQ(st["outputAudioTranscription"], json::object());
  EXPECT_TRUE(st.contains("sessionResumption"));
  ASSERT_EQ(st["tools"].size(), 2u) << st["tools"].dump();
  EXPECT_EQ(st["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
  EXPECT_EQ(st["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]["city"]["type"],
            "STRING");
  EXPECT_EQ(st["tools"][1], json({{"googleSearch", json::object()}}));

  // Every sample, as PCM at 16 kHz, then the end of the stream.
  EXPECT_EQ(audio_bytes(c), 16000u * 2);
  const auto in = inputs(c);
  ASSERT_FALSE(in.empty());
  EXPECT_EQ(in.front()["realtimeInput"]["audio"]["mimeType"], "audio/pcm;rate=16000");
  EXPECT_EQ(in.back(), json::parse(R"({"realtimeInput":{"audioStreamEnd":true}})"));
  gst_object_unref(s);
}

TEST_F(GeminiLiveTest, SinkWithoutVadMarksActivitiesAndEndsTheOpenOneAtEos) {
  Pipeline p(live_tone() + " ! geminilivesink name=s vad=off reply-timeout=0 " + sink_props());
  GstElement *s = p.by_name("s");
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  gboolean ok = FALSE;
  g_signal_emit_by_name(s, "activity-start", &ok);
  EXPECT_TRUE(ok);
  const json start = json::parse(R"({"realtimeInput":{"activityStart":{}}})");
  auto audio_after_start = [&start](const WsConnection &c) {
    const auto in = inputs(c);
    const auto it = std::find(in.begin(), in.end(), start);
    return it != in.end() && std::any_of(it + 1, in.end(), [](const json &j) {
             return j["realtimeInput"].contains("audio");
           });
  };
  ASSERT_TRUE(server.wait_for([&](const auto &cs) { return audio_after_start(cs[0]); }));
  gst_element_send_event(p.get(), gst_event_new_eos());
  ASSERT_EQ(p.wait_for(GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR), 5s), GST_MESSAGE_EOS);
  const json end = json::parse(R"({"realtimeInput":{"activityEnd":{}}})");
  EXPECT_TRUE(server.wait_for([&end](const auto &cs) {
    const auto in = inputs(cs[0]);
    return !in.empty() && in.back() == end;
  }));
  const json setup = json::parse(conn().received[0].data);
  EXPECT_EQ(setup["setup"]["realtimeInputConfig"]["automaticActivityDetection"]["disabled"], true);
  gst_object_unref(s);
}

TEST_F(GeminiLiveTest, SyncPacesAFileAtRealTime) {
  auto send_one_second = [&](bool sync, int connection) {
    Pipeline p(tone(1.0) + " ! geminilivesink reply-timeout=0 sync=" + (sync ? "true " : "false ") +
               sink_props());
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(p.run(10s), GST_MESSAGE_EOS);
    const auto took = std::chrono::steady_clock::now() - t0;
    const json end = json::parse(R"({"realtimeInput":{"audioStreamEnd":true}})");
    EXPECT_TRUE(server.wait_for([connection, &end](const auto &cs) {
      if (int(cs.size()) <= connection)
        return false;
      const auto in = inputs(cs[std::size_t(connection)]);
      return !in.empty() && in.back() == end;
    }));
    return took;
  };
  EXPECT_LT(send_one_second(false, 0), 600ms);
  EXPECT_GE(send_one_second(true, 1), 850ms);
  EXPECT_EQ(audio_bytes(conn(1)), 32000u);
}

// ---- geminilivesink: what the service says ---------------------------------------------------

TEST_F(GeminiLiveTest, ServerMessagesBecomeBusMessagesAndSignals) {
  Pipeline p(live_tone() + " ! geminilivesink name=s " + sink_props());
  GstElement *s = p.by_name("s");
  struct Transcript {
    std::string direction, text;
    bool finished;
  };
  struct Seen {
    std::mutex m;
    std::vector<Transcript> t;
  } seen;
  g_signal_connect(s, "transcript",
                   G_CALLBACK(+[](GstElement *, const gchar *dir, const gchar *text,
                                  gboolean finished, gpointer data) {
                     auto *seen = static_cast<Seen *>(data);
                     std::lock_guard lock(seen->m);
                     seen->t.push_back({dir, text, finished != FALSE});
                   }),
                   &seen);
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  ASSERT_EQ(wait_element(p, "gemstream-live-state"), GST_MESSAGE_ELEMENT);

  server.send_json(0, json::parse(R"({"serverContent":{"inputTranscription":{"text":"what is the weather","finished":true}}})"));
  server.send_json(0, json::parse(R"({"serverContent":{"outputTranscription":{"text":"It is sunny."}}})"));
  server.send_json(0, json::parse(R"({"serverContent":{"modelTurn":{"parts":[{"text":"It is sunny."}]}}})"));
  server.send_json(0, json::parse(R"({"serverContent":{"groundingMetadata":{
      "webSearchQueries":["weather oslo"],
      "groundingChunks":[{"web":{"uri":"https://example.com/oslo","title":"Oslo weather"}}]}}})"));
  server.send_json(0, json::parse(R"({"toolCallCancellation":{"ids":["c1","c2"]}})"));
  server.send_json(0, json::parse(R"({"sessionResumptionUpdate":{"newHandle":"h-42","resumable":true}})"));
  server.send_json(0, json::parse(R"({"serverContent":{"generationComplete":true}})"));
  server.send_json(0, json::parse(R"({"serverContent":{"turnComplete":true}})"));
  server.send_json(0, json::parse(R"({"goAway":{"timeLeft":"50s"}})"));
  ASSERT_EQ(wait_element(p, "gemstream-live-go-away"), GST_MESSAGE_ELEMENT);

  auto transcripts = p.element_messages("gemstream-live-transcript");
  ASSERT_EQ(transcripts.size(), 2u);
  EXPECT_EQ(str_field(transcripts[0], "direction"), "input");
  EXPECT_EQ(str_field(transcripts[0], "text"), "what is the weather");
  gboolean finished = FALSE;
  gst_structure_get_boolean(transcripts[0], "finished", &finished);
  EXPECT_TRUE(finished);
  EXPECT_EQ(str_field(transcripts[1], "direction"), "output");
  EXPECT_EQ(str_field(transcripts[1], "text"), "It is sunny.");
  {
    std::lock_guard lock(seen.m);
    ASSERT_EQ(seen.t.size(), 2u);
    EXPECT_EQ(seen.t[0].direction, "input");
    EXPECT_TRUE(seen.t[0].finished);
    EXPECT_EQ(seen.t[1].text, "It is sunny.");
    EXPECT_FALSE(seen.t[1].finished);
  }
  auto texts = p.element_messages("gemstream-live-text");
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(str_field(texts[0], "text"), "It is sunny.");

  auto grounding = p.element_messages("gemstream-live-grounding");
  ASSERT_EQ(grounding.size(), 1u);
  EXPECT_EQ(str_field(grounding[0], "citations"), "[1] Oslo weather: https://example.com/oslo\n");
  EXPECT_EQ(str_field(grounding[0], "queries"), "weather oslo");
  EXPECT_EQ(json::parse(str_field(grounding[0], "metadata"))["webSearchQueries"][0], "weather oslo");

  auto cancel = p.element_messages("gemstream-live-tool-call-cancellation");
  ASSERT_EQ(cancel.size(), 1u);
  const GValue *ids = gst_structure_get_value(cancel[0], "ids");
  ASSERT_TRUE(GST_VALUE_HOLDS_ARRAY(ids));
  ASSERT_EQ(gst_value_array_get_size(ids), 2u);
  EXPECT_STREQ(g_value_get_string(gst_value_array_get_value(ids, 1)), "c2");

  auto resumption = p.element_messages("gemstream-live-resumption");
  ASSERT_EQ(resumption.size(), 1u);
  EXPECT_EQ(str_field(resumption[0], "handle"), "h-42");
  gchar *handle = nullptr;
  g_object_get(s, "resumption-handle", &handle, nullptr);
  EXPECT_STREQ(handle, "h-42");
  g_free(handle);

  EXPECT_EQ(p.element_messages("gemstream-live-generation-complete").size(), 1u);
  EXPECT_EQ(p.element_messages("gemstream-live-turn-complete").size(), 1u);
  auto go_away = p.element_messages("gemstream-live-go-away");
  guint64 left = 0;
  ASSERT_TRUE(gst_structure_get_uint64(go_away[0], "time-left", &left));
  EXPECT_EQ(left, 50 * GST_SECOND);
  guint64 received = 0;
  g_object_get(s, "messages-received", &received, nullptr);
  EXPECT_GE(received, 10u);
  gst_object_unref(s);
}

TEST_F(GeminiLiveTest, ToolCallsAreAnsweredWithTheActionSignal) {
  Pipeline p(live_tone() + " ! geminilivesink name=s " + sink_props());
  GstElement *s = p.by_name("s");
  struct Calls {
    std::mutex m;
    std::vector<std::string> seen;
  } calls;
  g_signal_connect(s, "tool-call",
                   G_CALLBACK(+[](GstElement *sink, const gchar *id, const gchar *name,
                                  const gchar *args, gpointer data) {
                     auto *calls = static_cast<Calls *>(data);
                     {
                       std::lock_guard lock(calls->m);
                       calls->seen.push_back(std::string(id) + "|" + name + "|" + args);
                     }
                     // Answered from the handler (network thread) for the second call.
                     if (std::string(id) == "call-2") {
                       gboolean ok = FALSE;
                       g_signal_emit_by_name(sink, "send-tool-response", id, name,
                                             R"({"result":"done"})", &ok);
                     }
                   }),
                   &calls);
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  server.send_json(0, json::parse(R"({"toolCall":{"functionCalls":[
      {"id":"call-1","name":"get_weather","args":{"city":"Oslo"}}]}})"));
  ASSERT_EQ(wait_element(p, "gemstream-live-tool-call"), GST_MESSAGE_ELEMENT);
  const GstStructure *m = p.element_messages("gemstream-live-tool-call").at(0);
  EXPECT_EQ(str_field(m, "id"), "call-1");
  EXPECT_EQ(str_field(m, "name"), "get_weather");
  EXPECT_EQ(json::parse(str_field(m, "args")), json::parse(R"({"city":"Oslo"})"));

  gboolean ok = FALSE;
  g_signal_emit_by_name(s, "send-tool-response", "call-1", "get_weather",
                        R"({"result":"sunny","temperature":21})", &ok);
  EXPECT_TRUE(ok);
  // Not a JSON object: refused, nothing sent.
  g_signal_emit_by_name(s, "send-tool-response", "call-1", "get_weather", "[1,2]", &ok);
  EXPECT_FALSE(ok);
  server.send_json(0, json::parse(R"({"toolCall":{"functionCalls":[
      {"id":"call-2","name":"make_cover","args":{}}]}})"));

  auto responses = [](const WsConnection &c) {
    std::vector<json> out;
    for (const auto &j : inputs(c))
      if (j.contains("toolResponse"))
        out.push_back(j);
    return out;
  };
  ASSERT_TRUE(server.wait_for([&](const auto &cs) { return responses(cs[0]).size() == 2; }));
  const auto r = responses(conn());
  EXPECT_EQ(r[0], json::parse(R"({"toolResponse":{"functionResponses":[
      {"id":"call-1","name":"get_weather","response":{"result":"sunny","temperature":21}}]}})"));
  EXPECT_EQ(r[1], json::parse(R"({"toolResponse":{"functionResponses":[
      {"id":"call-2","name":"make_cover","response":{"result":"done"}}]}})"));
  {
    std::lock_guard lock(calls.m);
    ASSERT_EQ(calls.seen.size(), 2u);
    EXPECT_EQ(calls.seen[0], R"(call-1|get_weather|{"city":"Oslo"})");
  }
  g_signal_emit_by_name(s, "send-text", "and tomorrow?", &ok);
  EXPECT_TRUE(ok);
  ASSERT_TRUE(server.wait_for([](const auto &cs) {
    for (const auto &j : inputs(cs[0]))
      if (j.contains("realtimeInput") && j["realtimeInput"].value("text", "") == "and tomorrow?")
        return true;
    return false;
  }));
  gst_object_unref(s);
}

TEST_F(GeminiLiveTest, UsageIsPricedFromTheConfig) {
  Pipeline p(live_tone() + " ! geminilivesink name=s " + sink_props());
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  // $1.00 per 1M input tokens, $3.00 per 1M output tokens (config/media_generation.json).
  server.send_json(0, json::parse(R"({"serverContent":{"turnComplete":true},"usageMetadata":{
      "promptTokenCount":1000,"responseTokenCount":2000,"totalTokenCount":3000,
      "promptTokensDetails":[{"modality":"AUDIO","tokenCount":1000}]}})"));
  server.send_json(0, json::parse(R"({"usageMetadata":{"promptTokenCount":500000,
      "responseTokenCount":0,"totalTokenCount":500000}})"));
  ASSERT_EQ(wait_element(p, "gemstream-live-usage"), GST_MESSAGE_ELEMENT);
  ASSERT_EQ(wait_element(p, "gemstream-live-usage"), GST_MESSAGE_ELEMENT);
  const auto usage = p.element_messages("gemstream-live-usage");
  gint64 prompt = 0, response = 0, total = 0;
  double usd = 0, total_usd = 0;
  gboolean priced = FALSE;
  ASSERT_TRUE(gst_structure_get(usage[0], "prompt-tokens", G_TYPE_INT64, &prompt, "response-tokens",
                                G_TYPE_INT64, &response, "total-tokens", G_TYPE_INT64, &total,
                                "usd", G_TYPE_DOUBLE, &usd, "priced", G_TYPE_BOOLEAN, &priced,
                                nullptr));
  EXPECT_EQ(prompt, 1000);
  EXPECT_EQ(response, 2000);
  EXPECT_EQ(total, 3000);
  EXPECT_TRUE(priced);
  EXPECT_NEAR(usd, 0.007, 1e-12);
  ASSERT_TRUE(gst_structure_get_double(usage[1], "usd", &usd));
  ASSERT_TRUE(gst_structure_get_double(usage[1], "total-usd", &total_usd));
  EXPECT_NEAR(usd, 0.5, 1e-12);
  EXPECT_NEAR(total_usd, 0.507, 1e-12);

  const auto cost = p.element_messages("gemstream-cost");
  ASSERT_GE(cost.size(), 1u);
  EXPECT_EQ(str_field(cost[0], "kind"), "live");
  EXPECT_EQ(str_field(cost[0], "model"), "gemini-live-2.5-flash-preview-native-audio");
  GstElement *s = p.by_name("s");
  double prop_usd = 0;
  g_object_get(s, "total-usd", &prop_usd, nullptr);
  EXPECT_NEAR(prop_usd, 0.507, 1e-12);
  gst_object_unref(s);
}

// ---- geminilivesink: errors ------------------------------------------------------------------

TEST_F(GeminiLiveTest, RejectedKeyIsNotAuthorizedAndNeverShown) {
  server.set_auto_setup_complete(false);
  server.set_handler([](WsTestServer &srv, int c, const std::string &msg) {
    if (msg.find("\"setup\"") != std::string::npos)
      srv.close(c, 1007, "API key not valid. Please pass a valid API key.");
  });
  Pipeline p(live_tone() + " ! geminilivesink api-key=sekrit-key-123 " + sink_props());
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  std::string text, debug;
  const auto [domain, code] = wait_error(p, &text, &debug);
  EXPECT_EQ(domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(code, GST_RESOURCE_ERROR_NOT_AUTHORIZED) << text;
  EXPECT_EQ(text.find("sekrit"), std::string::npos);
  EXPECT_EQ(debug.find("sekrit"), std::string::npos);
  EXPECT_EQ(conn().api_key, std::optional<std::string>("sekrit-key-123"));
  EXPECT_EQ(conn().query.find("sekrit"), std::string::npos);
}

TEST_F(GeminiLiveTest, UnknownModelIsNotFound) {
  server.set_auto_setup_complete(false);
  server.set_handler([](WsTestServer &srv, int c, const std::string &msg) {
    if (msg.find("\"setup\"") != std::string::npos)
      srv.close(c, 1008, "Requested entity was not found.");
  });
  Pipeline p(live_tone() + " ! geminilivesink model=gemini-nope " + sink_props());
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  std::string text;
  const auto [domain, code] = wait_error(p, &text);
  EXPECT_EQ(domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(code, GST_RESOURCE_ERROR_NOT_FOUND) << text;
  EXPECT_NE(text.find("gemini-nope"), std::string::npos) << text;
}

TEST_F(GeminiLiveTest, UnreachableServiceIsOpenWrite) {
  // Bound and released: nothing listens there.
  const std::string url = [] {
    WsTestServer gone;
    return gone.base_url();
  }();
  Pipeline p(live_tone() + " ! geminilivesink reconnect-attempts=0 base-url=" + url +
             " session=" + session());
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  std::string text;
  const auto [domain, code] = wait_error(p, &text);
  EXPECT_EQ(domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(code, GST_RESOURCE_ERROR_OPEN_WRITE) << text;
}

TEST_F(GeminiLiveTest, InvalidToolsAreASettingsError) {
  Pipeline p(live_tone() + " ! geminilivesink name=s " + sink_props());
  GstElement *s = p.by_name("s");
  g_object_set(s, "tools", R"([{"description":"no name"}])", nullptr);
  EXPECT_EQ(gst_element_set_state(p.get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  std::string text;
  const auto [domain, code] = wait_error(p, &text);
  EXPECT_EQ(domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(code, GST_RESOURCE_ERROR_SETTINGS);
  EXPECT_NE(text.find("tools[0]"), std::string::npos) << text;
  EXPECT_EQ(server.connection_count(), 0u);
  gst_object_unref(s);
}

// ---- geminilivesink: faults ------------------------------------------------------------------

TEST_F(GeminiLiveTest, MalformedServerMessagesAreCountedAndReported) {
  Pipeline p(live_tone() + " ! geminilivesink name=s " + sink_props());
  GstElement *s = p.by_name("s");
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  server.send(0, "{\"serverContent\": {\"modelTurn\": ");  // truncated
  server.send_json(0, json::parse(R"({"serverContent":{"turnComplete":"soon"}})"));
  server.send_json(0, json::parse(R"({"serverContent":{"outputTranscription":{"text":"still here"}}})"));
  ASSERT_EQ(wait_element(p, "gemstream-live-transcript"), GST_MESSAGE_ELEMENT);
  guint64 malformed = 0;
  g_object_get(s, "malformed-messages", &malformed, nullptr);
  EXPECT_EQ(malformed, 2u);
  EXPECT_GE(p.messages(GST_MESSAGE_WARNING).size(), 1u);
  EXPECT_EQ(p.first_error(), nullptr);
  gst_object_unref(s);
}

TEST_F(GeminiLiveTest, OversizedServerMessagesAreSkippedAndCounted) {
  Pipeline p(live_tone() + " ! geminilivesink name=s " + sink_props() +
             "  geminilivesrc session=" + session() + " ! fakesink");
  GstElement *s = p.by_name("s");
  gst_element_set_state(p.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  // Past the session's 64 MiB limit (LiveConfig::max_message_bytes): one model audio part of
  // 48 MiB of PCM, in 64 fragments. It is skipped while it arrives, never held whole.
  json huge = model_audio({});
  huge["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"] =
      std::string((64u << 20) + 4, 'A');
  server.send_json(0, huge, 64);
  huge = json();
  server.send_json(0, model_audio(ramp(0, 2400)));
  server.send_json(
      0, json::parse(R"({"serverContent":{"outputTranscription":{"text":"still here"}}})"));
  ASSERT_EQ(wait_element(p, "gemstream-live-transcript", 20s), GST_MESSAGE_ELEMENT);
  guint64 malformed = 0, received = 0;
  g_object_get(s, "malformed-messages", &malformed, "messages-received", &received, nullptr);
  EXPECT_EQ(malformed, 1u);
  EXPECT_EQ(received, 4u); // setupComplete, the oversized message and the two after it
  bool reported = false;
  for (GstMessage *m : p.messages(GST_MESSAGE_WARNING)) {
    GError *err = nullptr;
    gchar *dbg = nullptr;
    gst_message_parse_warning(m, &err, &dbg);
    const std::string text = std::string(err->message) + " " + (dbg ? dbg : "");
    reported = reported || text.find("larger than 67108864 bytes") != std::string::npos;
    g_error_free(err);
    g_free(dbg);
  }
  EXPECT_TRUE(reported) << "no warning names the limit";
  EXPECT_EQ(p.first_error(), nullptr);
  gst_object_unref(s);
}

TEST_F(GeminiLiveTest, StalledServiceNeverBlocksTheStreamingThread) {
  // setupComplete never comes: every input is held, up to max-buffered, then dropped oldest first.
  server.set_auto_setup_complete(false);
  Pipeline p(tone(10.0) + " ! geminilivesink name=s max-buffered=2000 reply-timeout=0 " +
             sink_props());
  GstElement *s = p.by_name("s");
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(p.run(10s), GST_MESSAGE_EOS);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "10 s of audio went in without waiting";
  guint64 dropped = 0;
  g_object_get(s, "dropped-audio-ms", &dropped, nullptr);
  EXPECT_GE(dropped, 7900u);
  EXPECT_LE(dropped, 8100u);
  // The pipeline can reach EOS before the session has even connected: wait for the setup, then
  // check that nothing follows it while setupComplete is withheld.
  ASSERT_TRUE(wait_setup());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(conn().received.size(), 1u);  // the setup, nothing else
  gst_object_unref(s);
}

// ---- geminilivesrc ---------------------------------------------------------------------------

TEST_F(GeminiLiveTest, SrcIsLiveAndSendsGapsInSilence) {
  GstElement *src = gst_element_factory_make("geminilivesrc", nullptr);
  g_object_set(src, "session", session().c_str(), "latency", 150u, nullptr);
  GstHarness *h = gst_harness_new_with_element(src, nullptr, "src");
  gst_harness_use_testclock(h);

  GstQuery *q = gst_query_new_latency();
  ASSERT_TRUE(gst_element_query(src, q));
  gboolean live = FALSE;
  GstClockTime min = 0, max = 0;
  gst_query_parse_latency(q, &live, &min, &max);
  gst_query_unref(q);
  EXPECT_TRUE(live);
  EXPECT_EQ(min, 150 * GST_MSECOND);
  EXPECT_GE(max, min);

  EXPECT_EQ(gst_element_set_state(src, GST_STATE_PAUSED), GST_STATE_CHANGE_NO_PREROLL);
  gst_harness_play(h);

  GstEvent *ev = gst_harness_pull_event(h);
  ASSERT_EQ(GST_EVENT_TYPE(ev), GST_EVENT_STREAM_START);
  gst_event_unref(ev);
  ev = gst_harness_pull_event(h);
  ASSERT_EQ(GST_EVENT_TYPE(ev), GST_EVENT_CAPS);
  GstCaps *caps;
  gst_event_parse_caps(ev, &caps);
  GstCaps *want = gst_caps_from_string(
      "audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved");
  EXPECT_TRUE(gst_caps_is_equal(caps, want));
  gst_caps_unref(want);
  gst_event_unref(ev);
  ev = gst_harness_pull_event(h);
  ASSERT_EQ(GST_EVENT_TYPE(ev), GST_EVENT_SEGMENT);
  const GstSegment *seg;
  gst_event_parse_segment(ev, &seg);
  EXPECT_EQ(seg->format, GST_FORMAT_TIME);
  gst_event_unref(ev);

  // Each 100 ms of silence on the clock is covered by a GAP.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(gst_harness_crank_single_clock_wait(h));
    ev = gst_harness_pull_event(h);
    ASSERT_EQ(GST_EVENT_TYPE(ev), GST_EVENT_GAP);
    GstClockTime ts, dur;
    gst_event_parse_gap(ev, &ts, &dur);
    EXPECT_EQ(ts, GstClockTime(i) * 100 * GST_MSECOND);
    EXPECT_EQ(dur, 100 * GST_MSECOND);
    gst_event_unref(ev);
  }
  EXPECT_EQ(gst_harness_buffers_received(h), 0u);
  gst_harness_teardown(h);
  gst_object_unref(src);
}

TEST_F(GeminiLiveTest, SrcStampsModelSpeechWithRunningTime) {
  GstElement *sink = gst_element_factory_make("geminilivesink", nullptr);
  g_object_set(sink, "base-url", server.base_url().c_str(), "session", session().c_str(), nullptr);
  GstHarness *hs = gst_harness_new_with_element(sink, "audio", nullptr);
  gst_harness_play(hs);
  ASSERT_TRUE(wait_setup());

  GstElement *src = gst_element_factory_make("geminilivesrc", nullptr);
  g_object_set(src, "session", session().c_str(), nullptr);
  GstHarness *h = gst_harness_new_with_element(src, nullptr, "src");
  gst_harness_use_testclock(h);
  gst_harness_play(h);
  GstTestClock *clock = gst_harness_get_testclock(h);
  ASSERT_TRUE(gst_harness_wait_for_clock_id_waits(h, 1, 5));  // waiting in silence
  gst_test_clock_set_time(clock, 40 * GST_MSECOND);

  const auto speech = ramp(-1200, 2400);  // 100 ms at 24 kHz
  server.send_json(0, model_audio(speech));
  std::vector<std::int16_t> got;
  GstClockTime expected = 40 * GST_MSECOND;
  for (int i = 0; i < 5; ++i) {
    GstBuffer *b = gst_harness_pull(h);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(GST_BUFFER_PTS(b), expected) << i;
    EXPECT_EQ(GST_BUFFER_DURATION(b), 20 * GST_MSECOND);
    EXPECT_EQ(GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT), i == 0);
    expected += 20 * GST_MSECOND;
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_READ);
    for (gsize k = 0; k + 1 < map.size; k += 2)
      got.push_back(std::int16_t(GST_READ_UINT16_LE(map.data + k)));
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
  }
  EXPECT_EQ(got, speech);

  // After a pause longer than the speech, the next burst starts at the running time again.
  gst_test_clock_set_time(clock, 700 * GST_MSECOND);
  server.send_json(0, model_audio(ramp(0, 480)));
  GstBuffer *b = gst_harness_pull(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(GST_BUFFER_PTS(b), 700 * GST_MSECOND);
  gst_buffer_unref(b);

  gst_object_unref(clock);
  gst_harness_teardown(h);
  gst_object_unref(src);
  gst_harness_teardown(hs);
  gst_object_unref(sink);
}

TEST_F(GeminiLiveTest, SrcPlaysInRealTimeThroughASyncingSink) {
  Pipeline sinkp(live_tone() + " ! geminilivesink " + sink_props());
  Pipeline srcp("geminilivesrc session=" + session() + " ! fakesink name=out sync=true");
  GstElement *out = srcp.by_name("out");
  GstPad *pad = gst_element_get_static_pad(out, "sink");
  struct Rendered {
    std::mutex m;
    std::vector<std::pair<GstClockTime, GstClockTime>> spans;  // pts, duration
    std::vector<gint64> at_us;
    int disconts = 0;
  } rendered;
  gst_pad_add_probe(
      pad, GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad *, GstPadProbeInfo *info, gpointer data) {
        auto *r = static_cast<Rendered *>(data);
        GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER(info);
        std::lock_guard lock(r->m);
        r->spans.emplace_back(GST_BUFFER_PTS(b), GST_BUFFER_DURATION(b));
        r->at_us.push_back(g_get_monotonic_time());
        r->disconts += GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT) ? 1 : 0;
        return GST_PAD_PROBE_OK;
      },
      &rendered, nullptr);
  gst_object_unref(pad);
  gst_element_set_state(srcp.get(), GST_STATE_PLAYING);
  gst_element_set_state(sinkp.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  server.send_json(0, model_audio(ramp(0, 24000)));  // 1 s, all at once
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(rendered.m);
    return rendered.spans.size() >= 50;
  }));
  std::lock_guard lock(rendered.m);
  // 50 buffers of 20 ms in about one second, contiguous after the first.
  const double took_s = double(rendered.at_us[49] - rendered.at_us[0]) / 1e6;
  EXPECT_GT(took_s, 0.85);
  EXPECT_LT(took_s, 1.3);
  EXPECT_EQ(rendered.disconts, 1);
  for (std::size_t i = 1; i < 50; ++i)
    EXPECT_EQ(rendered.spans[i].first, rendered.spans[i - 1].first + rendered.spans[i - 1].second)
        << i;
  gst_object_unref(out);
}

TEST_F(GeminiLiveTest, InterruptionFlushesABlockedSinkWithin10ms) {
  Pipeline sinkp(live_tone() + " ! geminilivesink " + sink_props());
  Pipeline srcp("geminilivesrc name=src session=" + session() + " ! fakesink name=out sync=true");
  GstElement *out = srcp.by_name("out");
  GstElement *src = srcp.by_name("src");
  GstPad *pad = gst_element_get_static_pad(out, "sink");
  struct Probe {
    std::atomic<gint64> flush_start_us{0};
    std::atomic<int> buffers{0};
    std::atomic<int> buffers_after_flush{0};
  } probe;
  gst_pad_add_probe(
      pad, GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_FLUSH),
      [](GstPad *, GstPadProbeInfo *info, gpointer data) {
        auto *p = static_cast<Probe *>(data);
        if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
          ++p->buffers;
          if (p->flush_start_us.load() != 0)
            ++p->buffers_after_flush;
        } else if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_FLUSH_START &&
                   p->flush_start_us.load() == 0) {
          p->flush_start_us = g_get_monotonic_time();
        }
        return GST_PAD_PROBE_OK;
      },
      &probe, nullptr);
  gst_object_unref(pad);

  gst_element_set_state(srcp.get(), GST_STATE_PLAYING);
  gst_element_set_state(sinkp.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());
  for (int i = 0; i < 6; ++i)
    server.send_json(0, model_audio(ramp(0, 12000)));  // 3 s in all, faster than real time
  // The sink renders in real time, so the streaming thread blocks with speech queued.
  ASSERT_TRUE(wait_until([&] {
    guint64 buffered = 0;
    g_object_get(src, "buffered-ms", &buffered, nullptr);
    return probe.buffers.load() > 0 && buffered > 1000;
  }));

  server.send_json(0, json::parse(R"({"serverContent":{"interrupted":true}})"));
  ASSERT_EQ(wait_element(srcp, "gemstream-live-flushed"), GST_MESSAGE_ELEMENT);
  const GstStructure *m = srcp.element_messages("gemstream-live-flushed").at(0);
  gint64 arrival_us = 0, latency_us = 0;
  guint64 dropped_ms = 0;
  ASSERT_TRUE(gst_structure_get(m, "arrival-us", G_TYPE_INT64, &arrival_us, "latency-us",
                                G_TYPE_INT64, &latency_us, "dropped-ms", G_TYPE_UINT64, &dropped_ms,
                                nullptr));
  ASSERT_NE(probe.flush_start_us.load(), 0);
  const gint64 seen_us = probe.flush_start_us.load() - arrival_us;
  std::printf("[ measured ] interrupted → FLUSH_START at the sink: %.3f ms (element reports "
              "%.3f ms), %llu ms of queued speech dropped\n",
              double(seen_us) / 1000.0, double(latency_us) / 1000.0,
              static_cast<unsigned long long>(dropped_ms));
  EXPECT_GE(seen_us, 0);
  EXPECT_LT(seen_us, 10000);
  EXPECT_GT(dropped_ms, 1000u);
  guint64 interruptions = 0;
  g_object_get(src, "interruptions", &interruptions, nullptr);
  EXPECT_EQ(interruptions, 1u);

  // The stream continues after the flush with the next answer.
  server.send_json(0, model_audio(ramp(0, 4800)));
  EXPECT_TRUE(wait_until([&] { return probe.buffers_after_flush.load() >= 5; }));
  EXPECT_EQ(srcp.first_error(), nullptr);
  gst_object_unref(out);
  gst_object_unref(src);
}

// ---- pairing and EOS -------------------------------------------------------------------------

TEST_F(GeminiLiveTest, PairsAcrossPipelinesWhicheverStartsFirst) {
  Pipeline srcp("geminilivesrc session=" + session() +
                " ! appsink name=out sync=false max-buffers=0");
  ASSERT_NE(gst_element_set_state(srcp.get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  std::this_thread::sleep_for(50ms);
  Pipeline sinkp(live_tone() + " ! geminilivesink " + sink_props());
  gst_element_set_state(sinkp.get(), GST_STATE_PLAYING);
  ASSERT_TRUE(wait_setup());

  // A second sink for the same session is refused.
  Pipeline other(live_tone() + " ! geminilivesink " + sink_props());
  EXPECT_EQ(gst_element_set_state(other.get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  const auto [domain, code] = wait_error(other);
  EXPECT_EQ(domain, GST_RESOURCE_ERROR);
  EXPECT_EQ(code, GST_RESOURCE_ERROR_BUSY);

  const auto speech = ramp(-3000, 6000);
  server.send_json(0, model_audio(speech));
  GstElement *out = srcp.by_name("out");
  std::vector<std::int16_t> got;
  GstClockTime last_end = GST_CLOCK_TIME_NONE;
  while (got.size() < speech.size()) {
    GstSample *sample = gst_app_sink_try_pull_sample(GST_APP_SINK(out), 5 * GST_SECOND);
    ASSERT_NE(sample, nullptr) << got.size() << " samples so far";
    GstStructure *s = gst_caps_get_structure(gst_sample_get_caps(sample), 0);
    int rate = 0, channels = 0;
    gst_structure_get_int(s, "rate", &rate);
    gst_structure_get_int(s, "channels", &channels);
    EXPECT_EQ(rate, 24000);
    EXPECT_EQ(channels, 1);
    GstBuffer *b = gst_sample_get_buffer(sample);
    if (GST_CLOCK_TIME_IS_VALID(last_end)) {
      EXPECT_EQ(GST_BUFFER_PTS(b), last_end) << "speech of one burst is contiguous";
    }
    last_end = GST_BUFFER_PTS(b) + GST_BUFFER_DURATION(b);
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_READ);
    for (gsize k = 0; k + 1 < map.size; k += 2)
      got.push_back(std::int16_t(GST_READ_UINT16_LE(map.data + k)));
    gst_buffer_unmap(b, &map);
    gst_sample_unref(sample);
  }
  EXPECT_EQ(got, speech);
  gst_object_unref(out);
}

TEST_F(GeminiLiveTest, EosWaitsForTheModelsTurnThenEndsBothElements) {
  std::thread late;
  server.set_handler([&late](WsTestServer &srv, int c, const std::string &msg) {
    if (msg.find("audioStreamEnd") == std::string::npos)
      return;
    srv.send_json(c, json::parse(R"({"serverContent":{"inputTranscription":{"text":"hello","finished":true}}})"));
    srv.send_json(c, model_audio(ramp(0, 12000)));
    srv.send_json(c, json::parse(R"({"serverContent":{"outputTranscription":{"text":"Hi there."}}})"));
    srv.send_json(c, json::parse(R"({"serverContent":{"generationComplete":true}})"));
    // The turn completes later, as after real-time playback on the service's side.
    late = std::thread([&srv, c] {
      std::this_thread::sleep_for(400ms);
      srv.send_json(c, json::parse(R"({"serverContent":{"turnComplete":true}})"));
    });
  });
  Pipeline p(tone(0.5) + " ! geminilivesink reply-timeout=5000 " + sink_props() +
             "  geminilivesrc session=" + session() + " ! appsink name=out sync=false max-buffers=0 wait-on-eos=false");
  const auto t0 = std::chrono::steady_clock::now();
  const GstMessageType end = p.run(10s);
  const auto took = std::chrono::steady_clock::now() - t0;
  if (late.joinable())
    late.join();
  ASSERT_EQ(end, GST_MESSAGE_EOS);
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 4s) << "EOS should follow turnComplete, not the reply timeout";
  ASSERT_EQ(p.element_messages("gemstream-live-turn-complete").size(), 1u)
      << "EOS came before the model's turn was complete";

  GstElement *out = p.by_name("out");
  std::size_t samples = 0;
  while (GstSample *s = gst_app_sink_try_pull_sample(GST_APP_SINK(out), 0)) {
    samples += gst_buffer_get_size(gst_sample_get_buffer(s)) / 2;
    gst_sample_unref(s);
  }
  EXPECT_TRUE(gst_app_sink_is_eos(GST_APP_SINK(out)));
  EXPECT_EQ(samples, 12000u);
  gst_object_unref(out);
}

TEST_F(GeminiLiveTest, EosAfterReplyTimeoutWhenTheModelStaysSilent) {
  Pipeline p(tone(0.3) + " ! geminilivesink reply-timeout=400 " + sink_props());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(p.run(10s), GST_MESSAGE_EOS);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 3s);
}

TEST_F(GeminiLiveTest, CyclesStatesWithALiveSession) {
  for (int round = 0; round < 4; ++round) {
    Pipeline p(live_tone() + " ! geminilivesink " + sink_props() + "  geminilivesrc session=" +
               session() + " ! fakesink");
    ASSERT_NE(gst_element_set_state(p.get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
    ASSERT_TRUE(wait_setup(round));
    server.send_json(round, model_audio(ramp(0, 2400)));
    std::this_thread::sleep_for(50ms);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(gst_element_set_state(p.get(), GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    EXPECT_EQ(p.first_error(), nullptr);
  }
  ASSERT_TRUE(server.wait_for([](const auto &cs) {
    for (const auto &c : cs)
      if (c.open)
        return false;
    return cs.size() == 4;
  }));
  for (const auto &c : server.connections())
    EXPECT_EQ(c.client_close_code, std::optional<int>(1000)) << "connection " << c.id;
}

// ---- end to end, against the local backend ---------------------------------------------------

namespace {

struct WavInfo {
  int rate = 0;
  int channels = 0;
  int bits = 0;
  std::vector<std::int16_t> samples;
};

// A canonical PCM WAV as wavenc writes it (RIFF, "fmt " then "data").
std::optional<WavInfo> read_wav(const std::string &path) {
  std::string bytes;
  try {
    bytes = gemstream::gst::read_file(path);
  } catch (const std::exception &) {
    return std::nullopt;
  }
  auto u32 = [&](std::size_t o) { return GST_READ_UINT32_LE(bytes.data() + o); };
  auto u16 = [&](std::size_t o) { return GST_READ_UINT16_LE(bytes.data() + o); };
  if (bytes.size() < 12 || bytes.compare(0, 4, "RIFF") != 0 || bytes.compare(8, 4, "WAVE") != 0)
    return std::nullopt;
  WavInfo info;
  for (std::size_t o = 12; o + 8 <= bytes.size();) {
    const std::string id = bytes.substr(o, 4);
    const std::size_t size = u32(o + 4);
    if (id == "fmt " && o + 24 <= bytes.size()) {
      info.channels = u16(o + 10);
      info.rate = int(u32(o + 12));
      info.bits = u16(o + 22);
    } else if (id == "data") {
      const std::size_t n = std::min(size, bytes.size() - o - 8) / 2;
      for (std::size_t i = 0; i < n; ++i)
        info.samples.push_back(std::int16_t(u16(o + 8 + 2 * i)));
    }
    o += 8 + size + (size & 1);
  }
  return info;
}

std::string lower(std::string s) {
  for (char &c : s)
    c = char(g_ascii_tolower(c));
  return s;
}

} // namespace

TEST(GeminiLiveEndToEnd, SpokenQuestionFromAWavGetsASpokenReply) {
  gchar *flite = g_find_program_in_path("flite");
  if (!flite)
    GTEST_SKIP() << "flite is not installed";
  g_free(flite);
  gchar *dir = g_dir_make_tmp("geminilive-XXXXXX", nullptr);
  ASSERT_NE(dir, nullptr);
  const std::string in = std::string(dir) + "/question.wav";
  const std::string out = std::string(dir) + "/reply.wav";
  const std::string cmd = "flite -voice rms -t \"hello how are you\" -o " + in;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  gemstream::LocalBackend backend;
  backend.start();
  Pipeline p("filesrc location=" + in +
             " ! wavparse ! audioconvert ! audioresample ! geminilivesink sync=true base-url=" +
             backend.base_url() + " session=e2e  geminilivesrc session=e2e ! wavenc ! filesink location=" + out);
  ASSERT_TRUE(p.get()) << p.parse_error();
  const GstMessageType end = p.run(40s);
  if (end == GST_MESSAGE_ERROR) {
    GError *err = nullptr;
    gchar *dbg = nullptr;
    gst_message_parse_error(p.first_error(), &err, &dbg);
    ADD_FAILURE() << err->message << " (" << (dbg ? dbg : "") << ")";
    g_error_free(err);
    g_free(dbg);
  }
  ASSERT_EQ(end, GST_MESSAGE_EOS);
  gst_element_set_state(p.get(), GST_STATE_NULL);

  std::string heard, said;
  for (const GstStructure *s : p.element_messages("gemstream-live-transcript"))
    (str_field(s, "direction") == "input" ? heard : said) += str_field(s, "text");
  std::printf("[ e2e      ] heard \"%s\", replied \"%s\"\n", heard.c_str(), said.c_str());
  const std::string h = lower(heard);
  EXPECT_TRUE(h.find("hello") != std::string::npos || h.find("how are you") != std::string::npos)
      << heard;
  EXPECT_FALSE(said.empty());
  EXPECT_EQ(p.element_messages("gemstream-live-turn-complete").size(), 1u);

  const auto wav = read_wav(out);
  ASSERT_TRUE(wav.has_value()) << out;
  EXPECT_EQ(wav->rate, 24000);
  EXPECT_EQ(wav->channels, 1);
  EXPECT_EQ(wav->bits, 16);
  const double seconds = double(wav->samples.size()) / 24000.0;
  std::printf("[ e2e      ] reply: %.2f s of 24 kHz audio\n", seconds);
  EXPECT_GT(seconds, 0.3);
  EXPECT_LT(seconds, 30.0);
  double energy = 0;
  for (std::int16_t s : wav->samples)
    energy += double(s) * double(s);
  EXPECT_GT(std::sqrt(energy / double(std::max<std::size_t>(wav->samples.size(), 1))), 300.0)
      << "the reply should be speech, not silence";

  std::remove(in.c_str());
  std::remove(out.c_str());
  g_rmdir(dir);
  g_free(dir);
}

namespace {

// Speech from flite's rms voice (16 kHz mono), or nullopt when flite is missing.
std::optional<std::vector<std::int16_t>> speak(const std::string &text, const std::string &dir) {
  gchar *flite = g_find_program_in_path("flite");
  if (!flite)
    return std::nullopt;
  g_free(flite);
  const std::string path = dir + "/speech.wav";
  const std::string cmd = "flite -voice rms -t \"" + text + "\" -o " + path;
  if (std::system(cmd.c_str()) != 0)
    return std::nullopt;
  auto wav = read_wav(path);
  std::remove(path.c_str());
  if (!wav || wav->rate != 16000 || wav->channels != 1)
    return std::nullopt;
  return wav->samples;
}

void write_wav(const std::string &path, const std::vector<std::int16_t> &pcm, int rate) {
  std::string b;
  auto u32 = [&](guint32 v) { for (int i = 0; i < 4; ++i) b += char((v >> (8 * i)) & 0xff); };
  auto u16 = [&](guint16 v) { b += char(v & 0xff); b += char(v >> 8); };
  b += "RIFF";
  u32(guint32(36 + pcm.size() * 2));
  b += "WAVEfmt ";
  u32(16); u16(1); u16(1); u32(guint32(rate)); u32(guint32(rate * 2)); u16(2); u16(16);
  b += "data";
  u32(guint32(pcm.size() * 2));
  for (std::int16_t s : pcm)
    u16(guint16(s));
  FILE *f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(b.data(), 1, b.size(), f);
  std::fclose(f);
}

class GeminiLiveBackendTest : public ::testing::Test {
protected:
  void SetUp() override {
    gchar *d = g_dir_make_tmp("geminilive-XXXXXX", nullptr);
    ASSERT_NE(d, nullptr);
    dir_ = d;
    g_free(d);
    backend_.start();
  }
  void TearDown() override {
    for (const auto &f : files_)
      std::remove(f.c_str());
    g_rmdir(dir_.c_str());
  }
  std::string file(const std::string &name) {
    files_.push_back(dir_ + "/" + name);
    return files_.back();
  }

  std::string dir_;
  std::vector<std::string> files_;
  gemstream::LocalBackend backend_;
};

} // namespace

TEST_F(GeminiLiveBackendTest, UserSpeakingDuringTheReplyFlushesTheSourceAtOnce) {
  const auto first = speak("hello how are you", dir_);
  const auto second = speak("stop and tell me the time please", dir_);
  if (!first || !second)
    GTEST_SKIP() << "flite is not installed";
  // The second question starts while the model is still answering the first.
  std::vector<std::int16_t> pcm = *first;
  pcm.resize(pcm.size() + 16000 * 2, 0);
  pcm.insert(pcm.end(), second->begin(), second->end());
  pcm.resize(pcm.size() + 16000 / 2, 0);
  const std::string in = file("barge-in.wav");
  write_wav(in, pcm, 16000);

  Pipeline p("filesrc location=" + in +
             " ! wavparse ! audioconvert ! audioresample ! geminilivesink sync=true base-url=" +
             backend_.base_url() +
             " session=barge-in  geminilivesrc name=src session=barge-in ! fakesink sync=true");
  ASSERT_EQ(p.run(40s), GST_MESSAGE_EOS);
  ASSERT_GE(p.element_messages("gemstream-live-interrupted").size(), 1u);
  const auto flushed = p.element_messages("gemstream-live-flushed");
  ASSERT_GE(flushed.size(), 1u);
  gint64 latency_us = -1;
  ASSERT_TRUE(gst_structure_get_int64(flushed[0], "latency-us", &latency_us));
  std::printf("[ measured ] barge-in against the local backend: flush done %.3f ms after "
              "`interrupted` arrived\n", double(latency_us) / 1000.0);
  EXPECT_GE(latency_us, 0);
  EXPECT_LT(latency_us, 10000);
  // Both questions were heard, and the second one answered.
  EXPECT_GE(p.element_messages("gemstream-live-turn-complete").size(), 2u);
}

TEST_F(GeminiLiveBackendTest, ReconnectsAfterADroppedConnectionAndFinishes) {
  const auto question = speak("hello how are you", dir_);
  if (!question)
    GTEST_SKIP() << "flite is not installed";
  const std::string in = file("question.wav");
  write_wav(in, *question, 16000);
  backend_.drop_live_after_chunks(3);

  Pipeline p("filesrc location=" + in +
             " ! wavparse ! audioconvert ! audioresample ! geminilivesink name=s sync=true "
             "reply-timeout=3000 base-url=" + backend_.base_url() +
             " session=dropped  geminilivesrc session=dropped ! fakesink");
  ASSERT_EQ(p.run(40s), GST_MESSAGE_EOS);
  EXPECT_EQ(p.first_error(), nullptr);
  GstElement *s = p.by_name("s");
  guint64 reconnects = 0;
  g_object_get(s, "reconnects", &reconnects, nullptr);
  EXPECT_EQ(reconnects, 1u);
  EXPECT_GE(p.messages(GST_MESSAGE_WARNING).size(), 1u);
  std::vector<std::string> states;
  for (const GstStructure *st : p.element_messages("gemstream-live-state"))
    states.push_back(str_field(st, "state"));
  EXPECT_NE(std::find(states.begin(), states.end(), "reconnecting"), states.end());
  EXPECT_EQ(std::count(states.begin(), states.end(), "ready"), 2);
  gst_object_unref(s);
}

// ---- no input lost: what the local backend received ------------------------------------------

namespace {

constexpr std::size_t kBufferSamples = 320; // 20 ms

// Quiet (RMS about 115, under every VAD threshold of the backend), so no turn starts and the
// backend issues no resumption handle while the audio streams.
std::int16_t quiet_sample(std::size_t n) {
  return std::int16_t(int(n * 37 % 401) - 200);
}

// Pushes `samples` of quiet audio starting at sample `first`; returns the bytes pushed.
std::uint64_t push_quiet(GstElement *appsrc, std::size_t first, std::size_t samples) {
  GstBuffer *buffer = gst_buffer_new_allocate(nullptr, samples * 2, nullptr);
  GstMapInfo map;
  gst_buffer_map(buffer, &map, GST_MAP_WRITE);
  for (std::size_t i = 0; i < samples; ++i)
    GST_WRITE_UINT16_LE(map.data + 2 * i, guint16(quiet_sample(first + i)));
  gst_buffer_unmap(buffer, &map);
  GST_BUFFER_PTS(buffer) = gst_util_uint64_scale(first, GST_SECOND, 16000);
  GST_BUFFER_DURATION(buffer) = gst_util_uint64_scale(samples, GST_SECOND, 16000);
  EXPECT_EQ(gst_app_src_push_buffer(GST_APP_SRC(appsrc), buffer), GST_FLOW_OK);
  return samples * 2;
}

// appsrc name=in ! geminilivesink name=s, against `backend`, with reply-timeout=0: the sink
// posts EOS as soon as its input ends, and closing it must still deliver what is queued.
std::string appsrc_to_sink(const gemstream::LocalBackend &backend, const std::string &session) {
  return "appsrc name=in format=time ! geminilivesink name=s reply-timeout=0 base-url=" +
         backend.base_url() + " session=" + session;
}

void set_appsrc_caps(Pipeline &p) {
  GstElement *in = p.by_name("in");
  GstCaps *caps = gst_caps_from_string(kCaps16k);
  g_object_set(in, "caps", caps, nullptr);
  gst_caps_unref(caps);
  gst_object_unref(in);
}

// The input audio of the conversation as the backend holds it: what its latest connection
// received plus what the resumption handle of its setup carried.
std::uint64_t conversation_bytes(const std::vector<gemstream::LiveAudioCount> &counts) {
  return counts.empty() ? 0 : counts.back().resumed_bytes + counts.back().received_bytes;
}

enum class Fault { GoAway, Drop };

struct Reconnected {
  std::uint64_t pushed = 0;
  guint64 reconnects = 0;
  std::vector<gemstream::LiveAudioCount> counts;
  std::size_t warnings = 0;
};

// Streams 1.5 s of quiet audio at real-time pace into the sink, with `fault` a third of the way
// in, ends the input, closes the pipeline and reports what the backend received.
Reconnected stream_across(gemstream::LocalBackend &backend, Fault fault,
                          const std::string &session) {
  Reconnected out;
  const auto opened = std::chrono::steady_clock::now();
  Pipeline p(appsrc_to_sink(backend, session));
  EXPECT_TRUE(p.get()) << p.parse_error();
  if (!p.get())
    return out;
  set_appsrc_caps(p);
  GstElement *in = p.by_name("in");
  GstElement *sink = p.by_name("s");
  EXPECT_NE(gst_element_set_state(p.get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  // The Gemini Developer API says nothing about which input a resumption handle covers, so the
  // client resends what it wrote after it *received* the newest handle. Input written while a
  // handle is on its way is in neither (a protocol limit, not one of this client): begin after
  // the first handle, and stream quietly so that no turn brings another one.
  EXPECT_EQ(wait_element(p, "gemstream-live-resumption", 10s), GST_MESSAGE_ELEMENT);

  constexpr int kBuffers = 75;
  bool go_away_restored = fault != Fault::GoAway;
  auto restore_go_away = [&] {
    // The new connection must not be sent away too: back to the default for it.
    if (!go_away_restored && backend.live_audio().size() >= 2) {
      backend.set_live_go_away(std::chrono::minutes(10), std::chrono::seconds(50));
      go_away_restored = true;
    }
  };
  for (int i = 0; i < kBuffers; ++i) {
    if (i == kBuffers / 3) {
      if (fault == Fault::GoAway)
        backend.set_live_go_away(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - opened) +
                                     50ms,
                                 30s);
      else
        backend.close_live_sessions(1006, ""); // the socket drops without a close frame
    }
    restore_go_away();
    out.pushed += push_quiet(in, std::size_t(i) * kBufferSamples, kBufferSamples);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(wait_until(
      [&] {
        restore_go_away();
        return backend.live_audio().size() >= 2;
      },
      10s))
      << "no second connection";
  EXPECT_EQ(gst_app_src_end_of_stream(GST_APP_SRC(in)), GST_FLOW_OK);
  EXPECT_EQ(p.wait_for(GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR), 10s), GST_MESSAGE_EOS);
  g_object_get(sink, "reconnects", &out.reconnects, nullptr);
  // Closing writes what is still queued before the connection ends.
  EXPECT_EQ(gst_element_set_state(p.get(), GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  EXPECT_TRUE(wait_until([&] { return backend.live_session_count() == 0; }));
  out.counts = backend.live_audio();
  out.warnings = p.messages(GST_MESSAGE_WARNING).size();
  gst_object_unref(sink);
  gst_object_unref(in);
  return out;
}

} // namespace

TEST_F(GeminiLiveBackendTest, NoInputAudioIsLostAcrossAGoAwayReconnect) {
  const Reconnected r = stream_across(backend_, Fault::GoAway, "goaway-bytes");
  ASSERT_EQ(r.counts.size(), 2u);
  std::printf("[ measured ] goAway: %llu bytes pushed; connection 1 received %llu, connection 2 "
              "%llu (resumed from %llu)\n",
              (unsigned long long)r.pushed, (unsigned long long)r.counts[0].received_bytes,
              (unsigned long long)r.counts[1].received_bytes,
              (unsigned long long)r.counts[1].resumed_bytes);
  EXPECT_EQ(r.reconnects, 1u);
  EXPECT_GT(r.counts[0].received_bytes, 0u);
  EXPECT_GT(r.counts[1].received_bytes, 0u);
  EXPECT_EQ(conversation_bytes(r.counts), r.pushed) << "input lost or sent twice";
}

TEST_F(GeminiLiveBackendTest, NoInputAudioIsLostAcrossADroppedConnection) {
  const Reconnected r = stream_across(backend_, Fault::Drop, "drop-bytes");
  ASSERT_EQ(r.counts.size(), 2u);
  std::printf("[ measured ] drop: %llu bytes pushed; connection 1 received %llu, connection 2 "
              "%llu (resumed from %llu)\n",
              (unsigned long long)r.pushed, (unsigned long long)r.counts[0].received_bytes,
              (unsigned long long)r.counts[1].received_bytes,
              (unsigned long long)r.counts[1].resumed_bytes);
  EXPECT_EQ(r.reconnects, 1u);
  EXPECT_GE(r.warnings, 1u) << "a drop is a recovered fault";
  EXPECT_GT(r.counts[0].received_bytes, 0u);
  EXPECT_EQ(conversation_bytes(r.counts), r.pushed) << "input lost or sent twice";
}

TEST_F(GeminiLiveBackendTest, ClosingRightAfterEosStillSendsTheQueuedInput) {
  // reply-timeout=0: EOS comes at once, before the session may even be set up; the audio (not
  // a whole number of 40 ms chunks) must reach the service all the same.
  Pipeline p(appsrc_to_sink(backend_, "tail-bytes"));
  ASSERT_TRUE(p.get()) << p.parse_error();
  set_appsrc_caps(p);
  GstElement *in = p.by_name("in");
  ASSERT_NE(gst_element_set_state(p.get(), GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  const std::uint64_t pushed = push_quiet(in, 0, 16100);
  ASSERT_EQ(gst_app_src_end_of_stream(GST_APP_SRC(in)), GST_FLOW_OK);
  ASSERT_EQ(p.wait_for(GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR), 10s), GST_MESSAGE_EOS);
  const bool connected_before_close = backend_.live_session_count() > 0;
  ASSERT_EQ(gst_element_set_state(p.get(), GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  ASSERT_TRUE(wait_until([&] { return backend_.live_session_count() == 0; }));
  const auto counts = backend_.live_audio();
  ASSERT_EQ(counts.size(), 1u);
  std::printf("[ measured ] closed %s the connection was up: %llu of %llu bytes arrived\n",
              connected_before_close ? "after" : "before",
              (unsigned long long)counts[0].received_bytes, (unsigned long long)pushed);
  EXPECT_EQ(counts[0].received_bytes, pushed);
  gst_object_unref(in);
}

// ---- what the local backend hears --------------------------------------------------------------

namespace {

std::vector<std::string> words(const std::string &text) {
  std::vector<std::string> out;
  std::string word;
  for (char c : text + " ") {
    if (g_ascii_isalnum(c) || c == '\'') {
      word += char(g_ascii_tolower(c));
    } else if (!word.empty()) {
      out.push_back(word);
      word.clear();
    }
  }
  return out;
}

// 1 - word error rate (substitutions, insertions and deletions over the reference's words).
double word_accuracy(const std::string &reference, const std::string &heard) {
  const auto ref = words(reference);
  const auto hyp = words(heard);
  std::vector<std::size_t> row(hyp.size() + 1);
  for (std::size_t j = 0; j <= hyp.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= ref.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= hyp.size(); ++j) {
      const std::size_t up = row[j];
      row[j] =
          std::min({row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] == hyp[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return 1.0 - double(row[hyp.size()]) / double(std::max<std::size_t>(ref.size(), 1));
}

} // namespace

TEST_F(GeminiLiveBackendTest, SpokenRequestsAreTranscribedAlmostWordForWord) {
  // The capability requests come first: agent tool calls are triggered from what is heard.
  const std::vector<std::string> phrases = {
      "create a card with a meditation image", "make my chat background a peaceful beach sunset",
      "what's the latest on AI regulation",    "hello how are you",
      "what is the weather like today",
  };
  std::vector<std::int16_t> pcm(16000 / 2, 0);
  for (const std::string &phrase : phrases) {
    const auto speech = speak(phrase, dir_);
    if (!speech)
      GTEST_SKIP() << "flite is not installed";
    pcm.insert(pcm.end(), speech->begin(), speech->end());
    pcm.resize(pcm.size() + 16000, 0); // a second of silence ends each utterance
  }
  const std::string in = file("requests.wav");
  write_wav(in, pcm, 16000);

  // The file goes in as fast as it is read (sync=false), the whole of it held until the
  // session is ready; a text-answering (half-cascade) model, so that no reply is paced as
  // speech. Same bytes, same 40 ms messages as in real time: only the waiting is left out.
  Pipeline p("filesrc location=" + in +
             " ! wavparse ! audioconvert ! audioresample ! geminilivesink max-buffered=60000 "
             "model=gemini-live-2.5-flash-preview response-modality=text reply-timeout=3000 "
             "base-url=" +
             backend_.base_url() + " session=transcribed");
  ASSERT_TRUE(p.get()) << p.parse_error();
  ASSERT_EQ(p.run(60s), GST_MESSAGE_EOS);
  ASSERT_TRUE(wait_until(
      [&] {
        // Each utterance is transcribed, the superseded ones too; wait for the last of them.
        p.wait_for(GST_MESSAGE_ELEMENT, 50ms);
        std::size_t heard = 0;
        for (const GstStructure *s : p.element_messages("gemstream-live-transcript"))
          heard += str_field(s, "direction") == "input";
        return heard >= phrases.size();
      },
      20s));

  std::vector<std::string> heard;
  for (const GstStructure *s : p.element_messages("gemstream-live-transcript"))
    if (str_field(s, "direction") == "input")
      heard.push_back(str_field(s, "text"));
  ASSERT_EQ(heard.size(), phrases.size()) << "utterances split or merged";
  const gemstream::CapabilitySet capabilities = gemstream::CapabilitySet::load_default();
  double total = 0;
  for (std::size_t i = 0; i < phrases.size(); ++i) {
    const double accuracy = word_accuracy(phrases[i], heard[i]);
    total += accuracy * double(words(phrases[i]).size());
    std::printf("[ measured ] \"%s\" heard as \"%s\": word accuracy %.0f%%\n", phrases[i].c_str(),
                heard[i].c_str(), 100 * accuracy);
    // Agent capabilities fire on what is heard: the same call with the same arguments.
    const auto wanted = capabilities.match_utterance(phrases[i]);
    const auto got = capabilities.match_utterance(heard[i]);
    if (wanted) {
      ASSERT_TRUE(got) << heard[i];
      EXPECT_EQ(got->name, wanted->name);
      EXPECT_EQ(json::parse(got->args_json), json::parse(wanted->args_json)) << heard[i];
    } else {
      EXPECT_FALSE(got) << heard[i];
      // A word in four may go astray in conversation, which the stand-in model answers loosely.
      EXPECT_GE(accuracy, 0.75) << heard[i];
    }
  }
  std::size_t reference_words = 0;
  for (const std::string &phrase : phrases)
    reference_words += words(phrase).size();
  const double overall = total / double(reference_words);
  std::printf("[ measured ] word accuracy over %zu words: %.1f%%\n", reference_words,
              100 * overall);
  EXPECT_GE(overall, 0.9);
}

TEST_F(GeminiLiveBackendTest, SpokenSearchForAiRegulationIsGroundedWithSources) {
  const auto question = speak("what's the latest on AI regulation", dir_);
  if (!question)
    GTEST_SKIP() << "flite is not installed";
  std::vector<std::int16_t> pcm(16000 / 2, 0);
  pcm.insert(pcm.end(), question->begin(), question->end());
  pcm.resize(pcm.size() + 16000, 0);
  const std::string in = file("search.wav");
  write_wav(in, pcm, 16000);

  Pipeline p("filesrc location=" + in +
             " ! wavparse ! audioconvert ! audioresample ! geminilivesink enable-search=true "
             "max-buffered=60000 model=gemini-live-2.5-flash-preview response-modality=text "
             "reply-timeout=3000 "
             "base-url=" +
             backend_.base_url() + " session=grounded");
  ASSERT_TRUE(p.get()) << p.parse_error();
  ASSERT_EQ(p.run(60s), GST_MESSAGE_EOS);
  const auto grounding = p.element_messages("gemstream-live-grounding");
  ASSERT_EQ(grounding.size(), 1u);
  const json metadata = json::parse(str_field(grounding[0], "metadata"));
  ASSERT_GE(metadata["groundingChunks"].size(), 1u);
  EXPECT_EQ(metadata["groundingChunks"][0]["web"]["domain"], "europa.eu");
  EXPECT_EQ(metadata["webSearchQueries"], json::array({"AI regulation"}));
  EXPECT_NE(str_field(grounding[0], "citations").find("https://"), std::string::npos)
      << str_field(grounding[0], "citations");
  // The supports point into the model's answer.
  std::string answer;
  for (const GstStructure *s : p.element_messages("gemstream-live-text"))
    answer += str_field(s, "text");
  ASSERT_FALSE(metadata["groundingSupports"].empty());
  for (const auto &support : metadata["groundingSupports"]) {
    const auto start = support["segment"]["startIndex"].get<std::size_t>();
    const auto end = support["segment"]["endIndex"].get<std::size_t>();
    ASSERT_LE(end, answer.size()) << answer;
    EXPECT_EQ(answer.substr(start, end - start), support["segment"]["text"]);
  }
  std::printf("[ measured ] grounded answer: %s\n", answer.c_str());
}
