// Llama-family decoder (llama, mistral, qwen2, qwen3) over frozen Hugging Face weights, with
// hookable linear layers for LoRA and the gradient probe. Numerics follow transformers'
// modeling_llama.py: RMSNorm in fp32, rotate_half RoPE, GQA by repeating kv heads, SwiGLU.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "hf_config.h"

namespace lorank {

struct WeightSource;  // model.cpp: safetensors folder or in-memory tensors

// Attached to a Linear; sees the input x (..., d_in) and the frozen output y (..., d_out) and
// returns the output to use (LoRA adds s·B·A·x; the probe records x and hooks y's gradient).
class LinearHook {
 public:
  virtual ~LinearHook() = default;
  virtual torch::Tensor forward(const torch::Tensor& x, torch::Tensor y) = 0;
};

struct Linear {
  std::string name;      // HF module path: "model.layers.0.self_attn.q_proj"
  std::string kind;      // "q_proj", "k_proj", ..., "down_proj", "lm_head"
  int64_t layer = -1;    // decoder layer index; -1 for lm_head
  torch::Tensor weight;  // (d_out, d_in), frozen
  torch::Tensor bias;    // (d_out) or undefined
  std::shared_ptr<LinearHook> hook;

  int64_t d_in() const { return weight.size(1); }
  int64_t d_out() const { return weight.size(0); }
  torch::Tensor forward(const torch::Tensor& x) const;  // (..., d_in) -> (..., d_out)
};

struct LoadOptions {
  torch::Device device = torch::kCPU;
  // Two or more: the decoder layers are split into contiguous runs over these devices, balanced
  // by bytes (the embedding on the first, the final norm and lm_head on the last), for a model
  // larger than one card. `device` is then ignored.
  std::vector<torch::Device> devices;
  torch::ScalarType dtype = torch::kFloat32;  // kFloat32 or kBFloat16 (kHalf also accepted)
  bool check_finite = true;                   // scan every weight for NaN/Inf
  // Names and shapes checked against the files, no weight read: meta tensors, for the checks of a
  // process that leaves the training to others (its module names, the LoRA keys they match).
  bool shapes_only = false;
};

class Model {
 public:
  // Reads <dir>/config.json and the folder's safetensors (single file or index + shards).
  static std::unique_ptr<Model> load(const std::string& dir, const LoadOptions& opts = {});
  // From tensors already in memory, keyed by HF names; `where` names the source in errors.
  Model(ModelConfig cfg, const std::map<std::string, torch::Tensor>& weights,
        const LoadOptions& opts, const std::string& where);
  Model(const Model&) = delete;  // Linear* handed out by linears() must stay valid
  Model& operator=(const Model&) = delete;
  // The same weights without hooks, for another trainer at once: on this model's device they are
  // shared (frozen, so only read), on another device copied there. Not for a split model.
  std::unique_ptr<Model> replica(const torch::Device& device);

  const ModelConfig& config() const { return cfg_; }
  torch::Device device() const { return embed_.device(); }  // the first: ids and embedding
  torch::Device output_device() const { return final_norm_.device(); }    // hidden states, logits
  const std::vector<torch::Device>& devices() const { return devices_; }  // in layer order
  bool is_split() const { return devices_.size() > 1; }
  std::string placement() const;  // describe_placement of this model's layers
  int64_t peak_gpu_bytes() const;  // the fullest of its GPUs' allocator high-water marks; 0 on CPU
  torch::Device layer_device(int64_t layer) const {
    return devices_.at(layer_slot_.at(size_t(layer)));
  }
  torch::ScalarType dtype() const { return embed_.scalar_type(); }

  // ids (B, T) int64; attention_mask (B, T), 1 = token, 0 = pad, undefined = all tokens.
  // Returns the final-normed hidden states (B, T, C) in the model dtype.
  // host_checked: the caller has checked the ids against the vocabulary and passes a mask only
  // when something is padded, which spares two waits for the device (see to_tensors).
  torch::Tensor hidden_states(const torch::Tensor& ids, const torch::Tensor& attention_mask = {},
                              bool host_checked = false);
  // lm_head over hidden (..., C) -> logits (..., V) in float32.
  torch::Tensor logits(const torch::Tensor& hidden);
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& attention_mask = {});

  // The 7 linears of every decoder layer in HF order (q, k, v, o, gate, up, down per layer).
  std::vector<Linear*> linears();
  Linear& lm_head() { return lm_head_; }
  Linear* find_linear(const std::string& name);  // also "lm_head"; nullptr when absent
  const torch::Tensor& embedding() const { return embed_; }
  // Counted from the loaded tensors; equals count_parameters(config()) for a complete model.
  ParamCounts parameter_counts() const;
  // Training: recompute each decoder block in backward instead of keeping its activations.
  void set_checkpointing(bool on) { checkpointing_ = on; }
  bool checkpointing() const { return checkpointing_; }

 private:
  struct Slot {
    std::string hf_name;
    std::vector<int64_t> shape;
    torch::Tensor* tensor;
    int64_t layer = -1;  // -1: the embedding (first device); n_layer: norm and lm_head (last)
  };
  struct Block {
    torch::Tensor input_norm, post_norm;  // (C)
    torch::Tensor q_norm, k_norm;         // (head_dim), qwen3 only
    Linear q, k, v, o, gate, up, down;
  };

  Model(ModelConfig cfg, const WeightSource& src, const LoadOptions& opts);
  std::vector<Slot> slots();
  void check_names_and_shapes(const std::vector<Slot>& table, const WeightSource& src) const;
  torch::Tensor block_forward(Block& blk, const torch::Tensor& x, const torch::Tensor& cos,
                              const torch::Tensor& sin, const torch::Tensor& mask);
  torch::Tensor attention_mask_for(const torch::Tensor& attention_mask, int64_t T,
                                   bool known_padded) const;

  void place(const LoadOptions& opts);  // devices_ and layer_slot_
  torch::Device slot_device(const Slot& s) const;

  ModelConfig cfg_;
  std::vector<torch::Device> devices_;  // distinct, in layer order
  std::vector<size_t> layer_slot_;      // index into devices_ per decoder layer
  torch::Tensor embed_;       // (V, C)
  torch::Tensor final_norm_;  // (C)
  std::vector<Block> blocks_;
  Linear lm_head_;
  bool checkpointing_ = false;
};

// Which of `n_devices` devices each of the config's decoder layers goes to: contiguous runs, each
// device's share of the weights as equal as whole layers allow (the embedding counts on the first,
// the final norm and lm_head on the last).
std::vector<size_t> split_layers(const ModelConfig& cfg, size_t n_devices);

// "layers 0-39 on cuda:0, 40-79 on cuda:1": `layer_device` indexes `devices` per layer.
std::string describe_placement(const std::vector<size_t>& layer_device,
                               const std::vector<torch::Device>& devices);

// RoPE inverse frequencies (head_dim / 2) in fp32 as transformers computes them (incl. linear,
// dynamic-NTK at seq_len and llama3 scaling).
torch::Tensor rope_inv_freq(const ModelConfig& cfg, int64_t seq_len);

// Next-token cross-entropy in fp32: logits at t predict ids at t+1. A target t+1 counts when
// loss_mask[t+1] and attention_mask[t+1] are 1 (either may be undefined = all ones).
struct LossResult {
  torch::Tensor sum;     // scalar fp32, differentiable: sum of per-token losses
  int64_t n_tokens = 0;  // supervised targets
  torch::Tensor mean() const;  // sum / n_tokens (0 when no targets)
};
// hidden (B, T, C) from Model::hidden_states; `chunk` > 0 evaluates lm_head over that many
// positions at a time, which bounds the fp32 logits held at once when no graph is kept. Under
// Model::checkpointing with grad mode on, chunks (recompute_chunk's unless given) are recomputed in
// backward, so no chunk's logits outlive it.
LossResult lm_loss(Model& model, const torch::Tensor& hidden, const torch::Tensor& ids,
                   const torch::Tensor& attention_mask, const torch::Tensor& loss_mask,
                   int64_t chunk = 0);
// Positions a chunk of the loss covers when its logits are recomputed in backward (under
// Model::checkpointing): about 2^25 logits, 400 MB of fp32 logits, log-softmax and gradient.
int64_t recompute_chunk(int64_t n_vocab);
// The same at given positions: `positions` (N) index the flattened (B, T) hidden states whose next
// token `targets` (N) is supervised; n = N is known on the host, so nothing waits for the device.
LossResult lm_loss_at(Model& model, const torch::Tensor& hidden, const torch::Tensor& positions,
                      const torch::Tensor& targets, int64_t n, int64_t chunk = 0);

}  // namespace lorank
