// Differences between Debian's LibTorch 1.13 (CPU) and LibTorch 2.x (CUDA); nowhere else.
#pragma once

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

}  // namespace lorank::compat
