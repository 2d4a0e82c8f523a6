#pragma once
/// \file module_list.hpp
/// Deprecated: `module_list` is a generic container and lives in
/// <protoseg/nn/module_list.hpp> as `nn::module_list`. This alias and header
/// will be removed in the release after 0.1.

#include "protoseg/nn/module_list.hpp"

namespace protoseg::models {

template <class T, class P = cpu>
using module_list [[deprecated("use protoseg::nn::module_list")]] = nn::module_list<T, P>;

}  // namespace protoseg::models
