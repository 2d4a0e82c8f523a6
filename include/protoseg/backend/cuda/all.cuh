#pragma once
/// \file all.cuh
/// Every primitive of the cuda (Thrust / CUDA) backend. No Eigen here.

#include "protoseg/backend/cuda/copy.cuh"
#include "protoseg/backend/cuda/elementwise.cuh"
#include "protoseg/backend/cuda/executor.cuh"
#include "protoseg/backend/cuda/gemm.cuh"
#include "protoseg/backend/cuda/nn.cuh"
#include "protoseg/backend/cuda/optim.cuh"
#include "protoseg/backend/cuda/reduction.cuh"
#include "protoseg/backend/cuda/sinkhorn.cuh"
#include "protoseg/backend/cuda/softmax.cuh"
#include "protoseg/backend/cuda/traits.cuh"
