// Offline speech for the local backend's Live API: flite synthesis, pocketsphinx recognition and
// an energy voice activity detector. Mono signed 16-bit PCM throughout.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#ifndef GEMSTREAM_BACKEND_API
#if defined(__GNUC__)
#define GEMSTREAM_BACKEND_API __attribute__((visibility("default")))
#else
#define GEMSTREAM_BACKEND_API
#endif
#endif

namespace gemstream::backend {

using Pcm = std::vector<std::int16_t>;

// The Live API's native input rate; also what recognition and synthesis work at.
inline constexpr int kSpeechRate = 16000;

// Speaks `text` with flite's "rms" voice at kSpeechRate. Thread-safe: calls are serialised
// (flite voices are not re-entrant). Throws std::runtime_error if flite cannot synthesise.
GEMSTREAM_BACKEND_API Pcm synthesize_speech(std::string_view text);

// Linear-interpolation resampling; good enough for speech between 8 and 48 kHz.
GEMSTREAM_BACKEND_API Pcm resample_linear(std::span<const std::int16_t> in, int from_rate,
                                          int to_rate);

// Offline US English recognition with pocketsphinx. One decoder per process, created on first
// use (about a second of CPU: never call this from a network thread); calls are serialised.
class GEMSTREAM_BACKEND_API SpeechRecognizer {
public:
  static SpeechRecognizer &instance();
  ~SpeechRecognizer();
  SpeechRecognizer(const SpeechRecognizer &) = delete;
  SpeechRecognizer &operator=(const SpeechRecognizer &) = delete;

  // Loads the acoustic model, dictionary and language model now. Throws std::runtime_error
  // (naming the missing file and the package that provides it) if they cannot be loaded.
  void warm_up();

  // Phrases the recogniser should favour, the way cloud recognisers take phrase hints: a small
  // bigram model built from them is interpolated with the general language model. Sentences with
  // words outside the pronunciation dictionary are skipped.
  void set_phrase_hints(std::vector<std::string> phrases);

  // The best hypothesis for one utterance of kSpeechRate audio, lower-case words separated by
  // single spaces ("" when nothing was recognised).
  std::string recognize(std::span<const std::int16_t> pcm);

private:
  SpeechRecognizer();
  struct Decoder;
  void ensure_decoder(); // mutex_ held
  void apply_hints();    // mutex_ held

  std::mutex mutex_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<std::string> hints_;
  bool hints_applied_ = true;
};

// Energy-based voice activity detection with hangover, in 10 ms frames.
struct VadConfig {
  int sample_rate = kSpeechRate;
  // A frame is voiced when its RMS reaches this (S16 full scale is 32768; 500 is about -36 dBFS).
  double threshold = 500.0;
  // Voiced time needed before speech is declared to have started.
  std::chrono::milliseconds start_duration{60};
  // Unvoiced time after which speech is declared to have ended.
  std::chrono::milliseconds silence_duration{500};
  // Audio kept from before the start, so the utterance includes its onset.
  std::chrono::milliseconds prefix_padding{300};
  // An utterance is cut (ended) when it grows this long.
  std::chrono::milliseconds max_utterance{30000};
};

class GEMSTREAM_BACKEND_API EnergyVad {
public:
  enum class Kind { SpeechStarted, SpeechEnded };
  struct Event {
    Kind kind;
    Pcm utterance; // SpeechEnded: prefix padding, the speech and its trailing silence
  };

  explicit EnergyVad(VadConfig config = {});

  std::vector<Event> feed(std::span<const std::int16_t> samples);
  // Ends an utterance in progress now (the client paused its stream). Empty when silent.
  std::vector<Event> flush();
  bool in_speech() const { return in_speech_; }
  const VadConfig &config() const { return config_; }

private:
  void frame(std::span<const std::int16_t> frame, std::vector<Event> &events);
  std::size_t samples_for(std::chrono::milliseconds d) const;

  VadConfig config_;
  std::size_t frame_samples_;
  Pcm partial_;   // less than one frame, waiting for more samples
  Pcm history_;   // before speech: recent audio (prefix padding plus the start window)
  Pcm utterance_; // during speech
  bool in_speech_ = false;
  std::size_t voiced_run_ = 0;   // frames
  std::size_t unvoiced_run_ = 0; // frames
};

} // namespace gemstream::backend
