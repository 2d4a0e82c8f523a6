#pragma once
/// \file all.hpp
/// Every primitive of the cpu (Eigen / OpenMP) backend.

#include "protoseg/backend/cpu/copy.hpp"
#include "protoseg/backend/cpu/elementwise.hpp"
#include "protoseg/backend/cpu/executor.hpp"
#include "protoseg/backend/cpu/gemm.hpp"
#include "protoseg/backend/cpu/nn.hpp"
#include "protoseg/backend/cpu/optim.hpp"
#include "protoseg/backend/cpu/proto.hpp"
#include "protoseg/backend/cpu/sinkhorn.hpp"
#include "protoseg/backend/cpu/reduction.hpp"
#include "protoseg/backend/cpu/softmax.hpp"
#include "protoseg/backend/cpu/traits.hpp"
#include "protoseg/backend/parallel.hpp"
