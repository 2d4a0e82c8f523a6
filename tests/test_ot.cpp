#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <protoseg/io/npy.hpp>
#include <protoseg/ot/assignment.hpp>
#include <protoseg/ot/greenkhorn.hpp>
#include <protoseg/ot/segmented.hpp>
#include <protoseg/ot/sinkhorn.hpp>
#include <protoseg/tensor/creation.hpp>
#include <protoseg/tensor/math.hpp>
#include <protoseg/tensor/random.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace protoseg;

namespace {

const std::string fixtures = std::string(PROTOSEG_FIXTURE_DIR) + "/sinkhorn/";

/// Relative tolerance of the golden comparisons (float and double alike).
constexpr double golden_rtol = 1e-5;

/// Largest |a - b| / |b| (b is the reference; tiny b compared absolutely).
template <class T>
double max_rel_error(const tensor<T>& a, const tensor<double>& ref) {
  REQUIRE(a.shape() == ref.shape());
  double worst = 0;
  for (std::int64_t k = 0; k < a.numel(); ++k) {
    const double r = ref.data()[k], x = double(a.data()[k]);
    if (!std::isfinite(x)) return INFINITY;
    worst = std::max(worst, std::abs(x - r) / std::max(std::abs(r), 1e-30));
  }
  return worst;
}

template <class T>
std::vector<double> column_sums(const tensor<T>& q) {
  const std::int64_t K = q.shape()[0], N = q.shape()[1];
  std::vector<double> c(static_cast<std::size_t>(N), 0.0);
  for (std::int64_t i = 0; i < K; ++i)
    for (std::int64_t j = 0; j < N; ++j) c[static_cast<std::size_t>(j)] += double(q(i, j));
  return c;
}

/// max_k |K / N * sum_n Q(k, n) - 1|, computed independently of the solver.
template <class T>
double row_marginal_error(const tensor<T>& q) {
  const std::int64_t K = q.shape()[0], N = q.shape()[1];
  double e = 0;
  for (std::int64_t i = 0; i < K; ++i) {
    double r = 0;
    for (std::int64_t j = 0; j < N; ++j) r += double(q(i, j));
    e = std::max(e, std::abs(r * double(K) / double(N) - 1.0));
  }
  return e;
}

template <class T>
bool all_finite_values(const tensor<T>& q) {
  for (std::int64_t k = 0; k < q.numel(); ++k)
    if (!std::isfinite(q.data()[k])) return false;
  return true;
}

struct golden {
  int iters;
  double kappa;
};

golden params_of(const std::string& name) {
  auto p = io::read_npy<double>(fixtures + name + "_params.npy");
  REQUIRE(p.numel() == 2);
  return {static_cast<int>(p.data()[0]), p.data()[1]};
}

template <class T>
tensor<T> uniform_scores(std::int64_t K, std::int64_t N, std::uint64_t seed, double scale = 1.0) {
  generator g(seed);
  auto s = tensor<T>::empty({K, N});
  for (std::int64_t k = 0; k < s.numel(); ++k) s.data()[k] = T((2 * g.uniform() - 1) * scale);
  return s;
}

/// Runs `f` with the cpu backend set to n threads, restoring the setting.
template <class F>
void with_threads(int n, F f) {
  const int old = num_threads();
  set_num_threads(n);
  f();
  set_num_threads(old);
}

}  // namespace

TEST_CASE_TEMPLATE("sinkhorn_knopp matches the Algorithm 1 golden fixtures", T, float, double) {
  for (const char* name : {"default", "one_iter", "many_iters", "wide"}) {
    CAPTURE(name);
    const golden g = params_of(name);
    const auto scores = io::read_npy_as<T>(fixtures + name + "_scores.npy");
    const auto ref = io::read_npy<double>(fixtures + name + "_Q.npy");
    const ot::sinkhorn_options o{.iterations = g.iters, .kappa = g.kappa};
    CHECK(max_rel_error(ot::sinkhorn_knopp(scores, o), ref) <= golden_rtol);
    auto r = ot::sinkhorn_solve(scores, o);
    CHECK(r.iterations == g.iters);
    CHECK(r.marginal_error == doctest::Approx(row_marginal_error(ref)).epsilon(1e-4));
    // The log-domain form gives the same answer where the plain one is finite.
    auto ol = o;
    ol.log_domain = true;
    CHECK(max_rel_error(ot::sinkhorn_knopp(scores, ol), ref) <= golden_rtol);
    // Columns sum to 1 (Algorithm 1 ends with L *= N).
    for (double c : column_sums(r.assignment)) CHECK(c == doctest::Approx(1.0).epsilon(1e-5));
  }
}

TEST_CASE("sinkhorn_knopp defaults are Algorithm 1's: 3 iterations, kappa 0.05") {
  const ot::sinkhorn_options o{};
  CHECK(o.iterations == 3);
  CHECK(o.kappa == 0.05);
  CHECK_FALSE(o.log_domain);
  CHECK(o.tolerance == 0.0);
  const auto scores = io::read_npy_as<double>(fixtures + "default_scores.npy");
  const auto ref = io::read_npy<double>(fixtures + "default_Q.npy");
  CHECK(max_rel_error(ot::sinkhorn_knopp(scores), ref) <= golden_rtol);
}

TEST_CASE_TEMPLATE("online_clustering forms P^T X and matches the golden fixture", T, float, double) {
  const golden g = params_of("online");
  const auto P = io::read_npy_as<T>(fixtures + "online_P.npy");
  const auto X = io::read_npy_as<T>(fixtures + "online_X.npy");
  const auto ref = io::read_npy<double>(fixtures + "online_Q.npy");
  const ot::sinkhorn_options o{.iterations = g.iters, .kappa = g.kappa};
  const auto Q = ot::online_clustering(P, X, o);
  CHECK(Q.shape() == shape{P.shape()[1], X.shape()[1]});
  CHECK(max_rel_error(Q, ref) <= golden_rtol);
  auto ol = o;
  ol.log_domain = true;
  CHECK(max_rel_error(ot::online_clustering_solve(P, X, ol).assignment, ref) <= golden_rtol);
}

TEST_CASE("the log domain stays finite where exp(score / kappa) overflows float") {
  // kappa = 0.005 and |score| <= 1: exp(200) overflows float; Algorithm 1 in
  // float32 returns inf / NaN there (the fixture script asserts it).
  const golden g = params_of("small_kappa");
  const auto scores = io::read_npy_as<float>(fixtures + "small_kappa_scores.npy");
  const auto ref = io::read_npy<double>(fixtures + "small_kappa_Q.npy");
  const ot::sinkhorn_options plain{.iterations = g.iters, .kappa = g.kappa};
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(scores, plain), doctest::Contains("set options.log_domain = true"),
                       value_error);
  auto o = plain;
  o.log_domain = true;
  const auto q = ot::sinkhorn_knopp(scores, o);
  CHECK(all_finite_values(q));
  // score / kappa ~ 200 is rounded to float: 1e-4 relative is what float can hold.
  CHECK(max_rel_error(q, ref) <= 1e-4);
  // In double the plain form is finite too, and both forms agree.
  const auto sd = io::read_npy_as<double>(fixtures + "small_kappa_scores.npy");
  CHECK(max_rel_error(ot::sinkhorn_knopp(sd, plain), ref) <= golden_rtol);
  CHECK(max_rel_error(ot::sinkhorn_knopp(sd, o), ref) <= golden_rtol);
}

TEST_CASE("kappa down to 1e-3 in float: finite, equipartitioned under a tolerance") {
  const auto s = uniform_scores<float>(10, 2000, 11);
  ot::sinkhorn_options o{.iterations = 3000, .kappa = 1e-3, .log_domain = true, .tolerance = 1e-3};
  CHECK_THROWS_AS(ot::sinkhorn_knopp(s, {.kappa = 1e-3}), value_error);
  const auto r = ot::sinkhorn_solve(s, o);
  CHECK(all_finite_values(r.assignment));
  CHECK(r.marginal_error <= 1e-3);
  CHECK(row_marginal_error(r.assignment) <= 2e-3);
  for (double c : column_sums(r.assignment)) CHECK(c == doctest::Approx(1.0).epsilon(1e-4));
}

TEST_CASE_TEMPLATE("a stopping tolerance reports the rounds used and the final marginal error", T, float, double) {
  const auto s = uniform_scores<T>(10, 5000, 3);
  for (bool log_domain : {false, true}) {
    CAPTURE(log_domain);
    const ot::sinkhorn_options o{.iterations = 1000, .kappa = 0.05, .log_domain = log_domain, .tolerance = 1e-4};
    const auto r = ot::sinkhorn_solve(s, o);
    CHECK(r.iterations > 3);
    CHECK(r.iterations < 1000);
    CHECK(r.marginal_error <= 1e-4);
    CHECK(row_marginal_error(r.assignment) == doctest::Approx(r.marginal_error).epsilon(0.05));
    for (double c : column_sums(r.assignment)) CHECK(c == doctest::Approx(1.0).epsilon(1e-5));
    // Same as running exactly that many rounds without a tolerance.
    const auto fixed = ot::sinkhorn_knopp(s, {.iterations = r.iterations, .kappa = 0.05});
    CHECK(max_abs_diff(fixed, r.assignment) <= 1e-5);
    // One round fewer is still above the tolerance (it stopped at the first round below).
    CHECK(ot::sinkhorn_solve(s, {.iterations = r.iterations - 1, .kappa = 0.05}).marginal_error > 1e-4);
  }
}

TEST_CASE_TEMPLATE("plain and log-domain solvers agree on random scores, any thread count", T, float, double) {
  const auto s = uniform_scores<T>(10, 10000, 5, 0.8);  // large enough to run on the team
  tensor<T> a1, a2, l2;
  with_threads(1, [&] { a1 = ot::sinkhorn_knopp(s); });
  with_threads(2, [&] {
    a2 = ot::sinkhorn_knopp(s);
    l2 = ot::sinkhorn_knopp(s, {.log_domain = true});
  });
  const double tol = sizeof(T) == 4 ? 2e-5 : 1e-12;
  double worst = 0, worst_l = 0;
  for (std::int64_t k = 0; k < s.numel(); ++k) {
    const double r = double(a1.data()[k]);
    worst = std::max(worst, std::abs(double(a2.data()[k]) - r) / std::max(r, 1e-30));
    worst_l = std::max(worst_l, std::abs(double(l2.data()[k]) - r) / std::max(r, 1e-30));
  }
  CHECK(worst <= tol);
  CHECK(worst_l <= (sizeof(T) == 4 ? 1e-4 : 1e-10));
}

TEST_CASE("an in-place solve (out == scores) equals the out-of-place one") {
  const auto s = uniform_scores<float>(7, 999, 9);
  const auto ref = ot::sinkhorn_knopp(s);
  auto work = s.clone();
  ot::sinkhorn_solve(work, work);
  CHECK(max_abs_diff(work, ref) == 0.0f);
}

TEST_CASE_TEMPLATE("segmented solver equals solving each class alone, empty classes allowed", T, float, double) {
  const std::int64_t M = 10;
  // Classes 0, 3 and 6 empty; sizes from 1 pixel to a few thousand.
  const std::vector<std::int64_t> offs = {0, 0, 1, 700, 700, 4000, 4013, 4013};
  const std::int64_t N = offs.back();
  const auto scores = uniform_scores<T>(N, M, 21);
  const auto off = tensor<std::int64_t>::from_vector(offs, {static_cast<std::int64_t>(offs.size())});
  for (bool log_domain : {false, true}) {
    for (double tol : {0.0, 1e-3}) {
      CAPTURE(log_domain);
      CAPTURE(tol);
      const ot::sinkhorn_options o{.iterations = tol > 0 ? 200 : 3, .log_domain = log_domain, .tolerance = tol};
      ot::segmented_result<T> r1, r2;
      with_threads(1, [&] { r1 = ot::segmented_sinkhorn(scores, off, o); });
      with_threads(2, [&] { r2 = ot::segmented_sinkhorn(scores, off, o); });
      CHECK(max_abs_diff(r1.assignment, r2.assignment) == T(0));  // classes never split across threads
      int most = 0;
      double worst = 0;
      for (std::size_t c = 0; c + 1 < offs.size(); ++c) {
        const std::int64_t b = offs[c], e = offs[c + 1];
        if (b == e) continue;
        const auto block = transpose(scores.narrow0(b, e)).clone();  // M x N_c, Algorithm 1's layout
        const auto alone = ot::sinkhorn_solve(block, o);
        most = std::max(most, alone.iterations);
        worst = std::max(worst, alone.marginal_error);
        const auto mine = transpose(r1.assignment.narrow0(b, e)).clone();
        CHECK(max_abs_diff(mine, alone.assignment) <= T(sizeof(T) == 4 ? 1e-5 : 1e-12));
        for (std::int64_t p = b; p < e; ++p) {
          double row = 0;
          for (std::int64_t m = 0; m < M; ++m) row += double(r1.assignment(p, m));
          CHECK(row == doctest::Approx(1.0).epsilon(1e-5));
        }
      }
      CHECK(r1.iterations == most);
      CHECK(r1.marginal_error == doctest::Approx(worst));
      if (tol > 0) CHECK(r1.marginal_error <= tol);
    }
  }
}

TEST_CASE("segmented solver: all classes empty, and one class equals the dense solver") {
  const auto none = ot::segmented_sinkhorn(tensor<float>::empty({0, 4}),
                                           tensor<std::int64_t>::from_vector({0, 0, 0}, {3}));
  CHECK(none.assignment.numel() == 0);
  CHECK(none.iterations == 0);
  const auto s = uniform_scores<double>(300, 5, 4);
  const auto seg = ot::segmented_sinkhorn(s, tensor<std::int64_t>::from_vector({0, 300}, {2})).assignment;
  const auto dense = ot::sinkhorn_knopp(transpose(s).clone());
  CHECK(max_abs_diff(transpose(seg).clone(), dense) <= 1e-14);
}

TEST_CASE_TEMPLATE("greenkhorn reaches the same transport plan as Sinkhorn-Knopp", T, float, double) {
  const auto s = uniform_scores<T>(6, 400, 8, 0.5);
  const auto g = ot::greenkhorn(s, {.iterations = 50, .kappa = 0.05, .tolerance = 1e-6});
  const auto sk = ot::sinkhorn_solve(s, {.iterations = 2000, .kappa = 0.05, .tolerance = 1e-7});
  CHECK(g.iterations >= 1);
  CHECK(g.marginal_error <= 1e-5);
  CHECK(row_marginal_error(g.assignment) <= 1e-5);
  for (double c : column_sums(g.assignment)) CHECK(c == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(max_abs_diff(g.assignment, sk.assignment) <= T(1e-4));
  // A single sweep is far from converged but still a valid column-stochastic plan.
  const auto one = ot::greenkhorn(s, {.iterations = 1});
  for (double c : column_sums(one.assignment)) CHECK(c == doctest::Approx(1.0).epsilon(1e-5));
  CHECK_THROWS_WITH_AS(ot::greenkhorn(s, {.kappa = 0}), doctest::Contains("options.kappa: got 0"), value_error);
}

TEST_CASE("assignments: argmax index, one-hot, deterministic by default") {
  // K x N = 3 x 4
  const auto q = tensor<double>::from_vector({0.1, 0.7, 0.2, 0.3,   //
                                              0.8, 0.2, 0.2, 0.3,   //
                                              0.1, 0.1, 0.6, 0.4},  //
                                             {3, 4});
  const auto idx = ot::assignment_index(q);
  CHECK(idx.to_vector() == std::vector<std::int64_t>{1, 0, 2, 2});
  const auto h = ot::harden(q);
  CHECK(h.sampled.to_vector() == idx.to_vector());
  CHECK(h.one_hot.to_vector() == std::vector<double>{0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1});
  // N x M layout (segmented): the same matrix transposed.
  const auto qt = transpose(q).clone();
  CHECK(ot::assignment_index(qt, 1).to_vector() == idx.to_vector());
  CHECK(ot::harden(qt, {.prototype_axis = 1}).one_hot.to_vector() == transpose(h.one_hot).clone().to_vector());
  // Ties go to the lowest prototype index.
  CHECK(ot::assignment_index(tensor<float>::from_vector({0.5f, 0.5f}, {2, 1})).to_vector() ==
        std::vector<std::int64_t>{0});
}

TEST_CASE("Gumbel-hard sampling is reproducible by seed and needs an explicit generator") {
  const auto q = ot::sinkhorn_knopp(uniform_scores<float>(10, 500, 2, 0.01));  // near-uniform Q
  generator g1(7), g2(7), g3(8);
  const ot::assignment_options a1{.mode = ot::sampling::gumbel, .gen = &g1};
  const ot::assignment_options a2{.mode = ot::sampling::gumbel, .gen = &g2};
  const ot::assignment_options a3{.mode = ot::sampling::gumbel, .gen = &g3};
  const auto h1 = ot::harden(q, a1), h2 = ot::harden(q, a2), h3 = ot::harden(q, a3);
  CHECK(h1.sampled.to_vector() == h2.sampled.to_vector());
  CHECK(h1.one_hot.to_vector() == h2.one_hot.to_vector());
  CHECK(h1.sampled.to_vector() != h3.sampled.to_vector());
  CHECK(h1.index.to_vector() == ot::assignment_index(q).to_vector());  // the target index stays the argmax
  CHECK(h1.sampled.to_vector() != h1.index.to_vector());              // noise changes some picks
  std::int64_t ones = 0;
  for (float v : h1.one_hot.to_vector()) ones += v == 1.0f;
  CHECK(ones == 500);
  CHECK_THROWS_WITH_AS(ot::harden(q, {.mode = ot::sampling::gumbel}),
                       doctest::Contains("options.gen: got nullptr, expected a seeded generator"), value_error);
}

TEST_CASE("bad input throws a clear error naming the argument") {
  const auto s = uniform_scores<float>(4, 10, 1);
  using doctest::Contains;
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(s, {.kappa = 0.0}), Contains("options.kappa: got 0, expected a finite value > 0"),
                       value_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(s, {.kappa = -0.5}), Contains("options.kappa: got -0.5"), value_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(s, {.kappa = NAN}), Contains("options.kappa: got nan"), value_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(s, {.iterations = 0}), Contains("options.iterations: got 0, expected >= 1"),
                       value_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(s, {.tolerance = -1}), Contains("options.tolerance: got -1"), value_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(s, {.kappa = 1e-300}), Contains("1 / kappa to be finite in float"),
                       value_error);
  for (bool log_domain : {false, true}) {
    CAPTURE(log_domain);
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      auto t = s.clone();
      t(2, 7) = bad;
      CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(t, {.log_domain = log_domain}),
                           Contains("sinkhorn_knopp: scores: contain NaN or infinite values"), value_error);
    }
  }
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(tensor<float>::empty({5})), Contains("scores: got shape"), shape_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(tensor<float>::empty({0, 5})), Contains("expected a K x N matrix"),
                       shape_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(tensor<float>{}), Contains("scores is undefined"), shape_error);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_solve(s, tensor<float>::empty({4, 9})),
                       Contains("out: got shape (4, 9), expected the shape of scores (4, 10)"), shape_error);
  // online clustering: P is D x K, X is D x N.
  CHECK_THROWS_WITH_AS(ot::online_clustering(tensor<float>(shape{8, 3}), tensor<float>(shape{7, 5})),
                       Contains("embeddings X: got shape (7, 5), expected D = 8"), shape_error);
  CHECK_THROWS_WITH_AS(ot::online_clustering(tensor<float>(shape{8}), tensor<float>(shape{8, 5})),
                       Contains("prototypes P: got shape (8,)"), shape_error);
  CHECK_THROWS_WITH_AS(ot::online_clustering(tensor<float>(shape{8, 3}), tensor<float>(shape{8, 5}), {.iterations = -2}),
                       Contains("online_clustering: options.iterations: got -2"), value_error);
}

TEST_CASE("segmented solver: bad offsets, shapes and scores") {
  using doctest::Contains;
  const auto s = uniform_scores<float>(10, 3, 1);
  auto off = [](std::vector<std::int64_t> v) {
    return tensor<std::int64_t>::from_vector(v, {static_cast<std::int64_t>(v.size())});
  };
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, off({1, 10})), Contains("offsets[0]: got 1, expected 0"), value_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, off({0, 6, 4, 10})),
                       Contains("offsets[2] = 4 < offsets[1] = 6, expected non-decreasing"), value_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, off({0, 4, 9})), Contains("offsets[2]: got 9, expected N = 10"),
                       value_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, tensor<std::int64_t>::from_vector({0, 10}, {1, 2})),
                       Contains("offsets: got shape (1, 2), expected a rank-1 int64 tensor"), shape_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, tensor<std::int64_t>::empty({0})), Contains("C + 1 >= 1"),
                       shape_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(tensor<float>::empty({10}), off({0, 10})),
                       Contains("scores: got shape (10,), expected an N x M matrix"), shape_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, off({0, 10}), tensor<float>::empty({10, 4})),
                       Contains("out: got shape (10, 4)"), shape_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, off({0, 10}), {.kappa = -1}), Contains("options.kappa: got -1"),
                       value_error);
  auto t = s.clone();
  t(6, 1) = NAN;
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(t, off({0, 4, 10})),
                       Contains("scores of class 1: contain NaN or infinite values"), value_error);
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, off({0, 4, 10}), {.kappa = 0.002}),
                       Contains("of class 0: exp(score / kappa) leaves the floating-point range"), value_error);
  CHECK_NOTHROW(ot::segmented_sinkhorn(s, off({0, 4, 10}), {.kappa = 0.002, .log_domain = true}));
}

TEST_CASE("assignments: bad input") {
  using doctest::Contains;
  CHECK_THROWS_WITH_AS(ot::assignment_index(tensor<float>(shape{3, 2}), 2), Contains("prototype_axis: got 2"),
                       value_error);
  CHECK_THROWS_WITH_AS(ot::assignment_index(tensor<float>(shape{3})), Contains("Q: got shape (3,)"), shape_error);
  auto q = tensor<float>(shape{2, 2});
  q(1, 1) = NAN;
  CHECK_THROWS_WITH_AS(ot::harden(q), Contains("Q: element 3 is nan, expected finite values"), value_error);
  CHECK_THROWS_WITH_AS(ot::one_hot_assignment<float>(tensor<std::int64_t>::from_vector({0, 3}, {2}), 3),
                       Contains("index[1]: got 3, expected 0 <= index < 3"), value_error);
  CHECK_THROWS_WITH_AS(ot::one_hot_assignment<float>(tensor<std::int64_t>::from_vector({0}, {1}), 0),
                       Contains("K: got 0, expected >= 1"), value_error);
}
