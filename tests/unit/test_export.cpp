// export: a hand-built Recommendation as PEFT's adapter_config.json and the axolotl, torchtune,
// LLaMA-Factory and unsloth snippets; the PEFT file read back through lorank's own reader.
#include <gtest/gtest.h>

#include <algorithm>
#include <clocale>
#include <cmath>
#include <filesystem>
#include <locale>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "error.h"
#include "export.h"
#include "files.h"
#include "lora.h"
#include "progress.h"
#include "test_common.h"

using lorank::Recommendation;
using nlohmann::json;

namespace {

const char* const kPatternKey = R"(layers\.1\.mlp\.down_proj)";  // a regex key, escaped on output

// 2 layers x q_proj, v_proj, down_proj; global r 16; layer 1's down_proj at 64 via rank_pattern.
Recommendation sample_recommendation() {
  Recommendation rec;
  rec.rank = 16;
  rec.alpha = 8;
  rec.use_rslora = true;
  rec.alpha_classic = 8 * std::sqrt(16.0);
  rec.target_modules = {"q_proj", "v_proj", "down_proj"};
  rec.rank_pattern[kPatternKey] = 64;
  rec.alpha_pattern[kPatternKey] = 64;  // for trainers without rsLoRA; PEFT must not get it
  rec.params = 1500000;
  rec.params_uniform = 2000000;
  for (int layer = 0; layer < 2; ++layer) {
    for (const std::string kind : {"q_proj", "v_proj", "down_proj"}) {
      lorank::ModuleRank m;
      const std::string block = kind == "down_proj" ? ".mlp." : ".self_attn.";
      m.name = "model.layers." + std::to_string(layer) + block + kind;
      m.kind = kind;
      m.layer = layer;
      m.rank = (layer == 1 && kind == "down_proj") ? 64 : 16;
      rec.modules.push_back(m);
    }
  }
  return rec;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The subset of YAML the snippets use: "key: value" at the top, "key:" followed by indented
// "- item" or "key: value" lines. Anything else fails the test.
struct SimpleYaml {
  std::map<std::string, std::string> values;
  std::map<std::string, std::vector<std::string>> children;  // raw child lines, indent removed
};

SimpleYaml parse_simple_yaml(const std::string& text) {
  SimpleYaml y;
  std::string parent;
  for (const auto& line : lines_of(text)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("  ", 0) == 0) {
      EXPECT_FALSE(parent.empty()) << "indented line without a parent: " << line;
      EXPECT_NE(line[2], ' ') << "nested deeper than one level: " << line;
      y.children[parent].push_back(line.substr(2));
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      ADD_FAILURE() << "not a key: value line: " << line;
      continue;
    }
    const std::string key = line.substr(0, colon), rest = line.substr(colon + 1);
    EXPECT_EQ(key.find(' '), std::string::npos) << line;
    EXPECT_EQ(y.values.count(key) + y.children.count(key), 0u) << "duplicate key " << key;
    if (rest.empty()) {
      parent = key;
      y.children[key];
    } else {
      EXPECT_EQ(rest[0], ' ') << line;
      y.values[key] = rest.substr(1);
      parent.clear();
    }
  }
  return y;
}

// A child line '"key": value' of a pattern mapping, the key decoded as the JSON/YAML string it is.
std::pair<std::string, std::string> quoted_entry(const std::string& child) {
  const size_t sep = child.rfind("\": ");
  EXPECT_NE(sep, std::string::npos) << child;
  if (sep == std::string::npos) return {};
  return {json::parse(child.substr(0, sep + 1)).get<std::string>(), child.substr(sep + 3)};
}

void expect_values(const SimpleYaml& y, const std::map<std::string, std::string>& expected) {
  for (const auto& [key, value] : expected) {
    auto it = y.values.find(key);
    if (it == y.values.end()) {
      ADD_FAILURE() << "missing key " << key;
    } else {
      EXPECT_EQ(it->second, value) << key;
    }
  }
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag) : path(lorank::test::make_temp_dir(tag)) {}
  ~TempDir() { lorank::remove_tree(path); }
};

}  // namespace

TEST(Export, FormatsAndFileNames) {
  EXPECT_EQ(lorank::export_formats(),
            (std::vector<std::string>{"peft", "axolotl", "torchtune", "llama-factory", "unsloth"}));
  EXPECT_EQ(lorank::export_file_name("peft"), "adapter_config.json");
  EXPECT_EQ(lorank::export_file_name("llama-factory"), "llama_factory.yaml");
  EXPECT_EQ(lorank::export_file_name("unsloth"), "unsloth.py");
}

TEST(Export, PeftConfigFields) {
  json j = json::parse(lorank::export_config(sample_recommendation(), "peft", "/models/base"));
  EXPECT_EQ(j.at("r"), 16);
  EXPECT_EQ(j.at("lora_alpha"), 8);
  EXPECT_EQ(j.at("use_rslora"), true);
  EXPECT_EQ(j.at("rank_pattern"), (json{{kPatternKey, 64}}));
  EXPECT_EQ(j.at("alpha_pattern"), json::object());  // rsLoRA: alpha/sqrt(r_m) fits every rank
  EXPECT_EQ(j.at("target_modules"), (json{"q_proj", "v_proj", "down_proj"}));
  EXPECT_EQ(j.at("lora_dropout"), 0);
  EXPECT_EQ(j.at("bias"), "none");
  EXPECT_EQ(j.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(j.at("peft_type"), "LORA");
  EXPECT_EQ(j.at("base_model_name_or_path"), "/models/base");
  EXPECT_EQ(j.at("inference_mode"), false);  // true would freeze the adapter in get_peft_model
  EXPECT_FALSE(j.contains("use_dora"));      // PEFT <= 0.8 refuses it; its default is false
  EXPECT_FALSE(j.contains("peft_version"));
}

TEST(Export, PeftWithoutRsLoraKeepsAlphaPattern) {
  Recommendation rec = sample_recommendation();
  rec.use_rslora = false;
  json j = json::parse(lorank::export_config(rec, "peft", "base"));
  EXPECT_EQ(j.at("use_rslora"), false);
  EXPECT_EQ(j.at("alpha_pattern"), (json{{kPatternKey, 64}}));
}

TEST(Export, PeftRoundTripGivesEveryModuleItsRank) {
  const Recommendation rec = sample_recommendation();
  TempDir dir("export-peft");
  const std::string path = dir.path + "/adapter_config.json";
  lorank::test::write_file(path, lorank::export_config(rec, "peft", "base"));
  const lorank::LoraConfig cfg = lorank::LoraAdapters::read_peft_config(path);
  EXPECT_TRUE(cfg.rslora);
  for (const auto& m : rec.modules) {
    EXPECT_TRUE(lorank::peft_target_matches(cfg, m.name)) << m.name;
    const int64_t r = lorank::lora_rank_for(cfg, m.name);
    EXPECT_EQ(r, m.rank) << m.name;
    EXPECT_DOUBLE_EQ(lorank::lora_scale(cfg, r, lorank::lora_alpha_for(cfg, m.name)),
                     rec.alpha / std::sqrt(static_cast<double>(m.rank)))
        << m.name;
  }
  EXPECT_FALSE(lorank::peft_target_matches(cfg, "model.layers.0.self_attn.k_proj"));
}

TEST(Export, Axolotl) {
  const std::string text = lorank::export_config(sample_recommendation(), "axolotl", "base");
  SimpleYaml y = parse_simple_yaml(text);
  expect_values(y, {{"base_model", "base"},
                    {"adapter", "lora"},
                    {"lora_r", "16"},
                    {"lora_alpha", "8"},
                    {"lora_dropout", "0.0"},
                    {"peft_use_rslora", "true"}});
  EXPECT_EQ(y.children["lora_target_modules"],
            (std::vector<std::string>{"- q_proj", "- v_proj", "- down_proj"}));
  ASSERT_EQ(y.children["lora_rank_pattern"].size(), 1u);
  auto entry = quoted_entry(y.children["lora_rank_pattern"][0]);
  EXPECT_EQ(entry.first, kPatternKey);
  EXPECT_EQ(entry.second, "64");
  EXPECT_EQ(y.children.count("lora_alpha_pattern"), 0u);
  EXPECT_EQ(y.values.count("lora_target_linear"), 0u);
}

TEST(Export, TorchtuneUsesClassicAlpha) {
  const std::string text = lorank::export_config(sample_recommendation(), "torchtune", "base");
  SimpleYaml y = parse_simple_yaml(text);
  ASSERT_EQ(y.values.size(), 0u) << text;  // everything under model:
  std::map<std::string, std::string> model;
  for (const auto& child : y.children["model"]) {
    const size_t sep = child.find(": ");
    ASSERT_NE(sep, std::string::npos) << child;
    model[child.substr(0, sep)] = child.substr(sep + 2);
  }
  EXPECT_EQ(model["lora_rank"], "16");
  EXPECT_EQ(model["lora_alpha"], "32");  // 8 * sqrt(16): alpha/r = 32/16 = rsLoRA's 8/sqrt(16)
  EXPECT_EQ(json::parse(model["lora_attn_modules"]), (json{"q_proj", "v_proj"}));
  EXPECT_EQ(model["apply_lora_to_mlp"], "true");
  EXPECT_EQ(model["apply_lora_to_output"], "false");
  EXPECT_EQ(model["lora_dropout"], "0.0");
  EXPECT_TRUE(contains(text, "no rsLoRA")) << text;
  EXPECT_TRUE(contains(text, "one rank for every module")) << text;
  // What torchtune trains without the pattern, beside the recommendation's count.
  EXPECT_TRUE(contains(text, "(r=16 everywhere: " + lorank::format_count(2e6) +
                                 " trainable parameters, against " + lorank::format_count(1.5e6) +
                                 ")"))
      << text;
  EXPECT_TRUE(contains(text, "LoraConfig.from_pretrained")) << text;
  EXPECT_TRUE(contains(text, "targets only down_proj")) << text;
}

TEST(Export, TorchtuneModuleNamesAndComputedAlpha) {
  Recommendation rec = sample_recommendation();
  rec.rank = 8;
  rec.alpha_classic = 0;  // not filled in: alpha * sqrt(r)
  rec.rank_pattern.clear();
  rec.target_modules = {"q_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"};
  rec.modules.clear();
  const std::string text = lorank::export_config(rec, "torchtune", "");
  EXPECT_TRUE(contains(text, "lora_attn_modules: [\"q_proj\", \"output_proj\"]")) << text;
  EXPECT_TRUE(contains(text, "apply_lora_to_output: true")) << text;
  EXPECT_TRUE(contains(text, "lora_alpha: 22.627417")) << text;  // 8 * sqrt(8)
  EXPECT_FALSE(contains(text, "targets only")) << text;
  EXPECT_FALSE(contains(text, "one rank for every module")) << text;
}

TEST(Export, LlamaFactory) {
  const std::string text = lorank::export_config(sample_recommendation(), "llama-factory", "base");
  SimpleYaml y = parse_simple_yaml(text);
  expect_values(y, {{"model_name_or_path", "base"},
                    {"finetuning_type", "lora"},
                    {"lora_rank", "16"},
                    {"lora_alpha", "8"},
                    {"lora_dropout", "0.0"},
                    {"lora_target", "\"q_proj,v_proj,down_proj\""},
                    {"use_rslora", "true"}});
  EXPECT_TRUE(y.children.empty());
  EXPECT_TRUE(contains(text, "one rank for every module")) << text;
}

TEST(Export, Unsloth) {
  const std::string text = lorank::export_config(sample_recommendation(), "unsloth", "base");
  for (const char* part :
       {"from unsloth import FastLanguageModel\n", "model = FastLanguageModel.get_peft_model(\n",
        "    r=16,\n", "    target_modules=[\"q_proj\", \"v_proj\", \"down_proj\"],\n",
        "    lora_alpha=8,\n", "    lora_dropout=0.0,\n", "    bias=\"none\",\n",
        "    use_rslora=True,\n", "    rank_pattern={\n",
        "        \"layers\\\\.1\\\\.mlp\\\\.down_proj\": 64,\n"}) {
    EXPECT_TRUE(contains(text, part)) << part << "\nin:\n" << text;
  }
  EXPECT_FALSE(contains(text, "alpha_pattern")) << text;
  EXPECT_EQ(text.substr(text.size() - 2), ")\n");
}

TEST(Export, EverySnippetStartsWithTheSource) {
  const Recommendation rec = sample_recommendation();
  for (const auto& format : lorank::export_formats()) {
    if (format == "peft") continue;  // JSON has no comments
    const std::string first = lines_of(lorank::export_config(rec, format, "base"))[0];
    EXPECT_EQ(first.rfind("# Written by lorank recommend: r=16, alpha=8, rsLoRA", 0), 0u)
        << format << ": " << first;
  }
}

TEST(Export, NoPatternMeansNoNotes) {
  Recommendation rec = sample_recommendation();
  rec.rank_pattern.clear();
  rec.alpha_pattern.clear();
  rec.modules.back().rank = 16;
  EXPECT_FALSE(contains(lorank::export_config(rec, "axolotl", "b"), "pattern"));
  EXPECT_FALSE(contains(lorank::export_config(rec, "unsloth", "b"), "pattern"));
  EXPECT_FALSE(contains(lorank::export_config(rec, "llama-factory", "b"), "one rank"));
}

TEST(Export, IntegerAlphaTrainersRound) {
  Recommendation rec = sample_recommendation();
  rec.alpha = 8.5;
  for (const char* format : {"axolotl", "llama-factory"}) {
    SimpleYaml y = parse_simple_yaml(lorank::export_config(rec, format, "b"));
    EXPECT_EQ(y.values["lora_alpha"], "9") << format;
  }
  EXPECT_TRUE(contains(lorank::export_config(rec, "axolotl", "b"), "8.5 is rounded to 9"));
  EXPECT_TRUE(contains(lorank::export_config(rec, "unsloth", "b"), "lora_alpha=8.5,"));
  EXPECT_EQ(json::parse(lorank::export_config(rec, "peft", "b")).at("lora_alpha"), 8.5);
}

TEST(Export, UnknownFormatNamesTheValidOnes) {
  try {
    lorank::export_config(sample_recommendation(), "peft-json", "b");
    FAIL() << "expected an error";
  } catch (const lorank::Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "peft-json")) << msg;
    for (const auto& f : lorank::export_formats()) EXPECT_TRUE(contains(msg, f)) << msg;
  }
  EXPECT_THROW(lorank::export_file_name("yaml"), lorank::Error);
}

TEST(Export, InconsistentRecommendationIsRefused) {
  Recommendation rec = sample_recommendation();
  rec.rank_pattern.clear();  // layer 1's down_proj would get 16, not its 64
  try {
    lorank::export_config(rec, "axolotl", "b");
    FAIL() << "expected an error";
  } catch (const lorank::Error& e) {
    EXPECT_TRUE(contains(e.what(), "model.layers.1.mlp.down_proj")) << e.what();
  }
  rec = sample_recommendation();
  rec.target_modules = {"q_proj", "v_proj"};  // down_proj modules left untargeted
  EXPECT_THROW(lorank::export_config(rec, "peft", "b"), lorank::Error);
}

TEST(Export, Deterministic) {
  const Recommendation a = sample_recommendation(), b = sample_recommendation();
  for (const auto& format : lorank::export_formats()) {
    EXPECT_EQ(lorank::export_config(a, format, "base"), lorank::export_config(b, format, "base"))
        << format;
  }
}

// A de_DE-like C++ locale: a comma for the point and grouped thousands.
struct CommaNumbers : std::numpunct<char> {
  char do_decimal_point() const override { return ','; }
  char do_thousands_sep() const override { return '.'; }
  std::string do_grouping() const override { return "\3"; }
};

// A library caller's locale (the C++ one, and the C one where this machine has a comma locale)
// changes no number: under de_DE the unsloth snippet read lora_alpha=1,5 and torchtune a string.
TEST(Export, TheCallersLocaleChangesNoNumber) {
  Recommendation rec = sample_recommendation();
  rec.alpha = 1.5;
  rec.rank_pattern[kPatternKey] = 2048;
  rec.alpha_pattern[kPatternKey] = 2048;
  rec.modules.back().rank = 2048;
  std::map<std::string, std::string> in_c;
  for (const auto& format : lorank::export_formats())
    in_c[format] = lorank::export_config(rec, format, "base");
  const std::locale before =
      std::locale::global(std::locale(std::locale::classic(), new CommaNumbers));
  const std::string c_before = std::setlocale(LC_NUMERIC, nullptr);
  std::string comma_c_locale = "none";
  for (const char* name : {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "de_DE"}) {
    if (std::setlocale(LC_NUMERIC, name)) {
      comma_c_locale = name;
      break;
    }
  }
  std::ostringstream plain;  // the locale does reach a stream that does not ask for C's
  plain << 1.5 << " " << 2048;
  EXPECT_EQ(plain.str(), "1,5 2.048");
  for (const auto& format : lorank::export_formats())
    EXPECT_EQ(lorank::export_config(rec, format, "base"), in_c[format])
        << format << ", C locale " << comma_c_locale;
  std::setlocale(LC_NUMERIC, c_before.c_str());
  std::locale::global(before);
}

// A model path holding a newline stays inside its string or comment in every format: in
// torchtune.yaml's comment it began a line of YAML.
TEST(Export, ModelPathWithANewlineStaysQuoted) {
  const Recommendation rec = sample_recommendation();
  for (const auto& format : lorank::export_formats()) {
    const std::string text = lorank::export_config(rec, format, "/models/a\ninjected_key: 1");
    EXPECT_EQ(text.find("\ninjected_key: 1"), std::string::npos) << format << "\n" << text;
  }
}

TEST(Export, WriteExportsWritesAllAndRefusesToOverwrite) {
  const Recommendation rec = sample_recommendation();
  TempDir tmp("export-write");
  const std::string dir = tmp.path + "/configs";  // created by write_exports
  lorank::write_exports(rec, dir, "base", /*overwrite=*/false);
  std::vector<std::string> expected;
  for (const auto& format : lorank::export_formats()) {
    const std::string name = lorank::export_file_name(format);
    expected.push_back(name);
    EXPECT_EQ(lorank::test::read_file(dir + "/" + name), lorank::export_config(rec, format, "base"))
        << name;
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(lorank::list_dir(dir), expected);  // no temp files left over
  try {
    lorank::write_exports(rec, dir, "other", /*overwrite=*/false);
    FAIL() << "expected an error";
  } catch (const lorank::Error& e) {
    EXPECT_TRUE(contains(e.what(), "--force")) << e.what();
  }
  EXPECT_EQ(lorank::test::read_file(dir + "/axolotl.yaml"),
            lorank::export_config(rec, "axolotl", "base"));
  lorank::write_exports(rec, dir, "other", /*overwrite=*/true);
  EXPECT_EQ(lorank::test::read_file(dir + "/axolotl.yaml"),
            lorank::export_config(rec, "axolotl", "other"));
}

// A write that fails part-way (a full disk; here a file whose folder is gone) leaves every file as
// it was: a --force run used to leave new configs beside the old recommendation.json.
TEST(Export, WriteExportsWritesAllOrNone) {
  TempDir tmp("export-all-or-none");
  const Recommendation rec = sample_recommendation();
  lorank::write_exports(rec, tmp.path, "old", /*overwrite=*/false, {{"notes.txt", "old\n"}});
  std::vector<std::string> before = lorank::list_dir(tmp.path);
  EXPECT_THROW(lorank::write_exports(rec, tmp.path, "new", /*overwrite=*/true,
                                     {{"notes.txt", "new\n"}, {"gone/report.txt", "new\n"}}),
               lorank::Error);
  EXPECT_EQ(lorank::list_dir(tmp.path), before);  // no temp files left
  EXPECT_EQ(lorank::test::read_file(tmp.path + "/notes.txt"), "old\n");
  EXPECT_EQ(lorank::test::read_file(tmp.path + "/axolotl.yaml"),
            lorank::export_config(rec, "axolotl", "old"));
}

// A move that fails after others were made (here the second target is a folder) puts the moved
// files back; a set written over the old one leaves none of the old names behind.
TEST(Export, AMoveFailingMidwayPutsTheMovedFilesBack) {
  TempDir tmp("write-files-undo");
  lorank::test::write_file(tmp.path + "/a.txt", "old\n");
  std::filesystem::create_directory(tmp.path + "/b");
  const std::vector<std::string> before = lorank::list_dir(tmp.path);
  EXPECT_THROW(lorank::write_files_atomic({{tmp.path + "/a.txt", "new\n"},
                                           {tmp.path + "/c.txt", "new\n"},
                                           {tmp.path + "/b", "new\n"}},
                                          /*overwrite=*/true),
               lorank::Error);
  EXPECT_EQ(lorank::list_dir(tmp.path), before);  // c.txt gone again, no temp or old copies
  EXPECT_EQ(lorank::test::read_file(tmp.path + "/a.txt"), "old\n");
  lorank::write_files_atomic({{tmp.path + "/a.txt", "new\n"}}, /*overwrite=*/true);
  EXPECT_EQ(lorank::list_dir(tmp.path), before);
  EXPECT_EQ(lorank::test::read_file(tmp.path + "/a.txt"), "new\n");
}

TEST(Export, WriteExportsChecksEveryFileBeforeWriting) {
  TempDir tmp("export-partial");
  lorank::test::write_file(tmp.path + "/unsloth.py", "mine\n");
  EXPECT_THROW(lorank::write_exports(sample_recommendation(), tmp.path, "b", false), lorank::Error);
  EXPECT_EQ(lorank::list_dir(tmp.path), std::vector<std::string>{"unsloth.py"});
  EXPECT_EQ(lorank::test::read_file(tmp.path + "/unsloth.py"), "mine\n");
}
