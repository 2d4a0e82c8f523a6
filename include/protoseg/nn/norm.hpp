#pragma once
/// \file norm.hpp
/// `nn::layer_norm` (torch.nn.LayerNorm over the last dimension) and
/// `nn::batch_norm2d` (torch.nn.BatchNorm2d: batch statistics and a
/// momentum update of the running ones in training, running ones in eval).

#include <cstdint>
#include <string>

#include "protoseg/nn/functional.hpp"
#include "protoseg/nn/linear.hpp"
#include "protoseg/nn/module.hpp"

namespace protoseg::nn {

/// Options of `layer_norm`. MiT blocks use eps 1e-6; PyTorch's default is 1e-5.
struct layer_norm_options {
  std::int64_t normalized_shape = 0;  ///< size of the last dimension
  double eps = 1e-5;
  bool elementwise_affine = true;
};

template <class T, class P = cpu>
class layer_norm : public module<T, P> {
 public:
  using variable_type = variable<T, P>;

  /// weight = 1, bias = 0, as PyTorch initialises them.
  explicit layer_norm(const layer_norm_options& opt) : opt_(opt) {
    detail_init::require_positive(opt.normalized_shape, "layer_norm", "normalized_shape");
    if (!(opt.eps > 0)) ::protoseg::detail::fail<value_error>("layer_norm: eps is ", opt.eps, ", expected > 0");
    if (opt.elementwise_affine) {
      weight = this->register_parameter("weight", ones<T, P>({opt.normalized_shape}));
      bias = this->register_parameter("bias", zeros<T, P>({opt.normalized_shape}));
    }
  }
  std::string type_name() const override { return "LayerNorm"; }
  const layer_norm_options& options() const noexcept { return opt_; }

  variable_type forward(const variable_type& x) const {
    if (x.defined() && x.rank() >= 1 && x.shape()[x.rank() - 1] != opt_.normalized_shape)
      ::protoseg::detail::fail<shape_error>("layer_norm: x has shape ", x.shape(), ", expected last dimension ",
                                            opt_.normalized_shape);
    return functional::layer_norm(x, weight, bias, opt_.eps);
  }
  variable_type operator()(const variable_type& x) const { return forward(x); }

  variable_type weight, bias;

 private:
  layer_norm_options opt_;
};

/// Options of `batch_norm2d` (torch.nn.BatchNorm2d's arguments).
struct batch_norm_options {
  std::int64_t num_features = 0;
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;
  bool track_running_stats = true;
};

template <class T, class P = cpu>
class batch_norm2d : public module<T, P> {
 public:
  using variable_type = variable<T, P>;
  using tensor_type = tensor<T, P>;

  /// weight = 1, bias = 0, running_mean = 0, running_var = 1,
  /// num_batches_tracked = 0 (stored as I64, as in PyTorch state dicts).
  explicit batch_norm2d(const batch_norm_options& opt) : opt_(opt) {
    detail_init::require_positive(opt.num_features, "batch_norm2d", "num_features");
    if (!(opt.eps > 0)) ::protoseg::detail::fail<value_error>("batch_norm2d: eps is ", opt.eps, ", expected > 0");
    if (!(opt.momentum >= 0 && opt.momentum <= 1))
      ::protoseg::detail::fail<value_error>("batch_norm2d: momentum is ", opt.momentum, ", expected in [0, 1]");
    const shape c{opt.num_features};
    if (opt.affine) {
      weight = this->register_parameter("weight", ones<T, P>(c));
      bias = this->register_parameter("bias", zeros<T, P>(c));
    }
    if (opt.track_running_stats) {
      running_mean = this->register_buffer("running_mean", zeros<T, P>(c));
      running_var = this->register_buffer("running_var", ones<T, P>(c));
      num_batches_tracked = this->register_buffer("num_batches_tracked", zeros<T, P>({}), io::safetensors_dtype::i64);
    }
  }
  std::string type_name() const override { return "BatchNorm2d"; }
  const batch_norm_options& options() const noexcept { return opt_; }

  /// x (N, C, H, W); in training the running statistics are updated in place.
  variable_type forward(const variable_type& x) const {
    if (!x.defined() || x.rank() != 4)
      ::protoseg::detail::fail<shape_error>("batch_norm2d: x must have rank 4 (N, C, H, W), got ",
                                            x.defined() ? x.shape().str() : std::string("undefined"));
    if (x.shape()[1] != opt_.num_features)
      ::protoseg::detail::fail<shape_error>("batch_norm2d: x has ", x.shape()[1], " channels, expected ",
                                            opt_.num_features);
    const bool training = this->is_training();
    if (training && num_batches_tracked.defined()) {
      tensor_type nb = num_batches_tracked;
      nb.copy_(num_batches_tracked + T(1));
    }
    return functional::batch_norm(x, running_mean, running_var, weight, bias, training, opt_.momentum, opt_.eps);
  }
  variable_type operator()(const variable_type& x) const { return forward(x); }

  variable_type weight, bias;
  tensor_type running_mean, running_var, num_batches_tracked;

 private:
  batch_norm_options opt_;
};

}  // namespace protoseg::nn
