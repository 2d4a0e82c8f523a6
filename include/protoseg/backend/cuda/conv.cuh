#pragma once
/// \file conv.cuh
/// cuda convolution helpers on Thrust: im2col / col2im and the direct
/// depthwise kernels, one output element per work item (gather form, so no
/// atomics and the same code runs on Thrust's OpenMP system).

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/tabulate.h>

#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct im2col_fn {
  const T* x;
  conv_geometry g;
  std::int64_t n = 1;  // images side by side: col (rows, n * L)
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    const std::int64_t L = g.out_h * g.out_w;
    const std::int64_t r = i / (n * L), b = (i / L) % n, l = i % L;
    const T* xb = x + b * g.channels * g.height * g.width;
    const std::int64_t kx = r % g.kernel_w, ky = (r / g.kernel_w) % g.kernel_h, c = r / (g.kernel_w * g.kernel_h);
    const std::int64_t iy = (l / g.out_w) * g.stride_h - g.pad_h + ky * g.dilation_h;
    const std::int64_t ix = (l % g.out_w) * g.stride_w - g.pad_w + kx * g.dilation_w;
    if (iy < 0 || iy >= g.height || ix < 0 || ix >= g.width) return T(0);
    return xb[(c * g.height + iy) * g.width + ix];
  }
};
template <class T>
struct col2im_fn {
  const T* col;
  conv_geometry g;
  std::int64_t n = 1;  // images side by side: col (rows, n * L), x (n, C, H, W)
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    const std::int64_t L = g.out_h * g.out_w, img = g.channels * g.height * g.width;
    const std::int64_t b = i / img;
    i %= img;
    const T* cb = col + b * L;
    const std::int64_t ld = n * L;
    const std::int64_t xx = i % g.width, y = (i / g.width) % g.height, c = i / (g.width * g.height);
    T acc = T(0);
    for (std::int64_t ky = 0; ky < g.kernel_h; ++ky) {
      const std::int64_t ty = y + g.pad_h - ky * g.dilation_h;
      if (ty < 0 || ty % g.stride_h != 0 || ty / g.stride_h >= g.out_h) continue;
      for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
        const std::int64_t tx = xx + g.pad_w - kx * g.dilation_w;
        if (tx < 0 || tx % g.stride_w != 0 || tx / g.stride_w >= g.out_w) continue;
        acc += cb[((c * g.kernel_h + ky) * g.kernel_w + kx) * ld + (ty / g.stride_h) * g.out_w + tx / g.stride_w];
      }
    }
    return acc;
  }
};
template <class T>
struct depthwise_forward_fn {
  const T* x;
  const T* w;
  const T* bias;
  conv_geometry g;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    const std::int64_t L = g.out_h * g.out_w;
    const std::int64_t p = i / L, l = i % L, c = p % g.channels;
    const std::int64_t oy = l / g.out_w, ox = l % g.out_w;
    const T* xp = x + p * g.height * g.width;
    const T* wc = w + c * g.kernel_h * g.kernel_w;
    T acc = bias ? bias[c] : T(0);
    for (std::int64_t ky = 0; ky < g.kernel_h; ++ky) {
      const std::int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h;
      if (iy < 0 || iy >= g.height) continue;
      for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
        const std::int64_t ix = ox * g.stride_w - g.pad_w + kx * g.dilation_w;
        if (ix < 0 || ix >= g.width) continue;
        acc += wc[ky * g.kernel_w + kx] * xp[iy * g.width + ix];
      }
    }
    return acc;
  }
};
template <class T>
struct depthwise_backward_input_fn {
  const T* gy;
  const T* w;
  conv_geometry g;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    const std::int64_t HW = g.height * g.width, L = g.out_h * g.out_w;
    const std::int64_t p = i / HW, c = p % g.channels, y = (i % HW) / g.width, xx = i % g.width;
    const T* gp = gy + p * L;
    const T* wc = w + c * g.kernel_h * g.kernel_w;
    T acc = T(0);
    for (std::int64_t ky = 0; ky < g.kernel_h; ++ky) {
      const std::int64_t ty = y + g.pad_h - ky * g.dilation_h;
      if (ty < 0 || ty % g.stride_h != 0 || ty / g.stride_h >= g.out_h) continue;
      for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
        const std::int64_t tx = xx + g.pad_w - kx * g.dilation_w;
        if (tx < 0 || tx % g.stride_w != 0 || tx / g.stride_w >= g.out_w) continue;
        acc += wc[ky * g.kernel_w + kx] * gp[(ty / g.stride_h) * g.out_w + tx / g.stride_w];
      }
    }
    return acc;
  }
};
/// Output rows per partial sum of the depthwise weight gradient.
inline constexpr std::int64_t dw_row_chunk = 8;

/// Item ((c * kk + k) * n + b) * chunks + rc: the weight-gradient partial sum
/// of tap k of channel c over sample b and a chunk of output rows.
template <class T>
struct depthwise_weight_partial_fn {
  const T* gy;
  const T* x;
  double* part;
  std::int64_t n, chunks;
  conv_geometry g;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t kk = g.kernel_h * g.kernel_w, HW = g.height * g.width, L = g.out_h * g.out_w;
    const std::int64_t rc = i % chunks, b = (i / chunks) % n, ck = i / (chunks * n);
    const std::int64_t c = ck / kk, ky = (ck % kk) / g.kernel_w, kx = ck % g.kernel_w;
    const T* xp = x + (b * g.channels + c) * HW;
    const T* gp = gy + (b * g.channels + c) * L;
    const std::int64_t oy0 = rc * dw_row_chunk, oy1 = oy0 + dw_row_chunk < g.out_h ? oy0 + dw_row_chunk : g.out_h;
    double acc = 0;
    for (std::int64_t oy = oy0; oy < oy1; ++oy) {
      const std::int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h;
      if (iy < 0 || iy >= g.height) continue;
      for (std::int64_t ox = 0; ox < g.out_w; ++ox) {
        const std::int64_t ix = ox * g.stride_w - g.pad_w + kx * g.dilation_w;
        if (ix < 0 || ix >= g.width) continue;
        acc += double(gp[oy * g.out_w + ox] * xp[iy * g.width + ix]);
      }
    }
    part[i] = acc;
  }
};
template <class T>
struct depthwise_weight_final_fn {
  const double* part;
  std::int64_t per;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t ck) const {
    double s = 0;
    for (std::int64_t k = 0; k < per; ++k) s += part[ck * per + k];
    return T(s);
  }
};
}  // namespace cuda_detail

template <>
struct conv<cuda> {
  /// Same contracts as conv<cpu> (see backend/cpu/conv.hpp).
  template <class T>
  static void im2col(const T* x, T* col, const conv_geometry& g) {
    const std::int64_t n = g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
    if (n > 0) thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(col), cuda_detail::dp(col) + n, cuda_detail::im2col_fn<T>{x, g});
  }
  template <class T>
  static void col2im(const T* col, T* x, const conv_geometry& g) {
    const std::int64_t n = g.channels * g.height * g.width;
    if (n > 0) thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(x), cuda_detail::dp(x) + n, cuda_detail::col2im_fn<T>{col, g});
  }
  template <class T>
  static void im2col_batch(const T* x, T* col, std::int64_t n, const conv_geometry& g) {
    const std::int64_t total = n * g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
    if (total > 0)
      thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(col), cuda_detail::dp(col) + total, cuda_detail::im2col_fn<T>{x, g, n});
  }
  template <class T>
  static void col2im_batch(const T* col, T* x, std::int64_t n, const conv_geometry& g) {
    const std::int64_t total = n * g.channels * g.height * g.width;
    if (total > 0)
      thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(x), cuda_detail::dp(x) + total, cuda_detail::col2im_fn<T>{col, g, n});
  }
  template <class T>
  static void depthwise_forward(const T* x, const T* w, const T* bias, T* y, std::int64_t n, const conv_geometry& g) {
    const std::int64_t total = n * g.channels * g.out_h * g.out_w;
    if (total > 0)
      thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(y), cuda_detail::dp(y) + total, cuda_detail::depthwise_forward_fn<T>{x, w, bias, g});
  }
  template <class T>
  static void depthwise_backward_input(const T* gy, const T* w, T* gx, std::int64_t n, const conv_geometry& g) {
    const std::int64_t total = n * g.channels * g.height * g.width;
    if (total > 0)
      thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(gx), cuda_detail::dp(gx) + total,
                       cuda_detail::depthwise_backward_input_fn<T>{gy, w, g});
  }
  /// Two stages: partial sums over (sample, chunk of output rows), then one
  /// item per weight element sums its partials.
  template <class T>
  static void depthwise_backward_weight(const T* gy, const T* x, T* gw, std::int64_t n, const conv_geometry& g) {
    const std::int64_t total = g.channels * g.kernel_h * g.kernel_w;
    if (total == 0) return;
    const std::int64_t chunks = (g.out_h + cuda_detail::dw_row_chunk - 1) / cuda_detail::dw_row_chunk;
    const std::int64_t per = n * chunks;
    cuda_detail::scratch<double> part(total * per);
    double* pp = part.get();
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(total * per),
                     cuda_detail::depthwise_weight_partial_fn<T>{gy, x, pp, n, chunks, g});
    thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(gw), cuda_detail::dp(gw) + total, cuda_detail::depthwise_weight_final_fn<T>{pp, per});
  }
};

}  // namespace protoseg::backend
