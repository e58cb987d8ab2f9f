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
class LinearHook;
struct Linear;

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16;
  bool rslora = false;  // scale alpha/sqrt(r) instead of alpha/r
  double dropout = 0.0;
  // PEFT target_modules as a list: module-name suffixes ("q_proj", "self_attn.q_proj"), or the
  // single entry "all-linear" (every decoder linear, never lm_head).
  std::vector<std::string> target_modules = {"all-linear"};
  // PEFT target_modules as a string: a regex that must match the whole module path. When set, it
  // replaces target_modules.
  std::string target_regex;
  // PEFT key rules (peft_key_matches); keys are tried in sorted order, as PEFT tries the keys of
  // a saved adapter_config.json (json.dumps sort_keys=True), and the first match wins.
  std::map<std::string, int64_t> rank_pattern;
  std::map<std::string, double> alpha_pattern;
};

// rank_pattern/alpha_pattern rule (PEFT get_pattern_key): `key` is a Python-style regex and selects
// `module_name` when re.match(r"(.*\.)?(key)$", module_name) does. Bad regex -> lorank::Error.
bool peft_key_matches(const std::string& key, const std::string& module_name);
// target_modules rule (PEFT check_target_module_exists): with target_regex, a full regex match;
// otherwise module_name equals an entry or ends with "." + entry. "all-linear" is not expanded
// here.
bool peft_target_matches(const LoraConfig& cfg, const std::string& module_name);
// Rank and alpha of one module after rank_pattern/alpha_pattern, and the resulting scale.
int64_t lora_rank_for(const LoraConfig& cfg, const std::string& module_name);
double lora_alpha_for(const LoraConfig& cfg, const std::string& module_name);
double lora_scale(const LoraConfig& cfg, int64_t r, double alpha);
// PEFT _find_minimal_target_modules: the fewest suffixes that select every `targets` entry and no
// `others` name (sorted). PEFT saves this instead of the list once it has >= 20 entries.
std::vector<std::string> peft_minimal_target_modules(const std::vector<std::string>& targets,
                                                     const std::vector<std::string>& others);

// PEFT 0.21's adapter_config.json for `cfg` (sorted keys, as json.dumps(indent=2, sort_keys=True)).
// target_modules is cfg.target_regex when set, else `target_names` as given. PEFT saves adapters
// with inference_mode true; a config meant for training needs false, or get_peft_model freezes it.
std::string peft_config_json(const LoraConfig& cfg, const std::vector<std::string>& target_names,
                             const std::string& base_model_path, bool inference_mode);

// The linears of `model` that `cfg` targets, in HF module order; throws when a key matches no
// linear or selects a module LoRA cannot wrap here (embeddings, norms, whole blocks).
std::vector<Linear*> lora_targets(Model& model, const LoraConfig& cfg);
// Every target_modules entry and every rank_pattern/alpha_pattern key selects a module `cfg`
// adapts: PEFT passes over a key that matches nothing, so a typo would train the wrong adapter
// silently. `source` names where cfg came from (an adapter_config.json), or "" for the flags.
void check_every_key_matches(Model& model, const LoraConfig& cfg, const std::string& source);

// One module's adapter: y + scale * B(A(dropout(x))).
struct LoraModule {
  std::string name;  // HF module path
  int64_t r = 0;
  double alpha = 0, scale = 0;
  torch::Tensor A;  // (r, d_in), trainable
  torch::Tensor B;  // (d_out, r), trainable
};

// PEFT lora.Linear.forward for one module: x is cast to the adapter dtype, the update
// scale * B(A(dropout(x))) is added to y, and the sum is cast back to y's dtype.
torch::Tensor lora_apply(const LoraModule& m, const torch::Tensor& x, const torch::Tensor& y,
                         double dropout, bool training);

class LoraAdapters {
 public:
  // Creates adapters on every matching linear of `model` and installs them as hooks. Init as PEFT:
  // A ~ kaiming_uniform(a=sqrt(5)) from a CPU generator seeded with `seed` (so CPU and CUDA get
  // the same A), B = 0. Adapters are fp32 on the model's device. `model` must outlive the adapters.
  static std::unique_ptr<LoraAdapters> attach(Model& model, const LoraConfig& cfg, uint64_t seed);
  // Loads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) onto `model`.
  static std::unique_ptr<LoraAdapters> load_peft(Model& model, const std::string& dir);
  // Parses a PEFT adapter_config.json; refuses options that change the forward pass and that
  // lorank does not implement (DoRA, biases, layers_to_transform, ...).
  static LoraConfig read_peft_config(const std::string& path);
  ~LoraAdapters();  // removes the hooks it installed
  LoraAdapters(const LoraAdapters&) = delete;
  LoraAdapters& operator=(const LoraAdapters&) = delete;

  // Writes adapter_config.json and adapter_model.safetensors exactly as PEFT names and shapes
  // them. Refuses to overwrite existing files unless `overwrite`.
  void save_peft(const std::string& dir, const std::string& base_model_path,
                 bool overwrite = false) const;
  // The adapter_config.json that save_peft writes (PEFT 0.21's fields, sorted keys).
  std::string peft_config_json(const std::string& base_model_path) const;

  const LoraConfig& config() const { return cfg_; }
  std::vector<LoraModule>& modules() { return modules_; }
  const std::vector<LoraModule>& modules() const { return modules_; }
  std::vector<torch::Tensor> parameters() const;  // A and B of every module
  int64_t n_trainable() const;
  void set_training(bool training);  // dropout only in training
  bool training() const { return training_; }
  // PEFT key names: "base_model.model.<module>.lora_A.weight" -> tensor (CPU copies).
  std::map<std::string, torch::Tensor> state_dict() const;
  // Copies every module's A and B from `tensors` (PEFT key names) in place; `where` names the
  // source in errors. Missing, unknown or wrongly shaped tensors are errors.
  void load_state_dict(const std::map<std::string, torch::Tensor>& tensors,
                       const std::string& where);

 private:
  class Hook;
  LoraAdapters(Model& model, LoraConfig cfg);
  void install_hooks();

  Model& model_;
  LoraConfig cfg_;
  std::vector<LoraModule> modules_;
  std::vector<Linear*> hooked_;
  std::vector<std::shared_ptr<LinearHook>> hooks_;       // ours, one per hooked_ entry
  std::vector<std::shared_ptr<LinearHook>> prev_hooks_;  // what each linear held before
  bool training_ = false;
};

}  // namespace lorank
