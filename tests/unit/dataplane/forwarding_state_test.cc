#include "dataplane/forwarding_state.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

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

  World(std::vector<std::pair<std::string, std::string>> members, bool dsr = false) {
    config::Listener l;
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

}  // namespace
}  // namespace scalegate::dataplane
