#include "multipart.h"

#include "gemstream/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace gemstream::gateway {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto &c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// The value of parameter `name` in "form-data; name=\"video\"; filename=\"a.mp4\"" (quoted or
// token form).
std::optional<std::string> parameter(std::string_view header, std::string_view name) {
  std::size_t i = header.find(';');
  while (i != std::string_view::npos && i < header.size()) {
    ++i;
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t'))
      ++i;
    const auto eq = header.find('=', i);
    if (eq == std::string_view::npos)
      return std::nullopt;
    const std::string key = lower(trim(header.substr(i, eq - i)));
    std::string value;
    std::size_t j = eq + 1;
    if (j < header.size() && header[j] == '"') {
      for (++j; j < header.size() && header[j] != '"'; ++j) {
        if (header[j] == '\\' && j + 1 < header.size())
          ++j;
        value += header[j];
      }
      ++j;
    } else {
      const auto end = header.find(';', j);
      value = std::string(trim(header.substr(j, end == std::string_view::npos ? end : end - j)));
      j = end == std::string_view::npos ? header.size() : end;
    }
    if (key == name)
      return value;
    i = header.find(';', j);
  }
  return std::nullopt;
}

[[noreturn]] void malformed(const std::string &what) {
  throw Error(ErrorKind::InvalidArgument, "malformed multipart/form-data body: " + what);
}

} // namespace

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  const auto semi = content_type.find(';');
  if (lower(trim(content_type.substr(0, semi))) != "multipart/form-data")
    return std::nullopt;
  auto boundary = parameter(content_type, "boundary");
  if (!boundary || boundary->empty() || boundary->size() > 70)
    return std::nullopt;
  return boundary;
}

MultipartBody::MultipartBody(const std::filesystem::path &file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorKind::Io,
                "cannot read the upload " + file.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorKind::Io,
                "cannot read the upload " + file.string() + ": " + std::strerror(err));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void *map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorKind::Io,
                  "cannot map the upload " + file.string() + ": " + std::strerror(err));
    }
    data_ = static_cast<const char *>(map);
  }
  ::close(fd);
}

MultipartBody::~MultipartBody() {
  if (data_)
    ::munmap(const_cast<char *>(data_), size_);
}

std::vector<MultipartPart> MultipartBody::parts(std::string_view boundary) const {
  const std::string_view body(data_ ? data_ : "", size_);
  const std::string dash = "--" + std::string(boundary);
  const std::string delimiter = "\r\n" + dash;
  std::vector<MultipartPart> parts;

  // The first delimiter may follow a preamble; it is not preceded by CRLF at the very start.
  std::size_t pos = 0;
  if (body.substr(0, dash.size()) == dash) {
    pos = dash.size();
  } else {
    pos = body.find(delimiter);
    if (pos == std::string_view::npos)
      malformed("the boundary from the Content-Type header does not occur in the body");
    pos += delimiter.size();
  }
  for (;;) {
    if (body.substr(pos, 2) == "--")
      return parts; // the close delimiter
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t'))
      ++pos;
    if (body.substr(pos, 2) != "\r\n")
      malformed("expected a line break after a boundary");
    pos += 2;
    const auto headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos)
      malformed("a part's headers do not end");
    MultipartPart part;
    bool has_disposition = false;
    std::string_view headers = body.substr(pos, headers_end - pos);
    while (!headers.empty()) {
      const auto eol = headers.find("\r\n");
      const std::string_view line = headers.substr(0, eol);
      const auto colon = line.find(':');
      if (colon != std::string_view::npos) {
        const std::string name = lower(trim(line.substr(0, colon)));
        const std::string_view value = trim(line.substr(colon + 1));
        if (name == "content-disposition") {
          has_disposition = true;
          part.name = parameter(value, "name").value_or("");
          part.filename = parameter(value, "filename");
        } else if (name == "content-type") {
          part.content_type = std::string(value);
        }
      }
      if (eol == std::string_view::npos)
        break;
      headers.remove_prefix(eol + 2);
    }
    if (!has_disposition || part.name.empty())
      malformed("a part has no Content-Disposition with a name");
    part.offset = headers_end + 4;
    const auto end = body.find(delimiter, part.offset);
    if (end == std::string_view::npos)
      malformed("the body ends inside the part \"" + part.name + "\" (truncated upload?)");
    part.length = end - part.offset;
    parts.push_back(std::move(part));
    pos = end + delimiter.size();
  }
}

std::string MultipartBody::text(const MultipartPart &part) const {
  return std::string(data_ + part.offset, part.length);
}

void MultipartBody::save(const MultipartPart &part, const std::filesystem::path &path) const {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error(ErrorKind::Io, "cannot create " + path.string() + ": " + std::strerror(errno));
  const char *p = data_ + part.offset;
  std::uint64_t left = part.length;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, std::min<std::uint64_t>(left, 1 << 20));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorKind::Io, "cannot write " + path.string() + ": " + std::strerror(err));
    }
    p += n;
    left -= static_cast<std::uint64_t>(n);
  }
  if (::close(fd) != 0)
    throw Error(ErrorKind::Io, "cannot write " + path.string() + ": " + std::strerror(errno));
}

} // namespace gemstream::gateway
