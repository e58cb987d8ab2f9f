// How many directions of a module's weight gradient the data supports: the cross-fitted gain curve
// of two disjoint halves, a noise floor and the signal rank above it, a K-FAC-whitened variant, the
// captured energy and the input explained variance (DESIGN.md, "Signals worth measuring" 1-3).
// Pure math on torch tensors: fp32 statistics in, float64 inside, doubles out.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <vector>

#include "module_spectrum.h"

namespace lorank {

// Per-shard sums of one module's weight gradient G_k = Σ_t δ_t x_tᵀ (d_out × d_in). Everything
// below is linear in G, so a half or a difference of halves is a combination of shards. Exact: the
// sums themselves. Sketch (Tropp et al. 2019, streaming low-rank approximation with a core sketch):
// Y_k = G_k Ω, W_k = Ψᵀ G_k and Z_k = Φᵀ G_k Ξ with Gaussian test matrices shared by every shard,
// so G is never formed.
struct ShardGradients {
  int64_t d_out = 0, d_in = 0;
  std::vector<torch::Tensor> exact;    // K × (d_out, d_in); empty in sketch mode
  std::vector<torch::Tensor> range;    // K × (d_out, k): G_k Ω
  std::vector<torch::Tensor> corange;  // K × (k, d_in): Ψᵀ G_k
  std::vector<torch::Tensor> core;     // K × (s, s): Φᵀ G_k Ξ
  torch::Tensor omega;                 // (d_in, k)
  torch::Tensor psi;                   // (d_out, k)
  torch::Tensor phi;                   // (d_out, s), s = 2k + 1
  torch::Tensor xi;                    // (d_in, s)
  std::vector<int64_t> n_tokens;       // K: supervised tokens, the normaliser of each shard

  bool is_exact() const { return !exact.empty(); }
  // The per-shard sums, for code that moves or counts all of them (the test matrices excluded).
  std::array<std::vector<torch::Tensor>*, 4> sums() { return {&exact, &range, &corange, &core}; }
  std::array<const std::vector<torch::Tensor>*, 4> sums() const {
    return {&exact, &range, &corange, &core};
  }
  size_t n_shards() const { return n_tokens.size(); }
  int64_t max_rank() const;  // min(d_out, d_in), and the sketch size k in sketch mode
};

// M ≈ U diag(S) Vᵀ, S descending. U (m, k), S (k), V (n, k); float64.
struct Svd {
  torch::Tensor U, S, V;
  int64_t rank() const { return S.defined() ? S.size(0) : 0; }
};

Svd thin_svd(const torch::Tensor& m);  // (m, n) -> k = min(m, n), exact
torch::Tensor singular_values(const torch::Tensor& m);  // (k) descending, float64
// G ≈ Q C Pᵀ with Q = orth(Y), P = orth(Wᵀ), C = (ΦᵀQ)⁺ Z (PᵀΞ)⁺; `right` (n, n), when defined,
// multiplies G on the right. Exact when rank(G) <= k.
Svd sketch_svd(const torch::Tensor& range, const torch::Tensor& corange, const torch::Tensor& core,
               const torch::Tensor& phi, const torch::Tensor& xi, const torch::Tensor& right = {});
// sketch_svd's singular values without its tall QRs: Q and P come from Cholesky factors of the
// k × k Gram matrices, so all the (m, k) work is matrix products (an 8B model's sketches are up to
// 14336 × 128). Undefined when a sketch is nearly rank-deficient (cond > 1e4, e.g. rank(G) < k),
// where sketch_svd's QRs still work.
torch::Tensor sketch_values(const torch::Tensor& range, const torch::Tensor& corange,
                            const torch::Tensor& core, const torch::Tensor& phi,
                            const torch::Tensor& xi);
torch::Tensor best_rank(const Svd& s, int64_t r);  // P_r as a dense (m, n) matrix

// Σ_k coef[k] · G_k, times `right` (d_in, d_in) when defined, as an Svd.
Svd combine(const ShardGradients& g, const std::vector<double>& coef,
            const torch::Tensor& right = {});
// ‖Σ_k coef[k] · G_k‖²_F: exact, or in sketch mode the unbiased estimate ‖Σ_k coef[k] Y_k‖² / k.
double frobenius_sq(const ShardGradients& g, const std::vector<double>& coef);

// {1, 2, 4, ...} up to min(max_rank, cap).
std::vector<int64_t> rank_grid(int64_t max_rank, int64_t cap = 256);
// ⟨P_r(A), B⟩ / ‖P_r(A)‖ for every r of the grid; r above A's rank uses all of A.
std::vector<double> projected_gain(const Svd& a, const Svd& b, const std::vector<int64_t>& grid);
// The gain with A and B in both roles, averaged.
std::vector<double> cross_fitted_gain(const Svd& a, const Svd& b, const std::vector<int64_t>& grid);
// curve / max(curve); all zeros when the maximum is not positive (no signal at any rank).
std::vector<double> normalise_curve(const std::vector<double>& curve);
// Σ_{i<r} s_i² / total_sq for every r of the grid, at most 1.
std::vector<double> captured_energy(const torch::Tensor& singular_values, double total_sq,
                                    const std::vector<int64_t>& grid);
// Smallest grid r whose normalised curve reaches `fraction`; the last r when none does.
int64_t rank_at_fraction(const std::vector<int64_t>& grid, const std::vector<double>& norm_curve,
                         double fraction);

// Principal directions of a second moment (d, d) needed to carry each fraction of its trace.
std::vector<int64_t> explained_variance_ranks(const torch::Tensor& second_moment,
                                              const std::vector<double>& fractions);
// (Σ + λ I)^{-1/2} with λ = damping · trace(Σ) / d; Σ (d, d) symmetric PSD. Float64.
torch::Tensor inverse_sqrt(const torch::Tensor& cov, double damping);

// Balanced two-way splits of K shards (half a always holds shard 0), at most max_splits of them.
std::vector<std::vector<int>> half_splits(int n_shards, int max_splits);

// What a module's inputs contribute: the K-FAC whitening and the explained-variance ranks. Modules
// that read the same input (q/k/v, gate/up) share one.
struct InputSpectrum {
  torch::Tensor whitening;        // (d_in, d_in) (Σ_x + λI)^{-1/2}; undefined: no whitened curve
  std::vector<int64_t> ev_ranks;  // per ev_fraction; empty: not measured
};
// `cov` (d_in, d_in): E[x xᵀ] over the tokens G sums over; `ev_moment` (d_in, d_in): the second
// moment explained variance is read from. Either may be undefined (that part is skipped).
InputSpectrum analyse_inputs(const torch::Tensor& cov, const torch::Tensor& ev_moment,
                             const SpectrumOptions& opts);
ModuleSpectrum analyse_module(const ShardGradients& g, const InputSpectrum& inputs,
                              const SpectrumOptions& opts);

// Sum over modules of the gains (each module's curve held at its last value beyond its grid), as
// the prototype did; energy pooled as Σ captured / Σ ‖G‖².
struct AggregateSpectrum {
  std::vector<int64_t> grid;
  std::vector<double> gain, gain_norm, gain_whitened, gain_whitened_norm, energy;
};
AggregateSpectrum aggregate(const std::vector<ModuleSpectrum>& modules, int64_t max_rank = 256);

}  // namespace lorank
