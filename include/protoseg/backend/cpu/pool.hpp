#pragma once
/// \file pool.hpp
/// cpu max pooling: forward with the argmax of each window (a flat index
/// into its plane; NaN wins, as in PyTorch) and the gather-form backward.

#include <algorithm>
#include <cstdint>
#include <limits>

#include "protoseg/backend/cpu/parallel.hpp"
#include "protoseg/backend/nn_primitives.hpp"

namespace protoseg::backend {

template <>
struct pool<cpu> {
  template <class T>
  static void max_forward(const T* x, T* y, std::int64_t* idx, const pool_geometry& g) {
    const std::int64_t HW = g.height * g.width, L = g.out_h * g.out_w;
    PROTOSEG_OMP_FOR(g.planes * L * g.kernel_h * g.kernel_w)
    for (std::int64_t p = 0; p < g.planes; ++p) {
      const T* xp = x + p * HW;
      for (std::int64_t oy = 0; oy < g.out_h; ++oy)
        for (std::int64_t ox = 0; ox < g.out_w; ++ox) {
          T best = -std::numeric_limits<T>::infinity();
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
          y[p * L + oy * g.out_w + ox] = best;
          idx[p * L + oy * g.out_w + ox] = arg;
        }
    }
  }

  template <class T>
  static void max_backward(const T* gy, const std::int64_t* idx, T* gx, const pool_geometry& g) {
    const std::int64_t HW = g.height * g.width, L = g.out_h * g.out_w;
    PROTOSEG_OMP_FOR(g.planes * HW * g.kernel_h * g.kernel_w)
    for (std::int64_t pr = 0; pr < g.planes * g.height; ++pr) {
      const std::int64_t p = pr / g.height, y = pr % g.height;
      for (std::int64_t xx = 0; xx < g.width; ++xx) {
        const std::int64_t me = y * g.width + xx;
        // Windows oy with oy*s - pad <= y < oy*s - pad + k.
        const std::int64_t ty = y + g.pad_h, tx = xx + g.pad_w;
        std::int64_t oy0 = ty - g.kernel_h + 1 > 0 ? (ty - g.kernel_h + 1 + g.stride_h - 1) / g.stride_h : 0;
        std::int64_t ox0 = tx - g.kernel_w + 1 > 0 ? (tx - g.kernel_w + 1 + g.stride_w - 1) / g.stride_w : 0;
        const std::int64_t oy1 = std::min(g.out_h - 1, ty / g.stride_h), ox1 = std::min(g.out_w - 1, tx / g.stride_w);
        T acc = T(0);
        for (std::int64_t oy = oy0; oy <= oy1; ++oy)
          for (std::int64_t ox = ox0; ox <= ox1; ++ox) {
            const std::int64_t o = p * L + oy * g.out_w + ox;
            if (idx[o] == me) acc += gy[o];
          }
        gx[p * HW + me] = acc;
      }
    }
  }
};

}  // namespace protoseg::backend
