// The workers of the video job queue: they claim jobs from the JobStore, run them (Veo start or
// resume → poll → download → post-processing → cost), renew their leases while they work, and
// report the outcome to the job's owner.
//
// Threading: `concurrency` worker threads plus one heartbeat thread. Each running job has a
// CancelToken: stop() cancels them all (jobs are released to the store, not failed); a lost
// lease cancels only that job (another worker owns it now). The hooks in JobContext are called
// from worker threads.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/config.h"
#include "gemstream/costs.h"
#include "gemstream/gateway.h"
#include "gemstream/genai.h"
#include "gemstream/job_store.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gemstream::gateway {

// What a video job makes: the validated body of POST /api/v1/media/generate-video.
struct VideoJobSpec {
  std::string description;
  std::string mood;
  std::string model_key;    // config key, e.g. "veo_3_fast"
  std::string aspect_ratio; // "16:9" / "9:16"
  std::string resolution;   // "720p" / "1080p"

  nlohmann::json to_json() const;
  static VideoJobSpec from_json(const nlohmann::json &j);
};

struct JobContext {
  JobStore *store = nullptr;
  Endpoint endpoint;
  ClientOptions client;
  const MediaConfig *media = nullptr;
  const GatewayConfig *config = nullptr;
  std::shared_ptr<CostLedger> ledger;
  PostProcessor post_process;
  // Throws Error(BudgetExceeded) when `owner` may not spend `nanos` more today, counting
  // `reserved_nanos` already promised to other work.
  std::function<void(const std::string &owner, std::int64_t nanos, std::int64_t reserved_nanos,
                     const std::string &what)>
      check_budget;
  // An event for the job's owner ({"type":"video_generation_complete",...}).
  std::function<void(const std::string &owner, const nlohmann::json &event)> notify;
  std::function<void(const std::string &)> log;
};

// The URL a file under the media directory is served at ("/media/videos/alice/job_x/clip.mp4").
std::string media_url(const std::filesystem::path &media_dir, const std::filesystem::path &file);

class JobRunner {
public:
  JobRunner(JobContext context, std::chrono::milliseconds claim_interval);
  ~JobRunner(); // stops
  JobRunner(const JobRunner &) = delete;
  JobRunner &operator=(const JobRunner &) = delete;

  void start();
  // Cancels running jobs and hands them back to the store; joins every thread.
  void stop();
  // A job was queued: look for work now rather than at the next claim interval.
  void wake();

  const std::string &worker_id() const noexcept { return worker_; }

private:
  struct Active {
    CancelToken cancel;
    std::atomic<bool> lost{false};
    std::mutex mutex; // guards phase and progress
    std::string phase;
    double progress = 0;
  };
  class Job;

  void work();
  void heartbeats();
  void run(const JobRecord &job);

  JobContext ctx_;
  const std::chrono::milliseconds claim_interval_;
  const std::string worker_;

  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool woken_ = false;
  std::map<std::string, std::shared_ptr<Active>> active_;
  std::vector<std::thread> threads_;
};

} // namespace gemstream::gateway
