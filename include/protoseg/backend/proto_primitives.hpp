#pragma once
/// \file proto_primitives.hpp
/// Primary template of the prototype-step primitive (grouping pixels by
/// class, gathering their scores, hard assignment, the momentum update of the
/// prototypes, PPD). The cpu policy runs that code inline in
/// protoseg/proto/step.hpp and protoseg/loss/prototype.hpp; device policies
/// specialise `prototype` in their own folder (`backend/cuda/proto.cuh`).

#include "protoseg/backend/policy.hpp"

namespace protoseg::backend {

template <class Policy>
struct prototype {
  static_assert(::protoseg::detail::always_false<Policy>,
                "protoseg: primitive 'prototype' has no specialisation for this policy; include the backend header "
                "(<protoseg/cuda.hpp> for the cuda policy)");
};

}  // namespace protoseg::backend
