// Search grounding: groundingMetadata of a generateContent candidate or a Live serverContent,
// and the inline [n] citation markers placed from its groundingSupports.
#pragma once

#include "gemstream/export.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gemstream {

// groundingChunks[].web.
struct GroundingSource {
  std::string uri;
  std::string title;
  std::string domain;
};

// groundingSupports[]: the answer bytes [start_index, end_index) of text part `part_index` are
// backed by the sources groundingChunkIndices name.
struct GroundingSupport {
  std::size_t start_index = 0;
  std::size_t end_index = 0; // byte offset (UTF-8), exclusive
  int part_index = 0;
  std::string text;
  std::vector<int> chunk_indices; // into Grounding::sources
  std::vector<double> confidence_scores;
};

struct Grounding {
  std::vector<std::string> web_search_queries;
  std::vector<GroundingSource> sources; // groundingChunks; chunks without "web" keep a blank entry
  std::vector<GroundingSupport> supports;
  std::string search_entry_point_html; // searchEntryPoint.renderedContent

  bool empty() const noexcept { return sources.empty() && supports.empty(); }
};

// Decodes a groundingMetadata object (JSON text). Unknown members are ignored; a member of the
// wrong type is Error(Protocol) naming its path.
GEMSTREAM_API Grounding parse_grounding_metadata(std::string_view json_text);

// The answer with a citation after every supported segment: at each support's end_index the
// markers of its sources, "[1]" for sources[0], in ascending order, each number once per place
// ("...last year.[1][3]"). Supports ending at the same place are merged. Offsets are bytes; one
// that falls inside a multi-byte UTF-8 character moves to the end of that character, one past
// the end of its part is clamped to it, and chunk indices with no source are skipped.
// `text_parts` are the answer's text parts (GenerateResult::text_parts), joined in the result.
GEMSTREAM_API std::string insert_citation_markers(const std::vector<std::string> &text_parts,
                                                  const Grounding &grounding);
GEMSTREAM_API std::string insert_citation_markers(std::string_view text,
                                                  const Grounding &grounding);

// "[1] Title - https://...\n" per source, numbered as the markers are (by chunk index).
GEMSTREAM_API std::string format_source_list(const Grounding &grounding);

} // namespace gemstream
