#pragma once
/// \file prototype.hpp
/// ProtoSeg's prototype losses (Zhou et al., CVPR 2022, Sec. 3.3):
/// the pixel-prototype contrastive loss PPC (Eq. 12) and the pixel-prototype
/// distance loss PPD (Eq. 13), on the (N, C * M) cosine scores of every
/// pixel against every prototype and the prototype targets
/// (class * M + assigned prototype, or the ignore label).
///
/// Any policy: the target check and PPD are backend primitives
/// (backend::softmax<P>::check_labels, backend::prototype<P>::ppd_*);
/// PPC is cross_entropy.

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/loss/cross_entropy.hpp"
#include "protoseg/ops/arithmetic.hpp"

namespace protoseg {

/// Options of `ppc_loss`.
struct ppc_options {
  /// Targets equal to this value contribute nothing (the published code's
  /// ignore label, 255).
  std::int64_t ignore_index = 255;
  /// Temperature tau of Eq. 12: the scores are divided by it. The paper
  /// writes exp(s / tau) with tau = 0.1; the published code feeds the raw
  /// cosine scores to cross-entropy, i.e. tau = 1 (the default here).
  double temperature = 1.0;
};

/// Options of `ppd_loss`.
struct ppd_options {
  std::int64_t ignore_index = 255;
};

namespace loss_detail {

template <class T, class P>
void check_prototype_inputs(const variable<T, P>& logits, const tensor<std::int64_t, P>& targets,
                            std::int64_t ignore_index, const char* who) {
  if (!logits.defined()) detail::fail<value_error>(who, ": proto_logits is undefined");
  if (logits.rank() != 2 || logits.shape()[1] < 1)
    detail::fail<shape_error>(who, ": proto_logits must be (N, C * M) with C * M >= 1, got ", logits.shape());
  targets.require_defined(who);
  if (!(targets.shape() == shape{logits.shape()[0]}))
    detail::fail<shape_error>(who, ": proto_targets have shape ", targets.shape(), ", expected (", logits.shape()[0],
                              ",) for proto_logits of shape ", logits.shape());
  const std::int64_t K = logits.shape()[1];
  if (targets.numel() > 0)
    backend::softmax<P>::check_labels(targets.data(), targets.numel(), K, ignore_index,
                                      [targets, K, who, ignore_index](std::int64_t bad) {
                                        detail::fail<value_error>(who, ": proto_targets[", bad, "] is ",
                                                                  targets.narrow0(bad, bad + 1).item(),
                                                                  ", expected a prototype id in [0, ", K,
                                                                  ") or the ignore index ", ignore_index);
                                      });
}

template <class T, class P>
struct ppd_fn {
  static constexpr const char* name = "ppd_loss";
  shape in;
  tensor<std::int64_t, P> targets;
  tensor<T, P> picked;  // the target score of every pixel (unused where ignored)
  std::int64_t ignore_index;
  tensor<double, P> acc;  // the forward's sum and count (the count scales the gradient)
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto gx = zeros<T, P>(in);
    add_into(g, gx);
    return {gx};
  }
  // Adds the gradient, nonzero only at each pixel's target, into gx.
  void add_into(const tensor<T, P>& g, tensor<T, P>& gx) {
    const std::int64_t N = in[0], K = in[1];
    if (N == 0) return;
    backend::prototype<P>::ppd_backward(targets.data(), picked.data(), N, K, ignore_index, g.data(), acc.data(),
                                        gx.data());
  }
};

}  // namespace loss_detail

/// PPC (Eq. 12, published `PPC`): cross-entropy of the prototype scores
/// `proto_logits` (N, C * M), divided by options.temperature, against the
/// prototype targets (N, int64; class * M + prototype index, or the ignore
/// index), averaged over the non-ignored pixels. 0 when all are ignored.
template <class T, class P>
variable<T, P> ppc_loss(const variable<T, P>& proto_logits, const tensor<std::int64_t, P>& proto_targets,
                        const ppc_options& opt = {}) {
  loss_detail::check_prototype_inputs(proto_logits, proto_targets, opt.ignore_index, "ppc_loss");
  if (!(opt.temperature > 0) || !std::isfinite(opt.temperature))
    detail::fail<value_error>("ppc_loss: temperature is ", opt.temperature, ", expected a finite value > 0");
  cross_entropy_options<T, P> ce;
  ce.ignore_index = opt.ignore_index;
  if (opt.temperature == 1.0) return cross_entropy(proto_logits, proto_targets, ce);
  return cross_entropy(proto_logits / static_cast<T>(opt.temperature), proto_targets, ce);
}

/// PPD (Eq. 13, published `PPD`): mean over the non-ignored pixels of
/// (1 - s_n)^2, where s_n is the pixel's score against its assigned
/// prototype (the cosine, since embeddings and prototypes are unit vectors).
/// 0 with zero gradient when every pixel is ignored (PyTorch gives NaN).
template <class T, class P>
variable<T, P> ppd_loss(const variable<T, P>& proto_logits, const tensor<std::int64_t, P>& proto_targets,
                        const ppd_options& opt = {}) {
  loss_detail::check_prototype_inputs(proto_logits, proto_targets, opt.ignore_index, "ppd_loss");
  const std::int64_t N = proto_logits.shape()[0], K = proto_logits.shape()[1];
  auto picked = zeros<T, P>({N});
  const T* x = proto_logits.value().data();
  const std::int64_t* t = proto_targets.data();
  tensor<double, P> acc(shape{2});  // sum and count, on the policy's memory
  if (N > 0) backend::prototype<P>::ppd_forward(x, t, N, K, opt.ignore_index, picked.data(), acc.data());
  auto loss = tensor<T, P>::empty(shape{});
  backend::executor<P>::run(1, backend::kernels::ppd_mean_fn<T>{acc.data(), loss.data()});
  return detail::record(loss,
                        loss_detail::ppd_fn<T, P>{proto_logits.shape(), proto_targets, picked, opt.ignore_index, acc},
                        proto_logits);
}

}  // namespace protoseg
