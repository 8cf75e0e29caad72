#include "cli_args.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace gemstream::cli {

Args::Args(const std::vector<std::string> &argv, const std::set<std::string> &options,
           const std::set<std::string> &flags) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string &a = argv[i];
    if (a == "--") {
      positionals_.insert(positionals_.end(), argv.begin() + i + 1, argv.end());
      break;
    }
    if (a.size() < 2 || a[0] != '-' || (a.size() > 1 && std::isdigit(static_cast<unsigned char>(a[1])))) {
      positionals_.push_back(a);
      continue;
    }
    std::string name = a.rfind("--", 0) == 0 ? a.substr(2) : a.substr(1);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (flags.count(name)) {
      if (inline_value)
        throw UsageError("option --" + name + " takes no value");
      flags_.insert(name);
    } else if (options.count(name)) {
      if (inline_value) {
        values_[name] = *inline_value;
      } else {
        if (i + 1 >= argv.size())
          throw UsageError("option " + a + " needs a value");
        values_[name] = argv[++i];
      }
    } else {
      throw UsageError("unknown option " + a);
    }
  }
}

std::optional<std::string> Args::get(const std::string &name) const {
  auto it = values_.find(name);
  if (it == values_.end())
    return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string &name, const std::string &fallback) const {
  return get(name).value_or(fallback);
}

namespace {

// `text` as a finite number, all of it; nullopt otherwise (strtod also takes "nan" and "inf").
std::optional<double> finite_number(const std::string &text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])))
    return std::nullopt;
  char *end = nullptr;
  const double d = std::strtod(text.c_str(), &end);
  if (end == nullptr || *end != '\0' || !std::isfinite(d))
    return std::nullopt;
  return d;
}

} // namespace

double Args::number(const std::string &name, double fallback) const {
  auto v = get(name);
  if (!v)
    return fallback;
  const auto d = finite_number(*v);
  if (!d || *d < 0)
    throw UsageError("--" + name + " expects a non-negative number, got \"" + *v + "\"");
  return *d;
}

double Args::seconds(const std::string &name, double fallback) const {
  auto v = get(name);
  if (!v)
    return fallback;
  static const std::pair<const char *, double> kUnits[] = {
      {"ms", 0.001}, {"min", 60}, {"s", 1}, {"h", 3600}};
  std::string text = *v;
  double scale = 1;
  for (const auto &[unit, factor] : kUnits) {
    const std::size_t n = std::char_traits<char>::length(unit);
    if (text.size() > n && text.compare(text.size() - n, n, unit) == 0) {
      text.resize(text.size() - n);
      scale = factor;
      break;
    }
  }
  const auto d = finite_number(text);
  if (!d || *d < 0)
    throw UsageError("--" + name + " expects a duration such as 500ms, 1.5s or 2min, got \"" +
                     *v + "\"");
  return *d * scale;
}

long long Args::integer(const std::string &name, long long fallback, long long min,
                        long long max) const {
  auto v = get(name);
  if (!v)
    return fallback;
  long long n = 0;
  const char *first = v->data(), *last = v->data() + v->size();
  const auto [end, ec] = std::from_chars(first, last, n);
  if (v->empty() || ec != std::errc() || end != last || n < min || n > max)
    throw UsageError("--" + name + " expects a whole number from " + std::to_string(min) +
                     " to " + std::to_string(max) + ", got \"" + *v + "\"");
  return n;
}

std::string slugify(const std::string &text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) && c < 0x80) {
      out += static_cast<char>(std::tolower(c));
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
    if (out.size() >= 48)
      break;
  }
  while (!out.empty() && out.back() == '-')
    out.pop_back();
  return out.empty() ? "output" : out;
}

} // namespace gemstream::cli
