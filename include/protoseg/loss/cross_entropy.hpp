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
  tensor<T, P> logits;  // shared with the input, not a copy
  tensor<T, P> lse;     // log-sum-exp per position: the log-softmax is never stored
  tensor<std::int64_t, P> labels;
  tensor<T, P> weights;
  std::int64_t ignore_index;
  T weight_sum;
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
    const T scale = weight_sum > T(0) ? g.item() / weight_sum : T(0);
    backend::softmax<P>::cross_entropy_backward(logits.data(), lse.data(), labels.data(),
                                                weights.defined() ? weights.data() : nullptr, outer, n, inner,
                                                ignore_index, scale, gx.data(), accumulate);
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
  const std::int64_t bad = backend::softmax<P>::find_bad_label(labels.data(), labels.numel(), C, opt.ignore_index);
  if (bad >= 0) {
    const std::int64_t value = labels.flatten().narrow0(bad, bad + 1).item();
    detail::fail<value_error>(who, ": label ", value, " at flat position ", bad,
                              " is out of range: expected a class id in [0, ", C, ") or the ignore index ",
                              opt.ignore_index);
  }
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
  T wsum{};
  const T total = backend::softmax<P>::cross_entropy_forward(
      x.data(), labels.data(), opt.class_weights.defined() ? opt.class_weights.data() : nullptr, outer, C, inner,
      opt.ignore_index, lse.data(), &wsum);
  const T loss = wsum > T(0) ? total / wsum : T(0);
  return detail::record(full<T, P>(shape{}, loss),
                        loss_detail::cross_entropy_fn<T, P>{x, lse, labels, opt.class_weights, opt.ignore_index, wsum},
                        logits);
}

}  // namespace protoseg
