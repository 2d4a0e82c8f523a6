#pragma once
/// \file gemm.hpp
/// cpu batched GEMM through Eigen's blocked, OpenMP-parallel kernel.

#include <Eigen/Core>
#include <cstdint>

#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

template <>
struct gemm<cpu> {
  /// For b in [0, batch): C_b = alpha * op(A_b) * op(B_b) + beta * C_b, all
  /// row-major; op transposes when trans_* is set. A stride of 0 broadcasts
  /// one matrix over the batch.
  template <class T>
  static void run(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
                  std::int64_t k, T alpha, const T* a, std::int64_t stride_a, const T* b,
                  std::int64_t stride_b, T beta, T* c, std::int64_t stride_c) {
    using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using cmap = Eigen::Map<const mat>;
    using omap = Eigen::Map<mat>;
    for (std::int64_t i = 0; i < batch; ++i) {
      omap C(c + i * stride_c, m, n);
      // op(A) is m x k: stored k x m when transposed.
      cmap A(a + i * stride_a, trans_a ? k : m, trans_a ? m : k);
      cmap B(b + i * stride_b, trans_b ? n : k, trans_b ? k : n);
      if (beta == T(0)) {
        if (alpha == T(1)) {
          if (!trans_a && !trans_b) C.noalias() = A * B;
          else if (trans_a && !trans_b) C.noalias() = A.transpose() * B;
          else if (!trans_a && trans_b) C.noalias() = A * B.transpose();
          else C.noalias() = A.transpose() * B.transpose();
        } else {
          if (!trans_a && !trans_b) C.noalias() = alpha * (A * B);
          else if (trans_a && !trans_b) C.noalias() = alpha * (A.transpose() * B);
          else if (!trans_a && trans_b) C.noalias() = alpha * (A * B.transpose());
          else C.noalias() = alpha * (A.transpose() * B.transpose());
        }
      } else {
        if (beta != T(1)) C *= beta;
        if (!trans_a && !trans_b) C.noalias() += alpha * (A * B);
        else if (trans_a && !trans_b) C.noalias() += alpha * (A.transpose() * B);
        else if (!trans_a && trans_b) C.noalias() += alpha * (A * B.transpose());
        else C.noalias() += alpha * (A.transpose() * B.transpose());
      }
    }
  }
};

}  // namespace protoseg::backend
