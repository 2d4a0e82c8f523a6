#pragma once
/// \file norm.hpp
/// Layer-norm rows, written once as host/device functors (one item per row;
/// statistics in double): the cpu backend runs them as an OpenMP loop over
/// rows, the cuda backend with Thrust.

#include <cmath>
#include <cstdint>

#include "protoseg/config.hpp"

namespace protoseg::backend::kernels {

/// y = (x - mean) * rstd * gamma + beta on row r; saves mean and rstd.
template <class T>
struct layer_norm_row_fn {
  const T* x;
  const T* gamma;
  const T* beta;
  T* y;
  T* mean;
  T* rstd;
  std::int64_t n;
  double eps;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t r) const {
    const T* xr = x + r * n;
    double s = 0;
    for (std::int64_t j = 0; j < n; ++j) s += xr[j];
    const double m = s / double(n);
    double v = 0;
    for (std::int64_t j = 0; j < n; ++j) v += (xr[j] - m) * (xr[j] - m);
    const T mt = T(m), rs = T(1.0 / std::sqrt(v / double(n) + eps));
    mean[r] = mt;
    rstd[r] = rs;
    T* yr = y + r * n;
    for (std::int64_t j = 0; j < n; ++j) {
      T h = (xr[j] - mt) * rs;
      if (gamma) h = h * gamma[j];
      if (beta) h = h + beta[j];
      yr[j] = h;
    }
  }
};
/// Input gradient on row r: with h = (x - mean) rstd and u = g * gamma,
/// dx = rstd (u - mean(u) - h mean(u h)).
template <class T>
struct layer_norm_backward_row_fn {
  const T* g;
  const T* x;
  const T* gamma;
  const T* mean;
  const T* rstd;
  T* gx;
  std::int64_t n;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t r) const {
    const T* gr = g + r * n;
    const T* xr = x + r * n;
    const T m = mean[r], rs = rstd[r];
    double su = 0, suh = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const T u = gamma ? gr[j] * gamma[j] : gr[j];
      su += u;
      suh += double(u) * double((xr[j] - m) * rs);
    }
    const T mu = T(su / double(n)), muh = T(suh / double(n));
    T* o = gx + r * n;
    for (std::int64_t j = 0; j < n; ++j) {
      const T u = gamma ? gr[j] * gamma[j] : gr[j];
      o[j] = rs * (u - mu - (xr[j] - m) * rs * muh);
    }
  }
};
}  // namespace protoseg::backend::kernels
