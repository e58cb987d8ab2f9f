// LoRA adapters: parity with PEFT 0.21 (logits, loss, adapter gradients) on tiny-llama, PEFT file
// round trips and errors, init, and a finite-difference check of the adapter math.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "error.h"
#include "files.h"
#include "lora.h"
#include "model_fixtures.h"

using lorank::Linear;
using lorank::LoraAdapters;
using lorank::LoraConfig;
using lorank::Model;
using namespace lorank::test;
namespace fs = std::filesystem;

namespace {

#define REQUIRE_TINY() \
  if (tiny_llama_dir().empty()) GTEST_SKIP() << "tiny-llama not found"

std::map<std::string, torch::Tensor> read_all(const std::string& path) {
  lorank::SafetensorsFile f(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : f.names()) out[name] = read_tensor(f, name);
  return out;
}

// Temp folders of this file, removed when the test program exits.
std::string temp_dir(const std::string& tag) {
  struct Cleanup {
    std::vector<std::string> dirs;
    ~Cleanup() {
      for (const auto& d : dirs) lorank::remove_tree(d);
    }
  };
  static Cleanup cleanup;
  cleanup.dirs.push_back(make_temp_dir(tag));
  return cleanup.dirs.back();
}

std::string copy_fixture(const std::string& name, const std::string& tag) {
  std::string dir = temp_dir(tag);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    fs::copy_file(asset("golden/" + name + "/" + f), dir + "/" + f);
  }
  return dir;
}

void write_tensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors) {
  std::vector<torch::Tensor> keep;
  std::vector<lorank::TensorToWrite> out;
  for (const auto& [name, t] : tensors) {
    keep.push_back(t.contiguous());
    lorank::TensorToWrite w;
    w.name = name;
    w.view.dtype = st_dtype(keep.back().scalar_type());
    w.view.shape = keep.back().sizes().vec();
    w.view.data = static_cast<const uint8_t*>(keep.back().data_ptr());
    w.view.n_bytes = keep.back().numel() * keep.back().element_size();
    out.push_back(w);
  }
  lorank::write_safetensors(path, out, {{"format", "pt"}}, /*overwrite=*/true);
}

// The error load_peft raises for the folder, or "" when it loads.
std::string load_error(Model& model, const std::string& dir) {
  try {
    auto ad = LoraAdapters::load_peft(model, dir);
  } catch (const lorank::Error& e) {
    return e.what();
  }
  return "";
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
  edit(j);
  write_file(dir + "/adapter_config.json", j.dump(2));
}

struct Parity {
  double logits_max_abs = 0, loss_rel = 0, grad_rel_worst = 0;
  size_t n_grads = 0;
};

// Loads the PEFT fixture, runs forward + backward in fp32 and compares with PEFT's numbers.
Parity peft_parity(const std::string& fixture) {
  Model& model = tiny_llama();
  const std::string dir = asset("golden/" + fixture);
  auto ad = LoraAdapters::load_peft(model, dir);
  auto io = read_all(dir + "/io.safetensors");
  auto grads = read_all(dir + "/grads.safetensors");
  const auto& ids = io.at("input_ids");
  const auto& am = io.at("attention_mask");
  auto hidden = model.hidden_states(ids, am);
  auto logits = model.logits(hidden);
  auto loss = lorank::lm_loss(model, hidden, ids, am, io.at("loss_mask")).mean();
  loss.backward();
  Parity p;
  auto valid = am.to(torch::kBool);
  p.logits_max_abs = (logits.detach() - io.at("logits")).abs().index({valid}).max().item<double>();
  const double ref_loss = io.at("loss").item<double>();
  p.loss_rel = std::abs(loss.item<double>() - ref_loss) / std::abs(ref_loss);
  EXPECT_EQ(grads.size(), 2 * ad->modules().size());
  for (const auto& m : ad->modules()) {
    for (auto [param, suffix] :
         {std::pair{&m.A, ".lora_A.weight"}, std::pair{&m.B, ".lora_B.weight"}}) {
      const auto& ref = grads.at("base_model.model." + m.name + suffix);
      if (!param->grad().defined()) {
        ADD_FAILURE() << "no gradient for " << m.name << suffix;
        continue;
      }
      double rel =
          (param->grad() - ref).abs().max().item<double>() / ref.abs().max().item<double>();
      p.grad_rel_worst = std::max(p.grad_rel_worst, rel);
      ++p.n_grads;
    }
  }
  std::cout << fixture << ": logits max|diff| " << p.logits_max_abs << ", loss rel " << p.loss_rel
            << ", worst grad max|diff|/max|grad| " << p.grad_rel_worst << " over " << p.n_grads
            << " tensors\n";
  return p;
}

LoraConfig patterns_config() {
  LoraConfig cfg;
  cfg.r = 4;
  cfg.alpha = 8;
  cfg.rank_pattern = {{"q_proj", 2}, {"layers.1.mlp.down_proj", 8}};
  cfg.alpha_pattern = {{"v_proj", 16}};
  return cfg;
}

void randomize_b(LoraAdapters& ad, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& m : ad.modules()) m.B.copy_(torch::randn(m.B.sizes()) * 0.02);
}

}  // namespace

TEST(Lora, PeftParityPatterns) {
  REQUIRE_TINY();
  Parity p = peft_parity("lora_patterns");
  EXPECT_LE(p.logits_max_abs, 1e-4);
  EXPECT_LE(p.loss_rel, 1e-5);
  EXPECT_LE(p.grad_rel_worst, 1e-5);
  EXPECT_EQ(p.n_grads, 56u);
}

TEST(Lora, PeftParityRslora) {
  REQUIRE_TINY();
  Parity p = peft_parity("lora_rslora");
  EXPECT_LE(p.logits_max_abs, 1e-4);
  EXPECT_LE(p.loss_rel, 1e-5);
  EXPECT_LE(p.grad_rel_worst, 1e-5);
  EXPECT_EQ(p.n_grads, 24u);
}

TEST(Lora, LoadsPeftPatternsAsPeftResolvesThem) {
  REQUIRE_TINY();
  auto ad = LoraAdapters::load_peft(tiny_llama(), asset("golden/lora_patterns"));
  ASSERT_EQ(ad->modules().size(), 28u);
  for (const auto& m : ad->modules()) {
    const bool q = m.name.find("q_proj") != std::string::npos;
    const bool v = m.name.find("v_proj") != std::string::npos;
    const int64_t r = q ? 2 : m.name == "model.layers.1.mlp.down_proj" ? 8 : 4;
    EXPECT_EQ(m.r, r) << m.name;
    EXPECT_DOUBLE_EQ(m.alpha, v ? 16 : 8) << m.name;
    EXPECT_DOUBLE_EQ(m.scale, m.alpha / m.r) << m.name;
    EXPECT_EQ(m.A.sizes(), (std::vector<int64_t>{r, tiny_llama().find_linear(m.name)->d_in()}));
  }
  auto rs = LoraAdapters::load_peft(tiny_llama(), asset("golden/lora_rslora"));
}

TEST(Lora, RsloraScaleFromFixture) {
  REQUIRE_TINY();
  auto ad = LoraAdapters::load_peft(tiny_llama(), asset("golden/lora_rslora"));
  ASSERT_EQ(ad->modules().size(), 12u);
  for (const auto& m : ad->modules()) EXPECT_DOUBLE_EQ(m.scale, 8.0 / std::sqrt(8.0));
}

TEST(Lora, InitIsKaimingUniformAndSeeded) {
  REQUIRE_TINY();
  Model& model = tiny_llama();
  LoraConfig cfg;
  cfg.r = 8;
  auto first = LoraAdapters::attach(model, cfg, 1234);
  std::vector<torch::Tensor> a_first;
  for (const auto& m : first->modules()) a_first.push_back(m.A.detach().clone());
  first.reset();
  auto ad = LoraAdapters::attach(model, cfg, 1234);
  ASSERT_EQ(ad->modules().size(), 28u);  // all-linear: 7 per layer, no lm_head
  for (size_t i = 0; i < ad->modules().size(); ++i) {
    const auto& m = ad->modules()[i];
    const double fan_in = static_cast<double>(m.A.size(1));
    const double gain = std::sqrt(2.0 / (1 + 5.0));  // leaky_relu gain, a = sqrt(5)
    const double bound = gain * std::sqrt(3.0 / fan_in);
    const double max_abs = m.A.abs().max().item<double>();
    EXPECT_LE(max_abs, bound) << m.name;
    EXPECT_GE(max_abs, 0.99 * bound) << m.name;  // 2k+ uniform draws reach the edge
    EXPECT_NEAR(m.A.mean().item<double>(), 0.0, 0.05 * bound) << m.name;
    EXPECT_NEAR(m.A.var().item<double>(), bound * bound / 3, 0.1 * bound * bound / 3) << m.name;
    EXPECT_EQ(m.B.abs().max().item<double>(), 0.0) << m.name;
    EXPECT_EQ(m.A.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(m.A.requires_grad() && m.B.requires_grad());
    EXPECT_TRUE(torch::equal(m.A, a_first[i])) << m.name;
  }
  auto other = LoraAdapters::attach(model, cfg, 1235);
  EXPECT_FALSE(torch::equal(other->modules()[0].A, ad->modules()[0].A));
  EXPECT_EQ(ad->n_trainable(), [&] {
    int64_t n = 0;
    for (Linear* lin : model.linears()) n += 8 * (lin->d_in() + lin->d_out());
    return n;
  }());
}

TEST(Lora, InitDrawsAsTorchGeneratorUniform) {
  // PyTorch: torch.manual_seed(0); torch.rand(5) -> 0.4963, 0.7682, 0.0885, 0.1320, 0.3074, so
  // kaiming_uniform_ with a generator seeded 0 starts with bound * (2u - 1).
  REQUIRE_TINY();
  auto ad = LoraAdapters::attach(tiny_llama(), LoraConfig{}, 0);
  const auto& A = ad->modules()[0].A;
  const double bound = 1.0 / std::sqrt(static_cast<double>(A.size(1)));
  const double u[] = {0.4963, 0.7682, 0.0885, 0.1320, 0.3074};
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(A[0][i].item<double>(), bound * (2 * u[i] - 1), 1.5e-4 * bound) << i;
  }
}

TEST(Lora, ZeroBLeavesLogitsAndHooksAreRemoved) {
  REQUIRE_TINY();
  Model& model = tiny_llama();
  auto ids = torch::arange(2, 14, torch::kInt64).view({1, -1});
  torch::NoGradGuard no_grad;
  auto base = model.forward(ids);
  {
    auto ad = LoraAdapters::attach(model, LoraConfig{}, 7);
    EXPECT_TRUE(torch::equal(model.forward(ids), base));
    randomize_b(*ad, 3);
    EXPECT_GT((model.forward(ids) - base).abs().max().item<double>(), 1e-4);
  }
  for (Linear* lin : model.linears()) EXPECT_EQ(lin->hook, nullptr) << lin->name;
  EXPECT_TRUE(torch::equal(model.forward(ids), base));
}

TEST(Lora, DropoutOnlyWhenTraining) {
  REQUIRE_TINY();
  Model& model = tiny_llama();
  LoraConfig cfg;
  cfg.dropout = 0.5;
  auto ad = LoraAdapters::attach(model, cfg, 7);
  randomize_b(*ad, 4);
  auto ids = torch::arange(2, 14, torch::kInt64).view({1, -1});
  torch::NoGradGuard no_grad;
  auto eval1 = model.forward(ids), eval2 = model.forward(ids);
  EXPECT_TRUE(torch::equal(eval1, eval2));
  ad->set_training(true);
  EXPECT_FALSE(torch::equal(model.forward(ids), eval1));
  ad->set_training(false);
  EXPECT_TRUE(torch::equal(model.forward(ids), eval1));
}

TEST(Lora, SaveLoadRoundTripAndConfigKeys) {
  REQUIRE_TINY();
  Model& model = tiny_llama();
  const std::string dir = temp_dir("lora-save") + "/adapter";
  auto ad = LoraAdapters::attach(model, patterns_config(), 11);
  randomize_b(*ad, 5);
  ad->save_peft(dir, "/models/tiny-llama");
  auto saved = ad->state_dict();
  auto ids = torch::arange(2, 14, torch::kInt64).view({1, -1});
  torch::Tensor before;
  {
    torch::NoGradGuard no_grad;
    before = model.forward(ids);
  }
  ad.reset();
  auto loaded = LoraAdapters::load_peft(model, dir);
  auto got = loaded->state_dict();
  ASSERT_EQ(got.size(), saved.size());
  for (const auto& [key, t] : saved) EXPECT_TRUE(torch::equal(got.at(key), t)) << key;
  EXPECT_EQ(read_all(dir + "/adapter_model.safetensors").size(), saved.size());
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(model.forward(ids), before));
  }
  // Fields of PEFT 0.21's own file only, and PEFT 0.7's core (older PEFT refuses unknown keys).
  auto cfg = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
  auto golden = nlohmann::json::parse(read_file(asset("golden/lora_patterns/adapter_config.json")));
  for (const auto& [key, value] : cfg.items()) EXPECT_TRUE(golden.contains(key)) << key;
  for (const char* key : {"peft_version", "use_dora", "lora_bias", "exclude_modules", "eva_config"})
    EXPECT_FALSE(cfg.contains(key)) << key << ": not in PEFT <= 0.13's LoraConfig";
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["base_model_name_or_path"], "/models/tiny-llama");
  for (const char* key : {"r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora",
                          "lora_dropout", "bias", "peft_type", "fan_in_fan_out"}) {
    EXPECT_EQ(cfg[key], golden[key]) << key;
  }
  // all-linear over 28 modules: PEFT condenses the 28 paths to the 7 suffixes.
  EXPECT_EQ(cfg["target_modules"], nlohmann::json({"down_proj", "gate_proj", "k_proj", "o_proj",
                                                   "q_proj", "up_proj", "v_proj"}));
}

TEST(Lora, ResavingPeftFixtureReproducesPeftFiles) {
  // load_peft -> save_peft gives PEFT's weights file byte for byte and its config up to the
  // fields that depend on how PEFT was called (task_type, base path, set order of targets).
  REQUIRE_TINY();
  const std::string golden_dir = asset("golden/lora_patterns");
  auto ad = LoraAdapters::load_peft(tiny_llama(), golden_dir);
  const std::string dir = temp_dir("lora-resave");
  ad->save_peft(dir, "/work/main/assets/tiny-llama", /*overwrite=*/true);
  EXPECT_TRUE(read_file(dir + "/adapter_model.safetensors") ==
              read_file(golden_dir + "/adapter_model.safetensors"));
  auto got = nlohmann::json::parse(read_file(dir + "/adapter_config.json"));
  auto want = nlohmann::json::parse(read_file(golden_dir + "/adapter_config.json"));
  want.erase("auto_mapping");
  want["task_type"] = "CAUSAL_LM";
  auto sorted = [](nlohmann::json list) {
    std::sort(list.begin(), list.end());
    return list;
  };
  want["target_modules"] = sorted(want["target_modules"]);
  for (const auto& [key, value] : got.items()) EXPECT_EQ(value, want[key]) << key;
  EXPECT_EQ(got.size(), 18u) << got.dump(2);  // PEFT 0.7's LoraConfig fields that lorank sets
}

TEST(Lora, SaveRefusesToOverwrite) {
  REQUIRE_TINY();
  const std::string dir = temp_dir("lora-overwrite");
  auto ad = LoraAdapters::attach(tiny_llama(), LoraConfig{}, 1);
  ad->save_peft(dir, "base");
  try {
    ad->save_peft(dir, "base");
    FAIL() << "expected an error";
  } catch (const lorank::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("adapter_"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--force"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(ad->save_peft(dir, "base", /*overwrite=*/true));
  for (const auto& name : lorank::list_dir(dir)) {
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;  // no leftovers
  }
}

TEST(Lora, AllLinearOnSmallModelSavesModulePaths) {
  // Fewer than 20 targets: PEFT keeps all-linear's full module paths in target_modules.
  auto mc = lorank::parse_model_config(tiny_config_json("llama"), "crafted config.json");
  auto model = std::make_unique<Model>(mc, random_weights(mc, 1), lorank::LoadOptions{}, "random");
  auto ad = LoraAdapters::attach(*model, LoraConfig{}, 1);
  auto cfg = nlohmann::json::parse(ad->peft_config_json("m"));
  ASSERT_EQ(cfg["target_modules"].size(), 14u);
  EXPECT_EQ(cfg["target_modules"][0], "model.layers.0.mlp.down_proj");
}

TEST(Lora, TargetSelection) {
  REQUIRE_TINY();
  Model& model = tiny_llama();
  LoraConfig cfg;
  cfg.target_modules = {"q_proj", "mlp.down_proj"};
  EXPECT_EQ(lorank::lora_targets(model, cfg).size(), 8u);
  cfg.target_modules = {"lm_head"};
  auto head = lorank::lora_targets(model, cfg);
  ASSERT_EQ(head.size(), 1u);
  EXPECT_EQ(head[0], &model.lm_head());
  cfg.target_modules.clear();
  cfg.target_regex = R"(.*layers\.[01]\..*(q|v)_proj)";
  EXPECT_EQ(lorank::lora_targets(model, cfg).size(), 4u);
  cfg.target_regex.clear();
  for (std::vector<std::string> bad : {std::vector<std::string>{"self_attn"},
                                       {"embed_tokens"},
                                       {"c_attn"},
                                       {"input_layernorm"},
                                       {"all-linear", "q_proj"}}) {
    cfg.target_modules = bad;
    EXPECT_THROW(lorank::lora_targets(model, cfg), lorank::Error) << bad[0];
  }
}

TEST(Lora, LoadErrorsNameFileAndKey) {
  REQUIRE_TINY();
  Model& model = tiny_llama();
  std::string dir = copy_fixture("lora_rslora", "lora-dora");
  edit_config(dir, [](nlohmann::json& j) { j["use_dora"] = true; });
  std::string msg = load_error(model, dir);
  EXPECT_NE(msg.find("adapter_config.json [use_dora]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hint"), std::string::npos) << msg;

  dir = copy_fixture("lora_rslora", "lora-bias");
  edit_config(dir, [](nlohmann::json& j) { j["bias"] = "all"; });
  EXPECT_NE(load_error(model, dir).find("[bias]"), std::string::npos);

  dir = copy_fixture("lora_rslora", "lora-rank");
  edit_config(dir, [](nlohmann::json& j) { j["r"] = 4; });
  msg = load_error(model, dir);
  EXPECT_NE(msg.find("adapter_model.safetensors [base_model.model.model.layers.0.self_attn.q_proj"
                     ".lora_A.weight]: wrong shape (expected (4, 256), got (8, 256))"),
            std::string::npos)
      << msg;

  dir = copy_fixture("lora_rslora", "lora-missing");
  auto tensors = read_all(dir + "/adapter_model.safetensors");
  tensors.erase("base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight");
  write_tensors(dir + "/adapter_model.safetensors", tensors);
  msg = load_error(model, dir);
  EXPECT_NE(msg.find("[base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight]: missing"),
            std::string::npos)
      << msg;

  dir = copy_fixture("lora_rslora", "lora-unknown");
  tensors = read_all(dir + "/adapter_model.safetensors");
  tensors["base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight"] =
      torch::zeros({8, 256});
  write_tensors(dir + "/adapter_model.safetensors", tensors);
  msg = load_error(model, dir);
  EXPECT_NE(msg.find("layers.9.self_attn.q_proj.lora_A.weight]: unknown target"), std::string::npos)
      << msg;
  tensors.erase("base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight");
  tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"] =
      torch::zeros({8, 256});
  write_tensors(dir + "/adapter_model.safetensors", tensors);
  msg = load_error(model, dir);
  EXPECT_NE(msg.find("k_proj.lora_A.weight]: tensor for a module that target_modules does not "
                     "select"),
            std::string::npos)
      << msg;
  tensors.erase("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
  tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] =
      torch::ones({256});
  write_tensors(dir + "/adapter_model.safetensors", tensors);
  msg = load_error(model, dir);
  EXPECT_NE(msg.find("lora_magnitude_vector]: not a LoRA tensor"), std::string::npos) << msg;

  dir = copy_fixture("lora_rslora", "lora-target");
  edit_config(dir, [](nlohmann::json& j) { j["target_modules"] = {"c_attn"}; });
  msg = load_error(model, dir);
  EXPECT_NE(msg.find("adapter_config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("c_attn"), std::string::npos) << msg;

  EXPECT_NE(load_error(model, temp_dir("lora-empty")).find("adapter_config.json: not found"),
            std::string::npos);
}

TEST(Lora, FiniteDifferencesDouble) {
  // d loss / dA and d loss / dB of lora_apply in float64 against central differences.
  torch::manual_seed(0);
  const auto f64 = torch::dtype(torch::kFloat64);
  const int64_t n = 5, d_in = 6, d_out = 4, r = 3;
  auto x = torch::randn({2, n, d_in}, f64);
  auto W = torch::randn({d_out, d_in}, f64), b = torch::randn({d_out}, f64);
  auto R = torch::randn({2, n, d_out}, f64);
  lorank::LoraModule m;
  m.r = r;
  m.alpha = 5;
  m.scale = 5 / std::sqrt(3.0);
  m.A = torch::randn({r, d_in}, f64).requires_grad_(true);
  m.B = torch::randn({d_out, r}, f64).requires_grad_(true);
  auto loss_of = [&]() {
    auto y = torch::linear(x, W, b);
    return (lorank::lora_apply(m, x, y, 0.0, true).tanh() * R).sum();
  };
  loss_of().backward();
  for (torch::Tensor* p : {&m.A, &m.B}) {
    torch::Tensor analytic = p->grad().clone(), numeric = torch::zeros_like(analytic);
    torch::NoGradGuard no_grad;
    auto flat = p->view({-1});
    const double eps = 1e-6;
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double v = flat[i].item<double>();
      flat[i] = v + eps;
      const double up = loss_of().item<double>();
      flat[i] = v - eps;
      const double down = loss_of().item<double>();
      flat[i] = v;
      numeric.view({-1})[i] = (up - down) / (2 * eps);
    }
    const double rel =
        (analytic - numeric).abs().max().item<double>() / numeric.abs().max().item<double>();
    std::cout << (p == &m.A ? "dA" : "dB") << " finite-difference rel err " << rel << "\n";
    EXPECT_LT(rel, 1e-6);
  }
}
