#include "common/hash.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace scalegate {
namespace {

TEST(HashTest, SameInputSameOutput) {
  const std::string s = "vm-17.pool-web";
  EXPECT_EQ(hashString(s), hashString(std::string(s)));
  EXPECT_EQ(hashBytes(s.data(), s.size(), 42), hashBytes(s.data(), s.size(), 42));
  EXPECT_EQ(hashBytes(nullptr, 0), hashBytes("", 0));
}

TEST(HashTest, DifferentSeedsDiffer) {
  std::set<uint64_t> seen;
  for (uint64_t seed = 0; seed < 1000; ++seed) seen.insert(hashString("member", seed));
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_NE(hashString("", 0), hashString("", 1));
}

TEST(HashTest, LengthAndTrailingZerosMatter) {
  const char zeros[32] = {};
  std::set<uint64_t> seen;
  for (size_t len = 0; len <= sizeof(zeros); ++len) seen.insert(hashBytes(zeros, len));
  EXPECT_EQ(seen.size(), sizeof(zeros) + 1);
  EXPECT_NE(hashString("a"), hashString(std::string("a\0", 2)));
}

TEST(HashTest, NoCollisionsOverManyShortKeys) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 200000; ++i) seen.insert(hashString("vm-" + std::to_string(i)));
  EXPECT_EQ(seen.size(), 200000u);
}

// Flips every input bit of many random inputs and checks that every output bit flips with a
// probability near 1/2 (strict avalanche criterion): each (input bit, output bit) frequency
// within 5.5 sigma, their chi-square near its degrees of freedom, and ~32 bits flipped.
// One-byte inputs are enumerated: 256 inputs form 128 distinct flip pairs per input bit.
void checkAvalanche(size_t len, int random_trials) {
  const int trials = len == 1 ? 256 : random_trials;
  const double samples = len == 1 ? 128.0 : trials;
  uint64_t rng = 0x1234567 + len;
  std::vector<unsigned char> input(len);
  std::vector<int> flips(len * 8 * 64, 0);
  double total_bits = 0;
  for (int t = 0; t < trials; ++t) {
    for (auto& byte : input) {
      rng = mix64(rng + 0x9e3779b97f4a7c15ULL);
      byte = static_cast<unsigned char>(rng);
    }
    if (len == 1) input[0] = static_cast<unsigned char>(t);
    const uint64_t base = hashBytes(input.data(), len, 7);
    for (size_t bit = 0; bit < len * 8; ++bit) {
      input[bit / 8] ^= static_cast<unsigned char>(1U << (bit % 8));
      const uint64_t diff = base ^ hashBytes(input.data(), len, 7);
      input[bit / 8] ^= static_cast<unsigned char>(1U << (bit % 8));
      total_bits += std::popcount(diff);
      for (int out = 0; out < 64; ++out) flips[bit * 64 + out] += (diff >> out) & 1;
    }
  }
  EXPECT_NEAR(total_bits / (trials * len * 8.0), 32.0, 0.5) << "len " << len;
  const double sigma = 0.5 / std::sqrt(samples);
  double chi2 = 0;
  for (size_t i = 0; i < flips.size(); ++i) {
    const double p = static_cast<double>(flips[i]) / trials;
    const double z = (p - 0.5) / sigma;
    chi2 += z * z;
    ASSERT_LT(std::fabs(z), 5.5) << "len " << len << " in bit " << i / 64 << " out bit " << i % 64
                                 << " p " << p;
  }
  EXPECT_LT(chi2 / static_cast<double>(flips.size()), 1.3) << "len " << len;
}

TEST(HashTest, AvalancheAcrossLengths) {
  for (size_t len : {1u, 2u, 4u, 8u, 13u, 16u, 31u, 40u}) checkAvalanche(len, 2000);
}

TEST(HashTest, SeedAvalanche) {
  int flips[64][64] = {};
  const int trials = 2000;
  for (int t = 0; t < trials; ++t) {
    const uint64_t seed = mix64(static_cast<uint64_t>(t));
    const uint64_t base = hashString("key", seed);
    for (int bit = 0; bit < 64; ++bit) {
      const uint64_t diff = base ^ hashString("key", seed ^ (uint64_t{1} << bit));
      for (int out = 0; out < 64; ++out) flips[bit][out] += (diff >> out) & 1;
    }
  }
  for (auto& row : flips) {
    for (int count : row) {
      EXPECT_GT(count, trials * 0.4);
      EXPECT_LT(count, trials * 0.6);
    }
  }
}

TEST(HashTest, Mix64IsBijectiveOnSampleAndAvalanches) {
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < 100000; ++i) seen.insert(mix64(i));
  EXPECT_EQ(seen.size(), 100000u);
  double bits = 0;
  const int trials = 5000;
  for (int t = 0; t < trials; ++t) {
    for (int bit = 0; bit < 64; ++bit) {
      bits += std::popcount(mix64(static_cast<uint64_t>(t)) ^
                            mix64(static_cast<uint64_t>(t) ^ (uint64_t{1} << bit)));
    }
  }
  EXPECT_NEAR(bits / (trials * 64.0), 32.0, 0.5);
}

TEST(HashTest, LowBitsAreUniformForSequentialKeys) {
  // Maglev and ring lookups reduce hashes modulo small numbers: sequential keys must spread.
  constexpr int kBuckets = 64;
  constexpr int kKeys = 640000;
  std::vector<int> counts(kBuckets, 0);
  for (uint32_t i = 0; i < kKeys; ++i) {
    unsigned char buf[4];
    std::memcpy(buf, &i, sizeof(i));
    ++counts[hashBytes(buf, sizeof(buf)) % kBuckets];
  }
  double chi2 = 0;
  const double expected = static_cast<double>(kKeys) / kBuckets;
  for (int c : counts) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 120.0);  // 63 degrees of freedom; p < 1e-5 beyond ~120
}

}  // namespace
}  // namespace scalegate
