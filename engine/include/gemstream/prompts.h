// Prompt building from the templates in MediaConfig. Nothing here hard-codes prompt text.
#pragma once

#include "gemstream/config.h"

#include <cstddef>
#include <string>

namespace gemstream {

// Limits on user text, in Unicode characters after whitespace is collapsed. Longer values throw
// Error(InvalidArgument) rather than being cut, so a caller never sends a prompt it did not write.
inline constexpr std::size_t kMaxMotifLength = 200;
inline constexpr std::size_t kMaxPaletteLength = 100;
inline constexpr std::size_t kMaxDescriptionLength = 500;

struct CardCoverRequest {
  std::string motif;    // "meditation practice"
  std::string style;    // key of card_cover.style_modifiers, empty for none
  std::string palette;  // free text, e.g. "teal and gold"; empty for none
};

struct BackgroundVideoRequest {
  std::string description;  // "peaceful beach sunset"
  std::string mood;         // key of background_video.moods, empty for none
};

// motif + style hint + palette + constraints. User values are trimmed and their whitespace
// collapsed; double quotes are removed from the motif, which the template quotes. Throws
// Error(InvalidArgument) for an empty or too long motif, a too long palette or an unknown style
// (the message lists the known ones).
GEMSTREAM_API std::string build_card_cover_prompt(const MediaConfig &cfg,
                                                  const CardCoverRequest &req);

// description + cinematography + mood. The negative prompt is not part of it: it travels
// separately (parameters.negativePrompt). Throws Error(InvalidArgument) for an empty or too long
// description or an unknown mood.
GEMSTREAM_API std::string build_background_video_prompt(const MediaConfig &cfg,
                                                        const BackgroundVideoRequest &req);

} // namespace gemstream
