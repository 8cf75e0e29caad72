// Benchmark: the client-side cost of a Gemini Live session through geminilivesink and
// geminilivesrc, against a local backend running in a separate process (so its speech
// recognition and synthesis are not counted). Each session asks a flite-spoken question from
// a WAV file at real time (sync=true) and plays the spoken answer into a syncing sink.
// Prints CPU time per second of audio (sent + received) and the number of concurrent
// real-time sessions one core would sustain at that cost.
//
//   bench_live GEMSTREAM_BINARY [SESSIONS...]     (default 1 2 4)
#include "bench_process.h"
#include "elements.h"

#include <gst/gst.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <signal.h>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::atomic<std::uint64_t> g_reply_samples{0};

GstPadProbeReturn count_samples(GstPad *, GstPadProbeInfo *info, gpointer) {
  g_reply_samples += gst_buffer_get_size(GST_PAD_PROBE_INFO_BUFFER(info)) / 2;
  return GST_PAD_PROBE_OK;
}

} // namespace

int main(int argc, char **argv) {
  const std::vector<int> counts = gemstream::bench::session_counts(argc, argv, {1, 2, 4});

  gst_init(nullptr, nullptr);
  gemstream_register_static();
  const fs::path wav = fs::temp_directory_path() / ("bench-live-" + std::to_string(getpid()) + ".wav");
  if (std::system(("flite -voice rms -t 'hello how are you today' -o " + wav.string()).c_str()) != 0)
    return 1;
  const double question_s = (fs::file_size(wav) - 44) / 2.0 / 16000.0;  // flite: 16 kHz mono
  auto [backend, url] = gemstream::bench::start_backend(argv[1]);
  std::printf("backend %s (separate process), question %.2f s of speech\n", url.c_str(), question_s);
  std::printf("%-9s %8s %9s %10s %14s %16s\n", "sessions", "wall s", "cpu s", "audio s",
              "cpu ms/audio s", "sessions / core");

  int run = 0;
  for (int n : counts) {
    std::vector<GstElement *> pipelines;
    for (int i = 0; i < n; ++i) {
      const std::string session = "bench-" + std::to_string(run) + "-" + std::to_string(i);
      const std::string launch =
          "filesrc location=" + wav.string() +
          " ! wavparse ! audioconvert ! audioresample ! geminilivesink sync=true reply-timeout=8000 "
          "session=" + session + " base-url=" + url + "  geminilivesrc name=speech session=" +
          session + " ! fakesink sync=true";
      GError *err = nullptr;
      GstElement *p = gst_parse_launch(launch.c_str(), &err);
      if (!p) {
        std::fprintf(stderr, "%s\n", err->message);
        return 1;
      }
      GstElement *speech = gst_bin_get_by_name(GST_BIN(p), "speech");
      GstPad *pad = gst_element_get_static_pad(speech, "src");
      gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_samples, nullptr, nullptr);
      gst_object_unref(pad);
      gst_object_unref(speech);
      pipelines.push_back(p);
    }
    g_reply_samples = 0;
    const double cpu0 = gemstream::bench::self_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    for (auto *p : pipelines)
      gst_element_set_state(p, GST_STATE_PLAYING);
    int ok = 0;
    for (auto *p : pipelines) {
      GstBus *bus = gst_element_get_bus(p);
      GstMessage *m = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                                 GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
      ok += m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
      if (m)
        gst_message_unref(m);
      gst_object_unref(bus);
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = gemstream::bench::self_cpu_seconds() - cpu0;
    for (auto *p : pipelines) {
      gst_element_set_state(p, GST_STATE_NULL);
      gst_object_unref(p);
    }
    const double audio = n * question_s + g_reply_samples / 24000.0;
    const double per_audio = cpu / audio * 1000;
    // One real-time session moves (question + answer) seconds of audio in `wall / n`... its own
    // wall time; at `cpu / n` CPU seconds per session over `wall` seconds, one core holds:
    const double per_core = cpu > 0 ? wall / (cpu / n) : 0;
    std::printf("%-9d %8.2f %9.3f %10.2f %14.2f %16.0f%s\n", n, wall, cpu, audio, per_audio,
                per_core, ok == n ? "" : "   (some sessions did not finish)");
    ++run;
  }
  kill(backend, SIGTERM);
  waitpid(backend, nullptr, 0);
  fs::remove(wav);
  return 0;
}
