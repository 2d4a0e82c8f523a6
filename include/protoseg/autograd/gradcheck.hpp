#pragma once
/// \file gradcheck.hpp
/// `gradcheck`: compares the gradients that backward() computes with central
/// finite differences, in double precision.

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/tensor/creation.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg {

/// Tolerances and step of `gradcheck`.
struct gradcheck_options {
  double eps = 1e-6;   ///< finite-difference step
  double atol = 1e-6;  ///< absolute tolerance
  double rtol = 1e-4;  ///< relative tolerance
  std::uint64_t seed = 7;  ///< seed of the random output weights
};

/// The outcome of `gradcheck`: `ok`, the worst error, and a message naming
/// the input and element where analytic and numeric gradients differ most.
struct gradcheck_result {
  bool ok = true;
  double max_abs_error = 0;
  std::string message;
  explicit operator bool() const noexcept { return ok; }
};

/// Checks d(sum(w * f(inputs)))/d(inputs) against central differences for
/// every element of every input, with fixed random weights w so that all
/// output elements matter. `f` maps the input variables to one output.
template <class P = cpu>
gradcheck_result gradcheck(const std::function<variable<double, P>(const std::vector<variable<double, P>>&)>& f,
                           const std::vector<tensor<double, P>>& inputs, const gradcheck_options& opt = {}) {
  gradcheck_result res;
  std::vector<variable<double, P>> vars;
  for (const auto& t : inputs) vars.emplace_back(t.clone(), true);
  auto out = f(vars);
  generator gen(opt.seed);
  const auto w = rand<double, P>(out.shape(), gen, 0.5, 1.5);
  if (!out.requires_grad()) {
    res.ok = false;
    res.message = "gradcheck: the output does not depend on any input through recorded operations";
    return res;
  }
  out.backward(w);

  auto objective = [&](const std::vector<tensor<double, P>>& xs) {
    no_grad guard;
    std::vector<variable<double, P>> vs;
    for (const auto& t : xs) vs.emplace_back(t, false);
    return sum(f(vs).value() * w).item();
  };

  for (std::size_t i = 0; i < inputs.size(); ++i) {
    std::vector<tensor<double, P>> xs;
    for (const auto& t : inputs) xs.push_back(t.clone());
    std::vector<double> host = xs[i].to_vector();
    const std::vector<double> analytic =
        vars[i].has_grad() ? vars[i].grad().to_vector() : std::vector<double>(host.size(), 0.0);
    for (std::size_t k = 0; k < host.size(); ++k) {
      const double orig = host[k];
      host[k] = orig + opt.eps;
      xs[i] = tensor<double, P>::from_vector(host, inputs[i].shape());
      const double fp = objective(xs);
      host[k] = orig - opt.eps;
      xs[i] = tensor<double, P>::from_vector(host, inputs[i].shape());
      const double fm = objective(xs);
      host[k] = orig;
      const double numeric = (fp - fm) / (2 * opt.eps);
      const double err = std::abs(numeric - analytic[k]);
      if (err > res.max_abs_error) res.max_abs_error = err;
      if (!(err <= opt.atol + opt.rtol * std::abs(numeric)) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "gradcheck: input " << i << " element " << k << ": analytic " << analytic[k] << " vs numeric "
           << numeric << " (error " << err << ")";
        res.message = os.str();
      }
    }
  }
  return res;
}

}  // namespace protoseg
