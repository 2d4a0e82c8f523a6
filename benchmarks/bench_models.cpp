// Benchmarks of whole models and of the ProtoSeg prototype step, the work
// that ../shared/peers/mit_torch.py and proto_step_torch.py time in PyTorch:
//
//   model/train_step   MiT-B0 + SegFormer decoder + ProtoSeg head (C = 150,
//                      M = 10), batch 2, 512 x 512: forward with the
//                      prototype step, CE + PPC + PPD, backward, AdamW
//   model/forward      the same model in eval mode, no gradients
//   main_job_step      the main job's ResNet-18 + MLP decoder + ProtoSeg
//                      model (11 classes), batch 8, 64 x 64, AdamW
//   proto_step         scores (N x C*M), class logits, segmented Sinkhorn,
//                      momentum update and targets, and the PPC + PPD loss
//                      values, for N = 32768, M = 10, D = 256 (no backward:
//                      the peer times the step without one). full:0 reduces
//                      the scores block by block (proto::summarize_scores);
//                      full:1 materialises them as training does (matmul,
//                      class_max, ppc_loss, ppd_loss)
//
// The peak resident memory (ru_maxrss) of the process so far is reported as
// the counter `peak_rss_MB`; run one benchmark per process (a filter) to
// read a step's peak (tools/bench_models.sh does).

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <protoseg/protoseg.hpp>

#include "proto_step_bench.hpp"

#include <cstdint>
#include <cstdlib>
#include <memory>

using namespace protoseg;

namespace {

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

std::int64_t env_int(const char* name, std::int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}

struct model_case {
  std::int64_t classes = 150, size = 512, batch = 2;
  models::model_options options() const {
    models::model_options o;
    o.backbone = "mit_b0";
    o.num_classes = classes;
    o.head = models::head_kind::prototype;
    o.proto.num_prototypes = 10;
    return o;
  }
  tensor<float> image() const {
    generator g(1);
    return randn<float>({batch, 3, size, size}, g);
  }
  tensor<std::int64_t> labels() const {
    generator g(2);
    auto y = tensor<std::int64_t>::empty({batch, size, size});
    for (std::int64_t i = 0; i < y.numel(); ++i) y.data()[i] = static_cast<std::int64_t>(g.below(classes));
    return y;
  }
};

// BENCH_CPU_CACHE_MB caps the cpu allocator's cache (set_cpu_cache_limit) for
// every benchmark of the process, to see what the cache adds to peak memory.
const bool cache_limit_set = [] {
  if (const char* v = std::getenv("BENCH_CPU_CACHE_MB")) set_cpu_cache_limit(std::size_t(std::atoll(v)) << 20);
  return true;
}();

model_case model_size() {
  // BENCH_SIZE / BENCH_BATCH shrink the model benchmarks for a smoke run.
  model_case c;
  c.size = env_int("BENCH_SIZE", 512);
  c.batch = env_int("BENCH_BATCH", 2);
  return c;
}

// The model, its optimiser and inputs live across the repetitions (built and
// warmed up once: the first step allocates the optimiser state and fills the
// allocator cache).
struct train_bench {
  model_case mc = model_size();
  models::segmentation_model<float> model{mc.options()};
  optim::adamw<float> opt{model.parameters(), {.lr = 6e-5, .weight_decay = 0.01}};
  variable<float> x{mc.image()};
  tensor<std::int64_t> y = mc.labels();
  float step() {
    model.train();
    auto out = model.forward(x, y);
    auto loss = model.loss(out, y);
    opt.zero_grad();
    loss.total.backward();
    opt.step();
    return loss.total.value().item();
  }
  float forward() {
    model.eval();
    no_grad guard;
    return model.forward(x).logits.value().data()[0];
  }
};

train_bench& shared_model(bool train) {
  static std::unique_ptr<train_bench> b;
  static bool trained = false;
  if (!b) b = std::make_unique<train_bench>();
  if (train && !trained) {
    benchmark::DoNotOptimize(b->step());
    trained = true;
  }
  return *b;
}

void BM_model_train_step(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  auto& b = shared_model(true);
  for (auto _ : state) benchmark::DoNotOptimize(b.step());
  state.counters["peak_rss_MB"] = peak_rss_mb();
  state.counters["params_M"] = static_cast<double>(b.model.num_parameters()) / 1e6;
}

void BM_model_forward(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  auto& b = shared_model(false);
  benchmark::DoNotOptimize(b.forward());
  for (auto _ : state) benchmark::DoNotOptimize(b.forward());
  state.counters["peak_rss_MB"] = peak_rss_mb();
}

// The main job's model (ResNet-18 at output stride 32, the all-MLP decoder
// of width 128, the ProtoSeg head with 11 classes): one AdamW training step
// on a batch of 8 64x64 scenes, no data loading.
void BM_main_job_step(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  models::model_options o;
  o.backbone = "resnet18";
  o.decoder = "segformer";
  o.decoder_dim = 128;
  o.output_stride = 32;
  o.num_classes = 11;
  models::segmentation_model<float> model(o);
  model.train();
  optim::adamw<float> opt(model.parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  generator g(3);
  const variable<float> x(randn<float>({8, 3, 64, 64}, g));
  auto y = tensor<std::int64_t>::empty({8, 64, 64});
  for (std::int64_t i = 0; i < y.numel(); ++i) y.data()[i] = static_cast<std::int64_t>(g.below(11));
  auto step = [&] {
    auto out = model.forward(x, y);
    auto loss = model.loss(out, y);
    opt.zero_grad();
    loss.total.backward();
    opt.step();
    return loss.total.value().item();
  };
  for (int i = 0; i < 3; ++i) benchmark::DoNotOptimize(step());
  for (auto _ : state) benchmark::DoNotOptimize(step());
}

void BM_proto_step(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(1)));
  bench::proto_step_case<cpu> pc(state.range(0));
  const bool full = state.range(2) != 0;
  auto step = [&] { return pc.step(full); };
  benchmark::DoNotOptimize(step());
  for (auto _ : state) benchmark::DoNotOptimize(step());
  state.counters["peak_rss_MB"] = peak_rss_mb();
}

}  // namespace

BENCHMARK(BM_model_train_step)
    ->Name("model/train_step")
    ->ArgNames({"threads"})
    ->Arg(2)
    ->Iterations(1)
    ->Repetitions(3)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_model_forward)
    ->Name("model/forward")
    ->ArgNames({"threads"})
    ->Arg(2)
    ->Iterations(1)
    ->Repetitions(3)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_main_job_step)
    ->Name("main_job_step")
    ->ArgNames({"threads"})
    ->Arg(1)
    ->Arg(2)
    ->Iterations(10)
    ->Repetitions(3)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_proto_step)
    ->Name("proto_step")
    ->ArgNames({"C", "threads", "full"})
    ->Args({19, 2, 0})
    ->Args({150, 2, 0})
    ->Args({847, 2, 0})
    ->Args({150, 2, 1})
    ->Args({847, 2, 1})
    ->Iterations(1)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
