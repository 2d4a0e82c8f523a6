#pragma once
/// \file eigen.hpp
/// Eigen for the cpu backend. GCC 12 reports "'__Y' is used uninitialized"
/// inside its own AVX-512 intrinsics (avx512fintrin.h) when it inlines
/// Eigen's vectorised exp, a false positive; the warning is attributed to
/// the intrinsic headers, so it is silenced for them here, where they are
/// first read (when Eigen was included before protoseg, it may still show).

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
