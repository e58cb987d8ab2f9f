// lorank recommend: probe a sample of the data, then the rank, rank_pattern, alpha and predicted
// curve that this model and this data need; a report, JSON, or the user's trainer's config.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>

#include "error.h"
#include "export.h"
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
  bool pattern = false;
  std::string format;  // print this trainer's config instead of the report
  std::string out;     // write every config, recommendation.json and report.txt here
  bool force = false;
};

void check_format(const std::string& format) {
  if (format.empty()) return;
  for (const auto& f : export_formats()) {
    if (f == format) return;
  }
  std::string all;
  for (const auto& f : export_formats()) all += (all.empty() ? "" : ", ") + f;
  fail("--format", "unknown format", all, format);
}

// Every file is checked before the first is written: a refusal leaves the folder as it was.
void check_outputs(const RecommendCliOptions& o) {
  if (o.out.empty() || o.force) return;
  std::vector<std::string> names = {"recommendation.json", "report.txt"};
  for (const auto& f : export_formats()) names.push_back(export_file_name(f));
  struct stat st;
  for (const auto& n : names) {
    const std::string path = o.out + "/" + n;
    if (::stat(path.c_str(), &st) == 0) {
      fail(path, "refusing to overwrite an earlier recommendation", "a folder without " + n,
           "the file exists", "choose another --out, or add --force to replace it");
    }
  }
}

void write_outputs(const RecommendCliOptions& o, const Recommendation& rec,
                   const ReportContext& ctx) {
  check_outputs(o);  // again: files may have appeared during the probe
  write_exports(rec, o.out, ctx.model_path, o.force);  // creates the folder
  write_file_atomic(o.out + "/recommendation.json", recommendation_json(rec, ctx), o.force);
  write_file_atomic(o.out + "/report.txt", recommendation_report(rec, ctx), o.force);
}

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
  check_format(o.format);
  check_outputs(o);  // refuse before the slow part
  const auto t0 = std::chrono::steady_clock::now();
  Session s = open_session(o.common, o.data);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.probe.max_tokens == 0) o.probe.max_tokens = default_max_tokens(s);
  o.probe.max_rank = o.max_rank;
  o.probe.no_moments = !o.whitened;  // the plain rule needs no input moments
  ProbeRun run = run_probe_cli(s, o.probe, o.common.quiet, /*gain_curves=*/false);
  RecommendOptions ro;
  ro.max_rank = o.max_rank;
  ro.budget_params = o.budget_params;
  ro.alpha = o.alpha;
  ro.whitened = o.whitened;
  ro.pattern = o.pattern;
  Recommendation rec = recommend(module_evidence(run.probe, run.spectra), data_facts(s, run.probe), ro);
  ReportContext ctx{s.model_dir, s.data_path, s.runtime.device, grad_mode_name(run.probe.mode),
                    run.probe.sketch_rank};
  if (!o.out.empty()) write_outputs(o, rec, ctx);
  if (!o.format.empty()) {
    std::printf("%s", export_config(rec, o.format, ctx.model_path).c_str());
  } else if (o.common.json) {
    std::printf("%s", recommendation_json(rec, ctx).c_str());
  } else {
    std::printf("%s", recommendation_report(rec, ctx).c_str());
  }
  if (!o.common.quiet) {
    std::fprintf(stderr, "load %.1fs + probe %.1fs + spectrum %.1fs%s\n", load_s, run.probe.seconds,
                 run.spectrum_seconds,
                 o.out.empty() ? "" : ("; configs in " + o.out).c_str());
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
                {"--pattern", &o->pattern,
                 "give modules far from r their own rank (rank_pattern); off: no better than a "
                 "uniform r of the same size in calibration"},
                {"--format", &o->format, "print this trainer's config instead of the report",
                 -1e300, 1e300, {"peft", "axolotl", "torchtune", "llama-factory", "unsloth"}},
                {"--out,-o", &o->out, "also write every config, recommendation.json, report.txt here"},
                {"--force", &o->force, "overwrite files in --out"},
            });
            add_options(app, probe_option_specs(o->probe, /*for_recommend=*/true));
            return [o] { return run_recommend_cmd(*o); };
          }};
}

}  // namespace lorank::cli
