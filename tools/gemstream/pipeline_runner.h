// Runs a gemstream::Pipeline from the command line: progress bar, cost lines, readable bus
// messages and errors, Ctrl-C as a clean stop (EOS first, then NULL; a second Ctrl-C aborts).
#pragma once

#include <gemstream/pipeline.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace gemstream::cli {

struct RunOutcome {
  bool eos = false;         // ended with EOS (success)
  bool interrupted = false; // the user pressed Ctrl-C
  std::string error;        // the first error, "element: message"; empty on success
  std::string error_debug;
  std::optional<gemstream::events::Error> error_event;
  double usd = 0;        // sum of the cost events
  std::string operation; // the last long-running operation started (veosrc)
};

// Prints events readably on stderr (results belong on stdout).
class EventDisplay {
public:
  explicit EventDisplay(bool quiet);
  void show(const gemstream::Event &event);

private:
  void progress(const gemstream::events::Progress &p);

  bool tty_;
  bool quiet_;
  int tick_ = 0;
  bool bar_open_ = false;
  std::string last_phase_;
};

class PipelineRunner {
public:
  explicit PipelineRunner(std::unique_ptr<gemstream::Pipeline> pipeline);
  ~PipelineRunner();
  PipelineRunner(const PipelineRunner &) = delete;
  PipelineRunner &operator=(const PipelineRunner &) = delete;

  // Called for every event after it is displayed.
  std::function<void(const gemstream::Event &)> on_event;
  bool quiet = false;
  // Ctrl-C (SIGTERM, SIGHUP) aborts at once instead of sending EOS first: for a pipeline file
  // whose "interrupt" is "cancel", whose output would be wrong if cut short.
  bool cancel_on_interrupt = false;

  // Starts the pipeline and shows its events until the run ends.
  RunOutcome run();

private:
  std::unique_ptr<gemstream::Pipeline> pipeline_;
};

// Prints "error: ..." for an outcome that failed; returns the process exit code: 0 after EOS,
// 1 after an error, 130 when interrupted without reaching EOS.
int report_outcome(const RunOutcome &outcome);

} // namespace gemstream::cli
