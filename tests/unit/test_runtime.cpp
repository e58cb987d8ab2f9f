#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "parallel.h"
#include "runtime.h"

using namespace lorank;

// Under OpenBLAS (Debian's LibTorch) --threads must reach OpenBLAS and leave LibTorch at one
// thread: LibTorch's spinning threads beside OpenBLAS's made CPU runs 1.4-1.8x slower.
TEST(Runtime, ThreadsGoToTheLibraryThatMultiplies) {
  const bool openblas = runtime_info(torch::kCPU).blas.rfind("OpenBLAS", 0) == 0;
  const int64_t before = compute_threads();
  set_threads(2);
  EXPECT_EQ(compute_threads(), 2);
  if (openblas) EXPECT_EQ(at::get_num_threads(), 1) << "LibTorch threads beside OpenBLAS's";
  set_threads(1);
  EXPECT_EQ(compute_threads(), 1);
  set_threads(before);
}

TEST(Runtime, ZeroThreadsKeepsTheDefault) {
  const int64_t before = compute_threads();
  set_threads(0);
  EXPECT_EQ(compute_threads(), before);
}

TEST(Runtime, SingleThreadedOpsGivesTheThreadsBack) {
  const int64_t before = compute_threads();
  set_threads(2);
  {
    SingleThreadedOps one;
    EXPECT_EQ(compute_threads(), 1);
  }
  EXPECT_EQ(compute_threads(), 2);
  set_threads(before);
}

TEST(Parallel, EveryItemOnceWhateverTheThreadsAndChunks) {
  for (size_t threads : {1, 2, 5}) {
    for (size_t chunk : {1, 3, 64}) {
      std::vector<std::atomic<int>> seen(100);
      parallel_items(
          seen.size(), threads, [&](size_t i) { ++seen[i]; }, chunk);
      for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i].load(), 1) << i;
    }
  }
  parallel_items(0, 4, [](size_t) { FAIL() << "no items, no calls"; });
}

TEST(Parallel, AnItemsErrorReachesTheCallerAndStopsTheRest) {
  std::atomic<int> calls{0};
  auto bad = [&](size_t i) {
    ++calls;
    if (i == 3) throw std::runtime_error("item 3");
  };
  try {
    parallel_items(10000, 2, bad);
    FAIL() << "the error was lost";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "item 3");
  }
  EXPECT_LT(calls.load(), 10000);
}
