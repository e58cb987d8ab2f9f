// Dataset reading, schema detection, formatting (bench/README.md rules), stats, split, shards and
// batches, with a byte-level fake tokenizer whose ids are easy to predict.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "dataset.h"
#include "error.h"
#include "test_common.h"

namespace lorank {
namespace {

using test::error_of;

// One id per byte; the Llama 3 special tokens written in the text become ids 1000..1005.
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < text.size();) {
      bool special = false;
      for (const auto& [tok, id] : specials_) {
        if (text.compare(i, tok.size(), tok) == 0) {
          ids.push_back(id);
          i += tok.size();
          special = true;
          break;
        }
      }
      if (!special) ids.push_back(static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  std::vector<int32_t> encode_with_special(const std::string& text) const override {
    std::vector<int32_t> ids = encode(text);
    ids.insert(ids.begin(), 1000);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) out += id < 256 ? std::string(1, static_cast<char>(id)) : id_to_token(id);
    return out;
  }
  int32_t vocab_size() const override { return 1006; }
  std::optional<int32_t> token_to_id(const std::string& token) const override {
    for (const auto& [tok, id] : specials_) {
      if (tok == token) return id;
    }
    return std::nullopt;
  }
  std::string id_to_token(int32_t id) const override {
    for (const auto& [tok, tid] : specials_) {
      if (tid == id) return tok;
    }
    return std::string(1, static_cast<char>(id));
  }
  std::string kind() const override { return "bytes (test)"; }

 private:
  std::vector<std::pair<std::string, int32_t>> specials_ = {
      {"<|begin_of_text|>", 1000}, {"<|end_of_text|>", 1001}, {"<|start_header_id|>", 1002},
      {"<|end_header_id|>", 1003}, {"<|eot_id|>", 1004},      {"<|pad|>", 1005}};
};

const int32_t k_bos = 1000, k_eos = 1001, k_eot = 1004;

TokenizerConfig llama3_config() {
  TokenizerConfig c;
  c.bos_token = "<|begin_of_text|>";
  c.eos_token = "<|end_of_text|>";
  c.pad_token = "<|pad|>";
  c.bos_id = k_bos;
  c.eos_id = k_eos;
  c.pad_id = 1005;
  c.chat_template =
      "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
      "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if "
      "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
  return c;
}

std::vector<int32_t> bytes(const std::string& s) {
  return std::vector<int32_t>(s.begin(), s.end());
}

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Expected mask: 0 over the first n_prompt tokens, 1 after.
std::vector<uint8_t> mask(size_t n_prompt, size_t n_total) {
  std::vector<uint8_t> m(n_total, 0);
  for (size_t i = n_prompt; i < n_total; ++i) m[i] = 1;
  return m;
}

class DatasetTest : public ::testing::Test {
 protected:
  std::string dir = test::make_temp_dir("dataset");
  ByteTokenizer tok;
  TokenizerConfig config = llama3_config();

  std::string write(const std::string& name, const std::string& bytes) {
    std::string path = dir + "/" + name;
    test::write_file(path, bytes);
    return path;
  }
  Dataset load(const std::string& path, DatasetOptions opts = {}) {
    return load_dataset(path, tok, config, opts);
  }
};

TEST_F(DatasetTest, DetectsEachSchema) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"text": "hello"})", "text"},
      {R"({"prompt": "p", "completion": "c"})", "prompt/completion"},
      {R"({"instruction": "i", "input": "", "output": "o"})", "alpaca"},
      {R"({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]})",
       "messages"}};
  for (const auto& [line, name] : cases) {
    Dataset d = load(write("d.jsonl", line + "\n"));
    EXPECT_EQ(d.stats.schema, name);
    EXPECT_EQ(d.stats.chat_format, name == "messages" ? "llama3" : "");
    EXPECT_TRUE(d.stats.warnings.empty());
  }
  std::string err = error_of([&] { load(write("u.jsonl", R"({"question": "q", "answer": "a"})")); });
  EXPECT_NE(err.find("u.jsonl:1"), std::string::npos) << err;
  // One object around the records gets the command that takes them out.
  const std::string wrapped =
      error_of([&] { load(write("w.json", R"({"data": [{"text": "a"}]})")); });
  EXPECT_NE(wrapped.find("a list under \"data\""), std::string::npos) << wrapped;
  EXPECT_NE(wrapped.find("jq '.data'"), std::string::npos) << wrapped;
  // A ';'-separated CSV reads as one column whose name holds the separators.
  const std::string semi = error_of([&] { load(write("s.csv", "prompt;completion\na;b\n")); });
  EXPECT_NE(semi.find("s.csv:1"), std::string::npos) << semi;
  EXPECT_NE(semi.find("holding ';' or tabs"), std::string::npos) << semi;
  EXPECT_NE(semi.find("sep=None"), std::string::npos) << semi;
  EXPECT_NE(err.find(R"(keys "question", "answer")"), std::string::npos) << err;  // in file order
  // Keys that read as a prompt and a completion get the --fields that reads them so.
  EXPECT_NE(err.find("--fields prompt=question,completion=answer"), std::string::npos) << err;
  const std::string odd = error_of([&] { load(write("o.jsonl", R"({"foo": "x", "bar": "y"})")); });
  EXPECT_NE(odd.find("--schema"), std::string::npos) << odd;
  EXPECT_NE(odd.find("--fields"), std::string::npos) << odd;
}

// A file whose columns have other names reads, under --fields, exactly as the same records under
// lorank's names: the same ids and mask, the same schema; a record without a mapped column fails
// naming its line.
TEST_F(DatasetTest, FieldsReadOtherColumnNames) {
  DatasetOptions mapped;
  mapped.fields = {{"prompt", "question"}, {"completion", "answer"}};
  const Dataset want = load(write("pc.jsonl",
                                  "{\"prompt\": \"2+2?\", \"completion\": \"4\"}\n"
                                  "{\"prompt\": \"3+3?\", \"completion\": \"6\"}\n"));
  for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"qa.jsonl",
            "{\"question\": \"2+2?\", \"answer\": \"4\", \"id\": 1}\n"
            "{\"id\": 2, \"answer\": \"6\", \"question\": \"3+3?\"}\n"},
           {"qa.csv", "id,question,answer\n1,2+2?,4\n2,3+3?,6\n"}}) {
    const Dataset got = load(write(name, text), mapped);
    EXPECT_EQ(got.stats.schema, "prompt/completion") << name;
    EXPECT_EQ(got.stats.fields, mapped.fields) << name;
    ASSERT_EQ(got.examples.size(), want.examples.size()) << name;
    for (size_t i = 0; i < got.examples.size(); ++i) {
      EXPECT_EQ(got.examples[i].ids, want.examples[i].ids) << name << " " << i;
      EXPECT_EQ(got.examples[i].loss_mask, want.examples[i].loss_mask) << name << " " << i;
    }
  }
  // Alpaca's optional input may be missing from a record; a required column may not.
  DatasetOptions dolly;
  dolly.fields = {{"output", "response"}, {"input", "context"}};
  const Dataset d = load(write("dolly.jsonl",
                               "{\"instruction\": \"i\", \"context\": \"c\", "
                               "\"response\": \"r\"}\n{\"instruction\": \"j\", "
                               "\"response\": \"s\"}\n"),
                         dolly);
  EXPECT_EQ(d.stats.schema, "alpaca");
  EXPECT_EQ(d.examples.size(), 2u);
  const std::string err = error_of([&] {
    load(write("gap.jsonl",
               "{\"question\": \"q\", \"answer\": \"a\"}\n{\"q\": \"q\", "
               "\"answer\": \"a\"}\n"),
         mapped);
  });
  EXPECT_NE(err.find("gap.jsonl:2"), std::string::npos) << err;
  EXPECT_NE(err.find("no column \"question\""), std::string::npos) << err;
}

TEST_F(DatasetTest, RecordNotFittingSchemaNamesLineAndKeys) {
  std::string path = write("d.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n"
                                      "{\"prompt\": \"a\", \"answer\": \"b\"}\n");
  std::string err = error_of([&] { load(path); });
  EXPECT_NE(err.find("d.jsonl:3"), std::string::npos) << err;
  EXPECT_NE(err.find(R"(expected keys "prompt", "completion", got keys "prompt", "answer")"),
            std::string::npos)
      << err;
  DatasetOptions forced;
  forced.schema = Schema::alpaca;
  err = error_of([&] { load(path, forced); });
  EXPECT_NE(err.find("d.jsonl:1"), std::string::npos) << err;
  EXPECT_NE(err.find("alpaca schema"), std::string::npos) << err;
  err = error_of([&] { load(write("t.jsonl", R"({"prompt": "a", "completion": 3})")); });
  EXPECT_NE(err.find("t.jsonl:1"), std::string::npos) << err;
  EXPECT_NE(err.find("\"completion\" must be a string"), std::string::npos) << err;
}

TEST_F(DatasetTest, PromptCompletionIdsAndMask) {
  Dataset d = load(write("d.jsonl", R"({"prompt": "Q: x\n", "completion": " y"})"));
  ASSERT_EQ(d.examples.size(), 1u);
  const Example& ex = d.examples[0];
  EXPECT_EQ(ex.ids, cat({{k_bos}, bytes("Q: x\n"), bytes(" y"), {k_eos}}));
  EXPECT_EQ(ex.loss_mask, mask(6, 9));
  EXPECT_EQ(ex.source_line, 1);
  EXPECT_FALSE(ex.truncated);
  EXPECT_EQ(d.stats.n_supervised, 3);
}

TEST_F(DatasetTest, ManyRecordsKeepFileOrderAndTheFirstBadOneIsNamed) {
  // Thousands of records go to several threads in chunks; results and errors stay in file order.
  const auto record = [](int i, bool empty) {
    return "{\"prompt\": \"p" + std::to_string(i) + "\", \"completion\": \"" +
           (empty ? "" : "c" + std::to_string(i)) + "\"}\n";
  };
  std::string good, bad;
  for (int i = 1; i <= 3000; ++i) {
    good += record(i, false);
    bad += record(i, i == 1700 || i == 2600);
  }
  Dataset d = load(write("good.jsonl", good));
  ASSERT_EQ(d.examples.size(), 3000u);
  DatasetOptions one_thread, five_threads;
  one_thread.threads = 1;
  five_threads.threads = 5;
  Dataset d1 = load(write("good.jsonl", good), one_thread);
  Dataset d5 = load(write("good.jsonl", good), five_threads);
  for (size_t i = 0; i < d.examples.size(); ++i) {
    ASSERT_EQ(d1.examples[i].ids, d.examples[i].ids) << i;
    ASSERT_EQ(d5.examples[i].ids, d.examples[i].ids) << i;
  }
  for (int i = 1; i <= 3000; i += 7) {
    const Example& ex = d.examples[size_t(i - 1)];
    const std::string n = std::to_string(i);
    EXPECT_EQ(ex.ids, cat({{k_bos}, bytes("p" + n), bytes("c" + n), {k_eos}})) << i;
    EXPECT_EQ(ex.source_line, i);
  }
  const std::string path = write("bad.jsonl", bad);
  std::string err = error_of([&] { load(path); });
  EXPECT_NE(err.find("bad.jsonl:1700"), std::string::npos) << err;
  DatasetOptions skip;
  skip.skip_empty_completions = true;
  Dataset s = load(path, skip);
  EXPECT_EQ(s.stats.n_skipped_empty, 2);
  ASSERT_EQ(s.examples.size(), 2998u);
  EXPECT_EQ(s.examples[1699].source_line, 1701);
}

// JSONL is read 16,384 records at a time: the parts must join without a seam.
TEST_F(DatasetTest, RecordsAcrossThePartsOfALargeFileJoinWithoutASeam) {
  const int n = 16384 + 40;
  std::string text = "\xEF\xBB\xBF";  // a byte-order mark, stripped once
  for (int i = 1; i <= n; ++i) {
    text += "{\"prompt\": \"p\", \"completion\": \"" + std::to_string(i % 10) + "\"}\n";
    if (i == 16384) text += "\n";  // a blank line at the seam still counts as a line
  }
  const std::string path = write("large.jsonl", text);
  Dataset d = load(path);
  ASSERT_EQ(d.examples.size(), size_t(n));
  EXPECT_EQ(d.stats.n_records, n);
  EXPECT_EQ(d.examples[16383].source_line, 16384);
  EXPECT_EQ(d.examples[16384].source_line, 16386);
  EXPECT_EQ(d.examples[16384].ids, cat({{k_bos}, bytes("p"), bytes("5"), {k_eos}}));
  DatasetOptions first;
  first.max_examples = 16390;
  EXPECT_EQ(load(path, first).examples.size(), 16390u);
  text += "{\"prompt\": \"p\"}\n";
  std::string err = error_of([&] { load(write("large.jsonl", text)); });
  EXPECT_NE(err.find("large.jsonl:" + std::to_string(n + 2)), std::string::npos) << err;
}

TEST_F(DatasetTest, TextSchemaSupervisesEverythingAfterBos) {
  Dataset d = load(write("d.jsonl", R"({"text": "abc"})"));
  EXPECT_EQ(d.examples[0].ids, cat({{k_bos}, bytes("abc"), {k_eos}}));
  EXPECT_EQ(d.examples[0].loss_mask, mask(1, 5));
}

TEST_F(DatasetTest, WithoutBosNothingPredictsTheFirstToken) {
  config.bos_token.clear();
  config.bos_id.reset();
  Dataset d = load(write("d.jsonl", R"({"text": "abc"})"));
  EXPECT_EQ(d.examples[0].ids, cat({bytes("abc"), {k_eos}}));
  EXPECT_EQ(d.examples[0].loss_mask, mask(1, 4));
  config.eos_token.clear();
  std::string err = error_of([&] { load(write("e.jsonl", R"({"text": "abc"})")); });
  EXPECT_NE(err.find("tokenizer_config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("eos_token"), std::string::npos) << err;
}

TEST_F(DatasetTest, AlpacaPromptTextExactlyAsReadme) {
  Record with{nlohmann::json{{"instruction", "Add."}, {"input", "2 2"}, {"output", "4"}}, 1};
  FormattedText t = format_record(with, Schema::alpaca, nullptr, config, "a.jsonl");
  EXPECT_EQ(t.prompt,
            "<|begin_of_text|>Below is an instruction that describes a task, paired with an input that provides further "
            "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
            "Add.\n\n### Input:\n2 2\n\n### Response:\n");
  EXPECT_EQ(t.completion, "4<|end_of_text|>");
  Record without{nlohmann::json{{"instruction", "Say hi."}, {"input", ""}, {"output", "hi"}}, 2};
  t = format_record(without, Schema::alpaca, nullptr, config, "a.jsonl");
  EXPECT_EQ(t.prompt,
            "<|begin_of_text|>Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n");
  Dataset d = load(write("a.jsonl", with.fields.dump() + "\n"));
  FormattedText again = format_record(with, Schema::alpaca, nullptr, config, "a.jsonl");
  EXPECT_EQ(d.examples[0].ids, cat({tok.encode(again.prompt), bytes("4"), {k_eos}}));
  EXPECT_EQ(d.examples[0].ids[0], k_bos);
}

TEST_F(DatasetTest, MessagesWithAndWithoutSystemViaLlama3) {
  std::string path = write(
      "m.jsonl",
      R"({"messages": [{"role": "system", "content": "Summarize."}, {"role": "user", "content": "Text here "}, {"role": "assistant", "content": " Sum. "}]})"
      "\n"
      R"({"messages": [{"role": "user", "content": "Define \"x\"."}, {"role": "assistant", "content": "a letter"}]})"
      "\n");
  Dataset d = load(path);
  ASSERT_EQ(d.examples.size(), 2u);
  std::string p0 =
      "<|start_header_id|>system<|end_header_id|>\n\nSummarize.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nText here<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  std::vector<int32_t> prompt0 = cat({{k_bos}, tok.encode(p0)});
  EXPECT_EQ(d.examples[0].ids, cat({prompt0, bytes("Sum."), {k_eot}}));
  EXPECT_EQ(d.examples[0].loss_mask, mask(prompt0.size(), prompt0.size() + 5));
  std::string p1 =
      "<|start_header_id|>user<|end_header_id|>\n\nDefine \"x\".<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  std::vector<int32_t> prompt1 = cat({{k_bos}, tok.encode(p1)});
  EXPECT_EQ(d.examples[1].ids, cat({prompt1, bytes("a letter"), {k_eot}}));
  EXPECT_EQ(d.examples[1].source_line, 2);
}

// Every assistant turn is supervised, as axolotl, LLaMA-Factory and TRL train; --turns last keeps
// the bench rule (earlier replies are context) and says what it leaves out.
TEST_F(DatasetTest, MultiTurnSupervisesEveryAssistantTurnUnlessAskedForTheLast) {
  const std::string path = write(
      "mt.jsonl",
      R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})"
      "\n");
  const std::string user = "<|start_header_id|>user<|end_header_id|>\n\n";
  const std::string assistant = "<|start_header_id|>assistant<|end_header_id|>\n\n";
  const std::vector<int32_t> first = cat({{k_bos}, tok.encode(user + "a<|eot_id|>" + assistant)});
  const std::vector<int32_t> second = tok.encode(user + "c<|eot_id|>" + assistant);
  Dataset all = load(path);
  ASSERT_EQ(all.examples.size(), 1u);
  EXPECT_EQ(all.examples[0].ids, cat({first, bytes("b"), {k_eot}, second, bytes("d"), {k_eot}}));
  std::vector<uint8_t> want(all.examples[0].ids.size(), 0);
  for (size_t i = first.size(); i < first.size() + 2; ++i) want[i] = 1;
  for (size_t i = want.size() - 2; i < want.size(); ++i) want[i] = 1;
  EXPECT_EQ(all.examples[0].loss_mask, want);
  EXPECT_EQ(all.stats.n_multi_turn, 1);
  EXPECT_TRUE(all.stats.warnings.empty());

  DatasetOptions last;
  last.turns = TurnLoss::last_reply;
  Dataset only = load(path, last);
  EXPECT_EQ(only.examples[0].ids, all.examples[0].ids);  // the same tokens, fewer supervised
  EXPECT_EQ(only.stats.n_supervised, 2);
  ASSERT_EQ(only.stats.warnings.size(), 1u);
  EXPECT_NE(only.stats.warnings[0].find("only the last is supervised (--turns last)"),
            std::string::npos);

  // ChatML supervises an earlier reply as it writes it in context, unstripped; the [INST] family
  // leaves the " " before each reply to the tokenizer, as for the completion.
  const std::string spaced = write(
      "sp.jsonl",
      R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " b "}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})"
      "\n");
  DatasetOptions chatml;
  chatml.chat_format = "chatml";
  Dataset ml = load(spaced, chatml);
  EXPECT_EQ(ml.stats.n_supervised,
            int64_t(tok.encode(" b <|im_end|>\n").size() + tok.encode("d<|im_end|>\n").size()));
  DatasetOptions mistral;
  mistral.chat_format = "mistral-v3";
  Dataset inst = load(spaced, mistral);
  EXPECT_EQ(inst.examples[0].ids, cat({{k_bos},
                                       bytes("[INST] a[/INST]"),
                                       bytes("b"),
                                       {k_eos},
                                       bytes("[INST] c[/INST]"),
                                       bytes("d"),
                                       {k_eos}}));
  EXPECT_EQ(inst.stats.n_supervised, 4);

  // --turns whole: every token, the conversation as one piece (TRL SFTTrainer's default).
  DatasetOptions whole;
  whole.turns = TurnLoss::whole;
  Dataset every = load(path, whole);
  ASSERT_EQ(every.examples.size(), 1u);
  EXPECT_EQ(every.examples[0].ids, all.examples[0].ids);
  EXPECT_EQ(every.stats.n_supervised, int64_t(every.examples[0].ids.size()) - 1);
  EXPECT_EQ(every.stats.turns, TurnLoss::whole);
  // Mistral v3 writes no system message into a whole conversation: left out, and said.
  const std::string sys = write(
      "sys.jsonl",
      R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})"
      "\n");
  mistral.turns = TurnLoss::whole;
  Dataset dropped = load(sys, mistral);
  EXPECT_EQ(dropped.examples[0].ids, cat({{k_bos}, bytes("[INST] a[/INST] b"), {k_eos}}));
  ASSERT_EQ(dropped.stats.warnings.size(), 1u);
  EXPECT_NE(dropped.stats.warnings[0].find("carry a system message that chat format mistral-v3 "
                                           "leaves out of a whole conversation"),
            std::string::npos)
      << dropped.stats.warnings[0];
}

// ShareGPT (conversations of {from, value}) and TRL's conversational prompt + completion read as
// messages; content given as a list of text parts (OpenAI, TRL) is their text; an image part is
// refused with a hint.
TEST_F(DatasetTest, ShareGptAndContentPartsReadAsMessages) {
  const std::string messages = write(
      "m.jsonl",
      R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]})"
      "\n");
  const std::string sharegpt = write(
      "s.jsonl",
      R"({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}], "id": 7})"
      "\n");
  const std::string parts = write(
      "p.jsonl",
      R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "q"}]}, {"role": "assistant", "content": [{"type": "text", "text": "r"}]}]})"
      "\n");
  const std::string trl = write(
      "t.jsonl",
      R"({"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "r"}]})"
      "\n");
  Dataset want = load(messages);
  for (const std::string& path : {sharegpt, parts, trl}) {
    Dataset d = load(path);
    EXPECT_EQ(d.stats.schema, "messages") << path;
    EXPECT_EQ(d.examples[0].ids, want.examples[0].ids) << path;
    EXPECT_EQ(d.examples[0].loss_mask, want.examples[0].loss_mask) << path;
  }
  const std::string image = write(
      "i.jsonl",
      R"({"messages": [{"role": "user", "content": [{"type": "image", "url": "x.png"}]}, {"role": "assistant", "content": "r"}]})"
      "\n");
  const std::string err = error_of([&] { load(image); });
  EXPECT_NE(err.find("i.jsonl:1"), std::string::npos) << err;
  EXPECT_NE(err.find("messages[0]"), std::string::npos) << err;
  EXPECT_NE(err.find("hint:"), std::string::npos) << err;
}

TEST_F(DatasetTest, AlpacaSystemAndHistoryAreSaidToBeLeftOut) {
  Dataset plain = load(write(
      "a.jsonl", R"({"instruction": "i", "input": "", "output": "o", "system": "", "history": []})"
                 "\n"));
  EXPECT_TRUE(plain.stats.warnings.empty());
  Dataset extras = load(
      write("b.jsonl", R"({"instruction": "i", "input": "", "output": "o", "system": "Be exact."})"
                       "\n"));
  ASSERT_EQ(extras.stats.warnings.size(), 1u);
  EXPECT_NE(extras.stats.warnings[0].find("\"system\" or \"history\""), std::string::npos);
  EXPECT_EQ(extras.examples[0].ids, plain.examples[0].ids);
}

TEST_F(DatasetTest, MessagesNeedARecognisedTemplateOrForcedFormat) {
  config.chat_template = "{% for m in messages %}<start_of_turn>{{ m.content }}{% endfor %}";
  std::string path = write("m.jsonl", R"({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]})");
  std::string err = error_of([&] { load(path); });
  EXPECT_NE(err.find("tokenizer_config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("--chat-format"), std::string::npos) << err;
  DatasetOptions opts;
  opts.chat_format = "chatml";
  Dataset d = load(path, opts);
  EXPECT_EQ(d.stats.chat_format, "chatml");
  EXPECT_EQ(d.examples[0].ids,
            cat({bytes("<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n")}));
  // A byte vocabulary has no <|im_start|> token: the forced format trains its markers as text.
  ASSERT_EQ(d.stats.warnings.size(), 1u);
  EXPECT_NE(d.stats.warnings[0].find("turn marker <|im_start|> is 12 tokens"), std::string::npos)
      << d.stats.warnings[0];
  err = error_of([&] { load(write("b.jsonl", R"({"messages": [{"role": "user"}]})"), opts); });
  EXPECT_NE(err.find("b.jsonl:1"), std::string::npos) << err;
  EXPECT_NE(err.find("role, content"), std::string::npos) << err;
  // named templates, none "default": transformers refuses to choose, and so does lorank
  config.chat_template.clear();
  config.chat_template_names = {"rag", "tool_use"};
  err = error_of([&] { load(path); });
  EXPECT_NE(err.find("none named \"default\""), std::string::npos) << err;
  EXPECT_NE(err.find("rag, tool_use"), std::string::npos) << err;
  EXPECT_EQ(load(path, opts).stats.chat_format, "chatml");
}

TEST_F(DatasetTest, CsvWithQuotedNewlinesQuotesAndCrlf) {
  std::string path = write("d.csv",
                           "prompt,completion\r\n"
                           "\"line one\nline two\",\"say \"\"hi\"\", ok\"\r\n"
                           "\r\n"
                           "plain,x\r\n");
  std::vector<Record> recs = read_records(path);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].fields["prompt"], "line one\nline two");
  EXPECT_EQ(recs[0].fields["completion"], "say \"hi\", ok");
  EXPECT_EQ(recs[0].line, 2);
  EXPECT_EQ(recs[1].fields["prompt"], "plain");
  EXPECT_EQ(recs[1].line, 5);
  Dataset d = load(path);
  EXPECT_EQ(d.stats.schema, "prompt/completion");
  EXPECT_EQ(d.examples[1].source_line, 5);

  std::string err = error_of([&] { read_records(write("bad.csv", "prompt,completion\na,b,c\n")); });
  EXPECT_NE(err.find("bad.csv:2"), std::string::npos) << err;
  EXPECT_NE(err.find("expected 2"), std::string::npos) << err;
  err = error_of([&] { read_records(write("open.csv", "prompt,completion\na,\"never\nclosed\n")); });
  EXPECT_NE(err.find("open.csv:2"), std::string::npos) << err;
  err = error_of([&] { read_records(write("after.csv", "prompt,completion\n\"a\"x,b\n")); });
  EXPECT_NE(err.find("after.csv:2"), std::string::npos) << err;
}

TEST_F(DatasetTest, CsvInvalidUtf8NamesRecordLineAndCell) {
  // The bad byte sits in a quoted cell that starts the record on line 3 and spans to line 4.
  std::string err = error_of([&] {
    read_records(write("latin1.csv", "prompt,completion\nok,fine\n\"two\nlines\",caf\xe9\n"));
  });
  EXPECT_NE(err.find("latin1.csv:3"), std::string::npos) << err;
  EXPECT_NE(err.find("not valid UTF-8"), std::string::npos) << err;
  EXPECT_NE(err.find("byte 0xE9 at offset 3 of the \"completion\" cell"), std::string::npos) << err;
  EXPECT_NE(err.find("iconv"), std::string::npos) << err;
  err = error_of([&] { read_records(write("head.csv", "pr\xC3\x28mpt,completion\na,b\n")); });
  EXPECT_NE(err.find("head.csv:1"), std::string::npos) << err;
  EXPECT_NE(err.find("byte 0xC3 at offset 2 of the header"), std::string::npos) << err;
  // Valid multi-byte text and an overlong encoding (which is invalid) of the same letter.
  EXPECT_EQ(read_records(write("ok.csv", "text\ncaf\xC3\xA9\n"))[0].fields["text"], "caf\xC3\xA9");
  err = error_of([&] { read_records(write("overlong.csv", "text\nx\n\xC1\xA9\n")); });
  EXPECT_NE(err.find("overlong.csv:3"), std::string::npos) << err;
}

TEST_F(DatasetTest, CsvMessagesColumnHoldsJson) {
  std::string path = write(
      "m.csv",
      "messages\n\"[{\"\"role\"\": \"\"user\"\", \"\"content\"\": \"\"u\"\"}, {\"\"role\"\": "
      "\"\"assistant\"\", \"\"content\"\": \"\"a\"\"}]\"\n");
  Dataset d = load(path);
  EXPECT_EQ(d.stats.schema, "messages");
  EXPECT_EQ(d.examples.size(), 1u);
}

TEST_F(DatasetTest, JsonArrayFileWithElementLines) {
  std::string path = write("d.json",
                           "[\n  {\"text\": \"a\"},\n  {\n    \"text\": \"b, [x]\"\n  },\n"
                           "  {\"text\": \"c\"}\n]\n");
  std::vector<Record> recs = read_records(path);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].line, 2);
  EXPECT_EQ(recs[1].line, 3);
  EXPECT_EQ(recs[2].line, 6);
  EXPECT_EQ(read_records(path, 2).size(), 2u);
  std::string err = error_of([&] { read_records(write("e.json", "[{\"text\": \"a\"}, 3]")); });
  EXPECT_NE(err.find("e.json:1"), std::string::npos) << err;
  EXPECT_NE(err.find("JSON object"), std::string::npos) << err;
  err = error_of([&] { read_records(write("m.json", "[{\"text\": \"a\"},\n{\"text\" \"b\"}]")); });
  EXPECT_NE(err.find("m.json"), std::string::npos) << err;
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
}

TEST_F(DatasetTest, MalformedJsonlLineReportsFileLineAndParserMessage) {
  std::string path = write("d.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\"\n{\"text\": \"c\"}\n");
  std::string err = error_of([&] { read_records(path); });
  EXPECT_NE(err.find("d.jsonl:3"), std::string::npos) << err;
  EXPECT_NE(err.find("malformed JSON"), std::string::npos) << err;
  EXPECT_NE(err.find("unexpected end of input"), std::string::npos) << err;
  err = error_of([&] { read_records(write("arr.jsonl", "{\"text\": \"a\"}\n[1, 2]\n")); });
  EXPECT_NE(err.find("arr.jsonl:2"), std::string::npos) << err;
}

TEST_F(DatasetTest, BlankLinesSkippedAndByteOrderMarkIgnored) {
  std::vector<Record> recs =
      read_records(write("d.jsonl", "\xEF\xBB\xBF{\"text\": \"a\"}\r\n  \n\n{\"text\": \"b\"}"));
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].line, 4);
}

TEST_F(DatasetTest, EmptyDatasetIsAnError) {
  for (const std::string& content : {std::string(""), std::string("\n \n"), std::string("[]")}) {
    std::string path = write("empty.jsonl", content);
    std::string err = error_of([&] { load(path); });
    EXPECT_NE(err.find("empty.jsonl"), std::string::npos) << err;
    EXPECT_NE(err.find("empty"), std::string::npos) << err;
  }
  std::string err = error_of([&] { load(write("h.csv", "prompt,completion\n")); });
  EXPECT_NE(err.find("empty"), std::string::npos) << err;
  EXPECT_NE(error_of([&] { load(dir); }).find("folder"), std::string::npos);
  err = error_of([&] { load(dir + "/missing.jsonl"); });
  EXPECT_NE(err.find("missing.jsonl"), std::string::npos) << err;
}

TEST_F(DatasetTest, EmptyCompletionIsAnErrorUnlessSkipped) {
  std::string path = write("d.jsonl",
                           "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                           "{\"prompt\": \"a\", \"completion\": \"\"}\n");
  std::string err = error_of([&] { load(path); });
  EXPECT_NE(err.find("d.jsonl:2"), std::string::npos) << err;
  EXPECT_NE(err.find("empty completion"), std::string::npos) << err;
  DatasetOptions opts;
  opts.skip_empty_completions = true;
  Dataset d = load(path, opts);
  EXPECT_EQ(d.stats.n_examples, 1);
  EXPECT_EQ(d.stats.n_skipped_empty, 1);
  EXPECT_EQ(d.stats.n_records, 2);
  std::string msgs = write(
      "m.jsonl",
      R"({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "  \n"}]})");
  EXPECT_NE(error_of([&] { load(msgs); }).find("m.jsonl:1"), std::string::npos);
  // Whitespace alone is as empty in every schema as in messages, whose templates trim it.
  for (const std::string& line : {R"({"prompt": "a", "completion": " \n"})",
                                  R"({"instruction": "a", "input": "", "output": "\t"})"}) {
    err = error_of([&] { load(write("w.jsonl", line + "\n")); });
    EXPECT_NE(err.find("w.jsonl:1: empty completion"), std::string::npos) << line << "\n" << err;
  }
}

TEST_F(DatasetTest, TruncationFromTheRightIsCounted) {
  std::string path = write("d.jsonl",
                           "{\"prompt\": \"abcd\", \"completion\": \"efgh\"}\n"
                           "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                           "{\"prompt\": \"abcdefghijkl\", \"completion\": \"m\"}\n");
  DatasetOptions opts;
  opts.max_len = 7;
  Dataset d = load(path, opts);
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.examples[0].ids, cat({{k_bos}, bytes("abcd"), bytes("ef")}));
  EXPECT_EQ(d.examples[0].loss_mask, mask(5, 7));
  EXPECT_TRUE(d.examples[0].truncated);
  EXPECT_FALSE(d.examples[1].truncated);
  EXPECT_EQ(d.stats.n_truncated, 1);
  EXPECT_EQ(d.stats.n_dropped_no_target, 1);  // line 3: the prompt alone fills 7 tokens
  EXPECT_EQ(d.stats.len_max, 7);
  // Both said, for the subcommands that print no data table.
  ASSERT_EQ(d.stats.warnings.size(), 2u);
  EXPECT_NE(d.stats.warnings[0].find("1 of 2 examples are longer than --max-len 7 tokens"),
            std::string::npos)
      << d.stats.warnings[0];
  EXPECT_NE(d.stats.warnings[1].find("1 of 3 records were left out"), std::string::npos)
      << d.stats.warnings[1];
}

TEST_F(DatasetTest, MaxExamplesTakesTheFirstRecords) {
  std::string lines;
  for (int i = 0; i < 10; ++i) lines += "{\"text\": \"t" + std::to_string(i) + "\"}\n";
  DatasetOptions opts;
  opts.max_examples = 4;
  Dataset d = load(write("d.jsonl", lines), opts);
  ASSERT_EQ(d.examples.size(), 4u);
  EXPECT_EQ(d.examples[3].source_line, 4);
  EXPECT_EQ(d.examples[3].ids, cat({{k_bos}, bytes("t3"), {k_eos}}));
}

TEST_F(DatasetTest, DuplicatesAndLengthPercentiles) {
  std::string lines;
  for (int i = 1; i <= 100; ++i) lines += "{\"text\": \"" + std::string(static_cast<size_t>(i), 'x') + "\"}\n";
  lines += "{\"text\": \"x\"}\n{\"text\": \"xx\"}\n{\"text\": \"x\"}\n";
  Dataset d = load(write("d.jsonl", lines));
  EXPECT_EQ(d.stats.n_duplicates, 3);
  EXPECT_EQ(d.stats.n_examples, 103);
  // lengths: 3..102 plus 3, 4, 3 (text + BOS + EOS); nearest rank on 103 sorted values
  EXPECT_EQ(d.stats.len_max, 102);
  EXPECT_EQ(d.stats.len_p50, 51);
  EXPECT_EQ(d.stats.len_p90, 92);
  EXPECT_EQ(d.stats.len_p99, 101);
  int64_t tokens = 0;
  for (const Example& ex : d.examples) tokens += static_cast<int64_t>(ex.ids.size());
  EXPECT_EQ(d.stats.n_tokens, tokens);
  EXPECT_EQ(d.stats.n_supervised, tokens - 103);
}

TEST(DatasetSplit, PermutationIsStableAcrossPlatforms) {
  // splitmix64 + rejection-sampled Fisher-Yates, computed independently (Python, 64-bit ints).
  EXPECT_EQ(seeded_permutation(10, 42), (std::vector<size_t>{0, 9, 5, 8, 6, 4, 7, 2, 1, 3}));
  EXPECT_EQ(seeded_permutation(10, 0), (std::vector<size_t>{6, 3, 2, 9, 8, 1, 4, 7, 0, 5}));
}

TEST(DatasetSplit, TrainValDeterministicDisjointAndComplete) {
  Split a = split_train_val(1000, 0.1, 7), b = split_train_val(1000, 0.1, 7);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.val, b.val);
  EXPECT_EQ(a.val.size(), 100u);
  EXPECT_EQ(a.train.size(), 900u);
  std::set<size_t> all(a.train.begin(), a.train.end());
  for (size_t v : a.val) EXPECT_TRUE(all.insert(v).second) << v;
  EXPECT_EQ(all.size(), 1000u);
  EXPECT_TRUE(std::is_sorted(a.val.begin(), a.val.end()));
  EXPECT_NE(split_train_val(1000, 0.1, 8).val, a.val);
  EXPECT_EQ(split_train_val(5, 0.01, 1).val.size(), 1u);  // at least one validation example
  EXPECT_EQ(split_train_val(5, 0.0, 1).val.size(), 0u);
  EXPECT_THROW(split_train_val(5, 1.0, 1), Error);
}

TEST(DatasetSplit, ShardsDisjointBalancedDeterministic) {
  std::vector<std::vector<size_t>> s = make_shards(10, 3, 5);
  ASSERT_EQ(s.size(), 3u);
  std::set<size_t> all;
  for (const auto& shard : s) {
    EXPECT_TRUE(shard.size() == 3 || shard.size() == 4);
    for (size_t i : shard) EXPECT_TRUE(all.insert(i).second);
  }
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(make_shards(10, 3, 5), s);
  EXPECT_THROW(make_shards(2, 3, 5), Error);
  EXPECT_THROW(make_shards(2, 0, 5), Error);
}

TEST(DatasetSplit, SampleStopsAtItsTokensAndKeepsFileOrder) {
  std::vector<Example> ex(10);
  for (size_t i = 0; i < ex.size(); ++i) ex[i].ids.assign(i + 1, 7);  // example i: i + 1 tokens
  auto all = sample_examples(ex, 0, 0, 3);
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(sample_examples(ex, 0, 1000, 3), all);  // a budget above the 55 tokens takes every one
  // seed 0's permutation starts 6, 3, 2, 9: 7 + 4 + 3 tokens are still under 15, so 9 is taken too.
  EXPECT_EQ(sample_examples(ex, 0, 15, 0), (std::vector<size_t>{2, 3, 6, 9}));
  EXPECT_EQ(sample_examples(ex, 2, 0, 0), (std::vector<size_t>{3, 6}));
  EXPECT_EQ(sample_examples(ex, 3, 8, 0), (std::vector<size_t>{3, 6}));  // the tokens bind first
}

TEST(DatasetBatch, PadsRightWithMasks) {
  std::vector<Example> ex(2);
  ex[0].ids = {1, 2, 3};
  ex[0].loss_mask = {0, 0, 1};
  ex[1].ids = {4, 5};
  ex[1].loss_mask = {0, 1};
  Batch b = make_batch(ex, {1, 0}, 9);
  EXPECT_EQ(b.batch_size, 2);
  EXPECT_EQ(b.seq_len, 3);
  EXPECT_EQ(b.ids, (std::vector<int64_t>{4, 5, 9, 1, 2, 3}));
  EXPECT_EQ(b.attention_mask, (std::vector<uint8_t>{1, 1, 0, 1, 1, 1}));
  EXPECT_EQ(b.loss_mask, (std::vector<uint8_t>{0, 1, 0, 0, 0, 1}));
  Batch p = make_batch(ex, {0}, 9, 8);
  EXPECT_EQ(p.seq_len, 8);
  EXPECT_EQ(p.ids, (std::vector<int64_t>{1, 2, 3, 9, 9, 9, 9, 9}));
  EXPECT_THROW(make_batch(ex, {2}, 9), Error);
}

TEST(DatasetSchemaNames, RoundTrip) {
  for (Schema s : {Schema::text, Schema::prompt_completion, Schema::alpaca, Schema::messages}) {
    EXPECT_EQ(schema_from_name(schema_name(s)), s);
  }
  EXPECT_EQ(schema_from_name("prompt-completion"), Schema::prompt_completion);
  EXPECT_THROW(schema_from_name("sharegpt"), Error);
}

}  // namespace
}  // namespace lorank
