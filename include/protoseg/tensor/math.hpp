#pragma once
/// \file math.hpp
/// Non-differentiable tensor operations: elementwise arithmetic with numpy
/// broadcasting, unary functions, reductions along an axis, (batched) matrix
/// products, permutations, slicing, concatenation and softmax. Each calls the
/// backend primitives of the tensor's policy.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "protoseg/backend/default.hpp"
#include "protoseg/backend/functors.hpp"
#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg {

namespace detail {

template <class T, class P>
void require_same_shape(const tensor<T, P>& a, const tensor<T, P>& b, const char* what) {
  if (a.shape() != b.shape())
    fail<shape_error>(what, ": shapes ", a.shape(), " and ", b.shape(), " differ, expected equal");
}

template <class T, class P>
void require_nonempty(const tensor<T, P>& x, const char* what) {
  x.require_defined(what);
  if (x.numel() == 0) fail<shape_error>(what, ": the tensor of shape ", x.shape(), " is empty");
}

/// Row-major strides of `s` placed in a rank-`r` frame, 0 on broadcast dims.
inline void broadcast_strides(const shape& s, const shape& out, std::int64_t* stride) {
  const int r = out.rank();
  std::int64_t acc = 1;
  for (int i = r - 1; i >= 0; --i) {
    const int d = s.rank() - r + i;
    const std::int64_t n = d >= 0 ? s[d] : 1;
    stride[i] = (n == 1) ? 0 : acc;
    acc *= n;
  }
}

}  // namespace detail

namespace detail {
/// out = f(a, b) over `s`, which both shapes must broadcast to.
template <class T, class P, class F>
tensor<T, P> zip_into_shape(const tensor<T, P>& a, const tensor<T, P>& b, const shape& s, F f) {
  auto out = tensor<T, P>::empty(s);
  backend::broadcast_geometry g;
  g.rank = s.rank();
  g.numel = s.numel();
  for (int d = 0; d < s.rank(); ++d) g.out_shape[d] = s[d];
  broadcast_strides(a.shape(), s, g.a_stride);
  broadcast_strides(b.shape(), s, g.b_stride);
  if (g.numel) backend::elementwise<P>::zip_broadcast(g, a.data(), b.data(), out.data(), f);
  return out;
}
}  // namespace detail

/// f(a, b) elementwise with numpy broadcasting.
template <class T, class P, class F>
tensor<T, P> zip_with(const tensor<T, P>& a, const tensor<T, P>& b, F f, const char* what = "zip_with") {
  a.require_defined(what);
  b.require_defined(what);
  if (a.shape() == b.shape()) {
    auto out = tensor<T, P>::empty(a.shape());
    backend::elementwise<P>::zip(a.data(), b.data(), out.data(), a.numel(), f);
    return out;
  }
  return detail::zip_into_shape(a, b, detail::broadcast_shapes(a.shape(), b.shape(), what), f);
}

/// f(x) elementwise, into a new tensor of value type U.
template <class U, class T, class P, class F>
tensor<U, P> map_to(const tensor<T, P>& x, F f) {
  x.require_defined("map");
  auto out = tensor<U, P>::empty(x.shape());
  backend::elementwise<P>::map(x.data(), out.data(), x.numel(), f);
  return out;
}
template <class T, class P, class F>
tensor<T, P> map(const tensor<T, P>& x, F f) {
  return map_to<T>(x, f);
}

/// x converted to value type U.
template <class U, class T, class P>
tensor<U, P> cast(const tensor<T, P>& x) {
  return map_to<U>(x, fn::cast<U>{});
}

// ---- arithmetic -------------------------------------------------------------

template <class T, class P>
tensor<T, P> operator+(const tensor<T, P>& a, const tensor<T, P>& b) { return zip_with(a, b, fn::plus{}, "add"); }
template <class T, class P>
tensor<T, P> operator-(const tensor<T, P>& a, const tensor<T, P>& b) { return zip_with(a, b, fn::minus{}, "sub"); }
template <class T, class P>
tensor<T, P> operator*(const tensor<T, P>& a, const tensor<T, P>& b) { return zip_with(a, b, fn::multiplies{}, "mul"); }
template <class T, class P>
tensor<T, P> operator/(const tensor<T, P>& a, const tensor<T, P>& b) { return zip_with(a, b, fn::divides{}, "div"); }
template <class T, class P>
tensor<T, P> operator-(const tensor<T, P>& a) { return map(a, fn::negate{}); }

template <class T, class P>
tensor<T, P> operator+(const tensor<T, P>& a, T s) { return map(a, fn::bind_rhs<fn::plus, T>{{}, s}); }
template <class T, class P>
tensor<T, P> operator-(const tensor<T, P>& a, T s) { return map(a, fn::bind_rhs<fn::minus, T>{{}, s}); }
template <class T, class P>
tensor<T, P> operator*(const tensor<T, P>& a, T s) { return map(a, fn::bind_rhs<fn::multiplies, T>{{}, s}); }
template <class T, class P>
tensor<T, P> operator/(const tensor<T, P>& a, T s) { return map(a, fn::bind_rhs<fn::divides, T>{{}, s}); }
template <class T, class P>
tensor<T, P> operator+(T s, const tensor<T, P>& a) { return a + s; }
template <class T, class P>
tensor<T, P> operator*(T s, const tensor<T, P>& a) { return a * s; }
template <class T, class P>
tensor<T, P> operator-(T s, const tensor<T, P>& a) { return map(a, fn::bind_lhs<fn::minus, T>{{}, s}); }
template <class T, class P>
tensor<T, P> operator/(T s, const tensor<T, P>& a) { return map(a, fn::bind_lhs<fn::divides, T>{{}, s}); }

/// Elementwise maximum / minimum with broadcasting.
template <class T, class P>
tensor<T, P> maximum(const tensor<T, P>& a, const tensor<T, P>& b) { return zip_with(a, b, fn::maximum{}, "maximum"); }
template <class T, class P>
tensor<T, P> minimum(const tensor<T, P>& a, const tensor<T, P>& b) { return zip_with(a, b, fn::minimum{}, "minimum"); }
/// 1 where a == b, else 0 (broadcasting).
template <class T, class P>
tensor<T, P> eq(const tensor<T, P>& a, const tensor<T, P>& b) { return zip_with(a, b, fn::equal_to{}, "eq"); }

// ---- unary functions -------------------------------------------------------

template <class T, class P> tensor<T, P> exp(const tensor<T, P>& x) { return map(x, fn::exp{}); }
template <class T, class P> tensor<T, P> log(const tensor<T, P>& x) { return map(x, fn::log{}); }
template <class T, class P> tensor<T, P> sqrt(const tensor<T, P>& x) { return map(x, fn::sqrt{}); }
template <class T, class P> tensor<T, P> abs(const tensor<T, P>& x) { return map(x, fn::abs{}); }
template <class T, class P> tensor<T, P> tanh(const tensor<T, P>& x) { return map(x, fn::tanh{}); }
template <class T, class P> tensor<T, P> relu(const tensor<T, P>& x) { return map(x, fn::relu{}); }
template <class T, class P> tensor<T, P> sigmoid(const tensor<T, P>& x) { return map(x, fn::sigmoid{}); }
/// GELU in its exact (erf) form, as torch.nn.GELU() by default.
template <class T, class P> tensor<T, P> gelu(const tensor<T, P>& x) { return map(x, fn::gelu{}); }
template <class T, class P> tensor<T, P> pow(const tensor<T, P>& x, T e) { return map(x, fn::pow_scalar<T>{e}); }
template <class T, class P> tensor<T, P> clamp(const tensor<T, P>& x, T lo, T hi) { return map(x, fn::clamp<T>{lo, hi}); }

// ---- reductions ------------------------------------------------------------

namespace detail {
/// (outer, n, inner) split of a shape around `axis`.
struct axis_split {
  std::int64_t outer, n, inner;
};
inline axis_split split_at(const shape& s, int axis) {
  return {s.product(0, axis), s[axis], s.product(axis + 1, s.rank())};
}
template <class T, class P, class F>
tensor<T, P> reduce_axis(const tensor<T, P>& x, int axis, bool keepdim, T init, F f, const char* what) {
  x.require_defined(what);
  if (x.rank() == 0) return x.clone();
  axis = normalize_axis(axis, x.rank(), what);
  const auto sp = split_at(x.shape(), axis);
  auto out = tensor<T, P>::empty(x.shape().with(axis, 1));
  backend::reduction<P>::reduce(x.data(), out.data(), sp.outer, sp.n, sp.inner, init, f);
  return keepdim ? out : out.reshape(x.shape().removed(axis));
}
}  // namespace detail

/// Sum along `axis`.
template <class T, class P>
tensor<T, P> sum(const tensor<T, P>& x, int axis, bool keepdim = false) {
  return detail::reduce_axis(x, axis, keepdim, T(0), fn::plus{}, "sum");
}
/// Sum of all elements as a rank-0 tensor.
template <class T, class P>
tensor<T, P> sum(const tensor<T, P>& x) {
  x.require_defined("sum");
  return sum(x.reshape({x.numel()}), 0);
}
/// Mean along `axis` (the axis must not be empty).
template <class T, class P>
tensor<T, P> mean(const tensor<T, P>& x, int axis, bool keepdim = false) {
  x.require_defined("mean");
  const int a = detail::normalize_axis(axis, x.rank(), "mean");
  if (x.shape()[a] == 0) detail::fail<shape_error>("mean: axis ", axis, " of shape ", x.shape(), " is empty");
  return sum(x, a, keepdim) / static_cast<T>(x.shape()[a]);
}
template <class T, class P>
tensor<T, P> mean(const tensor<T, P>& x) {
  detail::require_nonempty(x, "mean");
  return sum(x) / static_cast<T>(x.numel());
}
/// Largest value along `axis` (the axis must not be empty).
template <class T, class P>
tensor<T, P> max(const tensor<T, P>& x, int axis, bool keepdim = false) {
  detail::require_nonempty(x, "max");
  return detail::reduce_axis(x, axis, keepdim, std::numeric_limits<T>::lowest(), fn::maximum{}, "max");
}
template <class T, class P>
tensor<T, P> min(const tensor<T, P>& x, int axis, bool keepdim = false) {
  detail::require_nonempty(x, "min");
  return detail::reduce_axis(x, axis, keepdim, std::numeric_limits<T>::max(), fn::minimum{}, "min");
}

/// Values and indices (int64) of the maximum along `axis`.
template <class T, class P>
struct max_result {
  tensor<T, P> values;
  tensor<std::int64_t, P> indices;
};
template <class T, class P>
max_result<T, P> max_with_indices(const tensor<T, P>& x, int axis, bool keepdim = false) {
  detail::require_nonempty(x, "max_with_indices");
  axis = detail::normalize_axis(axis, x.rank(), "max_with_indices");
  const auto sp = detail::split_at(x.shape(), axis);
  const shape kept = x.shape().with(axis, 1);
  auto values = tensor<T, P>::empty(kept);
  auto idx = tensor<std::int64_t, P>::empty(kept);
  backend::reduction<P>::argmax(x.data(), values.data(), idx.data(), sp.outer, sp.n, sp.inner);
  if (keepdim) return {values, idx};
  const shape s = x.shape().removed(axis);
  return {values.reshape(s), idx.reshape(s)};
}
/// Index (int64) of the first maximum along `axis`.
template <class T, class P>
tensor<std::int64_t, P> argmax(const tensor<T, P>& x, int axis, bool keepdim = false) {
  return max_with_indices(x, axis, keepdim).indices;
}

/// Sums a broadcast result back to shape `target` (the adjoint of broadcasting).
template <class T, class P>
tensor<T, P> sum_to(const tensor<T, P>& x, const shape& target) {
  if (x.shape() == target) return x;
  const int r = x.rank(), lead = r - target.rank();
  if (lead < 0) detail::fail<shape_error>("sum_to: shape ", x.shape(), " has lower rank than ", target);
  tensor<T, P> y = x;
  for (int d = 0; d < r; ++d) {
    const int td = d - lead;
    const std::int64_t want = td >= 0 ? target[td] : 1;
    if (want == 1 && x.shape()[d] != 1) y = sum(y, d, true);
    else if (want != x.shape()[d])
      detail::fail<shape_error>("sum_to: shape ", x.shape(), " does not broadcast to ", target);
  }
  return y.reshape(target);
}

/// x expanded (copied) to a broadcast-compatible larger shape.
template <class T, class P>
tensor<T, P> broadcast_to(const tensor<T, P>& x, const shape& s) {
  if (x.shape() == s) return x;
  const shape b = detail::broadcast_shapes(x.shape(), s, "broadcast_to");
  if (!(b == s)) detail::fail<shape_error>("broadcast_to: shape ", x.shape(), " does not broadcast to ", s);
  return detail::zip_into_shape(x, x, s, fn::second{});
}

// ---- matrix products -------------------------------------------------------

/// Matrix product of the last two dimensions: (..., m, k) x (..., k, n).
/// Leading (batch) dimensions must be equal, or one operand is a plain
/// matrix that is used for every batch entry. `trans_a` / `trans_b` use the
/// transpose of the last two dimensions of a / b without copying.
template <class T, class P>
tensor<T, P> matmul(const tensor<T, P>& a, const tensor<T, P>& b, bool trans_a = false, bool trans_b = false) {
  a.require_defined("matmul");
  b.require_defined("matmul");
  if (a.rank() < 2 || b.rank() < 2)
    detail::fail<shape_error>("matmul: operands need rank >= 2, got shapes ", a.shape(), " and ", b.shape());
  const int ra = a.rank(), rb = b.rank();
  const std::int64_t m = trans_a ? a.shape()[ra - 1] : a.shape()[ra - 2];
  const std::int64_t ka = trans_a ? a.shape()[ra - 2] : a.shape()[ra - 1];
  const std::int64_t kb = trans_b ? b.shape()[rb - 1] : b.shape()[rb - 2];
  const std::int64_t n = trans_b ? b.shape()[rb - 2] : b.shape()[rb - 1];
  if (ka != kb)
    detail::fail<shape_error>("matmul: inner dimensions differ: a ", a.shape(), (trans_a ? " (transposed)" : ""),
                              " has k = ", ka, ", b ", b.shape(), (trans_b ? " (transposed)" : ""), " has k = ", kb);
  const std::int64_t batch_a = a.shape().product(0, ra - 2), batch_b = b.shape().product(0, rb - 2);
  std::vector<std::int64_t> out_dims;
  if (ra > 2 && rb > 2) {
    if (ra != rb || !std::equal(a.shape().begin(), a.shape().begin() + ra - 2, b.shape().begin()))
      detail::fail<shape_error>("matmul: batch dimensions of ", a.shape(), " and ", b.shape(),
                                " differ; expected equal batch dimensions or one plain matrix");
  }
  const tensor<T, P>& big = ra >= rb ? a : b;
  out_dims.assign(big.shape().begin(), big.shape().end() - 2);
  out_dims.push_back(m);
  out_dims.push_back(n);
  const std::int64_t batch = std::max(batch_a, batch_b);
  auto out = tensor<T, P>::empty(shape(out_dims));
  if (out.numel() == 0) return out;
  if (ka == 0) {
    backend::elementwise<P>::fill(out.data(), out.numel(), T(0));
    return out;
  }
  backend::gemm<P>::run(batch, trans_a, trans_b, m, n, ka, T(1), a.data(), ra > 2 ? m * ka : 0, b.data(),
                        rb > 2 ? ka * n : 0, T(0), out.data(), m * n);
  return out;
}

// ---- layout ----------------------------------------------------------------

/// Dimensions reordered: output dimension d is input dimension perm[d].
template <class T, class P>
tensor<T, P> permute(const tensor<T, P>& x, const std::vector<int>& perm) {
  x.require_defined("permute");
  const int r = x.rank();
  if (static_cast<int>(perm.size()) != r)
    detail::fail<shape_error>("permute: ", perm.size(), " axes given for a tensor of rank ", r);
  std::vector<int> p(perm.size());
  std::vector<bool> seen(perm.size(), false);
  for (int d = 0; d < r; ++d) {
    p[d] = detail::normalize_axis(perm[d], r, "permute");
    if (seen[p[d]]) detail::fail<value_error>("permute: axis ", perm[d], " appears twice");
    seen[p[d]] = true;
  }
  std::vector<std::int64_t> out_dims(r);
  bool identity = true;
  for (int d = 0; d < r; ++d) {
    out_dims[d] = x.shape()[p[d]];
    identity = identity && p[d] == d;
  }
  if (identity) return x.clone();
  auto out = tensor<T, P>::empty(shape(out_dims));
  if (out.numel()) backend::copy<P>::permute(x.data(), out.data(), r, x.shape().data(), p.data());
  return out;
}

/// Dimensions d0 and d1 swapped (a copy).
template <class T, class P>
tensor<T, P> transpose(const tensor<T, P>& x, int d0 = -2, int d1 = -1) {
  x.require_defined("transpose");
  std::vector<int> perm(x.rank());
  std::iota(perm.begin(), perm.end(), 0);
  d0 = detail::normalize_axis(d0, x.rank(), "transpose");
  d1 = detail::normalize_axis(d1, x.rank(), "transpose");
  std::swap(perm[d0], perm[d1]);
  return permute(x, perm);
}

/// Elements [start, stop) along `axis` (a copy). Negative bounds count from
/// the end, as in Python.
template <class T, class P>
tensor<T, P> slice(const tensor<T, P>& x, int axis, std::int64_t start, std::int64_t stop) {
  x.require_defined("slice");
  axis = detail::normalize_axis(axis, x.rank(), "slice");
  const std::int64_t n = x.shape()[axis];
  if (start < 0) start += n;
  if (stop < 0) stop += n;
  if (start < 0 || stop > n || start > stop)
    detail::fail<value_error>("slice: range [", start, ", ", stop, ") is invalid for axis ", axis,
                              " of size ", n);
  const auto sp = detail::split_at(x.shape(), axis);
  auto out = tensor<T, P>::empty(x.shape().with(axis, stop - start));
  backend::copy<P>::blocks(x.data() + start * sp.inner, n * sp.inner, out.data(), (stop - start) * sp.inner,
                           sp.outer, (stop - start) * sp.inner);
  return out;
}

/// Index i along `axis`, the axis removed (a copy).
template <class T, class P>
tensor<T, P> index(const tensor<T, P>& x, int axis, std::int64_t i) {
  x.require_defined("index");
  axis = detail::normalize_axis(axis, x.rank(), "index");
  const std::int64_t n = x.shape()[axis];
  if (i < -n || i >= n)
    detail::fail<value_error>("index: index ", i, " is out of range for axis ", axis, " of size ", n);
  if (i < 0) i += n;
  return slice(x, axis, i, i + 1).reshape(x.shape().removed(axis));
}

/// Tensors joined along `axis`; all other dimensions must agree.
template <class T, class P = cpu>
tensor<T, P> concat(const std::vector<tensor<T, P>>& xs, int axis) {
  if (xs.empty()) detail::fail<shape_error>("concat: no tensors given");
  xs[0].require_defined("concat");
  const shape& s0 = xs[0].shape();
  axis = detail::normalize_axis(axis, s0.rank(), "concat");
  std::int64_t total = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    xs[i].require_defined("concat");
    const shape& s = xs[i].shape();
    bool ok = s.rank() == s0.rank();
    for (int d = 0; ok && d < s.rank(); ++d) ok = d == axis || s[d] == s0[d];
    if (!ok)
      detail::fail<shape_error>("concat: tensor ", i, " has shape ", s, ", incompatible with tensor 0 of shape ",
                                s0, " along axis ", axis);
    total += s[axis];
  }
  auto out = tensor<T, P>::empty(s0.with(axis, total));
  const auto sp = detail::split_at(out.shape(), axis);
  std::int64_t off = 0;
  for (const auto& x : xs) {
    const std::int64_t w = x.shape()[axis] * sp.inner;
    backend::copy<P>::blocks(x.data(), w, out.data() + off, total * sp.inner, sp.outer, w);
    off += w;
  }
  return out;
}

// ---- softmax ---------------------------------------------------------------

/// softmax along `axis` (fused, numerically stable).
template <class T, class P>
tensor<T, P> softmax(const tensor<T, P>& x, int axis) {
  detail::require_nonempty(x, "softmax");
  axis = detail::normalize_axis(axis, x.rank(), "softmax");
  const auto sp = detail::split_at(x.shape(), axis);
  auto y = tensor<T, P>::empty(x.shape());
  backend::softmax<P>::forward(x.data(), y.data(), sp.outer, sp.n, sp.inner, false);
  return y;
}
/// log-softmax along `axis` (fused, numerically stable).
template <class T, class P>
tensor<T, P> log_softmax(const tensor<T, P>& x, int axis) {
  detail::require_nonempty(x, "log_softmax");
  axis = detail::normalize_axis(axis, x.rank(), "log_softmax");
  const auto sp = detail::split_at(x.shape(), axis);
  auto y = tensor<T, P>::empty(x.shape());
  backend::softmax<P>::forward(x.data(), y.data(), sp.outer, sp.n, sp.inner, true);
  return y;
}

/// x / max(||x||_2, eps) along `axis`, as torch.nn.functional.normalize.
template <class T, class P>
tensor<T, P> l2_normalize(const tensor<T, P>& x, int axis, T eps = T(1e-12)) {
  auto norm = sqrt(sum(x * x, axis, true));
  return x / map(norm, fn::bind_rhs<fn::maximum, T>{{}, eps});
}

// ---- checks ----------------------------------------------------------------

/// True when every element is finite.
template <class T, class P>
bool all_finite(const tensor<T, P>& x) {
  if constexpr (std::is_floating_point_v<T>) {
    if (x.numel() == 0) return true;
    return sum(map(x, fn::not_finite{})).item() == T(0);
  } else {
    return true;
  }
}

/// Largest |a - b| (shapes must be equal).
template <class T, class P>
T max_abs_diff(const tensor<T, P>& a, const tensor<T, P>& b) {
  detail::require_same_shape(a, b, "max_abs_diff");
  if (a.numel() == 0) return T(0);
  return max(abs(a - b).flatten(), 0).item();
}

}  // namespace protoseg
