// RAII for a mapped GstVideoFrame.
#pragma once

#include <gst/video/video.h>

namespace gemstream::gst {

// Maps `buffer` as a video frame for the object's lifetime; check it with operator bool.
class MappedFrame {
public:
  MappedFrame(const GstVideoInfo *info, GstBuffer *buffer, GstMapFlags flags = GST_MAP_READ)
      : ok_(gst_video_frame_map(&frame_, info, buffer, flags)) {}
  ~MappedFrame() {
    if (ok_)
      gst_video_frame_unmap(&frame_);
  }
  MappedFrame(const MappedFrame &) = delete;
  MappedFrame &operator=(const MappedFrame &) = delete;
  explicit operator bool() const { return ok_; }
  GstVideoFrame *get() { return &frame_; }

private:
  GstVideoFrame frame_{};
  bool ok_;
};

} // namespace gemstream::gst
