#include "mp4_edit.h"

#include "gemstream/error.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
}

#include <algorithm>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace gemstream::mp4 {
namespace {

using Bytes = std::vector<std::uint8_t>;

std::uint32_t be32(const Bytes &b, std::size_t at) {
  return std::uint32_t(b[at]) << 24 | std::uint32_t(b[at + 1]) << 16 |
         std::uint32_t(b[at + 2]) << 8 | b[at + 3];
}
std::uint64_t be64(const Bytes &b, std::size_t at) {
  return std::uint64_t(be32(b, at)) << 32 | be32(b, at + 4);
}
void put32(Bytes &b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    b[at + i] = std::uint8_t(v >> (24 - 8 * i));
}
void put64(Bytes &b, std::size_t at, std::uint64_t v) {
  put32(b, at, std::uint32_t(v >> 32));
  put32(b, at + 4, std::uint32_t(v));
}

// A box of an ISO BMFF file: [begin, end) in the buffer, its payload from body.
struct Box {
  std::size_t begin = 0, body = 0, end = 0;
  std::string type;
};

// The boxes in [begin, end); stops at the first malformed size.
std::vector<Box> children(const Bytes &b, std::size_t begin, std::size_t end) {
  std::vector<Box> out;
  std::size_t pos = begin;
  while (pos + 8 <= end) {
    std::uint64_t size = be32(b, pos);
    std::size_t header = 8;
    if (size == 1) {
      if (pos + 16 > end)
        break;
      size = be64(b, pos + 8);
      header = 16;
    } else if (size == 0) {
      size = end - pos;
    }
    if (size < header || size > end - pos)
      break;
    out.push_back({pos, pos + header, pos + std::size_t(size),
                   std::string(reinterpret_cast<const char *>(&b[pos + 4]), 4)});
    pos += std::size_t(size);
  }
  return out;
}

std::optional<Box> child(const Bytes &b, const Box &parent, const char *type,
                         std::size_t skip = 0) {
  for (const Box &c : children(b, parent.body + skip, parent.end))
    if (c.type == type)
      return c;
  return std::nullopt;
}

// A full box's field at `v0` (version 0, 32 bits) or `v1` (version 1, 64 bits) from its body.
struct Field {
  std::size_t at;
  bool wide;
};
Field field(const Bytes &b, const Box &box, std::size_t v0, std::size_t v1) {
  const bool wide = b[box.body] == 1;
  return {box.body + (wide ? v1 : v0), wide};
}
bool fits(const Box &box, const Field &f) {
  return f.at + (f.wide ? 8 : 4) <= box.end;
}
std::uint64_t get(const Bytes &b, const Field &f) {
  return f.wide ? be64(b, f.at) : be32(b, f.at);
}
void set(Bytes &b, const Field &f, std::uint64_t v) {
  if (f.wide)
    put64(b, f.at, v);
  else
    put32(b, f.at, std::uint32_t(v));
}

struct Track {
  Box box;
  std::optional<Box> tkhd, elst;
  bool sound = false;
  std::uint32_t media_timescale = 0;
  std::uint32_t sample_rate = 0; // from the sound sample entry; 0 if unknown
};

Track read_track(const Bytes &b, const Box &trak) {
  Track t;
  t.box = trak;
  t.tkhd = child(b, trak, "tkhd");
  if (auto edts = child(b, trak, "edts"))
    t.elst = child(b, *edts, "elst");
  auto mdia = child(b, trak, "mdia");
  if (!mdia)
    return t;
  if (auto hdlr = child(b, *mdia, "hdlr"); hdlr && hdlr->body + 12 <= hdlr->end)
    t.sound = std::string(reinterpret_cast<const char *>(&b[hdlr->body + 8]), 4) == "soun";
  if (auto mdhd = child(b, *mdia, "mdhd")) {
    const Field ts = field(b, *mdhd, 12, 20);
    if (ts.at + 4 <= mdhd->end)
      t.media_timescale = be32(b, ts.at);
  }
  // minf/stbl/stsd: the first sample entry's rate (16.16) is at byte 32 of the entry.
  if (auto minf = child(b, *mdia, "minf"))
    if (auto stbl = child(b, *minf, "stbl"))
      if (auto stsd = child(b, *stbl, "stsd"); stsd && stsd->body + 8 <= stsd->end)
        for (const Box &entry : children(b, stsd->body + 8, stsd->end)) {
          if (entry.begin + 36 <= entry.end)
            t.sample_rate = be32(b, entry.begin + 32) >> 16;
          break;
        }
  return t;
}

} // namespace

std::uint32_t aac_encoder_delay(int sample_rate, int channels) {
  const AVCodec *codec = avcodec_find_encoder_by_name("aac");
  if (!codec)
    return 0;
  AVCodecContext *ctx = avcodec_alloc_context3(codec);
  if (!ctx)
    return 0;
  ctx->sample_rate = sample_rate;
  av_channel_layout_default(&ctx->ch_layout, channels);
  ctx->sample_fmt = AV_SAMPLE_FMT_FLTP;
  ctx->bit_rate = 128000;
  // Closed without encoding anything, it logs "Qavg: nan" at the info level: two levels down.
  ctx->log_level_offset = AV_LOG_DEBUG - AV_LOG_INFO;
  std::uint32_t delay = 0;
  if (avcodec_open2(ctx, codec, nullptr) == 0 && ctx->initial_padding > 0)
    delay = static_cast<std::uint32_t>(ctx->initial_padding);
  avcodec_free_context(&ctx);
  return delay;
}

bool skip_audio_priming(const std::filesystem::path &path, std::uint32_t priming) {
  if (priming == 0)
    return false;
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  if (!file)
    throw Error(ErrorKind::Io, "cannot open " + path.string() + " to edit its index");
  file.seekg(0, std::ios::end);
  const std::uint64_t file_size = static_cast<std::uint64_t>(file.tellg());

  // Find moov among the top-level boxes, reading only their headers.
  std::uint64_t pos = 0, moov_at = 0, moov_size = 0;
  while (pos + 8 <= file_size) {
    Bytes head(16, 0);
    file.seekg(static_cast<std::streamoff>(pos));
    file.read(reinterpret_cast<char *>(head.data()),
              static_cast<std::streamsize>(std::min<std::uint64_t>(16, file_size - pos)));
    std::uint64_t size = be32(head, 0);
    if (size == 1)
      size = be64(head, 8);
    else if (size == 0)
      size = file_size - pos;
    if (size < 8 || size > file_size - pos)
      return false;
    if (std::string(reinterpret_cast<const char *>(&head[4]), 4) == "moov") {
      moov_at = pos;
      moov_size = size;
      break;
    }
    pos += size;
  }
  if (moov_size == 0 || moov_size > (64u << 20))
    return false;
  Bytes b(static_cast<std::size_t>(moov_size));
  file.seekg(static_cast<std::streamoff>(moov_at));
  file.read(reinterpret_cast<char *>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!file)
    throw Error(ErrorKind::Io, "cannot read the index of " + path.string());

  const std::vector<Box> top = children(b, 0, b.size());
  if (top.empty() || top[0].type != "moov")
    return false;
  const Box &moov = top[0];
  const auto mvhd = child(b, moov, "mvhd");
  if (!mvhd)
    return false;
  const Field movie_scale = field(b, *mvhd, 12, 20);
  const Field movie_duration = field(b, *mvhd, 16, 24);
  if (!fits(*mvhd, movie_duration))
    return false;
  const std::uint32_t movie_timescale = be32(b, movie_scale.at);

  std::vector<Track> tracks;
  for (const Box &c : children(b, moov.body, moov.end))
    if (c.type == "trak")
      tracks.push_back(read_track(b, c));

  bool changed = false;
  for (Track &t : tracks) {
    if (!t.sound || !t.elst || !t.tkhd || changed || movie_timescale == 0 || t.media_timescale == 0)
      continue;
    const std::uint32_t rate = t.sample_rate ? t.sample_rate : t.media_timescale;
    const Box &elst = *t.elst;
    const bool wide = b[elst.body] == 1;
    const std::size_t entry_size = wide ? 20 : 12;
    if (elst.body + 8 > elst.end)
      continue;
    const std::uint32_t entries = be32(b, elst.body + 4);
    if (elst.body + 8 + std::uint64_t(entries) * entry_size > elst.end)
      continue;
    const std::uint64_t media_skip = (std::uint64_t(priming) * t.media_timescale + rate / 2) / rate;
    const std::uint64_t movie_skip = (std::uint64_t(priming) * movie_timescale + rate / 2) / rate;
    std::uint64_t total = 0;
    bool edited = false;
    for (std::uint32_t i = 0; i < entries; ++i) {
      const std::size_t at = elst.body + 8 + i * entry_size;
      const Field segment{at, wide};
      const Field media_time{at + (wide ? 8 : 4), wide};
      std::uint64_t duration = get(b, segment);
      const std::int64_t start =
          wide ? std::int64_t(get(b, media_time)) : std::int64_t(std::int32_t(get(b, media_time)));
      // The first edit that plays media (-1 is an empty edit, a delay).
      if (!edited && start >= 0 && duration > movie_skip) {
        set(b, media_time, std::uint64_t(start) + media_skip);
        duration -= movie_skip;
        set(b, segment, duration);
        edited = true;
      }
      total += duration;
    }
    if (!edited)
      continue;
    const Field track_duration = field(b, *t.tkhd, 20, 28);
    if (fits(*t.tkhd, track_duration))
      set(b, track_duration, total);
    changed = true;
  }
  if (!changed)
    return false;

  std::uint64_t longest = 0;
  for (const Track &t : tracks)
    if (t.tkhd) {
      const Field d = field(b, *t.tkhd, 20, 28);
      if (fits(*t.tkhd, d))
        longest = std::max(longest, get(b, d));
    }
  set(b, movie_duration, longest);

  file.seekp(static_cast<std::streamoff>(moov_at));
  file.write(reinterpret_cast<const char *>(b.data()), static_cast<std::streamsize>(b.size()));
  file.flush();
  if (!file)
    throw Error(ErrorKind::Io, "cannot write the index of " + path.string());
  return true;
}

} // namespace gemstream::mp4
