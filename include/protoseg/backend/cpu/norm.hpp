#pragma once
/// \file norm.hpp
/// cpu normalisation kernels: layer norm over the last dimension (forward,
/// input gradient, parameter gradients) and batch-norm channel statistics.
/// Statistics accumulate in double, so float results do not drift with size.

#include <cmath>
#include <algorithm>
#include <cstdint>

#include "protoseg/backend/cpu/executor.hpp"
#include "protoseg/backend/kernels/norm.hpp"
#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct norm<cpu> {
  /// y = (x - mean) * rstd * gamma + beta for each of `rows` rows of length
  /// n; gamma / beta may be null (no affine). Saves mean and rstd per row.
  template <class T>
  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                                 std::int64_t rows, std::int64_t n, double eps) {
    executor<cpu>::run(rows, kernels::layer_norm_row_fn<T>{x, gamma, beta, y, mean, rstd, n, eps}, rows * n);
  }

  /// Input gradient of layer_norm_forward: with h = (x - mean) rstd and
  /// u = g * gamma, dx = rstd (u - mean(u) - h mean(u h)).
  template <class T>
  static void layer_norm_backward(const T* g, const T* x, const T* gamma, const T* mean, const T* rstd, T* gx,
                                  std::int64_t rows, std::int64_t n) {
    executor<cpu>::run(rows, kernels::layer_norm_backward_row_fn<T>{g, x, gamma, mean, rstd, gx, n}, rows * n);
  }

  /// Parameter gradients of layer_norm_forward: ggamma[j] = sum_r g h,
  /// gbeta[j] = sum_r g (either output may be null).
  template <class T>
  static void layer_norm_param_grads(const T* g, const T* x, const T* mean, const T* rstd, T* ggamma, T* gbeta,
                                     std::int64_t rows, std::int64_t n) {
    // Column sums in row blocks: each thread owns a block of columns and
    // walks the rows, so memory is read row by row within the block.
    constexpr std::int64_t block = 64;
    const std::int64_t blocks = (n + block - 1) / block;
    PROTOSEG_OMP_FOR(rows * n)
    for (std::int64_t bi = 0; bi < blocks; ++bi) {
      const std::int64_t j0 = bi * block, j1 = std::min(n, j0 + block);
      double sg[block] = {}, sh[block] = {};
      for (std::int64_t r = 0; r < rows; ++r) {
        const T* gr = g + r * n;
        const T* xr = x + r * n;
        const T m = mean[r], rs = rstd[r];
        for (std::int64_t j = j0; j < j1; ++j) {
          sg[j - j0] += gr[j];
          sh[j - j0] += double(gr[j] * ((xr[j] - m) * rs));
        }
      }
      for (std::int64_t j = j0; j < j1; ++j) {
        if (ggamma) ggamma[j] = T(sh[j - j0]);
        if (gbeta) gbeta[j] = T(sg[j - j0]);
      }
    }
  }

  /// Per-channel mean and biased variance of x viewed as (n, c, hw).
  template <class T>
  static void channel_moments(const T* x, T* mean, T* var, std::int64_t n, std::int64_t c, std::int64_t hw) {
    PROTOSEG_OMP_FOR(n * c * hw)
    for (std::int64_t ch = 0; ch < c; ++ch) {
      double s = 0;
      for (std::int64_t b = 0; b < n; ++b) {
        const T* p = x + (b * c + ch) * hw;
        for (std::int64_t i = 0; i < hw; ++i) s += p[i];
      }
      const double count = double(n * hw);
      const double m = s / count;
      double v = 0;
      for (std::int64_t b = 0; b < n; ++b) {
        const T* p = x + (b * c + ch) * hw;
        for (std::int64_t i = 0; i < hw; ++i) v += (p[i] - m) * (p[i] - m);
      }
      mean[ch] = T(m);
      var[ch] = T(v / count);
    }
  }

  /// Per-channel sums for the batch-norm backward: sum_g[c] = sum g and
  /// sum_gx[c] = sum g (x - mean[c]), over (n, hw).
  template <class T>
  static void channel_grad_sums(const T* g, const T* x, const T* mean, T* sum_g, T* sum_gx, std::int64_t n,
                                std::int64_t c, std::int64_t hw) {
    PROTOSEG_OMP_FOR(n * c * hw)
    for (std::int64_t ch = 0; ch < c; ++ch) {
      double sg = 0, sgx = 0;
      const T m = mean[ch];
      for (std::int64_t b = 0; b < n; ++b) {
        const T* gp = g + (b * c + ch) * hw;
        const T* xp = x + (b * c + ch) * hw;
        for (std::int64_t i = 0; i < hw; ++i) {
          sg += gp[i];
          sgx += double(gp[i]) * double(xp[i] - m);
        }
      }
      sum_g[ch] = T(sg);
      sum_gx[ch] = T(sgx);
    }
  }
};

}  // namespace protoseg::backend
