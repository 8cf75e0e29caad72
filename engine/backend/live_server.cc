#include "live_server.h"

#include "search_corpus.h"
#include "speech.h"
#include "understanding.h"
#include "wire.h"
#include "work_queue.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gemstream::backend {
namespace {

using json = nlohmann::json;
// Server messages keep the real service's member order (e.g. toolCall: name, args, id).
using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view kInvalidArgument = "Request contains an invalid argument.";
constexpr std::string_view kKeyInvalid = "API key not valid. Please pass a valid API key.";
constexpr std::string_view kNotFound = "Requested entity was not found.";
constexpr std::string_view kInternal = "Internal error occurred.";
constexpr std::string_view kOutputMime = "audio/pcm;rate=24000";

constexpr int kOutputRate = 24000;
constexpr auto kChunkDuration = 100ms;
constexpr std::size_t kKeptFrames = 32;
// Chunks sent ahead of real time, so a client's playback survives some network jitter.
constexpr int kLeadChunks = 2;
constexpr auto kTextPartSpacing = 40ms;
constexpr int kAudioTokensPerSecond = 32;
constexpr int kImageTokens = 258;
constexpr std::size_t kMaxMessageBytes = 16u << 20;
constexpr auto kMaxManualActivity = 60s;
constexpr auto kHandleLifetime = 2h;
constexpr std::size_t kMaxHandles = 4096;
constexpr std::size_t kMaxQueuedTurns = 8;

// Live models served; ids containing "live" or "native-audio" are accepted too, since Google
// renames them often.
constexpr std::string_view kLiveModels[] = {
    "gemini-live-2.5-flash-preview-native-audio",
    "gemini-3.1-flash-live-preview",
    "gemini-live-2.5-flash-native-audio",
    "gemini-2.5-flash-native-audio-preview-09-2025",
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-native-audio-latest",
    "gemini-live-2.5-flash-preview",
    "gemini-2.0-flash-live-001",
};

bool is_live_model(std::string_view id) {
  return std::find(std::begin(kLiveModels), std::end(kLiveModels), id) != std::end(kLiveModels) ||
         id.find("live") != std::string_view::npos ||
         id.find("native-audio") != std::string_view::npos;
}

// "2s", "0.5s", "1.25s": proto Duration JSON.
std::string duration_string(std::chrono::milliseconds d) {
  const long long ms = std::max<long long>(0, d.count());
  std::string out = std::to_string(ms / 1000);
  if (const long long frac = ms % 1000) {
    std::string digits = std::to_string(frac + 1000).substr(1); // zero-padded to three
    while (digits.back() == '0')
      digits.pop_back();
    out += '.' + digits;
  }
  return out + 's';
}

// Lower-case words separated by single spaces; keeps apostrophes ("what's"), drops the rest of
// the punctuation, so typed and recognised text compare alike.
std::string normalize(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '\'' || u >= 0x80) {
      if (space && !out.empty())
        out += ' ';
      space = false;
      out += char(std::tolower(u));
    } else {
      space = true;
    }
  }
  return out;
}

bool contains_word(std::string_view text, std::string_view word) {
  for (std::size_t pos = text.find(word); pos != std::string_view::npos;
       pos = text.find(word, pos + 1)) {
    const bool start = pos == 0 || text[pos - 1] == ' ';
    const bool end = pos + word.size() == text.size() || text[pos + word.size()] == ' ';
    if (start && end)
      return true;
  }
  return false;
}

std::string fill_template(std::string text, const ojson &args) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    const std::string key = "{" + it.key() + "}";
    const std::string value =
        it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
    for (auto pos = text.find(key); pos != std::string::npos;
         pos = text.find(key, pos + value.size()))
      text.replace(pos, key.size(), value);
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Capabilities (config/agent_capabilities.json)

struct Capability {
  std::string name;
  std::string execution; // sync | async_job | builtin_search
  bool requires_consent = false;
  std::vector<std::regex> patterns;
  std::string argument;
  // parameter -> enum value -> words selecting it
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::vector<std::string>>>>>
      enum_keywords;
  std::string done_template;
  std::vector<std::string> examples;
};

std::string string_member(const json &object, std::string_view name, const std::string &where) {
  const json *v = member(object, name);
  if (!v || !v->is_string())
    throw std::runtime_error(where + ": \"" + std::string(name) + "\" must be a string");
  return v->get<std::string>();
}

std::vector<Capability> load_capabilities(const std::filesystem::path &file) {
  std::vector<Capability> out;
  std::error_code ec;
  if (file.empty() || !std::filesystem::exists(file, ec))
    return out;
  std::ifstream in(file);
  json root;
  try {
    root = json::parse(in);
  } catch (const json::exception &e) {
    throw std::runtime_error(file.string() + ": invalid JSON: " + e.what());
  }
  const json *list = member(root, "capabilities");
  if (!list || !list->is_array())
    throw std::runtime_error(file.string() + ": \"capabilities\" must be an array");
  for (std::size_t i = 0; i < list->size(); ++i) {
    const json &entry = (*list)[i];
    const std::string where = file.string() + ": capabilities[" + std::to_string(i) + "]";
    Capability c;
    c.name = string_member(entry, "name", where);
    c.execution = string_member(entry, "execution", where);
    if (c.execution != "sync" && c.execution != "async_job" && c.execution != "builtin_search")
      throw std::runtime_error(where + ": execution must be sync, async_job or builtin_search");
    if (const json *consent = member(entry, "requiresConsent"); consent && consent->is_boolean())
      c.requires_consent = consent->get<bool>();
    if (const json *done = member(entry, "doneTemplate"); done && done->is_string())
      c.done_template = done->get<std::string>();
    if (const json *availability = member(entry, "availability");
        availability && *availability == "never")
      continue;
    const json *trigger = member(entry, "trigger");
    if (!trigger || !trigger->is_object())
      throw std::runtime_error(where + ": \"trigger\" must be an object");
    c.argument = string_member(*trigger, "argument", where + ".trigger");
    const json *patterns = member(*trigger, "patterns");
    if (!patterns || !patterns->is_array())
      throw std::runtime_error(where + ".trigger: \"patterns\" must be an array of strings");
    for (const auto &p : *patterns) {
      if (!p.is_string())
        throw std::runtime_error(where + ".trigger: \"patterns\" must be an array of strings");
      try {
        c.patterns.emplace_back(p.get<std::string>(),
                                std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
      } catch (const std::regex_error &e) {
        throw std::runtime_error(where + ".trigger: invalid pattern " + p.dump() + ": " + e.what());
      }
    }
    if (const json *keywords = member(*trigger, "enumKeywords");
        keywords && keywords->is_object()) {
      for (auto param = keywords->begin(); param != keywords->end(); ++param) {
        std::vector<std::pair<std::string, std::vector<std::string>>> values;
        for (auto value = param.value().begin(); value != param.value().end(); ++value) {
          std::vector<std::string> words;
          for (const auto &w : value.value())
            if (w.is_string())
              words.push_back(normalize(w.get<std::string>()));
          values.emplace_back(value.key(), std::move(words));
        }
        c.enum_keywords.emplace_back(param.key(), std::move(values));
      }
    }
    if (const json *examples = member(entry, "examples"); examples && examples->is_array())
      for (const auto &e : *examples)
        if (e.is_string())
          c.examples.push_back(e.get<std::string>());
    out.push_back(std::move(c));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Speech workers, shared by every backend in the process. Recognition (about a second per
// utterance) and synthesis (tens of milliseconds) have separate threads so that a recognition
// never delays a reply that is ready to be spoken.

class SpeechWorkers {
public:
  static SpeechWorkers &instance() {
    static SpeechWorkers workers;
    return workers;
  }
  WorkQueue recognition;
  WorkQueue synthesis;

private:
  // Statics are destroyed in the reverse order of their construction, and a worker may still be
  // warming the recogniser up when the process exits: it must outlive the workers, which join
  // their threads when destroyed. (Constructing it loads nothing.)
  SpeechWorkers() { (void)SpeechRecognizer::instance(); }
};

// ---------------------------------------------------------------------------------------------
// Sessions

struct Turn {
  std::string role; // "user" | "model"
  std::string text;
};

struct Snapshot {
  std::vector<Turn> history;
  int turns = 0;
  Clock::time_point expires;
  std::uint64_t audio_bytes = 0; // input audio of the conversation when the handle was issued
};

struct Setup {
  std::string model;
  bool audio_out = true;
  std::string system_instruction;
  bool input_transcription = false;
  bool output_transcription = false;
  bool automatic_activity = true;
  bool interrupts = true;
  VadConfig vad;
  std::map<std::string, json> functions; // declared name -> parameters schema
  bool google_search = false;
  bool resumption = false;
};

struct PendingCall {
  std::string name;
  ojson args;
  const Capability *capability = nullptr;
};

struct Consent {
  const Capability *capability = nullptr;
  ojson args;
};

// One message to send at `due` while the model speaks.
struct Scheduled {
  Clock::time_point due;
  std::string payload;
  bool chunk = false;         // counts towards drop_after_chunks
  std::string spoken;         // reply text this message delivers (history on interruption)
  bool turn_complete = false; // ends the model turn
};

enum class ModelState { Idle, Thinking, Speaking, AwaitingTool };

struct Session {
  std::uint64_t id = 0;
  std::uint64_t connection = 0; // index of its AudioCount
  lws *wsi = nullptr;
  Clock::time_point opened;

  std::string inbound;
  std::deque<std::string> outbox;
  std::optional<CloseSpec> close;
  bool abrupt = false; // drop the TCP connection without a close frame

  bool setup_done = false;
  Setup setup;
  std::optional<EnergyVad> vad;
  bool manual_activity = false;
  Pcm manual_audio;

  std::vector<Turn> history;
  int turns = 0;
  std::deque<std::string> queued_turns; // user turns waiting while the model cannot be interrupted

  std::uint64_t audio_bytes = 0; // input audio of the conversation, resumed included

  // Input since the last reply started, for usageMetadata.
  double input_audio_seconds = 0;
  int input_frames = 0;
  // The frames the model can "see": evenly thinned to at most kKeptFrames over the session.
  std::deque<std::string> frames;
  int frame_stride = 1;
  Clock::time_point first_frame_at{};
  Clock::time_point last_frame_at{};
  int video_frames = 0;

  // Bumped whenever the user starts a new turn or interrupts: worker results carrying an older
  // epoch are stale.
  std::uint64_t epoch = 0;
  ModelState model = ModelState::Idle;
  std::deque<Scheduled> playback;
  std::string reply_text;
  std::string spoken;
  std::optional<int> drop_after_chunks;
  int chunks_sent = 0;
  std::map<std::string, PendingCall> pending_calls;
  std::optional<Consent> consent;

  std::optional<Clock::time_point> go_away_at;
  std::optional<Clock::time_point> close_at;

  bool closing() const { return close.has_value() || abrupt; }
};

std::string_view close_reason_view(const CloseSpec &c) {
  std::string_view r = c.reason;
  return r.substr(0, 123); // a close frame's reason fits in 123 bytes
}

} // namespace

// ---------------------------------------------------------------------------------------------
// LiveFaults

LiveFaults::LiveFaults(std::chrono::milliseconds after, std::chrono::milliseconds time_left)
    : default_after_(after), default_time_left_(time_left), go_away_after_(after),
      go_away_time_left_(time_left) {}

void LiveFaults::drop_after_chunks(int chunks) {
  std::lock_guard lock(mutex_);
  drop_after_chunks_ = std::max(0, chunks);
}

void LiveFaults::send_malformed(MalformedKind kind) {
  std::lock_guard lock(mutex_);
  malformed_ = kind;
}

void LiveFaults::fail_next_setup(CloseSpec close) {
  std::lock_guard lock(mutex_);
  failed_setup_ = std::move(close);
}

void LiveFaults::set_go_away(std::chrono::milliseconds after, std::chrono::milliseconds time_left) {
  std::lock_guard lock(mutex_);
  go_away_after_ = std::max(0ms, after);
  go_away_time_left_ = std::max(0ms, time_left);
}

void LiveFaults::reset() {
  std::lock_guard lock(mutex_);
  drop_after_chunks_.reset();
  malformed_.reset();
  failed_setup_.reset();
  go_away_after_ = default_after_;
  go_away_time_left_ = default_time_left_;
}

std::optional<int> LiveFaults::take_drop_after_chunks() {
  std::lock_guard lock(mutex_);
  return std::exchange(drop_after_chunks_, std::nullopt);
}

std::optional<MalformedKind> LiveFaults::take_malformed() {
  std::lock_guard lock(mutex_);
  return std::exchange(malformed_, std::nullopt);
}

std::optional<CloseSpec> LiveFaults::take_failed_setup() {
  std::lock_guard lock(mutex_);
  return std::exchange(failed_setup_, std::nullopt);
}

std::pair<std::chrono::milliseconds, std::chrono::milliseconds> LiveFaults::go_away() const {
  std::lock_guard lock(mutex_);
  return {go_away_after_, go_away_time_left_};
}

nlohmann::json LiveFaults::to_json() const {
  std::lock_guard lock(mutex_);
  json j;
  j["drop_after_chunks"] = drop_after_chunks_ ? json(*drop_after_chunks_) : json(nullptr);
  j["malformed"] = !malformed_                                 ? json(nullptr)
                   : *malformed_ == MalformedKind::InvalidJson ? json("invalid_json")
                                                               : json("wrong_types");
  j["fail_next_setup"] =
      failed_setup_ ? json{{"code", failed_setup_->code}, {"reason", failed_setup_->reason}}
                    : json(nullptr);
  j["go_away_after_ms"] = go_away_after_.count();
  j["go_away_time_left_ms"] = go_away_time_left_.count();
  return j;
}

std::optional<CloseSpec> LiveFaults::apply(const nlohmann::json &request) {
  if (!request.is_object())
    throw std::invalid_argument("live must be an object");
  static constexpr std::string_view kKnown[] = {"dropAfterChunks", "malformed",
                                                "failNextSetup",   "closeSessions",
                                                "goAwayAfterMs",   "goAwayTimeLeftMs"};
  for (auto it = request.begin(); it != request.end(); ++it) {
    if (std::find(std::begin(kKnown), std::end(kKnown), camel_case(it.key())) == std::end(kKnown))
      throw std::invalid_argument("live: unknown member \"" + it.key() +
                                  "\" (have drop_after_chunks, malformed, fail_next_setup, "
                                  "close_sessions, go_away_after_ms, go_away_time_left_ms)");
  }
  auto integer = [](const json &v, std::string_view what, long long min, long long max) {
    if (!v.is_number_integer() || v.get<long long>() < min || v.get<long long>() > max)
      throw std::invalid_argument("live." + std::string(what) + " must be an integer from " +
                                  std::to_string(min) + " to " + std::to_string(max));
    return v.get<long long>();
  };
  auto close_spec = [&](const json &v, std::string_view what) {
    if (!v.is_object())
      throw std::invalid_argument("live." + std::string(what) +
                                  " must be {\"code\":N,\"reason\":\"...\"}");
    CloseSpec c;
    const json *code = member(v, "code");
    c.code = int(code ? integer(*code, std::string(what) + ".code", 1000, 4999) : 1011);
    if (const json *reason = member(v, "reason")) {
      if (!reason->is_string())
        throw std::invalid_argument("live." + std::string(what) + ".reason must be a string");
      c.reason = reason->get<std::string>();
    }
    return c;
  };

  // Validate everything before changing anything.
  std::optional<std::optional<int>> drop;
  std::optional<std::optional<MalformedKind>> malformed;
  std::optional<std::optional<CloseSpec>> failed;
  std::optional<CloseSpec> close_now;
  std::optional<long long> after, left;
  if (const json *v = member(request, "dropAfterChunks"))
    drop = v->is_null() ? std::optional<int>()
                        : std::optional<int>(int(integer(*v, "drop_after_chunks", 0, 1000000)));
  if (const json *v = member(request, "malformed")) {
    if (v->is_null())
      malformed = std::optional<MalformedKind>();
    else if (*v == "invalid_json")
      malformed = MalformedKind::InvalidJson;
    else if (*v == "wrong_types")
      malformed = MalformedKind::WrongTypes;
    else
      throw std::invalid_argument(
          "live.malformed must be \"invalid_json\", \"wrong_types\" or null");
  }
  if (const json *v = member(request, "failNextSetup"))
    failed = v->is_null() ? std::optional<CloseSpec>()
                          : std::optional<CloseSpec>(close_spec(*v, "fail_next_setup"));
  if (const json *v = member(request, "closeSessions"))
    close_now = close_spec(*v, "close_sessions");
  if (const json *v = member(request, "goAwayAfterMs"))
    after = integer(*v, "go_away_after_ms", 0, 86400000);
  if (const json *v = member(request, "goAwayTimeLeftMs"))
    left = integer(*v, "go_away_time_left_ms", 0, 86400000);

  std::lock_guard lock(mutex_);
  if (drop)
    drop_after_chunks_ = *drop;
  if (malformed)
    malformed_ = *malformed;
  if (failed)
    failed_setup_ = *failed;
  if (after)
    go_away_after_ = std::chrono::milliseconds(*after);
  if (left)
    go_away_time_left_ = std::chrono::milliseconds(*left);
  return close_now;
}

// ---------------------------------------------------------------------------------------------
// LiveServer::Impl

struct LiveServer::Impl {
  Impl(LiveServerOptions o, LiveFaults &f)
      : options(std::move(o)), faults(f),
        capabilities(load_capabilities(options.capabilities_file)), rng(std::random_device{}()) {
    for (const auto &c : capabilities)
      hints.insert(hints.end(), c.examples.begin(), c.examples.end());
    // What the search can answer about, asked the way the capabilities' examples ask. Without
    // it, "what's the latest on AI regulation" was heard as "... on my regulation".
    for (const auto &topic : search_topics())
      hints.push_back("what's the latest on " + topic);
  }

  // Connection lifecycle.
  std::uint64_t open(lws *wsi);
  void receive(Session &s, const char *data, std::size_t len);
  int writeable(Session &s);
  void timer(Session &s);
  void touch(Session &s);
  Session *find(std::uint64_t id) {
    auto it = sessions.find(id);
    return it == sessions.end() ? nullptr : it->second.get();
  }

  // Output.
  void send(Session &s, const ojson &message);
  void send_raw(Session &s, std::string payload);
  void close(Session &s, int code, std::string_view reason);
  void invalid(Session &s, std::string_view reason = kInvalidArgument) { close(s, 1007, reason); }

  // Client messages.
  void handle_message(Session &s, std::string_view text);
  void handle_setup(Session &s, const json &setup);
  void handle_realtime_input(Session &s, const json &input);
  void handle_client_content(Session &s, const json &content);
  void handle_tool_response(Session &s, const json &response);
  void on_audio(Session &s, const json &blob);
  void on_video(Session &s, const json &blob);
  void on_speech_start(Session &s);
  void on_utterance(Session &s, Pcm utterance);

  // The stand-in model.
  void interrupt(Session &s);
  void typed_turn(Session &s, std::string text);
  void describe_frames(Session &s);
  void user_turn(Session &s, std::string text);
  void decide(Session &s, const std::string &text);
  void call_function(Session &s, const Capability &c, ojson args);
  void respond(Session &s, std::string text, ojson grounding = nullptr);
  void respond_grounded(Session &s, const std::string &query);
  void start_reply(Session &s, std::string text, Pcm audio, ojson grounding);
  void emit(Session &s, Scheduled item);
  void finish_model_turn(Session &s, const std::string &text);
  ojson usage(Session &s, int response_tokens, bool audio);
  void resumption_update(Session &s);
  void on_recognized(std::uint64_t id, std::uint64_t epoch, std::string text, std::string error);
  void on_synthesized(std::uint64_t id, std::uint64_t epoch, std::string text, Pcm audio,
                      ojson grounding, std::string error);
  void internal_error(Session &s, const std::string &what);

  std::string random_string(std::size_t n, std::string_view alphabet) {
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string out(n, ' ');
    for (auto &c : out)
      c = alphabet[pick(rng)];
    return out;
  }

  const LiveServerOptions options;
  LiveFaults &faults;
  const std::vector<Capability> capabilities;
  std::vector<std::string> hints;

  lws_context *context = nullptr;
  Post post;
  std::unordered_map<std::uint64_t, std::unique_ptr<Session>> sessions;
  std::atomic<std::size_t> session_count{0};
  std::uint64_t next_id = 1;
  std::map<std::string, Snapshot> handles;
  std::mt19937_64 rng;
  bool recognizer_requested = false;

  // Input audio per connection, for tests; the only session state other threads read.
  mutable std::mutex audio_mutex;
  std::deque<AudioCount> audio_counts; // connections audio_counts_first...
  std::uint64_t audio_counts_first = 0;
  std::uint64_t next_connection = 0;

  template <typename F> void update_audio_count(const Session &s, F &&update) {
    std::lock_guard lock(audio_mutex);
    if (s.connection >= audio_counts_first)
      update(audio_counts[std::size_t(s.connection - audio_counts_first)]);
  }
};

// ---------------------------------------------------------------------------------------------
// Connections

std::uint64_t LiveServer::Impl::open(lws *wsi) {
  auto owned = std::make_unique<Session>();
  Session &s = *owned;
  s.id = next_id++;
  s.wsi = wsi;
  s.opened = Clock::now();
  {
    std::lock_guard lock(audio_mutex);
    s.connection = next_connection++;
    audio_counts.emplace_back();
    while (audio_counts.size() > kAudioCountsKept) {
      audio_counts.pop_front();
      ++audio_counts_first;
    }
  }

  std::string value;
  auto copy_token = [&](lws_token_indexes token) -> bool {
    const int n = lws_hdr_total_length(wsi, token);
    if (n <= 0)
      return false;
    value.resize(std::size_t(n) + 1);
    const int got = lws_hdr_copy(wsi, value.data(), n + 1, token);
    if (got < 0)
      return false;
    value.resize(std::size_t(got));
    return true;
  };
  const std::string path = copy_token(WSI_TOKEN_GET_URI) ? value : std::string();
  const bool constrained = path.find("BidiGenerateContentConstrained") != std::string::npos;

  std::string query;
  {
    char fragment[4096];
    for (int i = 0;; ++i) {
      const int n =
          lws_hdr_copy_fragment(wsi, fragment, sizeof fragment, WSI_TOKEN_HTTP_URI_ARGS, i);
      if (n < 0)
        break;
      if (!query.empty())
        query += '&';
      query.append(fragment, std::size_t(n));
    }
  }
  std::string header_key;
  {
    static constexpr char kName[] = "x-goog-api-key:";
    const int n = lws_hdr_custom_length(wsi, kName, int(sizeof kName - 1));
    if (n > 0) {
      header_key.resize(std::size_t(n) + 1);
      const int got =
          lws_hdr_custom_copy(wsi, header_key.data(), n + 1, kName, int(sizeof kName - 1));
      header_key.resize(got < 0 ? 0 : std::size_t(got));
    }
  }

  if (!options.required_api_key.empty()) {
    std::vector<std::string> offered;
    offered.push_back(header_key);
    offered.push_back(query_param(query, "key").value_or(""));
    if (constrained) {
      offered.push_back(query_param(query, "access_token").value_or(""));
      if (copy_token(WSI_TOKEN_HTTP_AUTHORIZATION) && value.rfind("Token ", 0) == 0)
        offered.push_back(value.substr(6));
    }
    const bool ok = std::any_of(offered.begin(), offered.end(), [&](const std::string &k) {
      return !k.empty() && k == options.required_api_key;
    });
    if (!ok)
      close(s, 1007, kKeyInvalid);
  }

  s.go_away_at = s.opened + faults.go_away().first;

  sessions.emplace(s.id, std::move(owned));
  session_count = sessions.size();
  touch(s);
  return s.id;
}

void LiveServer::Impl::touch(Session &s) {
  if (!s.outbox.empty() || s.closing()) {
    lws_callback_on_writable(s.wsi);
  }
  std::optional<Clock::time_point> next;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next))
      next = t;
  };
  if (!s.closing()) {
    consider(s.go_away_at);
    consider(s.close_at);
    if (!s.playback.empty())
      consider(s.playback.front().due);
  }
  if (!next) {
    lws_set_timer_usecs(s.wsi, LWS_SET_TIMER_USEC_CANCEL);
    return;
  }
  const auto wait = std::chrono::duration_cast<std::chrono::microseconds>(*next - Clock::now());
  lws_set_timer_usecs(s.wsi, lws_usec_t(std::max<long long>(1, wait.count())));
}

int LiveServer::Impl::writeable(Session &s) {
  if (!s.outbox.empty()) {
    const std::string payload = std::move(s.outbox.front());
    s.outbox.pop_front();
    std::vector<unsigned char> buffer(LWS_PRE + payload.size());
    std::memcpy(buffer.data() + LWS_PRE, payload.data(), payload.size());
    if (lws_write(s.wsi, buffer.data() + LWS_PRE, payload.size(), LWS_WRITE_BINARY) <
        int(payload.size()))
      return -1;
    if (!s.outbox.empty() || s.closing())
      lws_callback_on_writable(s.wsi);
    return 0;
  }
  if (s.abrupt)
    return -1; // no close reason set: lws drops the socket without a close frame
  if (s.close) {
    const std::string_view reason = close_reason_view(*s.close);
    lws_close_reason(s.wsi, static_cast<lws_close_status>(s.close->code),
                     reinterpret_cast<unsigned char *>(const_cast<char *>(reason.data())),
                     reason.size());
    return -1;
  }
  return 0;
}

void LiveServer::Impl::timer(Session &s) {
  if (s.closing())
    return;
  const auto now = Clock::now();
  if (s.close_at && *s.close_at <= now) {
    close(s, 1000, "");
    return;
  }
  if (s.go_away_at && *s.go_away_at <= now) {
    const auto left = faults.go_away().second;
    s.go_away_at.reset();
    s.close_at = now + left;
    send(s, {{"goAway", {{"timeLeft", duration_string(left)}}}});
  }
  while (!s.playback.empty() && s.playback.front().due <= now && !s.closing()) {
    Scheduled item = std::move(s.playback.front());
    s.playback.pop_front();
    emit(s, std::move(item));
  }
}

void LiveServer::Impl::send(Session &s, const ojson &message) {
  send_raw(s, pretty_json(message) + "\n");
}

void LiveServer::Impl::send_raw(Session &s, std::string payload) {
  if (s.closing())
    return;
  if (s.setup_done) {
    if (const auto kind = faults.take_malformed()) {
      if (*kind == MalformedKind::InvalidJson) {
        s.outbox.push_back("{\n  \"serverContent\": {\n    \"modelTurn\": {\n      \"parts\": [\n");
      } else {
        s.outbox.push_back(pretty_json(ojson{{"serverContent",
                                              {{"modelTurn", {{"parts", {{"text", 42}}}}},
                                               {"turnComplete", "yes"}}},
                                             {"usageMetadata", {{"totalTokenCount", "many"}}}}) +
                           "\n");
      }
    }
  }
  s.outbox.push_back(std::move(payload));
}

void LiveServer::Impl::close(Session &s, int code, std::string_view reason) {
  if (s.closing())
    return;
  s.close = CloseSpec{code, std::string(reason)};
  s.playback.clear();
}

void LiveServer::Impl::receive(Session &s, const char *data, std::size_t len) {
  if (s.closing())
    return;
  if (s.inbound.size() + len > kMaxMessageBytes) {
    close(s, 1009, "Message too big.");
    return;
  }
  s.inbound.append(data, len);
  if (!lws_is_final_fragment(s.wsi) || lws_remaining_packet_payload(s.wsi) > 0)
    return;
  const std::string message = std::exchange(s.inbound, {});
  handle_message(s, message);
}

// ---------------------------------------------------------------------------------------------
// Client messages

void LiveServer::Impl::handle_message(Session &s, std::string_view text) {
  json message;
  try {
    message = json::parse(text);
  } catch (const json::parse_error &) {
    invalid(s);
    return;
  }
  if (!message.is_object() || message.empty()) {
    invalid(s);
    return;
  }
  try {
    if (!s.setup_done) {
      const json *setup = member(message, "setup");
      if (!setup || message.size() != 1 || !setup->is_object()) {
        invalid(s);
        return;
      }
      handle_setup(s, *setup);
      return;
    }
    for (auto it = message.begin(); it != message.end() && !s.closing(); ++it) {
      const std::string name = camel_case(it.key());
      if (name == "realtimeInput")
        handle_realtime_input(s, it.value());
      else if (name == "clientContent")
        handle_client_content(s, it.value());
      else if (name == "toolResponse")
        handle_tool_response(s, it.value());
      else if (name == "setup")
        invalid(s);
      else
        invalid(s, "Invalid JSON payload received. Unknown name \"" + it.key() +
                       "\": Cannot find field.");
    }
  } catch (const json::exception &) {
    invalid(s); // a member of the wrong JSON type
  }
}

namespace {

std::optional<long long> integer_value(const json &v) {
  if (v.is_number_integer())
    return v.get<long long>();
  if (v.is_string()) {
    const auto &str = v.get_ref<const std::string &>();
    long long out = 0;
    if (std::from_chars(str.data(), str.data() + str.size(), out).ec == std::errc())
      return out;
  }
  return std::nullopt;
}

std::string unknown_name(const json &object, std::initializer_list<std::string_view> known,
                         std::string_view where) {
  if (!object.is_object())
    return {};
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(known.begin(), known.end(), camel_case(it.key())) == known.end())
      return "Invalid JSON payload received. Unknown name \"" + it.key() + "\" at '" +
             std::string(where) + "': Cannot find field.";
  }
  return {};
}

std::string content_text(const json &content) {
  std::string text;
  if (const json *parts = member(content, "parts"); parts && parts->is_array()) {
    for (const auto &part : *parts) {
      if (const json *t = member(part, "text"); t && t->is_string()) {
        if (!text.empty())
          text += ' ';
        text += t->get<std::string>();
      }
    }
  }
  return text;
}

} // namespace

void LiveServer::Impl::handle_setup(Session &s, const json &setup) {
  if (auto bad =
          unknown_name(setup,
                       {"model", "generationConfig", "systemInstruction", "tools", "toolConfig",
                        "realtimeInputConfig", "sessionResumption", "contextWindowCompression",
                        "inputAudioTranscription", "outputAudioTranscription", "proactivity",
                        "explicitVadSignal", "historyConfig"},
                       "setup");
      !bad.empty()) {
    invalid(s, bad);
    return;
  }
  Setup config;
  const json *model = member(setup, "model");
  if (!model || !model->is_string() || model->get_ref<const std::string &>().empty()) {
    invalid(s);
    return;
  }
  std::string model_id = model->get<std::string>();
  if (model_id.rfind("models/", 0) == 0)
    model_id.erase(0, 7);
  if (!is_live_model(model_id)) {
    close(s, 1008, kNotFound);
    return;
  }
  config.model = model_id;

  if (const json *generation = member(setup, "generationConfig")) {
    if (const json *modalities = member(*generation, "responseModalities")) {
      if (!modalities->is_array() || modalities->size() > 1) {
        invalid(s);
        return;
      }
      if (!modalities->empty()) {
        const json &m = (*modalities)[0];
        if (m == "TEXT")
          config.audio_out = false;
        else if (m != "AUDIO") {
          invalid(s);
          return;
        }
      }
    }
  }
  if (!config.audio_out && model_id.find("native-audio") != std::string::npos) {
    close(s, 1007, "Cannot extract voices from a non-audio request.");
    return;
  }

  if (const json *instruction = member(setup, "systemInstruction"))
    config.system_instruction =
        instruction->is_string() ? instruction->get<std::string>() : content_text(*instruction);

  if (const json *tools = member(setup, "tools")) {
    if (!tools->is_array()) {
      invalid(s);
      return;
    }
    for (const auto &tool : *tools) {
      if (!tool.is_object()) {
        invalid(s);
        return;
      }
      if (member(tool, "googleSearch") || member(tool, "googleSearchRetrieval"))
        config.google_search = true;
      if (const json *declarations = member(tool, "functionDeclarations")) {
        if (!declarations->is_array()) {
          invalid(s);
          return;
        }
        for (const auto &d : *declarations) {
          const json *name = member(d, "name");
          if (!name || !name->is_string() || name->get_ref<const std::string &>().empty()) {
            invalid(s);
            return;
          }
          const json *params = member(d, "parameters");
          config.functions[name->get<std::string>()] = params ? *params : json::object();
        }
      }
    }
  }

  if (const json *realtime = member(setup, "realtimeInputConfig")) {
    if (const json *aad = member(*realtime, "automaticActivityDetection")) {
      if (const json *disabled = member(*aad, "disabled"); disabled && disabled->is_boolean())
        config.automatic_activity = !disabled->get<bool>();
      if (const json *start = member(*aad, "startOfSpeechSensitivity");
          start && start->is_string()) {
        if (*start == "START_SENSITIVITY_HIGH")
          config.vad.threshold = 300;
        else if (*start == "START_SENSITIVITY_LOW")
          config.vad.threshold = 900;
      }
      if (const json *end = member(*aad, "endOfSpeechSensitivity"); end && end->is_string()) {
        if (*end == "END_SENSITIVITY_HIGH")
          config.vad.silence_duration = 300ms;
        else if (*end == "END_SENSITIVITY_LOW")
          config.vad.silence_duration = 800ms;
      }
      // prefixPaddingMs is how long speech must last before its start is committed.
      if (const json *prefix = member(*aad, "prefixPaddingMs")) {
        const auto ms = integer_value(*prefix);
        if (!ms || *ms < 0) {
          invalid(s);
          return;
        }
        config.vad.start_duration = std::chrono::milliseconds(std::max<long long>(10, *ms));
      }
      if (const json *silence = member(*aad, "silenceDurationMs")) {
        const auto ms = integer_value(*silence);
        if (!ms || *ms < 0) {
          invalid(s);
          return;
        }
        if (*ms > 0)
          config.vad.silence_duration = std::chrono::milliseconds(*ms);
      }
    }
    if (const json *handling = member(*realtime, "activityHandling");
        handling && handling->is_string())
      config.interrupts = *handling != "NO_INTERRUPTION";
  }
  config.input_transcription = member(setup, "inputAudioTranscription") != nullptr;
  config.output_transcription =
      config.audio_out && member(setup, "outputAudioTranscription") != nullptr;

  std::optional<Snapshot> resumed;
  if (const json *resumption = member(setup, "sessionResumption")) {
    if (!resumption->is_object()) {
      invalid(s);
      return;
    }
    // The Gemini Developer API refuses transparent resumption (Vertex AI only).
    if (const json *transparent = member(*resumption, "transparent");
        transparent && *transparent == true) {
      close(s, 1007, "transparent parameter is not supported in Gemini API.");
      return;
    }
    config.resumption = true;
    if (const json *handle = member(*resumption, "handle"); handle && !handle->is_null()) {
      if (!handle->is_string()) {
        invalid(s);
        return;
      }
      auto it = handles.find(handle->get<std::string>());
      if (it == handles.end() || it->second.expires < Clock::now()) {
        close(s, 1007, "Session resumption handle is invalid or has expired.");
        return;
      }
      resumed = it->second;
    }
  }

  if (auto failure = faults.take_failed_setup()) {
    close(s, failure->code, failure->reason);
    return;
  }

  s.setup = std::move(config);
  if (resumed) {
    s.history = std::move(resumed->history);
    s.turns = resumed->turns;
    s.audio_bytes = resumed->audio_bytes;
    update_audio_count(s, [&](AudioCount &c) { c.resumed_bytes = resumed->audio_bytes; });
  }
  if (s.setup.automatic_activity)
    s.vad.emplace(s.setup.vad);
  send(s, {{"setupComplete", ojson::object()}});
  s.setup_done = true;
  if (!recognizer_requested) {
    // Load the recogniser now, off the service thread, so the first utterance does not wait for
    // it; REST-only users of the backend never pay for it.
    recognizer_requested = true;
    SpeechWorkers::instance().recognition.post([hints = hints] {
      try {
        auto &recognizer = SpeechRecognizer::instance();
        recognizer.set_phrase_hints(hints);
        recognizer.warm_up();
      } catch (const std::exception &e) {
        lwsl_warn("local backend: speech recognition unavailable: %s\n", e.what());
      }
    });
  } // from here on, malformed-message faults apply
  if (s.setup.resumption)
    resumption_update(s);
}

void LiveServer::Impl::handle_realtime_input(Session &s, const json &input) {
  if (!input.is_object()) {
    invalid(s);
    return;
  }
  if (auto bad = unknown_name(input,
                              {"audio", "video", "text", "mediaChunks", "activityStart",
                               "activityEnd", "audioStreamEnd"},
                              "realtime_input");
      !bad.empty()) {
    invalid(s, bad);
    return;
  }
  for (auto it = input.begin(); it != input.end() && !s.closing(); ++it) {
    const std::string name = camel_case(it.key());
    const json &v = it.value();
    if (name == "audio") {
      on_audio(s, v);
    } else if (name == "video") {
      on_video(s, v);
    } else if (name == "mediaChunks") {
      if (!v.is_array()) {
        invalid(s);
        return;
      }
      for (const auto &chunk : v) {
        const json *mime = member(chunk, "mimeType");
        if (mime && mime->is_string() &&
            mime->get_ref<const std::string &>().rfind("image/", 0) == 0)
          on_video(s, chunk);
        else
          on_audio(s, chunk);
      }
    } else if (name == "text") {
      if (!v.is_string()) {
        invalid(s);
        return;
      }
      typed_turn(s, v.get<std::string>());
    } else if (name == "activityStart" || name == "activityEnd") {
      if (s.setup.automatic_activity) {
        close(s, 1007,
              "Explicit activity control is not supported when automatic activity detection is "
              "enabled.");
        return;
      }
      if (name == "activityStart") {
        s.manual_activity = true;
        s.manual_audio.clear();
        on_speech_start(s);
      } else if (s.manual_activity) {
        s.manual_activity = false;
        if (!s.manual_audio.empty())
          on_utterance(s, std::exchange(s.manual_audio, {}));
      }
    } else if (name == "audioStreamEnd") {
      if (v == true && s.vad) {
        for (auto &event : s.vad->flush())
          if (event.kind == EnergyVad::Kind::SpeechEnded)
            on_utterance(s, std::move(event.utterance));
      }
    }
  }
}

void LiveServer::Impl::on_audio(Session &s, const json &blob) {
  const json *mime = member(blob, "mimeType");
  const json *data = member(blob, "data");
  if (!mime || !mime->is_string() || !data || !data->is_string()) {
    invalid(s);
    return;
  }
  const std::string type = lower_ascii(mime->get<std::string>());
  if (type.rfind("audio/pcm", 0) != 0) {
    close(s, 1007,
          "Unsupported audio mime type \"" + mime->get<std::string>() +
              "\": send audio/pcm;rate=N (16-bit little-endian mono).");
    return;
  }
  int rate = kSpeechRate;
  if (const auto pos = type.find("rate="); pos != std::string::npos) {
    const char *begin = type.data() + pos + 5;
    const auto [end, ec] = std::from_chars(begin, type.data() + type.size(), rate);
    if (ec != std::errc() || rate < 4000 || rate > 192000) {
      invalid(s);
      return;
    }
  }
  const auto bytes = base64_decode(data->get_ref<const std::string &>());
  if (!bytes) {
    invalid(s);
    return;
  }
  s.audio_bytes += bytes->size();
  update_audio_count(s, [&](AudioCount &c) { c.received_bytes += bytes->size(); });
  Pcm samples(bytes->size() / 2);
  for (std::size_t i = 0; i < samples.size(); ++i)
    samples[i] = std::int16_t(std::uint16_t(std::uint8_t((*bytes)[2 * i])) |
                              std::uint16_t(std::uint8_t((*bytes)[2 * i + 1])) << 8);
  if (rate != kSpeechRate)
    samples = resample_linear(samples, rate, kSpeechRate);
  s.input_audio_seconds += double(samples.size()) / kSpeechRate;

  if (s.vad) {
    for (auto &event : s.vad->feed(samples)) {
      if (event.kind == EnergyVad::Kind::SpeechStarted)
        on_speech_start(s);
      else
        on_utterance(s, std::move(event.utterance));
      if (s.closing())
        return;
    }
  } else if (s.manual_activity &&
             s.manual_audio.size() < std::size_t(kSpeechRate * kMaxManualActivity.count())) {
    s.manual_audio.insert(s.manual_audio.end(), samples.begin(), samples.end());
  }
}

void LiveServer::Impl::on_video(Session &s, const json &blob) {
  const json *mime = member(blob, "mimeType");
  const json *data = member(blob, "data");
  if (!mime || !mime->is_string() || !data || !data->is_string()) {
    invalid(s);
    return;
  }
  if (*mime != "image/jpeg" && *mime != "image/png") {
    close(s, 1007,
          "Unsupported video mime type \"" + mime->get<std::string>() +
              "\": send image/jpeg frames.");
    return;
  }
  auto bytes = base64_decode(data->get_ref<const std::string &>());
  if (!bytes) {
    invalid(s);
    return;
  }
  const auto now = Clock::now();
  if (s.video_frames == 0)
    s.first_frame_at = now;
  s.last_frame_at = now;
  if (s.video_frames % s.frame_stride == 0) {
    s.frames.push_back(std::move(*bytes));
    if (s.frames.size() > kKeptFrames) {
      // Keep every other frame and take every other from now on: still an even spread.
      std::deque<std::string> kept;
      for (std::size_t i = 0; i < s.frames.size(); i += 2)
        kept.push_back(std::move(s.frames[i]));
      s.frames.swap(kept);
      s.frame_stride *= 2;
    }
  }
  ++s.video_frames;
  ++s.input_frames;
}

void LiveServer::Impl::on_speech_start(Session &s) {
  if (s.setup.interrupts)
    interrupt(s);
}

void LiveServer::Impl::on_utterance(Session &s, Pcm utterance) {
  SpeechWorkers::instance().recognition.post(
      [this, post = post, id = s.id, epoch = s.epoch, pcm = std::move(utterance)] {
        std::string text;
        std::string error;
        try {
          text = SpeechRecognizer::instance().recognize(pcm);
        } catch (const std::exception &e) {
          error = e.what();
        }
        post([this, id, epoch, text = std::move(text), error = std::move(error)]() mutable {
          on_recognized(id, epoch, std::move(text), std::move(error));
        });
      });
}

void LiveServer::Impl::handle_client_content(Session &s, const json &content) {
  if (!content.is_object()) {
    invalid(s);
    return;
  }
  if (auto bad = unknown_name(content, {"turns", "turnComplete"}, "client_content"); !bad.empty()) {
    invalid(s, bad);
    return;
  }
  std::vector<Turn> turns;
  if (const json *list = member(content, "turns")) {
    if (!list->is_array()) {
      invalid(s);
      return;
    }
    for (const auto &turn : *list) {
      if (!turn.is_object()) {
        invalid(s);
        return;
      }
      const json *role = member(turn, "role");
      std::string r = role && role->is_string() ? role->get<std::string>() : "user";
      turns.push_back({r == "model" ? "model" : "user", content_text(turn)});
    }
  }
  const json *complete = member(content, "turnComplete");
  const bool turn_complete = complete && complete->is_boolean() && complete->get<bool>();
  if (!turn_complete) {
    for (auto &t : turns)
      s.history.push_back(std::move(t));
    return;
  }
  // The last user turn is answered; everything before it is context.
  std::string prompt;
  if (!turns.empty() && turns.back().role == "user") {
    prompt = std::move(turns.back().text);
    turns.pop_back();
  }
  for (auto &t : turns)
    s.history.push_back(std::move(t));
  typed_turn(s, std::move(prompt));
}

void LiveServer::Impl::handle_tool_response(Session &s, const json &response) {
  const json *list = member(response, "functionResponses");
  if (!response.is_object() || !list || !list->is_array()) {
    invalid(s);
    return;
  }
  std::vector<std::pair<PendingCall, json>> answered;
  for (const auto &r : *list) {
    if (!r.is_object()) {
      invalid(s);
      return;
    }
    const json *id = member(r, "id");
    const json *body = member(r, "response");
    if ((id && !id->is_string()) || (body && !body->is_object())) {
      invalid(s);
      return;
    }
    if (!id)
      continue;
    auto it = s.pending_calls.find(id->get<std::string>());
    if (it == s.pending_calls.end())
      continue; // an answer to nothing pending (cancelled, or from a previous connection)
    answered.emplace_back(std::move(it->second), body ? *body : json::object());
    s.pending_calls.erase(it);
  }
  if (answered.empty() || !s.pending_calls.empty() || s.model != ModelState::AwaitingTool)
    return;

  std::string reply;
  for (auto &[call, body] : answered) {
    std::string part;
    if (const json *error = member(body, "error")) {
      part = "Sorry, " + call.name +
             " did not work: " + (error->is_string() ? error->get<std::string>() : error->dump()) +
             ".";
    } else if (const json *question = member(body, "question"); question && question->is_string()) {
      part = question->get<std::string>();
      s.consent = Consent{call.capability, call.args};
    } else if (call.capability && !call.capability->done_template.empty()) {
      part = fill_template(call.capability->done_template, call.args);
    } else {
      part = "Done.";
    }
    if (!reply.empty())
      reply += ' ';
    reply += part;
  }
  s.model = ModelState::Idle;
  respond(s, std::move(reply));
}

// ---------------------------------------------------------------------------------------------
// The stand-in model

void LiveServer::Impl::interrupt(Session &s) {
  ++s.epoch;
  s.queued_turns.clear(); // the user has moved on
  switch (s.model) {
  case ModelState::Speaking: {
    s.playback.clear();
    send(s, {{"serverContent", {{"interrupted", true}}}});
    const bool audio = s.setup.audio_out;
    const int tokens = audio
                           ? int(std::lround(double(s.chunks_sent) *
                                             std::chrono::duration<double>(kChunkDuration).count() *
                                             kAudioTokensPerSecond))
                           : text_tokens(s.spoken);
    ojson done = {{"serverContent", {{"turnComplete", true}}},
                  {"usageMetadata", usage(s, tokens, audio)}};
    send(s, done);
    finish_model_turn(s, s.spoken);
    return;
  }
  case ModelState::AwaitingTool: {
    ojson ids = ojson::array();
    for (const auto &[id, call] : s.pending_calls)
      ids.push_back(id);
    s.pending_calls.clear();
    send(s, {{"toolCallCancellation", {{"ids", std::move(ids)}}}});
    break;
  }
  case ModelState::Thinking:
  case ModelState::Idle: break;
  }
  s.model = ModelState::Idle;
}

void LiveServer::Impl::typed_turn(Session &s, std::string text) {
  interrupt(s);
  if (normalize(text).empty())
    return;
  user_turn(s, std::move(text));
}

void LiveServer::Impl::user_turn(Session &s, std::string text) {
  s.history.push_back({"user", text});
  if (s.model != ModelState::Idle) {
    if (s.queued_turns.size() < kMaxQueuedTurns)
      s.queued_turns.push_back(std::move(text));
    return;
  }
  decide(s, text);
}

void LiveServer::Impl::decide(Session &s, const std::string &text) {
  // The client reports the end of an asynchronous job in a turn of its own ("[job job-1
  // finished] The video is ready. Files: ... Tell the user ..."): pass the news on.
  static const std::regex job_report(
      R"(^\[job \S+ (finished|failed)\] (.*?)(?: Files: .*?)?(?: Tell the user.*)?$)");
  std::smatch report;
  if (std::regex_match(text, report, job_report)) {
    respond(s, (report[1] == "failed" ? "Sorry, that did not work: " : "") + report[2].str());
    return;
  }
  const std::string said = normalize(text);

  if (auto consent = std::exchange(s.consent, std::nullopt); consent && consent->capability) {
    static const std::regex yes(
        "^(yes|yeah|yep|sure|ok|okay|go ahead|please do|do it|yes please)\\b.*");
    static const std::regex no("^(no|nope|don't|do not|cancel|never mind|not now)\\b.*");
    if (std::regex_match(said, yes)) {
      ojson args = consent->args;
      args["confirmed"] = true;
      call_function(s, *consent->capability, std::move(args));
      return;
    }
    if (std::regex_match(said, no)) {
      respond(s, "Okay, I won't do that.");
      return;
    }
  }

  for (const auto &c : capabilities) {
    std::smatch match;
    const auto hit = std::find_if(c.patterns.begin(), c.patterns.end(), [&](const std::regex &re) {
      return std::regex_match(said, match, re) && match.size() > 1 && match[1].length() > 0;
    });
    if (hit == c.patterns.end())
      continue;
    const std::string argument = match[1].str();
    if (c.execution == "builtin_search" && s.setup.google_search) {
      respond_grounded(s, argument);
      return;
    }
    auto declared = s.setup.functions.find(c.name);
    if (declared == s.setup.functions.end())
      continue;
    ojson args = {{c.argument, argument}};
    for (const auto &[param, values] : c.enum_keywords) {
      for (const auto &[value, words] : values) {
        if (std::any_of(words.begin(), words.end(),
                        [&](const std::string &w) { return contains_word(said, w); })) {
          args[param] = value;
          break;
        }
      }
    }
    const json *properties = member(declared->second, "properties");
    if (properties && member(*properties, "confirmed"))
      args["confirmed"] = false;
    call_function(s, c, std::move(args));
    return;
  }

  static const std::regex look(
      ".*\\b(what do you see|what can you see|what is happening|what's happening|what happens|"
      "what am i doing|describe (?:the|this|my) (?:video|picture|image|scene)|look at (?:this|me|my))"
      "\\b.*");
  if (std::regex_match(said, look)) {
    describe_frames(s);
    return;
  }

  std::string reply;
  static const std::regex greeting("^(hi|hello|hey|good morning|good afternoon|good evening)\\b.*");
  static const std::regex question(
      "^(?:what|who|where|when|why|how|which)(?:'s| is| are| was| were| do| does| did)?"
      "(?: the| a| an)? (.+)$");
  static const std::regex recall("^what did i (?:just )?say.*");
  std::smatch match;
  if (std::regex_match(said, recall)) {
    // The turn before this one (which is already in the history), restored history included.
    const Turn *earlier = nullptr;
    for (std::size_t i = s.history.size(); i-- > 1 && !earlier;)
      if (s.history[i - 1].role == "user")
        earlier = &s.history[i - 1];
    reply = earlier ? "Earlier you said: " + normalize(earlier->text) + "."
                    : "You have not said anything yet.";
  } else if (said.find("how are you") != std::string::npos)
    reply = "Hello! I am doing well, thank you.";
  else if (std::regex_match(said, greeting))
    reply = "Hello! How can I help you today?";
  else if (said.find("are you there") != std::string::npos)
    reply = "Yes, I'm here! How can I help you today?";
  else if (said.find("thank") != std::string::npos)
    reply = "You're welcome!";
  else if (std::regex_match(said, match, question))
    reply = "Here is what I know about " + match[1].str() + ".";
  else
    reply = "You said: " + said + ".";
  respond(s, std::move(reply));
}

// An honest account of the frames received (realtimeInput.video), computed on a worker: their
// number, size, colours and the motion between them.
void LiveServer::Impl::describe_frames(Session &s) {
  if (s.frames.empty()) {
    respond(s, "I cannot see anything: no video has reached me in this session.");
    return;
  }
  std::vector<std::string> frames(s.frames.begin(), s.frames.end());
  const double span = std::chrono::duration<double>(s.last_frame_at - s.first_frame_at).count();
  const int received = s.video_frames;
  s.model = ModelState::Thinking;
  SpeechWorkers::instance().recognition.post([this, post = post, id = s.id, epoch = s.epoch,
                                              frames = std::move(frames), span,
                                              received]() mutable {
    const std::vector<std::string_view> views(frames.begin(), frames.end());
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.1f", span);
    std::string text = "You have sent me " + std::to_string(received) + " frame" +
                       (received == 1 ? "" : "s") + " over " + seconds + " seconds. " +
                       describe_images(views);
    post([this, id, epoch, text = std::move(text)]() mutable {
      Session *s = find(id);
      if (!s || s->closing() || s->epoch != epoch || s->model != ModelState::Thinking)
        return;
      respond(*s, std::move(text));
    });
  });
}

void LiveServer::Impl::call_function(Session &s, const Capability &c, ojson args) {
  const std::string id = "function-call-" + random_string(19, "0123456789");
  ojson call = {{"name", c.name}, {"args", args}, {"id", id}};
  s.pending_calls[id] = PendingCall{c.name, std::move(args), &c};
  s.model = ModelState::AwaitingTool;
  send(s, {{"toolCall", {{"functionCalls", ojson::array({std::move(call)})}}}});
}

void LiveServer::Impl::respond(Session &s, std::string text, ojson grounding) {
  s.model = ModelState::Thinking;
  if (!s.setup.audio_out) {
    start_reply(s, std::move(text), {}, std::move(grounding));
    return;
  }
  SpeechWorkers::instance().synthesis.post([this, post = post, id = s.id, epoch = s.epoch,
                                            text = std::move(text),
                                            grounding = std::move(grounding)]() mutable {
    Pcm audio;
    std::string error;
    try {
      audio = resample_linear(synthesize_speech(text), kSpeechRate, kOutputRate);
    } catch (const std::exception &e) {
      error = e.what();
    }
    post([this, id, epoch, text = std::move(text), audio = std::move(audio),
          grounding = std::move(grounding), error = std::move(error)]() mutable {
      on_synthesized(id, epoch, std::move(text), std::move(audio), std::move(grounding),
                     std::move(error));
    });
  });
}

void LiveServer::Impl::respond_grounded(Session &s, const std::string &query) {
  SearchAnswer answer = search_and_answer(query, AnswerStyle::Spoken);
  if (!answer.found) {
    respond(s, std::move(answer.text));
    return;
  }
  respond(s, std::move(answer.text), std::move(answer.grounding_metadata));
}

void LiveServer::Impl::on_synthesized(std::uint64_t id, std::uint64_t epoch, std::string text,
                                      Pcm audio, ojson grounding, std::string error) {
  Session *s = find(id);
  if (!s || s->closing() || s->epoch != epoch || s->model != ModelState::Thinking)
    return;
  if (!error.empty()) {
    internal_error(*s, "speech synthesis failed: " + error);
  } else {
    start_reply(*s, std::move(text), std::move(audio), std::move(grounding));
  }
  touch(*s);
}

void LiveServer::Impl::start_reply(Session &s, std::string text, Pcm audio, ojson grounding) {
  s.model = ModelState::Speaking;
  s.reply_text = text;
  s.spoken.clear();
  s.chunks_sent = 0;
  s.drop_after_chunks = faults.take_drop_after_chunks();
  const auto start = Clock::now();

  std::vector<std::string> pieces; // the reply text split across the messages that carry it
  auto split_words = [&](std::size_t parts) {
    std::vector<std::string> words;
    for (std::size_t pos = 0; pos < text.size();) {
      const std::size_t next = text.find(' ', pos + 1);
      words.push_back(text.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
      pos = next == std::string::npos ? text.size() : next;
    }
    std::vector<std::string> out(parts);
    for (std::size_t w = 0; w < words.size(); ++w)
      out[std::min(parts - 1, w * parts / words.size())] += words[w];
    return out;
  };

  Clock::time_point end = start;
  int response_tokens = 0;
  if (s.setup.audio_out) {
    const std::size_t chunk_samples =
        std::size_t(kOutputRate) * std::size_t(kChunkDuration.count()) / 1000;
    const std::size_t chunks =
        std::max<std::size_t>(1, (audio.size() + chunk_samples - 1) / chunk_samples);
    pieces = split_words(chunks);
    for (std::size_t i = 0; i < chunks; ++i) {
      const auto due = start + kChunkDuration * std::max<long long>(0, (long long)i - kLeadChunks);
      const std::size_t begin = std::min(audio.size(), i * chunk_samples);
      const std::size_t stop = std::min(audio.size(), begin + chunk_samples);
      std::string bytes((stop - begin) * 2, '\0');
      for (std::size_t k = begin; k < stop; ++k) {
        const auto v = std::uint16_t(audio[k]);
        bytes[2 * (k - begin)] = char(v & 0xff);
        bytes[2 * (k - begin) + 1] = char(v >> 8);
      }
      ojson part = {{"inlineData", {{"mimeType", kOutputMime}, {"data", base64_encode(bytes)}}}};
      ojson message = {
          {"serverContent", {{"modelTurn", {{"parts", ojson::array({std::move(part)})}}}}}};
      s.playback.push_back({due, pretty_json(message) + "\n", true, pieces[i], false});
      if (s.setup.output_transcription && !pieces[i].empty()) {
        ojson transcript = {{"serverContent", {{"outputTranscription", {{"text", pieces[i]}}}}}};
        s.playback.push_back({due, pretty_json(transcript) + "\n", false, {}, false});
      }
    }
    const double seconds = double(audio.size()) / kOutputRate;
    end =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    response_tokens = int(std::lround(seconds * kAudioTokensPerSecond));
  } else {
    pieces = split_words(text.size() > 24 ? 2 : 1);
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      if (pieces[i].empty())
        continue;
      ojson message = {
          {"serverContent", {{"modelTurn", {{"parts", ojson::array({{{"text", pieces[i]}}})}}}}}};
      s.playback.push_back(
          {start + kTextPartSpacing * i, pretty_json(message) + "\n", true, pieces[i], false});
    }
    end = start + kTextPartSpacing * pieces.size();
    response_tokens = text_tokens(text);
  }
  const auto last_due = s.playback.empty() ? start : s.playback.back().due;
  if (!grounding.is_null()) {
    ojson message = {{"serverContent", {{"groundingMetadata", std::move(grounding)}}}};
    s.playback.push_back({last_due, pretty_json(message) + "\n", false, {}, false});
  }
  s.playback.push_back(
      {last_due,
       pretty_json(ojson{{"serverContent", {{"generationComplete", true}}}}) + "\n",
       false,
       {},
       false});
  ojson done = {{"serverContent", {{"turnComplete", true}}},
                {"usageMetadata", usage(s, response_tokens, s.setup.audio_out)}};
  s.playback.push_back({std::max(end, last_due), pretty_json(done) + "\n", false, {}, true});
  timer(s); // the lead chunks are due now
}

void LiveServer::Impl::emit(Session &s, Scheduled item) {
  send_raw(s, std::move(item.payload));
  s.spoken += item.spoken;
  if (item.chunk) {
    ++s.chunks_sent;
    if (s.drop_after_chunks && s.chunks_sent >= *s.drop_after_chunks) {
      s.abrupt = true;
      s.playback.clear();
      return;
    }
  }
  if (item.turn_complete)
    finish_model_turn(s, s.reply_text);
}

ojson LiveServer::Impl::usage(Session &s, int response_tokens, bool audio) {
  int text = text_tokens(s.setup.system_instruction);
  for (const auto &turn : s.history)
    text += text_tokens(turn.text);
  const int audio_in = int(std::lround(s.input_audio_seconds * kAudioTokensPerSecond));
  const int video_in = s.input_frames * kImageTokens;
  s.input_audio_seconds = 0;
  s.input_frames = 0;
  ojson prompt_details = ojson::array({{{"modality", "TEXT"}, {"tokenCount", text}}});
  if (audio_in > 0)
    prompt_details.push_back({{"modality", "AUDIO"}, {"tokenCount", audio_in}});
  if (video_in > 0)
    prompt_details.push_back({{"modality", "IMAGE"}, {"tokenCount", video_in}});
  const int prompt = text + audio_in + video_in;
  return {{"promptTokenCount", prompt},
          {"responseTokenCount", response_tokens},
          {"totalTokenCount", prompt + response_tokens},
          {"promptTokensDetails", std::move(prompt_details)},
          {"responseTokensDetails", ojson::array({{{"modality", audio ? "AUDIO" : "TEXT"},
                                                   {"tokenCount", response_tokens}}})}};
}

void LiveServer::Impl::finish_model_turn(Session &s, const std::string &text) {
  if (!text.empty())
    s.history.push_back({"model", text});
  ++s.turns;
  s.model = ModelState::Idle;
  s.playback.clear();
  s.reply_text.clear();
  s.spoken.clear();
  s.drop_after_chunks.reset();
  if (s.setup.resumption)
    resumption_update(s);
  if (!s.queued_turns.empty()) {
    const std::string next = std::move(s.queued_turns.front());
    s.queued_turns.pop_front();
    decide(s, next);
  }
}

void LiveServer::Impl::resumption_update(Session &s) {
  const auto now = Clock::now();
  for (auto it = handles.begin(); it != handles.end();)
    it = it->second.expires < now ? handles.erase(it) : std::next(it);
  if (handles.size() >= kMaxHandles) {
    auto oldest =
        std::min_element(handles.begin(), handles.end(), [](const auto &a, const auto &b) {
          return a.second.expires < b.second.expires;
        });
    handles.erase(oldest);
  }
  const std::string handle =
      random_string(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
  handles[handle] = Snapshot{s.history, s.turns, now + kHandleLifetime, s.audio_bytes};
  send(s, {{"sessionResumptionUpdate", {{"newHandle", handle}, {"resumable", true}}}});
}

void LiveServer::Impl::on_recognized(std::uint64_t id, std::uint64_t epoch, std::string text,
                                     std::string error) {
  Session *s = find(id);
  if (!s || s->closing())
    return;
  if (!error.empty()) {
    internal_error(*s, "speech recognition failed: " + error);
  } else if (!text.empty()) {
    if (s->setup.input_transcription)
      send(*s, {{"serverContent", {{"inputTranscription", {{"text", text}, {"finished", true}}}}}});
    if (s->epoch == epoch)
      user_turn(*s, std::move(text));
    else
      s->history.push_back({"user", std::move(text)}); // superseded by a newer turn
  }
  touch(*s);
}

void LiveServer::Impl::internal_error(Session &s, const std::string &what) {
  lwsl_err("local backend Live session %llu: %s\n", static_cast<unsigned long long>(s.id),
           what.c_str());
  close(s, 1011, kInternal);
}

// ---------------------------------------------------------------------------------------------
// LiveServer

LiveServer::LiveServer(LiveServerOptions options, LiveFaults &faults)
    : impl_(std::make_unique<Impl>(std::move(options), faults)) {}

LiveServer::~LiveServer() = default;

void LiveServer::attach(lws_context *context, Post post) {
  impl_->context = context;
  impl_->post = std::move(post);
}

void LiveServer::detach() {
  impl_->sessions.clear();
  impl_->session_count = 0;
  impl_->post = nullptr;
  impl_->context = nullptr;
}

bool LiveServer::is_live_path(std::string_view path) {
  while (!path.empty() && path.front() == '/')
    path.remove_prefix(1); // the JS SDK sends "//ws/..."
  static constexpr std::string_view kPrefix = "ws/google.ai.generativelanguage.";
  if (path.rfind(kPrefix, 0) != 0)
    return false;
  path.remove_prefix(kPrefix.size());
  const auto dot = path.find('.');
  const std::string_view version = path.substr(0, dot);
  if (dot == std::string_view::npos ||
      (version != "v1alpha" && version != "v1beta" && version != "v1"))
    return false;
  const std::string_view rest = path.substr(dot + 1);
  return rest == "GenerativeService.BidiGenerateContent" ||
         rest == "GenerativeService.BidiGenerateContentConstrained";
}

int LiveServer::callback(lws *wsi, lws_callback_reasons reason, std::uint64_t &slot, void *in,
                         std::size_t len) {
  Impl &impl = *impl_;
  switch (reason) {
  case LWS_CALLBACK_ESTABLISHED: slot = impl.open(wsi); return 0;
  case LWS_CALLBACK_RECEIVE:
    if (Session *s = impl.find(slot)) {
      impl.receive(*s, static_cast<const char *>(in), len);
      impl.touch(*s);
      return 0;
    }
    return -1;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    if (Session *s = impl.find(slot))
      return impl.writeable(*s);
    return -1;
  case LWS_CALLBACK_TIMER:
    if (Session *s = impl.find(slot)) {
      impl.timer(*s);
      impl.touch(*s);
    }
    return 0;
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    // A close frame without a status code is answered with 1000 (LiveKit and others treat any
    // other code as fatal); lws echoes a status the client did send.
    if (len < 2) {
      lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, nullptr, 0);
      return -1;
    }
    return 0;
  case LWS_CALLBACK_CLOSED:
    if (Session *s = impl.find(slot))
      impl.update_audio_count(*s, [](AudioCount &c) { c.open = false; });
    impl.sessions.erase(slot);
    impl.session_count = impl.sessions.size();
    slot = 0;
    return 0;
  default: return 0;
  }
}

void LiveServer::close_sessions(const CloseSpec &close) {
  for (auto &[id, s] : impl_->sessions) {
    if (close.code == 1006 && !s->closing()) {
      s->outbox.clear();
      s->playback.clear();
      s->abrupt = true;
    } else {
      impl_->close(*s, close.code, close.reason);
    }
    impl_->touch(*s);
  }
}

void LiveServer::reschedule_go_away() {
  const auto after = impl_->faults.go_away().first;
  for (auto &[id, s] : impl_->sessions) {
    if (s->go_away_at) {
      s->go_away_at = s->opened + after;
      impl_->touch(*s);
    }
  }
}

std::size_t LiveServer::session_count() const {
  return impl_->session_count.load();
}

std::vector<AudioCount> LiveServer::audio_counts() const {
  std::lock_guard lock(impl_->audio_mutex);
  return {impl_->audio_counts.begin(), impl_->audio_counts.end()};
}

} // namespace gemstream::backend
