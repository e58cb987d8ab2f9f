// Where lorank computes: device and dtype choice, and which BLAS the CPU path really runs on.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace lorank {

// "cpu", or "cuda:0 (NVIDIA H200)".
std::string describe_device(const torch::Device& device);
// Whether a mapped library's path is a CPU BLAS (OpenBLAS, MKL, the reference BLAS), not cuBLAS.
bool is_cpu_blas_library(const std::string& path);

struct RuntimeInfo {
  std::string torch_version;
  std::string device;  // "cpu" or "cuda:0 (NVIDIA H200)"
  std::string blas;    // e.g. "OpenBLAS (/usr/lib/.../openblas-pthread/libblas.so.3)"
  bool slow_blas = false;  // the reference BLAS: about 6x slower end to end
  int64_t threads = 0;
};

// name: "auto" (CUDA when available), "cpu", "cuda", "cuda:N". Throws when CUDA is asked but absent.
torch::Device resolve_device(const std::string& name);
// A comma-separated list of those ("cpu", "cuda", "cuda:N"), or "all": every CUDA device.
// `option` names the flag in errors.
std::vector<torch::Device> resolve_devices(const std::string& list,
                                           const std::string& option = "--devices");
// --device of a subcommand that loads the model: one device as resolve_device, or a list (or
// "all") whose devices the model's layers are split over.
std::vector<torch::Device> resolve_model_devices(const std::string& name);
// GPUs `--device auto` splits a model over: 1 while its weights take at most kOneCardShare of the
// first card (the rest holds activations and the probe's sums), else every one of n_gpus.
constexpr double kOneCardShare = 0.8;
size_t gpus_for_weights(double weights_gib, double first_card_gib, size_t n_gpus);
// name: "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16".
torch::ScalarType resolve_dtype(const std::string& name, const torch::Device& device);
// Unsets OMP_NUM_THREADS and MKL_NUM_THREADS unless they start with a positive integer, returning a
// warning for each: LibTorch would print its own with a C++ backtrace, then ignore them.
std::vector<std::string> drop_invalid_thread_env();
// A warning when `ulimit -v` bounds the address space below what LibTorch may reserve; else "".
std::string address_space_warning();
void set_threads(int64_t n);  // 0 leaves LibTorch's default; under OpenBLAS, OpenBLAS's threads
int64_t compute_threads();    // the threads that multiply: OpenBLAS's where it is the BLAS

// One compute thread per operation while it lives, for many small operations run side by side on
// threads of their own; the count before it comes back after.
class SingleThreadedOps {
 public:
  SingleThreadedOps();
  ~SingleThreadedOps();  // LibTorch's and OpenBLAS's counts each as they were
  SingleThreadedOps(const SingleThreadedOps&) = delete;
  SingleThreadedOps& operator=(const SingleThreadedOps&) = delete;

 private:
  int torch_before_ = 1, blas_before_ = 0;
};
RuntimeInfo runtime_info(const torch::Device& device);
std::string dtype_name(torch::ScalarType t);

}  // namespace lorank
