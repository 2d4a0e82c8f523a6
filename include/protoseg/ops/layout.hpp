#pragma once
/// \file layout.hpp
/// Differentiable reshape, permute, transpose, slice, index and concat.

#include <numeric>

#include "protoseg/autograd/variable.hpp"

namespace protoseg {

namespace ops_detail {
template <class T, class P>
struct reshape_fn {
  static constexpr const char* name = "reshape";
  shape in;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g.reshape(in)}; }
};
template <class T, class P>
struct permute_fn {
  static constexpr const char* name = "permute";
  std::vector<int> inverse;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {permute(g, inverse)}; }
};
template <class T, class P>
struct slice_fn {
  static constexpr const char* name = "slice";
  shape in;
  int axis;
  std::int64_t start;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto out = zeros<T, P>(in);
    const auto sp = detail::split_at(in, axis);
    const std::int64_t w = g.shape()[axis] * sp.inner;
    backend::copy<P>::blocks(g.data(), w, out.data() + start * sp.inner, sp.n * sp.inner, sp.outer, w);
    return {out};
  }
};
template <class T, class P>
struct concat_fn {
  static constexpr const char* name = "concat";
  int axis;
  std::vector<std::int64_t> sizes;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    std::vector<tensor<T, P>> out;
    std::int64_t off = 0;
    for (std::int64_t n : sizes) {
      out.push_back(slice(g, axis, off, off + n));
      off += n;
    }
    return out;
  }
};
}  // namespace ops_detail

/// A reshaped view (one dimension may be -1).
template <class T, class P>
variable<T, P> reshape(const variable<T, P>& x, std::vector<std::int64_t> dims) {
  return detail::record(x.value().reshape(std::move(dims)), ops_detail::reshape_fn<T, P>{x.shape()}, x);
}
/// Output dimension d is input dimension perm[d].
template <class T, class P>
variable<T, P> permute(const variable<T, P>& x, const std::vector<int>& perm) {
  auto y = permute(x.value(), perm);
  std::vector<int> inv(perm.size());
  for (std::size_t d = 0; d < perm.size(); ++d)
    inv[static_cast<std::size_t>(detail::normalize_axis(perm[d], x.rank(), "permute"))] = static_cast<int>(d);
  return detail::record(y, ops_detail::permute_fn<T, P>{inv}, x);
}
template <class T, class P>
variable<T, P> transpose(const variable<T, P>& x, int d0 = -2, int d1 = -1) {
  std::vector<int> perm(static_cast<std::size_t>(x.rank()));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[static_cast<std::size_t>(detail::normalize_axis(d0, x.rank(), "transpose"))],
            perm[static_cast<std::size_t>(detail::normalize_axis(d1, x.rank(), "transpose"))]);
  return permute(x, perm);
}
/// Elements [start, stop) along `axis` (negative bounds count from the end).
template <class T, class P>
variable<T, P> slice(const variable<T, P>& x, int axis, std::int64_t start, std::int64_t stop) {
  const int a = detail::normalize_axis(axis, x.rank(), "slice");
  auto y = slice(x.value(), a, start, stop);
  const std::int64_t n = x.shape()[a];
  return detail::record(y, ops_detail::slice_fn<T, P>{x.shape(), a, start < 0 ? start + n : start}, x);
}
/// Index i along `axis`, the axis removed.
template <class T, class P>
variable<T, P> index(const variable<T, P>& x, int axis, std::int64_t i) {
  const int a = detail::normalize_axis(axis, x.rank(), "index");
  const std::int64_t n = x.shape()[a];
  if (i < -n || i >= n)
    detail::fail<value_error>("index: index ", i, " is out of range for axis ", a, " of size ", n);
  if (i < 0) i += n;
  return reshape(slice(x, a, i, i + 1), x.shape().removed(a).to_vector());
}
/// Variables joined along `axis`.
template <class T, class P>
variable<T, P> concat(const std::vector<variable<T, P>>& xs, int axis) {
  std::vector<tensor<T, P>> vals;
  for (const auto& v : xs) vals.push_back(v.value());
  auto y = concat(vals, axis);
  const int a = detail::normalize_axis(axis, y.rank(), "concat");
  std::vector<std::int64_t> sizes;
  for (const auto& v : vals) sizes.push_back(v.shape()[a]);
  return detail::record_list(y, ops_detail::concat_fn<T, P>{a, sizes}, xs);
}

}  // namespace protoseg
