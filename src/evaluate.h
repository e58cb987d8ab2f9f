// Mean next-token loss over supervised tokens of a set of examples, in length-sorted batches so
// little compute goes to padding. Shared by inspect (base loss), the trainer (validation) and sweep.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "dataset.h"

namespace lorank {

class Model;
class Progress;

struct EvalOptions {
  int64_t batch_tokens = 8192;  // padded tokens per forward pass
  int64_t max_batch = 64;       // examples per forward pass
  int32_t pad_id = 0;
};

struct EvalResult {
  double mean_loss = 0;      // nats per supervised token
  int64_t n_supervised = 0;  // targets counted
  int64_t n_tokens = 0;      // real (unpadded) tokens processed
  double seconds = 0;
};

// Batches of example indices, longest first, each within opts' token and size limits.
std::vector<std::vector<size_t>> length_sorted_batches(const std::vector<Example>& examples,
                                                       const std::vector<size_t>& indices,
                                                       const EvalOptions& opts);
// Batch -> tensors on `device`: ids (B,T) int64, attention_mask (B,T) int64, loss_mask (B,T) int64.
struct BatchTensors {
  torch::Tensor ids, attention_mask, loss_mask;
};
BatchTensors to_tensors(const Batch& batch, const torch::Device& device);

// No gradients. `progress` (optional) advances by real tokens.
EvalResult evaluate_loss(Model& model, const std::vector<Example>& examples,
                         const std::vector<size_t>& indices, const EvalOptions& opts,
                         Progress* progress = nullptr);

}  // namespace lorank
