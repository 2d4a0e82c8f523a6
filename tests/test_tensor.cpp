// Tensors on the cpu backend: creation, views, layout, arithmetic with
// broadcasting, reductions, matrix products, printing, raw buffers, errors.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <sstream>

using namespace protoseg;
using protoseg_test::close;

#define FLOAT_TYPES float, double

TEST_CASE_TEMPLATE("creation: zeros, ones, full, arange", T, FLOAT_TYPES) {
  auto z = zeros<T>({2, 3});
  CHECK(z.shape() == shape{2, 3});
  CHECK(z.numel() == 6);
  CHECK(close(z, std::vector<double>(6, 0.0)));
  CHECK(close(ones<T>({4}), std::vector<double>(4, 1.0)));
  CHECK(close(full<T>({2, 2}, T(2.5)), {2.5, 2.5, 2.5, 2.5}));
  CHECK(close(arange<T>(0, 5), {0, 1, 2, 3, 4}));
  CHECK(close(arange<T>(1, 2, T(0.25)), {1, 1.25, 1.5, 1.75}));
  CHECK(close(arange<T>(3, 0, T(-1)), {3, 2, 1}));
  CHECK(arange<T>(2, 2).numel() == 0);
  tensor<T> t({3});
  CHECK(close(t, {0, 0, 0}));  // the shape constructor zero-fills
  CHECK_FALSE(tensor<T>().defined());
}

TEST_CASE("random tensors are reproducible for a seed and have the right moments") {
  generator g1(123), g2(123), g3(124);
  auto a = randn<double>({1000}, g1);
  auto b = randn<double>({1000}, g2);
  auto c = randn<double>({1000}, g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  CHECK(std::abs(mean(a).item()) < 0.1);
  CHECK(std::abs(mean(a * a).item() - 1.0) < 0.1);
  generator g4(5);
  auto u = rand<float>({2000}, g4, -1.f, 3.f);
  CHECK(min(u, 0).item() >= -1.f);
  CHECK(max(u, 0).item() < 3.f);
  CHECK(std::abs(mean(u).item() - 1.f) < 0.1f);
  auto tn = trunc_normal<float>({2000}, g4, 1.f, -2.f, 2.f);
  CHECK(min(tn, 0).item() >= -2.f);
  CHECK(max(tn, 0).item() <= 2.f);
}

TEST_CASE_TEMPLATE("reshape is a view, clone is a copy", T, FLOAT_TYPES) {
  auto a = arange<T>(0, 6);
  auto b = a.reshape({2, 3});
  CHECK(b.shares_storage_with(a));
  b(1, 2) = T(42);
  CHECK(a(5) == T(42));
  auto c = a.reshape({-1, 2});
  CHECK(c.shape() == shape{3, 2});
  auto d = a.clone();
  d(0) = T(-1);
  CHECK(a(0) == T(0));
  CHECK_FALSE(d.shares_storage_with(a));
  CHECK(a.flatten().shape() == shape{6});
}

TEST_CASE_TEMPLATE("select and narrow0 are views along dimension 0", T, FLOAT_TYPES) {
  auto a = arange<T>(0, 24).reshape({2, 3, 4});
  auto s = a[1];
  CHECK(s.shape() == shape{3, 4});
  CHECK(s(0, 0) == T(12));
  s(0, 0) = T(-5);
  CHECK(a(1, 0, 0) == T(-5));
  CHECK(a.select(-1).shape() == shape{3, 4});
  auto n = a.reshape({6, 4}).narrow0(2, 4);
  CHECK(n.shape() == shape{2, 4});
  CHECK(n(0, 0) == T(8));
}

TEST_CASE_TEMPLATE("permute and transpose", T, FLOAT_TYPES) {
  auto a = arange<T>(0, 24).reshape({2, 3, 4});
  auto p = permute(a, {2, 0, 1});
  CHECK(p.shape() == shape{4, 2, 3});
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) CHECK(p(k, i, j) == a(i, j, k));
  auto t = transpose(arange<T>(0, 6).reshape({2, 3}));
  CHECK(t.shape() == shape{3, 2});
  CHECK(close(t, {0, 3, 1, 4, 2, 5}));
  CHECK(close(permute(a, {-3, -2, -1}), a));
}

TEST_CASE_TEMPLATE("slice, index and concat along any axis", T, FLOAT_TYPES) {
  auto a = arange<T>(0, 24).reshape({2, 3, 4});
  auto s = slice(a, 2, 1, 3);
  CHECK(s.shape() == shape{2, 3, 2});
  CHECK(s(1, 2, 0) == a(1, 2, 1));
  CHECK(slice(a, 1, -2, 3).shape() == shape{2, 2, 4});
  CHECK(slice(a, 0, 1, 1).numel() == 0);
  auto ix = index(a, 1, 2);
  CHECK(ix.shape() == shape{2, 4});
  CHECK(ix(1, 3) == a(1, 2, 3));
  CHECK(index(a, -1, -1)(0, 0) == a(0, 0, 3));
  auto c = concat<T>({slice(a, 1, 0, 1), slice(a, 1, 1, 3)}, 1);
  CHECK(close(c, a));
  auto c0 = concat<T>({a, a}, 0);
  CHECK(c0.shape() == shape{4, 3, 4});
  CHECK(c0(3, 2, 1) == a(1, 2, 1));
  auto c2 = concat<T>({a, slice(a, 2, 0, 1)}, -1);
  CHECK(c2.shape() == shape{2, 3, 5});
  CHECK(c2(1, 1, 4) == a(1, 1, 0));
}

TEST_CASE_TEMPLATE("elementwise arithmetic broadcasts like numpy", T, FLOAT_TYPES) {
  auto a = arange<T>(0, 6).reshape({2, 3});
  auto row = tensor<T>::from_vector({10, 20, 30}, {3});
  auto col = tensor<T>::from_vector({1, 2}, {2, 1});
  CHECK(close(a + row, {10, 21, 32, 13, 24, 35}));
  CHECK(close(a - col, {-1, 0, 1, 1, 2, 3}));
  CHECK(close(a * col, {0, 1, 2, 6, 8, 10}));
  CHECK(close(row / col, {10, 20, 30, 5, 10, 15}));  // (3) with (2,1) -> (2,3)
  CHECK(close(a * T(2) + T(1), {1, 3, 5, 7, 9, 11}));
  CHECK(close(T(1) - a, {1, 0, -1, -2, -3, -4}));
  CHECK(close(T(6) / (a + T(1)), {6, 3, 2, 1.5, 1.2, 1}));
  CHECK(close(-a, {0, -1, -2, -3, -4, -5}));
  auto scalar = full<T>(shape{}, T(3));
  CHECK(close(a * scalar, {0, 3, 6, 9, 12, 15}));
  auto b3 = arange<T>(0, 4).reshape({2, 1, 2});
  auto r = b3 + arange<T>(0, 3).reshape({3, 1});
  CHECK(r.shape() == shape{2, 3, 2});
  CHECK(r(1, 2, 1) == T(3 + 2));
  CHECK(close(maximum(a, full<T>({1}, T(2.5))), {2.5, 2.5, 2.5, 3, 4, 5}));
  CHECK(close(eq(a, full<T>({1}, T(4))), {0, 0, 0, 0, 1, 0}));
}

TEST_CASE_TEMPLATE("unary functions", T, FLOAT_TYPES) {
  auto x = tensor<T>::from_vector({-2, -0.5, 0, 0.5, 2}, {5});
  std::vector<double> e, g, s;
  for (double v : {-2.0, -0.5, 0.0, 0.5, 2.0}) {
    e.push_back(std::exp(v));
    g.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
    s.push_back(1 / (1 + std::exp(-v)));
  }
  CHECK(close(exp(x), e));
  CHECK(close(gelu(x), g));
  CHECK(close(sigmoid(x), s));
  CHECK(close(relu(x), {0, 0, 0, 0.5, 2}));
  CHECK(close(abs(x), {2, 0.5, 0, 0.5, 2}));
  CHECK(close(log(exp(x)), x));
  CHECK(close(sqrt(x * x), abs(x)));
  CHECK(close(pow(x, T(2)), x * x));
  CHECK(close(clamp(x, T(-1), T(1)), {-1, -0.5, 0, 0.5, 1}));
  CHECK(sigmoid(full<T>({1}, T(-1000))).item() == T(0));  // no overflow
}

TEST_CASE_TEMPLATE("reductions along an axis", T, FLOAT_TYPES) {
  auto a = arange<T>(0, 24).reshape({2, 3, 4});
  auto s1 = sum(a, 1);
  CHECK(s1.shape() == shape{2, 4});
  CHECK(s1(1, 2) == a(1, 0, 2) + a(1, 1, 2) + a(1, 2, 2));
  CHECK(sum(a, -1, true).shape() == shape{2, 3, 1});
  CHECK(sum(a).item() == T(276));
  CHECK(sum(a).rank() == 0);
  CHECK(mean(a).item() == T(11.5));
  CHECK(close(mean(a, 0), (slice(a, 0, 0, 1) + slice(a, 0, 1, 2)).reshape({3, 4}) / T(2)));
  auto b = tensor<T>::from_vector({3, 9, 9, 1, -4, 2}, {2, 3});
  CHECK(close(max(b, 1), {9, 2}));
  CHECK(close(min(b, 1), {3, -4}));
  auto am = argmax(b, 1);
  CHECK(am.to_vector() == std::vector<std::int64_t>{1, 2});  // first maximum wins
  auto am0 = argmax(b, 0, true);
  CHECK(am0.shape() == shape{1, 3});
  CHECK(am0.to_vector() == std::vector<std::int64_t>{0, 0, 0});
  auto mw = max_with_indices(a, 2);
  CHECK(close(mw.values, slice(a, 2, 3, 4).reshape({2, 3})));
  CHECK(sum(zeros<T>({0, 3}), 0).shape() == shape{3});
  CHECK(close(sum_to(ones<T>({2, 3, 4}), {3, 1}), std::vector<double>(3, 8.0)));
  CHECK(close(broadcast_to(tensor<T>::from_vector({1, 2}, {2, 1}), {2, 3}), {1, 1, 1, 2, 2, 2}));
}

TEST_CASE("a long float row sums to float precision") {
  // 1e6 values in [0, 1]: straight float accumulation drifts by ~2.6 here
  // (the running sum's ulp grows to 0.03); the blocked sum stays within a
  // couple of ulps of the exact sum, 1e-7 relative.
  generator g(8);
  auto x = rand<float>({1000000}, g, 0.f, 1.f);
  double exact = 0, first = 0;
  const auto v = x.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) exact += v[i], first += i < 500000 ? v[i] : 0.0;
  CHECK(std::abs(double(sum(x).item()) - exact) <= 1e-7 * exact);
  const auto rows = sum(x.reshape({2, 500000}), 1).to_vector();
  CHECK(std::abs(double(rows[0]) - first) <= 1e-7 * first);
  CHECK(std::abs(double(mean(x).item()) - exact / 1e6) <= 1e-7 * exact / 1e6);
}

TEST_CASE("argmax propagates NaN like PyTorch") {
  auto x = tensor<float>::from_vector({1.f, NAN, 3.f}, {3});
  CHECK(argmax(x, 0).item() == 1);
  CHECK_FALSE(all_finite(x));
  CHECK(all_finite(ones<float>({3})));
}

namespace {
template <class T>
std::vector<double> naive_matmul(const std::vector<T>& a, const std::vector<T>& b, int m, int k, int n) {
  std::vector<double> c(static_cast<std::size_t>(m * n), 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) c[i * n + j] += double(a[i * k + p]) * double(b[p * n + j]);
  return c;
}
}  // namespace

TEST_CASE_TEMPLATE("matmul, transposed operands and batches", T, FLOAT_TYPES) {
  generator g(3);
  const int m = 7, k = 5, n = 9;
  auto a = randn<T>({m, k}, g);
  auto b = randn<T>({k, n}, g);
  const auto ref = naive_matmul(a.to_vector(), b.to_vector(), m, k, n);
  CHECK(close(matmul(a, b), ref));
  CHECK(close(matmul(transpose(a), b, true, false), ref));
  CHECK(close(matmul(a, transpose(b), false, true), ref));
  CHECK(close(matmul(transpose(a), transpose(b), true, true), ref));
  // batched: (3, m, k) x (3, k, n), and a plain matrix broadcast over the batch
  auto A = randn<T>({3, m, k}, g);
  auto B = randn<T>({3, k, n}, g);
  auto C = matmul(A, B);
  CHECK(C.shape() == shape{3, m, n});
  for (int i = 0; i < 3; ++i) {
    CHECK(close(C[i], naive_matmul(A[i].to_vector(), B[i].to_vector(), m, k, n)));
    CHECK(close(matmul(A, b)[i], naive_matmul(A[i].to_vector(), b.to_vector(), m, k, n)));
    CHECK(close(matmul(a, B)[i], naive_matmul(a.to_vector(), B[i].to_vector(), m, k, n)));
  }
  auto A4 = randn<T>({2, 2, m, k}, g);
  auto B4 = randn<T>({2, 2, k, n}, g);
  CHECK(close(matmul(A4, B4)[1][0], naive_matmul(A4[1][0].to_vector(), B4[1][0].to_vector(), m, k, n)));
  CHECK(close(matmul(zeros<T>({2, 0}), zeros<T>({0, 3})), std::vector<double>(6, 0.0)));
}

TEST_CASE_TEMPLATE("softmax, log_softmax and l2_normalize", T, FLOAT_TYPES) {
  auto x = tensor<T>::from_vector({1, 2, 3, -1, 0, 1000}, {2, 3});
  auto s = softmax(x, 1);
  CHECK(close(sum(s, 1), {1, 1}));
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  CHECK(close(slice(s, 0, 0, 1), {std::exp(1.0) / z, std::exp(2.0) / z, std::exp(3.0) / z}));
  CHECK(s(1, 2) == T(1));  // stable for large inputs
  CHECK(close(slice(log_softmax(x, 1), 0, 1, 2), {-1001, -1000, 0}));  // log(softmax) would give -inf
  CHECK(close(slice(log_softmax(x, 1), 0, 0, 1), slice(log(s), 0, 0, 1)));
  CHECK(all_finite(log_softmax(x, 1)));
  auto s0 = softmax(x.reshape({2, 3, 1}), 0);
  CHECK(close(sum(s0, 0), std::vector<double>(3, 1.0)));
  auto n = l2_normalize(tensor<T>::from_vector({3, 4, 0, 0}, {2, 2}), 1);
  CHECK(close(n, {0.6, 0.8, 0, 0}));
}

TEST_CASE("wrapping and copying raw buffers") {
  std::vector<float> buf{1, 2, 3, 4, 5, 6};
  auto w = tensor<float>::wrap(buf.data(), {2, 3});
  w(0, 0) = 10.f;
  CHECK(buf[0] == 10.f);  // no copy
  auto c = tensor<float>::from_data(buf.data(), {3, 2});
  buf[1] = -1.f;
  CHECK(c(0, 1) == 2.f);  // a copy
  std::vector<float> out(6);
  c.copy_to(out.data());
  CHECK(out == std::vector<float>{10, 2, 3, 4, 5, 6});
  auto d = zeros<float>({3, 2});
  d.copy_(c);
  CHECK(d.to_vector() == c.to_vector());
  CHECK(c.to<cpu>().shares_storage_with(c));
  auto i = cast<std::int64_t>(c);
  CHECK(i.to_vector() == std::vector<std::int64_t>{10, 2, 3, 4, 5, 6});
}

TEST_CASE("printing shows values, shape and policy") {
  std::ostringstream os;
  os << arange<float>(0, 4).reshape({2, 2});
  CHECK(os.str() == "tensor([[0, 1],\n        [2, 3]], shape=(2, 2), policy=cpu)");
  std::ostringstream big;
  big << arange<double>(0, 100);
  CHECK(big.str().find("...") != std::string::npos);
  std::ostringstream sc;
  sc << full<float>(shape{}, 2.5f);
  CHECK(sc.str() == "tensor(2.5, shape=(), policy=cpu)");
  std::ostringstream sh;
  sh << shape{3};
  CHECK(sh.str() == "(3,)");
}

// ---- bad input -----------------------------------------------------------------

TEST_CASE("bad shapes and broadcasts give clear errors") {
  auto a = zeros<float>({2, 3});
  auto b = zeros<float>({4, 3});
  CHECK_THROWS_WITH_AS(a + b, doctest::Contains("add: shapes (2, 3) and (4, 3) cannot be broadcast"), shape_error);
  CHECK_THROWS_WITH_AS(matmul(a, b), doctest::Contains("matmul: inner dimensions differ"), shape_error);
  CHECK_THROWS_WITH_AS(matmul(zeros<float>({3}), b), doctest::Contains("need rank >= 2"), shape_error);
  CHECK_THROWS_WITH_AS(matmul(zeros<float>({2, 2, 3}), zeros<float>({3, 3, 4})),
                       doctest::Contains("batch dimensions"), shape_error);
  CHECK_THROWS_WITH_AS(a.reshape({4, 2}), doctest::Contains("has 8 elements, the tensor of shape (2, 3) has 6"),
                       shape_error);
  CHECK_THROWS_WITH_AS(a.reshape({-1, -1}), doctest::Contains("more than one dimension is -1"), shape_error);
  CHECK_THROWS_WITH_AS(a.reshape({-1, 4}), doctest::Contains("cannot infer"), shape_error);
  CHECK_THROWS_WITH_AS(concat<float>({a, zeros<float>({2, 4})}, 0), doctest::Contains("tensor 1 has shape (2, 4)"),
                       shape_error);
  CHECK_THROWS_WITH_AS(concat<float>({}, 0), doctest::Contains("no tensors"), shape_error);
  CHECK_THROWS_WITH_AS(tensor<float>::from_vector({1, 2, 3}, {2, 2}), doctest::Contains("3 values given"),
                       shape_error);
  CHECK_THROWS_WITH_AS((shape{1, 2, 3, 4, 5, 6}), doctest::Contains("rank 6 exceeds the maximum rank 5"),
                       shape_error);
  CHECK_THROWS_WITH_AS((shape{2, -3}), doctest::Contains("dimension 1 is -3"), shape_error);
  CHECK_THROWS_WITH_AS(permute(a, {0}), doctest::Contains("1 axes given for a tensor of rank 2"), shape_error);
  CHECK_THROWS_WITH_AS(a.item(), doctest::Contains("expected a tensor of one element"), shape_error);
  CHECK_THROWS_WITH_AS(sum_to(a, {4}), doctest::Contains("does not broadcast"), shape_error);
  CHECK_THROWS_WITH_AS(a(0), doctest::Contains("1 indices given for a tensor of rank 2"), shape_error);
}

TEST_CASE("bad axes and indices give clear errors") {
  auto a = zeros<float>({2, 3});
  CHECK_THROWS_WITH_AS(sum(a, 2), doctest::Contains("sum: axis 2 is out of range for a tensor of rank 2"),
                       value_error);
  CHECK_THROWS_WITH_AS(softmax(a, -3), doctest::Contains("softmax: axis -3 is out of range"), value_error);
  CHECK_THROWS_WITH_AS(argmax(a, 5), doctest::Contains("axis 5"), value_error);
  CHECK_THROWS_WITH_AS(permute(a, {0, 0}), doctest::Contains("axis 0 appears twice"), value_error);
  CHECK_THROWS_WITH_AS(slice(a, 1, 2, 5), doctest::Contains("range [2, 5) is invalid for axis 1 of size 3"),
                       value_error);
  CHECK_THROWS_WITH_AS(index(a, 0, 2), doctest::Contains("index 2 is out of range for axis 0 of size 2"),
                       value_error);
  CHECK_THROWS_WITH_AS(a.select(3), doctest::Contains("index 3 is out of range"), value_error);
  CHECK_THROWS_WITH_AS(a(0, 3), doctest::Contains("index 3 is out of range for dimension 1 of size 3"),
                       value_error);
  CHECK_THROWS_WITH_AS(arange<float>(0, 1, 0), doctest::Contains("step is 0"), value_error);
  generator g;
  CHECK_THROWS_WITH_AS(randn<float>({2}, g, 0.f, -1.f), doctest::Contains("stddev is -1"), value_error);
}

TEST_CASE("empty and undefined tensors where they make no sense give clear errors") {
  auto e = zeros<float>({0, 3});
  CHECK_THROWS_WITH_AS(max(e, 0), doctest::Contains("max: the tensor of shape (0, 3) is empty"), shape_error);
  CHECK_THROWS_WITH_AS(mean(e), doctest::Contains("is empty"), shape_error);
  CHECK_THROWS_WITH_AS(mean(e, 0), doctest::Contains("axis 0 of shape (0, 3) is empty"), shape_error);
  CHECK_THROWS_WITH_AS(softmax(e, 1), doctest::Contains("is empty"), shape_error);
  CHECK_THROWS_WITH_AS(argmax(e, 1), doctest::Contains("is empty"), shape_error);
  tensor<float> u;
  CHECK_THROWS_WITH_AS(u.clone(), doctest::Contains("undefined"), value_error);
  CHECK_THROWS_WITH_AS(exp(u), doctest::Contains("undefined"), value_error);
  CHECK_THROWS_WITH_AS(u + u, doctest::Contains("undefined"), value_error);
}

TEST_CASE("the cpu allocator reuses freed blocks and can be emptied") {
  empty_cpu_cache();
  const float* first = nullptr;
  {
    auto a = zeros<float>({1000, 100});
    first = a.data();
  }
#if defined(__SANITIZE_ADDRESS__)
  CHECK(cpu_cached_bytes() == 0);  // off under AddressSanitizer, so use-after-free is caught
#else
  CHECK(cpu_cached_bytes() >= 1000 * 100 * sizeof(float));
  auto b = ones<float>({100, 1000});  // same size: the same block comes back
  CHECK(b.data() == first);
  CHECK(close(sum(b), {100000}));
  set_cpu_cache_limit(0);
  { auto c = zeros<float>({10}); }
  CHECK(cpu_cached_bytes() == 0);
  set_cpu_cache_limit(std::size_t(1) << 30);
#endif
}

TEST_CASE("the cpu allocator carves large blocks out of freed ones and merges them back") {
#if !defined(__SANITIZE_ADDRESS__)
  empty_cpu_cache();
  const float* big = nullptr;
  {
    auto a = zeros<float>({1 << 20});  // 4 MiB: a segment of its own, free after this scope
    big = a.data();
  }
  CHECK(cpu_cached_bytes() >= (std::size_t(4) << 20));
  {
    auto b = ones<float>({1 << 19});  // 2 MiB: the best fit is the freed 4 MiB, split in two
    auto c = ones<float>({1 << 19});  // the other half
    CHECK(b.data() == big);
    CHECK(c.data() == big + (1 << 19));
    CHECK(close(sum(b) + sum(c), {double(1 << 20)}));
  }
  {
    auto d = zeros<float>({1 << 20});  // the halves merged again: the whole segment comes back
    CHECK(d.data() == big);
  }
  set_cpu_cache_limit(0);  // wholly free segments go back to the C library
  CHECK(cpu_cached_bytes() == 0);
  set_cpu_cache_limit(std::size_t(1) << 30);
#endif
}

TEST_CASE("matmul split over threads equals the single-threaded product") {
  generator g(8);
  for (auto dims : std::vector<std::array<std::int64_t, 3>>{{7, 1000, 300}, {1000, 9, 300}, {513, 517, 129}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const auto [m, n, k] = dims;
        auto a = randn<double>(ta ? shape{k, m} : shape{m, k}, g);
        auto b = randn<double>(tb ? shape{n, k} : shape{k, n}, g);
        const int before = num_threads();
        set_num_threads(1);
        auto one = matmul(a, b, ta, tb);
        set_num_threads(2);
        auto two = matmul(a, b, ta, tb);
        set_num_threads(before);
        CHECK(close(two, one, 1e-12));
      }
}
