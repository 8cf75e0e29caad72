// Gemini Files API: resumable upload of media too large to send inline, file state polling,
// retrieval, listing and deletion. A file is usable in requests (InputPart::from_file) once it
// is ACTIVE.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/error.h"
#include "gemstream/export.h"
#include "gemstream/genai.h"
#include "gemstream/http.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

enum class FileState { Unspecified, Processing, Active, Failed };

GEMSTREAM_API const char *to_string(FileState state) noexcept;

// The File resource.
struct FileResource {
  std::string name; // "files/abc123"
  std::string display_name;
  std::string mime_type;
  std::uint64_t size_bytes = 0;
  std::string create_time; // RFC 3339
  std::string update_time;
  std::string expiration_time;
  std::string sha256_hash; // as the service reports it
  std::string uri;         // what a request's fileData.fileUri names
  FileState state = FileState::Unspecified;
  std::string error_message;              // error.message when FAILED
  std::optional<double> video_duration_s; // videoMetadata.videoDuration
};

struct UploadOptions {
  std::string mime_type;    // required, e.g. "video/mp4"
  std::string display_name; // empty: the file name
  // Bytes per upload request. The protocol wants multiples of 256 KiB except for the last
  // chunk; other values are rounded up to one.
  std::uint64_t chunk_bytes = 8ull << 20;
  // Retries of one chunk after a network failure or 5xx: each resumes from the offset the
  // server reports it has received (X-Goog-Upload-Command: query).
  int max_chunk_retries = 3;
  // (bytes sent so far, total).
  std::function<void(std::uint64_t, std::uint64_t)> on_progress;
};

class GEMSTREAM_API FilesClient {
public:
  explicit FilesClient(Endpoint endpoint, ClientOptions options = {});
  ~FilesClient();
  FilesClient(const FilesClient &) = delete;
  FilesClient &operator=(const FilesClient &) = delete;

  // Resumable upload: POST upload/{version}/files (start) → the session URL from
  // X-Goog-Upload-URL, which must be on the endpoint's own host (the API key travels with every
  // request) → chunks with X-Goog-Upload-Command "upload" and, on the last, "upload, finalize"
  // at X-Goog-Upload-Offset. Returns the file as the final answer describes it (usually still
  // PROCESSING). Throws Error(Io) when the file cannot be read, Error(Protocol) when the server
  // breaks the protocol (no session URL, a foreign host, a wrong final size).
  FileResource upload(const std::filesystem::path &path, const UploadOptions &options,
                      const CancelToken &cancel);

  // GET {version}/files/{id}; `name` is "files/abc123", a bare id or a file uri.
  FileResource get(const std::string &name, const CancelToken &cancel);
  // DELETE {version}/files/{id}.
  void remove(const std::string &name, const CancelToken &cancel);
  // GET {version}/files, following nextPageToken.
  std::vector<FileResource> list(const CancelToken &cancel);

  // Polls get() until the file is ACTIVE. FAILED is Error(InvalidArgument) with the service's
  // reason; the timeout is Error(Timeout) naming the file. on_poll(poll number, state) is
  // called after each poll that is not ACTIVE yet.
  FileResource wait_active(const std::string &name, std::chrono::milliseconds poll_interval,
                           std::chrono::milliseconds timeout, const CancelToken &cancel,
                           const std::function<void(int, FileState)> &on_poll = {});

  const Endpoint &endpoint() const noexcept { return endpoint_; }

private:
  std::string api_url(const std::string &path) const;

  Endpoint endpoint_;
  ClientOptions options_;
  std::unique_ptr<HttpClient> http_;
};

} // namespace gemstream
