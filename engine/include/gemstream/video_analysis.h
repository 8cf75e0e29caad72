// Video understanding: ask a Gemini model about a video file. The file is validated with
// libavformat first; up to the inline request limit it travels inline, larger files go through
// the Files API (resumable upload, then wait until ACTIVE). Frames sampled elsewhere (the
// framesampler element, a webcam) are sent as JPEG images with analyze_frames() instead: cheaper,
// and the same input for a file and a live camera.
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/config.h"
#include "gemstream/costs.h"
#include "gemstream/export.h"
#include "gemstream/genai.h"
#include "gemstream/media_probe.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

// One frame to show the model.
struct SampledFrame {
  double time_s = 0; // presentation time (position in the video, or since a live source started)
  int width = 0;     // 0 when unknown
  int height = 0;
  std::string jpeg; // a complete JPEG image
};

enum class AnalysisMethod { Inline, Upload, Frames };
GEMSTREAM_API const char *to_string(AnalysisMethod method) noexcept;

struct AnalysisOptions {
  std::string model_id = "gemini-2.5-flash";
  // The largest whole request (base64 video or frames plus the rest) sent inline; larger files
  // are uploaded, more frames are refused. 20 MB, as Google's documentation has long said.
  std::uint64_t inline_limit_bytes = 20ull * 1000 * 1000;
  std::optional<double> fps; // videoMetadata.fps; the service samples 1 fps by default
  ProbeLimits limits;        // what probe_media accepts (2 GB, 3 h by default)
  std::string user;          // ledger and budget; empty: current_user()
  std::chrono::milliseconds file_poll_interval{2000};
  std::chrono::milliseconds file_timeout{std::chrono::minutes(10)};
  bool keep_upload = false; // false: delete the uploaded file once answered
};

struct AnalysisProgress {
  std::string phase; // "probe", "upload", "processing", "generate"
  std::string text;
  std::uint64_t done = 0;
  std::uint64_t total = 0;
};

struct AnalysisResult {
  std::string text;
  AnalysisMethod method = AnalysisMethod::Inline;
  MediaInfo media;
  std::optional<UsageDetails> usage;
  CostEntry cost;         // as recorded in the ledger (when one is given)
  std::string file_name;  // the uploaded file ("files/..."), for AnalysisMethod::Upload
  std::size_t frames = 0; // images sent, for AnalysisMethod::Frames
  std::string response_id;
  std::string model_version;
};

class GEMSTREAM_API VideoAnalyzer {
public:
  // `ledger` may be null: then nothing is recorded and no budget applies.
  VideoAnalyzer(Endpoint endpoint, MediaConfig media, std::shared_ptr<CostLedger> ledger,
                ClientOptions client = {});
  ~VideoAnalyzer();
  VideoAnalyzer(const VideoAnalyzer &) = delete;
  VideoAnalyzer &operator=(const VideoAnalyzer &) = delete;

  // probe_media (Error(InvalidArgument): not a video, truncated, too large...), the budget
  // check (Error(BudgetExceeded), before any request), then the request; the cost is priced
  // from usageMetadata and recorded.
  AnalysisResult analyze(const std::filesystem::path &video, const std::string &question,
                         const AnalysisOptions &options, const CancelToken &cancel,
                         const std::function<void(const AnalysisProgress &)> &on_progress = {});

  // Asks about `frames` (in presentation order) as JPEG images, each labelled with its time;
  // `source` says what they come from ("a video", "a live camera", a file name) in the request
  // and the ledger note. The budget is checked first (Error(BudgetExceeded), before any
  // request). Error(InvalidArgument) for no frames, a frame without JPEG data, a blank
  // question, or frames too large together for options.inline_limit_bytes. The result's method
  // is Frames; its media holds the frames' span (duration_s) and the first frame's size.
  AnalysisResult analyze_frames(std::vector<SampledFrame> frames, const std::string &question,
                                const AnalysisOptions &options, const CancelToken &cancel,
                                const std::string &source = "a video");

  // What analyze() checks the budget against: 258 tokens per sampled frame (1 fps unless
  // options.fps), 32 per second of audio, the question and about 1000 answer tokens.
  double estimate_usd(const MediaInfo &media, const std::string &question,
                      const AnalysisOptions &options) const;
  // What analyze_frames() checks it against: 258 tokens per image, the question and the
  // labels, about 1000 answer tokens.
  double estimate_frames_usd(std::size_t frames, const std::string &question,
                             const AnalysisOptions &options) const;

private:
  Endpoint endpoint_;
  MediaConfig media_;
  std::shared_ptr<CostLedger> ledger_;
  ClientOptions client_;
};

} // namespace gemstream
