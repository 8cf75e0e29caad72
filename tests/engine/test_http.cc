#include "gemstream/cancel.h"
#include "gemstream/error.h"
#include "gemstream/http.h"

#include "common/scripted_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

namespace gemstream {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using testing::ScriptedResponse;
using testing::ScriptedServer;
namespace fs = std::filesystem;

constexpr const char *kKey = "AIzaTestKey-0123456789";
constexpr const char *kPredictPath = "/v1beta/models/imagen-4.0-generate-001:predict";

RetryPolicy fast_policy(int max_attempts = 5) {
  RetryPolicy policy;
  policy.max_attempts = max_attempts;
  policy.initial_backoff = 50ms;
  policy.max_backoff = 400ms;
  policy.multiplier = 2.0;
  policy.jitter = 0.2;
  return policy;
}

std::string rpc_error(int code, const std::string &status, const std::string &message,
                      const std::string &details = "[]") {
  return R"({"error":{"code":)" + std::to_string(code) + R"(,"message":")" + message +
         R"(","status":")" + status + R"(","details":)" + details + "}}";
}

std::string patterned_bytes(std::size_t n) {
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return out;
}

std::string read_file(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

long elapsed_ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return static_cast<long>(std::chrono::duration_cast<milliseconds>(b - a).count());
}

template <typename Fn> Error expect_error(Fn &&fn) {
  try {
    fn();
  } catch (const Error &err) {
    return err;
  }
  ADD_FAILURE() << "expected a gemstream::Error";
  return Error(ErrorKind::Internal, "no error thrown");
}

class HttpTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gemstream-test-http-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  HttpRequest get(const std::string &path) const {
    HttpRequest req;
    req.url = server_.url(path);
    req.timeout = 10s;
    return req;
  }

  ScriptedServer server_;
  HttpClient client_{kKey};
  CancelToken cancel_;
  fs::path dir_;
};

// --- wire format -----------------------------------------------------------------------------

TEST_F(HttpTest, KeyTravelsOnlyInTheHeader) {
  server_.push(ScriptedResponse::json(200, R"({"predictions":[]})"));
  HttpRequest req = get(kPredictPath);
  req.method = "POST";
  req.headers = {{"Content-Type", "application/json"}};
  req.body = R"({"instances":[{"prompt":"a cat"}]})";

  const HttpResponse resp = client_.request(req, fast_policy(), cancel_);

  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, R"({"predictions":[]})");
  EXPECT_EQ(resp.body_bytes, resp.body.size());
  EXPECT_EQ(resp.headers.at("content-type"), "application/json; charset=UTF-8");
  EXPECT_EQ(resp.effective_url, req.url);

  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto &r = requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, kPredictPath);
  EXPECT_EQ(r.header("x-goog-api-key"), kKey);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, req.body);
  EXPECT_TRUE(r.has_header("accept-encoding"));
  EXPECT_FALSE(r.has_header("expect"));
  const std::string request_line = r.raw_headers.substr(0, r.raw_headers.find("\r\n"));
  EXPECT_EQ(request_line.find(kKey), std::string::npos) << request_line;
  // The key appears exactly once in everything sent: the header.
  const std::string wire = r.raw_headers + r.body;
  EXPECT_EQ(wire.find(kKey), wire.rfind(kKey));
}

TEST_F(HttpTest, NoKeyHeaderWithoutKey) {
  server_.push(ScriptedResponse::json(200, "{}"));
  HttpClient anonymous;
  anonymous.request(get("/v1beta/models"), fast_policy(), cancel_);
  ASSERT_EQ(server_.request_count(), 1u);
  EXPECT_FALSE(server_.requests()[0].has_header("x-goog-api-key"));
}

TEST_F(HttpTest, OtherMethodsAndLargeBodies) {
  server_.push(ScriptedResponse::json(200, "{}"));
  server_.push(ScriptedResponse::json(200, "{}"));
  HttpRequest del = get("/v1beta/files/abc");
  del.method = "DELETE";
  client_.request(del, fast_policy(), cancel_);

  HttpRequest post = get("/upload/v1beta/files");
  post.method = "POST";
  post.body = patterned_bytes(3 << 20);
  const auto start = std::chrono::steady_clock::now();
  client_.request(post, fast_policy(), cancel_);
  // No "Expect: 100-continue" stall on servers that never send 100.
  EXPECT_LT(elapsed_ms(start, std::chrono::steady_clock::now()), 900);

  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "DELETE");
  EXPECT_TRUE(requests[0].body.empty());
  EXPECT_EQ(requests[1].method, "POST");
  EXPECT_EQ(requests[1].body, post.body);
}

TEST_F(HttpTest, SlowAnswerWithinTimeoutSucceeds) {
  auto slow = ScriptedResponse::json(200, "{}");
  slow.delay = 150ms;
  server_.push(slow);
  HttpRequest req = get("/v1beta/models");
  req.timeout = 3s;
  EXPECT_EQ(client_.request(req, fast_policy(1), cancel_).status, 200);
}

// --- retries ---------------------------------------------------------------------------------

TEST_F(HttpTest, RetriesUnavailableWithExponentialBackoff) {
  server_.push(ScriptedResponse::json(503, rpc_error(503, "UNAVAILABLE", "overloaded")));
  server_.push(ScriptedResponse::json(503, rpc_error(503, "UNAVAILABLE", "overloaded")));
  server_.push(ScriptedResponse::json(200, R"({"ok":true})"));

  std::vector<std::tuple<int, ErrorKind, milliseconds>> retries;
  const HttpResponse resp = client_.request(get(kPredictPath), fast_policy(), cancel_,
                                            [&](int attempt, const Error &err, milliseconds delay) {
                                              retries.emplace_back(attempt, err.kind(), delay);
                                            });

  EXPECT_EQ(resp.body, R"({"ok":true})");
  ASSERT_EQ(retries.size(), 2u);
  EXPECT_EQ(std::get<0>(retries[0]), 2);
  EXPECT_EQ(std::get<0>(retries[1]), 3);
  EXPECT_EQ(std::get<1>(retries[0]), ErrorKind::Unavailable);
  // 50 ms then 100 ms, each +-20 %.
  EXPECT_GE(std::get<2>(retries[0]), 40ms);
  EXPECT_LE(std::get<2>(retries[0]), 60ms);
  EXPECT_GE(std::get<2>(retries[1]), 80ms);
  EXPECT_LE(std::get<2>(retries[1]), 120ms);

  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_GE(elapsed_ms(requests[0].received, requests[1].received),
            std::get<2>(retries[0]).count());
  EXPECT_GE(elapsed_ms(requests[1].received, requests[2].received),
            std::get<2>(retries[1]).count());
}

TEST_F(HttpTest, BackoffIsCappedAtMaxBackoff) {
  for (int i = 0; i < 3; ++i)
    server_.push(ScriptedResponse::json(500, rpc_error(500, "INTERNAL", "boom")));
  server_.push(ScriptedResponse::json(200, "{}"));
  RetryPolicy policy = fast_policy();
  policy.initial_backoff = 40ms;
  policy.max_backoff = 60ms;
  policy.multiplier = 10.0;
  policy.jitter = 0.0;
  std::vector<milliseconds> delays;
  client_.request(get(kPredictPath), policy, cancel_,
                  [&](int, const Error &, milliseconds delay) { delays.push_back(delay); });
  EXPECT_EQ(delays, (std::vector<milliseconds>{40ms, 60ms, 60ms}));
}

TEST_F(HttpTest, RetryAfterSecondsHonoured) {
  auto limited = ScriptedResponse::json(429, rpc_error(429, "RESOURCE_EXHAUSTED", "quota"));
  limited.headers.emplace_back("Retry-After", "1");
  server_.push(limited);
  server_.push(ScriptedResponse::json(200, "{}"));

  milliseconds chosen{0};
  client_.request(get(kPredictPath), fast_policy(), cancel_,
                  [&](int, const Error &err, milliseconds delay) {
                    EXPECT_EQ(err.kind(), ErrorKind::ResourceExhausted);
                    EXPECT_EQ(err.retry_after(), milliseconds(1000));
                    chosen = delay;
                  });
  EXPECT_EQ(chosen, 1000ms);
  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_GE(elapsed_ms(requests[0].received, requests[1].received), 990);
}

TEST_F(HttpTest, RetryInfoDelayHonoured) {
  server_.push(ScriptedResponse::json(
      503,
      rpc_error(503, "UNAVAILABLE", "try later",
                R"([{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2s"}])")));
  server_.push(ScriptedResponse::json(200, "{}"));

  milliseconds chosen{0};
  client_.request(get(kPredictPath), fast_policy(), cancel_,
                  [&](int, const Error &, milliseconds delay) { chosen = delay; });
  EXPECT_EQ(chosen, 2000ms);
  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_GE(elapsed_ms(requests[0].received, requests[1].received), 1990);
}

TEST_F(HttpTest, FinalFailureCarriesTheServerHint) {
  server_.push(ScriptedResponse::json(
      429,
      rpc_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded",
                R"([{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17.5s"}])")));
  const Error err =
      expect_error([&] { client_.request(get(kPredictPath), fast_policy(1), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::ResourceExhausted);
  EXPECT_EQ(err.retry_after(), milliseconds(17500));
  EXPECT_TRUE(err.retryable());
  EXPECT_STREQ(err.what(),
               "HTTP 429 RESOURCE_EXHAUSTED on /v1beta/models/imagen-4.0-generate-001:predict: "
               "Quota exceeded (retry after 17.5s)");
}

TEST_F(HttpTest, BadRequestIsNotRetried) {
  server_.push(ScriptedResponse::json(
      400, rpc_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")));
  server_.push(ScriptedResponse::json(200, "{}"));
  int retries = 0;
  const Error err = expect_error([&] {
    client_.request(get(kPredictPath), fast_policy(), cancel_,
                    [&](int, const Error &, milliseconds) { ++retries; });
  });
  EXPECT_EQ(server_.request_count(), 1u);
  EXPECT_EQ(retries, 0);
  EXPECT_EQ(err.kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(err.http_status(), 400);
  EXPECT_EQ(err.status(), "INVALID_ARGUMENT");
  EXPECT_EQ(err.message(), "Invalid JSON payload received.");
  EXPECT_EQ(err.path(), kPredictPath);
  EXPECT_FALSE(err.retry_after().has_value());
  EXPECT_STREQ(err.what(),
               "HTTP 400 INVALID_ARGUMENT on /v1beta/models/imagen-4.0-generate-001:predict: "
               "Invalid JSON payload received.");
}

TEST_F(HttpTest, UnauthorizedMapsToUnauthenticated) {
  server_.push(
      ScriptedResponse::json(401, rpc_error(401, "UNAUTHENTICATED", "Request is missing a key.")));
  const Error err =
      expect_error([&] { client_.request(get(kPredictPath), fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::Unauthenticated);
  EXPECT_EQ(server_.request_count(), 1u);
}

TEST_F(HttpTest, ApiKeyInvalidReasonIsUnauthenticatedAndEchoedKeyRedacted) {
  // Google answers a bad key with 400 + ErrorInfo; a proxy might even echo the key back.
  const std::string details =
      R"([{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID",)"
      R"("domain":"googleapis.com",)"
      R"("metadata":{"service":"generativelanguage.googleapis.com"}}])";
  server_.push(ScriptedResponse::json(
      400, rpc_error(400, "INVALID_ARGUMENT", std::string("API key not valid: ") + kKey, details)));
  const Error err =
      expect_error([&] { client_.request(get(kPredictPath), fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::Unauthenticated);
  EXPECT_EQ(err.reason(), "API_KEY_INVALID");
  EXPECT_EQ(err.status(), "INVALID_ARGUMENT");
  EXPECT_EQ(server_.request_count(), 1u);
  EXPECT_EQ(std::string(err.what()).find(kKey), std::string::npos) << err.what();
  EXPECT_EQ(err.message().find(kKey), std::string::npos);
  EXPECT_NE(err.message().find("API key not valid"), std::string::npos);
}

TEST_F(HttpTest, MaxAttemptsRespected) {
  for (int i = 0; i < 5; ++i)
    server_.push(ScriptedResponse::json(503, rpc_error(503, "UNAVAILABLE", "down")));
  std::vector<int> attempts;
  const Error err = expect_error([&] {
    client_.request(get(kPredictPath), fast_policy(3), cancel_,
                    [&](int attempt, const Error &, milliseconds) { attempts.push_back(attempt); });
  });
  EXPECT_EQ(err.kind(), ErrorKind::Unavailable);
  EXPECT_EQ(err.http_status(), 503);
  EXPECT_EQ(server_.request_count(), 3u);
  EXPECT_EQ(attempts, (std::vector<int>{2, 3}));
}

TEST_F(HttpTest, NonJsonErrorBodyIsSummarised) {
  ScriptedResponse page;
  page.status = 502;
  page.headers.emplace_back("Content-Type", "text/html");
  page.body = "<html>\n<head><title>502</title></head>\r\n<body>\tupstream\x01 failed " +
              std::string(400, 'x') + "</body></html>";
  server_.push(page);
  const Error err =
      expect_error([&] { client_.request(get(kPredictPath), fast_policy(1), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::Internal);
  EXPECT_EQ(err.http_status(), 502);
  EXPECT_TRUE(err.status().empty());
  EXPECT_EQ(
      err.message().rfind(
          "HTTP 502 Bad Gateway: <html> <head><title>502</title></head> <body> upstream failed xxx",
          0),
      0u)
      << err.message();
  EXPECT_LE(err.message().size(), std::string("HTTP 502 Bad Gateway: ").size() + 200 + 3);
  EXPECT_EQ(err.message().find('\n'), std::string::npos);
  EXPECT_EQ(err.message().substr(err.message().size() - 3), "...");
}

// --- cancellation and deadlines ---------------------------------------------------------------

TEST_F(HttpTest, CancelWhileServerNeverAnswers) {
  ScriptedResponse silent;
  silent.never_answer = true;
  server_.push(silent);

  std::atomic<std::int64_t> cancelled_at{0};
  std::thread canceller([&] {
    while (server_.request_count() == 0)
      std::this_thread::sleep_for(5ms);
    // Past curl's own early timers (happy eyeballs, 200 ms), into its long idle poll.
    std::this_thread::sleep_for(300ms);
    cancelled_at = std::chrono::steady_clock::now().time_since_epoch().count();
    cancel_.cancel();
  });
  const Error err =
      expect_error([&] { client_.request(get(kPredictPath), fast_policy(), cancel_); });
  const auto returned = std::chrono::steady_clock::now();
  canceller.join();
  EXPECT_EQ(err.kind(), ErrorKind::Cancelled);
  EXPECT_FALSE(err.retryable());
  const auto cancel_time = std::chrono::steady_clock::time_point(
      std::chrono::steady_clock::duration(cancelled_at.load()));
  EXPECT_LT(elapsed_ms(cancel_time, returned), 250);
  EXPECT_EQ(server_.request_count(), 1u);
}

TEST_F(HttpTest, CancelDuringBackoffWait) {
  auto limited = ScriptedResponse::json(503, rpc_error(503, "UNAVAILABLE", "later"));
  limited.headers.emplace_back("Retry-After", "30");
  server_.push(limited);

  std::thread canceller;
  const auto start = std::chrono::steady_clock::now();
  const Error err = expect_error([&] {
    client_.request(get(kPredictPath), fast_policy(), cancel_,
                    [&](int, const Error &, milliseconds delay) {
                      EXPECT_EQ(delay, 30000ms);
                      canceller = std::thread([&] {
                        std::this_thread::sleep_for(100ms);
                        cancel_.cancel();
                      });
                    });
  });
  canceller.join();
  EXPECT_EQ(err.kind(), ErrorKind::Cancelled);
  EXPECT_LT(elapsed_ms(start, std::chrono::steady_clock::now()), 1000);
  EXPECT_EQ(server_.request_count(), 1u);
}

TEST_F(HttpTest, AlreadyCancelledSendsNothing) {
  server_.push(ScriptedResponse::json(200, "{}"));
  cancel_.cancel();
  const Error err = expect_error([&] { client_.perform(get(kPredictPath), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::Cancelled);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(server_.request_count(), 0u);

  cancel_.reset();
  EXPECT_EQ(client_.perform(get(kPredictPath), cancel_).status, 200);
}

TEST_F(HttpTest, RequestTimeoutIsNotRetried) {
  ScriptedResponse silent;
  silent.never_answer = true;
  server_.push(silent);
  HttpRequest req = get(kPredictPath);
  req.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  const Error err = expect_error([&] { client_.request(req, fast_policy(3), cancel_); });
  const long took = elapsed_ms(start, std::chrono::steady_clock::now());
  EXPECT_EQ(err.kind(), ErrorKind::Timeout);
  EXPECT_GE(took, 290);
  EXPECT_LT(took, 1500);
  EXPECT_EQ(server_.request_count(), 1u);
  EXPECT_NE(std::string(err.what()).find(kPredictPath), std::string::npos) << err.what();
}

TEST_F(HttpTest, ConnectTimeoutIsNetworkNotTimeout) {
  // A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr *>(&addr), &len), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr);
    fillers.push_back(fd);
  }

  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1beta/models";
  req.connect_timeout = 200ms;
  req.timeout = 5s;
  int retries = 0;
  const Error err = expect_error([&] {
    client_.request(req, fast_policy(2), cancel_,
                    [&](int, const Error &, milliseconds) { ++retries; });
  });
  for (int fd : fillers)
    ::close(fd);
  ::close(listener);
  EXPECT_EQ(err.kind(), ErrorKind::Network) << err.what();
  EXPECT_EQ(retries, 1);
}

TEST_F(HttpTest, ConnectionRefusedIsNetworkAndRetried) {
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(ScriptedServer::closed_port()) +
            "/v1beta/models/veo:predictLongRunning?alt=json&token=abc";
  int retries = 0;
  const Error err = expect_error([&] {
    client_.request(req, fast_policy(3), cancel_, [&](int, const Error &err, milliseconds) {
      EXPECT_EQ(err.kind(), ErrorKind::Network);
      ++retries;
    });
  });
  EXPECT_EQ(err.kind(), ErrorKind::Network);
  EXPECT_EQ(retries, 2);
  EXPECT_EQ(err.path(), "/v1beta/models/veo:predictLongRunning");
  const std::string what = err.what();
  EXPECT_NE(what.find("/v1beta/models/veo:predictLongRunning"), std::string::npos) << what;
  EXPECT_EQ(what.find("token=abc"), std::string::npos) << what;
  EXPECT_EQ(what.find("alt=json"), std::string::npos) << what;
}

// --- bodies and downloads --------------------------------------------------------------------

TEST_F(HttpTest, DownloadStreamsToFile) {
  const std::string video = patterned_bytes(300 * 1024);
  ScriptedResponse file;
  file.headers.emplace_back("Content-Type", "video/mp4");
  file.body = video;
  server_.push(file);

  HttpRequest req = get("/v1beta/files/abc123:download?alt=media");
  req.download_path = (dir_ / "clip.mp4").string();
  std::uint64_t last_done = 0, last_total = 0;
  int calls = 0;
  req.on_progress = [&](std::uint64_t done, std::uint64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
    ++calls;
  };
  const HttpResponse resp = client_.request(req, fast_policy(), cancel_);

  EXPECT_EQ(resp.status, 200);
  EXPECT_TRUE(resp.body.empty());
  EXPECT_EQ(resp.body_bytes, video.size());
  EXPECT_EQ(read_file(req.download_path), video);
  EXPECT_FALSE(fs::exists(req.download_path + ".part"));
  EXPECT_GE(calls, 1);
  EXPECT_EQ(last_done, video.size());
  EXPECT_EQ(last_total, video.size());
  EXPECT_EQ(server_.requests()[0].target, "/v1beta/files/abc123:download?alt=media");
}

TEST_F(HttpTest, DownloadErrorKeepsBodyInMemoryAndWritesNoFile) {
  server_.push(ScriptedResponse::json(404, rpc_error(404, "NOT_FOUND", "File abc123 not found.")));
  HttpRequest req = get("/v1beta/files/abc123:download?alt=media");
  req.download_path = (dir_ / "clip.mp4").string();

  const HttpResponse resp = client_.perform(req, cancel_);
  EXPECT_EQ(resp.status, 404);
  EXPECT_NE(resp.body.find("File abc123 not found."), std::string::npos);
  EXPECT_FALSE(fs::exists(req.download_path));
  EXPECT_FALSE(fs::exists(req.download_path + ".part"));

  server_.push(ScriptedResponse::json(404, rpc_error(404, "NOT_FOUND", "File abc123 not found.")));
  const Error err = expect_error([&] { client_.request(req, fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::NotFound);
  EXPECT_EQ(err.path(), "/v1beta/files/abc123:download");
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(HttpTest, TooLargeByContentLength) {
  ScriptedResponse big;
  big.body = patterned_bytes(1000);
  server_.push(big);
  HttpRequest req = get("/v1beta/files/abc:download");
  req.download_path = (dir_ / "out.bin").string();
  req.max_body_bytes = 100;
  const Error err = expect_error([&] { client_.request(req, fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::TooLarge);
  EXPECT_NE(err.message().find("Content-Length 1000"), std::string::npos) << err.message();
  EXPECT_EQ(server_.request_count(), 1u);
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(HttpTest, TooLargeIsRefusedBeforeAnyBodyArrives) {
  // Headers announce 10 GB, then the server sends nothing: only the up-front check can tell.
  ScriptedResponse huge;
  huge.content_length = false;
  huge.headers.emplace_back("Content-Length", "10000000000");
  server_.push(huge);
  HttpRequest req = get("/v1beta/files/abc:download");
  req.download_path = (dir_ / "out.bin").string();
  const Error err = expect_error([&] { client_.request(req, fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::TooLarge) << err.what();
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(HttpTest, TooLargeWhileStreaming) {
  ScriptedResponse unsized;
  unsized.body = patterned_bytes(64 * 1024);
  unsized.content_length = false;
  server_.push(unsized);
  server_.push(unsized);

  HttpRequest req = get("/v1beta/files/abc:download");
  req.download_path = (dir_ / "out.bin").string();
  req.max_body_bytes = 1000;
  Error err = expect_error([&] { client_.request(req, fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::TooLarge);
  EXPECT_TRUE(fs::is_empty(dir_));

  HttpRequest in_memory = get("/v1beta/models");
  in_memory.max_body_bytes = 1000;
  err = expect_error([&] { client_.request(in_memory, fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::TooLarge);
  EXPECT_EQ(server_.request_count(), 2u);
}

TEST_F(HttpTest, UnsizedBodyWithinLimit) {
  ScriptedResponse unsized;
  unsized.body = patterned_bytes(5000);
  unsized.content_length = false;
  server_.push(unsized);
  HttpRequest req = get("/v1beta/models");
  req.max_body_bytes = 5000;
  EXPECT_EQ(client_.request(req, fast_policy(), cancel_).body, unsized.body);
}

TEST_F(HttpTest, MidBodyDropIsNetworkAndLeavesNoFile) {
  ScriptedResponse cut;
  cut.body = patterned_bytes(100000);
  cut.close_after_body_bytes = 30000;
  server_.push(cut);
  HttpRequest req = get("/v1beta/files/abc:download");
  req.download_path = (dir_ / "out.bin").string();
  const Error err = expect_error([&] { client_.request(req, fast_policy(1), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::Network);
  EXPECT_TRUE(err.retryable());
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(HttpTest, CancelMidDownloadRemovesThePartFile) {
  ScriptedResponse stalled;
  stalled.body = patterned_bytes(100000);
  stalled.close_after_body_bytes = 20000;
  stalled.stall_instead_of_close = true;
  server_.push(stalled);
  HttpRequest req = get("/v1beta/files/abc:download");
  req.download_path = (dir_ / "out.bin").string();
  std::atomic<bool> part_seen{false};
  req.on_progress = [&](std::uint64_t done, std::uint64_t total) {
    EXPECT_EQ(total, 100000u);
    if (done == 20000 && fs::exists(req.download_path + ".part") && !part_seen.exchange(true))
      cancel_.cancel(); // from inside the transfer, like an element's unlock() racing it
  };
  const Error err = expect_error([&] { client_.request(req, fast_policy(), cancel_); });
  EXPECT_EQ(err.kind(), ErrorKind::Cancelled);
  EXPECT_TRUE(part_seen.load());
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(HttpTest, DownloadRetryRestartsTheFile) {
  const std::string body = patterned_bytes(100000);
  ScriptedResponse cut;
  cut.body = std::string(body.rbegin(), body.rend());
  cut.close_after_body_bytes = 60000;
  server_.push(cut);
  ScriptedResponse full;
  full.body = body;
  server_.push(full);

  HttpRequest req = get("/v1beta/files/abc:download");
  req.download_path = (dir_ / "out.bin").string();
  int retries = 0;
  client_.request(req, fast_policy(), cancel_, [&](int, const Error &err, milliseconds) {
    EXPECT_EQ(err.kind(), ErrorKind::Network);
    ++retries;
  });
  EXPECT_EQ(retries, 1);
  EXPECT_EQ(read_file(req.download_path), body);
  EXPECT_FALSE(fs::exists(req.download_path + ".part"));
}

TEST_F(HttpTest, RedirectFollowedWithinOrigin) {
  ScriptedResponse redirect;
  redirect.status = 302;
  redirect.headers.emplace_back("Location", "/storage/clip.mp4?sig=xyz");
  server_.push(redirect);
  ScriptedResponse file;
  file.body = patterned_bytes(4096);
  server_.push(file);

  HttpRequest req = get("/v1beta/files/abc:download?alt=media");
  req.follow_redirects = true;
  req.download_path = (dir_ / "clip.mp4").string();
  const HttpResponse resp = client_.request(req, fast_policy(), cancel_);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.effective_url, server_.url("/storage/clip.mp4?sig=xyz"));
  EXPECT_EQ(read_file(req.download_path), file.body);
  const auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].target, "/storage/clip.mp4?sig=xyz");
  EXPECT_EQ(requests[1].header("x-goog-api-key"), kKey);
}

TEST_F(HttpTest, RedirectToAnotherOriginDropsTheKey) {
  ScriptedServer storage;
  ScriptedResponse file;
  file.body = patterned_bytes(2048);
  storage.push(file);
  ScriptedResponse redirect;
  redirect.status = 302;
  redirect.headers.emplace_back("Location", storage.url("/bucket/clip.mp4"));
  server_.push(redirect);

  HttpRequest req = get("/v1beta/files/abc:download?alt=media");
  req.follow_redirects = true;
  const HttpResponse resp = client_.request(req, fast_policy(), cancel_);
  EXPECT_EQ(resp.body, file.body);
  ASSERT_EQ(storage.request_count(), 1u);
  EXPECT_FALSE(storage.requests()[0].has_header("x-goog-api-key"));
  EXPECT_EQ(server_.requests()[0].header("x-goog-api-key"), kKey);
}

TEST_F(HttpTest, RedirectNotFollowedUnlessAsked) {
  ScriptedResponse redirect;
  redirect.status = 302;
  redirect.headers.emplace_back("Location", "/elsewhere");
  server_.push(redirect);
  const HttpResponse resp = client_.perform(get("/v1beta/files/abc"), cancel_);
  EXPECT_EQ(resp.status, 302);
  EXPECT_EQ(resp.headers.at("location"), "/elsewhere");
  EXPECT_EQ(server_.request_count(), 1u);
}

// --- pure functions --------------------------------------------------------------------------

TEST(HttpParse, Duration) {
  EXPECT_EQ(parse_duration("17s"), milliseconds(17000));
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
  EXPECT_EQ(parse_duration("0.25s"), milliseconds(250));
  EXPECT_EQ(parse_duration("0.000000001s"), milliseconds(1)); // rounded up, never shortened
  EXPECT_EQ(parse_duration("3.000000000s"), milliseconds(3000));
  EXPECT_EQ(parse_duration(""), std::nullopt);
  EXPECT_EQ(parse_duration("s"), std::nullopt);
  EXPECT_EQ(parse_duration("17"), std::nullopt);
  EXPECT_EQ(parse_duration("1.s"), std::nullopt);
  EXPECT_EQ(parse_duration(".5s"), std::nullopt);
  EXPECT_EQ(parse_duration("-1s"), std::nullopt);
  EXPECT_EQ(parse_duration("1.0000000001s"), std::nullopt);
  EXPECT_EQ(parse_duration("1e3s"), std::nullopt);
  EXPECT_EQ(parse_duration(" 5s"), std::nullopt);
  EXPECT_EQ(parse_duration("5ms"), std::nullopt);
}

TEST(HttpParse, RetryAfter) {
  EXPECT_EQ(parse_retry_after("120"), milliseconds(120000));
  EXPECT_EQ(parse_retry_after(" 0 "), milliseconds(0));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), milliseconds(0)); // past
  EXPECT_EQ(parse_retry_after(""), std::nullopt);
  EXPECT_EQ(parse_retry_after("soon"), std::nullopt);
  EXPECT_EQ(parse_retry_after("-5"), std::nullopt);

  char date[64];
  const std::time_t later = std::time(nullptr) + 100;
  std::tm tm{};
  gmtime_r(&later, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  const auto delay = parse_retry_after(date);
  ASSERT_TRUE(delay.has_value()) << date;
  EXPECT_GE(*delay, 98s);
  EXPECT_LE(*delay, 100s);
}

TEST(HttpParse, UrlPathDropsHostAndQuery) {
  EXPECT_EQ(
      url_path("https://generativelanguage.googleapis.com/v1beta/models/x:predict?key=SECRET"),
      "/v1beta/models/x:predict");
  EXPECT_EQ(url_path("http://127.0.0.1:8080/v1beta/files/a:download?alt=media#frag"),
            "/v1beta/files/a:download");
  EXPECT_EQ(url_path("https://user:pw@example.com"), "/");
  EXPECT_EQ(url_path("https://example.com?key=SECRET"), "/");
  EXPECT_EQ(url_path("/v1beta/models?pageSize=5"), "/v1beta/models");
  EXPECT_EQ(url_path("/redirect?to=http://evil/"), "/redirect");
  EXPECT_EQ(url_path(""), "");
}

TEST(HttpDecode, GoogleRpcBody) {
  HttpResponse resp;
  resp.status = 429;
  resp.headers["retry-after"] = "3";
  resp.body =
      rpc_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric",
                R"([{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},)"
                R"({"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}])");
  const Error err = decode_http_error(resp, "/v1beta/models/m:generateContent");
  EXPECT_EQ(err.kind(), ErrorKind::ResourceExhausted);
  EXPECT_EQ(err.status(), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(err.message(), "Quota exceeded for metric");
  EXPECT_EQ(err.retry_after(), milliseconds(7000)); // the larger of header and RetryInfo
  EXPECT_EQ(err.path(), "/v1beta/models/m:generateContent");

  resp.headers.clear();
  resp.status = 500;
  resp.body =
      R"([{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}])";
  const Error wrapped = decode_http_error(resp, "/p");
  EXPECT_EQ(wrapped.kind(), ErrorKind::Internal);
  EXPECT_EQ(wrapped.message(), "Internal error encountered.");

  resp.status = 503;
  resp.body = "";
  const Error empty = decode_http_error(resp, "/p");
  EXPECT_EQ(empty.kind(), ErrorKind::Unavailable);
  EXPECT_EQ(empty.message(), "HTTP 503 Service Unavailable");
  EXPECT_STREQ(empty.what(), "HTTP 503 on /p: HTTP 503 Service Unavailable");

  resp.status = 404;
  resp.body = R"({"error":{"code":404}})";
  EXPECT_EQ(decode_http_error(resp, "/p").message(), "HTTP 404 Not Found");
}

TEST(ErrorTest, KindFromHttp) {
  EXPECT_EQ(error_kind_from_http(400, "INVALID_ARGUMENT"), ErrorKind::InvalidArgument);
  EXPECT_EQ(error_kind_from_http(400, "FAILED_PRECONDITION"), ErrorKind::InvalidArgument);
  EXPECT_EQ(error_kind_from_http(400, "INVALID_ARGUMENT", "API_KEY_INVALID"),
            ErrorKind::Unauthenticated);
  EXPECT_EQ(error_kind_from_http(401, ""), ErrorKind::Unauthenticated);
  EXPECT_EQ(error_kind_from_http(403, "PERMISSION_DENIED"), ErrorKind::PermissionDenied);
  EXPECT_EQ(error_kind_from_http(404, ""), ErrorKind::NotFound);
  EXPECT_EQ(error_kind_from_http(413, ""), ErrorKind::TooLarge);
  EXPECT_EQ(error_kind_from_http(429, ""), ErrorKind::ResourceExhausted);
  EXPECT_EQ(error_kind_from_http(500, ""), ErrorKind::Internal);
  EXPECT_EQ(error_kind_from_http(503, ""), ErrorKind::Unavailable);
  EXPECT_EQ(error_kind_from_http(504, ""), ErrorKind::DeadlineExceeded);
  EXPECT_EQ(error_kind_from_http(409, "ABORTED"), ErrorKind::InvalidArgument);
  EXPECT_EQ(error_kind_from_http(502, ""), ErrorKind::Internal);
  EXPECT_EQ(error_kind_from_http(0, "RESOURCE_EXHAUSTED"), ErrorKind::ResourceExhausted);
  EXPECT_EQ(error_kind_from_http(0, "NOT_FOUND"), ErrorKind::NotFound);
  EXPECT_EQ(error_kind_from_http(302, ""), ErrorKind::Protocol);
}

TEST(ErrorTest, RetryableKinds) {
  for (ErrorKind kind : {ErrorKind::ResourceExhausted, ErrorKind::Internal, ErrorKind::Unavailable,
                         ErrorKind::DeadlineExceeded, ErrorKind::Network})
    EXPECT_TRUE(Error(kind, "x").retryable()) << to_string(kind);
  for (ErrorKind kind :
       {ErrorKind::InvalidArgument, ErrorKind::Unauthenticated, ErrorKind::PermissionDenied,
        ErrorKind::NotFound, ErrorKind::Timeout, ErrorKind::Cancelled, ErrorKind::Protocol,
        ErrorKind::SafetyFiltered, ErrorKind::Config, ErrorKind::Io, ErrorKind::TooLarge})
    EXPECT_FALSE(Error(kind, "x").retryable()) << to_string(kind);
}

TEST(ErrorTest, WhatIsOneHelpfulLine) {
  Error plain(ErrorKind::Config, "config/media_generation.json: unknown model \"x\"");
  EXPECT_STREQ(plain.what(), "config/media_generation.json: unknown model \"x\"");
  EXPECT_STREQ(to_string(plain.kind()), "Config");

  Error api(ErrorKind::InvalidArgument, "line one\nline two");
  api.with_http(400, "INVALID_ARGUMENT", "/v1beta/models/x:predict").with_reason("API_KEY_INVALID");
  EXPECT_STREQ(
      api.what(),
      "HTTP 400 INVALID_ARGUMENT (API_KEY_INVALID) on /v1beta/models/x:predict: line one line two");
  EXPECT_EQ(api.message(), "line one\nline two");

  const Error copy = api;
  EXPECT_STREQ(copy.what(), api.what());
  EXPECT_EQ(copy.reason(), "API_KEY_INVALID");
}

// --- CancelToken -----------------------------------------------------------------------------

TEST(CancelTokenTest, WaitForIsInterruptible) {
  CancelToken token;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(token.wait_for(30ms));
  EXPECT_GE(elapsed_ms(start, std::chrono::steady_clock::now()), 29);

  std::thread t([copy = token] {
    std::this_thread::sleep_for(50ms);
    copy.cancel();
  });
  const auto wait_start = std::chrono::steady_clock::now();
  EXPECT_FALSE(token.wait_for(10s));
  EXPECT_LT(elapsed_ms(wait_start, std::chrono::steady_clock::now()), 1000);
  t.join();
  EXPECT_TRUE(token.cancelled());
  EXPECT_FALSE(token.wait_for(0ms));
  EXPECT_THROW(token.throw_if_cancelled(), Error);

  token.reset();
  EXPECT_FALSE(token.cancelled());
  EXPECT_NO_THROW(token.throw_if_cancelled());
  EXPECT_TRUE(token.wait_for(1ms));
}

TEST(CancelTokenTest, Callbacks) {
  CancelToken token;
  int a = 0, b = 0;
  const int id_a = token.add_callback([&] { ++a; });
  const int id_b = token.add_callback([&] { ++b; });
  EXPECT_NE(id_a, id_b);
  token.remove_callback(id_b);
  token.cancel();
  token.cancel(); // sticky: runs callbacks once
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 0);

  int late = 0;
  const int id_late = token.add_callback([&] { ++late; });
  EXPECT_EQ(late, 1); // already cancelled: runs at once
  token.remove_callback(id_late);
  token.remove_callback(id_a);

  // A callback may remove itself without deadlocking.
  token.reset();
  int self = 0;
  int id_self = 0;
  id_self = token.add_callback([&] {
    ++self;
    token.remove_callback(id_self);
  });
  token.cancel();
  EXPECT_EQ(self, 1);
}

TEST(CancelTokenTest, RemoveWaitsForARunningCallback) {
  CancelToken token;
  std::atomic<bool> entered{false}, finished{false};
  const int id = token.add_callback([&] {
    entered = true;
    std::this_thread::sleep_for(100ms);
    finished = true;
  });
  std::thread canceller([&] { token.cancel(); });
  while (!entered)
    std::this_thread::yield();
  token.remove_callback(id);
  EXPECT_TRUE(finished.load());
  canceller.join();
}

} // namespace
} // namespace gemstream
