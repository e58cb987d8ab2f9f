#include "runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "compat.h"
#include "error.h"
#include "progress.h"

namespace lorank {

namespace {

int64_t cuda_count() {
  return torch::cuda::is_available() ? int64_t(torch::cuda::device_count()) : 0;
}

torch::Device cuda_device(const std::string& option, const std::string& name) {
  const std::string index = name.size() > 5 ? name.substr(5) : "";
  const bool digits =
      name.compare(0, 5, "cuda:") == 0 && !index.empty() && index.size() < 4 &&
      std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (name != "cuda" && !digits)
    fail_usage(
        option, "unknown device '" + name + "'", "auto, cpu, cuda or cuda:N", name,
        "cuda:N counts from 0 (nvidia-smi lists the GPUs); auto takes the first GPU, else the CPU");
  if (cuda_count() == 0)
    fail(option + " " + name, "CUDA is not available to this build of lorank", "a CUDA device",
         "none", "build against a CUDA LibTorch (README: GPU build) or use --device cpu");
  const int64_t n = name == "cuda" ? 0 : std::stoll(index);
  if (n >= cuda_count()) {
    fail(option, "no such GPU", "cuda:0 to cuda:" + std::to_string(cuda_count() - 1), name,
         "nvidia-smi lists the GPUs; CUDA_VISIBLE_DEVICES renumbers them from 0");
  }
  return torch::Device(torch::kCUDA, c10::DeviceIndex(n));
}

// "cpu", "cuda" or "cuda:N"; `option` names the flag in errors.
torch::Device named_device(const std::string& option, const std::string& name) {
  return name == "cpu" ? torch::Device(torch::kCPU) : cuda_device(option, name);
}

}  // namespace

torch::Device resolve_device(const std::string& name) {
  if (name == "auto") return cuda_count() > 0 ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  return named_device("--device", name);
}

std::vector<torch::Device> resolve_devices(const std::string& list, const std::string& option) {
  std::vector<torch::Device> out;
  if (list == "all") {
    if (cuda_count() == 0) {
      fail(option + " all", "no CUDA device to use", "at least one GPU", "none",
           "list the devices (e.g. cpu), or build against a CUDA LibTorch");
    }
    for (int64_t i = 0; i < cuda_count(); ++i) out.emplace_back(torch::kCUDA, c10::DeviceIndex(i));
    return out;
  }
  size_t begin = 0;
  while (begin <= list.size()) {
    const size_t end = std::min(list.find(',', begin), list.size());
    const std::string name = list.substr(begin, end - begin);
    if (name.empty()) fail_usage(option, "an empty entry in the list", "cpu, cuda or cuda:N", list);
    const torch::Device d = named_device(option, name);
    if (std::find(out.begin(), out.end(), d) != out.end()) {
      fail_usage(option, "a device is listed twice", "each device once", name,
                 option == "--devices" ? "--jobs runs several trainings on one device"
                                       : "name each device once; its layers are already together");
    }
    out.push_back(d);
    begin = end + 1;
  }
  return out;
}

std::vector<torch::Device> resolve_model_devices(const std::string& name) {
  if (name == "all" || name.find(',') != std::string::npos)
    return resolve_devices(name, "--device");
  return {resolve_device(name)};
}

size_t gpus_for_weights(double weights_gib, double first_card_gib, size_t n_gpus) {
  if (n_gpus <= 1 || weights_gib <= kOneCardShare * first_card_gib)
    return std::min<size_t>(n_gpus, 1);
  return n_gpus;
}

torch::ScalarType resolve_dtype(const std::string& name, const torch::Device& device) {
  if (name == "auto") return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  if (name == "fp32") return torch::kFloat32;
  if (name == "bf16") return torch::kBFloat16;
  fail("--dtype", "unknown dtype '" + name + "'", "auto, fp32 or bf16", name);
}

namespace {

// OpenBLAS's thread controls when it is the BLAS in this process (Debian's LibTorch), else null.
using BlasThreadsSetter = void (*)(int);
using BlasThreadsGetter = int (*)();
BlasThreadsSetter openblas_setter() {
  return reinterpret_cast<BlasThreadsSetter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}
BlasThreadsGetter openblas_getter() {
  return reinterpret_cast<BlasThreadsGetter>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
}

}  // namespace

std::vector<std::string> drop_invalid_thread_env() {
  std::vector<std::string> warnings;
  for (const char* name : {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}) {
    const char* value = std::getenv(name);
    if (!value) continue;
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(value, &end, 10);
    // "4,2" (threads per nesting level) is OpenMP's too: LibTorch reads its first number.
    while (*end == ' ' || *end == '\t') ++end;
    if (end != value && (*end == '\0' || *end == ',') && errno == 0 && n > 0) continue;
    warnings.push_back(std::string(name) + "=" + value +
                       " is not a positive number of threads: ignored (--threads sets them)");
    ::unsetenv(name);
  }
  return warnings;
}

std::string address_space_warning() {
  struct rlimit lim {};
  if (::getrlimit(RLIMIT_AS, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return "";
  const double gib = double(lim.rlim_cur) / double(1ull << 30);
  if (gib >= 64) return "";
  return "the address space is limited to " + format_number("%.3g", gib) +
         " GiB (ulimit -v): LibTorch and OpenBLAS reserve more than they use, CUDA far more, and "
         "OpenBLAS can hang rather than fail when a reservation is refused; raise it (ulimit -v "
         "unlimited), or bound memory with a cgroup (systemd-run -p MemoryMax=..., docker "
         "--memory)";
}

// Under OpenBLAS the matmuls run on OpenBLAS's own threads; LibTorch's OpenMP threads beside them
// spin while it works (measured on 2 cores: 2 LibTorch threads made recommend and train 1.4-1.8x
// slower than 1). There, n goes to OpenBLAS and LibTorch keeps one thread.
void set_threads(int64_t n) {
  if (n <= 0) return;
  if (BlasThreadsSetter set_blas = openblas_setter()) {
    set_blas(int(n));
    at::set_num_threads(1);
    return;
  }
  at::set_num_threads(int(n));
}

SingleThreadedOps::SingleThreadedOps() : torch_before_(at::get_num_threads()) {
  if (BlasThreadsGetter get_blas = openblas_getter()) blas_before_ = get_blas();
  set_threads(1);
}

// Not set_threads(before): under OpenBLAS that pins LibTorch at 1, and a library caller's count
// must come back as it was.
SingleThreadedOps::~SingleThreadedOps() {
  if (BlasThreadsSetter set_blas = openblas_setter(); set_blas && blas_before_ > 0)
    set_blas(blas_before_);
  at::set_num_threads(torch_before_);
}

int64_t compute_threads() {
  if (BlasThreadsGetter get_blas = openblas_getter()) {
    return std::max<int64_t>(get_blas(), at::get_num_threads());
  }
  return at::get_num_threads();
}

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "fp32";
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "fp16";
    default: return c10::toString(t);
  }
}

namespace {

// The BLAS actually mapped into this process after a matmul ran: /proc/self/maps shows the real
// file behind Debian's libblas.so.3 alternative.
// The first mapped library that does the CPU's products (a CUDA build also maps cuBLAS).
std::string mapped_blas() {
  auto a = torch::ones({64, 64});
  (void)torch::mm(a, a);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto pos = line.find('/');
    if (pos == std::string::npos) continue;
    std::string path = line.substr(pos);
    if (is_cpu_blas_library(path)) return path;
  }
  return "";
}

}  // namespace

std::string describe_device(const torch::Device& device) {
  if (!device.is_cuda()) return device.str();
  return device.str() + " (" + compat::cuda_device_name(device.index()) + ")";
}

bool is_cpu_blas_library(const std::string& path) {
  const std::string name = path.substr(path.rfind('/') + 1);
  if (name.find("cublas") != std::string::npos || name.find("hipblas") != std::string::npos ||
      name.find("rocblas") != std::string::npos)
    return false;  // GPU libraries
  return path.find("blas") != std::string::npos || path.find("mkl") != std::string::npos;
}

RuntimeInfo runtime_info(const torch::Device& device) {
  RuntimeInfo info;
  info.torch_version = compat::torch_version();
  info.threads = compute_threads();
  info.device = describe_device(device);
  std::string path = mapped_blas();
  if (path.find("openblas") != std::string::npos) {
    info.blas = "OpenBLAS (" + path + ")";
  } else if (path.find("mkl") != std::string::npos) {
    info.blas = "MKL (" + path + ")";
  } else if (!path.empty()) {
    info.blas = "reference BLAS (" + path + ")";
    info.slow_blas = path.find("/blas/") != std::string::npos;
  } else {
    info.blas = at::hasMKL() ? "MKL (linked into LibTorch)" : "built into LibTorch";
  }
  return info;
}

}  // namespace lorank
