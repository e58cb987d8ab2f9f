// Rank sweep: one LoRA training per (rank, learning rate) with the same data order and seed, as
// the oracle protocol of bench/README.md runs them; each result is appended durably to
// results.jsonl so a killed sweep resumes where it stopped. Also the oracle's minimal adequate
// rank, a table, an SVG plot of loss against rank and sweep.json.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "lora.h"
#include "trainer.h"

namespace lorank {

class Model;

struct SweepOptions {
  std::vector<int64_t> ranks = {1, 2, 4, 8, 16, 32, 64, 128};
  std::vector<double> lrs = {1e-3, 3e-3, 1e-2};
  LoraConfig lora;     // r is set per run; rank_pattern is refused (it would pin modules' ranks)
  TrainOptions train;  // lr is set per run
};

struct SweepRun {
  int64_t rank = 0;
  double lr = 0;
  int64_t n_trainable = 0;
  double best_val_loss = std::numeric_limits<double>::quiet_NaN();
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  int64_t best_step = 0, steps = 0;
  double seconds = 0;
  bool diverged = false;
  std::string dir;  // the run's folder, relative to the sweep's
};

// Per rank the learning rate with the best validation loss; L(r) is its test loss when every
// chosen run has one, else its validation loss. best = min L(r); the minimal adequate rank is the
// smallest r with L(r) <= best + max(0.005, 1% of best).
struct SweepSummary {
  std::string metric;              // "test" or "val"
  std::vector<SweepRun> per_rank;  // ascending rank; ranks where every lr failed are left out
  double best_loss = std::numeric_limits<double>::quiet_NaN();
  double threshold = std::numeric_limits<double>::quiet_NaN();
  int64_t adequate_rank = 0;  // 0 when no run produced a loss
};
SweepSummary summarize_sweep(const std::vector<SweepRun>& runs);
double sweep_loss(const SweepSummary& s, const SweepRun& run);  // L(r) of a chosen run

std::string sweep_table(const SweepSummary& s);  // the terminal table, adequate rank marked
std::string sweep_svg(const SweepSummary& s, const std::vector<SweepRun>& runs);
std::string sweep_json(const SweepSummary& s, const std::vector<SweepRun>& runs);

struct SweepOutput {
  std::string dir;  // results.jsonl, sweep.json, loss_vs_rank.svg, runs/r<rank>-lr<lr>/
  std::string base_model_path;
  bool resume = false;  // skip finished pairs, resume a half-finished run from its checkpoint
  bool force = false;   // discard an earlier sweep's results in dir
  bool progress = false;              // a bar on stderr: the CLI turns it on, a library caller asks
  std::vector<std::string> warnings;  // the data's, kept in each run's train_summary.json
};

inline constexpr const char* kResultsFile = "results.jsonl";

// Refuses a folder that holds another sweep's results unless resume (same settings) or force.
void check_sweep_dir(const SweepOutput& out);

struct SweepResult {
  std::vector<SweepRun> runs;  // in grid order (rank-major)
  bool complete = false;       // false: a run stopped early (interrupt, stop_after); resume later
  SweepSummary summary;        // when complete
};

// Runs every missing (rank, lr) pair; `on_run` sees each finished run (cached: read back from
// results.jsonl). When all are done, writes sweep.json and loss_vs_rank.svg.
SweepResult run_sweep(Model& model, const TrainData& data, const SweepOptions& opts,
                      const SweepOutput& out,
                      const std::function<void(const SweepRun&, bool cached)>& on_run = {});
// The same with one training at a time on each model (Model::replica: on several GPUs, or several
// on one, each in its own CUDA stream), in a thread per model. On one GPU this gains less than
// processes do: LibTorch runs every CUDA backward pass of a process in one thread per device.
// Without dropout every run's result is the one a single model gives; with dropout the masks come
// from LibTorch's shared generator, so they depend on timing.
SweepResult run_sweep(const std::vector<Model*>& models, const TrainData& data,
                      const SweepOptions& opts, const SweepOutput& out,
                      const std::function<void(const SweepRun&, bool cached)>& on_run = {});

// One training of a sweep, wherever it runs (the CLI runs `lorank train` processes). `slot`
// (0 .. n_slots - 1) says which of the trainings at once asks. When `stop` is set (the caller's
// interrupt, or another run failed) it should checkpoint, return and set *interrupted.
using SweepTrainer = std::function<SweepRun(size_t slot, int64_t rank, double lr,
                                            const std::atomic<bool>& stop, bool* interrupted)>;
// Runs are handed out in grid order to n_slots trainings at once (slot 0 in the calling thread);
// results.jsonl gets them in the order they finish, and `on_run` is called under a lock. A failing
// run stops the others (each keeps its checkpoint) and its error is rethrown.
SweepResult run_sweep(size_t n_slots, const SweepTrainer& train, const TrainData& data,
                      const SweepOptions& opts, const SweepOutput& out,
                      const std::function<void(const SweepRun&, bool cached)>& on_run = {});

// runs/r<rank>-lr<lr>: where a sweep's training of (rank, lr) keeps its files.
std::string sweep_run_dir(int64_t rank, double lr);
// "r=8 lr=0.001", as progress names a run.
std::string sweep_run_name(int64_t rank, double lr);
// "the training of r=8 lr=0.001", as errors name a run.
std::string sweep_run_label(int64_t rank, double lr);
// What a user does after a run failed (in this process or in a lorank train of its own).
std::string sweep_failure_hint();
// A finished training's result as the sweep's record of it.
SweepRun sweep_run_from(const TrainResult& r, int64_t rank, double lr);

// Trainings at once on one GPU, each a process of its own. Every process holds a CUDA context
// outside its allocator's limit, its own copy of the weights, and needs room for activations; each
// is given an even share so that it sizes its batches to that, not to memory the others will take.
constexpr double kCudaContextGib = 1.0;
double job_memory_share_gib(double card_gib, int64_t jobs_on_card);
// The least a training's share may be: its weights and a little room (recomputation does the rest;
// an 8B model trained in 22 GiB, bench/RESULTS.md).
double training_memory_floor_gib(double weights_gib);
// How many of these trainings fit on the card at once: at least 1 (which then fails as it would
// alone).
int64_t trainings_that_fit(double card_gib, double weights_gib);

}  // namespace lorank
