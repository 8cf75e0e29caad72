// Gemini Live API client: one BidiGenerateContent WebSocket session, with session resumption,
// reconnection and bounded input buffering. GStreamer-free; the Live elements adapt it.
//
// Threading contract:
// - Every LiveSession owns one network thread (a libwebsockets service loop). All callbacks run
//   on that thread, one at a time, never concurrently with each other. Keep them short: hand
//   media to your own queue. A callback may call any method of its session, including close(),
//   and may destroy it: the thread then finishes the close on its own and calls nothing more.
// - The send_*() methods are thread-safe and never wait on the network: input goes into bounded
//   queues (overflow policy: drop the oldest audio and count it, see LiveStats).
// - After close() (or the destructor) returns, no callback runs any more.
#pragma once

#include "gemstream/error.h"
#include "gemstream/export.h"
#include "gemstream/genai.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gemstream {

inline constexpr const char *kDefaultLiveModel = "gemini-live-2.5-flash-preview-native-audio";

// generationConfig.responseModalities. Native-audio models answer in Audio only.
enum class LiveModality { Audio, Text };

// Unspecified leaves a field out of the setup message: the service default applies.
enum class StartSensitivity { Unspecified, High, Low };
enum class EndSensitivity { Unspecified, High, Low };
enum class ActivityHandling { Unspecified, StartOfActivityInterrupts, NoInterruption };
enum class TurnCoverage { Unspecified, OnlyActivity, AllInput };
enum class MediaResolution { Unspecified, Low, Medium, High };

// One tool the model may call (tools[].functionDeclarations[]).
struct LiveFunctionDeclaration {
  std::string name;
  std::string description;
  // Schema of the arguments as JSON text (OpenAPI subset, e.g. {"type":"OBJECT",...}). Empty
  // when the function takes no arguments.
  std::string parameters_json;
};

// realtimeInputConfig.automaticActivityDetection.
struct ActivityDetection {
  // false: the server does not detect speech; the client marks turns with activity_start() and
  // activity_end().
  bool automatic = true;
  StartSensitivity start_sensitivity = StartSensitivity::Unspecified;
  EndSensitivity end_sensitivity = EndSensitivity::Unspecified;
  std::optional<int> prefix_padding_ms;
  std::optional<int> silence_duration_ms;
};

// contextWindowCompression with a sliding window. Lifts the 15 min (audio) / 2 min (video)
// session limits.
struct ContextCompression {
  bool enabled = false;
  std::optional<std::int64_t> trigger_tokens; // compress when the context grows past this
  std::optional<std::int64_t> target_tokens;  // keep about this many tokens afterwards
};

struct LiveConfig {
  // ---- what the setup message asks for ----
  std::string model = kDefaultLiveModel; // bare id or "models/..."
  // nullopt leaves generationConfig.responseModalities out (the service answers in AUDIO).
  std::optional<LiveModality> response_modality = LiveModality::Audio;
  std::string voice_name;    // prebuilt voice such as "Puck"; empty = service default
  std::string language_code; // BCP-47 such as "en-US"; empty = service default
  std::string system_instruction;
  std::optional<double> temperature;
  MediaResolution media_resolution = MediaResolution::Unspecified;
  std::optional<bool> affective_dialog; // generationConfig.enableAffectiveDialog
  std::optional<bool> proactive_audio;  // proactivity.proactiveAudio
  std::vector<LiveFunctionDeclaration> functions;
  bool google_search = false;
  ActivityDetection activity_detection;
  ActivityHandling activity_handling = ActivityHandling::Unspecified;
  TurnCoverage turn_coverage = TurnCoverage::Unspecified;
  bool input_transcription = false;
  bool output_transcription = false;
  // Ask for sessionResumptionUpdate handles, and resume with the newest one on every reconnect.
  bool session_resumption = true;
  // Resume an earlier session (a handle saved from on_resumption_update); empty = new session.
  std::string resume_handle;
  ContextCompression context_compression;

  // ---- client behaviour ----
  int input_sample_rate = 16000; // send_audio() input, S16 mono; 16 kHz is the service's native
  std::chrono::milliseconds audio_chunk{40}; // realtimeInput.audio message size, 20..100 ms
  // Unsent input audio held while disconnected or while the network is slow; beyond it the
  // oldest audio is dropped (counted in LiveStats::dropped_audio_samples).
  std::chrono::milliseconds max_buffered_audio{5000};
  // Input already sent since the newest resumption handle, kept to be sent again after a
  // reconnect (the Gemini Developer API has no transparent resumption). 0 disables the replay.
  std::chrono::milliseconds max_replay_audio{30000};
  // Unsent video frames held; older frames are dropped first (LiveStats::dropped_video_frames).
  std::size_t max_buffered_video_frames = 2;
  // Reconnection after an unexpected drop; consecutive failures, reset by each setupComplete.
  // 0 = never reconnect.
  int max_reconnect_attempts = 5;
  std::chrono::milliseconds reconnect_backoff_initial{250};
  std::chrono::milliseconds reconnect_backoff_max{8000};
  // From starting a connection to setupComplete (TCP, TLS, upgrade and setup).
  std::chrono::milliseconds connect_timeout{15000};
  // How long close() may spend writing the input still queued (a file's last audio, say) before
  // it closes the connection; the rest is discarded. Input queued while no connection is being
  // made (waiting to reconnect) is discarded at once. 0 discards everything at once.
  std::chrono::milliseconds close_drain_timeout{2000};
  // Larger server messages are skipped without being held whole: counted in
  // LiveStats::malformed_messages and reported through on_warning; the session goes on. The
  // service's messages are far smaller (model audio comes in chunks of tens of kilobytes). At
  // least 4096.
  std::size_t max_message_bytes = 64u << 20;
};

enum class LiveState {
  Idle,         // constructed, connect() not called yet
  Connecting,   // first connection: TCP, TLS, WebSocket upgrade
  SettingUp,    // socket open, setup sent, waiting for setupComplete
  Ready,        // setupComplete received: input flows
  Reconnecting, // connection lost or being replaced; input is buffered
  Closed,       // close() was called
  Failed,       // a fatal error was reported through on_error
};

GEMSTREAM_API const char *to_string(LiveState state) noexcept;

// A conversation turn for send_client_content() (clientContent.turns[]).
struct LiveTurn {
  std::string role = "user"; // "user" or "model"
  std::string text;
};

// toolCall.functionCalls[].
struct LiveFunctionCall {
  std::string id;
  std::string name;
  std::string args_json; // a JSON object, "{}" when the call has no arguments
};

// toolResponse.functionResponses[].
struct LiveFunctionResponse {
  std::string id; // the LiveFunctionCall's id
  std::string name;
  std::string response_json; // a JSON object such as {"result":"sunny"}
};

struct LiveModalityTokens {
  std::string modality; // TEXT, AUDIO, IMAGE, VIDEO
  std::int64_t token_count = 0;
};

// usageMetadata of a Live message.
struct LiveUsage {
  std::int64_t prompt_token_count = 0;
  std::int64_t cached_content_token_count = 0;
  std::int64_t response_token_count = 0;
  std::int64_t tool_use_prompt_token_count = 0;
  std::int64_t thoughts_token_count = 0;
  std::int64_t total_token_count = 0;
  std::vector<LiveModalityTokens> prompt_tokens_details;
  std::vector<LiveModalityTokens> cache_tokens_details;
  std::vector<LiveModalityTokens> response_tokens_details;
  std::vector<LiveModalityTokens> tool_use_prompt_tokens_details;
};

// sessionResumptionUpdate.
struct LiveResumptionUpdate {
  std::string new_handle; // empty while the session cannot be resumed at this point
  bool resumable = false;
  std::optional<std::int64_t> last_consumed_client_message_index; // Vertex transparent mode only
};

// All optional. Called on the session's network thread (see the threading contract above).
struct LiveCallbacks {
  std::function<void(LiveState)> on_state;
  std::function<void(const std::string &session_id)> on_setup_complete; // id may be empty
  // Model speech: S16 mono at `sample_rate` (24000 for every current model).
  std::function<void(std::vector<std::int16_t> pcm, int sample_rate)> on_audio;
  std::function<void(const std::string &text)> on_text; // model text parts, thoughts excluded
  std::function<void(const std::string &text, bool finished)> on_input_transcription;
  std::function<void(const std::string &text, bool finished)> on_output_transcription;
  // The user barged in: drop all queued model audio now.
  std::function<void()> on_interrupted;
  std::function<void()> on_generation_complete;
  std::function<void(const std::string &reason)> on_turn_complete; // reason usually empty
  std::function<void(const std::vector<LiveFunctionCall> &calls)> on_tool_call;
  // The service cancelled these calls; also reported for calls left unanswered when a
  // connection was lost, as the resumed session no longer expects their responses.
  std::function<void(const std::vector<std::string> &ids)> on_tool_call_cancellation;
  std::function<void(const std::string &grounding_metadata_json)> on_grounding;
  std::function<void(const LiveUsage &usage)> on_usage;
  std::function<void(std::chrono::milliseconds time_left)> on_go_away;
  std::function<void(const LiveResumptionUpdate &update)> on_resumption_update;
  // Fatal: the session is over (state Failed follows). Never carries the API key.
  std::function<void(const Error &error)> on_error;
  // Recovered faults: malformed server messages, reconnects, dropped input.
  std::function<void(const std::string &message)> on_warning;
};

struct LiveStats {
  std::uint64_t messages_sent = 0;     // complete client messages written, replays included
  std::uint64_t messages_received = 0; // complete server messages read
  std::uint64_t malformed_messages = 0;
  std::uint64_t reconnects = 0;             // setups completed after the first
  std::uint64_t replayed_messages = 0;      // sent again after a reconnect
  std::uint64_t dropped_audio_samples = 0;  // unsent input audio dropped (buffer full)
  std::uint64_t dropped_video_frames = 0;   // unsent video frames dropped (buffer full)
  std::uint64_t trimmed_replay_samples = 0; // sent audio no longer kept for a replay
};

// "ws://127.0.0.1:8080/ws/google.ai.generativelanguage.v1beta.GenerativeService.
// BidiGenerateContent" from the endpoint's base URL (http→ws, https→wss) and API version. The
// key is never part of it. Throws Error(Config) for a base URL that is not http(s).
GEMSTREAM_API std::string live_websocket_url(const Endpoint &endpoint);

class GEMSTREAM_API LiveSession {
public:
  // Does not connect. The API key travels in the x-goog-api-key header of the WebSocket
  // upgrade; with an empty key no such header is sent.
  LiveSession(Endpoint endpoint, LiveConfig config, LiveCallbacks callbacks = {});
  ~LiveSession(); // close()
  LiveSession(const LiveSession &) = delete;
  LiveSession &operator=(const LiveSession &) = delete;

  // Validates the configuration and starts the network thread, which connects and sends the
  // setup. Returns at once. Throws Error(Config) / Error(InvalidArgument) for a bad
  // configuration, and Error(InvalidArgument) when called a second time.
  void connect();

  // Stops accepting input, writes what is still queued (see config.close_drain_timeout), sends
  // a close frame (1000) and stops the network thread. Returns once the service has answered
  // the close frame (which shows it read all the input), and at the latest about 150 ms after
  // the drain timeout, whatever the network does; with nothing queued, within about 150 ms.
  // No callback runs while it drains but the final on_state (Closed). Idempotent. From a
  // callback it returns at once and the network thread finishes the close on its own.
  void close();
  // The same with an explicit bound for the drain; 0 discards unsent input at once.
  void close(std::chrono::milliseconds drain_timeout);

  LiveState state() const noexcept;
  LiveStats stats() const noexcept;
  std::uint64_t malformed_count() const noexcept;

  // Input. Thread-safe, non-blocking. Before setupComplete (and while reconnecting) input is
  // queued. Each returns false, sending nothing, once the session is Closed or Failed.
  //
  // S16 mono at config.input_sample_rate; any length: it is cut into audio_chunk messages.
  // A partial chunk waits for more audio, or goes out before any other non-video input.
  bool send_audio(const std::int16_t *pcm, std::size_t samples);
  bool send_video_jpeg(std::string_view jpeg); // one frame; about 1 per second is enough
  bool send_text(const std::string &text);     // realtimeInput.text
  // Manual turn marking; throws Error(InvalidArgument) unless automatic activity detection is
  // disabled in the configuration.
  bool activity_start();
  bool activity_end();
  // The microphone paused (with automatic activity detection): lets the service end the turn.
  bool audio_stream_end();
  bool send_client_content(const std::vector<LiveTurn> &turns, bool turn_complete);
  // Throws Error(InvalidArgument) when a response_json is not a JSON object.
  bool send_tool_response(const std::vector<LiveFunctionResponse> &responses);

private:
  struct Impl;
  // Shared with the network thread, which outlives the session when it is destroyed from one
  // of its own callbacks.
  std::shared_ptr<Impl> impl_;
};

} // namespace gemstream
