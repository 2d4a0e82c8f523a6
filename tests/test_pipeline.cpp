// Tests of the data pipeline: the Fashion-MNIST scenes data set, the
// mmsegmentation-style training transforms and the batch loader.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/data/fashion_scenes.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ps = protoseg;
namespace pd = protoseg::data;

namespace {

/// The Fashion-MNIST splits, loaded once for the whole program.
const pd::fashion_mnist_data& mnist(pd::fashion_mnist_split split) {
  static const pd::fashion_mnist_data train = pd::load_fashion_mnist(pd::fashion_mnist_split::train);
  static const pd::fashion_mnist_data test = pd::load_fashion_mnist(pd::fashion_mnist_split::test);
  return split == pd::fashion_mnist_split::train ? train : test;
}

bool same_bytes(const ps::tensor<std::uint8_t>& a, const ps::tensor<std::uint8_t>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel())) == 0;
}

/// A source of one 28x28 image filled with `value`, of class `cls`.
pd::fashion_mnist_data flat_source(std::uint8_t value, std::int64_t cls) {
  pd::fashion_mnist_data d;
  d.images = ps::tensor<std::uint8_t>(ps::shape({1, 28, 28}));
  std::fill(d.images.data(), d.images.data() + d.images.numel(), value);
  d.labels = ps::tensor<std::int64_t>::from_vector({cls}, ps::shape({1}));
  return d;
}

}  // namespace

// ---- Fashion-MNIST scenes ----------------------------------------------------------------

TEST_CASE("scenes: deterministic for a seed, independent of the thread count") {
  const auto& src = mnist(pd::fashion_mnist_split::train);
  pd::fashion_scenes_dataset one(src, {.count = 96, .seed = 7, .threads = 1});
  pd::fashion_scenes_dataset three(src, {.count = 96, .seed = 7, .threads = 3});
  CHECK(same_bytes(one.images(), three.images()));
  CHECK(same_bytes(one.labels(), three.labels()));
  // scene k depends on (seed, k) only: a shorter set is a prefix
  pd::fashion_scenes_dataset prefix(src, {.count = 10, .seed = 7, .threads = 2});
  CHECK(same_bytes(prefix.images(), one.images().narrow0(0, 10)));
  // and one scene made by hand from its seed equals the stored one
  ps::generator gen(pd::fashion_scene_seed(7, 42));
  std::vector<std::uint8_t> img(64 * 64 * 3), lab(64 * 64);
  pd::make_fashion_scene(gen, src, 64, img.data(), lab.data());
  auto s = one.get(42);
  CHECK(s.name == "scene 42");
  CHECK(s.image.shape() == ps::shape({64, 64, 3}));
  CHECK(s.label.shape() == ps::shape({64, 64}));
  CHECK(std::memcmp(img.data(), s.image.data(), img.size()) == 0);
  CHECK(std::memcmp(lab.data(), s.label.data(), lab.size()) == 0);
  // get() returns a copy: writing into it does not change the set
  s.image.data()[0] ^= 0xff;
  CHECK(one.get(42).image.data()[0] == img[0]);
}

TEST_CASE("scenes: different seeds and splits give different scenes") {
  pd::fashion_scenes_dataset a(mnist(pd::fashion_mnist_split::train), {.count = 8, .seed = 1});
  pd::fashion_scenes_dataset b(mnist(pd::fashion_mnist_split::train), {.count = 8, .seed = 2});
  pd::fashion_scenes_dataset c(mnist(pd::fashion_mnist_split::test),
                               {.count = 8, .seed = 1, .split = pd::fashion_mnist_split::test});
  CHECK_FALSE(same_bytes(a.images(), b.images()));
  CHECK_FALSE(same_bytes(a.labels(), b.labels()));
  CHECK_FALSE(same_bytes(a.images(), c.images()));
  for (std::int64_t k = 1; k < 8; ++k) CHECK_FALSE(same_bytes(a.get(0).image, a.get(k).image));
}

TEST_CASE("scenes: labels, class coverage and pixel statistics over 500 scenes") {
  pd::fashion_scenes_dataset d(mnist(pd::fashion_mnist_split::test),
                               {.count = 500, .seed = 2, .split = pd::fashion_mnist_split::test});
  CHECK(d.size() == 500);
  CHECK(d.num_classes() == 11);
  CHECK(d.class_names().front() == "background");
  CHECK(d.class_names()[10] == "Ankle boot");
  CHECK(d.description().find("500 scenes of 64x64") != std::string::npos);
  std::array<std::int64_t, 256> hist{};
  const std::uint8_t* l = d.labels().data();
  std::int64_t scenes_with_background = 0;
  for (std::int64_t k = 0; k < 500; ++k) {
    std::set<int> present;
    for (std::int64_t p = 0; p < 64 * 64; ++p) {
      ++hist[l[k * 4096 + p]];
      present.insert(l[k * 4096 + p]);
    }
    scenes_with_background += present.count(0);
    CHECK(present.size() >= 2);  // background and at least one garment
  }
  for (int v = 11; v < 256; ++v) CHECK(hist[static_cast<std::size_t>(v)] == 0);
  CHECK(scenes_with_background == 500);
  for (int c = 1; c <= 10; ++c) CHECK(hist[static_cast<std::size_t>(c)] > 0);
  const double total = 500.0 * 4096;
  const double fg = 1.0 - double(hist[0]) / total;
  CHECK(fg > 0.15);
  CHECK(fg < 0.75);
  double sum = 0, sq = 0;
  const std::uint8_t* im = d.images().data();
  for (std::int64_t i = 0; i < d.images().numel(); ++i) {
    sum += im[i];
    sq += double(im[i]) * im[i];
  }
  const double mean = sum / double(d.images().numel());
  const double sd = std::sqrt(sq / double(d.images().numel()) - mean * mean);
  CHECK(mean > 90);
  CHECK(mean < 170);
  CHECK(sd > 40);
  CHECK(sd < 110);
}

TEST_CASE("scenes: the recipe on constructed garments") {
  SUBCASE("an empty garment leaves a noisy gradient and an all-background label") {
    pd::fashion_scenes_dataset d(flat_source(0, 3), {.count = 20, .seed = 3, .size = 48});
    const std::uint8_t* l = d.labels().data();
    CHECK(std::all_of(l, l + d.labels().numel(), [](std::uint8_t v) { return v == 0; }));
    // a gradient plus N(0, 0.04) noise: neighbours differ by little on average
    const auto im = d.get(5).image;
    double diff = 0;
    for (std::int64_t y = 0; y < 48; ++y)
      for (std::int64_t x = 1; x < 48; ++x)
        for (std::int64_t c = 0; c < 3; ++c) diff += std::abs(double(im(y, x, c)) - double(im(y, x - 1, c)));
    diff /= 48.0 * 47 * 3;
    CHECK(diff > 2.0);   // the noise is there (0.04 * 255 * 2 / sqrt(pi) ~ 11.5 before clipping)
    CHECK(diff < 20.0);  // and the background is smooth
  }
  SUBCASE("a solid garment is a square of side 24 to 44 in a colour >= 0.2") {
    pd::fashion_scenes_dataset d(flat_source(255, 3), {.count = 40, .seed = 4});
    for (std::int64_t k = 0; k < 40; ++k) {
      const auto s = d.get(k);
      std::int64_t y0 = 64, y1 = -1, x0 = 64, x1 = -1, n = 0;
      for (std::int64_t y = 0; y < 64; ++y)
        for (std::int64_t x = 0; x < 64; ++x) {
          const int v = s.label(y, x);
          REQUIRE((v == 0 || v == 4));
          if (v == 4) {
            ++n;
            y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
            for (std::int64_t c = 0; c < 3; ++c) CHECK(s.image(y, x, c) >= 51);
          }
        }
      REQUIRE(n > 0);
      CHECK(std::max(y1 - y0, x1 - x0) + 1 >= 24);
      CHECK(y1 - y0 + 1 <= 64);
    }
  }
  SUBCASE("garments larger than a small canvas shrink to it") {
    pd::fashion_scenes_dataset d(flat_source(255, 0), {.count = 4, .seed = 4, .size = 16});
    // every garment covers the whole 16x16 canvas
    const std::uint8_t* l = d.labels().data();
    CHECK(std::all_of(l, l + d.labels().numel(), [](std::uint8_t v) { return v == 1; }));
  }
}

TEST_CASE("scenes: bad options raise clear errors") {
  const auto& src = mnist(pd::fashion_mnist_split::train);
  CHECK_THROWS_WITH_AS(pd::fashion_scenes_dataset(src, {.count = -1}), doctest::Contains("count is -1"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::fashion_scenes_dataset(src, {.count = 1, .size = 4}), doctest::Contains("size is 4"),
                       ps::value_error);
  pd::fashion_scenes_dataset d(src, {.count = 3});
  CHECK_THROWS_WITH_AS(d.get(3), doctest::Contains("index 3 is out of range [0, 3)"), ps::value_error);
  CHECK_THROWS_WITH_AS(d.get(-1), doctest::Contains("index -1"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::fashion_scenes_dataset({.count = 1, .data_dir = "/nonexistent/fmnist"}),
                       doctest::Contains("/nonexistent/fmnist"), ps::io_error);
}

TEST_CASE("scenes: the default constructor loads the Debian data") {
  pd::fashion_scenes_dataset d({.count = 5, .seed = 1});
  pd::fashion_scenes_dataset e(mnist(pd::fashion_mnist_split::train), {.count = 5, .seed = 1});
  CHECK(same_bytes(d.images(), e.images()));
  CHECK(d.description().find("/usr/share/datasets/fashion-mnist") != std::string::npos);
}
