// Load test: N concurrent conversations through the gateway's WS /api/v1/live-session on
// loopback. Three processes: the local backend (`gemstream backend`), the gateway
// (`gemstream serve`) and this one, which plays N browsers: each connects, speaks a
// flite-spoken question as 20 ms Opus packets in real time, and reads the model's Opus answer.
//
// Prints per N: conversations that completed, connect-to-ready time, reply latency (from the
// end of the question's speech to the first packet of the answer, which includes the trailing
// silence the voice activity detection waits for), and the gateway's CPU time per second of
// conversation audio (in + out), with the concurrent conversations one core would carry at that
// cost (counting one second of audio each way per second of conversation, the most it can
// be). The backend's recognition and synthesis share the 2 cores, so latencies at high N
// mostly show the backend; the gateway's CPU figure is its own.
//
//   bench_gateway_live GEMSTREAM_BINARY [SESSIONS...]     (default 1 4 8 16)
//
// Exits 1 when a conversation did not complete; CTest runs it as test_gateway_load.
#include "bench_process.h"
#include "common/ws_client.h"
#include "speech.h" // the local backend's flite synthesis

#include <opus.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using gemstream::testing::WsClient;

namespace {

constexpr int kRate = 16000;
constexpr const char *kToken = "bench-token-0123456789abcdef";

std::vector<std::string> opus_packets(const std::vector<std::int16_t> &pcm) {
  int err = 0;
  OpusEncoder *enc = opus_encoder_create(kRate, 1, OPUS_APPLICATION_VOIP, &err);
  std::vector<std::string> packets;
  unsigned char buf[1500];
  for (std::size_t at = 0; at + kRate / 50 <= pcm.size(); at += kRate / 50) {
    const int n = opus_encode(enc, pcm.data() + at, kRate / 50, buf, sizeof buf);
    packets.emplace_back(reinterpret_cast<const char *>(buf), std::size_t(n > 0 ? n : 0));
  }
  opus_encoder_destroy(enc);
  return packets;
}

struct Result {
  bool ok = false;
  double ready_ms = 0;
  double reply_ms = 0;
  double audio_in_s = 0;
  double audio_out_s = 0;
  std::string failure;
};

// One browser: connect, speak (packets; speech ends after `speech_packets`), read the answer.
Result converse(std::uint16_t port, const std::vector<std::string> &packets,
                std::size_t speech_packets) {
  Result r;
  WsClient ws;
  const auto t0 = Clock::now();
  if (ws.connect(port, "/api/v1/live-session",
                 {std::string("Sec-WebSocket-Protocol: gemstream.v1, bearer.") + kToken}) != 101) {
    r.failure = "upgrade refused: " + ws.response_head.substr(0, ws.response_head.find('\r'));
    return r;
  }
  Clock::time_point speech_end{}, first_audio{};
  bool ready = false, done = false;
  std::size_t out_packets = 0;
  auto handle = [&](std::chrono::milliseconds wait) {
    const auto until = Clock::now() + wait;
    while (!done) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      bool binary = false;
      auto m = ws.next(std::max(left, 0ms), &binary);
      if (!m)
        return ws.close_code.has_value();
      if (binary) {
        if (out_packets++ == 0)
          first_audio = Clock::now();
        continue;
      }
      const auto j = nlohmann::json::parse(*m, nullptr, false);
      const std::string type = j.is_object() ? j.value("type", "") : "";
      if (type == "ready") {
        ready = true;
        r.ready_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      } else if (type == "turn_complete" && out_packets > 0) {
        done = true;
      } else if (type == "error") {
        r.failure = j.value("message", "error");
        return true;
      }
    }
    return false;
  };
  auto next = Clock::now();
  for (std::size_t i = 0; i < packets.size() && !done; ++i) {
    if (!ws.send_binary(packets[i])) {
      r.failure = "send failed";
      return r;
    }
    if (i + 1 == speech_packets)
      speech_end = Clock::now();
    next += 20ms;
    if (handle(std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now())))
      return r;
  }
  if (!done)
    handle(30s);
  if (!ready || !done) {
    if (r.failure.empty())
      r.failure = ready ? "no complete answer within 30 s" : "never ready";
    return r;
  }
  r.ok = true;
  r.reply_ms = std::chrono::duration<double, std::milli>(first_audio - speech_end).count();
  r.audio_in_s = double(packets.size()) * 0.02;
  r.audio_out_s = double(out_packets) * 0.02;
  return r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, std::size_t(p * double(v.size() - 1) + 0.5))];
}

} // namespace

int main(int argc, char **argv) {
  const std::vector<int> counts = gemstream::bench::session_counts(argc, argv, {1, 4, 8, 16});
  const int most = *std::max_element(counts.begin(), counts.end());

  const fs::path dir = fs::temp_directory_path() / ("bench-gateway-live-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::vector<std::int16_t> pcm(kRate / 2, 0);
  const auto speech = gemstream::backend::synthesize_speech("hello how are you"); // 16 kHz
  pcm.insert(pcm.end(), speech.begin(), speech.end());
  const std::size_t speech_packets = pcm.size() / (kRate / 50);
  pcm.insert(pcm.end(), std::size_t(kRate) * 2, 0); // the user waits, silent, for the answer
  const auto packets = opus_packets(pcm);

  {
    std::ofstream config(dir / "gateway.json");
    config << nlohmann::json{
        {"version", 1},
        {"listen", {{"address", "127.0.0.1"}, {"port", 0}}},
        {"auth", {{"tokens", {{{"user", "bench"}, {"token", kToken}}}}}},
        {"media", {{"dir", "media"}}},
        {"database", "jobs.sqlite"},
        {"ledger", "ledger.sqlite"},
        {"live", {{"max_sessions", most}, {"max_sessions_per_user", most}}}}.dump(2);
  }
  unsetenv("GOOGLE_API_KEY");
  unsetenv("GEMINI_API_KEY");
  auto [backend, backend_url] = gemstream::bench::start_backend(argv[1]);
  setenv("GEMSTREAM_BASE_URL", backend_url.c_str(), 1);
  auto [gateway, gateway_url] = gemstream::bench::start_and_read_line(
      argv[1], {"serve", "--config", (dir / "gateway.json").string(), "--quiet"});
  const auto colon = gateway_url.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "the gateway did not start (printed \"%s\")\n", gateway_url.c_str());
    return 1;
  }
  const auto port = std::uint16_t(std::atoi(gateway_url.c_str() + colon + 1));
  std::printf("backend %s, gateway %s (separate processes); question %.2f s of speech + 2 s "
              "of silence, as 20 ms Opus packets in real time\n",
              backend_url.c_str(), gateway_url.c_str(), double(speech.size()) / kRate);
  std::printf("%-9s %5s %10s %11s %11s %11s %12s %15s %15s\n", "sessions", "ok", "ready ms",
              "reply p50", "reply p95", "reply max", "gateway cpu", "cpu ms/audio s",
              "sessions/core");

  int failures = 0;
  for (const int n : counts) {
    std::vector<Result> results(static_cast<std::size_t>(n));
    const double cpu0 = gemstream::bench::process_cpu_seconds(gateway);
    std::vector<std::thread> clients;
    for (int i = 0; i < n; ++i)
      clients.emplace_back([&, i] {
        // Spread the starts over a second, as real users do not press at the same instant.
        std::this_thread::sleep_for(std::chrono::milliseconds(i * 1000 / n));
        results[std::size_t(i)] = converse(port, packets, speech_packets);
      });
    for (auto &t : clients)
      t.join();
    std::this_thread::sleep_for(500ms); // the gateway closes the upstream sessions
    const double cpu = gemstream::bench::process_cpu_seconds(gateway) - cpu0;
    std::vector<double> ready, reply;
    double audio = 0;
    int ok = 0;
    for (const auto &r : results) {
      if (!r.ok) {
        std::fprintf(stderr, "  a conversation failed: %s\n", r.failure.c_str());
        ++failures;
        continue;
      }
      ++ok;
      ready.push_back(r.ready_ms);
      reply.push_back(r.reply_ms);
      audio += r.audio_in_s + r.audio_out_s;
    }
    const double ms_per_audio_s = audio > 0 ? cpu * 1000 / audio : 0;
    std::printf("%-9d %2d/%-2d %10.0f %11.0f %11.0f %11.0f %10.2f s %15.2f %15.0f\n", n, ok, n,
                percentile(ready, 0.5), percentile(reply, 0.5), percentile(reply, 0.95),
                percentile(reply, 1.0), cpu, ms_per_audio_s,
                ms_per_audio_s > 0 ? 1000 / ms_per_audio_s / 2 : 0);
    std::fflush(stdout);
  }
  kill(gateway, SIGTERM);
  kill(backend, SIGTERM);
  waitpid(gateway, nullptr, 0);
  waitpid(backend, nullptr, 0);
  fs::remove_all(dir);
  // As a test (test_gateway_load): every conversation must have completed.
  return failures == 0 ? 0 : 1;
}
