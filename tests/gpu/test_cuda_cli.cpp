// The CLI on CUDA: --gpu-memory makes the card behave as a smaller one (batches sized to the limit,
// the peak reported and held under it, weights that do not fit refused with a hint).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "test_common.h"

namespace {

using lorank::test::expect_failure;
using lorank::test::make_temp_dir;
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

// Several trainings on one GPU: each process gets an even share of the card (said on the sweep's
// first line) as its --gpu-memory; more than fit beside the weights, or --gpu-memory shares over
// the card, are refused before any training starts.
TEST(CudaCli, SweepJobsOnOneGpuShareItsMemory) {
  REQUIRE_CUDA();
  const std::string dir = make_temp_dir("cuda-jobs");
  const std::string sweep = "sweep --device cuda --data " +
                            lorank::test::asset("data/cmudict.jsonl") +
                            " --batch 4 --max-steps 2 --n-evals 1 --val-fraction 0.25 ";
  auto r = run_lorank(sweep + "--ranks 1,2 --lrs 3e-3 --jobs 2 --out " + dir + "/ok");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 at a time on cuda"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(", each within "), std::string::npos) << r.output;
  // 200 trainings of tiny-llama at once: under its 1.03 GiB each on any card under 400 GiB.
  std::string lrs;
  for (int i = 1; i <= 23; ++i) lrs += (lrs.empty() ? "" : ",") + std::to_string(i) + "e-4";
  expect_failure(sweep + "--ranks 1,2,4,8,16,32,64,128,256 --lrs " + lrs + " --jobs 200 --out " +
                     dir + "/many",
                 {"too many trainings at once", "--jobs", "hint:"});
  expect_failure(sweep + "--ranks 1,2 --lrs 3e-3 --jobs 2 --gpu-memory 100000 --out " + dir +
                     "/over",
                 {"--gpu-memory", "more than the card holds", "hint:"});
}

}  // namespace
