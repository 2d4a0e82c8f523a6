#pragma once
/// \file default.hpp
/// What shared headers include to reach the backends: the primitive
/// declarations and the cpu backend, the default policy, which is always
/// available (as Thrust's headers reach every configured system through its
/// dispatch headers). The cuda backend joins through <protoseg/cuda.hpp>.
/// Code above `backend/` includes this, never a file of `backend/cpu/`.

#include "protoseg/backend/cpu/all.hpp"
#include "protoseg/backend/functors.hpp"
#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/policy.hpp"
#include "protoseg/backend/primitives.hpp"
