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
#include <string>
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

namespace detail {

/// A class whose solve failed (status != 0).
struct status_bad_fn {
  const std::int32_t* status;
  PROTOSEG_HOST_DEVICE bool operator()(std::int64_t c) const { return status[c] != 0; }
};
/// out[0] = the most rounds any class ran, out[1] = the largest error.
struct segmented_stats_fn {
  const std::int32_t* used;
  const double* err;
  std::int64_t C;
  double* out;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t) const {
    double rounds = 0, error = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      rounds = used[c] > rounds ? used[c] : rounds;
      error = err[c] > error ? err[c] : error;
    }
    out[0] = rounds;
    out[1] = error;
  }
};

/// The solve itself, for offsets known to be valid CSR offsets of the N rows
/// (checked by the caller, or made by the prototype step's grouping). A
/// failed class raises (at once, or at the next host read under
/// cuda_deferred_checks); the rounds and the error come back in one read.
/// With `stats` (2 doubles of the policy's memory) the rounds and the error
/// are written there instead, for the caller to read with its own values
/// (iterations and marginal_error of the result are then left 0).
template <class T, class P>
segmented_result<T, P> segmented_solve(const tensor<T, P>& scores, const tensor<std::int64_t, P>& offsets,
                                       tensor<T, P> out, const sinkhorn_options& o, const char* who,
                                       double* stats = nullptr) {
  const std::int64_t M = scores.shape()[1], C = offsets.numel() - 1;
  auto ws = tensor<T, P>::empty({C, M});
  auto used = tensor<std::int32_t, P>::empty({C});
  auto err = tensor<double, P>::empty({C});
  auto status = tensor<std::int32_t, P>::empty({C});
  backend::sinkhorn<P>::segmented(scores.data(), out.data(), offsets.data(), C, M, settings_of(o), ws.data(),
                                  used.data(), err.data(), status.data());
  backend::executor<P>::check(C, status_bad_fn{status.data()}, [status, who, kappa = o.kappa](std::int64_t c) {
    const std::int32_t st = status.narrow0(c, c + 1).item();
    const std::string where = protoseg::detail::concat_message(" of class ", c);
    raise(static_cast<detail::status>(st), who, kappa, where.c_str());
  });
  segmented_result<T, P> res;
  if (stats) {
    backend::executor<P>::run(1, segmented_stats_fn{used.data(), err.data(), C, stats});
  } else {
    tensor<double, P> both(shape{2});
    backend::executor<P>::run(1, segmented_stats_fn{used.data(), err.data(), C, both.data()});
    const auto s = both.to_vector();
    res.iterations = static_cast<int>(s[0]);
    res.marginal_error = s[1];
  }
  res.assignment = std::move(out);
  return res;
}

}  // namespace detail

/// Segmented Sinkhorn-Knopp (Algorithm 1 per class, Eq. 9) on any policy:
/// scores N x M (pixel-major, class c in rows [offsets[c], offsets[c+1])),
/// offsets int64 of size C + 1; writes the N x M assignment into `out` (may
/// be `scores` itself). Empty classes are skipped; each class equals a solve
/// on its own. Every class is solved by one call of the backend's
/// `sinkhorn<P>::segmented` (cpu: one class per thread, each block solved in
/// cache; cuda: one launch); the offsets are checked on the host, and the
/// most rounds and the largest error come back in one read.
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
  const std::int64_t N = scores.shape()[0];
  // Invalid offsets would send the solver outside the scores: checked here, at once.
  detail::check_offsets(offsets.defined() ? offsets.template to<cpu>() : tensor<std::int64_t>(), N, who);
  return detail::segmented_solve(scores, offsets, std::move(out), o, who);
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
