#include "videoloop_blend.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace gemstream::videoloop {

unsigned head_weight_256(std::size_t j, std::size_t k) {
  if (k == 0 || j + 1 >= k)
    return 256;
  return static_cast<unsigned>((256 * (j + 1) + k / 2) / k);
}

void blend_bytes(std::uint8_t *__restrict head, const std::uint8_t *__restrict tail, std::size_t n,
                 unsigned w) {
  // 255·256 + 128 fits in 16 bits, which allows 16-bit lanes; fixed-size blocks let GCC
  // vectorise at -O2, whose cost model skips loops that need a scalar epilogue.
  const std::uint16_t wh = static_cast<std::uint16_t>(w);
  const std::uint16_t wt = static_cast<std::uint16_t>(256 - w);
  auto mix = [&](std::size_t x) {
    head[x] = static_cast<std::uint8_t>(
        static_cast<std::uint16_t>(tail[x] * wt + head[x] * wh + 128) >> 8);
  };
  constexpr std::size_t kBlock = 32;
  std::size_t x = 0;
  for (; x + kBlock <= n; x += kBlock)
    for (std::size_t i = x; i < x + kBlock; ++i)
      mix(i);
  for (; x < n; ++x)
    mix(x);
}

namespace {

struct Gains {
  float tail;
  float head;
};

Gains gains(std::size_t j, std::size_t length) {
  if (j + 1 >= length)
    return {0.0f, 1.0f};
  const double a = static_cast<double>(j + 1) / static_cast<double>(length);
  const double angle = a * std::numbers::pi / 2;
  return {static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))};
}

} // namespace

void crossfade_f32(float *out, const float *tail, const float *head, std::size_t frames,
                   std::size_t channels, std::size_t first, std::size_t length) {
  for (std::size_t i = 0; i < frames; ++i) {
    const Gains g = gains(first + i, length);
    for (std::size_t c = 0; c < channels; ++c) {
      const std::size_t x = i * channels + c;
      out[x] = tail[x] * g.tail + head[x] * g.head;
    }
  }
}

void crossfade_s16(std::int16_t *out, const std::int16_t *tail, const std::int16_t *head,
                   std::size_t frames, std::size_t channels, std::size_t first,
                   std::size_t length) {
  for (std::size_t i = 0; i < frames; ++i) {
    const Gains g = gains(first + i, length);
    for (std::size_t c = 0; c < channels; ++c) {
      const std::size_t x = i * channels + c;
      const float v = std::nearbyint(tail[x] * g.tail + head[x] * g.head);
      out[x] = static_cast<std::int16_t>(std::clamp(v, -32768.0f, 32767.0f));
    }
  }
}

} // namespace gemstream::videoloop
