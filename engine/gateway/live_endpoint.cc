#include "live_endpoint.h"

#include "codec.h" // base64_decode, s16le_bytes, s16le_samples
#include "job_runner.h"

#include "gemstream/error.h"
#include "gemstream/grounding.h"
#include "gemstream/live.h"

#include <opus.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <condition_variable>
#include <deque>
#include <set>
#include <thread>

namespace gemstream::gateway {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr int kOutputRate = 24000; // every current Live model speaks at 24 kHz
constexpr int kOutputFrameMs = 20;
constexpr int kOpusInputRate = 16000; // Opus input is decoded at the service's native rate
constexpr int kMaxOpusFrameSamples = kOpusInputRate * 120 / 1000; // the longest Opus packet
constexpr int kMaxBadPackets = 25; // consecutive undecodable packets before giving up
constexpr std::size_t kMaxJpegBytes = 700 * 1024;
// Each of these starts work upstream (a paid model turn, an image to process), so a client
// cannot send them faster: typed turns (more often is refused), webcam frames and audio_end
// (more often are dropped; the model gets about one frame a second anyway).
constexpr auto kMinTextInterval = std::chrono::milliseconds(250);
constexpr auto kMinFrameInterval = std::chrono::milliseconds(200);
constexpr auto kMinAudioEndInterval = std::chrono::milliseconds(100);
// A conversation may start when a minute of it fits in the budget: 25 audio tokens a second
// each way (the Live API's audio tokenisation).
constexpr std::int64_t kMinuteOfAudioTokens = 60 * 25;

struct DecoderDeleter {
  void operator()(OpusDecoder *d) const noexcept { opus_decoder_destroy(d); }
};
struct EncoderDeleter {
  void operator()(OpusEncoder *e) const noexcept { opus_encoder_destroy(e); }
};

// A client mistake in the query or a message: the socket is closed with `code`.
struct Refusal {
  int code;
  std::string reason;
  std::string message;
};

std::string dump(const json &j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string query_value(const WsSession &s, std::string_view name, std::string fallback) {
  for (const auto &[k, v] : s.query)
    if (k == name)
      return v;
  return fallback;
}

bool is_voice_name(std::string_view v) {
  return !v.empty() && v.size() <= 40 && std::all_of(v.begin(), v.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

} // namespace

// One browser conversation: a WebSocket on one side, a LiveSession on the other.
struct LiveEndpoint::Conversation : std::enable_shared_from_this<Conversation> {
  Conversation(Server &server, const WsSession &ws) : server(server), ws(ws.id), user(ws.user) {}

  void send(const json &message) const { server.send_ws(ws, dump(message)); }
  void fail(int code, const std::string &reason, const std::string &message) {
    if (failed.exchange(true))
      return;
    send({{"type", "error"}, {"reason", reason}, {"message", message}});
    server.close_ws(ws, code, message);
    // The model stops now, not when the socket has finished closing (up to 5 s).
    if (stop_upstream)
      stop_upstream();
  }

  Server &server;
  const std::uint64_t ws;
  const std::string user;
  std::atomic<bool> failed{false};
  std::function<void()> stop_upstream; // set before the session starts; posts to the worker

  // Input: the server's service thread only.
  bool input_opus = true;
  int input_rate = kOpusInputRate;
  std::unique_ptr<OpusDecoder, DecoderDeleter> decoder;
  std::vector<std::int16_t> decoded;
  int bad_packets = 0;
  std::optional<unsigned char> odd_byte; // PCM: a sample split across two messages

  // Output: the LiveSession's network thread only.
  bool output_opus = true;
  std::unique_ptr<OpusEncoder, EncoderDeleter> encoder;
  int encoder_rate = 0;
  std::vector<std::int16_t> pending; // less than one Opus frame
  std::vector<unsigned char> packet;
  bool announced = false;
  std::int64_t input_tokens = 0;
  std::int64_t output_tokens = 0;
  std::atomic<std::int64_t> cost_nanos{0}; // the tokens so far, priced
  std::atomic<bool> budget_check_queued{false};

  std::string model;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // Client messages that start work upstream, for their rate limits (service thread only).
  std::chrono::steady_clock::time_point last_text{}, last_frame{}, last_audio_end{};

  // Guards `bridge` (the worker takes it away while job_event() may use it) and `jobs`.
  std::mutex mutex;
  std::unique_ptr<LiveToolBridge> bridge;
  std::set<std::string> jobs; // the gateway jobs this conversation queued
  // Declared after `bridge`, so it is destroyed first: the session's callbacks use the bridge.
  std::shared_ptr<LiveSession> session;

  void encode_output(const std::int16_t *pcm, std::size_t samples, int rate);
  void flush_output();
};

void LiveEndpoint::Conversation::encode_output(const std::int16_t *pcm, std::size_t samples,
                                               int rate) {
  if (!output_opus) {
    server.send_ws(ws, codec::s16le_bytes(pcm, samples), true);
    return;
  }
  if (rate != encoder_rate) {
    // Opus packets decode at any rate, so a different model rate needs only a new encoder.
    flush_output();
    int err = OPUS_OK;
    encoder.reset(opus_encoder_create(rate, 1, OPUS_APPLICATION_VOIP, &err));
    if (err != OPUS_OK || !encoder) {
      fail(1011, "upstream_audio",
           "the model's audio (" + std::to_string(rate) + " Hz) cannot be encoded as Opus");
      return;
    }
    opus_encoder_ctl(encoder.get(), OPUS_SET_BITRATE(32000));
    opus_encoder_ctl(encoder.get(), OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE));
    // Complexity 5 rather than the default 10: the gateway's CPU per second of audio fell from
    // about 12 to 9.5 ms in bench_gateway_live, and 32 kbit/s speech sounds the same.
    opus_encoder_ctl(encoder.get(), OPUS_SET_COMPLEXITY(5));
    encoder_rate = rate;
    packet.resize(4000); // the largest packet libopus recommends allowing for
  }
  const std::size_t frame = std::size_t(encoder_rate) * kOutputFrameMs / 1000;
  pending.insert(pending.end(), pcm, pcm + samples);
  std::size_t at = 0;
  for (; pending.size() - at >= frame; at += frame) {
    const opus_int32 n = opus_encode(encoder.get(), pending.data() + at, int(frame),
                                     packet.data(), opus_int32(packet.size()));
    if (n < 0) {
      fail(1011, "upstream_audio", std::string("Opus encoding failed: ") + opus_strerror(n));
      return;
    }
    server.send_ws(ws, std::string(reinterpret_cast<const char *>(packet.data()), std::size_t(n)),
                   true);
  }
  pending.erase(pending.begin(), pending.begin() + std::ptrdiff_t(at));
}

void LiveEndpoint::Conversation::flush_output() {
  if (!encoder || pending.empty())
    return;
  const std::size_t frame = std::size_t(encoder_rate) * kOutputFrameMs / 1000;
  pending.resize(frame, 0); // the turn's last words, padded with silence
  std::vector<std::int16_t> last;
  last.swap(pending);
  encode_output(last.data(), last.size(), encoder_rate);
}

// ---------------------------------------------------------------------------------------------

struct LiveEndpoint::Impl {
  Impl(Server &s, LiveEndpointOptions o)
      : server(s), options(std::move(o)),
        capabilities(CapabilitySet::load_default(options.media)) {
    worker = std::thread([this] { run_worker(); });
  }

  void log(const std::string &line) const {
    if (options.log)
      options.log(line);
  }
  // Runs `task` on the endpoint's worker thread, where waiting is allowed.
  void post(std::function<void()> task) {
    std::lock_guard lock(mutex);
    tasks.push_back(std::move(task));
    worker_cv.notify_one();
  }
  void retire(std::shared_ptr<Conversation> conversation) {
    post([this, c = std::move(conversation)] { finish(*c); });
  }
  // Ends the conversation (1008, budget_exceeded) and answers false when `nanos` more (plus what
  // the user's other open conversations have cost) would exceed the user's budget. On the
  // worker.
  bool check_spending(const std::shared_ptr<Conversation> &c, std::int64_t nanos,
                      const std::string &what);
  void connect(const std::shared_ptr<Conversation> &c);
  void run_worker();
  void finish(Conversation &c);
  LiveCallbacks callbacks(Conversation *c);
  void open(const WsSession &ws);

  Server &server;
  LiveEndpointOptions options;
  CapabilitySet capabilities;

  mutable std::mutex mutex;
  std::map<std::uint64_t, std::shared_ptr<Conversation>> conversations;
  // The worker: closes conversations (which waits for the service) and checks budgets (which
  // reads the ledger and the job store), off the server's and the sessions' network threads.
  std::deque<std::function<void()>> tasks;
  std::condition_variable worker_cv;
  std::condition_variable idle_cv; // no task queued or running
  bool busy = false;
  bool stopping = false;
  std::thread worker;
};

void LiveEndpoint::Impl::run_worker() {
  std::unique_lock lock(mutex);
  for (;;) {
    worker_cv.wait(lock, [this] { return stopping || !tasks.empty(); });
    if (tasks.empty())
      return;
    auto task = std::move(tasks.front());
    tasks.pop_front();
    busy = true;
    lock.unlock();
    try {
      task();
    } catch (const std::exception &e) { // the worker serves every conversation: it goes on
      log(std::string("live sessions: ") + e.what());
    }
    task = nullptr; // what it holds (a conversation) goes here, unlocked
    lock.lock();
    busy = false;
    if (tasks.empty())
      idle_cv.notify_all();
  }
}

bool LiveEndpoint::Impl::check_spending(const std::shared_ptr<Conversation> &c,
                                        std::int64_t nanos, const std::string &what) {
  if (c->failed)
    return false;
  // The user's other open conversations have spent too, and none of it is in the ledger yet.
  std::int64_t others = 0;
  {
    std::lock_guard lock(mutex);
    for (const auto &[id, other] : conversations)
      if (other != c && other->user == c->user)
        others += other->cost_nanos;
  }
  if (nanos + others <= 0)
    return true;
  try {
    options.check_budget(c->user, nanos + others,
                         others > 0 ? what + " and your other live conversations" : what);
    return true;
  } catch (const Error &e) {
    if (e.kind() == ErrorKind::BudgetExceeded) {
      log("live session of " + c->user + " stopped: " + e.message());
      c->fail(1008, "budget_exceeded", e.message());
      return false;
    }
    // The ledger or the job store cannot be read: the conversation goes on, as it would
    // without a budget.
    log("live session of " + c->user + ": cannot check the budget: " + e.what());
  } catch (const std::exception &e) {
    log("live session of " + c->user + ": cannot check the budget: " + e.what());
  }
  return true;
}

void LiveEndpoint::Impl::connect(const std::shared_ptr<Conversation> &c) {
  if (c->failed)
    return;
  try {
    c->session->connect();
  } catch (const std::exception &e) {
    log("live session of " + c->user + " could not start: " + e.what());
    c->fail(1011, "upstream_error", std::string("the live session could not start: ") + e.what());
  }
}

// Closes the Live session (waiting for the service), stops the tools and records the cost.
void LiveEndpoint::Impl::finish(Conversation &c) {
  // The browser has gone: input not sent yet is worth nothing, so the close does not drain it
  // (at most about 150 ms, which keeps the worker free for the others). No session callback
  // (they read c.bridge unlocked) runs after this.
  if (c.session)
    c.session->close(std::chrono::milliseconds(0));
  std::unique_ptr<LiveToolBridge> bridge;
  {
    std::lock_guard lock(c.mutex);
    bridge = std::move(c.bridge);
  }
  bridge.reset(); // cancels a card image still being made, and waits for it
  const auto seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - c.started).count();
  if (options.ledger && options.media && (c.input_tokens > 0 || c.output_tokens > 0)) {
    TokenUsage tokens;
    tokens.input_tokens = c.input_tokens;
    tokens.output_tokens = c.output_tokens;
    CostEntry cost = price_live(*options.media, c.model, tokens);
    cost.user = c.user;
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.0f s", seconds);
    cost.note = "gateway live session, " + std::string(buf) + "; " + cost.note;
    try {
      options.ledger->record(cost);
    } catch (const std::exception &e) {
      log("live session of " + c.user + ": cannot record its cost: " + e.what());
    }
  }
}

LiveCallbacks LiveEndpoint::Impl::callbacks(Conversation *c) {
  // Each callback runs on the session's network thread; `c` outlives them (finish()).
  LiveCallbacks cb;
  cb.on_setup_complete = [c](const std::string &session_id) {
    if (c->announced) {
      c->send({{"type", "state"}, {"state", "ready"}});
      return;
    }
    c->announced = true;
    json input = {{"encoding", c->input_opus ? "opus" : "pcm"}};
    if (!c->input_opus)
      input["sampleRate"] = c->input_rate;
    c->send({{"type", "ready"},
             {"sessionId", session_id},
             {"input", input},
             {"output",
              {{"encoding", c->output_opus ? "opus" : "pcm"},
               {"sampleRate", kOutputRate},
               {"channels", 1},
               {"frameDurationMs", kOutputFrameMs}}}});
  };
  cb.on_state = [c](LiveState state) {
    if (state == LiveState::Reconnecting)
      c->send({{"type", "state"}, {"state", "reconnecting"}});
  };
  cb.on_audio = [c](std::vector<std::int16_t> pcm, int rate) {
    if (auto *b = c->bridge.get())
      b->model_output();
    c->encode_output(pcm.data(), pcm.size(), rate);
  };
  auto transcript = [c](const char *role) {
    return [c, role](const std::string &text, bool finished) {
      if (role[0] == 'm')
        if (auto *b = c->bridge.get())
          b->model_output();
      c->send({{"type", "transcript"}, {"role", role}, {"text", text}, {"finished", finished}});
    };
  };
  cb.on_input_transcription = transcript("user");
  cb.on_output_transcription = transcript("model");
  cb.on_interrupted = [c] {
    c->pending.clear();
    c->send({{"type", "interrupted"}});
  };
  cb.on_turn_complete = [c](const std::string &) {
    c->flush_output();
    c->send({{"type", "turn_complete"}});
    if (auto *b = c->bridge.get())
      b->model_turn_complete();
  };
  cb.on_tool_call = [c](const std::vector<LiveFunctionCall> &calls) {
    auto *b = c->bridge.get();
    if (!b)
      return;
    b->model_output();
    std::vector<LiveFunctionResponse> unknown;
    for (const auto &call : b->handle(calls))
      unknown.push_back(
          {call.id, call.name, json{{"error", "there is no function called " + call.name}}.dump()});
    if (!unknown.empty())
      c->session->send_tool_response(unknown);
  };
  cb.on_tool_call_cancellation = [c](const std::vector<std::string> &ids) {
    if (auto *b = c->bridge.get())
      b->cancel(ids);
  };
  cb.on_grounding = [c](const std::string &metadata) {
    json sources = json::array();
    for (const auto &s : parse_grounding_metadata(metadata).sources)
      if (!s.uri.empty())
        sources.push_back({{"title", s.title}, {"uri", s.uri}});
    if (!sources.empty())
      c->send({{"type", "grounding"}, {"sources", std::move(sources)}});
  };
  cb.on_usage = [this, c](const LiveUsage &usage) {
    const TokenUsage t = token_usage(usage);
    c->input_tokens += t.input_tokens;
    c->output_tokens += t.output_tokens;
    if (!options.media || !options.check_budget)
      return;
    TokenUsage total;
    total.input_tokens = c->input_tokens;
    total.output_tokens = c->output_tokens;
    c->cost_nanos = price_live(*options.media, c->model, total).usd_nanos;
    if (!c->budget_check_queued.exchange(true)) {
      std::weak_ptr<Conversation> weak = c->weak_from_this();
      post([this, weak] {
        if (auto conversation = weak.lock()) {
          conversation->budget_check_queued = false;
          check_spending(conversation, conversation->cost_nanos, "this live conversation so far");
        }
      });
    }
  };
  cb.on_error = [this, c](const Error &e) {
    log("live session of " + c->user + " failed: " + e.what());
    c->fail(1011, "upstream_error", "the Gemini Live session failed: " + e.message());
  };
  return cb;
}

void LiveEndpoint::Impl::open(const WsSession &ws) {
  auto c = std::make_shared<Conversation>(server, ws);

  const std::string input = query_value(ws, "input", "opus");
  if (input != "opus" && input != "pcm")
    throw Refusal{1008, "invalid_argument", "input must be opus or pcm"};
  c->input_opus = input == "opus";
  if (!c->input_opus) {
    const std::string rate = query_value(ws, "rate", "16000");
    int r = 0;
    const auto [end, ec] = std::from_chars(rate.data(), rate.data() + rate.size(), r);
    if (ec != std::errc() || end != rate.data() + rate.size() || r < 8000 || r > 48000)
      throw Refusal{1008, "invalid_argument", "rate must be a sample rate from 8000 to 48000"};
    c->input_rate = r;
  }
  const std::string output = query_value(ws, "output", "opus");
  if (output != "opus" && output != "pcm")
    throw Refusal{1008, "invalid_argument", "output must be opus or pcm"};
  c->output_opus = output == "opus";
  const std::string voice = query_value(ws, "voice", "");
  if (!voice.empty() && !is_voice_name(voice))
    throw Refusal{1008, "invalid_argument", "voice must be a prebuilt voice name such as Puck"};

  {
    std::lock_guard lock(mutex);
    if (conversations.size() >= options.max_sessions)
      throw Refusal{1013, "too_many_sessions",
                    "the gateway is at its limit of " + std::to_string(options.max_sessions) +
                        " live sessions; retry later"};
    const auto mine = std::count_if(conversations.begin(), conversations.end(),
                                    [&](const auto &e) { return e.second->user == ws.user; });
    if (std::size_t(mine) >= options.max_sessions_per_user)
      throw Refusal{1013, "too_many_sessions",
                    "you have " + std::to_string(mine) +
                        " live sessions open, the most allowed; close one first"};
    // Inserted only once it is complete (below): close_all() may run meanwhile. Only this
    // thread opens conversations, so the limits cannot be overrun in between.
  }
  try {
    if (c->input_opus) {
      int err = OPUS_OK;
      c->decoder.reset(opus_decoder_create(kOpusInputRate, 1, &err));
      if (err != OPUS_OK)
        throw Error(ErrorKind::Internal, std::string("Opus decoder: ") + opus_strerror(err));
      c->decoded.resize(kMaxOpusFrameSamples);
    }

    LiveConfig config;
    if (!options.model.empty())
      config.model = options.model;
    c->model = config.model;
    config.system_instruction = options.system_instruction;
    config.voice_name = voice;
    config.input_transcription = true;
    config.output_transcription = true;
    config.input_sample_rate = c->input_rate;

    CapabilityRunnerOptions run;
    run.endpoint = options.endpoint;
    run.client = options.client;
    run.covers_dir = options.media_dir / "covers" / ws.user;
    run.user = ws.user;
    if (options.enqueue_video) {
      std::weak_ptr<Conversation> weak = c;
      run.submit_video = [this, weak, user = ws.user](const std::string &description,
                                                      const std::string &mood,
                                                      const std::string &model_key) {
        return options.enqueue_video(user, description, mood, model_key,
                                     [&](const std::string &id) {
          if (auto conv = weak.lock()) {
            std::lock_guard lock(conv->mutex);
            conv->jobs.insert(id);
          }
        });
      };
    }
    c->stop_upstream = [this, weak = std::weak_ptr<Conversation>(c)] {
      post([weak] {
        if (auto conversation = weak.lock(); conversation && conversation->session)
          conversation->session->close(std::chrono::milliseconds(0));
      });
    };
    Conversation *raw = c.get();
    const fs::path media_dir = options.media_dir;
    auto bridge = std::make_unique<LiveToolBridge>(
        capabilities, *options.media, options.ledger, std::move(run),
        [raw, media_dir](const CapabilityEvent &e) {
          json m = {{"type", "capability"},
                    {"event", to_string(e.type)},
                    {"capability", e.capability},
                    {"message", e.message}};
          if (!e.job_id.empty())
            m["jobId"] = e.job_id;
          if (!e.artefact.empty())
            m["url"] = media_url(media_dir, e.artefact);
          if (e.usd > 0)
            m["usd"] = e.usd;
          raw->send(m);
        });
    bridge->declare(config);
    c->session = std::make_shared<LiveSession>(options.endpoint, std::move(config), callbacks(raw));
    bridge->attach(c->session);
    c->bridge = std::move(bridge);
  } catch (...) {
    retire(std::move(c));
    throw;
  }
  {
    std::lock_guard lock(mutex);
    conversations[ws.id] = c;
  }
  if (!options.check_budget || !options.media) {
    connect(c);
    return;
  }
  // The upstream session starts once a minute of conversation fits in the budget. The check
  // reads the ledger and the job store, so it runs on the worker; input sent meanwhile is
  // queued by the session.
  TokenUsage minute;
  minute.input_tokens = kMinuteOfAudioTokens;
  minute.output_tokens = kMinuteOfAudioTokens;
  const std::int64_t nanos = price_live(*options.media, c->model, minute).usd_nanos;
  std::weak_ptr<Conversation> weak = c;
  post([this, weak, nanos] {
    if (auto conversation = weak.lock())
      if (check_spending(conversation, nanos, "a minute of live conversation"))
        connect(conversation);
  });
}

// ---------------------------------------------------------------------------------------------

LiveEndpoint::LiveEndpoint(Server &server, LiveEndpointOptions options)
    : impl_(std::make_unique<Impl>(server, std::move(options))) {}

LiveEndpoint::~LiveEndpoint() {
  close_all();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    impl_->worker_cv.notify_one();
  }
  impl_->worker.join();
}

void LiveEndpoint::close_all() {
  std::unique_lock lock(impl_->mutex);
  for (auto &[id, c] : impl_->conversations) {
    impl_->server.close_ws(c->ws, 1001, "the gateway is shutting down");
    impl_->tasks.push_back([impl = impl_.get(), c = c] { impl->finish(*c); });
  }
  impl_->conversations.clear();
  impl_->worker_cv.notify_one();
  impl_->idle_cv.wait(lock, [this] { return impl_->tasks.empty() && !impl_->busy; });
}

std::size_t LiveEndpoint::active() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->conversations.size();
}

void LiveEndpoint::on_open(const WsSession &session) {
  try {
    impl_->open(session);
  } catch (const Refusal &r) {
    impl_->server.send_ws(session.id,
                          dump({{"type", "error"}, {"reason", r.reason}, {"message", r.message}}));
    impl_->server.close_ws(session.id, r.code, r.message);
  } catch (const std::exception &e) {
    impl_->log("live session of " + session.user + " could not start: " + e.what());
    impl_->server.send_ws(
        session.id,
        dump({{"type", "error"},
              {"reason", "upstream_error"},
              {"message", std::string("the live session could not start: ") + e.what()}}));
    impl_->server.close_ws(session.id, 1011, "the live session could not start");
  }
}

void LiveEndpoint::on_message(const WsSession &session, std::string_view data, bool binary) {
  std::shared_ptr<Conversation> c;
  {
    std::lock_guard lock(impl_->mutex);
    const auto it = impl_->conversations.find(session.id);
    if (it == impl_->conversations.end())
      return;
    c = it->second;
  }
  if (c->failed)
    return;
  if (binary) {
    if (c->input_opus) {
      if (data.empty())
        return; // libopus would conceal a lost packet: 120 ms of made-up audio
      const int n = opus_decode(c->decoder.get(), reinterpret_cast<const unsigned char *>(data.data()),
                                opus_int32(data.size()), c->decoded.data(),
                                int(c->decoded.size()), 0);
      if (n < 0) {
        if (++c->bad_packets >= kMaxBadPackets)
          c->fail(1003, "invalid_audio",
                  "the binary messages are not Opus packets (" + std::string(opus_strerror(n)) +
                      "); send raw Opus packets, or connect with input=pcm for S16LE PCM");
        return;
      }
      c->bad_packets = 0;
      c->session->send_audio(c->decoded.data(), std::size_t(n));
      return;
    }
    std::string bytes;
    if (c->odd_byte) {
      bytes.push_back(char(*c->odd_byte));
      c->odd_byte.reset();
    }
    bytes.append(data);
    if (bytes.size() % 2) {
      c->odd_byte = static_cast<unsigned char>(bytes.back());
      bytes.pop_back();
    }
    const std::vector<std::int16_t> pcm = codec::s16le_samples(bytes);
    c->session->send_audio(pcm.data(), pcm.size());
    return;
  }

  const json message = json::parse(data, nullptr, /*allow_exceptions=*/false);
  const std::string type =
      message.is_object() && message.contains("type") && message["type"].is_string()
          ? message["type"].get<std::string>()
          : std::string();
  auto text_field = [&](const char *name) -> std::string {
    const auto it = message.find(name);
    return it != message.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (type == "ping") {
    c->send({{"type", "pong"}});
  } else if (type == "audio_end") {
    const auto now = std::chrono::steady_clock::now();
    if (now - c->last_audio_end < kMinAudioEndInterval)
      return;
    c->last_audio_end = now;
    c->session->audio_stream_end();
  } else if (type == "text") {
    const std::string text = text_field("text");
    if (text.empty() || text.size() > 8000) {
      c->fail(1003, "invalid_message", "a text message needs \"text\" of 1 to 8000 characters");
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - c->last_text < kMinTextInterval) {
      c->fail(1008, "rate_limited", "typed turns may come at most every 250 ms");
      return;
    }
    c->last_text = now;
    c->session->send_client_content({LiveTurn{"user", text}}, true);
  } else if (type == "video_frame") {
    const auto now = std::chrono::steady_clock::now();
    if (now - c->last_frame < kMinFrameInterval)
      return; // not even decoded
    c->last_frame = now;
    if (text_field("mimeType") != "image/jpeg") {
      c->fail(1003, "invalid_message", "video_frame needs \"mimeType\":\"image/jpeg\"");
      return;
    }
    std::string jpeg;
    try {
      jpeg = codec::base64_decode(text_field("data"));
    } catch (const Error &) {
      c->fail(1003, "invalid_message", "video_frame \"data\" is not base64");
      return;
    }
    if (jpeg.size() < 4 || static_cast<unsigned char>(jpeg[0]) != 0xFF ||
        static_cast<unsigned char>(jpeg[1]) != 0xD8) {
      c->fail(1003, "invalid_message", "video_frame \"data\" is not a JPEG image");
      return;
    }
    if (jpeg.size() > kMaxJpegBytes) {
      c->fail(1009, "too_large",
              "a video frame may be at most " + std::to_string(kMaxJpegBytes / 1024) +
                  " KiB; send smaller frames (640 px wide is plenty)");
      return;
    }
    c->session->send_video_jpeg(jpeg);
  } else {
    c->fail(1003, "invalid_message",
            message.is_discarded() ? "a text message is not valid JSON"
                                   : "unknown message type \"" + type +
                                         "\" (known: text, video_frame, audio_end, ping)");
  }
}

void LiveEndpoint::on_close(const WsSession &session) {
  std::shared_ptr<Conversation> c;
  {
    std::lock_guard lock(impl_->mutex);
    const auto it = impl_->conversations.find(session.id);
    if (it == impl_->conversations.end())
      return;
    c = std::move(it->second);
    impl_->conversations.erase(it);
  }
  impl_->retire(std::move(c));
}

void LiveEndpoint::job_event(const std::string &user, const json &event) {
  const std::string job_id = event.value("jobId", "");
  const std::string type = event.value("type", "");
  if (job_id.empty())
    return;
  std::vector<std::shared_ptr<Conversation>> mine;
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto &[id, c] : impl_->conversations)
      if (c->user == user)
        mine.push_back(c);
  }
  for (const auto &c : mine) {
    std::lock_guard lock(c->mutex);
    if (!c->bridge || !c->jobs.contains(job_id))
      continue;
    CapabilityEvent e;
    e.job_id = job_id;
    e.capability = "generate_background_video";
    const Capability *cap = impl_->capabilities.find(e.capability);
    if (type == "video_generation_complete") {
      e.type = CapabilityEvent::Type::Finished;
      const std::string description = event.value("description", "");
      const double usd = event.contains("cost") ? event["cost"].value("usd", 0.0) : 0.0;
      e.usd = usd;
      e.message =
          cap ? fill_capability_template(
                    cap->finished_template.empty() ? cap->done_template : cap->finished_template,
                    json{{"description", description}}.dump(), {{"cost", format_usd(usd)}})
              : "The background video of " + description + " is ready.";
    } else if (type == "video_generation_failed") {
      e.type = CapabilityEvent::Type::Failed;
      e.message = "the background video failed: " + event.value("reason", "");
    } else {
      continue;
    }
    c->jobs.erase(job_id);
    json m = {{"type", "capability"},
              {"event", to_string(e.type)},
              {"capability", e.capability},
              {"message", e.message},
              {"jobId", job_id}};
    if (event.contains("urls"))
      m["urls"] = event["urls"];
    c->send(m);
    c->bridge->report_job(e);
  }
}

} // namespace gemstream::gateway
