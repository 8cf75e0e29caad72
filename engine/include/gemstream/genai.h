// Gemini REST API client: image generation (Gemini generateContent with IMAGE modality, Imagen
// predict), Veo long-running operations and video download.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/config.h"
#include "gemstream/error.h"
#include "gemstream/export.h"
#include "gemstream/http.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

// Where requests go. Built by resolve_endpoint(); never printed with the key.
struct Endpoint {
  std::string base_url;  // "https://generativelanguage.googleapis.com" (no trailing slash)
  std::string api_key;   // may be empty against the local backend
  std::string api_version = "v1beta";
  bool local_backend = false;  // true when it points at an in-process local backend
};

// Explicit values win over the environment. With no key and no base URL anywhere, an in-process
// local backend is started (once per process, on an ephemeral loopback port) and used.
GEMSTREAM_API Endpoint resolve_endpoint(const std::string &api_key = {}, const std::string &base_url = {});

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t candidates_tokens = 0;
  std::int64_t total_tokens = 0;
};

struct ImageRequest {
  std::string model_id;      // "gemini-2.5-flash-image", "imagen-4.0-generate-001", ...
  ImageApi api = ImageApi::GenerateContent;
  std::string prompt;
  std::string aspect_ratio;  // "1:1", "16:9", ... empty = service default
};

struct ImageResult {
  std::string mime_type;  // "image/png"
  std::string bytes;      // decoded image
  std::string text;       // accompanying text parts, if any
  std::string model_version;
  std::optional<Usage> usage;
};

struct VideoRequest {
  std::string model_id;  // "veo-3.0-fast-generate-001"
  std::string prompt;
  std::string aspect_ratio;  // "16:9" or "9:16"
  std::string resolution;    // "720p" or "1080p"
  std::string negative_prompt;
  std::string image_bytes;   // optional start frame
  std::string image_mime;    // "image/png" / "image/jpeg"
  int duration_seconds = 8;
};

struct Operation {
  std::string name;  // "models/veo-3.0-fast-generate-001/operations/abc123"
  bool done = false;
  std::optional<Error> error;         // done with an error
  std::vector<std::string> video_uris;
  int rai_filtered_count = 0;
  std::vector<std::string> rai_filtered_reasons;
};

// ---- Text and multimodal generation (generateContent) -----------------------------------------

// Part.videoMetadata: which stretch of a video the model looks at, and its sampling rate
// (the service samples 1 frame per second by default).
struct VideoMetadata {
  std::optional<double> start_offset_s;
  std::optional<double> end_offset_s;
  std::optional<double> fps;
};

// One part of the user's turn.
struct GEMSTREAM_API InputPart {
  enum class Type { Text, InlineData, FileData };
  Type type = Type::Text;
  std::string text;       // Text
  std::string mime_type;  // InlineData and FileData
  std::string data;       // InlineData: the raw bytes (base64-encoded on the wire)
  std::string file_uri;   // FileData: a Files API uri (FileResource::uri)
  std::optional<VideoMetadata> video_metadata;  // InlineData and FileData holding a video

  static InputPart from_text(std::string text);
  static InputPart from_bytes(std::string mime_type, std::string bytes);
  static InputPart from_file(std::string mime_type, std::string file_uri);
};

// tools[].functionDeclarations[] of a generateContent request.
struct FunctionDeclaration {
  std::string name;
  std::string description;
  std::string parameters_json;  // a Gemini Schema object as JSON text; empty: no parameters
};

struct GenerateRequest {
  std::string model_id = "gemini-2.5-flash";
  std::vector<InputPart> parts;  // one user turn
  std::string system_instruction;
  bool google_search = false;  // tools: [{"googleSearch":{}}]
  std::vector<FunctionDeclaration> functions;
  std::optional<double> temperature;
  std::optional<int> max_output_tokens;
};

struct ModalityTokens {
  std::string modality;  // TEXT, IMAGE, AUDIO, VIDEO
  std::int64_t tokens = 0;
};

// usageMetadata in full, as the cost ledger needs it.
struct UsageDetails {
  std::int64_t prompt_tokens = 0;
  std::int64_t candidates_tokens = 0;
  std::int64_t thoughts_tokens = 0;
  std::int64_t tool_use_prompt_tokens = 0;
  std::int64_t cached_tokens = 0;
  std::int64_t total_tokens = 0;
  std::vector<ModalityTokens> prompt_details;
  std::vector<ModalityTokens> candidates_details;
};

struct FunctionCall {
  std::string id;  // often empty over REST
  std::string name;
  std::string args_json = "{}";
};

struct GenerateResult {
  std::string text;                     // the answer's text parts, concatenated (no thoughts)
  std::vector<std::string> text_parts;  // the same, part by part (grounding offsets use them)
  std::vector<FunctionCall> function_calls;
  std::string finish_reason;
  // candidates[0].groundingMetadata as JSON text; empty when the answer is not grounded.
  // Decode it with parse_grounding_metadata() (gemstream/grounding.h).
  std::string grounding_metadata_json;
  std::optional<UsageDetails> usage;
  std::string model_version;
  std::string response_id;
};

struct ClientOptions {
  RetryPolicy retry;
  std::chrono::milliseconds request_timeout{std::chrono::seconds(120)};
  std::uint64_t max_download_bytes = 2ull << 30;
};

class GEMSTREAM_API GenAiClient {
public:
  explicit GenAiClient(Endpoint endpoint, ClientOptions options = {});
  ~GenAiClient();

  const Endpoint &endpoint() const noexcept { return endpoint_; }

  // Dispatches on req.api. Safety-filtered results throw Error(SafetyFiltered) with the reason.
  ImageResult generate_image(const ImageRequest &req, const CancelToken &cancel,
                             const RetryObserver &on_retry = {});

  // POST :predictLongRunning. Returns the (usually not yet done) operation.
  Operation start_video(const VideoRequest &req, const CancelToken &cancel,
                        const RetryObserver &on_retry = {});
  // GET the operation once.
  Operation get_operation(const std::string &name, const CancelToken &cancel,
                          const RetryObserver &on_retry = {});
  // Polls until done, the timeout (Error(Timeout), message names the operation) or cancel.
  // on_poll(poll_number, elapsed) is called after each poll that is not done.
  Operation wait_operation(const std::string &name, std::chrono::milliseconds poll_interval,
                           std::chrono::milliseconds timeout, const CancelToken &cancel,
                           const std::function<void(int, std::chrono::milliseconds)> &on_poll = {},
                           const RetryObserver &on_retry = {});
  // Downloads a generated video. The file id is taken from `uri` and fetched through this
  // client's base URL (as Google's SDKs do). Streams to `path` atomically; returns bytes written.
  std::uint64_t download_video(const std::string &uri, const std::string &path,
                               const CancelToken &cancel,
                               const std::function<void(std::uint64_t, std::uint64_t)> &on_progress = {},
                               const RetryObserver &on_retry = {});

  // POST :generateContent with the request's parts and tools. A blocked prompt, or an answer
  // stopped for safety without any content, is Error(SafetyFiltered) with the reason.
  GenerateResult generate_content(const GenerateRequest &req, const CancelToken &cancel,
                                  const RetryObserver &on_retry = {});

  // Full URL for an API path such as "models/x:predict" (adds base and version).
  std::string url_for(const std::string &api_path) const;

private:
  Endpoint endpoint_;
  ClientOptions options_;
  std::unique_ptr<HttpClient> http_;
};

} // namespace gemstream
