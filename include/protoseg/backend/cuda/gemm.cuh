#pragma once
/// \file gemm.cuh
/// cuda batched GEMM: cuBLAS under nvcc; a pure-Thrust path (one output
/// element per work item) when Thrust runs on its OpenMP device system, so
/// that the cuda policy is testable on machines without a GPU.

#include <thrust/copy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/tabulate.h>

#include <cstdint>
#include <type_traits>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"
#include "protoseg/error.hpp"

#if defined(__CUDACC__) && THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#define PROTOSEG_CUBLAS 1
#include <cublas_v2.h>
#endif

namespace protoseg::backend {

namespace cuda_detail {
template <class T>
struct gemm_element_fn {
  const T* a;
  const T* b;
  const T* c;
  bool ta, tb;
  std::int64_t m, n, k, sa, sb, sc;
  T alpha, beta;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t idx) const {
    const std::int64_t bi = idx / (m * n), r = (idx / n) % m, col = idx % n;
    const T* A = a + bi * sa;
    const T* B = b + bi * sb;
    T acc = T(0);
    for (std::int64_t p = 0; p < k; ++p) {
      const T x = ta ? A[p * m + r] : A[r * k + p];
      const T y = tb ? B[col * k + p] : B[p * n + col];
      acc += x * y;
    }
    return beta == T(0) ? alpha * acc : alpha * acc + beta * c[bi * sc + r * n + col];
  }
};

#if defined(PROTOSEG_CUBLAS)
/// The cuBLAS handle of the cuda policy: bound to its stream, with a
/// workspace from the device cache (cuBLAS then never allocates or
/// synchronises by itself), default (fp32) math. Made on first use and never
/// destroyed, as the stream.
inline cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
      detail::fail<error>("cuda gemm: cublasCreate failed (is a CUDA device available?)");
    if (cublasSetStream(h, stream()) != CUBLAS_STATUS_SUCCESS)
      detail::fail<error>("cuda gemm: cublasSetStream failed");
    constexpr std::size_t workspace_bytes = std::size_t(32) << 20;  // Hopper's recommended size
    void* ws = device_allocate(workspace_bytes);
    if (cublasSetWorkspace(h, ws, workspace_bytes) != CUBLAS_STATUS_SUCCESS)
      detail::fail<error>("cuda gemm: cublasSetWorkspace failed");
    return h;
  }();
  return handle;
}
#endif
}  // namespace cuda_detail

template <>
struct gemm<cuda> {
  /// Same contract as gemm<cpu>::run (row-major, strides of 0 broadcast).
  template <class T>
  static void run(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  T alpha, const T* a, std::int64_t stride_a, const T* b, std::int64_t stride_b, T beta, T* c,
                  std::int64_t stride_c) {
    if (batch * m * n == 0) return;
#if defined(PROTOSEG_CUBLAS)
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
      const cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
      const cublasOperation_t oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
      const int ldb = static_cast<int>(trans_b ? k : n), lda = static_cast<int>(trans_a ? m : k);
      cublasStatus_t st;
      cuda_detail::note_launch();
      if constexpr (std::is_same_v<T, float>)
        st = cublasSgemmStridedBatched(cuda_detail::cublas_handle(), ob, oa, int(n), int(m), int(k), &alpha, b, ldb,
                                       stride_b, a, lda, stride_a, &beta, c, int(n), stride_c, int(batch));
      else
        st = cublasDgemmStridedBatched(cuda_detail::cublas_handle(), ob, oa, int(n), int(m), int(k), &alpha, b, ldb,
                                       stride_b, a, lda, stride_a, &beta, c, int(n), stride_c, int(batch));
      if (st != CUBLAS_STATUS_SUCCESS) detail::fail<error>("cuda gemm: cuBLAS failed with status ", int(st));
      return;
    }
#endif
    // Pure-Thrust path. Results go through a temporary when beta != 0 reads C.
    cuda_detail::scratch<T> tmp(batch * m * n);
    thrust::tabulate(cuda_detail::exec(), tmp.begin(), tmp.end(),
                     cuda_detail::gemm_element_fn<T>{a, b, c, trans_a, trans_b, m, n, k, stride_a, stride_b, stride_c,
                                                     alpha, beta});
    if (stride_c == m * n) {
      thrust::copy(cuda_detail::exec(), tmp.begin(), tmp.end(), cuda_detail::dp(c));
    } else {
      for (std::int64_t i = 0; i < batch; ++i)
        thrust::copy(cuda_detail::exec(), tmp.begin() + i * m * n, tmp.begin() + (i + 1) * m * n, cuda_detail::dp(c + i * stride_c));
    }
  }
};

}  // namespace protoseg::backend
