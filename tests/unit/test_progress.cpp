// Numbers in progress lines: counts, durations and rates that stay readable under one a second.
#include <gtest/gtest.h>

#include "progress.h"

namespace lorank {
namespace {

TEST(Progress, RatesUnderOneASecondAreTimePerUnit) {
  EXPECT_EQ(format_rate(45600, "tok"), "45.6k tok/s");
  EXPECT_EQ(format_rate(12, "step"), "12 step/s");
  EXPECT_EQ(format_rate(3.44, "step"), "3.4 step/s");
  EXPECT_EQ(format_rate(0.4, "step"), "2.5 s/step");
  EXPECT_EQ(format_rate(0, "step"), "0 step/s");  // nothing done yet
  EXPECT_EQ(format_count(1234567), "1.23M");
  EXPECT_EQ(format_duration(12.3), "12.3s");
}

}  // namespace
}  // namespace lorank
