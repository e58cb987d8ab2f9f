// lorank recommend: probe a sample of the data, then the rank, rank_pattern, alpha and predicted
// curve that this model and this data need; a report, JSON, or the user's trainer's config.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>

#include "error.h"
#include "evidence.h"
#include "export.h"
#include "files.h"
#include "probe_cli.h"
#include "progress.h"
#include "recommend.h"
#include "report.h"
#include "sweep.h"
#include "version.h"

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
  std::string save_evidence;  // write what the decision rests on here
  std::string evidence;       // decide from this saved evidence: no model, data or probe
  // The rule's calibrated constants (RecommendOptions), for re-calibration from saved evidence.
  double rank_scale = RecommendOptions().rank_scale;
  double curve_rank_scale = RecommendOptions().curve_rank_scale;
  double band_factor = RecommendOptions().band_factor;
  double module_quantile = RecommendOptions().module_quantile;
  double noise_margin = RecommendOptions().noise_margin;
  double max_extrapolation = RecommendOptions().max_extrapolation;
};

// "llama_factory" (the file's name) for "llama-factory"; then checked against the formats.
void check_format(std::string& format, bool json) {
  if (format.empty()) return;
  std::replace(format.begin(), format.end(), '_', '-');
  if (json) {
    fail_usage("--format", "cannot be combined with --json", "one of them", "both",
               "--json prints the recommendation, --format " + format +
                   " the trainer's config; --out DIR writes both");
  }
  for (const auto& f : export_formats()) {
    if (f == format) return;
  }
  fail_usage("--format", "unknown format", join(export_formats(), ", "), format,
             "--out DIR writes every format's file at once");
}

std::vector<std::string> output_names() {
  std::vector<std::string> names = {"recommendation.json", "report.txt"};
  for (const auto& f : export_formats()) names.push_back(export_file_name(f));
  return names;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Every file is checked before the first is written: a refusal leaves the folder as it was.
void check_outputs(const RecommendCliOptions& o) {
  refuse_inputs_as_output(o.save_evidence, "--save-evidence", o.common, {o.evidence});
  refuse_inputs_as_output(o.out, "--out", o.common, {o.evidence});
  if (!o.save_evidence.empty()) check_can_write_file(o.save_evidence, "--save-evidence");
  if (!o.out.empty()) check_can_write_folder(o.out, "--out");
  for (const char* weights : {"adapter_model.safetensors", "adapter_model.bin"}) {
    if (!o.out.empty() && exists(o.out + "/" + weights))  // --force too: it would break them
      fail(o.out, "holds a trained adapter (" + std::string(weights) + ")",
           "a folder without adapter weights", weights,
           "choose another --out: this adapter_config.json would no longer describe those weights");
  }
  if (o.force) return;
  std::vector<std::pair<std::string, std::string>> paths;  // path, what should be there instead
  if (!o.save_evidence.empty()) paths.push_back({o.save_evidence, "no file there"});
  if (!o.out.empty()) {
    for (const auto& n : output_names())
      paths.push_back({o.out + "/" + n, "a folder without " + n});
  }
  for (const auto& [path, expected] : paths) {
    if (exists(path)) {
      fail(path, "refusing to overwrite a file", expected, "the file exists",
           "choose another --out or --save-evidence, or add --force to replace it");
    }
  }
}

// The common options that say where a run computes: what the printed commands carry over.
std::vector<OptionSpec> device_option_specs(CommonOptions& o) {
  std::vector<OptionSpec> specs;
  for (OptionSpec& spec : common_option_specs(o)) {
    if (spec.flags == "--device" || spec.flags == "--dtype" || spec.flags == "--gpu-memory")
      specs.push_back(std::move(spec));
  }
  return specs;
}

// All files or none: a full disk leaves the folder as it was (a --force run kept the old
// recommendation.json beside new configs).
void write_outputs(const RecommendCliOptions& o, const Recommendation& rec,
                   const ReportContext& ctx) {
  write_exports(rec, o.out, ctx.model_path, o.force,
                {{"recommendation.json", recommendation_json(rec, ctx)},
                 {"report.txt", recommendation_report(rec, ctx)}});
}

// Probes the data (the slow part) and gathers what the decision rests on.
Evidence probe_evidence(RecommendCliOptions& o) {
  ProbeCliOptions given = o.probe;  // as given, before the defaults below fill it in
  const auto t0 = std::chrono::steady_clock::now();
  Session s = open_session(o.common, o.data);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // --sample alone is the sample the user asked for; the default token cap is for neither given.
  if (o.probe.max_tokens == 0 && o.probe.sample == 0)
    o.probe.max_tokens = default_probe_tokens(s.device);
  o.probe.max_rank = o.max_rank;
  o.probe.no_moments = !o.whitened;  // the plain rule needs no input moments
  ProbeRun run = run_probe_cli(s, o.probe, o.common.quiet, /*gain_curves=*/false);
  if (!o.common.quiet) {
    const std::string where = run.probe.device.is_cpu()
                                  ? "cpu, " + std::to_string(compute_threads()) + " threads"
                                  : run.probe.device.str();
    std::fprintf(stderr,
                 "load %.1fs + probe %.1fs (%lld tokens a pass%s) + spectrum %.1fs (%s)%s\n",
                 load_s, run.probe.seconds, static_cast<long long>(run.probe.batch_tokens),
                 run.probe.checkpointing ? ", blocks recomputed" : "", run.spectrum_seconds,
                 where.c_str(), gpu_peak_note(s.model->peak_gpu_bytes()).c_str());
  }
  const int64_t fit =
      s.device.is_cuda()
          ? trainings_that_fit(card_gib({s.device}, o.common.gpu_memory_gib), weights_gib(s))
          : 1;
  // Absolute: the configs and the evidence are read from other folders.
  ReportContext ctx{model_reference(s),    absolute_path(s.data_path),
                    s.runtime.device,      grad_mode_name(run.probe.mode),
                    run.probe.sketch_rank, fit};
  DataOptions plain;
  ctx.data_args = changed_option_args(data_option_specs(o.data), data_option_specs(plain));
  ctx.targets = o.probe.targets;
  ctx.layers = o.probe.layers;
  ctx.data_args_known = true;
  CommonOptions plain_common;
  ctx.device_args =
      changed_option_args(device_option_specs(o.common), device_option_specs(plain_common));
  ctx.data_warnings = s.data.stats.warnings;
  ProbeCliOptions plain_probe;
  ctx.probe_args =
      changed_option_args(probe_option_specs(given, true), probe_option_specs(plain_probe, true));
  ctx.threads = s.runtime.threads;
  ctx.lorank_version = kLorankVersion;
  return {ctx, data_facts(s.data.stats, run.probe), module_evidence(run.probe, run.spectra)};
}

Evidence saved_evidence(const RecommendCliOptions& o) {
  Evidence e = load_evidence(o.evidence);
  if (o.whitened && e.modules.front().spectrum.singular_values_whitened.empty()) {
    fail(o.evidence, "--whitened needs whitened spectra, and this evidence has none", "", "",
         "save the evidence again with --whitened");
  }
  return e;
}

RecommendOptions rule_options(const RecommendCliOptions& o) {
  RecommendOptions ro;
  ro.max_rank = o.max_rank;
  ro.budget_params = o.budget_params;
  ro.alpha = o.alpha;
  ro.whitened = o.whitened;
  ro.pattern = o.pattern;
  ro.rank_scale = o.rank_scale;
  ro.curve_rank_scale = o.curve_rank_scale;
  ro.band_factor = o.band_factor;
  ro.module_quantile = o.module_quantile;
  ro.noise_margin = o.noise_margin;
  ro.max_extrapolation = o.max_extrapolation;
  return ro;
}

// With --evidence the model, data and probe were fixed when it was saved: every option of theirs
// (the tables' own flags, so none is missed) would be silently ignored, so each is refused.
void check_evidence_alone(const RecommendCliOptions& o, const CLI::App& app) {
  if (o.evidence.empty()) return;
  CommonOptions common;
  DataOptions data;
  ProbeCliOptions probe;
  std::vector<OptionSpec> specs = common_option_specs(common);
  for (auto table : {data_option_specs(data), probe_option_specs(probe, true)})
    specs.insert(specs.end(), table.begin(), table.end());
  for (const auto& s : specs) {
    const std::string flag = s.flags.substr(0, s.flags.find(','));
    if (flag == "--json" || flag == "--quiet" || app.count(flag) == 0) continue;
    fail_usage(flag, "cannot be combined with --evidence", "", "",
               "the evidence was measured on one model, data sample and probe; drop " + flag +
                   ", or probe again without --evidence");
  }
}

int run_recommend_cmd(RecommendCliOptions& o, const CLI::App& app) {
  check_evidence_alone(o, app);
  check_format(o.format, o.common.json);
  check_outputs(o);  // refuse before the slow part
  // A train or a second recommend writing there meanwhile is refused, not interleaved.
  std::optional<FolderLock> lock;
  if (!o.out.empty()) lock.emplace(o.out, "--out");
  const Evidence e = o.evidence.empty() ? probe_evidence(o) : saved_evidence(o);
  check_outputs(o);  // again: files may have appeared during the probe
  if (!o.save_evidence.empty()) write_file_atomic(o.save_evidence, evidence_json(e), o.force);
  Recommendation rec = recommend(e.modules, e.data, rule_options(o));
  if (!e.context.layers.empty()) {  // kept in the evidence: decided again, it is said again
    rec.warnings.push_back(
        "--layers probed some layers only, and the parameter counts are theirs: the configs adapt "
        "every layer (no layers_to_transform), so the adapter trained from them is larger");
  }
  trace("decided");
  ReportContext ctx = e.context;
  ctx.program = program_name();
  if (!o.out.empty()) write_outputs(o, rec, ctx);
  if (!o.format.empty()) {
    std::printf("%s", export_config(rec, o.format, ctx.model_path).c_str());
  } else if (o.common.json) {
    std::printf("%s", recommendation_json(rec, ctx).c_str());
  } else {
    std::printf("%s", recommendation_report(rec, ctx).c_str());
  }
  trace("printed");
  if (!o.common.quiet && !o.out.empty()) {
    std::fprintf(
        stderr, "configs in %s; train it: %s train %s --adapter-config %s --out lorank-adapter%s\n",
        o.out.c_str(), shell_word(ctx.program).c_str(), model_and_data_args(ctx).c_str(),
        shell_word(o.out).c_str(),
        ctx.data_args_known ? "" : ", with the data options the evidence was probed with");
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
            add_options(
                app,
                {
                    {"--max-rank", &o->max_rank, "largest rank to recommend", 1, 65536},
                    {"--budget-params", &o->budget_params,
                     "at most this many trainable parameters (0: no budget)", 0, 1e15},
                    {"--alpha", &o->alpha, "rsLoRA alpha to recommend", 1e-9, 1e9},
                    {"--whitened", &o->whitened, "count directions on the K-FAC-whitened spectrum"},
                    {"--pattern", &o->pattern,
                     "give modules far from r their own rank (rank_pattern); off: no better than a "
                     "uniform r of the same size in calibration"},
                    {"--format", &o->format,
                     "print this trainer's config instead of the report: " +
                         join(export_formats(), ", ")},
                    {"--out,-o", &o->out,
                     "also write every config, recommendation.json, report.txt here"},
                    {"--force", &o->force, "overwrite files in --out and --save-evidence"},
                    {"--save-evidence", &o->save_evidence,
                     "also write what the decision rests on (data facts, every module's spectra) "
                     "to this JSON file"},
                    {"--evidence", &o->evidence,
                     "decide from evidence saved by --save-evidence: no model, data or probe "
                     "(--max-rank, --budget-params, --format, --pattern can change)"},
                    {"--rank-scale", &o->rank_scale,
                     "ranks per supported direction (calibrated; for re-calibration)", 0.01, 1e3},
                    {"--curve-rank-scale", &o->curve_rank_scale,
                     "ranks per direction in the predicted curve (calibrated)", 0.01, 1e3},
                    {"--curve-band-factor", &o->band_factor,
                     "the curve's band: the curve at r / this and r x this (calibrated)", 1, 1e3},
                    {"--module-quantile", &o->module_quantile,
                     "the global rank is this quantile of the modules' ranks (0.25: the lower "
                     "quartile, about 3/4 of the modules want more; 1: the largest) (calibrated)",
                     0, 1},
                    {"--noise-margin", &o->noise_margin,
                     "a direction counts above (1 + margin) x the noise edge (calibrated)", 0, 1e3},
                    {"--max-extrapolation", &o->max_extrapolation,
                     "predict counts for at most this many times the probed tokens (calibrated)", 1,
                     1e6},
                });
            add_options(app, probe_option_specs(o->probe, /*for_recommend=*/true));
            return [o, &app] { return run_recommend_cmd(*o, app); };
          }};
}

}  // namespace lorank::cli
