#pragma once
/// \file sgd.hpp
/// Stochastic gradient descent with momentum, Nesterov momentum and weight
/// decay, following torch.optim.SGD's update rule exactly.

#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::optim {

/// Options of `sgd` (torch.optim.SGD's arguments of the same names).
struct sgd_options {
  double lr = 0.01;            ///< learning rate, >= 0
  double momentum = 0.0;       ///< momentum factor mu, >= 0
  double dampening = 0.0;      ///< dampening tau of the momentum, in [0, 1]
  double weight_decay = 0.0;   ///< L2 penalty lambda added to the gradient, >= 0
  bool nesterov = false;       ///< Nesterov momentum (needs momentum > 0 and dampening 0)
};

/// SGD over a list of parameters. For each parameter p with a gradient g,
/// one `step()` computes (PyTorch's rule):
///   g = g + lambda p
///   b = g on the first step, else b = mu b + (1 - tau) g     (when mu != 0)
///   g = g + mu b if nesterov, else g = b                     (when mu != 0)
///   p = p - lr g
/// Parameters without a gradient are skipped and keep their momentum.
template <class T, class Policy = cpu>
class sgd {
 public:
  using param_type = variable<T, Policy>;

  sgd(std::vector<param_type> params, const sgd_options& options) : params_(std::move(params)), opt_(options) {
    check_options(opt_);
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (!params_[i].defined()) detail::fail<value_error>("sgd: parameter ", i, " is undefined");
    momentum_.resize(params_.size());
  }

  /// Applies one update to every parameter that has a gradient.
  void step() {
    const T lr = static_cast<T>(opt_.lr), mu = static_cast<T>(opt_.momentum);
    const T tau = static_cast<T>(opt_.dampening), wd = static_cast<T>(opt_.weight_decay);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i];
      if (!p.has_grad()) continue;
      tensor<T, Policy> g = p.grad();
      if (wd != T(0)) g = g + p.value() * wd;
      if (mu != T(0)) {
        auto& b = momentum_[i];
        if (!b.defined()) b = g.clone();
        else b = b * mu + (tau == T(0) ? g : g * (T(1) - tau));
        g = opt_.nesterov ? g + b * mu : b;
      }
      p.mutable_value().copy_(p.value() - g * lr);
    }
  }

  /// Forgets the gradient of every parameter.
  void zero_grad() {
    for (auto& p : params_) p.zero_grad();
  }

  /// The current learning rate.
  double lr() const noexcept { return opt_.lr; }
  /// Sets the learning rate (for schedules); must be >= 0 and finite.
  void set_lr(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr)) detail::fail<value_error>("sgd::set_lr: lr is ", lr, ", expected >= 0");
    opt_.lr = lr;
  }
  const sgd_options& options() const noexcept { return opt_; }
  const std::vector<param_type>& params() const noexcept { return params_; }
  /// Momentum buffer of parameter i (undefined before its first step).
  const tensor<T, Policy>& momentum_buffer(std::size_t i) const { return momentum_.at(i); }

 private:
  static void check_options(const sgd_options& o) {
    if (!(o.lr >= 0) || !std::isfinite(o.lr)) detail::fail<value_error>("sgd: lr is ", o.lr, ", expected >= 0");
    if (!(o.momentum >= 0) || !std::isfinite(o.momentum))
      detail::fail<value_error>("sgd: momentum is ", o.momentum, ", expected >= 0");
    if (!(o.dampening >= 0 && o.dampening <= 1))
      detail::fail<value_error>("sgd: dampening is ", o.dampening, ", expected in [0, 1]");
    if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
      detail::fail<value_error>("sgd: weight_decay is ", o.weight_decay, ", expected >= 0");
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
      detail::fail<value_error>("sgd: nesterov needs momentum > 0 and dampening 0, got momentum ", o.momentum,
                                " and dampening ", o.dampening);
  }

  std::vector<param_type> params_;
  std::vector<tensor<T, Policy>> momentum_;
  sgd_options opt_;
};

}  // namespace protoseg::optim
