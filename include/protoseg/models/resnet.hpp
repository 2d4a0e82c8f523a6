#pragma once
/// \file resnet.hpp
/// ResNet-18/34/50/101 backbones (He et al., CVPR 2016) with torchvision /
/// mmsegmentation parameter names (`conv1.weight`, `bn1.running_mean`,
/// `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, ...), without the
/// classification layer. Options: the deep stem of ResNet-V1c
/// (mmsegmentation `ResNetV1c`: three 3x3 convs, `stem.0` / `stem.1` /
/// `stem.3` / `stem.4` / `stem.6` / `stem.7`) and dilation for an output
/// stride of 8 or 16 (mmsegmentation's strides (1, 2, 1, 1) / dilations
/// (1, 1, 2, 4), and (1, 2, 2, 1) / (1, 1, 1, 2)). As mmsegmentation's
/// `-d8` / `-d16` configs (`contract_dilation=True`, configs/_base_/models/
/// fcn_r50-d8.py), the first block of a dilated stage uses half the stage's
/// dilation (mmseg/models/utils/res_layer.py, `ResLayer`); a basic block
/// dilates only its first conv (mmseg `BasicBlock`: conv2 is a plain 3x3).
/// Bottlenecks put the stride on the 3x3 conv (style 'pytorch', ResNet v1.5).

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protoseg/models/backbone.hpp"
#include "protoseg/nn/module_list.hpp"
#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/norm.hpp"
#include "protoseg/nn/pool.hpp"
#include "protoseg/ops/arithmetic.hpp"
#include "protoseg/ops/unary.hpp"

namespace protoseg::models {

/// Configuration of a ResNet; the defaults are ResNet-50's.
struct resnet_options {
  /// Blocks per stage.
  std::array<std::int64_t, 4> depths{3, 4, 6, 3};
  /// Bottleneck blocks (expansion 4) or basic blocks (expansion 1).
  bool bottleneck = true;
  /// The ResNet-V1c deep stem (three 3x3 convs) instead of one 7x7 conv.
  bool deep_stem = false;
  /// Stride of the last feature: 32 (no dilation), 16 or 8.
  std::int64_t output_stride = 32;
  /// The first block of a dilated stage uses dilation / 2, as
  /// mmsegmentation's published -d8 / -d16 configs
  /// (`contract_dilation=True`); false: every block uses the stage's
  /// dilation (the default of mmseg's `ResNet` class itself).
  bool contract_dilation = true;
  std::int64_t in_channels = 3;
  /// Channels of the stem (64).
  std::int64_t stem_channels = 64;
  /// Planes of the first stage (64); stage s has base_width << s (times 4
  /// out of a bottleneck). Smaller values give a thinner network with the
  /// same depth and names, for small images.
  std::int64_t base_width = 64;
  std::uint64_t seed = 0;
  /// Re-initialise as torchvision (kaiming normal); false keeps the layers'
  /// PyTorch defaults (cheaper when pretrained weights are loaded next).
  bool init_weights = true;
  /// With init_weights, start the last batch norm of every residual block
  /// (bn2 of a basic block, bn3 of a bottleneck) at weight 0, so that each
  /// block begins as the identity (mmsegmentation's ResNet default;
  /// torchvision's is off).
  bool zero_init_residual = false;
};

/// The configuration of "resnet18", "resnet34", "resnet50", "resnet101"
/// (value_error for another name).
inline resnet_options resnet_config(std::string_view name) {
  resnet_options o;
  if (name == "resnet18") o.depths = {2, 2, 2, 2}, o.bottleneck = false;
  else if (name == "resnet34") o.depths = {3, 4, 6, 3}, o.bottleneck = false;
  else if (name == "resnet50") o.depths = {3, 4, 6, 3};
  else if (name == "resnet101") o.depths = {3, 4, 23, 3};
  else
    ::protoseg::detail::fail<value_error>("resnet_config: name is '", name,
                                          "', expected one of resnet18, resnet34, resnet50, resnet101");
  return o;
}

/// A basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1) residual block;
/// children conv1, bn1, conv2, bn2 [, conv3, bn3] [, downsample.0 / .1].
template <class T, class P = cpu>
class resnet_block : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  resnet_block(bool bottleneck, std::int64_t in, std::int64_t planes, std::int64_t stride, std::int64_t dilation,
               generator& gen)
      : bottleneck_(bottleneck) {
    const std::int64_t out = bottleneck ? 4 * planes : planes;
    auto conv = [&](const std::string& n, std::int64_t ci, std::int64_t co, std::int64_t k, std::int64_t s,
                    std::int64_t d) {
      return this->register_module(
          n, std::make_shared<nn::conv2d<T, P>>(nn::conv2d_options{.in_channels = ci, .out_channels = co, .kernel_size = k,
                                                                   .stride = s, .padding = k == 3 ? d : 0,
                                                                   .dilation = d, .bias = false},
                                                gen));
    };
    auto bn = [&](const std::string& n, std::int64_t c) {
      return this->register_module(n, std::make_shared<nn::batch_norm2d<T, P>>(nn::batch_norm_options{c}));
    };
    if (bottleneck) {
      conv1 = conv("conv1", in, planes, 1, 1, 1);
      bn1 = bn("bn1", planes);
      conv2 = conv("conv2", planes, planes, 3, stride, dilation);
      bn2 = bn("bn2", planes);
      conv3 = conv("conv3", planes, out, 1, 1, 1);
      bn3 = bn("bn3", out);
    } else {
      conv1 = conv("conv1", in, planes, 3, stride, dilation);
      bn1 = bn("bn1", planes);
      conv2 = conv("conv2", planes, planes, 3, 1, 1);  // mmseg BasicBlock: conv2 never dilated
      bn2 = bn("bn2", planes);
    }
    if (stride != 1 || in != out) {
      downsample = this->register_module("downsample", std::make_shared<nn::module_list<T, P>>());
      down_conv = downsample->push_back(std::make_shared<nn::conv2d<T, P>>(
          nn::conv2d_options{.in_channels = in, .out_channels = out, .kernel_size = 1, .stride = stride, .bias = false},
          gen));
      down_bn = downsample->push_back(std::make_shared<nn::batch_norm2d<T, P>>(nn::batch_norm_options{out}));
    }
  }
  std::string type_name() const override { return bottleneck_ ? "Bottleneck" : "BasicBlock"; }
  variable_type forward(const variable_type& x) const {
    auto y = relu(bn1->forward(conv1->forward(x)));
    y = bn2->forward(conv2->forward(y));
    if (bottleneck_) y = bn3->forward(conv3->forward(relu(y)));
    const variable_type id = down_conv ? down_bn->forward(down_conv->forward(x)) : x;
    return relu(y + id);
  }

  std::shared_ptr<nn::conv2d<T, P>> conv1, conv2, conv3, down_conv;
  std::shared_ptr<nn::batch_norm2d<T, P>> bn1, bn2, bn3, down_bn;
  std::shared_ptr<nn::module_list<T, P>> downsample;

 private:
  bool bottleneck_;
};

template <class T, class P = cpu>
class resnet : public backbone<T, P> {
 public:
  using variable_type = variable<T, P>;

  /// Builds the network and initialises it as torchvision: conv weights
  /// kaiming normal (fan_out, ReLU gain), batch norm 1 / 0.
  explicit resnet(const resnet_options& o = {}) : opt_(o) {
    const char* who = "resnet";
    nn::detail_init::require_positive(o.in_channels, who, "in_channels");
    nn::detail_init::require_positive(o.stem_channels, who, "stem_channels");
    nn::detail_init::require_positive(o.base_width, who, "base_width");
    for (auto d : o.depths) nn::detail_init::require_positive(d, who, "depths");
    std::array<std::int64_t, 4> strides{1, 2, 2, 2}, dilations{1, 1, 1, 1};
    if (o.output_stride == 16) strides = {1, 2, 2, 1}, dilations = {1, 1, 1, 2};
    else if (o.output_stride == 8) strides = {1, 2, 1, 1}, dilations = {1, 1, 2, 4};
    else if (o.output_stride != 32)
      ::protoseg::detail::fail<value_error>(who, ": output_stride is ", o.output_stride, ", expected 8, 16 or 32");
    generator gen(o.seed);
    auto conv = [&](std::int64_t ci, std::int64_t co, std::int64_t k, std::int64_t s) {
      return std::make_shared<nn::conv2d<T, P>>(
          nn::conv2d_options{.in_channels = ci, .out_channels = co, .kernel_size = k, .stride = s, .padding = k / 2,
                             .bias = false},
          gen);
    };
    auto bn = [](std::int64_t c) { return std::make_shared<nn::batch_norm2d<T, P>>(nn::batch_norm_options{c}); };
    const std::int64_t sc = o.stem_channels;
    if (o.deep_stem) {
      stem = this->register_module("stem", std::make_shared<nn::module_list<T, P>>());
      const std::int64_t half = sc / 2;
      const std::array<std::int64_t, 4> ch{o.in_channels, half, half, sc};
      for (int i = 0; i < 3; ++i) {
        stem_convs.push_back(stem->push_back(conv(ch[i], ch[i + 1], 3, i == 0 ? 2 : 1)));
        stem_bns.push_back(stem->push_back(bn(ch[i + 1])));
        stem->push_back(std::make_shared<nn::module_list<T, P>>());  // the ReLU's slot (no parameters)
      }
    } else {
      stem_convs.push_back(this->register_module("conv1", conv(o.in_channels, sc, 7, 2)));
      stem_bns.push_back(this->register_module("bn1", bn(sc)));
    }
    std::int64_t in = sc;
    for (int s = 0; s < 4; ++s) {
      const std::int64_t planes = o.base_width << s;
      layers[s] = this->register_module("layer" + std::to_string(s + 1), std::make_shared<nn::module_list<T, P>>());
      for (std::int64_t j = 0; j < o.depths[s]; ++j) {
        const std::int64_t d = j == 0 && o.contract_dilation && dilations[s] > 1 ? dilations[s] / 2 : dilations[s];
        blocks[s].push_back(layers[s]->push_back(std::make_shared<resnet_block<T, P>>(
            o.bottleneck, in, planes, j == 0 ? strides[s] : 1, d, gen)));
        in = o.bottleneck ? 4 * planes : planes;
      }
      channels_[s] = in;
    }
    for (auto& [name, v] : this->named_parameters()) {
      if (!o.init_weights) break;
      auto& val = v.mutable_value();
      if (val.rank() != 4) continue;
      const double sd = std::sqrt(2.0 / static_cast<double>(val.shape()[0] * val.shape()[2] * val.shape()[3]));
      std::vector<T> w(static_cast<std::size_t>(val.numel()));
      for (auto& e : w) e = static_cast<T>(sd * gen.normal());
      val.copy_(tensor<T, P>::from_vector(w, val.shape()));
    }
    if (o.init_weights && o.zero_init_residual)
      for (auto& stage : blocks)
        for (auto& b : stage) {
          auto& last = o.bottleneck ? b->bn3 : b->bn2;
          last->weight.mutable_value().copy_(zeros<T, P>(last->weight.shape()));
        }
  }
  std::string type_name() const override { return "ResNet"; }
  const resnet_options& options() const noexcept { return opt_; }
  /// Channels of the four outputs (64..512, or 256..2048 with bottlenecks).
  const std::array<std::int64_t, 4>& out_channels() const noexcept { return channels_; }
  std::array<std::int64_t, 4> stage_channels() const override { return channels_; }
  std::vector<variable_type> features(const variable_type& x) override { return forward(x); }

  /// x (B, in_channels, H, W) -> the outputs of layer1..layer4 (strides 4,
  /// 8, 16, 32, or capped at output_stride).
  std::vector<variable_type> forward(const variable_type& x) const {
    if (!x.defined() || x.rank() != 4 || x.shape()[1] != opt_.in_channels)
      ::protoseg::detail::fail<shape_error>("resnet: x must be (B, ", opt_.in_channels, ", H, W), got ",
                                            x.defined() ? x.shape().str() : std::string("undefined"));
    variable_type y = x;
    for (std::size_t i = 0; i < stem_convs.size(); ++i) y = relu(stem_bns[i]->forward(stem_convs[i]->forward(y)));
    y = nn::functional::max_pool2d(y, nn::max_pool2d_params{.kernel_size = 3, .stride = 2, .padding = 1});
    std::vector<variable_type> outs;
    for (int s = 0; s < 4; ++s) {
      for (auto& b : blocks[s]) y = b->forward(y);
      outs.push_back(y);
    }
    return outs;
  }
  std::vector<variable_type> operator()(const variable_type& x) const { return forward(x); }

  std::shared_ptr<nn::module_list<T, P>> stem;  ///< null without the deep stem
  std::vector<std::shared_ptr<nn::conv2d<T, P>>> stem_convs;
  std::vector<std::shared_ptr<nn::batch_norm2d<T, P>>> stem_bns;
  std::array<std::shared_ptr<nn::module_list<T, P>>, 4> layers;
  std::array<std::vector<std::shared_ptr<resnet_block<T, P>>>, 4> blocks;

 private:
  resnet_options opt_;
  std::array<std::int64_t, 4> channels_{};
};

}  // namespace protoseg::models
