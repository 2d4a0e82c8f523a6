#pragma once
/// \file reduction.hpp
/// Differentiable sum and mean (all elements or along an axis) and max along
/// an axis, whose gradient goes to the first argmax.

#include "protoseg/autograd/variable.hpp"

namespace protoseg {

namespace ops_detail {
template <class T, class P>
struct sum_fn {
  static constexpr const char* name = "sum";
  shape in, kept;  // input shape and the output shape with the axis kept
  T scale;         // 1 for sum, 1/n for mean
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto gk = g.reshape(kept);
    return {broadcast_to(scale == T(1) ? gk : gk * scale, in)};
  }
};
template <class T, class P>
struct max_fn {
  static constexpr const char* name = "max";
  shape in;
  tensor<std::int64_t, P> idx;
  int axis;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto out = tensor<T, P>::empty(in);
    const auto sp = detail::split_at(in, axis);
    backend::reduction<P>::scatter_axis(g.data(), idx.data(), out.data(), sp.outer, sp.n, sp.inner);
    return {out};
  }
  void add_into(const tensor<T, P>& g, tensor<T, P>& slot) {
    const auto sp = detail::split_at(in, axis);
    backend::reduction<P>::scatter_axis_add(g.data(), idx.data(), slot.data(), sp.outer, sp.n, sp.inner);
  }
};
}  // namespace ops_detail

/// Sum of all elements (rank-0 result).
template <class T, class P>
variable<T, P> sum(const variable<T, P>& x) {
  std::vector<std::int64_t> ones(static_cast<std::size_t>(x.rank()), 1);
  return detail::record(sum(x.value()), ops_detail::sum_fn<T, P>{x.shape(), shape(ones), T(1)}, x);
}
/// Sum along `axis`.
template <class T, class P>
variable<T, P> sum(const variable<T, P>& x, int axis, bool keepdim = false) {
  const int a = detail::normalize_axis(axis, x.rank(), "sum");
  return detail::record(sum(x.value(), a, keepdim), ops_detail::sum_fn<T, P>{x.shape(), x.shape().with(a, 1), T(1)}, x);
}
/// Mean of all elements (the tensor must not be empty).
template <class T, class P>
variable<T, P> mean(const variable<T, P>& x) {
  std::vector<std::int64_t> ones(static_cast<std::size_t>(x.rank()), 1);
  auto y = mean(x.value());
  return detail::record(y, ops_detail::sum_fn<T, P>{x.shape(), shape(ones), T(1) / static_cast<T>(x.numel())}, x);
}
/// Mean along `axis`.
template <class T, class P>
variable<T, P> mean(const variable<T, P>& x, int axis, bool keepdim = false) {
  const int a = detail::normalize_axis(axis, x.rank(), "mean");
  auto y = mean(x.value(), a, keepdim);
  return detail::record(y, ops_detail::sum_fn<T, P>{x.shape(), x.shape().with(a, 1), T(1) / static_cast<T>(x.shape()[a])}, x);
}
/// Maximum along `axis`; the gradient flows to the first index that attains it.
template <class T, class P>
variable<T, P> max(const variable<T, P>& x, int axis, bool keepdim = false) {
  const int a = detail::normalize_axis(axis, x.rank(), "max");
  auto r = max_with_indices(x.value(), a, keepdim);
  return detail::record(r.values, ops_detail::max_fn<T, P>{x.shape(), r.indices, a}, x);
}

}  // namespace protoseg
