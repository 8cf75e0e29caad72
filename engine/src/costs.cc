#include "gemstream/costs.h"

#include "gemstream/error.h"
#include "gemstream/genai.h"
#include "gemstream/live.h"

#include "sqlite_util.h"

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <system_error>
#include <utility>

namespace gemstream {
namespace {

using json = nlohmann::json;

// 'gems': marks the database as a gemstream ledger (PRAGMA application_id).
constexpr int kApplicationId = 0x67656d73;
constexpr int kSchemaVersion = 1;
constexpr int kBusyTimeoutMs = 10000;
constexpr const char *kDefaultBudgetKey = "daily_budget_usd";

std::string environment(const char *name) {
  const char *value = std::getenv(name);
  return value ? value : "";
}

std::int64_t nanos(double usd) {
  return std::llround(usd * static_cast<double>(kNanosPerUsd));
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  const std::time_t secs =
      static_cast<std::time_t>(std::chrono::floor<std::chrono::seconds>(ms).count());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(((ms.count() % 1000) + 1000) % 1000));
  return buf;
}

std::chrono::system_clock::time_point parse_rfc3339(const std::string &text) {
  std::tm tm{};
  int millis = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &millis) < 6)
    return {};
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::milliseconds(millis);
}

json modality_json(const std::map<std::string, std::int64_t> &m) {
  json j = json::object();
  for (const auto &[k, v] : m)
    j[k] = v;
  return j;
}

std::map<std::string, std::int64_t> modality_map(const json &j) {
  std::map<std::string, std::int64_t> m;
  if (j.is_object())
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.value().is_number_integer())
        m[it.key()] = it.value().get<std::int64_t>();
  return m;
}

std::int64_t modality_total(const TokenUsage &t, const char *modality) {
  std::int64_t n = 0;
  if (auto it = t.input_by_modality.find(modality); it != t.input_by_modality.end())
    n += it->second;
  if (auto it = t.output_by_modality.find(modality); it != t.output_by_modality.end())
    n += it->second;
  return n;
}

// ---- SQLite RAII ---------------------------------------------------------------------------

using sqlite::DbPtr;

// The shared statement wrapper, naming this database in its errors.
class Statement : public sqlite::Statement {
public:
  Statement(sqlite3 *db, const char *sql, const std::filesystem::path &path)
      : sqlite::Statement(db, sql, "cost ledger", path) {}
};

void exec(sqlite3 *db, const char *sql, const std::filesystem::path &path) {
  sqlite::exec(db, sql, "cost ledger", path);
}

constexpr const char *kSchema = R"sql(
CREATE TABLE IF NOT EXISTS costs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time TEXT NOT NULL,
  day TEXT NOT NULL,
  user TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('image', 'video', 'live', 'analysis', 'search')),
  model TEXT NOT NULL,
  units REAL NOT NULL,
  unit TEXT NOT NULL,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  text_tokens INTEGER NOT NULL DEFAULT 0,
  image_tokens INTEGER NOT NULL DEFAULT 0,
  audio_tokens INTEGER NOT NULL DEFAULT 0,
  video_tokens INTEGER NOT NULL DEFAULT 0,
  tokens_json TEXT NOT NULL DEFAULT '{}',
  usd_nanos INTEGER NOT NULL CHECK (usd_nanos >= 0),
  request_id TEXT NOT NULL DEFAULT '',
  note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS costs_by_user_day ON costs (user, day);
CREATE INDEX IF NOT EXISTS costs_by_day ON costs (day);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql";

// WHERE clause and its bound values for a filter.
struct Where {
  std::string sql;
  std::vector<std::string> values;
};

Where where_of(const CostFilter &f) {
  Where w;
  auto add = [&w](const char *clause, const std::string &value) {
    w.sql += w.sql.empty() ? " WHERE " : " AND ";
    w.sql += clause;
    w.values.push_back(value);
  };
  if (!f.user.empty())
    add("user = ?", f.user);
  if (!f.day.empty())
    add("day = ?", f.day);
  if (!f.from_day.empty())
    add("day >= ?", f.from_day);
  if (!f.to_day.empty())
    add("day <= ?", f.to_day);
  if (f.kind)
    add("kind = ?", to_string(*f.kind));
  return w;
}

std::optional<double> parse_usd(const std::string &text) {
  if (text.empty())
    return std::nullopt;
  const char *begin = text.c_str();
  if (*begin == '$')
    ++begin;
  char *end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin || *end != '\0' || !std::isfinite(v) || v < 0)
    return std::nullopt;
  return v;
}

} // namespace

// ---- kinds, usage, pricing -------------------------------------------------------------------

const char *to_string(CostKind kind) noexcept {
  switch (kind) {
  case CostKind::Image: return "image";
  case CostKind::Video: return "video";
  case CostKind::Live: return "live";
  case CostKind::Analysis: return "analysis";
  case CostKind::Search: return "search";
  }
  return "image";
}

std::optional<CostKind> cost_kind_from_string(std::string_view text) noexcept {
  for (CostKind k :
       {CostKind::Image, CostKind::Video, CostKind::Live, CostKind::Analysis, CostKind::Search})
    if (text == to_string(k))
      return k;
  return std::nullopt;
}

TokenUsage token_usage(const UsageDetails &u) {
  TokenUsage t;
  t.input_tokens = u.prompt_tokens + u.tool_use_prompt_tokens;
  t.output_tokens = u.candidates_tokens + u.thoughts_tokens;
  for (const auto &m : u.prompt_details)
    t.input_by_modality[m.modality] += m.tokens;
  for (const auto &m : u.candidates_details)
    t.output_by_modality[m.modality] += m.tokens;
  return t;
}

TokenUsage token_usage(const LiveUsage &u) {
  TokenUsage t;
  t.input_tokens = u.prompt_token_count + u.tool_use_prompt_token_count;
  t.output_tokens = u.response_token_count + u.thoughts_token_count;
  for (const auto &m : u.prompt_tokens_details)
    t.input_by_modality[m.modality] += m.token_count;
  for (const auto &m : u.tool_use_prompt_tokens_details)
    t.input_by_modality[m.modality] += m.token_count;
  for (const auto &m : u.response_tokens_details)
    t.output_by_modality[m.modality] += m.token_count;
  return t;
}

std::string CostEntry::day() const {
  return utc_day(time);
}

std::int64_t usd_to_nanos(double usd) {
  return nanos(usd);
}

CostEntry price_images(const MediaConfig &config, const std::string &model, int images) {
  const ImageModel &m = config.image_model(model);
  CostEntry e;
  e.kind = CostKind::Image;
  e.model = m.id;
  e.units = images;
  e.unit = "image";
  e.usd_nanos = nanos(m.usd_per_image * images);
  e.note =
      std::to_string(images) + " x " + format_usd(m.usd_per_image) + " (" + m.display_name + ")";
  return e;
}

CostEntry price_video(const MediaConfig &config, const std::string &model, double seconds) {
  const VideoModel &m = config.video_model(model);
  CostEntry e;
  e.kind = CostKind::Video;
  e.model = m.id;
  e.units = seconds;
  e.unit = "second";
  e.usd_nanos = nanos(m.usd_per_second * seconds);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g s x ", seconds);
  e.note = buf + format_usd(m.usd_per_second) + "/s (" + m.display_name + ")";
  return e;
}

CostEntry price_live(const MediaConfig &config, const std::string &model_id,
                     const TokenUsage &tokens) {
  const auto &p = config.pricing.live_native_audio;
  CostEntry e;
  e.kind = CostKind::Live;
  e.model = model_id;
  e.tokens = tokens;
  e.units = static_cast<double>(tokens.input_tokens + tokens.output_tokens);
  e.unit = "token";
  // Per token: usd_per_million / 1e6 dollars = usd_per_million * 1000 nano-dollars.
  e.usd_nanos = std::llround(
      static_cast<double>(tokens.input_tokens) * p.usd_per_million_input_tokens * 1000.0 +
      static_cast<double>(tokens.output_tokens) * p.usd_per_million_output_tokens * 1000.0);
  e.note = std::to_string(tokens.input_tokens) + " input tokens at " +
           format_usd(p.usd_per_million_input_tokens) + "/M, " +
           std::to_string(tokens.output_tokens) + " output tokens at " +
           format_usd(p.usd_per_million_output_tokens) + "/M";
  return e;
}

CostEntry price_analysis(const MediaConfig &config, const std::string &model_id,
                         const TokenUsage &tokens) {
  const auto &p = config.pricing.video_analysis;
  CostEntry e;
  e.kind = CostKind::Analysis;
  e.model = model_id;
  e.tokens = tokens;
  const std::int64_t all = tokens.input_tokens + tokens.output_tokens;
  e.units = static_cast<double>(all);
  e.unit = "token";
  e.usd_nanos = std::llround(static_cast<double>(all) * p.usd_per_million_tokens * 1000.0);
  e.note = std::to_string(all) + " tokens at " + format_usd(p.usd_per_million_tokens) + "/M";
  return e;
}

CostEntry price_search(const MediaConfig &config, const std::string &model_id,
                       const TokenUsage &tokens, int requests) {
  CostEntry e = price_analysis(config, model_id, tokens);
  const double per_1000 = config.pricing.search_grounding.usd_per_1000_requests;
  e.kind = CostKind::Search;
  e.units = requests;
  e.unit = "request";
  e.usd_nanos += nanos(per_1000 * requests / 1000.0);
  e.note = std::to_string(requests) + " search request(s) at " + format_usd(per_1000) + "/1000 + " +
           e.note;
  return e;
}

std::string format_usd(double usd) {
  char buf[64];
  if (usd >= 1.0 || usd == 0.0) {
    std::snprintf(buf, sizeof buf, "$%.2f", usd);
    return buf;
  }
  // Three significant digits, trailing zeros kept to at least cents ("$0.50", "$0.035").
  const int decimals = std::max(2, 2 - static_cast<int>(std::floor(std::log10(usd))));
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 12), usd);
  std::string text = buf;
  while (text.back() == '0' && text.size() - text.find('.') > 3)
    text.pop_back();
  return "$" + text;
}

std::string current_user() {
  for (const char *name : {"USER", "LOGNAME"})
    if (auto v = environment(name); !v.empty())
      return v;
  return "default";
}

std::string utc_day(std::chrono::system_clock::time_point t) {
  return rfc3339(t).substr(0, 10);
}

// ---- ledger --------------------------------------------------------------------------------

struct CostLedger::Impl {
  std::filesystem::path path;
  mutable std::mutex mutex; // one statement at a time on the connection
  DbPtr db;
};

std::filesystem::path CostLedger::default_path() {
  if (auto p = environment("GEMSTREAM_LEDGER"); !p.empty())
    return p;
  if (auto xdg = environment("XDG_DATA_HOME"); !xdg.empty() && xdg.front() == '/')
    return std::filesystem::path(xdg) / "gemstream" / "ledger.sqlite";
  if (auto home = environment("HOME"); !home.empty())
    return std::filesystem::path(home) / ".local" / "share" / "gemstream" / "ledger.sqlite";
  throw Error(ErrorKind::Config,
              "no place for the cost ledger: set GEMSTREAM_LEDGER, XDG_DATA_HOME or HOME");
}

CostLedger::CostLedger(const std::filesystem::path &path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  if (path.has_parent_path()) {
    std::error_code ec;
    const bool created = std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      throw Error(ErrorKind::Io, "cannot create the directory of the cost ledger " + path.string() +
                                     ": " + ec.message() +
                                     " (set GEMSTREAM_LEDGER to a writable path)");
    if (created)
      ::chmod(path.parent_path().c_str(), 0700);
  }
  sqlite3 *raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  impl_->db.reset(raw);
  if (rc != SQLITE_OK)
    throw Error(ErrorKind::Io, "cannot open the cost ledger " + path.string() + ": " +
                                   (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)) +
                                   " (set GEMSTREAM_LEDGER to a writable path)");
  sqlite3 *db = impl_->db.get();
  ::chmod(path.c_str(), 0600); // spending is personal; the WAL and SHM files follow this mode
  sqlite3_busy_timeout(db, kBusyTimeoutMs);

  {
    Statement id(db, "PRAGMA application_id", path);
    id.step();
    const std::int64_t app = id.integer(0);
    if (app != 0 && app != kApplicationId)
      throw Error(ErrorKind::Config, path.string() + " is not a gemstream cost ledger");
    if (app == 0) {
      Statement tables(db,
                       "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT IN "
                       "('costs', 'settings', 'sqlite_sequence')",
                       path);
      tables.step();
      if (tables.integer(0) != 0)
        throw Error(ErrorKind::Config, path.string() + " is not a gemstream cost ledger");
    }
  }
  {
    Statement wal(db, "PRAGMA journal_mode = WAL", path);
    if (!wal.step() || wal.text(0) != "wal")
      throw Error(ErrorKind::Io, "cost ledger " + path.string() +
                                     ": cannot switch to write-ahead logging (is it on a "
                                     "network file system?)");
  }
  exec(db, "PRAGMA synchronous = FULL", path);
  exec(db, "BEGIN IMMEDIATE", path);
  try {
    Statement version(db, "PRAGMA user_version", path);
    version.step();
    if (version.integer(0) > kSchemaVersion)
      throw Error(ErrorKind::Config, "the cost ledger " + path.string() + " has schema version " +
                                         std::to_string(version.integer(0)) +
                                         "; this build reads version " +
                                         std::to_string(kSchemaVersion));
    exec(db, kSchema, path);
    exec(db, ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str(), path);
    exec(db, ("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str(), path);
    exec(db, "COMMIT", path);
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

CostLedger::~CostLedger() = default;

const std::filesystem::path &CostLedger::path() const noexcept {
  return impl_->path;
}

std::int64_t CostLedger::record(CostEntry e) {
  if (e.time == std::chrono::system_clock::time_point{})
    e.time = std::chrono::system_clock::now();
  if (e.user.empty())
    e.user = current_user();
  if (e.usd_nanos < 0)
    throw Error(ErrorKind::InvalidArgument, "a cost must not be negative");
  const json tokens = {{"input", modality_json(e.tokens.input_by_modality)},
                       {"output", modality_json(e.tokens.output_by_modality)}};
  std::lock_guard lock(impl_->mutex);
  Statement insert(impl_->db.get(),
                   "INSERT INTO costs (time, day, user, kind, model, units, unit, input_tokens, "
                   "output_tokens, text_tokens, image_tokens, audio_tokens, video_tokens, "
                   "tokens_json, usd_nanos, request_id, note) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   impl_->path);
  insert.bind(1, rfc3339(e.time))
      .bind(2, utc_day(e.time))
      .bind(3, e.user)
      .bind(4, std::string(to_string(e.kind)))
      .bind(5, e.model)
      .bind(6, e.units)
      .bind(7, e.unit)
      .bind(8, e.tokens.input_tokens)
      .bind(9, e.tokens.output_tokens)
      .bind(10, modality_total(e.tokens, "TEXT"))
      .bind(11, modality_total(e.tokens, "IMAGE"))
      .bind(12, modality_total(e.tokens, "AUDIO"))
      .bind(13, modality_total(e.tokens, "VIDEO"))
      .bind(14, tokens.dump())
      .bind(15, e.usd_nanos)
      .bind(16, e.request_id)
      .bind(17, e.note);
  insert.step();
  return sqlite3_last_insert_rowid(impl_->db.get());
}

std::vector<CostEntry> CostLedger::entries(const CostFilter &filter) const {
  const Where w = where_of(filter);
  const std::string sql = "SELECT id, time, user, kind, model, units, unit, input_tokens, "
                          "output_tokens, tokens_json, usd_nanos, request_id, note FROM costs" +
                          w.sql + " ORDER BY id";
  std::lock_guard lock(impl_->mutex);
  Statement q(impl_->db.get(), sql.c_str(), impl_->path);
  for (std::size_t i = 0; i < w.values.size(); ++i)
    q.bind(static_cast<int>(i + 1), w.values[i]);
  std::vector<CostEntry> out;
  while (q.step()) {
    CostEntry e;
    e.id = q.integer(0);
    e.time = parse_rfc3339(q.text(1));
    e.user = q.text(2);
    e.kind = cost_kind_from_string(q.text(3)).value_or(CostKind::Image);
    e.model = q.text(4);
    e.units = q.real(5);
    e.unit = q.text(6);
    e.tokens.input_tokens = q.integer(7);
    e.tokens.output_tokens = q.integer(8);
    const json tokens = json::parse(q.text(9), nullptr, false);
    if (tokens.is_object()) {
      e.tokens.input_by_modality = modality_map(tokens.value("input", json::object()));
      e.tokens.output_by_modality = modality_map(tokens.value("output", json::object()));
    }
    e.usd_nanos = q.integer(10);
    e.request_id = q.text(11);
    e.note = q.text(12);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<CostTotal> CostLedger::totals(const CostFilter &filter) const {
  const Where w = where_of(filter);
  const std::string sql =
      "SELECT day, user, kind, model, unit, count(*), total(units), sum(input_tokens), "
      "sum(output_tokens), sum(usd_nanos) FROM costs" +
      w.sql + " GROUP BY day, user, kind, model, unit ORDER BY day, user, kind, model, unit";
  std::lock_guard lock(impl_->mutex);
  Statement q(impl_->db.get(), sql.c_str(), impl_->path);
  for (std::size_t i = 0; i < w.values.size(); ++i)
    q.bind(static_cast<int>(i + 1), w.values[i]);
  std::vector<CostTotal> out;
  while (q.step()) {
    CostTotal t;
    t.day = q.text(0);
    t.user = q.text(1);
    t.kind = cost_kind_from_string(q.text(2)).value_or(CostKind::Image);
    t.model = q.text(3);
    t.unit = q.text(4);
    t.calls = q.integer(5);
    t.units = q.real(6);
    t.input_tokens = q.integer(7);
    t.output_tokens = q.integer(8);
    t.usd_nanos = q.integer(9);
    out.push_back(std::move(t));
  }
  return out;
}

std::int64_t CostLedger::spent_nanos(const std::string &user, const std::string &day) const {
  std::lock_guard lock(impl_->mutex);
  Statement q(impl_->db.get(),
              "SELECT coalesce(sum(usd_nanos), 0) FROM costs WHERE user = ? AND day = ?",
              impl_->path);
  q.bind(1, user).bind(2, day);
  q.step();
  return q.integer(0);
}

BudgetStatus CostLedger::budget_status(const std::string &user) const {
  BudgetStatus s;
  s.user = user;
  s.day = utc_day(std::chrono::system_clock::now());
  s.spent_nanos = spent_nanos(user, s.day);
  if (const auto env = environment("GEMSTREAM_DAILY_BUDGET_USD"); !env.empty()) {
    const auto usd = parse_usd(env);
    if (!usd)
      throw Error(ErrorKind::Config, "GEMSTREAM_DAILY_BUDGET_USD must be an amount in dollars "
                                     "such as \"10\" or \"2.50\", got \"" +
                                         env + "\"");
    s.budget_nanos = nanos(*usd);
    s.source = "GEMSTREAM_DAILY_BUDGET_USD";
    return s;
  }
  std::lock_guard lock(impl_->mutex);
  for (const auto &[key, source] :
       {std::pair{std::string(kDefaultBudgetKey) + ":" + user, "the ledger setting for " + user},
        std::pair{std::string(kDefaultBudgetKey), std::string("the ledger's default setting")}}) {
    Statement q(impl_->db.get(), "SELECT value FROM settings WHERE key = ?", impl_->path);
    q.bind(1, key);
    if (q.step()) {
      if (const auto usd = parse_usd(q.text(0))) {
        s.budget_nanos = nanos(*usd);
        s.source = source;
        return s;
      }
    }
  }
  return s;
}

void CostLedger::set_daily_budget(const std::string &user, std::optional<double> usd) {
  if (usd && (!std::isfinite(*usd) || *usd < 0))
    throw Error(ErrorKind::InvalidArgument, "a daily budget must be zero or more dollars");
  const std::string key =
      user.empty() ? kDefaultBudgetKey : std::string(kDefaultBudgetKey) + ":" + user;
  std::lock_guard lock(impl_->mutex);
  if (!usd) {
    Statement del(impl_->db.get(), "DELETE FROM settings WHERE key = ?", impl_->path);
    del.bind(1, key);
    del.step();
    return;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9f", *usd);
  Statement put(impl_->db.get(),
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                impl_->path);
  put.bind(1, key).bind(2, std::string(buf));
  put.step();
}

void CostLedger::check_budget(const std::string &user, double estimated_usd,
                              std::string_view what) const {
  const BudgetStatus s = budget_status(user);
  const std::int64_t estimate = nanos(std::max(0.0, estimated_usd));
  if (!s.budget_nanos || estimate == 0 || s.spent_nanos + estimate <= *s.budget_nanos)
    return;
  const auto usd = [](std::int64_t n) { return format_usd(static_cast<double>(n) / kNanosPerUsd); };
  std::string message = std::string(what) + " would cost " + usd(estimate) +
                        "; today's spending for " + user + " is " + usd(s.spent_nanos) +
                        " of the " + usd(*s.budget_nanos) + " daily budget (set by " + s.source +
                        ")";
  throw Error(ErrorKind::BudgetExceeded, std::move(message));
}

std::string CostLedger::integrity_check() const {
  std::lock_guard lock(impl_->mutex);
  Statement q(impl_->db.get(), "PRAGMA integrity_check", impl_->path);
  std::string out;
  while (q.step()) {
    if (!out.empty())
      out += "; ";
    out += q.text(0);
  }
  return out;
}

} // namespace gemstream
