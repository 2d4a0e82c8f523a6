#pragma once
/// \file pool.hpp
/// `nn::max_pool2d` (torch.nn.MaxPool2d, dilation 1, floor mode) and the
/// resize functions (re-exported from functional.hpp).

#include <string>

#include "protoseg/nn/functional.hpp"
#include "protoseg/nn/module.hpp"

namespace protoseg::nn {

template <class T, class P = cpu>
class max_pool2d : public module<T, P> {
 public:
  using variable_type = variable<T, P>;
  explicit max_pool2d(const max_pool2d_params& opt) : opt_(opt) {
    if (opt.kernel_size.h < 1 || opt.kernel_size.w < 1)
      ::protoseg::detail::fail<value_error>("max_pool2d: kernel_size (", opt.kernel_size.h, ", ", opt.kernel_size.w,
                                            ") must be >= 1");
  }
  std::string type_name() const override { return "MaxPool2d"; }
  variable_type forward(const variable_type& x) const { return functional::max_pool2d(x, opt_); }
  variable_type operator()(const variable_type& x) const { return forward(x); }

 private:
  max_pool2d_params opt_;
};

}  // namespace protoseg::nn
