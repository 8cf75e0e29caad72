// gemstream costs: what was spent, per day and user, split by kind and model (the plan's
// costs:{user}:{YYYY-MM-DD} keys), and the daily budget.
#include "cli_args.h"
#include "commands.h"
#include "spending.h"

#include <gemstream/error.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>

namespace gemstream::cli {

Spending Spending::open(const Args &args) {
  Spending s;
  s.user = args.get_or("user", "");
  if (s.user.empty())
    s.user = current_user();
  s.ledger = std::make_shared<CostLedger>();
  return s;
}

void Spending::check(double usd, std::string_view what) const {
  ledger->check_budget(user, usd, what);
}

std::int64_t Spending::record(CostEntry entry) const {
  entry.user = user;
  return ledger->record(std::move(entry));
}

std::uint64_t parse_size(const std::string &option, const std::string &text) {
  static const std::map<std::string, double> kUnits = {
      {"", 1},     {"b", 1},        {"kb", 1e3},        {"mb", 1e6},
      {"gb", 1e9}, {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}};
  char *end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  std::string unit(end ? end : "");
  for (auto &c : unit)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto it = kUnits.find(unit);
  if (end == text.c_str() || it == kUnits.end() || !(value >= 0) || !std::isfinite(value))
    throw UsageError("--" + option + " expects a size such as 20MB or 512KiB, got \"" + text +
                     "\"");
  return static_cast<std::uint64_t>(std::llround(value * it->second));
}

namespace {

std::string units_text(const CostTotal &t) {
  char buf[64];
  if (t.unit == "image")
    std::snprintf(buf, sizeof buf, "%g image%s", t.units, t.units == 1 ? "" : "s");
  else if (t.unit == "second")
    std::snprintf(buf, sizeof buf, "%g s", t.units);
  else if (t.unit == "token")
    std::snprintf(buf, sizeof buf, "%.0f tokens", t.units);
  else if (t.unit == "request")
    std::snprintf(buf, sizeof buf, "%g request%s", t.units, t.units == 1 ? "" : "s");
  else
    std::snprintf(buf, sizeof buf, "%g %s", t.units, t.unit.c_str());
  return buf;
}

std::string usd(std::int64_t nanos) {
  return format_usd(static_cast<double>(nanos) / kNanosPerUsd);
}

std::string day_value(const std::string &text) {
  if (text == "today")
    return utc_day(std::chrono::system_clock::now());
  if (text == "yesterday")
    return utc_day(std::chrono::system_clock::now() - std::chrono::hours(24));
  const bool shape = text.size() == 10 && text[4] == '-' && text[7] == '-';
  for (std::size_t i = 0; shape && i < text.size(); ++i)
    if (i != 4 && i != 7 && !std::isdigit(static_cast<unsigned char>(text[i])))
      throw UsageError("--day expects YYYY-MM-DD, today or yesterday, got \"" + text + "\"");
  if (!shape)
    throw UsageError("--day expects YYYY-MM-DD, today or yesterday, got \"" + text + "\"");
  return text;
}

} // namespace

const char *const kCostsUsage =
    "usage: gemstream costs [--user NAME] [--day YYYY-MM-DD|today|yesterday] [--json]\n"
    "       gemstream costs --set-budget USD|none [--user NAME]\n"
    "Prints what was spent per day (UTC) and user, split by kind and model, from the cost\n"
    "ledger ($GEMSTREAM_LEDGER, else ~/.local/share/gemstream/ledger.sqlite), and the daily\n"
    "budget of --user (default $USER). --set-budget sets the daily budget of --user, or the\n"
    "default for every user without --user; GEMSTREAM_DAILY_BUDGET_USD overrides both.";

int cmd_costs(const std::vector<std::string> &argv) {
  Args args(argv, {"user", "day", "set-budget"}, {"json"});
  if (!args.positionals().empty())
    throw UsageError(kCostsUsage);
  CostLedger ledger;

  if (auto budget = args.get("set-budget")) {
    const std::string who = args.get_or("user", "");
    std::optional<double> value;
    if (*budget != "none") {
      char *end = nullptr;
      const char *begin = budget->c_str() + (budget->rfind('$', 0) == 0 ? 1 : 0);
      value = std::strtod(begin, &end);
      if (end == begin || *end != '\0' || !(*value >= 0) || !std::isfinite(*value))
        throw UsageError("--set-budget expects an amount in dollars or \"none\", got \"" + *budget +
                         "\"");
    }
    ledger.set_daily_budget(who, value);
    std::printf("daily budget %s: %s\n", who.empty() ? "for every user" : ("for " + who).c_str(),
                value ? format_usd(*value).c_str() : "none");
    return 0;
  }

  CostFilter filter;
  filter.user = args.get_or("user", "");
  if (auto day = args.get("day"))
    filter.day = day_value(*day);
  const auto totals = ledger.totals(filter);
  const std::string budget_user = filter.user.empty() ? current_user() : filter.user;
  const BudgetStatus budget = ledger.budget_status(budget_user);

  if (args.has_flag("json")) {
    nlohmann::json rows = nlohmann::json::array();
    std::int64_t sum = 0;
    for (const auto &t : totals) {
      sum += t.usd_nanos;
      rows.push_back({{"key", "costs:" + t.user + ":" + t.day},
                      {"day", t.day},
                      {"user", t.user},
                      {"kind", to_string(t.kind)},
                      {"model", t.model},
                      {"calls", t.calls},
                      {"units", t.units},
                      {"unit", t.unit},
                      {"input_tokens", t.input_tokens},
                      {"output_tokens", t.output_tokens},
                      {"usd_nanos", t.usd_nanos},
                      {"usd", t.usd()}});
    }
    nlohmann::json out = {
        {"ledger", ledger.path().string()},
        {"totals", std::move(rows)},
        {"total_usd_nanos", sum},
        {"budget",
         {{"user", budget.user},
          {"day", budget.day},
          {"spent_usd_nanos", budget.spent_nanos},
          {"daily_budget_usd_nanos",
           budget.budget_nanos ? nlohmann::json(*budget.budget_nanos) : nlohmann::json(nullptr)},
          {"source", budget.source}}}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }

  if (totals.empty())
    std::printf("no costs recorded%s%s%s in %s\n", filter.user.empty() ? "" : " for ",
                filter.user.c_str(), filter.day.empty() ? "" : (" on " + filter.day).c_str(),
                ledger.path().c_str());
  std::string key;
  std::int64_t group_sum = 0, group_calls = 0, grand = 0;
  auto close_group = [&] {
    if (!key.empty())
      std::printf("  %-9s %-34s %5lld call%s %15s %11s\n", "total", "",
                  static_cast<long long>(group_calls), group_calls == 1 ? " " : "s", "",
                  usd(group_sum).c_str());
  };
  for (const auto &t : totals) {
    const std::string k = "costs:" + t.user + ":" + t.day;
    if (k != key) {
      close_group();
      key = k;
      group_sum = group_calls = 0;
      std::printf("%s\n", key.c_str());
    }
    std::printf("  %-9s %-34s %5lld call%s %15s %11s\n", to_string(t.kind), t.model.c_str(),
                static_cast<long long>(t.calls), t.calls == 1 ? " " : "s", units_text(t).c_str(),
                usd(t.usd_nanos).c_str());
    group_sum += t.usd_nanos;
    group_calls += t.calls;
    grand += t.usd_nanos;
  }
  close_group();
  if (!totals.empty())
    std::printf("total: %s\n", usd(grand).c_str());
  if (budget.budget_nanos)
    std::printf("today (%s UTC) %s has spent %s of the %s daily budget (%s)\n", budget.day.c_str(),
                budget.user.c_str(), usd(budget.spent_nanos).c_str(),
                usd(*budget.budget_nanos).c_str(), budget.source.c_str());
  else
    std::printf("today (%s UTC) %s has spent %s; no daily budget is set\n", budget.day.c_str(),
                budget.user.c_str(), usd(budget.spent_nanos).c_str());
  return 0;
}

} // namespace gemstream::cli
