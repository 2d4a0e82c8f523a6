#pragma once
/// \file resize.hpp
/// cpu separable resize (bilinear or nearest, from `resize_axis` tables):
/// forward, and the gradient in gather form (each input pixel sums the
/// outputs that read it, so no two threads write the same element).

#include <cstdint>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct resize<cpu> {
  /// y (planes, ah.out, aw.out) from x (planes, ah.in, aw.in).
  template <class T>
  static void forward(const T* x, T* y, std::int64_t planes, const resize_axis<T>& ah, const resize_axis<T>& aw) {
    const std::int64_t H = ah.in, W = aw.in, OH = ah.out, OW = aw.out;
    PROTOSEG_OMP_FOR(planes * OH * OW)
    for (std::int64_t pr = 0; pr < planes * OH; ++pr) {
      const std::int64_t p = pr / OH, oy = pr % OH;
      const T* r0 = x + (p * H + ah.i0[oy]) * W;
      const T* r1 = x + (p * H + ah.i1[oy]) * W;
      const T h0 = ah.w0[oy], h1 = ah.w1[oy];
      T* out = y + pr * OW;
      for (std::int64_t ox = 0; ox < OW; ++ox) {
        const std::int64_t c0 = aw.i0[ox], c1 = aw.i1[ox];
        const T v0 = aw.w0[ox], v1 = aw.w1[ox];
        out[ox] = h0 * (v0 * r0[c0] + v1 * r0[c1]) + h1 * (v0 * r1[c0] + v1 * r1[c1]);
      }
    }
  }

  /// gx (planes, ah.in, aw.in) = the adjoint of forward applied to gy; with
  /// accumulate, added to gx instead of overwriting it.
  template <class T>
  static void backward(const T* gy, T* gx, std::int64_t planes, const resize_axis<T>& ah, const resize_axis<T>& aw,
                       bool accumulate = false) {
    const std::int64_t H = ah.in, W = aw.in, OH = ah.out, OW = aw.out;
    PROTOSEG_OMP_FOR(planes * (H * W + OH * OW))
    for (std::int64_t pr = 0; pr < planes * H; ++pr) {
      const std::int64_t p = pr / H, y = pr % H;
      T* out = gx + pr * W;
      if (!accumulate)
        for (std::int64_t xx = 0; xx < W; ++xx) out[xx] = T(0);
      for (std::int64_t oy = ah.first[y]; oy < ah.last[y]; ++oy) {
        const T wy = (ah.i0[oy] == y ? ah.w0[oy] : T(0)) + (ah.i1[oy] == y ? ah.w1[oy] : T(0));
        if (wy == T(0)) continue;
        const T* grow = gy + (p * OH + oy) * OW;
        for (std::int64_t xx = 0; xx < W; ++xx) {
          T acc = T(0);
          for (std::int64_t ox = aw.first[xx]; ox < aw.last[xx]; ++ox) {
            const T wx = (aw.i0[ox] == xx ? aw.w0[ox] : T(0)) + (aw.i1[ox] == xx ? aw.w1[ox] : T(0));
            acc += wx * grow[ox];
          }
          out[xx] += wy * acc;
        }
      }
    }
  }
};

}  // namespace protoseg::backend
