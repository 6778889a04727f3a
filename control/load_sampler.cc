#include "control/load_sampler.h"

#include <algorithm>
#include <map>

namespace scalegate::control {
namespace {

using l7proxy::Counter;
using l7proxy::MemberWorkerStats;
using l7proxy::PoolWorkerStats;

uint64_t memberSum(const l7proxy::MemberStats& s, Counter MemberWorkerStats::*field) {
  return s.sum([field](const MemberWorkerStats& w) -> const Counter& { return w.*field; });
}

uint64_t answers(const l7proxy::MemberStats& s) {
  uint64_t t = 0;
  for (const MemberWorkerStats& w : s.per_worker)
    for (const Counter& c : w.responses_by_class) t += c.get();
  return t;
}

std::vector<uint64_t> poolBuckets(const l7proxy::PoolStats& s) {
  std::vector<uint64_t> b(l7proxy::kDurationBuckets.size() + 1, 0);
  for (const PoolWorkerStats& w : s.per_worker)
    for (size_t i = 0; i < b.size(); ++i) b[i] += w.duration.buckets[i].get();
  return b;
}

double rate(uint64_t now, uint64_t before, double seconds) {
  return now >= before ? static_cast<double>(now - before) / seconds : 0.0;
}

}  // namespace

double asPercent(double reported) { return reported <= 1.0 ? reported * 100.0 : reported; }

double histogramQuantileMs(const std::vector<uint64_t>& counts, double q) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) return 0;
  const double rank = q * static_cast<double>(total);
  double seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    if (seen + static_cast<double>(counts[i]) >= rank) {
      double lo = i == 0 ? 0.0 : l7proxy::kDurationBuckets[i - 1];
      // Above the last bound nothing is known but "more than it": report the bound.
      if (i >= l7proxy::kDurationBuckets.size()) return lo * 1000.0;
      double hi = l7proxy::kDurationBuckets[i];
      double frac = (rank - seen) / static_cast<double>(counts[i]);
      return (lo + (hi - lo) * std::clamp(frac, 0.0, 1.0)) * 1000.0;
    }
    seen += static_cast<double>(counts[i]);
  }
  return l7proxy::kDurationBuckets.back() * 1000.0;
}

std::vector<PoolLoadSample> LoadSampler::sample(const PoolRegistry& registry, MonoTime now) {
  const double seconds =
      primed_ ? std::max(1e-3, std::chrono::duration<double>(now - last_).count()) : 1.0;
  const bool have_rates = primed_;
  primed_ = true;
  last_ = now;
  std::vector<PoolLoadSample> out;
  std::unordered_map<std::string, MemberPrev> next_members;
  std::unordered_map<std::string, PoolPrev> next_pools;
  for (const PoolRecord& p : registry.pools()) {
    PoolLoadSample s;
    s.pool = p.name;
    const config::HealthCheck& hc = p.cfg->health;
    // Weight normalisation for flexible pools: mean weight of the members in service.
    double weight_sum = 0;
    uint32_t in_service = 0;
    for (const MemberRecord& m : p.members) {
      if (!m.healthEligible(hc) || m.ejected || m.drain != DrainState::kNone) continue;
      weight_sum += m.spec.weight;
      ++in_service;
    }
    const bool flexible = p.cfg->mode == config::PoolMode::kFlexible;
    const double mean_weight = in_service > 0 ? weight_sum / in_service : 1.0;

    std::map<std::string, std::vector<double>> per_member;
    uint64_t pool_answers = 0, pool_errors = 0;
    double pool_rps = 0;
    for (const MemberRecord& m : p.members) {
      if (!m.stats) continue;
      const std::string key = p.name + '\n' + m.spec.id;
      MemberPrev cur;
      cur.stats = m.stats.get();
      cur.rq = memberSum(*m.stats, &MemberWorkerStats::rq_total);
      cur.bytes_in = memberSum(*m.stats, &MemberWorkerStats::bytes_in);
      cur.bytes_out = memberSum(*m.stats, &MemberWorkerStats::bytes_out);
      cur.answers = answers(*m.stats);
      cur.errors = 0;
      for (const MemberWorkerStats& w : m.stats->per_worker)
        cur.errors += w.responses_by_class[5].get() + w.cx_connect_fail.get();
      auto it = members_.find(key);
      const bool known = have_rates && it != members_.end() && it->second.stats == cur.stats;
      next_members[key] = cur;
      if (!known) continue;
      const MemberPrev& prev = it->second;
      const double rps = rate(cur.rq, prev.rq, seconds);
      pool_rps += rps;
      pool_answers += cur.answers >= prev.answers ? cur.answers - prev.answers : 0;
      pool_errors += cur.errors >= prev.errors ? cur.errors - prev.errors : 0;
      if (!m.healthEligible(hc) || m.ejected || m.drain != DrainState::kNone) continue;
      const double norm = flexible && m.spec.weight > 0 ? mean_weight / m.spec.weight : 1.0;
      per_member["requests_per_second"].push_back(rps * norm);
      per_member["bytes_in_per_second"].push_back(rate(cur.bytes_in, prev.bytes_in, seconds));
      per_member["bytes_out_per_second"].push_back(rate(cur.bytes_out, prev.bytes_out, seconds));
      per_member["active_connections"].push_back(
          static_cast<double>(memberSum(*m.stats, &MemberWorkerStats::cx_active)));
      per_member["in_flight"].push_back(
          static_cast<double>(memberSum(*m.stats, &MemberWorkerStats::rq_active)));
      for (const auto& [name, value] : m.load) {
        if (name == "cpu") {
          per_member["cpu"].push_back(asPercent(value));
        } else if (name == "mem" || name == "memory") {
          per_member["memory"].push_back(asPercent(value));
        } else {
          per_member[name].push_back(value);
        }
      }
      ++s.members_in_service;
    }

    std::vector<double> p_q;
    if (p.stats) {
      PoolPrev cur{p.stats.get(), poolBuckets(*p.stats)};
      auto it = pools_.find(p.name);
      if (have_rates && it != pools_.end() && it->second.stats == cur.stats) {
        std::vector<uint64_t> delta(cur.buckets.size(), 0);
        for (size_t i = 0; i < delta.size(); ++i)
          delta[i] =
              cur.buckets[i] >= it->second.buckets[i] ? cur.buckets[i] - it->second.buckets[i] : 0;
        s.p95_ms = histogramQuantileMs(delta, 0.95);
        s.p99_ms = histogramQuantileMs(delta, 0.99);
      }
      next_pools[p.name] = std::move(cur);
    }
    s.requests_per_second = pool_rps;
    s.error_rate = pool_answers > 0 ? 100.0 * static_cast<double>(pool_errors) / pool_answers : 0.0;
    if (have_rates) {
      for (auto& [name, values] : per_member) s.member_metrics.emplace_back(name, values);
      s.pool_metrics = {{"latency_p95_ms", s.p95_ms},
                        {"latency_p99_ms", s.p99_ms},
                        {"error_rate", s.error_rate},
                        {"requests_per_second_total", s.requests_per_second},
                        {"members_in_service", static_cast<double>(s.members_in_service)}};
    }
    out.push_back(std::move(s));
  }
  members_ = std::move(next_members);
  pools_ = std::move(next_pools);
  return out;
}

}  // namespace scalegate::control
