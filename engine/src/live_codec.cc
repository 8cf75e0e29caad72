#include "live_codec.h"

#include "codec.h"

#include <charconv>
#include <cmath>
#include <utility>

namespace gemstream::live_codec {
namespace {

using nlohmann::json;

// Thrown inside the decoder for one malformed field; caught per top-level field.
struct FieldError {
  std::string text;
};

[[noreturn]] void fail(const std::string &path, const std::string &problem) {
  throw FieldError{path + ": " + problem};
}

std::string join(const std::string &path, const char *key) {
  return path + "." + key;
}

std::string index(const std::string &path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// nullptr when absent or null (proto3 JSON writes null for unset messages at times).
const json *member(const json &obj, const char *key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null())
    return nullptr;
  return &*it;
}

void expect_object(const json &v, const std::string &path) {
  if (!v.is_object())
    fail(path, std::string("expected an object, got ") + v.type_name());
}

const json *object(const json &obj, const char *key, const std::string &path) {
  const json *v = member(obj, key);
  if (v != nullptr)
    expect_object(*v, join(path, key));
  return v;
}

const json *array(const json &obj, const char *key, const std::string &path) {
  const json *v = member(obj, key);
  if (v != nullptr && !v->is_array())
    fail(join(path, key), std::string("expected an array, got ") + v->type_name());
  return v;
}

std::string string(const json &obj, const char *key, const std::string &path) {
  const json *v = member(obj, key);
  if (v == nullptr)
    return {};
  if (!v->is_string())
    fail(join(path, key), std::string("expected a string, got ") + v->type_name());
  return v->get<std::string>();
}

bool boolean(const json &obj, const char *key, const std::string &path) {
  const json *v = member(obj, key);
  if (v == nullptr)
    return false;
  if (!v->is_boolean())
    fail(join(path, key), std::string("expected a boolean, got ") + v->type_name());
  return v->get<bool>();
}

// proto3 JSON writes int64 as a string and int32 as a number; the service mixes both.
std::optional<std::int64_t> optional_int64(const json &obj, const char *key,
                                           const std::string &path) {
  const json *v = member(obj, key);
  if (v == nullptr)
    return std::nullopt;
  if (v->is_number_unsigned()) {
    const auto u = v->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX))
      fail(join(path, key), "integer out of range");
    return static_cast<std::int64_t>(u);
  }
  if (v->is_number_integer())
    return v->get<std::int64_t>();
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > 9.2e18)
      fail(join(path, key), "expected an integer, got " + v->dump());
    return static_cast<std::int64_t>(d);
  }
  if (v->is_string()) {
    const auto &s = v->get_ref<const std::string &>();
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size())
      fail(join(path, key), "expected an integer, got \"" + s + "\"");
    return out;
  }
  fail(join(path, key), std::string("expected an integer, got ") + v->type_name());
}

std::int64_t int64(const json &obj, const char *key, const std::string &path) {
  return optional_int64(obj, key, path).value_or(0);
}

std::vector<LiveModalityTokens> modality_counts(const json &obj, const char *key,
                                                const std::string &path) {
  std::vector<LiveModalityTokens> out;
  if (const json *arr = array(obj, key, path)) {
    const std::string ap = join(path, key);
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const std::string ip = index(ap, i);
      expect_object((*arr)[i], ip);
      out.push_back({string((*arr)[i], "modality", ip), int64((*arr)[i], "tokenCount", ip)});
    }
  }
  return out;
}

std::optional<ModelPart> decode_part(const json &p, const std::string &path) {
  expect_object(p, path);
  if (member(p, "text") != nullptr) {
    std::string text = string(p, "text", path);
    if (boolean(p, "thought", path))
      return std::nullopt;
    return TextChunk{std::move(text)};
  }
  if (const json *blob = object(p, "inlineData", path)) {
    const std::string bp = join(path, "inlineData");
    const std::string mime = string(*blob, "mimeType", bp);
    // The service speaks at 24 kHz; a bare "audio/pcm" means that rate.
    const std::optional<int> rate = pcm_sample_rate(mime, 24000);
    if (!rate)
      return std::nullopt;
    std::string bytes;
    try {
      bytes = codec::base64_decode(string(*blob, "data", bp));
    } catch (const Error &e) {
      fail(join(bp, "data"), e.message());
    }
    if (bytes.size() % 2 != 0)
      fail(join(bp, "data"), "odd number of bytes in 16-bit PCM audio");
    return AudioChunk{codec::s16le_samples(bytes), *rate};
  }
  // executableCode, codeExecutionResult, fileData and kinds added later are not ours.
  return std::nullopt;
}

std::optional<Transcription> transcription(const json &obj, const char *key,
                                           const std::string &path) {
  const json *t = object(obj, key, path);
  if (t == nullptr)
    return std::nullopt;
  const std::string tp = join(path, key);
  return Transcription{string(*t, "text", tp), boolean(*t, "finished", tp)};
}

// A malformed part costs only itself (its error goes to `part_errors`): the turn's other parts
// and its turnComplete still count.
ServerContent decode_server_content(const json &sc, std::vector<std::string> &part_errors) {
  const std::string path = "serverContent";
  expect_object(sc, path);
  ServerContent out;
  if (const json *turn = object(sc, "modelTurn", path)) {
    const std::string tp = join(path, "modelTurn");
    if (const json *parts = array(*turn, "parts", tp)) {
      const std::string pp = join(tp, "parts");
      for (std::size_t i = 0; i < parts->size(); ++i) {
        try {
          if (auto part = decode_part((*parts)[i], index(pp, i)))
            out.parts.push_back(std::move(*part));
        } catch (const FieldError &e) {
          part_errors.push_back(e.text);
        }
      }
    }
  }
  out.input_transcription = transcription(sc, "inputTranscription", path);
  out.output_transcription = transcription(sc, "outputTranscription", path);
  if (const json *gm = object(sc, "groundingMetadata", path))
    out.grounding_metadata_json = gm->dump();
  out.interrupted = boolean(sc, "interrupted", path);
  out.generation_complete = boolean(sc, "generationComplete", path);
  out.turn_complete = boolean(sc, "turnComplete", path);
  out.turn_complete_reason = string(sc, "turnCompleteReason", path);
  out.waiting_for_input = boolean(sc, "waitingForInput", path);
  return out;
}

std::vector<LiveFunctionCall> decode_tool_call(const json &tc) {
  const std::string path = "toolCall";
  expect_object(tc, path);
  std::vector<LiveFunctionCall> calls;
  if (const json *fcs = array(tc, "functionCalls", path)) {
    const std::string fp = join(path, "functionCalls");
    for (std::size_t i = 0; i < fcs->size(); ++i) {
      const std::string cp = index(fp, i);
      const json &c = (*fcs)[i];
      expect_object(c, cp);
      LiveFunctionCall call{string(c, "id", cp), string(c, "name", cp), "{}"};
      if (call.name.empty())
        fail(join(cp, "name"), "missing");
      if (const json *args = object(c, "args", cp))
        call.args_json = args->dump();
      calls.push_back(std::move(call));
    }
  }
  return calls;
}

std::vector<std::string> decode_cancellation(const json &tcc) {
  const std::string path = "toolCallCancellation";
  expect_object(tcc, path);
  std::vector<std::string> ids;
  if (const json *arr = array(tcc, "ids", path)) {
    for (std::size_t i = 0; i < arr->size(); ++i) {
      if (!(*arr)[i].is_string())
        fail(index(join(path, "ids"), i),
             std::string("expected a string, got ") + (*arr)[i].type_name());
      ids.push_back((*arr)[i].get<std::string>());
    }
  }
  return ids;
}

std::chrono::milliseconds decode_go_away(const json &ga) {
  const std::string path = "goAway";
  expect_object(ga, path);
  const std::string left = string(ga, "timeLeft", path);
  if (left.empty())
    return std::chrono::milliseconds(0);
  try {
    return parse_duration(left);
  } catch (const Error &e) {
    fail(join(path, "timeLeft"), e.message());
  }
}

LiveResumptionUpdate decode_resumption(const json &u) {
  const std::string path = "sessionResumptionUpdate";
  expect_object(u, path);
  LiveResumptionUpdate out;
  out.new_handle = string(u, "newHandle", path);
  out.resumable = boolean(u, "resumable", path);
  out.last_consumed_client_message_index =
      optional_int64(u, "lastConsumedClientMessageIndex", path);
  return out;
}

LiveUsage decode_usage(const json &u) {
  const std::string path = "usageMetadata";
  expect_object(u, path);
  LiveUsage out;
  out.prompt_token_count = int64(u, "promptTokenCount", path);
  out.cached_content_token_count = int64(u, "cachedContentTokenCount", path);
  out.response_token_count = int64(u, "responseTokenCount", path);
  out.tool_use_prompt_token_count = int64(u, "toolUsePromptTokenCount", path);
  out.thoughts_token_count = int64(u, "thoughtsTokenCount", path);
  out.total_token_count = int64(u, "totalTokenCount", path);
  out.prompt_tokens_details = modality_counts(u, "promptTokensDetails", path);
  out.cache_tokens_details = modality_counts(u, "cacheTokensDetails", path);
  out.response_tokens_details = modality_counts(u, "responseTokensDetails", path);
  out.tool_use_prompt_tokens_details = modality_counts(u, "toolUsePromptTokensDetails", path);
  return out;
}

// Decodes doc[key] with `fn` into `out`, or records why it could not.
template <typename T, typename Fn>
void decode_field(const json &doc, const char *key, std::optional<T> &out,
                  std::vector<std::string> &errors, Fn fn) {
  const json *v = member(doc, key);
  if (v == nullptr)
    return;
  try {
    out = fn(*v);
  } catch (const FieldError &e) {
    errors.push_back(e.text);
  }
}

json int64_string(std::int64_t v) {
  return std::to_string(v);
}

const char *modality_name(LiveModality m) {
  return m == LiveModality::Text ? "TEXT" : "AUDIO";
}

const char *start_sensitivity_name(StartSensitivity s) {
  return s == StartSensitivity::High ? "START_SENSITIVITY_HIGH" : "START_SENSITIVITY_LOW";
}

const char *end_sensitivity_name(EndSensitivity s) {
  return s == EndSensitivity::High ? "END_SENSITIVITY_HIGH" : "END_SENSITIVITY_LOW";
}

const char *media_resolution_name(MediaResolution r) {
  switch (r) {
  case MediaResolution::Low: return "MEDIA_RESOLUTION_LOW";
  case MediaResolution::Medium: return "MEDIA_RESOLUTION_MEDIUM";
  case MediaResolution::High: return "MEDIA_RESOLUTION_HIGH";
  case MediaResolution::Unspecified: break;
  }
  return "MEDIA_RESOLUTION_UNSPECIFIED";
}

json realtime(json input) {
  return {{"realtimeInput", std::move(input)}};
}

} // namespace

// ---- client -> server ---------------------------------------------------------------------------

nlohmann::json encode_setup(const LiveConfig &config, const std::string &resume_handle) {
  json setup{{"model", codec::model_resource(config.model)}};

  json generation = json::object();
  if (config.response_modality)
    generation["responseModalities"] = json::array({modality_name(*config.response_modality)});
  if (config.temperature)
    generation["temperature"] = *config.temperature;
  json speech = json::object();
  if (!config.voice_name.empty())
    speech["voiceConfig"] = {{"prebuiltVoiceConfig", {{"voiceName", config.voice_name}}}};
  if (!config.language_code.empty())
    speech["languageCode"] = config.language_code;
  if (!speech.empty())
    generation["speechConfig"] = std::move(speech);
  if (config.media_resolution != MediaResolution::Unspecified)
    generation["mediaResolution"] = media_resolution_name(config.media_resolution);
  if (config.affective_dialog)
    generation["enableAffectiveDialog"] = *config.affective_dialog;
  if (!generation.empty())
    setup["generationConfig"] = std::move(generation);

  if (!config.system_instruction.empty())
    setup["systemInstruction"] = {{"parts", json::array({{{"text", config.system_instruction}}})}};

  json tools = json::array();
  if (!config.functions.empty()) {
    json declarations = json::array();
    for (const LiveFunctionDeclaration &f : config.functions) {
      if (f.name.empty())
        throw Error(ErrorKind::Config, "a Live function declaration has no name");
      json d{{"name", f.name}};
      if (!f.description.empty())
        d["description"] = f.description;
      if (!f.parameters_json.empty()) {
        json params = json::parse(f.parameters_json, nullptr, /*allow_exceptions=*/false);
        if (params.is_discarded() || !params.is_object())
          throw Error(ErrorKind::Config, "the parameters of Live function \"" + f.name +
                                             "\" are not a JSON object (a JSON schema)");
        d["parameters"] = std::move(params);
      }
      declarations.push_back(std::move(d));
    }
    tools.push_back({{"functionDeclarations", std::move(declarations)}});
  }
  if (config.google_search)
    tools.push_back({{"googleSearch", json::object()}});
  if (!tools.empty())
    setup["tools"] = std::move(tools);

  const ActivityDetection &aad = config.activity_detection;
  json realtime_config = json::object();
  if (!aad.automatic || aad.start_sensitivity != StartSensitivity::Unspecified ||
      aad.end_sensitivity != EndSensitivity::Unspecified || aad.prefix_padding_ms ||
      aad.silence_duration_ms) {
    json detection{{"disabled", !aad.automatic}};
    if (aad.start_sensitivity != StartSensitivity::Unspecified)
      detection["startOfSpeechSensitivity"] = start_sensitivity_name(aad.start_sensitivity);
    if (aad.end_sensitivity != EndSensitivity::Unspecified)
      detection["endOfSpeechSensitivity"] = end_sensitivity_name(aad.end_sensitivity);
    if (aad.prefix_padding_ms)
      detection["prefixPaddingMs"] = *aad.prefix_padding_ms;
    if (aad.silence_duration_ms)
      detection["silenceDurationMs"] = *aad.silence_duration_ms;
    realtime_config["automaticActivityDetection"] = std::move(detection);
  }
  if (config.activity_handling != ActivityHandling::Unspecified)
    realtime_config["activityHandling"] =
        config.activity_handling == ActivityHandling::NoInterruption
            ? "NO_INTERRUPTION"
            : "START_OF_ACTIVITY_INTERRUPTS";
  if (config.turn_coverage != TurnCoverage::Unspecified)
    realtime_config["turnCoverage"] = config.turn_coverage == TurnCoverage::AllInput
                                          ? "TURN_INCLUDES_ALL_INPUT"
                                          : "TURN_INCLUDES_ONLY_ACTIVITY";
  if (!realtime_config.empty())
    setup["realtimeInputConfig"] = std::move(realtime_config);

  if (config.input_transcription)
    setup["inputAudioTranscription"] = json::object();
  if (config.output_transcription)
    setup["outputAudioTranscription"] = json::object();

  if (config.session_resumption) {
    json resumption = json::object();
    if (!resume_handle.empty())
      resumption["handle"] = resume_handle;
    setup["sessionResumption"] = std::move(resumption);
  }

  if (config.context_compression.enabled) {
    json window = json::object();
    if (config.context_compression.target_tokens)
      window["targetTokens"] = int64_string(*config.context_compression.target_tokens);
    json compression{{"slidingWindow", std::move(window)}};
    if (config.context_compression.trigger_tokens)
      compression["triggerTokens"] = int64_string(*config.context_compression.trigger_tokens);
    setup["contextWindowCompression"] = std::move(compression);
  }

  if (config.proactive_audio)
    setup["proactivity"] = {{"proactiveAudio", *config.proactive_audio}};

  return {{"setup", std::move(setup)}};
}

nlohmann::json encode_audio(const std::int16_t *pcm, std::size_t samples, int sample_rate) {
  return realtime({{"audio",
                    {{"mimeType", "audio/pcm;rate=" + std::to_string(sample_rate)},
                     {"data", codec::base64_encode(codec::s16le_bytes(pcm, samples))}}}});
}

nlohmann::json encode_video_jpeg(std::string_view jpeg) {
  return realtime({{"video", {{"mimeType", "image/jpeg"}, {"data", codec::base64_encode(jpeg)}}}});
}

nlohmann::json encode_text(const std::string &text) {
  return realtime({{"text", text}});
}

nlohmann::json encode_activity_start() {
  return realtime({{"activityStart", json::object()}});
}

nlohmann::json encode_activity_end() {
  return realtime({{"activityEnd", json::object()}});
}

nlohmann::json encode_audio_stream_end() {
  return realtime({{"audioStreamEnd", true}});
}

nlohmann::json encode_client_content(const std::vector<LiveTurn> &turns, bool turn_complete) {
  json encoded = json::array();
  for (const LiveTurn &t : turns) {
    json turn{{"parts", json::array({{{"text", t.text}}})}};
    if (!t.role.empty())
      turn["role"] = t.role;
    encoded.push_back(std::move(turn));
  }
  return {{"clientContent", {{"turns", std::move(encoded)}, {"turnComplete", turn_complete}}}};
}

nlohmann::json encode_tool_response(const std::vector<LiveFunctionResponse> &responses) {
  json encoded = json::array();
  for (const LiveFunctionResponse &r : responses) {
    json response = json::parse(r.response_json, nullptr, /*allow_exceptions=*/false);
    if (response.is_discarded() || !response.is_object())
      throw Error(ErrorKind::InvalidArgument,
                  "the response to function call \"" + r.id + "\" (" + r.name +
                      ") is not a JSON object; wrap plain values, e.g. {\"result\": ...}");
    json entry{{"name", r.name}, {"response", std::move(response)}};
    if (!r.id.empty())
      entry["id"] = r.id;
    encoded.push_back(std::move(entry));
  }
  return {{"toolResponse", {{"functionResponses", std::move(encoded)}}}};
}

// ---- server -> client ---------------------------------------------------------------------------

ServerMessage decode_server_message(std::string_view payload) {
  json doc = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded())
    throw Error(ErrorKind::Protocol,
                payload.empty() ? "empty Live message" : "Live message is not valid JSON");
  if (!doc.is_object())
    throw Error(ErrorKind::Protocol,
                std::string("Live message is not a JSON object but ") + doc.type_name());

  ServerMessage msg;
  decode_field(doc, "setupComplete", msg.setup_complete, msg.errors, [](const json &v) {
    expect_object(v, "setupComplete");
    return string(v, "sessionId", "setupComplete");
  });
  decode_field(doc, "serverContent", msg.server_content, msg.errors,
               [&msg](const json &v) { return decode_server_content(v, msg.errors); });
  decode_field(doc, "toolCall", msg.tool_call, msg.errors, decode_tool_call);
  decode_field(doc, "toolCallCancellation", msg.tool_call_cancellation, msg.errors,
               decode_cancellation);
  decode_field(doc, "goAway", msg.go_away, msg.errors, decode_go_away);
  decode_field(doc, "sessionResumptionUpdate", msg.resumption_update, msg.errors,
               decode_resumption);
  decode_field(doc, "usageMetadata", msg.usage, msg.errors, decode_usage);
  return msg;
}

// ---- helpers ------------------------------------------------------------------------------------

std::chrono::milliseconds parse_duration(std::string_view text) {
  auto bad = [&]() -> Error {
    return Error(ErrorKind::Protocol,
                 "invalid duration \"" + std::string(text) + "\": expected seconds like \"8s\"");
  };
  if (text.size() < 2 || text.back() != 's')
    throw bad();
  std::string_view number = text.substr(0, text.size() - 1);
  const std::size_t dot = number.find('.');
  const std::string_view whole = number.substr(0, dot);
  const std::string_view frac =
      dot == std::string_view::npos ? std::string_view() : number.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && frac.empty()) || frac.size() > 9)
    throw bad();
  std::int64_t seconds = 0;
  auto [end, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), seconds);
  if (ec != std::errc() || end != whole.data() + whole.size() || seconds < 0 ||
      seconds > 315576000000)
    throw bad();
  std::int64_t millis = 0;
  for (std::size_t i = 0; i < frac.size(); ++i) {
    if (frac[i] < '0' || frac[i] > '9')
      throw bad();
    if (i < 3)
      millis = millis * 10 + (frac[i] - '0');
  }
  for (std::size_t i = frac.size(); i < 3; ++i)
    millis *= 10;
  return std::chrono::milliseconds(seconds * 1000 + millis);
}

std::optional<int> pcm_sample_rate(std::string_view mime_type, int fallback) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char &c : out)
      if (c >= 'A' && c <= 'Z')
        c = static_cast<char>(c - 'A' + 'a');
    return out;
  };
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ')
      s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ')
      s.remove_suffix(1);
    return s;
  };
  std::string_view rest = mime_type;
  const std::size_t semi = rest.find(';');
  if (lower(trim(rest.substr(0, semi))) != "audio/pcm")
    return std::nullopt;
  int rate = fallback;
  while (semi != std::string_view::npos && !rest.empty()) {
    const std::size_t start = rest.find(';');
    if (start == std::string_view::npos)
      break;
    rest.remove_prefix(start + 1);
    const std::string_view param = trim(rest.substr(0, rest.find(';')));
    const std::size_t eq = param.find('=');
    if (eq == std::string_view::npos || lower(trim(param.substr(0, eq))) != "rate")
      continue;
    const std::string_view value = trim(param.substr(eq + 1));
    int parsed = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
    if (ec == std::errc() && end == value.data() + value.size() && parsed > 0)
      rate = parsed;
  }
  return rate;
}

} // namespace gemstream::live_codec
