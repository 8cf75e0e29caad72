// The gateway's REST handlers, media serving and the wiring of server, job queue, ledger and
// notifications. Handlers run on the server's worker pool (see http_server.h) and report
// failures as JSON errors with the status a client acts on.
#include "gemstream/gateway.h"

#include "gemstream/costs.h"
#include "gemstream/error.h"
#include "gemstream/media_probe.h"
#include "gemstream/prompts.h"
#include "gemstream/video_analysis.h"

#include "http_server.h"
#include "job_runner.h"
#include "kiosk.h"
#include "live_endpoint.h"
#include "media_files.h"
#include "multipart.h"
#include "notifications.h"
#include "redis_notifications.h"

extern "C" {
#include <libavformat/avformat.h>
}

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <set>

namespace gemstream::gateway {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr std::size_t kMaxJsonBody = 64 * 1024;
constexpr std::size_t kMaxQuestionLength = 4000;
constexpr std::uint64_t kMultipartOverhead = 1 << 20; // boundaries, headers, text fields
constexpr std::size_t kSniffBytes = 1 << 20;

// A failure a handler reports as it is: status, message, machine-readable reason.
struct HttpError {
  int status;
  std::string message;
  std::string reason;
};

[[noreturn]] void bad_request(std::string message, std::string reason = "invalid_argument") {
  throw HttpError{400, std::move(message), std::move(reason)};
}

bool is_identifier(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

std::string rfc3339(TimePoint t) {
  if (t == TimePoint{})
    return {};
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

json money(std::int64_t nanos) {
  return {{"usd", static_cast<double>(nanos) / kNanosPerUsd}, {"usdNanos", nanos}};
}

std::int64_t seconds_to_utc_midnight() {
  const auto now = std::chrono::system_clock::now();
  const auto day = std::chrono::floor<std::chrono::days>(now);
  return std::chrono::duration_cast<std::chrono::seconds>(day + std::chrono::days(1) - now)
             .count() +
         1;
}

// A JSON object body with only the named fields, each a string. Throws HttpError(400).
json string_fields(const Request &req, std::initializer_list<std::string_view> known,
                   std::initializer_list<std::string_view> required) {
  if (req.body.empty())
    bad_request("the request needs a JSON object body");
  const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded())
    bad_request("the request body is not valid JSON", "invalid_json");
  if (!body.is_object())
    bad_request("the request body must be a JSON object", "invalid_json");
  std::string names;
  for (auto k : known)
    names += (names.empty() ? "" : ", ") + std::string(k);
  for (const auto &[key, value] : body.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end())
      bad_request("unknown field \"" + key + "\" (known: " + names + ")", "unknown_field");
    if (!value.is_string())
      bad_request("\"" + key + "\" must be a string", "invalid_field");
  }
  for (auto r : required) {
    const auto it = body.find(r);
    if (it == body.end() || it->get_ref<const std::string &>().empty())
      bad_request("\"" + std::string(r) + "\" is required", "missing_field");
  }
  return body;
}

std::string field(const json &body, const char *name) {
  const auto it = body.find(name);
  return it == body.end() ? std::string() : it->get<std::string>();
}

// libavformat's verdict on the first bytes of an upload: the extension to store it under, or
// an HttpError(415) saying what it is instead.
std::string sniff_video(std::string_view head, const std::string &client_name) {
  std::vector<unsigned char> buffer(head.size() + AVPROBE_PADDING_SIZE, 0);
  std::memcpy(buffer.data(), head.data(), head.size());
  AVProbeData probe{};
  probe.filename = ""; // the content decides, not the client's file name
  probe.buf = buffer.data();
  probe.buf_size = static_cast<int>(head.size());
  int score = AVPROBE_SCORE_RETRY;
  const AVInputFormat *format = av_probe_input_format2(&probe, 1, &score);
  if (!format)
    throw HttpError{415, "the uploaded file is not a video (its content matches no known format)",
                    "not_a_video"};
  const std::string names = "," + std::string(format->name) + ",";
  std::string ext = fs::path(client_name).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (names.find(",mov,") != std::string::npos || names.find(",mp4,") != std::string::npos)
    return ext == ".mov" ? ".mov" : ".mp4";
  if (names.find(",matroska,") != std::string::npos || names.find(",webm,") != std::string::npos)
    return ext == ".mkv" ? ".mkv" : ".webm";
  if (names.find(",avi,") != std::string::npos)
    return ".avi";
  if (names.find(",mpegts,") != std::string::npos)
    return ".ts";
  if (names.find(",mpeg,") != std::string::npos)
    return ".mpg";
  throw HttpError{415,
                  std::string("unsupported file type: ") +
                      (format->long_name ? format->long_name : format->name) +
                      " (send an MP4, MOV, WebM, MKV, AVI or MPEG video)",
                  "unsupported_type"};
}

// A file removed when the scope ends.
struct TempFile {
  fs::path path;
  ~TempFile() {
    std::error_code ec;
    if (!path.empty())
      fs::remove(path, ec);
  }
};

void write_file_atomically(const fs::path &path, const std::string &bytes) {
  // The temporary name starts with '.', so the media route never serves a partial file.
  const fs::path part = path.parent_path() / ("." + path.filename().string() + "." +
                                              new_job_id().substr(4, 12) + ".part");
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(ErrorKind::Io, "cannot create " + part.string() + ": " + std::strerror(errno));
  TempFile cleanup{part};
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorKind::Io, "cannot write " + part.string() + ": " + std::strerror(err));
    }
    done += std::size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    throw Error(ErrorKind::Io, "cannot write " + part.string() + ": " + std::strerror(errno));
  fs::rename(part, path);
  cleanup.path.clear();
}

bool is_day(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-')
    return false;
  for (std::size_t i = 0; i < text.size(); ++i)
    if (i != 4 && i != 7 && !std::isdigit(static_cast<unsigned char>(text[i])))
      return false;
  return true;
}

const std::set<std::string> kGeminiImageRatios = {"1:1", "2:3", "3:2",  "3:4",  "4:3",
                                                  "4:5", "5:4", "9:16", "16:9", "21:9"};
const std::set<std::string> kImagenRatios = {"1:1", "3:4", "4:3", "9:16", "16:9"};

} // namespace

// ---------------------------------------------------------------------------------------------

struct Gateway::Impl {
  Impl(GatewayConfig c, GatewayOptions o);

  void log(const std::string &line) const {
    if (options.log)
      options.log(line);
    else
      std::cerr << "gemstream-gateway: " << line << std::endl;
  }

  void add_routes();
  Response handle(Request &req, Response (Impl::*handler)(Request &));
  Response error_for(const Error &e, const Request &req);

  Response generate_cover(Request &req);
  Response generate_video(Request &req);
  // Validates and queues a video job of `owner`; throws HttpError or Error(BudgetExceeded).
  // `created` (optional) sees the job id once the job is stored, before a worker may run it.
  JobRecord enqueue_video(const std::string &owner, VideoJobSpec spec,
                          const std::string &model_name,
                          const std::function<void(const std::string &)> &created = {});
  // A job event for `owner`'s sockets on this gateway: notifications and live conversations.
  void deliver_locally(const std::string &owner, const json &event) {
    hub->publish(owner, event);
    live->job_event(owner, event);
  }
  Response get_job(Request &req);
  Response list_jobs(Request &req);
  Response analyze_video(Request &req);
  Response costs(Request &req);
  Response media_file(Request &req);

  std::optional<std::int64_t> budget_nanos(const std::string &user) const;
  void check_budget(const std::string &user, std::int64_t nanos, std::int64_t reserved,
                    const std::string &what) const;
  json job_json(const JobRecord &job) const;

  GatewayConfig config;
  GatewayOptions options;
  MediaConfig media;
  Endpoint endpoint;
  fs::path spool_dir;
  std::shared_ptr<JobStore> store;
  std::shared_ptr<CostLedger> ledger;
  std::unique_ptr<Server> server;
  std::shared_ptr<NotificationHub> hub;
  std::shared_ptr<LiveEndpoint> live; // WS /api/v1/live-session
  std::unique_ptr<JobRunner> runner;
  // With the Redis store: the other gateways' events for this one's sockets, and this one's
  // for theirs. Declared after `hub` and `server`, which it delivers to.
  std::unique_ptr<RedisNotificationBus> bus;
  CancelToken requests; // every in-flight request; cancelled by stop()
  bool started = false;
};

Gateway::Impl::Impl(GatewayConfig c, GatewayOptions o)
    : config(std::move(c)), options(std::move(o)),
      media(options.media ? *options.media : MediaConfig::load_default()),
      endpoint(options.endpoint ? *options.endpoint : resolve_endpoint()),
      spool_dir(config.media_dir / ".uploads") {
  std::error_code ec;
  fs::create_directories(config.media_dir, ec);
  if (ec)
    throw Error(ErrorKind::Io, "cannot create the media directory " + config.media_dir.string() +
                                   ": " + ec.message());
  // Uploads interrupted by a crash; a fresh one (another gateway on this directory) is kept.
  if (fs::is_directory(spool_dir, ec)) {
    const auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(1);
    for (const auto &entry : fs::directory_iterator(spool_dir, ec))
      if (entry.last_write_time(ec) < cutoff)
        fs::remove(entry.path(), ec);
  }
  store = options.store ? options.store
                        : std::shared_ptr<JobStore>(open_sqlite_job_store(config.database));
  ledger = std::make_shared<CostLedger>(config.ledger.empty() ? CostLedger::default_path()
                                                              : config.ledger);

  ServerOptions so;
  so.bind_address = config.listen_address;
  so.port = config.port;
  so.tls_certificate = config.tls_certificate;
  so.tls_private_key = config.tls_private_key;
  so.spool_dir = spool_dir;
  so.cors_origins = config.cors_origins;
  if (options.access_log)
    so.access_log = [this](const std::string &line) { log(line); };
  so.error_log = [this](const std::string &line) { log(line); };
  server = std::make_unique<Server>(
      so, [this](std::string_view token) { return config.user_for_token(token); });
  hub = std::make_shared<NotificationHub>(*server);
  LiveEndpointOptions lo;
  lo.endpoint = endpoint;
  lo.client = options.client;
  lo.media = &media;
  lo.ledger = ledger;
  lo.media_dir = config.media_dir;
  lo.model = config.live.model;
  lo.system_instruction = config.live.system_instruction;
  lo.max_sessions = config.live.max_sessions;
  lo.max_sessions_per_user = config.live.max_sessions_per_user;
  lo.enqueue_video = [this](const std::string &owner, const std::string &description,
                            const std::string &mood, const std::string &model_key,
                            const std::function<void(const std::string &)> &created) {
    VideoJobSpec spec;
    spec.description = description;
    spec.mood = mood;
    try {
      return enqueue_video(owner, std::move(spec), model_key, created).id;
    } catch (const HttpError &e) {
      throw Error(e.status == 429 ? ErrorKind::ResourceExhausted : ErrorKind::InvalidArgument,
                  e.message);
    }
  };
  lo.check_budget = [this](const std::string &user, std::int64_t nanos, const std::string &what) {
    check_budget(user, nanos, store->reserved_nanos(user), what);
  };
  lo.log = [this](const std::string &line) { log(line); };
  live = std::make_shared<LiveEndpoint>(*server, std::move(lo));
  add_routes();

  JobContext ctx;
  ctx.store = store.get();
  ctx.endpoint = endpoint;
  ctx.client = options.client;
  ctx.media = &media;
  ctx.config = &config;
  ctx.ledger = ledger;
  ctx.post_process = options.post_process;
  ctx.check_budget = [this](const std::string &owner, std::int64_t nanos, std::int64_t reserved,
                            const std::string &what) {
    check_budget(owner, nanos, reserved, what);
  };
  ctx.notify = [this](const std::string &owner, const json &event) {
    deliver_locally(owner, event);
    if (bus)
      bus->publish(owner, event);
  };
  ctx.log = [this](const std::string &line) { log(line); };
  runner = std::make_unique<JobRunner>(std::move(ctx), options.claim_interval);
  if (!config.redis_url.empty())
    bus = std::make_unique<RedisNotificationBus>(
        config.redis_url, config.redis_prefix, runner->worker_id(),
        [this](const std::string &owner, const json &event) { deliver_locally(owner, event); },
        [this](const std::string &line) { log(line); });
}

void Gateway::Impl::add_routes() {
  auto route = [this](std::string method, std::string pattern, BodyMode body,
                      std::uint64_t max_body, Response (Impl::*handler)(Request &)) {
    Route r;
    r.method = std::move(method);
    r.pattern = std::move(pattern);
    r.body = body;
    r.max_body_bytes = max_body;
    r.handler = [this, handler](Request &req) { return handle(req, handler); };
    server->add_route(std::move(r));
  };
  route("POST", "/api/v1/cards/{cardId}/generate-cover", BodyMode::Memory, kMaxJsonBody,
        &Impl::generate_cover);
  route("POST", "/api/v1/media/generate-video", BodyMode::Memory, kMaxJsonBody,
        &Impl::generate_video);
  route("GET", "/api/v1/media/jobs/{jobId}", BodyMode::None, 0, &Impl::get_job);
  route("GET", "/api/v1/media/jobs", BodyMode::None, 0, &Impl::list_jobs);
  route("POST", "/api/v1/media/analyze-video", BodyMode::File,
        config.max_upload_bytes + kMultipartOverhead, &Impl::analyze_video);
  route("GET", "/api/v1/costs", BodyMode::None, 0, &Impl::costs);

  Route files;
  files.method = "GET";
  files.pattern = "/media/*";
  files.auth = Auth::Public; // media_file() checks the owner when media is not public
  files.on_service_thread = true;
  files.handler = [this](Request &req) { return handle(req, &Impl::media_file); };
  server->add_route(std::move(files));

  Route health;
  health.method = "GET";
  health.pattern = "/healthz";
  health.auth = Auth::Public;
  health.on_service_thread = true;
  health.handler = [](Request &) { return Response::json(200, {{"status", "ok"}}); };
  server->add_route(std::move(health));

  add_kiosk_routes(*server);

  WsRoute notifications;
  notifications.path = "/api/v1/notifications";
  notifications.endpoint = hub;
  server->add_ws_route(std::move(notifications));

  WsRoute live_session;
  live_session.path = "/api/v1/live-session";
  live_session.endpoint = live;
  live_session.max_message_bytes = 1 << 20; // a webcam frame as base64 JSON
  server->add_ws_route(std::move(live_session));
}

Response Gateway::Impl::handle(Request &req, Response (Impl::*handler)(Request &)) {
  try {
    Response r = (this->*handler)(req);
    if (r.content_type.rfind("application/json", 0) == 0)
      r.headers.emplace_back("cache-control", "no-store");
    return r;
  } catch (const HttpError &e) {
    return Response::error(e.status, e.message, e.reason);
  } catch (const Error &e) {
    return error_for(e, req);
  }
}

Response Gateway::Impl::error_for(const Error &e, const Request &req) {
  switch (e.kind()) {
  case ErrorKind::InvalidArgument: return Response::error(400, e.message(), "invalid_argument");
  case ErrorKind::BudgetExceeded: {
    Response r = Response::error(429, e.message(), "budget_exceeded");
    r.headers.emplace_back("retry-after", std::to_string(seconds_to_utc_midnight()));
    return r;
  }
  case ErrorKind::SafetyFiltered:
    return Response::error(422, "the model refused to make it: " + e.message(), "safety_filtered");
  case ErrorKind::TooLarge: return Response::error(413, e.message(), "too_large");
  case ErrorKind::ResourceExhausted: {
    Response r =
        Response::error(503, "the Gemini API quota is exhausted; retry later", "upstream_quota");
    if (e.retry_after())
      r.headers.emplace_back(
          "retry-after",
          std::to_string(std::max<std::int64_t>(
              1, std::chrono::duration_cast<std::chrono::seconds>(*e.retry_after()).count())));
    return r;
  }
  case ErrorKind::Unauthenticated:
  case ErrorKind::PermissionDenied:
    log(req.method + " " + req.path + ": the Gemini API refused the gateway's key: " + e.what());
    return Response::error(502, "the Gemini API refused the gateway's credentials",
                           "upstream_auth");
  case ErrorKind::Timeout:
  case ErrorKind::DeadlineExceeded:
    return Response::error(504, "the Gemini API did not answer in time", "upstream_timeout");
  case ErrorKind::Cancelled:
    return Response::error(503, "the gateway is shutting down; retry shortly", "shutting_down");
  case ErrorKind::NotFound:
  case ErrorKind::Unavailable:
  case ErrorKind::Internal:
  case ErrorKind::Network:
  case ErrorKind::Protocol:
    log(req.method + " " + req.path + ": Gemini API call failed: " + e.what());
    return Response::error(502, "the Gemini API call failed: " + e.message(), "upstream_error");
  case ErrorKind::Config:
  case ErrorKind::Io: break;
  }
  log(req.method + " " + req.path + ": " + e.what());
  return Response::error(500, "internal error while handling the request");
}

std::optional<std::int64_t> Gateway::Impl::budget_nanos(const std::string &user) const {
  if (auto it = config.user_budgets_usd.find(user); it != config.user_budgets_usd.end())
    return usd_to_nanos(it->second);
  if (config.daily_budget_usd)
    return usd_to_nanos(*config.daily_budget_usd);
  return ledger->budget_status(user).budget_nanos;
}

void Gateway::Impl::check_budget(const std::string &user, std::int64_t nanos, std::int64_t reserved,
                                 const std::string &what) const {
  const auto budget = budget_nanos(user);
  if (!budget || nanos <= 0)
    return;
  const std::int64_t spent = ledger->spent_nanos(user, utc_day(std::chrono::system_clock::now()));
  if (spent + reserved + nanos <= *budget)
    return;
  const auto usd = [](std::int64_t n) { return format_usd(double(n) / kNanosPerUsd); };
  std::string message =
      what + " would cost " + usd(nanos) + "; today's spending for " + user + " is " + usd(spent);
  if (reserved > 0)
    message += " plus " + usd(reserved) + " for unfinished jobs";
  message += ", of the " + usd(*budget) + " daily budget";
  throw Error(ErrorKind::BudgetExceeded, message);
}

// ---- POST /api/v1/cards/{cardId}/generate-cover ----------------------------------------------

Response Gateway::Impl::generate_cover(Request &req) {
  const std::string card = req.params["cardId"];
  if (!is_identifier(card))
    bad_request("invalid card id: use 1 to 64 letters, digits, '_' or '-'", "invalid_card_id");
  const json body =
      string_fields(req, {"motif", "style", "palette", "model", "aspectRatio"}, {"motif"});
  const std::string prompt = build_card_cover_prompt(
      media, {field(body, "motif"), field(body, "style"), field(body, "palette")});
  const std::string model_name = field(body, "model");
  const ImageModel *model = nullptr;
  try {
    model = &media.image_model(model_name.empty() ? media.defaults.card_cover_manual : model_name);
  } catch (const Error &e) {
    bad_request(e.message(), "unknown_model");
  }
  std::string aspect = field(body, "aspectRatio");
  if (aspect.empty())
    aspect = media.defaults.image_aspect_ratio;
  const auto &ratios = model->api == ImageApi::Predict ? kImagenRatios : kGeminiImageRatios;
  if (!ratios.contains(aspect)) {
    std::string list;
    for (const auto &r : ratios)
      list += (list.empty() ? "" : ", ") + r;
    bad_request(model->display_name + " does not make " + aspect + " images (it makes " + list +
                    ")",
                "invalid_aspect_ratio");
  }

  CostEntry cost = price_images(media, model->key, 1);
  check_budget(req.user, cost.usd_nanos, store->reserved_nanos(req.user), "this cover");

  GenAiClient client(endpoint, options.client);
  const ImageResult image =
      client.generate_image({model->id, model->api, prompt, aspect}, requests);
  const bool jpeg = image.mime_type == "image/jpeg";
  const fs::path dir = config.media_dir / "covers" / req.user;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw Error(ErrorKind::Io, "cannot create " + dir.string() + ": " + ec.message());
  const fs::path file = dir / (card + (jpeg ? ".jpg" : ".png"));
  write_file_atomically(file, image.bytes);

  cost.user = req.user;
  cost.request_id = image.model_version;
  cost.note = "gateway cover for card " + card + " -> " + file.string() + "; " + cost.note;
  cost.id = ledger->record(cost);
  return Response::json(200, {{"cardId", card},
                              {"url", media_url(config.media_dir, file)},
                              {"mimeType", jpeg ? "image/jpeg" : "image/png"},
                              {"sizeBytes", image.bytes.size()},
                              {"model", model->id},
                              {"cost", money(cost.usd_nanos)}});
}

// ---- Video jobs ------------------------------------------------------------------------------

Response Gateway::Impl::generate_video(Request &req) {
  const json body = string_fields(
      req, {"description", "mood", "model", "aspectRatio", "resolution"}, {"description"});
  VideoJobSpec spec;
  spec.description = field(body, "description");
  spec.mood = field(body, "mood");
  spec.aspect_ratio = field(body, "aspectRatio");
  spec.resolution = field(body, "resolution");
  const JobRecord job = enqueue_video(req.user, std::move(spec), field(body, "model"));
  const auto created = store->get(job.id);
  Response r = Response::json(202, job_json(created ? *created : job));
  r.headers.emplace_back("location", "/api/v1/media/jobs/" + job.id);
  return r;
}

JobRecord Gateway::Impl::enqueue_video(const std::string &owner, VideoJobSpec spec,
                                       const std::string &model_name,
                                       const std::function<void(const std::string &)> &created) {
  build_background_video_prompt(media, {spec.description, spec.mood}); // validates both
  const VideoModel *model = nullptr;
  try {
    model = &media.video_model(model_name.empty() ? media.defaults.background_video : model_name);
  } catch (const Error &e) {
    bad_request(e.message(), "unknown_model");
  }
  spec.model_key = model->key;
  if (spec.aspect_ratio.empty())
    spec.aspect_ratio = media.defaults.video_aspect_ratio;
  if (spec.resolution.empty())
    spec.resolution = media.defaults.video_resolution;
  if (spec.aspect_ratio != "16:9" && spec.aspect_ratio != "9:16")
    bad_request("aspectRatio must be \"16:9\" or \"9:16\"", "invalid_aspect_ratio");
  if (spec.resolution != "720p" && spec.resolution != "1080p")
    bad_request("resolution must be \"720p\" or \"1080p\"", "invalid_resolution");
  if (spec.resolution == "1080p" && spec.aspect_ratio != "16:9")
    bad_request("1080p videos are 16:9 only", "invalid_resolution");

  if (store->unfinished_count(owner) >= config.max_unfinished_jobs_per_user)
    throw HttpError{429,
                    "you have " + std::to_string(config.max_unfinished_jobs_per_user) +
                        " unfinished video jobs, the most allowed; wait for one to finish",
                    "too_many_jobs"};
  const CostEntry estimate = price_video(media, model->key, model->duration_seconds);
  check_budget(owner, estimate.usd_nanos, store->reserved_nanos(owner), "this video");

  JobRecord job;
  job.id = new_job_id();
  job.owner = owner;
  job.kind = "video";
  job.spec_json = spec.to_json().dump();
  job.estimate_nanos = estimate.usd_nanos;
  store->create(job);
  if (created)
    created(job.id);
  runner->wake();
  return job;
}

json Gateway::Impl::job_json(const JobRecord &job) const {
  json out = {{"jobId", job.id},
              {"state", to_string(job.state)},
              {"phase", job.phase},
              {"progress", std::round(job.progress * 1000) / 1000},
              {"createdAt", rfc3339(job.created)},
              {"updatedAt", rfc3339(job.updated)},
              {"attempts", job.attempts},
              {"request", json::parse(job.spec_json, nullptr, false)},
              {"estimatedCost", money(job.estimate_nanos)}};
  if (job.finished != TimePoint{})
    out["finishedAt"] = rfc3339(job.finished);
  if (job.state == JobState::Succeeded) {
    const json result = json::parse(job.result_json, nullptr, false);
    if (result.is_object())
      for (const auto &[k, v] : result.items())
        out[k] = v;
    out["cost"] = money(job.cost_nanos);
  }
  if (job.state == JobState::Failed)
    out["error"] = job.error;
  return out;
}

Response Gateway::Impl::get_job(Request &req) {
  const std::string id = req.params["jobId"];
  const auto job = is_identifier(id) ? store->get(id) : std::nullopt;
  // Another user's job is reported as missing: its existence is not theirs to know.
  if (!job || job->owner != req.user)
    throw HttpError{404, "no such job: " + id, "not_found"};
  return Response::json(200, job_json(*job));
}

Response Gateway::Impl::list_jobs(Request &req) {
  std::size_t limit = 50;
  if (const auto text = req.query_param("limit")) {
    char *end = nullptr;
    const long n = std::strtol(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || n < 1 || n > 500)
      bad_request("limit must be a whole number from 1 to 500");
    limit = static_cast<std::size_t>(n);
  }
  json jobs = json::array();
  for (const auto &job : store->list(req.user, limit))
    jobs.push_back(job_json(job));
  return Response::json(200, {{"jobs", std::move(jobs)}});
}

// ---- POST /api/v1/media/analyze-video --------------------------------------------------------

Response Gateway::Impl::analyze_video(Request &req) {
  const auto boundary = multipart_boundary(req.header("content-type"));
  if (!boundary)
    throw HttpError{415,
                    "send the video as multipart/form-data with the fields \"video\" (the file) "
                    "and \"question\"",
                    "expected_multipart"};
  const MultipartBody body(req.body_file);
  const MultipartPart *video = nullptr;
  std::string question;
  AnalysisOptions opts;
  opts.model_id = media.pricing.video_analysis.model;
  opts.user = req.user;
  opts.limits.max_bytes = config.max_upload_bytes;
  const auto parts = body.parts(*boundary);
  for (const auto &part : parts) {
    if (part.name == "video") {
      if (video)
        bad_request("send one \"video\" field");
      video = &part;
    } else if (part.name == "question") {
      question = body.text(part);
    } else {
      bad_request("unknown field \"" + part.name + "\" (known: video, question)", "unknown_field");
    }
  }
  if (!video)
    bad_request("the \"video\" field (the file) is missing", "missing_field");
  if (question.find_first_not_of(" \t\r\n") == std::string::npos)
    bad_request("the \"question\" field is missing or empty", "missing_field");
  if (question.size() > kMaxQuestionLength)
    bad_request("the question is longer than " + std::to_string(kMaxQuestionLength) +
                " characters");
  if (video->length == 0)
    bad_request("the uploaded video is empty", "empty_upload");
  if (video->length > config.max_upload_bytes)
    throw HttpError{413,
                    "the video is " + std::to_string(video->length) + " bytes; the limit is " +
                        std::to_string(config.max_upload_bytes) + " bytes",
                    "too_large"};

  const std::string client_name = video->filename.value_or("video");
  const std::string head = body.text(
      {video->name, {}, {}, video->offset, std::min<std::uint64_t>(video->length, kSniffBytes)});
  const std::string ext = sniff_video(head, client_name);
  TempFile upload{spool_dir / ("video-" + new_job_id().substr(4) + ext)};
  body.save(*video, upload.path);

  ProbeLimits probe_limits = opts.limits;
  probe_limits.require_video = false;
  MediaInfo info;
  try {
    info = probe_media(upload.path, probe_limits);
  } catch (const Error &e) {
    std::string message = e.message();
    const std::string prefix = upload.path.string() + ": ";
    if (message.rfind(prefix, 0) == 0)
      message = client_name + ": " + message.substr(prefix.size());
    if (e.kind() == ErrorKind::InvalidArgument)
      bad_request(message, "invalid_video");
    throw;
  }
  if (!info.video())
    throw HttpError{415, client_name + ": the file has no video stream", "not_a_video"};

  VideoAnalyzer analyzer(endpoint, media, ledger, options.client);
  check_budget(req.user, usd_to_nanos(analyzer.estimate_usd(info, question, opts)),
               store->reserved_nanos(req.user), "this analysis");
  const AnalysisResult result = analyzer.analyze(upload.path, question, opts, requests);
  const MediaStreamInfo *v = info.video();
  return Response::json(200, {{"text", result.text},
                              {"method", to_string(result.method)},
                              {"model", opts.model_id},
                              {"video",
                               {{"fileName", client_name},
                                {"mimeType", info.mime_type},
                                {"sizeBytes", info.size_bytes},
                                {"durationSeconds", info.duration_s},
                                {"width", v->width},
                                {"height", v->height},
                                {"codec", v->codec}}},
                              {"cost", money(result.cost.usd_nanos)}});
}

// ---- GET /api/v1/costs -----------------------------------------------------------------------

Response Gateway::Impl::costs(Request &req) {
  CostFilter filter;
  filter.user = req.user;
  const std::string today = utc_day(std::chrono::system_clock::now());
  if (const auto day = req.query_param("day")) {
    if (*day == "today")
      filter.day = today;
    else if (*day == "yesterday")
      filter.day = utc_day(std::chrono::system_clock::now() - std::chrono::hours(24));
    else if (is_day(*day))
      filter.day = *day;
    else
      bad_request("day must be YYYY-MM-DD, today or yesterday", "invalid_day");
  }
  json totals = json::array();
  std::int64_t sum = 0;
  for (const auto &t : ledger->totals(filter)) {
    sum += t.usd_nanos;
    totals.push_back({{"day", t.day},
                      {"kind", to_string(t.kind)},
                      {"model", t.model},
                      {"unit", t.unit},
                      {"calls", t.calls},
                      {"units", t.units},
                      {"inputTokens", t.input_tokens},
                      {"outputTokens", t.output_tokens},
                      {"usd", t.usd()},
                      {"usdNanos", t.usd_nanos}});
  }
  const auto budget = budget_nanos(req.user);
  const std::int64_t spent = ledger->spent_nanos(req.user, today);
  const std::int64_t reserved = store->reserved_nanos(req.user);
  json out = {{"user", req.user},
              {"totals", std::move(totals)},
              {"total", money(sum)},
              {"today",
               {{"day", today},
                {"spent", money(spent)},
                {"reserved", money(reserved)},
                {"dailyBudget", budget ? money(*budget) : json(nullptr)},
                {"remaining", budget ? money(std::max<std::int64_t>(0, *budget - spent - reserved))
                                     : json(nullptr)}}}};
  if (!filter.day.empty())
    out["day"] = filter.day;
  return Response::json(200, out);
}

// ---- GET /media/... (service thread: must not block) ----------------------------------------

Response Gateway::Impl::media_file(Request &req) {
  const auto relative = media_relative_path(req.params["*"]);
  if (!relative)
    bad_request("invalid media path: segments are letters, digits, '.', '_' and '-', none "
                "starting with '.'",
                "invalid_path");
  if (!config.media_public) {
    auto it = relative->begin();
    const std::string area = it != relative->end() ? (it++)->string() : "";
    const std::string owner = it != relative->end() ? it->string() : "";
    std::optional<std::string> token;
    if (const std::string auth = req.header("authorization"); !auth.empty())
      token = bearer_token(auth).value_or("");
    else
      token = req.query_param("token");
    if (!token)
      throw HttpError{401, "media files need the owner's bearer token", "missing_token"};
    const auto user = config.user_for_token(*token);
    if (!user)
      throw HttpError{401, "the bearer token is not valid", "invalid_token"};
    if ((area != "covers" && area != "videos") || owner != *user)
      throw HttpError{404, "no such media file: " + relative->generic_string(), "not_found"};
  }
  return serve_file(req, config.media_dir, *relative);
}

// ---------------------------------------------------------------------------------------------

Gateway::Gateway(GatewayConfig config, GatewayOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options))) {}

Gateway::~Gateway() {
  stop();
}

void Gateway::start() {
  if (impl_->started)
    return;
  impl_->requests.reset();
  impl_->server->start();
  if (impl_->bus)
    impl_->bus->start();
  impl_->runner->start();
  impl_->started = true;
  impl_->log("listening on " + impl_->server->base_url() + " (job worker " +
             impl_->runner->worker_id() + ")");
}

void Gateway::stop() {
  if (!impl_->started)
    return;
  impl_->requests.cancel();
  impl_->live->close_all();
  impl_->runner->stop();
  if (impl_->bus)
    impl_->bus->stop();
  impl_->server->stop();
  // Conversations opened while close_all() ran, and the sockets server->stop() closed, end now,
  // before the job runner and the server they use can go away.
  impl_->live->close_all();
  impl_->started = false;
}

std::uint16_t Gateway::port() const {
  return impl_->server->port();
}
std::string Gateway::base_url() const {
  return impl_->server->base_url();
}
JobStore &Gateway::jobs() {
  return *impl_->store;
}

} // namespace gemstream::gateway
