// LoRA adapters on the model's hookable linears, with PEFT's semantics: which modules a
// target/rank_pattern/alpha_pattern key matches, scaling alpha/r or alpha/sqrt(r) (rsLoRA),
// A kaiming-uniform and B zero at init, and adapter_model.safetensors + adapter_config.json files
// that PeftModel.from_pretrained loads.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lorank {

class Model;
struct Linear;

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16;
  bool rslora = false;  // scale alpha/sqrt(r) instead of alpha/r
  double dropout = 0.0;
  // PEFT target_modules: module-name suffixes ("q_proj", "self_attn.q_proj") or "all-linear"
  // (every decoder linear, never lm_head).
  std::vector<std::string> target_modules = {"all-linear"};
  std::map<std::string, int64_t> rank_pattern;  // PEFT key rules: suffix or regex on module path
  std::map<std::string, double> alpha_pattern;
};

// PEFT's key rule for rank_pattern/alpha_pattern/target_modules entries against an HF module path
// ("model.layers.0.self_attn.q_proj"): returns whether `key` selects `module_name`.
bool peft_key_matches(const std::string& key, const std::string& module_name);

// One module's adapter: y + scale * B(A(dropout(x))).
struct LoraModule {
  std::string name;  // HF module path
  int64_t r = 0;
  double alpha = 0, scale = 0;
  torch::Tensor A;  // (r, d_in), trainable
  torch::Tensor B;  // (d_out, r), trainable
};

class LoraAdapters {
 public:
  // Creates adapters on every matching linear of `model` and installs them as hooks. Init as PEFT:
  // A ~ kaiming_uniform(a=sqrt(5)) from a generator seeded with `seed`, B = 0. Adapters are fp32.
  static std::unique_ptr<LoraAdapters> attach(Model& model, const LoraConfig& cfg, uint64_t seed);
  // Loads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) onto `model`.
  static std::unique_ptr<LoraAdapters> load_peft(Model& model, const std::string& dir);
  ~LoraAdapters();  // removes the hooks it installed

  // Writes adapter_config.json and adapter_model.safetensors exactly as PEFT names and shapes
  // them. Refuses to overwrite existing files unless `overwrite`.
  void save_peft(const std::string& dir, const std::string& base_model_path,
                 bool overwrite = false) const;

  const LoraConfig& config() const { return cfg_; }
  std::vector<LoraModule>& modules() { return modules_; }
  std::vector<torch::Tensor> parameters() const;  // A and B of every module
  int64_t n_trainable() const;
  void set_training(bool training);  // dropout only in training
  // PEFT key names: "base_model.model.<module>.lora_A.weight" -> tensor (CPU copies).
  std::map<std::string, torch::Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, torch::Tensor>& tensors, const std::string& where);

 private:
  LoraAdapters(Model& model, LoraConfig cfg);
  Model& model_;
  LoraConfig cfg_;
  std::vector<LoraModule> modules_;
  std::vector<Linear*> hooked_;
  bool training_ = false;
};

}  // namespace lorank
