#pragma once
// Request load balancing over one pool's members: round_robin (smooth weighted), least_request
// (power of two choices), random (weighted), maglev and ring_hash (consistent hashing on an
// affinity key), with Envoy-style slow start for round_robin, least_request and random.
//
// Threads: the control thread builds HashTables once per pool and snapshot and creates one
// Balancer per worker; a Balancer is then used only by its worker (it keeps round-robin state
// and a PRNG) and never allocates or locks in pick().

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "config/model.h"
#include "config/snapshot.h"

namespace scalegate::l7proxy {

// One pool member as the balancer sees it. Index in the span = member index everywhere.
struct MemberView {
  uint32_t weight = 1;  // 0 = never picked (drained)
  bool healthy = true;
  MonoTime ready_since{};  // start of its slow-start ramp; MonoTime{} = no ramp (full weight)
  std::string_view id;     // stable member id; hashed for ring points and Maglev permutations
};

struct PickInput {
  uint64_t hash = 0;  // affinity key hash (maglev / ring_hash)
  const uint32_t* active =
      nullptr;  // per-member in-flight requests on this worker (least_request); may be null
  const int32_t* exclude = nullptr;  // members already tried for this request (retries)
  uint32_t exclude_count = 0;
  MonoTime now{};
};

// Ring hash sizing (Envoy's minimum_ring_size is 1024). Each member gets
// max(kRingPointsPerMember, enough for kRingMinPoints in total) points per unit of the smallest
// weight, scaled by its weight; the whole ring is capped at kRingMaxPoints. 512 points keep
// every member's share within about ±12% of its weight share up to ~100 members (256 gave
// ±17% at 40), at 8 KiB of ring per member.
inline constexpr uint32_t kRingMinPoints = 1024;
inline constexpr uint32_t kRingPointsPerMember = 512;
inline constexpr uint32_t kRingMaxPoints = 1U << 20;

// Immutable per-pool tables shared by all workers; control builds them once per snapshot and
// keeps them in the snapshot (config::LbTables: slot -> member index, sorted ring points).
struct HashTables : config::LbTables {
  // Builds the table `algo` needs (maglev or ring_hash; nothing for the others) from the
  // healthy members with weight > 0. Tables stay empty when no member qualifies. A
  // maglev_table_size that is not a prime above the member count is raised to the next one.
  // Control thread.
  static HashTables build(config::BalanceAlgorithm algo, std::span<const MemberView> members,
                          uint32_t maglev_table_size);
};

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Worker thread. Returns a member index, or -1 when no member is eligible (eligible =
  // healthy, weight > 0, not excluded). No allocation, no locks.
  virtual int32_t pick(const PickInput& in) = 0;
  // members is copied (the id views must stay valid: the snapshot owns them). tables must
  // outlive the balancer (the snapshot owns it); null means "hash over eligible members by
  // weight" for maglev / ring_hash. seed makes random choices reproducible. Control thread.
  static std::unique_ptr<Balancer> create(config::BalanceAlgorithm algo,
                                          std::span<const MemberView> members,
                                          const config::LbTables* tables, Duration slow_start,
                                          uint64_t seed);
};

// Slow start: weight multiplier at `now` for a member ready since `ready_since`: linear from
// 0.1 to 1.0 over `window` (Envoy's min_weight_percent 10%, aggression 1.0); window 0 -> 1.0.
// ready_since == MonoTime{} -> 1.0; now before ready_since -> 0.1.
double slowStartFactor(MonoTime ready_since, MonoTime now, Duration window);

// The same multiplier in thousandths (100..1000), integer-only, as the balancers use it.
uint32_t slowStartPermille(MonoTime ready_since, MonoTime now, Duration window);

}  // namespace scalegate::l7proxy
