#include "optimizer.h"

#include <cmath>

#include "error.h"

namespace lorank {

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions opts)
    : params_(std::move(params)), opts_(opts) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p));
    exp_avg_sq_.push_back(torch::zeros_like(p));
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

std::vector<torch::Tensor> AdamW::grads() {
  std::vector<torch::Tensor> out;
  for (auto& p : params_) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    out.push_back(p.grad());
  }
  return out;
}

torch::Tensor AdamW::grad_norm() {
  torch::NoGradGuard no_grad;
  if (params_.empty()) return torch::zeros({});
  // Norm of the per-tensor norms, as torch::nn::utils::clip_grad_norm_ computes it; a split
  // model's norms meet on the first parameter's device.
  std::vector<torch::Tensor> norms = at::_foreach_norm(grads());
  for (auto& n : norms) n = n.to(params_.front().device());
  return torch::stack(norms).norm();
}

void AdamW::scale_grads(double factor) {
  torch::NoGradGuard no_grad;
  if (!params_.empty()) at::_foreach_mul_(grads(), factor);
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  if (params_.empty()) return;
  ++step_;
  std::vector<torch::Tensor> g = grads();
  const double b1 = opts_.beta1, b2 = opts_.beta2;
  if (opts_.weight_decay != 0) at::_foreach_mul_(params_, 1 - lr * opts_.weight_decay);
  at::_foreach_mul_(exp_avg_, b1);
  at::_foreach_add_(exp_avg_, g, 1 - b1);
  at::_foreach_mul_(exp_avg_sq_, b2);
  at::_foreach_addcmul_(exp_avg_sq_, g, g, 1 - b2);
  const double bias1 = 1 - std::pow(b1, double(step_));
  const double bias2 = 1 - std::pow(b2, double(step_));
  std::vector<torch::Tensor> denom = at::_foreach_sqrt(exp_avg_sq_);
  at::_foreach_div_(denom, std::sqrt(bias2));
  at::_foreach_add_(denom, opts_.eps);
  at::_foreach_addcdiv_(params_, exp_avg_, denom, -lr / bias1);
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out["exp_avg." + std::to_string(i)] = exp_avg_[i].detach().to(torch::kCPU).clone();
    out["exp_avg_sq." + std::to_string(i)] = exp_avg_sq_[i].detach().to(torch::kCPU).clone();
  }
  out["step"] = torch::full({1}, double(step_), torch::kFloat32);  // exact below 2^24 steps
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where) {
  auto get = [&](const std::string& key, const torch::Tensor& like) {
    auto it = state.find(key);
    if (it == state.end()) {
      fail(where, "optimizer state '" + key + "' is missing", "a checkpoint of this lorank version",
           "no such tensor", "pass --force to start afresh");
    }
    if (it->second.sizes() != like.sizes()) {
      fail(where, "optimizer state '" + key + "' has the wrong shape",
           c10::str(like.sizes()), c10::str(it->second.sizes()), "pass --force to start afresh");
    }
    return it->second;
  };
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(get("exp_avg." + std::to_string(i), exp_avg_[i]));
    exp_avg_sq_[i].copy_(get("exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]));
  }
  step_ = std::llround(get("step", torch::zeros({1})).item<double>());
}

}  // namespace lorank
