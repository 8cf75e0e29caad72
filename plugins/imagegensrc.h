#pragma once

#include <gst/base/gstbasesrc.h>

G_BEGIN_DECLS

#define GEM_TYPE_IMAGE_GEN_SRC (gem_image_gen_src_get_type())
G_DECLARE_FINAL_TYPE(GemImageGenSrc, gem_image_gen_src, GEM, IMAGE_GEN_SRC, GstBaseSrc)

#define GEM_TYPE_IMAGE_GEN_MODEL (gem_image_gen_model_get_type())
GType gem_image_gen_model_get_type(void);

#define GEM_TYPE_IMAGE_GEN_STYLE (gem_image_gen_style_get_type())
GType gem_image_gen_style_get_type(void);

G_END_DECLS
