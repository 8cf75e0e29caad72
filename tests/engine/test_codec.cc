// Wire codecs against the shapes in docs/gemini-protocol.md (examples copied verbatim where the
// reference gives one).
#include "codec.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace gemstream::codec {
namespace {

using nlohmann::json;

// Runs `fn`, expecting Error(kind) whose message contains `needle`.
void expect_error(ErrorKind kind, const std::function<void()> &fn, const std::string &needle) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown, expected " << to_string(kind) << " containing \"" << needle
                  << "\"";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(e.message().find(needle), std::string::npos)
        << "message \"" << e.message() << "\" lacks \"" << needle << "\"";
  }
}

void expect_protocol_error(const std::function<void()> &fn, const std::string &needle) {
  expect_error(ErrorKind::Protocol, fn, needle);
}

// ---- generateContent ----------------------------------------------------------------------------

TEST(CodecGenerateContent, ImageRequestHasTheDocumentedShape) {
  ImageRequest req;
  req.model_id = "gemini-2.5-flash-image";
  req.prompt = "a lighthouse at dusk";
  req.aspect_ratio = "16:9";
  const json expected = json::parse(R"({"contents":[{"role":"user","parts":[
      {"text":"a lighthouse at dusk"}]}],
    "generationConfig":{"responseModalities":["IMAGE"],"imageConfig":{"aspectRatio":"16:9"}}})");
  EXPECT_EQ(encode_image_generation_request(req), expected);
}

TEST(CodecGenerateContent, ImageRequestOmitsImageConfigWithoutAspectRatio) {
  ImageRequest req;
  req.prompt = "p";
  json j = encode_image_generation_request(req);
  EXPECT_FALSE(j["generationConfig"].contains("imageConfig"));
  EXPECT_EQ(j["generationConfig"]["responseModalities"], json::array({"IMAGE"}));
}

TEST(CodecGenerateContent, EncodesEveryPartKind) {
  Content c{"user",
            {TextPart{"describe"}, BlobPart{"image/png", std::string("\x89PNG\0", 5)},
             FunctionCallPart{"call-1", "make_cover", json{{"motif", "fern"}}}}};
  const json expected = json::parse(R"({"role":"user","parts":[
      {"text":"describe"},
      {"inlineData":{"mimeType":"image/png","data":"iVBORwA="}},
      {"functionCall":{"id":"call-1","name":"make_cover","args":{"motif":"fern"}}}]})");
  EXPECT_EQ(encode_content(c), expected);
}

// The response shape of the reference, with the search-grounding example as groundingMetadata.
constexpr const char *kGroundedResponse = R"({"candidates":[{"content":{"role":"model","parts":[
    {"text":"Spain won Euro 2024."}]},"finishReason":"STOP",
  "index":0,"groundingMetadata":
{"webSearchQueries":["..."],
 "searchEntryPoint":{"renderedContent":"<html snippet>"},
 "groundingChunks":[{"web":{"uri":"https://...","title":"example.com","domain":"example.com"}}],
 "groundingSupports":[{"segment":{"startIndex":0,"endIndex":42,"partIndex":0,"text":"..."},
                       "groundingChunkIndices":[0,1],"confidenceScores":[0.9,0.7]}]}}],
 "usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":"7","totalTokenCount":"19",
   "promptTokensDetails":[{"modality":"TEXT","tokenCount":12}]},
 "modelVersion":"gemini-2.5-flash","responseId":"resp-1"})";

TEST(CodecGenerateContent, DecodesTheReferenceResponse) {
  GenerateContentResponse r = decode_generate_content_response(kGroundedResponse);
  ASSERT_EQ(r.candidates.size(), 1u);
  const Candidate &c = r.candidates[0];
  EXPECT_EQ(c.content.role, "model");
  ASSERT_EQ(c.content.parts.size(), 1u);
  EXPECT_EQ(std::get<TextPart>(c.content.parts[0]).text, "Spain won Euro 2024.");
  EXPECT_EQ(c.text(), "Spain won Euro 2024.");
  EXPECT_EQ(c.finish_reason, "STOP");
  EXPECT_EQ(c.index, 0);
  ASSERT_TRUE(c.grounding_metadata.has_value());
  EXPECT_EQ((*c.grounding_metadata)["groundingSupports"][0]["segment"]["endIndex"], 42);
  EXPECT_EQ((*c.grounding_metadata)["groundingChunks"][0]["web"]["domain"], "example.com");
  ASSERT_TRUE(r.usage.has_value());
  EXPECT_EQ(r.usage->prompt_token_count, 12);
  EXPECT_EQ(r.usage->candidates_token_count, 7);
  EXPECT_EQ(r.usage->total_token_count, 19);
  ASSERT_EQ(r.usage->prompt_tokens_details.size(), 1u);
  EXPECT_EQ(r.usage->prompt_tokens_details[0].modality, "TEXT");
  EXPECT_EQ(r.usage->prompt_tokens_details[0].token_count, 12);
  EXPECT_EQ(r.model_version, "gemini-2.5-flash");
  EXPECT_EQ(r.response_id, "resp-1");
  Usage u = r.usage->summary();
  EXPECT_EQ(u.total_tokens, 19);
}

TEST(CodecGenerateContent, DecodesAnImagePartWithText) {
  GenerateContentResponse r = decode_generate_content_response(R"({"candidates":[{"content":{
      "role":"model","parts":[{"text":"Here it is."},
      {"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]},"finishReason":"STOP"}]})");
  ASSERT_EQ(r.candidates.size(), 1u);
  const auto &parts = r.candidates[0].content.parts;
  ASSERT_EQ(parts.size(), 2u);
  const auto &blob = std::get<BlobPart>(parts[1]);
  EXPECT_EQ(blob.mime_type, "image/png");
  EXPECT_EQ(blob.data, std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_FALSE(r.usage.has_value());
}

TEST(CodecGenerateContent, DecodesFunctionCallsAndThoughts) {
  GenerateContentResponse r = decode_generate_content_response(R"({"candidates":[{"content":{
      "parts":[{"text":"planning...","thought":true},
               {"functionCall":{"id":"fc-9","name":"make_cover","args":{"motif":"fern","n":2}}},
               {"functionCall":{"name":"no_args"}},
               {"text":"done"}]}}]})");
  const auto &parts = r.candidates[0].content.parts;
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_TRUE(std::get<TextPart>(parts[0]).thought);
  const auto &call = std::get<FunctionCallPart>(parts[1]);
  EXPECT_EQ(call.id, "fc-9");
  EXPECT_EQ(call.name, "make_cover");
  EXPECT_EQ(call.args, json::parse(R"({"motif":"fern","n":2})"));
  EXPECT_EQ(std::get<FunctionCallPart>(parts[2]).args, json::object());
  EXPECT_EQ(r.candidates[0].text(), "done");
}

TEST(CodecGenerateContent, SkipsUnknownPartKinds) {
  GenerateContentResponse r = decode_generate_content_response(R"json({"candidates":[{"content":{
      "parts":[{"executableCode":{"language":"PYTHON","code":"print(1)"}},
               {"codeExecutionResult":{"outcome":"OUTCOME_OK","output":"1"}},
               {"fileData":{"mimeType":"video/mp4","fileUri":"https://x/v1beta/files/a"}},
               {"thoughtSignature":"c2ln"},
               {"someFuturePart":{"x":1}},
               {"text":"kept"}]},"finishReason":"STOP","safetyRatings":[],"citationMetadata":{}}],
      "futureTopLevel":true})json");
  const auto &parts = r.candidates[0].content.parts;
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(std::get<TextPart>(parts[0]).text, "kept");
}

TEST(CodecGenerateContent, DecodesABlockedPrompt) {
  GenerateContentResponse r = decode_generate_content_response(
      R"({"promptFeedback":{"blockReason":"PROHIBITED_CONTENT","blockReasonMessage":"no"},
          "usageMetadata":{"promptTokenCount":"5","totalTokenCount":5}})");
  EXPECT_TRUE(r.candidates.empty());
  EXPECT_EQ(r.block_reason, "PROHIBITED_CONTENT");
  EXPECT_EQ(r.block_reason_message, "no");
  EXPECT_EQ(r.usage->prompt_token_count, 5);
}

TEST(CodecGenerateContent, DecodesImageSafetyFinishWithoutContent) {
  GenerateContentResponse r = decode_generate_content_response(
      R"({"candidates":[{"finishReason":"IMAGE_SAFETY","finishMessage":"blocked","index":0}]})");
  ASSERT_EQ(r.candidates.size(), 1u);
  EXPECT_TRUE(r.candidates[0].content.parts.empty());
  EXPECT_EQ(r.candidates[0].finish_reason, "IMAGE_SAFETY");
  EXPECT_EQ(r.candidates[0].finish_message, "blocked");
}

TEST(CodecGenerateContent, Int64FieldsAcceptStringsAndNumbers) {
  GenerateContentResponse r = decode_generate_content_response(
      R"({"usageMetadata":{"promptTokenCount":"9007199254740993","candidatesTokenCount":3,
          "totalTokenCount":"9007199254740996","cachedContentTokenCount":"0",
          "thoughtsTokenCount":4.0,"toolUsePromptTokenCount":null,
          "candidatesTokensDetails":[{"modality":"IMAGE","tokenCount":"1290"}]}})");
  EXPECT_EQ(r.usage->prompt_token_count, 9007199254740993LL);
  EXPECT_EQ(r.usage->candidates_token_count, 3);
  EXPECT_EQ(r.usage->total_token_count, 9007199254740996LL);
  EXPECT_EQ(r.usage->thoughts_token_count, 4);
  EXPECT_EQ(r.usage->tool_use_prompt_token_count, 0);
  EXPECT_EQ(r.usage->candidates_tokens_details.at(0).token_count, 1290);
}

TEST(CodecGenerateContent, MalformedResponsesAreProtocolErrors) {
  struct Case {
    const char *body;
    const char *needle;
  };
  const Case cases[] = {
      {"", "malformed generateContent response: empty body"},
      {"<html>502 Bad Gateway</html>", "not valid JSON"},
      {R"({"candidates":)", "not valid JSON"},
      {"[]", "expected a JSON object, got array"},
      {R"({"candidates":{}})", "candidates: expected an array, got object"},
      {R"({"candidates":[42]})", "candidates[0]: expected an object, got number"},
      {R"({"candidates":[{"content":"text"}]})", "candidates[0].content: expected an object"},
      {R"({"candidates":[{"content":{"parts":{}}}]})",
       "candidates[0].content.parts: expected an array"},
      {R"({"candidates":[{"content":{"parts":["x"]}}]})",
       "candidates[0].content.parts[0]: expected an object"},
      {R"({"candidates":[{"content":{"parts":[{"text":7}]}}]})",
       "parts[0].text: expected a string, got number"},
      {R"({"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"**"}}]}}]})",
       "candidates[0].content.parts[0].inlineData.data: invalid base64"},
      {R"({"candidates":[{"content":{"parts":[{"inlineData":[]}]}}]})",
       "parts[0].inlineData: expected an object"},
      {R"({"candidates":[{"content":{"parts":[{"functionCall":{"args":{}}}]}}]})",
       "functionCall.name: missing"},
      {R"({"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":[1]}}]}}]})",
       "functionCall.args: expected an object"},
      {R"({"candidates":[{"finishReason":1}]})", "candidates[0].finishReason: expected a string"},
      {R"({"candidates":[{"index":"zero"}]})",
       "candidates[0].index: expected an integer, got \"zero\""},
      {R"({"candidates":[{"groundingMetadata":"x"}]})", "groundingMetadata: expected an object"},
      {R"({"usageMetadata":{"totalTokenCount":"12abc"}})",
       "usageMetadata.totalTokenCount: expected an integer"},
      {R"({"usageMetadata":{"totalTokenCount":1.5}})",
       "usageMetadata.totalTokenCount: expected an integer"},
      {R"({"usageMetadata":{"totalTokenCount":true}})", "expected an integer, got boolean"},
      {R"({"usageMetadata":{"promptTokensDetails":[{"tokenCount":[]}]}})",
       "promptTokensDetails[0].tokenCount"},
      {R"({"promptFeedback":{"blockReason":["SAFETY"]}})",
       "promptFeedback.blockReason: expected a string"},
      {R"({"modelVersion":{}})", "modelVersion: expected a string"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.body);
    expect_protocol_error([&] { decode_generate_content_response(std::string_view(c.body)); },
                          c.needle);
  }
}

// ---- Imagen -------------------------------------------------------------------------------------

TEST(CodecImagen, RequestHasTheDocumentedShape) {
  ImageRequest req;
  req.model_id = "imagen-4.0-generate-001";
  req.api = ImageApi::Predict;
  req.prompt = "a fern, macro";
  req.aspect_ratio = "3:4";
  const json expected = json::parse(R"({"instances":[{"prompt":"a fern, macro"}],
     "parameters":{"sampleCount":1,"aspectRatio":"3:4","includeRaiReason":true,
                   "outputOptions":{"mimeType":"image/png"}}})");
  EXPECT_EQ(encode_imagen_request(req), expected);

  json with_people = encode_imagen_request(req, "allow_adult");
  EXPECT_EQ(with_people["parameters"]["personGeneration"], "allow_adult");
}

TEST(CodecImagen, DecodesImagesAndFilteredSamples) {
  PredictResponse r = decode_predict_response(
      R"({"predictions":[{"bytesBase64Encoded":"iVBORw0KGgo=","mimeType":"image/png"},
                         {"raiFilteredReason":"Your current safety filter threshold prohibited ..."},
                         {"bytesBase64Encoded":"/9j/"}]})");
  ASSERT_EQ(r.predictions.size(), 3u);
  EXPECT_EQ(r.predictions[0].bytes, std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(r.predictions[0].mime_type, "image/png");
  EXPECT_TRUE(r.predictions[1].bytes.empty());
  EXPECT_EQ(r.predictions[1].rai_filtered_reason.rfind("Your current safety", 0), 0u);
  EXPECT_EQ(r.predictions[2].mime_type, "image/png");
  EXPECT_EQ(r.predictions[2].bytes, "\xff\xd8\xff");

  EXPECT_TRUE(decode_predict_response("{}").predictions.empty());
}

TEST(CodecImagen, MalformedResponsesAreProtocolErrors) {
  expect_protocol_error([] { decode_predict_response("nope"); },
                        "malformed predict response: not valid JSON");
  expect_protocol_error([] { decode_predict_response(R"({"predictions":{}})"); },
                        "predictions: expected an array");
  expect_protocol_error(
      [] { decode_predict_response(R"({"predictions":[{"mimeType":"image/png"}]})"); },
      "predictions[0]: neither bytesBase64Encoded nor raiFilteredReason");
  expect_protocol_error(
      [] { decode_predict_response(R"({"predictions":[{"bytesBase64Encoded":"a b"}]})"); },
      "predictions[0].bytesBase64Encoded: invalid base64");
  expect_protocol_error(
      [] { decode_predict_response(R"({"predictions":[{"bytesBase64Encoded":12}]})"); },
      "predictions[0].bytesBase64Encoded: expected a string");
}

// ---- Veo ----------------------------------------------------------------------------------------

TEST(CodecVeo, RequestHasTheDocumentedShape) {
  VideoRequest req;
  req.model_id = "veo-3.0-fast-generate-001";
  req.prompt = "waves at night";
  req.aspect_ratio = "16:9";
  req.resolution = "720p";
  req.negative_prompt = "text, watermark";
  req.image_bytes = std::string("\x89PNG\r\n\x1a\n", 8);
  req.image_mime = "image/png";
  req.duration_seconds = 8;
  const json expected = json::parse(R"(
   {"instances":[{"prompt":"waves at night","image":{"bytesBase64Encoded":"iVBORw0KGgo=","mimeType":"image/png"}}],
    "parameters":{"aspectRatio":"16:9","resolution":"720p","negativePrompt":"text, watermark",
                  "durationSeconds":8,"sampleCount":1}})");
  EXPECT_EQ(encode_video_request(req), expected);
}

TEST(CodecVeo, RequestOmitsEmptyOptionsAndNeverSendsGenerateAudio) {
  VideoRequest req;
  req.prompt = "p";
  req.aspect_ratio = "9:16";
  req.resolution = "1080p";
  json j = encode_video_request(req);
  EXPECT_FALSE(j["instances"][0].contains("image"));
  EXPECT_FALSE(j["parameters"].contains("negativePrompt"));
  EXPECT_FALSE(j["parameters"].contains("personGeneration"));
  EXPECT_FALSE(j["parameters"].contains("generateAudio"));
  EXPECT_EQ(j["parameters"]["durationSeconds"], 8);
  EXPECT_EQ(j["parameters"]["aspectRatio"], "9:16");
}

TEST(CodecVeo, StartImageMimeIsSniffedOrRejected) {
  VideoRequest req;
  req.prompt = "p";
  req.image_bytes = "\xff\xd8\xff\xe0 jfif";
  EXPECT_EQ(encode_video_request(req)["instances"][0]["image"]["mimeType"], "image/jpeg");
  req.image_bytes = "GIF89a";
  expect_error(
      ErrorKind::InvalidArgument, [&] { encode_video_request(req); }, "set its MIME type");
}

TEST(CodecVeo, DecodesPendingOperations) {
  Operation started =
      decode_operation(R"({"name":"models/veo-3.0-fast-generate-001/operations/abc123"})");
  EXPECT_EQ(started.name, "models/veo-3.0-fast-generate-001/operations/abc123");
  EXPECT_FALSE(started.done);
  EXPECT_FALSE(started.error.has_value());
  EXPECT_TRUE(started.video_uris.empty());

  Operation polled = decode_operation(
      R"({"name":"models/veo/operations/abc123","done":false,"metadata":{"@type":"x"}})");
  EXPECT_FALSE(polled.done);
}

TEST(CodecVeo, DecodesTheReferenceFinishedOperation) {
  Operation op = decode_operation(R"(
   {"name":"...","done":true,"response":{"@type":"type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
     "generateVideoResponse":{"generatedSamples":[{"video":{"uri":"https://generativelanguage.googleapis.com/v1beta/files/abc123:download?alt=media"}}],
                               "raiMediaFilteredCount":0,"raiMediaFilteredReasons":[]}}})");
  EXPECT_TRUE(op.done);
  EXPECT_FALSE(op.error.has_value());
  ASSERT_EQ(op.video_uris.size(), 1u);
  EXPECT_EQ(op.video_uris[0],
            "https://generativelanguage.googleapis.com/v1beta/files/abc123:download?alt=media");
  EXPECT_EQ(op.rai_filtered_count, 0);
  EXPECT_TRUE(op.rai_filtered_reasons.empty());
}

TEST(CodecVeo, DecodesFilteredOperations) {
  Operation op = decode_operation(R"({"name":"models/veo/operations/x","done":true,
      "response":{"generateVideoResponse":{"raiMediaFilteredCount":"1",
        "raiMediaFilteredReasons":["We encountered an issue with the audio for your prompt."]}}})");
  EXPECT_TRUE(op.done);
  EXPECT_TRUE(op.video_uris.empty());
  EXPECT_EQ(op.rai_filtered_count, 1);
  ASSERT_EQ(op.rai_filtered_reasons.size(), 1u);
  EXPECT_EQ(op.rai_filtered_reasons[0], "We encountered an issue with the audio for your prompt.");
}

TEST(CodecVeo, DecodesFailedOperations) {
  Operation op = decode_operation(R"({"name":"models/veo/operations/x","done":true,
      "error":{"code":3,"message":"Unsupported aspect ratio."}})");
  ASSERT_TRUE(op.error.has_value());
  EXPECT_EQ(op.error->kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(op.error->status(), "INVALID_ARGUMENT");
  EXPECT_EQ(op.error->message(), "Unsupported aspect ratio.");
  EXPECT_EQ(op.error->path(), "models/veo/operations/x");
  EXPECT_EQ(op.error->http_status(), 0);
}

TEST(CodecVeo, RpcStatusMapping) {
  EXPECT_EQ(error_from_rpc_status(13, "", "boom", "op").kind(), ErrorKind::Internal);
  EXPECT_EQ(error_from_rpc_status(13, "", "boom", "op").status(), "INTERNAL");
  EXPECT_EQ(error_from_rpc_status(8, "", "quota", "op").kind(), ErrorKind::ResourceExhausted);
  EXPECT_EQ(error_from_rpc_status(14, "", "", "op").kind(), ErrorKind::Unavailable);
  EXPECT_EQ(error_from_rpc_status(14, "", "", "op").message(), "UNAVAILABLE");
  EXPECT_EQ(error_from_rpc_status(1, "", "", "op").kind(), ErrorKind::Cancelled);
  // Some proxies put the HTTP status in `code`.
  EXPECT_EQ(error_from_rpc_status(404, "NOT_FOUND", "gone", "op").kind(), ErrorKind::NotFound);
  EXPECT_EQ(error_from_rpc_status(503, "", "later", "op").kind(), ErrorKind::Unavailable);
}

TEST(CodecVeo, MalformedOperationsAreProtocolErrors) {
  struct Case {
    const char *body;
    const char *needle;
  };
  const Case cases[] = {
      {"", "malformed operation response: empty body"},
      {"{}", "malformed operation response: name: missing"},
      {R"({"name":5})", "name: expected a string"},
      {R"({"name":"op","done":"true"})", "done: expected a boolean, got string"},
      {R"({"name":"op","error":"bad"})", "error: expected an object"},
      {R"({"name":"op","error":{"code":"x"}})", "error.code: expected an integer"},
      {R"({"name":"op","response":[]})", "response: expected an object"},
      {R"({"name":"op","response":{"generateVideoResponse":{"generatedSamples":{}}}})",
       "response.generateVideoResponse.generatedSamples: expected an array"},
      {R"({"name":"op","response":{"generateVideoResponse":{"generatedSamples":[{"video":{}}]}}})",
       "response.generateVideoResponse.generatedSamples[0].video.uri: missing"},
      {R"({"name":"op","response":{"generateVideoResponse":{"generatedSamples":[{"video":{"uri":1}}]}}})",
       "generatedSamples[0].video.uri: expected a string"},
      {R"({"name":"op","response":{"generateVideoResponse":{"raiMediaFilteredReasons":[1]}}})",
       "raiMediaFilteredReasons[0]: expected a string"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.body);
    expect_protocol_error([&] { decode_operation(c.body); }, c.needle);
  }
}

// ---- helpers ------------------------------------------------------------------------------------

TEST(CodecBase64, Rfc4648Vectors) {
  const std::pair<const char *, const char *> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto &[plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), plain);
  }
}

TEST(CodecBase64, RoundTripsEveryByteAndLength) {
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all += static_cast<char>(i);
  }
  for (std::size_t len = 0; len <= all.size(); len += 1) {
    std::string s = all.substr(256 - len);
    ASSERT_EQ(base64_decode(base64_encode(s)), s) << "length " << len;
  }
}

TEST(CodecBase64, AcceptsUrlSafeAndUnpaddedForms) {
  EXPECT_EQ(base64_decode("Zm9vYg"), "foob");
  EXPECT_EQ(base64_decode("Zm9vYmE"), "fooba");
  EXPECT_EQ(base64_decode("-_-_"), base64_decode("+/+/"));
  EXPECT_EQ(base64_decode("-_-_"), "\xfb\xff\xbf");
}

TEST(CodecBase64, RejectsBadInput) {
  for (const char *bad :
       {"Zm9v!", "Zm9 v", "Zm9v\n", "Z", "Zg=", "Z===", "=Zg=", "Zg==Zg==", "Zm9vY", "Zm\x80v"}) {
    SCOPED_TRACE(bad);
    expect_protocol_error([&] { base64_decode(bad); }, "invalid base64");
  }
}

TEST(CodecFileId, ExtractsTheIdFromDownloadUris) {
  EXPECT_EQ(file_id_from_uri(
                "https://generativelanguage.googleapis.com/v1beta/files/abc123:download?alt=media"),
            "abc123");
  EXPECT_EQ(file_id_from_uri("http://127.0.0.1:8080/v1beta/files/x-Y_9:download?alt=media"),
            "x-Y_9");
  EXPECT_EQ(file_id_from_uri("https://generativelanguage.googleapis.com/v1beta/files/abc123"),
            "abc123");
  EXPECT_EQ(file_id_from_uri("files/abc123"), "abc123");
  EXPECT_EQ(file_id_from_uri("abc123"), "abc123");
}

TEST(CodecFileId, RejectsUrisWithoutAnId) {
  for (const char *bad :
       {"", "https://host/v1beta/videos/abc", "files/",
        "https://host/v1beta/files/:download?alt=media", "https://host/v1beta/profiles/abc",
        "https://host/v1beta/files/a%2Fb", "https://host/v1beta/files/..:download"}) {
    SCOPED_TRACE(bad);
    expect_protocol_error([&] { file_id_from_uri(bad); }, "malformed video uri");
  }
}

TEST(CodecFileId, ErrorOmitsTheQuery) {
  try {
    file_id_from_uri("https://host/nothing?token=secret");
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()).find("secret"), std::string::npos) << e.what();
  }
}

TEST(CodecModel, ResourceNames) {
  EXPECT_EQ(model_resource("gemini-2.5-flash-image"), "models/gemini-2.5-flash-image");
  EXPECT_EQ(model_resource("models/imagen-4.0-generate-001"), "models/imagen-4.0-generate-001");
  for (const char *bad : {"", "models/", "../secrets", "a/b", "x?key=1", "x:predict"}) {
    SCOPED_TRACE(bad);
    expect_error(
        ErrorKind::InvalidArgument, [&] { model_resource(bad); }, "invalid model id");
  }
}

} // namespace
} // namespace gemstream::codec
