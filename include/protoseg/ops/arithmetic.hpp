#pragma once
/// \file arithmetic.hpp
/// Differentiable add, sub, mul, div with numpy broadcasting, negation and
/// scalar forms. Gradients of broadcast operands are summed back to their shape.

#include "protoseg/autograd/variable.hpp"

namespace protoseg {

namespace ops_detail {

template <class T, class P>
struct add_fn {
  static constexpr const char* name = "add";
  shape sa, sb;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {sum_to(g, sa), sum_to(g, sb)}; }
};
template <class T, class P>
struct sub_fn {
  static constexpr const char* name = "sub";
  shape sa, sb;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {sum_to(g, sa), sum_to(-g, sb)}; }
};
template <class T, class P>
struct mul_fn {
  static constexpr const char* name = "mul";
  tensor<T, P> a, b;
  bool need_a, need_b;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    return {need_a ? sum_to(g * b, a.shape()) : tensor<T, P>(), need_b ? sum_to(g * a, b.shape()) : tensor<T, P>()};
  }
};
template <class T, class P>
struct div_fn {
  static constexpr const char* name = "div";
  tensor<T, P> a, b;
  bool need_a, need_b;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    tensor<T, P> ga, gb;
    if (need_a) ga = sum_to(g / b, a.shape());
    if (need_b) gb = sum_to(-(g * a) / (b * b), b.shape());
    return {ga, gb};
  }
};
template <class T, class P>
struct scale_fn {
  static constexpr const char* name = "mul_scalar";
  T s;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * s}; }
};
template <class T, class P>
struct shift_fn {
  static constexpr const char* name = "add_scalar";
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g}; }
};
template <class T, class P>
struct rdiv_fn {  // s / x
  static constexpr const char* name = "rdiv_scalar";
  tensor<T, P> x;
  T s;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {-(g * s) / (x * x)}; }
};

}  // namespace ops_detail

template <class T, class P>
variable<T, P> operator+(const variable<T, P>& a, const variable<T, P>& b) {
  return detail::record(a.value() + b.value(), ops_detail::add_fn<T, P>{a.shape(), b.shape()}, a, b);
}
template <class T, class P>
variable<T, P> operator-(const variable<T, P>& a, const variable<T, P>& b) {
  return detail::record(a.value() - b.value(), ops_detail::sub_fn<T, P>{a.shape(), b.shape()}, a, b);
}
template <class T, class P>
variable<T, P> operator*(const variable<T, P>& a, const variable<T, P>& b) {
  return detail::record(a.value() * b.value(),
                        ops_detail::mul_fn<T, P>{a.value(), b.value(), a.requires_grad(), b.requires_grad()}, a, b);
}
template <class T, class P>
variable<T, P> operator/(const variable<T, P>& a, const variable<T, P>& b) {
  return detail::record(a.value() / b.value(),
                        ops_detail::div_fn<T, P>{a.value(), b.value(), a.requires_grad(), b.requires_grad()}, a, b);
}
template <class T, class P>
variable<T, P> operator-(const variable<T, P>& a) {
  return detail::record(-a.value(), ops_detail::scale_fn<T, P>{T(-1)}, a);
}
template <class T, class P>
variable<T, P> operator*(const variable<T, P>& a, T s) {
  return detail::record(a.value() * s, ops_detail::scale_fn<T, P>{s}, a);
}
template <class T, class P>
variable<T, P> operator*(T s, const variable<T, P>& a) { return a * s; }
template <class T, class P>
variable<T, P> operator/(const variable<T, P>& a, T s) {
  return detail::record(a.value() / s, ops_detail::scale_fn<T, P>{T(1) / s}, a);
}
template <class T, class P>
variable<T, P> operator+(const variable<T, P>& a, T s) {
  return detail::record(a.value() + s, ops_detail::shift_fn<T, P>{}, a);
}
template <class T, class P>
variable<T, P> operator+(T s, const variable<T, P>& a) { return a + s; }
template <class T, class P>
variable<T, P> operator-(const variable<T, P>& a, T s) { return a + (-s); }
template <class T, class P>
variable<T, P> operator-(T s, const variable<T, P>& a) { return (-a) + s; }
template <class T, class P>
variable<T, P> operator/(T s, const variable<T, P>& a) {
  return detail::record(s / a.value(), ops_detail::rdiv_fn<T, P>{a.value(), s}, a);
}

}  // namespace protoseg
