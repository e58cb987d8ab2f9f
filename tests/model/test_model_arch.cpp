// Small random llama (llama3 RoPE scaling), mistral (sliding window 4), qwen2 (q/k/v bias) and qwen3
// (q/k norm) checkpoints saved by transformers, with its fp32 logits (tools/make_golden.py).
#include <gtest/gtest.h>

#include <iostream>

#include "model/model_fixtures.h"

namespace {

using lorank::test::asset;
using lorank::test::read_tensor;

class ArchGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchGolden, LogitsMatchTransformers) {
  std::string dir = asset("golden/arch/" + GetParam());
  auto model = lorank::Model::load(dir);
  torch::NoGradGuard no_grad;
  lorank::SafetensorsFile f(dir + "/golden_logits.safetensors");
  auto ids = read_tensor(f, "input_ids");
  auto mask = read_tensor(f, "attention_mask");
  auto ref = read_tensor(f, "logits");
  auto got = model->forward(ids, mask);
  auto d = (got - ref).abs().index({mask.to(torch::kBool)});
  double max_abs = d.max().item<double>();
  std::cout << GetParam() << " max |dlogit| vs transformers fp32: " << max_abs << "\n";
  EXPECT_LT(max_abs, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Models, ArchGolden,
                         ::testing::Values("llama3-rope", "mistral-window", "qwen2-bias",
                                           "qwen3-qknorm"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

}  // namespace
