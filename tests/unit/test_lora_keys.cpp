// PEFT's module-key rules: target_modules (list and regex forms), rank_pattern/alpha_pattern
// (get_pattern_key), scaling, and _find_minimal_target_modules. Rows marked "PEFT" are copied from
// PEFT's own tests (tests/test_tuners_utils.py, tests/test_initialization.py).
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "error.h"
#include "lora.h"

using lorank::LoraConfig;

namespace {

LoraConfig list_targets(std::vector<std::string> targets) {
  LoraConfig cfg;
  cfg.target_modules = std::move(targets);
  return cfg;
}

LoraConfig regex_targets(const std::string& regex) {
  LoraConfig cfg;
  cfg.target_modules.clear();
  cfg.target_regex = regex;
  return cfg;
}

std::string layer_name(const std::string& prefix, int i, const std::string& rest) {
  return prefix + std::to_string(i) + rest;
}

}  // namespace

struct TargetCase {
  std::string key;
  std::vector<std::string> list;
  std::string regex;  // used when non-empty
  bool expected;
};

TEST(LoraKeys, TargetModulesPeftRegexTable) {
  // PEFT REGEX_TEST_CASES without layers_to_transform (which lorank refuses).
  const std::vector<TargetCase> cases = {
      {"", {}, "", false},
      {"", {"foo"}, "", false},
      {"foo", {}, "", false},
      {"foo", {"foo"}, "", true},
      {"foo", {"bar"}, "", false},
      {"foo", {"foo", "bar"}, "", true},
      {"foo", {}, "foo", true},
      {"foo", {}, ".*oo", true},
      {"foo", {}, "fo.*", true},
      {"foo", {}, ".*bar.*", false},
      {"foobar", {}, ".*oba.*", true},
      {"transformer.h.1.attn.attention.q_proj.foo", {"q_proj"}, "", false},
      {"transformer.h.1.attn.attention.q_proj", {}, "", false},
      {"transformer.h.1.attn.attention.q_proj", {"q_proj"}, "", true},
      {"transformer.h.1.attn.attention.q_proj", {"q_proj", "v_proj"}, "", true},
      {"transformer.h.1.attn.attention.resid_dropout", {"q_proj", "v_proj"}, "", false},
      {"foo.bar.q_proj", {"q_proj"}, "", true},
  };
  for (const auto& c : cases) {
    LoraConfig cfg = c.regex.empty() ? list_targets(c.list) : regex_targets(c.regex);
    EXPECT_EQ(lorank::peft_target_matches(cfg, c.key), c.expected) << "key '" << c.key << "'";
  }
}

TEST(LoraKeys, TargetListIsSuffixNotSubstring) {
  const std::string q = "model.layers.0.self_attn.q_proj";
  EXPECT_TRUE(lorank::peft_target_matches(list_targets({"self_attn.q_proj"}), q));
  EXPECT_TRUE(lorank::peft_target_matches(list_targets({"layers.0.self_attn.q_proj"}), q));
  EXPECT_TRUE(lorank::peft_target_matches(list_targets({q}), q));
  EXPECT_FALSE(lorank::peft_target_matches(list_targets({"proj"}), q));  // whole components only
  EXPECT_FALSE(lorank::peft_target_matches(list_targets({"_proj"}), q));
  EXPECT_FALSE(lorank::peft_target_matches(list_targets({"self_attn"}), q));  // a parent, not q
  // List entries are plain strings, never regexes.
  EXPECT_FALSE(lorank::peft_target_matches(list_targets({".*q_proj"}), q));
  EXPECT_FALSE(lorank::peft_target_matches(list_targets({"layers.0.self_attn.q_pro."}), q));
}

TEST(LoraKeys, TargetStringIsFullRegexMatch) {
  const std::string q = "model.layers.0.self_attn.q_proj";
  // PEFT docs: '.*decoder.*(SelfAttention|EncDecAttention).*(q|v)$'
  const std::string doc_regex = ".*decoder.*(SelfAttention|EncDecAttention).*(q|v)$";
  EXPECT_TRUE(lorank::peft_target_matches(regex_targets(doc_regex),
                                          "decoder.block.0.layer.0.SelfAttention.q"));
  EXPECT_FALSE(lorank::peft_target_matches(regex_targets(doc_regex),
                                           "encoder.block.0.layer.0.SelfAttention.q"));
  EXPECT_FALSE(lorank::peft_target_matches(regex_targets("q_proj"), q));  // must match it all
  EXPECT_TRUE(lorank::peft_target_matches(regex_targets(".*q_proj"), q));
  EXPECT_TRUE(
      lorank::peft_target_matches(regex_targets(R"(.*layers\.[01]\.self_attn\.(q|v)_proj)"), q));
  EXPECT_FALSE(
      lorank::peft_target_matches(regex_targets(R"(.*layers\.[12]\.self_attn\.(q|v)_proj)"), q));
  EXPECT_FALSE(lorank::peft_target_matches(regex_targets(".*q_pro"), q));
}

TEST(LoraKeys, PatternKeyRule) {
  const std::string q0 = "model.layers.0.self_attn.q_proj";
  const std::string d1 = "model.layers.1.mlp.down_proj";
  const std::string d11 = "model.layers.11.mlp.down_proj";
  EXPECT_TRUE(lorank::peft_key_matches("q_proj", q0));
  EXPECT_TRUE(lorank::peft_key_matches(q0, q0));
  EXPECT_FALSE(lorank::peft_key_matches("proj", q0));   // a suffix must start at a dot
  EXPECT_FALSE(lorank::peft_key_matches("q_pro", q0));  // ... and end at the end
  EXPECT_FALSE(lorank::peft_key_matches("xq_proj", q0));
  EXPECT_TRUE(lorank::peft_key_matches("layers.1.mlp.down_proj", d1));
  EXPECT_FALSE(lorank::peft_key_matches("layers.1.mlp.down_proj", d11));
  EXPECT_TRUE(lorank::peft_key_matches("1.mlp.down_proj", d1));
  EXPECT_FALSE(lorank::peft_key_matches("1.mlp.down_proj", d11));  // "11." is not ".1."
  // Keys are regexes: alternation, classes and the documented '^' form.
  EXPECT_TRUE(lorank::peft_key_matches(R"(layers\.[0-3]\.self_attn\.q_proj)", q0));
  EXPECT_TRUE(lorank::peft_key_matches("(q|k)_proj", q0));
  EXPECT_TRUE(lorank::peft_key_matches(".*self_attn.*", q0));
  EXPECT_TRUE(lorank::peft_key_matches("^model.decoder.layers.0.encoder_attn.k_proj",
                                       "model.decoder.layers.0.encoder_attn.k_proj"));
  EXPECT_FALSE(lorank::peft_key_matches("^layers.0.self_attn.q_proj", q0));
  EXPECT_THROW(lorank::peft_key_matches("q_proj(", q0), lorank::Error);
  try {
    lorank::peft_key_matches("q_proj(", q0);
  } catch (const lorank::Error& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj("), std::string::npos) << e.what();
  }
}

TEST(LoraKeys, ScalingWithPatternsPeft) {
  // PEFT test_scaling_rank_pattern_alpha_pattern (OPT module names).
  LoraConfig cfg = list_targets({"k_proj"});
  cfg.r = 8;
  cfg.alpha = 8;
  cfg.rank_pattern = {{"layers.1.self_attn.k_proj", 16}, {"layers.2.self_attn.k_proj", 32}};
  cfg.alpha_pattern = {{"layers.2.self_attn.k_proj", 4}, {"layers.3.self_attn.k_proj", 16}};
  const std::vector<double> expected = {1.0, 0.5, 0.125, 2.0, 1.0};
  for (int i = 0; i < 5; ++i) {
    const std::string name = layer_name("model.decoder.layers.", i, ".self_attn.k_proj");
    const int64_t r = lorank::lora_rank_for(cfg, name);
    const double alpha = lorank::lora_alpha_for(cfg, name);
    EXPECT_DOUBLE_EQ(lorank::lora_scale(cfg, r, alpha), expected[i]) << name;
  }
}

TEST(LoraKeys, PatternPrecedenceIsSortedKeyOrder) {
  // PEFT tries keys in dict order, which is sorted once a config went through adapter_config.json.
  LoraConfig cfg;
  cfg.r = 4;
  cfg.rank_pattern = {{"q_proj", 2}, {"layers.0.self_attn.q_proj", 16}};
  EXPECT_EQ(lorank::lora_rank_for(cfg, "model.layers.0.self_attn.q_proj"), 16);
  EXPECT_EQ(lorank::lora_rank_for(cfg, "model.layers.1.self_attn.q_proj"), 2);
  EXPECT_EQ(lorank::lora_rank_for(cfg, "model.layers.1.self_attn.k_proj"), 4);
  EXPECT_DOUBLE_EQ(lorank::lora_alpha_for(cfg, "model.layers.1.self_attn.k_proj"), cfg.alpha);
}

TEST(LoraKeys, RsloraScale) {
  LoraConfig cfg;
  cfg.rslora = true;
  EXPECT_DOUBLE_EQ(lorank::lora_scale(cfg, 16, 8.0), 2.0);
  EXPECT_DOUBLE_EQ(lorank::lora_scale(cfg, 8, 8.0), 8.0 / std::sqrt(8.0));
  cfg.rslora = false;
  EXPECT_DOUBLE_EQ(lorank::lora_scale(cfg, 16, 8.0), 0.5);
}

struct MinimalCase {
  std::vector<std::string> targets, others;
  std::set<std::string> expected;
};

TEST(LoraKeys, MinimalTargetModulesPeftTable) {
  std::vector<MinimalCase> cases = {
      {{"bar"}, {}, {"bar"}},
      {{"foo"}, {"bar"}, {"foo"}},
      {{"1.foo", "2.foo"}, {"3.foo", "4.foo"}, {"1.foo", "2.foo"}},
      {{"bar.baz"}, {"foo.bar"}, {"baz"}},
      {{"1.foo", "2.foo", "bar.baz"}, {"3.foo", "bar.bla"}, {"1.foo", "2.foo", "baz"}},
      {{"a.b.c", "d.e.f", "g.h.i"}, {"j.k.l", "m.n.o"}, {"c", "f", "i"}},
      {{"a.b.c", "d.e.f", "g.h.i"}, {"a.b.x", "d.x.f", "x.h.i"}, {"c", "e.f", "g.h.i"}},
      {{"foo.bar.baz", "qux.bar.baz"}, {"baz.bar.foo"}, {"baz"}},
  };
  MinimalCase k_only, all_but_5;
  for (int i = 0; i < 12; ++i) {
    const std::string layer = layer_name("model.decoder.layers.", i, ".self_attn");
    k_only.targets.push_back(layer + ".k_proj");
    for (auto* c : {&k_only, &all_but_5}) {
      c->others.push_back(layer);
      c->others.push_back(layer + ".v_proj");
      c->others.push_back(layer + ".q_proj");
    }
    if (i == 5) {
      all_but_5.others.push_back(layer + ".k_proj");
    } else {
      all_but_5.targets.push_back(layer + ".k_proj");
      all_but_5.expected.insert(std::to_string(i) + ".self_attn.k_proj");
    }
  }
  k_only.expected = {"k_proj"};
  cases.push_back(k_only);
  cases.push_back(all_but_5);
  for (const auto& c : cases) {
    auto got = lorank::peft_minimal_target_modules(c.targets, c.others);
    EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), c.expected);
  }
  // PEFT docs example: 100 decoder layers' q/v against encoder k.
  std::vector<std::string> targets, others;
  for (int i = 0; i < 100; ++i) {
    targets.push_back(layer_name("model.decoder.layers.", i, ".self_attn.q_proj"));
    targets.push_back(layer_name("model.decoder.layers.", i, ".self_attn.v_proj"));
    others.push_back(layer_name("model.encoder.layers.", i, ".self_attn.k_proj"));
  }
  EXPECT_EQ(lorank::peft_minimal_target_modules(targets, others),
            (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST(LoraKeys, MinimalTargetModulesRejectsBadInput) {
  EXPECT_THROW(lorank::peft_minimal_target_modules({}, {"foo"}), lorank::Error);
  EXPECT_THROW(lorank::peft_minimal_target_modules({"", "foo"}, {"bar"}), lorank::Error);
  EXPECT_THROW(lorank::peft_minimal_target_modules({"foo.bar", "spam"}, {"foo.bar", "eggs"}),
               lorank::Error);
}
