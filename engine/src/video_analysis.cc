#include "gemstream/video_analysis.h"

#include "gemstream/error.h"
#include "gemstream/files.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <utility>

namespace gemstream {
namespace {

std::string read_bytes(const std::filesystem::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorKind::Io, "cannot read " + path.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uint64_t base64_size(std::uint64_t bytes) {
  return (bytes + 2) / 3 * 4;
}

constexpr std::int64_t kTokensPerFrame = 258;
constexpr std::int64_t kAudioTokensPerSecond = 32;
constexpr std::int64_t kAnswerTokens = 1000;
// JSON and headers around the media of a request.
constexpr std::uint64_t kRequestOverheadBytes = 4096;

bool blank(const std::string &text) {
  return text.find_first_not_of(" \t\r\n") == std::string::npos;
}

// Copies the answer into `result`, prices it and records it in the ledger (when there is one).
void settle(AnalysisResult &result, GenerateResult answer, const MediaConfig &media,
            const std::string &model_id, const std::string &user, const std::string &what,
            CostLedger *ledger) {
  result.text = std::move(answer.text);
  result.usage = std::move(answer.usage);
  result.response_id = answer.response_id;
  result.model_version = answer.model_version;
  result.cost =
      price_analysis(media, model_id, result.usage ? token_usage(*result.usage) : TokenUsage{});
  result.cost.user = user;
  result.cost.request_id = answer.response_id;
  result.cost.note = "video analysis (" + std::string(to_string(result.method)) + ") of " + what +
                     "; " + result.cost.note;
  if (ledger)
    result.cost.id = ledger->record(result.cost);
}

} // namespace

const char *to_string(AnalysisMethod method) noexcept {
  switch (method) {
  case AnalysisMethod::Inline: return "inline";
  case AnalysisMethod::Upload: return "upload";
  case AnalysisMethod::Frames: return "frames";
  }
  return "inline";
}

VideoAnalyzer::VideoAnalyzer(Endpoint endpoint, MediaConfig media,
                             std::shared_ptr<CostLedger> ledger, ClientOptions client)
    : endpoint_(std::move(endpoint)), media_(std::move(media)), ledger_(std::move(ledger)),
      client_(std::move(client)) {}

VideoAnalyzer::~VideoAnalyzer() = default;

double VideoAnalyzer::estimate_usd(const MediaInfo &info, const std::string &question,
                                   const AnalysisOptions &options) const {
  TokenUsage tokens;
  const double fps = options.fps.value_or(1.0);
  tokens.input_tokens =
      static_cast<std::int64_t>(std::ceil(info.duration_s * fps)) * kTokensPerFrame;
  if (info.audio())
    tokens.input_tokens +=
        static_cast<std::int64_t>(std::ceil(info.duration_s)) * kAudioTokensPerSecond;
  tokens.input_tokens += static_cast<std::int64_t>(question.size() / 4 + 1);
  tokens.output_tokens = kAnswerTokens;
  return price_analysis(media_, options.model_id, tokens).usd();
}

double VideoAnalyzer::estimate_frames_usd(std::size_t frames, const std::string &question,
                                          const AnalysisOptions &options) const {
  constexpr std::int64_t kLabelTokens = 8; // "Frame at 12.34 s:"
  TokenUsage tokens;
  const auto n = static_cast<std::int64_t>(frames);
  tokens.input_tokens = n * (kTokensPerFrame + kLabelTokens) + kLabelTokens * 4 +
                        static_cast<std::int64_t>(question.size() / 4 + 1);
  tokens.output_tokens = kAnswerTokens;
  return price_analysis(media_, options.model_id, tokens).usd();
}

AnalysisResult VideoAnalyzer::analyze_frames(std::vector<SampledFrame> frames,
                                             const std::string &question,
                                             const AnalysisOptions &options,
                                             const CancelToken &cancel, const std::string &source) {
  if (blank(question))
    throw Error(ErrorKind::InvalidArgument, "no question to ask about " + source);
  if (frames.empty())
    throw Error(ErrorKind::InvalidArgument, "no frames of " + source + " to analyse");
  std::uint64_t request_bytes = question.size() + kRequestOverheadBytes;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].jpeg.empty())
      throw Error(ErrorKind::InvalidArgument,
                  "frame " + std::to_string(i + 1) + " of " + source + " has no image data");
    request_bytes += base64_size(frames[i].jpeg.size()) + 64;
  }
  if (request_bytes > options.inline_limit_bytes) {
    char text[320];
    std::snprintf(text, sizeof text,
                  "%zu frames of %s make a %.1f MB request, more than the %.1f MB inline limit: "
                  "send fewer or smaller frames",
                  frames.size(), source.c_str(), static_cast<double>(request_bytes) / 1e6,
                  static_cast<double>(options.inline_limit_bytes) / 1e6);
    throw Error(ErrorKind::InvalidArgument, text);
  }

  const std::string user = options.user.empty() ? current_user() : options.user;
  if (ledger_)
    ledger_->check_budget(user, estimate_frames_usd(frames.size(), question, options),
                          "analysing these " + std::to_string(frames.size()) + " frames");

  AnalysisResult result;
  result.method = AnalysisMethod::Frames;
  result.frames = frames.size();
  result.media.mime_type = "image/jpeg";
  result.media.duration_s = frames.back().time_s - frames.front().time_s;
  MediaStreamInfo stream;
  stream.type = MediaStreamInfo::Type::Video;
  stream.codec = "mjpeg";
  stream.width = frames.front().width;
  stream.height = frames.front().height;
  stream.duration_s = result.media.duration_s;
  stream.packets = static_cast<std::int64_t>(frames.size());
  result.media.streams.push_back(stream);

  GenerateRequest req;
  req.model_id = options.model_id;
  req.parts.push_back(InputPart::from_text(std::to_string(frames.size()) +
                                           (frames.size() == 1 ? " frame of " : " frames of ") +
                                           source + ", in order, each after its time:"));
  for (auto &f : frames) {
    char label[64];
    std::snprintf(label, sizeof label, "Frame at %.2f s:", f.time_s);
    req.parts.push_back(InputPart::from_text(label));
    req.parts.push_back(InputPart::from_bytes("image/jpeg", std::move(f.jpeg)));
  }
  req.parts.push_back(InputPart::from_text(question));

  GenerateResult answer = GenAiClient(endpoint_, client_).generate_content(req, cancel);
  settle(result, std::move(answer), media_, options.model_id, user, source, ledger_.get());
  return result;
}

AnalysisResult
VideoAnalyzer::analyze(const std::filesystem::path &video, const std::string &question,
                       const AnalysisOptions &options, const CancelToken &cancel,
                       const std::function<void(const AnalysisProgress &)> &on_progress) {
  auto progress = [&](const char *phase, std::string text, std::uint64_t done = 0,
                      std::uint64_t total = 0) {
    if (on_progress)
      on_progress({phase, std::move(text), done, total});
  };
  if (blank(question))
    throw Error(ErrorKind::InvalidArgument, "no question to ask about " + video.string());

  progress("probe", "checking " + video.string());
  AnalysisResult result;
  result.media = probe_media(video, options.limits);
  const MediaInfo &info = result.media;
  const std::string user = options.user.empty() ? current_user() : options.user;
  if (ledger_) {
    char what[256];
    std::snprintf(what, sizeof what, "analysing this %.0f s video", info.duration_s);
    ledger_->check_budget(user, estimate_usd(info, question, options), what);
  }

  GenerateRequest req;
  req.model_id = options.model_id;
  std::optional<VideoMetadata> metadata;
  if (options.fps)
    metadata = VideoMetadata{std::nullopt, std::nullopt, options.fps};
  std::unique_ptr<FilesClient> files;

  if (base64_size(info.size_bytes) + question.size() + kRequestOverheadBytes <=
      options.inline_limit_bytes) {
    result.method = AnalysisMethod::Inline;
    InputPart part = InputPart::from_bytes(info.mime_type, read_bytes(video));
    part.video_metadata = metadata;
    req.parts.push_back(std::move(part));
  } else {
    result.method = AnalysisMethod::Upload;
    files = std::make_unique<FilesClient>(endpoint_, client_);
    UploadOptions upload;
    upload.mime_type = info.mime_type;
    upload.display_name = video.filename().string();
    upload.on_progress = [&](std::uint64_t done, std::uint64_t total) {
      progress("upload", "uploading " + video.filename().string(), done, total);
    };
    FileResource file = files->upload(video, upload, cancel);
    result.file_name = file.name;
    if (file.state != FileState::Active) {
      file = files->wait_active(file.name, options.file_poll_interval, options.file_timeout, cancel,
                                [&](int, FileState state) {
                                  progress("processing", file.name + " is " + to_string(state));
                                });
    }
    InputPart part = InputPart::from_file(info.mime_type, file.uri);
    part.video_metadata = metadata;
    req.parts.push_back(std::move(part));
  }
  req.parts.push_back(InputPart::from_text(question));

  progress("generate", "asking " + options.model_id);
  GenerateResult answer;
  try {
    answer = GenAiClient(endpoint_, client_).generate_content(req, cancel);
  } catch (...) {
    if (files && !options.keep_upload) {
      try {
        files->remove(result.file_name, CancelToken());
      } catch (const Error &) {
        // The file expires on its own after 48 hours.
      }
    }
    throw;
  }
  if (files && !options.keep_upload) {
    try {
      files->remove(result.file_name, CancelToken());
    } catch (const Error &) {
      // The file expires on its own after 48 hours.
    }
  }

  settle(result, std::move(answer), media_, options.model_id, user, video.filename().string(),
         ledger_.get());
  return result;
}

} // namespace gemstream
