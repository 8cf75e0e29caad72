#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GEM_TYPE_GEMINI_LIVE_SINK (gem_gemini_live_sink_get_type())
G_DECLARE_FINAL_TYPE(GemGeminiLiveSink, gem_gemini_live_sink, GEM, GEMINI_LIVE_SINK, GstElement)

#define GEM_TYPE_LIVE_RESPONSE_MODALITY (gem_live_response_modality_get_type())
GType gem_live_response_modality_get_type(void);

#define GEM_TYPE_LIVE_VAD (gem_live_vad_get_type())
GType gem_live_vad_get_type(void);

#define GEM_TYPE_LIVE_SENSITIVITY (gem_live_sensitivity_get_type())
GType gem_live_sensitivity_get_type(void);

#define GEM_TYPE_LIVE_ACTIVITY_HANDLING (gem_live_activity_handling_get_type())
GType gem_live_activity_handling_get_type(void);

G_END_DECLS
