#pragma once
/// \file functional.hpp
/// Differentiable layer functions (`protoseg::nn::functional`), the
/// counterparts of torch.nn.functional: linear, conv2d (im2col + GEMM, and a
/// direct depthwise path), layer_norm, batch_norm, dropout, dropout2d,
/// drop_path, interpolate (bilinear / nearest) and max_pool2d. Modules in
/// `nn/` hold the parameters and call these.
///
/// For the cuda policy include <protoseg/backend/cuda/nn.cuh> (or
/// <protoseg/cuda.hpp>) before instantiating them.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/loss/cross_entropy.hpp"
#include "protoseg/ops/arithmetic.hpp"
#include "protoseg/ops/layout.hpp"
#include "protoseg/ops/matmul.hpp"
#include "protoseg/ops/reduction.hpp"
#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/tensor/random.hpp"

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

/// Resize of the last two dimensions, as F.interpolate(size=...) does:
/// `bilinear` (align_corners true or false) or `nearest` (legacy nearest,
/// floor(o * in / out); align_corners must be false).
struct interpolate_options {
  backend::resize_mode mode = backend::resize_mode::bilinear;
  bool align_corners = false;
};

/// Kernel, stride (0 = the kernel size) and padding (implicit -inf) of a max
/// pooling window, as F.max_pool2d with dilation 1 and ceil_mode false.
struct max_pool2d_params {
  size2 kernel_size{2};
  size2 stride{0};
  size2 padding{0};
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

// ---- layer norm -------------------------------------------------------------------

template <class T, class P>
struct layer_norm_fn {
  static constexpr const char* name = "layer_norm";
  tensor<T, P> x, gamma, mean, rstd;
  std::int64_t rows, n;
  bool need_x, need_w, need_b;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    tensor<T, P> gx, gw, gb;
    if (need_x) {
      gx = tensor<T, P>::empty(x.shape());
      backend::norm<P>::layer_norm_backward(g.data(), x.data(), gamma.defined() ? gamma.data() : nullptr, mean.data(),
                                            rstd.data(), gx.data(), rows, n);
    }
    if (need_w || need_b) {
      if (need_w) gw = tensor<T, P>::empty({n});
      if (need_b) gb = tensor<T, P>::empty({n});
      backend::norm<P>::layer_norm_param_grads(g.data(), x.data(), mean.data(), rstd.data(),
                                               need_w ? gw.data() : nullptr, need_b ? gb.data() : nullptr, rows, n);
    }
    return {gx, gw, gb};
  }
};

// ---- batch norm -------------------------------------------------------------------

template <class T, class P>
struct batch_norm_fn {
  static constexpr const char* name = "batch_norm";
  tensor<T, P> x, gamma, mean, rstd;  // mean / rstd: batch statistics (training) or running ones
  std::int64_t n, c, hw;
  bool training, need_x, need_w, need_b;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto sg = tensor<T, P>::empty({c}), sgx = tensor<T, P>::empty({c});
    backend::norm<P>::channel_grad_sums(g.data(), x.data(), mean.data(), sg.data(), sgx.data(), n, c, hw);
    tensor<T, P> gx, gw, gb;
    const shape bc{1, c, 1};
    if (need_x) {
      auto scale = gamma.defined() ? gamma * rstd : rstd;
      auto g3 = g.reshape({n, c, hw});
      if (training) {
        const T m = static_cast<T>(n * hw);
        // dx = gamma rstd (g - sum_g / m - (x - mean) rstd^2 sum_gx / m)
        auto x3 = x.reshape({n, c, hw});
        auto coef = (sgx * rstd * rstd / m).reshape(bc);
        gx = (g3 - (sg / m).reshape(bc) - (x3 - mean.reshape(bc)) * coef) * scale.reshape(bc);
      } else {
        gx = g3 * scale.reshape(bc);
      }
      gx = gx.reshape(x.shape());
    }
    if (need_w) gw = sgx * rstd;
    if (need_b) gb = sg;
    return {gx, gw, gb};
  }
};

// ---- masks (dropout family) ---------------------------------------------------------

template <class T, class P>
struct mask_fn {
  static constexpr const char* name = "dropout";
  tensor<T, P> mask;  // broadcastable to the input; already scaled by 1 / keep
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * mask}; }
};

/// Bernoulli(keep) / keep samples of shape s from gen (0 where dropped).
template <class T, class P>
tensor<T, P> keep_mask(const shape& s, double p, generator& gen) {
  const double keep = 1.0 - p;
  std::vector<T> v(static_cast<std::size_t>(s.numel()));
  for (auto& m : v) m = gen.uniform() < keep ? static_cast<T>(1.0 / keep) : T(0);
  return tensor<T, P>::from_vector(v, s);
}

template <class T, class P>
variable<T, P> apply_mask(const variable<T, P>& x, const shape& mask_shape, double p, generator& gen) {
  if (p >= 1.0) {
    auto z = zeros<T, P>(mask_shape);
    return ::protoseg::detail::record(x.value() * z, mask_fn<T, P>{z}, x);
  }
  auto m = keep_mask<T, P>(mask_shape, p, gen);
  return ::protoseg::detail::record(x.value() * m, mask_fn<T, P>{m}, x);
}

inline void check_probability(double p, const char* what) {
  if (!(p >= 0.0 && p <= 1.0))
    ::protoseg::detail::fail<value_error>(what, ": p is ", p, ", expected a probability in [0, 1]");
}

// ---- resize / pooling -----------------------------------------------------------------

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

template <class T, class P>
struct upsampled_ce_fn {
  static constexpr const char* name = "upsampled_cross_entropy";
  tensor<T, P> logits;  // (B, C, h, w), shared with the input
  tensor<T, P> lse;     // (B * H * W) log-sum-exp of the upsampled logits
  tensor<std::int64_t, P> labels;
  tensor<T, P> weights;
  std::int64_t ignore_index;
  T weight_sum;
  // Bands of output rows (the height axis): all of bands[0].out rows but
  // the last, which may be shorter.
  std::vector<backend::resize_axis<T>> bands;
  backend::resize_axis<T> aw;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    const std::int64_t B = logits.shape()[0], C = logits.shape()[1];
    const std::int64_t hw = logits.shape()[2] * logits.shape()[3], W = aw.out, rows = bands.front().out;
    const std::int64_t HW = B > 0 ? lse.numel() / B : 0;  // H * W
    auto gx = tensor<T, P>::empty(logits.shape());
    const bool several = bands.size() > 1;
    if (several) backend::elementwise<P>::fill(gx.data(), gx.numel(), T(0));
    const T scale = weight_sum > T(0) ? g.item() / weight_sum : T(0);
    // One band's upsampled logits, then their gradient.
    auto up = tensor<T, P>::empty({C, rows * W});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::size_t k = 0; k < bands.size(); ++k) {
        const std::int64_t px = b * HW + static_cast<std::int64_t>(k) * rows * W, n = bands[k].out * W;
        backend::resize<P>::forward(logits.data() + b * C * hw, up.data(), C, bands[k], aw);
        backend::softmax<P>::cross_entropy_backward(up.data(), lse.data() + px, labels.data() + px,
                                                    weights.defined() ? weights.data() : nullptr, 1, C, n,
                                                    ignore_index, scale, up.data());
        backend::resize<P>::backward(up.data(), gx.data() + b * C * hw, C, bands[k], aw, several);
      }
    return {gx};
  }
};

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

/// Layer normalisation over the last dimension (F.layer_norm with
/// normalized_shape = (x.size(-1),)): (x - mean) / sqrt(var + eps) * weight
/// + bias, biased variance. weight / bias (D) may be undefined.
template <class T, class P>
variable<T, P> layer_norm(const variable<T, P>& x, const variable<T, P>& weight = {}, const variable<T, P>& bias = {},
                          double eps = 1e-5) {
  if (!x.defined()) ::protoseg::detail::fail<value_error>("layer_norm: x is undefined");
  if (x.rank() < 1) ::protoseg::detail::fail<shape_error>("layer_norm: x must have rank >= 1, got a scalar");
  if (!(eps > 0)) ::protoseg::detail::fail<value_error>("layer_norm: eps is ", eps, ", expected > 0");
  const std::int64_t n = x.shape()[x.rank() - 1];
  if (n == 0) ::protoseg::detail::fail<shape_error>("layer_norm: the last dimension of ", x.shape(), " is empty");
  const std::int64_t rows = x.numel() / n;
  for (const auto* p : {&weight, &bias})
    if (p->defined() && !(p->shape() == shape{n}))
      ::protoseg::detail::fail<shape_error>("layer_norm: ", p == &weight ? "weight" : "bias", " has shape ",
                                            p->shape(), ", expected (", n, ",) to match x ", x.shape());
  auto y = tensor<T, P>::empty(x.shape());
  auto mean = tensor<T, P>::empty({rows}), rstd = tensor<T, P>::empty({rows});
  backend::norm<P>::layer_norm_forward(x.value().data(), weight.defined() ? weight.value().data() : nullptr,
                                       bias.defined() ? bias.value().data() : nullptr, y.data(), mean.data(),
                                       rstd.data(), rows, n, eps);
  detail_fn::layer_norm_fn<T, P> op{x.value(),
                                    weight.defined() ? weight.value() : tensor<T, P>(),
                                    mean,
                                    rstd,
                                    rows,
                                    n,
                                    x.requires_grad(),
                                    weight.defined() && weight.requires_grad(),
                                    bias.defined() && bias.requires_grad()};
  const variable<T, P> none(zeros<T, P>({n}), false);
  return ::protoseg::detail::record(y, std::move(op), x, weight.defined() ? weight : none, bias.defined() ? bias : none);
}

/// Batch normalisation over dimension 1 of x (N, C, ...), as F.batch_norm.
/// In training (or without running statistics) it normalises with the batch
/// mean and biased variance, and updates `running_mean` / `running_var` in
/// place when given: r = (1 - momentum) r + momentum s, with the unbiased
/// variance. Otherwise it uses the running statistics. weight / bias (C) may
/// be undefined.
template <class T, class P>
variable<T, P> batch_norm(const variable<T, P>& x, tensor<T, P> running_mean, tensor<T, P> running_var,
                          const variable<T, P>& weight = {}, const variable<T, P>& bias = {}, bool training = true,
                          double momentum = 0.1, double eps = 1e-5) {
  if (!x.defined()) ::protoseg::detail::fail<value_error>("batch_norm: x is undefined");
  if (x.rank() < 2) ::protoseg::detail::fail<shape_error>("batch_norm: x must have rank >= 2 (N, C, ...), got ", x.shape());
  if (!(eps > 0)) ::protoseg::detail::fail<value_error>("batch_norm: eps is ", eps, ", expected > 0");
  const std::int64_t n = x.shape()[0], c = x.shape()[1], hw = x.shape().product(2, x.rank());
  const shape cs{c};
  for (const auto* p : {&weight, &bias})
    if (p->defined() && !(p->shape() == cs))
      ::protoseg::detail::fail<shape_error>("batch_norm: ", p == &weight ? "weight" : "bias", " has shape ",
                                            p->shape(), ", expected (", c, ",)");
  for (const auto* t : {&running_mean, &running_var})
    if (t->defined() && !(t->shape() == cs))
      ::protoseg::detail::fail<shape_error>("batch_norm: ", t == &running_mean ? "running_mean" : "running_var",
                                            " has shape ", t->shape(), ", expected (", c, ",)");
  if (running_mean.defined() != running_var.defined())
    ::protoseg::detail::fail<value_error>("batch_norm: running_mean and running_var must both be given or both be undefined");
  const bool use_batch = training || !running_mean.defined();
  tensor<T, P> mean, var;
  if (use_batch) {
    if (n * hw <= 1)
      ::protoseg::detail::fail<value_error>("batch_norm: expected more than 1 value per channel when training, got input ",
                                            x.shape());
    mean = tensor<T, P>::empty(cs);
    var = tensor<T, P>::empty(cs);
    backend::norm<P>::channel_moments(x.value().data(), mean.data(), var.data(), n, c, hw);
    if (training && running_mean.defined()) {
      const T m = static_cast<T>(momentum), count = static_cast<T>(n * hw);
      running_mean.copy_(running_mean * (T(1) - m) + mean * m);
      running_var.copy_(running_var * (T(1) - m) + var * (count / (count - T(1))) * m);
    }
  } else {
    mean = running_mean.clone();
    var = running_var.clone();
  }
  auto rstd = map(var + static_cast<T>(eps), fn::bind_lhs<fn::divides, T>{{}, T(1)});
  rstd = map(rstd, fn::sqrt{});
  const shape bc{1, c, 1};
  auto x3 = x.value().reshape({n, c, hw});
  auto scale = weight.defined() ? weight.value() * rstd : rstd;
  auto shift = -mean * scale;
  if (bias.defined()) shift = shift + bias.value();
  auto y = (x3 * scale.reshape(bc) + shift.reshape(bc)).reshape(x.shape());
  detail_fn::batch_norm_fn<T, P> op{x.value(),
                                    weight.defined() ? weight.value() : tensor<T, P>(),
                                    mean,
                                    rstd,
                                    n,
                                    c,
                                    hw,
                                    use_batch,
                                    x.requires_grad(),
                                    weight.defined() && weight.requires_grad(),
                                    bias.defined() && bias.requires_grad()};
  const variable<T, P> none(zeros<T, P>(cs), false);
  return ::protoseg::detail::record(y, std::move(op), x, weight.defined() ? weight : none, bias.defined() ? bias : none);
}

/// Dropout (F.dropout): in training, zeroes each element with probability p
/// (drawn from `gen`) and scales the rest by 1 / (1 - p); identity otherwise.
template <class T, class P>
variable<T, P> dropout(const variable<T, P>& x, double p, generator& gen, bool training = true) {
  detail_fn::check_probability(p, "dropout");
  if (!training || p == 0.0) return x;
  return detail_fn::apply_mask(x, x.shape(), p, gen);
}

/// Channel dropout (F.dropout2d) of x (N, C, ...): zeroes whole channels.
template <class T, class P>
variable<T, P> dropout2d(const variable<T, P>& x, double p, generator& gen, bool training = true) {
  detail_fn::check_probability(p, "dropout2d");
  if (x.rank() < 2) ::protoseg::detail::fail<shape_error>("dropout2d: x must have rank >= 2 (N, C, ...), got ", x.shape());
  if (!training || p == 0.0) return x;
  std::vector<std::int64_t> ms(static_cast<std::size_t>(x.rank()), 1);
  ms[0] = x.shape()[0];
  ms[1] = x.shape()[1];
  return detail_fn::apply_mask(x, shape(ms), p, gen);
}

/// Drop-path / stochastic depth (timm's drop_path, scale_by_keep): zeroes
/// whole samples (dimension 0) with probability p, scales the rest by
/// 1 / (1 - p). Used on the residual branches of MiT blocks.
template <class T, class P>
variable<T, P> drop_path(const variable<T, P>& x, double p, generator& gen, bool training = true) {
  detail_fn::check_probability(p, "drop_path");
  if (x.rank() < 1) ::protoseg::detail::fail<shape_error>("drop_path: x must have a batch dimension");
  if (!training || p == 0.0) return x;
  std::vector<std::int64_t> ms(static_cast<std::size_t>(x.rank()), 1);
  ms[0] = x.shape()[0];
  return detail_fn::apply_mask(x, shape(ms), p, gen);
}

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

/// cross_entropy(interpolate(logits, H, W, bilinear), labels, opt) for
/// logits (B, C, h, w) and labels (B, H, W), without keeping the upsampled
/// logits: bands of output rows of one image are upsampled into one scratch
/// buffer of at most `scratch_bytes` (at least one row) for the forward and
/// again for the backward, whose resize adjoints add up band by band. The
/// step holds C x rows x W floats instead of B x C x H x W for the logits
/// and again for their gradient (600 MB for 150 classes, batch 2,
/// 512 x 512; 16 MB with the default scratch).
template <class T, class P>
variable<T, P> upsampled_cross_entropy(const variable<T, P>& logits, const tensor<std::int64_t, P>& labels,
                                       bool align_corners, const cross_entropy_options<T, P>& opt = {},
                                       std::int64_t scratch_bytes = std::int64_t(16) << 20) {
  if (!logits.defined()) ::protoseg::detail::fail<value_error>("upsampled_cross_entropy: logits are undefined");
  labels.require_defined("upsampled_cross_entropy");
  if (logits.rank() != 4 || labels.rank() != 3)
    ::protoseg::detail::fail<shape_error>("upsampled_cross_entropy: logits must be (B, C, h, w) and labels (B, H, W), got ",
                                          logits.shape(), " and ", labels.shape());
  const std::int64_t B = logits.shape()[0], C = logits.shape()[1], h = logits.shape()[2], w = logits.shape()[3];
  const std::int64_t H = labels.shape()[1], W = labels.shape()[2];
  ::protoseg::loss_detail::check_cross_entropy(shape{B, C, H, W}, labels, opt, "upsampled_cross_entropy");
  if (h < 1 || w < 1) ::protoseg::detail::fail<shape_error>("upsampled_cross_entropy: logits ", logits.shape(), " are empty");
  const auto ah = backend::make_resize_axis<T>(h, H, backend::resize_mode::bilinear, align_corners);
  auto aw = backend::make_resize_axis<T>(w, W, backend::resize_mode::bilinear, align_corners);
  const std::int64_t row_bytes = std::max<std::int64_t>(1, C * W * static_cast<std::int64_t>(sizeof(T)));
  const std::int64_t rows = std::clamp<std::int64_t>(scratch_bytes / row_bytes, 1, std::max<std::int64_t>(H, 1));
  std::vector<backend::resize_axis<T>> bands;  // band k: output rows [k * rows, min(H, (k + 1) * rows))
  for (std::int64_t r0 = 0; r0 < H || bands.empty(); r0 += rows)  // one empty band when H = 0
    bands.push_back(backend::resize_axis_band(ah, r0, std::min(H, r0 + rows)));
  auto lse = tensor<T, P>::empty({B * H * W});
  auto up = tensor<T, P>::empty({C, rows * W});
  const T* weight = opt.class_weights.defined() ? opt.class_weights.data() : nullptr;
  double total = 0, wsum = 0;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::size_t k = 0; k < bands.size(); ++k) {
      const std::int64_t px = b * H * W + static_cast<std::int64_t>(k) * rows * W;
      backend::resize<P>::forward(logits.value().data() + b * C * h * w, up.data(), C, bands[k], aw);
      T ws{};
      total += static_cast<double>(backend::softmax<P>::cross_entropy_forward(
          up.data(), labels.data() + px, weight, 1, C, bands[k].out * W, opt.ignore_index, lse.data() + px, &ws));
      wsum += static_cast<double>(ws);
    }
  const T loss = wsum > 0 ? static_cast<T>(total / wsum) : T(0);
  return ::protoseg::detail::record(
      full<T, P>(shape{}, loss),
      detail_fn::upsampled_ce_fn<T, P>{logits.value(), lse, labels, opt.class_weights, opt.ignore_index,
                                       static_cast<T>(wsum), std::move(bands), std::move(aw)},
      logits);
}

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
