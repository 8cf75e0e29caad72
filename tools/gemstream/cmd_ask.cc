// gemstream ask: a question to a Gemini text model; with --search the answer is grounded in
// Google Search and printed with [n] citations and a numbered source list.
#include "cli_args.h"
#include "commands.h"
#include "spending.h"

#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/genai.h>
#include <gemstream/grounding.h>
#include <nlohmann/json.hpp>

#include <cstdio>

namespace gemstream::cli {

const char *const kAskUsage =
    "usage: gemstream ask \"QUESTION\" [--search] [--model gemini-2.5-flash] [--user NAME] "
    "[--json]\n"
    "Asks a Gemini model. --search grounds the answer in Google Search: it is printed with [n]\n"
    "citations and a numbered list of sources. The cost is checked against the daily budget\n"
    "before the request and recorded in the cost ledger (gemstream costs).";

int cmd_ask(const std::vector<std::string> &argv) {
  Args args(argv, {"model", "user"}, {"search", "json"});
  if (args.positionals().size() != 1 || args.positionals()[0].empty())
    throw UsageError(kAskUsage);
  const std::string question = args.positionals()[0];
  const bool search = args.has_flag("search");
  const MediaConfig media = MediaConfig::load_default();
  const Spending spending = Spending::open(args);

  GenerateRequest req;
  req.model_id = args.get_or("model", media.pricing.video_analysis.model);
  req.parts.push_back(InputPart::from_text(question));
  req.google_search = search;

  // A typical answer: the question, about 800 tokens of answer (and the search request).
  TokenUsage typical;
  typical.input_tokens = static_cast<std::int64_t>(question.size() / 4 + 200);
  typical.output_tokens = 800;
  const CostEntry estimate = search ? price_search(media, req.model_id, typical)
                                    : price_analysis(media, req.model_id, typical);
  spending.check(estimate.usd(), search ? "this search" : "this question");

  GenAiClient client(resolve_endpoint());
  const GenerateResult result = client.generate_content(req, CancelToken());
  Grounding grounding;
  if (!result.grounding_metadata_json.empty())
    grounding = parse_grounding_metadata(result.grounding_metadata_json);

  const TokenUsage tokens = result.usage ? token_usage(*result.usage) : TokenUsage{};
  CostEntry cost = search ? price_search(media, req.model_id, tokens)
                          : price_analysis(media, req.model_id, tokens);
  cost.request_id = result.response_id;
  cost.note = std::string(search ? "ask --search" : "ask") + "; " + cost.note;
  spending.record(cost);

  const std::string answer = insert_citation_markers(result.text_parts, grounding);
  if (args.has_flag("json")) {
    nlohmann::json sources = nlohmann::json::array();
    for (const auto &s : grounding.sources)
      sources.push_back({{"title", s.title}, {"uri", s.uri}, {"domain", s.domain}});
    nlohmann::json out = {{"answer", answer},
                          {"text", result.text},
                          {"sources", std::move(sources)},
                          {"queries", grounding.web_search_queries},
                          {"model", req.model_id},
                          {"usd", cost.usd()}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%s\n", answer.c_str());
    if (!grounding.sources.empty())
      std::printf("\nSources:\n%s", format_source_list(grounding).c_str());
  }
  if (!grounding.web_search_queries.empty()) {
    std::string queries;
    for (const auto &q : grounding.web_search_queries)
      queries += (queries.empty() ? "" : ", ") + ("\"" + q + "\"");
    std::fprintf(stderr, "searched for: %s\n", queries.c_str());
  }
  std::fprintf(stderr, "model: %s, cost: %s\n", req.model_id.c_str(),
               format_usd(cost.usd()).c_str());
  if (search && grounding.sources.empty())
    std::fprintf(stderr, "note: the answer is not grounded in any source\n");
  return 0;
}

} // namespace gemstream::cli
