// Test helpers for the gateway: a libcurl client, a minimal blocking WebSocket client (so the
// tests see the upgrade answer's status line and every frame byte as sent), and a harness that
// runs a gateway in-process against a local backend on loopback.
#pragma once

#include <gemstream/costs.h>
#include <gemstream/gateway.h>
#include <gemstream/local_backend.h>

#include "common/ws_client.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace gemstream::testing {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline constexpr const char *kAliceToken = "alice-token-0123456789";
inline constexpr const char *kBobToken = "bob-token-0123456789abc";

inline std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const fs::path &p, const std::string &bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

// A fresh directory under the build tree, removed at the end of the test.
class TempDir {
public:
  TempDir() {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name =
        std::string(info ? info->test_suite_name() : "t") + "." + (info ? info->name() : "t");
    for (auto &c : name)
      if (c == '/')
        c = '_';
    path_ = fs::path(GEMSTREAM_BINARY_DIR) / "tests" / "gateway-work" /
            (name + "." + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path &path() const { return path_; }

private:
  fs::path path_;
};

struct HttpResult {
  long status = 0;
  std::map<std::string, std::string> headers; // lower-case names
  std::string body;
  json json_body() const { return json::parse(body, nullptr, false); }
  std::string header(const std::string &name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct MultipartField {
  std::string name;
  std::string data;
  std::string filename; // non-empty: a file part
  std::string type;
};

struct HttpCall {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  std::optional<std::string> body;
  std::vector<MultipartField> multipart;
  bool path_as_is = false;
};

inline HttpResult http(const HttpCall &call) {
  HttpResult result;
  CURL *curl = curl_easy_init();
  curl_slist *headers = nullptr;
  for (const auto &h : call.headers)
    headers = curl_slist_append(headers, h.c_str());
  curl_mime *mime = nullptr;
  curl_easy_setopt(curl, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  if (call.path_as_is)
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
  if (call.body) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, call.body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(call.body->size()));
  }
  if (!call.multipart.empty()) {
    mime = curl_mime_init(curl);
    for (const auto &f : call.multipart) {
      curl_mimepart *part = curl_mime_addpart(mime);
      curl_mime_name(part, f.name.c_str());
      curl_mime_data(part, f.data.data(), f.data.size());
      if (!f.filename.empty())
        curl_mime_filename(part, f.filename.c_str());
      if (!f.type.empty())
        curl_mime_type(part, f.type.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, nullptr);
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char *p, size_t s, size_t n, void *u) -> size_t {
        static_cast<std::string *>(u)->append(p, s * n);
        return s * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(
      curl, CURLOPT_HEADERFUNCTION, +[](char *p, size_t s, size_t n, void *u) -> size_t {
        std::string line(p, s * n);
        auto colon = line.find(':');
        if (colon != std::string::npos) {
          std::string name = line.substr(0, colon);
          for (auto &c : name)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          std::string value = line.substr(colon + 1);
          while (!value.empty() && (value.front() == ' '))
            value.erase(0, 1);
          while (!value.empty() && (value.back() == '\r' || value.back() == '\n'))
            value.pop_back();
          (*static_cast<std::map<std::string, std::string> *>(u))[name] = value;
        }
        return s * n;
      });
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result.headers);
  const CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK)
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  else
    result.body = std::string("curl: ") + curl_easy_strerror(rc);
  curl_mime_free(mime);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

inline std::string bearer(const std::string &token) {
  return "Authorization: Bearer " + token;
}

// A gateway configuration for alice and bob, as a file in `dir`; `extra` is merged into it.
inline fs::path write_config(const fs::path &dir, const json &extra = json::object()) {
  json config = {
      {"version", 1},
      {"listen", {{"address", "127.0.0.1"}, {"port", 0}}},
      {"auth",
       {{"tokens", json::array({{{"user", "alice"}, {"token", kAliceToken}},
                                {{"user", "bob"},
                                 {"token_sha256", gateway::token_sha256_hex(kBobToken)}}})}}},
      {"media", {{"dir", "media"}, {"max_upload_bytes", 4000000}}},
      {"database", "jobs.sqlite"},
      {"ledger", "ledger.sqlite"},
      {"queue", {{"poll_interval_seconds", 0.05}, {"lease_seconds", 2}}},
      {"loop", {{"enabled", false}}}};
  if (extra.is_object())
    config.merge_patch(extra);
  const fs::path file = dir / "gateway.json";
  write_file(file, config.dump(2));
  return file;
}

// The local backend plus a gateway pointed at it, in-process.
class GatewayHarness {
public:
  explicit GatewayHarness(const fs::path &dir, const json &extra = json::object(),
                          int polls_until_done = 2)
      : dir_(dir), backend_([&] {
          LocalBackendOptions o;
          o.polls_until_done = polls_until_done;
          return o;
        }()) {
    backend_.start();
    config_file_ = write_config(dir, extra);
  }
  ~GatewayHarness() { stop(); }

  gateway::Gateway &start(gateway::PostProcessor post = {}) {
    gateway::GatewayOptions options;
    Endpoint ep;
    ep.base_url = backend_.base_url();
    options.endpoint = ep;
    options.claim_interval = std::chrono::milliseconds(50);
    options.post_process = std::move(post);
    options.access_log = true; // into log(), so tests can check what is logged
    options.log = [this](const std::string &line) {
      std::lock_guard lock(log_mutex_);
      log_.push_back(line);
    };
    gateway_ = std::make_unique<gateway::Gateway>(gateway::GatewayConfig::load(config_file_),
                                                  std::move(options));
    gateway_->start();
    return *gateway_;
  }
  void stop() {
    if (gateway_) {
      gateway_->stop();
      gateway_.reset();
    }
  }

  gateway::Gateway &gw() { return *gateway_; }
  LocalBackend &backend() { return backend_; }
  std::string url(const std::string &path) const { return gateway_->base_url() + path; }
  std::uint16_t port() const { return gateway_->port(); }
  fs::path media() const { return dir_ / "media"; }
  fs::path ledger_path() const { return dir_ / "ledger.sqlite"; }
  std::vector<std::string> log() const {
    std::lock_guard lock(log_mutex_);
    return log_;
  }

  HttpResult get(const std::string &path, const std::string &token = kAliceToken) {
    HttpCall c;
    c.url = url(path);
    if (!token.empty())
      c.headers.push_back(bearer(token));
    return http(c);
  }
  HttpResult post_json(const std::string &path, const std::string &body,
                       const std::string &token = kAliceToken) {
    HttpCall c;
    c.method = "POST";
    c.url = url(path);
    c.body = body;
    c.headers = {"Content-Type: application/json"};
    if (!token.empty())
      c.headers.push_back(bearer(token));
    return http(c);
  }

  // Polls GET /api/v1/media/jobs/ID until the job is finished; the last answer.
  json wait_job(const std::string &id, std::chrono::seconds timeout = std::chrono::seconds(60),
                const std::string &token = kAliceToken) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = get("/api/v1/media/jobs/" + id, token).json_body();
      if (last.value("state", "") == "succeeded" || last.value("state", "") == "failed")
        return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return last;
  }

  // Requests the backend received whose path contains `part`.
  int count_requests(const std::string &part) const {
    int n = 0;
    for (const auto &r : backend_.requests())
      if (r.path.find(part) != std::string::npos)
        ++n;
    return n;
  }

private:
  fs::path dir_;
  LocalBackend backend_;
  fs::path config_file_;
  std::unique_ptr<gateway::Gateway> gateway_;
  mutable std::mutex log_mutex_;
  std::vector<std::string> log_;
};

} // namespace gemstream::testing
