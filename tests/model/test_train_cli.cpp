// The sweep's results folder and `lorank train` / `lorank sweep` from the command line, on
// tiny-llama.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.h"
#include "model.h"
#include "sweep.h"
#include "test_common.h"
#include "trainer.h"
#include "trainer_fixtures.h"

namespace fs = std::filesystem;

namespace lorank {
namespace {

using test::cmudict;
using test::tiny_sweep;
using test::trainer_model;

std::string tiny_dir() {
  return test::trainer_model_dir();
}

TEST(Sweep, WritesResultsAndResumesWithoutRedoingFinishedPairs) {
  SweepOutput out;
  out.dir = test::make_temp_dir("sweep");
  out.progress = false;
  TrainData data = cmudict();
  data.test = cmudict().val;
  std::vector<std::pair<int64_t, bool>> seen;
  auto note = [&](const SweepRun& r, bool cached) { seen.push_back({r.rank, cached}); };
  // A sweep killed after its first run looks like one that only had that run to do.
  SweepResult first = run_sweep(trainer_model(), data, tiny_sweep({1}), out, note);
  ASSERT_TRUE(first.complete);
  const std::string r1_summary = out.dir + "/runs/r1-lr0.003/" + kSummaryFile;
  auto r1_time = fs::last_write_time(r1_summary);
  EXPECT_THROW(run_sweep(trainer_model(), data, tiny_sweep({1, 2}), out, note),
               Error);  // no --resume
  out.resume = true;
  seen.clear();
  SweepResult second = run_sweep(trainer_model(), data, tiny_sweep({1, 2}), out, note);
  ASSERT_TRUE(second.complete);
  EXPECT_EQ(seen, (std::vector<std::pair<int64_t, bool>>{{1, true}, {2, false}}));
  EXPECT_EQ(fs::last_write_time(r1_summary), r1_time);
  std::ifstream in(out.dir + "/" + kResultsFile);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  EXPECT_EQ(lines, 2);
  EXPECT_EQ(second.summary.metric, "test");
  ASSERT_EQ(second.summary.per_rank.size(), 2u);
  EXPECT_GT(second.summary.per_rank[1].n_trainable, second.summary.per_rank[0].n_trainable);
  EXPECT_TRUE(fs::exists(out.dir + "/sweep.json"));
  EXPECT_NE(test::read_file(out.dir + "/loss_vs_rank.svg").find("<svg"), std::string::npos);
  // Other settings may not be mixed into the same results.
  SweepOptions other = tiny_sweep({1, 2});
  other.train.batch = 8;
  EXPECT_THROW(run_sweep(trainer_model(), data, other, out, note), Error);
}

TEST(Sweep, ResultLineCutShortByAKillIsDropped) {
  SweepOutput out;
  out.dir = test::make_temp_dir("sweep-cut");
  out.progress = false;
  ASSERT_TRUE(run_sweep(trainer_model(), cmudict(), tiny_sweep({1}), out).complete);
  const std::string path = out.dir + "/" + kResultsFile;
  const std::string first = test::read_file(path);
  test::write_file(path, first + "{\"rank\": 2, \"lr\"");  // killed mid-append
  out.resume = true;
  ASSERT_TRUE(run_sweep(trainer_model(), cmudict(), tiny_sweep({1, 2}), out).complete);
  const std::string now = test::read_file(path);
  EXPECT_EQ(now.substr(0, first.size()), first);
  std::istringstream lines(now.substr(first.size()));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    EXPECT_EQ(nlohmann::json::parse(line)["rank"], 2) << now;
    ++n;
  }
  EXPECT_EQ(n, 1) << now;
}

TEST(Sweep, HalfFinishedRunContinuesFromItsCheckpoint) {
  SweepOutput out;
  out.dir = test::make_temp_dir("sweep-half");
  out.progress = false;
  SweepOptions opts = tiny_sweep({2});
  opts.train.stop_after = 2;  // as if killed after step 2
  SweepResult stopped = run_sweep(trainer_model(), cmudict(), opts, out);
  EXPECT_FALSE(stopped.complete);
  EXPECT_TRUE(fs::exists(out.dir + "/runs/r2-lr0.003/" + kCheckpointFile));
  opts.train.stop_after = 0;
  out.resume = true;
  SweepResult done = run_sweep(trainer_model(), cmudict(), opts, out);
  ASSERT_TRUE(done.complete);
  ASSERT_EQ(done.runs.size(), 1u);
  EXPECT_EQ(done.runs[0].steps, 3);
}

std::string cli_model_data() {
  return "--model " + tiny_dir() + " --data " + test::asset("data/cmudict.jsonl") + " -q";
}

TEST(TrainCli, SaysWhenTheValidationFileIsTheTrainingFile) {
  const std::string dir = test::make_temp_dir("cli-train-val") + "/out";
  auto r =
      test::run_lorank("train " + cli_model_data() + " --val " + test::asset("data/cmudict.jsonl") +
                       " --r 2 --batch 4 --max-steps 1 --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: --val " + test::asset("data/cmudict.jsonl") +
                          " is the training file"),
            std::string::npos)
      << r.output;
}

// tiny-llama's k_proj maps 256 to 128 features: above r=128 it gains parameters, not capacity.
TEST(TrainCli, SaysWhenTheRankIsAboveAModulesFullRank) {
  const std::string dir = test::make_temp_dir("cli-train-full-rank") + "/out";
  const std::string args = "train " + cli_model_data() +
                           " --targets q_proj,k_proj --batch 4 --max-steps 1 --n-evals 1 --out ";
  auto r = test::run_lorank(args + dir + " --r 200");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: r=200 is above min(d_in, d_out) of 4 of the 8 target modules "
                          "(k_proj 128)"),
            std::string::npos)
      << r.output;
  r = test::run_lorank(args + dir + "2 --r 128");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("min(d_in, d_out)"), std::string::npos) << r.output;
  // A sweep with trainings in other processes passes on theirs, once each.
  r = test::run_lorank("sweep " + cli_model_data() +
                       " --targets q_proj,k_proj --batch 4 --max-steps 1 --n-evals 1 --ranks 4,200 "
                       "--lrs 1e-3 --jobs 2 --out " +
                       dir + "3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string warning = "warning: r=200 is above min(d_in, d_out) of 4 of the 8";
  ASSERT_NE(r.output.find(warning), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(warning, r.output.find(warning) + 1), std::string::npos) << r.output;
}

// --n-evals 0 with held-out data evaluates once, at the end: the run keeps and writes an adapter.
// A --max-steps that stops the run before its epochs, and PEFT's alpha = 2r habit under rsLoRA,
// are said.
TEST(TrainCli, NoEvaluationsKeepTheLastAdapterAndCapsAreSaid) {
  const std::string dir = test::make_temp_dir("cli-train-no-evals") + "/out";
  auto r = test::run_lorank("train --model " + tiny_dir() + " --data " +
                            test::asset("data/cmudict.jsonl") +
                            " --r 4 --alpha 16 --batch 4 --max-steps 2 --n-evals 0 --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("best       step 2, validation loss"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/adapter_model.safetensors"));
  EXPECT_NE(r.output.find("--max-steps 2 stops the run at 0.25 of 5 epochs"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("warning: --alpha 16 with rsLoRA (the default) scales the adapter by "
                          "alpha/sqrt(r) = 8 at r=4; PEFT's alpha/r would be 4"),
            std::string::npos)
      << r.output;
  r = test::run_lorank("train " + cli_model_data() +
                       " --r 4 --alpha 16 --rslora --batch 4 --max-steps 1 --out " + dir + "2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("with rsLoRA"), std::string::npos) << r.output;
}

TEST(TrainCli, TrainsRefusesAndResumes) {
  const std::string dir = test::make_temp_dir("cli-train") + "/out";
  const std::string args = "train " + cli_model_data() +
                           " --r 2 --lr 1e-3 --batch 4 --max-steps 3 --val-fraction 0.25 --out " +
                           dir;
  auto r = test::run_lorank(args + " --stop-after 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
  r = test::run_lorank(args);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("already holds the results"), std::string::npos) << r.output;
  // --stop-after counts the steps of each call: resumed at step 1 with --stop-after 2, the run
  // trains its last two steps (counted from the start, it would stop at step 2).
  r = test::run_lorank(args + " --stop-after 2 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("steps      3 of 3 (resumed)"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("stopped at step"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/adapter_config.json"));
  EXPECT_TRUE(fs::exists(dir + "/adapter_model.safetensors"));
  r = test::run_lorank(args + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("3 of 3 (finished before: nothing left to resume)"), std::string::npos)
      << r.output;
  // What a changed option asks of a finished run would be ignored: refused, as for a checkpoint.
  r = test::run_lorank(args + " --resume --seed 7");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("this finished run was trained with other settings or data"),
            std::string::npos)
      << r.output;
  r = test::run_lorank(args + " --force --grad-accum 3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--grad-accum"), std::string::npos) << r.output;
  r = test::run_lorank(args + " --force --rank-pattern q_proj");
  EXPECT_EQ(r.exit_code, 2);  // the command line alone is wrong
  EXPECT_NE(r.output.find("key=value"), std::string::npos) << r.output;
}

// recommend's adapter_config.json names its model: without --model, train would adapt the built-in
// demo and name the demo in the adapter; refused, with the --model to pass. The demo's own passes.
TEST(TrainCli, AdapterConfigWithoutModelIsRefused) {
  const std::string rec = test::make_temp_dir("cli-adapter-base");
  test::write_file(rec + "/adapter_config.json", R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
    "target_modules": ["q_proj"], "base_model_name_or_path": "/models/small-llama"})");
  const std::string args = "train --data " + test::asset("data/cmudict.jsonl") +
                           " -q --batch 4 --max-steps 1 --adapter-config " + rec + " --out ";
  auto r = test::run_lorank(args + rec + "/out");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("names a base model, but no --model was given"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("hint: pass --model /models/small-llama"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(rec + "/out"));
  test::write_file(rec + "/adapter_config.json", R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
    "target_modules": ["q_proj"], "base_model_name_or_path": ")" +
                                                     test::repo_path("assets/tiny-llama") + "\"}");
  r = test::run_lorank(args + rec + "/demo");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// lora_alpha 0 scales the update to nothing: every gradient was 0 and the run "finished".
TEST(TrainCli, AdapterConfigAlphaMustBePositive) {
  const std::string rec = test::make_temp_dir("cli-adapter-alpha");
  const std::string args = "train --data " + test::asset("data/cmudict.jsonl") +
                           " -q --batch 4 --max-steps 1 --adapter-config " + rec + " --out ";
  for (const char* alpha : {"0", "-8"}) {
    test::write_file(
        rec + "/adapter_config.json",
        std::string(
            R"({"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "lora_alpha": )") +
            alpha + "}");
    auto r = test::run_lorank(args + rec + "/out");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("adapter_config.json: lora_alpha must be positive (expected > 0, got " +
                            std::string(alpha) + ")"),
              std::string::npos)
        << r.output;
  }
  test::write_file(rec + "/adapter_config.json", R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
    "target_modules": ["q_proj"], "alpha_pattern": {"q_proj": 0}})");
  auto r = test::run_lorank(args + rec + "/out");
  EXPECT_NE(r.output.find("[alpha_pattern.q_proj]: alpha must be positive"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(rec + "/out/adapter_model.safetensors"));
}

TEST(TrainCli, AdapterConfigGivesTheLoraSettingsAndNoFlagMayRepeatThem) {
  // What `recommend --out DIR` leaves in DIR: PEFT's adapter_config.json with a rank_pattern.
  const std::string rec = test::make_temp_dir("cli-adapter-config");
  test::write_file(rec + "/adapter_config.json", R"({"peft_type": "LORA", "r": 4,
    "lora_alpha": 8, "use_rslora": true, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
    "rank_pattern": {"model.layers.1.self_attn.v_proj": 2}, "alpha_pattern": {"q_proj": 16}})");
  const std::string args =
      "train " + cli_model_data() + " --batch 4 --max-steps 2 --val-fraction 0.25";
  const std::string out = rec + "/out";
  auto r = test::run_lorank(args + " --adapter-config " + rec + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto got = nlohmann::json::parse(test::read_file(out + "/adapter_config.json"));
  EXPECT_EQ(got["r"], 4);
  EXPECT_EQ(got["lora_alpha"], 8);
  EXPECT_EQ(got["use_rslora"], true);
  EXPECT_EQ(got["target_modules"], nlohmann::json({"q_proj", "v_proj"}));
  EXPECT_EQ(got["rank_pattern"], nlohmann::json({{"model.layers.1.self_attn.v_proj", 2}}));
  EXPECT_EQ(got["alpha_pattern"], nlohmann::json({{"q_proj", 16}}));
  r = test::run_lorank(args + " --adapter-config " + rec + " --r 8 --force --out " + out);
  EXPECT_EQ(r.exit_code, 2);  // the command line alone is wrong
  EXPECT_NE(r.output.find("--rank: conflicts with --adapter-config"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(rec + "/adapter_config.json"), std::string::npos) << r.output;
  r = test::run_lorank(args + " --adapter-config " + rec + "/none.json --force --out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--adapter-config: not found"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("recommend --out DIR"), std::string::npos) << r.output;
}

TEST(TrainCli, SweepPrintsTheTableAndMarksTheAdequateRank) {
  const std::string dir = test::make_temp_dir("cli-sweep") + "/out";
  auto r = test::run_lorank("sweep " + cli_model_data() +
                            " --ranks 1,4 --lrs 3e-3 --batch 4 --jobs 2 --alpha 12 "
                            "--max-steps 2 --n-evals 1 --val-fraction 0.25 --out " +
                            dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("minimal adequate rank"), std::string::npos) << r.output;
  // PEFT's alpha habit is said by the sweep too, at its largest rank.
  EXPECT_NE(r.output.find("warning: --alpha 12 with rsLoRA (the default) scales the adapter by "
                          "alpha/sqrt(r) = 6 at r=4; PEFT's alpha/r would be 3"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(dir + "/results.jsonl"));
  EXPECT_TRUE(fs::exists(dir + "/sweep.json"));
  EXPECT_TRUE(fs::exists(dir + "/loss_vs_rank.svg"));
}

}  // namespace
}  // namespace lorank
