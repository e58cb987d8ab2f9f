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

}  // namespace lorank::compat
