#pragma once
/// \file parallel.hpp
/// OpenMP helpers for host loops (the cpu backend, and host-side code of
/// every policy): loops run in parallel only when the work is large enough
/// to pay for the threads. No Eigen here.

#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace protoseg {

/// Number of threads the cpu backend uses (OpenMP's current setting).
inline int num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets the number of threads of the cpu backend (and Eigen's GEMM).
inline void set_num_threads(int n) {
#if defined(_OPENMP)
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

namespace backend::cpu_detail {
/// Below this many elements a loop stays on one thread.
inline constexpr std::int64_t parallel_grain = 1 << 16;
}  // namespace backend::cpu_detail

}  // namespace protoseg

#define PROTOSEG_PRAGMA(x) _Pragma(#x)
/// `#pragma omp parallel for` when the loop has more than `work` elements.
#if defined(_OPENMP)
#define PROTOSEG_OMP_FOR(work) \
  PROTOSEG_PRAGMA(omp parallel for schedule(static) if ((work) > ::protoseg::backend::cpu_detail::parallel_grain))
#else
#define PROTOSEG_OMP_FOR(work)
#endif
