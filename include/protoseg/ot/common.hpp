#pragma once
/// \file common.hpp
/// Options, results and input checks shared by the Sinkhorn-Knopp solvers of
/// `protoseg::ot` (supplementary Algorithm 1). Their kernels are the
/// backend's `sinkhorn` primitive.

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "protoseg/backend/default.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::ot {

/// Settings of the Sinkhorn-Knopp solvers. The defaults are those of
/// Algorithm 1 (supplementary) and of the published code: 3 iterations,
/// kappa = 0.05 (the entropic weight of Eq. 9).
struct sinkhorn_options {
  /// Most row/column normalisation rounds ("iters" of Algorithm 1), >= 1.
  int iterations = 3;
  /// kappa of Eq. 9: the solver works on exp(score / kappa), > 0.
  double kappa = 0.05;
  /// Work on log(Q) with log-sum-exp: same answer where exp(score / kappa)
  /// is finite, and finite where it overflows (small kappa).
  bool log_domain = false;
  /// Stop early once the prototype (row) marginal error is <= tolerance;
  /// 0 runs all `iterations`, exactly as Algorithm 1.
  double tolerance = 0.0;
};

/// What a solver returns: the assignment (columns sum to 1, as Algorithm 1
/// ends with `L *= N`), the rounds it ran, and the final marginal error
/// max_k |K / N * sum_n Q(k, n) - 1| (0 for a perfectly equipartitioned Q).
template <class T, class Policy = cpu>
struct sinkhorn_result {
  tensor<T, Policy> assignment;
  int iterations = 0;
  double marginal_error = 0.0;
};

namespace detail {

/// Checks the options shared by every solver; `who` names the function.
inline void check_options(const sinkhorn_options& o, const char* who) {
  if (o.iterations < 1)
    protoseg::detail::fail<value_error>(who, ": options.iterations: got ", o.iterations, ", expected >= 1");
  if (!(o.kappa > 0.0) || !std::isfinite(o.kappa))
    protoseg::detail::fail<value_error>(who, ": options.kappa: got ", o.kappa, ", expected a finite value > 0");
  if (!(o.tolerance >= 0.0) || !std::isfinite(o.tolerance))
    protoseg::detail::fail<value_error>(who, ": options.tolerance: got ", o.tolerance,
                                        ", expected a finite value >= 0");
}

/// Checks that a score matrix is a defined, non-empty rank-2 tensor.
template <class T, class P>
void check_matrix(const tensor<T, P>& s, const char* who, const char* arg, const char* layout) {
  if (!s.defined()) protoseg::detail::fail<shape_error>(who, ": ", arg, " is undefined, expected a ", layout, " matrix");
  if (s.rank() != 2 || s.shape()[0] < 1 || s.shape()[1] < 1)
    protoseg::detail::fail<shape_error>(who, ": ", arg, ": got shape ", s.shape(), ", expected a ", layout,
                                        " matrix with both dimensions >= 1");
}

/// Outcome codes of a solver kernel (the backend's codes: a kernel that runs
/// inside a parallel region or on the device cannot throw); turned into
/// exceptions by `raise`.
using status = ::protoseg::backend::sinkhorn_status;

/// The backend's view of the options.
inline ::protoseg::backend::sinkhorn_settings settings_of(const sinkhorn_options& o) {
  return {o.iterations, o.kappa, o.log_domain, o.tolerance};
}

/// Throws the error for a failed status; `where` says which problem.
inline void raise(status s, const char* who, double kappa, const char* where = "") {
  switch (s) {
    case status::ok: return;
    case status::non_finite_scores:
      protoseg::detail::fail<value_error>(who, ": scores", where, ": contain NaN or infinite values, expected finite scores");
    case status::out_of_range:
      protoseg::detail::fail<value_error>(
          who, ": scores", where, ": exp(score / kappa) leaves the floating-point range with kappa = ", kappa,
          " (it overflows, or a whole row or column underflows to 0); expected |score| / kappa within range, "
          "or set options.log_domain = true");
  }
}

}  // namespace detail
}  // namespace protoseg::ot
