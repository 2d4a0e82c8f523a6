#pragma once
/// \file reduction.cuh
/// cuda reductions along the middle axis of an (outer, n, inner) view.

#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/discard_iterator.h>
#include <thrust/iterator/permutation_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/reduce.h>
#include <thrust/transform.h>
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
/// Element t of the (outputs x n) view, row-major by output: output j =
/// t / n (j = o * inner + i), step k = t % n, read at (o * n + k) * inner + i.
struct reduce_source_fn {
  std::int64_t n, inner;
  PROTOSEG_HOST_DEVICE std::int64_t operator()(std::int64_t t) const {
    const std::int64_t j = t / n, k = t % n;
    return ((j / inner) * n + k) * inner + j % inner;
  }
};
struct divide_fn {
  std::int64_t n;
  PROTOSEG_HOST_DEVICE std::int64_t operator()(std::int64_t t) const { return t / n; }
};
template <class T, class F>
struct fold_init_fn {
  T init;
  F f;
  PROTOSEG_HOST_DEVICE T operator()(T v) const { return f(init, v); }
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
        cuda_detail::note_sync();  // the sum comes back to the host
        const double r = thrust::transform_reduce(cuda_detail::exec(), cuda_detail::dp(in), cuda_detail::dp(in) + n,
                                                  cuda_detail::to_double_fn{}, 0.0, thrust::plus<double>());
        elementwise_fill(out, static_cast<T>(static_cast<double>(init) + r));
        return;
      }
      cuda_detail::note_sync();
      const T r = thrust::reduce(cuda_detail::exec(), cuda_detail::dp(in), cuda_detail::dp(in) + n, init, f);
      elementwise_fill(out, r);
      return;
    }
    if (n >= long_reduction && outputs < many_outputs) {
      // Few long reductions (a Sinkhorn's K row sums over N = 1e5 pixels):
      // one thread per output would walk N values alone, so all outputs x n
      // values are reduced at once as segments of a tree reduction.
      const thrust::counting_iterator<std::int64_t> t(0);
      const auto keys = thrust::make_transform_iterator(t, cuda_detail::divide_fn{n});
      const auto values = thrust::make_permutation_iterator(
          cuda_detail::dp(in), thrust::make_transform_iterator(t, cuda_detail::reduce_source_fn{n, inner}));
      cuda_detail::note_sync();  // reduce_by_key returns the number of segments
      thrust::reduce_by_key(cuda_detail::exec(), keys, keys + outputs * n, values, thrust::make_discard_iterator(), cuda_detail::dp(out),
                            thrust::equal_to<std::int64_t>(), f);
      thrust::transform(cuda_detail::exec(), cuda_detail::dp(out), cuda_detail::dp(out) + outputs, cuda_detail::dp(out),
                        cuda_detail::fold_init_fn<T, F>{init, f});
      return;
    }
    thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(out), cuda_detail::dp(out) + outputs,
                     cuda_detail::reduce_column_fn<T, F>{in, n, inner, init, f});
  }
  /// Reductions at least this long, when there are fewer than many_outputs
  /// of them, run as one segmented tree reduction instead of a thread each.
  static constexpr std::int64_t long_reduction = 4096;
  static constexpr std::int64_t many_outputs = 16384;
  template <class T>
  static void argmax(const T* in, T* values, std::int64_t* indices, std::int64_t outer, std::int64_t n,
                     std::int64_t inner) {
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::argmax_fn<T>{in, values, indices, n, inner});
  }
  template <class T>
  static void scatter_axis(const T* g, const std::int64_t* idx, T* out, std::int64_t outer, std::int64_t n,
                           std::int64_t inner) {
    if (outer * n * inner == 0) return;
    thrust::fill_n(cuda_detail::exec(), cuda_detail::dp(out), outer * n * inner, T(0));
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::scatter_fn<T>{g, idx, out, n, inner, false});
  }
  template <class T>
  static void scatter_axis_add(const T* g, const std::int64_t* idx, T* out, std::int64_t outer, std::int64_t n,
                               std::int64_t inner) {
    if (outer * n * inner == 0) return;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::scatter_fn<T>{g, idx, out, n, inner, true});
  }

 private:
  template <class T>
  static void elementwise_fill(T* out, T v) {
    thrust::fill_n(cuda_detail::exec(), cuda_detail::dp(out), 1, v);
  }
};

}  // namespace protoseg::backend
