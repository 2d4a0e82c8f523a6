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
#include <vector>

#include "protoseg/backend/parallel.hpp"
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
/// Rows of S per block of gemm<cpu>::nt_row_blocks: the block (m x rows)
/// stays within about 1 MiB (measured best for the 8470 prototypes of 847
/// classes: 256 KiB blocks re-read B too often, 4 MiB ones leave the cache),
/// a multiple of Eigen's nr in [nr, 256].
template <class T>
std::int64_t nt_block_rows(std::int64_t m) {
  constexpr std::int64_t nr = Eigen::internal::gebp_traits<T, T>::nr;
  const std::int64_t fit = (std::int64_t(1024) * 1024 / static_cast<std::int64_t>(sizeof(T))) / std::max<std::int64_t>(m, 1);
  return std::clamp<std::int64_t>(fit / nr * nr, nr, 256);
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

  /// S = A B^T for row-major A (n x k) and B (m x k), never held whole: B is
  /// packed once for Eigen's block-panel kernel, then each block of rows of A
  /// gets its rows of S in a per-thread scratch and is handed to
  /// visit(first_row, rows, s), where s is column-major (m x rows): the m
  /// products of row first_row + j of A are s[j * m, (j + 1) * m). Blocks are
  /// spread over the threads (visit is called concurrently for different
  /// blocks, each exactly once, and must not throw). For consumers that reduce
  /// S as it is made (the prototype scores of 847 classes are 1.1 GB; their
  /// class maxima and log-sum-exp are 4 MB), this saves zeroing, writing and
  /// reading the whole product.
  template <class T, class Visit>
  static void nt_row_blocks(std::int64_t n, std::int64_t m, std::int64_t k, const T* a, const T* b, Visit&& visit) {
    namespace ei = Eigen::internal;
    using Index = Eigen::Index;
    using traits = ei::gebp_traits<T, T>;
    using lhs_map = ei::const_blas_data_mapper<T, Index, Eigen::RowMajor>;  // B, m x k
    using rhs_map = ei::const_blas_data_mapper<T, Index, Eigen::ColMajor>;  // A^T, k x rows
    using res_map = ei::blas_data_mapper<T, Index, Eigen::ColMajor>;        // S^T block, m x rows
    using buffer = std::vector<T, Eigen::aligned_allocator<T>>;
    if (n <= 0 || m <= 0) return;
    const std::int64_t rows_per_block = cpu_detail::nt_block_rows<T>(m);
    // Depth slices of at most kc, as Eigen's own blocking takes them: an
    // mr x kc panel of B and a kc x nr panel of A stay in L1.
    const std::int64_t kc = std::max<std::int64_t>(1, std::min<std::int64_t>(k, 128));
    const std::int64_t slices = k > 0 ? (k + kc - 1) / kc : 0;
    buffer packed_b(static_cast<std::size_t>(m * std::max<std::int64_t>(k, 1)));
    for (std::int64_t sl = 0; sl < slices; ++sl) {
      const std::int64_t d0 = sl * kc, dk = std::min(kc, k - d0);
      ei::gemm_pack_lhs<T, Index, lhs_map, traits::mr, traits::LhsProgress, typename traits::LhsPacket4Packing,
                        Eigen::RowMajor>()(packed_b.data() + m * d0, lhs_map(b + d0, k), dk, m);
    }
    const std::int64_t blocks = (n + rows_per_block - 1) / rows_per_block;
    const int threads = static_cast<int>(std::min<std::int64_t>(num_threads(), blocks));
    auto run = [&](std::int64_t first_block, std::int64_t step) {
      buffer packed_a(static_cast<std::size_t>(rows_per_block * std::max<std::int64_t>(k, 1)));
      buffer s(static_cast<std::size_t>(m * rows_per_block));
      ei::gemm_pack_rhs<T, Index, rhs_map, traits::nr, Eigen::ColMajor> pack_a;
      ei::gebp_kernel<T, T, Index, res_map, traits::mr, traits::nr, false, false> kernel;
      for (std::int64_t blk = first_block; blk < blocks; blk += step) {
        const std::int64_t r0 = blk * rows_per_block, rows = std::min(rows_per_block, n - r0);
        // The kernel adds into its output: zero the block (in cache) first.
        std::memset(s.data(), 0, sizeof(T) * static_cast<std::size_t>(m * rows));
        for (std::int64_t sl = 0; sl < slices; ++sl) {
          const std::int64_t d0 = sl * kc, dk = std::min(kc, k - d0);
          pack_a(packed_a.data() + rows * d0, rhs_map(a + r0 * k + d0, k), dk, rows);
          kernel(res_map(s.data(), m), packed_b.data() + m * d0, packed_a.data() + rows * d0, m, dk, rows, T(1));
        }
        visit(r0, rows, static_cast<const T*>(s.data()));
      }
    };
    if (threads < 2) {
      run(0, 1);
      return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    run(omp_get_thread_num(), omp_get_num_threads());
#else
    run(0, 1);
#endif
  }
};

}  // namespace protoseg::backend
