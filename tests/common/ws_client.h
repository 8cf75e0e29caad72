// A minimal blocking WebSocket client over a plain socket, for tests and benchmarks: it shows
// the upgrade answer's status line and every frame as the server sent it. No GoogleTest.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gemstream::testing {

// A blocking WebSocket client over a plain socket.
class WsClient {
public:
  ~WsClient() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  // Sends the upgrade request; returns the answer's HTTP status (101 when upgraded). The
  // answer's headers are in response_head, a refusal's body in refusal_body.
  int connect(std::uint16_t port, const std::string &target,
              const std::vector<std::string> &headers = {}) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0)
      return -1;
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n";
    for (const auto &h : headers)
      request += h + "\r\n";
    request += "\r\n";
    if (!send_all(request))
      return -1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (buffer_.find("\r\n\r\n") == std::string::npos) {
      if (!fill(deadline))
        return -1;
    }
    const auto end = buffer_.find("\r\n\r\n");
    response_head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    int status = 0;
    std::sscanf(response_head.c_str(), "HTTP/%*d.%*d %d", &status);
    if (status != 101) {
      // The refusal's JSON body: read until the server closes.
      while (fill(deadline)) {
      }
      refusal_body = buffer_;
    }
    return status;
  }

  // The next text or binary message; nullopt on timeout or close (close_code is then set).
  // `binary`, when given, tells which it was.
  std::optional<std::string> next(std::chrono::milliseconds timeout, bool *binary = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string message;
    for (;;) {
      while (buffer_.size() < 2)
        if (!fill(deadline))
          return std::nullopt;
      const auto b0 = static_cast<unsigned char>(buffer_[0]);
      const auto b1 = static_cast<unsigned char>(buffer_[1]);
      std::size_t header = 2;
      std::uint64_t length = b1 & 0x7f;
      if (length == 126)
        header = 4;
      else if (length == 127)
        header = 10;
      while (buffer_.size() < header)
        if (!fill(deadline))
          return std::nullopt;
      if (header == 4)
        length = (std::uint64_t(std::uint8_t(buffer_[2])) << 8) | std::uint8_t(buffer_[3]);
      else if (header == 10) {
        length = 0;
        for (int i = 0; i < 8; ++i)
          length = (length << 8) | std::uint8_t(buffer_[2 + i]);
      }
      while (buffer_.size() < header + length)
        if (!fill(deadline))
          return std::nullopt;
      const std::string payload = buffer_.substr(header, length);
      buffer_.erase(0, header + length);
      const int opcode = b0 & 0x0f;
      if (opcode == 0x8) {
        close_code =
            payload.size() >= 2 ? (std::uint8_t(payload[0]) << 8) | std::uint8_t(payload[1]) : 1005;
        return std::nullopt;
      }
      if (opcode == 0x9) {
        send_frame(0xA, payload);
        continue;
      }
      if (opcode == 0xA)
        continue;
      if (binary && opcode != 0x0)
        *binary = opcode == 0x2;
      message += payload;
      if (b0 & 0x80)
        return message;
    }
  }

  // The next message as JSON whose "type" is not "ready".
  std::optional<nlohmann::json> next_event(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return std::nullopt;
      auto m = next(left);
      if (!m)
        return std::nullopt;
      nlohmann::json j = nlohmann::json::parse(*m, nullptr, false);
      if (j.is_object() && j.value("type", "") != "ready")
        return j;
    }
  }

  bool send_text(const std::string &text) { return send_frame(0x1, text); }
  bool send_binary(const std::string &data) { return send_frame(0x2, data); }

  std::string response_head;
  std::string refusal_body;
  std::optional<int> close_code;

private:
  bool send_all(const std::string &data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      sent += std::size_t(n);
    }
    return true;
  }
  bool send_frame(int opcode, const std::string &payload) {
    std::string frame;
    frame += char(0x80 | opcode);
    if (payload.size() < 126) {
      frame += char(0x80 | payload.size());
    } else if (payload.size() < 65536) {
      frame += char(0x80 | 126);
      frame += char((payload.size() >> 8) & 0xff);
      frame += char(payload.size() & 0xff);
    } else {
      frame += char(0x80 | 127);
      for (int shift = 56; shift >= 0; shift -= 8)
        frame += char((std::uint64_t(payload.size()) >> shift) & 0xff);
    }
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    frame.append(reinterpret_cast<const char *>(mask), 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
      frame += char(payload[i] ^ mask[i % 4]);
    return send_all(frame);
  }
  bool fill(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0)
      return false;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0)
      return false;
    buffer_.append(buf, std::size_t(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
};

} // namespace gemstream::testing
