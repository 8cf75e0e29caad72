// The local backend's Files API: resumable uploads (upload/{version}/files), file states
// (PROCESSING → ACTIVE or FAILED after a few polls), retrieval, listing and deletion, with the
// real service's paths, headers and JSON. Independent of the HTTP server: the loop hands in a
// request and sends back the reply.
//
// Threading: service-thread only, like the rest of the backend's state.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#ifndef GEMSTREAM_BACKEND_API
#if defined(__GNUC__)
#define GEMSTREAM_BACKEND_API __attribute__((visibility("default")))
#else
#define GEMSTREAM_BACKEND_API
#endif
#endif

namespace gemstream::backend {

// SHA-256 of `data`: the 32 raw digest bytes.
GEMSTREAM_BACKEND_API std::string sha256(std::string_view data);
GEMSTREAM_BACKEND_API std::string hex(std::string_view bytes);

struct FilesRequest {
  std::string method;
  std::string path;  // "/upload/v1beta/files" or "/v1beta/files/abc"
  std::string query; // without '?'
  // Header value by lower-case name, empty when absent.
  std::function<std::string(std::string_view)> header;
  std::string body;
  std::string base_url; // "http://127.0.0.1:PORT", for the upload and file URIs
};

struct FilesReply {
  int status = 200;
  std::string body; // JSON text (empty for bodiless answers)
  std::vector<std::pair<std::string, std::string>> headers; // lower-case names
};

struct FilesOptions {
  // A video file is PROCESSING until this many GETs have seen it (1: the first GET sees
  // ACTIVE); other files are ACTIVE at once.
  int polls_until_active = 2;
  std::uint64_t max_file_bytes = 2ull << 30;  // the real service's 2 GB
  std::uint64_t max_total_bytes = 4ull << 30; // held in memory
  std::chrono::hours lifetime{48};
};

struct FilesError {
  int status = 400;
  std::string message;
};

// An uploaded file's bytes, for generateContent.
struct FileContent {
  std::shared_ptr<const std::string> data;
  std::string mime_type;
  std::string name; // "files/abc"
};

class GEMSTREAM_BACKEND_API FilesApi {
public:
  explicit FilesApi(FilesOptions options = {});
  ~FilesApi();
  FilesApi(const FilesApi &) = delete;
  FilesApi &operator=(const FilesApi &) = delete;

  // POST /upload/{version}/files: a session start, or (with ?upload_id=) a command on one.
  FilesReply upload(const FilesRequest &request);
  // {version}/files[/{id}]: `rest` is what follows "files" ("", "/abc").
  FilesReply files(const FilesRequest &request, std::string_view version, std::string_view rest);

  // A fileData.fileUri ("http://host/v1beta/files/abc", "files/abc"): the content of an ACTIVE
  // file, else the error the real service gives (403 for an unknown file, 400 for one that is
  // not ACTIVE).
  std::variant<FileContent, FilesError> resolve(std::string_view file_uri) const;

  void set_polls_until_active(int polls);
  std::size_t file_count() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace gemstream::backend
