// What the spectrum analysis returns per module, and its options: plain numbers, no tensors, so
// that recommend.h, report.h and export.h compile without LibTorch's headers.
#pragma once

#include <cstdint>
#include <vector>

namespace lorank {

struct SpectrumOptions {
  int64_t max_rank = 256;  // grid cap
  int max_splits = 3;      // K = 4 has exactly 3 balanced splits
  double damping = 1e-2;   // K-FAC damping, relative to the mean eigenvalue of Σ_x
  // Signal: singular values of the mean above (1 + margin) × the noise floor. Two draws of the same
  // noise have top singular values a few percent apart (Tracy–Widom), so without a margin the
  // mean's own noise edge is counted about half the time.
  double noise_margin = 0.1;
  std::vector<double> ev_fractions = {0.90, 0.95, 0.99};
  // false: only singular values and noise edges (what recommend reads), about 3x cheaper.
  bool gain_curves = true;
  int64_t n_singular = 256;  // singular values kept in the result (recommend rescales the edge)
};

struct ModuleSpectrum {
  std::vector<int64_t> grid;
  std::vector<double> gain, gain_norm;  // cross-fitted, averaged over splits; empty: not asked
  std::vector<double> gain_whitened, gain_whitened_norm;  // empty without input moments
  std::vector<double> energy;  // captured energy of the full-data gradient
  double grad_sq = 0;          // ‖G‖²_F of the full-data gradient
  // Singular values of the full-data mean above (1 + noise_margin) × the split's noise edge, median
  // over splits; -1: not measured. The edge is the top singular value of (G_a − G_b)/2, which holds
  // the mean's noise and no signal: no i.i.d. assumption, which a Marchenko–Pastur edge would need
  // and token-correlated, anisotropic gradient noise breaks.
  int64_t signal_rank = 0, signal_rank_whitened = -1;
  double noise_top = 0;  // top singular value of (G_a − G_b)/2, first split
  std::vector<double> noise_edges, noise_edges_whitened;  // that edge for every split
  // All singular values of (G_a − G_b)/2, per index the median over splits: the noise spectrum
  // the full-data mean carries, which recommend subtracts.
  std::vector<double> noise_spectrum, noise_spectrum_whitened;
  // Of the full-data mean gradient (and whitened), top n_singular. With the edges they give the
  // signal rank at another data size: noise in a mean of N tokens shrinks as 1/√N.
  std::vector<double> singular_values, singular_values_whitened;
  std::vector<int64_t> ev_ranks;  // per ev_fraction; empty without input moments
};

}  // namespace lorank
