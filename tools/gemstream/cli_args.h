// Minimal command-line parsing for the gemstream subcommands.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace gemstream::cli {

class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Splits argv into positionals and --name value / --name=value / -o value options.
// `flags` are options that take no value. Unknown options are a UsageError.
class Args {
public:
  Args(const std::vector<std::string> &argv, const std::set<std::string> &options,
       const std::set<std::string> &flags = {});

  const std::vector<std::string> &positionals() const { return positionals_; }
  std::optional<std::string> get(const std::string &name) const;
  std::string get_or(const std::string &name, const std::string &fallback) const;
  bool has_flag(const std::string &name) const { return flags_.count(name) > 0; }
  // A finite non-negative number ("2.5").
  double number(const std::string &name, double fallback) const;
  // A duration in seconds: a finite non-negative number with an optional unit, "ms", "s",
  // "min" or "h" ("500ms", "1.5s", "1.5" = 1.5 s).
  double seconds(const std::string &name, double fallback) const;
  // A whole number in [min, max] ("720"; not "720.5", "1e3" or "720px").
  long long integer(const std::string &name, long long fallback, long long min,
                    long long max) const;

private:
  std::vector<std::string> positionals_;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
};

// A file-name-safe slug of free text: lower-case ASCII letters, digits and '-', at most 48 chars.
std::string slugify(const std::string &text);

} // namespace gemstream::cli
