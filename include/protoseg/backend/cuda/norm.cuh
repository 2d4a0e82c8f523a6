#pragma once
/// \file norm.cuh
/// cuda normalisation kernels on Thrust: layer norm rows (one work item per
/// row), its parameter gradients (one per column) and batch-norm channel
/// statistics (one per channel). Statistics accumulate in double.

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cmath>
#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/nn_primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct layer_norm_row_fn {
  const T* x;
  const T* gamma;
  const T* beta;
  T* y;
  T* mean;
  T* rstd;
  std::int64_t n;
  double eps;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t r) const {
    const T* xr = x + r * n;
    double s = 0;
    for (std::int64_t j = 0; j < n; ++j) s += xr[j];
    const double m = s / double(n);
    double v = 0;
    for (std::int64_t j = 0; j < n; ++j) v += (xr[j] - m) * (xr[j] - m);
    const T mt = T(m), rs = T(1.0 / std::sqrt(v / double(n) + eps));
    mean[r] = mt;
    rstd[r] = rs;
    T* yr = y + r * n;
    for (std::int64_t j = 0; j < n; ++j) {
      T h = (xr[j] - mt) * rs;
      if (gamma) h = h * gamma[j];
      if (beta) h = h + beta[j];
      yr[j] = h;
    }
  }
};
template <class T>
struct layer_norm_backward_row_fn {
  const T* g;
  const T* x;
  const T* gamma;
  const T* mean;
  const T* rstd;
  T* gx;
  std::int64_t n;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t r) const {
    const T* gr = g + r * n;
    const T* xr = x + r * n;
    const T m = mean[r], rs = rstd[r];
    double su = 0, suh = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const T u = gamma ? gr[j] * gamma[j] : gr[j];
      su += u;
      suh += double(u) * double((xr[j] - m) * rs);
    }
    const T mu = T(su / double(n)), muh = T(suh / double(n));
    T* o = gx + r * n;
    for (std::int64_t j = 0; j < n; ++j) {
      const T u = gamma ? gr[j] * gamma[j] : gr[j];
      o[j] = rs * (u - mu - (xr[j] - m) * rs * muh);
    }
  }
};
template <class T>
struct layer_norm_param_fn {
  const T* g;
  const T* x;
  const T* mean;
  const T* rstd;
  T* ggamma;
  T* gbeta;
  std::int64_t rows, n;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    double sg = 0, sh = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const T gv = g[r * n + j];
      sg += gv;
      sh += double(gv * ((x[r * n + j] - mean[r]) * rstd[r]));
    }
    if (ggamma) ggamma[j] = T(sh);
    if (gbeta) gbeta[j] = T(sg);
  }
};
template <class T>
struct channel_moments_fn {
  const T* x;
  T* mean;
  T* var;
  std::int64_t n, c, hw;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t ch) const {
    double s = 0;
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t i = 0; i < hw; ++i) s += x[(b * c + ch) * hw + i];
    const double count = double(n * hw), m = s / count;
    double v = 0;
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t i = 0; i < hw; ++i) {
        const double d = x[(b * c + ch) * hw + i] - m;
        v += d * d;
      }
    mean[ch] = T(m);
    var[ch] = T(v / count);
  }
};
template <class T>
struct channel_grad_sums_fn {
  const T* g;
  const T* x;
  const T* mean;
  T* sum_g;
  T* sum_gx;
  std::int64_t n, c, hw;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t ch) const {
    double sg = 0, sgx = 0;
    const T m = mean[ch];
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t i = 0; i < hw; ++i) {
        const std::int64_t k = (b * c + ch) * hw + i;
        sg += g[k];
        sgx += double(g[k]) * double(x[k] - m);
      }
    sum_g[ch] = T(sg);
    sum_gx[ch] = T(sgx);
  }
};
}  // namespace cuda_detail

template <>
struct norm<cuda> {
  /// Same contracts as norm<cpu> (see backend/cpu/norm.hpp).
  template <class T>
  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, std::int64_t rows,
                                 std::int64_t n, double eps) {
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(rows),
                     cuda_detail::layer_norm_row_fn<T>{x, gamma, beta, y, mean, rstd, n, eps});
  }
  template <class T>
  static void layer_norm_backward(const T* g, const T* x, const T* gamma, const T* mean, const T* rstd, T* gx,
                                  std::int64_t rows, std::int64_t n) {
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(rows),
                     cuda_detail::layer_norm_backward_row_fn<T>{g, x, gamma, mean, rstd, gx, n});
  }
  template <class T>
  static void layer_norm_param_grads(const T* g, const T* x, const T* mean, const T* rstd, T* ggamma, T* gbeta,
                                     std::int64_t rows, std::int64_t n) {
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(n),
                     cuda_detail::layer_norm_param_fn<T>{g, x, mean, rstd, ggamma, gbeta, rows, n});
  }
  template <class T>
  static void channel_moments(const T* x, T* mean, T* var, std::int64_t n, std::int64_t c, std::int64_t hw) {
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(c),
                     cuda_detail::channel_moments_fn<T>{x, mean, var, n, c, hw});
  }
  template <class T>
  static void channel_grad_sums(const T* g, const T* x, const T* mean, T* sum_g, T* sum_gx, std::int64_t n,
                                std::int64_t c, std::int64_t hw) {
    thrust::for_each(thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(c),
                     cuda_detail::channel_grad_sums_fn<T>{g, x, mean, sum_g, sum_gx, n, c, hw});
  }
};

}  // namespace protoseg::backend
