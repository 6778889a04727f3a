#include "common/maglev.h"

#include <algorithm>

#include "common/hash.h"

namespace scalegate {
namespace {

// Part of the table format: changing either seed changes every table on every node.
constexpr uint64_t kOffsetSeed = 0x4d61676c65764f66ULL;  // "MaglevOf"
constexpr uint64_t kSkipSeed = 0x4d61676c65765370ULL;    // "MaglevSp"

struct Permutation {
  int32_t backend;  // index into the caller's span
  uint64_t weight;
  uint64_t position;  // next candidate slot: offset + j * skip (mod M)
  uint64_t skip;
  uint64_t credit = 0;
};

}  // namespace

bool isPrime(uint32_t n) {
  if (n < 2) return false;
  if (n < 4) return true;
  if (n % 2 == 0 || n % 3 == 0) return false;
  for (uint64_t d = 5; d * d <= n; d += 6) {
    if (n % d == 0 || n % (d + 2) == 0) return false;
  }
  return true;
}

uint32_t nextPrime(uint32_t n) {
  constexpr uint32_t kLargestPrime = 4294967291U;  // largest prime below 2^32
  if (n > kLargestPrime) return 0;
  if (n <= 2) return 2;
  uint32_t candidate = n | 1U;
  while (!isPrime(candidate)) candidate += 2;
  return candidate;
}

std::vector<int32_t> buildMaglevTable(std::span<const MaglevBackend> backends,
                                      uint32_t table_size) {
  if (!isPrime(table_size) || table_size <= backends.size()) return {};
  const uint64_t m = table_size;
  std::vector<int32_t> table(table_size, -1);

  // Turn order by name (then input index for duplicate names) so the input order does not
  // change which backend claims a contested slot.
  std::vector<int32_t> order;
  order.reserve(backends.size());
  for (size_t i = 0; i < backends.size(); ++i) {
    if (backends[i].weight > 0) order.push_back(static_cast<int32_t>(i));
  }
  if (order.empty()) return table;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    if (backends[a].name != backends[b].name) return backends[a].name < backends[b].name;
    return a < b;
  });

  std::vector<Permutation> perms;
  perms.reserve(order.size());
  uint64_t max_weight = 0;
  for (int32_t i : order) {
    const MaglevBackend& b = backends[i];
    uint64_t offset = hashString(b.name, kOffsetSeed) % m;
    uint64_t skip = hashString(b.name, kSkipSeed) % (m - 1) + 1;  // 1..M-1, coprime with prime M
    perms.push_back(Permutation{i, b.weight, offset, skip});
    max_weight = std::max<uint64_t>(max_weight, b.weight);
  }

  // Weighted turn-taking: every round each backend earns its weight in credit and claims one
  // slot per max_weight of credit, so the heaviest backend claims a slot every round and slot
  // counts follow the weights. With equal weights this is the paper's plain round-robin fill.
  uint64_t filled = 0;
  while (true) {
    for (Permutation& p : perms) {
      p.credit += p.weight;
      if (p.credit < max_weight) continue;
      p.credit -= max_weight;
      while (table[p.position] >= 0) {
        p.position += p.skip;
        if (p.position >= m) p.position -= m;
      }
      table[p.position] = p.backend;
      p.position += p.skip;
      if (p.position >= m) p.position -= m;
      if (++filled == m) return table;
    }
  }
}

}  // namespace scalegate
