// Tests of the data pipeline: the Fashion-MNIST scenes data set, the
// mmsegmentation-style training transforms and the batch loader.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/data/fashion_scenes.hpp>
#include <protoseg/data/loader.hpp>
#include <protoseg/data/transforms.hpp>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
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

namespace {

/// peers/fashion_scenes.py `make_scene`, transcribed line by line with the
/// same draws from a protoseg generator (rng.uniform(lo, hi) = lo + (hi - lo) u,
/// rng.integers(lo, hi) = lo + below(hi - lo), rng.normal(0, sd) = sd * normal()).
void python_make_scene(ps::generator& rng, const pd::fashion_mnist_data& src, int size, std::vector<std::uint8_t>& out,
                       std::vector<std::uint8_t>& lab) {
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * rng.uniform(); };
  auto integers = [&](std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(hi - lo)));
  };
  std::vector<double> yy(size * size), xx(size * size), t(size * size), img(size * size * 3);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) yy[y * size + x] = double(y) / size, xx[y * size + x] = double(x) / size;
  std::array<double, 3> c0, c1;
  for (auto& c : c0) c = uniform(0, 1);
  for (auto& c : c1) c = uniform(0, 1);
  const double ay = uniform(-1, 1), ax = uniform(-1, 1);
  for (int p = 0; p < size * size; ++p) t[p] = yy[p] * ay + xx[p] * ax;
  const double tmin = *std::min_element(t.begin(), t.end()), tmax = *std::max_element(t.begin(), t.end());
  for (int p = 0; p < size * size; ++p)
    for (int c = 0; c < 3; ++c)
      img[p * 3 + c] = c0[c] * (1 - (t[p] - tmin) / (tmax - tmin + 1e-6)) + c1[c] * ((t[p] - tmin) / (tmax - tmin + 1e-6));
  for (auto& v : img) v = v + 0.04 * rng.normal();
  lab.assign(size * size, 0);
  const std::int64_t count = integers(2, 5);
  for (std::int64_t g = 0; g < count; ++g) {
    const std::int64_t i = integers(0, src.size());
    const int s = int(integers(24, 45));
    std::vector<float> a(s * s);
    for (int r = 0; r < s; ++r)
      for (int q = 0; q < s; ++q)
        a[r * s + q] = float(src.images(i, std::int64_t(r * 28.0 / s), std::int64_t(q * 28.0 / s))) / 255.0f;
    const int y = int(integers(0, size - s + 1)), x = int(integers(0, size - s + 1));
    std::array<double, 3> color;
    for (auto& c : color) c = uniform(0.2, 1.0);
    for (int r = 0; r < s; ++r)
      for (int q = 0; q < s; ++q) {
        const int p = (y + r) * size + (x + q);
        for (int c = 0; c < 3; ++c) img[p * 3 + c] = img[p * 3 + c] * (1 - a[r * s + q]) + color[c] * a[r * s + q];
        if (a[r * s + q] > 0.3) lab[p] = static_cast<std::uint8_t>(src.labels(i) + 1);
      }
  }
  out.resize(img.size());
  for (std::size_t k = 0; k < img.size(); ++k) out[k] = static_cast<std::uint8_t>(std::clamp(img[k], 0.0, 1.0) * 255);
}

}  // namespace

TEST_CASE("scenes: the bytes of a direct transcription of the Python recipe") {
  const auto& src = mnist(pd::fashion_mnist_split::train);
  pd::fashion_scenes_dataset d(src, {.count = 30, .seed = 12});
  std::int64_t differing = 0;
  for (std::int64_t k = 0; k < 30; ++k) {
    ps::generator rng(pd::fashion_scene_seed(12, k));
    std::vector<std::uint8_t> img, lab;
    python_make_scene(rng, src, 64, img, lab);
    const auto s = d.get(k);
    CHECK(std::memcmp(lab.data(), s.label.data(), lab.size()) == 0);
    for (std::size_t i = 0; i < img.size(); ++i) differing += img[i] != s.image.data()[i];
  }
  CHECK(differing == 0);  // the library takes the gradient's extremes from the corners, bit for bit the same
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

// ---- transforms ------------------------------------------------------------------------------

namespace {

/// A sample whose pixels encode their position: image (y, x, c) = (7y + 3x + 50c) mod 256,
/// label (y, x) = (y + 2x) mod `classes`.
pd::sample pattern_sample(std::int64_t h, std::int64_t w, int classes = 11, std::string name = "pattern") {
  pd::sample s{ps::tensor<std::uint8_t>(ps::shape({h, w, 3})), ps::tensor<std::uint8_t>(ps::shape({h, w})),
               std::move(name)};
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      for (std::int64_t c = 0; c < 3; ++c) s.image(y, x, c) = static_cast<std::uint8_t>((7 * y + 3 * x + 50 * c) % 256);
      s.label(y, x) = static_cast<std::uint8_t>((y + 2 * x) % classes);
    }
  return s;
}

/// A sample of random pixels.
pd::sample noise_sample(std::int64_t h, std::int64_t w, std::uint64_t seed) {
  ps::generator g(seed);
  auto s = pattern_sample(h, w);
  for (std::int64_t i = 0; i < s.image.numel(); ++i) s.image.data()[i] = static_cast<std::uint8_t>(g.below(256));
  return s;
}

}  // namespace

TEST_CASE("transforms: rescale_size and random_resize follow mmseg's keep-ratio Resize") {
  CHECK(pd::rescale_size(64, 64, {2048, 512}) == std::array<std::int64_t, 2>{512, 512});
  CHECK(pd::rescale_size(40, 80, {200, 100}) == std::array<std::int64_t, 2>{100, 200});
  CHECK(pd::rescale_size(512, 683, {2048, 512}) == std::array<std::int64_t, 2>{512, 683});
  CHECK(pd::rescale_size(1024, 2048, {2048, 512}) == std::array<std::int64_t, 2>{512, 1024});
  const auto s = pattern_sample(64, 64);
  ps::generator g(3);
  const auto fixed = pd::random_resize(s, g, {128, 64}, {2.0, 2.0});
  CHECK(fixed.image.shape() == ps::shape({128, 128, 3}));
  CHECK(fixed.label.shape() == ps::shape({128, 128}));
  CHECK(fixed.name == "pattern");
  std::int64_t lo = 1000, hi = 0;
  for (int i = 0; i < 60; ++i) {
    const auto r = pd::random_resize(s, g, {128, 64}, {0.5, 2.0});
    CHECK(r.image.size(0) == r.image.size(1));
    CHECK(r.label.size(0) == r.image.size(0));
    lo = std::min(lo, r.image.size(0)), hi = std::max(hi, r.image.size(0));
  }
  CHECK(lo >= 32);
  CHECK(lo < 45);
  CHECK(hi <= 128);
  CHECK(hi > 110);
  // labels are resized with nearest: only source values appear
  const auto r = pd::random_resize(s, g, {200, 100}, {1.3, 1.3});
  for (std::int64_t i = 0; i < r.label.numel(); ++i) CHECK(r.label.data()[i] < 11);
}

TEST_CASE("transforms: bilinear and nearest resizing") {
  auto row = ps::tensor<std::uint8_t>::from_vector({0, 100}, ps::shape({1, 2, 1}));
  CHECK(pd::resize_bilinear(row, 1, 4).to_vector() == std::vector<std::uint8_t>{0, 25, 75, 100});
  auto lab = ps::tensor<std::uint8_t>::from_vector({1, 2, 3, 4}, ps::shape({2, 2}));
  CHECK(pd::resize_nearest(lab, 4, 4).to_vector() ==
        std::vector<std::uint8_t>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  CHECK(pd::resize_nearest(lab, 1, 1).to_vector() == std::vector<std::uint8_t>{1});
  // a constant image stays constant at any size
  ps::tensor<std::uint8_t> flat(ps::shape({9, 7, 3}));
  std::fill(flat.data(), flat.data() + flat.numel(), std::uint8_t{77});
  const auto big = pd::resize_bilinear(flat, 23, 5);
  CHECK(big.shape() == ps::shape({23, 5, 3}));
  for (auto v : big.to_vector()) CHECK(v == 77);
  // the same size is the identity
  const auto s = noise_sample(13, 17, 1);
  CHECK(same_bytes(pd::resize_bilinear(s.image, 13, 17), s.image));
  CHECK(same_bytes(pd::resize_nearest(s.label, 13, 17), s.label));
}

TEST_CASE("transforms: random_crop takes a region of the source") {
  const auto s = pattern_sample(50, 60);
  ps::generator g(5);
  std::set<std::pair<std::int64_t, std::int64_t>> offsets;
  for (int t = 0; t < 30; ++t) {
    const auto c = pd::random_crop(s, g, 20, 30);
    REQUIRE(c.image.shape() == ps::shape({20, 30, 3}));
    REQUIRE(c.label.shape() == ps::shape({20, 30}));
    // find the offset that produced it, then compare every byte
    bool found = false;
    for (std::int64_t y0 = 0; y0 <= 30 && !found; ++y0)
      for (std::int64_t x0 = 0; x0 <= 30 && !found; ++x0) {
        const auto ref = pd::crop(s, y0, x0, 20, 30);
        if (same_bytes(ref.image, c.image) && same_bytes(ref.label, c.label)) {
          found = true;
          offsets.insert({y0, x0});
        }
      }
    CHECK(found);
  }
  CHECK(offsets.size() > 20);  // the offsets are random
  // explicit crop contents
  const auto c = pd::crop(s, 3, 4, 2, 2);
  CHECK(c.image(1, 1, 2) == s.image(4, 5, 2));
  CHECK(c.label(1, 0) == s.label(4, 4));
  // a smaller image keeps its size along the short side
  const auto small = pd::random_crop(pattern_sample(10, 80), g, 32, 32);
  CHECK(small.image.shape() == ps::shape({10, 32, 3}));
  const auto tiny = pd::random_crop(pattern_sample(10, 12), g, 32, 32);
  CHECK(same_bytes(tiny.image, pattern_sample(10, 12).image));
}

TEST_CASE("transforms: random_crop honours cat_max_ratio") {
  // class 1 on columns 0..69, class 2 on 70..99, ignored top rows: a 50x50
  // crop is acceptable when both classes hold >= 13 columns (x0 in 33..50)
  pd::sample s = pattern_sample(60, 100);
  for (std::int64_t y = 0; y < 60; ++y)
    for (std::int64_t x = 0; x < 100; ++x) s.label(y, x) = y < 10 ? 255 : (x < 70 ? 1 : 2);
  auto acceptable = [](const pd::sample& c) {
    std::array<std::int64_t, 3> n{};
    for (std::int64_t i = 0; i < c.label.numel(); ++i)
      if (c.label.data()[i] != 255) ++n[c.label.data()[i]];
    const std::int64_t total = n[1] + n[2];
    return n[1] > 0 && n[2] > 0 && double(std::max(n[1], n[2])) / double(total) < 0.75;
  };
  ps::generator g(11);
  int ok_limited = 0, ok_free = 0;
  for (int t = 0; t < 200; ++t) {
    ok_limited += acceptable(pd::random_crop(s, g, 50, 50, 0.75));
    ok_free += acceptable(pd::random_crop(s, g, 50, 50, 1.0));
  }
  CHECK(ok_limited >= 190);  // fails only when all 11 draws fail (p ~ 0.9%)
  CHECK(ok_free < 110);      // about 35% without the check
  // a crop that can never hold two classes still comes back after 10 retries
  for (std::int64_t i = 0; i < s.label.numel(); ++i) s.label.data()[i] = s.label.data()[i] == 2 ? 255 : 1;
  const auto c = pd::random_crop(s, g, 50, 50, 0.75);
  CHECK(c.image.shape() == ps::shape({50, 50, 3}));
}

TEST_CASE("transforms: flips") {
  const auto s = pattern_sample(9, 13);
  const auto f = pd::hflip(s);
  for (std::int64_t y = 0; y < 9; ++y)
    for (std::int64_t x = 0; x < 13; ++x) {
      CHECK(f.label(y, x) == s.label(y, 12 - x));
      for (std::int64_t c = 0; c < 3; ++c) CHECK(f.image(y, x, c) == s.image(y, 12 - x, c));
    }
  CHECK(same_bytes(pd::hflip(f).image, s.image));
  CHECK(same_bytes(pd::hflip(f).label, s.label));
  ps::generator g(2);
  CHECK(same_bytes(pd::random_flip(s, g, 1.0).image, f.image));
  CHECK(same_bytes(pd::random_flip(s, g, 0.0).image, s.image));
  int flipped = 0;
  for (int t = 0; t < 400; ++t) flipped += same_bytes(pd::random_flip(s, g).image, f.image);
  CHECK(flipped > 150);
  CHECK(flipped < 250);
}

TEST_CASE("transforms: pad and normalize") {
  const auto s = pattern_sample(30, 20);
  const auto p = pd::pad(s, 32, 25);
  CHECK(p.image.shape() == ps::shape({32, 25, 3}));
  for (std::int64_t y = 0; y < 32; ++y)
    for (std::int64_t x = 0; x < 25; ++x) {
      const bool inside = y < 30 && x < 20;
      CHECK(p.label(y, x) == (inside ? s.label(y, x) : 255));
      for (std::int64_t c = 0; c < 3; ++c) CHECK(p.image(y, x, c) == (inside ? s.image(y, x, c) : 0));
    }
  const auto same = pd::pad(s, 10, 20);  // already large enough: unchanged
  CHECK(same_bytes(same.image, s.image));
  CHECK(same_bytes(same.label, s.label));

  const auto n = pd::normalize(s.image);
  CHECK(n.shape() == ps::shape({3, 30, 20}));
  for (std::int64_t c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < 30; y += 7)
      for (std::int64_t x = 0; x < 20; x += 3) {
        const double want = (double(s.image(y, x, c)) - pd::imagenet_mean[static_cast<std::size_t>(c)]) /
                            pd::imagenet_std[static_cast<std::size_t>(c)];
        CHECK(n(c, y, x) == doctest::Approx(want).epsilon(1e-6));
      }
  const auto m = pd::normalize(s.image, {0, 0, 0}, {255, 255, 255});
  CHECK(m(1, 2, 3) == doctest::Approx(s.image(2, 3, 1) / 255.0));
  const auto e = pd::apply_eval_pipeline(s, {.mean = {10, 20, 30}, .std = {2, 4, 8}});
  CHECK(e(2, 5, 6) == doctest::Approx((s.image(5, 6, 2) - 30.0) / 8.0));
}

TEST_CASE("transforms: photometric distortion") {
  SUBCASE("OpenCV-style HSV round trip") {
    int worst = 0;
    ps::generator g(9);
    for (int t = 0; t < 20000; ++t) {
      std::uint8_t rgb[3] = {std::uint8_t(g.below(256)), std::uint8_t(g.below(256)), std::uint8_t(g.below(256))};
      std::uint8_t hsv[3], back[3];
      ps::detail::rgb_to_hsv8(rgb, hsv);
      CHECK(hsv[0] < 180);
      ps::detail::hsv8_to_rgb(hsv, back);
      for (int c = 0; c < 3; ++c) worst = std::max(worst, std::abs(int(back[c]) - int(rgb[c])));
    }
    CHECK(worst <= 4);  // H is kept in 2-degree steps, as OpenCV's 8-bit HSV
    std::uint8_t red[3] = {255, 0, 0}, hsv[3];
    ps::detail::rgb_to_hsv8(red, hsv);
    CHECK((hsv[0] == 0 && hsv[1] == 255 && hsv[2] == 255));
    std::uint8_t blue[3] = {0, 0, 255};
    ps::detail::rgb_to_hsv8(blue, hsv);
    CHECK(hsv[0] == 120);
  }
  SUBCASE("labels unchanged, images changed, deterministic per generator") {
    const auto s = noise_sample(24, 24, 4);
    int changed = 0;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
      ps::generator g1(seed), g2(seed);
      const auto a = pd::photometric_distortion(s, g1);
      const auto b = pd::photometric_distortion(s, g2);
      CHECK(same_bytes(a.label, s.label));
      CHECK(same_bytes(a.image, b.image));
      changed += !same_bytes(a.image, s.image);
    }
    CHECK(changed >= 30);  // all four steps skipped has probability 1/16
    CHECK(same_bytes(noise_sample(24, 24, 4).image, s.image));  // input untouched
  }
  SUBCASE("neutral settings change nothing but HSV rounding; gray stays gray") {
    const auto s = noise_sample(16, 16, 8);
    ps::generator g(1);
    for (int t = 0; t < 20; ++t) {
      const auto a = pd::photometric_distortion(
          s, g, {.brightness_delta = 0, .contrast_range = {1, 1}, .saturation_range = {1, 1}, .hue_delta = 0});
      for (std::int64_t i = 0; i < s.image.numel(); ++i)
        CHECK(std::abs(int(a.image.data()[i]) - int(s.image.data()[i])) <= 8);
    }
    auto gray = pattern_sample(8, 8);
    for (std::int64_t y = 0; y < 8; ++y)
      for (std::int64_t x = 0; x < 8; ++x) gray.image(y, x, 1) = gray.image(y, x, 2) = gray.image(y, x, 0);
    for (int t = 0; t < 20; ++t) {
      const auto a = pd::photometric_distortion(gray, g);
      for (std::int64_t y = 0; y < 8; ++y)
        for (std::int64_t x = 0; x < 8; ++x) {
          CHECK(a.image(y, x, 0) == a.image(y, x, 1));
          CHECK(a.image(y, x, 0) == a.image(y, x, 2));
        }
    }
  }
  SUBCASE("brightness alone shifts by at most the delta") {
    const auto s = noise_sample(16, 16, 3);
    ps::generator g(2);
    for (int t = 0; t < 20; ++t) {
      const auto a = pd::photometric_distortion(
          s, g, {.brightness_delta = 10, .contrast_range = {1, 1}, .saturation_range = {1, 1}, .hue_delta = 0});
      int lo = 1000, hi = -1000;
      for (std::int64_t i = 0; i < s.image.numel(); ++i) {
        const int v = s.image.data()[i];
        if (v < 20 || v > 235) continue;  // away from clipping
        const int d = int(a.image.data()[i]) - v;
        lo = std::min(lo, d), hi = std::max(hi, d);
      }
      CHECK(lo >= -14);  // 10 + truncation + HSV rounding (<= 4) when saturation ran
      CHECK(hi <= 14);
    }
  }
}

TEST_CASE("transforms: the training pipeline ends at the crop size") {
  pd::train_pipeline_options o{.scale = {128, 64}, .ratio_range = {0.5, 2.0}, .crop_h = 48, .crop_w = 40};
  ps::generator g(6);
  int padded = 0;
  for (const auto& s : {pattern_sample(64, 64), pattern_sample(20, 90), pattern_sample(200, 30)})
    for (int t = 0; t < 15; ++t) {
      const auto r = pd::apply_train_pipeline(s, g, o);
      CHECK(r.image.shape() == ps::shape({48, 40, 3}));
      CHECK(r.label.shape() == ps::shape({48, 40}));
      for (std::int64_t i = 0; i < r.label.numel(); ++i) {
        const int v = r.label.data()[i];
        CHECK((v < 11 || v == 255));
        padded += v == 255;
      }
    }
  CHECK(padded > 0);  // the 20x90 sample rescales to at most 22 rows: padded with 255
  // without resize, a large image is cropped only (contents are a region)
  pd::train_pipeline_options plain{.resize = false, .crop_h = 16, .crop_w = 16, .cat_max_ratio = 1.0, .flip = false,
                                   .photometric = false};
  const auto r = pd::apply_train_pipeline(pattern_sample(16, 16), g, plain);
  CHECK(same_bytes(r.image, pattern_sample(16, 16).image));
}

TEST_CASE("transforms: bad arguments raise clear errors") {
  const auto s = pattern_sample(10, 10);
  ps::generator g(1);
  CHECK_THROWS_WITH_AS(pd::random_resize(s, g, {64, 64}, {2.0, 0.5}), doctest::Contains("ratio_range min 2 > max 0.5"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::random_resize(s, g, {64, 64}, {0.0, 0.5}), doctest::Contains("ratio_range"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::random_resize(s, g, {0, 64}, {1, 1}), doctest::Contains("scale (W, H) = (0, 64)"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::random_crop(s, g, 0, 5), doctest::Contains("crop size 0x5"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::random_crop(s, g, 5, 5, 1.5), doctest::Contains("cat_max_ratio is 1.5"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::crop(s, 5, 5, 6, 2), doctest::Contains("not inside the 10x10"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::random_flip(s, g, 2.0), doctest::Contains("p is 2"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::pad(s, -1, 4), doctest::Contains("size -1x4"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::normalize(s.image, {0, 0, 0}, {1, 0, 1}), doctest::Contains("channel 1"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::normalize(s.label), doctest::Contains("expected (H, W, 3)"), ps::value_error);
  pd::sample bad{s.image, pattern_sample(10, 9).label, "odd one"};
  CHECK_THROWS_WITH_AS(pd::hflip(bad), doctest::Contains("'odd one': image is 10x10 (HxW) but label is 10x9"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::photometric_distortion(bad, g), doctest::Contains("odd one"), ps::value_error);
  pd::sample gray{pattern_sample(4, 4).label, pattern_sample(4, 4).label, "gray"};
  CHECK_THROWS_WITH_AS(pd::resize(gray, 2, 2), doctest::Contains("expected (H, W, 3)"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::apply_train_pipeline(s, g, {.crop_h = 0}), doctest::Contains("crop 0x512"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::photometric_distortion(s, g, {.contrast_range = {1.5, 0.5}}),
                       doctest::Contains("contrast_range (1.5, 0.5)"), ps::value_error);
}

// ---- batch loader ----------------------------------------------------------------------------

namespace {

/// An in-memory data set of `n` pattern samples (sample i's image offset by i);
/// get(throw_at) throws io_error, and sample odd_size_at is 1 pixel narrower.
class toy_dataset : public pd::segmentation_dataset {
 public:
  toy_dataset(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t throw_at = -1,
              std::int64_t odd_size_at = -1, int delay_ms = 0)
      : n_(n), h_(h), w_(w), throw_at_(throw_at), odd_(odd_size_at), delay_ms_(delay_ms) {}
  std::int64_t size() const override { return n_; }
  pd::sample get(std::int64_t i) const override {
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    if (i == throw_at_) throw ps::io_error("toy: cannot read 'img_" + std::to_string(i) + ".png': truncated file");
    auto s = pattern_sample(h_, i == odd_ ? w_ - 1 : w_, 11, "toy " + std::to_string(i));
    for (std::int64_t k = 0; k < s.image.numel(); ++k) s.image.data()[k] = static_cast<std::uint8_t>(s.image.data()[k] + i);
    return s;
  }
  const std::vector<std::string>& class_names() const override { return pd::fashion_scenes_class_names(); }
  std::string description() const override { return "toy"; }

 private:
  std::int64_t n_, h_, w_, throw_at_, odd_;
  int delay_ms_;
};

bool same_batch(const pd::batch& a, const pd::batch& b) {
  return a.indices == b.indices && a.names == b.names && a.number == b.number && a.epoch == b.epoch &&
         a.images.shape() == b.images.shape() && a.labels.shape() == b.labels.shape() &&
         a.images.to_vector() == b.images.to_vector() && a.labels.to_vector() == b.labels.to_vector();
}

std::shared_ptr<const pd::segmentation_dataset> scenes_for_loader() {
  static const auto d = std::make_shared<const pd::fashion_scenes_dataset>(
      mnist(pd::fashion_mnist_split::train), pd::fashion_scenes_options{.count = 40, .seed = 9});
  return d;
}

const pd::train_pipeline_options small_pipeline{.scale = {64, 64}, .ratio_range = {0.5, 2.0}, .crop_h = 48,
                                                .crop_w = 48};

}  // namespace

TEST_CASE("loader: the stream does not depend on the number of workers") {
  auto data = scenes_for_loader();
  std::vector<std::vector<pd::batch>> runs;
  for (int workers : {0, 1, 3}) {
    auto loader = pd::make_train_loader(data, small_pipeline, {.batch_size = 8, .seed = 4, .workers = workers});
    CHECK(loader.batches_per_epoch() == 5);
    CHECK(loader.total_batches() == -1);
    std::vector<pd::batch> got;
    for (int k = 0; k < 12; ++k) got.push_back(loader.next());
    runs.push_back(std::move(got));
  }
  for (std::size_t k = 0; k < 12; ++k) {
    CHECK(same_batch(runs[0][k], runs[1][k]));
    CHECK(same_batch(runs[0][k], runs[2][k]));
  }
  const auto& b = runs[0][0];
  CHECK(b.images.shape() == ps::shape({8, 3, 48, 48}));
  CHECK(b.labels.shape() == ps::shape({8, 48, 48}));
  CHECK(b.number == 0);
  CHECK(runs[0][7].epoch == 1);
  for (const auto& batch : runs[0])
    for (auto v : batch.labels.to_vector()) REQUIRE(((v >= 0 && v <= 10) || v == 255));
  // the batches hold normalised pixels
  const auto px = b.images.to_vector();
  const auto [mn, mx] = std::minmax_element(px.begin(), px.end());
  CHECK(*mn >= -2.2f);
  CHECK(*mx <= 2.7f);
  CHECK(*mx - *mn > 2.0f);
  // a different seed gives a different stream
  auto other = pd::make_train_loader(data, small_pipeline, {.batch_size = 8, .seed = 5, .workers = 2});
  CHECK_FALSE(same_batch(other.next(), runs[0][0]));
}

TEST_CASE("loader: epochs are permutations, fresh each epoch") {
  auto data = std::make_shared<const toy_dataset>(42, 6, 5);
  pd::batch_loader shuffled(data, nullptr, {.batch_size = 8, .seed = 3, .workers = 2, .drop_last = false});
  CHECK(shuffled.batches_per_epoch() == 6);
  std::vector<std::vector<std::int64_t>> epochs(3);
  for (int k = 0; k < 18; ++k) {
    const auto b = shuffled.next();
    CHECK(b.number == k);
    CHECK(b.epoch == k / 6);
    CHECK(b.indices == shuffled.batch_indices(k));
    CHECK(b.indices.size() == (k % 6 == 5 ? 2u : 8u));
    CHECK(b.images.size(0) == static_cast<std::int64_t>(b.indices.size()));
    for (std::size_t j = 0; j < b.indices.size(); ++j) CHECK(b.names[j] == "toy " + std::to_string(b.indices[j]));
    epochs[static_cast<std::size_t>(k / 6)].insert(epochs[static_cast<std::size_t>(k / 6)].end(), b.indices.begin(),
                                                   b.indices.end());
  }
  for (auto& e : epochs) {
    auto sorted = e;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> all(42);
    std::iota(all.begin(), all.end(), 0);
    CHECK(sorted == all);
    CHECK(e != all);
  }
  CHECK(epochs[0] != epochs[1]);
  CHECK(epochs[1] != epochs[2]);
  // drop_last: 5 full batches per epoch; no shuffle: data-set order
  pd::batch_loader ordered(data, nullptr, {.batch_size = 8, .workers = 1, .shuffle = false});
  CHECK(ordered.batches_per_epoch() == 5);
  for (int k = 0; k < 6; ++k) {
    const auto b = ordered.next();
    std::vector<std::int64_t> want(8);
    std::iota(want.begin(), want.end(), (k % 5) * 8);
    CHECK(b.indices == want);
  }
  // without a per-sample function the batch holds the samples as they are
  pd::batch_loader plain(data, nullptr, {.batch_size = 2, .workers = 0, .shuffle = false, .mean = {0, 0, 0},
                                         .std = {1, 1, 1}});
  const auto b = plain.next();
  const auto s1 = data->get(1);
  CHECK(b.images.shape() == ps::shape({2, 3, 6, 5}));
  CHECK(b.images(1, 2, 3, 4) == float(s1.image(3, 4, 2)));
  CHECK(b.labels(1, 5, 1) == s1.label(5, 1));
}

TEST_CASE("loader: every sample of every batch has its own generator") {
  auto data = std::make_shared<const toy_dataset>(12, 2, 2);
  std::mutex m;
  std::set<std::uint64_t> draws;
  pd::batch_loader loader(
      data,
      [&](const pd::sample& s, ps::generator& gen) {
        std::lock_guard lock(m);
        draws.insert(gen.next());
        return s;
      },
      {.batch_size = 4, .workers = 2, .prefetch = 1});
  for (int k = 0; k < 30; ++k) loader.next();
  std::lock_guard lock(m);
  // 30 batches of 4, each sample's generator distinct (the workers may have built a few more ahead)
  CHECK(draws.size() >= 120);
  CHECK(pd::loader_seed(1, 2, 3, 4) != pd::loader_seed(1, 2, 4, 3));
  CHECK(pd::loader_seed(1, 1, 0, 0) != pd::loader_seed(1, 2, 0, 0));
}

TEST_CASE("loader: a resume at batch k equals batch k of a fresh stream") {
  auto data = scenes_for_loader();
  auto fresh = pd::make_train_loader(data, small_pipeline, {.batch_size = 6, .seed = 8, .workers = 2});
  std::vector<pd::batch> all;
  for (int k = 0; k < 16; ++k) all.push_back(fresh.next());
  for (std::int64_t start : {1, 6, 7, 13}) {
    auto resumed = pd::make_train_loader(data, small_pipeline, {.batch_size = 6, .seed = 8, .workers = 3}, start);
    CHECK(resumed.position() == start);
    for (std::int64_t k = start; k < 16; ++k) CHECK(same_batch(resumed.next(), all[static_cast<std::size_t>(k)]));
  }
}

TEST_CASE("loader: exceptions in workers reach next() intact, and the stream goes on") {
  for (int workers : {0, 1, 3}) {
    CAPTURE(workers);
    auto data = std::make_shared<const toy_dataset>(20, 4, 4, /*throw_at=*/13);
    pd::batch_loader loader(data, nullptr, {.batch_size = 4, .workers = workers, .prefetch = 2, .shuffle = false});
    for (int k = 0; k < 3; ++k) CHECK(loader.next().number == k);
    CHECK_THROWS_WITH_AS(loader.next(), "toy: cannot read 'img_13.png': truncated file", ps::io_error);
    CHECK(loader.next().number == 4);
    CHECK(loader.next().number == 5);  // epoch 1 starts cleanly
    CHECK(loader.next().number == 6);
    CHECK(loader.next().number == 7);
    CHECK_THROWS_AS(loader.next(), ps::io_error);  // batch 8 holds sample 13 again
    CHECK(loader.next().number == 9);
  }
  // from the per-sample function too
  auto data = std::make_shared<const toy_dataset>(8, 4, 4);
  pd::batch_loader loader(
      data,
      [](const pd::sample& s, ps::generator&) -> pd::sample {
        if (s.name == "toy 5") throw std::runtime_error("pipeline refused toy 5");
        return s;
      },
      {.batch_size = 2, .workers = 2, .shuffle = false});
  CHECK_NOTHROW(loader.next());
  CHECK_NOTHROW(loader.next());
  CHECK_THROWS_WITH_AS(loader.next(), "pipeline refused toy 5", std::runtime_error);
  CHECK_NOTHROW(loader.next());
}

TEST_CASE("loader: samples of different sizes or bad labels are refused by name") {
  auto data = std::make_shared<const toy_dataset>(8, 5, 5, -1, /*odd_size_at=*/6);
  pd::batch_loader loader(data, nullptr, {.batch_size = 4, .workers = 2, .shuffle = false});
  CHECK_NOTHROW(loader.next());
  CHECK_THROWS_WITH_AS(loader.next(), doctest::Contains("sample 'toy 6' (index 6) is 5x4 (HxW)"), ps::value_error);
  auto toy = std::make_shared<const toy_dataset>(4, 5, 5);
  pd::batch_loader labels(
      toy,
      [](const pd::sample& s, ps::generator&) {
        auto out = pd::pad(s, 5, 5);
        out.label(2, 3) = 40;
        return out;
      },
      {.batch_size = 2, .workers = 1});
  CHECK_THROWS_WITH_AS(labels.next(), doctest::Contains("has label 40 at pixel 13, expected 0 to 10 or 255"),
                       ps::value_error);
}

TEST_CASE("loader: destruction mid-stream is clean") {
  auto slow = std::make_shared<const toy_dataset>(64, 8, 8, -1, -1, /*delay_ms=*/2);
  for (int taken : {0, 1, 3}) {
    pd::batch_loader loader(slow, nullptr, {.batch_size = 4, .workers = 3, .prefetch = 4});
    for (int k = 0; k < taken; ++k) loader.next();
  }  // joins while workers are inside get()
  {
    auto a = pd::batch_loader(slow, nullptr, {.batch_size = 4, .workers = 2});
    a.next();
    pd::batch_loader b = std::move(a);  // workers keep running for the new owner
    CHECK(b.next().number == 1);
    CHECK_THROWS_WITH_AS(a.next(), doctest::Contains("moved from"), ps::value_error);
    b = pd::batch_loader(slow, nullptr, {.batch_size = 4, .workers = 1});
    CHECK(b.next().number == 0);
  }
  CHECK(true);
}

TEST_CASE("loader: finite streams and the evaluation pass") {
  auto data = std::make_shared<const toy_dataset>(10, 3, 4);
  pd::batch_loader two(data, nullptr, {.batch_size = 4, .workers = 2, .epochs = 2});
  CHECK(two.total_batches() == 4);
  int n = 0;
  pd::for_each_batch(two, [&](const pd::batch&) { ++n; });
  CHECK(n == 4);
  CHECK(two.done());
  CHECK_THROWS_WITH_AS(two.next(), doctest::Contains("stream of 4 batches is over"), ps::value_error);

  auto scenes = scenes_for_loader();
  std::vector<std::int64_t> seen;
  pd::for_each_sample(scenes, [&](const pd::batch& b) {
    REQUIRE(b.images.shape() == ps::shape({1, 3, 64, 64}));
    const auto s = scenes->get(b.indices[0]);
    const auto want = pd::normalize(s.image);
    CHECK(b.images.to_vector() == want.to_vector());
    const auto lab = b.labels.to_vector();
    CHECK(std::equal(lab.begin(), lab.end(), s.label.data()));
    seen.push_back(b.indices[0]);
  });
  std::vector<std::int64_t> all(40);
  std::iota(all.begin(), all.end(), 0);
  CHECK(seen == all);
  // images of different sizes pass one at a time
  auto mixed = std::make_shared<const toy_dataset>(8, 5, 5, -1, 3);
  auto eval = pd::make_eval_loader(mixed, {}, 2, 3);
  std::vector<std::int64_t> widths;
  while (!eval.done()) widths.push_back(eval.next().images.size(3));
  CHECK(widths == std::vector<std::int64_t>{5, 5, 5, 4, 5, 5, 5, 5});
}

TEST_CASE("loader: bad arguments raise clear errors") {
  auto data = std::make_shared<const toy_dataset>(10, 3, 4);
  using opts = pd::batch_loader_options;
  CHECK_THROWS_WITH_AS(pd::batch_loader(nullptr, nullptr), doctest::Contains("data set is null"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(std::make_shared<const toy_dataset>(0, 3, 4), nullptr),
                       doctest::Contains("is empty"), ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, opts{.batch_size = 0}), doctest::Contains("batch_size is 0"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, opts{.batch_size = 11}),
                       doctest::Contains("batch_size 11 exceeds the 10 samples"), ps::value_error);
  CHECK_NOTHROW(pd::batch_loader(data, nullptr, opts{.batch_size = 11, .drop_last = false}));
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, opts{.workers = -1}), doctest::Contains("workers is -1"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, opts{.prefetch = 0}), doctest::Contains("prefetch is 0"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, opts{.epochs = 0}), doctest::Contains("epochs is 0"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, opts{.std = {1, 0, 1}}), doctest::Contains("std[1] is 0"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, {}, -2), doctest::Contains("first_batch is -2"),
                       ps::value_error);
  CHECK_THROWS_WITH_AS(pd::batch_loader(data, nullptr, opts{.batch_size = 5, .epochs = 1}, 3),
                       doctest::Contains("first_batch is 3, expected 0 to 2"), ps::value_error);
  pd::batch_loader ok(data, nullptr, opts{.batch_size = 5, .epochs = 1});
  CHECK_THROWS_WITH_AS(ok.batch_indices(2), doctest::Contains("batch 2 is outside the stream of 2"), ps::value_error);
}
