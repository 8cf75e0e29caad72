// multipart/form-data (RFC 7578) bodies spooled to disk: the parts are located in the file
// without loading it, and a file part is copied out with one write.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gemstream::gateway {

struct MultipartPart {
  std::string name; // Content-Disposition name
  std::optional<std::string> filename;
  std::string content_type; // "" when the part has none
  std::uint64_t offset = 0; // of the part's content in the body file
  std::uint64_t length = 0;
};

// The boundary parameter of a multipart/form-data Content-Type; nullopt for another type.
std::optional<std::string> multipart_boundary(std::string_view content_type);

// A read-only view of a spooled body. Throws Error(Io) when it cannot be read.
class MultipartBody {
public:
  explicit MultipartBody(const std::filesystem::path &file);
  ~MultipartBody();
  MultipartBody(const MultipartBody &) = delete;
  MultipartBody &operator=(const MultipartBody &) = delete;

  // Throws Error(InvalidArgument) for a body that is not multipart with this boundary.
  std::vector<MultipartPart> parts(std::string_view boundary) const;
  std::string text(const MultipartPart &part) const;
  // Writes the part's content to `path` (created, mode 0600). Throws Error(Io).
  void save(const MultipartPart &part, const std::filesystem::path &path) const;

private:
  const char *data_ = nullptr;
  std::size_t size_ = 0;
};

} // namespace gemstream::gateway
