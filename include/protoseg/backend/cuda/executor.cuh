#pragma once
/// \file executor.cuh
/// `executor<cuda>`: runs a per-item body (a host/device functor of
/// backend/kernels/) over [0, n) with thrust::for_each, one work item each.

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cstdint>
#include <functional>
#include <utility>

#include "protoseg/backend/cuda/device_sum.cuh"
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
  /// As executor<cpu>::check: the first i with bad(i) is found on the device
  /// (chunks, then the first chunk that found one) into a check slot; report
  /// runs at once (one sync) or, under cuda_deferred_checks, after the next
  /// synchronisation.
  template <class Bad>
  static void check(std::int64_t n, const Bad& bad, std::function<void(std::int64_t)> report) {
    if (n <= 0) return;
    cuda_detail::device_check(
        [&](std::int64_t* slot) {
          const std::int64_t chunks = (n + cuda_detail::sum_chunk - 1) / cuda_detail::sum_chunk;
          cuda_detail::scratch<std::int64_t> part(chunks);
          const thrust::counting_iterator<std::int64_t> first(0);
          thrust::for_each(cuda_detail::exec(), first, first + chunks,
                           cuda_detail::first_bad_chunk_fn<Bad>{bad, n, part.get()});
          thrust::for_each(cuda_detail::exec(), first, first + 1,
                           cuda_detail::first_of_chunks_fn{part.get(), chunks, slot});
        },
        std::move(report));
  }
};

}  // namespace protoseg::backend
