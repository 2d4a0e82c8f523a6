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

#include "protoseg/backend/cuda/device_sum.cuh"
#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/functors.hpp"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
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
struct float_as_double_fn {  // (x[i], 0) in double
  const float* x;
  PROTOSEG_HOST_DEVICE double2_sum operator()(std::int64_t i) const { return {double(x[i]), 0.0}; }
};
template <class T>
struct write_sum_fn {  // out[0] = T(init + sum)
  T* out;
  double init;
  PROTOSEG_HOST_DEVICE void operator()(double a, double) const { out[0] = static_cast<T>(init + a); }
};
template <class T, class F>
struct fold_chunk_fn {  // part[c] = f-fold of the chunk's values
  const T* in;
  std::int64_t n;
  F f;
  T* part;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t c) const {
    const std::int64_t i0 = c * sum_chunk, i1 = i0 + sum_chunk < n ? i0 + sum_chunk : n;
    T acc = in[i0];
    for (std::int64_t i = i0 + 1; i < i1; ++i) acc = f(acc, in[i]);
    part[c] = acc;
  }
};
template <class T, class F>
struct fold_partials_fn {  // out[0] = f-fold of init and the partials, in order
  const T* part;
  std::int64_t chunks;
  T init;
  F f;
  T* out;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t) const {
    T acc = init;
    for (std::int64_t c = 0; c < chunks; ++c) acc = f(acc, part[c]);
    out[0] = acc;
  }
};
template <class T, class F>
struct fold_column_chunk_fn {  // item (output j, chunk c): the f-fold of the chunk of output j's n values
  const T* in;
  std::int64_t n, inner, chunks;
  F f;
  T* part;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t t) const {
    const std::int64_t j = t / chunks, c = t % chunks;
    const T* p = in + (j / inner) * n * inner + j % inner;
    const std::int64_t k0 = c * sum_chunk, k1 = k0 + sum_chunk < n ? k0 + sum_chunk : n;
    T acc = p[k0 * inner];
    for (std::int64_t k = k0 + 1; k < k1; ++k) acc = f(acc, p[k * inner]);
    part[t] = acc;
  }
};
template <class T, class F>
struct fold_column_partials_fn {  // out[j] = f-fold of init and output j's partials, in order
  const T* part;
  std::int64_t chunks;
  T init;
  F f;
  T* out;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    T acc = init;
    for (std::int64_t c = 0; c < chunks; ++c) acc = f(acc, part[j * chunks + c]);
    out[j] = acc;
  }
};
}  // namespace cuda_detail

template <>
struct reduction<cuda> {
  template <class T, class F>
  static void reduce(const T* in, T* out, std::int64_t outer, std::int64_t n, std::int64_t inner, T init, F f) {
    const std::int64_t outputs = outer * inner;
    if (outputs == 0) return;
    if (outputs == 1) {  // a whole-tensor reduction: partials over chunks, then one item; stays on the device
      if constexpr (std::is_same_v<F, fn::plus> && std::is_same_v<T, float>) {
        // Float sums accumulate in double, as the cpu backend's long rows do:
        // the two policies then agree to float precision on any length.
        cuda_detail::sum_pairs(n, cuda_detail::float_as_double_fn{in},
                               cuda_detail::write_sum_fn<T>{out, static_cast<double>(init)});
        return;
      }
      const std::int64_t chunks = (n + cuda_detail::sum_chunk - 1) / cuda_detail::sum_chunk;
      cuda_detail::scratch<T> part(chunks);
      const thrust::counting_iterator<std::int64_t> first(0);
      if (chunks > 0)
        thrust::for_each(cuda_detail::exec(), first, first + chunks,
                         cuda_detail::fold_chunk_fn<T, F>{in, n, f, part.get()});
      thrust::for_each(cuda_detail::exec(), first, first + 1,
                       cuda_detail::fold_partials_fn<T, F>{part.get(), chunks, init, f, out});
      return;
    }
    if (n >= long_reduction && outputs < many_outputs) {
      // Few long reductions (a Sinkhorn's K row sums over N = 1e5 pixels):
      // one thread per output would walk N values alone, so each output's
      // values are folded in chunks first, then the chunks in order.
      const std::int64_t chunks = (n + cuda_detail::sum_chunk - 1) / cuda_detail::sum_chunk;
      cuda_detail::scratch<T> part(outputs * chunks);
      const thrust::counting_iterator<std::int64_t> first(0);
      thrust::for_each(cuda_detail::exec(), first, first + outputs * chunks,
                       cuda_detail::fold_column_chunk_fn<T, F>{in, n, inner, chunks, f, part.get()});
      thrust::for_each(cuda_detail::exec(), first, first + outputs,
                       cuda_detail::fold_column_partials_fn<T, F>{part.get(), chunks, init, f, out});
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

};

}  // namespace protoseg::backend
