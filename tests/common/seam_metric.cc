#include "common/seam_metric.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>

namespace gemstream::test {
namespace {

struct Fmt {
  AVFormatContext *p = nullptr;
  ~Fmt() { avformat_close_input(&p); }
};
struct Codec {
  AVCodecContext *p = nullptr;
  ~Codec() { avcodec_free_context(&p); }
};

std::unique_ptr<Codec> open_decoder(AVStream *st) {
  const AVCodec *dec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!dec)
    throw std::runtime_error("no decoder for stream");
  auto c = std::make_unique<Codec>();
  c->p = avcodec_alloc_context3(dec);
  avcodec_parameters_to_context(c->p, st->codecpar);
  c->p->thread_count = 2;
  if (avcodec_open2(c->p, dec, nullptr) < 0)
    throw std::runtime_error("cannot open decoder");
  return c;
}

struct Resources {
  AVFrame *frame = nullptr;
  AVPacket *pkt = nullptr;
  SwrContext *swr = nullptr;
  SwsContext *sws = nullptr;
  Resources() = default;
  Resources(const Resources &) = delete;
  Resources &operator=(const Resources &) = delete;
  ~Resources() {
    av_packet_free(&pkt);
    av_frame_free(&frame);
    swr_free(&swr);
    sws_freeContext(sws);
  }
};

double mad(const std::vector<uint8_t> &a, const std::vector<uint8_t> &b) {
  uint64_t sum = 0;
  for (size_t i = 0; i < a.size(); ++i)
    sum += static_cast<uint64_t>(std::abs(int(a[i]) - int(b[i])));
  return a.empty() ? 0 : double(sum) / a.size();
}

} // namespace

SeamReport measure_seam(const std::string &path) {
  Fmt fmt;
  if (avformat_open_input(&fmt.p, path.c_str(), nullptr, nullptr) < 0 ||
      avformat_find_stream_info(fmt.p, nullptr) < 0)
    throw std::runtime_error("cannot open " + path);
  int vi = av_find_best_stream(fmt.p, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  int ai = av_find_best_stream(fmt.p, AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0);
  if (vi < 0)
    throw std::runtime_error(path + " has no video");
  auto vdec = open_decoder(fmt.p->streams[vi]);
  std::unique_ptr<Codec> adec;
  if (ai >= 0)
    adec = open_decoder(fmt.p->streams[ai]);

  SeamReport r;
  r.has_audio = adec != nullptr;
  std::vector<uint8_t> first, prev, cur;
  std::vector<std::vector<float>> audio;  // per channel, planar float
  // Freed on every path, the decode loop's exceptions included.
  Resources res;
  AVFrame *frame = res.frame = av_frame_alloc();
  AVPacket *pkt = res.pkt = av_packet_alloc();

  // Luma as 8 bits whatever the decoded format (4:2:0, 4:4:4, 10-bit, RGB...).
  SwsContext *&sws = res.sws;
  auto take_video = [&](AVFrame *f) {
    r.width = f->width;
    r.height = f->height;
    cur.resize(size_t(f->width) * f->height);
    sws = sws_getCachedContext(sws, f->width, f->height, AVPixelFormat(f->format), f->width,
                               f->height, AV_PIX_FMT_GRAY8, SWS_POINT, nullptr, nullptr, nullptr);
    if (!sws)
      throw std::runtime_error("cannot convert the decoded frames to luma");
    uint8_t *dst[4] = {cur.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {f->width, 0, 0, 0};
    sws_scale(sws, f->data, f->linesize, 0, f->height, dst, dst_stride);
    if (r.frames == 0)
      first = cur;
    else
      r.steps.push_back(mad(prev, cur));
    std::swap(prev, cur);
    r.frames++;
  };
  SwrContext *&swr = res.swr;
  auto take_audio = [&](AVFrame *f) {
    const int ch = f->ch_layout.nb_channels;
    if (!swr) {
      swr_alloc_set_opts2(&swr, &f->ch_layout, AV_SAMPLE_FMT_FLTP, f->sample_rate, &f->ch_layout,
                          AVSampleFormat(f->format), f->sample_rate, 0, nullptr);
      swr_init(swr);
      audio.resize(ch);
    }
    std::vector<std::vector<float>> out(ch, std::vector<float>(f->nb_samples + 256));
    std::vector<uint8_t *> ptrs(ch);
    for (int c = 0; c < ch; ++c)
      ptrs[c] = reinterpret_cast<uint8_t *>(out[c].data());
    int n = swr_convert(swr, ptrs.data(), f->nb_samples + 256,
                        const_cast<const uint8_t **>(f->extended_data), f->nb_samples);
    for (int c = 0; c < ch && n > 0; ++c)
      audio[c].insert(audio[c].end(), out[c].begin(), out[c].begin() + n);
  };
  auto drain = [&](AVCodecContext *c, bool video) {
    while (avcodec_receive_frame(c, frame) == 0) {
      video ? take_video(frame) : take_audio(frame);
      av_frame_unref(frame);
    }
  };
  while (av_read_frame(fmt.p, pkt) >= 0) {
    if (pkt->stream_index == vi) {
      avcodec_send_packet(vdec->p, pkt);
      drain(vdec->p, true);
    } else if (adec && pkt->stream_index == ai) {
      avcodec_send_packet(adec->p, pkt);
      drain(adec->p, false);
    }
    av_packet_unref(pkt);
  }
  avcodec_send_packet(vdec->p, nullptr);
  drain(vdec->p, true);
  if (adec) {
    avcodec_send_packet(adec->p, nullptr);
    drain(adec->p, false);
  }

  if (r.frames < 2)
    throw std::runtime_error(path + " has fewer than two frames");
  r.seam_mad = mad(prev, first);
  std::vector<double> sorted = r.steps;
  std::sort(sorted.begin(), sorted.end());
  r.median_step_mad = sorted[sorted.size() / 2];
  r.max_step_mad = sorted.back();
  AVStream *vs = fmt.p->streams[vi];
  r.duration_s = fmt.p->duration > 0 ? fmt.p->duration / double(AV_TIME_BASE)
                                     : r.frames * av_q2d(av_inv_q(vs->avg_frame_rate));

  if (!audio.empty() && audio[0].size() > 2) {
    std::vector<double> steps;
    double seam = 0;
    for (const auto &chan : audio) {
      for (size_t i = 1; i < chan.size(); ++i)
        steps.push_back(std::fabs(chan[i] - chan[i - 1]));
      seam += std::fabs(chan.front() - chan.back());
    }
    std::sort(steps.begin(), steps.end());
    r.audio_seam_step = seam / audio.size();
    r.audio_p99_step = steps[steps.size() * 99 / 100];
  }
  return r;
}

RgbFrame first_frame_rgb(const std::string &path) {
  Fmt fmt;
  if (avformat_open_input(&fmt.p, path.c_str(), nullptr, nullptr) < 0 ||
      avformat_find_stream_info(fmt.p, nullptr) < 0)
    throw std::runtime_error("cannot open " + path);
  const int vi = av_find_best_stream(fmt.p, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (vi < 0)
    throw std::runtime_error(path + " has no video");
  auto dec = open_decoder(fmt.p->streams[vi]);
  Resources res;
  res.frame = av_frame_alloc();
  res.pkt = av_packet_alloc();
  bool got = false;
  auto receive = [&] { got = avcodec_receive_frame(dec->p, res.frame) == 0; };
  while (!got && av_read_frame(fmt.p, res.pkt) >= 0) {
    if (res.pkt->stream_index == vi) {
      avcodec_send_packet(dec->p, res.pkt);
      receive();
    }
    av_packet_unref(res.pkt);
  }
  if (!got) {
    avcodec_send_packet(dec->p, nullptr);
    receive();
  }
  if (!got)
    throw std::runtime_error(path + " has no decodable frame");
  const AVFrame *f = res.frame;
  RgbFrame out;
  out.width = f->width;
  out.height = f->height;
  out.rgb.resize(size_t(f->width) * f->height * 3);
  // The deprecated yuvj formats mean full range whatever color_range says.
  const auto fmt_in = AVPixelFormat(f->format);
  const bool full = f->color_range == AVCOL_RANGE_JPEG || fmt_in == AV_PIX_FMT_YUVJ420P ||
                    fmt_in == AV_PIX_FMT_YUVJ422P || fmt_in == AV_PIX_FMT_YUVJ444P;
  const int matrix = f->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : int(f->colorspace);
  res.sws = sws_getContext(f->width, f->height, fmt_in, f->width, f->height, AV_PIX_FMT_RGB24,
                           SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr,
                           nullptr);
  if (!res.sws)
    throw std::runtime_error("cannot convert " + path + " to RGB");
  sws_setColorspaceDetails(res.sws, sws_getCoefficients(matrix), full ? 1 : 0,
                           sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
  uint8_t *dst[4] = {out.rgb.data(), nullptr, nullptr, nullptr};
  int dst_stride[4] = {f->width * 3, 0, 0, 0};
  sws_scale(res.sws, f->data, f->linesize, 0, f->height, dst, dst_stride);
  return out;
}

double rgb_mad(const RgbFrame &a, const RgbFrame &b) {
  if (a.width != b.width || a.height != b.height)
    throw std::runtime_error("frames of different sizes");
  return mad(a.rgb, b.rgb);
}

} // namespace gemstream::test
