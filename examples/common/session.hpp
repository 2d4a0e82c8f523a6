#pragma once
// What protoseg-train, protoseg-eval and protoseg-infer share: opening the
// data sets, building the model from a configuration, evaluating it, and the
// progress line.

#include <protoseg/data/datasets.hpp>
#include <protoseg/data/fashion_scenes.hpp>
#include <protoseg/data/image_write.hpp>
#include <protoseg/data/transforms.hpp>
#include <protoseg/io/checkpoint.hpp>
#include <protoseg/metrics/confusion.hpp>
#include <protoseg/models/inference.hpp>
#include <protoseg/protoseg.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "config.hpp"
#include "viz.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace protoseg::examples {

namespace fs = std::filesystem;
template <class P>
using model_on = models::segmentation_model<float, P>;
using model_type = model_on<cpu>;

/// A host tensor on policy P (the tensor itself when P is cpu).
template <class P, class T>
tensor<T, P> on(const tensor<T>& t) {
  return t.template to<P>();
}

/// ImageNet mean and standard deviation in 0..255 units (mmsegmentation's).
inline const std::array<float, 3> image_mean{123.675f, 116.28f, 103.53f};
inline const std::array<float, 3> image_std{58.395f, 57.12f, 57.375f};

inline void set_threads(std::int64_t n) {
#if defined(_OPENMP)
  omp_set_num_threads(static_cast<int>(n));
#else
  (void)n;
#endif
}

/// The main() of the example programs: runs `run`, and turns a command-line
/// mistake into "NAME: message (see NAME --help)" with status 2 and any other
/// error into "NAME: error: message" with status 1. `fresh_line` starts the
/// error on a new line (after a progress bar).
template <class Run>
int run_program(const char* name, int argc, char** argv, Run run, bool fresh_line = false) {
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << name << ": " << e.what() << "\n(see " << name << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << (fresh_line ? "\n" : "") << name << ": error: " << e.what() << "\n";
    return 1;
  }
}


/// The cuda half of a program: its own source compiled a second time with
/// PROTOSEG_EXAMPLE_CUDA_PART (by nvcc for the GPU, or by g++ on Thrust's
/// OpenMP system for tests), running the program on the cuda policy. Builds
/// without the CUDA toolkit link common/no_cuda.cpp, whose definition refuses
/// with a message naming the cause.
int cuda_main(int argc, char** argv);

/// One line naming where a program runs: the cpu and its threads, or the
/// GPU (a cuda run on a machine without a usable GPU stops here with an
/// error that names the cause, before any data is read).
template <class P>
std::string device_description() {
  if constexpr (std::is_same_v<P, cpu>) {
#if defined(_OPENMP)
    return "cpu (" + std::to_string(omp_get_max_threads()) + " threads)";
#else
    return "cpu (1 thread)";
#endif
  } else {
#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
    return "cuda: " + cuda_device_description();
#else
    return "?";
#endif
  }
}

/// The values of one-element tensors of policy P, read with one download
/// (one host synchronisation on the GPU, however many values).
template <class T, class P>
std::vector<double> read_scalars(const std::vector<tensor<T, P>>& ts) {
  auto all = tensor<T, P>::empty(shape{static_cast<std::int64_t>(ts.size())});
  for (std::size_t i = 0; i < ts.size(); ++i) backend_traits<P>::copy_same(all.data() + i, ts[i].data(), 1);
  const auto host = all.template to<cpu>();
  return std::vector<double>(host.data(), host.data() + host.numel());
}

/// Holds the policy's input checks until the next host read (cuda; see
/// cuda_deferred_checks): a bad label then stops the run at the step's loss
/// read with the cpu's message, without a wait per check. Nothing on the cpu.
template <class P>
struct deferred_checks {};
#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
template <>
struct deferred_checks<cuda> {
  cuda_deferred_checks guard;
};
#endif

/// What the cuda policy did per training step after the warm-up steps
/// (launches, host synchronisations, device allocations that missed the
/// cache, uploads, peak device memory); a no-op on the cpu policy.
template <class P>
struct step_meter {
  void begin(std::int64_t) {}
  void end(std::int64_t) {}
  bool measured() const { return false; }
  void report(std::ostream&, io::json_value::object&) const {}
};
#if defined(PROTOSEG_EXAMPLE_CUDA_PART)
template <>
struct step_meter<cuda> {
  std::int64_t warmup = 2;  ///< steps not measured (the cache fills, cuBLAS sets up)
  std::int64_t first = -1, steps = 0;
  cuda_counters at_begin{}, sum{};
  std::size_t peak = 0;

  bool active = false;  ///< the step under way is measured

  void begin(std::int64_t it) {
    if (first < 0) first = it;
    active = it - first >= warmup;
    if (active) at_begin = cuda_stats();
  }
  void end(std::int64_t) {
    if (!active) return;
    active = false;
    const auto now = cuda_stats();
    sum.launches += now.launches - at_begin.launches;
    sum.syncs += now.syncs - at_begin.syncs;
    sum.allocations += now.allocations - at_begin.allocations;
    sum.requests += now.requests - at_begin.requests;
    sum.uploads += now.uploads - at_begin.uploads;
    sum.downloads += now.downloads - at_begin.downloads;
    peak = std::max(peak, now.peak_bytes);
    ++steps;
  }
  bool measured() const { return steps > 0; }
  void report(std::ostream& os, io::json_value::object& extra) const {
    if (!steps) return;
    const auto per = [&](std::uint64_t v) { return static_cast<double>(v) / static_cast<double>(steps); };
    os << std::fixed << std::setprecision(1) << "cuda per training step (" << steps << " steps after " << warmup
       << " warm-up): " << per(sum.launches) << " launches, " << per(sum.syncs) << " host syncs, "
       << per(sum.allocations) << " device allocations (of " << per(sum.requests) << " requests), "
       << per(sum.uploads) << " uploads; peak device memory " << std::setprecision(0)
       << static_cast<double>(peak) / (1 << 20) << " MiB\n";
    io::json_value::object o;
    o["steps"] = io::json_value(steps);
    o["launches"] = io::json_value(per(sum.launches));
    o["syncs"] = io::json_value(per(sum.syncs));
    o["allocations"] = io::json_value(per(sum.allocations));
    o["requests"] = io::json_value(per(sum.requests));
    o["uploads"] = io::json_value(per(sum.uploads));
    o["downloads"] = io::json_value(per(sum.downloads));
    o["peak_bytes"] = io::json_value(static_cast<double>(peak));
    extra["cuda_per_step"] = io::json_value(std::move(o));
  }
};
#endif

/// The data set of a split, as the configuration names it.
inline std::shared_ptr<const data::segmentation_dataset> open_split(const train_config& c, bool train) {
  if (c.dataset == "fashion-scenes") {
    data::fashion_scenes_options o;
    o.count = train ? c.scenes_train : c.scenes_val;
    o.seed = static_cast<std::uint64_t>(train ? c.scene_seed_train : c.scene_seed_val);
    o.size = c.scene_size;
    o.split = train ? data::fashion_mnist_split::train : data::fashion_mnist_split::test;
    o.data_dir = c.data_root;
    return std::make_shared<data::fashion_scenes_dataset>(o);
  }
  if (c.data_root.empty())
    throw usage_error("--dataset " + c.dataset + " needs --data-root (the directory that holds the data set)");
  return data::open_dataset(c.dataset, c.data_root, train ? c.train_split : c.val_split);
}

/// The ResNet width a configuration asks for (resolving 0, "auto").
inline std::int64_t resnet_width_of(const train_config& c) {
  if (c.resnet_width > 0) return c.resnet_width;
  return c.dataset == "fashion-scenes" ? 32 : 64;
}

/// The model options a configuration describes.
inline models::model_options model_options_of(const train_config& c, std::int64_t num_classes) {
  models::model_options o;
  o.backbone = c.model;
  o.num_classes = num_classes;
  o.head = c.head == "softmax" ? models::head_kind::softmax : models::head_kind::prototype;
  o.decoder = c.decoder;
  o.decoder_dim = c.decoder_dim;
  o.output_stride = c.output_stride;
  o.zero_init_residual = c.zero_init_residual;
  o.resnet_width = resnet_width_of(c);
  o.drop_path_rate = c.drop_path;
  o.contract_dilation = c.contract_dilation;
  o.decoder_mmcv_init = c.decoder_init == "mmcv";
  o.proto.num_prototypes = c.prototypes;
  o.proto.gamma = c.gamma;
  o.proto.projection = c.projection == "bn" ? proto::projection_kind::bn : proto::projection_kind::published;
  o.proto.projection_normalize = c.projection_normalize == "channels" ? proto::projection_norm::channels
                                 : c.projection_normalize == "none"   ? proto::projection_norm::none
                                                                      : proto::projection_norm::published_width;
  o.proto.proj_dropout = c.proj_dropout;
  o.proto.gumbel = c.gumbel;
  o.loss.ppc_weight = c.ppc_weight;
  o.loss.ppd_weight = c.ppd_weight;
  o.loss.align_corners = c.ce_align_corners;
  o.seed = c.seed;
  return o;
}

/// The CE class weights --class-weights names for C classes: none (empty),
/// cityscapes (the published Cityscapes ce_weight, C must be 19) or a file
/// of C numbers (a JSON array, or numbers separated by spaces, commas or
/// newlines).
inline std::vector<double> class_weights_of(const train_config& c, std::int64_t C) {
  const std::string& w = c.class_weights;
  if (w.empty() || w == "none") return {};
  std::vector<double> v;
  std::string what;
  if (w == "cityscapes") {
    v = proto::cityscapes_class_weights();
    what = "--class-weights cityscapes";
  } else {
    what = "--class-weights '" + w + "'";
    std::ifstream f(w);
    if (!f) throw usage_error(what + ": cannot read the file (expected none, cityscapes or a file of weights)");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '[') {
      io::json_value j;
      try {
        j = io::parse_json(text);
      } catch (const std::exception& e) {
        throw usage_error(what + ": not valid JSON: " + e.what());
      }
      for (const auto& e : j.as_array()) {
        if (!e.is_number()) throw usage_error(what + ": expected an array of numbers");
        v.push_back(e.as_number());
      }
    } else {
      for (auto& ch : text)
        if (ch == ',' || ch == '\t' || ch == '\r' || ch == '\n') ch = ' ';
      std::istringstream is(text);
      std::string word;
      while (is >> word) {
        try {
          v.push_back(detail_config::parse_number<double>("class-weights", word));
        } catch (const usage_error&) {
          throw usage_error(what + ": '" + word + "' is not a number");
        }
      }
    }
  }
  if (static_cast<std::int64_t>(v.size()) != C)
    throw usage_error(what + ": " + std::to_string(v.size()) + " weights for a data set of " + std::to_string(C) +
                      " classes");
  for (double x : v)
    if (!(x >= 0) || !std::isfinite(x))
      throw usage_error(what + ": weight " + std::to_string(x) + " is not a finite value >= 0");
  return v;
}

inline models::inference_options inference_options_of(const train_config& c) {
  models::inference_options o;
  o.mode = c.eval_mode;
  o.crop_h = c.eval_crop[0];
  o.crop_w = c.eval_crop[1];
  o.stride_h = c.eval_stride[0];
  o.stride_w = c.eval_stride[1];
  o.scales = c.eval_scales;
  o.flip = c.eval_flip;
  // The evaluation upsamples the logits as the training CE did
  // (--ce-align-corners; the published tester uses align_corners=True as its
  // loss does): a model trained on align_corners=True logits and tested on
  // False ones is tested half a pixel off.
  o.align_corners = c.ce_align_corners;
  return o;
}

/// (1, 3, H, W) normalised input of an RGB image.
inline tensor<float> to_input(const tensor<std::uint8_t>& image) {
  return data::normalize(image, image_mean, image_std).reshape({1, 3, image.size(0), image.size(1)});
}

inline std::string format_duration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  std::ostringstream os;
  if (t >= 3600) os << t / 3600 << "h" << std::setw(2) << std::setfill('0') << (t / 60) % 60 << "m";
  else if (t >= 60) os << t / 60 << "m" << std::setw(2) << std::setfill('0') << t % 60 << "s";
  else os << t << "s";
  return os.str();
}

/// A one-line progress display: redrawn in place on a terminal, printed as
/// separate lines every `every` steps otherwise (logs, CI).
class progress_line {
 public:
  progress_line(std::string what, std::int64_t total, std::int64_t every, std::int64_t start = 0)
      : what_(std::move(what)), total_(total), every_(std::max<std::int64_t>(every, 1)), start_(start),
        tty_(isatty(fileno(stdout)) != 0), t0_(std::chrono::steady_clock::now()) {}

  void update(std::int64_t done, const std::string& detail) {
    const double el = elapsed();
    const double rate = done > start_ ? static_cast<double>(done - start_) / el : 0.0;
    const double left = rate > 0 ? static_cast<double>(total_ - done) / rate : -1;
    std::ostringstream os;
    os << what_ << " " << done << "/" << total_;
    if (tty_) {
      const int width = 24;
      const int fill = total_ > 0 ? static_cast<int>(width * done / total_) : 0;
      os.str("");
      os << what_ << " [" << std::string(static_cast<std::size_t>(fill), '#')
         << std::string(static_cast<std::size_t>(width - fill), '.') << "] " << done << "/" << total_;
    }
    os << "  " << detail << "  " << std::fixed << std::setprecision(2) << rate << " it/s  elapsed "
       << format_duration(el) << "  left " << format_duration(left);
    if (tty_) {
      std::cout << "\r" << os.str() << "\033[K" << std::flush;
      if (done == total_) std::cout << "\n";
    } else if (done == total_ || done % every_ == 0) {
      std::cout << os.str() << "\n" << std::flush;
    }
  }
  /// Ends an in-place line before other output.
  void interrupt() {
    if (tty_) std::cout << "\n";
  }
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  std::string what_;
  std::int64_t total_, every_, start_;
  bool tty_;
  std::chrono::steady_clock::time_point t0_;
};

/// What an evaluation returns.
struct evaluation {
  metrics::confusion_matrix confusion;
  metrics::segmentation_metrics metrics;
  std::vector<viz::prediction_row> examples;  ///< the first few images with their predictions
  double seconds = 0;
  /// With flip testing on batched images: the same images without the
  /// flip (single-scale, unflipped), from the same forward passes.
  bool has_plain = false;
  metrics::confusion_matrix plain_confusion = metrics::confusion_matrix(1, data::ignore_label);
  metrics::segmentation_metrics plain_metrics{};
};

/// Evaluates `m` on `ds` (the first `limit` images, 0 = all) with the
/// inference options of `c`; keeps `keep_examples` images for pictures.
/// Whole-image, single-scale runs on equal-sized images are batched (with
/// flip testing, the flipped batch is a second forward pass, and the
/// unflipped figures are kept as well, in plain_*).
template <class P>
evaluation evaluate(model_on<P>& m, const data::segmentation_dataset& ds, const train_config& c,
                    std::int64_t keep_examples, bool show_progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t C = ds.num_classes();
  const std::int64_t n = c.eval_limit > 0 ? std::min(c.eval_limit, ds.size()) : ds.size();
  evaluation ev{metrics::confusion_matrix(C, data::ignore_label), {}, {}, 0};
  const auto io = inference_options_of(c);
  const bool batched = io.mode == "whole" && io.scales.size() == 1 && io.scales[0] == 1.0;
  ev.has_plain = batched && io.flip;
  ev.plain_confusion = metrics::confusion_matrix(C, data::ignore_label);
  const bool was_training = m.is_training();
  m.eval();
  progress_line bar("eval", n, std::max<std::int64_t>(n / 5, 1));
  std::int64_t i = 0;
  while (i < n) {
    std::vector<data::sample> chunk;
    chunk.push_back(ds.get(i));
    if (batched)
      while (static_cast<std::int64_t>(chunk.size()) < 32 && i + static_cast<std::int64_t>(chunk.size()) < n) {
        auto s = ds.get(i + static_cast<std::int64_t>(chunk.size()));
        if (s.image.shape() != chunk[0].image.shape()) break;
        chunk.push_back(std::move(s));
      }
    const std::int64_t b = static_cast<std::int64_t>(chunk.size());
    const std::int64_t H = chunk[0].image.size(0), W = chunk[0].image.size(1);
    std::vector<tensor<std::int64_t>> preds, plain_preds;  // plain: unflipped, with flip testing only
    if (batched) {
      tensor<float> x({b, 3, H, W});
      for (std::int64_t k = 0; k < b; ++k) {
        auto one = data::normalize(chunk[static_cast<std::size_t>(k)].image, image_mean, image_std);
        std::copy(one.data(), one.data() + 3 * H * W, x.data() + k * 3 * H * W);
      }
      no_grad guard;
      auto logits = models::detail_infer::resize(m.forward(variable<float, P>(on<P>(x))).logits.value(), H, W,
                                                 io.align_corners)
                        .template to<cpu>();
      // Per image, the argmax over classes of q (b, C, H, W).
      auto argmax = [&](const float* q, std::int64_t k) {
        tensor<std::int64_t> p({H, W});
        for (std::int64_t j = 0; j < H * W; ++j) {
          std::int64_t best = 0;
          for (std::int64_t cc = 1; cc < C; ++cc)
            if (q[(k * C + cc) * H * W + j] > q[(k * C + best) * H * W + j]) best = cc;
          p.data()[j] = best;
        }
        return p;
      };
      if (io.flip) {
        // As models::predict: the mean of the softmax of the image and the
        // flipped-back softmax of the flipped image.
        namespace di = models::detail_infer;
        const auto p0 = softmax(logits, 1);
        auto lf = di::resize(m.forward(variable<float, P>(on<P>(di::flip_last(x)))).logits.value(), H, W,
                             io.align_corners)
                      .template to<cpu>();
        const auto p1 = di::flip_last(softmax(lf, 1));
        const auto mean = (p0 + p1) * 0.5f;
        for (std::int64_t k = 0; k < b; ++k) {
          preds.push_back(argmax(mean.data(), k));
          plain_preds.push_back(argmax(logits.data(), k));
        }
      } else {
        for (std::int64_t k = 0; k < b; ++k) preds.push_back(argmax(logits.data(), k));
      }
    } else {
      preds.push_back(models::predict(m, to_input(chunk[0].image), io));
    }
    for (std::int64_t k = 0; k < b; ++k) {
      const auto& s = chunk[static_cast<std::size_t>(k)];
      const auto& p = preds[static_cast<std::size_t>(k)];
      tensor<std::int64_t> gt({H, W});
      for (std::int64_t j = 0; j < H * W; ++j) gt.data()[j] = s.label.data()[j];
      ev.confusion.update(p.data(), gt.data(), H * W);
      if (!plain_preds.empty())
        ev.plain_confusion.update(plain_preds[static_cast<std::size_t>(k)].data(), gt.data(), H * W);
      if (static_cast<std::int64_t>(ev.examples.size()) < keep_examples) {
        tensor<std::uint8_t> pl({H, W});
        std::int64_t right = 0, counted = 0;
        for (std::int64_t j = 0; j < H * W; ++j) {
          pl.data()[j] = static_cast<std::uint8_t>(p.data()[j]);
          if (s.label.data()[j] != data::ignore_label) {
            ++counted;
            right += p.data()[j] == s.label.data()[j];
          }
        }
        std::ostringstream cap;
        cap << s.name << ": " << std::fixed << std::setprecision(1)
            << (counted ? 100.0 * static_cast<double>(right) / static_cast<double>(counted) : 0.0) << "% pixels";
        ev.examples.push_back({s.image, s.label, pl, cap.str()});
      }
    }
    i += b;
    if (show_progress) bar.update(i, "");
  }
  m.train(was_training);
  ev.metrics = ev.confusion.compute();
  if (ev.has_plain) ev.plain_metrics = ev.plain_confusion.compute();
  ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ev;
}

/// With flip testing on batched images: prints the figures without the flip
/// and adds them to a metrics.json object as "without_flip" (percent).
inline void report_without_flip(const evaluation& ev, std::ostream& os, io::json_value::object& extra) {
  if (!ev.has_plain) return;
  const auto& p = ev.plain_metrics;
  os << std::fixed << std::setprecision(2) << "without flip: mIoU " << 100 * p.miou << "  aAcc " << 100 * p.aacc
     << "  mAcc " << 100 * p.macc << "  (percent)\n";
  io::json_value::object o;
  o["mIoU"] = io::json_value(100 * p.miou);
  o["aAcc"] = io::json_value(100 * p.aacc);
  o["mAcc"] = io::json_value(100 * p.macc);
  extra["without_flip"] = io::json_value(std::move(o));
}

/// Prints mIoU, aAcc, mAcc and the per-class IoU / accuracy table.
inline void print_metrics(std::ostream& os, const metrics::segmentation_metrics& m,
                          const std::vector<std::string>& names) {
  os << std::fixed << std::setprecision(2) << "mIoU " << 100 * m.miou << "  aAcc " << 100 * m.aacc << "  mAcc "
     << 100 * m.macc << "  (percent)\n";
  std::size_t w = 5;
  for (const auto& n : names) w = std::max(w, n.size());
  os << "  " << std::left << std::setw(static_cast<int>(w)) << "class" << std::right << std::setw(9) << "IoU"
     << std::setw(9) << "Acc" << "\n";
  for (std::size_t k = 0; k < names.size(); ++k) {
    auto show = [&](double v) {
      if (std::isnan(v)) os << std::setw(9) << "-";
      else os << std::setw(9) << 100 * v;
    };
    os << "  " << std::left << std::setw(static_cast<int>(w)) << names[k] << std::right;
    show(m.iou[k]);
    show(m.acc[k]);
    os << "\n";
  }
}

/// Writes `text` to `path` atomically.
inline void write_text(const fs::path& path, const std::string& text) { data::write_file_atomically(path, text); }

/// metrics.json: the metrics, the class names and where they came from.
inline std::string metrics_json(const metrics::segmentation_metrics& m, const std::vector<std::string>& names,
                                const io::json_value::object& extra) {
  auto j = io::parse_json(metrics::to_json(m, names));
  io::json_value::object o = j.as_object();
  for (const auto& [k, v] : extra) o[k] = v;
  return io::json_value(std::move(o)).dump(2);
}

/// Reads the configuration stored with a checkpoint or weights file.
inline train_config config_from_metadata(const std::map<std::string, std::string>& meta, const std::string& path) {
  auto it = meta.find("config");
  if (it == meta.end())
    throw usage_error("'" + path + "' carries no 'config' metadata: it was not written by protoseg-train");
  train_config c;
  option_table t;
  add_model_options(t, c);
  add_data_options(t, c);
  add_eval_options(t, c);
  add_run_options(t, c);
  io::json_value j;
  try {
    j = io::parse_json(it->second);
  } catch (const std::exception& e) {
    throw usage_error("'" + path + "': its 'config' metadata is not valid JSON: " + e.what());
  }
  io::json_value::object keep;
  for (const auto& [k, v] : j.as_object())
    if (t.find(k) && k != "device") keep[k] = v;  // the device is the new run's choice, not the model's
  // Written before --resnet-width existed: every ResNet had the standard width.
  if (!j.as_object().count("resnet-width") && !j.as_object().count("resnet_width")) c.resnet_width = 64;
  // Written before the published-code options existed: the model had the
  // BN projection without normalisation or dropout, and dilated ResNets
  // did not contract their first dilation.
  if (!j.as_object().count("projection")) {
    c.projection = "bn";
    c.projection_normalize = "none";
    c.proj_dropout = 0;
    c.contract_dilation = false;
    c.ce_align_corners = false;
  }
  t.apply_json(io::json_value(keep), "'" + path + "' config");
  return c;
}

/// The model state and metadata of a weights file written by protoseg-train:
/// model.safetensors, or a checkpoint (read once; its model part is used).
inline io::checkpoint read_model_file(const std::string& path) {
  auto archive = io::read_safetensors(path);
  if (io::is_checkpoint(archive)) return io::checkpoint_from_archive(std::move(archive), path);
  io::checkpoint c;
  c.metadata = archive.metadata;
  c.model = std::move(archive);
  return c;
}

/// Loads model weights (a checkpoint or a bare weights file) strictly;
/// a mismatch names the keys and the file.
template <class P>
void load_weights(model_on<P>& m, const io::safetensors_archive& state, const std::string& path) {
  try {
    m.load_state_dict(state);
  } catch (const std::exception& e) {
    throw io_error("'" + path + "' does not match the model: " + e.what());
  }
}

}  // namespace protoseg::examples
