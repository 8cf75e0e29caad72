// Base64 for tests, written independently of the engine's and the backend's codecs so that
// neither checks itself. Standard alphabet with padding; decoding stops at '=' or at the
// first character outside the alphabet.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gemstream::testing {

inline constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

inline std::string b64encode(std::string_view in) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kBase64Alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0)
    out += kBase64Alphabet[(acc << (6 - bits)) & 63];
  while (out.size() % 4)
    out += '=';
  return out;
}

inline std::string b64decode(std::string_view in) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const auto index = kBase64Alphabet.find(c);
    if (index == std::string_view::npos)
      break; // '=' and anything else end the data
    acc = (acc << 6) | std::uint32_t(index);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

} // namespace gemstream::testing
