#pragma once
/// \file softmax.hpp
/// cpu fused softmax / log-softmax along an axis, their backward passes and
/// the cross-entropy gather, on (outer, n, inner) views.

#include "protoseg/backend/cpu/eigen.hpp"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "protoseg/backend/functors.hpp"
#include "protoseg/backend/parallel.hpp"
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

  /// Checks that every label is in [0, n) or the ignore index, and calls
  /// report(the first offending position) otherwise (report throws). The
  /// cuda policy may call it later (cuda_deferred_checks): report must own
  /// what it reads.
  static void check_labels(const std::int64_t* labels, std::int64_t count, std::int64_t n,
                           std::int64_t ignore_index, const std::function<void(std::int64_t)>& report) {
    const std::int64_t bad = find_bad_label(labels, count, n, ignore_index);
    if (bad >= 0) report(bad);
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

  /// Cross-entropy from the logits, without materialising the log-softmax:
  /// writes lse[o, i] = log sum_k exp(x[o, k, i]) and adds to acc[0] the loss
  /// sum_j w[l_j] * (lse_j - x[l_j]) over the labels that are not ignored and
  /// to acc[1] the weight sum sum_j w[l_j], each summed in double and rounded
  /// to T. acc is the policy's memory (on the device for cuda: the loss never
  /// comes back to the host). Labels must have been validated; `weight` may
  /// be null (all ones).
  template <class T>
  static void cross_entropy_forward(const T* x, const std::int64_t* labels, const T* weight, std::int64_t outer,
                                    std::int64_t n, std::int64_t inner, std::int64_t ignore_index, T* lse,
                                    double* acc) {
    using array = Eigen::Array<T, Eigen::Dynamic, 1>;
    if (inner == 1) {
      PROTOSEG_OMP_FOR(outer * n)
      for (std::int64_t o = 0; o < outer; ++o) {
        if (labels[o] == ignore_index) {
          lse[o] = T(0);
          continue;
        }
        Eigen::Map<const array> xr(x + o * n, n);
        const T mx = xr.maxCoeff();
        lse[o] = mx + std::log((xr - mx).exp().sum());
      }
    } else {
      const std::int64_t blocks = (inner + block - 1) / block;
      PROTOSEG_OMP_FOR(outer * n * inner)
      for (std::int64_t ob = 0; ob < outer * blocks; ++ob) {
        const std::int64_t o = ob / blocks, i0 = (ob % blocks) * block, len = std::min(block, inner - i0);
        const T* base = x + o * n * inner + i0;
        Eigen::Map<array> out(lse + o * inner + i0, len);
        out = Eigen::Map<const array>(base, len);  // the running maximum
        for (std::int64_t k = 1; k < n; ++k) out = out.max(Eigen::Map<const array>(base + k * inner, len));
        array sum = array::Zero(len);
        for (std::int64_t k = 0; k < n; ++k) sum += (Eigen::Map<const array>(base + k * inner, len) - out).exp();
        out += sum.log();
      }
    }
    double loss = 0, wsum = 0;
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t i = 0; i < inner; ++i) {
        const std::int64_t l = labels[o * inner + i];
        if (l == ignore_index) continue;
        const double w = weight ? double(weight[l]) : 1.0;
        loss += w * (double(lse[o * inner + i]) - double(x[(o * n + l) * inner + i]));
        wsum += w;
      }
    }
    acc[0] += fn::rounded_to<T>(loss);
    acc[1] += fn::rounded_to<T>(wsum);
  }

  /// Gradient of g[0] * (mean cross-entropy) with respect to the logits,
  /// from the logits and their `lse` (cross_entropy_forward), with
  /// scale = g[0] / T(acc[1]) (0 when the weight sum acc[1] is 0):
  /// scale * w[l] * (exp(x - lse) - onehot(l)) per non-ignored position, 0
  /// elsewhere; added to gx instead when `accumulate` is set. gx may be x.
  /// g and acc are the policy's memory.
  template <class T>
  static void cross_entropy_backward(const T* x, const T* lse, const std::int64_t* labels, const T* weight,
                                     std::int64_t outer, std::int64_t n, std::int64_t inner,
                                     std::int64_t ignore_index, const T* g, const double* acc, T* gx,
                                     bool accumulate = false) {
    using array = Eigen::Array<T, Eigen::Dynamic, 1>;
    const T weight_sum = static_cast<T>(acc[1]);
    const T scale = weight_sum > T(0) ? g[0] / weight_sum : T(0);
    if (inner == 1) {
      PROTOSEG_OMP_FOR(outer * n)
      for (std::int64_t o = 0; o < outer; ++o) {
        Eigen::Map<array> gr(gx + o * n, n);
        const std::int64_t l = labels[o];
        if (l == ignore_index) {
          if (!accumulate) gr.setZero();
          continue;
        }
        const T w = scale * (weight ? weight[l] : T(1));
        if (accumulate) gr += (Eigen::Map<const array>(x + o * n, n) - lse[o]).exp() * w;
        else gr = (Eigen::Map<const array>(x + o * n, n) - lse[o]).exp() * w;
        gr[l] -= w;
      }
      return;
    }
    const std::int64_t blocks = (inner + block - 1) / block;
    PROTOSEG_OMP_FOR(outer * n * inner)
    for (std::int64_t ob = 0; ob < outer * blocks; ++ob) {
      const std::int64_t o = ob / blocks, i0 = (ob % blocks) * block, len = std::min(block, inner - i0);
      const std::int64_t* lab = labels + o * inner + i0;
      array w(len);
      for (std::int64_t i = 0; i < len; ++i)
        w[i] = lab[i] == ignore_index ? T(0) : scale * (weight ? weight[lab[i]] : T(1));
      Eigen::Map<const array> l(lse + o * inner + i0, len);
      for (std::int64_t k = 0; k < n; ++k) {
        const std::int64_t off = o * n * inner + k * inner + i0;
        if (accumulate) Eigen::Map<array>(gx + off, len) += (Eigen::Map<const array>(x + off, len) - l).exp() * w;
        else Eigen::Map<array>(gx + off, len) = (Eigen::Map<const array>(x + off, len) - l).exp() * w;
      }
      for (std::int64_t i = 0; i < len; ++i)
        if (lab[i] != ignore_index) gx[o * n * inner + lab[i] * inner + i0 + i] -= w[i];
    }
  }

 private:
  static constexpr std::int64_t block = 256;  // columns per work item when inner > 1
};

}  // namespace protoseg::backend
