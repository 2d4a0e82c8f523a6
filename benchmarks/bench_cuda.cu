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

#include <cstdint>

namespace {
using namespace protoseg;
using protoseg::cuda;

void BM_proto_step_gpu(benchmark::State& state) {
  const std::int64_t C = state.range(0), M = 10, D = 256, N = 2 * 128 * 128;
  const bool full = state.range(1) != 0;
  generator g(0);
  auto ch = randn<float>({N, D}, g);
  proto::detail::normalize_rows(ch);
  auto ph = randn<float>({C, M, D}, g);
  proto::detail::normalize_rows(ph.reshape({C * M, D}));
  auto lh = tensor<std::int64_t>::empty({N});
  for (std::int64_t i = 0; i < N; ++i) lh.data()[i] = static_cast<std::int64_t>(g.below(C));
  const auto c = ch.to<cuda>();
  const auto labels = lh.to<cuda>();
  auto prototypes = ph.to<cuda>();
  proto::step_options so;
  so.target_ignore_index = -1;
  auto step = [&] {
    if (!full) {
      auto s = proto::summarize_scores(c, prototypes, labels);
      auto r = proto::prototype_step(c, s.own, s.class_logits, labels, prototypes, so);
      auto v = proto::summary_losses(s, r.targets, -1);
      return static_cast<float>(0.01 * v.ppc + 0.001 * v.ppd);
    }
    no_grad guard;
    const variable<float, cuda> emb(c, false);
    const variable<float, cuda> protos(prototypes.reshape({C * M, D}).clone(), false);
    auto scores = matmul(emb, protos, false, true);
    auto seg = proto::detail::class_max(scores, M);
    auto r = proto::prototype_step(c, scores.value().reshape({N, C, M}), seg.value(), labels, prototypes, so);
    auto loss = ppc_loss(scores, r.targets, {.ignore_index = -1}) * 0.01f +
                ppd_loss(scores, r.targets, {.ignore_index = -1}) * 0.001f;
    return loss.value().item();
  };
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
