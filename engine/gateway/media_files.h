// Serving generated files from the media directory: path validation (no traversal, no hidden
// or partial files), content types, single byte ranges for <video> seeking, ETag revalidation.
#pragma once

#include "http_server.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace gemstream::gateway {

// A relative media path ("videos/alice/job_x/clip.mp4") made of segments of letters, digits,
// '.', '_' and '-', none empty, none starting with '.', no ".part" file. nullopt otherwise.
std::optional<std::filesystem::path> media_relative_path(std::string_view relative);

// "video/mp4", "image/png", ...; application/octet-stream when unknown.
std::string content_type_for(const std::filesystem::path &file);

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0; // inclusive
};
enum class RangeStatus { Whole, Partial, Unsatisfiable };
// Parses a Range header for a file of `size` bytes. Multiple ranges and malformed headers are
// answered with the whole file, as RFC 9110 allows.
RangeStatus parse_range(std::string_view header, std::uint64_t size, ByteRange &range);

// Answers a GET for `file` (which media_relative_path() accepted, under `root`): 200/206/304/
// 404/416 with the file streamed from disk.
Response serve_file(const Request &request, const std::filesystem::path &root,
                    const std::filesystem::path &relative);

} // namespace gemstream::gateway
