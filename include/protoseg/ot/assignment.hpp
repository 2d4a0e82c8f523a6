#pragma once
/// \file assignment.hpp
/// Hard assignments from a soft Sinkhorn-Knopp assignment Q: the argmax
/// prototype per pixel (the published code's target index) and a one-hot Q,
/// optionally sampled with Gumbel noise as the published code does
/// (`gumbel_softmax(Q, tau, hard=True)`, whose hard sample is
/// argmax(Q + g) for any tau), always from an explicit seeded generator.

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "protoseg/error.hpp"
#include "protoseg/tensor/random.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::ot {

/// How the one-hot assignment picks a prototype per pixel.
enum class sampling {
  argmax,  ///< deterministic: the largest entry of Q (the default)
  gumbel   ///< argmax(Q + Gumbel noise), Q taken as logits (published code)
};

/// Options of `harden`.
struct assignment_options {
  /// Axis of Q that indexes prototypes: 0 for K x N (Algorithm 1), 1 for the
  /// N x M layout of `segmented_sinkhorn`.
  int prototype_axis = 0;
  sampling mode = sampling::argmax;
  /// Required for sampling::gumbel (never a hidden global source).
  generator* gen = nullptr;
};

/// A hard assignment: `index` is the argmax prototype per pixel (int64, N),
/// `sampled` the prototype chosen for the one-hot (== index unless Gumbel),
/// `one_hot` has Q's shape with a single 1 per pixel at `sampled`.
template <class T>
struct hard_assignment {
  tensor<std::int64_t> index;
  tensor<std::int64_t> sampled;
  tensor<T> one_hot;
};

namespace detail {
template <class T>
void check_assignment(const tensor<T>& q, int axis, const char* who) {
  if (!q.defined() || q.rank() != 2 || q.shape()[0] < 1 || q.shape()[1] < 1)
    protoseg::detail::fail<shape_error>(who, ": Q: got ", q.defined() ? "shape " : "an undefined tensor",
                                        q.defined() ? q.shape() : shape{}, ", expected a non-empty matrix");
  if (axis != 0 && axis != 1)
    protoseg::detail::fail<value_error>(who, ": prototype_axis: got ", axis, ", expected 0 (K x N) or 1 (N x M)");
  const T* d = q.data();
  for (std::int64_t k = 0; k < q.numel(); ++k)
    if (!std::isfinite(d[k]))
      protoseg::detail::fail<value_error>(who, ": Q: element ", k, " is ", d[k], ", expected finite values");
}
}  // namespace detail

/// Argmax prototype per pixel (ties: the lowest index), as the published
/// code's `argmax(L, dim=1)`; int64 of length N.
template <class T>
tensor<std::int64_t> assignment_index(const tensor<T>& q, int prototype_axis = 0) {
  detail::check_assignment(q, prototype_axis, "assignment_index");
  const std::int64_t R = q.shape()[0], Cn = q.shape()[1];
  const T* d = q.data();
  if (prototype_axis == 1) {
    auto idx = tensor<std::int64_t>::empty({R});
    for (std::int64_t n = 0; n < R; ++n) {
      std::int64_t best = 0;
      for (std::int64_t m = 1; m < Cn; ++m)
        if (d[n * Cn + m] > d[n * Cn + best]) best = m;
      idx.data()[n] = best;
    }
    return idx;
  }
  auto idx = tensor<std::int64_t>(shape{Cn});
  std::vector<T> best(d, d + Cn);
  std::int64_t* id = idx.data();
  for (std::int64_t k = 1; k < R; ++k)
    for (std::int64_t n = 0; n < Cn; ++n)
      if (d[k * Cn + n] > best[static_cast<std::size_t>(n)]) {
        best[static_cast<std::size_t>(n)] = d[k * Cn + n];
        id[n] = k;
      }
  return idx;
}

/// One-hot matrix of prototype indices: K x N (prototype_axis 0) or N x K (1).
template <class T>
tensor<T> one_hot_assignment(const tensor<std::int64_t>& index, std::int64_t K, int prototype_axis = 0) {
  if (!index.defined() || index.rank() != 1)
    protoseg::detail::fail<shape_error>("one_hot_assignment: index: got ", index.defined() ? "shape " : "an undefined tensor",
                                        index.defined() ? index.shape() : shape{}, ", expected a rank-1 int64 tensor");
  if (K < 1) protoseg::detail::fail<value_error>("one_hot_assignment: K: got ", K, ", expected >= 1");
  if (prototype_axis != 0 && prototype_axis != 1)
    protoseg::detail::fail<value_error>("one_hot_assignment: prototype_axis: got ", prototype_axis, ", expected 0 or 1");
  const std::int64_t N = index.numel();
  tensor<T> out(prototype_axis == 0 ? shape{K, N} : shape{N, K});
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t k = index.data()[n];
    if (k < 0 || k >= K)
      protoseg::detail::fail<value_error>("one_hot_assignment: index[", n, "]: got ", k, ", expected 0 <= index < ", K);
    out.data()[prototype_axis == 0 ? k * N + n : n * K + k] = T(1);
  }
  return out;
}

/// Hard assignment of a soft Q (see `hard_assignment`). Deterministic unless
/// o.mode is sampling::gumbel, which draws K * N Gumbel variates from *o.gen
/// in pixel-major order (same seed, same result, any thread count).
template <class T>
hard_assignment<T> harden(const tensor<T>& q, const assignment_options& o = {}) {
  hard_assignment<T> h;
  h.index = assignment_index(q, o.prototype_axis);
  const std::int64_t K = q.shape()[o.prototype_axis], N = q.shape()[1 - o.prototype_axis];
  if (o.mode == sampling::argmax) {
    h.sampled = h.index;
  } else {
    if (o.gen == nullptr)
      protoseg::detail::fail<value_error>("harden: options.gen: got nullptr, expected a seeded generator for Gumbel sampling");
    h.sampled = tensor<std::int64_t>::empty({N});
    const T* d = q.data();
    for (std::int64_t n = 0; n < N; ++n) {
      std::int64_t best = 0;
      double best_v = -std::numeric_limits<double>::infinity();
      for (std::int64_t k = 0; k < K; ++k) {
        const double v = double(o.prototype_axis == 0 ? d[k * N + n] : d[n * K + k]) + o.gen->gumbel();
        if (v > best_v) best_v = v, best = k;
      }
      h.sampled.data()[n] = best;
    }
  }
  h.one_hot = one_hot_assignment<T>(h.sampled, K, o.prototype_axis);
  return h;
}

}  // namespace protoseg::ot
