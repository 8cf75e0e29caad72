// Video understanding, the Files API and search grounding end to end against the local backend:
// bytes on the wire (inline base64, resumable upload chunks and offsets, SHA-256 on the server),
// answers computed from the media the backend received, citations placed in UTF-8 text, costs
// in the ledger, and bad videos refused before any request.
#include "media.h"

#include "../common/base64.h"
#include "../common/scripted_server.h"

#include <gemstream/capabilities.h>
#include <gemstream/config.h>
#include <gemstream/costs.h>
#include <gemstream/error.h>
#include <gemstream/files.h>
#include <gemstream/genai.h>
#include <gemstream/grounding.h>
#include <gemstream/local_backend.h>
#include <gemstream/video_analysis.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>
}

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace gemstream;
using json = nlohmann::json;
using gemstream::testing::b64decode;

namespace {

std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write(const fs::path &p, const std::string &bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string sha256_hex(const std::string &data) {
  AVSHA *sha = av_sha_alloc();
  av_sha_init(sha, 256);
  av_sha_update(sha, reinterpret_cast<const std::uint8_t *>(data.data()), data.size());
  unsigned char digest[32];
  av_sha_final(sha, digest);
  av_free(sha);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

bool valid_utf8(const std::string &s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size())
      return false;
    for (int k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
        return false;
    i += n;
  }
  return true;
}

// A w x h JPEG of one colour (full-range Y, Cb, Cr), made with libavcodec's MJPEG encoder.
std::string solid_jpeg(int w, int h, std::uint8_t y, std::uint8_t cb, std::uint8_t cr) {
  const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
  AVCodecContext *enc = avcodec_alloc_context3(codec);
  enc->width = w;
  enc->height = h;
  enc->pix_fmt = AV_PIX_FMT_YUVJ420P;
  enc->time_base = {1, 25};
  std::string out;
  AVFrame *frame = av_frame_alloc();
  AVPacket *pkt = av_packet_alloc();
  if (avcodec_open2(enc, codec, nullptr) == 0) {
    frame->format = enc->pix_fmt;
    frame->width = w;
    frame->height = h;
    av_frame_get_buffer(frame, 0);
    const std::uint8_t values[3] = {y, cb, cr};
    for (int plane = 0; plane < 3; ++plane)
      for (int row = 0; row < (plane ? h / 2 : h); ++row)
        std::fill_n(frame->data[plane] + row * frame->linesize[plane], plane ? w / 2 : w,
                    values[plane]);
    avcodec_send_frame(enc, frame);
    avcodec_send_frame(enc, nullptr);
    while (avcodec_receive_packet(enc, pkt) == 0) {
      out.append(reinterpret_cast<const char *>(pkt->data), static_cast<std::size_t>(pkt->size));
      av_packet_unref(pkt);
    }
  }
  av_packet_free(&pkt);
  av_frame_free(&frame);
  avcodec_free_context(&enc);
  return out;
}

std::string header(const RecordedRequest &r, const std::string &name) {
  for (const auto &[k, v] : r.headers)
    if (k == name)
      return v;
  return {};
}

class AnalysisTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("gemstream-analysis-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    backend::VideoSpec spec;
    spec.seconds = 4;
    spec.width = 320;
    spec.height = 180;
    spec.prompt = "calm teal waves";
    write(clip(), backend::render_mp4(spec));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path clip() { return dir_ / "waves.mp4"; }

  void SetUp() override {
    backend_.start();
    ledger_ = std::make_shared<CostLedger>(
        dir_ /
        (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ".sqlite"));
    unsetenv("GEMSTREAM_DAILY_BUDGET_USD");
  }

  Endpoint endpoint() const { return Endpoint{backend_.base_url(), "", "v1beta", false}; }
  ClientOptions client() const {
    ClientOptions o;
    o.retry.max_attempts = 2;
    o.retry.initial_backoff = std::chrono::milliseconds(10);
    return o;
  }
  AnalysisOptions options() const {
    AnalysisOptions o;
    o.user = "alice";
    o.file_poll_interval = std::chrono::milliseconds(20);
    return o;
  }
  AnalysisResult analyze(const fs::path &file, const AnalysisOptions &o) {
    VideoAnalyzer analyzer(endpoint(), MediaConfig::load_default(), ledger_, client());
    return analyzer.analyze(file, "here is my workout video, what do you see?", o, CancelToken());
  }
  std::string refusal(const fs::path &file, AnalysisOptions o = {}) {
    o.user = "alice";
    try {
      analyze(file, o);
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
      EXPECT_TRUE(backend_.requests().empty()) << "a request was sent for " << file;
      return e.what();
    }
    ADD_FAILURE() << file << " was accepted";
    return {};
  }

  static inline fs::path dir_;
  LocalBackend backend_;
  std::shared_ptr<CostLedger> ledger_;
};

} // namespace

TEST_F(AnalysisTest, BadVideosAreRefusedClearlyBeforeAnyRequest) {
  const std::string bytes = slurp(clip());
  write(dir_ / "cut.mp4", bytes.substr(0, bytes.size() * 6 / 10));
  EXPECT_NE(refusal(dir_ / "cut.mp4").find("truncated"), std::string::npos);
  write(dir_ / "notes.mp4", "these are my workout notes, not a video\n");
  EXPECT_NE(refusal(dir_ / "notes.mp4").find("not a video file"), std::string::npos);
  AnalysisOptions small;
  small.limits.max_bytes = 1000;
  const std::string big = refusal(clip(), small);
  EXPECT_NE(big.find("too large"), std::string::npos) << big;
  try {
    analyze(dir_ / "missing.mp4", options());
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
  EXPECT_TRUE(ledger_->entries().empty());
}

TEST_F(AnalysisTest, InlineVideoIsAnalysedFromTheBytesSent) {
  const AnalysisResult r = analyze(clip(), options());
  EXPECT_EQ(r.method, AnalysisMethod::Inline);
  EXPECT_NE(r.text.find("4.0 seconds"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("320x180"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("96 frames"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("with an audio track"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("teal"), std::string::npos) << r.text;

  const auto requests = backend_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
  const json body = json::parse(requests[0].body);
  const json &parts = body.at("contents").at(0).at("parts");
  EXPECT_EQ(parts.at(0).at("inlineData").at("mimeType"), "video/mp4");
  EXPECT_EQ(b64decode(parts.at(0).at("inlineData").at("data").get<std::string>()), slurp(clip()));
  EXPECT_EQ(parts.at(1).at("text"), "here is my workout video, what do you see?");

  ASSERT_TRUE(r.usage);
  std::map<std::string, std::int64_t> prompt;
  for (const auto &m : r.usage->prompt_details)
    prompt[m.modality] = m.tokens;
  EXPECT_EQ(prompt["VIDEO"], 4 * 258); // 1 frame per second
  EXPECT_EQ(prompt["AUDIO"], 4 * 32);
  const auto rows = ledger_->entries();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, CostKind::Analysis);
  EXPECT_EQ(rows[0].user, "alice");
  EXPECT_EQ(rows[0].usd_nanos, r.cost.usd_nanos);
  const std::int64_t tokens = r.usage->prompt_tokens + r.usage->candidates_tokens;
  EXPECT_EQ(rows[0].usd_nanos, std::llround(tokens * 0.30 * 1000));
  EXPECT_EQ(rows[0].tokens.input_by_modality.at("VIDEO"), 4 * 258);
}

TEST_F(AnalysisTest, LargeVideoGoesThroughTheFilesApi) {
  AnalysisOptions o = options();
  o.inline_limit_bytes = 10000; // the clip is larger: upload it
  o.fps = 2;
  const AnalysisResult r = analyze(clip(), o);
  EXPECT_EQ(r.method, AnalysisMethod::Upload);
  EXPECT_NE(r.text.find("4.0 seconds"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("8 frames sampled at 2 per second"), std::string::npos) << r.text;

  std::string uploaded;
  int polls = 0;
  bool deleted = false;
  json generate;
  for (const auto &req : backend_.requests()) {
    if (req.path == "/upload/v1beta/files" && header(req, "x-goog-upload-command") != "start")
      uploaded += req.body;
    if (req.method == "GET" && req.path == "/v1beta/" + r.file_name)
      ++polls;
    if (req.method == "DELETE" && req.path == "/v1beta/" + r.file_name)
      deleted = true;
    if (req.path.find(":generateContent") != std::string::npos)
      generate = json::parse(req.body);
  }
  EXPECT_EQ(uploaded, slurp(clip()));
  EXPECT_GE(polls, 1);
  EXPECT_TRUE(deleted);
  const json &part = generate.at("contents").at(0).at("parts").at(0);
  EXPECT_EQ(part.at("fileData").at("fileUri"), backend_.base_url() + "/v1beta/" + r.file_name);
  EXPECT_EQ(part.at("videoMetadata").at("fps"), 2.0);
  EXPECT_EQ(ledger_->entries().size(), 1u);
}

TEST_F(AnalysisTest, FramesAreSentAsLabelledJpegsBeforeTheQuestion) {
  std::vector<SampledFrame> frames;
  for (int i = 0; i < 4; ++i) // teal, brightening
    frames.push_back(
        {0.5 * i, 160, 90, solid_jpeg(160, 90, static_cast<std::uint8_t>(90 + 10 * i), 150, 80)});
  ASSERT_EQ(frames[0].jpeg.substr(0, 2), "\xff\xd8");
  const auto sent = frames;
  VideoAnalyzer analyzer(endpoint(), MediaConfig::load_default(), ledger_, client());
  const AnalysisResult r =
      analyzer.analyze_frames(frames, "what do you see?", options(), CancelToken(), "a test clip");
  EXPECT_EQ(r.method, AnalysisMethod::Frames);
  EXPECT_EQ(r.frames, 4u);
  EXPECT_DOUBLE_EQ(r.media.duration_s, 1.5);
  ASSERT_NE(r.media.video(), nullptr);
  EXPECT_EQ(r.media.video()->width, 160);
  EXPECT_NE(r.text.find("I looked at 4 images (160x90)"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("teal"), std::string::npos) << r.text;

  const auto requests = backend_.requests();
  ASSERT_EQ(requests.size(), 1u);
  const json body = json::parse(requests[0].body);
  const json &parts = body.at("contents").at(0).at("parts");
  ASSERT_EQ(parts.size(), 1u + 2 * 4 + 1);
  EXPECT_EQ(parts.at(0).at("text"), "4 frames of a test clip, in order, each after its time:");
  for (std::size_t i = 0; i < 4; ++i) {
    char label[32];
    std::snprintf(label, sizeof label, "Frame at %.2f s:", 0.5 * static_cast<double>(i));
    EXPECT_EQ(parts.at(1 + 2 * i).at("text"), label);
    const json &data = parts.at(2 + 2 * i).at("inlineData");
    EXPECT_EQ(data.at("mimeType"), "image/jpeg");
    EXPECT_EQ(b64decode(data.at("data").get<std::string>()), sent[i].jpeg) << i;
  }
  EXPECT_EQ(parts.back().at("text"), "what do you see?");

  std::map<std::string, std::int64_t> prompt;
  for (const auto &m : r.usage->prompt_details)
    prompt[m.modality] = m.tokens;
  EXPECT_EQ(prompt["IMAGE"], 4 * 258);
  EXPECT_EQ(prompt.count("VIDEO"), 0u);
  const auto rows = ledger_->entries();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, CostKind::Analysis);
  EXPECT_EQ(rows[0].user, "alice");
  EXPECT_EQ(rows[0].usd_nanos, r.cost.usd_nanos);
  EXPECT_EQ(rows[0].note.rfind("video analysis (frames) of a test clip; ", 0), 0u) << rows[0].note;
}

TEST_F(AnalysisTest, BadFrameRequestsAreRefusedBeforeAnyRequest) {
  VideoAnalyzer analyzer(endpoint(), MediaConfig::load_default(), ledger_, client());
  const SampledFrame frame{0, 64, 36, solid_jpeg(64, 36, 120, 128, 128)};
  auto refusal = [&](std::vector<SampledFrame> frames, const std::string &question,
                     const AnalysisOptions &o) -> std::string {
    try {
      analyzer.analyze_frames(std::move(frames), question, o, CancelToken());
    } catch (const Error &e) {
      return std::string(to_string(e.kind())) + ": " + e.what();
    }
    return "accepted";
  };
  EXPECT_NE(refusal({}, "what?", options()).find("no frames of a video"), std::string::npos);
  EXPECT_NE(refusal({frame}, "  ", options()).find("no question"), std::string::npos);
  EXPECT_NE(refusal({frame, SampledFrame{1, 64, 36, ""}}, "what?", options())
                .find("frame 2 of a video has no image data"),
            std::string::npos);
  AnalysisOptions small = options();
  small.inline_limit_bytes = 5000;
  const std::string big = refusal({frame, frame, frame}, "what?", small);
  EXPECT_NE(big.find("3 frames of a video make a"), std::string::npos) << big;
  EXPECT_NE(big.find("inline limit: send fewer or smaller frames"), std::string::npos) << big;
  ledger_->set_daily_budget("alice", 0.0000001);
  const std::string budget = refusal({frame, frame}, "what?", options());
  EXPECT_NE(budget.find("analysing these 2 frames would cost $0.000"), std::string::npos) << budget;
  EXPECT_TRUE(backend_.requests().empty());
  EXPECT_TRUE(ledger_->entries().empty());
}

TEST_F(AnalysisTest, BudgetRefusalComesBeforeAnyRequest) {
  ledger_->set_daily_budget("alice", 0.0000001);
  try {
    analyze(clip(), options());
    FAIL() << "not refused";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::BudgetExceeded);
    EXPECT_NE(std::string(e.what()).find("analysing this 4 s video would cost $0.000"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(backend_.requests().empty());
}

TEST_F(AnalysisTest, ResumableUploadIsExactByteForByte) {
  // Noise-like data, not a multiple of the 256 KiB granule.
  std::string data(5 * 256 * 1024 + 12345, '\0');
  std::uint32_t x = 12345;
  for (auto &c : data) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  write(dir_ / "blob.bin", data);

  FilesClient files(endpoint(), client());
  UploadOptions up;
  up.mime_type = "application/octet-stream";
  up.display_name = "blob";
  up.chunk_bytes = 256 * 1024;
  std::vector<std::uint64_t> progress;
  up.on_progress = [&](std::uint64_t done, std::uint64_t) { progress.push_back(done); };
  const FileResource file = files.upload(dir_ / "blob.bin", up, CancelToken());
  EXPECT_EQ(file.size_bytes, data.size());
  EXPECT_EQ(b64decode(file.sha256_hash), sha256_hex(data));
  EXPECT_EQ(file.display_name, "blob");
  EXPECT_EQ(file.state, FileState::Active); // not a video: no processing
  EXPECT_EQ(progress.back(), data.size());

  const auto requests = backend_.requests();
  ASSERT_EQ(requests.size(), 7u); // start + 6 chunks
  EXPECT_EQ(requests[0].path, "/upload/v1beta/files");
  EXPECT_EQ(header(requests[0], "x-goog-upload-protocol"), "resumable");
  EXPECT_EQ(header(requests[0], "x-goog-upload-command"), "start");
  EXPECT_EQ(header(requests[0], "x-goog-upload-header-content-length"),
            std::to_string(data.size()));
  EXPECT_EQ(header(requests[0], "x-goog-upload-header-content-type"), "application/octet-stream");
  EXPECT_EQ(json::parse(requests[0].body), json({{"file", {{"displayName", "blob"}}}}));
  std::string joined;
  for (std::size_t i = 1; i < requests.size(); ++i) {
    EXPECT_EQ(header(requests[i], "x-goog-upload-offset"), std::to_string(joined.size())) << i;
    EXPECT_EQ(header(requests[i], "x-goog-upload-command"),
              i + 1 == requests.size() ? "upload, finalize" : "upload");
    EXPECT_EQ(requests[i].status, 200);
    joined += requests[i].body;
  }
  EXPECT_EQ(joined, data);

  // Retrieval, listing, deletion.
  EXPECT_EQ(files.get(file.name, CancelToken()).sha256_hash, file.sha256_hash);
  EXPECT_EQ(files.get(file.uri, CancelToken()).name, file.name);
  const auto listed = files.list(CancelToken());
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].name, file.name);
  files.remove(file.name, CancelToken());
  try {
    files.get(file.name, CancelToken());
    FAIL() << "a deleted file is still there";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::PermissionDenied); // as the real service answers
  }
}

TEST_F(AnalysisTest, UploadResumesFromWhatTheServerReceived) {
  std::string data(3 * 256 * 1024 + 7, 'v');
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 7);
  write(dir_ / "resume.bin", data);
  FilesClient files(endpoint(), client());
  UploadOptions up;
  up.mime_type = "application/octet-stream";
  up.chunk_bytes = 256 * 1024;
  int chunks = 0;
  up.on_progress = [&](std::uint64_t, std::uint64_t) {
    if (++chunks == 1)
      backend_.fail_next(1, 503); // the second chunk fails
  };
  const FileResource file = files.upload(dir_ / "resume.bin", up, CancelToken());
  EXPECT_EQ(b64decode(file.sha256_hash), sha256_hex(data));
  bool queried = false;
  for (const auto &r : backend_.requests())
    queried = queried || header(r, "x-goog-upload-command") == "query";
  EXPECT_TRUE(queried);
}

TEST_F(AnalysisTest, ForeignUploadUrlIsRefused) {
  gemstream::testing::ScriptedServer server;
  auto start = gemstream::testing::ScriptedResponse::json(200, "");
  start.headers.emplace_back("X-Goog-Upload-URL", "http://attacker.invalid/upload?upload_id=x");
  start.headers.emplace_back("X-Goog-Upload-Status", "active");
  server.push(start);
  FilesClient files(Endpoint{server.base_url(), "secret-key", "v1beta", false}, client());
  UploadOptions up;
  up.mime_type = "video/mp4";
  try {
    files.upload(clip(), up, CancelToken());
    FAIL() << "uploaded to a foreign host";
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), ErrorKind::Protocol);
    EXPECT_NE(std::string(e.what()).find("another host"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("secret-key"), std::string::npos);
  }
  EXPECT_EQ(server.request_count(), 1u);
}

TEST_F(AnalysisTest, SearchGroundedAnswersGetCitationsInPlace) {
  GenAiClient client(endpoint(), this->client());
  GenerateRequest req;
  req.parts = {InputPart::from_text("What's the latest on AI regulation?")};
  req.google_search = true;
  const GenerateResult result = client.generate_content(req, CancelToken());
  const json sent = json::parse(backend_.requests().at(0).body);
  EXPECT_EQ(sent.at("tools"), json::array({{{"googleSearch", json::object()}}}));
  ASSERT_FALSE(result.grounding_metadata_json.empty());
  const Grounding g = parse_grounding_metadata(result.grounding_metadata_json);
  ASSERT_EQ(g.sources.size(), 2u);
  EXPECT_EQ(g.web_search_queries.at(0), "latest AI regulation news");
  const std::string cited = insert_citation_markers(result.text_parts, g);
  EXPECT_TRUE(valid_utf8(cited));
  // Removing the markers gives the answer back: they were inserted, nothing else changed.
  EXPECT_EQ(std::regex_replace(cited, std::regex(R"(\[\d+\])"), ""), result.text);
  // Each sentence of a source ends with its marker; the closing summary cites both.
  EXPECT_NE(cited.find("artificial intelligence.[1]"), std::string::npos) << cited;
  EXPECT_NE(cited.find("generative AI.[2]"), std::string::npos) << cited;
  EXPECT_NE(cited.find("AI regulation.[1][2]"), std::string::npos) << cited;
  EXPECT_EQ(format_source_list(g).substr(0, 4), "[1] ");
  std::int64_t tool_tokens = result.usage->tool_use_prompt_tokens;
  EXPECT_GT(tool_tokens, 0);
}

TEST_F(AnalysisTest, SearchCapabilityRunsThroughTheRunner) {
  CapabilityRunnerOptions o;
  o.endpoint = endpoint();
  o.user = "alice";
  const MediaConfig media = MediaConfig::load_default();
  CapabilityRunner runner(CapabilitySet::load_default(&media), media, ledger_, o);
  const CapabilitySet set = CapabilitySet::load_default();
  const auto call = set.match_utterance("what's the latest on AI regulation?");
  ASSERT_TRUE(call);
  const json response = json::parse(runner.call("c1", call->name, call->args_json));
  ASSERT_EQ(response.at("status"), "done") << response.dump();
  EXPECT_NE(response.at("answer").get<std::string>().find("[1]"), std::string::npos);
  EXPECT_EQ(response.at("sources").size(), 2u);
  EXPECT_EQ(response.at("sources").at(0).at("uri"),
            "https://digital-strategy.ec.europa.eu/en/policies/regulatory-framework-ai");
  const auto rows = ledger_->entries();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, CostKind::Search);
  EXPECT_EQ(rows[0].unit, "request");
  EXPECT_GT(rows[0].usd_nanos, 35'000); // the request fee plus tokens
}
