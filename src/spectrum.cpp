#include "spectrum.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"

namespace lorank {

namespace {

torch::Tensor f64(const torch::Tensor& t) { return t.to(torch::kFloat64); }

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void check_coef(const ShardGradients& g, const std::vector<double>& coef) {
  if (coef.size() != g.n_shards()) {
    fail("spectrum", "one coefficient per shard", std::to_string(g.n_shards()),
         std::to_string(coef.size()));
  }
}

// Σ_k coef[k] · parts[k] in float64; parts (..., ...) all of one shape.
torch::Tensor weighted_sum(const std::vector<torch::Tensor>& parts, const std::vector<double>& coef) {
  torch::Tensor sum = torch::zeros_like(parts.front(), torch::kFloat64);
  for (size_t k = 0; k < parts.size(); ++k) {
    if (coef[k] != 0) sum.add_(f64(parts[k]), coef[k]);
  }
  return sum;
}

// X = A⁺ B for A (s, k) of full column rank, by QR: A = Qa Ra, X = Ra⁻¹ Qaᵀ B.
torch::Tensor least_squares(const torch::Tensor& A, const torch::Tensor& B) {
  auto [Qa, Ra] = torch::linalg_qr(A);                                     // (s, k), (k, k)
  return torch::linalg_solve_triangular(Ra, Qa.transpose(0, 1).mm(B), /*upper=*/true);  // (k, ...)
}

// Singular values only: cheaper than the full Svd where no vectors are needed.
torch::Tensor combine_values(const ShardGradients& g, const std::vector<double>& coef,
                             const torch::Tensor& right = {}) {
  check_coef(g, coef);
  if (!g.is_exact()) {
    auto y = weighted_sum(g.range, coef), w = weighted_sum(g.corange, coef);
    auto z = weighted_sum(g.core, coef);
    torch::Tensor s = right.defined() ? torch::Tensor() : sketch_values(y, w, z, g.phi, g.xi);
    return s.defined() ? s : sketch_svd(y, w, z, g.phi, g.xi, right).S;
  }
  auto m = weighted_sum(g.exact, coef);  // (d_out, d_in)
  if (right.defined()) m = m.mm(right);
  return singular_values(m);
}

int64_t count_above(const torch::Tensor& values, double threshold) {
  return (values > threshold).sum().item<int64_t>();
}

int64_t median(std::vector<int64_t> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[(v.size() - 1) / 2];  // lower median: no half-ranks
}

// The two halves of `split` as per-shard coefficients that make each half's token-weighted mean
// gradient, so halves of unequal token counts stay comparable.
std::pair<std::vector<double>, std::vector<double>> half_coefs(const ShardGradients& g,
                                                               const std::vector<int>& half_a) {
  const size_t K = g.n_shards();
  std::vector<bool> in_a(K, false);
  for (int k : half_a) in_a[size_t(k)] = true;
  double na = 0, nb = 0;
  for (size_t k = 0; k < K; ++k) (in_a[k] ? na : nb) += double(g.n_tokens[k]);
  std::vector<double> ca(K, 0.0), cb(K, 0.0);
  for (size_t k = 0; k < K; ++k) {
    if (in_a[k] && na > 0) ca[k] = 1.0 / na;
    if (!in_a[k] && nb > 0) cb[k] = 1.0 / nb;
  }
  return {ca, cb};
}

// Top singular value of the difference (G_a − G_b)/2 of one split. It holds the same noise as the
// full-data mean (G_a + G_b)/2 (for halves of equal tokens) and no signal: an empirical noise edge
// that needs no i.i.d. assumption, which token-correlated, anisotropic gradient noise breaks (MP).
torch::Tensor noise_values(const ShardGradients& g, const std::vector<double>& ca,
                           const std::vector<double>& cb, const torch::Tensor& right) {
  std::vector<double> cd(ca.size());
  for (size_t k = 0; k < ca.size(); ++k) cd[k] = 0.5 * (ca[k] - cb[k]);
  return combine_values(g, cd, right);  // (k) descending
}

std::vector<double> keep(const torch::Tensor& values, int64_t n) {
  if (!values.defined()) return {};
  return to_vector(values.narrow(0, 0, std::min(n, values.numel())));
}

// A module's gradients ready for analysis: exact shards converted to float64 (and whitened) once,
// so each split only adds; in sketch mode `right` is applied inside each reconstruction.
struct View {
  ShardGradients g;
  torch::Tensor right;
};
View make_view(const ShardGradients& g, const torch::Tensor& right) {
  View v{g, {}};
  if (!g.is_exact()) {
    v.right = right;
    return v;
  }
  for (auto& t : v.g.exact) {
    t = f64(t);                                    // (d_out, d_in)
    if (right.defined()) t = t.mm(f64(right));     // (d_out, d_in) · (d_in, d_in)
  }
  return v;
}

void add_into(std::vector<double>& sum, const std::vector<double>& v) {
  if (sum.empty()) sum.assign(v.size(), 0.0);
  for (size_t i = 0; i < v.size(); ++i) sum[i] += v[i];
}

void scale(std::vector<double>& v, double s) {
  for (double& x : v) x *= s;
}

// Gain curves averaged over the splits, and the signal rank (median over splits) of `values`, the
// singular values of the full-data gradient, against each split's noise edge.
struct CrossFit {
  std::vector<double> gain;
  int64_t signal_rank = 0;
  std::vector<double> noise_edges;  // per split
  torch::Tensor noise_spectrum;     // per index, the median over splits
};
CrossFit cross_fit(const View& v, const std::vector<std::vector<int>>& splits,
                   const std::vector<int64_t>& grid, const torch::Tensor& values, double margin,
                   bool gains) {
  CrossFit out;
  std::vector<int64_t> ranks;
  std::vector<torch::Tensor> spectra;
  for (size_t s = 0; s < splits.size(); ++s) {
    auto [ca, cb] = half_coefs(v.g, splits[s]);
    if (gains) {
      add_into(out.gain, cross_fitted_gain(combine(v.g, ca, v.right), combine(v.g, cb, v.right), grid));
    }
    torch::Tensor nv = noise_values(v.g, ca, cb, v.right);  // (k)
    const double noise = nv.numel() > 0 ? nv[0].item<double>() : 0.0;
    out.noise_edges.push_back(noise);
    spectra.push_back(nv);
    ranks.push_back(count_above(values, margin * noise));
  }
  if (!spectra.empty()) out.noise_spectrum = std::get<0>(torch::stack(spectra).median(0));
  scale(out.gain, 1.0 / double(splits.size()));
  out.signal_rank = median(ranks);
  return out;
}

}  // namespace

int64_t ShardGradients::max_rank() const {
  int64_t r = std::min(d_out, d_in);
  if (!is_exact() && omega.defined()) r = std::min(r, omega.size(1));
  return r;
}

Svd thin_svd(const torch::Tensor& m_in) {
  // Through the Gram matrix of the smaller side: 3x faster than gesdd at 768 x 256, and accurate
  // in float64 for every singular value above ~1e-7 of the largest.
  auto m = f64(m_in);
  const bool tall = m.size(0) >= m.size(1);
  auto gram = tall ? m.transpose(0, 1).mm(m) : m.mm(m.transpose(0, 1));  // (k, k)
  auto [e, W] = torch::linalg_eigh(gram);                                 // ascending
  e = e.flip(0).clamp_min(0);
  W = W.flip(1);                                                          // (k, k)
  auto S = e.sqrt();                                                      // (k)
  auto inv = torch::where(S > S[0] * 1e-12, S.reciprocal(), torch::zeros_like(S));
  auto other = (tall ? m.mm(W) : m.transpose(0, 1).mm(W)) * inv;         // (m|n, k)
  return tall ? Svd{other, S, W} : Svd{W, S, other};
}

torch::Tensor singular_values(const torch::Tensor& m_in) {
  auto m = f64(m_in);
  auto gram = m.size(0) >= m.size(1) ? m.transpose(0, 1).mm(m) : m.mm(m.transpose(0, 1));
  return torch::linalg_eigvalsh(gram).flip(0).clamp_min(0).sqrt();        // (k) descending
}

Svd sketch_svd(const torch::Tensor& range, const torch::Tensor& corange, const torch::Tensor& core,
               const torch::Tensor& phi, const torch::Tensor& xi, const torch::Tensor& right) {
  auto Q = std::get<0>(torch::linalg_qr(f64(range)));                     // (m, k)
  auto P = std::get<0>(torch::linalg_qr(f64(corange).transpose(0, 1)));   // (n, k)
  auto C = least_squares(f64(phi).transpose(0, 1).mm(Q), f64(core));      // (k, s): (ΦᵀQ)⁺ Z
  C = least_squares(f64(xi).transpose(0, 1).mm(P), C.transpose(0, 1)).transpose(0, 1);  // (k, k)
  if (right.defined()) {
    // G R ≈ Q C (Rᵀ P)ᵀ; re-orthonormalise Rᵀ P = P2 R2 so the factors stay orthonormal.
    auto [P2, R2] = torch::linalg_qr(f64(right).transpose(0, 1).mm(P));  // (n, k), (k, k)
    C = C.mm(R2.transpose(0, 1));                                          // (k, k)
    P = P2;
  }
  auto [Uc, S, Vch] = torch::linalg_svd(C, /*full_matrices=*/false);      // (k,k) (k) (k,k)
  return {Q.mm(Uc), S, P.mm(Vch.transpose(0, 1))};
}

torch::Tensor sketch_values(const torch::Tensor& range, const torch::Tensor& corange,
                            const torch::Tensor& core, const torch::Tensor& phi,
                            const torch::Tensor& xi) {
  auto Y = f64(range), W = f64(corange);                                  // (m, k), (k, n)
  auto [Ly, info_y] = torch::linalg_cholesky_ex(Y.transpose(0, 1).mm(Y));  // YᵀY = Ly Lyᵀ
  auto [Lw, info_w] = torch::linalg_cholesky_ex(W.mm(W.transpose(0, 1)));  // W Wᵀ = Lw Lwᵀ
  // Squaring the condition number is harmless up to cond(Y) ~ 1e4 (relative error ~1e-8 in
  // float64); a nearly rank-deficient sketch goes the QR way.
  auto dy = Ly.diagonal(), dw = Lw.diagonal();
  auto ok = (info_y == 0).logical_and(info_w == 0)
                .logical_and(dy.min() > 1e-4 * dy.max()).logical_and(dw.min() > 1e-4 * dw.max());
  if (!ok.item<bool>()) return {};
  auto M = least_squares(f64(phi).transpose(0, 1).mm(Y), f64(core));      // (k, s): (ΦᵀY)⁺ Z
  M = least_squares(W.mm(f64(xi)).transpose(0, 1), M.transpose(0, 1)).transpose(0, 1);  // (k, k)
  // Q = Y Ly⁻ᵀ and P = Wᵀ Lw⁻ᵀ, so C = (ΦᵀQ)⁺ Z (PᵀΞ)⁺ = Lyᵀ M Lw.
  return torch::linalg_svdvals(Ly.transpose(0, 1).mm(M).mm(Lw));          // (k) descending
}

torch::Tensor best_rank(const Svd& s, int64_t r) {
  const int64_t k = std::min(r, s.rank());
  auto U = s.U.narrow(1, 0, k), V = s.V.narrow(1, 0, k);  // (m, k), (n, k)
  return (U * s.S.narrow(0, 0, k)).mm(V.transpose(0, 1));  // (m, n)
}

Svd combine(const ShardGradients& g, const std::vector<double>& coef, const torch::Tensor& right) {
  check_coef(g, coef);
  if (g.is_exact()) {
    auto m = weighted_sum(g.exact, coef);  // (d_out, d_in)
    if (right.defined()) m = m.mm(f64(right));
    return thin_svd(m);
  }
  return sketch_svd(weighted_sum(g.range, coef), weighted_sum(g.corange, coef),
                    weighted_sum(g.core, coef), g.phi, g.xi, right);
}

double frobenius_sq(const ShardGradients& g, const std::vector<double>& coef) {
  check_coef(g, coef);
  if (g.is_exact()) return weighted_sum(g.exact, coef).pow(2).sum().item<double>();
  // E‖G Ω‖² = k ‖G‖² for Ω with i.i.d. standard normal entries.
  return weighted_sum(g.range, coef).pow(2).sum().item<double>() / double(g.omega.size(1));
}

std::vector<int64_t> rank_grid(int64_t max_rank, int64_t cap) {
  std::vector<int64_t> grid;
  for (int64_t r = 1; r <= std::min(max_rank, cap); r *= 2) grid.push_back(r);
  return grid;
}

std::vector<double> projected_gain(const Svd& a, const Svd& b, const std::vector<int64_t>& grid) {
  std::vector<double> out(grid.size(), 0.0);
  if (a.rank() == 0 || b.rank() == 0) return out;
  // t_i = u_iᵀ B v_i with B = U_b S_b V_bᵀ, without forming B.
  auto M1 = a.U.transpose(0, 1).mm(b.U);                       // (ka, kb)
  auto M2 = a.V.transpose(0, 1).mm(b.V);                       // (ka, kb)
  auto t = (M1 * M2 * b.S.unsqueeze(0)).sum(1);                // (ka)
  auto num = to_vector((a.S * t).cumsum(0));                   // ⟨P_r(A), B⟩
  auto den = to_vector(a.S.pow(2).cumsum(0));                  // ‖P_r(A)‖²
  for (size_t j = 0; j < grid.size(); ++j) {
    size_t i = size_t(std::min(grid[j], a.rank()) - 1);
    out[j] = den[i] > 0 ? num[i] / std::sqrt(den[i]) : 0.0;
  }
  return out;
}

std::vector<double> cross_fitted_gain(const Svd& a, const Svd& b, const std::vector<int64_t>& grid) {
  auto ab = projected_gain(a, b, grid), ba = projected_gain(b, a, grid);
  for (size_t i = 0; i < ab.size(); ++i) ab[i] = 0.5 * (ab[i] + ba[i]);
  return ab;
}

std::vector<double> normalise_curve(const std::vector<double>& curve) {
  double top = curve.empty() ? 0.0 : *std::max_element(curve.begin(), curve.end());
  std::vector<double> out(curve.size(), 0.0);
  if (top <= 0) return out;
  for (size_t i = 0; i < curve.size(); ++i) out[i] = curve[i] / top;
  return out;
}

std::vector<double> captured_energy(const torch::Tensor& singular_values, double total_sq,
                                    const std::vector<int64_t>& grid) {
  std::vector<double> out(grid.size(), 0.0);
  const int64_t k = singular_values.numel();
  if (k == 0 || total_sq <= 0) return out;
  auto cs = to_vector(f64(singular_values).pow(2).cumsum(0));  // (k)
  for (size_t j = 0; j < grid.size(); ++j) {
    out[j] = std::min(1.0, cs[size_t(std::min(grid[j], k) - 1)] / total_sq);
  }
  return out;
}

int64_t rank_at_fraction(const std::vector<int64_t>& grid, const std::vector<double>& norm_curve,
                         double fraction) {
  for (size_t i = 0; i < grid.size() && i < norm_curve.size(); ++i) {
    if (norm_curve[i] >= fraction) return grid[i];
  }
  return grid.empty() ? 0 : grid.back();
}

std::vector<int64_t> explained_variance_ranks(const torch::Tensor& second_moment,
                                              const std::vector<double>& fractions) {
  auto m = f64(second_moment);
  auto ev = torch::linalg_eigvalsh(0.5 * (m + m.transpose(0, 1))).flip(0).clamp_min(0);  // (d) desc
  const double total = ev.sum().item<double>();
  std::vector<int64_t> out;
  auto cum = to_vector(ev.cumsum(0));
  for (double f : fractions) {
    int64_t r = 0;
    if (total > 0) {
      while (r < int64_t(cum.size()) && cum[size_t(r)] < f * total) ++r;
      r = std::min<int64_t>(r + 1, int64_t(cum.size()));
    }
    out.push_back(r);
  }
  return out;
}

torch::Tensor inverse_sqrt(const torch::Tensor& cov, double damping) {
  auto c = f64(cov);
  c = 0.5 * (c + c.transpose(0, 1));                              // (d, d)
  const int64_t d = c.size(0);
  double mean_ev = c.diagonal().sum().item<double>() / double(d);
  double lambda = damping * (mean_ev > 0 ? mean_ev : 1.0);
  auto [e, V] = torch::linalg_eigh(c);                            // (d), (d, d)
  auto inv = (e.clamp_min(0) + lambda).rsqrt();                   // (d)
  return (V * inv.unsqueeze(0)).mm(V.transpose(0, 1));            // (d, d)
}

std::vector<std::vector<int>> half_splits(int n_shards, int max_splits) {
  if (n_shards < 2) {
    fail("spectrum", "cross-fitting needs at least 2 shards", ">= 2", std::to_string(n_shards),
         "probe with --shards 2 or more");
  }
  const int half = n_shards / 2;
  std::vector<std::vector<int>> out;
  // Subsets of {1..K-1} of size half-1, in lexicographic order, each joined with shard 0.
  std::vector<int> pick(size_t(half - 1));
  for (int i = 0; i < half - 1; ++i) pick[size_t(i)] = i + 1;
  while (int(out.size()) < max_splits) {
    std::vector<int> a = {0};
    a.insert(a.end(), pick.begin(), pick.end());
    out.push_back(a);
    int i = half - 2;
    while (i >= 0 && pick[size_t(i)] == n_shards - (half - 1) + i) --i;
    if (i < 0) break;
    ++pick[size_t(i)];
    for (int j = i + 1; j < half - 1; ++j) pick[size_t(j)] = pick[size_t(j - 1)] + 1;
  }
  return out;
}

InputSpectrum analyse_inputs(const torch::Tensor& cov, const torch::Tensor& ev_moment,
                             const SpectrumOptions& opts) {
  torch::NoGradGuard no_grad;
  InputSpectrum out;
  if (cov.defined()) out.whitening = inverse_sqrt(cov, opts.damping);
  if (ev_moment.defined()) out.ev_ranks = explained_variance_ranks(ev_moment, opts.ev_fractions);
  return out;
}

ModuleSpectrum analyse_module(const ShardGradients& g, const InputSpectrum& inputs,
                              const SpectrumOptions& opts) {
  torch::NoGradGuard no_grad;
  ModuleSpectrum out;
  out.grid = rank_grid(g.max_rank(), opts.max_rank);
  const auto splits = half_splits(int(g.n_shards()), opts.max_splits);
  // The gradient of all the data: the token-weighted mean over every shard.
  double n_all = 0;
  for (int64_t n : g.n_tokens) n_all += double(n);
  const std::vector<double> c_all(g.n_shards(), n_all > 0 ? 1.0 / n_all : 0.0);
  const double margin = 1 + opts.noise_margin;
  View plain = make_view(g, {});
  torch::Tensor values = combine_values(plain.g, c_all, plain.right);  // (k)
  CrossFit p = cross_fit(plain, splits, out.grid, values, margin, opts.gain_curves);
  out.gain = p.gain;
  out.gain_norm = normalise_curve(p.gain);
  out.signal_rank = p.signal_rank;
  out.noise_edges = p.noise_edges;
  out.noise_spectrum = keep(p.noise_spectrum, opts.n_singular);
  out.noise_top = p.noise_edges.empty() ? 0.0 : p.noise_edges[0];
  if (inputs.whitening.defined()) {
    View white = make_view(g, inputs.whitening);
    torch::Tensor wvalues = combine_values(white.g, c_all, white.right);  // (k)
    CrossFit w = cross_fit(white, splits, out.grid, wvalues, margin, opts.gain_curves);
    out.noise_edges_whitened = w.noise_edges;
    out.noise_spectrum_whitened = keep(w.noise_spectrum, opts.n_singular);
    out.singular_values_whitened =
        to_vector(wvalues.narrow(0, 0, std::min(opts.n_singular, wvalues.numel())));
    out.gain_whitened = w.gain;
    out.gain_whitened_norm = normalise_curve(w.gain);
    out.signal_rank_whitened = w.signal_rank;
  }
  out.singular_values = to_vector(values.narrow(0, 0, std::min(opts.n_singular, values.numel())));
  out.grad_sq = frobenius_sq(g, c_all);
  out.energy = captured_energy(values, out.grad_sq, out.grid);
  out.ev_ranks = inputs.ev_ranks;
  return out;
}

AggregateSpectrum aggregate(const std::vector<ModuleSpectrum>& modules, int64_t max_rank) {
  AggregateSpectrum out;
  int64_t top = 0;
  bool whitened = !modules.empty();
  for (const auto& m : modules) {
    if (!m.grid.empty()) top = std::max(top, m.grid.back());
    whitened = whitened && !m.gain_whitened.empty();
  }
  out.grid = rank_grid(top, max_rank);
  const size_t n = out.grid.size();
  out.gain.assign(n, 0.0);
  out.energy.assign(n, 0.0);
  if (whitened) out.gain_whitened.assign(n, 0.0);
  double sq = 0;
  for (const auto& m : modules) {
    if (m.grid.empty()) continue;
    sq += m.grad_sq;
    for (size_t j = 0; j < n; ++j) {
      // The module's last grid point at or below r: its curve is flat beyond its rank.
      size_t i = 0;
      while (i + 1 < m.grid.size() && m.grid[i + 1] <= out.grid[j]) ++i;
      if (i < m.gain.size()) out.gain[j] += m.gain[i];
      out.energy[j] += m.energy[i] * m.grad_sq;
      if (whitened && i < m.gain_whitened.size()) out.gain_whitened[j] += m.gain_whitened[i];
    }
  }
  if (sq > 0) scale(out.energy, 1.0 / sq);
  out.gain_norm = normalise_curve(out.gain);
  out.gain_whitened_norm = normalise_curve(out.gain_whitened);
  return out;
}

}  // namespace lorank
