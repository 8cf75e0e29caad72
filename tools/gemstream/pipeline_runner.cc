#include "pipeline_runner.h"
#include "stop_signals.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace gemstream::cli {
namespace {

std::atomic<int> g_interrupts{0};

extern "C" void on_sigint(int) {
  g_interrupts.fetch_add(1);
}

// Installs the stop signals' handler for the duration of a run: the first signal stops the
// run cleanly (EOS first), a second one aborts it. The count is reset before the handler is
// installed, so no signal is lost.
class InterruptScope {
public:
  InterruptScope() : signals_((g_interrupts = 0, on_sigint)) {}

private:
  StopSignalScope signals_;
};

// "k=v, k=v" for a flat JSON object; nested values stay JSON.
std::string readable_fields(const std::string &json_text) {
  auto fields = nlohmann::ordered_json::parse(json_text, nullptr, false);
  if (!fields.is_object())
    return json_text;
  std::string out;
  for (const auto &[key, value] : fields.items()) {
    if (!out.empty())
      out += ", ";
    out += key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

} // namespace

EventDisplay::EventDisplay(bool quiet) : tty_(isatty(STDERR_FILENO)), quiet_(quiet) {}

void EventDisplay::progress(const events::Progress &p) {
  const bool final = p.type == "complete" || p.type == "error" || p.type == "canceled";
  if (!tty_) {
    if (p.code != last_phase_ || final)
      std::fprintf(stderr, "%s\n", p.text.c_str());
    last_phase_ = p.code;
    return;
  }
  constexpr int width = 30;
  std::string bar(width, ' ');
  if (p.percent >= 0 && p.percent <= 100) {
    for (int i = 0; i < p.percent * width / 100; ++i)
      bar[i] = '=';
  } else {
    // Unknown length (a Veo operation): a block sweeping back and forth.
    int pos = tick_++ % (2 * (width - 4));
    if (pos >= width - 4)
      pos = 2 * (width - 4) - pos;
    for (int i = 0; i < 4; ++i)
      bar[pos + i] = '=';
  }
  std::fprintf(stderr, "\r[%s] %-60.60s", bar.c_str(), p.text.c_str());
  bar_open_ = !final;
  if (final)
    std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

void EventDisplay::show(const Event &event) {
  if (quiet_)
    return;
  if (const auto *p = std::get_if<events::Progress>(&event)) {
    progress(*p);
    return;
  }
  // Anything else starts on a fresh line after an open progress bar.
  auto line = [&](const char *fmt, auto... args) {
    if (bar_open_) {
      std::fputc('\n', stderr);
      bar_open_ = false;
    }
    std::fprintf(stderr, fmt, args...);
  };
  if (const auto *c = std::get_if<events::Cost>(&event)) {
    line("model: %s, cost: $%.3f\n", c->model.c_str(), c->usd);
  } else if (const auto *o = std::get_if<events::Operation>(&event)) {
    line("operation: %s\n", o->name.c_str());
  } else if (const auto *w = std::get_if<events::Warning>(&event)) {
    line("warning: %s: %s\n", w->source.c_str(), w->message.c_str());
  } else if (const auto *e = std::get_if<events::Element>(&event)) {
    std::string name = e->name;
    if (name.rfind("gemstream-", 0) == 0)
      name = name.substr(10);
    line("%s: %s\n", name.c_str(), readable_fields(e->fields).c_str());
  } else if (bar_open_ && is_terminal(event)) {
    std::fputc('\n', stderr);
    bar_open_ = false;
  }
}

PipelineRunner::PipelineRunner(std::unique_ptr<Pipeline> pipeline)
    : pipeline_(std::move(pipeline)) {}

PipelineRunner::~PipelineRunner() = default;

RunOutcome PipelineRunner::run() {
  using namespace std::chrono_literals;
  EventDisplay display(quiet);
  RunOutcome outcome;
  InterruptScope interrupts;
  pipeline_->start();
  auto handle = [&](const Event &event) {
    display.show(event);
    if (const auto *c = std::get_if<events::Cost>(&event))
      outcome.usd += c->usd;
    if (const auto *o = std::get_if<events::Operation>(&event))
      outcome.operation = o->name;
    if (std::holds_alternative<events::Eos>(event))
      outcome.eos = true;
    if (const auto *e = std::get_if<events::Error>(&event)) {
      outcome.error = e->source.empty() ? e->message : e->source + ": " + e->message;
      outcome.error_debug = e->debug;
      outcome.error_event = *e;
    }
    if (on_event)
      on_event(event);
  };
  int handled = 0;
  for (;;) {
    const int pressed = g_interrupts.load();
    if (pressed > handled) {
      outcome.interrupted = true;
      if (handled == 0 && cancel_on_interrupt) {
        std::fprintf(stderr, "\nCancelled.\n");
        pipeline_->abort();
      } else if (handled == 0) {
        std::fprintf(stderr, "\nStopping (press Ctrl-C again to abort)...\n");
        pipeline_->request_stop(30s);
      }
      if (pressed >= 2)
        pipeline_->abort();
      handled = pressed;
    }
    if (auto event = pipeline_->wait_event(100ms)) {
      handle(*event);
      if (is_terminal(*event))
        break;
    } else if (pipeline_->finished()) {
      // The terminal event may have been queued just after the wait timed out.
      while (auto rest = pipeline_->wait_event(0ms))
        handle(*rest);
      break;
    }
  }
  return outcome;
}

int report_outcome(const RunOutcome &outcome) {
  if (!outcome.error.empty()) {
    std::fprintf(stderr, "error: %s\n", outcome.error.c_str());
    if (!outcome.error_debug.empty() && std::getenv("GEMSTREAM_VERBOSE"))
      std::fprintf(stderr, "  (%s)\n", outcome.error_debug.c_str());
    return 1;
  }
  if (outcome.interrupted && !outcome.eos)
    return 130;
  return outcome.eos ? 0 : 1;
}

} // namespace gemstream::cli
