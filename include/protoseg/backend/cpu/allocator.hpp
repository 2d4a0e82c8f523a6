#pragma once
/// \file allocator.hpp
/// A caching allocator for cpu tensor storage. Training repeats the same
/// shapes every step; returning freed blocks to the C library makes large
/// blocks round-trip through mmap/munmap and page faults on every operation.
/// Freed blocks are kept per size and handed out again, up to a byte limit.
/// Under AddressSanitizer the cache is off so that use-after-free is caught.

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace protoseg {

namespace detail {

class host_block_cache {
 public:
  static constexpr std::size_t alignment = 64;

  static host_block_cache& instance() {
    // Never destroyed: tensors with static storage may be freed after main().
    static host_block_cache* cache = new host_block_cache();
    return *cache;
  }

  void* allocate(std::size_t bytes) {
    bytes = round(bytes);
    if (enabled()) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    return ::operator new(bytes, std::align_val_t{alignment});
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    bytes = round(bytes);
    if (enabled()) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= limit_) {
        try {
          free_[bytes].push_back(p);
          cached_ += bytes;
          return;
        } catch (...) {  // no memory for the bookkeeping: free the block instead
        }
      }
    }
    ::operator delete(p, std::align_val_t{alignment});
  }

  /// Frees every cached block.
  void release() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [bytes, blocks] : free_)
      for (void* p : blocks) ::operator delete(p, std::align_val_t{alignment});
    free_.clear();
    cached_ = 0;
  }

  void set_limit(std::size_t bytes) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = bytes;
    }
    if (bytes == 0) release();
  }
  std::size_t cached_bytes() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  host_block_cache() = default;
  // A quarter of the physical memory, at least 1 GiB: a step that allocates
  // blocks of a gigabyte (the N x C*M scores of 847 classes) must be able to
  // keep them, or it page-faults them in again on every step (3.5x slower).
  static std::size_t default_limit() noexcept {
    std::size_t limit = std::size_t(1) << 30;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) limit = std::max(limit, static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 4);
#endif
    return limit;
  }
  static std::size_t round(std::size_t bytes) noexcept { return (bytes + alignment - 1) / alignment * alignment; }
  static constexpr bool enabled() noexcept {
#if defined(__SANITIZE_ADDRESS__)
    return false;
#else
    return true;
#endif
  }

  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
  std::size_t limit_ = default_limit();
};

}  // namespace detail

/// Bytes of freed cpu tensor storage kept for reuse.
inline std::size_t cpu_cached_bytes() { return detail::host_block_cache::instance().cached_bytes(); }
/// Largest number of idle bytes the cpu allocator keeps (default a quarter
/// of the physical memory, at least 1 GiB);
/// 0 turns caching off and frees what is cached.
inline void set_cpu_cache_limit(std::size_t bytes) { detail::host_block_cache::instance().set_limit(bytes); }
/// Returns every cached block to the system.
inline void empty_cpu_cache() { detail::host_block_cache::instance().release(); }

}  // namespace protoseg
