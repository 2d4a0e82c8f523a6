#pragma once
/// \file model.hpp
/// `models::segmentation_model`: a backbone (MiT-B0..B5), the SegFormer
/// all-MLP decoder and a head, assembled from a name and options: the
/// ProtoSeg prototype head (the paper's model) or the parametric softmax
/// classifier (SegFormer, for comparison). Children `backbone`,
/// `decode_head` and, for the prototype head, `proto_head` (state keys
/// `backbone.block1.0.attn.q.weight`, `decode_head.linear_fuse.conv.weight`,
/// `proto_head.prototypes`, ...); the softmax classifier is the decoder's own
/// `decode_head.linear_pred`, as in mmsegmentation.

#include <cstdint>
#include <memory>
#include <string>

#include "protoseg/models/mit.hpp"
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
  /// "mit_b0" ... "mit_b5".
  std::string backbone = "mit_b0";
  std::int64_t num_classes = 150;
  head_kind head = head_kind::prototype;
  /// Decoder width; 0 picks SegFormer's (256 for B0/B1, 768 for B2-B5).
  std::int64_t decoder_dim = 0;
  /// Dropout2d before the softmax classifier.
  double decoder_dropout = 0.1;
  /// MiT stochastic depth rate.
  double drop_path_rate = 0.1;
  std::int64_t in_channels = 3;
  /// Prototype head settings (in_channels and num_classes are filled in).
  proto::prototype_head_options proto{};
  /// Loss weights and settings of `loss`.
  proto::loss_options loss{};
  std::uint64_t seed = 0;
};

/// The result of a forward pass: class logits at stride 4, and the
/// prototype head's output (scores, targets) when that head is used.
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
    auto mo = mit_config(o.backbone);
    mo.in_channels = o.in_channels;
    mo.drop_path_rate = o.drop_path_rate;
    mo.seed = o.seed;
    nn::detail_init::require_positive(o.num_classes, "segmentation_model", "num_classes");
    backbone = this->register_module("backbone", std::make_shared<mix_transformer<T, P>>(mo));
    segformer_head_options ho;
    ho.in_channels = mo.embed_dims;
    ho.embed_dim = o.decoder_dim > 0 ? o.decoder_dim : (o.backbone == "mit_b0" || o.backbone == "mit_b1" ? 256 : 768);
    ho.num_classes = o.head == head_kind::softmax ? o.num_classes : 0;
    ho.dropout = o.decoder_dropout;
    ho.seed = o.seed + 1;
    decode_head = this->register_module("decode_head", std::make_shared<segformer_head<T, P>>(ho));
    if (o.head == head_kind::prototype) {
      auto po = o.proto;
      po.in_channels = ho.embed_dim;
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
    auto feats = decode_head->forward(backbone->forward(image));
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

  std::shared_ptr<mix_transformer<T, P>> backbone;
  std::shared_ptr<segformer_head<T, P>> decode_head;
  std::shared_ptr<proto::prototype_head<T, P>> proto_head;  ///< null for the softmax head

 private:
  model_options opt_;
};

}  // namespace protoseg::models
