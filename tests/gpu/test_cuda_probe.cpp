// The probe on CUDA, analysed where it ran and again after move_probe to the CPU
// (recommend --spectrum-device cpu): the same spectra, and moments shared by q/k/v stay shared.
#include <gtest/gtest.h>

#include <map>

#include "model/model_fixtures.h"
#include "probe.h"
#include "tokenizer.h"

namespace lorank {
namespace {

TEST(CudaProbe, SpectraOnTheCpuMatchThoseOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  LoadOptions lo;
  lo.device = torch::Device(torch::kCUDA, 0);
  lo.dtype = torch::kFloat32;
  auto model = Model::load(test::tiny_llama_dir(), lo);
  auto tok = load_tokenizer(test::tiny_llama_dir());
  TokenizerConfig cfg = load_tokenizer_config(test::tiny_llama_dir(), *tok);
  auto examples = load_dataset(test::asset("data/cmudict.jsonl"), *tok, cfg, DatasetOptions{}).examples;
  ProbeOptions o;
  o.max_examples = 40;
  o.layers = {0, 1};
  ProbeResult probe = run_probe(*model, examples, o);
  auto on_gpu = analyse_probe(probe, SpectrumOptions{});

  std::map<const void*, int> shared_before;
  for (const auto& m : probe.modules) ++shared_before[m.moment_all.data_ptr()];
  move_probe(probe, torch::kCPU);
  std::map<const void*, int> shared_after;
  for (const auto& m : probe.modules) {
    ASSERT_TRUE(m.grad.exact.front().device().is_cpu()) << m.name;
    ++shared_after[m.moment_all.data_ptr()];
  }
  EXPECT_EQ(shared_after.size(), shared_before.size()) << "a shared input moment was copied twice";

  auto on_cpu = analyse_probe(probe, SpectrumOptions{});
  ASSERT_EQ(on_cpu.size(), on_gpu.size());
  for (size_t i = 0; i < on_cpu.size(); ++i) {
    const auto& a = on_cpu[i].singular_values;
    const auto& b = on_gpu[i].singular_values;
    ASSERT_EQ(a.size(), b.size()) << probe.modules[i].name;
    for (size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j], b[j], 1e-9 + 1e-6 * b[0]) << probe.modules[i].name;
    EXPECT_EQ(on_cpu[i].signal_rank, on_gpu[i].signal_rank) << probe.modules[i].name;
  }
}

}  // namespace
}  // namespace lorank
