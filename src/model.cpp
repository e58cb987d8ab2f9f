#include "model.h"

#include "checkpoint.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "compat.h"
#include "error.h"
#include "safetensors.h"

namespace lorank {

// Where the weights come from: a folder of safetensors, or tensors in memory.
struct WeightSource {
  virtual ~WeightSource() = default;
  virtual std::string origin() const = 0;  // folder or label, for errors about absent tensors
  virtual std::vector<std::string> names() const = 0;
  virtual std::vector<int64_t> shape(const std::string& name) const = 0;
  virtual std::string where(const std::string& name) const = 0;  // "file [name]"
  // The tensor on opts.device in opts.dtype, a copy owned by torch.
  virtual torch::Tensor read(const std::string& name, const LoadOptions& opts) const = 0;
};

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string dtype_str(torch::ScalarType t) {
  if (t == torch::kFloat32) return "float32";
  if (t == torch::kBFloat16) return "bfloat16";
  if (t == torch::kFloat16) return "float16";
  return c10::toString(t);
}

torch::ScalarType torch_dtype(Dtype d, const std::string& where) {
  switch (d) {
    case Dtype::F32: return torch::kFloat32;
    case Dtype::BF16: return torch::kBFloat16;
    case Dtype::F16: return torch::kFloat16;
    case Dtype::F64: return torch::kFloat64;
    default:
      fail(where, "unsupported weight dtype", "F32, BF16 or F16", dtype_name(d),
           "quantized checkpoints (GPTQ, AWQ, bitsandbytes, FP8) are not supported; use the "
           "unquantized bf16/fp16/fp32 model");
  }
}

class SafetensorsSource : public WeightSource {
 public:
  explicit SafetensorsSource(const std::string& dir) : st_(dir) {}
  std::string origin() const override { return st_.path(); }
  std::vector<std::string> names() const override { return st_.names(); }
  std::vector<int64_t> shape(const std::string& name) const override {
    return st_.tensor(name).shape;
  }
  std::string where(const std::string& name) const override {
    return st_.file_of(name) + " [" + name + "]";
  }
  torch::Tensor read(const std::string& name, const LoadOptions& opts) const override {
    const TensorView& v = st_.tensor(name);
    auto src = torch::from_blob(const_cast<uint8_t*>(v.data), v.shape,
                                torch::TensorOptions().dtype(torch_dtype(v.dtype, where(name))));
    // copy=true: the mapped bytes go away with the file.
    return src.to(torch::TensorOptions().device(opts.device).dtype(opts.dtype), false, true);
  }

 private:
  SafetensorsModel st_;
};

class MapSource : public WeightSource {
 public:
  // copy false: a tensor already on the target device and dtype is shared, not copied.
  MapSource(const std::map<std::string, torch::Tensor>& w, std::string label, bool copy = true)
      : w_(w), label_(std::move(label)), copy_(copy) {}
  std::string origin() const override { return label_; }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& kv : w_) out.push_back(kv.first);
    return out;
  }
  std::vector<int64_t> shape(const std::string& name) const override {
    return w_.at(name).sizes().vec();
  }
  std::string where(const std::string& name) const override { return label_ + " [" + name + "]"; }
  torch::Tensor read(const std::string& name, const LoadOptions& opts) const override {
    return w_.at(name).detach().to(torch::TensorOptions().device(opts.device).dtype(opts.dtype),
                                   false, copy_);
  }

 private:
  const std::map<std::string, torch::Tensor>& w_;
  std::string label_;
  bool copy_ = true;
};

// Buffers older checkpoints carry that HF also skips on load.
bool ignorable(const std::string& name) {
  const std::string suffix = "rotary_emb.inv_freq";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// RMSNorm as HF: normalise in fp32, cast back, then scale (weight in the model dtype).
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto xf = x.to(torch::kFloat32);
  auto var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * torch::rsqrt(var + eps)).to(x.scalar_type());
}

// HF's rotate_half: (x1, x2) -> (-x2, x1) over the two halves of the last dim.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x: (B, H, T, D); cos, sin: (T, D) in x's dtype.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

// (B, n_kv, T, D) -> (B, n_kv * n_rep, T, D); query head h reads kv head h / n_rep.
torch::Tensor repeat_kv(const torch::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const int64_t B = x.size(0), KV = x.size(1), T = x.size(2), D = x.size(3);
  return x.unsqueeze(2).expand({B, KV, n_rep, T, D}).reshape({B, KV * n_rep, T, D});
}

}  // namespace

torch::Tensor Linear::forward(const torch::Tensor& x) const {
  auto y = torch::linear(x, weight, bias);  // (..., d_out)
  return hook ? hook->forward(x, y) : y;
}

std::unique_ptr<Model> Model::load(const std::string& dir, const LoadOptions& opts) {
  ModelConfig cfg = load_model_config(dir);
  SafetensorsSource src(dir);
  return std::unique_ptr<Model>(new Model(std::move(cfg), src, opts));
}

Model::Model(ModelConfig cfg, const std::map<std::string, torch::Tensor>& weights,
             const LoadOptions& opts, const std::string& where)
    : Model(std::move(cfg), MapSource(weights, where), opts) {}

std::unique_ptr<Model> Model::replica(const torch::Device& device) {
  if (is_split()) {
    fail("a replica of the model",
         "the model is split over " + std::to_string(devices_.size()) + " devices",
         "a model on one device", "a split model", "train on one device");
  }
  std::map<std::string, torch::Tensor> weights;
  for (const Slot& s : slots()) weights[s.hf_name] = *s.tensor;
  LoadOptions lo;
  lo.device = device;
  lo.dtype = dtype();
  lo.check_finite = false;  // checked when this model loaded
  const MapSource src(weights, "a replica of the loaded model", /*copy=*/false);
  return std::unique_ptr<Model>(new Model(cfg_, src, lo));
}

Model::Model(ModelConfig cfg, const WeightSource& src, const LoadOptions& opts)
    : cfg_(std::move(cfg)) {
  if (opts.dtype != torch::kFloat32 && opts.dtype != torch::kBFloat16 &&
      opts.dtype != torch::kFloat16) {
    fail(src.origin(), "unsupported load dtype", "float32, bfloat16 or float16",
         dtype_str(opts.dtype));
  }
  auto linear = [](const std::string& name, const std::string& kind, int64_t layer) {
    Linear l;
    l.name = name;
    l.kind = kind;
    l.layer = layer;
    return l;
  };
  blocks_.resize(cfg_.n_layer);
  for (int64_t i = 0; i < cfg_.n_layer; ++i) {
    Block& b = blocks_[i];
    std::string p = "model.layers." + std::to_string(i) + ".";
    b.q = linear(p + "self_attn.q_proj", "q_proj", i);
    b.k = linear(p + "self_attn.k_proj", "k_proj", i);
    b.v = linear(p + "self_attn.v_proj", "v_proj", i);
    b.o = linear(p + "self_attn.o_proj", "o_proj", i);
    b.gate = linear(p + "mlp.gate_proj", "gate_proj", i);
    b.up = linear(p + "mlp.up_proj", "up_proj", i);
    b.down = linear(p + "mlp.down_proj", "down_proj", i);
  }
  lm_head_ = linear("lm_head", "lm_head", -1);
  place(opts);
  std::vector<Slot> table = slots();
  check_names_and_shapes(table, src);
  for (Slot& s : table) {
    LoadOptions on = opts;
    on.device = slot_device(s);
    if (opts.shapes_only) {
      *s.tensor =
          torch::empty(s.shape, torch::TensorOptions().device(torch::kMeta).dtype(on.dtype));
      continue;
    }
    *s.tensor = src.read(s.hf_name, on);
    if (opts.check_finite && !torch::isfinite(*s.tensor).all().item<bool>()) {
      int64_t bad = (~torch::isfinite(*s.tensor)).sum().item<int64_t>();
      fail(src.where(s.hf_name),
           "NaN or Inf in the weights (read as " + dtype_str(opts.dtype) + ")", "finite values",
           std::to_string(bad) + " NaN/Inf values",
           opts.dtype == torch::kFloat32 ? "the checkpoint is corrupt or diverged; re-download it"
                                         : "the checkpoint is corrupt, or its values overflow " +
                                               dtype_str(opts.dtype) + ": load it as float32");
    }
  }
  // Split, the last device reads its own copy of a tied embedding (frozen, so never out of step).
  if (cfg_.tie_word_embeddings)
    lm_head_.weight = opts.shapes_only ? embed_ : embed_.to(devices_.back());
}

void Model::place(const LoadOptions& opts) {
  devices_ = opts.devices.empty() ? std::vector<torch::Device>{opts.device} : opts.devices;
  for (size_t i = 0; i < devices_.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (devices_[i] == devices_[j])
        fail("model placement", "a device is listed twice", "each device once", devices_[i].str());
    }
  }
  layer_slot_ = split_layers(cfg_, devices_.size());
}

torch::Device Model::slot_device(const Slot& s) const {
  if (s.layer < 0) return devices_.front();
  if (s.layer >= cfg_.n_layer) return devices_.back();
  return devices_[layer_slot_[size_t(s.layer)]];
}

std::string Model::placement() const {
  return describe_placement(layer_slot_, devices_);
}

int64_t Model::peak_gpu_bytes() const {
  int64_t peak = 0;
  for (const torch::Device& d : devices_) peak = std::max(peak, compat::cuda_peak_bytes(d));
  return peak;
}

std::string describe_placement(const std::vector<size_t>& layer_device,
                               const std::vector<torch::Device>& devices) {
  std::string out;
  for (size_t begin = 0; begin < layer_device.size();) {
    size_t end = begin;
    while (end + 1 < layer_device.size() && layer_device[end + 1] == layer_device[begin]) ++end;
    out += out.empty() ? (begin == end ? "layer " : "layers ") : ", ";
    out += std::to_string(begin) + (begin == end ? "" : "-" + std::to_string(end)) + " on " +
           devices.at(layer_device[begin]).str();
    begin = end + 1;
  }
  return out;
}

std::vector<size_t> split_layers(const ModelConfig& cfg, size_t n_devices) {
  std::vector<size_t> out(size_t(cfg.n_layer), 0);
  if (n_devices <= 1 || cfg.n_layer == 0) return out;
  const ParamCounts p = count_parameters(cfg);
  const double embed = double(p.embed);
  const double head = double(p.lm_head > 0 ? p.lm_head : p.embed) + double(cfg.n_embd);
  const double layer = double(p.total() - p.embed - p.lm_head - cfg.n_embd) / double(cfg.n_layer);
  const double total = embed + layer * double(cfg.n_layer) + head;
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    // The device whose equal share of the bytes holds this layer's middle byte.
    const double middle = embed + layer * (double(i) + 0.5);
    out[size_t(i)] = std::min(n_devices - 1, size_t(middle / total * double(n_devices)));
  }
  return out;
}

// The one table from HF tensor names to module slots, in HF order, with the shapes config.json
// implies. Linear names above are these names without ".weight"/".bias".
std::vector<Model::Slot> Model::slots() {
  const ModelConfig& c = cfg_;
  const int64_t V = c.n_vocab, C = c.n_embd, F = c.n_ff, Q = c.q_dim(), KV = c.kv_dim();
  std::vector<Slot> s = {{"model.embed_tokens.weight", {V, C}, &embed_}};
  for (int64_t i = 0; i < c.n_layer; ++i) {
    Block& b = blocks_[i];
    std::string p = "model.layers." + std::to_string(i) + ".";
    s.push_back({p + "input_layernorm.weight", {C}, &b.input_norm, i});
    s.push_back({p + "self_attn.q_proj.weight", {Q, C}, &b.q.weight, i});
    if (c.qkv_bias) s.push_back({p + "self_attn.q_proj.bias", {Q}, &b.q.bias, i});
    s.push_back({p + "self_attn.k_proj.weight", {KV, C}, &b.k.weight, i});
    if (c.qkv_bias) s.push_back({p + "self_attn.k_proj.bias", {KV}, &b.k.bias, i});
    s.push_back({p + "self_attn.v_proj.weight", {KV, C}, &b.v.weight, i});
    if (c.qkv_bias) s.push_back({p + "self_attn.v_proj.bias", {KV}, &b.v.bias, i});
    s.push_back({p + "self_attn.o_proj.weight", {C, Q}, &b.o.weight, i});
    if (c.o_bias) s.push_back({p + "self_attn.o_proj.bias", {C}, &b.o.bias, i});
    if (c.qk_norm) {
      s.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, &b.q_norm, i});
      s.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, &b.k_norm, i});
    }
    s.push_back({p + "post_attention_layernorm.weight", {C}, &b.post_norm, i});
    s.push_back({p + "mlp.gate_proj.weight", {F, C}, &b.gate.weight, i});
    if (c.mlp_bias) s.push_back({p + "mlp.gate_proj.bias", {F}, &b.gate.bias, i});
    s.push_back({p + "mlp.up_proj.weight", {F, C}, &b.up.weight, i});
    if (c.mlp_bias) s.push_back({p + "mlp.up_proj.bias", {F}, &b.up.bias, i});
    s.push_back({p + "mlp.down_proj.weight", {C, F}, &b.down.weight, i});
    if (c.mlp_bias) s.push_back({p + "mlp.down_proj.bias", {C}, &b.down.bias, i});
  }
  s.push_back({"model.norm.weight", {C}, &final_norm_, c.n_layer});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {V, C}, &lm_head_.weight, c.n_layer});
  return s;
}

namespace {

// A quantized layout's tensors, for folders whose config.json does not say so (older GPTQ/AWQ
// releases keep quantize_config.json apart; MLX writes "quantization"): GPTQ/AWQ qweight, qzeros
// and scales, bitsandbytes absmax and SCB, FP8 weight_scale.
std::string quantized_tensor(const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    for (const std::string suffix :
         {".qweight", ".qzeros", ".scales", ".absmax", ".SCB", ".weight_scale"}) {
      if (n.size() > suffix.size() && ends_with(n, suffix)) return n;
    }
  }
  return "";
}

}  // namespace

void Model::check_names_and_shapes(const std::vector<Slot>& table, const WeightSource& src) const {
  const std::string cfg_hint =
      "config.json and the weights disagree: check model_type, hidden_size, num_attention_heads, "
      "num_key_value_heads, head_dim, intermediate_size and vocab_size against the checkpoint";
  std::vector<std::string> present = src.names();
  std::set<std::string> have(present.begin(), present.end());
  if (const std::string q = quantized_tensor(present); !q.empty()) {
    fail_quantized(src.where(q), "tensor " + q);
  }
  std::vector<std::string> missing;
  for (const Slot& s : table) {
    if (!have.count(s.hf_name)) missing.push_back(s.hf_name);
  }
  if (!missing.empty()) {
    std::string more = missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) +
                                                " more)" : "";
    // A model that ties its output layer to the embedding saves no lm_head.weight.
    const bool only_head = missing.size() == 1 && missing.front() == "lm_head.weight";
    fail(src.origin(), "missing tensor " + missing.front() + more, "", "",
         only_head ? "config.json has no \"tie_word_embeddings\": true, yet the checkpoint has "
                     "no output layer: if this model ties it to the embedding (as Llama 3.2 "
                     "1B/3B and small Qwen models do), set \"tie_word_embeddings\": true in "
                     "config.json"
                   : "the checkpoint is incomplete (a shard missing?) or " + cfg_hint);
  }
  std::set<std::string> expected;
  for (const Slot& s : table) {
    expected.insert(s.hf_name);
    std::vector<int64_t> got = src.shape(s.hf_name);
    if (got != s.shape) {
      fail(src.where(s.hf_name), "wrong tensor shape", shape_str(s.shape), shape_str(got), cfg_hint);
    }
  }
  for (const std::string& name : present) {
    // A tied model's lm_head.weight is ignored, as HF ties it to the embedding after loading.
    bool tied_head = cfg_.tie_word_embeddings && name == "lm_head.weight";
    if (!expected.count(name) && !ignorable(name) && !tied_head) {
      fail(src.where(name), "unexpected tensor for model_type " + cfg_.model_type, "", "",
           "is config.json from the same checkpoint (model_type, attention_bias, mlp_bias, "
           "num_hidden_layers)? Quantized checkpoints and unmerged adapters are not supported");
    }
  }
}

std::vector<Linear*> Model::linears() {
  std::vector<Linear*> out;
  for (Block& b : blocks_) {
    for (Linear* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) out.push_back(l);
  }
  return out;
}

Linear* Model::find_linear(const std::string& name) {
  if (name == lm_head_.name) return &lm_head_;
  for (Linear* l : linears()) {
    if (l->name == name) return l;
  }
  return nullptr;
}

ParamCounts Model::parameter_counts() const {
  ParamCounts p;
  auto n = [](const torch::Tensor& t) { return t.defined() ? t.numel() : int64_t{0}; };
  auto lin = [&](const Linear& l) { return n(l.weight) + n(l.bias); };
  p.embed = n(embed_);
  p.norms = n(final_norm_);
  for (const Block& b : blocks_) {
    p.attn_q += lin(b.q);
    p.attn_k += lin(b.k);
    p.attn_v += lin(b.v);
    p.attn_o += lin(b.o);
    p.mlp_gate += lin(b.gate);
    p.mlp_up += lin(b.up);
    p.mlp_down += lin(b.down);
    p.norms += n(b.input_norm) + n(b.post_norm) + n(b.q_norm) + n(b.k_norm);
  }
  p.lm_head = cfg_.tie_word_embeddings ? 0 : lin(lm_head_);
  return p;
}

torch::Tensor rope_inv_freq(const ModelConfig& cfg, int64_t seq_len) {
  const int64_t dim = cfg.head_dim;
  const RopeScaling& r = cfg.rope;
  double base = cfg.rope_theta;
  if (r.type == "dynamic") {
    // Dynamic NTK grows the base once the sequence outruns the pretrained context.
    const int64_t max_pos = r.original_max_pos > 0 ? r.original_max_pos : cfg.max_pos;
    if (seq_len > max_pos) {
      base *= std::pow(r.factor * static_cast<double>(seq_len) / max_pos - (r.factor - 1),
                       static_cast<double>(dim) / (dim - 2));
    }
  }
  // Same fp32 op sequence as transformers: 1 / base^(arange(0, dim, 2) / dim).
  auto exponent = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / dim;
  auto inv_freq = torch::pow(base, exponent).reciprocal();  // (dim / 2)
  if (r.type == "linear") return inv_freq / r.factor;
  if (r.type != "llama3") return inv_freq;
  // llama3: keep high frequencies, divide low ones by factor, interpolate in between.
  const double old_ctx = static_cast<double>(r.original_max_pos);
  const double low_wavelen = old_ctx / r.low_freq_factor;
  const double high_wavelen = old_ctx / r.high_freq_factor;
  auto wavelen = (2 * M_PI) / inv_freq;
  auto scaled = torch::where(wavelen > low_wavelen, inv_freq / r.factor, inv_freq);
  auto smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  auto smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return torch::where(medium, smoothed, scaled);
}

// Bool (B, 1, T, T), true = may attend; undefined when plain causal attention suffices (lets
// LibTorch 2.x pick its fused causal kernel).
torch::Tensor Model::attention_mask_for(const torch::Tensor& attention_mask, int64_t T,
                                        bool known_padded) const {
  const int64_t window = cfg_.sliding_window;
  const bool padded = attention_mask.defined() &&
                      (known_padded || !attention_mask.to(torch::kBool).all().item<bool>());
  if (!padded && (window == 0 || T <= window)) return {};
  auto pos = torch::arange(T, torch::TensorOptions().dtype(torch::kInt64).device(device()));
  auto i = pos.unsqueeze(1), j = pos.unsqueeze(0);  // query, key
  auto allowed = j <= i;                            // (T, T) causal
  if (window > 0) allowed = allowed.logical_and(i - j < window);
  allowed = allowed.view({1, 1, T, T});
  if (padded) {
    auto keys = attention_mask.to(device()).to(torch::kBool).view({-1, 1, 1, T});  // (B, 1, 1, T)
    allowed = allowed.logical_and(keys);
    // A pad query may see no key at all (left padding); letting it see itself avoids NaN rows.
    allowed = allowed.logical_or(torch::eye(T, allowed.options()).view({1, 1, T, T}));
  }
  return allowed;
}

torch::Tensor Model::block_forward(Block& b, const torch::Tensor& x, const torch::Tensor& cos,
                                   const torch::Tensor& sin, const torch::Tensor& mask) {
  const int64_t B = x.size(0), T = x.size(1), D = cfg_.head_dim;
  const int64_t H = cfg_.n_head, KV = cfg_.n_head_kv;
  // attention
  auto h = rms_norm(x, b.input_norm, cfg_.norm_eps);             // (B, T, C)
  auto q = b.q.forward(h).view({B, T, H, D});                    // (B, T, H, D)
  auto k = b.k.forward(h).view({B, T, KV, D});                   // (B, T, KV, D)
  auto v = b.v.forward(h).view({B, T, KV, D}).transpose(1, 2);   // (B, KV, T, D)
  if (cfg_.qk_norm) {
    q = rms_norm(q, b.q_norm, cfg_.norm_eps);
    k = rms_norm(k, b.k_norm, cfg_.norm_eps);
  }
  q = apply_rope(q.transpose(1, 2), cos, sin);                   // (B, H, T, D)
  k = apply_rope(k.transpose(1, 2), cos, sin);                   // (B, KV, T, D)
  k = repeat_kv(k, H / KV);                                      // (B, H, T, D)
  v = repeat_kv(v, H / KV);                                      // (B, H, T, D)
  auto y = compat::attention(q, k, v, mask);                     // (B, H, T, D)
  y = y.transpose(1, 2).reshape({B, T, H * D});                  // (B, T, H*D)
  auto out = x + b.o.forward(y);                                 // (B, T, C)
  // mlp
  h = rms_norm(out, b.post_norm, cfg_.norm_eps);                 // (B, T, C)
  auto act = torch::silu(b.gate.forward(h)) * b.up.forward(h);   // (B, T, F)
  return out + b.down.forward(act);                              // (B, T, C)
}

torch::Tensor Model::hidden_states(const torch::Tensor& ids_in, const torch::Tensor& attention_mask,
                                   bool host_checked) {
  if (ids_in.dim() != 2) {
    fail("Model::hidden_states", "ids must be (B, T)", "2 dims", std::to_string(ids_in.dim()) + " dims");
  }
  const int64_t T = ids_in.size(1);
  if (attention_mask.defined() && attention_mask.sizes() != ids_in.sizes()) {
    fail("Model::hidden_states", "attention_mask must match ids", shape_str(ids_in.sizes().vec()),
         shape_str(attention_mask.sizes().vec()));
  }
  auto ids = ids_in.to(device()).to(torch::kInt64);
  if (!host_checked && ids.numel() > 0) {
    int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= cfg_.n_vocab) {
      fail("Model::hidden_states", "token id out of range",
           "0 <= id < " + std::to_string(cfg_.n_vocab), std::to_string(lo < 0 ? lo : hi),
           "the tokenizer does not belong to this model");
    }
  }
  auto x = torch::embedding(embed_, ids);                        // (B, T, C)
  // RoPE tables shared by every layer; positions 0..T-1 in every row, as HF without position_ids.
  auto inv_freq = rope_inv_freq(cfg_, T).to(device());           // (D/2)
  auto pos = torch::arange(T, torch::TensorOptions().dtype(torch::kFloat32).device(device()));
  auto freqs = torch::outer(pos, inv_freq);                      // (T, D/2)
  auto emb = torch::cat({freqs, freqs}, -1);                     // (T, D)
  auto cos = emb.cos().to(dtype()), sin = emb.sin().to(dtype());  // (T, D)
  auto mask = attention_mask_for(attention_mask, T, host_checked);  // (B, 1, T, T) or causal
  for (Block& b : blocks_) {
    const torch::Device dev = b.input_norm.device();
    if (x.device() != dev) {  // the next run of layers of a split model; backward copies back
      x = x.to(dev);
      cos = cos.to(dev);
      sin = sin.to(dev);
      if (mask.defined()) mask = mask.to(dev);
    }
    if (checkpointing_ && torch::GradMode::is_enabled()) {
      auto block = [this, &b, cos, sin, mask](const torch::Tensor& h) {
        return block_forward(b, h, cos, sin, mask);
      };
      x = recompute_in_backward(block, x);  // (B, T, C)
    } else {
      x = block_forward(b, x, cos, sin, mask);  // (B, T, C)
    }
  }
  return rms_norm(x.to(output_device()), final_norm_, cfg_.norm_eps);  // (B, T, C)
}

torch::Tensor Model::logits(const torch::Tensor& hidden) {
  return lm_head_.forward(hidden).to(torch::kFloat32);           // (..., V)
}

torch::Tensor Model::forward(const torch::Tensor& ids, const torch::Tensor& attention_mask) {
  return logits(hidden_states(ids, attention_mask));             // (B, T, V)
}

torch::Tensor LossResult::mean() const {
  return n_tokens > 0 ? sum / static_cast<double>(n_tokens) : sum;
}

LossResult lm_loss(Model& model, const torch::Tensor& hidden, const torch::Tensor& ids,
                   const torch::Tensor& attention_mask, const torch::Tensor& loss_mask,
                   int64_t chunk) {
  const int64_t B = ids.size(0), T = ids.size(1);
  if (T < 2) return lm_loss_at(model, hidden, {}, {}, 0, chunk);
  auto dev = hidden.device();
  auto keep = torch::ones({B, T - 1}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  if (loss_mask.defined()) keep = keep.logical_and(loss_mask.to(dev).to(torch::kBool).narrow(1, 1, T - 1));
  if (attention_mask.defined()) {
    keep = keep.logical_and(attention_mask.to(dev).to(torch::kBool).narrow(1, 1, T - 1));
  }
  keep = torch::cat({keep, torch::zeros({B, 1}, keep.options())}, 1);  // (B, T): last predicts nothing
  auto positions = keep.reshape({-1}).nonzero().squeeze(1);     // (N), waits for the device
  auto t = ids.to(dev).to(torch::kInt64).reshape({-1}).index_select(0, positions + 1);  // (N)
  return lm_loss_at(model, hidden, positions, t, positions.size(0), chunk);
}

LossResult lm_loss_at(Model& model, const torch::Tensor& hidden, const torch::Tensor& positions,
                      const torch::Tensor& targets, int64_t n, int64_t chunk) {
  LossResult r;
  r.sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(hidden.device()));
  r.n_tokens = n;
  if (n == 0) return r;
  const int64_t C = hidden.size(2);
  // Only supervised positions reach lm_head: prompts and padding cost nothing.
  auto h = hidden.reshape({-1, C}).index_select(0, positions.to(hidden.device()));  // (N, C)
  // Under checkpointing each chunk's logits are recomputed in backward, not kept: at a 128k
  // vocabulary they are 1.5 MB a token, more than an 8B model's 32 recomputed blocks keep.
  const bool recompute = model.checkpointing() && torch::GradMode::is_enabled();
  int64_t step = chunk > 0 ? chunk : n;
  if (recompute && chunk <= 0) step = recompute_chunk(model.config().n_vocab);
  for (int64_t s = 0; s < n; s += step) {
    const int64_t k = std::min(step, n - s);
    torch::Tensor t = targets.narrow(0, s, k).to(hidden.device());  // (k)
    auto chunk_loss = [&model, t](const torch::Tensor& x) {     // x (k, C)
      auto logits = model.logits(x);                            // (k, V) fp32
      return torch::nn::functional::cross_entropy(
          logits, t, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    };
    auto x = h.narrow(0, s, k);
    r.sum = r.sum + (recompute ? recompute_in_backward(chunk_loss, x) : chunk_loss(x));
  }
  return r;
}

int64_t recompute_chunk(int64_t n_vocab) {
  return std::clamp<int64_t>((int64_t(1) << 25) / std::max<int64_t>(1, n_vocab), 64, 8192);
}

}  // namespace lorank
