#include "gemstream/files.h"

#include "codec.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <system_error>
#include <utility>

namespace gemstream {
namespace {

constexpr std::uint64_t kGranularity = 256 * 1024;

// "https://host:port" of a URL (scheme and authority), empty when it has none.
std::string origin_of(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos)
    return {};
  const auto end = url.find_first_of("/?#", scheme + 3);
  return std::string(url.substr(0, end));
}

std::string header(const HttpResponse &resp, const std::string &name) {
  const auto it = resp.headers.find(name);
  return it == resp.headers.end() ? std::string() : it->second;
}

std::optional<std::uint64_t> parse_u64(const std::string &text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

// files/{id} from "files/abc", "abc" or a file uri ".../v1beta/files/abc".
std::string file_path(const std::string &name) {
  return "files/" + codec::file_id_from_uri(name);
}

Error upload_protocol_error(const std::string &what) {
  return Error(ErrorKind::Protocol, "file upload: " + what);
}

} // namespace

const char *to_string(FileState state) noexcept {
  switch (state) {
  case FileState::Unspecified: return "STATE_UNSPECIFIED";
  case FileState::Processing: return "PROCESSING";
  case FileState::Active: return "ACTIVE";
  case FileState::Failed: return "FAILED";
  }
  return "STATE_UNSPECIFIED";
}

FilesClient::FilesClient(Endpoint endpoint, ClientOptions options)
    : endpoint_(std::move(endpoint)), options_(std::move(options)),
      http_(std::make_unique<HttpClient>(endpoint_.api_key)) {
  while (!endpoint_.base_url.empty() && endpoint_.base_url.back() == '/')
    endpoint_.base_url.pop_back();
  if (endpoint_.api_version.empty())
    endpoint_.api_version = "v1beta";
}

FilesClient::~FilesClient() = default;

std::string FilesClient::api_url(const std::string &path) const {
  return endpoint_.base_url + "/" + endpoint_.api_version + "/" + path;
}

FileResource FilesClient::upload(const std::filesystem::path &path, const UploadOptions &opts,
                                 const CancelToken &cancel) {
  if (opts.mime_type.empty())
    throw Error(ErrorKind::InvalidArgument, "file upload: no MIME type given for " + path.string());
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  const std::uint64_t total = std::filesystem::file_size(path, ec);
  if (!in || ec)
    throw Error(ErrorKind::Io, "cannot read " + path.string() + ": " +
                                   (ec ? ec.message() : std::string("cannot open")));
  if (total == 0)
    throw Error(ErrorKind::InvalidArgument, path.string() + ": the file is empty");

  // Start the session.
  HttpRequest start;
  start.method = "POST";
  start.url = endpoint_.base_url + "/upload/" + endpoint_.api_version + "/files";
  start.timeout = options_.request_timeout;
  start.headers = {{"X-Goog-Upload-Protocol", "resumable"},
                   {"X-Goog-Upload-Command", "start"},
                   {"X-Goog-Upload-Header-Content-Length", std::to_string(total)},
                   {"X-Goog-Upload-Header-Content-Type", opts.mime_type},
                   {"Content-Type", "application/json"}};
  const std::string display =
      opts.display_name.empty() ? path.filename().string() : opts.display_name;
  start.body = nlohmann::json{{"file", {{"displayName", display}}}}.dump();
  const HttpResponse started = http_->request(start, options_.retry, cancel);
  const std::string session = header(started, "x-goog-upload-url");
  if (session.empty())
    throw upload_protocol_error("the server sent no X-Goog-Upload-URL");
  // The key travels with every chunk: never send it to a host other than the API's.
  if (origin_of(session) != origin_of(endpoint_.base_url))
    throw upload_protocol_error("the upload URL is on another host (" + origin_of(session) +
                                ") than the API (" + origin_of(endpoint_.base_url) + ")");

  std::uint64_t chunk = std::max<std::uint64_t>(opts.chunk_bytes, kGranularity);
  chunk = (chunk + kGranularity - 1) / kGranularity * kGranularity;

  RetryPolicy once;
  once.max_attempts = 1;
  std::string buffer;
  std::uint64_t offset = 0;
  int retries_left = opts.max_chunk_retries;
  for (;;) {
    cancel.throw_if_cancelled();
    const std::uint64_t n = std::min(chunk, total - offset);
    const bool last = offset + n == total;
    buffer.resize(static_cast<std::size_t>(n));
    in.clear();
    in.seekg(static_cast<std::streamoff>(offset));
    if (!in.read(buffer.data(), static_cast<std::streamsize>(n)))
      throw Error(ErrorKind::Io, "cannot read " + path.string() + " at byte " +
                                     std::to_string(offset) +
                                     " (did it change during the upload?)");

    HttpRequest put;
    put.method = "POST";
    put.url = session;
    put.timeout = options_.request_timeout;
    put.headers = {{"X-Goog-Upload-Command", last ? "upload, finalize" : "upload"},
                   {"X-Goog-Upload-Offset", std::to_string(offset)},
                   {"Content-Type", "application/octet-stream"}};
    put.body = std::move(buffer);
    HttpResponse resp;
    try {
      resp = http_->request(put, once, cancel);
    } catch (const Error &e) {
      buffer = std::move(put.body);
      if (!e.retryable() || retries_left-- <= 0)
        throw;
      // Ask how much arrived and go on from there.
      if (!cancel.wait_for(options_.retry.initial_backoff))
        throw Error(ErrorKind::Cancelled, "file upload cancelled");
      HttpRequest query;
      query.method = "POST";
      query.url = session;
      query.timeout = options_.request_timeout;
      query.headers = {{"X-Goog-Upload-Command", "query"}};
      const HttpResponse status = http_->request(query, options_.retry, cancel);
      if (header(status, "x-goog-upload-status") == "final")
        return codec::decode_upload_response(status.body);
      const auto received = parse_u64(header(status, "x-goog-upload-size-received"));
      if (!received || *received > total)
        throw upload_protocol_error("the server reported no usable X-Goog-Upload-Size-Received");
      offset = *received;
      continue;
    }
    buffer = std::move(put.body);
    offset += n;
    if (opts.on_progress)
      opts.on_progress(offset, total);
    const std::string status = header(resp, "x-goog-upload-status");
    if (last) {
      if (status != "final")
        throw upload_protocol_error(
            "the server did not finalize the upload (X-Goog-Upload-Status: " +
            (status.empty() ? std::string("none") : status) + ")");
      FileResource file = codec::decode_upload_response(resp.body);
      if (file.size_bytes != 0 && file.size_bytes != total)
        throw upload_protocol_error("the server stored " + std::to_string(file.size_bytes) +
                                    " bytes of " + std::to_string(total));
      return file;
    }
    if (status != "active")
      throw upload_protocol_error("unexpected X-Goog-Upload-Status \"" + status + "\" at byte " +
                                  std::to_string(offset));
  }
}

FileResource FilesClient::get(const std::string &name, const CancelToken &cancel) {
  HttpRequest req;
  req.url = api_url(file_path(name));
  req.timeout = options_.request_timeout;
  return codec::decode_file_response(http_->request(req, options_.retry, cancel).body);
}

void FilesClient::remove(const std::string &name, const CancelToken &cancel) {
  HttpRequest req;
  req.method = "DELETE";
  req.url = api_url(file_path(name));
  req.timeout = options_.request_timeout;
  http_->request(req, options_.retry, cancel);
}

std::vector<FileResource> FilesClient::list(const CancelToken &cancel) {
  std::vector<FileResource> out;
  std::string token;
  do {
    HttpRequest req;
    req.url = api_url("files?pageSize=100" + (token.empty() ? "" : "&pageToken=" + token));
    req.timeout = options_.request_timeout;
    codec::FileList page =
        codec::decode_file_list(http_->request(req, options_.retry, cancel).body);
    for (auto &f : page.files)
      out.push_back(std::move(f));
    if (page.next_page_token == token)
      break; // a server repeating its token would loop forever
    token = std::move(page.next_page_token);
    for (char c : token) {
      const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                      c == '.' || c == '~';
      if (!ok)
        throw Error(ErrorKind::Protocol, "malformed files.list response: unusable nextPageToken");
    }
  } while (!token.empty());
  return out;
}

FileResource FilesClient::wait_active(const std::string &name,
                                      std::chrono::milliseconds poll_interval,
                                      std::chrono::milliseconds timeout, const CancelToken &cancel,
                                      const std::function<void(int, FileState)> &on_poll) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int poll = 1;; ++poll) {
    FileResource file = get(name, cancel);
    if (file.state == FileState::Active)
      return file;
    if (file.state == FileState::Failed)
      throw Error(ErrorKind::InvalidArgument,
                  "the service could not process " + file.name +
                      (file.display_name.empty() ? "" : " (" + file.display_name + ")") + ": " +
                      (file.error_message.empty() ? "no reason given" : file.error_message));
    if (on_poll)
      on_poll(poll, file.state);
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      throw Error(ErrorKind::Timeout, file.name + " is still " + to_string(file.state) + " after " +
                                          std::to_string(timeout.count() / 1000) + " s");
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (!cancel.wait_for(std::min(poll_interval, left + std::chrono::milliseconds(1))))
      throw Error(ErrorKind::Cancelled, "cancelled while waiting for " + file.name);
  }
}

} // namespace gemstream
