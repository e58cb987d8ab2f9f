// `lorank sweep --jobs N`: each training in a `lorank train` process of its own, N at a time, on
// --devices in turn. Processes rather than threads: LibTorch runs all CUDA backward passes of a
// process in one thread per device, so threads sharing a GPU overlap little (bench/RESULTS.md).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "sweep.h"

namespace lorank::cli {

struct SweepJobs {
  std::vector<std::string> train_args;  // what every training shares: the sweep's own options
  std::vector<torch::Device> devices;   // slot i trains on devices[i % size]
  std::string sweep_dir;
};

// Trains (rank, lr) as `lorank train <train_args> --r R --lr LR --device D --out DIR/runs/...
// --resume --quiet`, its output in runs/r<R>-lr<LR>.log, and reads the result from the run's
// summary. The process has its own process group: on `stop` it gets one SIGINT (and checkpoints),
// and SIGINT when this process dies. A training that fails is an error naming its log.
SweepTrainer process_trainer(const SweepJobs& jobs);

}  // namespace lorank::cli
