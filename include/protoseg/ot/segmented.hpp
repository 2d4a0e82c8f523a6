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

/// Checks CSR offsets against N rows (non-decreasing, from 0 to N).
inline void check_offsets(const tensor<std::int64_t>& offsets, std::int64_t N, const char* who) {
  if (!offsets.defined() || offsets.rank() != 1 || offsets.numel() < 1)
    protoseg::detail::fail<shape_error>(who, ": offsets: got ", offsets.defined() ? "shape " : "an undefined tensor",
                                        offsets.defined() ? offsets.shape() : shape{},
                                        ", expected a rank-1 int64 tensor of C + 1 >= 1 CSR offsets");
  const std::int64_t* off = offsets.data();
  const std::int64_t C = offsets.numel() - 1;
  if (off[0] != 0)
    protoseg::detail::fail<value_error>(who, ": offsets[0]: got ", off[0], ", expected 0");
  for (std::int64_t c = 0; c < C; ++c)
    if (off[c + 1] < off[c])
      protoseg::detail::fail<value_error>(who, ": offsets: got offsets[", c + 1, "] = ", off[c + 1], " < offsets[", c,
                                          "] = ", off[c], ", expected non-decreasing offsets");
  if (off[C] != N)
    protoseg::detail::fail<value_error>(who, ": offsets[", C, "]: got ", off[C], ", expected N = ", N,
                                        " (the number of score rows)");
}

}  // namespace detail

/// Segmented Sinkhorn-Knopp (Algorithm 1 per class, Eq. 9) on any policy:
/// scores N x M (pixel-major, class c in rows [offsets[c], offsets[c+1])),
/// offsets int64 of size C + 1; writes the N x M assignment into `out` (may
/// be `scores` itself). Empty classes are skipped; each class equals a solve
/// on its own. Every class is solved by one call of the backend's
/// `sinkhorn<P>::segmented` (cpu: one class per thread, each block solved in
/// cache; cuda: one launch); only the C + 1 offsets and the per-class
/// status, rounds and errors are read on the host.
template <class T, class P>
segmented_result<T, P> segmented_sinkhorn(const tensor<T, P>& scores, const tensor<std::int64_t, P>& offsets,
                                          tensor<T, P> out, const sinkhorn_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "protoseg::ot::segmented_sinkhorn: T must be float or double");
  constexpr const char* who = "segmented_sinkhorn";
  detail::check_options(o, who);
  detail::check_kappa_for<T>(o, who);
  if (!scores.defined() || scores.rank() != 2 || scores.shape()[1] < 1)
    protoseg::detail::fail<shape_error>(who, ": scores: got ", scores.defined() ? "shape " : "an undefined tensor",
                                        scores.defined() ? scores.shape() : shape{},
                                        ", expected an N x M matrix with M >= 1");
  if (!out.defined() || out.shape() != scores.shape())
    protoseg::detail::fail<shape_error>(who, ": out: got shape ", out.defined() ? out.shape() : shape{},
                                        ", expected the shape of scores ", scores.shape());
  const std::int64_t N = scores.shape()[0], M = scores.shape()[1];
  const tensor<std::int64_t> host_offsets = offsets.defined() ? offsets.template to<cpu>() : tensor<std::int64_t>();
  detail::check_offsets(host_offsets, N, who);
  const std::int64_t C = host_offsets.numel() - 1;
  auto ws = tensor<T, P>::empty({C, M});
  auto used = tensor<std::int32_t, P>::empty({C});
  auto err = tensor<double, P>::empty({C});
  auto status = tensor<std::int32_t, P>::empty({C});
  backend::sinkhorn<P>::segmented(scores.data(), out.data(), offsets.data(), C, M, detail::settings_of(o), ws.data(),
                                  used.data(), err.data(), status.data());
  const auto st = status.to_vector();
  const auto us = used.to_vector();
  const auto er = err.to_vector();
  segmented_result<T, P> res;
  for (std::int64_t c = 0; c < C; ++c) {
    const std::size_t cs = static_cast<std::size_t>(c);
    if (st[cs] != 0) {
      const std::string where = protoseg::detail::concat_message(" of class ", c);
      detail::raise(static_cast<detail::status>(st[cs]), who, o.kappa, where.c_str());
    }
    res.iterations = std::max(res.iterations, int(us[cs]));
    res.marginal_error = std::max(res.marginal_error, er[cs]);
  }
  res.assignment = std::move(out);
  return res;
}

/// Segmented Sinkhorn-Knopp into a new N x M tensor (see above).
template <class T, class P>
segmented_result<T, P> segmented_sinkhorn(const tensor<T, P>& scores, const tensor<std::int64_t, P>& offsets,
                                          const sinkhorn_options& o = {}) {
  if (!scores.defined())
    protoseg::detail::fail<shape_error>("segmented_sinkhorn: scores: got an undefined tensor, expected an N x M matrix");
  return segmented_sinkhorn(scores, offsets, tensor<T, P>::empty(scores.shape()), o);
}

}  // namespace protoseg::ot
