// Kills a real `lorank sweep` with SIGKILL at pseudo-random moments and resumes it each time:
// every result written before a kill stays byte for byte, each (rank, lr) is recorded once, and
// the adapters and results equal those of an uninterrupted sweep.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "files.h"
#include "test_common.h"

namespace fs = std::filesystem;

namespace lorank {
namespace {

constexpr int kStepsPerRun = 30;
const std::set<std::pair<int64_t, double>> kGrid = {{1, 0.003}, {2, 0.003}, {4, 0.003}};

// The embedded demo (tiny-llama, demo.jsonl), 3 ranks of 30 steps each; one thread is quicker
// than several on a busy machine for a model this small.
std::string sweep_args(const std::string& out) {
  return "sweep --device cpu --threads 1 --ranks 1,2,4 --lrs 0.003 --max-steps 30 --n-evals 3 "
         "--max-examples 64 --max-len 128 --batch 4 --epochs 10 --dropout 0.1 -q --out " +
         out;
}

// Training steps logged by all runs of the sweep so far.
int steps_logged(const std::string& dir) {
  const std::string runs = dir + "/runs";
  if (!fs::is_directory(runs)) return 0;
  int n = 0;
  for (const std::string& run : list_dir(runs)) {
    n += test::count_lines_with(runs + "/" + run + "/metrics.jsonl", "\"train\"");
  }
  return n;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

std::string results_of(const std::string& dir) {
  const std::string path = dir + "/results.jsonl";
  return fs::exists(path) ? test::read_file(path) : "";
}

// A results line without its wall-clock time, which no two sweeps share.
std::string without_seconds(const std::string& line) {
  nlohmann::json j = nlohmann::json::parse(line);
  j.erase("seconds");
  return j.dump();
}

// What a kill must not touch: results.jsonl's complete lines and those runs' adapters.
struct Snapshot {
  std::string results;
  std::map<std::string, std::string> adapters;  // run dir -> adapter_model.safetensors
};

Snapshot snapshot(const std::string& dir) {
  Snapshot s;
  std::string all = results_of(dir);
  s.results = all.substr(0, all.rfind('\n') == std::string::npos ? 0 : all.rfind('\n') + 1);
  for (const std::string& line : lines_of(s.results)) {
    const std::string run = nlohmann::json::parse(line)["dir"];
    s.adapters[run] = test::read_file(dir + "/" + run + "/adapter_model.safetensors");
  }
  return s;
}

const std::string& uninterrupted() {
  static std::string dir = [] {
    std::string d = test::make_temp_dir("sweep-ref") + "/out";
    auto r = test::run_lorank(sweep_args(d));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return d;
  }();
  return dir;
}

TEST(SweepKill, SigkillAtRandomMomentsThenResume) {
  const std::string dir = test::make_temp_dir("sweep-kill") + "/out";
  std::mt19937 rng(20240605);  // fixed: the same kill points on every run of the test
  // One kill somewhere inside each run's 30 steps, then up to 40 ms later: mid-step, mid-eval,
  // mid-checkpoint or mid-append, wherever that lands.
  std::uniform_int_distribution<int> step(1, kStepsPerRun - 2);
  std::uniform_int_distribution<int> delay_ms(0, 40);
  std::vector<int> targets;
  for (size_t run = 0; run < kGrid.size(); ++run)
    targets.push_back(int(run) * kStepsPerRun + step(rng));
  std::vector<Snapshot> before_kill;
  for (size_t k = 0; k < targets.size(); ++k) {
    const std::string args = sweep_args(dir) + (k > 0 ? " --resume" : "");
    pid_t pid = test::spawn_lorank(args, dir + ".log" + std::to_string(k));
    ASSERT_TRUE(test::wait_while_running(pid, [&] { return steps_logged(dir) >= targets[k]; }))
        << "the sweep ended before kill " << k + 1 << ":\n"
        << test::read_file(dir + ".log" + std::to_string(k));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    before_kill.push_back(snapshot(dir));
  }
  ASSERT_FALSE(before_kill.back().results.empty()) << "no result was written before a kill";
  auto refused = test::run_lorank(sweep_args(dir));
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("--resume"), std::string::npos) << refused.output;
  auto r = test::run_lorank(sweep_args(dir) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string results = results_of(dir);
  for (const Snapshot& s : before_kill) {
    EXPECT_EQ(results.substr(0, s.results.size()), s.results) << "a result changed after a kill";
    for (const auto& [run, bytes] : s.adapters) {
      EXPECT_EQ(test::read_file(dir + "/" + run + "/adapter_model.safetensors"), bytes) << run;
    }
  }
  std::multiset<std::pair<int64_t, double>> recorded;
  for (const std::string& line : lines_of(results)) {
    nlohmann::json j = nlohmann::json::parse(line);
    recorded.insert({j["rank"].get<int64_t>(), j["lr"].get<double>()});
  }
  EXPECT_EQ(recorded, (std::multiset<std::pair<int64_t, double>>(kGrid.begin(), kGrid.end())));

  const std::string ref = uninterrupted();
  std::map<std::string, std::string> ours, theirs;  // run dir -> results line without seconds
  for (const std::string& line : lines_of(results)) {
    ours[nlohmann::json::parse(line)["dir"]] = without_seconds(line);
  }
  for (const std::string& line : lines_of(results_of(ref))) {
    theirs[nlohmann::json::parse(line)["dir"]] = without_seconds(line);
  }
  EXPECT_EQ(ours, theirs);
  for (const auto& [run, line] : theirs) {
    EXPECT_EQ(test::read_file(dir + "/" + run + "/adapter_model.safetensors"),
              test::read_file(ref + "/" + run + "/adapter_model.safetensors"))
        << run;
    EXPECT_EQ(test::count_lines_with(dir + "/" + run + "/metrics.jsonl", "\"train\""), kStepsPerRun)
        << run;
  }
}

}  // namespace
}  // namespace lorank
