#pragma once
/// \file fashion_scenes.hpp
/// The built-in "Fashion-MNIST scenes" segmentation data set: RGB canvases
/// with a noisy colour gradient and 2-4 tinted, scaled Fashion-MNIST garments
/// on top; label 0 is background and 1 + class where a garment covers the
/// pixel. The recipe is that of the PyTorch peer (`peers/fashion_scenes.py`),
/// with protoseg's own random generator (same distributions, other streams).
/// See docs/pipeline.md.

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "protoseg/data/dataset.hpp"
#include "protoseg/data/fashion_mnist.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/random.hpp"
#include "protoseg/tensor/tensor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace protoseg::data {

/// Number of classes of the scenes: background plus the ten garments.
inline constexpr std::int64_t fashion_scenes_num_classes = 11;

/// Options of the Fashion-MNIST scenes data set.
struct fashion_scenes_options {
  std::int64_t count = 4000;                                ///< number of scenes
  std::uint64_t seed = 1;                                   ///< scene k depends on (seed, k) only
  std::int64_t size = 64;                                   ///< canvas side in pixels (>= 8)
  fashion_mnist_split split = fashion_mnist_split::train;   ///< garments from this split
  std::filesystem::path data_dir = {};                      ///< Fashion-MNIST directory; empty: fashion_mnist_dir()
  int threads = 0;                                          ///< composing threads; 0: OpenMP default
};

}  // namespace protoseg::data

// In protoseg::detail, not protoseg::data::detail: a nested `detail` would hide
// protoseg::detail::fail from every data header included after this one.
namespace protoseg::detail {

/// One splitmix64 step: a well-mixed 64-bit value from z.
inline std::uint64_t data_splitmix64(std::uint64_t z) noexcept {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace protoseg::detail

namespace protoseg::data {

/// The seed of scene k of a set seeded with `seed`: splitmix64(seed * 1000003 + k).
inline std::uint64_t fashion_scene_seed(std::uint64_t seed, std::int64_t k) noexcept {
  return protoseg::detail::data_splitmix64(seed * 1000003ULL + static_cast<std::uint64_t>(k));
}

/// The 11 class names of the scenes: "background", then the Fashion-MNIST names.
inline const std::vector<std::string>& fashion_scenes_class_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n{"background"};
    for (auto c : fashion_mnist_classes) n.emplace_back(c);
    return n;
  }();
  return names;
}

/// Composes one scene of `size` x `size` pixels from `source` with `gen`,
/// writing the RGB image (size*size*3 bytes, row-major HWC) and the label map
/// (size*size bytes). Recipe of peers/fashion_scenes.py `make_scene`:
/// gradient c0 -> c1 along t = y/size * a + x/size * b (c0, c1 uniform in
/// [0,1]^3, a, b uniform in [-1,1]), plus N(0, 0.04^2) noise; then 2-4
/// garments, each a random image nearest-resized to s in [24, 44] (at most
/// `size`), at a uniform position, blended with alpha = pixel / 255 over the
/// canvas in a colour uniform in [0.2,1]^3, labelled 1 + class where
/// alpha > 0.3; finally clip to [0,1], * 255 and truncate.
inline void make_fashion_scene(generator& gen, const fashion_mnist_data& source, std::int64_t size,
                               std::uint8_t* image, std::uint8_t* label) {
  if (size < 8) detail::fail<value_error>("make_fashion_scene: size is ", size, ", expected >= 8");
  if (source.size() == 0) detail::fail<value_error>("make_fashion_scene: the Fashion-MNIST source is empty");
  const std::int64_t side = source.images.size(1);
  const auto n = static_cast<std::size_t>(size);
  std::vector<double> img(n * n * 3);

  double c0[3], c1[3];
  for (double& c : c0) c = gen.uniform();
  for (double& c : c1) c = gen.uniform();
  const double a = 2.0 * gen.uniform() - 1.0;
  const double b = 2.0 * gen.uniform() - 1.0;
  const double sz = static_cast<double>(size);
  auto t_at = [&](std::size_t y, std::size_t x) {
    return static_cast<double>(y) / sz * a + static_cast<double>(x) / sz * b;
  };
  // t is monotone in y and in x (rounding is monotone too): its extremes are
  // at the corners, bit for bit the values a scan would find.
  const double corners[4] = {t_at(0, 0), t_at(n - 1, 0), t_at(0, n - 1), t_at(n - 1, n - 1)};
  const double tmin = *std::min_element(corners, corners + 4);
  const double tmax = *std::max_element(corners, corners + 4);
  const double ptp = tmax - tmin + 1e-6;
  for (std::size_t y = 0; y < n; ++y)
    for (std::size_t x = 0; x < n; ++x) {
      const double u = (t_at(y, x) - tmin) / ptp;
      for (int c = 0; c < 3; ++c) img[(y * n + x) * 3 + c] = c0[c] * (1.0 - u) + c1[c] * u;
    }
  for (double& v : img) v += 0.04 * gen.normal();
  std::fill(label, label + n * n, std::uint8_t{0});

  const std::int64_t s_lo = std::min<std::int64_t>(24, size), s_hi = std::min<std::int64_t>(44, size);
  const std::int64_t garments = 2 + static_cast<std::int64_t>(gen.below(3));
  const std::uint8_t* pixels = source.images.data();
  const std::int64_t* classes = source.labels.data();
  std::vector<std::int64_t> idx;
  for (std::int64_t g = 0; g < garments; ++g) {
    const auto i = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(source.size())));
    const std::int64_t s = s_lo + static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(s_hi - s_lo + 1)));
    const auto y0 = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(size - s + 1)));
    const auto x0 = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(size - s + 1)));
    double color[3];
    for (double& c : color) c = 0.2 + 0.8 * gen.uniform();
    idx.resize(static_cast<std::size_t>(s));
    for (std::int64_t k = 0; k < s; ++k) idx[static_cast<std::size_t>(k)] = k * side / s;
    const std::uint8_t* garment = pixels + i * side * side;
    const auto cls = static_cast<std::uint8_t>(classes[i] + 1);
    for (std::int64_t yy = 0; yy < s; ++yy)
      for (std::int64_t xx = 0; xx < s; ++xx) {
        const std::uint8_t p = garment[idx[static_cast<std::size_t>(yy)] * side + idx[static_cast<std::size_t>(xx)]];
        const double alpha = static_cast<double>(static_cast<float>(p) / 255.0f);
        const auto o = static_cast<std::size_t>((y0 + yy) * size + (x0 + xx));
        for (int c = 0; c < 3; ++c) img[o * 3 + c] = img[o * 3 + c] * (1.0 - alpha) + color[c] * alpha;
        if (alpha > 0.3) label[o] = cls;
      }
  }
  for (std::size_t k = 0; k < img.size(); ++k)
    image[k] = static_cast<std::uint8_t>(std::clamp(img[k], 0.0, 1.0) * 255.0);
}

/// The Fashion-MNIST scenes data set, composed in memory at construction
/// (count * size * size * 4 bytes). Scene k is drawn from its own generator
/// seeded with `fashion_scene_seed(seed, k)`, so the set depends on
/// (seed, count, size, split) only, never on the number of threads.
/// Train scenes use the training images, validation scenes the test images;
/// the trainers use {4000, seed 1, train} and {500, seed 2, test}.
class fashion_scenes_dataset : public segmentation_dataset {
 public:
  /// Loads the Fashion-MNIST split from `options.data_dir` and composes the scenes.
  explicit fashion_scenes_dataset(const fashion_scenes_options& options = {})
      : fashion_scenes_dataset(load_fashion_mnist(options.split, fashion_mnist_dir(options.data_dir)), options,
                               fashion_mnist_dir(options.data_dir).string()) {}

  /// Composes the scenes from an already loaded split (`options.split` and
  /// `options.data_dir` only label the description).
  fashion_scenes_dataset(const fashion_mnist_data& source, const fashion_scenes_options& options)
      : fashion_scenes_dataset(source, options, std::string("memory")) {}

  std::int64_t size() const override { return options_.count; }

  /// Scene i as its own copy (image (size, size, 3), label (size, size)), named "scene i".
  sample get(std::int64_t i) const override {
    if (i < 0 || i >= options_.count)
      detail::fail<value_error>("fashion_scenes_dataset::get: index ", i, " is out of range [0, ", options_.count,
                                ")");
    return sample{images_.select(i).clone(), labels_.select(i).clone(), "scene " + std::to_string(i)};
  }

  const std::vector<std::string>& class_names() const override { return fashion_scenes_class_names(); }

  std::string description() const override { return description_; }

  const fashion_scenes_options& options() const noexcept { return options_; }
  /// All images, (count, size, size, 3), and labels, (count, size, size).
  const tensor<std::uint8_t>& images() const noexcept { return images_; }
  const tensor<std::uint8_t>& labels() const noexcept { return labels_; }

 private:
  fashion_scenes_dataset(const fashion_mnist_data& source, const fashion_scenes_options& options,
                         const std::string& from)
      : options_(options) {
    if (options.count < 0)
      detail::fail<value_error>("fashion_scenes_options.count is ", options.count, ", expected >= 0");
    if (options.size < 8 || options.size > 4096)
      detail::fail<value_error>("fashion_scenes_options.size is ", options.size, ", expected 8 to 4096");
    if (options.threads < 0)
      detail::fail<value_error>("fashion_scenes_options.threads is ", options.threads, ", expected >= 0");
    if (options.count > 0 && source.size() == 0)
      detail::fail<value_error>("fashion_scenes_dataset: the Fashion-MNIST source holds no images");
    const std::int64_t sz = options.size, count = options.count;
    images_ = tensor<std::uint8_t>::empty(shape({count, sz, sz, 3}));
    labels_ = tensor<std::uint8_t>::empty(shape({count, sz, sz}));
    std::uint8_t* im = images_.data();
    std::uint8_t* lb = labels_.data();
    const std::uint64_t seed = options.seed;
#if defined(_OPENMP)
    const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
#endif
    for (std::int64_t k = 0; k < count; ++k) {
      generator gen(fashion_scene_seed(seed, k));
      make_fashion_scene(gen, source, sz, im + k * sz * sz * 3, lb + k * sz * sz);
    }
    std::ostringstream os;
    os << "Fashion-MNIST scenes, " << count << " scenes of " << sz << "x" << sz << ", seed " << options.seed
       << ", garments from the " << (options.split == fashion_mnist_split::train ? "training" : "test")
       << " images (" << from << ")";
    description_ = os.str();
  }

  fashion_scenes_options options_;
  tensor<std::uint8_t> images_;
  tensor<std::uint8_t> labels_;
  std::string description_;
};

}  // namespace protoseg::data
