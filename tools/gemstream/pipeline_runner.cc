#include "pipeline_runner.h"

#include <glib-unix.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace gemstream::cli {
namespace {

// Draws progress on stderr: an animated bar on a terminal, one line per phase otherwise.
class ProgressDisplay {
public:
  explicit ProgressDisplay(bool quiet) : tty_(isatty(STDERR_FILENO)), quiet_(quiet) {}

  void update(GstMessage *msg) {
    if (quiet_)
      return;
    GstProgressType type;
    gchar *code = nullptr, *text = nullptr;
    gst_message_parse_progress(msg, &type, &code, &text);
    const GstStructure *s = gst_message_get_structure(msg);
    int percent = -1;
    gst_structure_get_int(s, "percent", &percent);
    std::string line = text ? text : "";
    std::string phase = code ? code : "";
    g_free(code);
    g_free(text);
    bool final = type == GST_PROGRESS_TYPE_COMPLETE || type == GST_PROGRESS_TYPE_ERROR ||
                 type == GST_PROGRESS_TYPE_CANCELED;
    if (!tty_) {
      if (phase != last_phase_ || final)
        std::fprintf(stderr, "%s\n", line.c_str());
      last_phase_ = phase;
      return;
    }
    constexpr int width = 30;
    std::string bar(width, ' ');
    if (percent >= 0 && percent <= 100) {
      int filled = percent * width / 100;
      for (int i = 0; i < filled; ++i)
        bar[i] = '=';
    } else {
      // Unknown length (a Veo operation): a block sweeping back and forth.
      int pos = tick_++ % (2 * (width - 4));
      if (pos >= width - 4)
        pos = 2 * (width - 4) - pos;
      for (int i = 0; i < 4; ++i)
        bar[pos + i] = '=';
    }
    std::fprintf(stderr, "\r[%s] %-60.60s", bar.c_str(), line.c_str());
    if (final)
      std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

private:
  bool tty_;
  bool quiet_;
  int tick_ = 0;
  std::string last_phase_;
};

struct Loop {
  GMainLoop *loop = nullptr;
  GstElement *pipeline = nullptr;
  PipelineRunner *runner = nullptr;
  RunOutcome outcome;
  ProgressDisplay *progress = nullptr;
  int interrupts = 0;
};

gboolean on_sigint(gpointer data) {
  auto *l = static_cast<Loop *>(data);
  l->outcome.interrupted = true;
  if (++l->interrupts == 1) {
    std::fprintf(stderr, "\nStopping (press Ctrl-C again to abort)...\n");
    gst_element_send_event(l->pipeline, gst_event_new_eos());
  } else {
    g_main_loop_quit(l->loop);
  }
  return G_SOURCE_CONTINUE;
}

gboolean on_bus(GstBus *, GstMessage *msg, gpointer data) {
  auto *l = static_cast<Loop *>(data);
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_EOS:
    l->outcome.eos = true;
    g_main_loop_quit(l->loop);
    break;
  case GST_MESSAGE_ERROR: {
    GError *err = nullptr;
    gchar *debug = nullptr;
    gst_message_parse_error(msg, &err, &debug);
    if (l->outcome.error.empty()) {
      l->outcome.error = std::string(GST_OBJECT_NAME(GST_MESSAGE_SRC(msg))) + ": " + err->message;
      l->outcome.error_debug = debug ? debug : "";
    }
    g_error_free(err);
    g_free(debug);
    g_main_loop_quit(l->loop);
    break;
  }
  case GST_MESSAGE_WARNING: {
    GError *err = nullptr;
    gst_message_parse_warning(msg, &err, nullptr);
    if (!l->runner->quiet)
      std::fprintf(stderr, "warning: %s: %s\n", GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)), err->message);
    g_error_free(err);
    break;
  }
  case GST_MESSAGE_PROGRESS:
    l->progress->update(msg);
    break;
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure(msg);
    if (!s)
      break;
    if (gst_structure_has_name(s, "gemstream-cost")) {
      double usd = 0;
      gst_structure_get_double(s, "usd", &usd);
      l->outcome.usd += usd;
      if (!l->runner->quiet)
        std::fprintf(stderr, "model: %s, cost: $%.3f\n", gst_structure_get_string(s, "model"), usd);
    } else if (l->runner->on_element_message) {
      l->runner->on_element_message(s);
    }
    break;
  }
  default:
    break;
  }
  return G_SOURCE_CONTINUE;
}

} // namespace

PipelineRunner::PipelineRunner(GstElement *pipeline) : pipeline_(pipeline) {}

PipelineRunner::~PipelineRunner() {
  gst_element_set_state(pipeline_, GST_STATE_NULL);
  gst_object_unref(pipeline_);
}

RunOutcome PipelineRunner::run() {
  ProgressDisplay progress(quiet);
  Loop l;
  l.loop = g_main_loop_new(nullptr, FALSE);
  l.pipeline = pipeline_;
  l.runner = this;
  l.progress = &progress;

  GstBus *bus = gst_element_get_bus(pipeline_);
  guint watch = gst_bus_add_watch(bus, on_bus, &l);
  guint sig = g_unix_signal_add(SIGINT, on_sigint, &l);

  if (gst_element_set_state(pipeline_, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The element posted the reason on the bus; collect it.
    GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    if (msg) {
      on_bus(bus, msg, &l);
      gst_message_unref(msg);
    }
    if (l.outcome.error.empty())
      l.outcome.error = "the pipeline could not start";
  } else {
    g_main_loop_run(l.loop);
  }

  g_source_remove(sig);
  g_source_remove(watch);
  gst_object_unref(bus);
  gst_element_set_state(pipeline_, GST_STATE_NULL);
  g_main_loop_unref(l.loop);
  return l.outcome;
}

int report_outcome(const RunOutcome &outcome) {
  if (!outcome.error.empty()) {
    std::fprintf(stderr, "error: %s\n", outcome.error.c_str());
    if (!outcome.error_debug.empty() && g_getenv("GEMSTREAM_VERBOSE"))
      std::fprintf(stderr, "  (%s)\n", outcome.error_debug.c_str());
    return 1;
  }
  if (outcome.interrupted && !outcome.eos)
    return 130;
  return outcome.eos ? 0 : 1;
}

} // namespace gemstream::cli
