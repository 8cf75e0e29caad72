// The gemstream subcommands. Each takes the arguments after its name and returns an exit code.
#pragma once

#include <string>
#include <vector>

namespace gemstream::cli {

int cmd_image(const std::vector<std::string> &args);
int cmd_video(const std::vector<std::string> &args);
int cmd_demo(const std::vector<std::string> &args);
int cmd_backend(const std::vector<std::string> &args);

} // namespace gemstream::cli
