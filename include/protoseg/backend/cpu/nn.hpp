#pragma once
/// \file nn.hpp
/// Every layer primitive of the cpu backend (conv, norm, resize, pool).

#include "protoseg/backend/cpu/conv.hpp"
#include "protoseg/backend/cpu/norm.hpp"
#include "protoseg/backend/cpu/pool.hpp"
#include "protoseg/backend/cpu/resize.hpp"
