#pragma once
/// \file loss.hpp
/// ProtoSeg's training objective (Eq. 14, the published
/// `PixelPrototypeCELoss`): cross-entropy of the class logits upsampled to
/// the label resolution, plus lambda_1 PPC plus lambda_2 PPD on the
/// prototype scores and targets of the prototype head.

#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/loss/cross_entropy.hpp"
#include "protoseg/loss/prototype.hpp"
#include "protoseg/nn/functional.hpp"
#include "protoseg/proto/head.hpp"

namespace protoseg::proto {

/// Weights and settings of the objective, with the published defaults
/// (`PixelPrototypeCELoss`, lib/loss/loss_proto.py; docs/models.md).
struct loss_options {
  /// lambda_1 of Eq. 14 (published `loss_ppc_weight`).
  double ppc_weight = 0.01;
  /// lambda_2 of Eq. 14 (published `loss_ppd_weight`).
  double ppd_weight = 0.001;
  /// Label ignored by the cross-entropy: 255 in the data sets' label files,
  /// which the published loader relabels -1 (`ce_ignore_index: -1`).
  std::int64_t ignore_index = 255;
  /// Temperature of PPC (see ppc_options: 1 in the published code).
  double ppc_temperature = 1.0;
  /// Bilinear upsampling of the logits to the labels before the CE: the
  /// published loss uses `F.interpolate(seg, size=(h, w), mode='bilinear',
  /// align_corners=True)` (`PixelPrototypeCELoss.forward`); mmsegmentation's
  /// SegFormer loss uses false.
  bool align_corners = true;
  /// Per-class weights of the CE (C values; empty: unweighted). The
  /// published Cityscapes config sets `loss.params.ce_weight`
  /// (configs/cityscapes/H_48_D_4_proto.json, read by `FSCELoss`):
  /// `cityscapes_class_weights()`. The mean is weighted as
  /// F.cross_entropy(weight=...): sum w_y l / sum w_y.
  std::vector<double> class_weights{};
};

/// The CE class weights of the published Cityscapes config (19 classes, in
/// the trainIds order; `ce_weight` of configs/cityscapes/H_48_D_4_proto.json).
inline const std::vector<double>& cityscapes_class_weights() {
  static const std::vector<double> w = {0.8373, 0.9180, 0.8660, 1.0345, 1.0166, 0.9969, 0.9754,
                                        1.0489, 0.8786, 1.0023, 0.9539, 0.9843, 1.1116, 0.9037,
                                        1.0865, 1.0955, 1.0865, 1.1529, 1.0507};
  return w;
}

/// The terms of the objective; ppc / ppd are undefined when the head did
/// not produce targets (evaluation, or no labels).
template <class T, class P = cpu>
struct loss_terms {
  variable<T, P> total, ce, ppc, ppd;
};

/// CE(upsample(logits), labels) + ppc_weight PPC + ppd_weight PPD.
/// `logits` (B, C, h, w) are resized (bilinear) to the labels (B, H, W).
template <class T, class P>
loss_terms<T, P> segmentation_loss(const variable<T, P>& logits, const tensor<std::int64_t, P>& labels,
                                   const loss_options& opt = {}) {
  labels.require_defined("segmentation_loss");
  if (!logits.defined() || logits.rank() != 4)
    ::protoseg::detail::fail<shape_error>("segmentation_loss: logits must be (B, C, H, W), got ",
                                          logits.defined() ? logits.shape().str() : std::string("undefined"));
  if (labels.rank() != 3 || labels.shape()[0] != logits.shape()[0])
    ::protoseg::detail::fail<shape_error>("segmentation_loss: labels must be (", logits.shape()[0],
                                          ", H, W) int64, got ", labels.shape());
  const std::int64_t H = labels.shape()[1], W = labels.shape()[2];
  cross_entropy_options<T, P> ce;
  ce.ignore_index = opt.ignore_index;
  if (!opt.class_weights.empty()) {
    const std::int64_t C = logits.shape()[1];
    if (static_cast<std::int64_t>(opt.class_weights.size()) != C)
      ::protoseg::detail::fail<shape_error>("segmentation_loss: class_weights has ", opt.class_weights.size(),
                                            " values, expected one per class (", C, ")");
    std::vector<T> w;
    for (double v : opt.class_weights) {
      if (!(v >= 0) || !std::isfinite(v))
        ::protoseg::detail::fail<value_error>("segmentation_loss: class weight ", v, " is not a finite value >= 0");
      w.push_back(static_cast<T>(v));
    }
    ce.class_weights = tensor<T, P>::from_vector(w, {C});
  }
  loss_terms<T, P> t;
  t.ce = (logits.shape()[2] == H && logits.shape()[3] == W)
             ? cross_entropy(logits, labels, ce)
             : nn::functional::upsampled_cross_entropy(logits, labels, opt.align_corners, ce);
  t.total = t.ce;
  return t;
}

/// The full ProtoSeg objective (Eq. 14) for the output of `prototype_head`.
template <class T, class P>
loss_terms<T, P> protoseg_loss(const prototype_output<T, P>& out, const tensor<std::int64_t, P>& labels,
                               const loss_options& opt = {}) {
  auto t = segmentation_loss(out.logits, labels, opt);
  if (!out.proto_targets.defined()) return t;
  t.ppc = ppc_loss(out.proto_logits, out.proto_targets,
                   ppc_options{.ignore_index = out.target_ignore_index, .temperature = opt.ppc_temperature});
  t.ppd = ppd_loss(out.proto_logits, out.proto_targets, ppd_options{.ignore_index = out.target_ignore_index});
  t.total = t.ce + t.ppc * static_cast<T>(opt.ppc_weight) + t.ppd * static_cast<T>(opt.ppd_weight);
  return t;
}

}  // namespace protoseg::proto
