// The cuda policy against the cpu policy on identical inputs: every
// primitive and every differentiable op, forward and gradient (one harness,
// as ggml's test-backend-ops). Built twice: with g++ against Thrust's OpenMP
// device system (runs in CI without a GPU) and with nvcc (runs on a GPU).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "parity.hpp"
#include "op_cases.hpp"

#include <cmath>
#include <functional>
#include <vector>

// libcu++ declares a global namespace ::cuda, so after `using namespace
// protoseg` the name `cuda` is ambiguous: parity.hpp's using-declaration
// makes it mean the policy inside its namespace.
namespace cuda_parity {
using namespace cuda_parity_harness;
using protoseg::cuda;  // a using-declaration here: the directive alone leaves ::cuda ambiguous

TEST_CASE("cuda policy: storage, copies, views and creation") {
  static_assert(policy<cuda>);
  static_assert(!host_accessible_v<cuda>);
  auto h = rndf({3, 4}, 1);
  auto d = h.to<cuda>();
  CHECK(d.to_vector() == h.to_vector());
  CHECK(d.to<cpu>().to_vector() == h.to_vector());
  CHECK(d.reshape({4, 3}).shares_storage_with(d));
  CHECK(d[1].to_vector() == h[1].to_vector());
  CHECK(d.narrow0(1, 3).to_vector() == h.narrow0(1, 3).to_vector());
  auto c = d.clone();
  CHECK_FALSE(c.shares_storage_with(d));
  CHECK(d.reshape({12}).select(5).item() == h.reshape({12}).select(5).item());
  CHECK(zeros<float, cuda>({2, 3}).to_vector() == std::vector<float>(6, 0.f));
  CHECK(tensor<float, cuda>({4}).to_vector() == std::vector<float>(4, 0.f));
  CHECK(full<double, cuda>({3}, 2.5).to_vector() == std::vector<double>(3, 2.5));
  CHECK(arange<float, cuda>(0, 2, 0.5f).to_vector() == arange<float>(0, 2, 0.5f).to_vector());
  generator g1(9), g2(9);
  CHECK(randn<float, cuda>({50}, g1).to_vector() == randn<float>({50}, g2).to_vector());
  auto i64 = cast<std::int64_t>(d * 10.f);
  CHECK(i64.to_vector() == cast<std::int64_t>(h * 10.f).to_vector());
}

TEST_CASE("cuda policy: elementwise arithmetic with broadcasting") {
  auto a = rndf({2, 3, 4}, 1), b = rndf({3, 1}, 2), c = rndf({4}, 3), s = rndf({}, 4);
  auto plus = [](const auto& x, const auto& y) { return x + y; };
  auto minus = [](const auto& x, const auto& y) { return x - y; };
  auto times = [](const auto& x, const auto& y) { return x * y; };
  auto divide = [](const auto& x, const auto& y) { return x / (y * y + 1.f); };
  for (auto* other : {&a, &b, &c, &s}) {
    parity(plus, a, *other);
    parity(minus, *other, a);
    parity(times, a, *other);
    parity(divide, a, *other);
  }
  parity([](const auto& x) { return (x * 2.f + 1.f) / 3.f - 0.5f; }, a);
  parity([](const auto& x) { return 1.f - x; }, a);
  parity([](const auto& x) { return 2.f / (x + 3.f); }, a);
  parity([](const auto& x) { return -x; }, a);
  parity([](const auto& x, const auto& y) { return maximum(x, y); }, a, c);
  parity([](const auto& x, const auto& y) { return minimum(x, y); }, a, b);
  parity([](const auto& x, const auto& y) { return eq(x, y); }, a, a);
}

TEST_CASE("cuda policy: unary functions") {
  auto x = rndf({5, 7}, 5, -3, 3);
  auto p = rndf({5, 7}, 6, 0.1f, 3);
  parity([](const auto& t) { return exp(t); }, x);
  parity([](const auto& t) { return log(t); }, p);
  parity([](const auto& t) { return sqrt(t); }, p);
  parity([](const auto& t) { return abs(t); }, x);
  parity([](const auto& t) { return tanh(t); }, x);
  parity([](const auto& t) { return relu(t); }, x);
  parity([](const auto& t) { return sigmoid(t); }, x);
  parity([](const auto& t) { return gelu(t); }, x);
  parity([](const auto& t) { return pow(t, 1.5f); }, p);
  parity([](const auto& t) { return clamp(t, -1.f, 0.5f); }, x);
  CHECK_FALSE(all_finite(log(x.to<cuda>())));
  CHECK(all_finite(exp(x.to<cuda>())));
}

TEST_CASE("cuda policy: reductions along every axis") {
  auto a = rndf({3, 4, 5}, 7);
  for (int axis = -3; axis < 3; ++axis) {
    CAPTURE(axis);
    parity([=](const auto& t) { return sum(t, axis); }, a);
    parity([=](const auto& t) { return sum(t, axis, true); }, a);
    parity([=](const auto& t) { return mean(t, axis); }, a);
    parity([=](const auto& t) { return max(t, axis); }, a);
    parity([=](const auto& t) { return min(t, axis); }, a);
    parity([=](const auto& t) { return argmax(t, axis); }, a);
  }
  parity([](const auto& t) { return sum(t); }, a);
  parity([](const auto& t) { return mean(t); }, a);
  parity([](const auto& t) { return sum_to(t, {4, 1}); }, a);
  parity([](const auto& t) { return broadcast_to(t, {2, 3, 4, 5}); }, a);
  // few long reductions (one segmented tree reduction on the device), along
  // contiguous rows and along a strided axis
  auto rows = rndf({3, 5000}, 12);
  auto cols = rndf({5000, 3}, 13);
  parity([](const auto& t) { return sum(t, 1); }, rows);
  parity([](const auto& t) { return max(t, 1); }, rows);
  parity([](const auto& t) { return min(t, 1, true); }, rows);
  parity([](const auto& t) { return sum(t, 0); }, cols);
  parity([](const auto& t) { return max(t, 0); }, cols);
  parity([](const auto& t) { return sum(t, 1); }, rndf({2, 4100, 3}, 14));
  auto big = rndf({100000}, 8);
  parity([](const auto& t) { return sum(t); }, big);
  // a long positive float sum: both policies within 1e-7 of the exact value
  // (straight float accumulation drifts by ~2.6 on this one)
  auto pos = rndf({1000000}, 10, 0, 1);
  double exact = 0;
  for (float v : pos.to_vector()) exact += v;
  CHECK(std::abs(double(sum(pos.to<cuda>()).item()) - exact) <= 1e-7 * exact);
  CHECK(std::abs(double(sum(pos).item()) - exact) <= 1e-7 * exact);
  auto nan = tensor<float>::from_vector({1.f, NAN, 3.f}, {3});
  CHECK(argmax(nan.to<cuda>(), 0).item() == 1);
}

TEST_CASE("cuda policy: matmul with transposes, batches and broadcast matrices") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      auto a = rndf(ta ? shape{9, 7} : shape{7, 9}, 1);
      auto b = rndf(tb ? shape{5, 9} : shape{9, 5}, 2);
      auto A = rndf(ta ? shape{3, 9, 7} : shape{3, 7, 9}, 3);
      auto B = rndf(tb ? shape{3, 5, 9} : shape{3, 9, 5}, 4);
      auto mm = [=](const auto& x, const auto& y) { return matmul(x, y, ta, tb); };
      parity(mm, a, b);
      parity(mm, A, B);
      parity(mm, A, b);
      parity(mm, a, B);
    }
  parity([](const auto& x, const auto& y) { return matmul(x, y); }, rnd({2, 2, 6, 4}, 5), rnd({2, 2, 4, 3}, 6));
}

TEST_CASE("cuda policy: permute, transpose, slice, index, concat") {
  auto a = rndf({2, 3, 4, 5}, 9);
  parity([](const auto& t) { return permute(t, {3, 1, 0, 2}); }, a);
  parity([](const auto& t) { return transpose(t, 0, 2); }, a);
  for (int axis = 0; axis < 4; ++axis) {
    CAPTURE(axis);
    parity([=](const auto& t) { return slice(t, axis, 1, 2); }, a);
    parity([=](const auto& t) { return index(t, axis, -1); }, a);
    parity([=](const auto& t) { return concat(std::vector{t, slice(t, axis, 0, 1)}, axis); }, a);
  }
}

TEST_CASE("cuda policy: softmax, log_softmax, l2_normalize") {
  auto a = rndf({3, 4, 5}, 10, -5, 5);
  for (int axis = 0; axis < 3; ++axis) {
    CAPTURE(axis);
    parity([=](const auto& t) { return softmax(t, axis); }, a);
    parity([=](const auto& t) { return log_softmax(t, axis); }, a);
    parity([=](const auto& t) { return l2_normalize(t, axis); }, a);
  }
}

TEST_CASE("cuda policy: cross_entropy forward, backward and errors") {
  auto logits = rndf({2, 4, 3, 3}, 12, -2, 2);
  auto labels = tensor<std::int64_t>::from_vector({0, 1, 2, 3, 255, 0, 1, 2, 3, 3, 2, 1, 0, 255, 255, 1, 2, 0}, {2, 3, 3});
  auto w = tensor<float>::from_vector({0.5f, 1.f, 2.f, 1.5f}, {4});
  for (int weighted = 0; weighted < 2; ++weighted) {
    CAPTURE(weighted);
    variable<float, cpu> xc(logits.clone(), true);
    variable<float, cuda> xg(logits.to<cuda>(), true);
    cross_entropy_options<float, cpu> oc{.ignore_index = 255};
    cross_entropy_options<float, cuda> og{.ignore_index = 255};
    if (weighted) {
      oc.class_weights = w;
      og.class_weights = w.to<cuda>();
    }
    auto lc = cross_entropy(xc, labels, oc);
    auto lg = cross_entropy(xg, labels.to<cuda>(), og);
    CHECK(agree(lg.value(), lc.value()));
    lc.backward();
    lg.backward();
    CHECK(agree(xg.grad(), xc.grad()));
  }
  auto bad = labels.clone();
  bad(1, 0, 1) = 7;
  variable<float, cuda> xg(logits.to<cuda>(), true);
  CHECK_THROWS_WITH_AS(cross_entropy(xg, bad.to<cuda>(), {.ignore_index = 255}),
                       doctest::Contains("label 7 at flat position 10 is out of range"), value_error);
}

TEST_CASE("cuda policy: losses and sums stay on the device, checks wait for the next host read when deferred") {
  // Counted alike on the GPU and on Thrust's OpenMP system (context.cuh).
  auto logits = rndf({2, 4, 3, 3}, 13, -2, 2);
  auto labels = tensor<std::int64_t>::from_vector({0, 1, 2, 3, 255, 0, 1, 2, 3, 3, 2, 1, 0, 255, 255, 1, 2, 0}, {2, 3, 3});
  const auto lg = labels.to<cuda>();
  variable<float, cuda> x(logits.to<cuda>(), true);
  {
    protoseg::cuda_deferred_checks deferred;
    protoseg::reset_cuda_stats();
    auto s = sum(x.value());
    auto loss = cross_entropy(x, lg, {.ignore_index = 255});
    loss.backward();
    CHECK(protoseg::cuda_stats().syncs == 0);  // loss, sum, label check and gradient: no wait
    const float v = loss.value().item();
    CHECK(protoseg::cuda_stats().syncs == 1);
    CHECK(std::isfinite(v));
    CHECK(s.item() == doctest::Approx(sum(logits).item()).epsilon(1e-5));
  }
  // Immediate checks (the default) raise at the call, as on the cpu.
  auto bad = labels.clone();
  bad(0, 2, 1) = -3;
  CHECK_THROWS_WITH_AS(cross_entropy(x, bad.to<cuda>(), {.ignore_index = 255}),
                       doctest::Contains("label -3 at flat position 7 is out of range"), value_error);
  // Deferred: the call goes on, the next host read raises the same message.
  protoseg::cuda_deferred_checks deferred;
  auto loss = cross_entropy(x, bad.to<cuda>(), {.ignore_index = 255});
  CHECK_THROWS_WITH_AS(loss.value().item(), doctest::Contains("label -3 at flat position 7 is out of range"),
                       value_error);
  CHECK_NOTHROW(loss.value().item());  // raised once, then forgotten
  auto targets = tensor<std::int64_t>::from_vector({0, 5, 1}, {3}).to<cuda>();
  variable<float, cuda> scores(rndf({3, 4}, 14, -1, 1).to<cuda>(), true);
  auto ppd = ppd_loss(scores, targets);
  CHECK_THROWS_WITH_AS(protoseg::cuda_synchronize(), doctest::Contains("proto_targets[1] is 5"), value_error);
}

TEST_CASE("cuda policy: every op of the op table (tests/op_cases.hpp) agrees with cpu, value and gradients") {
  int cases = 0;
  protoseg_test::op_table::for_each_op_case([&](const std::string& name, const std::vector<tensor<double>>& in, auto f) {
    CAPTURE(name);
    grad_parity(f, in);
    ++cases;
  });
  CHECK(cases >= 100);  // the table is not empty by accident
}

TEST_CASE("cuda policy: the AdamW update primitive agrees with the cpu one and the tensor-operation reference") {
  generator gen(3);
  const shape s{5, 7};
  auto rnd = [&] { return randn<float>(s, gen); };
  const backend::adamw_scalars sc{1 - 1e-4, 0.9, 0.1, 0.999, 0.001, std::sqrt(1 - std::pow(0.999, 3)), 1e-8,
                                  -0.01 / (1 - std::pow(0.9, 3))};
  for (bool ams : {false, true}) {
    CAPTURE(ams);
    auto p = rnd(), g = rnd(), m = rnd() * 0.1f, v = abs(rnd()) * 0.01f, x = v * 1.5f;
    auto pc = p.to<cuda>(), gc = g.to<cuda>(), mc = m.to<cuda>(), vc = v.to<cuda>(), xc = x.to<cuda>();
    auto pr = pc.clone(), mr = mc.clone(), vr = vc.clone(), xr = xc.clone();
    backend::optim<cpu>::adamw(p.data(), g.data(), m.data(), v.data(), ams ? x.data() : nullptr, p.numel(), sc);
    backend::optim<cuda>::adamw(pc.data(), gc.data(), mc.data(), vc.data(), ams ? xc.data() : nullptr, pc.numel(), sc);
    optim::optim_detail::adamw_update_tensors(pr, gc, mr, vr, ams ? &xr : nullptr, sc);
    for (const auto& [got, ref] : {std::pair{pc, p}, std::pair{mc, m}, std::pair{vc, v}, std::pair{xc, x}})
      CHECK_MESSAGE(agree(got, ref), disagreement(got, ref));
    for (const auto& [got, ref] : {std::pair{pc, pr}, std::pair{mc, mr}, std::pair{vc, vr}, std::pair{xc, xr}})
      CHECK_MESSAGE(agree(got, ref), disagreement(got, ref));
  }
}

TEST_CASE("cuda policy: Sinkhorn-Knopp, online clustering and the segmented solver agree with cpu") {
  generator g(31);
  auto S = rand<float>({10, 300}, g, -1.f, 1.f);
  for (bool log_domain : {false, true})
    for (double tol : {0.0, 1e-4}) {
      CAPTURE(log_domain);
      CAPTURE(tol);
      const ot::sinkhorn_options o{.iterations = tol > 0 ? 50 : 3, .kappa = 0.05, .log_domain = log_domain, .tolerance = tol};
      auto rc = ot::sinkhorn_solve(S, o);
      auto rg = ot::sinkhorn_solve(S.to<cuda>(), o);
      CHECK(agree(rg.assignment, rc.assignment, 1e-4));
      CHECK(rg.iterations == rc.iterations);
      CHECK(std::abs(rg.marginal_error - rc.marginal_error) < 1e-4);
    }
  auto P = l2_normalize(rand<float>({16, 6}, g, -1.f, 1.f), 0);
  auto X = l2_normalize(rand<float>({16, 200}, g, -1.f, 1.f), 0);
  CHECK(agree(ot::online_clustering(P.to<cuda>(), X.to<cuda>()), ot::online_clustering(P, X), 1e-4));
  // segmented: 5 classes of different sizes, two of them empty
  auto scores = rand<double>({157, 4}, g, -1.0, 1.0);
  auto offsets = tensor<std::int64_t>::from_vector({0, 40, 40, 137, 137, 157}, {6});
  for (bool log_domain : {false, true}) {
    CAPTURE(log_domain);
    const ot::sinkhorn_options o{.log_domain = log_domain};
    auto rc = ot::segmented_sinkhorn(scores, offsets, o);
    auto rg = ot::segmented_sinkhorn(scores.to<cuda>(), offsets.to<cuda>(), o);
    CHECK(agree(rg.assignment, rc.assignment, 1e-9));
    CHECK(rg.iterations == rc.iterations);
  }
  auto f = rand<float>({157, 4}, g, -1.f, 1.f);
  auto rt = ot::segmented_sinkhorn(f.to<cuda>(), offsets.to<cuda>(), {.iterations = 100, .tolerance = 1e-5});
  auto rtc = ot::segmented_sinkhorn(f, offsets, {.iterations = 100, .tolerance = 1e-5});
  CHECK(agree(rt.assignment, rtc.assignment, 1e-4));
  CHECK(rt.iterations == rtc.iterations);
  CHECK(std::abs(rt.marginal_error - rtc.marginal_error) < 1e-4);
}

TEST_CASE("cuda policy: clustering refuses bad input like cpu") {
  auto bad = tensor<float>::from_vector({0.1f, NAN, 0.3f, 0.4f}, {2, 2}).to<cuda>();
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(bad), doctest::Contains("contain NaN or infinite values"), value_error);
  auto big = full<float, cuda>({2, 3}, 10.f);
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(big, {.kappa = 0.01}), doctest::Contains("set options.log_domain = true"),
                       value_error);
  CHECK(all_finite(ot::sinkhorn_knopp(big, {.kappa = 0.01, .log_domain = true})));
  CHECK_THROWS_WITH_AS(ot::sinkhorn_knopp(big, {.iterations = 0}), doctest::Contains("options.iterations: got 0"),
                       value_error);
  auto s = zeros<float, cuda>({10, 3});
  auto off = tensor<std::int64_t>::from_vector({0, 4, 9}, {3}).to<cuda>();
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(s, off), doctest::Contains("expected N = 10"), value_error);
  auto sn = tensor<float>::from_vector({0.f, 0.f, NAN, 0.f}, {2, 2}).to<cuda>();
  auto off2 = tensor<std::int64_t>::from_vector({0, 1, 2}, {3}).to<cuda>();
  CHECK_THROWS_WITH_AS(ot::segmented_sinkhorn(sn, off2), doctest::Contains("of class 1"), value_error);
  CHECK_THROWS_WITH_AS(ot::online_clustering(zeros<float, cuda>({4, 2}), zeros<float, cuda>({5, 3})),
                       doctest::Contains("expected D = 4"), shape_error);
}

}  // namespace cuda_parity
