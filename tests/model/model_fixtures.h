// Helpers for the model tests: the tiny-llama folder, golden files, crafted checkpoints.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include <torch/torch.h>

#include "files.h"
#include "model.h"
#include "safetensors.h"
#include "test_common.h"

namespace lorank::test {

// A temp dir removed when the test ends.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag) : path(make_temp_dir(tag)) {}
  ~TempDir() { lorank::remove_tree(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// assets/tiny-llama in the repo, else ../shared/models/tiny-llama, else "".
inline std::string tiny_llama_dir() {
  std::string repo = repo_path("assets/tiny-llama");
  if (std::filesystem::exists(repo + "/model.safetensors")) return repo;
  return shared_path("models/tiny-llama");
}

// One loaded copy per process: loading is the slow part of most tests.
inline Model& tiny_llama() {
  static std::unique_ptr<Model> model = Model::load(tiny_llama_dir());
  return *model;
}

// A tensor from a safetensors file as a torch tensor (copied).
inline torch::Tensor read_tensor(const SafetensorsFile& f, const std::string& name) {
  const TensorView& v = f.tensor(name);
  torch::ScalarType t = v.dtype == Dtype::I64   ? torch::kInt64
                        : v.dtype == Dtype::F32 ? torch::kFloat32
                        : v.dtype == Dtype::BF16 ? torch::kBFloat16
                                                 : torch::kFloat16;
  return torch::from_blob(const_cast<uint8_t*>(v.data), v.shape, torch::dtype(t)).clone();
}

inline Dtype st_dtype(torch::ScalarType t) {
  if (t == torch::kFloat32) return Dtype::F32;
  if (t == torch::kBFloat16) return Dtype::BF16;
  if (t == torch::kFloat16) return Dtype::F16;
  if (t == torch::kInt8) return Dtype::I8;
  return Dtype::I64;
}

// Writes <dir>/config.json and <dir>/model.safetensors from tensors.
inline void write_checkpoint(const std::string& dir, const std::string& config_json,
                             const std::map<std::string, torch::Tensor>& weights) {
  std::filesystem::create_directories(dir);
  write_file(dir + "/config.json", config_json);
  std::vector<torch::Tensor> keep;
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : weights) {
    keep.push_back(t.contiguous());
    const torch::Tensor& c = keep.back();
    TensorToWrite w;
    w.name = name;
    w.view.dtype = st_dtype(c.scalar_type());
    w.view.shape = c.sizes().vec();
    w.view.data = static_cast<const uint8_t*>(c.data_ptr());
    w.view.n_bytes = c.numel() * c.element_size();
    out.push_back(w);
  }
  write_safetensors(dir + "/model.safetensors", out, {{"format", "pt"}}, /*overwrite=*/true);
}

// Random weights for every tensor `cfg` implies, named as HF names them.
inline std::map<std::string, torch::Tensor> random_weights(const ModelConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t V = c.n_vocab, C = c.n_embd, F = c.n_ff, Q = c.q_dim(), KV = c.kv_dim();
  auto lin = [](int64_t o, int64_t i) { return torch::randn({o, i}) * 0.2; };
  auto vec = [](int64_t n) { return torch::randn({n}) * 0.1; };
  auto norm = [](int64_t n) { return 1 + torch::randn({n}) * 0.1; };
  std::map<std::string, torch::Tensor> w;
  w["model.embed_tokens.weight"] = torch::randn({V, C});
  w["model.norm.weight"] = norm(C);
  if (!c.tie_word_embeddings) w["lm_head.weight"] = lin(V, C);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    w[p + "input_layernorm.weight"] = norm(C);
    w[p + "post_attention_layernorm.weight"] = norm(C);
    w[p + "self_attn.q_proj.weight"] = lin(Q, C);
    w[p + "self_attn.k_proj.weight"] = lin(KV, C);
    w[p + "self_attn.v_proj.weight"] = lin(KV, C);
    w[p + "self_attn.o_proj.weight"] = lin(C, Q);
    w[p + "mlp.gate_proj.weight"] = lin(F, C);
    w[p + "mlp.up_proj.weight"] = lin(F, C);
    w[p + "mlp.down_proj.weight"] = lin(C, F);
    if (c.qkv_bias) {
      w[p + "self_attn.q_proj.bias"] = vec(Q);
      w[p + "self_attn.k_proj.bias"] = vec(KV);
      w[p + "self_attn.v_proj.bias"] = vec(KV);
    }
    if (c.qk_norm) {
      w[p + "self_attn.q_norm.weight"] = norm(c.head_dim);
      w[p + "self_attn.k_norm.weight"] = norm(c.head_dim);
    }
  }
  return w;
}

// config.json for a crafted model: V 32, C 16, 2 layers, 4 heads / 2 kv heads of 4, F 24.
inline std::string tiny_config_json(const std::string& model_type, const std::string& extra = "") {
  return R"({"model_type": ")" + model_type + R"(", "vocab_size": 32, "hidden_size": 16,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 24, "rms_norm_eps": 1e-5, "max_position_embeddings": 64,
    "tie_word_embeddings": false)" + extra + "}";
}

}  // namespace lorank::test
