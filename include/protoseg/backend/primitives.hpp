#pragma once
/// \file primitives.hpp
/// Primary templates of the backend primitives. Each backend specialises
/// them in its own folder (`backend/cpu/*.hpp`, `backend/cuda/*.cuh`); using a
/// primitive with a policy that has no specialisation fails with a readable
/// static_assert instead of a page of template errors.

#include <cstdint>

#include "protoseg/backend/policy.hpp"

namespace protoseg::backend {

/// Geometry of a broadcasting binary operation, padded to rank 5 so that the
/// same plain struct can be passed to a device kernel.
struct broadcast_geometry {
  int rank = 0;
  std::int64_t out_shape[5] = {1, 1, 1, 1, 1};
  std::int64_t a_stride[5] = {0, 0, 0, 0, 0};
  std::int64_t b_stride[5] = {0, 0, 0, 0, 0};
  std::int64_t numel = 0;
};

#define PROTOSEG_PRIMARY_PRIMITIVE(NAME)                                                   \
  template <class Policy>                                                                  \
  struct NAME {                                                                            \
    static_assert(::protoseg::detail::always_false<Policy>,                                \
                  "protoseg: primitive '" #NAME                                            \
                  "' has no specialisation for this policy; include the backend header "   \
                  "(<protoseg/backend/cpu/" #NAME ".hpp> or the cuda one)");               \
  };

/// fill, iota, unary map, same-shape and broadcasting binary zip.
PROTOSEG_PRIMARY_PRIMITIVE(elementwise)
/// reductions along one axis of an (outer, n, inner) view; argmax.
PROTOSEG_PRIMARY_PRIMITIVE(reduction)
/// batched strided matrix products.
PROTOSEG_PRIMARY_PRIMITIVE(gemm)
/// permutations and strided block copies (slice, concat).
PROTOSEG_PRIMARY_PRIMITIVE(copy)
/// fused softmax / log-softmax along an axis and the cross-entropy gather.
PROTOSEG_PRIMARY_PRIMITIVE(softmax)
/// segmented Sinkhorn-Knopp (every class's problem in one launch); the cpu
/// solvers live in protoseg/ot/, this primitive serves the device policies.
PROTOSEG_PRIMARY_PRIMITIVE(sinkhorn)

#undef PROTOSEG_PRIMARY_PRIMITIVE

}  // namespace protoseg::backend
