#pragma once
/// \file reduction.cuh
/// cuda reductions along the middle axis of an (outer, n, inner) view.

#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/reduce.h>
#include <thrust/tabulate.h>
#include <thrust/transform_reduce.h>

#include <cstdint>
#include <type_traits>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/functors.hpp"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
struct to_double_fn {
  PROTOSEG_HOST_DEVICE double operator()(float v) const { return v; }
};
template <class T, class F>
struct reduce_column_fn {
  const T* in;
  std::int64_t n, inner;
  T init;
  F f;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t j) const {
    const std::int64_t o = j / inner, i = j % inner;
    const T* p = in + o * n * inner + i;
    T acc = init;
    for (std::int64_t k = 0; k < n; ++k) acc = f(acc, p[k * inner]);
    return acc;
  }
};
template <class T>
struct argmax_fn {
  const T* in;
  T* values;
  std::int64_t* indices;
  std::int64_t n, inner;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    const std::int64_t o = j / inner, i = j % inner;
    const T* p = in + o * n * inner + i;
    T best = p[0];
    std::int64_t arg = 0;
    for (std::int64_t k = 1; k < n; ++k) {
      const T v = p[k * inner];
      if (best != best) break;  // NaN wins, as on the cpu backend
      if (v > best || v != v) {
        best = v;
        arg = k;
      }
    }
    if (values) values[j] = best;
    indices[j] = arg;
  }
};
template <class T>
struct scatter_fn {
  const T* g;
  const std::int64_t* idx;
  T* out;
  std::int64_t n, inner;
  bool add;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    const std::int64_t o = j / inner, i = j % inner;
    T& dst = out[(o * n + idx[j]) * inner + i];
    dst = add ? dst + g[j] : g[j];
  }
};
}  // namespace cuda_detail

template <>
struct reduction<cuda> {
  template <class T, class F>
  static void reduce(const T* in, T* out, std::int64_t outer, std::int64_t n, std::int64_t inner, T init, F f) {
    const std::int64_t outputs = outer * inner;
    if (outputs == 0) return;
    if (outputs == 1) {  // a whole-tensor reduction: a tree reduction, not one thread
      if constexpr (std::is_same_v<F, fn::plus> && std::is_same_v<T, float>) {
        // Float sums accumulate in double, as the cpu backend's long rows do:
        // the two policies then agree to float precision on any length (and
        // on Thrust's OpenMP system, whose per-thread partial sums are sequential).
        const double r = thrust::transform_reduce(cuda_detail::dp(in), cuda_detail::dp(in) + n,
                                                  cuda_detail::to_double_fn{}, 0.0, thrust::plus<double>());
        elementwise_fill(out, static_cast<T>(static_cast<double>(init) + r));
        return;
      }
      const T r = thrust::reduce(cuda_detail::dp(in), cuda_detail::dp(in) + n, init, f);
      elementwise_fill(out, r);
      return;
    }
    thrust::tabulate(cuda_detail::dp(out), cuda_detail::dp(out) + outputs,
                     cuda_detail::reduce_column_fn<T, F>{in, n, inner, init, f});
  }
  template <class T>
  static void argmax(const T* in, T* values, std::int64_t* indices, std::int64_t outer, std::int64_t n,
                     std::int64_t inner) {
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::argmax_fn<T>{in, values, indices, n, inner});
  }
  template <class T>
  static void scatter_axis(const T* g, const std::int64_t* idx, T* out, std::int64_t outer, std::int64_t n,
                           std::int64_t inner) {
    if (outer * n * inner == 0) return;
    thrust::fill_n(cuda_detail::dp(out), outer * n * inner, T(0));
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::scatter_fn<T>{g, idx, out, n, inner, false});
  }
  template <class T>
  static void scatter_axis_add(const T* g, const std::int64_t* idx, T* out, std::int64_t outer, std::int64_t n,
                               std::int64_t inner) {
    if (outer * n * inner == 0) return;
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::scatter_fn<T>{g, idx, out, n, inner, true});
  }

 private:
  template <class T>
  static void elementwise_fill(T* out, T v) {
    thrust::fill_n(cuda_detail::dp(out), 1, v);
  }
};

}  // namespace protoseg::backend
