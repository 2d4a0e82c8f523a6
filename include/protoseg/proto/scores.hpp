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

#include "protoseg/backend/cpu/all.hpp"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/backend/proto_primitives.hpp"
#include "protoseg/error.hpp"
#include "protoseg/ot/device.hpp"
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
/// against `prototypes` (C, M, D) without materialising them. `labels` (N,
/// int64; class ids or options.ignore_index) is optional: without it `own`
/// stays undefined. The cpu policy computes S in blocks of rows that stay in
/// cache (the prototypes packed once for Eigen's kernel, reordered so that a
/// class's M scores are C apart and the maxima are taken as vectors) and
/// reduces each block as it is made. Equal to max(reshape(E P^T, {N, C, M}),
/// 2), the log-sum-exp of E P^T / temperature, and the gather of S, up to
/// float rounding (the summation order of the products differs).
template <class T>
score_summary<T> summarize_scores(const tensor<T>& embeddings, const tensor<T>& prototypes,
                                  const tensor<std::int64_t>& labels = {}, const summary_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "summarize_scores: T must be float or double");
  const auto sz = detail::check_summary_inputs(embeddings, prototypes, labels, o);
  const std::int64_t N = sz.N, C = sz.C, M = sz.M, D = sz.D, K = C * M;
  const std::int64_t* lab = labels.defined() ? labels.data() : nullptr;
  if (lab)
    for (std::int64_t n = 0; n < N; ++n)
      if (lab[n] != o.ignore_index && (lab[n] < 0 || lab[n] >= C)) detail::bad_label("summarize_scores", n, lab[n], C, o.ignore_index);

  score_summary<T> out;
  out.M = M;
  out.temperature = o.temperature;
  out.class_logits = tensor<T>::empty({N, C});
  out.lse = tensor<T>::empty({N});
  if (lab) out.own = zeros<T>({N, M});
  if (N == 0) return out;

  // Prototype-major order: row m * C + c is prototype m of class c, so that
  // class c's scores are C apart and its maximum is an elementwise max of M
  // contiguous rows of C.
  std::vector<T> reordered(static_cast<std::size_t>(K * D));
  for (std::int64_t c = 0; c < C; ++c)
    for (std::int64_t m = 0; m < M; ++m)
      std::copy_n(prototypes.data() + (c * M + m) * D, D, reordered.data() + (m * C + c) * D);

  T* logits = out.class_logits.data();
  T* lse = out.lse.data();
  T* own = lab ? out.own.data() : nullptr;
  const T inv_t = static_cast<T>(1.0 / o.temperature);
  const std::int64_t ignore = o.ignore_index;
  using array = Eigen::Array<T, Eigen::Dynamic, 1>;
  backend::gemm<cpu>::nt_row_blocks(N, K, D, embeddings.data(), reordered.data(),
                                    [&](std::int64_t r0, std::int64_t rows, const T* s) {
    for (std::int64_t j = 0; j < rows; ++j) {
      const std::int64_t n = r0 + j;
      const T* col = s + j * K;
      Eigen::Map<array> best(logits + n * C, C);
      best = Eigen::Map<const array>(col, C);
      for (std::int64_t m = 1; m < M; ++m) best = best.max(Eigen::Map<const array>(col + m * C, C));
      const T mx = best.maxCoeff() * inv_t;
      lse[n] = mx + std::log(((Eigen::Map<const array>(col, K) * inv_t) - mx).exp().sum());
      if (own && lab[n] != ignore)
        for (std::int64_t m = 0; m < M; ++m) own[n * M + m] = col[m * C + lab[n]];
    }
  });
  return out;
}

/// summarize_scores on a device policy: the scores are one GEMM on the
/// device, reduced per pixel by `backend::prototype<P>::summarize_rows`
/// (the same values as the cpu policy up to float rounding). The device
/// holds the N x C*M scores while it reduces them.
template <class T, ot::device_policy P>
score_summary<T, P> summarize_scores(const tensor<T, P>& embeddings, const tensor<T, P>& prototypes,
                                     const tensor<std::int64_t, P>& labels = {}, const summary_options& o = {}) {
  const auto sz = detail::check_summary_inputs(embeddings, prototypes, labels, o);
  const std::int64_t N = sz.N, C = sz.C, M = sz.M, D = sz.D;
  if (labels.defined() && N > 0) {
    const std::int64_t bad = backend::softmax<P>::find_bad_label(labels.data(), N, C, o.ignore_index);
    if (bad >= 0) detail::bad_label("summarize_scores", bad, labels.narrow0(bad, bad + 1).item(), C, o.ignore_index);
  }
  score_summary<T, P> out;
  out.M = M;
  out.temperature = o.temperature;
  out.class_logits = tensor<T, P>::empty({N, C});
  out.lse = tensor<T, P>::empty({N});
  if (labels.defined()) out.own = zeros<T, P>({N, M});
  if (N == 0) return out;
  const auto scores = matmul(embeddings, prototypes.reshape({C * M, D}), false, true);
  backend::prototype<P>::summarize_rows(scores.data(), labels.defined() ? labels.data() : nullptr, N, C, M,
                                        o.ignore_index, static_cast<T>(1.0 / o.temperature), out.class_logits.data(),
                                        out.lse.data(), labels.defined() ? out.own.data() : nullptr);
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
