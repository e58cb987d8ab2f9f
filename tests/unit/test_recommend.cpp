// The decision on hand-made spectra whose answer is known: counts, the global rank, rank_pattern
// keys that PEFT resolves to each module's rank, caps, the band, the curve and the warnings.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "error.h"
#include "lora.h"
#include "recommend.h"
#include "report.h"

namespace lorank {
namespace {

// A module whose spectrum has exactly `signal` values above 1.1 × edge 1 (no extrapolation).
ModuleEvidence module(int layer, const std::string& kind, int64_t signal, int64_t d = 64,
                      std::vector<double> edges = {1.0, 1.0, 1.0}) {
  const bool attn = kind[1] == '_' && kind != "up_proj";
  ModuleEvidence m;
  m.kind = kind;
  m.layer = layer;
  m.name = "model.layers." + std::to_string(layer) + (attn ? ".self_attn." : ".mlp.") + kind;
  m.d_in = m.d_out = d;
  for (int64_t i = 0; i < d; ++i) {
    m.spectrum.singular_values.push_back(i < signal ? 10.0 - 0.01 * double(i) : 0.5);
    m.spectrum.noise_spectrum.push_back(0.5);
  }
  m.spectrum.noise_edges = edges;
  return m;
}

// 100 examples: completions long enough (train / 100 tokens each) not to lower the confidence.
DataFacts facts(int64_t probe, int64_t train) {
  DataFacts d;
  d.n_examples = 100;
  d.n_supervised = train;
  d.probe_supervised = probe;
  d.probe_examples = 100;
  d.base_loss = 2.0;
  return d;
}

// The rule's bare form (one rank per direction, the median module), which these cases spell out;
// the calibrated defaults are checked in DefaultsAreTheCalibratedConstants.
RecommendOptions plain() {
  RecommendOptions o;
  o.rank_scale = 1;
  o.module_quantile = 0.5;
  return o;
}

std::vector<ModuleEvidence> two_layers(int64_t q, int64_t v, int64_t down0, int64_t down1) {
  return {module(0, "q_proj", q), module(0, "v_proj", v), module(0, "down_proj", down0),
          module(1, "q_proj", q), module(1, "v_proj", v), module(1, "down_proj", down1)};
}

TEST(Recommend, GridHelpers) {
  const std::vector<int64_t> g = {1, 2, 4, 8, 16};
  EXPECT_EQ(grid_ceil(g, 0), 1);
  EXPECT_EQ(grid_ceil(g, 3), 4);
  EXPECT_EQ(grid_ceil(g, 8), 8);
  EXPECT_EQ(grid_ceil(g, 100), 16);
  EXPECT_EQ(grid_steps(g, 16, 2), 3);
  EXPECT_EQ(grid_steps(g, 1, 4), -2);
}

TEST(Recommend, CheckRanksAreTheBandAndOneStepEitherSide) {
  Recommendation rec;
  rec.options.max_rank = 128;
  rec.rank = rec.rank_lo = rec.rank_hi = 16;
  EXPECT_EQ(check_ranks(rec), (std::vector<int64_t>{8, 16, 32}));
  rec.rank = rec.rank_lo = 32;
  rec.rank_hi = 64;
  EXPECT_EQ(check_ranks(rec), (std::vector<int64_t>{16, 32, 64, 128}));
  rec.rank = rec.rank_lo = 1;
  rec.rank_hi = 2;
  EXPECT_EQ(check_ranks(rec), (std::vector<int64_t>{1, 2, 4}));  // nothing below the grid
  rec.rank = rec.rank_lo = rec.rank_hi = 128;
  EXPECT_EQ(check_ranks(rec), (std::vector<int64_t>{64, 128}));  // nor above --max-rank
  rec.rank = rec.rank_lo = rec.rank_hi = 8;
  rec.rank_full_extrapolation = 32;  // the rescaling stopped at its cap: up to the data's size
  EXPECT_EQ(check_ranks(rec), (std::vector<int64_t>{4, 8, 16, 32}));
  rec.rank_full_extrapolation = 16;
  EXPECT_EQ(check_ranks(rec), (std::vector<int64_t>{4, 8, 16}));
  rec.rank = 4;  // --budget-params lowered it below the band
  rec.capped = true;
  EXPECT_EQ(check_ranks(rec), (std::vector<int64_t>{2, 4, 8}));
}

TEST(Recommend, CountsAboveTheMarginOnly) {
  std::vector<double> sv = {5, 1.2, 1.05, 0.9}, nv(4, 0.0);
  EXPECT_EQ(supported_directions(sv, nv, 1.0, 0.1, 1.0), 2);
  EXPECT_EQ(supported_directions(sv, nv, 1.0, 0.0, 1.0), 3);
  EXPECT_EQ(supported_directions(sv, nv, 2.0, 0.1, 1.0), 1);
}

TEST(Recommend, GlobalRankIsTheMedianModulesCount) {
  RecommendOptions o = plain();
  Recommendation r = recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), o);
  // counts {3, 5, 12, 3, 5, 12}: the median (3rd of 6) is 5 -> r = 8
  EXPECT_EQ(r.rank, 8);
  EXPECT_EQ(r.rank_lo, 8);
  EXPECT_EQ(r.rank_hi, 8);
  EXPECT_EQ(r.confidence, "high");
  EXPECT_EQ(r.modules[2].directions, 12);
  o.rank_scale = 2;
  EXPECT_EQ(recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), o).rank, 16);
  o.rank_scale = 1;
  o.module_quantile = 1.0;
  EXPECT_EQ(recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), o).rank, 16);
}

// Every module's rank comes back from PEFT's key rules applied to the written pattern.
void expect_peft_resolves(const Recommendation& r) {
  LoraConfig cfg;
  cfg.r = r.rank;
  cfg.rank_pattern = r.rank_pattern;
  for (const auto& m : r.modules) EXPECT_EQ(lora_rank_for(cfg, m.name), m.rank) << m.name;
}

RecommendOptions with_pattern() {
  RecommendOptions o = plain();
  o.pattern = true;
  return o;
}

TEST(Recommend, PatternKeysByTypeOrByModule) {
  RecommendOptions o = with_pattern();
  // q: 1 direction (-> 1, 3 steps below 8); down: 40 and 12 (-> 32 in layer 0, 16 in layer 1).
  Recommendation r = recommend(two_layers(1, 5, 40, 12), facts(5000, 5000), o);
  EXPECT_EQ(r.rank, 8);
  EXPECT_EQ(r.rank_pattern.count("q_proj"), 1u);  // both layers agree: one key for the type
  EXPECT_EQ(r.rank_pattern.at("q_proj"), 2);      // kept within two grid steps of r
  EXPECT_EQ(r.rank_pattern.at("model.layers.0.mlp.down_proj"), 32);
  EXPECT_EQ(r.rank_pattern.count("model.layers.1.mlp.down_proj"), 0u);  // 16: one step, global
  EXPECT_EQ(r.rank_pattern.count("down_proj"), 0u);
  expect_peft_resolves(r);
  EXPECT_EQ(r.target_modules, (std::vector<std::string>{"q_proj", "v_proj", "down_proj"}));
  int64_t params = 0;
  for (const auto& m : r.modules) params += m.rank * (m.d_in + m.d_out);
  EXPECT_EQ(r.params, params);
  EXPECT_EQ(r.params_uniform, 6 * 8 * 128);
}

TEST(Recommend, NoPatternByDefault) {
  RecommendOptions o = plain();
  EXPECT_FALSE(o.pattern);
  Recommendation r = recommend(two_layers(1, 5, 40, 12), facts(5000, 5000), o);
  EXPECT_EQ(r.rank, 8);
  EXPECT_TRUE(r.rank_pattern.empty());
  for (const auto& m : r.modules) EXPECT_EQ(m.rank, 8) << m.name;
  EXPECT_EQ(r.params, r.params_uniform);
}

bool has_warning(const Recommendation& r, const std::string& needle) {
  for (const auto& w : r.warnings) {
    if (w.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(Recommend, MaxRankAndBudgetCap) {
  RecommendOptions o = plain();
  const Recommendation free = recommend(two_layers(20, 20, 20, 20), facts(5000, 5000), o);
  EXPECT_FALSE(free.capped);
  EXPECT_EQ(free.capped_by, "");
  o.max_rank = 4;
  Recommendation r = recommend(two_layers(20, 20, 20, 20), facts(5000, 5000), o);
  EXPECT_EQ(r.rank, 4);
  EXPECT_TRUE(r.capped);
  EXPECT_EQ(r.capped_by, "--max-rank 4");
  EXPECT_EQ(r.rank_uncapped, free.rank);
  // The band and the confidence are the rule's: a cap the user chose does not make it surer.
  EXPECT_EQ(r.rank_lo, free.rank_lo);
  EXPECT_EQ(r.rank_hi, free.rank_hi);
  EXPECT_EQ(r.confidence, free.confidence);
  EXPECT_TRUE(has_warning(r, "capped: the data supports r=" + std::to_string(free.rank) +
                                 ", but --max-rank 4 allows at most r=4"));
  EXPECT_FALSE(has_warning(r, "more information than the adapter can hold"));
  for (const auto& m : r.modules) EXPECT_LE(m.rank, 4);
  o.max_rank = 256;
  o.budget_params = 6 * 8 * 128;  // r = 8 everywhere fits, 16 does not
  r = recommend(two_layers(20, 20, 20, 20), facts(5000, 5000), o);
  EXPECT_EQ(r.rank, 8);
  EXPECT_LE(r.params, o.budget_params);
  EXPECT_EQ(r.capped_by, "--budget-params 6144");
  EXPECT_EQ(r.rank_lo, free.rank_lo);
  EXPECT_TRUE(has_warning(r, "--budget-params 6144 allows at most r=8"));
  o.budget_params = 10;
  EXPECT_THROW(recommend(two_layers(20, 20, 20, 20), facts(5000, 5000), o), Error);
}

TEST(Recommend, SplitEdgesMakeTheBand) {
  std::vector<ModuleEvidence> ms;
  for (int l = 0; l < 3; ++l) {
    auto m = module(l, "q_proj", 6, 64, {1.0, 1.0, 1.0});
    // a split with a higher edge sees only the first 2 directions (values 10..9.95 vs 20)
    m.spectrum.singular_values[2] = m.spectrum.singular_values[3] = m.spectrum.singular_values[4] =
        m.spectrum.singular_values[5] = 2.0;
    m.spectrum.noise_edges = {1.0, 1.0, 5.0};
    ms.push_back(m);
  }
  Recommendation r = recommend(ms, facts(5000, 5000), plain());
  EXPECT_EQ(r.rank, 8);
  EXPECT_EQ(r.rank_lo, 2);
  EXPECT_EQ(r.rank_hi, 8);
  EXPECT_EQ(r.confidence, "low");
}

TEST(Recommend, MoreDataSupportsMoreDirections) {
  // Values just under the edge (1.0 < 1.1) become signal once the noise halves (4x the tokens).
  std::vector<ModuleEvidence> ms;
  for (int l = 0; l < 2; ++l) {
    auto m = module(l, "q_proj", 2);
    for (int i = 2; i < 10; ++i) m.spectrum.singular_values[size_t(i)] = 1.0;  // noise 0.5
    ms.push_back(m);
  }
  Recommendation same = recommend(ms, facts(5000, 5000), plain());
  Recommendation more = recommend(ms, facts(5000, 20000), plain());
  EXPECT_EQ(same.modules[0].directions, 2);
  // σ² − ν² + ν²/4 = 1 − 0.25 + 0.0625 = 0.8125 > (1.1 · 0.5)² = 0.3025
  EXPECT_EQ(more.modules[0].directions, 10);
  EXPECT_EQ(more.modules[0].directions_probe, 2);
  EXPECT_GT(more.rank, same.rank);
  EXPECT_DOUBLE_EQ(more.extrapolation, 4.0);
  Recommendation far = recommend(ms, facts(5000, 200000), plain());
  EXPECT_EQ(far.modules[0].directions, 10);  // capped at 4x
  EXPECT_NE(far.confidence, "high");
}

// Beyond the 4x cap the counts may be low: the explanation says where the rescaling stopped, the
// reason and the JSON give the rank at the data's full size, and the check sweep reaches it.
TEST(Recommend, BeyondTheCapTheRankAtTheDataSizeIsSaid) {
  std::vector<ModuleEvidence> ms;
  for (int l = 0; l < 2; ++l) {
    auto m = module(l, "q_proj", 2);
    // σ² − ν² + c²ν² = 0.11 + 0.25 c² against (1.1 c)²: above it only from c² < 0.115 (8.7x).
    for (int i = 2; i < 10; ++i) m.spectrum.singular_values[size_t(i)] = 0.6;
    ms.push_back(m);
  }
  const Recommendation r = recommend(ms, facts(5000, 200000), plain());
  EXPECT_EQ(r.rank, 2);
  EXPECT_DOUBLE_EQ(r.extrapolation, 4.0);
  EXPECT_DOUBLE_EQ(r.extrapolation_needed, 40.0);
  EXPECT_EQ(r.rank_full_extrapolation, 16);
  EXPECT_EQ(check_ranks(r), (std::vector<int64_t>{1, 2, 4, 8, 16}));
  EXPECT_NE(
      r.explanation.find("rescaled to 4x the probed supervised tokens (the data holds 40.0x)"),
      std::string::npos)
      << r.explanation;
  const std::string reasons = join(r.reasons, "\n");
  EXPECT_NE(reasons.find("40.0x the probed supervised tokens"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("the rule gives r=16, beyond what was calibrated"), std::string::npos)
      << reasons;
  const auto j = nlohmann::json::parse(recommendation_json(r, {"m", "d", "cpu", "exact", 0}));
  EXPECT_EQ(j["extrapolation"]["rank_at_data_size"], 16);
  EXPECT_EQ(j["extrapolation"]["used"], 4.0);
  // Within the cap: all the tokens, and nothing beyond.
  const Recommendation near = recommend(ms, facts(5000, 10000), plain());
  EXPECT_EQ(near.rank_full_extrapolation, 0);
  EXPECT_NE(near.explanation.find("rescaled to all 10.0k supervised tokens"), std::string::npos)
      << near.explanation;
  EXPECT_TRUE(nlohmann::json::parse(recommendation_json(
      near, {"m", "d", "cpu", "exact", 0}))["extrapolation"]["rank_at_data_size"]
                  .is_null());
}

// Under 2,000 probed supervised tokens (the confidence is low) a warning says how to probe enough.
TEST(Recommend, TooSmallAProbeSaysHowToProbeMore) {
  DataFacts d = facts(500, 20000);
  d.probe_tokens = 8000;
  d.n_tokens = 400000;
  Recommendation r = recommend(two_layers(3, 5, 12, 12), d, plain());
  EXPECT_EQ(r.confidence, "low");
  const std::string warnings = join(r.warnings, "\n");
  EXPECT_NE(warnings.find("only 500 of 20.0k supervised tokens probed: the rank may move with "
                          "--seed; --max-tokens 32000 probes about 2000 of them"),
            std::string::npos)
      << warnings;
  d.n_tokens = 20000;  // as much as the data holds: all of it
  r = recommend(two_layers(3, 5, 12, 12), d, plain());
  EXPECT_NE(join(r.warnings, "\n").find("--sample 100 probes all of it"), std::string::npos);
  d.probe_supervised = d.n_supervised = 500;  // the whole data probed: nothing more to probe
  r = recommend(two_layers(3, 5, 12, 12), d, plain());
  EXPECT_EQ(join(r.warnings, "\n").find("supervised tokens probed"), std::string::npos);
}

TEST(Recommend, CurveRisesToOneAndWarnsWithoutSignal) {
  Recommendation r = recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), plain());
  ASSERT_FALSE(r.curve.empty());
  for (size_t i = 1; i < r.curve.size(); ++i) {
    EXPECT_GE(r.curve[i].share, r.curve[i - 1].share);
    EXPECT_GT(r.curve[i].params, r.curve[i - 1].params);
    EXPECT_LE(r.curve[i].share_lo, r.curve[i].share + 1e-12);
    EXPECT_GE(r.curve[i].share_hi, r.curve[i].share - 1e-12);
  }
  EXPECT_NEAR(r.curve.back().share, 1.0, 1e-12);
  EXPECT_EQ(r.curve.front().share, 0.0);  // the reference: the gain is counted over r=1
  for (size_t i = 2; i + 2 < r.curve.size(); ++i) {
    EXPECT_LE(r.curve[i].share_lo, r.curve[i - 2].share + 1e-12);  // two grid ranks either side
    EXPECT_GE(r.curve[i].share_hi, r.curve[i + 2].share - 1e-12);
  }
  RecommendOptions narrow = plain();
  narrow.band_factor = 2;
  Recommendation r1 = recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), narrow);
  for (size_t i = 1; i + 1 < r1.curve.size(); ++i) {
    EXPECT_EQ(r1.curve[i].share, r.curve[i].share);  // the band moves, the curve does not
    EXPECT_LE(r1.curve[i].share_lo, r1.curve[i - 1].share + 1e-12);  // one grid rank either side
    EXPECT_GE(r1.curve[i].share_hi, r1.curve[i + 1].share - 1e-12);
    EXPECT_GE(r1.curve[i].share_lo, r.curve[i].share_lo - 1e-12);
    EXPECT_LE(r1.curve[i].share_hi, r.curve[i].share_hi + 1e-12);
  }
  RecommendOptions wider = plain();
  wider.curve_rank_scale = 8;  // more ranks per direction: each rank holds less of the signal
  Recommendation r2 = recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), wider);
  EXPECT_EQ(r2.rank, r.rank);  // the curve's scale is not the rule's
  for (size_t i = 0; i < r.curve.size(); ++i) EXPECT_LE(r2.curve[i].share, r.curve[i].share + 1e-12);
  EXPECT_LT(r2.curve[3].share, r.curve[3].share);
  Recommendation none = recommend(two_layers(0, 0, 0, 0), facts(5000, 5000), plain());
  EXPECT_EQ(none.rank, 1);
  ASSERT_FALSE(none.warnings.empty());
  EXPECT_NE(none.warnings[0].find("noise floor"), std::string::npos);
  EXPECT_THROW(recommend({}, facts(1, 1), plain()), Error);
}

// Two directions of energy σ² − (1.1 · edge)² = 98.79 and 98.5901; four ranks per direction: r=1
// holds a quarter of the first, the reference the shares count from.
TEST(Recommend, CurveIsTheGainOverRankOneOfTheEnergyHeld) {
  Recommendation r = recommend({module(0, "q_proj", 2)}, facts(5000, 5000), plain());
  ASSERT_GE(r.curve.size(), 5u);
  const double e0 = 98.79, e1 = 98.5901, first = e0 / 4;
  EXPECT_NEAR(r.curve[1].share, (e0 / 2 - first) / (e0 + e1 - first), 1e-9);  // r=2: 0.1430
  EXPECT_NEAR(r.curve[2].share, (e0 - first) / (e0 + e1 - first), 1e-9);      // r=4: 0.4291
  EXPECT_NEAR(r.curve[3].share, 1.0, 1e-12);                                   // r=8: both held
  EXPECT_NEAR(r.curve[2].share_lo, 0.0, 1e-12);  // band_factor 4: r=1 below, r=16 above
  EXPECT_NEAR(r.curve[2].share_hi, 1.0, 1e-12);
  RecommendOptions narrow = plain();
  narrow.band_factor = 2;
  Recommendation r2 = recommend({module(0, "q_proj", 2)}, facts(5000, 5000), narrow);
  EXPECT_NEAR(r2.curve[2].share_lo, r.curve[1].share, 1e-9);  // r=2 below, r=8 above
  EXPECT_NEAR(r2.curve[2].share_hi, 1.0, 1e-12);
  // Only the calibrated factor's band is an 80% band; another is named by what it spans.
  EXPECT_NE(r.explanation.find("(80% band "), std::string::npos) << r.explanation;
  EXPECT_EQ(r2.explanation.find("80%"), std::string::npos) << r2.explanation;
  EXPECT_NE(r2.explanation.find("(band r/2..r*2 "), std::string::npos) << r2.explanation;
  EXPECT_EQ(band_label(2.83), "band r/2.83..r*2.83");
  EXPECT_EQ(r.curve[0].share_lo, 0.0);
  EXPECT_EQ(r.curve[0].share_hi, 0.0);
}

// Data whose completions are a label or a few words (under 8 supervised tokens per example) gave
// noisy sweeps: the confidence drops one level and says why.
TEST(Recommend, ShortCompletionsLowerTheConfidence) {
  DataFacts labels = facts(5000, 5000);
  labels.n_examples = 1000;  // 5 supervised tokens per example
  Recommendation r = recommend(two_layers(3, 5, 12, 12), labels, plain());
  EXPECT_EQ(r.confidence, "medium");
  bool said = false;
  for (const auto& reason : r.reasons)
    said = said || reason.find("5.0 supervised tokens per example") != std::string::npos;
  EXPECT_TRUE(said);
  EXPECT_EQ(recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), plain()).confidence, "high");
}

// Warned only beyond the calibration's 1,650 trainable parameters per supervised token.
TEST(Recommend, TooLittleDataOnlyBeyondTheMeasured) {
  auto too_little = [](const Recommendation& r) {
    for (const auto& w : r.warnings) {
      if (w.find("too little data") != std::string::npos) return true;
    }
    return false;
  };
  // r=8 on six 64 x 64 modules: 6,144 trainable parameters
  Recommendation few = recommend(two_layers(3, 5, 12, 12), facts(5000, 3), plain());
  ASSERT_EQ(few.params, 6144);
  EXPECT_TRUE(too_little(few));  // 2,048 per token
  EXPECT_FALSE(too_little(recommend(two_layers(3, 5, 12, 12), facts(5000, 4), plain())));  // 1,536
}

TEST(Recommend, WarnsWhenManyExamplesRepeat) {
  DataFacts d = facts(5000, 5000);
  d.n_duplicates = 9;  // under a tenth of the 100 examples: said by inspect, not here
  EXPECT_FALSE(has_warning(recommend(two_layers(4, 4, 4, 4), d, plain()), "repeat an earlier one"));
  d.n_duplicates = 60;
  EXPECT_TRUE(has_warning(recommend(two_layers(4, 4, 4, 4), d, plain()),
                          "60 of 100 examples repeat an earlier one"));
}

TEST(Recommend, ManyRepeatsLowerTheConfidence) {
  DataFacts d = facts(5000, 5000);
  const std::string clean = recommend(two_layers(4, 4, 4, 4), d, plain()).confidence;
  d.n_duplicates = 60;
  const Recommendation r = recommend(two_layers(4, 4, 4, 4), d, plain());
  EXPECT_EQ(clean, "high");
  EXPECT_EQ(r.confidence, "medium");
}

// A module narrower than the rank keeps its full rank in the rank_pattern. The counts are the
// parameters PEFT builds with that rank_pattern, and with r everywhere (a trainer without
// rank_pattern, such as torchtune) above the full rank too; without rsLoRA that module's alpha
// would be alpha x sqrt(16).
TEST(Recommend, ModulesNarrowerThanTheRankKeepTheirFullRank) {
  std::vector<ModuleEvidence> ev;
  for (int layer = 0; layer < 2; ++layer) {
    ev.push_back(module(layer, "q_proj", 60, 64));
    ev.push_back(module(layer, "o_proj", 60, 64));
    ev.push_back(module(layer, "k_proj", 16, 16));  // 64 -> 16 wide, as GQA's k/v are narrower
  }
  for (auto& m : ev) {
    if (m.kind == "k_proj") m.d_in = 64;
  }
  Recommendation r = recommend(ev, facts(5000, 5000), plain());
  ASSERT_EQ(r.rank, 64);
  EXPECT_EQ(r.rank_pattern, (std::map<std::string, int64_t>{{"k_proj", 16}}));
  EXPECT_EQ(r.params, 2 * (2 * 64 * 128 + 16 * 80));
  EXPECT_EQ(r.params_uniform, 2 * (2 * 64 * 128 + 64 * 80));
  EXPECT_EQ(r.alpha_pattern, (std::map<std::string, double>{{"k_proj", 8 * 4.0}}));
  EXPECT_TRUE(has_warning(r, "full rank is min(d_in, d_out) (k_proj 16)"));
}

TEST(Recommend, DefaultsAreTheCalibratedConstants) {
  RecommendOptions o;
  EXPECT_EQ(o.rank_scale, 2.0);
  EXPECT_EQ(o.module_quantile, 0.25);
  EXPECT_EQ(o.curve_rank_scale, 4.0);
  EXPECT_EQ(o.band_factor, 4.0);
  // counts {3, 5, 12, 3, 5, 12} x 2 = {6, 10, 24, ...}: the lower quartile (2nd of 6) is 6 -> 8
  EXPECT_EQ(recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), o).rank, 8);
  EXPECT_EQ(recommend(two_layers(5, 5, 12, 12), facts(5000, 5000), o).rank, 16);
}

TEST(Recommend, JsonIsCompleteAndStable) {
  Recommendation r = recommend(two_layers(1, 5, 40, 12), facts(5000, 5000), with_pattern());
  ReportContext ctx{"model", "data.jsonl", "cpu", "exact", 0};
  const std::string a = recommendation_json(r, ctx);
  EXPECT_EQ(a, recommendation_json(recommend(two_layers(1, 5, 40, 12), facts(5000, 5000),
                                             with_pattern()), ctx));
  auto j = nlohmann::json::parse(a);
  EXPECT_EQ(j["rank"], 8);
  EXPECT_EQ(j["rank_pattern"]["q_proj"], 2);
  EXPECT_EQ(j["modules"].size(), 6u);
  EXPECT_EQ(j["curve"].size(), 7u);  // 1..64: the modules are 64 wide
  EXPECT_TRUE(j.contains("explanation"));
  EXPECT_NE(recommendation_report(r, ctx).find("r=8"), std::string::npos);
}

// The terminal report says what the confidence rests on, not only its level.
TEST(Recommend, ReportListsTheConfidencesReasons) {
  Recommendation r = recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), plain());
  ASSERT_FALSE(r.reasons.empty());
  const std::string text = recommendation_report(r, {"model", "data.jsonl", "cpu", "exact", 0});
  EXPECT_NE(text.find("  confidence   " + r.confidence + ":\n"), std::string::npos) << text;
  for (const auto& why : r.reasons)
    EXPECT_NE(text.find("- " + why + "\n"), std::string::npos) << why;
}

// The check sweep's --jobs: one training per rank as far as they fit on the probe's GPU, and
// none on the CPU, where trainings at once would only share its cores.
TEST(Recommend, CheckSweepRunsAsManyAtOnceAsFit) {
  Recommendation r = recommend(two_layers(3, 5, 12, 12), facts(5000, 5000), plain());
  ASSERT_EQ(check_ranks(r).size(), 3u);
  ReportContext ctx{"model", "data.jsonl", "cpu", "exact", 0};
  EXPECT_NE(recommendation_report(r, ctx).find("--ranks 4,8,16 --out lorank-check"),
            std::string::npos)
      << recommendation_report(r, ctx);
  EXPECT_EQ(nlohmann::json::parse(recommendation_json(r, ctx))["check_jobs"], 1);
  ctx.trainings_fit = 2;
  EXPECT_NE(recommendation_report(r, ctx).find("--ranks 4,8,16 --jobs 2 --out lorank-check"),
            std::string::npos);
  ctx.trainings_fit = 67;
  EXPECT_NE(recommendation_report(r, ctx).find("--jobs 3 --out lorank-check"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(recommendation_json(r, ctx))["check_jobs"], 3);
}

}  // namespace
}  // namespace lorank
