// Gemini REST wire codecs: pure JSON <-> struct translation, no I/O. Field names follow
// /work/shared/docs/gemini-protocol.md exactly. Every decoder throws Error(Protocol) with a
// message "malformed <what> response: <json path>: <problem>" on anything it cannot use, and
// never on fields it does not know.
#pragma once

#include "gemstream/error.h"
#include "gemstream/export.h"
#include "gemstream/files.h"
#include "gemstream/genai.h"
#include "gemstream/grounding.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// Exported although private: the unit tests link against them.
namespace gemstream::codec {

// ---- generateContent ----------------------------------------------------------------------------

struct TextPart {
  std::string text;
  bool thought = false; // a thought summary, not part of the answer
};

// inlineData. `data` holds the decoded bytes; encoders base64 them.
struct BlobPart {
  std::string mime_type;
  std::string data;
  std::optional<VideoMetadata> video_metadata{}; // the part's videoMetadata (encoders only)
};

// fileData: a file uploaded through the Files API (encoders only: answers do not carry it).
struct FileDataPart {
  std::string mime_type;
  std::string file_uri;
  std::optional<VideoMetadata> video_metadata{};
};

struct FunctionCallPart {
  std::string id; // may be empty (the REST API often omits it)
  std::string name;
  nlohmann::json args = nlohmann::json::object();
};

using Part = std::variant<TextPart, BlobPart, FunctionCallPart, FileDataPart>;

struct Content {
  std::string role; // "user", "model", or empty
  std::vector<Part> parts;
};

struct ModalityTokenCount {
  std::string modality; // TEXT, IMAGE, AUDIO, VIDEO
  std::int64_t token_count = 0;
};

struct UsageMetadata {
  std::int64_t prompt_token_count = 0;
  std::int64_t candidates_token_count = 0;
  std::int64_t total_token_count = 0;
  std::int64_t cached_content_token_count = 0;
  std::int64_t thoughts_token_count = 0;
  std::int64_t tool_use_prompt_token_count = 0;
  std::vector<ModalityTokenCount> prompt_tokens_details;
  std::vector<ModalityTokenCount> candidates_tokens_details;

  Usage summary() const { return {prompt_token_count, candidates_token_count, total_token_count}; }
  UsageDetails details() const;
};

struct GEMSTREAM_API Candidate {
  Content content;
  std::string finish_reason;  // "STOP", "IMAGE_SAFETY", ... empty while streaming
  std::string finish_message; // the service's explanation, when it gives one
  int index = 0;
  std::optional<nlohmann::json> grounding_metadata; // kept raw: see the search-grounding codec

  // Concatenated non-thought text parts.
  std::string text() const;
};

struct GenerateContentResponse {
  std::vector<Candidate> candidates;
  std::string block_reason;         // promptFeedback.blockReason: the prompt itself was blocked
  std::string block_reason_message; // promptFeedback.blockReasonMessage
  std::optional<UsageMetadata> usage;
  std::string model_version;
  std::string response_id;
};

GEMSTREAM_API nlohmann::json encode_part(const Part &part);
GEMSTREAM_API nlohmann::json encode_content(const Content &content);

// {"contents":[{"role":"user","parts":[{"text":prompt}]}],
//  "generationConfig":{"responseModalities":["IMAGE"],"imageConfig":{"aspectRatio":...}}}
// imageConfig is left out when the aspect ratio is empty (service default).
GEMSTREAM_API nlohmann::json encode_image_generation_request(const ImageRequest &req);

GEMSTREAM_API GenerateContentResponse decode_generate_content_response(std::string_view body);

// A text or multimodal request: contents (one user turn), systemInstruction, tools
// (googleSearch, functionDeclarations) and generationConfig (temperature, maxOutputTokens).
// Throws Error(InvalidArgument) for a function whose parameters are not a JSON object, or a
// request without parts.
GEMSTREAM_API nlohmann::json encode_generate_content_request(const GenerateRequest &req);

// Part.videoMetadata: offsets as Duration strings ("1.5s").
GEMSTREAM_API nlohmann::json encode_video_metadata(const VideoMetadata &metadata);

// groundingMetadata (see gemstream/grounding.h); `path` prefixes error paths.
GEMSTREAM_API Grounding decode_grounding_metadata(const nlohmann::json &metadata,
                                                  const std::string &path = "groundingMetadata");

// ---- Imagen :predict ----------------------------------------------------------------------------

// person_generation ("allow_adult", ...) is sent only when non-empty.
GEMSTREAM_API nlohmann::json encode_imagen_request(const ImageRequest &req,
                                                   const std::string &person_generation = {});

struct ImagenPrediction {
  std::string mime_type;           // "image/png" when the service leaves it out
  std::string bytes;               // decoded; empty for a filtered sample
  std::string rai_filtered_reason; // set instead of bytes for a filtered sample
};

struct PredictResponse {
  std::vector<ImagenPrediction> predictions;
};

GEMSTREAM_API PredictResponse decode_predict_response(std::string_view body);

// ---- Veo :predictLongRunning and operations -----------------------------------------------------

// generateAudio is never sent: the Gemini API rejects it (Veo 3 always generates audio there).
// Throws Error(InvalidArgument) for a start image whose MIME type is neither given nor sniffable.
GEMSTREAM_API nlohmann::json encode_video_request(const VideoRequest &req);

// name (required), done (absent = false), error{code,message,status}, and
// response.generateVideoResponse.{generatedSamples[].video.uri, raiMediaFilteredCount,
// raiMediaFilteredReasons}.
GEMSTREAM_API Operation decode_operation(std::string_view body);

// Maps a google.rpc.Status found inside an operation (code is a google.rpc code such as 3 or 13;
// an HTTP status is tolerated) to an Error with the status name and `resource` as its path. The
// Error carries no HTTP status: the answer that held it was a 200.
GEMSTREAM_API Error error_from_rpc_status(int code, const std::string &status,
                                          const std::string &message, const std::string &resource);

// ---- Files API ----------------------------------------------------------------------------------

// A File resource object (GET files/{id}, or the "file" member of the final upload answer).
// `name` is required; sizeBytes accepts a string or a number; an unknown state reads as
// Unspecified.
GEMSTREAM_API FileResource decode_file_resource(const nlohmann::json &file, const std::string &path);
GEMSTREAM_API FileResource decode_file_response(std::string_view body); // GET files/{id}
GEMSTREAM_API FileResource decode_upload_response(std::string_view body); // {"file":{...}}

struct FileList {
  std::vector<FileResource> files;
  std::string next_page_token;
};
GEMSTREAM_API FileList decode_file_list(std::string_view body);

// ---- helpers ------------------------------------------------------------------------------------

GEMSTREAM_API std::string base64_encode(std::string_view bytes);
// Standard or URL-safe alphabet, padding optional (as proto3 JSON accepts). Anything else, such
// as whitespace, stray characters or misplaced padding, is Error(Protocol).
GEMSTREAM_API std::string base64_decode(std::string_view text);

// Audio as the Gemini APIs carry it: 16-bit signed little-endian samples, whatever the host's
// byte order. s16le_samples() ignores a trailing odd byte.
GEMSTREAM_API std::string s16le_bytes(const std::int16_t *pcm, std::size_t samples);
GEMSTREAM_API std::vector<std::int16_t> s16le_samples(std::string_view bytes);

// ".../v1beta/files/abc123:download?alt=media" -> "abc123"; also "files/abc123" and a bare id.
// Throws Error(Protocol) when no id can be found.
GEMSTREAM_API std::string file_id_from_uri(std::string_view uri);

// "models/{id}" unless `model` already starts with "models/". Throws Error(InvalidArgument) for
// an empty or path-like id.
GEMSTREAM_API std::string model_resource(const std::string &model);

} // namespace gemstream::codec
