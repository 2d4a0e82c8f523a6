#pragma once
/// \file config.hpp
/// Version numbers and the PROTOSEG_* portability macros.

#define PROTOSEG_VERSION_MAJOR 0
#define PROTOSEG_VERSION_MINOR 1
#define PROTOSEG_VERSION_PATCH 0
#define PROTOSEG_VERSION_STRING "0.1.0"

// Marks functions that must be callable from both host and device code.
// Plain `inline` when the compiler is not nvcc (as cute/config.hpp does).
#if defined(__CUDACC__)
#define PROTOSEG_HOST_DEVICE __host__ __device__ inline
#else
#define PROTOSEG_HOST_DEVICE inline
#endif

// Guard for internal headers: they refuse to be included on their own.
#define PROTOSEG_INTERNAL_HEADER_OK 1

namespace protoseg {

/// The library version as numbers, for run-time checks by consumers.
struct version_info {
  int major, minor, patch;
};
inline constexpr version_info version{PROTOSEG_VERSION_MAJOR, PROTOSEG_VERSION_MINOR,
                                      PROTOSEG_VERSION_PATCH};

/// Largest tensor rank supported (N, C, D, H, W).
inline constexpr int max_rank = 5;

}  // namespace protoseg
