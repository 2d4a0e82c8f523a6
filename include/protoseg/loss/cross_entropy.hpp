#pragma once
/// \file cross_entropy.hpp
/// Cross-entropy over the class axis with an ignore index and optional class
/// weights, reduced as torch.nn.functional.cross_entropy(reduction='mean'),
/// and the same loss on bilinearly upsampled logits without holding them
/// (`upsampled_cross_entropy`).

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/tensor/creation.hpp"

namespace protoseg {

/// Options of `cross_entropy`.
template <class T, class P = cpu>
struct cross_entropy_options {
  /// Labels equal to this value contribute nothing (255 in mmsegmentation's
  /// data sets; PyTorch's default is -100).
  std::int64_t ignore_index = -100;
  /// Optional per-class weights, shape (C). Undefined means all ones.
  tensor<T, P> class_weights{};
};

namespace loss_detail {
/// The mean loss from the sums of softmax<P>::cross_entropy_forward (acc:
/// loss, weight sum), on the policy's memory (one work item).
template <class T>
struct ce_mean_fn {
  const double* acc;
  T* out;
  bool bands;  // upsampled_cross_entropy: the double sums of the bands, divided in double
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t) const {
    if (bands) {
      out[0] = acc[1] > 0 ? static_cast<T>(acc[0] / acc[1]) : T(0);
      return;
    }
    const T total = static_cast<T>(acc[0]), ws = static_cast<T>(acc[1]);
    out[0] = ws > T(0) ? total / ws : T(0);
  }
};
template <class T, class P>
tensor<T, P> ce_mean(const tensor<double, P>& acc, bool bands) {
  auto loss = tensor<T, P>::empty(shape{});
  backend::executor<P>::run(1, ce_mean_fn<T>{acc.data(), loss.data(), bands});
  return loss;
}

template <class T, class P>
struct cross_entropy_fn {
  static constexpr const char* name = "cross_entropy";
  tensor<T, P> logits;  // shared with the input, not a copy
  tensor<T, P> lse;     // log-sum-exp per position: the log-softmax is never stored
  tensor<std::int64_t, P> labels;
  tensor<T, P> weights;
  std::int64_t ignore_index;
  tensor<double, P> acc;  // the forward's loss and weight sums (the scale of the gradient)
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto gx = tensor<T, P>::empty(logits.shape());
    write(g, gx, false);
    return {gx};
  }
  void add_into(const tensor<T, P>& g, tensor<T, P>& slot) { write(g, slot, true); }
  // The gradient scaled by g, written into gx (or added to it).
  void write(const tensor<T, P>& g, tensor<T, P>& gx, bool accumulate) const {
    const std::int64_t outer = logits.shape()[0], n = logits.shape()[1];
    const std::int64_t inner = logits.shape().product(2, logits.rank());
    backend::softmax<P>::cross_entropy_backward(logits.data(), lse.data(), labels.data(),
                                                weights.defined() ? weights.data() : nullptr, outer, n, inner,
                                                ignore_index, g.data(), acc.data(), gx.data(), accumulate);
  }
};

/// Checks logits (N, C, ...) against labels (N, ...) and the options; `who`
/// names the caller in the messages.
template <class T, class P>
void check_cross_entropy(const shape& xs, const tensor<std::int64_t, P>& labels,
                         const cross_entropy_options<T, P>& opt, const char* who) {
  labels.require_defined(who);
  if (xs.rank() < 2) detail::fail<shape_error>(who, ": logits need shape (N, C, ...), got ", xs);
  const std::int64_t C = xs[1];
  if (C == 0) detail::fail<shape_error>(who, ": logits ", xs, " have no classes (C = 0)");
  const shape expect = xs.removed(1);
  if (labels.shape() != expect)
    detail::fail<shape_error>(who, ": labels have shape ", labels.shape(), ", expected ", expect,
                              " for logits of shape ", xs);
  if (opt.class_weights.defined()) {
    if (opt.class_weights.shape() != shape{C})
      detail::fail<shape_error>(who, ": class_weights have shape ", opt.class_weights.shape(), ", expected (", C,
                                ",)");
    if (!all_finite(opt.class_weights) || min(opt.class_weights, 0).item() < T(0))
      detail::fail<value_error>(who, ": class_weights must be finite and >= 0");
  }
  if (xs.numel() == 0) detail::fail<shape_error>(who, ": logits of shape ", xs, " are empty");
  backend::softmax<P>::check_labels(
      labels.data(), labels.numel(), C, opt.ignore_index,
      [labels, C, who, ignore = opt.ignore_index](std::int64_t bad) {
        const std::int64_t value = labels.flatten().narrow0(bad, bad + 1).item();
        detail::fail<value_error>(who, ": label ", value, " at flat position ", bad,
                                  " is out of range: expected a class id in [0, ", C, ") or the ignore index ",
                                  ignore);
      });
}
}  // namespace loss_detail

/// Mean cross-entropy of `logits` (N, C) or (N, C, d1, ..., dk) against int64
/// `labels` (N) or (N, d1, ..., dk): sum_j w[y_j] * -log softmax(x_j)[y_j]
/// divided by sum_j w[y_j], over positions whose label is not ignored.
/// Every label must be in [0, C) or equal the ignore index. When every
/// label is ignored the loss is 0 with zero gradient (PyTorch gives NaN).
/// The log-softmax is not stored: backward recomputes it from the logits.
template <class T, class P>
variable<T, P> cross_entropy(const variable<T, P>& logits, const tensor<std::int64_t, P>& labels,
                             const cross_entropy_options<T, P>& opt = {}) {
  const auto& x = logits.value();
  loss_detail::check_cross_entropy(x.shape(), labels, opt, "cross_entropy");
  const std::int64_t C = x.shape()[1];
  const std::int64_t outer = x.shape()[0], inner = x.shape().product(2, x.rank());
  auto lse = tensor<T, P>::empty(shape{outer * inner});
  tensor<double, P> acc(shape{2});  // loss and weight sums, on the policy's memory
  backend::softmax<P>::cross_entropy_forward(x.data(), labels.data(),
                                             opt.class_weights.defined() ? opt.class_weights.data() : nullptr, outer,
                                             C, inner, opt.ignore_index, lse.data(), acc.data());
  return detail::record(loss_detail::ce_mean<T>(acc, false),
                        loss_detail::cross_entropy_fn<T, P>{x, lse, labels, opt.class_weights, opt.ignore_index, acc},
                        logits);
}

namespace loss_detail {

template <class T, class P>
struct upsampled_ce_fn {
  static constexpr const char* name = "upsampled_cross_entropy";
  tensor<T, P> logits;  // (B, C, h, w), shared with the input
  tensor<T, P> lse;     // (B * H * W) log-sum-exp of the upsampled logits
  tensor<std::int64_t, P> labels;
  tensor<T, P> weights;
  std::int64_t ignore_index;
  tensor<double, P> acc;  // the forward's loss and weight sums
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
    // One band's upsampled logits, then their gradient.
    auto up = tensor<T, P>::empty({C, rows * W});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::size_t k = 0; k < bands.size(); ++k) {
        const std::int64_t px = b * HW + static_cast<std::int64_t>(k) * rows * W, n = bands[k].out * W;
        backend::resize<P>::forward(logits.data() + b * C * hw, up.data(), C, bands[k], aw);
        backend::softmax<P>::cross_entropy_backward(up.data(), lse.data() + px, labels.data() + px,
                                                    weights.defined() ? weights.data() : nullptr, 1, C, n,
                                                    ignore_index, g.data(), acc.data(), up.data());
        backend::resize<P>::backward(up.data(), gx.data() + b * C * hw, C, bands[k], aw, several);
      }
    return {gx};
  }
};

}  // namespace loss_detail

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
  tensor<double, P> acc(shape{2});  // the bands' loss and weight sums, each rounded to T, added in double
  for (std::int64_t b = 0; b < B; ++b)
    for (std::size_t k = 0; k < bands.size(); ++k) {
      const std::int64_t px = b * H * W + static_cast<std::int64_t>(k) * rows * W;
      backend::resize<P>::forward(logits.value().data() + b * C * h * w, up.data(), C, bands[k], aw);
      backend::softmax<P>::cross_entropy_forward(up.data(), labels.data() + px, weight, 1, C, bands[k].out * W,
                                                 opt.ignore_index, lse.data() + px, acc.data());
    }
  return ::protoseg::detail::record(
      loss_detail::ce_mean<T>(acc, true),
      loss_detail::upsampled_ce_fn<T, P>{logits.value(), lse, labels, opt.class_weights, opt.ignore_index, acc,
                                       std::move(bands), std::move(aw)},
      logits);
}

}  // namespace protoseg
