// Numbers in progress lines: counts, durations and rates that stay readable under one a second.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "progress.h"
#include "test_common.h"
#include "version.h"

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

// A value a command line or a folder name must keep: %g's six digits while they read back the
// same, more when they do not (two learning rates a sweep would put in one folder).
TEST(Progress, ExactNumbersReadBackAsTheValue) {
  EXPECT_EQ(format_exact(0.001), "0.001");
  EXPECT_EQ(format_exact(3e-3), "0.003");
  EXPECT_EQ(format_exact(8), "8");
  EXPECT_EQ(format_exact(1.0000001e-3), "0.0010000001");
  EXPECT_EQ(format_exact(0.123456789012345), "0.123456789012345");
  EXPECT_EQ(std::strtod(format_exact(0.1 + 0.2).c_str(), nullptr), 0.1 + 0.2);
}

// --version and the outputs' lorank_version say the version CMake builds.
// Numbers keep C's point under a caller's LC_NUMERIC (a comma in de_DE, a multi-byte one
// elsewhere).
TEST(Progress, NumbersKeepTheCPointWhateverTheLocalesPoint) {
  EXPECT_EQ(c_decimal_point("22,627417", ","), "22.627417");
  EXPECT_EQ(format_number("%.10g", 1.5), "1.5");
  EXPECT_EQ(c_decimal_point("1\u066b5", "\u066b"), "1.5");
  EXPECT_EQ(c_decimal_point("1.5", "."), "1.5");
  EXPECT_EQ(c_decimal_point("1.5", ""), "1.5");
}

// A library caller's handler gets the notices (from every thread, one at a time); without one they
// go to stderr as "warning: ...".
TEST(Progress, NoticesGoToTheHandlerElseToStderr) {
  std::vector<std::string> got;
  set_notice_handler([&](const std::string& text) { got.push_back(text); });
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([i] { notice("n" + std::to_string(i)); });
  for (auto& t : threads) t.join();
  set_notice_handler({});
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"n0", "n1", "n2", "n3"}));
  ::testing::internal::CaptureStderr();
  notice("CUDA out of memory (test)");
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "\nwarning: CUDA out of memory (test)\n");
  EXPECT_EQ(got.size(), 4u);
}

TEST(Progress, VersionIsCMakesProjectVersion) {
  const std::string cmake = test::read_file(test::repo_path("CMakeLists.txt"));
  EXPECT_NE(cmake.find(std::string("project(lorank VERSION ") + kLorankVersion + " "),
            std::string::npos);
}

}  // namespace
}  // namespace lorank
