// The CLI on CUDA: --gpu-memory makes the card behave as a smaller one (batches sized to the limit,
// the peak reported and held under it, weights that do not fit refused with a hint).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "test_common.h"

namespace {

using lorank::test::expect_failure;
using lorank::test::run_lorank;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

nlohmann::json probe_json(const std::string& args) {
  auto r = run_lorank("probe --quiet --json --device cuda --sample 64 " + args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output.substr(r.output.find('{')))["probe"];
}

TEST(CudaCli, GpuMemoryLimitHoldsAndThePeakIsReported) {
  REQUIRE_CUDA();
  const int64_t gib = int64_t(1) << 30;
  auto whole = probe_json("");
  auto limited = probe_json("--gpu-memory 0.25");
  EXPECT_GT(whole["peak_gpu_bytes"].get<int64_t>(), 0);
  EXPECT_GT(limited["peak_gpu_bytes"].get<int64_t>(), 0);
  EXPECT_LE(limited["peak_gpu_bytes"].get<int64_t>(), gib / 4);
  EXPECT_EQ(limited["supervised_tokens"], whole["supervised_tokens"]);
  EXPECT_NEAR(limited["base_loss"].get<double>(), whole["base_loss"].get<double>(), 1e-2);
}

TEST(CudaCli, WeightsOverTheLimitAreRefusedWithAHint) {
  REQUIRE_CUDA();
  // tiny-llama's fp32 weights are 21 MB: a 4 MiB card cannot hold them.
  expect_failure("probe --quiet --device cuda --dtype fp32 --gpu-memory 0.004",
                 {"tiny-llama", "do not fit in GPU memory", "hint:"});
  expect_failure("probe --quiet --device cuda --gpu-memory 100000",
                 {"--gpu-memory", "more than the card holds", "hint:"});
}

}  // namespace
