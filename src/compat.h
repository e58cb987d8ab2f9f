// Differences between Debian's LibTorch 1.13 (CPU) and LibTorch 2.x (CUDA); nowhere else.
#pragma once

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include <torch/torch.h>
#include <torch/version.h>

#define LORANK_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||         \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace lorank::compat {

inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// LibTorch 1.13's C++ API has no device-name query; 2.x reaches it through the CUDA hooks.
std::string cuda_device_name(int index);

// cuDNN's fused attention builds a plan for every new (B, T) shape, ~0.15 s each. Length-sorted
// batches meet a new shape almost every pass: a bf16 probe ran 8x slower, and the first run of a
// sweep took 32 s against 13 s without cuDNN (later runs were level). For the guard's lifetime
// masked CUDA attention takes the memory-efficient kernel instead; the setting is restored after.
// LORANK_CUDNN_ATTENTION=1 keeps cuDNN (for A/B timing).
class NoPerShapeAttentionPlans {
 public:
  explicit NoPerShapeAttentionPlans(const torch::Device& device);
  ~NoPerShapeAttentionPlans();
  NoPerShapeAttentionPlans(const NoPerShapeAttentionPlans&) = delete;
  NoPerShapeAttentionPlans& operator=(const NoPerShapeAttentionPlans&) = delete;

 private:
  bool active_ = false;
};

// Whether masked CUDA attention may take cuDNN now (false where LibTorch has no cuDNN attention).
bool cudnn_attention_enabled();

// Free memory on a CUDA device in bytes; 0 on the CPU or without CUDA. Under a limit
// (limit_cuda_memory), what is left of the limit when that is less.
int64_t cuda_free_bytes(const torch::Device& device);

// The card's memory in bytes; 0 on the CPU or without CUDA.
int64_t cuda_total_bytes(const torch::Device& device);

// Caps the caching allocator at `bytes` on `device` (at most the card), as a card of that size
// would be: beyond it, allocations fail with LibTorch's out-of-memory error.
void limit_cuda_memory(const torch::Device& device, int64_t bytes);

// The allocator's peak reserved bytes on `device` since the process began; 0 on the CPU.
int64_t cuda_peak_bytes(const torch::Device& device);

// softmax(q kᵀ / sqrt(d) + mask) v. q: (B, H, T, D); k, v: (B, H, S, D) (kv heads already
// repeated). mask: bool, true = may attend, broadcastable to (B, H, T, S); undefined = causal.
// Every query row must allow at least one key (the caller keeps the diagonal) or softmax is NaN.
inline torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& mask) {
#if LORANK_TORCH_AT_LEAST(2, 0)
  // Fused kernels (flash / memory-efficient on CUDA) when available; backward uses the same kernel.
  NoPerShapeAttentionPlans no_plans(q.device());
  if (!mask.defined()) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, true);
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false);
#else
  // As HF's eager path: scores in the input dtype, softmax in fp32, then back.
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = torch::matmul(q, k.transpose(-2, -1)).to(torch::kFloat32) * scale;  // (B, H, T, S)
  torch::Tensor allowed = mask;
  if (!allowed.defined()) {
    allowed = torch::ones({q.size(-2), k.size(-2)}, q.options().dtype(torch::kBool)).tril();
  }
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores, -1).to(v.scalar_type());
  return torch::matmul(probs, v);  // (B, H, T, D)
#endif
}

// LibTorch 1.13's Allocator::allocate is const; 2.x's is not, and 2.x adds a pure copy_data. An
// allocator derives from this and implements allocate_bytes: whichever allocate the version
// declares virtual leads there.
struct AllocatorAdapter : c10::Allocator {
  virtual c10::DataPtr allocate_bytes(size_t n) const = 0;
  c10::DataPtr allocate(size_t n) const { return allocate_bytes(n); }
  c10::DataPtr allocate(size_t n) { return allocate_bytes(n); }
  void copy_data(void* dest, const void* src, size_t count) const { std::memcpy(dest, src, count); }
};

// Whether `e` is a CUDA out-of-memory error: LibTorch >= 1.13 throws c10::OutOfMemoryError from the
// caching allocator; kernels and older versions throw a c10::Error saying "out of memory".
bool is_out_of_memory(const c10::Error& e);
// The first line of that error (LibTorch appends allocator statistics and a C++ trace).
std::string out_of_memory_summary(const c10::Error& e);
// Throws what LibTorch throws when the CUDA allocator runs out (tests inject it on the CPU).
[[noreturn]] void throw_out_of_memory(const std::string& what);
// Waits for everything queued on `device`; nothing on the CPU. Tensors made on one stream (loading)
// must be complete before threads on their own streams read them.
void cuda_synchronize(const torch::Device& device);

// This thread's work on `device` goes to a stream from LibTorch's pool for the guard's lifetime,
// so that trainings in several threads overlap on one GPU instead of queueing on the default
// stream. Does nothing on the CPU.
class OwnCudaStream {
 public:
  explicit OwnCudaStream(const torch::Device& device);
  ~OwnCudaStream();
  OwnCudaStream(const OwnCudaStream&) = delete;
  OwnCudaStream& operator=(const OwnCudaStream&) = delete;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Returns cached, unused CUDA blocks to the driver; nothing without CUDA.
void empty_cuda_cache();

// Whether CUDA autocast is on in this thread (inside an AutocastGuard).
bool cuda_autocast_enabled();

// bf16 autocast on CUDA for the guard's lifetime, as `with torch.autocast("cuda", torch.bfloat16)`:
// leaving the outermost guard clears autocast's cast cache, so updated weights are cast afresh.
// Does nothing when `enabled` is false or `device` is not CUDA.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, const torch::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kHalf;
};

// TF32 tensor cores for fp32 cuBLAS products on CUDA for the guard's lifetime (10-bit mantissa
// inputs, fp32 accumulation). lorank keeps TF32 off everywhere else (fp32 parity needs it off), so
// the guard turns it off again rather than reading the setting, which LibTorch 2.9+ deprecates.
// Does nothing when `enabled` is false or `device` is not CUDA.
class Tf32Matmuls {
 public:
  Tf32Matmuls(bool enabled, const torch::Device& device);
  ~Tf32Matmuls();
  Tf32Matmuls(const Tf32Matmuls&) = delete;
  Tf32Matmuls& operator=(const Tf32Matmuls&) = delete;

 private:
  bool active_ = false;
};

}  // namespace lorank::compat
