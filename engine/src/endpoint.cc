#include "gemstream/genai.h"
#include "gemstream/local_backend.h"

#include <cstdlib>
#include <exception>
#include <mutex>

namespace gemstream {
namespace {

constexpr const char *kGoogleBaseUrl = "https://generativelanguage.googleapis.com";

std::mutex g_backend_mutex;
LocalBackend *g_backend = nullptr; // guarded by g_backend_mutex

// Runs at exit(). Registered after the backend started, so it runs before the destructors of
// everything the backend's thread may still touch (those were constructed earlier), and the
// service thread is joined rather than left running into static destruction.
void stop_process_backend() {
  std::lock_guard lock(g_backend_mutex);
  delete g_backend;
  g_backend = nullptr;
}

// The process-wide local backend: started on first use, kept until exit.
std::string process_backend_url() {
  std::lock_guard lock(g_backend_mutex);
  if (g_backend == nullptr) {
    auto backend = std::make_unique<LocalBackend>();
    try {
      backend->start();
    } catch (const std::exception &e) {
      throw Error(ErrorKind::Network,
                  std::string("no API key is set and the local backend could not start: ") +
                      e.what());
    }
    g_backend = backend.release();
    static const bool registered = std::atexit(stop_process_backend) == 0;
    (void)registered;
  }
  return g_backend->base_url();
}

std::string trim(std::string s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && blank(s.back())) {
    s.pop_back();
  }
  std::size_t first = 0;
  while (first < s.size() && blank(s[first])) {
    ++first;
  }
  return s.substr(first);
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (c != prefix[i]) {
      return false;
    }
  }
  return true;
}

std::string normalise_base_url(std::string url) {
  while (!url.empty() && url.back() == '/') {
    url.pop_back();
  }
  std::string_view rest;
  if (starts_with_ci(url, "https://")) {
    rest = std::string_view(url).substr(8);
  } else if (starts_with_ci(url, "http://")) {
    rest = std::string_view(url).substr(7);
  } else {
    throw Error(ErrorKind::Config, "base URL \"" + url +
                                       "\" must start with http:// or https:// (check "
                                       "GEMSTREAM_BASE_URL)");
  }
  if (rest.empty() || rest.front() == '/' || rest.find_first_of("?#") != std::string_view::npos) {
    throw Error(ErrorKind::Config,
                "base URL \"" + url + "\" needs a host and no query, e.g. http://127.0.0.1:8080");
  }
  return url;
}

} // namespace

Endpoint resolve_endpoint(const std::string &api_key, const std::string &base_url) {
  // Keys and URLs pasted from files often carry a trailing newline.
  Endpoint ep;
  ep.api_key = trim(api_key);
  ep.base_url = trim(base_url);
  if (ep.api_key.empty() || ep.base_url.empty()) {
    EnvSettings env = EnvSettings::from_environment();
    if (ep.api_key.empty()) {
      ep.api_key = trim(std::move(env.api_key));
    }
    if (ep.base_url.empty()) {
      ep.base_url = trim(std::move(env.base_url));
    }
  }
  for (char c : ep.api_key) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      // Never echo the key: it would end up in logs.
      throw Error(ErrorKind::Config, "the API key contains whitespace or control characters");
    }
  }
  if (ep.base_url.empty()) {
    if (!ep.api_key.empty()) {
      ep.base_url = kGoogleBaseUrl;
    } else {
      ep.base_url = process_backend_url();
      ep.local_backend = true;
    }
  }
  ep.base_url = normalise_base_url(std::move(ep.base_url));
  return ep;
}

} // namespace gemstream
