#pragma once
/// \file optim.hpp
/// cpu optimiser updates: AdamW (torch.optim.AdamW's rule) in one pass over
/// memory, in chunks that stay in L1.

#include <algorithm>
#include <cstdint>

#include "protoseg/backend/cpu/eigen.hpp"
#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct optim<cpu> {
  /// One AdamW update of n values: m, v (and vmax when not null) updated,
  /// p = p * decay + m * neg_step_size / (sqrt(vmax or v) / bc2_sqrt + eps).
  template <class T>
  static void adamw(T* p, const T* g, T* m, T* v, T* vmax, std::int64_t n, const adamw_scalars& s) {
    const T decay = static_cast<T>(s.decay), b1 = static_cast<T>(s.beta1), c1 = static_cast<T>(s.one_minus_beta1);
    const T b2 = static_cast<T>(s.beta2), c2 = static_cast<T>(s.one_minus_beta2);
    const T bc2 = static_cast<T>(s.bc2_sqrt), eps = static_cast<T>(s.eps), ns = static_cast<T>(s.neg_step_size);
    // Eigen's vectorised arithmetic and sqrt (a scalar loop does not
    // vectorise: std::sqrt may set errno).
    using array = Eigen::Array<T, Eigen::Dynamic, 1>;
    constexpr std::int64_t chunk = 2048;
    const std::int64_t chunks = (n + chunk - 1) / chunk;
    PROTOSEG_OMP_FOR(n)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::int64_t i0 = c * chunk, len = std::min(chunk, n - i0);
      const Eigen::Map<const array> gi(g + i0, len);
      Eigen::Map<array> mi(m + i0, len), vi(v + i0, len), pi(p + i0, len);
      mi = mi * b1 + gi * c1;
      vi = vi * b2 + gi * c2 * gi;
      if (vmax) {
        Eigen::Map<array> xi(vmax + i0, len);
        xi = xi.max(vi);
        pi = pi * decay + mi * ns / (xi.sqrt() / bc2 + eps);
      } else {
        pi = pi * decay + mi * ns / (vi.sqrt() / bc2 + eps);
      }
    }
  }
};

}  // namespace protoseg::backend
