// Sinkhorn-Knopp clustering micro-benchmarks (issue 3), on the shapes that
// ../shared/peers/sinkhorn_torch.py and proto_step_torch.py time:
//   sinkhorn on scores        K = 10, N = 1e4
//   online clustering         (D, K, N) = (720, 10, 1e4), (256, 10, 1e5), (720, 10, 1e6)
//   segmented (per class)     C = 19, 150, 847 classes, M = 10, N = 32768, scores given
// each at 1 and 2 threads (the last argument). Run with
// --benchmark_repetitions=10 --benchmark_report_aggregates_only=true and read
// the medians; tools/bench_sinkhorn.sh does that next to the PyTorch peer.

#include <benchmark/benchmark.h>

#include <protoseg/backend/cpu/parallel.hpp>
#include <protoseg/ot/segmented.hpp>
#include <protoseg/ot/sinkhorn.hpp>
#include <protoseg/tensor/random.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

using namespace protoseg;

namespace {

/// Columns of unit length with entries from a seeded generator (cosine-like
/// scores in [-1, 1], as the peer's normalised randn). Filled in parallel
/// chunks with per-chunk seeds so that the 720 x 1e6 case is set up quickly.
tensor<float> unit_columns(std::int64_t D, std::int64_t N, std::uint64_t seed) {
  auto x = tensor<float>::empty({D, N});
  float* p = x.data();
  const std::int64_t chunks = 64;
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    generator g(seed * 1000 + static_cast<std::uint64_t>(c));
    const std::int64_t b = D * c / chunks, e = D * (c + 1) / chunks;
    for (std::int64_t i = b * N; i < e * N; ++i) p[i] = static_cast<float>(2 * g.uniform() - 1);
  }
  std::vector<double> norm(static_cast<std::size_t>(N), 0.0);
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t n = 0; n < N; ++n) norm[static_cast<std::size_t>(n)] += double(p[d * N + n]) * p[d * N + n];
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t n = 0; n < N; ++n) p[d * N + n] = float(p[d * N + n] / std::sqrt(norm[static_cast<std::size_t>(n)]));
  return x;
}

/// Inputs are built once per shape and kept for all thread counts.
const std::tuple<tensor<float>, tensor<float>>& online_inputs(std::int64_t D, std::int64_t K, std::int64_t N) {
  static std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::tuple<tensor<float>, tensor<float>>> cache;
  auto key = std::make_tuple(D, K, N);
  auto it = cache.find(key);
  if (it == cache.end()) {
    cache.clear();  // keep at most one large input alive
    it = cache.emplace(key, std::make_tuple(unit_columns(D, K, 1), unit_columns(D, N, 2))).first;
  }
  return it->second;
}

void BM_sinkhorn_scores(benchmark::State& state) {
  const std::int64_t K = state.range(0), N = state.range(1);
  set_num_threads(static_cast<int>(state.range(2)));
  const auto& [P, X] = online_inputs(64, K, N);
  const tensor<float> S = matmul(P, X, true, false);
  const ot::sinkhorn_options o{.log_domain = state.range(3) != 0};
  benchmark::DoNotOptimize(ot::sinkhorn_knopp(S, o).data());  // warm-up: caches, allocator, thread pool
  for (auto _ : state) {
    auto q = ot::sinkhorn_knopp(S, o);  // allocates its output, as the peer's clone does
    benchmark::DoNotOptimize(q.data());
  }
  state.SetItemsProcessed(state.iterations() * K * N);
}

void BM_online_clustering(benchmark::State& state) {
  const std::int64_t D = state.range(0), K = state.range(1), N = state.range(2);
  set_num_threads(static_cast<int>(state.range(3)));
  const auto& [P, X] = online_inputs(D, K, N);
  benchmark::DoNotOptimize(ot::online_clustering(P, X).data());  // warm-up
  for (auto _ : state) {
    auto q = ot::online_clustering(P, X);
    benchmark::DoNotOptimize(q.data());
  }
  state.SetBytesProcessed(state.iterations() * D * N * static_cast<std::int64_t>(sizeof(float)));
}

/// Scores of N pixels with uniformly random class labels (as the peer's
/// torch.randint), gathered class by class into the N x M layout.
const std::tuple<tensor<float>, tensor<std::int64_t>>& segmented_inputs(std::int64_t C, std::int64_t M, std::int64_t N) {
  static std::map<std::int64_t, std::tuple<tensor<float>, tensor<std::int64_t>>> cache;
  auto it = cache.find(C);
  if (it != cache.end()) return it->second;
  generator g(static_cast<std::uint64_t>(C));
  std::vector<std::int64_t> count(static_cast<std::size_t>(C), 0);
  for (std::int64_t n = 0; n < N; ++n) ++count[g.below(static_cast<std::uint64_t>(C))];
  std::vector<std::int64_t> off(static_cast<std::size_t>(C + 1), 0);
  for (std::int64_t c = 0; c < C; ++c) off[static_cast<std::size_t>(c + 1)] = off[static_cast<std::size_t>(c)] + count[static_cast<std::size_t>(c)];
  auto s = tensor<float>::empty({N, M});
  for (std::int64_t k = 0; k < s.numel(); ++k) s.data()[k] = static_cast<float>(2 * g.uniform() - 1);
  return cache.emplace(C, std::make_tuple(s, tensor<std::int64_t>::from_vector(off, {C + 1}))).first->second;
}

void BM_segmented(benchmark::State& state) {
  const std::int64_t C = state.range(0), M = state.range(1), N = state.range(2);
  set_num_threads(static_cast<int>(state.range(3)));
  const auto& [S, off] = segmented_inputs(C, M, N);
  auto out = tensor<float>::empty(S.shape());
  benchmark::DoNotOptimize(ot::segmented_sinkhorn(S, off, out).assignment.data());  // warm-up
  for (auto _ : state) {
    auto r = ot::segmented_sinkhorn(S, off, out);
    benchmark::DoNotOptimize(r.assignment.data());
  }
  state.SetItemsProcessed(state.iterations() * N * M);
}

}  // namespace

BENCHMARK(BM_sinkhorn_scores)
    ->ArgNames({"K", "N", "threads", "log"})
    ->Args({10, 10000, 1, 0})
    ->Args({10, 10000, 2, 0})
    ->Args({10, 10000, 1, 1})
    ->Args({10, 10000, 2, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_online_clustering)
    ->ArgNames({"D", "K", "N", "threads"})
    ->Args({720, 10, 10000, 1})
    ->Args({720, 10, 10000, 2})
    ->Args({256, 10, 100000, 1})
    ->Args({256, 10, 100000, 2})
    ->Args({720, 10, 1000000, 1})
    ->Args({720, 10, 1000000, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_segmented)
    ->ArgNames({"C", "M", "N", "threads"})
    ->Args({19, 10, 32768, 1})
    ->Args({19, 10, 32768, 2})
    ->Args({150, 10, 32768, 1})
    ->Args({150, 10, 32768, 2})
    ->Args({847, 10, 32768, 1})
    ->Args({847, 10, 32768, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
