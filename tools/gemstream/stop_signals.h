// The signals that stop a command's run cleanly, and a scope that handles them.
#pragma once

#include <array>
#include <csignal>
#include <cstddef>

namespace gemstream::cli {

// Ctrl-C, SIGTERM (`timeout`, a service manager, `docker stop`) and SIGHUP (a closed terminal).
inline constexpr std::array kStopSignals = {SIGINT, SIGTERM, SIGHUP};

// Installs `handler` for every stop signal while in scope and restores the previous handlers
// afterwards. The handler may only touch lock-free atomics.
class StopSignalScope {
public:
  explicit StopSignalScope(void (*handler)(int)) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    for (std::size_t i = 0; i < kStopSignals.size(); ++i)
      sigaction(kStopSignals[i], &sa, &previous_[i]);
  }
  ~StopSignalScope() {
    for (std::size_t i = 0; i < kStopSignals.size(); ++i)
      sigaction(kStopSignals[i], &previous_[i], nullptr);
  }
  StopSignalScope(const StopSignalScope &) = delete;
  StopSignalScope &operator=(const StopSignalScope &) = delete;

private:
  std::array<struct sigaction, kStopSignals.size()> previous_{};
};

} // namespace gemstream::cli
