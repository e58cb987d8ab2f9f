// lorank recommend end to end on the embedded demo: configs written and readable by lorank's PEFT
// reader, byte-identical JSON for the same inputs, refusals that keep earlier results.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "lora.h"
#include "model/model_fixtures.h"

namespace {

using lorank::test::read_file;
using lorank::test::run_lorank;
using lorank::test::TempDir;

// The JSON document of an output that may begin with warnings (stderr comes first).
nlohmann::json json_after_warnings(const std::string& output) {
  const size_t at = output.rfind("warning:", 0) == 0 ? output.find("\n{") + 1 : 0;
  return nlohmann::json::parse(output.substr(at));
}

// A small sample keeps this quick; the decision is the same code at any size.
const std::string kArgs = "recommend --quiet --device cpu --max-tokens 3000 ";

TEST(RecommendCli, JsonIsByteIdenticalForTheSameInputs) {
  auto a = run_lorank(kArgs + "--json");
  auto b = run_lorank(kArgs + "--json");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  auto j = nlohmann::json::parse(a.output);
  const int64_t r = j["rank"];
  EXPECT_GE(r, 1);
  EXPECT_LE(r, 256);
  EXPECT_EQ(j["modules"].size(), 28u);
  EXPECT_EQ(j["data"]["examples"], 200);
  EXPECT_LE(j["data"]["probe_tokens"].get<int64_t>(), 3000 + 512);
  auto c = run_lorank(kArgs + "--json --seed 1");  // another sample: the JSON says so
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_NE(a.output, c.output);
  // ... and records how it was measured, to be derived again.
  const auto jc = nlohmann::json::parse(c.output);
  const auto args = jc["probe"]["args"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(args.begin(), args.end(), "--seed"), args.end()) << c.output;
  EXPECT_GE(jc["probe"]["threads"].get<int64_t>(), 1);
  EXPECT_EQ(jc["lorank_version"], "0.1.0");
}

// --sample alone probes the examples asked for: the default token cap (16k on CPU, 74 of the demo's
// examples) applies when neither is given.
TEST(RecommendCli, SampleAndLayersDoWhatTheHelpSays) {
  auto r = run_lorank("recommend --quiet --device cpu --json --sample 90");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["data"]["probe_examples"], 90);
  // --layers narrows the probe, not the configs: said, since the counts are the probed layers';
  // the evidence keeps the layers, so that deciding again says it too.
  TempDir dir("recommend-layers");
  r = run_lorank(kArgs + "--json --layers 0,1 --save-evidence " + dir.path + "/ev.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(nlohmann::json::parse(r.output)["warnings"].dump().find("--layers probed some layers"),
            std::string::npos)
      << r.output;
  auto again = run_lorank("recommend --quiet --json --evidence " + dir.path + "/ev.json");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output, r.output);
}

TEST(RecommendCli, WritesConfigsPeftReadsAndKeepsThem) {
  TempDir dir("recommend-out");
  const std::string out = dir.path + "/configs";
  auto r = run_lorank(kArgs + "--out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("recommended  r="), std::string::npos) << r.output;
  auto rec = nlohmann::json::parse(read_file(out + "/recommendation.json"));
  auto cfg = lorank::LoraAdapters::read_peft_config(out + "/adapter_config.json");
  EXPECT_EQ(cfg.r, rec["rank"].get<int64_t>());
  EXPECT_TRUE(cfg.rslora);
  for (const auto& m : rec["modules"]) {
    EXPECT_EQ(lorank::lora_rank_for(cfg, m["name"]), m["rank"].get<int64_t>()) << m["name"];
  }
  auto adapters = lorank::LoraAdapters::attach(lorank::test::tiny_llama(), cfg, 0);
  EXPECT_EQ(adapters->n_trainable(), rec["trainable_params"].get<int64_t>());
  adapters.reset();
  for (const char* f : {"axolotl.yaml", "torchtune.yaml", "llama_factory.yaml", "unsloth.py", "report.txt"}) {
    EXPECT_FALSE(read_file(out + "/" + f).empty()) << f;
  }
  auto files = [&] {
    std::map<std::string, std::string> all;
    for (const std::string& f : lorank::list_dir(out)) all[f] = read_file(out + "/" + f);
    return all;
  };
  const auto before = files();
  auto again = run_lorank(kArgs + "--seed 3 --out " + out);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("--force"), std::string::npos) << again.output;
  EXPECT_EQ(files(), before);  // nothing overwritten
  auto forced = run_lorank(kArgs + "--seed 3 --force --out " + out);
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
}

TEST(RecommendCli, FormatsAndBadOptions) {
  auto peft = run_lorank(kArgs + "--format peft");
  ASSERT_EQ(peft.exit_code, 0) << peft.output;
  auto j = nlohmann::json::parse(peft.output);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_TRUE(j["use_rslora"].get<bool>());
  auto factory = run_lorank(kArgs + "--format llama_factory");  // as its file is named
  ASSERT_EQ(factory.exit_code, 0) << factory.output;
  EXPECT_NE(factory.output.find("lora_rank:"), std::string::npos) << factory.output;
  auto bad = run_lorank(kArgs + "--format keras");
  EXPECT_EQ(bad.exit_code, 2);  // a command line wrong by itself, as CLI11's refusals
  EXPECT_NE(bad.output.find("keras"), std::string::npos) << bad.output;
  auto both = run_lorank(kArgs + "--format peft --json");  // one of them was silently ignored
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.output.find("--format: cannot be combined with --json"), std::string::npos)
      << both.output;
  EXPECT_NE(run_lorank(kArgs + "--max-rank 0").exit_code, 0);
  auto budget = run_lorank(kArgs + "--budget-params 5");
  EXPECT_NE(budget.exit_code, 0);
  EXPECT_NE(budget.output.find("--budget-params"), std::string::npos) << budget.output;
}

TEST(RecommendCli, SavedEvidenceGivesTheSameDecisionWithoutAProbe) {
  TempDir dir("recommend-evidence");
  const std::string ev = dir.path + "/evidence.json";
  auto probed = run_lorank(kArgs + "--json --save-evidence " + ev);
  ASSERT_EQ(probed.exit_code, 0) << probed.output;
  // No model or data needed, and another --data would be silently ignored, so it is refused.
  auto again = run_lorank("recommend --quiet --json --evidence " + ev);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output, probed.output);
  auto other = run_lorank("recommend --quiet --data other.jsonl --evidence " + ev);
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.output.find("--data: cannot be combined with --evidence"), std::string::npos)
      << other.output;
  for (const std::string probe_only : {"--seed 3", "--max-len 64", "--device cpu", "--shards 2"}) {
    auto ignored = run_lorank("recommend --quiet --evidence " + ev + " " + probe_only);
    EXPECT_NE(ignored.exit_code, 0) << probe_only;
    EXPECT_NE(ignored.output.find("cannot be combined with --evidence"), std::string::npos)
        << ignored.output;
  }
  // Other options re-decide from the same evidence: a cap lowers the rank and says so.
  auto capped = run_lorank("recommend --quiet --json --max-rank 1 --evidence " + ev);
  ASSERT_EQ(capped.exit_code, 0) << capped.output;
  auto j = nlohmann::json::parse(capped.output);
  EXPECT_EQ(j["rank"], 1);
  EXPECT_EQ(j["data"], nlohmann::json::parse(probed.output)["data"]);
  // A looser rule (one rank per direction instead of two) never asks for more.
  auto half = run_lorank("recommend --quiet --json --rank-scale 1 --evidence " + ev);
  ASSERT_EQ(half.exit_code, 0) << half.output;
  EXPECT_LE(nlohmann::json::parse(half.output)["rank"].get<int64_t>(),
            nlohmann::json::parse(probed.output)["rank"].get<int64_t>());
  // The evidence is kept like every other output, and --whitened needs whitened spectra.
  const std::string before = read_file(ev);
  auto refused = run_lorank(kArgs + "--seed 2 --save-evidence " + ev);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("--force"), std::string::npos) << refused.output;
  EXPECT_EQ(read_file(ev), before);
  auto whitened = run_lorank("recommend --quiet --whitened --evidence " + ev);
  EXPECT_NE(whitened.exit_code, 0);
  EXPECT_NE(whitened.output.find("--whitened"), std::string::npos) << whitened.output;
  auto missing = run_lorank("recommend --quiet --evidence " + dir.path + "/none.json");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("none.json"), std::string::npos) << missing.output;
}

// What reading the data warned about is in the JSON and the report, and kept in the evidence:
// stderr alone is lost when the output goes to a file.
TEST(RecommendCli, DataWarningsReachTheJsonAndTheEvidence) {
  TempDir dir("recommend-data-warnings");
  const std::string ev = dir.path + "/evidence.json";
  const std::string args = kArgs + "--chat-format chatml --data " +
                           lorank::test::repo_path("tests/assets/data/wordnet-gloss.jsonl");
  auto probed = run_lorank(args + " --json --save-evidence " + ev);
  ASSERT_EQ(probed.exit_code, 0) << probed.output;
  const nlohmann::json json = json_after_warnings(probed.output);
  const auto warnings = json["data"]["warnings"];
  ASSERT_EQ(warnings.size(), 1u) << probed.output;
  EXPECT_NE(warnings[0].get<std::string>().find("<|im_start|>"), std::string::npos) << warnings;
  auto again = run_lorank("recommend --quiet --json --evidence " + ev);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(nlohmann::json::parse(again.output), json);
  auto human = run_lorank("recommend --quiet --evidence " + ev);
  EXPECT_NE(human.output.find("warning: data: --chat-format chatml"), std::string::npos)
      << human.output;
  auto plain = run_lorank(kArgs + "--json");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_TRUE(nlohmann::json::parse(plain.output)["data"]["warnings"].empty());
}

// A trainer reads the configs from another folder, where "assets/tiny-llama" would be a Hub id.
TEST(RecommendCli, ConfigsNameTheModelByItsAbsolutePath) {
  const std::string args = kArgs + "--model assets/tiny-llama --format ";
  auto peft = lorank::test::run_command("cd " + lorank::test::repo_path("") + " && " +
                                        LORANK_BINARY + " " + args + "peft");
  ASSERT_EQ(peft.exit_code, 0) << peft.output;
  const std::string model = std::filesystem::path(lorank::test::repo_path("assets/tiny-llama"))
                                .lexically_normal()
                                .string();
  EXPECT_EQ(nlohmann::json::parse(peft.output)["base_model_name_or_path"], model);
}

// The report's "check it" line is a command that runs as printed: the probe's data options and
// targets carried over, and paths quoted for the shell.
TEST(RecommendCli, CheckCommandRunsAsPrinted) {
  TempDir dir("recommend-check");
  const std::string data = dir.path + "/it's my data.jsonl";
  lorank::test::write_file(data, read_file(lorank::test::repo_path("assets/demo.jsonl")));
  auto r = run_lorank(kArgs +
                      "--json --max-examples 40 --max-len 384 --targets q_proj,v_proj --data \"" +
                      data + "\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json rec = json_after_warnings(r.output);  // one example is cut at --max-len
  const std::string cmd = rec["check_command"];
  for (const std::string& part : std::vector<std::string>{
           "--max-examples 40", "--max-len 384", "--targets q_proj,v_proj", "--device cpu",
           "'" + dir.path + "/it'\\''s my data.jsonl'", "--alpha 8", " --out lorank-check"}) {
    EXPECT_NE(cmd.find(part), std::string::npos) << part << " in " << cmd;
  }
  // The program as invoked (here the test's path to the binary), so the command runs from here.
  ASSERT_EQ(cmd.rfind(std::string(LORANK_BINARY) + " sweep --model ", 0), 0u) << cmd;
  const std::string out = dir.path + "/check";
  std::string check = cmd;
  check.replace(check.find("--out lorank-check"), std::string("--out lorank-check").size(),
                "--out " + out);
  auto sweep = lorank::test::run_command(check + " --quiet --lrs 0.003 --max-steps 2");
  ASSERT_EQ(sweep.exit_code, 0) << check << "\n" << sweep.output;
  const std::string results = read_file(out + "/results.jsonl");
  EXPECT_EQ(std::count(results.begin(), results.end(), '\n'), int64_t(rec["check_ranks"].size()));
  // So is the train hint that --out prints; both carry the --device this run was given.
  const std::string configs = dir.path + "/configs";
  auto written = run_lorank(
      "recommend --device cpu --max-tokens 3000 --max-examples 40 --max-len 384 "
      "--targets q_proj,v_proj --data \"" +
      data + "\" --out " + configs);
  ASSERT_EQ(written.exit_code, 0) << written.output;
  const std::string mark = "train it: ";
  const size_t at = written.output.find(mark);
  ASSERT_NE(at, std::string::npos) << written.output;
  std::string train = written.output.substr(at + mark.size());
  train = train.substr(0, train.find('\n'));
  const std::string placeholder = "--out lorank-adapter";
  ASSERT_NE(train.find(placeholder), std::string::npos) << train;
  train.replace(train.find(placeholder), placeholder.size(), "--out " + dir.path + "/adapter");
  auto trained = lorank::test::run_command(train + " --quiet --max-steps 2");
  ASSERT_EQ(trained.exit_code, 0) << train << "\n" << trained.output;
  auto cfg = lorank::LoraAdapters::read_peft_config(dir.path + "/adapter/adapter_config.json");
  EXPECT_EQ(cfg.r, nlohmann::json::parse(read_file(configs + "/recommendation.json"))["rank"]);
}

}  // namespace
