#pragma once
/// \file step.hpp
/// The prototype learning step of ProtoSeg (Zhou et al., CVPR 2022,
/// Sec. 3.2; the published `prototype_learning`), for all classes in one
/// segmented pass: pixels are sorted by class into CSR rows, one segmented
/// Sinkhorn-Knopp call (supplementary Algorithm 1 per class, Eq. 9) assigns
/// each class's pixels to that class's M prototypes, the hard assignment
/// gives the prototype targets of PPC / PPD, and the prototypes move towards
/// the L2-normalised mean of the correctly classified pixels assigned to
/// them (momentum gamma, Eq. 10), then are re-normalised.

#include <algorithm>
#include <string>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/backend/default.hpp"
#include "protoseg/error.hpp"
#include "protoseg/ot/assignment.hpp"
#include "protoseg/ot/device.hpp"
#include "protoseg/ot/segmented.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::proto {

/// Constants of the prototype step. Every default is the published code's
/// (tfzhou/ProtoSeg, `HRNet_W48_Proto.prototype_learning` in
/// lib/models/nets/hrnet.py and `distributed_sinkhorn` in
/// lib/models/modules/sinkhorn.py); docs/models.md has the table.
struct step_options {
  /// Sinkhorn-Knopp rounds (Algorithm 1 `iters`; published
  /// `sinkhorn_iterations=3`).
  int sinkhorn_iterations = 3;
  /// kappa of Eq. 9 (the published `epsilon`, 0.05).
  double kappa = 0.05;
  /// Momentum of the prototype update (Eq. 10): P = gamma P + (1 - gamma) f
  /// (published `gamma`, 0.999 in every config).
  double gamma = 0.999;
  /// Labels equal to this are skipped (no target, no update). The data sets'
  /// label files mark void pixels 255; the published loader relabels them -1
  /// at load time (`ReLabel(255, -1)`) and skips -1, the same pixels.
  std::int64_t ignore_index = 255;
  /// Value written to the targets of ignored pixels: -1, as the published
  /// step (its targets start as a copy of the relabelled ground truth).
  std::int64_t target_ignore_index = -1;
  /// Move the prototypes (the published `update_prototype`); off still
  /// gives the targets.
  bool update_prototypes = true;
  /// Pick the prototype each correct pixel moves by Gumbel sampling of its
  /// Sinkhorn assignment row, as the published `distributed_sinkhorn`
  /// returns `gumbel_softmax(Q, tau=0.5, hard=True)` (the one-hot of
  /// argmax(Q + g), Q taken as logits; tau does not change a hard sample),
  /// which `prototype_learning` uses for the update. Off: the argmax, which
  /// the published code only uses for the targets (its commented-out
  /// one-hot line). The targets are the argmax in both cases.
  bool gumbel = true;
  /// Generator of the Gumbel noise (required when gumbel is on and no
  /// gumbel_noise is given).
  generator* gen = nullptr;
  /// Recorded Gumbel variates to use instead of drawing from *gen: R x M
  /// values, row r for the r-th labelled pixel in class-major order (class
  /// 0's pixels in index order, then class 1's, ...), the order in which the
  /// published loop over classes samples. For checks against a reference
  /// that drew its own noise; the size must match the step.
  std::vector<double> gumbel_noise{};
};

/// What the step returns: the prototype target of every pixel (int64, N;
/// class * M + assigned prototype, or target_ignore_index) on the policy of
/// the inputs, the prototype each pixel's update would move (the Gumbel
/// sample, or the target without gumbel; the update uses it for correct
/// pixels only), how many pixels were correct (fed the update), and the
/// Sinkhorn rounds run.
template <class P>
struct basic_step_result {
  tensor<std::int64_t, P> targets;
  tensor<std::int64_t, P> sampled;
  std::int64_t correct = 0;
  int sinkhorn_iterations = 0;
};
/// The step's result on the cpu policy.
using step_result = basic_step_result<cpu>;

namespace detail {

struct step_sizes {
  std::int64_t N, C, M, D;
  bool own_scores;  // scores are (N, M), each pixel's own class's (summarize_scores' `own`)
};

struct embedding_sizes {
  std::int64_t N, C, M, D;
};

/// Prototypes (C, M, D; with `non_empty`, C * M * D > 0) and embeddings
/// (N, D), checked for `who` (the prototype step and the score summary).
template <class T, class P>
embedding_sizes check_embeddings_and_prototypes(const char* who, const tensor<T, P>& embeddings,
                                                const tensor<T, P>& prototypes, bool non_empty) {
  if (!prototypes.defined() || prototypes.rank() != 3 || (non_empty && prototypes.numel() == 0))
    ::protoseg::detail::fail<shape_error>(who, ": prototypes must be ", non_empty ? "a non-empty " : "",
                                          "(C, M, D), got ",
                                          prototypes.defined() ? prototypes.shape().str() : std::string("undefined"));
  const std::int64_t C = prototypes.shape()[0], M = prototypes.shape()[1], D = prototypes.shape()[2];
  if (!embeddings.defined() || embeddings.rank() != 2 || embeddings.shape()[1] != D)
    ::protoseg::detail::fail<shape_error>(who, ": embeddings must be (N, ", D, "), got ",
                                          embeddings.defined() ? embeddings.shape().str() : std::string("undefined"));
  return {embeddings.shape()[0], C, M, D};
}

/// A label that is neither a class id in [0, C) nor the ignore index.
[[noreturn]] inline void bad_label(const char* who, std::int64_t n, std::int64_t k, std::int64_t C,
                                   std::int64_t ignore_index) {
  ::protoseg::detail::fail<value_error>(who, ": labels[", n, "] is ", k, ", expected a class id in [0, ", C,
                                        ") or the ignore index ", ignore_index);
}

/// Shapes and options of the prototype step (every policy).
template <class T, class P>
step_sizes check_step_inputs(const tensor<T, P>& embeddings, const tensor<T, P>& scores,
                             const tensor<T, P>& class_logits, const tensor<std::int64_t, P>& labels,
                             const tensor<T, P>& prototypes, const step_options& o) {
  constexpr const char* who = "prototype_step";
  const auto [N, C, M, D] = check_embeddings_and_prototypes(who, embeddings, prototypes, false);
  if (!scores.defined() || !(scores.shape() == shape{N, C, M} || scores.shape() == shape{N, M}))
    ::protoseg::detail::fail<shape_error>(who, ": scores must be (", N, ", ", C, ", ", M, ") or the own-class (", N,
                                          ", ", M, "), got ",
                                          scores.defined() ? scores.shape().str() : std::string("undefined"));
  if (!class_logits.defined() || !(class_logits.shape() == shape{N, C}))
    ::protoseg::detail::fail<shape_error>(who, ": class_logits must be (", N, ", ", C, "), got ",
                                          class_logits.defined() ? class_logits.shape().str() : std::string("undefined"));
  if (!labels.defined() || !(labels.shape() == shape{N}))
    ::protoseg::detail::fail<shape_error>(who, ": labels must be (", N, ",), got ",
                                          labels.defined() ? labels.shape().str() : std::string("undefined"));
  if (!(o.gamma >= 0 && o.gamma <= 1))
    ::protoseg::detail::fail<value_error>(who, ": options.gamma is ", o.gamma, ", expected a momentum in [0, 1]");
  if (o.gumbel && o.gen == nullptr && o.gumbel_noise.empty())
    ::protoseg::detail::fail<value_error>(who, ": options.gen is nullptr, expected a seeded generator for Gumbel sampling");
  return {N, C, M, D, scores.rank() == 2};
}

}  // namespace detail

/// The prototype step (published `prototype_learning`, all classes in one
/// segmented pass), on any policy. `embeddings` (N, D) unit pixel
/// embeddings, `scores` (N, C, M) their cosines to the prototypes, or only
/// those against each pixel's own class's prototypes (N, M;
/// summarize_scores' `own`, which is all the step reads), `class_logits`
/// (N, C) whose argmax is the prediction, `labels` (N, int64) in [0, C) or
/// the ignore index, `prototypes` (C, M, D) updated in place when
/// options.update_prototypes. Supplementary Algorithm 1 per class, as the
/// `backend::prototype<P>` kernels spell it: the labelled pixels are grouped
/// by class (stable), their own-class scores gathered, one segmented
/// Sinkhorn call assigns each class's pixels to its M prototypes, the hard
/// assignment gives the targets, and the pixels whose prediction equals the
/// label (published `mask = gt == pred`) move the prototype they chose
/// (Eq. 10). Only the C + 1 class offsets and a few counts are read on the
/// host. With options.gumbel the R x M Gumbel variates are drawn on the host
/// from *options.gen in pixel-group order, so both policies sample the same
/// prototypes for the same seed.
template <class T, class P>
basic_step_result<P> prototype_step(const tensor<T, P>& embeddings, const tensor<T, P>& scores,
                                    const tensor<T, P>& class_logits, const tensor<std::int64_t, P>& labels,
                                    tensor<T, P> prototypes, const step_options& o = {}) {
  using kernels = backend::prototype<P>;
  const detail::step_sizes sz = detail::check_step_inputs(embeddings, scores, class_logits, labels, prototypes, o);
  const std::int64_t N = sz.N, C = sz.C, M = sz.M, D = sz.D;
  if (N > 0) {
    backend::softmax<P>::check_labels(labels.data(), N, C, o.ignore_index,
                                      [labels, C, ignore = o.ignore_index](std::int64_t bad) {
                                        detail::bad_label("prototype_step", bad, labels.narrow0(bad, bad + 1).item(),
                                                          C, ignore);
                                      });
  }
  basic_step_result<P> res;
  res.targets = full<std::int64_t, P>(shape{N}, o.target_ignore_index);
  res.sampled = res.targets;
  if (N == 0) return res;
  auto order = tensor<std::int64_t, P>::empty({N});
  auto offsets = tensor<std::int64_t, P>::empty({C + 1});
  kernels::group_by_label(labels.data(), N, C, o.ignore_index, order.data(), offsets.data());
  const std::int64_t R = offsets.narrow0(C, C + 1).item();
  if (R == 0) return res;

  auto block = tensor<T, P>::empty({R, M});
  kernels::gather_own_scores(scores.data(), labels.data(), order.data(), R, sz.own_scores ? 0 : C, M, block.data());
  ot::sinkhorn_options so;
  so.iterations = o.sinkhorn_iterations;
  so.kappa = o.kappa;
  ot::detail::check_options(so, "segmented_sinkhorn");
  ot::detail::check_kappa_for<T>(so, "segmented_sinkhorn");
  // The offsets come from the grouping above: valid by construction.
  tensor<double, P> diag(shape{3});  // rounds, error, correct pixels: read once, at the end
  auto q = ot::detail::segmented_solve(block, offsets, tensor<T, P>::empty(block.shape()), so, "segmented_sinkhorn",
                                       diag.data());
  tensor<double, P> noise;
  if (o.gumbel && !o.gumbel_noise.empty()) {
    if (static_cast<std::int64_t>(o.gumbel_noise.size()) != R * M)
      ::protoseg::detail::fail<shape_error>("prototype_step: options.gumbel_noise has ", o.gumbel_noise.size(),
                                            " values, expected ", R, " labelled pixels x ", M, " prototypes = ", R * M);
    noise = tensor<double, P>::from_vector(o.gumbel_noise, {R, M});
  } else if (o.gumbel) {
    std::vector<double> g(static_cast<std::size_t>(R * M));
    for (auto& v : g) v = o.gen->gumbel();
    noise = tensor<double, P>::from_vector(g, {R, M});
  }
  auto index = tensor<std::int64_t, P>::empty({R});
  auto chosen = tensor<std::int64_t, P>::empty({R});
  kernels::harden(q.assignment.data(), o.gumbel ? noise.data() : nullptr, R, M, index.data(), chosen.data());
  kernels::scatter_targets(order.data(), labels.data(), index.data(), R, M, res.targets.data());
  if (o.gumbel) {
    res.sampled = full<std::int64_t, P>(shape{N}, o.target_ignore_index);
    kernels::scatter_targets(order.data(), labels.data(), chosen.data(), R, M, res.sampled.data());
  } else {
    res.sampled = res.targets;
  }

  auto keys = tensor<std::int64_t, P>::empty({R});
  kernels::correct_keys(class_logits.data(), labels.data(), order.data(), chosen.data(), R, C, M, keys.data(),
                        diag.data() + 2);
  if (o.update_prototypes)
    kernels::momentum_update(keys.data(), order.data(), R, embeddings.data(), D, C * M, static_cast<T>(o.gamma),
                             prototypes.data());
  const auto d = diag.to_vector();
  res.sinkhorn_iterations = static_cast<int>(d[0]);
  res.correct = static_cast<std::int64_t>(d[2]);
  return res;
}

}  // namespace protoseg::proto
