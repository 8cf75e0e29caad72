// The local backend's stand-in for Google Search: a small fixed corpus of web documents, and
// grounded answers built from it with groundingMetadata as the real service reports it
// (webSearchQueries, searchEntryPoint, groundingChunks, groundingSupports with byte offsets into
// the UTF-8 answer). generateContent (understanding.cc) and the Live API (live_server.cc) both
// answer from it, so a question is grounded in the same sources whichever API asks it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
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

enum class AnswerStyle {
  // Every sentence of up to three sources, then one sentence citing them together.
  Written,
  // The first sentence of each of up to three sources, one support per source: a reply that is
  // read aloud stays short.
  Spoken,
};

struct SearchAnswer {
  bool found = false; // at least one document matched
  std::string topic;  // of the best match ("AI regulation"), else the question itself
  std::string text;   // the answer; says that nothing was found when !found
  // webSearchQueries and searchEntryPoint always; groundingChunks and groundingSupports when
  // found. In the real service's member order.
  nlohmann::ordered_json grounding_metadata;
  std::int64_t search_tokens = 0; // tokens of the sentences read (toolUsePromptTokenCount)
};

// Searches the corpus for `question` (matched on whole words and phrases, case-insensitively).
// The search query reported is "latest <topic> news" when the question asks for the latest or
// for news, else the topic.
GEMSTREAM_BACKEND_API SearchAnswer search_and_answer(std::string_view question, AnswerStyle style);

// The topics the corpus has answers about, as they appear in answers ("AI regulation",
// "electric cars", ...), each once.
GEMSTREAM_BACKEND_API std::vector<std::string> search_topics();

} // namespace gemstream::backend
