#pragma once
/// \file softmax.cuh
/// cuda softmax / log-softmax along an axis, their backward passes and the
/// cross-entropy from the logits (one work item per (outer, inner) column).

#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>

#include <cmath>
#include <functional>
#include <utility>
#include <cstdint>

#include "protoseg/backend/cuda/device_sum.cuh"
#include "protoseg/backend/cuda/executor.cuh"
#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/functors.hpp"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct softmax_fwd_fn {
  const T* x;
  T* y;
  std::int64_t n, inner;
  bool log;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    const std::int64_t base = (j / inner) * n * inner + j % inner;
    T mx = x[base];
    for (std::int64_t k = 1; k < n; ++k) mx = x[base + k * inner] > mx ? x[base + k * inner] : mx;
    T s = 0;
    for (std::int64_t k = 0; k < n; ++k) s += std::exp(x[base + k * inner] - mx);
    if (log) {
      const T lse = mx + std::log(s);
      for (std::int64_t k = 0; k < n; ++k) y[base + k * inner] = x[base + k * inner] - lse;
    } else {
      const T inv = T(1) / s;
      for (std::int64_t k = 0; k < n; ++k) y[base + k * inner] = std::exp(x[base + k * inner] - mx) * inv;
    }
  }
};
template <class T>
struct softmax_bwd_fn {
  const T* y;
  const T* g;
  T* gx;
  std::int64_t n, inner;
  bool log;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    const std::int64_t base = (j / inner) * n * inner + j % inner;
    T s = 0;
    if (log) {
      for (std::int64_t k = 0; k < n; ++k) s += g[base + k * inner];
      for (std::int64_t k = 0; k < n; ++k) gx[base + k * inner] = g[base + k * inner] - std::exp(y[base + k * inner]) * s;
    } else {
      for (std::int64_t k = 0; k < n; ++k) s += g[base + k * inner] * y[base + k * inner];
      for (std::int64_t k = 0; k < n; ++k) gx[base + k * inner] = y[base + k * inner] * (g[base + k * inner] - s);
    }
  }
};
struct bad_label_fn {
  const std::int64_t* labels;
  std::int64_t n, ignore;
  PROTOSEG_HOST_DEVICE bool operator()(std::int64_t j) const {
    const std::int64_t l = labels[j];
    return l != ignore && (l < 0 || l >= n);
  }
};
template <class T>
struct ce_lse_fn {  // log-sum-exp of one (outer, inner) column; 0 where ignored
  const T* x;
  const std::int64_t* labels;
  std::int64_t n, inner, ignore;
  T* lse;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    if (labels[j] == ignore) {
      lse[j] = T(0);
      return;
    }
    const std::int64_t base = (j / inner) * n * inner + j % inner;
    T mx = x[base];
    for (std::int64_t k = 1; k < n; ++k) mx = x[base + k * inner] > mx ? x[base + k * inner] : mx;
    T s = 0;
    for (std::int64_t k = 0; k < n; ++k) s += std::exp(x[base + k * inner] - mx);
    lse[j] = mx + std::log(s);
  }
};
template <class T>
struct ce_term_fn {  // (w * (lse - x[l]), w) of one position; (0, 0) where ignored
  const T* x;
  const T* lse;
  const std::int64_t* labels;
  const T* weight;
  std::int64_t n, inner, ignore;
  PROTOSEG_HOST_DEVICE double2_sum operator()(std::int64_t j) const {
    const std::int64_t l = labels[j];
    if (l == ignore) return {0.0, 0.0};
    const double w = weight ? double(weight[l]) : 1.0;
    const std::int64_t o = j / inner, i = j % inner;
    return {w * (double(lse[j]) - double(x[(o * n + l) * inner + i])), w};
  }
};
template <class T>
struct ce_accumulate_fn {  // acc += (loss, weight sum), each rounded to T as the cpu primitive does
  double* acc;
  PROTOSEG_HOST_DEVICE void operator()(double loss, double wsum) const {
    acc[0] += fn::rounded_to<T>(loss);
    acc[1] += fn::rounded_to<T>(wsum);
  }
};
template <class T>
struct ce_bwd_fn {
  const T* x;
  const T* lse;
  const std::int64_t* labels;
  const T* weight;
  std::int64_t n, inner, ignore;
  const T* g;         // the upstream gradient (one value)
  const double* acc;  // acc[1]: the weight sum of the forward
  T* gx;
  bool accumulate;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    const T ws = static_cast<T>(acc[1]);
    const T scale = ws > T(0) ? g[0] / ws : T(0);
    const std::int64_t l = labels[j];
    const std::int64_t base = (j / inner) * n * inner + j % inner;
    if (l == ignore) {
      if (!accumulate)
        for (std::int64_t k = 0; k < n; ++k) gx[base + k * inner] = T(0);
      return;
    }
    const T w = scale * (weight ? weight[l] : T(1));
    for (std::int64_t k = 0; k < n; ++k) {
      const T d = w * (std::exp(x[base + k * inner] - lse[j]) - (k == l ? T(1) : T(0)));
      gx[base + k * inner] = accumulate ? gx[base + k * inner] + d : d;
    }
  }
};
}  // namespace cuda_detail

template <>
struct softmax<cuda> {
  template <class T>
  static void forward(const T* x, T* y, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log) {
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::softmax_fwd_fn<T>{x, y, n, inner, log});
  }
  template <class T>
  static void backward(const T* y, const T* g, T* gx, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log) {
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::softmax_bwd_fn<T>{y, g, gx, n, inner, log});
  }
  /// Checks that every label is in [0, n) or the ignore index; report(the
  /// first offending position) otherwise, at once or, under
  /// cuda_deferred_checks, after the next synchronisation (see context.cuh).
  static void check_labels(const std::int64_t* labels, std::int64_t count, std::int64_t n,
                           std::int64_t ignore_index, std::function<void(std::int64_t)> report) {
    executor<cuda>::check(count, cuda_detail::bad_label_fn{labels, n, ignore_index}, std::move(report));
  }
  /// Same contract as softmax<cpu>::cross_entropy_forward: acc (2 doubles,
  /// device memory) gains the loss and weight sums; nothing comes back to the host.
  template <class T>
  static void cross_entropy_forward(const T* x, const std::int64_t* labels, const T* weight, std::int64_t outer,
                                    std::int64_t n, std::int64_t inner, std::int64_t ignore_index, T* lse,
                                    double* acc) {
    auto first = thrust::counting_iterator<std::int64_t>(0);
    const std::int64_t count = outer * inner;
    if (count > 0)
      thrust::for_each(cuda_detail::exec(), first, first + count,
                       cuda_detail::ce_lse_fn<T>{x, labels, n, inner, ignore_index, lse});
    cuda_detail::sum_pairs(count, cuda_detail::ce_term_fn<T>{x, lse, labels, weight, n, inner, ignore_index},
                           cuda_detail::ce_accumulate_fn<T>{acc});
  }
  template <class T>
  static void cross_entropy_backward(const T* x, const T* lse, const std::int64_t* labels, const T* weight,
                                     std::int64_t outer, std::int64_t n, std::int64_t inner,
                                     std::int64_t ignore_index, const T* g, const double* acc, T* gx,
                                     bool accumulate = false) {
    if (outer * inner == 0) return;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(outer * inner),
                     cuda_detail::ce_bwd_fn<T>{x, lse, labels, weight, n, inner, ignore_index, g, acc, gx, accumulate});
  }
};

}  // namespace protoseg::backend
