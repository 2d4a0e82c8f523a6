#pragma once
/// \file pool.hpp
/// cpu max pooling: forward with the argmax of each window (a flat index
/// into its plane; NaN wins, as in PyTorch) and the scatter-form backward (per plane,
/// in a fixed order).

#include <algorithm>
#include <cstdint>
#include <limits>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct pool<cpu> {
  template <class T>
  static void max_forward(const T* x, T* y, std::int64_t* idx, const pool_geometry& g) {
    const std::int64_t HW = g.height * g.width, L = g.out_h * g.out_w;
    PROTOSEG_OMP_FOR(g.planes * L * g.kernel_h * g.kernel_w)
    for (std::int64_t p = 0; p < g.planes; ++p) {
      const T* xp = x + p * HW;
      for (std::int64_t oy = 0; oy < g.out_h; ++oy) {
        // The window's rows inside the plane (the same visiting order as
        // testing every tap, without the per-tap bounds checks).
        const std::int64_t y0 = oy * g.stride_h - g.pad_h;
        const std::int64_t ky0 = std::max<std::int64_t>(0, -y0), ky1 = std::min(g.kernel_h, g.height - y0);
        for (std::int64_t ox = 0; ox < g.out_w; ++ox) {
          const std::int64_t x0 = ox * g.stride_w - g.pad_w;
          const std::int64_t kx0 = std::max<std::int64_t>(0, -x0), kx1 = std::min(g.kernel_w, g.width - x0);
          T best = -std::numeric_limits<T>::infinity();
          std::int64_t arg = -1;
          if (ky0 < ky1 && kx0 < kx1) {
            // The first tap, then a later tap replaces it when larger or NaN
            // (selects, not branches: which tap wins is data-dependent).
            arg = (y0 + ky0) * g.width + x0 + kx0;
            best = xp[arg];
            for (std::int64_t ky = ky0; ky < ky1; ++ky) {
              const std::int64_t row = (y0 + ky) * g.width + x0;
              for (std::int64_t kx = ky == ky0 ? kx0 + 1 : kx0; kx < kx1; ++kx) {
                const T v = xp[row + kx];
                const bool take = v > best || v != v;
                best = take ? v : best;
                arg = take ? row + kx : arg;
              }
            }
          }
          y[p * L + oy * g.out_w + ox] = best;
          idx[p * L + oy * g.out_w + ox] = arg;
        }
      }
    }
  }

  /// Scatter form, one plane at a time: every input pixel receives the
  /// gradients of the windows whose maximum it is, added in output order
  /// (row-major over the windows), so the result does not depend on the
  /// thread count.
  template <class T>
  static void max_backward(const T* gy, const std::int64_t* idx, T* gx, const pool_geometry& g) {
    const std::int64_t HW = g.height * g.width, L = g.out_h * g.out_w;
    PROTOSEG_OMP_FOR(g.planes * (HW + L))
    for (std::int64_t p = 0; p < g.planes; ++p) {
      T* gp = gx + p * HW;
      std::fill(gp, gp + HW, T(0));
      const T* gyp = gy + p * L;
      const std::int64_t* ip = idx + p * L;
      for (std::int64_t o = 0; o < L; ++o)
        if (ip[o] >= 0) gp[ip[o]] += gyp[o];
    }
  }
};

}  // namespace protoseg::backend
