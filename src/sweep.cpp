#include "sweep.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "compat.h"
#include "error.h"
#include "files.h"
#include "json_excerpt.h"
#include "model.h"
#include "progress.h"

namespace lorank {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kConfigFile = "sweep_config.json";
constexpr const char* kSweepJson = "sweep.json";
constexpr const char* kSvgFile = "loss_vs_rank.svg";
constexpr const char* kRunsDir = "runs";

std::string run_dir_name(int64_t rank, double lr) {
  return "r" + std::to_string(rank) + "-lr" + format_exact(lr);
}

bool same_lr(double a, double b) {
  return std::fabs(a - b) <= 1e-12 * std::max(std::fabs(a), 1.0);
}

json run_to_json(const SweepRun& r) {
  return {{"rank", r.rank},
          {"lr", r.lr},
          {"n_trainable", r.n_trainable},
          {"best_val_loss", number_or_null(r.best_val_loss)},
          {"test_loss", number_or_null(r.test_loss)},
          {"best_step", r.best_step},
          {"steps", r.steps},
          {"seconds", r.seconds},
          {"diverged", r.diverged},
          {"dir", r.dir}};
}

SweepRun run_from_json(const json& j) {
  SweepRun r;
  r.rank = j.at("rank").get<int64_t>();
  r.lr = j.at("lr").get<double>();
  r.n_trainable = j.value("n_trainable", int64_t(0));
  r.best_val_loss = number_or_nan(j.value("best_val_loss", json()));
  r.test_loss = number_or_nan(j.value("test_loss", json()));
  r.best_step = j.value("best_step", int64_t(0));
  r.steps = j.value("steps", int64_t(0));
  r.seconds = j.value("seconds", 0.0);
  r.diverged = j.value("diverged", false);
  r.dir = j.value("dir", std::string());
  return r;
}

// One line per finished run, fsync'd before the next run starts: a kill loses at most that run.
void append_durably(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0)
    fail(path, "cannot open for appending", "", std::strerror(errno), "check permissions");
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      fail(path, "cannot append", "", std::strerror(errno), "check free space");
    }
    done += size_t(n);
  }
  ::fsync(fd);
  ::close(fd);
}

// Finished runs recorded in results.jsonl. A line cut short by a kill is dropped from the file
// too, so that the next result does not get appended to it.
std::vector<SweepRun> read_results(const std::string& path) {
  std::vector<SweepRun> out;
  if (!fs::exists(path)) return out;
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t complete = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (complete < text.size()) write_file_atomic(path, text.substr(0, complete), /*overwrite=*/true);
  std::istringstream lines(text.substr(0, complete));
  std::string line;
  while (std::getline(lines, line)) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("rank") && j.contains("lr")) out.push_back(run_from_json(j));
  }
  return out;
}

std::string sweep_fingerprint(const SweepOptions& o, const TrainData& data) {
  json j = json::parse(run_fingerprint(o.lora, o.train, data));
  j.erase("r");  // what the sweep varies
  j.erase("lr");
  return j.dump();
}

// A run's folder or its log under runs/: "r8-lr0.001", "r8-lr0.001.log" (run_dir_name).
bool is_run_name(std::string name) {
  if (ends_with(name, ".log")) name.resize(name.size() - 4);
  const size_t dash = name.find("-lr");
  if (name.size() < 2 || name[0] != 'r' || name[1] == '0' || dash == std::string::npos ||
      dash < 2 || dash + 3 == name.size())
    return false;
  const std::string rank = name.substr(1, dash - 1), lr = name.substr(dash + 3);
  char* end = nullptr;
  std::strtod(lr.c_str(), &end);
  return std::all_of(rank.begin(), rank.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) &&
         std::isdigit(static_cast<unsigned char>(lr[0])) && end == lr.c_str() + lr.size();
}

// runs/ is lorank's only when it holds nothing but run folders and logs: TensorBoard and
// transformers' Trainer write their own runs/ folders, which --force must not remove.
bool is_ours(const fs::path& dir, std::string name) {
  if (name == kRunsDir) {
    if (!fs::is_directory(dir / name)) return false;
    const std::vector<std::string> entries = list_dir((dir / name).string());
    return std::all_of(entries.begin(), entries.end(), [](const std::string& e) {
      return e.rfind('.', 0) == 0 || is_run_name(e);  // .nfs*, .DS_Store
    });
  }
  if (name.rfind('.', 0) == 0) name = name.substr(1);  // temp files of a killed writer
  for (const char* ours : {kResultsFile, kConfigFile, kSweepJson, kSvgFile}) {
    if (name == ours || name.rfind(std::string(ours) + ".tmp", 0) == 0) return true;
  }
  return false;
}

// --force: lorank's files go, and in a runs/ shared with another tool only the run folders.
void remove_ours(const fs::path& dir) {
  for (const std::string& name : list_dir(dir.string())) {
    if (is_ours(dir, name)) {
      remove_tree((dir / name).string());
    } else if (name == kRunsDir && fs::is_directory(dir / name)) {
      for (const std::string& run : list_dir((dir / name).string())) {
        if (is_run_name(run)) remove_tree((dir / name / run).string());
      }
    }
  }
}

}  // namespace

double sweep_loss(const SweepSummary& s, const SweepRun& run) {
  return s.metric == "test" ? run.test_loss : run.best_val_loss;
}

SweepSummary summarize_sweep(const std::vector<SweepRun>& runs) {
  SweepSummary s;
  std::map<int64_t, SweepRun> chosen;
  for (const SweepRun& r : runs) {
    if (!std::isfinite(r.best_val_loss)) continue;
    auto it = chosen.find(r.rank);
    if (it == chosen.end() || r.best_val_loss < it->second.best_val_loss) chosen[r.rank] = r;
  }
  bool all_test = !chosen.empty();
  for (const auto& [rank, r] : chosen) all_test = all_test && std::isfinite(r.test_loss);
  s.metric = all_test ? "test" : "val";
  for (const auto& [rank, r] : chosen) {
    s.per_rank.push_back(r);
    double l = sweep_loss(s, r);
    if (!std::isfinite(s.best_loss) || l < s.best_loss) s.best_loss = l;
  }
  if (s.per_rank.empty()) return s;
  s.threshold = s.best_loss + std::max(0.005, 0.01 * s.best_loss);
  for (const SweepRun& r : s.per_rank) {
    if (sweep_loss(s, r) <= s.threshold) {
      s.adequate_rank = r.rank;
      break;
    }
  }
  return s;
}

std::string sweep_table(const SweepSummary& s) {
  std::ostringstream os;
  char line[200];
  std::snprintf(line, sizeof line, "  %5s  %10s  %8s  %9s  %9s  %8s\n", "rank", "params", "lr",
                "val loss", "test loss", "time");
  os << line;
  for (const SweepRun& r : s.per_rank) {
    const bool mark = r.rank == s.adequate_rank;
    std::snprintf(line, sizeof line, "%c %5lld  %10s  %8s  %9s  %9s  %8s%s\n", mark ? '*' : ' ',
                  static_cast<long long>(r.rank), format_count(double(r.n_trainable)).c_str(),
                  format_number("%g", r.lr).c_str(), format_number("%.4f", r.best_val_loss).c_str(),
                  std::isfinite(r.test_loss) ? format_number("%.4f", r.test_loss).c_str() : "-",
                  format_duration(r.seconds).c_str(), mark ? "  <- minimal adequate rank" : "");
    os << line;
  }
  if (s.adequate_rank > 0) {
    os << "\n* smallest rank with " << s.metric << " loss <= " << format_number("%.4f", s.threshold)
       << " (best " << format_number("%.4f", s.best_loss) << " + max(0.005, 1%)); lr per rank chosen by "
       << "validation loss\n";
  } else {
    os << "\nno run produced a finite loss\n";
  }
  return os.str();
}

std::string sweep_json(const SweepSummary& s, const std::vector<SweepRun>& runs) {
  json per_rank = json::array(), all = json::array();
  for (const SweepRun& r : s.per_rank) per_rank.push_back(run_to_json(r));
  for (const SweepRun& r : runs) all.push_back(run_to_json(r));
  json j = {{"metric", s.metric},
            {"best_loss", number_or_null(s.best_loss)},
            {"threshold", number_or_null(s.threshold)},
            {"adequate_rank", s.adequate_rank > 0 ? json(s.adequate_rank) : json(nullptr)},
            {"rule", "smallest r with L(r) <= best + max(0.005, 0.01 * best)"},
            {"per_rank", per_rank},
            {"runs", all}};
  return json_output(j) + "\n";
}

namespace {

// Where a (rank, loss) point lands: log2 rank across, loss up.
struct PlotArea {
  double W = 720, H = 440, left = 72, right = 150, top = 44, bottom = 56;
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  double X(double rank) const {
    return left + (std::log2(rank) - x_lo) / (x_hi - x_lo) * (W - left - right);
  }
  double Y(double loss) const { return top + (y_hi - loss) / (y_hi - y_lo) * (H - top - bottom); }
};

PlotArea plot_area(const SweepSummary& s, const std::vector<SweepRun>& runs) {
  PlotArea a;
  double y_lo = 1e300, y_hi = -1e300, x_lo = 1e300, x_hi = -1e300;
  for (const SweepRun& r : runs) {
    x_lo = std::min(x_lo, std::log2(double(r.rank)));
    x_hi = std::max(x_hi, std::log2(double(r.rank)));
    const double l = sweep_loss(s, r);
    if (!std::isfinite(l)) continue;
    y_lo = std::min(y_lo, l);
    y_hi = std::max(y_hi, l);
  }
  if (std::isfinite(s.threshold)) y_hi = std::max(y_hi, s.threshold);
  if (y_lo > y_hi) y_lo = 0, y_hi = 1;
  if (x_lo > x_hi) x_lo = 0, x_hi = 1;
  const double pad = std::max(1e-3, 0.08 * (y_hi - y_lo));
  a.y_lo = y_lo - pad, a.y_hi = y_hi + pad;
  a.x_lo = x_lo < x_hi ? x_lo : x_lo - 1, a.x_hi = x_lo < x_hi ? x_hi : x_hi + 1;
  return a;
}

void draw_axes(std::ostream& o, const PlotArea& a, const std::string& metric) {
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << a.W << "\" height=\"" << a.H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
    << "fill=\"white\"/>\n<text x=\"" << a.left << "\" y=\"24\" font-size=\"15\">" << metric
    << " loss against LoRA rank (best learning rate per rank)</text>\n";
  o << "<line x1=\"" << a.left << "\" y1=\"" << a.H - a.bottom << "\" x2=\"" << a.W - a.right
    << "\" y2=\"" << a.H - a.bottom << "\" stroke=\"black\"/>\n<line x1=\"" << a.left << "\" y1=\""
    << a.top << "\" x2=\"" << a.left << "\" y2=\"" << a.H - a.bottom << "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = a.y_lo + (a.y_hi - a.y_lo) * i / 4.0;
    o << "<text x=\"" << a.left - 6 << "\" y=\"" << a.Y(v) + 4 << "\" text-anchor=\"end\">"
      << format_number("%.3f", v) << "</text>\n<line x1=\"" << a.left << "\" y1=\"" << a.Y(v) << "\" x2=\""
      << a.W - a.right << "\" y2=\"" << a.Y(v) << "\" stroke=\"#eee\"/>\n";
  }
  for (double e = std::ceil(a.x_lo); e <= a.x_hi + 1e-9; e += 1) {
    o << "<text x=\"" << a.X(std::exp2(e)) << "\" y=\"" << a.H - a.bottom + 18
      << "\" text-anchor=\"middle\">" << format_number("%g", std::exp2(e)) << "</text>\n";
  }
  o << "<text x=\"" << (a.left + a.W - a.right) / 2 << "\" y=\"" << a.H - 14
    << "\" text-anchor=\"middle\">rank r (log scale)</text>\n";
}

}  // namespace

std::string sweep_svg(const SweepSummary& s, const std::vector<SweepRun>& runs) {
  static const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};
  const PlotArea a = plot_area(s, runs);
  std::vector<double> lrs;
  for (const SweepRun& r : runs) lrs.push_back(r.lr);
  std::sort(lrs.begin(), lrs.end());
  lrs.erase(std::unique(lrs.begin(), lrs.end(), same_lr), lrs.end());
  auto color = [&](double lr) {
    auto it = std::find_if(lrs.begin(), lrs.end(), [&](double v) { return same_lr(v, lr); });
    return colors[size_t(it - lrs.begin()) % 6];
  };
  std::ostringstream o = c_locale_stream();
  draw_axes(o, a, s.metric);
  if (std::isfinite(s.threshold)) {
    o << "<line x1=\"" << a.left << "\" y1=\"" << a.Y(s.threshold) << "\" x2=\"" << a.W - a.right
      << "\" y2=\"" << a.Y(s.threshold) << "\" stroke=\"#888\" stroke-dasharray=\"5,4\"/>\n"
      << "<text x=\"" << a.W - a.right + 6 << "\" y=\"" << a.Y(s.threshold) + 4
      << "\" fill=\"#555\">adequate " << format_number("%.4f", s.threshold) << "</text>\n";
  }
  for (const SweepRun& r : runs) {  // every run, coloured by learning rate
    const double l = sweep_loss(s, r);
    if (!std::isfinite(l)) continue;
    o << "<circle cx=\"" << a.X(double(r.rank)) << "\" cy=\"" << a.Y(l) << "\" r=\"3\" fill=\""
      << color(r.lr) << "\" fill-opacity=\"0.6\"/>\n";
  }
  std::string path;  // the curve L(r) through each rank's chosen run
  for (const SweepRun& r : s.per_rank) {
    path += (path.empty() ? "M" : " L") + format_number("%.1f", a.X(double(r.rank))) + "," +
            format_number("%.1f", a.Y(sweep_loss(s, r)));
  }
  o << "<path d=\"" << path << "\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\"/>\n";
  for (const SweepRun& r : s.per_rank) {
    if (r.rank != s.adequate_rank) continue;
    const double x = a.X(double(r.rank)), y = a.Y(sweep_loss(s, r));
    o << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"7\" fill=\"none\" stroke=\"#d62728\" "
      << "stroke-width=\"2\"/>\n<text x=\"" << x << "\" y=\"" << y - 12
      << "\" text-anchor=\"middle\" fill=\"#d62728\">r = " << r.rank << "</text>\n";
  }
  for (size_t i = 0; i < lrs.size(); ++i) {
    const double y = a.top + 20 + 18 * double(i);
    o << "<circle cx=\"" << a.W - a.right + 12 << "\" cy=\"" << y - 4 << "\" r=\"4\" fill=\""
      << colors[i % 6] << "\"/>\n<text x=\"" << a.W - a.right + 22 << "\" y=\"" << y << "\">lr "
      << format_number("%g", lrs[i]) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

void check_sweep_dir(const SweepOutput& out) {
  const fs::path dir(out.dir);
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) {
    fail(out.dir, "--out is not a folder", "a folder (created when missing)", "a file",
         "choose another --out");
  }
  bool any = false, others = false;
  for (const std::string& name : list_dir(out.dir)) {
    any = true;
    others = others || !is_ours(dir, name);
  }
  if (!any || out.force) return;
  // a sweep started with --force beside the user's files continues beside them
  if (others && !(out.resume && fs::exists(dir / kConfigFile))) {
    fail(out.dir, "holds files that are not from a lorank sweep", "an empty or new folder", "",
         "choose another --out (--force replaces only lorank's own files there)");
  }
  if (!out.resume) {
    fail(out.dir, "already holds a sweep", "an empty or new folder", "",
         "pass --resume to continue it (finished runs are kept), --force to start over, or "
         "another --out");
  }
}

namespace {

void prepare_sweep_dir(const SweepOutput& out, const std::string& fingerprint) {
  check_sweep_dir(out);
  const fs::path dir(out.dir);
  if (out.force && fs::exists(dir)) remove_ours(dir);
  if (fs::exists(dir / kRunsDir) && !fs::is_directory(dir / kRunsDir)) {
    fail((dir / kRunsDir).string(), "a file is where the sweep keeps its runs",
         "a folder named runs, or none", "a file", "move it away, or choose another --out");
  }
  fs::create_directories(dir / kRunsDir);
  const std::string config_path = (dir / kConfigFile).string();
  if (fs::exists(config_path)) {
    std::ifstream in(config_path);
    json saved = json::parse(in, nullptr, /*allow_exceptions=*/false);
    json now = json::parse(fingerprint);
    const std::string diff = settings_diff(saved, now);
    if (!diff.empty()) {
      fail(config_path, "the sweep in this folder used other settings or data",
           "the same settings (ranks and learning rates may change)", diff,
           settings_hint(diff) + " (or choose another --out)");
    }
  } else {
    write_file_atomic(config_path, json::parse(fingerprint).dump(2) + "\n", /*overwrite=*/true);
  }
}

// recompute: whether blocks are recomputed, kept for the next run once memory ran out.
SweepRun train_one(Model& model, const TrainData& data, const SweepOptions& opts,
                   const SweepOutput& out, int64_t rank, double lr, const std::atomic<bool>& stop,
                   bool* interrupted, bool* recompute) {
  LoraConfig lora = opts.lora;
  lora.r = rank;
  TrainOptions train = opts.train;
  train.lr = lr;
  train.checkpointing = *recompute;
  train.interrupt = &stop;
  TrainOutput to;
  to.warnings = out.warnings;
  to.dir = (fs::path(out.dir) / sweep_run_dir(rank, lr)).string();
  to.base_model_path = out.base_model_path;
  to.resume = true;  // a half-finished run continues from its checkpoint
  to.progress = out.progress;
  to.label = sweep_run_name(rank, lr);
  // A `lorank train` into this run's folder meanwhile is refused, as the run of a --jobs sweep
  // (a lorank train itself) refuses it.
  std::error_code ec;
  fs::create_directories(to.dir, ec);
  std::optional<FolderLock> lock;
  if (!ec) lock.emplace(to.dir, "--out");  // else the trainer says what is in the way
  Trainer trainer(model, lora, data, train);
  const TrainResult r = trainer.run(to);
  *interrupted = !r.finished;
  *recompute = r.checkpointing;
  return sweep_run_from(r, rank, lr);
}

struct GridPoint {
  int64_t rank = 0;
  double lr = 0;
};

// What the trainings running at once share: the runs still to do (handed out in grid order), the
// finished ones by grid position, and the first error. Everything behind `mu` but `stop`.
struct SweepQueue {
  std::vector<GridPoint> grid;
  std::vector<size_t> todo;  // grid positions without a result
  std::vector<std::optional<SweepRun>> done;
  std::string results_path;
  std::mutex mu;
  size_t next = 0;
  bool stopped = false;  // a run stopped early (interrupt) or failed
  std::exception_ptr error;
  std::atomic<bool> stop{false};  // every training's interrupt: the caller's, or a failed run's
};

// Slot `slot` trains one run at a time until the queue is empty or the sweep stops.
void sweep_worker(size_t slot, const SweepTrainer& train, SweepQueue& q,
                  const std::function<void(const SweepRun&, bool cached)>& on_run) {
  try {
    for (;;) {
      size_t pos = 0;
      {
        std::lock_guard<std::mutex> lock(q.mu);
        if (q.stopped || q.next >= q.todo.size()) return;
        pos = q.todo[q.next++];
      }
      bool interrupted = false;
      SweepRun run = train(slot, q.grid[pos].rank, q.grid[pos].lr, q.stop, &interrupted);
      std::lock_guard<std::mutex> lock(q.mu);
      if (interrupted) {  // the run's checkpoint lets --resume continue it
        q.stopped = true;
        q.stop = true;
        return;
      }
      append_durably(q.results_path, json_output(run_to_json(run), -1) + "\n");
      q.done[pos] = run;
      if (on_run) on_run(run, false);
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(q.mu);
    if (!q.error) q.error = std::current_exception();
    q.stopped = true;
    q.stop = true;  // the other trainings checkpoint and stop
  }
}

// Slot 0 in this thread, the others in threads of their own; the caller's interrupt reaches
// every training through q.stop.
void run_slots(size_t n_slots, const SweepTrainer& train, const std::atomic<bool>* interrupt,
               SweepQueue& q, const std::function<void(const SweepRun&, bool cached)>& on_run) {
  std::atomic<bool> finished{false};
  std::thread relay([&] {
    while (!finished.load()) {
      if (interrupt && interrupt->load()) q.stop = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::vector<std::thread> threads;
  for (size_t slot = 1; slot < n_slots; ++slot)
    threads.emplace_back([&, slot] { sweep_worker(slot, train, q, on_run); });
  sweep_worker(0, train, q, on_run);
  for (std::thread& t : threads) t.join();
  finished = true;
  relay.join();
}

}  // namespace

std::string sweep_run_name(int64_t rank, double lr) {
  return "r=" + std::to_string(rank) + " lr=" + format_number("%g", lr);
}

std::string sweep_run_label(int64_t rank, double lr) {
  return "the training of " + sweep_run_name(rank, lr);
}

std::string sweep_failure_hint() {
  return "the finished runs are kept, a stopped one keeps its checkpoint: when the rank or "
         "learning rate was the cause, run the same sweep with --resume and --ranks/--lrs "
         "without it; for any other setting, start again with --force or another --out "
         "(--resume keeps the settings)";
}

std::string sweep_run_dir(int64_t rank, double lr) {
  return std::string(kRunsDir) + "/" + run_dir_name(rank, lr);
}

SweepRun sweep_run_from(const TrainResult& r, int64_t rank, double lr) {
  SweepRun run;
  run.rank = rank;
  run.lr = lr;
  run.dir = sweep_run_dir(rank, lr);
  run.n_trainable = r.n_trainable;
  run.best_val_loss = r.best_val_loss;
  run.test_loss = r.test_loss;
  run.best_step = r.best_step;
  run.steps = r.steps_done;
  run.seconds = r.seconds;
  run.diverged = r.diverged;
  return run;
}

SweepResult run_sweep(Model& model, const TrainData& data, const SweepOptions& opts,
                      const SweepOutput& out,
                      const std::function<void(const SweepRun&, bool cached)>& on_run) {
  return run_sweep(std::vector<Model*>{&model}, data, opts, out, on_run);
}

SweepResult run_sweep(const std::vector<Model*>& models, const TrainData& data,
                      const SweepOptions& opts, const SweepOutput& out,
                      const std::function<void(const SweepRun&, bool cached)>& on_run) {
  if (models.empty()) fail("sweep", "no model to train on", "at least one", "none");
  SweepOutput each = out;
  each.progress = out.progress && models.size() == 1;  // bars of trainings at once would interleave
  if (models.size() > 1) {
    for (Model* m : models) compat::cuda_synchronize(m->device());  // loads done on every stream
  }
  std::vector<char> recompute(models.size(), opts.train.checkpointing);  // one per thread
  auto train = [&](size_t slot, int64_t rank, double lr, const std::atomic<bool>& stop,
                   bool* interrupted) {
    std::optional<compat::OwnCudaStream> stream;
    if (models.size() > 1) stream.emplace(models[slot]->device());
    bool again = recompute[slot] != 0;
    try {
      SweepRun run =
          train_one(*models[slot], data, opts, each, rank, lr, stop, interrupted, &again);
      recompute[slot] = again;
      return run;
    } catch (const Error& e) {  // LibTorch's errors reach main, which prints them without a trace
      const std::string where = (fs::path(out.dir) / sweep_run_dir(rank, lr)).string();
      // The same text as before, with the parts apart: the run's hint joins the sweep's.
      const std::string what = sweep_run_label(rank, lr) + " failed: " +
                               error_message(e.where(), e.reason(), e.expected(), e.got());
      const std::string hint = join_hints(e.hint(), sweep_failure_hint());
      if (dynamic_cast<const UsageError*>(&e)) throw UsageError(where, what, "", "", hint);
      throw Error(where, what, "", "", hint);
    }
  };
  return run_sweep(models.size(), train, data, opts, out, on_run);
}

SweepResult run_sweep(size_t n_slots, const SweepTrainer& train, const TrainData& data,
                      const SweepOptions& opts, const SweepOutput& out,
                      const std::function<void(const SweepRun&, bool cached)>& on_run) {
  if (n_slots == 0) fail("sweep", "no training slot", "at least one", "0");
  if (!opts.lora.rank_pattern.empty()) {
    fail("--rank-pattern", "a sweep varies the rank of every module", "no rank_pattern",
         std::to_string(opts.lora.rank_pattern.size()) + " entries",
         "sweep without --rank-pattern, or train the pattern with lorank train");
  }
  if (opts.ranks.empty() || opts.lrs.empty()) {
    fail("sweep", "nothing to sweep", "at least one rank and one learning rate", "an empty list");
  }
  if (data.val.empty()) {  // --val-fraction 0 is refused before: too few examples to hold any out
    fail("sweep", "no validation examples", "validation data to compare the runs by", "none",
         "pass --val FILE, or more data for --val-fraction to hold some out");
  }
  prepare_sweep_dir(out, sweep_fingerprint(opts, data));
  SweepQueue q;
  q.results_path = (fs::path(out.dir) / kResultsFile).string();
  const std::vector<SweepRun> earlier = read_results(q.results_path);
  for (int64_t rank : opts.ranks) {
    for (double lr : opts.lrs) q.grid.push_back({rank, lr});
  }
  q.done.resize(q.grid.size());
  for (size_t pos = 0; pos < q.grid.size(); ++pos) {
    auto it = std::find_if(earlier.begin(), earlier.end(), [&](const SweepRun& r) {
      return r.rank == q.grid[pos].rank && same_lr(r.lr, q.grid[pos].lr);
    });
    if (it == earlier.end()) {
      q.todo.push_back(pos);
      continue;
    }
    q.done[pos] = *it;
    if (on_run) on_run(*it, true);
  }
  run_slots(std::min(n_slots, std::max<size_t>(1, q.todo.size())), train, opts.train.interrupt, q,
            on_run);
  if (q.error) std::rethrow_exception(q.error);
  SweepResult result;
  for (const auto& run : q.done) {
    if (run) result.runs.push_back(*run);
  }
  if (q.stopped) return result;
  result.complete = true;
  result.summary = summarize_sweep(result.runs);
  const fs::path dir(out.dir);
  write_file_atomic((dir / kSweepJson).string(), sweep_json(result.summary, result.runs), true);
  write_file_atomic((dir / kSvgFile).string(), sweep_svg(result.summary, result.runs), true);
  return result;
}

double job_memory_share_gib(double card_gib, int64_t jobs_on_card) {
  const double n = double(std::max<int64_t>(1, jobs_on_card));
  return std::max(0.0, card_gib - n * kCudaContextGib) / n;
}

double training_memory_floor_gib(double weights_gib) {
  return 1.25 * weights_gib + 1.0;
}

int64_t trainings_that_fit(double card_gib, double weights_gib) {
  int64_t n = 1;
  while (n < 1024 &&
         job_memory_share_gib(card_gib, n + 1) >= training_memory_floor_gib(weights_gib))
    ++n;
  return n;
}

}  // namespace lorank
