#include "cli_args.h"

#include <cctype>
#include <cstdlib>

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

double Args::number(const std::string &name, double fallback) const {
  auto v = get(name);
  if (!v)
    return fallback;
  std::string text = *v;
  double scale = 1;
  if (text.size() > 2 && text.compare(text.size() - 2, 2, "ms") == 0) {
    text.resize(text.size() - 2);
    scale = 0.001;
  } else if (!text.empty() && text.back() == 's') {
    text.pop_back();
  }
  char *end = nullptr;
  double d = std::strtod(text.c_str(), &end);
  if (text.empty() || end == nullptr || *end != '\0' || d < 0)
    throw UsageError("--" + name + " expects a non-negative number, got \"" + *v + "\"");
  return d * scale;
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
