// The gradient probe: forward + backward over disjoint shards of the training data with frozen
// weights, storing no weight gradient. A hook on each target linear sees its input x and its output
// gradient δ = dL/dy and accumulates, per shard, the weight gradient G_k = Σ_t δ_t x_tᵀ (exactly, or
// as randomized sketches for large models) and, over all shards, the input second moment Σ x xᵀ.
//
// Normalisation: backward runs on each batch's summed loss over supervised tokens; the spectrum
// divides each shard's sums by the shard's supervised tokens, so G_k is the gradient of the shard's
// mean loss per supervised token: what the trainer's per-batch mean estimates, and comparable
// between shards of different sizes (the difference of two halves then holds noise, not scale).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dataset.h"
#include "evaluate.h"
#include "spectrum.h"

namespace lorank {

class Model;
class Progress;
struct Linear;

enum class GradMode { automatic, exact, sketch };
std::string grad_mode_name(GradMode mode);  // "auto", "exact", "sketch"
GradMode grad_mode_from_name(const std::string& name);

struct ProbeOptions {
  std::vector<std::string> target_kinds;  // "q_proj", ..., "down_proj"; empty = all seven
  std::vector<int64_t> layers;            // empty = every layer
  int64_t n_shards = 4;                   // 4 gives three balanced half splits
  uint64_t seed = 0;
  int64_t max_examples = 0;               // 0 = all; else a seeded sample of this many
  // 0 = no limit; else sample until this many tokens (lorank recommend: default_probe_tokens).
  int64_t max_tokens = 0;
  GradMode mode = GradMode::automatic;
  int64_t exact_budget_bytes = int64_t(2) << 30;  // automatic: exact when the K·G fit in this
  int64_t sketch_rank = 128;              // k; the core sketch is (2k + 1)²
  // Sketch products on TF32 tensor cores on CUDA (the exact mode's stay fp32). The CLI turns it
  // off when LORANK_SKETCH_FP32=1 (for A/B timing).
  bool sketch_tf32 = true;
  // Recompute each decoder block in backward: activations of one block instead of all, for about
  // a third more time (auto_probe_batching turns it on when memory is short).
  bool checkpointing = false;
  bool input_moments = true;
  int64_t moment_budget_bytes = int64_t(1) << 30;  // input moments skipped above this
  // On CUDA every shard's sums stay on the GPU when the K - 1 besides the one being summed take at
  // most this share of its free memory; else the finished ones wait in CPU memory (0: always).
  double keep_shards_share = 1.0 / 16;
  // Padded tokens per pass: activations kept for backward grow with it (2048: ~0.6 GB on tiny).
  EvalOptions batching = {2048, 64, 0, {}};
  Progress* progress = nullptr;           // advanced by real tokens
  // Called before each batch's backward pass; tests throw compat::throw_out_of_memory from it (and
  // from batching.before_batch) to exercise the out-of-memory paths on the CPU.
  std::function<void()> before_backward;
};

struct ModuleProbe {
  std::string name, kind;
  int64_t layer = -1;
  ShardGradients grad;
  // Σ x xᵀ (d_in, d_in) fp32, undefined when skipped. Shared (same tensor) by modules that read
  // the same input: q/k/v, gate/up.
  torch::Tensor moment_all;     // over every real token: the tokens G sums over (K-FAC factor)
  torch::Tensor moment_scored;  // over positions whose next token is supervised (EVA's inputs)
};

struct ProbeResult {
  std::vector<ModuleProbe> modules;
  std::vector<std::vector<size_t>> shards;  // example indices (into the examples given), disjoint
  std::vector<int64_t> shard_tokens;        // real tokens per shard
  std::vector<int64_t> shard_supervised;    // supervised targets per shard
  std::vector<double> shard_loss_sum;       // summed loss per shard, nats
  GradMode mode = GradMode::exact;          // exact or sketch, as chosen
  int64_t sketch_rank = 0;                  // 0 in exact mode
  bool input_moments = false;
  int64_t state_bytes = 0;                  // accumulators held
  int64_t peak_rss_bytes = 0;               // process high-water mark (CPU memory)
  int64_t peak_gpu_bytes = 0;               // CUDA allocator's high-water mark; 0 on the CPU
  bool checkpointing = false;               // decoder blocks recomputed in backward
  int64_t batch_tokens = 0;                 // padded tokens a pass at the end (after any shrinking)
  // Where analyse_probe works: the model's device, or move_probe's. On CUDA all but the last
  // shard's sums may wait in CPU memory (ProbeOptions::keep_shards_share).
  torch::Device device = torch::kCPU;
  double seconds = 0;

  int64_t n_tokens() const;
  int64_t n_supervised() const;
  double base_loss() const;  // mean loss per supervised token over the probed examples
};

// The linears the options select, in model order.
// The token sample recommend probes by default: ~16k keeps the tiny model inside 30 s on a CPU; on
// CUDA a larger sample is cheap and narrows the band.
int64_t default_probe_tokens(const torch::Device& device);

std::vector<Linear*> probe_targets(Model& model, const ProbeOptions& opts);
// Bytes the exact per-shard gradients of `targets` would take (fp32).
int64_t exact_gradient_bytes(const std::vector<Linear*>& targets, int64_t n_shards);

ProbeResult run_probe(Model& model, const std::vector<Example>& examples, const ProbeOptions& opts);

// `opts` with batching for run_probe when the user sets none: 2048 tokens and 64 examples per pass
// on the CPU; on CUDA as many tokens as a quarter of the free memory (less the probe's own state)
// holds by an estimate of the bytes each token keeps (hook inputs, activations, logits), 256 to
// 16,384, and up to 1,024 examples, with checkpointing when that allows larger passes under 2,048
// tokens (an 8B model on a 24 GB card). Fewer, larger passes: a pass of a small model costs about
// the same launches whatever its size.
ProbeOptions auto_probe_batching(Model& model, const ProbeOptions& opts);

// Where analyse_probe works from now on (e.g. the CPU, for what a GPU probed): the test matrices
// and input moments (kept shared) move now; each module's sums when analyse_probe reaches it, so
// that the copies overlap other modules' work.
void move_probe(ProbeResult& probe, const torch::Device& device);

// Threads from which analyse_probe on the CPU, one module per thread, beats the GPU the probe ran
// on: measured faster at every size from 5M to 8B parameters with 16 (bench/RESULTS.md); with
// fewer it was not measured, so the GPU keeps them.
constexpr int64_t kCpuSpectraMinThreads = 16;
// Where analyse_probe should work. choice: "cpu", "gpu" (where the probe ran) or "auto" (the CPU
// when the probe ran on a GPU and `threads` >= kCpuSpectraMinThreads).
torch::Device spectrum_device(const std::string& choice, const torch::Device& probed,
                              int64_t threads);

// analyse_module over every probed module: whitening by Σ_x = moment_all / real tokens, explained
// variance from moment_scored.
std::vector<ModuleSpectrum> analyse_probe(const ProbeResult& probe, const SpectrumOptions& opts);

}  // namespace lorank
