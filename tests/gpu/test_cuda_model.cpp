// CUDA parity: lorank's bf16 and fp32 forward on the GPU against transformers' fp32 golden logits.
// The bf16 bound is transformers' own bf16-on-CUDA error (golden_meta.json), not a number we chose.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <iostream>

#include "model/model_fixtures.h"

namespace {

using lorank::test::asset;
using lorank::test::read_tensor;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

struct Diff {
  double max_abs, mean_abs;
};

Diff cuda_diff(const std::string& model_dir, const std::string& golden_path, torch::ScalarType dtype) {
  lorank::LoadOptions lo;
  lo.device = torch::Device(torch::kCUDA, 0);
  lo.dtype = dtype;
  auto model = lorank::Model::load(model_dir, lo);
  torch::NoGradGuard no_grad;
  lorank::SafetensorsFile f(golden_path);
  auto ids = read_tensor(f, "input_ids");
  auto mask = read_tensor(f, "attention_mask");
  auto ref = read_tensor(f, "logits");
  auto got = model->forward(ids.to(lo.device), mask.to(lo.device)).to(torch::kCPU);
  auto d = (got - ref).abs().index({mask.to(torch::kBool)});
  return {d.max().item<double>(), d.mean().item<double>()};
}

// meta: golden_meta.json's entry for the model, with transformers' own bf16 error.
void check_model(const std::string& name, const std::string& dir, const std::string& golden_path,
                 const nlohmann::json& meta, double fp32_bound) {
  Diff fp32 = cuda_diff(dir, golden_path, torch::kFloat32);
  Diff bf16 = cuda_diff(dir, golden_path, torch::kBFloat16);
  const auto& hf = meta["hf_bf16_cuda_vs_fp32"];
  std::cout << name << " CUDA fp32 vs transformers fp32: max " << fp32.max_abs << "\n"
            << name << " CUDA bf16 vs transformers fp32: max " << bf16.max_abs << " mean "
            << bf16.mean_abs << " (transformers bf16 CUDA: max " << hf["max_abs"] << " mean "
            << hf["mean_abs"] << ")\n";
  EXPECT_LT(fp32.max_abs, fp32_bound);
  EXPECT_LE(bf16.max_abs, 2.0 * hf["max_abs"].get<double>());
  EXPECT_LE(bf16.mean_abs, 1.5 * hf["mean_abs"].get<double>());
}

void check_model(const std::string& name, const std::string& dir) {
  auto meta = nlohmann::json::parse(lorank::test::read_file(asset("golden/golden_meta.json")));
  check_model(name, dir, asset("golden/logits_" + name + ".safetensors"), meta[name], 2e-4);
}

TEST(CudaModel, TinyLlamaWithinBf16Tolerance) {
  REQUIRE_CUDA();
  check_model("tiny-llama", lorank::test::tiny_llama_dir());
}

TEST(CudaModel, SmallLlamaWithinBf16Tolerance) {
  REQUIRE_CUDA();
  std::string dir = lorank::test::shared_path("models/small-llama");
  if (dir.empty()) GTEST_SKIP() << "../shared/models/small-llama absent";
  check_model("small-llama", dir);
}

// Llama-3.1-8B's shapes with random weights (tools/make_large_model.py, run by gpu_run.sh's
// `large` step): 32 layers, a 128k vocabulary, GQA 4:1, llama3 RoPE scaling; the same bounds.
TEST(CudaModel, Llama8bShapeWithinBf16Tolerance) {
  REQUIRE_CUDA();
  const char* dir = std::getenv("LORANK_LARGE_MODEL");
  if (dir == nullptr) GTEST_SKIP() << "LORANK_LARGE_MODEL unset (tools/make_large_model.py)";
  const std::string d(dir);
  auto meta = nlohmann::json::parse(lorank::test::read_file(d + "/golden_meta.json"));
  check_model("llama-3.1-8b-shape", d, d + "/golden_logits.safetensors", meta, 2e-4);
}

}  // namespace
