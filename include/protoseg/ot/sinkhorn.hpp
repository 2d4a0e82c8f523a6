#pragma once
/// \file sinkhorn.hpp
/// Sinkhorn-Knopp online clustering (supplementary Algorithm 1, Eq. 9):
/// `sinkhorn_knopp` on a K x N score matrix, `online_clustering` on
/// prototypes and embeddings, in the plain form of Algorithm 1 or in the log
/// domain, with an optional stopping tolerance, on any policy.
///
/// A backend that has a fused dense kernel (`backend::sinkhorn<P>::dense`;
/// the cpu one does one pass over memory per round, see
/// backend/cpu/sinkhorn.hpp) runs it; any other policy runs Algorithm 1 as a
/// composition of tensor operations (each a backend primitive), written once
/// here, the reference every fused kernel is tested against.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "protoseg/ot/common.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::ot {

namespace detail {

/// Checks kappa against the floating-point range of T.
template <class T>
void check_kappa_for(const sinkhorn_options& o, const char* who) {
  if (!std::isfinite(T(1.0 / o.kappa)))
    protoseg::detail::fail<value_error>(who, ": options.kappa: got ", o.kappa, ", expected 1 / kappa to be finite in ",
                                        sizeof(T) == 4 ? "float" : "double");
}

/// True when policy P's backend has a fused dense Sinkhorn kernel.
template <class T, class P>
concept has_dense_kernel = requires(const T* s, T* q, std::int64_t n, const backend::sinkhorn_settings& st, int& u,
                                    double& e) {
  { backend::sinkhorn<P>::dense(s, q, n, n, st, u, e) } -> std::same_as<backend::sinkhorn_status>;
};

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

/// Algorithm 1 as tensor operations on any policy: the K x N assignment
/// (columns sum to 1), rounds run, marginal error. Inputs checked by the
/// caller.
template <class T, class P>
sinkhorn_result<T, P> sinkhorn_composed(const tensor<T, P>& scores, const sinkhorn_options& o, const char* who) {
  if (!all_finite(scores)) raise(status::non_finite_scores, who, o.kappa);
  const std::int64_t K = scores.shape()[0], N = scores.shape()[1];
  const T inv_kappa = T(1.0 / o.kappa);
  sinkhorn_result<T, P> res;
  tensor<T, P> Q;
  if (o.log_domain) {
    tensor<T, P> L = scores * inv_kappa;
    L = L - logsumexp_keep(L.reshape({1, K * N}), 1).reshape({1, 1});
    const T log_k = std::log(T(K)), log_n = std::log(T(N));
    for (int round = 1; round <= o.iterations; ++round) {
      L = L - (logsumexp_keep(L, 1) + log_k);
      L = L - (logsumexp_keep(L, 0) + log_n);
      res.iterations = round;
      res.marginal_error = row_marginal_error(sum(exp(L), 1), K);
      if (o.tolerance > 0 && res.marginal_error <= o.tolerance) break;
    }
    Q = exp(L + log_n);
  } else {
    Q = exp(scores * inv_kappa);
    const T total = sum(Q).item();
    if (!(total > T(0)) || !std::isfinite(total)) raise(status::out_of_range, who, o.kappa);
    Q = Q / total;
    for (int round = 1; round <= o.iterations; ++round) {
      auto rows = sum(Q, 1, true);
      if (!all_finite(rows) || !(min(rows.flatten(), 0).item() > T(0)))
        raise(status::out_of_range, who, o.kappa);
      Q = Q / (rows * T(K));
      auto cols = sum(Q, 0, true);
      if (!all_finite(cols) || !(min(cols.flatten(), 0).item() > T(0)))
        raise(status::out_of_range, who, o.kappa);
      Q = Q / (cols * T(N));
      res.iterations = round;
      res.marginal_error = row_marginal_error(sum(Q, 1), K);
      if (o.tolerance > 0 && res.marginal_error <= o.tolerance) break;
    }
    Q = Q * T(N);
  }
  if (!all_finite(Q)) raise(status::out_of_range, who, o.kappa);
  res.assignment = std::move(Q);
  return res;
}

}  // namespace detail

/// Sinkhorn-Knopp on a K x N score matrix (K prototypes, N pixels); returns
/// the assignment, the rounds run and the final marginal error (Algorithm 1
/// of the supplementary, solving Eq. 9: Q = diag(u) exp(S / kappa) diag(v),
/// columns summing to 1 and rows to N / K).
template <class T, class P>
sinkhorn_result<T, P> sinkhorn_solve(const tensor<T, P>& scores, const sinkhorn_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "protoseg::ot::sinkhorn_solve: T must be float or double");
  constexpr const char* who = "sinkhorn_knopp";
  detail::check_options(o, who);
  detail::check_kappa_for<T>(o, who);
  detail::check_matrix(scores, who, "scores", "K x N");
  if constexpr (detail::has_dense_kernel<T, P>) {
    return sinkhorn_solve(scores, tensor<T, P>::empty(scores.shape()), o);
  } else {
    return detail::sinkhorn_composed(scores, o, who);
  }
}

/// Sinkhorn-Knopp writing the K x N assignment into `out` (which may be
/// `scores` itself, for an in-place solve, but not a partly overlapping
/// view); see above.
template <class T, class P>
sinkhorn_result<T, P> sinkhorn_solve(const tensor<T, P>& scores, tensor<T, P> out, const sinkhorn_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "protoseg::ot::sinkhorn_solve: T must be float or double");
  constexpr const char* who = "sinkhorn_knopp";
  detail::check_options(o, who);
  detail::check_kappa_for<T>(o, who);
  detail::check_matrix(scores, who, "scores", "K x N");
  if (!out.defined() || out.shape() != scores.shape())
    protoseg::detail::fail<shape_error>(who, ": out: got shape ", out.defined() ? out.shape() : shape{},
                                        ", expected the shape of scores ", scores.shape());
  sinkhorn_result<T, P> res;
  if constexpr (detail::has_dense_kernel<T, P>) {
    const std::int64_t K = scores.shape()[0], N = scores.shape()[1];
    const detail::status st = backend::sinkhorn<P>::dense(scores.data(), out.data(), K, N, detail::settings_of(o),
                                                          res.iterations, res.marginal_error);
    detail::raise(st, who, o.kappa);
  } else {
    res = detail::sinkhorn_composed(scores, o, who);
    out.copy_(res.assignment);
  }
  res.assignment = std::move(out);
  return res;
}

/// Algorithm 1 on precomputed scores S = P^T X (K x N): the K x N
/// assignment, columns summing to 1. Defaults: 3 iterations, kappa 0.05.
template <class T, class P>
tensor<T, P> sinkhorn_knopp(const tensor<T, P>& scores, const sinkhorn_options& o = {}) {
  return sinkhorn_solve(scores, o).assignment;
}

namespace detail {
template <class T, class P>
tensor<T, P> prototype_scores(const tensor<T, P>& prototypes, const tensor<T, P>& X) {
  constexpr const char* who = "online_clustering";
  check_matrix(prototypes, who, "prototypes P", "D x K");
  check_matrix(X, who, "embeddings X", "D x N");
  if (prototypes.shape()[0] != X.shape()[0])
    protoseg::detail::fail<shape_error>(who, ": embeddings X: got shape ", X.shape(), ", expected D = ",
                                        prototypes.shape()[0], " rows to match prototypes P of shape ",
                                        prototypes.shape());
  return matmul(prototypes, X, /*trans_a=*/true, /*trans_b=*/false);
}
}  // namespace detail

/// Online clustering (Algorithm 1): scores L = P^T X by one GEMM, then
/// Sinkhorn-Knopp (in place where the backend has a fused kernel).
/// P: D x K prototypes, X: D x N embeddings.
template <class T, class P>
sinkhorn_result<T, P> online_clustering_solve(const tensor<T, P>& prototypes, const tensor<T, P>& X,
                                              const sinkhorn_options& o = {}) {
  detail::check_options(o, "online_clustering");
  tensor<T, P> s = detail::prototype_scores(prototypes, X);
  if constexpr (detail::has_dense_kernel<T, P>) return sinkhorn_solve(s, s, o);
  else return sinkhorn_solve(s, o);
}

/// Online clustering (Algorithm 1): the K x N assignment of the N columns of
/// X (D x N) to the K columns of P (D x K); columns sum to 1.
template <class T, class P>
tensor<T, P> online_clustering(const tensor<T, P>& prototypes, const tensor<T, P>& X, const sinkhorn_options& o = {}) {
  return online_clustering_solve(prototypes, X, o).assignment;
}

}  // namespace protoseg::ot
