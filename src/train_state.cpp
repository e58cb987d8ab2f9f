// The run's resumable state: the checkpoint a stopped run continues from, and the fingerprint of
// its settings and data that a resume must match.
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "compat.h"
#include "error.h"
#include "files.h"
#include "model.h"
#include "safetensors.h"
#include "trainer.h"

namespace lorank {

using json = nlohmann::json;

namespace {

constexpr const char* kAdapterPrefix = "adapter.";
constexpr const char* kBestPrefix = "best.";
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kRngCpuKey = "rng.cpu";
constexpr const char* kRngCudaKey = "rng.cuda";

}  // namespace

std::string examples_hash(const std::vector<Example>& examples) {
  uint64_t h = kFnvOffset;
  for (const auto& e : examples) {
    h = fnv1a64(h, e.ids.data(), e.ids.size() * sizeof(int32_t));
    h = fnv1a64(h, e.loss_mask.data(), e.loss_mask.size());
  }
  return hex64(h);
}

std::string settings_hint(const std::string& diff) {
  const bool model = diff.rfind("model ", 0) == 0 || diff.find(", model ") != std::string::npos ||
                     diff.rfind("dtype ", 0) == 0 || diff.find(", dtype ") != std::string::npos;
  return model
             ? "the run was made on other weights (model: a fingerprint of them) or in another "
               "--dtype: resume with the --model and --dtype it was started with, or pass --force "
               "to start afresh"
             : "resume with the original options, or pass --force to start afresh";
}

std::string settings_diff(const json& saved, const json& now) {
  static const std::set<std::string> added_later = {"model", "dtype"};
  std::string diff;
  for (auto& [k, v] : now.items()) {
    const bool has = saved.is_object() && saved.contains(k);
    if (!has && added_later.count(k)) continue;  // a run from before lorank wrote it
    if (!has || saved[k] != v)
      diff +=
          (diff.empty() ? "" : ", ") + k + " " + (has ? saved[k].dump() : "?") + " -> " + v.dump();
  }
  return diff;
}

namespace {

torch::Tensor tensor_from_view(const TensorView& v) {
  torch::ScalarType t = v.dtype == Dtype::U8 ? torch::kUInt8 : torch::kFloat32;
  if (v.dtype != Dtype::U8 && v.dtype != Dtype::F32) {
    fail("checkpoint", "unexpected tensor dtype", "F32 or U8", dtype_name(v.dtype));
  }
  return torch::from_blob(const_cast<uint8_t*>(v.data), v.shape, torch::dtype(t)).clone();
}

TensorView view_of(const torch::Tensor& t) {
  TensorView v;
  v.dtype = t.scalar_type() == torch::kUInt8 ? Dtype::U8 : Dtype::F32;
  v.shape = t.sizes().vec();
  v.data = static_cast<const uint8_t*>(t.data_ptr());
  v.n_bytes = static_cast<size_t>(t.numel()) * t.element_size();
  return v;
}

torch::Tensor generator_state(const torch::Device& device) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state().contiguous();
}

void set_generator_state(const torch::Device& device, const torch::Tensor& state) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// The CUDA generators a step draws from (dropout), with the names checkpoints keep them under: the
// model's first GPU "rng.cuda", the further GPUs of a split model "rng.cuda:N".
std::vector<std::pair<std::string, torch::Device>> cuda_generators(const Model& model) {
  std::vector<std::pair<std::string, torch::Device>> out;
  for (const torch::Device& d : model.devices()) {
    if (d.is_cuda()) out.emplace_back(out.empty() ? kRngCudaKey : "rng." + d.str(), d);
  }
  return out;
}

}  // namespace

std::map<std::string, torch::Tensor> generator_states(const Model& model) {
  std::map<std::string, torch::Tensor> out = {{kRngCpuKey, generator_state(torch::kCPU)}};
  for (const auto& [key, d] : cuda_generators(model)) out[key] = generator_state(d);
  return out;
}

void set_generator_states(const Model& model, const std::map<std::string, torch::Tensor>& states) {
  set_generator_state(torch::kCPU, states.at(kRngCpuKey));
  for (const auto& [key, d] : cuda_generators(model)) {
    auto it = states.find(key);
    if (it != states.end()) set_generator_state(d, it->second);
  }
}

std::string run_fingerprint(const LoraConfig& l, const TrainOptions& o, const TrainData& data) {
  json j = {{"r", l.r},
            {"alpha", l.alpha},
            {"rslora", l.rslora},
            {"dropout", l.dropout},
            {"target_modules", l.target_modules},
            {"target_regex", l.target_regex},
            {"rank_pattern", l.rank_pattern},
            {"alpha_pattern", l.alpha_pattern},
            {"lr", o.lr},
            {"epochs", o.epochs},
            {"max_steps", o.max_steps},
            {"batch", o.batch},
            {"grad_accum", o.grad_accum},
            {"warmup", o.warmup},
            {"schedule", o.schedule},
            {"weight_decay", o.weight_decay},
            {"max_grad_norm", o.max_grad_norm},
            {"betas", {o.beta1, o.beta2}},
            {"adam_eps", o.adam_eps},
            {"seed", o.seed},
            {"n_evals", o.n_evals},
            {"eval_every", o.eval_every},
            {"train", examples_hash(data.train)},
            {"val", examples_hash(data.val)},
            {"test", examples_hash(data.test)}};
  if (!o.model_fingerprint.empty()) j["model"] = o.model_fingerprint;
  if (!o.compute_dtype.empty()) j["dtype"] = o.compute_dtype;
  return j.dump();
}

const std::string& Trainer::options_fingerprint() const {
  if (fingerprint_.empty()) fingerprint_ = run_fingerprint(lora_cfg_, opts_, data_);  // hashes data
  return fingerprint_;
}

void Trainer::save_checkpoint(const std::string& path) const {
  std::map<std::string, torch::Tensor> keep;  // owns the bytes the views point into
  for (auto& [k, t] : adapters_->state_dict()) keep[kAdapterPrefix + k] = t;
  for (auto& [k, t] : best_state_) keep[kBestPrefix + k] = t;
  for (auto& [k, t] : optimizer_->state()) keep[kOptimizerPrefix + k] = t;
  for (auto& [k, t] : generator_states(model_)) keep[k] = t;
  json state = {{"step", step_},
                {"total_steps", total_steps_},
                {"best_step", best_step_},
                {"best_val_loss", number_or_null(best_val_)},
                {"evals", evals_json(evals_)},
                {"seconds", elapsed_before_ + std::chrono::duration<double>(
                                                  std::chrono::steady_clock::now() - session_start_)
                                                  .count()},
                {"options", json::parse(options_fingerprint())}};
  std::vector<TensorToWrite> tensors;
  for (const auto& [k, t] : keep) tensors.push_back({k, view_of(t)});
  write_safetensors(path, tensors, {{"format", "lorank-checkpoint"}, {"state", state.dump()}},
                    /*overwrite=*/true);
}

void Trainer::check_same_settings(const json& saved, const std::string& path,
                                  const std::string& what) const {
  const std::string diff = settings_diff(saved, json::parse(options_fingerprint()));
  if (!diff.empty())
    fail(path, what + " was trained with other settings or data", "the same settings", diff,
         settings_hint(diff));
}

namespace {

// The reader's hint is for downloads; a checkpoint is lorank's own file, cut short by a full disk
// or a copy.
SafetensorsFile open_checkpoint(const std::string& path) {
  try {
    return SafetensorsFile(path);
  } catch (const Error& e) {
    throw Error(e.where(), e.reason(), e.expected(), e.got(),
                "the checkpoint is damaged: restore it, or pass --force instead of --resume to "
                "start the run afresh");
  }
}

}  // namespace

void Trainer::load_checkpoint(const std::string& path) {
  SafetensorsFile f = open_checkpoint(path);
  auto it = f.metadata().find("state");
  if (it == f.metadata().end()) {
    fail(path, "not a lorank checkpoint", "__metadata__ with a \"state\" entry", "none",
         "pass --force to start afresh");
  }
  json state = json::parse(it->second);
  check_same_settings(state["options"], path, "the checkpoint");
  std::map<std::string, torch::Tensor> adapter, best, opt_state;
  for (const std::string& name : f.names()) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) {
      opt_state[name.substr(std::string(kOptimizerPrefix).size())] =
          tensor_from_view(f.tensor(name));
    } else if (name.rfind(kAdapterPrefix, 0) == 0) {
      adapter[name.substr(std::string(kAdapterPrefix).size())] = tensor_from_view(f.tensor(name));
    } else if (name.rfind(kBestPrefix, 0) == 0) {
      best[name.substr(std::string(kBestPrefix).size())] = tensor_from_view(f.tensor(name));
    }
  }
  adapters_->load_state_dict(adapter, path);
  best_state_ = std::move(best);
  optimizer_->load_state(opt_state, path);
  std::map<std::string, torch::Tensor> rng = {{kRngCpuKey, tensor_from_view(f.tensor(kRngCpuKey))}};
  for (const auto& [key, d] : cuda_generators(model_)) {
    if (f.contains(key)) rng[key] = tensor_from_view(f.tensor(key));
  }
  set_generator_states(model_, rng);
  step_ = state["step"].get<int64_t>();
  best_step_ = state["best_step"].get<int64_t>();
  best_val_ = number_or_nan(state["best_val_loss"]);
  elapsed_before_ = state.value("seconds", 0.0);
  evals_ = evals_from_json(state["evals"]);
}

}  // namespace lorank
