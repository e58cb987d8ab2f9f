// A model split over two devices (two GPUs where there are, else cuda:0 and the CPU) computes what
// the same model on one GPU does: hidden states, loss, every probed gradient sum (exact and
// sketched), and recommend's answer; training on it follows the one-device run, and a sweep's
// trainings at once refuse it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/model_fixtures.h"
#include "model/trainer_fixtures.h"
#include "probe.h"
#include "tokenizer.h"

namespace lorank {
namespace {

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

torch::Device second_device() {
  return torch::cuda::device_count() > 1 ? torch::Device(torch::kCUDA, 1)
                                         : torch::Device(torch::kCPU);
}

std::unique_ptr<Model> tiny(const std::vector<torch::Device>& devices) {
  LoadOptions lo;
  lo.device = devices.front();
  if (devices.size() > 1) lo.devices = devices;
  lo.dtype = torch::kFloat32;  // the same arithmetic on both sides of the split
  return Model::load(test::tiny_llama_dir(), lo);
}

std::vector<Example> cmudict() {
  auto tok = load_tokenizer(test::tiny_llama_dir());
  TokenizerConfig cfg = load_tokenizer_config(test::tiny_llama_dir(), *tok);
  return load_dataset(test::asset("data/cmudict.jsonl"), *tok, cfg, DatasetOptions{}).examples;
}

double max_abs(const torch::Tensor& t) {
  return t.abs().max().item<double>();
}

TEST(CudaSplit, LayersOnTwoDevicesComputeWhatOneDeviceDoes) {
  REQUIRE_CUDA();
  const torch::Device gpu(torch::kCUDA, 0), other = second_device();
  auto one = tiny({gpu});
  auto split = tiny({gpu, other});
  const int64_t n_layer = split->config().n_layer;
  EXPECT_TRUE(split->is_split());
  EXPECT_EQ(split->layer_device(0), gpu);
  EXPECT_EQ(split->layer_device(n_layer - 1), other);
  EXPECT_EQ(split->output_device(), other);
  EXPECT_EQ(split->lm_head().weight.device(), other);  // tiny-llama ties it to the embedding
  EXPECT_EQ(split->placement().rfind("layers 0-", 0), 0u) << split->placement();

  auto ids = torch::randint(0, split->config().n_vocab, {3, 24}, torch::kInt64);
  auto mask = torch::ones({3, 24}, torch::kInt64);
  mask.index_put_({2, torch::indexing::Slice(18, 24)}, 0);                      // a padded row
  auto a = one->forward(ids, mask).cpu(), b = split->forward(ids, mask).cpu();  // (B, T, V)
  EXPECT_LE(max_abs(a - b), 1e-4 * max_abs(a)) << "logits";

  // The probe's gradient sums and base loss, module by module.
  const auto examples = cmudict();
  ProbeOptions o;
  o.max_examples = 48;
  o.mode = GradMode::exact;
  o.batching.batch_tokens = 256;
  ProbeResult pa = run_probe(*one, examples, o), pb = run_probe(*split, examples, o);
  EXPECT_NEAR(pa.base_loss(), pb.base_loss(), 1e-5 * pa.base_loss());
  EXPECT_EQ(pa.n_supervised(), pb.n_supervised());
  ASSERT_EQ(pa.modules.size(), pb.modules.size());
  bool elsewhere = false;
  for (size_t i = 0; i < pa.modules.size(); ++i) {
    const auto& ga = pa.modules[i].grad.exact.back();
    const auto& gb = pb.modules[i].grad.exact.back();
    elsewhere = elsewhere || gb.device() == other;
    EXPECT_LE(max_abs(ga.cpu() - gb.cpu()), 1e-4 * max_abs(ga) + 1e-9) << pa.modules[i].name;
  }
  EXPECT_TRUE(elsewhere) << "no module's sums were on the second device";
  auto sa = analyse_probe(pa, SpectrumOptions{}), sb = analyse_probe(pb, SpectrumOptions{});
  for (size_t i = 0; i < sa.size(); ++i)
    EXPECT_EQ(sa[i].signal_rank, sb[i].signal_rank) << pa.modules[i].name;

  // Sketches: each device draws the same test matrices, so the sketched sums agree too.
  o.mode = GradMode::sketch;
  o.sketch_rank = 8;
  o.sketch_tf32 = false;
  ProbeResult ka = run_probe(*one, examples, o), kb = run_probe(*split, examples, o);
  for (size_t i = 0; i < ka.modules.size(); ++i) {
    for (auto part : {&ShardGradients::range, &ShardGradients::corange, &ShardGradients::core}) {
      const torch::Tensor& x = (ka.modules[i].grad.*part).back();
      const torch::Tensor& y = (kb.modules[i].grad.*part).back();
      EXPECT_LE(max_abs(x.cpu() - y.cpu()), 1e-4 * max_abs(x) + 1e-9) << ka.modules[i].name;
    }
  }
}

TEST(CudaSplit, RecommendOnASplitModelGivesTheOneDeviceAnswer) {
  REQUIRE_CUDA();
  const std::string list = "cuda:0," + second_device().str();
  auto rec = [](const std::string& device) {
    auto r = test::run_lorank("recommend --quiet --json --dtype fp32 --device " + device);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output.substr(r.output.find('{')));
  };
  const auto one = rec("cuda:0"), split = rec(list);
  EXPECT_EQ(split["rank"], one["rank"]);
  EXPECT_EQ(split["alpha"], one["alpha"]);
  EXPECT_NE(split.dump().find(" + "), std::string::npos) << "the split's devices are not reported";
  auto inspect = test::run_lorank("inspect --no-loss --device " + list);
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("split: layers 0-"), std::string::npos) << inspect.output;
  test::expect_failure("sweep --quiet --max-steps 1 --jobs 2 --ranks 1,2 --device " + list +
                           " --out " + test::make_temp_dir("split-sweep") + "/a",
                       {"lorank sweep", "split over 2", "hint:"});
}

// LoRA on a split model: each module's adapter on its linear's device, and the same losses (fp32,
// same data order and initial adapter) as on one GPU; the gradient norm gathers across devices.
TEST(CudaSplit, TrainingOnASplitModelFollowsTheOneDeviceRun) {
  REQUIRE_CUDA();
  const torch::Device gpu(torch::kCUDA, 0), other = second_device();
  auto load = [](const std::vector<torch::Device>& devices) {
    LoadOptions lo;
    lo.device = devices.front();
    if (devices.size() > 1) lo.devices = devices;
    lo.dtype = torch::kFloat32;
    return Model::load(test::trainer_model_dir(), lo);
  };
  auto one = load({gpu}), split = load({gpu, other});
  TrainOptions o = test::short_run(4);
  o.autocast = false;
  Trainer a(*one, test::lora_r4(), test::cmudict(), o),
      b(*split, test::lora_r4(), test::cmudict(), o);
  bool elsewhere = false;
  for (const auto& m : b.adapters().modules()) elsewhere = elsewhere || m.A.device() == other;
  EXPECT_TRUE(elsewhere) << "no adapter on the second device";
  for (int i = 0; i < 4; ++i) {
    const StepMetrics ma = a.step(), mb = b.step();
    EXPECT_NEAR(mb.loss, ma.loss, 1e-3) << "step " << i;
    EXPECT_NEAR(mb.grad_norm, ma.grad_norm, 1e-3 * ma.grad_norm) << "step " << i;
  }
  const auto r =
      test::run_lorank("train --quiet --r 2 --max-steps 2 --n-evals 1 --device cuda:0," +
                       other.str() + " --out " + test::make_temp_dir("split-train") + "/a");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace lorank
