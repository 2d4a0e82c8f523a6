#pragma once
/// \file allocator.hpp
/// The cpu policy's caching allocator: a `block_cache` over aligned host
/// memory (see backend/block_cache.hpp for how blocks are kept and reused).
/// Under AddressSanitizer the cache is off so that use-after-free is caught.

#include <algorithm>
#include <cstddef>
#include <new>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "protoseg/backend/block_cache.hpp"

namespace protoseg {

namespace detail {

/// 64-byte aligned host memory from operator new.
struct host_memory {
  static constexpr std::size_t alignment = 64;
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool cached = false;
#else
  static constexpr bool cached = true;
#endif
  static void* allocate(std::size_t bytes) { return ::operator new(bytes, std::align_val_t{alignment}); }
  static void deallocate(void* p) noexcept { ::operator delete(p, std::align_val_t{alignment}); }
  // A quarter of the physical memory, at least 1 GiB: a step that allocates
  // blocks of a gigabyte (the N x C*M scores of 847 classes) must be able to
  // keep them, or it page-faults them in again on every step (3.5x slower).
  static std::size_t default_limit() noexcept {
    std::size_t limit = std::size_t(1) << 30;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0)
      limit = std::max(limit, static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 4);
#endif
    return limit;
  }
};

using host_block_cache = block_cache<host_memory>;

}  // namespace detail
/// Free bytes the cpu allocator holds for reuse.
inline std::size_t cpu_cached_bytes() { return detail::host_block_cache::instance().cached_bytes(); }
/// Caps the free bytes the cpu allocator holds (0: give back all it can).
inline void set_cpu_cache_limit(std::size_t bytes) { detail::host_block_cache::instance().set_limit(bytes); }
/// Gives every free block and wholly free segment back to the C library.
inline void empty_cpu_cache() { detail::host_block_cache::instance().release(); }

}  // namespace protoseg
