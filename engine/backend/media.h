// Media synthesis for the local backend: deterministic PNGs and H.264/AAC MP4s derived from the
// prompt text, the way a real model's output follows its prompt (palette, style, motif, mood).
#pragma once

#include <string>
#include <utility>

// The backend library hides symbols by default; these are used by its tests and tools.
#ifndef GEMSTREAM_BACKEND_API
#if defined(__GNUC__)
#define GEMSTREAM_BACKEND_API __attribute__((visibility("default")))
#else
#define GEMSTREAM_BACKEND_API
#endif
#endif

namespace gemstream::backend {

struct ImageSpec {
  int width = 1024;
  int height = 1024;
  std::string prompt;  // colours, style words and the quoted motif are read from it
};

// Encoded PNG (RGB, 8 bit). Same spec, same bytes.
GEMSTREAM_BACKEND_API std::string render_png(const ImageSpec &spec);

struct VideoSpec {
  int width = 1280;
  int height = 720;
  int fps = 24;
  int seconds = 8;
  std::string prompt;       // palette and mood words (calm, energetic, mysterious, focused)
  std::string start_image;  // optional encoded PNG or JPEG: the first frame is made from it
};

// Encoded MP4: H.264 (yuv420p) video and AAC-LC stereo 48 kHz audio, `seconds` long.
// Throws std::runtime_error if encoding fails or start_image cannot be decoded.
GEMSTREAM_BACKEND_API std::string render_mp4(const VideoSpec &spec);

// Output pixel size for a model and aspect ratio as the real service produces them
// (Gemini 2.5 Flash Image: 1024x1024, 1344x768, 768x1344, 1184x864, 864x1184, ...;
// Imagen 4 at 1K: 1024x1024, 1408x768, 768x1408, 1280x896, 896x1280). Returns {0,0} for an
// aspect ratio the model does not support.
GEMSTREAM_BACKEND_API std::pair<int, int> image_size_for(const std::string &model_id, const std::string &aspect_ratio);

} // namespace gemstream::backend
