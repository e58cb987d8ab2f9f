// lorank's multi-tensor AdamW against LibTorch's torch::optim::AdamW on the same tensors.
#include <gtest/gtest.h>

#include "error.h"
#include "optimizer.h"

namespace lorank {
namespace {

std::vector<torch::Tensor> make_params(uint64_t seed) {
  torch::manual_seed(int64_t(seed));
  return {torch::randn({4, 7}).requires_grad_(true), torch::randn({7, 4}).requires_grad_(true),
          torch::randn({3}).requires_grad_(true)};
}

void set_grads(std::vector<torch::Tensor>& ps, int step) {
  torch::manual_seed(100 + step);
  for (auto& p : ps) p.mutable_grad() = torch::randn_like(p) * (step + 1);
}

TEST(AdamW, MatchesLibTorchStepForStep) {
  auto ours = make_params(1), theirs = make_params(1);
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW opt(ours, o);
  torch::optim::AdamW ref(theirs, torch::optim::AdamWOptions(3e-3).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    const double lr = 3e-3 * (step + 1) / 5;
    set_grads(ours, step);
    set_grads(theirs, step);
    for (auto& g : ref.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    opt.step(lr);
    ref.step();
    for (size_t i = 0; i < ours.size(); ++i) {
      EXPECT_LE((ours[i] - theirs[i]).abs().max().item<double>(), 1e-7) << "step " << step;
    }
  }
  EXPECT_EQ(opt.steps_done(), 5);
}

TEST(AdamW, GradNormAndScalingAsClipGradNorm) {
  auto ours = make_params(2), theirs = make_params(2);
  set_grads(ours, 0);
  set_grads(theirs, 0);
  AdamW opt(ours, {});
  const double norm = opt.grad_norm().item<double>();
  const double ref = torch::nn::utils::clip_grad_norm_(theirs, 0.5);
  EXPECT_NEAR(norm, ref, 1e-5 * ref);
  opt.scale_grads(0.5 / (norm + 1e-6));
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_LE((ours[i].grad() - theirs[i].grad()).abs().max().item<double>(), 1e-6);
  }
}

TEST(AdamW, StateRoundTripsAndContinuesIdentically) {
  auto a = make_params(3), b = make_params(3);
  AdamW oa(a, {}), ob(b, {});
  for (int step = 0; step < 3; ++step) {
    set_grads(a, step);
    oa.step(1e-2);
  }
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  ob.load_state(oa.state(), "test");
  EXPECT_EQ(ob.steps_done(), 3);
  set_grads(a, 3);
  set_grads(b, 3);
  oa.step(1e-2);
  ob.step(1e-2);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i]));
  auto broken = oa.state();
  broken.erase("exp_avg_sq.1");
  EXPECT_THROW(ob.load_state(broken, "ckpt.safetensors"), Error);
}

}  // namespace
}  // namespace lorank
