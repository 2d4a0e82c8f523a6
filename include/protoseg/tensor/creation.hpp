#pragma once
/// \file creation.hpp
/// Tensor factories: zeros, ones, full, arange, and seeded random tensors.

#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/backend/default.hpp"
#include "protoseg/tensor/random.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg {

/// A tensor of shape s filled with `value`.
template <class T, class Policy = cpu>
tensor<T, Policy> full(const shape& s, T value) {
  auto t = tensor<T, Policy>::empty(s);
  backend::elementwise<Policy>::fill(t.data(), t.numel(), value);
  return t;
}
template <class T, class Policy = cpu>
tensor<T, Policy> zeros(const shape& s) {
  return full<T, Policy>(s, T(0));
}
template <class T, class Policy = cpu>
tensor<T, Policy> ones(const shape& s) {
  return full<T, Policy>(s, T(1));
}
template <class T, class Policy>
tensor<T, Policy> zeros_like(const tensor<T, Policy>& x) {
  return full<T, Policy>(x.shape(), T(0));
}
template <class T, class Policy>
tensor<T, Policy> ones_like(const tensor<T, Policy>& x) {
  return full<T, Policy>(x.shape(), T(1));
}

/// The values start, start + step, ... below stop (above it for step < 0).
template <class T, class Policy = cpu>
tensor<T, Policy> arange(T start, T stop, T step = T(1)) {
  if (step == T(0)) detail::fail<value_error>("arange: step is 0, expected a non-zero step");
  const double span = (static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step);
  const std::int64_t n = span > 0 ? static_cast<std::int64_t>(std::ceil(span)) : 0;
  auto t = tensor<T, Policy>::empty(shape{n});
  backend::elementwise<Policy>::iota(t.data(), n, start, step);
  return t;
}

/// Normal samples with the given mean and standard deviation, drawn from
/// `gen` in row-major order (identical on every policy).
template <class T, class Policy = cpu>
tensor<T, Policy> randn(const shape& s, generator& gen, T mean = T(0), T stddev = T(1)) {
  if (!(stddev >= T(0))) detail::fail<value_error>("randn: stddev is ", stddev, ", expected >= 0");
  std::vector<T> v(static_cast<std::size_t>(s.numel()));
  for (auto& x : v) x = static_cast<T>(mean + stddev * gen.normal());
  return tensor<T, Policy>::from_vector(v, s);
}

/// Uniform samples in [lo, hi) drawn from `gen` in row-major order.
template <class T, class Policy = cpu>
tensor<T, Policy> rand(const shape& s, generator& gen, T lo = T(0), T hi = T(1)) {
  if (!(hi >= lo)) detail::fail<value_error>("rand: hi (", hi, ") is below lo (", lo, ")");
  std::vector<T> v(static_cast<std::size_t>(s.numel()));
  for (auto& x : v) x = static_cast<T>(lo + (hi - lo) * gen.uniform());
  return tensor<T, Policy>::from_vector(v, s);
}

/// Normal samples truncated to [lo, hi] (resampled), as nn.init.trunc_normal_.
template <class T, class Policy = cpu>
tensor<T, Policy> trunc_normal(const shape& s, generator& gen, T stddev, T lo, T hi) {
  if (!(lo < hi)) detail::fail<value_error>("trunc_normal: lo (", lo, ") must be below hi (", hi, ")");
  std::vector<T> v(static_cast<std::size_t>(s.numel()));
  for (auto& x : v) {
    double y;
    int tries = 0;
    do {
      y = stddev * gen.normal();
    } while ((y < lo || y > hi) && ++tries < 1000);
    x = static_cast<T>(y < lo ? lo : (y > hi ? hi : y));
  }
  return tensor<T, Policy>::from_vector(v, s);
}

}  // namespace protoseg
