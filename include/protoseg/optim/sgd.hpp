#pragma once
/// \file sgd.hpp
/// Stochastic gradient descent with momentum, Nesterov momentum and weight
/// decay, following torch.optim.SGD's update rule exactly.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/error.hpp"
#include "protoseg/optim/param_group.hpp"
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

/// SGD over a list of parameters or parameter groups. For each parameter p
/// with a gradient g, one `step()` computes (PyTorch's rule), with the
/// group's lr = base lr * lr_mult and lambda = weight_decay * decay_mult:
///   g = g + lambda p
///   b = g on the first step, else b = mu b + (1 - tau) g     (when mu != 0)
///   g = g + mu b if nesterov, else g = b                     (when mu != 0)
///   p = p - lr g
/// Parameters without a gradient are skipped and keep their momentum.
template <class T, class Policy = cpu>
class sgd {
 public:
  using param_type = variable<T, Policy>;
  using group_type = param_group<T, Policy>;
  using state_type = optimizer_state<T, Policy>;

  /// One group holding `params` (lr_mult = decay_mult = 1).
  sgd(std::vector<param_type> params, const sgd_options& options)
      : sgd(std::vector<group_type>{group_type{std::move(params), 1.0, 1.0, "params"}}, options) {}

  /// Several groups; parameter i of `state()` is the i-th of all groups in order.
  sgd(std::vector<group_type> groups, const sgd_options& options) : groups_(std::move(groups)), opt_(options) {
    check_options(opt_);
    optim_detail::flatten_groups("sgd", groups_, params_, group_of_);
    momentum_.resize(params_.size());
    steps_.assign(params_.size(), 0);
  }

  /// Applies one update to every parameter that has a gradient.
  void step() {
    const T mu = static_cast<T>(opt_.momentum), tau = static_cast<T>(opt_.dampening);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i];
      if (!p.has_grad()) continue;
      const auto& grp = groups_[group_of_[i]];
      const T lr = static_cast<T>(opt_.lr * grp.lr_mult);
      const T wd = static_cast<T>(opt_.weight_decay * grp.decay_mult);
      tensor<T, Policy> g = p.grad();
      if (wd != T(0)) g = g + p.value() * wd;
      if (mu != T(0)) {
        auto& b = momentum_[i];
        if (!b.defined()) b = g.clone();
        else b = b * mu + (tau == T(0) ? g : g * (T(1) - tau));
        g = opt_.nesterov ? g + b * mu : b;
      }
      p.mutable_value().copy_(p.value() - g * lr);
      ++steps_[i];
    }
  }

  /// Forgets the gradient of every parameter.
  void zero_grad() {
    for (auto& p : params_) p.zero_grad();
  }

  /// The base learning rate (group g uses lr() * groups()[g].lr_mult).
  double lr() const noexcept { return opt_.lr; }
  /// Sets the base learning rate (for schedules); must be >= 0 and finite.
  void set_lr(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr)) detail::fail<value_error>("sgd::set_lr: lr is ", lr, ", expected >= 0");
    opt_.lr = lr;
  }
  /// The learning rate group g uses now.
  double group_lr(std::size_t g) const { return opt_.lr * groups_.at(g).lr_mult; }
  const sgd_options& options() const noexcept { return opt_; }
  /// All parameters, group after group.
  const std::vector<param_type>& params() const noexcept { return params_; }
  const std::vector<group_type>& groups() const noexcept { return groups_; }
  /// Momentum buffer of parameter i (undefined before its first step).
  const tensor<T, Policy>& momentum_buffer(std::size_t i) const { return momentum_.at(i); }
  /// Number of updates parameter i has received.
  std::int64_t step_count(std::size_t i) const { return steps_.at(i); }

  /// The state to checkpoint (copies): "step.<i>" (one element) for every
  /// parameter i, and "momentum.<i>" where parameter i has a momentum buffer
  /// (momentum > 0 and step.<i> > 0).
  state_type state() const {
    state_type out;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      out.emplace_back("step." + std::to_string(i), optim_detail::step_tensor<T, Policy>(steps_[i]));
      if (momentum_[i].defined()) out.emplace_back("momentum." + std::to_string(i), momentum_[i].clone());
    }
    return out;
  }

  /// Restores `state()` of an optimiser over parameters of the same shapes
  /// and options; the next steps are then bit-identical to the original's.
  /// Throws value_error naming the key on a missing, unexpected, duplicate
  /// or wrongly shaped entry, and changes nothing then.
  void load_state(const state_type& state) {
    std::map<std::string, const tensor<T, Policy>*> index;
    std::vector<std::string> buffers;
    if (opt_.momentum != 0) buffers.push_back("momentum");
    auto steps = optim_detail::check_state("sgd", state, params_, buffers, index);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto it = index.find("momentum." + std::to_string(i));
      momentum_[i] = it == index.end() ? tensor<T, Policy>() : it->second->clone();
    }
    steps_ = std::move(steps);
  }

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

  std::vector<group_type> groups_;
  std::vector<param_type> params_;
  std::vector<std::size_t> group_of_;
  std::vector<tensor<T, Policy>> momentum_;
  std::vector<std::int64_t> steps_;
  sgd_options opt_;
};

}  // namespace protoseg::optim
