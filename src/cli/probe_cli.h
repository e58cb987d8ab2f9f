// The probe's options and its run with a progress bar, shared by `lorank probe` and
// `lorank recommend` (one table, one setup).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "probe.h"
#include "session.h"

namespace lorank::cli {

struct ProbeCliOptions {
  int64_t shards = 4;
  int64_t seed = 0;
  int64_t sample = 0;
  int64_t max_tokens = 0;
  std::vector<std::string> targets;
  std::vector<int64_t> layers;
  std::string grad_mode = "auto";
  int64_t sketch_rank = 128;
  int64_t exact_budget_mb = 2048;
  bool no_moments = false;
  double damping = 1e-2;
  int64_t max_rank = 256;
  int64_t splits = 3;
  int64_t batch_tokens = 0;  // 0: auto_probe_batching
  int64_t max_batch = 0;
  std::string checkpointing = "auto";  // auto: when memory is short (auto_probe_batching)
  std::string spectrum_device = "auto";  // auto, cpu or gpu (spectrum_device in probe.h)
};

// `recommend` leaves out --max-rank (it has its own) and describes --max-tokens' default.
std::vector<OptionSpec> probe_option_specs(ProbeCliOptions& o, bool for_recommend);

struct ProbeRun {
  ProbeResult probe;
  std::vector<ModuleSpectrum> spectra;
  SpectrumOptions spectrum_options;
  double spectrum_seconds = 0;
};
// gain_curves: false computes only what recommend reads (singular values and noise edges).
ProbeRun run_probe_cli(Session& s, const ProbeCliOptions& o, bool quiet, bool gain_curves = true);

}  // namespace lorank::cli
