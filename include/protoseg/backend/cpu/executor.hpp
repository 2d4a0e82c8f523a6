#pragma once
/// \file executor.hpp
/// `executor<cpu>`: runs a per-item body (a host/device functor of
/// backend/kernels/) over [0, n) as an OpenMP loop, on one thread when the
/// work is below the parallel grain. Items must be independent.

#include <cstdint>
#include <functional>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct executor<cpu> {
  /// f(i) for i in [0, n); `work` (elements touched, default n) decides
  /// whether the loop is worth the threads.
  template <class F>
  static void run(std::int64_t n, const F& f, std::int64_t work = -1) {
    if (work < 0) work = n;
    PROTOSEG_OMP_FOR(work)
    for (std::int64_t i = 0; i < n; ++i) f(i);
  }
  /// An input check: report(the first i in [0, n) where bad(i) is true), if
  /// any; report throws the caller's message. Here at once; the cuda policy
  /// may call it after its next synchronisation (cuda_deferred_checks), so
  /// report must own (copy) the tensors it reads.
  template <class Bad>
  static void check(std::int64_t n, const Bad& bad, const std::function<void(std::int64_t)>& report) {
    for (std::int64_t i = 0; i < n; ++i)
      if (bad(i)) return report(i);
  }
};

}  // namespace protoseg::backend
