#include "gemstream/config.h"

#include "gemstream/error.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

#ifndef GEMSTREAM_INSTALL_DATA_DIR
#error "the build must define GEMSTREAM_INSTALL_DATA_DIR"
#endif

namespace gemstream {
namespace {

using json = nlohmann::json;

std::string join(const std::vector<std::string> &items, std::string_view separator) {
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
std::string pointer_token(std::string_view key) {
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

std::string in_quotes(const std::string &text) { return json(text).dump(); }

// Keys become CLI arguments and element property values, so they stay plain identifiers.
bool is_identifier(std::string_view key) {
  if (key.empty())
    return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  }
  return true;
}

// "16:9": two positive integers.
bool is_aspect_ratio(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return false;
  auto positive_integer = [](std::string_view part) {
    if (part.empty() || part.front() == '0')
      return false;
    for (char c : part) {
      if (c < '0' || c > '9')
        return false;
    }
    return true;
  };
  return positive_integer(text.substr(0, colon)) && positive_integer(text.substr(colon + 1));
}

// "720p": a positive integer followed by 'p'.
bool is_resolution(std::string_view text) {
  if (text.size() < 2 || text.back() != 'p' || text.front() == '0')
    return false;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9')
      return false;
  }
  return true;
}

// The name of every "{name}" in the text, in order.
std::vector<std::string> placeholders_in(std::string_view text) {
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

void check_key(const Validator &v, const std::string &pointer, const std::string &key) {
  if (!is_identifier(key))
    v.fail(pointer,
           "invalid key " + in_quotes(key) + ": use lowercase letters, digits and underscores");
}

template <typename Model>
void check_unique_id(const Validator &v, const std::map<std::string, Model> &models,
                     const std::string &pointer, const std::string &id, const char *kind) {
  for (const auto &[key, model] : models) {
    if (model.id == id)
      v.fail(pointer, "model id " + in_quotes(id) + " is already used by " + kind + " model " +
                          in_quotes(key));
  }
}

ImageApi parse_image_api(const Validator &v, ObjectReader &model) {
  const auto api = model.string("api");
  if (api == "generateContent")
    return ImageApi::GenerateContent;
  if (api == "predict")
    return ImageApi::Predict;
  v.fail(model.pointer_of("api"),
         "expected \"generateContent\" or \"predict\", got " + in_quotes(api));
}

std::map<std::string, ImageModel> parse_image_models(const Validator &v, ObjectReader &root) {
  const ObjectReader section = root.object("image_models");
  std::map<std::string, ImageModel> models;
  for (const auto &member : section.members().items()) {
    ObjectReader entry(v, member.value(), section.pointer_of(member.key()));
    check_key(v, entry.pointer(), member.key());
    ImageModel model;
    model.key = member.key();
    model.id = entry.string("id");
    check_unique_id(v, models, entry.pointer_of("id"), model.id, "image");
    model.display_name = entry.string("display_name");
    model.api = parse_image_api(v, entry);
    model.usd_per_image = entry.price("usd_per_image");
    entry.finish();
    models.emplace(model.key, std::move(model));
  }
  return models;
}

std::map<std::string, VideoModel> parse_video_models(const Validator &v, ObjectReader &root) {
  const ObjectReader section = root.object("video_models");
  std::map<std::string, VideoModel> models;
  for (const auto &member : section.members().items()) {
    ObjectReader entry(v, member.value(), section.pointer_of(member.key()));
    check_key(v, entry.pointer(), member.key());
    VideoModel model;
    model.key = member.key();
    model.id = entry.string("id");
    check_unique_id(v, models, entry.pointer_of("id"), model.id, "video");
    model.display_name = entry.string("display_name");
    model.usd_per_second = entry.price("usd_per_second");
    model.duration_seconds = entry.positive_integer("duration_seconds");
    entry.finish();
    models.emplace(model.key, std::move(model));
  }
  return models;
}

template <typename Model>
std::string model_key(const Validator &v, ObjectReader &section, std::string_view name,
                      const std::map<std::string, Model> &models, const char *kind) {
  auto key = section.string(name);
  if (!models.contains(key))
    v.fail(section.pointer_of(name), std::string("unknown ") + kind + " model key " +
                                         in_quotes(key) + " (known: " + known_keys(models) + ")");
  return key;
}

MediaDefaults parse_defaults(const Validator &v, ObjectReader &root,
                             const std::map<std::string, ImageModel> &image_models,
                             const std::map<std::string, VideoModel> &video_models) {
  ObjectReader section = root.object("defaults");
  MediaDefaults d;
  d.card_cover_auto = model_key(v, section, "card_cover_auto", image_models, "image");
  d.card_cover_manual = model_key(v, section, "card_cover_manual", image_models, "image");
  d.background_video = model_key(v, section, "background_video", video_models, "video");
  for (auto [name, target] : {std::pair{"image_aspect_ratio", &d.image_aspect_ratio},
                              std::pair{"video_aspect_ratio", &d.video_aspect_ratio}}) {
    *target = section.string(name);
    if (!is_aspect_ratio(*target))
      v.fail(section.pointer_of(name),
             "expected an aspect ratio such as \"16:9\", got " + in_quotes(*target));
  }
  d.video_resolution = section.string("video_resolution");
  if (!is_resolution(d.video_resolution))
    v.fail(section.pointer_of("video_resolution"),
           "expected a resolution such as \"720p\", got " + in_quotes(d.video_resolution));
  d.poll_interval_seconds = section.positive_number("poll_interval_seconds");
  d.operation_timeout_seconds = section.positive_number("operation_timeout_seconds");
  if (d.operation_timeout_seconds < d.poll_interval_seconds)
    v.fail(section.pointer_of("operation_timeout_seconds"),
           "must not be shorter than poll_interval_seconds");
  section.finish();
  return d;
}

Pricing parse_pricing(ObjectReader &root) {
  ObjectReader section = root.object("pricing");
  Pricing p;

  ObjectReader live = section.object("live_native_audio");
  p.live_native_audio.usd_per_million_input_tokens = live.price("usd_per_million_input_tokens");
  p.live_native_audio.usd_per_million_output_tokens = live.price("usd_per_million_output_tokens");
  live.finish();

  ObjectReader analysis = section.object("video_analysis");
  p.video_analysis.model = analysis.string("model");
  p.video_analysis.usd_per_million_tokens = analysis.price("usd_per_million_tokens");
  analysis.finish();

  ObjectReader search = section.object("search_grounding");
  p.search_grounding.usd_per_1000_requests = search.price("usd_per_1000_requests");
  search.finish();

  section.finish();
  return p;
}

// A keyed set of verbatim phrases (style modifiers, moods).
std::map<std::string, std::string> parse_phrases(const Validator &v, ObjectReader &parent,
                                                 std::string_view name) {
  const ObjectReader section = parent.object(name);
  std::map<std::string, std::string> phrases;
  for (const auto &member : section.members().items()) {
    const auto pointer = section.pointer_of(member.key());
    check_key(v, pointer, member.key());
    auto text = ObjectReader::string_value(v, member.value(), pointer);
    v.check_placeholders(pointer, text, {});
    phrases.emplace(member.key(), std::move(text));
  }
  return phrases;
}

CardCoverTemplate parse_card_cover(const Validator &v, ObjectReader &prompts) {
  ObjectReader section = prompts.object("card_cover");
  CardCoverTemplate t;
  t.template_text = section.template_string("template", "motif");
  t.style_modifiers = parse_phrases(v, section, "style_modifiers");
  t.palette_hint = section.template_string("palette_hint", "palette");
  const json &constraints = section.array("constraints");
  for (std::size_t i = 0; i < constraints.size(); ++i) {
    const auto pointer = section.pointer_of("constraints") + "/" + std::to_string(i);
    auto text = ObjectReader::string_value(v, constraints[i], pointer);
    v.check_placeholders(pointer, text, {});
    t.constraints.push_back(std::move(text));
  }
  t.constraints_hint = section.template_string("constraints_hint", "constraints");
  section.finish();
  return t;
}

BackgroundVideoTemplate parse_background_video(const Validator &v, ObjectReader &prompts) {
  ObjectReader section = prompts.object("background_video");
  BackgroundVideoTemplate t;
  t.template_text = section.template_string("template", "description");
  t.cinematography = section.template_string("cinematography", {});
  t.moods = parse_phrases(v, section, "moods");
  t.negative_prompt = section.template_string("negative_prompt", {});
  section.finish();
  return t;
}

[[noreturn]] void throw_syntax_error(const std::string &file, const json::parse_error &e) {
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

std::string read_file(const std::filesystem::path &file) {
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

template <typename Model>
const Model &find_model(const std::map<std::string, Model> &models, const std::string &key_or_id,
                        const char *kind, const std::filesystem::path &source) {
  if (const auto it = models.find(key_or_id); it != models.end())
    return it->second;
  for (const auto &[key, model] : models) {
    if (model.id == key_or_id)
      return model;
  }
  std::string message = std::string("unknown ") + kind + " model " + in_quotes(key_or_id) +
                        ": neither a key nor a model id";
  if (!source.empty())
    message += " in " + source.string();
  message += " (known: " + known_keys(models) + ")";
  throw Error(ErrorKind::Config, std::move(message));
}

std::string environment(const char *name) {
  const char *value = std::getenv(name);
  return value ? value : "";
}

} // namespace

MediaConfig MediaConfig::parse(const std::string &json_text, const std::filesystem::path &name) {
  const Validator v(name.string());
  json document;
  try {
    document = json::parse(json_text);
  } catch (const json::parse_error &e) {
    throw_syntax_error(v.file(), e);
  }

  ObjectReader root(v, document, "");
  if (const int version = root.positive_integer("version"); version != kVersion) {
    v.fail(root.pointer_of("version"), "unsupported version " + std::to_string(version) +
                                           " (this build reads version " +
                                           std::to_string(kVersion) + ")");
  }

  MediaConfig config;
  config.source = name;
  config.image_models = parse_image_models(v, root);
  config.video_models = parse_video_models(v, root);
  config.defaults = parse_defaults(v, root, config.image_models, config.video_models);
  config.pricing = parse_pricing(root);
  ObjectReader prompts = root.object("prompts");
  config.card_cover = parse_card_cover(v, prompts);
  config.background_video = parse_background_video(v, prompts);
  prompts.finish();
  root.finish();
  return config;
}

MediaConfig MediaConfig::load(const std::filesystem::path &file) {
  return parse(read_file(file), file);
}

MediaConfig MediaConfig::load_default() {
  return load(data_dir() / "config" / "media_generation.json");
}

const ImageModel &MediaConfig::image_model(const std::string &key_or_id) const {
  return find_model(image_models, key_or_id, "image", source);
}

const VideoModel &MediaConfig::video_model(const std::string &key_or_id) const {
  return find_model(video_models, key_or_id, "video", source);
}

std::filesystem::path data_dir() {
  if (auto dir = environment("GEMSTREAM_DATA_DIR"); !dir.empty())
    return dir;
#ifdef GEMSTREAM_SOURCE_DATA_DIR
  std::filesystem::path source_tree = GEMSTREAM_SOURCE_DATA_DIR;
  std::error_code ec;
  if (std::filesystem::is_directory(source_tree / "config", ec))
    return source_tree;
#endif
  return GEMSTREAM_INSTALL_DATA_DIR;
}

EnvSettings EnvSettings::from_environment() {
  EnvSettings settings;
  settings.api_key = environment("GOOGLE_API_KEY");
  if (settings.api_key.empty())
    settings.api_key = environment("GEMINI_API_KEY");
  settings.base_url = environment("GEMSTREAM_BASE_URL");
  settings.image_model = environment("GEMINI_IMAGE_MODEL");
  settings.video_model = environment("GEMINI_VIDEO_MODEL");
  return settings;
}

} // namespace gemstream
