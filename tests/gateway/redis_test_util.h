// A throwaway redis-server on a free loopback port, without persistence, for the Redis job
// store's tests; killed when the object goes away.
#pragma once

#include <gemstream/error.h>
#include <gemstream/job_store.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

namespace gemstream::testing {

// The redis-server on PATH, if installed.
inline std::optional<std::filesystem::path> find_redis_server() {
  const char *path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/usr/local/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / "redis-server";
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return std::nullopt;
}

// A port the kernel just handed out on 127.0.0.1 (redis-server cannot be told to pick one).
inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
    if (fd >= 0)
      ::close(fd);
    throw std::runtime_error("cannot find a free loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class RedisServer {
public:
  explicit RedisServer(const std::filesystem::path &binary) {
    // Another process may take the port between free_loopback_port() and the bind; retry.
    for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) {
      port_ = free_loopback_port();
      std::vector<std::string> args = {
          binary.string(), "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
          "--appendonly",  "no",     "--loglevel",          "warning"};
      std::vector<char *> argv;
      for (auto &a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      posix_spawn_file_actions_t actions;
      posix_spawn_file_actions_init(&actions);
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
      pid_t pid = -1;
      const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
      posix_spawn_file_actions_destroy(&actions);
      if (rc != 0)
        throw std::runtime_error("cannot start " + binary.string());
      pid_ = pid;
      if (!wait_ready()) {
        stop();
        pid_ = -1;
      }
    }
    if (pid_ < 0)
      throw std::runtime_error("redis-server did not start on a loopback port");
  }
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer &) = delete;
  RedisServer &operator=(const RedisServer &) = delete;

  std::string url(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }
  int port() const { return port_; }

private:
  bool wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1; // exited: the port was taken
        return false;
      }
      try {
        gateway::open_redis_job_store(url(), "gemstream-test-ping:");
        return true;
      } catch (const Error &) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    return false;
  }
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  pid_t pid_ = -1;
  int port_ = 0;
};

} // namespace gemstream::testing
