// The probe's sums turned into spectra: where they are analysed (moved to another device, or
// copied over to CPU workers while they run) and the per-module analysis of spectrum.h.
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "error.h"
#include "parallel.h"
#include "probe.h"
#include "runtime.h"

namespace lorank {

void move_probe(ProbeResult& probe, const torch::Device& device) {
  std::map<const void*, torch::Tensor> moved;  // one copy per tensor, so shared moments stay shared
  auto move = [&](torch::Tensor& t) {
    if (!t.defined() || t.device() == device) return;
    auto it = moved.find(t.data_ptr());
    if (it == moved.end()) it = moved.emplace(t.data_ptr(), t.to(device)).first;
    t = it->second;
  };
  for (auto& m : probe.modules) {
    for (auto* t : {&m.grad.omega, &m.grad.psi, &m.grad.phi, &m.grad.xi}) move(*t);
    move(m.moment_all);
    move(m.moment_scored);
  }
  probe.device = device;
}

torch::Device spectrum_device(const std::string& choice, const torch::Device& probed,
                              int64_t threads) {
  if (choice == "cpu") return torch::kCPU;
  if (choice == "gpu") return probed;
  if (choice != "auto") {
    fail("--spectrum-device", "unknown device", "auto, cpu or gpu", choice,
         "leave it out: auto picks by the threads");
  }
  return probed.is_cuda() && threads >= kCpuSpectraMinThreads ? torch::Device(torch::kCPU) : probed;
}

namespace {

bool any_sums_on_cuda(const ProbeResult& probe) {
  for (const auto& m : probe.modules) {
    for (const auto* part : m.grad.sums()) {
      for (const auto& t : *part) {
        if (t.defined() && t.is_cuda()) return true;
      }
    }
  }
  return false;
}

// A module's sums gathered where the analysis runs, one module at a time (in parallel with the
// other modules' work when analysed on the CPU).
ShardGradients on_device(const ShardGradients& g, const torch::Device& device) {
  ShardGradients out = g;
  for (auto* part : out.sums()) {
    for (auto& t : *part) {
      if (t.defined() && t.device() != device) t = t.to(device);
    }
  }
  return out;
}

// The CPU analysing sums still on a GPU: one thread copies the modules over in order, a few ahead
// of the workers, so that the copies overlap their work and a finished module's memory serves a
// later copy (fresh pages cost more than the copy: 55 ms for 75 MB on an H200 host).
void analyse_fetching(const ProbeResult& probe, const std::vector<const InputSpectrum*>& input_of,
                      const SpectrumOptions& opts, size_t workers,
                      std::vector<ModuleSpectrum>& out) {
  const size_t n = out.size(), ahead = 2 * workers;
  std::vector<ShardGradients> fetched(n);
  std::mutex mu;
  std::condition_variable cv;
  size_t n_fetched = 0, n_done = 0;
  bool stop = false;
  std::exception_ptr copy_error;
  auto finish = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu);
    if (e && !copy_error) copy_error = e;
    stop = true;
    cv.notify_all();
  };
  std::thread copier([&] {
    try {
      for (size_t i = 0; i < n; ++i) {
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return stop || i < n_done + ahead; });
          if (stop) return;
        }
        ShardGradients g = on_device(probe.modules[i].grad, probe.device);
        std::lock_guard<std::mutex> lock(mu);
        fetched[i] = std::move(g);
        ++n_fetched;
        cv.notify_all();
      }
    } catch (...) {
      finish(std::current_exception());
    }
  });
  auto analyse = [&](size_t i) {
    ShardGradients g;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return stop || n_fetched > i; });
      if (n_fetched <= i) {  // stopped: a copy failed (its error), or another module's analysis
        if (copy_error) std::rethrow_exception(copy_error);
        return;
      }
      g = std::move(fetched[i]);
    }
    out[i] = analyse_module(g, *input_of[i], opts);
    std::lock_guard<std::mutex> lock(mu);
    ++n_done;
    cv.notify_all();
  };
  // A failed analysis leaves the copier able to reach every item still held (ahead > workers);
  // it stops here.
  try {
    SingleThreadedOps one_thread_each;
    parallel_items(n, workers, analyse);
  } catch (...) {
    finish(nullptr);
    copier.join();
    if (copy_error) std::rethrow_exception(copy_error);
    throw;
  }
  copier.join();
}

}  // namespace

std::vector<ModuleSpectrum> analyse_probe(const ProbeResult& probe, const SpectrumOptions& opts) {
  const double n_real = double(std::max<int64_t>(probe.n_tokens(), 1));
  std::map<const void*, InputSpectrum> inputs;  // one per shared input moment
  std::vector<const InputSpectrum*> input_of;
  for (const auto& m : probe.modules) {
    const void* key = m.moment_all.defined() ? m.moment_all.data_ptr() : nullptr;
    auto it = inputs.find(key);
    if (it == inputs.end()) {
      // A split model's moments wait on their module's device until analysed here.
      auto here = [&](const torch::Tensor& t) { return t.defined() ? t.to(probe.device) : t; };
      torch::Tensor cov = key ? here(m.moment_all) / n_real : torch::Tensor();  // (d_in, d_in)
      it = inputs.emplace(key, analyse_inputs(cov, here(m.moment_scored), opts)).first;
    }
    input_of.push_back(&it->second);
  }
  std::vector<ModuleSpectrum> out(probe.modules.size());
  // On a CPU, one module a thread: each module's decompositions are too small to keep many
  // threads busy, and on a GPU they queue on one device.
  const int64_t workers = probe.device.is_cpu() ? compute_threads() : 1;
  if (workers > 1 && out.size() > 1 && any_sums_on_cuda(probe)) {
    analyse_fetching(probe, input_of, opts, size_t(workers), out);
    return out;
  }
  auto analyse = [&](size_t i) {
    out[i] = analyse_module(on_device(probe.modules[i].grad, probe.device), *input_of[i], opts);
  };
  if (workers <= 1 || out.size() < 2) {
    for (size_t i = 0; i < out.size(); ++i) analyse(i);
    return out;
  }
  SingleThreadedOps one_thread_each;
  parallel_items(out.size(), size_t(workers), analyse);
  return out;
}

}  // namespace lorank
