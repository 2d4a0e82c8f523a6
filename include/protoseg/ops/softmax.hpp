#pragma once
/// \file softmax.hpp
/// Differentiable softmax and log-softmax along an axis (fused kernels) and
/// L2 normalisation along an axis.

#include "protoseg/autograd/variable.hpp"
#include "protoseg/ops/arithmetic.hpp"
#include "protoseg/ops/reduction.hpp"
#include "protoseg/ops/unary.hpp"

namespace protoseg {

namespace ops_detail {
template <class T, class P>
struct softmax_fn {
  static constexpr const char* name = "softmax";
  tensor<T, P> y;
  int axis;
  bool log;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto gx = tensor<T, P>::empty(y.shape());
    const auto sp = detail::split_at(y.shape(), axis);
    backend::softmax<P>::backward(y.data(), g.data(), gx.data(), sp.outer, sp.n, sp.inner, log);
    return {gx};
  }
};
template <class T, class P>
struct l2_normalize_fn {
  static constexpr const char* name = "l2_normalize";
  tensor<T, P> y, denom;  // y = x / denom, denom = max(||x||, eps)
  tensor<T, P> clamped;   // 1 where the norm was below eps (denominator constant)
  int axis;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    // d/dx (x / ||x||) applied to g: (g - y * <g, y>) / ||x||, or g / eps when clamped.
    auto dot = sum(g * y, axis, true);
    auto active = T(1) - clamped;
    return {(g - y * (dot * active)) / denom};
  }
};
}  // namespace ops_detail

/// softmax along `axis`.
template <class T, class P>
variable<T, P> softmax(const variable<T, P>& x, int axis) {
  const int a = detail::normalize_axis(axis, x.rank(), "softmax");
  auto y = softmax(x.value(), a);
  return detail::record(y, ops_detail::softmax_fn<T, P>{y, a, false}, x);
}
/// log-softmax along `axis`.
template <class T, class P>
variable<T, P> log_softmax(const variable<T, P>& x, int axis) {
  const int a = detail::normalize_axis(axis, x.rank(), "log_softmax");
  auto y = log_softmax(x.value(), a);
  return detail::record(y, ops_detail::softmax_fn<T, P>{y, a, true}, x);
}
/// x / max(||x||_2, eps) along `axis` (torch.nn.functional.normalize).
template <class T, class P>
variable<T, P> l2_normalize(const variable<T, P>& x, int axis, T eps = T(1e-12)) {
  const int a = detail::normalize_axis(axis, x.rank(), "l2_normalize");
  const auto& v = x.value();
  auto norm = sqrt(sum(v * v, a, true));
  auto denom = map(norm, fn::bind_rhs<fn::maximum, T>{{}, eps});
  auto clamped = map(norm, fn::bind_lhs<fn::minus, T>{{}, eps});  // eps - norm
  clamped = map(clamped, fn::step{});                              // 1 where norm < eps
  auto y = v / denom;
  return detail::record(y, ops_detail::l2_normalize_fn<T, P>{y, denom, clamped, a}, x);
}

}  // namespace protoseg
