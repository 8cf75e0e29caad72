// Probing and validating media files with libavformat before any work starts.
#pragma once

#include "gemstream/export.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace gemstream {

struct MediaStreamInfo {
  enum class Type { Video, Audio, Other } type = Type::Other;
  std::string codec;  // "h264", "aac", ...
  int width = 0, height = 0;
  double fps = 0;     // average frame rate; 0 when unknown
  int sample_rate = 0, channels = 0;
  double duration_s = 0;  // from the packets actually read
  std::int64_t packets = 0;
  // Video: the frame rate of the shortest step between frames, and whether the steps vary
  // (a phone's variable frame rate, dropped frames): the longest is 1.5 times the shortest.
  double max_fps = 0;
  bool variable_rate = false;
  int rotation = 0; // video: clockwise degrees to turn the frames upright (display matrix)
};

struct GEMSTREAM_API MediaInfo {
  std::filesystem::path path;
  std::string container;  // libavformat's short names, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
  std::string mime_type;  // "video/mp4", "video/webm", ... (for upload and inline requests)
  std::uint64_t size_bytes = 0;
  double duration_s = 0;  // the container's declared duration
  std::vector<MediaStreamInfo> streams;

  const MediaStreamInfo *video() const;
  const MediaStreamInfo *audio() const;
};

struct ProbeLimits {
  std::uint64_t max_bytes = 2ull << 30;  // the Files API limit
  double max_duration_s = 3 * 3600;
  bool require_video = true;
  // Container families accepted (matched against libavformat's names): mp4/mov, webm/matroska,
  // avi, mpeg (PS and TS).
  bool restrict_containers = true;
};

// Opens the file, reads every packet (no decoding) and checks it: a known container, a video
// stream when required, packets that reach the declared duration (a truncated file fails), size
// and duration limits. Throws Error(InvalidArgument) with a message naming the file and what is
// wrong ("not a video file", "truncated: packets end at 3.2 s of 8.0 s", "too large: 3.1 GB,
// the limit is 2.0 GB"), or Error(Io) when it cannot be read.
GEMSTREAM_API MediaInfo probe_media(const std::filesystem::path &path, const ProbeLimits &limits = {});

} // namespace gemstream
