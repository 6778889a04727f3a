// Maglev table build time (Google Benchmark): the table control rebuilds for a pool whenever
// membership, health or weights change (dataplane/maglev.h over common/maglev.h). The issue's
// bar: 1,000 members at M = 65537 in under 5 ms.
//   build/release/bench/maglev_bench [--benchmark_filter=...]

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "common/maglev.h"
#include "dataplane/maglev.h"

namespace {

void buildTable(benchmark::State& state, bool weighted) {
  const auto n = static_cast<int>(state.range(0));
  const auto m = static_cast<uint32_t>(state.range(1));
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back("vm-" + std::to_string(i) + ":80");
  std::vector<scalegate::MaglevBackend> backends;
  std::vector<uint16_t> ids;
  for (int i = 0; i < n; ++i) {
    backends.push_back({names[i], weighted ? static_cast<uint32_t>(1 + i % 4) : 1u});
    ids.push_back(static_cast<uint16_t>(i));
  }
  for (auto _ : state) {
    auto table = scalegate::dataplane::buildBackendTable(backends, ids, m);
    benchmark::DoNotOptimize(table.data());
  }
  state.counters["members"] = n;
  state.counters["M"] = m;
}

void BM_MaglevBuild(benchmark::State& state) { buildTable(state, false); }
void BM_MaglevBuildWeighted(benchmark::State& state) { buildTable(state, true); }

BENCHMARK(BM_MaglevBuild)
    ->Args({10, 65537})
    ->Args({100, 65537})
    ->Args({1000, 65537})
    ->Args({1000, 655373})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaglevBuildWeighted)->Args({1000, 65537})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
