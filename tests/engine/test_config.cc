#include "gemstream/config.h"
#include "gemstream/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <unistd.h>

namespace gemstream {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const fs::path kShippedConfig = fs::path(GEMSTREAM_SOURCE_DIR) / "config" / "media_generation.json";
constexpr const char *kName = "config/media_generation.json";

json shipped_json() {
  std::ifstream in(kShippedConfig);
  return json::parse(in);
}

// The Error(Config) message parse() raises for `text`, or a test failure if it accepts it.
std::string config_error(const std::string &text) {
  try {
    MediaConfig::parse(text, kName);
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config) << e.message();
    return e.message();
  }
  ADD_FAILURE() << "parse() accepted:\n" << text;
  return {};
}

// Sets (or with nullopt, unsets) one environment variable for the scope.
class ScopedEnv {
public:
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char *old = std::getenv(name_.c_str()))
      old_ = old;
    set(value);
  }
  ~ScopedEnv() { set(old_); }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  void set(const std::optional<std::string> &value) {
    if (value)
      ::setenv(name_.c_str(), value->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

  std::string name_;
  std::optional<std::string> old_;
};

class TempDir {
public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("gemstream-test-config-" + std::to_string(::getpid()) + "-" + std::to_string(next_++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const fs::path &path() const { return path_; }

private:
  static inline int next_ = 0;
  fs::path path_;
};

TEST(MediaConfig, ShippedConfigHasThePlanModelsAndPrices) {
  const auto cfg = MediaConfig::load(kShippedConfig);
  EXPECT_EQ(cfg.source, kShippedConfig);

  ASSERT_EQ(cfg.image_models.size(), 3u);
  const auto &nano = cfg.image_models.at("nano_banana");
  EXPECT_EQ(nano.key, "nano_banana");
  EXPECT_EQ(nano.id, "gemini-2.5-flash-image");
  EXPECT_EQ(nano.display_name, "Nano Banana");
  EXPECT_EQ(nano.api, ImageApi::GenerateContent);
  EXPECT_DOUBLE_EQ(nano.usd_per_image, 0.001);
  const auto &imagen = cfg.image_models.at("imagen_4");
  EXPECT_EQ(imagen.id, "imagen-4.0-generate-001");
  EXPECT_EQ(imagen.display_name, "Imagen 4");
  EXPECT_EQ(imagen.api, ImageApi::Predict);
  EXPECT_DOUBLE_EQ(imagen.usd_per_image, 0.04);
  const auto &imagen_fast = cfg.image_models.at("imagen_4_fast");
  EXPECT_EQ(imagen_fast.id, "imagen-4.0-fast-generate-001");
  EXPECT_EQ(imagen_fast.display_name, "Imagen 4 Fast");
  EXPECT_EQ(imagen_fast.api, ImageApi::Predict);
  EXPECT_DOUBLE_EQ(imagen_fast.usd_per_image, 0.02);

  ASSERT_EQ(cfg.video_models.size(), 2u);
  const auto &veo = cfg.video_models.at("veo_3");
  EXPECT_EQ(veo.key, "veo_3");
  EXPECT_EQ(veo.id, "veo-3.0-generate-001");
  EXPECT_EQ(veo.display_name, "Veo 3");
  EXPECT_DOUBLE_EQ(veo.usd_per_second, 0.75);
  EXPECT_EQ(veo.duration_seconds, 8);
  const auto &veo_fast = cfg.video_models.at("veo_3_fast");
  EXPECT_EQ(veo_fast.id, "veo-3.0-fast-generate-001");
  EXPECT_EQ(veo_fast.display_name, "Veo 3 Fast");
  EXPECT_DOUBLE_EQ(veo_fast.usd_per_second, 0.50);
  EXPECT_EQ(veo_fast.duration_seconds, 8);

  EXPECT_EQ(cfg.defaults.card_cover_auto, "nano_banana");
  EXPECT_EQ(cfg.defaults.card_cover_manual, "imagen_4");
  EXPECT_EQ(cfg.defaults.background_video, "veo_3_fast");
  EXPECT_EQ(cfg.defaults.image_aspect_ratio, "1:1");
  EXPECT_EQ(cfg.defaults.video_aspect_ratio, "16:9");
  EXPECT_EQ(cfg.defaults.video_resolution, "720p");
  EXPECT_DOUBLE_EQ(cfg.defaults.poll_interval_seconds, 10);
  EXPECT_DOUBLE_EQ(cfg.defaults.operation_timeout_seconds, 600);

  EXPECT_DOUBLE_EQ(cfg.pricing.live_native_audio.usd_per_million_input_tokens, 1.00);
  EXPECT_DOUBLE_EQ(cfg.pricing.live_native_audio.usd_per_million_output_tokens, 3.00);
  EXPECT_EQ(cfg.pricing.video_analysis.model, "gemini-2.5-flash");
  EXPECT_DOUBLE_EQ(cfg.pricing.video_analysis.usd_per_million_tokens, 0.30);
  EXPECT_DOUBLE_EQ(cfg.pricing.search_grounding.usd_per_1000_requests, 0.035);

  EXPECT_EQ(cfg.card_cover.template_text,
            "Create a simple centered silhouette cover image for: \"{motif}\".");
  EXPECT_EQ(cfg.card_cover.palette_hint, "Use a colour palette of {palette}.");
  EXPECT_EQ(
      cfg.card_cover.constraints,
      (std::vector<std::string>{"no text", "no watermark", "high contrast", "clean background"}));
  EXPECT_EQ(cfg.background_video.negative_prompt, "text, watermark, logos, people, fast cuts");
}

// The local backend renders style and mood from the words it finds in the prompt, so each
// phrase must name its own key and no other.
TEST(MediaConfig, ShippedPhrasesNameOnlyTheirOwnStyleOrMood) {
  const auto cfg = MediaConfig::load(kShippedConfig);
  auto lower = [](std::string s) {
    for (auto &c : s)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  auto check = [&](const std::map<std::string, std::string> &phrases,
                   const std::vector<std::string> &expected_keys) {
    std::vector<std::string> keys;
    for (const auto &[key, text] : phrases) {
      keys.push_back(key);
      for (const auto &[other, unused] : phrases) {
        const bool found = lower(text).find(other) != std::string::npos;
        EXPECT_EQ(found, other == key) << key << ": " << text;
      }
    }
    EXPECT_EQ(keys, expected_keys);
  };
  check(cfg.card_cover.style_modifiers, {"abstract", "cosmic", "minimal", "nature"});
  check(cfg.background_video.moods, {"calm", "energetic", "focused", "mysterious"});
}

struct InvalidCase {
  const char *name;
  std::function<void(json &)> mutate;
  std::string expected; // the message after "config/media_generation.json: "
};

TEST(MediaConfig, RejectsInvalidConfigNamingFileAndPath) {
  const std::vector<InvalidCase> cases = {
      {"missing field", [](json &j) { j["image_models"]["imagen_4"].erase("usd_per_image"); },
       "/image_models/imagen_4/usd_per_image: missing required field"},
      {"number as string", [](json &j) { j["image_models"]["imagen_4"]["usd_per_image"] = "0.04"; },
       "/image_models/imagen_4/usd_per_image: expected a number, got string"},
      {"string as number", [](json &j) { j["video_models"]["veo_3"]["display_name"] = 3; },
       "/video_models/veo_3/display_name: expected a string, got number"},
      {"empty string", [](json &j) { j["prompts"]["background_video"]["moods"]["calm"] = ""; },
       "/prompts/background_video/moods/calm: must not be empty"},
      {"unknown image model in defaults", [](json &j) { j["defaults"]["card_cover_auto"] = "foo"; },
       "/defaults/card_cover_auto: unknown image model key \"foo\" (known: imagen_4, "
       "imagen_4_fast, nano_banana)"},
      {"model id instead of key in defaults",
       [](json &j) { j["defaults"]["background_video"] = "veo-3.0-generate-001"; },
       "/defaults/background_video: unknown video model key \"veo-3.0-generate-001\" (known: "
       "veo_3, veo_3_fast)"},
      {"negative image price",
       [](json &j) { j["image_models"]["nano_banana"]["usd_per_image"] = -0.04; },
       "/image_models/nano_banana/usd_per_image: a price must not be negative, got -0.04"},
      {"negative video price",
       [](json &j) { j["video_models"]["veo_3_fast"]["usd_per_second"] = -1; },
       "/video_models/veo_3_fast/usd_per_second: a price must not be negative, got -1"},
      {"negative grounding price",
       [](json &j) { j["pricing"]["search_grounding"]["usd_per_1000_requests"] = -0.035; },
       "/pricing/search_grounding/usd_per_1000_requests: a price must not be negative, got -0.035"},
      {"missing pricing field",
       [](json &j) { j["pricing"]["live_native_audio"].erase("usd_per_million_output_tokens"); },
       "/pricing/live_native_audio/usd_per_million_output_tokens: missing required field"},
      {"missing pricing", [](json &j) { j.erase("pricing"); }, "/pricing: missing required field"},
      {"bad api", [](json &j) { j["image_models"]["imagen_4"]["api"] = "streamGenerateContent"; },
       "/image_models/imagen_4/api: expected \"generateContent\" or \"predict\", got "
       "\"streamGenerateContent\""},
      {"fractional duration", [](json &j) { j["video_models"]["veo_3"]["duration_seconds"] = 8.5; },
       "/video_models/veo_3/duration_seconds: expected an integer, got 8.5"},
      {"zero duration", [](json &j) { j["video_models"]["veo_3"]["duration_seconds"] = 0; },
       "/video_models/veo_3/duration_seconds: must be greater than zero, got 0"},
      {"zero poll interval", [](json &j) { j["defaults"]["poll_interval_seconds"] = 0; },
       "/defaults/poll_interval_seconds: must be greater than zero, got 0"},
      {"timeout shorter than poll interval",
       [](json &j) { j["defaults"]["operation_timeout_seconds"] = 5; },
       "/defaults/operation_timeout_seconds: must not be shorter than poll_interval_seconds"},
      {"bad aspect ratio", [](json &j) { j["defaults"]["image_aspect_ratio"] = "square"; },
       "/defaults/image_aspect_ratio: expected an aspect ratio such as \"16:9\", got \"square\""},
      {"bad resolution", [](json &j) { j["defaults"]["video_resolution"] = "HD"; },
       "/defaults/video_resolution: expected a resolution such as \"720p\", got \"HD\""},
      {"template without placeholder",
       [](json &j) { j["prompts"]["card_cover"]["template"] = "A cover image."; },
       "/prompts/card_cover/template: must contain the placeholder {motif}"},
      {"template with misspelt placeholder",
       [](json &j) { j["prompts"]["card_cover"]["template"] = "A cover for {motiv}."; },
       "/prompts/card_cover/template: unknown placeholder {motiv} (allowed: {motif})"},
      {"palette hint without placeholder",
       [](json &j) { j["prompts"]["card_cover"]["palette_hint"] = "Use nice colours."; },
       "/prompts/card_cover/palette_hint: must contain the placeholder {palette}"},
      {"constraints hint without placeholder",
       [](json &j) { j["prompts"]["card_cover"]["constraints_hint"] = "Constraints: none."; },
       "/prompts/card_cover/constraints_hint: must contain the placeholder {constraints}"},
      {"video template without placeholder",
       [](json &j) { j["prompts"]["background_video"]["template"] = "A video of {motif}."; },
       "/prompts/background_video/template: unknown placeholder {motif} (allowed: {description})"},
      {"placeholder in verbatim text",
       [](json &j) { j["prompts"]["background_video"]["cinematography"] = "Film {description}."; },
       "/prompts/background_video/cinematography: unexpected placeholder {description}: this text "
       "is not a template"},
      {"constraint of the wrong type",
       [](json &j) { j["prompts"]["card_cover"]["constraints"][1] = 5; },
       "/prompts/card_cover/constraints/1: expected a string, got number"},
      {"constraints not an array",
       [](json &j) { j["prompts"]["card_cover"]["constraints"] = "no text"; },
       "/prompts/card_cover/constraints: expected an array, got string"},
      {"models not an object", [](json &j) { j["image_models"] = json::array(); },
       "/image_models: expected an object, got array"},
      {"misspelt field",
       [](json &j) {
         auto &nano = j["image_models"]["nano_banana"];
         nano["usd_per_imgae"] = nano["usd_per_image"];
       },
       "/image_models/nano_banana/usd_per_imgae: unknown field (known: api, display_name, id, "
       "usd_per_image)"},
      {"unknown top-level field", [](json &j) { j["audio_models"] = json::object(); },
       "/audio_models: unknown field (known: defaults, image_models, pricing, prompts, "
       "version, video_models)"},
      {"unsupported version", [](json &j) { j["version"] = 2; },
       "/version: unsupported version 2 (this build reads version 1)"},
      {"duplicate model id",
       [](json &j) { j["image_models"]["imagen_4_fast"]["id"] = "imagen-4.0-generate-001"; },
       "/image_models/imagen_4_fast/id: model id \"imagen-4.0-generate-001\" is already used by "
       "image model \"imagen_4\""},
      {"key needing pointer escapes",
       [](json &j) { j["image_models"]["Nano/Banana~2"] = j["image_models"]["nano_banana"]; },
       "/image_models/Nano~1Banana~02: invalid key \"Nano/Banana~2\": use lowercase letters, "
       "digits and underscores"},
      {"document not an object", [](json &j) { j = json::array({1}); },
       "/: expected an object, got array"},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(c.name);
    auto doc = shipped_json();
    c.mutate(doc);
    EXPECT_EQ(config_error(doc.dump(2)), std::string(kName) + ": " + c.expected);
  }
}

TEST(MediaConfig, SyntaxErrorReportsLineColumnAndByte) {
  // The ',' after '{' on line 3 is at column 20, byte 38 (both 1-based).
  const std::string text = "{\n  \"version\": 1,\n  \"image_models\": {,\n}";
  EXPECT_EQ(
      config_error(text),
      "config/media_generation.json: invalid JSON at line 3, column 20 (byte 38): syntax error "
      "while parsing object key - unexpected ','; expected string literal");
  EXPECT_THAT(config_error(""), StartsWith("config/media_generation.json: invalid JSON at line 1, "
                                           "column 1 (byte 1): "));
}

TEST(MediaConfig, LoadReportsUnreadableFiles) {
  const TempDir dir;
  const auto missing = dir.path() / "missing.json";
  try {
    MediaConfig::load(missing);
    FAIL() << "loaded a missing file";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_EQ(e.message(), "cannot read " + missing.string() + ": No such file or directory");
  }
  try {
    MediaConfig::load(dir.path());
    FAIL() << "loaded a directory";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_EQ(e.message(), "cannot read " + dir.path().string() + ": Is a directory");
  }
}

TEST(MediaConfig, LoadNamesTheFileInValidationErrors) {
  const TempDir dir;
  auto doc = shipped_json();
  doc["defaults"]["card_cover_manual"] = 1;
  const auto file = dir.path() / "media_generation.json";
  std::ofstream(file) << doc.dump(2);
  try {
    MediaConfig::load(file);
    FAIL() << "accepted an invalid file";
  } catch (const Error &e) {
    EXPECT_EQ(e.message(),
              file.string() + ": /defaults/card_cover_manual: expected a string, got number");
  }
}

TEST(MediaConfig, LooksUpModelsByKeyOrId) {
  const auto cfg = MediaConfig::load(kShippedConfig);
  EXPECT_EQ(cfg.image_model("nano_banana").id, "gemini-2.5-flash-image");
  EXPECT_EQ(cfg.image_model("imagen-4.0-fast-generate-001").key, "imagen_4_fast");
  EXPECT_EQ(&cfg.image_model("imagen_4"), &cfg.image_model("imagen-4.0-generate-001"));
  EXPECT_EQ(cfg.video_model("veo_3").id, "veo-3.0-generate-001");
  EXPECT_EQ(cfg.video_model("veo-3.0-fast-generate-001").key, "veo_3_fast");

  try {
    cfg.image_model("dall-e-3");
    FAIL() << "found an unknown image model";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_EQ(e.message(), "unknown image model \"dall-e-3\": neither a key nor a model id in " +
                               kShippedConfig.string() +
                               " (known: imagen_4, imagen_4_fast, nano_banana)");
  }
  try {
    cfg.video_model("veo_4");
    FAIL() << "found an unknown video model";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_THAT(e.message(), HasSubstr("(known: veo_3, veo_3_fast)"));
  }
  // Image and video models are separate namespaces.
  EXPECT_THROW(cfg.video_model("nano_banana"), Error);
}

TEST(DataDir, HonoursGemstreamDataDir) {
  const TempDir dir;
  {
    const ScopedEnv env("GEMSTREAM_DATA_DIR", dir.path().string());
    EXPECT_EQ(data_dir(), dir.path());
  }
  // Unset or empty: the source tree, because this test runs from a build tree.
  for (const auto &value : {std::optional<std::string>{}, std::optional<std::string>{""}}) {
    const ScopedEnv env("GEMSTREAM_DATA_DIR", value);
    EXPECT_TRUE(fs::equivalent(data_dir(), GEMSTREAM_SOURCE_DIR)) << data_dir();
  }
}

TEST(DataDir, LoadDefaultReadsFromDataDir) {
  const TempDir dir;
  fs::create_directories(dir.path() / "config");
  auto doc = shipped_json();
  doc["image_models"]["nano_banana"]["usd_per_image"] = 0.5;
  const auto file = dir.path() / "config" / "media_generation.json";
  std::ofstream(file) << doc.dump(2);

  const ScopedEnv env("GEMSTREAM_DATA_DIR", dir.path().string());
  const auto cfg = MediaConfig::load_default();
  EXPECT_EQ(cfg.source, file);
  EXPECT_DOUBLE_EQ(cfg.image_model("nano_banana").usd_per_image, 0.5);
}

TEST(EnvSettings, GoogleApiKeyTakesPrecedenceOverGeminiApiKey) {
  {
    const ScopedEnv google("GOOGLE_API_KEY", "google-key");
    const ScopedEnv gemini("GEMINI_API_KEY", "gemini-key");
    EXPECT_EQ(EnvSettings::from_environment().api_key, "google-key");
  }
  {
    const ScopedEnv google("GOOGLE_API_KEY", std::nullopt);
    const ScopedEnv gemini("GEMINI_API_KEY", "gemini-key");
    EXPECT_EQ(EnvSettings::from_environment().api_key, "gemini-key");
  }
  {
    const ScopedEnv google("GOOGLE_API_KEY", "");
    const ScopedEnv gemini("GEMINI_API_KEY", "gemini-key");
    EXPECT_EQ(EnvSettings::from_environment().api_key, "gemini-key");
  }
  {
    const ScopedEnv google("GOOGLE_API_KEY", std::nullopt);
    const ScopedEnv gemini("GEMINI_API_KEY", "");
    EXPECT_EQ(EnvSettings::from_environment().api_key, "");
  }
}

TEST(EnvSettings, ReadsBaseUrlAndModelOverrides) {
  const ScopedEnv base("GEMSTREAM_BASE_URL", "http://127.0.0.1:8089");
  const ScopedEnv image("GEMINI_IMAGE_MODEL", "imagen_4_fast");
  const ScopedEnv video("GEMINI_VIDEO_MODEL", "veo-3.0-generate-001");
  const auto settings = EnvSettings::from_environment();
  EXPECT_EQ(settings.base_url, "http://127.0.0.1:8089");
  EXPECT_EQ(settings.image_model, "imagen_4_fast");
  EXPECT_EQ(settings.video_model, "veo-3.0-generate-001");

  const ScopedEnv unset_base("GEMSTREAM_BASE_URL", std::nullopt);
  const ScopedEnv unset_image("GEMINI_IMAGE_MODEL", std::nullopt);
  const ScopedEnv unset_video("GEMINI_VIDEO_MODEL", std::nullopt);
  const auto defaults = EnvSettings::from_environment();
  EXPECT_EQ(defaults.base_url, "");
  EXPECT_EQ(defaults.image_model, "");
  EXPECT_EQ(defaults.video_model, "");
}

} // namespace
} // namespace gemstream
