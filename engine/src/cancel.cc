#include "gemstream/cancel.h"

#include "gemstream/error.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace gemstream {

// Callbacks run on the cancelling thread with the mutex released, so a callback may use the
// token (even remove itself). remove_callback() waits while another thread is running that
// very callback: once it returns, the callback's captures may be destroyed (the HTTP client
// relies on this before it frees the curl multi handle the callback wakes).
struct CancelToken::State {
  std::mutex mutex;
  std::condition_variable cv;
  bool cancelled = false;
  int next_id = 1;
  std::map<int, std::function<void()>> callbacks;
  int running_id = 0; // the callback cancel() is running now, 0 if none
  std::thread::id running_thread;
};

namespace {

// Callbacks are wake-ups; one that throws is a programming error, and unwinding through
// cancel() would leave the others unrun.
void run_callback(const std::function<void()> &fn) noexcept { fn(); }

} // namespace

CancelToken::CancelToken() : state_(std::make_shared<State>()) {}

void CancelToken::cancel() const {
  std::unique_lock lock(state_->mutex);
  if (state_->cancelled)
    return;
  state_->cancelled = true;
  state_->cv.notify_all();

  // Walk by id so callbacks removed meanwhile are skipped; ones added from now on see the
  // flag and run from add_callback() itself.
  const int end_id = state_->next_id;
  int last = 0;
  for (;;) {
    auto it = state_->callbacks.upper_bound(last);
    if (it == state_->callbacks.end() || it->first >= end_id)
      break;
    last = it->first;
    std::function<void()> fn = it->second;
    state_->running_id = last;
    state_->running_thread = std::this_thread::get_id();
    lock.unlock();
    run_callback(fn);
    lock.lock();
    state_->running_id = 0;
    state_->running_thread = {};
    state_->cv.notify_all();
  }
}

bool CancelToken::cancelled() const {
  std::lock_guard lock(state_->mutex);
  return state_->cancelled;
}

void CancelToken::reset() const {
  std::lock_guard lock(state_->mutex);
  state_->cancelled = false;
}

bool CancelToken::wait_for(std::chrono::milliseconds d) const {
  std::unique_lock lock(state_->mutex);
  if (d.count() <= 0)
    return !state_->cancelled;
  return !state_->cv.wait_for(lock, d, [this] { return state_->cancelled; });
}

int CancelToken::add_callback(std::function<void()> fn) const {
  std::unique_lock lock(state_->mutex);
  const int id = state_->next_id++;
  state_->callbacks.emplace(id, fn);
  if (state_->cancelled) {
    lock.unlock();
    run_callback(fn);
  }
  return id;
}

void CancelToken::remove_callback(int id) const {
  std::unique_lock lock(state_->mutex);
  state_->callbacks.erase(id);
  state_->cv.wait(lock, [&] {
    return state_->running_id != id || state_->running_thread == std::this_thread::get_id();
  });
}

void CancelToken::throw_if_cancelled() const {
  if (cancelled())
    throw Error(ErrorKind::Cancelled, "cancelled");
}

} // namespace gemstream
