#include "hf_config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.h"
#include "json_excerpt.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lorank {

namespace {

std::string type_name(const json& v) {
  return std::string(v.type_name()) + " " + json_excerpt(v, 40);
}

// Reads keys of one JSON object; `prefix` ("rope_scaling.") qualifies key names in errors.
class Reader {
 public:
  Reader(const json& obj, std::string where, std::string prefix = "")
      : obj_(obj), where_(std::move(where)), prefix_(std::move(prefix)) {}

  // HF treats an explicit null like an absent key (the default applies).
  bool has(const std::string& key) const {
    auto it = obj_.find(key);
    return it != obj_.end() && !it->is_null();
  }

  int64_t require_int(const std::string& key) const {
    if (!has(key)) missing(key);
    return as_int(key);
  }
  int64_t get_int(const std::string& key, int64_t fallback) const {
    return has(key) ? as_int(key) : fallback;
  }
  double require_number(const std::string& key) const {
    if (!has(key)) missing(key);
    return as_number(key);
  }
  double get_number(const std::string& key, double fallback) const {
    return has(key) ? as_number(key) : fallback;
  }
  bool get_bool(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_boolean()) bad(key, "a boolean", v);
    return v.get<bool>();
  }
  std::string get_string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_string()) bad(key, "a string", v);
    return v.get<std::string>();
  }

  [[noreturn]] void missing(const std::string& key) const {
    fail(where_, "missing required key \"" + prefix_ + key + "\"", "", "",
         "config.json must come from the model's Hugging Face repository; re-download it or add "
         "the key by hand");
  }
  [[noreturn]] void bad(const std::string& key, const std::string& expected, const json& v) const {
    fail(where_, "key \"" + prefix_ + key + "\" has the wrong type", expected, type_name(v),
         "check config.json against the model's Hugging Face repository");
  }

 private:
  int64_t as_int(const std::string& key) const {
    const json& v = obj_.at(key);
    if (!v.is_number_integer()) bad(key, "an integer", v);
    return v.get<int64_t>();
  }
  double as_number(const std::string& key) const {
    const json& v = obj_.at(key);
    if (!v.is_number()) bad(key, "a number", v);
    return v.get<double>();
  }

  const json& obj_;
  std::string where_;
  std::string prefix_;
};

// HF per-architecture defaults (configuration_<type>.py) for the keys lorank does not require.
struct TypeDefaults {
  int64_t max_pos;
  int64_t sliding_window;  // mistral's default window; 0 = none
};

TypeDefaults defaults_for(const std::string& model_type) {
  if (model_type == "mistral") return {4096 * 32, 4096};
  if (model_type == "qwen2" || model_type == "qwen3") return {32768, 0};
  return {2048, 0};  // llama
}

const std::vector<std::string>& supported_rope_types() {
  static const std::vector<std::string> types = {"default", "linear", "dynamic", "llama3"};
  return types;
}

// Classic configs: top-level rope_theta + rope_scaling {type|rope_type, factor, ...}.
// transformers 5: rope_parameters {rope_theta, rope_type, factor, ...}; rope_theta moved inside.
void parse_rope(const Reader& top, const json& root, const std::string& where, ModelConfig& cfg) {
  std::string section = top.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  cfg.rope_theta = top.get_number("rope_theta", 10000.0);
  if (!top.has(section)) return;
  const json& obj = root.at(section);
  if (!obj.is_object()) top.bad(section, "an object or null", obj);
  Reader r(obj, where, section + ".");
  cfg.rope_theta = r.get_number("rope_theta", cfg.rope_theta);
  std::string type = r.has("rope_type") ? r.get_string("rope_type", "default")
                                        : r.get_string("type", "default");
  bool known = false;
  for (const auto& t : supported_rope_types()) known = known || t == type;
  if (!known) {
    const std::string hint =
        type == "yarn" && (cfg.model_type == "qwen2" || cfg.model_type == "qwen3")
            ? "Qwen's releases leave YaRN out of config.json and add it only for inputs longer "
              "than original_max_position_embeddings; for data shorter than that, run lorank on "
              "a copy of the folder whose config.json has no \"" +
                  section + "\" entry"
            : "lorank implements the RoPE variants used by Llama, Mistral and Qwen checkpoints";
    fail(where, "unsupported RoPE scaling \"" + type + "\" in \"" + section + "\"",
         "one of " + join(supported_rope_types(), ", "), type, hint);
  }
  cfg.rope.type = type;
  if (type == "default") return;
  cfg.rope.factor = r.require_number("factor");
  if (cfg.rope.factor < 1.0) {
    fail(where, "\"" + section + ".factor\" must be >= 1", ">= 1", std::to_string(cfg.rope.factor));
  }
  if (type == "dynamic") {
    cfg.rope.original_max_pos = r.get_int("original_max_position_embeddings", cfg.max_pos);
  } else if (type == "llama3") {
    cfg.rope.low_freq_factor = r.require_number("low_freq_factor");
    cfg.rope.high_freq_factor = r.require_number("high_freq_factor");
    cfg.rope.original_max_pos = r.require_int("original_max_position_embeddings");
    if (cfg.rope.high_freq_factor <= cfg.rope.low_freq_factor) {
      fail(where, "\"" + section + ".high_freq_factor\" must exceed low_freq_factor",
           "> " + std::to_string(cfg.rope.low_freq_factor),
           std::to_string(cfg.rope.high_freq_factor));
    }
  }
}

void parse_attention_layout(const Reader& r, const json& root, const std::string& where,
                            ModelConfig& cfg) {
  const std::string& t = cfg.model_type;
  bool attention_bias = r.get_bool("attention_bias", false);
  cfg.qkv_bias = t == "qwen2" || ((t == "llama" || t == "qwen3") && attention_bias);
  cfg.o_bias = (t == "llama" || t == "qwen3") && attention_bias;
  cfg.mlp_bias = t == "llama" && r.get_bool("mlp_bias", false);
  cfg.qk_norm = t == "qwen3";
  if (t == "mistral") {
    // An absent key takes MistralConfig's default; an explicit null disables the window.
    bool absent = !root.contains("sliding_window");
    cfg.sliding_window = absent ? defaults_for(t).sliding_window : r.get_int("sliding_window", 0);
  }
  if ((t == "qwen2" || t == "qwen3") && r.get_bool("use_sliding_window", false)) {
    fail(where, "use_sliding_window: true is not supported", "false", "true",
         "Qwen checkpoints ship with use_sliding_window false; set it to false");
  }
}

// count_parameters with every product and sum checked: false when a count does not fit in int64.
bool count_parameters_checked(const ModelConfig& cfg, ParamCounts& p) {
  bool ok = true;
  auto mul = [&ok](int64_t a, int64_t b) {
    int64_t r = 0;
    ok = ok && !__builtin_mul_overflow(a, b, &r);
    return r;
  };
  auto add = [&ok](int64_t a, int64_t b) {
    int64_t r = 0;
    ok = ok && !__builtin_add_overflow(a, b, &r);
    return r;
  };
  const int64_t C = cfg.n_embd, F = cfg.n_ff, L = cfg.n_layer;
  const int64_t q = mul(cfg.n_head, cfg.head_dim), kv = mul(cfg.n_head_kv, cfg.head_dim);
  p.embed = mul(cfg.n_vocab, C);
  p.attn_q = mul(L, add(mul(C, q), cfg.qkv_bias ? q : 0));
  p.attn_k = mul(L, add(mul(C, kv), cfg.qkv_bias ? kv : 0));
  p.attn_v = p.attn_k;
  p.attn_o = mul(L, add(mul(q, C), cfg.o_bias ? C : 0));
  p.mlp_gate = mul(L, add(mul(C, F), cfg.mlp_bias ? F : 0));
  p.mlp_up = p.mlp_gate;
  p.mlp_down = mul(L, add(mul(F, C), cfg.mlp_bias ? C : 0));
  p.norms = add(mul(L, add(mul(2, C), cfg.qk_norm ? mul(2, cfg.head_dim) : 0)), C);
  p.lm_head = cfg.tie_word_embeddings ? 0 : p.embed;
  int64_t total = 0;
  for (int64_t part : {p.embed, p.attn_q, p.attn_k, p.attn_v, p.attn_o, p.mlp_gate, p.mlp_up,
                       p.mlp_down, p.norms, p.lm_head})
    total = add(total, part);
  return ok;
}

void validate(const ModelConfig& cfg, const std::string& where) {
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail(where, std::string("\"") + key + "\" must be positive", "> 0", std::to_string(v));
  };
  positive("vocab_size", cfg.n_vocab);
  positive("hidden_size", cfg.n_embd);
  positive("num_hidden_layers", cfg.n_layer);
  positive("num_attention_heads", cfg.n_head);
  positive("num_key_value_heads", cfg.n_head_kv);
  positive("head_dim", cfg.head_dim);
  positive("intermediate_size", cfg.n_ff);
  positive("max_position_embeddings", cfg.max_pos);
  if (cfg.n_head % cfg.n_head_kv != 0) {
    fail(where, "num_attention_heads must be a multiple of num_key_value_heads",
         "a divisor of " + std::to_string(cfg.n_head), std::to_string(cfg.n_head_kv));
  }
  if (cfg.head_dim % 2 != 0) {
    fail(where, "head_dim must be even for RoPE", "even", std::to_string(cfg.head_dim));
  }
  if (cfg.norm_eps <= 0) fail(where, "rms_norm_eps must be positive", "> 0", std::to_string(cfg.norm_eps));
  if (cfg.rope_theta <= 0) fail(where, "rope_theta must be positive", "> 0", std::to_string(cfg.rope_theta));
  ParamCounts counts;
  if (!count_parameters_checked(cfg, counts))
    fail(where, "sizes multiply out to a parameter count that overflows 64 bits",
         "the sizes of a real model",
         "vocab_size " + std::to_string(cfg.n_vocab) + ", hidden_size " +
             std::to_string(cfg.n_embd) + ", intermediate_size " + std::to_string(cfg.n_ff) +
             ", num_hidden_layers " + std::to_string(cfg.n_layer) + ", head_dim " +
             std::to_string(cfg.head_dim),
         "config.json is corrupt; re-download it from the model's repository");
}

void parse_token_ids(const Reader& r, const json& root, ModelConfig& cfg) {
  if (r.has("bos_token_id")) cfg.bos_id = r.require_int("bos_token_id");
  if (!r.has("eos_token_id")) return;
  const json& eos = root.at("eos_token_id");
  if (eos.is_array()) {
    for (const json& id : eos) {
      if (!id.is_number_integer()) r.bad("eos_token_id", "an integer or a list of integers", eos);
      cfg.eos_ids.push_back(id.get<int64_t>());
    }
  } else {
    cfg.eos_ids.push_back(r.require_int("eos_token_id"));
  }
}

}  // namespace

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> types = {"llama", "mistral", "qwen2", "qwen3"};
  return types;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& where) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
    fail(where, "not valid JSON: " + std::string(e.what()), "", "",
         "re-download config.json from the model's repository");
  }
  if (!root.is_object()) fail(where, "config.json must hold a JSON object", "object", root.type_name());
  Reader r(root, where);

  ModelConfig cfg;
  if (!r.has("model_type")) r.missing("model_type");
  cfg.model_type = r.get_string("model_type", "");
  bool known = false;
  for (const auto& t : supported_model_types()) known = known || t == cfg.model_type;
  if (!known) {
    const json* text = root.contains("text_config") ? &root["text_config"] : nullptr;
    const std::string inner = text && text->is_object() && text->contains("model_type") &&
                                      (*text)["model_type"].is_string()
                                  ? (*text)["model_type"].get<std::string>()
                                  : "";
    fail(where, "unsupported model_type \"" + cfg.model_type + "\"",
         "one of " + join(supported_model_types(), ", "), cfg.model_type,
         inner.empty() ? "lorank supports Llama-family decoders (Llama 2/3, Mistral, Qwen2/2.5, "
                         "Qwen3); other architectures need their own module layout"
                       : "a multimodal checkpoint whose language model is a " + inner +
                             " (text_config): lorank reads text-only decoders; pass the text "
                             "model's own release (e.g. the -Instruct/base LLM it was built on)");
  }
  if (root.contains("quantization_config") && root["quantization_config"].is_object()) {
    const json& q = root["quantization_config"];
    const std::string method = q.contains("quant_method") && q["quant_method"].is_string()
                                   ? q["quant_method"].get<std::string>()
                                   : "unknown";
    fail_quantized(where, "quantization_config.quant_method \"" + method + "\"");
  }
  std::string act = r.get_string("hidden_act", "silu");
  if (act != "silu") {
    fail(where, "unsupported hidden_act", "silu", act, "Llama-family MLPs use SwiGLU (silu)");
  }

  cfg.n_vocab = r.require_int("vocab_size");
  cfg.n_embd = r.require_int("hidden_size");
  cfg.n_layer = r.require_int("num_hidden_layers");
  cfg.n_head = r.require_int("num_attention_heads");
  cfg.n_ff = r.require_int("intermediate_size");
  cfg.n_head_kv = r.get_int("num_key_value_heads", cfg.n_head);
  // Qwen3Config's own default is 128, not hidden_size / num_attention_heads as for the others.
  const int64_t even_split = cfg.n_head > 0 ? cfg.n_embd / cfg.n_head : 0;
  cfg.head_dim = r.get_int("head_dim", cfg.model_type == "qwen3" ? 128 : even_split);
  cfg.norm_eps = r.get_number("rms_norm_eps", 1e-6);
  cfg.max_pos = r.get_int("max_position_embeddings", defaults_for(cfg.model_type).max_pos);
  cfg.tie_word_embeddings = r.get_bool("tie_word_embeddings", false);
  cfg.dtype = r.has("dtype") ? r.get_string("dtype", "") : r.get_string("torch_dtype", "");
  parse_rope(r, root, where, cfg);
  parse_attention_layout(r, root, where, cfg);
  parse_token_ids(r, root, cfg);
  validate(cfg, where);
  return cfg;
}

namespace {

// "meta-llama/Llama-3.1-8B": what a user copies from the Hub page, not a path on this machine.
bool looks_like_hub_id(const std::string& s) {
  const size_t slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || s.find('/', slash + 1) != std::string::npos)
    return false;
  if (s[0] == '.' || s[0] == '~') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == '/';
  });
}

// An environment variable's path with "~/" expanded, as huggingface_hub expands it; "" when unset.
fs::path env_path(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return {};
  const std::string s = v;
  const char* home = std::getenv("HOME");
  return s.rfind("~/", 0) == 0 && home ? fs::path(home) / s.substr(2) : fs::path(s);
}

// huggingface_hub's cache: $HF_HUB_CACHE (or its old name $HUGGINGFACE_HUB_CACHE), else
// $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
fs::path hub_cache_root() {
  for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"})
    if (fs::path p = env_path(name); !p.empty()) return p;
  if (fs::path p = env_path("HF_HOME"); !p.empty()) return p / "hub";
  if (fs::path p = env_path("XDG_CACHE_HOME"); !p.empty()) return p / "huggingface" / "hub";
  const char* home = std::getenv("HOME");
  return home && *home ? fs::path(home) / ".cache" / "huggingface" / "hub" : fs::path();
}

// The snapshot refs/main names in a cache folder (models--org--name), else its only snapshot.
std::string cache_snapshot(const fs::path& repo) {
  std::error_code ec;
  std::ifstream ref(repo / "refs" / "main");
  std::string hash;
  if (ref >> hash && fs::is_directory(repo / "snapshots" / hash, ec))
    return (repo / "snapshots" / hash).string();
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(repo / "snapshots", ec))
    if (e.is_directory(ec)) found.push_back(e.path());
  return found.size() == 1 ? found[0].string() : "";
}

std::string adapter_base_model(const fs::path& adapter_config) {
  std::ifstream in(adapter_config, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  const json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("base_model_name_or_path") &&
      j["base_model_name_or_path"].is_string())
    return j["base_model_name_or_path"].get<std::string>();
  return "";
}

}  // namespace

std::string find_in_hub_cache(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) || !looks_like_hub_id(dir) || hub_cache_root().empty()) return "";
  std::string repo = "models--" + dir;
  repo.replace(repo.find('/'), 1, "--");
  const std::string snapshot = cache_snapshot(hub_cache_root() / repo);
  return !snapshot.empty() && fs::exists(fs::path(snapshot) / "config.json", ec) ? snapshot : "";
}

void check_model_folder(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec)) {
    const bool is_file = fs::exists(d, ec);
    std::string hint = "pass --model DIR (a Hugging Face model folder" +
                       std::string(is_file ? ", the one holding this file)" : ")");
    if (!is_file && looks_like_hub_id(dir))
      hint = "\"" + dir + "\" looks like a Hugging Face Hub id, and " +
             (hub_cache_root().empty() ? std::string("there is no cache to look in")
                                       : (hub_cache_root() / "").string() + " does not hold it") +
             "; lorank reads a local folder: " + "huggingface-cli download " + dir +
             " --local-dir DIR --exclude '*.bin' '*.pth', " + "then pass --model DIR";
    fail(dir, is_file ? "is a file, not a model folder" : "model folder not found",
         "a folder with config.json and *.safetensors", is_file ? "a file" : "no such folder",
         hint);
  }
  if (fs::exists(d / "config.json", ec)) return;
  if (fs::exists(d / "adapter_config.json", ec)) {
    const std::string base = adapter_base_model(d / "adapter_config.json");
    fail(dir, "a PEFT adapter (adapter_config.json), not a model",
         "a base model folder with config.json and *.safetensors", "adapter_config.json",
         base.empty() ? "pass the base model the adapter was trained on as --model"
                      : "its base model is " + base +
                            " (base_model_name_or_path): pass that folder as --model");
  }
  if (fs::is_directory(d / "snapshots", ec)) {
    const std::string snapshot = cache_snapshot(d);
    fail(dir, "a Hugging Face cache folder, not a model folder", "a folder with config.json",
         "snapshots/",
         "pass " + (snapshot.empty()
                        ? "one of its snapshots: --model " + (d / "snapshots").string() + "/<hash>"
                        : "its snapshot: --model " + snapshot));
  }
  fail(dir, "no config.json in the model folder", "a folder with config.json and *.safetensors",
       "no config.json",
       "pass the Hugging Face model folder (transformers' save_pretrained writes it)");
}

ModelConfig load_model_config(const std::string& path) {
  fs::path file(path);
  if (fs::is_directory(file) || file.extension() != ".json") {
    check_model_folder(file.string());
    file /= "config.json";
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    fail(file.string(), "cannot read config.json", "", "",
         "pass the folder of a Hugging Face model (config.json, *.safetensors, tokenizer.json)");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_model_config(ss.str(), file.string());
}

ParamCounts count_parameters(const ModelConfig& cfg) {
  ParamCounts p;
  if (!count_parameters_checked(cfg, p))
    fail("config.json", "parameter count overflows 64 bits", "sizes of a real model",
         "vocab_size " + std::to_string(cfg.n_vocab) + ", hidden_size " +
             std::to_string(cfg.n_embd));
  return p;
}

void fail_quantized(const std::string& where, const std::string& got) {
  fail(where, "a quantized checkpoint", "bf16, fp16 or fp32 weights", got,
       "lorank needs the unquantized model this one was made from (for a -GPTQ, -AWQ, -4bit or "
       "-bnb-4bit release, its base repository); the rank it recommends holds for QLoRA on the "
       "quantized one too");
}

}  // namespace lorank
