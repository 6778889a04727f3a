// What the control unit tests share: whole-file reads and writes (state files, outboxes,
// secrets) and an evhttp server bound to an ephemeral loopback port (scalers, webhook
// receivers) in the test's own event_base.
#pragma once

#include <event2/http.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

namespace scalegate::control::test_support {

inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Binds `http` to 127.0.0.1:0 and returns the port the kernel chose (0, and a test failure,
// when it cannot).
inline uint16_t bindLoopback(evhttp* http) {
  evhttp_bound_socket* sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
  EXPECT_NE(sock, nullptr);
  if (sock == nullptr) return 0;
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  getsockname(evhttp_bound_socket_get_fd(sock), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

}  // namespace scalegate::control::test_support
