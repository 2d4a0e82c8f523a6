#pragma once
/// \file loader.hpp
/// `batch_loader`: turns a `segmentation_dataset` into a stream of batches
/// (normalised float images, int64 labels), built ahead of time by worker
/// threads and delivered in order. Determinism: epoch e visits the samples in
/// a permutation drawn from (seed, e), and sample j of batch k is transformed
/// with a generator seeded from (seed, k, j), so the stream depends on the
/// seed only, never on the number of workers, and can resume at any batch
/// without replaying the ones before it. See docs/pipeline.md.

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "protoseg/data/dataset.hpp"
#include "protoseg/data/transforms.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/random.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::data {

/// A per-sample function of the loader (e.g. `apply_train_pipeline`): a
/// sample and the generator of that sample in that batch in, a sample out.
/// An empty function passes samples through unchanged.
using sample_transform = std::function<sample(const sample&, generator&)>;

/// One batch of the stream.
struct batch {
  tensor<float> images;               ///< (B, 3, H, W), normalised
  tensor<std::int64_t> labels;        ///< (B, H, W), train ids or 255 (ignored)
  std::vector<std::int64_t> indices;  ///< data-set index of each sample
  std::vector<std::string> names;     ///< name of each sample
  std::int64_t number = 0;            ///< position of the batch in the stream (0, 1, ...)
  std::int64_t epoch = 0;             ///< epoch the batch belongs to
};

/// Options of `batch_loader`.
struct batch_loader_options {
  std::int64_t batch_size = 8;                 ///< samples per batch (B)
  std::uint64_t seed = 1;                      ///< the stream depends on this only
  int workers = 2;                             ///< worker threads; 0 builds batches inside next()
  int prefetch = 4;                            ///< batches built ahead of the consumer (>= 1)
  bool shuffle = true;                         ///< a fresh permutation each epoch, else data-set order
  bool drop_last = true;                       ///< drop each epoch's incomplete last batch
  std::int64_t epochs = -1;                    ///< epochs in the stream; -1: endless
  std::array<float, 3> mean = imagenet_mean;   ///< normalisation mean, RGB, 0..255
  std::array<float, 3> std = imagenet_std;     ///< normalisation std, RGB, 0..255
};

/// The seed of the generator for (stream, a, b) of a loader seeded with
/// `seed`: a splitmix64 chain. Stream 1 draws epoch a's permutation; stream 2
/// transforms sample b of batch a.
inline std::uint64_t loader_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t a,
                                 std::uint64_t b) noexcept {
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(mix(seed) ^ stream) ^ a) ^ b);
}

/// An ordered, prefetching, deterministic batch stream over a data set.
///
/// Batch k of the stream belongs to epoch e = k / batches_per_epoch() and
/// holds positions [p * B, p * B + B) (p = k mod batches_per_epoch()) of
/// epoch e's order: a Fisher-Yates permutation from loader_seed(seed, 1, e, 0)
/// when shuffling, else 0, 1, ..., N-1. Sample j of batch k is given to the
/// per-sample function with a generator seeded loader_seed(seed, 2, k, j).
/// After the function every sample of a batch must have the same size.
///
/// Workers build batches ahead (at most `prefetch` beyond the consumer);
/// next() returns them in order. An exception thrown while building a batch
/// (by the data set or the function) is rethrown by next() when that batch is
/// due, unchanged; the stream then goes on with the next batch. Destruction
/// stops and joins the workers at any point of the stream.
class batch_loader {
 public:
  /// A stream over `data` starting at batch `first_batch` (a resume point:
  /// batch first_batch is exactly the one a fresh stream yields at that position).
  batch_loader(std::shared_ptr<const segmentation_dataset> data, sample_transform fn,
               const batch_loader_options& options = {}, std::int64_t first_batch = 0)
      : state_(std::make_unique<state>()) {
    if (!data) detail::fail<value_error>("batch_loader: the data set is null");
    const auto& o = options;
    const std::int64_t n = data->size();
    if (n <= 0) detail::fail<value_error>("batch_loader: the data set '", data->description(), "' is empty");
    if (o.batch_size < 1) detail::fail<value_error>("batch_loader: batch_size is ", o.batch_size, ", expected >= 1");
    if (o.workers < 0) detail::fail<value_error>("batch_loader: workers is ", o.workers, ", expected >= 0");
    if (o.prefetch < 1) detail::fail<value_error>("batch_loader: prefetch is ", o.prefetch, ", expected >= 1");
    if (o.epochs < -1 || o.epochs == 0)
      detail::fail<value_error>("batch_loader: epochs is ", o.epochs, ", expected -1 (endless) or >= 1");
    if (o.drop_last && o.batch_size > n)
      detail::fail<value_error>("batch_loader: batch_size ", o.batch_size, " exceeds the ", n,
                                " samples of the data set with drop_last (no batch would remain)");
    for (std::size_t c = 0; c < 3; ++c)
      if (!(o.std[c] > 0)) detail::fail<value_error>("batch_loader: std[", c, "] is ", o.std[c], ", expected > 0");
    state& s = *state_;
    s.data = std::move(data);
    s.fn = std::move(fn);
    s.opt = o;
    s.n = n;
    s.per_epoch = o.drop_last ? n / o.batch_size : (n + o.batch_size - 1) / o.batch_size;
    s.end = o.epochs < 0 ? -1 : o.epochs * s.per_epoch;
    if (first_batch < 0 || (s.end >= 0 && first_batch > s.end))
      detail::fail<value_error>("batch_loader: first_batch is ", first_batch, ", expected 0 to ",
                                s.end < 0 ? std::string("any") : std::to_string(s.end));
    s.claimed = s.consumed = first_batch;
    s.threaded = o.workers > 0;  // fixed before any worker reads it
    try {
      for (int w = 0; w < o.workers; ++w) s.threads.emplace_back([st = state_.get()] { st->work(); });
    } catch (...) {
      state_->shut_down();
      throw;
    }
  }

  batch_loader(batch_loader&&) noexcept = default;
  batch_loader& operator=(batch_loader&& other) noexcept {
    if (this != &other) {
      if (state_) state_->shut_down();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  batch_loader(const batch_loader&) = delete;
  batch_loader& operator=(const batch_loader&) = delete;
  ~batch_loader() {
    if (state_) state_->shut_down();
  }

  /// The next batch, in order (blocks until it is built). Rethrows what
  /// building it threw; throws `value_error` when a finite stream is over.
  batch next() {
    state& s = live("next");
    std::unique_lock lock(s.mutex);
    if (s.end >= 0 && s.consumed >= s.end)
      detail::fail<value_error>("batch_loader::next: the stream of ", s.end, " batches is over");
    const std::int64_t k = s.consumed;
    slot got;
    if (!s.threaded) {
      ++s.consumed;
      s.claimed = s.consumed;
      lock.unlock();
      got = s.build(k);
    } else {
      s.ready_cv.wait(lock, [&] { return s.ready.count(k) > 0; });
      got = std::move(s.ready[k]);
      s.ready.erase(k);
      ++s.consumed;
      lock.unlock();
      s.space_cv.notify_all();
    }
    if (got.error) std::rethrow_exception(got.error);
    return std::move(got.value);
  }

  /// True when a finite stream has delivered all its batches.
  bool done() const {
    const state& s = live("done");
    std::lock_guard lock(s.mutex);
    return s.end >= 0 && s.consumed >= s.end;
  }
  /// The number of the batch that next() returns.
  std::int64_t position() const {
    const state& s = live("position");
    std::lock_guard lock(s.mutex);
    return s.consumed;
  }
  /// Batches per epoch: N / B (rounded down with drop_last, up without).
  std::int64_t batches_per_epoch() const { return live("batches_per_epoch").per_epoch; }
  /// Batches in the stream, or -1 when it is endless.
  std::int64_t total_batches() const { return live("total_batches").end; }
  /// The data-set indices batch k holds (no sample is loaded).
  std::vector<std::int64_t> batch_indices(std::int64_t k) const { return live("batch_indices").indices_of(k); }
  const batch_loader_options& options() const { return live("options").opt; }
  const segmentation_dataset& dataset() const { return *live("dataset").data; }

 private:
  struct slot {
    batch value;
    std::exception_ptr error;
  };

  struct stopped {};

  struct state {
    std::shared_ptr<const segmentation_dataset> data;
    sample_transform fn;
    batch_loader_options opt;
    std::int64_t n = 0, per_epoch = 0, end = -1;

    mutable std::mutex mutex;
    std::condition_variable ready_cv, space_cv;
    std::int64_t claimed = 0, consumed = 0;
    std::map<std::int64_t, slot> ready;
    bool stop = false;
    bool threaded = false;             // workers build the batches (set before they start)
    std::vector<std::thread> threads;  // touched by the owner only

    mutable std::mutex order_mutex;
    mutable std::int64_t order_epoch = -1;
    mutable std::shared_ptr<const std::vector<std::int64_t>> order;

    std::shared_ptr<const std::vector<std::int64_t>> epoch_order(std::int64_t e) const {
      std::lock_guard lock(order_mutex);
      if (order && order_epoch == e) return order;
      auto perm = std::make_shared<std::vector<std::int64_t>>(static_cast<std::size_t>(n));
      std::iota(perm->begin(), perm->end(), std::int64_t{0});
      if (opt.shuffle) {
        generator gen(loader_seed(opt.seed, 1, static_cast<std::uint64_t>(e), 0));
        for (std::int64_t i = n - 1; i > 0; --i)
          std::swap((*perm)[static_cast<std::size_t>(i)],
                    (*perm)[static_cast<std::size_t>(gen.below(static_cast<std::uint64_t>(i + 1)))]);
      }
      order = perm;
      order_epoch = e;
      return order;
    }

    std::vector<std::int64_t> indices_of(std::int64_t k) const {
      if (k < 0 || (end >= 0 && k >= end))
        detail::fail<value_error>("batch_loader::batch_indices: batch ", k, " is outside the stream of ",
                                  end < 0 ? std::string("endless") : std::to_string(end), " batches");
      const std::int64_t e = k / per_epoch, p = k % per_epoch;
      const auto perm = epoch_order(e);
      const std::int64_t lo = p * opt.batch_size, hi = std::min(n, lo + opt.batch_size);
      return {perm->begin() + lo, perm->begin() + hi};
    }

    bool stopping() {
      std::lock_guard lock(mutex);
      return stop;
    }

    slot build(std::int64_t k) {
      slot out;
      try {
        out.value = make_batch(k);
      } catch (const stopped&) {
        throw;
      } catch (...) {
        out.error = std::current_exception();
      }
      return out;
    }

    batch make_batch(std::int64_t k) {
      batch b;
      b.number = k;
      b.epoch = k / per_epoch;
      b.indices = indices_of(k);
      const auto count = static_cast<std::int64_t>(b.indices.size());
      const std::int64_t classes = data->num_classes();
      std::vector<sample> samples;
      samples.reserve(b.indices.size());
      for (std::int64_t j = 0; j < count; ++j) {
        if (threaded && stopping()) throw stopped{};
        const std::int64_t i = b.indices[static_cast<std::size_t>(j)];
        sample s = data->get(i);
        if (fn) {
          generator gen(loader_seed(opt.seed, 2, static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(j)));
          s = fn(s, gen);
        }
        check_sample(s, "batch_loader");
        if (!samples.empty()) {
          const sample& f = samples.front();
          if (s.image.size(0) != f.image.size(0) || s.image.size(1) != f.image.size(1))
            detail::fail<value_error>("batch_loader: batch ", k, ": sample '", s.name, "' (index ", i, ") is ",
                                      s.image.size(0), "x", s.image.size(1), " (HxW) after the per-sample function, "
                                      "but sample '", f.name, "' (index ", b.indices.front(), ") is ",
                                      f.image.size(0), "x", f.image.size(1),
                                      "; a batch needs one size (end the pipeline with a crop and a pad)");
        }
        const std::uint8_t* l = s.label.data();
        for (std::int64_t p = 0; p < s.label.numel(); ++p)
          if (l[p] != ignore_label && l[p] >= classes)
            detail::fail<value_error>("batch_loader: batch ", k, ": sample '", s.name, "' (index ", i, ") has label ",
                                      int(l[p]), " at pixel ", p, ", expected 0 to ", classes - 1, " or ",
                                      int(ignore_label));
        b.names.push_back(s.name);
        samples.push_back(std::move(s));
      }
      const std::int64_t h = samples.front().image.size(0), w = samples.front().image.size(1);
      b.images = tensor<float>::empty(shape({count, 3, h, w}));
      b.labels = tensor<std::int64_t>::empty(shape({count, h, w}));
      for (std::int64_t j = 0; j < count; ++j) {
        const sample& s = samples[static_cast<std::size_t>(j)];
        const auto img = normalize(s.image, opt.mean, opt.std);
        std::copy_n(img.data(), img.numel(), b.images.data() + j * 3 * h * w);
        std::copy_n(s.label.data(), h * w, b.labels.data() + j * h * w);
      }
      return b;
    }

    void work() {
      for (;;) {
        std::int64_t k;
        {
          std::unique_lock lock(mutex);
          space_cv.wait(lock, [&] { return stop || (claimed < consumed + opt.prefetch && (end < 0 || claimed < end)); });
          if (stop) return;
          k = claimed++;
        }
        slot made;
        try {
          made = build(k);
        } catch (const stopped&) {
          return;
        } catch (...) {  // allocation failure outside build's own guard
          made.error = std::current_exception();
        }
        {
          std::lock_guard lock(mutex);
          ready.emplace(k, std::move(made));
        }
        ready_cv.notify_all();
      }
    }

    void shut_down() noexcept {
      {
        std::lock_guard lock(mutex);
        stop = true;
      }
      space_cv.notify_all();
      for (auto& t : threads)
        if (t.joinable()) t.join();
      threads.clear();
    }
  };

  state& live(const char* who) const {
    if (!state_) detail::fail<value_error>("batch_loader::", who, ": the loader was moved from");
    return *state_;
  }

  std::unique_ptr<state> state_;
};

/// A training stream: `apply_train_pipeline(pipeline)` on every sample, with
/// the pipeline's mean/std as the loader's normalisation (they replace
/// options.mean/std).
inline batch_loader make_train_loader(std::shared_ptr<const segmentation_dataset> data,
                                      const train_pipeline_options& pipeline, batch_loader_options options = {},
                                      std::int64_t first_batch = 0) {
  options.mean = pipeline.mean;
  options.std = pipeline.std;
  return batch_loader(
      std::move(data), [pipeline](const sample& s, generator& gen) { return apply_train_pipeline(s, gen, pipeline); },
      options, first_batch);
}

/// An evaluation pass: every sample once, in data-set order, one per batch
/// (images may differ in size), normalised with `pipeline`, built ahead by
/// `workers` threads (0: inside next()) up to `prefetch` samples.
inline batch_loader make_eval_loader(std::shared_ptr<const segmentation_dataset> data,
                                     const eval_pipeline_options& pipeline = {}, int workers = 1, int prefetch = 4) {
  batch_loader_options o;
  o.batch_size = 1;
  o.workers = workers;
  o.prefetch = prefetch;
  o.shuffle = false;
  o.drop_last = false;
  o.epochs = 1;
  o.mean = pipeline.mean;
  o.std = pipeline.std;
  return batch_loader(std::move(data), sample_transform{}, o);
}

/// Calls fn(batch) for every remaining batch of a finite stream, in order.
template <class Fn>
void for_each_batch(batch_loader& loader, Fn&& fn) {
  if (loader.total_batches() < 0)
    detail::fail<value_error>("for_each_batch: the stream is endless (set batch_loader_options::epochs)");
  while (!loader.done()) fn(loader.next());
}

/// Calls fn(batch) for every sample of `data` once, in order (batch size 1),
/// normalised with `pipeline`, with `workers` threads preparing ahead.
template <class Fn>
void for_each_sample(std::shared_ptr<const segmentation_dataset> data, Fn&& fn,
                     const eval_pipeline_options& pipeline = {}, int workers = 1, int prefetch = 4) {
  auto loader = make_eval_loader(std::move(data), pipeline, workers, prefetch);
  for_each_batch(loader, std::forward<Fn>(fn));
}

}  // namespace protoseg::data
