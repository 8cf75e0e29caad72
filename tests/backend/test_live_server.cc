// The local backend's Live API (BidiGenerateContent over WebSocket), checked on the wire with a
// raw WebSocket client written here (no engine code): handshake and auth, frame types and
// fragmentation, close codes, spoken and typed turns with real recognition and synthesis,
// real-time pacing, barge-in, tool calls, grounding, resumption, goAway and scripted faults.
#include "common/base64.h" // independent of the backend's own codec
#include "gemstream/local_backend.h"

#include "speech.h"        // flite, to speak the test utterances
#include "understanding.h" // the REST side's grounded answers

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <numbers>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using gemstream::LocalBackend;
using gemstream::LocalBackendOptions;
using gemstream::backend::Pcm;
using gemstream::testing::b64decode;
using gemstream::testing::b64encode;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char *kKey = "live-test-key-81c2";
constexpr const char *kPath =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
constexpr const char *kAudioModel = "models/gemini-2.5-flash-native-audio-preview-09-2025";
constexpr const char *kTextModel = "models/gemini-live-2.5-flash-preview";
constexpr int kInRate = 16000;
constexpr int kOutRate = 24000;

std::string pcm_bytes(const Pcm &pcm, std::size_t begin, std::size_t end) {
  std::string out;
  out.reserve((end - begin) * 2);
  for (std::size_t i = begin; i < end; ++i) {
    const auto v = std::uint16_t(pcm[i]);
    out += char(v & 0xff);
    out += char(v >> 8);
  }
  return out;
}

Pcm speech(const std::string &text, std::chrono::milliseconds trailing_silence = 700ms) {
  Pcm pcm = gemstream::backend::synthesize_speech(text);
  pcm.insert(pcm.end(), std::size_t(kInRate * trailing_silence.count() / 1000), 0);
  return pcm;
}

std::set<std::string> words(const std::string &text) {
  std::set<std::string> out;
  std::string w;
  for (char c : text + " ") {
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '\'') {
      w += char(std::tolower(static_cast<unsigned char>(c)));
    } else if (!w.empty()) {
      out.insert(w);
      w.clear();
    }
  }
  return out;
}

double word_overlap(const std::string &expected, const std::string &got) {
  const auto e = words(expected);
  const auto g = words(got);
  int hits = 0;
  for (const auto &w : e)
    hits += g.count(w) ? 1 : 0;
  return e.empty() ? 0 : double(hits) / double(e.size());
}

// ---------------------------------------------------------------------------------------------
// A minimal RFC 6455 client over a blocking socket with poll() deadlines.

struct WsMessage {
  enum class Kind { Text, Binary, Close, Eof };
  Kind kind = Kind::Eof;
  std::string payload;
  int close_code = 0; // 0: the close frame had no status
  std::string close_reason;
  Clock::time_point at;

  bool is_data() const { return kind == Kind::Text || kind == Kind::Binary; }
  json parsed() const { return json::parse(payload); }
};

class WsClient {
public:
  WsClient(std::uint16_t port, const std::string &target, const std::vector<std::string> &headers)
      : rng_(std::random_device{}()) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0)
      return;
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n";
    for (const auto &h : headers)
      request += h + "\r\n";
    request += "\r\n";
    write_all(request);
    const auto deadline = Clock::now() + 5s;
    std::size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline))
        return;
    response_headers_ = in_.substr(0, end);
    in_.erase(0, end + 4);
    if (response_headers_.rfind("HTTP/1.1 ", 0) == 0)
      status_ = std::atoi(response_headers_.c_str() + 9);
  }
  ~WsClient() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  WsClient(const WsClient &) = delete;
  WsClient &operator=(const WsClient &) = delete;

  int status() const { return status_; }
  const std::string &response_headers() const { return response_headers_; }

  void send_frame(int opcode, std::string_view payload, bool fin = true) {
    std::string frame;
    frame += char((fin ? 0x80 : 0) | opcode);
    if (payload.size() < 126) {
      frame += char(0x80 | payload.size());
    } else if (payload.size() < 65536) {
      frame += char(0x80 | 126);
      frame += char(payload.size() >> 8);
      frame += char(payload.size() & 0xff);
    } else {
      frame += char(0x80 | 127);
      for (int i = 7; i >= 0; --i)
        frame += char((std::uint64_t(payload.size()) >> (8 * i)) & 0xff);
    }
    std::uint8_t mask[4];
    for (auto &m : mask)
      m = std::uint8_t(rng_());
    frame.append(reinterpret_cast<char *>(mask), 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
      frame += char(payload[i] ^ mask[i % 4]);
    write_all(frame);
  }
  void send_text(std::string_view payload) { send_frame(0x1, payload); }
  void send_json(const json &j) { send_text(j.dump()); }
  void send_close(std::optional<int> code) {
    std::string payload;
    if (code) {
      payload += char(*code >> 8);
      payload += char(*code & 0xff);
    }
    send_frame(0x8, payload);
  }

  // The next data message, close frame or end of stream; nullopt on timeout. Pings are answered.
  std::optional<WsMessage> next(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (auto m = parse())
        return m;
      if (eof_)
        return WsMessage{WsMessage::Kind::Eof, {}, 0, {}, Clock::now()};
      if (!fill(deadline))
        return eof_ ? std::optional<WsMessage>(
                          WsMessage{WsMessage::Kind::Eof, {}, 0, {}, Clock::now()})
                    : std::nullopt;
    }
  }

private:
  void write_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0)
        return;
      data.remove_prefix(std::size_t(n));
    }
  }

  bool fill(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, int(std::max<long long>(0, left.count()))) <= 0)
      return false;
    char buffer[65536];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    in_.append(buffer, std::size_t(n));
    return true;
  }

  std::optional<WsMessage> parse() {
    for (;;) {
      if (in_.size() < 2)
        return std::nullopt;
      const auto b0 = std::uint8_t(in_[0]);
      const auto b1 = std::uint8_t(in_[1]);
      std::size_t header = 2;
      std::uint64_t length = b1 & 0x7f;
      if (length == 126) {
        if (in_.size() < 4)
          return std::nullopt;
        length = (std::uint64_t(std::uint8_t(in_[2])) << 8) | std::uint8_t(in_[3]);
        header = 4;
      } else if (length == 127) {
        if (in_.size() < 10)
          return std::nullopt;
        length = 0;
        for (int i = 0; i < 8; ++i)
          length = (length << 8) | std::uint8_t(in_[2 + i]);
        header = 10;
      }
      EXPECT_EQ(b1 & 0x80, 0) << "server frames must not be masked";
      if (in_.size() < header + length)
        return std::nullopt;
      std::string payload = in_.substr(header, std::size_t(length));
      in_.erase(0, header + std::size_t(length));
      const bool fin = b0 & 0x80;
      const int opcode = b0 & 0x0f;
      if (opcode == 0x9) {
        send_frame(0xA, payload);
        continue;
      }
      if (opcode == 0xA)
        continue;
      if (opcode == 0x8) {
        WsMessage m{WsMessage::Kind::Close, {}, 0, {}, Clock::now()};
        if (payload.size() >= 2) {
          m.close_code = (std::uint8_t(payload[0]) << 8) | std::uint8_t(payload[1]);
          m.close_reason = payload.substr(2);
        }
        return m;
      }
      if (opcode != 0)
        fragment_kind_ = opcode == 0x2 ? WsMessage::Kind::Binary : WsMessage::Kind::Text;
      fragment_ += payload;
      if (fin)
        return WsMessage{fragment_kind_, std::exchange(fragment_, {}), 0, {}, Clock::now()};
    }
  }

  int fd_ = -1;
  int status_ = 0;
  std::string response_headers_;
  std::string in_;
  std::string fragment_;
  WsMessage::Kind fragment_kind_ = WsMessage::Kind::Text;
  bool eof_ = false;
  std::mt19937 rng_;
};

// ---------------------------------------------------------------------------------------------
// A Live session seen from the client: every message received, with arrival times.

json setup_message(const std::string &model, json extra = json::object()) {
  json setup = {{"model", model}};
  setup.update(extra);
  return {{"setup", setup}};
}

bool has(const json &j, const char *pointer) {
  return j.contains(json::json_pointer(pointer));
}

class Live {
public:
  explicit Live(const LocalBackend &backend, std::string target = kPath,
                std::vector<std::string> headers = {std::string("x-goog-api-key: ") + kKey})
      : ws(backend.port(), target, headers) {}

  // Sends setup and waits for setupComplete; false if something else arrived.
  bool start(const json &setup) {
    ws.send_json(setup);
    auto m = wait_for([](const json &j) { return has(j, "/setupComplete"); }, 5s);
    return m.has_value();
  }

  // The next data message, in arrival order after the previous match, that satisfies `pred`,
  // reading more if needed; every message read is kept in `received`. Stops (nullopt) at a
  // close, the end of the stream or the timeout.
  std::optional<WsMessage> wait_for(const std::function<bool(const json &)> &pred,
                                    std::chrono::milliseconds timeout) {
    for (; cursor_ < received.size(); ++cursor_) {
      const WsMessage &m = received[cursor_];
      if (!m.is_data())
        return std::nullopt;
      if (matches(m, pred))
        return received[cursor_++];
    }
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0)
        return std::nullopt;
      auto m = ws.next(left);
      if (!m)
        return std::nullopt;
      received.push_back(*m);
      cursor_ = received.size();
      if (!m->is_data())
        return std::nullopt;
      if (matches(*m, pred))
        return m;
    }
  }

  std::optional<WsMessage> wait_close(std::chrono::milliseconds timeout) {
    for (; cursor_ < received.size(); ++cursor_)
      if (!received[cursor_].is_data())
        return received[cursor_++];
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0)
        return std::nullopt;
      auto m = ws.next(left);
      if (!m)
        return std::nullopt;
      received.push_back(*m);
      cursor_ = received.size();
      if (!m->is_data())
        return m;
    }
  }

  // Streams 16-bit PCM as realtimeInput.audio in `chunk` pieces, `speed` times faster than real
  // time, reading whatever arrives meanwhile. Returns when the last chunk left.
  Clock::time_point send_audio(const Pcm &pcm, double speed, int rate = kInRate,
                               std::chrono::milliseconds chunk = 40ms,
                               std::string mime = "audio/pcm;rate=16000", bool legacy = false) {
    const std::size_t step = std::size_t(rate) * std::size_t(chunk.count()) / 1000;
    const auto start = Clock::now();
    for (std::size_t i = 0, n = 0; i < pcm.size(); i += step, ++n) {
      const std::size_t end = std::min(pcm.size(), i + step);
      const json blob = {{"mimeType", mime}, {"data", b64encode(pcm_bytes(pcm, i, end))}};
      ws.send_json({{"realtimeInput",
                     legacy ? json{{"mediaChunks", json::array({blob})}} : json{{"audio", blob}}}});
      const auto due =
          start + std::chrono::duration_cast<Clock::duration>(chunk * double(n + 1) / speed);
      drain_until(due);
    }
    return Clock::now();
  }

  void drain_until(Clock::time_point until) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      auto m = ws.next(std::max(0ms, left));
      if (!m)
        return;
      received.push_back(*m);
      if (!m->is_data())
        return;
    }
  }

  std::vector<std::pair<json, Clock::time_point>> messages() const {
    std::vector<std::pair<json, Clock::time_point>> out;
    for (const auto &m : received) {
      if (!m.is_data())
        continue;
      try {
        out.emplace_back(m.parsed(), m.at);
      } catch (const json::exception &) {
      }
    }
    return out;
  }

  // Model audio received (24 kHz samples), as the client would play it.
  std::size_t audio_samples(std::size_t *chunks = nullptr) const {
    std::size_t samples = 0;
    std::size_t n = 0;
    for (const auto &[j, at] : messages()) {
      if (!has(j, "/serverContent/modelTurn/parts"))
        continue;
      for (const auto &part : j["serverContent"]["modelTurn"]["parts"]) {
        if (!part.contains("inlineData"))
          continue;
        EXPECT_EQ(part["inlineData"]["mimeType"], "audio/pcm;rate=24000");
        samples += b64decode(part["inlineData"]["data"].get<std::string>()).size() / 2;
        ++n;
      }
    }
    if (chunks)
      *chunks = n;
    return samples;
  }

  std::string joined(const char *pointer) const {
    std::string out;
    for (const auto &[j, at] : messages())
      if (has(j, pointer))
        out += j[json::json_pointer(pointer)].get<std::string>();
    return out;
  }

  // The last serverContent.groundingMetadata received; null when there was none.
  json grounding() const {
    json out;
    for (const auto &[j, at] : messages())
      if (has(j, "/serverContent/groundingMetadata"))
        out = j["serverContent"]["groundingMetadata"];
    return out;
  }

  std::string model_text() const {
    std::string out;
    for (const auto &[j, at] : messages())
      if (has(j, "/serverContent/modelTurn/parts"))
        for (const auto &part : j["serverContent"]["modelTurn"]["parts"])
          if (part.contains("text"))
            out += part["text"].get<std::string>();
    return out;
  }

  WsClient ws;
  std::vector<WsMessage> received;

private:
  static bool matches(const WsMessage &m, const std::function<bool(const json &)> &pred) {
    try {
      return pred(m.parsed());
    } catch (const json::exception &) {
      return false;
    }
  }

  std::size_t cursor_ = 0; // received[cursor_..] not yet looked at by wait_for/wait_close
};

bool turn_complete(const json &j) {
  return has(j, "/serverContent/turnComplete");
}

bool wait_until(const std::function<bool()> &pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

json capability_declarations() {
  std::ifstream in(std::string(GEMSTREAM_SOURCE_DIR) + "/config/agent_capabilities.json");
  const json config = json::parse(in);
  json declarations = json::array();
  for (const auto &c : config["capabilities"]) {
    if (c["execution"] == "builtin_search")
      continue;
    declarations.push_back(
        {{"name", c["name"]}, {"description", c["description"]}, {"parameters", c["parameters"]}});
  }
  return declarations;
}

struct HttpAnswer {
  long status = 0;
  std::string body;
};

HttpAnswer http(const std::string &method, const std::string &url, const std::string &body = {}) {
  HttpAnswer answer;
  CURL *curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty())
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char *p, size_t s, size_t n, void *out) {
        static_cast<std::string *>(out)->append(p, s * n);
        return s * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  curl_easy_cleanup(curl);
  return answer;
}

class LiveServerTest : public ::testing::Test {
protected:
  void SetUp() override { start({}); }

  void start(LocalBackendOptions options) {
    options.required_api_key = kKey;
    options.data_dir = GEMSTREAM_SOURCE_DIR;
    backend = std::make_unique<LocalBackend>(options);
    backend->start();
  }

  std::unique_ptr<LocalBackend> backend;
};

// ---------------------------------------------------------------------------------------------
// Handshake, framing and errors

TEST_F(LiveServerTest, SetupCompleteIsPrettyJsonInABinaryFrame) {
  Live live(*backend);
  ASSERT_EQ(live.ws.status(), 101) << live.ws.response_headers();
  live.ws.send_json(setup_message(kAudioModel));
  auto m = live.ws.next(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, WsMessage::Kind::Binary);
  // Byte for byte what the real service sends (tests/fixtures/live-recordings).
  EXPECT_EQ(m->payload, "{\n  \"setupComplete\": {}\n}\n");
  EXPECT_EQ(backend->live_session_count(), 1u);

  // The upgrade is in the request log, so a client's way of connecting can be checked.
  const auto requests = backend->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].path, kPath);
  EXPECT_EQ(requests[0].query, "");
  EXPECT_EQ(requests[0].status, 101);
  const auto key = std::find_if(requests[0].headers.begin(), requests[0].headers.end(),
                                [](const auto &h) { return h.first == "x-goog-api-key"; });
  ASSERT_NE(key, requests[0].headers.end());
  EXPECT_EQ(key->second, kKey);
}

TEST_F(LiveServerTest, AcceptsKeyInQueryV1alphaDoubledSlashAndConstrainedToken) {
  const std::vector<std::string> targets = {
      std::string(kPath) + "?key=" + kKey,
      std::string("/") + kPath + "?key=" + kKey,
      std::string(
          "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent?key=") +
          kKey,
      std::string("/ws/google.ai.generativelanguage.v1alpha.GenerativeService."
                  "BidiGenerateContentConstrained?access_token=") +
          kKey,
  };
  for (const auto &target : targets) {
    SCOPED_TRACE(target);
    Live live(*backend, target, {});
    ASSERT_EQ(live.ws.status(), 101);
    EXPECT_TRUE(live.start(setup_message(kAudioModel)));
  }
}

TEST_F(LiveServerTest, RefusesUpgradesOutsideTheLiveEndpoints) {
  WsClient ws(backend->port(), "/v1beta/models", {std::string("x-goog-api-key: ") + kKey});
  EXPECT_NE(ws.status(), 101);
}

TEST_F(LiveServerTest, WrongOrMissingKeyClosesWith1007) {
  for (const std::vector<std::string> &headers :
       {std::vector<std::string>{"x-goog-api-key: not-the-key"}, std::vector<std::string>{}}) {
    Live live(*backend, kPath, headers);
    ASSERT_EQ(live.ws.status(), 101);
    live.ws.send_json(setup_message(kAudioModel));
    auto close = live.wait_close(5s);
    ASSERT_TRUE(close);
    EXPECT_EQ(close->kind, WsMessage::Kind::Close);
    EXPECT_EQ(close->close_code, 1007);
    EXPECT_EQ(close->close_reason, "API key not valid. Please pass a valid API key.");
  }
}

TEST_F(LiveServerTest, SetupErrorsCloseWithTheServiceCodes) {
  struct Case {
    std::string message;
    int code;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {setup_message("models/gemini-2.5-flash").dump(), 1008, "Requested entity was not found."},
      {setup_message("models/no-such-model").dump(), 1008, "Requested entity was not found."},
      {R"({"realtimeInput":{"text":"hello"}})", 1007, "Request contains an invalid argument."},
      {R"({"setup":{"model":)", 1007, "Request contains an invalid argument."},
      {setup_message(kAudioModel, {{"sessionResumption", {{"transparent", true}}}}).dump(), 1007,
       "transparent parameter is not supported in Gemini API."},
      {setup_message(kAudioModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}}})
           .dump(),
       1007, "Cannot extract voices from a non-audio request."},
      {setup_message(kAudioModel, {{"sessionResumption", {{"handle", "unknown"}}}}).dump(), 1007,
       "Session resumption handle is invalid or has expired."},
      {setup_message(kAudioModel, {{"bogus", 1}}).dump(), 1007,
       "Invalid JSON payload received. Unknown name \"bogus\" at 'setup': Cannot find field."},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(c.message);
    Live live(*backend);
    ASSERT_EQ(live.ws.status(), 101);
    live.ws.send_text(c.message);
    auto close = live.wait_close(5s);
    ASSERT_TRUE(close);
    ASSERT_EQ(close->kind, WsMessage::Kind::Close);
    EXPECT_EQ(close->close_code, c.code);
    EXPECT_EQ(close->close_reason, c.reason);
  }
}

TEST_F(LiveServerTest, AcceptsFragmentedAndBinaryClientMessages) {
  Live live(*backend);
  const std::string setup =
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}}}).dump();
  live.ws.send_frame(0x1, std::string_view(setup).substr(0, 10), false);
  live.ws.send_frame(0x0, std::string_view(setup).substr(10, 20), false);
  live.ws.send_frame(0x0, std::string_view(setup).substr(30), true);
  ASSERT_TRUE(live.wait_for([](const json &j) { return has(j, "/setupComplete"); }, 5s));
  live.ws.send_frame(0x2, json{{"realtimeInput", {{"text", "Are you there Gemini?"}}}}.dump());
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  EXPECT_EQ(live.model_text(), "Yes, I'm here! How can I help you today?");
}

TEST_F(LiveServerTest, ClientCloseWithoutStatusIsAnsweredWith1000) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(kAudioModel)));
  live.ws.send_close(std::nullopt);
  auto close = live.wait_close(5s);
  ASSERT_TRUE(close);
  ASSERT_EQ(close->kind, WsMessage::Kind::Close);
  EXPECT_EQ(close->close_code, 1000);
}

TEST_F(LiveServerTest, AnswersPingsAndEchoesAClientCloseCode) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(kAudioModel)));
  live.ws.send_frame(0x9, "are-you-alive");
  // The pong is consumed by the client; the session must still work afterwards.
  live.ws.send_close(1001);
  auto close = live.wait_close(5s);
  ASSERT_TRUE(close);
  ASSERT_EQ(close->kind, WsMessage::Kind::Close);
  EXPECT_EQ(close->close_code, 1001);
}

// ---------------------------------------------------------------------------------------------
// Conversation

// The replayed client messages of a real recorded session get the recorded answer.
TEST_F(LiveServerTest, ReplaysTheRecordedRealtimeTextSession) {
  std::ifstream in(std::string(GEMSTREAM_SOURCE_DIR) +
                   "/tests/fixtures/live-recordings/"
                   "live_ML_Dev_should_reply_to_realtime_text_input.websocket.log");
  ASSERT_TRUE(in) << "recording missing";
  std::vector<std::string> client;
  std::string recorded_text;
  std::string line;
  std::string server_payload;
  while (std::getline(in, line)) {
    if (line.rfind(">", 0) == 0) {
      client.push_back(line.substr(line.find(' ') + 1));
    } else if (line.rfind("<", 0) == 0) {
      server_payload = line.substr(line.find(' ') + 1) + "\n";
    } else {
      server_payload += line + "\n";
    }
    if (server_payload.size() > 1 && line == "}") {
      const json j = json::parse(server_payload);
      if (has(j, "/serverContent/modelTurn/parts/0/text"))
        recorded_text += j["serverContent"]["modelTurn"]["parts"][0]["text"].get<std::string>();
      server_payload.clear();
    }
  }
  ASSERT_EQ(client.size(), 2u);
  Live live(*backend);
  live.ws.send_text(client[0]);
  auto first = live.ws.next(5s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->payload, "{\n  \"setupComplete\": {}\n}\n");
  live.ws.send_text(client[1]);
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  EXPECT_EQ(live.model_text(), recorded_text);
  EXPECT_EQ(live.model_text(), "Yes, I'm here! How can I help you today?");
}

TEST_F(LiveServerTest, SpokenTurnIsTranscribedAndAnsweredWithPacedSpeech) {
  Live live(*backend);
  ASSERT_TRUE(
      live.start(setup_message(kAudioModel, {{"inputAudioTranscription", json::object()},
                                             {"outputAudioTranscription", json::object()}})));
  const std::string said = "hello how are you today";
  const Pcm utterance = speech(said);
  const auto sent = live.send_audio(utterance, 4.0);

  auto transcription =
      live.wait_for([](const json &j) { return has(j, "/serverContent/inputTranscription"); }, 10s);
  ASSERT_TRUE(transcription);
  const json input = transcription->parsed()["serverContent"]["inputTranscription"];
  const std::string heard = input["text"];
  EXPECT_EQ(input["finished"], true);
  EXPECT_GE(word_overlap(said, heard), 0.6) << heard;
  std::cout
      << "[ recognition ] \"" << heard << "\" in "
      << std::chrono::duration_cast<std::chrono::milliseconds>(transcription->at - sent).count()
      << " ms after the utterance's last chunk\n";

  auto done = live.wait_for(turn_complete, 15s);
  ASSERT_TRUE(done);

  // Audio: 24 kHz S16LE, as long as the spoken reply, delivered at playback speed.
  std::size_t chunks = 0;
  const std::size_t samples = live.audio_samples(&chunks);
  const double seconds = double(samples) / kOutRate;
  const std::string reply = live.joined("/serverContent/outputTranscription/text");
  EXPECT_EQ(reply, "Hello! I am doing well, thank you.");
  const double expected = double(gemstream::backend::synthesize_speech(reply).size()) / kInRate;
  EXPECT_NEAR(seconds, expected, 0.05);
  EXPECT_GE(chunks, 5u);

  Clock::time_point first_audio{};
  Clock::time_point generation_complete{};
  for (const auto &[j, at] : live.messages()) {
    if (first_audio == Clock::time_point{} && has(j, "/serverContent/modelTurn"))
      first_audio = at;
    if (has(j, "/serverContent/generationComplete"))
      generation_complete = at;
  }
  ASSERT_NE(generation_complete, Clock::time_point{});
  const double delivered = std::chrono::duration<double>(done->at - first_audio).count();
  EXPECT_NEAR(delivered, seconds, 0.35) << "turnComplete should follow after playback time";
  EXPECT_LT(generation_complete, done->at);

  const json complete = done->parsed();
  EXPECT_EQ(complete["serverContent"]["turnComplete"], true);
  const json &usage = complete["usageMetadata"];
  EXPECT_EQ(usage["totalTokenCount"].get<int>(),
            usage["promptTokenCount"].get<int>() + usage["responseTokenCount"].get<int>());
  int prompt_audio = 0;
  for (const auto &d : usage["promptTokensDetails"])
    if (d["modality"] == "AUDIO")
      prompt_audio = d["tokenCount"];
  EXPECT_NEAR(prompt_audio, 32.0 * double(utterance.size()) / kInRate, 2.0);
  ASSERT_EQ(usage["responseTokensDetails"].size(), 1u);
  EXPECT_EQ(usage["responseTokensDetails"][0]["modality"], "AUDIO");
  EXPECT_NEAR(usage["responseTokensDetails"][0]["tokenCount"].get<int>(), 32.0 * seconds, 1.0);
}

TEST_F(LiveServerTest, TypedTurnsAndHistoryOnlyClientContent) {
  Live live(*backend);
  ASSERT_TRUE(live.start(
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}}})));
  live.ws.send_json(
      {{"clientContent",
        {{"turns", {{{"role", "user"}, {"parts", {{{"text", "My cat is called Miso."}}}}}}},
         {"turnComplete", false}}}});
  EXPECT_FALSE(live.wait_for([](const json &) { return true; }, 300ms)) << "history only";
  live.ws.send_json({{"clientContent",
                      {{"turns", {{{"role", "user"}, {"parts", {{{"text", "What did I say?"}}}}}}},
                       {"turnComplete", true}}}});
  auto done = live.wait_for(turn_complete, 5s);
  ASSERT_TRUE(done);
  EXPECT_EQ(live.model_text(), "Earlier you said: my cat is called miso.");
  EXPECT_EQ(done->parsed()["usageMetadata"]["responseTokensDetails"][0]["modality"], "TEXT");
  bool generation_complete = false;
  for (const auto &[j, at] : live.messages())
    generation_complete |= has(j, "/serverContent/generationComplete");
  EXPECT_TRUE(generation_complete);
}

TEST_F(LiveServerTest, BargeInInterruptsModelSpeechAtOnce) {
  Live live(*backend);
  ASSERT_TRUE(
      live.start(setup_message(kAudioModel, {{"inputAudioTranscription", json::object()}})));
  live.ws.send_json(
      {{"realtimeInput", {{"text", "Tell me a long story about the sea and the wind"}}}});
  ASSERT_TRUE(live.wait_for([](const json &j) { return has(j, "/serverContent/modelTurn"); }, 5s));
  live.drain_until(Clock::now() + 300ms);
  std::size_t chunks_before = 0;
  live.audio_samples(&chunks_before);

  const Pcm stop = speech("stop");
  const auto speaking = Clock::now();
  live.send_audio(stop, 1.0);
  ASSERT_TRUE(
      live.wait_for([](const json &j) { return has(j, "/serverContent/interrupted"); }, 3s));
  const auto interrupted =
      std::find_if(live.received.begin(), live.received.end(), [](const WsMessage &m) {
        return m.is_data() && has(m.parsed(), "/serverContent/interrupted");
      });
  const auto latency =
      std::chrono::duration_cast<std::chrono::milliseconds>(interrupted->at - speaking);
  std::cout << "[ barge-in    ] interrupted " << latency.count() << " ms after speech began\n";
  EXPECT_LT(latency, 500ms);

  // After the interruption: turnComplete without generationComplete, no more of the old reply.
  const auto index = std::size_t(interrupted - live.received.begin());
  ASSERT_TRUE(live.wait_for(
      [](const json &j) { return has(j, "/serverContent/inputTranscription"); }, 10s));
  bool complete_after = false;
  for (std::size_t i = index + 1; i < live.received.size(); ++i) {
    if (!live.received[i].is_data())
      continue;
    const json j = live.received[i].parsed();
    EXPECT_FALSE(has(j, "/serverContent/generationComplete"));
    EXPECT_FALSE(has(j, "/serverContent/modelTurn")) << "old reply kept playing";
    if (turn_complete(j)) {
      complete_after = true;
      break;
    }
  }
  EXPECT_TRUE(complete_after);
  std::size_t chunks_total = 0;
  live.audio_samples(&chunks_total);
  const double full_reply = double(gemstream::backend::synthesize_speech(
                                       "You said: tell me a long story about the sea and the wind.")
                                       .size()) /
                            kInRate;
  EXPECT_LT(double(chunks_total) * 0.1, full_reply - 0.5);
  EXPECT_GE(chunks_total, chunks_before);
}

TEST_F(LiveServerTest, TypedRequestCallsTheDeclaredFunctionThenSpeaksTheResult) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(
      kAudioModel, {{"tools", {{{"functionDeclarations", capability_declarations()}}}},
                    {"outputAudioTranscription", json::object()}})));
  live.ws.send_json(
      {{"realtimeInput", {{"text", "Make my chat background a peaceful beach sunset."}}}});
  auto call = live.wait_for([](const json &j) { return has(j, "/toolCall"); }, 5s);
  ASSERT_TRUE(call);
  const json calls = call->parsed()["toolCall"]["functionCalls"];
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["name"], "generate_background_video");
  EXPECT_EQ(calls[0]["args"]["description"], "peaceful beach sunset");
  EXPECT_EQ(calls[0]["args"]["mood"], "calm");
  EXPECT_EQ(calls[0]["args"]["confirmed"], false);
  const std::string id = calls[0]["id"];
  ASSERT_FALSE(id.empty());

  live.ws.send_json({{"toolResponse",
                      {{"functionResponses",
                        {{{"id", id},
                          {"name", "generate_background_video"},
                          {"response", {{"result", "started"}, {"job", "operations/42"}}}}}}}}});
  ASSERT_TRUE(live.wait_for(turn_complete, 10s));
  EXPECT_EQ(live.joined("/serverContent/outputTranscription/text"),
            "Your background video of peaceful beach sunset is on its way.");
  EXPECT_GT(live.audio_samples(), std::size_t(kOutRate));
}

TEST_F(LiveServerTest, SpokenRequestCallsTheFunctionAndBargeInCancelsIt) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(
      kAudioModel, {{"tools", {{{"functionDeclarations", capability_declarations()}}}},
                    {"inputAudioTranscription", json::object()}})));
  // Legacy mediaChunks with a plain audio/pcm type (16 kHz meant, as LiveKit sends it), no
  // trailing silence: audioStreamEnd ends the turn.
  live.send_audio(speech("make my chat background a peaceful beach sunset", 0ms), 4.0, kInRate,
                  40ms, "audio/pcm", /*legacy=*/true);
  live.ws.send_json({{"realtimeInput", {{"audioStreamEnd", true}}}});
  auto call = live.wait_for([](const json &j) { return has(j, "/toolCall"); }, 10s);
  ASSERT_TRUE(call);
  std::cout << "[ recognition ] \"" << live.joined("/serverContent/inputTranscription/text")
            << "\"\n";
  const json fc = call->parsed()["toolCall"]["functionCalls"][0];
  EXPECT_EQ(fc["name"], "generate_background_video");
  EXPECT_EQ(fc["args"]["description"], "peaceful beach sunset");

  live.send_audio(speech("never mind", 0ms), 4.0);
  auto cancelled = live.wait_for([](const json &j) { return has(j, "/toolCallCancellation"); }, 5s);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->parsed()["toolCallCancellation"]["ids"], json::array({fc["id"]}));
}

TEST_F(LiveServerTest, ConsentQuestionFromTheToolLeadsToAConfirmedCall) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(
      kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}},
                   {"tools", {{{"functionDeclarations", capability_declarations()}}}}})));
  live.ws.send_json({{"realtimeInput", {{"text", "Create a card with a meditation image"}}}});
  auto call = live.wait_for([](const json &j) { return has(j, "/toolCall"); }, 5s);
  ASSERT_TRUE(call);
  json fc = call->parsed()["toolCall"]["functionCalls"][0];
  EXPECT_EQ(fc["name"], "generate_card_image");
  EXPECT_EQ(fc["args"], json({{"motif", "meditation"}, {"confirmed", false}}));
  const std::string question =
      "Shall I create a card cover showing meditation? It costs about $0.04.";
  live.ws.send_json(
      {{"toolResponse",
        {{"functionResponses",
          {{{"id", fc["id"]},
            {"name", fc["name"]},
            {"response", {{"needs_confirmation", true}, {"question", question}}}}}}}}});
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  EXPECT_EQ(live.model_text(), question);

  live.ws.send_json({{"realtimeInput", {{"text", "Yes please"}}}});
  call = live.wait_for([](const json &j) { return has(j, "/toolCall"); }, 5s);
  ASSERT_TRUE(call);
  fc = call->parsed()["toolCall"]["functionCalls"][0];
  EXPECT_EQ(fc["args"], json({{"motif", "meditation"}, {"confirmed", true}}));
}

TEST_F(LiveServerTest, GoogleSearchAnswersCarryGroundingWithByteOffsets) {
  Live live(*backend);
  ASSERT_TRUE(live.start(
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}},
                                 {"tools", {{{"googleSearch", json::object()}}}}})));
  live.ws.send_json({{"realtimeInput", {{"text", "What's the latest on electric cars?"}}}});
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  const std::string text = live.model_text();
  const json grounding = live.grounding();
  ASSERT_TRUE(grounding.is_object());
  EXPECT_EQ(grounding["webSearchQueries"], json::array({"electric cars"}));
  ASSERT_GE(grounding["groundingChunks"].size(), 1u);
  EXPECT_EQ(grounding["groundingChunks"][0]["web"]["uri"].get<std::string>().rfind("https://", 0),
            0u);
  ASSERT_EQ(grounding["groundingSupports"].size(), grounding["groundingChunks"].size());
  for (const auto &support : grounding["groundingSupports"]) {
    const auto start = support["segment"]["startIndex"].get<std::size_t>();
    const auto end = support["segment"]["endIndex"].get<std::size_t>();
    ASSERT_LE(end, text.size());
    EXPECT_EQ(text.substr(start, end - start), support["segment"]["text"]);
    for (const auto &index : support["groundingChunkIndices"])
      EXPECT_LT(index.get<std::size_t>(), grounding["groundingChunks"].size());
  }
}

TEST_F(LiveServerTest, SearchAnswersComeFromTheSameCorpusAsGenerateContent) {
  Live live(*backend);
  ASSERT_TRUE(live.start(
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}},
                                 {"tools", {{{"googleSearch", json::object()}}}}})));
  live.ws.send_json({{"realtimeInput", {{"text", "What's the latest on AI regulation?"}}}});
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  const std::string text = live.model_text();
  const json grounding = live.grounding();
  ASSERT_TRUE(grounding.is_object()) << text;
  EXPECT_EQ(grounding["webSearchQueries"], json::array({"AI regulation"}));
  EXPECT_NE(grounding["searchEntryPoint"]["renderedContent"].get<std::string>().find("<a"),
            std::string::npos);
  // The sources generateContent cites for the same question, in the same order.
  const gemstream::backend::GroundedAnswer rest =
      gemstream::backend::grounded_answer("What's the latest on AI regulation?");
  EXPECT_EQ(grounding["groundingChunks"], rest.grounding_metadata["groundingChunks"]);
  ASSERT_EQ(grounding["groundingChunks"].size(), 2u);
  EXPECT_EQ(grounding["groundingChunks"][0]["web"]["domain"], "europa.eu");
  // Spoken style: one sentence from each source, one support each, offsets in bytes.
  ASSERT_EQ(grounding["groundingSupports"].size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const json &support = grounding["groundingSupports"][i];
    const auto start = support["segment"]["startIndex"].get<std::size_t>();
    const auto end = support["segment"]["endIndex"].get<std::size_t>();
    ASSERT_LE(end, text.size());
    EXPECT_EQ(text.substr(start, end - start), support["segment"]["text"]);
    EXPECT_EQ(support["groundingChunkIndices"], json::array({i}));
  }
  EXPECT_EQ(text.rfind("Here is the latest on AI regulation. ", 0), 0u) << text;
}

TEST_F(LiveServerTest, ManualActivityAndResampledInput) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(
      kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}},
                   {"realtimeInputConfig", {{"automaticActivityDetection", {{"disabled", true}}}}},
                   {"inputAudioTranscription", json::object()}})));
  // Delimited by activityStart/activityEnd, sent at 24 kHz: no silence needed to end the turn.
  const Pcm at24k = gemstream::backend::resample_linear(speech("hello", 0ms), kInRate, 24000);
  live.ws.send_json({{"realtimeInput", {{"activityStart", json::object()}}}});
  live.send_audio(at24k, 8.0, 24000, 40ms, "audio/pcm;rate=24000");
  live.ws.send_json({{"realtimeInput", {{"activityEnd", json::object()}}}});
  auto transcription =
      live.wait_for([](const json &j) { return has(j, "/serverContent/inputTranscription"); }, 10s);
  ASSERT_TRUE(transcription);
  EXPECT_EQ(transcription->parsed()["serverContent"]["inputTranscription"]["text"], "hello");
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  EXPECT_EQ(live.model_text(), "Hello! How can I help you today?");

  // With manual activity, the automatic detector's audio is ignored, and explicit control without
  // it enabled is refused.
  Live automatic(*backend);
  ASSERT_TRUE(automatic.start(setup_message(kAudioModel)));
  automatic.ws.send_json({{"realtimeInput", {{"activityStart", json::object()}}}});
  auto close = automatic.wait_close(5s);
  ASSERT_TRUE(close);
  EXPECT_EQ(close->close_code, 1007);
}

TEST_F(LiveServerTest, VideoFramesCountInTheNextTurnsUsage) {
  Live live(*backend);
  ASSERT_TRUE(live.start(
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}}})));
  for (int i = 0; i < 2; ++i)
    live.ws.send_json(
        {{"realtimeInput",
          {{"video",
            {{"mimeType", "image/jpeg"}, {"data", b64encode("\xff\xd8\xff\xe0 frame")}}}}}});
  live.ws.send_json({{"realtimeInput", {{"text", "hello"}}}});
  auto done = live.wait_for(turn_complete, 5s);
  ASSERT_TRUE(done);
  const json usage = done->parsed()["usageMetadata"];
  int image_tokens = 0;
  for (const auto &d : usage["promptTokensDetails"])
    if (d["modality"] == "IMAGE")
      image_tokens = d["tokenCount"];
  EXPECT_EQ(image_tokens, 2 * 258);
}

TEST_F(LiveServerTest, ConcurrentSessionsAreIndependent) {
  Live a(*backend);
  Live b(*backend);
  const json setup =
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}}});
  ASSERT_TRUE(a.start(setup));
  ASSERT_TRUE(b.start(setup));
  EXPECT_EQ(backend->live_session_count(), 2u);
  a.ws.send_json({{"realtimeInput", {{"text", "Thanks"}}}});
  b.ws.send_json({{"realtimeInput", {{"text", "Hello"}}}});
  ASSERT_TRUE(a.wait_for(turn_complete, 5s));
  ASSERT_TRUE(b.wait_for(turn_complete, 5s));
  EXPECT_EQ(a.model_text(), "You're welcome!");
  EXPECT_EQ(b.model_text(), "Hello! How can I help you today?");
}

// ---------------------------------------------------------------------------------------------
// Session lifetime

TEST_F(LiveServerTest, ResumptionHandleRestoresTheConversationOnANewSocket) {
  const json text_setup =
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}},
                                 {"sessionResumption", json::object()}});
  std::string handle;
  {
    Live first(*backend);
    ASSERT_TRUE(first.start(text_setup));
    first.ws.send_json({{"realtimeInput", {{"text", "The password is blue"}}}});
    ASSERT_TRUE(first.wait_for(turn_complete, 5s));
    auto update =
        first.wait_for([](const json &j) { return has(j, "/sessionResumptionUpdate"); }, 5s);
    ASSERT_TRUE(update);
    const json u = update->parsed()["sessionResumptionUpdate"];
    EXPECT_EQ(u["resumable"], true);
    EXPECT_FALSE(u.contains("lastConsumedClientMessageIndex"));
    handle = u["newHandle"];
    std::set<std::string> handles;
    for (const auto &[j, at] : first.messages())
      if (has(j, "/sessionResumptionUpdate/newHandle"))
        handles.insert(j["sessionResumptionUpdate"]["newHandle"].get<std::string>());
    EXPECT_EQ(handles.size(), 2u) << "one after setup, one after the turn";
  }
  Live second(*backend);
  json resumed = text_setup;
  resumed["setup"]["sessionResumption"]["handle"] = handle;
  ASSERT_TRUE(second.start(resumed));
  second.ws.send_json({{"realtimeInput", {{"text", "What did I say?"}}}});
  ASSERT_TRUE(second.wait_for(turn_complete, 5s));
  EXPECT_EQ(second.model_text(), "Earlier you said: the password is blue.");
}

TEST_F(LiveServerTest, GoAwayAnnouncesTheCloseAndTheConnectionEnds) {
  LocalBackendOptions options;
  options.live_go_away_after = 1s;
  options.live_go_away_time_left = 500ms;
  start(options);
  Live live(*backend);
  const auto opened = Clock::now();
  ASSERT_TRUE(live.start(setup_message(kAudioModel)));
  auto go_away = live.wait_for([](const json &j) { return has(j, "/goAway"); }, 3s);
  ASSERT_TRUE(go_away);
  EXPECT_EQ(go_away->parsed()["goAway"]["timeLeft"], "0.5s");
  EXPECT_NEAR(std::chrono::duration<double>(go_away->at - opened).count(), 1.0, 0.25);
  auto close = live.wait_close(3s);
  ASSERT_TRUE(close);
  EXPECT_EQ(close->kind, WsMessage::Kind::Close);
  EXPECT_EQ(close->close_code, 1000);
  EXPECT_NEAR(std::chrono::duration<double>(close->at - go_away->at).count(), 0.5, 0.25);
}

// ---------------------------------------------------------------------------------------------
// Faults

TEST_F(LiveServerTest, DropMidTurnEndsTheSocketWithoutACloseFrame) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(kAudioModel)));
  backend->drop_live_after_chunks(2);
  live.ws.send_json({{"realtimeInput", {{"text", "Tell me about the mountains"}}}});
  auto end = live.wait_close(5s);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->kind, WsMessage::Kind::Eof) << "a close frame arrived: code " << end->close_code;
  std::size_t chunks = 0;
  live.audio_samples(&chunks);
  EXPECT_EQ(chunks, 2u);
}

TEST_F(LiveServerTest, CloseWithCode1006DropsWithoutACloseFrame) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(kAudioModel)));
  backend->close_live_sessions(1006, "");
  auto end = live.wait_close(5s);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->kind, WsMessage::Kind::Eof) << "a close frame arrived: code " << end->close_code;
  ASSERT_EQ(backend->live_audio().size(), 1u);
}

TEST_F(LiveServerTest, InputAudioIsCountedPerConnectionAndCarriedByHandles) {
  const json setup =
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}},
                                 {"sessionResumption", json::object()}});
  const Pcm quiet(8000, 50); // under the VAD threshold: no turn
  std::string handle;
  {
    Live first(*backend);
    ASSERT_TRUE(first.start(setup));
    first.send_audio(quiet, 100.0);
    // 8 kHz input counts as sent, before it is resampled.
    first.send_audio(Pcm(800, 50), 100.0, 8000, 40ms, "audio/pcm;rate=8000");
    // A turn ends: the handle issued after it carries the audio received so far.
    first.ws.send_json({{"realtimeInput", {{"text", "Hello"}}}});
    ASSERT_TRUE(first.wait_for(turn_complete, 5s));
    auto update =
        first.wait_for([](const json &j) { return has(j, "/sessionResumptionUpdate"); }, 5s);
    ASSERT_TRUE(update);
    handle = update->parsed()["sessionResumptionUpdate"]["newHandle"];
    const auto counts = backend->live_audio();
    ASSERT_EQ(counts.size(), 1u);
    EXPECT_EQ(counts[0].received_bytes, 17600u);
    EXPECT_EQ(counts[0].resumed_bytes, 0u);
    EXPECT_TRUE(counts[0].open);
  }
  Live second(*backend);
  json resumed = setup;
  resumed["setup"]["sessionResumption"]["handle"] = handle;
  ASSERT_TRUE(second.start(resumed));
  second.send_audio(Pcm(640, 50), 100.0);
  ASSERT_TRUE(wait_until([&] {
    const auto counts = backend->live_audio();
    return counts.size() == 2 && counts[1].received_bytes == 1280 && !counts[0].open;
  }));
  const auto counts = backend->live_audio();
  EXPECT_EQ(counts[1].resumed_bytes, 17600u);
}

TEST_F(LiveServerTest, MalformedMessageFaultSendsOneBadMessage) {
  Live live(*backend);
  ASSERT_TRUE(live.start(
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}}})));
  backend->send_malformed_live_message(gemstream::LiveMalformed::InvalidJson);
  live.ws.send_json({{"realtimeInput", {{"text", "Hello"}}}});
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  int invalid = 0;
  for (const auto &m : live.received) {
    if (!m.is_data())
      continue;
    try {
      (void)m.parsed();
    } catch (const json::exception &) {
      ++invalid;
    }
  }
  EXPECT_EQ(invalid, 1);
  EXPECT_EQ(live.model_text(), "Hello! How can I help you today?");
}

TEST_F(LiveServerTest, AdminEndpointScriptsLiveFaults) {
  const std::string faults = backend->base_url() + "/_backend/faults";
  auto answer = http("POST", faults,
                     R"({"live":{"malformed":"wrong_types",)"
                     R"("fail_next_setup":{"code":1011,"reason":"Internal error occurred."}}})");
  ASSERT_EQ(answer.status, 200) << answer.body;
  json state = json::parse(answer.body);
  EXPECT_EQ(state["live"]["malformed"], "wrong_types");
  EXPECT_EQ(state["live"]["fail_next_setup"]["code"], 1011);

  {
    Live refused(*backend);
    refused.ws.send_json(setup_message(kAudioModel));
    auto close = refused.wait_close(5s);
    ASSERT_TRUE(close);
    EXPECT_EQ(close->close_code, 1011);
    EXPECT_EQ(close->close_reason, "Internal error occurred.");
  }

  Live live(*backend);
  ASSERT_TRUE(live.start(
      setup_message(kTextModel, {{"generationConfig", {{"responseModalities", {"TEXT"}}}}})));
  live.ws.send_json({{"realtimeInput", {{"text", "Hello"}}}});
  ASSERT_TRUE(live.wait_for(turn_complete, 5s));
  bool wrong_types = false;
  for (const auto &[j, at] : live.messages())
    wrong_types |=
        has(j, "/serverContent/turnComplete") && j["serverContent"]["turnComplete"].is_string();
  EXPECT_TRUE(wrong_types);

  state = json::parse(http("GET", faults).body);
  EXPECT_EQ(state["live"]["sessions"], 1);
  EXPECT_TRUE(state["live"]["malformed"].is_null());
  answer = http("POST", faults,
                R"({"live":{"close_sessions":)"
                R"({"code":1011,"reason":"The service is currently unavailable."}}})");
  ASSERT_EQ(answer.status, 200) << answer.body;
  auto close = live.wait_close(5s);
  ASSERT_TRUE(close);
  EXPECT_EQ(close->close_code, 1011);
  EXPECT_EQ(close->close_reason, "The service is currently unavailable.");

  answer = http("POST", faults, R"({"live":{"malformed":"garbage"}})");
  EXPECT_EQ(answer.status, 400);
  answer = http("POST", faults, R"({"live":{"go_away_after_ms":1234},"reset":true})");
  ASSERT_EQ(answer.status, 200);
  EXPECT_EQ(json::parse(answer.body)["live"]["go_away_after_ms"], 1234);
  answer = http("POST", faults, R"({"reset":true})");
  EXPECT_EQ(json::parse(answer.body)["live"]["go_away_after_ms"], 600000);
}

TEST_F(LiveServerTest, CloseLiveSessionsFromTheApi) {
  Live live(*backend);
  ASSERT_TRUE(live.start(setup_message(kAudioModel)));
  backend->close_live_sessions(1011, "Internal error occurred.");
  auto close = live.wait_close(5s);
  ASSERT_TRUE(close);
  EXPECT_EQ(close->close_code, 1011);
  EXPECT_EQ(close->close_reason, "Internal error occurred.");
}

// ---------------------------------------------------------------------------------------------
// Speech building blocks

TEST(Speech, EnergyVadFindsOneUtteranceWithPaddingAndHangover) {
  gemstream::backend::VadConfig config;
  gemstream::backend::EnergyVad vad(config);
  const Pcm voice = gemstream::backend::synthesize_speech("good morning");
  Pcm stream(kInRate / 2, 0); // 500 ms of silence first
  stream.insert(stream.end(), voice.begin(), voice.end());
  stream.insert(stream.end(), kInRate, 0);
  std::vector<gemstream::backend::EnergyVad::Event> events;
  for (std::size_t i = 0; i < stream.size(); i += 640) {
    auto e = vad.feed(std::span(stream).subspan(i, std::min<std::size_t>(640, stream.size() - i)));
    events.insert(events.end(), std::make_move_iterator(e.begin()),
                  std::make_move_iterator(e.end()));
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, gemstream::backend::EnergyVad::Kind::SpeechStarted);
  EXPECT_EQ(events[1].kind, gemstream::backend::EnergyVad::Kind::SpeechEnded);
  const double seconds = double(events[1].utterance.size()) / kInRate;
  // The voice plus up to 300 ms before its onset and the 500 ms of hangover silence.
  EXPECT_GT(seconds, double(voice.size()) / kInRate + 0.3);
  EXPECT_LT(seconds, double(voice.size()) / kInRate + 0.9);
  EXPECT_FALSE(vad.in_speech());
  EXPECT_TRUE(vad.flush().empty());
}

TEST(Speech, ResampleKeepsDurationAndShape) {
  Pcm tone(1600);
  for (std::size_t i = 0; i < tone.size(); ++i)
    tone[i] = std::int16_t(10000 * std::sin(2 * std::numbers::pi * 440 * double(i) / kInRate));
  const Pcm up = gemstream::backend::resample_linear(tone, kInRate, kOutRate);
  ASSERT_EQ(up.size(), 2400u);
  for (std::size_t i = 0; i + 1 < up.size(); i += 97)
    EXPECT_NEAR(up[i], 10000 * std::sin(2 * std::numbers::pi * 440 * double(i) / kOutRate), 150)
        << i;
}

} // namespace
