#include "gemstream/media_probe.h"

#include "gemstream/error.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
}

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string_view>
#include <system_error>

namespace gemstream {
namespace {

struct FormatCloser {
  void operator()(AVFormatContext *ctx) const noexcept { avformat_close_input(&ctx); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;

std::string av_error(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

std::string human_size(std::uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / double(1ull << 30));
  else
    std::snprintf(buf, sizeof buf, "%.1f MB", bytes / double(1ull << 20));
  return buf;
}

Error invalid(const std::filesystem::path &path, const std::string &what) {
  return Error(ErrorKind::InvalidArgument, path.string() + ": " + what);
}

struct Family {
  const char *av_name;  // a name in libavformat's comma-separated list
  const char *mime;
};
constexpr Family kFamilies[] = {
    {"mp4", "video/mp4"},         {"mov", "video/quicktime"}, {"webm", "video/webm"},
    {"matroska", "video/x-matroska"}, {"avi", "video/x-msvideo"}, {"mpeg", "video/mpeg"},
    {"mpegts", "video/mp2t"},
};

// libavformat names the mov demuxer "mov,mp4,m4a,3gp,3g2,mj2" and matroska "matroska,webm";
// the extension decides between the members of a family.
std::string mime_for(const std::string &names, const std::filesystem::path &path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  auto has = [&](const char *n) {
    std::string list = "," + names + ",";
    return list.find(std::string(",") + n + ",") != std::string::npos;
  };
  if (has("mov")) {
    if (ext == ".mov" || ext == ".qt")
      return "video/quicktime";
    return "video/mp4";
  }
  if (has("matroska"))
    return ext == ".mkv" ? "video/x-matroska" : "video/webm";
  for (const Family &f : kFamilies)
    if (has(f.av_name))
      return f.mime;
  return {};
}

// Whether the container's header already gave every field probe_media() reads: the codec, size
// and frame rate of each video stream, the sample rate and channels of each audio stream, and the
// duration. Only the MP4 family is trusted so: its header (moov) lists every sample.
bool described_by_header(const AVFormatContext &ctx) {
  if (std::string_view(ctx.iformat->name).find("mp4") == std::string_view::npos)
    return false;
  if (ctx.duration == AV_NOPTS_VALUE || ctx.duration <= 0 || ctx.nb_streams == 0)
    return false;
  for (unsigned i = 0; i < ctx.nb_streams; ++i) {
    const AVStream *st = ctx.streams[i];
    const AVCodecParameters *par = st->codecpar;
    if (par->codec_id == AV_CODEC_ID_NONE)
      return false;
    if (par->codec_type == AVMEDIA_TYPE_VIDEO &&
        (par->width <= 0 || par->height <= 0 || st->avg_frame_rate.num <= 0 ||
         st->avg_frame_rate.den <= 0))
      return false;
    if (par->codec_type == AVMEDIA_TYPE_AUDIO &&
        (par->sample_rate <= 0 || par->ch_layout.nb_channels <= 0))
      return false;
  }
  return true;
}

} // namespace

const MediaStreamInfo *MediaInfo::video() const {
  for (const auto &s : streams)
    if (s.type == MediaStreamInfo::Type::Video)
      return &s;
  return nullptr;
}

const MediaStreamInfo *MediaInfo::audio() const {
  for (const auto &s : streams)
    if (s.type == MediaStreamInfo::Type::Audio)
      return &s;
  return nullptr;
}

MediaInfo probe_media(const std::filesystem::path &path, const ProbeLimits &limits) {
  MediaInfo info;
  info.path = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorKind::InvalidArgument, path.string() + ": a directory, not a video file");
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(ErrorKind::Io, path.string() + ": no such file");
  info.size_bytes = std::filesystem::file_size(path, ec);
  if (ec)
    throw Error(ErrorKind::Io, path.string() + ": " + ec.message());
  if (info.size_bytes == 0)
    throw invalid(path, "the file is empty");
  if (info.size_bytes > limits.max_bytes)
    throw invalid(path, "too large: " + human_size(info.size_bytes) + ", the limit is " +
                            human_size(limits.max_bytes));

  AVFormatContext *raw = nullptr;
  int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (err < 0) {
    // An MP4 cut short before its index (the moov box, last in most files) cannot be opened.
    char head[8] = {};
    if (std::FILE *f = std::fopen(path.c_str(), "rb")) {
      (void)!std::fread(head, 1, sizeof head, f);
      std::fclose(f);
    }
    if (std::string(head + 4, 4) == "ftyp")
      throw invalid(path, "damaged or truncated MP4: its index (moov box) is missing (" +
                              av_error(err) + ")");
    throw invalid(path, "not a video file libavformat can read (" + av_error(err) + ")");
  }
  FormatPtr ctx(raw);
  // avformat_find_stream_info() decodes the first frames of each stream (about 7 ms for a 720p
  // H.264 MP4, on the path of every loop's start): it is for containers whose header does not
  // describe the streams. An MP4 or MOV header usually describes them all, then the call is
  // skipped.
  if (!described_by_header(*ctx) && (err = avformat_find_stream_info(ctx.get(), nullptr)) < 0)
    throw invalid(path, "cannot read the stream information (" + av_error(err) + ")");

  info.container = ctx->iformat->name;
  info.mime_type = mime_for(info.container, path);
  if (limits.restrict_containers && info.mime_type.empty())
    throw invalid(path, "unsupported container \"" + info.container +
                            "\" (supported: mp4, mov, webm, mkv, avi, mpeg)");
  if (ctx->duration != AV_NOPTS_VALUE && ctx->duration > 0)
    info.duration_s = ctx->duration / double(AV_TIME_BASE);

  for (unsigned i = 0; i < ctx->nb_streams; ++i) {
    const AVStream *st = ctx->streams[i];
    MediaStreamInfo s;
    const AVCodecParameters *par = st->codecpar;
    s.codec = avcodec_get_name(par->codec_id);
    if (par->codec_type == AVMEDIA_TYPE_VIDEO && !(st->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
      s.type = MediaStreamInfo::Type::Video;
      s.width = par->width;
      s.height = par->height;
      if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
        s.fps = av_q2d(st->avg_frame_rate);
      if (const std::uint8_t *matrix =
              av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, nullptr)) {
        // av_display_rotation_get() gives the counter-clockwise rotation the matrix applies.
        const double ccw = av_display_rotation_get(reinterpret_cast<const std::int32_t *>(matrix));
        if (std::isfinite(ccw))
          s.rotation = ((static_cast<int>(std::lround(-ccw)) % 360) + 360) % 360;
      }
    } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
      s.type = MediaStreamInfo::Type::Audio;
      s.sample_rate = par->sample_rate;
      s.channels = par->ch_layout.nb_channels;
    }
    info.streams.push_back(s);
  }
  if (limits.require_video && !info.video())
    throw invalid(path, "no video stream (found " + std::to_string(ctx->nb_streams) + " other streams)");

  // Read every packet: a truncated file ends early or fails to read.
  std::vector<std::int64_t> end_pts(ctx->nb_streams, AV_NOPTS_VALUE);
  std::vector<std::vector<std::int64_t>> video_pts(ctx->nb_streams);
  AVPacket *pkt = av_packet_alloc();
  while ((err = av_read_frame(ctx.get(), pkt)) >= 0) {
    const unsigned idx = static_cast<unsigned>(pkt->stream_index);
    if (idx < info.streams.size()) {
      info.streams[idx].packets++;
      std::int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
      if (ts != AV_NOPTS_VALUE && info.streams[idx].type == MediaStreamInfo::Type::Video)
        video_pts[idx].push_back(ts);
      if (ts != AV_NOPTS_VALUE) {
        std::int64_t end = ts + std::max<std::int64_t>(pkt->duration, 0);
        if (end_pts[idx] == AV_NOPTS_VALUE || end > end_pts[idx])
          end_pts[idx] = end;
      }
    }
    av_packet_unref(pkt);
  }
  av_packet_free(&pkt);
  if (err != AVERROR_EOF)
    throw invalid(path, "damaged or truncated: reading stopped with \"" + av_error(err) + "\"");

  for (unsigned i = 0; i < ctx->nb_streams; ++i) {
    if (end_pts[i] == AV_NOPTS_VALUE)
      continue;
    const AVStream *st = ctx->streams[i];
    std::int64_t start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
    info.streams[i].duration_s = (end_pts[i] - start) * av_q2d(st->time_base);
  }
  for (unsigned i = 0; i < ctx->nb_streams; ++i) {
    std::vector<std::int64_t> &pts = video_pts[i];
    std::sort(pts.begin(), pts.end());
    std::int64_t shortest = 0, longest = 0;
    for (std::size_t j = 1; j < pts.size(); ++j) {
      const std::int64_t step = pts[j] - pts[j - 1];
      if (step <= 0)
        continue;
      shortest = shortest ? std::min(shortest, step) : step;
      longest = std::max(longest, step);
    }
    if (shortest > 0) {
      info.streams[i].max_fps = 1.0 / (shortest * av_q2d(ctx->streams[i]->time_base));
      info.streams[i].variable_rate = longest * 2 > shortest * 3;
    }
  }
  const MediaStreamInfo *video = info.video();
  if (video && video->packets == 0)
    throw invalid(path, "the video stream has no frames");
  // A file cut short loses the end of every stream; a video shorter than its audio is whole.
  double streams_end = 0;
  for (const MediaStreamInfo &s : info.streams)
    streams_end = std::max(streams_end, s.duration_s);
  if (video && info.duration_s > 0 && streams_end < info.duration_s * 0.9 - 0.5) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "truncated: the streams end at %.1f s of the declared %.1f s",
                  streams_end, info.duration_s);
    throw invalid(path, buf);
  }
  if (info.duration_s <= 0 && video)
    info.duration_s = video->duration_s;
  if (info.duration_s > limits.max_duration_s)
    throw invalid(path, "too long: " + std::to_string(int(info.duration_s)) + " s, the limit is " +
                            std::to_string(int(limits.max_duration_s)) + " s");
  return info;
}

} // namespace gemstream
