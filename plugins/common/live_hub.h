// Pairing of a geminilivesink with a geminilivesrc: a process-wide registry of LiveHubs keyed by
// the elements' `session` property. The sink owns the Live session; the hub forwards what the
// src needs (model speech, barge-in, end of the conversation) from the session's network thread
// to the src. The two elements may live in the same pipeline or in different ones, and either
// may start first.
//
// Lifetime: each element holds a shared_ptr to its hub from READY→PAUSED to PAUSED→READY; the
// registry holds weak references only, so a hub disappears with its last element. The hub never
// holds a reference to an element: the src registers a listener object (owned by the src and
// shared with the hub while attached), and the sink identifies itself by a generation number.
//
// Threading and lock order:
// - registry mutex: taken alone (acquire() and ~LiveHub()).
// - Slot::dispatch (one per attached listener) → LiveHub::mutex_ → nothing. Every call into a
//   listener is made with its slot's dispatch mutex held and the hub mutex NOT held, so calls
//   into one listener never overlap, and detach_listener() returns only once no call is running
//   and none will start. Listener methods may push events downstream (FLUSH_START) but must not
//   call back into the hub.
// - Events tagged with a sink generation other than the current one are dropped: a stale
//   callback of a session that was replaced never reaches the src.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace gemstream::gst {

// What a geminilivesrc receives from the session of its paired sink. Calls never overlap for one
// listener and never follow LiveHub::detach_listener().
class LiveAudioListener {
public:
  virtual ~LiveAudioListener() = default;
  // Model speech, S16 mono at `sample_rate`, in arrival order. Network thread.
  virtual void on_model_audio(std::vector<std::int16_t> pcm, int sample_rate) = 0;
  // The user barged in: drop the queued model speech and flush downstream at once.
  // `arrival_us` is g_get_monotonic_time() when the session reported it. Network thread.
  virtual void on_interrupted(std::int64_t arrival_us) = 0;
  // The sink's input ended and the model's last turn is complete: end the stream once the queued
  // speech has been pushed. Sink streaming thread.
  virtual void on_finished() = 0;
  // A sink attached to the hub (a new session starts) or detached (no session any more).
  virtual void on_sink_attached(bool attached) = 0;
};

class LiveHub {
public:
  // The hub for `name`, created on first use. Thread-safe.
  static std::shared_ptr<LiveHub> acquire(const std::string &name);

  ~LiveHub();
  LiveHub(const LiveHub &) = delete;
  LiveHub &operator=(const LiveHub &) = delete;

  const std::string &name() const noexcept { return name_; }

  // Sink side. attach_sink() returns the generation that tags this sink's events, or 0 when
  // another sink already owns the session name.
  std::uint64_t attach_sink();
  // The sink's session must be closed first (no callback of `generation` may run afterwards).
  void detach_sink(std::uint64_t generation);

  // Events from the sink's session; dropped unless `generation` is current. model_audio()
  // returns false when no listener took the audio (no src attached).
  bool model_audio(std::uint64_t generation, std::vector<std::int16_t> pcm, int sample_rate);
  void interrupted(std::uint64_t generation, std::int64_t arrival_us);
  void finished(std::uint64_t generation);

  // Src side. False when another listener is attached. A new listener is told at once whether a
  // sink is attached, and whether the conversation already finished.
  bool attach_listener(std::shared_ptr<LiveAudioListener> listener);
  // Waits for a running call into the listener; afterwards no call reaches it any more.
  void detach_listener(const LiveAudioListener *listener);

private:
  struct Slot {
    std::shared_ptr<LiveAudioListener> listener;
    std::mutex dispatch;
    bool active = true;  // guarded by dispatch
  };

  explicit LiveHub(std::string name) : name_(std::move(name)) {}

  // Runs fn(listener) under the slot's dispatch mutex, if a listener is attached and (for
  // generation != 0) `generation` is still the current sink's.
  template <typename F> bool dispatch(std::uint64_t generation, F &&fn);

  const std::string name_;
  std::mutex mutex_;                // guards everything below
  std::uint64_t sink_generation_ = 0;   // 0: no sink attached
  std::uint64_t last_generation_ = 0;   // generations are never reused within a hub
  std::uint64_t finished_generation_ = 0;
  std::shared_ptr<Slot> slot_;
};

} // namespace gemstream::gst
