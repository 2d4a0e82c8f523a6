#pragma once
/// \file cross_entropy.hpp
/// Cross-entropy over the class axis with an ignore index and optional class
/// weights, reduced as torch.nn.functional.cross_entropy(reduction='mean').

#include <cstdint>
#include <optional>

#include "protoseg/autograd/variable.hpp"

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
template <class T, class P>
struct cross_entropy_fn {
  static constexpr const char* name = "cross_entropy";
  tensor<T, P> logp;
  tensor<std::int64_t, P> labels;
  tensor<T, P> weights;
  std::int64_t ignore_index;
  T weight_sum;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto gx = tensor<T, P>::empty(logp.shape());
    const std::int64_t outer = logp.shape()[0], n = logp.shape()[1];
    const std::int64_t inner = logp.shape().product(2, logp.rank());
    const T scale = weight_sum > T(0) ? g.item() / weight_sum : T(0);
    backend::softmax<P>::nll_logits_backward(logp.data(), labels.data(), weights.defined() ? weights.data() : nullptr,
                                             outer, n, inner, ignore_index, scale, gx.data());
    return {gx};
  }
};
}  // namespace loss_detail

/// Mean cross-entropy of `logits` (N, C) or (N, C, d1, ..., dk) against int64
/// `labels` (N) or (N, d1, ..., dk): sum_j w[y_j] * -log softmax(x_j)[y_j]
/// divided by sum_j w[y_j], over positions whose label is not ignored.
/// Every label must be in [0, C) or equal the ignore index. When every
/// label is ignored the loss is 0 with zero gradient (PyTorch gives NaN).
template <class T, class P>
variable<T, P> cross_entropy(const variable<T, P>& logits, const tensor<std::int64_t, P>& labels,
                             const cross_entropy_options<T, P>& opt = {}) {
  const auto& x = logits.value();
  labels.require_defined("cross_entropy");
  if (x.rank() < 2)
    detail::fail<shape_error>("cross_entropy: logits need shape (N, C, ...), got ", x.shape());
  const std::int64_t C = x.shape()[1];
  if (C == 0) detail::fail<shape_error>("cross_entropy: logits ", x.shape(), " have no classes (C = 0)");
  const shape expect = x.shape().removed(1);
  if (labels.shape() != expect)
    detail::fail<shape_error>("cross_entropy: labels have shape ", labels.shape(), ", expected ", expect,
                              " for logits of shape ", x.shape());
  if (opt.class_weights.defined()) {
    if (opt.class_weights.shape() != shape{C})
      detail::fail<shape_error>("cross_entropy: class_weights have shape ", opt.class_weights.shape(),
                                ", expected (", C, ",)");
    if (!all_finite(opt.class_weights) || min(opt.class_weights, 0).item() < T(0))
      detail::fail<value_error>("cross_entropy: class_weights must be finite and >= 0");
  }
  const std::int64_t outer = x.shape()[0], inner = x.shape().product(2, x.rank());
  if (x.numel() == 0) detail::fail<shape_error>("cross_entropy: logits of shape ", x.shape(), " are empty");
  const std::int64_t bad = backend::softmax<P>::find_bad_label(labels.data(), labels.numel(), C, opt.ignore_index);
  if (bad >= 0) {
    const std::int64_t value = labels.flatten().narrow0(bad, bad + 1).item();
    detail::fail<value_error>("cross_entropy: label ", value, " at flat position ", bad, " is out of range: expected a class id in [0, ",
                              C, ") or the ignore index ", opt.ignore_index);
  }
  auto logp = log_softmax(x, 1);
  T wsum{};
  const T total = backend::softmax<P>::nll_forward(logp.data(), labels.data(),
                                                   opt.class_weights.defined() ? opt.class_weights.data() : nullptr,
                                                   outer, C, inner, opt.ignore_index, &wsum);
  const T loss = wsum > T(0) ? total / wsum : T(0);
  return detail::record(full<T, P>(shape{}, loss),
                        loss_detail::cross_entropy_fn<T, P>{logp, labels, opt.class_weights, opt.ignore_index, wsum},
                        logits);
}

}  // namespace protoseg
