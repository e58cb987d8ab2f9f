// Crafted checkpoints: loading errors, architecture variants, RoPE scaling.
#include <cmath>

#include <gtest/gtest.h>

#include "error.h"
#include "model_fixtures.h"

using lorank::Model;
using namespace lorank::test;

namespace {

std::string load_error(const std::string& dir) {
  try {
    Model::load(dir);
  } catch (const lorank::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error loading " << dir;
  return "";
}

bool has(const std::string& msg, const std::string& part) {
  return msg.find(part) != std::string::npos;
}

// A crafted llama folder with `edit` applied to its weights; removed when the test ends.
std::unique_ptr<TempDir> crafted(
    const std::string& tag, const std::function<void(std::map<std::string, torch::Tensor>&)>& edit = {}) {
  std::string cfg_json = tiny_config_json("llama");
  auto cfg = lorank::parse_model_config(cfg_json, "config.json");
  auto w = random_weights(cfg, 1);
  if (edit) edit(w);
  auto dir = std::make_unique<TempDir>(tag);
  write_checkpoint(dir->path, cfg_json, w);
  return dir;
}

}  // namespace

TEST(ModelCheckpoint, CraftedLlamaLoadsFromFileAndMemory) {
  auto m = Model::load(crafted("ok")->path);
  auto ids = torch::randint(0, 32, {2, 5}, torch::kInt64);
  auto logits = m->forward(ids);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 5, 32}));
  EXPECT_EQ(m->parameter_counts().total(), lorank::count_parameters(m->config()).total());
  auto w = random_weights(m->config(), 1);  // the same tensors crafted() wrote
  Model in_memory(m->config(), w, {}, "weights");
  EXPECT_TRUE(torch::equal(in_memory.forward(ids), logits));
  w.erase("model.norm.weight");
  try {
    Model broken(m->config(), w, {}, "weights");
    ADD_FAILURE() << "no error";
  } catch (const lorank::Error& e) {
    EXPECT_TRUE(has(e.what(), "weights: missing tensor model.norm.weight")) << e.what();
  }
}

TEST(ModelCheckpoint, MissingTensorIsNamed) {
  std::string msg = load_error(crafted("missing", [](auto& w) {
    w.erase("model.layers.1.mlp.up_proj.weight");
  })->path);
  EXPECT_TRUE(has(msg, "missing tensor model.layers.1.mlp.up_proj.weight")) << msg;
  EXPECT_TRUE(has(msg, "hint:")) << msg;
}

// An untied config over a checkpoint that ties its output layer: the hint names the key to set.
TEST(ModelCheckpoint, MissingOutputLayerNamesTieWordEmbeddings) {
  std::string msg = load_error(crafted("untied", [](auto& w) { w.erase("lm_head.weight"); })->path);
  EXPECT_TRUE(has(msg, "missing tensor lm_head.weight")) << msg;
  EXPECT_TRUE(has(msg, "set \"tie_word_embeddings\": true")) << msg;
}

TEST(ModelCheckpoint, UnexpectedTensorIsNamed) {
  std::string msg = load_error(crafted("extra", [](auto& w) {
    w["model.layers.0.self_attn.q_proj.bias"] = torch::zeros({16});
  })->path);
  EXPECT_TRUE(has(msg, "model.safetensors [model.layers.0.self_attn.q_proj.bias]")) << msg;
  EXPECT_TRUE(has(msg, "unexpected tensor")) << msg;
}

TEST(ModelCheckpoint, WrongShapeNamesExpectedAndGot) {
  std::string msg = load_error(crafted("shape", [](auto& w) {
    w["model.layers.0.self_attn.k_proj.weight"] = torch::zeros({16, 16});
  })->path);
  EXPECT_TRUE(has(msg, "[model.layers.0.self_attn.k_proj.weight]")) << msg;
  EXPECT_TRUE(has(msg, "expected [8, 16], got [16, 16]")) << msg;
  EXPECT_TRUE(has(msg, "num_key_value_heads")) << msg;
}

TEST(ModelCheckpoint, NonFiniteWeightIsNamed) {
  std::string msg = load_error(crafted("nan", [](auto& w) {
    w["model.layers.1.post_attention_layernorm.weight"][3] = NAN;
  })->path);
  EXPECT_TRUE(has(msg, "[model.layers.1.post_attention_layernorm.weight]")) << msg;
  EXPECT_TRUE(has(msg, "1 NaN/Inf")) << msg;
}

TEST(ModelCheckpoint, QuantizedDtypeIsRefused) {
  std::string msg = load_error(crafted("int8", [](auto& w) {
    w["model.layers.0.mlp.down_proj.weight"] = torch::zeros({16, 24}, torch::kInt8);
  })->path);
  EXPECT_TRUE(has(msg, "[model.layers.0.mlp.down_proj.weight]")) << msg;
  EXPECT_TRUE(has(msg, "I8")) << msg;
}

// GPTQ's layout with a config.json that does not say so (quantize_config.json apart): named as
// quantized, not as a checkpoint missing its weights.
TEST(ModelCheckpoint, QuantizedLayoutWithoutItsConfigIsNamed) {
  std::string msg = load_error(
      crafted("gptq", [](auto& w) {
        w.erase("model.layers.0.self_attn.q_proj.weight");
        w["model.layers.0.self_attn.q_proj.qweight"] = torch::zeros({4, 16}, torch::kInt8);
        w["model.layers.0.self_attn.q_proj.scales"] = torch::zeros({1, 16}, torch::kFloat16);
      })->path);
  EXPECT_TRUE(has(msg, "a quantized checkpoint")) << msg;
  EXPECT_TRUE(has(msg, "model.layers.0.self_attn.q_proj.")) << msg;
  EXPECT_FALSE(has(msg, "missing tensor")) << msg;
}

TEST(ModelCheckpoint, Bf16SourceLoadsAsFp32) {
  auto tmp = crafted("bf16", [](auto& w) {
    for (auto& kv : w) kv.second = kv.second.to(torch::kBFloat16);
  });
  const std::string& dir = tmp->path;
  auto m = Model::load(dir);
  EXPECT_EQ(m->dtype(), torch::kFloat32);
  auto src = lorank::SafetensorsFile(dir + "/model.safetensors");
  auto want = read_tensor(src, "model.layers.0.mlp.gate_proj.weight").to(torch::kFloat32);
  EXPECT_TRUE(torch::equal(m->find_linear("model.layers.0.mlp.gate_proj")->weight, want));
}

TEST(ModelCheckpoint, PickleOnlyFolderIsRefused) {
  TempDir tmp("pickle");
  const std::string& dir = tmp.path;
  write_file(dir + "/config.json", tiny_config_json("llama"));
  write_file(dir + "/pytorch_model.bin", "PK\x03\x04 not really a zip");
  std::string msg = load_error(dir);
  EXPECT_TRUE(has(msg, "pytorch_model.bin")) << msg;
  EXPECT_TRUE(has(msg, "safetensors")) << msg;
}

TEST(ModelCheckpoint, ExtraRotaryBufferIsIgnored) {
  auto m = Model::load(crafted("inv_freq", [](auto& w) {
    w["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch::ones({2});
  })->path);
  EXPECT_EQ(m->config().n_layer, 2);
}

TEST(ModelCheckpoint, Qwen2LoadsQkvBias) {
  std::string cfg_json = tiny_config_json("qwen2");
  auto cfg = lorank::parse_model_config(cfg_json, "config.json");
  auto w = random_weights(cfg, 2);
  TempDir tmp("qwen2");
  const std::string& dir = tmp.path;
  write_checkpoint(dir, cfg_json, w);
  auto m = Model::load(dir);
  auto* q = m->find_linear("model.layers.1.self_attn.q_proj");
  ASSERT_TRUE(q->bias.defined());
  EXPECT_TRUE(torch::equal(q->bias, w["model.layers.1.self_attn.q_proj.bias"]));
  EXPECT_FALSE(m->find_linear("model.layers.1.self_attn.o_proj")->bias.defined());
  // The bias takes part: zeroing it changes the logits.
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 32, {1, 6}, torch::kInt64);
  auto a = m->forward(ids);
  q->bias.zero_();
  EXPECT_GT((a - m->forward(ids)).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(m->parameter_counts().total(), lorank::count_parameters(cfg).total());
}

TEST(ModelCheckpoint, Qwen3NormsQueriesAndKeysPerHead) {
  std::string cfg_json = tiny_config_json("qwen3", R"(, "head_dim": 8)");
  auto cfg = lorank::parse_model_config(cfg_json, "config.json");
  ASSERT_EQ(cfg.q_dim(), 32);  // != hidden_size
  auto w = random_weights(cfg, 3);
  TempDir tmp("qwen3");
  const std::string& dir = tmp.path;
  write_checkpoint(dir, cfg_json, w);
  auto m = Model::load(dir);
  EXPECT_EQ(m->find_linear("model.layers.0.self_attn.q_proj")->d_out(), 32);
  EXPECT_EQ(m->find_linear("model.layers.0.self_attn.o_proj")->d_in(), 32);
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 32, {1, 6}, torch::kInt64);
  auto a = m->forward(ids);
  // Scaling q_proj by 3 is undone by q_norm (up to eps): per-head RMSNorm sits before RoPE.
  m->find_linear("model.layers.0.self_attn.q_proj")->weight.mul_(3.0);
  EXPECT_LE((a - m->forward(ids)).abs().max().item<double>(), 1e-4);
  // Missing q_norm is an error naming it.
  w.erase("model.layers.1.self_attn.k_norm.weight");
  TempDir bad("qwen3-bad");
  write_checkpoint(bad.path, cfg_json, w);
  EXPECT_TRUE(has(load_error(bad.path), "model.layers.1.self_attn.k_norm.weight"));
}

TEST(ModelCheckpoint, MistralSlidingWindowMasksFarKeys) {
  std::string cfg_json = tiny_config_json("mistral", R"(, "sliding_window": 4)");
  auto cfg = lorank::parse_model_config(cfg_json, "config.json");
  cfg.n_layer = 1;  // one layer: a query sees exactly its window
  auto w = random_weights(cfg, 4);
  TempDir tmp("mistral");
  const std::string& dir = tmp.path;
  write_checkpoint(dir, R"({"model_type": "mistral", "vocab_size": 32, "hidden_size": 16,
    "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 24, "sliding_window": 4})", w);
  auto m = Model::load(dir);
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 32, {1, 10}, torch::kInt64);
  auto a = m->forward(ids);
  auto changed = ids.clone();
  changed[0][2] = (changed[0][2].item<int64_t>() + 1) % 32;
  auto b = m->forward(changed);
  auto diff = (a - b).abs().amax(-1)[0];  // (T)
  // Position i sees keys i-3..i: token 2 reaches positions 2..5 only.
  for (int64_t i = 0; i < 10; ++i) {
    if (i >= 2 && i <= 5) {
      EXPECT_GT(diff[i].item<double>(), 1e-5) << i;
    } else {
      EXPECT_EQ(diff[i].item<double>(), 0.0) << i;
    }
  }
}

// Independent scalar transcription of the llama3 rule (Meta's apply_scaling).
TEST(Rope, Llama3ScalingMatchesScalarFormula) {
  auto cfg = lorank::load_model_config(asset("configs/llama-3.2-1b.json"));
  auto got = lorank::rope_inv_freq(cfg, 16);
  ASSERT_EQ(got.size(0), 32);
  const double low_wl = 8192 / 1.0, high_wl = 8192 / 4.0, factor = 32.0;
  int n_scaled = 0, n_kept = 0, n_smooth = 0;
  for (int64_t i = 0; i < 32; ++i) {
    double f = 1.0 / std::pow(500000.0, (2.0 * i) / 64.0);
    double wl = 2 * M_PI / f, want;
    if (wl < high_wl) {
      want = f, ++n_kept;
    } else if (wl > low_wl) {
      want = f / factor, ++n_scaled;
    } else {
      double s = (8192 / wl - 1.0) / (4.0 - 1.0);
      want = (1 - s) * f / factor + s * f, ++n_smooth;
    }
    EXPECT_NEAR(got[i].item<double>(), want, 1e-6 * want) << i;
  }
  EXPECT_GT(n_scaled, 0);
  EXPECT_GT(n_kept, 0);
  EXPECT_GT(n_smooth, 0);
}

TEST(Rope, LinearAndDynamicScaling) {
  auto base = lorank::parse_model_config(tiny_config_json("llama"), "config.json");
  auto plain = lorank::rope_inv_freq(base, 16);
  EXPECT_NEAR(plain[1].item<double>(), 1.0 / std::pow(10000.0, 0.5), 1e-7);  // head_dim 4
  auto linear = base;
  linear.rope.type = "linear";
  linear.rope.factor = 4.0;
  EXPECT_TRUE(torch::allclose(lorank::rope_inv_freq(linear, 16), plain / 4.0));
  auto dynamic = base;
  dynamic.rope.type = "dynamic";
  dynamic.rope.factor = 2.0;
  dynamic.rope.original_max_pos = 64;
  EXPECT_TRUE(torch::equal(lorank::rope_inv_freq(dynamic, 64), plain));  // within context
  // Beyond it the base grows: base * (2 * 128 / 64 - 1)^(4 / 2) = base * 9.
  double want = 1.0 / std::pow(10000.0 * 9.0, 0.5);
  EXPECT_NEAR(lorank::rope_inv_freq(dynamic, 128)[1].item<double>(), want, 1e-7);
}
