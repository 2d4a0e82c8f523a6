#pragma once
/// \file unary.hpp
/// Differentiable elementwise functions: exp, log, sqrt, pow, relu, gelu
/// (erf form), sigmoid, tanh.

#include "protoseg/autograd/variable.hpp"

namespace protoseg {

namespace ops_detail {
template <class T, class P>
struct exp_fn {
  static constexpr const char* name = "exp";
  tensor<T, P> y;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * y}; }
};
template <class T, class P>
struct log_fn {
  static constexpr const char* name = "log";
  tensor<T, P> x;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g / x}; }
};
template <class T, class P>
struct sqrt_fn {
  static constexpr const char* name = "sqrt";
  tensor<T, P> y;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g / (y * T(2))}; }
};
template <class T, class P>
struct pow_fn {
  static constexpr const char* name = "pow";
  tensor<T, P> x;
  T e;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * (pow(x, e - T(1)) * e)}; }
};
template <class T, class P>
struct relu_fn {
  static constexpr const char* name = "relu";
  tensor<T, P> x;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * map(x, fn::step{})}; }
};
template <class T, class P>
struct gelu_fn {
  static constexpr const char* name = "gelu";
  tensor<T, P> x;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * map(x, fn::gelu_grad{})}; }
};
template <class T, class P>
struct sigmoid_fn {
  static constexpr const char* name = "sigmoid";
  tensor<T, P> y;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * (y * (T(1) - y))}; }
};
template <class T, class P>
struct tanh_fn {
  static constexpr const char* name = "tanh";
  tensor<T, P> y;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) { return {g * (T(1) - y * y)}; }
};
}  // namespace ops_detail

template <class T, class P>
variable<T, P> exp(const variable<T, P>& x) {
  auto y = exp(x.value());
  return detail::record(y, ops_detail::exp_fn<T, P>{y}, x);
}
/// Natural logarithm (inputs <= 0 give -inf / NaN, as in PyTorch).
template <class T, class P>
variable<T, P> log(const variable<T, P>& x) {
  return detail::record(log(x.value()), ops_detail::log_fn<T, P>{x.value()}, x);
}
template <class T, class P>
variable<T, P> sqrt(const variable<T, P>& x) {
  auto y = sqrt(x.value());
  return detail::record(y, ops_detail::sqrt_fn<T, P>{y}, x);
}
/// x to the power e (a fixed exponent).
template <class T, class P>
variable<T, P> pow(const variable<T, P>& x, T e) {
  return detail::record(pow(x.value(), e), ops_detail::pow_fn<T, P>{x.value(), e}, x);
}
template <class T, class P>
variable<T, P> relu(const variable<T, P>& x) {
  return detail::record(relu(x.value()), ops_detail::relu_fn<T, P>{x.value()}, x);
}
/// GELU, exact erf form (torch.nn.GELU(approximate='none')).
template <class T, class P>
variable<T, P> gelu(const variable<T, P>& x) {
  return detail::record(gelu(x.value()), ops_detail::gelu_fn<T, P>{x.value()}, x);
}
template <class T, class P>
variable<T, P> sigmoid(const variable<T, P>& x) {
  auto y = sigmoid(x.value());
  return detail::record(y, ops_detail::sigmoid_fn<T, P>{y}, x);
}
template <class T, class P>
variable<T, P> tanh(const variable<T, P>& x) {
  auto y = tanh(x.value());
  return detail::record(y, ops_detail::tanh_fn<T, P>{y}, x);
}

}  // namespace protoseg
