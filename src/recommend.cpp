#include "recommend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "dataset.h"
#include "error.h"
#include "probe.h"
#include "progress.h"

namespace lorank {

namespace {

double median_edge(std::vector<double> edges) {
  if (edges.empty()) return 0.0;
  std::sort(edges.begin(), edges.end());
  return edges[(edges.size() - 1) / 2];
}

const std::vector<double>& values_of(const ModuleSpectrum& s, bool whitened) {
  return whitened && !s.singular_values_whitened.empty() ? s.singular_values_whitened
                                                         : s.singular_values;
}
const std::vector<double>& edges_of(const ModuleSpectrum& s, bool whitened) {
  return whitened && !s.noise_edges_whitened.empty() ? s.noise_edges_whitened : s.noise_edges;
}

const std::vector<double>& noise_of(const ModuleSpectrum& s, bool whitened) {
  return whitened && !s.noise_spectrum_whitened.empty() ? s.noise_spectrum_whitened
                                                        : s.noise_spectrum;
}

double scale_for(const DataFacts& d, const RecommendOptions& o) {
  return noise_scale(d.probe_supervised, d.n_supervised, o.max_extrapolation);
}

int64_t quantile_of(std::vector<double> x, double q) {
  if (x.empty()) return 0;
  std::sort(x.begin(), x.end());
  size_t i = size_t(std::ceil(q * double(x.size())));
  i = std::min(x.size() - 1, i == 0 ? 0 : i - 1);
  return int64_t(std::ceil(x[i]));
}

std::vector<int64_t> offered_grid(const RecommendOptions& o) {
  std::vector<int64_t> g;
  for (int64_t r : o.grid) {
    if (r <= o.max_rank) g.push_back(r);
  }
  if (g.empty()) g.push_back(std::max<int64_t>(1, o.max_rank));
  return g;
}

int64_t params_at(const std::vector<ModuleRank>& ms, int64_t r) {
  int64_t p = 0;
  for (const auto& m : ms) p += std::min(r, std::min(m.d_in, m.d_out)) * (m.d_in + m.d_out);
  return p;
}

// Per module: directions at the training set's size, with the splits' extreme edges as a band.
std::vector<ModuleRank> count_directions(const std::vector<ModuleEvidence>& ev, const DataFacts& d,
                                         const RecommendOptions& o) {
  const double scale = scale_for(d, o);
  std::vector<ModuleRank> out;
  for (const auto& e : ev) {
    const auto& sv = values_of(e.spectrum, o.whitened);
    const auto& nv = noise_of(e.spectrum, o.whitened);
    const auto& edges = edges_of(e.spectrum, o.whitened);
    ModuleRank m{e.name, e.kind, e.layer, e.d_in, e.d_out};
    const double mid = median_edge(edges);
    m.directions_probe = supported_directions(sv, nv, mid, o.noise_margin, 1.0);
    m.directions = supported_directions(sv, nv, mid, o.noise_margin, scale);
    m.directions_lo = m.directions_hi = m.directions;
    for (double edge : edges) {
      int64_t n = supported_directions(sv, nv, edge, o.noise_margin, scale);
      m.directions_lo = std::min(m.directions_lo, n);
      m.directions_hi = std::max(m.directions_hi, n);
    }
    out.push_back(m);
  }
  return out;
}

int64_t global_rank(const std::vector<ModuleRank>& ms, const RecommendOptions& o,
                    int64_t ModuleRank::*field) {
  std::vector<double> x;
  for (const auto& m : ms) x.push_back(o.rank_scale * double(m.*field));
  return grid_ceil(offered_grid(o), double(quantile_of(x, o.module_quantile)));
}

// Modules far from the global rank get their own, kept within two grid steps of it: the sweeps
// that judge the rule train one rank everywhere, so larger departures are unmeasured.
void assign_pattern(Recommendation& rec, const RecommendOptions& o) {
  const auto grid = offered_grid(o);
  auto pos = std::find(grid.begin(), grid.end(), rec.rank) - grid.begin();
  const int64_t lo = grid[size_t(std::max<ptrdiff_t>(0, pos - 2))];
  const int64_t hi = grid[size_t(std::min<ptrdiff_t>(ptrdiff_t(grid.size()) - 1, pos + 2))];
  for (auto& m : rec.modules) {
    int64_t want = grid_ceil(grid, o.rank_scale * double(m.directions));
    want = std::clamp(want, lo, hi);
    m.rank = std::abs(grid_steps(grid, want, rec.rank)) >= o.pattern_min_steps ? want : rec.rank;
  }
}

// PEFT keys: one per module type when all its modules share a rank, else one per module. Never
// both for one type: keys are tried in sorted order and the type's suffix would shadow the rest.
void pattern_keys(Recommendation& rec) {
  std::vector<std::string> kinds;
  for (const auto& m : rec.modules) {
    if (std::find(kinds.begin(), kinds.end(), m.kind) == kinds.end()) kinds.push_back(m.kind);
  }
  rec.target_modules = kinds;
  for (const auto& kind : kinds) {
    std::set<int64_t> ranks;
    for (const auto& m : rec.modules) {
      if (m.kind == kind) ranks.insert(m.rank);
    }
    if (ranks.size() == 1) {
      if (*ranks.begin() != rec.rank) rec.rank_pattern[kind] = *ranks.begin();
      continue;
    }
    for (const auto& m : rec.modules) {
      if (m.kind == kind && m.rank != rec.rank) rec.rank_pattern[m.name] = m.rank;
    }
  }
}

// Share of all the signal energy above the floor (σ² predicted at the training set's size, as
// supported_directions counts) that modules hold at each rank of `ranks`, which may be fractional.
std::vector<double> energy_held(const std::vector<ModuleEvidence>& ev, const RecommendOptions& o,
                                const std::vector<double>& ranks, double scale, int which) {
  std::vector<double> num(ranks.size(), 0.0);
  double total = 0;
  for (const auto& e : ev) {
    const auto& sv = values_of(e.spectrum, o.whitened);
    const auto& nv = noise_of(e.spectrum, o.whitened);
    auto edges = edges_of(e.spectrum, o.whitened);
    if (edges.empty()) continue;
    std::sort(edges.begin(), edges.end());
    const double edge = which < 0 ? edges.back() : which > 0 ? edges.front() : median_edge(edges);
    const double floor = (1 + o.noise_margin) * edge * scale;
    std::vector<double> energy;  // predicted σ² above the floor, largest first
    for (size_t i = 0; i < sv.size(); ++i) {
      const double nu = i < nv.size() ? nv[i] : 0.0;
      const double v2 = std::max(0.0, sv[i] * sv[i] - nu * nu) + scale * scale * nu * nu;
      if (v2 > floor * floor) energy.push_back(v2 - floor * floor);
    }
    std::sort(energy.rbegin(), energy.rend());
    for (size_t i = 0; i < energy.size(); ++i) {
      total += energy[i];
      for (size_t j = 0; j < ranks.size(); ++j) {
        // At rank r a module holds its first r / curve_rank_scale directions, the last in part.
        const double held = ranks[j] / o.curve_rank_scale - double(i);
        num[j] += energy[i] * std::clamp(held, 0.0, 1.0);
      }
    }
  }
  for (double& x : num) x = total > 0 ? x / total : 1.0;
  return num;
}

// The gain over the grid's first rank as a share of what all higher ranks add, which is what the
// sweeps measure: rank 1 alone already takes most of the loss's drop from the base model.
double gain_share(double held, double held_first) {
  return held_first >= 1 ? 1.0 : std::clamp((held - held_first) / (1 - held_first), 0.0, 1.0);
}

// The band: the curve at r / band_factor and r × band_factor (RESULTS.md), widened by the
// splits' extreme edges.
void fill_curve(Recommendation& rec, const std::vector<ModuleEvidence>& ev,
                const RecommendOptions& o) {
  const auto grid = offered_grid(o);
  const double scale = scale_for(rec.data, o);
  int64_t widest = 0;  // ranks beyond every module's size add nothing
  for (const auto& m : rec.modules) widest = std::max(widest, std::min(m.d_in, m.d_out));
  std::vector<double> ranks{double(grid[0])};
  for (int64_t r : grid) {
    for (double f : {1.0, 1.0 / o.band_factor, o.band_factor}) ranks.push_back(f * double(r));
  }
  const auto mid = energy_held(ev, o, ranks, scale, 0);
  const auto a = energy_held(ev, o, ranks, scale, -1), b = energy_held(ev, o, ranks, scale, 1);
  for (size_t j = 0; j < grid.size(); ++j) {
    if (j > 0 && grid[j - 1] >= widest) break;
    const size_t at = 1 + 3 * j;  // r, r / band_factor, r × band_factor
    CurvePoint c{grid[j], params_at(rec.modules, grid[j])};
    if (j > 0) {
      c.share = gain_share(mid[at], mid[0]);
      const double ea = gain_share(a[at], a[0]), eb = gain_share(b[at], b[0]);
      c.share_lo = std::min({gain_share(mid[at + 1], mid[0]), ea, eb, c.share});
      c.share_hi = std::max({gain_share(mid[at + 2], mid[0]), ea, eb, c.share});
    }
    rec.curve.push_back(c);
  }
}

}  // namespace

std::vector<ModuleEvidence> module_evidence(const ProbeResult& probe,
                                            const std::vector<ModuleSpectrum>& spectra) {
  if (probe.modules.size() != spectra.size()) {
    fail("recommend", "probe and spectra disagree", std::to_string(probe.modules.size()) + " modules",
         std::to_string(spectra.size()));
  }
  std::vector<ModuleEvidence> out;
  for (size_t i = 0; i < spectra.size(); ++i) {
    const auto& p = probe.modules[i];
    out.push_back({p.name, p.kind, p.layer, p.grad.d_in, p.grad.d_out, spectra[i]});
  }
  return out;
}

DataFacts data_facts(const DatasetStats& stats, const ProbeResult& probe) {
  DataFacts d;
  d.n_examples = stats.n_examples;
  d.n_supervised = stats.n_supervised;
  d.n_tokens = stats.n_tokens;
  d.n_duplicates = stats.n_duplicates;
  for (const auto& shard : probe.shards) d.probe_examples += int64_t(shard.size());
  d.probe_supervised = probe.n_supervised();
  d.probe_tokens = probe.n_tokens();
  d.base_loss = probe.base_loss();
  return d;
}

int64_t supported_directions(const std::vector<double>& singular_values,
                             const std::vector<double>& noise_spectrum, double edge, double margin,
                             double c) {
  const double floor = (1 + margin) * edge * c;
  int64_t n = 0;
  for (size_t i = 0; i < singular_values.size(); ++i) {
    const double nu = i < noise_spectrum.size() ? noise_spectrum[i] : 0.0;
    const double s2 = singular_values[i] * singular_values[i];
    const double v2 = c == 1.0 ? s2 : std::max(0.0, s2 - nu * nu) + c * c * nu * nu;
    if (v2 > floor * floor) ++n;
  }
  return n;
}

double data_over_probe(int64_t probe, int64_t train) {
  return probe > 0 ? double(train) / double(probe) : 1.0;
}

double noise_scale(int64_t probe, int64_t train, double max_factor) {
  const double ratio = data_over_probe(probe, train);
  if (ratio <= 1.0) return 1.0;
  return std::sqrt(1.0 / std::min(ratio, std::max(1.0, max_factor)));
}

int64_t grid_ceil(const std::vector<int64_t>& grid, double x) {
  for (int64_t r : grid) {
    if (double(r) >= x) return r;
  }
  return grid.empty() ? 0 : grid.back();
}

int grid_steps(const std::vector<int64_t>& grid, int64_t a, int64_t b) {
  auto ia = std::lower_bound(grid.begin(), grid.end(), a) - grid.begin();
  auto ib = std::lower_bound(grid.begin(), grid.end(), b) - grid.begin();
  return int(ia - ib);
}

std::vector<int64_t> check_ranks(const Recommendation& rec) {
  const std::vector<int64_t> grid = offered_grid(rec.options);
  // Under --max-rank or --budget-params the band is beyond what the user allowed: the rank alone.
  auto lo = std::lower_bound(grid.begin(), grid.end(), rec.capped ? rec.rank : rec.rank_lo);
  auto hi = std::upper_bound(grid.begin(), grid.end(), rec.capped ? rec.rank : rec.rank_hi);
  if (lo != grid.begin()) --lo;
  if (hi != grid.end()) ++hi;
  // Up to what probing all of the data would tend to give, when the rescaling stopped short.
  if (!rec.capped)
    hi = std::max(hi, std::upper_bound(grid.begin(), grid.end(), rec.rank_full_extrapolation));
  return {lo, hi};
}

std::string band_label(double band_factor) {
  if (band_factor == RecommendOptions().band_factor) return "80% band";
  return "band r/" + format_number("%g", band_factor) + "..r*" + format_number("%g", band_factor);
}

namespace {

void apply_budget(Recommendation& rec, const RecommendOptions& o) {
  if (o.budget_params <= 0) return;
  const auto grid = offered_grid(o);
  int64_t fit = 0;
  for (int64_t r : grid) {
    if (params_at(rec.modules, r) <= o.budget_params) fit = r;
  }
  if (fit == 0) {
    fail("--budget-params", "no rank fits the parameter budget",
         ">= " + std::to_string(params_at(rec.modules, grid.front())) + " (rank " +
             std::to_string(grid.front()) + ")",
         std::to_string(o.budget_params),
         "raise --budget-params, or adapt fewer modules (--targets, with a new probe rather than "
         "--evidence)");
  }
  if (fit < rec.rank) {
    rec.rank = fit;
    rec.capped = true;
    rec.capped_by = "--budget-params " + std::to_string(o.budget_params);
  }
}

int64_t pattern_params(const std::vector<ModuleRank>& ms) {
  int64_t p = 0;
  for (const auto& m : ms) p += m.rank * (m.d_in + m.d_out);
  return p;
}

void judge_confidence(Recommendation& rec, const std::vector<int64_t>& grid) {
  const int spread = grid_steps(grid, rec.rank_hi, rec.rank_lo);
  rec.confidence = spread == 0 ? "high" : spread == 1 ? "medium" : "low";
  rec.reasons.push_back("the rule gives r=" + std::to_string(rec.rank_lo) + ".." +
                        std::to_string(rec.rank_hi) + " across the cross-fitted splits' noise edges");
  // The band covers this probe's splits, not another sample or sharding (another --seed).
  rec.reasons.push_back(
      "the band is this probe's: another --seed (another sample and shards) moved "
      "the rank by one grid step in a few runs of the bench tasks "
      "(bench/RESULTS.md), which the check sweep's ranks cover");
  if (rec.rank_full_extrapolation > 0) {
    rec.confidence = rec.confidence == "high" ? "medium" : "low";
    const std::string full = rec.rank_full_extrapolation > rec.rank_hi
                                 ? " (with the noise rescaled to all of them the rule gives r=" +
                                       std::to_string(rec.rank_full_extrapolation) +
                                       ", beyond what was calibrated)"
                                 : "";
    rec.reasons.push_back("the data holds " + format_number("%.1f", rec.extrapolation_needed) +
                          "x the probed supervised tokens; counts are predicted for at most " +
                          format_number("%g", rec.options.max_extrapolation) +
                          "x, so they may be low" + full + ": probe more with --max-tokens");
  }
  // Short completions (a label): the calibration's cases with 2.3 and 5.6 supervised tokens per
  // example (next: 12.4) gave test losses that zigzag between ranks and seeds by 5-60%.
  const double per_example =
      double(rec.data.n_supervised) / double(std::max<int64_t>(1, rec.data.n_examples));
  if (rec.data.n_examples > 0 && per_example < 8) {
    rec.confidence = rec.confidence == "high" ? "medium" : "low";
    rec.reasons.push_back(format_number("%.1f", per_example) +
                          " supervised tokens per example (a label or a few words): sweeps of "
                          "such data gave noisy loss-vs-rank curves (bench/RESULTS.md); validate "
                          "the rank on held-out data");
  }
  // Repeats make the cross-fitted halves share examples, so their noise edge is too low (the
  // warning below); the calibration's data is deduplicated, so nothing measured speaks for it.
  if (rec.data.n_duplicates > 0 && rec.data.n_duplicates * 10 >= rec.data.n_examples) {
    rec.confidence = rec.confidence == "high" ? "medium" : "low";
    rec.reasons.push_back(std::to_string(rec.data.n_duplicates) + " of " +
                          std::to_string(rec.data.n_examples) +
                          " examples repeat an earlier one; the calibration's data had none");
  }
  if (rec.data.probe_supervised < 2000) {
    rec.confidence = "low";
    rec.reasons.push_back("only " + std::to_string(rec.data.probe_supervised) +
                          " supervised tokens probed; the noise edge is itself noisy");
  }
  rec.reasons.push_back("calibrated against rank sweeps of the tiny and small models only "
                        "(bench/RESULTS.md); a larger model's gradient spectrum may differ");
}

void add_warnings(Recommendation& rec) {
  const auto& d = rec.data;
  bool any = false;
  for (const auto& m : rec.modules) any = any || m.directions > 0;
  if (!any) {
    rec.warnings.push_back("no module has a direction above the noise floor: the data is too small "
                           "or the base model already fits it (base loss " +
                           format_number("%.3f", d.base_loss) + "); a small rank will do, more data would help");
  }
  // The calibration's sweeps reach 1,650 trainable parameters per supervised token (spam-1000 at
  // r=64, its best rank) without a larger rank doing harm; 17 of its 18 cases exceed the ten per
  // token once warned about here. Beyond every measured case, say so.
  constexpr double k_measured_params_per_token = 2000;
  if (d.n_supervised > 0 && double(rec.params) > k_measured_params_per_token * double(d.n_supervised)) {
    rec.warnings.push_back("too little data for the rank: " + format_count(double(rec.params)) +
                           " trainable parameters for " + format_count(double(d.n_supervised)) +
                           " supervised tokens, more per token than any calibrated case (at most "
                           "1,650); the extra directions may fit noise: keep a validation set "
                           "and early stopping");
  }
  // Under 2,000 probed supervised tokens the confidence is low; say how to probe enough.
  if (d.probe_supervised < 2000 && d.probe_supervised < d.n_supervised && d.probe_tokens > 0) {
    const double need =
        double(d.probe_tokens) * 2000.0 / double(std::max<int64_t>(1, d.probe_supervised));
    const std::string how = need >= double(d.n_tokens)
                                ? "--sample " + std::to_string(d.n_examples) + " probes all of it"
                                : "--max-tokens " +
                                      std::to_string(int64_t(std::ceil(need / 1000.0)) * 1000) +
                                      " probes about 2000 of them";
    rec.warnings.push_back("only " + format_count(double(d.probe_supervised)) + " of " +
                           format_count(double(d.n_supervised)) +
                           " supervised tokens probed: the rank may move with --seed; " + how);
  }
  // The noise floor shrinks with the supervised tokens as if each were new; repeats are not.
  if (d.n_duplicates > 0 && d.n_duplicates * 10 >= d.n_examples) {
    rec.warnings.push_back(std::to_string(d.n_duplicates) + " of " + std::to_string(d.n_examples) +
                           " examples repeat an earlier one: the noise floor is rescaled to all " +
                           "supervised tokens, repeats included, which overstates what the data " +
                           "holds and may raise the rank; deduplicate the data and run again");
  }
  if (rec.capped) {
    std::string share;
    for (const auto& c : rec.curve) {
      if (c.rank == rec.rank && rec.rank > 1) {
        share = ", which is predicted to add " + format_number("%.0f%%", 100 * c.share) +
                " of what ranks above 1 add";
      }
    }
    rec.warnings.push_back("capped: the data supports r=" + std::to_string(rec.rank_uncapped) +
                           ", but " + rec.capped_by +
                           " allows at most r=" + std::to_string(rec.rank) + share);
  }
  std::map<std::string, int64_t> held;  // module types held at their full rank below the global r
  for (const auto& m : rec.modules) {
    if (m.rank < rec.rank && m.rank == std::min(m.d_in, m.d_out)) held[m.kind] = m.rank;
  }
  if (!held.empty()) {
    std::vector<std::string> kinds;
    for (const auto& [kind, full_rank] : held)
      kinds.push_back(kind + " " + std::to_string(full_rank));
    rec.warnings.push_back("full rank is min(d_in, d_out) (" + join(kinds, ", ") +
                           "): the rank_pattern holds those modules there, as r=" +
                           std::to_string(rec.rank) + " would add parameters, not capacity");
  }
  int64_t full = 0;
  for (const auto& m : rec.modules) {
    if (m.directions >= std::min(m.d_in, m.d_out) || m.directions >= rec.options.max_rank) ++full;
  }
  if (full * 4 >= int64_t(rec.modules.size()) && !rec.modules.empty()) {
    rec.warnings.push_back(std::to_string(full) + " of " + std::to_string(rec.modules.size()) +
                           " modules support as many directions as the largest rank offered: "
                           "the data may hold more than a LoRA adapter can; consider full "
                           "fine-tuning of those modules or a larger --max-rank");
  }
}

std::string explain(const Recommendation& rec) {
  const auto& d = rec.data;
  std::vector<double> dirs;
  for (const auto& m : rec.modules) dirs.push_back(double(m.directions));
  std::string s = "Probed " + format_count(double(d.probe_examples)) + " of " +
                  format_count(double(d.n_examples)) + " examples (" +
                  format_count(double(d.probe_supervised)) + " supervised tokens, base loss " +
                  format_number("%.3f", d.base_loss) + " nats/token). ";
  const bool capped = rec.extrapolation_needed > rec.options.max_extrapolation;
  s += "With the noise floor rescaled to " +
       (capped ? format_number("%g", rec.extrapolation) + "x the probed supervised tokens (the " +
                     "data holds " + format_number("%.1f", rec.extrapolation_needed) + "x)"
               : "all " + format_count(double(d.n_supervised)) + " supervised tokens") +
       ", the median module supports " + std::to_string(quantile_of(dirs, 0.5)) +
       (quantile_of(dirs, 0.5) == 1 ? " direction" : " directions") + " of its weight gradient (" +
       std::to_string(quantile_of(dirs, 0.0)) + " to " + std::to_string(quantile_of(dirs, 1.0)) +
       "). ";
  for (const auto& c : rec.curve) {
    if (c.rank != rec.rank || &c == &rec.curve.front()) continue;  // r=1: the curve's reference
    s += "r=" + std::to_string(rec.rank) + " is predicted to add " +
         format_number("%.0f%%", 100 * c.share) + " (" + band_label(rec.options.band_factor) + " " +
         format_number("%.0f", 100 * c.share_lo) + "-" + format_number("%.0f%%", 100 * c.share_hi) +
         ") of what ranks above 1 add over r=1, with " + format_count(double(rec.params)) +
         " trainable parameters. ";
  }
  s += "Use rsLoRA with alpha " + format_number("%g", rec.alpha) + " (or alpha " +
       format_number("%g", rec.alpha_classic) + " with the classic alpha/r scale).";
  return s;
}

}  // namespace

Recommendation recommend(const std::vector<ModuleEvidence>& modules, const DataFacts& data,
                         const RecommendOptions& opts) {
  if (modules.empty()) fail("recommend", "no modules were probed", ">= 1 target module", "0");
  Recommendation rec;
  rec.options = opts;
  rec.data = data;
  rec.modules = count_directions(modules, data, opts);
  rec.rank = global_rank(rec.modules, opts, &ModuleRank::directions);
  RecommendOptions uncapped = opts;
  uncapped.max_rank = opts.grid.empty() ? opts.max_rank : opts.grid.back();
  // The band and the confidence describe the rule; a cap is the user's choice, said apart.
  rec.rank_lo = global_rank(rec.modules, uncapped, &ModuleRank::directions_lo);
  rec.rank_hi = global_rank(rec.modules, uncapped, &ModuleRank::directions_hi);
  rec.rank_uncapped = global_rank(rec.modules, uncapped, &ModuleRank::directions);
  rec.capped = rec.rank_uncapped > rec.rank;
  if (rec.capped) rec.capped_by = "--max-rank " + std::to_string(opts.max_rank);
  apply_budget(rec, opts);
  if (!opts.pattern) {
    for (auto& m : rec.modules) m.rank = rec.rank;
  } else {
    assign_pattern(rec, opts);
    if (opts.budget_params > 0) {  // the pattern may only lower ranks under a budget
      for (auto& m : rec.modules) m.rank = std::min(m.rank, rec.rank);
    }
  }
  // Beyond min(d_in, d_out) a rank adds parameters, not capacity: such modules keep their full rank
  // (a rank_pattern entry), so that the adapter and its count are what PEFT builds.
  for (auto& m : rec.modules) m.rank = std::min(m.rank, std::min(m.d_in, m.d_out));
  pattern_keys(rec);
  rec.alpha = opts.alpha;
  rec.use_rslora = true;
  rec.alpha_classic = opts.alpha * std::sqrt(double(rec.rank));
  // Without rsLoRA a module at its own rank r_m needs alpha × √r_m for the same scale.
  for (const auto& [key, r] : rec.rank_pattern)
    rec.alpha_pattern[key] = opts.alpha * std::sqrt(double(r));
  rec.params = pattern_params(rec.modules);
  // What PEFT builds with r everywhere and no rank_pattern: above a module's full rank too.
  rec.params_uniform = 0;
  for (const auto& m : rec.modules) rec.params_uniform += rec.rank * (m.d_in + m.d_out);
  rec.extrapolation = 1.0 / (scale_for(data, opts) * scale_for(data, opts));
  rec.extrapolation_needed = data_over_probe(data.probe_supervised, data.n_supervised);
  if (rec.extrapolation_needed > opts.max_extrapolation) {
    RecommendOptions full = uncapped;
    full.max_extrapolation = rec.extrapolation_needed;
    rec.rank_full_extrapolation =
        global_rank(count_directions(modules, data, full), full, &ModuleRank::directions);
  }
  fill_curve(rec, modules, opts);
  judge_confidence(rec, offered_grid(uncapped));
  add_warnings(rec);
  rec.explanation = explain(rec);
  return rec;
}

}  // namespace lorank
