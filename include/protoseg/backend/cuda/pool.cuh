#pragma once
/// \file pool.cuh
/// cuda max pooling on Thrust: one window per work item forward (value and
/// argmax), one input pixel per work item backward (gather form).

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/tabulate.h>

#include <cstdint>
#include <limits>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct max_pool_forward_fn {
  const T* x;
  T* y;
  std::int64_t* idx;
  pool_geometry g;
  T lowest;  // -infinity
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t L = g.out_h * g.out_w;
    const std::int64_t p = i / L, oy = (i % L) / g.out_w, ox = i % g.out_w;
    const T* xp = x + p * g.height * g.width;
    T best = lowest;
    std::int64_t arg = -1;
    for (std::int64_t ky = 0; ky < g.kernel_h; ++ky) {
      const std::int64_t iy = oy * g.stride_h - g.pad_h + ky;
      if (iy < 0 || iy >= g.height) continue;
      for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
        const std::int64_t ix = ox * g.stride_w - g.pad_w + kx;
        if (ix < 0 || ix >= g.width) continue;
        const T v = xp[iy * g.width + ix];
        if (arg < 0 || v > best || v != v) {
          best = v;
          arg = iy * g.width + ix;
        }
      }
    }
    y[i] = best;
    idx[i] = arg;
  }
};
template <class T>
struct max_pool_backward_fn {
  const T* gy;
  const std::int64_t* idx;
  pool_geometry g;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    const std::int64_t HW = g.height * g.width, L = g.out_h * g.out_w;
    const std::int64_t p = i / HW, me = i % HW, y = me / g.width, xx = me % g.width;
    const std::int64_t ty = y + g.pad_h, tx = xx + g.pad_w;
    const std::int64_t oy0 = ty - g.kernel_h + 1 > 0 ? (ty - g.kernel_h + 1 + g.stride_h - 1) / g.stride_h : 0;
    const std::int64_t ox0 = tx - g.kernel_w + 1 > 0 ? (tx - g.kernel_w + 1 + g.stride_w - 1) / g.stride_w : 0;
    std::int64_t oy1 = ty / g.stride_h, ox1 = tx / g.stride_w;
    if (oy1 > g.out_h - 1) oy1 = g.out_h - 1;
    if (ox1 > g.out_w - 1) ox1 = g.out_w - 1;
    T acc = T(0);
    for (std::int64_t oy = oy0; oy <= oy1; ++oy)
      for (std::int64_t ox = ox0; ox <= ox1; ++ox) {
        const std::int64_t o = p * L + oy * g.out_w + ox;
        if (idx[o] == me) acc += gy[o];
      }
    return acc;
  }
};
}  // namespace cuda_detail

template <>
struct pool<cuda> {
  /// Same contracts as pool<cpu> (see backend/cpu/pool.hpp).
  template <class T>
  static void max_forward(const T* x, T* y, std::int64_t* idx, const pool_geometry& g) {
    const std::int64_t total = g.planes * g.out_h * g.out_w;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(total),
                     cuda_detail::max_pool_forward_fn<T>{x, y, idx, g, -std::numeric_limits<T>::infinity()});
  }
  template <class T>
  static void max_backward(const T* gy, const std::int64_t* idx, T* gx, const pool_geometry& g) {
    const std::int64_t total = g.planes * g.height * g.width;
    if (total > 0)
      thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(gx), cuda_detail::dp(gx) + total, cuda_detail::max_pool_backward_fn<T>{gy, idx, g});
  }
};

}  // namespace protoseg::backend
