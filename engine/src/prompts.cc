#include "gemstream/prompts.h"

#include "gemstream/error.h"

#include <string_view>

namespace gemstream {
namespace {

// Trims, turns every run of whitespace or control characters into one space and, when asked,
// drops double quotes (the card cover template quotes the motif).
std::string normalise(std::string_view text, bool strip_double_quotes) {
  std::string out;
  bool gap = false;
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (strip_double_quotes && c == '"')
      continue;
    if (byte <= 0x20 || byte == 0x7f) {
      gap = !out.empty();
      continue;
    }
    if (gap)
      out += ' ';
    gap = false;
    out += c;
  }
  return out;
}

// Unicode characters in UTF-8 text: every byte that does not continue a sequence.
std::size_t character_count(std::string_view text) {
  std::size_t count = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80)
      ++count;
  }
  return count;
}

std::string user_value(std::string_view what, std::string_view raw, std::size_t max_length,
                       bool strip_double_quotes) {
  auto value = normalise(raw, strip_double_quotes);
  if (const auto length = character_count(value); length > max_length) {
    throw Error(ErrorKind::InvalidArgument,
                std::string(what) + " is too long: " + std::to_string(length) +
                    " characters (at most " + std::to_string(max_length) + ")");
  }
  return value;
}

// Replaces every occurrence of `placeholder` in the template. The value is not rescanned, so a
// user value containing "{motif}" stays literal.
std::string fill(std::string_view template_text, std::string_view placeholder,
                 std::string_view value) {
  std::string out;
  std::size_t from = 0;
  for (auto at = template_text.find(placeholder); at != std::string_view::npos;
       at = template_text.find(placeholder, from)) {
    out.append(template_text, from, at - from);
    out += value;
    from = at + placeholder.size();
  }
  out.append(template_text, from);
  return out;
}

const std::string &phrase(const std::map<std::string, std::string> &phrases, const std::string &key,
                          std::string_view what) {
  if (const auto it = phrases.find(key); it != phrases.end())
    return it->second;
  std::string known;
  for (const auto &entry : phrases) {
    if (!known.empty())
      known += ", ";
    known += entry.first;
  }
  throw Error(ErrorKind::InvalidArgument, "unknown " + std::string(what) + " \"" + key +
                                              "\" (known: " + (known.empty() ? "none" : known) +
                                              ")");
}

void append_sentence(std::string &prompt, std::string_view sentence) {
  if (sentence.empty())
    return;
  if (!prompt.empty())
    prompt += ' ';
  prompt += sentence;
}

} // namespace

std::string build_card_cover_prompt(const MediaConfig &cfg, const CardCoverRequest &req) {
  const auto &t = cfg.card_cover;
  const auto motif = user_value("card cover motif", req.motif, kMaxMotifLength, true);
  if (motif.empty())
    throw Error(ErrorKind::InvalidArgument, "card cover motif is empty");
  const auto palette = user_value("card cover palette", req.palette, kMaxPaletteLength, false);

  auto prompt = fill(t.template_text, "{motif}", motif);
  if (!req.style.empty())
    append_sentence(prompt, phrase(t.style_modifiers, req.style, "card cover style"));
  if (!palette.empty())
    append_sentence(prompt, fill(t.palette_hint, "{palette}", palette));
  if (!t.constraints.empty()) {
    std::string joined;
    for (const auto &constraint : t.constraints) {
      if (!joined.empty())
        joined += ", ";
      joined += constraint;
    }
    append_sentence(prompt, fill(t.constraints_hint, "{constraints}", joined));
  }
  return prompt;
}

std::string build_background_video_prompt(const MediaConfig &cfg,
                                          const BackgroundVideoRequest &req) {
  const auto &t = cfg.background_video;
  const auto description =
      user_value("background video description", req.description, kMaxDescriptionLength, false);
  if (description.empty())
    throw Error(ErrorKind::InvalidArgument, "background video description is empty");

  auto prompt = fill(t.template_text, "{description}", description);
  append_sentence(prompt, t.cinematography);
  if (!req.mood.empty())
    append_sentence(prompt, phrase(t.moods, req.mood, "background video mood"));
  return prompt;
}

} // namespace gemstream
