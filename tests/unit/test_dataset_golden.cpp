// Dataset formatting against the bench reference (tools/make_golden.py: HF tokenizers +
// apply_chat_template on tiny-llama), token for token, and the bench tasks' own files.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "dataset.h"
#include "test_common.h"
#include "tokenizer.h"

namespace lorank {
namespace {

using json = nlohmann::json;

std::string tiny_llama_dir() {
  std::string in_repo = test::repo_path("assets/tiny-llama");
  if (std::filesystem::exists(in_repo + "/tokenizer.json")) return in_repo;
  return test::shared_path("models/tiny-llama");
}

TEST(DatasetGolden, EveryRecordMatchesTheReference) {
  std::string model = tiny_llama_dir();
  if (model.empty()) GTEST_SKIP() << "tiny-llama not found";
  std::unique_ptr<Tokenizer> tok = load_tokenizer(model);
  TokenizerConfig config = load_tokenizer_config(model, *tok);
  ChatFormat chat = detect_chat_format(config.chat_template, model + "/tokenizer_config.json");
  json golden = json::parse(test::read_file(test::asset("golden/dataset_golden.json")));
  const int64_t max_len = golden["max_len"].get<int64_t>();
  ASSERT_FALSE(golden["files"].empty());
  for (const auto& [name, ref] : golden["files"].items()) {
    std::string path = test::asset("data/" + name);
    std::vector<Record> records = read_records(path);
    ASSERT_EQ(records.size(), ref["ids"].size()) << name;
    Schema schema = detect_schema(records[0], path);
    int64_t n_with_target = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      Example ex = tokenize_example(format_record(records[i], schema, &chat, config, path), *tok, max_len);
      auto ids = ref["ids"][i].get<std::vector<int32_t>>();
      auto mask = ref["loss_mask"][i].get<std::vector<uint8_t>>();
      EXPECT_EQ(ex.ids, ids) << name << " record " << i;
      ASSERT_EQ(ex.loss_mask.size(), mask.size()) << name << " record " << i;
      mask[0] = 0;  // nothing predicts the first token; the reference's loss skips it too
      EXPECT_EQ(ex.loss_mask, mask) << name << " record " << i;
      if (ex.truncated) EXPECT_EQ(ex.ids.size(), static_cast<size_t>(max_len));
      for (size_t t = 1; t < mask.size(); ++t) {
        if (mask[t]) {
          ++n_with_target;
          break;
        }
      }
    }
    DatasetOptions opts;
    opts.max_len = max_len;
    Dataset d = load_dataset(path, *tok, config, opts);
    EXPECT_EQ(d.stats.n_examples, n_with_target) << name;
    EXPECT_EQ(d.stats.n_dropped_no_target, static_cast<int64_t>(records.size()) - n_with_target) << name;
  }
}

// Multi-turn conversations against the templates' own rendering (tools/make_multiturn_golden.py:
// transformers' apply_chat_template, HF tokenizers): --turns all cuts each reply where the template
// puts it; --turns whole is the template's text as one piece, every token supervised.
TEST(DatasetGolden, MultiTurnMatchesTheTemplatesRendering) {
  std::string model = tiny_llama_dir();
  if (model.empty()) GTEST_SKIP() << "tiny-llama not found";
  std::unique_ptr<Tokenizer> tok = load_tokenizer(model);
  TokenizerConfig config = load_tokenizer_config(model, *tok);
  json golden = json::parse(test::read_file(test::asset("golden/multiturn_golden.json")));
  const std::string path = test::asset("multiturn/conversations.jsonl");
  ASSERT_EQ(golden["formats"].size(), 4u);
  for (const auto& [format, ref] : golden["formats"].items()) {
    for (const auto& [turns, loss] :
         {std::pair{"all", TurnLoss::replies}, std::pair{"whole", TurnLoss::whole}}) {
      DatasetOptions opts;
      opts.chat_format = format;
      opts.turns = loss;
      Dataset d = load_dataset(path, *tok, config, opts);
      ASSERT_EQ(d.examples.size(), ref[turns].size()) << format << " " << turns;
      for (size_t i = 0; i < d.examples.size(); ++i) {
        auto ids = ref[turns][i]["ids"].get<std::vector<int32_t>>();
        auto mask = ref[turns][i]["loss_mask"].get<std::vector<uint8_t>>();
        mask[0] = 0;  // nothing predicts the first token
        EXPECT_EQ(d.examples[i].ids, ids) << format << " " << turns << " record " << i;
        EXPECT_EQ(d.examples[i].loss_mask, mask) << format << " " << turns << " record " << i;
      }
    }
  }
}

TEST(DatasetGolden, BenchTasksLoadWithTheirSchemas) {
  std::string model = tiny_llama_dir();
  std::string tasks = test::shared_path("bench/tasks");
  if (model.empty() || tasks.empty()) GTEST_SKIP() << "tiny-llama or bench/tasks not found";
  std::unique_ptr<Tokenizer> tok = load_tokenizer(model);
  TokenizerConfig config = load_tokenizer_config(model, *tok);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"spam", "alpaca"},         {"trec-qc", "prompt/completion"}, {"cmudict", "prompt/completion"},
      {"wordnet-gloss", "messages"}, {"gsm8k", "alpaca"},           {"debian-synopsis", "messages"}};
  for (const auto& [task, schema] : expected) {
    DatasetOptions opts;
    opts.max_examples = 300;
    Dataset d = load_dataset(tasks + "/" + task + "/train.jsonl", *tok, config, opts);
    EXPECT_EQ(d.stats.schema, schema) << task;
    EXPECT_EQ(d.stats.n_records, 300) << task;
    EXPECT_GT(d.stats.n_supervised, 300) << task;
    EXPECT_LE(d.stats.len_max, 512) << task;
    if (schema == "messages") EXPECT_EQ(d.stats.chat_format, "llama3") << task;
  }
}

}  // namespace
}  // namespace lorank
