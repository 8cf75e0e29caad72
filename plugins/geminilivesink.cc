/**
 * SECTION:element-geminilivesink
 * @title: geminilivesink
 * @see_also: geminilivesrc
 *
 * Holds a real-time conversation with a Gemini Live model (BidiGenerateContent over a WebSocket):
 * the microphone audio arriving on the `audio` pad (S16LE, 16 kHz, mono: put
 * `audioconvert ! audioresample` in front) and the JPEG frames arriving on the optional `video`
 * request pad go to the model as they come. What the model says is played by the
 * #geminilivesrc with the same `session` name, in this pipeline or another one of the process;
 * everything else it sends becomes element messages on the bus and signals.
 *
 * The sink connects when it goes from READY to PAUSED and closes in PAUSED→READY; dropped
 * connections and the service's `goAway` are handled by reconnecting with the newest session
 * resumption handle, resending the input the service may not have processed (see the engine's
 * LiveSession). Input is never blocked on the network: it is queued (up to `max-buffered`) and
 * the oldest audio is dropped and counted when the network cannot keep up.
 *
 * With `sync=false` (the default, for live sources such as a microphone) buffers are sent as
 * they arrive. With `sync=true` the sink waits, interruptibly, until each buffer's running time
 * on the pipeline clock, so a file is heard by the service at the speed it was spoken.
 *
 * End of stream: an EOS on the `audio` pad ends the user's input (`audioStreamEnd` with server
 * voice activity detection, `activityEnd` when `vad=off` and an activity is open). The sink then
 * waits for the model's answer: it posts its EOS message once the model completes the turn
 * that was in progress or that starts after the input ended (`turnComplete`) and no capability
 * work is running, or when the model has sent nothing for `reply-timeout` milliseconds (0: at
 * once). The paired #geminilivesrc
 * ends its stream at the same moment, after playing the queued speech. Without a session (it
 * failed) the EOS is posted at once. EOS on the `video` pad only stops the frames.
 *
 * Errors: a rejected API key is `RESOURCE/NOT_AUTHORIZED`, an unknown model `RESOURCE/NOT_FOUND`,
 * a service that cannot be reached (after the reconnection attempts) `RESOURCE/OPEN_WRITE`, an
 * invalid setting `RESOURCE/SETTINGS`; the details structure carries `error-kind` and, where
 * known, `http-status-code`. Recovered faults (reconnections, malformed server messages, input
 * dropped) are posted as warnings.
 *
 * ## Element messages
 * All are posted from the session's network thread, in the order the service sent them.
 * - `gemstream-live-state`: `state` (string: connecting, setting-up, ready, reconnecting, closed,
 *   failed); with state ready also `session-id` (string, may be empty).
 * - `gemstream-live-transcript`: `direction` ("input": what the user said, "output": what the
 *   model said), `text` (string, a chunk), `finished` (boolean).
 * - `gemstream-live-text`: `text` (string): a text part of the model's turn (response-modality
 *   text, or text besides audio).
 * - `gemstream-live-tool-call`: `id`, `name`, `args` (string, a JSON object), `handled`
 *   (boolean: TRUE when the sink runs the call itself, see "Agent capabilities"). Answer the
 *   others with the `send-tool-response` action signal.
 * - `gemstream-live-tool-call-cancellation`: `ids` (#GstValueArray of strings).
 * - `gemstream-live-grounding`: `metadata` (string, the groundingMetadata JSON), `citations`
 *   (string, one "[n] title: uri" line per web source), `queries` (string, the search queries
 *   joined with "; ").
 * - `gemstream-live-usage`: `prompt-tokens`, `response-tokens`, `total-tokens`, `cached-tokens`,
 *   `thoughts-tokens`, `tool-use-prompt-tokens` (#gint64, as reported in this message), `usd`
 *   (double: this message's tokens at the prices of config/media_generation.json, input = prompt
 *   + tool-use prompt tokens, output = response + thoughts tokens), `total-usd` (double: sum over
 *   the session), `priced` (boolean: FALSE when the price list could not be loaded). A
 *   `gemstream-cost` message (kind "live") follows, like the other elements' cost messages.
 * - `gemstream-live-go-away`: `time-left` (#guint64, nanoseconds until the service closes this
 *   connection; the sink reconnects by itself).
 * - `gemstream-live-resumption`: `handle` (string), `resumable` (boolean).
 * - `gemstream-live-interrupted`: the user barged in; the paired source flushes (see
 *   #geminilivesrc's `gemstream-live-flushed`).
 * - `gemstream-live-generation-complete`: the model finished generating this turn.
 * - `gemstream-live-turn-complete`: `reason` (string, usually empty).
 * - `gemstream-capability` (from the capability runner's threads): `event` (consent-requested,
 *   started, progress, finished, failed), `call-id`, `capability` (the function name), `job-id`
 *   (asynchronous jobs, else empty), `message` (for a person), `artefact` (the file written),
 *   `outputs` (#GstValueArray of strings: further files, e.g. a background video's loops), `usd`
 *   (double: the cost recorded in the ledger).
 *
 * ## Agent capabilities
 * With `capabilities` set, the model may create card images, background videos and search the
 * web by conversation ("create a card with a meditation image"): the capabilities' function
 * declarations join the setup, and the sink runs their tool calls itself, off the streaming and
 * network threads, and answers them. A capability that costs money runs only after the user
 * agreed: the first call is answered with the capability's question and cost warning for the
 * model to ask, and runs when the model calls again with `confirmed` set. Costs are checked
 * against the user's daily budget before anything is spent and recorded in the cost ledger
 * ($GEMSTREAM_LEDGER or ~/.local/share/gemstream/ledger.sqlite). A background video is a job:
 * the call is answered at once, and when the job ends the model is told so that it can tell the
 * user. EOS waits for capability work that is still running; stopping the element cancels it.
 *
 * ## Signals
 * - `transcript` (direction, text, finished) and `tool-call` (id, name, args-json) are emitted
 *   on the network thread together with the messages above. A handler may call the action
 *   signals directly; it must not change the element's state.
 * - Action signals, returning TRUE when the message was queued for sending:
 *   `send-tool-response` (id, name, response-json: a JSON object such as {"result":"sunny"}),
 *   `send-text` (text), `activity-start` and `activity-end` (only with `vad=off`).
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 autoaudiosrc ! audioconvert ! audioresample ! geminilivesink voice=Puck  geminilivesrc ! audioconvert ! autoaudiosink
 * gst-launch-1.0 filesrc location=question.wav ! wavparse ! audioconvert ! audioresample ! geminilivesink sync=true \
 *     geminilivesrc ! wavenc ! filesink location=reply.wav
 * gst-launch-1.0 autoaudiosrc ! audioconvert ! audioresample ! geminilivesink name=s session=kiosk \
 *     v4l2src ! videoconvert ! framesampler max-fps=1 ! videoconvert ! \
 *     video/x-raw,format=RGB ! jpegenc ! s.video \
 *     geminilivesrc session=kiosk ! autoaudiosink
 * ]|
 */
#include "geminilivesink.h"

#include "common/element_util.h"
#include "common/gst_ref.h"
#include "common/live_hub.h"

#include <gemstream/capabilities.h>
#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/genai.h>
#include <gemstream/live.h>
#include <gemstream/loop.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(gem_gemini_live_sink_debug);
#define GST_CAT_DEFAULT gem_gemini_live_sink_debug

namespace {

using gemstream::Error;
using gemstream::ErrorKind;
using gemstream::LiveSession;
using gemstream::gst::LiveHub;
using Clock = std::chrono::steady_clock;

enum GemLiveResponseModality { MODALITY_AUDIO, MODALITY_TEXT };
enum GemLiveVad { VAD_SERVER_AUTOMATIC, VAD_OFF };
enum GemLiveSensitivity { SENSITIVITY_DEFAULT, SENSITIVITY_HIGH, SENSITIVITY_LOW };
enum GemLiveActivityHandling { HANDLING_DEFAULT, HANDLING_INTERRUPT, HANDLING_NO_INTERRUPTION };

constexpr int kInputRate = 16000;
constexpr const char *kDefaultSession = "default";
constexpr guint kDefaultMaxBufferedMs = 5000;
constexpr guint kMinMaxBufferedMs = 100;
constexpr guint kMaxMaxBufferedMs = 600000;
constexpr guint kDefaultReplyTimeoutMs = 10000;
constexpr guint kMaxReplyTimeoutMs = 600000;
constexpr guint kDefaultReconnectAttempts = 5;
constexpr guint kMaxReconnectAttempts = 100;
constexpr gint kMaxDurationMs = 60000;
constexpr const char *kDefaultMediaDir = "gemstream-out";
constexpr guint kMaxJobPollIntervalMs = 600000;
// The service's prices for Live native audio are keyed so in config/media_generation.json.
constexpr const char *kPriceKey = "live_native_audio";

enum {
  PROP_0,
  PROP_MODEL,
  PROP_VOICE,
  PROP_LANGUAGE,
  PROP_SYSTEM_INSTRUCTION,
  PROP_RESPONSE_MODALITY,
  PROP_ENABLE_SEARCH,
  PROP_TOOLS,
  PROP_VAD,
  PROP_START_SENSITIVITY,
  PROP_END_SENSITIVITY,
  PROP_PREFIX_PADDING,
  PROP_SILENCE_DURATION,
  PROP_ACTIVITY_HANDLING,
  PROP_INPUT_TRANSCRIPTION,
  PROP_OUTPUT_TRANSCRIPTION,
  PROP_CONTEXT_COMPRESSION,
  PROP_API_KEY,
  PROP_BASE_URL,
  PROP_SESSION,
  PROP_MAX_BUFFERED,
  PROP_SYNC,
  PROP_REPLY_TIMEOUT,
  PROP_RECONNECT_ATTEMPTS,
  PROP_RESUMPTION_HANDLE,
  PROP_CAPABILITIES,
  PROP_MEDIA_DIR,
  PROP_USER,
  PROP_JOB_POLL_INTERVAL,
  PROP_MESSAGES_SENT,
  PROP_MESSAGES_RECEIVED,
  PROP_DROPPED_AUDIO_MS,
  PROP_DROPPED_VIDEO_FRAMES,
  PROP_MALFORMED_MESSAGES,
  PROP_RECONNECTS,
  PROP_TOTAL_USD,
};

enum {
  SIGNAL_TRANSCRIPT,
  SIGNAL_TOOL_CALL,
  SIGNAL_SEND_TOOL_RESPONSE,
  SIGNAL_SEND_TEXT,
  SIGNAL_ACTIVITY_START,
  SIGNAL_ACTIVITY_END,
  N_SIGNALS,
};
guint signals[N_SIGNALS];

// Written by set_property, snapshotted in READY→PAUSED.
struct Settings {
  std::string model = gemstream::kDefaultLiveModel;
  std::string voice;
  std::string language;
  std::string system_instruction;
  GemLiveResponseModality modality = MODALITY_AUDIO;
  bool enable_search = false;
  std::string tools_json;
  GemLiveVad vad = VAD_SERVER_AUTOMATIC;
  GemLiveSensitivity start_sensitivity = SENSITIVITY_DEFAULT;
  GemLiveSensitivity end_sensitivity = SENSITIVITY_DEFAULT;
  gint prefix_padding_ms = -1;
  gint silence_duration_ms = -1;
  GemLiveActivityHandling activity_handling = HANDLING_DEFAULT;
  bool input_transcription = true;
  bool output_transcription = true;
  bool context_compression = false;
  std::string api_key;
  std::string base_url;
  std::string session = kDefaultSession;
  guint max_buffered_ms = kDefaultMaxBufferedMs;
  bool sync = false;
  guint reply_timeout_ms = kDefaultReplyTimeoutMs;
  guint reconnect_attempts = kDefaultReconnectAttempts;
  std::string resumption_handle;
  std::string capabilities;  // "", "default" or a file
  std::string media_dir = kDefaultMediaDir;
  std::string user;
  guint job_poll_interval_ms = 0;
};

struct PadState {
  GstSegment segment;
  GstClockID clock_id = nullptr;  // the streaming thread's current sync wait
  bool flushing = false;
  bool negotiated = false;

  PadState() { gst_segment_init(&segment, GST_FORMAT_TIME); }
  void reset() {
    gst_segment_init(&segment, GST_FORMAT_TIME);
    flushing = false;
    negotiated = false;
  }
};

struct Prices {
  bool known = false;
  double usd_per_input_token = 0;
  double usd_per_output_token = 0;
};

// Ties a session's callbacks to the element without keeping it alive. `generation` tells this
// session's callbacks apart from those of an earlier or later one.
struct CallbackLink {
  mutable GWeakRef element;
  std::uint64_t generation;
  std::shared_ptr<LiveHub> hub;
  std::uint64_t hub_generation;

  CallbackLink(GstElement *e, std::uint64_t gen, std::shared_ptr<LiveHub> h, std::uint64_t hub_gen)
      : generation(gen), hub(std::move(h)), hub_generation(hub_gen) {
    g_weak_ref_init(&element, e);
  }
  ~CallbackLink() { g_weak_ref_clear(&element); }
  CallbackLink(const CallbackLink &) = delete;
  CallbackLink &operator=(const CallbackLink &) = delete;
};

} // namespace

// Lock order: `lock` is a leaf. It is never held while calling the session, the hub, posting a
// message, emitting a signal or waiting on the clock. The network thread takes it briefly to
// record the conversation's progress (EOS logic) and resumption handles.
struct GemGeminiLiveSinkImpl {
  std::mutex lock;
  std::condition_variable cond;  // EOS and PLAYING waits
  Settings settings;

  // ---- runtime state: set up in READY→PAUSED, reset in PAUSED→READY ----
  std::shared_ptr<LiveSession> session;
  std::shared_ptr<gemstream::LiveToolBridge> tools;  // with the capabilities property
  std::shared_ptr<LiveHub> hub;
  std::uint64_t hub_generation = 0;
  std::atomic<std::uint64_t> generation{0};  // of the current session's callbacks; 0: none
  std::uint64_t last_generation = 0;
  bool automatic_vad = true;
  bool sync = false;
  guint reply_timeout_ms = kDefaultReplyTimeoutMs;
  std::string model_id;
  Prices prices;
  double total_usd = 0;
  std::string resumption_handle;  // newest from the service, else the configured one

  bool stopping = false;  // PAUSED→READY in progress: every wait returns
  bool playing = false;
  bool failed = false;    // the session reported a fatal error
  bool activity_open = false;
  PadState audio;
  PadState video;

  // End of input and the model's answer (see the doc block).
  bool input_ended = false;
  bool model_busy = false;  // the model's turn is in progress (output seen, no turnComplete yet)
  bool reply_seen = false;  // since the input ended: model output or a turnComplete
  Clock::time_point last_model_activity{};
  bool eos_posted = false;
  guint32 eos_seqnum = 0;
};

struct _GemGeminiLiveSink {
  GstElement parent;
  GstPad *audiopad;
  GstPad *videopad;  // request pad, or nullptr
  GemGeminiLiveSinkImpl *impl;
};

G_DEFINE_TYPE(GemGeminiLiveSink, gem_gemini_live_sink, GST_TYPE_ELEMENT)

GType gem_live_response_modality_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {MODALITY_AUDIO, "The model answers with speech (native-audio models)", "audio"},
      {MODALITY_TEXT, "The model answers with text", "text"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemLiveResponseModality", values));
  return type;
}

GType gem_live_vad_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {VAD_SERVER_AUTOMATIC, "The service detects when the user speaks", "server-automatic"},
      {VAD_OFF, "The application marks turns with activity-start / activity-end", "off"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemLiveVad", values));
  return type;
}

GType gem_live_sensitivity_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {{SENSITIVITY_DEFAULT, "Service default", "default"},
                                      {SENSITIVITY_HIGH, "High sensitivity", "high"},
                                      {SENSITIVITY_LOW, "Low sensitivity", "low"},
                                      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemLiveSensitivity", values));
  return type;
}

GType gem_live_activity_handling_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {HANDLING_DEFAULT, "Service default (speech interrupts the model)", "default"},
      {HANDLING_INTERRUPT, "The user's speech interrupts the model (barge-in)", "interrupt"},
      {HANDLING_NO_INTERRUPTION, "The model finishes its turn while the user speaks",
       "no-interruption"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GemLiveActivityHandling", values));
  return type;
}

static GstStaticPadTemplate audio_template = GST_STATIC_PAD_TEMPLATE(
    "audio", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format=(string)S16LE, rate=(int)16000, channels=(int)1, "
                    "layout=(string)interleaved"));

static GstStaticPadTemplate video_template =
    GST_STATIC_PAD_TEMPLATE("video", GST_PAD_SINK, GST_PAD_REQUEST, GST_STATIC_CAPS("image/jpeg"));

namespace {

// ---------------------------------------------------------------------------------------------
// Configuration

std::vector<gemstream::LiveFunctionDeclaration> parse_tools(const std::string &text) {
  std::vector<gemstream::LiveFunctionDeclaration> out;
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    return out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error &e) {
    throw Error(ErrorKind::InvalidArgument,
                std::string("the tools property is not valid JSON: ") + e.what());
  }
  if (j.is_object() && j.contains("functionDeclarations"))
    j = j["functionDeclarations"];
  if (!j.is_array())
    throw Error(ErrorKind::InvalidArgument,
                "the tools property must be a JSON array of function declarations "
                "([{\"name\":...,\"description\":...,\"parameters\":{...}}])");
  for (std::size_t i = 0; i < j.size(); ++i) {
    const auto &d = j[i];
    const std::string where = "tools[" + std::to_string(i) + "]";
    if (!d.is_object() || !d.contains("name") || !d["name"].is_string() ||
        d["name"].get<std::string>().empty())
      throw Error(ErrorKind::InvalidArgument, where + ": a function declaration needs a \"name\"");
    gemstream::LiveFunctionDeclaration f;
    f.name = d["name"].get<std::string>();
    if (d.contains("description")) {
      if (!d["description"].is_string())
        throw Error(ErrorKind::InvalidArgument, where + ".description must be a string");
      f.description = d["description"].get<std::string>();
    }
    if (d.contains("parameters")) {
      if (!d["parameters"].is_object())
        throw Error(ErrorKind::InvalidArgument, where + ".parameters must be a JSON object");
      f.parameters_json = d["parameters"].dump();
    }
    out.push_back(std::move(f));
  }
  return out;
}

gemstream::LiveConfig make_config(const Settings &s) {
  gemstream::LiveConfig c;
  c.model = s.model;
  c.response_modality =
      s.modality == MODALITY_TEXT ? gemstream::LiveModality::Text : gemstream::LiveModality::Audio;
  c.voice_name = s.voice;
  c.language_code = s.language;
  c.system_instruction = s.system_instruction;
  c.functions = parse_tools(s.tools_json);
  c.google_search = s.enable_search;
  c.activity_detection.automatic = s.vad == VAD_SERVER_AUTOMATIC;
  static constexpr gemstream::StartSensitivity kStart[] = {gemstream::StartSensitivity::Unspecified,
                                                           gemstream::StartSensitivity::High,
                                                           gemstream::StartSensitivity::Low};
  static constexpr gemstream::EndSensitivity kEnd[] = {gemstream::EndSensitivity::Unspecified,
                                                       gemstream::EndSensitivity::High,
                                                       gemstream::EndSensitivity::Low};
  c.activity_detection.start_sensitivity = kStart[s.start_sensitivity];
  c.activity_detection.end_sensitivity = kEnd[s.end_sensitivity];
  if (s.prefix_padding_ms >= 0)
    c.activity_detection.prefix_padding_ms = s.prefix_padding_ms;
  if (s.silence_duration_ms >= 0)
    c.activity_detection.silence_duration_ms = s.silence_duration_ms;
  static constexpr gemstream::ActivityHandling kHandling[] = {
      gemstream::ActivityHandling::Unspecified,
      gemstream::ActivityHandling::StartOfActivityInterrupts,
      gemstream::ActivityHandling::NoInterruption};
  c.activity_handling = kHandling[s.activity_handling];
  c.input_transcription = s.input_transcription;
  c.output_transcription = s.output_transcription;
  c.context_compression.enabled = s.context_compression;
  c.session_resumption = true;
  c.resume_handle = s.resumption_handle;
  c.input_sample_rate = kInputRate;
  c.max_buffered_audio = std::chrono::milliseconds(s.max_buffered_ms);
  c.max_reconnect_attempts = int(s.reconnect_attempts);
  return c;
}

const char *state_name(gemstream::LiveState state) {
  switch (state) {
  case gemstream::LiveState::Idle: return "idle";
  case gemstream::LiveState::Connecting: return "connecting";
  case gemstream::LiveState::SettingUp: return "setting-up";
  case gemstream::LiveState::Ready: return "ready";
  case gemstream::LiveState::Reconnecting: return "reconnecting";
  case gemstream::LiveState::Closed: return "closed";
  case gemstream::LiveState::Failed: return "failed";
  }
  return "unknown";
}

void post_element_message(GemGeminiLiveSink *self, GstStructure *s) {
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

// The session's fatal error. A sink that cannot reach the service failed to open it for
// writing: connect failures are OPEN_WRITE here (the shared mapping says OPEN_READ, for sources).
void post_session_error(GemGeminiLiveSink *self, const Error &error) {
  if (error.kind() != ErrorKind::Network) {
    GEM_POST_ENGINE_ERROR(self, error, "Gemini Live session failed");
    return;
  }
  GstStructure *details = gst_structure_new("details", "error-kind", G_TYPE_STRING,
                                            gemstream::to_string(error.kind()), nullptr);
  gst_element_message_full_with_details(
      GST_ELEMENT(self), GST_MESSAGE_ERROR, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE,
      g_strdup_printf("Gemini Live session failed: could not reach the service: %s",
                      error.message().c_str()),
      g_strdup(error.what()), __FILE__, GST_FUNCTION, __LINE__, details);
}

// "[1] title: uri" per web source of a groundingMetadata object, and its search queries.
std::pair<std::string, std::string> render_grounding(const std::string &metadata_json) {
  std::string citations, queries;
  try {
    const auto j = nlohmann::json::parse(metadata_json);
    if (auto it = j.find("groundingChunks"); it != j.end() && it->is_array()) {
      int n = 0;
      for (const auto &chunk : *it) {
        ++n;
        const auto web = chunk.find("web");
        if (web == chunk.end() || !web->is_object())
          continue;
        const std::string title = web->value("title", std::string());
        const std::string uri = web->value("uri", std::string());
        citations += "[" + std::to_string(n) + "] " + (title.empty() ? uri : title) +
                     (title.empty() || uri.empty() ? "" : ": " + uri) + "\n";
      }
    }
    if (auto it = j.find("webSearchQueries"); it != j.end() && it->is_array()) {
      for (const auto &q : *it) {
        if (!q.is_string())
          continue;
        if (!queries.empty())
          queries += "; ";
        queries += q.get<std::string>();
      }
    }
  } catch (const nlohmann::json::exception &) {
    // The session validated the JSON; whatever it holds, the raw metadata is still posted.
  }
  return {citations, queries};
}

// ---------------------------------------------------------------------------------------------
// Session callbacks (network thread)

// A strong reference to the sink for one callback; empty when the sink is gone or the callback
// belongs to a session that is no longer the current one.
class CallbackScope {
public:
  explicit CallbackScope(const CallbackLink &link)
      : self_(static_cast<GemGeminiLiveSink *>(g_weak_ref_get(&link.element))) {
    if (self_ && self_->impl->generation.load(std::memory_order_acquire) != link.generation) {
      gst_object_unref(self_);
      self_ = nullptr;
    }
  }
  ~CallbackScope() {
    if (self_)
      gst_object_unref(self_);
  }
  CallbackScope(const CallbackScope &) = delete;
  CallbackScope &operator=(const CallbackScope &) = delete;
  explicit operator bool() const { return self_ != nullptr; }
  GemGeminiLiveSink *get() const { return self_; }

private:
  GemGeminiLiveSink *self_;
};

std::shared_ptr<gemstream::LiveToolBridge> current_tools(GemGeminiLiveSink *self) {
  std::lock_guard guard(self->impl->lock);
  return self->impl->tools;
}

// The model produced something for its turn (or the user's speech was transcribed, which
// `from_model` tells apart): the turn is in progress.
void note_model_activity(GemGeminiLiveSink *self, bool from_model = true) {
  if (auto tools = from_model ? current_tools(self) : nullptr)
    tools->model_output();
  GemGeminiLiveSinkImpl *impl = self->impl;
  std::lock_guard guard(impl->lock);
  impl->model_busy = true;
  impl->last_model_activity = Clock::now();
  if (impl->input_ended)
    impl->reply_seen = true;
  impl->cond.notify_all();
}

void on_transcription(GemGeminiLiveSink *self, const char *direction, const std::string &text,
                      bool finished) {
  note_model_activity(self, std::string_view(direction) == "output");
  GST_LOG_OBJECT(self, "%s transcription: %s%s", direction, text.c_str(),
                 finished ? " (finished)" : "");
  post_element_message(self, gst_structure_new("gemstream-live-transcript", "direction",
                                               G_TYPE_STRING, direction, "text", G_TYPE_STRING,
                                               text.c_str(), "finished", G_TYPE_BOOLEAN,
                                               gboolean(finished), nullptr));
  g_signal_emit(self, signals[SIGNAL_TRANSCRIPT], 0, direction, text.c_str(), gboolean(finished));
}

void on_usage(GemGeminiLiveSink *self, const gemstream::LiveUsage &u) {
  GemGeminiLiveSinkImpl *impl = self->impl;
  const std::int64_t input = u.prompt_token_count + u.tool_use_prompt_token_count;
  const std::int64_t output = u.response_token_count + u.thoughts_token_count;
  double usd, total;
  bool priced;
  std::string model;
  {
    std::lock_guard guard(impl->lock);
    priced = impl->prices.known;
    usd = double(input) * impl->prices.usd_per_input_token +
          double(output) * impl->prices.usd_per_output_token;
    impl->total_usd += usd;
    total = impl->total_usd;
    model = impl->model_id;
  }
  post_element_message(
      self, gst_structure_new(
                "gemstream-live-usage", "prompt-tokens", G_TYPE_INT64, gint64(u.prompt_token_count),
                "response-tokens", G_TYPE_INT64, gint64(u.response_token_count), "total-tokens",
                G_TYPE_INT64, gint64(u.total_token_count), "cached-tokens", G_TYPE_INT64,
                gint64(u.cached_content_token_count), "thoughts-tokens", G_TYPE_INT64,
                gint64(u.thoughts_token_count), "tool-use-prompt-tokens", G_TYPE_INT64,
                gint64(u.tool_use_prompt_token_count), "usd", G_TYPE_DOUBLE, usd, "total-usd",
                G_TYPE_DOUBLE, total, "priced", G_TYPE_BOOLEAN, gboolean(priced), nullptr));
  if (priced)
    gemstream::gst::post_cost_message(GST_ELEMENT(self), "live", model, kPriceKey, usd,
                                      double(input + output));
}

gemstream::LiveCallbacks make_callbacks(std::shared_ptr<const CallbackLink> link) {
  gemstream::LiveCallbacks cb;
  cb.on_state = [link](gemstream::LiveState state) {
    CallbackScope scope(*link);
    if (!scope || state == gemstream::LiveState::Ready)
      return;  // "ready" is posted with the session id by on_setup_complete
    if (state == gemstream::LiveState::Reconnecting) {
      // A turn cut off by the drop never completes; after the input ended, wait reply-timeout
      // for the resumed session to answer (again) rather than for that turnComplete.
      GemGeminiLiveSinkImpl *impl = scope.get()->impl;
      std::lock_guard guard(impl->lock);
      impl->model_busy = false;
      impl->reply_seen = false;
      impl->last_model_activity = Clock::now();
      impl->cond.notify_all();
    }
    GST_DEBUG_OBJECT(scope.get(), "session state %s", state_name(state));
    post_element_message(scope.get(), gst_structure_new("gemstream-live-state", "state",
                                                        G_TYPE_STRING, state_name(state), nullptr));
  };
  cb.on_setup_complete = [link](const std::string &session_id) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    GST_DEBUG_OBJECT(scope.get(), "setup complete (session id \"%s\")", session_id.c_str());
    post_element_message(scope.get(),
                         gst_structure_new("gemstream-live-state", "state", G_TYPE_STRING, "ready",
                                           "session-id", G_TYPE_STRING, session_id.c_str(),
                                           nullptr));
  };
  cb.on_audio = [link](std::vector<std::int16_t> pcm, int rate) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    note_model_activity(scope.get());
    const std::size_t n = pcm.size();
    if (!link->hub->model_audio(link->hub_generation, std::move(pcm), rate))
      GST_LOG_OBJECT(scope.get(), "no geminilivesrc plays session \"%s\": %zu samples dropped",
                     link->hub->name().c_str(), n);
  };
  cb.on_text = [link](const std::string &text) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    note_model_activity(scope.get());
    post_element_message(scope.get(), gst_structure_new("gemstream-live-text", "text",
                                                        G_TYPE_STRING, text.c_str(), nullptr));
  };
  cb.on_input_transcription = [link](const std::string &text, bool finished) {
    CallbackScope scope(*link);
    if (scope)
      on_transcription(scope.get(), "input", text, finished);
  };
  cb.on_output_transcription = [link](const std::string &text, bool finished) {
    CallbackScope scope(*link);
    if (scope)
      on_transcription(scope.get(), "output", text, finished);
  };
  cb.on_interrupted = [link] {
    const std::int64_t arrival_us = g_get_monotonic_time();
    CallbackScope scope(*link);
    if (!scope)
      return;
    // The flush first: it is what the user hears.
    link->hub->interrupted(link->hub_generation, arrival_us);
    GST_DEBUG_OBJECT(scope.get(), "interrupted by the user");
    post_element_message(scope.get(), gst_structure_new_empty("gemstream-live-interrupted"));
  };
  cb.on_generation_complete = [link] {
    CallbackScope scope(*link);
    if (scope)
      post_element_message(scope.get(),
                           gst_structure_new_empty("gemstream-live-generation-complete"));
  };
  cb.on_turn_complete = [link](const std::string &reason) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    GST_DEBUG_OBJECT(scope.get(), "turn complete");
    // Posted before the EOS it may release, so applications see the turn end first.
    post_element_message(scope.get(), gst_structure_new("gemstream-live-turn-complete", "reason",
                                                        G_TYPE_STRING, reason.c_str(), nullptr));
    if (auto tools = current_tools(scope.get()))
      tools->model_turn_complete();  // may send a job report: the model's next turn answers it
    GemGeminiLiveSinkImpl *impl = scope.get()->impl;
    std::lock_guard guard(impl->lock);
    impl->model_busy = false;
    impl->last_model_activity = Clock::now();
    if (impl->input_ended)
      impl->reply_seen = true;
    impl->cond.notify_all();
  };
  cb.on_tool_call = [link](const std::vector<gemstream::LiveFunctionCall> &calls) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    note_model_activity(scope.get());
    const auto tools = current_tools(scope.get());
    for (const auto &call : calls) {
      const bool handled = tools && tools->handles(call.name);
      GST_DEBUG_OBJECT(scope.get(), "tool call %s %s(%s)%s", call.id.c_str(), call.name.c_str(),
                       call.args_json.c_str(), handled ? ", run by the sink" : "");
      post_element_message(scope.get(),
                           gst_structure_new("gemstream-live-tool-call", "id", G_TYPE_STRING,
                                             call.id.c_str(), "name", G_TYPE_STRING,
                                             call.name.c_str(), "args", G_TYPE_STRING,
                                             call.args_json.c_str(), "handled", G_TYPE_BOOLEAN,
                                             gboolean(handled), nullptr));
      if (!handled)
        g_signal_emit(scope.get(), signals[SIGNAL_TOOL_CALL], 0, call.id.c_str(),
                      call.name.c_str(), call.args_json.c_str());
    }
    if (tools)
      tools->handle(calls);
  };
  cb.on_tool_call_cancellation = [link](const std::vector<std::string> &ids) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    if (auto tools = current_tools(scope.get()))
      tools->cancel(ids);
    GValue array = G_VALUE_INIT;
    gst_value_array_init(&array, guint(ids.size()));
    for (const auto &id : ids) {
      GValue v = G_VALUE_INIT;
      g_value_init(&v, G_TYPE_STRING);
      g_value_set_string(&v, id.c_str());
      gst_value_array_append_and_take_value(&array, &v);
    }
    GstStructure *s = gst_structure_new_empty("gemstream-live-tool-call-cancellation");
    gst_structure_take_value(s, "ids", &array);
    post_element_message(scope.get(), s);
  };
  cb.on_grounding = [link](const std::string &metadata) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    auto [citations, queries] = render_grounding(metadata);
    post_element_message(scope.get(),
                         gst_structure_new("gemstream-live-grounding", "metadata", G_TYPE_STRING,
                                           metadata.c_str(), "citations", G_TYPE_STRING,
                                           citations.c_str(), "queries", G_TYPE_STRING,
                                           queries.c_str(), nullptr));
  };
  cb.on_usage = [link](const gemstream::LiveUsage &usage) {
    CallbackScope scope(*link);
    if (scope)
      on_usage(scope.get(), usage);
  };
  cb.on_go_away = [link](std::chrono::milliseconds time_left) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    GST_DEBUG_OBJECT(scope.get(), "goAway: %lld ms left", static_cast<long long>(time_left.count()));
    post_element_message(scope.get(),
                         gst_structure_new("gemstream-live-go-away", "time-left", G_TYPE_UINT64,
                                           guint64(std::max<std::int64_t>(time_left.count(), 0)) *
                                               GST_MSECOND,
                                           nullptr));
  };
  cb.on_resumption_update = [link](const gemstream::LiveResumptionUpdate &update) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    if (!update.new_handle.empty()) {
      std::lock_guard guard(scope.get()->impl->lock);
      scope.get()->impl->resumption_handle = update.new_handle;
    }
    post_element_message(scope.get(),
                         gst_structure_new("gemstream-live-resumption", "handle", G_TYPE_STRING,
                                           update.new_handle.c_str(), "resumable", G_TYPE_BOOLEAN,
                                           gboolean(update.resumable), nullptr));
  };
  cb.on_error = [link](const Error &error) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    {
      GemGeminiLiveSinkImpl *impl = scope.get()->impl;
      std::lock_guard guard(impl->lock);
      impl->failed = true;
      impl->cond.notify_all();
    }
    GST_DEBUG_OBJECT(scope.get(), "session failed: %s", error.what());
    post_session_error(scope.get(), error);
  };
  cb.on_warning = [link](const std::string &message) {
    CallbackScope scope(*link);
    if (!scope)
      return;
    GST_WARNING_OBJECT(scope.get(), "%s", message.c_str());
    GST_ELEMENT_WARNING(scope.get(), RESOURCE, FAILED, ("Gemini Live: %s", message.c_str()),
                        (nullptr));
  };
  return cb;
}

// A capability's step (runner threads): the gemstream-capability message. When a job ends the
// bridge tells the model, whose answer the EOS logic then waits for.
void on_capability_event(GemGeminiLiveSink *self, const gemstream::CapabilityEvent &e) {
  GST_DEBUG_OBJECT(self, "capability %s %s: %s", e.capability.c_str(),
                   gemstream::to_string(e.type), e.message.c_str());
  GValue outputs = G_VALUE_INIT;
  gst_value_array_init(&outputs, guint(e.outputs.size()));
  for (const auto &path : e.outputs) {
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_set_string(&v, path.c_str());
    gst_value_array_append_and_take_value(&outputs, &v);
  }
  GstStructure *s = gst_structure_new(
      "gemstream-capability", "event", G_TYPE_STRING, gemstream::to_string(e.type), "call-id",
      G_TYPE_STRING, e.call_id.c_str(), "capability", G_TYPE_STRING, e.capability.c_str(),
      "job-id", G_TYPE_STRING, e.job_id.c_str(), "message", G_TYPE_STRING, e.message.c_str(),
      "artefact", G_TYPE_STRING, e.artefact.c_str(), "usd", G_TYPE_DOUBLE, e.usd, nullptr);
  gst_structure_take_value(s, "outputs", &outputs);
  post_element_message(self, s);
  if (!gemstream::LiveToolBridge::job_report(e).empty()) {
    // The model is told now or after its current turn; reply-timeout counts from here.
    GemGeminiLiveSinkImpl *impl = self->impl;
    std::lock_guard guard(impl->lock);
    impl->last_model_activity = Clock::now();
    impl->cond.notify_all();
  }
}

std::shared_ptr<gemstream::LiveToolBridge> make_tools(const Settings &s,
                                                      const gemstream::Endpoint &endpoint,
                                                      std::shared_ptr<const CallbackLink> link) {
  if (s.capabilities.empty())
    return nullptr;
  gemstream::MediaConfig media = gemstream::MediaConfig::load_default();
  gemstream::CapabilitySet caps = s.capabilities == "default"
                                      ? gemstream::CapabilitySet::load_default(&media)
                                      : gemstream::CapabilitySet::load(s.capabilities, &media);
  gemstream::CapabilityRunnerOptions options;
  options.endpoint = endpoint;
  options.covers_dir = std::filesystem::path(s.media_dir) / "covers";
  options.videos_dir = std::filesystem::path(s.media_dir) / "backgrounds";
  options.user = s.user;
  options.poll_interval = std::chrono::milliseconds(s.job_poll_interval_ms);
  // Runs a nested pipeline on the job's thread, never on a streaming or network thread.
  options.finish_video = gemstream::make_clip_loops;
  auto ledger = std::make_shared<gemstream::CostLedger>();
  return std::make_shared<gemstream::LiveToolBridge>(
      std::move(caps), std::move(media), std::move(ledger), std::move(options),
      [link](const gemstream::CapabilityEvent &event) {
        CallbackScope scope(*link);
        if (scope)
          on_capability_event(scope.get(), event);
      });
}

// ---------------------------------------------------------------------------------------------
// Start / stop

std::shared_ptr<LiveSession> current_session(GemGeminiLiveSink *self) {
  std::lock_guard guard(self->impl->lock);
  return self->impl->session;
}

Prices load_prices(GemGeminiLiveSink *self) {
  Prices p;
  try {
    const auto config = gemstream::MediaConfig::load_default();
    p.known = true;
    p.usd_per_input_token = config.pricing.live_native_audio.usd_per_million_input_tokens / 1e6;
    p.usd_per_output_token = config.pricing.live_native_audio.usd_per_million_output_tokens / 1e6;
  } catch (const Error &e) {
    // Costs are informational: a missing price list must not stop a conversation.
    GST_ELEMENT_WARNING(self, RESOURCE, NOT_FOUND, ("No prices for Live usage: %s", e.what()),
                        (nullptr));
  }
  return p;
}

void stop_session(GemGeminiLiveSink *self) {
  GemGeminiLiveSinkImpl *impl = self->impl;
  std::shared_ptr<LiveSession> session;
  std::shared_ptr<gemstream::LiveToolBridge> tools;
  std::shared_ptr<LiveHub> hub;
  std::uint64_t hub_generation;
  {
    std::lock_guard guard(impl->lock);
    session = std::move(impl->session);
    tools = std::move(impl->tools);
    hub = std::move(impl->hub);
    hub_generation = impl->hub_generation;
    impl->hub_generation = 0;
    impl->generation.store(0, std::memory_order_release);
  }
  if (session)
    session->close();  // no callback runs after this
  session.reset();
  // Cancels capability work still running and waits for it (a cancelled request ends within
  // milliseconds); its events no longer reach the element (the generation changed).
  tools.reset();
  if (hub)
    hub->detach_sink(hub_generation);
  std::lock_guard guard(impl->lock);
  impl->failed = false;
  impl->activity_open = false;
  impl->input_ended = impl->model_busy = impl->reply_seen = false;
  impl->eos_posted = false;
  impl->audio.reset();
  impl->video.reset();
}

bool start_session(GemGeminiLiveSink *self) {
  GemGeminiLiveSinkImpl *impl = self->impl;
  return GEM_GUARDED(GST_ELEMENT(self), false, [&]() -> bool {
    Settings s;
    {
      std::lock_guard guard(impl->lock);
      s = impl->settings;
    }
    gemstream::LiveConfig config = make_config(s);
    const Prices prices = load_prices(self);
    const gemstream::Endpoint endpoint = gemstream::resolve_endpoint(s.api_key, s.base_url);

    auto hub = LiveHub::acquire(s.session);
    const std::uint64_t hub_generation = hub->attach_sink();
    if (hub_generation == 0) {
      GST_ELEMENT_ERROR(self, RESOURCE, BUSY,
                        ("Another geminilivesink already holds Live session \"%s\".",
                         s.session.c_str()),
                        ("Give each geminilivesink/geminilivesrc pair its own 'session' name."));
      return false;
    }
    std::uint64_t generation;
    {
      std::lock_guard guard(impl->lock);
      generation = ++impl->last_generation;
    }
    auto link = std::make_shared<const CallbackLink>(GST_ELEMENT(self), generation, hub,
                                                     hub_generation);
    std::shared_ptr<gemstream::LiveToolBridge> tools;
    std::shared_ptr<LiveSession> session;
    try {
      tools = make_tools(s, endpoint, link);
      if (tools)
        tools->declare(config);
      session = std::make_shared<LiveSession>(endpoint, config, make_callbacks(link));
    } catch (...) {
      tools.reset();
      hub->detach_sink(hub_generation);
      throw;
    }
    if (tools)
      tools->attach(session);
    {
      std::lock_guard guard(impl->lock);
      impl->session = session;
      impl->tools = tools;
      impl->hub = hub;
      impl->hub_generation = hub_generation;
      impl->generation.store(generation, std::memory_order_release);
      impl->automatic_vad = config.activity_detection.automatic;
      impl->sync = s.sync;
      impl->reply_timeout_ms = s.reply_timeout_ms;
      impl->model_id = config.model;
      impl->prices = prices;
      impl->total_usd = 0;
      impl->resumption_handle = s.resumption_handle;
      impl->stopping = impl->playing = impl->failed = false;
      impl->activity_open = false;
      impl->input_ended = impl->model_busy = impl->reply_seen = impl->eos_posted = false;
      impl->audio.reset();
      impl->video.reset();
    }
    GST_DEBUG_OBJECT(self, "connecting Live session \"%s\" with model %s", s.session.c_str(),
                     config.model.c_str());
    try {
      session->connect();
    } catch (...) {
      stop_session(self);
      throw;
    }
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Streaming

// With sync=true, waits until `pts` on the pipeline clock (and for PLAYING). FLUSHING when the
// pad flushes or the element stops meanwhile.
GstFlowReturn wait_for_running_time(GemGeminiLiveSink *self, PadState &pad, GstClockTime pts) {
  GemGeminiLiveSinkImpl *impl = self->impl;
  std::unique_lock lk(impl->lock);
  if (!impl->sync || !GST_CLOCK_TIME_IS_VALID(pts))
    return impl->stopping || pad.flushing ? GST_FLOW_FLUSHING : GST_FLOW_OK;
  for (;;) {
    if (impl->stopping || pad.flushing)
      return GST_FLOW_FLUSHING;
    if (!impl->playing) {
      impl->cond.wait(lk);
      continue;
    }
    const GstClockTime running_time =
        gst_segment_to_running_time(&pad.segment, GST_FORMAT_TIME, pts);
    GstClock *clock = gst_element_get_clock(GST_ELEMENT(self));
    if (!GST_CLOCK_TIME_IS_VALID(running_time) || clock == nullptr) {
      if (clock)
        gst_object_unref(clock);
      return GST_FLOW_OK;  // outside the segment, or no clock to sync to
    }
    GstClockID id = gst_clock_new_single_shot_id(
        clock, gst_element_get_base_time(GST_ELEMENT(self)) + running_time);
    gst_object_unref(clock);
    pad.clock_id = id;
    lk.unlock();
    GST_TRACE_OBJECT(self, "waiting for running time %" GST_TIME_FORMAT,
                     GST_TIME_ARGS(running_time));
    const GstClockReturn ret = gst_clock_id_wait(id, nullptr);
    lk.lock();
    pad.clock_id = nullptr;
    gst_clock_id_unref(id);
    if (ret != GST_CLOCK_UNSCHEDULED)
      return GST_FLOW_OK;
    // Unscheduled: flushing, stopping or PLAYING→PAUSED (the base time changes); check again.
  }
}

void wake_waits_locked(GemGeminiLiveSinkImpl *impl) {
  for (PadState *pad : {&impl->audio, &impl->video})
    if (pad->clock_id != nullptr)
      gst_clock_id_unschedule(pad->clock_id);
  impl->cond.notify_all();
}

GstFlowReturn send_audio(GemGeminiLiveSink *self, GstBuffer *buffer) {
  GemGeminiLiveSinkImpl *impl = self->impl;
  std::shared_ptr<LiveSession> session;
  {
    std::lock_guard guard(impl->lock);
    if (!impl->audio.negotiated) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("No audio format was negotiated."),
                        ("audio buffer before a CAPS event"));
      return GST_FLOW_NOT_NEGOTIATED;
    }
    session = impl->session;
  }
  const GstFlowReturn ret = wait_for_running_time(self, impl->audio, GST_BUFFER_PTS(buffer));
  if (ret != GST_FLOW_OK || !session)
    return ret == GST_FLOW_OK ? GST_FLOW_FLUSHING : ret;

  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Cannot read an audio buffer."), (nullptr));
    return GST_FLOW_ERROR;
  }
  const std::size_t samples = map.size / 2;
  bool ok = true;
  if (samples > 0) {
    if (G_BYTE_ORDER == G_LITTLE_ENDIAN && reinterpret_cast<std::uintptr_t>(map.data) % 2 == 0) {
      ok = session->send_audio(reinterpret_cast<const std::int16_t *>(map.data), samples);
    } else {
      std::vector<std::int16_t> pcm(samples);
      for (std::size_t i = 0; i < samples; ++i)
        pcm[i] = std::int16_t(GST_READ_UINT16_LE(map.data + 2 * i));
      ok = session->send_audio(pcm.data(), samples);
    }
  }
  gst_buffer_unmap(buffer, &map);
  GST_TRACE_OBJECT(self, "sent %zu samples", samples);
  if (ok)
    return GST_FLOW_OK;
  std::lock_guard guard(impl->lock);
  // The session is closed (we are stopping) or failed (its error is on the bus).
  return impl->stopping || impl->audio.flushing ? GST_FLOW_FLUSHING : GST_FLOW_ERROR;
}

GstFlowReturn send_video(GemGeminiLiveSink *self, GstBuffer *buffer) {
  GemGeminiLiveSinkImpl *impl = self->impl;
  std::shared_ptr<LiveSession> session = current_session(self);
  const GstFlowReturn ret = wait_for_running_time(self, impl->video, GST_BUFFER_PTS(buffer));
  if (ret != GST_FLOW_OK || !session)
    return ret == GST_FLOW_OK ? GST_FLOW_FLUSHING : ret;
  if (gst_buffer_get_size(buffer) == 0)
    return GST_FLOW_OK;
  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Cannot read a video frame."), (nullptr));
    return GST_FLOW_ERROR;
  }
  const bool ok = session->send_video_jpeg(
      std::string_view(reinterpret_cast<const char *>(map.data), map.size));
  GST_LOG_OBJECT(self, "sent a %zu-byte JPEG frame", map.size);
  gst_buffer_unmap(buffer, &map);
  if (ok)
    return GST_FLOW_OK;
  std::lock_guard guard(impl->lock);
  return impl->stopping || impl->video.flushing ? GST_FLOW_FLUSHING : GST_FLOW_ERROR;
}

// The end of the user's input: tell the service, wait for the model's answer (see the doc
// block), then post EOS. Runs on the audio pad's streaming thread, which has nothing else to do;
// flushes and PAUSED→READY wake it.
void handle_audio_eos(GemGeminiLiveSink *self, guint32 seqnum) {
  GemGeminiLiveSinkImpl *impl = self->impl;
  std::shared_ptr<LiveSession> session;
  bool automatic, close_activity;
  {
    std::lock_guard guard(impl->lock);
    session = impl->session;
    automatic = impl->automatic_vad;
    close_activity = impl->activity_open;
    impl->activity_open = false;
    impl->input_ended = true;
    impl->reply_seen = impl->model_busy;
  }
  if (session) {
    try {
      if (automatic)
        session->audio_stream_end();
      else if (close_activity)
        session->activity_end();
    } catch (const Error &e) {
      GST_WARNING_OBJECT(self, "ending the input: %s", e.what());
    }
  }

  std::shared_ptr<LiveHub> hub;
  std::uint64_t hub_generation;
  {
    std::unique_lock lk(impl->lock);
    const auto timeout = std::chrono::milliseconds(impl->reply_timeout_ms);
    const Clock::time_point ended = Clock::now();
    const std::shared_ptr<gemstream::LiveToolBridge> tools = impl->tools;
    for (;;) {
      if (impl->stopping || impl->audio.flushing)
        return;
      if (!impl->session || impl->failed || timeout.count() == 0)
        break;
      int awaiting = 0;
      if (tools) {
        // Capability work the user asked for (a card image, a background video job) finishes
        // before the conversation ends, bounded by the runner's own timeouts, and so does the
        // model's answer to a job's report. The runner's count is not signalled: poll it.
        lk.unlock();
        const int pending = tools->pending();
        awaiting = tools->awaiting_answer();
        lk.lock();
        if (impl->stopping || impl->audio.flushing)
          return;
        if (pending > 0) {
          impl->cond.wait_for(lk, std::chrono::milliseconds(50));
          continue;
        }
      }
      if (impl->reply_seen && !impl->model_busy && awaiting == 0)
        break;
      // Silence from the model for reply-timeout ends the wait, whether or not it answered.
      const Clock::time_point deadline = std::max(ended, impl->last_model_activity) + timeout;
      if (Clock::now() >= deadline) {
        GST_DEBUG_OBJECT(self, "no answer from the model within %u ms of the input's end",
                         impl->reply_timeout_ms);
        break;
      }
      impl->cond.wait_until(lk, deadline);
    }
    impl->eos_posted = true;
    impl->eos_seqnum = seqnum;
    hub = impl->hub;
    hub_generation = impl->hub_generation;
  }
  GST_DEBUG_OBJECT(self, "posting EOS");
  GstMessage *eos = gst_message_new_eos(GST_OBJECT(self));
  gst_message_set_seqnum(eos, seqnum);
  gst_element_post_message(GST_ELEMENT(self), eos);
  if (hub)
    hub->finished(hub_generation);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Pad functions

static GstFlowReturn gem_gemini_live_sink_chain(GstPad *pad, GstObject *parent, GstBuffer *buffer) {
  auto *self = GEM_GEMINI_LIVE_SINK(parent);
  auto held = gemstream::gst::Ref<GstBuffer>::adopt(buffer);
  return GEM_GUARDED(GST_ELEMENT(self), GST_FLOW_ERROR, [&]() -> GstFlowReturn {
    return pad == self->audiopad ? send_audio(self, held.get()) : send_video(self, held.get());
  });
}

static gboolean gem_gemini_live_sink_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  auto *self = GEM_GEMINI_LIVE_SINK(parent);
  GemGeminiLiveSinkImpl *impl = self->impl;
  const bool is_audio = pad == self->audiopad;
  PadState &state = is_audio ? impl->audio : impl->video;
  switch (GST_EVENT_TYPE(event)) {
  case GST_EVENT_CAPS: {
    // The pad template is exact; accept-caps already refused anything else.
    std::lock_guard guard(impl->lock);
    state.negotiated = true;
    break;
  }
  case GST_EVENT_SEGMENT: {
    const GstSegment *segment;
    gst_event_parse_segment(event, &segment);
    std::lock_guard guard(impl->lock);
    if (segment->format == GST_FORMAT_TIME) {
      gst_segment_copy_into(segment, &state.segment);
    } else {
      GST_DEBUG_OBJECT(pad, "%s segment: no sync", gst_format_get_name(segment->format));
      gst_segment_init(&state.segment, GST_FORMAT_UNDEFINED);
    }
    break;
  }
  case GST_EVENT_FLUSH_START: {
    std::lock_guard guard(impl->lock);
    state.flushing = true;
    wake_waits_locked(impl);
    break;
  }
  case GST_EVENT_FLUSH_STOP: {
    std::lock_guard guard(impl->lock);
    state.flushing = false;
    gst_segment_init(&state.segment, GST_FORMAT_TIME);
    if (is_audio)
      impl->input_ended = impl->reply_seen = impl->eos_posted = false;
    break;
  }
  case GST_EVENT_EOS:
    if (is_audio) {
      const guint32 seqnum = gst_event_get_seqnum(event);
      gst_event_unref(event);
      GEM_GUARDED(GST_ELEMENT(self), false, [&] {
        handle_audio_eos(self, seqnum);
        return true;
      });
      return TRUE;
    }
    GST_DEBUG_OBJECT(pad, "end of the video frames");
    break;
  default:
    break;
  }
  gst_event_unref(event);
  return TRUE;
}

static GstPad *gem_gemini_live_sink_request_new_pad(GstElement *element, GstPadTemplate *templ,
                                                    const gchar *, const GstCaps *) {
  auto *self = GEM_GEMINI_LIVE_SINK(element);
  GST_OBJECT_LOCK(self);
  if (self->videopad != nullptr) {
    GST_OBJECT_UNLOCK(self);
    GST_WARNING_OBJECT(self, "the video pad was already requested");
    return nullptr;
  }
  GstPad *pad = gst_pad_new_from_template(templ, "video");
  self->videopad = pad;
  GST_OBJECT_UNLOCK(self);
  gst_pad_set_chain_function(pad, GST_DEBUG_FUNCPTR(gem_gemini_live_sink_chain));
  gst_pad_set_event_function(pad, GST_DEBUG_FUNCPTR(gem_gemini_live_sink_event));
  {
    std::lock_guard guard(self->impl->lock);
    self->impl->video.reset();
  }
  if (GST_STATE(element) > GST_STATE_READY)
    gst_pad_set_active(pad, TRUE);
  gst_element_add_pad(element, pad);
  return pad;
}

static void gem_gemini_live_sink_release_pad(GstElement *element, GstPad *pad) {
  auto *self = GEM_GEMINI_LIVE_SINK(element);
  GST_OBJECT_LOCK(self);
  if (pad != self->videopad) {
    GST_OBJECT_UNLOCK(self);
    return;
  }
  self->videopad = nullptr;
  GST_OBJECT_UNLOCK(self);
  {
    std::lock_guard guard(self->impl->lock);
    self->impl->video.flushing = true;
    wake_waits_locked(self->impl);
  }
  gst_pad_set_active(pad, FALSE);
  gst_element_remove_pad(element, pad);
}

// ---------------------------------------------------------------------------------------------
// Action signals

namespace {

template <typename F> gboolean with_session(GemGeminiLiveSink *self, const char *what, F &&fn) {
  auto session = current_session(self);
  if (!session) {
    GST_WARNING_OBJECT(self, "%s: no Live session (the element is not PAUSED or PLAYING)", what);
    return FALSE;
  }
  try {
    return fn(*session) ? TRUE : FALSE;
  } catch (const std::exception &e) {
    GST_WARNING_OBJECT(self, "%s: %s", what, e.what());
    return FALSE;
  }
}

} // namespace

static gboolean gem_gemini_live_sink_send_tool_response(GemGeminiLiveSink *self, const gchar *id,
                                                        const gchar *name,
                                                        const gchar *response_json) {
  if (!id || !name || !response_json) {
    GST_WARNING_OBJECT(self, "send-tool-response needs an id, a name and a JSON response");
    return FALSE;
  }
  return with_session(self, "send-tool-response", [&](LiveSession &s) {
    return s.send_tool_response({{id, name, response_json}});
  });
}

static gboolean gem_gemini_live_sink_send_text(GemGeminiLiveSink *self, const gchar *text) {
  if (!text || !*text)
    return FALSE;
  return with_session(self, "send-text", [&](LiveSession &s) { return s.send_text(text); });
}

static gboolean gem_gemini_live_sink_activity_start(GemGeminiLiveSink *self) {
  return with_session(self, "activity-start", [&](LiveSession &s) {
    const bool ok = s.activity_start();
    std::lock_guard guard(self->impl->lock);
    self->impl->activity_open = ok;
    return ok;
  });
}

static gboolean gem_gemini_live_sink_activity_end(GemGeminiLiveSink *self) {
  return with_session(self, "activity-end", [&](LiveSession &s) {
    {
      std::lock_guard guard(self->impl->lock);
      self->impl->activity_open = false;
    }
    return s.activity_end();
  });
}

// ---------------------------------------------------------------------------------------------
// GstElement / GObject

static GstStateChangeReturn gem_gemini_live_sink_change_state(GstElement *element,
                                                             GstStateChange transition) {
  auto *self = GEM_GEMINI_LIVE_SINK(element);
  GemGeminiLiveSinkImpl *impl = self->impl;

  switch (transition) {
  case GST_STATE_CHANGE_READY_TO_PAUSED:
    if (!start_session(self))
      return GST_STATE_CHANGE_FAILURE;
    break;
  case GST_STATE_CHANGE_PLAYING_TO_PAUSED: {
    std::lock_guard guard(impl->lock);
    impl->playing = false;
    wake_waits_locked(impl);  // a sync wait re-computes with the next base time
    break;
  }
  case GST_STATE_CHANGE_PAUSED_TO_READY: {
    std::lock_guard guard(impl->lock);
    impl->stopping = true;
    wake_waits_locked(impl);
    break;
  }
  default:
    break;
  }

  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS(gem_gemini_live_sink_parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE) {
    if (transition == GST_STATE_CHANGE_READY_TO_PAUSED)
      stop_session(self);
    return ret;
  }

  switch (transition) {
  case GST_STATE_CHANGE_PAUSED_TO_PLAYING: {
    bool repost;
    guint32 seqnum;
    {
      std::lock_guard guard(impl->lock);
      impl->playing = true;
      impl->cond.notify_all();
      repost = impl->eos_posted;
      seqnum = impl->eos_seqnum;
    }
    if (repost) {
      // As GstBaseSink does: a bin counts EOS messages posted while PLAYING.
      GstMessage *eos = gst_message_new_eos(GST_OBJECT(self));
      gst_message_set_seqnum(eos, seqnum);
      gst_element_post_message(element, eos);
    }
    break;
  }
  case GST_STATE_CHANGE_PAUSED_TO_READY:
    // The pads are inactive: no streaming thread uses the session any more.
    stop_session(self);
    break;
  default:
    break;
  }
  return ret;
}

static void gem_gemini_live_sink_set_property(GObject *object, guint prop_id, const GValue *value,
                                              GParamSpec *pspec) {
  auto *impl = GEM_GEMINI_LIVE_SINK(object)->impl;
  std::lock_guard guard(impl->lock);
  Settings &s = impl->settings;
  using gemstream::gst::value_to_string;
  switch (prop_id) {
  case PROP_MODEL:
    s.model = value_to_string(value);
    break;
  case PROP_VOICE:
    s.voice = value_to_string(value);
    break;
  case PROP_LANGUAGE:
    s.language = value_to_string(value);
    break;
  case PROP_SYSTEM_INSTRUCTION:
    s.system_instruction = value_to_string(value);
    break;
  case PROP_RESPONSE_MODALITY:
    s.modality = static_cast<GemLiveResponseModality>(g_value_get_enum(value));
    break;
  case PROP_ENABLE_SEARCH:
    s.enable_search = g_value_get_boolean(value);
    break;
  case PROP_TOOLS:
    s.tools_json = value_to_string(value);
    break;
  case PROP_VAD:
    s.vad = static_cast<GemLiveVad>(g_value_get_enum(value));
    break;
  case PROP_START_SENSITIVITY:
    s.start_sensitivity = static_cast<GemLiveSensitivity>(g_value_get_enum(value));
    break;
  case PROP_END_SENSITIVITY:
    s.end_sensitivity = static_cast<GemLiveSensitivity>(g_value_get_enum(value));
    break;
  case PROP_PREFIX_PADDING:
    s.prefix_padding_ms = g_value_get_int(value);
    break;
  case PROP_SILENCE_DURATION:
    s.silence_duration_ms = g_value_get_int(value);
    break;
  case PROP_ACTIVITY_HANDLING:
    s.activity_handling = static_cast<GemLiveActivityHandling>(g_value_get_enum(value));
    break;
  case PROP_INPUT_TRANSCRIPTION:
    s.input_transcription = g_value_get_boolean(value);
    break;
  case PROP_OUTPUT_TRANSCRIPTION:
    s.output_transcription = g_value_get_boolean(value);
    break;
  case PROP_CONTEXT_COMPRESSION:
    s.context_compression = g_value_get_boolean(value);
    break;
  case PROP_API_KEY:
    s.api_key = value_to_string(value);
    break;
  case PROP_BASE_URL:
    s.base_url = value_to_string(value);
    break;
  case PROP_SESSION:
    s.session = value_to_string(value);
    break;
  case PROP_MAX_BUFFERED:
    s.max_buffered_ms = g_value_get_uint(value);
    break;
  case PROP_SYNC:
    s.sync = g_value_get_boolean(value);
    impl->sync = s.sync;
    wake_waits_locked(impl);
    break;
  case PROP_REPLY_TIMEOUT:
    s.reply_timeout_ms = g_value_get_uint(value);
    impl->reply_timeout_ms = s.reply_timeout_ms;
    impl->cond.notify_all();
    break;
  case PROP_RECONNECT_ATTEMPTS:
    s.reconnect_attempts = g_value_get_uint(value);
    break;
  case PROP_RESUMPTION_HANDLE:
    s.resumption_handle = value_to_string(value);
    impl->resumption_handle = s.resumption_handle;
    break;
  case PROP_CAPABILITIES:
    s.capabilities = value_to_string(value);
    break;
  case PROP_MEDIA_DIR:
    s.media_dir = value_to_string(value);
    if (s.media_dir.empty())
      s.media_dir = kDefaultMediaDir;
    break;
  case PROP_USER:
    s.user = value_to_string(value);
    break;
  case PROP_JOB_POLL_INTERVAL:
    s.job_poll_interval_ms = g_value_get_uint(value);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gem_gemini_live_sink_get_property(GObject *object, guint prop_id, GValue *value,
                                              GParamSpec *pspec) {
  auto *self = GEM_GEMINI_LIVE_SINK(object);
  auto *impl = self->impl;
  switch (prop_id) {
  case PROP_MESSAGES_SENT:
  case PROP_MESSAGES_RECEIVED:
  case PROP_DROPPED_AUDIO_MS:
  case PROP_DROPPED_VIDEO_FRAMES:
  case PROP_MALFORMED_MESSAGES:
  case PROP_RECONNECTS: {
    auto session = current_session(self);
    const gemstream::LiveStats st = session ? session->stats() : gemstream::LiveStats{};
    guint64 v = 0;
    switch (prop_id) {
    case PROP_MESSAGES_SENT: v = st.messages_sent; break;
    case PROP_MESSAGES_RECEIVED: v = st.messages_received; break;
    case PROP_DROPPED_AUDIO_MS: v = st.dropped_audio_samples * 1000 / kInputRate; break;
    case PROP_DROPPED_VIDEO_FRAMES: v = st.dropped_video_frames; break;
    case PROP_MALFORMED_MESSAGES: v = st.malformed_messages; break;
    case PROP_RECONNECTS: v = st.reconnects; break;
    default: break;
    }
    g_value_set_uint64(value, v);
    return;
  }
  default:
    break;
  }

  std::lock_guard guard(impl->lock);
  const Settings &s = impl->settings;
  switch (prop_id) {
  case PROP_MODEL:
    g_value_set_string(value, s.model.c_str());
    break;
  case PROP_VOICE:
    g_value_set_string(value, s.voice.c_str());
    break;
  case PROP_LANGUAGE:
    g_value_set_string(value, s.language.c_str());
    break;
  case PROP_SYSTEM_INSTRUCTION:
    g_value_set_string(value, s.system_instruction.c_str());
    break;
  case PROP_RESPONSE_MODALITY:
    g_value_set_enum(value, s.modality);
    break;
  case PROP_ENABLE_SEARCH:
    g_value_set_boolean(value, s.enable_search);
    break;
  case PROP_TOOLS:
    g_value_set_string(value, s.tools_json.c_str());
    break;
  case PROP_VAD:
    g_value_set_enum(value, s.vad);
    break;
  case PROP_START_SENSITIVITY:
    g_value_set_enum(value, s.start_sensitivity);
    break;
  case PROP_END_SENSITIVITY:
    g_value_set_enum(value, s.end_sensitivity);
    break;
  case PROP_PREFIX_PADDING:
    g_value_set_int(value, s.prefix_padding_ms);
    break;
  case PROP_SILENCE_DURATION:
    g_value_set_int(value, s.silence_duration_ms);
    break;
  case PROP_ACTIVITY_HANDLING:
    g_value_set_enum(value, s.activity_handling);
    break;
  case PROP_INPUT_TRANSCRIPTION:
    g_value_set_boolean(value, s.input_transcription);
    break;
  case PROP_OUTPUT_TRANSCRIPTION:
    g_value_set_boolean(value, s.output_transcription);
    break;
  case PROP_CONTEXT_COMPRESSION:
    g_value_set_boolean(value, s.context_compression);
    break;
  case PROP_BASE_URL:
    g_value_set_string(value, s.base_url.c_str());
    break;
  case PROP_SESSION:
    g_value_set_string(value, s.session.c_str());
    break;
  case PROP_MAX_BUFFERED:
    g_value_set_uint(value, s.max_buffered_ms);
    break;
  case PROP_SYNC:
    g_value_set_boolean(value, s.sync);
    break;
  case PROP_REPLY_TIMEOUT:
    g_value_set_uint(value, s.reply_timeout_ms);
    break;
  case PROP_RECONNECT_ATTEMPTS:
    g_value_set_uint(value, s.reconnect_attempts);
    break;
  case PROP_RESUMPTION_HANDLE:
    g_value_set_string(value, impl->resumption_handle.c_str());
    break;
  case PROP_CAPABILITIES:
    g_value_set_string(value, s.capabilities.c_str());
    break;
  case PROP_MEDIA_DIR:
    g_value_set_string(value, s.media_dir.c_str());
    break;
  case PROP_USER:
    g_value_set_string(value, s.user.c_str());
    break;
  case PROP_JOB_POLL_INTERVAL:
    g_value_set_uint(value, s.job_poll_interval_ms);
    break;
  case PROP_TOTAL_USD:
    g_value_set_double(value, impl->total_usd);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    break;
  }
}

static void gem_gemini_live_sink_finalize(GObject *object) {
  auto *self = GEM_GEMINI_LIVE_SINK(object);
  // Normally stopped in PAUSED→READY already; this closes a session left open by an element
  // disposed in a higher state.
  stop_session(self);
  delete self->impl;
  self->impl = nullptr;
  G_OBJECT_CLASS(gem_gemini_live_sink_parent_class)->finalize(object);
}

static void gem_gemini_live_sink_init(GemGeminiLiveSink *self) {
  self->impl = new GemGeminiLiveSinkImpl();
  self->audiopad = gst_pad_new_from_static_template(&audio_template, "audio");
  gst_pad_set_chain_function(self->audiopad, GST_DEBUG_FUNCPTR(gem_gemini_live_sink_chain));
  gst_pad_set_event_function(self->audiopad, GST_DEBUG_FUNCPTR(gem_gemini_live_sink_event));
  gst_element_add_pad(GST_ELEMENT(self), self->audiopad);
  self->videopad = nullptr;
  GST_OBJECT_FLAG_SET(self, GST_ELEMENT_FLAG_SINK);
}

static void gem_gemini_live_sink_class_init(GemGeminiLiveSinkClass *klass) {
  auto *gobject_class = G_OBJECT_CLASS(klass);
  auto *element_class = GST_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gem_gemini_live_sink_debug, "geminilivesink", 0,
                          "gemstream Gemini Live conversation sink");

  gobject_class->set_property = gem_gemini_live_sink_set_property;
  gobject_class->get_property = gem_gemini_live_sink_get_property;
  gobject_class->finalize = gem_gemini_live_sink_finalize;

  const auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                              GST_PARAM_MUTABLE_READY);
  const auto playing_flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                      GST_PARAM_MUTABLE_PLAYING);
  const auto ro = static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "Live model id, bare or as models/ID, e.g. "
                          "gemini-2.5-flash-native-audio-preview-09-2025.",
                          gemstream::kDefaultLiveModel, flags));
  g_object_class_install_property(
      gobject_class, PROP_VOICE,
      g_param_spec_string("voice", "Voice",
                          "Prebuilt voice of the model's speech, e.g. Puck, Charon, Kore. Empty: "
                          "the service default.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_LANGUAGE,
      g_param_spec_string("language", "Language",
                          "BCP-47 language code of the conversation, e.g. en-US or de-DE. Empty: "
                          "the service default.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_SYSTEM_INSTRUCTION,
      g_param_spec_string("system-instruction", "System instruction",
                          "Instructions that set the model's role and style for the whole "
                          "session. Empty for none.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_RESPONSE_MODALITY,
      g_param_spec_enum("response-modality", "Response modality",
                        "Whether the model answers with speech (played by geminilivesrc) or "
                        "text (gemstream-live-text messages). Native-audio models only speak.",
                        GEM_TYPE_LIVE_RESPONSE_MODALITY, MODALITY_AUDIO, flags));
  g_object_class_install_property(
      gobject_class, PROP_ENABLE_SEARCH,
      g_param_spec_boolean("enable-search", "Enable search",
                           "Let the model ground its answers with Google Search; citations arrive "
                           "as gemstream-live-grounding messages.",
                           FALSE, flags));
  g_object_class_install_property(
      gobject_class, PROP_TOOLS,
      g_param_spec_string("tools", "Tools",
                          "Functions the model may call, as a JSON array of function "
                          "declarations [{\"name\":...,\"description\":...,\"parameters\":{...}}]. "
                          "Calls arrive as tool-call signals and messages; answer them with "
                          "send-tool-response. Empty for none.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_VAD,
      g_param_spec_enum("vad", "Voice activity detection",
                        "Who detects the user's turns: the service (server-automatic), or the "
                        "application with the activity-start and activity-end action signals "
                        "(off).",
                        GEM_TYPE_LIVE_VAD, VAD_SERVER_AUTOMATIC, flags));
  g_object_class_install_property(
      gobject_class, PROP_START_SENSITIVITY,
      g_param_spec_enum("start-sensitivity", "Start-of-speech sensitivity",
                        "How readily the service's voice activity detection decides the user "
                        "started speaking.",
                        GEM_TYPE_LIVE_SENSITIVITY, SENSITIVITY_DEFAULT, flags));
  g_object_class_install_property(
      gobject_class, PROP_END_SENSITIVITY,
      g_param_spec_enum("end-sensitivity", "End-of-speech sensitivity",
                        "How readily the service's voice activity detection decides the user "
                        "stopped speaking.",
                        GEM_TYPE_LIVE_SENSITIVITY, SENSITIVITY_DEFAULT, flags));
  g_object_class_install_property(
      gobject_class, PROP_PREFIX_PADDING,
      g_param_spec_int("prefix-padding", "Prefix padding",
                       "Speech needed before the service commits to a start of speech, in "
                       "milliseconds; -1 for the service default.",
                       -1, kMaxDurationMs, -1, flags));
  g_object_class_install_property(
      gobject_class, PROP_SILENCE_DURATION,
      g_param_spec_int("silence-duration", "Silence duration",
                       "Silence after which the service decides the user stopped speaking, in "
                       "milliseconds; -1 for the service default.",
                       -1, kMaxDurationMs, -1, flags));
  g_object_class_install_property(
      gobject_class, PROP_ACTIVITY_HANDLING,
      g_param_spec_enum("activity-handling", "Activity handling",
                        "Whether the user's speech interrupts the model (barge-in) or the model "
                        "finishes its turn first.",
                        GEM_TYPE_LIVE_ACTIVITY_HANDLING, HANDLING_DEFAULT, flags));
  g_object_class_install_property(
      gobject_class, PROP_INPUT_TRANSCRIPTION,
      g_param_spec_boolean("input-transcription", "Input transcription",
                           "Ask the service for transcripts of what the user says "
                           "(gemstream-live-transcript messages with direction input).",
                           TRUE, flags));
  g_object_class_install_property(
      gobject_class, PROP_OUTPUT_TRANSCRIPTION,
      g_param_spec_boolean("output-transcription", "Output transcription",
                           "Ask the service for transcripts of what the model says "
                           "(gemstream-live-transcript messages with direction output).",
                           TRUE, flags));
  g_object_class_install_property(
      gobject_class, PROP_CONTEXT_COMPRESSION,
      g_param_spec_boolean("context-compression", "Context compression",
                           "Compress the context with a sliding window, which lifts the session "
                           "length limits (about 15 minutes of audio, 2 minutes with video).",
                           FALSE, flags));
  g_object_class_install_property(
      gobject_class, PROP_API_KEY,
      g_param_spec_string("api-key", "API key",
                          "Gemini API key, sent in the x-goog-api-key header of the WebSocket "
                          "upgrade. Write-only. Empty: GOOGLE_API_KEY or GEMINI_API_KEY from the "
                          "environment.",
                          "",
                          static_cast<GParamFlags>(G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS |
                                                   GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(
      gobject_class, PROP_BASE_URL,
      g_param_spec_string("base-url", "Base URL",
                          "API base URL, e.g. http://127.0.0.1:8080 (the WebSocket URL is derived "
                          "from it). Empty: GEMSTREAM_BASE_URL, else Google's endpoint when a key "
                          "is set, else an in-process local backend.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_SESSION,
      g_param_spec_string("session", "Session",
                          "Name pairing this sink with the geminilivesrc that plays the model's "
                          "speech, in any pipeline of this process. One sink per name.",
                          kDefaultSession, flags));
  g_object_class_install_property(
      gobject_class, PROP_MAX_BUFFERED,
      g_param_spec_uint("max-buffered", "Maximum buffered",
                        "Most input audio held while the connection is being set up, re-"
                        "established or slow, in milliseconds; beyond it the oldest audio is "
                        "dropped (counted in dropped-audio-ms).",
                        kMinMaxBufferedMs, kMaxMaxBufferedMs, kDefaultMaxBufferedMs, flags));
  g_object_class_install_property(
      gobject_class, PROP_SYNC,
      g_param_spec_boolean("sync", "Sync",
                           "Send each buffer at its running time on the pipeline clock. FALSE "
                           "for live sources such as a microphone; TRUE to send a file at the "
                           "speed it was recorded.",
                           FALSE, playing_flags));
  g_object_class_install_property(
      gobject_class, PROP_REPLY_TIMEOUT,
      g_param_spec_uint("reply-timeout", "Reply timeout",
                        "After the input ended: how long the model may stay silent before the "
                        "sink posts EOS without waiting further for its answer, in "
                        "milliseconds; 0 posts EOS as soon as the input ends.",
                        0, kMaxReplyTimeoutMs, kDefaultReplyTimeoutMs, playing_flags));
  g_object_class_install_property(
      gobject_class, PROP_RECONNECT_ATTEMPTS,
      g_param_spec_uint("reconnect-attempts", "Reconnect attempts",
                        "Consecutive failed connection attempts (with exponential backoff from "
                        "250 ms) before the session fails with an error; 0 never reconnects.",
                        0, kMaxReconnectAttempts, kDefaultReconnectAttempts, flags));
  g_object_class_install_property(
      gobject_class, PROP_RESUMPTION_HANDLE,
      g_param_spec_string("resumption-handle", "Resumption handle",
                          "Session resumption handle. Set it to continue an earlier conversation "
                          "(handles stay valid about 2 hours); reading returns the newest handle "
                          "the service issued. Empty: a new conversation.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_CAPABILITIES,
      g_param_spec_string("capabilities", "Capabilities",
                          "Agent capabilities the model may use by conversation (card images, "
                          "background videos, search), run by the sink itself: \"default\" "
                          "for config/agent_capabilities.json, or the path of such a file. "
                          "Capabilities that cost money ask the user first. Progress arrives as "
                          "gemstream-capability messages. Empty: none.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_MEDIA_DIR,
      g_param_spec_string("media-dir", "Media directory",
                          "Where capabilities write what they make: card images to "
                          "MEDIA-DIR/covers, background videos and their loops to "
                          "MEDIA-DIR/backgrounds.",
                          kDefaultMediaDir, flags));
  g_object_class_install_property(
      gobject_class, PROP_USER,
      g_param_spec_string("user", "User",
                          "Whose money capabilities spend: the name their costs are recorded "
                          "under in the cost ledger and checked against a daily budget. Empty: "
                          "the login name.",
                          "", flags));
  g_object_class_install_property(
      gobject_class, PROP_JOB_POLL_INTERVAL,
      g_param_spec_uint("job-poll-interval", "Job poll interval",
                        "How often a background-video capability polls its Veo operation, in "
                        "milliseconds; 0: poll_interval_seconds of "
                        "config/media_generation.json.",
                        0, kMaxJobPollIntervalMs, 0, flags));
  g_object_class_install_property(
      gobject_class, PROP_MESSAGES_SENT,
      g_param_spec_uint64("messages-sent", "Messages sent",
                          "Client messages written to the service in this session, resent ones "
                          "included.",
                          0, G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_MESSAGES_RECEIVED,
      g_param_spec_uint64("messages-received", "Messages received",
                          "Server messages received in this session.", 0, G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_DROPPED_AUDIO_MS,
      g_param_spec_uint64("dropped-audio-ms", "Dropped audio",
                          "Input audio dropped because more than max-buffered was waiting to be "
                          "sent, in milliseconds.",
                          0, G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_DROPPED_VIDEO_FRAMES,
      g_param_spec_uint64("dropped-video-frames", "Dropped video frames",
                          "Video frames dropped because newer ones replaced them before they "
                          "could be sent.",
                          0, G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_MALFORMED_MESSAGES,
      g_param_spec_uint64("malformed-messages", "Malformed messages",
                          "Server messages that could not be decoded and were ignored.", 0,
                          G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_RECONNECTS,
      g_param_spec_uint64("reconnects", "Reconnects",
                          "Times the session was re-established after a drop or a goAway.", 0,
                          G_MAXUINT64, 0, ro));
  g_object_class_install_property(
      gobject_class, PROP_TOTAL_USD,
      g_param_spec_double("total-usd", "Total cost",
                          "Cost of the session so far in US dollars, from the reported token "
                          "usage and the prices in config/media_generation.json.",
                          0, G_MAXDOUBLE, 0, ro));

  signals[SIGNAL_TRANSCRIPT] = g_signal_new(
      "transcript", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr, nullptr,
      G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_BOOLEAN);
  signals[SIGNAL_TOOL_CALL] =
      g_signal_new("tool-call", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr,
                   nullptr, G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING);
  const auto action = static_cast<GSignalFlags>(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION);
  signals[SIGNAL_SEND_TOOL_RESPONSE] = g_signal_new_class_handler(
      "send-tool-response", G_TYPE_FROM_CLASS(klass), action,
      G_CALLBACK(gem_gemini_live_sink_send_tool_response), nullptr, nullptr, nullptr,
      G_TYPE_BOOLEAN, 3, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_SEND_TEXT] = g_signal_new_class_handler(
      "send-text", G_TYPE_FROM_CLASS(klass), action, G_CALLBACK(gem_gemini_live_sink_send_text),
      nullptr, nullptr, nullptr, G_TYPE_BOOLEAN, 1, G_TYPE_STRING);
  signals[SIGNAL_ACTIVITY_START] = g_signal_new_class_handler(
      "activity-start", G_TYPE_FROM_CLASS(klass), action,
      G_CALLBACK(gem_gemini_live_sink_activity_start), nullptr, nullptr, nullptr, G_TYPE_BOOLEAN,
      0);
  signals[SIGNAL_ACTIVITY_END] = g_signal_new_class_handler(
      "activity-end", G_TYPE_FROM_CLASS(klass), action,
      G_CALLBACK(gem_gemini_live_sink_activity_end), nullptr, nullptr, nullptr, G_TYPE_BOOLEAN, 0);

  gst_element_class_add_static_pad_template(element_class, &audio_template);
  gst_element_class_add_static_pad_template(element_class, &video_template);
  gst_element_class_set_static_metadata(
      element_class, "Gemini Live conversation sink", "Sink/Audio/Video/Network",
      "Talks with a Gemini Live model: sends microphone audio and camera frames, reports "
      "transcripts, tool calls and usage; geminilivesrc plays the answers",
      "gemstream developers <dev@gemstream.local>");

  element_class->change_state = GST_DEBUG_FUNCPTR(gem_gemini_live_sink_change_state);
  element_class->request_new_pad = GST_DEBUG_FUNCPTR(gem_gemini_live_sink_request_new_pad);
  element_class->release_pad = GST_DEBUG_FUNCPTR(gem_gemini_live_sink_release_pad);

  gst_type_mark_as_plugin_api(GEM_TYPE_LIVE_RESPONSE_MODALITY, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GEM_TYPE_LIVE_VAD, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GEM_TYPE_LIVE_SENSITIVITY, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GEM_TYPE_LIVE_ACTIVITY_HANDLING, static_cast<GstPluginAPIFlags>(0));
}
