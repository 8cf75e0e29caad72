#include "understanding.h"

#include "search_corpus.h"
#include "wire.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>

namespace gemstream::backend {
namespace {

using json = nlohmann::json;

constexpr int kTokensPerFrame = 258;
constexpr int kTokensPerImage = 258;
constexpr int kAudioTokensPerSecond = 32;
// Frames are reduced to this size for colour and motion measurements.
constexpr int kThumbWidth = 64;
constexpr int kThumbHeight = 36;

// ---- libav RAII and in-memory input ----------------------------------------------------------

struct FormatCloser {
  void operator()(AVFormatContext *c) const noexcept { avformat_close_input(&c); }
};
struct IoFreer {
  void operator()(AVIOContext *io) const noexcept {
    if (io) {
      av_freep(&io->buffer);
      avio_context_free(&io);
    }
  }
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
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;

std::string av_error(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

struct MemoryReader {
  std::string_view data;
  std::size_t position = 0;

  static int read(void *opaque, std::uint8_t *buf, int size) {
    auto *self = static_cast<MemoryReader *>(opaque);
    const std::size_t left = self->data.size() - self->position;
    if (left == 0)
      return AVERROR_EOF;
    const std::size_t n = std::min<std::size_t>(left, static_cast<std::size_t>(size));
    std::memcpy(buf, self->data.data() + self->position, n);
    self->position += n;
    return static_cast<int>(n);
  }
  static std::int64_t seek(void *opaque, std::int64_t offset, int whence) {
    auto *self = static_cast<MemoryReader *>(opaque);
    const auto size = static_cast<std::int64_t>(self->data.size());
    std::int64_t target;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return size;
    case SEEK_SET: target = offset; break;
    case SEEK_CUR: target = static_cast<std::int64_t>(self->position) + offset; break;
    case SEEK_END: target = size + offset; break;
    default: return -1;
    }
    if (target < 0 || target > size)
      return -1;
    self->position = static_cast<std::size_t>(target);
    return target;
  }
};

// A demuxer over bytes in memory; members destroyed in the right order.
class MemoryInput {
public:
  explicit MemoryInput(std::string_view data) : reader_{data, 0} {
    constexpr int kBuffer = 64 * 1024;
    auto *buffer = static_cast<unsigned char *>(av_malloc(kBuffer));
    if (!buffer)
      throw std::runtime_error("out of memory");
    io_.reset(avio_alloc_context(buffer, kBuffer, 0, &reader_, &MemoryReader::read, nullptr,
                                 &MemoryReader::seek));
    if (!io_) {
      av_free(buffer);
      throw std::runtime_error("out of memory");
    }
    AVFormatContext *ctx = avformat_alloc_context();
    ctx->pb = io_.get();
    ctx->flags |= AVFMT_FLAG_CUSTOM_IO;
    if (int err = avformat_open_input(&ctx, nullptr, nullptr, nullptr); err < 0)
      throw std::runtime_error("not a media file libavformat recognises (" + av_error(err) + ")");
    fmt_.reset(ctx);
    if (int err = avformat_find_stream_info(fmt_.get(), nullptr); err < 0)
      throw std::runtime_error("cannot read its streams (" + av_error(err) + ")");
  }
  AVFormatContext *get() const { return fmt_.get(); }

private:
  MemoryReader reader_;
  std::unique_ptr<AVIOContext, IoFreer> io_;
  std::unique_ptr<AVFormatContext, FormatCloser> fmt_; // closed before io_ is freed
};

// ---- colours and motion --------------------------------------------------------------------

struct NamedColour {
  const char *name;
  int r, g, b;
};

constexpr NamedColour kPalette[] = {
    {"black", 15, 15, 15},       {"white", 240, 240, 240},      {"grey", 128, 128, 128},
    {"dark grey", 64, 64, 64},   {"light grey", 192, 192, 192}, {"red", 200, 30, 30},
    {"orange", 240, 140, 30},    {"yellow", 240, 220, 40},      {"gold", 212, 175, 55},
    {"green", 40, 160, 60},      {"dark green", 20, 80, 30},    {"teal", 0, 128, 128},
    {"turquoise", 64, 200, 200}, {"light blue", 140, 190, 240}, {"blue", 30, 90, 220},
    {"navy", 20, 30, 90},        {"purple", 120, 50, 160},      {"pink", 240, 140, 180},
    {"magenta", 200, 40, 160},   {"brown", 120, 70, 30},        {"beige", 225, 205, 160},
    {"coral", 250, 120, 90},
};

const NamedColour &nearest(int r, int g, int b) {
  const NamedColour *best = &kPalette[0];
  long best_d = -1;
  for (const auto &c : kPalette) {
    // Weighted RGB distance: close to perceived difference for our purpose.
    const long dr = r - c.r, dg = g - c.g, db = b - c.b;
    const long d = 2 * dr * dr + 4 * dg * dg + 3 * db * db;
    if (best_d < 0 || d < best_d) {
      best_d = d;
      best = &c;
    }
  }
  return *best;
}

class ColourCounter {
public:
  void add(const std::uint8_t *rgb, int pixels) {
    for (int i = 0; i < pixels; ++i)
      ++counts_[nearest(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]).name];
    total_ += pixels;
  }
  std::vector<ColourShare> shares() const {
    std::vector<ColourShare> out;
    for (const auto &[name, n] : counts_) {
      const int percent = static_cast<int>(std::lround(100.0 * static_cast<double>(n) / total_));
      if (percent >= 5)
        out.push_back({name, percent});
    }
    std::sort(out.begin(), out.end(), [](const ColourShare &a, const ColourShare &b) {
      return a.percent != b.percent ? a.percent > b.percent : a.name < b.name;
    });
    if (out.size() > 4)
      out.resize(4);
    return out;
  }

private:
  std::map<std::string, long> counts_;
  long total_ = 0;
};

// A frame reduced to a small RGB thumbnail, and its luma.
struct Thumb {
  std::array<std::uint8_t, kThumbWidth * kThumbHeight * 3> rgb{};
  std::array<double, kThumbWidth * kThumbHeight> luma{};
};

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

class Thumbnailer {
public:
  Thumb make(const AVFrame *frame) {
    bool full_range = frame->color_range == AVCOL_RANGE_JPEG;
    const AVPixelFormat format =
        plain_format(static_cast<AVPixelFormat>(frame->format), &full_range);
    sws_.reset(sws_getCachedContext(sws_.release(), frame->width, frame->height, format,
                                    kThumbWidth, kThumbHeight, AV_PIX_FMT_RGB24, SWS_AREA, nullptr,
                                    nullptr, nullptr));
    if (!sws_)
      throw std::runtime_error("cannot scale a " + std::to_string(frame->width) + "x" +
                               std::to_string(frame->height) + " frame");
    const int *coefficients = sws_getCoefficients(SWS_CS_DEFAULT);
    sws_setColorspaceDetails(sws_.get(), coefficients, full_range, coefficients, 1, 0, 1 << 16,
                             1 << 16);
    Thumb t;
    std::uint8_t *dst[4] = {t.rgb.data(), nullptr, nullptr, nullptr};
    int stride[4] = {kThumbWidth * 3, 0, 0, 0};
    sws_scale(sws_.get(), frame->data, frame->linesize, 0, frame->height, dst, stride);
    for (int i = 0; i < kThumbWidth * kThumbHeight; ++i)
      t.luma[i] = 0.299 * t.rgb[3 * i] + 0.587 * t.rgb[3 * i + 1] + 0.114 * t.rgb[3 * i + 2];
    return t;
  }

private:
  SwsPtr sws_;
};

double difference(const Thumb &a, const Thumb &b) {
  double sum = 0;
  for (std::size_t i = 0; i < a.luma.size(); ++i)
    sum += std::fabs(a.luma[i] - b.luma[i]);
  return 100.0 * sum / (a.luma.size() * 255.0);
}

// ---- text helpers ----------------------------------------------------------------------------

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string colour_phrase(const std::vector<ColourShare> &colours) {
  if (colours.empty())
    return "no single colour dominates";
  std::string out;
  for (std::size_t i = 0; i < colours.size(); ++i) {
    if (i > 0)
      out += i + 1 == colours.size() ? " and " : ", ";
    out += colours[i].name + " (" + std::to_string(colours[i].percent) + "%)";
  }
  return (colours.size() == 1 ? "the dominant colour is " : "the dominant colours are ") + out;
}

std::string motion_phrase(double motion, const char *between) {
  std::string amount = motion < 1.0    ? "almost no motion: the picture is nearly still"
                       : motion < 4.0  ? "little motion: the picture changes slowly"
                       : motion < 10.0 ? "moderate motion"
                                       : "a lot of motion";
  return "There is " + amount + " (on average " + fixed(motion, 1) + "% of the picture changes " +
         between + ").";
}

std::optional<double> duration_value(const json &v) {
  if (v.is_number())
    return v.get<double>();
  if (!v.is_string())
    return std::nullopt;
  std::string s = v.get<std::string>();
  if (s.empty() || s.back() != 's')
    return std::nullopt;
  s.pop_back();
  char *end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || d < 0)
    return std::nullopt;
  return d;
}

// ---- answering ---------------------------------------------------------------------------------

json modality_list(const std::map<std::string, std::int64_t> &tokens) {
  json out = json::array();
  for (const auto &[modality, n] : tokens)
    if (n > 0)
      out.push_back({{"modality", modality}, {"tokenCount", n}});
  return out;
}

std::string describe_video(const VideoFacts &f, const MediaInput &in, std::int64_t *sampled) {
  double start = in.start_offset_s.value_or(0.0);
  double end = std::min(in.end_offset_s.value_or(f.duration_s), f.duration_s);
  if (end < start)
    end = start;
  const double fps = in.fps.value_or(1.0);
  *sampled = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((end - start) * fps)));
  std::string text = "The video is " + fixed(f.duration_s, 1) + " seconds long, " +
                     std::to_string(f.width) + "x" + std::to_string(f.height) + " at " +
                     fixed(f.fps, f.fps == std::floor(f.fps) ? 0 : 2) + " frames per second (" +
                     std::to_string(f.frames) + " frames, " + f.codec + "), " +
                     (f.audio ? "with" : "without") + " an audio track. ";
  text += "Looking at " + std::to_string(*sampled) + " frame" + (*sampled == 1 ? "" : "s") +
          " sampled at " + fixed(fps, fps == std::floor(fps) ? 0 : 2) + " per second, " +
          colour_phrase(f.colours) + ". ";
  text += motion_phrase(f.motion, "from one second to the next");
  return text;
}

} // namespace

// ---- media analysis ----------------------------------------------------------------------------

std::optional<double> probe_duration(std::string_view bytes, std::string *error) {
  try {
    MemoryInput input(bytes);
    AVFormatContext *fmt = input.get();
    if (fmt->duration == AV_NOPTS_VALUE || fmt->duration <= 0) {
      if (error)
        *error = "its duration is unknown";
      return std::nullopt;
    }
    return static_cast<double>(fmt->duration) / AV_TIME_BASE;
  } catch (const std::exception &e) {
    if (error)
      *error = e.what();
    return std::nullopt;
  }
}

VideoFacts analyze_video(std::string_view bytes) {
  MemoryInput input(bytes);
  AVFormatContext *fmt = input.get();
  const AVCodec *codec = nullptr;
  const int index = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (index < 0 || !codec)
    throw std::runtime_error("it has no decodable video stream");
  AVStream *stream = fmt->streams[index];
  CodecPtr dec(avcodec_alloc_context3(codec));
  avcodec_parameters_to_context(dec.get(), stream->codecpar);
  dec->thread_count = 2;
  if (int err = avcodec_open2(dec.get(), codec, nullptr); err < 0)
    throw std::runtime_error("cannot open its video decoder (" + av_error(err) + ")");

  VideoFacts f;
  f.container = fmt->iformat->name;
  f.codec = codec->name;
  f.width = dec->width;
  f.height = dec->height;
  f.fps = stream->avg_frame_rate.den ? av_q2d(stream->avg_frame_rate) : 0;
  f.duration_s =
      fmt->duration != AV_NOPTS_VALUE ? static_cast<double>(fmt->duration) / AV_TIME_BASE : 0;
  for (unsigned i = 0; i < fmt->nb_streams; ++i)
    if (fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO)
      f.audio = true;

  const double tb = av_q2d(stream->time_base);
  const std::int64_t start = stream->start_time != AV_NOPTS_VALUE ? stream->start_time : 0;
  PacketPtr pkt(av_packet_alloc());
  FramePtr frame(av_frame_alloc());
  Thumbnailer thumbs;
  ColourCounter colours;
  std::optional<Thumb> previous;
  double motion_sum = 0;
  int motion_pairs = 0;
  double next_sample = 0;
  double last_time = 0;

  auto take = [&](AVFrame *fr) {
    ++f.frames;
    const std::int64_t pts = fr->best_effort_timestamp;
    const double t = pts == AV_NOPTS_VALUE ? f.frames / std::max(1.0, f.fps) : (pts - start) * tb;
    last_time = std::max(last_time, t);
    if (t + 1e-6 < next_sample)
      return;
    next_sample = std::floor(t) + 1.0;
    Thumb thumb = thumbs.make(fr);
    colours.add(thumb.rgb.data(), kThumbWidth * kThumbHeight);
    if (previous) {
      motion_sum += difference(*previous, thumb);
      ++motion_pairs;
    }
    previous = thumb;
  };
  auto drain = [&] {
    for (;;) {
      const int err = avcodec_receive_frame(dec.get(), frame.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF)
        return;
      if (err < 0)
        throw std::runtime_error("its video does not decode (" + av_error(err) + ")");
      take(frame.get());
      av_frame_unref(frame.get());
    }
  };
  for (;;) {
    const int err = av_read_frame(fmt, pkt.get());
    if (err == AVERROR_EOF)
      break;
    if (err < 0)
      throw std::runtime_error("it cannot be read to the end (" + av_error(err) + ")");
    if (pkt->stream_index == index && avcodec_send_packet(dec.get(), pkt.get()) == 0) {
      av_packet_unref(pkt.get());
      drain();
    } else {
      av_packet_unref(pkt.get());
    }
  }
  avcodec_send_packet(dec.get(), nullptr);
  drain();
  if (f.frames == 0)
    throw std::runtime_error("not a single video frame decodes");
  if (f.duration_s <= 0)
    f.duration_s = last_time + (f.fps > 0 ? 1.0 / f.fps : 0);
  f.colours = colours.shares();
  f.motion = motion_pairs ? motion_sum / motion_pairs : 0;
  return f;
}

std::string describe_images(const std::vector<std::string_view> &images) {
  if (images.empty())
    return "I have not been sent any images.";
  try {
    const ImageSequenceFacts facts = analyze_images(images);
    const ImageFacts &first = facts.images.front();
    std::string text = "I looked at " + std::to_string(images.size()) + " image" +
                       (images.size() == 1 ? "" : "s") + " (" + std::to_string(first.width) +
                       "x" + std::to_string(first.height) + "); " +
                       colour_phrase(facts.colours) + ".";
    if (images.size() > 1)
      text += " " + motion_phrase(facts.motion, "from one image to the next");
    return text;
  } catch (const std::exception &e) {
    return std::string("I could not read the images you sent: ") + e.what() + ".";
  }
}

ImageSequenceFacts analyze_images(const std::vector<std::string_view> &images) {
  ImageSequenceFacts out;
  Thumbnailer thumbs;
  ColourCounter all;
  std::optional<Thumb> previous;
  double motion_sum = 0;
  int pairs = 0;
  for (std::size_t i = 0; i < images.size(); ++i) {
    MemoryInput input(images[i]);
    const AVCodec *codec = nullptr;
    const int index = av_find_best_stream(input.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (index < 0 || !codec)
      throw std::runtime_error("image " + std::to_string(i + 1) + " does not decode");
    CodecPtr dec(avcodec_alloc_context3(codec));
    avcodec_parameters_to_context(dec.get(), input.get()->streams[index]->codecpar);
    if (avcodec_open2(dec.get(), codec, nullptr) < 0)
      throw std::runtime_error("image " + std::to_string(i + 1) + " does not decode");
    PacketPtr pkt(av_packet_alloc());
    FramePtr frame(av_frame_alloc());
    bool got = false;
    while (!got && av_read_frame(input.get(), pkt.get()) >= 0) {
      if (pkt->stream_index == index)
        avcodec_send_packet(dec.get(), pkt.get());
      av_packet_unref(pkt.get());
      got = avcodec_receive_frame(dec.get(), frame.get()) == 0;
    }
    if (!got) {
      avcodec_send_packet(dec.get(), nullptr);
      got = avcodec_receive_frame(dec.get(), frame.get()) == 0;
    }
    if (!got)
      throw std::runtime_error("image " + std::to_string(i + 1) + " does not decode");
    Thumb thumb = thumbs.make(frame.get());
    ColourCounter one;
    one.add(thumb.rgb.data(), kThumbWidth * kThumbHeight);
    all.add(thumb.rgb.data(), kThumbWidth * kThumbHeight);
    out.images.push_back({frame->width, frame->height, one.shares()});
    if (previous) {
      motion_sum += difference(*previous, thumb);
      ++pairs;
    }
    previous = thumb;
  }
  out.colours = all.shares();
  out.motion = pairs ? motion_sum / pairs : 0;
  return out;
}

// ---- requests ------------------------------------------------------------------------------

std::variant<TextRequest, HttpError> parse_text_request(const json &body,
                                                        const FileResolver &resolve_file) {
  TextRequest req;
  const json *contents = member(body, "contents");
  if (!contents || !contents->is_array())
    return HttpError{400, "* GenerateContentRequest.contents: contents is not specified\n"};
  for (std::size_t c = 0; c < contents->size(); ++c) {
    const json *parts = member((*contents)[c], "parts");
    if (!parts || !parts->is_array())
      continue;
    for (std::size_t p = 0; p < parts->size(); ++p) {
      const json &part = (*parts)[p];
      const std::string where =
          "contents[" + std::to_string(c) + "].parts[" + std::to_string(p) + "]";
      if (!part.is_object())
        return HttpError{400, "Invalid value at '" + where + "': expected an object."};
      std::optional<MediaInput> media;
      if (const json *text = member(part, "text"); text && text->is_string()) {
        if (!req.question.empty())
          req.question += '\n';
        req.question += text->get<std::string>();
      }
      if (const json *blob = member(part, "inlineData")) {
        const json *mime = member(*blob, "mimeType");
        const json *data = member(*blob, "data");
        if (!mime || !mime->is_string() || !data || !data->is_string())
          return HttpError{400, "* " + where + ".inline_data: mime_type and data are required.\n"};
        auto bytes = base64_decode(data->get_ref<const std::string &>());
        if (!bytes)
          return HttpError{400, "Invalid value at '" + where +
                                    ".inline_data.data' (TYPE_BYTES), "
                                    "Base64 decoding failed."};
        media = MediaInput{mime->get<std::string>(),
                           std::make_shared<const std::string>(std::move(*bytes)), std::nullopt,
                           std::nullopt, std::nullopt};
      } else if (const json *file = member(part, "fileData")) {
        const json *uri = member(*file, "fileUri");
        const json *mime = member(*file, "mimeType");
        if (!uri || !uri->is_string())
          return HttpError{400, "* " + where + ".file_data.file_uri: a file uri is required.\n"};
        auto resolved = resolve_file(
            uri->get_ref<const std::string &>(),
            mime && mime->is_string() ? mime->get_ref<const std::string &>() : std::string_view());
        if (auto *err = std::get_if<HttpError>(&resolved))
          return *err;
        media = std::get<MediaInput>(std::move(resolved));
      }
      if (const json *meta = member(part, "videoMetadata")) {
        if (!media)
          return HttpError{400, "* " + where +
                                    ".video_metadata: only valid with inline_data or file_data.\n"};
        if (const json *fps = member(*meta, "fps")) {
          if (!fps->is_number() || fps->get<double>() <= 0 || fps->get<double>() > 24)
            return HttpError{400, "* " + where + ".video_metadata.fps: must be in (0, 24].\n"};
          media->fps = fps->get<double>();
        }
        for (auto [name, target] : {std::pair{"startOffset", &media->start_offset_s},
                                    std::pair{"endOffset", &media->end_offset_s}}) {
          if (const json *v = member(*meta, name)) {
            auto d = duration_value(*v);
            if (!d)
              return HttpError{400, "Invalid value at '" + where + ".video_metadata." + name +
                                        "' (type.googleapis.com/google.protobuf.Duration), " +
                                        v->dump()};
            *target = d;
          }
        }
      }
      if (media)
        req.media.push_back(std::move(*media));
    }
  }
  if (const json *tools = member(body, "tools"); tools && tools->is_array())
    for (const auto &tool : *tools)
      if (member(tool, "googleSearch") || member(tool, "googleSearchRetrieval"))
        req.google_search = true;
  return req;
}

GroundedAnswer grounded_answer(std::string_view question) {
  SearchAnswer answer = search_and_answer(question, AnswerStyle::Written);
  return {std::move(answer.text), json(std::move(answer.grounding_metadata)), answer.search_tokens};
}

json answer_text_request(const TextRequest &req, const std::string &model_version,
                         const std::string &response_id) {
  std::map<std::string, std::int64_t> prompt_tokens;
  prompt_tokens["TEXT"] = text_tokens(req.question);
  std::string text;
  json grounding;
  std::int64_t tool_tokens = 0;

  std::vector<std::string_view> images;
  for (const auto &m : req.media)
    if (m.mime_type.rfind("image/", 0) == 0)
      images.push_back(*m.data);

  int video_index = 0;
  for (const auto &m : req.media) {
    if (m.mime_type.rfind("video/", 0) != 0)
      continue;
    ++video_index;
    VideoFacts facts;
    try {
      facts = analyze_video(*m.data);
    } catch (const std::exception &e) {
      // What the real model says when a video cannot be processed.
      if (!text.empty())
        text += "\n\n";
      text += "I could not watch the video you sent (" + m.mime_type + "): " + e.what() + ".";
      continue;
    }
    std::int64_t sampled = 0;
    if (!text.empty())
      text += "\n\n";
    if (req.media.size() > 1)
      text += "Video " + std::to_string(video_index) + ": ";
    text += describe_video(facts, m, &sampled);
    prompt_tokens["VIDEO"] += sampled * kTokensPerFrame;
    if (facts.audio)
      prompt_tokens["AUDIO"] +=
          static_cast<std::int64_t>(std::ceil(facts.duration_s)) * kAudioTokensPerSecond;
  }
  if (!images.empty()) {
    prompt_tokens["IMAGE"] += static_cast<std::int64_t>(images.size()) * kTokensPerImage;
    if (!text.empty())
      text += "\n\n";
    text += describe_images(images);
  }
  if (req.google_search) {
    GroundedAnswer g = grounded_answer(req.question);
    if (!text.empty())
      text += "\n\n";
    const std::size_t shift = text.size();
    text += g.text;
    grounding = std::move(g.grounding_metadata);
    if (shift > 0 && grounding.contains("groundingSupports"))
      for (auto &s : grounding["groundingSupports"]) {
        s["segment"]["startIndex"] = s["segment"]["startIndex"].get<std::size_t>() + shift;
        s["segment"]["endIndex"] = s["segment"]["endIndex"].get<std::size_t>() + shift;
      }
    tool_tokens = g.search_tokens;
  }
  if (text.empty())
    text = "Local backend answer to: " + req.question;

  std::int64_t prompt_total = 0;
  for (const auto &[m, n] : prompt_tokens)
    prompt_total += n;
  const std::int64_t answer_tokens = text_tokens(text);
  json usage = {{"promptTokenCount", prompt_total},
                {"candidatesTokenCount", answer_tokens},
                {"totalTokenCount", prompt_total + answer_tokens + tool_tokens},
                {"promptTokensDetails", modality_list(prompt_tokens)},
                {"candidatesTokensDetails",
                 json::array({{{"modality", "TEXT"}, {"tokenCount", answer_tokens}}})}};
  if (tool_tokens > 0) {
    usage["toolUsePromptTokenCount"] = tool_tokens;
    usage["toolUsePromptTokensDetails"] =
        json::array({{{"modality", "TEXT"}, {"tokenCount", tool_tokens}}});
  }
  json candidate = {{"content", {{"role", "model"}, {"parts", json::array({{{"text", text}}})}}},
                    {"finishReason", "STOP"},
                    {"index", 0}};
  if (!grounding.is_null())
    candidate["groundingMetadata"] = std::move(grounding);
  return {{"candidates", json::array({std::move(candidate)})},
          {"usageMetadata", std::move(usage)},
          {"modelVersion", model_version},
          {"responseId", response_id}};
}

} // namespace gemstream::backend
