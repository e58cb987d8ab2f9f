// The trainer on CUDA: fp32 agrees with the CPU run, bf16 weights with bf16 autocast learn,
// activation checkpointing replays the CUDA generator, and a resumed run matches an uninterrupted
// one (atomics in the backward of index ops make CUDA runs equal only to rounding), and a real
// out-of-memory recomputes blocks, then halves the micro-batch. Sweeps with trainings at once, each
// on its own stream (and on a second GPU when there is one), give the results of one at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "compat.h"
#include "model.h"
#include "model/trainer_fixtures.h"
#include "sweep.h"
#include "test_common.h"

namespace lorank {
namespace {

using test::cmudict;
using test::lora_r4;
using test::short_run;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

std::unique_ptr<Model> load(torch::Device device, torch::ScalarType dtype) {
  LoadOptions lo;
  lo.device = device;
  lo.dtype = dtype;
  return Model::load(test::trainer_model_dir(), lo);
}

std::vector<double> losses(Model& model, const TrainOptions& opts, const LoraConfig& lora,
                           int steps) {
  Trainer t(model, lora, cmudict(), opts);
  std::vector<double> out;
  for (int i = 0; i < steps; ++i) out.push_back(t.step().loss);
  return out;
}

double max_abs_diff(const std::map<std::string, torch::Tensor>& a,
                    const std::map<std::string, torch::Tensor>& b) {
  double d = 0;
  for (const auto& [k, t] : a) d = std::max(d, (t - b.at(k)).abs().max().item<double>());
  return d;
}

TEST(CudaTrainer, Fp32MatchesTheCpuRun) {
  REQUIRE_CUDA();
  auto cpu = load(torch::kCPU, torch::kFloat32);
  auto gpu = load(torch::Device(torch::kCUDA, 0), torch::kFloat32);
  TrainOptions o = short_run(4);
  o.autocast = false;  // fp32 throughout: same data order and A init, so the same losses
  auto l_cpu = losses(*cpu, o, lora_r4(), 4);
  auto l_gpu = losses(*gpu, o, lora_r4(), 4);
  for (size_t i = 0; i < l_cpu.size(); ++i) EXPECT_NEAR(l_gpu[i], l_cpu[i], 1e-3) << "step " << i;
}

TEST(CudaTrainer, Bf16WithAutocastLearns) {
  REQUIRE_CUDA();
  auto gpu = load(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  TrainOptions o = short_run(12);
  o.lr = 3e-3;
  Trainer t(*gpu, lora_r4(), cmudict(), o);
  const double before = t.evaluate(cmudict().train);
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(std::isfinite(t.step().loss));
  EXPECT_LT(t.evaluate(cmudict().train), before - 0.1);
  for (const auto& m : t.adapters().modules()) EXPECT_EQ(m.A.scalar_type(), torch::kFloat32);
}

TEST(CudaTrainer, CheckpointingReplaysTheCudaGenerator) {
  REQUIRE_CUDA();
  auto gpu = load(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  LoraConfig lora = lora_r4();
  lora.dropout = 0.1;
  TrainOptions o = short_run(3);
  auto plain = losses(*gpu, o, lora, 3);
  o.checkpointing = true;
  auto ckpt = losses(*gpu, o, lora, 3);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_NEAR(ckpt[i], plain[i], 1e-3) << "step " << i;
}

TEST(CudaTrainer, ResumeMatchesAnUninterruptedRun) {
  REQUIRE_CUDA();
  auto gpu = load(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  LoraConfig lora = lora_r4();
  lora.dropout = 0.1;
  TrainOptions opts = short_run(4);
  opts.n_evals = 2;
  TrainOutput out;
  out.progress = false;
  out.dir = test::make_temp_dir("cuda-whole");
  std::map<std::string, torch::Tensor> whole, parts;
  {
    Trainer t(*gpu, lora, cmudict(), opts);
    t.run(out);
    whole = t.adapters().state_dict();
  }
  out.dir = test::make_temp_dir("cuda-parts");
  {
    TrainOptions first = opts;
    first.stop_after = 2;
    Trainer t(*gpu, lora, cmudict(), first);
    ASSERT_FALSE(t.run(out).finished);
  }
  out.resume = true;
  {
    Trainer t(*gpu, lora, cmudict(), opts);
    ASSERT_TRUE(t.run(out).finished);
    parts = t.adapters().state_dict();
  }
  EXPECT_LT(max_abs_diff(whole, parts), 1e-4);
}

// 32 examples of 480 tokens, every token supervised: the fp32 logits of one batch alone take 1.5 GB.
TrainData long_examples() {
  TrainData d;
  for (int i = 0; i < 32; ++i) {
    Example e;
    for (int t = 0; t < 480; ++t) e.ids.push_back(int32_t(10 + (i * 131 + t * 17) % 4000));
    e.loss_mask.assign(e.ids.size(), 1);
    e.loss_mask[0] = 0;
    d.train.push_back(e);
  }
  return d;
}

// No injection: ballast fills the device in 256 MiB blocks, then 1 GiB goes back to the caching
// allocator. A batch of 32 does not fit in that, so the trainer must recompute blocks, then halve
// its micro-batch, until one does, and the step's loss must equal the unconstrained one. (The gpu
// label runs serially.)
TEST(CudaTrainer, RealOutOfMemoryRecomputesOrHalvesTheMicroBatch) {
  REQUIRE_CUDA();
  auto gpu = load(torch::Device(torch::kCUDA, 0), torch::kFloat32);
  const TrainData data = long_examples();
  TrainOptions o = short_run(1);
  o.batch = 32;
  o.autocast = false;
  double free_loss = 0;
  {
    Trainer t(*gpu, lora_r4(), data, o);
    free_loss = t.step().loss;
  }
  compat::empty_cuda_cache();
  std::vector<torch::Tensor> ballast;
  const auto bytes = torch::TensorOptions().dtype(torch::kUInt8).device(torch::kCUDA, 0);
  while (ballast.size() < 4096) {  // 1 TiB would mean the allocator never says no
    try {
      ballast.push_back(torch::empty({int64_t(256) << 20}, bytes));
    } catch (const c10::Error& e) {
      if (!compat::is_out_of_memory(e)) throw;
      break;
    }
  }
  ASSERT_GE(ballast.size(), 8u);
  ASSERT_LT(ballast.size(), 4096u);
  ballast.resize(ballast.size() - 4);
  testing::internal::CaptureStderr();
  Trainer t(*gpu, lora_r4(), data, o);
  const StepMetrics m = t.step();
  const bool recomputed = gpu->checkpointing();
  const std::string err = testing::internal::GetCapturedStderr();
  ballast.clear();
  compat::empty_cuda_cache();
  std::cout << "micro-batch " << t.micro_batch() << ", blocks recomputed " << recomputed << "\n";
  EXPECT_NE(err.find("CUDA out of memory at micro-batch 32"), std::string::npos) << err;
  EXPECT_TRUE(recomputed) << "the first out-of-memory turns recomputation on";
  EXPECT_NEAR(m.loss, free_loss, 1e-4 * free_loss);
}

TEST(CudaTrainer, SweepRunsOnStreamsAndGpusAtOnceGiveTheResultsOfOneAtATime) {
  REQUIRE_CUDA();
  auto gpu = load(torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  SweepOptions opts;
  opts.ranks = {1, 2, 4, 8};
  opts.lrs = {3e-3};
  opts.lora.rslora = true;
  opts.train = short_run(6);
  opts.train.n_evals = 2;
  TrainData data = cmudict();
  data.test = cmudict().val;
  SweepOutput one;
  one.dir = test::make_temp_dir("cuda-sweep-one");
  one.progress = false;
  const SweepResult a = run_sweep(*gpu, data, opts, one);
  ASSERT_TRUE(a.complete);
  std::vector<std::unique_ptr<Model>> replicas;
  std::vector<Model*> models = {gpu.get()};
  const int64_t n_gpu = int64_t(torch::cuda::device_count());
  for (int64_t i = 1; i < 4; ++i) {
    replicas.push_back(gpu->replica(torch::Device(torch::kCUDA, c10::DeviceIndex(i % n_gpu))));
    models.push_back(replicas.back().get());
  }
  SweepOutput four = one;
  four.dir = test::make_temp_dir("cuda-sweep-four");
  const SweepResult b = run_sweep(models, data, opts, four);
  ASSERT_TRUE(b.complete);
  ASSERT_EQ(b.runs.size(), a.runs.size());
  for (size_t i = 0; i < a.runs.size(); ++i) {  // bf16 on other streams: equal to rounding
    EXPECT_EQ(b.runs[i].rank, a.runs[i].rank);
    EXPECT_NEAR(b.runs[i].best_val_loss, a.runs[i].best_val_loss, 2e-3 * a.runs[i].best_val_loss)
        << "r=" << a.runs[i].rank << " on " << n_gpu << " GPU(s)";
    EXPECT_NEAR(b.runs[i].test_loss, a.runs[i].test_loss, 2e-3 * a.runs[i].test_loss);
  }
}

}  // namespace
}  // namespace lorank
