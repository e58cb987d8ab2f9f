// LoRA training on a frozen model: AdamW over the adapters, warm-up then linear/cosine decay,
// gradient clipping, gradient accumulation, held-out loss at fixed points keeping the best adapter,
// metrics as JSONL, and atomic checkpoints from which an interrupted run resumes exactly.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dataset.h"
#include "evaluate.h"
#include "lora.h"
#include "optimizer.h"

namespace lorank {

class Model;

// Defaults follow the oracle protocol of bench/README.md (AdamW without weight decay, batch 16,
// 5% warm-up then linear decay, min(5 epochs, 1500 steps), clipping at 1.0, 10 evaluations).
struct TrainOptions {
  double lr = 1e-3;
  int64_t epochs = 5;
  int64_t max_steps = 1500;         // 0: epochs alone decide
  int64_t batch = 16;               // examples per optimizer step
  int64_t grad_accum = 1;           // micro-batches per step; batch must be a multiple of it
  double warmup = 0.05;             // fraction of the total steps
  std::string schedule = "linear";  // "linear", "cosine" or "constant" after warm-up
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // 0: no clipping
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  uint64_t seed = 0;       // adapter init, data order and dropout
  int64_t n_evals = 10;    // evenly spaced held-out evaluations (when eval_every is 0)
  int64_t eval_every = 0;  // > 0: evaluate every N steps and at the end
  int64_t save_every = 0;  // > 0: also checkpoint every N steps (always at evaluations and stops)
  bool autocast = true;    // bf16 autocast for forward passes on CUDA; no effect on CPU
  bool checkpointing = false;  // recompute decoder blocks in backward: less memory, one more forward
  bool recompute_on_oom = true;  // a CUDA out-of-memory turns checkpointing on before shrinking
  EvalOptions eval;            // held-out batches; eval.pad_id also pads training batches
  // Stop after this many steps of this call as if interrupted, leaving a checkpoint (tests;
  // time-limited jobs): a resumed run counts from where it resumed.
  int64_t stop_after = 0;
  const std::atomic<bool>* interrupt = nullptr;  // set (e.g. by SIGINT): checkpoint and stop
  // What the run adapts, for --resume to refuse another: weights_fingerprint of the model and the
  // compute dtype ("" when not known: not compared).
  std::string model_fingerprint, compute_dtype;
  // Called with each micro-batch's size before its forward pass; tests throw
  // compat::throw_out_of_memory from it to exercise the out-of-memory fallback on the CPU.
  std::function<void(int64_t micro_batch)> before_micro_batch;
};

// Throws naming the option when a value is out of range or inconsistent.
void validate(const TrainOptions& opts);

// Learning-rate multiplier of optimizer step `step` (0-based) out of `total`, as transformers'
// get_{linear,cosine,constant}_schedule_with_warmup: the first step runs at 0 when warm-up > 0.
double lr_factor(const std::string& schedule, int64_t step, int64_t warmup_steps, int64_t total);
int64_t warmup_steps(double fraction, int64_t total);  // ceil(fraction * total), as transformers
// Steps after which the held-out loss is measured (ascending, the last one is `total`).
std::vector<int64_t> eval_steps(int64_t total, int64_t n_evals, int64_t eval_every);
// Optimizer steps of a run over n_train examples: opts.epochs of ceil(n_train / batch), capped at
// opts.max_steps.
int64_t total_train_steps(size_t n_train, const TrainOptions& opts);
int64_t train_steps_per_epoch(size_t n_train, const TrainOptions& opts);  // ceil(n_train / batch)
// Example indices of optimizer step `step`: epoch e's order is seeded_permutation(n, mix(seed, e)),
// cut into batches of `batch` (the last one of an epoch may be smaller).
std::vector<size_t> batch_indices(size_t n_train, int64_t batch, uint64_t seed, int64_t step);

struct TrainData {
  std::vector<Example> train;
  std::vector<Example> val;   // empty: no evaluation, the last adapter is kept
  std::vector<Example> test;  // empty: no test loss
};

// JSON has no NaN: a missing loss is written as null and read back as NaN (trainer and sweep files).
nlohmann::json number_or_null(double v);
double number_or_nan(const nlohmann::json& j);

// FNV-1a over ids and loss masks: tells whether a checkpoint was made on the same data.
std::string examples_hash(const std::vector<Example>& examples);
// The settings of a run fingerprint `now` that differ from `saved` ("lr 0.001 -> 0.002, ..."); the
// keys added later (model, dtype) count only when `saved` has them.
std::string settings_diff(const nlohmann::json& saved, const nlohmann::json& now);
// The hint for such a difference: another model or dtype needs the original --model/--dtype.
std::string settings_hint(const std::string& diff);

// The states of the generators a step draws from (CPU, and each CUDA device of the model), by the
// names checkpoints keep them under; a redone step and a resumed run restore them.
std::map<std::string, torch::Tensor> generator_states(const Model& model);
void set_generator_states(const Model& model, const std::map<std::string, torch::Tensor>& states);

// The settings and data a run's result depends on, as a JSON object (checkpoints and sweeps
// refuse to mix results of different settings).
std::string run_fingerprint(const LoraConfig& lora, const TrainOptions& opts,
                            const TrainData& data);

struct StepMetrics {
  int64_t step = 0;  // 1-based: optimizer steps done
  double epoch = 0;  // epochs done after this step, fractional, as transformers logs it
  double loss = 0;       // mean over the batch's supervised tokens, before the update
  double lr = 0;         // used by this update
  double grad_norm = 0;  // before clipping
  int64_t tokens = 0;    // real tokens in the batch
  int64_t supervised = 0;
  double seconds = 0;
};

struct EvalPoint {
  int64_t step = 0;
  double val_loss = 0;
};

// Evaluations as checkpoints and summaries keep them: [[step, val_loss], ...], null for a NaN.
nlohmann::json evals_json(const std::vector<EvalPoint>& evals);
std::vector<EvalPoint> evals_from_json(const nlohmann::json& j);

struct TrainResult {
  int64_t total_steps = 0, steps_done = 0;
  bool finished = false;  // false: stopped early (stop_after or interrupt) with a checkpoint
  bool resumed = false;   // continued from a checkpoint (or found the run already done)
  bool already_finished = false;  // --resume found the run done: its summary, nothing trained
  bool diverged = false;  // stopped on a non-finite loss or gradient; the best adapter is kept
  int64_t best_step = 0;  // the adapter kept; 0 when nothing was evaluated
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  // the base model's validation loss, measured only when the best adapter's might be above it
  double base_val_loss = std::numeric_limits<double>::quiet_NaN();
  int64_t n_trainable = 0;
  double seconds = 0;              // training and evaluation, summed over resumed sessions
  double tokens_per_s = 0;         // training tokens per second, this session only
  int64_t peak_gpu_bytes = 0;      // CUDA allocator's high-water mark so far; 0 on the CPU
  bool checkpointing = false;      // blocks recomputed at the end (asked, or after out of memory)
  std::vector<StepMetrics> steps;  // this session's steps
  std::vector<EvalPoint> evals;    // all evaluations of the run
  std::vector<std::string> warnings;  // the data's (TrainOutput), then e.g. a validation loss
                                      // that only rose (lr too high)
  int64_t n_train = 0, n_val = 0, n_test = 0;  // examples
};

// Where results go. An empty dir keeps everything in memory (tests).
struct TrainOutput {
  std::string dir;
  std::string base_model_path;  // base_model_name_or_path in adapter_config.json
  bool resume = false;  // continue from dir's checkpoint (or start afresh when there is none)
  bool force = false;   // replace results already in dir
  bool progress = false;        // a bar on stderr: the CLI turns it on, a library caller asks
  std::string label = "train";  // the progress bar's label
  // Said before training (what reading the data warned about): kept in the result and in
  // train_summary.json, for scripts that read those rather than stderr.
  std::vector<std::string> warnings;
};

// Files a run writes into TrainOutput::dir.
inline constexpr const char* kCheckpointFile = "checkpoint.safetensors";
inline constexpr const char* kMetricsFile = "metrics.jsonl";
inline constexpr const char* kSummaryFile = "train_summary.json";

// What TrainOutput::dir holds. Throws (with a hint) when training there would overwrite results
// without --resume or --force, or when --resume finds nothing of lorank's to continue.
enum class OutputState { fresh, checkpoint, finished };
OutputState inspect_output_dir(const TrainOutput& out);
TrainResult read_train_summary(const std::string& path);
// train_summary.json's content; `lorank train --json` prints it with a few facts more.
nlohmann::json train_summary_json(const TrainResult& r);

class Trainer {
 public:
  // Attaches adapters of `lora` to `model` (removed again when the trainer goes away) and seeds
  // LibTorch's generators with opts.seed.
  // `model` and `data` must outlive the trainer.
  Trainer(Model& model, const LoraConfig& lora, const TrainData& data, TrainOptions opts);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // The whole run: resume or refuse per `out`, train, evaluate, keep the best adapter, write the
  // adapter (PEFT), metrics, checkpoints and a summary, then the best adapter's test loss.
  TrainResult run(const TrainOutput& out);

  // One optimizer step on the next batch of the data order. When CUDA runs out of memory, the
  // micro-batch is halved (more accumulation, same examples and loss per step), notice() says so
  // and the step is redone; only a micro-batch of 1 that does not fit is an error.
  StepMetrics step();
  // Mean loss per supervised token of `examples` with the current adapter (no dropout).
  double evaluate(const std::vector<Example>& examples);

  int64_t steps_done() const { return step_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t steps_per_epoch() const;
  int64_t micro_batch() const { return micro_batch_; }  // examples per forward pass now
  LoraAdapters& adapters() { return *adapters_; }
  const TrainOptions& options() const { return opts_; }

  // Adapter, optimizer, generator state, step, evaluations and the best adapter so far, in one
  // safetensors file written through a temp file and a rename.
  void save_checkpoint(const std::string& path) const;
  void load_checkpoint(const std::string& path);
  // Refuses saved settings (a checkpoint's or a finished run's) that differ from this run's.
  void check_same_settings(const nlohmann::json& saved, const std::string& path,
                           const std::string& what) const;

 private:
  torch::Tensor micro_step(const std::vector<size_t>& idx, int64_t n_supervised_total,
                           StepMetrics& m);
  torch::Tensor accumulate(const std::vector<size_t>& idx, StepMetrics& m, int64_t& micro_size);
  void shrink_micro_batch(int64_t failed_size, const c10::Error& oom);
  void record_eval(int64_t step, double val_loss);
  void finish(const TrainOutput& out, TrainResult& r);
  void note_worse_than_base(TrainResult& r);
  bool open_output(const TrainOutput& out, TrainResult& r);  // false: the run was already done
  std::string status_line(const StepMetrics& m) const;
  const std::string& options_fingerprint() const;

  Model& model_;
  LoraConfig lora_cfg_;
  const TrainData& data_;
  TrainOptions opts_;
  std::unique_ptr<LoraAdapters> adapters_;
  std::unique_ptr<AdamW> optimizer_;
  int64_t step_ = 0, total_steps_ = 0;
  int64_t micro_batch_ = 1;  // batch / grad_accum until CUDA runs out of memory
  std::vector<EvalPoint> evals_;
  int64_t best_step_ = 0;
  double best_val_ = std::numeric_limits<double>::quiet_NaN();
  double elapsed_before_ = 0;  // seconds spent by earlier sessions of a resumed run
  std::chrono::steady_clock::time_point session_start_ = std::chrono::steady_clock::now();
  std::map<std::string, torch::Tensor> best_state_;  // CPU copy of the best adapter
  mutable std::string fingerprint_;
};

}  // namespace lorank
