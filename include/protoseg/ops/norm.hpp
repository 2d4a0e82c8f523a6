#pragma once
/// \file ops/norm.hpp
/// Layer and batch normalisation (`nn::functional::layer_norm`,
/// `batch_norm`; F.layer_norm, F.batch_norm), each forward beside its
/// backward.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/backend/default.hpp"
#include "protoseg/ops/arithmetic.hpp"
#include "protoseg/ops/layout.hpp"
#include "protoseg/ops/reduction.hpp"
#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::nn {

namespace functional {
namespace detail_fn {

// ---- layer norm -------------------------------------------------------------------

template <class T, class P>
struct layer_norm_fn {
  static constexpr const char* name = "layer_norm";
  tensor<T, P> x, gamma, mean, rstd;
  std::int64_t rows, n;
  bool need_x, need_w, need_b;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    tensor<T, P> gx, gw, gb;
    if (need_x) {
      gx = tensor<T, P>::empty(x.shape());
      backend::norm<P>::layer_norm_backward(g.data(), x.data(), gamma.defined() ? gamma.data() : nullptr, mean.data(),
                                            rstd.data(), gx.data(), rows, n);
    }
    if (need_w || need_b) {
      if (need_w) gw = tensor<T, P>::empty({n});
      if (need_b) gb = tensor<T, P>::empty({n});
      backend::norm<P>::layer_norm_param_grads(g.data(), x.data(), mean.data(), rstd.data(),
                                               need_w ? gw.data() : nullptr, need_b ? gb.data() : nullptr, rows, n);
    }
    return {gx, gw, gb};
  }
};

// ---- batch norm -------------------------------------------------------------------

template <class T, class P>
struct batch_norm_fn {
  static constexpr const char* name = "batch_norm";
  tensor<T, P> x, gamma, mean, rstd;  // mean / rstd: batch statistics (training) or running ones
  std::int64_t n, c, hw;
  bool training, need_x, need_w, need_b;
  std::vector<tensor<T, P>> backward(const tensor<T, P>& g) {
    auto sg = tensor<T, P>::empty({c}), sgx = tensor<T, P>::empty({c});
    backend::norm<P>::channel_grad_sums(g.data(), x.data(), mean.data(), sg.data(), sgx.data(), n, c, hw);
    tensor<T, P> gx, gw, gb;
    const shape bc{1, c, 1};
    if (need_x) {
      auto scale = gamma.defined() ? gamma * rstd : rstd;
      auto g3 = g.reshape({n, c, hw});
      if (training) {
        const T m = static_cast<T>(n * hw);
        // dx = gamma rstd (g - sum_g / m - (x - mean) rstd^2 sum_gx / m)
        auto x3 = x.reshape({n, c, hw});
        auto coef = (sgx * rstd * rstd / m).reshape(bc);
        gx = (g3 - (sg / m).reshape(bc) - (x3 - mean.reshape(bc)) * coef) * scale.reshape(bc);
      } else {
        gx = g3 * scale.reshape(bc);
      }
      gx = gx.reshape(x.shape());
    }
    if (need_w) gw = sgx * rstd;
    if (need_b) gb = sg;
    return {gx, gw, gb};
  }
};

}  // namespace detail_fn

/// Layer normalisation over the last dimension (F.layer_norm with
/// normalized_shape = (x.size(-1),)): (x - mean) / sqrt(var + eps) * weight
/// + bias, biased variance. weight / bias (D) may be undefined.
template <class T, class P>
variable<T, P> layer_norm(const variable<T, P>& x, const variable<T, P>& weight = {}, const variable<T, P>& bias = {},
                          double eps = 1e-5) {
  if (!x.defined()) ::protoseg::detail::fail<value_error>("layer_norm: x is undefined");
  if (x.rank() < 1) ::protoseg::detail::fail<shape_error>("layer_norm: x must have rank >= 1, got a scalar");
  if (!(eps > 0)) ::protoseg::detail::fail<value_error>("layer_norm: eps is ", eps, ", expected > 0");
  const std::int64_t n = x.shape()[x.rank() - 1];
  if (n == 0) ::protoseg::detail::fail<shape_error>("layer_norm: the last dimension of ", x.shape(), " is empty");
  const std::int64_t rows = x.numel() / n;
  for (const auto* p : {&weight, &bias})
    if (p->defined() && !(p->shape() == shape{n}))
      ::protoseg::detail::fail<shape_error>("layer_norm: ", p == &weight ? "weight" : "bias", " has shape ",
                                            p->shape(), ", expected (", n, ",) to match x ", x.shape());
  auto y = tensor<T, P>::empty(x.shape());
  auto mean = tensor<T, P>::empty({rows}), rstd = tensor<T, P>::empty({rows});
  backend::norm<P>::layer_norm_forward(x.value().data(), weight.defined() ? weight.value().data() : nullptr,
                                       bias.defined() ? bias.value().data() : nullptr, y.data(), mean.data(),
                                       rstd.data(), rows, n, eps);
  detail_fn::layer_norm_fn<T, P> op{x.value(),
                                    weight.defined() ? weight.value() : tensor<T, P>(),
                                    mean,
                                    rstd,
                                    rows,
                                    n,
                                    x.requires_grad(),
                                    weight.defined() && weight.requires_grad(),
                                    bias.defined() && bias.requires_grad()};
  const variable<T, P> none(zeros<T, P>({n}), false);
  return ::protoseg::detail::record(y, std::move(op), x, weight.defined() ? weight : none, bias.defined() ? bias : none);
}

/// Batch normalisation over dimension 1 of x (N, C, ...), as F.batch_norm.
/// In training (or without running statistics) it normalises with the batch
/// mean and biased variance, and updates `running_mean` / `running_var` in
/// place when given: r = (1 - momentum) r + momentum s, with the unbiased
/// variance. Otherwise it uses the running statistics. weight / bias (C) may
/// be undefined.
template <class T, class P>
variable<T, P> batch_norm(const variable<T, P>& x, tensor<T, P> running_mean, tensor<T, P> running_var,
                          const variable<T, P>& weight = {}, const variable<T, P>& bias = {}, bool training = true,
                          double momentum = 0.1, double eps = 1e-5) {
  if (!x.defined()) ::protoseg::detail::fail<value_error>("batch_norm: x is undefined");
  if (x.rank() < 2) ::protoseg::detail::fail<shape_error>("batch_norm: x must have rank >= 2 (N, C, ...), got ", x.shape());
  if (!(eps > 0)) ::protoseg::detail::fail<value_error>("batch_norm: eps is ", eps, ", expected > 0");
  const std::int64_t n = x.shape()[0], c = x.shape()[1], hw = x.shape().product(2, x.rank());
  const shape cs{c};
  for (const auto* p : {&weight, &bias})
    if (p->defined() && !(p->shape() == cs))
      ::protoseg::detail::fail<shape_error>("batch_norm: ", p == &weight ? "weight" : "bias", " has shape ",
                                            p->shape(), ", expected (", c, ",)");
  for (const auto* t : {&running_mean, &running_var})
    if (t->defined() && !(t->shape() == cs))
      ::protoseg::detail::fail<shape_error>("batch_norm: ", t == &running_mean ? "running_mean" : "running_var",
                                            " has shape ", t->shape(), ", expected (", c, ",)");
  if (running_mean.defined() != running_var.defined())
    ::protoseg::detail::fail<value_error>("batch_norm: running_mean and running_var must both be given or both be undefined");
  const bool use_batch = training || !running_mean.defined();
  tensor<T, P> mean, var;
  if (use_batch) {
    if (n * hw <= 1)
      ::protoseg::detail::fail<value_error>("batch_norm: expected more than 1 value per channel when training, got input ",
                                            x.shape());
    mean = tensor<T, P>::empty(cs);
    var = tensor<T, P>::empty(cs);
    backend::norm<P>::channel_moments(x.value().data(), mean.data(), var.data(), n, c, hw);
    if (training && running_mean.defined()) {
      const T m = static_cast<T>(momentum), count = static_cast<T>(n * hw);
      running_mean.copy_(running_mean * (T(1) - m) + mean * m);
      running_var.copy_(running_var * (T(1) - m) + var * (count / (count - T(1))) * m);
    }
  } else {
    mean = running_mean.clone();
    var = running_var.clone();
  }
  auto rstd = map(var + static_cast<T>(eps), fn::bind_lhs<fn::divides, T>{{}, T(1)});
  rstd = map(rstd, fn::sqrt{});
  const shape bc{1, c, 1};
  auto x3 = x.value().reshape({n, c, hw});
  auto scale = weight.defined() ? weight.value() * rstd : rstd;
  auto shift = -mean * scale;
  if (bias.defined()) shift = shift + bias.value();
  auto y = (x3 * scale.reshape(bc) + shift.reshape(bc)).reshape(x.shape());
  detail_fn::batch_norm_fn<T, P> op{x.value(),
                                    weight.defined() ? weight.value() : tensor<T, P>(),
                                    mean,
                                    rstd,
                                    n,
                                    c,
                                    hw,
                                    use_batch,
                                    x.requires_grad(),
                                    weight.defined() && weight.requires_grad(),
                                    bias.defined() && bias.requires_grad()};
  const variable<T, P> none(zeros<T, P>(cs), false);
  return ::protoseg::detail::record(y, std::move(op), x, weight.defined() ? weight : none, bias.defined() ? bias : none);
}

}  // namespace functional
}  // namespace protoseg::nn
