// gemstream agent: a typed conversation with a Gemini Live model that may use the agent
// capabilities (config/agent_capabilities.json). The same path as a spoken conversation through
// geminilivesink: the messages go to the Live session as text, the model answers in speech (the
// Live models answer in audio only; what it says is printed from the output transcription), and
// its tool calls run through LiveToolBridge, with consent asked in the conversation.
#include "cli_args.h"
#include "commands.h"
#include "spending.h"

#include <gemstream/capabilities.h>
#include <gemstream/config.h>
#include <gemstream/genai.h>
#include <gemstream/grounding.h>
#include <gemstream/live.h>
#include <gemstream/loop.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <optional>

namespace gemstream::cli {

const char *const kAgentUsage =
    "usage: gemstream agent \"MESSAGE\" [\"MESSAGE\"...] [--yes | --no] [--out DIR]\n"
    "         [--capabilities FILE] [--user NAME] [--model ID] [--poll-interval 10s]\n"
    "         [--timeout 600s] [--json]\n"
    "Talks with a Gemini Live model in writing, one MESSAGE per turn, the way a spoken\n"
    "conversation through geminilivesink goes. The model may use the agent capabilities\n"
    "(config/agent_capabilities.json): card images (DIR/covers), background videos with their\n"
    "loop outputs (DIR/backgrounds) and web search with citations. Before it spends money it asks:\n"
    "--yes answers yes, --no answers no, otherwise you are asked (no when stdin is not a\n"
    "terminal). Costs are checked against your daily budget and recorded in the cost ledger.\n"
    "--json prints the whole conversation, tool calls and files as JSON at the end.";

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// What the session's callbacks and the runner report, for the conversation loop.
struct Conversation {
  std::mutex mutex;
  std::condition_variable cv;
  std::string said; // the model's words in the current turn
  std::optional<Grounding> grounding;
  bool turn_complete = false;
  bool consent_asked = false;
  std::optional<Error> error;
  json tool_calls = json::array();
  json artefacts = json::array();
  json events = json::array();
  double usd = 0;
};

std::chrono::milliseconds seconds_option(const Args &args, const std::string &name,
                                         double fallback_s) {
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(args.seconds(name, fallback_s) * 1000));
}

std::string answer_consent(const Args &args, const std::string &question) {
  if (args.has_flag("yes"))
    return "yes";
  if (args.has_flag("no") || !isatty(STDIN_FILENO))
    return "no";
  std::fprintf(stderr, "%s [y/N] ", question.c_str());
  std::string line;
  if (!std::getline(std::cin, line))
    return "no";
  return !line.empty() && (line[0] == 'y' || line[0] == 'Y') ? "yes" : "no";
}

} // namespace

int cmd_agent(const std::vector<std::string> &argv) {
  Args args(argv, {"capabilities", "out", "user", "model", "poll-interval", "timeout"},
            {"yes", "no", "json"});
  if (args.positionals().empty())
    throw UsageError(kAgentUsage);
  if (args.has_flag("yes") && args.has_flag("no"))
    throw UsageError("--yes and --no cannot both be given");
  const bool as_json = args.has_flag("json");
  const auto timeout = seconds_option(args, "timeout", 600);
  const std::filesystem::path out = args.get_or("out", "gemstream-out");

  MediaConfig media = MediaConfig::load_default();
  CapabilitySet caps = args.get("capabilities")
                           ? CapabilitySet::load(*args.get("capabilities"), &media)
                           : CapabilitySet::load_default(&media);
  const Spending spending = Spending::open(args);
  const Endpoint endpoint = resolve_endpoint();

  CapabilityRunnerOptions options;
  options.endpoint = endpoint;
  options.covers_dir = out / "covers";
  options.videos_dir = out / "backgrounds";
  options.user = spending.user;
  options.poll_interval = seconds_option(args, "poll-interval", 0);
  options.finish_video = make_clip_loops;

  Conversation conv;
  auto on_event = [&](const CapabilityEvent &e) {
    std::lock_guard lock(conv.mutex);
    conv.events.push_back({{"event", to_string(e.type)},
                           {"capability", e.capability},
                           {"message", e.message},
                           {"job_id", e.job_id}});
    switch (e.type) {
    case CapabilityEvent::Type::ConsentRequested: conv.consent_asked = true; break;
    case CapabilityEvent::Type::Finished:
      conv.usd += e.usd;
      if (!e.artefact.empty())
        conv.artefacts.push_back(e.artefact);
      for (const auto &o : e.outputs)
        conv.artefacts.push_back(o);
      std::fprintf(stderr, "  done: %s%s%s (%s)\n", e.message.c_str(),
                   e.artefact.empty() ? "" : " -> ", e.artefact.c_str(),
                   format_usd(e.usd).c_str());
      break;
    case CapabilityEvent::Type::Failed:
      std::fprintf(stderr, "  failed: %s\n", e.message.c_str());
      break;
    case CapabilityEvent::Type::Started:
    case CapabilityEvent::Type::Progress:
      std::fprintf(stderr, "  %s\n", e.message.c_str());
      break;
    }
    conv.cv.notify_all();
  };
  LiveToolBridge tools(std::move(caps), media, spending.ledger, options, on_event);

  LiveConfig config;
  if (auto model = args.get("model"))
    config.model = *model;
  config.response_modality = LiveModality::Audio;
  config.input_transcription = false;
  config.output_transcription = true;
  config.session_resumption = true;
  tools.declare(config);

  std::shared_ptr<LiveSession> session; // set before it connects; the callbacks use it
  LiveCallbacks cb;
  cb.on_output_transcription = [&](const std::string &text, bool) {
    tools.model_output();
    std::lock_guard lock(conv.mutex);
    conv.said += text;
  };
  cb.on_audio = [&](std::vector<std::int16_t>, int) { tools.model_output(); };
  cb.on_text = [&](const std::string &text) {
    tools.model_output();
    std::lock_guard lock(conv.mutex);
    conv.said += text;
  };
  cb.on_grounding = [&](const std::string &metadata) {
    Grounding g = parse_grounding_metadata(metadata);
    std::lock_guard lock(conv.mutex);
    conv.grounding = std::move(g);
  };
  cb.on_tool_call = [&](const std::vector<LiveFunctionCall> &calls) {
    tools.model_output();
    {
      std::lock_guard lock(conv.mutex);
      for (const auto &c : calls)
        conv.tool_calls.push_back(
            {{"id", c.id}, {"name", c.name}, {"args", json::parse(c.args_json, nullptr, false)}});
    }
    // Every declared function is a capability; anything else gets an error, not silence.
    std::vector<LiveFunctionResponse> unknown;
    for (const auto &c : tools.handle(calls))
      unknown.push_back({c.id, c.name,
                         json{{"error", "there is no function called " + c.name}}.dump()});
    if (!unknown.empty())
      session->send_tool_response(unknown);
  };
  cb.on_tool_call_cancellation = [&](const std::vector<std::string> &ids) { tools.cancel(ids); };
  cb.on_turn_complete = [&](const std::string &) {
    tools.model_turn_complete(); // may send a job report
    std::lock_guard lock(conv.mutex);
    conv.turn_complete = true;
    conv.cv.notify_all();
  };
  cb.on_error = [&](const Error &e) {
    std::lock_guard lock(conv.mutex);
    conv.error = e;
    conv.cv.notify_all();
  };
  cb.on_warning = [](const std::string &message) {
    std::fprintf(stderr, "warning: %s\n", message.c_str());
  };

  session = std::make_shared<LiveSession>(endpoint, config, cb);
  tools.attach(session);
  session->connect();

  json transcript = json::array();
  std::deque<std::string> inputs(args.positionals().begin(), args.positionals().end());
  auto say = [&](const std::string &text) {
    std::printf("you: %s\n", text.c_str());
    std::fflush(stdout);
    transcript.push_back({{"role", "user"}, {"text", text}});
    session->send_text(text);
  };
  say(inputs.front());
  inputs.pop_front();

  const Clock::time_point deadline = Clock::now() + timeout;
  std::unique_lock lock(conv.mutex);
  for (;;) {
    if (!conv.cv.wait_until(lock, deadline, [&] { return conv.turn_complete || conv.error; }))
      throw Error(ErrorKind::Timeout, "the conversation did not finish within --timeout");
    if (conv.error)
      throw *conv.error;
    conv.turn_complete = false;
    std::string said = std::exchange(conv.said, {});
    std::optional<Grounding> grounding = std::exchange(conv.grounding, std::nullopt);
    const bool consent = std::exchange(conv.consent_asked, false);
    lock.unlock();

    json turn = {{"role", "model"}, {"text", said}};
    if (grounding && !grounding->empty()) {
      std::printf("model: %s\nSources:\n%s", insert_citation_markers(said, *grounding).c_str(),
                  format_source_list(*grounding).c_str());
      json sources = json::array();
      for (const auto &s : grounding->sources)
        sources.push_back({{"title", s.title}, {"uri", s.uri}});
      turn["sources"] = std::move(sources);
    } else {
      std::printf("model: %s\n", said.c_str());
    }
    std::fflush(stdout);
    transcript.push_back(std::move(turn));

    if (consent) {
      say(answer_consent(args, said));
    } else if (!inputs.empty()) {
      say(inputs.front());
      inputs.pop_front();
    } else {
      // A job still running ends with a report to the model, whose answer is the
      // conversation's last turn.
      while (tools.pending() > 0) {
        if (Clock::now() >= deadline)
          throw Error(ErrorKind::Timeout, "the conversation did not finish within --timeout");
        tools.runner().wait_idle(std::chrono::milliseconds(100));
      }
      if (tools.awaiting_answer() == 0)
        break;
    }
    lock.lock();
  }
  session->close();
  tools.detach();

  if (as_json) {
    std::lock_guard guard(conv.mutex);
    json result = {{"turns", transcript},
                   {"tool_calls", conv.tool_calls},
                   {"events", conv.events},
                   {"files", conv.artefacts},
                   {"usd", conv.usd}};
    std::printf("%s\n", result.dump(2).c_str());
  }
  return 0;
}

} // namespace gemstream::cli
