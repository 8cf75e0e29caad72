// Helpers for benchmarks that measure one process of several: start a gemstream command and
// read the first line it prints (a base URL), and read a process's CPU time.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace gemstream::bench {

// Runs BINARY ARGS... with its stdout on a pipe; returns its pid and the first line it prints.
inline std::pair<pid_t, std::string> start_and_read_line(const std::string &binary,
                                                         const std::vector<std::string> &args) {
  int fds[2];
  if (pipe(fds) != 0)
    std::exit(1);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    std::vector<char *> argv{const_cast<char *>(binary.c_str())};
    for (const auto &a : args)
      argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string line;
  char c;
  while (read(fds[0], &c, 1) == 1 && c != '\n')
    line += c;
  close(fds[0]);
  return {pid, line};
}

// `gemstream backend`: the local backend in its own process, so that its speech recognition
// and synthesis are not counted with what is measured. Returns its pid and base URL.
inline std::pair<pid_t, std::string> start_backend(const std::string &binary) {
  return start_and_read_line(binary, {"backend"});
}

inline double self_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// User + system CPU seconds of another process, from /proc/PID/stat.
inline double process_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  const auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos)
    return 0;
  std::istringstream fields(stat.substr(close_paren + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i) // fields 3..13 precede utime (14) and stime (15)
    fields >> skip;
  unsigned long long utime = 0, stime = 0;
  fields >> utime >> stime;
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// The command line of a load benchmark, `BENCH GEMSTREAM_BINARY [SESSIONS...]`: the session
// counts to run, `defaults` when none are given. Prints the usage and exits 2 without a binary.
inline std::vector<int> session_counts(int argc, char **argv, std::vector<int> defaults) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s GEMSTREAM_BINARY [SESSIONS...]\n", argv[0]);
    std::exit(2);
  }
  std::vector<int> counts;
  for (int i = 2; i < argc; ++i)
    counts.push_back(std::atoi(argv[i]));
  return counts.empty() ? defaults : counts;
}

} // namespace gemstream::bench
