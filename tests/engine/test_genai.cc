// GenAiClient and resolve_endpoint end to end against the in-process local backend.
#include "gemstream/genai.h"
#include "gemstream/local_backend.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <regex>
#include <thread>

#include <unistd.h>

namespace gemstream {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char *kKey = "test-key-123";
constexpr const char *kNanoBanana = "gemini-2.5-flash-image";
constexpr const char *kImagen = "imagen-4.0-generate-001";
constexpr const char *kVeo = "veo-3.0-fast-generate-001";
// The backend renders real MP4s (seconds of CPU) and caches them by prompt and format: every test
// that needs a finished video uses this prompt and 16:9 720p 8 s, so only the first one renders.
constexpr const char *kVideoPrompt = "slow waves under a calm moon";

std::uint32_t be32(const std::string &s, std::size_t at) {
  return (std::uint32_t(std::uint8_t(s.at(at))) << 24) |
         (std::uint32_t(std::uint8_t(s.at(at + 1))) << 16) |
         (std::uint32_t(std::uint8_t(s.at(at + 2))) << 8) |
         std::uint32_t(std::uint8_t(s.at(at + 3)));
}

// PNG signature, then IHDR as the first chunk: returns {width, height}.
std::pair<std::uint32_t, std::uint32_t> png_size(const std::string &png) {
  EXPECT_GE(png.size(), 24u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  if (png.size() < 24) {
    return {0, 0};
  }
  return {be32(png, 16), be32(png, 20)};
}

std::string read_file(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::optional<std::string> header(const RecordedRequest &r, const std::string &name) {
  for (const auto &[k, v] : r.headers) {
    if (k == name) {
      return v;
    }
  }
  return std::nullopt;
}

template <class Fn> Error expect_error(ErrorKind kind, Fn &&fn) {
  try {
    fn();
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), kind) << to_string(e.kind()) << ": " << e.what();
    return e;
  }
  ADD_FAILURE() << "expected Error(" << to_string(kind) << "), nothing thrown";
  return Error(kind, "not thrown");
}

ClientOptions fast_options(int attempts = 4) {
  ClientOptions o;
  o.retry.max_attempts = attempts;
  o.retry.initial_backoff = 10ms;
  o.retry.max_backoff = 40ms;
  o.request_timeout = 20s;
  return o;
}

class GenAiTest : public ::testing::Test {
protected:
  void SetUp() override {
    backend_.start();
    dir_ = fs::temp_directory_path() /
           ("gemstream-genai-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Endpoint endpoint() const {
    Endpoint ep;
    ep.base_url = backend_.base_url();
    ep.api_key = kKey;
    return ep;
  }

  std::vector<RecordedRequest> requests_to(const std::string &path_suffix) const {
    std::vector<RecordedRequest> out;
    for (auto &r : backend_.requests()) {
      if (r.path.size() >= path_suffix.size() &&
          r.path.compare(r.path.size() - path_suffix.size(), path_suffix.size(), path_suffix) ==
              0) {
        out.push_back(r);
      }
    }
    return out;
  }

  // A finished operation's first video uri.
  std::string finished_video(GenAiClient &client) {
    VideoRequest req;
    req.model_id = kVeo;
    req.prompt = kVideoPrompt;
    req.aspect_ratio = "16:9";
    req.resolution = "720p";
    Operation op = client.start_video(req, cancel_);
    Operation done = client.wait_operation(op.name, 20ms, 20s, cancel_);
    EXPECT_EQ(done.video_uris.size(), 1u);
    return done.video_uris.empty() ? std::string() : done.video_uris[0];
  }

  LocalBackend backend_;
  CancelToken cancel_;
  fs::path dir_;
};

TEST_F(GenAiTest, UrlForJoinsBaseVersionAndPath) {
  Endpoint ep = endpoint();
  ep.base_url += "/";
  GenAiClient client(ep);
  EXPECT_EQ(client.url_for("models/x:predict"), backend_.base_url() + "/v1beta/models/x:predict");
  EXPECT_EQ(client.url_for("/files/a"), backend_.base_url() + "/v1beta/files/a");
}

TEST_F(GenAiTest, NanoBananaReturnsAPngOfTheRequestedAspectRatio) {
  GenAiClient client(endpoint(), fast_options());
  ImageRequest req;
  req.model_id = kNanoBanana;
  req.prompt = "a minimal fern, teal and sand";
  req.aspect_ratio = "16:9";
  ImageResult img = client.generate_image(req, cancel_);

  EXPECT_EQ(img.mime_type, "image/png");
  auto [w, h] = png_size(img.bytes);
  EXPECT_EQ(w, 1344u);
  EXPECT_EQ(h, 768u);

  auto recorded = requests_to("/v1beta/models/gemini-2.5-flash-image:generateContent");
  ASSERT_EQ(recorded.size(), 1u);
  const RecordedRequest &r = recorded[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"contents":[{"role":"user","parts":[
      {"text":"a minimal fern, teal and sand"}]}],
      "generationConfig":{"responseModalities":["IMAGE"],"imageConfig":{"aspectRatio":"16:9"}}})"));
  EXPECT_EQ(header(r, "x-goog-api-key"), kKey);
  EXPECT_EQ(header(r, "content-type"), "application/json");
  EXPECT_EQ(r.path.find(kKey), std::string::npos);
  EXPECT_EQ(r.query.find(kKey), std::string::npos);
  EXPECT_EQ(r.query.find("key="), std::string::npos);
}

TEST_F(GenAiTest, ImagenPredictReturnsAPng) {
  GenAiClient client(endpoint(), fast_options());
  ImageRequest req;
  req.model_id = std::string("models/") + kImagen;
  req.api = ImageApi::Predict;
  req.prompt = "abstract cosmic swirl";
  req.aspect_ratio = "16:9";
  ImageResult img = client.generate_image(req, cancel_);

  EXPECT_EQ(img.mime_type, "image/png");
  auto [w, h] = png_size(img.bytes);
  EXPECT_EQ(w, 1408u);
  EXPECT_EQ(h, 768u);

  auto recorded = requests_to("/v1beta/models/imagen-4.0-generate-001:predict");
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_EQ(json::parse(recorded[0].body),
            json::parse(R"({"instances":[{"prompt":"abstract cosmic swirl"}],
      "parameters":{"sampleCount":1,"aspectRatio":"16:9","outputOptions":{"mimeType":"image/png"},
                    "includeRaiReason":true}})"));
  EXPECT_EQ(header(recorded[0], "x-goog-api-key"), kKey);
}

TEST_F(GenAiTest, SafetyFilteredImagesAreReported) {
  GenAiClient client(endpoint(), fast_options());
  ImageRequest req;
  req.model_id = kNanoBanana;
  req.prompt = "forbidden-content please";
  Error e = expect_error(ErrorKind::SafetyFiltered, [&] { client.generate_image(req, cancel_); });
  EXPECT_NE(e.message().find("IMAGE_SAFETY"), std::string::npos) << e.message();

  req.model_id = kImagen;
  req.api = ImageApi::Predict;
  Error imagen =
      expect_error(ErrorKind::SafetyFiltered, [&] { client.generate_image(req, cancel_); });
  EXPECT_NE(imagen.message().find("no image: "), std::string::npos) << imagen.message();
}

TEST_F(GenAiTest, VideoStartWaitAndDownload) {
  backend_.set_polls_until_done(3);
  GenAiClient client(endpoint(), fast_options());
  VideoRequest req;
  req.model_id = kVeo;
  req.prompt = kVideoPrompt;
  req.aspect_ratio = "16:9";
  req.resolution = "720p";
  req.negative_prompt = "text";
  Operation op = client.start_video(req, cancel_);
  EXPECT_EQ(op.name.rfind("models/veo-3.0-fast-generate-001/operations/", 0), 0u) << op.name;
  EXPECT_FALSE(op.done);

  auto started = requests_to("/v1beta/models/veo-3.0-fast-generate-001:predictLongRunning");
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(json::parse(started[0].body),
            json::parse(R"({"instances":[{"prompt":"slow waves under a calm moon"}],
      "parameters":{"aspectRatio":"16:9","resolution":"720p","negativePrompt":"text",
                    "durationSeconds":8,"sampleCount":1}})"));

  std::vector<int> polls;
  const auto t0 = std::chrono::steady_clock::now();
  Operation done = client.wait_operation(
      op.name, 50ms, 20s, cancel_, [&](int n, std::chrono::milliseconds) { polls.push_back(n); });
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(done.done);
  // Done on the third poll at the earliest (later while the backend is still rendering); every
  // poll that was not done is reported, numbered from 1.
  ASSERT_GE(polls.size(), 2u);
  for (std::size_t i = 0; i < polls.size(); ++i) {
    EXPECT_EQ(polls[i], static_cast<int>(i) + 1);
  }
  EXPECT_GE(waited, 100ms);
  ASSERT_EQ(done.video_uris.size(), 1u);
  EXPECT_EQ(requests_to(op.name).size(), polls.size() + 1);

  const fs::path out = dir_ / "video.mp4";
  std::uint64_t last_total = 0;
  std::uint64_t last_now = 0;
  std::uint64_t written = client.download_video(done.video_uris[0], out.string(), cancel_,
                                                [&](std::uint64_t now, std::uint64_t total) {
                                                  last_now = now;
                                                  last_total = total;
                                                });
  ASSERT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".part"));
  EXPECT_EQ(fs::file_size(out), written);
  EXPECT_EQ(last_total, written); // the Content-Length announced by the server
  EXPECT_EQ(last_now, written);
  const std::string mp4 = read_file(out);
  ASSERT_GT(mp4.size(), 1000u);
  EXPECT_EQ(mp4.substr(4, 4), "ftyp");

  auto downloads = requests_to(":download");
  ASSERT_FALSE(downloads.empty());
  EXPECT_EQ(downloads[0].path.rfind("/v1beta/files/", 0), 0u) << downloads[0].path;
  EXPECT_EQ(downloads[0].query, "alt=media");
  EXPECT_EQ(header(downloads[0], "x-goog-api-key"), kKey);
}

TEST_F(GenAiTest, SafetyFilteredVideoIsReported) {
  backend_.set_polls_until_done(1);
  GenAiClient client(endpoint(), fast_options());
  VideoRequest req;
  req.model_id = kVeo;
  req.prompt = "forbidden-content at dawn";
  Operation op = client.start_video(req, cancel_);
  Error e = expect_error(ErrorKind::SafetyFiltered,
                         [&] { client.wait_operation(op.name, 20ms, 10s, cancel_); });
  EXPECT_NE(e.message().find("the model returned no video: "), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("usage guidelines"), std::string::npos) << e.message();
}

TEST_F(GenAiTest, TransientFailuresAreRetried) {
  GenAiClient client(endpoint(), fast_options());
  backend_.fail_next(2, 503);
  std::vector<int> attempts;
  ImageRequest req;
  req.model_id = kNanoBanana;
  req.prompt = "retry me";
  ImageResult img = client.generate_image(
      req, cancel_, [&](int attempt, const Error &e, std::chrono::milliseconds) {
        attempts.push_back(attempt);
        EXPECT_EQ(e.kind(), ErrorKind::Unavailable);
      });
  EXPECT_EQ(png_size(img.bytes).first, 1024u);
  EXPECT_EQ(attempts, (std::vector<int>{2, 3}));
  EXPECT_EQ(requests_to(":generateContent").size(), 3u);
}

TEST_F(GenAiTest, ClientErrorsSurfaceWithoutRetry) {
  GenAiClient client(endpoint(), fast_options());
  backend_.fail_next(1, 400);
  int retries = 0;
  ImageRequest req;
  req.model_id = kNanoBanana;
  req.prompt = "p";
  Error e = expect_error(ErrorKind::InvalidArgument, [&] {
    client.generate_image(req, cancel_,
                          [&](int, const Error &, std::chrono::milliseconds) { ++retries; });
  });
  EXPECT_EQ(e.http_status(), 400);
  EXPECT_EQ(e.status(), "INVALID_ARGUMENT");
  EXPECT_FALSE(e.message().empty());
  EXPECT_EQ(e.path(), "/v1beta/models/gemini-2.5-flash-image:generateContent");
  EXPECT_EQ(retries, 0);
  EXPECT_EQ(requests_to(":generateContent").size(), 1u);
}

TEST_F(GenAiTest, UnsupportedAspectRatioIsInvalidArgument) {
  GenAiClient client(endpoint(), fast_options());
  ImageRequest req;
  req.model_id = kNanoBanana;
  req.prompt = "p";
  req.aspect_ratio = "7:3";
  Error e = expect_error(ErrorKind::InvalidArgument, [&] { client.generate_image(req, cancel_); });
  EXPECT_NE(e.message().find("7:3"), std::string::npos) << e.message();
}

TEST_F(GenAiTest, UnknownModelIsNotFound) {
  GenAiClient client(endpoint(), fast_options());
  ImageRequest req;
  req.model_id = "no-such-model-001";
  req.prompt = "p";
  Error e = expect_error(ErrorKind::NotFound, [&] { client.generate_image(req, cancel_); });
  EXPECT_EQ(e.http_status(), 404);
  EXPECT_EQ(requests_to(":generateContent").size(), 1u);
}

TEST_F(GenAiTest, WrongKeyIsUnauthenticated) {
  LocalBackendOptions opts;
  opts.required_api_key = kKey;
  LocalBackend strict(opts);
  strict.start();
  GenAiClient client({strict.base_url(), "wrong-key"}, fast_options());
  ImageRequest req;
  req.model_id = kNanoBanana;
  req.prompt = "p";
  Error e = expect_error(ErrorKind::Unauthenticated, [&] { client.generate_image(req, cancel_); });
  EXPECT_EQ(std::string(e.what()).find("wrong-key"), std::string::npos);

  GenAiClient good({strict.base_url(), kKey}, fast_options());
  EXPECT_FALSE(good.generate_image(req, cancel_).bytes.empty());
}

TEST_F(GenAiTest, WaitTimeoutNamesTheOperation) {
  backend_.set_polls_until_done(100000);
  GenAiClient client(endpoint(), fast_options());
  VideoRequest req;
  req.model_id = kVeo;
  req.prompt = "p";
  Operation op = client.start_video(req, cancel_);
  const auto t0 = std::chrono::steady_clock::now();
  Error e = expect_error(ErrorKind::Timeout,
                         [&] { client.wait_operation(op.name, 50ms, 300ms, cancel_); });
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  EXPECT_NE(e.message().find("operation " + op.name + " did not finish within 0.3 s"),
            std::string::npos)
      << e.message();
  EXPECT_NE(e.message().find("resume it with operation=" + op.name), std::string::npos);
}

TEST_F(GenAiTest, CancelDuringWaitReturnsPromptly) {
  backend_.set_polls_until_done(100000);
  GenAiClient client(endpoint(), fast_options());
  VideoRequest req;
  req.model_id = kVeo;
  req.prompt = "p";
  Operation op = client.start_video(req, cancel_);
  std::atomic<int> polls{0};
  std::thread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel_.cancel();
  });
  const auto t0 = std::chrono::steady_clock::now();
  expect_error(ErrorKind::Cancelled, [&] {
    client.wait_operation(op.name, 5s, 60s, cancel_,
                          [&](int, std::chrono::milliseconds) { ++polls; });
  });
  const auto took = std::chrono::steady_clock::now() - t0;
  canceller.join();
  EXPECT_LT(took, 1s);
  EXPECT_EQ(polls.load(), 1);
}

TEST_F(GenAiTest, FailedOperationsAndBadNames) {
  GenAiClient client(endpoint(), fast_options(1));
  expect_error(ErrorKind::InvalidArgument,
               [&] { client.get_operation("../../_backend/faults", cancel_); });
  expect_error(ErrorKind::InvalidArgument,
               [&] { client.get_operation("models/x/operations/a?key=1", cancel_); });
  EXPECT_TRUE(backend_.requests().empty());
  expect_error(ErrorKind::NotFound, [&] {
    client.get_operation("models/veo-3.0-fast-generate-001/operations/nope", cancel_);
  });
}

TEST_F(GenAiTest, DroppedDownloadIsANetworkErrorAndLeavesNoFile) {
  GenAiClient client(endpoint(), fast_options(1));
  const std::string uri = finished_video(client);
  backend_.drop_next_download_after(1000);
  const fs::path out = dir_ / "dropped.mp4";
  expect_error(ErrorKind::Network, [&] { client.download_video(uri, out.string(), cancel_); });
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".part"));
}

TEST_F(GenAiTest, DroppedDownloadIsRetried) {
  GenAiClient client(endpoint(), fast_options(3));
  const std::string uri = finished_video(client);
  backend_.drop_next_download_after(1000);
  const fs::path out = dir_ / "retried.mp4";
  int retries = 0;
  std::uint64_t n = client.download_video(uri, out.string(), cancel_, {},
                                          [&](int, const Error &e, std::chrono::milliseconds) {
                                            ++retries;
                                            EXPECT_EQ(e.kind(), ErrorKind::Network);
                                          });
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(fs::file_size(out), n);
  EXPECT_EQ(read_file(out).substr(4, 4), "ftyp");
}

TEST_F(GenAiTest, DownloadUsesTheClientBaseUrlNotTheUriHost) {
  GenAiClient client(endpoint(), fast_options());
  const std::string uri = finished_video(client);
  const std::string id = uri.substr(uri.rfind("/files/") + 7,
                                    uri.find(':', uri.rfind("/files/")) - uri.rfind("/files/") - 7);
  const fs::path out = dir_ / "google.mp4";
  std::uint64_t n = client.download_video(
      "https://generativelanguage.googleapis.com/v1beta/files/" + id + ":download?alt=media",
      out.string(), cancel_);
  EXPECT_GT(n, 0u);
  EXPECT_EQ(read_file(out).substr(4, 4), "ftyp");
}

// ---- resolve_endpoint ---------------------------------------------------------------------------

// Sets (or, with nullopt, unsets) environment variables for one scope.
class ScopedEnv {
public:
  explicit ScopedEnv(std::map<std::string, std::optional<std::string>> vars) {
    for (auto &[name, value] : vars) {
      const char *old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      apply(name, value);
    }
  }
  ~ScopedEnv() {
    for (auto &[name, value] : saved_) {
      apply(name, value);
    }
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  static void apply(const std::string &name, const std::optional<std::string> &value) {
    if (value) {
      ::setenv(name.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

const std::map<std::string, std::optional<std::string>> kNoEnv = {
    {"GOOGLE_API_KEY", std::nullopt},
    {"GEMINI_API_KEY", std::nullopt},
    {"GEMSTREAM_BASE_URL", std::nullopt}};

TEST(ResolveEndpoint, ExplicitArgumentsWin) {
  ScopedEnv env({{"GOOGLE_API_KEY", "env-key"}, {"GEMSTREAM_BASE_URL", "http://127.0.0.2:1"}});
  Endpoint ep = resolve_endpoint("arg-key", "http://127.0.0.1:9//");
  EXPECT_EQ(ep.api_key, "arg-key");
  EXPECT_EQ(ep.base_url, "http://127.0.0.1:9");
  EXPECT_EQ(ep.api_version, "v1beta");
  EXPECT_FALSE(ep.local_backend);
}

TEST(ResolveEndpoint, EnvironmentFillsTheGaps) {
  {
    ScopedEnv env({{"GOOGLE_API_KEY", "google-key\n"},
                   {"GEMINI_API_KEY", "gemini-key"},
                   {"GEMSTREAM_BASE_URL", std::nullopt}});
    Endpoint ep = resolve_endpoint();
    EXPECT_EQ(ep.api_key, "google-key");
    EXPECT_EQ(ep.base_url, "https://generativelanguage.googleapis.com");
    EXPECT_FALSE(ep.local_backend);
  }
  {
    ScopedEnv env({{"GOOGLE_API_KEY", std::nullopt},
                   {"GEMINI_API_KEY", "gemini-key"},
                   {"GEMSTREAM_BASE_URL", "https://proxy.example/"}});
    Endpoint ep = resolve_endpoint();
    EXPECT_EQ(ep.api_key, "gemini-key");
    EXPECT_EQ(ep.base_url, "https://proxy.example");
    Endpoint with_arg = resolve_endpoint("arg-key");
    EXPECT_EQ(with_arg.api_key, "arg-key");
    EXPECT_EQ(with_arg.base_url, "https://proxy.example");
  }
  {
    ScopedEnv env(kNoEnv);
    Endpoint ep = resolve_endpoint("arg-key");
    EXPECT_EQ(ep.base_url, "https://generativelanguage.googleapis.com");
    EXPECT_FALSE(ep.local_backend);
  }
}

TEST(ResolveEndpoint, RejectsBadBaseUrlsAndKeys) {
  ScopedEnv env(kNoEnv);
  expect_error(ErrorKind::Config, [] { resolve_endpoint("k", "ftp://host"); });
  expect_error(ErrorKind::Config, [] { resolve_endpoint("k", "127.0.0.1:8080"); });
  expect_error(ErrorKind::Config, [] { resolve_endpoint("k", "http://"); });
  expect_error(ErrorKind::Config, [] { resolve_endpoint("k", "http://host/?key=x"); });
  Error e = expect_error(ErrorKind::Config, [] { resolve_endpoint("sec ret", "http://h"); });
  EXPECT_EQ(std::string(e.what()).find("sec ret"), std::string::npos);
  {
    ScopedEnv bad({{"GEMSTREAM_BASE_URL", std::string("localhost:1")}});
    Error from_env = expect_error(ErrorKind::Config, [] { resolve_endpoint("k"); });
    EXPECT_NE(from_env.message().find("GEMSTREAM_BASE_URL"), std::string::npos);
  }
  EXPECT_EQ(resolve_endpoint("k", "HTTPS://Host:443/").base_url, "HTTPS://Host:443");
}

TEST(ResolveEndpoint, StartsALocalBackendWithoutKeyOrUrl) {
  ScopedEnv env(kNoEnv);
  Endpoint ep = resolve_endpoint();
  EXPECT_TRUE(ep.local_backend);
  EXPECT_TRUE(ep.api_key.empty());
  EXPECT_TRUE(std::regex_match(ep.base_url, std::regex(R"(http://127\.0\.0\.1:[1-9][0-9]*)")))
      << ep.base_url;
  EXPECT_EQ(resolve_endpoint().base_url, ep.base_url);

  GenAiClient client(ep, fast_options());
  ImageRequest req;
  req.model_id = kNanoBanana;
  req.prompt = "reachable";
  EXPECT_EQ(png_size(client.generate_image(req, CancelToken()).bytes).first, 1024u);
}

} // namespace
} // namespace gemstream
