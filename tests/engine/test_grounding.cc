// Search grounding: citation markers placed from groundingSupports (byte offsets into UTF-8
// text), the source list, and the generateContent / Files API codecs this work added.
#include "codec.h"

#include <gemstream/error.h>
#include <gemstream/grounding.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace gemstream;
using nlohmann::json;

namespace {

GroundingSupport support(std::size_t start, std::size_t end, std::vector<int> chunks,
                         int part = 0) {
  GroundingSupport s;
  s.start_index = start;
  s.end_index = end;
  s.chunk_indices = std::move(chunks);
  s.part_index = part;
  return s;
}

Grounding sources(int n) {
  Grounding g;
  for (int i = 0; i < n; ++i)
    g.sources.push_back(
        {"https://example.com/" + std::to_string(i), "Title " + std::to_string(i), "example.com"});
  return g;
}

} // namespace

TEST(Citations, MarkersGoAtEachSupportsEnd) {
  const std::string text = "Alpha beta. Gamma delta.";
  Grounding g = sources(2);
  g.supports = {support(0, 11, {0}), support(12, 24, {1, 0})};
  EXPECT_EQ(insert_citation_markers(text, g), "Alpha beta.[1] Gamma delta.[1][2]");
  // Order of the supports does not matter.
  std::swap(g.supports[0], g.supports[1]);
  EXPECT_EQ(insert_citation_markers(text, g), "Alpha beta.[1] Gamma delta.[1][2]");
}

TEST(Citations, SupportsEndingTogetherAreMergedWithoutDuplicates) {
  Grounding g = sources(3);
  g.supports = {support(0, 5, {2, 0}), support(0, 5, {0}), support(0, 5, {1, 1})};
  EXPECT_EQ(insert_citation_markers("Hello world", g), "Hello[1][2][3] world");
}

TEST(Citations, OffsetsAreUtf8Bytes) {
  // "Zürich — Genève." : ü, —, è are 2, 3 and 2 bytes.
  const std::string first = "Z\u00fcrich \u2014 Gen\u00e8ve.";
  const std::string text = first + " Caf\u00e9s open early.";
  ASSERT_EQ(first.size(), 20u); // 16 characters
  Grounding g = sources(2);
  g.supports = {support(0, first.size(), {0}), support(first.size() + 1, text.size(), {1})};
  EXPECT_EQ(insert_citation_markers(text, g), first + "[1] Caf\u00e9s open early.[2]");

  // An end inside a multi-byte character moves past it: never splits UTF-8.
  Grounding inside = sources(1);
  inside.supports = {support(0, 2, {0})}; // between the two bytes of ü
  EXPECT_EQ(insert_citation_markers(text, inside),
            "Z\u00fc[1]rich \u2014 Gen\u00e8ve. Caf\u00e9s open early.");
  inside.supports = {support(0, 9, {0})}; // inside the em dash (bytes 8..10)
  EXPECT_EQ(insert_citation_markers(std::string_view(first), inside),
            "Z\u00fcrich \u2014[1] Gen\u00e8ve.");
}

TEST(Citations, BadIndicesAndOffsetsAreHandled) {
  Grounding g = sources(1);
  g.supports = {support(0, 500, {0}),   // past the end: clamped
                support(0, 3, {7}),     // no such source: skipped
                support(0, 3, {}),      // nothing to cite
                support(0, 3, {0}, 4)}; // no such part
  EXPECT_EQ(insert_citation_markers("abcdef", g), "abcdef[1]");
  EXPECT_EQ(insert_citation_markers("", Grounding{}), "");
}

TEST(Citations, PartIndexSelectsTheTextPart) {
  Grounding g = sources(2);
  g.supports = {support(0, 3, {0}, 0), support(0, 4, {1}, 1)};
  EXPECT_EQ(insert_citation_markers(std::vector<std::string>{"One.", " Two."}, g),
            "One[1]. Two[2].");
}

TEST(Citations, SourceListIsNumberedLikeTheMarkers) {
  Grounding g = sources(2);
  g.sources[1].title.clear();
  EXPECT_EQ(format_source_list(g),
            "[1] Title 0 - https://example.com/0\n[2] example.com - https://example.com/1\n");
}

TEST(GroundingCodec, ParsesTheServiceShape) {
  const Grounding g = parse_grounding_metadata(R"({
    "webSearchQueries": ["latest ai regulation news"],
    "searchEntryPoint": {"renderedContent": "<div>chip</div>"},
    "groundingChunks": [{"web": {"uri": "https://a.example/x", "title": "a.example", "domain": "a.example"}},
                        {"retrievedContext": {"uri": "gs://b"}}],
    "groundingSupports": [{"segment": {"startIndex": 4, "endIndex": "42", "text": "t"},
                           "groundingChunkIndices": [0, 1], "confidenceScores": [0.9, 0.5]},
                          {"segment": {"endIndex": 7}, "groundingChunkIndices": [0]}],
    "retrievalMetadata": {}
  })");
  EXPECT_EQ(g.web_search_queries, std::vector<std::string>{"latest ai regulation news"});
  EXPECT_EQ(g.search_entry_point_html, "<div>chip</div>");
  ASSERT_EQ(g.sources.size(), 2u);
  EXPECT_EQ(g.sources[0].domain, "a.example");
  EXPECT_TRUE(g.sources[1].uri.empty()); // a non-web chunk keeps its number
  ASSERT_EQ(g.supports.size(), 2u);
  EXPECT_EQ(g.supports[0].end_index, 42u); // int64 as a string
  EXPECT_EQ(g.supports[0].chunk_indices, (std::vector<int>{0, 1}));
  EXPECT_EQ(g.supports[1].start_index, 0u);

  for (const char *bad :
       {R"({"groundingChunks": {}})",
        R"({"groundingSupports": [{"segment": {"startIndex": 9, "endIndex": 3}}]})",
        R"({"groundingSupports": [{"groundingChunkIndices": ["x"]}]})", "[1]", "{"}) {
    try {
      parse_grounding_metadata(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::Protocol) << bad;
    }
  }
}

TEST(GenerateCodec, EncodesMultimodalRequestsWithTools) {
  GenerateRequest req;
  req.model_id = "gemini-2.5-flash";
  InputPart video = InputPart::from_bytes("video/mp4", std::string("\x00\x01\x02", 3));
  video.video_metadata = VideoMetadata{1.5, 8.0, 2.0};
  req.parts = {video, InputPart::from_file("video/mp4", "https://x/v1beta/files/abc"),
               InputPart::from_text("What happens?")};
  req.system_instruction = "Be brief.";
  req.google_search = true;
  req.functions = {{"f", "does f", R"({"type":"OBJECT","properties":{}})"}};
  req.temperature = 0.5;
  const json body = codec::encode_generate_content_request(req);
  const json &parts = body.at("contents").at(0).at("parts");
  EXPECT_EQ(body.at("contents").at(0).at("role"), "user");
  EXPECT_EQ(parts.at(0).at("inlineData").at("data"), "AAEC");
  // videoMetadata is a member of the same part as the data it describes.
  EXPECT_EQ(parts.at(0).at("videoMetadata"),
            json({{"startOffset", "1.5s"}, {"endOffset", "8s"}, {"fps", 2.0}}));
  EXPECT_EQ(
      parts.at(1),
      json({{"fileData", {{"mimeType", "video/mp4"}, {"fileUri", "https://x/v1beta/files/abc"}}}}));
  EXPECT_EQ(parts.at(2), json({{"text", "What happens?"}}));
  EXPECT_EQ(body.at("systemInstruction").at("parts").at(0).at("text"), "Be brief.");
  EXPECT_EQ(body.at("tools").at(0).at("functionDeclarations").at(0).at("parameters").at("type"),
            "OBJECT");
  EXPECT_EQ(body.at("tools").at(1), json({{"googleSearch", json::object()}}));
  EXPECT_EQ(body.at("generationConfig").at("temperature"), 0.5);

  req.functions = {{"g", "", "not json"}};
  EXPECT_THROW(codec::encode_generate_content_request(req), Error);
  EXPECT_THROW(codec::encode_generate_content_request(GenerateRequest{}), Error);
}

TEST(FilesCodec, DecodesFileResources) {
  const FileResource f = codec::decode_upload_response(R"({"file": {
    "name": "files/abc", "displayName": "clip.mp4", "mimeType": "video/mp4", "sizeBytes": "1234",
    "createTime": "2025-01-01T00:00:00.000001Z", "sha256Hash": "Zm9v", "uri": "https://h/v1beta/files/abc",
    "state": "ACTIVE", "videoMetadata": {"videoDuration": "8.5s"}, "source": "UPLOADED"}})");
  EXPECT_EQ(f.name, "files/abc");
  EXPECT_EQ(f.size_bytes, 1234u);
  EXPECT_EQ(f.state, FileState::Active);
  EXPECT_DOUBLE_EQ(*f.video_duration_s, 8.5);
  EXPECT_EQ(codec::decode_file_response(
                R"({"name":"files/x","state":"FAILED","error":{"code":3,"message":"bad"}})")
                .error_message,
            "bad");
  EXPECT_THROW(codec::decode_upload_response(R"({"name":"files/x"})"), Error);
  EXPECT_THROW(codec::decode_file_response(R"({"name":"files/x","sizeBytes":"12a"})"), Error);
  const auto list = codec::decode_file_list(
      R"({"files":[{"name":"files/a"},{"name":"files/b"}],"nextPageToken":"t"})");
  EXPECT_EQ(list.files.size(), 2u);
  EXPECT_EQ(list.next_page_token, "t");
}
