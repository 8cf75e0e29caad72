#pragma once

#include <gst/base/gstbasesink.h>

G_BEGIN_DECLS

#define GEM_TYPE_GEMINI_ANALYZE_SINK (gem_gemini_analyze_sink_get_type())
G_DECLARE_FINAL_TYPE(GemGeminiAnalyzeSink, gem_gemini_analyze_sink, GEM, GEMINI_ANALYZE_SINK,
                     GstBaseSink)

G_END_DECLS
