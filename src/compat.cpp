#include "compat.h"

#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#ifdef LORANK_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace lorank::compat {

std::string cuda_device_name(int index) {
#ifdef LORANK_WITH_CUDA
  return at::cuda::getDeviceProperties(index)->name;
#else
  (void)index;
  return "CUDA";
#endif
}

namespace {
// Trainings in several threads nest these guards in any order: the first one in saves the setting,
// the last one out restores it.
std::mutex g_attention_mutex;
int g_attention_depth = 0;
bool g_attention_saved = true;
}  // namespace

NoPerShapeAttentionPlans::NoPerShapeAttentionPlans(const torch::Device& device) {
#if LORANK_TORCH_AT_LEAST(2, 3)
  static const bool keep = [] {
    const char* v = std::getenv("LORANK_CUDNN_ATTENTION");
    return v && std::string(v) == "1";
  }();
  if (!device.is_cuda() || keep) return;
  active_ = true;
  std::lock_guard<std::mutex> lock(g_attention_mutex);
  if (g_attention_depth++ == 0) {
    g_attention_saved = at::globalContext().userEnabledCuDNNSDP();
    at::globalContext().setSDPUseCuDNN(false);
  }
#else
  (void)device;
#endif
}

NoPerShapeAttentionPlans::~NoPerShapeAttentionPlans() {
#if LORANK_TORCH_AT_LEAST(2, 3)
  if (!active_) return;
  std::lock_guard<std::mutex> lock(g_attention_mutex);
  if (--g_attention_depth == 0) at::globalContext().setSDPUseCuDNN(g_attention_saved);
#endif
}

bool cudnn_attention_enabled() {
#if LORANK_TORCH_AT_LEAST(2, 3)
  return at::globalContext().userEnabledCuDNNSDP();
#else
  return false;
#endif
}

namespace {
int64_t g_cuda_limit = 0;  // bytes; 0: the whole card

#ifdef LORANK_WITH_CUDA
c10::DeviceIndex index_of(const torch::Device& device) {
  return device.index() < 0 ? c10::DeviceIndex(0) : device.index();
}
#endif
}  // namespace

int64_t cuda_free_bytes(const torch::Device& device) {
#ifdef LORANK_WITH_CUDA
  if (!device.is_cuda()) return 0;
  c10::cuda::CUDAGuard guard(index_of(device));
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
  if (g_cuda_limit <= 0) return int64_t(free);
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device));
  const int64_t left = g_cuda_limit - int64_t(stats.reserved_bytes[0].current);
  return std::max<int64_t>(0, std::min<int64_t>(int64_t(free), left));
#else
  (void)device;
  return 0;
#endif
}

int64_t cuda_total_bytes(const torch::Device& device) {
#ifdef LORANK_WITH_CUDA
  if (!device.is_cuda()) return 0;
  c10::cuda::CUDAGuard guard(index_of(device));
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
  return int64_t(total);
#else
  (void)device;
  return 0;
#endif
}

void limit_cuda_memory(const torch::Device& device, int64_t bytes) {
#ifdef LORANK_WITH_CUDA
  const int64_t total = cuda_total_bytes(device);
  if (bytes <= 0 || total <= 0) return;
  torch::empty({1}, torch::TensorOptions().device(device));  // the allocator starts on first use
  c10::cuda::CUDACachingAllocator::setMemoryFraction(std::min(1.0, double(bytes) / double(total)),
                                                     index_of(device));
  g_cuda_limit = bytes;
#else
  (void)device;
  (void)bytes;
#endif
}

int64_t cuda_peak_bytes(const torch::Device& device) {
#ifdef LORANK_WITH_CUDA
  if (!device.is_cuda()) return 0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device));
  return int64_t(stats.reserved_bytes[0].peak);
#else
  (void)device;
  return 0;
#endif
}

bool is_out_of_memory(const c10::Error& e) {
#if LORANK_TORCH_AT_LEAST(1, 13)
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
#endif
  return e.msg().find("out of memory") != std::string::npos;
}

void throw_out_of_memory(const std::string& what) {
#if LORANK_TORCH_AT_LEAST(1, 13)
  TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory. ", what);
#else
  TORCH_CHECK(false, "CUDA out of memory. ", what);
#endif
  std::abort();  // not reached: the checks above always throw
}

std::string out_of_memory_summary(const c10::Error& e) {
  return e.msg().substr(0, e.msg().find('\n'));
}

void cuda_synchronize(const torch::Device& device) {
#ifdef LORANK_WITH_CUDA
  if (!device.is_cuda()) return;
  c10::cuda::CUDAGuard guard(index_of(device));
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA synchronize failed: ") + cudaGetErrorString(err));
#else
  (void)device;
#endif
}

struct OwnCudaStream::State {
#ifdef LORANK_WITH_CUDA
  explicit State(const torch::Device& device)
      : guard(c10::cuda::getStreamFromPool(false, index_of(device))) {}
  c10::cuda::CUDAStreamGuard guard;
#endif
};

OwnCudaStream::OwnCudaStream(const torch::Device& device) {
#ifdef LORANK_WITH_CUDA
  if (device.is_cuda()) state_ = std::make_unique<State>(device);
#else
  (void)device;
#endif
}

OwnCudaStream::~OwnCudaStream() = default;

void empty_cuda_cache() {
#ifdef LORANK_WITH_CUDA
  c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

bool cuda_autocast_enabled() {
#if LORANK_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

AutocastGuard::AutocastGuard(bool enabled, const torch::Device& device) {
  if (!enabled || !device.is_cuda()) return;
  active_ = true;
  prev_enabled_ = cuda_autocast_enabled();
#if LORANK_TORCH_AT_LEAST(2, 4)
  prev_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
  prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_enabled(true);
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if LORANK_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
#else
  at::autocast::set_enabled(prev_enabled_);
  at::autocast::set_autocast_gpu_dtype(prev_dtype_);
#endif
}

Tf32Matmuls::Tf32Matmuls(bool enabled, const torch::Device& device) {
  if (!enabled || !device.is_cuda()) return;
  active_ = true;
  at::globalContext().setAllowTF32CuBLAS(true);
}

Tf32Matmuls::~Tf32Matmuls() {
  if (active_) at::globalContext().setAllowTF32CuBLAS(false);
}

}  // namespace lorank::compat
