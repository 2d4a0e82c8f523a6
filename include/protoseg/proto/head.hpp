#pragma once
/// \file head.hpp
/// The ProtoSeg head (Zhou et al., CVPR 2022, Sec. 3): pixel embeddings from
/// a projection head, LayerNorm and L2 normalisation; non-learnable
/// prototypes P (C x M x D, a buffer, kept unit-norm); cosine scores
/// s = c . P^T (N x C x M); class logits = LayerNorm over C of the max over
/// each class's M prototypes (Eq. 4 and the published `mask_norm`). In
/// training with labels, the prototype step (proto/step.hpp) clusters every
/// class's pixels in one segmented Sinkhorn pass, momentum-updates P and
/// gives the prototype targets of PPC / PPD.
///
/// Also `softmax_head`, the parametric 1x1-conv classifier it replaces
/// (SegFormer's `linear_pred`), for comparison.
///
/// Both policies: on a device policy (`protoseg::cuda`) the prototype step,
/// the label resize and the prototype normalisation run on the device
/// (backend/cuda/proto.cuh), with the same results as on the cpu.

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "protoseg/autograd/grad_mode.hpp"
#include "protoseg/nn/module_list.hpp"
#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/dropout.hpp"
#include "protoseg/nn/norm.hpp"
#include "protoseg/ops/class_max.hpp"
#include "protoseg/ops/layout.hpp"
#include "protoseg/ops/matmul.hpp"
#include "protoseg/ops/reduction.hpp"
#include "protoseg/ops/softmax.hpp"
#include "protoseg/ops/unary.hpp"
#include "protoseg/proto/scores.hpp"
#include "protoseg/proto/step.hpp"
#include "protoseg/tensor/creation.hpp"

namespace protoseg::proto {

/// Which projection head maps the decoder features to pixel embeddings.
enum class projection_kind {
  /// conv1x1 -> ReLU -> conv1x1, parameters `proj.0`, `proj.2`: the class
  /// the published model builds. lib/models/nets/hrnet.py imports
  /// `ProjectionHead` from modules/projection.py and then again from
  /// modules/contrast.py; the second import wins, so `HRNet_W48_Proto` uses
  /// contrast.py's `ProjectionHead`.
  published,
  /// conv1x1 -> BatchNorm -> ReLU -> conv1x1, parameters `proj.0`,
  /// `proj.1.0` (the BN of BNReLU), `proj.2`: modules/projection.py's
  /// `ProjectionHead(proj='convmlp')`, the class the later import shadows.
  bn
};

/// The L2 normalisation applied to the projection output, before the
/// feature LayerNorm.
enum class projection_norm {
  /// Over the last axis of the (B, D, H, W) output, i.e. across the image
  /// width: contrast.py's `ProjectionHead.forward` returns
  /// `F.normalize(x, p=2, dim=-1)` of the NCHW tensor. Each (b, d, h) row
  /// is divided by its norm over the width, which couples the pixels of a
  /// row and depends on the image width; LayerNorm does not undo it. This
  /// is what the published model computes, most likely unintentionally.
  published_width,
  /// Over the channels D of each pixel (what a per-pixel L2 normalisation
  /// means). Followed by the feature LayerNorm and the L2 normalisation it
  /// is nearly a no-op: LN(x / |x|) differs from LN(x) only through eps.
  channels,
  /// None (projection.py's `ProjectionHead` does not normalise).
  none
};

/// Options of `prototype_head`. Every default is the published code's
/// (tfzhou/ProtoSeg, `HRNet_W48_Proto` in lib/models/nets/hrnet.py and the
/// modules it uses); each departure is an option. docs/models.md has the
/// table: item, published code, default, option.
struct prototype_head_options {
  /// Channels E of the decoder features the head reads.
  std::int64_t in_channels = 0;
  /// Number of classes C.
  std::int64_t num_classes = 0;
  /// Prototypes per class M (published `num_prototype`, 10).
  std::int64_t num_prototypes = 10;
  /// Embedding width D (0: in_channels, as the published
  /// `ProjectionHead(in_channels, in_channels)`).
  std::int64_t proj_dim = 0;
  /// The projection head (published: contrast.py's conv-ReLU-conv).
  projection_kind projection = projection_kind::published;
  /// The L2 normalisation of the projection output (published: over the
  /// width axis, see projection_norm).
  projection_norm projection_normalize = projection_norm::published_width;
  /// Dropout2d rate on the features before the projection head (published:
  /// `cls_head` ends with `nn.Dropout2d(0.10)` and feeds `proj_head`). The
  /// published network is HRNet-W48; no SegFormer or ResNet ProtoSeg was
  /// released, so with those decoders the dropout sits in the same place:
  /// between the decoder's features and the projection head. 0: none.
  double proj_dropout = 0.1;
  /// Sinkhorn rounds, kappa, momentum gamma, Gumbel sampling: see
  /// step_options (published 3, 0.05, 0.999, Gumbel on).
  int sinkhorn_iterations = 3;
  double kappa = 0.05;
  double gamma = 0.999;
  bool gumbel = true;
  /// Update the prototypes in training (published `update_prototype`).
  bool update_prototypes = true;
  /// Label of pixels that take no part: 255, the value the data sets' label
  /// files carry. The published loader relabels 255 to -1 at load time
  /// (`ReLabel(255, -1)`, lib/datasets/data_loader.py) and its head and
  /// losses skip -1: the same pixels. The prototype targets of skipped
  /// pixels are -1, as published.
  std::int64_t ignore_index = 255;
  /// Standard deviation of the truncated-normal prototype initialisation
  /// (published `trunc_normal_(self.prototypes, std=0.02)`).
  double init_std = 0.02;
  /// Truncation bounds of that initialisation, in absolute units: timm's
  /// `trunc_normal_(tensor, mean=0, std=0.02, a=-2, b=2)` cuts at +-2, i.e.
  /// 100 std, so in effect it does not truncate.
  double init_bound = 2.0;
  /// LayerNorm eps of the feature and class norms (nn.LayerNorm default).
  double norm_eps = 1e-5;
  /// Seed of the parameter / prototype initialisation, the dropout and the
  /// Gumbel noise.
  std::uint64_t seed = 0;
  /// Recorded Gumbel variates for every step (step_options::gumbel_noise);
  /// empty: drawn from the head's generator.
  std::vector<double> gumbel_noise{};
};

/// The names of the enum values, as the trainers' options spell them.
inline const char* to_string(projection_kind k) noexcept {
  return k == projection_kind::published ? "published" : "bn";
}
inline const char* to_string(projection_norm n) noexcept {
  return n == projection_norm::published_width ? "published_width"
         : n == projection_norm::channels      ? "channels"
                                               : "none";
}

/// What `prototype_head::forward` returns. N = B * H * W pixels in (b, h, w)
/// order.
template <class T, class P = cpu>
struct prototype_output {
  /// Class logits (B, C, H, W) at the feature resolution.
  variable<T, P> logits;
  /// Cosine scores against every prototype (N, C * M), class-major: column
  /// k * M + m is prototype m of class k (the published `contrast_logits`).
  /// Undefined when the forward records no gradient (no_grad, or inputs
  /// without one) and runs no prototype step: the class logits then come
  /// from `summarize_scores`, without the scores.
  variable<T, P> proto_logits;
  /// Unit pixel embeddings (N, D).
  variable<T, P> embeddings;
  /// Prototype targets (N, int64): class * M + assigned prototype, or
  /// `target_ignore_index`; undefined unless the step ran (training with labels).
  tensor<std::int64_t, P> proto_targets;
  /// The ignore value of proto_targets: -1, as in the published step.
  std::int64_t target_ignore_index = -1;
  /// Labels at the feature resolution (B, H, W) the step used (nearest).
  tensor<std::int64_t, P> labels;
  /// Correctly classified labelled pixels that fed the prototype update.
  std::int64_t correct = 0;
};

namespace detail {

/// Nearest-neighbour resize of int64 labels (B, H, W) to (B, oh, ow), as
/// F.interpolate(mode='nearest') on the labels (scale in float, as ATen).
template <class P>
tensor<std::int64_t, P> nearest_labels(const tensor<std::int64_t, P>& labels, std::int64_t oh, std::int64_t ow) {
  const std::int64_t b = labels.shape()[0], h = labels.shape()[1], w = labels.shape()[2];
  if (h == oh && w == ow) return labels;
  auto out = tensor<std::int64_t, P>::empty({b, oh, ow});
  if (out.numel() > 0) backend::prototype<P>::nearest_labels(labels.data(), out.data(), b, h, w, oh, ow);
  return out;
}

/// class_max is an op (ops/class_max.hpp); its old name here stays valid.
using ::protoseg::class_max;

/// Rows of x (R, D) divided by max(||row||, 1e-12), in place.
template <class T, class P>
void normalize_rows(tensor<T, P> x) {
  const std::int64_t D = x.shape()[x.rank() - 1];
  if (D == 0 || x.numel() == 0) return;
  backend::prototype<P>::normalize_rows(x.data(), x.numel() / D, D);
}

}  // namespace detail

/// The projection head (projection_kind): contrast.py's `ProjectionHead`
/// (conv1x1 -> ReLU -> conv1x1, parameters `proj.0`, `proj.2`), what the
/// published model builds, or projection.py's `ProjectionHead(proj='convmlp')`
/// (conv1x1 -> BatchNorm -> ReLU -> conv1x1, `proj.0`, `proj.1.0`, `proj.2`).
/// The L2 normalisation is the head's (projection_norm), not this module's.
template <class T, class P = cpu>
class projection_head : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  projection_head(std::int64_t in_channels, std::int64_t out_channels, generator& gen,
                  projection_kind kind = projection_kind::published)
      : kind_(kind) {
    proj = this->register_module("proj", std::make_shared<nn::module_list<T, P>>());
    conv1 = proj->push_back(std::make_shared<nn::conv2d<T, P>>(
        nn::conv2d_options{.in_channels = in_channels, .out_channels = in_channels}, gen));
    auto middle = proj->push_back(std::make_shared<nn::module_list<T, P>>());  // the ReLU, or BNReLU's list
    if (kind == projection_kind::bn)
      bn = middle->push_back(std::make_shared<nn::batch_norm2d<T, P>>(nn::batch_norm_options{in_channels}));
    conv2 = proj->push_back(std::make_shared<nn::conv2d<T, P>>(
        nn::conv2d_options{.in_channels = in_channels, .out_channels = out_channels}, gen));
  }
  std::string type_name() const override { return "ProjectionHead"; }
  projection_kind kind() const noexcept { return kind_; }
  /// x (B, E, H, W) -> (B, D, H, W).
  variable_type forward(const variable_type& x) const {
    auto y = conv1->forward(x);
    if (bn) y = bn->forward(y);
    return conv2->forward(relu(y));
  }

  std::shared_ptr<nn::module_list<T, P>> proj;
  std::shared_ptr<nn::conv2d<T, P>> conv1, conv2;
  std::shared_ptr<nn::batch_norm2d<T, P>> bn;  ///< null for projection_kind::published

 private:
  projection_kind kind_;
};

/// The ProtoSeg head. Children `dropout` (Dropout2d, no state), `proj_head`,
/// `feat_norm` (LayerNorm D), `mask_norm` (LayerNorm C); buffer `prototypes`
/// (C, M, D).
template <class T, class P = cpu>
class prototype_head : public nn::module<T, P> {
  static_assert(policy<P>, "protoseg::proto::prototype_head: P must be a protoseg policy (cpu or cuda)");

 public:
  using variable_type = variable<T, P>;
  using tensor_type = tensor<T, P>;

  explicit prototype_head(const prototype_head_options& opt) : opt_(opt), gen_(opt.seed) {
    const char* who = "prototype_head";
    nn::detail_init::require_positive(opt.in_channels, who, "in_channels");
    nn::detail_init::require_positive(opt.num_classes, who, "num_classes");
    nn::detail_init::require_positive(opt.num_prototypes, who, "num_prototypes");
    if (opt.proj_dim < 0) ::protoseg::detail::fail<value_error>(who, ": proj_dim is ", opt.proj_dim, ", expected >= 0");
    if (opt.sinkhorn_iterations < 1)
      ::protoseg::detail::fail<value_error>(who, ": sinkhorn_iterations is ", opt.sinkhorn_iterations, ", expected >= 1");
    if (!(opt.kappa > 0) || !std::isfinite(opt.kappa))
      ::protoseg::detail::fail<value_error>(who, ": kappa is ", opt.kappa, ", expected a finite value > 0");
    if (!(opt.gamma >= 0 && opt.gamma <= 1))
      ::protoseg::detail::fail<value_error>(who, ": gamma is ", opt.gamma, ", expected a momentum in [0, 1]");
    if (!(opt.init_std > 0))
      ::protoseg::detail::fail<value_error>(who, ": init_std is ", opt.init_std, ", expected > 0");
    if (!(opt.init_bound > 0))
      ::protoseg::detail::fail<value_error>(who, ": init_bound is ", opt.init_bound, ", expected > 0");
    if (!(opt.proj_dropout >= 0 && opt.proj_dropout < 1))
      ::protoseg::detail::fail<value_error>(who, ": proj_dropout is ", opt.proj_dropout, ", expected a rate in [0, 1)");
    dim_ = opt.proj_dim > 0 ? opt.proj_dim : opt.in_channels;
    dropout = this->register_module(
        "dropout", std::make_shared<nn::dropout2d<T, P>>(nn::dropout_options{opt.proj_dropout, opt.seed + 1}));
    proj_head = this->register_module(
        "proj_head", std::make_shared<projection_head<T, P>>(opt.in_channels, dim_, gen_, opt.projection));
    feat_norm = this->register_module("feat_norm",
                                      std::make_shared<nn::layer_norm<T, P>>(nn::layer_norm_options{dim_, opt.norm_eps}));
    mask_norm = this->register_module(
        "mask_norm", std::make_shared<nn::layer_norm<T, P>>(nn::layer_norm_options{opt.num_classes, opt.norm_eps}));
    prototypes = this->register_buffer(
        "prototypes", trunc_normal<T, P>({opt.num_classes, opt.num_prototypes, dim_}, gen_, static_cast<T>(opt.init_std),
                                         static_cast<T>(-opt.init_bound), static_cast<T>(opt.init_bound)));
  }
  std::string type_name() const override { return "ProtoSegHead"; }
  const prototype_head_options& options() const noexcept { return opt_; }
  /// Embedding width D.
  std::int64_t embedding_dim() const noexcept { return dim_; }
  /// The generator of the Gumbel noise (to reseed it).
  generator& gen() noexcept { return gen_; }

  /// features (B, in_channels, H, W); labels (B, H', W') int64, optional,
  /// resized to (H, W) by nearest neighbour when they differ. The prototype
  /// step runs (and updates `prototypes`) only in training with labels.
  prototype_output<T, P> forward(const variable_type& features, const tensor<std::int64_t, P>& labels = {}) {
    const char* who = "prototype_head";
    if (!features.defined() || features.rank() != 4 || features.shape()[1] != opt_.in_channels)
      ::protoseg::detail::fail<shape_error>(who, ": features must be (B, ", opt_.in_channels, ", H, W), got ",
                                            features.defined() ? features.shape().str() : std::string("undefined"));
    const std::int64_t B = features.shape()[0], H = features.shape()[2], W = features.shape()[3];
    const std::int64_t N = B * H * W, C = opt_.num_classes, M = opt_.num_prototypes;
    if (labels.defined() && (labels.rank() != 3 || labels.shape()[0] != B))
      ::protoseg::detail::fail<shape_error>(who, ": labels must be (", B, ", H, W) int64, got ", labels.shape());

    auto x = proj_head->forward(opt_.proj_dropout > 0 ? dropout->forward(features) : features);
    if (opt_.projection_normalize == projection_norm::published_width) x = l2_normalize(x, 3);
    else if (opt_.projection_normalize == projection_norm::channels) x = l2_normalize(x, 1);
    auto c = reshape(permute(x, {0, 2, 3, 1}), {N, dim_});
    c = l2_normalize(feat_norm->forward(c), 1);
    detail::normalize_rows(prototypes);  // published: prototypes.data.copy_(l2_normalize(prototypes))

    prototype_output<T, P> out;
    out.target_ignore_index = -1;
    out.embeddings = c;
    const bool step = this->is_training() && labels.defined();
    if (!step && !(grad_enabled() && c.requires_grad())) {
      // Nothing to differentiate and no step: the class logits come from
      // the scores' summary, which never holds the N x C*M scores.
      auto summary = summarize_scores(c.value(), prototypes);
      auto seg = mask_norm->forward(variable_type(summary.class_logits, false));
      out.logits = permute(reshape(seg, {B, H, W, C}), {0, 3, 1, 2});
      return out;
    }
    // A copy: the step below updates the buffer in place, and the backward
    // of the scores must see the prototypes the forward used.
    const variable_type protos(prototypes.reshape({C * M, dim_}).clone(), false);
    out.proto_logits = matmul(c, protos, false, true);  // (N, C * M)
    auto seg = mask_norm->forward(detail::class_max(out.proto_logits, M));
    out.logits = permute(reshape(seg, {B, H, W, C}), {0, 3, 1, 2});

    if (step) {
      out.labels = detail::nearest_labels(labels, H, W);
      step_options so;
      so.sinkhorn_iterations = opt_.sinkhorn_iterations;
      so.kappa = opt_.kappa;
      so.gamma = opt_.gamma;
      so.ignore_index = opt_.ignore_index;
      so.target_ignore_index = -1;
      so.update_prototypes = opt_.update_prototypes;
      so.gumbel = opt_.gumbel;
      so.gen = &gen_;
      so.gumbel_noise = opt_.gumbel_noise;
      no_grad guard;
      auto r = prototype_step(c.value(), out.proto_logits.value().reshape({N, C, M}), seg.value(),
                              out.labels.reshape({N}), prototypes, so);
      out.proto_targets = r.targets;
      out.correct = r.correct;
    }
    return out;
  }
  prototype_output<T, P> operator()(const variable_type& f, const tensor<std::int64_t, P>& labels = {}) {
    return forward(f, labels);
  }

  std::shared_ptr<nn::dropout2d<T, P>> dropout;
  std::shared_ptr<projection_head<T, P>> proj_head;
  std::shared_ptr<nn::layer_norm<T, P>> feat_norm, mask_norm;
  tensor_type prototypes;  ///< (C, M, D) buffer, no gradient

 protected:
  void reseed_own(std::uint64_t seed) override { gen_.seed(seed); }

 private:
  prototype_head_options opt_;
  generator gen_;
  std::int64_t dim_ = 0;
};

/// Options of `softmax_head`.
struct softmax_head_options {
  std::int64_t in_channels = 0;
  std::int64_t num_classes = 0;
  /// Dropout2d before the classifier (SegFormer's dropout_ratio 0.1).
  double dropout = 0.1;
  std::uint64_t seed = 0;
};

/// The parametric baseline: Dropout2d and a 1x1 conv classifier, as
/// SegFormer's decode head ends (`dropout`, `linear_pred`).
template <class T, class P = cpu>
class softmax_head : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  explicit softmax_head(const softmax_head_options& opt) : opt_(opt) {
    nn::detail_init::require_positive(opt.in_channels, "softmax_head", "in_channels");
    nn::detail_init::require_positive(opt.num_classes, "softmax_head", "num_classes");
    generator gen(opt.seed);
    dropout = this->register_module("dropout",
                                    std::make_shared<nn::dropout2d<T, P>>(nn::dropout_options{opt.dropout, opt.seed}));
    linear_pred = this->register_module(
        "linear_pred", std::make_shared<nn::conv2d<T, P>>(
                           nn::conv2d_options{.in_channels = opt.in_channels, .out_channels = opt.num_classes}, gen));
  }
  std::string type_name() const override { return "SoftmaxHead"; }
  const softmax_head_options& options() const noexcept { return opt_; }
  /// features (B, in_channels, H, W) -> class logits (B, C, H, W).
  variable_type forward(const variable_type& features) {
    if (!features.defined() || features.rank() != 4 || features.shape()[1] != opt_.in_channels)
      ::protoseg::detail::fail<shape_error>("softmax_head: features must be (B, ", opt_.in_channels, ", H, W), got ",
                                            features.defined() ? features.shape().str() : std::string("undefined"));
    return linear_pred->forward(dropout->forward(features));
  }
  variable_type operator()(const variable_type& f) { return forward(f); }

  std::shared_ptr<nn::dropout2d<T, P>> dropout;
  std::shared_ptr<nn::conv2d<T, P>> linear_pred;

 private:
  softmax_head_options opt_;
};

}  // namespace protoseg::proto
