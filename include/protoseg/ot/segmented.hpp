#pragma once
/// \file segmented.hpp
/// Segmented Sinkhorn-Knopp: C independent clustering problems in one call,
/// as ProtoSeg runs one per class (main paper Sec. 3.2, Eq. 9; supplementary
/// Algorithm 1 per class).
///
/// Layout: the scores are one N x M matrix, pixel-major (each pixel's M
/// prototype scores contiguous), with the pixels of class c in rows
/// [offsets[c], offsets[c + 1]) (CSR offsets, int64, C + 1 of them). Class c
/// is thus one contiguous block of N_c * M values: it is read once from
/// memory and every Sinkhorn round then runs on that block while it is in
/// cache (transposed on the fly into Algorithm 1's prototype-major layout so
/// that the rounds vectorise over pixels), so the whole call is a single pass
/// over memory. The assignment has
/// the same N x M layout: each pixel's row sums to 1 (Algorithm 1's columns),
/// each prototype column of class c sums to N_c / M. This is the transpose of
/// `sinkhorn_knopp`'s K x N layout, per class.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "protoseg/ot/common.hpp"
#include "protoseg/ot/sinkhorn.hpp"

namespace protoseg::ot {

/// Result of the segmented solver: the N x M assignment, the most rounds any
/// class ran, and the largest prototype-marginal error over the classes.
template <class T, class Policy = cpu>
struct segmented_result {
  tensor<T, Policy> assignment;
  int iterations = 0;
  double marginal_error = 0.0;
};

namespace detail {

/// Copies an r x c row-major block into its c x r transpose (tiled so that
/// both sides stay in cache lines).
template <class T>
void transpose_block(const T* src, T* dst, std::int64_t r, std::int64_t c) {
  constexpr std::int64_t tile = 32;
  for (std::int64_t i0 = 0; i0 < r; i0 += tile) {
    const std::int64_t i1 = std::min(r, i0 + tile);
    for (std::int64_t j = 0; j < c; ++j) {
      PROTOSEG_OT_SIMD
      for (std::int64_t i = i0; i < i1; ++i) dst[j * r + i] = src[i * c + j];
    }
  }
}

/// Checks CSR offsets against N rows; returns the largest class size.
inline std::int64_t check_offsets(const tensor<std::int64_t>& offsets, std::int64_t N, const char* who) {
  if (!offsets.defined() || offsets.rank() != 1 || offsets.numel() < 1)
    protoseg::detail::fail<shape_error>(who, ": offsets: got ", offsets.defined() ? "shape " : "an undefined tensor",
                                        offsets.defined() ? offsets.shape() : shape{},
                                        ", expected a rank-1 int64 tensor of C + 1 >= 1 CSR offsets");
  const std::int64_t* off = offsets.data();
  const std::int64_t C = offsets.numel() - 1;
  if (off[0] != 0)
    protoseg::detail::fail<value_error>(who, ": offsets[0]: got ", off[0], ", expected 0");
  std::int64_t largest = 0;
  for (std::int64_t c = 0; c < C; ++c) {
    if (off[c + 1] < off[c])
      protoseg::detail::fail<value_error>(who, ": offsets: got offsets[", c + 1, "] = ", off[c + 1], " < offsets[", c,
                                          "] = ", off[c], ", expected non-decreasing offsets");
    largest = std::max(largest, off[c + 1] - off[c]);
  }
  if (off[C] != N)
    protoseg::detail::fail<value_error>(who, ": offsets[", C, "]: got ", off[C], ", expected N = ", N,
                                        " (the number of score rows)");
  return largest;
}

}  // namespace detail

/// Segmented Sinkhorn-Knopp (Algorithm 1 per class, Eq. 9): scores N x M
/// (pixel-major, class c in rows [offsets[c], offsets[c+1])), offsets int64
/// of size C + 1; writes the N x M assignment into `out` (may be `scores`
/// itself). Empty classes are skipped; each class equals a solve on its own.
template <class T>
segmented_result<T> segmented_sinkhorn(const tensor<T>& scores, const tensor<std::int64_t>& offsets, tensor<T> out,
                                       const sinkhorn_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "protoseg::ot::segmented_sinkhorn: T must be float or double");
  constexpr const char* who = "segmented_sinkhorn";
  detail::check_options(o, who);
  if (!std::isfinite(T(1.0 / o.kappa)))
    protoseg::detail::fail<value_error>(who, ": options.kappa: got ", o.kappa, ", expected 1 / kappa to be finite");
  if (!scores.defined() || scores.rank() != 2 || scores.shape()[1] < 1)
    protoseg::detail::fail<shape_error>(who, ": scores: got ", scores.defined() ? "shape " : "an undefined tensor",
                                        scores.defined() ? scores.shape() : shape{},
                                        ", expected an N x M matrix with M >= 1");
  if (!out.defined() || out.shape() != scores.shape())
    protoseg::detail::fail<shape_error>(who, ": out: got shape ", out.defined() ? out.shape() : shape{},
                                        ", expected the shape of scores ", scores.shape());
  const std::int64_t N = scores.shape()[0], M = scores.shape()[1];
  const std::int64_t largest = detail::check_offsets(offsets, N, who);
  const std::int64_t C = offsets.numel() - 1;
  const std::int64_t* off = offsets.data();
  std::vector<detail::status> st(static_cast<std::size_t>(C), detail::status::ok);
  std::vector<int> used(static_cast<std::size_t>(C), 0);
  std::vector<double> err(static_cast<std::size_t>(C), 0.0);
  const T* S = scores.data();
  T* Q = out.data();
  const bool par = N * M > backend::cpu_detail::parallel_grain && C > 1;
#if defined(_OPENMP)
#pragma omp parallel if (par)
#else
  (void)par;
#endif
  {
    // Per-thread buffers, sized once for the largest class: no allocation
    // per class. Each class block is transposed into the prototype-major
    // layout of Algorithm 1 (M x N_c, vectorised over pixels), solved in
    // place by the dense kernel on this thread, and transposed back.
    std::vector<T> block(static_cast<std::size_t>(largest * M));
    detail::dense_workspace<T> ws;
    ws.prepare(M, largest, 1, o.log_domain);
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
    for (std::int64_t c = 0; c < C; ++c) {
      const std::int64_t n = off[c + 1] - off[c];
      if (n == 0) continue;
      const std::size_t cs = static_cast<std::size_t>(c);
      detail::transpose_block(S + off[c] * M, block.data(), n, M);
      st[cs] = o.log_domain ? detail::dense_log(block.data(), block.data(), M, n, o, 1, ws, used[cs], err[cs])
                            : detail::dense_plain(block.data(), block.data(), M, n, o, 1, ws, used[cs], err[cs]);
      if (st[cs] == detail::status::ok) detail::transpose_block(block.data(), Q + off[c] * M, M, n);
    }
  }
  segmented_result<T> res;
  for (std::int64_t c = 0; c < C; ++c) {
    const std::size_t cs = static_cast<std::size_t>(c);
    if (st[cs] != detail::status::ok) {
      const std::string where = protoseg::detail::concat_message(" of class ", c);
      detail::raise(st[cs], who, o.kappa, where.c_str());
    }
    res.iterations = std::max(res.iterations, used[cs]);
    res.marginal_error = std::max(res.marginal_error, err[cs]);
  }
  res.assignment = std::move(out);
  return res;
}

/// Segmented Sinkhorn-Knopp into a new N x M tensor (see above).
template <class T>
segmented_result<T> segmented_sinkhorn(const tensor<T>& scores, const tensor<std::int64_t>& offsets,
                                       const sinkhorn_options& o = {}) {
  if (!scores.defined())
    protoseg::detail::fail<shape_error>("segmented_sinkhorn: scores: got an undefined tensor, expected an N x M matrix");
  return segmented_sinkhorn(scores, offsets, tensor<T>::empty(scores.shape()), o);
}

}  // namespace protoseg::ot
