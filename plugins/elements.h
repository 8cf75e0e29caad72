// Registration of every gemstream element; used by plugin_init and by tests that register the
// plugin statically.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

gboolean gemstream_register_elements(GstPlugin *plugin);
// Registers the plugin statically in this process (tests, the CLI). Idempotent.
void gemstream_register_static(void);

G_END_DECLS
