#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lorank {

// fn(i) for every i in [0, n_items), on up to n_threads threads (the caller's among them), taking
// `chunk` items at a time. The first exception stops the handing out of items and is rethrown here.
template <typename Fn>
void parallel_items(size_t n_items, size_t n_threads, Fn&& fn, size_t chunk = 1) {
  chunk = std::max<size_t>(1, chunk);
  const size_t n_chunks = (n_items + chunk - 1) / chunk;
  n_threads = std::max<size_t>(1, std::min(n_threads, n_chunks));
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  auto work = [&] {
    try {
      for (size_t begin; (begin = next.fetch_add(chunk)) < n_items;) {
        for (size_t i = begin; i < std::min(n_items, begin + chunk); ++i) fn(i);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
      next = n_items;
    }
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < n_threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& h : helpers) h.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace lorank
