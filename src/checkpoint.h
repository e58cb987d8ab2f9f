// Activation checkpointing: run a function without keeping its intermediate activations and
// recompute it during backward (as torch.utils.checkpoint's reentrant variant does), trading one
// extra forward pass for the memory of everything inside it.
#pragma once

#include <torch/torch.h>

#include <functional>

namespace lorank {

// y = fn(x), where backward recomputes fn(x) with gradients on and propagates into x and into
// every leaf fn uses (LoRA A and B). The generator state and the autocast setting of the first
// call are restored for the recomputation, so dropout masks and dtypes match. Without grad mode
// it is a plain call. fn must be deterministic given those and must not modify x.
torch::Tensor recompute_in_backward(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                                    const torch::Tensor& x);

}  // namespace lorank
