#include "control/pool_registry.h"
#include "tests/unit/control/test_support.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "config/loader.h"
#include "control/state_file.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;

constexpr char kBase[] = R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
    mode: flexible
    drain_timeout: 10s
    members:
      - { id: vm-0, address: 10.0.0.1:80, zone: "1" }
      - { id: vm-1, address: 10.0.0.2:80, zone: "2", fault_domain: 1 }
  other: {}
)";

std::shared_ptr<const config::Config> configFrom(const std::string& yaml) {
  config::LoadResult r = config::loadConfigText(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.errorText();
  return std::make_shared<const config::Config>(std::move(r.config));
}

MemberSpec spec(const char* address, uint32_t weight = 1, const char* zone = "") {
  MemberSpec s;
  auto a = SocketAddress::parse(address);
  EXPECT_TRUE(a.isOk()) << address;
  if (a.isOk()) s.address = *a;
  s.weight = weight;
  s.zone = zone;
  return s;
}

std::vector<std::string> ids(const PoolRecord& p) {
  std::vector<std::string> out;
  for (const MemberRecord& m : p.members) out.push_back(m.spec.id);
  return out;
}

bool hasEvent(const PoolRegistry& r, const std::string& type, const std::string& member) {
  for (const Event& e : r.events()) {
    if (e.type == type && e.member == member) return true;
  }
  return false;
}

using test_support::readFile;
using test_support::writeFile;

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sg_registry_XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class PoolRegistryTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  PoolRegistry reg_{2, clock_};
};

TEST_F(PoolRegistryTest, ApplyConfigBuildsPoolsFromTheFile) {
  uint64_t v0 = reg_.version();
  reg_.applyConfig(configFrom(kBase));
  EXPECT_GT(reg_.version(), v0);
  ASSERT_EQ(reg_.pools().size(), 2u);
  EXPECT_EQ(reg_.pools()[0].name, "other");  // map order, like Snapshot::pools
  const PoolRecord* web = reg_.findPool("web");
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->cfg, &reg_.config().pools.at("web"));
  ASSERT_NE(web->stats, nullptr);
  EXPECT_EQ(web->stats->per_worker.size(), 2u);
  EXPECT_EQ(ids(*web), (std::vector<std::string>{"vm-0", "vm-1"}));
  const MemberRecord* m = web->find("vm-1");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->origin, MemberOrigin::kConfig);
  EXPECT_EQ(m->spec.address.toString(), "10.0.0.2:80");
  EXPECT_EQ(m->spec.fault_domain, 1u);
  EXPECT_EQ(m->health, HealthState::kUnknown);
  EXPECT_EQ(m->drain, DrainState::kNone);
  EXPECT_EQ(m->ready_since, clock_.now());
  EXPECT_EQ(m->added_at, clock_.wallNow());
  ASSERT_NE(m->stats, nullptr);
  EXPECT_EQ(m->stats->per_worker.size(), 2u);
  EXPECT_EQ(web->find("nope"), nullptr);
  EXPECT_EQ(reg_.findPool("nope"), nullptr);
  EXPECT_TRUE(hasEvent(reg_, "member_added", "vm-0"));
}

TEST(PoolRegistryNames, HealthAndDrainStateNames) {
  EXPECT_STREQ(healthStateName(HealthState::kUnknown), "unknown");
  EXPECT_STREQ(healthStateName(HealthState::kHealthy), "healthy");
  EXPECT_STREQ(healthStateName(HealthState::kUnhealthy), "unhealthy");
  EXPECT_STREQ(drainStateName(DrainState::kNone), "none");
  EXPECT_STREQ(drainStateName(DrainState::kDraining), "draining");
  EXPECT_STREQ(drainStateName(DrainState::kDrained), "drained");
}

TEST(PoolRegistryProbe, ProbeHealthyFollowsStateAndInitialState) {
  MemberRecord m;
  auto cfg = configFrom(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web: {}
  on: { health: {} }
  on_down: { health: { initial_state: unhealthy } }
)");
  const config::HealthCheck& off = cfg->pools.at("web").health;  // no probes: always healthy
  const config::HealthCheck& on = cfg->pools.at("on").health;
  const config::HealthCheck& on_down = cfg->pools.at("on_down").health;
  for (HealthState s : {HealthState::kUnknown, HealthState::kHealthy, HealthState::kUnhealthy}) {
    m.health = s;
    EXPECT_TRUE(m.probeHealthy(off));
  }
  m.health = HealthState::kUnknown;
  EXPECT_TRUE(m.probeHealthy(on));
  EXPECT_FALSE(m.probeHealthy(on_down));
  m.health = HealthState::kHealthy;
  EXPECT_TRUE(m.probeHealthy(on_down));
  m.health = HealthState::kUnhealthy;
  EXPECT_FALSE(m.probeHealthy(on));
}

TEST_F(PoolRegistryTest, UpsertAddsAndUpdatesApiMembers) {
  reg_.applyConfig(configFrom(kBase));
  uint64_t v = reg_.version();
  uint64_t pv = reg_.persistVersion();
  clock_.advance(5s);
  Result<bool> created = reg_.upsertMember("web", "vm-7", spec("10.0.0.7:80", 3, "2"));
  ASSERT_TRUE(created.isOk()) << created.status().toString();
  EXPECT_TRUE(*created);
  EXPECT_GT(reg_.version(), v);
  EXPECT_GT(reg_.persistVersion(), pv);
  const PoolRecord* web = reg_.findPool("web");
  EXPECT_EQ(ids(*web), (std::vector<std::string>{"vm-0", "vm-1", "vm-7"}));
  const MemberRecord* m = web->find("vm-7");
  EXPECT_EQ(m->origin, MemberOrigin::kApi);
  EXPECT_EQ(m->spec.weight, 3u);
  EXPECT_EQ(m->spec.zone, "2");
  EXPECT_EQ(m->ready_since, clock_.now());  // slow start counts from registration
  EXPECT_EQ(m->added_at, clock_.wallNow());
  auto stats = m->stats;
  ASSERT_NE(stats, nullptr);
  EXPECT_TRUE(hasEvent(reg_, "member_added", "vm-7"));

  // The same spec again changes nothing.
  v = reg_.version();
  pv = reg_.persistVersion();
  Result<bool> same = reg_.upsertMember("web", "vm-7", spec("10.0.0.7:80", 3, "2"));
  ASSERT_TRUE(same.isOk());
  EXPECT_FALSE(*same);
  EXPECT_EQ(reg_.version(), v);
  EXPECT_EQ(reg_.persistVersion(), pv);

  // Re-weighting keeps the record (stats block, health).
  reg_.findPool("web")->find("vm-7")->health = HealthState::kHealthy;
  Result<bool> updated = reg_.upsertMember("web", "vm-7", spec("10.0.0.7:80", 9, "2"));
  ASSERT_TRUE(updated.isOk());
  EXPECT_FALSE(*updated);
  m = reg_.findPool("web")->find("vm-7");
  EXPECT_EQ(m->spec.weight, 9u);
  EXPECT_EQ(m->stats, stats);
  EXPECT_EQ(m->health, HealthState::kHealthy);
  EXPECT_GT(reg_.persistVersion(), pv);
  EXPECT_TRUE(hasEvent(reg_, "member_updated", "vm-7"));
}

TEST_F(PoolRegistryTest, UpsertValidates) {
  reg_.applyConfig(configFrom(kBase));
  auto code = [&](const std::string& pool, const std::string& id, const MemberSpec& s) {
    return reg_.upsertMember(pool, id, s).status().code();
  };
  EXPECT_EQ(code("nope", "vm-9", spec("10.0.0.9:80")), StatusCode::kNotFound);
  EXPECT_EQ(code("web", "bad id", spec("10.0.0.9:80")), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", "", spec("10.0.0.9:80")), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", std::string(254, 'a'), spec("10.0.0.9:80")), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", "vm-9", spec("10.0.0.9:0")), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", "vm-9", spec("0.0.0.0:80")), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", "vm-9", MemberSpec{}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", "vm-9", spec("10.0.0.9:80", 1000001)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", "vm-9", spec("10.0.0.9:80", 1000000)), StatusCode::kOk);
  MemberSpec fd = spec("10.0.0.10:80");
  fd.fault_domain = 256;
  EXPECT_EQ(code("web", "vm-10", fd), StatusCode::kInvalidArgument);
  EXPECT_EQ(code("web", "vm-10", spec("10.0.0.10:80", 1, "bad\nzone")),
            StatusCode::kInvalidArgument);
  // Another member's address.
  Result<bool> dup = reg_.upsertMember("web", "vm-11", spec("10.0.0.1:80"));
  EXPECT_EQ(dup.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(dup.status().message().find("vm-0"), std::string::npos) << dup.status().message();
  // The same address in another pool is fine.
  EXPECT_EQ(code("other", "vm-11", spec("10.0.0.1:80")), StatusCode::kOk);
}

TEST_F(PoolRegistryTest, ReloadKeepsSurvivorsStateAndStats) {
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("web", "api-1", spec("10.0.0.50:80")).isOk());
  MemberRecord* vm0 = reg_.findPool("web")->find("vm-0");
  vm0->health = HealthState::kUnhealthy;
  vm0->ejected = true;
  vm0->consecutive_fail = 4;
  auto vm0_stats = vm0->stats;
  auto pool_stats = reg_.findPool("web")->stats;
  reg_.findPool("web")->ejections_total = 3;
  auto api_stats = reg_.findPool("web")->find("api-1")->stats;

  // vm-1 leaves the file, vm-2 joins, vm-0 gets a new weight; pool "other" goes away.
  reg_.applyConfig(configFrom(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
    mode: flexible
    members:
      - { id: vm-2, address: 10.0.0.3:80 }
      - { id: vm-0, address: 10.0.0.1:80, weight: 4 }
)"));
  ASSERT_EQ(reg_.pools().size(), 1u);
  const PoolRecord* web = reg_.findPool("web");
  EXPECT_EQ(web->stats, pool_stats);
  EXPECT_EQ(web->ejections_total, 3u);
  EXPECT_EQ(ids(*web), (std::vector<std::string>{"vm-2", "vm-0", "api-1"}));
  const MemberRecord* m = web->find("vm-0");
  EXPECT_EQ(m->spec.weight, 4u);
  EXPECT_EQ(m->health, HealthState::kUnhealthy);
  EXPECT_TRUE(m->ejected);
  EXPECT_EQ(m->consecutive_fail, 4u);
  EXPECT_EQ(m->stats, vm0_stats);
  EXPECT_EQ(web->find("api-1")->stats, api_stats);
  EXPECT_EQ(web->find("api-1")->origin, MemberOrigin::kApi);
  EXPECT_TRUE(hasEvent(reg_, "member_removed", "vm-1"));
  EXPECT_TRUE(hasEvent(reg_, "member_added", "vm-2"));
  bool pool_removed = false;
  for (const Event& e : reg_.events())
    pool_removed |= e.type == "pool_removed" && e.pool == "other";
  EXPECT_TRUE(pool_removed);
}

TEST_F(PoolRegistryTest, AddressChangeResetsEndpointState) {
  reg_.applyConfig(configFrom(kBase));
  MemberRecord* m = reg_.findPool("web")->find("vm-0");
  m->health = HealthState::kHealthy;
  m->ejected = true;
  m->load["cpu"] = 50;
  m->last_probe = ProbeOutcome{};
  auto stats = m->stats;
  clock_.advance(10s);
  ASSERT_TRUE(reg_.upsertMember("web", "vm-0", spec("10.0.0.99:80", 1, "1")).isOk());
  m = reg_.findPool("web")->find("vm-0");
  EXPECT_EQ(m->health, HealthState::kUnknown);
  EXPECT_FALSE(m->ejected);
  EXPECT_TRUE(m->load.empty());
  EXPECT_FALSE(m->last_probe.has_value());
  EXPECT_EQ(m->ready_since, clock_.now());
  EXPECT_EQ(m->stats, stats);
}

TEST_F(PoolRegistryTest, ApiOverridesOfConfigMembersPersistAcrossReloads) {
  auto cfg = configFrom(kBase);
  reg_.applyConfig(cfg);
  ASSERT_TRUE(reg_.upsertMember("web", "vm-0", spec("10.0.0.1:80", 7, "1")).isOk());
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->origin, MemberOrigin::kConfig);
  reg_.applyConfig(configFrom(kBase));
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->spec.weight, 7u);
  EXPECT_NE(reg_.stateJson().find("\"overrides\": [\n        {"), std::string::npos)
      << reg_.stateJson();

  // Giving the member back its file spec clears the override.
  ASSERT_TRUE(reg_.upsertMember("web", "vm-0", spec("10.0.0.1:80", 1, "1")).isOk());
  EXPECT_EQ(reg_.stateJson().find("vm-0"), std::string::npos) << reg_.stateJson();
  reg_.applyConfig(configFrom(std::string(kBase).replace(std::string(kBase).find("zone: \"1\""), 9,
                                                         "zone: \"1\", weight: 2")));
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->spec.weight, 2u);  // the file wins again
}

TEST_F(PoolRegistryTest, RemovingAConfigMemberPersistsAndPutRestoresIt) {
  reg_.applyConfig(configFrom(kBase));
  EXPECT_EQ(reg_.removeMember("web", "vm-0").code(), StatusCode::kOk);
  EXPECT_EQ(reg_.removeMember("web", "vm-0").code(), StatusCode::kNotFound);
  EXPECT_EQ(reg_.removeMember("nope", "vm-0").code(), StatusCode::kNotFound);
  EXPECT_TRUE(hasEvent(reg_, "member_removed", "vm-0"));
  reg_.applyConfig(configFrom(kBase));
  EXPECT_EQ(ids(*reg_.findPool("web")), (std::vector<std::string>{"vm-1"}));
  EXPECT_NE(reg_.stateJson().find("\"removed\": [\n        \"vm-0\""), std::string::npos)
      << reg_.stateJson();

  ASSERT_TRUE(reg_.upsertMember("web", "api-1", spec("10.0.0.50:80")).isOk());
  Result<bool> back = reg_.upsertMember("web", "vm-0", spec("10.0.0.1:80", 1, "1"));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_TRUE(*back);
  // Back at its place in the file order, before the API members.
  EXPECT_EQ(ids(*reg_.findPool("web")), (std::vector<std::string>{"vm-0", "vm-1", "api-1"}));
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->origin, MemberOrigin::kConfig);
  EXPECT_EQ(reg_.stateJson().find("vm-0"), std::string::npos);

  // Removing an API member forgets it entirely.
  EXPECT_EQ(reg_.removeMember("web", "api-1").code(), StatusCode::kOk);
  reg_.applyConfig(configFrom(kBase));
  EXPECT_EQ(ids(*reg_.findPool("web")), (std::vector<std::string>{"vm-0", "vm-1"}));
}

TEST_F(PoolRegistryTest, ApiMemberNamedByTheFileBecomesAConfigMember) {
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("web", "vm-5", spec("10.0.0.5:80", 3)).isOk());
  auto stats = reg_.findPool("web")->find("vm-5")->stats;
  std::string yaml = kBase;
  yaml.replace(yaml.find("  other: {}"), 11,
               "      - { id: vm-5, address: 10.0.0.6:80 }\n  other: {}");
  reg_.applyConfig(configFrom(yaml));
  const MemberRecord* m = reg_.findPool("web")->find("vm-5");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->origin, MemberOrigin::kConfig);
  EXPECT_EQ(m->spec.address.toString(), "10.0.0.6:80");
  EXPECT_EQ(m->spec.weight, 1u);
  EXPECT_EQ(m->stats, stats);
  EXPECT_EQ(reg_.stateJson().find("vm-5"), std::string::npos);
}

TEST_F(PoolRegistryTest, AnApiMemberWhoseAddressTheFileTakesIsDropped) {
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("web", "api-1", spec("10.0.0.3:80")).isOk());
  std::string yaml = kBase;
  yaml.replace(yaml.find("  other: {}"), 11,
               "      - { id: vm-2, address: 10.0.0.3:80 }\n  other: {}");
  uint64_t pv = reg_.persistVersion();
  reg_.applyConfig(configFrom(yaml));
  EXPECT_EQ(ids(*reg_.findPool("web")), (std::vector<std::string>{"vm-0", "vm-1", "vm-2"}));
  EXPECT_TRUE(hasEvent(reg_, "member_removed", "api-1"));
  EXPECT_GT(reg_.persistVersion(), pv);
}

TEST_F(PoolRegistryTest, ReloadWithTheSameFileDoesNotBumpPersistVersion) {
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("web", "api-1", spec("10.0.0.50:80")).isOk());
  uint64_t pv = reg_.persistVersion();
  uint64_t v = reg_.version();
  reg_.applyConfig(configFrom(kBase));
  EXPECT_EQ(reg_.persistVersion(), pv);
  EXPECT_GT(reg_.version(), v);
}

TEST_F(PoolRegistryTest, EffectiveConfigListsTheRegistryMembers) {
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("web", "api-1", spec("10.0.0.50:80", 2)).isOk());
  ASSERT_TRUE(reg_.upsertMember("web", "vm-1", spec("10.0.0.2:80", 6, "2")).isOk());
  ASSERT_TRUE(reg_.removeMember("web", "vm-0").isOk());
  auto eff = reg_.effectiveConfig();
  const config::Pool& web = eff->pools.at("web");
  ASSERT_EQ(web.members.size(), 2u);
  EXPECT_EQ(web.members[0].id, "vm-1");
  EXPECT_EQ(web.members[0].weight, 6u);
  EXPECT_EQ(web.members[1].id, "api-1");
  EXPECT_EQ(web.members[1].address.toString(), "10.0.0.50:80");
  EXPECT_EQ(web.drain_timeout, 10s);
  EXPECT_TRUE(eff->pools.at("other").members.empty());
  // The file's config is untouched.
  EXPECT_EQ(reg_.config().pools.at("web").members.size(), 2u);
}

TEST_F(PoolRegistryTest, DrainEndsWhenNothingIsInFlight) {
  reg_.applyConfig(configFrom(kBase));
  MemberRecord* m = reg_.findPool("web")->find("vm-0");
  m->stats->per_worker[0].rq_active.inc();
  m->stats->per_worker[1].rq_active.inc();
  uint64_t pv = reg_.persistVersion();
  ASSERT_TRUE(reg_.drainMember("web", "vm-0", std::nullopt).isOk());
  m = reg_.findPool("web")->find("vm-0");
  EXPECT_EQ(m->drain, DrainState::kDraining);
  EXPECT_EQ(m->drain_deadline, clock_.now() + 10s);  // the pool's drain_timeout
  EXPECT_GT(reg_.persistVersion(), pv);
  EXPECT_TRUE(hasEvent(reg_, "drain_started", "vm-0"));

  clock_.advance(1s);
  EXPECT_FALSE(reg_.tickDrains(clock_.now()));
  m->stats->per_worker[0].rq_active.dec();
  EXPECT_FALSE(reg_.tickDrains(clock_.now()));
  m->stats->per_worker[1].rq_active.dec();
  uint64_t v = reg_.version();
  EXPECT_TRUE(reg_.tickDrains(clock_.now()));
  EXPECT_GT(reg_.version(), v);
  EXPECT_EQ(m->drain, DrainState::kDrained);
  EXPECT_TRUE(hasEvent(reg_, "drained", "vm-0"));
  EXPECT_FALSE(reg_.tickDrains(clock_.now()));

  // Draining again changes nothing.
  v = reg_.version();
  EXPECT_TRUE(reg_.drainMember("web", "vm-0", 5s).isOk());
  EXPECT_EQ(m->drain, DrainState::kDrained);
  EXPECT_EQ(reg_.version(), v);
}

TEST_F(PoolRegistryTest, DrainEndsAtItsDeadline) {
  reg_.applyConfig(configFrom(kBase));
  MemberRecord* m = reg_.findPool("web")->find("vm-1");
  m->stats->per_worker[1].rq_active.inc(3);
  ASSERT_TRUE(reg_.drainMember("web", "vm-1", 2s).isOk());
  EXPECT_EQ(m->drain_deadline, clock_.now() + 2s);
  clock_.advance(1999ms);
  EXPECT_FALSE(reg_.tickDrains(clock_.now()));
  clock_.advance(1ms);
  EXPECT_TRUE(reg_.tickDrains(clock_.now()));
  EXPECT_EQ(m->drain, DrainState::kDrained);
  EXPECT_TRUE(hasEvent(reg_, "drain_timeout", "vm-1"));

  EXPECT_EQ(reg_.drainMember("web", "nope", std::nullopt).code(), StatusCode::kNotFound);
  EXPECT_EQ(reg_.drainMember("nope", "vm-1", std::nullopt).code(), StatusCode::kNotFound);
  EXPECT_EQ(reg_.drainMember("web", "vm-0", Duration(-1)).code(), StatusCode::kInvalidArgument);
}

TEST_F(PoolRegistryTest, EventsRingIsBounded) {
  for (int i = 0; i < 1500; ++i) reg_.addEvent("test", "web", "m", std::to_string(i));
  ASSERT_EQ(reg_.events().size(), PoolRegistry::kMaxEvents);
  EXPECT_EQ(reg_.events().front().seq, 501u);
  EXPECT_EQ(reg_.events().front().detail, "500");
  EXPECT_EQ(reg_.events().back().seq, 1500u);
  EXPECT_EQ(reg_.events().back().at, clock_.wallNow());
}

TEST_F(PoolRegistryTest, StateFileRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("state.json");
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("web", "api-1", spec("10.0.0.50:80", 2, "3")).isOk());
  clock_.advance(1h);
  ASSERT_TRUE(reg_.upsertMember("web", "api-0", spec("[2001:db8::5]:80")).isOk());
  ASSERT_TRUE(reg_.upsertMember("other", "o-1", spec("10.1.0.1:80")).isOk());
  ASSERT_TRUE(reg_.upsertMember("web", "vm-1", spec("10.0.0.2:8080", 5, "2")).isOk());
  ASSERT_TRUE(reg_.removeMember("web", "vm-0").isOk());
  reg_.findPool("web")->find("api-1")->stats->per_worker[0].rq_active.inc();
  ASSERT_TRUE(reg_.drainMember("web", "api-1", std::nullopt).isOk());
  ASSERT_TRUE(reg_.drainMember("web", "vm-1", std::nullopt).isOk());
  reg_.tickDrains(clock_.now());  // vm-1 has nothing in flight: drained
  ASSERT_TRUE(reg_.saveState(path).isOk());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const std::string text = readFile(path);
  EXPECT_EQ(text, reg_.stateJson());
  EXPECT_NE(text.find("\"version\": 1"), std::string::npos) << text;

  ManualClock clock2;
  clock2.advance(10min);
  PoolRegistry next(4, clock2);
  ASSERT_TRUE(next.loadState(path).isOk());
  next.applyConfig(configFrom(kBase));
  EXPECT_EQ(next.stateJson(), text);
  const PoolRecord* web = next.findPool("web");
  EXPECT_EQ(ids(*web), (std::vector<std::string>{"vm-1", "api-1", "api-0"}));
  const MemberRecord* api1 = web->find("api-1");
  EXPECT_EQ(api1->origin, MemberOrigin::kApi);
  EXPECT_EQ(api1->spec.weight, 2u);
  EXPECT_EQ(api1->spec.zone, "3");
  EXPECT_EQ(api1->drain, DrainState::kDraining);  // drains again from the start
  EXPECT_EQ(api1->drain_deadline, clock2.now() + 10s);
  EXPECT_EQ(api1->added_at, clock_.wallNow() - 1h);
  EXPECT_EQ(api1->stats->per_worker.size(), 4u);
  EXPECT_EQ(web->find("api-0")->spec.address.toString(), "[2001:db8::5]:80");
  EXPECT_EQ(web->find("vm-1")->spec.weight, 5u);
  EXPECT_EQ(web->find("vm-1")->spec.address.toString(), "10.0.0.2:8080");
  EXPECT_EQ(web->find("vm-1")->drain, DrainState::kDrained);
  EXPECT_EQ(ids(*next.findPool("other")), (std::vector<std::string>{"o-1"}));
  bool loaded_event = false;
  for (const Event& e : next.events()) loaded_event |= e.type == "state_loaded";
  EXPECT_TRUE(loaded_event);

  // A later save replaces the file.
  ASSERT_TRUE(next.removeMember("web", "api-0").isOk());
  ASSERT_TRUE(next.saveState(path).isOk());
  EXPECT_EQ(readFile(path).find("api-0"), std::string::npos);
}

TEST_F(PoolRegistryTest, StateOfPoolsNoLongerInTheConfigIsDropped) {
  TempDir dir;
  const std::string path = dir.file("state.json");
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("other", "o-1", spec("10.1.0.1:80")).isOk());
  ASSERT_TRUE(reg_.saveState(path).isOk());
  PoolRegistry next(1, clock_);
  ASSERT_TRUE(next.loadState(path).isOk());
  next.applyConfig(configFrom(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web: {}
)"));
  EXPECT_EQ(next.findPool("other"), nullptr);
  EXPECT_EQ(next.stateJson().find("o-1"), std::string::npos);
  bool dropped = false;
  for (const Event& e : next.events()) dropped |= e.type == "pool_removed" && e.pool == "other";
  EXPECT_TRUE(dropped);
}

TEST_F(PoolRegistryTest, MissingStateFileIsNotAnError) {
  TempDir dir;
  EXPECT_TRUE(reg_.loadState(dir.file("absent.json")).isOk());
  reg_.applyConfig(configFrom(kBase));
  EXPECT_EQ(ids(*reg_.findPool("web")), (std::vector<std::string>{"vm-0", "vm-1"}));
}

TEST_F(PoolRegistryTest, CorruptStateFileIsAnError) {
  TempDir dir;
  const std::string path = dir.file("state.json");
  struct Case {
    const char* text;
    const char* fragment;
  };
  const Case cases[] = {
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[", "not valid JSON"},
      {"", "not valid JSON"},
      {"[]", "expected an object"},
      {"{\"version\":2,\"pools\":{}}", "version"},
      {"{\"pools\":{}}", "version"},
      {"{\"version\":1}", "pools"},
      {"{\"version\":1,\"pools\":{},\"extra\":1}", "unknown key \"extra\""},
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a\"}]}}}", "address"},
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a\",\"address\":\"nope\"}]}}}",
       "pools.web.members[0].address"},
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a "
       "b\",\"address\":\"10.0.0.1:80\"}]}}}",
       "bad member id"},
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a\",\"address\":\"10.0.0.1:80\","
       "\"weight\":-1}]}}}",
       "weight"},
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a\",\"address\":\"10.0.0.1:80\","
       "\"drain\":\"maybe\"}]}}}",
       "drain"},
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a\",\"address\":\"10.0.0.1:80\"},"
       "{\"id\":\"a\",\"address\":\"10.0.0.2:80\"}]}}}",
       "duplicate member id"},
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a\",\"address\":\"10.0.0.1:80\"},"
       "{\"id\":\"b\",\"address\":\"10.0.0.1:80\"}]}}}",
       "duplicate address"},
      // Year 3000: its nanoseconds overflow WallTime (UBSan in the admin_json fuzzer's corpus).
      {"{\"version\":1,\"pools\":{\"web\":{\"members\":[{\"id\":\"a\",\"address\":\"10.0.0.1:80\","
       "\"added_at_ms\":32503680000000}]}}}",
       "added_at_ms"},
      {"{\"version\":1,\"pools\":{\"web\":{\"removed\":[\"vm-0\",\"vm-0\"]}}}", "appears twice"},
      {"{\"version\":1,\"pools\":{\"web\":{\"removed\":\"vm-0\"}}}", "expected an array"},
      {"{\"version\":1,\"pools\":{\"web\":{\"drains\":{\"vm-0\":\"gone\"}}}}", "drains.vm-0"},
      {"{\"version\":1,\"pools\":{\"web\":{\"overrides\":[{\"id\":\"vm-0\",\"address\":\"10.0.0.1:"
       "80\","
       "\"drain\":\"none\"}]}}}",
       "unknown key \"drain\""},
  };
  for (const Case& c : cases) {
    writeFile(path, c.text);
    PoolRegistry r(1, clock_);
    Status st = r.loadState(path);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(c.fragment), std::string::npos) << c.text << " -> " << st.message();
    // Nothing half-loaded.
    r.applyConfig(configFrom(kBase));
    EXPECT_EQ(r.stateJson(), PoolRegistry(1, clock_).stateJson());
  }
  // A directory where the file should be: an I/O error, not "missing".
  std::filesystem::create_directory(dir.file("dir.json"));
  Status st = reg_.loadState(dir.file("dir.json"));
  EXPECT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("dir.json"), std::string::npos) << st.message();
}

TEST_F(PoolRegistryTest, FailedSaveLeavesTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("state.json");
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.upsertMember("web", "api-1", spec("10.0.0.50:80")).isOk());
  ASSERT_TRUE(reg_.saveState(path).isOk());
  const std::string old_text = readFile(path);
  ASSERT_TRUE(reg_.upsertMember("web", "api-2", spec("10.0.0.51:80")).isOk());

  // The temporary file cannot be created (a directory is in the way): works even as root.
  std::filesystem::create_directory(path + ".tmp");
  Status st = reg_.saveState(path);
  EXPECT_EQ(st.code(), StatusCode::kIo);
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("Is a directory"), std::string::npos) << st.message();
  EXPECT_EQ(readFile(path), old_text);
  std::filesystem::remove(path + ".tmp");

  // A directory that does not exist.
  st = reg_.saveState(dir.file("missing/state.json"));
  EXPECT_EQ(st.code(), StatusCode::kIo);
  EXPECT_NE(st.message().find("No such file or directory"), std::string::npos) << st.message();

  // An unwritable directory (permissions do not stop root, so only as another user).
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(dir.path().c_str(), 0500), 0);
    st = reg_.saveState(path);
    EXPECT_EQ(st.code(), StatusCode::kIo);
    EXPECT_NE(st.message().find("Permission denied"), std::string::npos) << st.message();
    EXPECT_EQ(readFile(path), old_text);
    ASSERT_EQ(::chmod(dir.path().c_str(), 0700), 0);
  }

  // Once the way is clear the new state is written.
  ASSERT_TRUE(reg_.saveState(path).isOk());
  EXPECT_NE(readFile(path).find("api-2"), std::string::npos);
}

TEST_F(PoolRegistryTest, UniformPoolsRefuseMembersThatDiffer) {
  reg_.applyConfig(configFrom(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
    mode: uniform
    members:
      - { id: vm-0, address: 10.0.0.1:80, weight: 2, version: v1 }
)"));
  MemberSpec s = spec("10.0.0.2:80", 2);
  s.version = "v1";
  EXPECT_TRUE(reg_.upsertMember("web", "vm-1", s).isOk());
  s.weight = 3;
  Result<bool> r = reg_.upsertMember("web", "vm-2", spec("10.0.0.3:80", 3));
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("uniform"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("weight 2"), std::string::npos) << r.status().message();
  MemberSpec v2 = spec("10.0.0.3:80", 2);
  v2.version = "v2";
  r = reg_.upsertMember("web", "vm-2", v2);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("\"v1\""), std::string::npos) << r.status().message();
  // During a rolling upgrade the new version is allowed too; at its end it is the pool's.
  reg_.setUpgradeVersion("web", "v2");
  EXPECT_TRUE(reg_.upsertMember("web", "vm-2", v2).isOk());
  reg_.finishUpgrade("web");
  EXPECT_EQ(reg_.findPool("web")->model_version, "v2");
  MemberSpec v1 = spec("10.0.0.4:80", 2);
  v1.version = "v1";
  EXPECT_FALSE(reg_.upsertMember("web", "vm-3", v1).isOk());
}

TEST_F(PoolRegistryTest, VersionChangeMeansProbesAgainAndProtectionPersists) {
  reg_.applyConfig(configFrom(kBase));
  MemberSpec s = spec("10.0.0.7:80", 1);
  s.version = "v1";
  s.scale_in_protected = true;
  ASSERT_TRUE(reg_.upsertMember("web", "vm-7", s).isOk());
  MemberRecord* m = reg_.findPool("web")->find("vm-7");
  m->health = HealthState::kHealthy;
  s.version = "v2";
  ASSERT_TRUE(reg_.upsertMember("web", "vm-7", s).isOk());
  m = reg_.findPool("web")->find("vm-7");
  EXPECT_EQ(m->health, HealthState::kUnknown);  // another program: probe it again
  EXPECT_TRUE(m->spec.scale_in_protected);
  TempDir dir;
  const std::string path = dir.path() + "/state.json";
  ASSERT_TRUE(reg_.saveState(path).isOk());
  PoolRegistry next(2, clock_);
  ASSERT_TRUE(next.loadState(path).isOk());
  next.applyConfig(configFrom(kBase));
  const MemberRecord* back = next.findPool("web")->find("vm-7");
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(back->spec.version, "v2");
  EXPECT_TRUE(back->spec.scale_in_protected);
}

TEST_F(PoolRegistryTest, UndrainReturnsAMemberToTraffic) {
  reg_.applyConfig(configFrom(kBase));
  ASSERT_TRUE(reg_.drainMember("web", "vm-0", std::nullopt).isOk());
  reg_.tickDrains(clock_.now());
  ASSERT_EQ(reg_.findPool("web")->find("vm-0")->drain, DrainState::kDrained);
  clock_.advance(5s);
  uint64_t v = reg_.version();
  ASSERT_TRUE(reg_.undrainMember("web", "vm-0", "upgraded").isOk());
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->drain, DrainState::kNone);
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->ready_since, clock_.now());
  EXPECT_GT(reg_.version(), v);
  EXPECT_TRUE(hasEvent(reg_, "undrained", "vm-0"));
  EXPECT_EQ(reg_.undrainMember("web", "nope", "").code(), StatusCode::kNotFound);
}

TEST_F(PoolRegistryTest, MembersThatJoinLateWaitForTheirProbes) {
  reg_.applyConfig(configFrom(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
    health: { type: http, path: /health }
    members:
      - { id: vm-0, address: 10.0.0.1:80 }
)"));
  const config::HealthCheck& hc = reg_.findPool("web")->cfg->health;
  MemberRecord* at_start = reg_.findPool("web")->find("vm-0");
  at_start->ready_since = MonoTime{};  // present at process start: the initial state applies
  EXPECT_TRUE(at_start->healthEligible(hc));
  ASSERT_TRUE(reg_.upsertMember("web", "vm-1", spec("10.0.0.2:80")).isOk());
  MemberRecord* late = reg_.findPool("web")->find("vm-1");
  EXPECT_TRUE(late->probeHealthy(hc));     // unknown counts as the initial state...
  EXPECT_FALSE(late->healthEligible(hc));  // ...but a member that joined late waits
  late->health = HealthState::kHealthy;
  EXPECT_TRUE(late->healthEligible(hc));
}

TEST(StateFilePath, NextToTheConfigUnlessSet) {
  config::Config cfg;
  cfg.path = "/etc/scalegate/scalegate.yaml";
  EXPECT_EQ(stateFilePath(cfg), "/etc/scalegate/scalegate.state.json");
  cfg.admin.state_file = "/var/lib/sg/state.json";
  EXPECT_EQ(stateFilePath(cfg), "/var/lib/sg/state.json");
}

}  // namespace
}  // namespace scalegate::control
