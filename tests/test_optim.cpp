// Tests of protoseg::optim (sgd, adamw, parameter groups, optimiser state,
// poly schedule) and protoseg::metrics (confusion matrix, mIoU / aAcc / mAcc).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/metrics/confusion.hpp>
#include <protoseg/optim/adamw.hpp>
#include <protoseg/optim/param_group.hpp>
#include <protoseg/optim/schedule.hpp>
#include <protoseg/optim/sgd.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace ps = protoseg;
using protoseg_test::close;

TEST_CASE("adamw: one step by hand") {
  ps::variable<double> p(ps::tensor<double>::from_vector({1.0}, {1}), true);
  const ps::variable<double> c(ps::tensor<double>::from_vector({0.5}, {1}));
  ps::optim::adamw<double> opt({p}, {.lr = 0.1});
  ps::sum(p * c).backward();
  opt.step();
  CHECK(p.value().item() == doctest::Approx(0.999 - 0.05 / (0.5 + 1e-8)).epsilon(1e-14));
}

TEST_CASE("poly schedule and confusion matrix: first values") {
  CHECK(ps::optim::poly_lr(0.01, 50, 100) == doctest::Approx(0.005));
  ps::metrics::confusion_matrix cm(2);
  const std::vector<std::int64_t> pred{0, 1, 1, 0}, label{0, 1, 255, 1};
  cm.update(pred.data(), label.data(), 4);
  const auto m = cm.compute();
  CHECK(m.iou[0] == doctest::Approx(0.5));
  CHECK(m.aacc == doctest::Approx(2.0 / 3));
}
