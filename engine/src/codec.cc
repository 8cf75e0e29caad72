#include "codec.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <utility>

namespace gemstream::codec {
namespace {

using nlohmann::json;

// Reads one decoded JSON document with the tolerance the service's evolution requires: unknown
// members are ignored, absent or null members read as empty, but a member of the wrong type is a
// protocol error naming its path.
class Reader {
public:
  explicit Reader(std::string what) : what_(std::move(what)) {}

  [[noreturn]] void fail(const std::string &path, const std::string &problem) const {
    throw Error(ErrorKind::Protocol, "malformed " + what_ + " response: " +
                                         (path.empty() ? problem : path + ": " + problem));
  }

  json parse(std::string_view body) const {
    json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
      fail({}, body.empty() ? "empty body" : "not valid JSON");
    }
    if (!doc.is_object()) {
      fail({}, std::string("expected a JSON object, got ") + doc.type_name());
    }
    return doc;
  }

  // nullptr when absent or null.
  static const json *member(const json &obj, const char *key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      return nullptr;
    }
    return &*it;
  }

  static std::string join(const std::string &path, const char *key) {
    return path.empty() ? std::string(key) : path + "." + key;
  }

  static std::string index(const std::string &path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

  const json *object(const json &obj, const char *key, const std::string &path) const {
    const json *v = member(obj, key);
    if (v != nullptr && !v->is_object()) {
      fail(join(path, key), std::string("expected an object, got ") + v->type_name());
    }
    return v;
  }

  const json *array(const json &obj, const char *key, const std::string &path) const {
    const json *v = member(obj, key);
    if (v != nullptr && !v->is_array()) {
      fail(join(path, key), std::string("expected an array, got ") + v->type_name());
    }
    return v;
  }

  void expect_object(const json &v, const std::string &path) const {
    if (!v.is_object()) {
      fail(path, std::string("expected an object, got ") + v.type_name());
    }
  }

  std::string string(const json &obj, const char *key, const std::string &path) const {
    const json *v = member(obj, key);
    if (v == nullptr) {
      return {};
    }
    if (!v->is_string()) {
      fail(join(path, key), std::string("expected a string, got ") + v->type_name());
    }
    return v->get<std::string>();
  }

  bool boolean(const json &obj, const char *key, const std::string &path) const {
    const json *v = member(obj, key);
    if (v == nullptr) {
      return false;
    }
    if (!v->is_boolean()) {
      fail(join(path, key), std::string("expected a boolean, got ") + v->type_name());
    }
    return v->get<bool>();
  }

  // proto3 JSON writes int64 as a string; int32 as a number. Accept both forms for either.
  std::int64_t int64(const json &obj, const char *key, const std::string &path) const {
    const json *v = member(obj, key);
    if (v == nullptr) {
      return 0;
    }
    if (v->is_number_integer()) {
      return v->get<std::int64_t>();
    }
    if (v->is_number_unsigned()) {
      auto u = v->get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) {
        fail(join(path, key), "integer out of range");
      }
      return static_cast<std::int64_t>(u);
    }
    if (v->is_number_float()) {
      double d = v->get<double>();
      auto i = static_cast<std::int64_t>(d);
      if (static_cast<double>(i) != d) {
        fail(join(path, key), "expected an integer, got " + v->dump());
      }
      return i;
    }
    if (v->is_string()) {
      const auto &s = v->get_ref<const std::string &>();
      std::int64_t out = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
      if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
        fail(join(path, key), "expected an integer, got \"" + s + "\"");
      }
      return out;
    }
    fail(join(path, key), std::string("expected an integer, got ") + v->type_name());
  }

  std::string base64(const json &obj, const char *key, const std::string &path) const {
    std::string text = string(obj, key, path);
    try {
      return base64_decode(text);
    } catch (const Error &e) {
      fail(join(path, key), e.message());
    }
  }

  std::vector<std::string> strings(const json &obj, const char *key,
                                   const std::string &path) const {
    std::vector<std::string> out;
    if (const json *arr = array(obj, key, path)) {
      std::string p = join(path, key);
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const json &s = (*arr)[i];
        if (!s.is_string()) {
          fail(index(p, i), std::string("expected a string, got ") + s.type_name());
        }
        out.push_back(s.get<std::string>());
      }
    }
    return out;
  }

private:
  std::string what_;
};

std::optional<Part> decode_part(const Reader &r, const json &p, const std::string &path) {
  r.expect_object(p, path);
  if (Reader::member(p, "text") != nullptr) {
    return TextPart{r.string(p, "text", path), r.boolean(p, "thought", path)};
  }
  if (const json *blob = r.object(p, "inlineData", path)) {
    std::string bp = Reader::join(path, "inlineData");
    return BlobPart{r.string(*blob, "mimeType", bp), r.base64(*blob, "data", bp), std::nullopt};
  }
  if (const json *call = r.object(p, "functionCall", path)) {
    std::string cp = Reader::join(path, "functionCall");
    FunctionCallPart fc{r.string(*call, "id", cp), r.string(*call, "name", cp), json::object()};
    if (fc.name.empty()) {
      r.fail(Reader::join(cp, "name"), "missing");
    }
    if (const json *args = r.object(*call, "args", cp)) {
      fc.args = *args;
    }
    return fc;
  }
  // executableCode, codeExecutionResult, fileData, thoughtSignature-only parts and kinds added
  // later are not ours to interpret.
  return std::nullopt;
}

std::vector<ModalityTokenCount> decode_modality_counts(const Reader &r, const json &obj,
                                                       const char *key, const std::string &path) {
  std::vector<ModalityTokenCount> out;
  if (const json *arr = r.array(obj, key, path)) {
    std::string ap = Reader::join(path, key);
    for (std::size_t i = 0; i < arr->size(); ++i) {
      std::string ip = Reader::index(ap, i);
      r.expect_object((*arr)[i], ip);
      out.push_back({r.string((*arr)[i], "modality", ip), r.int64((*arr)[i], "tokenCount", ip)});
    }
  }
  return out;
}

UsageMetadata decode_usage(const Reader &r, const json &u, const std::string &path) {
  UsageMetadata usage;
  usage.prompt_token_count = r.int64(u, "promptTokenCount", path);
  usage.candidates_token_count = r.int64(u, "candidatesTokenCount", path);
  usage.total_token_count = r.int64(u, "totalTokenCount", path);
  usage.cached_content_token_count = r.int64(u, "cachedContentTokenCount", path);
  usage.thoughts_token_count = r.int64(u, "thoughtsTokenCount", path);
  usage.tool_use_prompt_token_count = r.int64(u, "toolUsePromptTokenCount", path);
  usage.prompt_tokens_details = decode_modality_counts(r, u, "promptTokensDetails", path);
  usage.candidates_tokens_details = decode_modality_counts(r, u, "candidatesTokensDetails", path);
  return usage;
}

Candidate decode_candidate(const Reader &r, const json &c, const std::string &path) {
  r.expect_object(c, path);
  Candidate cand;
  if (const json *content = r.object(c, "content", path)) {
    std::string cp = Reader::join(path, "content");
    cand.content.role = r.string(*content, "role", cp);
    if (const json *parts = r.array(*content, "parts", cp)) {
      std::string pp = Reader::join(cp, "parts");
      for (std::size_t i = 0; i < parts->size(); ++i) {
        if (auto part = decode_part(r, (*parts)[i], Reader::index(pp, i))) {
          cand.content.parts.push_back(std::move(*part));
        }
      }
    }
  }
  cand.finish_reason = r.string(c, "finishReason", path);
  cand.finish_message = r.string(c, "finishMessage", path);
  cand.index = static_cast<int>(r.int64(c, "index", path));
  if (const json *gm = r.object(c, "groundingMetadata", path)) {
    cand.grounding_metadata = *gm;
  }
  return cand;
}

std::string sniff_image_mime(std::string_view bytes) {
  if (bytes.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) {
    return "image/png";
  }
  if (bytes.substr(0, 3) == std::string_view("\xff\xd8\xff", 3)) {
    return "image/jpeg";
  }
  if (bytes.size() >= 12 && bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP") {
    return "image/webp";
  }
  return {};
}

// google.rpc.Code -> canonical name (google/rpc/code.proto).
std::optional<std::string_view> rpc_code(int code) {
  static constexpr std::array<std::string_view, 17> table{
      "UNKNOWN", // OK (0) inside an error object makes no sense; treat as unknown
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  if (code < 0 || code >= static_cast<int>(table.size())) {
    return std::nullopt;
  }
  return table[static_cast<std::size_t>(code)];
}

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

} // namespace

UsageDetails UsageMetadata::details() const {
  UsageDetails d;
  d.prompt_tokens = prompt_token_count;
  d.candidates_tokens = candidates_token_count;
  d.thoughts_tokens = thoughts_token_count;
  d.tool_use_prompt_tokens = tool_use_prompt_token_count;
  d.cached_tokens = cached_content_token_count;
  d.total_tokens = total_token_count;
  for (const auto &m : prompt_tokens_details) {
    d.prompt_details.push_back({m.modality, m.token_count});
  }
  for (const auto &m : candidates_tokens_details) {
    d.candidates_details.push_back({m.modality, m.token_count});
  }
  return d;
}

std::string Candidate::text() const {
  std::string out;
  for (const Part &part : content.parts) {
    if (const auto *t = std::get_if<TextPart>(&part); t != nullptr && !t->thought) {
      out += t->text;
    }
  }
  return out;
}

// ---- generateContent ----------------------------------------------------------------------------

nlohmann::json encode_part(const Part &part) {
  return std::visit(
      [](const auto &p) -> json {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, TextPart>) {
          json j{{"text", p.text}};
          if (p.thought) {
            j["thought"] = true;
          }
          return j;
        } else if constexpr (std::is_same_v<T, BlobPart>) {
          json j{{"inlineData", {{"mimeType", p.mime_type}, {"data", base64_encode(p.data)}}}};
          if (p.video_metadata) {
            j["videoMetadata"] = encode_video_metadata(*p.video_metadata);
          }
          return j;
        } else if constexpr (std::is_same_v<T, FileDataPart>) {
          json j{{"fileData", {{"mimeType", p.mime_type}, {"fileUri", p.file_uri}}}};
          if (p.video_metadata) {
            j["videoMetadata"] = encode_video_metadata(*p.video_metadata);
          }
          return j;
        } else {
          json call{{"name", p.name}, {"args", p.args}};
          if (!p.id.empty()) {
            call["id"] = p.id;
          }
          return {{"functionCall", std::move(call)}};
        }
      },
      part);
}

nlohmann::json encode_content(const Content &content) {
  json parts = json::array();
  for (const Part &p : content.parts) {
    parts.push_back(encode_part(p));
  }
  json j;
  if (!content.role.empty()) {
    j["role"] = content.role;
  }
  j["parts"] = std::move(parts);
  return j;
}

nlohmann::json encode_image_generation_request(const ImageRequest &req) {
  json config{{"responseModalities", json::array({"IMAGE"})}};
  if (!req.aspect_ratio.empty()) {
    config["imageConfig"] = {{"aspectRatio", req.aspect_ratio}};
  }
  return {{"contents", json::array({encode_content({"user", {TextPart{req.prompt}}})})},
          {"generationConfig", std::move(config)}};
}

nlohmann::json encode_video_metadata(const VideoMetadata &metadata) {
  auto duration = [](double seconds) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", seconds);
    std::string text = buf;
    while (text.back() == '0') {
      text.pop_back();
    }
    if (text.back() == '.') {
      text.pop_back();
    }
    return text + "s";
  };
  json j = json::object();
  if (metadata.start_offset_s) {
    j["startOffset"] = duration(*metadata.start_offset_s);
  }
  if (metadata.end_offset_s) {
    j["endOffset"] = duration(*metadata.end_offset_s);
  }
  if (metadata.fps) {
    j["fps"] = *metadata.fps;
  }
  return j;
}

nlohmann::json encode_generate_content_request(const GenerateRequest &req) {
  if (req.parts.empty()) {
    throw Error(ErrorKind::InvalidArgument, "a generateContent request needs at least one part");
  }
  Content turn{"user", {}};
  for (const InputPart &part : req.parts) {
    switch (part.type) {
    case InputPart::Type::Text:
      turn.parts.emplace_back(TextPart{part.text, false});
      break;
    case InputPart::Type::InlineData:
      turn.parts.emplace_back(BlobPart{part.mime_type, part.data, part.video_metadata});
      break;
    case InputPart::Type::FileData:
      turn.parts.emplace_back(FileDataPart{part.mime_type, part.file_uri, part.video_metadata});
      break;
    }
  }
  json body{{"contents", json::array({encode_content(turn)})}};
  if (!req.system_instruction.empty()) {
    body["systemInstruction"] = {{"parts", json::array({{{"text", req.system_instruction}}})}};
  }
  json tools = json::array();
  if (!req.functions.empty()) {
    json declarations = json::array();
    for (const FunctionDeclaration &f : req.functions) {
      json d{{"name", f.name}, {"description", f.description}};
      if (!f.parameters_json.empty()) {
        json params = json::parse(f.parameters_json, nullptr, /*allow_exceptions=*/false);
        if (!params.is_object()) {
          throw Error(ErrorKind::InvalidArgument,
                      "the parameters of function \"" + f.name + "\" are not a JSON object");
        }
        d["parameters"] = std::move(params);
      }
      declarations.push_back(std::move(d));
    }
    tools.push_back({{"functionDeclarations", std::move(declarations)}});
  }
  if (req.google_search) {
    tools.push_back({{"googleSearch", json::object()}});
  }
  if (!tools.empty()) {
    body["tools"] = std::move(tools);
  }
  json config = json::object();
  if (req.temperature) {
    config["temperature"] = *req.temperature;
  }
  if (req.max_output_tokens) {
    config["maxOutputTokens"] = *req.max_output_tokens;
  }
  if (!config.empty()) {
    body["generationConfig"] = std::move(config);
  }
  return body;
}

Grounding decode_grounding_metadata(const nlohmann::json &gm, const std::string &path) {
  Reader r("groundingMetadata");
  r.expect_object(gm, path);
  Grounding g;
  g.web_search_queries = r.strings(gm, "webSearchQueries", path);
  if (const json *entry = r.object(gm, "searchEntryPoint", path)) {
    g.search_entry_point_html =
        r.string(*entry, "renderedContent", Reader::join(path, "searchEntryPoint"));
  }
  if (const json *chunks = r.array(gm, "groundingChunks", path)) {
    const std::string cp = Reader::join(path, "groundingChunks");
    for (std::size_t i = 0; i < chunks->size(); ++i) {
      const std::string ip = Reader::index(cp, i);
      r.expect_object((*chunks)[i], ip);
      GroundingSource source;
      if (const json *web = r.object((*chunks)[i], "web", ip)) {
        const std::string wp = Reader::join(ip, "web");
        source.uri = r.string(*web, "uri", wp);
        source.title = r.string(*web, "title", wp);
        source.domain = r.string(*web, "domain", wp);
      }
      g.sources.push_back(std::move(source));
    }
  }
  if (const json *supports = r.array(gm, "groundingSupports", path)) {
    const std::string sp = Reader::join(path, "groundingSupports");
    for (std::size_t i = 0; i < supports->size(); ++i) {
      const std::string ip = Reader::index(sp, i);
      const json &s = (*supports)[i];
      r.expect_object(s, ip);
      GroundingSupport support;
      if (const json *segment = r.object(s, "segment", ip)) {
        const std::string segp = Reader::join(ip, "segment");
        const std::int64_t start = r.int64(*segment, "startIndex", segp);
        const std::int64_t end = r.int64(*segment, "endIndex", segp);
        const std::int64_t part = r.int64(*segment, "partIndex", segp);
        if (start < 0 || end < start) {
          r.fail(segp, "invalid byte range [" + std::to_string(start) + ", " +
                           std::to_string(end) + ")");
        }
        if (part < 0 || part > INT32_MAX) {
          r.fail(Reader::join(segp, "partIndex"), "out of range");
        }
        support.start_index = static_cast<std::size_t>(start);
        support.end_index = static_cast<std::size_t>(end);
        support.part_index = static_cast<int>(part);
        support.text = r.string(*segment, "text", segp);
      }
      if (const json *indices = r.array(s, "groundingChunkIndices", ip)) {
        const std::string xp = Reader::join(ip, "groundingChunkIndices");
        for (std::size_t k = 0; k < indices->size(); ++k) {
          const json &v = (*indices)[k];
          if (!v.is_number_integer() || v.get<std::int64_t>() < 0 ||
              v.get<std::int64_t>() > INT32_MAX) {
            r.fail(Reader::index(xp, k), "expected a chunk index, got " + v.dump());
          }
          support.chunk_indices.push_back(v.get<int>());
        }
      }
      if (const json *scores = r.array(s, "confidenceScores", ip)) {
        const std::string xp = Reader::join(ip, "confidenceScores");
        for (std::size_t k = 0; k < scores->size(); ++k) {
          if (!(*scores)[k].is_number()) {
            r.fail(Reader::index(xp, k),
                   std::string("expected a number, got ") + (*scores)[k].type_name());
          }
          support.confidence_scores.push_back((*scores)[k].get<double>());
        }
      }
      g.supports.push_back(std::move(support));
    }
  }
  return g;
}

GenerateContentResponse decode_generate_content_response(std::string_view body) {
  Reader r("generateContent");
  json doc = r.parse(body);
  GenerateContentResponse resp;
  if (const json *cands = r.array(doc, "candidates", {})) {
    for (std::size_t i = 0; i < cands->size(); ++i) {
      resp.candidates.push_back(decode_candidate(r, (*cands)[i], Reader::index("candidates", i)));
    }
  }
  if (const json *fb = r.object(doc, "promptFeedback", {})) {
    resp.block_reason = r.string(*fb, "blockReason", "promptFeedback");
    resp.block_reason_message = r.string(*fb, "blockReasonMessage", "promptFeedback");
  }
  if (const json *u = r.object(doc, "usageMetadata", {})) {
    resp.usage = decode_usage(r, *u, "usageMetadata");
  }
  resp.model_version = r.string(doc, "modelVersion", {});
  resp.response_id = r.string(doc, "responseId", {});
  return resp;
}

// ---- Imagen -------------------------------------------------------------------------------------

nlohmann::json encode_imagen_request(const ImageRequest &req,
                                     const std::string &person_generation) {
  json params{{"sampleCount", 1}};
  if (!req.aspect_ratio.empty()) {
    params["aspectRatio"] = req.aspect_ratio;
  }
  if (!person_generation.empty()) {
    params["personGeneration"] = person_generation;
  }
  params["outputOptions"] = {{"mimeType", "image/png"}};
  params["includeRaiReason"] = true;
  return {{"instances", json::array({{{"prompt", req.prompt}}})},
          {"parameters", std::move(params)}};
}

PredictResponse decode_predict_response(std::string_view body) {
  Reader r("predict");
  json doc = r.parse(body);
  PredictResponse resp;
  if (const json *preds = r.array(doc, "predictions", {})) {
    for (std::size_t i = 0; i < preds->size(); ++i) {
      std::string path = Reader::index("predictions", i);
      const json &p = (*preds)[i];
      r.expect_object(p, path);
      ImagenPrediction pred;
      pred.bytes = r.base64(p, "bytesBase64Encoded", path);
      pred.mime_type = r.string(p, "mimeType", path);
      pred.rai_filtered_reason = r.string(p, "raiFilteredReason", path);
      if (pred.bytes.empty() && pred.rai_filtered_reason.empty()) {
        r.fail(path, "neither bytesBase64Encoded nor raiFilteredReason");
      }
      if (pred.mime_type.empty() && !pred.bytes.empty()) {
        pred.mime_type = "image/png";
      }
      resp.predictions.push_back(std::move(pred));
    }
  }
  return resp;
}

// ---- Veo ----------------------------------------------------------------------------------------

nlohmann::json encode_video_request(const VideoRequest &req) {
  json instance{{"prompt", req.prompt}};
  if (!req.image_bytes.empty()) {
    std::string mime = req.image_mime.empty() ? sniff_image_mime(req.image_bytes) : req.image_mime;
    if (mime.empty()) {
      throw Error(ErrorKind::InvalidArgument,
                  "the start image is neither PNG, JPEG nor WebP; set its MIME type explicitly");
    }
    instance["image"] = {{"bytesBase64Encoded", base64_encode(req.image_bytes)},
                         {"mimeType", std::move(mime)}};
  }
  json params = json::object();
  if (!req.aspect_ratio.empty()) {
    params["aspectRatio"] = req.aspect_ratio;
  }
  if (!req.resolution.empty()) {
    params["resolution"] = req.resolution;
  }
  if (!req.negative_prompt.empty()) {
    params["negativePrompt"] = req.negative_prompt;
  }
  if (req.duration_seconds > 0) {
    params["durationSeconds"] = req.duration_seconds;
  }
  params["sampleCount"] = 1;
  return {{"instances", json::array({std::move(instance)})}, {"parameters", std::move(params)}};
}

Error error_from_rpc_status(int code, const std::string &status, const std::string &message,
                            const std::string &resource) {
  // The error was carried inside a 200 answer, so no HTTP status is attached: only the
  // google.rpc status name, taken from the code when the service leaves the name out.
  std::string name = status;
  ErrorKind kind;
  if (auto rc = rpc_code(code)) {
    if (name.empty()) {
      name = std::string(*rc);
    }
    kind = error_kind_from_http(0, name);
  } else {
    kind = error_kind_from_http(code >= 400 && code <= 599 ? code : 0, name);
  }
  std::string text = message.empty() ? (name.empty() ? "unknown error" : name) : message;
  Error err(kind, std::move(text));
  err.with_http(0, std::move(name), resource);
  return err;
}

Operation decode_operation(std::string_view body) {
  Reader r("operation");
  json doc = r.parse(body);
  Operation op;
  op.name = r.string(doc, "name", {});
  if (op.name.empty()) {
    r.fail("name", "missing");
  }
  op.done = r.boolean(doc, "done", {});
  if (const json *err = r.object(doc, "error", {})) {
    op.error = error_from_rpc_status(static_cast<int>(r.int64(*err, "code", "error")),
                                     r.string(*err, "status", "error"),
                                     r.string(*err, "message", "error"), op.name);
  }
  const json *response = r.object(doc, "response", {});
  if (response == nullptr) {
    return op;
  }
  const json *gvr = r.object(*response, "generateVideoResponse", "response");
  if (gvr == nullptr) {
    return op;
  }
  const std::string gp = "response.generateVideoResponse";
  if (const json *samples = r.array(*gvr, "generatedSamples", gp)) {
    for (std::size_t i = 0; i < samples->size(); ++i) {
      std::string sp = Reader::index(gp + ".generatedSamples", i);
      r.expect_object((*samples)[i], sp);
      const json *video = r.object((*samples)[i], "video", sp);
      std::string uri = video != nullptr ? r.string(*video, "uri", sp + ".video") : std::string();
      if (uri.empty()) {
        r.fail(sp + ".video.uri", "missing");
      }
      op.video_uris.push_back(std::move(uri));
    }
  }
  op.rai_filtered_count = static_cast<int>(r.int64(*gvr, "raiMediaFilteredCount", gp));
  op.rai_filtered_reasons = r.strings(*gvr, "raiMediaFilteredReasons", gp);
  return op;
}

// ---- Files API ----------------------------------------------------------------------------------

FileResource decode_file_resource(const nlohmann::json &f, const std::string &path) {
  Reader r("file");
  r.expect_object(f, path);
  FileResource file;
  file.name = r.string(f, "name", path);
  if (file.name.empty()) {
    r.fail(Reader::join(path, "name"), "missing");
  }
  file.display_name = r.string(f, "displayName", path);
  file.mime_type = r.string(f, "mimeType", path);
  const std::int64_t size = r.int64(f, "sizeBytes", path);
  if (size < 0) {
    r.fail(Reader::join(path, "sizeBytes"), "negative size");
  }
  file.size_bytes = static_cast<std::uint64_t>(size);
  file.create_time = r.string(f, "createTime", path);
  file.update_time = r.string(f, "updateTime", path);
  file.expiration_time = r.string(f, "expirationTime", path);
  file.sha256_hash = r.string(f, "sha256Hash", path);
  file.uri = r.string(f, "uri", path);
  const std::string state = r.string(f, "state", path);
  if (state == "PROCESSING") {
    file.state = FileState::Processing;
  } else if (state == "ACTIVE") {
    file.state = FileState::Active;
  } else if (state == "FAILED") {
    file.state = FileState::Failed;
  }
  if (const json *err = r.object(f, "error", path)) {
    file.error_message = r.string(*err, "message", Reader::join(path, "error"));
  }
  if (const json *video = r.object(f, "videoMetadata", path)) {
    const std::string vp = Reader::join(path, "videoMetadata");
    const std::string duration = r.string(*video, "videoDuration", vp);
    if (!duration.empty()) {
      auto ms = parse_duration(duration);
      if (!ms) {
        r.fail(Reader::join(vp, "videoDuration"), "not a duration: \"" + duration + "\"");
      }
      file.video_duration_s = static_cast<double>(ms->count()) / 1000.0;
    }
  }
  return file;
}

FileResource decode_file_response(std::string_view body) {
  Reader r("file");
  return decode_file_resource(r.parse(body), "");
}

FileResource decode_upload_response(std::string_view body) {
  Reader r("upload");
  json doc = r.parse(body);
  const json *file = r.object(doc, "file", {});
  if (file == nullptr) {
    r.fail("file", "missing");
  }
  return decode_file_resource(*file, "file");
}

FileList decode_file_list(std::string_view body) {
  Reader r("files.list");
  json doc = r.parse(body);
  FileList list;
  if (const json *files = r.array(doc, "files", {})) {
    for (std::size_t i = 0; i < files->size(); ++i) {
      list.files.push_back(decode_file_resource((*files)[i], Reader::index("files", i)));
    }
  }
  list.next_page_token = r.string(doc, "nextPageToken", {});
  return list;
}

// ---- helpers ------------------------------------------------------------------------------------

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                      (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8) |
                      std::uint32_t(std::uint8_t(bytes[i + 2]));
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += kBase64Alphabet[(n >> 6) & 63];
    out += kBase64Alphabet[n & 63];
  }
  std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t n = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    if (rest == 2) {
      n |= std::uint32_t(std::uint8_t(bytes[i + 1])) << 8;
    }
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += rest == 2 ? kBase64Alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string s16le_bytes(const std::int16_t *pcm, std::size_t samples) {
  std::string bytes(samples * 2, '\0');
  for (std::size_t i = 0; i < samples; ++i) {
    const auto u = static_cast<std::uint16_t>(pcm[i]);
    bytes[2 * i] = static_cast<char>(u & 0xff);
    bytes[2 * i + 1] = static_cast<char>(u >> 8);
  }
  return bytes;
}

std::vector<std::int16_t> s16le_samples(std::string_view bytes) {
  std::vector<std::int16_t> pcm(bytes.size() / 2);
  for (std::size_t i = 0; i < pcm.size(); ++i) {
    const auto lo = static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[2 * i]));
    const auto hi = static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[2 * i + 1]));
    pcm[i] = static_cast<std::int16_t>(static_cast<std::uint16_t>(lo | (hi << 8)));
  }
  return pcm;
}

std::string base64_decode(std::string_view text) {
  static const std::array<std::int8_t, 256> table = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    for (std::size_t i = 0; i < kBase64Alphabet.size(); ++i) {
      t[static_cast<std::uint8_t>(kBase64Alphabet[i])] = static_cast<std::int8_t>(i);
    }
    t['-'] = 62;
    t['_'] = 63;
    return t;
  }();

  std::size_t len = text.size();
  std::size_t padding = 0;
  while (padding < 2 && len > 0 && text[len - 1] == '=') {
    --len;
    ++padding;
  }
  if (padding > 0 && text.size() % 4 != 0) {
    throw Error(ErrorKind::Protocol, "invalid base64: wrong padding");
  }
  if (len % 4 == 1) {
    throw Error(ErrorKind::Protocol, "invalid base64: truncated input");
  }

  std::string out;
  out.reserve(len / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < len; ++i) {
    std::int8_t v = table[static_cast<std::uint8_t>(text[i])];
    if (v < 0) {
      throw Error(ErrorKind::Protocol,
                  "invalid base64: unexpected character at offset " + std::to_string(i));
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string file_id_from_uri(std::string_view uri) {
  std::string_view rest = uri;
  if (auto q = rest.find_first_of("?#"); q != std::string_view::npos) {
    rest = rest.substr(0, q);
  }
  if (auto pos = rest.rfind("files/");
      pos != std::string_view::npos && (pos == 0 || rest[pos - 1] == '/')) {
    rest = rest.substr(pos + 6);
  } else if (rest.find_first_of("/:") != std::string_view::npos) {
    rest = {};
  }
  rest = rest.substr(0, rest.find_first_of(":/"));
  bool valid = !rest.empty();
  for (char c : rest) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    valid = valid && ok;
  }
  if (!valid || rest == "." || rest == "..") {
    std::string shown(uri.substr(0, uri.find_first_of("?#")));
    throw Error(ErrorKind::Protocol, "malformed video uri: no file id in \"" + shown + "\"");
  }
  return std::string(rest);
}

std::string model_resource(const std::string &model) {
  std::string_view id = model;
  constexpr std::string_view prefix = "models/";
  if (id.substr(0, prefix.size()) == prefix) {
    id.remove_prefix(prefix.size());
  }
  bool valid = !id.empty() && id != "." && id != "..";
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    valid = valid && ok;
  }
  if (!valid) {
    throw Error(ErrorKind::InvalidArgument, "invalid model id \"" + model +
                                                "\": expected something like "
                                                "\"gemini-2.5-flash-image\"");
  }
  return "models/" + std::string(id);
}

} // namespace gemstream::codec
