// Autograd-lite: tape semantics, gradient checks for every differentiable op,
// cross-entropy against PyTorch golden values, and misuse errors.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"
#include "op_cases.hpp"

#include <fstream>
#include <functional>
#include <sstream>

using namespace protoseg;
using protoseg_test::close;
using protoseg_test::gradcheck_opts;

namespace {

using vars = std::vector<variable<double>>;

tensor<double> rnd(shape s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  generator g(seed);
  return rand<double>(s, g, lo, hi);
}

}  // namespace

// ---- tape semantics ------------------------------------------------------------

TEST_CASE("backward accumulates through shared subexpressions and across calls") {
  variable<double> x(tensor<double>::from_vector({1, 2, 3}, {3}), true);
  auto y = x * x + x;  // dy/dx = 2x + 1
  sum(y).backward();
  CHECK(close(x.grad(), {3, 5, 7}));
  sum(x * 2.0).backward();  // accumulates
  CHECK(close(x.grad(), {5, 7, 9}));
  x.zero_grad();
  CHECK_FALSE(x.has_grad());
}

TEST_CASE("only variables that require gradients receive them") {
  variable<double> a(tensor<double>::from_vector({1, 2}, {2}), true);
  variable<double> b(tensor<double>::from_vector({3, 4}, {2}), false);
  auto loss = sum(a * b);
  CHECK(loss.requires_grad());
  CHECK(loss.grad_fn_name() == "sum");
  loss.backward();
  CHECK(close(a.grad(), {3, 4}));
  CHECK_FALSE(b.has_grad());
  CHECK(a.is_leaf());
  CHECK(loss.is_leaf());  // backward freed its graph: it no longer has a grad_fn
}

TEST_CASE("no_grad records nothing and restores the previous mode") {
  variable<double> a(ones<double>({2}), true);
  CHECK(grad_enabled());
  {
    no_grad guard;
    CHECK_FALSE(grad_enabled());
    auto y = exp(a) * 3.0;
    CHECK_FALSE(y.requires_grad());
    {
      no_grad inner;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());
  }
  CHECK(grad_enabled());
  CHECK(exp(a).requires_grad());
}

TEST_CASE("detach cuts the graph") {
  variable<double> a(tensor<double>::from_vector({2}, {1}), true);
  auto b = a * a;
  auto c = b.detach() * a;  // d c / d a = b = a^2, not 3 a^2
  sum(c).backward();
  CHECK(close(a.grad(), {4}));
  CHECK_FALSE(b.detach().requires_grad());
}

TEST_CASE("the graph is freed after backward") {
  variable<double> a(tensor<double>::from_vector({2}, {1}), true);
  auto b = exp(a);
  auto c = sum(b * b);
  c.backward();
  CHECK_THROWS_WITH_AS(c.backward(), doctest::Contains("already freed"), autograd_error);
  auto d = sum(b);  // b's graph is gone: using it again is an error at backward
  CHECK_THROWS_WITH_AS(d.backward(), doctest::Contains("freed"), autograd_error);
  auto e = sum(b.detach() * a);  // detach makes it usable
  e.backward();
  CHECK(a.has_grad());
}

TEST_CASE("a long chain does not overflow the stack") {
  variable<double> x(full<double>({1}, 0.0), true);
  auto y = x;
  for (int i = 0; i < 20000; ++i) y = y + 1.0;
  sum(y).backward();
  CHECK(x.grad().item() == 1.0);
  CHECK(y.value().item() == 20000.0);
}

TEST_CASE("autograd misuse gives clear errors") {
  variable<double> a(ones<double>({2, 2}), true);
  CHECK_THROWS_WITH_AS((a * 2.0).backward(), doctest::Contains("needs a single-element root"), autograd_error);
  variable<double> c(ones<double>({1}), false);
  CHECK_THROWS_WITH_AS(c.backward(), doctest::Contains("does not require gradients"), autograd_error);
  CHECK_THROWS_WITH_AS((a * 2.0).backward(ones<double>({3})), doctest::Contains("grad_output has shape (3,)"),
                       shape_error);
  auto y = a * 2.0;
  CHECK_THROWS_WITH_AS(y.requires_grad_(false), doctest::Contains("only leaves"), autograd_error);
  variable<double> u;
  CHECK_THROWS_WITH_AS(u.value(), doctest::Contains("undefined"), value_error);
  CHECK_THROWS_WITH_AS(variable<double>(tensor<double>()), doctest::Contains("undefined"), value_error);
}

namespace {
// exp recorded with the backward of a different function: gradcheck must fail.
struct wrong_fn {
  static constexpr const char* name = "wrong";
  tensor<double> x;
  std::vector<tensor<double>> backward(const tensor<double>& g) { return {g * x}; }
};
}  // namespace

TEST_CASE("gradcheck detects a wrong gradient") {
  auto r = gradcheck<cpu>(
      [](const vars& v) { return detail::record(exp(v[0].value()), wrong_fn{v[0].value()}, v[0]); },
      {rnd({3}, 1)}, gradcheck_opts);
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("input 0") != std::string::npos);
  auto r2 = gradcheck<cpu>([](const vars& v) { return variable<double>(v[0].value()); }, {rnd({3}, 1)});
  CHECK_FALSE(r2.ok);
}

// ---- gradient checks -------------------------------------------------------------

TEST_CASE("gradcheck: every op of the op table (tests/op_cases.hpp)") {
  int cases = 0;
  protoseg_test::op_table::for_each_op_case([&](const std::string& name, const std::vector<tensor<double>>& in, auto f) {
    CAPTURE(name);
    auto r = gradcheck<cpu>(f, in, gradcheck_opts);
    INFO(r.message);
    CHECK(r.ok);
    ++cases;
  });
  CHECK(cases >= 100);  // the table is not empty by accident
}

// ---- parity with PyTorch -----------------------------------------------------------

TEST_CASE("cross_entropy matches torch.nn.functional.cross_entropy (golden values)") {
  // tests/fixtures/core/cross_entropy.txt is written by tools/gen_core_fixtures.py.
  std::ifstream in(std::string(PROTOSEG_FIXTURE_DIR) + "/core/cross_entropy.txt");
  REQUIRE(in.good());
  auto read = [&](std::size_t n) {
    std::vector<double> v(n);
    for (auto& x : v) in >> x;
    return v;
  };
  std::int64_t N, C, H, W, ignore;
  in >> N >> C >> H >> W >> ignore;
  auto logits = read(static_cast<std::size_t>(N * C * H * W));
  auto labels_d = read(static_cast<std::size_t>(N * H * W));
  auto weights = read(static_cast<std::size_t>(C));
  auto expect = read(2);  // unweighted loss, weighted loss
  auto grad_unweighted = read(logits.size());
  auto grad_weighted = read(logits.size());
  REQUIRE(in.good());
  std::vector<std::int64_t> labels_v(labels_d.begin(), labels_d.end());
  auto labels = tensor<std::int64_t>::from_vector(labels_v, {N, H, W});
  for (int weighted = 0; weighted < 2; ++weighted) {
    CAPTURE(weighted);
    variable<float> x(cast<float>(tensor<double>::from_vector(logits, {N, C, H, W})), true);
    cross_entropy_options<float> opt{.ignore_index = ignore};
    if (weighted) opt.class_weights = cast<float>(tensor<double>::from_vector(weights, {C}));
    auto loss = cross_entropy(x, labels, opt);
    loss.backward();
    CHECK(close(loss.value(), {expect[static_cast<std::size_t>(weighted)]}));
    CHECK(close(x.grad(), weighted ? grad_weighted : grad_unweighted));
  }
}

TEST_CASE("cross_entropy with every label ignored is 0 with a zero gradient") {
  variable<double> x(rnd({2, 3}, 1), true);
  auto labels = tensor<std::int64_t>::from_vector({-100, -100}, {2});
  auto loss = cross_entropy(x, labels);
  loss.backward();
  CHECK(loss.value().item() == 0.0);
  CHECK(close(x.grad(), std::vector<double>(6, 0.0)));
}

TEST_CASE("the cross-entropy primitive adds its sums rounded to float (the GCC 12 SLP workaround holds)") {
  // cross_entropy_forward adds double(float(loss)) and double(float(weight
  // sum)) to acc; GCC 12.2 at -O2/-O3 compiled the pair as an unrounded
  // vector add (fn::rounded_to). Called through a pointer, the primitive is
  // its own standalone code, where the bug showed.
  const std::int64_t C = 5, L = 64;
  tensor<float> x({1, C, L});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = 0.37f * float(i % 7) - 1.1f + 0.013f * float(i);
  tensor<std::int64_t> labels({1, L});
  for (std::int64_t i = 0; i < L; ++i) labels.data()[i] = (i * 3) % C;
  auto lse = tensor<float>::empty({L});
  tensor<double> acc({2});
  auto* volatile forward = &backend::softmax<cpu>::cross_entropy_forward<float>;
  forward(x.data(), labels.data(), nullptr, 1, C, L, -100, lse.data(), acc.data());
  double exact = 0;
  for (std::int64_t i = 0; i < L; ++i) exact += double(lse.data()[i]) - double(x.data()[labels.data()[i] * L + i]);
  CHECK(acc.data()[0] == static_cast<double>(static_cast<float>(exact)));
  CHECK(acc.data()[0] != exact);  // the data make the rounding visible
  CHECK(acc.data()[1] == double(L));
}

TEST_CASE("cross_entropy rejects bad labels, shapes and weights with clear errors") {
  variable<float> x(zeros<float>({2, 3, 4}), true);
  auto ok = zeros<std::int64_t>({2, 4});
  auto bad = ok.clone();
  bad(1, 2) = 3;
  CHECK_THROWS_WITH_AS(cross_entropy(x, bad),
                       doctest::Contains("label 3 at flat position 6 is out of range: expected a class id in [0, 3) "
                                         "or the ignore index -100"),
                       value_error);
  bad(1, 2) = 255;
  CHECK_THROWS_WITH_AS(cross_entropy(x, bad, {.ignore_index = -1}), doctest::Contains("label 255"), value_error);
  CHECK_NOTHROW(cross_entropy(x, bad, {.ignore_index = 255}));
  bad(1, 2) = -5;
  CHECK_THROWS_WITH_AS(cross_entropy(x, bad), doctest::Contains("label -5"), value_error);
  CHECK_THROWS_WITH_AS(cross_entropy(x, zeros<std::int64_t>({2, 3})),
                       doctest::Contains("labels have shape (2, 3), expected (2, 4)"), shape_error);
  CHECK_THROWS_WITH_AS(cross_entropy(variable<float>(zeros<float>({3})), zeros<std::int64_t>({3})),
                       doctest::Contains("logits need shape (N, C, ...)"), shape_error);
  CHECK_THROWS_WITH_AS(cross_entropy(x, ok, {.class_weights = ones<float>({4})}),
                       doctest::Contains("class_weights have shape (4,), expected (3,)"), shape_error);
  CHECK_THROWS_WITH_AS(cross_entropy(x, ok, {.class_weights = full<float>({3}, -1.f)}),
                       doctest::Contains("must be finite and >= 0"), value_error);
  CHECK_THROWS_WITH_AS(cross_entropy(variable<float>(zeros<float>({0, 3})), zeros<std::int64_t>({0})),
                       doctest::Contains("are empty"), shape_error);
}

TEST_CASE("ops on variables report the same shape errors as on tensors") {
  variable<double> a(zeros<double>({2, 3}), true), b(zeros<double>({3, 3}), true);
  CHECK_THROWS_AS(a + b, shape_error);
  CHECK_THROWS_WITH_AS(matmul(a, a), doctest::Contains("inner dimensions differ"), shape_error);
  CHECK_THROWS_WITH_AS(softmax(a, 2), doctest::Contains("axis 2 is out of range"), value_error);
  CHECK_THROWS_WITH_AS(max(a, -3), doctest::Contains("axis -3"), value_error);
  CHECK_THROWS_WITH_AS(reshape(a, {4, 2}), doctest::Contains("has 8 elements"), shape_error);
  CHECK_THROWS_WITH_AS(index(a, 1, 3), doctest::Contains("index 3 is out of range for axis 1"), value_error);
}
