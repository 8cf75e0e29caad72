// The local backend's Files API state machine and its understanding stand-in, driven directly
// (no HTTP): uploads checked byte for byte, media facts checked against videos whose content is
// known (ffmpeg's lavfi sources), grounding offsets checked against the UTF-8 answer.
#include "files_api.h"
#include "media.h"
#include "understanding.h"
#include "wire.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern "C" {
#include <libavutil/mem.h>
#include <libavutil/sha.h>
}

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace gemstream::backend;
using json = nlohmann::json;

namespace {

FilesOptions polls(int n) {
  FilesOptions o;
  o.polls_until_active = n;
  return o;
}

std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A clip from ffmpeg's lavfi test sources, cached per process.
std::string lavfi_clip(const std::string &source, const std::string &name) {
  static std::map<std::string, std::string> cache;
  if (auto it = cache.find(name); it != cache.end())
    return it->second;
  const fs::path out =
      fs::temp_directory_path() / ("gemstream-und-" + std::to_string(getpid()) + "-" + name);
  const std::string cmd = "ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i '" + source +
                          "' -c:v libx264 -pix_fmt yuv420p -y " + out.string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::string bytes = slurp(out);
  fs::remove(out);
  cache[name] = bytes;
  return bytes;
}

std::string av_sha256(std::string_view data) {
  AVSHA *sha = av_sha_alloc();
  av_sha_init(sha, 256);
  av_sha_update(sha, reinterpret_cast<const std::uint8_t *>(data.data()), data.size());
  std::string out(32, '\0');
  av_sha_final(sha, reinterpret_cast<std::uint8_t *>(out.data()));
  av_free(sha);
  return out;
}

FilesRequest request(std::string method, std::string path, std::string query,
                     std::map<std::string, std::string> headers, std::string body = {}) {
  FilesRequest r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.query = std::move(query);
  r.header = [headers](std::string_view name) {
    auto it = headers.find(std::string(name));
    return it == headers.end() ? std::string() : it->second;
  };
  r.body = std::move(body);
  r.base_url = "http://127.0.0.1:9";
  return r;
}

std::string header_of(const FilesReply &r, const std::string &name) {
  for (const auto &[k, v] : r.headers)
    if (k == name)
      return v;
  return {};
}

// Starts an upload session; returns the upload id.
std::string start_upload(FilesApi &api, std::uint64_t size, const std::string &mime,
                         const std::string &display = "clip.mp4") {
  auto r = api.upload(request("POST", "/upload/v1beta/files", "",
                              {{"x-goog-upload-protocol", "resumable"},
                               {"x-goog-upload-command", "start"},
                               {"x-goog-upload-header-content-length", std::to_string(size)},
                               {"x-goog-upload-header-content-type", mime}},
                              json{{"file", {{"displayName", display}}}}.dump()));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(header_of(r, "x-goog-upload-status"), "active");
  const std::string url = header_of(r, "x-goog-upload-url");
  EXPECT_EQ(url.rfind("http://127.0.0.1:9/upload/v1beta/files?upload_id=", 0), 0u) << url;
  return *query_param(url.substr(url.find('?') + 1), "upload_id");
}

FilesReply send_chunk(FilesApi &api, const std::string &id, std::uint64_t offset,
                      const std::string &bytes, bool finalize) {
  return api.upload(request("POST", "/upload/v1beta/files",
                            "upload_id=" + id + "&upload_protocol=resumable",
                            {{"x-goog-upload-command", finalize ? "upload, finalize" : "upload"},
                             {"x-goog-upload-offset", std::to_string(offset)}},
                            bytes));
}

json get_file(FilesApi &api, const std::string &name) {
  auto r = api.files(request("GET", "/v1beta/" + name, "", {}), "v1beta", "/" + name.substr(6));
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body);
}

} // namespace

TEST(Sha256, MatchesLibavutilAtEveryPaddingBoundary) {
  std::mt19937 rng(7);
  for (std::size_t n : {0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 100000}) {
    std::string data(n, '\0');
    for (auto &c : data)
      c = static_cast<char>(rng());
    EXPECT_EQ(hex(sha256(data)), hex(av_sha256(data))) << n << " bytes";
  }
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(FilesApi, ResumableUploadKeepsEveryByteAndReportsTheRealResource) {
  FilesApi api(polls(2));
  // Noise compresses badly: about 1 MB, four chunks.
  const std::string data =
      lavfi_clip("testsrc=size=320x240:rate=25:duration=3,noise=alls=60:allf=t", "noise.mp4");
  ASSERT_GT(data.size(), 3u * 256 * 1024);
  const std::string id = start_upload(api, data.size(), "video/mp4");
  const std::uint64_t chunk = 256 * 1024;
  std::uint64_t offset = 0;
  FilesReply last;
  while (offset < data.size()) {
    const auto n = std::min<std::uint64_t>(chunk, data.size() - offset);
    const bool fin = offset + n == data.size();
    last = send_chunk(api, id, offset, data.substr(offset, n), fin);
    ASSERT_EQ(last.status, 200) << last.body;
    EXPECT_EQ(header_of(last, "x-goog-upload-status"), fin ? "final" : "active");
    offset += n;
  }
  const json file = json::parse(last.body).at("file");
  EXPECT_EQ(file.at("sizeBytes"), std::to_string(data.size())); // int64 as a string
  EXPECT_EQ(file.at("mimeType"), "video/mp4");
  EXPECT_EQ(file.at("displayName"), "clip.mp4");
  EXPECT_EQ(file.at("state"), "PROCESSING");
  EXPECT_EQ(*base64_decode(file.at("sha256Hash").get<std::string>()), hex(av_sha256(data)));
  const std::string name = file.at("name");
  EXPECT_EQ(name.rfind("files/", 0), 0u);
  EXPECT_EQ(file.at("uri"), "http://127.0.0.1:9/v1beta/" + name);
  for (const char *t : {"createTime", "updateTime", "expirationTime"})
    EXPECT_EQ(file.at(t).get<std::string>().back(), 'Z') << t;

  // Not usable before ACTIVE; ACTIVE on the second poll.
  auto early = api.resolve(file.at("uri").get<std::string>());
  ASSERT_TRUE(std::holds_alternative<FilesError>(early));
  EXPECT_EQ(std::get<FilesError>(early).status, 400);
  EXPECT_NE(std::get<FilesError>(early).message.find("not in an ACTIVE state"), std::string::npos);
  EXPECT_EQ(get_file(api, name).at("state"), "PROCESSING");
  const json active = get_file(api, name);
  EXPECT_EQ(active.at("state"), "ACTIVE");
  EXPECT_EQ(active.at("videoMetadata").at("videoDuration"), "3s");
  auto content = api.resolve(file.at("uri").get<std::string>());
  ASSERT_TRUE(std::holds_alternative<FileContent>(content));
  EXPECT_EQ(*std::get<FileContent>(content).data, data);

  auto del =
      api.files(request("DELETE", "/v1beta/" + name, "", {}), "v1beta", "/" + name.substr(6));
  EXPECT_EQ(del.status, 200);
  auto gone = api.files(request("GET", "/v1beta/" + name, "", {}), "v1beta", "/" + name.substr(6));
  EXPECT_EQ(gone.status, 403);
  EXPECT_EQ(api.file_count(), 0u);
}

TEST(FilesApi, OffsetsSizesAndGranularityAreEnforced) {
  FilesApi api;
  const std::string data(600 * 1024, 'x');
  const std::string id = start_upload(api, data.size(), "application/octet-stream");
  // A chunk that is not a multiple of 256 KiB (and not the last).
  auto odd = send_chunk(api, id, 0, data.substr(0, 1000), false);
  EXPECT_EQ(odd.status, 400);
  EXPECT_NE(odd.body.find("multiple of 262144"), std::string::npos) << odd.body;
  ASSERT_EQ(send_chunk(api, id, 0, data.substr(0, 256 * 1024), false).status, 200);
  // Wrong offset: rejected, and a query says where to resume.
  auto wrong = send_chunk(api, id, 0, data.substr(0, 256 * 1024), false);
  EXPECT_EQ(wrong.status, 400);
  EXPECT_NE(wrong.body.find("has received 262144 bytes"), std::string::npos) << wrong.body;
  auto query = api.upload(request("POST", "/upload/v1beta/files", "upload_id=" + id,
                                  {{"x-goog-upload-command", "query"}}));
  EXPECT_EQ(header_of(query, "x-goog-upload-size-received"), "262144");
  EXPECT_EQ(header_of(query, "x-goog-upload-status"), "active");
  // Finalizing short of the declared size fails; more than declared fails.
  auto short_final = send_chunk(api, id, 256 * 1024, data.substr(256 * 1024, 1000), true);
  EXPECT_EQ(short_final.status, 400);
  EXPECT_NE(short_final.body.find("declared 614400"), std::string::npos) << short_final.body;
  auto too_much = send_chunk(api, id, 256 * 1024, data.substr(256 * 1024) + "extra", true);
  EXPECT_EQ(too_much.status, 400);
  auto ok = send_chunk(api, id, 256 * 1024, data.substr(256 * 1024), true);
  ASSERT_EQ(ok.status, 200) << ok.body;
  // Not a video: ACTIVE at once.
  EXPECT_EQ(json::parse(ok.body).at("file").at("state"), "ACTIVE");
  // Unknown session, bad start headers.
  EXPECT_EQ(send_chunk(api, "nope", 0, "x", true).status, 404);
  auto no_size = api.upload(request("POST", "/upload/v1beta/files", "",
                                    {{"x-goog-upload-protocol", "resumable"},
                                     {"x-goog-upload-command", "start"},
                                     {"x-goog-upload-header-content-type", "video/mp4"}}));
  EXPECT_EQ(no_size.status, 400);
}

TEST(FilesApi, UndecodableVideoEndsFailedAndListingPages) {
  FilesApi api(polls(1));
  const std::string junk(1000, 'j');
  const std::string id = start_upload(api, junk.size(), "video/mp4", "junk.mp4");
  const json file = json::parse(send_chunk(api, id, 0, junk, true).body).at("file");
  const json failed = get_file(api, file.at("name"));
  EXPECT_EQ(failed.at("state"), "FAILED");
  EXPECT_NE(failed.at("error").at("message").get<std::string>().find("could not be processed"),
            std::string::npos);

  for (int i = 0; i < 12; ++i) {
    const std::string uid = start_upload(api, 3, "text/plain", "f" + std::to_string(i));
    ASSERT_EQ(send_chunk(api, uid, 0, "abc", true).status, 200);
  }
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto r = api.files(request("GET", "/v1beta/files",
                               "pageSize=5" + (token.empty() ? "" : "&pageToken=" + token), {}),
                       "v1beta", "");
    ASSERT_EQ(r.status, 200);
    const json page = json::parse(r.body);
    for (const auto &f : page.at("files"))
      seen.insert(f.at("name"));
    token = page.value("nextPageToken", "");
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen.size(), 13u);
}

TEST(Understanding, VideoFactsAreMeasured) {
  const VideoFacts red =
      analyze_video(lavfi_clip("color=c=red:size=320x240:rate=10:duration=3", "red.mp4"));
  EXPECT_NEAR(red.duration_s, 3.0, 0.15);
  EXPECT_EQ(red.width, 320);
  EXPECT_EQ(red.height, 240);
  EXPECT_DOUBLE_EQ(red.fps, 10.0);
  EXPECT_EQ(red.frames, 30);
  EXPECT_FALSE(red.audio);
  ASSERT_FALSE(red.colours.empty());
  EXPECT_EQ(red.colours.front().name, "red");
  EXPECT_GE(red.colours.front().percent, 95);
  EXPECT_LT(red.motion, 0.5);

  // A moving pattern.
  const VideoFacts moving =
      analyze_video(lavfi_clip("testsrc=size=320x240:rate=10:duration=3", "testsrc3.mp4"));
  EXPECT_EQ(moving.frames, 30);
  EXPECT_GT(moving.motion, red.motion + 1.0);

  // The backend's own Veo stand-in: 24 fps with audio.
  VideoSpec spec;
  spec.width = 320;
  spec.height = 180;
  spec.seconds = 2;
  spec.prompt = "calm teal waves";
  const VideoFacts veo = analyze_video(render_mp4(spec));
  EXPECT_EQ(veo.frames, 48);
  EXPECT_TRUE(veo.audio);
  EXPECT_EQ(veo.codec, "h264");

  EXPECT_THROW(analyze_video("definitely not a video"), std::runtime_error);
  std::string why;
  EXPECT_FALSE(probe_duration("junk", &why));
  EXPECT_FALSE(why.empty());
}

TEST(Understanding, AnswersAboutTheVideoItReceived) {
  const std::string clip = lavfi_clip("color=c=blue:size=320x240:rate=10:duration=3", "blue.mp4");
  json body = {
      {"contents",
       json::array(
           {{{"role", "user"},
             {"parts", json::array({{{"inlineData",
                                      {{"mimeType", "video/mp4"}, {"data", base64_encode(clip)}}},
                                     {"videoMetadata", {{"fps", 2}}}},
                                    {{"text", "What do you see?"}}})}}})}};
  auto parsed = parse_text_request(
      body, [](std::string_view, std::string_view) -> std::variant<MediaInput, HttpError> {
        return HttpError{403, "no files"};
      });
  ASSERT_TRUE(std::holds_alternative<TextRequest>(parsed));
  const TextRequest &req = std::get<TextRequest>(parsed);
  ASSERT_EQ(req.media.size(), 1u);
  EXPECT_EQ(req.media[0].fps, 2.0);
  const json answer = answer_text_request(req, "gemini-2.5-flash", "r1");
  const std::string text = answer.at("candidates").at(0).at("content").at("parts").at(0).at("text");
  EXPECT_NE(text.find("3.0 seconds"), std::string::npos) << text;
  EXPECT_NE(text.find("320x240"), std::string::npos) << text;
  EXPECT_NE(text.find("30 frames"), std::string::npos) << text;
  EXPECT_NE(text.find("blue"), std::string::npos) << text;
  EXPECT_NE(text.find("almost no motion"), std::string::npos) << text;
  const json usage = answer.at("usageMetadata");
  std::map<std::string, int> by_modality;
  for (const auto &m : usage.at("promptTokensDetails"))
    by_modality[m.at("modality")] = m.at("tokenCount");
  EXPECT_EQ(by_modality["VIDEO"], 6 * 258); // 3 s at 2 fps
  EXPECT_EQ(by_modality.count("AUDIO"), 0u);
  EXPECT_EQ(by_modality["TEXT"], 4); // "What do you see?" is 16 bytes
  EXPECT_EQ(usage.at("promptTokenCount"), 6 * 258 + 4);

  // A file reference that does not resolve is the resolver's error.
  json by_file = {
      {"contents",
       json::array(
           {{{"parts", json::array({{{"fileData",
                                      {{"fileUri", "files/x"}, {"mimeType", "video/mp4"}}}}})}}})}};
  auto refused = parse_text_request(
      by_file, [](std::string_view, std::string_view) -> std::variant<MediaInput, HttpError> {
        return HttpError{403,
                         "You do not have permission to access the File x or it may not exist."};
      });
  ASSERT_TRUE(std::holds_alternative<HttpError>(refused));
  EXPECT_EQ(std::get<HttpError>(refused).status, 403);
}

TEST(Understanding, ImageFramesAreDescribedWithTheirMotion) {
  ImageSpec a;
  a.width = 160;
  a.height = 160;
  a.prompt = "a red circle on white";
  const std::string png = render_png(a);
  const auto same = analyze_images({png, png});
  EXPECT_EQ(same.images.size(), 2u);
  EXPECT_EQ(same.images[0].width, 160);
  EXPECT_LT(same.motion, 0.01);
  ImageSpec b = a;
  b.prompt = "a deep blue ocean at night";
  const auto different = analyze_images({png, render_png(b)});
  EXPECT_GT(different.motion, 5.0);
  EXPECT_THROW(analyze_images({"nope"}), std::runtime_error);
}

TEST(Understanding, GroundedAnswersCarryExactByteOffsets) {
  const GroundedAnswer g = grounded_answer("What's the latest on AI regulation?");
  const json &gm = g.grounding_metadata;
  ASSERT_EQ(gm.at("groundingChunks").size(), 2u);
  EXPECT_EQ(gm.at("groundingChunks").at(0).at("web").at("domain"), "europa.eu");
  EXPECT_EQ(gm.at("webSearchQueries").at(0), "latest AI regulation news");
  EXPECT_NE(gm.at("searchEntryPoint").at("renderedContent").get<std::string>().find("<a"),
            std::string::npos);
  // The answer holds multi-byte characters before later segments: offsets are bytes.
  EXPECT_NE(g.text.find("\u2014"), std::string::npos);
  bool multi_chunk = false;
  for (const auto &s : gm.at("groundingSupports")) {
    const std::size_t start = s.at("segment").at("startIndex");
    const std::size_t end = s.at("segment").at("endIndex");
    ASSERT_LE(end, g.text.size());
    EXPECT_EQ(g.text.substr(start, end - start), s.at("segment").at("text").get<std::string>());
    multi_chunk = multi_chunk || s.at("groundingChunkIndices").size() > 1;
  }
  EXPECT_TRUE(multi_chunk);

  const GroundedAnswer none = grounded_answer("zzyzx quux");
  EXPECT_FALSE(none.grounding_metadata.contains("groundingChunks"));
  EXPECT_NE(none.text.find("found nothing"), std::string::npos);
}
