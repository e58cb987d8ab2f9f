// lorank recommend end to end on the embedded demo: configs written and readable by lorank's PEFT
// reader, byte-identical JSON for the same inputs, refusals that keep earlier results.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "lora.h"
#include "model/model_fixtures.h"

namespace {

using lorank::test::read_file;
using lorank::test::run_lorank;
using lorank::test::TempDir;

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
  auto bad = run_lorank(kArgs + "--format keras");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("keras"), std::string::npos) << bad.output;
  EXPECT_NE(run_lorank(kArgs + "--max-rank 0").exit_code, 0);
  auto budget = run_lorank(kArgs + "--budget-params 5");
  EXPECT_NE(budget.exit_code, 0);
  EXPECT_NE(budget.output.find("--budget-params"), std::string::npos) << budget.output;
}

}  // namespace
