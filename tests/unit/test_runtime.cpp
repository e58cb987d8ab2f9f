#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "hf_config.h"
#include "model.h"
#include "parallel.h"
#include "runtime.h"
#include "test_common.h"

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

// A library caller's own LibTorch count, which set_threads would pin at 1 under OpenBLAS.
TEST(Runtime, SingleThreadedOpsGivesLibTorchsCountBackAsItWas) {
  const int torch_before = at::get_num_threads();
  const int64_t before = compute_threads();
  at::set_num_threads(2);
  {
    SingleThreadedOps one;
    EXPECT_EQ(at::get_num_threads(), 1);
  }
  EXPECT_EQ(at::get_num_threads(), 2);
  EXPECT_GE(compute_threads(), 2);
  set_threads(before);
  at::set_num_threads(torch_before);
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
    // Without a little work per item, the other thread ran all 10,000 while the throwing one was
    // descheduled (seen under ctest -j2 on 2 cores); this way that takes it 0.2 s.
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  };
  try {
    parallel_items(10000, 2, bad);
    FAIL() << "the error was lost";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "item 3");
  }
  EXPECT_LT(calls.load(), 10000);
}

namespace {

ModelConfig llama_shape(int64_t n_layer, int64_t n_embd, int64_t n_ff, int64_t n_vocab, bool tied) {
  ModelConfig c;
  c.model_type = "llama";
  c.n_layer = n_layer;
  c.n_embd = n_embd;
  c.n_ff = n_ff;
  c.n_vocab = n_vocab;
  c.n_head = n_embd / 128;
  c.n_head_kv = c.n_head / 8;
  c.head_dim = 128;
  c.tie_word_embeddings = tied;
  return c;
}

}  // namespace

// A model too large for one card goes over several in contiguous runs of layers: each device's
// share of the bytes (embedding on the first, lm_head on the last) within one layer of an even
// share.
TEST(Placement, LayersSplitInContiguousRunsOfEvenBytes) {
  for (bool tied : {false, true}) {
    const ModelConfig c = llama_shape(80, 8192, 28672, 128256, tied);  // Llama-3-70B's shapes
    EXPECT_EQ(split_layers(c, 1), std::vector<size_t>(80, 0));
    for (size_t n : {2u, 3u, 4u, 8u}) {
      const auto at = split_layers(c, n);
      ASSERT_EQ(at.size(), 80u);
      EXPECT_EQ(at.front(), 0u);
      EXPECT_EQ(at.back(), n - 1);
      for (size_t i = 1; i < at.size(); ++i) {
        EXPECT_TRUE(at[i] == at[i - 1] || at[i] == at[i - 1] + 1) << "layer " << i << " of " << n;
      }
      const ParamCounts p = count_parameters(c);
      const double layer = double(p.total() - p.embed - p.lm_head - c.n_embd) / 80.0;
      std::vector<double> bytes(n, 0.0);
      bytes.front() += double(p.embed);
      bytes.back() += double(tied ? p.embed : p.lm_head) + double(c.n_embd);
      for (size_t d : at) bytes[d] += layer;
      double sum = 0;
      for (double b : bytes) sum += b;
      for (size_t d = 0; d < n; ++d)
        EXPECT_NEAR(bytes[d], sum / double(n), layer) << "device " << d << " of " << n;
    }
  }
  // More devices than layers: every layer still has one, in order.
  const auto few = split_layers(llama_shape(2, 1024, 4096, 32000, false), 4);
  EXPECT_LE(few[0], few[1]);
}

TEST(Placement, AutoSplitsOnlyWhatOneCardCannotHold) {
  EXPECT_EQ(gpus_for_weights(15.0, 80.0, 4), 1u);   // an 8B model on an 80 GB card
  EXPECT_EQ(gpus_for_weights(64.0, 80.0, 1), 1u);   // one card: nothing to split over
  EXPECT_EQ(gpus_for_weights(131.0, 80.0, 2), 2u);  // a 70B model
  EXPECT_EQ(gpus_for_weights(20.0, 24.0, 4), 4u);   // over 80% of a 24 GB card
  EXPECT_EQ(gpus_for_weights(1.0, 24.0, 0), 0u);    // no GPU
}

TEST(Placement, ModelDeviceListsAreCheckedNamingTheOption) {
  EXPECT_EQ(resolve_model_devices("cpu"), std::vector<torch::Device>{torch::kCPU});
  const std::string twice = test::error_of([] { resolve_model_devices("cpu,cpu"); });
  EXPECT_NE(twice.find("--device"), std::string::npos) << twice;
  EXPECT_NE(twice.find("listed twice"), std::string::npos) << twice;
  if (!torch::cuda::is_available()) {
    const std::string all = test::error_of([] { resolve_model_devices("all"); });
    EXPECT_NE(all.find("--device all"), std::string::npos) << all;
  }
}

TEST(Placement, DescribedAsRunsOfLayers) {
  const std::vector<torch::Device> two = {torch::Device(torch::kCUDA, 0), torch::kCPU};
  EXPECT_EQ(describe_placement({0, 0, 0, 1, 1, 1}, two), "layers 0-2 on cuda:0, 3-5 on cpu");
  EXPECT_EQ(describe_placement({0, 1, 1}, two), "layer 0 on cuda:0, 1-2 on cpu");
  EXPECT_EQ(describe_placement({0, 0}, {torch::kCPU}), "layers 0-1 on cpu");
}

// A CUDA build maps cuBLAS too: it was reported as the "reference BLAS" on the GPU machine.
TEST(Runtime, CublasIsNotTakenForTheCpuBlas) {
  EXPECT_FALSE(is_cpu_blas_library(
      "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublasLt.so.13"));
  EXPECT_FALSE(is_cpu_blas_library("/usr/local/cuda/lib64/libcublas.so.12"));
  EXPECT_TRUE(is_cpu_blas_library("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"));
  EXPECT_TRUE(is_cpu_blas_library("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"));
  EXPECT_TRUE(is_cpu_blas_library("/opt/intel/lib/libmkl_rt.so.2"));
}
