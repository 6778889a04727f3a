#include "l7proxy/balancer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

#include "common/hash.h"
#include "common/maglev.h"

namespace scalegate::l7proxy {
namespace {

__extension__ using Uint128 = unsigned __int128;

constexpr uint64_t kPermilleFull = 1000;
constexpr uint64_t kPermilleMin = 100;
// Maglev: re-hashes tried when the slot's member is not eligible, before walking the table.
constexpr int kMaglevRehashes = 8;

// Uniform value in [0, bound) from a 64-bit random value (multiply-high, no division).
inline uint64_t scaleTo(uint64_t random, uint64_t bound) {
  return static_cast<uint64_t>((static_cast<Uint128>(random) * bound) >> 64);
}

// splitmix64 sequence: one add and one finalizer per draw; reproducible from the seed.
class Prng {
 public:
  explicit Prng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_);
  }
  uint64_t below(uint64_t bound) { return scaleTo(next(), bound); }

 private:
  uint64_t state_;
};

class BalancerBase : public Balancer {
 public:
  BalancerBase(std::span<const MemberView> members, Duration slow_start, uint64_t seed)
      : members_(members.begin(), members.end()), slow_start_(slow_start), rng_(seed) {
    if (slow_start_ <= Duration::zero()) return;
    for (const MemberView& m : members_) {
      if (m.ready_since == MonoTime{}) continue;
      MonoTime end = m.ready_since + slow_start_;
      if (!ramping_ || end > ramp_end_) ramp_end_ = end;
      ramping_ = true;
    }
  }

 protected:
  int32_t size() const { return static_cast<int32_t>(members_.size()); }

  static bool excluded(int32_t i, const PickInput& in) {
    if (in.exclude == nullptr) return false;
    for (uint32_t k = 0; k < in.exclude_count; ++k) {
      if (in.exclude[k] == i) return true;
    }
    return false;
  }

  bool eligible(int32_t i, const PickInput& in) const {
    if (i < 0 || i >= size()) return false;
    const MemberView& m = members_[i];
    return m.healthy && m.weight > 0 && !excluded(i, in);
  }

  bool anyEligible(const PickInput& in) const {
    for (int32_t i = 0; i < size(); ++i) {
      if (eligible(i, in)) return true;
    }
    return false;
  }

  // Weight in thousandths after slow start. Caller checks eligibility.
  uint64_t effectiveWeight(int32_t i, MonoTime now) const {
    const MemberView& m = members_[i];
    if (!ramping_ || now >= ramp_end_) return m.weight * kPermilleFull;
    return m.weight * uint64_t{slowStartPermille(m.ready_since, now, slow_start_)};
  }

  // Random eligible member other than `skip`, with probability proportional to its effective
  // weight; -1 if there is none.
  int32_t weightedRandom(const PickInput& in, int32_t skip) {
    uint64_t total = 0;
    for (int32_t i = 0; i < size(); ++i) {
      if (i != skip && eligible(i, in)) total += effectiveWeight(i, in.now);
    }
    if (total == 0) return -1;
    uint64_t r = rng_.below(total);
    int32_t last = -1;
    for (int32_t i = 0; i < size(); ++i) {
      if (i == skip || !eligible(i, in)) continue;
      uint64_t w = effectiveWeight(i, in.now);
      if (r < w) return i;
      r -= w;
      last = i;
    }
    return last;  // not reached: the draws add up to total
  }

  // Deterministic choice by hash among eligible members, proportional to configured weight;
  // used by the hash balancers when their table has nothing eligible or is missing.
  int32_t hashFallback(const PickInput& in, uint64_t hash) const {
    uint64_t total = 0;
    for (int32_t i = 0; i < size(); ++i) {
      if (eligible(i, in)) total += members_[i].weight;
    }
    if (total == 0) return -1;
    uint64_t r = scaleTo(mix64(hash), total);
    for (int32_t i = 0; i < size(); ++i) {
      if (!eligible(i, in)) continue;
      if (r < members_[i].weight) return i;
      r -= members_[i].weight;
    }
    return -1;
  }

  std::vector<MemberView> members_;
  Duration slow_start_;
  bool ramping_ = false;
  MonoTime ramp_end_{};  // from here on every member has its full weight
  Prng rng_;
};

// nginx's smooth weighted round robin: spreads a heavy member's turns between the others'.
class RoundRobinBalancer final : public BalancerBase {
 public:
  RoundRobinBalancer(std::span<const MemberView> members, Duration slow_start, uint64_t seed)
      : BalancerBase(members, slow_start, seed), current_(members.size(), 0) {}

  int32_t pick(const PickInput& in) override {
    int64_t total = 0;
    int32_t best = -1;
    for (int32_t i = 0; i < size(); ++i) {
      if (!eligible(i, in)) continue;
      auto w = static_cast<int64_t>(effectiveWeight(i, in.now));
      current_[i] += w;
      total += w;
      if (best < 0 || current_[i] > current_[best]) best = i;
    }
    if (best >= 0) current_[best] -= total;
    return best;
  }

 private:
  std::vector<int64_t> current_;
};

// Power of two choices (Envoy LEAST_REQUEST, choice_count 2).
class LeastRequestBalancer final : public BalancerBase {
 public:
  using BalancerBase::BalancerBase;

  int32_t pick(const PickInput& in) override {
    int32_t a = weightedRandom(in, -1);
    if (a < 0 || in.active == nullptr) return a;
    int32_t b = weightedRandom(in, a);
    if (b < 0) return a;
    // active_a / weight_a vs active_b / weight_b without division or overflow.
    Uint128 load_a = static_cast<Uint128>(in.active[a]) * effectiveWeight(b, in.now);
    Uint128 load_b = static_cast<Uint128>(in.active[b]) * effectiveWeight(a, in.now);
    if (load_a < load_b) return a;
    if (load_b < load_a) return b;
    return (rng_.next() & 1) != 0 ? a : b;
  }
};

class RandomBalancer final : public BalancerBase {
 public:
  using BalancerBase::BalancerBase;
  int32_t pick(const PickInput& in) override { return weightedRandom(in, -1); }
};

class MaglevBalancer final : public BalancerBase {
 public:
  MaglevBalancer(std::span<const MemberView> members, const config::LbTables* tables,
                 Duration slow_start, uint64_t seed)
      : BalancerBase(members, slow_start, seed), tables_(tables) {}

  int32_t pick(const PickInput& in) override {
    if (tables_ == nullptr || tables_->maglev.empty()) return hashFallback(in, in.hash);
    const std::vector<int32_t>& table = tables_->maglev;
    const uint64_t slots = table.size();
    uint64_t slot = in.hash % slots;
    if (eligible(table[slot], in)) return table[slot];
    if (!anyEligible(in)) return -1;
    // Re-hashing spreads the keys of an ineligible member over all others (as IPVS mh does)
    // instead of piling them onto the next slot's owner.
    uint64_t h = in.hash;
    for (int attempt = 1; attempt <= kMaglevRehashes; ++attempt) {
      h = mix64(h + static_cast<uint64_t>(attempt));
      slot = h % slots;
      if (eligible(table[slot], in)) return table[slot];
    }
    for (uint64_t step = 1; step < slots; ++step) {
      if (++slot == slots) slot = 0;
      if (eligible(table[slot], in)) return table[slot];
    }
    return hashFallback(in, in.hash);  // only members the table does not know are eligible
  }

 private:
  const config::LbTables* tables_;
};

class RingHashBalancer final : public BalancerBase {
 public:
  RingHashBalancer(std::span<const MemberView> members, const config::LbTables* tables,
                   Duration slow_start, uint64_t seed)
      : BalancerBase(members, slow_start, seed), tables_(tables) {}

  int32_t pick(const PickInput& in) override {
    if (tables_ == nullptr || tables_->ring.empty()) return hashFallback(in, in.hash);
    const auto& ring = tables_->ring;
    auto it = std::lower_bound(ring.begin(), ring.end(), in.hash,
                               [](const std::pair<uint64_t, int32_t>& point, uint64_t hash) {
                                 return point.first < hash;
                               });
    size_t idx = it == ring.end() ? 0 : static_cast<size_t>(it - ring.begin());
    if (eligible(ring[idx].second, in)) return ring[idx].second;
    if (!anyEligible(in)) return -1;
    for (size_t step = 1; step < ring.size(); ++step) {
      if (++idx == ring.size()) idx = 0;
      if (eligible(ring[idx].second, in)) return ring[idx].second;
    }
    return hashFallback(in, in.hash);
  }

 private:
  const config::LbTables* tables_;
};

std::vector<std::pair<uint64_t, int32_t>> buildRing(std::span<const MemberView> members) {
  std::vector<int32_t> chosen;
  uint64_t min_weight = 0;
  uint64_t total_weight = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    const MemberView& m = members[i];
    if (!m.healthy || m.weight == 0) continue;
    chosen.push_back(static_cast<int32_t>(i));
    min_weight = min_weight == 0 ? m.weight : std::min<uint64_t>(min_weight, m.weight);
    total_weight += m.weight;
  }
  if (chosen.empty()) return {};

  // Points per unit of the smallest weight. It depends on the other members only while the
  // ring would be smaller than kRingMinPoints, so removing a member normally leaves every other
  // member's points where they were and moves only the removed member's keys.
  const double units = static_cast<double>(total_weight) / static_cast<double>(min_weight);
  double per_unit = std::max<double>(kRingPointsPerMember, std::ceil(kRingMinPoints / units));
  if (per_unit * units > kRingMaxPoints) per_unit = kRingMaxPoints / units;

  std::vector<std::pair<uint64_t, int32_t>> ring;
  std::string key;
  for (int32_t i : chosen) {
    const MemberView& m = members[i];
    double share = per_unit * static_cast<double>(m.weight) / static_cast<double>(min_weight);
    auto points = std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(share)));
    key.assign(m.id);
    key.push_back('#');
    const size_t prefix = key.size();
    for (uint64_t k = 0; k < points; ++k) {
      char digits[24];
      auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), k);
      (void)ec;  // 24 digits always hold a uint64_t
      key.resize(prefix);
      key.append(digits, end);
      ring.emplace_back(hashString(key), i);
    }
  }
  std::sort(ring.begin(), ring.end());
  return ring;
}

std::vector<int32_t> buildMaglev(std::span<const MemberView> members, uint32_t table_size) {
  std::vector<MaglevBackend> backends;
  std::vector<int32_t> member_of;  // backend index -> member index
  for (size_t i = 0; i < members.size(); ++i) {
    const MemberView& m = members[i];
    if (!m.healthy || m.weight == 0) continue;
    backends.push_back(MaglevBackend{m.id, m.weight});
    member_of.push_back(static_cast<int32_t>(i));
  }
  if (backends.empty()) return {};
  if (!isPrime(table_size) || table_size <= backends.size()) {
    uint32_t floor = std::max<uint32_t>(table_size, static_cast<uint32_t>(backends.size()) + 1);
    table_size = nextPrime(floor);
  }
  std::vector<int32_t> table = buildMaglevTable(backends, table_size);
  for (int32_t& entry : table) {
    if (entry >= 0) entry = member_of[entry];
  }
  return table;
}

}  // namespace

HashTables HashTables::build(config::BalanceAlgorithm algo, std::span<const MemberView> members,
                             uint32_t maglev_table_size) {
  HashTables tables;
  switch (algo) {
    case config::BalanceAlgorithm::kMaglev:
      tables.maglev = buildMaglev(members, maglev_table_size);
      break;
    case config::BalanceAlgorithm::kRingHash:
      tables.ring = buildRing(members);
      break;
    case config::BalanceAlgorithm::kRoundRobin:
    case config::BalanceAlgorithm::kLeastRequest:
    case config::BalanceAlgorithm::kRandom:
      break;
  }
  return tables;
}

std::unique_ptr<Balancer> Balancer::create(config::BalanceAlgorithm algo,
                                           std::span<const MemberView> members,
                                           const config::LbTables* tables, Duration slow_start,
                                           uint64_t seed) {
  switch (algo) {
    case config::BalanceAlgorithm::kRoundRobin:
      return std::make_unique<RoundRobinBalancer>(members, slow_start, seed);
    case config::BalanceAlgorithm::kLeastRequest:
      return std::make_unique<LeastRequestBalancer>(members, slow_start, seed);
    case config::BalanceAlgorithm::kRandom:
      return std::make_unique<RandomBalancer>(members, slow_start, seed);
    case config::BalanceAlgorithm::kMaglev:
      return std::make_unique<MaglevBalancer>(members, tables, slow_start, seed);
    case config::BalanceAlgorithm::kRingHash:
      return std::make_unique<RingHashBalancer>(members, tables, slow_start, seed);
  }
  return std::make_unique<RoundRobinBalancer>(members, slow_start, seed);
}

double slowStartFactor(MonoTime ready_since, MonoTime now, Duration window) {
  if (window <= Duration::zero() || ready_since == MonoTime{}) return 1.0;
  Duration elapsed = now - ready_since;
  if (elapsed <= Duration::zero()) return 0.1;
  if (elapsed >= window) return 1.0;
  double fraction = static_cast<double>(elapsed.count()) / static_cast<double>(window.count());
  return 0.1 + 0.9 * fraction;
}

uint32_t slowStartPermille(MonoTime ready_since, MonoTime now, Duration window) {
  if (window <= Duration::zero() || ready_since == MonoTime{}) return kPermilleFull;
  Duration elapsed = now - ready_since;
  if (elapsed <= Duration::zero()) return kPermilleMin;
  if (elapsed >= window) return kPermilleFull;
  // 0 < elapsed < window; 128-bit product so long windows cannot overflow.
  Uint128 ramp = static_cast<Uint128>(elapsed.count()) * (kPermilleFull - kPermilleMin) /
                 static_cast<uint64_t>(window.count());
  return static_cast<uint32_t>(kPermilleMin + static_cast<uint64_t>(ramp));
}

}  // namespace scalegate::l7proxy
