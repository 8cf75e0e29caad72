// Shared by the pipeline suites: temporary directories, file contents, media made and probed
// with GStreamer.
#pragma once

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/pbutils/pbutils.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace gemstream::test {

namespace fs = std::filesystem;

class TempDir {
public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("gemstream-pipe-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path &path() const { return path_; }
  fs::path operator/(const std::string &name) const { return path_ / name; }

private:
  fs::path path_;
};

inline std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const fs::path &p, const std::string &text) {
  std::ofstream(p, std::ios::binary) << text;
}

// Runs a launch line to EOS; returns the error text, empty on success.
inline std::string run_launch(const std::string &line) {
  GError *err = nullptr;
  GstElement *p = gst_parse_launch_full(line.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!p) {
    std::string text = err ? err->message : "parse error";
    g_clear_error(&err);
    return text;
  }
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *m = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                             GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  std::string result;
  if (!m) {
    result = "timeout";
  } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    GError *e = nullptr;
    gst_message_parse_error(m, &e, nullptr);
    result = e->message;
    g_error_free(e);
  }
  if (m)
    gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  return result;
}

// A short test clip: 320x180 at 24 fps, H.264 (+ AAC when `audio`) in MP4.
inline std::string make_clip(const fs::path &out, int frames, bool audio) {
  std::string line = "videotestsrc pattern=ball num-buffers=" + std::to_string(frames) +
                     " ! video/x-raw,width=320,height=180,framerate=24/1 ! videoconvert ! "
                     "x264enc speed-preset=ultrafast ! mp4mux name=m ! filesink location=" +
                     out.string();
  if (audio)
    line +=
        " audiotestsrc wave=sine samplesperbuffer=1000 num-buffers=" + std::to_string(frames * 2) +
        " ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac ! m.";
  return run_launch(line);
}

struct MediaInfo {
  bool ok = false;
  double seconds = 0;
  int width = 0;
  int height = 0;
  bool image = false;
  std::string video_caps;
  std::string audio_caps;
  std::string container_caps;
};

inline MediaInfo probe(const fs::path &file) {
  MediaInfo info;
  GError *err = nullptr;
  GstDiscoverer *disc = gst_discoverer_new(20 * GST_SECOND, &err);
  if (!disc) {
    g_clear_error(&err);
    return info;
  }
  gchar *uri = gst_filename_to_uri(file.c_str(), nullptr);
  GstDiscovererInfo *di = gst_discoverer_discover_uri(disc, uri, &err);
  g_free(uri);
  g_clear_error(&err);
  if (di && gst_discoverer_info_get_result(di) == GST_DISCOVERER_OK) {
    info.ok = true;
    info.seconds = static_cast<double>(gst_discoverer_info_get_duration(di)) / GST_SECOND;
    auto caps_text = [](GstDiscovererStreamInfo *s) {
      GstCaps *caps = gst_discoverer_stream_info_get_caps(s);
      gchar *t = caps ? gst_caps_to_string(caps) : nullptr;
      std::string out = t ? t : "";
      g_free(t);
      if (caps)
        gst_caps_unref(caps);
      return out;
    };
    GstDiscovererStreamInfo *top = gst_discoverer_info_get_stream_info(di);
    if (top) {
      if (GST_IS_DISCOVERER_CONTAINER_INFO(top))
        info.container_caps = caps_text(top);
      gst_discoverer_stream_info_unref(top);
    }
    GList *videos = gst_discoverer_info_get_video_streams(di);
    if (videos) {
      auto *v = GST_DISCOVERER_VIDEO_INFO(videos->data);
      info.width = static_cast<int>(gst_discoverer_video_info_get_width(v));
      info.height = static_cast<int>(gst_discoverer_video_info_get_height(v));
      info.image = gst_discoverer_video_info_is_image(v);
      info.video_caps = caps_text(GST_DISCOVERER_STREAM_INFO(v));
    }
    GList *audios = gst_discoverer_info_get_audio_streams(di);
    if (audios)
      info.audio_caps = caps_text(GST_DISCOVERER_STREAM_INFO(audios->data));
    gst_discoverer_stream_info_list_free(videos);
    gst_discoverer_stream_info_list_free(audios);
  }
  if (di)
    g_object_unref(di);
  g_object_unref(disc);
  return info;
}

// The first `count` decoded frames of a file as 8-bit grey at 64x36, through RGB so that the
// decoder's matrix and range apply (a JPEG's full range and a video's limited range compare).
inline std::vector<std::string> grey_frames(const fs::path &file, int count) {
  std::vector<std::string> frames;
  GError *err = nullptr;
  gchar *uri = gst_filename_to_uri(file.c_str(), nullptr);
  const std::string line = std::string("uridecodebin uri=") + uri +
                           " ! videoconvert ! video/x-raw,format=RGB ! videoconvert ! videoscale ! "
                           "video/x-raw,format=GRAY8,width=64,height=36,pixel-aspect-ratio=1/1 ! "
                           "appsink name=out sync=false";
  g_free(uri);
  GstElement *p = gst_parse_launch(line.c_str(), &err);
  if (!p) {
    g_clear_error(&err);
    return frames;
  }
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "out");
  gst_element_set_state(p, GST_STATE_PLAYING);
  for (int i = 0; i < count; ++i) {
    GstSample *sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 10 * GST_SECOND);
    if (!sample)
      break;
    GstMapInfo map;
    GstBuffer *buf = gst_sample_get_buffer(sample);
    if (gst_buffer_map(buf, &map, GST_MAP_READ)) {
      // Rows are 4-byte aligned: 64 bytes, no padding.
      frames.emplace_back(reinterpret_cast<const char *>(map.data), 64 * 36);
      gst_buffer_unmap(buf, &map);
    }
    gst_sample_unref(sample);
  }
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(p);
  return frames;
}

inline double mean_abs_diff(const std::string &a, const std::string &b) {
  if (a.size() != b.size() || a.empty())
    return 1e9;
  double sum = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    sum += std::abs(static_cast<int>(static_cast<unsigned char>(a[i])) -
                    static_cast<int>(static_cast<unsigned char>(b[i])));
  return sum / static_cast<double>(a.size());
}

} // namespace gemstream::test
