#include "gemstream/pipeline_file.h"

#include "gemstream/config.h"
#include "gemstream/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <variant>

namespace gemstream {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// A value that fails validation; the caller adds the file and parameter.
struct Invalid {
  std::string what;
};

std::string json_quoted(const std::string &text) {
  return json(text).dump();
}

std::string join(const std::vector<std::string> &items, std::string_view separator) {
  std::string out;
  for (const auto &item : items) {
    if (!out.empty())
      out += separator;
    out += item;
  }
  return out;
}

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Pipeline and parameter names: kebab-case, as on a command line.
bool is_kebab_name(std::string_view s) {
  if (s.empty() || !is_lower_alnum(s.front()) || s.back() == '-')
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '-'; });
}

// GStreamer's GST_ASCII_IS_STRING: characters a serialised GStreamer string holds unescaped.
bool is_gst_string_char(char c) {
  return is_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '+' || c == '/' || c == ':' ||
         c == '.';
}

// A property name as the gst-launch lexer reads one (including child-proxy "child::prop").
bool is_property_name(std::string_view s) {
  if (s.empty() || !is_alpha(s.front()))
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '%' || c == ':';
  });
}

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size())
      return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF.
    if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return false;
    i += extra + 1;
  }
  return true;
}

std::string lower(std::string s) {
  for (char &c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// ---- value canonicalisation --------------------------------------------------------------

std::int64_t parse_int(const std::string &text) {
  std::int64_t v = 0;
  const char *first = text.data();
  const char *last = text.data() + text.size();
  if (first != last && *first == '+')
    ++first;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (text.empty() || ec != std::errc() || ptr != last)
    throw Invalid{json_quoted(text) + " is not an integer"};
  return v;
}

double parse_double(const std::string &text) {
  double v = 0;
  const char *first = text.data();
  const char *last = text.data() + text.size();
  if (first != last && *first == '+')
    ++first;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (text.empty() || ec != std::errc() || ptr != last || !std::isfinite(v))
    throw Invalid{json_quoted(text) + " is not a number"};
  return v;
}

std::string format_double(double v) {
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ptr);
}

struct DurationUnit {
  const char *name;
  double ns;
};
constexpr DurationUnit kDurationUnits[] = {{"ns", 1},   {"us", 1e3},   {"ms", 1e6},  {"s", 1e9},
                                           {"m", 60e9}, {"min", 60e9}, {"h", 3600e9}};
constexpr const char *kPropertyUnits[] = {"ns", "us", "ms", "s"};

double unit_ns(const std::string &unit) {
  for (const auto &u : kDurationUnits)
    if (unit == u.name)
      return u.ns;
  return 0;
}

// "1.5s" → nanoseconds. A bare number is in `unit`.
double parse_duration_ns(const std::string &text, const std::string &unit) {
  std::size_t split = text.size();
  while (split > 0 && is_alpha(text[split - 1]))
    --split;
  const std::string number = text.substr(0, split);
  const std::string suffix = text.substr(split);
  const double scale = suffix.empty() ? unit_ns(unit) : unit_ns(suffix);
  if (scale == 0 || number.empty())
    throw Invalid{json_quoted(text) + " is not a duration (e.g. 500ms, 1.5s, 2m)"};
  double v = 0;
  try {
    v = parse_double(number);
  } catch (const Invalid &) {
    throw Invalid{json_quoted(text) + " is not a duration (e.g. 500ms, 1.5s, 2m)"};
  }
  if (v < 0)
    throw Invalid{json_quoted(text) + " is negative"};
  return v * scale;
}

std::vector<std::string> split_flags(const std::string &text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    auto b = item.find_first_not_of(" \t");
    auto e = item.find_last_not_of(" \t");
    out.push_back(b == std::string::npos ? std::string() : item.substr(b, e - b + 1));
  }
  if (!text.empty() && text.back() == ',')
    out.emplace_back();
  return out;
}

// The canonical text of a value: what is substituted and compared in conditions.
std::string canonical(const ParameterSpec &spec, const std::string &text) {
  if (text.find('\0') != std::string::npos)
    throw Invalid{"the value contains a NUL byte"};
  switch (spec.type) {
  case ParameterType::String:
  case ParameterType::Path: {
    if (!is_valid_utf8(text))
      throw Invalid{"the value is not valid UTF-8"};
    if (spec.type == ParameterType::Path && text.empty())
      throw Invalid{"expected a file name, got an empty value"};
    if (spec.type == ParameterType::Path && spec.must_exist) {
      std::error_code ec;
      if (!fs::is_regular_file(fs::path(text), ec))
        throw Invalid{"no such file: " + text};
    }
    return text;
  }
  case ParameterType::Enum:
    if (std::find(spec.allowed.begin(), spec.allowed.end(), text) == spec.allowed.end())
      throw Invalid{json_quoted(text) + " is not one of: " + join(spec.allowed, ", ")};
    return text;
  case ParameterType::Flags: {
    std::set<std::string> chosen;
    for (const auto &item : split_flags(text)) {
      if (std::find(spec.allowed.begin(), spec.allowed.end(), item) == spec.allowed.end())
        throw Invalid{json_quoted(item) + " is not one of: " + join(spec.allowed, ", ") +
                      " (give a comma-separated list)"};
      chosen.insert(item);
    }
    if (chosen.empty())
      throw Invalid{"expected a comma-separated list of: " + join(spec.allowed, ", ")};
    std::vector<std::string> ordered;
    for (const auto &a : spec.allowed)
      if (chosen.count(a))
        ordered.push_back(a);
    return join(ordered, ",");
  }
  case ParameterType::Int: {
    const std::int64_t v = parse_int(text);
    if (spec.min && v < parse_int(*spec.min))
      throw Invalid{"expected an integer of at least " + *spec.min + ", got " + text};
    if (spec.max && v > parse_int(*spec.max))
      throw Invalid{"expected an integer of at most " + *spec.max + ", got " + text};
    return std::to_string(v);
  }
  case ParameterType::Double: {
    const double v = parse_double(text);
    if (spec.min && v < parse_double(*spec.min))
      throw Invalid{"expected a number of at least " + *spec.min + ", got " + text};
    if (spec.max && v > parse_double(*spec.max))
      throw Invalid{"expected a number of at most " + *spec.max + ", got " + text};
    return format_double(v);
  }
  case ParameterType::Bool: {
    const std::string l = lower(text);
    if (l == "true" || l == "yes" || l == "on" || l == "1")
      return "true";
    if (l == "false" || l == "no" || l == "off" || l == "0")
      return "false";
    throw Invalid{json_quoted(text) + " is not a boolean (true or false)"};
  }
  case ParameterType::Duration: {
    const double ns = parse_duration_ns(text, spec.unit);
    if (spec.min && ns < parse_duration_ns(*spec.min, spec.unit))
      throw Invalid{"expected a duration of at least " + *spec.min + ", got " + text};
    if (spec.max && ns > parse_duration_ns(*spec.max, spec.unit))
      throw Invalid{"expected a duration of at most " + *spec.max + ", got " + text};
    const double in_unit = std::llround(ns / unit_ns(spec.unit));
    if (in_unit > static_cast<double>(std::numeric_limits<std::int64_t>::max()))
      throw Invalid{json_quoted(text) + " is too long"};
    if (ns > 0 && in_unit == 0)
      throw Invalid{json_quoted(text) + " is shorter than 1 " + spec.unit};
    return std::to_string(static_cast<std::int64_t>(in_unit));
  }
  }
  throw Invalid{"unsupported parameter type"};
}

// ---- launch-line quoting -----------------------------------------------------------------

// `text` as one double-quoted gst-launch value. gst_parse_launch strips the quotes and undoes
// the backslash escapes; a string property then goes through gst_value_deserialize_string,
// which turns "NULL" into a NULL string and unwraps a value that starts and ends with '"'.
// Such values (and values ending in a backslash, which the lexer would read as escaping our
// closing quote) are first wrapped as a serialised GStreamer string, which that function
// unwraps back to the exact text.
std::string quote_for_launch(const std::string &text, bool string_property) {
  std::string inner = text;
  const bool needs_wrap =
      string_property &&
      (text == "NULL" || (!text.empty() && text.front() == '"' && text.back() == '"') ||
       (!text.empty() && text.back() == '\\'));
  if (needs_wrap) {
    inner = "\"";
    for (char c : text) {
      if (!is_gst_string_char(c))
        inner += '\\';
      inner += c;
    }
    inner += '"';
  }
  std::string out = "\"";
  for (char c : inner) {
    if (c == '\\' || c == '"')
      out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

// ---- template compilation ----------------------------------------------------------------

struct ValuePart {
  bool is_param = false;
  std::string text; // literal text, or the parameter name
};

struct Piece {
  enum class Kind { Literal, Property, Bare } kind = Kind::Literal;
  std::string text;             // Literal: verbatim; Property: the property name
  std::vector<ValuePart> parts; // Property
  std::string param;            // Bare
};

struct Condition {
  std::string param;
  std::optional<std::string> value; // none: a bool parameter must be true
  bool negate = false;
  bool flags = false; // "=" tests membership of a flags parameter
};

struct Fragment {
  std::vector<Condition> when; // all must hold
  std::vector<Piece> pieces;
};

bool is_numeric(ParameterType t) {
  return t == ParameterType::Int || t == ParameterType::Double || t == ParameterType::Bool ||
         t == ParameterType::Duration;
}

class TemplateCompiler {
public:
  TemplateCompiler(const std::vector<ParameterSpec> &params,
                   std::function<void(const std::string &)> fail)
      : params_(params), fail_(std::move(fail)) {}

  std::vector<Piece> compile(const std::string &graph) {
    std::vector<Piece> pieces;
    std::string literal;
    auto flush = [&] {
      if (!literal.empty())
        pieces.push_back(Piece{Piece::Kind::Literal, std::move(literal), {}, {}});
      literal.clear();
    };
    bool segment_start = true;
    bool caps_segment = false;
    std::size_t i = 0;
    while (i < graph.size()) {
      const char c = graph[i];
      if (is_space(c)) {
        literal += c;
        ++i;
        continue;
      }
      if (c == '!') {
        literal += c;
        ++i;
        segment_start = true;
        continue;
      }
      // A token: runs to whitespace or a top-level '!', with quoted runs inside it.
      const std::size_t start = i;
      char quote = 0;
      bool has_placeholder = false;
      bool has_quote = false;
      bool has_backslash = false;
      while (i < graph.size()) {
        const char t = graph[i];
        if (quote) {
          if (t == '\\' && i + 1 < graph.size()) {
            i += 2;
            continue;
          }
          if (t == '$' && i + 1 < graph.size() && graph[i + 1] == '{')
            fail("a ${...} placeholder inside quotes at offset " + std::to_string(i) +
                 ": write name=${param}; values are quoted when substituted");
          if (t == quote)
            quote = 0;
          ++i;
          continue;
        }
        if (is_space(t) || t == '!')
          break;
        if (t == '"' || t == '\'') {
          quote = t;
          has_quote = true;
        } else if (t == '\\') {
          has_backslash = true;
          ++i;
        } else if (t == '$' && i + 1 < graph.size() && graph[i + 1] == '{') {
          has_placeholder = true;
        }
        ++i;
      }
      if (quote)
        fail("unterminated quote starting in \"" + graph.substr(start, 40) + "\"");
      const std::string token = graph.substr(start, i - start);
      if (segment_start) {
        // The first token after '!' decides: a media type starts a caps filter.
        caps_segment =
            token.find('/') != std::string::npos || token.front() == '"' || token.front() == '\'';
        segment_start = false;
      }
      if (!has_placeholder) {
        literal += token;
        continue;
      }
      if (has_quote || has_backslash)
        fail("in \"" + token +
             "\": a value with a placeholder cannot also hold quotes or "
             "backslashes");
      flush();
      if (caps_segment)
        compile_caps_token(token, pieces);
      else
        pieces.push_back(compile_property_token(token));
    }
    flush();
    return pieces;
  }

  const std::set<std::string> &used() const { return used_; }

private:
  [[noreturn]] void fail(const std::string &what) const {
    fail_(what);
    throw std::logic_error(what); // fail_ throws; this keeps the compiler's flow analysis honest
  }

  // Splits literal text and ${name} references.
  std::vector<ValuePart> split(const std::string &text) {
    std::vector<ValuePart> parts;
    std::size_t i = 0;
    std::string literal;
    while (i < text.size()) {
      if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
        const auto close = text.find('}', i + 2);
        if (close == std::string::npos)
          fail("unterminated placeholder in \"" + text + "\"");
        const std::string name = text.substr(i + 2, close - i - 2);
        if (!spec(name))
          fail("placeholder ${" + name + "} names no parameter (declared: " + declared() + ")");
        if (!literal.empty())
          parts.push_back({false, std::move(literal)});
        literal.clear();
        parts.push_back({true, name});
        used_.insert(name);
        i = close + 1;
      } else {
        literal += text[i++];
      }
    }
    if (!literal.empty())
      parts.push_back({false, std::move(literal)});
    return parts;
  }

  Piece compile_property_token(const std::string &token) {
    const auto eq = token.find('=');
    const auto dollar = token.find("${");
    if (eq == std::string::npos || eq > dollar || !is_property_name(token.substr(0, eq)))
      fail("\"" + token +
           "\": a placeholder may only stand in a property value, as in "
           "name=${param}");
    Piece piece;
    piece.kind = Piece::Kind::Property;
    piece.text = token.substr(0, eq);
    piece.parts = split(token.substr(eq + 1));
    for (const auto &part : piece.parts) {
      if (part.is_param && spec(part.text)->optional && piece.parts.size() != 1)
        fail("\"" + token + "\": optional parameter '" + part.text +
             "' must be the whole value of its property, since the property is left out "
             "when no value is given");
    }
    return piece;
  }

  void compile_caps_token(const std::string &token, std::vector<Piece> &pieces) {
    auto parts = split(token);
    std::size_t offset = 0;
    for (std::size_t k = 0; k < parts.size(); ++k) {
      const auto &part = parts[k];
      if (!part.is_param) {
        pieces.push_back(Piece{Piece::Kind::Literal, part.text, {}, {}});
        offset += part.text.size();
        continue;
      }
      const ParameterSpec *p = spec(part.text);
      if (!is_numeric(p->type) && p->type != ParameterType::Enum)
        fail("\"" + token +
             "\": caps may only hold int, double, bool, duration or enum "
             "parameters, and '" +
             part.text + "' is a " + to_string(p->type));
      if (p->optional)
        fail("\"" + token + "\": optional parameter '" + part.text + "' cannot stand in caps");
      const char before = k == 0 ? '\0' : parts[k - 1].text.back();
      const char after = k + 1 < parts.size() ? parts[k + 1].text.front() : '\0';
      const std::string_view ok_before = "=/)[,";
      const std::string_view ok_after = ",/;]";
      if ((k == 0 || parts[k - 1].is_param || ok_before.find(before) == std::string_view::npos) ||
          (after != '\0' &&
           (parts[k + 1].is_param || ok_after.find(after) == std::string_view::npos)))
        fail("\"" + token + "\": in caps, ${" + part.text +
             "} must be a whole field value, as "
             "in height=${" +
             part.text + "}");
      pieces.push_back(Piece{Piece::Kind::Bare, {}, {}, part.text});
    }
  }

  const ParameterSpec *spec(const std::string &name) const {
    for (const auto &p : params_)
      if (p.name == name)
        return &p;
    return nullptr;
  }

  std::string declared() const {
    std::vector<std::string> names;
    for (const auto &p : params_)
      names.push_back(p.name);
    return names.empty() ? "none" : join(names, ", ");
  }

  const std::vector<ParameterSpec> &params_;
  std::function<void(const std::string &)> fail_;
  std::set<std::string> used_;
};

} // namespace

const char *to_string(ParameterType type) noexcept {
  switch (type) {
  case ParameterType::String: return "string";
  case ParameterType::Path: return "path";
  case ParameterType::Enum: return "enum";
  case ParameterType::Flags: return "flags";
  case ParameterType::Int: return "int";
  case ParameterType::Double: return "double";
  case ParameterType::Bool: return "bool";
  case ParameterType::Duration: return "duration";
  }
  return "unknown";
}

namespace {

struct FileData {
  std::string name;
  std::string description;
  PipelineFile::Interrupt interrupt = PipelineFile::Interrupt::Finish;
  std::vector<ParameterSpec> parameters;
  std::vector<Fragment> fragments; // the graph, then the branches
  fs::path source;
};

} // namespace

struct PipelineFile::Impl : FileData {
  explicit Impl(FileData data) : FileData(std::move(data)) {}

  [[noreturn]] void value_error(const std::string &param, const std::string &what) const {
    throw Error(ErrorKind::InvalidArgument,
                source.string() + ": parameter '" + param + "': " + what);
  }
};

namespace {

class FileParser {
public:
  explicit FileParser(const fs::path &source) : source_(source) {}

  [[noreturn]] void fail(const std::string &pointer, const std::string &what) const {
    throw Error(ErrorKind::Config, source_.string() + ": " + pointer + ": " + what);
  }

  void check_fields(const json &object, const std::string &pointer,
                    std::initializer_list<const char *> known) const {
    for (const auto &[key, value] : object.items()) {
      (void)value;
      if (std::none_of(known.begin(), known.end(), [&](const char *k) { return key == k; })) {
        std::vector<std::string> names(known.begin(), known.end());
        fail(pointer + "/" + key, "unknown field (known: " + join(names, ", ") + ")");
      }
    }
  }

  std::string string_field(const json &object, const std::string &pointer, const char *key,
                           bool required) const {
    auto it = object.find(key);
    if (it == object.end()) {
      if (required)
        fail(pointer + "/" + key, "missing required field");
      return {};
    }
    if (!it->is_string())
      fail(pointer + "/" + key, "expected a string, got " + it->dump());
    return it->get<std::string>();
  }

  // A JSON scalar as the text a user would type: "1s", 23, true → "1s", "23", "true".
  std::string scalar_text(const json &value, const std::string &pointer) const {
    if (value.is_string())
      return value.get<std::string>();
    if (value.is_boolean())
      return value.get<bool>() ? "true" : "false";
    if (value.is_number_integer())
      return std::to_string(value.get<std::int64_t>());
    if (value.is_number())
      return format_double(value.get<double>());
    fail(pointer, "expected a string, number or boolean, got " + value.dump());
  }

  ParameterSpec parameter(const std::string &name, const json &object) const {
    const std::string pointer = "/parameters/" + name;
    if (!is_kebab_name(name))
      fail(pointer, "parameter names are kebab-case (a-z, 0-9 and '-')");
    if (!object.is_object())
      fail(pointer, "expected an object, got " + object.dump());
    check_fields(
        object, pointer,
        {"type", "doc", "default", "optional", "allowed", "min", "max", "unit", "must-exist",
         "output"});
    ParameterSpec spec;
    spec.name = name;
    const std::string type = string_field(object, pointer, "type", true);
    static const std::pair<const char *, ParameterType> kTypes[] = {
        {"string", ParameterType::String}, {"path", ParameterType::Path},
        {"enum", ParameterType::Enum},     {"flags", ParameterType::Flags},
        {"int", ParameterType::Int},       {"double", ParameterType::Double},
        {"bool", ParameterType::Bool},     {"duration", ParameterType::Duration}};
    bool found = false;
    for (const auto &[n, t] : kTypes) {
      if (type == n) {
        spec.type = t;
        found = true;
      }
    }
    if (!found)
      fail(pointer + "/type", "unknown type " + json_quoted(type) +
                                  " (known: string, path, enum, flags, int, double, bool, "
                                  "duration)");
    spec.doc = string_field(object, pointer, "doc", true);
    if (spec.doc.empty())
      fail(pointer + "/doc", "must not be empty: say what the parameter does");

    const bool choice = spec.type == ParameterType::Enum || spec.type == ParameterType::Flags;
    if (auto it = object.find("allowed"); it != object.end()) {
      if (!choice)
        fail(pointer + "/allowed", "only enum and flags parameters have allowed values");
      if (!it->is_array() || it->empty())
        fail(pointer + "/allowed", "expected a non-empty array of strings");
      for (const auto &v : *it) {
        if (!v.is_string())
          fail(pointer + "/allowed", "expected strings, got " + v.dump());
        const auto s = v.get<std::string>();
        if (s.empty() || !std::all_of(s.begin(), s.end(), is_gst_string_char))
          fail(pointer + "/allowed",
               json_quoted(s) + ": allowed values use only letters, digits and _-+/:.");
        if (std::find(spec.allowed.begin(), spec.allowed.end(), s) != spec.allowed.end())
          fail(pointer + "/allowed", json_quoted(s) + " is listed twice");
        spec.allowed.push_back(s);
      }
    } else if (choice) {
      fail(pointer + "/allowed", "missing required field for an " + type + " parameter");
    }

    const bool ranged = spec.type == ParameterType::Int || spec.type == ParameterType::Double ||
                        spec.type == ParameterType::Duration;
    if (spec.type == ParameterType::Duration) {
      spec.unit = string_field(object, pointer, "unit", true);
      if (std::none_of(std::begin(kPropertyUnits), std::end(kPropertyUnits),
                       [&](const char *u) { return spec.unit == u; }))
        fail(pointer + "/unit", "expected one of ns, us, ms, s (the unit of the property)");
    } else if (object.contains("unit")) {
      fail(pointer + "/unit", "only duration parameters have a unit");
    }
    for (const char *bound : {"min", "max"}) {
      auto it = object.find(bound);
      if (it == object.end())
        continue;
      if (!ranged)
        fail(pointer + "/" + bound, "only int, double and duration parameters have a range");
      std::string text = scalar_text(*it, pointer + "/" + bound);
      ParameterSpec unbounded = spec;
      unbounded.min.reset();
      unbounded.max.reset();
      try {
        canonical(unbounded, text);
      } catch (const Invalid &e) {
        fail(pointer + "/" + bound, e.what);
      }
      (std::string_view(bound) == "min" ? spec.min : spec.max) = text;
    }
    if (auto it = object.find("must-exist"); it != object.end()) {
      if (spec.type != ParameterType::Path || !it->is_boolean())
        fail(pointer + "/must-exist", "only path parameters have must-exist (a boolean)");
      spec.must_exist = it->get<bool>();
    }
    if (auto it = object.find("output"); it != object.end()) {
      if (spec.type != ParameterType::Path || !it->is_boolean())
        fail(pointer + "/output", "only path parameters are outputs (a boolean)");
      spec.output = it->get<bool>();
    }
    if (auto it = object.find("optional"); it != object.end()) {
      if (!it->is_boolean())
        fail(pointer + "/optional", "expected a boolean, got " + it->dump());
      spec.optional = it->get<bool>();
    }
    if (auto it = object.find("default"); it != object.end()) {
      if (spec.optional)
        fail(pointer + "/default", "an optional parameter has no default: when it is not given, "
                                   "the element's own default applies");
      const std::string text = scalar_text(*it, pointer + "/default");
      try {
        // A must-exist path is checked when a run supplies it, not when the file loads.
        ParameterSpec lenient = spec;
        lenient.must_exist = false;
        spec.default_value = canonical(lenient, text);
      } catch (const Invalid &e) {
        fail(pointer + "/default", e.what);
      }
    }
    return spec;
  }

  Condition condition(const std::string &text, const std::string &pointer,
                      const std::vector<ParameterSpec> &params) const {
    Condition c;
    std::string rest = text;
    const auto ne = rest.find("!=");
    const auto eq = rest.find('=');
    if (ne != std::string::npos) {
      c.param = rest.substr(0, ne);
      c.value = rest.substr(ne + 2);
      c.negate = true;
    } else if (eq != std::string::npos) {
      c.param = rest.substr(0, eq);
      c.value = rest.substr(eq + 1);
    } else if (!rest.empty() && rest.front() == '!') {
      c.param = rest.substr(1);
      c.negate = true;
    } else {
      c.param = rest;
    }
    auto it = std::find_if(params.begin(), params.end(),
                           [&](const ParameterSpec &p) { return p.name == c.param; });
    if (it == params.end())
      fail(pointer, json_quoted(text) + ": no parameter named '" + c.param + "'");
    if (it->optional)
      fail(pointer, json_quoted(text) + ": conditions cannot test optional parameters");
    if (!c.value) {
      if (it->type != ParameterType::Bool)
        fail(pointer,
             json_quoted(text) + ": '" + c.param + "' is not a bool; write " + c.param + "=VALUE");
      return c;
    }
    c.flags = it->type == ParameterType::Flags;
    try {
      ParameterSpec lenient = *it;
      lenient.must_exist = false;
      lenient.min.reset();
      lenient.max.reset();
      c.value = canonical(lenient, *c.value);
    } catch (const Invalid &e) {
      fail(pointer, json_quoted(text) + ": " + e.what);
    }
    if (c.flags && c.value->find(',') != std::string::npos)
      fail(pointer, json_quoted(text) + ": test one flag at a time");
    return c;
  }

  FileData parse(const std::string &text) const {
    json root;
    try {
      root = json::parse(text);
    } catch (const json::parse_error &e) {
      throw Error(ErrorKind::Config, source_.string() + ": not valid JSON: " + e.what());
    }
    if (!root.is_object())
      fail("/", "expected a JSON object");
    check_fields(root, "",
                 {"name", "description", "interrupt", "parameters", "graph", "branches"});
    auto data = std::make_unique<FileData>();
    FileData *impl = data.get();
    impl->source = source_;
    impl->name = string_field(root, "", "name", true);
    if (!is_kebab_name(impl->name))
      fail("/name",
           "pipeline names are kebab-case (a-z, 0-9 and '-'), got " + json_quoted(impl->name));
    if (source_.extension() == ".json" && source_.stem().string() != impl->name)
      fail("/name", json_quoted(impl->name) + " must match the file name " +
                        json_quoted(source_.filename().string()));
    impl->description = string_field(root, "", "description", true);
    if (impl->description.empty())
      fail("/description", "must not be empty");
    if (root.contains("interrupt")) {
      const std::string interrupt = string_field(root, "", "interrupt", true);
      if (interrupt == "cancel")
        impl->interrupt = PipelineFile::Interrupt::Cancel;
      else if (interrupt != "finish")
        fail("/interrupt", "expected \"finish\" or \"cancel\", got " + json_quoted(interrupt));
    }

    if (auto it = root.find("parameters"); it != root.end()) {
      if (!it->is_object())
        fail("/parameters", "expected an object mapping names to parameter definitions");
      for (const auto &[name, value] : it->items())
        impl->parameters.push_back(parameter(name, value));
    }

    std::string current = "/graph";
    TemplateCompiler compiler(impl->parameters,
                              [&](const std::string &what) { fail(current, what); });
    const std::string graph = string_field(root, "", "graph", true);
    if (graph.find_first_not_of(" \t\r\n") == std::string::npos)
      fail("/graph", "must not be empty");
    impl->fragments.push_back(Fragment{{}, compiler.compile(graph)});

    std::set<std::string> tested;
    if (auto it = root.find("branches"); it != root.end()) {
      if (!it->is_array())
        fail("/branches", "expected an array of {\"when\", \"graph\"} objects");
      for (std::size_t i = 0; i < it->size(); ++i) {
        const json &branch = (*it)[i];
        const std::string pointer = "/branches/" + std::to_string(i);
        if (!branch.is_object())
          fail(pointer, "expected an object with \"when\" and \"graph\"");
        check_fields(branch, pointer, {"when", "graph"});
        Fragment fragment;
        auto when = branch.find("when");
        if (when == branch.end())
          fail(pointer + "/when", "missing required field");
        std::vector<std::string> conditions;
        if (when->is_string()) {
          conditions.push_back(when->get<std::string>());
        } else if (when->is_array() && !when->empty()) {
          for (const auto &c : *when) {
            if (!c.is_string())
              fail(pointer + "/when", "expected strings, got " + c.dump());
            conditions.push_back(c.get<std::string>());
          }
        } else {
          fail(pointer + "/when", "expected a condition or a non-empty array of conditions");
        }
        for (const auto &c : conditions) {
          fragment.when.push_back(condition(c, pointer + "/when", impl->parameters));
          tested.insert(fragment.when.back().param);
        }
        current = pointer + "/graph";
        fragment.pieces = compiler.compile(string_field(branch, pointer, "graph", true));
        impl->fragments.push_back(std::move(fragment));
      }
    }
    for (const auto &p : impl->parameters) {
      if (!compiler.used().count(p.name) && !tested.count(p.name))
        fail("/parameters/" + p.name, "declared but used by no graph or branch");
    }
    return std::move(*data);
  }

private:
  fs::path source_;
};

bool holds(const Condition &c, const ParameterValues &values) {
  auto it = values.find(c.param);
  const std::string value = it == values.end() ? std::string() : it->second;
  bool result = false;
  if (!c.value) {
    result = value == "true";
  } else if (c.flags) {
    for (const auto &item : split_flags(value))
      result |= item == *c.value;
  } else {
    result = value == *c.value;
  }
  return c.negate ? !result : result;
}

// Whether `values` select the fragment: all its `when` conditions hold.
bool selected(const Fragment &fragment, const ParameterValues &values) {
  return std::all_of(fragment.when.begin(), fragment.when.end(),
                     [&](const Condition &c) { return holds(c, values); });
}

} // namespace

PipelineFile::PipelineFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PipelineFile::PipelineFile(const PipelineFile &o) : impl_(std::make_unique<Impl>(*o.impl_)) {}
PipelineFile::PipelineFile(PipelineFile &&) noexcept = default;
PipelineFile &PipelineFile::operator=(const PipelineFile &o) {
  if (this != &o)
    impl_ = std::make_unique<Impl>(*o.impl_);
  return *this;
}
PipelineFile &PipelineFile::operator=(PipelineFile &&) noexcept = default;
PipelineFile::~PipelineFile() = default;

PipelineFile PipelineFile::parse(const std::string &json_text, const fs::path &name) {
  return PipelineFile(std::make_unique<Impl>(FileParser(name).parse(json_text)));
}

PipelineFile PipelineFile::load(const fs::path &file) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw Error(ErrorKind::Io, "cannot read pipeline file " + file.string() + ": " +
                                   std::generic_category().message(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), file);
}

fs::path PipelineFile::find(const std::string &name_or_path) {
  if (name_or_path.find('/') != std::string::npos ||
      (name_or_path.size() > 5 && name_or_path.compare(name_or_path.size() - 5, 5, ".json") == 0))
    return name_or_path;
  const fs::path dir = data_dir() / "pipelines";
  fs::path file = dir / (name_or_path + ".json");
  std::error_code ec;
  if (fs::is_regular_file(file, ec))
    return file;
  std::vector<std::string> names;
  for (const auto &p : list(dir))
    names.push_back(p.stem().string());
  throw Error(ErrorKind::NotFound,
              "no pipeline named " + json_quoted(name_or_path) + " in " + dir.string() +
                  " (installed: " + (names.empty() ? "none" : join(names, ", ")) + ")");
}

std::vector<fs::path> PipelineFile::list(const fs::path &dir_arg) {
  const fs::path dir = dir_arg.empty() ? data_dir() / "pipelines" : dir_arg;
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".json" && it->is_regular_file(ec))
      files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

const std::string &PipelineFile::name() const noexcept {
  return impl_->name;
}
const std::string &PipelineFile::description() const noexcept {
  return impl_->description;
}
PipelineFile::Interrupt PipelineFile::interrupt() const noexcept {
  return impl_->interrupt;
}
const std::vector<ParameterSpec> &PipelineFile::parameters() const noexcept {
  return impl_->parameters;
}
const fs::path &PipelineFile::source() const noexcept {
  return impl_->source;
}

const ParameterSpec *PipelineFile::parameter(const std::string &name) const noexcept {
  for (const auto &p : impl_->parameters)
    if (p.name == name)
      return &p;
  return nullptr;
}

ParameterValues PipelineFile::validate(const std::map<std::string, std::string> &values) const {
  for (const auto &[name, value] : values) {
    (void)value;
    if (!parameter(name)) {
      std::vector<std::string> names;
      for (const auto &p : impl_->parameters)
        names.push_back(p.name);
      impl_->value_error(name, "no such parameter (known: " +
                                   (names.empty() ? std::string("none") : join(names, ", ")) + ")");
    }
  }
  ParameterValues out;
  for (const auto &spec : impl_->parameters) {
    auto it = values.find(spec.name);
    if (it == values.end()) {
      if (spec.default_value)
        out[spec.name] = *spec.default_value;
      else if (spec.required())
        impl_->value_error(spec.name, std::string("missing required value (") +
                                          to_string(spec.type) + ": " + spec.doc + ")");
      continue;
    }
    if (spec.required() && it->second.empty())
      impl_->value_error(spec.name, "must not be empty");
    try {
      out[spec.name] = canonical(spec, it->second);
    } catch (const Invalid &e) {
      impl_->value_error(spec.name, e.what);
    }
  }
  return out;
}

std::set<std::string>
PipelineFile::used_parameters(const std::map<std::string, std::string> &values) const {
  const ParameterValues resolved = validate(values);
  std::set<std::string> used;
  for (const auto &fragment : impl_->fragments) {
    if (!selected(fragment, resolved))
      continue;
    for (const auto &piece : fragment.pieces) {
      if (piece.kind == Piece::Kind::Bare)
        used.insert(piece.param);
      for (const auto &part : piece.parts)
        if (part.is_param)
          used.insert(part.text);
    }
  }
  return used;
}

std::string PipelineFile::resolve(const std::map<std::string, std::string> &values) const {
  const ParameterValues resolved = validate(values);
  std::string line;
  for (const auto &fragment : impl_->fragments) {
    if (!selected(fragment, resolved))
      continue;
    std::string text;
    for (const auto &piece : fragment.pieces) {
      switch (piece.kind) {
      case Piece::Kind::Literal: text += piece.text; break;
      case Piece::Kind::Bare: text += resolved.at(piece.param); break;
      case Piece::Kind::Property: {
        std::string value;
        bool string_property = false;
        bool omitted = false;
        for (const auto &part : piece.parts) {
          if (!part.is_param) {
            value += part.text;
            string_property = true;
            continue;
          }
          auto it = resolved.find(part.text);
          if (it == resolved.end()) {
            omitted = true; // an optional parameter without a value
            break;
          }
          const auto type = parameter(part.text)->type;
          string_property |= type == ParameterType::String || type == ParameterType::Path;
          value += it->second;
        }
        if (omitted) {
          // Drop the property with the gap before it.
          while (!text.empty() && is_space(text.back()))
            text.pop_back();
        } else {
          text += piece.text + "=" + quote_for_launch(value, string_property);
        }
        break;
      }
      }
    }
    const auto first = text.find_first_not_of(" \t\r\n");
    const auto last = text.find_last_not_of(" \t\r\n");
    const std::string tidy =
        first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
    if (tidy.empty())
      continue;
    if (!line.empty())
      line += "  ";
    line += tidy;
  }
  return line;
}

std::map<std::string, std::string>
parse_parameter_arguments(const std::vector<std::string> &arguments) {
  std::map<std::string, std::string> out;
  for (const auto &arg : arguments) {
    const auto eq = arg.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error(ErrorKind::InvalidArgument, "expected name=value, got " + json_quoted(arg));
    std::string key = arg.substr(0, eq);
    if (!out.emplace(key, arg.substr(eq + 1)).second)
      throw Error(ErrorKind::InvalidArgument, "parameter '" + key + "' is given twice");
  }
  return out;
}

} // namespace gemstream
