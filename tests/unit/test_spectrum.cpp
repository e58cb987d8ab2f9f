// Spectrum math on synthetic gradients whose answer is known: a planted rank-k signal plus
// shard noise, exact and sketched.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "error.h"
#include "recommend.h"
#include "spectrum.h"

namespace lorank {
namespace {

torch::Tensor orthonormal(int64_t n, int64_t k, torch::Generator& gen) {
  auto a = torch::randn({n, k}, gen, torch::kFloat64);
  return std::get<0>(torch::linalg_qr(a));  // (n, k)
}

struct Planted {
  torch::Tensor signal;  // (d_out, d_in): the mean gradient every shard estimates
  ShardGradients exact;
};

// Shard k holds n_k tokens: its sum is n_k·S + sqrt(n_k)·noise·Z_k, so its mean is S plus noise of
// standard deviation noise / sqrt(n_k) per entry, as a mean over n_k independent tokens would be.
Planted plant(const std::vector<double>& sigmas, double noise, uint64_t seed, int64_t d_out = 96,
              int64_t d_in = 64, std::vector<int64_t> n_tokens = {100, 90, 110, 100}) {
  auto gen = at::detail::createCPUGenerator(seed);
  const int64_t k = int64_t(sigmas.size());
  auto U = orthonormal(d_out, k, gen), V = orthonormal(d_in, k, gen);
  auto S = torch::tensor(sigmas, torch::kFloat64);
  Planted p;
  p.signal = (U * S).mm(V.t());  // (d_out, d_in)
  p.exact.d_out = d_out;
  p.exact.d_in = d_in;
  p.exact.n_tokens = n_tokens;
  for (int64_t n : n_tokens) {
    auto z = torch::randn({d_out, d_in}, gen, torch::kFloat64);
    p.exact.exact.push_back((double(n) * p.signal + std::sqrt(double(n)) * noise * z).to(torch::kFloat32));
  }
  return p;
}

// The same shards as sketches Y_k = G_k Ω, W_k = Ψᵀ G_k, Z_k = Φᵀ G_k Ξ.
ShardGradients sketch_of(const ShardGradients& e, int64_t k, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  ShardGradients s;
  s.d_out = e.d_out;
  s.d_in = e.d_in;
  s.n_tokens = e.n_tokens;
  s.omega = torch::randn({e.d_in, k}, gen, torch::kFloat32);
  s.psi = torch::randn({e.d_out, k}, gen, torch::kFloat32);
  s.phi = torch::randn({e.d_out, 2 * k + 1}, gen, torch::kFloat32);
  s.xi = torch::randn({e.d_in, 2 * k + 1}, gen, torch::kFloat32);
  for (const auto& g : e.exact) {
    s.range.push_back(g.mm(s.omega));
    s.corange.push_back(s.psi.t().mm(g));
    s.core.push_back(s.phi.t().mm(g).mm(s.xi));
  }
  return s;
}

size_t index_of(const std::vector<int64_t>& grid, int64_t r) {
  return size_t(std::find(grid.begin(), grid.end(), r) - grid.begin());
}

TEST(Spectrum, RankGrid) {
  EXPECT_EQ(rank_grid(64), (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(rank_grid(100), (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(rank_grid(4096).back(), 256);
  EXPECT_EQ(rank_grid(4096, 128).back(), 128);
  EXPECT_TRUE(rank_grid(0).empty());
}

TEST(Spectrum, HalfSplits) {
  EXPECT_EQ(half_splits(2, 3), (std::vector<std::vector<int>>{{0}}));
  EXPECT_EQ(half_splits(4, 3), (std::vector<std::vector<int>>{{0, 1}, {0, 2}, {0, 3}}));
  EXPECT_EQ(half_splits(4, 1).size(), 1u);
  EXPECT_EQ(half_splits(6, 100).size(), 10u);  // C(5, 2)
  EXPECT_EQ(half_splits(5, 100).size(), 4u);   // {0, x}, x = 1..4
  EXPECT_THROW(half_splits(1, 3), Error);
}

// P_r from the factors against P_r written out: A V_r V_rᵀ, and Eckart–Young's residual.
TEST(Spectrum, ProjectionMatchesExplicit) {
  auto gen = at::detail::createCPUGenerator(7);
  auto A = torch::randn({30, 20}, gen, torch::kFloat64), B = torch::randn({30, 20}, gen, torch::kFloat64);
  Svd a = thin_svd(A), b = thin_svd(B);
  auto grid = rank_grid(20);
  auto gains = projected_gain(a, b, grid);
  auto full = torch::linalg_svdvals(A);
  for (size_t j = 0; j < grid.size(); ++j) {
    const int64_t r = grid[j];
    auto Vr = std::get<2>(torch::linalg_svd(A, false)).narrow(0, 0, r).t();  // (20, r)
    auto P = A.mm(Vr).mm(Vr.t());                                            // (30, 20)
    EXPECT_LT((best_rank(a, r) - P).norm().item<double>(), 1e-10 * A.norm().item<double>());
    double expect = (P * B).sum().item<double>() / P.norm().item<double>();
    EXPECT_NEAR(gains[j], expect, 1e-10 * std::abs(expect) + 1e-12) << "r=" << r;
    double residual = (A - P).pow(2).sum().item<double>();
    double tail = full.narrow(0, r, 20 - r).pow(2).sum().item<double>();
    EXPECT_NEAR(residual, tail, 1e-9 * A.pow(2).sum().item<double>());
  }
}

TEST(Spectrum, CrossFittedGainIsSymmetric) {
  auto gen = at::detail::createCPUGenerator(3);
  Svd a = thin_svd(torch::randn({12, 9}, gen, torch::kFloat64));
  Svd b = thin_svd(torch::randn({12, 9}, gen, torch::kFloat64));
  auto grid = rank_grid(9);
  EXPECT_EQ(cross_fitted_gain(a, b, grid), cross_fitted_gain(b, a, grid));
}

TEST(Spectrum, SignalRankRecoversPlantedRankAtHighSnr) {
  for (int64_t k : {2, 4, 8}) {
    std::vector<double> sigmas;
    for (int64_t i = 0; i < k; ++i) sigmas.push_back(10.0 - i);
    Planted p = plant(sigmas, 0.5, 11 + uint64_t(k));
    ModuleSpectrum m = analyse_module(p.exact, {}, SpectrumOptions{});
    EXPECT_EQ(m.signal_rank, k);
    EXPECT_EQ(m.signal_rank_whitened, -1);  // no input moments given
    EXPECT_TRUE(m.gain_whitened.empty());
    EXPECT_GT(m.singular_values[size_t(k - 1)], 1.1 * m.noise_top);
    EXPECT_LT(m.singular_values[size_t(k)], 1.1 * m.noise_top);
  }
}

TEST(Spectrum, SignalRankShrinksAsNoiseGrows) {
  const std::vector<double> sigmas = {10, 9, 8, 7, 6, 5, 4, 3};
  int64_t previous = 1 << 30;
  std::vector<int64_t> ranks;
  for (double noise : {0.5, 4.0, 8.0, 16.0, 60.0}) {
    Planted p = plant(sigmas, noise, 5);
    int64_t r = analyse_module(p.exact, {}, SpectrumOptions{}).signal_rank;
    ranks.push_back(r);
    EXPECT_LE(r, previous) << "noise " << noise;
    previous = r;
  }
  EXPECT_EQ(ranks.front(), 8);
  EXPECT_LT(ranks[2], 8);
  EXPECT_EQ(ranks.back(), 0);
}

// Beyond the planted rank, A's extra directions are noise that B does not share: the curve peaks at
// k and the normalised curve crosses 0.99 there, not before.
TEST(Spectrum, CrossFittedCurveSaturatesAtPlantedRank) {
  for (int64_t k : {4, 8, 16}) {
    std::vector<double> sigmas;
    for (int64_t i = 0; i < k; ++i) sigmas.push_back(20.0 - 0.5 * double(i));
    Planted p = plant(sigmas, 1.0, 21 + uint64_t(k));
    ModuleSpectrum m = analyse_module(p.exact, {}, SpectrumOptions{});
    size_t ik = index_of(m.grid, k);
    EXPECT_EQ(size_t(std::max_element(m.gain.begin(), m.gain.end()) - m.gain.begin()), ik);
    EXPECT_EQ(rank_at_fraction(m.grid, m.gain_norm, 0.99), k);
    EXPECT_LT(m.gain_norm[ik - 1], 0.95);
    EXPECT_NEAR(m.gain_norm.back(), 1.0, 0.2);  // falls off slowly past k, never far
  }
}

TEST(Spectrum, CapturedEnergy) {
  Planted p = plant({10, 5}, 0.01, 2);
  ModuleSpectrum m = analyse_module(p.exact, {}, SpectrumOptions{});
  EXPECT_NEAR(m.energy.back(), 1.0, 1e-9);  // all of G at full rank
  EXPECT_NEAR(m.energy[index_of(m.grid, 1)], 100.0 / 125.0, 1e-3);
  EXPECT_NEAR(m.energy[index_of(m.grid, 2)], 1.0, 1e-3);
  EXPECT_NEAR(m.grad_sq, 125.0, 0.5);
  for (size_t i = 1; i < m.energy.size(); ++i) EXPECT_GE(m.energy[i], m.energy[i - 1]);
}

// Signal well above the noise: the single-pass sketch matches the exact spectrum and curve.
TEST(Spectrum, SketchAgreesWithExactOnTopSingularValues) {
  Planted p = plant({30, 20, 12, 8, 5, 3}, 0.5, 31, 200, 150);
  ShardGradients s = sketch_of(p.exact, 48, 99);
  std::vector<double> mean(4, 1.0 / 400.0);
  Svd e = combine(p.exact, mean), k = combine(s, mean);
  ASSERT_EQ(k.rank(), 48);
  for (int64_t i = 0; i < 6; ++i) {
    double ev = e.S[i].item<double>(), kv = k.S[i].item<double>();
    EXPECT_NEAR(kv, ev, 0.02 * ev) << "singular value " << i;
  }
  // The estimated ‖G‖² is unbiased; 48 probes give about 20% spread.
  EXPECT_NEAR(frobenius_sq(s, mean), frobenius_sq(p.exact, mean), 0.4 * frobenius_sq(p.exact, mean));
  ModuleSpectrum me = analyse_module(p.exact, {}, SpectrumOptions{});
  ModuleSpectrum ms = analyse_module(s, {}, SpectrumOptions{});
  EXPECT_EQ(ms.grid.back(), 32);  // capped by the sketch size 48
  EXPECT_EQ(ms.signal_rank, me.signal_rank);
  for (size_t j = 0; j < ms.grid.size() && ms.grid[j] <= 8; ++j) {
    EXPECT_NEAR(ms.gain[j], me.gain[j], 0.03 * std::abs(me.gain[j])) << "r=" << ms.grid[j];
  }
}

// Noise near the weakest signal: without a second pass the flat tail leaks into the sketch and
// inflates the smaller singular values; only the leading ones stay close.
TEST(Spectrum, SketchUnderHeavyNoiseKeepsTheLeadingValues) {
  Planted p = plant({30, 20, 12, 8, 5, 3}, 2.0, 31, 200, 150);
  ShardGradients s = sketch_of(p.exact, 48, 99);
  std::vector<double> mean(4, 1.0 / 400.0);
  Svd e = combine(p.exact, mean), k = combine(s, mean);
  for (int64_t i = 0; i < 3; ++i) {
    double ev = e.S[i].item<double>(), kv = k.S[i].item<double>();
    EXPECT_NEAR(kv, ev, 0.05 * ev) << "singular value " << i;
  }
}

TEST(Spectrum, SketchIsExactForLowRankMatrices) {
  Planted p = plant({4, 3, 2}, 0.0, 8, 50, 40);
  ShardGradients s = sketch_of(p.exact, 10, 1);
  std::vector<double> c = {1, -1, 0.5, 0};
  Svd e = combine(p.exact, c), k = combine(s, c);
  EXPECT_LT((best_rank(k, 10) - best_rank(e, 40)).norm().item<double>(),
            1e-4 * best_rank(e, 40).norm().item<double>());
}

// The Cholesky route to the sketch's singular values gives the QR route's, and declines a
// rank-deficient sketch (rank 3 < k = 10), whose values then come from the QRs.
TEST(Spectrum, SketchValuesByCholeskyMatchTheQrRoute) {
  Planted p = plant({30, 20, 12, 8, 5, 3}, 0.5, 31, 200, 150);
  ShardGradients s = sketch_of(p.exact, 48, 99);
  auto sum = [](const std::vector<torch::Tensor>& parts) {
    torch::Tensor t = parts[0].to(torch::kFloat64);
    for (size_t i = 1; i < parts.size(); ++i) t = t + parts[i].to(torch::kFloat64);
    return t;
  };
  torch::Tensor fast = sketch_values(sum(s.range), sum(s.corange), sum(s.core), s.phi, s.xi);
  ASSERT_TRUE(fast.defined()) << "a well-conditioned sketch was declined";
  Svd qr = sketch_svd(sum(s.range), sum(s.corange), sum(s.core), s.phi, s.xi);
  ASSERT_EQ(fast.size(0), qr.rank());
  EXPECT_LT((fast - qr.S).abs().max().item<double>(), 1e-9 * qr.S[0].item<double>());

  Planted low = plant({4, 3, 2}, 0.0, 8, 50, 40);
  ShardGradients ls = sketch_of(low.exact, 10, 1);
  EXPECT_FALSE(sketch_values(ls.range[0], ls.corange[0], ls.core[0], ls.phi, ls.xi).defined());
  // analyse_module still gets the QR route's values there: three above zero.
  ModuleSpectrum m = analyse_module(ls, {}, SpectrumOptions{});
  EXPECT_NEAR(m.singular_values[2] / m.singular_values[0], 0.5, 0.01);
  EXPECT_LT(m.singular_values[3], 1e-4 * m.singular_values[0]);
}

TEST(Spectrum, WhiteningByIsotropicCovarianceChangesNothing) {
  Planted p = plant({10, 8, 6, 4}, 2.0, 17);
  auto cov = 3.0 * torch::eye(64, torch::kFloat64);
  ModuleSpectrum plain = analyse_module(p.exact, {}, SpectrumOptions{});
  ModuleSpectrum white = analyse_module(p.exact, analyse_inputs(cov, {}, SpectrumOptions{}), SpectrumOptions{});
  ASSERT_EQ(white.gain_whitened.size(), plain.gain.size());
  for (size_t j = 0; j < plain.gain.size(); ++j) {
    EXPECT_NEAR(white.gain_whitened_norm[j], plain.gain_norm[j], 1e-9);
  }
  EXPECT_EQ(white.signal_rank_whitened, plain.signal_rank);
}

TEST(Spectrum, InverseSqrtWhitens) {
  auto gen = at::detail::createCPUGenerator(4);
  auto Q = orthonormal(32, 32, gen);
  auto ev = torch::linspace(0.01, 100.0, 32, torch::kFloat64);
  auto cov = (Q * ev).mm(Q.t());
  auto Sigma_inv_half = inverse_sqrt(cov, 1e-12);
  EXPECT_LT((Sigma_inv_half.mm(cov).mm(Sigma_inv_half) - torch::eye(32, torch::kFloat64)).abs().max().item<double>(), 1e-8);
  EXPECT_LT((Sigma_inv_half - Sigma_inv_half.t()).abs().max().item<double>(), 1e-12);
}

TEST(Spectrum, ExplainedVarianceRanks) {
  auto gen = at::detail::createCPUGenerator(5);
  auto Q = orthonormal(6, 6, gen);
  auto ev = torch::tensor(std::vector<double>{50, 30, 12, 5, 2, 1}, torch::kFloat64);
  auto m = (Q * ev).mm(Q.t());
  // Fractions sit between cumulative shares (0.5, 0.8, 0.92, 0.97, 0.99, 1): an exact boundary
  // would hang on the last bit of the eigensolver, which differs between LibTorch builds.
  EXPECT_EQ(explained_variance_ranks(m, {0.45, 0.9, 0.95, 0.985, 1.0}),
            (std::vector<int64_t>{1, 3, 4, 5, 6}));
  EXPECT_EQ(explained_variance_ranks(torch::zeros({4, 4}), {0.9}), (std::vector<int64_t>{0}));
}

TEST(Spectrum, NormaliseAndThresholds) {
  EXPECT_EQ(normalise_curve({1, 2, 4, 2}), (std::vector<double>{0.25, 0.5, 1.0, 0.5}));
  EXPECT_EQ(normalise_curve({-1, -2}), (std::vector<double>{0, 0}));
  std::vector<int64_t> grid = {1, 2, 4, 8};
  EXPECT_EQ(rank_at_fraction(grid, {0.5, 0.99, 0.995, 1.0}, 0.99), 2);
  EXPECT_EQ(rank_at_fraction(grid, {0.5, 0.99, 0.995, 1.0}, 0.995), 4);
  EXPECT_EQ(rank_at_fraction(grid, {0.5, 0.6, 0.7, 0.8}, 0.99), 8);
}

TEST(Spectrum, AggregateHoldsShortCurvesAtTheirLastValue) {
  ModuleSpectrum a, b;
  a.grid = {1, 2, 4};
  a.gain = {1, 2, 3};
  a.energy = {0.5, 0.75, 1.0};
  a.grad_sq = 1;
  b.grid = {1, 2, 4, 8, 16};
  b.gain = {1, 1, 1, 1, 2};
  b.energy = {0.2, 0.4, 0.6, 0.8, 1.0};
  b.grad_sq = 3;
  AggregateSpectrum s = aggregate({a, b});
  EXPECT_EQ(s.grid, (std::vector<int64_t>{1, 2, 4, 8, 16}));
  EXPECT_EQ(s.gain, (std::vector<double>{2, 3, 4, 4, 5}));
  EXPECT_EQ(s.gain_norm, (std::vector<double>{0.4, 0.6, 0.8, 0.8, 1.0}));
  EXPECT_NEAR(s.energy[0], (0.5 + 0.6) / 4, 1e-12);
  EXPECT_NEAR(s.energy[4], 1.0, 1e-12);
  EXPECT_TRUE(s.gain_whitened.empty());
}

TEST(Spectrum, CoefficientCountMustMatchShards) {
  Planted p = plant({1}, 0.1, 1);
  EXPECT_THROW(combine(p.exact, {1.0, 2.0}), Error);
}

// recommend predicts the count at f times the probe's tokens from the probe alone; on planted
// geometric spectra it must land near the count a probe of f times the tokens finds. Rescaling
// only the edge would count the noise bulk (dozens of directions here).
TEST(Spectrum, DirectionsPredictedForMoreData) {
  for (double decay : {0.7, 0.85, 0.93}) {
    std::vector<double> sigmas;
    for (int i = 0; i < 64; ++i) sigmas.push_back(std::pow(decay, i));
    SpectrumOptions so;
    so.gain_curves = false;
    const std::vector<int64_t> n(4, 1000);
    ModuleSpectrum small = analyse_module(plant(sigmas, 1.0, 21, 128, 384, n).exact, {}, so);
    ASSERT_EQ(small.noise_spectrum.size(), small.singular_values.size());
    const double edge = small.noise_edges[1];
    EXPECT_EQ(supported_directions(small.singular_values, small.noise_spectrum, edge, 0.1, 1.0),
              int64_t(std::count_if(small.singular_values.begin(), small.singular_values.end(),
                                    [&](double v) { return v > 1.1 * edge; })));
    for (int64_t f : {2, 4}) {
      std::vector<int64_t> big_n(4, 1000 * f);
      ModuleSpectrum big = analyse_module(plant(sigmas, 1.0, 23, 128, 384, big_n).exact, {}, so);
      const int64_t truth = supported_directions(big.singular_values, big.noise_spectrum,
                                                 big.noise_edges[1], 0.1, 1.0);
      const int64_t predicted = supported_directions(small.singular_values, small.noise_spectrum,
                                                     edge, 0.1, std::sqrt(1.0 / double(f)));
      EXPECT_NEAR(double(predicted), double(truth), std::max(2.0, 0.25 * double(truth)))
          << "decay " << decay << ", " << f << "x the tokens";
      std::vector<double> none;  // without the subtraction: the edge alone rescaled
      EXPECT_GT(supported_directions(small.singular_values, none, edge, 0.1, std::sqrt(1.0 / f)),
                truth + 10);
    }
  }
}

TEST(Spectrum, NoiseScaleStopsAtTheExtrapolationCap) {
  EXPECT_DOUBLE_EQ(noise_scale(1000, 1000, 4), 1.0);
  EXPECT_DOUBLE_EQ(noise_scale(1000, 500, 4), 1.0);  // the probe saw it all
  EXPECT_DOUBLE_EQ(noise_scale(1000, 4000, 4), 0.5);
  EXPECT_DOUBLE_EQ(noise_scale(1000, 40000, 4), 0.5);
  EXPECT_DOUBLE_EQ(noise_scale(0, 40000, 4), 1.0);
  EXPECT_DOUBLE_EQ(data_over_probe(1000, 40000), 40.0);  // what the cap hides
  EXPECT_DOUBLE_EQ(data_over_probe(0, 40000), 1.0);
}

}  // namespace
}  // namespace lorank
