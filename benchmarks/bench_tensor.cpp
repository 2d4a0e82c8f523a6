// Tensor core micro-benchmarks: the tensor API against raw Eigen on the same
// shapes and threads. tools/bench_tensor.sh runs this next to the PyTorch peer
// (tools/bench_tensor_torch.py) and writes docs/benchmarks.md.
//
//   matmul/<n>: C = A B for n x n x n float matrices. The tensor API
//     allocates its result each call (as a user of `matmul(a, b)` pays);
//     raw Eigen maps preallocated row-major buffers and runs
//     `C.noalias() = A * B`. Issue 2: the wrapper may cost at most 5% at 512.
//   chain/1024: sum(exp(a * b + c), axis 1) on 1024 x 1024 floats; raw Eigen
//     evaluates the same expression fused, in one pass, into a preallocated
//     vector.

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <protoseg/protoseg.hpp>

#include <cstdint>
#include <vector>

namespace {

namespace ps = protoseg;
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_array = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

ps::tensor<float> random_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed, float lo = -1.0f,
                                float hi = 1.0f) {
  ps::generator gen(seed);
  return ps::rand<float>({rows, cols}, gen, lo, hi);
}

void set_counters(benchmark::State& state, double flops) {
  state.counters["threads"] = ps::num_threads();
  state.counters["GFLOP"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void matmul_protoseg(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const auto a = random_matrix(n, n, 1), b = random_matrix(n, n, 2);
  for (auto _ : state) {
    auto c = ps::matmul(a, b);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(n) * double(n) * double(n));
}

void matmul_eigen(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const auto a = random_matrix(n, n, 1), b = random_matrix(n, n, 2);
  std::vector<float> c(static_cast<std::size_t>(n * n));
  Eigen::Map<const row_matrix> A(a.data(), n, n), B(b.data(), n, n);
  Eigen::Map<row_matrix> C(c.data(), n, n);
  for (auto _ : state) {
    C.noalias() = A * B;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, 2.0 * double(n) * double(n) * double(n));
}

// Inputs in [-0.5, 0.5] keep exp() well inside the float range.
void chain_protoseg(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const auto a = random_matrix(n, n, 3, -0.5f, 0.5f), b = random_matrix(n, n, 4, -0.5f, 0.5f),
             c = random_matrix(n, n, 5, -0.5f, 0.5f);
  for (auto _ : state) {
    auto s = ps::sum(ps::exp(a * b + c), 1);
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 3 * n * n *
                          static_cast<std::int64_t>(sizeof(float)));
  state.counters["threads"] = ps::num_threads();
}

void chain_eigen(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const auto a = random_matrix(n, n, 3, -0.5f, 0.5f), b = random_matrix(n, n, 4, -0.5f, 0.5f),
             c = random_matrix(n, n, 5, -0.5f, 0.5f);
  Eigen::Map<const row_array> A(a.data(), n, n), B(b.data(), n, n), C(c.data(), n, n);
  Eigen::VectorXf s(n);
  for (auto _ : state) {
    s.noalias() = (A * B + C).exp().rowwise().sum().matrix();
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 3 * n * n *
                          static_cast<std::int64_t>(sizeof(float)));
  state.counters["threads"] = ps::num_threads();
}

}  // namespace

BENCHMARK(matmul_protoseg)->Name("matmul/protoseg")->Arg(128)->Arg(256)->Arg(512)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(matmul_eigen)->Name("matmul/eigen")->Arg(128)->Arg(256)->Arg(512)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(chain_protoseg)->Name("chain/protoseg")->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(chain_eigen)->Name("chain/eigen")->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
