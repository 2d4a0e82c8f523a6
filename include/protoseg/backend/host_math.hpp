#pragma once
/// \file host_math.hpp
/// Branch-free host kernels that g++ and clang vectorise without
/// -ffast-math: `fast_exp` and `lane_sum`. Plain C++ (no Eigen), for the cpu
/// backend's solvers and for host-only algorithms above the backend.

#include <bit>
#include <cmath>
#include <cstdint>

namespace protoseg::backend {

/// exp(x) on a branch-free path that GCC and Clang vectorise (Cody-Waite
/// range reduction, Taylor polynomial on |r| <= ln2/2, exponent built from
/// bits). Relative error about 1 ulp; +inf above the overflow threshold like
/// std::exp, 0 below the smallest normal (denormal results flush to 0).
inline float fast_exp(float x) {
  const float hi = 88.9f, lo = -87.3365f;
  const bool under = x < lo;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  // Round to nearest through the 1.5 * 2^23 shifter (std::floor does not
  // vectorise under the default strict floating-point flags).
  const float shifter = 12582912.0f;
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // n reaches 128 just below the overflow threshold: build 2^127 and double
  // it. Below the threshold the scale is 0 (every step stays unconditional,
  // which keeps the loop vectorisable).
  const bool top = n > 127.0f;
  const std::int32_t e = static_cast<std::int32_t>(top ? 127.0f : n) + 127;
  const float scale = std::bit_cast<float>(under ? std::int32_t(0) : (e << 23));
  const float extra = top ? 2.0f : 1.0f;
  return (p * scale) * extra;
}

inline double fast_exp(double x) {
  const double hi = 709.9, lo = -708.39;
  const bool under = x < lo;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double n = (x * 1.4426950408889634074 + shifter) - shifter;
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const bool top = n > 1023.0;
  const std::int64_t e = static_cast<std::int64_t>(top ? 1023.0 : n) + 1023;
  const double scale = std::bit_cast<double>(under ? std::int64_t(0) : (e << 52));
  const double extra = top ? 2.0 : 1.0;
  return (p * scale) * extra;
}

/// sum_{j < n} f(j) with a fixed number of independent lanes kept in
/// registers (a reduction GCC and Clang vectorise without -ffast-math and
/// without the memory-resident lanes of `omp simd reduction`). f may also
/// store (e.g. write exp(x) and return it).
template <class T, class F>
inline T lane_sum(std::int64_t n, F&& f) {
  constexpr int lanes = 128 / sizeof(T);  // two 512-bit vectors
  T acc[lanes] = {};
  std::int64_t j = 0;
  for (; j + lanes <= n; j += lanes)
    for (int l = 0; l < lanes; ++l) acc[l] += f(j + l);
  for (int l = 0; j + l < n; ++l) acc[l] += f(j + l);
  for (int w = lanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

}  // namespace protoseg::backend
