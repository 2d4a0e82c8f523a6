#pragma once
/// \file copy.hpp
/// cpu permutation and strided block copies.

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct copy<cpu> {
  /// out = in permuted: out dimension d is in dimension perm[d].
  template <class T>
  static void permute(const T* in, T* out, int rank, const std::int64_t* in_shape, const int* perm) {
    std::int64_t in_stride[5], out_shape[5], st[5];
    std::int64_t numel = 1;
    for (int d = rank - 1; d >= 0; --d) {
      in_stride[d] = numel;
      numel *= in_shape[d];
    }
    for (int d = 0; d < rank; ++d) {
      out_shape[d] = in_shape[perm[d]];
      st[d] = in_stride[perm[d]];
    }
    if (numel == 0) return;
    const std::int64_t inner = out_shape[rank - 1];
    const std::int64_t rows = numel / inner;
    const std::int64_t s_inner = st[rank - 1];
    PROTOSEG_OMP_FOR(numel)
    for (std::int64_t row = 0; row < rows; ++row) {
      std::int64_t rem = row, off = 0;
      for (int d = rank - 2; d >= 0; --d) {
        off += (rem % out_shape[d]) * st[d];
        rem /= out_shape[d];
      }
      T* po = out + row * inner;
      const T* pi = in + off;
      if (s_inner == 1) std::copy(pi, pi + inner, po);  // contiguous runs (e.g. swapping leading axes)
      else
        for (std::int64_t i = 0; i < inner; ++i) po[i] = pi[i * s_inner];
    }
  }

  /// Copies `rows` blocks of `cols` contiguous elements between strided places.
  template <class T>
  static void blocks(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride,
                     std::int64_t rows, std::int64_t cols) {
    if (rows <= 0 || cols <= 0) return;  // empty slices may carry null pointers
    PROTOSEG_OMP_FOR(rows * cols)
    for (std::int64_t r = 0; r < rows; ++r)
      std::memcpy(dst + r * dst_stride, src + r * src_stride, static_cast<std::size_t>(cols) * sizeof(T));
  }

  /// Adds `rows` blocks of `cols` elements into strided places (gradient of a slice).
  template <class T>
  static void add_blocks(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride,
                         std::int64_t rows, std::int64_t cols) {
    PROTOSEG_OMP_FOR(rows * cols)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* s = src + r * src_stride;
      T* d = dst + r * dst_stride;
      for (std::int64_t c = 0; c < cols; ++c) d[c] += s[c];
    }
  }
};

}  // namespace protoseg::backend
