#pragma once
/// \file model.hpp
/// `models::segmentation_model`: a backbone (MiT-B0..B5 or ResNet-18..101),
/// a decoder (the SegFormer all-MLP decoder for MiT, the FCN head for
/// ResNet) and a head, assembled from a name and options: the ProtoSeg
/// prototype head (the paper's model) or the parametric softmax classifier
/// (for comparison). Children `backbone`, `decode_head` and, for the
/// prototype head, `proto_head` (state keys `backbone.block1.0.attn.q.weight`,
/// `decode_head.linear_fuse.conv.weight`, `proto_head.prototypes`, ...); the
/// softmax classifier is the decoder's own (`decode_head.linear_pred` /
/// `decode_head.conv_seg`), as in mmsegmentation.

#include <array>
#include <cstdint>
#include <memory>
#include <functional>
#include <string>
#include <vector>

#include "protoseg/models/backbone.hpp"
#include "protoseg/models/fcn_head.hpp"
#include "protoseg/models/mit.hpp"
#include "protoseg/models/resnet.hpp"
#include "protoseg/models/segformer_head.hpp"
#include "protoseg/proto/head.hpp"
#include "protoseg/proto/loss.hpp"

namespace protoseg::models {

/// Which head classifies the decoder features.
enum class head_kind {
  prototype,  ///< ProtoSeg: non-learnable prototypes (the default)
  softmax     ///< parametric 1x1-conv classifier (SegFormer)
};

/// Options of `segmentation_model`.
struct model_options {
  /// "mit_b0" ... "mit_b5", "resnet18", "resnet34", "resnet50", "resnet101".
  std::string backbone = "mit_b0";
  std::int64_t num_classes = 150;
  head_kind head = head_kind::prototype;
  /// Decoder: "auto" (SegFormer's all-MLP decoder for MiT, the FCN head for
  /// ResNet, as published), "segformer" or "fcn". The all-MLP decoder also
  /// fuses a ResNet's four stages (with output_stride 32 that is the
  /// cheapest ResNet model, the one our PyTorch peer trains).
  std::string decoder = "auto";
  /// Decoder width; 0 picks the published one (SegFormer: 256 for B0/B1,
  /// 768 for B2-B5; FCN: 512).
  std::int64_t decoder_dim = 0;
  /// Dropout2d before the softmax classifier.
  double decoder_dropout = 0.1;
  /// Initialise the decoder's ConvModules as mmcv (kaiming normal, fan_out;
  /// segformer_head_options / fcn_head_options::mmcv_init); false: PyTorch's
  /// Conv2d default.
  bool decoder_mmcv_init = true;
  /// MiT stochastic depth rate.
  double drop_path_rate = 0.1;
  /// ResNet: the V1c deep stem, and the output stride (8, 16 or 32).
  bool deep_stem = false;
  std::int64_t output_stride = 8;
  /// ResNet: halve the first dilated block's dilation, as mmsegmentation's
  /// -d8 configs (resnet_options::contract_dilation).
  bool contract_dilation = true;
  /// ResNet: start every residual block as the identity (resnet_options).
  bool zero_init_residual = false;
  /// ResNet: stem channels and first-stage planes (0: the standard 64;
  /// resnet_options::base_width).
  std::int64_t resnet_width = 0;
  std::int64_t in_channels = 3;
  /// Prototype head settings (in_channels and num_classes are filled in).
  proto::prototype_head_options proto{};
  /// Loss weights and settings of `loss`.
  proto::loss_options loss{};
  std::uint64_t seed = 0;
};

/// The result of a forward pass: class logits at stride 4, and the
/// prototype head's output (scores, targets) when that head is used.
/// A backbone the segmentation model builds by name: its name, a one-line
/// summary, the decoder it is published with ("segformer" or "fcn") and
/// that decoder's published width, and how to build it from the model's
/// options. A new backbone is its own file (a `backbone<T, P>`) and one row
/// in backbone_table.
template <class T, class P>
struct backbone_entry {
  std::string name;
  std::string summary;
  std::string decoder;
  std::int64_t decoder_dim = 0;
  std::function<std::shared_ptr<backbone<T, P>>(const model_options&)> make;
};

namespace detail_model {
template <class T, class P>
backbone_entry<T, P> mit_entry(const char* name, const char* summary, std::int64_t decoder_dim) {
  return {name, summary, "segformer", decoder_dim, [n = std::string(name)](const model_options& o) {
            auto mo = mit_config(n);
            mo.in_channels = o.in_channels;
            mo.drop_path_rate = o.drop_path_rate;
            mo.seed = o.seed;
            return std::shared_ptr<backbone<T, P>>(std::make_shared<mix_transformer<T, P>>(mo));
          }};
}
template <class T, class P>
backbone_entry<T, P> resnet_entry(const char* name, const char* summary) {
  return {name, summary, "fcn", 512, [n = std::string(name)](const model_options& o) {
            auto ro = resnet_config(n);
            ro.in_channels = o.in_channels;
            ro.deep_stem = o.deep_stem;
            ro.output_stride = o.output_stride;
            ro.contract_dilation = o.contract_dilation;
            ro.zero_init_residual = o.zero_init_residual;
            if (o.resnet_width > 0) ro.stem_channels = ro.base_width = o.resnet_width;
            ro.seed = o.seed;
            return std::shared_ptr<backbone<T, P>>(std::make_shared<resnet<T, P>>(ro));
          }};
}
}  // namespace detail_model

/// Every backbone `segmentation_model` builds, in the order tools list them.
template <class T, class P = cpu>
const std::vector<backbone_entry<T, P>>& backbone_table() {
  using namespace detail_model;
  static const std::vector<backbone_entry<T, P>> table = {
      mit_entry<T, P>("mit_b0", "Mix Transformer B0 (SegFormer, 3.7 M parameters)", 256),
      mit_entry<T, P>("mit_b1", "Mix Transformer B1", 256),
      mit_entry<T, P>("mit_b2", "Mix Transformer B2", 768),
      mit_entry<T, P>("mit_b3", "Mix Transformer B3", 768),
      mit_entry<T, P>("mit_b4", "Mix Transformer B4", 768),
      mit_entry<T, P>("mit_b5", "Mix Transformer B5", 768),
      resnet_entry<T, P>("resnet18", "ResNet-18 (basic blocks)"),
      resnet_entry<T, P>("resnet34", "ResNet-34 (basic blocks)"),
      resnet_entry<T, P>("resnet50", "ResNet-50 (bottlenecks)"),
      resnet_entry<T, P>("resnet101", "ResNet-101 (bottlenecks)"),
  };
  return table;
}

/// The names of backbone_table(), in order.
inline std::vector<std::string> backbone_names() {
  std::vector<std::string> names;
  for (const auto& b : backbone_table<float, cpu>()) names.push_back(b.name);
  return names;
}

template <class T, class P = cpu>
struct model_output {
  variable<T, P> logits;
  proto::prototype_output<T, P> proto;  ///< empty for the softmax head
};

template <class T, class P = cpu>
class segmentation_model : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;

  explicit segmentation_model(const model_options& o) : opt_(o) {
    nn::detail_init::require_positive(o.num_classes, "segmentation_model", "num_classes");
    const backbone_entry<T, P>* entry = nullptr;
    for (const auto& b : backbone_table<T, P>())
      if (b.name == o.backbone) entry = &b;
    if (!entry) {
      std::string valid;
      for (const auto& b : backbone_table<T, P>()) valid += (valid.empty() ? "" : ", ") + b.name;
      ::protoseg::detail::fail<value_error>("segmentation_model: backbone is '", o.backbone, "', expected one of ",
                                            valid);
    }
    if (o.decoder != "auto" && o.decoder != "segformer" && o.decoder != "fcn")
      ::protoseg::detail::fail<value_error>("segmentation_model: decoder is '", o.decoder,
                                            "', expected auto, segformer or fcn");
    const std::string decoder = o.decoder == "auto" ? entry->decoder : o.decoder;
    const bool use_segformer = decoder == "segformer";
    const std::int64_t classes = o.head == head_kind::softmax ? o.num_classes : 0;
    encoder = entry->make(o);
    backbone = this->register_module("backbone", std::shared_ptr<nn::module<T, P>>(encoder));
    mit = std::dynamic_pointer_cast<mix_transformer<T, P>>(encoder);
    res = std::dynamic_pointer_cast<resnet<T, P>>(encoder);
    const std::array<std::int64_t, 4> stage_channels = encoder->stage_channels();
    std::int64_t width = 0;
    if (use_segformer) {
      segformer_head_options ho;
      ho.in_channels = stage_channels;
      ho.embed_dim = o.decoder_dim > 0 ? o.decoder_dim : (entry->decoder == "segformer" ? entry->decoder_dim : 768);
      ho.num_classes = classes;
      ho.dropout = o.decoder_dropout;
      ho.mmcv_init = o.decoder_mmcv_init;
      ho.seed = o.seed + 1;
      segformer = std::make_shared<segformer_head<T, P>>(ho);
      decode_head = this->register_module("decode_head", std::shared_ptr<nn::module<T, P>>(segformer));
      width = ho.embed_dim;
    } else {
      fcn_head_options fo;
      fo.in_channels = stage_channels[3];
      fo.channels = o.decoder_dim > 0 ? o.decoder_dim : (entry->decoder == "fcn" ? entry->decoder_dim : 512);
      fo.num_classes = classes;
      fo.dropout = o.decoder_dropout;
      fo.mmcv_init = o.decoder_mmcv_init;
      fo.seed = o.seed + 1;
      fcn = std::make_shared<fcn_head<T, P>>(fo);
      decode_head = this->register_module("decode_head", std::shared_ptr<nn::module<T, P>>(fcn));
      width = fo.channels;
    }
    if (o.head == head_kind::prototype) {
      auto po = o.proto;
      po.in_channels = width;
      po.num_classes = o.num_classes;
      if (po.seed == 0) po.seed = o.seed + 2;
      proto_head = this->register_module("proto_head", std::make_shared<proto::prototype_head<T, P>>(po));
    }
  }
  std::string type_name() const override { return "SegmentationModel"; }
  const model_options& options() const noexcept { return opt_; }

  /// image (B, in_channels, H, W); labels (B, H, W) int64, optional (used
  /// by the prototype step in training).
  model_output<T, P> forward(const variable_type& image, const tensor<std::int64_t, P>& labels = {}) {
    auto feats = decode(features(image));
    model_output<T, P> out;
    if (proto_head) {
      out.proto = proto_head->forward(feats, labels);
      out.logits = out.proto.logits;
    } else {
      out.logits = feats;
    }
    return out;
  }
  model_output<T, P> operator()(const variable_type& image, const tensor<std::int64_t, P>& labels = {}) {
    return forward(image, labels);
  }

  /// The training objective: CE + 0.01 PPC + 0.001 PPD (prototype head,
  /// Eq. 14) or CE (softmax head), on labels (B, H, W) at image resolution.
  proto::loss_terms<T, P> loss(const model_output<T, P>& out, const tensor<std::int64_t, P>& labels) const {
    if (proto_head) return proto::protoseg_loss(out.proto, labels, opt_.loss);
    return proto::segmentation_loss(out.logits, labels, opt_.loss);
  }

  /// The backbone's four features.
  std::vector<variable_type> features(const variable_type& image) { return encoder->features(image); }
  /// The decoder's output: class logits (softmax head) or features.
  variable_type decode(const std::vector<variable_type>& feats) {
    return segformer ? segformer->forward(feats) : fcn->forward(feats);
  }

  std::shared_ptr<nn::module<T, P>> backbone, decode_head;
  std::shared_ptr<models::backbone<T, P>> encoder;  ///< the backbone, through its interface
  std::shared_ptr<mix_transformer<T, P>> mit;      ///< the backbone when it is a MiT
  std::shared_ptr<resnet<T, P>> res;               ///< the backbone when it is a ResNet
  std::shared_ptr<segformer_head<T, P>> segformer; ///< the decoder with a MiT
  std::shared_ptr<fcn_head<T, P>> fcn;             ///< the decoder with a ResNet
  std::shared_ptr<proto::prototype_head<T, P>> proto_head;  ///< null for the softmax head

 private:
  model_options opt_;
};

}  // namespace protoseg::models
