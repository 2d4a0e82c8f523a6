#pragma once
/// \file ops/dropout.hpp
/// The dropout family (`nn::functional::dropout`, `dropout2d`, `drop_path`):
/// a mask drawn from a generator, scaled by 1 / keep, and its backward.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/ops/arithmetic.hpp"
#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/tensor/random.hpp"

namespace protoseg::nn {

namespace functional {
namespace detail_fn {

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

}  // namespace detail_fn

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

}  // namespace functional
}  // namespace protoseg::nn
