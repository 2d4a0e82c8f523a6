#pragma once
/// \file fwd.hpp
/// Forward declarations of the main protoseg types.

#include <cstdint>

namespace protoseg {
struct cpu;
struct cuda;
template <class Policy>
struct backend_traits;
class shape;
class generator;
template <class T, class Policy>
class tensor;
template <class T, class Policy>
class variable;
class no_grad;
class error;
class shape_error;
class value_error;
class autograd_error;
class io_error;
}  // namespace protoseg
