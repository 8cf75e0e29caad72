// The arithmetic of videoloop: where the crossfade sits and how samples are mixed. Plain C++ on
// raw memory so it is cheap to reason about and to benchmark; videoloop.cc maps GStreamer
// buffers onto it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gemstream::videoloop {

// Weight of the head frame in blended output frame j of k, in 1/256 steps: (j + 1) / k, so the
// last blended frame is exactly the last head frame and the loop seam is an ordinary frame step.
unsigned head_weight_256(std::size_t j, std::size_t k);

// head[x] = (tail[x] * (256 - w) + head[x] * w) / 256, rounded, for n bytes. Every byte is an
// independent 8-bit sample in the formats videoloop accepts. head and tail must not overlap.
void blend_bytes(std::uint8_t *__restrict head, const std::uint8_t *__restrict tail, std::size_t n,
                 unsigned w);

// Equal-power crossfade of interleaved audio: out = tail·cos(a·π/2) + head·sin(a·π/2) with
// a = (j + 1) / length for sample frame j = first + i. At j = length - 1 the output is exactly
// the head, so the loop seam continues into the sample that follows the head.
void crossfade_f32(float *out, const float *tail, const float *head, std::size_t frames,
                   std::size_t channels, std::size_t first, std::size_t length);
void crossfade_s16(std::int16_t *out, const std::int16_t *tail, const std::int16_t *head,
                   std::size_t frames, std::size_t channels, std::size_t first, std::size_t length);

} // namespace gemstream::videoloop
