#include "probe.h"

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "compat.h"
#include "error.h"
#include "model.h"
#include "progress.h"

namespace lorank {

namespace {

const std::vector<std::string> kKinds = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                         "gate_proj", "up_proj", "down_proj"};

// Linears that read the same input tensor share one input moment.
std::string input_group(const Linear& l) {
  if (l.kind == "q_proj" || l.kind == "k_proj" || l.kind == "v_proj") return "attn_in";
  if (l.kind == "gate_proj" || l.kind == "up_proj") return "mlp_in";
  return l.kind;
}

// What every hook needs to know about the batch in flight.
struct BatchContext {
  torch::Tensor real;    // (N) int64: flat (B·T) positions of real tokens
  torch::Tensor scored;  // (N) bool: real positions whose next token is supervised
  size_t shard = 0;
  // Additions to the probe's sums during this batch: while none, the batch may be redone.
  int64_t accumulated = 0;
  // real and scored on the further devices of a split model, copied once a batch.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> elsewhere;

  void set(torch::Tensor r, torch::Tensor s) {
    real = std::move(r);
    scored = std::move(s);
    elsewhere.clear();
  }
  std::pair<torch::Tensor, torch::Tensor> on(const torch::Device& d) {
    if (real.device() == d) return {real, scored};
    for (const auto& p : elsewhere) {
      if (p.first.device() == d) return p;
    }
    elsewhere.emplace_back(real.to(d), scored.to(d));
    return elsewhere.back();
  }
};

// Accumulators of one input group: split by scored / other so both moments cost one pass.
struct MomentPair {
  torch::Tensor scored, other;  // (d_in, d_in) fp32
};

class ProbeHook : public LinearHook {
 public:
  ProbeHook(ModuleProbe& m, BatchContext& ctx, MomentPair* moments, bool tf32)
      : m_(m), ctx_(ctx), moments_(moments), tf32_(tf32) {}

  torch::Tensor forward(const torch::Tensor& x, torch::Tensor y) override {
    // No backward follows a pass without grad mode: under checkpointing, the block's first pass.
    // Its recomputation in backward, with grad mode on, records instead.
    if (!torch::GradMode::is_enabled()) return y;
    const int64_t d_in = x.size(-1);
    const auto here = ctx_.on(x.device());
    const torch::Tensor real = here.first, scored = here.second;  // (N) on x's device
    // Kept in the model's dtype until backward (half the memory of fp32 for a bf16 model).
    auto xr = x.detach().reshape({-1, d_in}).index_select(0, real);  // (N, d_in)
    if (moments_) {
      auto xf = xr.to(torch::kFloat32);
      auto xs = xf.index({scored}), xo = xf.index({scored.logical_not()});  // (Ns|No, d_in)
      moments_->scored.addmm_(xs.t(), xs);
      moments_->other.addmm_(xo.t(), xo);
      ++ctx_.accumulated;
    }
    if (!y.requires_grad()) y.requires_grad_(true);  // the first layer's y is a leaf
    ShardGradients* g = &m_.grad;
    const size_t shard = ctx_.shard;
    BatchContext* ctx = &ctx_;  // outlives the batch's backward
    const bool tf32 = tf32_;
    y.register_hook([g, xr, real, shard, ctx, tf32](const torch::Tensor& grad) {
      ++ctx->accumulated;
      auto d = grad.reshape({-1, grad.size(-1)}).index_select(0, real).to(torch::kFloat32);  // (N, d_out)
      auto x = xr.to(torch::kFloat32);  // (N, d_in)
      if (g->is_exact()) {
        g->exact[shard].addmm_(d.t(), x);                     // (d_out, d_in) += δᵀ X
      } else {
        // Random projections whose own error is far above TF32's rounding (2^-11).
        compat::Tf32Matmuls fast(tf32, d.device());
        g->range[shard].addmm_(d.t(), x.mm(g->omega));            // (d_out, k) += δᵀ (X Ω)
        g->corange[shard].addmm_(d.mm(g->psi).t(), x);            // (k, d_in) += (δ Ψ)ᵀ X
        g->core[shard].addmm_(d.mm(g->phi).t(), x.mm(g->xi));     // (s, s) += (δ Φ)ᵀ (X Ξ)
      }
    });
    return y;
  }

 private:
  ModuleProbe& m_;
  BatchContext& ctx_;
  MomentPair* moments_;  // null unless this module is its input group's first target
  bool tf32_;            // sketch products on TF32 tensor cores (CUDA)
};

// The probe's choice of recomputing decoder blocks in backward, for its lifetime.
struct CheckpointingGuard {
  Model& model;
  bool before;
  CheckpointingGuard(Model& m, bool on) : model(m), before(m.checkpointing()) {
    m.set_checkpointing(on);
  }
  ~CheckpointingGuard() { model.set_checkpointing(before); }
};

// Installs hooks for the probe's lifetime and restores the linears' previous (empty) hooks.
struct HookGuard {
  std::vector<Linear*> linears;
  ~HookGuard() {
    for (Linear* l : linears) l->hook.reset();
  }
};

bool any_cuda(const Model& model) {
  for (const torch::Device& d : model.devices()) {
    if (d.is_cuda()) return true;
  }
  return false;
}

uint64_t mix_seed(uint64_t seed, uint64_t i) {  // splitmix64 step: distinct streams per module
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

torch::Tensor gaussian(int64_t rows, int64_t cols, uint64_t seed, const torch::Device& device) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn({rows, cols}, gen, torch::kFloat32).to(device);  // (rows, cols)
}

int64_t nbytes(const torch::Tensor& t) { return t.defined() ? int64_t(t.nbytes()) : 0; }

// Gaussian test matrices by (rows, cols, role): modules of one shape share them. Each module's
// sketch needs test matrices independent of its own gradient, not of the other modules', and an
// 8B model's 224 modules then keep 4 sets (70 MB) instead of 224 (4 GB).
// On a split model each device keeps its own copies (the same values).
using TestMatrices = std::map<std::array<int64_t, 3>, torch::Tensor>;
using DeviceTestMatrices = std::vector<std::pair<torch::Device, TestMatrices>>;

TestMatrices& tests_on(DeviceTestMatrices& all, const torch::Device& device) {
  for (auto& [d, t] : all) {
    if (d == device) return t;
  }
  return all.emplace_back(device, TestMatrices{}).second;
}

// One module's accumulators, on its weight's device: the shards' sums stay undefined until
// start_shard.
ShardGradients make_accumulators(const Linear& l, GradMode mode, const ProbeOptions& opts,
                                 DeviceTestMatrices& all_tests) {
  const torch::Device device = l.weight.device();
  TestMatrices& tests = tests_on(all_tests, device);
  ShardGradients g;
  g.d_out = l.d_out();
  g.d_in = l.d_in();
  const size_t K = size_t(opts.n_shards);
  g.n_tokens.assign(K, 0);
  if (mode == GradMode::exact) g.exact.resize(K);
  if (mode == GradMode::sketch) {
    const int64_t k = opts.sketch_rank, s = 2 * opts.sketch_rank + 1;
    auto test_matrix = [&](int64_t rows, int64_t cols, int64_t role) {
      torch::Tensor& t = tests[{rows, cols, role}];
      if (!t.defined()) {
        uint64_t key = uint64_t(rows) * 1000003u + uint64_t(cols) * 31u + uint64_t(role);
        t = gaussian(rows, cols, mix_seed(opts.seed, key), device);
      }
      return t;
    };
    g.omega = test_matrix(g.d_in, k, 0);   // (d_in, k)
    g.psi = test_matrix(g.d_out, k, 1);    // (d_out, k)
    g.phi = test_matrix(g.d_out, s, 2);    // (d_out, s)
    g.xi = test_matrix(g.d_in, s, 3);      // (d_in, s)
    g.range.resize(K);
    g.corange.resize(K);
    g.core.resize(K);
  }
  return g;
}

// Zeroed sums of shard s for every module, on its target's device.
void start_shard(ProbeResult& r, size_t s, const std::vector<Linear*>& targets) {
  for (size_t i = 0; i < r.modules.size(); ++i) {
    auto zeros = [device = targets[i]->weight.device()](int64_t rows, int64_t cols) {
      return torch::zeros({rows, cols},
                          torch::TensorOptions().dtype(torch::kFloat32).device(device));
    };
    ShardGradients& g = r.modules[i].grad;
    if (g.is_exact()) {
      g.exact[s] = zeros(g.d_out, g.d_in);
    } else {
      const int64_t k = g.omega.size(1), sc = g.phi.size(1);
      g.range[s] = zeros(g.d_out, k);
      g.corange[s] = zeros(k, g.d_in);
      g.core[s] = zeros(sc, sc);
    }
  }
}

// Whether every shard's sums can stay on its GPU, not parked: see the definition.
bool keep_shards_on_gpus(Model& model, const std::vector<Linear*>& targets,
                         const ProbeOptions& opts, GradMode mode);

// A finished shard's sums wait in CPU memory: a GPU then holds one shard's, not K.
void park_shard(ProbeResult& r, size_t s) {
  for (auto& m : r.modules) {
    for (auto* part : m.grad.sums()) {
      if (s < part->size() && (*part)[s].defined()) (*part)[s] = (*part)[s].to(torch::kCPU);
    }
  }
}

// Examples to probe (a seeded sample when max_examples or max_tokens asks) dealt into disjoint
// shards, the copies of an example into one: halves that share data would count the round-off
// between two equal gradients as signal.
std::vector<std::vector<size_t>> probe_shards(const std::vector<Example>& examples,
                                              const ProbeOptions& opts) {
  const auto pool = sample_examples(examples, opts.max_examples, opts.max_tokens, opts.seed);
  std::vector<std::vector<size_t>> groups;  // the pool's distinct examples, with their copies
  std::unordered_map<std::string, size_t> group_of;
  for (size_t i : pool) {
    auto [at, fresh] = group_of.emplace(example_key(examples[i]), groups.size());
    if (fresh) groups.emplace_back();
    groups[at->second].push_back(i);
  }
  if (groups.size() < size_t(opts.n_shards)) {
    const bool sampled = pool.size() < examples.size();
    const std::string what = groups.size() < pool.size() ? "distinct example" : "example";
    fail("--shards", "more shards than " + what + "s to probe",
         "at least " + std::to_string(opts.n_shards) + " " + what + "s (one per shard)",
         count_of(int64_t(groups.size()), sampled ? "sampled " + what : what),
         groups.size() >= 2 ? "pass --shards " + std::to_string(groups.size()) +
                                  (sampled ? ", or raise --max-tokens/--sample" : "")
         : sampled ? "raise --max-tokens or --sample"
                   : "the probe compares halves of the data: it needs 2 different examples");
  }
  auto shards = make_shards(groups.size(), size_t(opts.n_shards), opts.seed);
  for (auto& s : shards) {
    std::vector<size_t> members;
    for (size_t g : s) members.insert(members.end(), groups[g].begin(), groups[g].end());
    std::sort(members.begin(), members.end());
    s = std::move(members);
  }
  return shards;
}

GradMode choose_mode(const std::vector<Linear*>& targets, const ProbeOptions& opts) {
  if (opts.mode != GradMode::automatic) return opts.mode;
  return exact_gradient_bytes(targets, opts.n_shards) <= opts.exact_budget_bytes ? GradMode::exact
                                                                                  : GradMode::sketch;
}

std::string moment_key(const Linear& l) {
  return std::to_string(l.layer) + ":" + input_group(l);
}

// Bytes of the input moments (two fp32 d_in² sums per input group); 0 when asked for none or
// over the budget, and then none are made.
int64_t moment_bytes(const std::vector<Linear*>& targets, const ProbeOptions& opts) {
  if (!opts.input_moments) return 0;
  std::set<std::string> groups;
  int64_t bytes = 0;
  for (const Linear* l : targets) {
    if (groups.insert(moment_key(*l)).second) bytes += 2 * l->d_in() * l->d_in() * 4;
  }
  return bytes <= opts.moment_budget_bytes ? bytes : 0;
}

// One moment pair per input group, owned by the group's first target; none over the budget
// (checked before allocating: an 8B model's would take 65 GB).
std::map<std::string, MomentPair> make_moments(const std::vector<Linear*>& targets,
                                               const ProbeOptions& opts) {
  std::map<std::string, MomentPair> out;
  if (moment_bytes(targets, opts) == 0) return out;
  for (const Linear* l : targets) {
    const std::string key = moment_key(*l);
    if (out.count(key)) continue;
    auto z = torch::zeros({l->d_in(), l->d_in()},
                          torch::TensorOptions().dtype(torch::kFloat32).device(l->weight.device()));
    out[key] = {z, z.clone()};
  }
  return out;
}

// A trace point after the GPU's queued work, so that each span holds its own kernels.
void trace_synced(const Model& model, const std::string& what) {
  if (!tracing()) return;
  for (const torch::Device& d : model.devices()) {
    if (d.is_cuda()) compat::cuda_synchronize(d);
  }
  trace(what);
}

// Loss and gradients of one batch; the hooks do the accumulating.
void probe_batch(Model& model, const Batch& batch, const ProbeOptions& opts, BatchContext& ctx,
                 ProbeResult& r) {
  ctx.accumulated = 0;
  if (opts.batching.before_batch) opts.batching.before_batch(batch.batch_size);
  BatchTensors t = to_tensors(batch, model);
  const int64_t B = batch.batch_size, T = batch.seq_len;
  auto real = t.attention_mask.reshape({-1}).nonzero().squeeze(1);  // (N)
  // Position p is scored when its target p+1 is supervised and real.
  auto next = (t.loss_mask * t.attention_mask).narrow(1, 1, T - 1);        // (B, T-1)
  auto scored = torch::cat({next, torch::zeros({B, 1}, next.options())}, 1);  // (B, T)
  ctx.set(real, scored.reshape({-1}).index_select(0, real).to(torch::kBool));  // (N), (N)
  trace_synced(model, "  batch on the device");
  auto hidden = model.hidden_states(t.ids, t.attention_mask);              // (B, T, C)
  trace_synced(model, "  forward");
  LossResult loss = lm_loss(model, hidden, t.ids, t.attention_mask, t.loss_mask);
  trace_synced(model, "  loss");
  if (opts.before_backward) opts.before_backward();
  if (loss.n_tokens > 0 && loss.sum.requires_grad()) loss.sum.backward();
  trace_synced(model, "  backward and sums");
  r.shard_tokens[ctx.shard] += ctx.real.size(0);
  r.shard_supervised[ctx.shard] += loss.n_tokens;
  const double sum = loss.sum.item<double>();
  require_finite_base_loss(sum);
  r.shard_loss_sum[ctx.shard] += sum;
}

void finish_moments(ProbeResult& r, const std::vector<Linear*>& targets,
                    std::map<std::string, MomentPair>& moments) {
  r.input_moments = !moments.empty();
  for (auto& kv : moments) {
    kv.second.other.add_(kv.second.scored);  // now Σ over every real token
    r.state_bytes += nbytes(kv.second.scored) + nbytes(kv.second.other);
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    auto it = moments.find(moment_key(*targets[i]));
    if (it == moments.end()) continue;
    r.modules[i].moment_scored = it->second.scored;
    r.modules[i].moment_all = it->second.other;
  }
}

std::string loss_status(double loss) {
  return "loss " + format_number("%.3f", loss);
}

// A batch that ran out of memory after adding to the sums cannot be redone without counting twice.
[[noreturn]] void fail_half_counted(const std::vector<Example>& examples,
                                    const std::vector<size_t>& idx, const ProbeOptions& o,
                                    const c10::Error& oom) {
  const int64_t padded = padded_tokens(examples, idx);
  fail("the probe",
       "CUDA out of memory after part of a batch was summed (" +
           compat::out_of_memory_summary(oom) + ")",
       "a batch that fits",
       std::to_string(idx.size()) + " examples, " + std::to_string(padded) + " padded tokens",
       "rerun with --batch-tokens " +
           std::to_string(std::max<int64_t>(16, std::min(padded, o.batching.batch_tokens) / 2)) +
           " (this run had " + std::to_string(o.batching.batch_tokens) + ")");
}

// One shard's examples, longest first. Out of memory before anything was summed: the rest goes
// again in smaller batches, and `o` keeps the smaller limits for later shards.
void probe_shard(Model& model, const std::vector<Example>& examples,
                 const std::vector<size_t>& shard, ProbeOptions& o, BatchContext& ctx,
                 ProbeResult& r) {
  std::vector<size_t> pending = shard;
  while (!pending.empty()) {
    const auto batches = length_sorted_batches(examples, pending, o.batching);
    size_t done = 0;
    try {
      for (; done < batches.size(); ++done) {
        probe_batch(model, make_batch(examples, batches[done], o.batching.pad_id), o, ctx, r);
        if (o.progress) o.progress->advance(ctx.real.size(0), loss_status(r.base_loss()));
        if (tracing()) {
          trace("probe shard " + std::to_string(ctx.shard) + " batch " + std::to_string(done) +
                ", " + std::to_string(ctx.real.size(0)) + " tokens");
        }
      }
      pending.clear();
    } catch (const c10::Error& e) {
      if (!compat::is_out_of_memory(e)) throw;
      if (ctx.accumulated > 0) fail_half_counted(examples, batches[done], o, e);
      shrink_batches_after_oom(o.batching, examples, batches[done], e, "the probe");
      pending = batches_from(batches, done);
    }
  }
}

// One accumulator set and hook per target; the first target of each input group owns its moments.
void install_hooks(const std::vector<Linear*>& targets, const ProbeOptions& opts, BatchContext& ctx,
                   std::map<std::string, MomentPair>& moments, ProbeResult& r, HookGuard& guard) {
  std::set<std::string> owned;
  DeviceTestMatrices tests;
  r.modules.reserve(targets.size());  // hooks hold references into r.modules
  for (size_t i = 0; i < targets.size(); ++i) {
    Linear* l = targets[i];
    r.modules.push_back({l->name, l->kind, l->layer, make_accumulators(*l, r.mode, opts, tests)});
    const std::string key = moment_key(*l);
    MomentPair* mp = moments.count(key) && owned.insert(key).second ? &moments[key] : nullptr;
    l->hook = std::make_shared<ProbeHook>(r.modules.back(), ctx, mp, opts.sketch_tf32);
    guard.linears.push_back(l);
  }
}

}  // namespace

std::string grad_mode_name(GradMode mode) {
  switch (mode) {
    case GradMode::automatic: return "auto";
    case GradMode::exact: return "exact";
    case GradMode::sketch: return "sketch";
  }
  return "?";
}

GradMode grad_mode_from_name(const std::string& name) {
  if (name == "auto") return GradMode::automatic;
  if (name == "exact") return GradMode::exact;
  if (name == "sketch") return GradMode::sketch;
  fail("--grad-mode", "unknown gradient mode", "auto, exact or sketch", name);
}

int64_t ProbeResult::n_tokens() const {
  int64_t n = 0;
  for (int64_t t : shard_tokens) n += t;
  return n;
}

int64_t ProbeResult::n_supervised() const {
  int64_t n = 0;
  for (int64_t t : shard_supervised) n += t;
  return n;
}

double ProbeResult::base_loss() const {
  double sum = 0;
  for (double s : shard_loss_sum) sum += s;
  return n_supervised() > 0 ? sum / double(n_supervised()) : 0.0;
}

int64_t default_probe_tokens(const torch::Device& device) {
  return device.is_cuda() ? 262144 : 16384;
}

std::vector<Linear*> probe_targets(Model& model, const ProbeOptions& opts) {
  for (const auto& k : opts.target_kinds) {
    if (std::find(kKinds.begin(), kKinds.end(), k) == kKinds.end()) {
      fail_usage(
          "--targets", "unknown module type '" + k + "'",
          "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj", k,
          "name module types, comma-separated (--targets q_proj,v_proj); the probe adapts no "
          "lm_head");
    }
  }
  const int64_t n_layer = model.config().n_layer;
  for (int64_t l : opts.layers) {
    if (l < 0 || l >= n_layer) {
      fail("--layers", "layer out of range", "0 <= layer < " + std::to_string(n_layer),
           std::to_string(l),
           "layers count from 0; this model has " + std::to_string(n_layer) +
               " (num_hidden_layers in config.json)");
    }
  }
  auto wanted = [](const auto& list, const auto& v) {
    return list.empty() || std::find(list.begin(), list.end(), v) != list.end();
  };
  std::vector<Linear*> out;
  for (Linear* l : model.linears()) {
    if (wanted(opts.target_kinds, l->kind) && wanted(opts.layers, l->layer)) out.push_back(l);
  }
  return out;
}

int64_t exact_gradient_bytes(const std::vector<Linear*>& targets, int64_t n_shards) {
  int64_t n = 0;
  for (const Linear* l : targets) n += l->d_out() * l->d_in();
  return n * n_shards * int64_t(sizeof(float));
}

ProbeResult run_probe(Model& model, const std::vector<Example>& examples, const ProbeOptions& opts) {
  if (opts.n_shards < 2)  // checked before the work: cross-fitting compares halves of the shards
    fail("probe", "shards must be >= 2", ">= 2", std::to_string(opts.n_shards),
         "the noise floor compares two halves of the data: n_shards 4 gives three such splits");
  if (opts.sketch_rank < 1) fail("probe", "sketch rank must be >= 1", ">= 1", std::to_string(opts.sketch_rank));
  auto start = std::chrono::steady_clock::now();
  std::vector<Linear*> targets = probe_targets(model, opts);
  if (targets.empty()) fail("probe", "no target modules selected", "at least one", "none");
  for (Linear* l : targets) {
    if (l->hook) fail(l->name, "module already has a hook (LoRA attached?)", "a bare model", "a hook",
                      "probe the base model without adapters");
  }
  ProbeResult r;
  r.mode = choose_mode(targets, opts);
  r.sketch_rank = r.mode == GradMode::sketch ? opts.sketch_rank : 0;
  r.shards = probe_shards(examples, opts);
  const size_t K = r.shards.size();
  r.shard_tokens.assign(K, 0);
  r.shard_supervised.assign(K, 0);
  r.shard_loss_sum.assign(K, 0.0);
  auto moments = make_moments(targets, opts);
  BatchContext ctx;
  HookGuard guard;
  install_hooks(targets, opts, ctx, moments, r, guard);
  ProbeOptions o = opts;  // batches shrink on out of memory
  r.device = model.device();
  r.checkpointing = opts.checkpointing;
  CheckpointingGuard recompute(model, opts.checkpointing);
  const bool park = any_cuda(model) && !keep_shards_on_gpus(model, targets, opts, r.mode);
  for (size_t s = 0; s < K; ++s) {
    ctx.shard = s;
    start_shard(r, s, targets);
    trace_synced(model, "shard " + std::to_string(s) + " sums allocated");
    probe_shard(model, examples, r.shards[s], o, ctx, r);
    if (park && s + 1 < K) park_shard(r, s);
    trace_synced(model, "shard " + std::to_string(s) + (park && s + 1 < K ? " parked" : " done"));
  }
  r.batch_tokens = o.batching.batch_tokens;
  std::set<const void*> counted;  // test matrices are shared by modules of one shape
  for (auto& m : r.modules) {
    m.grad.n_tokens = r.shard_supervised;
    for (const auto* part : m.grad.sums()) {
      for (const auto& t : *part) r.state_bytes += nbytes(t);
    }
    for (const auto* t : {&m.grad.omega, &m.grad.psi, &m.grad.phi, &m.grad.xi}) {
      if (t->defined() && counted.insert(t->data_ptr()).second) r.state_bytes += nbytes(*t);
    }
  }
  finish_moments(r, targets, moments);
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  r.peak_rss_bytes = int64_t(ru.ru_maxrss) * 1024;
  r.peak_gpu_bytes = model.peak_gpu_bytes();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

namespace {

std::vector<Linear*> targets_on(const std::vector<Linear*>& targets, const torch::Device& device) {
  std::vector<Linear*> out;
  for (Linear* l : targets) {
    if (l->weight.device() == device) out.push_back(l);
  }
  return out;
}

// Bytes the probe holds besides activations: test matrices (one set per shape), one shard's sums
// (the others wait in CPU memory, or take at most keep_shards_share) and the input moments, for
// `targets` (those on one device).
int64_t probe_state_bytes(const std::vector<Linear*>& targets, const ProbeOptions& opts,
                          GradMode mode, bool moments) {
  const int64_t moment = moments ? moment_bytes(targets, opts) : 0;
  if (mode == GradMode::exact) return exact_gradient_bytes(targets, 1) + moment;
  const int64_t k = opts.sketch_rank, s = 2 * k + 1;
  std::set<std::pair<int64_t, int64_t>> shapes;
  int64_t bytes = 0;
  for (const Linear* l : targets) {
    const int64_t d = l->d_in() + l->d_out();
    if (shapes.insert({l->d_in(), l->d_out()}).second) bytes += d * (k + s) * 4;
    bytes += (d * k + s * s) * 4;
  }
  return bytes + moment;
}

// Parking a shard costs a copy into fresh CPU memory (55 ms a shard for small-llama's 75 MB on an
// H200 host, page faults included); batch sizing counts one shard and leaves 3/4 of free memory.
bool keep_shards_on_gpus(Model& model, const std::vector<Linear*>& targets,
                         const ProbeOptions& opts, GradMode mode) {
  for (const torch::Device& d : model.devices()) {
    if (!d.is_cuda()) continue;
    const int64_t others =
        (opts.n_shards - 1) * probe_state_bytes(targets_on(targets, d), opts, mode, false);
    if (double(others) > opts.keep_shards_share * double(compat::cuda_free_bytes(d))) return false;
  }
  return true;
}

// Tokens a pass fits on one device, with and without recomputing blocks in backward.
struct PassRoom {
  int64_t full = INT64_MAX, recompute = INT64_MAX;
};

// Bytes a token keeps until backward: logits, log-softmax and their grad (fp32, on the last
// device), every block's activations (bf16) and the hooks' copies of each target's input.
// Recomputing blocks in backward keeps each block's input and one block's activations and copies
// instead, and the logits of one loss chunk (recompute_chunk) in place of every token's.
PassRoom room_on(Model& model, const torch::Device& device, const std::vector<Linear*>& targets,
                 const ProbeOptions& opts, GradMode mode, bool moments) {
  PassRoom out;
  const int64_t free = compat::cuda_free_bytes(device);
  if (free <= 0) return out;
  const ModelConfig& c = model.config();
  const std::vector<Linear*> here = targets_on(targets, device);
  int64_t n_layer = 0;
  for (int64_t i = 0; i < c.n_layer; ++i) n_layer += model.layer_device(i) == device;
  const bool last = device == model.output_device();
  const int64_t spare = std::max<int64_t>(0, free - probe_state_bytes(here, opts, mode, moments));
  const int64_t block = (16 * c.n_embd + 6 * c.n_ff) * 2;
  int64_t copies = 0;
  for (const Linear* l : here) copies += int64_t(l->weight.element_size()) * l->d_in();
  const int64_t logits = last ? 12 * c.n_vocab : 0;
  const int64_t full = logits + n_layer * block + copies;
  const int64_t recompute = n_layer * 4 * c.n_embd + (n_layer > 0 ? block + copies / n_layer : 0);
  if (full > 0) out.full = spare / 4 / full;
  const int64_t chunk_logits = logits * recompute_chunk(c.n_vocab);
  if (recompute > 0) out.recompute = std::max<int64_t>(0, spare - chunk_logits) / 4 / recompute;
  return out;
}

}  // namespace

ProbeOptions auto_probe_batching(Model& model, const ProbeOptions& opts) {
  ProbeOptions o = opts;
  const auto targets = probe_targets(model, opts);
  const GradMode mode = choose_mode(targets, opts);
  const bool moments = moment_bytes(targets, opts) > 0;
  PassRoom room;  // the fullest device decides
  for (const torch::Device& d : model.devices()) {
    const PassRoom r = room_on(model, d, targets, opts, mode, moments);
    room.full = std::min(room.full, r.full);
    room.recompute = std::min(room.recompute, r.recompute);
  }
  if (room.full == INT64_MAX) return o;  // no CUDA device: the CPU's defaults
  // Below 2,048 tokens a pass, fewer passes pay for the recomputation (about a third more work).
  o.checkpointing = room.full < 2048 && room.recompute > room.full;
  const int64_t tokens = o.checkpointing ? room.recompute : room.full;
  o.batching.batch_tokens = std::clamp<int64_t>(tokens, 256, 16384);
  o.batching.max_batch = 1024;
  return o;
}

}  // namespace lorank
