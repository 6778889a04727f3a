// Fuzz target for the HTTP/2 server side of l7proxy (l7proxy/http2.cc): arbitrary client bytes
// go through a real Worker's connection code, so h2c prior-knowledge detection, our nghttp2
// callbacks (request rewrite to HTTP/1.1, header limits, the rapid-reset bucket, CONTINUATION
// cap, flow-control give-back, local replies through the data provider) and stream teardown run
// exactly as in the proxy. The client side is one end of an AF_UNIX socketpair in this process
// (no network); the pool has no members, so every request that gets through the limits is
// answered locally (503) on its stream.
//
//   input ─► socketpair ─► Worker (acceptClient) ─► h2Start ─► nghttp2 ─► our callbacks
//                                                   frames ◄─ output ◄┘   (checked below)
//
// Input layout: byte 0 picks the listener settings (bit 0: tight limits), whether the harness
// sends the client preface itself (bit 1: set = the input starts right after the preface), and
// how the rest is cut into writes (bits 2..7: chunk size; 0 = one write). The event loop runs
// between writes, so frames split across reads are exercised.
// Checks beyond the sanitizers: after a client preface, what the proxy sends is a sequence of
// well-formed frames, the first a SETTINGS frame on stream 0, frames on stream 0 only of
// connection-level types and responses only on client (odd) streams; without the preface the
// answer (if any) is HTTP/1.1.
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "config/loader.h"
#include "config/snapshot.h"
#include "l7proxy/connection.h"
#include "l7proxy/worker.h"

namespace {

using scalegate::config::Snapshot;
using scalegate::l7proxy::SnapshotChannel;
using scalegate::l7proxy::Worker;

#define SG_FUZZ_CHECK(cond)                                                         \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// The listener as a user would configure it; the tight variant makes every limit reachable
// with short inputs (a few headers, two streams, two resets, one CONTINUATION).
constexpr char kDefaultConfig[] = R"(
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:8080
    routes:
      - { path_prefix: /, pool: web }
pools:
  web:
    members: []
)";
constexpr char kTightConfig[] = R"(
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:8080
    limits: { max_request_header_bytes: 1024, max_headers: 8, max_uri_bytes: 256 }
    http2:
      max_concurrent_streams: 2
      initial_window_bytes: 1024
      reset_burst: 2
      reset_rate: 1
      max_continuations: 1
    routes:
      - { path_prefix: /, pool: web }
pools:
  web:
    members: []
)";

std::shared_ptr<const Snapshot> makeSnapshot(const char* text) {
  auto loaded = scalegate::config::loadConfigText(text, "http2_session_fuzz.yaml");
  if (!loaded.ok()) {
    std::fprintf(stderr, "fuzz config does not load:\n%s\n", loaded.errorText().c_str());
    std::abort();
  }
  auto snap = std::make_shared<Snapshot>();
  snap->generation = 1;
  auto cfg = std::make_shared<scalegate::config::Config>(std::move(loaded.config));
  snap->config = cfg;
  for (const auto& [name, pool] : cfg->pools) {
    scalegate::config::PoolState ps;
    ps.pool = &pool;
    ps.members.resize(pool.members.size());
    snap->pools.push_back(std::move(ps));
  }
  return snap;
}

SnapshotChannel* channel(bool tight) {
  static SnapshotChannel* channels[2] = {nullptr, nullptr};
  SnapshotChannel*& ch = channels[tight ? 1 : 0];
  if (ch == nullptr) {
    ch = new SnapshotChannel();
    ch->publish(makeSnapshot(tight ? kTightConfig : kDefaultConfig));
  }
  return ch;
}

// Reads what the proxy wrote; false once the proxy closed its end.
bool drain(int fd, std::string* out) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    return errno == EAGAIN || errno == EINTR;
  }
}

void runLoop(Worker* w, int fd, std::string* out, int passes, bool* open) {
  for (int i = 0; i < passes; ++i) {
    event_base_loop(w->base(), EVLOOP_NONBLOCK);
    if (*open) *open = drain(fd, out);
  }
}

// The proxy's output as HTTP/2 frames (RFC 9113 section 4.1).
void checkFrames(const std::string& out, bool closed) {
  size_t at = 0;
  bool first = true;
  while (at + 9 <= out.size()) {
    const auto* p = reinterpret_cast<const uint8_t*>(out.data() + at);
    const uint32_t len = (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
    const uint8_t type = p[3];
    const uint32_t stream =
        ((uint32_t{p[5]} << 24) | (uint32_t{p[6]} << 16) | (uint32_t{p[7]} << 8) | p[8]) &
        0x7fffffffu;
    if (first) SG_FUZZ_CHECK(type == 0x4 && stream == 0);  // the server preface: SETTINGS
    first = false;
    SG_FUZZ_CHECK(type <= 0x9);  // the proxy sends no extension frames
    SG_FUZZ_CHECK(type != 0x5);  // no PUSH_PROMISE (push is off)
    // SETTINGS, PING, GOAWAY: connection level; DATA, HEADERS, PRIORITY, RST_STREAM,
    // CONTINUATION: on a client-initiated (odd) stream. WINDOW_UPDATE: either.
    if (type == 0x4 || type == 0x6 || type == 0x7) SG_FUZZ_CHECK(stream == 0);
    if (type <= 0x3 || type == 0x9) SG_FUZZ_CHECK(stream % 2 == 1);
    if (type == 0x0) SG_FUZZ_CHECK(len <= 16384);  // DATA: the default max frame size
    if (at + 9 + len > out.size()) break;
    at += 9 + len;
  }
  // Everything sent is whole frames, unless the proxy closed the connection mid-write.
  if (!closed) SG_FUZZ_CHECK(at == out.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  ++data;
  --size;
  const bool tight = (mode & 1) != 0;
  const bool add_preface = (mode & 2) != 0;
  const size_t chunk = static_cast<size_t>(mode >> 2) * 7;  // 0: everything in one write

  Worker w(0, channel(tight));
  w.wake();
  event_base_loop(w.base(), EVLOOP_NONBLOCK);  // adopts the snapshot
  SG_FUZZ_CHECK(w.view() != nullptr);

  int sv[2];
  SG_FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  int buf_bytes = 1 << 20;
  ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf_bytes, sizeof(buf_bytes));
  ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf_bytes, sizeof(buf_bytes));
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(40000);
  peer.sin_addr.s_addr = htonl(0x7f000001);
  w.refreshNow();
  scalegate::l7proxy::acceptClient(&w, sv[0], reinterpret_cast<sockaddr*>(&peer), sizeof(peer), 0,
                                    /*ip_slot=*/-1);

  std::string input;
  if (add_preface) input.assign(kPreface, sizeof(kPreface) - 1);
  input.append(reinterpret_cast<const char*>(data), size);

  std::string out;
  bool open = true;
  size_t at = 0;
  while (at < input.size() && open) {
    size_t n = chunk == 0 ? input.size() - at : std::min(chunk, input.size() - at);
    ssize_t wr = ::write(sv[1], input.data() + at, n);
    if (wr < 0) {
      if (errno != EAGAIN && errno != EINTR) break;  // the proxy closed the connection
      wr = 0;
    }
    at += static_cast<size_t>(wr);
    runLoop(&w, sv[1], &out, 3, &open);
  }
  runLoop(&w, sv[1], &out, 8, &open);
  if (input.compare(0, sizeof(kPreface) - 1, kPreface) == 0) {
    checkFrames(out, !open);
  } else {
    // Not HTTP/2 prior knowledge: the HTTP/1.1 path answers, if at all, in HTTP/1.1.
    SG_FUZZ_CHECK(out.empty() || out.compare(0, 9, "HTTP/1.1 ") == 0);
  }
  // The client goes away: the connection and its streams are torn down.
  ::shutdown(sv[1], SHUT_WR);
  runLoop(&w, sv[1], &out, 4, &open);
  ::close(sv[1]);
  return 0;  // ~Worker closes what is still open and frees it
}
