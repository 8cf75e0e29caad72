// Live wire codec against real recorded traffic (tests/fixtures/live-recordings, from Google's
// JS SDK test recordings) and the examples of docs/gemini-protocol.md.
#include "codec.h"
#include "live_codec.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace gemstream::live_codec {
namespace {

using nlohmann::json;

struct Record {
  bool from_client = false;
  std::string payload;
};

// The recording format: '>' (client) or '<' (server), the payload length plus one, a space, the
// payload and a newline.
std::vector<Record> read_recording(const std::string &name) {
  const std::string path =
      std::string(GEMSTREAM_SOURCE_DIR) + "/tests/fixtures/live-recordings/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  std::vector<Record> out;
  std::size_t pos = 0;
  while (pos < data.size()) {
    const char dir = data[pos];
    if (dir != '<' && dir != '>')
      throw std::runtime_error(name + ": bad direction at offset " + std::to_string(pos));
    const std::size_t space = data.find(' ', pos);
    const std::size_t n = std::stoul(data.substr(pos + 1, space - pos - 1));
    if (n == 0 || space + n >= data.size() || data[space + n] != '\n')
      throw std::runtime_error(name + ": bad record length at offset " + std::to_string(pos));
    out.push_back({dir == '>', data.substr(space + 1, n - 1)});
    pos = space + n + 1;
  }
  return out;
}

std::vector<std::string> client_payloads(const std::vector<Record> &records) {
  std::vector<std::string> out;
  for (const Record &r : records)
    if (r.from_client)
      out.push_back(r.payload);
  return out;
}

std::vector<ServerMessage> server_messages(const std::vector<Record> &records) {
  std::vector<ServerMessage> out;
  for (const Record &r : records) {
    if (r.from_client)
      continue;
    // Exactly what the service sends: pretty-printed, trailing newline.
    EXPECT_EQ(r.payload.back(), '\n');
    out.push_back(decode_server_message(r.payload));
    EXPECT_TRUE(out.back().errors.empty()) << r.payload;
  }
  return out;
}

std::string text_of(const ServerContent &sc) {
  std::string out;
  for (const ModelPart &p : sc.parts)
    if (const auto *t = std::get_if<TextChunk>(&p))
      out += t->text;
  return out;
}

LiveConfig recorded_config() {
  LiveConfig c;
  c.model = "gemini-live-2.5-flash-preview";
  c.response_modality.reset(); // the SDK sent no generationConfig
  c.session_resumption = false;
  return c;
}

constexpr const char *kTranscriptionLog = "live_ML_Dev_should_receive_transcription_in_async_"
                                          "session_with_transcription_enabled.websocket.log";
constexpr const char *kRealtimeTextLog =
    "live_ML_Dev_should_reply_to_realtime_text_input.websocket.log";
constexpr const char *kToolLog = "live_ML_Dev_should_send_tool_response.websocket.log";
constexpr const char *kFunctionResponsesLog =
    "live_ML_Dev_should_send_tool_response_with_function_responses.websocket.log";

// ---- recorded sessions --------------------------------------------------------------------------

TEST(LiveCodecRecordings, TheRecordingReaderSeesEveryMessage) {
  EXPECT_EQ(read_recording(kTranscriptionLog).size(), 6u);
  EXPECT_EQ(read_recording(kRealtimeTextLog).size(), 5u);
  EXPECT_EQ(read_recording(kToolLog).size(), 5u);
  EXPECT_EQ(read_recording(kFunctionResponsesLog).size(), 3u);
}

TEST(LiveCodecRecordings, OutputTranscriptionWithoutModelTurn) {
  const auto records = read_recording(kTranscriptionLog);
  const auto msgs = server_messages(records);
  ASSERT_EQ(msgs.size(), 4u);
  ASSERT_TRUE(msgs[0].setup_complete.has_value());
  EXPECT_EQ(*msgs[0].setup_complete, "");
  EXPECT_FALSE(msgs[0].server_content.has_value());

  std::string transcript;
  for (std::size_t i = 1; i < msgs.size(); ++i) {
    ASSERT_TRUE(msgs[i].server_content.has_value());
    const ServerContent &sc = *msgs[i].server_content;
    EXPECT_TRUE(sc.parts.empty());
    EXPECT_FALSE(sc.input_transcription.has_value());
    ASSERT_TRUE(sc.output_transcription.has_value());
    EXPECT_FALSE(sc.output_transcription->finished);
    EXPECT_FALSE(sc.turn_complete);
    transcript += sc.output_transcription->text;
  }
  EXPECT_EQ(transcript, "We could talk about anything you like. Perhaps you have a hobby or an "
                        "interest you'd like to discuss, or maybe there's a topic you've been "
                        "curious about lately.");

  LiveConfig config = recorded_config();
  config.output_transcription = true;
  const auto sent = client_payloads(records);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(encode_setup(config, {}), json::parse(sent[0]));
  EXPECT_EQ(encode_client_content({{"user", "Hello what should we talk about?"}}, true),
            json::parse(sent[1]));
}

TEST(LiveCodecRecordings, RealtimeTextAnsweredInSeveralChunks) {
  const auto records = read_recording(kRealtimeTextLog);
  const auto msgs = server_messages(records);
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_TRUE(msgs[0].setup_complete.has_value());
  ASSERT_TRUE(msgs[1].server_content && msgs[2].server_content);
  EXPECT_EQ(text_of(*msgs[1].server_content), "Yes, I'");
  EXPECT_EQ(text_of(*msgs[2].server_content), "m here! How can I help you today?");
  EXPECT_FALSE(msgs[2].usage.has_value());

  LiveConfig config = recorded_config();
  config.response_modality = LiveModality::Text;
  const auto sent = client_payloads(records);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(encode_setup(config, {}), json::parse(sent[0]));
  EXPECT_EQ(encode_text("Are you there Gemini?"), json::parse(sent[1]));
}

TEST(LiveCodecRecordings, ExecutableCodePartIsSkippedAndToolCallDecoded) {
  const auto records = read_recording(kToolLog);
  const auto msgs = server_messages(records);
  ASSERT_EQ(msgs.size(), 3u);
  ASSERT_TRUE(msgs[1].server_content.has_value());
  EXPECT_TRUE(msgs[1].server_content->parts.empty()); // executableCode only
  EXPECT_FALSE(msgs[1].tool_call.has_value());

  ASSERT_TRUE(msgs[2].tool_call.has_value());
  ASSERT_EQ(msgs[2].tool_call->size(), 1u);
  const LiveFunctionCall &call = msgs[2].tool_call->front();
  EXPECT_EQ(call.id, "function-call-5831923424298605773");
  EXPECT_EQ(call.name, "get_current_weather");
  EXPECT_EQ(json::parse(call.args_json), json({{"location", "Redmond, WA"}}));

  LiveConfig config = recorded_config();
  config.functions.push_back({"get_current_weather", "Get the current weather in a given location",
                              R"({"type":"OBJECT","properties":{"location":{"type":"STRING",
           "description":"The city and state, e.g. San Francisco, CA"},
           "unit":{"type":"STRING","enum":["celsius","fahrenheit"]}},"required":["location"]})"});
  const auto sent = client_payloads(records);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(encode_setup(config, {}), json::parse(sent[0]));
  EXPECT_EQ(encode_client_content({{"user", "what is the weather in Redmond Washington"}}, true),
            json::parse(sent[1]));
}

TEST(LiveCodecRecordings, ToolResponseShape) {
  const auto records = read_recording(kFunctionResponsesLog);
  const auto sent = client_payloads(records);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(encode_setup(recorded_config(), {}), json::parse(sent[0]));
  EXPECT_EQ(encode_tool_response({{"function-call-1", "getStatus", R"({"mood":"happy"})"}}),
            json::parse(sent[1]));
  // Compact JSON in a text frame, as the SDK sends it: no newline, no indentation.
  EXPECT_EQ(encode_tool_response({{"function-call-1", "getStatus", R"({"mood":"happy"})"}})
                .dump()
                .find('\n'),
            std::string::npos);
}

// ---- the reference's examples -------------------------------------------------------------------

TEST(LiveCodecSetup, EveryDocumentedFieldOfTheReferenceExample) {
  LiveConfig c;
  c.model = "gemini-live-2.5-flash-preview-native-audio";
  c.response_modality = LiveModality::Audio;
  c.temperature = 0.7;
  c.voice_name = "Puck";
  c.language_code = "en-US";
  c.media_resolution = MediaResolution::Low;
  c.affective_dialog = false;
  c.system_instruction = "You are a helpful assistant.";
  c.functions.push_back({"make_cover", "Makes a cover image", R"({"type":"OBJECT"})"});
  c.google_search = true;
  c.activity_detection.automatic = true;
  c.activity_detection.start_sensitivity = StartSensitivity::High;
  c.activity_detection.end_sensitivity = EndSensitivity::Low;
  c.activity_detection.prefix_padding_ms = 20;
  c.activity_detection.silence_duration_ms = 100;
  c.activity_handling = ActivityHandling::StartOfActivityInterrupts;
  c.turn_coverage = TurnCoverage::OnlyActivity;
  c.input_transcription = true;
  c.output_transcription = true;
  c.session_resumption = true;
  c.context_compression.enabled = true;
  c.context_compression.trigger_tokens = 25600;
  c.context_compression.target_tokens = 12800;
  c.proactive_audio = true;

  const json expected =
      json::parse(R"({"setup":{"model":"models/gemini-live-2.5-flash-preview-native-audio",
  "generationConfig":{"responseModalities":["AUDIO"],"temperature":0.7,
     "speechConfig":{"voiceConfig":{"prebuiltVoiceConfig":{"voiceName":"Puck"}},"languageCode":"en-US"},
     "mediaResolution":"MEDIA_RESOLUTION_LOW","enableAffectiveDialog":false},
  "systemInstruction":{"parts":[{"text":"You are a helpful assistant."}]},
  "tools":[{"functionDeclarations":[{"name":"make_cover","description":"Makes a cover image",
            "parameters":{"type":"OBJECT"}}]},{"googleSearch":{}}],
  "realtimeInputConfig":{"automaticActivityDetection":{"disabled":false,
        "startOfSpeechSensitivity":"START_SENSITIVITY_HIGH",
        "endOfSpeechSensitivity":"END_SENSITIVITY_LOW",
        "prefixPaddingMs":20,"silenceDurationMs":100},
     "activityHandling":"START_OF_ACTIVITY_INTERRUPTS",
     "turnCoverage":"TURN_INCLUDES_ONLY_ACTIVITY"},
  "inputAudioTranscription":{},"outputAudioTranscription":{},
  "sessionResumption":{"handle":"handle-7"},
  "contextWindowCompression":{"triggerTokens":"25600","slidingWindow":{"targetTokens":"12800"}},
  "proactivity":{"proactiveAudio":true}}})");
  EXPECT_EQ(encode_setup(c, "handle-7"), expected);
}

TEST(LiveCodecSetup, DefaultsAskForAudioAndANewResumableSession) {
  const json setup = encode_setup(LiveConfig{}, {});
  EXPECT_EQ(setup,
            json::parse(R"({"setup":{"model":"models/gemini-live-2.5-flash-preview-native-audio",
      "generationConfig":{"responseModalities":["AUDIO"]},"sessionResumption":{}}})"));
}

TEST(LiveCodecSetup, ManualActivityDetectionAndNoInterruption) {
  LiveConfig c;
  c.activity_detection.automatic = false;
  c.activity_handling = ActivityHandling::NoInterruption;
  c.turn_coverage = TurnCoverage::AllInput;
  EXPECT_EQ(encode_setup(c, {})["setup"]["realtimeInputConfig"],
            json::parse(R"({"automaticActivityDetection":{"disabled":true},
                "activityHandling":"NO_INTERRUPTION","turnCoverage":"TURN_INCLUDES_ALL_INPUT"})"));
}

TEST(LiveCodecSetup, ModelIdAlreadyPrefixedAndHandleOnlyWithResumption) {
  LiveConfig c;
  c.model = "models/gemini-3.1-flash-live-preview";
  c.session_resumption = false;
  const json setup = encode_setup(c, "ignored-handle")["setup"];
  EXPECT_EQ(setup["model"], "models/gemini-3.1-flash-live-preview");
  EXPECT_FALSE(setup.contains("sessionResumption"));
}

TEST(LiveCodecSetup, RejectsBadModelAndBadSchemas) {
  LiveConfig c;
  c.model = "../etc";
  try {
    encode_setup(c, {});
    ADD_FAILURE() << "no error for a path-like model id";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
  }
  c = LiveConfig{};
  c.functions.push_back({"f", "", "{not json"});
  try {
    encode_setup(c, {});
    ADD_FAILURE() << "no error for invalid parameters";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(e.message().find("\"f\""), std::string::npos) << e.message();
  }
  c.functions = {{"", "no name", ""}};
  EXPECT_THROW(encode_setup(c, {}), Error);
}

TEST(LiveCodecRealtime, EveryRealtimeInputShape) {
  const std::int16_t pcm[] = {0, 1, -1, 32767, -32768};
  const json audio = encode_audio(pcm, 5, 16000);
  EXPECT_EQ(audio["realtimeInput"]["audio"]["mimeType"], "audio/pcm;rate=16000");
  EXPECT_EQ(codec::base64_decode(audio["realtimeInput"]["audio"]["data"].get<std::string>()),
            std::string("\x00\x00\x01\x00\xff\xff\xff\x7f\x00\x80", 10));
  EXPECT_EQ(audio.size(), 1u);
  EXPECT_EQ(audio["realtimeInput"].size(), 1u);

  const json video = encode_video_jpeg(std::string("\xff\xd8\xff\xe0", 4));
  EXPECT_EQ(
      video,
      json::parse(R"({"realtimeInput":{"video":{"mimeType":"image/jpeg","data":"/9j/4A=="}}})"));
  EXPECT_EQ(encode_text("hi"), json::parse(R"({"realtimeInput":{"text":"hi"}})"));
  EXPECT_EQ(encode_activity_start(), json::parse(R"({"realtimeInput":{"activityStart":{}}})"));
  EXPECT_EQ(encode_activity_end(), json::parse(R"({"realtimeInput":{"activityEnd":{}}})"));
  EXPECT_EQ(encode_audio_stream_end(), json::parse(R"({"realtimeInput":{"audioStreamEnd":true}})"));
  EXPECT_EQ(encode_client_content({{"user", "a"}, {"model", "b"}}, false),
            json::parse(R"({"clientContent":{"turns":[{"role":"user","parts":[{"text":"a"}]},
                {"role":"model","parts":[{"text":"b"}]}],"turnComplete":false}})"));
}

TEST(LiveCodecRealtime, ToolResponseMustBeAnObject) {
  for (const char *bad : {"42", "\"sunny\"", "{broken", "[1]", ""}) {
    try {
      encode_tool_response({{"id-1", "f", bad}});
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
      EXPECT_NE(e.message().find("id-1"), std::string::npos);
    }
  }
}

// ---- server messages ----------------------------------------------------------------------------

std::string pcm_base64(const std::vector<std::int16_t> &pcm) {
  std::string bytes;
  for (std::int16_t s : pcm) {
    bytes += static_cast<char>(static_cast<std::uint16_t>(s) & 0xff);
    bytes += static_cast<char>(static_cast<std::uint16_t>(s) >> 8);
  }
  return codec::base64_encode(bytes);
}

TEST(LiveCodecServer, ModelAudioAtTheRateOfItsMimeType) {
  const std::vector<std::int16_t> pcm = {100, -100, 32767, -32768, 0, 7};
  auto blob = [](const char *mime, const std::string &data) {
    return json{{"inlineData", {{"mimeType", mime}, {"data", data}}}};
  };
  json wire = json::array();
  wire.push_back(blob("audio/pcm;rate=24000", pcm_base64(pcm)));
  wire.push_back(blob("audio/pcm", pcm_base64(std::vector<std::int16_t>{1})));
  wire.push_back(blob("Audio/PCM; rate=16000", pcm_base64(std::vector<std::int16_t>{2})));
  wire.push_back(blob("image/png", "iVBORw=="));
  wire.push_back(json::parse(R"({"text":"thinking...","thought":true})"));
  wire.push_back(json::parse(R"({"codeExecutionResult":{"outcome":"OUTCOME_OK"}})"));
  wire.push_back(json::parse(R"({"text":"hello"})"));
  json msg;
  msg["serverContent"]["modelTurn"]["parts"] = wire;
  const ServerMessage m = decode_server_message(msg.dump(2) + "\n");
  ASSERT_TRUE(m.errors.empty()) << m.errors.front();
  ASSERT_TRUE(m.server_content.has_value());
  const auto &parts = m.server_content->parts;
  ASSERT_EQ(parts.size(), 4u);
  ASSERT_TRUE(std::holds_alternative<AudioChunk>(parts[0]));
  EXPECT_EQ(std::get<AudioChunk>(parts[0]).pcm, pcm);
  EXPECT_EQ(std::get<AudioChunk>(parts[0]).sample_rate, 24000);
  EXPECT_EQ(std::get<AudioChunk>(parts[1]).sample_rate, 24000);
  EXPECT_EQ(std::get<AudioChunk>(parts[2]).sample_rate, 16000);
  EXPECT_EQ(std::get<AudioChunk>(parts[2]).pcm, std::vector<std::int16_t>{2});
  ASSERT_TRUE(std::holds_alternative<TextChunk>(parts[3]));
  EXPECT_EQ(std::get<TextChunk>(parts[3]).text, "hello");
}

TEST(LiveCodecServer, TurnFlagsTranscriptionsGroundingAndUsageInOneMessage) {
  const ServerMessage m = decode_server_message(R"({
    "serverContent": {"interrupted": true, "generationComplete": true, "turnComplete": true,
      "turnCompleteReason": "NEED_MORE_INPUT", "waitingForInput": true,
      "inputTranscription": {"text": "hello", "finished": true},
      "outputTranscription": {"text": "hi there"},
      "groundingMetadata": {"webSearchQueries": ["euro 2024"], "groundingChunks": [{"web": {"uri": "https://x"}}]}},
    "usageMetadata": {"promptTokenCount": 12, "responseTokenCount": "34", "totalTokenCount": "46",
      "cachedContentTokenCount": 3, "toolUsePromptTokenCount": "5", "thoughtsTokenCount": 6,
      "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": "10"}, {"modality": "TEXT", "tokenCount": 2}],
      "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 34}],
      "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 3}],
      "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 5}],
      "trafficType": "ON_DEMAND"},
    "someFutureField": {"x": 1}
  })");
  ASSERT_TRUE(m.errors.empty()) << m.errors.front();
  ASSERT_TRUE(m.server_content.has_value());
  const ServerContent &sc = *m.server_content;
  EXPECT_TRUE(sc.interrupted);
  EXPECT_TRUE(sc.generation_complete);
  EXPECT_TRUE(sc.turn_complete);
  EXPECT_TRUE(sc.waiting_for_input);
  EXPECT_EQ(sc.turn_complete_reason, "NEED_MORE_INPUT");
  ASSERT_TRUE(sc.input_transcription && sc.output_transcription);
  EXPECT_EQ(sc.input_transcription->text, "hello");
  EXPECT_TRUE(sc.input_transcription->finished);
  EXPECT_EQ(sc.output_transcription->text, "hi there");
  EXPECT_FALSE(sc.output_transcription->finished);
  ASSERT_TRUE(sc.grounding_metadata_json.has_value());
  EXPECT_EQ(json::parse(*sc.grounding_metadata_json)["webSearchQueries"][0], "euro 2024");

  ASSERT_TRUE(m.usage.has_value());
  const LiveUsage &u = *m.usage;
  EXPECT_EQ(u.prompt_token_count, 12);
  EXPECT_EQ(u.response_token_count, 34);
  EXPECT_EQ(u.total_token_count, 46);
  EXPECT_EQ(u.cached_content_token_count, 3);
  EXPECT_EQ(u.tool_use_prompt_token_count, 5);
  EXPECT_EQ(u.thoughts_token_count, 6);
  ASSERT_EQ(u.prompt_tokens_details.size(), 2u);
  EXPECT_EQ(u.prompt_tokens_details[0].modality, "AUDIO");
  EXPECT_EQ(u.prompt_tokens_details[0].token_count, 10);
  EXPECT_EQ(u.prompt_tokens_details[1].token_count, 2);
  ASSERT_EQ(u.response_tokens_details.size(), 1u);
  EXPECT_EQ(u.response_tokens_details[0].token_count, 34);
  ASSERT_EQ(u.cache_tokens_details.size(), 1u);
  ASSERT_EQ(u.tool_use_prompt_tokens_details.size(), 1u);
}

TEST(LiveCodecServer, TheReferenceTurnCompleteWithUsage) {
  const ServerMessage m = decode_server_message(
      R"({"serverContent":{"turnComplete":true},"usageMetadata":{"totalTokenCount":"9007199254740993"}})");
  ASSERT_TRUE(m.server_content && m.usage);
  EXPECT_TRUE(m.server_content->turn_complete);
  EXPECT_EQ(m.usage->total_token_count, 9007199254740993LL); // beyond double precision
}

TEST(LiveCodecServer, SessionControlMessages) {
  ServerMessage m = decode_server_message(R"({"setupComplete":{"sessionId":"s-1"}})");
  EXPECT_EQ(m.setup_complete, std::optional<std::string>("s-1"));

  m = decode_server_message(R"({"goAway":{"timeLeft":"50s"}})");
  EXPECT_EQ(m.go_away, std::optional(std::chrono::milliseconds(50000)));

  m = decode_server_message(
      R"({"sessionResumptionUpdate":{"newHandle":"h-2","resumable":true,"lastConsumedClientMessageIndex":"42"}})");
  ASSERT_TRUE(m.resumption_update.has_value());
  EXPECT_EQ(m.resumption_update->new_handle, "h-2");
  EXPECT_TRUE(m.resumption_update->resumable);
  EXPECT_EQ(m.resumption_update->last_consumed_client_message_index,
            std::optional<std::int64_t>(42));

  m = decode_server_message(R"({"sessionResumptionUpdate":{"resumable":false}})");
  ASSERT_TRUE(m.resumption_update.has_value());
  EXPECT_TRUE(m.resumption_update->new_handle.empty());
  EXPECT_FALSE(m.resumption_update->last_consumed_client_message_index.has_value());

  m = decode_server_message(R"({"toolCallCancellation":{"ids":["a","b"]}})");
  EXPECT_EQ(m.tool_call_cancellation, std::optional(std::vector<std::string>{"a", "b"}));

  m = decode_server_message(R"({"toolCall":{"functionCalls":[{"id":"c1","name":"noargs"}]}})");
  ASSERT_TRUE(m.tool_call.has_value());
  EXPECT_EQ(m.tool_call->at(0).args_json, "{}");
}

// ---- malformed input ----------------------------------------------------------------------------

TEST(LiveCodecMalformed, NotAJsonObjectThrowsProtocol) {
  for (const char *bad : {"", "not json", "[1,2]", "42", "{\"a\":", "\"text\""}) {
    try {
      decode_server_message(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::Protocol);
    }
  }
}

TEST(LiveCodecMalformed, ABadFieldIsReportedAndTheOthersStillDecode) {
  ServerMessage m = decode_server_message(
      R"({"serverContent":{"turnComplete":"yes"},"usageMetadata":{"totalTokenCount":5}})");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_NE(m.errors[0].find("serverContent.turnComplete"), std::string::npos) << m.errors[0];
  EXPECT_FALSE(m.server_content.has_value());
  ASSERT_TRUE(m.usage.has_value());
  EXPECT_EQ(m.usage->total_token_count, 5);

  struct Case {
    const char *json;
    const char *path;
  };
  const Case cases[] = {
      {R"({"serverContent":5})", "serverContent"},
      {R"({"serverContent":{"modelTurn":{"parts":{}}}})", "serverContent.modelTurn.parts"},
      {R"({"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm","data":"@@@"}}]}}})",
       "serverContent.modelTurn.parts[0].inlineData.data"},
      {R"({"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm","data":"AAAA"}}]}}})",
       "odd number of bytes"},
      {R"({"serverContent":{"outputTranscription":{"text":7}}})",
       "serverContent.outputTranscription.text"},
      {R"({"usageMetadata":{"promptTokenCount":"many"}})", "usageMetadata.promptTokenCount"},
      {R"({"usageMetadata":{"promptTokenCount":1.5}})", "usageMetadata.promptTokenCount"},
      {R"({"usageMetadata":{"promptTokensDetails":[3]}})", "usageMetadata.promptTokensDetails[0]"},
      {R"({"toolCall":{"functionCalls":[{"id":"x","args":{}}]}})",
       "toolCall.functionCalls[0].name"},
      {R"({"toolCall":{"functionCalls":[{"name":"f","args":"{}"}]}})",
       "toolCall.functionCalls[0].args"},
      {R"({"toolCallCancellation":{"ids":[1]}})", "toolCallCancellation.ids[0]"},
      {R"({"goAway":{"timeLeft":"soon"}})", "goAway.timeLeft"},
      {R"({"sessionResumptionUpdate":{"resumable":"true"}})", "sessionResumptionUpdate.resumable"},
      {R"({"setupComplete":[]})", "setupComplete"},
  };
  for (const Case &c : cases) {
    m = decode_server_message(c.json);
    ASSERT_EQ(m.errors.size(), 1u) << c.json;
    EXPECT_NE(m.errors[0].find(c.path), std::string::npos) << m.errors[0];
  }
}

TEST(LiveCodecMalformed, UnknownFieldsAndNullsAreNotErrors) {
  const ServerMessage m = decode_server_message(
      R"({"serverContent":{"modelTurn":null,"newThing":[1],"turnComplete":null},"usageMetadata":null,"voiceActivity":{"x":1}})");
  EXPECT_TRUE(m.errors.empty());
  ASSERT_TRUE(m.server_content.has_value());
  EXPECT_FALSE(m.server_content->turn_complete);
  EXPECT_FALSE(m.usage.has_value());
}

// ---- helpers ------------------------------------------------------------------------------------

TEST(LiveCodecHelpers, Durations) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parse_duration("50s"), milliseconds(50000));
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parse_duration("0.000001s"), milliseconds(0));
  EXPECT_EQ(parse_duration("0.25s"), milliseconds(250));
  EXPECT_EQ(parse_duration("8.123456789s"), milliseconds(8123));
  for (const char *bad :
       {"", "s", "5", "-1s", "1.s", ".5s", "1,5s", "1.5.5s", "abc", "1.1234567890s"})
    EXPECT_THROW(parse_duration(bad), Error) << bad;
}

TEST(LiveCodecHelpers, PcmSampleRates) {
  EXPECT_EQ(pcm_sample_rate("audio/pcm;rate=24000", 0), 24000);
  EXPECT_EQ(pcm_sample_rate("audio/pcm; rate=16000", 0), 16000);
  EXPECT_EQ(pcm_sample_rate("audio/pcm", 24000), 24000);
  EXPECT_EQ(pcm_sample_rate("audio/pcm;rate=", 24000), 24000);
  EXPECT_EQ(pcm_sample_rate("audio/pcm;channels=1;rate=8000", 24000), 8000);
  EXPECT_EQ(pcm_sample_rate("audio/wav", 24000), std::nullopt);
  EXPECT_EQ(pcm_sample_rate("image/png", 24000), std::nullopt);
}

TEST(LiveCodecHelpers, WebSocketUrlFromTheBaseUrl) {
  Endpoint ep;
  ep.base_url = "https://generativelanguage.googleapis.com";
  ep.api_key = "secret-key";
  EXPECT_EQ(live_websocket_url(ep),
            "wss://generativelanguage.googleapis.com/ws/"
            "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent");
  ep.base_url = "http://127.0.0.1:8080";
  ep.api_version = "v1alpha";
  EXPECT_EQ(live_websocket_url(ep), "ws://127.0.0.1:8080/ws/google.ai.generativelanguage.v1alpha."
                                    "GenerativeService.BidiGenerateContent");
  ep.base_url = "HTTPS://proxy.example:8443/gemini/";
  ep.api_version = "v1beta";
  EXPECT_EQ(live_websocket_url(ep), "wss://proxy.example:8443/gemini/ws/"
                                    "google.ai.generativelanguage.v1beta.GenerativeService."
                                    "BidiGenerateContent");
  ep.base_url = "http://[::1]:9000";
  EXPECT_EQ(live_websocket_url(ep).substr(0, 17), "ws://[::1]:9000/w");
  EXPECT_EQ(live_websocket_url(ep).find("secret-key"), std::string::npos);
  for (const char *bad :
       {"ftp://x", "127.0.0.1:80", "http://", "http://h:99999", "http://u@h", "http://h/?q"}) {
    ep.base_url = bad;
    try {
      live_websocket_url(ep);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::Config) << bad;
    }
  }
}

} // namespace
} // namespace gemstream::live_codec
