// Runs a GStreamer pipeline to EOS or error from the command line: progress bar, cost lines,
// readable errors, Ctrl-C as a clean stop (EOS first, then NULL).
#pragma once

#include <gst/gst.h>

#include <functional>
#include <string>

namespace gemstream::cli {

struct RunOutcome {
  bool eos = false;          // ended with EOS (success)
  bool interrupted = false;  // the user pressed Ctrl-C
  std::string error;         // the first error's message, empty on success
  std::string error_debug;
  double usd = 0;            // sum of gemstream-cost messages
};

class PipelineRunner {
public:
  // Takes ownership of `pipeline`.
  explicit PipelineRunner(GstElement *pipeline);
  ~PipelineRunner();
  PipelineRunner(const PipelineRunner &) = delete;
  PipelineRunner &operator=(const PipelineRunner &) = delete;

  // Called for element messages other than gemstream-cost (which is printed and summed).
  std::function<void(const GstStructure *)> on_element_message;
  bool quiet = false;

  RunOutcome run();

private:
  GstElement *pipeline_;
};

// Prints "error: ..." for an outcome that failed; returns the process exit code (0, 1, or 130).
int report_outcome(const RunOutcome &outcome);

} // namespace gemstream::cli
