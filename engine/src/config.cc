#include "gemstream/config.h"

#include "gemstream/error.h"

#include "json_validation.h"

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
using namespace config_json;

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
  const json document = parse_document(v, json_text);

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
