// The local backend's Live API: BidiGenerateContent sessions over WebSocket, served by the
// backend's libwebsockets context on the same port as REST. A stand-in model listens with an
// energy VAD and pocketsphinx, answers with flite speech paced in real time, calls the functions
// of config/agent_capabilities.json, grounds answers in the backend's search corpus
// (search_corpus.h), honours session resumption and goAway, and injects faults on demand.
//
// Threading contract:
// - LiveServer::callback and every task handed to the Post function run on the backend's service
//   thread; all session state lives there and needs no lock.
// - Recognition and synthesis run on process-wide speech worker threads; their results come back
//   through Post and are dropped if the session has gone or moved on (epoch check).
// - LiveFaults and the audio counts are the only state shared with other threads; each has its
//   own mutex.
#pragma once

#include <libwebsockets.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gemstream::backend {

struct CloseSpec {
  int code = 1000;
  std::string reason;
};

enum class MalformedKind { InvalidJson, WrongTypes };

// Scripted faults and goAway timing, set from any thread, consumed on the service thread.
class LiveFaults {
public:
  LiveFaults(std::chrono::milliseconds go_away_after, std::chrono::milliseconds go_away_time_left);

  void drop_after_chunks(int chunks);
  void send_malformed(MalformedKind kind);
  void fail_next_setup(CloseSpec close);
  void set_go_away(std::chrono::milliseconds after, std::chrono::milliseconds time_left);
  void reset(); // clears faults; goAway timing back to the constructor's

  std::optional<int> take_drop_after_chunks();
  std::optional<MalformedKind> take_malformed();
  std::optional<CloseSpec> take_failed_setup();
  std::pair<std::chrono::milliseconds, std::chrono::milliseconds> go_away() const;

  // {"drop_after_chunks","malformed","fail_next_setup","go_away_after_ms","go_away_time_left_ms"}
  nlohmann::json to_json() const;
  // Applies the admin endpoint's "live" object (see local_backend.cc). Returns a close request
  // for the open sessions when it has "close_sessions". Throws std::invalid_argument.
  std::optional<CloseSpec> apply(const nlohmann::json &request);

private:
  mutable std::mutex mutex_;
  const std::chrono::milliseconds default_after_;
  const std::chrono::milliseconds default_time_left_;
  std::optional<int> drop_after_chunks_;
  std::optional<MalformedKind> malformed_;
  std::optional<CloseSpec> failed_setup_;
  std::chrono::milliseconds go_away_after_;
  std::chrono::milliseconds go_away_time_left_;
};

// Input audio of one Live connection (see LiveServer::audio_counts()).
struct AudioCount {
  std::uint64_t received_bytes = 0; // realtimeInput audio, decoded, before any resampling
  std::uint64_t resumed_bytes = 0;  // carried in by the resumption handle of its setup
  bool open = true;
};

struct LiveServerOptions {
  std::string required_api_key; // empty: any key or none
  // Capabilities the stand-in model may call; a missing file means none.
  std::filesystem::path capabilities_file;
};

class LiveServer {
public:
  // Runs a task on the service thread; callable from any thread, drops the task once stopped.
  using Post = std::function<void(std::function<void()>)>;

  // Loads the capabilities file. Throws std::runtime_error if it exists but is invalid.
  LiveServer(LiveServerOptions options, LiveFaults &faults);
  ~LiveServer();
  LiveServer(const LiveServer &) = delete;
  LiveServer &operator=(const LiveServer &) = delete;

  // Service thread, or while no service thread runs.
  void attach(lws_context *context, Post post);
  void detach(); // forgets every session (their sockets die with the context)

  // Whether an upgrade request for `path` is a Live API endpoint.
  static bool is_live_path(std::string_view path);

  // The lws protocol callback for Live connections. `slot` is the connection's per-session
  // storage for the session id (0 = none yet).
  int callback(lws *wsi, lws_callback_reasons reason, std::uint64_t &slot, void *in,
               std::size_t len);

  // Service thread. Code 1006, which no close frame may carry, drops the connections without
  // one, as a network failure does.
  void close_sessions(const CloseSpec &close);
  void reschedule_go_away(); // after LiveFaults::set_go_away, for connections still waiting

  // Any thread.
  std::size_t session_count() const;
  // The latest connections (at most kAudioCountsKept), oldest first.
  std::vector<AudioCount> audio_counts() const;
  static constexpr std::size_t kAudioCountsKept = 256;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream::backend
