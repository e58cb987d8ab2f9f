#include "lora.h"

#include <ATen/CPUGeneratorImpl.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

#include "compat.h"
#include "error.h"
#include "files.h"
#include "model.h"
#include "progress.h"
#include "safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace lorank {

namespace {

const char* const kKeyPrefix = "base_model.model.";  // PeftModel -> LoraModel -> HF model
const char* const kConfigName = "adapter_config.json";
const char* const kWeightsName = "adapter_model.safetensors";
// PEFT condenses target_modules to minimal suffixes from this many entries on (constants.py).
const size_t kMinTargetsForOptimization = 20;

// Python `re` semantics through PCRE2: `anchored` = re.match, `anchored` + `end_anchored` =
// re.fullmatch. PCRE2's defaults (no DOLLAR_ENDONLY, no multiline) agree with Python's.
bool regex_matches(const std::string& pattern, const std::string& subject, bool end_anchored,
                   const std::string& where) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0,
                                   &err, &err_offset, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    fail(where, "invalid regular expression", "a Python-style regex",
         "'" + pattern + "' (" + reinterpret_cast<char*>(buf) + " at offset " +
             std::to_string(err_offset) + ")",
         "PEFT treats target_modules strings and rank_pattern/alpha_pattern keys as regexes; "
         "escape special characters");
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  uint32_t opts = PCRE2_ANCHORED | (end_anchored ? PCRE2_ENDANCHORED : 0);
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, opts,
                       md, nullptr);
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return rc >= 0;
}

bool is_all_linear(const LoraConfig& cfg) {
  return cfg.target_regex.empty() && cfg.target_modules.size() == 1 &&
         cfg.target_modules[0] == "all-linear";
}

template <class V>
V pattern_value(const std::map<std::string, V>& pattern, const std::string& name, V fallback) {
  for (const auto& [key, value] : pattern) {
    if (peft_key_matches(key, name)) return value;
  }
  auto it = pattern.find(name);  // get_pattern_key falls back to the name itself
  return it == pattern.end() ? fallback : it->second;
}

// "a.b.c" -> {"c", "b.c", "a.b.c"}, as PEFT's generate_suffixes.
std::vector<std::string> suffixes_of(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = s.size();
  while (true) {
    size_t dot = s.rfind('.', pos == 0 ? 0 : pos - 1);
    if (dot == std::string::npos || pos == 0) {
      out.push_back(s);
      return out;
    }
    out.push_back(s.substr(dot + 1));
    pos = dot;
  }
}

void validate_config(const LoraConfig& cfg, const std::string& where) {
  const std::string hint = "LoRA ranks are positive integers such as 8 or 16";
  if (cfg.r <= 0) fail(where, "r must be positive", "r >= 1", std::to_string(cfg.r), hint);
  for (const auto& [key, r] : cfg.rank_pattern) {
    if (r <= 0)
      fail(where + " [rank_pattern." + key + "]", "rank must be positive", ">= 1",
           std::to_string(r), hint);
  }
  // alpha 0 scales the update to nothing: training would move no weight and say nothing
  const std::string alpha_hint = "lora_alpha is a positive scale, such as 16 or twice r";
  if (!(cfg.alpha > 0 && std::isfinite(cfg.alpha)))
    fail(where, "lora_alpha must be positive", "> 0", format_exact(cfg.alpha), alpha_hint);
  for (const auto& [key, alpha] : cfg.alpha_pattern) {
    if (!(alpha > 0 && std::isfinite(alpha)))
      fail(where + " [alpha_pattern." + key + "]", "alpha must be positive", "> 0",
           format_exact(alpha), alpha_hint);
  }
  if (!(cfg.dropout >= 0.0 && cfg.dropout < 1.0)) {
    fail(where, "lora_dropout out of range", "0 <= dropout < 1", std::to_string(cfg.dropout),
         "use 0 (no dropout) or a small value such as 0.05");
  }
  const bool has_all = std::count(cfg.target_modules.begin(), cfg.target_modules.end(),
                                  std::string("all-linear")) > 0;
  if (has_all && cfg.target_modules.size() > 1) {
    fail(where, "all-linear cannot be combined with other target modules", "[\"all-linear\"]",
         std::to_string(cfg.target_modules.size()) + " entries",
         "use all-linear alone, or list the module suffixes you want");
  }
  if (cfg.target_regex.empty() && cfg.target_modules.empty()) {
    fail(where, "no target modules", "at least one module suffix or all-linear", "none",
         "pass e.g. q_proj,v_proj or all-linear");
  }
}

// Module paths HF's named_modules() lists besides the linears: what a target key must not pick
// (LoRA cannot wrap them here) and what PEFT's target-list condensing must keep apart.
std::vector<std::string> non_linear_module_names(Model& model) {
  std::set<std::string> names = {"model", "model.embed_tokens", "model.layers", "model.norm",
                                 "model.rotary_emb"};
  for (Linear* lin : model.linears()) {
    const std::string& n = lin->name;
    for (size_t dot = n.find('.'); dot != std::string::npos; dot = n.find('.', dot + 1)) {
      names.insert(n.substr(0, dot));
    }
    if (lin->layer < 0) continue;
    const std::string layer = "model.layers." + std::to_string(lin->layer);
    for (const char* child : {".input_layernorm", ".post_attention_layernorm", ".mlp.act_fn"}) {
      names.insert(layer + child);
    }
    if (model.config().qk_norm) {
      names.insert(layer + ".self_attn.q_norm");
      names.insert(layer + ".self_attn.k_norm");
    }
  }
  return {names.begin(), names.end()};
}

std::string describe_targets(const LoraConfig& cfg) {
  return cfg.target_regex.empty() ? "[" + join(cfg.target_modules, ", ") + "]"
                                  : "'" + cfg.target_regex + "'";
}

torch::ScalarType torch_dtype_of(Dtype dtype, const std::string& where) {
  switch (dtype) {
    case Dtype::F32:
      return torch::kFloat32;
    case Dtype::F16:
      return torch::kFloat16;
    case Dtype::BF16:
      return torch::kBFloat16;
    case Dtype::F64:
      return torch::kFloat64;
    default:
      fail(where, "unsupported adapter tensor dtype", "F32, F16, BF16 or F64", dtype_name(dtype),
           "re-save the adapter with PEFT in a floating-point dtype");
  }
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

// Says why `key` is not one of the adapter's tensors: not LoRA A/B, a module the model lacks, or
// a module the config does not target.
[[noreturn]] void fail_unexpected_tensor(Model& model, const LoraConfig& cfg,
                                         const std::string& key, const std::string& where) {
  const std::string at = where + " [" + key + "]";
  const std::string prefix = kKeyPrefix;
  std::string module;
  for (const char* suffix : {".lora_A.weight", ".lora_B.weight"}) {
    if (key.rfind(prefix, 0) == 0 && ends_with(key, suffix)) {
      module = key.substr(prefix.size(), key.size() - prefix.size() - std::string(suffix).size());
    }
  }
  if (module.empty()) {
    fail(at, "not a LoRA tensor lorank can load",
         "base_model.model.<module>.lora_A.weight or .lora_B.weight", key,
         "DoRA, biases, embeddings and modules_to_save are not supported; merge the adapter with "
         "PEFT instead");
  }
  if (!model.find_linear(module)) {
    fail(at, "unknown target: the model has no linear '" + module + "'", "a module of this model",
         module,
         "the adapter was trained on another model; load it onto the base model named in "
         "adapter_config.json (base_model_name_or_path)");
  }
  fail(at, "tensor for a module that target_modules does not select",
       "modules matching " + describe_targets(cfg), module,
       "adapter_config.json and adapter_model.safetensors disagree; re-save the adapter");
}

// target_modules as PEFT saves them when given as a list: all-linear as the module paths it
// selected; the list condensed to minimal suffixes once it has 20 entries. Empty for a regex.
std::vector<std::string> saved_target_names(Model& model, const LoraConfig& cfg,
                                            const std::vector<LoraModule>& modules) {
  if (!cfg.target_regex.empty()) return {};
  std::set<std::string> unique;
  if (is_all_linear(cfg)) {
    for (const auto& m : modules) unique.insert(m.name);
  } else {
    unique.insert(cfg.target_modules.begin(), cfg.target_modules.end());
  }
  std::vector<std::string> names(unique.begin(), unique.end());
  if (names.size() < kMinTargetsForOptimization) return names;
  std::vector<std::string> all = non_linear_module_names(model), others;
  for (Linear* lin : model.linears()) all.push_back(lin->name);
  all.push_back(model.lm_head().name);
  for (const auto& n : all) {
    const bool targeted =
        unique.count(n) || std::any_of(names.begin(), names.end(),
                                       [&](const std::string& t) { return ends_with(n, "." + t); });
    if (!targeted) others.push_back(n);
  }
  return peft_minimal_target_modules(names, others);
}

json number_json(double v) {
  if (std::floor(v) == v && std::fabs(v) < 9.0e15) return json(static_cast<int64_t>(v));
  return json(v);
}

}  // namespace

bool peft_key_matches(const std::string& key, const std::string& module_name) {
  return regex_matches("(.*\\.)?(" + key + ")$", module_name, false,
                       "LoRA rank_pattern/alpha_pattern key '" + key + "'");
}

bool peft_target_matches(const LoraConfig& cfg, const std::string& module_name) {
  if (!cfg.target_regex.empty()) {
    return regex_matches(cfg.target_regex, module_name, true, "LoRA target_modules");
  }
  for (const auto& key : cfg.target_modules) {
    if (module_name == key || ends_with(module_name, "." + key)) return true;
  }
  return false;
}

int64_t lora_rank_for(const LoraConfig& cfg, const std::string& module_name) {
  return pattern_value(cfg.rank_pattern, module_name, cfg.r);
}

double lora_alpha_for(const LoraConfig& cfg, const std::string& module_name) {
  return pattern_value(cfg.alpha_pattern, module_name, cfg.alpha);
}

double lora_scale(const LoraConfig& cfg, int64_t r, double alpha) {
  return cfg.rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

std::vector<std::string> peft_minimal_target_modules(const std::vector<std::string>& targets,
                                                     const std::vector<std::string>& others) {
  std::set<std::string> target_set(targets.begin(), targets.end());
  if (target_set.empty() || target_set.count("")) {
    fail("LoRA target_modules", "cannot condense an empty target list", "non-empty names",
         std::to_string(targets.size()) + " entries");
  }
  for (const auto& o : others) {
    if (target_set.count(o)) {
      fail("LoRA target_modules", "a name is both a target and a non-target", "disjoint lists", o);
    }
  }
  std::set<std::string> other_suffixes;
  for (const auto& o : others) {
    for (auto& s : suffixes_of(o)) other_suffixes.insert(std::move(s));
  }
  std::vector<std::pair<std::vector<std::string>, std::string>> items;
  for (const auto& t : target_set) items.emplace_back(suffixes_of(t), t);
  std::sort(items.begin(), items.end());  // PEFT sorts by the suffix lists: deterministic choice
  std::set<std::string> required;
  for (const auto& [suffixes, item] : items) {
    for (const auto& suffix : suffixes) {
      if (required.count(suffix) || other_suffixes.count(suffix)) continue;
      bool covered = std::any_of(required.begin(), required.end(), [&](const std::string& req) {
        return ends_with(item, "." + req);
      });
      if (!covered) {
        required.insert(suffix);
        break;
      }
    }
  }
  const auto& out = required.empty() ? target_set : required;
  return {out.begin(), out.end()};
}

namespace {

const char* const k_target_expected =
    "module suffixes such as q_proj, self_attn.o_proj or mlp.down_proj";
const char* const k_target_hint =
    "this model's linears are q_proj k_proj v_proj o_proj gate_proj up_proj down_proj and "
    "lm_head; all-linear selects all but lm_head";

// Every linear target_modules may name, in HF module order: the blocks', then the output head.
std::vector<Linear*> linears_and_head(Model& model) {
  std::vector<Linear*> all = model.linears();
  all.push_back(&model.lm_head());
  return all;
}

}  // namespace

std::vector<Linear*> lora_targets(Model& model, const LoraConfig& cfg) {
  validate_config(cfg, "LoRA config");
  if (is_all_linear(cfg)) return model.linears();  // PEFT's all-linear never takes the output head
  for (const auto& name : non_linear_module_names(model)) {
    if (peft_target_matches(cfg, name)) {
      fail("LoRA target_modules " + describe_targets(cfg),
           "selects '" + name + "', which is not a linear layer",
           "keys that select q/k/v/o_proj, gate/up/down_proj "
           "or lm_head",
           name, "use a module suffix such as self_attn.q_proj or mlp.down_proj");
    }
  }
  std::vector<Linear*> out;
  for (Linear* lin : linears_and_head(model)) {
    if (peft_target_matches(cfg, lin->name)) out.push_back(lin);
  }
  if (out.empty()) {
    fail("LoRA target_modules", "matched no linear layer of the model", k_target_expected,
         describe_targets(cfg), k_target_hint);
  }
  return out;
}

namespace {

template <typename V>
void check_pattern_keys(const std::map<std::string, V>& pattern,
                        const std::vector<Linear*>& targets, const std::string& where) {
  for (const auto& kv : pattern) {
    bool hit = false;
    for (const Linear* lin : targets) hit = hit || peft_key_matches(kv.first, lin->name);
    if (!hit) {
      fail(where,
           "key '" + kv.first + "' selects none of the " + std::to_string(targets.size()) +
               " adapted modules",
           "a module suffix or regex such as q_proj or model.layers.0.mlp.down_proj", kv.first,
           "check the spelling: PEFT would ignore the key and train every module at the global "
           "value");
    }
  }
}

}  // namespace

void check_every_key_matches(Model& model, const LoraConfig& cfg, const std::string& source) {
  const std::vector<Linear*> targets = lora_targets(model, cfg);
  if (cfg.target_regex.empty() && !is_all_linear(cfg)) {
    const std::vector<Linear*> all = linears_and_head(model);
    for (const auto& t : cfg.target_modules) {
      LoraConfig one = cfg;
      one.target_modules = {t};
      bool hit = false;
      for (const Linear* lin : all) hit = hit || peft_target_matches(one, lin->name);
      if (!hit) {
        fail(source.empty() ? "--targets" : source,
             "'" + t + "' matches no linear layer of the model", k_target_expected, t,
             k_target_hint);
      }
    }
  }
  check_pattern_keys(cfg.rank_pattern, targets, source.empty() ? "--rank-pattern" : source);
  check_pattern_keys(cfg.alpha_pattern, targets, source.empty() ? "--alpha-pattern" : source);
}

torch::Tensor lora_apply(const LoraModule& m, const torch::Tensor& x, const torch::Tensor& y,
                         double dropout, bool training) {
  const bool drop = dropout > 0.0 && training;
  // Under autocast the fp32 copy of x would be cast straight back to bf16 by linear: skip both.
  const bool keep_dtype = !drop && x.is_cuda() && compat::cuda_autocast_enabled();
  torch::Tensor h = keep_dtype ? x : x.to(m.A.scalar_type());
  if (drop) h = torch::dropout(h, dropout, true);
  torch::Tensor delta = torch::linear(torch::linear(h, m.A), m.B) * m.scale;
  return (y + delta).to(y.scalar_type());  // y + delta promotes as PEFT's `result + ...` does
}

// Installed on a Linear; adds its module's update, then hands over to the hook it replaced.
class LoraAdapters::Hook : public LinearHook {
 public:
  Hook(const LoraAdapters* owner, size_t index, std::shared_ptr<LinearHook> prev)
      : owner_(owner), index_(index), prev_(std::move(prev)) {}
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor y) override {
    if (owner_) {
      y = lora_apply(owner_->modules_[index_], x, y, owner_->cfg_.dropout, owner_->training_);
    }
    return prev_ ? prev_->forward(x, std::move(y)) : y;
  }
  void detach() { owner_ = nullptr; }

 private:
  const LoraAdapters* owner_;  // null once the adapters are gone: pass-through
  size_t index_;
  std::shared_ptr<LinearHook> prev_;
};

LoraAdapters::LoraAdapters(Model& model, LoraConfig cfg) : model_(model), cfg_(std::move(cfg)) {}

LoraAdapters::~LoraAdapters() {
  for (size_t i = 0; i < hooks_.size(); ++i) {
    static_cast<Hook*>(hooks_[i].get())->detach();
    // Unhook only where ours is still outermost; a hook installed later keeps a pass-through.
    if (hooked_[i]->hook == hooks_[i]) hooked_[i]->hook = prev_hooks_[i];
  }
}

void LoraAdapters::install_hooks() {
  for (size_t i = 0; i < hooked_.size(); ++i) {
    prev_hooks_.push_back(hooked_[i]->hook);
    hooks_.push_back(std::make_shared<Hook>(this, i, hooked_[i]->hook));
    hooked_[i]->hook = hooks_.back();
  }
}

std::unique_ptr<LoraAdapters> LoraAdapters::attach(Model& model, const LoraConfig& cfg,
                                                   uint64_t seed) {
  std::vector<Linear*> targets = lora_targets(model, cfg);
  std::unique_ptr<LoraAdapters> ad(new LoraAdapters(model, cfg));
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const double a = std::sqrt(5.0);  // nn.Linear's default, which PEFT keeps for A
  for (Linear* lin : targets) {
    LoraModule m;
    m.name = lin->name;
    m.r = lora_rank_for(cfg, lin->name);
    m.alpha = lora_alpha_for(cfg, lin->name);
    m.scale = lora_scale(cfg, m.r, m.alpha);
    // torch.nn.init.kaiming_uniform_(mode="fan_in", nonlinearity="leaky_relu"), same operations.
    const double gain = std::sqrt(2.0 / (1 + a * a));
    const double bound = std::sqrt(3.0) * (gain / std::sqrt(static_cast<double>(lin->d_in())));
    torch::Tensor A = torch::empty({m.r, lin->d_in()}, torch::kFloat32);
    A.uniform_(-bound, bound, gen);
    // On the linear's own device: a split model's adapters are split with it.
    const auto on_device =
        torch::TensorOptions().dtype(torch::kFloat32).device(lin->weight.device());
    m.A = A.to(on_device).detach().requires_grad_(true);
    m.B = torch::zeros({lin->d_out(), m.r}, on_device).requires_grad_(true);
    ad->modules_.push_back(std::move(m));
    ad->hooked_.push_back(lin);
  }
  ad->install_hooks();
  return ad;
}

std::vector<torch::Tensor> LoraAdapters::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& m : modules_) {
    out.push_back(m.A);
    out.push_back(m.B);
  }
  return out;
}

int64_t LoraAdapters::n_trainable() const {
  int64_t n = 0;
  for (const auto& m : modules_) n += m.A.numel() + m.B.numel();
  return n;
}

void LoraAdapters::set_training(bool training) {
  training_ = training;
}

std::map<std::string, torch::Tensor> LoraAdapters::state_dict() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& m : modules_) {
    const std::string base = kKeyPrefix + m.name;
    out[base + ".lora_A.weight"] =
        m.A.detach().to(torch::kCPU, torch::kFloat32).contiguous().clone();
    out[base + ".lora_B.weight"] =
        m.B.detach().to(torch::kCPU, torch::kFloat32).contiguous().clone();
  }
  return out;
}

void LoraAdapters::load_state_dict(const std::map<std::string, torch::Tensor>& tensors,
                                   const std::string& where) {
  std::set<std::string> expected;
  for (const auto& m : modules_) {
    expected.insert(kKeyPrefix + m.name + ".lora_A.weight");
    expected.insert(kKeyPrefix + m.name + ".lora_B.weight");
  }
  for (const auto& [key, t] : tensors) {
    if (!expected.count(key)) fail_unexpected_tensor(model_, cfg_, key, where);
  }
  torch::NoGradGuard no_grad;
  for (auto& m : modules_) {
    for (auto [param, suffix] :
         {std::pair{&m.A, ".lora_A.weight"}, std::pair{&m.B, ".lora_B.weight"}}) {
      const std::string key = kKeyPrefix + m.name + suffix;
      auto it = tensors.find(key);
      if (it == tensors.end()) {
        fail(where + " [" + key + "]", "missing tensor", shape_str(param->sizes().vec()), "absent",
             "the file does not match adapter_config.json (r, target_modules, rank_pattern)");
      }
      if (it->second.sizes() != param->sizes()) {
        fail(where + " [" + key + "]", "wrong shape", shape_str(param->sizes().vec()),
             shape_str(it->second.sizes().vec()),
             "check r/rank_pattern in adapter_config.json and that the base model is the one "
             "the adapter was trained on");
      }
      param->copy_(it->second);
    }
  }
}

std::string peft_config_json(const LoraConfig& cfg, const std::vector<std::string>& target_names,
                             const std::string& base_model_path, bool inference_mode) {
  json target = cfg.target_regex.empty() ? json(target_names) : json(cfg.target_regex);
  json rank_pattern = json::object(), alpha_pattern = json::object();
  for (const auto& [k, v] : cfg.rank_pattern) rank_pattern[k] = v;
  for (const auto& [k, v] : cfg.alpha_pattern) alpha_pattern[k] = number_json(v);
  // Only fields LoraConfig has had since PEFT 0.7 (rank_pattern's first release): PEFT <= 0.13
  // refuses a field it does not know and 0.14-0.20 warn; the fields left out take their defaults.
  json j = {{"alpha_pattern", alpha_pattern},
            {"base_model_name_or_path", base_model_path},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"inference_mode", inference_mode},
            {"init_lora_weights", true},
            {"layers_pattern", nullptr},
            {"layers_to_transform", nullptr},
            {"lora_alpha", number_json(cfg.alpha)},
            {"lora_dropout", cfg.dropout},
            {"modules_to_save", nullptr},
            {"peft_type", "LORA"},
            {"r", cfg.r},
            {"rank_pattern", rank_pattern},
            {"revision", nullptr},
            {"target_modules", target},
            {"task_type", "CAUSAL_LM"},
            {"use_rslora", cfg.rslora}};
  // Sorted keys, indent 2, ASCII: as json.dumps(indent=2, sort_keys=True); a path that is not
  // UTF-8 (a non-UTF-8 working folder) as U+FFFD rather than an exception after training.
  return j.dump(2, ' ', true, nlohmann::json::error_handler_t::replace);
}

std::string LoraAdapters::peft_config_json(const std::string& base_model_path) const {
  return lorank::peft_config_json(cfg_, saved_target_names(model_, cfg_, modules_), base_model_path,
                                  /*inference_mode=*/true);
}

void LoraAdapters::save_peft(const std::string& dir, const std::string& base_model_path,
                             bool overwrite) const {
  const std::string config_path = (fs::path(dir) / kConfigName).string();
  const std::string weights_path = (fs::path(dir) / kWeightsName).string();
  if (!overwrite) {
    for (const auto& p : {config_path, weights_path}) {
      if (fs::exists(p))
        fail(p, "already exists; refusing to overwrite it", "", "",
             "pass --force to overwrite, or --out to write somewhere else");
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    fail(dir, "cannot create the output folder", "", ec.message(),
         "check the path and permissions");
  const std::string config_text = peft_config_json(base_model_path);
  std::map<std::string, torch::Tensor> state = state_dict();  // keeps the bytes alive while writing
  std::vector<TensorToWrite> tensors;
  for (const auto& [key, t] : state) {
    TensorView v;
    v.dtype = Dtype::F32;
    v.shape = t.sizes().vec();
    v.data = static_cast<const uint8_t*>(t.data_ptr());
    v.n_bytes = static_cast<size_t>(t.numel()) * sizeof(float);
    tensors.push_back({key, v});
  }
  write_safetensors(weights_path, tensors, {{"format", "pt"}}, overwrite);
  write_file_atomic(config_path, config_text, overwrite);
}

namespace {

std::string field_where(const std::string& path, const std::string& key) {
  return path + " [" + key + "]";
}

// Options that change PEFT's forward pass (or its trainable set) and that lorank does not
// implement: each must be absent or hold its neutral value (null, false, empty).
void check_unsupported_options(const json& j, const std::string& path) {
  static const char* const keys[] = {"use_dora",
                                     "lora_bias",
                                     "fan_in_fan_out",
                                     "modules_to_save",
                                     "layers_to_transform",
                                     "layer_replication",
                                     "exclude_modules",
                                     "target_parameters",
                                     "trainable_token_indices",
                                     "alora_invocation_tokens",
                                     "use_qalora",
                                     "use_bdlora",
                                     "arrow_config",
                                     "velora_config",
                                     "kasa_config",
                                     "monteclora_config"};
  const std::string hint =
      "lorank loads plain LoRA adapters (with rsLoRA, rank_pattern, alpha_pattern); merge this "
      "adapter into the model with PEFT, or retrain it without this option";
  for (const char* key : keys) {
    if (!j.contains(key)) continue;
    const json& v = j.at(key);
    bool neutral = v.is_null() || (v.is_boolean() && !v.get<bool>()) ||
                   (v.is_string() && v.get<std::string>().empty()) ||
                   ((v.is_array() || v.is_object()) && v.empty());
    if (!neutral)
      fail(field_where(path, key), "unsupported PEFT option", "null or false", v.dump(), hint);
  }
  if (j.contains("bias") && j.at("bias") != "none") {
    fail(field_where(path, "bias"), "unsupported PEFT option", "\"none\"", j.at("bias").dump(),
         hint);
  }
  if (j.contains("peft_type") && j.at("peft_type") != "LORA") {
    fail(field_where(path, "peft_type"), "not a LoRA adapter", "\"LORA\"", j.at("peft_type").dump(),
         "lorank reads LoRA adapters only");
  }
}

int64_t json_int(const json& j, const std::string& key, int64_t fallback, const std::string& path) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_number_integer()) {
    fail(field_where(path, key), "wrong type", "an integer", j.at(key).dump());
  }
  return j.at(key).get<int64_t>();
}

double json_number(const json& j, const std::string& key, double fallback,
                   const std::string& path) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_number())
    fail(field_where(path, key), "wrong type", "a number", j.at(key).dump());
  return j.at(key).get<double>();
}

bool json_bool(const json& j, const std::string& key, bool fallback, const std::string& path) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_boolean())
    fail(field_where(path, key), "wrong type", "true or false", j.at(key).dump());
  return j.at(key).get<bool>();
}

void read_target_modules(const json& j, const std::string& path, LoraConfig& cfg) {
  const std::string where = field_where(path, "target_modules");
  if (!j.contains("target_modules") || j.at("target_modules").is_null()) {
    fail(where, "missing", "a list of module suffixes or a regex string", "null",
         "PEFT always saves target_modules; write them, e.g. [\"q_proj\", \"v_proj\"]");
  }
  const json& t = j.at("target_modules");
  if (t.is_string()) {
    std::string s = t.get<std::string>(), lower = s;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower == "all-linear") {  // PEFT's shorthand, matched case-insensitively
      cfg.target_modules = {"all-linear"};
    } else {
      cfg.target_modules.clear();
      cfg.target_regex = s;
    }
    return;
  }
  if (!t.is_array()) fail(where, "wrong type", "a list of strings or a string", t.dump());
  cfg.target_modules.clear();
  for (const auto& e : t) {
    if (!e.is_string()) fail(where, "wrong type", "a list of strings", t.dump());
    cfg.target_modules.push_back(e.get<std::string>());
  }
}

void read_patterns(const json& j, const std::string& path, LoraConfig& cfg) {
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (!j.contains(key) || j.at(key).is_null()) continue;
    const json& p = j.at(key);
    if (!p.is_object()) fail(field_where(path, key), "wrong type", "an object", p.dump());
    for (const auto& [k, v] : p.items()) {
      const std::string where = field_where(path, std::string(key) + "." + k);
      if (std::string(key) == "rank_pattern") {
        if (!v.is_number_integer()) fail(where, "wrong type", "an integer rank", v.dump());
        cfg.rank_pattern[k] = v.get<int64_t>();
      } else {
        if (!v.is_number()) fail(where, "wrong type", "a number", v.dump());
        cfg.alpha_pattern[k] = v.get<double>();
      }
    }
  }
}

}  // namespace

LoraConfig LoraAdapters::read_peft_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(path, "cannot open", "", "",
         "a PEFT adapter folder holds adapter_config.json and "
         "adapter_model.safetensors");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(path, "invalid JSON", "", e.what(), "the file should be PEFT's adapter_config.json");
  }
  if (!j.is_object()) fail(path, "wrong type", "a JSON object", j.type_name());
  check_unsupported_options(j, path);
  LoraConfig cfg;  // fields PEFT omits take PEFT's LoraConfig defaults
  cfg.r = json_int(j, "r", 8, path);
  cfg.alpha = json_number(j, "lora_alpha", 8, path);
  cfg.rslora = json_bool(j, "use_rslora", false, path);
  cfg.dropout = json_number(j, "lora_dropout", 0.0, path);
  read_target_modules(j, path, cfg);
  read_patterns(j, path, cfg);
  validate_config(cfg, path);
  return cfg;
}

std::unique_ptr<LoraAdapters> LoraAdapters::load_peft(Model& model, const std::string& dir) {
  const std::string config_path = (fs::path(dir) / kConfigName).string();
  const std::string weights_path = (fs::path(dir) / kWeightsName).string();
  const std::string folder_hint =
      "pass the folder that PEFT's save_pretrained (or lorank train) wrote";
  if (!fs::exists(config_path)) fail(config_path, "not found", "", "", folder_hint);
  if (!fs::exists(weights_path)) {
    const bool pickle = fs::exists(fs::path(dir) / "adapter_model.bin");
    fail(weights_path, "not found", "", "",
         pickle ? "only adapter_model.bin (pickle) is there; re-save it with PEFT's "
                  "save_pretrained(safe_serialization=True)"
                : folder_hint);
  }
  LoraConfig cfg = read_peft_config(config_path);
  std::map<std::string, torch::Tensor> tensors;
  {
    SafetensorsFile file(weights_path);
    for (const auto& name : file.names()) {
      const TensorView& v = file.tensor(name);
      auto dtype = torch_dtype_of(v.dtype, field_where(weights_path, name));
      tensors[name] = torch::from_blob(const_cast<uint8_t*>(v.data), v.shape, dtype).clone();
    }
  }
  std::unique_ptr<LoraAdapters> ad;
  try {
    ad = attach(model, cfg, 0);  // the init is overwritten right below
  } catch (const Error& e) {
    fail(config_path, e.what());
  }
  ad->load_state_dict(tensors, weights_path);
  return ad;
}

}  // namespace lorank
