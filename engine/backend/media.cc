#include "media.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace gemstream::backend {
namespace {

constexpr double kTwoPi = 2.0 * std::numbers::pi;

// ---------------------------------------------------------------------------------------------
// FFmpeg plumbing

struct AvDeleter {
  void operator()(AVCodecContext *p) const { avcodec_free_context(&p); }
  void operator()(AVFrame *p) const { av_frame_free(&p); }
  void operator()(AVPacket *p) const { av_packet_free(&p); }
  void operator()(SwsContext *p) const { sws_freeContext(p); }
  void operator()(AVFormatContext *p) const { avformat_free_context(p); }
};
template <typename T> using AvPtr = std::unique_ptr<T, AvDeleter>;

std::string av_error_text(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

int check(int ret, std::string_view what) {
  if (ret < 0)
    throw std::runtime_error(std::string(what) + ": " + av_error_text(ret));
  return ret;
}

template <typename T> T *check_alloc(T *p) {
  if (!p)
    throw std::bad_alloc();
  return p;
}

AvPtr<AVFrame> make_frame(AVPixelFormat format, int width, int height) {
  AvPtr<AVFrame> frame(check_alloc(av_frame_alloc()));
  frame->format = format;
  frame->width = width;
  frame->height = height;
  check(av_frame_get_buffer(frame.get(), 0), "allocate video frame");
  return frame;
}

AvPtr<SwsContext> make_scaler(int src_w, int src_h, AVPixelFormat src_fmt, int dst_w, int dst_h,
                              AVPixelFormat dst_fmt) {
  AvPtr<SwsContext> sws(sws_getContext(src_w, src_h, src_fmt, dst_w, dst_h, dst_fmt,
                                       SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
  if (!sws)
    throw std::runtime_error("cannot convert " + std::to_string(src_w) + "x" + std::to_string(src_h) + " " +
                             av_get_pix_fmt_name(src_fmt) + " to " + std::to_string(dst_w) + "x" +
                             std::to_string(dst_h) + " " + av_get_pix_fmt_name(dst_fmt));
  // Output is tagged BT.709 limited range (what HD encoders and players assume).
  const int *bt709 = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(sws.get(), bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16);
  return sws;
}

// A seekable in-memory AVIOContext: the mp4 muxer seeks back to patch box sizes.
class MemoryOutput {
public:
  MemoryOutput() {
    constexpr int kBufferSize = 64 * 1024;
    auto *buffer = static_cast<unsigned char *>(check_alloc(av_malloc(kBufferSize)));
    ctx_ = avio_alloc_context(buffer, kBufferSize, 1, this, nullptr, &write, &seek);
    if (!ctx_) {
      av_free(buffer);
      throw std::bad_alloc();
    }
  }
  ~MemoryOutput() {
    av_freep(&ctx_->buffer);
    avio_context_free(&ctx_);
  }
  MemoryOutput(const MemoryOutput &) = delete;
  MemoryOutput &operator=(const MemoryOutput &) = delete;

  AVIOContext *get() const { return ctx_; }

  std::string take() {
    avio_flush(ctx_);
    if (ctx_->error < 0)
      check(ctx_->error, "write MP4");
    return std::move(data_);
  }

private:
#if LIBAVFORMAT_VERSION_MAJOR >= 61
  static int write(void *opaque, const uint8_t *buf, int size) {
#else
  static int write(void *opaque, uint8_t *buf, int size) {
#endif
    auto *self = static_cast<MemoryOutput *>(opaque);
    try {
      const auto end = static_cast<std::size_t>(self->pos_) + static_cast<std::size_t>(size);
      if (end > self->data_.size())
        self->data_.resize(end);
      std::memcpy(self->data_.data() + self->pos_, buf, static_cast<std::size_t>(size));
      self->pos_ = static_cast<int64_t>(end);
      return size;
    } catch (const std::bad_alloc &) {
      return AVERROR(ENOMEM);
    }
  }

  static int64_t seek(void *opaque, int64_t offset, int whence) {
    auto *self = static_cast<MemoryOutput *>(opaque);
    const auto size = static_cast<int64_t>(self->data_.size());
    int64_t target = 0;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return size;
    case SEEK_SET: target = offset; break;
    case SEEK_CUR: target = self->pos_ + offset; break;
    case SEEK_END: target = size + offset; break;
    default: return AVERROR(EINVAL);
    }
    if (target < 0)
      return AVERROR(EINVAL);
    self->pos_ = target;
    return target;
  }

  AVIOContext *ctx_ = nullptr;
  std::string data_;
  int64_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Colour

struct Rgb {
  float r = 0, g = 0, b = 0; // 0..1, sRGB-encoded
};

constexpr Rgb rgb8(int r, int g, int b) {
  return {static_cast<float>(r) / 255.f, static_cast<float>(g) / 255.f, static_cast<float>(b) / 255.f};
}
Rgb mix(Rgb a, Rgb b, float t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
Rgb scaled(Rgb c, float k) { return {c.r * k, c.g * k, c.b * k}; }
float luminance(Rgb c) { return 0.2126f * c.r + 0.7152f * c.g + 0.0722f * c.b; }
const Rgb kWhite{1, 1, 1};
const Rgb kBlack{0, 0, 0};

std::uint8_t to_byte(float v) { return static_cast<std::uint8_t>(std::clamp(v, 0.f, 1.f) * 255.f + 0.5f); }

Rgb hsv(float hue_degrees, float s, float v) {
  const float h = std::fmod(std::fmod(hue_degrees, 360.f) + 360.f, 360.f) / 60.f;
  const float c = v * s;
  const float x = c * (1 - std::fabs(std::fmod(h, 2.f) - 1));
  const float m = v - c;
  Rgb out;
  switch (static_cast<int>(h)) {
  case 0: out = {c, x, 0}; break;
  case 1: out = {x, c, 0}; break;
  case 2: out = {0, c, x}; break;
  case 3: out = {0, x, c}; break;
  case 4: out = {x, 0, c}; break;
  default: out = {c, 0, x}; break;
  }
  return {out.r + m, out.g + m, out.b + m};
}

// Moves `fg` towards white or black until it stands out against `bg`, keeping its hue.
Rgb with_contrast(Rgb fg, Rgb bg, float min_difference) {
  const float lb = luminance(bg);
  const Rgb target = lb < 0.5f ? kWhite : kBlack;
  for (float t = 0; t <= 1.f; t += 0.05f) {
    const Rgb c = mix(fg, target, t);
    if (std::fabs(luminance(c) - lb) >= min_difference)
      return c;
  }
  return target;
}

// ---------------------------------------------------------------------------------------------
// Reading the prompt

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// Deterministic generator for everything "random" in the media (splitmix64).
class Random {
public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1 << 24); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }

private:
  std::uint64_t state_;
};

std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> words;
  std::string current;
  for (const char c : text) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      current += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!current.empty()) {
      words.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty())
    words.push_back(std::move(current));
  return words;
}

// A pattern ending in '*' matches any word it starts; otherwise the whole word.
bool word_matches(std::string_view word, std::string_view pattern) {
  if (pattern.ends_with('*'))
    return word.starts_with(pattern.substr(0, pattern.size() - 1));
  return word == pattern;
}

template <typename E> struct Keyword {
  E value;
  std::string_view pattern;
};

// The value with the most keyword hits; ties go to the lower enumerator. nullopt without hits.
template <typename E, std::size_t N, std::size_t K>
std::optional<E> most_mentioned(const std::vector<std::string> &words,
                                const std::array<Keyword<E>, K> &table) {
  std::array<int, N> hits{};
  for (const auto &word : words)
    for (const auto &kw : table)
      if (word_matches(word, kw.pattern))
        ++hits[static_cast<std::size_t>(kw.value)];
  const auto best = std::max_element(hits.begin(), hits.end());
  if (*best == 0)
    return std::nullopt;
  return static_cast<E>(best - hits.begin());
}

struct NamedColour {
  std::string_view name;
  Rgb rgb;
};

constexpr std::array kColourWords = std::to_array<NamedColour>({
    {"white", rgb8(255, 255, 255)},    {"black", rgb8(0, 0, 0)},          {"red", rgb8(220, 20, 60)},
    {"crimson", rgb8(220, 20, 60)},    {"maroon", rgb8(128, 0, 32)},      {"orange", rgb8(255, 140, 0)},
    {"amber", rgb8(255, 191, 0)},      {"yellow", rgb8(255, 221, 0)},     {"gold", rgb8(255, 215, 0)},
    {"golden", rgb8(255, 215, 0)},     {"green", rgb8(34, 139, 34)},      {"emerald", rgb8(0, 155, 119)},
    {"olive", rgb8(128, 128, 0)},      {"mint", rgb8(152, 255, 204)},     {"teal", rgb8(0, 128, 128)},
    {"turquoise", rgb8(64, 224, 208)}, {"cyan", rgb8(0, 200, 220)},       {"blue", rgb8(30, 90, 220)},
    {"navy", rgb8(0, 0, 128)},         {"indigo", rgb8(75, 0, 130)},      {"purple", rgb8(128, 0, 128)},
    {"violet", rgb8(143, 0, 255)},     {"lavender", rgb8(181, 126, 220)}, {"magenta", rgb8(255, 0, 255)},
    {"pink", rgb8(255, 105, 180)},     {"coral", rgb8(255, 127, 80)},     {"peach", rgb8(255, 203, 164)},
    {"brown", rgb8(139, 69, 19)},      {"beige", rgb8(225, 205, 170)},    {"cream", rgb8(255, 253, 208)},
    {"grey", rgb8(128, 128, 128)},     {"gray", rgb8(128, 128, 128)},     {"silver", rgb8(192, 192, 192)},
});

// Scene words imply colours when the prompt names none ("peaceful beach sunset").
struct SceneColours {
  std::string_view word;
  std::array<Rgb, 2> colours;
};
constexpr std::array kSceneWords = std::to_array<SceneColours>({
    {"sunset", {rgb8(255, 127, 80), rgb8(110, 40, 120)}},
    {"sunrise", {rgb8(255, 180, 90), rgb8(255, 105, 130)}},
    {"ocean", {rgb8(0, 60, 120), rgb8(64, 200, 210)}},
    {"sea", {rgb8(0, 60, 120), rgb8(64, 200, 210)}},
    {"beach", {rgb8(64, 200, 210), rgb8(225, 205, 170)}},
    {"forest", {rgb8(20, 80, 40), rgb8(140, 190, 90)}},
    {"night", {rgb8(10, 15, 60), rgb8(200, 200, 255)}},
    {"fire", {rgb8(200, 30, 0), rgb8(255, 170, 0)}},
    {"snow", {rgb8(235, 245, 255), rgb8(120, 160, 210)}},
    {"desert", {rgb8(210, 150, 80), rgb8(120, 60, 30)}},
});

enum class Style { Cosmic, Nature, Abstract, Minimal, kCount };
constexpr auto kStyleWords = std::to_array<Keyword<Style>>({
    {Style::Cosmic, "cosmic"},
    {Style::Cosmic, "cosmos"},
    {Style::Cosmic, "galax*"},
    {Style::Cosmic, "celestial"},
    {Style::Cosmic, "nebula*"},
    {Style::Cosmic, "starry"},
    {Style::Cosmic, "universe"},
    {Style::Cosmic, "astral"},
    {Style::Nature, "nature"},
    {Style::Nature, "natural"},
    {Style::Nature, "organic"},
    {Style::Nature, "botanical"},
    {Style::Nature, "landscape*"},
    {Style::Nature, "earthy"},
    {Style::Abstract, "abstract"},
    {Style::Abstract, "geometr*"},
    {Style::Abstract, "bauhaus"},
    {Style::Minimal, "minimal*"},
});

enum class Mood { Energetic, Mysterious, Focused, Calm, kCount };
constexpr auto kMoodWords = std::to_array<Keyword<Mood>>({
    {Mood::Calm, "calm*"},         {Mood::Calm, "serene"},         {Mood::Calm, "serenity"},
    {Mood::Calm, "peace*"},        {Mood::Calm, "tranquil*"},      {Mood::Calm, "relax*"},
    {Mood::Calm, "soothing"},      {Mood::Calm, "restful"},        {Mood::Energetic, "energ*"},
    {Mood::Energetic, "dynamic"},  {Mood::Energetic, "vibrant"},   {Mood::Energetic, "upbeat"},
    {Mood::Energetic, "lively"},   {Mood::Energetic, "exciting"},  {Mood::Energetic, "intense"},
    {Mood::Energetic, "rhythm*"},  {Mood::Mysterious, "myster*"},  {Mood::Mysterious, "eerie"},
    {Mood::Mysterious, "enigma*"}, {Mood::Mysterious, "mystic*"},  {Mood::Mysterious, "fog*"},
    {Mood::Mysterious, "misty"},    {Mood::Mysterious, "shadow*"},  {Mood::Mysterious, "moody"},
    {Mood::Focused, "focus*"},     {Mood::Focused, "concentrat*"}, {Mood::Focused, "steady"},
    {Mood::Focused, "study*"},     {Mood::Focused, "productiv*"},  {Mood::Focused, "clarity"},
});

enum class Shape { Lotus, Mountain, Star, Crescent, Heart, Drop, Circle, kCount };
constexpr auto kShapeWords = std::to_array<Keyword<Shape>>({
    {Shape::Lotus, "lotus"},        {Shape::Lotus, "medit*"},      {Shape::Lotus, "yoga"},
    {Shape::Lotus, "flower*"},      {Shape::Lotus, "bloom*"},      {Shape::Lotus, "blossom*"},
    {Shape::Lotus, "petal*"},       {Shape::Lotus, "rose"},        {Shape::Lotus, "garden*"},
    {Shape::Mountain, "mountain*"}, {Shape::Mountain, "peak*"},    {Shape::Mountain, "hill*"},
    {Shape::Mountain, "hik*"},      {Shape::Mountain, "climb*"},   {Shape::Mountain, "summit"},
    {Shape::Mountain, "adventur*"}, {Shape::Mountain, "pine"},     {Shape::Star, "star"},
    {Shape::Star, "stars"},         {Shape::Star, "sparkl*"},      {Shape::Star, "award*"},
    {Shape::Star, "achiev*"},       {Shape::Star, "success*"},     {Shape::Star, "goal*"},
    {Shape::Crescent, "moon*"},     {Shape::Crescent, "sleep*"},   {Shape::Crescent, "night*"},
    {Shape::Crescent, "dream*"},    {Shape::Crescent, "bedtime"},  {Shape::Crescent, "lunar"},
    {Shape::Heart, "heart*"},       {Shape::Heart, "love*"},       {Shape::Heart, "kindness"},
    {Shape::Heart, "gratitude"},    {Shape::Heart, "compassion*"}, {Shape::Heart, "care"},
    {Shape::Drop, "water"},         {Shape::Drop, "rain*"},        {Shape::Drop, "drop*"},
    {Shape::Drop, "hydrat*"},       {Shape::Drop, "river*"},       {Shape::Drop, "tear*"},
    {Shape::Circle, "sun"},         {Shape::Circle, "circle*"},    {Shape::Circle, "orb*"},
    {Shape::Circle, "planet*"},     {Shape::Circle, "balance*"},   {Shape::Circle, "breath*"},
    {Shape::Circle, "mind*"},       {Shape::Circle, "zen"},
});

struct PromptTraits {
  std::uint64_t seed = 0;
  std::vector<Rgb> colours; // named in the prompt, in order of appearance
  std::optional<Style> style;
  Mood mood = Mood::Calm;
  Shape shape = Shape::Circle;
};

// The text between the first pair of double quotes, or the whole prompt.
std::string_view quoted_motif(std::string_view prompt) {
  const auto open = prompt.find('"');
  if (open != std::string_view::npos) {
    const auto close = prompt.find('"', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      return prompt.substr(open + 1, close - open - 1);
  }
  return prompt;
}

PromptTraits read_prompt(std::string_view prompt) {
  PromptTraits traits;
  traits.seed = fnv1a(prompt);
  const auto words = words_of(prompt);

  for (const auto &word : words)
    for (const auto &named : kColourWords)
      if (word == named.name)
        traits.colours.push_back(named.rgb);
  if (traits.colours.empty())
    for (const auto &word : words)
      for (const auto &scene : kSceneWords)
        if (word == scene.word)
          traits.colours.insert(traits.colours.end(), scene.colours.begin(), scene.colours.end());

  traits.style = most_mentioned<Style, static_cast<std::size_t>(Style::kCount)>(words, kStyleWords);
  traits.mood =
      most_mentioned<Mood, static_cast<std::size_t>(Mood::kCount)>(words, kMoodWords).value_or(Mood::Calm);

  const auto motif = quoted_motif(prompt);
  const auto shape =
      most_mentioned<Shape, static_cast<std::size_t>(Shape::kCount)>(words_of(motif), kShapeWords);
  traits.shape = shape.value_or(static_cast<Shape>(fnv1a(motif) % static_cast<std::uint64_t>(Shape::kCount)));
  return traits;
}

// Background, motif and accent: the named colours in order, the rest derived from the seed.
struct Palette {
  Rgb base;
  Rgb motif;
  Rgb accent;
};

Palette palette_for(const PromptTraits &traits) {
  Random random(traits.seed ^ 0x5eedc0105ull);
  const float hue = random.uniform(0.f, 360.f);
  Palette p;
  const auto &named = traits.colours;
  if (named.empty()) {
    p.base = hsv(hue, random.uniform(0.45f, 0.7f), random.uniform(0.3f, 0.55f));
    p.motif = hsv(hue + random.uniform(150.f, 210.f), random.uniform(0.3f, 0.6f), 0.95f);
  } else if (named.size() == 1) {
    p.base = named[0];
    p.motif = luminance(p.base) < 0.5f ? mix(p.base, kWhite, 0.92f) : scaled(p.base, 0.12f);
  } else {
    p.base = named[0];
    p.motif = named[1];
  }
  p.accent = named.size() > 2 ? named[2] : mix(p.base, p.motif, 0.5f);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Cover images: a background treatment plus a centred silhouette defined by a signed distance
// function (negative inside), in units of the image's shorter side with y pointing up.

struct Vec2 {
  float x, y;
};
Vec2 operator-(Vec2 a, Vec2 b) { return {a.x - b.x, a.y - b.y}; }
Vec2 operator*(Vec2 a, float k) { return {a.x * k, a.y * k}; }
float dot(Vec2 a, Vec2 b) { return a.x * b.x + a.y * b.y; }
float length(Vec2 a) { return std::sqrt(dot(a, a)); }
float sign(float v) { return v < 0 ? -1.f : (v > 0 ? 1.f : 0.f); }
Vec2 rotated(Vec2 p, float radians) {
  const float c = std::cos(radians), s = std::sin(radians);
  return {c * p.x - s * p.y, s * p.x + c * p.y};
}

float sd_circle(Vec2 p, float r) { return length(p) - r; }

// Vertical lens: two circles of radius r whose centres sit d either side of the axis.
float sd_vesica(Vec2 p, float r, float d) {
  p = {std::fabs(p.x), std::fabs(p.y)};
  const float b = std::sqrt(r * r - d * d);
  return (p.y - b) * d > p.x * b ? length(p - Vec2{0, b}) : length(p - Vec2{-d, 0}) - r;
}

// Isosceles triangle with its apex at the origin and its base at y = -q.y, half-width q.x.
float sd_triangle(Vec2 p, Vec2 q) {
  p = {std::fabs(p.x), -p.y};
  const Vec2 a = p - q * std::clamp(dot(p, q) / dot(q, q), 0.f, 1.f);
  const Vec2 b = p - Vec2{q.x * std::clamp(p.x / q.x, 0.f, 1.f), q.y};
  const float s = -sign(q.y);
  const float dx = std::min(dot(a, a), dot(b, b));
  const float dy = std::min(s * (p.x * q.y - p.y * q.x), s * (p.y - q.y));
  return -std::sqrt(dx) * sign(dy);
}

float sd_star5(Vec2 p, float r, float rf) {
  const Vec2 k1{0.809016994f, -0.587785252f};
  const Vec2 k2{-k1.x, k1.y};
  p.x = std::fabs(p.x);
  p = p - k1 * (2.f * std::max(dot(k1, p), 0.f));
  p = p - k2 * (2.f * std::max(dot(k2, p), 0.f));
  p.x = std::fabs(p.x);
  p.y -= r;
  const Vec2 ba = Vec2{-k1.y, k1.x} * rf - Vec2{0, 1};
  const float h = std::clamp(dot(p, ba) / dot(ba, ba), 0.f, r);
  return length(p - ba * h) * sign(p.y * ba.x - p.x * ba.y);
}

// Heart with its tip at the origin, about 1.1 tall.
float sd_heart(Vec2 p) {
  p.x = std::fabs(p.x);
  if (p.y + p.x > 1.f)
    return length(p - Vec2{0.25f, 0.75f}) - std::numbers::sqrt2_v<float> / 4.f;
  const float m = 0.5f * std::max(p.x + p.y, 0.f);
  const float d = std::min(dot(p - Vec2{0, 1}, p - Vec2{0, 1}), dot(p - Vec2{m, m}, p - Vec2{m, m}));
  return std::sqrt(d) * sign(p.x - p.y);
}

// Every shape covers the centre of the image, so the centre pixel is always the motif.
float motif_distance(Shape shape, Vec2 p) {
  switch (shape) {
  case Shape::Lotus: {
    constexpr float kR = 0.4306f, kD = 0.3506f; // a 0.16 x 0.5 petal
    const Vec2 pivot{0, -0.22f};
    float d = sd_vesica(p - Vec2{0, 0.03f}, kR, kD);
    for (const float angle : {0.6f, -0.6f})
      d = std::min(d, sd_vesica(rotated(p - pivot, angle) - Vec2{0, 0.25f}, kR, kD));
    for (const float angle : {1.1f, -1.1f}) {
      const Vec2 q = (rotated(p - pivot, angle) - Vec2{0, 0.2f}) * (1 / 0.8f);
      d = std::min(d, sd_vesica(q, kR, kD) * 0.8f);
    }
    // A flat lens along the water line hides where the petals meet.
    const Vec2 base = p - pivot;
    return std::min(d, sd_vesica({base.y, base.x}, 0.425f, 0.385f));
  }
  case Shape::Mountain:
    return std::min(sd_triangle(p - Vec2{-0.06f, 0.3f}, {0.42f, 0.56f}),
                    sd_triangle(p - Vec2{0.2f, 0.1f}, {0.3f, 0.36f}));
  case Shape::Star: return sd_star5(p - Vec2{0, -0.02f}, 0.36f, 0.45f);
  case Shape::Crescent:
    return std::max(sd_circle(p - Vec2{0.1f, 0}, 0.34f), -sd_circle(p - Vec2{0.4f, 0.08f}, 0.32f));
  case Shape::Heart: return sd_heart((p - Vec2{0, -0.3f}) * (1 / 0.55f)) * 0.55f;
  case Shape::Drop:
    return std::min(sd_circle(p - Vec2{0, -0.1f}, 0.22f), sd_triangle(p - Vec2{0, 0.34f}, {0.19f, 0.33f}));
  case Shape::Circle:
  case Shape::kCount: break;
  }
  return sd_circle(p, 0.3f);
}

float smoothstep(float e0, float e1, float x) {
  const float t = std::clamp((x - e0) / (e1 - e0), 0.f, 1.f);
  return t * t * (3 - 2 * t);
}

class CoverPainter {
public:
  CoverPainter(const ImageSpec &spec, const PromptTraits &traits)
      : w_(spec.width), h_(spec.height), unit_(static_cast<float>(std::min(w_, h_))), traits_(traits),
        palette_(palette_for(traits)), random_(traits.seed) {
    const Rgb background = traits.style == Style::Cosmic ? scaled(palette_.base, 0.35f) : palette_.base;
    palette_.motif = with_contrast(palette_.motif, background, 0.3f);
  }

  std::vector<std::uint8_t> paint() {
    std::vector<Rgb> pixels(static_cast<std::size_t>(w_) * h_);
    paint_background(pixels);
    paint_motif(pixels);
    std::vector<std::uint8_t> rgb(pixels.size() * 3);
    for (std::size_t i = 0; i < pixels.size(); ++i) {
      rgb[3 * i] = to_byte(pixels[i].r);
      rgb[3 * i + 1] = to_byte(pixels[i].g);
      rgb[3 * i + 2] = to_byte(pixels[i].b);
    }
    return rgb;
  }

private:
  Rgb &at(std::vector<Rgb> &pixels, int x, int y) const {
    return pixels[static_cast<std::size_t>(y) * w_ + x];
  }

  void paint_background(std::vector<Rgb> &pixels) {
    const Rgb base = palette_.base;
    if (!traits_.style) {
      // Soft vertical gradient: light falls from above.
      for (int y = 0; y < h_; ++y) {
        const Rgb c = scaled(base, 1.08f - 0.18f * static_cast<float>(y) / static_cast<float>(h_));
        std::fill_n(pixels.begin() + static_cast<std::ptrdiff_t>(y) * w_, w_, c);
      }
      return;
    }
    switch (*traits_.style) {
    case Style::Minimal: std::fill(pixels.begin(), pixels.end(), base); return;
    case Style::Abstract: paint_bands(pixels); return;
    case Style::Nature: paint_hills(pixels); return;
    case Style::Cosmic: paint_starfield(pixels); return;
    case Style::kCount: break;
    }
  }

  void paint_bands(std::vector<Rgb> &pixels) {
    const Rgb base = palette_.base;
    const std::array<Rgb, 4> shades{base, scaled(base, 0.82f), mix(base, palette_.accent, 0.3f),
                                    mix(base, kWhite, 0.12f)};
    const float slope = random_.uniform(0.35f, 0.9f) * (random_.uniform() < 0.5f ? -1.f : 1.f);
    const float band = std::max(4.f, unit_ / random_.uniform(5.f, 8.f));
    const float edge = (1.f + std::fabs(slope)) / band; // one pixel, in band units
    const auto shade = [&shades](float index) {
      const auto i = static_cast<std::int64_t>(index) % static_cast<std::int64_t>(shades.size());
      return shades[static_cast<std::size_t>(i < 0 ? i + static_cast<std::int64_t>(shades.size()) : i)];
    };
    for (int y = 0; y < h_; ++y)
      for (int x = 0; x < w_; ++x) {
        const float s = (static_cast<float>(x) + slope * static_cast<float>(y)) / band;
        const float index = std::floor(s);
        const float frac = s - index;
        const Rgb here = shade(index);
        const Rgb next = shade(index + 1);
        at(pixels, x, y) = mix(here, next, smoothstep(1.f - edge, 1.f, frac));
      }
  }

  void paint_hills(std::vector<Rgb> &pixels) {
    const Rgb base = palette_.base;
    for (int y = 0; y < h_; ++y) {
      const Rgb sky = mix(base, kWhite, 0.18f * (1.f - static_cast<float>(y) / static_cast<float>(h_)));
      std::fill_n(pixels.begin() + static_cast<std::ptrdiff_t>(y) * w_, w_, sky);
    }
    constexpr int kLayers = 3;
    for (int layer = 0; layer < kLayers; ++layer) {
      const Rgb colour = mix(scaled(base, 0.86f - 0.12f * static_cast<float>(layer)), palette_.accent, 0.12f);
      const float f1 = random_.uniform(0.8f, 1.6f), p1 = random_.uniform(0.f, 6.3f);
      const float f2 = random_.uniform(2.f, 3.5f), p2 = random_.uniform(0.f, 6.3f);
      const float level = 0.6f + 0.12f * static_cast<float>(layer);
      for (int x = 0; x < w_; ++x) {
        const float u = static_cast<float>(x) / unit_;
        const float top =
            (level + 0.05f * std::sin(kTwoPi * f1 * u + p1) + 0.025f * std::sin(kTwoPi * f2 * u + p2)) *
            static_cast<float>(h_);
        for (int y = std::max(0, static_cast<int>(top) - 1); y < h_; ++y) {
          const float coverage = std::clamp(static_cast<float>(y) + 0.5f - top, 0.f, 1.f);
          Rgb &px = at(pixels, x, y);
          px = mix(px, colour, coverage);
        }
      }
    }
  }

  void paint_starfield(std::vector<Rgb> &pixels) {
    const Rgb deep = scaled(palette_.base, 0.35f);
    const Rgb glow = scaled(palette_.base, 0.8f);
    const float cx = static_cast<float>(w_) / 2, cy = static_cast<float>(h_) / 2;
    for (int y = 0; y < h_; ++y)
      for (int x = 0; x < w_; ++x) {
        const float dx = (static_cast<float>(x) - cx) / unit_, dy = (static_cast<float>(y) - cy) / unit_;
        at(pixels, x, y) = mix(deep, glow, 0.6f * std::exp(-(dx * dx + dy * dy) / 0.08f));
      }
    const int stars = static_cast<int>(static_cast<float>(w_) * static_cast<float>(h_) / 2500.f);
    const Rgb starlight = mix(kWhite, palette_.accent, 0.25f);
    for (int i = 0; i < stars; ++i) {
      const float sx = random_.uniform(0.f, static_cast<float>(w_));
      const float sy = random_.uniform(0.f, static_cast<float>(h_));
      const float radius = random_.uniform(0.5f, 1.2f) * unit_ / 1024.f + 0.4f;
      const float brightness = random_.uniform(0.4f, 1.f);
      const int x0 = std::max(0, static_cast<int>(sx - radius - 1));
      const int x1 = std::min(w_ - 1, static_cast<int>(sx + radius + 1));
      const int y0 = std::max(0, static_cast<int>(sy - radius - 1));
      const int y1 = std::min(h_ - 1, static_cast<int>(sy + radius + 1));
      for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) {
          const float d = std::hypot(static_cast<float>(x) + 0.5f - sx, static_cast<float>(y) + 0.5f - sy);
          const float coverage = std::clamp(radius + 0.5f - d, 0.f, 1.f) * brightness;
          Rgb &px = at(pixels, x, y);
          px = mix(px, starlight, coverage);
        }
    }
  }

  void paint_motif(std::vector<Rgb> &pixels) {
    // Shapes stay within 0.45 units of the centre; the cosmic glow reaches a little further.
    const bool glow = traits_.style == Style::Cosmic;
    const float reach = (glow ? 0.6f : 0.46f) * unit_;
    const float cx = static_cast<float>(w_) / 2, cy = static_cast<float>(h_) / 2;
    const int x0 = std::max(0, static_cast<int>(cx - reach)),
              x1 = std::min(w_, static_cast<int>(cx + reach) + 1);
    const int y0 = std::max(0, static_cast<int>(cy - reach)),
              y1 = std::min(h_, static_cast<int>(cy + reach) + 1);
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        const Vec2 p{(static_cast<float>(x) + 0.5f - cx) / unit_,
                     (cy - static_cast<float>(y) - 0.5f) / unit_};
        const float d = motif_distance(traits_.shape, p) * unit_; // in pixels
        Rgb &px = at(pixels, x, y);
        if (glow && d > 0)
          px = mix(px, palette_.motif, 0.35f * std::exp(-d / (0.04f * unit_)));
        px = mix(px, palette_.motif, std::clamp(0.5f - d, 0.f, 1.f));
      }
  }

  int w_, h_;
  float unit_;
  const PromptTraits &traits_;
  Palette palette_;
  Random random_;
};

std::string encode_png(const std::vector<std::uint8_t> &rgb, int width, int height) {
  const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
  if (!codec)
    throw std::runtime_error("render_png: this FFmpeg build has no PNG encoder");
  AvPtr<AVCodecContext> enc(check_alloc(avcodec_alloc_context3(codec)));
  enc->width = width;
  enc->height = height;
  enc->pix_fmt = AV_PIX_FMT_RGB24;
  enc->time_base = {1, 1};
  // Paeth prediction: gradients and flat areas compress far better than unfiltered rows.
  AVDictionary *options = nullptr;
  av_dict_set(&options, "pred", "paeth", 0);
  const int opened = avcodec_open2(enc.get(), codec, &options);
  av_dict_free(&options);
  check(opened, "render_png: open PNG encoder");

  auto frame = make_frame(AV_PIX_FMT_RGB24, width, height);
  for (int y = 0; y < height; ++y)
    std::memcpy(frame->data[0] + static_cast<std::ptrdiff_t>(y) * frame->linesize[0],
                rgb.data() + static_cast<std::size_t>(y) * width * 3, static_cast<std::size_t>(width) * 3);
  frame->pts = 0;
  check(avcodec_send_frame(enc.get(), frame.get()), "render_png: encode");
  check(avcodec_send_frame(enc.get(), nullptr), "render_png: flush encoder");
  AvPtr<AVPacket> packet(check_alloc(av_packet_alloc()));
  check(avcodec_receive_packet(enc.get(), packet.get()), "render_png: encode");
  return {reinterpret_cast<const char *>(packet->data), static_cast<std::size_t>(packet->size)};
}

// ---------------------------------------------------------------------------------------------
// Video: a mood-driven colour field drawn at reduced resolution (the motion is smooth, so the
// upscale costs nothing visible) and converted to YUV by swscale.

class SineTable {
public:
  SineTable() {
    for (std::size_t i = 0; i < kSize; ++i)
      table_[i] = static_cast<float>(std::sin(kTwoPi * static_cast<double>(i) / kSize));
  }
  float operator()(float radians) const {
    const float index = radians * static_cast<float>(kSize / kTwoPi);
    const auto i = static_cast<std::int64_t>(index + (index < 0 ? -0.5f : 0.5f));
    return table_[static_cast<std::size_t>(i) & (kSize - 1)];
  }

private:
  static constexpr std::size_t kSize = 4096;
  std::array<float, kSize> table_{};
};

class MoodField {
public:
  MoodField(Mood mood, const PromptTraits &traits, int width, int height)
      : mood_(mood), w_(width), h_(height), aspect_(static_cast<float>(width) / static_cast<float>(height)) {
    Random random(traits.seed ^ 0xf1e1dull);
    for (auto &phase : phase_)
      phase = random.uniform(0.f, static_cast<float>(kTwoPi));
    build_ramp(palette_for(traits));
  }

  // Fills a packed RGB24 image of the field's size with the field at time t (seconds).
  void paint(float t, std::uint8_t *rgb, int linesize) const {
    const FrameState s = frame_state(t);
    for (int y = 0; y < h_; ++y) {
      std::uint8_t *row = rgb + static_cast<std::ptrdiff_t>(y) * linesize;
      const float ny = (static_cast<float>(y) + 0.5f) / static_cast<float>(h_);
      for (int x = 0; x < w_; ++x) {
        const float nx = (static_cast<float>(x) + 0.5f) / static_cast<float>(h_);
        const float v = std::clamp(value(s, nx, ny, t), 0.f, 1.f);
        const auto &c = ramp_[static_cast<std::size_t>(v * 255.f + 0.5f)];
        float shade = 1.f;
        if (mood_ == Mood::Mysterious) {
          const float dx = nx / aspect_ - 0.5f, dy = ny - 0.5f;
          shade = std::max(0.f, 1.f - 1.2f * (dx * dx + dy * dy));
        }
        row[3 * x] = static_cast<std::uint8_t>(static_cast<float>(c[0]) * shade);
        row[3 * x + 1] = static_cast<std::uint8_t>(static_cast<float>(c[1]) * shade);
        row[3 * x + 2] = static_cast<std::uint8_t>(static_cast<float>(c[2]) * shade);
      }
    }
  }

private:
  // Per-frame quantities shared by every pixel.
  struct FrameState {
    float dir_x = 0, dir_y = 0;       // energetic: stripe direction
    float centre_x = 0, centre_y = 0; // energetic ripple centre / mysterious light
  };

  FrameState frame_state(float t) const {
    FrameState s;
    if (mood_ == Mood::Energetic) {
      const float angle = 0.7f * t + phase_[0];
      s.dir_x = std::cos(angle);
      s.dir_y = std::sin(angle);
      s.centre_x = aspect_ * (0.5f + 0.3f * sin_(1.9f * t + phase_[1]));
      s.centre_y = 0.5f + 0.3f * sin_(2.6f * t + phase_[2]);
    } else if (mood_ == Mood::Mysterious) {
      s.centre_x = aspect_ * (0.5f + 0.25f * sin_(0.11f * t + phase_[1]));
      s.centre_y = 0.5f + 0.2f * sin_(0.13f * t + phase_[2]);
    }
    return s;
  }

  // Rates are in radians per second and deliberately share no common period with the clip
  // length: like a real model's clip, the last frame does not flow back into the first.
  float value(const FrameState &s, float x, float y, float t) const {
    switch (mood_) {
    case Mood::Calm:
      return 0.5f + 0.22f * sin_(2.1f * x + 1.3f * y + 0.42f * t + phase_[0]) +
             0.16f * sin_(3.1f * y - 1.2f * x - 0.29f * t + phase_[1]) +
             0.10f * sin_(4.3f * (x + 0.7f * y) + 0.21f * t + phase_[2]);
    case Mood::Energetic: {
      const float stripes = sin_(11.f * (x * s.dir_x + y * s.dir_y) - 8.5f * t);
      const float dx = x - s.centre_x, dy = y - s.centre_y;
      const float ripples = sin_(16.f * std::sqrt(dx * dx + dy * dy) - 10.f * t);
      return 0.5f + 0.5f * std::clamp(1.4f * (stripes + ripples), -1.f, 1.f);
    }
    case Mood::Mysterious: {
      const float dx = x - s.centre_x, dy = y - s.centre_y;
      const float light = std::max(0.f, 1.f - (dx * dx + dy * dy) / 0.09f);
      return 0.42f + 0.22f * sin_(1.3f * x + 0.13f * t + phase_[0]) * sin_(1.7f * y - 0.1f * t + phase_[1]) +
             0.14f * sin_(2.6f * x - 1.9f * y + 0.17f * t + phase_[2]) +
             0.08f * sin_(5.1f * x + 3.7f * y - 0.23f * t) + 0.3f * light * light;
    }
    case Mood::Focused:
    case Mood::kCount: break;
    }
    const float dx = x - aspect_ / 2, dy = y - 0.5f;
    return 0.72f - 0.9f * (dx * dx + dy * dy) + 0.02f * sin_(0.9f * t + phase_[0]) +
           0.03f * sin_(1.5f * x + 0.05f * t + phase_[1]);
  }

  void build_ramp(const Palette &p) {
    std::array<Rgb, 4> stops;
    switch (mood_) {
    case Mood::Energetic: stops = {scaled(p.base, 0.2f), p.base, p.motif, mix(p.motif, kWhite, 0.35f)}; break;
    case Mood::Mysterious:
      stops = {scaled(p.base, 0.1f), scaled(p.base, 0.35f), scaled(p.accent, 0.5f), scaled(p.motif, 0.65f)};
      break;
    case Mood::Focused:
      stops = {scaled(p.base, 0.55f), scaled(p.base, 0.8f), p.base, mix(p.base, p.motif, 0.3f)};
      break;
    case Mood::Calm:
    case Mood::kCount: stops = {scaled(p.base, 0.75f), p.base, p.accent, mix(p.motif, kWhite, 0.15f)}; break;
    }
    for (std::size_t i = 0; i < ramp_.size(); ++i) {
      const float v = static_cast<float>(i) / 255.f * 3.f;
      const auto seg = std::min<std::size_t>(static_cast<std::size_t>(v), 2);
      const Rgb c = mix(stops[seg], stops[seg + 1], smoothstep(0.f, 1.f, v - static_cast<float>(seg)));
      ramp_[i] = {to_byte(c.r), to_byte(c.g), to_byte(c.b)};
    }
  }

  Mood mood_;
  int w_, h_;
  float aspect_;
  std::array<float, 3> phase_{};
  std::array<std::array<std::uint8_t, 3>, 256> ramp_{};
  SineTable sin_;
};

// How a start image moves: a slow push-in and drift whose speed follows the mood, while the
// mood's colour field fades in over it.
struct ImageMotion {
  float zoom_per_second;
  float overlay; // final opacity of the mood field
};

ImageMotion image_motion(Mood mood) {
  switch (mood) {
  case Mood::Energetic: return {0.02f, 0.35f};
  case Mood::Mysterious: return {0.008f, 0.3f};
  case Mood::Focused: return {0.003f, 0.15f};
  case Mood::Calm:
  case Mood::kCount: break;
  }
  return {0.006f, 0.25f};
}

// Decodes a PNG or JPEG into a frame of its native format.
AvPtr<AVFrame> decode_image(const std::string &bytes) {
  static constexpr std::string_view kPngMagic{"\x89PNG\r\n\x1a\n", 8};
  static constexpr std::string_view kJpegMagic{"\xff\xd8\xff", 3};
  AVCodecID id;
  const char *kind;
  if (std::string_view(bytes).starts_with(kPngMagic)) {
    id = AV_CODEC_ID_PNG;
    kind = "PNG";
  } else if (std::string_view(bytes).starts_with(kJpegMagic)) {
    id = AV_CODEC_ID_MJPEG;
    kind = "JPEG";
  } else {
    throw std::runtime_error("render_mp4: start_image is neither PNG nor JPEG (" +
                             std::to_string(bytes.size()) + " bytes)");
  }
  const std::string context = std::string("render_mp4: decode start_image as ") + kind;
  const AVCodec *codec = avcodec_find_decoder(id);
  if (!codec)
    throw std::runtime_error(context + ": this FFmpeg build has no decoder for it");
  constexpr std::size_t kMaxBytes = 64u << 20;
  if (bytes.size() > kMaxBytes)
    throw std::runtime_error(context + ": " + std::to_string(bytes.size()) + " bytes is more than 64 MiB");
  AvPtr<AVCodecContext> dec(check_alloc(avcodec_alloc_context3(codec)));
  dec->thread_count = 1;
  check(avcodec_open2(dec.get(), codec, nullptr), context);

  AvPtr<AVPacket> packet(check_alloc(av_packet_alloc()));
  check(av_new_packet(packet.get(), static_cast<int>(bytes.size())), context);
  std::memcpy(packet->data, bytes.data(), bytes.size());
  check(avcodec_send_packet(dec.get(), packet.get()), context);
  check(avcodec_send_packet(dec.get(), nullptr), context);
  AvPtr<AVFrame> frame(check_alloc(av_frame_alloc()));
  check(avcodec_receive_frame(dec.get(), frame.get()), context);
  if (frame->width <= 0 || frame->height <= 0)
    throw std::runtime_error(context + ": image has no pixels");
  return frame;
}

// Scales `image` to cover width x height (centre crop, no bars) as YUV420P.
AvPtr<AVFrame> cover_frame(const AVFrame &image, int width, int height) {
  // JPEG decodes to the deprecated full-range "J" formats; swscale wants the plain format plus
  // an explicit range.
  auto src_fmt = static_cast<AVPixelFormat>(image.format);
  bool full_range = image.color_range == AVCOL_RANGE_JPEG;
  static constexpr std::array<std::pair<AVPixelFormat, AVPixelFormat>, 5> kFullRange{{
      {AV_PIX_FMT_YUVJ420P, AV_PIX_FMT_YUV420P},
      {AV_PIX_FMT_YUVJ422P, AV_PIX_FMT_YUV422P},
      {AV_PIX_FMT_YUVJ444P, AV_PIX_FMT_YUV444P},
      {AV_PIX_FMT_YUVJ440P, AV_PIX_FMT_YUV440P},
      {AV_PIX_FMT_YUVJ411P, AV_PIX_FMT_YUV411P},
  }};
  for (const auto &[j, plain] : kFullRange)
    if (src_fmt == j) {
      src_fmt = plain;
      full_range = true;
    }
  auto rgb = make_frame(AV_PIX_FMT_RGB24, image.width, image.height);
  {
    AvPtr<SwsContext> to_rgb(
        sws_getContext(image.width, image.height, src_fmt, image.width, image.height, AV_PIX_FMT_RGB24,
                       SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr, nullptr));
    if (!to_rgb)
      throw std::runtime_error(std::string("render_mp4: start_image pixel format ") +
                               (av_get_pix_fmt_name(src_fmt) ? av_get_pix_fmt_name(src_fmt) : "?") +
                               " is not supported");
    const int *bt601 = sws_getCoefficients(SWS_CS_DEFAULT);
    sws_setColorspaceDetails(to_rgb.get(), bt601, full_range ? 1 : 0, bt601, 1, 0, 1 << 16, 1 << 16);
    sws_scale(to_rgb.get(), image.data, image.linesize, 0, image.height, rgb->data, rgb->linesize);
  }
  int crop_w = image.width, crop_h = image.height;
  if (static_cast<int64_t>(image.width) * height > static_cast<int64_t>(image.height) * width)
    crop_w =
        std::max<int>(1, static_cast<int>(std::lround(static_cast<double>(image.height) * width / height)));
  else
    crop_h =
        std::max<int>(1, static_cast<int>(std::lround(static_cast<double>(image.width) * height / width)));
  const int x0 = (image.width - crop_w) / 2, y0 = (image.height - crop_h) / 2;

  auto out = make_frame(AV_PIX_FMT_YUV420P, width, height);
  auto scaler = make_scaler(crop_w, crop_h, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P);
  const std::uint8_t *src[4] = {rgb->data[0] + static_cast<std::ptrdiff_t>(y0) * rgb->linesize[0] + x0 * 3};
  const int src_stride[4] = {rgb->linesize[0]};
  sws_scale(scaler.get(), src, src_stride, 0, crop_h, out->data, out->linesize);
  return out;
}

// Writes `src` zoomed by `zoom` (>= 1) around its centre shifted by (pan_x, pan_y) (fractions of
// the frame) into `dst`, bilinear. With zoom 1 and no pan it is an exact copy.
void zoom_into(const AVFrame &src, AVFrame &dst, float zoom, float pan_x, float pan_y) {
  for (int plane = 0; plane < 3; ++plane) {
    const int pw = plane == 0 ? src.width : (src.width + 1) / 2;
    const int ph = plane == 0 ? src.height : (src.height + 1) / 2;
    const auto table = [zoom](int n, float pan, std::vector<int> &index, std::vector<int> &weight) {
      index.resize(static_cast<std::size_t>(n));
      weight.resize(static_cast<std::size_t>(n));
      const float half = static_cast<float>(n) / 2;
      for (int i = 0; i < n; ++i) {
        const float s = std::clamp(half + pan * static_cast<float>(n) +
                                       (static_cast<float>(i) + 0.5f - half) / zoom - 0.5f,
                                   0.f, static_cast<float>(n - 1));
        const int i0 = std::min(static_cast<int>(s), n - 1);
        index[static_cast<std::size_t>(i)] = i0;
        weight[static_cast<std::size_t>(i)] = static_cast<int>((s - static_cast<float>(i0)) * 256.f + 0.5f);
      }
    };
    std::vector<int> xi, xw, yi, yw;
    table(pw, pan_x, xi, xw);
    table(ph, pan_y, yi, yw);
    const int stride = src.linesize[plane];
    for (int y = 0; y < ph; ++y) {
      const std::uint8_t *r0 = src.data[plane] + static_cast<std::ptrdiff_t>(yi[y]) * stride;
      const std::uint8_t *r1 = yi[y] + 1 < ph ? r0 + stride : r0;
      const int fy = yw[y];
      std::uint8_t *out = dst.data[plane] + static_cast<std::ptrdiff_t>(y) * dst.linesize[plane];
      for (int x = 0; x < pw; ++x) {
        const int x0 = xi[x], x1 = std::min(x0 + 1, pw - 1), fx = xw[x];
        const int top = r0[x0] * (256 - fx) + r0[x1] * fx;
        const int bottom = r1[x0] * (256 - fx) + r1[x1] * fx;
        out[x] = static_cast<std::uint8_t>((top * (256 - fy) + bottom * fy + 32768) >> 16);
      }
    }
  }
}

// dst = dst + (overlay - dst) * alpha / 256 on every plane of two YUV420P frames of one size.
void blend_into(AVFrame &dst, const AVFrame &overlay, int alpha) {
  for (int plane = 0; plane < 3; ++plane) {
    const int pw = plane == 0 ? dst.width : (dst.width + 1) / 2;
    const int ph = plane == 0 ? dst.height : (dst.height + 1) / 2;
    for (int y = 0; y < ph; ++y) {
      std::uint8_t *d = dst.data[plane] + static_cast<std::ptrdiff_t>(y) * dst.linesize[plane];
      const std::uint8_t *o = overlay.data[plane] + static_cast<std::ptrdiff_t>(y) * overlay.linesize[plane];
      for (int x = 0; x < pw; ++x)
        d[x] = static_cast<std::uint8_t>(d[x] + (((o[x] - d[x]) * alpha + 128) >> 8));
    }
  }
}

// Generated ambience: filtered noise and slow tones whose character follows the mood.
class Ambience {
public:
  Ambience(Mood mood, std::uint64_t seed, int sample_rate, double total_seconds)
      : mood_(mood), rate_(sample_rate), total_(total_seconds), random_(seed ^ 0xa0d10ull) {
    static constexpr std::array kRoots{110.0, 123.47, 130.81, 146.83, 164.81};
    root_ = kRoots[seed % kRoots.size()];
    swell_phase_ = random_.uniform(0.f, static_cast<float>(kTwoPi));
  }

  void render(float *left, float *right, int count) {
    for (int i = 0; i < count; ++i, ++n_) {
      const double t = static_cast<double>(n_) / rate_;
      auto [l, r] = sample(t);
      const double fade = std::min({1.0, t / 0.05, std::max(0.0, total_ - t) / 0.3});
      left[i] = static_cast<float>(std::tanh(l) * fade);
      right[i] = static_cast<float>(std::tanh(r) * fade);
    }
  }

private:
  struct Lowpass {
    double state = 0;
    double operator()(double x, double coefficient) { return state += coefficient * (x - state); }
  };
  double coefficient(double cutoff_hz) const { return 1.0 - std::exp(-kTwoPi * cutoff_hz / rate_); }
  double white() { return random_.uniform() * 2.0 - 1.0; }
  static double tone(double hz, double t, double phase = 0) { return std::sin(kTwoPi * hz * t + phase); }

  std::pair<double, double> sample(double t) {
    switch (mood_) {
    case Mood::Energetic: return energetic(t);
    case Mood::Mysterious: return mysterious(t);
    case Mood::Focused: return focused(t);
    case Mood::Calm:
    case Mood::kCount: break;
    }
    return calm(t);
  }

  // Surf-like swells of low noise under an open fifth.
  std::pair<double, double> calm(double t) {
    const double k = coefficient(350);
    const double swell = 0.55 + 0.45 * std::sin(kTwoPi * t / 6.5 + swell_phase_);
    const double nl = lp_[1](lp_[0](white(), k), k) * 1.6 * swell;
    const double nr = lp_[3](lp_[2](white(), k), k) * 1.6 * swell;
    const double pad = 0.07 * (tone(root_, t) * (0.6 + 0.4 * std::sin(kTwoPi * 0.15 * t)) +
                               tone(root_ * 1.5, t) * (0.6 + 0.4 * std::sin(kTwoPi * 0.11 * t + 1.0)));
    const double octave = 0.04 * tone(root_ * 2, t, 0.5);
    return {nl + pad + octave * 0.6, nr + pad + octave};
  }

  // A 120 BPM pulse: swept kick on the beat, noise hats off the beat, gated bass.
  std::pair<double, double> energetic(double t) {
    const double beat = std::fmod(t, 0.5);
    const double kick_freq = 50 + 90 * std::exp(-beat / 0.03);
    kick_phase_ += kTwoPi * kick_freq / rate_;
    if (beat < 1.0 / rate_)
      kick_phase_ = 0;
    const double kick = 0.6 * std::sin(kick_phase_) * std::exp(-beat / 0.12);
    const double x = white();
    const double hiss = x - lp_[0](x, coefficient(4000));
    const double hat = 0.35 * hiss * std::exp(-std::fmod(t + 0.25, 0.5) / 0.03);
    const double bass = 0.12 * std::tanh(3 * tone(root_ / 2, t)) * (beat < 0.35 ? 1.0 : 0.2);
    const double lead = 0.05 * tone(root_ * 2, t) * (0.5 + 0.5 * std::sin(kTwoPi * 4 * t));
    return {kick + bass + hat * 0.8 + lead, kick + bass + hat + lead * 0.7};
  }

  // Beating low drone and wind whose colour wanders.
  std::pair<double, double> mysterious(double t) {
    const double swell = 0.6 + 0.4 * std::sin(kTwoPi * t / 9 + swell_phase_);
    const double drone = 0.1 * swell * (tone(55, t) + tone(55.7, t) + 0.7 * tone(82.4, t));
    const double cutoff = 600 + 300 * std::sin(kTwoPi * t / 5.3);
    const double x = white();
    const double band = lp_[0](x, coefficient(cutoff)) - lp_[1](x, coefficient(cutoff / 3));
    const double shimmer = 0.02 * tone(root_ * 8, t) * std::max(0.0, std::sin(kTwoPi * t / 7));
    return {drone + 1.2 * band + shimmer, drone + 1.2 * band - shimmer};
  }

  // Steady brown noise and a quiet fifth: nothing that pulls attention.
  std::pair<double, double> focused(double t) {
    brown_[0] = 0.995 * brown_[0] + 0.025 * white();
    brown_[1] = 0.995 * brown_[1] + 0.025 * white();
    const double pad = 0.05 * tone(root_ * 2, t) + 0.03 * tone(root_ * 3, t);
    return {1.1 * brown_[0] + pad, 1.1 * brown_[1] + pad};
  }

  Mood mood_;
  int rate_;
  double total_;
  Random random_;
  double root_ = 110;
  double swell_phase_ = 0;
  double kick_phase_ = 0;
  std::array<Lowpass, 4> lp_{};
  std::array<double, 2> brown_{};
  std::int64_t n_ = 0;
};

// Both encoders report their settings and statistics at INFO level on every clip; demote that
// chatter per context instead of touching the process-wide log level.
constexpr int kQuietEncoder = AV_LOG_VERBOSE - AV_LOG_INFO;

// An MP4 (moov at the end, like most encoders) with one H.264 and one AAC track, in memory.
class Mp4Writer {
public:
  Mp4Writer(const VideoSpec &spec, int sample_rate) {
    AVFormatContext *raw = nullptr;
    check(avformat_alloc_output_context2(&raw, nullptr, "mp4", nullptr), "render_mp4: create MP4 muxer");
    fmt_.reset(raw);
    fmt_->pb = io_.get();
    fmt_->flags |= AVFMT_FLAG_CUSTOM_IO;
    open_video(spec);
    open_audio(sample_rate);
    check(avformat_write_header(fmt_.get(), nullptr), "render_mp4: write MP4 header");
  }

  AVCodecContext &audio() { return *aenc_; }

  void write_video(const AVFrame *frame) { encode(*venc_, *vstream_, frame); }
  void write_audio(const AVFrame *frame) { encode(*aenc_, *astream_, frame); }

  std::string finish() {
    write_video(nullptr);
    write_audio(nullptr);
    check(av_write_trailer(fmt_.get()), "render_mp4: finish MP4");
    return io_.take();
  }

private:
  void open_video(const VideoSpec &spec) {
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec)
      throw std::runtime_error("render_mp4: this FFmpeg build has no libx264 encoder");
    venc_.reset(check_alloc(avcodec_alloc_context3(codec)));
    venc_->width = spec.width;
    venc_->height = spec.height;
    venc_->pix_fmt = AV_PIX_FMT_YUV420P;
    venc_->time_base = {1, spec.fps};
    venc_->framerate = {spec.fps, 1};
    venc_->sample_aspect_ratio = {1, 1};
    venc_->gop_size = 2 * spec.fps;
    venc_->thread_count = 2;
    venc_->color_range = AVCOL_RANGE_MPEG;
    venc_->colorspace = AVCOL_SPC_BT709;
    venc_->color_primaries = AVCOL_PRI_BT709;
    venc_->color_trc = AVCOL_TRC_BT709;
    venc_->log_level_offset = kQuietEncoder;
    if (fmt_->oformat->flags & AVFMT_GLOBALHEADER)
      venc_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary *options = nullptr;
    av_dict_set(&options, "preset", "superfast", 0);
    av_dict_set(&options, "profile", "high", 0);
    av_dict_set(&options, "crf", "23", 0);
    const int opened = avcodec_open2(venc_.get(), codec, &options);
    av_dict_free(&options);
    check(opened, "render_mp4: open H.264 encoder");

    vstream_ = check_alloc(avformat_new_stream(fmt_.get(), nullptr));
    vstream_->time_base = venc_->time_base;
    vstream_->avg_frame_rate = venc_->framerate;
    vstream_->r_frame_rate = venc_->framerate;
    check(avcodec_parameters_from_context(vstream_->codecpar, venc_.get()), "render_mp4: H.264 stream");
  }

  void open_audio(int sample_rate) {
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
    if (!codec)
      throw std::runtime_error("render_mp4: this FFmpeg build has no AAC encoder");
    aenc_.reset(check_alloc(avcodec_alloc_context3(codec)));
    aenc_->sample_fmt = AV_SAMPLE_FMT_FLTP;
    aenc_->sample_rate = sample_rate;
    av_channel_layout_default(&aenc_->ch_layout, 2);
    aenc_->bit_rate = 128000;
    aenc_->profile = FF_PROFILE_AAC_LOW;
    aenc_->time_base = {1, sample_rate};
    aenc_->log_level_offset = kQuietEncoder;
    if (fmt_->oformat->flags & AVFMT_GLOBALHEADER)
      aenc_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    check(avcodec_open2(aenc_.get(), codec, nullptr), "render_mp4: open AAC encoder");

    astream_ = check_alloc(avformat_new_stream(fmt_.get(), nullptr));
    astream_->time_base = aenc_->time_base;
    check(avcodec_parameters_from_context(astream_->codecpar, aenc_.get()), "render_mp4: AAC stream");
  }

  void encode(AVCodecContext &enc, AVStream &stream, const AVFrame *frame) {
    check(avcodec_send_frame(&enc, frame), "render_mp4: encode");
    for (;;) {
      const int ret = avcodec_receive_packet(&enc, packet_.get());
      if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
        return;
      check(ret, "render_mp4: encode");
      if (packet_->duration == 0 && enc.codec_type == AVMEDIA_TYPE_VIDEO)
        packet_->duration = 1;
      av_packet_rescale_ts(packet_.get(), enc.time_base, stream.time_base);
      packet_->stream_index = stream.index;
      check(av_interleaved_write_frame(fmt_.get(), packet_.get()), "render_mp4: write MP4");
    }
  }

  // Destruction order matters: the muxer refers to io_, so io_ is declared first.
  MemoryOutput io_;
  AvPtr<AVFormatContext> fmt_;
  AvPtr<AVCodecContext> venc_;
  AvPtr<AVCodecContext> aenc_;
  AVStream *vstream_ = nullptr;
  AVStream *astream_ = nullptr;
  AvPtr<AVPacket> packet_{check_alloc(av_packet_alloc())};
};

constexpr int kAudioRate = 48000;

} // namespace

std::string render_png(const ImageSpec &spec) {
  constexpr int kMaxSide = 8192;
  if (spec.width <= 0 || spec.height <= 0 || spec.width > kMaxSide || spec.height > kMaxSide)
    throw std::runtime_error("render_png: image size " + std::to_string(spec.width) + "x" +
                             std::to_string(spec.height) + " is outside 1..8192 pixels per side");
  const PromptTraits traits = read_prompt(spec.prompt);
  CoverPainter painter(spec, traits);
  return encode_png(painter.paint(), spec.width, spec.height);
}

std::string render_mp4(const VideoSpec &spec) {
  constexpr int kMaxSide = 4096;
  if (spec.width <= 0 || spec.height <= 0 || spec.width > kMaxSide || spec.height > kMaxSide ||
      spec.width % 2 || spec.height % 2)
    throw std::runtime_error("render_mp4: frame size " + std::to_string(spec.width) + "x" +
                             std::to_string(spec.height) + " must be even and at most 4096 per side");
  if (spec.fps < 1 || spec.fps > 120 || spec.seconds < 1 || spec.seconds > 60)
    throw std::runtime_error("render_mp4: " + std::to_string(spec.seconds) + " s at " +
                             std::to_string(spec.fps) + " fps is outside 1..60 s and 1..120 fps");

  const PromptTraits traits = read_prompt(spec.prompt);
  AvPtr<AVFrame> start;
  if (!spec.start_image.empty()) {
    const auto decoded = decode_image(spec.start_image);
    start = cover_frame(*decoded, spec.width, spec.height);
  }

  Mp4Writer mp4(spec, kAudioRate);

  const int field_w = std::max(2, (spec.width + 3) / 4);
  const int field_h = std::max(2, (spec.height + 3) / 4);
  const MoodField field(traits.mood, traits, field_w, field_h);
  auto field_rgb = make_frame(AV_PIX_FMT_RGB24, field_w, field_h);
  auto upscale = make_scaler(field_w, field_h, AV_PIX_FMT_RGB24, spec.width, spec.height, AV_PIX_FMT_YUV420P);
  auto frame = make_frame(AV_PIX_FMT_YUV420P, spec.width, spec.height);
  AvPtr<AVFrame> overlay = start ? make_frame(AV_PIX_FMT_YUV420P, spec.width, spec.height) : nullptr;

  const ImageMotion motion = image_motion(traits.mood);
  Random pan_random(traits.seed ^ 0x9a11ull);
  const float pan_angle = pan_random.uniform(0.f, static_cast<float>(kTwoPi));

  AVCodecContext &aenc = mp4.audio();
  const int audio_frame_size = aenc.frame_size > 0 ? aenc.frame_size : 1024;
  const bool small_last_frame = aenc.codec->capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME;
  const std::int64_t total_samples = static_cast<std::int64_t>(spec.seconds) * kAudioRate;
  Ambience ambience(traits.mood, traits.seed, kAudioRate, spec.seconds);
  std::int64_t samples_written = 0;
  AvPtr<AVFrame> audio_frame(check_alloc(av_frame_alloc()));

  const int frames = spec.fps * spec.seconds;
  for (int i = 0; i < frames; ++i) {
    const float t = static_cast<float>(i) / static_cast<float>(spec.fps);
    check(av_frame_make_writable(frame.get()), "render_mp4: video frame");
    field.paint(t, field_rgb->data[0], field_rgb->linesize[0]);
    AVFrame &target = start ? *overlay : *frame;
    sws_scale(upscale.get(), field_rgb->data, field_rgb->linesize, 0, field_h, target.data, target.linesize);
    if (start) {
      const float zoom = 1.f + motion.zoom_per_second * t;
      const float drift = 0.4f * (1.f - 1.f / zoom); // stays inside the image at this zoom
      zoom_into(*start, *frame, zoom, drift * std::cos(pan_angle), drift * std::sin(pan_angle));
      const float fade_in = smoothstep(0.f, 3.f, t);
      blend_into(*frame, *overlay, static_cast<int>(motion.overlay * fade_in * 256.f + 0.5f));
    }
    frame->pts = i;
    mp4.write_video(frame.get());

    // Keep audio up to date with video so the muxer interleaves without buffering much.
    const std::int64_t audio_due =
        std::min(total_samples, static_cast<std::int64_t>(i + 1) * kAudioRate / spec.fps);
    while (samples_written < audio_due) {
      // Full frames only: the encoder accepts a short frame only as the last one.
      const int count =
          static_cast<int>(std::min<std::int64_t>(audio_frame_size, total_samples - samples_written));
      av_frame_unref(audio_frame.get());
      audio_frame->format = aenc.sample_fmt;
      audio_frame->sample_rate = kAudioRate;
      audio_frame->nb_samples = small_last_frame ? count : audio_frame_size;
      check(av_channel_layout_copy(&audio_frame->ch_layout, &aenc.ch_layout), "render_mp4: audio frame");
      check(av_frame_get_buffer(audio_frame.get(), 0), "render_mp4: audio frame");
      auto *left = reinterpret_cast<float *>(audio_frame->data[0]);
      auto *right = reinterpret_cast<float *>(audio_frame->data[1]);
      ambience.render(left, right, count);
      std::fill(left + count, left + audio_frame->nb_samples, 0.f);
      std::fill(right + count, right + audio_frame->nb_samples, 0.f);
      audio_frame->pts = samples_written;
      mp4.write_audio(audio_frame.get());
      samples_written += count;
    }
  }
  return mp4.finish();
}

std::pair<int, int> image_size_for(const std::string &model_id, const std::string &aspect_ratio) {
  struct Size {
    std::string_view ratio;
    int width, height;
  };
  static constexpr std::array kGemini = std::to_array<Size>({
      {"1:1", 1024, 1024},
      {"2:3", 832, 1248},
      {"3:2", 1248, 832},
      {"3:4", 864, 1184},
      {"4:3", 1184, 864},
      {"4:5", 896, 1152},
      {"5:4", 1152, 896},
      {"9:16", 768, 1344},
      {"16:9", 1344, 768},
      {"21:9", 1536, 672},
  });
  static constexpr std::array kImagen = std::to_array<Size>({
      {"1:1", 1024, 1024},
      {"3:4", 896, 1280},
      {"4:3", 1280, 896},
      {"9:16", 768, 1408},
      {"16:9", 1408, 768},
  });
  std::string_view id = model_id;
  if (id.starts_with("models/"))
    id.remove_prefix(7);
  const std::string_view ratio = aspect_ratio.empty() ? std::string_view("1:1") : aspect_ratio;
  const auto find = [ratio](const auto &table) -> std::pair<int, int> {
    for (const auto &size : table)
      if (size.ratio == ratio)
        return {size.width, size.height};
    return {0, 0};
  };
  if (id.starts_with("gemini-"))
    return find(kGemini);
  if (id.starts_with("imagen-"))
    return find(kImagen);
  return {0, 0};
}

} // namespace gemstream::backend
