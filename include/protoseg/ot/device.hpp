#pragma once
/// \file device.hpp
/// The clustering API on device policies (`protoseg::cuda`): the same
/// functions as sinkhorn.hpp and segmented.hpp for `tensor<T, Policy>` with a
/// Policy other than `cpu`. The dense solvers are written with tensor
/// operations (each one a backend primitive of the policy); the segmented
/// solver is the fused primitive `backend::sinkhorn<Policy>::segmented`, one
/// launch for every class. Same contracts, options and errors as on the cpu.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "protoseg/ot/common.hpp"
#include "protoseg/ot/segmented.hpp"
#include "protoseg/ot/sinkhorn.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::ot {

/// A policy whose tensors live off the host (the cpu solvers serve `cpu`).
template <class P>
concept device_policy = !std::is_same_v<P, cpu>;

namespace detail {

template <class T, class P>
void check_device_matrix(const tensor<T, P>& s, const char* who, const char* arg, const char* layout) {
  if (!s.defined() || s.rank() != 2 || s.shape()[0] < 1 || s.shape()[1] < 1)
    protoseg::detail::fail<shape_error>(who, ": ", arg, ": got ", s.defined() ? "shape " : "an undefined tensor",
                                        s.defined() ? s.shape() : shape{}, ", expected a ", layout,
                                        " matrix with both dimensions >= 1");
}

/// log(sum(exp(x))) along `axis`, kept as a size-1 dimension.
template <class T, class P>
tensor<T, P> logsumexp_keep(const tensor<T, P>& x, int axis) {
  auto m = max(x, axis, true);
  return m + log(sum(exp(x - m), axis, true));
}

/// Largest |K * row sum - 1| of a column-normalised K x N plan.
template <class T, class P>
double row_marginal_error(const tensor<T, P>& rows, std::int64_t K) {
  return double(max(abs(rows * T(K) - T(1)).flatten(), 0).item());
}

}  // namespace detail

/// Sinkhorn-Knopp (Algorithm 1, Eq. 9) on a K x N score matrix of a device
/// policy: the K x N assignment (columns sum to 1), rounds run, marginal error.
template <class T, device_policy P>
sinkhorn_result<T, P> sinkhorn_solve(const tensor<T, P>& scores, const sinkhorn_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "protoseg::ot::sinkhorn_solve: T must be float or double");
  constexpr const char* who = "sinkhorn_knopp";
  detail::check_options(o, who);
  detail::check_kappa_for<T>(o, who);
  detail::check_device_matrix(scores, who, "scores", "K x N");
  if (!all_finite(scores)) detail::raise(detail::status::non_finite_scores, who, o.kappa);
  const std::int64_t K = scores.shape()[0], N = scores.shape()[1];
  const T inv_kappa = T(1.0 / o.kappa);
  sinkhorn_result<T, P> res;
  tensor<T, P> Q;
  if (o.log_domain) {
    tensor<T, P> L = scores * inv_kappa;
    L = L - detail::logsumexp_keep(L.reshape({1, K * N}), 1).reshape({1, 1});
    const T log_k = std::log(T(K)), log_n = std::log(T(N));
    for (int round = 1; round <= o.iterations; ++round) {
      L = L - (detail::logsumexp_keep(L, 1) + log_k);
      L = L - (detail::logsumexp_keep(L, 0) + log_n);
      res.iterations = round;
      res.marginal_error = detail::row_marginal_error(sum(exp(L), 1), K);
      if (o.tolerance > 0 && res.marginal_error <= o.tolerance) break;
    }
    Q = exp(L + log_n);
  } else {
    Q = exp(scores * inv_kappa);
    const T total = sum(Q).item();
    if (!(total > T(0)) || !std::isfinite(total)) detail::raise(detail::status::out_of_range, who, o.kappa);
    Q = Q / total;
    for (int round = 1; round <= o.iterations; ++round) {
      auto rows = sum(Q, 1, true);
      if (!all_finite(rows) || !(min(rows.flatten(), 0).item() > T(0)))
        detail::raise(detail::status::out_of_range, who, o.kappa);
      Q = Q / (rows * T(K));
      auto cols = sum(Q, 0, true);
      if (!all_finite(cols) || !(min(cols.flatten(), 0).item() > T(0)))
        detail::raise(detail::status::out_of_range, who, o.kappa);
      Q = Q / (cols * T(N));
      res.iterations = round;
      res.marginal_error = detail::row_marginal_error(sum(Q, 1), K);
      if (o.tolerance > 0 && res.marginal_error <= o.tolerance) break;
    }
    Q = Q * T(N);
  }
  if (!all_finite(Q)) detail::raise(detail::status::out_of_range, who, o.kappa);
  res.assignment = std::move(Q);
  return res;
}

/// Algorithm 1 on device scores: the K x N assignment (columns sum to 1).
template <class T, device_policy P>
tensor<T, P> sinkhorn_knopp(const tensor<T, P>& scores, const sinkhorn_options& o = {}) {
  return sinkhorn_solve(scores, o).assignment;
}

/// Online clustering (Algorithm 1) on device tensors: L = P^T X by one GEMM
/// (cuBLAS under nvcc), then Sinkhorn-Knopp. P: D x K, X: D x N.
template <class T, device_policy P>
sinkhorn_result<T, P> online_clustering_solve(const tensor<T, P>& prototypes, const tensor<T, P>& X,
                                              const sinkhorn_options& o = {}) {
  constexpr const char* who = "online_clustering";
  detail::check_options(o, who);
  detail::check_device_matrix(prototypes, who, "prototypes P", "D x K");
  detail::check_device_matrix(X, who, "embeddings X", "D x N");
  if (prototypes.shape()[0] != X.shape()[0])
    protoseg::detail::fail<shape_error>(who, ": embeddings X: got shape ", X.shape(), ", expected D = ",
                                        prototypes.shape()[0], " rows to match prototypes P of shape ",
                                        prototypes.shape());
  return sinkhorn_solve(matmul(prototypes, X, /*trans_a=*/true, /*trans_b=*/false), o);
}
template <class T, device_policy P>
tensor<T, P> online_clustering(const tensor<T, P>& prototypes, const tensor<T, P>& X, const sinkhorn_options& o = {}) {
  return online_clustering_solve(prototypes, X, o).assignment;
}

/// Segmented Sinkhorn-Knopp on a device policy: the same layout and contract
/// as the cpu `segmented_sinkhorn` (scores N x M pixel-major, CSR offsets of
/// C + 1 int64), every class solved in one fused launch.
template <class T, device_policy P>
segmented_result<T, P> segmented_sinkhorn(const tensor<T, P>& scores, const tensor<std::int64_t, P>& offsets,
                                          const sinkhorn_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "protoseg::ot::segmented_sinkhorn: T must be float or double");
  constexpr const char* who = "segmented_sinkhorn";
  detail::check_options(o, who);
  detail::check_kappa_for<T>(o, who);
  if (!scores.defined() || scores.rank() != 2 || scores.shape()[1] < 1)
    protoseg::detail::fail<shape_error>(who, ": scores: got ", scores.defined() ? "shape " : "an undefined tensor",
                                        scores.defined() ? scores.shape() : shape{},
                                        ", expected an N x M matrix with M >= 1");
  const std::int64_t N = scores.shape()[0], M = scores.shape()[1];
  const tensor<std::int64_t> host_offsets = offsets.defined() ? offsets.template to<cpu>() : tensor<std::int64_t>();
  detail::check_offsets(host_offsets, N, who);
  const std::int64_t C = host_offsets.numel() - 1;
  auto out = tensor<T, P>::empty(scores.shape());
  auto ws = tensor<T, P>::empty({C, M});
  auto used = tensor<std::int32_t, P>::empty({C});
  auto err = tensor<double, P>::empty({C});
  auto status = tensor<std::int32_t, P>::empty({C});
  backend::sinkhorn<P>::segmented(scores.data(), out.data(), offsets.data(), C, M, T(1.0 / o.kappa), o.iterations,
                                  o.tolerance, o.log_domain, ws.data(), used.data(), err.data(), status.data());
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

}  // namespace protoseg::ot
