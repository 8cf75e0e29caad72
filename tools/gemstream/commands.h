// The gemstream subcommands. Each takes the arguments after its name and returns an exit code.
#pragma once

#include <string>
#include <vector>

namespace gemstream::cli {

extern const char *const kImageUsage;
extern const char *const kVideoUsage;
extern const char *const kDemoUsage;
extern const char *const kBackendUsage;

int cmd_image(const std::vector<std::string> &args);
int cmd_video(const std::vector<std::string> &args);
int cmd_demo(const std::vector<std::string> &args);
int cmd_backend(const std::vector<std::string> &args);

} // namespace gemstream::cli
