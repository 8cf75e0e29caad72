#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GEM_TYPE_GEMINI_LIVE_SRC (gem_gemini_live_src_get_type())
G_DECLARE_FINAL_TYPE(GemGeminiLiveSrc, gem_gemini_live_src, GEM, GEMINI_LIVE_SRC, GstElement)

G_END_DECLS
