// lorank sweep: one training per (rank, learning rate), resumable, with the oracle's adequate rank.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "compat.h"
#include "error.h"
#include "files.h"
#include "model.h"
#include "progress.h"
#include "sweep.h"
#include "sweep_jobs.h"
#include "train_cli.h"

namespace lorank::cli {

namespace {

struct SweepCliOptions {
  TrainCliOptions t;
  std::vector<int64_t> ranks = SweepOptions().ranks;
  std::vector<double> lrs = SweepOptions().lrs;
  std::string devices;  // empty: --device
  int64_t jobs = 0;     // 0: one per device
};

// Each value once: a repeat would train the same run twice and count it twice in the table.
template <typename T>
void check_unique(const char* flag, const std::vector<T>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (values[i] == values[j]) {
        fail_usage(flag, "a value given twice", "each value once",
                   format_number("%.10g", double(values[i])) + " twice", "drop the repeat");
      }
    }
  }
}

void check_grid(const SweepCliOptions& o) {
  for (int64_t r : o.ranks) {
    if (r < 1 || r > (1 << 16))
      fail_usage("--ranks", "rank out of range", "1 to 65536", std::to_string(r),
                 "the default grid is 1,2,4,8,16,32,64,128");
  }
  for (double lr : o.lrs) {
    if (!(lr >= k_min_lr && lr <= k_max_lr)) {
      fail_usage("--lrs", "learning rate out of range",
                 format_number("%g", k_min_lr) + " to " + format_number("%g", k_max_lr) +
                     ", as train's --lr",
                 format_number("%g", lr), "LoRA learning rates are usually 1e-4 to 1e-2");
    }
  }
  check_unique("--ranks", o.ranks);
  check_unique("--lrs", o.lrs);
}

// Counts finished runs for an ETA: with trainings at once, one bar per run would interleave.
struct SweepProgress {
  size_t total = 0, cached = 0, finished = 0;
  double run_seconds = 0;  // of the runs finished here, each whole: a resumed run counts its start
  bool eta = true;         // off under --jobs, whose bar has a better one

  std::string note(const SweepRun& r, bool is_cached) {
    if (is_cached) {
      ++cached;
      return "  (done earlier)";
    }
    ++finished;
    run_seconds += r.seconds;
    const size_t left = total - cached - finished;
    std::string out = "  [" + std::to_string(cached + finished) + "/" + std::to_string(total);
    if (left > 0 && eta)
      out += ", ETA " + format_duration(run_seconds / double(finished) * double(left));
    return out + "]";
  }
};

void print_run(const SweepRun& r, const std::string& note) {
  char test[32] = "-";
  if (std::isfinite(r.test_loss)) std::snprintf(test, sizeof test, "%.4f", r.test_loss);
  const char* clear = stderr_is_terminal() ? "\r\033[K" : "";  // over the jobs' bar
  std::fprintf(stderr, "%sr=%-4lld lr=%-7g val %.4f  test %s  %s%s%s\n", clear, (long long)r.rank,
               r.lr, r.best_val_loss, test, format_duration(r.seconds).c_str(),
               r.diverged ? "  (diverged)" : "", note.c_str());
}

// What every `lorank train` of the sweep is given: the sweep's own options, as parsed.
std::vector<std::string> shared_train_args(SweepCliOptions& o) {
  std::vector<OptionSpec> specs = common_option_specs(o.t.common);
  for (const auto& more : {data_option_specs(o.t.data), train_option_specs(o.t, /*sweep=*/true)})
    specs.insert(specs.end(), more.begin(), more.end());
  return option_args(specs, {"--device", "--out", "--resume", "--force", "--json", "--quiet"});
}

std::string devices_note(const std::vector<torch::Device>& devices, int64_t jobs) {
  if (jobs <= 1) return "";
  std::string names;
  for (const torch::Device& d : devices) names += (names.empty() ? "" : ", ") + d.str();
  return ", " + std::to_string(jobs) + " at a time on " + names;
}

// Several trainings on one GPU: each process gets an even share of the card as its --gpu-memory
// (or the user's, checked), and too many for the weights is refused before any starts.
std::string plan_job_memory(SweepCliOptions& o, const Session& s,
                            const std::vector<torch::Device>& devices, int64_t jobs) {
  jobs = std::min<int64_t>(jobs, int64_t(o.ranks.size() * o.lrs.size()));  // no more run at once
  const int64_t n_devices = int64_t(devices.size());
  if (jobs <= n_devices || !devices[0].is_cuda()) return "";
  const int64_t on_card = (jobs + n_devices - 1) / n_devices;
  const double card = card_gib(devices, 0);
  const double weights = weights_gib(s);
  double& share = o.t.common.gpu_memory_gib;
  if (share > 0 && double(on_card) * (share + kCudaContextGib) > card) {
    fail("--gpu-memory", "the trainings at once need more than the card holds",
         "at most " + format_number("%.1f", card) + " GiB on each GPU",
         std::to_string(on_card) + " x (" + format_number("%.1f", share) + " GiB + " +
             format_number("%.0f", kCudaContextGib) + " GiB of CUDA context)",
         "lower --gpu-memory, leave it out to split the card evenly, or pass fewer --jobs");
  }
  if (share > 0) return ", each within " + format_number("%.1f", share) + " GiB";
  share = std::floor(10 * job_memory_share_gib(card, on_card)) / 10;
  if (share < training_memory_floor_gib(weights)) {
    fail(s.model_dir, "too many trainings at once for this model on one GPU",
         format_number("%.1f", training_memory_floor_gib(weights)) + " GiB each (" +
             format_number("%.1f", weights) + " GiB of weights and room to train)",
         format_number("%.1f", share) + " GiB each for " + std::to_string(on_card) + " on a " +
             format_number("%.1f", card) + " GiB card",
         "pass --jobs " + std::to_string(trainings_that_fit(card, weights)) +
             " per GPU (times the number of --devices), or more --devices");
  }
  return ", each within " + format_number("%.1f", share) + " GiB";
}

// Each training process reads the data files again: a pipe (/dev/stdin, a FIFO) is empty by then.
void refuse_data_read_once(const TrainCliOptions& t) {
  for (const std::string& path : {t.common.data_path, t.val_path, t.test_path}) {
    std::error_code ec;
    if (path.empty() || std::filesystem::is_regular_file(path, ec)) continue;
    // a missing file or a folder is said as the data is read
    if (!std::filesystem::exists(path, ec) || std::filesystem::is_directory(path, ec)) continue;
    fail(path, "--jobs trains in several processes, and each reads the data again",
         "a regular file", "a pipe or other special file, which can be read once",
         "save the data to a file first (cat > data.jsonl), or leave out --jobs");
  }
}

// The trainings in `jobs` processes of `lorank train`, spread over `devices`, with one progress
// bar for all of them.
SweepResult run_in_processes(SweepCliOptions& o, const std::vector<torch::Device>& devices,
                             int64_t jobs, const TrainData& data, const SweepOptions& so,
                             const SweepOutput& out, const SweepProgress& progress,
                             const std::function<void(const SweepRun&, bool)>& on_run) {
  // Made when the first process starts: by then the runs done earlier are counted.
  std::unique_ptr<JobsProgress> bar;
  std::mutex bar_mu;
  SweepJobs j;
  j.train_args = shared_train_args(o);
  j.devices = devices;
  j.sweep_dir = out.dir;
  j.on_start = [&](const std::string& dir) {
    {
      std::lock_guard<std::mutex> lock(bar_mu);
      const int64_t runs = int64_t(progress.total - progress.cached);
      if (!bar)
        bar = std::make_unique<JobsProgress>(runs * total_train_steps(data.train.size(), so.train),
                                             !o.t.common.quiet);
    }
    bar->started(dir);
  };
  j.on_end = [&](const std::string& dir) { bar->ended(dir); };
  // Ranks above a module's full rank need the model, which only the trainings load: their
  // warnings, each once, here (the others this process gave already).
  std::set<std::string> warned;
  j.on_warning = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(bar_mu);
    if (line.find("min(d_in, d_out)") == std::string::npos || !warned.insert(line).second) return;
    std::fprintf(stderr, "%s%s\n", stderr_is_terminal() ? "\r\033[K" : "", line.c_str());
  };
  SweepResult result = run_sweep(size_t(jobs), process_trainer(j), data, so, out, on_run);
  bar.reset();
  return result;
}

// The table or JSON of a finished sweep; the exit code of one stopped or with every run diverged.
int report_sweep(const SweepCliOptions& o, const SweepResult& result, const SweepOptions& so,
                 const SweepOutput& out) {
  if (!result.complete) {
    std::fprintf(stderr,
                 "sweep stopped with %zu of %zu runs done; run the same command with "
                 "--resume%s to continue\n",
                 result.runs.size(), so.ranks.size() * so.lrs.size(),
                 o.t.force ? " instead of --force" : "");
    return stopped_exit_code();
  }
  if (o.t.common.json) {
    std::printf("%s", sweep_json(result.summary, result.runs).c_str());
  } else {
    std::printf("\n%s\nresults in %s (sweep.json, results.jsonl, loss_vs_rank.svg)\n",
                sweep_table(result.summary).c_str(), out.dir.c_str());
  }
  if (result.summary.adequate_rank == 0) {  // the table says so; the exit code tells a script
    fail((std::filesystem::path(out.dir) / kResultsFile).string(), "every run diverged",
         "a finite validation loss from at least one run",
         "none of " + std::to_string(result.runs.size()),
         "the runs are kept: run the same sweep with --resume and smaller --lrs (or keep "
         "--max-grad-norm at 1)");
  }
  return 0;
}

int run_sweep_cmd(SweepCliOptions& o) {
  finalize(o.t);
  check_grid(o);
  if (o.t.val_path.empty() && o.t.val_fraction == 0) {
    fail_usage("--val-fraction", "a sweep needs validation data",
               "--val FILE, or --val-fraction above 0", "no validation examples",
               "each rank's learning rate is chosen by validation loss: without it every run "
               "would train and none could be compared");
  }
  SweepOptions so;
  so.ranks = o.ranks;
  so.lrs = o.lrs;
  so.lora = lora_config_from(o.t);
  so.train = o.t.train;
  SweepOutput out;
  out.dir = o.t.out;
  out.resume = o.t.resume;
  out.force = o.t.force;
  out.progress = !o.t.common.quiet;
  refuse_inputs_as_output(o.t.out, "--out", o.t.common,
                          {o.t.val_path, o.t.test_path, o.t.adapter_config});
  check_sweep_dir(out);  // refuse before the slow part
  check_can_write_folder(out.dir, "--out");
  const FolderLock lock(out.dir, "--out");
  warn_alpha_habit(o.t, so.lora, so.ranks);
  std::vector<torch::Device> devices;
  if (!o.devices.empty()) {
    devices = resolve_devices(o.devices);
    o.t.common.device = devices[0].str();
  }
  const int64_t jobs = o.jobs > 0 ? o.jobs : std::max<int64_t>(1, int64_t(devices.size()));
  if (jobs > 1) refuse_data_read_once(o.t);
  // With trainings in other processes this one only reads the data (for the settings' fingerprint).
  Session s = open_session(o.t.common, o.t.data, /*load_data=*/true, /*load_model=*/jobs == 1);
  if (s.model) {
    check_every_key_matches(*s.model, so.lora, "");
    warn_ranks_beyond_full(*s.model, so.lora, so.ranks);
  } else {  // the trainings load the model and pass their warnings on; a mistyped key fails here
    LoadOptions names_only;
    names_only.shapes_only = true;
    check_every_key_matches(*Model::load(s.model_dir, names_only), so.lora, "");
  }
  if (jobs > 1) refuse_split_model(s, "lorank sweep");
  if (devices.empty()) devices = {s.device};
  const std::string memory_note = plan_job_memory(o, s, devices, jobs);
  out.base_model_path = model_reference(s);
  set_model_identity(s, so.train);
  so.train.eval.pad_id = pad_id_for(s);
  TrainData data = load_train_data(s, o.t, out.warnings);  // each run's summary keeps them
  so.train.interrupt = install_interrupt_handler();
  if (!o.t.common.quiet) {
    std::fprintf(stderr, "%s; %s x %s on %s%s\n", describe_data(s, data, o.t).c_str(),
                 count_of(int64_t(so.ranks.size()), "rank").c_str(),
                 count_of(int64_t(so.lrs.size()), "learning rate").c_str(),
                 s.runtime.device.c_str(), (devices_note(devices, jobs) + memory_note).c_str());
  }
  SweepProgress progress;
  progress.total = so.ranks.size() * so.lrs.size();
  progress.eta = jobs == 1;
  auto on_run = [&](const SweepRun& r, bool cached) {
    const std::string note = progress.note(r, cached);
    if (!o.t.common.quiet) print_run(r, note);
  };
  const SweepResult result =
      jobs == 1 ? run_sweep(*s.model, data, so, out, on_run)
                : run_in_processes(o, devices, jobs, data, so, out, progress, on_run);
  return report_sweep(o, result, so, out);
}

}  // namespace

Subcommand sweep_subcommand() {
  return {"sweep",
          "Train one LoRA adapter per rank and learning rate; report the loss-vs-rank curve",
          [](CLI::App& app) -> std::function<int()> {
            auto o = std::make_shared<SweepCliOptions>();
            add_options(app, common_option_specs(o->t.common));
            add_options(app, data_option_specs(o->t.data));
            add_options(app, {
                                 {"--ranks", &o->ranks, "ranks to train"},
                                 {"--lrs", &o->lrs,
                                  "learning rates; per rank the best by validation loss counts"},
                                 {"--devices", &o->devices,
                                  "train on these at once: cuda:0,cuda:1,... or all (instead of "
                                  "--device)"},
                                 {"--jobs", &o->jobs,
                                  "trainings at once, each a lorank train process, given to "
                                  "--devices in turn (0: one per device); a small model trains "
                                  "faster several to a GPU, each given an even share of its "
                                  "memory (or --gpu-memory each)",
                                  0, 256},
                             });
            add_options(app, train_option_specs(o->t, /*sweep=*/true));
            return [o, &app] {
              note_lora_flags_given(app, o->t);
              return run_sweep_cmd(*o);
            };
          }};
}

}  // namespace lorank::cli
