#pragma once
/// \file adamw.hpp
/// Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019),
/// following torch.optim.AdamW's update rule exactly, with parameter groups
/// (lr_mult, decay_mult) as mmseg's SegFormer configs use them.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/error.hpp"
#include "protoseg/optim/param_group.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::optim {

/// Options of `adamw` (torch.optim.AdamW's arguments of the same names;
/// betas = (beta1, beta2)).
struct adamw_options {
  double lr = 1e-3;             ///< learning rate, finite and >= 0
  double beta1 = 0.9;           ///< decay of the first moment, in [0, 1)
  double beta2 = 0.999;         ///< decay of the second moment, in [0, 1)
  double eps = 1e-8;            ///< added to the denominator (outside the square root), finite and >= 0
  double weight_decay = 0.01;   ///< decoupled weight decay, finite and >= 0
  bool amsgrad = false;         ///< use the running maximum of the second moment
};

namespace optim_detail {

/// Scalars of one AdamW update (declared with the backend primitive).
using adamw_scalars = ::protoseg::backend::adamw_scalars;

/// The update with tensor operations (any policy): the same operations, in
/// the same order and precision, as the fused host loop.
template <class T, class P>
void adamw_update_tensors(tensor<T, P>& p, const tensor<T, P>& g, tensor<T, P>& m, tensor<T, P>& v,
                          tensor<T, P>* vmax, const adamw_scalars& s) {
  p.copy_(p * static_cast<T>(s.decay));
  m.copy_(m * static_cast<T>(s.beta1) + g * static_cast<T>(s.one_minus_beta1));
  v.copy_(v * static_cast<T>(s.beta2) + g * static_cast<T>(s.one_minus_beta2) * g);
  if (vmax) vmax->copy_(maximum(*vmax, v));
  const tensor<T, P> denom = sqrt(vmax ? *vmax : v) / static_cast<T>(s.bc2_sqrt) + static_cast<T>(s.eps);
  p.copy_(p + m * static_cast<T>(s.neg_step_size) / denom);
}

/// The update as one pass over memory on the cpu policy (the `optim`
/// primitive; kept under this name for code that calls it directly).
template <class T>
void adamw_update_host(T* p, const T* g, T* m, T* v, T* vmax, std::int64_t n, const adamw_scalars& s) {
  ::protoseg::backend::optim<cpu>::adamw(p, g, m, v, vmax, n, s);
}

}  // namespace optim_detail

/// AdamW over a list of parameters or parameter groups. For each parameter
/// p with a gradient g, at its step t (counted per parameter, as PyTorch
/// does), with the group's lr = base lr * lr_mult and
/// lambda = weight_decay * decay_mult:
///   p = p (1 - lr lambda)                       (decoupled weight decay first)
///   m = beta1 m + (1 - beta1) g
///   v = beta2 v + (1 - beta2) g^2
///   vmax = max(vmax, v), used instead of v      (amsgrad)
///   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// Parameters without a gradient are skipped (their step does not advance).
template <class T, class Policy = cpu>
class adamw {
 public:
  using param_type = variable<T, Policy>;
  using group_type = param_group<T, Policy>;
  using state_type = optimizer_state<T, Policy>;

  /// One group holding `params` (lr_mult = decay_mult = 1).
  adamw(std::vector<param_type> params, const adamw_options& options = {})
      : adamw(std::vector<group_type>{group_type{std::move(params), 1.0, 1.0, "params"}}, options) {}

  /// Several groups; parameter i of `state()` is the i-th of all groups in order.
  adamw(std::vector<group_type> groups, const adamw_options& options = {}) : groups_(std::move(groups)), opt_(options) {
    check_options(opt_);
    optim_detail::flatten_groups("adamw", groups_, params_, group_of_);
    const std::size_t n = params_.size();
    exp_avg_.resize(n);
    exp_avg_sq_.resize(n);
    max_exp_avg_sq_.resize(n);
    steps_.assign(n, 0);
  }

  /// Applies one update to every parameter that has a gradient.
  void step() {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i];
      if (!p.has_grad()) continue;
      const tensor<T, Policy>& g = p.grad();
      if (g.shape() != p.shape())
        detail::fail<shape_error>("adamw::step: the gradient of parameter ", i, " has shape ", g.shape(),
                                  ", expected ", p.shape());
      if (!exp_avg_[i].defined()) {
        exp_avg_[i] = tensor<T, Policy>(p.shape());
        exp_avg_sq_[i] = tensor<T, Policy>(p.shape());
        if (opt_.amsgrad) max_exp_avg_sq_[i] = tensor<T, Policy>(p.shape());
      }
      const std::int64_t t = ++steps_[i];
      const auto& grp = groups_[group_of_[i]];
      const double lr = opt_.lr * grp.lr_mult, wd = opt_.weight_decay * grp.decay_mult;
      optim_detail::adamw_scalars s;
      s.decay = 1 - lr * wd;
      s.beta1 = opt_.beta1;
      s.one_minus_beta1 = 1 - opt_.beta1;
      s.beta2 = opt_.beta2;
      s.one_minus_beta2 = 1 - opt_.beta2;
      s.bc2_sqrt = std::sqrt(1 - std::pow(opt_.beta2, static_cast<double>(t)));
      s.eps = opt_.eps;
      s.neg_step_size = -(lr / (1 - std::pow(opt_.beta1, static_cast<double>(t))));
      tensor<T, Policy>* vmax = opt_.amsgrad ? &max_exp_avg_sq_[i] : nullptr;
      backend::optim<Policy>::adamw(p.mutable_value().data(), g.data(), exp_avg_[i].data(), exp_avg_sq_[i].data(),
                                    vmax ? vmax->data() : nullptr, p.numel(), s);
    }
  }

  /// Forgets the gradient of every parameter.
  void zero_grad() {
    for (auto& p : params_) p.zero_grad();
  }

  /// The base learning rate (group g uses lr() * groups()[g].lr_mult).
  double lr() const noexcept { return opt_.lr; }
  /// Sets the base learning rate (for schedules); must be finite and >= 0.
  void set_lr(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr))
      detail::fail<value_error>("adamw::set_lr: lr is ", lr, ", expected finite and >= 0");
    opt_.lr = lr;
  }
  /// The learning rate group g uses now.
  double group_lr(std::size_t g) const { return opt_.lr * groups_.at(g).lr_mult; }
  /// The weight decay group g uses.
  double group_weight_decay(std::size_t g) const { return opt_.weight_decay * groups_.at(g).decay_mult; }
  const adamw_options& options() const noexcept { return opt_; }
  /// All parameters, group after group.
  const std::vector<param_type>& params() const noexcept { return params_; }
  const std::vector<group_type>& groups() const noexcept { return groups_; }
  /// First moment of parameter i (undefined before its first step).
  const tensor<T, Policy>& exp_avg(std::size_t i) const { return exp_avg_.at(i); }
  /// Second moment of parameter i (undefined before its first step).
  const tensor<T, Policy>& exp_avg_sq(std::size_t i) const { return exp_avg_sq_.at(i); }
  /// Running maximum of the second moment of parameter i (amsgrad only).
  const tensor<T, Policy>& max_exp_avg_sq(std::size_t i) const { return max_exp_avg_sq_.at(i); }
  /// Number of updates parameter i has received.
  std::int64_t step_count(std::size_t i) const { return steps_.at(i); }

  /// The state to checkpoint (copies): "step.<i>" (one element; exact up to
  /// 2^24 steps in float) for every parameter i and, where step.<i> > 0,
  /// "exp_avg.<i>", "exp_avg_sq.<i>" and, with amsgrad, "max_exp_avg_sq.<i>".
  state_type state() const {
    state_type out;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const std::string k = std::to_string(i);
      out.emplace_back("step." + k, optim_detail::step_tensor<T, Policy>(steps_[i]));
      if (steps_[i] == 0) continue;
      out.emplace_back("exp_avg." + k, exp_avg_[i].clone());
      out.emplace_back("exp_avg_sq." + k, exp_avg_sq_[i].clone());
      if (opt_.amsgrad) out.emplace_back("max_exp_avg_sq." + k, max_exp_avg_sq_[i].clone());
    }
    return out;
  }

  /// Restores `state()` of an optimiser over parameters of the same shapes
  /// and options; the next steps are then bit-identical to the original's.
  /// Throws value_error naming the key on a missing, unexpected, duplicate
  /// or wrongly shaped entry, and changes nothing then.
  void load_state(const state_type& state) {
    std::map<std::string, const tensor<T, Policy>*> index;
    std::vector<std::string> buffers{"exp_avg", "exp_avg_sq"};
    if (opt_.amsgrad) buffers.push_back("max_exp_avg_sq");
    auto steps = optim_detail::check_state("adamw", state, params_, buffers, index);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const std::string k = std::to_string(i);
      auto get = [&](const std::string& name) {
        auto it = index.find(name + "." + k);
        return it == index.end() ? tensor<T, Policy>() : it->second->clone();
      };
      exp_avg_[i] = get("exp_avg");
      exp_avg_sq_[i] = get("exp_avg_sq");
      max_exp_avg_sq_[i] = opt_.amsgrad ? get("max_exp_avg_sq") : tensor<T, Policy>();
    }
    steps_ = std::move(steps);
  }

 private:
  static void check_options(const adamw_options& o) {
    if (!(o.lr >= 0) || !std::isfinite(o.lr))
      detail::fail<value_error>("adamw: lr is ", o.lr, ", expected finite and >= 0");
    if (!(o.beta1 >= 0 && o.beta1 < 1)) detail::fail<value_error>("adamw: beta1 is ", o.beta1, ", expected in [0, 1)");
    if (!(o.beta2 >= 0 && o.beta2 < 1)) detail::fail<value_error>("adamw: beta2 is ", o.beta2, ", expected in [0, 1)");
    if (!(o.eps >= 0) || !std::isfinite(o.eps))
      detail::fail<value_error>("adamw: eps is ", o.eps, ", expected finite and >= 0");
    if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
      detail::fail<value_error>("adamw: weight_decay is ", o.weight_decay, ", expected finite and >= 0");
  }

  std::vector<group_type> groups_;
  std::vector<param_type> params_;
  std::vector<std::size_t> group_of_;
  std::vector<tensor<T, Policy>> exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
  std::vector<std::int64_t> steps_;
  adamw_options opt_;
};

}  // namespace protoseg::optim
