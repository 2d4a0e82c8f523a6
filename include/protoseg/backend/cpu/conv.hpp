#pragma once
/// \file conv.hpp
/// cpu convolution helpers: im2col / col2im (the GEMM formulation of conv2d)
/// and the direct depthwise kernels (one filter per channel).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct conv<cpu> {
  /// col (C*kh*kw, out_h*out_w) from one image x (C, H, W); zeros where the
  /// window reads padding. Row (c*kh + ky)*kw + kx, column oy*out_w + ox.
  template <class T>
  static void im2col(const T* x, T* col, const conv_geometry& g) {
    im2col_batch(x, col, 1, g);
  }

  /// im2col of n images x (n, C, H, W) side by side: col (C*kh*kw, n * L),
  /// L = out_h*out_w, image b in columns [b*L, (b+1)*L): the right operand
  /// of one GEMM for the whole chunk. The (row, image) pieces are shared
  /// among the threads.
  template <class T>
  static void im2col_batch(const T* x, T* col, std::int64_t n, const conv_geometry& g) {
    const std::int64_t kk = g.kernel_h * g.kernel_w, L = g.out_h * g.out_w;
    const std::int64_t plane = g.height * g.width, img = g.channels * plane;
    if (pads(g)) {
      // Narrow outputs of stride 1 (a ResNet's 3x3 convs on 16x16 ... 2x2
      // maps): the channel plane is copied into a zero-bordered plane once,
      // then every output row of every kernel offset is one contiguous copy
      // of out_w values (a single vector move at widths 16, 8, 4).
      PROTOSEG_OMP_FOR(n * g.channels * kk * L)
      for (std::int64_t i = 0; i < g.channels * n; ++i) {
        const std::int64_t c = i / n, b = i % n;
        const T* p = padded_plane(x + b * img + c * plane, g);
        T* out = col + c * kk * n * L + b * L;
        const std::int64_t wp = g.width + 2 * g.pad_w;
        for (std::int64_t ky = 0; ky < g.kernel_h; ++ky)
          for (std::int64_t kx = 0; kx < g.kernel_w; ++kx)
            copy_rows(p + ky * g.dilation_h * wp + kx * g.dilation_w, wp,
                      out + (ky * g.kernel_w + kx) * n * L, g.out_w, g.out_h, g.out_w);
      }
      return;
    }
    if (gathers(g)) {
      // Strided outputs (the 7x7 stem, the first conv of a stage): rows of 2 to 16
      // values make a per-row copy all loop overhead, so each of the kh*kw
      // rows of a channel is one gather through a table of source offsets
      // (-1 where the window reads padding), the same for every channel.
      const auto table = gather_table(g);
      PROTOSEG_OMP_FOR(n * g.channels * kk * L)
      for (std::int64_t i = 0; i < g.channels * n; ++i) {
        const std::int64_t c = i / n, b = i % n;
        const T* xc = x + b * img + c * plane;
        T* out = col + c * kk * n * L + b * L;
        for (std::int64_t k = 0; k < kk; ++k) {
          const std::int32_t* t = table.data() + k * L;
          T* o = out + k * n * L;
          for (std::int64_t q = 0; q < L; ++q) {
            const std::int32_t j = t[q];
            o[q] = j >= 0 ? xc[j] : T(0);
          }
        }
      }
      return;
    }
    // Wider outputs: one piece per (channel, image), its kh*kw rows in one
    // call, each output row a contiguous copy when the stride is 1.
    PROTOSEG_OMP_FOR(n * g.channels * kk * L)
    for (std::int64_t i = 0; i < g.channels * n; ++i) {
      const std::int64_t c = i / n, b = i % n;
      im2col_channel(x + b * img + c * plane, col + c * kk * n * L + b * L, n * L, g);
    }
  }

  /// The adjoint of im2col: x (C, H, W) = the sum of the col entries that
  /// read each pixel (gather form: every output written once, no races).
  template <class T>
  static void col2im(const T* col, T* x, const conv_geometry& g) {
    col2im_batch(col, x, 1, g);
  }

  /// The adjoint of im2col_batch: col (C*kh*kw, n * L) into x (n, C, H, W).
  template <class T>
  static void col2im_batch(const T* col, T* x, std::int64_t n, const conv_geometry& g) {
    const std::int64_t L = g.out_h * g.out_w, kk = g.kernel_h * g.kernel_w;
    const std::int64_t plane = g.height * g.width, img = g.channels * plane;
    if (pads(g)) {
      // The adjoint of the padded im2col: each kernel offset's rows are added
      // into a zero-bordered plane, whose inside is then the gradient. Each
      // pixel receives its terms in kernel-offset order, as in the other
      // forms, so all give the same sums.
      PROTOSEG_OMP_FOR(n * img * kk)
      for (std::int64_t i = 0; i < n * g.channels; ++i) {
        const std::int64_t b = i / g.channels, c = i % g.channels;
        const std::int64_t hp = g.height + 2 * g.pad_h, wp = g.width + 2 * g.pad_w;
        T* p = scratch_plane<T>(hp * wp);
        std::fill(p, p + hp * wp, T(0));
        const T* in = col + c * kk * n * L + b * L;
        for (std::int64_t ky = 0; ky < g.kernel_h; ++ky)
          for (std::int64_t kx = 0; kx < g.kernel_w; ++kx)
            add_rows(in + (ky * g.kernel_w + kx) * n * L, g.out_w, p + ky * g.dilation_h * wp + kx * g.dilation_w, wp,
                     g.out_h, g.out_w);
        copy_rows(p + g.pad_h * wp + g.pad_w, wp, x + b * img + c * plane, g.width, g.height, g.width);
      }
      return;
    }
    if (gathers(g)) {
      // Strided outputs: the adjoint of im2col's gather, a
      // scatter-add through the same table within one plane (one thread per
      // plane). Each pixel receives its terms in kernel-offset order, as in
      // the row form below, so both give the same sums.
      const auto table = gather_table(g);
      PROTOSEG_OMP_FOR(n * img * kk)
      for (std::int64_t i = 0; i < n * g.channels; ++i) {
        const std::int64_t b = i / g.channels, c = i % g.channels;
        T* xp = x + b * img + c * plane;
        for (std::int64_t j = 0; j < plane; ++j) xp[j] = T(0);
        const T* in = col + c * kk * n * L + b * L;
        for (std::int64_t k = 0; k < kk; ++k) {
          const std::int32_t* t = table.data() + k * L;
          const T* o = in + k * n * L;
          for (std::int64_t q = 0; q < L; ++q)
            if (t[q] >= 0) xp[t[q]] += o[q];
        }
      }
      return;
    }
    // One piece per (image, channel plane), as im2col_batch.
    PROTOSEG_OMP_FOR(n * img * kk)
    for (std::int64_t i = 0; i < n * g.channels; ++i) {
      const std::int64_t b = i / g.channels, c = i % g.channels;
      for (std::int64_t y = 0; y < g.height; ++y) col2im_row(col + b * L, n * L, x + b * img, c * g.height + y, g);
    }
  }

  /// Depthwise conv2d: y[n, c] = w[c] * x[n, c] + bias[c] (bias may be null);
  /// w is (C, 1, kh, kw), g.channels = C.
  template <class T>
  static void depthwise_forward(const T* x, const T* w, const T* bias, T* y, std::int64_t n, const conv_geometry& g) {
    const std::int64_t planes = n * g.channels, HW = g.height * g.width, L = g.out_h * g.out_w;
    const std::int64_t kk = g.kernel_h * g.kernel_w;
    PROTOSEG_OMP_FOR(planes * L * kk)
    for (std::int64_t p = 0; p < planes; ++p) {
      const std::int64_t c = p % g.channels;
      const T* xp = x + p * HW;
      const T* wc = w + c * kk;
      T* yp = y + p * L;
      const T b = bias ? bias[c] : T(0);
      for (std::int64_t oy = 0; oy < g.out_h; ++oy) {
        T* yr = yp + oy * g.out_w;
        for (std::int64_t ox = 0; ox < g.out_w; ++ox) yr[ox] = b;
        for (std::int64_t ky = 0; ky < g.kernel_h; ++ky) {
          const std::int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h;
          if (iy < 0 || iy >= g.height) continue;
          const T* xr = xp + iy * g.width;
          for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
            const T wv = wc[ky * g.kernel_w + kx];
            const std::int64_t base = kx * g.dilation_w - g.pad_w;
            // Clip the ox range so that the inner loop has no branch.
            std::int64_t lo = 0, hi = g.out_w;
            while (lo < hi && lo * g.stride_w + base < 0) ++lo;
            while (hi > lo && (hi - 1) * g.stride_w + base >= g.width) --hi;
            for (std::int64_t ox = lo; ox < hi; ++ox) yr[ox] += wv * xr[ox * g.stride_w + base];
          }
        }
      }
    }
  }

  /// Gradient of depthwise_forward with respect to x (gather form).
  template <class T>
  static void depthwise_backward_input(const T* gy, const T* w, T* gx, std::int64_t n, const conv_geometry& g) {
    const std::int64_t planes = n * g.channels, HW = g.height * g.width, L = g.out_h * g.out_w;
    const std::int64_t kk = g.kernel_h * g.kernel_w;
    PROTOSEG_OMP_FOR(planes * HW * kk)
    for (std::int64_t p = 0; p < planes; ++p) {
      const std::int64_t c = p % g.channels;
      const T* gp = gy + p * L;
      const T* wc = w + c * kk;
      T* xp = gx + p * HW;
      for (std::int64_t y = 0; y < g.height; ++y) {
        T* xr = xp + y * g.width;
        for (std::int64_t xx = 0; xx < g.width; ++xx) xr[xx] = T(0);
        for (std::int64_t ky = 0; ky < g.kernel_h; ++ky) {
          const std::int64_t ty = y + g.pad_h - ky * g.dilation_h;
          if (ty < 0 || ty % g.stride_h != 0 || ty / g.stride_h >= g.out_h) continue;
          const T* gr = gp + (ty / g.stride_h) * g.out_w;
          for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
            const T wv = wc[ky * g.kernel_w + kx];
            const std::int64_t off = g.pad_w - kx * g.dilation_w;
            if (g.stride_w == 1) {
              const std::int64_t lo = std::max<std::int64_t>(0, -off), hi = std::min(g.width, g.out_w - off);
              for (std::int64_t xx = lo; xx < hi; ++xx) xr[xx] += wv * gr[xx + off];
            } else {
              for (std::int64_t xx = 0; xx < g.width; ++xx) {
                const std::int64_t tx = xx + off;
                if (tx < 0 || tx % g.stride_w != 0 || tx / g.stride_w >= g.out_w) continue;
                xr[xx] += wv * gr[tx / g.stride_w];
              }
            }
          }
        }
      }
    }
  }

  /// Gradient of depthwise_forward with respect to w (C, 1, kh, kw): the sum
  /// over the batch and the output positions.
  template <class T>
  static void depthwise_backward_weight(const T* gy, const T* x, T* gw, std::int64_t n, const conv_geometry& g) {
    const std::int64_t HW = g.height * g.width, L = g.out_h * g.out_w, kk = g.kernel_h * g.kernel_w;
    PROTOSEG_OMP_FOR(n * g.channels * L * kk)
    for (std::int64_t c = 0; c < g.channels; ++c) {
      for (std::int64_t k = 0; k < kk; ++k) {
        const std::int64_t ky = k / g.kernel_w, kx = k % g.kernel_w;
        const std::int64_t base = kx * g.dilation_w - g.pad_w;
        std::int64_t lo = 0, hi = g.out_w;
        while (lo < hi && lo * g.stride_w + base < 0) ++lo;
        while (hi > lo && (hi - 1) * g.stride_w + base >= g.width) --hi;
        T acc = T(0);
        for (std::int64_t b = 0; b < n; ++b) {
          const T* xp = x + (b * g.channels + c) * HW;
          const T* gp = gy + (b * g.channels + c) * L;
          for (std::int64_t oy = 0; oy < g.out_h; ++oy) {
            const std::int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h;
            if (iy < 0 || iy >= g.height) continue;
            const T* xr = xp + iy * g.width;
            const T* gr = gp + oy * g.out_w;
            for (std::int64_t ox = lo; ox < hi; ++ox) acc += gr[ox] * xr[ox * g.stride_w + base];
          }
        }
        gw[c * kk + k] = acc;
      }
    }
  }
 private:
  /// Output widths below which im2col gathers through an offset table.
  static constexpr std::int64_t gather_below_width = 32;

  // Whether im2col_batch / col2im_batch go through a zero-bordered copy of
  // each plane: narrow outputs of stride 1.
  static bool pads(const conv_geometry& g) {
    return g.stride_h == 1 && g.stride_w == 1 && g.out_w < gather_below_width;
  }

  // A per-thread buffer of at least n values (kept between calls).
  template <class T>
  static T* scratch_plane(std::int64_t n) {
    thread_local std::vector<T> buf;
    if (static_cast<std::int64_t>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
    return buf.data();
  }

  // The plane xc (H, W) inside a zero border of pad_h rows and pad_w columns,
  // in this thread's scratch.
  template <class T>
  static const T* padded_plane(const T* xc, const conv_geometry& g) {
    const std::int64_t hp = g.height + 2 * g.pad_h, wp = g.width + 2 * g.pad_w;
    T* p = scratch_plane<T>(hp * wp);
    std::fill(p, p + g.pad_h * wp, T(0));
    for (std::int64_t y = 0; y < g.height; ++y) {
      T* r = p + (y + g.pad_h) * wp;
      std::fill(r, r + g.pad_w, T(0));
      std::copy(xc + y * g.width, xc + (y + 1) * g.width, r + g.pad_w);
      std::fill(r + g.pad_w + g.width, r + wp, T(0));
    }
    std::fill(p + (g.height + g.pad_h) * wp, p + hp * wp, T(0));
    return p;
  }

  // rows rows of w values: dst (ld_dst apart) = src (ld_src apart), or +=.
  // Widths 16, 8, 4 and 2 get loops of a fixed count (one vector each).
  template <std::int64_t W, bool Add, class T>
  static void rows_fixed(const T* src, std::int64_t ld_src, T* dst, std::int64_t ld_dst, std::int64_t rows,
                         std::int64_t w) {
    const std::int64_t n = W > 0 ? W : w;
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* s = src + r * ld_src;
      T* d = dst + r * ld_dst;
      for (std::int64_t q = 0; q < n; ++q) {
        if constexpr (Add) d[q] += s[q];
        else d[q] = s[q];
      }
    }
  }
  template <bool Add, class T>
  static void rows_dispatch(const T* src, std::int64_t ld_src, T* dst, std::int64_t ld_dst, std::int64_t rows,
                            std::int64_t w) {
    switch (w) {
      case 16: rows_fixed<16, Add>(src, ld_src, dst, ld_dst, rows, w); break;
      case 8: rows_fixed<8, Add>(src, ld_src, dst, ld_dst, rows, w); break;
      case 4: rows_fixed<4, Add>(src, ld_src, dst, ld_dst, rows, w); break;
      case 2: rows_fixed<2, Add>(src, ld_src, dst, ld_dst, rows, w); break;
      default: rows_fixed<0, Add>(src, ld_src, dst, ld_dst, rows, w);
    }
  }
  // rows rows of w values from src (ld_src apart) to dst (ld_dst apart).
  template <class T>
  static void copy_rows(const T* src, std::int64_t ld_src, T* dst, std::int64_t ld_dst, std::int64_t rows,
                        std::int64_t w) {
    rows_dispatch<false>(src, ld_src, dst, ld_dst, rows, w);
  }
  // The same, added into dst.
  template <class T>
  static void add_rows(const T* src, std::int64_t ld_src, T* dst, std::int64_t ld_dst, std::int64_t rows,
                       std::int64_t w) {
    rows_dispatch<true>(src, ld_src, dst, ld_dst, rows, w);
  }

  // Whether im2col_batch / col2im_batch go through gather_table: strided
  // outputs (and narrow ones not taken by pads), on planes whose offsets fit
  // the table's int32.
  static bool gathers(const conv_geometry& g) {
    return (g.out_w < gather_below_width || g.stride_w != 1) &&
           g.height * g.width <= std::numeric_limits<std::int32_t>::max();
  }

  // For each kernel offset k = ky*kw + kx and output position q = oy*out_w +
  // ox: the offset iy*W + ix of the input pixel that col row k reads at q
  // within its channel plane, or -1 where that is padding.
  static std::vector<std::int32_t> gather_table(const conv_geometry& g) {
    const std::int64_t L = g.out_h * g.out_w;
    std::vector<std::int32_t> t(static_cast<std::size_t>(g.kernel_h * g.kernel_w * L));
    std::size_t e = 0;
    for (std::int64_t ky = 0; ky < g.kernel_h; ++ky)
      for (std::int64_t kx = 0; kx < g.kernel_w; ++kx)
        for (std::int64_t oy = 0; oy < g.out_h; ++oy)
          for (std::int64_t ox = 0; ox < g.out_w; ++ox) {
            const std::int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h;
            const std::int64_t ix = ox * g.stride_w - g.pad_w + kx * g.dilation_w;
            const bool inside = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width;
            t[e++] = inside ? static_cast<std::int32_t>(iy * g.width + ix) : -1;
          }
    return t;
  }

  // The kh*kw rows of one channel xc (H, W) of one image, ld apart: row
  // ky*kw + kx at out + (ky*kw + kx)*ld.
  template <class T>
  static void im2col_channel(const T* xc, T* out, std::int64_t ld, const conv_geometry& g) {
    for (std::int64_t ky = 0; ky < g.kernel_h; ++ky)
      for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
        T* o = out + (ky * g.kernel_w + kx) * ld;
        const std::int64_t base = kx * g.dilation_w - g.pad_w;
        const std::int64_t lo = g.stride_w == 1 ? std::clamp<std::int64_t>(-base, 0, g.out_w) : 0;
        const std::int64_t hi = g.stride_w == 1 ? std::clamp<std::int64_t>(g.width - base, lo, g.out_w) : 0;
        for (std::int64_t oy = 0; oy < g.out_h; ++oy, o += g.out_w) {
          const std::int64_t iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h;
          if (iy < 0 || iy >= g.height) {
            for (std::int64_t ox = 0; ox < g.out_w; ++ox) o[ox] = T(0);
            continue;
          }
          const T* xr = xc + iy * g.width;
          if (g.stride_w == 1) {  // zeros, a contiguous copy of the valid range, zeros
            for (std::int64_t ox = 0; ox < lo; ++ox) o[ox] = T(0);
            for (std::int64_t ox = lo; ox < hi; ++ox) o[ox] = xr[ox + base];
            for (std::int64_t ox = hi; ox < g.out_w; ++ox) o[ox] = T(0);
          } else {
            for (std::int64_t ox = 0; ox < g.out_w; ++ox) {
              const std::int64_t ix = ox * g.stride_w + base;
              o[ox] = (ix >= 0 && ix < g.width) ? xr[ix] : T(0);
            }
          }
        }
      }
  }

  // Image row cr = c*H + y of col2im; col rows are ld apart.
  template <class T>
  static void col2im_row(const T* col, std::int64_t ld, T* x, std::int64_t cr, const conv_geometry& g) {
    const std::int64_t c = cr / g.height, y = cr % g.height;
    T* xr = x + cr * g.width;
    for (std::int64_t xx = 0; xx < g.width; ++xx) xr[xx] = T(0);
    for (std::int64_t ky = 0; ky < g.kernel_h; ++ky) {
      const std::int64_t ty = y + g.pad_h - ky * g.dilation_h;
      if (ty < 0 || ty % g.stride_h != 0) continue;
      const std::int64_t oy = ty / g.stride_h;
      if (oy >= g.out_h) continue;
      for (std::int64_t kx = 0; kx < g.kernel_w; ++kx) {
        const T* crow = col + ((c * g.kernel_h + ky) * g.kernel_w + kx) * ld + oy * g.out_w;
        if (g.stride_w == 1) {  // ox = xx + shift over a clipped range: no branch, vectorised
          const std::int64_t shift = g.pad_w - kx * g.dilation_w;
          const std::int64_t lo = std::max<std::int64_t>(0, -shift), hi = std::min(g.width, g.out_w - shift);
          for (std::int64_t xx = lo; xx < hi; ++xx) xr[xx] += crow[xx + shift];
          continue;
        }
        for (std::int64_t xx = 0; xx < g.width; ++xx) {
          const std::int64_t tx = xx + g.pad_w - kx * g.dilation_w;
          if (tx < 0 || tx % g.stride_w != 0) continue;
          const std::int64_t ox = tx / g.stride_w;
          if (ox < g.out_w) xr[xx] += crow[ox];
        }
      }
    }
  }
};

}  // namespace protoseg::backend
