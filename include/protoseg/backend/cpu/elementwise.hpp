#pragma once
/// \file elementwise.hpp
/// cpu elementwise primitives: fill, iota, map, zip and broadcasting zip.

#include "protoseg/backend/cpu/eigen.hpp"
#include <cstdint>
#include <type_traits>

#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/functors.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

namespace cpu_detail {
/// Functors that Eigen evaluates with SIMD (vectorised exp, log, tanh...).
template <class F>
inline constexpr bool eigen_vectorised =
    std::is_same_v<F, fn::exp> || std::is_same_v<F, fn::log> || std::is_same_v<F, fn::sqrt> ||
    std::is_same_v<F, fn::tanh> || std::is_same_v<F, fn::sigmoid> || std::is_same_v<F, fn::abs>;

template <class F, class A>
auto eigen_apply(const A& a) {
  if constexpr (std::is_same_v<F, fn::exp>) return a.exp();
  else if constexpr (std::is_same_v<F, fn::log>) return a.log();
  else if constexpr (std::is_same_v<F, fn::sqrt>) return a.sqrt();
  else if constexpr (std::is_same_v<F, fn::tanh>) return a.tanh();
  else if constexpr (std::is_same_v<F, fn::sigmoid>) return a.logistic();
  else return a.abs();
}
}  // namespace cpu_detail

template <>
struct elementwise<cpu> {
  template <class T>
  static void fill(T* out, std::int64_t n, T value) {
    PROTOSEG_OMP_FOR(n)
    for (std::int64_t i = 0; i < n; ++i) out[i] = value;
  }

  template <class T>
  static void iota(T* out, std::int64_t n, T start, T step) {
    PROTOSEG_OMP_FOR(n)
    for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(start + static_cast<T>(i) * step);
  }

  template <class T, class U, class F>
  static void map(const T* in, U* out, std::int64_t n, F f) {
    if constexpr (std::is_same_v<T, U> && std::is_floating_point_v<T> && cpu_detail::eigen_vectorised<F>) {
      using array = Eigen::Array<T, Eigen::Dynamic, 1>;
      constexpr std::int64_t chunk = 1 << 14;
      const std::int64_t chunks = (n + chunk - 1) / chunk;
      PROTOSEG_OMP_FOR(n)
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::int64_t begin = c * chunk, len = (n - begin < chunk) ? n - begin : chunk;
        Eigen::Map<array>(out + begin, len) = cpu_detail::eigen_apply<F>(Eigen::Map<const array>(in + begin, len));
      }
    } else {
      PROTOSEG_OMP_FOR(n)
      for (std::int64_t i = 0; i < n; ++i) out[i] = f(in[i]);
    }
  }

  template <class T, class F>
  static void zip(const T* a, const T* b, T* out, std::int64_t n, F f) {
    PROTOSEG_OMP_FOR(n)
    for (std::int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
  }

  /// out[i] = f(a[ia], b[ib]) with zero strides on broadcast dimensions.
  /// The innermost dimension runs as a tight loop; outer rows in parallel.
  template <class T, class F>
  static void zip_broadcast(const broadcast_geometry& g, const T* a, const T* b, T* out, F f) {
    const int r = g.rank;
    if (r == 0) {
      out[0] = f(a[0], b[0]);
      return;
    }
    const std::int64_t inner = g.out_shape[r - 1];
    const std::int64_t sa = g.a_stride[r - 1], sb = g.b_stride[r - 1];
    const std::int64_t rows = inner == 0 ? 0 : g.numel / inner;
    PROTOSEG_OMP_FOR(g.numel)
    for (std::int64_t row = 0; row < rows; ++row) {
      std::int64_t rem = row, oa = 0, ob = 0;
      for (int d = r - 2; d >= 0; --d) {
        const std::int64_t idx = rem % g.out_shape[d];
        rem /= g.out_shape[d];
        oa += idx * g.a_stride[d];
        ob += idx * g.b_stride[d];
      }
      const T* pa = a + oa;
      const T* pb = b + ob;
      T* po = out + row * inner;
      if (sa == 1 && sb == 1) {
        for (std::int64_t i = 0; i < inner; ++i) po[i] = f(pa[i], pb[i]);
      } else if (sa == 1 && sb == 0) {
        const T vb = *pb;
        for (std::int64_t i = 0; i < inner; ++i) po[i] = f(pa[i], vb);
      } else if (sa == 0 && sb == 1) {
        const T va = *pa;
        for (std::int64_t i = 0; i < inner; ++i) po[i] = f(va, pb[i]);
      } else {
        for (std::int64_t i = 0; i < inner; ++i) po[i] = f(pa[i * sa], pb[i * sb]);
      }
    }
  }
};

}  // namespace protoseg::backend
