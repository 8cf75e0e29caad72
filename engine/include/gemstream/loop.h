// Seamless background loops from a clip: the job behind `gemstream loop`, for any application
// (the agent capability runner, an HTTP gateway). Lives in libgemstream-pipeline; this header
// has no GLib or GStreamer types.
//
//   gemstream::LoopRequest req;
//   req.input = "clip.mp4";
//   req.out_dir = "site/bg";
//   gemstream::LoopResult r = gemstream::make_loop(req, gemstream::CancelToken(),
//                                                  [](double pct) { std::printf("%.0f%%\n", pct);
//                                                  });
//   // r.files.at(gemstream::LoopFormat::Mp4) == "site/bg/loop.mp4"
//
// make_loop() probes and validates the input with libavformat before any work, runs the
// `background-loop` pipeline file (one decode, videoloop crossfading the tail into the head,
// a tee to the encoders) and writes each output through a temporary file in out_dir that is
// renamed once the run has ended cleanly: a failure or a cancellation leaves no partial file.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/export.h"
#include "gemstream/media_probe.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

enum class LoopFormat {
  Mp4,    // loop.mp4: H.264 + AAC, faststart (moov before mdat), plays in <video loop>
  Webm,   // loop.webm: VP9 + Opus
  Poster, // poster.jpg: the loop's first frame
};

// "mp4", "webm", "poster".
GEMSTREAM_API const char *to_string(LoopFormat format) noexcept;
// The file name make_loop() writes for a format: "loop.mp4", "loop.webm", "poster.jpg".
GEMSTREAM_API const char *file_name(LoopFormat format) noexcept;
// Parses a comma-separated list ("mp4,poster"), in any order, without duplicates. Throws
// Error(InvalidArgument) naming an unknown format, or for an empty list.
GEMSTREAM_API std::vector<LoopFormat> parse_loop_formats(const std::string &list);

// Output heights other than 0 (the input's): even (H.264 and VP9 halve the colour resolution)
// and from 16 (x264's smallest frame; the width, which follows the aspect ratio, too) to 4320.
constexpr int kMinLoopHeight = 16;
constexpr int kMaxLoopHeight = 4320;

struct LoopRequest {
  std::filesystem::path input;   // any container and codecs GStreamer decodes, with video
  std::filesystem::path out_dir; // created if missing; outputs are file_name(format) in it
  std::vector<LoopFormat> formats = {LoopFormat::Mp4, LoopFormat::Webm, LoopFormat::Poster};
  // How much of the tail is crossfaded into the head, rounded to whole frames: the loop is
  // this much shorter than the clip, which must be at least twice as long. 40 ms to 60 s.
  std::chrono::nanoseconds crossfade = std::chrono::seconds(1);
  int height = 0; // output height in pixels (the width follows the aspect ratio); 0: the input's
  // Quality; unset values take the pipeline file's defaults (x264 veryfast CRF 23, VP9 CQ 32).
  std::optional<int> h264_crf;            // 0-50, lower is better
  std::optional<std::string> h264_preset; // x264 preset, "ultrafast" … "veryslow"
  std::optional<int> vp9_crf;             // 0-63, lower is better
  unsigned threads = 0; // VP9 encoder threads; 0: default_vp9_threads()
};

// The VP9 encoder threads make_loop() uses by default: one per four CPU cores available to the
// process, at least one. VP9 at these settings is about a third of x264's work, and x264 and
// the decoder run at the same time on their own threads, so VP9 gets its share of the cores
// rather than all of them; on two cores a second VP9 thread costs more in synchronisation
// (about 18,000 context switches for an 8 s 720p clip) than it gains.
GEMSTREAM_API unsigned default_vp9_threads() noexcept;

struct LoopResult {
  std::map<LoopFormat, std::filesystem::path> files; // one per requested format, all written
  MediaInfo input;                                   // the probe of the input
  double duration_s = 0;         // the loop's length: the clip's frames minus the crossfade's
  bool audio = false;            // the input's audio was looped into the MP4/WebM
  bool used_frame_count = false; // the probe's frame count let videoloop hold only the head
  // How the pipeline decoded the input (its `decode` parameter): "mp4-avc" (qtdemux, h264parse
  // and the libav decoders, for an MP4/MOV with H.264 and AAC or no audio) or "auto"
  // (decodebin3).
  std::string decode;
  // What the pipeline warned about, "element: message" each, e.g. videoloop's "The audio is
  // 0.48 s shorter than the video; the missing part of the loop is silent."
  std::vector<std::string> warnings;
};

// Called with the percentage of the input processed, 0 to 100, never decreasing, on the thread
// that called make_loop(). 100 means every output is complete and in place.
using LoopProgress = std::function<void(double percent)>;

// The checks of a request that need no input: formats, the crossfade's range, the height.
// Throws Error(InvalidArgument) as make_loop() would; for a caller that must know before it
// pays for a clip to loop.
GEMSTREAM_API void check_loop_request(const LoopRequest &request);

// Makes the loop; blocks until it is written or has failed. Throws:
//   Error(InvalidArgument) before any work for a bad request (no formats, crossfade out of
//     range) or input (not a media file, no video, truncated, shorter than 2 × crossfade);
//   Error(Cancelled) once `cancel` is cancelled (the pipeline is torn down at once);
//   Error(Io) when out_dir or an output cannot be written;
//   the pipeline's error, as Error with its events::Error kind, when the run fails.
// A failure leaves no temporary file and no output of this call in out_dir (files of earlier
// runs with the same names stay as they were), with one exception: should a final rename fail
// (Error(Io)), the outputs renamed before it stay in place, each of them complete. Concurrent calls
// are safe; each call's temporary names are unique, so two calls writing into the same out_dir each
// leave complete files (the later rename wins).
GEMSTREAM_API LoopResult make_loop(const LoopRequest &request, const CancelToken &cancel = {},
                                   const LoopProgress &progress = {});

// The loop outputs of a downloaded background clip, with the default formats and settings, in
// a directory named after it (backgrounds/beach.mp4 → backgrounds/beach/loop.mp4, loop.webm,
// poster.jpg). Progress is reported as text ("making the loop: 40%"), every 10 %. What
// CapabilityRunnerOptions::finish_video and a gateway's video job call.
GEMSTREAM_API std::vector<std::filesystem::path>
make_clip_loops(const std::filesystem::path &clip, const CancelToken &cancel = {},
                const std::function<void(const std::string &)> &progress = {});

} // namespace gemstream
