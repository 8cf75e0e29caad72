// Cooperative cancellation: one token per job, shared by every wait and request of that job.
#pragma once

#include "gemstream/export.h"

#include <chrono>
#include <functional>
#include <memory>

namespace gemstream {

// Thread-safe. Copies share state. Cancellation is sticky until reset().
class GEMSTREAM_API CancelToken {
public:
  CancelToken();

  void cancel() const;
  bool cancelled() const;
  // Clears the cancelled flag (used when an element goes back from NULL to PLAYING).
  void reset() const;

  // Waits for `d`, returning early when cancelled. Returns false if cancelled.
  bool wait_for(std::chrono::milliseconds d) const;

  // Called (from the cancelling thread) when cancel() runs, or at once if already cancelled.
  // Returns an id for remove_callback(). Used to wake curl_multi_poll and socket loops.
  int add_callback(std::function<void()> fn) const;
  void remove_callback(int id) const;

  // Throws Error(Cancelled) if cancelled.
  void throw_if_cancelled() const;

private:
  struct State;
  std::shared_ptr<State> state_;
};

} // namespace gemstream
