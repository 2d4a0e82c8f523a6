#pragma once
/// \file traits.cuh
/// `backend_traits<cuda>`: storage in `thrust::device_vector`, copies through
/// Thrust. With nvcc the memory is on the GPU; with g++ and
/// THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP it is host memory that
/// Thrust's OpenMP system works on, so the backend is testable without a GPU.

#include <thrust/copy.h>
#include <thrust/device_ptr.h>
#include <thrust/device_vector.h>

#include <cstddef>
#include <memory>
#include <utility>

#include "protoseg/backend/policy.hpp"

namespace protoseg {

template <>
struct backend_traits<cuda> {
  static constexpr bool host_accessible = false;
  template <class T>
  using storage = thrust::device_vector<T>;

  template <class T>
  static std::pair<std::shared_ptr<void>, T*> allocate(std::size_t n) {
    auto v = std::make_shared<storage<T>>(n);
    T* p = thrust::raw_pointer_cast(v->data());
    return {std::shared_ptr<void>(std::move(v)), p};
  }
  template <class T>
  static void copy_from_host(T* dst, const T* src, std::size_t n) {
    if (n) thrust::copy(src, src + n, thrust::device_pointer_cast(dst));
  }
  template <class T>
  static void copy_to_host(T* dst, const T* src, std::size_t n) {
    if (n) thrust::copy(thrust::device_pointer_cast(src), thrust::device_pointer_cast(src) + n, dst);
  }
  template <class T>
  static void copy_same(T* dst, const T* src, std::size_t n) {
    if (n)
      thrust::copy(thrust::device_pointer_cast(src), thrust::device_pointer_cast(src) + n,
                   thrust::device_pointer_cast(dst));
  }
  template <class T>
  static T read(const T* p) {
    return *thrust::device_pointer_cast(p);
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
