#pragma once
/// \file context.cuh
/// The cuda policy's execution context: the one stream all its work is queued
/// on, the caching device allocator, the execution policy every Thrust call
/// takes, and the counters that make the cost of a step visible.
///
/// * **Stream.** Under nvcc every Thrust algorithm runs with
///   `thrust::cuda::par_nosync(allocator).on(stream)`: the host queues work
///   and goes on; it waits only where it needs a value (a download, a
///   reduction returned to the host). cuBLAS is bound to the same stream.
/// * **Memory.** Tensors, scratch buffers and Thrust's temporary storage come
///   from one `block_cache` of device memory (best fit with splitting, the
///   cpu allocator's design). A step after warm-up takes no new device memory
///   and never calls the device-synchronising `cudaFree`. Fresh storage is
///   uninitialised (`tensor::empty`); `tensor(shape)` fills it with zeros.
/// * **Counters** (`cuda_stats()`): launches, host synchronisations, cache
///   misses, uploads and downloads. They are counted at the same places on
///   the GPU and on Thrust's OpenMP system, so a test on a machine without a
///   GPU fails when a training step starts to allocate or to wait more.
///
/// On Thrust's OpenMP system (g++, THRUST_DEVICE_SYSTEM_OMP) "device" memory
/// is host memory, the policy is `thrust::omp::par(allocator)`, and nothing is
/// asynchronous; the counters still count what a GPU would do.

#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <thread>

#include "protoseg/backend/block_cache.hpp"
#include "protoseg/error.hpp"

#if defined(__CUDACC__) && THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#define PROTOSEG_CUDA_DEVICE 1
#include <cuda_runtime.h>
#include <thrust/system/cuda/execution_policy.h>
#else
#include <thrust/system/omp/execution_policy.h>
#endif

namespace protoseg {

/// What the cuda policy has done since the last `reset_cuda_stats()`.
struct cuda_counters {
  std::uint64_t launches = 0;     ///< Thrust algorithms, cuBLAS calls and device copies queued
  std::uint64_t syncs = 0;        ///< times the host waited for the device (downloads, host results)
  std::uint64_t allocations = 0;  ///< device allocations that missed the cache (cudaMalloc)
  std::uint64_t requests = 0;     ///< device allocations asked of the cache
  std::uint64_t uploads = 0;      ///< host-to-device copies
  std::uint64_t downloads = 0;    ///< device-to-host copies (each one also a sync)
  std::size_t bytes_in_use = 0;   ///< device bytes held by live tensors and buffers
  std::size_t peak_bytes = 0;     ///< largest bytes_in_use since the last reset
  std::size_t cached_bytes = 0;   ///< free device bytes the cache keeps for reuse
};

/// True when this translation unit runs the cuda policy on a GPU (nvcc),
/// false on Thrust's OpenMP system.
#if defined(PROTOSEG_CUDA_DEVICE)
inline constexpr bool cuda_on_gpu = true;
#else
inline constexpr bool cuda_on_gpu = false;
#endif

namespace backend::cuda_detail {

struct counter_state {
  std::atomic<std::uint64_t> launches{0}, syncs{0}, uploads{0}, downloads{0};
};
inline counter_state& counters() {
  static counter_state s;
  return s;
}
inline void note_launch(std::uint64_t n = 1) { counters().launches.fetch_add(n, std::memory_order_relaxed); }
inline void note_sync() { counters().syncs.fetch_add(1, std::memory_order_relaxed); }

#if defined(PROTOSEG_CUDA_DEVICE)
/// Raises a protoseg::error naming the call and CUDA's reason.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    detail::fail<error>("cuda: ", what, " failed: ", cudaGetErrorString(e), " (", cudaGetErrorName(e), ")");
  }
}

/// The stream of the cuda policy (created on first use, never destroyed:
/// tensors with static storage may still queue work after main()).
inline cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t st = nullptr;
    check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "creating the stream (is a CUDA device available?)");
    return st;
  }();
  return s;
}
#endif

/// Device memory for the block cache: cudaMalloc under nvcc (a failure is
/// std::bad_alloc, so the cache frees what it holds and tries again), aligned
/// host memory on the OpenMP system.
struct device_memory {
  static constexpr std::size_t alignment = 256;
  static constexpr bool cached = true;
  static void* allocate(std::size_t bytes) {
#if defined(PROTOSEG_CUDA_DEVICE)
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      throw std::bad_alloc();
    }
    check(e, "cudaMalloc (no usable CUDA device?)");
    return p;
#else
    return ::operator new(bytes, std::align_val_t{alignment});
#endif
  }
  static void deallocate(void* p) noexcept {
#if defined(PROTOSEG_CUDA_DEVICE)
    note_sync();  // cudaFree waits for the whole device
    (void)cudaFree(p);
#else
    ::operator delete(p, std::align_val_t{alignment});
#endif
  }
  /// Free bytes kept for reuse: everything (as PyTorch's caching allocator);
  /// `empty_cuda_cache()` gives them back.
  static std::size_t default_limit() noexcept { return ~std::size_t(0) / 2; }
};
using device_cache = detail::block_cache<device_memory>;

/// n bytes of uninitialised device memory from the cache; an out-of-memory
/// failure is a protoseg::error that says how much was asked and held.
inline void* device_allocate(std::size_t bytes) {
  try {
    return device_cache::instance().allocate(bytes);
  } catch (const std::bad_alloc&) {
    const auto s = device_cache::instance().stats();
    detail::fail<error>("cuda: out of device memory allocating ", bytes, " bytes (", s.in_use,
                        " bytes in use by tensors)");
  }
  return nullptr;
}
inline void device_free(void* p, std::size_t bytes) noexcept { device_cache::instance().deallocate(p, bytes); }

/// Thrust's temporary storage from the cache (thrust's allocator protocol).
struct temp_allocator {
  using value_type = char;
  char* allocate(std::ptrdiff_t n) { return static_cast<char*>(device_allocate(static_cast<std::size_t>(n))); }
  void deallocate(char* p, std::size_t n) noexcept { device_free(p, n); }
};

/// The execution policy of every Thrust call in the cuda backend (one launch
/// counted per call; algorithms that return a value to the host also call
/// note_sync()).
inline auto exec() {
  note_launch();
#if defined(PROTOSEG_CUDA_DEVICE)
  return thrust::cuda::par_nosync(temp_allocator{}).on(stream());
#else
  return thrust::omp::par(temp_allocator{});
#endif
}

/// A scratch buffer of n uninitialised elements from the device cache.
template <class T>
class scratch {
 public:
  explicit scratch(std::int64_t n) : n_(n > 0 ? static_cast<std::size_t>(n) : 0) {
    if (n_) p_ = static_cast<T*>(device_allocate(n_ * sizeof(T)));
  }
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
  ~scratch() {
    if (p_) device_free(p_, n_ * sizeof(T));
  }
  T* get() const noexcept { return p_; }
  thrust::device_ptr<T> begin() const noexcept { return thrust::device_pointer_cast(p_); }
  thrust::device_ptr<T> end() const noexcept { return thrust::device_pointer_cast(p_ + n_); }
  std::size_t size() const noexcept { return n_; }

 private:
  std::size_t n_ = 0;
  T* p_ = nullptr;
};

// ---- checks whose result stays on the device until the next host read ----------
//
// A check (a label out of range, say) is a kernel that writes the position of
// the first offence, or -1, into a slot of host-visible memory (mapped pinned
// memory on the GPU, so no copy is needed once the stream is done). In
// immediate mode (the default) the host waits for it at once, as before; in
// deferred mode (`cuda_deferred_checks`) it is read after the next
// synchronisation the host needs anyway (a download, cuda_synchronize), and
// a failed check raises then, with the message its caller would have given.
class check_slots {
 public:
  static constexpr std::size_t capacity = 1024;
  static check_slots& instance() {
    static check_slots* s = new check_slots();  // never destroyed, as the stream
    return *s;
  }
  std::atomic<int> deferred_depth{0};

  /// A free slot (the host pointer; under UVA the kernel writes it directly).
  std::int64_t* take() {
    std::int64_t* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (pending_.size() < capacity) p = slots_ + next_++ % capacity;
    }
    if (!p) {  // every slot waits: settle them first
      settle_after_sync();
      return take();
    }
    return p;
  }
  void defer(std::int64_t* slot, std::function<void(std::int64_t)> report) {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({slot, std::move(report)});
  }
  /// After a synchronisation: reads every pending slot; the first failed
  /// check raises (the others are dropped).
  void settle_after_sync() {
    std::vector<entry> todo;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      todo.swap(pending_);
    }
    for (auto& e : todo)
      if (*e.slot >= 0) {
        const std::int64_t pos = *e.slot;
        e.report(pos);  // throws
      }
  }

 private:
  struct entry {
    std::int64_t* slot;
    std::function<void(std::int64_t)> report;
  };
  check_slots() {
#if defined(PROTOSEG_CUDA_DEVICE)
    void* p = nullptr;
    check(cudaHostAlloc(&p, capacity * sizeof(std::int64_t), cudaHostAllocMapped), "cudaHostAlloc (check slots)");
    slots_ = static_cast<std::int64_t*>(p);
#else
    slots_ = new std::int64_t[capacity];
#endif
  }
  std::mutex mutex_;
  std::int64_t* slots_ = nullptr;
  std::size_t next_ = 0;
  std::vector<entry> pending_;
};

/// Runs `write(slot)` (queues a kernel that stores the first offending
/// position, or -1, in *slot) and calls report(position) when it fails: at
/// once (one sync) in immediate mode, after the next sync in deferred mode.
template <class Write>
void device_check(const Write& write, std::function<void(std::int64_t)> report) {
  auto& s = check_slots::instance();
  std::int64_t* slot = s.take();
  write(slot);
  if (s.deferred_depth.load() > 0) {
    s.defer(slot, std::move(report));
    return;
  }
  note_sync();  // immediate: wait for this check
#if defined(PROTOSEG_CUDA_DEVICE)
  check(cudaStreamSynchronize(stream()), "the queued device work");
#endif
  if (*slot >= 0) report(*slot);
}

/// Raw copies between host and device memory, counted.
inline void upload(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  counters().uploads.fetch_add(1, std::memory_order_relaxed);
  note_launch();
#if defined(PROTOSEG_CUDA_DEVICE)
  // From pageable memory the source is staged before the call returns, so
  // the caller may free it at once; the host does not wait for the device.
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "cudaMemcpyAsync (upload)");
#else
  std::memcpy(dst, src, bytes);
#endif
}
inline void download(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  counters().downloads.fetch_add(1, std::memory_order_relaxed);
  note_sync();
#if defined(PROTOSEG_CUDA_DEVICE)
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()), "cudaMemcpyAsync (download)");
  check(cudaStreamSynchronize(stream()), "the queued device work");
#else
  std::memcpy(dst, src, bytes);
#endif
  check_slots::instance().settle_after_sync();  // deferred checks raise here
}
inline void device_copy(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  note_launch();
#if defined(PROTOSEG_CUDA_DEVICE)
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()), "cudaMemcpyAsync (device copy)");
#else
  std::memmove(dst, src, bytes);
#endif
}

}  // namespace backend::cuda_detail

/// The cuda policy's counters since the last reset.
inline cuda_counters cuda_stats() {
  auto& c = backend::cuda_detail::counters();
  const auto m = backend::cuda_detail::device_cache::instance().stats();
  cuda_counters s;
  s.launches = c.launches.load();
  s.syncs = c.syncs.load();
  s.uploads = c.uploads.load();
  s.downloads = c.downloads.load();
  s.allocations = m.allocations;
  s.requests = m.requests;
  s.bytes_in_use = m.in_use;
  s.peak_bytes = m.peak;
  s.cached_bytes = m.cached;
  return s;
}
/// Zeroes the counters (the peak restarts from the bytes now in use).
inline void reset_cuda_stats() {
  auto& c = backend::cuda_detail::counters();
  c.launches = 0;
  c.syncs = 0;
  c.uploads = 0;
  c.downloads = 0;
  backend::cuda_detail::device_cache::instance().reset_counts();
}
/// Gives the free device memory the cache holds back to the device.
inline void empty_cuda_cache() { backend::cuda_detail::device_cache::instance().release(); }

/// Waits until all queued device work has finished, and raises any error a
/// kernel reported (a sync).
inline void cuda_synchronize() {
  backend::cuda_detail::note_sync();
#if defined(PROTOSEG_CUDA_DEVICE)
  backend::cuda_detail::check(cudaStreamSynchronize(backend::cuda_detail::stream()), "the queued device work");
#endif
  backend::cuda_detail::check_slots::instance().settle_after_sync();
}

/// While one lives, the cuda policy's input checks (label and target ranges)
/// do not wait for the device: a failed check raises at the next host read
/// (a download such as item() or to<cpu>(), or cuda_synchronize()) with the
/// message the cpu policy gives at once. The trainers hold one for the whole
/// run; without it each check costs one synchronisation. Hold one only where
/// inputs are validated before they reach the device (the trainers' data
/// sets check every label when they read it): until the error is raised,
/// the kernels after a failed check run on the bad input, and a label out of
/// range may be used as an index.
class cuda_deferred_checks {
 public:
  cuda_deferred_checks() { backend::cuda_detail::check_slots::instance().deferred_depth.fetch_add(1); }
  cuda_deferred_checks(const cuda_deferred_checks&) = delete;
  cuda_deferred_checks& operator=(const cuda_deferred_checks&) = delete;
  ~cuda_deferred_checks() { backend::cuda_detail::check_slots::instance().deferred_depth.fetch_sub(1); }
};

/// Throws a protoseg::error naming the cause when the cuda policy cannot run
/// here (no driver, no device); otherwise returns a description of the device.
inline std::string cuda_device_description() {
#if defined(PROTOSEG_CUDA_DEVICE)
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    detail::fail<error>("--device cuda: no usable CUDA device (", cudaGetErrorString(e), ")");
  }
  if (n == 0) detail::fail<error>("--device cuda: no CUDA device on this machine");
  int dev = 0, driver = 0;
  backend::cuda_detail::check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp p{};
  backend::cuda_detail::check(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
  (void)cudaDriverGetVersion(&driver);
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.totalGlobalMem >> 30) + " GiB, driver CUDA " + std::to_string(driver / 1000) + "." +
         std::to_string(driver % 1000 / 10) + ")";
#else
  return "Thrust's OpenMP system (no GPU: the cuda policy's code on " +
         std::to_string(std::thread::hardware_concurrency()) + " CPU threads, for testing)";
#endif
}

}  // namespace protoseg
