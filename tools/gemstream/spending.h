// The cost ledger as the commands use it: who pays (--user, else $USER), the budget check
// before a request, and a ledger row after it.
#pragma once

#include "cli_args.h"

#include <gemstream/costs.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace gemstream::cli {

struct Spending {
  std::shared_ptr<CostLedger> ledger;
  std::string user;

  // Opens the ledger (CostLedger::default_path()); the user from --user, else current_user().
  static Spending open(const Args &args);

  // Error(BudgetExceeded) when `usd` more would exceed the user's daily budget.
  void check(double usd, std::string_view what) const;
  // Records the entry for the user; returns its row id.
  std::int64_t record(CostEntry entry) const;
};

// "20MB", "512KB", "1.5GB", "100000": bytes (decimal units; KiB/MiB/GiB are binary).
std::uint64_t parse_size(const std::string &option, const std::string &text);

} // namespace gemstream::cli
