#pragma once
/// \file matmul.hpp
/// Differentiable (batched) matrix product with optional transposes.

#include "protoseg/autograd/variable.hpp"

namespace protoseg {

namespace ops_detail {
template <class T, class P>
struct matmul_fn {
  static constexpr const char* name = "matmul";
  tensor<T, P> a, b;
  bool ta, tb, need_a, need_b;
  // C = op(A) op(B): d op(A) = dC op(B)^T, d op(B) = op(A)^T dC.
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    tensor<T, P> ga, gb;
    if (need_a) ga = sum_to(ta ? matmul(b, g, tb, true) : matmul(g, b, false, !tb), a.shape());
    if (need_b) gb = sum_to(tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false), b.shape());
    return {ga, gb};
  }
};
}  // namespace ops_detail

/// (..., m, k) x (..., k, n) -> (..., m, n); see the tensor `matmul` for the
/// batch rules. Gradients of a plain matrix used across a batch are summed.
template <class T, class P>
variable<T, P> matmul(const variable<T, P>& a, const variable<T, P>& b, bool trans_a = false, bool trans_b = false) {
  return detail::record(matmul(a.value(), b.value(), trans_a, trans_b),
                        ops_detail::matmul_fn<T, P>{a.value(), b.value(), trans_a, trans_b, a.requires_grad(),
                                                    b.requires_grad()},
                        a, b);
}

}  // namespace protoseg
