#include "trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "compat.h"
#include "error.h"
#include "files.h"
#include "json_excerpt.h"
#include "model.h"
#include "progress.h"
#include "safetensors.h"

namespace lorank {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// splitmix64's finaliser: decorrelates the per-epoch seeds of neighbouring run seeds.
uint64_t mix_seed(uint64_t seed, uint64_t epoch) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (epoch + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

double number_or_nan(const nlohmann::json& j) {
  return j.is_number() ? j.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

json evals_json(const std::vector<EvalPoint>& evals) {
  json out = json::array();
  for (const auto& e : evals) out.push_back({e.step, number_or_null(e.val_loss)});
  return out;
}

std::vector<EvalPoint> evals_from_json(const json& j) {
  std::vector<EvalPoint> out;
  for (const auto& e : j) out.push_back({e[0].get<int64_t>(), number_or_nan(e[1])});
  return out;
}

namespace {

// A temp file that a killed writer left behind: ".name.tmp-..." or "name.tmp...".
bool is_leftover_of(const std::string& file, const std::string& name) {
  const std::string base = file.rfind('.', 0) == 0 ? file.substr(1) : file;
  return base.rfind(name + ".tmp", 0) == 0;
}

bool is_leftover(const std::string& file) {
  for (const char* name : {kCheckpointFile, kMetricsFile, kSummaryFile, "adapter_config.json",
                           "adapter_model.safetensors"}) {
    if (is_leftover_of(file, name)) return true;
  }
  return false;
}

bool is_ours(const std::string& file) {
  static const std::set<std::string> ours = {kCheckpointFile, kMetricsFile, kSummaryFile,
                                             "adapter_config.json", "adapter_model.safetensors"};
  return ours.count(file) != 0 || is_leftover(file);
}

}  // namespace

void validate(const TrainOptions& o) {
  auto check = [](bool ok, const std::string& option, const std::string& expected, double got,
                  const std::string& hint = "") {
    if (!ok) fail_usage(option, "value out of range", expected, format_number("%g", got), hint);
  };
  check(o.lr > 0 && std::isfinite(o.lr), "--lr", "a positive number", o.lr);
  check(o.epochs >= 1, "--epochs", ">= 1", double(o.epochs));
  check(o.max_steps >= 0, "--max-steps", ">= 0 (0: epochs decide)", double(o.max_steps));
  check(o.batch >= 1, "--batch", ">= 1", double(o.batch));
  check(o.grad_accum >= 1 && o.batch % o.grad_accum == 0, "--grad-accum",
        "a divisor of --batch (" + std::to_string(o.batch) + ")", double(o.grad_accum),
        "the micro-batch is batch / grad-accum examples");
  check(o.warmup >= 0 && o.warmup < 1, "--warmup", "a fraction in [0, 1)", o.warmup);
  check(o.weight_decay >= 0, "--weight-decay", ">= 0", o.weight_decay);
  check(o.max_grad_norm >= 0, "--max-grad-norm", ">= 0 (0: no clipping)", o.max_grad_norm);
  check(o.n_evals >= 0, "--n-evals", ">= 0", double(o.n_evals));
  check(o.eval_every >= 0, "--eval-every", ">= 0", double(o.eval_every));
  if (o.schedule != "linear" && o.schedule != "cosine" && o.schedule != "constant") {
    fail_usage("--schedule", "unknown schedule", "linear, cosine or constant", o.schedule);
  }
}

int64_t warmup_steps(double fraction, int64_t total) {
  return static_cast<int64_t>(std::ceil(fraction * static_cast<double>(total)));
}

double lr_factor(const std::string& schedule, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return double(step) / double(std::max<int64_t>(1, warmup));
  if (schedule == "constant") return 1.0;
  const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  if (schedule == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return std::max(0.0, double(total - step) / double(std::max<int64_t>(1, total - warmup)));
}

std::vector<int64_t> eval_steps(int64_t total, int64_t n_evals, int64_t eval_every) {
  std::set<int64_t> s;
  if (total <= 0) return {};
  if (eval_every > 0) {
    for (int64_t k = eval_every; k < total; k += eval_every) s.insert(k);
    s.insert(total);
  } else {
    for (int64_t i = 1; i <= n_evals; ++i) {
      int64_t k = static_cast<int64_t>(std::llround(double(total) * double(i) / double(n_evals)));
      if (k >= 1) s.insert(std::min(k, total));
    }
    s.insert(total);  // --n-evals 0 too: held-out data is there to pick and report an adapter
  }
  return {s.begin(), s.end()};
}

std::vector<size_t> batch_indices(size_t n_train, int64_t batch, uint64_t seed, int64_t step) {
  const int64_t per_epoch = (int64_t(n_train) + batch - 1) / batch;
  const int64_t epoch = step / per_epoch, pos = step % per_epoch;
  std::vector<size_t> perm = seeded_permutation(n_train, mix_seed(seed, uint64_t(epoch)));
  const size_t begin = size_t(pos * batch);
  const size_t end = std::min(n_train, begin + size_t(batch));
  return {perm.begin() + begin, perm.begin() + end};
}

int64_t train_steps_per_epoch(size_t n_train, const TrainOptions& opts) {
  return (int64_t(n_train) + opts.batch - 1) / opts.batch;
}

int64_t total_train_steps(size_t n_train, const TrainOptions& opts) {
  const int64_t total = train_steps_per_epoch(n_train, opts) * opts.epochs;
  return opts.max_steps > 0 ? std::min(total, opts.max_steps) : total;
}

Trainer::Trainer(Model& model, const LoraConfig& lora, const TrainData& data, TrainOptions opts)
    : model_(model), lora_cfg_(lora), data_(data), opts_(std::move(opts)) {
  validate(opts_);
  if (data_.train.empty()) {
    fail("training data", "no training examples", "at least 1", "0",
         "check --data and --val-fraction");
  }
  model_.set_checkpointing(opts_.checkpointing);
  torch::manual_seed(opts_.seed);  // dropout masks
  adapters_ = LoraAdapters::attach(model_, lora_cfg_, opts_.seed);
  adapters_->set_training(true);
  AdamWOptions ao;
  ao.beta1 = opts_.beta1;
  ao.beta2 = opts_.beta2;
  ao.eps = opts_.adam_eps;
  ao.weight_decay = opts_.weight_decay;
  optimizer_ = std::make_unique<AdamW>(adapters_->parameters(), ao);
  micro_batch_ = opts_.batch / opts_.grad_accum;
  total_steps_ = total_train_steps(data_.train.size(), opts_);
}

Trainer::~Trainer() {
  model_.set_checkpointing(false);
}

int64_t Trainer::steps_per_epoch() const {
  return train_steps_per_epoch(data_.train.size(), opts_);
}

// Queues one micro-batch's forward and backward; returns its summed loss as a device scalar, so
// nothing waits for the device until the step reads its metrics.
torch::Tensor Trainer::micro_step(const std::vector<size_t>& idx, int64_t n_supervised_total,
                                  StepMetrics& m) {
  if (opts_.before_micro_batch) opts_.before_micro_batch(int64_t(idx.size()));
  Batch batch = make_batch(data_.train, idx, opts_.eval.pad_id);
  BatchTensors t = to_tensors(batch, model_);
  LossResult loss;
  {
    compat::AutocastGuard autocast(opts_.autocast, model_.device());
    torch::Tensor hidden = batch_hidden_states(model_, t);  // (B, T, C)
    loss = batch_loss(model_, hidden, t);
  }
  // Normalised by the whole batch's supervised tokens, so accumulation equals one big batch.
  (loss.sum / double(std::max<int64_t>(1, n_supervised_total))).backward();
  m.tokens += t.n_real;
  return loss.sum.detach();
}

// Gradients of the whole batch, micro_batch_ examples at a time; the summed loss (device scalar).
torch::Tensor Trainer::accumulate(const std::vector<size_t>& idx, StepMetrics& m,
                                  int64_t& micro_size) {
  optimizer_->zero_grad();
  const size_t micro = size_t(micro_batch_);
  torch::Tensor loss_sum;
  for (size_t begin = 0; begin < idx.size(); begin += micro) {
    std::vector<size_t> part(idx.begin() + begin,
                             idx.begin() + std::min(idx.size(), begin + micro));
    micro_size = int64_t(part.size());
    torch::Tensor l = micro_step(part, m.supervised, m);
    loss_sum = loss_sum.defined() ? loss_sum + l : l;
  }
  return loss_sum;
}

void Trainer::shrink_micro_batch(int64_t failed_size, const c10::Error& oom) {
  compat::empty_cuda_cache();  // the failed pass's tensors are gone; hand their blocks back
  const std::string where = "training step " + std::to_string(step_ + 1);
  // Recomputing blocks keeps the micro-batch and the losses for a third more work: tried first.
  if (!model_.checkpointing() && opts_.recompute_on_oom) {
    model_.set_checkpointing(true);
    notice("CUDA out of memory at micro-batch " + std::to_string(failed_size) + " (" + where +
           "); recomputing decoder blocks in backward from now on (--checkpointing auto; off "
           "halves the micro-batch instead)");
    return;
  }
  if (failed_size <= 1) {
    const std::string said = compat::out_of_memory_summary(oom);
    fail(where,
         "CUDA out of memory with a micro-batch of 1 example, blocks recomputed (" + said + ")", "",
         "", "lower --max-len, or use a smaller model or a card with more memory");
  }
  micro_batch_ = failed_size / 2;
  notice("CUDA out of memory at micro-batch " + std::to_string(failed_size) + " (" + where +
         "); retrying with " + std::to_string(micro_batch_) + " (effective batch " +
         std::to_string(opts_.batch) + " unchanged)");
}

StepMetrics Trainer::step() {
  auto start = std::chrono::steady_clock::now();
  const std::vector<size_t> idx = batch_indices(data_.train.size(), opts_.batch, opts_.seed, step_);
  int64_t supervised = 0;
  for (size_t i : idx) {
    for (uint8_t v : data_.train[i].loss_mask) supervised += v;
  }
  // A redone step draws the same dropout masks as a first attempt would have.
  const auto rng = generator_states(model_);
  StepMetrics m;
  torch::Tensor loss_sum;
  for (;;) {
    m = StepMetrics{};
    m.epoch = double(step_ + 1) / double(steps_per_epoch());
    m.supervised = supervised;
    int64_t micro_size = micro_batch_;
    try {
      loss_sum = accumulate(idx, m, micro_size);
      break;
    } catch (const c10::Error& e) {
      if (!compat::is_out_of_memory(e)) throw;
      shrink_micro_batch(micro_size, e);
      set_generator_states(model_, rng);
    }
  }
  const int64_t warm = warmup_steps(opts_.warmup, total_steps_);
  m.lr = opts_.lr * lr_factor(opts_.schedule, step_, warm, total_steps_);
  // The step's one wait for the device: loss and gradient norm come back together.
  torch::Tensor host =
      torch::stack({loss_sum.to(torch::kFloat32),
                    optimizer_->grad_norm().to(loss_sum.device(), torch::kFloat32)})
          .to(torch::kCPU, torch::kFloat64);
  m.loss = host[0].item<double>() / double(std::max<int64_t>(1, supervised));
  m.grad_norm = host[1].item<double>();
  // A non-finite loss or gradient would poison the adapter; run() stops on it.
  if (std::isfinite(m.loss) && std::isfinite(m.grad_norm)) {
    const double coef = opts_.max_grad_norm / (m.grad_norm + 1e-6);  // as clip_grad_norm_
    if (opts_.max_grad_norm > 0 && coef < 1) optimizer_->scale_grads(coef);
    optimizer_->step(m.lr);
  }
  ++step_;
  m.step = step_;
  m.seconds = seconds_since(start);
  return m;
}

double Trainer::evaluate(const std::vector<Example>& examples) {
  std::vector<size_t> all(examples.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  const bool was_training = adapters_->training();
  adapters_->set_training(false);
  EvalResult r;
  {
    compat::AutocastGuard autocast(opts_.autocast, model_.device());
    r = evaluate_loss(model_, examples, all, opts_.eval);
  }
  opts_.eval.batch_tokens = r.batch_tokens;  // keep what fitted: warn once, not at every evaluation
  opts_.eval.max_batch = r.max_batch;
  adapters_->set_training(was_training);
  return r.mean_loss;
}

void Trainer::record_eval(int64_t step, double val_loss) {
  evals_.push_back({step, val_loss});
  if (std::isfinite(val_loss) && (!std::isfinite(best_val_) || val_loss < best_val_)) {
    best_val_ = val_loss;
    best_step_ = step;
    best_state_ = adapters_->state_dict();
  }
}

namespace {

// metrics.jsonl, one JSON object per line; on resume, lines past the checkpoint's step are dropped
// so that the file reads as one uninterrupted run.
class MetricsLog {
 public:
  MetricsLog(const std::string& dir, int64_t keep_until_step) {
    if (dir.empty()) return;
    path_ = (fs::path(dir) / kMetricsFile).string();
    std::string kept;
    if (keep_until_step > 0 && fs::exists(path_)) {
      std::ifstream in(path_);
      std::string line;
      while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.value("step", int64_t(0)) <= keep_until_step) kept += line + "\n";
      }
    }
    write_file_atomic(path_, kept, /*overwrite=*/true);
    f_ = std::fopen(path_.c_str(), "ab");
    if (!f_) fail(path_, "cannot open for writing", "", "", "check permissions");
  }
  ~MetricsLog() {
    if (f_) std::fclose(f_);
  }
  void write(const json& j) {
    if (!f_) return;
    std::string line = json_output(j, -1) + "\n";
    std::fwrite(line.data(), 1, line.size(), f_);
    std::fflush(f_);  // a killed run keeps every line written so far
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

json step_json(const StepMetrics& m, double elapsed) {
  return {{"type", "train"},
          {"step", m.step},
          {"epoch", m.epoch},
          {"loss", number_or_null(m.loss)},
          {"lr", m.lr},
          {"grad_norm", number_or_null(m.grad_norm)},
          {"tokens", m.tokens},
          {"supervised", m.supervised},
          {"tokens_per_s", m.seconds > 0 ? double(m.tokens) / m.seconds : 0.0},
          {"elapsed_s", elapsed}};
}

// The validation loss never fell below its first evaluation and ended above it: the adapter kept
// is the first one. Too high a learning rate and overfitting both read so; without the base
// model's loss the trainer cannot tell them apart, so the warning names both.
std::string blowup_warning(const TrainResult& r, double lr) {
  if (r.evals.size() < 3 || r.best_step != r.evals.front().step) return "";
  const double first = r.evals.front().val_loss, last = r.evals.back().val_loss;
  if (!(last > first)) return "";
  return "the validation loss never fell below its first evaluation (" +
         format_number("%.4g", first) + " at step " + std::to_string(r.evals.front().step) + "; " +
         format_number("%.4g", last) + " at step " + std::to_string(r.evals.back().step) +
         "), so the adapter kept is that first one: the learning rate (" + format_number("%g", lr) +
         ") may be too high, or the run too long for the data; lower --lr or --epochs, or "
         "evaluate earlier (--n-evals)";
}

}  // namespace

json train_summary_json(const TrainResult& r) {
  return {
      {"finished", r.finished},
      {"diverged", r.diverged},
      {"total_steps", r.total_steps},
      {"steps_done", r.steps_done},
      {"best_step", r.best_step},
      {"best_val_loss", number_or_null(r.best_val_loss)},
      {"test_loss", number_or_null(r.test_loss)},
      {"base_val_loss", number_or_null(r.base_val_loss)},  // measured when the best may be worse
      {"n_trainable", r.n_trainable},
      {"seconds", r.seconds},
      {"tokens_per_s", r.tokens_per_s},
      {"evals", evals_json(r.evals)},
      {"examples", {{"train", r.n_train}, {"val", r.n_val}, {"test", r.n_test}}},
      {"warnings", r.warnings}};
}

namespace {

json read_summary_json(const std::string& path) {
  std::ifstream in(path);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("best_step")) {
    fail(path, "unreadable run summary", "a JSON object written by lorank train", "something else",
         "pass --force to train afresh");
  }
  return j;
}

TrainResult train_result_from(const json& j) {
  TrainResult r;
  r.finished = j.value("finished", false);
  r.diverged = j.value("diverged", false);
  r.total_steps = j.value("total_steps", int64_t(0));
  r.steps_done = j.value("steps_done", int64_t(0));
  r.best_step = j.value("best_step", int64_t(0));
  r.best_val_loss = number_or_nan(j.value("best_val_loss", json()));
  r.test_loss = number_or_nan(j.value("test_loss", json()));
  r.n_trainable = j.value("n_trainable", int64_t(0));
  r.seconds = j.value("seconds", 0.0);
  r.tokens_per_s = j.value("tokens_per_s", 0.0);
  r.evals = evals_from_json(j.value("evals", json::array()));
  if (j.contains("warnings")) r.warnings = j.at("warnings").get<std::vector<std::string>>();
  const json examples = j.value("examples", json::object());
  r.n_train = examples.value("train", int64_t(0));
  r.n_val = examples.value("val", int64_t(0));
  r.n_test = examples.value("test", int64_t(0));
  return r;
}

}  // namespace

TrainResult read_train_summary(const std::string& path) {
  return train_result_from(read_summary_json(path));
}

OutputState inspect_output_dir(const TrainOutput& out) {
  const fs::path dir(out.dir);
  if (!fs::exists(dir)) return OutputState::fresh;
  if (!fs::is_directory(dir)) {
    fail(out.dir, "--out is not a folder", "a folder (created when missing)", "a file",
         "choose another --out");
  }
  bool any = false, others = false;
  for (const std::string& name : list_dir(out.dir)) {
    any = true;
    if (!is_ours(name)) others = true;
  }
  if (!any) return OutputState::fresh;
  if (out.force) return OutputState::fresh;
  auto has = [&](const char* name) { return fs::exists(dir / name); };
  if (out.resume) {  // a run started with --force beside the user's files continues beside them
    if (has(kSummaryFile)) return OutputState::finished;
    if (has(kCheckpointFile)) return OutputState::checkpoint;
    if (!others && !has("adapter_model.safetensors") && !has("adapter_config.json"))
      return OutputState::fresh;
  }
  if (has("recommendation.json") && !has(kSummaryFile) && !has(kCheckpointFile)) {
    fail(out.dir, "holds the output of lorank recommend", "an empty or new folder",
         out.resume ? "nothing lorank can resume" : "",
         "train into another --out; --adapter-config " + out.dir +
             " reads its rank, alpha and patterns");
  }
  const std::string what =
      others ? "holds files that are not from a lorank run" : "already holds the results of a run";
  fail(out.dir, what, "an empty or new folder", out.resume ? "nothing lorank can resume" : "",
       others ? "choose another --out (--force replaces only lorank's own files there)"
              : "pass --resume to continue that run, --force to replace it, or another --out");
  return OutputState::fresh;
}

std::string Trainer::status_line(const StepMetrics& m) const {
  std::string status = "loss " + format_number("%g", m.loss) + "  " +
                       format_count(m.seconds > 0 ? double(m.tokens) / m.seconds : 0.0) + " tok/s";
  if (std::isfinite(best_val_)) status += "  best val " + format_number("%g", best_val_);
  return status;
}

bool Trainer::open_output(const TrainOutput& out, TrainResult& r) {
  const OutputState state = out.dir.empty() ? OutputState::fresh : inspect_output_dir(out);
  if (state == OutputState::finished) {
    const std::string path = (fs::path(out.dir) / kSummaryFile).string();
    const json saved = read_summary_json(path);
    r = train_result_from(saved);
    // A changed option would be ignored here, where an unfinished run refuses it.
    if (saved.contains("options"))  // summaries before the key: unchecked
      check_same_settings(saved["options"], path, "this finished run");
    r.resumed = true;
    r.already_finished = true;
    if (!saved.contains("examples")) {  // a summary from before the key: the same data, checked
      r.n_train = int64_t(data_.train.size());
      r.n_val = int64_t(data_.val.size());
      r.n_test = int64_t(data_.test.size());
    }
    return false;
  }
  if (!out.dir.empty()) {
    fs::create_directories(out.dir);
    for (const std::string& name : list_dir(out.dir)) {
      if ((out.force && is_ours(name)) || is_leftover(name))
        remove_tree((fs::path(out.dir) / name).string());
    }
  }
  if (state == OutputState::checkpoint) {
    load_checkpoint((fs::path(out.dir) / kCheckpointFile).string());
    r.resumed = true;
  }
  return true;
}

TrainResult Trainer::run(const TrainOutput& out) {
  session_start_ = std::chrono::steady_clock::now();
  TrainResult r;
  if (!open_output(out, r)) return r;  // finished earlier: its summary
  const std::string ckpt = (fs::path(out.dir) / kCheckpointFile).string();
  r.total_steps = total_steps_;
  r.n_trainable = adapters_->n_trainable();
  MetricsLog log(out.dir, step_);
  const std::vector<int64_t> evals =
      data_.val.empty() ? std::vector<int64_t>{}
                        : eval_steps(total_steps_, opts_.n_evals, opts_.eval_every);
  Progress progress(out.label, total_steps_, "step", out.progress, step_);
  double train_s = 0;
  int64_t tokens = 0;
  while (step_ < total_steps_) {
    StepMetrics m = step();
    r.steps.push_back(m);
    train_s += m.seconds;
    tokens += m.tokens;
    log.write(step_json(m, elapsed_before_ + seconds_since(session_start_)));
    if (m.step == 1) require_finite_base_loss(m.loss);  // B = 0: the base model's, not the lr's
    if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
      r.diverged = true;
      break;
    }
    const bool eval_now = std::binary_search(evals.begin(), evals.end(), step_);
    if (eval_now) {
      record_eval(step_, evaluate(data_.val));
      log.write({{"type", "eval"},
                 {"step", step_},
                 {"val_loss", number_or_null(evals_.back().val_loss)},
                 {"best_step", best_step_},
                 {"best_val_loss", number_or_null(best_val_)}});
    }
    // --stop-after counts this call's steps: run again with --resume, it trains as many more.
    const bool stop = (opts_.stop_after > 0 && int64_t(r.steps.size()) >= opts_.stop_after) ||
                      (opts_.interrupt && opts_.interrupt->load());
    const bool periodic = opts_.save_every > 0 && step_ % opts_.save_every == 0;
    progress.advance(1, status_line(m));
    if (step_ == total_steps_) break;  // the summary below replaces the checkpoint
    if (!out.dir.empty() && (eval_now || stop || periodic)) save_checkpoint(ckpt);
    if (stop) break;
  }
  progress.finish();
  r.steps_done = step_;
  r.tokens_per_s = train_s > 0 ? double(tokens) / train_s : 0.0;
  r.peak_gpu_bytes = model_.peak_gpu_bytes();
  r.checkpointing = model_.checkpointing();
  r.finished = r.diverged || step_ >= total_steps_;
  if (r.finished) finish(out, r);
  r.evals = evals_;
  r.best_step = best_step_;
  r.best_val_loss = best_val_;
  r.seconds = elapsed_before_ + seconds_since(session_start_);
  r.n_train = int64_t(data_.train.size());
  r.n_val = int64_t(data_.val.size());
  r.n_test = int64_t(data_.test.size());
  r.warnings.insert(r.warnings.begin(), out.warnings.begin(), out.warnings.end());
  const bool worse = r.base_val_loss < best_val_;  // said already, more precisely
  const std::string blowup = r.finished && !worse ? blowup_warning(r, opts_.lr) : "";
  if (!blowup.empty()) r.warnings.push_back(blowup);
  if (r.finished && !out.dir.empty()) {
    json summary = train_summary_json(r);
    summary["options"] = json::parse(options_fingerprint());  // what --resume checks
    write_file_atomic((fs::path(out.dir) / kSummaryFile).string(), json_output(summary) + "\n",
                      /*overwrite=*/true);
    remove_tree(ckpt);  // the summary now says the run is done
  }
  return r;
}

void Trainer::finish(const TrainOutput& out, TrainResult& r) {
  if (data_.val.empty()) {
    best_step_ = step_;  // nothing to compare: the last adapter is the result
  } else if (!best_state_.empty()) {
    adapters_->load_state_dict(best_state_, "best adapter");
  } else {
    return;  // diverged before the first evaluation: no adapter worth keeping
  }
  if (!out.dir.empty()) adapters_->save_peft(out.dir, out.base_model_path, /*overwrite=*/true);
  if (!data_.test.empty()) r.test_loss = evaluate(data_.test);
  note_worse_than_base(r);
}

// A learning rate that blew the run up before its first evaluation leaves an adapter worse than
// none, whose later evaluations still fall (blowup_warning misses it). Step 1's loss, taken with
// B = 0, is the base model's on one batch; only a best validation loss above it costs one more
// evaluation, of the base model on the validation data, to be sure.
void Trainer::note_worse_than_base(TrainResult& r) {
  if (data_.val.empty() || best_state_.empty() || r.steps.empty() || r.steps.front().step != 1 ||
      !(best_val_ > r.steps.front().loss))
    return;
  std::map<std::string, torch::Tensor> base = best_state_;
  for (auto& [name, t] : base) {
    if (name.find(".lora_B.") != std::string::npos) t = torch::zeros_like(t);
  }
  adapters_->load_state_dict(base, "base model");
  r.base_val_loss = evaluate(data_.val);
  adapters_->load_state_dict(best_state_, "best adapter");
  if (!(best_val_ > r.base_val_loss)) return;
  r.warnings.push_back("the adapter kept is worse than none: its validation loss " +
                       format_number("%.4g", best_val_) + " is above the base model's " +
                       format_number("%.4g", r.base_val_loss) + ": the learning rate (" +
                       format_number("%g", opts_.lr) +
                       ") is likely too high for this run; lower --lr (a sweep's --lrs finds one)");
}

}  // namespace lorank
