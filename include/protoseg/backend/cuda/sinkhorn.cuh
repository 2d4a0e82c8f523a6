#pragma once
/// \file sinkhorn.cuh
/// cuda segmented Sinkhorn-Knopp: supplementary Algorithm 1 for every class
/// in one Thrust launch (one work item per class, no allocation per class).
/// Layout as protoseg::ot::segmented_sinkhorn: scores N x M pixel-major, the
/// pixels of class c in rows [offsets[c], offsets[c + 1]).

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cmath>
#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {

/// backend::sinkhorn_status as int codes (the kernel writes ints).
enum : int {
  sinkhorn_ok = int(sinkhorn_status::ok),
  sinkhorn_non_finite = int(sinkhorn_status::non_finite_scores),
  sinkhorn_out_of_range = int(sinkhorn_status::out_of_range)
};

template <class T>
struct segmented_sinkhorn_fn {
  const T* S;
  T* Q;
  const std::int64_t* off;
  std::int64_t M;
  T inv_kappa;
  int iterations;
  double tolerance;
  bool log_domain;
  T* ws;  // C x M: row sums (plain) or row log-sum-exps (log domain)
  int* used;
  double* err;
  int* status;

  PROTOSEG_HOST_DEVICE static bool finite(T x) { return x - x == x - x; }

  PROTOSEG_HOST_DEVICE void operator()(std::int64_t c) const {
    const std::int64_t n = off[c + 1] - off[c];
    used[c] = 0;
    err[c] = 0.0;
    status[c] = sinkhorn_ok;
    if (n == 0) return;
    const T* s = S + off[c] * M;
    T* q = Q + off[c] * M;
    T* r = ws + c * M;
    for (std::int64_t j = 0; j < n * M; ++j)
      if (!finite(s[j])) {
        status[c] = sinkhorn_non_finite;
        return;
      }
    if (log_domain) solve_log(s, q, r, n, c);
    else solve_plain(s, q, r, n, c);
  }

  // Q = exp(S / kappa), Q /= sum(Q); rounds of row then column normalisation
  // (Algorithm 1); finally Q *= N so that every pixel's row sums to 1.
  PROTOSEG_HOST_DEVICE void solve_plain(const T* s, T* q, T* r, std::int64_t n, std::int64_t c) const {
    T total = 0;
    for (std::int64_t j = 0; j < n * M; ++j) {
      q[j] = std::exp(s[j] * inv_kappa);
      total += q[j];
    }
    if (!(total > T(0)) || !finite(total)) {
      status[c] = sinkhorn_out_of_range;
      return;
    }
    for (std::int64_t j = 0; j < n * M; ++j) q[j] /= total;
    for (int round = 1; round <= iterations; ++round) {
      for (std::int64_t k = 0; k < M; ++k) r[k] = 0;
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t k = 0; k < M; ++k) r[k] += q[i * M + k];
      for (std::int64_t k = 0; k < M; ++k) {
        if (!(r[k] > T(0)) || !finite(r[k])) {
          status[c] = sinkhorn_out_of_range;
          return;
        }
        r[k] = T(1) / (r[k] * T(M));
      }
      double e = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        T col = 0;
        for (std::int64_t k = 0; k < M; ++k) {
          q[i * M + k] *= r[k];
          col += q[i * M + k];
        }
        if (!(col > T(0)) || !finite(col)) {
          status[c] = sinkhorn_out_of_range;
          return;
        }
        const T inv = T(1) / (col * T(n));
        for (std::int64_t k = 0; k < M; ++k) q[i * M + k] *= inv;
      }
      // prototype-marginal error of the column-normalised Q: max_k |M * rowsum_k - 1|
      for (std::int64_t k = 0; k < M; ++k) r[k] = 0;
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t k = 0; k < M; ++k) r[k] += q[i * M + k];
      for (std::int64_t k = 0; k < M; ++k) {
        const double d = double(r[k]) * double(M) - 1.0;
        e = d < 0 ? (e > -d ? e : -d) : (e > d ? e : d);
      }
      used[c] = round;
      err[c] = e;
      if (tolerance > 0 && e <= tolerance) break;
    }
    for (std::int64_t j = 0; j < n * M; ++j) q[j] *= T(n);
  }

  // The same rounds on log Q with log-sum-exp, so exp(S / kappa) never
  // overflows; the result is exp(log Q + log N).
  PROTOSEG_HOST_DEVICE void solve_log(const T* s, T* q, T* r, std::int64_t n, std::int64_t c) const {
    T mx = s[0] * inv_kappa;
    for (std::int64_t j = 0; j < n * M; ++j) {
      q[j] = s[j] * inv_kappa;
      mx = q[j] > mx ? q[j] : mx;
    }
    T acc = 0;
    for (std::int64_t j = 0; j < n * M; ++j) acc += std::exp(q[j] - mx);
    const T lse_all = mx + std::log(acc);
    for (std::int64_t j = 0; j < n * M; ++j) q[j] -= lse_all;
    const T log_m = std::log(T(M)), log_n = std::log(T(n));
    for (int round = 1; round <= iterations; ++round) {
      for (std::int64_t k = 0; k < M; ++k) {
        T m = q[k];
        for (std::int64_t i = 1; i < n; ++i) m = q[i * M + k] > m ? q[i * M + k] : m;
        T a = 0;
        for (std::int64_t i = 0; i < n; ++i) a += std::exp(q[i * M + k] - m);
        r[k] = m + std::log(a) + log_m;
      }
      for (std::int64_t i = 0; i < n; ++i) {
        T m = q[i * M] - r[0];
        for (std::int64_t k = 0; k < M; ++k) {
          q[i * M + k] -= r[k];
          m = q[i * M + k] > m ? q[i * M + k] : m;
        }
        T a = 0;
        for (std::int64_t k = 0; k < M; ++k) a += std::exp(q[i * M + k] - m);
        const T lse = m + std::log(a) + log_n;
        for (std::int64_t k = 0; k < M; ++k) q[i * M + k] -= lse;
      }
      double e = 0;
      for (std::int64_t k = 0; k < M; ++k) {
        T a = 0;
        for (std::int64_t i = 0; i < n; ++i) a += std::exp(q[i * M + k]);
        const double d = double(a) * double(M) - 1.0;
        e = d < 0 ? (e > -d ? e : -d) : (e > d ? e : d);
      }
      used[c] = round;
      err[c] = e;
      if (tolerance > 0 && e <= tolerance) break;
    }
    for (std::int64_t j = 0; j < n * M; ++j) {
      q[j] = std::exp(q[j] + log_n);
      if (!finite(q[j])) {
        status[c] = sinkhorn_out_of_range;
        return;
      }
    }
  }
};

}  // namespace cuda_detail

template <>
struct sinkhorn<cuda> {
  /// Algorithm 1 for every class c (pixels [offsets[c], offsets[c + 1]) of
  /// the N x M scores) into Q (may alias S). `ws` holds C x M values; per
  /// class it reports the rounds run, the marginal error and a status
  /// (0 ok, 1 non-finite scores, 2 out of the floating-point range).
  template <class T>
  static void segmented(const T* S, T* Q, const std::int64_t* offsets, std::int64_t C, std::int64_t M,
                        const sinkhorn_settings& o, T* ws, int* used, double* err, int* status) {
    if (C <= 0) return;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(C),
                     cuda_detail::segmented_sinkhorn_fn<T>{S, Q, offsets, M, T(1.0 / o.kappa), o.iterations,
                                                           o.tolerance, o.log_domain, ws, used, err, status});
  }
};

}  // namespace protoseg::backend
