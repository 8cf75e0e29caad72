#pragma once

#include <gst/base/gstbasesrc.h>

G_BEGIN_DECLS

#define GEM_TYPE_VEO_SRC (gem_veo_src_get_type())
G_DECLARE_FINAL_TYPE(GemVeoSrc, gem_veo_src, GEM, VEO_SRC, GstBaseSrc)

#define GEM_TYPE_VEO_MODEL (gem_veo_model_get_type())
GType gem_veo_model_get_type(void);
#define GEM_TYPE_VEO_MOOD (gem_veo_mood_get_type())
GType gem_veo_mood_get_type(void);
#define GEM_TYPE_VEO_ASPECT_RATIO (gem_veo_aspect_ratio_get_type())
GType gem_veo_aspect_ratio_get_type(void);
#define GEM_TYPE_VEO_RESOLUTION (gem_veo_resolution_get_type())
GType gem_veo_resolution_get_type(void);

G_END_DECLS
