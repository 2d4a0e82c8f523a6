#pragma once
// Shared harness of the cuda-vs-cpu parity suites (test_cuda.cpp,
// test_cuda_nn.cpp): compare a computation on both policies, on identical
// inputs, forward and gradients.

#include <doctest/doctest.h>

#include <protoseg/cuda.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace cuda_parity_harness {
using namespace protoseg;
using protoseg::cuda;  // libcu++ declares a global namespace ::cuda

/// Ops and layers: cpu and cuda agree within 1e-5 relative.
inline constexpr double op_rtol = 1e-5;
/// Composed modules in float: within 1e-4 relative.
inline constexpr double model_rtol = 1e-4;

template <class T, class P>
std::vector<double> host(const tensor<T, P>& t) {
  auto v = t.to_vector();
  return {v.begin(), v.end()};
}

/// Same shape, and |got - ref| <= rtol * (|ref| + 1) everywhere (NaN matches NaN).
template <class A, class B>
bool agree(const A& got, const B& ref, double rtol = op_rtol) {
  if (!(got.shape() == ref.shape())) return false;
  const auto g = host(got), r = host(ref);
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(r[i]) && std::isnan(g[i])) continue;
    if (!(std::abs(g[i] - r[i]) <= rtol * (std::abs(r[i]) + 1))) return false;
  }
  return true;
}

/// Where got and ref disagree: the shapes, or the first element outside the
/// tolerance with both values and the largest difference (for failure messages).
template <class A, class B>
std::string disagreement(const A& got, const B& ref, double rtol = op_rtol) {
  std::ostringstream os;
  os.precision(9);
  if (!(got.shape() == ref.shape())) {
    os << "shapes differ: got " << got.shape() << ", expected " << ref.shape();
    return os.str();
  }
  const auto g = host(got), r = host(ref);
  std::size_t first = g.size(), worst = 0;
  double worst_diff = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(r[i]) && std::isnan(g[i])) continue;
    const double d = std::abs(g[i] - r[i]);
    if (!(d <= rtol * (std::abs(r[i]) + 1)) && first == g.size()) first = i;
    if (!(d <= worst_diff)) worst_diff = d, worst = i;
  }
  if (first == g.size()) return "agree";
  os << "shape " << ref.shape() << ", element " << first << ": got " << g[first] << ", expected " << r[first]
     << "; largest difference " << worst_diff << " at element " << worst << " (rtol " << rtol << ")";
  return os.str();
}

/// Runs f on cpu tensors and on the same values as cuda tensors; compares.
template <class F, class... Ts>
void parity(F f, const Ts&... in) {
  auto ref = f(in...);
  auto got = f(in.template to<cuda>()...);
  const bool ok = agree(got, ref);
  CHECK_MESSAGE(ok, disagreement(got, ref));
}

/// f on cpu variables and on the same values as cuda variables: the value
/// and the gradient of every input must agree.
template <class F>
void grad_parity(F f, const std::vector<tensor<double>>& in, double rtol = op_rtol) {
  std::vector<variable<double, cpu>> vc;
  std::vector<variable<double, cuda>> vg;
  for (const auto& t : in) {
    vc.emplace_back(t.clone(), true);
    vg.emplace_back(t.to<cuda>(), true);
  }
  auto oc = f(vc);
  auto og = f(vg);
  REQUIRE_MESSAGE(agree(og.value(), oc.value(), rtol), disagreement(og.value(), oc.value(), rtol));
  generator gen(11);
  auto w = rand<double>(oc.shape(), gen, 0.5, 1.5);
  oc.backward(w);
  og.backward(w.template to<cuda>());
  for (std::size_t i = 0; i < in.size(); ++i) {
    CAPTURE(i);
    REQUIRE(vc[i].has_grad() == vg[i].has_grad());
    if (vc[i].has_grad()) CHECK_MESSAGE(agree(vg[i].grad(), vc[i].grad(), rtol), disagreement(vg[i].grad(), vc[i].grad(), rtol));
  }
}

inline tensor<double> rnd(shape s, std::uint64_t seed, double lo = -1, double hi = 1) {
  generator g(seed);
  return rand<double>(s, g, lo, hi);
}
inline tensor<float> rndf(shape s, std::uint64_t seed, float lo = -1, float hi = 1) {
  generator g(seed);
  return rand<float>(s, g, lo, hi);
}

}  // namespace cuda_parity_harness
