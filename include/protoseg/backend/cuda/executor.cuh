#pragma once
/// \file executor.cuh
/// `executor<cuda>`: runs a per-item body (a host/device functor of
/// backend/kernels/) over [0, n) with thrust::for_each, one work item each.

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct executor<cuda> {
  /// f(i) for i in [0, n); `work` is the cpu executor's hint (unused here).
  template <class F>
  static void run(std::int64_t n, const F& f, std::int64_t /*work*/ = -1) {
    if (n <= 0) return;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(n), f);
  }
};

}  // namespace protoseg::backend
