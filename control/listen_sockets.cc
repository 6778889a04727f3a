#include "control/listen_sockets.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace scalegate::control {
namespace {

Result<int> openListener(SocketAddress addr) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errnoStatus("socket", errno);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (addr.isV6()) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (::bind(fd, addr.sockaddrPtr(), addr.sockaddrLen()) != 0) {
    int e = errno;
    ::close(fd);
    return errnoStatus("bind " + addr.toString(), e);
  }
  if (::listen(fd, 4096) != 0) {
    int e = errno;
    ::close(fd);
    return errnoStatus("listen " + addr.toString(), e);
  }
  return fd;
}

}  // namespace

ListenSocketTable::~ListenSocketTable() { closeEverything(); }

Status ListenSocketTable::prepare(const config::Config& cfg,
                                  std::vector<config::ListenSockets>* out,
                                  std::vector<int>* retired) {
  std::map<std::string, config::ListenSockets> next;
  std::vector<int> opened;
  for (const config::Listener& l : cfg.listeners) {
    if (l.protocol == config::ListenerProtocol::kL4) continue;  // dataplane/ owns VIPs
    std::string key = l.listen.toString();
    auto it = open_.find(key);
    if (it != open_.end() && l.listen.port() != 0) {
      config::ListenSockets s = it->second;
      s.listener = l.name;
      next[key] = s;
      continue;
    }
    config::ListenSockets s;
    s.listener = l.name;
    s.address = l.listen;
    // Port 0: the first socket picks a port and the others join it.
    SocketAddress addr = l.listen;
    for (int w = 0; w < workers_; ++w) {
      Result<int> fd = openListener(addr);
      if (!fd.isOk()) {
        closeAll(opened);
        return Status(fd.status().code(), "listener " + l.name + ": " + fd.status().message());
      }
      opened.push_back(*fd);
      s.fds.push_back(*fd);
      if (w == 0 && addr.port() == 0) {
        sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        ::getsockname(*fd, reinterpret_cast<sockaddr*>(&ss), &len);
        addr = SocketAddress(reinterpret_cast<sockaddr*>(&ss), len);
        s.address = addr;
      }
    }
    next[key] = std::move(s);
  }
  for (auto& [key, s] : open_) {
    auto it = next.find(key);
    bool kept = it != next.end() && it->second.fds == s.fds;
    if (!kept) retired->insert(retired->end(), s.fds.begin(), s.fds.end());
  }
  open_ = std::move(next);
  out->clear();
  for (auto& [key, s] : open_) out->push_back(s);
  return Status::ok();
}

void ListenSocketTable::closeAll(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

void ListenSocketTable::closeEverything() {
  for (auto& [key, s] : open_) closeAll(s.fds);
  open_.clear();
}

}  // namespace scalegate::control
