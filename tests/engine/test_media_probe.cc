// probe_media: real files made by the backend's encoder and ffmpeg, and broken ones.
#include "media.h"

#include <gemstream/error.h>
#include <gemstream/media_probe.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace fs = std::filesystem;
using gemstream::Error;
using gemstream::ErrorKind;
using gemstream::probe_media;

namespace {

class ProbeTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("gemstream-probe-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    gemstream::backend::VideoSpec spec;
    spec.seconds = 4;
    spec.width = 320;
    spec.height = 180;
    spec.prompt = "calm teal waves";
    write(clip(), gemstream::backend::render_mp4(spec));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path clip() { return dir_ / "clip.mp4"; }
  static void write(const fs::path &p, const std::string &bytes) {
    std::ofstream(p, std::ios::binary) << bytes;
  }
  static std::string read(const fs::path &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static std::string error_of(const fs::path &p, gemstream::ProbeLimits limits = {}) {
    try {
      probe_media(p, limits);
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << e.what();
      return e.what();
    }
    ADD_FAILURE() << p << " was accepted";
    return {};
  }
  static inline fs::path dir_;
};

} // namespace

TEST_F(ProbeTest, ReadsAValidClip) {
  auto info = probe_media(clip());
  EXPECT_EQ(info.mime_type, "video/mp4");
  EXPECT_NEAR(info.duration_s, 4.0, 0.05);
  ASSERT_NE(info.video(), nullptr);
  EXPECT_EQ(info.video()->codec, "h264");
  EXPECT_EQ(info.video()->width, 320);
  EXPECT_EQ(info.video()->height, 180);
  EXPECT_DOUBLE_EQ(info.video()->fps, 24.0);
  EXPECT_EQ(info.video()->packets, 96);
  EXPECT_NEAR(info.video()->duration_s, 4.0, 0.05);
  ASSERT_NE(info.audio(), nullptr);
  EXPECT_EQ(info.audio()->codec, "aac");
  EXPECT_EQ(info.audio()->sample_rate, 48000);
  EXPECT_EQ(info.size_bytes, fs::file_size(clip()));
}

TEST_F(ProbeTest, TruncatedFilesAreRejected) {
  std::string bytes = read(clip());
  // moov at the end: the cut removes the index.
  write(dir_ / "cut.mp4", bytes.substr(0, bytes.size() * 6 / 10));
  EXPECT_NE(error_of(dir_ / "cut.mp4").find("truncated"), std::string::npos);

  // moov first (faststart): the index survives, the media data does not.
  fs::path fast = dir_ / "fast.mp4";
  std::string cmd = "ffmpeg -loglevel error -y -i " + clip().string() +
                    " -c copy -movflags +faststart " + fast.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string fb = read(fast);
  write(dir_ / "fastcut.mp4", fb.substr(0, fb.size() / 2));
  std::string msg = error_of(dir_ / "fastcut.mp4");
  EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("damaged") != std::string::npos)
      << msg;
}

TEST_F(ProbeTest, NotAVideoTooLargeNoVideoAndOtherContainers) {
  write(dir_ / "notes.mp4", std::string("these are my workout notes, not a video\n", 41));
  EXPECT_NE(error_of(dir_ / "notes.mp4").find("not a video file"), std::string::npos);

  gemstream::ProbeLimits small;
  small.max_bytes = 1000;
  EXPECT_NE(error_of(clip(), small).find("too large"), std::string::npos);

  fs::path audio = dir_ / "audio.mp4";
  ASSERT_EQ(std::system(("ffmpeg -loglevel error -y -i " + clip().string() + " -vn -c copy " +
                         audio.string()).c_str()), 0);
  EXPECT_NE(error_of(audio).find("no video stream"), std::string::npos);

  write(dir_ / "cover.png", gemstream::backend::render_png({64, 64, "owl"}));
  EXPECT_NE(error_of(dir_ / "cover.png").find("unsupported container"), std::string::npos);

  fs::path webm = dir_ / "clip.webm";
  ASSERT_EQ(std::system(("ffmpeg -loglevel error -y -f lavfi -i testsrc=size=160x90:rate=10:duration=2 "
                         "-c:v libvpx-vp9 -deadline realtime " + webm.string()).c_str()), 0);
  auto info = probe_media(webm);
  EXPECT_EQ(info.mime_type, "video/webm");
  EXPECT_EQ(info.video()->codec, "vp9");
  EXPECT_NEAR(info.duration_s, 2.0, 0.15);

  EXPECT_THROW(probe_media(dir_ / "missing.mp4"), Error);
  EXPECT_EQ(error_of(dir_), dir_.string() + ": a directory, not a video file");
}

// An MP4's header (moov) describes its streams, so the probe reads them from it without decoding;
// the same streams in Matroska, and in a fragmented MP4 whose moov lists no samples, are probed
// by decoding their first frames. All three must read the same.
TEST_F(ProbeTest, HeaderAndDecodedStreamInformationAgree) {
  fs::path mkv = dir_ / "clip.mkv", frag = dir_ / "frag.mp4";
  ASSERT_EQ(std::system(("ffmpeg -loglevel error -y -i " + clip().string() + " -c copy " +
                         mkv.string()).c_str()), 0);
  ASSERT_EQ(std::system(("ffmpeg -loglevel error -y -i " + clip().string() +
                         " -c copy -movflags frag_keyframe+empty_moov " + frag.string()).c_str()),
            0);
  const auto mp4 = probe_media(clip());
  for (const fs::path &other : {mkv, frag}) {
    SCOPED_TRACE(other.filename().string());
    const auto info = probe_media(other);
    ASSERT_NE(info.video(), nullptr);
    ASSERT_NE(info.audio(), nullptr);
    EXPECT_EQ(info.video()->codec, mp4.video()->codec);
    EXPECT_EQ(info.video()->width, mp4.video()->width);
    EXPECT_EQ(info.video()->height, mp4.video()->height);
    EXPECT_NEAR(info.video()->fps, mp4.video()->fps, 0.01);
    EXPECT_EQ(info.video()->packets, mp4.video()->packets);
    EXPECT_EQ(info.audio()->codec, mp4.audio()->codec);
    EXPECT_EQ(info.audio()->sample_rate, mp4.audio()->sample_rate);
    EXPECT_EQ(info.audio()->channels, mp4.audio()->channels);
    EXPECT_NEAR(info.duration_s, mp4.duration_s, 0.1);
  }
  EXPECT_EQ(mp4.audio()->channels, 2);
}

// Audio that goes on after the video is a whole file, not a truncated one; a cut file loses
// the end of every stream.
TEST_F(ProbeTest, AudioLongerThanTheVideoIsNotTruncation) {
  const fs::path longer = dir_ / "longer.mp4";
  ASSERT_EQ(std::system(("ffmpeg -loglevel error -y -f lavfi -i testsrc2=s=160x90:r=24:d=2 "
                         "-f lavfi -i sine=r=48000:d=3.5 -c:v libx264 -c:a aac " +
                         longer.string()).c_str()),
            0);
  const auto info = probe_media(longer);
  ASSERT_NE(info.video(), nullptr);
  EXPECT_NEAR(info.video()->duration_s, 2.0, 0.05);
  EXPECT_NEAR(info.audio()->duration_s, 3.5, 0.05);
  EXPECT_NEAR(info.duration_s, 3.5, 0.05);
}
