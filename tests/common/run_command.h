// Runs a shell command line for the CLI tests: its exit status and what it wrote to stdout.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace gemstream::testing {

struct CommandResult {
  int code = -1;   // the exit status; -1 when the command did not exit normally
  std::string out; // stdout (add "2>&1" to the command for stderr too)
};

inline CommandResult run_command(const std::string &command) {
  CommandResult r;
  FILE *p = popen(command.c_str(), "r");
  if (!p)
    return r;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p))
    r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

} // namespace gemstream::testing
