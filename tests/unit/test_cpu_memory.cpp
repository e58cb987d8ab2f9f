// lorank's CPU allocator (src/cpu_memory.h): test_common.cpp installs it as the lorank binary does.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "cpu_memory.h"

namespace lorank {
namespace {

constexpr int64_t kMiB = int64_t(1) << 20;

torch::Tensor bytes_of(int64_t n) {
  return torch::empty({n}, torch::kUInt8);
}
uintptr_t address(const torch::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr());
}

class CpuBlockCache : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_block_cache_stats().installed) GTEST_SKIP() << "LORANK_CPU_BLOCK_CACHE=0";
    use_cpu_block_cache(0);  // nothing cached from earlier tests
    use_cpu_block_cache();
  }
  void TearDown() override { use_cpu_block_cache(); }  // the default cap again
};

TEST_F(CpuBlockCache, ALargeBlockIsReusedOnHugePageBoundaries) {
  uintptr_t first = 0;
  {
    auto t = bytes_of(40 * kMiB).fill_(7);
    first = address(t);
    EXPECT_EQ(first % (2 * kMiB), 0u);
  }
  const auto before = cpu_block_cache_stats();
  EXPECT_GE(before.cached_bytes, 40 * kMiB);
  auto again = bytes_of(40 * kMiB - 5000);
  const auto after = cpu_block_cache_stats();
  EXPECT_EQ(address(again), first);
  EXPECT_EQ(after.hits, before.hits + 1);
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.cached_bytes, before.cached_bytes - 40 * kMiB);
  again.fill_(3);
  EXPECT_EQ(again.sum().item<int64_t>(), 3 * again.numel());
}

TEST_F(CpuBlockCache, ARequestTakesNoBlockOverHalfAgainItsSize) {
  uintptr_t big = 0;
  {
    auto t = bytes_of(100 * kMiB);
    big = address(t);
  }
  auto small = bytes_of(40 * kMiB);
  EXPECT_NE(address(small), big);
  auto fits = bytes_of(70 * kMiB);  // wastes 30 of 70: taken
  EXPECT_EQ(address(fits), big);
}

TEST_F(CpuBlockCache, FreeBlocksPastTheCapAreUnmapped) {
  use_cpu_block_cache(64 * kMiB);
  { auto a = bytes_of(40 * kMiB), b = bytes_of(48 * kMiB), c = bytes_of(56 * kMiB); }
  const auto s = cpu_block_cache_stats();
  EXPECT_LE(s.cached_bytes, 64 * kMiB);
  EXPECT_GE(s.cached_bytes, 40 * kMiB);  // the smallest stays: the largest go first
  use_cpu_block_cache(0);
  EXPECT_EQ(cpu_block_cache_stats().cached_bytes, 0);
}

TEST_F(CpuBlockCache, SmallerBlocksComeFromTheHeapAligned) {
  const auto before = cpu_block_cache_stats();
  for (int64_t n : {int64_t(1), int64_t(100), 70 * int64_t(1024), 5 * kMiB, 31 * kMiB}) {
    auto t = bytes_of(n).fill_(1);
    EXPECT_EQ(address(t) % 64, 0u) << n;
    EXPECT_EQ(t.data_ptr<uint8_t>()[n - 1], 1) << n;  // no reduction: it would allocate
  }
  const auto after = cpu_block_cache_stats();
  EXPECT_EQ(after.hits + after.misses, before.hits + before.misses);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(bytes_of(0).numel(), 0);
}

TEST_F(CpuBlockCache, BlocksFreedOnOtherThreadsComeBack) {
  const auto before = cpu_block_cache_stats();
  std::vector<torch::Tensor> made(4);
  at::parallel_for(0, 4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) made[size_t(i)] = bytes_of(33 * kMiB + i);
  });
  EXPECT_EQ(cpu_block_cache_stats().live_bytes,
            before.live_bytes + 4 * 33 * kMiB + 3 * 4096);  // whole pages
  made.clear();
  EXPECT_EQ(cpu_block_cache_stats().live_bytes, before.live_bytes);
}

}  // namespace
}  // namespace lorank
