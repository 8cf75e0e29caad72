// The media gateway (`gemstream serve`): one HTTP/WebSocket server for web apps and kiosks.
//
//   POST /api/v1/cards/{cardId}/generate-cover   a card cover image, 200 with its URL and cost
//   POST /api/v1/media/generate-video            202 {"jobId"}: a Veo clip made by the job queue
//   GET  /api/v1/media/jobs/{jobId}              state, progress, result URLs, cost (owner only)
//   GET  /api/v1/media/jobs                      the caller's recent jobs
//   POST /api/v1/media/analyze-video             multipart upload (fields "video", "question")
//   GET  /api/v1/costs[?day=YYYY-MM-DD|today]    the caller's spending per day, kind and model
//   GET  /media/...                              generated files (Range, ETag)
//   GET  /kiosk/#token=TOKEN                     the browser kiosk page (public, embedded)
//   WS   /api/v1/notifications                   video_generation_complete / _failed events
//   WS   /api/v1/live-session                    a Gemini Live conversation: Opus or PCM in,
//                                                Opus out, transcripts as JSON
//
// Every /api route needs "Authorization: Bearer TOKEN"; the token's user (from the gateway
// configuration) owns what the request makes: a user id never comes from a URL or a body.
// Browsers authenticate WebSockets with the subprotocols ["gemstream.v1", "bearer.TOKEN"]
// (or ?token=TOKEN where subprotocols are unavailable). Errors are JSON:
// {"error":{"code":404,"status":"NOT_FOUND","message":"...","reason":"..."}}.
//
// Video jobs live in a JobStore (job_store.h): queued jobs survive restarts, and a job whose Veo
// operation had started resumes polling it instead of paying for a new one.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/config.h"
#include "gemstream/genai.h"
#include "gemstream/job_store.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gemstream::gateway {

struct TokenEntry {
  std::string user;
  std::array<unsigned char, 32> sha256{}; // of the token; tokens are never kept in memory
};

struct LoopSettings {
  bool enabled = true;
  std::vector<std::string> formats = {"mp4", "webm", "poster"};
  double crossfade_seconds = 1.0;
  int height = 0; // 0: the clip's
};

// WS /api/v1/live-session conversations.
struct LiveSettings {
  std::string model; // empty: the default Live model
  std::string system_instruction;
  std::size_t max_sessions = 32;
  std::size_t max_sessions_per_user = 4;
};

// A gateway configuration file (see config/gateway.example.json). Relative paths are relative
// to the file's directory.
struct GEMSTREAM_GATEWAY_API GatewayConfig {
  static constexpr int kVersion = 1;

  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 8080;
  std::filesystem::path tls_certificate; // both or neither
  std::filesystem::path tls_private_key;
  std::vector<TokenEntry> tokens;
  // "cors": {"allowed_origins": [...]}: web app origins allowed to call the API from a browser
  // ("https://app.example.com", or "*"). Empty: same-origin pages only.
  std::vector<std::string> cors_origins;
  std::filesystem::path media_dir;
  // false: /media/{covers,videos}/USER/... need the bearer token of USER.
  bool media_public = true;
  std::uint64_t max_upload_bytes = 100ull * 1000 * 1000;
  std::filesystem::path database; // the SQLite job store; unused when redis_url is set
  // "store": {"redis": URL, "prefix": P}: the job store is a Redis server shared by every
  // gateway configured with the same URL and prefix (open_redis_job_store()).
  std::string redis_url;
  std::string redis_prefix = "gemstream:";
  std::filesystem::path ledger; // empty: CostLedger::default_path()
  int concurrency = 2;
  int jobs_per_minute = 10;
  // Veo polling; zero: poll_interval_seconds of config/media_generation.json.
  std::chrono::milliseconds poll_interval{0};
  std::chrono::milliseconds lease{30000};
  int max_attempts = 3; // claims of one job that ended in a crash before it is failed
  std::size_t max_unfinished_jobs_per_user = 20;
  std::optional<double> daily_budget_usd;         // every user; none: the ledger's budget
  std::map<std::string, double> user_budgets_usd; // per user, wins over daily_budget_usd
  LoopSettings loop;
  LiveSettings live;
  std::filesystem::path source; // the file it was loaded from

  // Parses and validates strictly: errors are Error(Config) naming the file and the JSON
  // pointer ("gateway.json: /auth/tokens/1/token: must be at least 16 characters"); unknown
  // fields are rejected.
  static GatewayConfig load(const std::filesystem::path &file);
  static GatewayConfig parse(const std::string &json_text, const std::filesystem::path &name,
                             const std::filesystem::path &base_dir);

  // The user of a bearer token, comparing SHA-256 digests in constant time; nullopt if unknown.
  std::optional<std::string> user_for_token(std::string_view token) const;
};

// The job store a configuration names: Redis when redis_url is set, else the SQLite file
// `database`. Throws as open_redis_job_store() / open_sqlite_job_store() do.
GEMSTREAM_GATEWAY_API std::unique_ptr<JobStore> open_job_store(const GatewayConfig &config);

// SHA-256 of a token, as "token_sha256" in the configuration holds it (hex).
GEMSTREAM_GATEWAY_API std::string token_sha256_hex(std::string_view token);

// What the post-processing step of a video job gets and returns.
struct PostProcessRequest {
  std::string job_id;
  std::filesystem::path clip;    // MEDIA/videos/USER/JOB/clip.mp4, complete
  std::filesystem::path out_dir; // its directory; outputs go next to it
  LoopSettings settings;
};
struct PostProcessOutput {
  std::string name;           // the key in the job's "urls": "loopMp4", "loopWebm", "poster"
  std::filesystem::path file; // under out_dir, complete when returned
};
// Runs after the download; throws gemstream::Error on failure (the job fails with its message)
// and Error(Cancelled) when `cancel` fires. `progress` takes 0..1.
using PostProcessor = std::function<std::vector<PostProcessOutput>(
    const PostProcessRequest &, const CancelToken &cancel,
    const std::function<void(double)> &progress)>;

struct GatewayOptions {
  // Where Gemini requests go; default resolve_endpoint() (GOOGLE_API_KEY, GEMSTREAM_BASE_URL,
  // else an in-process local backend).
  std::optional<Endpoint> endpoint;
  std::optional<MediaConfig> media; // default MediaConfig::load_default()
  // The job queue's store; default open_sqlite_job_store(config.database). Gateways sharing
  // one store share its jobs, limits and leases.
  std::shared_ptr<JobStore> store;
  ClientOptions client;
  // How often an idle worker looks for claimable jobs in the store (other processes sharing it
  // cannot wake it).
  std::chrono::milliseconds claim_interval{500};
  // Makes the loop outputs of a clip; empty: the clip is the only output.
  PostProcessor post_process;
  std::function<void(const std::string &)> log; // default: stderr
  bool access_log = true;
};

class GEMSTREAM_GATEWAY_API Gateway {
public:
  // Opens the job store and the ledger; throws Error(Config/Io) naming what failed.
  Gateway(GatewayConfig config, GatewayOptions options = {});
  ~Gateway(); // stops
  Gateway(const Gateway &) = delete;
  Gateway &operator=(const Gateway &) = delete;

  // Listens and starts the job workers. Throws Error(Io) when it cannot listen.
  void start();
  // Cancels running requests and jobs (jobs are handed back to the store, to resume at the
  // next start of this or another gateway), closes connections and joins every thread.
  void stop();

  std::uint16_t port() const;
  std::string base_url() const;
  JobStore &jobs();

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream::gateway
