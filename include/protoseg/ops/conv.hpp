#pragma once
/// \file ops/conv.hpp
/// 2-d convolution (`nn::functional::conv2d`, F.conv2d) and its backward:
/// im2col + GEMM, several images per GEMM on small maps, a direct depthwise
/// path; with the option structs shared by the convolution-like ops
/// (`nn::size2`, `nn::conv2d_params`) and `linear` (F.linear).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/ops/arithmetic.hpp"
#include "protoseg/ops/layout.hpp"
#include "protoseg/ops/reduction.hpp"
#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/ops/matmul.hpp"

namespace protoseg::nn {

/// A pair of sizes (height, width); one number means both, as PyTorch's
/// `_pair`: `.stride = 2` or `.stride = {2, 1}`.
struct size2 {
  std::int64_t h = 1, w = 1;
  constexpr size2() = default;
  constexpr size2(std::int64_t both) : h(both), w(both) {}
  constexpr size2(std::int64_t hh, std::int64_t ww) : h(hh), w(ww) {}
  friend constexpr bool operator==(const size2&, const size2&) = default;
};

/// Stride, padding, dilation and groups of a 2-d convolution (PyTorch's
/// F.conv2d arguments; padding is zeros).
struct conv2d_params {
  size2 stride{1};
  size2 padding{0};
  size2 dilation{1};
  std::int64_t groups = 1;
};

namespace functional {

/// conv2d unfolds several images into one GEMM until the product has at
/// least this many columns (output pixels); maps this large run one image
/// per GEMM. A tuning knob, read on every call; results do not depend on it
/// beyond rounding.
inline std::int64_t conv_gemm_columns = 1024;

namespace detail_fn {

template <class T, class P>
void require_rank(const variable<T, P>& x, int rank, const char* what, const char* arg) {
  if (!x.defined()) ::protoseg::detail::fail<value_error>(what, ": ", arg, " is undefined");
  if (x.rank() != rank)
    ::protoseg::detail::fail<shape_error>(what, ": ", arg, " must have rank ", rank, ", got shape ", x.shape());
}

// ---- conv2d ---------------------------------------------------------------------

/// A 1x1, stride-1, unpadded convolution reads x as its own column matrix.
inline bool conv_is_direct(const backend::conv_geometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}

/// Images whose columns go into one GEMM: enough that the product has at
/// least conv_gemm_columns columns (small feature maps, such as a ResNet's
/// last stages, would otherwise multiply a large weight by a few columns per
/// image, bound by reading the weight), one image where a map is that large.
inline std::int64_t conv_chunk_images(std::int64_t n, std::int64_t L) {
  const std::int64_t want = (conv_gemm_columns + L - 1) / std::max<std::int64_t>(L, 1);
  return std::clamp<std::int64_t>(want, 1, std::max<std::int64_t>(n, 1));
}

/// out (b, a, L) = in (a, b, L): swaps the two leading axes.
template <class T, class P>
void conv_swap_leading(const T* in, T* out, std::int64_t a, std::int64_t b, std::int64_t L) {
  const std::int64_t in_shape[3] = {a, b, L};
  const int perm[3] = {1, 0, 2};
  backend::copy<P>::permute(in, out, 3, in_shape, perm);
}

/// The columns of nb images side by side: col_t (C*kh*kw, nb * L), unfolded
/// straight into that layout; a direct (1x1) convolution's x (nb, C, L) is
/// transposed to (C, nb * L).
template <class T, class P>
void conv_columns(const T* x, T* col_t, std::int64_t nb, bool direct, const backend::conv_geometry& g) {
  if (direct) conv_swap_leading<T, P>(x, col_t, nb, g.channels, g.out_h * g.out_w);
  else backend::conv<P>::im2col_batch(x, col_t, nb, g);
}

template <class T, class P>
struct conv2d_fn {
  static constexpr const char* name = "conv2d";
  tensor<T, P> x, w;
  backend::conv_geometry g;
  std::int64_t groups;
  bool has_bias, need_x, need_w, need_b, depthwise;

  std::vector<tensor<T, P>> backward(const tensor<T, P>& gy) {
    const std::int64_t n = x.shape()[0], out_c = w.shape()[0];
    const std::int64_t L = g.out_h * g.out_w, kk = g.kernel_h * g.kernel_w;
    tensor<T, P> gx, gw, gb;
    if (need_b) gb = sum(sum(gy.reshape({n, out_c, L}), 2), 0);
    if (depthwise) {
      if (need_x) {
        gx = tensor<T, P>::empty(x.shape());
        backend::conv<P>::depthwise_backward_input(gy.data(), w.data(), gx.data(), n, g);
      }
      if (need_w) {
        gw = tensor<T, P>::empty(w.shape());
        backend::conv<P>::depthwise_backward_weight(gy.data(), x.data(), gw.data(), n, g);
      }
      return {gx, gw, gb};
    }
    const std::int64_t cg = g.channels / groups, og = out_c / groups;
    const std::int64_t img = g.channels * g.height * g.width, rows = g.channels * kk;
    const bool direct = conv_is_direct(g);
    const std::int64_t chunk = conv_chunk_images(n, L);
    if (need_w) gw = zeros<T, P>(w.shape());
    if (need_x) gx = tensor<T, P>::empty(x.shape());
    tensor<T, P> col, col_t, gy_t;
    if (chunk == 1) {
      if (!direct) col = tensor<T, P>::empty({rows, L});
    } else {
      col_t = tensor<T, P>::empty({rows, chunk * L});
      gy_t = tensor<T, P>::empty({out_c, chunk * L});
    }
    for (std::int64_t b0 = 0; b0 < n; b0 += chunk) {
      const std::int64_t nb = std::min(chunk, n - b0), cols = nb * L;
      const T* gyb = gy.data() + b0 * out_c * L;
      if (chunk == 1) {
        if (need_w) {
          const T* cb = x.data() + b0 * img;
          if (!direct) {
            backend::conv<P>::im2col(cb, col.data(), g);
            cb = col.data();
          }
          // gw_group += gy_group (og x L) * col_group^T (L x cg*kk)
          backend::gemm<P>::run(groups, false, true, og, cg * kk, L, T(1), gyb, og * L, cb, cg * kk * L, T(1),
                                gw.data(), og * cg * kk);
        }
        if (need_x) {
          T* target = direct ? gx.data() + b0 * img : col.data();
          // col_group = w_group^T (cg*kk x og) * gy_group (og x L)
          backend::gemm<P>::run(groups, true, false, cg * kk, L, og, T(1), w.data(), og * cg * kk, gyb, og * L, T(0),
                                target, cg * kk * L);
          if (!direct) backend::conv<P>::col2im(col.data(), gx.data() + b0 * img, g);
        }
        continue;
      }
      // Several images per GEMM: gy (nb, O, L) -> (O, nb * L).
      conv_swap_leading<T, P>(gyb, gy_t.data(), nb, out_c, L);
      if (need_w) {
        conv_columns<T, P>(x.data() + b0 * img, col_t.data(), nb, direct, g);
        backend::gemm<P>::run(groups, false, true, og, cg * kk, cols, T(1), gy_t.data(), og * cols, col_t.data(),
                              cg * kk * cols, T(1), gw.data(), og * cg * kk);
      }
      if (need_x) {
        backend::gemm<P>::run(groups, true, false, cg * kk, cols, og, T(1), w.data(), og * cg * kk, gy_t.data(),
                              og * cols, T(0), col_t.data(), cg * kk * cols);
        if (direct) conv_swap_leading<T, P>(col_t.data(), gx.data() + b0 * img, rows, nb, L);
        else backend::conv<P>::col2im_batch(col_t.data(), gx.data() + b0 * img, nb, g);
      }
    }
    return {gx, gw, gb};
  }
};

}  // namespace detail_fn

/// y = x W^T + b over the last dimension of x (F.linear). x (..., in),
/// weight (out, in), bias (out) or undefined.
template <class T, class P>
variable<T, P> linear(const variable<T, P>& x, const variable<T, P>& weight, const variable<T, P>& bias = {}) {
  if (!x.defined() || !weight.defined()) ::protoseg::detail::fail<value_error>("linear: x or weight is undefined");
  if (weight.rank() != 2)
    ::protoseg::detail::fail<shape_error>("linear: weight must have rank 2 (out, in), got shape ", weight.shape());
  if (x.rank() < 1 || x.shape()[x.rank() - 1] != weight.shape()[1])
    ::protoseg::detail::fail<shape_error>("linear: x has shape ", x.shape(), ", expected last dimension ",
                                          weight.shape()[1], " (weight ", weight.shape(), ")");
  if (bias.defined() && !(bias.shape() == shape{weight.shape()[0]}))
    ::protoseg::detail::fail<shape_error>("linear: bias has shape ", bias.shape(), ", expected (",
                                          weight.shape()[0], ",)");
  const std::int64_t in = weight.shape()[1], out = weight.shape()[0];
  auto out_dims = x.shape().to_vector();
  out_dims.back() = out;
  auto x2 = x.rank() == 2 ? x : reshape(x, {x.numel() / std::max<std::int64_t>(in, 1), in});
  auto y = matmul(x2, weight, false, true);
  if (bias.defined()) y = y + bias;
  return x.rank() == 2 ? y : reshape(y, out_dims);
}

/// Output size of a convolution / pooling along one axis (PyTorch's formula).
inline std::int64_t conv_out_size(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t p, std::int64_t d) {
  const std::int64_t span = in + 2 * p - d * (k - 1) - 1;
  return span < 0 ? 0 : span / s + 1;  // floor division, as PyTorch
}

/// 2-d convolution of x (N, C, H, W) with weight (O, C / groups, kh, kw) and
/// bias (O) or undefined, as F.conv2d with zero padding. Grouped and plain
/// convolutions run as im2col + GEMM, several images per GEMM on small maps
/// (see conv_gemm_columns; 1x1 stride-1 convolutions skip im2col);
/// depthwise ones (groups = C = O) run a direct kernel.
template <class T, class P>
variable<T, P> conv2d(const variable<T, P>& x, const variable<T, P>& weight, const variable<T, P>& bias = {},
                      const conv2d_params& prm = {}) {
  detail_fn::require_rank(x, 4, "conv2d", "x");
  detail_fn::require_rank(weight, 4, "conv2d", "weight");
  const auto& xs = x.shape();
  const auto& ws = weight.shape();
  if (prm.groups < 1) ::protoseg::detail::fail<value_error>("conv2d: groups is ", prm.groups, ", expected >= 1");
  if (prm.stride.h < 1 || prm.stride.w < 1 || prm.dilation.h < 1 || prm.dilation.w < 1 || prm.padding.h < 0 ||
      prm.padding.w < 0)
    ::protoseg::detail::fail<value_error>("conv2d: stride (", prm.stride.h, ", ", prm.stride.w, ") and dilation (",
                                          prm.dilation.h, ", ", prm.dilation.w, ") must be >= 1 and padding (",
                                          prm.padding.h, ", ", prm.padding.w, ") >= 0");
  if (xs[1] % prm.groups != 0 || ws[0] % prm.groups != 0)
    ::protoseg::detail::fail<value_error>("conv2d: groups ", prm.groups, " must divide the input channels ", xs[1],
                                          " and the output channels ", ws[0]);
  if (ws[1] * prm.groups != xs[1])
    ::protoseg::detail::fail<shape_error>("conv2d: weight ", ws, " expects ", ws[1] * prm.groups,
                                          " input channels (groups ", prm.groups, "), x ", xs, " has ", xs[1]);
  if (bias.defined() && !(bias.shape() == shape{ws[0]}))
    ::protoseg::detail::fail<shape_error>("conv2d: bias has shape ", bias.shape(), ", expected (", ws[0], ",)");
  backend::conv_geometry g;
  g.channels = xs[1];
  g.height = xs[2];
  g.width = xs[3];
  g.kernel_h = ws[2];
  g.kernel_w = ws[3];
  g.stride_h = prm.stride.h;
  g.stride_w = prm.stride.w;
  g.pad_h = prm.padding.h;
  g.pad_w = prm.padding.w;
  g.dilation_h = prm.dilation.h;
  g.dilation_w = prm.dilation.w;
  g.out_h = conv_out_size(g.height, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
  g.out_w = conv_out_size(g.width, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
  if (g.out_h < 1 || g.out_w < 1)
    ::protoseg::detail::fail<shape_error>("conv2d: input ", xs, " is smaller than the dilated kernel ", ws,
                                          " (output would be ", g.out_h, " x ", g.out_w, ")");
  const std::int64_t n = xs[0], out_c = ws[0], L = g.out_h * g.out_w, kk = g.kernel_h * g.kernel_w;
  const bool depthwise = prm.groups == xs[1] && out_c == xs[1] && ws[1] == 1;
  auto y = tensor<T, P>::empty({n, out_c, g.out_h, g.out_w});
  const T* bptr = bias.defined() ? bias.value().data() : nullptr;
  if (depthwise) {
    backend::conv<P>::depthwise_forward(x.value().data(), weight.value().data(), bptr, y.data(), n, g);
  } else {
    const std::int64_t cg = g.channels / prm.groups, og = out_c / prm.groups;
    const std::int64_t img = g.channels * g.height * g.width, rows = g.channels * kk;
    const bool direct = detail_fn::conv_is_direct(g);
    const std::int64_t chunk = detail_fn::conv_chunk_images(n, L);
    const T* xd = x.value().data();
    const T* wd = weight.value().data();
    tensor<T, P> col, col_t, y_t;
    if (chunk == 1) {
      if (!direct) col = tensor<T, P>::empty({rows, L});
    } else {
      col_t = tensor<T, P>::empty({rows, chunk * L});
      y_t = tensor<T, P>::empty({out_c, chunk * L});
    }
    for (std::int64_t b0 = 0; b0 < n; b0 += chunk) {
      const std::int64_t nb = std::min(chunk, n - b0), cols = nb * L;
      if (chunk == 1) {
        const T* cb = xd + b0 * img;
        if (!direct) {
          backend::conv<P>::im2col(cb, col.data(), g);
          cb = col.data();
        }
        backend::gemm<P>::run(prm.groups, false, false, og, L, cg * kk, T(1), wd, og * cg * kk, cb, cg * kk * L,
                              T(0), y.data() + b0 * out_c * L, og * L);
        continue;
      }
      detail_fn::conv_columns<T, P>(xd + b0 * img, col_t.data(), nb, direct, g);
      backend::gemm<P>::run(prm.groups, false, false, og, cols, cg * kk, T(1), wd, og * cg * kk, col_t.data(),
                            cg * kk * cols, T(0), y_t.data(), og * cols);
      detail_fn::conv_swap_leading<T, P>(y_t.data(), y.data() + b0 * out_c * L, out_c, nb, L);
    }
    if (bptr) y = y + bias.value().reshape({1, out_c, 1, 1});
  }
  detail_fn::conv2d_fn<T, P> op{x.value(),        weight.value(),         g,
                                prm.groups,       bias.defined(),         x.requires_grad(),
                                weight.requires_grad(), bias.defined() && bias.requires_grad(), depthwise};
  if (bias.defined()) return ::protoseg::detail::record(y, std::move(op), x, weight, bias);
  return ::protoseg::detail::record(y, std::move(op), x, weight);
}

}  // namespace functional
}  // namespace protoseg::nn
