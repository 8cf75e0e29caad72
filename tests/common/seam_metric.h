// Measures how seamlessly a video loops: the luma difference between its last and first frame
// against the ordinary differences between neighbouring frames.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gemstream::test {

struct SeamReport {
  int frames = 0;
  int width = 0, height = 0;
  double duration_s = 0;
  double seam_mad = 0;           // mean absolute difference of 8-bit luma (full range), last → first frame
  double median_step_mad = 0;    // median over neighbouring frames
  double max_step_mad = 0;
  std::vector<double> steps;     // every neighbour step, in order
  // Audio: the jump between the last and first sample against the typical sample step.
  bool has_audio = false;
  double audio_seam_step = 0;    // |first - last| averaged over channels, in full scale (0..2)
  double audio_p99_step = 0;     // 99th percentile of neighbouring sample steps
};

// Decodes the whole file (video and the first audio stream) with libavcodec. Throws
// std::runtime_error with the reason when the file cannot be decoded.
SeamReport measure_seam(const std::string &path);

// The first video frame (or the image) of a file as 8-bit RGB, converted the way a player
// shows it: with the matrix and range the decoder reports (a JPEG's full-range BT.601, an
// H.264 stream's tagged BT.709 limited range). Throws std::runtime_error like measure_seam.
struct RgbFrame {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb; // width * height * 3 bytes
};
RgbFrame first_frame_rgb(const std::string &path);

// Mean absolute difference of two frames' RGB bytes (0-255); frames of different sizes throw.
double rgb_mad(const RgbFrame &a, const RgbFrame &b);

} // namespace gemstream::test
