// The probe on CUDA, analysed where it ran and again after move_probe to the CPU (recommend's
// default with 16 threads; the sums come over while the workers analyse): the same spectra, and
// moments shared by q/k/v stay shared. Parked shards sum the same as shards kept on the GPU.
// The automatic CUDA batching sums the same gradients as small batches, in bf16 attention too.
// Sketch products on TF32 tensor cores stay within TF32's rounding of the fp32 ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "compat.h"
#include "model/model_fixtures.h"
#include "probe.h"
#include "tokenizer.h"

namespace lorank {
namespace {

struct TinyOnCuda {
  std::unique_ptr<Model> model;
  std::vector<Example> examples;
};

TinyOnCuda tiny_on_cuda(torch::ScalarType dtype) {
  LoadOptions lo;
  lo.device = torch::Device(torch::kCUDA, 0);
  lo.dtype = dtype;
  auto tok = load_tokenizer(test::tiny_llama_dir());
  TokenizerConfig cfg = load_tokenizer_config(test::tiny_llama_dir(), *tok);
  return {Model::load(test::tiny_llama_dir(), lo),
          load_dataset(test::asset("data/cmudict.jsonl"), *tok, cfg, DatasetOptions{}).examples};
}

void expect_same_spectra(const std::vector<ModuleSpectrum>& got,
                         const std::vector<ModuleSpectrum>& want, const ProbeResult& probe,
                         const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  using Values = std::vector<double>;
  auto near = [&](const Values& a, const Values& b, const std::string& m) {
    ASSERT_EQ(a.size(), b.size()) << what << " " << m;
    const double top = b.empty() ? 0.0 : std::abs(b[0]);
    for (size_t j = 0; j < a.size(); ++j) {
      EXPECT_NEAR(a[j], b[j], 1e-9 + 1e-6 * top) << what << " " << m;
    }
  };
  for (size_t i = 0; i < got.size(); ++i) {
    const std::string& m = probe.modules[i].name;
    near(got[i].singular_values, want[i].singular_values, m);
    near(got[i].noise_spectrum, want[i].noise_spectrum, m);
    near(got[i].noise_edges, want[i].noise_edges, m);
    EXPECT_EQ(got[i].signal_rank, want[i].signal_rank) << what << " " << m;
  }
}

TEST(CudaProbe, SpectraOnTheCpuMatchThoseOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto [model, examples] = tiny_on_cuda(torch::kFloat32);
  ProbeOptions o;
  o.max_examples = 40;
  o.layers = {0, 1};
  ProbeResult probe = run_probe(*model, examples, o);
  for (const auto& m : probe.modules) {
    for (const auto& t : m.grad.exact) {
      ASSERT_TRUE(t.is_cuda()) << m.name << ": parked, though all fit";
    }
  }
  SpectrumOptions curves, values;  // probe's analysis, and recommend's (singular values only)
  values.gain_curves = false;
  auto gpu_curves = analyse_probe(probe, curves);
  auto gpu_values = analyse_probe(probe, values);

  std::map<const void*, int> shared_before;
  for (const auto& m : probe.modules) ++shared_before[m.moment_all.data_ptr()];
  move_probe(probe, torch::kCPU);
  std::map<const void*, int> shared_after;
  for (const auto& m : probe.modules) {
    ASSERT_TRUE(m.moment_all.device().is_cpu()) << m.name;
    ++shared_after[m.moment_all.data_ptr()];
  }
  EXPECT_EQ(shared_after.size(), shared_before.size()) << "a shared input moment was copied twice";

  // The sums come over module by module, on a thread ahead of the workers.
  for (const auto& m : probe.modules) ASSERT_TRUE(m.grad.exact.front().is_cuda()) << m.name;
  expect_same_spectra(analyse_probe(probe, curves), gpu_curves, probe, "with curves");
  expect_same_spectra(analyse_probe(probe, values), gpu_values, probe, "singular values only");
}

TEST(CudaProbe, ParkedShardsSumTheSame) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto [model, examples] = tiny_on_cuda(torch::kFloat32);
  ProbeOptions kept;
  kept.max_examples = 40;
  kept.layers = {1};
  ProbeOptions parked = kept;
  parked.keep_shards_share = 0;
  ProbeResult a = run_probe(*model, examples, kept);
  ProbeResult b = run_probe(*model, examples, parked);
  ASSERT_EQ(a.modules.size(), b.modules.size());
  for (size_t i = 0; i < a.modules.size(); ++i) {
    const auto& ga = a.modules[i].grad.exact;
    const auto& gb = b.modules[i].grad.exact;
    ASSERT_EQ(ga.size(), gb.size());
    for (size_t k = 0; k < ga.size(); ++k) {
      EXPECT_EQ(gb[k].is_cpu(), k + 1 < gb.size()) << "shard " << k << " parked or not";
      const double top = ga[k].abs().max().item<double>();
      EXPECT_LE((ga[k].cpu() - gb[k].cpu()).abs().max().item<double>(), 1e-5 * top)
          << a.modules[i].name << " shard " << k;
    }
  }
}

TEST(CudaProbe, AutomaticBatchingSumsTheSameGradients) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  // bf16, the default on CUDA, where masked attention could take cuDNN
  auto [model, examples] = tiny_on_cuda(torch::kBFloat16);
  ProbeOptions small;
  small.max_examples = 200;
  small.batching.batch_tokens = 128;  // many passes
  small.batching.max_batch = 8;
  ProbeOptions large = small;
  large = auto_probe_batching(*model, small);
  EXPECT_FALSE(large.checkpointing);  // tiny-llama leaves room for the largest passes
  EXPECT_GE(large.batching.batch_tokens, 512);
  EXPECT_EQ(large.batching.max_batch, 1024);

  const bool cudnn_before = compat::cudnn_attention_enabled();
  ProbeResult a = run_probe(*model, examples, small);
  ProbeResult b = run_probe(*model, examples, large);
  EXPECT_EQ(compat::cudnn_attention_enabled(), cudnn_before)
      << "the probe left cuDNN attention changed";
  ASSERT_EQ(a.n_supervised(), b.n_supervised());
  EXPECT_NEAR(a.base_loss(), b.base_loss(), 2e-2);  // bf16: batch shape changes rounding
  for (size_t i = 0; i < a.modules.size(); ++i) {
    for (size_t s = 0; s < a.modules[i].grad.exact.size(); ++s) {
      const auto& ga = a.modules[i].grad.exact[s];
      const auto& gb = b.modules[i].grad.exact[s];
      const double rel = (ga - gb).norm().item<double>() / ga.norm().item<double>();
      EXPECT_LT(rel, 5e-2) << a.modules[i].name << " shard " << s;
    }
  }
}

TEST(CudaProbe, Tf32SketchesStayWithinRoundingOfFp32) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto [model, examples] = tiny_on_cuda(torch::kFloat32);
  ProbeOptions o;
  o.max_examples = 40;
  o.layers = {0, 1};
  o.mode = GradMode::sketch;
  o.sketch_rank = 16;
  o.sketch_tf32 = false;
  ProbeResult fp32 = run_probe(*model, examples, o);
  o.sketch_tf32 = true;
  ProbeResult tf32 = run_probe(*model, examples, o);
  EXPECT_FALSE(at::globalContext().allowTF32CuBLAS()) << "the probe left TF32 on";
  double largest = 0;
  for (size_t i = 0; i < fp32.modules.size(); ++i) {
    const auto& a = fp32.modules[i].grad;
    const auto& b = tf32.modules[i].grad;
    for (size_t s = 0; s < a.range.size(); ++s) {
      for (auto part : {&ShardGradients::range, &ShardGradients::corange, &ShardGradients::core}) {
        auto x = (a.*part)[s].cpu(), y = (b.*part)[s].cpu();
        const double rel = (x - y).norm().item<double>() / x.norm().item<double>();
        EXPECT_LT(rel, 5e-3) << fp32.modules[i].name << " shard " << s;
        largest = std::max(largest, rel);
      }
    }
  }
  EXPECT_GT(largest, 0.0) << "TF32 was not used: the sums are bit-identical";
  auto sa = analyse_probe(fp32, SpectrumOptions{}), sb = analyse_probe(tf32, SpectrumOptions{});
  for (size_t i = 0; i < sa.size(); ++i) {
    const auto& a = sa[i].singular_values;
    const auto& b = sb[i].singular_values;
    ASSERT_EQ(a.size(), b.size());
    for (size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j], b[j], 1e-2 * a[0]) << fp32.modules[i].name;
  }
  std::printf("TF32 sketch sums vs fp32: largest relative difference %.2e\n", largest);
}

}  // namespace
}  // namespace lorank
