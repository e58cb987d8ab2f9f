// config.json of a Hugging Face decoder (llama, mistral, qwen2, qwen3) -> ModelConfig. Torch-free.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lorank {

// RoPE frequency scaling, as transformers' modeling_rope_utils.py names it.
struct RopeScaling {
  std::string type = "default";  // default | linear | dynamic | llama3
  double factor = 1.0;           // linear, dynamic, llama3
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_pos = 0;  // llama3: context the model was pretrained at
};

struct ModelConfig {
  std::string model_type;  // llama | mistral | qwen2 | qwen3
  int64_t n_vocab = 0;     // vocab_size
  int64_t n_embd = 0;      // hidden_size
  int64_t n_layer = 0;     // num_hidden_layers
  int64_t n_head = 0;      // num_attention_heads
  int64_t n_head_kv = 0;   // num_key_value_heads (defaults to n_head)
  int64_t head_dim = 0;    // head_dim, or n_embd / n_head
  int64_t n_ff = 0;        // intermediate_size
  double norm_eps = 1e-6;  // rms_norm_eps
  double rope_theta = 10000.0;
  RopeScaling rope;
  int64_t max_pos = 0;         // max_position_embeddings
  int64_t sliding_window = 0;  // mistral: keys further back than this are masked; 0 = none
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v_proj carry a bias (qwen2 always; llama/qwen3 attention_bias)
  bool o_bias = false;    // o_proj carries a bias (llama/qwen3 attention_bias)
  bool mlp_bias = false;  // gate/up/down_proj carry a bias (llama mlp_bias)
  bool qk_norm = false;   // qwen3: RMSNorm over head_dim on q and k before RoPE
  std::string dtype;      // torch_dtype / dtype as written ("bfloat16"), "" when absent
  std::optional<int64_t> bos_id;
  std::vector<int64_t> eos_ids;  // eos_token_id may be one id or a list

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
};

// Parameter counts per module type; a tied lm_head shares the embedding and counts 0 (as HF's
// num_parameters does).
struct ParamCounts {
  int64_t embed = 0, attn_q = 0, attn_k = 0, attn_v = 0, attn_o = 0;
  int64_t mlp_gate = 0, mlp_up = 0, mlp_down = 0, norms = 0, lm_head = 0;
  int64_t total() const {
    return embed + attn_q + attn_k + attn_v + attn_o + mlp_gate + mlp_up + mlp_down + norms +
           lm_head;
  }
};

const std::vector<std::string>& supported_model_types();

// `where` names the source in errors (normally the config.json path).
ModelConfig parse_model_config(const std::string& json_text, const std::string& where);
// Reads <dir>/config.json (or the file itself when `path` is a file).
ModelConfig load_model_config(const std::string& path);
// Throws, saying what the folder is, unless `dir` is a folder holding config.json: a missing
// folder (a Hub id gets the download command), a PEFT adapter (naming its base model), a Hugging
// Face cache root (naming snapshots/).
void check_model_folder(const std::string& dir);
// A Hub id ("meta-llama/Llama-3.1-8B") that is no local path: the snapshot huggingface_hub's cache
// holds for it (refs/main), as transformers would load it; "" when there is none.
std::string find_in_hub_cache(const std::string& dir);

ParamCounts count_parameters(const ModelConfig& cfg);

// Throws for a quantized checkpoint, which `got` names (its quant_method or a tensor): lorank
// needs the weights it was quantized from.
[[noreturn]] void fail_quantized(const std::string& where, const std::string& got);

}  // namespace lorank
