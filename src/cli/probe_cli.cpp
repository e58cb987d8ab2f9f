#include "probe_cli.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "progress.h"

namespace lorank::cli {

std::vector<OptionSpec> probe_option_specs(ProbeCliOptions& o, bool for_recommend) {
  std::vector<OptionSpec> specs = {
      {"--shards", &o.shards, "disjoint shards (>= 2; 4 gives three half splits)", 2, 64},
      {"--seed", &o.seed, "sampling, shards and sketches", 0, k_max_seed},
      {"--sample", &o.sample, "probe a seeded sample of N examples (0: all)", 0, 1e15},
      {"--max-tokens", &o.max_tokens,
       for_recommend ? "probe a seeded sample of about N tokens (0: 16k on CPU, 256k on CUDA, "
                       "or no limit with --sample)"
                     : "probe a seeded sample of about N tokens (0: no limit)",
       0, 1e15},
      {"--targets", &o.targets, "module types (default: all seven)"},
      {"--layers", &o.layers,
       for_recommend ? "probe only these layer indices (default: all); the configs still adapt "
                       "every layer"
                     : "layer indices (default: all)"},
      {"--grad-mode",
       &o.grad_mode,
       "exact G, randomized sketches, or by memory",
       -1e300,
       1e300,
       {"auto", "exact", "sketch"}},
      {"--sketch-rank", &o.sketch_rank, "sketch size k (caps the rank grid)", 1, 4096},
      {"--exact-budget-mb", &o.exact_budget_mb, "auto: exact when K x G fit in this", 0, 1e9},
      {"--damping", &o.damping,
       for_recommend
           ? "K-FAC damping relative to mean input eigenvalue (with --whitened; else unused)"
           : "K-FAC damping relative to mean input eigenvalue (the whitened spectra; "
             "unused with --no-moments)",
       0, 1e6},
      {"--splits", &o.splits, "half splits averaged", 1, 1000},
      {"--batch-tokens", &o.batch_tokens,
       "padded tokens per forward pass (0: 2048 on CPU; on CUDA up to 16384 as free memory allows)",
       0, 1e9},
      {"--checkpointing",
       &o.checkpointing,
       "recompute decoder blocks in backward: less memory, a third more time (auto: when memory "
       "is short)",
       -1e300,
       1e300,
       {"auto", "on", "off"},
       false,
       "on"},
      {"--max-batch", &o.max_batch, "examples per forward pass (0: 64 on CPU, 1024 on CUDA)", 0,
       1e6},
      {"--spectrum-device",
       &o.spectrum_device,
       "where the spectra are computed (cpu: one module per thread; gpu: where the probe ran; "
       "auto: the CPU when the probe ran on a GPU and 16 or more threads compute)",
       -1e300,
       1e300,
       {"auto", "cpu", "gpu"}},
  };
  if (!for_recommend) {  // recommend has its own --max-rank and decides on moments by its rule
    specs.push_back({"--max-rank", &o.max_rank, "largest rank of the grid", 1, 65536});
    specs.push_back({"--no-moments", &o.no_moments, "skip input second moments (no whitening, no EV)"});
  }
  return specs;
}

ProbeRun run_probe_cli(Session& s, const ProbeCliOptions& o, bool quiet, bool gain_curves) {
  ProbeOptions po;
  po.n_shards = o.shards;
  po.seed = uint64_t(o.seed);
  po.max_examples = o.sample;
  po.max_tokens = o.max_tokens;
  // PEFT's and train's spelling of "every linear layer but the head": the probe's default.
  if (o.targets != std::vector<std::string>{"all-linear"}) po.target_kinds = o.targets;
  po.layers = o.layers;
  po.mode = grad_mode_from_name(o.grad_mode);
  po.sketch_rank = o.sketch_rank;
  po.exact_budget_bytes = o.exact_budget_mb << 20;
  po.input_moments = !o.no_moments;
  const char* fp32 = std::getenv("LORANK_SKETCH_FP32");
  po.sketch_tf32 = !(fp32 && std::string(fp32) == "1");
  const ProbeOptions automatic = auto_probe_batching(*s.model, po);
  po.batching.batch_tokens = o.batch_tokens > 0 ? o.batch_tokens : automatic.batching.batch_tokens;
  po.batching.max_batch = o.max_batch > 0 ? o.max_batch : automatic.batching.max_batch;
  po.checkpointing = o.checkpointing == "auto" ? automatic.checkpointing : o.checkpointing == "on";
  po.batching.pad_id = pad_id_for(s);
  int64_t total = 0;  // a bound for the bar: tokens of the whole set when sampling
  for (const auto& e : s.data.examples) total += int64_t(e.ids.size());
  if (o.sample > 0 && size_t(o.sample) < s.data.examples.size())
    total = total * o.sample / int64_t(s.data.examples.size());
  if (o.max_tokens > 0) total = std::min(total, o.max_tokens);
  Progress progress("probe", total, "tok", !quiet);
  po.progress = &progress;
  ProbeRun run;
  trace("probe starts");
  run.probe = run_probe(*s.model, s.data.examples, po);
  trace("probe done");
  progress.finish();
  run.spectrum_options.damping = o.damping;
  run.spectrum_options.max_rank = o.max_rank;
  run.spectrum_options.max_splits = int(o.splits);
  run.spectrum_options.gain_curves = gain_curves;
  auto t0 = std::chrono::steady_clock::now();
  const torch::Device where = spectrum_device(o.spectrum_device, run.probe.device, compute_threads());
  if (where != run.probe.device) move_probe(run.probe, where);  // counted as spectrum time
  trace("sums on the spectra's device");
  run.spectra = analyse_probe(run.probe, run.spectrum_options);
  run.spectrum_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  trace("spectra done");
  return run;
}

}  // namespace lorank::cli
