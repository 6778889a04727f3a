// Fuzzes the packet parser (dataplane/packet.h) and the rewrites the lcore applies to what it
// accepts: nothing may read or write outside the frame, whatever the bytes.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dataplane/checksum.h"
#include "dataplane/packet.h"
#include "dataplane/rewrite.h"

using namespace scalegate::dataplane;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so ASan catches any access past the frame.
  std::vector<uint8_t> frame(data, data + size);
  PacketInfo info;
  const PacketKind kind = parseFrame(frame, &info);
  switch (kind) {
    case PacketKind::kTcp:
    case PacketKind::kUdp: {
      if (info.l4 > frame.size() || info.l3 + info.ip_len > frame.size()) __builtin_trap();
      rewriteTuple(frame.data(), info, 0x0200000a, 0x5000, 0x0b00000a, 0x901f);
      std::vector<uint8_t> buf(kIpipOverhead + frame.size());
      std::copy(frame.begin(), frame.end(), buf.begin() + kIpipOverhead);
      encapIpip(buf.data(), frame.size(), 0x0200000a, 0x0b00000a);
      break;
    }
    case PacketKind::kArpRequest:
      makeArpReply(frame.data(), MacAddress{{2, 0, 0, 0, 0, 1}});
      break;
    case PacketKind::kIcmpEcho:
      makeIcmpEchoReply(frame.data(), info);
      break;
    default:
      break;
  }
  return 0;
}
