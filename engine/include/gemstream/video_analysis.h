// Video understanding: ask a Gemini model about a video file. The file is validated with
// libavformat first; up to the inline request limit it travels inline, larger files go through
// the Files API (resumable upload, then wait until ACTIVE), or N sampled frames are sent as
// JPEG images instead (cheaper, and the same input a webcam produces).
#pragma once

#include "gemstream/cancel.h"
#include "gemstream/config.h"
#include "gemstream/costs.h"
#include "gemstream/export.h"
#include "gemstream/genai.h"
#include "gemstream/media_probe.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gemstream {

struct SampledFrame {
  double time_s = 0; // presentation time of the decoded frame
  int width = 0;
  int height = 0;
  std::string jpeg; // baseline JPEG (yuvj420p)
};

// Decodes `count` frames spread evenly over the video (the middle of each of `count` equal
// stretches), scaled so that neither side exceeds `max_dimension` (aspect kept, even sizes),
// and encodes each as JPEG with libavcodec's mjpeg encoder. Throws Error(InvalidArgument) for a
// file without a decodable video stream and for count outside 1..3600.
GEMSTREAM_API std::vector<SampledFrame> sample_video_frames(const std::filesystem::path &path,
                                                            int count, int max_dimension = 768);

enum class AnalysisMethod { Inline, Upload, Frames };
GEMSTREAM_API const char *to_string(AnalysisMethod method) noexcept;

struct AnalysisOptions {
  std::string model_id = "gemini-2.5-flash";
  // > 0: send this many sampled frames (sample_video_frames) instead of the video.
  int frames = 0;
  // The largest whole request (base64 video plus the rest) sent inline; larger files are
  // uploaded. 20 MB, as Google's documentation has long said.
  std::uint64_t inline_limit_bytes = 20ull * 1000 * 1000;
  std::optional<double> fps; // videoMetadata.fps; the service samples 1 fps by default
  ProbeLimits limits;        // what probe_media accepts (2 GB, 3 h by default)
  std::string user;          // ledger and budget; empty: current_user()
  std::chrono::milliseconds file_poll_interval{2000};
  std::chrono::milliseconds file_timeout{std::chrono::minutes(10)};
  bool keep_upload = false; // false: delete the uploaded file once answered
};

struct AnalysisProgress {
  std::string phase; // "probe", "frames", "upload", "processing", "generate"
  std::string text;
  std::uint64_t done = 0;
  std::uint64_t total = 0;
};

struct AnalysisResult {
  std::string text;
  AnalysisMethod method = AnalysisMethod::Inline;
  MediaInfo media;
  std::optional<UsageDetails> usage;
  CostEntry cost;        // as recorded in the ledger (when one is given)
  std::string file_name; // the uploaded file ("files/..."), for AnalysisMethod::Upload
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

  // What analyze() checks the budget against: 258 tokens per sampled frame (1 fps unless
  // options.fps), 32 per second of audio, the question and about 1000 answer tokens.
  double estimate_usd(const MediaInfo &media, const std::string &question,
                      const AnalysisOptions &options) const;

private:
  Endpoint endpoint_;
  MediaConfig media_;
  std::shared_ptr<CostLedger> ledger_;
  ClientOptions client_;
};

} // namespace gemstream
