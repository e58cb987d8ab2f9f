// The gradient probe on tiny-llama: hook gradients against autograd's weight gradients, input
// moments against recorded inputs, shards, determinism, sketch vs exact, runtime and the CLI.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "compat.h"
#include "error.h"
#include "model_fixtures.h"
#include "probe.h"
#include "runtime.h"
#include "tokenizer.h"

namespace lorank {
namespace {

const std::vector<Example>& examples_of(const std::string& path) {
  static std::map<std::string, std::vector<Example>> cache;
  auto it = cache.find(path);
  if (it != cache.end()) return it->second;
  std::string dir = test::tiny_llama_dir();
  auto tok = load_tokenizer(dir);
  TokenizerConfig cfg = load_tokenizer_config(dir, *tok);
  return cache[path] = load_dataset(path, *tok, cfg, DatasetOptions{}).examples;
}

const std::vector<Example>& cmudict() { return examples_of(test::asset("data/cmudict.jsonl")); }

ProbeOptions small_options() {
  ProbeOptions o;
  o.n_shards = 2;
  o.max_examples = 12;
  o.seed = 5;
  o.target_kinds = {"q_proj", "up_proj", "down_proj"};
  o.layers = {0, 2};
  o.batching.batch_tokens = 256;  // several batches per shard
  return o;
}

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

// Summed supervised loss of `idx` with everything else as the probe runs it.
torch::Tensor summed_loss(Model& model, const std::vector<Example>& ex, const std::vector<size_t>& idx) {
  BatchTensors t = to_tensors(make_batch(ex, idx, 0), model);
  auto hidden = model.hidden_states(t.ids, t.attention_mask);  // (B, T, C)
  return lm_loss(model, hidden, t.ids, t.attention_mask, t.loss_mask).sum;
}

// The reference: the weight gradient autograd gives when the weight itself requires grad.
TEST(Probe, HookGradientEqualsAutogradWeightGradient) {
  Model& model = test::tiny_llama();
  ProbeOptions o = small_options();
  o.mode = GradMode::exact;
  ProbeResult r = run_probe(model, cmudict(), o);
  ASSERT_EQ(r.modules.size(), 6u);
  for (size_t shard = 0; shard < 2; ++shard) {
    for (const auto& m : r.modules) model.find_linear(m.name)->weight.requires_grad_(true);
    summed_loss(model, cmudict(), r.shards[shard]).backward();
    for (const auto& m : r.modules) {
      torch::Tensor& w = model.find_linear(m.name)->weight;
      EXPECT_LT(rel_err(m.grad.exact[shard], w.grad()), 1e-5) << m.name << " shard " << shard;
      EXPECT_GT(w.grad().norm().item<double>(), 0.0);
      w.requires_grad_(false);
      w.mutable_grad() = torch::Tensor();
    }
  }
  EXPECT_EQ(r.mode, GradMode::exact);
  for (Linear* l : model.linears()) EXPECT_FALSE(l->hook) << "hooks removed after the probe";
}

struct Recorder : LinearHook {
  std::vector<torch::Tensor> inputs;
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor y) override {
    inputs.push_back(x.detach().clone());
    return y;
  }
};

TEST(Probe, InputMomentsEqualRecordedInputs) {
  Model& model = test::tiny_llama();
  ProbeOptions o = small_options();
  ProbeResult r = run_probe(model, cmudict(), o);
  ASSERT_TRUE(r.input_moments);
  // q_proj and up_proj of layer 0 read different inputs; down_proj its own.
  for (const std::string name : {"model.layers.0.self_attn.q_proj", "model.layers.2.mlp.down_proj"}) {
    auto rec = std::make_shared<Recorder>();
    Linear* l = model.find_linear(name);
    l->hook = rec;
    torch::Tensor all = torch::zeros({l->d_in(), l->d_in()}), scored = all.clone();
    for (const auto& shard : r.shards) {
      BatchTensors t = to_tensors(make_batch(cmudict(), shard, 0), model);
      torch::NoGradGuard ng;
      model.hidden_states(t.ids, t.attention_mask);
      auto x = rec->inputs.back().reshape({-1, l->d_in()});  // (B·T, d_in)
      auto real = t.attention_mask.reshape({-1}).to(torch::kBool);
      const int64_t T = t.ids.size(1);
      auto next = torch::cat({(t.loss_mask * t.attention_mask).narrow(1, 1, T - 1),
                              torch::zeros({t.ids.size(0), 1}, torch::kInt64)}, 1).reshape({-1}).to(torch::kBool);
      auto xr = x.index({real}), xs = x.index({next});
      all += xr.t().mm(xr);
      scored += xs.t().mm(xs);
    }
    l->hook.reset();
    const ModuleProbe* m = nullptr;
    for (const auto& mp : r.modules) if (mp.name == name) m = &mp;
    ASSERT_NE(m, nullptr);
    EXPECT_LT(rel_err(m->moment_all, all), 1e-5) << name;
    EXPECT_LT(rel_err(m->moment_scored, scored), 1e-5) << name;
  }
}

TEST(Probe, ShardsAreDisjointAndCoverTheSample) {
  ProbeOptions o = small_options();
  o.n_shards = 3;
  o.max_examples = 20;
  o.target_kinds = {"v_proj"};
  o.layers = {1};
  ProbeResult r = run_probe(test::tiny_llama(), cmudict(), o);
  ASSERT_EQ(r.shards.size(), 3u);
  std::set<size_t> seen;
  size_t total = 0;
  for (const auto& s : r.shards) {
    EXPECT_GE(s.size(), 6u);
    EXPECT_LE(s.size(), 7u);
    total += s.size();
    for (size_t i : s) {
      EXPECT_LT(i, cmudict().size());
      EXPECT_TRUE(seen.insert(i).second) << "example " << i << " in two shards";
    }
  }
  EXPECT_EQ(total, 20u);
  EXPECT_EQ(r.modules[0].grad.n_tokens, r.shard_supervised);
  for (int64_t n : r.shard_supervised) EXPECT_GT(n, 0);
}

TEST(Probe, TokenBudgetSamplesJustPastIt) {
  ProbeOptions o = small_options();
  o.max_examples = 0;
  o.max_tokens = 500;
  o.target_kinds = {"o_proj"};
  o.layers = {0};
  ProbeResult r = run_probe(test::tiny_llama(), cmudict(), o);
  int64_t longest = 0;
  for (const auto& e : cmudict()) longest = std::max<int64_t>(longest, int64_t(e.ids.size()));
  EXPECT_GE(r.n_tokens(), 500);
  EXPECT_LT(r.n_tokens(), 500 + longest);
  EXPECT_LT(r.shards[0].size() + r.shards[1].size(), cmudict().size());
}

TEST(Probe, SameSeedSameResult) {
  ProbeOptions o = small_options();
  ProbeResult a = run_probe(test::tiny_llama(), cmudict(), o);
  ProbeResult b = run_probe(test::tiny_llama(), cmudict(), o);
  EXPECT_EQ(a.shards, b.shards);
  for (size_t i = 0; i < a.modules.size(); ++i) {
    for (size_t k = 0; k < 2; ++k) EXPECT_TRUE(torch::equal(a.modules[i].grad.exact[k], b.modules[i].grad.exact[k]));
  }
  auto sa = analyse_probe(a, SpectrumOptions{}), sb = analyse_probe(b, SpectrumOptions{});
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i].gain, sb[i].gain);
  o.seed = 6;
  EXPECT_NE(run_probe(test::tiny_llama(), cmudict(), o).shards, a.shards);
}

// On a CPU the modules are analysed one a thread; each must come out as it does alone.
TEST(Probe, ModulesAnalysedSideBySideMatchOneAtATime) {
  ProbeOptions o = small_options();
  o.target_kinds = {"q_proj", "k_proj", "up_proj", "down_proj"};
  ProbeResult r = run_probe(test::tiny_llama(), cmudict(), o);
  const int64_t before = compute_threads();
  set_threads(1);
  auto alone = analyse_probe(r, SpectrumOptions{});
  set_threads(3);
  auto side_by_side = analyse_probe(r, SpectrumOptions{});
  EXPECT_EQ(compute_threads(), 3) << "the thread count must come back after the analysis";
  set_threads(before);
  ASSERT_EQ(alone.size(), side_by_side.size());
  ASSERT_EQ(alone.size(), 8u);
  for (size_t i = 0; i < alone.size(); ++i) {
    ASSERT_EQ(alone[i].singular_values.size(), side_by_side[i].singular_values.size());
    for (size_t k = 0; k < alone[i].singular_values.size(); ++k) {
      EXPECT_NEAR(alone[i].singular_values[k], side_by_side[i].singular_values[k],
                  1e-9 * alone[i].singular_values[0])
          << "module " << i << " value " << k;
    }
    EXPECT_EQ(alone[i].signal_rank, side_by_side[i].signal_rank) << "module " << i;
    EXPECT_EQ(alone[i].grid, side_by_side[i].grid);
  }
}

// auto moves the spectra off a GPU only where enough threads were measured to beat it.
TEST(Probe, SpectrumDeviceAutoTakesTheCpuFromSixteenThreads) {
  const torch::Device gpu("cuda:1"), cpu(torch::kCPU);
  EXPECT_EQ(spectrum_device("auto", gpu, kCpuSpectraMinThreads), cpu);
  EXPECT_EQ(spectrum_device("auto", gpu, kCpuSpectraMinThreads - 1), gpu);
  EXPECT_EQ(spectrum_device("auto", cpu, 1), cpu);
  EXPECT_EQ(spectrum_device("gpu", gpu, 64), gpu);
  EXPECT_EQ(spectrum_device("gpu", cpu, 64), cpu) << "gpu means where the probe ran";
  EXPECT_EQ(spectrum_device("cpu", gpu, 1), cpu);
  try {
    spectrum_device("tpu", gpu, 16);
    FAIL() << "an unknown device must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--spectrum-device"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tpu"), std::string::npos) << e.what();
  }
}

TEST(Probe, SketchAgreesWithExactOnTopSingularValues) {
  ProbeOptions o = small_options();
  o.max_examples = 40;
  o.n_shards = 2;
  o.mode = GradMode::exact;
  ProbeResult e = run_probe(test::tiny_llama(), cmudict(), o);
  o.mode = GradMode::sketch;
  o.sketch_rank = 48;
  ProbeResult s = run_probe(test::tiny_llama(), cmudict(), o);
  EXPECT_EQ(s.mode, GradMode::sketch);
  EXPECT_LT(s.state_bytes, e.state_bytes);
  for (size_t i = 0; i < e.modules.size(); ++i) {
    ASSERT_EQ(s.modules[i].grad.range.size(), 2u);
    EXPECT_EQ(s.modules[i].grad.range[0].size(1), 48);
    EXPECT_EQ(s.modules[i].grad.corange[0].size(0), 48);
    EXPECT_EQ(s.modules[i].grad.core[0].size(0), 97);
    std::vector<double> mean = {0.5 / double(e.shard_supervised[0]), 0.5 / double(e.shard_supervised[1])};
    auto se = combine(e.modules[i].grad, mean).S, ss = combine(s.modules[i].grad, mean).S;
    for (int64_t j = 0; j < 3; ++j) {
      double x = se[j].item<double>(), y = ss[j].item<double>();
      EXPECT_NEAR(y, x, 0.05 * x) << e.modules[i].name << " singular value " << j;
    }
  }
}

// Recomputing blocks in backward (for memory) records the same sums and moments, once each: the
// first pass, without grad mode, records nothing.
TEST(Probe, CheckpointingRecordsTheSameSums) {
  ProbeOptions o = small_options();
  ProbeResult plain = run_probe(test::tiny_llama(), cmudict(), o);
  o.checkpointing = true;
  ProbeResult recomputed = run_probe(test::tiny_llama(), cmudict(), o);
  EXPECT_TRUE(recomputed.checkpointing);
  EXPECT_FALSE(test::tiny_llama().checkpointing()) << "the probe left checkpointing on";
  EXPECT_NEAR(recomputed.base_loss(), plain.base_loss(), 1e-6);
  for (size_t i = 0; i < plain.modules.size(); ++i) {
    const auto& a = plain.modules[i];
    const auto& b = recomputed.modules[i];
    for (size_t k = 0; k < a.grad.exact.size(); ++k)
      EXPECT_LT(rel_err(b.grad.exact[k], a.grad.exact[k]), 1e-5) << a.name << " shard " << k;
    EXPECT_LT(rel_err(b.moment_all, a.moment_all), 1e-5) << a.name;
    EXPECT_LT(rel_err(b.moment_scored, a.moment_scored), 1e-5) << a.name;
  }
}

// Test matrices of one shape are one tensor, whichever modules use them (an 8B model keeps a few
// sets, not 224): Ω (d_in, k) is shared by q, k and o here, Ψ (d_out, k) by q and o only.
TEST(Probe, SketchTestMatricesAreSharedByShape) {
  ProbeOptions o = small_options();
  o.mode = GradMode::sketch;
  o.sketch_rank = 16;
  o.target_kinds = {"q_proj", "o_proj", "k_proj"};
  ProbeResult r = run_probe(test::tiny_llama(), cmudict(), o);
  std::set<const void*> omegas, psis;
  for (const auto& m : r.modules) {
    omegas.insert(m.grad.omega.data_ptr());
    psis.insert(m.grad.psi.data_ptr());
  }
  EXPECT_EQ(r.modules.size(), 6u);
  EXPECT_EQ(omegas.size(), 1u);  // every d_in is 256
  EXPECT_EQ(psis.size(), 2u);    // d_out 256 (q, o) and 128 (k)
}

TEST(Probe, AutomaticModeFollowsTheBudget) {
  ProbeOptions o = small_options();
  o.target_kinds = {"k_proj"};
  o.layers = {3};
  o.exact_budget_bytes = 2 * 128 * 256 * 4;  // exactly K·G for k_proj (128 x 256)
  EXPECT_EQ(run_probe(test::tiny_llama(), cmudict(), o).mode, GradMode::exact);
  o.exact_budget_bytes -= 1;
  ProbeResult r = run_probe(test::tiny_llama(), cmudict(), o);
  EXPECT_EQ(r.mode, GradMode::sketch);
  EXPECT_EQ(r.sketch_rank, o.sketch_rank);
}

// Out of memory before anything of the batch was summed (here: before backward, without input
// moments): the batch goes again in halves and the sums equal an undisturbed run's.
TEST(Probe, OutOfMemoryBeforeSummingRedoesTheBatchSmaller) {
  ProbeOptions o = small_options();
  o.mode = GradMode::exact;
  o.input_moments = false;
  std::vector<int64_t> sizes;  // one per batch tried
  o.batching.before_batch = [&sizes](int64_t n) { sizes.push_back(n); };
  const ProbeResult want = run_probe(test::tiny_llama(), cmudict(), o);
  const size_t n_want = sizes.size();
  sizes.clear();
  int calls = 0;
  o.before_backward = [&calls] {
    if (++calls == 2) compat::throw_out_of_memory("Tried to allocate 2.00 GiB (test)");
  };
  testing::internal::CaptureStderr();
  const ProbeResult got = run_probe(test::tiny_llama(), cmudict(), o);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("CUDA out of memory in the probe, a batch of"), std::string::npos) << err;
  EXPECT_EQ(got.n_tokens(), want.n_tokens());  // nothing counted twice
  EXPECT_EQ(got.n_supervised(), want.n_supervised());
  EXPECT_NEAR(got.base_loss(), want.base_loss(), 1e-5 * want.base_loss());
  // The failed batch again, and the rest of its shard and the next in smaller batches.
  EXPECT_GT(sizes.size(), n_want + 1) << "no batch was redone smaller";
  for (size_t i = 0; i < want.modules.size(); ++i) {
    for (size_t k = 0; k < want.modules[i].grad.exact.size(); ++k) {
      EXPECT_LT(rel_err(got.modules[i].grad.exact[k], want.modules[i].grad.exact[k]), 1e-5)
          << want.modules[i].name << " shard " << k;
    }
  }
}

// With input moments the forward pass already summed part of the batch: no redo, a clear error.
TEST(Probe, OutOfMemoryAfterSummingIsAClearError) {
  ProbeOptions o = small_options();
  o.input_moments = true;
  o.before_backward = [] { compat::throw_out_of_memory("Tried to allocate 2.00 GiB (test)"); };
  try {
    run_probe(test::tiny_llama(), cmudict(), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("after part of a batch was summed"), std::string::npos) << what;
    EXPECT_NE(what.find("--batch-tokens"), std::string::npos) << what;
  }
  for (Linear* l : test::tiny_llama().linears()) EXPECT_FALSE(l->hook) << l->name << " kept its hook";
}

TEST(Probe, BadRequestsFailClearly) {
  Model& model = test::tiny_llama();
  ProbeOptions o = small_options();
  o.target_kinds = {"qkv_proj"};
  EXPECT_THROW(run_probe(model, cmudict(), o), Error);
  o = small_options();
  o.layers = {4};
  EXPECT_THROW(run_probe(model, cmudict(), o), Error);
  o = small_options();
  o.max_examples = 1;  // one example cannot fill two shards
  std::string e = test::error_of([&] { run_probe(model, cmudict(), o); });
  EXPECT_NE(e.find("shards"), std::string::npos) << e;
  o = small_options();
  o.n_shards = 1;  // refused before the probe runs: cross-fitting needs two halves
  e = test::error_of([&] { run_probe(model, cmudict(), o); });
  EXPECT_NE(e.find("shards must be >= 2"), std::string::npos) << e;
  o = small_options();
  model.find_linear("model.layers.0.self_attn.q_proj")->hook = std::make_shared<Recorder>();
  EXPECT_THROW(run_probe(model, cmudict(), o), Error);
  model.find_linear("model.layers.0.self_attn.q_proj")->hook.reset();
}

TEST(ProbeCli, JsonAndTable) {
  // --checkpointing alone means on, as in train and sweep; the next option stays an option.
  auto j = test::run_lorank("probe --sample 16 --checkpointing --shards 2 --json -q");
  ASSERT_EQ(j.exit_code, 0) << j.output;
  auto doc = nlohmann::json::parse(j.output);
  EXPECT_TRUE(doc["probe"]["checkpointing"].get<bool>());
  EXPECT_EQ(doc["modules"].size(), 28u);
  EXPECT_EQ(doc["probe"]["examples"].get<int64_t>(), 16);
  EXPECT_EQ(doc["probe"]["grad_mode"], "exact");
  EXPECT_EQ(doc["aggregate"]["grid"].back().get<int64_t>(), 256);
  EXPECT_EQ(doc["by_kind"].size(), 8u);  // seven types and "all"
  EXPECT_EQ(doc["by_kind"].back()["modules"].get<int64_t>(), 28);
  auto t = test::run_lorank("probe --sample 8 --shards 2 --targets v_proj --layers 1 -q");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  EXPECT_NE(t.output.find("L1.v_proj"), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("aggregate over 1 modules"), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("srank: directions of the gradient above"), std::string::npos)
      << t.output;
  auto bad = test::run_lorank("probe --sample 8 --targets qkv -q");
  EXPECT_EQ(bad.exit_code, 2);  // a value not in the option's set
  EXPECT_NE(bad.output.find("unknown module type 'qkv'"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace lorank
