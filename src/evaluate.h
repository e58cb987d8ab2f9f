// Mean next-token loss over supervised tokens of a set of examples, in length-sorted batches so
// little compute goes to padding. Shared by inspect (base loss), the trainer (validation) and sweep.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "dataset.h"
#include "model.h"

namespace lorank {

class Progress;

struct EvalOptions {
  int64_t batch_tokens = 8192;  // padded tokens per forward pass
  int64_t max_batch = 64;       // examples per forward pass
  int32_t pad_id = 0;
  // Called with each batch's size before its forward pass; tests throw
  // compat::throw_out_of_memory from it to exercise the out-of-memory fallback on the CPU.
  std::function<void(int64_t batch)> before_batch;
};

struct EvalResult {
  double mean_loss = 0;      // nats per supervised token
  int64_t n_supervised = 0;  // targets counted
  int64_t n_tokens = 0;      // real (unpadded) tokens processed
  double seconds = 0;
  // The batch limits it ended with, smaller after out of memory: a later evaluation that starts
  // from them does not run out (and warn) again.
  int64_t batch_tokens = 0, max_batch = 0;
};

// Batches of example indices, longest first, each within opts' token and size limits.
std::vector<std::vector<size_t>> length_sorted_batches(const std::vector<Example>& examples,
                                                       const std::vector<size_t>& indices,
                                                       const EvalOptions& opts);
// A batch on the model's device, uploaded in one copy (pinned and asynchronous on CUDA), with what
// the loss needs worked out on the host so that forward and loss never wait for the device.
struct BatchTensors {
  torch::Tensor ids, attention_mask, loss_mask;  // (B, T) int64
  torch::Tensor positions;  // (N) int64: flattened (B, T) positions whose next token is supervised
  torch::Tensor targets;    // (N) int64: the ids they predict
  int64_t n_supervised = 0;  // N
  int64_t n_real = 0;        // unpadded tokens
  bool padded = false;       // some row is shorter than T
};
// Throws naming the id when one is outside the model's vocabulary.
BatchTensors to_tensors(const Batch& batch, const Model& model);
// Model::hidden_states on a checked batch: the mask goes along only when something is padded.
torch::Tensor batch_hidden_states(Model& model, const BatchTensors& t);
// lm_loss at the batch's precomputed positions; `chunk` as lm_loss's.
LossResult batch_loss(Model& model, const torch::Tensor& hidden, const BatchTensors& t,
                      int64_t chunk = 0);

// Tokens of `idx` as one padded batch: its longest example times its size.
int64_t padded_tokens(const std::vector<Example>& examples, const std::vector<size_t>& idx);
// After the batch `failed` ran out of CUDA memory while `doing` (e.g. "evaluation"): halves opts'
// limits below that batch's size, so its examples go again in smaller batches, and warns. Throws
// when one example alone does not fit.
void shrink_batches_after_oom(EvalOptions& opts, const std::vector<Example>& examples,
                              const std::vector<size_t>& failed, const c10::Error& oom,
                              const std::string& doing);
// The examples of batches[first..], in order: what is left to redo after batch `first` failed.
std::vector<size_t> batches_from(const std::vector<std::vector<size_t>>& batches, size_t first);

// Finite weights can still overflow in the forward pass (a damaged or untrained checkpoint):
// lorank would report a loss of nan, or fail in a decomposition far from the cause.
void require_finite_base_loss(double loss);

// No gradients. `progress` (optional) advances by real tokens. On CUDA out of memory the batch
// limits are halved (with a warning) and the rest is redone; a lone example that won't fit throws.
EvalResult evaluate_loss(Model& model, const std::vector<Example>& examples,
                         const std::vector<size_t>& indices, const EvalOptions& opts,
                         Progress* progress = nullptr);

}  // namespace lorank
