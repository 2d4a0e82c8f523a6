#pragma once
/// \file elementwise.cuh
/// cuda elementwise primitives on Thrust: fill, iota, map, zip, broadcasting zip.

#include <thrust/fill.h>
#include <thrust/tabulate.h>
#include <thrust/transform.h>

#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct iota_fn {
  T start, step;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const { return static_cast<T>(start + static_cast<T>(i) * step); }
};
template <class T, class F>
struct broadcast_fn {
  broadcast_geometry g;
  const T* a;
  const T* b;
  F f;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    std::int64_t oa = 0, ob = 0;
    for (int d = g.rank - 1; d >= 0; --d) {
      const std::int64_t idx = i % g.out_shape[d];
      i /= g.out_shape[d];
      oa += idx * g.a_stride[d];
      ob += idx * g.b_stride[d];
    }
    return f(a[oa], b[ob]);
  }
};
}  // namespace cuda_detail

template <>
struct elementwise<cuda> {
  template <class T>
  static void fill(T* out, std::int64_t n, T value) {
    if (n > 0) thrust::fill_n(cuda_detail::exec(), cuda_detail::dp(out), n, value);
  }
  template <class T>
  static void iota(T* out, std::int64_t n, T start, T step) {
    if (n > 0) thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(out), cuda_detail::dp(out) + n, cuda_detail::iota_fn<T>{start, step});
  }
  template <class T, class U, class F>
  static void map(const T* in, U* out, std::int64_t n, F f) {
    if (n > 0) thrust::transform(cuda_detail::exec(), cuda_detail::dp(in), cuda_detail::dp(in) + n, cuda_detail::dp(out), f);
  }
  template <class T, class F>
  static void zip(const T* a, const T* b, T* out, std::int64_t n, F f) {
    if (n > 0)
      thrust::transform(cuda_detail::exec(), cuda_detail::dp(a), cuda_detail::dp(a) + n, cuda_detail::dp(b), cuda_detail::dp(out), f);
  }
  template <class T, class F>
  static void zip_broadcast(const broadcast_geometry& g, const T* a, const T* b, T* out, F f) {
    thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(out), cuda_detail::dp(out) + g.numel, cuda_detail::broadcast_fn<T, F>{g, a, b, f});
  }
};

}  // namespace protoseg::backend
