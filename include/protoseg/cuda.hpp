#pragma once
/// \file cuda.hpp
/// Adds the `cuda` policy to protoseg: include it after (or instead of)
/// <protoseg/protoseg.hpp> in a translation unit compiled with nvcc (GPU), or
/// with a host compiler and THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP
/// (Thrust on CPU threads, for testing without a GPU). Link the CMake target
/// `protoseg::cuda` (nvcc) or `protoseg::cuda_omp` (host compiler).

#include "protoseg/backend/cuda/all.cuh"
#include "protoseg/protoseg.hpp"
