#include "speech.h"

extern "C" {
#include <flite/flite.h>
cst_voice *register_cmu_us_rms(const char *voxdir);
}
#include <pocketsphinx.h>
#include <sphinxbase/ckd_alloc.h>
#include <sphinxbase/err.h>
#include <sphinxbase/ngram_model.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <utility>

#ifndef GEMSTREAM_POCKETSPHINX_MODELDIR
#define GEMSTREAM_POCKETSPHINX_MODELDIR "/usr/share/pocketsphinx/model"
#endif

namespace gemstream::backend {

// ---------------------------------------------------------------------------------------------
// Synthesis

namespace {

struct Flite {
  std::mutex mutex;
  cst_voice *voice = nullptr;

  static Flite &instance() {
    static Flite flite;
    return flite;
  }

private:
  Flite() {
    flite_init();
    voice = register_cmu_us_rms(nullptr);
  }
};

struct WaveDeleter {
  void operator()(cst_wave *w) const { delete_wave(w); }
};

} // namespace

Pcm synthesize_speech(std::string_view text) {
  Flite &flite = Flite::instance();
  if (!flite.voice)
    throw std::runtime_error("flite: the cmu_us_rms voice could not be registered");
  const std::string copy(text);
  std::unique_ptr<cst_wave, WaveDeleter> wave;
  {
    std::lock_guard lock(flite.mutex);
    wave.reset(flite_text_to_wave(copy.c_str(), flite.voice));
  }
  if (!wave || wave->num_samples < 0 || (wave->num_samples > 0 && !wave->samples))
    throw std::runtime_error("flite could not synthesise \"" + copy + "\"");
  const int channels = std::max(1, wave->num_channels);
  Pcm mono(std::size_t(wave->num_samples));
  for (std::size_t i = 0; i < mono.size(); ++i)
    mono[i] = wave->samples[i * std::size_t(channels)];
  if (wave->sample_rate != kSpeechRate)
    return resample_linear(mono, wave->sample_rate, kSpeechRate);
  return mono;
}

Pcm resample_linear(std::span<const std::int16_t> in, int from_rate, int to_rate) {
  if (from_rate <= 0 || to_rate <= 0)
    throw std::invalid_argument("resample_linear: sample rates must be positive");
  if (from_rate == to_rate || in.empty())
    return Pcm(in.begin(), in.end());
  const std::size_t out_len = std::size_t(
      (std::uint64_t(in.size()) * std::uint64_t(to_rate) + std::uint64_t(from_rate) / 2) /
      std::uint64_t(from_rate));
  Pcm out(out_len);
  const double step = double(from_rate) / double(to_rate);
  for (std::size_t i = 0; i < out_len; ++i) {
    const double pos = double(i) * step;
    const std::size_t k = std::min(std::size_t(pos), in.size() - 1);
    const double frac = pos - double(k);
    const double a = in[k];
    const double b = in[std::min(k + 1, in.size() - 1)];
    out[i] = std::int16_t(std::lround(a + (b - a) * frac));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Recognition

namespace {

std::vector<std::string> words_of(std::string_view sentence) {
  std::vector<std::string> words;
  std::string word;
  for (char c : sentence) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalpha(u) || c == '\'') {
      word += char(std::tolower(u));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty())
    words.push_back(std::move(word));
  return words;
}

// A trigram ARPA model over `sentences`: add-one unigrams, absolute discounting (D = 0.5) for
// bigrams and trigrams, and backoff weights that make every history's distribution sum to one.
// Trigrams matter: with bigrams alone, "set my background to a" taught the model "background to"
// so well that "make my chat background a peaceful beach sunset" came out with a "to" in it.
std::string trigram_arpa(const std::vector<std::vector<std::string>> &sentences) {
  using Followers = std::map<std::string, int>; // next word -> count
  std::map<std::string, int> unigrams;
  std::map<std::string, Followers> after_word;
  std::map<std::pair<std::string, std::string>, Followers> after_pair;
  int tokens = 0;
  for (const auto &words : sentences) {
    std::vector<std::string> seq{"<s>"};
    seq.insert(seq.end(), words.begin(), words.end());
    seq.push_back("</s>");
    for (std::size_t i = 0; i < seq.size(); ++i) {
      ++unigrams[seq[i]];
      if (seq[i] != "<s>")
        ++tokens;
      if (i >= 1)
        ++after_word[seq[i - 1]][seq[i]];
      if (i >= 2)
        ++after_pair[{seq[i - 2], seq[i - 1]}][seq[i]];
    }
  }
  constexpr double kDiscount = 0.5;
  const double vocabulary = double(unigrams.size() - 1); // <s> is never predicted
  auto total = [](const Followers &f) {
    int n = 0;
    for (const auto &[w, c] : f)
      n += c;
    return n;
  };
  auto p_unigram = [&](const std::string &w) {
    return (unigrams.at(w) + 1.0) / (tokens + vocabulary);
  };
  // The mass a history leaves to unseen followers, spread by the lower order's probabilities.
  auto backoff = [&](const Followers &seen, auto &&lower) {
    double seen_lower = 0;
    for (const auto &[w, c] : seen)
      seen_lower += lower(w);
    return (kDiscount * double(seen.size()) / total(seen)) / std::max(1e-9, 1.0 - seen_lower);
  };
  std::map<std::string, double> word_backoff;
  for (const auto &[history, next] : after_word)
    word_backoff[history] = backoff(next, p_unigram);
  auto p_bigram = [&](const std::string &history, const std::string &w) {
    const auto it = after_word.find(history);
    if (it == after_word.end())
      return p_unigram(w);
    if (const auto seen = it->second.find(w); seen != it->second.end())
      return (seen->second - kDiscount) / total(it->second);
    return word_backoff.at(history) * p_unigram(w);
  };

  std::size_t bigram_count = 0, trigram_count = 0;
  for (const auto &[history, next] : after_word)
    bigram_count += next.size();
  for (const auto &[history, next] : after_pair)
    trigram_count += next.size();
  std::ostringstream out;
  out << "\\data\\\nngram 1=" << unigrams.size() << "\nngram 2=" << bigram_count
      << "\nngram 3=" << trigram_count << "\n\n\\1-grams:\n";
  for (const auto &[word, count] : unigrams) {
    out << (word == "<s>" ? -99.0 : std::log10(p_unigram(word))) << ' ' << word;
    if (const auto it = word_backoff.find(word); it != word_backoff.end())
      out << ' ' << std::log10(it->second);
    out << '\n';
  }
  out << "\n\\2-grams:\n";
  for (const auto &[history, next] : after_word) {
    const int n = total(next);
    for (const auto &[w, c] : next) {
      out << std::log10((c - kDiscount) / n) << ' ' << history << ' ' << w;
      if (const auto it = after_pair.find({history, w}); it != after_pair.end())
        out << ' ' << std::log10(backoff(it->second, [&](const std::string &x) {
          return p_bigram(w, x);
        }));
      out << '\n';
    }
  }
  out << "\n\\3-grams:\n";
  for (const auto &[history, next] : after_pair) {
    const int n = total(next);
    for (const auto &[w, c] : next)
      out << std::log10((c - kDiscount) / n) << ' ' << history.first << ' ' << history.second << ' '
          << w << '\n';
  }
  out << "\n\\end\\\n";
  return out.str();
}

constexpr const char *kGeneralSearch = "_default";
constexpr const char *kHintedSearch = "hinted";
// Weight of the general model when interpolating it with the hint model.
constexpr float kGeneralWeight = 0.9f;

} // namespace

struct SpeechRecognizer::Decoder {
  cmd_ln_t *config = nullptr;
  ps_decoder_t *ps = nullptr;

  ~Decoder() {
    if (ps)
      ps_free(ps);
    if (config)
      cmd_ln_free_r(config);
  }
};

SpeechRecognizer &SpeechRecognizer::instance() {
  static SpeechRecognizer recognizer;
  return recognizer;
}

SpeechRecognizer::SpeechRecognizer() = default;
SpeechRecognizer::~SpeechRecognizer() = default;

void SpeechRecognizer::warm_up() {
  std::lock_guard lock(mutex_);
  ensure_decoder();
  apply_hints();
}

void SpeechRecognizer::set_phrase_hints(std::vector<std::string> phrases) {
  std::lock_guard lock(mutex_);
  if (phrases == hints_)
    return;
  hints_ = std::move(phrases);
  hints_applied_ = false;
}

void SpeechRecognizer::ensure_decoder() {
  if (decoder_)
    return;
  const std::filesystem::path root = GEMSTREAM_POCKETSPHINX_MODELDIR "/en-us";
  const std::filesystem::path hmm = root / "en-us";
  const std::filesystem::path lm = root / "en-us.lm.bin";
  const std::filesystem::path dict = root / "cmudict-en-us.dict";
  for (const auto &p : {hmm, lm, dict}) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec))
      throw std::runtime_error("speech recognition model missing: " + p.string() +
                               " (install the Debian package pocketsphinx-en-us)");
  }
  // pocketsphinx logs every decoder parameter to stderr unless told otherwise.
  static std::once_flag quiet;
  std::call_once(quiet, [] { err_set_logfp(nullptr); });

  auto decoder = std::make_unique<Decoder>();
  decoder->config =
      cmd_ln_init(nullptr, ps_args(), TRUE, "-hmm", hmm.c_str(), "-lm", lm.c_str(), "-dict",
                  dict.c_str(), "-logfn", "/dev/null", "-samprate", "16000",
                  // The flat-lexicon second pass costs about a fifth of the time and did worse
                  // on flite speech: 26% word errors against 18% over twenty phrases.
                  "-fwdflat", "no",
                  // No cap on active HMMs per frame: the default of 30000 (and even 100000) pruned
                  // the right path away, and flite's "hello how are you" came out as "hello hello
                  // argue". The beams alone keep the search bounded, at no measurable cost in time.
                  "-maxhmmpf", "-1", nullptr);
  if (!decoder->config)
    throw std::runtime_error("pocketsphinx rejected its configuration");
  decoder->ps = ps_init(decoder->config);
  if (!decoder->ps)
    throw std::runtime_error("pocketsphinx could not load the model in " + root.string());
  decoder_ = std::move(decoder);
  hints_applied_ = hints_.empty();
}

void SpeechRecognizer::apply_hints() {
  if (hints_applied_ || !decoder_)
    return;
  hints_applied_ = true;
  ps_decoder_t *ps = decoder_->ps;
  if (ps_set_search(ps, kGeneralSearch) < 0)
    throw std::runtime_error("pocketsphinx: the general language model search is missing");

  std::vector<std::vector<std::string>> sentences;
  for (const auto &phrase : hints_) {
    auto words = words_of(phrase);
    const bool known =
        !words.empty() && std::all_of(words.begin(), words.end(), [&](const auto &w) {
          char *phones = ps_lookup_word(ps, w.c_str());
          ckd_free(phones);
          return phones != nullptr;
        });
    if (known)
      sentences.push_back(std::move(words));
  }
  if (sentences.empty())
    return;

  // sphinxbase reads ARPA models only from files.
  char path[] = "/tmp/gemstream-hints-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0)
    throw std::runtime_error("cannot create a temporary file for the phrase-hint model");
  close(fd);
  { std::ofstream(path) << trigram_arpa(sentences); }
  // The model takes its own reference to the decoder's log tables (as ps_set_lm_file does).
  ngram_model_t *hinted = ngram_model_read(decoder_->config, path, NGRAM_ARPA, ps_get_logmath(ps));
  std::remove(path);
  if (!hinted)
    throw std::runtime_error("pocketsphinx could not read the phrase-hint model");
  ngram_model_t *general = ps_get_lm(ps, kGeneralSearch);
  if (!general) {
    ngram_model_free(hinted);
    throw std::runtime_error("pocketsphinx: the general language model is missing");
  }
  // A set retains its members, and a search retains its model: every reference taken here is
  // dropped once handed on.
  ngram_model_t *models[] = {general, hinted};
  const char *names[] = {"general", "hints"};
  const float32 weights[] = {kGeneralWeight, 1.0f - kGeneralWeight};
  ngram_model_t *set =
      ngram_model_set_init(decoder_->config, models, const_cast<char **>(names), weights, 2);
  ngram_model_free(hinted);
  if (!set)
    throw std::runtime_error("pocketsphinx could not interpolate the phrase-hint model");
  const int added = ps_set_lm(ps, kHintedSearch, set);
  ngram_model_free(set); // the search holds its own reference
  if (added < 0 || ps_set_search(ps, kHintedSearch) < 0)
    throw std::runtime_error("pocketsphinx could not activate the phrase-hint model");
}

std::string SpeechRecognizer::recognize(std::span<const std::int16_t> pcm) {
  std::lock_guard lock(mutex_);
  ensure_decoder();
  apply_hints();
  ps_decoder_t *ps = decoder_->ps;
  if (ps_start_utt(ps) < 0)
    throw std::runtime_error("pocketsphinx could not start an utterance");
  const int processed = ps_process_raw(ps, pcm.data(), pcm.size(), FALSE, TRUE);
  ps_end_utt(ps);
  if (processed < 0)
    throw std::runtime_error("pocketsphinx could not process the utterance");
  int32 score = 0;
  const char *hyp = ps_get_hyp(ps, &score);
  if (!hyp)
    return {};
  std::string text;
  for (const auto &w : words_of(hyp)) {
    if (!text.empty())
      text += ' ';
    text += w;
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Voice activity detection

EnergyVad::EnergyVad(VadConfig config)
    : config_(config), frame_samples_(std::size_t(std::max(1, config.sample_rate / 100))) {}

std::size_t EnergyVad::samples_for(std::chrono::milliseconds d) const {
  return std::size_t(std::max<long long>(0, d.count())) * std::size_t(config_.sample_rate) / 1000;
}

std::vector<EnergyVad::Event> EnergyVad::feed(std::span<const std::int16_t> samples) {
  std::vector<Event> events;
  while (!samples.empty()) {
    const std::size_t take = std::min(samples.size(), frame_samples_ - partial_.size());
    partial_.insert(partial_.end(), samples.begin(), samples.begin() + std::ptrdiff_t(take));
    samples = samples.subspan(take);
    if (partial_.size() == frame_samples_) {
      frame(partial_, events);
      partial_.clear();
    }
  }
  return events;
}

std::vector<EnergyVad::Event> EnergyVad::flush() {
  std::vector<Event> events;
  if (in_speech_) {
    utterance_.insert(utterance_.end(), partial_.begin(), partial_.end());
    events.push_back({Kind::SpeechEnded, std::exchange(utterance_, {})});
  }
  partial_.clear();
  history_.clear();
  in_speech_ = false;
  voiced_run_ = 0;
  unvoiced_run_ = 0;
  return events;
}

void EnergyVad::frame(std::span<const std::int16_t> frame, std::vector<Event> &events) {
  double energy = 0;
  for (const auto s : frame)
    energy += double(s) * double(s);
  const bool voiced = std::sqrt(energy / double(frame.size())) >= config_.threshold;
  const std::size_t frame_ms = 1000 * frame.size() / std::size_t(config_.sample_rate);

  if (!in_speech_) {
    history_.insert(history_.end(), frame.begin(), frame.end());
    voiced_run_ = voiced ? voiced_run_ + 1 : 0;
    if (voiced_run_ * frame_ms >= std::size_t(config_.start_duration.count())) {
      in_speech_ = true;
      unvoiced_run_ = 0;
      utterance_ = std::exchange(history_, {});
      events.push_back({Kind::SpeechStarted, {}});
      return;
    }
    const std::size_t keep =
        samples_for(config_.prefix_padding) + samples_for(config_.start_duration) + frame.size();
    if (history_.size() > keep)
      history_.erase(history_.begin(), history_.end() - std::ptrdiff_t(keep));
    return;
  }

  utterance_.insert(utterance_.end(), frame.begin(), frame.end());
  unvoiced_run_ = voiced ? 0 : unvoiced_run_ + 1;
  const bool silent_long_enough =
      unvoiced_run_ * frame_ms >=
      std::size_t(std::max<long long>(1, config_.silence_duration.count()));
  if (silent_long_enough || utterance_.size() >= samples_for(config_.max_utterance)) {
    in_speech_ = false;
    voiced_run_ = 0;
    unvoiced_run_ = 0;
    events.push_back({Kind::SpeechEnded, std::exchange(utterance_, {})});
  }
}

} // namespace gemstream::backend
