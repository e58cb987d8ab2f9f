// CPU tensors on memory that stays: through plain malloc, every training step and probe pass
// faulted its activations in again, 4 KiB at a time (glibc gives large blocks back to the kernel
// on free). On a 2-core VM a 30-step CPU training spent 46 of its 87 s in the kernel
// (bench/RESULTS.md).
#pragma once

#include <cstdint>

namespace lorank {

struct CpuBlockCacheStats {      // blocks of 32 MiB and more
  int64_t hits = 0, misses = 0;  // served from the cache, and newly mapped
  int64_t cached_bytes = 0;      // free, kept for reuse
  int64_t live_bytes = 0;        // in use
  bool installed = false;
};

// Makes lorank's allocator LibTorch's CPU allocator (once; later calls only set the cap). Blocks
// under 32 MiB come from glibc's heap, set to keep what is freed (M_TRIM_THRESHOLD 1 GiB, no mmap
// below 32 MiB, grown 64 MiB at a time) and advised MADV_HUGEPAGE as it grows. Blocks of 32 MiB
// and more get 2 MiB-aligned huge-page mappings of their own, kept after a free: a request takes
// the smallest that wastes at most half of it; past `max_cached_bytes` of free ones (-1: a
// sixteenth of physical memory, at most 1 GiB) the largest are unmapped.
// LORANK_CPU_BLOCK_CACHE=0 in the environment leaves LibTorch's allocator and malloc as they are.
void use_cpu_block_cache(int64_t max_cached_bytes = -1);
CpuBlockCacheStats cpu_block_cache_stats();

}  // namespace lorank
