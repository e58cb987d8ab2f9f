// Tokenizers against the reference libraries' ids (tests/assets/golden/tokenizer_golden.json, made
// by tools/make_golden.py with HF tokenizers and sentencepiece), plus hand-checked fixtures.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "error.h"
#include "test_common.h"
#include "tokenizer.h"
#include "tokenizer_unicode.h"

namespace lorank {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ids = std::vector<int32_t>;

std::string escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20)
      out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    else
      out += static_cast<char>(c);
  }
  return out;
}

std::string show_ids(const Tokenizer& tok, const Ids& ids, size_t from, size_t count = 6) {
  std::ostringstream out;
  out << "[";
  if (from > 0) out << "... ";
  for (size_t i = from; i < ids.size() && i < from + count; ++i) {
    std::string text = ids[i] >= 0 && ids[i] < tok.vocab_size() ? tok.id_to_token(ids[i]) : "?";
    out << ids[i] << " '" << escape(text) << "' ";
  }
  if (from + count < ids.size()) out << "...";
  out << "] (" << ids.size() << " ids)";
  return out.str();
}

// "string #3 "...": first difference at 2: want [...] got [...]"
std::string id_diff(const Tokenizer& tok, size_t index, const std::string& text, const Ids& want,
                    const Ids& got) {
  size_t at = 0;
  while (at < want.size() && at < got.size() && want[at] == got[at]) ++at;
  size_t from = at > 2 ? at - 2 : 0;
  std::ostringstream out;
  out << "  string #" << index << " \"" << escape(text).substr(0, 80) << "\": first difference at "
      << at << "\n    want " << show_ids(tok, want, from) << "\n    got  "
      << show_ids(tok, got, from) << "\n";
  return out.str();
}

const Tokenizer& cached(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = loaded[path];
  if (!slot) slot = load_tokenizer(path);
  return *slot;
}

const json& golden() {
  static const json j = json::parse(test::read_file(test::asset("golden/tokenizer_golden.json")));
  return j;
}

// "shared:tokenizers/x" -> ../shared/tokenizers/x ("" when absent); otherwise relative to the repo.
std::string golden_file(const std::string& rel) {
  if (rel.rfind("shared:", 0) == 0) return test::shared_path(rel.substr(7));
  return test::repo_path(rel);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no lorank::Error thrown)";
}

std::string write_temp(const std::string& tag, const std::string& name, const std::string& text) {
  std::string path = test::make_temp_dir(tag) + "/" + name;
  test::write_file(path, text);
  return path;
}

class Golden : public ::testing::TestWithParam<std::string> {};

// The SentencePiece reference treats "<s>" in text as characters; lorank (like transformers'
// LlamaTokenizer) matches it as the control token. Such strings are checked separately below.
bool has_control_text(const std::string& s) {
  return s.find("<s>") != std::string::npos || s.find("</s>") != std::string::npos ||
         s.find("<unk>") != std::string::npos;
}

TEST_P(Golden, IdsAndDecodeMatchReferenceLibrary) {
  const json& entry = golden()["tokenizers"][GetParam()];
  std::string path = golden_file(entry["file"].get<std::string>());
  if (path.empty() || !fs::exists(path)) GTEST_SKIP() << entry["file"] << " not available";
  const Tokenizer& tok = cached(path);
  const json& strings = golden()["strings"];
  bool spm = entry["library"] == "sentencepiece";
  std::string failures;
  int mismatched = 0, compared = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    std::string text = strings[i].get<std::string>();
    if (spm && has_control_text(text)) continue;
    ++compared;
    Ids want = entry["ids"][i].get<Ids>(), got = tok.encode(text);
    Ids want_special = entry["ids_with_special"][i].get<Ids>();
    Ids got_special = tok.encode_with_special(text);
    std::string want_text = entry["decoded"][i].get<std::string>(), got_text = tok.decode(want);
    bool bad = false;
    if (got != want) failures += "encode" + id_diff(tok, i, text, want, got), bad = true;
    if (got_special != want_special)
      failures += "encode_with_special" + id_diff(tok, i, text, want_special, got_special),
          bad = true;
    if (got_text != want_text)
      failures += "decode  string #" + std::to_string(i) + ": want \"" + escape(want_text) +
                  "\"\n    got \"" + escape(got_text) + "\"\n",
          bad = true;
    mismatched += bad;
  }
  EXPECT_EQ(mismatched, 0) << GetParam() << " (" << tok.kind() << "): " << mismatched << " of "
                           << compared << " strings differ from " << entry["library"] << "\n"
                           << failures;
  EXPECT_GT(compared, 100);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Golden,
                         ::testing::Values("tiny-llama", "llama3", "llama2", "gpt2", "llama2-spm"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

TEST(Tokenizer, ByteLevelRoundTripsAwkwardText) {
  std::vector<std::string> texts = {"",
                                    "   ",
                                    "a\r\n\tb",
                                    "12345678 3.14159",
                                    "I'm you'll WE'VE",
                                    "日本語 한국어 中文",
                                    "emoji 🎉👩‍👩‍👧‍👦",
                                    "<|begin_of_text|>inside<|eot_id|> text",
                                    "  trailing  \n\n",
                                    std::string(5000, ' ') + "x",
                                    "\u00a0\u2003\u3000 spaces",
                                    "ﬁ ligature Ω ohm",
                                    "\x7f\x01"};
  std::vector<std::string> files = {test::repo_path("assets/tiny-llama/tokenizer.json"),
                                    test::shared_path("tokenizers/llama3/tokenizer.json"),
                                    test::shared_path("tokenizers/gpt2/tokenizer.json")};
  for (const auto& file : files) {
    if (file.empty()) continue;
    const Tokenizer& tok = cached(file);
    for (const auto& text : texts)
      EXPECT_EQ(tok.decode(tok.encode(text)), text) << file << ": " << escape(text);
  }
}

TEST(Tokenizer, InvalidUtf8IsReplacedLikePythonDecode) {
  const Tokenizer& tok = cached(test::repo_path("assets/tiny-llama/tokenizer.json"));
  // Maximal invalid subparts each become one U+FFFD: "\xe2\x82" is one, "\xff" another.
  EXPECT_EQ(tok.decode(tok.encode("a\xe2\x82z\xff!")), "a\xEF\xBF\xBDz\xEF\xBF\xBD!");
  EXPECT_EQ(tok.encode("a\xe2\x82z"), tok.encode("a\xEF\xBF\xBDz"));
}

TEST(Tokenizer, SpecialTokensInTextAreMatched) {
  const Tokenizer& tok = cached(test::repo_path("assets/tiny-llama/tokenizer.json"));
  Ids ids = tok.encode("x<|eot_id|>y<|begin_of_text|>");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[1], tok.token_to_id("<|eot_id|>").value());
  EXPECT_EQ(ids.back(), tok.token_to_id("<|begin_of_text|>").value());
  EXPECT_EQ(tok.encode_with_special("x")[0], tok.token_to_id("<|begin_of_text|>").value());
}

TEST(Tokenizer, MetaspaceFixtureFollowsMergeRanks) {
  auto tok = load_tokenizer_json(test::asset("tokenizers/metaspace.json"));
  // "▁abc": (a,b) has rank 0, then (▁,ab) rank 2; left-to-right merging would give ▁a b c.
  EXPECT_EQ(tok->encode("abc"), (Ids{11, 8}));
  EXPECT_EQ(tok->encode("a b"), (Ids{10, 5, 7}));  // split on ▁, MergedWithNext
  EXPECT_EQ(tok->encode(" abc"), (Ids{11, 8}));    // already starts with ▁: nothing prepended
  EXPECT_EQ(tok->encode_with_special("abc"), (Ids{1, 11, 8, 2}));
  EXPECT_EQ(tok->decode({1, 11, 8, 2}), "<s> abc</s>");
  EXPECT_EQ(tok->decode({11, 8}), "abc");  // Strip drops the first space
  EXPECT_EQ(tok->vocab_size(), 20);
}

TEST(Tokenizer, MetaspaceFixtureUnknownsAndByteFallback) {
  auto tok = load_tokenizer_json(test::asset("tokenizers/metaspace.json"));
  EXPECT_EQ(tok->encode("qq"), (Ids{5, 0}));        // no <0x71>: unknowns, fused
  EXPECT_EQ(tok->encode("é"), (Ids{5, 3, 4}));      // bytes of é via byte_fallback
  EXPECT_EQ(tok->encode("qé"), (Ids{5, 3, 4, 0}));  // HF emits the bytes before the pending unk
  EXPECT_EQ(tok->decode({5, 3, 4}), "é");
  EXPECT_EQ(tok->decode({5, 3}), "\xEF\xBF\xBD");  // a lone byte: U+FFFD
}

TEST(Tokenizer, MetaspaceFixtureAddedTokenOptions) {
  auto tok = load_tokenizer_json(test::asset("tokenizers/metaspace.json"));
  // "abc" after <s> does not start the input: prepend_scheme "first" adds no ▁.
  EXPECT_EQ(tok->encode("<s>abc</s>"), (Ids{1, 12, 2}));
  EXPECT_EQ(tok->encode("a <mask>"), (Ids{10, 14}));    // lstrip swallows the space
  EXPECT_EQ(tok->encode("xyz abc"), (Ids{19, 11, 8}));  // single_word token at a word boundary
  EXPECT_EQ(tok->encode("axyz"), (Ids{10, 0}));         // inside a word: not matched
  EXPECT_EQ(tok->token_to_id("xyz"), 19);
  EXPECT_EQ(tok->token_to_id("\u2581ab"), 11);
  EXPECT_FALSE(tok->token_to_id("nope").has_value());
  EXPECT_EQ(tok->id_to_token(14), "<mask>");
  EXPECT_NE(message_of([&] { tok->id_to_token(999); }).find("999"), std::string::npos);
}

TEST(Tokenizer, IgnoreMergesEmitsWholeVocabEntries) {
  std::string path = test::asset("tokenizers/bytelevel.json");
  auto tok = load_tokenizer_json(path);
  int32_t b = tok->token_to_id("b").value(), c = tok->token_to_id("c").value(),
          a = tok->token_to_id("a").value(), space = tok->token_to_id("\u0120").value();
  EXPECT_EQ(tok->encode("bca"), (Ids{tok->token_to_id("bca").value()}));
  // " abc" is not in the vocab: ranks give Ġ + abc, not Ġab + c.
  EXPECT_EQ(tok->encode(" abc"), (Ids{space, tok->token_to_id("abc").value()}));
  json j = json::parse(test::read_file(path));
  j["model"]["ignore_merges"] = false;
  auto plain = load_tokenizer_json(write_temp("tok-merges", "tokenizer.json", j.dump()));
  EXPECT_EQ(plain->encode("bca"), (Ids{b, c, a}));
  EXPECT_EQ(plain->encode_with_special("bca"), (Ids{0, b, c, a}));
}

TEST(Tokenizer, MergesAsStringsOrPairsAreEquivalent) {
  std::string path = test::asset("tokenizers/bytelevel.json");
  json j = json::parse(test::read_file(path));
  for (auto& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  auto strings = load_tokenizer_json(write_temp("tok-strmerges", "tokenizer.json", j.dump()));
  auto pairs = load_tokenizer_json(path);
  for (const char* text : {"abc", " abc abcabc", "ab ab c"})
    EXPECT_EQ(strings->encode(text), pairs->encode(text)) << text;
}

json fixture(const std::string& name) {
  return json::parse(test::read_file(test::asset("tokenizers/" + name)));
}

std::unique_ptr<Tokenizer> load_modified(const json& j) {
  return load_tokenizer_json(write_temp("tok-mod", "tokenizer.json", j.dump()));
}

TEST(Tokenizer, SplitBehaviorsAndInvert) {
  json j = fixture("bytelevel.json");
  auto split_with = [&](const char* behavior, bool invert, json pattern) {
    j["pre_tokenizer"]["pretokenizers"][0] = {
        {"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
    return load_modified(j);
  };
  auto tok = load_tokenizer_json(test::asset("tokenizers/bytelevel.json"));
  int32_t ab = tok->token_to_id("ab").value(), a = tok->token_to_id("a").value(),
          space = tok->token_to_id("\u0120").value(), space_a = tok->token_to_id("\u0120a").value();
  json space_pattern = {{"String", " "}};
  EXPECT_EQ(split_with("Removed", false, space_pattern)->encode("ab a"), (Ids{ab, a}));
  EXPECT_EQ(split_with("Isolated", false, space_pattern)->encode("ab a"), (Ids{ab, space, a}));
  EXPECT_EQ(split_with("MergedWithNext", false, space_pattern)->encode("ab a"), (Ids{ab, space_a}));
  EXPECT_EQ(split_with("MergedWithPrevious", false, space_pattern)->encode("ab a"),
            (Ids{ab, space, a}));
  // Inverted: the letters are the pieces, the rest is the delimiter that Removed drops.
  EXPECT_EQ(split_with("Removed", true, {{"Regex", "\\p{L}+"}})->encode("ab a"), (Ids{ab, a}));
  std::string msg = message_of([&] { split_with("Sideways", false, space_pattern); });
  EXPECT_NE(msg.find("Sideways"), std::string::npos) << msg;
}

TEST(Tokenizer, LegacyPrependReplaceNormalizer) {
  // Older Llama tokenizer.json files: Prepend + Replace normalizers and no pre-tokenizer, so every
  // chunk between added tokens gets its own "▁".
  json j = fixture("metaspace.json");
  j["pre_tokenizer"] = nullptr;
  j["normalizer"] = json::parse(R"({"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})");
  auto tok = load_modified(j);
  EXPECT_EQ(tok->encode("a b"), (Ids{10, 5, 7}));
  EXPECT_EQ(tok->encode("<s>abc"), (Ids{1, 11, 8}));
  EXPECT_EQ(tok->encode(""), Ids{});
}

TEST(Tokenizer, MetaspaceDecoder) {
  json j = fixture("metaspace.json");
  j["decoder"] = {{"type", "Metaspace"},
                  {"replacement", "\u2581"},
                  {"prepend_scheme", "always"},
                  {"split", true}};
  auto tok = load_modified(j);
  EXPECT_EQ(tok->decode({11, 8}), "abc");  // the first token loses its ▁
  EXPECT_EQ(tok->decode({10, 5, 7}), "a b");
  j["decoder"]["prepend_scheme"] = "never";
  EXPECT_EQ(load_modified(j)->decode({11, 8}), " abc");
}

TEST(Tokenizer, UnicodeNormalizer) {
  json j = fixture("metaspace.json");
  j["normalizer"] = {{"type", "NFC"}};
  std::unique_ptr<Tokenizer> tok;
  std::string msg = message_of([&] { tok = load_modified(j); });
  if (msg.find("needs ICU") != std::string::npos) GTEST_SKIP() << "built without ICU";
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->encode("e\u0301"), (Ids{5, 3, 4}));  // e + combining acute -> é -> its bytes
}

TEST(TokenizerUnicode, RegexWhiteSpaceIsUnicodeWhiteSpace) {
  // Oniguruma's \s (HF) is White_Space: U+0085 yes; U+180E (no longer a space) and U+200B no.
  tok::Regex space("\\s+", "test"), not_space("\\S+", "test"), in_class("[^\\s\\p{L}]+", "test");
  EXPECT_EQ(space.find_all("a\u0085b").size(), 1u);
  EXPECT_TRUE(space.find_all("\u180e").empty());
  EXPECT_TRUE(space.find_all("\u200b").empty());
  EXPECT_EQ(space.find_all(" \t\u00a0\u3000").size(), 1u);
  EXPECT_EQ(not_space.find_all("\u180e").size(), 1u);
  EXPECT_TRUE(in_class.find_all("\u0085").empty());
  EXPECT_EQ(in_class.find_all("\u180e").size(), 1u);
}

TEST(TokenizerUnicode, Utf8Repair) {
  EXPECT_EQ(tok::valid_utf8("ok \u00e9"), "ok \u00e9");
  EXPECT_EQ(tok::valid_utf8("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(tok::valid_utf8("\xf0\x9f\x98"), "\xEF\xBF\xBD");          // truncated 4-byte sequence
  EXPECT_EQ(tok::valid_utf8("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong
}

TEST(Tokenizer, SentencePieceMatchesControlTokensInText) {
  std::string path = test::shared_path("tokenizers/llama2/tokenizer.model");
  if (path.empty()) GTEST_SKIP() << "../shared/tokenizers/llama2 not available";
  auto tok = load_sentencepiece(path);
  EXPECT_EQ(tok->kind(), "sentencepiece (tokenizer.model)");
  Ids ids = tok->encode("<s>hi</s>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok->decode(ids), "<s>hi</s>");
  EXPECT_EQ(tok->encode_with_special("hi").front(), 1);
  EXPECT_EQ(tok->token_to_id("<s>"), 1);
  EXPECT_FALSE(tok->token_to_id("definitely not a piece").has_value());
  // Without control text, the SentencePiece and tokenizer.json encodings agree on plain prose.
  const Tokenizer& json_tok = cached(test::shared_path("tokenizers/llama2/tokenizer.json"));
  for (const char* text : {"Hello world", "The quick brown fox, 1234!", "naïve café"})
    EXPECT_EQ(tok->encode(text), json_tok.encode(text)) << text;
}

// lorank's rule for an [INST] reply (render_chat_turns): the " " its template writes before it is
// left to SentencePiece's dummy prefix, as for the bench completion. With Llama 2's tokenizer the
// pieces then give the tokens of the text the template writes. (A context right after a reply's
// "</s>" is encoded as its continuation: DatasetGolden.ContextAfterAReplyTokenizesAsTheWhole...)
TEST(Tokenizer, InstRepliesAloneTokenizeAsInTheWholeConversation) {
  std::string path = test::shared_path("tokenizers/llama2/tokenizer.json");
  if (path.empty()) GTEST_SKIP() << "../shared/tokenizers/llama2 not available";
  const Tokenizer& tok = cached(path);
  const std::vector<std::pair<std::string, std::string>> turns = {
      {"<s>[INST] Who are you [/INST]", "I am an assistant </s>"},
      {"<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST]", "Hi there </s>"},
      {"</s>[INST] What is 2+2?[/INST]", "Four.</s>"},
      {" [INST] Name a colour. [/INST]", "Blue.</s>"},
      {"[INST] 日本語では？[/INST]", "コーヒーは熱いです。</s>"},
      {"[INST] x [/INST]", "(a) 12, [b] \"quoted\"\n- item</s>"},
  };
  for (const auto& [context, reply] : turns) {
    Ids pieces = tok.encode(context), alone = tok.encode(reply);
    pieces.insert(pieces.end(), alone.begin(), alone.end());
    EXPECT_EQ(pieces, tok.encode(context + " " + reply)) << context << " | " << reply;
  }
}

TEST(Tokenizer, FolderPrefersTokenizerJson) {
  std::string dir = test::shared_path("tokenizers/llama2");
  // Both files: the GPU machine's copy of ../shared may hold tokenizer.json alone.
  if (dir.empty() || !fs::exists(dir + "/tokenizer.model"))
    GTEST_SKIP() << "../shared/tokenizers/llama2 with tokenizer.model not available";
  EXPECT_EQ(load_tokenizer(dir)->kind(), "bpe (tokenizer.json)");
  std::string only_model = test::make_temp_dir("tok-spm");
  fs::copy_file(dir + "/tokenizer.model", only_model + "/tokenizer.model");
  EXPECT_EQ(load_tokenizer(only_model)->kind(), "sentencepiece (tokenizer.model)");
}

TEST(TokenizerErrors, MissingFileAndFolder) {
  std::string msg = message_of([] { load_tokenizer_json("/nonexistent/tokenizer.json"); });
  EXPECT_NE(msg.find("/nonexistent/tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hint:"), std::string::npos) << msg;
  std::string empty = test::make_temp_dir("tok-empty");
  msg = message_of([&] { load_tokenizer(empty); });
  EXPECT_NE(msg.find(empty), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.json or tokenizer.model"), std::string::npos) << msg;
  msg = message_of([] { load_tokenizer("/nonexistent-model-dir"); });
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
}

TEST(TokenizerErrors, InvalidJson) {
  std::string path = write_temp("tok-bad", "tokenizer.json", "{\"model\": {\"type\": \"BPE\",");
  std::string msg = message_of([&] { load_tokenizer_json(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hint:"), std::string::npos) << msg;
}

TEST(TokenizerErrors, UnsupportedModelAndStages) {
  std::string path = write_temp("tok-wp", "tokenizer.json",
                                R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  std::string msg = message_of([&] { load_tokenizer_json(path); });
  EXPECT_NE(msg.find(path + " [model.type]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hint:"), std::string::npos) << msg;

  json j = json::parse(test::read_file(test::asset("tokenizers/metaspace.json")));
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "BertPreTokenizer"}}}}};
  path = write_temp("tok-pre", "tokenizer.json", j.dump());
  msg = message_of([&] { load_tokenizer_json(path); });
  EXPECT_NE(msg.find("[pre_tokenizer.pretokenizers[0]]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("BertPreTokenizer"), std::string::npos) << msg;

  j = json::parse(test::read_file(test::asset("tokenizers/metaspace.json")));
  j["model"]["merges"][1] = "a zzz";
  path = write_temp("tok-merge", "tokenizer.json", j.dump());
  msg = message_of([&] { load_tokenizer_json(path); });
  EXPECT_NE(msg.find("[model.merges[1]]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("zzz"), std::string::npos) << msg;
}

TEST(TokenizerErrors, WrongFieldTypesGiveLorankErrors) {
  json j = fixture("metaspace.json");
  j["model"]["fuse_unk"] = nullptr;  // null means the default, as in HF
  EXPECT_EQ(load_modified(j)->encode("qq"), (Ids{5, 0, 0}));
  j["added_tokens"][0]["special"] = "yes";
  std::string msg = message_of([&] { load_modified(j); });
  EXPECT_NE(msg.find("unexpected tokenizer.json structure"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  j = fixture("metaspace.json");
  j["model"]["dropout"] = 0.1;
  msg = message_of([&] { load_modified(j); });
  EXPECT_NE(msg.find("[model.dropout]"), std::string::npos) << msg;
}

TEST(TokenizerErrors, SentencePieceRejectsOtherFiles) {
  std::string path = write_temp("tok-spmbad", "tokenizer.model", "not a model");
  std::string msg = message_of([&] { load_sentencepiece(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  std::string tiktoken = test::shared_path("tokenizers/llama3/tokenizer.model");
  if (tiktoken.empty()) return;
  msg = message_of([&] { load_sentencepiece(tiktoken); });
  EXPECT_NE(msg.find("tiktoken"), std::string::npos) << msg;
}

TEST(TokenizerConfig, TinyLlama) {
  std::string dir = test::repo_path("assets/tiny-llama");
  auto tok = load_tokenizer(dir);
  TokenizerConfig config = load_tokenizer_config(dir, *tok);
  EXPECT_EQ(config.bos_token, "<|begin_of_text|>");
  EXPECT_EQ(config.bos_id, 0);
  EXPECT_EQ(config.eos_id, 1);
  EXPECT_EQ(config.pad_id, 5);
  EXPECT_NE(config.chat_template.find("<|start_header_id|>"), std::string::npos);
  EXPECT_EQ(config.model_max_length, 1024);
}

TEST(TokenizerConfig, ObjectTokensTemplateListsAndFallbacks) {
  auto tok = load_tokenizer_json(test::asset("tokenizers/metaspace.json"));
  std::string dir = test::make_temp_dir("tok-config");
  test::write_file(dir + "/tokenizer_config.json", R"({
    "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
    "model_max_length": 1e30,
    "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  TokenizerConfig config = load_tokenizer_config(dir, *tok);
  EXPECT_EQ(config.bos_id, 1);
  EXPECT_EQ(config.eos_id, 2);
  EXPECT_FALSE(config.pad_id.has_value());
  EXPECT_EQ(config.chat_template, "D");
  EXPECT_EQ(config.model_max_length, 0);  // transformers' "no limit"

  std::string bare = test::make_temp_dir("tok-noconfig");
  test::write_file(bare + "/chat_template.jinja", "{{ messages }}");
  config = load_tokenizer_config(bare, *tok);
  EXPECT_TRUE(config.bos_token.empty());
  EXPECT_EQ(config.chat_template, "{{ messages }}");

  test::write_file(dir + "/tokenizer_config.json", R"({"bos_token": "<|nope|>"})");
  std::string msg = message_of([&] { load_tokenizer_config(dir, *tok); });
  EXPECT_NE(msg.find("[bos_token]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("<|nope|>"), std::string::npos) << msg;
}

// As transformers reads a folder: chat_template.jinja before the config's entry, special tokens
// from special_tokens_map.json when the config has none, and no template chosen from a list
// without "default".
TEST(TokenizerConfig, FolderFilesAsTransformersReadsThem) {
  auto tok = load_tokenizer_json(test::asset("tokenizers/metaspace.json"));
  std::string dir = test::make_temp_dir("tok-config-files");
  test::write_file(dir + "/tokenizer_config.json", R"({"chat_template": "CONFIG"})");
  test::write_file(dir + "/chat_template.jinja", "FILE");
  test::write_file(dir + "/special_tokens_map.json",
                   R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>"})");
  TokenizerConfig config = load_tokenizer_config(dir, *tok);
  EXPECT_EQ(config.chat_template, "FILE");
  EXPECT_EQ(config.chat_template_path, dir + "/chat_template.jinja");
  EXPECT_EQ(config.bos_id, 1);
  EXPECT_EQ(config.eos_id, 2);

  // transformers 4.x: a config saved before 4.34 (no added_tokens_decoder) takes the map's tokens
  // over its own; a token the vocabulary lacks names the file it came from
  test::write_file(dir + "/tokenizer_config.json",
                   R"({"eos_token": "<unk>", "pad_token": "<unk>"})");
  test::write_file(dir + "/special_tokens_map.json",
                   R"({"eos_token": "</s>", "pad_token": "<|x|>"})");
  std::string msg = message_of([&] { load_tokenizer_config(dir, *tok); });
  EXPECT_NE(msg.find("special_tokens_map.json [pad_token]"), std::string::npos) << msg;
  test::write_file(dir + "/special_tokens_map.json", R"({"eos_token": "</s>"})");
  config = load_tokenizer_config(dir, *tok);
  EXPECT_EQ(config.eos_id, 2);
  EXPECT_EQ(config.pad_id, 0);
  // a newer config (added_tokens_decoder) never opens the map, even a broken one
  test::write_file(dir + "/tokenizer_config.json",
                   R"({"eos_token": "<unk>", "added_tokens_decoder": {}})");
  test::write_file(dir + "/special_tokens_map.json", "{broken");
  config = load_tokenizer_config(dir, *tok);
  EXPECT_EQ(config.eos_id, 0);

  std::string named = test::make_temp_dir("tok-config-named");
  test::write_file(named + "/tokenizer_config.json",
                   R"({"chat_template": [{"name": "rag", "template": "R"},
                                         {"name": "tool_use", "template": "T"}]})");
  config = load_tokenizer_config(named, *tok);
  EXPECT_TRUE(config.chat_template.empty());
  EXPECT_EQ(config.chat_template_names, (std::vector<std::string>{"rag", "tool_use"}));
  test::write_file(named + "/tokenizer_config.json",
                   R"({"chat_template": [{"name": "rag", "template": "R"},
                                         {"name": "default", "template": ""}]})");
  config = load_tokenizer_config(named, *tok);
  EXPECT_TRUE(config.chat_template_names.empty()) << "a default, though empty, is chosen";
}

TEST(Tokenizer, ConcurrentEncodeMatchesSerial) {
  auto tok = load_tokenizer_json(test::repo_path("assets/tiny-llama/tokenizer.json"));
  std::vector<std::string> lines;
  std::istringstream in(test::read_file(test::asset("data/gsm8k.jsonl")));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::vector<Ids> serial;
  for (const auto& l : lines)
    serial.push_back(cached(test::repo_path("assets/tiny-llama/tokenizer.json")).encode(l));
  std::vector<std::vector<Ids>> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (const auto& l : lines) results[t].push_back(tok->encode(l));
    });
  for (auto& th : threads) th.join();
  for (const auto& r : results) EXPECT_EQ(r, serial);
}

TEST(Tokenizer, Llama3LoadTimeAndThroughput) {
  std::string path = test::shared_path("tokenizers/llama3/tokenizer.json");
  if (path.empty()) GTEST_SKIP() << "../shared/tokenizers/llama3 not available";
  auto start = std::chrono::steady_clock::now();
  auto tok = load_tokenizer_json(path);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string data = test::read_file(test::asset("data/gsm8k.jsonl"));
  start = std::chrono::steady_clock::now();
  size_t n = 0;
  for (int rep = 0; rep < 20; ++rep) n += tok->encode(data + std::to_string(rep)).size();
  double encode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "llama3 tokenizer.json: load " << load_s << " s, encode " << n / encode_s / 1e6
            << " M tokens/s\n";
  EXPECT_LT(load_s, 5.0);  // about 0.75 s here; generous for a loaded 2-core machine
  EXPECT_GT(n / encode_s, 2e5);
}

}  // namespace
}  // namespace lorank
