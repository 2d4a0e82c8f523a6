#pragma once
/// \file functors.hpp
/// Elementwise functors shared by every backend (host and device callable).

#include <cmath>

#include "protoseg/config.hpp"

namespace protoseg::fn {

/// x rounded to T and back to double. The rounding goes through a volatile
/// T: GCC 12.2's SLP vectoriser, given two such round trips side by side
/// (`acc[0] += double(float(a)); acc[1] += double(float(b));` after a loop
/// that sums a and b), adds a and b unrounded (seen at -O2 and -O3).
template <class T>
PROTOSEG_HOST_DEVICE double rounded_to(double x) {
  volatile T r = static_cast<T>(x);
  return static_cast<double>(r);
}

struct plus {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return a + b; }
};
struct minus {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return a - b; }
};
struct multiplies {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return a * b; }
};
struct divides {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return a / b; }
};
struct maximum {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return a < b ? b : a; }
};
struct minimum {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return b < a ? b : a; }
};
/// a == b as 0 / 1 in the value type.
struct equal_to {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return a == b ? T(1) : T(0); }
};
/// pow(a, b) elementwise.
struct power {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a, T b) const { return std::pow(a, b); }
};

struct negate {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return -a; }
};
struct exp {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return std::exp(a); }
};
struct log {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return std::log(a); }
};
struct sqrt {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return std::sqrt(a); }
};
struct abs {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return a < T(0) ? -a : a; }
};
struct tanh {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return std::tanh(a); }
};
struct relu {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return a > T(0) ? a : T(0); }
};
/// 1 where a > 0 else 0 (the derivative of relu).
struct step {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return a > T(0) ? T(1) : T(0); }
};
struct sigmoid {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const {
    return a >= T(0) ? T(1) / (T(1) + std::exp(-a)) : std::exp(a) / (T(1) + std::exp(a));
  }
};
/// GELU, erf form: x * Phi(x).
struct gelu {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const {
    return T(0.5) * a * (T(1) + std::erf(a * T(0.70710678118654752440)));
  }
};
/// d gelu / dx = Phi(x) + x * phi(x).
struct gelu_grad {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const {
    const T cdf = T(0.5) * (T(1) + std::erf(a * T(0.70710678118654752440)));
    const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * a * a);
    return cdf + a * pdf;
  }
};
/// a * s + t, with s and t fixed (affine scalar map).
template <class T>
struct affine {
  T scale, shift;
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return a * scale + shift; }
};
/// pow(a, e) with a fixed exponent.
template <class T>
struct pow_scalar {
  T exponent;
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return std::pow(a, exponent); }
};
/// clamp(a, lo, hi).
template <class T>
struct clamp {
  T lo, hi;
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return a < lo ? lo : (hi < a ? hi : a); }
};
/// Converts between value types.
template <class To>
struct cast {
  template <class T>
  PROTOSEG_HOST_DEVICE To operator()(T a) const { return static_cast<To>(a); }
};
/// 1 where a is not finite, else 0.
struct not_finite {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T a) const {
    return (a - a == a - a) ? T(0) : T(1);  // NaN or inf gives NaN for a - a
  }
};

}  // namespace protoseg::fn

namespace protoseg::fn {
/// f(a, s) with a fixed right operand.
template <class F, class T>
struct bind_rhs {
  F f;
  T s;
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return f(a, s); }
};
/// f(s, a) with a fixed left operand.
template <class F, class T>
struct bind_lhs {
  F f;
  T s;
  PROTOSEG_HOST_DEVICE T operator()(T a) const { return f(s, a); }
};
/// The second operand (used to broadcast a tensor into a larger shape).
struct second {
  template <class T>
  PROTOSEG_HOST_DEVICE T operator()(T, T b) const { return b; }
};
}  // namespace protoseg::fn
