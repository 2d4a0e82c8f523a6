#pragma once
/// \file segformer_head.hpp
/// SegFormer's all-MLP decoder (Xie et al., NeurIPS 2021, Sec. 3.2, Eq. 4;
/// NVlabs / mmsegmentation 0.x `SegFormerHead`): each stage feature goes
/// through a linear layer to a common width (`linear_c1..4.proj`), is
/// upsampled (bilinear) to the stride-4 grid, the four are concatenated
/// (c4, c3, c2, c1) and fused by a 1x1 conv + BatchNorm + ReLU
/// (`linear_fuse.conv`, `linear_fuse.bn`, mmcv ConvModule). With classes,
/// Dropout2d and a 1x1 conv classifier (`linear_pred`) follow; without, the
/// fused features are returned (for the ProtoSeg head).

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protoseg/tensor/creation.hpp"
#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/dropout.hpp"
#include "protoseg/nn/functional.hpp"
#include "protoseg/nn/linear.hpp"
#include "protoseg/nn/norm.hpp"
#include "protoseg/ops/layout.hpp"
#include "protoseg/ops/unary.hpp"

namespace protoseg::models {

/// Options of `segformer_head`.
struct segformer_head_options {
  /// Channels of the four encoder features (MiT's embed_dims).
  std::array<std::int64_t, 4> in_channels{32, 64, 160, 256};
  /// Decoder width (256 for MiT-B0/B1, 768 for B2-B5 in SegFormer).
  std::int64_t embed_dim = 256;
  /// Classes of the `linear_pred` classifier; 0: no classifier, forward
  /// returns the fused features (B, embed_dim, H / 4, W / 4).
  std::int64_t num_classes = 0;
  /// Dropout2d before the classifier (dropout_ratio 0.1).
  double dropout = 0.1;
  /// Upsampling of c2..c4 to c1's grid (mmsegmentation: false).
  bool align_corners = false;
  /// Initialise `linear_fuse` as mmcv's `ConvModule.init_weights` (conv
  /// kaiming normal, fan_out, ReLU gain; BN 1 / 0), which mmcv runs when it
  /// builds the module; false: PyTorch's Conv2d default.
  bool mmcv_init = true;
  std::uint64_t seed = 0;
};

/// NVlabs `MLP`: flatten (B, C, H, W) to tokens and apply `proj` (Linear).
template <class T, class P = cpu>
class mlp_projection : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  mlp_projection(std::int64_t in, std::int64_t out, generator& gen) {
    proj = this->register_module("proj", std::make_shared<nn::linear<T, P>>(nn::linear_options{in, out}, gen));
  }
  std::string type_name() const override { return "MLP"; }
  /// x (B, C, H, W) -> (B, out, H, W).
  variable_type forward(const variable_type& x) const {
    const std::int64_t b = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
    auto y = proj->forward(transpose(reshape(x, {b, c, h * w}), 1, 2));  // (B, HW, out)
    return reshape(transpose(y, 1, 2), {b, proj->options().out_features, h, w});
  }
  std::shared_ptr<nn::linear<T, P>> proj;
};

/// mmcv `ConvModule` with a norm: conv (no bias) -> BatchNorm -> ReLU;
/// children `conv`, `bn`. With `mmcv_init` the conv weights are drawn as
/// mmcv's `ConvModule.init_weights` (called from its constructor) draws
/// them: `kaiming_init(conv, a=0, nonlinearity='relu')`, i.e. normal with
/// std sqrt(2 / fan_out), fan_out = out_channels * kh * kw; the BN
/// starts at 1 / 0. Without it the conv keeps PyTorch's Conv2d default.
template <class T, class P = cpu>
class conv_bn_relu : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  conv_bn_relu(const nn::conv2d_options& conv_opt, generator& gen, bool mmcv_init = true) {
    auto co = conv_opt;
    co.bias = false;
    conv = this->register_module("conv", std::make_shared<nn::conv2d<T, P>>(co, gen));
    bn = this->register_module("bn", std::make_shared<nn::batch_norm2d<T, P>>(nn::batch_norm_options{co.out_channels}));
    if (mmcv_init) {
      auto& w = conv->weight.mutable_value();
      const std::int64_t fan_out = w.shape()[0] * w.shape()[2] * w.shape()[3];  // torch's fan_out: no groups
      w.copy_(randn<T, P>(w.shape(), gen, T(0), static_cast<T>(std::sqrt(2.0 / static_cast<double>(fan_out)))));
    }
  }
  std::string type_name() const override { return "ConvModule"; }
  variable_type forward(const variable_type& x) const { return relu(bn->forward(conv->forward(x))); }
  std::shared_ptr<nn::conv2d<T, P>> conv;
  std::shared_ptr<nn::batch_norm2d<T, P>> bn;
};

template <class T, class P = cpu>
class segformer_head : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  explicit segformer_head(const segformer_head_options& o) : opt_(o) {
    nn::detail_init::require_positive(o.embed_dim, "segformer_head", "embed_dim");
    for (auto c : o.in_channels) nn::detail_init::require_positive(c, "segformer_head", "in_channels");
    if (o.num_classes < 0)
      ::protoseg::detail::fail<value_error>("segformer_head: num_classes is ", o.num_classes, ", expected >= 0");
    generator gen(o.seed);
    for (int s = 0; s < 4; ++s)
      linear_c[s] = this->register_module("linear_c" + std::to_string(s + 1),
                                          std::make_shared<mlp_projection<T, P>>(o.in_channels[s], o.embed_dim, gen));
    linear_fuse = this->register_module(
        "linear_fuse", std::make_shared<conv_bn_relu<T, P>>(
                           nn::conv2d_options{.in_channels = 4 * o.embed_dim, .out_channels = o.embed_dim}, gen,
                           o.mmcv_init));
    if (o.num_classes > 0) {
      dropout = this->register_module("dropout",
                                      std::make_shared<nn::dropout2d<T, P>>(nn::dropout_options{o.dropout, o.seed + 1}));
      linear_pred = this->register_module(
          "linear_pred", std::make_shared<nn::conv2d<T, P>>(
                             nn::conv2d_options{.in_channels = o.embed_dim, .out_channels = o.num_classes}, gen));
    }
  }
  std::string type_name() const override { return "SegFormerHead"; }
  const segformer_head_options& options() const noexcept { return opt_; }
  /// Channels of the output: num_classes, or embed_dim without a classifier.
  std::int64_t out_channels() const noexcept { return opt_.num_classes > 0 ? opt_.num_classes : opt_.embed_dim; }

  /// Four features (B, in_channels[s], H_s, W_s) -> (B, out_channels, H_1, W_1).
  variable_type forward(const std::vector<variable_type>& feats) {
    if (feats.size() != 4)
      ::protoseg::detail::fail<shape_error>("segformer_head: expected 4 features, got ", feats.size());
    for (int s = 0; s < 4; ++s)
      if (!feats[s].defined() || feats[s].rank() != 4 || feats[s].shape()[1] != opt_.in_channels[s] ||
          feats[s].shape()[0] != feats[0].shape()[0])
        ::protoseg::detail::fail<shape_error>("segformer_head: feature ", s + 1, " must be (B, ", opt_.in_channels[s],
                                              ", H, W), got ",
                                              feats[s].defined() ? feats[s].shape().str() : std::string("undefined"));
    const std::int64_t h = feats[0].shape()[2], w = feats[0].shape()[3];
    std::vector<variable_type> parts;
    for (int s = 3; s >= 0; --s) {
      auto y = linear_c[s]->forward(feats[s]);
      if (s > 0)
        y = nn::functional::interpolate(y, h, w,
                                        nn::interpolate_options{backend::resize_mode::bilinear, opt_.align_corners});
      parts.push_back(y);
    }
    auto fused = linear_fuse->forward(concat(parts, 1));
    if (!linear_pred) return fused;
    return linear_pred->forward(dropout->forward(fused));
  }
  variable_type operator()(const std::vector<variable_type>& f) { return forward(f); }

  std::array<std::shared_ptr<mlp_projection<T, P>>, 4> linear_c;
  std::shared_ptr<conv_bn_relu<T, P>> linear_fuse;
  std::shared_ptr<nn::dropout2d<T, P>> dropout;    ///< null without classes
  std::shared_ptr<nn::conv2d<T, P>> linear_pred;   ///< null without classes

 private:
  segformer_head_options opt_;
};

}  // namespace protoseg::models
