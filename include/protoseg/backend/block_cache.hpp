#pragma once
/// \file block_cache.hpp
/// A caching allocator over any kind of memory (host memory for the cpu
/// policy, device memory for the cuda policy). Training repeats the same
/// shapes every step; giving freed blocks back to the system allocator makes
/// large blocks round-trip through mmap/munmap and page faults (host) or
/// cudaMalloc and a device-synchronising cudaFree (GPU) on every operation.
///
/// * Small blocks (under 1 MiB) are kept per exact size and handed out again.
/// * Large blocks are carved from segments: best fit, split when the rest is
///   large, and merged with free neighbours when freed. A step whose large
///   tensors differ in size from one operation to the next reuses the same
///   memory, so the footprint stays near the peak of live tensors instead of
///   holding one block per size ever seen.
///
/// Free memory held is capped (`set_limit`); above the cap, free small blocks
/// and wholly free segments go back to the system. The cache never touches
/// the memory it manages (its bookkeeping lives on the host), so the same
/// code serves device memory. `Memory` provides:
///
///     static constexpr std::size_t alignment;
///     static constexpr bool cached;              // false: pass every call through
///     static void* allocate(std::size_t bytes);  // throws std::bad_alloc
///     static void deallocate(void* p) noexcept;
///     static std::size_t default_limit() noexcept;
///
/// With one stream (the cuda policy's), a block given back while kernels that
/// use it are still queued can be handed out at once: the next user's work is
/// queued behind them.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

namespace protoseg::detail {


template <class Memory>
class block_cache {
 public:
  static constexpr std::size_t alignment = Memory::alignment;
  /// Blocks of at least this many bytes come from segments.
  static constexpr std::size_t large_block = std::size_t(1) << 20;

  static block_cache& instance() {
    // Never destroyed: tensors with static storage may be freed after main().
    static block_cache* cache = new block_cache();
    return *cache;
  }

  void* allocate(std::size_t bytes) {
    bytes = round(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    ++requests_;
    void* p = allocate_locked(bytes);
    in_use_ += bytes;
    peak_ = std::max(peak_, in_use_);
    return p;
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    bytes = round(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    in_use_ -= bytes;
    if (!enabled()) return raw_delete(p);
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
  /// What the cache has done since it was made (or `reset_counts`).
  struct counts {
    std::uint64_t requests = 0;     ///< allocations asked for
    std::uint64_t allocations = 0;  ///< of them, taken from the memory's own allocator (cache misses)
    std::size_t in_use = 0;         ///< bytes handed out and not given back
    std::size_t peak = 0;           ///< largest `in_use` since the last reset
    std::size_t cached = 0;         ///< free bytes held for reuse
  };
  counts stats() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return {requests_, raw_allocations_, in_use_, peak_, cached_};
  }
  void reset_counts() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    requests_ = raw_allocations_ = 0;
    peak_ = in_use_;
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

  block_cache() = default;
  static std::size_t round(std::size_t bytes) noexcept { return (bytes + alignment - 1) / alignment * alignment; }
  static constexpr bool enabled() noexcept { return Memory::cached; }
  // A miss: memory from the memory's own allocator. When that fails, every
  // free block goes back and the request is tried once more.
  void* raw_new(std::size_t bytes) {
    ++raw_allocations_;
    try {
      return Memory::allocate(bytes);
    } catch (const std::bad_alloc&) {
      release_small();
      trim(0);
      return Memory::allocate(bytes);
    }
  }
  static void raw_delete(void* p) noexcept { Memory::deallocate(p); }

  void* allocate_locked(std::size_t bytes) {
    if (!enabled()) return raw_new(bytes);
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
  std::size_t cached_ = 0, segments_ = 0, in_use_ = 0, peak_ = 0;
  std::uint64_t requests_ = 0, raw_allocations_ = 0;
  std::size_t limit_ = Memory::default_limit();
};

}  // namespace protoseg::detail
