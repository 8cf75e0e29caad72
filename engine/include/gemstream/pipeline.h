// The embedding API: run a pipeline file (or a launch line) from a C++ application and receive
// its bus messages as typed events. Lives in libgemstream-pipeline, which links GStreamer
// privately; this header has no GLib or GStreamer types.
//
//   auto p = gemstream::Pipeline::load("cover-image", {{"prompt", "owl"}, {"output", "owl.png"}});
//   p->start();
//   while (auto ev = p->wait_event(std::chrono::seconds(60))) {
//     if (auto *c = std::get_if<gemstream::events::Cost>(&*ev)) std::printf("$%.3f\n", c->usd);
//     if (gemstream::is_terminal(*ev)) break;
//   }
//
// Threads. Each Pipeline owns a bus thread that turns GStreamer bus messages into events.
// Every event is (1) appended to a bounded queue read with wait_event() from any thread, and
// (2) passed to the callback, if one is set, on the thread CallbackContext selects:
//   - CallbackContext::BusThread (default): on the bus thread. No GLib main loop is needed.
//     The callback must not block for long. It may call request_stop() (stop() called there
//     only requests the stop: it cannot wait for its own thread) and may destroy the Pipeline
//     (the bus thread finishes the teardown once the callback returns).
//   - CallbackContext::MainContext: on the GLib main context that was thread-default when
//     start() was called (the global default context if none was pushed), like
//     gst_bus_add_watch(). The application's GMainLoop must be running for callbacks to
//     arrive; wait_event() and wait() work either way.
// All member functions are thread-safe.
#pragma once

#include "gemstream/error.h"
#include "gemstream/export.h"
#include "gemstream/pipeline_file.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace gemstream {

namespace events {

// GST_MESSAGE_PROGRESS (veosrc while a Veo operation runs).
struct Progress {
  std::string source; // element name
  std::string type;   // "start", "continue", "complete", "canceled", "error"
  std::string code;   // element-defined phase: "start", "poll", "download", ...
  std::string text;   // human-readable
  int percent = -1;   // -1 while unknown
};

// The gemstream-cost element message.
struct Cost {
  std::string source;
  std::string kind;      // "image", "video", ...
  std::string model;     // model id
  std::string model_key; // config key
  double usd = 0;
  double units = 0; // images, seconds, tokens
};

// The gemstream-operation element message: a long-running operation that can be resumed.
struct Operation {
  std::string source;
  std::string name; // "models/veo-3.0-fast-generate-001/operations/abc123"
  std::string model;
};

// Any other element message (transcripts, tool calls, ...): its structure as a JSON object.
// Strings, numbers and booleans map to JSON; nested structures to objects; arrays and lists
// to arrays; other types to their GStreamer serialisation as a string.
struct Element {
  std::string source;
  std::string name;   // structure name, e.g. "gemstream-transcript"
  std::string fields; // JSON object text
};

struct Warning {
  std::string source;
  std::string message;
  std::string debug;
};

// GST_MESSAGE_ERROR. The first error ends the run (the pipeline is set to NULL).
struct Error {
  std::string source;
  std::string domain;  // "core", "library", "resource", "stream", or the GQuark's name
  int code = 0;        // the GStreamer error code within the domain
  std::string message; // for a person
  std::string debug;   // for a developer
  // The engine's classification: from the "error-kind" detail gemstream elements attach,
  // else derived from domain and code (RESOURCE/NOT_FOUND → NotFound, ...).
  ErrorKind kind = ErrorKind::Internal;
  std::map<std::string, std::string> details; // "http-status-code", "retry-after", ...
};

enum class State { Null, Ready, Paused, Playing };

// State changes of the pipeline itself (not of its elements).
struct StateChanged {
  State old_state = State::Null;
  State new_state = State::Null;
};

// The pipeline reached end-of-stream and has been set to NULL (files are complete).
struct Eos {};

// The pipeline was stopped without reaching EOS (stop timeout or abort()) and set to NULL.
struct Stopped {};

} // namespace events

using Event = std::variant<events::Progress, events::Cost, events::Operation, events::Element,
                           events::Warning, events::Error, events::StateChanged, events::Eos,
                           events::Stopped>;

// Eos, Error and Stopped end a run: no event follows them.
GEMSTREAM_API bool is_terminal(const Event &event) noexcept;
GEMSTREAM_API const char *to_string(events::State state) noexcept;

// How a run ended.
struct Outcome {
  enum class Ending { Eos, Error, Stopped };
  Ending ending = Ending::Stopped;
  std::optional<events::Error> error; // set when ending == Error
  bool stop_requested = false;        // stop()/request_stop() was called before the end

  bool ok() const noexcept { return ending == Ending::Eos; }
};

enum class CallbackContext { BusThread, MainContext };

struct PipelineOptions {
  CallbackContext callback_context = CallbackContext::BusThread;
  // Events kept for wait_event(); when full the oldest is dropped (dropped_events() counts).
  std::size_t max_queued_events = 4096;
};

class GEMSTREAM_API Pipeline {
public:
  // Parses a gst-launch line. Initialises GStreamer if the application has not, and makes the
  // gemstream plugin findable (see find_gemstream_plugin()). Throws Error(Config) for a syntax
  // error, Error(NotFound) naming missing elements and what provides them.
  static std::unique_ptr<Pipeline> from_launch(const std::string &launch_line,
                                               PipelineOptions options = {});
  // Resolves the file with `values` (PipelineFile::resolve) and parses the result.
  static std::unique_ptr<Pipeline> from_file(const PipelineFile &file,
                                             const std::map<std::string, std::string> &values,
                                             PipelineOptions options = {});
  // PipelineFile::find + load + from_file: NAME_OR_PATH is "cover-image" or a .json path.
  static std::unique_ptr<Pipeline> load(const std::string &name_or_path,
                                        const std::map<std::string, std::string> &values,
                                        PipelineOptions options = {});

  // Stops the run if it is still going (EOS with a short timeout, then NULL) and joins the bus
  // thread. Pending MainContext callbacks are dropped.
  ~Pipeline();
  Pipeline(const Pipeline &) = delete;
  Pipeline &operator=(const Pipeline &) = delete;

  // Set before start(); called for every event (see the thread notes above).
  void set_callback(std::function<void(const Event &)> callback);

  // Sets the pipeline to PLAYING; returns once the state change is under way. A pipeline runs
  // once. Throws Error(InvalidArgument) when called twice, and the pipeline's first error (as
  // gemstream::Error with the kind of events::Error) if it cannot start at all.
  void start();

  // Sends EOS so the sinks finish their files, waits up to `timeout` for it to reach them,
  // then sets NULL (the ending is Stopped if EOS did not arrive in time). Returns the outcome.
  // Idempotent; returns at once when the run is already over.
  Outcome stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // stop() without waiting: the bus thread enforces the timeout.
  void request_stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Sets NULL at once (no EOS): the ending is Stopped unless the run is already over.
  void abort();

  // Waits for the end of the run; nullopt on timeout. With CallbackContext::BusThread it
  // returns after the callback has seen the terminal event. From a bus-thread callback it
  // returns at once (the run cannot end while the callback runs).
  std::optional<Outcome> wait(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  // The next queued event; nullopt on timeout, or when the run is over and the queue empty.
  std::optional<Event> wait_event(std::chrono::milliseconds timeout);

  bool finished() const;
  std::uint64_t dropped_events() const;
  const std::string &launch_line() const noexcept;

private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Makes sure the gemstream GStreamer plugin is registered. If GStreamer's registry (system
// plugin directory, GST_PLUGIN_PATH) does not have it, this scans, in order: the build tree's
// plugin directory when libgemstream-pipeline runs from the build tree; the "gstreamer-1.0"
// directory next to the installed libgemstream-pipeline (so a package installed under any
// prefix works); the configured plugin install directory. Returns the plugin's file name, or
// an empty string if none was found. Initialises GStreamer if needed.
GEMSTREAM_API std::string find_gemstream_plugin();

} // namespace gemstream
