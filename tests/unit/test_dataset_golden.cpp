// Dataset formatting against the bench reference (tools/make_golden.py: HF tokenizers +
// apply_chat_template on tiny-llama), token for token, and the bench tasks' own files.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "chat_template.h"
#include "dataset.h"
#include "records.h"
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

// Every record of tests/assets/multiturn/conversations.jsonl in each format and --turns mode the
// golden holds, ids and loss masks equal.
void expect_multiturn_golden(const Tokenizer& tok, const TokenizerConfig& config,
                             const json& formats) {
  const std::string path = test::asset("multiturn/conversations.jsonl");
  for (const auto& [format, ref] : formats.items()) {
    for (const auto& [turns, expected] : ref.items()) {
      DatasetOptions opts;
      opts.chat_format = format;
      opts.turns = turns == "whole" ? TurnLoss::whole : TurnLoss::replies;
      Dataset d = load_dataset(path, tok, config, opts);
      ASSERT_EQ(d.examples.size(), expected.size()) << format << " " << turns;
      for (size_t i = 0; i < d.examples.size(); ++i) {
        auto ids = expected[i]["ids"].get<std::vector<int32_t>>();
        auto mask = expected[i]["loss_mask"].get<std::vector<uint8_t>>();
        mask[0] = 0;  // nothing predicts the first token
        EXPECT_EQ(d.examples[i].ids, ids) << format << " " << turns << " record " << i;
        EXPECT_EQ(d.examples[i].loss_mask, mask) << format << " " << turns << " record " << i;
      }
    }
  }
}

// Multi-turn conversations against the templates' own rendering (tools/make_multiturn_golden.py:
// transformers' apply_chat_template, HF tokenizers): --turns all cuts each reply where the template
// puts it; --turns whole is the template's text as one piece, every token supervised. Mistral v3
// and Qwen3 (whole only: their prefixes do not extend each other) from their published templates.
TEST(DatasetGolden, MultiTurnMatchesTheTemplatesRendering) {
  std::string model = tiny_llama_dir();
  if (model.empty()) GTEST_SKIP() << "tiny-llama not found";
  std::unique_ptr<Tokenizer> tok = load_tokenizer(model);
  TokenizerConfig config = load_tokenizer_config(model, *tok);
  json golden = json::parse(test::read_file(test::asset("golden/multiturn_golden.json")));
  ASSERT_EQ(golden["formats"].size(), 6u);
  expect_multiturn_golden(*tok, config, golden["formats"]);
}

// The same with Llama 2's SentencePiece-style tokenizer.json, where a piece tokenized alone and the
// same text inside the conversation can differ: the reference is one tokenization of the whole
// text, a token supervised when its characters overlap a reply or the " " before it. (It found a
// reply starting with spaces losing the " " before it: this tokenizer writes no dummy prefix
// before a text that starts with one.)
TEST(DatasetGolden, MultiTurnWithSentencePieceMatchesTheTemplatesRendering) {
  std::string dir = test::shared_path("tokenizers/llama2");
  if (dir.empty()) GTEST_SKIP() << "../shared/tokenizers/llama2 not available";
  json golden = json::parse(test::read_file(test::asset("golden/multiturn_golden.json")));
  ASSERT_TRUE(golden.contains("spm")) << "regenerate with tools/make_multiturn_golden.py --spm";
  std::unique_ptr<Tokenizer> tok = load_tokenizer(dir);
  TokenizerConfig config;
  config.bos_token = golden["spm"]["bos_token"].get<std::string>();
  config.eos_token = golden["spm"]["eos_token"].get<std::string>();
  config.bos_id = tok->token_to_id(config.bos_token);
  config.eos_id = tok->token_to_id(config.eos_token);
  ASSERT_EQ(golden["spm"]["formats"].size(), 3u);
  expect_multiturn_golden(*tok, config, golden["spm"]["formats"]);
}

// With a SentencePiece-style tokenizer (Llama 2's tokenizer.json), a context right after a reply's
// "</s>" gets no dummy prefix in one tokenization of the conversation ("[" after "</s>", not
// "▁["): the pieces give the tokens of the whole text (the " " before a reply is the tokenizer's).
TEST(DatasetGolden, ContextAfterAReplyTokenizesAsTheWholeConversation) {
  std::string dir = test::shared_path("tokenizers/llama2");
  if (dir.empty()) GTEST_SKIP() << "../shared/tokenizers/llama2 not available";
  std::unique_ptr<Tokenizer> tok = load_tokenizer(dir);
  TokenizerConfig config;
  config.bos_token = "<s>";
  config.eos_token = "</s>";
  config.bos_id = 1;
  config.eos_id = 2;
  const std::string path = test::make_temp_dir("multiturn-spm") + "/d.jsonl";
  test::write_file(
      path,
      R"({"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "Four."}, {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "Six."}]})"
      "\n");
  // The difference the continuation makes: alone, "[INST]" gets the dummy prefix.
  EXPECT_NE(tok->encode("[INST] x").front(), tok->encode("</s>[INST] x").at(1));
  const std::vector<Record> records = read_records(path);
  for (const std::string name : {"mistral-v3", "mistral-v0.1", "mistral-v1", "llama2"}) {
    const ChatFormat chat = chat_format_by_name(name);
    Example ex =
        tokenize_example(format_record(records[0], Schema::messages, &chat, config, path), *tok, 0);
    const std::string whole = render_chat_text(chat,
                                               {{"user", "What is 2+2?"},
                                                {"assistant", "Four."},
                                                {"user", "And 3+3?"},
                                                {"assistant", "Six."}},
                                               "<s>", "</s>", path);
    if (name == "mistral-v0.1") {  // no " " before a reply: alone, a reply gets the dummy prefix
      EXPECT_NE(ex.ids, tok->encode(whole)) << name;
      continue;
    }
    EXPECT_EQ(ex.ids, tok->encode(whole)) << name << ": " << whole;
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
