#pragma once
/// \file greenkhorn.hpp
/// Greenkhorn (Altschuler, Weed and Rigollet, NeurIPS 2017): the greedy
/// coordinate form of Sinkhorn-Knopp, as an alternative solver for the
/// transport problem of Eq. 9 with Algorithm 1's marginals (rows N / K,
/// columns 1). Each update rescales the single row or column whose marginal
/// is furthest (in the divergence rho(a, x) = x - a + a log(a / x)) from its
/// target; the largest column violation is kept in a tournament tree.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "protoseg/backend/host_math.hpp"
#include "protoseg/ot/common.hpp"

namespace protoseg::ot {

namespace detail {

inline double greenkhorn_rho(double a, double x) { return x > 0 ? x - a + a * std::log(a / x) : std::numeric_limits<double>::infinity(); }

/// Max-tournament over n leaves (index of the largest value at node 1).
class tournament {
 public:
  explicit tournament(std::int64_t n) : n_(n) {
    size_ = 1;
    while (size_ < n) size_ <<= 1;
    val_.assign(static_cast<std::size_t>(size_), -std::numeric_limits<double>::infinity());
    idx_.assign(static_cast<std::size_t>(2 * size_), -1);
  }
  double& leaf(std::int64_t j) { return val_[static_cast<std::size_t>(j)]; }
  void rebuild() {
    for (std::int64_t j = 0; j < size_; ++j) idx_[static_cast<std::size_t>(size_ + j)] = j;
    for (std::int64_t k = size_ - 1; k >= 1; --k) idx_[static_cast<std::size_t>(k)] = better(2 * k, 2 * k + 1);
  }
  void update(std::int64_t j) {
    for (std::int64_t k = (size_ + j) / 2; k >= 1; k /= 2) idx_[static_cast<std::size_t>(k)] = better(2 * k, 2 * k + 1);
  }
  std::int64_t top() const { return idx_[1 < 2 * size_ ? 1 : 0]; }
  double top_value() const { return val_[static_cast<std::size_t>(top())]; }

 private:
  std::int64_t better(std::int64_t l, std::int64_t r) const {
    const std::int64_t a = idx_[static_cast<std::size_t>(l)], b = idx_[static_cast<std::size_t>(r)];
    return val_[static_cast<std::size_t>(b)] > val_[static_cast<std::size_t>(a)] ? b : a;
  }
  std::int64_t n_, size_;
  std::vector<double> val_;
  std::vector<std::int64_t> idx_;
};

}  // namespace detail

/// Greenkhorn on a K x N score matrix: options.iterations sweeps of K + N
/// greedy row/column updates (stopping early once every row and column
/// marginal is within options.tolerance, relative), then a final column
/// normalisation so that the result follows Algorithm 1's contract (columns
/// sum to 1); marginal_error is the row error of that result. Works on
/// exp((S - max S) / kappa): fails only where a whole row or column underflows.
template <class T>
sinkhorn_result<T> greenkhorn(const tensor<T>& scores, const sinkhorn_options& o = {}) {
  static_assert(std::is_floating_point_v<T>, "protoseg::ot::greenkhorn: T must be float or double");
  constexpr const char* who = "greenkhorn";
  detail::check_options(o, who);
  detail::check_matrix(scores, who, "scores", "K x N");
  const std::int64_t K = scores.shape()[0], N = scores.shape()[1];
  const T* S = scores.data();
  T smax = -std::numeric_limits<T>::infinity();
  for (std::int64_t k = 0; k < K * N; ++k) {
    if (!std::isfinite(S[k])) detail::raise(detail::status::non_finite_scores, who, o.kappa);
    smax = std::max(smax, S[k]);
  }
  tensor<T> out = tensor<T>::empty(scores.shape());
  T* E = out.data();
  const T inv_kappa = T(1.0 / o.kappa);
  double total = 0;
  for (std::int64_t k = 0; k < K * N; ++k) {
    E[k] = backend::fast_exp((S[k] - smax) * inv_kappa);
    total += E[k];
  }
  const std::size_t ks = static_cast<std::size_t>(K), ns = static_cast<std::size_t>(N);
  std::vector<double> u(ks, 1.0 / total), v(ns, 1.0), rs(ks), cs(ns);
  const double a = 1.0 / double(K), b = 1.0 / double(N);
  auto recompute = [&]() {
    std::fill(cs.begin(), cs.end(), 0.0);
    for (std::int64_t i = 0; i < K; ++i) {
      double r = 0;
      for (std::int64_t j = 0; j < N; ++j) {
        const double x = double(E[i * N + j]) * u[static_cast<std::size_t>(i)] * v[static_cast<std::size_t>(j)];
        r += x;
        cs[static_cast<std::size_t>(j)] += x;
      }
      rs[static_cast<std::size_t>(i)] = r;
    }
  };
  recompute();
  for (std::int64_t i = 0; i < K; ++i)
    if (!(rs[static_cast<std::size_t>(i)] > 0)) detail::raise(detail::status::out_of_range, who, o.kappa);
  for (std::int64_t j = 0; j < N; ++j)
    if (!(cs[static_cast<std::size_t>(j)] > 0)) detail::raise(detail::status::out_of_range, who, o.kappa);
  detail::tournament cols(N);
  auto rebuild = [&]() {
    for (std::int64_t j = 0; j < N; ++j) cols.leaf(j) = detail::greenkhorn_rho(b, cs[static_cast<std::size_t>(j)]);
    cols.rebuild();
  };
  rebuild();
  int sweeps = 0;
  for (int sweep = 1; sweep <= o.iterations; ++sweep) {
    sweeps = sweep;
    for (std::int64_t step = 0; step < K + N; ++step) {
      std::int64_t bi = 0;
      double best_row = -1;
      for (std::int64_t i = 0; i < K; ++i) {
        const double r = detail::greenkhorn_rho(a, rs[static_cast<std::size_t>(i)]);
        if (r > best_row) best_row = r, bi = i;
      }
      const std::int64_t bj = cols.top();
      const double best_col = cols.top_value();
      if (std::max(best_row, best_col) <= 0) break;
      if (best_row >= best_col) {
        const std::size_t is = static_cast<std::size_t>(bi);
        const double f = a / rs[is];
        const double du = u[is] * (f - 1.0);
        for (std::int64_t j = 0; j < N; ++j)
          cs[static_cast<std::size_t>(j)] += double(E[bi * N + j]) * du * v[static_cast<std::size_t>(j)];
        u[is] *= f;
        rs[is] = a;
        rebuild();
      } else {
        const std::size_t js = static_cast<std::size_t>(bj);
        const double g = b / cs[js];
        const double dv = v[js] * (g - 1.0);
        for (std::int64_t i = 0; i < K; ++i)
          rs[static_cast<std::size_t>(i)] += double(E[i * N + bj]) * u[static_cast<std::size_t>(i)] * dv;
        v[js] *= g;
        cs[js] = b;
        cols.leaf(bj) = 0.0;
        cols.update(bj);
      }
    }
    recompute();  // no drift from the incremental updates
    rebuild();
    if (o.tolerance > 0) {
      double dev = 0;
      for (double r : rs) dev = std::max(dev, std::abs(r / a - 1.0));
      for (double c : cs) dev = std::max(dev, std::abs(c / b - 1.0));
      if (dev <= o.tolerance) break;
    }
  }
  // Final column normalisation (Algorithm 1 returns columns summing to 1).
  std::vector<double> col(ns, 0.0), row(ks, 0.0);
  for (std::int64_t i = 0; i < K; ++i)
    for (std::int64_t j = 0; j < N; ++j) col[static_cast<std::size_t>(j)] += double(E[i * N + j]) * u[static_cast<std::size_t>(i)];
  for (std::int64_t i = 0; i < K; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      const double q = double(E[i * N + j]) * u[static_cast<std::size_t>(i)] / col[static_cast<std::size_t>(j)];
      E[i * N + j] = T(q);
      row[static_cast<std::size_t>(i)] += q;
    }
  sinkhorn_result<T> res;
  res.iterations = sweeps;
  for (double r : row) res.marginal_error = std::max(res.marginal_error, std::abs(r * double(K) / double(N) - 1.0));
  res.assignment = std::move(out);
  return res;
}

}  // namespace protoseg::ot
