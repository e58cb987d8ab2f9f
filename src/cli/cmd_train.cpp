// lorank train: one LoRA training run, the best adapter written as PEFT files.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "error.h"
#include "files.h"
#include "json_excerpt.h"
#include "model.h"
#include "progress.h"
#include "train_cli.h"

namespace lorank::cli {

namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<int> g_signal{0};  // the first stopping signal
pid_t g_sweep_parent = 0;      // a sweep --jobs training's sweep; set before the handler

// Schedulers, `timeout` and `docker stop` send SIGTERM, a closed terminal SIGHUP: each
// checkpoints as Ctrl-C does. A second signal ends the process at once.
void on_stop_signal(int sig, siginfo_t* info, void*) {
  // A sweep passes on one SIGINT; a later signal from its pid is the kernel's death signal, sent
  // once per thread of the dying sweep: not a second Ctrl-C.
  if (g_interrupted.load() && g_sweep_parent > 0 && info && info->si_pid == g_sweep_parent) return;
  if (g_interrupted.load()) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal = sig;  // before the flag: whoever sees the flag also sees the signal
  g_interrupted = true;
}

template <typename T>
std::map<std::string, T> parse_pattern(const std::vector<std::string>& items, const char* option) {
  std::map<std::string, T> out;
  for (const std::string& item : items) {
    const size_t eq = item.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      fail_usage(option, "malformed entry", "key=value (e.g. q_proj=16)", item,
                 "separate entries with commas: q_proj=16,v_proj=4");
    }
    const std::string value = item.substr(eq + 1);
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    // the ranges of --rank and --alpha; a cast of inf or 1e19 to an integer is undefined
    const double most = std::is_integral_v<T> ? 65536 : 1e9;
    // std::stod also reads hex and leading spaces: numbers here are decimal, as on the command line
    if (used != value.size() || value.find_first_of("xX \t") != std::string::npos ||
        !(v > 0 && v <= most) || (std::is_integral_v<T> && v != std::floor(v))) {
      fail_usage(
          option, "bad value for " + item.substr(0, eq),
          std::is_integral_v<T> ? "an integer in [1, 65536]" : "a number in (0, 1e9]", value,
          std::is_integral_v<T> ? "a rank of 1 or more: q_proj=16" : "an alpha above 0: q_proj=32");
    }
    if (!out.emplace(item.substr(0, eq), static_cast<T>(v)).second) {
      fail_usage(option, "key " + item.substr(0, eq) + " given twice", "each key once", item,
                 "keep one value per key");
    }
  }
  return out;
}

Dataset load_extra(const Session& s, const TrainCliOptions& o, const std::string& path,
                   std::vector<std::string>& warnings) {
  Dataset d = load_dataset(path, *s.tokenizer, s.tokenizer_config,
                           dataset_options(o.data, o.common.threads),
                           s.model_dir + "/tokenizer_config.json");
  print_data_warnings(path, d.stats);
  for (std::string& w : data_warnings(path, d.stats)) warnings.push_back(std::move(w));
  return d;
}

std::vector<Example> pick(const std::vector<Example>& all, const std::vector<size_t>& idx) {
  std::vector<Example> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(all[i]);
  return out;
}

nlohmann::json result_json(const TrainResult& r, const std::string& out) {
  nlohmann::json j = train_summary_json(r);  // evals as [step, loss], as in train_summary.json
  j["out"] = out;
  j["resumed"] = r.resumed;
  j["already_finished"] = r.already_finished;
  j["peak_gpu_bytes"] = r.peak_gpu_bytes;
  j["checkpointing"] = r.checkpointing;
  return j;
}

void print_result(const TrainResult& r, const std::string& out) {
  std::printf("steps      %lld of %lld%s\n", (long long)r.steps_done, (long long)r.total_steps,
              r.already_finished ? " (finished before: nothing left to resume)"
              : r.resumed        ? " (resumed)"
                                 : "");
  if (std::isfinite(r.best_val_loss)) {
    std::printf("best       step %lld, validation loss %.4f\n", (long long)r.best_step,
                r.best_val_loss);
  }
  if (std::isfinite(r.test_loss)) std::printf("test loss  %.4f\n", r.test_loss);
  if (std::filesystem::exists(std::filesystem::path(out) / "adapter_model.safetensors")) {
    std::printf("adapter    %s (%s trainable parameters)\n", out.c_str(),
                format_count(double(r.n_trainable)).c_str());
  }
  std::printf("time       %s, %s tok/s%s%s\n", format_duration(r.seconds).c_str(),
              format_count(r.tokens_per_s).c_str(), gpu_peak_note(r.peak_gpu_bytes).c_str(),
              r.checkpointing ? "; blocks recomputed" : "");
}

int run_train(TrainCliOptions& o) {
  finalize(o);
  LoraConfig lora = lora_config_from(o);
  TrainOutput out;
  out.dir = o.out;
  out.resume = o.resume;
  out.force = o.force;
  out.progress = !o.common.quiet;
  refuse_inputs_as_output(o.out, "--out", o.common, {o.val_path, o.test_path, o.adapter_config});
  // Refused before the slow part; a finished run that --resume reads back writes nothing.
  if (inspect_output_dir(out) != OutputState::finished) check_can_write_folder(out.dir, "--out");
  const FolderLock lock(out.dir, "--out");
  warn_alpha_habit(o, lora, {});
  Session s = open_session(o.common, o.data);
  check_every_key_matches(*s.model, lora, o.adapter_config);
  warn_ranks_beyond_full(*s.model, lora, {});
  out.base_model_path = model_reference(s);
  set_model_identity(s, o.train);
  o.train.eval.pad_id = pad_id_for(s);
  TrainData data = load_train_data(s, o, out.warnings);
  o.train.interrupt = install_interrupt_handler();
  Trainer trainer(*s.model, lora, data, o.train);
  if (!o.common.quiet) {
    std::fprintf(stderr, "%s; %s on %s, %s trainable parameters\n",
                 describe_data(s, data, o).c_str(), count_of(trainer.total_steps(), "step").c_str(),
                 s.runtime.device.c_str(),
                 format_count(double(trainer.adapters().n_trainable())).c_str());
  }
  TrainResult r = trainer.run(out);
  if (o.common.json) {
    std::printf("%s\n", json_output(result_json(r, o.out)).c_str());
  } else if (r.finished) {
    print_result(r, o.out);
  }
  if (!r.finished) {
    std::fprintf(stderr,
                 "stopped at step %lld of %lld; the checkpoint is in %s: run the same "
                 "command with --resume%s to continue\n",
                 (long long)r.steps_done, (long long)r.total_steps, o.out.c_str(),
                 o.force ? " instead of --force" : "");
    return stopped_exit_code();
  }
  for (const auto& w : r.warnings) {  // the data's were said as it was read
    if (std::find(out.warnings.begin(), out.warnings.end(), w) == out.warnings.end())
      std::fprintf(stderr, "warning: %s\n", w.c_str());
  }
  if (r.diverged) {
    if (!std::isfinite(r.best_val_loss) && !data.val.empty()) {
      fail("lorank train", "training diverged before the first evaluation", "finite losses",
           "a non-finite loss at step " + std::to_string(r.steps_done),
           "lower --lr (or keep --max-grad-norm at 1)");
    }
    std::fprintf(stderr,
                 "warning: training diverged at step %lld; kept the adapter of step "
                 "%lld\n",
                 (long long)r.steps_done, (long long)r.best_step);
  }
  return 0;
}

}  // namespace

// PEFT's habit of alpha = r or 2r, under rsLoRA (lorank's default), scales the update by sqrt(r)
// or 2 sqrt(r): at r=64 an eight times larger step than the user meant. Recommend's alpha is 8.
void warn_alpha_habit(const TrainCliOptions& o, const LoraConfig& c,
                      const std::vector<int64_t>& ranks) {
  auto given = [&](const char* flag) {
    return std::find(o.lora_flags_given.begin(), o.lora_flags_given.end(), flag) !=
           o.lora_flags_given.end();
  };
  if (!given("--alpha") || given("--rslora") || given("--no-rslora") || !c.rslora) return;
  const int64_t r_min = ranks.empty() ? c.r : *std::min_element(ranks.begin(), ranks.end());
  if (!(c.alpha > 8 && c.alpha >= double(r_min))) return;
  // Said at the largest rank, where the two scales differ most.
  const int64_t r = ranks.empty() ? c.r : *std::max_element(ranks.begin(), ranks.end());
  std::fprintf(stderr,
               "warning: --alpha %g with rsLoRA (the default) scales the adapter by alpha/sqrt(r) "
               "= %.3g at r=%lld; PEFT's alpha/r would be %.3g: add --no-rslora for PEFT's "
               "scaling, or --rslora to keep this one and silence this warning\n",
               c.alpha, c.alpha / std::sqrt(double(r)), (long long)r, c.alpha / double(r));
}

void note_lora_flags_given(const CLI::App& app, TrainCliOptions& o) {
  for (const char* flag : {"--rank", "--rank-pattern", "--alpha", "--rslora", "--no-rslora",
                           "--targets", "--alpha-pattern", "--dropout"}) {
    const CLI::Option* opt = app.get_option_no_throw(flag);
    if (opt && opt->count() > 0) o.lora_flags_given.push_back(flag);
  }
}

std::vector<OptionSpec> train_option_specs(TrainCliOptions& o, bool sweep) {
  TrainOptions& t = o.train;
  std::vector<OptionSpec> specs;
  if (!sweep) {
    specs.push_back({"--adapter-config", &o.adapter_config,
                     "rank, alpha, rsLoRA, targets, patterns and dropout from a PEFT "
                     "adapter_config.json, or the folder holding one (recommend --out writes it)"});
    specs.push_back({"-r,--r,--rank", &o.r, "LoRA rank", 1, 1 << 16});
    specs.push_back(
        {"--rank-pattern", &o.rank_pattern, "per-module ranks, PEFT keys: q_proj=16,..."});
    specs.push_back({"--lr", &t.lr, "peak learning rate", k_min_lr, k_max_lr});
  }
  std::vector<OptionSpec> rest = {
      {"--alpha", &o.alpha, "LoRA alpha (scale alpha/r, or alpha/sqrt(r) with --rslora)", 1e-9,
       1e9},
      {"--rslora,!--no-rslora", &o.rslora,
       "rank-stabilised scaling alpha/sqrt(r), the default; --no-rslora: alpha/r, PEFT's default"},
      {"--targets", &o.targets, "modules to adapt: all-linear, or suffixes such as q_proj,v_proj"},
      {"--alpha-pattern", &o.alpha_pattern, "per-module alphas, PEFT keys: q_proj=32,..."},
      {"--dropout", &o.dropout, "LoRA dropout", 0, 0.99},
      {"--epochs", &t.epochs, "passes over the training data (--max-steps stops sooner)", 1, 1e6},
      {"--max-steps", &t.max_steps, "cap on optimizer steps, whatever --epochs says (0: none)", 0,
       1e12},
      {"--batch", &t.batch,
       "examples per optimizer step (HF: per_device_train_batch_size x "
       "gradient_accumulation_steps)",
       1, 1e6},
      {"--grad-accum", &t.grad_accum, "micro-batches per step (micro-batch = batch / this)", 1,
       1e6},
      {"--warmup", &t.warmup, "warm-up as a fraction of all steps", 0, 0.999},
      {"--schedule",
       &t.schedule,
       "decay after warm-up",
       -1e300,
       1e300,
       {"linear", "cosine", "constant"}},
      {"--weight-decay", &t.weight_decay, "AdamW weight decay", 0, 1e3},
      {"--max-grad-norm", &t.max_grad_norm, "gradient clipping (0: none)", 0, 1e12},
      {"--seed", &o.seed, "seed of adapter init, data order, split and dropout", 0, k_max_seed},
      {"--val-fraction", &o.val_fraction, "held-out share of --data when no --val (0: none)", 0,
       0.9},
      {"--val", &o.val_path, "validation file (instead of a split of --data)"},
      {"--test", &o.test_path, "test file: the best adapter's loss on it is reported"},
      {"--n-evals", &t.n_evals, "evenly spaced validation points (0: at the end only)", 0, 1e6},
      {"--eval-every", &t.eval_every, "validate every N steps instead (0: use --n-evals)", 0, 1e12},
      {"--eval-batch-tokens", &o.eval_batch_tokens, "padded tokens per evaluation batch", 16, 1e9},
      {"--save-every", &t.save_every, "also checkpoint every N steps (0: at evaluations only)", 0,
       1e12},
      {"--stop-after", &t.stop_after,
       "stop after N more steps with a checkpoint (continue: --resume)", 0, 1e12},
      {"--checkpointing",
       &o.checkpointing,
       "recompute decoder blocks in backward: less memory, a third more time (auto: from the "
       "first CUDA out-of-memory on)",
       -1e300,
       1e300,
       {"auto", "on", "off"},
       false,
       "on"},
      {"--no-autocast", &o.no_autocast,
       "no bf16 autocast on CUDA (a full-precision forward needs --dtype fp32 too)"},
      {"--out,-o", &o.out, "output folder", -1e300, 1e300, {}, true},
      {"--resume", &o.resume, "continue the interrupted run in --out"},
      {"--force", &o.force,
       "replace earlier results in --out (lorank's own files, removed as the run starts; others "
       "stay)"},
  };
  specs.insert(specs.end(), rest.begin(), rest.end());
  return specs;
}

void finalize(TrainCliOptions& o) {
  o.train.seed = static_cast<uint64_t>(o.seed);
  o.train.autocast = !o.no_autocast;
  o.train.eval.batch_tokens = o.eval_batch_tokens;
  o.train.checkpointing = o.checkpointing == "on";
  o.train.recompute_on_oom = o.checkpointing == "auto";
  validate(o.train);
  if (o.resume && o.force) {
    fail_usage("--resume/--force", "conflicting options", "one of them", "both",
               "--resume continues the run in --out, --force discards it");
  }
}

// An adapter_config.json names the model it was made for: without --model, train would adapt the
// built-in demo instead, and name it in the adapter it writes.
void check_adapter_base_model(const TrainCliOptions& o, const std::string& path) {
  if (!o.common.model_dir.empty()) return;
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  const auto base = j.is_object() ? j.find("base_model_name_or_path") : j.end();
  if (base == j.end() || !base->is_string() || base->get<std::string>().empty()) return;
  const std::string model = base->get<std::string>();
  std::error_code ec;
  if (std::filesystem::equivalent(model, demo_assets_dir() + "/tiny-llama", ec)) return;
  fail(path,
       "names a base model, but no --model was given (training would adapt the built-in demo)",
       "--model for " + model, "no --model",
       "pass --model " + model + " (or the folder holding it here)");
}

LoraConfig lora_config_from(const TrainCliOptions& o) {
  if (!o.adapter_config.empty()) {
    std::string path = o.adapter_config;
    if (std::filesystem::is_directory(path)) path += "/adapter_config.json";
    if (!o.lora_flags_given.empty()) {
      fail_usage(o.lora_flags_given.front(), "conflicts with --adapter-config",
                 "the LoRA settings from one place", "both",
                 "edit " + path + ", or drop --adapter-config and give every LoRA option");
    }
    if (!std::filesystem::exists(path)) {
      fail("--adapter-config", "not found", "a PEFT adapter_config.json or the folder holding one",
           path, "lorank recommend --out DIR writes DIR/adapter_config.json");
    }
    check_adapter_base_model(o, path);
    return LoraAdapters::read_peft_config(path);
  }
  LoraConfig c;
  c.r = o.r;
  c.alpha = o.alpha;
  c.rslora = o.rslora;
  c.dropout = o.dropout;
  c.target_modules = o.targets;
  c.rank_pattern = parse_pattern<int64_t>(o.rank_pattern, "--rank-pattern");
  c.alpha_pattern = parse_pattern<double>(o.alpha_pattern, "--alpha-pattern");
  return c;
}

void warn_ranks_beyond_full(Model& model, const LoraConfig& cfg,
                            const std::vector<int64_t>& ranks) {
  const std::vector<Linear*> targets = lora_targets(model, cfg);
  for (const int64_t global : ranks.empty() ? std::vector<int64_t>{0} : ranks) {
    std::map<std::string, int64_t> full_of;  // the kinds over, with their full rank
    int64_t n_over = 0, r_over = 0;
    for (const Linear* lin : targets) {
      const int64_t r = global > 0 ? global : lora_rank_for(cfg, lin->name);
      const int64_t full = std::min(lin->d_in(), lin->d_out());
      if (r <= full) continue;
      ++n_over;
      r_over = std::max(r_over, r);
      full_of[lin->kind] = full;
    }
    if (n_over == 0) continue;
    std::string kinds;
    for (const auto& [kind, full] : full_of)
      kinds += (kinds.empty() ? "" : ", ") + kind + " " + std::to_string(full);
    std::fprintf(stderr,
                 "warning: r=%lld is above min(d_in, d_out) of %lld of the %zu target modules "
                 "(%s): there it adds parameters and memory, not capacity\n",
                 (long long)r_over, (long long)n_over, targets.size(), kinds.c_str());
  }
}

// A held-out file that is the training file measures nothing held out; said, not refused.
void warn_if_training_file(const Session& s, const std::string& path, const char* flag) {
  std::error_code ec;
  if (std::filesystem::equivalent(path, s.data_path, ec)) {
    std::fprintf(stderr,
                 "warning: %s %s is the training file: its loss measures the training data, "
                 "not held-out data\n",
                 flag, path.c_str());
  }
}

TrainData load_train_data(const Session& s, const TrainCliOptions& o,
                          std::vector<std::string>& warnings) {
  TrainData d;
  warnings = data_warnings(s.data_path, s.data.stats);
  if (!o.val_path.empty()) warn_if_training_file(s, o.val_path, "--val");
  if (!o.test_path.empty()) warn_if_training_file(s, o.test_path, "--test");
  if (!o.val_path.empty()) {
    d.train = s.data.examples;
    d.val = load_extra(s, o, o.val_path, warnings).examples;
  } else if (o.val_fraction > 0) {
    if (s.data.examples.size() < 2) {
      fail(s.data_path, "too few examples to hold some out", "at least 2",
           std::to_string(s.data.examples.size()), "pass --val FILE or --val-fraction 0");
    }
    Split split = split_train_val(s.data.examples.size(), o.val_fraction, o.train.seed);
    d.train = pick(s.data.examples, split.train);
    d.val = pick(s.data.examples, split.val);
  } else {
    d.train = s.data.examples;
  }
  if (!o.test_path.empty()) d.test = load_extra(s, o, o.test_path, warnings).examples;
  return d;
}

std::string describe_data(const Session& session, const TrainData& d, const TrainCliOptions& o) {
  std::string s = "model " + session.model_dir +
                  (o.common.model_dir.empty() ? " (the built-in demo; --model names yours)" : "") +
                  ", data " + session.data_path +
                  (o.common.data_path.empty() ? " (the built-in demo; --data names yours)" : "") +
                  ": " + std::to_string(d.train.size()) + " training examples";
  s += d.val.empty() ? ", no validation (the last adapter is kept)"
                     : ", " + std::to_string(d.val.size()) + " validation" +
                           (o.val_path.empty() ? " (split off --data)" : "");
  if (!d.test.empty()) s += ", " + std::to_string(d.test.size()) + " test";
  // HF's max_steps replaces the epochs; lorank's caps them (the bench protocol's min(5 epochs,
  // 1500 steps)): said when it binds, since --epochs alone then does not say how long a run is.
  const int64_t per_epoch = train_steps_per_epoch(d.train.size(), o.train);
  if (o.train.max_steps > 0 && per_epoch * o.train.epochs > o.train.max_steps) {
    s += "; --max-steps " + std::to_string(o.train.max_steps) + " stops the run at " +
         format_number("%.4g", double(o.train.max_steps) / double(per_epoch)) + " of " +
         count_of(o.train.epochs, "epoch") + " (--max-steps 0: every epoch)";
  }
  return s;
}

const std::atomic<bool>* install_interrupt_handler() {
  g_interrupted = false;
  g_signal = 0;
  const char* sweep = std::getenv(kSweepParentEnv);
  const long parent = sweep ? std::strtol(sweep, nullptr, 10) : 0;
  g_sweep_parent = parent > 0 && parent == long(::getppid()) ? pid_t(parent) : 0;
  handle_stop_signals(on_stop_signal);
  return &g_interrupted;
}

int stopped_exit_code() {
  return g_interrupted.load() ? 128 + g_signal.load() : 0;
}

Subcommand train_subcommand() {
  return {"train",
          "Train a LoRA adapter and keep the one with the best validation loss (PEFT files)",
          [](CLI::App& app) -> std::function<int()> {
            auto o = std::make_shared<TrainCliOptions>();
            add_options(app, common_option_specs(o->common));
            add_options(app, data_option_specs(o->data));
            add_options(app, train_option_specs(*o, /*sweep=*/false));
            return [o, &app] {
              note_lora_flags_given(app, *o);
              return run_train(*o);
            };
          }};
}

}  // namespace lorank::cli
