#pragma once
// Listening sockets for the HTTP/TCP listeners: control opens one SO_REUSEPORT socket per
// worker for each listen address, so the kernel spreads connections over the workers and a
// reload that keeps an address keeps its sockets (no connection is refused or dropped).
// Control thread only.

#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "config/model.h"
#include "config/snapshot.h"

namespace scalegate::control {

class ListenSocketTable {
 public:
  explicit ListenSocketTable(int workers) : workers_(workers) {}
  ~ListenSocketTable();
  ListenSocketTable(const ListenSocketTable&) = delete;
  ListenSocketTable& operator=(const ListenSocketTable&) = delete;

  // The sockets `cfg` needs: existing ones are reused, missing ones opened. On error nothing
  // changes (sockets opened by this call are closed) and the Status names the listener.
  // Sockets no longer needed are returned in *retired; the caller closes them with
  // closeRetired() once no worker watches them any more.
  Status prepare(const config::Config& cfg, std::vector<config::ListenSockets>* out,
                 std::vector<int>* retired);
  static void closeAll(const std::vector<int>& fds);
  // Closes every socket (shutdown: no new connections reach the backlog).
  void closeEverything();

 private:
  int workers_;
  std::map<std::string, config::ListenSockets> open_;  // by address text
};

}  // namespace scalegate::control
