#include <ATen/Parallel.h>
#include <gtest/gtest.h>

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
