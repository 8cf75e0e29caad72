// The kiosk page (engine/gateway/kiosk/) in a real browser: Debian's chromium, headless, driven
// through chromedriver's W3C WebDriver HTTP API, against an in-process gateway and local backend.
// Chromium's fake microphone plays synthesized speech, so the whole voice path runs for real:
// getUserMedia -> AudioWorklet -> WebCodecs Opus -> /api/v1/live-session -> Gemini Live wire
// protocol -> recognition and an answer -> Opus -> AudioDecoder -> Web Audio playback.
#include "gateway_test_util.h"

#include "speech.h"

#include <gemstream/loop.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <regex>

extern char **environ;

namespace gemstream::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char *kChromium = "/usr/bin/chromium";
constexpr const char *kChromedriver = "/usr/bin/chromedriver";
// The W3C name of an element reference in WebDriver answers.
constexpr const char *kElementKey = "element-6066-11e4-a52e-4f735466cecf";

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

// A 16-bit PCM mono WAV file, the format chromium's fake audio capture reads.
void write_wav(const fs::path &path, const std::vector<std::int16_t> &pcm, int rate) {
  auto le = [](std::string &out, std::uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
      out += char((v >> (8 * i)) & 0xff);
  };
  const auto data_bytes = std::uint32_t(pcm.size() * 2);
  std::string out = "RIFF";
  le(out, 36 + data_bytes, 4);
  out += "WAVEfmt ";
  le(out, 16, 4);
  le(out, 1, 2); // PCM
  le(out, 1, 2); // mono
  le(out, std::uint32_t(rate), 4);
  le(out, std::uint32_t(rate * 2), 4);
  le(out, 2, 2);
  le(out, 16, 2);
  out += "data";
  le(out, data_bytes, 4);
  for (const std::int16_t s : pcm)
    le(out, std::uint16_t(s), 2);
  write_file(path, out);
}

// chromedriver plus one chromium session. Every command throws std::runtime_error with
// chromedriver's message when it fails.
class Browser {
public:
  // Null with `error` set when chromium cannot be started.
  static std::unique_ptr<Browser> launch(const fs::path &dir, const fs::path &fake_microphone,
                                         std::string &error) {
    for (const char *program : {kChromium, kChromedriver})
      if (::access(program, X_OK) != 0) {
        error = std::string(program) +
                " is missing: run tools/setup.sh (it installs the chromium and chromium-driver "
                "packages the kiosk's browser test needs)";
        return nullptr;
      }
    auto browser = std::unique_ptr<Browser>(new Browser);
    browser->port_ = free_port();
    const std::string port_arg = "--port=" + std::to_string(browser->port_);
    const std::string log_arg = "--log-path=" + (dir / "chromedriver.log").string();
    const char *argv[] = {kChromedriver, port_arg.c_str(), log_arg.c_str(), "--silent", nullptr};
    if (::posix_spawn(&browser->driver_, kChromedriver, nullptr, nullptr, const_cast<char **>(argv),
                      environ) != 0) {
      error = std::string("cannot start ") + kChromedriver + ": " + std::strerror(errno);
      return nullptr;
    }
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {
      HttpCall probe;
      probe.url = browser->base() + "/status";
      const HttpResult status = http(probe);
      if (status.status == 200 && status.json_body()["value"].value("ready", false))
        break;
      int wstatus = 0;
      if (::waitpid(browser->driver_, &wstatus, WNOHANG) == browser->driver_) {
        browser->driver_ = -1;
        error = "chromedriver exited at start; see " + (dir / "chromedriver.log").string();
        return nullptr;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        error = "chromedriver did not become ready within 20 s";
        return nullptr;
      }
      std::this_thread::sleep_for(50ms);
    }

    const json args = {"--headless=new",
                       "--no-sandbox",
                       "--disable-dev-shm-usage",
                       "--disable-gpu",
                       "--no-first-run",
                       "--window-size=1280,800",
                       "--use-fake-ui-for-media-stream",
                       "--use-fake-device-for-media-stream",
                       "--use-file-for-fake-audio-capture=" + fake_microphone.string() + "%noloop",
                       "--autoplay-policy=no-user-gesture-required"};
    const json capabilities = {{"capabilities",
                                {{"alwaysMatch",
                                  {{"browserName", "chrome"},
                                   {"goog:chromeOptions", {{"binary", kChromium}, {"args", args}}},
                                   {"goog:loggingPrefs", {{"browser", "ALL"}}},
                                   {"timeouts", {{"script", 30000}, {"pageLoad", 30000}}}}}}}};
    try {
      const json session = browser->raw("POST", "/session", capabilities);
      browser->session_ = session.at("sessionId").get<std::string>();
    } catch (const std::exception &e) {
      error = std::string("chromium did not start: ") + e.what();
      return nullptr;
    }
    return browser;
  }

  ~Browser() {
    if (!session_.empty()) {
      try {
        raw("DELETE", "/session/" + session_, nullptr);
      } catch (const std::exception &) {
        // chromedriver's exit below ends the browser too.
      }
    }
    if (driver_ > 0) {
      ::kill(driver_, SIGTERM);
      int status = 0;
      ::waitpid(driver_, &status, 0);
    }
  }
  Browser(const Browser &) = delete;
  Browser &operator=(const Browser &) = delete;

  void navigate(const std::string &url) { command("POST", "/url", {{"url", url}}); }
  json execute(const std::string &script) { return execute_with(script, json::array()); }
  json execute_with(const std::string &script, const json &args) {
    return command("POST", "/execute/sync", {{"script", script}, {"args", args}});
  }
  std::string element(const std::string &css) {
    return command("POST", "/element", {{"using", "css selector"}, {"value", css}})
        .at(kElementKey)
        .get<std::string>();
  }
  void click(const std::string &css) {
    command("POST", "/element/" + element(css) + "/click", json::object());
  }
  void type(const std::string &css, const std::string &text) {
    command("POST", "/element/" + element(css) + "/value", {{"text", text}});
  }
  json kiosk() { return execute("return window.gemstreamKiosk || null;"); }
  // A Chrome DevTools Protocol command, through chromedriver's vendor endpoint.
  json cdp(const std::string &cmd, const json &params) {
    return command("POST", "/goog/cdp/execute", {{"cmd", cmd}, {"params", params}});
  }

  // Polls window.gemstreamKiosk until `done` holds or `timeout` passes; the last state seen.
  json wait_for(const std::function<bool(const json &)> &done, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json state;
    do {
      state = kiosk();
      if (state.is_object() && done(state))
        break;
      std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return state;
  }

  // The page's console output since the last call, for failure messages.
  std::string console() {
    std::string out;
    try {
      for (const auto &entry : command("POST", "/se/log", {{"type", "browser"}}))
        out += entry.value("level", "") + " " + entry.value("message", "") + "\n";
    } catch (const std::exception &e) {
      out = std::string("(no console log: ") + e.what() + ")";
    }
    return out;
  }

private:
  Browser() = default;

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }

  json command(const std::string &method, const std::string &path, const json &body) {
    return raw(method, "/session/" + session_ + path, body);
  }

  json raw(const std::string &method, const std::string &path, const json &body) {
    HttpCall call;
    call.method = method;
    call.url = base() + path;
    if (!body.is_null()) {
      call.body = body.dump();
      call.headers = {"Content-Type: application/json"};
    }
    const HttpResult r = http(call);
    const json answer = r.json_body();
    if (r.status != 200 || !answer.is_object() || !answer.contains("value"))
      throw std::runtime_error(method + " " + path + ": HTTP " + std::to_string(r.status) + ": " +
                               r.body.substr(0, 2000));
    const json &value = answer["value"];
    if (value.is_object() && value.contains("error"))
      throw std::runtime_error(method + " " + path + ": " + value.value("error", "") + ": " +
                               value.value("message", "").substr(0, 2000));
    return value;
  }

  std::uint16_t port_ = 0;
  pid_t driver_ = -1;
  std::string session_;
};

class KioskBrowser : public ::testing::Test {
protected:
  // One browser for the suite: starting chromium costs seconds. Each test has its own gateway,
  // on its own port, hence its own origin and its own sessionStorage.
  static void SetUpTestSuite() {
    suite_dir_ = new fs::path(fs::path(GEMSTREAM_BINARY_DIR) / "tests" / "gateway-work" /
                              ("kiosk-browser." + std::to_string(::getpid())));
    fs::remove_all(*suite_dir_);
    fs::create_directories(*suite_dir_);
    // "hello how are you", with a second of silence before (the capture starts with the click)
    // and two after (the backend's voice activity detection must see the end of the speech).
    const std::vector<std::int16_t> speech = backend::synthesize_speech("hello how are you");
    std::vector<std::int16_t> pcm(backend::kSpeechRate, 0);
    pcm.insert(pcm.end(), speech.begin(), speech.end());
    pcm.resize(pcm.size() + 2 * backend::kSpeechRate, 0);
    const fs::path wav = *suite_dir_ / "microphone.wav";
    write_wav(wav, pcm, backend::kSpeechRate);
    launch_error_ = new std::string;
    browser_ = Browser::launch(*suite_dir_, wav, *launch_error_).release();
  }
  static void TearDownTestSuite() {
    delete browser_;
    browser_ = nullptr;
    std::error_code ec;
    fs::remove_all(*suite_dir_, ec);
    delete suite_dir_;
    delete launch_error_;
  }

  void SetUp() override { ASSERT_NE(browser_, nullptr) << *launch_error_; }

  Browser &browser() { return *browser_; }

  static fs::path *suite_dir_;
  static std::string *launch_error_;
  static Browser *browser_;
  TempDir dir;
};

fs::path *KioskBrowser::suite_dir_ = nullptr;
std::string *KioskBrowser::launch_error_ = nullptr;
Browser *KioskBrowser::browser_ = nullptr;

bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string model_text(const json &state) {
  std::string text;
  for (const auto &line : state["transcript"])
    if (line["role"] == "model")
      text += line["text"].get<std::string>();
  return text;
}

std::string user_text(const json &state) {
  std::string text;
  for (const auto &line : state["transcript"])
    if (line["role"] == "user")
      text += line["text"].get<std::string>() + " ";
  return text;
}

// The page over plain HTTP: what the browser relies on, checked byte for byte.
TEST(KioskPage, IsEmbeddedAndServedWithAStrictPolicy) {
  TempDir dir;
  GatewayHarness h(dir.path());
  h.start();

  const HttpResult redirect = h.get("/kiosk", "");
  EXPECT_EQ(redirect.status, 308);
  EXPECT_EQ(redirect.header("location"), "/kiosk/");

  const fs::path sources = fs::path(GEMSTREAM_SOURCE_DIR) / "engine/gateway/kiosk";
  const std::map<std::string, std::string> types = {
      {"", "text/html; charset=utf-8"},
      {"index.html", "text/html; charset=utf-8"},
      {"kiosk.js", "text/javascript; charset=utf-8"},
      {"mic-worklet.js", "text/javascript; charset=utf-8"},
      {"kiosk.css", "text/css; charset=utf-8"}};
  for (const auto &[name, type] : types) {
    SCOPED_TRACE(name);
    // Public: no token, and one is not needed to read the page.
    const HttpResult page = h.get("/kiosk/" + name, "");
    ASSERT_EQ(page.status, 200) << page.body;
    EXPECT_EQ(page.header("content-type"), type);
    EXPECT_EQ(page.body, slurp(sources / (name.empty() ? "index.html" : name)))
        << "the served bytes are not the source file's: rebuild the gateway";
    EXPECT_EQ(page.header("cache-control"), "no-cache");
    EXPECT_EQ(page.header("x-content-type-options"), "nosniff");
    const std::string csp = page.header("content-security-policy");
    for (const char *directive :
         {"default-src 'self'", "script-src 'self'", "connect-src 'self' ws: wss:",
          "media-src 'self' blob:", "img-src 'self' data: blob:", "object-src 'none'"})
      EXPECT_TRUE(contains(csp, directive)) << directive << " missing from " << csp;
    EXPECT_FALSE(contains(csp, "unsafe-inline")) << csp;
    EXPECT_FALSE(contains(csp, "unsafe-eval")) << csp;

    const std::string etag = page.header("etag");
    ASSERT_FALSE(etag.empty());
    HttpCall again;
    again.url = h.url("/kiosk/" + name);
    again.headers = {"If-None-Match: " + etag};
    const HttpResult cached = http(again);
    EXPECT_EQ(cached.status, 304);
    EXPECT_TRUE(cached.body.empty());
  }
  EXPECT_NE(h.get("/kiosk/kiosk.js", "").header("etag"),
            h.get("/kiosk/kiosk.css", "").header("etag"));

  // No inline script anywhere: every <script> has a src and no body, no on* handler
  // attributes, no javascript: URLs, no inline style (the policy would block them all, and a
  // page that needs them is one XSS away from running anything).
  const std::string html = h.get("/kiosk/", "").body;
  const std::regex script(R"(<script\b([^>]*)>([\s\S]*?)</script>)", std::regex::icase);
  int scripts = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), script);
       it != std::sregex_iterator(); ++it, ++scripts) {
    EXPECT_TRUE(contains((*it)[1].str(), "src=")) << it->str();
    EXPECT_TRUE((*it)[2].str().empty()) << it->str();
  }
  EXPECT_EQ(scripts, 1);
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(\son[a-z]+\s*=)", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(\sstyle\s*=)", std::regex::icase)));
  EXPECT_FALSE(contains(html, "javascript:"));
  EXPECT_FALSE(std::regex_search(html, std::regex(R"((src|href)=["']?(https?:)?//)")))
      << "the page must not load anything from another origin";

  EXPECT_EQ(h.get("/kiosk/missing.js", "").status, 404);
  EXPECT_EQ(h.get("/kiosk/kiosk/index.html", "").status, 404);
}

TEST_F(KioskBrowser, AsksForATokenAndRejectsAWrongOne) {
  GatewayHarness h(dir.path());
  h.start();
  browser().navigate(h.url("/kiosk/"));
  json state = browser().wait_for([](const json &s) { return s["state"] == "token"; }, 10s);
  ASSERT_EQ(state["state"], "token") << state.dump() << browser().console();
  EXPECT_EQ(browser().execute("return document.body.dataset.state;"), "token");
  EXPECT_EQ(browser().execute("return document.getElementById('token-form').hidden;"), false);
  EXPECT_EQ(browser().execute("return document.getElementById('kiosk').hidden;"), true);

  browser().type("#token-input", "not-a-valid-token-000000");
  browser().click("#token-form button[type=submit]");
  state = browser().wait_for(
      [](const json &s) { return s["state"] == "token" && s["notifications"] == "closed"; }, 10s);
  const std::string refusal =
      browser().execute("return document.getElementById('token-error').textContent;");
  EXPECT_TRUE(contains(refusal, "did not accept")) << refusal;
  EXPECT_EQ(browser().execute("return sessionStorage.getItem('gemstream.token');"), nullptr)
      << "a refused token must be forgotten";

  browser().type("#token-input", kAliceToken);
  browser().click("#token-form button[type=submit]");
  state = browser().wait_for(
      [](const json &s) { return s["state"] == "idle" && s["notifications"] == "open"; }, 10s);
  EXPECT_EQ(state["state"], "idle") << state.dump();
  EXPECT_EQ(state["notifications"], "open") << state.dump() << browser().console();
  EXPECT_EQ(browser().execute("return document.getElementById('kiosk').hidden;"), false);
  EXPECT_EQ(state["errors"], json::array()) << state.dump();
}

TEST_F(KioskBrowser, BackgroundFollowsFinishedVideoJobs) {
  GatewayHarness h(dir.path(), {{"loop", {{"enabled", true}}}});
  // A stand-in for the videoloop pipeline: the loop is a link to the clip, as MP4.
  h.start([](const gateway::PostProcessRequest &req, const CancelToken &,
             const std::function<void(double)> &) {
    const fs::path loop = req.out_dir / "loop.mp4";
    fs::create_hard_link(req.clip, loop);
    return std::vector<gateway::PostProcessOutput>{{"loopMp4", loop}};
  });

  // /kiosk redirects to /kiosk/; the browser keeps the fragment, and the page takes the token
  // out of the address bar at once.
  browser().navigate(h.url("/kiosk#token=") + kAliceToken);
  json state = browser().wait_for([](const json &s) { return s["notifications"] == "open"; }, 10s);
  ASSERT_EQ(state["notifications"], "open") << state.dump() << browser().console();
  const std::string location = browser().execute("return location.href;");
  EXPECT_EQ(location, h.url("/kiosk/"));
  EXPECT_EQ(browser().execute("return sessionStorage.getItem('gemstream.token');"), kAliceToken);
  EXPECT_EQ(state["backgroundUrl"], "") << "alice has no videos yet";

  const HttpResult accepted =
      h.post_json("/api/v1/media/generate-video", R"({"description":"a calm lake at dawn"})");
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const json job = h.wait_job(accepted.json_body()["jobId"]);
  ASSERT_EQ(job["state"], "succeeded") << job.dump();
  const std::string loop_url = job["urls"]["loopMp4"];
  EXPECT_TRUE(loop_url.ends_with("/loop.mp4")) << loop_url;

  state = browser().wait_for([&](const json &s) { return s["backgroundUrl"] == loop_url; }, 20s);
  EXPECT_EQ(state["backgroundUrl"], loop_url) << state.dump() << browser().console();
  // Set once the new video could play: it is the visible one, and it runs.
  const json shown = browser().execute(
      "const v = document.querySelector('video.background.active');"
      "return v ? {src: v.currentSrc, ready: v.readyState, paused: v.paused, "
      "loop: v.loop, muted: v.muted, count: document.querySelectorAll('.background.active').length}"
      " : null;");
  ASSERT_TRUE(shown.is_object()) << "no active background video";
  EXPECT_EQ(shown["src"], h.url(loop_url));
  EXPECT_GE(shown["ready"].get<int>(), 2) << shown.dump();
  EXPECT_EQ(shown["paused"], false);
  EXPECT_EQ(shown["loop"], true);
  EXPECT_EQ(shown["muted"], true);
  EXPECT_EQ(shown["count"], 1);

  // A kiosk (re)started later shows the newest finished video at once, from the job list.
  browser().navigate(h.url("/kiosk/"));
  state = browser().wait_for([&](const json &s) { return s["backgroundUrl"] == loop_url; }, 20s);
  EXPECT_EQ(state["backgroundUrl"], loop_url) << state.dump() << browser().console();
  EXPECT_EQ(state["state"], "idle") << "the token came from this tab's sessionStorage";
  EXPECT_EQ(state["errors"], json::array()) << state.dump();
  // The token travelled in the fragment, headers and subprotocols: never in a logged URL.
  for (const auto &line : h.log())
    EXPECT_FALSE(contains(line, kAliceToken)) << "a token was logged: " << line;
}

// Watches a <video> in the page: its properties, errors, and how often playback wrapped from
// the end to the start (loop=true seeks back to 0 without an 'ended' event). No "error" key in
// what the scripts return: WebDriver answers use it for their own errors.
constexpr const char *kWatchVideo = R"js(
const v = arguments[0] ? document.querySelector(arguments[0]) : (() => {
  const m = document.createElement('video');
  m.id = 'loop-check'; m.muted = true; m.loop = true; m.autoplay = true; m.src = arguments[1];
  document.body.appendChild(m);
  return m;
})();
const watch = {wraps: 0, last: 0, error: null};
window.videoWatch = watch;
v.addEventListener('timeupdate', () => {
  if (v.currentTime + 0.5 < watch.last) watch.wraps++;
  watch.last = v.currentTime;
});
v.addEventListener('error', () => { watch.error = v.error.code + ' ' + v.error.message; });
// Four times faster, so that a 7 s loop wraps within two seconds.
const fast = () => { v.playbackRate = 4; };
fast();
v.addEventListener('playing', fast);
return true;
)js";

constexpr const char *kVideoState = R"js(
const v = arguments[0] ? document.querySelector(arguments[0]) : document.getElementById('loop-check');
const w = window.videoWatch;
return {src: v.currentSrc, ready: v.readyState, width: v.videoWidth, height: v.videoHeight,
        duration: v.duration, paused: v.paused, wraps: w.wraps,
        failure: w.error || (v.error ? v.error.code + ' ' + v.error.message : null)};
)js";

TEST_F(KioskBrowser, TheLoopOutputsPlayAndWrapAroundInTheBrowser) {
  // The real post-processing of `gemstream serve`: make_loop() on the downloaded Veo clip.
  GatewayHarness h(dir.path(), {{"loop", {{"enabled", true}}}});
  h.start([](const gateway::PostProcessRequest &req, const CancelToken &cancel,
             const std::function<void(double)> &) {
    LoopRequest loop;
    loop.input = req.clip;
    loop.out_dir = req.out_dir;
    const LoopResult result = make_loop(loop, cancel);
    std::vector<gateway::PostProcessOutput> outputs;
    for (const auto &[format, file] : result.files)
      outputs.push_back({format == LoopFormat::Mp4    ? "loopMp4"
                         : format == LoopFormat::Webm ? "loopWebm"
                                                      : "poster",
                         file});
    return outputs;
  });
  browser().navigate(h.url("/kiosk/#token=") + kAliceToken);
  json state = browser().wait_for([](const json &s) { return s["notifications"] == "open"; }, 10s);
  ASSERT_EQ(state["notifications"], "open") << state.dump() << browser().console();

  const HttpResult accepted =
      h.post_json("/api/v1/media/generate-video", R"({"description":"a calm lake at dawn"})");
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  const json job = h.wait_job(accepted.json_body()["jobId"]);
  ASSERT_EQ(job["state"], "succeeded") << job.dump();
  ASSERT_TRUE(job["urls"].contains("loopWebm") && job["urls"].contains("loopMp4")) << job.dump();
  const std::string webm = job["urls"]["loopWebm"], mp4 = job["urls"]["loopMp4"];

  // The kiosk prefers the WebM where the browser plays it, as chromium does.
  state = browser().wait_for([&](const json &s) { return s["backgroundUrl"] == webm; }, 20s);
  ASSERT_EQ(state["backgroundUrl"], webm) << state.dump() << browser().console();

  // Each output, as the background and in a <video loop> of its own: it decodes at the clip's
  // size, lasts the clip less the crossfade (8 s - 1 s), and playback wraps to the start.
  const auto check = [&](const std::string &selector, const std::string &url) {
    SCOPED_TRACE(url);
    ASSERT_EQ(browser().execute_with(kWatchVideo, {selector, h.url(url)}), true);
    json v;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    do {
      std::this_thread::sleep_for(100ms);
      v = browser().execute_with(kVideoState, {selector});
    } while ((v["wraps"].get<int>() < 1 && v["failure"].is_null()) &&
             std::chrono::steady_clock::now() < deadline);
    EXPECT_TRUE(v["failure"].is_null()) << v.dump() << browser().console();
    EXPECT_EQ(v["src"], h.url(url));
    EXPECT_EQ(v["width"], 1280) << v.dump();
    EXPECT_EQ(v["height"], 720) << v.dump();
    EXPECT_NEAR(v["duration"].get<double>(), 7.0, 0.05) << v.dump();
    EXPECT_GE(v["wraps"].get<int>(), 1) << "playback did not wrap: " << v.dump();
    EXPECT_EQ(v["paused"], false) << v.dump();
  };
  check("video.background.active", webm);
  check("", mp4);
  EXPECT_EQ(browser().kiosk()["errors"], json::array()) << browser().console();
}

TEST_F(KioskBrowser, TalksWithTheModel) {
  GatewayHarness h(dir.path());
  h.start();
  browser().navigate(h.url("/kiosk/#token=") + kAliceToken);
  json state = browser().wait_for([](const json &s) { return s["state"] == "idle"; }, 10s);
  ASSERT_EQ(state["state"], "idle") << state.dump() << browser().console();
  EXPECT_EQ(
      browser().execute("return document.getElementById('voice').getAttribute('aria-pressed');"),
      "false");

  // The fake microphone starts its file when the page opens it: with the click.
  browser().click("#voice");
  state = browser().wait_for(
      [](const json &s) {
        return !model_text(s).empty() && s["samplesPlayed"].get<double>() > 0 &&
               !s["speaking"].get<bool>();
      },
      60s);
  EXPECT_EQ(state["state"], "listening") << state.dump() << browser().console();
  EXPECT_EQ(
      browser().execute("return document.getElementById('voice').getAttribute('aria-pressed');"),
      "true");
  // Chromium has WebCodecs' Opus: the page must not have fallen back to PCM.
  EXPECT_EQ(state["input"], "opus");
  EXPECT_EQ(state["output"], "opus");
  EXPECT_GT(state["audioPacketsSent"].get<int>(), 50) << "at least a second of 20 ms packets";
  EXPECT_GT(state["audioPacketsReceived"].get<int>(), 0) << state.dump();
  const std::string user = user_text(state);
  EXPECT_TRUE(contains(user, "hello")) << "user said: " << user << "\n" << state.dump();
  EXPECT_TRUE(contains(user, "how are")) << "user said: " << user;
  EXPECT_FALSE(model_text(state).empty()) << state.dump();
  // Every packet decoded to 20 ms, and all of it played out.
  const double received_s = state["audioPacketsReceived"].get<int>() * 0.020;
  EXPECT_NEAR(state["secondsDecoded"].get<double>(), received_s, 1e-3) << state.dump();
  EXPECT_NEAR(state["secondsPlayed"].get<double>(), received_s, 1e-3) << state.dump();
  EXPECT_EQ(state["samplesPlayed"], state["samplesDecoded"]) << state.dump();
  ASSERT_FALSE(state["transcript"].empty());
  EXPECT_EQ(state["transcript"][0]["role"], "user") << "the user spoke first: " << state.dump();
  EXPECT_EQ(state["errors"], json::array()) << state.dump() << browser().console();
  for (const auto &line : h.log())
    EXPECT_FALSE(contains(line, kAliceToken)) << "a token was logged: " << line;

  // The webcam (chromium's fake camera): about one JPEG a second on the same socket, which the
  // gateway accepts without closing it.
  browser().click("#camera");
  state =
      browser().wait_for([](const json &s) { return s["videoFramesSent"].get<int>() >= 2; }, 10s);
  EXPECT_GE(state["videoFramesSent"].get<int>(), 2) << state.dump() << browser().console();
  EXPECT_EQ(
      browser().execute("return document.getElementById('camera').getAttribute('aria-pressed');"),
      "true");
  browser().click("#camera");

  // Off: the microphone stops, the conversation stays open for the next press.
  browser().click("#voice");
  state = browser().wait_for([](const json &s) { return s["state"] == "ready"; }, 10s);
  EXPECT_EQ(state["state"], "ready") << state.dump();
  EXPECT_EQ(
      browser().execute("return document.getElementById('voice').getAttribute('aria-pressed');"),
      "false");
  EXPECT_EQ(state["errors"], json::array()) << state.dump() << browser().console();
}

// A browser without WebCodecs audio: the page falls back to 16 kHz PCM up and 24 kHz PCM down.
TEST_F(KioskBrowser, FallsBackToPcmWithoutWebCodecs) {
  GatewayHarness h(dir.path());
  h.start();
  // Injected through the DevTools protocol, which the page's CSP does not govern.
  const json script =
      browser().cdp("Page.addScriptToEvaluateOnNewDocument",
                    {{"source", "delete window.AudioEncoder; delete window.AudioDecoder;"}});
  struct Cleanup {
    Browser &b;
    std::string id;
    ~Cleanup() { b.cdp("Page.removeScriptToEvaluateOnNewDocument", {{"identifier", id}}); }
  } cleanup{browser(), script.at("identifier").get<std::string>()};

  browser().navigate(h.url("/kiosk/#token=") + kAliceToken);
  json state = browser().wait_for([](const json &s) { return s["state"] == "idle"; }, 10s);
  ASSERT_EQ(state["state"], "idle") << state.dump() << browser().console();
  ASSERT_EQ(browser().execute("return typeof AudioEncoder;"), "undefined");
  browser().click("#voice");
  state = browser().wait_for(
      [](const json &s) {
        return !model_text(s).empty() && s["secondsPlayed"].get<double>() > 0 &&
               !s["speaking"].get<bool>();
      },
      60s);
  EXPECT_EQ(state["input"], "pcm");
  EXPECT_EQ(state["output"], "pcm");
  EXPECT_GT(state["audioPacketsSent"].get<int>(), 50) << state.dump();
  EXPECT_GT(state["audioPacketsReceived"].get<int>(), 0) << state.dump();
  const std::string user = user_text(state);
  EXPECT_TRUE(contains(user, "hello")) << "user said: " << user << "\n" << state.dump();
  EXPECT_FALSE(model_text(state).empty()) << state.dump();
  EXPECT_EQ(state["samplesPlayed"], state["samplesDecoded"]) << state.dump();
  EXPECT_NEAR(state["secondsPlayed"].get<double>(), state["samplesPlayed"].get<double>() / 24000,
              1e-3)
      << "PCM plays at 24 kHz: " << state.dump();
  EXPECT_EQ(state["errors"], json::array()) << state.dump() << browser().console();
}

} // namespace
} // namespace gemstream::testing
