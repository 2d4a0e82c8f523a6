#pragma once
/// \file proto.hpp
/// The per-item bodies of the ProtoSeg kernels (prototype step, PPD,
/// nearest-label resize, row normalisation), written once as host/device
/// functors: `executor<cpu>` runs them as OpenMP loops, `executor<cuda>` with
/// Thrust. `prototype_common<P>` holds the kernels that are nothing but such
/// a loop; each backend's `prototype<P>` adds the ones whose cpu and cuda
/// forms differ (grouping, sums in a fixed order, the score summary).

#include <cmath>
#include <cstdint>

#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace kernels {

/// 1 / max(||v||, 1e-12) of the D values at v (F.normalize's denominator).
template <class T>
PROTOSEG_HOST_DEVICE T inv_norm(const T* v, std::int64_t D) {
  T s = 0;
  for (std::int64_t d = 0; d < D; ++d) s += v[d] * v[d];
  const T nrm = std::sqrt(s);
  return T(1) / (nrm > T(1e-12) ? nrm : T(1e-12));
}

struct nearest_labels_fn {
  const std::int64_t* in;
  std::int64_t* out;
  std::int64_t h, w, oh, ow;
  float sh, sw;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t x = i % ow, y = (i / ow) % oh, b = i / (ow * oh);
    std::int64_t sy = static_cast<std::int64_t>(std::floor(static_cast<float>(y) * sh));
    std::int64_t sx = static_cast<std::int64_t>(std::floor(static_cast<float>(x) * sw));
    if (sy > h - 1) sy = h - 1;
    if (sx > w - 1) sx = w - 1;
    out[i] = in[(b * h + sy) * w + sx];
  }
};

template <class T>
struct normalize_row_fn {
  T* x;
  std::int64_t D;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t r) const {
    T* p = x + r * D;
    const T inv = inv_norm(p, D);
    for (std::int64_t d = 0; d < D; ++d) p[d] *= inv;
  }
};

template <class T>
struct gather_own_fn {
  const T* scores;
  const std::int64_t* labels;
  const std::int64_t* order;
  std::int64_t C, M;
  T* block;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t r = i / M, m = i % M, n = order[r];
    block[i] = C > 0 ? scores[(n * C + labels[n]) * M + m] : scores[n * M + m];
  }
};

template <class T>
struct harden_fn {
  const T* q;
  const double* noise;  // R x M Gumbel variates, or null (argmax)
  std::int64_t M;
  std::int64_t* index;
  std::int64_t* chosen;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t r) const {
    const T* row = q + r * M;
    std::int64_t best = 0;
    for (std::int64_t m = 1; m < M; ++m)
      if (row[m] > row[best]) best = m;
    index[r] = best;
    if (!noise) {
      chosen[r] = best;
      return;
    }
    std::int64_t pick = 0;
    double best_v = double(row[0]) + noise[r * M];
    for (std::int64_t m = 1; m < M; ++m) {
      const double v = double(row[m]) + noise[r * M + m];
      if (v > best_v) best_v = v, pick = m;
    }
    chosen[r] = pick;
  }
};

struct scatter_targets_fn {
  const std::int64_t* order;
  const std::int64_t* labels;
  const std::int64_t* index;
  std::int64_t M;
  std::int64_t* targets;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t r) const {
    const std::int64_t n = order[r];
    targets[n] = labels[n] * M + index[r];
  }
};

/// Prototype id (class * M + chosen) of a correctly classified pixel
/// (first maximum of its class logits == label, as std::max_element), else K.
template <class T>
struct correct_key_fn {
  const T* logits;
  const std::int64_t* labels;
  const std::int64_t* order;
  const std::int64_t* chosen;
  std::int64_t C, M;
  PROTOSEG_HOST_DEVICE std::int64_t operator()(std::int64_t r) const {
    const std::int64_t n = order[r];
    const T* row = logits + n * C;
    std::int64_t pred = 0;
    for (std::int64_t c = 1; c < C; ++c)
      if (row[pred] < row[c]) pred = c;
    return pred == labels[n] ? labels[n] * M + chosen[r] : C * M;
  }
};

/// Eq. 10 on one prototype, then its re-normalisation (as the cpu step).
template <class T>
struct momentum_row_fn {
  const T* f;
  const std::int64_t* seg;
  std::int64_t D;
  T gamma;
  T* p;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t k) const {
    T* pk = p + k * D;
    if (seg[k + 1] > seg[k]) {
      const T* fk = f + k * D;
      const T inv = inv_norm(fk, D);
      for (std::int64_t d = 0; d < D; ++d) pk[d] = gamma * pk[d] + (T(1) - gamma) * (fk[d] * inv);
    }
    const T inv = inv_norm(pk, D);
    for (std::int64_t d = 0; d < D; ++d) pk[d] *= inv;
  }
};

template <class T>
struct ppd_pick_fn {
  const T* x;
  const std::int64_t* t;
  std::int64_t K, ignore;
  T* picked;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t n) const { picked[n] = t[n] == ignore ? T(0) : x[n * K + t[n]]; }
};

template <class T>
struct ppd_term_fn {
  const T* picked;
  const std::int64_t* t;
  std::int64_t ignore;
  PROTOSEG_HOST_DEVICE double operator()(std::int64_t n) const {
    return t[n] == ignore ? 0.0 : double(T(1) - picked[n]) * double(T(1) - picked[n]);
  }
};

template <class T>
struct ppd_backward_fn {
  const std::int64_t* t;
  const T* picked;
  std::int64_t K, ignore;
  const T* g;         // the upstream gradient (one value)
  const double* acc;  // acc[1]: the number of pixels that are not ignored
  T* gx;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t n) const {
    if (t[n] == ignore || acc[1] == 0) return;
    const T scale = g[0] * T(-2) / static_cast<T>(acc[1]);
    gx[n * K + t[n]] += scale * (T(1) - picked[n]);  // adds: gx holds zeros or other gradients
  }
};
/// PPD's mean from ppd_forward's sums (acc: sum, count), one work item.
template <class T>
struct ppd_mean_fn {
  const double* acc;
  T* out;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t) const {
    out[0] = acc[1] > 0 ? static_cast<T>(acc[0] / acc[1]) : T(0);
  }
};

}  // namespace kernels

/// The kernels of `prototype<P>` that are one loop over a host/device body.
template <class P>
struct prototype_common {
  using i64 = std::int64_t;

  /// Nearest-neighbour resize of int64 labels (b, h, w) -> (b, oh, ow), as
  /// F.interpolate(mode='nearest') (scale in float, as ATen).
  static void nearest_labels(const i64* in, i64* out, i64 b, i64 h, i64 w, i64 oh, i64 ow) {
    const float sh = static_cast<float>(h) / static_cast<float>(oh), sw = static_cast<float>(w) / static_cast<float>(ow);
    executor<P>::run(b * oh * ow, kernels::nearest_labels_fn{in, out, h, w, oh, ow, sh, sw});
  }
  /// Rows of x (R, D) divided by max(||row||, 1e-12), in place.
  template <class T>
  static void normalize_rows(T* x, i64 R, i64 D) {
    executor<P>::run(R, kernels::normalize_row_fn<T>{x, D}, R * D);
  }
  /// block (R, M): row r = the scores (N, C, M) of pixel order[r] against its
  /// own class's M prototypes; with C = 0, scores are already those own-class
  /// scores (N, M).
  template <class T>
  static void gather_own_scores(const T* scores, const i64* labels, const i64* order, i64 R, i64 C, i64 M, T* block) {
    executor<P>::run(R * M, kernels::gather_own_fn<T>{scores, labels, order, C, M, block});
  }
  /// Argmax per row of q (R, M) into index (the first maximum); chosen =
  /// argmax of q + noise (R x M doubles) when noise is not null, else index.
  template <class T>
  static void harden(const T* q, const double* noise, i64 R, i64 M, i64* index, i64* chosen) {
    executor<P>::run(R, kernels::harden_fn<T>{q, noise, M, index, chosen}, R * M);
  }
  /// targets[order[r]] = label * M + index[r] for the R grouped pixels.
  static void scatter_targets(const i64* order, const i64* labels, const i64* index, i64 R, i64 M, i64* targets) {
    executor<P>::run(R, kernels::scatter_targets_fn{order, labels, index, M, targets});
  }
  /// PPD backward, added into gx (N, K): gx[n, t[n]] += scale * (1 - picked[n]).
  template <class T>
  /// PPD backward: adds g[0] * d(mean (1 - picked)^2)/dx into gx at each
  /// pixel's target (nothing when acc[1], the count, is 0).
  static void ppd_backward(const i64* t, const T* picked, i64 N, i64 K, i64 ignore, const T* g, const double* acc,
                           T* gx) {
    executor<P>::run(N, kernels::ppd_backward_fn<T>{t, picked, K, ignore, g, acc, gx});
  }
};

}  // namespace protoseg::backend
