#include "media_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <map>

namespace gemstream::gateway {
namespace {

bool is_segment(std::string_view s) {
  if (s.empty() || s.size() > 255 || s.front() == '.')
    return false;
  if (s.size() >= 5 && s.substr(s.size() - 5) == ".part")
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::optional<std::uint64_t> number(std::string_view s) {
  std::uint64_t v = 0;
  if (s.empty())
    return std::nullopt;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

} // namespace

std::optional<std::filesystem::path> media_relative_path(std::string_view relative) {
  std::filesystem::path out;
  while (true) {
    const auto slash = relative.find('/');
    const std::string_view segment = relative.substr(0, slash);
    if (!is_segment(segment))
      return std::nullopt;
    out /= std::string(segment);
    if (slash == std::string_view::npos)
      break;
    relative.remove_prefix(slash + 1);
  }
  return out;
}

std::string content_type_for(const std::filesystem::path &file) {
  static const std::map<std::string, std::string> kTypes = {
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".webp", "image/webp"},
      {".mp4", "video/mp4"},
      {".webm", "video/webm"},
      {".wav", "audio/wav"},
      {".ogg", "audio/ogg"},
      {".json", "application/json; charset=utf-8"},
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".txt", "text/plain; charset=utf-8"},
  };
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto it = kTypes.find(ext);
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

RangeStatus parse_range(std::string_view header, std::uint64_t size, ByteRange &range) {
  constexpr std::string_view kUnit = "bytes=";
  if (header.substr(0, kUnit.size()) != kUnit || header.find(',') != std::string_view::npos)
    return RangeStatus::Whole;
  header.remove_prefix(kUnit.size());
  const auto dash = header.find('-');
  if (dash == std::string_view::npos)
    return RangeStatus::Whole;
  const auto first = number(header.substr(0, dash));
  const auto last = number(header.substr(dash + 1));
  if (!first) {
    // "bytes=-N": the last N bytes.
    if (!last)
      return RangeStatus::Whole;
    if (*last == 0 || size == 0)
      return RangeStatus::Unsatisfiable;
    range.first = size - std::min(*last, size);
    range.last = size - 1;
    return RangeStatus::Partial;
  }
  if (last && *last < *first)
    return RangeStatus::Whole;
  if (*first >= size)
    return RangeStatus::Unsatisfiable;
  range.first = *first;
  range.last = last ? std::min(*last, size - 1) : size - 1;
  return RangeStatus::Partial;
}

Response serve_file(const Request &request, const std::filesystem::path &root,
                    const std::filesystem::path &relative) {
  const std::filesystem::path path = root / relative;
  const auto not_found = [&] {
    return Response::error(404, "no such media file: " + relative.generic_string(), "not_found");
  };
  // O_NOFOLLOW: a symlink planted in the media directory must not lead out of it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return not_found();
  auto body = std::make_shared<FileBody>(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return not_found();
  const auto size = static_cast<std::uint64_t>(st.st_size);

  char etag[96];
  std::snprintf(etag, sizeof etag, "\"%llx-%llx\"", static_cast<unsigned long long>(size),
                static_cast<unsigned long long>(st.st_mtim.tv_sec) * 1000000000ull +
                    static_cast<unsigned long long>(st.st_mtim.tv_nsec));

  Response r;
  r.content_type = content_type_for(path);
  r.headers = {{"etag", etag},
               {"accept-ranges", "bytes"},
               {"cache-control", "no-cache"},
               {"x-content-type-options", "nosniff"}};
  if (const std::string match = request.header("if-none-match");
      !match.empty() && (match == etag || match == "*")) {
    r.status = 304;
    r.content_type.clear();
    return r;
  }
  ByteRange range;
  switch (parse_range(request.header("range"), size, range)) {
  case RangeStatus::Unsatisfiable: {
    Response e = Response::error(416, "the requested range is outside the file (" +
                                          std::to_string(size) + " bytes)");
    e.headers.emplace_back("content-range", "bytes */" + std::to_string(size));
    return e;
  }
  case RangeStatus::Partial:
    r.status = 206;
    r.headers.emplace_back("content-range", "bytes " + std::to_string(range.first) + "-" +
                                                std::to_string(range.last) + "/" +
                                                std::to_string(size));
    body->offset = range.first;
    body->length = range.last - range.first + 1;
    break;
  case RangeStatus::Whole:
    body->offset = 0;
    body->length = size;
    break;
  }
  r.file = std::move(body);
  return r;
}

} // namespace gemstream::gateway
