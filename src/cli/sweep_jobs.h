// `lorank sweep --jobs N`: each training in a `lorank train` process of its own, N at a time, on
// --devices in turn. Processes rather than threads: LibTorch runs all CUDA backward passes of a
// process in one thread per device, so threads sharing a GPU overlap little (bench/RESULTS.md).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "progress.h"
#include "sweep.h"

namespace lorank::cli {

struct SweepJobs {
  std::vector<std::string> train_args;  // what every training shares: the sweep's own options
  std::vector<torch::Device> devices;   // slot i trains on devices[i % size]
  std::string sweep_dir;
  // Called with a run's folder as its process starts and after it ends (from the slots' threads).
  std::function<void(const std::string& run_dir)> on_start, on_end;
  // Called with each "warning: ..." line of a run's log once the run has ended.
  std::function<void(const std::string& line)> on_warning;
};

// Trains (rank, lr) as `lorank train <train_args> --r R --lr LR --device D --out DIR/runs/...
// --resume --quiet`, its output in runs/r<R>-lr<LR>.log, and reads the result from the run's
// summary. The process has its own process group: on `stop` it gets one SIGINT (and checkpoints),
// and SIGINT when this process dies. A training that fails is an error naming its log.
SweepTrainer process_trainer(const SweepJobs& jobs);

// One bar over the steps the sweep's processes train, read from their runs' metrics.jsonl as the
// files grow (every second), with tokens/s and ETA: their own bars would interleave.
class JobsProgress {
 public:
  JobsProgress(int64_t total_steps, bool enabled);
  ~JobsProgress();
  JobsProgress(const JobsProgress&) = delete;
  JobsProgress& operator=(const JobsProgress&) = delete;
  void started(const std::string& run_dir);
  void ended(const std::string& run_dir);  // takes its last lines, then stops watching it

 private:
  struct Watched {
    std::streamoff offset = 0;  // bytes of metrics.jsonl read so far
    int64_t step = 0;           // the highest step seen
  };
  void read_new_lines(const std::string& run_dir, Watched& w);
  void tick();  // under mu_

  std::mutex mu_;
  std::map<std::string, Watched> running_;
  Progress bar_;
  int64_t steps_ = 0, shown_ = 0, tokens_ = 0;  // shown_: steps the bar has been given
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<bool> stop_{false};
  std::thread ticker_;
};

}  // namespace lorank::cli
