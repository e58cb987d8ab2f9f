// Kills a real `lorank train` mid-run (SIGKILL, SIGINT and SIGTERM) and resumes it with --resume:
// the adapter and the metrics must equal those of an uninterrupted run. The same for a SIGINT to a
// `lorank sweep --jobs 2`, which passes it on to its trainings.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "test_common.h"

namespace fs = std::filesystem;

namespace lorank {
namespace {

std::string train_args(const std::string& out) {
  return "train --model " + test::repo_path("assets/tiny-llama") + " --data " +
         test::asset("data/cmudict.jsonl") +
         " --val-fraction 0.25 --r 4 --no-rslora --dropout 0.1 --batch 4 --epochs 100 --max-steps 120"
         " --n-evals 3 --save-every 1 -q --out " +
         out;
}

// A sweep of train_args()'s data over r=2 and r=4 at one lr, two trainings at a time.
std::string sweep_args(const std::string& out, const std::string& settings) {
  return "sweep --model " + test::repo_path("assets/tiny-llama") + " --data " +
         test::asset("data/cmudict.jsonl") +
         " --val-fraction 0.25 --ranks 2,4 --lrs 1e-3 --batch 4 --epochs 100 --jobs 2 -q " +
         settings + " --out " + out;
}

// Waits until both runs have logged `steps` steps; false when the sweep ended first.
bool wait_for_both_runs(pid_t pid, const std::string& r2, const std::string& r4, int steps) {
  return test::wait_while_running(pid, [&] {
    return test::count_lines_with(r2 + "/metrics.jsonl", "\"train\"") >= steps &&
           test::count_lines_with(r4 + "/metrics.jsonl", "\"train\"") >= steps;
  });
}

// Waits until the run has logged `steps` steps; false when it ended first.
bool wait_for_steps(pid_t pid, const std::string& metrics, int steps) {
  return test::wait_while_running(
      pid, [&] { return test::count_lines_with(metrics, "\"train\"") >= steps; });
}

const std::string& uninterrupted() {
  static std::string dir = [] {
    std::string d = test::make_temp_dir("kill-ref") + "/out";
    auto r = test::run_lorank(train_args(d));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return d;
  }();
  return dir;
}

void expect_same_run(const std::string& dir) {
  EXPECT_EQ(test::read_file(dir + "/adapter_model.safetensors"),
            test::read_file(uninterrupted() + "/adapter_model.safetensors"));
  EXPECT_EQ(test::count_lines_with(dir + "/metrics.jsonl", "\"train\""), 120);
  EXPECT_EQ(test::count_lines_with(dir + "/metrics.jsonl", "\"eval\""), 3);
}

TEST(TrainKill, SigkillThenResume) {
  const std::string dir = test::make_temp_dir("kill-9") + "/out";
  pid_t pid = test::spawn_lorank(train_args(dir), dir + ".log");
  ASSERT_TRUE(wait_for_steps(pid, dir + "/metrics.jsonl", 40)) << "the run ended before the kill";
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  auto refused = test::run_lorank(train_args(dir));
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  auto r = test::run_lorank(train_args(dir) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(resumed)"), std::string::npos) << r.output;
  expect_same_run(dir);
}

// Ctrl-C, and the SIGTERM a scheduler or `timeout` sends: both checkpoint and exit 128 + signal.
void expect_signal_checkpoints_and_stops(int sig) {
  const std::string dir = test::make_temp_dir("kill-sig") + "/out";
  pid_t pid = test::spawn_lorank(train_args(dir), dir + ".log");
  ASSERT_TRUE(wait_for_steps(pid, dir + "/metrics.jsonl", 40)) << "the run ended before the signal";
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << sig << " killed the run";
  EXPECT_EQ(WEXITSTATUS(status), 128 + sig);
  EXPECT_NE(test::read_file(dir + ".log").find("--resume"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir + "/checkpoint.safetensors"));
  auto r = test::run_lorank(train_args(dir) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_run(dir);
}

// A retried job or a second terminal: a run already writing to --out keeps it to itself.
TEST(TrainKill, ASecondRunIntoALiveOutIsRefused) {
  const std::string dir = test::make_temp_dir("kill-lock") + "/out";
  pid_t pid = test::spawn_lorank(train_args(dir), dir + ".log");
  ASSERT_TRUE(wait_for_steps(pid, dir + "/metrics.jsonl", 3)) << "the run ended first";
  auto second = test::run_lorank(train_args(dir) + " --resume");
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  EXPECT_EQ(second.exit_code, 1) << second.output;
  EXPECT_NE(second.output.find("--out: another lorank run is writing to this folder"),
            std::string::npos)
      << second.output;
}

TEST(TrainKill, SigintCheckpointsAndStops) {
  expect_signal_checkpoints_and_stops(SIGINT);
}

TEST(TrainKill, SigtermCheckpointsAndStops) {
  expect_signal_checkpoints_and_stops(SIGTERM);
}

TEST(TrainKill, SweepWithJobsPassesSigintOnAndResumes) {
  const std::string dir = test::make_temp_dir("kill-sweep") + "/out";
  // The settings of train_args() with r=4 among the ranks: that run must equal uninterrupted().
  const std::string args =
      sweep_args(dir, "--no-rslora --dropout 0.1 --max-steps 120 --n-evals 3 --save-every 1");
  pid_t pid = test::spawn_lorank(args, dir + ".log");
  const std::string r2 = dir + "/runs/r2-lr0.001", r4 = dir + "/runs/r4-lr0.001";
  ASSERT_TRUE(wait_for_both_runs(pid, r2, r4, 30)) << "the sweep ended before SIGINT";
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130) << test::read_file(dir + ".log");
  EXPECT_NE(test::read_file(dir + ".log").find("--resume"), std::string::npos);
  EXPECT_TRUE(fs::exists(r2 + "/checkpoint.safetensors"));
  EXPECT_TRUE(fs::exists(r4 + "/checkpoint.safetensors"));
  auto r = test::run_lorank(args + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_run(r4);
}

// `nohup lorank train ... &`: SIGHUP ignored when lorank starts stays ignored, and the run
// finishes (it used to checkpoint and stop when the terminal closed).
TEST(TrainKill, IgnoredSighupStaysIgnored) {
  const std::string dir = test::make_temp_dir("kill-nohup") + "/out";
  const auto old = std::signal(SIGHUP, SIG_IGN);  // inherited through fork and exec, as nohup does
  pid_t pid = test::spawn_lorank(train_args(dir), dir + ".log");
  std::signal(SIGHUP, old);
  ASSERT_TRUE(wait_for_steps(pid, dir + "/metrics.jsonl", 10)) << "the run ended before SIGHUP";
  ::kill(pid, SIGHUP);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << test::read_file(dir + ".log");
  EXPECT_EQ(WEXITSTATUS(status), 0) << test::read_file(dir + ".log");
  expect_same_run(dir);
}

// The sweep killed outright (kill -9, the OOM killer): each training gets the sweep's death signal
// once per thread of it. Every training stops with its checkpoint and its stop message; before,
// the repeats read as a second Ctrl-C and killed all but one without a word.
TEST(TrainKill, SweepKilledOutrightLeavesEveryTrainingStopped) {
  const std::string dir = test::make_temp_dir("kill-sweep9") + "/out";
  pid_t pid = test::spawn_lorank(sweep_args(dir, "--max-steps 400 --n-evals 2"), dir + ".log");
  const std::string r2 = dir + "/runs/r2-lr0.001", r4 = dir + "/runs/r4-lr0.001";
  ASSERT_TRUE(wait_for_both_runs(pid, r2, r4, 10)) << "the sweep ended before the kill";
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  auto stopped = [&](const std::string& run) {
    return test::read_file(run + ".log").find("stopped at step") != std::string::npos;
  };
  for (int i = 0; i < 1200 && !(stopped(r2) && stopped(r4)); ++i)  // at most 60 s
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(stopped(r2)) << test::read_file(r2 + ".log");
  EXPECT_TRUE(stopped(r4)) << test::read_file(r4 + ".log");
  EXPECT_TRUE(fs::exists(r2 + "/checkpoint.safetensors"));
  EXPECT_TRUE(fs::exists(r4 + "/checkpoint.safetensors"));
}

// A run stopped while the model loads leaves no --out behind: the folder it made is empty then.
// The signal must land after the folder is made and before training starts; a try that misses
// that window (the run reports a stop at a step) is made again.
TEST(TrainKill, StopWhileLoadingLeavesNoFolder) {
  const std::string base = test::make_temp_dir("kill-loading");
  bool hit = false;
  for (int attempt = 0; attempt < 3 && !hit; ++attempt) {
    const std::string dir = base + "/out" + std::to_string(attempt);
    pid_t pid = test::spawn_lorank(train_args(dir), dir + ".log");
    ASSERT_TRUE(test::wait_while_running(pid, [&] { return fs::exists(dir); }))
        << test::read_file(dir + ".log");
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (test::read_file(dir + ".log").find("stopped at step") != std::string::npos) continue;
    hit = true;
    EXPECT_FALSE(fs::exists(dir)) << test::read_file(dir + ".log");
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  }
  EXPECT_TRUE(hit) << "every try reached training before the signal";
}

}  // namespace
}  // namespace lorank
