#include "dataplane/forwarding_state.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "dataplane/packet.h"

namespace scalegate::dataplane {
namespace {

// A snapshot of one l4 listener over pool "web" with the given members (id, address).
struct World {
  std::shared_ptr<config::Config> cfg = std::make_shared<config::Config>();
  config::Snapshot snap;

  World(std::vector<std::pair<std::string, std::string>> members, bool dsr = false,
        AccessList access = {}) {
    config::Listener l;
    l.access = std::move(access);
    l.name = "vip";
    l.protocol = config::ListenerProtocol::kL4;
    l.vip = SocketAddress::parse("10.0.0.10:80").value();
    l.pool = "web";
    l.mode = dsr ? config::L4Mode::kDsr : config::L4Mode::kNat;
    cfg->listeners.push_back(l);
    config::Pool& p = cfg->pools["web"];
    p.name = "web";
    for (auto& [id, addr] : members) {
      config::Member m;
      m.id = id;
      m.address = SocketAddress::parse(addr).value();
      p.members.push_back(m);
    }
    rebuild();
  }
  void rebuild() {
    snap.config = cfg;
    snap.pools.clear();
    config::PoolState ps;
    ps.pool = &cfg->pools.at("web");
    ps.members.resize(ps.pool->members.size());
    snap.pools.push_back(ps);
  }
  config::MemberState& state(size_t i) { return snap.pools[0].members[i]; }
};

std::set<uint16_t> idsInTable(const ForwardingState& st) {
  return std::set<uint16_t>(st.pools[0].slots.begin(), st.pools[0].slots.end());
}

TEST(ForwardingStateTest, VipsPoolsAndBackends) {
  World w({{"a", "10.1.0.1:8080"}, {"b", "10.1.0.2:8080"}, {"v6", "[2001:db8::1]:80"}});
  ForwardingStateBuilder builder;
  auto st = builder.build(w.snap);
  ASSERT_EQ(st->vips.size(), 1u);
  const Vip* v = st->findVip(inet_addr("10.0.0.10"), htons(80), kProtoTcp);
  ASSERT_NE(v, nullptr);
  EXPECT_FALSE(v->dsr);
  EXPECT_EQ(st->findVip(inet_addr("10.0.0.10"), htons(80), kProtoUdp), nullptr);
  EXPECT_TRUE(st->isVipAddress(inet_addr("10.0.0.10")));
  EXPECT_EQ(builder.skipped(), 1u);  // the IPv6 member
  ASSERT_EQ(st->pools.size(), 1u);
  EXPECT_EQ(st->pools[0].slots.size(), 65537u);
  EXPECT_EQ(idsInTable(*st), (std::set<uint16_t>{0, 1}));
  EXPECT_EQ(st->backends[0].ip, inet_addr("10.1.0.1"));
  EXPECT_EQ(st->backends[1].port, htons(8080));
  EXPECT_EQ(builder.backendName(1)->member, "b");
  EXPECT_EQ(builder.vipName(v->id), "vip");
}

TEST(ForwardingStateTest, UnhealthyAndDrainingMembers) {
  World w({{"a", "10.1.0.1:80"}, {"b", "10.1.0.2:80"}, {"c", "10.1.0.3:80"}});
  ForwardingStateBuilder builder;
  w.state(1).healthy = false;  // no new flows, existing flows move
  w.state(2).draining = true;  // no new flows, existing flows stay
  auto st = builder.build(w.snap);
  EXPECT_EQ(idsInTable(*st), (std::set<uint16_t>{0}));
  EXPECT_EQ(st->backends[1].usable, 0);
  EXPECT_EQ(st->backends[2].usable, 1);
  w.snap.pools[0].refuse = true;  // a refusing pool takes nothing
  st = builder.build(w.snap);
  EXPECT_EQ(idsInTable(*st), (std::set<uint16_t>{kNoBackend}));
}

TEST(ForwardingStateTest, IdsAreStableAndReusedLast) {
  World w({{"a", "10.1.0.1:80"}, {"b", "10.1.0.2:80"}});
  ForwardingStateBuilder builder;
  builder.build(w.snap);
  // b leaves, c joins: a keeps id 0, c gets a fresh id (not b's).
  w.cfg->pools["web"].members.erase(w.cfg->pools["web"].members.begin() + 1);
  config::Member c;
  c.id = "c";
  c.address = SocketAddress::parse("10.1.0.3:80").value();
  w.cfg->pools["web"].members.push_back(c);
  w.rebuild();
  auto st = builder.build(w.snap);
  EXPECT_EQ(builder.backendName(0)->member, "a");
  EXPECT_EQ(builder.backendName(1), nullptr);
  EXPECT_EQ(builder.backendName(2)->member, "c");
  EXPECT_EQ(st->backends[1].ip, 0u);
  EXPECT_EQ(idsInTable(*st), (std::set<uint16_t>{0, 2}));
}

// A TCP SYN 10.0.0.1:40000 -> 10.0.0.10:80 (the VIP), as on the wire.
constexpr const char kSynFromClient[] =
    "02000000000202000000000108004500002c123440004006148e0a0000010a00"
    "000a9c400050000003e8000000006002faf0e8b20000020405b4";

std::vector<uint8_t> fromHex(const char* hex) {
  std::vector<uint8_t> out;
  std::string s(hex);
  for (size_t i = 0; i + 1 < s.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(s.substr(i, 2), nullptr, 16)));
  }
  return out;
}

CidrSet cidrs(std::initializer_list<const char*> list) {
  CidrSet set;
  for (const char* p : list) set.add(parseCidr(p).value());
  set.build();
  return set;
}

// The lcore's classify step for one frame: parse, find the VIP, check its access list.
bool admitted(const ForwardingState& st, std::vector<uint8_t> frame, const char* src) {
  if (src != nullptr) {  // rewrite the source address (bytes 26..29); checksums do not matter
    uint32_t a = inet_addr(src);
    std::memcpy(frame.data() + 26, &a, 4);
  }
  PacketInfo pi;
  EXPECT_EQ(parseFrame(frame, &pi), PacketKind::kTcp);
  const Vip* v = st.findVip(pi.dst_ip, pi.dst_port, pi.proto);
  EXPECT_NE(v, nullptr);
  return v != nullptr && st.vipAdmits(*v, pi.src_ip);
}

TEST(ForwardingStateTest, VipAccessListChecksClientSourceAddress) {
  AccessList acl;
  acl.allow = cidrs({"10.0.0.0/24", "192.168.0.0/16"});
  acl.deny = cidrs({"10.0.0.128/25", "192.168.7.7"});
  World w({{"a", "10.1.0.1:8080"}}, false, acl);
  ForwardingStateBuilder builder;
  auto st = builder.build(w.snap);
  const auto syn = fromHex(kSynFromClient);
  EXPECT_TRUE(admitted(*st, syn, nullptr));  // 10.0.0.1 as captured
  EXPECT_TRUE(admitted(*st, syn, "192.168.1.1"));
  EXPECT_FALSE(admitted(*st, syn, "10.0.0.200"));   // denied /25 inside the allowed /24
  EXPECT_FALSE(admitted(*st, syn, "192.168.7.7"));  // deny wins
  EXPECT_FALSE(admitted(*st, syn, "10.0.1.1"));     // not in the allow list

  World open(std::vector<std::pair<std::string, std::string>>{{"a", "10.1.0.1:8080"}});
  auto st2 = builder.build(open.snap);
  EXPECT_EQ(st2->vips[0].access, 0xffff);
  EXPECT_TRUE(st2->access.empty());
  EXPECT_TRUE(admitted(*st2, syn, "10.0.0.200"));  // no access list: everyone
}

}  // namespace
}  // namespace scalegate::dataplane
