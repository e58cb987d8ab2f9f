// What `train` and `sweep` share: their option table, the LoRA config and data it describes, and
// a SIGINT handler that lets a run checkpoint before it stops.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "lora.h"
#include "options.h"
#include "session.h"
#include "trainer.h"

namespace lorank::cli {

struct TrainCliOptions {
  CommonOptions common;
  DataOptions data;
  int64_t r = 8;
  double alpha = 8;
  bool rslora = true;  // as recommend advises (alpha 8 with rsLoRA); --no-rslora: PEFT's alpha/r
  std::vector<std::string> targets = {"all-linear"};
  std::vector<std::string> rank_pattern, alpha_pattern;  // "key=value"
  double dropout = 0;
  std::string adapter_config;  // train only: the LoRA settings above from adapter_config.json
  std::vector<std::string> lora_flags_given;  // which of those settings the command line also set
  TrainOptions train;
  int64_t seed = 0;
  int64_t eval_batch_tokens = 8192;
  bool no_autocast = false;
  std::string checkpointing = "auto";  // auto: from the first CUDA out-of-memory on
  double val_fraction = 0.1;
  std::string val_path, test_path;
  std::string out;
  bool resume = false, force = false;
};

// --lr's range, which sweep's --lrs shares.
constexpr double k_min_lr = 1e-12, k_max_lr = 10;

// `sweep` leaves out --r/--rank-pattern and --lr (it varies them) and defaults to rsLoRA.
std::vector<OptionSpec> train_option_specs(TrainCliOptions& o, bool sweep);
// Applies the parsed values the tables cannot hold directly (seed, autocast, eval batch,
// checkpointing).
void finalize(TrainCliOptions& o);
// From the LoRA options, or from --adapter-config (a file or the folder holding one), which no
// LoRA option may also be given with.
LoraConfig lora_config_from(const TrainCliOptions& o);
// Warns of the ranks (each of `ranks`, or cfg's own when empty) above a target module's
// min(d_in, d_out): PEFT trains them, but there they add parameters, not capacity.
void warn_ranks_beyond_full(Model& model, const LoraConfig& cfg, const std::vector<int64_t>& ranks);
// Which LoRA settings the command line gave (o.lora_flags_given), from the parsed app.
void note_lora_flags_given(const CLI::App& app, TrainCliOptions& o);
// Warns when --alpha looks like PEFT's alpha = r or 2r habit (above 8 and at least the smallest
// of `ranks`, or cfg's r) while rsLoRA, lorank's default, scales by alpha/sqrt(r); the scales are
// quoted at the largest.
void warn_alpha_habit(const TrainCliOptions& o, const LoraConfig& cfg,
                      const std::vector<int64_t>& ranks);
// Train/validation examples from --data (split by --val-fraction unless --val), test from --test.
// The data's warnings (the training file's, then --val's and --test's) go to `warnings`.
TrainData load_train_data(const Session& s, const TrainCliOptions& o,
                          std::vector<std::string>& warnings);
// "data FILE: N training examples, ...": the file named, since without --data it is the demo.
std::string describe_data(const Session& s, const TrainData& d, const TrainCliOptions& o);

// First SIGINT, SIGTERM or SIGHUP: set the flag (the trainer checkpoints and stops); a second:
// the signal's default action. A signal already ignored (nohup) stays ignored. In a sweep --jobs
// training (kSweepParentEnv names its sweep) repeats from the sweep's pid are its death signal.
constexpr const char* kSweepParentEnv = "LORANK_SWEEP_PARENT";
const std::atomic<bool>* install_interrupt_handler();
// After a run that stopped early: 128 + the signal that stopped it (130 for Ctrl-C), else 0.
int stopped_exit_code();

}  // namespace lorank::cli
