// Regression tests for what fuzzing the readers found (tests/fuzz, tools/fuzz.sh): each input used
// to crash, hang, overflow or throw something other than lorank::Error; now each is a clear error.
#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "chat_template.h"
#include "dataset.h"
#include "error.h"
#include "files.h"
#include "hf_config.h"
#include "safetensors.h"
#include "test_common.h"
#include "tokenizer.h"

namespace lorank {
namespace {

using nlohmann::json;

using test::error_of;

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string nested(size_t depth, const std::string& open, const std::string& middle,
                   const std::string& close) {
  std::string out;
  out.reserve(depth * (open.size() + close.size()) + middle.size());
  for (size_t i = 0; i < depth; ++i) out += open;
  out += middle;
  for (size_t i = 0; i < depth; ++i) out += close;
  return out;
}

std::string safetensors_bytes(const std::string& header) {
  uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header;
}

json tiny_bpe() {
  return json::parse(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                                   "merges": ["a b"]}})");
}

std::string tokenizer_error(const json& j) {
  return error_of([&] { parse_tokenizer_json(j.dump(), "tokenizer.json"); });
}

const char* const k_config = R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128)";

// nlohmann reports a number beyond double range as out_of_range, not parse_error; it escaped.
TEST(FuzzRegressions, NumberBeyondDoubleRangeIsALorankError) {
  std::string msg = error_of(
      [] { parse_model_config(std::string(k_config) + ", \"x\": 1e999}", "config.json"); });
  EXPECT_TRUE(has(msg, "config.json") && has(msg, "not valid JSON")) << msg;
  msg = error_of([] { parse_tokenizer_json(R"({"model": 1e999})", "tok.json"); });
  EXPECT_TRUE(has(msg, "tok.json") && has(msg, "invalid JSON")) << msg;
  msg = error_of([] { parse_records("{\"text\": \"a\"}\n{\"text\": 1e999}\n", "d.jsonl"); });
  EXPECT_TRUE(has(msg, "d.jsonl:2") && has(msg, "malformed JSON")) << msg;
  msg = error_of([] { parse_records("[{\"text\": -1E+400}]", "d.json"); });
  EXPECT_TRUE(has(msg, "d.json") && has(msg, "malformed JSON")) << msg;
  msg = error_of([] { parse_records("messages\n\"[1e999]\"\n", "d.csv"); });
  EXPECT_TRUE(has(msg, "d.csv:2") && has(msg, "messages cell")) << msg;

  std::string dir = test::make_temp_dir("fuzz-tokcfg");
  test::write_file(dir + "/tokenizer_config.json", "{\"model_max_length\": 1e999}");
  auto tok = parse_tokenizer_json(tiny_bpe().dump(), "tokenizer.json");
  msg = error_of([&] { load_tokenizer_config(dir, *tok); });
  EXPECT_TRUE(has(msg, "tokenizer_config.json") && has(msg, "invalid JSON")) << msg;
  remove_tree(dir);
}

// count_parameters multiplied sizes from the file in int64: signed overflow.
TEST(FuzzRegressions, SizesThatOverflowTheParameterCount) {
  std::string text = R"({"model_type": "llama", "vocab_size": 4611686018427387904,
    "hidden_size": 1099511627776, "num_hidden_layers": 2, "num_attention_heads": 1,
    "intermediate_size": 8})";
  std::string msg = error_of([&] { parse_model_config(text, "config.json"); });
  EXPECT_TRUE(has(msg, "config.json") && has(msg, "overflows 64 bits")) << msg;
  ModelConfig big;
  big.n_vocab = big.n_embd = big.n_ff = big.n_layer = big.n_head = big.n_head_kv = 1 << 30;
  big.head_dim = 2;
  EXPECT_THROW(count_parameters(big), Error);
}

// Error messages quoted the offending value with json::dump(), which recurses once per level.
TEST(FuzzRegressions, DeeplyNestedValuesInErrorMessages) {
  const size_t depth = 1000000;
  std::string deep = nested(depth, "[", "", "]");
  std::string msg = error_of([&] {
    SafetensorsFile::from_bytes(safetensors_bytes("{\"t\":" + deep + "}"), "m.safetensors");
  });
  EXPECT_TRUE(has(msg, "m.safetensors [t]") && has(msg, "not an object")) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 1000u);
  msg = error_of([&] {
    SafetensorsFile::from_bytes(safetensors_bytes("{\"__metadata__\":{\"k\":" + deep + "}}"), "m");
  });
  EXPECT_TRUE(has(msg, "__metadata__")) << msg.substr(0, 300);
  msg = error_of([&] {
    parse_model_config(std::string(k_config) + ", \"rms_norm_eps\": " + deep + "}", "config.json");
  });
  EXPECT_TRUE(has(msg, "rms_norm_eps") && has(msg, "wrong type")) << msg.substr(0, 300);
  json j = tiny_bpe();
  std::string text = j.dump();
  text.insert(text.size() - 1, ", \"normalizer\": " + deep);
  msg = error_of([&] { parse_tokenizer_json(text, "tokenizer.json"); });
  EXPECT_TRUE(has(msg, "tokenizer.json [normalizer]")) << msg.substr(0, 300);
}

// make_* recursed once per nested Sequence (after copying the whole stage once per level).
TEST(FuzzRegressions, TokenizerStagesNestedTooDeeply) {
  std::string text = tiny_bpe().dump();
  text.insert(text.size() - 1,
              ", \"pre_tokenizer\": " +
                  nested(100000, R"({"type": "Sequence", "pretokenizers": [)", "", "]}"));
  std::string msg = error_of([&] { parse_tokenizer_json(text, "tokenizer.json"); });
  EXPECT_TRUE(has(msg, "nested too deeply")) << msg.substr(0, 300);
  json j = tiny_bpe();  // two levels, as real files have, still load
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", {{{"type", "Sequence"}, {"pretokenizers", json::array()}}}}};
  EXPECT_EQ(parse_tokenizer_json(j.dump(), "tokenizer.json")->encode("ab"),
            std::vector<int32_t>{2});
}

// numel() multiplied [2^61, 4, 0] in int64 before reaching the 0 (the header check, like the
// reference's, accepts the shape because the unsigned product fits).
TEST(FuzzRegressions, SafetensorsZeroDimensionAfterHugeOnes) {
  auto file = SafetensorsFile::from_bytes(
      safetensors_bytes(
          R"({"x":{"dtype":"F32","shape":[2305843009213693952,4,0],"data_offsets":[0,0]}})"),
      "m.safetensors");
  EXPECT_EQ(file.tensor("x").numel(), 0);
}

// Ids were read with get<int32_t>() (a float out of range: undefined behaviour; INT32_MAX + 1:
// signed overflow) and a lone huge vocab id sized a vector of 2^31 strings.
TEST(FuzzRegressions, TokenizerIdsOutOfRange) {
  json j = tiny_bpe();
  j["added_tokens"] = {{{"id", INT32_MAX}, {"content", "<x>"}}};
  EXPECT_TRUE(has(tokenizer_error(j), "[added_tokens[0].id]"));
  j["added_tokens"] = {{{"id", -3}, {"content", "<x>"}}};
  EXPECT_TRUE(has(tokenizer_error(j), "token id out of range"));
  j = tiny_bpe();
  j["model"]["vocab"]["zz"] = INT32_MAX - 1;
  EXPECT_TRUE(has(tokenizer_error(j), "far beyond the vocabulary"));
  j = tiny_bpe();
  j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
      "special_tokens": {"<s>": {"ids": [1e300]}}})");
  EXPECT_TRUE(has(tokenizer_error(j), "token id out of range"));
  j["post_processor"]["special_tokens"]["<s>"]["ids"] = {7};  // an integer, but not in the vocab
  EXPECT_TRUE(has(tokenizer_error(j), "outside the vocabulary"));
  j["post_processor"]["special_tokens"]["<s>"]["ids"] = {1};
  EXPECT_EQ(parse_tokenizer_json(j.dump(), "t")->encode_with_special("ab"),
            (std::vector<int32_t>{1, 2}));
  j["post_processor"] =
      json::parse(R"({"type": "BertProcessing", "sep": ["b", 1e40], "cls": ["a", 0]})");
  EXPECT_TRUE(has(tokenizer_error(j), "[post_processor.sep[1]]"));
}

// Strip with content "" looped `start` times (1e18: a hang); start 1e300 was a float-to-size_t
// conversion out of range. HF's Strip holds one char.
TEST(FuzzRegressions, StripDecoderFields) {
  json j = tiny_bpe();
  j["decoder"] = {{"type", "Strip"}, {"content", ""}, {"start", 1000000000000000000}, {"stop", 0}};
  EXPECT_TRUE(has(tokenizer_error(j), "not one character"));
  j["decoder"]["content"] = "ab";
  EXPECT_TRUE(has(tokenizer_error(j), "not one character"));
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", 1e300}, {"stop", 0}};
  EXPECT_TRUE(has(tokenizer_error(j), "[decoder.start]"));
  j["decoder"]["start"] = -1;
  EXPECT_TRUE(has(tokenizer_error(j), "not a non-negative integer"));
  j["decoder"]["start"] = 1;
  EXPECT_EQ(parse_tokenizer_json(j.dump(), "t")->decode({2}), "ab");
}

// \C matches one byte inside a character; the JIT matcher then ran on the invalid UTF-8 pieces.
TEST(FuzzRegressions, RegexBackslashCIsRefused) {
  json j = tiny_bpe();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "\\C"}}}, {"behavior", "Isolated"}};
  EXPECT_TRUE(has(tokenizer_error(j), "cannot compile the regular expression"));
}

// chat_template detection used std::regex, whose matcher recurses once per character it consumes:
// tokenizer_config.json with a 100k-character date_string or space run crashed (found by review).
TEST(FuzzRegressions, ChatTemplateWithHugeLiterals) {
  std::string date(1000000, 'd');
  std::string llama31 =
      "{{ bos_token }}<|start_header_id|>system<|end_header_id|>{{ 'Cutting "
      "Knowledge Date: December 2023\\n' }}{% set date_string = \"" +
      date + "\" %}";
  ChatFormat f = detect_chat_format(llama31, "tokenizer_config.json");
  EXPECT_EQ(f.name, "llama3.1");
  EXPECT_TRUE(has(f.system_preamble, "Today Date: " + date)) << f.system_preamble.substr(0, 100);
  std::string inst = "{% for message in messages %}{% if loop.last" + std::string(1000000, ' ') +
                     "and system_message %}{{ '[INST] ' + system_message + message['content'] + "
                     "' [/INST]' }}{% endif %}{% endfor %}";
  EXPECT_EQ(detect_chat_format(inst, "tokenizer_config.json").inst_system, InstSystem::last_user);
}

}  // namespace
}  // namespace lorank
