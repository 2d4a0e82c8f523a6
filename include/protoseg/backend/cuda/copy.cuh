#pragma once
/// \file copy.cuh
/// cuda permutation and strided block copies.

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/tabulate.h>

#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct permute_fn {
  const T* in;
  int rank;
  std::int64_t out_shape[5];
  std::int64_t stride[5];  // input stride of each output dimension
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    std::int64_t off = 0;
    for (int d = rank - 1; d >= 0; --d) {
      off += (i % out_shape[d]) * stride[d];
      i /= out_shape[d];
    }
    return in[off];
  }
};
template <class T, bool Add>
struct blocks_fn {
  const T* src;
  T* dst;
  std::int64_t ss, ds, cols;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t r = i / cols, c = i % cols;
    if (Add) dst[r * ds + c] += src[r * ss + c];
    else dst[r * ds + c] = src[r * ss + c];
  }
};
}  // namespace cuda_detail

template <>
struct copy<cuda> {
  template <class T>
  static void permute(const T* in, T* out, int rank, const std::int64_t* in_shape, const int* perm) {
    cuda_detail::permute_fn<T> f{in, rank, {1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}};
    std::int64_t in_stride[5];
    std::int64_t numel = 1;
    for (int d = rank - 1; d >= 0; --d) {
      in_stride[d] = numel;
      numel *= in_shape[d];
    }
    for (int d = 0; d < rank; ++d) {
      f.out_shape[d] = in_shape[perm[d]];
      f.stride[d] = in_stride[perm[d]];
    }
    if (numel) thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(out), cuda_detail::dp(out) + numel, f);
  }
  template <class T>
  static void blocks(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride, std::int64_t rows,
                     std::int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(rows * cols),
                     cuda_detail::blocks_fn<T, false>{src, dst, src_stride, dst_stride, cols});
  }
  template <class T>
  static void add_blocks(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride, std::int64_t rows,
                         std::int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(rows * cols),
                     cuda_detail::blocks_fn<T, true>{src, dst, src_stride, dst_stride, cols});
  }
};

}  // namespace protoseg::backend
