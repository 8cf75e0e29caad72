// A network job run off the streaming thread: started lazily by the first create(), waited for
// interruptibly (unlock() sets flushing), cancelled and joined by stop().
//
// Why lazily: GstBaseSrc start()s and stop()s an element just to answer a SCHEDULING query, so
// work begun in start() would be paid for twice (and a Veo operation costs dollars).
#pragma once

#include <gemstream/cancel.h>
#include <gemstream/error.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace gemstream::gst {

template <typename Result> class AsyncJob {
public:
  using Work = std::function<Result(const CancelToken &)>;
  enum class Wait { Done, Flushing };

  ~AsyncJob() { cancel_and_join(); }

  // Starts `work` on a new thread unless a job already ran since the last reset().
  void start_once(Work work) {
    std::lock_guard<std::mutex> guard(lock_);
    if (started_)
      return;
    started_ = true;
    thread_ = std::thread([this, work = std::move(work)]() {
      std::optional<Result> result;
      std::optional<Error> error;
      try {
        result.emplace(work(cancel_));
      } catch (const Error &e) {
        error = e;
      } catch (const std::exception &e) {
        error = Error(ErrorKind::Protocol, e.what());
      }
      std::lock_guard<std::mutex> g(lock_);
      result_ = std::move(result);
      error_ = std::move(error);
      finished_ = true;
      cond_.notify_all();
    });
  }

  // Blocks until the job finished or set_flushing(true) is called.
  Wait wait() {
    std::unique_lock<std::mutex> guard(lock_);
    cond_.wait(guard, [&] { return flushing_ || finished_; });
    return flushing_ ? Wait::Flushing : Wait::Done;
  }

  void set_flushing(bool flushing) {
    std::lock_guard<std::mutex> guard(lock_);
    flushing_ = flushing;
    cond_.notify_all();
  }

  bool finished() const {
    std::lock_guard<std::mutex> guard(lock_);
    return finished_;
  }
  // Valid once wait() returned Done.
  const std::optional<Result> &result() const { return result_; }
  const std::optional<Error> &error() const { return error_; }

  // Cancels the job and joins its thread; afterwards the job can start again.
  void cancel_and_join() {
    cancel_.cancel();
    if (thread_.joinable())
      thread_.join();
    std::lock_guard<std::mutex> guard(lock_);
    started_ = finished_ = false;
    result_.reset();
    error_.reset();
    cancel_ = CancelToken();
  }

private:
  mutable std::mutex lock_;
  std::condition_variable cond_;
  CancelToken cancel_;
  std::thread thread_;
  bool started_ = false;
  bool finished_ = false;
  bool flushing_ = false;
  std::optional<Result> result_;
  std::optional<Error> error_;
};

} // namespace gemstream::gst
