// main() for element tests: a private registry, GStreamer initialised once, the gemstream
// plugin registered statically from this binary (never a stale installed copy).
#include "elements.h"

#include <gst/gst.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <unistd.h>

int main(int argc, char **argv) {
  std::string registry = std::string(GEMSTREAM_BINARY_DIR) + "/tests/plugins/registry-" +
                         std::to_string(getpid()) + ".bin";
  setenv("GST_REGISTRY", registry.c_str(), 1);
  // Only the system plugins (for pngdec, qtdemux, ...); no user plugin paths.
  setenv("GST_PLUGIN_PATH", "", 1);
  unsetenv("GST_PLUGIN_PATH_1_0");
  gst_init(&argc, &argv);
  gemstream_register_static();
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  unlink(registry.c_str());
  gst_deinit();
  return rc;
}
