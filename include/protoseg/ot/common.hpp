#pragma once
/// \file common.hpp
/// Options, results, input checks and the small vectorisable kernels shared
/// by the Sinkhorn-Knopp solvers of `protoseg::ot` (supplementary Algorithm 1).

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "protoseg/backend/cpu/parallel.hpp"
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
template <class T>
void check_matrix(const tensor<T>& s, const char* who, const char* arg, const char* layout) {
  if (!s.defined()) protoseg::detail::fail<shape_error>(who, ": ", arg, " is undefined, expected a ", layout, " matrix");
  if (s.rank() != 2 || s.shape()[0] < 1 || s.shape()[1] < 1)
    protoseg::detail::fail<shape_error>(who, ": ", arg, ": got shape ", s.shape(), ", expected a ", layout,
                                        " matrix with both dimensions >= 1");
}

/// exp(x) on a branch-free path that GCC and Clang vectorise (Cody-Waite
/// range reduction, Taylor polynomial on |r| <= ln2/2, exponent built from
/// bits). Relative error about 1 ulp; +inf above the overflow threshold like
/// std::exp, 0 below the smallest normal (denormal results flush to 0).
inline float fast_exp(float x) {
  const float hi = 88.9f, lo = -87.3365f;
  const bool under = x < lo;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  // Round to nearest through the 1.5 * 2^23 shifter (std::floor does not
  // vectorise under the default strict floating-point flags).
  const float shifter = 12582912.0f;
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // n reaches 128 just below the overflow threshold: build 2^127 and double
  // it. Below the threshold the scale is 0 (every step stays unconditional,
  // which keeps the loop vectorisable).
  const bool top = n > 127.0f;
  const std::int32_t e = static_cast<std::int32_t>(top ? 127.0f : n) + 127;
  const float scale = std::bit_cast<float>(under ? std::int32_t(0) : (e << 23));
  const float extra = top ? 2.0f : 1.0f;
  return (p * scale) * extra;
}

inline double fast_exp(double x) {
  const double hi = 709.9, lo = -708.39;
  const bool under = x < lo;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double n = (x * 1.4426950408889634074 + shifter) - shifter;
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const bool top = n > 1023.0;
  const std::int64_t e = static_cast<std::int64_t>(top ? 1023.0 : n) + 1023;
  const double scale = std::bit_cast<double>(under ? std::int64_t(0) : (e << 52));
  const double extra = top ? 2.0 : 1.0;
  return (p * scale) * extra;
}

/// sum_{j < n} f(j) with a fixed number of independent lanes kept in
/// registers (a reduction GCC and Clang vectorise without -ffast-math and
/// without the memory-resident lanes of `omp simd reduction`). f may also
/// store (e.g. write exp(x) and return it).
template <class T, class F>
inline T lane_sum(std::int64_t n, F&& f) {
  constexpr int lanes = 128 / sizeof(T);  // two 512-bit vectors
  T acc[lanes] = {};
  std::int64_t j = 0;
  for (; j + lanes <= n; j += lanes)
    for (int l = 0; l < lanes; ++l) acc[l] += f(j + l);
  for (int l = 0; j + l < n; ++l) acc[l] += f(j + l);
  for (int w = lanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

/// Outcome codes of a kernel that runs inside a parallel region (exceptions
/// may not cross it); turned into exceptions by `raise`.
enum class status : int { ok = 0, non_finite_scores, out_of_range };

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

/// Team helpers for a parallel region whose threads share reductions.
inline int team_rank() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int team_size() {
#if defined(_OPENMP)
  return omp_get_num_threads();
#else
  return 1;
#endif
}
inline void team_barrier() {
#if defined(_OPENMP)
#pragma omp barrier
#endif
}

}  // namespace detail
}  // namespace protoseg::ot

#if defined(_OPENMP)
/// `#pragma omp simd reduction(op: var)` where OpenMP is on (lets the
/// compiler reorder a floating-point reduction into vector lanes).
#define PROTOSEG_OT_SIMD_REDUCE(op, var) PROTOSEG_PRAGMA(omp simd reduction(op : var))
#define PROTOSEG_OT_SIMD PROTOSEG_PRAGMA(omp simd)
/// A parallel region over `threads` threads when `cond` holds.
#define PROTOSEG_OT_PARALLEL(cond, threads) PROTOSEG_PRAGMA(omp parallel if (cond) num_threads(threads))
#else
#define PROTOSEG_OT_SIMD_REDUCE(op, var)
#define PROTOSEG_OT_SIMD
#define PROTOSEG_OT_PARALLEL(cond, threads)
#endif
