#include "gemstream/grounding.h"

#include "codec.h"

#include <algorithm>
#include <map>
#include <set>

namespace gemstream {
namespace {

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// Moves a byte offset to a character boundary: never splits a multi-byte character.
std::size_t boundary_at_or_after(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  while (offset < text.size() && is_continuation(text[offset]))
    ++offset;
  return offset;
}

} // namespace

Grounding parse_grounding_metadata(std::string_view json_text) {
  nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded())
    throw Error(ErrorKind::Protocol, "malformed groundingMetadata: not valid JSON");
  return codec::decode_grounding_metadata(doc);
}

std::string insert_citation_markers(const std::vector<std::string> &text_parts,
                                    const Grounding &grounding) {
  // Insert positions per part, each with the set of source numbers cited there.
  std::vector<std::map<std::size_t, std::set<int>>> marks(text_parts.size());
  for (const GroundingSupport &support : grounding.supports) {
    if (support.part_index < 0 || static_cast<std::size_t>(support.part_index) >= text_parts.size())
      continue;
    const std::string &text = text_parts[static_cast<std::size_t>(support.part_index)];
    std::set<int> numbers;
    for (int index : support.chunk_indices) {
      if (index >= 0 && static_cast<std::size_t>(index) < grounding.sources.size())
        numbers.insert(index + 1);
    }
    if (numbers.empty())
      continue;
    auto &cited = marks[static_cast<std::size_t>(support.part_index)]
                       [boundary_at_or_after(text, support.end_index)];
    cited.insert(numbers.begin(), numbers.end());
  }

  std::string out;
  for (std::size_t p = 0; p < text_parts.size(); ++p) {
    const std::string &text = text_parts[p];
    std::size_t copied = 0;
    for (const auto &[position, numbers] : marks[p]) {
      out.append(text, copied, position - copied);
      copied = position;
      for (int n : numbers)
        out += "[" + std::to_string(n) + "]";
    }
    out.append(text, copied, std::string::npos);
  }
  return out;
}

std::string insert_citation_markers(std::string_view text, const Grounding &grounding) {
  return insert_citation_markers(std::vector<std::string>{std::string(text)}, grounding);
}

std::string format_source_list(const Grounding &grounding) {
  std::string out;
  for (std::size_t i = 0; i < grounding.sources.size(); ++i) {
    const GroundingSource &s = grounding.sources[i];
    std::string title = !s.title.empty() ? s.title : !s.domain.empty() ? s.domain : s.uri;
    out += "[" + std::to_string(i + 1) + "] " + title;
    if (!s.uri.empty() && s.uri != title)
      out += " - " + s.uri;
    out += "\n";
  }
  return out;
}

} // namespace gemstream
