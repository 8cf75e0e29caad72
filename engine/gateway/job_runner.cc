#include "job_runner.h"

#include "gemstream/error.h"
#include "gemstream/prompts.h"

#include <unistd.h>

#include <cmath>

namespace gemstream::gateway {
namespace {

using json = nlohmann::json;

// The job is no longer ours: another worker claimed it after our lease ran out.
struct LeaseLost {};

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0)
    return "host";
  return buf;
}

// Generation typically takes one to a few minutes: an estimate that rises quickly at first and
// approaches (never reaches) the end of the generating phase.
double generating_progress(std::chrono::milliseconds elapsed) {
  const double t = static_cast<double>(elapsed.count()) / 60000.0;
  return 0.05 + 0.75 * (1.0 - std::exp(-t));
}

} // namespace

json VideoJobSpec::to_json() const {
  return {{"description", description},
          {"mood", mood},
          {"model", model_key},
          {"aspectRatio", aspect_ratio},
          {"resolution", resolution}};
}

VideoJobSpec VideoJobSpec::from_json(const json &j) {
  VideoJobSpec s;
  s.description = j.value("description", "");
  s.mood = j.value("mood", "");
  s.model_key = j.value("model", "");
  s.aspect_ratio = j.value("aspectRatio", "");
  s.resolution = j.value("resolution", "");
  return s;
}

std::string media_url(const std::filesystem::path &media_dir, const std::filesystem::path &file) {
  return "/media/" + file.lexically_relative(media_dir).generic_string();
}

// One run of one claimed job.
class JobRunner::Job {
public:
  Job(JobRunner &runner, const JobRecord &record, std::shared_ptr<Active> active)
      : r_(runner), ctx_(runner.ctx_), job_(record), active_(std::move(active)),
        client_(ctx_.endpoint, ctx_.client) {}

  void run();

private:
  // Records progress locally (the heartbeat thread persists it) and in the store at once when
  // the phase changes. Throws LeaseLost when the store says the job is no longer ours.
  void progress(const std::string &phase, double value) {
    bool changed = false;
    {
      std::lock_guard lock(active_->mutex);
      changed = active_->phase != phase;
      active_->phase = phase;
      active_->progress = value;
    }
    if (changed && !ctx_.store->heartbeat(job_.id, r_.worker_, lease_end(), phase, value))
      throw LeaseLost{};
  }
  TimePoint lease_end() const {
    return std::chrono::system_clock::now() +
           std::chrono::duration_cast<std::chrono::system_clock::duration>(ctx_.config->lease);
  }
  void check_lease() const {
    if (active_->lost)
      throw LeaseLost{};
  }

  std::string start_operation(const VideoJobSpec &spec, const VideoModel &model);
  Operation poll(const std::string &operation);
  void record_cost(const VideoModel &model, const std::filesystem::path &clip);

  JobRunner &r_;
  const JobContext &ctx_;
  JobRecord job_;
  std::shared_ptr<Active> active_;
  GenAiClient client_;
  CostEntry cost_;
};

std::string JobRunner::Job::start_operation(const VideoJobSpec &spec, const VideoModel &model) {
  const MediaConfig &media = *ctx_.media;
  const CostEntry estimate = price_video(media, model.key, model.duration_seconds);
  // Queued jobs were admitted against the budget; what others started since is counted now.
  std::int64_t others = 0;
  for (const auto &j : ctx_.store->list(job_.owner, 1000))
    if (j.state == JobState::Running && j.id != job_.id && !j.operation.empty())
      others += j.estimate_nanos;
  ctx_.check_budget(job_.owner, estimate.usd_nanos, others, "this video");

  VideoRequest req;
  req.model_id = model.id;
  req.prompt = build_background_video_prompt(media, {spec.description, spec.mood});
  req.aspect_ratio = spec.aspect_ratio;
  req.resolution = spec.resolution;
  req.negative_prompt = media.background_video.negative_prompt;
  req.duration_seconds = model.duration_seconds;
  check_lease();
  const Operation op = client_.start_video(req, active_->cancel);
  // From here until set_operation() returns, a crash would make the next worker pay again.
  if (!ctx_.store->set_operation(job_.id, r_.worker_, op.name, std::chrono::system_clock::now()))
    throw LeaseLost{};
  job_.operation_started = std::chrono::system_clock::now();
  progress("generating", generating_progress({}));
  if (ctx_.log)
    ctx_.log("job " + job_.id + ": started " + op.name);
  return op.name;
}

// Polls until done. Transient failures (429, 5xx, network) after the client's own retries do not
// fail a paid job: polling goes on until the operation timeout.
Operation JobRunner::Job::poll(const std::string &operation) {
  const MediaConfig &media = *ctx_.media;
  const auto interval =
      ctx_.config->poll_interval.count() > 0
          ? ctx_.config->poll_interval
          : std::chrono::milliseconds(std::llround(media.defaults.poll_interval_seconds * 1000));
  const auto timeout =
      std::chrono::milliseconds(std::llround(media.defaults.operation_timeout_seconds * 1000));
  const TimePoint began = job_.operation_started == TimePoint{} ? std::chrono::system_clock::now()
                                                                : job_.operation_started;
  const TimePoint deadline = began + timeout;
  for (;;) {
    check_lease();
    Operation op;
    try {
      op = client_.get_operation(operation, active_->cancel);
    } catch (const Error &e) {
      if (!e.retryable())
        throw;
      if (ctx_.log)
        ctx_.log("job " + job_.id + ": polling " + operation + " failed, retrying: " + e.what());
    }
    if (op.done) {
      if (op.error)
        throw *op.error;
      if (op.video_uris.empty()) {
        std::string reason = "the model returned no video";
        for (std::size_t i = 0; i < op.rai_filtered_reasons.size(); ++i)
          reason += (i == 0 ? ": " : "; ") + op.rai_filtered_reasons[i];
        if (op.rai_filtered_reasons.empty() && op.rai_filtered_count > 0)
          reason += " (" + std::to_string(op.rai_filtered_count) + " filtered by safety filters)";
        throw Error(op.rai_filtered_count > 0 || !op.rai_filtered_reasons.empty()
                        ? ErrorKind::SafetyFiltered
                        : ErrorKind::Protocol,
                    reason);
      }
      return op;
    }
    const TimePoint now = std::chrono::system_clock::now();
    if (now >= deadline)
      throw Error(ErrorKind::Timeout,
                  "the video was not ready after " +
                      std::to_string(std::llround(media.defaults.operation_timeout_seconds)) +
                      " s");
    progress("generating", generating_progress(
                               std::chrono::duration_cast<std::chrono::milliseconds>(now - began)));
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (!active_->cancel.wait_for(std::min(interval, left + std::chrono::milliseconds(1))))
      throw Error(ErrorKind::Cancelled, "cancelled while waiting for " + operation);
  }
}

void JobRunner::Job::record_cost(const VideoModel &model, const std::filesystem::path &clip) {
  cost_ = price_video(*ctx_.media, model.key, model.duration_seconds);
  cost_.user = job_.owner;
  cost_.request_id = job_.operation;
  cost_.note = "gateway video job " + job_.id + " -> " + clip.string() + "; " + cost_.note;
  // At least once: a worker that takes over after a crash between recording and completing
  // must not bill the same operation twice.
  CostFilter filter;
  filter.user = job_.owner;
  filter.kind = CostKind::Video;
  filter.from_day = utc_day(job_.created);
  for (const auto &e : ctx_.ledger->entries(filter)) {
    if (e.request_id == job_.operation) {
      cost_ = e;
      return;
    }
  }
  cost_.id = ctx_.ledger->record(cost_);
}

void JobRunner::Job::run() {
  const MediaConfig &media = *ctx_.media;
  const VideoJobSpec spec = VideoJobSpec::from_json(json::parse(job_.spec_json));
  const VideoModel &model = media.video_model(spec.model_key);

  if (job_.attempts > ctx_.config->max_attempts)
    throw Error(ErrorKind::Internal,
                "gave up after " + std::to_string(job_.attempts - 1) +
                    " attempts: the gateway stopped while running this job each time");

  const std::string operation =
      job_.operation.empty() ? start_operation(spec, model) : job_.operation;
  job_.operation = operation;
  if (ctx_.log && job_.attempts > 1)
    ctx_.log("job " + job_.id + ": resuming " + operation);
  const Operation done = poll(operation);

  const std::filesystem::path dir = ctx_.config->media_dir / "videos" / job_.owner / job_.id;
  const std::filesystem::path clip = dir / "clip.mp4";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw Error(ErrorKind::Io, "cannot create " + dir.string() + ": " + ec.message());
  if (!std::filesystem::exists(clip, ec)) {
    progress("downloading", 0.8);
    client_.download_video(done.video_uris.front(), clip.string(), active_->cancel,
                           [this](std::uint64_t got, std::uint64_t total) {
                             if (total > 0) {
                               std::lock_guard lock(active_->mutex);
                               active_->progress = 0.8 + 0.1 * double(got) / double(total);
                             }
                           });
  }
  check_lease();

  json urls = {{"clip", media_url(ctx_.config->media_dir, clip)}};
  if (ctx_.post_process && ctx_.config->loop.enabled) {
    progress("post-processing", 0.9);
    const auto outputs = ctx_.post_process(
        {job_.id, clip, dir, ctx_.config->loop}, active_->cancel, [this](double p) {
          std::lock_guard lock(active_->mutex);
          active_->progress = 0.9 + 0.09 * std::clamp(p, 0.0, 1.0);
        });
    for (const auto &out : outputs)
      urls[out.name] = media_url(ctx_.config->media_dir, out.file);
  }
  check_lease();

  record_cost(model, clip);
  const std::string video_url = urls.contains("loopMp4") ? urls["loopMp4"].get<std::string>()
                                                         : urls["clip"].get<std::string>();
  json result = {{"urls", urls},
                 {"videoUrl", video_url},
                 {"model", model.id},
                 {"durationSeconds", model.duration_seconds}};
  if (urls.contains("poster"))
    result["posterUrl"] = urls["poster"];
  if (!ctx_.store->succeed(job_.id, r_.worker_, result.dump(), cost_.usd_nanos))
    throw LeaseLost{};
  if (ctx_.log)
    ctx_.log("job " + job_.id + ": done, " + format_usd(cost_.usd()));
  json event = {{"type", "video_generation_complete"},
                {"jobId", job_.id},
                {"description", spec.description},
                {"urls", urls},
                {"videoUrl", video_url},
                {"cost", {{"usd", cost_.usd()}, {"usdNanos", cost_.usd_nanos}}}};
  if (urls.contains("poster"))
    event["posterUrl"] = urls["poster"];
  ctx_.notify(job_.owner, event);
}

// ---------------------------------------------------------------------------------------------

JobRunner::JobRunner(JobContext context, std::chrono::milliseconds claim_interval)
    : ctx_(std::move(context)), claim_interval_(claim_interval),
      worker_(host_name() + ":" + std::to_string(::getpid()) + ":" + new_job_id().substr(4, 8)) {}

JobRunner::~JobRunner() {
  stop();
}

void JobRunner::start() {
  std::lock_guard lock(mutex_);
  if (!threads_.empty())
    return;
  stopping_ = false;
  for (int i = 0; i < ctx_.config->concurrency; ++i)
    threads_.emplace_back([this] { work(); });
  threads_.emplace_back([this] { heartbeats(); });
}

void JobRunner::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto &[id, active] : active_)
      active->cancel.cancel();
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto &t : threads)
    t.join();
}

void JobRunner::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_all();
}

void JobRunner::work() {
  ClaimLimits limits;
  limits.worker = worker_;
  limits.lease = ctx_.config->lease;
  limits.concurrency = ctx_.config->concurrency;
  limits.starts_per_minute = ctx_.config->jobs_per_minute;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_)
        return;
      woken_ = false;
    }
    std::optional<JobRecord> job;
    try {
      job = ctx_.store->claim(limits, std::chrono::system_clock::now());
    } catch (const std::exception &e) {
      if (ctx_.log)
        ctx_.log(std::string("job queue: claiming a job failed: ") + e.what());
    }
    if (job) {
      run(*job);
      continue;
    }
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, claim_interval_, [this] { return stopping_ || woken_; });
  }
}

void JobRunner::heartbeats() {
  const auto period = std::max(std::chrono::milliseconds(50), ctx_.config->lease / 3);
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    cv_.wait_for(lock, period, [this] { return stopping_; });
    if (stopping_)
      return;
    const auto jobs = active_;
    lock.unlock();
    for (const auto &[id, active] : jobs) {
      std::string phase;
      double progress = 0;
      {
        std::lock_guard guard(active->mutex);
        phase = active->phase;
        progress = active->progress;
      }
      const TimePoint until =
          std::chrono::system_clock::now() +
          std::chrono::duration_cast<std::chrono::system_clock::duration>(ctx_.config->lease);
      try {
        if (!ctx_.store->heartbeat(id, worker_, until, phase, progress)) {
          active->lost = true;
          active->cancel.cancel();
          if (ctx_.log)
            ctx_.log("job " + id + ": lease lost; another worker has taken it over");
        }
      } catch (const std::exception &e) {
        if (ctx_.log)
          ctx_.log("job " + id + ": heartbeat failed: " + e.what());
      }
    }
    lock.lock();
  }
}

void JobRunner::run(const JobRecord &record) {
  auto active = std::make_shared<Active>();
  active->phase = record.phase;
  active->progress = record.progress;
  {
    std::lock_guard lock(mutex_);
    if (stopping_)
      active->cancel.cancel();
    active_[record.id] = active;
  }
  auto report_failure = [&](const std::string &reason) {
    try {
      if (ctx_.store->fail(record.id, worker_, reason)) {
        if (ctx_.log)
          ctx_.log("job " + record.id + ": failed: " + reason);
        ctx_.notify(
            record.owner,
            {{"type", "video_generation_failed"}, {"jobId", record.id}, {"reason", reason}});
      }
    } catch (const std::exception &e) {
      if (ctx_.log)
        ctx_.log("job " + record.id + ": cannot record its failure: " + e.what());
    }
  };
  try {
    Job(*this, record, active).run();
  } catch (const LeaseLost &) {
    if (ctx_.log)
      ctx_.log("job " + record.id + ": abandoned (another worker holds it)");
  } catch (const Error &e) {
    if (active->lost) {
      // Cancelled because the lease was lost: the new owner carries on.
    } else if (e.kind() == ErrorKind::Cancelled && active->cancel.cancelled()) {
      try {
        ctx_.store->release(record.id, worker_);
      } catch (const std::exception &re) {
        if (ctx_.log)
          ctx_.log("job " + record.id + ": cannot hand it back: " + re.what());
      }
    } else {
      std::string reason = e.message();
      if (e.kind() == ErrorKind::NotFound && !record.operation.empty())
        reason = "the Veo operation " + record.operation +
                 " is no longer known to the service (generated videos are kept for two days): " +
                 reason;
      report_failure(reason);
    }
  } catch (const std::exception &e) {
    report_failure(std::string("internal error: ") + e.what());
  }
  std::lock_guard lock(mutex_);
  active_.erase(record.id);
}

} // namespace gemstream::gateway
