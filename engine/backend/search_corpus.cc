#include "search_corpus.h"

#include "wire.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace gemstream::backend {
namespace {

using json = nlohmann::ordered_json;

struct Document {
  std::vector<std::string_view> keywords; // lower case; matched as whole words or phrases
  std::string_view uri;
  std::string_view title;
  std::string_view domain;
  std::string_view topic;
  std::vector<std::string_view> sentences;
};

const std::vector<Document> &corpus() {
  static const std::vector<Document> docs = {
      {{"ai regulation", "ai act", "artificial intelligence", "regulation", "ai law", "ai rules"},
       "https://digital-strategy.ec.europa.eu/en/policies/regulatory-framework-ai",
       "AI Act | Shaping Europe\u2019s digital future",
       "europa.eu",
       "AI regulation",
       {"The EU\u2019s AI Act entered into force on 1 August 2024 \u2014 the world\u2019s first "
        "comprehensive law on artificial intelligence.",
        "Its bans on \u201cunacceptable-risk\u201d practices apply since February 2025, and the "
        "rules for general-purpose AI models since August 2025."}},
      {{"ai regulation", "artificial intelligence", "regulation", "ai principles", "oecd"},
       "https://oecd.ai/en/ai-principles",
       "OECD AI Principles overview",
       "oecd.ai",
       "AI regulation",
       {"Forty-seven governments have signed up to the OECD AI Principles, updated in May 2024 "
        "to cover general-purpose and generative AI."}},
      {{"meditation", "mindfulness", "meditate"},
       "https://www.nccih.nih.gov/health/meditation-and-mindfulness-what-you-need-to-know",
       "Meditation and Mindfulness: What You Need To Know",
       "nih.gov",
       "meditation",
       {"Studies suggest that regular meditation can lower blood pressure and ease symptoms of "
        "anxiety and depression.",
        "Even ten minutes of mindful breathing a day is enough to start."}},
      {{"beach", "beaches", "sunset", "seaside", "coast"},
       "https://www.blueflag.global/",
       "Blue Flag \u2013 clean beaches and marinas",
       "blueflag.global",
       "beaches",
       {"More than 5,000 beaches and marinas in 51 countries fly the Blue Flag for clean water, "
        "safety and environmental education."}},
      {{"electric car", "electric cars", "ev", "evs", "electric vehicle", "electric vehicles"},
       "https://www.iea.org/reports/global-ev-outlook-2025",
       "Global EV Outlook 2025",
       "iea.org",
       "electric cars",
       {"Electric cars made up more than one in five new cars sold worldwide in 2024.",
        "Falling battery prices keep making them cheaper to build."}},
      {{"sleep", "insomnia"},
       "https://www.cdc.gov/sleep/about/index.html",
       "About Sleep | CDC",
       "cdc.gov",
       "sleep",
       {"Adults need seven or more hours of sleep per night for their best health."}},
      {{"mars", "rover", "mars mission"},
       "https://science.nasa.gov/mars/",
       "Mars - NASA Science",
       "nasa.gov",
       "Mars",
       {"NASA\u2019s Perseverance rover is still collecting rock samples in Jezero Crater."}},
      {{"gstreamer"},
       "https://gstreamer.freedesktop.org/news/",
       "GStreamer news",
       "gstreamer.freedesktop.org",
       "GStreamer",
       {"The GStreamer project ships a new stable series about once a year."}},
      {{"gemini", "gemini api", "live api"},
       "https://ai.google.dev/gemini-api/docs/live",
       "Live API | Gemini API",
       "ai.google.dev",
       "the Gemini API",
       {"The Gemini Live API streams audio and video both ways over a WebSocket."}},
      {{"weather", "forecast", "forecasts"},
       "https://wmo.int/",
       "World Meteorological Organization",
       "wmo.int",
       "the weather",
       {"Weather forecasts are most reliable for the next three days."}},
  };
  return docs;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto &c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains_phrase(std::string_view text, std::string_view phrase) {
  for (auto pos = text.find(phrase); pos != std::string_view::npos;
       pos = text.find(phrase, pos + 1)) {
    const bool start = pos == 0 || !std::isalnum(static_cast<unsigned char>(text[pos - 1]));
    const auto end = pos + phrase.size();
    const bool stop = end == text.size() || !std::isalnum(static_cast<unsigned char>(text[end]));
    if (start && stop)
      return true;
  }
  return false;
}

// "what's the latest on AI regulation?" -> "latest AI regulation news".
std::string search_query(std::string_view question, std::string_view topic) {
  const std::string q = lower(question);
  const bool recent = q.find("latest") != std::string::npos ||
                      q.find("news") != std::string::npos || q.find("new ") != std::string::npos;
  return std::string(recent ? "latest " : "") + std::string(topic) + (recent ? " news" : "");
}

} // namespace

SearchAnswer search_and_answer(std::string_view question, AnswerStyle style) {
  const std::string q = lower(question);
  std::vector<std::pair<int, const Document *>> scored;
  for (const auto &doc : corpus()) {
    int score = 0;
    for (auto k : doc.keywords)
      if (contains_phrase(q, k))
        score += static_cast<int>(k.size());
    if (score > 0)
      scored.emplace_back(score, &doc);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto &a, const auto &b) { return a.first > b.first; });
  if (scored.size() > 3)
    scored.resize(3);

  SearchAnswer out;
  out.found = !scored.empty();
  out.topic = out.found ? std::string(scored.front().second->topic) : std::string(question);
  while (!out.topic.empty() && (out.topic.back() == '?' || out.topic.back() == '.'))
    out.topic.pop_back();
  const std::string query = search_query(question, out.topic);
  std::string search_url = "https://www.google.com/search?q=";
  for (char c : query)
    search_url += c == ' ' ? '+' : c;
  out.grounding_metadata = {
      {"webSearchQueries", json::array({query})},
      {"searchEntryPoint",
       {{"renderedContent", "<style>.container{display:flex}</style><div class=\"container\">"
                            "<a class=\"chip\" href=\"" +
                                search_url + "\">" + query + "</a></div>"}}}};
  if (!out.found) {
    out.text = style == AnswerStyle::Written
                   ? "I searched the web for \u201c" + std::string(question) +
                         "\u201d but found nothing I could rely on."
                   : "I could not find anything recent about " + out.topic + ".";
    return out;
  }

  json chunks = json::array();
  json supports = json::array();
  out.text = "Here is the latest on " + out.topic + ".";
  for (std::size_t i = 0; i < scored.size(); ++i) {
    const Document &doc = *scored[i].second;
    chunks.push_back({{"web", {{"uri", doc.uri}, {"title", doc.title}, {"domain", doc.domain}}}});
    const std::size_t sentences = style == AnswerStyle::Written ? doc.sentences.size() : 1;
    for (std::size_t k = 0; k < sentences; ++k) {
      const std::string_view sentence = doc.sentences[k];
      out.text += ' ';
      const std::size_t start = out.text.size(); // byte offsets into the UTF-8 answer
      out.text += sentence;
      out.search_tokens += text_tokens(sentence);
      supports.push_back(
          {{"segment",
            {{"startIndex", start},
             {"endIndex", out.text.size()},
             {"text", std::string(sentence)}}},
           {"groundingChunkIndices", json::array({i})},
           {"confidenceScores", json::array({0.92 - 0.05 * static_cast<double>(i)})}});
    }
  }
  if (style == AnswerStyle::Written && scored.size() > 1) {
    out.text += ' ';
    const std::size_t start = out.text.size();
    const std::string summary =
        "Together, these sources give a current picture of " + out.topic + ".";
    out.text += summary;
    json indices = json::array();
    for (std::size_t i = 0; i < scored.size(); ++i)
      indices.push_back(i);
    supports.push_back(
        {{"segment", {{"startIndex", start}, {"endIndex", out.text.size()}, {"text", summary}}},
         {"groundingChunkIndices", std::move(indices)},
         {"confidenceScores", json::array({0.7})}});
  }
  out.grounding_metadata["groundingChunks"] = std::move(chunks);
  out.grounding_metadata["groundingSupports"] = std::move(supports);
  return out;
}

std::vector<std::string> search_topics() {
  std::vector<std::string> topics;
  for (const auto &doc : corpus())
    if (std::find(topics.begin(), topics.end(), doc.topic) == topics.end())
      topics.emplace_back(doc.topic);
  return topics;
}

} // namespace gemstream::backend
