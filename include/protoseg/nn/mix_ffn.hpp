#pragma once
/// \file mix_ffn.hpp
/// `nn::mix_ffn`: SegFormer's Mix-FFN (Xie et al. 2021, Eq. 3; NVlabs
/// mix_transformer.py `Mlp`): fc1, a depthwise 3x3 conv on the token grid
/// (`dwconv.dwconv`, as `DWConv`), GELU (erf form), dropout, fc2, dropout.

#include <cstdint>
#include <memory>
#include <string>

#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/dropout.hpp"
#include "protoseg/nn/linear.hpp"
#include "protoseg/nn/module.hpp"
#include "protoseg/ops/unary.hpp"

namespace protoseg::nn {

/// SegFormer's `DWConv`: a depthwise 3x3 conv (stride 1, padding 1, bias) of
/// a token sequence (B, H * W, C) seen as an image; its conv is `dwconv`.
template <class T, class P = cpu>
class dw_conv : public module<T, P> {
 public:
  using variable_type = variable<T, P>;
  dw_conv(std::int64_t dim, generator& gen) {
    detail_init::require_positive(dim, "dw_conv", "dim");
    dwconv = this->register_module(
        "dwconv", std::make_shared<conv2d<T, P>>(conv2d_options{.in_channels = dim, .out_channels = dim,
                                                                .kernel_size = 3, .stride = 1, .padding = 1,
                                                                .groups = dim},
                                                 gen));
  }
  std::string type_name() const override { return "DWConv"; }
  /// x (B, H * W, C) -> (B, H * W, C).
  variable_type forward(const variable_type& x, std::int64_t h, std::int64_t w) const {
    if (!x.defined() || x.rank() != 3 || x.shape()[1] != h * w)
      ::protoseg::detail::fail<shape_error>("dw_conv: x must be (B, H * W = ", h * w, ", C), got ",
                                            x.defined() ? x.shape().str() : std::string("undefined"));
    const std::int64_t b = x.shape()[0], c = x.shape()[2];
    auto y = dwconv->forward(reshape(transpose(x, 1, 2), {b, c, h, w}));
    return transpose(reshape(y, {b, c, h * w}), 1, 2);
  }
  std::shared_ptr<conv2d<T, P>> dwconv;
};

/// Options of `mix_ffn` (the `Mlp` arguments; 0 features mean in_features).
struct mix_ffn_options {
  std::int64_t in_features = 0;
  std::int64_t hidden_features = 0;
  std::int64_t out_features = 0;
  double drop = 0;
  std::uint64_t seed = 0;  ///< seed of the dropout generator
};

template <class T, class P = cpu>
class mix_ffn : public module<T, P> {
 public:
  using variable_type = variable<T, P>;
  mix_ffn(const mix_ffn_options& opt, generator& gen) : opt_(opt) {
    detail_init::require_positive(opt.in_features, "mix_ffn", "in_features");
    const std::int64_t hidden = opt.hidden_features > 0 ? opt.hidden_features : opt.in_features;
    const std::int64_t out = opt.out_features > 0 ? opt.out_features : opt.in_features;
    fc1 = this->register_module("fc1", std::make_shared<linear<T, P>>(linear_options{opt.in_features, hidden}, gen));
    dwconv = this->register_module("dwconv", std::make_shared<dw_conv<T, P>>(hidden, gen));
    fc2 = this->register_module("fc2", std::make_shared<linear<T, P>>(linear_options{hidden, out}, gen));
    drop = this->register_module("drop", std::make_shared<dropout<T, P>>(dropout_options{opt.drop, opt.seed}));
  }
  std::string type_name() const override { return "Mlp"; }
  const mix_ffn_options& options() const noexcept { return opt_; }

  /// x (B, H * W, in) -> (B, H * W, out).
  variable_type forward(const variable_type& x, std::int64_t h, std::int64_t w) {
    auto y = drop->forward(gelu(dwconv->forward(fc1->forward(x), h, w)));
    return drop->forward(fc2->forward(y));
  }
  variable_type operator()(const variable_type& x, std::int64_t h, std::int64_t w) { return forward(x, h, w); }

  std::shared_ptr<linear<T, P>> fc1, fc2;
  std::shared_ptr<dw_conv<T, P>> dwconv;
  std::shared_ptr<dropout<T, P>> drop;

 private:
  mix_ffn_options opt_;
};

}  // namespace protoseg::nn
