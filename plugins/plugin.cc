// The gemstream GStreamer plugin: every element of the project in one module.
#include "elements.h"

static gboolean plugin_init(GstPlugin *plugin) { return gemstream_register_elements(plugin); }

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, gemstream,
                  "Elements for Google's generative media APIs (Gemini, Imagen, Veo)", plugin_init,
                  VERSION, GST_LICENSE, GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
