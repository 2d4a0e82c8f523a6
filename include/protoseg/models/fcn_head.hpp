#pragma once
/// \file fcn_head.hpp
/// The FCN decode head of mmsegmentation (`FCNHead`, after Long et al.,
/// CVPR 2015): `num_convs` 3x3 ConvModules (conv + BN + ReLU, `convs.i.conv`
/// / `convs.i.bn`) on the last backbone feature, optionally concatenated
/// with the input and fused by one more (`conv_cat`); with classes,
/// Dropout2d and a 1x1 classifier (`conv_seg`) follow, without, the
/// features are returned (for the ProtoSeg head).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protoseg/tensor/creation.hpp"
#include "protoseg/nn/module_list.hpp"
#include "protoseg/models/segformer_head.hpp"
#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/dropout.hpp"
#include "protoseg/ops/layout.hpp"

namespace protoseg::models {

/// Options of `fcn_head` (mmsegmentation's defaults).
struct fcn_head_options {
  std::int64_t in_channels = 2048;
  std::int64_t channels = 512;
  std::int64_t num_convs = 2;
  std::int64_t kernel_size = 3;
  std::int64_t dilation = 1;
  bool concat_input = true;
  /// Classes of `conv_seg`; 0: no classifier, return the features.
  std::int64_t num_classes = 0;
  double dropout = 0.1;
  /// Initialise as mmsegmentation: the ConvModules as mmcv's
  /// `ConvModule.init_weights` (kaiming normal, fan_out, ReLU gain; see
  /// conv_bn_relu), `conv_seg` normal with std 0.01 and bias 0
  /// (`BaseDecodeHead.init_weights`); false: PyTorch's Conv2d defaults.
  bool mmcv_init = true;
  std::uint64_t seed = 0;
};

template <class T, class P = cpu>
class fcn_head : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  explicit fcn_head(const fcn_head_options& o) : opt_(o) {
    const char* who = "fcn_head";
    nn::detail_init::require_positive(o.in_channels, who, "in_channels");
    nn::detail_init::require_positive(o.channels, who, "channels");
    nn::detail_init::require_positive(o.num_convs, who, "num_convs");
    nn::detail_init::require_positive(o.kernel_size, who, "kernel_size");
    nn::detail_init::require_positive(o.dilation, who, "dilation");
    if (o.num_classes < 0) ::protoseg::detail::fail<value_error>(who, ": num_classes is ", o.num_classes, ", expected >= 0");
    generator gen(o.seed);
    const std::int64_t pad = (o.kernel_size / 2) * o.dilation;
    convs = this->register_module("convs", std::make_shared<nn::module_list<T, P>>());
    for (std::int64_t i = 0; i < o.num_convs; ++i)
      conv_list.push_back(convs->push_back(std::make_shared<conv_bn_relu<T, P>>(
          nn::conv2d_options{.in_channels = i == 0 ? o.in_channels : o.channels, .out_channels = o.channels,
                             .kernel_size = o.kernel_size, .padding = pad, .dilation = o.dilation},
          gen, o.mmcv_init)));
    if (o.concat_input)
      conv_cat = this->register_module(
          "conv_cat", std::make_shared<conv_bn_relu<T, P>>(
                          nn::conv2d_options{.in_channels = o.in_channels + o.channels, .out_channels = o.channels,
                                             .kernel_size = o.kernel_size, .padding = o.kernel_size / 2},
                          gen, o.mmcv_init));
    if (o.num_classes > 0) {
      dropout = this->register_module("dropout",
                                      std::make_shared<nn::dropout2d<T, P>>(nn::dropout_options{o.dropout, o.seed + 1}));
      conv_seg = this->register_module(
          "conv_seg", std::make_shared<nn::conv2d<T, P>>(
                          nn::conv2d_options{.in_channels = o.channels, .out_channels = o.num_classes}, gen));
      if (o.mmcv_init) {
        auto& w = conv_seg->weight.mutable_value();
        w.copy_(randn<T, P>(w.shape(), gen, T(0), T(0.01)));
        conv_seg->bias.mutable_value().copy_(zeros<T, P>(conv_seg->bias.shape()));
      }
    }
  }
  std::string type_name() const override { return "FCNHead"; }
  const fcn_head_options& options() const noexcept { return opt_; }
  std::int64_t out_channels() const noexcept { return opt_.num_classes > 0 ? opt_.num_classes : opt_.channels; }

  /// Backbone features; the last one (B, in_channels, H, W) is used.
  variable_type forward(const std::vector<variable_type>& feats) {
    if (feats.empty() || !feats.back().defined() || feats.back().rank() != 4 ||
        feats.back().shape()[1] != opt_.in_channels)
      ::protoseg::detail::fail<shape_error>("fcn_head: the last feature must be (B, ", opt_.in_channels, ", H, W), got ",
                                            feats.empty() || !feats.back().defined() ? std::string("none")
                                                                                     : feats.back().shape().str());
    const variable_type& x = feats.back();
    variable_type y = x;
    for (auto& c : conv_list) y = c->forward(y);
    if (conv_cat) y = conv_cat->forward(concat(std::vector<variable_type>{x, y}, 1));
    if (!conv_seg) return y;
    return conv_seg->forward(dropout->forward(y));
  }
  variable_type operator()(const std::vector<variable_type>& f) { return forward(f); }

  std::shared_ptr<nn::module_list<T, P>> convs;
  std::vector<std::shared_ptr<conv_bn_relu<T, P>>> conv_list;
  std::shared_ptr<conv_bn_relu<T, P>> conv_cat;  ///< null without concat_input
  std::shared_ptr<nn::dropout2d<T, P>> dropout;
  std::shared_ptr<nn::conv2d<T, P>> conv_seg;

 private:
  fcn_head_options opt_;
};

}  // namespace protoseg::models
