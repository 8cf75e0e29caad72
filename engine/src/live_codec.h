// Gemini Live (BidiGenerateContent) wire codec: pure JSON <-> struct translation, no I/O. Field
// names follow /work/shared/docs/gemini-protocol.md and the real traffic recorded in
// tests/fixtures/live-recordings exactly.
//
// Decoding is tolerant the way a long-lived session needs: unknown members and part kinds are
// ignored, and each top-level field of a server message (and each modelTurn part) is decoded on
// its own, so one malformed field or part (reported in ServerMessage::errors) does not cost the
// others.
#pragma once

#include "gemstream/error.h"
#include "gemstream/export.h"
#include "gemstream/live.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// Exported although private: the unit tests link against them.
namespace gemstream::live_codec {

// ---- client -> server ---------------------------------------------------------------------------

// The first message of every connection. `resume_handle` goes into sessionResumption.handle
// (only with config.session_resumption; empty = a new session). Throws Error(InvalidArgument)
// for an invalid model id and Error(Config) for a function without a name or whose parameters
// are not a JSON object.
GEMSTREAM_API nlohmann::json encode_setup(const LiveConfig &config,
                                          const std::string &resume_handle);

// realtimeInput.audio: S16LE mono, "audio/pcm;rate=N".
GEMSTREAM_API nlohmann::json encode_audio(const std::int16_t *pcm, std::size_t samples,
                                          int sample_rate);
GEMSTREAM_API nlohmann::json encode_video_jpeg(std::string_view jpeg);
GEMSTREAM_API nlohmann::json encode_text(const std::string &text);
GEMSTREAM_API nlohmann::json encode_activity_start();
GEMSTREAM_API nlohmann::json encode_activity_end();
GEMSTREAM_API nlohmann::json encode_audio_stream_end();
GEMSTREAM_API nlohmann::json encode_client_content(const std::vector<LiveTurn> &turns,
                                                   bool turn_complete);
// Throws Error(InvalidArgument) when a response_json is not a JSON object.
GEMSTREAM_API nlohmann::json
encode_tool_response(const std::vector<LiveFunctionResponse> &responses);

// ---- server -> client ---------------------------------------------------------------------------

struct AudioChunk {
  std::vector<std::int16_t> pcm;
  int sample_rate = 24000;
};

struct TextChunk {
  std::string text;
};

// modelTurn parts we use, in order. Other kinds (executableCode, codeExecutionResult, thoughts,
// inline data that is not PCM audio) are skipped.
using ModelPart = std::variant<AudioChunk, TextChunk>;

struct Transcription {
  std::string text;
  bool finished = false;
};

struct ServerContent {
  std::vector<ModelPart> parts;
  std::optional<Transcription> input_transcription;
  std::optional<Transcription> output_transcription;
  std::optional<std::string> grounding_metadata_json;
  bool interrupted = false;
  bool generation_complete = false;
  bool turn_complete = false;
  std::string turn_complete_reason;
  bool waiting_for_input = false;
};

struct ServerMessage {
  std::optional<std::string> setup_complete; // holds the sessionId, often empty
  std::optional<ServerContent> server_content;
  std::optional<std::vector<LiveFunctionCall>> tool_call;
  std::optional<std::vector<std::string>> tool_call_cancellation;
  std::optional<std::chrono::milliseconds> go_away; // timeLeft
  std::optional<LiveResumptionUpdate> resumption_update;
  std::optional<LiveUsage> usage;
  // One entry per top-level field or modelTurn part that was present but malformed
  // ("serverContent.modelTurn: expected an object, got number"); that field or part is left
  // out, the others are decoded.
  std::vector<std::string> errors;
};

// Throws Error(Protocol) when the payload is not a JSON object at all.
GEMSTREAM_API ServerMessage decode_server_message(std::string_view payload);

// ---- helpers ------------------------------------------------------------------------------------

// proto3 JSON Duration: "50s", "1.5s", "0.000001s". Throws Error(Protocol) otherwise.
GEMSTREAM_API std::chrono::milliseconds parse_duration(std::string_view text);

// The rate of "audio/pcm;rate=24000"; `fallback` when the type has no rate parameter, nullopt
// when it is not raw PCM audio.
GEMSTREAM_API std::optional<int> pcm_sample_rate(std::string_view mime_type, int fallback);

} // namespace gemstream::live_codec
