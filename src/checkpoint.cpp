#include "checkpoint.h"

#include <ATen/autocast_mode.h>

#include "compat.h"

namespace lorank {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor generator_state(const torch::Device& device) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(const torch::Device& device, const torch::Tensor& state) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

bool autocast_on(const torch::Device& device) {
  if (!device.is_cuda()) return false;
#if LORANK_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

// What the recomputation needs: the function and the state the first call ran under.
struct Saved : torch::CustomClassHolder {
  std::function<torch::Tensor(const torch::Tensor&)> fn;
  torch::Device device = torch::kCPU;
  torch::Tensor cpu_rng, device_rng;
  bool autocast = false;
};

class Recompute : public torch::autograd::Function<Recompute> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x,
                               c10::intrusive_ptr<Saved> saved) {
    ctx->save_for_backward({x});
    ctx->saved_data["saved"] = c10::IValue::make_capsule(saved);
    return saved->fn(x);  // Function::apply runs this with grad mode off: nothing is kept
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = c10::static_intrusive_pointer_cast<Saved>(ctx->saved_data["saved"].toCapsule());
    torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    // Replay with the first call's random state, then put the current state back.
    torch::Tensor cpu_now = generator_state(torch::kCPU), device_now;
    set_generator_state(torch::kCPU, saved->cpu_rng);
    if (saved->device.is_cuda()) {
      device_now = generator_state(saved->device);
      set_generator_state(saved->device, saved->device_rng);
    }
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      compat::AutocastGuard autocast(saved->autocast, saved->device);
      y = saved->fn(x);
    }
    set_generator_state(torch::kCPU, cpu_now);
    if (saved->device.is_cuda()) set_generator_state(saved->device, device_now);
    // Nested backward: accumulates into the leaves inside fn and into x.
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor recompute_in_backward(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                                    const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  auto saved = c10::make_intrusive<Saved>();
  saved->fn = fn;
  saved->device = x.device();
  saved->cpu_rng = generator_state(torch::kCPU);
  if (x.device().is_cuda()) saved->device_rng = generator_state(x.device());
  saved->autocast = autocast_on(x.device());
  // The first block's input (frozen embeddings) needs no gradient, but the output must carry one
  // for the leaves inside fn to be reached: make the input a leaf that wants a gradient.
  torch::Tensor input = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return Recompute::apply(input, saved);
}

}  // namespace lorank
