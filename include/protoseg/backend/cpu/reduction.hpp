#pragma once
/// \file reduction.hpp
/// cpu reductions along the middle axis of an (outer, n, inner) view.

#include "protoseg/backend/cpu/eigen.hpp"
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/functors.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct reduction<cpu> {
  /// out[o, i] = fold(f, init, in[o, 0..n, i]).
  template <class T, class F>
  static void reduce(const T* in, T* out, std::int64_t outer, std::int64_t n, std::int64_t inner,
                     T init, F f) {
    if constexpr (std::is_same_v<F, fn::plus> && std::is_floating_point_v<T>) {
      if (inner == 1) {  // contiguous rows: Eigen's vectorised sum (reassociated)
        // Long rows are summed in blocks whose sums are added in double, so
        // that the error does not grow with the row's length (a float row
        // of 1e5 elements summed straight through loses about three digits,
        // and how many depends on how Eigen was vectorised).
        using array = Eigen::Array<T, Eigen::Dynamic, 1>;
        constexpr std::int64_t block = 1024;
        PROTOSEG_OMP_FOR(outer * n)
        for (std::int64_t o = 0; o < outer; ++o) {
          const T* p = in + o * n;
          if (n <= block) {
            out[o] = init + Eigen::Map<const array>(p, n).sum();
            continue;
          }
          double acc = 0;
          for (std::int64_t b = 0; b < n; b += block)
            acc += static_cast<double>(Eigen::Map<const array>(p + b, std::min(block, n - b)).sum());
          out[o] = init + static_cast<T>(acc);
        }
        return;
      }
    }
    if (inner == 1) {
      PROTOSEG_OMP_FOR(outer * n * inner)
      for (std::int64_t o = 0; o < outer; ++o) {
        const T* p = in + o * n;
        T acc = init;
        for (std::int64_t k = 0; k < n; ++k) acc = f(acc, p[k]);
        out[o] = acc;
      }
      return;
    }
    PROTOSEG_OMP_FOR(outer * n * inner)
    for (std::int64_t o = 0; o < outer; ++o) {
      T* po = out + o * inner;
      for (std::int64_t i = 0; i < inner; ++i) po[i] = init;
      for (std::int64_t k = 0; k < n; ++k) {
        const T* p = in + (o * n + k) * inner;
        for (std::int64_t i = 0; i < inner; ++i) po[i] = f(po[i], p[i]);
      }
    }
  }

  /// Largest value and the first index reaching it along the axis. NaN wins
  /// (as in PyTorch), so a NaN input is never hidden behind a finite maximum.
  template <class T>
  static void argmax(const T* in, T* values, std::int64_t* indices, std::int64_t outer,
                     std::int64_t n, std::int64_t inner) {
    if (inner == 1) {  // contiguous rows
      // Branch-free scan (conditional moves: random scores would mispredict
      // a branch a few times per row; the prototype head's max over M = 10
      // runs this on N * C rows), with a NaN rescan of the rare row that has one.
      if (n <= 32 && outer >= 16) {  // short rows, 16 at a time (one lane each)
        argmax_short_rows(in, values, indices, outer, n);
        return;
      }
      PROTOSEG_OMP_FOR(outer * n)
      for (std::int64_t o = 0; o < outer; ++o) {
        const T* p = in + o * n;
        T best = p[0];
        std::int64_t arg = 0;
        bool nan = best != best;
        for (std::int64_t k = 1; k < n; ++k) {
          const T v = p[k];
          const bool gt = v > best;
          best = gt ? v : best;
          arg = gt ? k : arg;
          nan |= v != v;
        }
        if (nan) {  // the first NaN wins
          for (std::int64_t k = 0; k < n; ++k)
            if (p[k] != p[k]) {
              best = p[k];
              arg = k;
              break;
            }
        }
        if (values) values[o] = best;
        indices[o] = arg;
      }
      return;
    }
    PROTOSEG_OMP_FOR(outer * n * inner)
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t i = 0; i < inner; ++i) {
        const T* p = in + o * n * inner + i;
        T best = p[0];
        std::int64_t arg = 0;
        for (std::int64_t k = 1; k < n; ++k) {
          const T v = p[k * inner];
          if (best != best) break;
          if (v > best || v != v) {
            best = v;
            arg = k;
          }
        }
        if (values) values[o * inner + i] = best;
        indices[o * inner + i] = arg;
      }
    }
  }

  /// argmax of short contiguous rows: 16 rows side by side, so that the
  /// compiler vectorises across rows (lane j scans row j).
  template <class T>
  static void argmax_short_rows(const T* in, T* values, std::int64_t* indices, std::int64_t outer,
                                std::int64_t n) {
    const std::int64_t groups = (outer + 15) / 16;
    PROTOSEG_OMP_FOR(outer * n)
    for (std::int64_t gi = 0; gi < groups; ++gi) {
      const std::int64_t o0 = std::min(gi * 16, outer - 16);  // the last group overlaps the one before
      const T* p = in + o0 * n;
      T best[16];
      std::int32_t arg[16];
      bool nan = false;
      for (int j = 0; j < 16; ++j) {
        best[j] = p[j * n];
        arg[j] = 0;
        nan |= best[j] != best[j];
      }
      for (std::int64_t k = 1; k < n; ++k) {
        for (int j = 0; j < 16; ++j) {
          const T v = p[j * n + k];
          const bool gt = v > best[j];
          best[j] = gt ? v : best[j];
          arg[j] = gt ? static_cast<std::int32_t>(k) : arg[j];
          nan |= v != v;
        }
      }
      if (nan) {  // the first NaN of a row wins
        for (int j = 0; j < 16; ++j)
          for (std::int64_t k = 0; k < n; ++k)
            if (p[j * n + k] != p[j * n + k]) {
              best[j] = p[j * n + k];
              arg[j] = static_cast<std::int32_t>(k);
              break;
            }
      }
      for (int j = 0; j < 16; ++j) {
        if (values) values[o0 + j] = best[j];
        indices[o0 + j] = arg[j];
      }
    }
  }

  /// Gradient routing of max along an axis: out[o, idx[o, i], i] = g[o, i],
  /// zero elsewhere.
  template <class T>
  static void scatter_axis(const T* g, const std::int64_t* idx, T* out, std::int64_t outer, std::int64_t n,
                           std::int64_t inner);
  /// out[o, idx[o, i], i] += g[o, i]; the rest of out is left as it is.
  template <class T>
  static void scatter_axis_add(const T* g, const std::int64_t* idx, T* out, std::int64_t outer, std::int64_t n,
                               std::int64_t inner) {
    PROTOSEG_OMP_FOR(outer * inner)
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t i = 0; i < inner; ++i) out[(o * n + idx[o * inner + i]) * inner + i] += g[o * inner + i];
  }
};

}  // namespace protoseg::backend

namespace protoseg::backend {
template <class T>
void reduction<cpu>::scatter_axis(const T* g, const std::int64_t* idx, T* out, std::int64_t outer,
                                  std::int64_t n, std::int64_t inner) {
  PROTOSEG_OMP_FOR(outer * n * inner)
  for (std::int64_t o = 0; o < outer; ++o) {
    T* po = out + o * n * inner;
    for (std::int64_t j = 0; j < n * inner; ++j) po[j] = T(0);
    for (std::int64_t i = 0; i < inner; ++i) po[idx[o * inner + i] * inner + i] = g[o * inner + i];
  }
}
}  // namespace protoseg::backend
