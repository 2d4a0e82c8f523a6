#pragma once
/// \file softmax.hpp
/// cpu fused softmax / log-softmax along an axis, their backward passes and
/// the cross-entropy gather, on (outer, n, inner) views.

#include "protoseg/backend/cpu/eigen.hpp"
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/backend/cpu/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct softmax<cpu> {
  /// y = softmax(x) (or log-softmax when `log` is set) along the middle axis.
  template <class T>
  static void forward(const T* x, T* y, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log) {
    if (inner == 1) {  // contiguous rows: Eigen's vectorised exp
      using row = Eigen::Array<T, Eigen::Dynamic, 1>;
      PROTOSEG_OMP_FOR(outer * n)
      for (std::int64_t o = 0; o < outer; ++o) {
        Eigen::Map<const row> xr(x + o * n, n);
        Eigen::Map<row> yr(y + o * n, n);
        const T mx = xr.maxCoeff();
        if (log) {
          const T lse = mx + std::log((xr - mx).exp().sum());
          yr = xr - lse;
        } else {
          yr = (xr - mx).exp();
          yr *= T(1) / yr.sum();
        }
      }
      return;
    }
    PROTOSEG_OMP_FOR(outer * n * inner)
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t i = 0; i < inner; ++i) {
        const T* px = x + o * n * inner + i;
        T* py = y + o * n * inner + i;
        T mx = px[0];
        for (std::int64_t k = 1; k < n; ++k) mx = px[k * inner] > mx ? px[k * inner] : mx;
        T s = 0;
        for (std::int64_t k = 0; k < n; ++k) s += std::exp(px[k * inner] - mx);
        if (log) {
          const T lse = mx + std::log(s);
          for (std::int64_t k = 0; k < n; ++k) py[k * inner] = px[k * inner] - lse;
        } else {
          const T inv = T(1) / s;
          for (std::int64_t k = 0; k < n; ++k) py[k * inner] = std::exp(px[k * inner] - mx) * inv;
        }
      }
    }
  }

  /// Input gradient from the output y and its gradient g: softmax gives
  /// y * (g - sum(g * y)), log-softmax gives g - exp(y) * sum(g).
  template <class T>
  static void backward(const T* y, const T* g, T* gx, std::int64_t outer, std::int64_t n,
                       std::int64_t inner, bool log) {
    if (inner == 1) {
      using row = Eigen::Array<T, Eigen::Dynamic, 1>;
      PROTOSEG_OMP_FOR(outer * n)
      for (std::int64_t o = 0; o < outer; ++o) {
        Eigen::Map<const row> yr(y + o * n, n), gr(g + o * n, n);
        Eigen::Map<row> gxr(gx + o * n, n);
        if (log) gxr = gr - yr.exp() * gr.sum();
        else gxr = yr * (gr - (gr * yr).sum());
      }
      return;
    }
    PROTOSEG_OMP_FOR(outer * n * inner)
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t i = 0; i < inner; ++i) {
        const std::int64_t base = o * n * inner + i;
        T s = 0;
        if (log) {
          for (std::int64_t k = 0; k < n; ++k) s += g[base + k * inner];
          for (std::int64_t k = 0; k < n; ++k)
            gx[base + k * inner] = g[base + k * inner] - std::exp(y[base + k * inner]) * s;
        } else {
          for (std::int64_t k = 0; k < n; ++k) s += g[base + k * inner] * y[base + k * inner];
          for (std::int64_t k = 0; k < n; ++k)
            gx[base + k * inner] = y[base + k * inner] * (g[base + k * inner] - s);
        }
      }
    }
  }

  /// Position of the first label that is neither in [0, n) nor the ignore
  /// index, or -1 when all are valid.
  static std::int64_t find_bad_label(const std::int64_t* labels, std::int64_t count, std::int64_t n,
                                     std::int64_t ignore_index) {
    for (std::int64_t j = 0; j < count; ++j) {
      const std::int64_t l = labels[j];
      if (l != ignore_index && (l < 0 || l >= n)) return j;
    }
    return -1;
  }

  /// Weighted negative log-likelihood: returns sum_j w[l_j] * -logp[l_j] and
  /// writes sum_j w[l_j] to *weight_sum, over labels that are not ignored.
  /// Labels must have been validated. `weight` may be null (all ones).
  template <class T>
  static T nll_forward(const T* logp, const std::int64_t* labels, const T* weight, std::int64_t outer,
                       std::int64_t n, std::int64_t inner, std::int64_t ignore_index, T* weight_sum) {
    double loss = 0, wsum = 0;
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t i = 0; i < inner; ++i) {
        const std::int64_t l = labels[o * inner + i];
        if (l == ignore_index) continue;
        const double w = weight ? double(weight[l]) : 1.0;
        loss -= w * double(logp[(o * n + l) * inner + i]);
        wsum += w;
      }
    }
    *weight_sum = static_cast<T>(wsum);
    return static_cast<T>(loss);
  }

  /// Gradient of scale * nll with respect to the logits:
  /// scale * w[l] * (softmax - onehot(l)) per non-ignored position, 0 elsewhere.
  template <class T>
  static void nll_logits_backward(const T* logp, const std::int64_t* labels, const T* weight,
                                  std::int64_t outer, std::int64_t n, std::int64_t inner,
                                  std::int64_t ignore_index, T scale, T* gx) {
    PROTOSEG_OMP_FOR(outer * n * inner)
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t i = 0; i < inner; ++i) {
        const std::int64_t l = labels[o * inner + i];
        const std::int64_t base = o * n * inner + i;
        if (l == ignore_index) {
          for (std::int64_t k = 0; k < n; ++k) gx[base + k * inner] = T(0);
          continue;
        }
        const T w = scale * (weight ? weight[l] : T(1));
        for (std::int64_t k = 0; k < n; ++k) {
          const T p = std::exp(logp[base + k * inner]);
          gx[base + k * inner] = w * (p - (k == l ? T(1) : T(0)));
        }
      }
    }
  }
};

}  // namespace protoseg::backend
