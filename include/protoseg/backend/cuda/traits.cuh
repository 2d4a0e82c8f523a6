#pragma once
/// \file traits.cuh
/// `backend_traits<cuda>`: storage from the caching device allocator (see
/// context.cuh), copies on the policy's stream. With nvcc the memory is on the
/// GPU; with g++ and THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP it is host
/// memory that Thrust's OpenMP system works on, so the backend is testable
/// without a GPU.

#include <thrust/device_ptr.h>

#include <cstddef>
#include <memory>
#include <utility>

#include "protoseg/backend/cuda/context.cuh"
#include "protoseg/backend/policy.hpp"

namespace protoseg {

template <>
struct backend_traits<cuda> {
  static constexpr bool host_accessible = false;

  /// n uninitialised elements of device memory; the owner gives them back to
  /// the cache (no device synchronisation, no cudaFree).
  template <class T>
  static std::pair<std::shared_ptr<void>, T*> allocate(std::size_t n) {
    if (n == 0) return {std::shared_ptr<void>(), nullptr};
    const std::size_t bytes = n * sizeof(T);
    void* p = backend::cuda_detail::device_allocate(bytes);
    try {
      std::shared_ptr<void> owner(p, [bytes](void* q) { backend::cuda_detail::device_free(q, bytes); });
      return {std::move(owner), static_cast<T*>(p)};
    } catch (...) {
      backend::cuda_detail::device_free(p, bytes);
      throw;
    }
  }
  template <class T>
  static void copy_from_host(T* dst, const T* src, std::size_t n) {
    backend::cuda_detail::upload(dst, src, n * sizeof(T));
  }
  template <class T>
  static void copy_to_host(T* dst, const T* src, std::size_t n) {
    backend::cuda_detail::download(dst, src, n * sizeof(T));
  }
  template <class T>
  static void copy_same(T* dst, const T* src, std::size_t n) {
    backend::cuda_detail::device_copy(dst, src, n * sizeof(T));
  }
  template <class T>
  static T read(const T* p) {
    T v;
    backend::cuda_detail::download(&v, p, sizeof(T));
    return v;
  }
};

namespace backend::cuda_detail {
template <class T>
thrust::device_ptr<T> dp(T* p) {
  return thrust::device_pointer_cast(p);
}
template <class T>
thrust::device_ptr<const T> dp(const T* p) {
  return thrust::device_pointer_cast(p);
}
}  // namespace backend::cuda_detail

}  // namespace protoseg
