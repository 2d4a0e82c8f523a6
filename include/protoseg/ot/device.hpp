#pragma once
/// \file device.hpp
/// Deprecated: the clustering API is one set of templates over the policy
/// (ot/sinkhorn.hpp, ot/segmented.hpp), and this header only forwards there.
/// It and `device_policy` will be removed in the release after 0.1.

#include <type_traits>

#include "protoseg/ot/segmented.hpp"
#include "protoseg/ot/sinkhorn.hpp"

namespace protoseg::ot {

/// Deprecated: a policy other than cpu. Nothing in protoseg tests it any more.
template <class P>
concept device_policy = !std::is_same_v<P, cpu>;

}  // namespace protoseg::ot
