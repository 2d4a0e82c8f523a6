#pragma once
/// \file optim.cuh
/// cuda optimiser updates: AdamW as one Thrust pass over the parameter
/// (one work item per value, the cpu primitive's arithmetic in its order).

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cmath>
#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct adamw_fn {
  T* p;
  const T* g;
  T* m;
  T* v;
  T* vmax;
  T decay, b1, c1, b2, c2, bc2, eps, ns;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    m[i] = m[i] * b1 + g[i] * c1;
    v[i] = v[i] * b2 + g[i] * c2 * g[i];
    T second = v[i];
    if (vmax) {
      vmax[i] = vmax[i] > v[i] ? vmax[i] : v[i];
      second = vmax[i];
    }
    p[i] = p[i] * decay + m[i] * ns / (std::sqrt(second) / bc2 + eps);
  }
};
}  // namespace cuda_detail

template <>
struct optim<cuda> {
  /// One AdamW update of n values (see the cpu primitive).
  template <class T>
  static void adamw(T* p, const T* g, T* m, T* v, T* vmax, std::int64_t n, const adamw_scalars& s) {
    if (n <= 0) return;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(n),
                     cuda_detail::adamw_fn<T>{p, g, m, v, vmax, static_cast<T>(s.decay), static_cast<T>(s.beta1),
                                              static_cast<T>(s.one_minus_beta1), static_cast<T>(s.beta2),
                                              static_cast<T>(s.one_minus_beta2), static_cast<T>(s.bc2_sqrt),
                                              static_cast<T>(s.eps), static_cast<T>(s.neg_step_size)});
  }
};

}  // namespace protoseg::backend
