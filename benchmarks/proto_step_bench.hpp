#pragma once
// The prototype step that bench_models.cpp (cpu) and bench_cuda.cu (cuda)
// time, for one policy: random unit embeddings and prototypes, uniform
// labels (generator seed 0, made on the host, so both policies see the same
// values), and one step without backward, as the PyTorch peer's has none.

#include <protoseg/protoseg.hpp>

#include <cstdint>

namespace protoseg::bench {

template <class P>
struct proto_step_case {
  std::int64_t C, M, D, N;
  tensor<float, P> c;                // (N, D) unit embeddings
  tensor<float, P> prototypes;       // (C, M, D) unit prototypes
  tensor<std::int64_t, P> labels;    // (N) in [0, C)
  proto::step_options options;  // the published defaults: Gumbel sampling on, as the peer's step
  generator noise{1};            // the Gumbel variates

  /// N = 2 * 128 * 128 pixels, M = 10, D = 256.
  explicit proto_step_case(std::int64_t classes) : C(classes), M(10), D(256), N(2 * 128 * 128) {
    generator g(0);
    auto ch = randn<float>({N, D}, g);
    proto::detail::normalize_rows(ch);
    auto ph = randn<float>({C, M, D}, g);
    proto::detail::normalize_rows(ph.reshape({C * M, D}));
    auto lh = tensor<std::int64_t>::empty({N});
    for (std::int64_t i = 0; i < N; ++i) lh.data()[i] = static_cast<std::int64_t>(g.below(C));
    c = ch.template to<P>();
    prototypes = ph.template to<P>();
    labels = lh.template to<P>();
  }

  /// One step: full = false summarises the scores block by block (never
  /// held whole), full = true materialises the N x C*M scores (matmul,
  /// class_max, ppc_loss, ppd_loss) as training does. Returns the weighted
  /// PPC + PPD loss, a host value.
  float step(bool full) {
    options.gen = &noise;
    if (!full) {
      auto s = proto::summarize_scores(c, prototypes, labels);
      auto r = proto::prototype_step(c, s.own, s.class_logits, labels, prototypes, options);
      auto v = proto::summary_losses(s, r.targets, -1);
      return static_cast<float>(0.01 * v.ppc + 0.001 * v.ppd);
    }
    no_grad guard;
    const variable<float, P> emb(c, false);
    const variable<float, P> protos(prototypes.reshape({C * M, D}).clone(), false);
    auto scores = matmul(emb, protos, false, true);  // (N, C * M)
    auto seg = proto::detail::class_max(scores, M);  // class logits (N, C)
    auto r = proto::prototype_step(c, scores.value().reshape({N, C, M}), seg.value(), labels, prototypes, options);
    auto loss = ppc_loss(scores, r.targets, {.ignore_index = -1}) * 0.01f +
                ppd_loss(scores, r.targets, {.ignore_index = -1}) * 0.001f;
    return loss.value().item();
  }
};

}  // namespace protoseg::bench
