// The trainer's pure parts: learning-rate schedule, evaluation points, data order, and the
// sweep's oracle rule — no model needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "error.h"
#include "sweep.h"
#include "trainer.h"

namespace lorank {
namespace {

TEST(Schedule, LinearWarmupThenDecayAsTransformers) {
  // get_linear_schedule_with_warmup(num_warmup_steps=2, num_training_steps=10)
  EXPECT_DOUBLE_EQ(lr_factor("linear", 0, 2, 10), 0.0);
  EXPECT_DOUBLE_EQ(lr_factor("linear", 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor("linear", 2, 2, 10), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor("linear", 6, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor("linear", 9, 2, 10), 0.125);
  EXPECT_DOUBLE_EQ(lr_factor("linear", 0, 0, 10), 1.0);
}

TEST(Schedule, CosineAndConstant) {
  EXPECT_DOUBLE_EQ(lr_factor("cosine", 2, 2, 10), 1.0);
  EXPECT_NEAR(lr_factor("cosine", 6, 2, 10), 0.5, 1e-12);
  EXPECT_NEAR(lr_factor("cosine", 10, 2, 10), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(lr_factor("constant", 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor("constant", 9, 2, 10), 1.0);
}

TEST(Schedule, WarmupStepsRoundUp) {
  EXPECT_EQ(warmup_steps(0.05, 1500), 75);
  EXPECT_EQ(warmup_steps(0.05, 30), 2);  // ceil(1.5)
  EXPECT_EQ(warmup_steps(0.0, 30), 0);
}

TEST(Schedule, EvaluationPoints) {
  EXPECT_EQ(eval_steps(100, 10, 0),
            (std::vector<int64_t>{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}));
  EXPECT_EQ(eval_steps(7, 3, 0), (std::vector<int64_t>{2, 5, 7}));
  EXPECT_EQ(eval_steps(3, 10, 0), (std::vector<int64_t>{1, 2, 3}));  // no duplicates
  EXPECT_EQ(eval_steps(10, 10, 4), (std::vector<int64_t>{4, 8, 10}));
  EXPECT_EQ(eval_steps(10, 0, 0), (std::vector<int64_t>{10}));  // at the end only
  EXPECT_TRUE(eval_steps(0, 3, 0).empty());
}

TEST(DataOrder, EachEpochVisitsEveryExampleOnceInASeededOrder) {
  const size_t n = 10;
  std::vector<size_t> epoch0, epoch1;
  for (int64_t s = 0; s < 3; ++s) {  // 3 batches of 4, 4, 2
    auto b = batch_indices(n, 4, 7, s);
    EXPECT_EQ(b.size(), s < 2 ? 4u : 2u);
    epoch0.insert(epoch0.end(), b.begin(), b.end());
    auto c = batch_indices(n, 4, 7, s + 3);
    epoch1.insert(epoch1.end(), c.begin(), c.end());
  }
  EXPECT_EQ(std::set<size_t>(epoch0.begin(), epoch0.end()).size(), n);
  EXPECT_EQ(std::set<size_t>(epoch1.begin(), epoch1.end()).size(), n);
  EXPECT_NE(epoch0, epoch1);
  EXPECT_EQ(batch_indices(n, 4, 7, 1), batch_indices(n, 4, 7, 1));
  EXPECT_NE(batch_indices(n, 4, 7, 0), batch_indices(n, 4, 8, 0));
}

TEST(TrainOptionsCheck, RejectsInconsistentValues) {
  TrainOptions o;
  o.batch = 16;
  o.grad_accum = 3;
  EXPECT_THROW(validate(o), Error);
  o.grad_accum = 4;
  EXPECT_NO_THROW(validate(o));
  o.schedule = "step";
  EXPECT_THROW(validate(o), Error);
}

SweepRun run(int64_t rank, double lr, double val, double test) {
  SweepRun r;
  r.rank = rank;
  r.lr = lr;
  r.best_val_loss = val;
  r.test_loss = test;
  r.n_trainable = rank * 1000;
  return r;
}

TEST(SweepSummaryRule, BestLrByValidationAndSmallestAdequateRank) {
  const double nan = std::nan("");
  std::vector<SweepRun> runs = {
      run(1, 1e-3, 2.30, 2.31), run(1, 3e-3, 2.20, 2.25),  // lr 3e-3 wins at r=1 (val)
      run(2, 1e-3, 2.10, 2.02), run(2, 3e-3, 2.15, 1.90),  // val picks 1e-3 despite its test loss
      run(4, 1e-3, 2.00, 2.00), run(4, 3e-3, nan, nan),    // a diverged run is ignored
      run(8, 1e-3, 1.99, 1.99),
  };
  SweepSummary s = summarize_sweep(runs);
  EXPECT_EQ(s.metric, "test");
  ASSERT_EQ(s.per_rank.size(), 4u);
  EXPECT_DOUBLE_EQ(s.per_rank[0].lr, 3e-3);
  EXPECT_DOUBLE_EQ(s.per_rank[1].lr, 1e-3);
  EXPECT_DOUBLE_EQ(s.best_loss, 1.99);
  EXPECT_DOUBLE_EQ(s.threshold, 1.99 + 0.0199);
  EXPECT_EQ(s.adequate_rank, 4);  // 2.00 <= 2.0099; r=2's 2.02 is not
  std::string table = sweep_table(s);
  EXPECT_NE(table.find("*     4"), std::string::npos) << table;
  EXPECT_NE(sweep_svg(s, runs).find("r = 4"), std::string::npos);
}

TEST(SweepSummaryRule, AbsoluteFloorAndValidationFallback) {
  // best 0.2: 1% is 0.002, the 0.005 floor applies; no test losses: validation decides.
  const double nan = std::nan("");
  SweepSummary s =
      summarize_sweep({run(1, 1e-3, 0.206, nan), run(2, 1e-3, 0.204, nan), run(4, 1e-3, 0.2, nan)});
  EXPECT_EQ(s.metric, "val");
  EXPECT_NEAR(s.threshold, 0.205, 1e-12);
  EXPECT_EQ(s.adequate_rank, 2);
  EXPECT_EQ(summarize_sweep({}).adequate_rank, 0);
}

}  // namespace
}  // namespace lorank
