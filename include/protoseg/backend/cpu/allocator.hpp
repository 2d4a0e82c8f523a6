#pragma once
/// \file allocator.hpp
/// A caching allocator for cpu tensor storage. Training repeats the same
/// shapes every step; returning freed blocks to the C library makes large
/// blocks round-trip through mmap/munmap and page faults on every operation.
///
/// * Small blocks (under 1 MiB) are kept per exact size and handed out again.
/// * Large blocks are carved from segments: best fit, split when the rest is
///   large, and merged with free neighbours when freed. A step whose large
///   tensors differ in size from one operation to the next reuses the same
///   memory, so the resident set stays near the peak of live tensors instead
///   of holding one block per size ever seen.
///
/// Free memory held is capped (`set_cpu_cache_limit`); above the cap, free
/// small blocks and wholly free segments go back to the C library. Under
/// AddressSanitizer the cache is off so that use-after-free is caught.

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <new>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace protoseg {

namespace detail {

class host_block_cache {
 public:
  static constexpr std::size_t alignment = 64;
  /// Blocks of at least this many bytes come from segments.
  static constexpr std::size_t large_block = std::size_t(1) << 20;

  static host_block_cache& instance() {
    // Never destroyed: tensors with static storage may be freed after main().
    static host_block_cache* cache = new host_block_cache();
    return *cache;
  }

  void* allocate(std::size_t bytes) {
    bytes = round(bytes);
    if (!enabled()) return raw_new(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes >= large_block) return allocate_large(bytes);
    auto it = free_.find(bytes);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= bytes;
      return p;
    }
    return raw_new(bytes);
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    bytes = round(bytes);
    if (!enabled()) return raw_delete(p);
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes >= large_block) return deallocate_large(static_cast<char*>(p));
    if (cached_ + bytes <= limit_) {
      try {
        free_[bytes].push_back(p);
        cached_ += bytes;
        return;
      } catch (...) {  // no memory for the bookkeeping: free the block instead
      }
    }
    raw_delete(p);
  }

  void release() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    release_small();
    trim(0);
  }

  void set_limit(std::size_t bytes) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_ = bytes;
    if (cached_ > limit_) {
      release_small();
      trim(limit_);
    }
  }
  /// Free bytes held: cached small blocks and free parts of segments.
  std::size_t cached_bytes() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  /// Bytes of all segments (large blocks in use and free).
  std::size_t segment_bytes() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return segments_;
  }

 private:
  // A large block: a piece of a segment. The blocks of one segment cover it
  // and are linked in address order; `prev == next == nullptr` means the
  // block is the whole segment.
  struct block {
    char* ptr;
    std::size_t size;
    bool free;
    block* prev;
    block* next;
  };

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
  static void* raw_new(std::size_t bytes) { return ::operator new(bytes, std::align_val_t{alignment}); }
  static void raw_delete(void* p) noexcept { ::operator delete(p, std::align_val_t{alignment}); }

  void* allocate_large(std::size_t bytes) {
    auto it = free_large_.lower_bound({bytes, nullptr});  // best fit
    block* b = nullptr;
    if (it != free_large_.end()) {
      b = blocks_.at(it->second);
      free_large_.erase(it);
      cached_ -= b->size;
    } else {
      // A new segment: first give back wholly free segments so that the
      // free memory held and the new segment stay within the limit.
      if (cached_ + bytes > limit_) trim(limit_ > bytes ? limit_ - bytes : 0);
      const std::size_t size = (bytes + segment_round - 1) / segment_round * segment_round;
      char* base = static_cast<char*>(raw_new(size));
      try {
        b = new block{base, size, false, nullptr, nullptr};
        blocks_.emplace(base, b);
      } catch (...) {
        delete b;
        raw_delete(base);
        throw;
      }
      segments_ += size;
    }
    b->free = false;
    if (b->size - bytes >= large_block) {  // split: the rest stays free
      block* rest = new block{b->ptr + bytes, b->size - bytes, true, b, b->next};
      if (b->next) b->next->prev = rest;
      b->next = rest;
      b->size = bytes;
      blocks_.emplace(rest->ptr, rest);
      free_large_.insert({rest->size, rest->ptr});
      cached_ += rest->size;
    }
    return b->ptr;
  }

  void deallocate_large(char* p) noexcept {
    auto found = blocks_.find(p);
    if (found == blocks_.end()) return raw_delete(p);  // not from a segment
    block* b = found->second;
    b->free = true;
    cached_ += b->size;
    auto absorb = [&](block* left, block* right) {  // right merges into left; both free
      free_large_.erase({right->size, right->ptr});
      left->size += right->size;
      left->next = right->next;
      if (right->next) right->next->prev = left;
      blocks_.erase(right->ptr);
      delete right;
    };
    if (b->next && b->next->free) absorb(b, b->next);
    if (b->prev && b->prev->free) {
      block* left = b->prev;
      free_large_.erase({left->size, left->ptr});
      absorb(left, b);
      b = left;
    }
    free_large_.insert({b->size, b->ptr});
    if (cached_ > limit_) trim(limit_);
  }

  // Gives wholly free segments back, largest first, until the free memory
  // held is at most `target` or none is left.
  void trim(std::size_t target) noexcept {
    for (auto it = free_large_.end(); cached_ > target && it != free_large_.begin();) {
      --it;
      block* b = blocks_.at(it->second);
      if (b->prev || b->next) continue;  // part of a segment in use
      cached_ -= b->size;
      segments_ -= b->size;
      blocks_.erase(b->ptr);
      raw_delete(b->ptr);
      delete b;
      it = free_large_.erase(it);
    }
  }

  void release_small() noexcept {
    for (auto& [bytes, list] : free_) {
      for (void* p : list) raw_delete(p);
      cached_ -= bytes * list.size();
    }
    free_.clear();
  }

  static constexpr std::size_t segment_round = std::size_t(2) << 20;

  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;     // small blocks by size
  std::set<std::pair<std::size_t, char*>> free_large_;            // free large blocks by (size, address)
  std::unordered_map<char*, block*> blocks_;                      // every large block by address
  std::size_t cached_ = 0, segments_ = 0;
  std::size_t limit_ = default_limit();
};

}  // namespace detail

/// Free bytes the cpu allocator holds for reuse.
inline std::size_t cpu_cached_bytes() { return detail::host_block_cache::instance().cached_bytes(); }
/// Caps the free bytes the cpu allocator holds (0: give back all it can).
inline void set_cpu_cache_limit(std::size_t bytes) { detail::host_block_cache::instance().set_limit(bytes); }
/// Gives every free block and wholly free segment back to the C library.
inline void empty_cpu_cache() { detail::host_block_cache::instance().release(); }

}  // namespace protoseg
