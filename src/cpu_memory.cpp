#include "cpu_memory.h"

#include <c10/core/CPUAllocator.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "compat.h"
#include "error.h"

namespace lorank {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kPage = 4096;
constexpr size_t kLarge = size_t(32) << 20;  // glibc's largest heap block (M_MMAP_THRESHOLD's cap)
constexpr size_t kAlignment = 64;            // LibTorch's CPU alignment (vectorised kernels)

size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}
uintptr_t round_down(uintptr_t n, size_t to) {
  return n / to * to;
}

int64_t default_cap() {
  const int64_t physical = int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGESIZE));
  return std::min<int64_t>(physical > 0 ? physical / 16 : 0, int64_t(1) << 30);
}

// `bytes` (whole pages) starting on a 2 MiB boundary, so that each whole 2 MiB of it can be one
// huge page; nullptr when the kernel refuses.
char* map_huge(size_t bytes) {
  const size_t span = bytes + kHugePage;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = round_up(uintptr_t(raw), kHugePage);
  const size_t head = start - uintptr_t(raw), tail = span - head - bytes;
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap(reinterpret_cast<char*>(start) + bytes, tail);
  madvise(reinterpret_cast<void*>(start), bytes, MADV_HUGEPAGE);  // no effect where THP is off
  return reinterpret_cast<char*>(start);
}

// One deleter for every block (LibTorch's raw_deallocate needs it): large blocks are found by
// address, anything else came from malloc.
class BlockCache final : public compat::AllocatorAdapter {
 public:
  c10::DataPtr allocate_bytes(size_t n) const override {
    void* p = n == 0 ? nullptr : n < kLarge ? instance().from_heap(n) : instance().large(n);
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void set_cap(int64_t cap) {
    std::lock_guard<std::mutex> lock(mu_);
    cap_ = cap < 0 ? default_cap() : cap;
    trim();
  }
  CpuBlockCacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CpuBlockCacheStats s = stats_;
    s.installed = true;
    return s;
  }
  static BlockCache& instance() {
    static BlockCache* cache = new BlockCache;  // never destroyed: tensors outlive statics
    return *cache;
  }

 private:
  using FreeMap = std::multimap<size_t, char*>;  // free large blocks by size

  void* from_heap(size_t n) {
    void* p = nullptr;
    if (posix_memalign(&p, kAlignment, n) != 0) out_of_memory(n);
    advise_heap_growth();
    return p;
  }

  // The main heap's growth since the last look, advised before the tensor in it is written (only
  // glibc's chunk headers are); advised stretches merge into one kernel mapping.
  void advise_heap_growth() {
    const uintptr_t top = uintptr_t(sbrk(0));  // glibc's cached break: no system call
    if (top <= heap_top_.load(std::memory_order_relaxed)) return;
    std::lock_guard<std::mutex> lock(mu_);
    const uintptr_t seen = heap_top_.load(std::memory_order_relaxed);
    if (top <= seen) return;
    const uintptr_t from = round_down(seen == 0 ? top : seen, kPage);
    if (top > from) madvise(reinterpret_cast<void*>(from), top - from, MADV_HUGEPAGE);
    heap_top_.store(top, std::memory_order_relaxed);
  }

  void* large(size_t n) {
    const size_t need = round_up(n, kPage);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.lower_bound(need);  // the smallest that fits, if it wastes at most half
    char* p = nullptr;
    size_t bytes = need;
    if (it != free_.end() && it->first - need <= need / 2) {
      bytes = it->first;
      p = it->second;
      free_.erase(it);
      stats_.cached_bytes -= int64_t(bytes);
      ++stats_.hits;
    } else {
      p = map_huge(need);
      if (!p) {  // what the cache holds may be what is missing
        while (!free_.empty()) unmap_largest();
        p = map_huge(need);
      }
      if (!p) out_of_memory(n);
      ++stats_.misses;
    }
    live_[p] = bytes;
    stats_.live_bytes += int64_t(bytes);
    return p;
  }

  static void release(void* p) {
    if (!p) return;
    BlockCache& c = instance();
    {
      std::lock_guard<std::mutex> lock(c.mu_);
      auto it = c.live_.find(p);
      if (it != c.live_.end()) {
        c.free_.insert({it->second, static_cast<char*>(p)});
        c.stats_.cached_bytes += int64_t(it->second);
        c.stats_.live_bytes -= int64_t(it->second);
        c.live_.erase(it);
        c.trim();
        return;
      }
    }
    std::free(p);
  }

  void trim() {  // under mu_
    while (!free_.empty() && stats_.cached_bytes > cap_) unmap_largest();
  }
  void unmap_largest() {  // under mu_
    auto last = std::prev(free_.end());
    munmap(last->second, last->first);
    stats_.cached_bytes -= int64_t(last->first);
    free_.erase(last);
  }

  [[noreturn]] static void out_of_memory(size_t n) {
    fail("CPU memory", "cannot allocate " + std::to_string((n + (1 << 20) - 1) >> 20) + " MiB", "",
         "",
         "free memory, or ask for less: a smaller --batch or --max-len (train, sweep), "
         "--batch-tokens or --max-tokens (recommend, probe)");
  }

  std::mutex mu_;
  std::unordered_map<void*, size_t> live_;  // large blocks handed out, by address
  FreeMap free_;
  std::atomic<uintptr_t> heap_top_{0};
  int64_t cap_ = default_cap();
  CpuBlockCacheStats stats_;
};

bool cache_wanted() {
  const char* v = std::getenv("LORANK_CPU_BLOCK_CACHE");
  return !(v && std::string(v) == "0");
}

std::once_flag g_install;
bool g_installed = false;

}  // namespace

void use_cpu_block_cache(int64_t max_cached_bytes) {
  std::call_once(g_install, [] {
    if (!cache_wanted()) return;
    mallopt(M_MMAP_THRESHOLD, int(kLarge));
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    c10::SetCPUAllocator(&BlockCache::instance(), /*priority=*/1);
    g_installed = c10::GetCPUAllocator() == &BlockCache::instance();
  });
  if (g_installed) BlockCache::instance().set_cap(max_cached_bytes);
}

CpuBlockCacheStats cpu_block_cache_stats() {
  return g_installed ? BlockCache::instance().stats() : CpuBlockCacheStats{};
}

}  // namespace lorank
