#pragma once
/// \file gemm.hpp
/// cpu batched GEMM through Eigen's blocked kernel. With several threads the
/// output is split into independent slabs, one Eigen product per thread
/// (Eigen runs single-threaded inside a parallel region): Eigen's own
/// OpenMP GEMM synchronises its threads by spinning on shared packed blocks,
/// which made thin products such as the (10 x 256) x (256 x 1e5) scores of
/// online clustering 15x slower on two threads than on one.

#include "protoseg/backend/cpu/eigen.hpp"
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "protoseg/backend/cpu/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

namespace cpu_detail {
/// C = alpha * op(A) op(B) + beta * C on row-major blocks with row strides.
template <class T>
void gemm_block(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using stride = Eigen::OuterStride<>;
  using cmap = Eigen::Map<const mat, 0, stride>;
  Eigen::Map<mat, 0, stride> C(c, m, n, stride(ldc));
  cmap A(a, ta ? k : m, ta ? m : k, stride(lda));  // op(A) is m x k
  cmap B(b, tb ? n : k, tb ? k : n, stride(ldb));  // op(B) is k x n
  auto assign = [&](const auto& product) {
    if (beta == T(0)) {
      // Zeroing with memset (non-temporal stores for large blocks) rather
      // than Eigen's `=`, whose setZero reads every line before writing it:
      // that costs ~0.1 s on the 1.1 GB scores of 847 classes.
      if (ldc == n) std::memset(c, 0, sizeof(T) * static_cast<std::size_t>(m * n));
      else
        for (std::int64_t r = 0; r < m; ++r) std::memset(c + r * ldc, 0, sizeof(T) * static_cast<std::size_t>(n));
      if (alpha == T(1)) C.noalias() += product;
      else C.noalias() += alpha * product;
    } else {
      if (beta != T(1)) C *= beta;
      C.noalias() += alpha * product;
    }
  };
  if (!ta && !tb) assign(A * B);
  else if (ta && !tb) assign(A.transpose() * B);
  else if (!ta && tb) assign(A * B.transpose());
  else assign(A.transpose() * B.transpose());
}
/// Below this many multiply-adds a product stays on one thread.
inline constexpr std::int64_t gemm_parallel_work = std::int64_t(1) << 21;
}  // namespace cpu_detail

template <>
struct gemm<cpu> {
  /// For b in [0, batch): C_b = alpha * op(A_b) * op(B_b) + beta * C_b, all
  /// row-major; op transposes when trans_* is set. A stride of 0 broadcasts
  /// one matrix over the batch.
  template <class T>
  static void run(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  T alpha, const T* a, std::int64_t stride_a, const T* b, std::int64_t stride_b, T beta, T* c,
                  std::int64_t stride_c) {
    const std::int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n;
    const int threads = num_threads();
    for (std::int64_t i = 0; i < batch; ++i) {
      const T* A = a + i * stride_a;
      const T* B = b + i * stride_b;
      T* C = c + i * stride_c;
      if (threads < 2 || m * n * k < cpu_detail::gemm_parallel_work) {
        cpu_detail::gemm_block(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        continue;
      }
      // Split the longer output dimension into one slab per thread.
      const bool split_n = n >= m;
      const std::int64_t len = split_n ? n : m;
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
      {
#if defined(_OPENMP)
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int t = 0, nt = 1;
#endif
        // Slab boundaries rounded to 16 elements keep the kernels' vector loads aligned.
        auto edge = [&](int j) { return std::min(len, (len * j / nt + 15) / 16 * 16); };
        const std::int64_t s0 = t == 0 ? 0 : edge(t), s1 = t + 1 == nt ? len : edge(t + 1);
        if (s1 > s0) {
          if (split_n)
            cpu_detail::gemm_block(trans_a, trans_b, m, s1 - s0, k, alpha, A, lda,
                                   trans_b ? B + s0 * ldb : B + s0, ldb, beta, C + s0, ldc);
          else
            cpu_detail::gemm_block(trans_a, trans_b, s1 - s0, n, k, alpha, trans_a ? A + s0 : A + s0 * lda, lda, B,
                                   ldb, beta, C + s0 * ldc, ldc);
        }
      }
    }
  }
};

}  // namespace protoseg::backend
