#pragma once
// Shared helpers and the tolerances of every protoseg test (one place).

#include <doctest/doctest.h>

#include <protoseg/protoseg.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace protoseg_test {

/// Relative tolerance for float results against references.
inline constexpr double float_rtol = 1e-5;
/// Relative tolerance for double results against references.
inline constexpr double double_rtol = 1e-10;
/// Gradient-check settings shared by every op test.
inline const protoseg::gradcheck_options gradcheck_opts{.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5};

template <class T>
constexpr double rtol_for() {
  return sizeof(T) == 4 ? float_rtol : double_rtol;
}

/// Elementwise |a - b| <= rtol * (|b| + 1).
template <class T, class P>
bool close(const protoseg::tensor<T, P>& a, const std::vector<double>& expected, double rtol = rtol_for<T>()) {
  const auto v = a.to_vector();
  if (v.size() != expected.size()) return false;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!(std::abs(double(v[i]) - expected[i]) <= rtol * (std::abs(expected[i]) + 1))) return false;
  return true;
}

template <class T, class P>
bool close(const protoseg::tensor<T, P>& a, const protoseg::tensor<T, P>& b, double rtol = rtol_for<T>()) {
  if (a.shape() != b.shape()) return false;
  const auto w = b.to_vector();
  return close(a, std::vector<double>(w.begin(), w.end()), rtol);
}

}  // namespace protoseg_test
