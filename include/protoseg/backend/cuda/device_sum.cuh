#pragma once
/// \file device_sum.cuh
/// Sums that stay on the device: two passes of thrust::for_each (partial sums
/// over fixed chunks, then one item adding the partials in order and handing
/// the result to a finishing functor that writes device memory). No value
/// comes back to the host, so nothing waits; the order of the additions is
/// fixed, so the result is the same run after run. The Thrust reference for
/// every policy; a CUB block reduction can replace the first pass on the GPU.

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cstdint>

#include "protoseg/backend/cuda/context.cuh"
#include "protoseg/config.hpp"

namespace protoseg::backend::cuda_detail {

/// Two sums carried together (a loss and its weight, a sum and a count).
struct double2_sum {
  double a = 0, b = 0;
};

/// Items per partial sum.
inline constexpr std::int64_t sum_chunk = 2048;

template <class F>
struct pair_partial_fn {
  F f;  // f(i) -> double2_sum
  std::int64_t count;
  double* part;  // 2 per chunk
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t c) const {
    const std::int64_t i0 = c * sum_chunk, i1 = i0 + sum_chunk < count ? i0 + sum_chunk : count;
    double a = 0, b = 0;
    for (std::int64_t i = i0; i < i1; ++i) {
      const double2_sum v = f(i);
      a += v.a;
      b += v.b;
    }
    part[2 * c] = a;
    part[2 * c + 1] = b;
  }
};
template <class Finish>
struct pair_final_fn {
  const double* part;
  std::int64_t chunks;
  Finish finish;  // finish(a, b) writes device memory
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t) const {
    double a = 0, b = 0;
    for (std::int64_t c = 0; c < chunks; ++c) {
      a += part[2 * c];
      b += part[2 * c + 1];
    }
    finish(a, b);
  }
};

/// part[c] = the first i of chunk c with bad(i), or -1.
template <class Bad>
struct first_bad_chunk_fn {
  Bad bad;
  std::int64_t count;
  std::int64_t* part;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t c) const {
    const std::int64_t j0 = c * sum_chunk, j1 = j0 + sum_chunk < count ? j0 + sum_chunk : count;
    std::int64_t found = -1;
    for (std::int64_t j = j0; j < j1 && found < 0; ++j)
      if (bad(j)) found = j;
    part[c] = found;
  }
};
/// *out = the first chunk result that is not -1, or -1.
struct first_of_chunks_fn {
  const std::int64_t* part;
  std::int64_t chunks;
  std::int64_t* out;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t) const {
    std::int64_t found = -1;
    for (std::int64_t c = 0; c < chunks && found < 0; ++c) found = part[c];
    *out = found;
  }
};

/// finish(sum of f(i).a, sum of f(i).b) over i in [0, count), on the device.
template <class F, class Finish>
void sum_pairs(std::int64_t count, const F& f, const Finish& finish) {
  const std::int64_t chunks = count > 0 ? (count + sum_chunk - 1) / sum_chunk : 0;
  scratch<double> part(2 * chunks);
  const thrust::counting_iterator<std::int64_t> first(0);
  if (chunks > 0) thrust::for_each(exec(), first, first + chunks, pair_partial_fn<F>{f, count, part.get()});
  thrust::for_each(exec(), first, first + 1, pair_final_fn<Finish>{part.get(), chunks, finish});
}

}  // namespace protoseg::backend::cuda_detail
