// Several trainings on one GPU: each process's share of the card, and how many fit beside a
// model's weights (an 8B model in bf16 holds 15 GiB of weights).
#include <gtest/gtest.h>

#include "sweep.h"

namespace lorank {
namespace {

TEST(SweepMemory, EachProcessGetsAnEvenShareLessItsContext) {
  EXPECT_DOUBLE_EQ(job_memory_share_gib(80, 1), 79.0);
  EXPECT_NEAR(job_memory_share_gib(80, 3), 77.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(job_memory_share_gib(2, 4), 0.0);  // never negative
  EXPECT_DOUBLE_EQ(training_memory_floor_gib(15), 19.75);
}

TEST(SweepMemory, TrainingsThatFitCountTheWeightsOfEach) {
  EXPECT_EQ(trainings_that_fit(80, 15), 3);   // 25.7 GiB each; four would get 19 < 19.75
  EXPECT_EQ(trainings_that_fit(22, 15), 1);   // a 24 GB card: one, which fits alone
  EXPECT_EQ(trainings_that_fit(10, 15), 1);   // not even one: that training fails as it would alone
  EXPECT_EQ(trainings_that_fit(139.8, 15), 6);
  EXPECT_EQ(trainings_that_fit(139.8, 0.05), 67);  // a small model: (139.8 - n) / n >= 1.0625
}

}  // namespace
}  // namespace lorank
