#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GEM_TYPE_VIDEO_LOOP (gem_video_loop_get_type())
G_DECLARE_FINAL_TYPE(GemVideoLoop, gem_video_loop, GEM, VIDEO_LOOP, GstElement)

G_END_DECLS
