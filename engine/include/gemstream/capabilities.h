// Agent capabilities (config/agent_capabilities.json): what the voice agent may do beyond
// talking, turned into function declarations for the Live setup and for generateContent, and a
// runner that executes the model's tool calls with consent, budget checks and cost accounting.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/config.h"
#include "gemstream/costs.h"
#include "gemstream/export.h"
#include "gemstream/genai.h"
#include "gemstream/live.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

enum class CapabilityAvailability {
  Always,
  WhenConfigured, // needs a real API key (or an explicit base URL) to be offered
  Never,          // declared off
};

enum class CapabilityExecution {
  Sync,          // the tool result is ready in seconds
  AsyncJob,      // starts a long job, answers at once with a job id, reports completion later
  BuiltinSearch, // served by the googleSearch tool (a function only when asked for)
};

struct Capability {
  std::string name;     // function name
  std::string category; // "media_generation", "search_and_ground"
  std::string description;
  std::string parameters_json;               // Gemini Schema object (type OBJECT), as in the file
  std::vector<std::string> required;         // parameters.required
  std::vector<std::string> trigger_patterns; // ECMAScript, case-insensitive, whole utterance
  std::string trigger_argument;              // the parameter the first capture group fills
  // parameter -> enum value -> words in an utterance that select it
  std::map<std::string, std::map<std::string, std::vector<std::string>>> enum_keywords;
  std::vector<std::string> examples;
  CapabilityAvailability availability = CapabilityAvailability::Always;
  bool requires_consent = false;
  CapabilityExecution execution = CapabilityExecution::Sync;
  std::string cost_media_model; // cost.media_model: a key of image_models or video_models
  std::string cost_pricing;     // cost.pricing: a key of the config's pricing
  std::string cost_warning;
  std::string question_template; // {parameter} and {cost} placeholders
  std::string done_template;     // the call returned (for a job: it started)
  std::string finished_template; // a job ended well (the Finished event's message)
};

struct DeclarationOptions {
  // False when no API key or base URL is configured: WhenConfigured capabilities are left out.
  bool configured = true;
  // Declare BuiltinSearch capabilities as functions too (run by CapabilityRunner through
  // generateContent) instead of leaving search to the session's googleSearch tool.
  bool search_as_function = false;
};

class GEMSTREAM_API CapabilitySet {
public:
  static constexpr int kVersion = 1;

  // Parses and validates. Throws Error(Config) naming the file and the JSON pointer
  // ("config/agent_capabilities.json: /capabilities/1/parameters/required/0: \"motif\" is not a
  // property"). Unknown fields are rejected. With `media`, cost.media_model must name one of its
  // models and cost.pricing one of its prices.
  static CapabilitySet parse(const std::string &json_text, const std::filesystem::path &name,
                             const MediaConfig *media = nullptr);
  static CapabilitySet load(const std::filesystem::path &file, const MediaConfig *media = nullptr);
  // data_dir()/config/agent_capabilities.json.
  static CapabilitySet load_default(const MediaConfig *media = nullptr);

  const std::vector<Capability> &capabilities() const noexcept { return capabilities_; }
  const Capability *find(const std::string &name) const noexcept;
  const std::filesystem::path &source() const noexcept { return source_; }

  // Function declarations. A requires_consent capability's parameters always carry a BOOLEAN
  // `confirmed` property (added when the file leaves it out) that the model sets only after the
  // user agreed.
  std::vector<FunctionDeclaration>
  function_declarations(const DeclarationOptions &options = {}) const;
  std::vector<LiveFunctionDeclaration>
  live_function_declarations(const DeclarationOptions &options = {}) const;
  // True when an offered capability is served by googleSearch (LiveConfig::google_search,
  // GenerateRequest::google_search).
  bool uses_google_search(const DeclarationOptions &options = {}) const;
  // The tools array of a generateContent request or Live setup, as JSON text:
  // [{"functionDeclarations":[...]},{"googleSearch":{}}].
  std::string tools_json(const DeclarationOptions &options = {}) const;

  // The tool call a user's utterance asks for, found the way the local backend's stand-in
  // model finds it: the first offered capability whose trigger pattern matches the whole
  // utterance (lower-cased, trailing punctuation removed) gives the argument from its first
  // capture group, enum keywords fill enum parameters, and a consent capability gets
  // confirmed=false. nullopt when nothing matches. For typed input and tests; a real model
  // decides by itself.
  std::optional<FunctionCall> match_utterance(const std::string &utterance,
                                              const DeclarationOptions &options = {}) const;

  // The capability's cost estimate from the media config ("$0.001", "$4.00"; a search request
  // "$0.000035"); 0 when it has no cost entry.
  double estimated_usd(const Capability &capability, const MediaConfig &media) const;

private:
  std::vector<Capability> capabilities_;
  std::filesystem::path source_;
};

// Fills {name} placeholders from a JSON object's members (strings verbatim, other values as
// JSON) and `extra` (e.g. {"cost", "$4.00"}); unknown placeholders stay as they are.
GEMSTREAM_API std::string
fill_capability_template(const std::string &text, const std::string &args_json,
                         const std::map<std::string, std::string> &extra = {});

// A file-name-safe slug: lower-case ASCII letters, digits and single '-', at most 48
// characters; `fallback` when nothing is left.
GEMSTREAM_API std::string file_slug(const std::string &text, const std::string &fallback);

// ---- Running tool calls ----------------------------------------------------------------------

struct CapabilityEvent {
  enum class Type {
    ConsentRequested, // answered with the consent question; nothing was spent
    Started,          // work began (for a job: the operation was accepted)
    Progress,         // a job is still running (message says how far)
    Finished,         // done: artefact and usd are set for media
    Failed,           // message says why; nothing more follows for this call
  };
  Type type = Type::Started;
  std::string call_id;
  std::string capability;
  std::string job_id; // async jobs
  std::string message;
  std::string artefact; // the file written
  // Further files made from the artefact (a background video's loop outputs).
  std::vector<std::string> outputs;
  double usd = 0; // the cost recorded in the ledger
};

GEMSTREAM_API const char *to_string(CapabilityEvent::Type type) noexcept;

struct CapabilityRunnerOptions {
  Endpoint endpoint;
  ClientOptions client;
  std::filesystem::path covers_dir = "covers";      // card images
  std::filesystem::path videos_dir = "backgrounds"; // background videos
  std::string user;        // for the ledger and the budget; empty: current_user()
  std::string image_model; // config key or id; empty: defaults.card_cover_auto
  std::string video_model; // empty: GEMINI_VIDEO_MODEL, else defaults.background_video
  std::string search_model = "gemini-2.5-flash";
  // Veo polling; zero: the config's defaults (poll_interval_seconds, operation_timeout_seconds).
  std::chrono::milliseconds poll_interval{0};
  std::chrono::milliseconds operation_timeout{0};
  // Runs on the job's thread once a background video is downloaded, e.g. to make its loop
  // outputs (gemstream::make_loop). Returns the files it wrote; `progress` reports a step as a
  // Progress event. An exception fails the job; the downloaded clip stays.
  std::function<std::vector<std::filesystem::path>(
      const std::filesystem::path &clip, const CancelToken &cancel,
      const std::function<void(const std::string &)> &progress)>
      finish_video;
  // When set, a confirmed background video is not made by the runner: this receives the
  // description, the mood and the video model's config key (chosen as for the runner's own
  // jobs) and returns the id of a job that will make it elsewhere (a gateway's durable queue,
  // which checks the budget itself, counting its unfinished jobs). Whoever runs that job
  // reports its end to the model (LiveToolBridge::report_job). Throwing gemstream::Error fails
  // the call with the error's message, which the model passes on.
  std::function<std::string(const std::string &description, const std::string &mood,
                            const std::string &model_key)>
      submit_video;
};

// Executes tool calls. Thread-safe. Events are reported through the callback, on the thread
// that runs the step: the caller's thread for call(), a job thread for async jobs and a worker
// for submit(). The callback must not call back into the runner's destructor.
class GEMSTREAM_API CapabilityRunner {
public:
  using EventCallback = std::function<void(const CapabilityEvent &)>;

  // The ledger is shared: the runner records every cost in it and checks budgets against it.
  CapabilityRunner(CapabilitySet capabilities, MediaConfig media,
                   std::shared_ptr<CostLedger> ledger, CapabilityRunnerOptions options,
                   EventCallback on_event = {});
  // Cancels running jobs and waits for them.
  ~CapabilityRunner();
  CapabilityRunner(const CapabilityRunner &) = delete;
  CapabilityRunner &operator=(const CapabilityRunner &) = delete;

  // Runs one call and returns the functionResponse.response object as JSON text. Never throws
  // for a failure of the call itself: the model is told with {"error": "..."}. Shapes:
  //   consent needed  {"status":"consent_required","question":"<cost warning> <question>",
  //                    "cost_warning","estimated_cost_usd","instruction"}
  //   sync done       {"status":"done","message","path"?,"cost_usd",...}
  //   job started     {"status":"started","job_id","message"}
  //   search          {"status":"done","answer" (with [n] markers),"sources":[{title,uri}]}
  // Sync capabilities block for the request (seconds): do not call this on a streaming or
  // network thread; use submit() there.
  std::string call(const std::string &call_id, const std::string &name,
                   const std::string &args_json);

  // call() on the runner's worker thread; `done` receives the response there.
  void submit(const LiveFunctionCall &call, std::function<void(LiveFunctionResponse)> done);

  // toolCallCancellation: stops the call's job or queued work (a Failed event follows).
  void cancel(const std::string &call_id);

  // Waits until no job or submitted call is running; false on timeout.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Submitted calls queued or running, plus running jobs.
  int pending() const;

  const CapabilitySet &capabilities() const noexcept;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs a Live session's tool calls with a CapabilityRunner: the calls of capabilities it knows
// are run on the runner's worker and answered with toolResponse; cancellations stop them; when
// an asynchronous job ends, the model is told in a clientContent turn ("[job job-1 finished]
// ...") so that it can tell the user. Such a report waits until the model is not in the middle
// of a turn, so that it never cuts the model off (what the service's WHEN_IDLE scheduling of
// asynchronous function responses does). Thread-safe; the session's callbacks may call it.
class GEMSTREAM_API LiveToolBridge {
public:
  // `on_event` sees every event first (on the runner's threads), then the bridge reports job
  // endings to the model.
  LiveToolBridge(CapabilitySet capabilities, MediaConfig media, std::shared_ptr<CostLedger> ledger,
                 CapabilityRunnerOptions options, CapabilityRunner::EventCallback on_event = {});
  // Cancels running jobs and waits for them (see ~CapabilityRunner).
  ~LiveToolBridge();
  LiveToolBridge(const LiveToolBridge &) = delete;
  LiveToolBridge &operator=(const LiveToolBridge &) = delete;

  // Adds the offered capabilities to a Live configuration: their function declarations, and
  // googleSearch when search is served by it. Throws Error(InvalidArgument) when a function of
  // the same name is declared already.
  void declare(LiveConfig &config, const DeclarationOptions &options = {}) const;

  // The session that receives the tool responses and job reports (held weakly).
  void attach(const std::shared_ptr<LiveSession> &session);
  void detach();

  // From LiveCallbacks::on_tool_call: submits the calls of known capabilities and returns the
  // others, which the application answers itself.
  std::vector<LiveFunctionCall> handle(const std::vector<LiveFunctionCall> &calls);
  // From LiveCallbacks::on_tool_call_cancellation.
  void cancel(const std::vector<std::string> &ids);
  bool handles(const std::string &function_name) const;

  // The model's turns, from the session's callbacks: model_output() for anything the model
  // produces (audio, text, transcription, tool calls), model_turn_complete() for turnComplete.
  void model_output();
  void model_turn_complete();

  // Reports the end of a job the runner did not run itself (CapabilityRunnerOptions::
  // submit_video) to the model, as it reports its own: between model turns. Only Finished and
  // Failed events with a job_id are reported.
  void report_job(const CapabilityEvent &event);

  // Calls and jobs still running, plus job reports not yet sent to the model.
  int pending() const;
  // Job reports sent to the model whose answer (its next turn) has not completed.
  int awaiting_answer() const;
  CapabilityRunner &runner() noexcept;

  // The clientContent text that reports a job's end to the model; empty for other events.
  static std::string job_report(const CapabilityEvent &event);

private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

} // namespace gemstream
