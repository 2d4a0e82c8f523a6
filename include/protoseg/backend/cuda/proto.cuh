#pragma once
/// \file proto.cuh
/// cuda kernels of the ProtoSeg prototype step and of PPD, on Thrust: pixels
/// grouped by class with a stable radix sort (CSR offsets by a vectorised
/// lower_bound), their own class's scores gathered for the segmented
/// Sinkhorn, the hard assignment (argmax, or argmax of Q plus host-drawn
/// Gumbel noise), and the momentum update of the prototypes from the sums of
/// the correctly classified pixels assigned to each (a second stable sort by
/// prototype, then one work item per prototype coordinate summing its segment
/// in pixel order, so the sums equal the cpu ones bit for bit).

#include <thrust/binary_search.h>
#include <thrust/count.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include <cmath>
#include <cstdint>

#include "protoseg/backend/cuda/device_sum.cuh"
#include "protoseg/backend/cuda/executor.cuh"
#include "protoseg/backend/cuda/gemm.cuh"
#include "protoseg/backend/kernels/proto.hpp"
#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {

using i64 = std::int64_t;

/// Sort key of a pixel: its class, or C (after every class) when ignored.
struct label_key_fn {
  i64 C, ignore;
  PROTOSEG_HOST_DEVICE i64 operator()(i64 k) const { return k == ignore ? C : k; }
};


/// f[k, d] = sum of emb[src[j], d] over the segment of prototype k, in order.
template <class T>
struct segment_sum_fn {
  const T* emb;
  const i64* src;
  const i64* seg;
  i64 D;
  T* f;
  PROTOSEG_HOST_DEVICE void operator()(i64 i) const {
    const i64 k = i / D, d = i % D;
    T s = 0;
    for (i64 j = seg[k]; j < seg[k + 1]; ++j) s += emb[src[j] * D + d];
    f[i] = s;
  }
};

template <class T>
struct summarize_row_fn {  // one pixel's C * M scores -> class maxima, log-sum-exp, own scores
  const T* scores;
  const i64* labels;  // may be null
  i64 C, M, ignore;
  T inv_t;
  T* logits;
  T* lse;
  T* own;  // may be null
  PROTOSEG_HOST_DEVICE void operator()(i64 n) const {
    const T* row = scores + n * C * M;
    T mx = row[0];
    for (i64 c = 0; c < C; ++c) {
      T best = row[c * M];
      for (i64 m = 1; m < M; ++m) best = row[c * M + m] > best ? row[c * M + m] : best;
      logits[n * C + c] = best;
      mx = best > mx ? best : mx;
    }
    mx *= inv_t;
    T sum = 0;
    for (i64 k = 0; k < C * M; ++k) sum += std::exp(row[k] * inv_t - mx);
    lse[n] = mx + std::log(sum);
    if (own && labels && labels[n] != ignore)
      for (i64 m = 0; m < M; ++m) own[n * M + m] = row[labels[n] * M + m];
  }
};

struct not_ignored_fn {
  i64 ignore;
  PROTOSEG_HOST_DEVICE bool operator()(i64 t) const { return t != ignore; }
};

template <class T>
struct ppd_pair_fn {  // ((1 - picked)^2, 1) of a pixel that is not ignored, else (0, 0)
  const T* picked;
  const i64* t;
  i64 ignore;
  PROTOSEG_HOST_DEVICE double2_sum operator()(i64 n) const {
    if (t[n] == ignore) return {0.0, 0.0};
    return {kernels::ppd_term_fn<T>{picked, t, ignore}(n), 1.0};
  }
};
struct below_fn {  // (1, 0) where keys[r] < limit
  const i64* keys;
  i64 limit;
  PROTOSEG_HOST_DEVICE double2_sum operator()(i64 r) const { return {keys[r] < limit ? 1.0 : 0.0, 0.0}; }
};
struct set_first_fn {  // out[0] = a
  double* out;
  PROTOSEG_HOST_DEVICE void operator()(double a, double) const { out[0] = a; }
};
struct set_pair_fn {  // out = (a, b)
  double* out;
  PROTOSEG_HOST_DEVICE void operator()(double a, double b) const {
    out[0] = a;
    out[1] = b;
  }
};

}  // namespace cuda_detail

template <>
struct prototype<cuda> : prototype_common<cuda> {
  using i64 = std::int64_t;

  /// Stable grouping of the N pixels by label: order (N) lists the labelled
  /// pixels of class 0, 1, ..., C - 1 in pixel order, then the ignored ones;
  /// offsets (C + 1) are the CSR row offsets of the classes. Labels must be
  /// valid (class ids or the ignore index).
  static void group_by_label(const i64* labels, i64 N, i64 C, i64 ignore, i64* order, i64* offsets) {
    using cuda_detail::dp;
    cuda_detail::scratch<i64> keys(N);
    thrust::transform(cuda_detail::exec(), dp(labels), dp(labels) + N, keys.begin(), cuda_detail::label_key_fn{C, ignore});
    thrust::sequence(cuda_detail::exec(), dp(order), dp(order) + N);
    thrust::stable_sort_by_key(cuda_detail::exec(), keys.begin(), keys.end(), dp(order));
    thrust::lower_bound(cuda_detail::exec(), keys.begin(), keys.end(), thrust::counting_iterator<i64>(0),
                        thrust::counting_iterator<i64>(C + 1), dp(offsets));
  }
  /// Per pixel n of the scores (N, C * M): logits (N, C) = the max over each
  /// class's M scores, lse (N) = log sum exp(scores * inv_t) over the row,
  /// and, when own is not null, own[n, m] = scores[n, labels[n] * M + m] for
  /// the pixels whose label is not `ignore` (own is zeroed by the caller).
  template <class T>
  static void summarize_rows(const T* scores, const i64* labels, i64 N, i64 C, i64 M, i64 ignore, T inv_t, T* logits,
                             T* lse, T* own) {
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(N),
                     cuda_detail::summarize_row_fn<T>{scores, labels, C, M, ignore, inv_t, logits, lse, own});
  }
  /// The score summary of the unit embeddings E (N, D) against the
  /// prototypes (C, M, D): S = E P^T by one GEMM into a device scratch
  /// buffer, then summarize_rows (see the cpu primitive for the contract).
  template <class T>
  static void summarize(const T* emb, const T* protos, const i64* labels, i64 N, i64 C, i64 M, i64 D, i64 ignore,
                        T inv_t, T* logits, T* lse, T* own) {
    cuda_detail::scratch<T> scores(N * C * M);
    T* sp = scores.get();
    gemm<cuda>::run(1, false, true, N, C * M, D, T(1), emb, 0, protos, 0, T(0), sp, N * C * M);
    summarize_rows(sp, labels, N, C, M, ignore, inv_t, logits, lse, own);
  }
  /// keys (R): the prototype id (class * M + chosen) of every correctly
  /// classified grouped pixel, C * M for the others; count[0] (device
  /// memory) = how many are correct.
  template <class T>
  static void correct_keys(const T* logits, const i64* labels, const i64* order, const i64* chosen, i64 R, i64 C,
                           i64 M, i64* keys, double* count) {
    using cuda_detail::dp;
    if (R > 0)
      thrust::transform(cuda_detail::exec(), thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(R),
                        dp(keys), kernels::correct_key_fn<T>{logits, labels, order, chosen, C, M});
    cuda_detail::sum_pairs(R, cuda_detail::below_fn{keys, C * M}, cuda_detail::set_first_fn{count});
  }
  /// Momentum update (Eq. 10) of the K = C * M prototypes (K, D) in place from
  /// the L2-normalised sum of the embeddings (N, D) of pixels order[r] with
  /// keys[r] == k (keys[r] == K: none), then every prototype re-normalised.
  template <class T>
  static void momentum_update(const i64* keys, const i64* order, i64 R, const T* emb, i64 D, i64 K, T gamma, T* protos) {
    using cuda_detail::dp;
    cuda_detail::scratch<i64> k(R), src(R), seg(K + 1);
    cuda_detail::device_copy(k.get(), keys, static_cast<std::size_t>(R) * sizeof(i64));
    cuda_detail::device_copy(src.get(), order, static_cast<std::size_t>(R) * sizeof(i64));
    thrust::stable_sort_by_key(cuda_detail::exec(), k.begin(), k.end(), src.begin());
    thrust::lower_bound(cuda_detail::exec(), k.begin(), k.end(), thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(K + 1),
                        seg.begin());
    cuda_detail::scratch<T> f(K * D);
    const i64* sp = src.get();
    const i64* gp = seg.get();
    T* fp = f.get();
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(K * D),
                     cuda_detail::segment_sum_fn<T>{emb, sp, gp, D, fp});
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(K),
                     kernels::momentum_row_fn<T>{fp, gp, D, gamma, protos});
  }
  /// PPD forward, as prototype<cpu>::ppd_forward: acc (device memory) gets
  /// the sum and the count; nothing comes back to the host.
  template <class T>
  static void ppd_forward(const T* x, const i64* t, i64 N, i64 K, i64 ignore, T* picked, double* acc) {
    if (N > 0)
      thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(N),
                       kernels::ppd_pick_fn<T>{x, t, K, ignore, picked});
    cuda_detail::sum_pairs(N, cuda_detail::ppd_pair_fn<T>{picked, t, ignore}, cuda_detail::set_pair_fn{acc});
  }
};

}  // namespace protoseg::backend
