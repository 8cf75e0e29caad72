// The local backend's media synthesis, checked by decoding what it produces with libavcodec /
// libavformat: real PNGs and MP4s whose content follows the prompt.
#include "media.h"

#include <gtest/gtest.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <unistd.h>

namespace {

using gemstream::backend::image_size_for;
using gemstream::backend::ImageSpec;
using gemstream::backend::render_mp4;
using gemstream::backend::render_png;
using gemstream::backend::VideoSpec;

struct AvDeleter {
  void operator()(AVCodecContext *p) const { avcodec_free_context(&p); }
  void operator()(AVFrame *p) const { av_frame_free(&p); }
  void operator()(AVPacket *p) const { av_packet_free(&p); }
  void operator()(SwsContext *p) const { sws_freeContext(p); }
  void operator()(AVFormatContext *p) const { avformat_close_input(&p); }
};
template <typename T> using AvPtr = std::unique_ptr<T, AvDeleter>;

std::string cover_prompt(const std::string &motif, const std::string &extra) {
  return "Create a simple centered silhouette cover image for: \"" + motif + "\". " + extra;
}

// ---- images ------------------------------------------------------------------------------

struct Rgb {
  int r, g, b;
};
double distance(Rgb a, Rgb b) {
  return std::sqrt(double((a.r - b.r) * (a.r - b.r) + (a.g - b.g) * (a.g - b.g) + (a.b - b.b) * (a.b - b.b)));
}
double luminance(Rgb c) { return (0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b) / 255.0; }
bool operator<(Rgb a, Rgb b) { return std::tie(a.r, a.g, a.b) < std::tie(b.r, b.g, b.b); }

struct Image {
  int width = 0;
  int height = 0;
  AVPixelFormat decoded_format = AV_PIX_FMT_NONE;
  std::vector<std::uint8_t> rgb; // packed RGB24

  Rgb at(int x, int y) const {
    const auto *p = &rgb[(static_cast<std::size_t>(y) * width + x) * 3];
    return {p[0], p[1], p[2]};
  }
};

// Converts any decoded frame to packed RGB24, honouring its colour matrix and range.
Image to_rgb(const AVFrame &frame, int out_w, int out_h, int crop_x = 0, int crop_y = 0, int crop_w = 0,
             int crop_h = 0) {
  if (crop_w == 0) {
    crop_w = frame.width;
    crop_h = frame.height;
  }
  auto format = static_cast<AVPixelFormat>(frame.format);
  bool full_range = frame.color_range == AVCOL_RANGE_JPEG;
  if (format == AV_PIX_FMT_YUVJ420P) {
    format = AV_PIX_FMT_YUV420P;
    full_range = true;
  }
  AvPtr<SwsContext> sws(sws_getContext(crop_w, crop_h, format, out_w, out_h, AV_PIX_FMT_RGB24,
                                       SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
  if (!sws)
    throw std::runtime_error("no swscale conversion");
  const int *coefficients =
      sws_getCoefficients(frame.colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_DEFAULT);
  sws_setColorspaceDetails(sws.get(), coefficients, full_range ? 1 : 0, coefficients, 1, 0, 1 << 16, 1 << 16);
  const std::uint8_t *src[4] = {};
  int src_stride[4] = {};
  const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(format);
  for (int plane = 0; plane < 4 && frame.data[plane]; ++plane) {
    const bool chroma = plane == 1 || plane == 2;
    const int x = chroma ? crop_x >> desc->log2_chroma_w : crop_x;
    const int y = chroma ? crop_y >> desc->log2_chroma_h : crop_y;
    const int bytes_per_pixel = (desc->flags & AV_PIX_FMT_FLAG_PLANAR) ? 1 : av_get_bits_per_pixel(desc) / 8;
    src[plane] =
        frame.data[plane] + static_cast<std::ptrdiff_t>(y) * frame.linesize[plane] + x * bytes_per_pixel;
    src_stride[plane] = frame.linesize[plane];
  }
  Image image;
  image.width = out_w;
  image.height = out_h;
  image.decoded_format = static_cast<AVPixelFormat>(frame.format);
  image.rgb.resize(static_cast<std::size_t>(out_w) * out_h * 3);
  std::uint8_t *dst[4] = {image.rgb.data()};
  const int dst_stride[4] = {out_w * 3};
  sws_scale(sws.get(), src, src_stride, 0, crop_h, dst, dst_stride);
  return image;
}

AvPtr<AVFrame> decode_still(const std::string &bytes, AVCodecID id) {
  const AVCodec *codec = avcodec_find_decoder(id);
  AvPtr<AVCodecContext> dec(avcodec_alloc_context3(codec));
  if (avcodec_open2(dec.get(), codec, nullptr) < 0)
    throw std::runtime_error("open decoder");
  AvPtr<AVPacket> packet(av_packet_alloc());
  av_new_packet(packet.get(), static_cast<int>(bytes.size()));
  std::memcpy(packet->data, bytes.data(), bytes.size());
  AvPtr<AVFrame> frame(av_frame_alloc());
  if (avcodec_send_packet(dec.get(), packet.get()) < 0 || avcodec_send_packet(dec.get(), nullptr) < 0 ||
      avcodec_receive_frame(dec.get(), frame.get()) < 0)
    throw std::runtime_error("image does not decode");
  return frame;
}

Image decode_png(const std::string &png) {
  const auto frame = decode_still(png, AV_CODEC_ID_PNG);
  return to_rgb(*frame, frame->width, frame->height);
}

std::string encode_jpeg(const Image &image) {
  const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
  AvPtr<AVCodecContext> enc(avcodec_alloc_context3(codec));
  enc->width = image.width;
  enc->height = image.height;
  enc->pix_fmt = AV_PIX_FMT_YUVJ420P;
  enc->color_range = AVCOL_RANGE_JPEG;
  enc->time_base = {1, 1};
  enc->flags |= AV_CODEC_FLAG_QSCALE;
  enc->global_quality = 2 * FF_QP2LAMBDA;
  if (avcodec_open2(enc.get(), codec, nullptr) < 0)
    throw std::runtime_error("open JPEG encoder");
  AvPtr<AVFrame> frame(av_frame_alloc());
  frame->format = AV_PIX_FMT_YUVJ420P;
  frame->width = image.width;
  frame->height = image.height;
  frame->quality = enc->global_quality;
  av_frame_get_buffer(frame.get(), 0);
  // Same layout as YUVJ420P; naming the plain format avoids swscale's deprecation warning.
  AvPtr<SwsContext> sws(sws_getContext(image.width, image.height, AV_PIX_FMT_RGB24, image.width, image.height,
                                       AV_PIX_FMT_YUV420P, SWS_BICUBIC, nullptr, nullptr, nullptr));
  const int *bt601 = sws_getCoefficients(SWS_CS_DEFAULT);
  sws_setColorspaceDetails(sws.get(), bt601, 1, bt601, 1, 0, 1 << 16, 1 << 16);
  const std::uint8_t *src[4] = {image.rgb.data()};
  const int src_stride[4] = {image.width * 3};
  sws_scale(sws.get(), src, src_stride, 0, image.height, frame->data, frame->linesize);
  AvPtr<AVPacket> packet(av_packet_alloc());
  if (avcodec_send_frame(enc.get(), frame.get()) < 0 || avcodec_receive_packet(enc.get(), packet.get()) < 0)
    throw std::runtime_error("JPEG encode");
  return {reinterpret_cast<const char *>(packet->data), static_cast<std::size_t>(packet->size)};
}

double mean_abs_diff(const Image &a, const Image &b) {
  EXPECT_EQ(a.rgb.size(), b.rgb.size());
  double sum = 0;
  for (std::size_t i = 0; i < std::min(a.rgb.size(), b.rgb.size()); ++i)
    sum += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
  return sum / static_cast<double>(a.rgb.size());
}

double mean_luminance(const Image &image) {
  double sum = 0;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      sum += luminance(image.at(x, y));
  return sum / (double(image.width) * image.height);
}

// Pixels within `margin` of the border.
std::vector<Rgb> border(const Image &image, int margin) {
  std::vector<Rgb> out;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      if (x < margin || y < margin || x >= image.width - margin || y >= image.height - margin)
        out.push_back(image.at(x, y));
  return out;
}

// The motif silhouette: pixels closer to the centre pixel's colour than to the corner's.
struct Mask {
  int width, height;
  std::vector<bool> on;
  int count(int x0, int y0, int x1, int y1) const {
    int n = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x)
        n += on[static_cast<std::size_t>(y) * width + x] ? 1 : 0;
    return n;
  }
  bool at(int x, int y) const { return on[static_cast<std::size_t>(y) * width + x]; }
  double area() const { return double(count(0, 0, width, height)) / (double(width) * height); }
};
Mask motif_mask(const Image &image) {
  const Rgb motif = image.at(image.width / 2, image.height / 2);
  const Rgb background = image.at(2, 2);
  Mask mask{image.width, image.height, std::vector<bool>(image.rgb.size() / 3)};
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      mask.on[static_cast<std::size_t>(y) * image.width + x] =
          distance(image.at(x, y), motif) < distance(image.at(x, y), background);
  return mask;
}

// ---- MP4 ---------------------------------------------------------------------------------

class TempFile {
public:
  TempFile(const std::string &name, const std::string &bytes)
      : path_(std::filesystem::temp_directory_path() /
              ("gemstream-test-media-" + std::to_string(::getpid()) + "-" + name)) {
    std::ofstream(path_, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  TempFile(const TempFile &) = delete;
  TempFile &operator=(const TempFile &) = delete;
  std::string path() const { return path_.string(); }

private:
  std::filesystem::path path_;
};

AvPtr<AVFormatContext> open_media(const std::string &path) {
  AVFormatContext *raw = nullptr;
  if (avformat_open_input(&raw, path.c_str(), nullptr, nullptr) < 0)
    throw std::runtime_error("libavformat cannot open " + path);
  AvPtr<AVFormatContext> fmt(raw);
  if (avformat_find_stream_info(fmt.get(), nullptr) < 0)
    throw std::runtime_error("no stream info in " + path);
  return fmt;
}

const AVStream *stream_of(const AVFormatContext &fmt, AVMediaType type) {
  for (unsigned i = 0; i < fmt.nb_streams; ++i)
    if (fmt.streams[i]->codecpar->codec_type == type)
      return fmt.streams[i];
  return nullptr;
}

double seconds(int64_t ts, AVRational tb) { return static_cast<double>(ts) * av_q2d(tb); }

struct Decoded {
  int video_packets = 0;
  int audio_packets = 0;
  std::vector<Image> frames; // the first max_frames video frames as RGB
  double audio_rms = 0;
  double audio_peak = 0;
};

// Reads every packet; decodes up to max_frames video frames and all audio.
Decoded read_mp4(const std::string &path, int max_frames) {
  auto fmt = open_media(path);
  const AVStream *video = stream_of(*fmt, AVMEDIA_TYPE_VIDEO);
  const AVStream *audio = stream_of(*fmt, AVMEDIA_TYPE_AUDIO);
  const auto open_decoder = [](const AVStream *st) {
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    AvPtr<AVCodecContext> dec(avcodec_alloc_context3(codec));
    avcodec_parameters_to_context(dec.get(), st->codecpar);
    dec->thread_count = 1;
    if (avcodec_open2(dec.get(), codec, nullptr) < 0)
      throw std::runtime_error("open decoder");
    return dec;
  };
  auto vdec = open_decoder(video);
  auto adec = open_decoder(audio);

  Decoded out;
  double sum_squares = 0;
  int64_t samples = 0;
  AvPtr<AVFrame> frame(av_frame_alloc());
  const auto drain = [&](AVCodecContext *dec, bool is_video) {
    while (avcodec_receive_frame(dec, frame.get()) >= 0) {
      if (is_video) {
        if (static_cast<int>(out.frames.size()) < max_frames)
          out.frames.push_back(to_rgb(*frame, frame->width, frame->height));
      } else {
        for (int ch = 0; ch < frame->ch_layout.nb_channels; ++ch) {
          const auto *s = reinterpret_cast<const float *>(frame->extended_data[ch]);
          for (int i = 0; i < frame->nb_samples; ++i) {
            sum_squares += double(s[i]) * s[i];
            out.audio_peak = std::max(out.audio_peak, double(std::fabs(s[i])));
          }
          samples += frame->nb_samples;
        }
      }
    }
  };
  AvPtr<AVPacket> packet(av_packet_alloc());
  while (av_read_frame(fmt.get(), packet.get()) >= 0) {
    const bool is_video = packet->stream_index == video->index;
    (is_video ? out.video_packets : out.audio_packets)++;
    AVCodecContext *dec = is_video ? vdec.get() : adec.get();
    if (is_video && static_cast<int>(out.frames.size()) >= max_frames) {
      av_packet_unref(packet.get());
      continue;
    }
    avcodec_send_packet(dec, packet.get());
    av_packet_unref(packet.get());
    drain(dec, is_video);
  }
  avcodec_send_packet(vdec.get(), nullptr);
  drain(vdec.get(), true);
  avcodec_send_packet(adec.get(), nullptr);
  drain(adec.get(), false);
  out.audio_rms = samples ? std::sqrt(sum_squares / double(samples)) : 0;
  return out;
}

// Top-level ISO BMFF box types in file order.
std::vector<std::string> top_level_boxes(const std::string &mp4) {
  std::vector<std::string> boxes;
  std::size_t pos = 0;
  while (pos + 8 <= mp4.size()) {
    const auto *p = reinterpret_cast<const unsigned char *>(mp4.data() + pos);
    uint64_t size = (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | p[3];
    if (size == 1 && pos + 16 <= mp4.size()) {
      size = 0;
      for (int i = 8; i < 16; ++i)
        size = (size << 8) | p[i];
    }
    boxes.emplace_back(mp4.data() + pos + 4, 4);
    if (size < 8)
      break;
    pos += size;
  }
  return boxes;
}

double mean_frame_to_frame_diff(const std::vector<Image> &frames) {
  double sum = 0;
  for (std::size_t i = 1; i < frames.size(); ++i)
    sum += mean_abs_diff(frames[i - 1], frames[i]);
  return sum / double(frames.size() - 1);
}

// ---- PNG ---------------------------------------------------------------------------------

TEST(RenderPng, DecodesAsRgbOfTheRequestedSize) {
  for (const auto &[w, h] : {std::pair{1024, 1024}, std::pair{1344, 768}, std::pair{768, 1408}}) {
    const auto png = render_png({w, h, cover_prompt("meditation practice", "Palette: teal and gold.")});
    ASSERT_TRUE(png.starts_with("\x89PNG\r\n\x1a\n"));
    const Image image = decode_png(png);
    EXPECT_EQ(image.width, w);
    EXPECT_EQ(image.height, h);
    EXPECT_EQ(image.decoded_format, AV_PIX_FMT_RGB24) << av_get_pix_fmt_name(image.decoded_format);
  }
}

TEST(RenderPng, SameSpecSameBytesAndPromptChangesThem) {
  const ImageSpec spec{512, 512, cover_prompt("morning run", "")};
  const auto first = render_png(spec);
  EXPECT_EQ(first, render_png(spec));
  EXPECT_NE(first, render_png({512, 512, cover_prompt("evening run", "")}));
  EXPECT_NE(first, render_png({512, 512, cover_prompt("morning run", "Palette: coral.")}));
}

TEST(RenderPng, FollowsTheNamedPalette) {
  const Rgb teal{0, 128, 128}, gold{255, 215, 0};
  const Image image = decode_png(
      render_png({1024, 1024, cover_prompt("meditation practice", "Palette: teal and gold. No text.")}));

  EXPECT_LT(distance(image.at(512, 512), gold), 12) << "the motif at the centre is gold";
  for (const auto &[x, y] : {std::pair{3, 3}, std::pair{1020, 3}, std::pair{3, 1020}, std::pair{1020, 1020}})
    EXPECT_LT(distance(image.at(x, y), teal), 40) << "background at " << x << "," << y << " is teal";

  int near_teal = 0, near_gold = 0;
  const int total = image.width * image.height;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x) {
      const Rgb c = image.at(x, y);
      near_teal += distance(c, teal) < 45;
      near_gold += distance(c, gold) < 45;
    }
  EXPECT_GT(near_teal, total / 2);
  EXPECT_GT(near_gold, total / 10);
  EXPECT_GT(near_teal + near_gold, total * 97 / 100) << "nothing but teal, gold and their edges";
}

TEST(RenderPng, MotifStandsOutAgainstItsBackground) {
  const std::vector<std::string> prompts{
      cover_prompt("meditation practice", "Palette: white and silver."), // too close: adjusted
      cover_prompt("deep work", "Palette: black."),
      cover_prompt("deep work", "Palette: yellow."),
      cover_prompt("quarterly planning", ""),
      cover_prompt("bedtime story", "Style: cosmic, starry night sky."),
      cover_prompt("forest walk", "Style: nature, organic shapes."),
      cover_prompt("product launch", "Style: abstract geometric."),
  };
  for (const auto &prompt : prompts) {
    const Image image = decode_png(render_png({256, 256, prompt}));
    const double contrast = std::fabs(luminance(image.at(128, 128)) - luminance(image.at(2, 2)));
    EXPECT_GE(contrast, 0.25) << prompt;
    const double area = motif_mask(image).area();
    EXPECT_GT(area, 0.05) << prompt;
    EXPECT_LT(area, 0.5) << prompt;
  }
}

TEST(RenderPng, MotifShapeFollowsItsKeywords) {
  const auto mask_for = [](const std::string &motif) {
    return motif_mask(decode_png(render_png({400, 400, cover_prompt(motif, "Palette: navy and white.")})));
  };
  const Mask mountain = mask_for("mountain hike");
  EXPECT_GT(mountain.count(0, 200, 400, 400), 2 * mountain.count(0, 0, 400, 200)) << "a peak is bottom-heavy";

  const Mask moon = mask_for("moon and sleep");
  EXPECT_GT(moon.count(0, 0, 200, 400), moon.count(200, 0, 400, 400));
  EXPECT_FALSE(moon.at(260, 200)) << "a bite out of the right of the disc";
  EXPECT_GT(moon.count(300, 0, 400, 400), 0) << "with horns reaching past it";

  const Mask heart = mask_for("gratitude");
  EXPECT_GT(heart.count(0, 0, 400, 200), heart.count(0, 200, 400, 400)) << "a heart is top-heavy";
  EXPECT_TRUE(heart.at(140, 120) && heart.at(260, 120)) << "two lobes";
  EXPECT_FALSE(heart.at(200, 88)) << "with a notch between them";

  const Mask sun = mask_for("sun");
  const Mask star = mask_for("gold star award");
  EXPECT_GT(sun.area(), star.area() * 1.3);
  EXPECT_TRUE(sun.at(260, 200) && sun.at(90, 200)) << "a disc is whole";

  // The motif in quotes decides the shape, not words elsewhere in the prompt.
  const auto quoted =
      render_png({400, 400, cover_prompt("mountain hike", "Palette: navy and white. Not a moon.")});
  const Mask still_mountain = motif_mask(decode_png(quoted));
  EXPECT_GT(still_mountain.count(0, 200, 400, 400), 2 * still_mountain.count(0, 0, 400, 200));
}

TEST(RenderPng, StyleWordsChangeTheBackground) {
  const auto render = [](const std::string &style) {
    return decode_png(
        render_png({512, 512, cover_prompt("focus", "Style: " + style + ". Palette: teal and white.")}));
  };
  const auto mean_luminance_of = [](const std::vector<Rgb> &pixels) {
    double sum = 0;
    for (const Rgb c : pixels)
      sum += luminance(c);
    return sum / double(pixels.size());
  };
  const auto distinct = [](const std::vector<Rgb> &pixels) {
    return std::set<Rgb>(pixels.begin(), pixels.end()).size();
  };

  const Image minimal = render("minimal, flat");
  EXPECT_EQ(distinct(border(minimal, 40)), 1u) << "a flat background";

  const Image abstract = render("abstract");
  EXPECT_GE(distinct(border(abstract, 40)), 3u) << "geometric bands";

  const Image cosmic = render("cosmic");
  const auto sky = border(cosmic, 40);
  EXPECT_LT(mean_luminance_of(sky), 0.6 * mean_luminance_of(border(minimal, 40))) << "a night sky";
  const auto stars = std::count_if(sky.begin(), sky.end(), [](Rgb c) { return luminance(c) > 0.5; });
  EXPECT_GE(stars, 5) << "a starfield";

  const Image nature = render("nature");
  EXPECT_GT(luminance(nature.at(5, 5)), luminance(nature.at(5, 506)) + 0.03) << "hills darken the foot";
}

TEST(RenderPng, RejectsImpossibleSizes) {
  EXPECT_THROW(render_png({0, 100, "x"}), std::runtime_error);
  EXPECT_THROW(render_png({100, -1, "x"}), std::runtime_error);
  EXPECT_THROW(render_png({100000, 100, "x"}), std::runtime_error);
}

TEST(ImageSizeFor, MatchesTheServicesTables) {
  using Size = std::pair<int, int>;
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "1:1"), Size(1024, 1024));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", ""), Size(1024, 1024));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "2:3"), Size(832, 1248));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "3:2"), Size(1248, 832));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "3:4"), Size(864, 1184));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "4:3"), Size(1184, 864));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "4:5"), Size(896, 1152));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "5:4"), Size(1152, 896));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "9:16"), Size(768, 1344));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "16:9"), Size(1344, 768));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image-preview", "21:9"), Size(1536, 672));
  EXPECT_EQ(image_size_for("gemini-2.5-flash-image", "1:2"), Size(0, 0));

  EXPECT_EQ(image_size_for("imagen-4.0-generate-001", "1:1"), Size(1024, 1024));
  EXPECT_EQ(image_size_for("imagen-4.0-fast-generate-001", ""), Size(1024, 1024));
  EXPECT_EQ(image_size_for("imagen-4.0-generate-001", "3:4"), Size(896, 1280));
  EXPECT_EQ(image_size_for("imagen-4.0-generate-001", "4:3"), Size(1280, 896));
  EXPECT_EQ(image_size_for("imagen-4.0-ultra-generate-001", "9:16"), Size(768, 1408));
  EXPECT_EQ(image_size_for("imagen-4.0-generate-001", "16:9"), Size(1408, 768));
  EXPECT_EQ(image_size_for("imagen-4.0-generate-001", "21:9"), Size(0, 0)) << "Imagen has no 21:9";
  EXPECT_EQ(image_size_for("imagen-4.0-generate-001", "2:3"), Size(0, 0));

  EXPECT_EQ(image_size_for("veo-3.0-generate-001", "16:9"), Size(0, 0));
  EXPECT_EQ(image_size_for("", "1:1"), Size(0, 0));
}

// ---- MP4 ---------------------------------------------------------------------------------

TEST(RenderMp4, EightSecondsOfH264AndAacAt24Fps) {
  VideoSpec spec;
  spec.prompt = "A peaceful beach sunset, slow waves. Calm, serene atmosphere.";
  const std::string mp4 = render_mp4(spec);

  const auto boxes = top_level_boxes(mp4);
  ASSERT_GE(boxes.size(), 3u);
  EXPECT_EQ(boxes.front(), "ftyp");
  const auto mdat = std::find(boxes.begin(), boxes.end(), "mdat");
  const auto moov = std::find(boxes.begin(), boxes.end(), "moov");
  ASSERT_NE(mdat, boxes.end());
  ASSERT_NE(moov, boxes.end());
  EXPECT_GT(moov, mdat) << "moov at the end, as encoders write without faststart";

  TempFile file("basic.mp4", mp4);
  {
    auto fmt = open_media(file.path());
    EXPECT_NEAR(double(fmt->duration) / AV_TIME_BASE, 8.0, 0.05);

    const AVStream *video = stream_of(*fmt, AVMEDIA_TYPE_VIDEO);
    ASSERT_NE(video, nullptr);
    EXPECT_EQ(video->codecpar->codec_id, AV_CODEC_ID_H264);
    EXPECT_EQ(video->codecpar->width, 1280);
    EXPECT_EQ(video->codecpar->height, 720);
    EXPECT_EQ(video->codecpar->format, AV_PIX_FMT_YUV420P);
    EXPECT_TRUE(video->codecpar->profile == FF_PROFILE_H264_HIGH ||
                video->codecpar->profile == FF_PROFILE_H264_MAIN)
        << video->codecpar->profile;
    EXPECT_EQ(av_cmp_q(video->r_frame_rate, AVRational{24, 1}), 0);
    EXPECT_EQ(av_cmp_q(video->avg_frame_rate, AVRational{24, 1}), 0);
    EXPECT_EQ(video->nb_frames, 192);
    EXPECT_NEAR(seconds(video->duration, video->time_base), 8.0, 0.05);

    const AVStream *audio = stream_of(*fmt, AVMEDIA_TYPE_AUDIO);
    ASSERT_NE(audio, nullptr);
    EXPECT_EQ(audio->codecpar->codec_id, AV_CODEC_ID_AAC);
    EXPECT_EQ(audio->codecpar->profile, FF_PROFILE_AAC_LOW);
    EXPECT_EQ(audio->codecpar->sample_rate, 48000);
    EXPECT_EQ(audio->codecpar->ch_layout.nb_channels, 2);
    EXPECT_NEAR(seconds(audio->duration, audio->time_base), 8.0, 0.05);
  }

  const Decoded decoded = read_mp4(file.path(), 1);
  EXPECT_EQ(decoded.video_packets, 192);
  EXPECT_GE(decoded.audio_packets, 375);
  EXPECT_GT(decoded.audio_rms, 0.01) << "audible ambience, not silence";
  EXPECT_LE(decoded.audio_peak, 1.0);
}

TEST(RenderMp4, PortraitFromAJpegStartImage) {
  // A square start image must cover 9:16 without bars: scaled to 1280x1280, centre 720 columns.
  const auto png = render_png({512, 512, cover_prompt("mountain hike", "Palette: navy and coral.")});
  const Image start = decode_png(png);
  VideoSpec spec;
  spec.width = 720;
  spec.height = 1280;
  spec.prompt = "Calm, slow drifting light.";
  spec.start_image = encode_jpeg(start);
  ASSERT_TRUE(spec.start_image.starts_with("\xff\xd8\xff"));
  TempFile file("portrait.mp4", render_mp4(spec));

  {
    auto fmt = open_media(file.path());
    const AVStream *video = stream_of(*fmt, AVMEDIA_TYPE_VIDEO);
    ASSERT_NE(video, nullptr);
    EXPECT_EQ(video->codecpar->width, 720);
    EXPECT_EQ(video->codecpar->height, 1280);
    EXPECT_NEAR(double(fmt->duration) / AV_TIME_BASE, 8.0, 0.05);
  }
  const Decoded decoded = read_mp4(file.path(), 48);
  EXPECT_EQ(decoded.video_packets, 192);
  ASSERT_EQ(decoded.frames.size(), 48u);

  const auto start_frame = decode_still(png, AV_CODEC_ID_PNG);
  const Image expected = to_rgb(*start_frame, 720, 1280, 112, 0, 288, 512);
  EXPECT_LT(mean_abs_diff(decoded.frames.front(), expected), 6.0) << "the first frame is the start image";
  EXPECT_GT(mean_abs_diff(decoded.frames.back(), decoded.frames.front()), 1.0) << "and it then moves";
}

TEST(RenderMp4, FirstFrameIsThePngStartImage) {
  const auto png = render_png({640, 360, cover_prompt("meditation practice", "Palette: teal and gold.")});
  VideoSpec spec;
  spec.seconds = 2;
  spec.prompt = "Energetic, vibrant pulses.";
  spec.start_image = png;
  TempFile file("start.mp4", render_mp4(spec));
  const Decoded decoded = read_mp4(file.path(), 1);
  EXPECT_EQ(decoded.video_packets, 48);
  ASSERT_EQ(decoded.frames.size(), 1u);
  const auto start_frame = decode_still(png, AV_CODEC_ID_PNG);
  EXPECT_LT(mean_abs_diff(decoded.frames.front(), to_rgb(*start_frame, 1280, 720)), 6.0);
}

TEST(RenderMp4, MoodDecidesMotionAndLight) {
  const auto frames_for = [](const std::string &prompt) {
    VideoSpec spec;
    spec.width = 320;
    spec.height = 180;
    spec.seconds = 2;
    spec.prompt = prompt;
    TempFile file("mood.mp4", render_mp4(spec));
    return read_mp4(file.path(), 48).frames;
  };
  const auto calm = frames_for("Ocean at dusk. Calm, serene, gentle drift. teal and gold");
  const auto energetic = frames_for("Ocean at dusk. Energetic, vibrant, dynamic. teal and gold");
  const auto mysterious = frames_for("Ocean at dusk. Mysterious, foggy. teal and gold");
  const auto focused = frames_for("Ocean at dusk. Focused, steady. teal and gold");
  ASSERT_EQ(calm.size(), 48u);
  ASSERT_EQ(energetic.size(), 48u);

  const double calm_motion = mean_frame_to_frame_diff(calm);
  EXPECT_GT(calm_motion, 0.1) << "calm still moves";
  EXPECT_GT(mean_frame_to_frame_diff(energetic), 4 * calm_motion);
  EXPECT_LT(mean_frame_to_frame_diff(focused), calm_motion);
  EXPECT_LT(mean_luminance(mysterious[24]), 0.6 * mean_luminance(calm[24])) << "mysterious is dark";
}

TEST(RenderMp4, SameSpecSameBytes) {
  VideoSpec spec;
  spec.width = 320;
  spec.height = 180;
  spec.seconds = 1;
  spec.prompt = "Focused study session, navy";
  const auto first = render_mp4(spec);
  EXPECT_EQ(first, render_mp4(spec));
  spec.prompt = "Focused study session, coral";
  EXPECT_NE(first, render_mp4(spec));
}

TEST(RenderMp4, RejectsUndecodableStartImages) {
  VideoSpec spec;
  spec.width = 320;
  spec.height = 180;
  spec.seconds = 1;
  spec.start_image = "definitely not an image";
  try {
    render_mp4(spec);
    ADD_FAILURE() << "expected std::runtime_error";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("start_image"), std::string::npos) << e.what();
  }
  const auto png = render_png({64, 64, "x"});
  spec.start_image = png.substr(0, 60); // header intact, pixels missing
  EXPECT_THROW(render_mp4(spec), std::runtime_error);
}

TEST(RenderMp4, RejectsImpossibleSpecs) {
  VideoSpec odd;
  odd.width = 321;
  EXPECT_THROW(render_mp4(odd), std::runtime_error);
  VideoSpec no_time;
  no_time.seconds = 0;
  EXPECT_THROW(render_mp4(no_time), std::runtime_error);
  VideoSpec no_rate;
  no_rate.fps = 0;
  EXPECT_THROW(render_mp4(no_rate), std::runtime_error);
}

} // namespace
