// lorank recommend: probe a sample of the data, then the rank, rank_pattern, alpha and predicted
// curve that this model and this data need; a report, JSON, or the user's trainer's config.
#include <cstdio>

#include "error.h"
#include "files.h"
#include "probe_cli.h"
#include "recommend.h"
#include "report.h"

namespace lorank::cli {

namespace {

struct RecommendCliOptions {
  CommonOptions common;
  DataOptions data;
  ProbeCliOptions probe;
  int64_t max_rank = 256;
  int64_t budget_params = 0;
  double alpha = 8;
  bool whitened = false;
};

// A CPU probe of ~16k tokens keeps the tiny model inside 30 s; on CUDA a larger sample is cheap.
int64_t default_max_tokens(const Session& s) { return s.device.is_cuda() ? 262144 : 16384; }

DataFacts data_facts(const Session& s, const ProbeResult& r) {
  DataFacts d;
  d.n_examples = s.data.stats.n_examples;
  d.n_supervised = s.data.stats.n_supervised;
  d.n_tokens = s.data.stats.n_tokens;
  for (const auto& shard : r.shards) d.probe_examples += int64_t(shard.size());
  d.probe_supervised = r.n_supervised();
  d.probe_tokens = r.n_tokens();
  d.base_loss = r.base_loss();
  return d;
}

int run_recommend_cmd(RecommendCliOptions& o) {
  Session s = open_session(o.common, o.data);
  if (o.probe.max_tokens == 0) o.probe.max_tokens = default_max_tokens(s);
  o.probe.max_rank = o.max_rank;
  o.probe.no_moments = !o.whitened;  // the plain rule needs no input moments
  ProbeRun run = run_probe_cli(s, o.probe, o.common.quiet, /*gain_curves=*/false);
  RecommendOptions ro;
  ro.max_rank = o.max_rank;
  ro.budget_params = o.budget_params;
  ro.alpha = o.alpha;
  ro.whitened = o.whitened;
  Recommendation rec = recommend(module_evidence(run.probe, run.spectra), data_facts(s, run.probe), ro);
  ReportContext ctx{s.model_dir, s.data_path, s.runtime.device, grad_mode_name(run.probe.mode),
                    run.probe.sketch_rank};
  if (o.common.json) {
    std::printf("%s", recommendation_json(rec, ctx).c_str());
  } else {
    std::printf("%s", recommendation_report(rec, ctx).c_str());
  }
  if (!o.common.quiet) {
    std::fprintf(stderr, "probe %.1fs + spectrum %.1fs\n", run.probe.seconds, run.spectrum_seconds);
  }
  return 0;
}

}  // namespace

Subcommand recommend_subcommand() {
  return {"recommend",
          "Recommend the LoRA rank, rank_pattern and alpha for this model and data",
          [](CLI::App& app) -> std::function<int()> {
            auto o = std::make_shared<RecommendCliOptions>();
            add_options(app, common_option_specs(o->common));
            add_options(app, data_option_specs(o->data));
            add_options(app, {
                {"--max-rank", &o->max_rank, "largest rank to recommend", 1, 65536},
                {"--budget-params", &o->budget_params,
                 "at most this many trainable parameters (0: no budget)", 0, 1e15},
                {"--alpha", &o->alpha, "rsLoRA alpha to recommend", 1e-9, 1e9},
                {"--whitened", &o->whitened, "count directions on the K-FAC-whitened spectrum"},
            });
            add_options(app, probe_option_specs(o->probe, /*for_recommend=*/true));
            return [o] { return run_recommend_cmd(*o); };
          }};
}

}  // namespace lorank::cli
