#pragma once
/// \file ops/pool.hpp
/// Max pooling (`nn::functional::max_pool2d`, F.max_pool2d with dilation 1
/// and floor mode) and its backward (to each window's maximum).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/ops/conv.hpp"

namespace protoseg::nn {

/// Kernel, stride (0 = the kernel size) and padding (implicit -inf) of a max
/// pooling window, as F.max_pool2d with dilation 1 and ceil_mode false.
struct max_pool2d_params {
  size2 kernel_size{2};
  size2 stride{0};
  size2 padding{0};
};

namespace functional {
namespace detail_fn {

template <class T, class P>
struct max_pool_fn {
  static constexpr const char* name = "max_pool2d";
  shape in;
  tensor<std::int64_t, P> idx;
  backend::pool_geometry g;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& gy) {
    auto gx = tensor<T, P>::empty(in);
    backend::pool<P>::max_backward(gy.data(), idx.data(), gx.data(), g);
    return {gx};
  }
};

}  // namespace detail_fn

/// Max pooling of x (N, C, H, W) as F.max_pool2d (dilation 1, floor mode);
/// the gradient goes to the position of each window's maximum.
template <class T, class P>
variable<T, P> max_pool2d(const variable<T, P>& x, const max_pool2d_params& prm = {}) {
  detail_fn::require_rank(x, 4, "max_pool2d", "x");
  const size2 k = prm.kernel_size, s = (prm.stride.h == 0 && prm.stride.w == 0) ? prm.kernel_size : prm.stride;
  if (k.h < 1 || k.w < 1 || s.h < 1 || s.w < 1)
    ::protoseg::detail::fail<value_error>("max_pool2d: kernel (", k.h, ", ", k.w, ") and stride (", s.h, ", ", s.w,
                                          ") must be >= 1");
  if (prm.padding.h < 0 || prm.padding.w < 0 || 2 * prm.padding.h > k.h || 2 * prm.padding.w > k.w)
    ::protoseg::detail::fail<value_error>("max_pool2d: padding (", prm.padding.h, ", ", prm.padding.w,
                                          ") must be >= 0 and at most half the kernel (", k.h, ", ", k.w, ")");
  backend::pool_geometry g;
  g.planes = x.shape()[0] * x.shape()[1];
  g.height = x.shape()[2];
  g.width = x.shape()[3];
  g.kernel_h = k.h;
  g.kernel_w = k.w;
  g.stride_h = s.h;
  g.stride_w = s.w;
  g.pad_h = prm.padding.h;
  g.pad_w = prm.padding.w;
  g.out_h = conv_out_size(g.height, k.h, s.h, g.pad_h, 1);
  g.out_w = conv_out_size(g.width, k.w, s.w, g.pad_w, 1);
  if (g.out_h < 1 || g.out_w < 1)
    ::protoseg::detail::fail<shape_error>("max_pool2d: input ", x.shape(), " is smaller than the kernel (", k.h, ", ",
                                          k.w, ")");
  auto y = tensor<T, P>::empty({x.shape()[0], x.shape()[1], g.out_h, g.out_w});
  auto idx = tensor<std::int64_t, P>::empty(y.shape());
  backend::pool<P>::max_forward(x.value().data(), y.data(), idx.data(), g);
  return ::protoseg::detail::record(y, detail_fn::max_pool_fn<T, P>{x.shape(), idx, g}, x);
}

}  // namespace functional
}  // namespace protoseg::nn
