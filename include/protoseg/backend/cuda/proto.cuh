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
#include <thrust/device_vector.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include <cmath>
#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/proto_primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {

using i64 = std::int64_t;

struct nearest_labels_fn {
  const i64* in;
  i64* out;
  i64 h, w, oh, ow;
  float sh, sw;
  PROTOSEG_HOST_DEVICE void operator()(i64 i) const {
    const i64 x = i % ow, y = (i / ow) % oh, b = i / (ow * oh);
    i64 sy = static_cast<i64>(std::floor(static_cast<float>(y) * sh));
    i64 sx = static_cast<i64>(std::floor(static_cast<float>(x) * sw));
    if (sy > h - 1) sy = h - 1;
    if (sx > w - 1) sx = w - 1;
    out[i] = in[(b * h + sy) * w + sx];
  }
};

template <class T>
struct normalize_row_fn {
  T* x;
  i64 D;
  PROTOSEG_HOST_DEVICE void operator()(i64 r) const {
    T* p = x + r * D;
    T s = 0;
    for (i64 d = 0; d < D; ++d) s += p[d] * p[d];
    const T nrm = std::sqrt(s);
    const T inv = T(1) / (nrm > T(1e-12) ? nrm : T(1e-12));
    for (i64 d = 0; d < D; ++d) p[d] *= inv;
  }
};

/// Sort key of a pixel: its class, or C (after every class) when ignored.
struct label_key_fn {
  i64 C, ignore;
  PROTOSEG_HOST_DEVICE i64 operator()(i64 k) const { return k == ignore ? C : k; }
};

template <class T>
struct gather_own_fn {
  const T* scores;
  const i64* labels;
  const i64* order;
  i64 C, M;
  T* block;
  PROTOSEG_HOST_DEVICE void operator()(i64 i) const {
    const i64 r = i / M, m = i % M, n = order[r];
    block[i] = C > 0 ? scores[(n * C + labels[n]) * M + m] : scores[n * M + m];
  }
};

template <class T>
struct harden_fn {
  const T* q;
  const double* noise;  // R x M Gumbel variates, or null (argmax)
  i64 M;
  i64* index;
  i64* chosen;
  PROTOSEG_HOST_DEVICE void operator()(i64 r) const {
    const T* row = q + r * M;
    i64 best = 0;
    for (i64 m = 1; m < M; ++m)
      if (row[m] > row[best]) best = m;
    index[r] = best;
    if (!noise) {
      chosen[r] = best;
      return;
    }
    i64 pick = 0;
    double best_v = double(row[0]) + noise[r * M];
    for (i64 m = 1; m < M; ++m) {
      const double v = double(row[m]) + noise[r * M + m];
      if (v > best_v) best_v = v, pick = m;
    }
    chosen[r] = pick;
  }
};

struct scatter_targets_fn {
  const i64* order;
  const i64* labels;
  const i64* index;
  i64 M;
  i64* targets;
  PROTOSEG_HOST_DEVICE void operator()(i64 r) const {
    const i64 n = order[r];
    targets[n] = labels[n] * M + index[r];
  }
};

/// Prototype id (class * M + chosen) of a correctly classified pixel
/// (first maximum of its class logits == label, as std::max_element), else K.
template <class T>
struct correct_key_fn {
  const T* logits;
  const i64* labels;
  const i64* order;
  const i64* chosen;
  i64 C, M;
  PROTOSEG_HOST_DEVICE i64 operator()(i64 r) const {
    const i64 n = order[r];
    const T* row = logits + n * C;
    i64 pred = 0;
    for (i64 c = 1; c < C; ++c)
      if (row[pred] < row[c]) pred = c;
    return pred == labels[n] ? labels[n] * M + chosen[r] : C * M;
  }
};

struct less_than_fn {
  i64 bound;
  PROTOSEG_HOST_DEVICE bool operator()(i64 k) const { return k < bound; }
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

/// Eq. 10 on one prototype, then its re-normalisation (as the cpu step).
template <class T>
struct momentum_row_fn {
  const T* f;
  const i64* seg;
  i64 D;
  T gamma;
  T* p;
  PROTOSEG_HOST_DEVICE static T inv_norm(const T* v, i64 D) {
    T s = 0;
    for (i64 d = 0; d < D; ++d) s += v[d] * v[d];
    const T nrm = std::sqrt(s);
    return T(1) / (nrm > T(1e-12) ? nrm : T(1e-12));
  }
  PROTOSEG_HOST_DEVICE void operator()(i64 k) const {
    T* pk = p + k * D;
    if (seg[k + 1] > seg[k]) {
      const T* fk = f + k * D;
      const T inv = inv_norm(fk, D);
      for (i64 d = 0; d < D; ++d) pk[d] = gamma * pk[d] + (T(1) - gamma) * (fk[d] * inv);
    }
    const T inv = inv_norm(pk, D);
    for (i64 d = 0; d < D; ++d) pk[d] *= inv;
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

template <class T>
struct ppd_pick_fn {
  const T* x;
  const i64* t;
  i64 K, ignore;
  T* picked;
  PROTOSEG_HOST_DEVICE void operator()(i64 n) const { picked[n] = t[n] == ignore ? T(0) : x[n * K + t[n]]; }
};

template <class T>
struct ppd_term_fn {
  const T* picked;
  const i64* t;
  i64 ignore;
  PROTOSEG_HOST_DEVICE double operator()(i64 n) const {
    return t[n] == ignore ? 0.0 : double(T(1) - picked[n]) * double(T(1) - picked[n]);
  }
};

struct not_ignored_fn {
  i64 ignore;
  PROTOSEG_HOST_DEVICE bool operator()(i64 t) const { return t != ignore; }
};

template <class T>
struct ppd_backward_fn {
  const i64* t;
  const T* picked;
  i64 K, ignore;
  T scale;
  T* gx;
  PROTOSEG_HOST_DEVICE void operator()(i64 n) const {
    if (t[n] != ignore) gx[n * K + t[n]] += scale * (T(1) - picked[n]);  // adds: gx holds zeros or other gradients
  }
};

}  // namespace cuda_detail

template <>
struct prototype<cuda> {
  using i64 = std::int64_t;

  /// Nearest-neighbour resize of int64 labels (b, h, w) -> (b, oh, ow), as
  /// F.interpolate(mode='nearest') (scale in float).
  static void nearest_labels(const i64* in, i64* out, i64 b, i64 h, i64 w, i64 oh, i64 ow) {
    const float sh = static_cast<float>(h) / static_cast<float>(oh), sw = static_cast<float>(w) / static_cast<float>(ow);
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(b * oh * ow),
                     cuda_detail::nearest_labels_fn{in, out, h, w, oh, ow, sh, sw});
  }
  /// Rows of x (R, D) divided by max(||row||, 1e-12), in place.
  template <class T>
  static void normalize_rows(T* x, i64 R, i64 D) {
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(R),
                     cuda_detail::normalize_row_fn<T>{x, D});
  }
  /// Stable grouping of the N pixels by label: order (N) lists the labelled
  /// pixels of class 0, 1, ..., C - 1 in pixel order, then the ignored ones;
  /// offsets (C + 1) are the CSR row offsets of the classes. Labels must be
  /// valid (class ids or the ignore index).
  static void group_by_label(const i64* labels, i64 N, i64 C, i64 ignore, i64* order, i64* offsets) {
    using cuda_detail::dp;
    thrust::device_vector<i64> keys(static_cast<std::size_t>(N));
    thrust::transform(dp(labels), dp(labels) + N, keys.begin(), cuda_detail::label_key_fn{C, ignore});
    thrust::sequence(dp(order), dp(order) + N);
    thrust::stable_sort_by_key(keys.begin(), keys.end(), dp(order));
    thrust::lower_bound(keys.begin(), keys.end(), thrust::counting_iterator<i64>(0),
                        thrust::counting_iterator<i64>(C + 1), dp(offsets));
  }
  /// block (R, M): row r = the scores (N, C, M) of pixel order[r] against its
  /// own class's M prototypes; with C = 0, scores are already those own-class
  /// scores (N, M).
  template <class T>
  static void gather_own_scores(const T* scores, const i64* labels, const i64* order, i64 R, i64 C, i64 M, T* block) {
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(R * M),
                     cuda_detail::gather_own_fn<T>{scores, labels, order, C, M, block});
  }
  /// Per pixel n of the scores (N, C * M): logits (N, C) = the max over each
  /// class's M scores, lse (N) = log sum exp(scores * inv_t) over the row,
  /// and, when own is not null, own[n, m] = scores[n, labels[n] * M + m] for
  /// the pixels whose label is not `ignore` (own is zeroed by the caller).
  template <class T>
  static void summarize_rows(const T* scores, const i64* labels, i64 N, i64 C, i64 M, i64 ignore, T inv_t, T* logits,
                             T* lse, T* own) {
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(N),
                     cuda_detail::summarize_row_fn<T>{scores, labels, C, M, ignore, inv_t, logits, lse, own});
  }
  /// Argmax per row of q (R, M) into index; chosen = argmax of q + noise
  /// (R x M doubles) when noise is not null, else index.
  template <class T>
  static void harden(const T* q, const double* noise, i64 R, i64 M, i64* index, i64* chosen) {
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(R),
                     cuda_detail::harden_fn<T>{q, noise, M, index, chosen});
  }
  /// targets[order[r]] = label * M + index[r] for the R grouped pixels.
  static void scatter_targets(const i64* order, const i64* labels, const i64* index, i64 R, i64 M, i64* targets) {
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(R),
                     cuda_detail::scatter_targets_fn{order, labels, index, M, targets});
  }
  /// keys (R): the prototype id (class * M + chosen) of every correctly
  /// classified grouped pixel, C * M for the others; returns how many are correct.
  template <class T>
  static i64 correct_keys(const T* logits, const i64* labels, const i64* order, const i64* chosen, i64 R, i64 C, i64 M,
                          i64* keys) {
    using cuda_detail::dp;
    thrust::transform(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(R), dp(keys),
                      cuda_detail::correct_key_fn<T>{logits, labels, order, chosen, C, M});
    return static_cast<i64>(thrust::count_if(dp(keys), dp(keys) + R, cuda_detail::less_than_fn{C * M}));
  }
  /// Momentum update (Eq. 10) of the K = C * M prototypes (K, D) in place from
  /// the L2-normalised sum of the embeddings (N, D) of pixels order[r] with
  /// keys[r] == k (keys[r] == K: none), then every prototype re-normalised.
  template <class T>
  static void momentum_update(const i64* keys, const i64* order, i64 R, const T* emb, i64 D, i64 K, T gamma, T* protos) {
    using cuda_detail::dp;
    thrust::device_vector<i64> k(dp(keys), dp(keys) + R);
    thrust::device_vector<i64> src(dp(order), dp(order) + R);
    thrust::stable_sort_by_key(k.begin(), k.end(), src.begin());
    thrust::device_vector<i64> seg(static_cast<std::size_t>(K + 1));
    thrust::lower_bound(k.begin(), k.end(), thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(K + 1),
                        seg.begin());
    thrust::device_vector<T> f(static_cast<std::size_t>(K * D));
    const i64* sp = thrust::raw_pointer_cast(src.data());
    const i64* gp = thrust::raw_pointer_cast(seg.data());
    T* fp = thrust::raw_pointer_cast(f.data());
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(K * D),
                     cuda_detail::segment_sum_fn<T>{emb, sp, gp, D, fp});
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(K),
                     cuda_detail::momentum_row_fn<T>{fp, gp, D, gamma, protos});
  }
  /// PPD forward: picked[n] = x[n, t[n]] (0 where ignored); returns the sum of
  /// (1 - picked)^2 over the non-ignored pixels (double) and their count.
  template <class T>
  static double ppd_forward(const T* x, const i64* t, i64 N, i64 K, i64 ignore, T* picked, i64* count) {
    using cuda_detail::dp;
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(N),
                     cuda_detail::ppd_pick_fn<T>{x, t, K, ignore, picked});
    const double acc = thrust::transform_reduce(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(N),
                                                cuda_detail::ppd_term_fn<T>{picked, t, ignore}, 0.0,
                                                thrust::plus<double>());
    *count = static_cast<i64>(thrust::count_if(dp(t), dp(t) + N, cuda_detail::not_ignored_fn{ignore}));
    return acc;
  }
  /// PPD backward into a zeroed gx (N, K): gx[n, t[n]] = scale * (1 - picked[n]).
  template <class T>
  static void ppd_backward(const i64* t, const T* picked, i64 N, i64 K, i64 ignore, T scale, T* gx) {
    thrust::for_each(thrust::counting_iterator<i64>(0), thrust::counting_iterator<i64>(N),
                     cuda_detail::ppd_backward_fn<T>{t, picked, K, ignore, scale, gx});
  }
};

}  // namespace protoseg::backend
