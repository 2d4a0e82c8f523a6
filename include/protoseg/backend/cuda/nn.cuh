#pragma once
/// \file nn.cuh
/// Every layer primitive of the cuda backend (conv, norm, resize, pool) and
/// the prototype step.

#include "protoseg/backend/cuda/conv.cuh"
#include "protoseg/backend/cuda/norm.cuh"
#include "protoseg/backend/cuda/pool.cuh"
#include "protoseg/backend/cuda/proto.cuh"
#include "protoseg/backend/cuda/resize.cuh"
