#include "sweep_jobs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "error.h"
#include "progress.h"
#include "train_cli.h"
#include "trainer.h"

namespace lorank::cli {

namespace {

namespace fs = std::filesystem;

std::string self_exe() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) fail("/proc/self/exe", "cannot find lorank's own executable", "a link", ec.message());
  return p.string();
}

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  // made before fork: the child may only make async-signal-safe calls until exec
  const std::string marker = std::string(kSweepParentEnv) + "=" + std::to_string(parent);
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, marker.c_str(), std::strlen(kSweepParentEnv) + 1) != 0) envp.push_back(*e);
  }
  envp.push_back(const_cast<char*>(marker.c_str()));
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) fail(args[0], "cannot start a training process", "", std::strerror(errno));
  if (pid == 0) {     // only async-signal-safe calls until exec
    ::setpgid(0, 0);  // a Ctrl-C reaches the sweep, which passes exactly one SIGINT on
    // ignored when the sweep started (a script's background job) it would stay so through exec,
    // and the one SIGINT the sweep passes on would stop nothing
    ::signal(SIGINT, SIG_DFL);
    ::prctl(PR_SET_PDEATHSIG, SIGINT);
    if (::getppid() != parent) ::_exit(130);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for `pid`; the first time `stop` is seen set, the process gets SIGINT.
int wait_for(pid_t pid, const std::atomic<bool>& stop) {
  bool signalled = false;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0 && errno != EINTR)
      fail("waitpid", "lost a training process", "", std::strerror(errno));
    if (stop.load() && !signalled) {
      ::kill(pid, SIGINT);
      signalled = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// The training's "error: ..." line, else its last line; `hint` gets the error's hint, if any.
std::string error_line(const std::string& path, std::string& hint) {
  std::ifstream in(path);
  std::string line, last, error;
  while (std::getline(in, line)) {
    if (line.rfind("error:", 0) == 0) {
      error = line;
      hint.clear();
    } else if (!error.empty() && line.rfind("  hint: ", 0) == 0) {
      hint = line.substr(8);
    }
    if (line.find_first_not_of(" \r\t") != std::string::npos) last = line;
  }
  if (!error.empty()) return error;
  return last.empty() ? "no output" : last;
}

SweepRun run_process(const SweepJobs& jobs, const std::string& exe, size_t slot, int64_t rank,
                     double lr, const std::atomic<bool>& stop, bool* interrupted) {
  const std::string dir = (fs::path(jobs.sweep_dir) / sweep_run_dir(rank, lr)).string();
  const std::string log = dir + ".log";
  std::vector<std::string> args = {exe, "train"};
  args.insert(args.end(), jobs.train_args.begin(), jobs.train_args.end());
  args.insert(args.end(), {"--r", std::to_string(rank), "--lr", format_number("%.17g", lr),
                           "--device", jobs.devices[slot % jobs.devices.size()].str(), "--out", dir,
                           "--resume", "--quiet"});
  if (jobs.on_start) jobs.on_start(dir);
  const int status = wait_for(spawn(args, log), stop);
  if (jobs.on_end) jobs.on_end(dir);
  if (jobs.on_warning) {
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("warning:", 0) == 0) jobs.on_warning(line);
    }
  }
  const std::string summary = (fs::path(dir) / kSummaryFile).string();
  if (fs::exists(summary)) {
    const TrainResult r = read_train_summary(summary);
    *interrupted = !r.finished;
    if (r.finished) return sweep_run_from(r, rank, lr);
  }
  const bool exited = WIFEXITED(status);
  const int code = exited ? WEXITSTATUS(status) : 0;
  if ((exited && (code == 0 || code == 130)) || stop.load()) {
    *interrupted = true;  // stopped with a checkpoint (interrupt, --stop-after)
    return sweep_run_from(TrainResult{}, rank, lr);
  }
  std::string hint;  // the training's own, then what to do with the sweep
  const std::string got = exited
                              ? "exit code " + std::to_string(code) + ": " + error_line(log, hint)
                              : "killed by signal " + std::to_string(WTERMSIG(status));
  fail(log, sweep_run_label(rank, lr) + " failed", "exit code 0", got,
       join_hints(hint, "read the log; " + sweep_failure_hint()));
}

}  // namespace

JobsProgress::JobsProgress(int64_t total_steps, bool enabled)
    : bar_("sweep", total_steps, "step", enabled) {
  if (!enabled) return;
  ticker_ = std::thread([this] {
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      std::lock_guard<std::mutex> lock(mu_);
      tick();
    }
  });
}

JobsProgress::~JobsProgress() {
  stop_ = true;
  if (ticker_.joinable()) ticker_.join();
  bar_.finish();
}

void JobsProgress::started(const std::string& run_dir) {
  std::lock_guard<std::mutex> lock(mu_);
  running_[run_dir] = Watched{};
}

void JobsProgress::ended(const std::string& run_dir) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(run_dir);
  if (it == running_.end()) return;
  read_new_lines(run_dir, it->second);
  running_.erase(it);
  tick();
}

// Complete lines only; a resumed run rewrites the file shorter, and is then read again from the
// start (its steps count once: the highest step seen).
void JobsProgress::read_new_lines(const std::string& run_dir, Watched& w) {
  const std::string path = (fs::path(run_dir) / kMetricsFile).string();
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return;
  if (std::streamoff(size) < w.offset) w.offset = 0;
  std::ifstream in(path, std::ios::binary);
  in.seekg(w.offset);
  std::string line;
  while (std::getline(in, line) && !in.eof()) {
    w.offset += std::streamoff(line.size() + 1);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || j.value("type", "") != "train") continue;
    const int64_t step = j.value("step", int64_t(0));
    if (step > w.step) {
      steps_ += step - w.step;
      w.step = step;
      tokens_ += j.value("tokens", int64_t(0));
    }
  }
}

void JobsProgress::tick() {
  for (auto& [dir, w] : running_) read_new_lines(dir, w);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t new_steps = steps_ - shown_;
  shown_ = steps_;
  bar_.advance(new_steps, format_count(s > 0 ? double(tokens_) / s : 0.0) + " tok/s, " +
                                    std::to_string(running_.size()) + " running");
}

SweepTrainer process_trainer(const SweepJobs& jobs) {
  if (jobs.devices.empty()) fail("--devices", "no device to train on", "at least one", "none");
  const std::string exe = self_exe();
  return [jobs, exe](size_t slot, int64_t rank, double lr, const std::atomic<bool>& stop,
                     bool* interrupted) {
    return run_process(jobs, exe, slot, rank, lr, stop, interrupted);
  };
}

}  // namespace lorank::cli
