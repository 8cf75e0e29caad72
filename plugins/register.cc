#include "elements.h"

#include "framesampler.h"
#include "geminianalyzesink.h"
#include "geminilivesink.h"
#include "geminilivesrc.h"
#include "imagegensrc.h"
#include "veosrc.h"
#include "videoloop.h"

#include <mutex>

gboolean gemstream_register_elements(GstPlugin *plugin) {
  gboolean ok = TRUE;
  ok &= gst_element_register(plugin, "framesampler", GST_RANK_NONE, GEM_TYPE_FRAME_SAMPLER);
  ok &= gst_element_register(plugin, "geminianalyzesink", GST_RANK_NONE,
                             GEM_TYPE_GEMINI_ANALYZE_SINK);
  ok &= gst_element_register(plugin, "geminilivesink", GST_RANK_NONE, GEM_TYPE_GEMINI_LIVE_SINK);
  ok &= gst_element_register(plugin, "geminilivesrc", GST_RANK_NONE, GEM_TYPE_GEMINI_LIVE_SRC);
  ok &= gst_element_register(plugin, "imagegensrc", GST_RANK_NONE, GEM_TYPE_IMAGE_GEN_SRC);
  ok &= gst_element_register(plugin, "veosrc", GST_RANK_NONE, GEM_TYPE_VEO_SRC);
  ok &= gst_element_register(plugin, "videoloop", GST_RANK_NONE, GEM_TYPE_VIDEO_LOOP);
  return ok;
}

void gemstream_register_static(void) {
  static std::once_flag once;
  std::call_once(once, [] {
    gst_plugin_register_static(GST_VERSION_MAJOR, GST_VERSION_MINOR, "gemstream",
                               "Elements for Google's generative media APIs",
                               gemstream_register_elements, VERSION, GST_LICENSE, PACKAGE,
                               GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN);
  });
}
