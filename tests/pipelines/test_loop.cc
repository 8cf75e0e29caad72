// gemstream::make_loop() (gemstream/loop.h) and `gemstream loop`: outputs probed (durations,
// codecs, faststart, poster size), progress, cancellation and errors leaving no file behind,
// and the seam of the loop the command line writes.
#include "common/run_command.h"
#include "common/seam_metric.h"
#include "pipelines/pipeline_test_util.h"

#include <gemstream/error.h>
#include <gemstream/loop.h>
#include <gemstream/media_probe.h>
#include <gemstream/pipeline.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace gemstream;
using namespace gemstream::test;
using namespace std::chrono_literals;

namespace {

constexpr double kFrame = 1.0 / 24;

std::set<std::string> files_in(const fs::path &dir) {
  std::set<std::string> names;
  if (fs::exists(dir))
    for (const auto &e : fs::directory_iterator(dir))
      names.insert(e.path().filename().string());
  return names;
}

// Runs ffmpeg, quiet and overwriting, with `args` and then `out`; true when it succeeds.
bool ffmpeg(const std::string &args, const fs::path &out) {
  return std::system(("ffmpeg -loglevel error -y " + args + " " + out.string()).c_str()) == 0;
}

// Runs make_loop and expects it to throw an Error of `kind`; returns the message.
std::string loop_error(const LoopRequest &request, ErrorKind kind, const CancelToken &cancel = {},
                       const LoopProgress &progress = {}) {
  try {
    make_loop(request, cancel, progress);
  } catch (const Error &e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.message();
  }
  ADD_FAILURE() << "make_loop did not fail";
  return {};
}

class MakeLoop : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    if (!gst_is_initialized())
      gst_init(nullptr, nullptr);
    ASSERT_FALSE(find_gemstream_plugin().empty());
  }
  // A 3 s clip (72 frames) with a moving ball and a sine tone, 320x180 at 24 fps.
  fs::path clip(int frames = 72, bool audio = true) {
    const fs::path path =
        dir_ / ("clip-" + std::to_string(frames) + (audio ? "-av" : "-v") + ".mp4");
    if (!fs::exists(path)) {
      EXPECT_EQ(make_clip(path, frames, audio), "");
    }
    return path;
  }
  LoopRequest request(const fs::path &input, const std::string &out = "out") {
    LoopRequest r;
    r.input = input;
    r.out_dir = dir_ / out;
    r.crossfade = 500ms;
    r.h264_preset = "ultrafast";
    return r;
  }
  TempDir dir_;
};

TEST_F(MakeLoop, WritesEveryFormatInPlaceWithTheLoopDuration) {
  const LoopRequest req = request(clip());
  std::vector<double> progress;
  const LoopResult r = make_loop(req, {}, [&](double p) { progress.push_back(p); });

  const fs::path out = req.out_dir;
  ASSERT_EQ(r.files.size(), 3u);
  EXPECT_EQ(r.files.at(LoopFormat::Mp4), out / "loop.mp4");
  EXPECT_EQ(r.files.at(LoopFormat::Webm), out / "loop.webm");
  EXPECT_EQ(r.files.at(LoopFormat::Poster), out / "poster.jpg");
  EXPECT_EQ(files_in(out), (std::set<std::string>{"loop.mp4", "loop.webm", "poster.jpg"}));
  EXPECT_TRUE(r.audio);
  EXPECT_TRUE(r.used_frame_count);
  EXPECT_NEAR(r.duration_s, 2.5, 1e-6); // 72 - 12 frames at 24 fps
  EXPECT_NEAR(r.input.duration_s, 3.0, kFrame);

  // Durations = input - crossfade; the audio ends with the video (AAC rounds up to a frame).
  const gemstream::MediaInfo mp4 = probe_media(out / "loop.mp4");
  ASSERT_NE(mp4.video(), nullptr);
  EXPECT_EQ(mp4.video()->codec, "h264");
  EXPECT_NEAR(mp4.video()->duration_s, 2.5, 1e-3);
  EXPECT_EQ(mp4.video()->packets, 60);
  ASSERT_NE(mp4.audio(), nullptr);
  EXPECT_EQ(mp4.audio()->codec, "aac");
  EXPECT_NEAR(mp4.audio()->duration_s, 2.5, 0.03);
  // faststart: the index (moov) precedes the media data, so a browser can start at once.
  const std::string bytes = slurp(out / "loop.mp4");
  ASSERT_NE(bytes.find("moov"), std::string::npos);
  EXPECT_LT(bytes.find("moov"), bytes.find("mdat"));

  const gemstream::MediaInfo webm = probe_media(out / "loop.webm");
  EXPECT_EQ(webm.mime_type, "video/webm");
  ASSERT_NE(webm.video(), nullptr);
  EXPECT_EQ(webm.video()->codec, "vp9");
  EXPECT_EQ(webm.video()->packets, 60);
  ASSERT_NE(webm.audio(), nullptr);
  EXPECT_EQ(webm.audio()->codec, "opus");
  EXPECT_NEAR(webm.duration_s, 2.5, 0.03);

  const test::MediaInfo poster = probe(out / "poster.jpg");
  ASSERT_TRUE(poster.ok);
  EXPECT_TRUE(poster.image);
  EXPECT_EQ(poster.width, 320);
  EXPECT_EQ(poster.height, 180);
  EXPECT_EQ(slurp(out / "poster.jpg").substr(0, 2), "\xff\xd8");

  // Progress: from 0, never back, through the run, 100 once the files are in place.
  ASSERT_GE(progress.size(), 10u);
  EXPECT_EQ(progress.front(), 0);
  EXPECT_EQ(progress.back(), 100);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_TRUE(
      std::any_of(progress.begin(), progress.end(), [](double p) { return p > 40 && p < 60; }));
}

// avenc_aac starts with 1024 samples of encoder delay (priming). Unless the MP4's edit list
// skips them, every pass of <video loop> starts with 21 ms of silence and the audio outlasts
// the video by as much.
TEST_F(MakeLoop, TheMp4AudioStartsWithoutTheEncodersPrimingSilence) {
  const fs::path tone = dir_ / "tone.mp4";
  ASSERT_TRUE(ffmpeg("-f lavfi -i testsrc2=s=320x180:r=24:d=3 -f lavfi -i sine=f=440:r=48000:d=3 "
                     "-c:v libx264 -preset ultrafast -c:a aac",
                     tone));
  const LoopRequest req = request(tone, "tone");
  const LoopResult r = make_loop(req, {}, {});
  const fs::path mp4 = r.files.at(LoopFormat::Mp4);

  const auto duration = gemstream::testing::run_command(
      "ffprobe -v error -select_streams a -show_entries stream=duration -of csv=p=0 " +
      mp4.string());
  ASSERT_EQ(duration.code, 0);
  EXPECT_NEAR(std::stod(duration.out), 2.5, 0.002) << "audio longer than the 2.5 s of video";

  const auto pcm = gemstream::testing::run_command("ffmpeg -v error -i " + mp4.string() +
                                                   " -map 0:a -ac 1 -f s16le -");
  ASSERT_EQ(pcm.code, 0);
  const std::size_t n = pcm.out.size() / 2;
  ASSERT_GT(n, 48000u);
  auto rms = [&](std::size_t from, std::size_t to) {
    double sum = 0;
    for (std::size_t i = from; i < to; ++i) {
      std::int16_t v;
      std::memcpy(&v, pcm.out.data() + 2 * i, 2);
      sum += double(v) * v;
    }
    return std::sqrt(sum / double(to - from));
  };
  const double steady = rms(4800, n - 4800);
  ASSERT_GT(steady, 1000);
  EXPECT_GT(rms(0, 480), 0.5 * steady) << "the first 10 ms of the loop are silent";
}

TEST_F(MakeLoop, ScalesASilentClipAndWritesOnlyTheFormatsAsked) {
  LoopRequest req = request(clip(48, false));
  req.formats = {LoopFormat::Webm, LoopFormat::Poster};
  req.height = 90;
  req.crossfade = 1s;
  const LoopResult r = make_loop(req);
  EXPECT_FALSE(r.audio);
  EXPECT_EQ(files_in(req.out_dir), (std::set<std::string>{"loop.webm", "poster.jpg"}));
  EXPECT_NEAR(r.duration_s, 1.0, 1e-6);
  const gemstream::MediaInfo webm = probe_media(req.out_dir / "loop.webm");
  ASSERT_NE(webm.video(), nullptr);
  EXPECT_EQ(webm.video()->height, 90);
  EXPECT_EQ(webm.video()->width, 160);
  EXPECT_EQ(webm.video()->packets, 24);
  EXPECT_EQ(webm.audio(), nullptr);
  const test::MediaInfo poster = probe(req.out_dir / "poster.jpg");
  EXPECT_EQ(poster.width, 160);
  EXPECT_EQ(poster.height, 90);
}

TEST_F(MakeLoop, PosterShowsTheLoopsFirstFrameInTheColoursOfTheVideo) {
  // A moving white ball on black. JFIF means full-range BT.601; the video is limited-range
  // BT.709. A JPEG written from the video's YUV as it is shows the black as dark grey (16) and
  // shifts the colours, so the poster would jump when the video starts playing over it.
  LoopRequest req = request(clip(48, false));
  req.formats = {LoopFormat::Mp4, LoopFormat::Poster};
  make_loop(req);
  const RgbFrame poster = first_frame_rgb((req.out_dir / "poster.jpg").string());
  const RgbFrame video = first_frame_rgb((req.out_dir / "loop.mp4").string());
  const uint8_t darkest = *std::min_element(poster.rgb.begin(), poster.rgb.end());
  const uint8_t video_darkest = *std::min_element(video.rgb.begin(), video.rgb.end());
  EXPECT_LE(darkest, 3);
  EXPECT_LE(video_darkest, 3);
  EXPECT_LT(rgb_mad(poster, video), 3.0);
}

// H.264 and VP9 in 4:2:0 need even sizes: an odd input, or a height whose width follows the
// aspect ratio to an odd number (240 for 16:9: 426.7), is scaled to even ones; x264 failed
// with "Can not initialize x264 encoder" before. The poster has square pixels, like the video
// as a player shows it, and is a YCbCr 4:2:0 JPEG.
TEST_F(MakeLoop, OddSizesBecomeEvenAndThePosterHasSquarePixels) {
  auto stream = [](const fs::path &file, const std::string &entries) {
    const auto r = gemstream::testing::run_command(
        "ffprobe -v error -select_streams v -show_entries stream=" + entries +
        " -of csv=p=0 " + file.string());
    EXPECT_EQ(r.code, 0) << file;
    return r.out.substr(0, r.out.find('\n'));
  };
  const fs::path odd = dir_ / "odd.mp4", wide = dir_ / "wide.mp4", sar = dir_ / "sar.mp4";
  const std::string src = "-f lavfi -i testsrc2=r=24:d=2:s=";
  // 4:4:4: 4:2:0 needs even sizes in ffmpeg too.
  ASSERT_TRUE(ffmpeg(src + "320x180 -vf scale=321:181 -pix_fmt yuv444p -c:v libx264 "
                           "-preset ultrafast",
                     odd));
  ASSERT_EQ(probe_media(odd).video()->width, 321);
  ASSERT_TRUE(ffmpeg(src + "640x360 -c:v libx264 -preset ultrafast", wide));
  ASSERT_TRUE(ffmpeg(src + "240x180 -vf setsar=4/3 -c:v libx264 -preset ultrafast", sar));

  LoopRequest req = request(odd, "odd");
  make_loop(req);
  EXPECT_EQ(stream(req.out_dir / "loop.mp4", "width,height"), "320,180");
  EXPECT_EQ(stream(req.out_dir / "loop.webm", "width,height"), "320,180");

  req = request(wide, "wide");
  req.height = 240;
  make_loop(req);
  EXPECT_EQ(stream(req.out_dir / "loop.mp4", "width,height"), "426,240");
  EXPECT_EQ(stream(req.out_dir / "poster.jpg", "width,height"), "426,240");

  req.height = 181;
  EXPECT_NE(loop_error(req, ErrorKind::InvalidArgument).find("even"), std::string::npos);

  // 240x180 pixels 4/3 wide show as 320x180.
  req = request(sar, "sar");
  make_loop(req);
  EXPECT_EQ(stream(req.out_dir / "loop.mp4", "width,height,sample_aspect_ratio"), "240,180,4:3");
  EXPECT_EQ(stream(req.out_dir / "poster.jpg", "width,height,pix_fmt"), "320,180,yuvj420p");
}

// A phone clip stored sideways with a rotation in its header (display matrix) is looped upright:
// the outputs carry no rotation, so it is turned before encoding, as ffmpeg shows it.
TEST_F(MakeLoop, ARotatedClipIsLoopedUpright) {
  const fs::path flat = dir_ / "flat.mp4", rotated = dir_ / "rotated.mp4";
  ASSERT_TRUE(ffmpeg("-f lavfi -i testsrc2=r=24:d=2:s=320x180 -c:v libx264 -preset ultrafast",
                     flat));
  ASSERT_TRUE(ffmpeg("-i " + flat.string() + " -c copy -metadata:s:v rotate=90", rotated));
  // ffmpeg's rotate=90 tag: shown a quarter turn counter-clockwise, i.e. 270 clockwise.
  EXPECT_EQ(probe_media(rotated).video()->rotation, 270);
  EXPECT_EQ(probe_media(flat).video()->rotation, 0);
  LoopRequest req = request(rotated, "rotated");
  req.formats = {LoopFormat::Mp4, LoopFormat::Poster};
  make_loop(req);
  const auto size = gemstream::testing::run_command(
      "ffprobe -v error -select_streams v -show_entries stream=width,height -of csv=p=0 " +
      (req.out_dir / "loop.mp4").string());
  EXPECT_EQ(size.out, "180,320\n");
  EXPECT_EQ(first_frame_rgb((req.out_dir / "poster.jpg").string()).width, 180);

  // The loop starts at input frame 12 (0.5 s): compare with ffmpeg's upright decode of it.
  const auto want = gemstream::testing::run_command(
      "ffmpeg -v error -ss 0.5 -i " + rotated.string() +
      " -frames:v 1 -f rawvideo -pix_fmt gray -");
  const auto got = gemstream::testing::run_command("ffmpeg -v error -i " +
                                                   (req.out_dir / "loop.mp4").string() +
                                                   " -frames:v 1 -f rawvideo -pix_fmt gray -");
  ASSERT_EQ(want.out.size(), 180u * 320u);
  ASSERT_EQ(got.out.size(), want.out.size());
  double diff = 0;
  for (std::size_t i = 0; i < got.out.size(); ++i)
    diff += std::abs(int(std::uint8_t(got.out[i])) - int(std::uint8_t(want.out[i])));
  EXPECT_LT(diff / double(got.out.size()), 3.0);
}

// A phone records at a variable frame rate: here 30 fps for 1.5 s, then 10 fps. videoloop
// counts frames, so the clip is made constant at its highest rate first. Counted at the caps'
// average rate (20 fps), the loop had 50 frames: the first half played slow, the second fast,
// out of step with the audio (a clip whose caps say 30 fps came out a third too short).
TEST_F(MakeLoop, AVariableFrameRateClipKeepsItsDuration) {
  const fs::path vfr = dir_ / "vfr.mp4";
  ASSERT_TRUE(ffmpeg("-f lavfi -i testsrc2=r=30:d=3:s=320x180 "
                     "-vf \"select='lt(t,1.5)+not(mod(n,3))'\" -vsync vfr -c:v libx264 "
                     "-preset ultrafast",
                     vfr));
  const gemstream::MediaInfo in = probe_media(vfr);
  ASSERT_NE(in.video(), nullptr);
  EXPECT_TRUE(in.video()->variable_rate);
  EXPECT_NEAR(in.video()->max_fps, 30.0, 0.01);
  EXPECT_FALSE(probe_media(clip()).video()->variable_rate);

  LoopRequest req = request(vfr, "vfr");
  req.formats = {LoopFormat::Mp4};
  const LoopResult r = make_loop(req);
  EXPECT_FALSE(r.used_frame_count);
  const gemstream::MediaInfo out = probe_media(r.files.at(LoopFormat::Mp4));
  ASSERT_NE(out.video(), nullptr);
  EXPECT_NEAR(out.video()->duration_s, 2.5, 0.05); // 3 s - 0.5 s, at 30 fps throughout
  EXPECT_NEAR(double(out.video()->packets), 75.0, 1.5);
}

// Audio shorter than the video: in MP4 the loop says so; in Matroska, whose demuxer sends the
// audio EOS only at the end of the file, the loop used to hang for ever (the muxers waited for
// audio that would never come before the video they held went on).
TEST_F(MakeLoop, AudioShorterThanTheVideoIsSilenceWithAWarningAndNeverAHang) {
  const fs::path mp4 = dir_ / "short-audio.mp4", mkv = dir_ / "short-audio.mkv";
  const std::string streams = "-f lavfi -i testsrc2=r=24:d=3:s=320x180 -f lavfi -i "
                              "sine=r=48000:d=1.5 -c:v libx264 -preset ultrafast -c:a aac";
  ASSERT_TRUE(ffmpeg(streams, mp4));
  ASSERT_TRUE(ffmpeg(streams, mkv));

  const LoopResult r = make_loop(request(mp4, "short-mp4"));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("The audio is 1.50 s shorter than the video"), std::string::npos)
      << r.warnings[0];

  // A watchdog turns a hang into a failure.
  CancelToken cancel;
  std::thread watchdog([cancel] { cancel.wait_for(60s) ? cancel.cancel() : void(); });
  LoopResult m;
  try {
    m = make_loop(request(mkv, "short-mkv"), cancel);
  } catch (const Error &e) {
    ADD_FAILURE() << e.what();
  }
  cancel.cancel();
  watchdog.join();
  EXPECT_TRUE(m.audio);
  EXPECT_EQ(m.decode, "auto");
  EXPECT_EQ(m.files.size(), 3u);
}

TEST_F(MakeLoop, CancellingMidRunLeavesNoPartialFileAndKeepsEarlierOutputs) {
  const LoopRequest req = request(clip());
  fs::create_directories(req.out_dir);
  write_file(req.out_dir / "loop.mp4", "an earlier loop");
  CancelToken cancel;
  std::vector<double> progress;
  const std::string message = loop_error(req, ErrorKind::Cancelled, cancel, [&](double p) {
    progress.push_back(p);
    if (p >= 20)
      cancel.cancel();
  });
  EXPECT_NE(message.find("cancelled"), std::string::npos) << message;
  ASSERT_FALSE(progress.empty());
  EXPECT_LT(progress.back(), 100);
  EXPECT_EQ(files_in(req.out_dir), (std::set<std::string>{"loop.mp4"}));
  EXPECT_EQ(slurp(req.out_dir / "loop.mp4"), "an earlier loop");
}

TEST_F(MakeLoop, CancellingFromAnotherThreadStopsPromptly) {
  const LoopRequest req = request(clip(240)); // 10 s
  CancelToken cancel;
  std::atomic<bool> running{false};
  std::thread canceller([&] {
    while (!running.load())
      std::this_thread::sleep_for(1ms);
    cancel.cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  double last = -1;
  loop_error(req, ErrorKind::Cancelled, cancel, [&](double p) {
    last = p;
    if (p > 0)
      running.store(true);
  });
  canceller.join();
  EXPECT_LT(last, 100);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  // make_loop created the output directory: it removes it again, empty.
  EXPECT_FALSE(fs::exists(req.out_dir)) << files_in(req.out_dir).size() << " files left";
}

TEST_F(MakeLoop, AnAlreadyCancelledTokenDoesNoWork) {
  const LoopRequest req = request(clip());
  CancelToken cancel;
  cancel.cancel();
  loop_error(req, ErrorKind::Cancelled, cancel);
  EXPECT_FALSE(fs::exists(req.out_dir));
}

TEST_F(MakeLoop, InvalidInputIsAClearErrorBeforeAnyWork) {
  int calls = 0;
  const LoopProgress count = [&](double) { ++calls; };

  const fs::path truncated = dir_ / "truncated.mp4";
  const std::string whole = slurp(clip());
  write_file(truncated, whole.substr(0, whole.size() / 2));
  std::string message = loop_error(request(truncated, "a"), ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir_ / "a"));

  const fs::path text = dir_ / "notes.mp4";
  write_file(text, "not a video at all\n");
  message = loop_error(request(text, "b"), ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("notes.mp4"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir_ / "b"));

  // 24 frames are 1 s: a 1 s crossfade needs 2 s.
  LoopRequest short_clip = request(clip(24), "c");
  short_clip.crossfade = 1s;
  message = loop_error(short_clip, ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("is 1.00 s long; a crossfade of 1.00 s needs a clip of at least 2.00 s"),
            std::string::npos)
      << message;
  EXPECT_FALSE(fs::exists(dir_ / "c"));

  LoopRequest none = request(clip(), "d");
  none.formats.clear();
  loop_error(none, ErrorKind::InvalidArgument, {}, count);
  LoopRequest tiny = request(clip(), "e");
  tiny.crossfade = 10ms;
  message = loop_error(tiny, ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("between 40 ms and 60 s"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir_ / "e"));
  LoopRequest quality = request(clip(), "f");
  quality.h264_crf = 99;
  message = loop_error(quality, ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("h264-crf"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir_ / "f"));

  // x264 encodes 16x16 and up: the 320x180 clip at a height of 8, or made 8 pixels wide.
  LoopRequest small = request(clip(), "g");
  small.height = 8;
  message = loop_error(small, ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("even number of pixels from 16 to 4320"), std::string::npos) << message;
  const fs::path tall = dir_ / "tall.mp4";
  ASSERT_TRUE(ffmpeg("-f lavfi -i testsrc=size=90x320:rate=24:duration=2.5 -pix_fmt yuv420p "
                     "-c:v libx264",
                     tall));
  LoopRequest narrow = request(tall, "h");
  narrow.height = 16;
  message = loop_error(narrow, ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("is 90x320: at a height of 16 the loop would be 5 pixels wide"),
            std::string::npos)
      << message;
  EXPECT_FALSE(fs::exists(dir_ / "h"));

  // The loop never replaces its own input.
  const fs::path own = dir_ / "own";
  fs::create_directories(own);
  fs::copy_file(clip(), own / "loop.mp4");
  const std::string before = slurp(own / "loop.mp4");
  LoopRequest in_place = request(own / "loop.mp4", "own");
  message = loop_error(in_place, ErrorKind::InvalidArgument, {}, count);
  EXPECT_NE(message.find("own/loop.mp4 is the input itself"), std::string::npos) << message;
  EXPECT_EQ(slurp(own / "loop.mp4"), before);
  EXPECT_EQ(calls, 0);
}

TEST_F(MakeLoop, AWrongProbedFrameCountIsRetriedWithoutIt) {
  // A stream copy that starts 1 frame in keeps the whole GOP and an edit list that hides the
  // first frame: libavformat reads 72 packets for 2.96 s (a plausible count), GStreamer decodes
  // 71 frames. videoloop reports the mismatch and make_loop runs again with its delay line.
  const fs::path edited = dir_ / "edited.mp4";
  const std::string cmd =
      "ffmpeg -v error -y -ss 0.042 -i '" + clip().string() + "' -c copy '" + edited.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const LoopRequest req = request(edited);
  std::vector<double> progress;
  const LoopResult r = make_loop(req, {}, [&](double p) { progress.push_back(p); });
  EXPECT_EQ(r.decode, "mp4-avc"); // qtdemux applies the edit list without decodebin3 too
  EXPECT_EQ(r.input.video()->packets, 72);
  EXPECT_FALSE(r.used_frame_count);
  EXPECT_EQ(files_in(req.out_dir), (std::set<std::string>{"loop.mp4", "loop.webm", "poster.jpg"}));
  const gemstream::MediaInfo mp4 = probe_media(req.out_dir / "loop.mp4");
  EXPECT_EQ(mp4.video()->packets, 71 - 12);
  EXPECT_NEAR(r.duration_s, mp4.video()->duration_s, kFrame);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), 100);
}

TEST_F(MakeLoop, AVeoStyleMp4IsDecodedDirectlyAndAnyOtherFileThroughDecodebin3) {
  // An MP4 with H.264 and AAC (what Veo writes) skips typefinding and autoplugging.
  LoopRequest first = request(clip());
  const LoopResult direct = make_loop(first);
  EXPECT_EQ(direct.decode, "mp4-avc");
  // Its VP9/Opus WebM, looped again, goes through decodebin3.
  LoopRequest again = request(direct.files.at(LoopFormat::Webm), "again");
  again.crossfade = 250ms;
  const LoopResult autoplugged = make_loop(again);
  EXPECT_EQ(autoplugged.decode, "auto");
  EXPECT_TRUE(autoplugged.audio);
  const gemstream::MediaInfo mp4 = probe_media(again.out_dir / "loop.mp4");
  ASSERT_NE(mp4.video(), nullptr);
  EXPECT_EQ(mp4.video()->codec, "h264");
  EXPECT_EQ(mp4.video()->packets, 72 - 12 - 6);
  ASSERT_NE(mp4.audio(), nullptr);
  EXPECT_NEAR(mp4.duration_s, (72 - 12 - 6) * kFrame, 0.03);
  EXPECT_EQ(probe_media(again.out_dir / "loop.webm").video()->packets, 72 - 12 - 6);

  // H.264 tagged avc3 (parameter sets in the stream): h264parse hands avdec_h264 a stream
  // format it takes.
  const fs::path avc3 = dir_ / "avc3.mp4";
  const std::string cmd = "ffmpeg -v error -y -i '" + clip().string() + "' -c copy -tag:v avc3 '" +
                          avc3.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const LoopResult tagged = make_loop(request(avc3, "avc3"));
  EXPECT_EQ(tagged.decode, "mp4-avc");
  EXPECT_EQ(probe_media(dir_ / "avc3" / "loop.mp4").video()->packets, 72 - 12);
}

TEST_F(MakeLoop, AnUnwritableOutputDirectoryIsAnIoError) {
  write_file(dir_ / "occupied", "a file where the directory should be");
  LoopRequest req = request(clip());
  req.out_dir = dir_ / "occupied" / "loop";
  const std::string message = loop_error(req, ErrorKind::Io);
  EXPECT_NE(message.find("cannot create the output directory"), std::string::npos) << message;
}

TEST(LoopFormats, ParseNamesInAnyOrderOnce) {
  EXPECT_EQ(parse_loop_formats("poster,mp4,mp4"),
            (std::vector<LoopFormat>{LoopFormat::Poster, LoopFormat::Mp4}));
  EXPECT_EQ(parse_loop_formats("webm"), std::vector<LoopFormat>{LoopFormat::Webm});
  for (const char *bad : {"gif", "", "mp4,,webm", "MP4"}) {
    try {
      parse_loop_formats(bad);
      ADD_FAILURE() << bad;
    } catch (const Error &e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
      EXPECT_NE(e.message().find("choose from mp4, webm, poster"), std::string::npos) << e.what();
    }
  }
  EXPECT_STREQ(to_string(LoopFormat::Webm), "webm");
  EXPECT_STREQ(file_name(LoopFormat::Poster), "poster.jpg");
}

// `timeout`, a service manager or a closed terminal stops `gemstream loop` with SIGTERM or
// SIGHUP: like Ctrl-C, that cancels the run, and its temporary files are removed.
TEST_F(MakeLoop, TerminatingTheCommandLineLoopLeavesNoFileBehind) {
  const fs::path input = clip(480);
  for (int signal_number : {SIGTERM, SIGHUP}) {
    const fs::path out = dir_ / ("killed-" + std::to_string(signal_number));
    const fs::path log = dir_ / "log";
    const std::string cmd = std::string("exec ") + GEMSTREAM_CLI + " loop '" + input.string() +
                            "' --out '" + out.string() + "' > '" + log.string() + "' 2>&1";
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char *>(nullptr));
      _exit(127);
    }
    // Wait for the run to have created its temporary files, then stop it.
    for (int i = 0; i < 1000 && files_in(out).size() < 3; ++i)
      std::this_thread::sleep_for(5ms);
    ASSERT_EQ(files_in(out).size(), 3u) << slurp(log);
    kill(pid, signal_number);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by the signal instead of cancelling: " << slurp(log);
    EXPECT_EQ(WEXITSTATUS(status), 128 + signal_number) << slurp(log);
    EXPECT_NE(slurp(log).find("no loop output was written"), std::string::npos) << slurp(log);
    EXPECT_EQ(files_in(out), std::set<std::string>{}) << "signal " << signal_number;
  }
}

// `gemstream loop`, as a person runs it: the MP4 it writes, decoded, steps from its last frame
// to its first no more than between ordinary neighbouring frames.
TEST_F(MakeLoop, TheCommandLineLoopHasNoSeam) {
  const fs::path input = clip(96);
  const fs::path out = dir_ / "cli";
  const std::string cmd = std::string(GEMSTREAM_CLI) + " loop '" + input.string() + "' --out '" +
                          out.string() + "' --formats mp4 --crossfade 1s 2>&1";
  FILE *p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p))
    output.append(buf.data(), n);
  const int status = pclose(p);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_NE(output.find("mp4: " + (out / "loop.mp4").string()), std::string::npos) << output;

  const SeamReport loop = measure_seam((out / "loop.mp4").string());
  ASSERT_EQ(loop.frames, 72);
  EXPECT_GT(loop.median_step_mad, 0.5); // the ball moves in every frame
  EXPECT_LE(loop.seam_mad, loop.max_step_mad);
  EXPECT_LE(loop.seam_mad, 1.5 * loop.median_step_mad)
      << "seam " << loop.seam_mad << " vs median step " << loop.median_step_mad;

  // The metric can fail: the clip itself, played in a loop, jumps.
  const SeamReport raw = measure_seam(input.string());
  EXPECT_GT(raw.seam_mad, 3 * raw.median_step_mad)
      << "seam " << raw.seam_mad << " vs median step " << raw.median_step_mad;
}

} // namespace
