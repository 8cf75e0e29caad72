// Validation helpers for the project's JSON configuration files (media_generation.json,
// agent_capabilities.json): every failure names the file and the RFC 6901 JSON pointer of the
// offending value, and unknown fields are rejected so that a misspelt field is never ignored.
// Internal to libgemstream.
#pragma once

#include "gemstream/error.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace gemstream::config_json {

using json = nlohmann::json;

inline std::string join(const std::vector<std::string> &items, std::string_view separator) {
  std::string out;
  for (const auto &item : items) {
    if (!out.empty())
      out += separator;
    out += item;
  }
  return out;
}

template <typename Map> std::string known_keys(const Map &map) {
  std::vector<std::string> keys;
  keys.reserve(map.size());
  for (const auto &entry : map)
    keys.push_back(entry.first);
  return join(keys, ", ");
}

// RFC 6901 reference token.
inline std::string pointer_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

inline std::string in_quotes(const std::string &text) {
  return json(text).dump();
}

// Keys become CLI arguments and element property values, so they stay plain identifiers.
inline bool is_identifier(std::string_view key) {
  if (key.empty())
    return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  }
  return true;
}

// The name of every "{name}" in the text, in order.
inline std::vector<std::string> placeholders_in(std::string_view text) {
  std::vector<std::string> names;
  for (auto open = text.find('{'); open != std::string_view::npos;
       open = text.find('{', open + 1)) {
    auto end = open + 1;
    while (end < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_'))
      ++end;
    if (end > open + 1 && end < text.size() && text[end] == '}')
      names.emplace_back(text.substr(open + 1, end - open - 1));
  }
  return names;
}

// Formats every validation failure as "<file>: <JSON pointer>: <what>".
class Validator {
public:
  explicit Validator(std::string file) : file_(std::move(file)) {}

  const std::string &file() const { return file_; }

  [[noreturn]] void fail(const std::string &pointer, const std::string &what) const {
    throw Error(ErrorKind::Config, file_ + ": " + (pointer.empty() ? "/" : pointer) + ": " + what);
  }

  [[noreturn]] void fail_type(const std::string &pointer, std::string_view expected,
                              const json &got) const {
    const bool vowel = std::string_view("aeiou").find(expected.front()) != std::string_view::npos;
    fail(pointer, std::string("expected ") + (vowel ? "an " : "a ") + std::string(expected) +
                      ", got " + got.type_name());
  }

  // `placeholder` (without braces) must appear and no other may; an empty `placeholder` means
  // the text is used verbatim and must not look like a template.
  void check_placeholders(const std::string &pointer, const std::string &text,
                          const std::string &placeholder) const {
    const std::string token = "{" + placeholder + "}";
    for (const auto &name : placeholders_in(text)) {
      if (placeholder.empty())
        fail(pointer, "unexpected placeholder {" + name + "}: this text is not a template");
      if (name != placeholder)
        fail(pointer, "unknown placeholder {" + name + "} (allowed: " + token + ")");
    }
    if (!placeholder.empty() && text.find(token) == std::string::npos)
      fail(pointer, "must contain the placeholder " + token);
  }

  // Every placeholder must be one of `allowed` (names without braces); none is required.
  void check_placeholder_set(const std::string &pointer, const std::string &text,
                             const std::set<std::string, std::less<>> &allowed) const {
    for (const auto &name : placeholders_in(text)) {
      if (!allowed.contains(name)) {
        std::vector<std::string> names;
        for (const auto &a : allowed)
          names.push_back("{" + a + "}");
        fail(pointer, "unknown placeholder {" + name + "} (allowed: " +
                          (names.empty() ? std::string("none") : join(names, ", ")) + ")");
      }
    }
  }

private:
  std::string file_;
};

// Reads the fields of one JSON object and remembers which it read, so that finish() can reject
// the others: a misspelt field would otherwise be ignored without a word.
class ObjectReader {
public:
  ObjectReader(const Validator &v, const json &value, std::string pointer)
      : v_(v), value_(value), pointer_(std::move(pointer)) {
    if (!value_.is_object())
      v_.fail_type(pointer_, "object", value_);
  }

  const std::string &pointer() const { return pointer_; }
  std::string pointer_of(std::string_view name) const {
    return pointer_ + "/" + pointer_token(name);
  }

  // For objects keyed by names the user chooses (models, styles, moods).
  const json &members() const { return value_; }

  const json &field(std::string_view name) {
    seen_.emplace(name);
    const auto it = value_.find(name);
    if (it == value_.end())
      v_.fail(pointer_of(name), "missing required field");
    return *it;
  }

  std::string string(std::string_view name) {
    return string_value(v_, field(name), pointer_of(name));
  }

  std::string template_string(std::string_view name, const std::string &placeholder) {
    auto text = string(name);
    v_.check_placeholders(pointer_of(name), text, placeholder);
    return text;
  }

  bool has(std::string_view name) const { return value_.contains(name); }

  // Marks an optional field as known without reading it.
  void allow(std::string_view name) { seen_.emplace(name); }

  bool boolean(std::string_view name) {
    const json &value = field(name);
    if (!value.is_boolean())
      v_.fail_type(pointer_of(name), "boolean", value);
    return value.get<bool>();
  }

  // A string that may be empty ("" is a deliberate "none", e.g. no cost warning).
  std::string string_or_empty(std::string_view name) {
    const json &value = field(name);
    if (!value.is_string())
      v_.fail_type(pointer_of(name), "string", value);
    return value.get<std::string>();
  }

  // One of `allowed`.
  std::string choice(std::string_view name, std::initializer_list<std::string_view> allowed) {
    auto text = string(name);
    std::vector<std::string> names;
    for (auto a : allowed) {
      if (a == text)
        return text;
      names.push_back(in_quotes(std::string(a)));
    }
    v_.fail(pointer_of(name), "expected one of " + join(names, ", ") + ", got " + in_quotes(text));
  }

  double number(std::string_view name) {
    const json &value = field(name);
    if (!value.is_number())
      v_.fail_type(pointer_of(name), "number", value);
    return value.get<double>();
  }

  double price(std::string_view name) {
    const double value = number(name);
    if (value < 0)
      v_.fail(pointer_of(name), "a price must not be negative, got " + field(name).dump());
    return value;
  }

  double positive_number(std::string_view name) {
    const double value = number(name);
    if (!(value > 0))
      v_.fail(pointer_of(name), "must be greater than zero, got " + field(name).dump());
    return value;
  }

  int positive_integer(std::string_view name) {
    const json &value = field(name);
    if (!value.is_number())
      v_.fail_type(pointer_of(name), "integer", value);
    const double number = value.get<double>();
    if (number != std::floor(number) || number > std::numeric_limits<int>::max())
      v_.fail(pointer_of(name), "expected an integer, got " + value.dump());
    if (number <= 0)
      v_.fail(pointer_of(name), "must be greater than zero, got " + value.dump());
    return static_cast<int>(number);
  }

  ObjectReader object(std::string_view name) {
    return ObjectReader(v_, field(name), pointer_of(name));
  }

  const json &array(std::string_view name) {
    const json &value = field(name);
    if (!value.is_array())
      v_.fail_type(pointer_of(name), "array", value);
    return value;
  }

  void finish() const {
    for (const auto &member : value_.items()) {
      if (!seen_.contains(member.key())) {
        v_.fail(pointer_of(member.key()),
                "unknown field (known: " + join({seen_.begin(), seen_.end()}, ", ") + ")");
      }
    }
  }

  static std::string string_value(const Validator &v, const json &value,
                                  const std::string &pointer) {
    if (!value.is_string())
      v.fail_type(pointer, "string", value);
    auto text = value.get<std::string>();
    if (text.empty())
      v.fail(pointer, "must not be empty");
    return text;
  }

private:
  const Validator &v_;
  const json &value_;
  std::string pointer_;
  std::set<std::string, std::less<>> seen_;
};

inline void check_key(const Validator &v, const std::string &pointer, const std::string &key) {
  if (!is_identifier(key))
    v.fail(pointer,
           "invalid key " + in_quotes(key) + ": use lowercase letters, digits and underscores");
}

[[noreturn]] inline void throw_syntax_error(const std::string &file, const json::parse_error &e) {
  // nlohmann's text is "[json.exception.parse_error.101] parse error at line 3, column 9: <what>".
  std::string_view text = e.what();
  if (const auto end = text.find("] "); text.starts_with("[json.exception") && end != text.npos)
    text.remove_prefix(end + 2);
  std::string message = file + ": invalid JSON";
  constexpr std::string_view kAt = "parse error at ";
  const auto colon = text.find(": ");
  if (text.starts_with(kAt) && colon != text.npos) {
    message += " at " + std::string(text.substr(kAt.size(), colon - kAt.size())) + " (byte " +
               std::to_string(e.byte) + "): " + std::string(text.substr(colon + 2));
  } else {
    message += " (byte " + std::to_string(e.byte) + "): " + std::string(text);
  }
  throw Error(ErrorKind::Config, std::move(message));
}

struct FileCloser {
  void operator()(std::FILE *file) const noexcept { std::fclose(file); }
};

inline std::string read_file(const std::filesystem::path &file) {
  auto fail = [&file](int err) {
    return Error(ErrorKind::Config,
                 "cannot read " + file.string() + ": " + std::generic_category().message(err));
  };
  const std::unique_ptr<std::FILE, FileCloser> stream(std::fopen(file.c_str(), "rb"));
  if (!stream)
    throw fail(errno);
  std::string text;
  char buffer[16384];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, stream.get())) > 0)
    text.append(buffer, n);
  if (std::ferror(stream.get()))
    throw fail(errno);
  return text;
}

// Parses a whole document; a syntax error is Error(Config) with line, column and byte.
inline json parse_document(const Validator &v, const std::string &json_text) {
  try {
    return json::parse(json_text);
  } catch (const json::parse_error &e) {
    throw_syntax_error(v.file(), e);
  }
}

} // namespace gemstream::config_json
