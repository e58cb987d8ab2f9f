#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "evidence.h"
#include "json_excerpt.h"
#include "progress.h"
#include "sweep.h"

namespace lorank {

namespace {

nlohmann::json modules_json(const Recommendation& rec) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : rec.modules) {
    out.push_back({{"name", m.name}, {"kind", m.kind}, {"layer", m.layer}, {"d_in", m.d_in},
                   {"d_out", m.d_out}, {"directions_probe", m.directions_probe},
                   {"directions", m.directions}, {"directions_lo", m.directions_lo},
                   {"directions_hi", m.directions_hi}, {"rank", m.rank}});
  }
  return out;
}

// The check sweep's trainings at once: one per rank, as many as fit.
int64_t check_jobs(const std::vector<int64_t>& check, const ReportContext& ctx) {
  return std::max<int64_t>(1, std::min<int64_t>(int64_t(check.size()), ctx.trainings_fit));
}

nlohmann::json curve_json(const Recommendation& rec) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : rec.curve) {
    out.push_back({{"rank", c.rank}, {"params", c.params}, {"share", c.share},
                   {"share_lo", c.share_lo}, {"share_hi", c.share_hi}});
  }
  return out;
}

nlohmann::json options_json(const RecommendOptions& o) {
  return {{"grid", o.grid}, {"max_rank", o.max_rank}, {"budget_params", o.budget_params},
          {"noise_margin", o.noise_margin}, {"rank_scale", o.rank_scale},
          {"curve_rank_scale", o.curve_rank_scale}, {"band_factor", o.band_factor},
          {"module_quantile", o.module_quantile}, {"whitened", o.whitened}, {"pattern", o.pattern},
          {"pattern_min_steps", o.pattern_min_steps}};
}

// Medians over layers per module type, in model order.
struct KindRow {
  std::string kind;
  int64_t n = 0, dir_probe = 0, dir = 0, lo = 0, hi = 0;
  std::set<int64_t> ranks;
};
std::vector<KindRow> kind_rows(const Recommendation& rec) {
  std::vector<KindRow> rows;
  std::map<std::string, std::vector<const ModuleRank*>> by;
  for (const auto& m : rec.modules) {
    if (!by.count(m.kind)) rows.push_back({m.kind});
    by[m.kind].push_back(&m);
  }
  auto med = [](std::vector<int64_t> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? int64_t(0) : v[(v.size() - 1) / 2];
  };
  for (auto& row : rows) {
    std::vector<int64_t> a, b, c, d;
    for (const ModuleRank* m : by[row.kind]) {
      a.push_back(m->directions_probe);
      b.push_back(m->directions);
      c.push_back(m->directions_lo);
      d.push_back(m->directions_hi);
      row.ranks.insert(m->rank);
    }
    row.n = int64_t(a.size());
    row.dir_probe = med(a), row.dir = med(b), row.lo = med(c), row.hi = med(d);
  }
  return rows;
}

std::string ranks_text(const std::set<int64_t>& ranks) {
  std::string s;
  for (int64_t r : ranks) s += (s.empty() ? "" : "/") + std::to_string(r);
  return s;
}

}  // namespace

std::string shell_word(const std::string& w) {
  const bool plain = !w.empty() && w.find_first_not_of(
                                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                                       "QRSTUVWXYZ0123456789_-+=.,/:@%") == std::string::npos;
  if (plain) return w;
  std::string q = "'";
  for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string model_and_data_args(const ReportContext& ctx) {
  std::string s = "--model " + shell_word(ctx.model_path) + " --data " + shell_word(ctx.data_path);
  for (const auto& a : ctx.data_args) s += " " + shell_word(a);
  for (const auto& a : ctx.device_args) s += " " + shell_word(a);
  return s;
}

std::string check_command(const Recommendation& rec, const ReportContext& ctx) {
  const std::vector<int64_t> check = check_ranks(rec);
  std::string ranks;
  for (int64_t r : check) ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
  const int64_t jobs = check_jobs(check, ctx);
  // The sweep trains with rsLoRA by default, as recommended; the alpha is the recommended one.
  std::string targets;
  for (const auto& t : ctx.targets) targets += (targets.empty() ? " --targets " : ",") + t;
  return shell_word(ctx.program) + " sweep " + model_and_data_args(ctx) + targets + " --alpha " +
         format_exact(rec.alpha) + " --ranks " + ranks +
         (jobs > 1 ? " --jobs " + std::to_string(jobs) : std::string()) + " --out lorank-check";
}

std::string recommendation_json(const Recommendation& rec, const ReportContext& ctx) {
  nlohmann::json j;
  j["rank"] = rec.rank;
  j["rank_band"] = {rec.rank_lo, rec.rank_hi};
  j["alpha"] = rec.alpha;
  j["use_rslora"] = rec.use_rslora;
  j["alpha_without_rslora"] = rec.alpha_classic;
  j["rank_pattern"] = rec.rank_pattern;
  // Not "alpha_pattern": under rsLoRA (use_rslora) the scale follows each rank without one.
  j["alpha_pattern_without_rslora"] = rec.alpha_pattern;
  j["target_modules"] = rec.target_modules;
  j["trainable_params"] = rec.params;
  j["trainable_params_uniform"] = rec.params_uniform;
  j["capped"] = rec.capped;
  j["capped_by"] = rec.capped_by;
  j["rank_uncapped"] = rec.rank_uncapped;
  // The noise floor is rescaled to the training set's size, up to the calibrated cap.
  j["extrapolation"] = {{"data_over_probe", rec.extrapolation_needed},
                        {"used", rec.extrapolation},
                        {"rank_at_data_size", rec.rank_full_extrapolation > 0
                                                  ? nlohmann::json(rec.rank_full_extrapolation)
                                                  : nlohmann::json(nullptr)}};
  j["confidence"] = rec.confidence;
  j["confidence_reasons"] = rec.reasons;
  j["warnings"] = rec.warnings;
  j["explanation"] = rec.explanation;
  const std::vector<int64_t> check = check_ranks(rec);
  j["check_ranks"] = check;
  j["check_jobs"] = check_jobs(check, ctx);
  j["check_command"] = check_command(rec, ctx);
  j["curve"] = curve_json(rec);
  j["modules"] = modules_json(rec);
  j["data"] = data_facts_json(rec.data);
  // DESIGN.md signal 4: at most Σ base loss bits to absorb, about 2 bits per parameter to hold it.
  const double info_bits = double(rec.data.n_supervised) * rec.data.base_loss / std::log(2.0);
  j["capacity"] = {{"information_upper_bound_bits", info_bits},
                   {"adapter_bits", 2.0 * double(rec.params)},
                   {"note", "upper bound: base loss per supervised token x tokens, in bits; "
                            "the adapter at about 2 bits per parameter"}};
  j["options"] = options_json(rec.options);
  j["model"] = {{"path", ctx.model_path}, {"device", ctx.device}};
  j["data"]["path"] = ctx.data_path;
  j["data"]["warnings"] = ctx.data_warnings;
  j["probe"] = {{"grad_mode", ctx.grad_mode},
                {"sketch_rank", ctx.sketch_rank},
                {"args", ctx.probe_args},
                {"threads", ctx.threads}};
  j["lorank_version"] =
      ctx.lorank_version.empty() ? nlohmann::json(nullptr) : nlohmann::json(ctx.lorank_version);
  return json_output(j) + "\n";
}

std::string recommendation_report(const Recommendation& rec, const ReportContext& ctx) {
  std::string s;
  s += "model  " + ctx.model_path + "  (" + std::to_string(rec.modules.size()) + " target modules, " +
       ctx.device + ", " + ctx.grad_mode + " gradients)\n";
  s += "data   " + ctx.data_path + "  (" + format_count(double(rec.data.n_examples)) + " examples, " +
       format_count(double(rec.data.n_supervised)) + " supervised tokens)\n\n";
  s += "  recommended  r=" + std::to_string(rec.rank) +
       ", alpha=" + format_number("%g", rec.alpha) +
       " with rsLoRA (alpha=" + format_number("%.4g", rec.alpha_classic) + " without)   " +
       (rec.capped ? "capped by " + rec.capped_by +
                         ": the rule gives r=" + std::to_string(rec.rank_uncapped) + ", confidence "
                   : "confidence ") +
       rec.confidence + " (r=" + std::to_string(rec.rank_lo) + ".." + std::to_string(rec.rank_hi) +
       ")\n";
  std::string pattern;
  for (const auto& [k, v] : rec.rank_pattern) pattern += (pattern.empty() ? "" : ", ") + k + ": " + std::to_string(v);
  s += "  rank_pattern " + (pattern.empty() ? std::string("(none: one rank everywhere; --pattern gives far modules their own)") : pattern) + "\n";
  s += "  trainable    " + format_count(double(rec.params)) + " parameters (" +
       format_count(double(rec.params_uniform)) + " at r=" + std::to_string(rec.rank) +
       " everywhere)\n";
  s += "  confidence   " + rec.confidence + ":\n";
  for (const auto& why : rec.reasons) s += "               - " + why + "\n";
  s += "\n";
  s += "  predicted quality vs rank: the gain over r=1, as a share of what all higher ranks add\n";
  s += "       r     params   share   " + band_label(rec.options.band_factor) + "\n";
  for (const auto& c : rec.curve) {
    char line[160];
    const char* mark = c.rank == rec.rank ? "  <-" : "";
    if (&c == &rec.curve.front()) {  // the gains are counted from it
      std::snprintf(line, sizeof line, "  %6lld  %9s      0%%   reference%s\n", (long long)c.rank,
                    format_count(double(c.params)).c_str(), mark);
    } else {
      std::snprintf(line, sizeof line, "  %6lld  %9s  %5.0f%%    %3.0f-%3.0f%%%s\n",
                    (long long)c.rank, format_count(double(c.params)).c_str(), 100 * c.share,
                    100 * c.share_lo, 100 * c.share_hi, mark);
    }
    s += line;
  }
  s += "\n  per module type (median over layers): supported directions\n";
  s += "  type         n   at probe   at all data (band)   rank\n";
  for (const auto& row : kind_rows(rec)) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-10s %3lld   %8lld   %8lld (%lld-%lld)   %s\n", row.kind.c_str(),
                  (long long)row.n, (long long)row.dir_probe, (long long)row.dir, (long long)row.lo,
                  (long long)row.hi, ranks_text(row.ranks).c_str());
    s += line;
  }
  for (const auto& w : rec.warnings) s += "\n  warning: " + w + "\n";
  for (const auto& w : ctx.data_warnings) s += "\n  warning: data: " + w + "\n";
  s += "\n  why: " + rec.explanation + "\n";
  s += "\n  check it: " + check_command(rec, ctx) + "\n";
  if (!ctx.data_args_known) s += "    (add the data options the evidence was probed with)\n";
  const size_t n_ranks = check_ranks(rec).size(), n_lrs = SweepOptions().lrs.size();
  s += "    trains " + std::to_string(n_ranks) + " ranks at " + std::to_string(n_lrs) +
       " learning rates (" + std::to_string(n_ranks * n_lrs) +
       " trainings) and marks the smallest adequate rank: its held-out loss within max(0.005, 1%) "
       "of the best of these ranks'; with --val VAL --test TEST the learning rate is picked on one "
       "held-out file and the loss read on the other, as the calibration did\n";
  return s;
}

}  // namespace lorank
