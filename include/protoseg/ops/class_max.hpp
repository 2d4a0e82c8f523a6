#pragma once
/// \file class_max.hpp
/// `class_max`: the class logits of ProtoSeg (Eq. 4, the max over each
/// class's M prototype scores), with its sparse backward, which can be added
/// straight into the gradient the PPC / PPD losses give the same scores.

#include <cstdint>
#include <string>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg {

namespace ops_detail {

template <class T, class P>
struct class_max_fn {
  static constexpr const char* name = "class_max";
  shape in;                      // (N, C * M)
  tensor<std::int64_t, P> idx;   // (N, C): the winning prototype of each class
  std::int64_t M;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto out = tensor<T, P>::empty(in);
    backend::reduction<P>::scatter_axis(g.data(), idx.data(), out.data(), in.numel() / M, M, 1);
    return {out};
  }
  void add_into(const tensor<T, P>& g, tensor<T, P>& slot) {
    backend::reduction<P>::scatter_axis_add(g.data(), idx.data(), slot.data(), in.numel() / M, M, 1);
  }
};

}  // namespace ops_detail

/// Class logits from the prototype scores: scores (N, C * M) -> the maximum
/// over each class's M prototypes (N, C); the gradient goes to the first
/// maximal prototype. The same as max(reshape(scores, {N, C, M}), 2), but
/// recorded on the scores themselves, so that its sparse gradient is added
/// into the one the PPC / PPD losses give the scores (one N x C*M buffer).
template <class T, class P>
variable<T, P> class_max(const variable<T, P>& scores, std::int64_t M) {
  if (!scores.defined() || scores.rank() != 2 || M < 1 || scores.shape()[1] % M != 0)
    ::protoseg::detail::fail<shape_error>("class_max: scores must be (N, C * M) with M = ", M, ", got ",
                                          scores.defined() ? scores.shape().str() : std::string("undefined"));
  const std::int64_t N = scores.shape()[0], C = scores.shape()[1] / M;
  auto r = max_with_indices(scores.value().reshape({N, C, M}), 2);
  return ::protoseg::detail::record(r.values, ops_detail::class_max_fn<T, P>{scores.shape(), r.indices, M}, scores);
}

}  // namespace protoseg
