// The gateway's HTTP and WebSocket API against a running server (in-process, ephemeral
// loopback port) backed by the local backend: authentication, input validation, media serving,
// uploads, the 202 video flow with its notification, ownership, costs and budgets.
#include "gateway_test_util.h"

#include "media.h"

#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/error.h>
#include <gemstream/media_probe.h>

#include <cstdlib>
#include <numeric>

using namespace gemstream;
using namespace gemstream::testing;

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string small_mp4(int seconds_long = 2) {
  backend::VideoSpec spec;
  spec.width = 320;
  spec.height = 180;
  spec.fps = 12;
  spec.seconds = seconds_long;
  spec.prompt = "calm teal waves";
  return backend::render_mp4(spec);
}

CostFilter of(const std::string &user) {
  CostFilter f;
  f.user = user;
  return f;
}

MultipartField video_field(const std::string &bytes, const std::string &name = "clip.mp4",
                           const std::string &type = "video/mp4") {
  return {"video", bytes, name, type};
}

HttpResult upload(GatewayHarness &h, std::vector<MultipartField> fields,
                  std::vector<std::string> headers = {}) {
  HttpCall c;
  c.method = "POST";
  c.url = h.url("/api/v1/media/analyze-video");
  c.headers = std::move(headers);
  c.headers.push_back(bearer(kAliceToken));
  c.multipart = std::move(fields);
  return http(c);
}

void expect_error(const HttpResult &r, long status, const std::string &reason) {
  EXPECT_EQ(r.status, status) << r.body;
  const json body = r.json_body();
  ASSERT_TRUE(body.is_object()) << r.body;
  EXPECT_EQ(body["error"]["code"], status) << r.body;
  EXPECT_EQ(body["error"].value("reason", ""), reason) << r.body;
  EXPECT_FALSE(body["error"].value("message", "").empty());
  EXPECT_EQ(r.header("content-type"), "application/json; charset=utf-8");
}

class GatewayApi : public ::testing::Test {
protected:
  TempDir dir;
};

TEST_F(GatewayApi, RejectsMissingAndUnknownTokens) {
  GatewayHarness h(dir.path());
  h.start();
  const HttpResult none = h.get("/api/v1/costs", "");
  expect_error(none, 401, "missing_token");
  EXPECT_EQ(none.header("www-authenticate"), "Bearer realm=\"gemstream\"");
  const HttpResult bad = h.get("/api/v1/costs", "alice-token-0123456780");
  expect_error(bad, 401, "invalid_token");
  EXPECT_NE(bad.header("www-authenticate").find("invalid_token"), std::string::npos);

  HttpCall basic;
  basic.url = h.url("/api/v1/costs");
  basic.headers = {"Authorization: Basic YWxpY2U6cGFzcw=="};
  expect_error(http(basic), 401, "invalid_token");

  // The token is only read from the Authorization header on REST routes.
  expect_error(h.get(std::string("/api/v1/costs?token=") + kAliceToken, ""), 401, "missing_token");
  // A hashed token in the configuration (bob) works like a plain one.
  EXPECT_EQ(h.get("/api/v1/costs", kBobToken).status, 200);
  EXPECT_EQ(h.get("/healthz", "").status, 200);

  // An oversized body is refused as unauthenticated before it is read.
  HttpCall big;
  big.method = "POST";
  big.url = h.url("/api/v1/media/analyze-video");
  big.multipart = {video_field(std::string(3'000'000, 'x'))};
  expect_error(http(big), 401, "missing_token");
}

TEST_F(GatewayApi, RoutesAnswer404And405WithJsonBodies) {
  GatewayHarness h(dir.path());
  h.start();
  expect_error(h.get("/api/v1/nothing"), 404, "not_found");
  const HttpResult wrong = h.get("/api/v1/media/generate-video");
  expect_error(wrong, 405, "method_not_allowed");
  EXPECT_EQ(wrong.header("allow"), "POST");
  expect_error(h.post_json("/api/v1/costs", "{}"), 405, "method_not_allowed");
}

TEST_F(GatewayApi, CorsLetsTheConfiguredOriginsCallFromABrowser) {
  GatewayHarness h(dir.path(), {{"cors", {{"allowed_origins", {"https://app.example.com"}}}}});
  h.start();
  HttpCall preflight;
  preflight.method = "OPTIONS";
  preflight.url = h.url("/api/v1/media/generate-video");
  preflight.headers = {"Origin: https://app.example.com", "Access-Control-Request-Method: POST",
                       "Access-Control-Request-Headers: authorization, content-type"};
  const HttpResult ok = http(preflight); // no token: browsers send none in a preflight
  EXPECT_EQ(ok.status, 204) << ok.body;
  EXPECT_EQ(ok.header("access-control-allow-origin"), "https://app.example.com");
  EXPECT_EQ(ok.header("access-control-allow-methods"), "POST");
  EXPECT_NE(ok.header("access-control-allow-headers").find("authorization"), std::string::npos);

  preflight.headers[0] = "Origin: https://evil.example.net";
  const HttpResult refused = http(preflight);
  expect_error(refused, 403, "origin_not_allowed");
  EXPECT_EQ(refused.header("access-control-allow-origin"), "");

  // The real request: the origin is echoed, with the headers a page needs to read the answer.
  HttpCall get;
  get.url = h.url("/api/v1/costs");
  get.headers = {bearer(kAliceToken), "Origin: https://app.example.com"};
  const HttpResult costs = http(get);
  EXPECT_EQ(costs.status, 200);
  EXPECT_EQ(costs.header("access-control-allow-origin"), "https://app.example.com");
  EXPECT_NE(costs.header("access-control-expose-headers").find("location"), std::string::npos);
  // Errors carry it too, or the page could not read why it failed.
  get.headers = {"Origin: https://app.example.com"};
  const HttpResult unauthorised = http(get);
  expect_error(unauthorised, 401, "missing_token");
  EXPECT_EQ(unauthorised.header("access-control-allow-origin"), "https://app.example.com");
  get.headers = {bearer(kAliceToken), "Origin: https://evil.example.net"};
  const HttpResult other = http(get);
  EXPECT_EQ(other.header("access-control-allow-origin"), "");
  EXPECT_EQ(other.header("vary"), "origin"); // a cache must not give it to the allowed origin
}

TEST_F(GatewayApi, NoCorsHeadersUnlessConfigured) {
  GatewayHarness h(dir.path());
  h.start();
  HttpCall get;
  get.url = h.url("/api/v1/costs");
  get.headers = {bearer(kAliceToken), "Origin: https://app.example.com"};
  const HttpResult r = http(get);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("access-control-allow-origin"), "");
  HttpCall preflight;
  preflight.method = "OPTIONS";
  preflight.url = h.url("/api/v1/costs");
  preflight.headers = {"Origin: https://app.example.com", "Access-Control-Request-Method: GET"};
  expect_error(http(preflight), 403, "origin_not_allowed");
}

TEST_F(GatewayApi, ValidatesCardIdsAndBodies) {
  GatewayHarness h(dir.path());
  h.start();
  const std::string good = R"({"motif":"meditation practice","style":"minimal"})";
  for (const std::string &id : {std::string("bad.id"), std::string("bad%20id"),
                                std::string(65, 'a'), std::string("caf%C3%A9"), std::string("..a")})
    expect_error(h.post_json("/api/v1/cards/" + id + "/generate-cover", good), 400,
                 "invalid_card_id");
  // Dot segments are resolved before routing (RFC 3986): what remains matches no route.
  for (const std::string &id :
       {std::string("%2e%2e"), std::string(".."), std::string("..%2F..%2Fcovers")}) {
    HttpCall c;
    c.method = "POST";
    c.url = h.url("/api/v1/cards/" + id + "/generate-cover");
    c.body = good;
    c.headers = {bearer(kAliceToken), "Content-Type: application/json"};
    c.path_as_is = true;
    const HttpResult r = http(c);
    EXPECT_TRUE(r.status == 400 || r.status == 404) << id << " -> " << r.status << " " << r.body;
  }
  const std::string path = "/api/v1/cards/card-1/generate-cover";
  expect_error(h.post_json(path, "{\"motif\":"), 400, "invalid_json");
  expect_error(h.post_json(path, "[1,2]"), 400, "invalid_json");
  expect_error(h.post_json(path, ""), 400, "invalid_argument");
  expect_error(h.post_json(path, R"({"style":"minimal"})"), 400, "missing_field");
  expect_error(h.post_json(path, R"({"motif":"x","user":"bob"})"), 400, "unknown_field");
  expect_error(h.post_json(path, R"({"motif":7})"), 400, "invalid_field");
  const HttpResult style = h.post_json(path, R"({"motif":"x","style":"baroque"})");
  expect_error(style, 400, "invalid_argument");
  EXPECT_NE(style.body.find("minimal"), std::string::npos) << "names the known styles";
  expect_error(h.post_json(path, R"({"motif":"x","model":"dall-e"})"), 400, "unknown_model");
  expect_error(h.post_json(path, R"({"motif":"x","model":"imagen_4","aspectRatio":"21:9"})"), 400,
               "invalid_aspect_ratio");

  const std::string video = "/api/v1/media/generate-video";
  expect_error(h.post_json(video, R"({"mood":"calm"})"), 400, "missing_field");
  expect_error(h.post_json(video, R"({"description":"sea","mood":"angry"})"), 400,
               "invalid_argument");
  expect_error(h.post_json(video, R"({"description":"sea","aspectRatio":"4:3"})"), 400,
               "invalid_aspect_ratio");
  expect_error(
      h.post_json(video, R"({"description":"sea","aspectRatio":"9:16","resolution":"1080p"})"), 400,
      "invalid_resolution");
  expect_error(h.post_json(video, "{\"description\":\"" + std::string(600, 'a') + "\"}"), 400,
               "invalid_argument");
  expect_error(h.get("/api/v1/costs?day=2024-13"), 400, "invalid_day");
  EXPECT_EQ(h.count_requests(":predictLongRunning") + h.count_requests(":predict") +
                h.count_requests(":generateContent"),
            0)
      << "nothing invalid reaches the API";
  EXPECT_TRUE(h.gw().jobs().list("alice", 10).empty());
}

TEST_F(GatewayApi, GeneratesACoverAndServesIt) {
  GatewayHarness h(dir.path());
  h.start();
  const HttpResult r = h.post_json("/api/v1/cards/card_7-a/generate-cover",
                                   R"({"motif":"meditation practice","style":"minimal",
                                       "palette":"teal and gold","model":"nano_banana"})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = r.json_body();
  EXPECT_EQ(body["cardId"], "card_7-a");
  EXPECT_EQ(body["url"], "/media/covers/alice/card_7-a.png");
  EXPECT_EQ(body["model"], "gemini-2.5-flash-image");
  EXPECT_EQ(body["mimeType"], "image/png");
  EXPECT_EQ(body["cost"]["usdNanos"], 1'000'000); // $0.001 per Nano Banana image
  const fs::path file = h.media() / "covers" / "alice" / "card_7-a.png";
  const std::string png = slurp(file);
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), "\x89PNG\r\n\x1a\n");
  EXPECT_EQ(body["sizeBytes"], png.size());
  for (const auto &entry : fs::directory_iterator(file.parent_path()))
    EXPECT_EQ(entry.path().filename(), "card_7-a.png") << "no temporary file left";

  // The prompt on the wire is the card-cover template's.
  bool seen = false;
  for (const auto &req : h.backend().requests())
    if (req.path.find(":generateContent") != std::string::npos) {
      seen = true;
      EXPECT_NE(req.body.find("meditation practice"), std::string::npos);
      EXPECT_NE(req.body.find("teal and gold"), std::string::npos);
    }
  EXPECT_TRUE(seen);

  const HttpResult served = h.get(body["url"].get<std::string>(), "");
  EXPECT_EQ(served.status, 200);
  EXPECT_EQ(served.header("content-type"), "image/png");
  EXPECT_EQ(served.body, png);

  CostLedger ledger(h.ledger_path());
  const auto entries = ledger.entries(of("alice"));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].kind, CostKind::Image);
  EXPECT_EQ(entries[0].usd_nanos, 1'000'000);
  EXPECT_NE(entries[0].note.find("card_7-a"), std::string::npos);

  // The default model for a requested cover is the configuration's card_cover_manual (Imagen 4).
  const HttpResult imagen = h.post_json("/api/v1/cards/card-8/generate-cover",
                                        R"({"motif":"a fox","aspectRatio":"16:9"})");
  ASSERT_EQ(imagen.status, 200) << imagen.body;
  EXPECT_EQ(imagen.json_body()["model"], "imagen-4.0-generate-001");
  EXPECT_EQ(imagen.json_body()["cost"]["usdNanos"], 40'000'000);

  // A safety-filtered prompt costs nothing and says why.
  expect_error(h.post_json("/api/v1/cards/card-9/generate-cover",
                           R"({"motif":"forbidden-content","model":"nano_banana"})"),
               422, "safety_filtered");
  EXPECT_FALSE(fs::exists(h.media() / "covers" / "alice" / "card-9.png"));
  EXPECT_EQ(ledger.entries(of("alice")).size(), 2u);
}

TEST_F(GatewayApi, ServesMediaSafely) {
  GatewayHarness h(dir.path());
  h.start();
  const fs::path dir_alice = h.media() / "videos" / "alice" / "job_1";
  fs::create_directories(dir_alice);
  std::string bytes(10000, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = char(i * 7);
  write_file(dir_alice / "clip.mp4", bytes);
  write_file(dir_alice / "clip.mp4.part", "partial");
  write_file(h.media() / ".uploads-secret", "secret");

  const HttpResult whole = h.get("/media/videos/alice/job_1/clip.mp4", "");
  ASSERT_EQ(whole.status, 200);
  EXPECT_EQ(whole.body, bytes);
  EXPECT_EQ(whole.header("content-type"), "video/mp4");
  EXPECT_EQ(whole.header("accept-ranges"), "bytes");

  HttpCall range;
  range.url = h.url("/media/videos/alice/job_1/clip.mp4");
  range.headers = {"Range: bytes=100-199"};
  HttpResult part = http(range);
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, bytes.substr(100, 100));
  EXPECT_EQ(part.header("content-range"), "bytes 100-199/10000");
  range.headers = {"Range: bytes=-10"};
  part = http(range);
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, bytes.substr(9990));
  range.headers = {"Range: bytes=9990-"};
  EXPECT_EQ(http(range).body, bytes.substr(9990));
  range.headers = {"Range: bytes=20000-"};
  part = http(range);
  EXPECT_EQ(part.status, 416);
  EXPECT_EQ(part.header("content-range"), "bytes */10000");

  HttpCall cached;
  cached.url = range.url;
  cached.headers = {"If-None-Match: " + whole.header("etag")};
  EXPECT_EQ(http(cached).status, 304);

  write_file(dir.path() / "secret.txt", "do not serve");
  for (const std::string path :
       {"/media/../secret.txt", "/media/%2e%2e/secret.txt",
        "/media/videos/..%2f..%2f..%2fsecret.txt",
        "/media/videos/alice/job_1/..%2F..%2F..%2F..%2Fsecret.txt", "/media/.uploads-secret",
        "/media/videos/alice/job_1/clip.mp4.part", "/media/videos/alice/job_1/.", "/media/a//b",
        "/media/%00"}) {
    HttpCall c;
    c.url = h.url(path);
    c.path_as_is = true;
    const HttpResult r = http(c);
    EXPECT_TRUE(r.status == 400 || r.status == 404) << path << " -> " << r.status;
    EXPECT_EQ(r.body.find("do not serve"), std::string::npos) << path;
    EXPECT_EQ(r.body.find("secret\n"), std::string::npos) << path;
    EXPECT_EQ(r.body.find("partial"), std::string::npos) << path;
  }
  // Names the media route refuses outright, before looking at the disk.
  for (const std::string path : {"/media/videos/alice/job_1/clip.mp4.part",
                                 "/media/.uploads-secret", "/media/videos/a%20b/x"}) {
    HttpCall c;
    c.url = h.url(path);
    expect_error(http(c), 400, "invalid_path");
  }
  EXPECT_EQ(h.get("/media/videos/alice/job_1/missing.mp4", "").status, 404);
  EXPECT_EQ(h.get("/media/videos", "").status, 404) << "a directory is not a file";
}

TEST_F(GatewayApi, PrivateMediaNeedsTheOwnersToken) {
  GatewayHarness h(dir.path(), {{"media", {{"public", false}}}});
  h.start();
  fs::create_directories(h.media() / "covers" / "alice");
  write_file(h.media() / "covers" / "alice" / "c1.png", "png bytes");
  expect_error(h.get("/media/covers/alice/c1.png", ""), 401, "missing_token");
  expect_error(h.get("/media/covers/alice/c1.png", "nobody-token-000000000"), 401, "invalid_token");
  expect_error(h.get("/media/covers/alice/c1.png", kBobToken), 404, "not_found");
  EXPECT_EQ(h.get("/media/covers/alice/c1.png", kAliceToken).body, "png bytes");
  // <video src> cannot send headers: the token may travel in the query instead.
  EXPECT_EQ(h.get(std::string("/media/covers/alice/c1.png?token=") + kAliceToken, "").body,
            "png bytes");
}

TEST_F(GatewayApi, AnalyzesAnUploadedVideo) {
  GatewayHarness h(dir.path());
  h.start();
  const std::string mp4 = small_mp4();
  const HttpResult r =
      upload(h, {video_field(mp4), {"question", "what happens in this video?", "", ""}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = r.json_body();
  EXPECT_FALSE(body.value("text", "").empty());
  EXPECT_EQ(body["method"], "inline");
  EXPECT_EQ(body["video"]["fileName"], "clip.mp4");
  EXPECT_EQ(body["video"]["width"], 320);
  EXPECT_EQ(body["video"]["mimeType"], "video/mp4");
  EXPECT_NEAR(body["video"]["durationSeconds"].get<double>(), 2.0, 0.2);
  EXPECT_GT(body["cost"]["usdNanos"].get<std::int64_t>(), 0);

  // The video travelled inline, byte for byte, with the question.
  bool seen = false;
  for (const auto &req : h.backend().requests())
    if (req.path.find(":generateContent") != std::string::npos) {
      seen = true;
      EXPECT_NE(req.body.find("what happens in this video?"), std::string::npos);
      EXPECT_NE(req.body.find("video/mp4"), std::string::npos);
      EXPECT_GT(req.body.size(), mp4.size());
    }
  EXPECT_TRUE(seen);
  CostLedger ledger(h.ledger_path());
  const auto entries = ledger.entries(of("alice"));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].kind, CostKind::Analysis);
  EXPECT_EQ(entries[0].usd_nanos, body["cost"]["usdNanos"].get<std::int64_t>());
  EXPECT_TRUE(fs::is_empty(h.media() / ".uploads")) << "uploads are removed after use";

  // A client that waits for "100 Continue" before sending the body (curl does above 1 MB).
  const HttpResult again =
      upload(h, {video_field(mp4), {"question", "what happens in this video?", "", ""}},
             {"Expect: 100-continue"});
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json_body()["text"], body["text"]);
}

TEST_F(GatewayApi, RefusesBadUploads) {
  GatewayHarness h(dir.path(), {{"media", {{"max_upload_bytes", 300000}}}});
  h.start();
  const MultipartField question{"question", "what is this?", "", ""};

  // Over the limit, announced by Content-Length: refused before the body is stored. Once with
  // curl's "Expect: 100-continue" (answered before the body is sent), once without.
  const std::string big(1'500'000, 'v');
  expect_error(upload(h, {video_field(big), question}), 413, "too_large");
  expect_error(upload(h, {video_field(big), question}, {"Expect:"}), 413, "too_large");
  // Within the request limit (which allows for the form's overhead) but over the file limit.
  expect_error(upload(h, {video_field(std::string(400'000, 'v')), question}, {"Expect:"}), 413,
               "too_large");

  expect_error(
      upload(h, {video_field("just some text, not a video at all\n", "notes.mp4"), question}), 415,
      "not_a_video");
  const std::string png = backend::render_png({64, 64, "a red square"});
  const HttpResult image = upload(h, {video_field(png, "cover.mp4", "video/mp4"), question});
  expect_error(image, 415, "unsupported_type");
  const std::string mp4 = small_mp4();
  const HttpResult truncated =
      upload(h, {video_field(mp4.substr(0, mp4.size() / 2), "cut.mp4"), question});
  expect_error(truncated, 400, "invalid_video");
  EXPECT_NE(truncated.body.find("cut.mp4"), std::string::npos) << "names the client's file";
  EXPECT_EQ(truncated.body.find(".uploads"), std::string::npos) << "never the server's path";

  expect_error(upload(h, {video_field(mp4)}), 400, "missing_field");
  expect_error(upload(h, {question}), 400, "missing_field");
  expect_error(upload(h, {video_field(mp4), question, {"user", "bob", "", ""}}), 400,
               "unknown_field");
  expect_error(h.post_json("/api/v1/media/analyze-video", "{}"), 415, "expected_multipart");

  EXPECT_EQ(h.count_requests(":generateContent"), 0) << "nothing bad reaches the API";
  EXPECT_TRUE(fs::is_empty(h.media() / ".uploads"));
}

TEST_F(GatewayApi, WebSocketAuthentication) {
  GatewayHarness h(dir.path());
  h.start();
  {
    WsClient ws;
    EXPECT_EQ(ws.connect(h.port(), "/api/v1/notifications"), 401) << ws.response_head;
    EXPECT_EQ(json::parse(ws.refusal_body, nullptr, false)["error"]["reason"], "missing_token");
  }
  {
    WsClient ws;
    EXPECT_EQ(ws.connect(h.port(), "/api/v1/notifications", {bearer("wrong-token-0000000000")}),
              401);
  }
  {
    WsClient ws;
    EXPECT_EQ(ws.connect(h.port(), "/api/v1/nowhere", {bearer(kAliceToken)}), 404);
  }
  {
    WsClient ws;
    ASSERT_EQ(ws.connect(h.port(), "/api/v1/notifications", {bearer(kAliceToken)}), 101);
    const auto ready = ws.next(seconds(5));
    ASSERT_TRUE(ready);
    EXPECT_EQ(json::parse(*ready), (json{{"type", "ready"}, {"user", "alice"}}));
    ws.send_text(R"({"type":"ping"})");
    EXPECT_EQ(ws.next(seconds(5)), R"({"type":"pong"})");
  }
  {
    // Browsers: the token as a subprotocol; the server picks "gemstream.v1", never echoing it.
    WsClient ws;
    ASSERT_EQ(
        ws.connect(h.port(), "/api/v1/notifications",
                   {std::string("Sec-WebSocket-Protocol: gemstream.v1, bearer.") + kBobToken}),
        101)
        << ws.response_head;
    EXPECT_NE(ws.response_head.find("gemstream.v1"), std::string::npos) << ws.response_head;
    EXPECT_EQ(ws.response_head.find(kBobToken), std::string::npos);
    EXPECT_EQ(json::parse(*ws.next(seconds(5)))["user"], "bob");
  }
  {
    WsClient ws;
    ASSERT_EQ(ws.connect(h.port(), std::string("/api/v1/notifications?token=") + kAliceToken), 101);
    EXPECT_EQ(json::parse(*ws.next(seconds(5)))["user"], "alice");
  }
  for (const auto &line : h.log())
    EXPECT_EQ(line.find("token-0123"), std::string::npos) << "a token was logged: " << line;
}

TEST_F(GatewayApi, VideoJobRunsToCompletionAndNotifiesItsOwner) {
  GatewayHarness h(dir.path());
  h.start();
  WsClient alice, bob;
  ASSERT_EQ(alice.connect(h.port(), "/api/v1/notifications", {bearer(kAliceToken)}), 101);
  ASSERT_EQ(bob.connect(h.port(), "/api/v1/notifications", {bearer(kBobToken)}), 101);
  ASSERT_TRUE(alice.next(seconds(5))); // ready
  ASSERT_TRUE(bob.next(seconds(5)));

  const HttpResult accepted = h.post_json(
      "/api/v1/media/generate-video", R"({"description":"peaceful beach sunset","mood":"calm"})");
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const json job = accepted.json_body();
  const std::string id = job["jobId"];
  EXPECT_EQ(accepted.header("location"), "/api/v1/media/jobs/" + id);
  EXPECT_EQ(job["request"]["model"], "veo_3_fast");
  EXPECT_EQ(job["estimatedCost"]["usdNanos"], 4'000'000'000); // 8 s of Veo 3 Fast

  const auto event = alice.next_event(seconds(60));
  ASSERT_TRUE(event) << "no notification";
  EXPECT_EQ((*event)["type"], "video_generation_complete") << event->dump();
  EXPECT_EQ((*event)["jobId"], id);
  const std::string clip_url = (*event)["urls"]["clip"];
  EXPECT_EQ(clip_url, "/media/videos/alice/" + id + "/clip.mp4");
  EXPECT_EQ((*event)["videoUrl"], clip_url);
  EXPECT_EQ((*event)["cost"]["usdNanos"], 4'000'000'000);
  EXPECT_FALSE(bob.next_event(milliseconds(300))) << "bob hears nothing of alice's job";

  const json done = h.get("/api/v1/media/jobs/" + id).json_body();
  EXPECT_EQ(done["state"], "succeeded");
  EXPECT_EQ(done["progress"], 1.0);
  EXPECT_EQ(done["urls"]["clip"], clip_url);
  EXPECT_EQ(done["cost"]["usdNanos"], 4'000'000'000);
  EXPECT_EQ(done["attempts"], 1);

  const fs::path clip = h.media() / "videos" / "alice" / id / "clip.mp4";
  const MediaInfo info = probe_media(clip);
  ASSERT_NE(info.video(), nullptr);
  EXPECT_EQ(info.video()->width, 1280);
  EXPECT_NEAR(info.duration_s, 8.0, 0.2);
  const HttpResult served = h.get(clip_url, "");
  EXPECT_EQ(served.status, 200);
  EXPECT_EQ(served.header("content-type"), "video/mp4");
  EXPECT_EQ(served.body, slurp(clip));

  // The owner only: another user's job does not exist for them.
  expect_error(h.get("/api/v1/media/jobs/" + id, kBobToken), 404, "not_found");
  expect_error(h.get("/api/v1/media/jobs/job_does_not_exist"), 404, "not_found");
  EXPECT_TRUE(h.get("/api/v1/media/jobs", kBobToken).json_body()["jobs"].empty());
  const json mine = h.get("/api/v1/media/jobs").json_body();
  ASSERT_EQ(mine["jobs"].size(), 1u);
  EXPECT_EQ(mine["jobs"][0]["jobId"], id);

  // The prompt was built from the background-video template; one operation was started.
  EXPECT_EQ(h.count_requests(":predictLongRunning"), 1);
}

TEST_F(GatewayApi, FailedJobNotifiesWithTheReason) {
  GatewayHarness h(dir.path());
  h.start();
  WsClient alice;
  ASSERT_EQ(alice.connect(h.port(), "/api/v1/notifications", {bearer(kAliceToken)}), 101);
  ASSERT_TRUE(alice.next(seconds(5)));
  const HttpResult accepted =
      h.post_json("/api/v1/media/generate-video", R"({"description":"forbidden-content scene"})");
  ASSERT_EQ(accepted.status, 202);
  const std::string id = accepted.json_body()["jobId"];
  const auto event = alice.next_event(seconds(30));
  ASSERT_TRUE(event);
  EXPECT_EQ((*event)["type"], "video_generation_failed");
  EXPECT_EQ((*event)["jobId"], id);
  EXPECT_NE((*event)["reason"].get<std::string>().find("usage guidelines"), std::string::npos)
      << event->dump();
  const json job = h.get("/api/v1/media/jobs/" + id).json_body();
  EXPECT_EQ(job["state"], "failed");
  EXPECT_EQ(job["error"], (*event)["reason"]);
  CostLedger ledger(h.ledger_path());
  EXPECT_TRUE(ledger.entries(of("alice")).empty()) << "a filtered video is not billed";
}

TEST_F(GatewayApi, CostsAreTheLedgersTotalsForTheCaller) {
  GatewayHarness h(dir.path());
  h.start();
  ASSERT_EQ(
      h.post_json("/api/v1/cards/a/generate-cover", R"({"motif":"owl","model":"nano_banana"})")
          .status,
      200);
  ASSERT_EQ(
      h.post_json("/api/v1/cards/b/generate-cover", R"({"motif":"fox","model":"nano_banana"})")
          .status,
      200);
  ASSERT_EQ(h.post_json("/api/v1/cards/c/generate-cover", R"({"motif":"elk"})", kBobToken).status,
            200);
  const HttpResult video = h.post_json("/api/v1/media/generate-video",
                                       R"({"description":"peaceful beach sunset","mood":"calm"})");
  ASSERT_EQ(video.status, 202);
  ASSERT_EQ(h.wait_job(video.json_body()["jobId"])["state"], "succeeded");

  const json costs = h.get("/api/v1/costs").json_body();
  EXPECT_EQ(costs["user"], "alice");
  CostLedger ledger(h.ledger_path());
  const auto entries = ledger.entries(of("alice"));
  ASSERT_EQ(entries.size(), 3u);
  const std::int64_t sum =
      std::accumulate(entries.begin(), entries.end(), std::int64_t(0),
                      [](std::int64_t s, const CostEntry &e) { return s + e.usd_nanos; });
  EXPECT_EQ(costs["total"]["usdNanos"], sum);
  EXPECT_EQ(sum, 2 * 1'000'000 + 4'000'000'000LL);
  std::int64_t rows = 0, calls = 0;
  for (const auto &t : costs["totals"]) {
    rows += t["usdNanos"].get<std::int64_t>();
    calls += t["calls"].get<std::int64_t>();
    EXPECT_TRUE(t["kind"] == "image" || t["kind"] == "video") << t.dump();
  }
  EXPECT_EQ(rows, sum);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(costs["today"]["spent"]["usdNanos"], sum);
  EXPECT_TRUE(costs["today"]["dailyBudget"].is_null());

  const json today = h.get("/api/v1/costs?day=today").json_body();
  EXPECT_EQ(today["total"]["usdNanos"], sum);
  EXPECT_EQ(h.get("/api/v1/costs?day=2001-01-01").json_body()["total"]["usdNanos"], 0);
  EXPECT_EQ(h.get("/api/v1/costs", kBobToken).json_body()["total"]["usdNanos"], 40'000'000);
}

TEST_F(GatewayApi, BudgetsAreCheckedBeforeAnyRequest) {
  GatewayHarness h(dir.path(), {{"budget", {{"daily_usd", 5}, {"users", {{"bob", 0.01}}}}}});
  h.start();
  const HttpResult refused =
      h.post_json("/api/v1/media/generate-video", R"({"description":"sea"})", kBobToken);
  expect_error(refused, 429, "budget_exceeded");
  EXPECT_GT(std::stoll(refused.header("retry-after")), 0);
  EXPECT_NE(refused.body.find("$0.01 daily budget"), std::string::npos) << refused.body;
  expect_error(h.post_json("/api/v1/cards/c/generate-cover", R"({"motif":"elk"})", kBobToken), 429,
               "budget_exceeded");

  // alice: $5 a day. One $4 video is admitted; its estimate is reserved, so a second is not.
  const HttpResult first = h.post_json("/api/v1/media/generate-video", R"({"description":"sea"})");
  ASSERT_EQ(first.status, 202) << first.body;
  const HttpResult second = h.post_json("/api/v1/media/generate-video", R"({"description":"sky"})");
  expect_error(second, 429, "budget_exceeded");
  EXPECT_NE(second.body.find("unfinished jobs"), std::string::npos) << second.body;
  EXPECT_EQ(h.wait_job(first.json_body()["jobId"])["state"], "succeeded");
  expect_error(h.post_json("/api/v1/media/generate-video", R"({"description":"sky"})"), 429,
               "budget_exceeded");
  const json costs = h.get("/api/v1/costs").json_body();
  EXPECT_EQ(costs["today"]["dailyBudget"]["usdNanos"], 5'000'000'000);
  EXPECT_EQ(costs["today"]["remaining"]["usdNanos"], 1'000'000'000);
  EXPECT_EQ(h.count_requests(":predictLongRunning"), 1);
}

TEST_F(GatewayApi, PostProcessingOutputsBecomeJobUrls) {
  GatewayHarness h(dir.path(), {{"loop", {{"enabled", true}, {"formats", {"poster"}}}}});
  std::vector<std::string> seen_formats;
  h.start([&](const gateway::PostProcessRequest &req, const CancelToken &,
              const std::function<void(double)> &progress) {
    EXPECT_TRUE(fs::exists(req.clip));
    EXPECT_EQ(req.out_dir, req.clip.parent_path());
    seen_formats = req.settings.formats;
    progress(0.5);
    write_file(req.out_dir / "poster.jpg", "\xff\xd8\xff jpeg");
    return std::vector<gateway::PostProcessOutput>{{"poster", req.out_dir / "poster.jpg"}};
  });
  const HttpResult accepted = h.post_json(
      "/api/v1/media/generate-video", R"({"description":"peaceful beach sunset","mood":"calm"})");
  ASSERT_EQ(accepted.status, 202);
  const std::string id = accepted.json_body()["jobId"];
  const json done = h.wait_job(id);
  ASSERT_EQ(done["state"], "succeeded") << done.dump();
  EXPECT_EQ(seen_formats, std::vector<std::string>{"poster"});
  EXPECT_EQ(done["posterUrl"], "/media/videos/alice/" + id + "/poster.jpg");
  EXPECT_EQ(h.get(done["posterUrl"].get<std::string>(), "").body, "\xff\xd8\xff jpeg");
  EXPECT_EQ(h.get(done["posterUrl"].get<std::string>(), "").header("content-type"), "image/jpeg");
}

TEST_F(GatewayApi, QueueStartsAtMostTheConfiguredJobsPerMinute) {
  GatewayHarness h(dir.path(), {{"queue", {{"jobs_per_minute", 1}}}});
  h.start();
  const std::string a =
      h.post_json("/api/v1/media/generate-video", R"({"description":"sea"})").json_body()["jobId"];
  const std::string b =
      h.post_json("/api/v1/media/generate-video", R"({"description":"sky"})").json_body()["jobId"];
  EXPECT_EQ(h.wait_job(a)["state"], "succeeded");
  std::this_thread::sleep_for(milliseconds(500));
  const json second = h.get("/api/v1/media/jobs/" + b).json_body();
  EXPECT_EQ(second["state"], "queued") << "the second start waits for the next minute";
  EXPECT_EQ(h.count_requests(":predictLongRunning"), 1);
}

// Stopping the gateway while a job polls its Veo operation, then starting a new one on the same
// database: the job completes, and the backend saw exactly one predictLongRunning.
TEST_F(GatewayApi, RestartMidJobResumesTheSameOperation) {
  GatewayHarness h(dir.path(), {}, /*polls_until_done=*/1000000);
  h.start();
  const HttpResult accepted = h.post_json(
      "/api/v1/media/generate-video", R"({"description":"peaceful beach sunset","mood":"calm"})");
  ASSERT_EQ(accepted.status, 202);
  const std::string id = accepted.json_body()["jobId"];
  std::string operation;
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  while (std::chrono::steady_clock::now() < deadline && h.count_requests("/operations/") < 3) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  const auto running = h.gw().jobs().get(id);
  ASSERT_TRUE(running);
  ASSERT_EQ(running->state, gateway::JobState::Running);
  ASSERT_FALSE(running->operation.empty()) << "the job is polling";
  operation = running->operation;
  EXPECT_EQ(h.get("/api/v1/media/jobs/" + id).json_body()["phase"], "generating");

  h.stop();
  const auto released = gateway::open_sqlite_job_store(dir.path() / "jobs.sqlite")->get(id);
  EXPECT_EQ(released->state, gateway::JobState::Running);
  EXPECT_EQ(released->operation, operation);
  EXPECT_TRUE(released->lease_owner.empty()) << "handed back on shutdown";
  const int polls_before =
      h.count_requests("/operations/" + operation.substr(operation.rfind('/') + 1));

  h.backend().set_polls_until_done(1);
  h.start();
  const json done = h.wait_job(id);
  ASSERT_EQ(done["state"], "succeeded") << done.dump();
  EXPECT_EQ(h.count_requests(":predictLongRunning"), 1) << "no second paid start";
  EXPECT_GT(h.count_requests("/operations/" + operation.substr(operation.rfind('/') + 1)),
            polls_before)
      << "the new gateway polled the same operation";
  EXPECT_TRUE(fs::exists(h.media() / "videos" / "alice" / id / "clip.mp4"));
  CostLedger ledger(h.ledger_path());
  ASSERT_EQ(ledger.entries(of("alice")).size(), 1u);
  EXPECT_EQ(ledger.entries(of("alice"))[0].request_id, operation);
}

// Jobs left in the store by gateways that are gone: a queued one runs, and one whose gateway
// died more than max_attempts times is failed with the reason instead of being retried forever.
TEST_F(GatewayApi, JobsLeftInTheStoreRunOrGiveUp) {
  GatewayHarness h(dir.path(), {{"queue", {{"max_attempts", 2}}}});
  const std::string spec = R"({"description":"peaceful beach sunset","mood":"calm",)"
                           R"("model":"veo_3_fast","aspectRatio":"16:9","resolution":"720p"})";
  {
    auto store = gateway::open_sqlite_job_store(dir.path() / "jobs.sqlite");
    gateway::JobRecord queued;
    queued.id = "job_queued";
    queued.owner = "alice";
    queued.spec_json = spec;
    queued.estimate_nanos = 4'000'000'000;
    store->create(queued);
    gateway::JobRecord crashing = queued;
    crashing.id = "job_crashing";
    crashing.created = std::chrono::system_clock::now() - seconds(60); // claimed first
    store->create(crashing);
    // Two gateways died while running it: their leases ran out long ago.
    for (int i = 0; i < 2; ++i) {
      gateway::ClaimLimits dead;
      dead.worker = "dead-" + std::to_string(i);
      dead.lease = milliseconds(1);
      const auto claimed = store->claim(dead, std::chrono::system_clock::now() - seconds(30 - i));
      ASSERT_TRUE(claimed);
      ASSERT_EQ(claimed->id, "job_crashing");
    }
  }
  h.start();
  const json gave_up = h.wait_job("job_crashing");
  EXPECT_EQ(gave_up["state"], "failed");
  EXPECT_EQ(gave_up["attempts"], 3);
  EXPECT_NE(gave_up["error"].get<std::string>().find("gave up after 2 attempts"), std::string::npos)
      << gave_up.dump();
  EXPECT_EQ(h.wait_job("job_queued")["state"], "succeeded");
  EXPECT_EQ(h.count_requests(":predictLongRunning"), 1) << "only the queued job started";
}

TEST_F(GatewayApi, ServesHttpsWithTheConfiguredCertificate) {
  const fs::path cert = dir.path() / "cert.pem", key = dir.path() / "key.pem";
  const std::string command =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      "-keyout " +
      key.string() + " -out " + cert.string() + " 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << "openssl (tools/setup.sh installs it) failed";
  GatewayHarness h(dir.path(),
                   {{"tls", {{"certificate", "cert.pem"}, {"private_key", "key.pem"}}}});
  h.start();
  ASSERT_EQ(h.gw().base_url().rfind("https://127.0.0.1:", 0), 0u);
  EXPECT_EQ(h.get("/healthz", "").status, 200);
  expect_error(h.get("/api/v1/costs", ""), 401, "missing_token");
  EXPECT_EQ(h.get("/api/v1/costs").json_body()["user"], "alice");
  HttpCall plain;
  plain.url = "http://127.0.0.1:" + std::to_string(h.port()) + "/healthz";
  EXPECT_NE(http(plain).status, 200) << "no plain HTTP on a TLS port";
}

TEST_F(GatewayApi, UnusableTlsFilesAreAConfigError) {
  write_file(dir.path() / "cert.pem", "not a certificate");
  write_file(dir.path() / "key.pem", "not a key");
  GatewayHarness h(dir.path(),
                   {{"tls", {{"certificate", "cert.pem"}, {"private_key", "key.pem"}}}});
  try {
    h.start();
    FAIL() << "started with garbage TLS files";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config) << e.what();
    EXPECT_NE(std::string(e.what()).find("cert.pem"), std::string::npos) << e.what();
  }
}

} // namespace
