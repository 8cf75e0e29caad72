// make_loop(): probe, run the background-loop pipeline file, commit the outputs atomically.
#include "gemstream/loop.h"

#include "gemstream/error.h"
#include "gemstream/pipeline.h"
#include "gemstream/output_files.h"
#include "gemstream/pipeline_file.h"
#include "mp4_edit.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <future>
#include <thread>
#include <utility>
#include <variant>

namespace gemstream {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::chrono::nanoseconds kMinCrossfade = 40ms;
constexpr std::chrono::nanoseconds kMaxCrossfade = 60s;
constexpr unsigned kMaxThreads = 64;
// How often the run loop looks at the cancel token when no event arrives (the token's callback
// aborts the pipeline at once; this only bounds a cancel that lands before start()).
constexpr auto kPollInterval = 100ms;
// videoloop's element name in pipelines/background-loop.json: its progress messages count.
constexpr const char *kLoopElement = "loop";

struct FormatInfo {
  LoopFormat format;
  const char *name;
  const char *file;
  const char *parameter; // the pipeline file's output parameter
};

constexpr FormatInfo kFormats[] = {
    {LoopFormat::Mp4, "mp4", "loop.mp4", "mp4-output"},
    {LoopFormat::Webm, "webm", "loop.webm", "webm-output"},
    {LoopFormat::Poster, "poster", "poster.jpg", "poster-output"},
};

const FormatInfo &info_of(LoopFormat format) {
  for (const auto &f : kFormats)
    if (f.format == format)
      return f;
  return kFormats[0];
}

unsigned available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return static_cast<unsigned>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

} // namespace

unsigned default_vp9_threads() noexcept { return std::max(1u, available_cpus() / 4); }

namespace {

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f s", s);
  return buf;
}

// Reports progress to the caller: never decreasing, and 100 only once the outputs are in place.
class ProgressReporter {
public:
  explicit ProgressReporter(const LoopProgress &fn) : fn_(fn) {}
  void report(double percent) {
    percent = std::clamp(percent, 0.0, 100.0);
    if (!fn_ || percent <= last_)
      return;
    last_ = percent;
    fn_(percent);
  }

private:
  const LoopProgress &fn_;
  double last_ = -1;
};

// Removes a cancel callback when it goes out of scope, before what it captures is destroyed.
class CancelCallback {
public:
  CancelCallback(const CancelToken &token, std::function<void()> fn)
      : token_(token), id_(token.add_callback(std::move(fn))) {}
  ~CancelCallback() { token_.remove_callback(id_); }
  CancelCallback(const CancelCallback &) = delete;
  CancelCallback &operator=(const CancelCallback &) = delete;

private:
  const CancelToken &token_;
  int id_;
};

[[noreturn]] void throw_cancelled(const fs::path &input) {
  throw Error(ErrorKind::Cancelled, "making the loop of " + input.string() + " was cancelled");
}

// Whether the probed file is an MP4/MOV with H.264 video and AAC audio or none, as Veo writes:
// the pipeline then demuxes and decodes it directly instead of through decodebin3, which would
// first typefind it and plug a parser per stream.
bool mp4_avc(const MediaInfo &info) {
  const MediaStreamInfo *audio = info.audio();
  return info.container.find("mp4") != std::string::npos && info.video() &&
         info.video()->codec == "h264" && (!audio || audio->codec == "aac");
}

// The frame count the probe gives for the video, when it is consistent with the duration and
// frame rate (a constant-rate clip whose every packet is a frame); 0 when unsure.
std::uint64_t probed_frames(const MediaStreamInfo &video) {
  if (video.packets <= 0 || video.fps <= 0 || video.duration_s <= 0)
    return 0;
  const double expected = video.duration_s * video.fps;
  return std::abs(static_cast<double>(video.packets) - expected) <= 1.5
             ? static_cast<std::uint64_t>(video.packets)
             : 0;
}

enum class RunEnd { Done, FrameCountMismatch };

// One run of the pipeline to its end. Throws for cancellation and errors (other than a wrong
// frame count, which the caller answers by running again without it).
RunEnd run_pipeline(const PipelineFile &file, const std::map<std::string, std::string> &values,
                    const fs::path &input, const CancelToken &cancel, ProgressReporter &progress,
                    std::vector<std::string> &warnings) {
  if (cancel.cancelled())
    throw_cancelled(input);
  std::unique_ptr<Pipeline> pipeline = Pipeline::from_file(file, values);
  // abort() is thread-safe: a cancel from any thread tears the pipeline down at once (the
  // outputs are discarded, so there is no point in draining it with EOS).
  CancelCallback on_cancel(cancel, [p = pipeline.get()] { p->abort(); });
  pipeline->start();
  std::optional<events::Error> error;
  bool eos = false;
  // Returns true for the run's last event.
  auto handle = [&](const Event &event) {
    if (const auto *p = std::get_if<events::Progress>(&event)) {
      // 100 is reported once the files are in place; the muxers still finish after videoloop.
      if (p->source == kLoopElement && p->percent >= 0)
        progress.report(std::min(p->percent, 99));
    } else if (const auto *w = std::get_if<events::Warning>(&event)) {
      warnings.push_back((w->source.empty() ? "" : w->source + ": ") + w->message);
    } else if (const auto *e = std::get_if<events::Error>(&event)) {
      if (!error)
        error = *e;
    } else if (std::holds_alternative<events::Eos>(event)) {
      eos = true;
    }
    return is_terminal(event);
  };
  for (;;) {
    if (cancel.cancelled())
      pipeline->abort();
    if (std::optional<Event> event = pipeline->wait_event(kPollInterval)) {
      if (handle(*event))
        break;
    } else if (pipeline->finished()) {
      // The terminal event may have been queued just after the wait timed out.
      while (std::optional<Event> rest = pipeline->wait_event(0ms))
        handle(*rest);
      break;
    }
  }
  if (cancel.cancelled())
    throw_cancelled(input);
  if (error) {
    if (auto it = error->details.find("reason");
        it != error->details.end() && it->second == "frame-count-mismatch")
      return RunEnd::FrameCountMismatch;
    throw Error(error->kind, "making the loop of " + input.string() +
                                 " failed: " + (error->source.empty() ? "" : error->source + ": ") +
                                 error->message);
  }
  if (!eos)
    throw Error(ErrorKind::Internal,
                "making the loop of " + input.string() + " stopped before the end of the clip");
  return RunEnd::Done;
}

// The height the pipeline scales to: the one asked for, or for an input of odd width or height
// (4:2:0 video needs even ones) the even height below its own, the width following; 0 keeps
// the input size.
int output_height(int requested, const MediaStreamInfo &video) {
  if (requested > 0 || (video.width % 2 == 0 && video.height % 2 == 0))
    return requested;
  return std::max(2, video.height - video.height % 2);
}

} // namespace

const char *to_string(LoopFormat format) noexcept {
  return info_of(format).name;
}

const char *file_name(LoopFormat format) noexcept {
  return info_of(format).file;
}

std::vector<LoopFormat> parse_loop_formats(const std::string &list) {
  std::vector<LoopFormat> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, end - start);
    const FormatInfo *found = nullptr;
    for (const auto &f : kFormats)
      if (name == f.name)
        found = &f;
    if (!found)
      throw Error(ErrorKind::InvalidArgument,
                  "unknown loop format \"" + name + "\" (choose from mp4, webm, poster)");
    if (std::find(out.begin(), out.end(), found->format) == out.end())
      out.push_back(found->format);
    start = end + 1;
  }
  return out;
}

void check_loop_request(const LoopRequest &request) {
  if (request.formats.empty())
    throw Error(ErrorKind::InvalidArgument,
                "no loop format to write (choose from mp4, webm, poster)");
  if (request.crossfade < kMinCrossfade || request.crossfade > kMaxCrossfade)
    throw Error(ErrorKind::InvalidArgument,
                "the crossfade must be between 40 ms and 60 s, not " +
                    seconds_text(std::chrono::duration<double>(request.crossfade).count()));
  if (request.height != 0 &&
      (request.height < kMinLoopHeight || request.height > kMaxLoopHeight ||
       request.height % 2 != 0))
    throw Error(ErrorKind::InvalidArgument,
                "the output height must be 0 (the input's) or an even number of pixels from " +
                    std::to_string(kMinLoopHeight) + " to " + std::to_string(kMaxLoopHeight) +
                    " (H.264 and VP9 halve the colour resolution; x264 needs 16), not " +
                    std::to_string(request.height));
}

LoopResult make_loop(const LoopRequest &request, const CancelToken &cancel,
                     const LoopProgress &progress_fn) {
  check_loop_request(request);
  if (cancel.cancelled())
    throw_cancelled(request.input);

  LoopResult result;
  // libavformat reads every packet: a truncated or non-video file fails here, before any work.
  result.input = probe_media(request.input);
  if (!result.input.video())
    throw Error(ErrorKind::InvalidArgument, request.input.string() + " has no video to loop");
  const MediaStreamInfo &video = *result.input.video();
  const double crossfade_s = std::chrono::duration<double>(request.crossfade).count();
  const double clip_s = video.duration_s > 0 ? video.duration_s : result.input.duration_s;
  // A clip of variable frame rate is made constant at its highest rate first (videorate); how
  // many frames that makes is not known exactly, so videoloop does without the count.
  const int constant_fps =
      video.variable_rate ? std::clamp(static_cast<int>(std::lround(video.max_fps)), 1, 240) : 0;
  const std::uint64_t frames = constant_fps ? 0 : probed_frames(video);
  const double fps = constant_fps ? constant_fps : video.fps;
  const double frame_s = fps > 0 ? 1.0 / fps : 0;
  const double crossfade_rounded_s =
      frame_s > 0 ? std::max(1.0, std::round(crossfade_s / frame_s)) * frame_s : crossfade_s;
  if (clip_s + frame_s / 2 < 2 * crossfade_rounded_s)
    throw Error(ErrorKind::InvalidArgument,
                request.input.string() + " is " + seconds_text(clip_s) + " long; a crossfade of " +
                    seconds_text(crossfade_rounded_s) + " needs a clip of at least " +
                    seconds_text(2 * crossfade_rounded_s));
  const int scaled_height = output_height(request.height, video); // 0: the input's
  // x264 encodes frames of 16x16 pixels and more; the width follows the height asked for.
  {
    const bool turned = video.rotation == 90 || video.rotation == 270;
    const int upright_w = turned ? video.height : video.width;
    const int upright_h = turned ? video.width : video.height;
    const int out_h = scaled_height > 0 ? scaled_height : upright_h;
    const int out_w =
        upright_h > 0 ? static_cast<int>(std::lround(double(out_h) * upright_w / upright_h)) : 0;
    if (out_w < kMinLoopHeight || out_h < kMinLoopHeight)
      throw Error(ErrorKind::InvalidArgument,
                  request.input.string() + " is " + std::to_string(upright_w) + "x" +
                      std::to_string(upright_h) + ": at a height of " + std::to_string(out_h) +
                      " the loop would be " + std::to_string(out_w) +
                      " pixels wide, and H.264 needs at least 16x16; ask for a larger height");
  }
  for (LoopFormat format : request.formats) {
    std::error_code ec;
    if (fs::equivalent(request.out_dir / file_name(format), request.input, ec))
      throw Error(ErrorKind::InvalidArgument,
                  "the output " + (request.out_dir / file_name(format)).string() +
                      " is the input itself, which the loop would replace: write it to another "
                      "directory");
  }
  result.audio = result.input.audio() != nullptr;
  result.decode = mp4_avc(result.input) ? "mp4-avc" : "auto";
  result.duration_s = frames > 0 ? static_cast<double>(frames) * frame_s - crossfade_rounded_s
                                 : clip_s - crossfade_rounded_s;

  std::string formats;
  OutputFiles outputs; // written as "out/.loop.mp4.<pid>-<random>.part", renamed at the end
  std::map<std::string, std::string> values = {
      {"input", request.input.string()},
      {"decode", result.decode},
      {"audio", result.audio ? "true" : "false"},
      {"crossfade", std::to_string(request.crossfade.count()) + "ns"},
      {"height", std::to_string(scaled_height)},
      {"fps", std::to_string(constant_fps)},
      // videoflip copies every frame even when it turns nothing: only for a rotated clip.
      {"orientation", video.rotation ? "auto" : "as-stored"},
      {"vp9-threads",
       std::to_string(std::clamp(request.threads ? request.threads : default_vp9_threads(), 1u,
                                 kMaxThreads))},
  };
  fs::path mp4_temporary;
  for (LoopFormat f : request.formats) {
    formats += (formats.empty() ? "" : ",") + std::string(to_string(f));
    const fs::path temporary = outputs.add(request.out_dir / info_of(f).file);
    values[info_of(f).parameter] = temporary.string();
    if (f == LoopFormat::Mp4)
      mp4_temporary = temporary;
  }
  values["formats"] = formats;
  if (request.h264_crf)
    values["h264-crf"] = std::to_string(*request.h264_crf);
  if (request.h264_preset)
    values["h264-preset"] = *request.h264_preset;
  if (request.vp9_crf)
    values["vp9-crf"] = std::to_string(*request.vp9_crf);
  values["frames"] = std::to_string(frames);
  // Out-of-range quality values fail here, before the output directory is created.
  const PipelineFile file = PipelineFile::load(PipelineFile::find("background-loop"));
  file.validate(values);

  std::error_code ec;
  const bool dir_existed = fs::exists(request.out_dir, ec);
  fs::create_directories(request.out_dir, ec);
  if (ec || !fs::is_directory(request.out_dir))
    throw Error(ErrorKind::Io, "cannot create the output directory " + request.out_dir.string() +
                                   (ec ? ": " + ec.message() : ""));
  // A failed or cancelled run leaves no directory it made either (its temporary files go first).
  struct RemoveIfEmpty {
    OutputFiles &outputs;
    fs::path dir;
    bool armed;
    ~RemoveIfEmpty() {
      if (!armed)
        return;
      outputs.discard();
      std::error_code ec;
      if (fs::is_empty(dir, ec) && !ec)
        fs::remove(dir, ec);
    }
  } made_dir{outputs, request.out_dir, !dir_existed};
  outputs.check_writable();

  // Asked while the pipeline runs: opening libavcodec's AAC encoder takes about 2 ms.
  std::future<std::uint32_t> aac_delay;
  if (!mp4_temporary.empty() && result.audio)
    aac_delay = std::async(std::launch::async, [audio = *result.input.audio()] {
      return mp4::aac_encoder_delay(audio.sample_rate, audio.channels);
    });

  ProgressReporter progress(progress_fn);
  progress.report(0);
  RunEnd end = run_pipeline(file, values, request.input, cancel, progress, result.warnings);
  if (end == RunEnd::FrameCountMismatch) {
    // The probe's count was wrong for GStreamer's decode (an edit list, a dropped frame):
    // run again with videoloop's delay line, which needs no count.
    outputs.discard();
    values["frames"] = "0";
    result.warnings.clear();
    end = run_pipeline(file, values, request.input, cancel, progress, result.warnings);
    if (end != RunEnd::Done)
      throw Error(ErrorKind::Internal, "videoloop reported a wrong frame count without one");
    result.duration_s = clip_s - crossfade_rounded_s;
  } else {
    result.used_frame_count = frames > 0;
  }
  if (cancel.cancelled())
    throw_cancelled(request.input);
  // avenc_aac starts with its encoder delay; mp4mux does not skip it in the edit list, so
  // every pass of a looping player would start with that much silence.
  if (aac_delay.valid())
    mp4::skip_audio_priming(mp4_temporary, aac_delay.get());
  const std::vector<fs::path> written = outputs.commit(true);
  made_dir.armed = false;
  for (std::size_t i = 0; i < written.size(); ++i)
    result.files[request.formats[i]] = written[i];
  progress.report(100);
  return result;
}

std::vector<std::filesystem::path>
make_clip_loops(const std::filesystem::path &clip, const CancelToken &cancel,
                const std::function<void(const std::string &)> &progress) {
  LoopRequest request;
  request.input = clip;
  request.out_dir = clip.parent_path() / clip.stem();
  int reported = -1;
  const LoopResult result = make_loop(request, cancel, [&](double percent) {
    const int step = static_cast<int>(percent) / 10 * 10;
    if (!progress || step <= reported)
      return;
    reported = step;
    progress("making the loop: " + std::to_string(step) + "%");
  });
  std::vector<std::filesystem::path> files;
  for (const auto &[format, path] : result.files)
    files.push_back(path);
  return files;
}

} // namespace gemstream
