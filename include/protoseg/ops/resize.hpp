#pragma once
/// \file ops/resize.hpp
/// Resizing of the last two dimensions (`nn::functional::interpolate`,
/// F.interpolate: bilinear with or without align_corners, legacy nearest)
/// and its gather-form backward.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::nn {

/// Resize of the last two dimensions, as F.interpolate(size=...) does:
/// `bilinear` (align_corners true or false) or `nearest` (legacy nearest,
/// floor(o * in / out); align_corners must be false).
struct interpolate_options {
  backend::resize_mode mode = backend::resize_mode::bilinear;
  bool align_corners = false;
};

namespace functional {
namespace detail_fn {

template <class T, class P>
struct resize_fn {
  static constexpr const char* name = "interpolate";
  shape in;
  backend::resize_axis<T> ah, aw;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto gx = tensor<T, P>::empty(in);
    backend::resize<P>::backward(g.data(), gx.data(), in.product(0, in.rank() - 2), ah, aw);
    return {gx};
  }
};

}  // namespace detail_fn

/// Resizes the last two dimensions of x (..., H, W) to (out_h, out_w), as
/// F.interpolate(x, size=(out_h, out_w), mode, align_corners).
template <class T, class P>
variable<T, P> interpolate(const variable<T, P>& x, std::int64_t out_h, std::int64_t out_w,
                           const interpolate_options& opt = {}) {
  if (!x.defined()) ::protoseg::detail::fail<value_error>("interpolate: x is undefined");
  if (x.rank() < 3)
    ::protoseg::detail::fail<shape_error>("interpolate: x must have rank >= 3 (..., H, W), got ", x.shape());
  if (out_h < 1 || out_w < 1)
    ::protoseg::detail::fail<value_error>("interpolate: output size (", out_h, ", ", out_w, ") must be positive");
  if (opt.mode == backend::resize_mode::nearest && opt.align_corners)
    ::protoseg::detail::fail<value_error>("interpolate: align_corners is only valid for bilinear mode");
  const int r = x.rank();
  const std::int64_t h = x.shape()[r - 2], w = x.shape()[r - 1];
  if (h < 1 || w < 1) ::protoseg::detail::fail<shape_error>("interpolate: input ", x.shape(), " is empty");
  auto ah = backend::make_resize_axis<T>(h, out_h, opt.mode, opt.align_corners);
  auto aw = backend::make_resize_axis<T>(w, out_w, opt.mode, opt.align_corners);
  auto os = x.shape().with(r - 2, out_h).with(r - 1, out_w);
  auto y = tensor<T, P>::empty(os);
  backend::resize<P>::forward(x.value().data(), y.data(), x.shape().product(0, r - 2), ah, aw);
  return ::protoseg::detail::record(y, detail_fn::resize_fn<T, P>{x.shape(), std::move(ah), std::move(aw)}, x);
}

}  // namespace functional
}  // namespace protoseg::nn
