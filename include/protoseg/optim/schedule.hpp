#pragma once
/// \file schedule.hpp
/// Learning-rate schedules of the mmseg configs: polynomial decay (mmcv's
/// PolyLrUpdaterHook, by iteration) with an optional linear warmup.

#include <cmath>
#include <cstdint>

#include "protoseg/error.hpp"

namespace protoseg::optim {

namespace optim_detail {
inline void check_poly(const char* who, double base, std::int64_t max_iters, double power, double min_lr) {
  if (!(base >= 0) || !std::isfinite(base))
    ::protoseg::detail::fail<value_error>(who, ": base_lr is ", base, ", expected finite and >= 0");
  if (max_iters <= 0) ::protoseg::detail::fail<value_error>(who, ": max_iters is ", max_iters, ", expected > 0");
  if (!(power >= 0) || !std::isfinite(power))
    ::protoseg::detail::fail<value_error>(who, ": power is ", power, ", expected finite and >= 0");
  if (!(min_lr >= 0) || !std::isfinite(min_lr))
    ::protoseg::detail::fail<value_error>(who, ": min_lr is ", min_lr, ", expected finite and >= 0");
}
inline double poly_unchecked(double base, std::int64_t iter, std::int64_t max_iters, double power, double min_lr) {
  const double coeff = std::pow(1.0 - static_cast<double>(iter) / static_cast<double>(max_iters), power);
  return (base - min_lr) * coeff + min_lr;
}
}  // namespace optim_detail

/// mmseg's PolyLR at iteration `iter` (0-based, 0 <= iter <= max_iters):
/// (base - min_lr) * (1 - iter / max_iters)^power + min_lr.
inline double poly_lr(double base, std::int64_t iter, std::int64_t max_iters, double power = 1.0,
                      double min_lr = 0.0) {
  optim_detail::check_poly("poly_lr", base, max_iters, power, min_lr);
  if (iter < 0 || iter > max_iters)
    ::protoseg::detail::fail<value_error>("poly_lr: iter is ", iter, ", expected in [0, ", max_iters, "]");
  return optim_detail::poly_unchecked(base, iter, max_iters, power, min_lr);
}

/// Polynomial decay with mmcv's linear warmup: for iter < warmup_iters the
/// poly value is scaled by 1 - (1 - iter / warmup_iters) (1 - warmup_ratio),
/// so it rises from warmup_ratio * lr at iteration 0 to the poly value.
/// SegFormer's schedule is {base_lr = 6e-5, max_iters = 160000, power = 1,
/// min_lr = 0, warmup_iters = 1500, warmup_ratio = 1e-6}.
struct poly_schedule {
  double base_lr;                ///< learning rate at iteration 0 without warmup, finite and >= 0
  std::int64_t max_iters;        ///< iterations of the whole run, > 0
  double power = 1.0;            ///< exponent of the decay, finite and >= 0
  double min_lr = 0.0;           ///< learning rate reached at max_iters, finite and >= 0
  std::int64_t warmup_iters = 0; ///< iterations of linear warmup, in [0, max_iters]
  double warmup_ratio = 1e-6;    ///< factor of the learning rate at iteration 0, in (0, 1]

  /// Throws value_error naming the first bad field.
  void validate() const {
    optim_detail::check_poly("poly_schedule", base_lr, max_iters, power, min_lr);
    if (warmup_iters < 0 || warmup_iters > max_iters)
      ::protoseg::detail::fail<value_error>("poly_schedule: warmup_iters is ", warmup_iters, ", expected in [0, ",
                                            max_iters, "]");
    if (!(warmup_ratio > 0 && warmup_ratio <= 1))
      ::protoseg::detail::fail<value_error>("poly_schedule: warmup_ratio is ", warmup_ratio, ", expected in (0, 1]");
  }

  /// The learning rate of iteration `iter` (0-based, 0 <= iter <= max_iters).
  double at(std::int64_t iter) const {
    validate();
    if (iter < 0 || iter > max_iters)
      ::protoseg::detail::fail<value_error>("poly_schedule::at: iter is ", iter, ", expected in [0, ", max_iters, "]");
    const double lr = optim_detail::poly_unchecked(base_lr, iter, max_iters, power, min_lr);
    if (iter >= warmup_iters) return lr;
    const double k = (1.0 - static_cast<double>(iter) / static_cast<double>(warmup_iters)) * (1.0 - warmup_ratio);
    return lr * (1.0 - k);
  }
};

}  // namespace protoseg::optim
