#pragma once

#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GEM_TYPE_FRAME_SAMPLER (gem_frame_sampler_get_type())
G_DECLARE_FINAL_TYPE(GemFrameSampler, gem_frame_sampler, GEM, FRAME_SAMPLER, GstVideoFilter)

G_END_DECLS
