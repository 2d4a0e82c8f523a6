#pragma once
/// \file proto.hpp
/// cpu kernels of the ProtoSeg prototype step, the score summary and PPD:
/// pixels grouped by class with a counting sort (stable: pixel order within
/// a class), their own class's scores gathered for the segmented Sinkhorn,
/// the hard assignment (argmax, or argmax of Q plus Gumbel noise), the
/// momentum update of the prototypes from the sums of the correctly
/// classified pixels assigned to each (summed in pixel order), and the score
/// summary fused into the blocks of Eigen's GEMM. The per-item bodies are
/// shared with the cuda backend (backend/kernels/proto.hpp), which gives the
/// same results bit for bit (everything but the summary's GEMM).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/backend/cpu/eigen.hpp"
#include "protoseg/backend/cpu/gemm.hpp"
#include "protoseg/backend/cpu/executor.hpp"
#include "protoseg/backend/kernels/proto.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct prototype<cpu> : prototype_common<cpu> {
  using i64 = std::int64_t;

  /// Stable grouping of the N pixels by label: order (N) lists the labelled
  /// pixels of class 0, 1, ..., C - 1 in pixel order, then the ignored ones;
  /// offsets (C + 1) are the CSR row offsets of the classes. Labels must be
  /// valid (class ids or the ignore index).
  static void group_by_label(const i64* labels, i64 N, i64 C, i64 ignore, i64* order, i64* offsets) {
    std::vector<i64> count(static_cast<std::size_t>(C) + 1, 0);
    for (i64 n = 0; n < N; ++n)
      if (labels[n] != ignore) ++count[static_cast<std::size_t>(labels[n]) + 1];
    offsets[0] = 0;
    for (i64 k = 0; k < C; ++k) offsets[k + 1] = offsets[k] + count[static_cast<std::size_t>(k) + 1];
    std::vector<i64> next(offsets, offsets + C);
    i64 tail = offsets[C];
    for (i64 n = 0; n < N; ++n) {
      const i64 k = labels[n];
      order[k == ignore ? tail++ : next[static_cast<std::size_t>(k)]++] = n;
    }
  }

  /// The score summary of the unit embeddings E (N, D) against the
  /// prototypes (C, M, D) without holding S = E P^T: logits (N, C) = the max
  /// over each class's M scores, lse (N) = log sum exp(S * inv_t) over the
  /// row, and, when own is not null, own[n, m] = S[n, labels[n] * M + m] for
  /// the pixels whose label is not `ignore` (own is zeroed by the caller). S
  /// is made in blocks of rows that stay in cache (the prototypes packed once
  /// for Eigen's kernel, reordered so that a class's M scores are C apart
  /// and its maximum is an elementwise max of M contiguous rows of C) and
  /// each block is reduced as it is made.
  template <class T>
  static void summarize(const T* emb, const T* protos, const i64* labels, i64 N, i64 C, i64 M, i64 D, i64 ignore,
                        T inv_t, T* logits, T* lse, T* own) {
    const i64 K = C * M;
    std::vector<T> reordered(static_cast<std::size_t>(K * D));
    for (i64 c = 0; c < C; ++c)
      for (i64 m = 0; m < M; ++m) std::copy_n(protos + (c * M + m) * D, D, reordered.data() + (m * C + c) * D);
    using array = Eigen::Array<T, Eigen::Dynamic, 1>;
    gemm<cpu>::nt_row_blocks(N, K, D, emb, reordered.data(), [&](i64 r0, i64 rows, const T* s) {
      for (i64 j = 0; j < rows; ++j) {
        const i64 n = r0 + j;
        const T* col = s + j * K;
        Eigen::Map<array> best(logits + n * C, C);
        best = Eigen::Map<const array>(col, C);
        for (i64 m = 1; m < M; ++m) best = best.max(Eigen::Map<const array>(col + m * C, C));
        const T mx = best.maxCoeff() * inv_t;
        lse[n] = mx + std::log(((Eigen::Map<const array>(col, K) * inv_t) - mx).exp().sum());
        if (own && labels[n] != ignore)
          for (i64 m = 0; m < M; ++m) own[n * M + m] = col[m * C + labels[n]];
      }
    });
  }

  /// keys (R): the prototype id (class * M + chosen) of every correctly
  /// classified grouped pixel (first maximum of its logits == label), C * M
  /// for the others; count[0] (the policy's memory) = how many are correct.
  template <class T>
  static void correct_keys(const T* logits, const i64* labels, const i64* order, const i64* chosen, i64 R, i64 C,
                           i64 M, i64* keys, double* count) {
    const kernels::correct_key_fn<T> key{logits, labels, order, chosen, C, M};
    executor<cpu>::run(R, [&](i64 r) { keys[r] = key(r); }, R * C);
    i64 correct = 0;
    for (i64 r = 0; r < R; ++r) correct += keys[r] < C * M;
    count[0] = static_cast<double>(correct);
  }

  /// Momentum update (Eq. 10) of the K = C * M prototypes (K, D) in place from
  /// the L2-normalised sum of the embeddings (N, D) of pixels order[r] with
  /// keys[r] == k (keys[r] == K: none), summed in r order, then every
  /// prototype re-normalised.
  template <class T>
  static void momentum_update(const i64* keys, const i64* order, i64 R, const T* emb, i64 D, i64 K, T gamma, T* protos) {
    std::vector<T> f(static_cast<std::size_t>(K * D), T(0));
    std::vector<i64> seg(static_cast<std::size_t>(K) + 1, 0);  // seg[k + 1] - seg[k]: pixels that chose k
    for (i64 r = 0; r < R; ++r) {
      const i64 k = keys[r];
      if (k >= K) continue;
      ++seg[static_cast<std::size_t>(k) + 1];
      T* fk = f.data() + k * D;
      const T* en = emb + order[r] * D;
      for (i64 d = 0; d < D; ++d) fk[d] += en[d];
    }
    for (i64 k = 0; k < K; ++k) seg[static_cast<std::size_t>(k) + 1] += seg[static_cast<std::size_t>(k)];
    executor<cpu>::run(K, kernels::momentum_row_fn<T>{f.data(), seg.data(), D, gamma, protos}, K * D);
  }

  /// PPD forward: picked[n] = x[n, t[n]] (0 where ignored); acc[0] = the sum
  /// of (1 - picked)^2 over the non-ignored pixels (double), acc[1] = their
  /// count. acc is the policy's memory (on the device for cuda).
  template <class T>
  static void ppd_forward(const T* x, const i64* t, i64 N, i64 K, i64 ignore, T* picked, double* acc) {
    executor<cpu>::run(N, kernels::ppd_pick_fn<T>{x, t, K, ignore, picked});
    const kernels::ppd_term_fn<T> term{picked, t, ignore};
    double sum = 0;
    i64 c = 0;
    for (i64 n = 0; n < N; ++n) {
      sum += term(n);  // in pixel order (0 where ignored)
      c += t[n] != ignore;
    }
    acc[0] = sum;
    acc[1] = static_cast<double>(c);
  }
};

}  // namespace protoseg::backend
