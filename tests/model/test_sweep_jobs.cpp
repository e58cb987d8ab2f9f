// Sweeps with several trainings at once, in threads (replicas of tiny-llama on the CPU) and as
// `lorank train` processes (the CLI's --jobs): the same results as one at a time, a failing or
// interrupted run stops the others, resume finishes them.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "error.h"
#include "files.h"
#include "model.h"
#include "runtime.h"
#include "sweep.h"
#include "test_common.h"
#include "trainer_fixtures.h"

namespace fs = std::filesystem;

namespace lorank {
namespace {

using test::cmudict;
using test::trainer_model;

SweepOptions three_ranks() {
  return test::tiny_sweep({1, 2, 4});
}

TrainData with_test() {
  TrainData d = cmudict();
  d.test = cmudict().val;
  return d;
}

SweepOutput output(const std::string& name) {
  SweepOutput out;
  out.dir = test::make_temp_dir(name);
  out.progress = false;
  return out;
}

template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one saying " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

int64_t result_lines(const SweepOutput& out) {
  std::ifstream in(out.dir + "/" + kResultsFile);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) ++n;
  return n;
}

TEST(Model, ReplicaSharesTheWeightsOnItsDeviceButNotTheHooks) {
  Model& m = trainer_model();
  std::unique_ptr<Model> r = m.replica(m.device());
  EXPECT_EQ(r->embedding().data_ptr(), m.embedding().data_ptr());
  ASSERT_EQ(r->linears().size(), m.linears().size());
  EXPECT_EQ(r->linears()[3]->weight.data_ptr(), m.linears()[3]->weight.data_ptr());
  EXPECT_NE(r->linears()[3], m.linears()[3]);
  struct Doubling : LinearHook {
    torch::Tensor forward(const torch::Tensor&, torch::Tensor y) override { return 2 * y; }
  };
  m.linears()[3]->hook = std::make_shared<Doubling>();
  EXPECT_EQ(r->linears()[3]->hook, nullptr);
  const torch::Tensor ids = torch::tensor({{1, 5, 9, 13}}, torch::kLong);
  const torch::Tensor hooked = m.forward(ids);
  m.linears()[3]->hook.reset();
  EXPECT_TRUE(torch::equal(r->forward(ids), m.forward(ids)));
  EXPECT_FALSE(torch::equal(r->forward(ids), hooked));
}

TEST(SweepJobs, RunsAtOnceGiveTheResultsOfOneAtATime) {
  const TrainData data = with_test();
  const SweepOutput one = output("sweep-one");
  const SweepResult a = run_sweep(trainer_model(), data, three_ranks(), one);
  ASSERT_TRUE(a.complete);

  std::vector<std::unique_ptr<Model>> replicas;
  std::vector<Model*> models = {&trainer_model()};
  for (int i = 0; i < 2; ++i) {
    replicas.push_back(trainer_model().replica(torch::kCPU));
    models.push_back(replicas.back().get());
  }
  const SweepOutput three = output("sweep-three");
  std::mutex mu;
  std::set<int64_t> seen;
  const SweepResult b = run_sweep(models, data, three_ranks(), three, [&](const SweepRun& r, bool) {
    std::lock_guard<std::mutex> lock(mu);  // on_run is already called under the sweep's lock
    seen.insert(r.rank);
  });
  ASSERT_TRUE(b.complete);
  EXPECT_EQ(seen, (std::set<int64_t>{1, 2, 4}));
  EXPECT_EQ(result_lines(three), 3);
  ASSERT_EQ(b.runs.size(), a.runs.size());
  for (size_t i = 0; i < a.runs.size(); ++i) {  // grid order in both, whatever order they finished
    EXPECT_EQ(b.runs[i].rank, a.runs[i].rank);
    EXPECT_NEAR(b.runs[i].best_val_loss, a.runs[i].best_val_loss, 1e-6 * a.runs[i].best_val_loss);
    EXPECT_NEAR(b.runs[i].test_loss, a.runs[i].test_loss, 1e-6 * a.runs[i].test_loss);
  }
  EXPECT_EQ(b.summary.adequate_rank, a.summary.adequate_rank);
}

TEST(SweepJobs, AFailingRunStopsTheOthersAndResumeFinishesThem) {
  const TrainData data = with_test();
  std::unique_ptr<Model> second = trainer_model().replica(torch::kCPU);
  const std::vector<Model*> models = {&trainer_model(), second.get()};
  SweepOutput out = output("sweep-fail");
  SweepOptions opts = three_ranks();
  std::atomic<int> passes{0};
  opts.train.before_micro_batch = [&](int64_t) {
    if (++passes == 4) throw Error("", "disk on fire", "", "", "free some space");
  };
  try {
    run_sweep(models, data, opts, out);
    FAIL() << "the failing run's error should reach the caller";
  } catch (const Error& e) {  // named, with what to do next
    const std::string what = e.what();
    EXPECT_NE(what.find("the training of r="), std::string::npos) << what;
    EXPECT_NE(what.find("failed: disk on fire\n  hint: free some space\n  hint: the finished "
                        "runs are kept, a stopped one"),
              std::string::npos)
        << what;
    EXPECT_EQ(e.reason().find("hint"), std::string::npos) << e.reason();  // the parts come apart
    EXPECT_EQ(e.hint().rfind("free some space\n  hint: the finished runs are kept", 0), 0u)
        << e.hint();
  }
  EXPECT_LT(result_lines(out), 3);  // at least the failed run is missing
  opts.train.before_micro_batch = nullptr;
  out.resume = true;
  const SweepResult done = run_sweep(models, data, opts, out);
  ASSERT_TRUE(done.complete);
  EXPECT_EQ(done.runs.size(), 3u);
  EXPECT_EQ(result_lines(out), 3);  // nothing twice
}

TEST(SweepJobs, AnInterruptReachesEveryRunAndEachKeepsItsCheckpoint) {
  const TrainData data = with_test();
  std::unique_ptr<Model> second = trainer_model().replica(torch::kCPU);
  const std::vector<Model*> models = {&trainer_model(), second.get()};
  SweepOutput out = output("sweep-interrupt");
  SweepOptions opts = three_ranks();
  std::atomic<bool> interrupt{false};
  std::atomic<int> passes{0};
  opts.train.interrupt = &interrupt;
  opts.train.before_micro_batch = [&](int64_t) {
    if (++passes == 3) interrupt = true;  // both first runs are under way by now
  };
  const SweepResult stopped = run_sweep(models, data, opts, out);
  EXPECT_FALSE(stopped.complete);
  int checkpoints = 0;
  for (const char* run : {"r1-lr0.003", "r2-lr0.003", "r4-lr0.003"}) {
    checkpoints += fs::exists(out.dir + "/runs/" + run + "/" + kCheckpointFile);
  }
  EXPECT_GE(checkpoints + result_lines(out), 2);
  interrupt = false;
  opts.train.before_micro_batch = nullptr;
  out.resume = true;
  const SweepResult done = run_sweep(models, data, opts, out);
  ASSERT_TRUE(done.complete);
  EXPECT_EQ(result_lines(out), 3);
  for (const SweepRun& r : done.runs) EXPECT_EQ(r.steps, 3);
}

std::string cli_sweep(const std::string& out, bool quiet = true) {
  return "sweep --model " + test::trainer_model_dir() + " --data " +
         test::asset("data/cmudict.jsonl") +
         " --ranks 1,2,4 --lrs 3e-3 --batch 4 --max-steps 3 --n-evals 1 --val-fraction 0.25" +
         " --device cpu" +  // else a GPU machine runs one sweep on CUDA, the other on --devices cpu
         (quiet ? " -q" : "") + " --out " + out;
}

// results.jsonl by rank (one learning rate here).
std::map<int64_t, nlohmann::json> results_by_rank(const std::string& dir) {
  std::map<int64_t, nlohmann::json> out;
  std::istringstream in(test::read_file(dir + "/" + kResultsFile));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    out[j["rank"].get<int64_t>()] = j;
  }
  return out;
}

TEST(SweepJobs, CliProcessesGiveTheResultsOfOneAtATime) {
  const std::string one = test::make_temp_dir("cli-jobs-1") + "/out";
  const std::string three = test::make_temp_dir("cli-jobs-3") + "/out";
  auto r = test::run_lorank(cli_sweep(one));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_lorank(cli_sweep(three, /*quiet=*/false) + " --jobs 3 --devices cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("minimal adequate rank"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 at a time on cpu"), std::string::npos) << r.output;
  // One bar over the processes' steps, read from their metrics: 3 runs of 3 steps.
  EXPECT_NE(r.output.find("sweep [########################] 100% 9/9 step"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("[3/3]"), std::string::npos) << r.output;
  const auto want = results_by_rank(one), got = results_by_rank(three);
  ASSERT_EQ(got.size(), want.size()) << r.output;
  for (const auto& [rank, w] : want) {  // the same runs: equal on the CPU, up to rounding at most
    const nlohmann::json& g = got.at(rank);
    for (const char* key : {"dir", "n_trainable", "steps", "best_step", "diverged"})
      EXPECT_EQ(g[key], w[key]) << key << " of r=" << rank;
    EXPECT_NEAR(g["best_val_loss"].get<double>(), w["best_val_loss"].get<double>(),
                1e-6 * w["best_val_loss"].get<double>())
        << "r=" << rank;
  }
  EXPECT_NE(test::read_file(three + "/runs/r2-lr0.003.log").find("steps      3 of 3"),
            std::string::npos);  // each training's own report stays beside its run
}

TEST(SweepJobs, CliNamesTheLogOfAFailedTrainingAndResumeFinishes) {
  const std::string out = test::make_temp_dir("cli-jobs-fail") + "/out";
  fs::create_directories(out + "/runs");
  test::write_file(out + "/runs/r2-lr0.003", "a file where the run's folder goes");
  auto r = test::expect_failure(
      cli_sweep(out) + " --jobs 2 --resume",
      {"runs/r2-lr0.003.log", "the training of r=2 lr=0.003 failed", "not a folder", "--resume"});
  fs::remove(out + "/runs/r2-lr0.003");
  r = test::run_lorank(cli_sweep(out) + " --jobs 2 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(result_lines(SweepOutput{out}), 3);
  // One at a time in this process: the failed run is named as well.
  const std::string here = test::make_temp_dir("cli-sweep-fail") + "/out";
  fs::create_directories(here + "/runs");
  test::write_file(here + "/runs/r2-lr0.003", "a file where the run's folder goes");
  test::expect_failure(cli_sweep(here) + " --resume",
                       {"runs/r2-lr0.003: the training of r=2 lr=0.003 failed", "not a folder",
                        "hint: the finished runs are kept, a stopped one", "--resume"});
}

// A training that fails with a hint of its own (here its run folder is a file): the hint is passed
// on before the sweep's.
TEST(SweepJobs, CliPassesOnTheTrainingsHint) {
  const std::string out = test::make_temp_dir("cli-jobs-hint") + "/out";
  fs::create_directories(out + "/runs");
  test::write_file(out + "/runs/r2-lr0.003", "a file where the run's folder goes");
  test::expect_failure(cli_sweep(out) + " --jobs 2 --resume",
                       {"the training of r=2 lr=0.003 failed", "not a folder",
                        "\n  hint: choose another --out\n  hint: read the log; the finished runs"});
}

// The processes load the model, this one does not: its names and shapes (no weights) still check
// the keys before any training starts, and nothing is left that would need --force.
TEST(SweepJobs, CliChecksTheTargetsBeforeAnyTraining) {
  const std::string out = test::make_temp_dir("cli-jobs-targets") + "/out";
  auto r = test::expect_failure(
      cli_sweep(out) + " --jobs 2 --targets q_proj,foo_proj",
      {"--targets: 'foo_proj' matches no linear layer", "hint: this model's linears are q_proj"});
  EXPECT_EQ(r.output.find("the training of"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out)) << "a failed check leaves no folder behind";
}

// Every run diverged (here: their results say so, and --resume trains nothing): the table says
// that no run produced a finite loss, and the exit code tells a script.
TEST(SweepJobs, CliFailsWhenEveryRunDiverged) {
  const std::string out = test::make_temp_dir("cli-diverged") + "/out";
  auto r = test::run_lorank(cli_sweep(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string lines;
  for (auto& [rank, j] : results_by_rank(out)) {
    j["best_val_loss"] = nullptr;
    j["test_loss"] = nullptr;
    j["diverged"] = true;
    lines += j.dump() + "\n";
  }
  test::write_file(out + "/" + kResultsFile, lines);
  r = test::expect_failure(cli_sweep(out, /*quiet=*/false) + " --resume",
                           {"no run produced a finite loss", "results.jsonl: every run diverged",
                            "none of 3", "--resume and smaller --lrs"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(test::read_file(out + "/" + kResultsFile), lines);  // nothing trained again
}

// Without --jobs the sweep trains each run in this process; a `lorank train` into that run's
// folder meanwhile is refused, as it is for a --jobs sweep's runs (each a lorank train).
TEST(SweepJobs, ARunsFolderIsLockedWhileItTrains) {
  SweepOutput out = output("sweep-run-lock");
  const FolderLock other(out.dir + "/runs/r1-lr0.003", "--out");  // another process's train
  out.resume = true;  // the sweep's folder is no longer empty
  try {
    run_sweep(trainer_model(), with_test(), three_ranks(), out);
    FAIL() << "trained into a folder another run holds";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the training of r=1 lr=0.003 failed"), std::string::npos) << what;
    EXPECT_NE(what.find("another lorank run is writing to this folder"), std::string::npos) << what;
  }
}

TEST(Runtime, DeviceListsAreCheckedAndNamed) {
  EXPECT_EQ(resolve_devices("cpu"), std::vector<torch::Device>{torch::kCPU});
  expect_error([] { resolve_devices("cpu,cpu"); }, "listed twice");
  expect_error([] { resolve_devices("cpu,"); }, "empty entry");
  expect_error([] { resolve_devices("gpu0"); }, "unknown device 'gpu0'");
  expect_error([] { resolve_device("cuda:x"); }, "unknown device 'cuda:x'");
  if (!torch::cuda::is_available()) {
    expect_error([] { resolve_devices("all"); }, "no CUDA device");
    expect_error([] { resolve_device("cuda:0"); }, "CUDA is not available");
  } else {
    expect_error([] { resolve_device("cuda:99"); }, "no such GPU");
  }
}

}  // namespace
}  // namespace lorank
