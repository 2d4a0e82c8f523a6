// GPU benchmarks of the cuda policy (nvcc only; built when the toolkit's
// nvcc is found, run where a GPU is), on the shapes that the cpu benchmarks
// and tools/bench_gpu_torch.py time:
//   proto_step       the prototype step without backward, N = 32768 pixels,
//                    M = 10, D = 256, C = 19, 150, 847 classes. full:0 takes
//                    the scores' summary (proto::summarize_scores), full:1
//                    materialises the N x C*M scores (matmul, class_max,
//                    ppc_loss, ppd_loss) as training does.
//   online_clustering  Algorithm 1 on (D, K, N) = (256, 10, 1e5), (720, 10, 1e6)
// Every iteration ends in a host value (the loss or one entry of the
// assignment), so the GPU work is complete when the timer stops.

#include <benchmark/benchmark.h>

#include <protoseg/cuda.hpp>
#include <protoseg/protoseg.hpp>

#include "proto_step_bench.hpp"

#include <cstdint>

namespace {
using namespace protoseg;
using protoseg::cuda;

void BM_proto_step_gpu(benchmark::State& state) {
  bench::proto_step_case<cuda> pc(state.range(0));
  const bool full = state.range(1) != 0;
  auto step = [&] { return pc.step(full); };
  benchmark::DoNotOptimize(step());
  for (auto _ : state) benchmark::DoNotOptimize(step());
}

void BM_online_clustering_gpu(benchmark::State& state) {
  const std::int64_t D = state.range(0), K = state.range(1), N = state.range(2);
  generator g(0);
  auto P = randn<float>({K, D}, g);
  proto::detail::normalize_rows(P);
  auto X = randn<float>({N, D}, g);
  proto::detail::normalize_rows(X);
  // Algorithm 1's layout: prototypes (D, K) and features (D, N), unit columns.
  const auto Pd = transpose(P).to<cuda>();
  const auto Xd = transpose(X).to<cuda>();
  auto run = [&] { return ot::online_clustering(Pd, Xd).to_vector()[0]; };
  benchmark::DoNotOptimize(run());
  for (auto _ : state) benchmark::DoNotOptimize(run());
}

}  // namespace

BENCHMARK(BM_proto_step_gpu)
    ->Name("gpu/proto_step")
    ->ArgNames({"C", "full"})
    ->Args({19, 0})
    ->Args({150, 0})
    ->Args({847, 0})
    ->Args({19, 1})
    ->Args({150, 1})
    ->Args({847, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_online_clustering_gpu)
    ->Name("gpu/online_clustering")
    ->ArgNames({"D", "K", "N"})
    ->Args({256, 10, 100000})
    ->Args({720, 10, 1000000})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
