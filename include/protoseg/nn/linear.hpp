#pragma once
/// \file linear.hpp
/// `nn::linear`: y = x W^T + b (torch.nn.Linear), parameters `weight`
/// (out, in) and `bias` (out).

#include <cmath>
#include <cstdint>
#include <string>

#include "protoseg/nn/functional.hpp"
#include "protoseg/nn/module.hpp"

namespace protoseg::nn {

/// Options of `linear` (torch.nn.Linear's arguments).
struct linear_options {
  std::int64_t in_features = 0;
  std::int64_t out_features = 0;
  bool bias = true;
};

namespace detail_init {
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear and Conv
/// weights (kaiming_uniform with a = sqrt(5)) and biases.
template <class T, class P>
tensor<T, P> fan_in_uniform(const shape& s, std::int64_t fan_in, generator& gen) {
  const T bound = fan_in > 0 ? static_cast<T>(1.0 / std::sqrt(static_cast<double>(fan_in))) : T(0);
  return rand<T, P>(s, gen, -bound, bound);
}
inline void require_positive(std::int64_t v, const char* layer, const char* field) {
  if (v < 1) ::protoseg::detail::fail<value_error>(layer, ": ", field, " is ", v, ", expected >= 1");
}
}  // namespace detail_init

template <class T, class P = cpu>
class linear : public module<T, P> {
 public:
  using variable_type = variable<T, P>;

  /// Weight and bias drawn from `gen` as PyTorch initialises them.
  linear(const linear_options& opt, generator& gen) : opt_(opt) {
    detail_init::require_positive(opt.in_features, "linear", "in_features");
    detail_init::require_positive(opt.out_features, "linear", "out_features");
    weight = this->register_parameter(
        "weight", detail_init::fan_in_uniform<T, P>({opt.out_features, opt.in_features}, opt.in_features, gen));
    if (opt.bias)
      bias = this->register_parameter("bias", detail_init::fan_in_uniform<T, P>({opt.out_features}, opt.in_features, gen));
  }
  std::string type_name() const override { return "Linear"; }
  const linear_options& options() const noexcept { return opt_; }

  /// x (..., in_features) -> (..., out_features).
  variable_type forward(const variable_type& x) const { return functional::linear(x, weight, bias); }
  variable_type operator()(const variable_type& x) const { return forward(x); }

  variable_type weight, bias;  ///< bias is undefined when options.bias is false

 private:
  linear_options opt_;
};

}  // namespace protoseg::nn
