// AdamW over a fixed list of fp32 tensors with multi-tensor (_foreach) kernels: a dozen launches
// per step whatever the number of adapters, where torch::optim::AdamW loops tensor by tensor.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lorank {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// The arithmetic of torch::optim::AdamW (decoupled decay, bias correction, eps outside the sqrt),
// element for element, so results match it.
class AdamW {
 public:
  AdamW(std::vector<torch::Tensor> params, AdamWOptions opts);

  // Drops the gradients; the next backward allocates them afresh.
  void zero_grad();
  // L2 norm over every gradient, as a device scalar: reading it is the caller's one sync.
  torch::Tensor grad_norm();
  void scale_grads(double factor);
  void step(double lr);
  int64_t steps_done() const { return step_; }

  // Moments and step count as named CPU tensors, for checkpoints; load_state throws naming
  // `where` when a tensor is missing or has the wrong shape.
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where);

 private:
  std::vector<torch::Tensor> grads();  // a zero gradient stands in for a missing one

  std::vector<torch::Tensor> params_, exp_avg_, exp_avg_sq_;
  AdamWOptions opts_;
  int64_t step_ = 0;
};

}  // namespace lorank
