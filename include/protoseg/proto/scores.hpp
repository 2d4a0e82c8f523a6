#pragma once
/// \file scores.hpp
/// The prototype scores S = E P^T (N x C*M) summarised without holding them:
/// the class logits (max over each class's M prototypes), the log-sum-exp
/// over all C*M scores (PPC's normaliser) and every labelled pixel's scores
/// against its own class's prototypes (the Sinkhorn's input, and PPC's and
/// PPD's target scores). That is everything the prototype step and the PPC /
/// PPD values read, in O(N (C + M)) memory instead of O(N C M): with 847
/// classes and N = 32768 the scores are 1.1 GB, their summary 4 MB.
///
/// Without gradients only: training needs S itself for the backward of the
/// losses (prototype_head keeps it there). Typical use, a step with no
/// backward (benchmarks/bench_models.cpp `proto_step`):
///
///     auto s = proto::summarize_scores(emb, prototypes, labels);
///     auto r = proto::prototype_step(emb, s.own, s.class_logits, labels, prototypes, so);
///     auto v = proto::summary_losses(s, r.targets, so.target_ignore_index);

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "protoseg/backend/default.hpp"
#include "protoseg/error.hpp"
#include "protoseg/proto/step.hpp"
#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::proto {

/// Options of summarize_scores.
struct summary_options {
  /// Labels equal to this get no own-class scores (their row of `own` is 0).
  std::int64_t ignore_index = 255;
  /// PPC's temperature: `lse` is the log-sum-exp of S / temperature.
  double temperature = 1.0;
};

/// The summary of the scores S = E P^T of N pixels against C x M prototypes.
template <class T, class P = cpu>
struct score_summary {
  tensor<T, P> class_logits;  ///< (N, C): max over each class's M scores (what class_max gives)
  tensor<T, P> lse;           ///< (N): log sum_k exp(S[n, k] / temperature) over all C * M scores
  tensor<T, P> own;           ///< (N, M): S[n, label * M + m]; 0 for ignored pixels; undefined without labels
  std::int64_t M = 0;         ///< prototypes per class
  double temperature = 1.0;   ///< the temperature `lse` was taken at
};

/// PPC and PPD values from a summary and the prototype targets.
struct summary_loss_values {
  double ppc = 0;           ///< mean over the targeted pixels of lse - S[n, target] / temperature
  double ppd = 0;           ///< mean over the targeted pixels of (1 - S[n, target])^2
  std::int64_t pixels = 0;  ///< pixels with a target
};

namespace detail {

template <class T, class P>
embedding_sizes check_summary_inputs(const tensor<T, P>& embeddings, const tensor<T, P>& prototypes,
                                     const tensor<std::int64_t, P>& labels, const summary_options& o) {
  constexpr const char* who = "summarize_scores";
  const auto sz = check_embeddings_and_prototypes(who, embeddings, prototypes, true);
  if (labels.defined() && !(labels.shape() == shape{sz.N}))
    ::protoseg::detail::fail<shape_error>(who, ": labels must be (", sz.N, ",), got ", labels.shape());
  if (!(o.temperature > 0) || !std::isfinite(o.temperature))
    ::protoseg::detail::fail<value_error>(who, ": options.temperature is ", o.temperature,
                                          ", expected a finite value > 0");
  return sz;
}

}  // namespace detail

/// Summarises the scores of the unit pixel embeddings `embeddings` (N, D)
/// against `prototypes` (C, M, D) without materialising them, on any policy
/// (`backend::prototype<P>::summarize`). `labels` (N, int64; class ids or
/// options.ignore_index) is optional: without it `own` stays undefined. The
/// cpu policy computes S in blocks of rows that stay in cache and reduces
/// each block as it is made; the cuda policy makes S by one GEMM on the
/// device and reduces it per pixel. Equal to max(reshape(E P^T, {N, C, M}),
/// 2), the log-sum-exp of E P^T / temperature, and the gather of S, up to
/// float rounding (the summation order of the products differs).
template <class T, class P>
score_summary<T, P> summarize_scores(const tensor<T, P>& embeddings, const tensor<T, P>& prototypes,
                                     const tensor<std::int64_t, P>& labels = {}, const summary_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "summarize_scores: T must be float or double");
  const auto sz = detail::check_summary_inputs(embeddings, prototypes, labels, o);
  const std::int64_t N = sz.N, C = sz.C, M = sz.M, D = sz.D;
  if (labels.defined() && N > 0) {
    backend::softmax<P>::check_labels(labels.data(), N, C, o.ignore_index,
                                      [labels, C, ignore = o.ignore_index](std::int64_t bad) {
                                        detail::bad_label("summarize_scores", bad,
                                                          labels.narrow0(bad, bad + 1).item(), C, ignore);
                                      });
  }
  score_summary<T, P> out;
  out.M = M;
  out.temperature = o.temperature;
  out.class_logits = tensor<T, P>::empty({N, C});
  out.lse = tensor<T, P>::empty({N});
  if (labels.defined()) out.own = zeros<T, P>({N, M});
  if (N == 0) return out;
  backend::prototype<P>::summarize(embeddings.data(), prototypes.data(), labels.defined() ? labels.data() : nullptr,
                                   N, C, M, D, o.ignore_index, static_cast<T>(1.0 / o.temperature),
                                   out.class_logits.data(), out.lse.data(),
                                   labels.defined() ? out.own.data() : nullptr);
  return out;
}

/// PPC and PPD values (as ppc_loss and ppd_loss give them on the full
/// scores, without gradients) from a summary with `own` scores and the
/// prototype targets (N, int64; class * M + prototype, or target_ignore).
/// Pixels whose label was ignored in the summary must carry target_ignore.
/// Device summaries are read on the host (N * (M + 2) numbers).
template <class T, class P>
summary_loss_values summary_losses(const score_summary<T, P>& s, const tensor<std::int64_t, P>& targets,
                                   std::int64_t target_ignore) {
  constexpr const char* who = "summary_losses";
  if (!s.own.defined() || !s.lse.defined())
    ::protoseg::detail::fail<value_error>(who, ": the summary has no own-class scores (summarize_scores without labels)");
  const std::int64_t N = s.lse.numel(), M = s.M;
  if (!targets.defined() || !(targets.shape() == shape{N}))
    ::protoseg::detail::fail<shape_error>(who, ": targets must be (", N, ",), got ",
                                          targets.defined() ? targets.shape().str() : std::string("undefined"));
  const auto lse = s.lse.template to<cpu>(), own = s.own.template to<cpu>();
  const auto tg = targets.template to<cpu>();
  const std::int64_t* t = tg.data();
  const std::int64_t C = s.class_logits.shape()[1];
  summary_loss_values v;
  double ppc = 0, ppd = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    if (t[n] == target_ignore) continue;
    if (t[n] < 0 || t[n] >= C * M)
      ::protoseg::detail::fail<value_error>(who, ": targets[", n, "] is ", t[n], ", expected a prototype id in [0, ",
                                            C * M, ") or ", target_ignore);
    const double score = own.data()[n * M + t[n] % M];
    ppc += double(lse.data()[n]) - score / s.temperature;
    ppd += (1.0 - score) * (1.0 - score);
    ++v.pixels;
  }
  if (v.pixels > 0) {
    v.ppc = ppc / static_cast<double>(v.pixels);
    v.ppd = ppd / static_cast<double>(v.pixels);
  }
  return v;
}

}  // namespace protoseg::proto
