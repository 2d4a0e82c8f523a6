// Eigen's GEMM (as the cpu backend calls it: row-major maps, memset, then
// `noalias() +=`) against OpenBLAS's cblas_sgemm, one thread, on the GEMM
// shapes of the main job's step (ResNet-18, batch 8, 64x64: forward,
// weight-gradient and column-gradient products). A measurement tool, not
// part of the build (the library does not use a BLAS). Debian 12:
//   apt-get install libeigen3-dev libopenblas-dev
//   g++ -O3 -march=native -std=c++20 -I/usr/include/eigen3 \
//       -I/usr/include/x86_64-linux-gnu/openblas-pthread tools/gemm_openblas.cpp \
//       -o /tmp/gemm_openblas -lopenblas && /tmp/gemm_openblas
// Prints the best of 7 means of 10 runs per shape and the ratio Eigen / OpenBLAS.
#include <Eigen/Core>
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

extern "C" void openblas_set_num_threads(int);

namespace {
using mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using cmap = Eigen::Map<const mat>;

struct shape_case {
  int m, n, k;
  bool trans_a, trans_b;
  const char* what;
};

template <class F>
double best_seconds(F&& f) {
  for (int i = 0; i < 3; ++i) f();
  double best = 1e30;
  for (int r = 0; r < 7; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 10;
    best = s < best ? s : best;
  }
  return best;
}
}  // namespace

int main() {
  openblas_set_num_threads(1);
  const shape_case cases[] = {
      {64, 1024, 147, false, false, "stem fwd"},  {64, 1024, 576, false, false, "layer1 fwd"},
      {128, 512, 1152, false, false, "layer2 fwd"}, {256, 128, 2304, false, false, "layer3 fwd"},
      {512, 32, 4608, false, false, "layer4 fwd"},  {64, 576, 1024, false, true, "layer1 dW"},
      {256, 2304, 128, false, true, "layer3 dW"},   {512, 4608, 32, false, true, "layer4 dW"},
      {576, 1024, 64, true, false, "layer1 dcol"},  {2304, 128, 256, true, false, "layer3 dcol"},
      {4608, 32, 512, true, false, "layer4 dcol"}};
  std::printf("%-12s %5s %5s %5s %12s %12s %7s\n", "product", "m", "n", "k", "Eigen GF/s", "OpenBLAS GF/s", "ratio");
  for (const auto& s : cases) {
    std::vector<float> a(static_cast<std::size_t>(s.m) * s.k), b(static_cast<std::size_t>(s.k) * s.n),
        c(static_cast<std::size_t>(s.m) * s.n);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 13) * 0.1f - 0.6f;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 7) * 0.1f - 0.3f;
    auto eigen = [&] {
      Eigen::Map<mat> out(c.data(), s.m, s.n);
      std::memset(c.data(), 0, c.size() * sizeof(float));
      if (!s.trans_a && !s.trans_b) out.noalias() += cmap(a.data(), s.m, s.k) * cmap(b.data(), s.k, s.n);
      else if (!s.trans_a) out.noalias() += cmap(a.data(), s.m, s.k) * cmap(b.data(), s.n, s.k).transpose();
      else out.noalias() += cmap(a.data(), s.k, s.m).transpose() * cmap(b.data(), s.k, s.n);
    };
    auto openblas = [&] {
      cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, s.m,
                  s.n, s.k, 1.0f, a.data(), s.trans_a ? s.m : s.k, b.data(), s.trans_b ? s.k : s.n, 0.0f, c.data(),
                  s.n);
    };
    const double te = best_seconds(eigen), to = best_seconds(openblas);
    const double flop = 2.0 * s.m * s.n * s.k;
    std::printf("%-12s %5d %5d %5d %12.1f %12.1f %7.2f\n", s.what, s.m, s.n, s.k, flop / te * 1e-9, flop / to * 1e-9,
                te / to);
  }
}
