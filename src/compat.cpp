#include "compat.h"

#ifdef LORANK_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
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

}  // namespace lorank::compat
