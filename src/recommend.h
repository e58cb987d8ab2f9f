// From the probe's spectra and the data's statistics to a LoRA configuration: a global rank on the
// grid, a per-module rank_pattern, alpha and rsLoRA advice, the predicted quality-vs-rank curve
// with its band, a confidence, warnings and a plain-language explanation (DESIGN.md, "decide").
//
// The rule, one for every model and dataset: a module's weight gradient has a direction the data
// supports when its singular value stands above the noise edge of the cross-fitted halves (the top
// singular value of (G_a − G_b)/2). Noise in a mean over N supervised tokens shrinks as 1/√N, so
// the count is predicted at the training set's size: each direction's noise (the same index of the
// halves' difference spectrum) is subtracted, the rest kept, and the noise added back rescaled by
// c = √(probe tokens / training tokens). Beyond 4x the probe the prediction over-counts on planted
// spectra (tests/unit/test_recommend.cpp), so c stops at 1/2 and the confidence says so. A module's
// rank is that count times `rank_scale` and the global rank covers `module_quantile` of the
// modules; both constants are calibrated on bench/ (bench/RESULTS.md).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "module_spectrum.h"

namespace lorank {

struct DatasetStats;
struct ProbeResult;

// What the decision needs about one probed module: its name and shape and its spectrum.
struct ModuleEvidence {
  std::string name, kind;  // HF module path ("model.layers.0.self_attn.q_proj"), "q_proj"
  int64_t layer = -1, d_in = 0, d_out = 0;
  ModuleSpectrum spectrum;
};

struct DataFacts {
  int64_t n_examples = 0;            // in the training set the user will train on
  int64_t n_supervised = 0;          // its supervised tokens
  int64_t n_tokens = 0;              // its real tokens
  int64_t probe_examples = 0, probe_supervised = 0, probe_tokens = 0;
  double base_loss = 0;              // nats per supervised token on the probed sample
  int64_t n_duplicates = 0;          // examples that repeat an earlier one
};

struct RecommendOptions {
  std::vector<int64_t> grid = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  int64_t max_rank = 256;      // --max-rank: the largest rank offered
  int64_t budget_params = 0;   // --budget-params: trainable parameters at most (0: no budget)
  double noise_margin = 0.1;   // a singular value counts above (1 + margin) × the edge
  // Calibrated on bench/ (bench/RESULTS.md, "Calibration"): chosen by leave-one-case-out, every
  // held-out case picked these. Two ranks per direction: training needs more than the first step.
  double rank_scale = 2.0;       // module rank = rank_scale × its supported directions
  // The global rank is this quantile of the modules' ranks: 0.25 covers a quarter of the modules
  // fully (the others get all the directions r holds), 1 the largest module.
  double module_quantile = 0.25;
  bool whitened = false;       // count on the K-FAC-whitened spectrum instead
  double alpha = 8;            // rsLoRA alpha (the oracle protocol's, under which ranks were judged)
  // --pattern: modules far from r get their own rank_pattern entry. Off by default: on small-llama
  // a pattern trained no better than a uniform adapter of the same size (bench/RESULTS.md).
  bool pattern = false;
  // A module gets its own rank_pattern entry when its rank is this many grid steps from the global.
  int pattern_min_steps = 2;
  double max_extrapolation = 4;  // predict counts for at most this many times the probe's tokens
  // The curve's ranks per direction, fitted to the sweeps' L(r) (bench/RESULTS.md, session 11):
  // at rank_scale's 2 it ran 0.16 above the measured share of the gain.
  double curve_rank_scale = 4.0;
  // The curve's band: the curve at r / band_factor and r × band_factor (and the splits' extremes).
  // An 80% band: leaving one case out, 4 held 82% of the sweeps' measured shares (2 held 66%).
  double band_factor = 4.0;
};

struct ModuleRank {
  std::string name, kind;
  int64_t layer = -1, d_in = 0, d_out = 0;
  int64_t directions_probe = 0;  // supported directions at the probe's sample size
  int64_t directions = 0;        // at the training set's size
  int64_t directions_lo = 0, directions_hi = 0;  // over the splits' edges
  int64_t rank = 0;              // on the grid, after the pattern rule and the caps
};

struct CurvePoint {
  int64_t rank = 0;
  int64_t params = 0;            // trainable parameters at this global rank (no pattern)
  // Predicted gain over r=1 as a share of what all higher ranks add (0 at r=1, 1 when the
  // supported signal is held), from the signal energy each rank holds.
  double share = 0;
  double share_lo = 0, share_hi = 0;  // the band: band_factor either side, the splits' edges
};

struct Recommendation {
  int64_t rank = 0;                // the global r
  int64_t rank_lo = 0, rank_hi = 0;  // the rule applied with each split's edge: the band
  double alpha = 8;
  bool use_rslora = true;
  double alpha_classic = 0;        // alpha giving the same scale without rsLoRA: alpha × √r
  std::map<std::string, int64_t> rank_pattern;  // PEFT keys
  // Without rsLoRA: alpha × √r for each rank_pattern entry (export leaves it out under rsLoRA).
  std::map<std::string, double> alpha_pattern;
  std::vector<std::string> target_modules;      // module-type suffixes, in model order
  int64_t params = 0;              // trainable parameters with the pattern
  int64_t params_uniform =
      0;  // at the global rank everywhere, as PEFT builds it without the pattern
  std::vector<ModuleRank> modules;
  std::vector<CurvePoint> curve;
  std::string confidence;          // "high", "medium" or "low"
  std::vector<std::string> reasons;  // why the confidence is what it is
  std::vector<std::string> warnings;
  std::string explanation;         // a short paragraph citing the numbers
  DataFacts data;
  RecommendOptions options;        // as used
  bool capped = false;             // --max-rank or --budget-params lowered the rank
  std::string capped_by;           // "--max-rank 4" or "--budget-params 50000" when capped
  int64_t rank_uncapped = 0;       // the rule's rank without those caps
  double extrapolation = 1;        // training / probed supervised tokens, as used (capped)
  double extrapolation_needed = 1;  // training / probed supervised tokens, uncapped
  // Beyond the cap: the rule with the noise rescaled to all the training tokens, as probing more
  // would tend to show (counts only grow with the tokens); 0 when the cap did not apply.
  int64_t rank_full_extrapolation = 0;
};

// Evidence for every probed module, in probe order.
std::vector<ModuleEvidence> module_evidence(const ProbeResult& probe,
                                            const std::vector<ModuleSpectrum>& spectra);

// Directions above (1 + margin) × edge × c once the noise is rescaled by c:
// #{i : σ_i² − ν_i² + c²ν_i² > ((1 + margin) · edge · c)²}, ν the noise spectrum. c = 1 counts
// σ_i > (1 + margin) × edge.
int64_t supported_directions(const std::vector<double>& singular_values,
                             const std::vector<double>& noise_spectrum, double edge, double margin,
                             double c);
// Training supervised tokens per probed one; 1 when nothing was probed.
double data_over_probe(int64_t probe, int64_t train);
// c for a probe of `probe` supervised tokens and a training set of `train`; at least 1/√max_factor.
double noise_scale(int64_t probe, int64_t train, double max_factor);

// Smallest grid value >= x (the grid's last when none), and the number of grid steps between two.
int64_t grid_ceil(const std::vector<int64_t>& grid, double x);
int grid_steps(const std::vector<int64_t>& grid, int64_t a, int64_t b);
// The curve's band as the report names it: "80% band" at the calibrated factor, else what it spans.
std::string band_label(double band_factor);
// The ranks a sweep would train to check `rec`: its band (the rank alone when capped) and one
// grid step either side, within --max-rank.
std::vector<int64_t> check_ranks(const Recommendation& rec);

// The data's facts for the decision: the whole training set's (`stats`, what the adapter will
// train on) and the probed sample's.
DataFacts data_facts(const DatasetStats& stats, const ProbeResult& probe);

Recommendation recommend(const std::vector<ModuleEvidence>& modules, const DataFacts& data,
                         const RecommendOptions& opts);

}  // namespace lorank
