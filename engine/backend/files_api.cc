#include "files_api.h"

#include "understanding.h"
#include "wire.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <map>
#include <random>

namespace gemstream::backend {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::system_clock;

constexpr std::uint64_t kGranularity = 256 * 1024;

// ---- SHA-256 (FIPS 180-4) --------------------------------------------------------------------

constexpr std::array<std::uint32_t, 64> kRoundConstants = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr std::uint32_t rotr(std::uint32_t x, int n) {
  return (x >> n) | (x << (32 - n));
}

void sha256_block(std::array<std::uint32_t, 8> &h, const unsigned char *block) {
  std::array<std::uint32_t, 64> w;
  for (int i = 0; i < 16; ++i)
    w[i] = (std::uint32_t(block[4 * i]) << 24) | (std::uint32_t(block[4 * i + 1]) << 16) |
           (std::uint32_t(block[4 * i + 2]) << 8) | std::uint32_t(block[4 * i + 3]);
  for (int i = 16; i < 64; ++i) {
    const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  auto [a, b, c, d, e, f, g, hh] = h;
  for (int i = 0; i < 64; ++i) {
    const std::uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                             kRoundConstants[i] + w[i];
    const std::uint32_t t2 =
        (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

// ---- helpers -----------------------------------------------------------------------------------

std::string rfc3339(Clock::time_point t) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(us % 1000000));
  return buf;
}

std::string seconds_string(double s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", s);
  std::string out = buf;
  while (out.back() == '0')
    out.pop_back();
  if (out.back() == '.')
    out.pop_back();
  return out + "s";
}

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return v;
}

std::string rpc_status(int status) {
  switch (status) {
  case 400: return "INVALID_ARGUMENT";
  case 403: return "PERMISSION_DENIED";
  case 404: return "NOT_FOUND";
  case 413: return "INVALID_ARGUMENT";
  default: return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

FilesReply error(int status, std::string_view message) {
  FilesReply r;
  r.status = status;
  r.body = pretty_json(
      json{{"error", {{"code", status}, {"message", message}, {"status", rpc_status(status)}}}});
  return r;
}

FilesReply json_reply(const json &body) {
  FilesReply r;
  r.body = pretty_json(body);
  return r;
}

// "upload, finalize" -> {"upload", "finalize"}.
std::vector<std::string> commands_of(std::string_view header) {
  std::vector<std::string> out;
  while (!header.empty()) {
    const auto comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (!item.empty())
      out.push_back(lower_ascii(std::string(item)));
    if (comma == std::string_view::npos)
      break;
    header.remove_prefix(comma + 1);
  }
  return out;
}

enum class State { Processing, Active, Failed };

struct StoredFile {
  std::string id;
  std::string display_name;
  std::string mime_type;
  std::shared_ptr<const std::string> data;
  std::string sha256_hash; // base64 of the hex digest, as the real service reports it
  Clock::time_point created;
  Clock::time_point updated;
  State state = State::Processing;
  int polls = 0;
  std::optional<double> duration_s;
  std::string failure; // why processing fails (set at upload, reported once ACTIVE would be)
  std::string uri;
};

struct Session {
  std::string display_name;
  std::string mime_type;
  std::uint64_t declared = 0;
  std::string data;
  bool final = false;
  std::string file_id;
};

} // namespace

std::string sha256(std::string_view data) {
  std::array<std::uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const std::size_t full = data.size() / 64 * 64;
  for (std::size_t i = 0; i < full; i += 64)
    sha256_block(h, reinterpret_cast<const unsigned char *>(data.data()) + i);
  std::array<unsigned char, 128> tail{};
  const std::size_t rest = data.size() - full;
  std::copy(data.begin() + static_cast<std::ptrdiff_t>(full), data.end(), tail.begin());
  tail[rest] = 0x80;
  const std::size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  for (int i = 0; i < 8; ++i)
    tail[tail_len - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
  for (std::size_t i = 0; i < tail_len; i += 64)
    sha256_block(h, tail.data() + i);
  std::string out(32, '\0');
  for (int i = 0; i < 8; ++i)
    for (int b = 0; b < 4; ++b)
      out[4 * i + b] = static_cast<char>(h[i] >> (24 - 8 * b));
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    out += kDigits[(static_cast<unsigned char>(c) >> 4) & 15];
    out += kDigits[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

struct FilesApi::Impl {
  FilesOptions options;
  std::mt19937_64 rng{std::random_device{}()};
  std::map<std::string, Session> sessions; // by upload id
  std::map<std::string, StoredFile> files; // by file id
  std::uint64_t stored_bytes = 0;

  std::string random_id(std::size_t n, std::string_view alphabet) {
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string id(n, ' ');
    for (auto &c : id)
      c = alphabet[pick(rng)];
    return id;
  }

  json resource(const StoredFile &f) const {
    json j = {{"name", "files/" + f.id},
              {"displayName", f.display_name},
              {"mimeType", f.mime_type},
              {"sizeBytes", std::to_string(f.data->size())},
              {"createTime", rfc3339(f.created)},
              {"updateTime", rfc3339(f.updated)},
              {"expirationTime", rfc3339(f.created + options.lifetime)},
              {"sha256Hash", f.sha256_hash},
              {"uri", f.uri},
              {"state", f.state == State::Active   ? "ACTIVE"
                        : f.state == State::Failed ? "FAILED"
                                                   : "PROCESSING"},
              {"source", "UPLOADED"}};
    if (f.state == State::Failed)
      j["error"] = {{"code", 3}, {"message", f.failure}};
    if (f.state == State::Active && f.duration_s)
      j["videoMetadata"] = {{"videoDuration", seconds_string(*f.duration_s)}};
    if (j["displayName"] == "")
      j.erase("displayName");
    return j;
  }

  FilesReply start(const FilesRequest &req);
  FilesReply command(const FilesRequest &req, const std::string &upload_id);
  StoredFile &finalize(Session &s, const FilesRequest &req);
};

FilesApi::FilesApi(FilesOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->options.polls_until_active = std::max(1, options.polls_until_active);
}

FilesApi::~FilesApi() = default;

void FilesApi::set_polls_until_active(int polls) {
  impl_->options.polls_until_active = std::max(1, polls);
}

std::size_t FilesApi::file_count() const {
  return impl_->files.size();
}

FilesReply FilesApi::upload(const FilesRequest &req) {
  if (req.method != "POST")
    return error(404, "Method not found: " + req.method + " " + req.path);
  if (auto id = query_param(req.query, "upload_id"))
    return impl_->command(req, *id);
  return impl_->start(req);
}

FilesReply FilesApi::Impl::start(const FilesRequest &req) {
  const std::string protocol = lower_ascii(req.header("x-goog-upload-protocol"));
  if (protocol != "resumable")
    return error(400, "The local backend supports resumable uploads only "
                      "(X-Goog-Upload-Protocol: resumable), got \"" +
                          protocol + "\".");
  const auto commands = commands_of(req.header("x-goog-upload-command"));
  if (commands != std::vector<std::string>{"start"})
    return error(400, "A resumable upload starts with X-Goog-Upload-Command: start.");
  const auto declared = parse_u64(req.header("x-goog-upload-header-content-length"));
  if (!declared)
    return error(400, "X-Goog-Upload-Header-Content-Length is missing or not a number.");
  if (*declared == 0)
    return error(400, "Cannot upload an empty file.");
  if (*declared > options.max_file_bytes)
    return error(400, "File size " + std::to_string(*declared) + " exceeds the limit of " +
                          std::to_string(options.max_file_bytes) + " bytes.");
  if (stored_bytes + *declared > options.max_total_bytes)
    return error(429, "The project's file storage is full: delete files first.");
  Session s;
  s.declared = *declared;
  s.mime_type = req.header("x-goog-upload-header-content-type");
  if (!req.body.empty()) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object())
      return error(400, "Invalid JSON payload received.");
    for (auto it = body.begin(); it != body.end(); ++it)
      if (it.key() != "file")
        return error(400, "Invalid JSON payload received. Unknown name \"" + it.key() +
                              "\": Cannot find field.");
    if (const json *file = member(body, "file")) {
      if (!file->is_object())
        return error(400, "Invalid JSON payload received. 'file' must be an object.");
      for (auto it = file->begin(); it != file->end(); ++it) {
        const std::string name = camel_case(it.key());
        if (name != "displayName" && name != "mimeType" && name != "name")
          return error(400, "Invalid JSON payload received. Unknown name \"" + it.key() +
                                "\" at 'file': Cannot find field.");
      }
      if (const json *display = member(*file, "displayName"); display && display->is_string())
        s.display_name = display->get<std::string>();
      if (const json *mime = member(*file, "mimeType");
          mime && mime->is_string() && s.mime_type.empty())
        s.mime_type = mime->get<std::string>();
    }
  }
  if (s.mime_type.empty())
    return error(400, "Unknown mime type: set X-Goog-Upload-Header-Content-Type.");
  const std::string id =
      random_id(32, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
  sessions.emplace(id, std::move(s));
  const std::string url =
      req.base_url + req.path + "?upload_id=" + id + "&upload_protocol=resumable";
  FilesReply r;
  r.headers = {{"x-goog-upload-status", "active"},
               {"x-goog-upload-url", url},
               {"x-goog-upload-control-url", url},
               {"x-goog-upload-chunk-granularity", std::to_string(kGranularity)}};
  return r;
}

StoredFile &FilesApi::Impl::finalize(Session &s, const FilesRequest &req) {
  StoredFile f;
  f.id = random_id(12, "abcdefghijklmnopqrstuvwxyz0123456789");
  f.display_name = s.display_name;
  f.mime_type = s.mime_type;
  f.sha256_hash = base64_encode(hex(sha256(s.data)));
  f.data = std::make_shared<const std::string>(std::move(s.data));
  f.created = f.updated = Clock::now();
  f.uri = req.base_url + "/v1beta/files/" + f.id;
  const bool media = f.mime_type.rfind("video/", 0) == 0 || f.mime_type.rfind("audio/", 0) == 0;
  if (media) {
    std::string why;
    f.duration_s = probe_duration(*f.data, &why);
    if (!f.duration_s)
      f.failure = "The file could not be processed as " + f.mime_type + ": " + why;
    f.state = State::Processing;
  } else {
    f.state = State::Active;
  }
  stored_bytes += f.data->size();
  s.final = true;
  s.file_id = f.id;
  s.data.clear();
  return files.emplace(f.id, std::move(f)).first->second;
}

FilesReply FilesApi::Impl::command(const FilesRequest &req, const std::string &upload_id) {
  const auto it = sessions.find(upload_id);
  if (it == sessions.end())
    return error(404,
                 "No upload session " + upload_id + " (it may have expired or been cancelled).");
  Session &s = it->second;
  const auto commands = commands_of(req.header("x-goog-upload-command"));
  auto has = [&](const char *c) {
    return std::find(commands.begin(), commands.end(), c) != commands.end();
  };
  auto status_reply = [&](FilesReply r) {
    r.headers.emplace_back("x-goog-upload-status", s.final ? "final" : "active");
    return r;
  };

  if (has("query")) {
    FilesReply r;
    r.headers.emplace_back(
        "x-goog-upload-size-received",
        std::to_string(s.final ? files.at(s.file_id).data->size() : s.data.size()));
    if (s.final)
      r.body = pretty_json(json{{"file", resource(files.at(s.file_id))}});
    return status_reply(std::move(r));
  }
  if (has("cancel")) {
    sessions.erase(it);
    FilesReply r;
    r.headers.emplace_back("x-goog-upload-status", "cancelled");
    return r;
  }
  if (!has("upload") && !has("finalize"))
    return status_reply(error(400, "Unknown X-Goog-Upload-Command \"" +
                                       req.header("x-goog-upload-command") + "\"."));
  if (s.final)
    return status_reply(error(400, "The upload is already finalized."));
  if (has("upload")) {
    const auto offset = parse_u64(req.header("x-goog-upload-offset"));
    if (!offset)
      return status_reply(error(400, "X-Goog-Upload-Offset is missing or not a number."));
    if (*offset != s.data.size())
      return status_reply(error(400, "Invalid X-Goog-Upload-Offset " + std::to_string(*offset) +
                                         ": the server has received " +
                                         std::to_string(s.data.size()) +
                                         " bytes; query the upload status and resume from there."));
    if (s.data.size() + req.body.size() > s.declared)
      return status_reply(error(400, "The upload exceeds the declared size of " +
                                         std::to_string(s.declared) + " bytes."));
    if (!has("finalize") && req.body.size() % kGranularity != 0)
      return status_reply(error(400, "Chunk of " + std::to_string(req.body.size()) +
                                         " bytes: every chunk but the last must be a multiple of " +
                                         std::to_string(kGranularity) + " bytes."));
  }
  // A finalizing request that would leave the file short is refused whole (its bytes are not
  // kept), so the client can resend it correctly.
  const std::uint64_t after = s.data.size() + (has("upload") ? req.body.size() : 0);
  if (has("finalize") && after != s.declared)
    return status_reply(error(400, "The upload was finalized with " + std::to_string(after) +
                                       " bytes, but X-Goog-Upload-Header-Content-Length declared " +
                                       std::to_string(s.declared) + "."));
  if (has("upload"))
    s.data += req.body;
  if (!has("finalize"))
    return status_reply(FilesReply{});
  const StoredFile &file = finalize(s, req);
  FilesReply r = json_reply({{"file", resource(file)}});
  return status_reply(std::move(r));
}

FilesReply FilesApi::files(const FilesRequest &req, std::string_view, std::string_view rest) {
  auto &files = impl_->files;
  if (rest.empty()) {
    if (req.method != "GET")
      return error(404, "Method not found: " + req.method + " " + req.path);
    std::size_t page_size = 10;
    if (auto p = query_param(req.query, "pageSize")) {
      const auto n = parse_u64(*p);
      if (!n)
        return error(400, "Invalid pageSize \"" + *p + "\".");
      page_size = std::clamp<std::size_t>(static_cast<std::size_t>(*n), 1, 100);
    }
    std::size_t first = 0;
    if (auto t = query_param(req.query, "pageToken"); t && !t->empty()) {
      const auto n = parse_u64(*t);
      if (!n)
        return error(400, "Invalid pageToken.");
      first = static_cast<std::size_t>(*n);
    }
    std::vector<const StoredFile *> all;
    for (const auto &[id, f] : files)
      all.push_back(&f);
    std::sort(all.begin(), all.end(), [](const StoredFile *a, const StoredFile *b) {
      return a->created != b->created ? a->created > b->created : a->id < b->id;
    });
    json list = json::array();
    for (std::size_t i = first; i < all.size() && i < first + page_size; ++i)
      list.push_back(impl_->resource(*all[i]));
    json body = json::object();
    if (!list.empty())
      body["files"] = std::move(list);
    if (first + page_size < all.size())
      body["nextPageToken"] = std::to_string(first + page_size);
    return json_reply(body);
  }
  if (rest.front() != '/')
    return error(404, "Method not found: " + req.method + " " + req.path);
  const std::string id(rest.substr(1));
  const auto it = files.find(id);
  if (it == files.end())
    return error(403,
                 "You do not have permission to access the File " + id + " or it may not exist.");
  StoredFile &f = it->second;
  if (req.method == "DELETE") {
    impl_->stored_bytes -= f.data->size();
    files.erase(it);
    return json_reply(json::object());
  }
  if (req.method != "GET")
    return error(404, "Method not found: " + req.method + " " + req.path);
  if (f.state == State::Processing && ++f.polls >= impl_->options.polls_until_active) {
    f.state = f.failure.empty() ? State::Active : State::Failed;
    f.updated = Clock::now();
  }
  return json_reply(impl_->resource(f));
}

std::variant<FileContent, FilesError> FilesApi::resolve(std::string_view uri) const {
  std::string_view rest = uri.substr(0, uri.find_first_of("?#"));
  const auto pos = rest.rfind("files/");
  if (pos == std::string_view::npos)
    return FilesError{400, "Invalid file uri \"" + std::string(uri) + "\"."};
  const std::string id(rest.substr(pos + 6));
  const auto it = impl_->files.find(id);
  if (it == impl_->files.end())
    return FilesError{403, "You do not have permission to access the File " + id +
                               " or it may not exist."};
  const StoredFile &f = it->second;
  if (f.state != State::Active)
    return FilesError{400,
                      "The File " + id + " is not in an ACTIVE state and usage is not allowed."};
  return FileContent{f.data, f.mime_type, "files/" + id};
}

} // namespace gemstream::backend
