#include "gemstream/video_analysis.h"

#include "gemstream/error.h"
#include "gemstream/files.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <utility>

namespace gemstream {
namespace {

// ---- libav RAII ------------------------------------------------------------------------------

struct FormatCloser {
  void operator()(AVFormatContext *c) const noexcept { avformat_close_input(&c); }
};
struct CodecFreer {
  void operator()(AVCodecContext *c) const noexcept { avcodec_free_context(&c); }
};
struct FrameFreer {
  void operator()(AVFrame *f) const noexcept { av_frame_free(&f); }
};
struct PacketFreer {
  void operator()(AVPacket *p) const noexcept { av_packet_free(&p); }
};
struct SwsFreer {
  void operator()(SwsContext *s) const noexcept { sws_freeContext(s); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;

std::string av_error(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

Error frame_error(const std::filesystem::path &path, const std::string &what) {
  return Error(ErrorKind::InvalidArgument, path.string() + ": " + what);
}

// swscale warns about (and misreads the range of) the deprecated full-range "J" formats that
// JPEG and MJPEG decoders output: scale from their plain equivalents with the range set.
AVPixelFormat plain_format(AVPixelFormat format, bool *full_range) {
  switch (format) {
  case AV_PIX_FMT_YUVJ420P: *full_range = true; return AV_PIX_FMT_YUV420P;
  case AV_PIX_FMT_YUVJ422P: *full_range = true; return AV_PIX_FMT_YUV422P;
  case AV_PIX_FMT_YUVJ444P: *full_range = true; return AV_PIX_FMT_YUV444P;
  case AV_PIX_FMT_YUVJ440P: *full_range = true; return AV_PIX_FMT_YUV440P;
  case AV_PIX_FMT_YUVJ411P: *full_range = true; return AV_PIX_FMT_YUV411P;
  default: return format;
  }
}

// Encodes one yuv420p full-range frame as JPEG.
std::string encode_jpeg(const AVFrame *frame) {
  const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
  if (!codec)
    throw Error(ErrorKind::Internal, "this FFmpeg build has no MJPEG encoder");
  CodecPtr enc(avcodec_alloc_context3(codec));
  enc->width = frame->width;
  enc->height = frame->height;
  enc->pix_fmt = AV_PIX_FMT_YUV420P;
  enc->color_range = AVCOL_RANGE_JPEG;
  enc->time_base = {1, 25};
  enc->flags |= AV_CODEC_FLAG_QSCALE;
  enc->global_quality = FF_QP2LAMBDA * 3;
  if (int err = avcodec_open2(enc.get(), codec, nullptr); err < 0)
    throw Error(ErrorKind::Internal, "cannot open the MJPEG encoder: " + av_error(err));
  if (int err = avcodec_send_frame(enc.get(), frame); err < 0)
    throw Error(ErrorKind::Internal, "JPEG encoding failed: " + av_error(err));
  avcodec_send_frame(enc.get(), nullptr);
  PacketPtr pkt(av_packet_alloc());
  std::string out;
  while (avcodec_receive_packet(enc.get(), pkt.get()) == 0) {
    out.append(reinterpret_cast<const char *>(pkt->data), static_cast<std::size_t>(pkt->size));
    av_packet_unref(pkt.get());
  }
  if (out.empty())
    throw Error(ErrorKind::Internal, "the MJPEG encoder produced no data");
  return out;
}

std::string read_bytes(const std::filesystem::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorKind::Io, "cannot read " + path.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::uint64_t base64_size(std::uint64_t bytes) {
  return (bytes + 2) / 3 * 4;
}

} // namespace

std::vector<SampledFrame> sample_video_frames(const std::filesystem::path &path, int count,
                                              int max_dimension) {
  if (count < 1 || count > 3600)
    throw Error(ErrorKind::InvalidArgument,
                "the number of frames must be from 1 to 3600, got " + std::to_string(count));
  if (max_dimension < 16)
    throw Error(ErrorKind::InvalidArgument, "frames must be at least 16 pixels");

  AVFormatContext *raw = nullptr;
  if (int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr); err < 0)
    throw frame_error(path, "cannot open: " + av_error(err));
  FormatPtr fmt(raw);
  if (int err = avformat_find_stream_info(fmt.get(), nullptr); err < 0)
    throw frame_error(path, "cannot read the streams: " + av_error(err));
  const AVCodec *codec = nullptr;
  const int index = av_find_best_stream(fmt.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (index < 0 || !codec)
    throw frame_error(path, "no decodable video stream");
  AVStream *stream = fmt->streams[index];
  CodecPtr dec(avcodec_alloc_context3(codec));
  avcodec_parameters_to_context(dec.get(), stream->codecpar);
  dec->thread_count = 1;
  if (int err = avcodec_open2(dec.get(), codec, nullptr); err < 0)
    throw frame_error(path, "cannot open the video decoder: " + av_error(err));

  double duration = stream->duration != AV_NOPTS_VALUE
                        ? static_cast<double>(stream->duration) * av_q2d(stream->time_base)
                    : fmt->duration != AV_NOPTS_VALUE
                        ? static_cast<double>(fmt->duration) / AV_TIME_BASE
                        : 0.0;
  const std::int64_t start = stream->start_time != AV_NOPTS_VALUE ? stream->start_time : 0;

  PacketPtr pkt(av_packet_alloc());
  FramePtr frame(av_frame_alloc());
  FramePtr last(av_frame_alloc());
  SwsPtr sws;
  std::vector<SampledFrame> out;
  for (int i = 0; i < count; ++i) {
    const double t = duration * (i + 0.5) / count;
    const std::int64_t target =
        start + static_cast<std::int64_t>(std::llround(t / av_q2d(stream->time_base)));
    if (av_seek_frame(fmt.get(), index, target, AVSEEK_FLAG_BACKWARD) < 0)
      av_seek_frame(fmt.get(), index, start, AVSEEK_FLAG_BACKWARD);
    avcodec_flush_buffers(dec.get());
    av_frame_unref(last.get());
    bool have = false, found = false, eof = false;
    while (!found) {
      int err = eof ? AVERROR_EOF : av_read_frame(fmt.get(), pkt.get());
      if (err == AVERROR_EOF && !eof) {
        eof = true;
        avcodec_send_packet(dec.get(), nullptr);
      } else if (err < 0 && err != AVERROR_EOF) {
        throw frame_error(path, "cannot read the video: " + av_error(err));
      } else if (!eof) {
        if (pkt->stream_index == index)
          avcodec_send_packet(dec.get(), pkt.get());
        av_packet_unref(pkt.get());
      }
      for (;;) {
        err = avcodec_receive_frame(dec.get(), frame.get());
        if (err == AVERROR(EAGAIN) || err == AVERROR_EOF)
          break;
        if (err < 0)
          throw frame_error(path, "cannot decode the video: " + av_error(err));
        av_frame_unref(last.get());
        av_frame_move_ref(last.get(), frame.get());
        have = true;
        if (last->best_effort_timestamp == AV_NOPTS_VALUE ||
            last->best_effort_timestamp >= target) {
          found = true;
          break;
        }
      }
      if (eof && !found)
        break; // the last frame decoded stands in for a target past the end
    }
    if (!have)
      throw frame_error(path, "no frame could be decoded near " + std::to_string(t) + " s");

    const int w = last->width, h = last->height;
    const double scale = std::min(1.0, static_cast<double>(max_dimension) / std::max(w, h));
    const int ow = std::max(2, static_cast<int>(std::lround(w * scale)) & ~1);
    const int oh = std::max(2, static_cast<int>(std::lround(h * scale)) & ~1);
    bool full_range = last->color_range == AVCOL_RANGE_JPEG;
    const AVPixelFormat format =
        plain_format(static_cast<AVPixelFormat>(last->format), &full_range);
    sws.reset(sws_getCachedContext(sws.release(), w, h, format, ow, oh, AV_PIX_FMT_YUV420P,
                                   SWS_BICUBIC, nullptr, nullptr, nullptr));
    if (!sws)
      throw Error(ErrorKind::Internal,
                  "cannot scale " + std::to_string(w) + "x" + std::to_string(h));
    // Full-range output: JPEG's YUV.
    const int *coeffs = sws_getCoefficients(SWS_CS_DEFAULT);
    sws_setColorspaceDetails(sws.get(), coeffs, full_range, coeffs, 1, 0, 1 << 16, 1 << 16);
    FramePtr scaled(av_frame_alloc());
    scaled->format = AV_PIX_FMT_YUV420P;
    scaled->width = ow;
    scaled->height = oh;
    scaled->color_range = AVCOL_RANGE_JPEG;
    if (av_frame_get_buffer(scaled.get(), 0) < 0)
      throw Error(ErrorKind::Internal, "out of memory scaling a frame");
    sws_scale(sws.get(), last->data, last->linesize, 0, h, scaled->data, scaled->linesize);

    SampledFrame f;
    f.time_s =
        last->best_effort_timestamp == AV_NOPTS_VALUE
            ? t
            : static_cast<double>(last->best_effort_timestamp - start) * av_q2d(stream->time_base);
    f.width = ow;
    f.height = oh;
    f.jpeg = encode_jpeg(scaled.get());
    out.push_back(std::move(f));
  }
  return out;
}

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
  constexpr std::int64_t kTokensPerFrame = 258;
  constexpr std::int64_t kAudioTokensPerSecond = 32;
  constexpr std::int64_t kAnswerTokens = 1000;
  TokenUsage tokens;
  if (options.frames > 0) {
    tokens.input_tokens = options.frames * kTokensPerFrame;
  } else {
    const double fps = options.fps.value_or(1.0);
    tokens.input_tokens =
        static_cast<std::int64_t>(std::ceil(info.duration_s * fps)) * kTokensPerFrame;
    if (info.audio())
      tokens.input_tokens +=
          static_cast<std::int64_t>(std::ceil(info.duration_s)) * kAudioTokensPerSecond;
  }
  tokens.input_tokens += static_cast<std::int64_t>(question.size() / 4 + 1);
  tokens.output_tokens = kAnswerTokens;
  return price_analysis(media_, options.model_id, tokens).usd();
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
  if (question.empty())
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

  if (options.frames > 0) {
    result.method = AnalysisMethod::Frames;
    progress("frames", "sampling " + std::to_string(options.frames) + " frames");
    const auto frames = sample_video_frames(video, options.frames);
    char intro[256];
    std::snprintf(intro, sizeof intro,
                  "%zu frames sampled evenly from a %.1f s video, in order, each after its time:",
                  frames.size(), info.duration_s);
    req.parts.push_back(InputPart::from_text(intro));
    for (const auto &f : frames) {
      char label[64];
      std::snprintf(label, sizeof label, "Frame at %.2f s:", f.time_s);
      req.parts.push_back(InputPart::from_text(label));
      req.parts.push_back(InputPart::from_bytes("image/jpeg", f.jpeg));
    }
  } else if (base64_size(info.size_bytes) + question.size() + 4096 <= options.inline_limit_bytes) {
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

  result.text = answer.text;
  result.usage = answer.usage;
  result.response_id = answer.response_id;
  result.model_version = answer.model_version;
  result.cost = price_analysis(media_, options.model_id,
                               answer.usage ? token_usage(*answer.usage) : TokenUsage{});
  result.cost.user = user;
  result.cost.request_id = answer.response_id;
  result.cost.note = std::string("video analysis (") + to_string(result.method) + ") of " +
                     video.filename().string() + "; " + result.cost.note;
  if (ledger_)
    result.cost.id = ledger_->record(result.cost);
  return result;
}

} // namespace gemstream
