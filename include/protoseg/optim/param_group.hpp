#pragma once
/// \file param_group.hpp
/// Parameter groups shared by the optimisers (torch's `param_groups`, with
/// mmcv's `lr_mult` / `decay_mult`), the mmseg-style grouping of a model's
/// named parameters, and the checks of an optimiser's saved state.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::optim {

/// A set of parameters that share a learning-rate and weight-decay multiplier:
/// the group's learning rate is base lr * lr_mult and its weight decay is
/// options.weight_decay * decay_mult (mmcv's paramwise_cfg).
template <class T, class P = cpu>
struct param_group {
  std::vector<variable<T, P>> params;  ///< the parameters, each in one group only
  double lr_mult = 1.0;                ///< learning-rate multiplier, finite and >= 0
  double decay_mult = 1.0;             ///< weight-decay multiplier, finite and >= 0
  std::string name;                    ///< for messages and logs only
};

/// Named optimiser state: (key, tensor) pairs, as `state()` returns them.
template <class T, class P = cpu>
using optimizer_state = std::vector<std::pair<std::string, tensor<T, P>>>;

/// Groups a model's named parameters as mmseg configs do
/// (`paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.), 'norm':
/// dict(decay_mult=0.), 'pos_block': dict(decay_mult=0.)})`): a parameter
/// whose name starts with one of `head_prefixes` gets lr_mult =
/// `head_lr_mult`; when `no_decay_on_norms_and_bias_1d` is set, every 1-D
/// parameter (biases, norm weights) and every name containing "norm", "bn"
/// or "pos_block" gets decay_mult 0. Returns the non-empty groups among
/// "decay", "no_decay", "head_decay", "head_no_decay", in that order, each
/// keeping the order of `named`. Parameters that do not require gradients
/// are left out; prototypes are buffers, not parameters, and never appear.
template <class T, class P>
std::vector<param_group<T, P>> make_param_groups(const std::vector<std::pair<std::string, variable<T, P>>>& named,
                                                 double head_lr_mult, const std::vector<std::string>& head_prefixes,
                                                 bool no_decay_on_norms_and_bias_1d) {
  if (!(head_lr_mult >= 0) || !std::isfinite(head_lr_mult))
    detail::fail<value_error>("make_param_groups: head_lr_mult is ", head_lr_mult, ", expected finite and >= 0");
  for (const auto& p : head_prefixes)
    if (p.empty()) detail::fail<value_error>("make_param_groups: an empty head prefix would match every parameter");
  param_group<T, P> groups[4] = {{{}, 1.0, 1.0, "decay"},
                                 {{}, 1.0, 0.0, "no_decay"},
                                 {{}, head_lr_mult, 1.0, "head_decay"},
                                 {{}, head_lr_mult, 0.0, "head_no_decay"}};
  std::set<std::string> seen;
  for (const auto& [name, v] : named) {
    if (!v.defined()) detail::fail<value_error>("make_param_groups: parameter '", name, "' is undefined");
    if (!seen.insert(name).second) detail::fail<value_error>("make_param_groups: parameter name '", name, "' appears twice");
    if (!v.requires_grad()) continue;
    bool head = false;
    for (const auto& p : head_prefixes) head = head || name.compare(0, p.size(), p) == 0;
    const bool no_decay = no_decay_on_norms_and_bias_1d &&
                          (v.rank() == 1 || name.find("norm") != std::string::npos ||
                           name.find("bn") != std::string::npos || name.find("pos_block") != std::string::npos);
    groups[(head ? 2 : 0) + (no_decay ? 1 : 0)].params.push_back(v);
  }
  std::vector<param_group<T, P>> out;
  for (auto& g : groups)
    if (!g.params.empty()) out.push_back(std::move(g));
  return out;
}

namespace optim_detail {

/// Checks the groups (multipliers, defined and unique parameters) and
/// returns the flat parameter list and each parameter's group index.
template <class T, class P>
void flatten_groups(const char* who, const std::vector<param_group<T, P>>& groups,
                    std::vector<variable<T, P>>& flat, std::vector<std::size_t>& group_of) {
  std::set<const void*> seen;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& g = groups[gi];
    if (!(g.lr_mult >= 0) || !std::isfinite(g.lr_mult))
      ::protoseg::detail::fail<value_error>(who, ": group ", gi, " ('", g.name, "') has lr_mult ", g.lr_mult, ", expected finite and >= 0");
    if (!(g.decay_mult >= 0) || !std::isfinite(g.decay_mult))
      ::protoseg::detail::fail<value_error>(who, ": group ", gi, " ('", g.name, "') has decay_mult ", g.decay_mult,
                        ", expected finite and >= 0");
    for (std::size_t j = 0; j < g.params.size(); ++j) {
      const auto& v = g.params[j];
      if (!v.defined())
        ::protoseg::detail::fail<value_error>(who, ": parameter ", flat.size(), " (group ", gi, ", index ", j, ") is undefined");
      if (!seen.insert(v.impl().get()).second)
        ::protoseg::detail::fail<value_error>(who, ": parameter ", flat.size(), " (group ", gi, ", index ", j,
                          ") appears more than once; it would be updated twice per step");
      flat.push_back(v);
      group_of.push_back(gi);
    }
  }
}

/// Validates a saved state against the optimiser's parameters before anything
/// is changed. `per_param` lists the buffer names besides "step"; a buffer
/// "<name>.<i>" is required (with parameter i's shape) exactly when
/// step.<i> > 0. Returns the steps; the buffers are found by key in `index`.
template <class T, class P>
std::vector<std::int64_t> check_state(const char* who, const optimizer_state<T, P>& state,
                                      const std::vector<variable<T, P>>& params,
                                      const std::vector<std::string>& per_param,
                                      std::map<std::string, const tensor<T, P>*>& index) {
  const std::size_t n = params.size();
  auto known = [&](const std::string& key) {
    const auto dot = key.rfind('.');
    if (dot == std::string::npos || dot + 1 == key.size()) return false;
    const std::string base = key.substr(0, dot), num = key.substr(dot + 1);
    if (num.size() > 1 && num[0] == '0') return false;
    for (char c : num)
      if (c < '0' || c > '9') return false;
    if (num.size() > 18 || std::stoull(num) >= n) return false;
    if (base == "step") return true;
    for (const auto& b : per_param)
      if (base == b) return true;
    return false;
  };
  for (const auto& [key, t] : state) {
    if (!index.emplace(key, &t).second) ::protoseg::detail::fail<value_error>(who, "::load_state: key '", key, "' appears twice");
    if (!known(key))
      ::protoseg::detail::fail<value_error>(who, "::load_state: unexpected key '", key, "' (the optimiser has ", n,
                        " parameters and keeps step.<i>", [&] {
                          std::string s;
                          for (const auto& b : per_param) s += ", " + b + ".<i>";
                          return s;
                        }(), ")");
    if (!t.defined()) ::protoseg::detail::fail<value_error>(who, "::load_state: tensor '", key, "' is undefined");
  }
  std::vector<std::int64_t> steps(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string key = "step." + std::to_string(i);
    auto it = index.find(key);
    if (it == index.end())
      ::protoseg::detail::fail<value_error>(who, "::load_state: missing key '", key, "' (the state must hold one step per parameter, ",
                        n, " in all)");
    const auto& t = *it->second;
    if (t.numel() != 1) ::protoseg::detail::fail<value_error>(who, "::load_state: '", key, "' has shape ", t.shape(), ", expected one element");
    const double s = static_cast<double>(t.item());
    if (!(s >= 0) || s != std::floor(s) || s > 9.0e15)
      ::protoseg::detail::fail<value_error>(who, "::load_state: '", key, "' is ", s, ", expected a whole number >= 0");
    steps[i] = static_cast<std::int64_t>(s);
    for (const auto& b : per_param) {
      const std::string bk = b + "." + std::to_string(i);
      auto bt = index.find(bk);
      if (steps[i] > 0 && bt == index.end())
        ::protoseg::detail::fail<value_error>(who, "::load_state: missing key '", bk, "' (", key, " is ", steps[i], ")");
      if (steps[i] == 0 && bt != index.end())
        ::protoseg::detail::fail<value_error>(who, "::load_state: unexpected key '", bk, "' (", key, " is 0, so it has no state yet)");
      if (bt != index.end() && bt->second->shape() != params[i].shape())
        ::protoseg::detail::fail<value_error>(who, "::load_state: '", bk, "' has shape ", bt->second->shape(), ", expected ",
                          params[i].shape(), " (the shape of parameter ", i, ")");
    }
  }
  return steps;
}

/// A step count as a one-element tensor (exact up to 2^24 for float).
template <class T, class P>
tensor<T, P> step_tensor(std::int64_t step) {
  const T v = static_cast<T>(step);
  return tensor<T, P>::from_data(&v, protoseg::shape{1});
}

}  // namespace optim_detail
}  // namespace protoseg::optim
