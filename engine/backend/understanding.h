// The local backend's stand-in for Gemini's understanding: answers about the video or images a
// generateContent request actually carries, computed by decoding them (duration, resolution,
// frame count, dominant colours, amount of motion), and search-grounded answers from a small
// local corpus with real groundingMetadata (byte offsets into the answer).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#ifndef GEMSTREAM_BACKEND_API
#if defined(__GNUC__)
#define GEMSTREAM_BACKEND_API __attribute__((visibility("default")))
#else
#define GEMSTREAM_BACKEND_API
#endif
#endif

namespace gemstream::backend {

struct ColourShare {
  std::string name; // "teal", "navy", ...
  int percent = 0;
};

// What decoding a video found.
struct VideoFacts {
  std::string container; // libavformat short name
  std::string codec;     // video codec
  double duration_s = 0;
  int width = 0;
  int height = 0;
  double fps = 0;
  std::int64_t frames = 0; // frames decoded
  bool audio = false;
  std::vector<ColourShare> colours; // dominant first, each at least 5 %
  // Mean absolute luma change between frames one second apart, in percent of full scale.
  double motion = 0;
};

// Decodes the whole video from memory. Throws std::runtime_error naming what is wrong when it
// is not a decodable video.
GEMSTREAM_BACKEND_API VideoFacts analyze_video(std::string_view bytes);

// Container probe only (no decoding): the duration in seconds, or nullopt with `error` set.
GEMSTREAM_BACKEND_API std::optional<double> probe_duration(std::string_view bytes,
                                                           std::string *error);

struct ImageFacts {
  int width = 0;
  int height = 0;
  std::vector<ColourShare> colours;
};

// A sequence of still images (PNG, JPEG, WebP): each described, plus the motion between
// consecutive ones (percent as above). Throws std::runtime_error for an undecodable image.
struct ImageSequenceFacts {
  std::vector<ImageFacts> images;
  std::vector<ColourShare> colours; // over all images
  double motion = 0;
};
GEMSTREAM_BACKEND_API ImageSequenceFacts
analyze_images(const std::vector<std::string_view> &images);
// The stand-in model's account of a sequence of images, from analyze_images(): "I looked at 4
// images (256x144); mostly orange and black. ..." (or why it could not read them).
GEMSTREAM_BACKEND_API std::string describe_images(const std::vector<std::string_view> &images);

// One inline or uploaded medium of a request.
struct MediaInput {
  std::string mime_type;
  std::shared_ptr<const std::string> data;
  std::optional<double> fps; // videoMetadata.fps
  std::optional<double> start_offset_s;
  std::optional<double> end_offset_s;
};

// A text-model generateContent request, as the stand-in model reads it.
struct TextRequest {
  std::string question; // the text parts, joined
  std::vector<MediaInput> media;
  bool google_search = false;
};

struct HttpError {
  int status = 400;
  std::string message;
};

// Reads contents[].parts (text, inlineData, fileData, videoMetadata) and tools (googleSearch).
// fileData is resolved through `resolve_file` (which answers the file, or the error to send).
using FileResolver = std::function<std::variant<MediaInput, HttpError>(std::string_view file_uri,
                                                                       std::string_view mime)>;
GEMSTREAM_BACKEND_API std::variant<TextRequest, HttpError>
parse_text_request(const nlohmann::json &body, const FileResolver &resolve_file);

// The GenerateContentResponse (candidates with text and, for searches, groundingMetadata;
// usageMetadata by modality: VIDEO 258 tokens per sampled frame, AUDIO 32 per second, IMAGE
// 258 per image, TEXT about 4 bytes per token). Decodes media: run it off the service thread.
GEMSTREAM_BACKEND_API nlohmann::json answer_text_request(const TextRequest &request,
                                                         const std::string &model_version,
                                                         const std::string &response_id);

// The search stand-in: an answer from the local corpus, with its groundingMetadata.
struct GroundedAnswer {
  std::string text;
  nlohmann::json grounding_metadata;
  std::int64_t search_tokens = 0; // tokens of the documents read (toolUsePromptTokenCount)
};
GEMSTREAM_BACKEND_API GroundedAnswer grounded_answer(std::string_view question);

} // namespace gemstream::backend
