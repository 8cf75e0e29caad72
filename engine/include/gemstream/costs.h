// Cost accounting: every paid call priced from config/media_generation.json and the call's
// usageMetadata, appended to a durable ledger, with per-user daily budgets checked before any
// request is sent.
//
// The ledger is an SQLite database (default $GEMSTREAM_LEDGER, else
// $XDG_DATA_HOME/gemstream/ledger.sqlite, else ~/.local/share/gemstream/ledger.sqlite) in WAL
// mode with synchronous=FULL: each record() is one transaction that is on disk when it returns,
// so a crash or `kill -9` mid-write loses at most the row being written and never corrupts the
// rows before it, and a power loss cannot lose a committed row either (NORMAL would survive
// crashes but could drop the last commits on power loss; one fsync per paid API call is cheap).
// Amounts are stored as integer nano-dollars, so totals are exact sums of the rows.
//
// Thread- and process-safe: every CostLedger has its own connection guarded by a mutex; other
// processes are waited for (busy timeout) rather than failed.
#pragma once

#include "gemstream/config.h"
#include "gemstream/export.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gemstream {

struct LiveUsage;
struct UsageDetails;

enum class CostKind { Image, Video, Live, Analysis, Search };

GEMSTREAM_API const char *to_string(CostKind kind) noexcept; // "image", "video", ...
GEMSTREAM_API std::optional<CostKind> cost_kind_from_string(std::string_view text) noexcept;

// Tokens of one call, by modality ("TEXT", "IMAGE", "AUDIO", "VIDEO") as usageMetadata reports
// them. Input counts the prompt (and tool-use prompt); output the answer (and thoughts).
struct TokenUsage {
  std::int64_t input_tokens = 0;
  std::int64_t output_tokens = 0;
  std::map<std::string, std::int64_t> input_by_modality;
  std::map<std::string, std::int64_t> output_by_modality;
};

GEMSTREAM_API TokenUsage token_usage(const UsageDetails &usage);
GEMSTREAM_API TokenUsage token_usage(const LiveUsage &usage);

inline constexpr std::int64_t kNanosPerUsd = 1'000'000'000;

// One priced call: one ledger row.
struct GEMSTREAM_API CostEntry {
  std::chrono::system_clock::time_point time{}; // record() stamps "now" when left unset
  std::string user;                             // record() uses current_user() when empty
  CostKind kind = CostKind::Image;
  std::string model; // model id, e.g. "veo-3.0-fast-generate-001"
  double units = 0;  // images, seconds of video, tokens or requests (see unit)
  std::string unit;  // "image", "second", "token", "request"
  TokenUsage tokens;
  std::int64_t usd_nanos = 0;
  std::string request_id; // responseId, operation name or file name
  std::string note;       // free text: what was made, the price applied
  std::int64_t id = 0;    // ledger row id, set when read back or recorded

  double usd() const noexcept { return static_cast<double>(usd_nanos) / kNanosPerUsd; }
  std::string day() const; // "YYYY-MM-DD" of `time`, UTC
};

// ---- Pricing (config/media_generation.json) ----------------------------------------------------
// Each throws Error(Config) for a model the configuration does not price.

GEMSTREAM_API std::int64_t usd_to_nanos(double usd);
GEMSTREAM_API CostEntry price_images(const MediaConfig &config, const std::string &model_key_or_id,
                                     int images = 1);
GEMSTREAM_API CostEntry price_video(const MediaConfig &config, const std::string &model_key_or_id,
                                    double seconds);
// Live API: input tokens at usd_per_million_input_tokens, output at ..._output_tokens.
GEMSTREAM_API CostEntry price_live(const MediaConfig &config, const std::string &model_id,
                                   const TokenUsage &tokens);
// Video understanding and other generateContent text calls: all tokens, input and output, at
// pricing.video_analysis.usd_per_million_tokens (the configuration has one rate).
GEMSTREAM_API CostEntry price_analysis(const MediaConfig &config, const std::string &model_id,
                                       const TokenUsage &tokens);
// A grounded call: `requests` search requests at usd_per_1000_requests plus its tokens as in
// price_analysis, in one row of kind Search.
GEMSTREAM_API CostEntry price_search(const MediaConfig &config, const std::string &model_id,
                                     const TokenUsage &tokens, int requests = 1);

// "$4.00", "$0.035", "$0.000035": cents for a dollar or more, else three significant digits.
GEMSTREAM_API std::string format_usd(double usd);

// $USER (else $LOGNAME, else "default").
GEMSTREAM_API std::string current_user();
GEMSTREAM_API std::string utc_day(std::chrono::system_clock::time_point time);

// ---- The ledger ------------------------------------------------------------------------------

// Empty fields match everything. Days are "YYYY-MM-DD" (UTC), inclusive.
struct CostFilter {
  std::string user;
  std::string day;
  std::string from_day;
  std::string to_day;
  std::optional<CostKind> kind;
};

// Sums over rows with the same day, user, kind, model and unit (the plan's
// costs:{user}:{YYYY-MM-DD} keys, split by model and kind).
struct GEMSTREAM_API CostTotal {
  std::string day;
  std::string user;
  CostKind kind = CostKind::Image;
  std::string model;
  std::string unit;
  std::int64_t calls = 0;
  double units = 0;
  std::int64_t input_tokens = 0;
  std::int64_t output_tokens = 0;
  std::int64_t usd_nanos = 0;

  double usd() const noexcept { return static_cast<double>(usd_nanos) / kNanosPerUsd; }
};

struct BudgetStatus {
  std::string user;
  std::string day;
  std::int64_t spent_nanos = 0;
  std::optional<std::int64_t> budget_nanos; // none: no budget applies
  std::string source; // "GEMSTREAM_DAILY_BUDGET_USD", "ledger setting for alice", ...
};

class GEMSTREAM_API CostLedger {
public:
  // $GEMSTREAM_LEDGER, else $XDG_DATA_HOME/gemstream/ledger.sqlite, else
  // $HOME/.local/share/gemstream/ledger.sqlite.
  static std::filesystem::path default_path();

  // Opens (creating the directory, mode 0700, and the file, mode 0600) and migrates the
  // schema. Throws Error(Io) naming the path when it cannot, Error(Config) when the file is not
  // a gemstream ledger.
  explicit CostLedger(const std::filesystem::path &path = default_path());
  ~CostLedger();
  CostLedger(const CostLedger &) = delete;
  CostLedger &operator=(const CostLedger &) = delete;

  const std::filesystem::path &path() const noexcept;

  // Appends one row (durable on return) and returns its id.
  std::int64_t record(CostEntry entry);

  std::vector<CostEntry> entries(const CostFilter &filter = {}) const;
  std::vector<CostTotal> totals(const CostFilter &filter = {}) const;
  std::int64_t spent_nanos(const std::string &user, const std::string &day) const;

  // The daily budget for `user`: $GEMSTREAM_DAILY_BUDGET_USD when set (for everyone), else the
  // ledger setting for the user, else the ledger's default setting, else none.
  BudgetStatus budget_status(const std::string &user) const;
  // Ledger settings; an empty user sets the default for every user; nullopt removes it.
  // Throws Error(InvalidArgument) for a negative or non-finite amount.
  void set_daily_budget(const std::string &user, std::optional<double> usd);

  // Throws Error(BudgetExceeded) when today's (UTC) spending of `user` plus `estimated_usd`
  // would exceed the user's daily budget, e.g. "this video would cost $4.00; today's spending
  // for alice is $9.50 of the $10.00 daily budget". `what` names the call ("this video").
  void check_budget(const std::string &user, double estimated_usd,
                    std::string_view what = "this request") const;

  // PRAGMA integrity_check: "ok" for a sound database.
  std::string integrity_check() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream
