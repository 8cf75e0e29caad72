// config/media_generation.json: models, prices, defaults and prompt templates.
#pragma once

#include "gemstream/export.h"

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

enum class ImageApi { GenerateContent, Predict };

struct ImageModel {
  std::string key;           // "nano_banana", "imagen_4", "imagen_4_fast"
  std::string id;            // "gemini-2.5-flash-image"
  std::string display_name;  // "Nano Banana"
  ImageApi api = ImageApi::GenerateContent;
  double usd_per_image = 0;
};

struct VideoModel {
  std::string key;  // "veo_3", "veo_3_fast"
  std::string id;   // "veo-3.0-generate-001"
  std::string display_name;
  double usd_per_second = 0;
  int duration_seconds = 8;
};

struct MediaDefaults {
  std::string card_cover_auto;    // image model key
  std::string card_cover_manual;  // image model key
  std::string background_video;   // video model key
  std::string image_aspect_ratio = "1:1";
  std::string video_aspect_ratio = "16:9";
  std::string video_resolution = "720p";
  double poll_interval_seconds = 10;
  double operation_timeout_seconds = 600;
};

struct CardCoverTemplate {
  std::string template_text;  // contains {motif}
  std::map<std::string, std::string> style_modifiers;  // minimal, abstract, nature, cosmic
  std::string palette_hint;   // contains {palette}
  std::vector<std::string> constraints;
  std::string constraints_hint;  // contains {constraints}: the constraints joined with ", "
};

struct BackgroundVideoTemplate {
  std::string template_text;  // contains {description}
  std::string cinematography;
  std::map<std::string, std::string> moods;  // calm, energetic, mysterious, focused
  std::string negative_prompt;
};

// Prices of the services billed per token or per request (USD), for the cost ledger.
struct LiveAudioPricing {
  double usd_per_million_input_tokens = 0;
  double usd_per_million_output_tokens = 0;
};

struct VideoAnalysisPricing {
  std::string model;  // "gemini-2.5-flash"
  double usd_per_million_tokens = 0;
};

struct SearchGroundingPricing {
  double usd_per_1000_requests = 0;
};

struct Pricing {
  LiveAudioPricing live_native_audio;
  VideoAnalysisPricing video_analysis;
  SearchGroundingPricing search_grounding;
};

struct GEMSTREAM_API MediaConfig {
  // The layout version this build reads ("version" in the file).
  static constexpr int kVersion = 1;

  std::map<std::string, ImageModel> image_models;
  std::map<std::string, VideoModel> video_models;
  MediaDefaults defaults;
  CardCoverTemplate card_cover;
  BackgroundVideoTemplate background_video;
  Pricing pricing;
  std::filesystem::path source;  // the file it was loaded from

  // Parses and validates. Throws Error(Config) whose message names the file and the JSON path
  // (e.g. "config/media_generation.json: /image_models/imagen_4/usd_per_image: missing required
  // field"). Unknown fields are rejected too, so a misspelt field cannot be silently ignored.
  static MediaConfig load(const std::filesystem::path &file);
  static MediaConfig parse(const std::string &json_text, const std::filesystem::path &name);
  // Loads media_generation.json from data_dir()/config.
  static MediaConfig load_default();

  // Lookup by config key ("nano_banana") or by model id ("gemini-2.5-flash-image").
  // Throws Error(Config) naming the known keys when absent.
  const ImageModel &image_model(const std::string &key_or_id) const;
  const VideoModel &video_model(const std::string &key_or_id) const;
};

// The directory holding config/ and pipelines/: $GEMSTREAM_DATA_DIR, else the source tree
// when running from a build tree, else the installed share/gemstream.
GEMSTREAM_API std::filesystem::path data_dir();

// Environment settings. Read once per call; never logged.
struct GEMSTREAM_API EnvSettings {
  std::string api_key;      // GOOGLE_API_KEY, else GEMINI_API_KEY
  std::string base_url;     // GEMSTREAM_BASE_URL
  std::string image_model;  // GEMINI_IMAGE_MODEL
  std::string video_model;  // GEMINI_VIDEO_MODEL
  static EnvSettings from_environment();
};

} // namespace gemstream
