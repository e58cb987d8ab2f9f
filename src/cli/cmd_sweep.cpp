// lorank sweep: one training per (rank, learning rate), resumable, with the oracle's adequate rank.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "error.h"
#include "model.h"
#include "progress.h"
#include "sweep.h"
#include "train_cli.h"

namespace lorank::cli {

namespace {

struct SweepCliOptions {
  TrainCliOptions t;
  std::vector<int64_t> ranks = {1, 2, 4, 8, 16, 32, 64, 128};
  std::vector<double> lrs = {1e-3, 3e-3, 1e-2};
};

void check_grid(const SweepCliOptions& o) {
  for (int64_t r : o.ranks) {
    if (r < 1) fail("--ranks", "rank out of range", ">= 1", std::to_string(r));
  }
  for (double lr : o.lrs) {
    if (!(lr > 0)) fail("--lrs", "learning rate out of range", "> 0", std::to_string(lr));
  }
}

void print_run(const SweepRun& r, bool cached) {
  char test[32] = "-";
  if (std::isfinite(r.test_loss)) std::snprintf(test, sizeof test, "%.4f", r.test_loss);
  std::fprintf(stderr, "r=%-4lld lr=%-7g val %.4f  test %s  %s%s%s\n", (long long)r.rank, r.lr,
               r.best_val_loss, test, format_duration(r.seconds).c_str(),
               r.diverged ? "  (diverged)" : "", cached ? "  (done earlier)" : "");
}

int run_sweep_cmd(SweepCliOptions& o) {
  finalize(o.t);
  check_grid(o);
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
  check_sweep_dir(out);  // refuse before the slow part
  Session s = open_session(o.t.common, o.t.data);
  out.base_model_path = s.model_dir;
  so.train.eval.pad_id = pad_id_for(s);
  TrainData data = load_train_data(s, o.t);
  so.train.interrupt = install_interrupt_handler();
  if (!o.t.common.quiet) {
    std::fprintf(stderr, "%s; %zu ranks x %zu learning rates on %s\n",
                 describe_data(data, o.t).c_str(), so.ranks.size(), so.lrs.size(),
                 s.runtime.device.c_str());
  }
  SweepResult result = run_sweep(*s.model, data, so, out, [&](const SweepRun& r, bool cached) {
    if (!o.t.common.quiet) print_run(r, cached);
  });
  if (!result.complete) {
    std::fprintf(stderr,
                 "sweep stopped with %zu of %zu runs done; run the same command with "
                 "--resume to continue\n",
                 result.runs.size(), so.ranks.size() * so.lrs.size());
    return so.train.interrupt->load() ? 130 : 0;
  }
  if (o.t.common.json) {
    std::printf("%s", sweep_json(result.summary, result.runs).c_str());
  } else {
    std::printf("\n%s\nresults in %s (sweep.json, results.jsonl, loss_vs_rank.svg)\n",
                sweep_table(result.summary).c_str(), out.dir.c_str());
  }
  return 0;
}

}  // namespace

Subcommand sweep_subcommand() {
  return {"sweep",
          "Train one LoRA adapter per rank and learning rate; report the loss-vs-rank curve",
          [](CLI::App& app) -> std::function<int()> {
            auto o = std::make_shared<SweepCliOptions>();
            o->t.rslora = true;  // the oracle protocol: rsLoRA, alpha 8
            add_options(app, common_option_specs(o->t.common));
            add_options(app, data_option_specs(o->t.data));
            add_options(app, {
                                 {"--ranks", &o->ranks, "ranks to train"},
                                 {"--lrs", &o->lrs,
                                  "learning rates; per rank the best by validation loss counts"},
                             });
            add_options(app, train_option_specs(o->t, /*sweep=*/true));
            return [o] { return run_sweep_cmd(*o); };
          }};
}

}  // namespace lorank::cli
