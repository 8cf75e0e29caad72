// The local backend's REST surface, checked on the wire with libcurl (no engine code): routes,
// JSON shapes, decoded media, operations, redirects, auth, faults and the admin endpoint.
#include "gemstream/local_backend.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using gemstream::LocalBackend;
using gemstream::LocalBackendOptions;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char *kKey = "test-key-6f1d";
// One prompt for every rendered video: the process-wide render cache keeps the suite fast.
constexpr const char *kVideoPrompt = "A calm teal ocean at dawn, slow waves";

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
};
const CurlGlobal curl_global;

struct HttpResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;

  json body_json() const { return json::parse(body); }
  std::string header(const std::string &name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct Request {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::vector<std::string> headers;
  bool follow = false;
};

// One easy handle per client, so consecutive requests reuse the keep-alive connection.
class Client {
public:
  Client() : curl_(curl_easy_init()) {}
  ~Client() { curl_easy_cleanup(curl_); }
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;

  CURL *prepare(const Request &req, HttpResult &out, curl_slist *&list) {
    return setup(curl_, req, out, list);
  }

  HttpResult perform(const Request &req) {
    HttpResult out;
    curl_slist *list = nullptr;
    setup(curl_, req, out, list);
    out.code = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &out.status);
    curl_slist_free_all(list);
    return out;
  }

  static CURL *setup(CURL *curl, const Request &req, HttpResult &out, curl_slist *&list) {
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (req.method == "POST") {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(req.body.size()));
    }
    for (const auto &h : req.headers)
      list = curl_slist_append(list, h.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, req.follow ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
    // Bodies over 1 MB go with "Expect: 100-continue": a server that never answers it would cost
    // every such request these 10 s, which the tests below notice.
    curl_easy_setopt(curl, CURLOPT_EXPECT_100_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &out);
    return curl;
  }

private:
  static size_t on_body(char *data, size_t size, size_t n, void *user) {
    static_cast<HttpResult *>(user)->body.append(data, size * n);
    return size * n;
  }
  static size_t on_header(char *data, size_t size, size_t n, void *user) {
    std::string line(data, size * n);
    auto *out = static_cast<HttpResult *>(user);
    if (line.rfind("HTTP/", 0) == 0) {
      out->headers.clear();  // a new response (redirect followed)
      return size * n;
    }
    const auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto &c : name)
        c = char(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of("\r\n \t") + 1);
      out->headers[name] = value;
    }
    return size * n;
  }

  CURL *curl_;
};

std::string base64_decode(const std::string &in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=')
      break;
    const int v = value(c);
    if (v < 0)
      throw std::runtime_error("invalid base64");
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string base64_encode(const std::string &in) {
  static const char *k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const std::uint32_t n = (std::uint8_t(in[i]) << 16) | (std::uint8_t(in[i + 1]) << 8) |
                            std::uint8_t(in[i + 2]);
    out += {k[n >> 18], k[(n >> 12) & 63], k[(n >> 6) & 63], k[n & 63]};
  }
  if (i < in.size()) {
    std::uint32_t n = std::uint8_t(in[i]) << 16;
    if (i + 1 < in.size())
      n |= std::uint8_t(in[i + 1]) << 8;
    out += k[n >> 18];
    out += k[(n >> 12) & 63];
    out += i + 1 < in.size() ? k[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

struct PngInfo {
  bool valid = false;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
};

PngInfo png_info(const std::string &png) {
  static const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  PngInfo info;
  if (png.size() < 24 || std::memcmp(png.data(), kSignature, 8) != 0 ||
      png.compare(12, 4, "IHDR") != 0)
    return info;
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t(std::uint8_t(png[at])) << 24) |
           (std::uint32_t(std::uint8_t(png[at + 1])) << 16) |
           (std::uint32_t(std::uint8_t(png[at + 2])) << 8) | std::uint8_t(png[at + 3]);
  };
  info.valid = true;
  info.width = be32(16);
  info.height = be32(20);
  return info;
}

class BackendTest : public ::testing::Test {
protected:
  void SetUp() override { start_backend(); }

  void start_backend(LocalBackendOptions options = {}) {
    if (options.required_api_key.empty())
      options.required_api_key = kKey;
    backend_ = std::make_unique<LocalBackend>(options);
    backend_->start();
  }

  std::string url(const std::string &path) const { return backend_->base_url() + path; }

  HttpResult get(const std::string &path, std::vector<std::string> headers = {},
                 bool follow = false) {
    headers.push_back(std::string("x-goog-api-key: ") + kKey);
    return client_.perform({"GET", url(path), "", headers, follow});
  }

  HttpResult post_raw(const std::string &path, const std::string &body,
                      std::vector<std::string> headers = {}) {
    headers.push_back("Content-Type: application/json");
    return client_.perform({"POST", url(path), body, headers, false});
  }

  HttpResult post(const std::string &path, const json &body) {
    return post_raw(path, body.dump(), {std::string("x-goog-api-key: ") + kKey});
  }

  static json image_request(const std::string &prompt, const std::string &aspect = "",
                            json modalities = json::array({"TEXT", "IMAGE"})) {
    json config = {{"responseModalities", modalities}};
    if (!aspect.empty())
      config["imageConfig"] = {{"aspectRatio", aspect}};
    return {{"contents", json::array({{{"role", "user"}, {"parts", json::array({{{"text", prompt}}})}}})},
            {"generationConfig", config}};
  }

  static json veo_request(const std::string &prompt, json parameters = json::object()) {
    if (!parameters.contains("aspectRatio"))
      parameters["aspectRatio"] = "16:9";
    if (!parameters.contains("durationSeconds"))
      parameters["durationSeconds"] = 4;
    return {{"instances", json::array({{{"prompt", prompt}}})}, {"parameters", parameters}};
  }

  // Polls until done (the first render takes seconds); returns the final operation and the number
  // of polls it took.
  std::pair<json, int> poll_until_done(const std::string &name) {
    const auto deadline = std::chrono::steady_clock::now() + 100s;
    for (int polls = 1; std::chrono::steady_clock::now() < deadline; ++polls) {
      HttpResult r = get("/v1beta/" + name);
      EXPECT_EQ(r.status, 200) << r.body;
      json op = r.body_json();
      if (op.value("done", false))
        return {op, polls};
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "operation " << name << " never finished";
    return {json(), 0};
  }

  std::string create_video(const json &request, const std::string &model = "veo-3.0-fast-generate-001") {
    HttpResult r = post("/v1beta/models/" + model + ":predictLongRunning", request);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body_json().value("name", "");
  }

  // Renders (or reuses) the suite's video and returns its download URI.
  std::string finished_video_uri() {
    const std::string name = create_video(veo_request(kVideoPrompt));
    auto [op, polls] = poll_until_done(name);
    return op["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"];
  }

  static void expect_error(const HttpResult &r, int status, const std::string &rpc_status) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json; charset=UTF-8");
    json body = json::parse(r.body);
    ASSERT_TRUE(body.contains("error")) << r.body;
    EXPECT_EQ(body["error"]["code"], status);
    EXPECT_EQ(body["error"]["status"], rpc_status);
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_FALSE(body["error"]["message"].get<std::string>().empty());
  }

  std::unique_ptr<LocalBackend> backend_;
  Client client_;
};

// ------------------------------------------------------------------------------------------------

TEST_F(BackendTest, ListsModelsWithTheirMethods) {
  HttpResult r = get("/v1beta/models");
  ASSERT_EQ(r.status, 200) << r.body;
  json models = r.body_json()["models"];
  std::map<std::string, json> by_name;
  for (const auto &m : models)
    by_name[m["name"]] = m;
  ASSERT_TRUE(by_name.count("models/gemini-2.5-flash-image"));
  EXPECT_EQ(by_name["models/gemini-2.5-flash-image"]["supportedGenerationMethods"][0],
            "generateContent");
  EXPECT_EQ(by_name["models/imagen-4.0-generate-001"]["supportedGenerationMethods"],
            json::array({"predict"}));
  EXPECT_EQ(by_name["models/veo-3.0-generate-001"]["supportedGenerationMethods"],
            json::array({"predictLongRunning"}));
  EXPECT_TRUE(by_name.count("models/gemini-live-2.5-flash-preview-native-audio"));

  HttpResult one = get("/v1beta/models/veo-3.0-fast-generate-001");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.body_json()["name"], "models/veo-3.0-fast-generate-001");
  EXPECT_TRUE(one.body_json()["displayName"].is_string());

  expect_error(get("/v1beta/models/no-such-model"), 404, "NOT_FOUND");
}

TEST_F(BackendTest, NanoBananaAnswersAPngOfTheRequestedAspectRatio) {
  HttpResult r = post("/v1beta/models/gemini-2.5-flash-image:generateContent",
                      image_request("A red fox in a snowy forest, watercolor", "16:9"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json; charset=UTF-8");
  json body = r.body_json();

  ASSERT_EQ(body["candidates"].size(), 1u);
  const json &candidate = body["candidates"][0];
  EXPECT_EQ(candidate["finishReason"], "STOP");
  EXPECT_EQ(candidate["index"], 0);
  EXPECT_EQ(candidate["content"]["role"], "model");
  ASSERT_EQ(candidate["content"]["parts"].size(), 1u);
  const json &inline_data = candidate["content"]["parts"][0]["inlineData"];
  EXPECT_EQ(inline_data["mimeType"], "image/png");
  const PngInfo png = png_info(base64_decode(inline_data["data"]));
  ASSERT_TRUE(png.valid);
  EXPECT_EQ(png.width, 1344u);
  EXPECT_EQ(png.height, 768u);

  const json &usage = body["usageMetadata"];
  const int prompt_tokens = usage["promptTokenCount"];
  EXPECT_GT(prompt_tokens, 0);
  EXPECT_EQ(usage["candidatesTokenCount"], 1290);
  EXPECT_EQ(usage["totalTokenCount"], prompt_tokens + 1290);
  EXPECT_EQ(usage["promptTokensDetails"],
            json::array({{{"modality", "TEXT"}, {"tokenCount", prompt_tokens}}}));
  EXPECT_EQ(usage["candidatesTokensDetails"],
            json::array({{{"modality", "IMAGE"}, {"tokenCount", 1290}}}));
  EXPECT_EQ(body["modelVersion"], "gemini-2.5-flash-image");
  EXPECT_FALSE(body["responseId"].get<std::string>().empty());
}

TEST_F(BackendTest, NanoBananaDefaultsToSquareAndServesAllVersionPrefixes) {
  for (const char *version : {"v1", "v1beta", "v1alpha"}) {
    HttpResult r = post(std::string("/") + version + "/models/gemini-2.5-flash-image:generateContent",
                        image_request("A lighthouse", "", json::array({"IMAGE"})));
    ASSERT_EQ(r.status, 200) << version << ": " << r.body;
    const PngInfo png =
        png_info(base64_decode(r.body_json()["candidates"][0]["content"]["parts"][0]["inlineData"]["data"]));
    EXPECT_TRUE(png.valid) << version;
    EXPECT_EQ(png.width, 1024u) << version;
    EXPECT_EQ(png.height, 1024u) << version;
  }
}

TEST_F(BackendTest, NanoBananaWithoutImageModalityAnswersText) {
  HttpResult r = post("/v1beta/models/gemini-2.5-flash-image:generateContent",
                      image_request("A lighthouse", "", json::array({"TEXT"})));
  ASSERT_EQ(r.status, 200) << r.body;
  const json parts = r.body_json()["candidates"][0]["content"]["parts"];
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_TRUE(parts[0].contains("text"));
  EXPECT_FALSE(parts[0].contains("inlineData"));
}

TEST_F(BackendTest, NanoBananaRejectsAnUnknownAspectRatioNamingIt) {
  HttpResult r = post("/v1beta/models/gemini-2.5-flash-image:generateContent",
                      image_request("A lighthouse", "5:7"));
  expect_error(r, 400, "INVALID_ARGUMENT");
  EXPECT_NE(r.body_json()["error"]["message"].get<std::string>().find("5:7"), std::string::npos);
}

TEST_F(BackendTest, NanoBananaSafetyTriggerYieldsImageSafetyWithoutImage) {
  HttpResult r = post("/v1beta/models/gemini-2.5-flash-image:generateContent",
                      image_request("a forbidden-content scene", "1:1"));
  ASSERT_EQ(r.status, 200) << r.body;
  const json candidate = r.body_json()["candidates"][0];
  EXPECT_EQ(candidate["finishReason"], "IMAGE_SAFETY");
  EXPECT_EQ(r.body.find("inlineData"), std::string::npos);
}

TEST_F(BackendTest, TextModelAnswersDeterministically) {
  json request = {{"contents", json::array({{{"role", "user"}, {"parts", json::array({{{"text", "Hello there"}}})}}})}};
  HttpResult a = post("/v1beta/models/gemini-2.5-flash:generateContent", request);
  HttpResult b = post("/v1beta/models/gemini-2.5-flash:generateContent", request);
  ASSERT_EQ(a.status, 200) << a.body;
  const std::string text = a.body_json()["candidates"][0]["content"]["parts"][0]["text"];
  EXPECT_NE(text.find("Hello there"), std::string::npos);
  EXPECT_EQ(text, b.body_json()["candidates"][0]["content"]["parts"][0]["text"]);
  EXPECT_EQ(a.body_json()["candidates"][0]["finishReason"], "STOP");
  EXPECT_NE(a.body_json()["responseId"], b.body_json()["responseId"]);

  HttpResult sse = post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", request);
  ASSERT_EQ(sse.status, 200) << sse.body;
  EXPECT_EQ(sse.header("content-type"), "text/event-stream");
  ASSERT_EQ(sse.body.rfind("data: ", 0), 0u);
  EXPECT_EQ(json::parse(sse.body.substr(6))["candidates"][0]["content"]["parts"][0]["text"], text);
}

TEST_F(BackendTest, ImagenPredictReturnsSamplesOfTheRequestedSize) {
  json request = {{"instances", json::array({{{"prompt", "A mountain lake, oil painting"}}})},
                  {"parameters", {{"sampleCount", 2}, {"aspectRatio", "16:9"}}}};
  HttpResult r = post("/v1beta/models/imagen-4.0-fast-generate-001:predict", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const json predictions = r.body_json()["predictions"];
  ASSERT_EQ(predictions.size(), 2u);
  for (const auto &p : predictions) {
    EXPECT_EQ(p["mimeType"], "image/png");
    const PngInfo png = png_info(base64_decode(p["bytesBase64Encoded"]));
    ASSERT_TRUE(png.valid);
    EXPECT_EQ(png.width, 1408u);
    EXPECT_EQ(png.height, 768u);
  }

  request["parameters"]["sampleCount"] = 5;
  expect_error(post("/v1beta/models/imagen-4.0-generate-001:predict", request), 400,
               "INVALID_ARGUMENT");
}

TEST_F(BackendTest, ImagenSafetyTriggerFiltersSamples) {
  json request = {{"instances", json::array({{{"prompt", "forbidden-content"}}})},
                  {"parameters", {{"sampleCount", 1}, {"includeRaiReason", true}}}};
  HttpResult r = post("/v1beta/models/imagen-4.0-generate-001:predict", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const json predictions = r.body_json()["predictions"];
  ASSERT_EQ(predictions.size(), 1u);
  EXPECT_TRUE(predictions[0]["raiFilteredReason"].is_string());
  EXPECT_FALSE(predictions[0].contains("bytesBase64Encoded"));

  request["parameters"].erase("includeRaiReason");
  HttpResult silent = post("/v1beta/models/imagen-4.0-generate-001:predict", request);
  ASSERT_EQ(silent.status, 200);
  EXPECT_EQ(silent.body_json(), json::object());
}

TEST_F(BackendTest, VeoOperationFinishesAfterTheConfiguredPollsWithTheRealShape) {
  // First make sure the render is cached, so only the poll count decides.
  finished_video_uri();

  backend_->set_polls_until_done(3);
  const std::string name = create_video(veo_request(kVideoPrompt));
  ASSERT_EQ(name.rfind("models/veo-3.0-fast-generate-001/operations/", 0), 0u) << name;

  for (int poll = 1; poll <= 2; ++poll) {
    HttpResult r = get("/v1beta/" + name);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body_json(), json({{"name", name}})) << "poll " << poll;
  }
  HttpResult r = get("/v1beta/" + name);
  ASSERT_EQ(r.status, 200) << r.body;
  const json op = r.body_json();
  EXPECT_EQ(op["name"], name);
  EXPECT_EQ(op["done"], true);
  EXPECT_FALSE(op.contains("error"));
  const json &response = op["response"];
  EXPECT_EQ(response["@type"],
            "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse");
  const json &samples = response["generateVideoResponse"]["generatedSamples"];
  ASSERT_EQ(samples.size(), 1u);
  const std::string uri = samples[0]["video"]["uri"];
  const std::string prefix = backend_->base_url() + "/v1beta/files/";
  ASSERT_EQ(uri.rfind(prefix, 0), 0u) << uri;
  EXPECT_NE(uri.find(":download?alt=media"), std::string::npos) << uri;

  // Done stays done.
  EXPECT_EQ(get("/v1beta/" + name).body_json(), op);
}

TEST_F(BackendTest, VideoDownloadRedirectsThenStreamsTheMp4) {
  const std::string uri = finished_video_uri();
  ASSERT_FALSE(uri.empty());
  const std::string path = uri.substr(backend_->base_url().size());

  HttpResult redirect = get(path);
  ASSERT_EQ(redirect.status, 302) << redirect.body;
  const std::string location = redirect.header("location");
  ASSERT_EQ(location.rfind(backend_->base_url() + "/_media/", 0), 0u) << location;

  // The redirect target needs no key, like the real signed media URL.
  HttpResult media = client_.perform({"GET", location, "", {}, false});
  ASSERT_EQ(media.status, 200);
  EXPECT_EQ(media.header("content-type"), "video/mp4");
  EXPECT_EQ(media.header("content-length"), std::to_string(media.body.size()));
  ASSERT_GT(media.body.size(), 10000u);  // several 64 KiB writes, not one
  EXPECT_EQ(media.body.substr(4, 4), "ftyp");

  HttpResult followed = get(path, {}, true);
  ASSERT_EQ(followed.status, 200);
  EXPECT_EQ(followed.body, media.body);

  HttpResult range = client_.perform({"GET", location, "", {"Range: bytes=100-"}, false});
  ASSERT_EQ(range.status, 206);
  EXPECT_EQ(range.body, media.body.substr(100));
  EXPECT_EQ(range.header("content-range"),
            "bytes 100-" + std::to_string(media.body.size() - 1) + "/" +
                std::to_string(media.body.size()));

  HttpResult bad_token =
      client_.perform({"GET", location.substr(0, location.find("token=")) + "token=nope", "", {}, false});
  EXPECT_EQ(bad_token.status, 403);
}

TEST_F(BackendTest, DroppedDownloadEndsEarlyWithACurlError) {
  const std::string uri = finished_video_uri();
  const std::string path = uri.substr(backend_->base_url().size());

  backend_->drop_next_download_after(1000);
  HttpResult dropped = get(path, {}, true);
  EXPECT_EQ(dropped.code, CURLE_PARTIAL_FILE) << curl_easy_strerror(dropped.code);
  EXPECT_EQ(dropped.status, 200);
  EXPECT_EQ(dropped.body.size(), 1000u);

  HttpResult whole = get(path, {}, true);
  EXPECT_EQ(whole.code, CURLE_OK);
  EXPECT_EQ(whole.header("content-length"), std::to_string(whole.body.size()));
  EXPECT_EQ(whole.body.substr(0, 1000), dropped.body);
}

TEST_F(BackendTest, VeoSafetyTriggerFinishesFilteredWithoutSamples) {
  backend_->set_polls_until_done(1);
  const std::string name = create_video(veo_request("a forbidden-content clip"));
  HttpResult r = get("/v1beta/" + name);
  ASSERT_EQ(r.status, 200);
  const json op = r.body_json();
  EXPECT_EQ(op["done"], true);
  const json &video = op["response"]["generateVideoResponse"];
  EXPECT_EQ(video["raiMediaFilteredCount"], 1);
  ASSERT_EQ(video["raiMediaFilteredReasons"].size(), 1u);
  EXPECT_FALSE(video.contains("generatedSamples"));
}

TEST_F(BackendTest, VeoValidatesParametersLikeTheGeminiApi) {
  const std::string path = "/v1beta/models/veo-3.0-generate-001:predictLongRunning";
  HttpResult audio = post(path, veo_request("x", {{"generateAudio", true}}));
  expect_error(audio, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(audio.body_json()["error"]["message"],
            "generateAudio parameter is not supported in Gemini API.");

  expect_error(post(path, veo_request("x", {{"aspectRatio", "4:3"}})), 400, "INVALID_ARGUMENT");
  expect_error(post(path, veo_request("x", {{"resolution", "4k"}})), 400, "INVALID_ARGUMENT");
  expect_error(post(path, veo_request("x", {{"aspectRatio", "9:16"}, {"resolution", "1080p"},
                                            {"durationSeconds", 8}})),
               400, "INVALID_ARGUMENT");
  expect_error(post(path, veo_request("x", {{"durationSeconds", 5}})), 400, "INVALID_ARGUMENT");
  json bad_image = veo_request("x");
  bad_image["instances"][0]["image"] = {{"bytesBase64Encoded", "!!!"}, {"mimeType", "image/png"}};
  expect_error(post(path, bad_image), 400, "INVALID_ARGUMENT");

  // durationSeconds may travel as a string (the suite's cached render: nothing new to encode).
  EXPECT_EQ(post(path, veo_request(kVideoPrompt, {{"durationSeconds", "4"}})).status, 200);

  expect_error(get("/v1beta/models/veo-3.0-generate-001/operations/doesnotexist"), 404,
               "NOT_FOUND");
}

TEST_F(BackendTest, UndecodableStartFrameFailsTheOperation) {
  backend_->set_polls_until_done(1);
  json request = veo_request("start from this frame");
  request["instances"][0]["image"] = {{"bytesBase64Encoded", base64_encode("\x89PNG not really")},
                                      {"mimeType", "image/png"}};
  const std::string name = create_video(request);
  auto [op, polls] = poll_until_done(name);
  EXPECT_EQ(op["done"], true);
  EXPECT_FALSE(op.contains("response"));
  EXPECT_EQ(op["error"]["code"], 13);
  EXPECT_TRUE(op["error"]["message"].is_string());
}

TEST_F(BackendTest, MissingKeyIsPermissionDeniedAndWrongKeyIsInvalid) {
  const std::string body = image_request("x", "1:1").dump();
  const std::string path = "/v1beta/models/gemini-2.5-flash-image:generateContent";

  HttpResult missing = post_raw(path, body);
  expect_error(missing, 403, "PERMISSION_DENIED");
  EXPECT_EQ(missing.body_json()["error"]["message"],
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.");

  HttpResult wrong = post_raw(path, body, {"x-goog-api-key: wrong"});
  expect_error(wrong, 400, "INVALID_ARGUMENT");
  const json error = wrong.body_json()["error"];
  EXPECT_EQ(error["message"], "API key not valid. Please pass a valid API key.");
  ASSERT_GE(error["details"].size(), 1u);
  EXPECT_EQ(error["details"][0]["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
  EXPECT_EQ(error["details"][0]["reason"], "API_KEY_INVALID");
  EXPECT_EQ(error["details"][0]["domain"], "googleapis.com");
  EXPECT_EQ(error["details"][0]["metadata"]["service"], "generativelanguage.googleapis.com");

  EXPECT_EQ(post_raw(path + "?key=" + kKey, body).status, 200);
  // The error bodies never echo a key.
  EXPECT_EQ(wrong.body.find("wrong\""), std::string::npos);
}

TEST_F(BackendTest, FailNextInjectsStatusWithRetryInfo) {
  backend_->fail_next(2, 503, 7s);
  for (int i = 0; i < 2; ++i) {
    HttpResult r = get("/v1beta/models");
    expect_error(r, 503, "UNAVAILABLE");
    EXPECT_EQ(r.header("retry-after"), "7");
    const json details = r.body_json()["error"]["details"];
    ASSERT_EQ(details.size(), 1u);
    EXPECT_EQ(details[0]["@type"], "type.googleapis.com/google.rpc.RetryInfo");
    EXPECT_EQ(details[0]["retryDelay"], "7s");
  }
  EXPECT_EQ(get("/v1beta/models").status, 200);

  backend_->fail_next(1, 429);
  HttpResult quota = get("/v1beta/models");
  expect_error(quota, 429, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(quota.header("retry-after"), "");
  EXPECT_FALSE(quota.body_json()["error"].contains("details"));

  backend_->fail_next(1, 500);
  expect_error(get("/v1beta/models"), 500, "INTERNAL");
  backend_->fail_next(1, 504);
  expect_error(get("/v1beta/models"), 504, "DEADLINE_EXCEEDED");
}

TEST_F(BackendTest, LatencyDelaysAnswersWithoutSerialisingThem) {
  backend_->set_latency(400ms);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(get("/v1beta/models").status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);

  // Three concurrent requests: a blocking service thread would need 1.2 s.
  CURLM *multi = curl_multi_init();
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<CURL *> easies;
  std::vector<HttpResult> results(3);
  std::vector<curl_slist *> lists(3, nullptr);
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<Client>());
    easies.push_back(clients.back()->prepare(
        {"GET", url("/v1beta/models"), "", {std::string("x-goog-api-key: ") + kKey}, false},
        results[i], lists[i]));
    curl_multi_add_handle(multi, easies.back());
  }
  const auto t1 = std::chrono::steady_clock::now();
  int running = 0;
  do {
    curl_multi_perform(multi, &running);
    curl_multi_poll(multi, nullptr, 0, 50, nullptr);
  } while (running > 0);
  const auto elapsed = std::chrono::steady_clock::now() - t1;
  EXPECT_GE(elapsed, 400ms);
  EXPECT_LT(elapsed, 1100ms);
  int ok = 0;
  while (CURLMsg *msg = curl_multi_info_read(multi, &running)) {
    if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK)
      ++ok;
  }
  EXPECT_EQ(ok, 3);
  for (CURL *easy : easies)
    curl_multi_remove_handle(multi, easy);
  curl_multi_cleanup(multi);
  for (auto *l : lists)
    curl_slist_free_all(l);
}

TEST_F(BackendTest, UnknownModelMalformedJsonAndUnknownPaths) {
  HttpResult unknown = post("/v1beta/models/xyz:generateContent", image_request("x"));
  expect_error(unknown, 404, "NOT_FOUND");
  EXPECT_EQ(unknown.body_json()["error"]["message"],
            "models/xyz is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their "
            "supported methods.");

  // A known model asked for a method it does not support reads the same way.
  HttpResult wrong_method = post("/v1/models/gemini-2.5-flash:predict", json::object());
  expect_error(wrong_method, 404, "NOT_FOUND");
  EXPECT_NE(wrong_method.body.find("API version v1, or is not supported for predict"),
            std::string::npos);

  HttpResult malformed = post_raw("/v1beta/models/gemini-2.5-flash:generateContent",
                                  "{\"contents\": [", {std::string("x-goog-api-key: ") + kKey});
  expect_error(malformed, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(malformed.body_json()["error"]["message"].get<std::string>().rfind(
                "Invalid JSON payload received.", 0),
            0u);

  json unknown_field = image_request("x");
  unknown_field["generationConfig"]["bogusField"] = 1;
  HttpResult field = post("/v1beta/models/gemini-2.5-flash-image:generateContent", unknown_field);
  expect_error(field, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(field.body_json()["error"]["message"],
            "Invalid JSON payload received. Unknown name \"bogusField\" at 'generation_config': "
            "Cannot find field.");

  expect_error(post("/v1beta/models/gemini-2.5-flash:generateContent", json::object()), 400,
               "INVALID_ARGUMENT");
  expect_error(get("/v2/models"), 404, "NOT_FOUND");
  expect_error(get("/nothing/here"), 404, "NOT_FOUND");
  expect_error(get("/v1beta/models/gemini-2.5-flash:generateContent"), 404, "NOT_FOUND");
}

TEST_F(BackendTest, RecordsRequestsWithHeadersBodyAndStatus) {
  backend_->clear_requests();
  const json request = image_request("record me", "1:1", json::array({"TEXT"}));
  post("/v1beta/models/gemini-2.5-flash-image:generateContent?foo=bar", request);
  get("/v1beta/models/nope");

  const auto recorded = backend_->requests();
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0].method, "POST");
  EXPECT_EQ(recorded[0].path, "/v1beta/models/gemini-2.5-flash-image:generateContent");
  EXPECT_EQ(recorded[0].query, "foo=bar");
  EXPECT_EQ(json::parse(recorded[0].body), request);
  EXPECT_EQ(recorded[0].status, 200);
  auto header = [](const gemstream::RecordedRequest &r, const std::string &name) {
    for (const auto &[k, v] : r.headers)
      if (k == name)
        return v;
    return std::string();
  };
  EXPECT_EQ(header(recorded[0], "x-goog-api-key"), kKey);
  EXPECT_EQ(header(recorded[0], "content-type"), "application/json");
  EXPECT_EQ(recorded[1].method, "GET");
  EXPECT_EQ(recorded[1].status, 404);
}

TEST_F(BackendTest, AdminEndpointScriptsFaultsAndListsRedactedRequests) {
  HttpResult set = client_.perform(
      {"POST", url("/_backend/faults"),
       R"({"fail_next":{"count":1,"status":429,"retry_after_s":2},"latency_ms":0,)"
       R"("drop_next_download_after":1000,"polls_until_done":1})",
       {"Content-Type: application/json"}, false});
  ASSERT_EQ(set.status, 200) << set.body;
  const json state = set.body_json();
  EXPECT_EQ(state["fail_next"]["count"], 1);
  EXPECT_EQ(state["fail_next"]["status"], 429);
  EXPECT_EQ(state["fail_next"]["retry_after_s"], 2);
  EXPECT_EQ(state["drop_next_download_after"], 1000);
  EXPECT_EQ(state["polls_until_done"], 1);

  HttpResult limited = get("/v1beta/models");
  expect_error(limited, 429, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(limited.header("retry-after"), "2");
  EXPECT_EQ(get("/v1beta/models?key=" + std::string(kKey)).status, 200);

  // polls_until_done 1 applies: a filtered operation is done at the first poll.
  const std::string name = create_video(veo_request("forbidden-content"));
  EXPECT_EQ(get("/v1beta/" + name).body_json()["done"], true);

  HttpResult list = client_.perform({"GET", url("/_backend/requests"), "", {}, false});
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body.find(kKey), std::string::npos) << "a key leaked into the request log";
  const json requests = list.body_json()["requests"];
  ASSERT_GE(requests.size(), 2u);
  EXPECT_EQ(requests[0]["path"], "/v1beta/models");
  EXPECT_EQ(requests[0]["status"], 429);
  EXPECT_EQ(requests[0]["headers"]["x-goog-api-key"], "REDACTED");
  EXPECT_EQ(requests[1]["query"], "key=REDACTED");
  for (const auto &r : requests)
    EXPECT_NE(r["path"].get<std::string>().rfind("/_backend/", 0), 0u);

  HttpResult bad = client_.perform({"POST", url("/_backend/faults"), R"({"latency_ms":"slow"})",
                                    {}, false});
  expect_error(bad, 400, "INVALID_ARGUMENT");
  HttpResult reset = client_.perform({"POST", url("/_backend/faults"), R"({"reset":true})", {}, false});
  ASSERT_EQ(reset.status, 200);
  EXPECT_EQ(reset.body_json()["drop_next_download_after"], nullptr);
  EXPECT_EQ(reset.body_json()["polls_until_done"], 2);

  EXPECT_EQ(client_.perform({"DELETE", url("/_backend/requests"), "", {}, false}).status, 200);
  EXPECT_TRUE(backend_->requests().empty());
}

TEST_F(BackendTest, OversizedBodiesAreRejected) {
  LocalBackendOptions options;
  options.max_request_bytes = 1024;
  start_backend(options);
  const std::string big = image_request(std::string(4000, 'a')).dump();
  HttpResult r = post_raw("/v1beta/models/gemini-2.5-flash:generateContent", big,
                          {std::string("x-goog-api-key: ") + kKey});
  expect_error(r, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(r.body_json()["error"]["message"], "Request payload size exceeds the limit: 1024 bytes.");
  // The connection still serves the next request.
  EXPECT_EQ(get("/v1beta/models").status, 200);

  // Over 1 MB curl asks "Expect: 100-continue": the verdict comes before the body is sent.
  options.max_request_bytes = 1 << 20;
  start_backend(options);
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult expect = post_raw("/v1beta/models/gemini-2.5-flash:generateContent",
                               std::string(2 << 20, ' '), {std::string("x-goog-api-key: ") + kKey});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  expect_error(expect, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(expect.body_json()["error"]["message"],
            "Request payload size exceeds the limit: 1048576 bytes.");
  EXPECT_EQ(get("/v1beta/models").status, 200);
  ASSERT_FALSE(backend_->requests().empty());
  EXPECT_EQ(backend_->requests().front().status, 400);
}

TEST_F(BackendTest, LargeBodiesArrive) {
  // A start frame of several MB, as clients send them (curl adds Expect: 100-continue).
  json request = veo_request("x");
  request["instances"][0]["image"] = {{"bytesBase64Encoded", std::string(3 << 20, 'A')},
                                      {"mimeType", "image/png"}};
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult r = post("/v1beta/models/veo-3.0-generate-001:predictLongRunning", request);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "100-continue not answered";
  EXPECT_EQ(backend_->requests().back().body.size(), request.dump().size());
}

TEST(LocalBackendLifecycle, StartsAndStopsQuicklyAndRepeatedly) {
  LocalBackend backend;
  for (int i = 0; i < 20; ++i) {
    backend.start();
    ASSERT_GT(backend.port(), 0);
    Client client;
    HttpResult r = client.perform({"GET", backend.base_url() + "/v1beta/models", "", {}, false});
    ASSERT_EQ(r.status, 200) << "iteration " << i;
    const auto t0 = std::chrono::steady_clock::now();
    backend.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms) << "iteration " << i;
    EXPECT_EQ(backend.port(), 0);
  }
  backend.stop();  // idempotent
}

TEST(LocalBackendLifecycle, StopDoesNotWaitForPendingAnswers) {
  LocalBackend backend;
  backend.start();
  backend.set_latency(5s);
  const std::string base = backend.base_url();
  HttpResult result;
  std::thread client([&] {
    Client c;
    result = c.perform({"GET", base + "/v1beta/models", "", {}, false});
  });
  std::this_thread::sleep_for(200ms);
  const auto t0 = std::chrono::steady_clock::now();
  backend.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms);
  client.join();
  EXPECT_NE(result.code, CURLE_OK);
}

TEST(LocalBackendLifecycle, StartThrowsWhenThePortIsTaken) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len);

  LocalBackendOptions options;
  options.port = ntohs(addr.sin_port);
  LocalBackend backend(options);
  EXPECT_THROW(backend.start(), std::runtime_error);
  ::close(fd);
  // The same object binds once the port is free.
  EXPECT_NO_THROW(backend.start());
  EXPECT_EQ(backend.port(), options.port);
}

} // namespace
