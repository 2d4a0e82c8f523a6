#pragma once
/// \file conv.hpp
/// `nn::conv2d` (torch.nn.Conv2d with zero padding): parameters `weight`
/// (out, in / groups, kh, kw) and `bias` (out). Depthwise convolutions
/// (groups = in = out) take a direct kernel, the others im2col + GEMM.

#include <cstdint>
#include <string>

#include "protoseg/nn/functional.hpp"
#include "protoseg/nn/linear.hpp"
#include "protoseg/nn/module.hpp"

namespace protoseg::nn {

/// Options of `conv2d` (torch.nn.Conv2d's arguments).
struct conv2d_options {
  std::int64_t in_channels = 0;
  std::int64_t out_channels = 0;
  size2 kernel_size{1};
  size2 stride{1};
  size2 padding{0};
  size2 dilation{1};
  std::int64_t groups = 1;
  bool bias = true;
};

template <class T, class P = cpu>
class conv2d : public module<T, P> {
 public:
  using variable_type = variable<T, P>;

  /// Weight and bias drawn from `gen` as PyTorch initialises them.
  conv2d(const conv2d_options& opt, generator& gen) : opt_(opt) {
    detail_init::require_positive(opt.in_channels, "conv2d", "in_channels");
    detail_init::require_positive(opt.out_channels, "conv2d", "out_channels");
    detail_init::require_positive(opt.groups, "conv2d", "groups");
    detail_init::require_positive(opt.kernel_size.h, "conv2d", "kernel_size");
    detail_init::require_positive(opt.kernel_size.w, "conv2d", "kernel_size");
    if (opt.in_channels % opt.groups || opt.out_channels % opt.groups)
      ::protoseg::detail::fail<value_error>("conv2d: groups ", opt.groups, " must divide in_channels ", opt.in_channels,
                                            " and out_channels ", opt.out_channels);
    const std::int64_t fan_in = opt.in_channels / opt.groups * opt.kernel_size.h * opt.kernel_size.w;
    weight = this->register_parameter(
        "weight", detail_init::fan_in_uniform<T, P>(
                      {opt.out_channels, opt.in_channels / opt.groups, opt.kernel_size.h, opt.kernel_size.w}, fan_in, gen));
    if (opt.bias) bias = this->register_parameter("bias", detail_init::fan_in_uniform<T, P>({opt.out_channels}, fan_in, gen));
  }
  std::string type_name() const override { return "Conv2d"; }
  const conv2d_options& options() const noexcept { return opt_; }

  /// x (N, in_channels, H, W) -> (N, out_channels, H', W').
  variable_type forward(const variable_type& x) const {
    return functional::conv2d(x, weight, bias, conv2d_params{opt_.stride, opt_.padding, opt_.dilation, opt_.groups});
  }
  variable_type operator()(const variable_type& x) const { return forward(x); }

  variable_type weight, bias;

 private:
  conv2d_options opt_;
};

}  // namespace protoseg::nn
