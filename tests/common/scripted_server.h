// A loopback HTTP/1.1 server for client tests: answers a queue of scripted responses, one per
// connection (every answer carries "Connection: close"), and records each request as received.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cctype>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace gemstream::testing {

struct ScriptedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Waits this long after reading the request before answering.
  std::chrono::milliseconds delay{0};
  // Sends the headers (with the full Content-Length) and only this many body bytes, then closes.
  std::optional<std::size_t> close_after_body_bytes;
  // With close_after_body_bytes: stall after those bytes instead of closing, until the client
  // goes away.
  bool stall_instead_of_close = false;
  // Omits Content-Length: the body ends when the connection closes.
  bool content_length = true;
  // Reads the request and never answers; the connection stays open until the client leaves.
  bool never_answer = false;

  static ScriptedResponse json(int status, std::string body) {
    ScriptedResponse r;
    r.status = status;
    r.headers.emplace_back("Content-Type", "application/json; charset=UTF-8");
    r.body = std::move(body);
    return r;
  }
};

struct RecordedRequest {
  std::string method;
  std::string target;                         // as on the request line, path plus query
  std::string raw_headers;                    // request line and header lines, as received
  std::map<std::string, std::string> headers; // names lower-cased
  std::string body;
  std::chrono::steady_clock::time_point received; // when the request was fully read

  bool has_header(const std::string &lower_name) const { return headers.count(lower_name) != 0; }
  std::string header(const std::string &lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class ScriptedServer {
public:
  ScriptedServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0)
      throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
      const std::string err = std::strerror(errno);
      ::close(listen_fd_);
      throw std::runtime_error("cannot listen on loopback: " + err);
    }
    port_ = ntohs(addr.sin_port);
    if (::pipe2(wake_, O_CLOEXEC) != 0) {
      ::close(listen_fd_);
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    }
    thread_ = std::thread([this] { run(); });
  }

  ~ScriptedServer() {
    const char byte = 'x';
    (void)!::write(wake_[1], &byte, 1);
    thread_.join();
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

  ScriptedServer(const ScriptedServer &) = delete;
  ScriptedServer &operator=(const ScriptedServer &) = delete;

  void push(ScriptedResponse response) {
    std::lock_guard lock(mutex_);
    script_.push_back(std::move(response));
  }

  std::uint16_t port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string url(std::string_view path) const { return base_url() + std::string(path); }

  std::vector<RecordedRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  std::size_t request_count() const {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }

  // A loopback port with nothing listening on it (bound and released; good enough for tests).
  static std::uint16_t closed_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr);
    ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
  }

private:
  // Waits until fd is readable or the server stops; false on stop or timeout.
  bool wait_readable(int fd, int timeout_ms) const {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const int n = ::poll(fds, 2, timeout_ms);
    return n > 0 && (fds[1].revents & POLLIN) == 0 &&
           (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
  }

  bool stopping() const {
    pollfd fd{wake_[0], POLLIN, 0};
    return ::poll(&fd, 1, 0) > 0;
  }

  void run() {
    while (!stopping()) {
      if (!wait_readable(listen_fd_, -1))
        return;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0)
        continue;
      serve(fd);
      ::close(fd);
    }
  }

  static bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  static std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  }

  static std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
      s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
      s.remove_suffix(1);
    return s;
  }

  std::optional<RecordedRequest> read_request(int fd) const {
    std::string data;
    char buf[16384];
    std::size_t header_end = std::string::npos;
    while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
      if (!wait_readable(fd, 10000))
        return std::nullopt;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0)
        return std::nullopt;
      data.append(buf, static_cast<std::size_t>(n));
    }
    RecordedRequest req;
    req.raw_headers = data.substr(0, header_end + 2);
    std::string_view rest(req.raw_headers);
    const auto line_end = rest.find("\r\n");
    const std::string_view request_line = rest.substr(0, line_end);
    const auto sp1 = request_line.find(' ');
    const auto sp2 = request_line.rfind(' ');
    req.method = std::string(request_line.substr(0, sp1));
    req.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
    rest.remove_prefix(line_end + 2);
    while (!rest.empty()) {
      const auto end = rest.find("\r\n");
      const std::string_view line = rest.substr(0, end);
      const auto colon = line.find(':');
      if (colon != std::string_view::npos)
        req.headers[lower(std::string(line.substr(0, colon)))] =
            std::string(trim(line.substr(colon + 1)));
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 2);
    }
    req.body = data.substr(header_end + 4);
    const std::size_t want =
        req.has_header("content-length") ? std::stoul(req.header("content-length")) : 0;
    while (req.body.size() < want) {
      if (!wait_readable(fd, 10000))
        return std::nullopt;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0)
        return std::nullopt;
      req.body.append(buf, static_cast<std::size_t>(n));
    }
    req.received = std::chrono::steady_clock::now();
    return req;
  }

  static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
  }

  void serve(int fd) {
    auto req = read_request(fd);
    if (!req)
      return;
    ScriptedResponse resp;
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(*req);
      if (script_.empty()) {
        resp = ScriptedResponse::json(
            500,
            R"({"error":{"code":500,"message":"no scripted response left","status":"INTERNAL"}})");
      } else {
        resp = std::move(script_.front());
        script_.pop_front();
      }
    }

    if (resp.never_answer) {
      // Hold the connection until the client goes away or the server stops.
      char buf[4096];
      while (wait_readable(fd, -1) && ::recv(fd, buf, sizeof buf, 0) > 0) {
      }
      return;
    }
    if (resp.delay.count() > 0) {
      pollfd stop{wake_[0], POLLIN, 0};
      ::poll(&stop, 1, static_cast<int>(resp.delay.count()));
    }
    if (stopping())
      return;

    std::string head =
        "HTTP/1.1 " + std::to_string(resp.status) + " " + reason(resp.status) + "\r\n";
    for (const auto &[name, value] : resp.headers)
      head += name + ": " + value + "\r\n";
    if (resp.content_length)
      head += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
    head += "Connection: close\r\n\r\n";
    if (!send_all(fd, head))
      return;
    std::string_view body = resp.body;
    if (resp.close_after_body_bytes)
      body = body.substr(0, *resp.close_after_body_bytes);
    send_all(fd, body);
    if (resp.close_after_body_bytes && resp.stall_instead_of_close) {
      char buf[4096];
      while (wait_readable(fd, -1) && ::recv(fd, buf, sizeof buf, 0) > 0) {
      }
      return;
    }
    ::shutdown(fd, SHUT_WR);
    // Let the client read everything before the socket is closed under it.
    char buf[4096];
    while (wait_readable(fd, 2000) && ::recv(fd, buf, sizeof buf, 0) > 0) {
    }
  }

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::uint16_t port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::deque<ScriptedResponse> script_;
  std::vector<RecordedRequest> requests_;
};

} // namespace gemstream::testing
