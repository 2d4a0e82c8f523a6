#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include "../examples/common/viz.hpp"

#include <protoseg/data/image_write.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace viz = protoseg::viz;
using u8img = protoseg::tensor<std::uint8_t>;

namespace {

u8img label_map(std::int64_t h, std::int64_t w, const std::vector<std::uint8_t>& v) {
  return u8img::from_vector(v, {h, w});
}

std::size_t count_color(const u8img& img, viz::color c) {
  std::size_t n = 0;
  for (std::int64_t i = 0; i < img.numel() / 3; ++i)
    n += img.data()[3 * i] == c[0] && img.data()[3 * i + 1] == c[1] && img.data()[3 * i + 2] == c[2];
  return n;
}

bool is_png_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in && std::string(magic + 1, 3) == "PNG" && static_cast<unsigned char>(magic[0]) == 0x89;
}

/// Where the tests write their pictures: $PROTOSEG_VIZ_LOOK_DIR if set, else
/// a folder in the system's temporary directory.
std::filesystem::path picture_dir() {
  std::filesystem::path dir;
  if (const char* env = std::getenv("PROTOSEG_VIZ_LOOK_DIR"); env && *env) dir = env;
  else dir = std::filesystem::temp_directory_path() / "protoseg-test-viz";
  std::filesystem::create_directories(dir);
  return dir;
}

/// A 64 x 64 synthetic scene: a gradient background (class 0) with a
/// rectangle, a disc and a triangle of classes a, b, c; a 2-pixel ignore
/// border. The image tints each object by its class colour, with noise.
struct scene {
  u8img image, truth;
};

scene make_scene(int a, int b, int c, std::uint64_t seed, const viz::palette& pal) {
  const int s = 64;
  scene sc{u8img::empty({s, s, 3}), u8img::empty({s, s})};
  protoseg::generator gen(seed);
  const int rx = 6 + int(gen.below(10)), ry = 6 + int(gen.below(10));
  const int cx = 40 + int(gen.below(10)), cy = 20 + int(gen.below(10)), cr = 9 + int(gen.below(5));
  const int tx = 16 + int(gen.below(20)), ty = 38 + int(gen.below(8));
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      int k = 0;
      if (x >= rx && x < rx + 22 && y >= ry && y < ry + 18) k = a;
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= cr * cr) k = b;
      if (y >= ty && y < ty + 20 && std::abs(x - tx - 10) <= (y - ty) / 2 + 1) k = c;
      const std::int64_t i = std::int64_t(y) * s + x;
      sc.truth.data()[i] = static_cast<std::uint8_t>(x < 2 || y < 2 || x >= s - 2 || y >= s - 2 ? 255 : k);
      for (int ch = 0; ch < 3; ++ch) {
        const double base = k == 0 ? 90.0 + 1.2 * x + 0.6 * y * (ch == 2 ? 1.5 : 1.0)
                                   : 0.35 * 255 + 0.6 * pal[static_cast<std::size_t>(k)][static_cast<std::size_t>(ch)];
        sc.image.data()[3 * i + ch] = static_cast<std::uint8_t>(std::clamp(base + 18.0 * gen.normal(), 0.0, 255.0));
      }
    }
  return sc;
}

/// n points per cluster, k clusters in d dimensions, centres far apart.
Eigen::MatrixXf clusters(int k, int n, int d, double spread, std::uint64_t seed, std::vector<std::int64_t>& labels) {
  protoseg::generator gen(seed);
  Eigen::MatrixXf centres(k, d);
  for (int c = 0; c < k; ++c)
    for (int j = 0; j < d; ++j) centres(c, j) = static_cast<float>(10.0 * gen.normal());
  Eigen::MatrixXf X(k * n, d);
  labels.clear();
  for (int c = 0; c < k; ++c)
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < d; ++j) X(c * n + i, j) = centres(c, j) + static_cast<float>(spread * gen.normal());
      labels.push_back(c);
    }
  return X;
}

double nn_label_agreement(const Eigen::MatrixXf& Y, const std::vector<std::int64_t>& labels) {
  int agree = 0;
  for (Eigen::Index i = 0; i < Y.rows(); ++i) {
    Eigen::Index best = -1;
    float best_d = std::numeric_limits<float>::infinity();
    for (Eigen::Index j = 0; j < Y.rows(); ++j) {
      if (j == i) continue;
      const float d = (Y.row(i) - Y.row(j)).squaredNorm();
      if (d < best_d) best_d = d, best = j;
    }
    agree += labels[static_cast<std::size_t>(i)] == labels[static_cast<std::size_t>(best)];
  }
  return double(agree) / double(Y.rows());
}

}  // namespace

TEST_CASE("palettes: distinct, deterministic, published colours") {
  const auto p = viz::make_palette(11);
  REQUIRE(p.size() == 11);
  CHECK(p == viz::make_palette(11));
  double min_dist = 1e9;
  for (std::size_t i = 0; i < p.size(); ++i)
    for (std::size_t j = i + 1; j < p.size(); ++j) {
      double d = 0;
      for (int c = 0; c < 3; ++c) d += std::pow(double(p[i][c]) - double(p[j][c]), 2);
      min_dist = std::min(min_dist, std::sqrt(d));
    }
  CHECK(min_dist > 50);
  const auto big = viz::make_palette(150);
  CHECK(std::set<viz::color>(big.begin(), big.end()).size() == 150);
  CHECK_THROWS_AS(viz::make_palette(0), protoseg::value_error);

  const auto cs = viz::cityscapes_palette();
  REQUIRE(cs.size() == 19);
  CHECK(cs[0] == viz::color{128, 64, 128});    // road
  CHECK(cs[10] == viz::color{70, 130, 180});   // sky
  CHECK(cs[18] == viz::color{119, 11, 32});    // bicycle
  CHECK(viz::cityscapes_class_names().size() == 19);
  const auto ade = viz::ade20k_palette();
  REQUIRE(ade.size() == 150);
  CHECK(ade[0] == viz::color{120, 120, 120});  // wall
  CHECK(ade[12] == viz::color{150, 5, 61});    // person
  CHECK(ade[149] == viz::color{92, 0, 255});   // flag
  CHECK(viz::ade20k_class_names().size() == 150);
  CHECK(viz::ade20k_class_names()[149] == "flag");
  // pictures use a data set's published palette when it covers every class
  const auto published = protoseg::data::palette_from(protoseg::data::cityscapes_palette_rgb);
  CHECK(viz::palette_for(published, 19) == cs);
  CHECK(viz::palette_for(published, 20) == viz::make_palette(20));
  CHECK(viz::palette_for({}, 11) == viz::make_palette(11));
}

TEST_CASE("colorize and overlay: pixel values") {
  const viz::palette pal = {{10, 20, 30}, {200, 100, 0}, {0, 0, 255}};
  const auto lbl = label_map(2, 2, {0, 1, 255, 2});
  const auto c = viz::colorize(lbl, pal);
  REQUIRE(c.shape() == protoseg::shape{2, 2, 3});
  CHECK(c.to_vector() == std::vector<std::uint8_t>{10, 20, 30, 200, 100, 0, 255, 255, 255, 0, 0, 255});
  const auto c2 = viz::colorize(lbl, pal, {1, 2, 3});
  CHECK(viz::get_pixel(c2, 0, 1) == viz::color{1, 2, 3});
  CHECK_THROWS_AS(viz::colorize(label_map(1, 2, {0, 3}), pal), protoseg::value_error);
  CHECK_THROWS_AS(viz::colorize(c, pal), protoseg::shape_error);  // an RGB image is no label map

  const auto img = u8img::from_vector(std::vector<std::uint8_t>(12, 100), {2, 2, 3});
  const auto o = viz::overlay(img, c, 0.25);
  // 0.75 * 100 + 0.25 * colour, rounded
  CHECK(o.to_vector() == std::vector<std::uint8_t>{78, 80, 83, 125, 100, 75, 139, 139, 139, 75, 75, 139});
  CHECK(viz::overlay(img, c, 0.0).to_vector() == img.to_vector());
  CHECK(viz::overlay(img, c, 1.0).to_vector() == c.to_vector());
  CHECK_THROWS_AS(viz::overlay(img, c, 1.5), protoseg::value_error);
  CHECK_THROWS_AS(viz::overlay(img, viz::blank(3, 2), 0.5), protoseg::shape_error);
}

TEST_CASE("upscale_nearest, hstack, vstack, error_map") {
  const auto lbl = label_map(2, 2, {1, 2, 3, 4});
  const auto up = viz::upscale_nearest(lbl, 3);
  REQUIRE(up.shape() == protoseg::shape{6, 6});
  CHECK(up.data()[0] == 1);
  CHECK(up.data()[2] == 1);
  CHECK(up.data()[3] == 2);
  CHECK(up.data()[5 * 6 + 5] == 4);
  CHECK(up.data()[3 * 6 + 2] == 3);
  CHECK_THROWS_AS(viz::upscale_nearest(lbl, 0), protoseg::value_error);

  const auto a = viz::blank(10, 20, {1, 1, 1}), b = viz::blank(30, 10, {2, 2, 2});
  const auto h = viz::hstack({a, b}, 5);
  CHECK(h.shape() == protoseg::shape{20, 45, 3});
  CHECK(viz::get_pixel(h, 12, 0) == viz::white);    // the gap
  CHECK(viz::get_pixel(h, 20, 0) == viz::white);    // b is centred: rows 5..14
  CHECK(viz::get_pixel(h, 20, 5) == viz::color{2, 2, 2});
  const auto v = viz::vstack({a, b}, 0);
  CHECK(v.shape() == protoseg::shape{30, 30, 3});
  CHECK(viz::get_pixel(v, 0, 0) == viz::white);     // a is centred: columns 10..19
  CHECK(viz::get_pixel(v, 10, 0) == viz::color{1, 1, 1});
  CHECK_THROWS_AS(viz::hstack({}), protoseg::value_error);

  const auto img = viz::blank(3, 1, {100, 100, 100});
  const auto e = viz::error_map(img, label_map(1, 3, {1, 255, 2}), label_map(1, 3, {1, 1, 1}));
  CHECK(viz::get_pixel(e, 1, 0) == viz::white);       // ignored
  CHECK(viz::get_pixel(e, 2, 0) == viz::error_red);   // wrong
  const auto g = viz::get_pixel(e, 0, 0);             // right: grey
  CHECK(g[0] == g[1]);
  CHECK(g[0] != 255);
}

TEST_CASE("resize_nearest, gray_to_rgb") {
  const auto lbl = label_map(2, 4, {1, 2, 3, 4, 5, 6, 7, 8});
  const auto half = viz::resize_nearest(lbl, 2, 1);
  REQUIRE(half.shape() == protoseg::shape{1, 2});
  CHECK(half.to_vector() == std::vector<std::uint8_t>{6, 8});  // the centre sample of each 2 x 2 block
  const auto same = viz::resize_nearest(lbl, 4, 2);
  CHECK(same.to_vector() == lbl.to_vector());
  const auto up = viz::resize_nearest(lbl, 8, 4);
  CHECK(up.to_vector() == viz::upscale_nearest(lbl, 2).to_vector());
  CHECK_THROWS_AS(viz::resize_nearest(lbl, 0, 3), protoseg::value_error);
  const auto rgb = viz::gray_to_rgb(label_map(1, 2, {7, 200}));
  CHECK(rgb.to_vector() == std::vector<std::uint8_t>{7, 7, 7, 200, 200, 200});
}

TEST_CASE("confusion_matrix_plot: cell colours follow the row shares") {
  const std::vector<std::string> names = {"road", "car", "sky"};
  const std::vector<std::int64_t> counts = {90, 10, 0, 0, 50, 50, 0, 0, 0};  // the sky row is empty
  const auto img = viz::confusion_matrix_plot(counts, names, "Confusion");
  CHECK(img.size(0) > 3 * 64);
  CHECK(img.size(1) > 3 * 64);
  CHECK(count_color(img, viz::blues(std::sqrt(0.9))) > 64 * 64 / 2);  // one cell, less its text
  CHECK(count_color(img, viz::blues(std::sqrt(0.5))) > 2 * 64 * 64 / 2);
  CHECK(viz::blues(0) == viz::color{247, 251, 255});
  CHECK(viz::blues(1) == viz::color{8, 38, 90});
  CHECK_THROWS_AS(viz::confusion_matrix_plot({1, 2, 3}, names, "t"), protoseg::shape_error);
  CHECK_THROWS_AS(viz::confusion_matrix_plot({1, 2, 3, 4, -5, 6, 7, 8, 9}, names, "t"), protoseg::value_error);
}

TEST_CASE("text draws inside its box, lines and markers") {
  for (int scale : {1, 2, 3}) {
    auto img = viz::blank(400, 60);
    const std::string s = "Hello, mIoU 42%";
    const int w = viz::text_width(s, scale), h = viz::text_height(scale);
    CHECK(w == viz::text_width(s, 1) * scale);
    viz::draw_text(img, 5, 7, s, {0, 0, 0}, scale);
    int min_x = 1000, max_x = -1, min_y = 1000, max_y = -1, inked = 0;
    for (int y = 0; y < 60; ++y)
      for (int x = 0; x < 400; ++x)
        if (viz::get_pixel(img, x, y) != viz::white) {
          ++inked;
          min_x = std::min(min_x, x), max_x = std::max(max_x, x), min_y = std::min(min_y, y), max_y = std::max(max_y, y);
        }
    INFO("scale " << scale);
    CHECK(inked > 40 * scale * scale);
    CHECK(min_x == 5);                    // 'H' starts at the left edge
    CHECK(max_x < 5 + w);
    CHECK(max_x >= 5 + w - 2 * scale);    // '%' reaches the right edge
    CHECK(min_y >= 7);
    CHECK(max_y < 7 + h);
  }
  CHECK(viz::text_width("", 2) == 0);

  auto img = viz::blank(20, 20);
  viz::draw_line(img, 0, 0, 19, 19, {255, 0, 0});
  for (int i = 0; i < 20; ++i) CHECK(viz::get_pixel(img, i, i) == viz::color{255, 0, 0});
  CHECK(count_color(img, {255, 0, 0}) == 20);
  viz::draw_line(img, -50, 5, 100, 5, {0, 255, 0});  // clipped
  CHECK(count_color(img, {0, 255, 0}) == 20);
  auto m = viz::blank(30, 30);
  viz::draw_marker(m, 15, 15, viz::marker::diamond, 15, {0, 0, 255}, {0, 0, 0}, 2);
  CHECK(viz::get_pixel(m, 15, 15) == viz::color{0, 0, 255});
  CHECK(viz::get_pixel(m, 15, 15 - 9) == viz::color{0, 0, 0});   // outline at the tip
  CHECK(viz::get_pixel(m, 15 - 6, 15 - 6) == viz::white);        // a diamond has no corners
  CHECK(count_color(m, {0, 0, 0}) > 20);
}

TEST_CASE("line_plot: size, ticks and where a point lands") {
  const viz::color green{10, 200, 30};
  const std::vector<viz::series> s = {{"train", {0, 10}, {0, 1}, green}};
  const auto img = viz::line_plot(s, "loss", "epoch", "value", false, 640, 400);
  CHECK(img.shape() == protoseg::shape{400, 640, 3});
  const auto f = viz::line_plot_frame(s, false, 640, 400);
  CHECK(f.x_min == 0);
  CHECK(f.x_max == 10);
  CHECK(f.y_min == 0);
  CHECK(f.y_max == 1);
  CHECK(f.px(0) == f.left + f.pad);
  CHECK(f.px(10) == f.right - f.pad);
  CHECK(f.py(0) == f.bottom - f.pad);
  CHECK(f.py(1) == f.top + f.pad);
  CHECK(f.left > 30);
  CHECK(f.right < 640);
  // The line passes through (5, 0.5): the middle of the plot area.
  const int xm = static_cast<int>(std::lround(0.5 * (f.left + f.right)));
  const int ym = static_cast<int>(std::lround(0.5 * (f.top + f.bottom)));
  bool hit = false;
  for (int dy = -1; dy <= 1; ++dy) hit = hit || viz::get_pixel(img, xm, ym + dy) == green;
  CHECK(hit);
  // and not through the mirrored point (5, 0.5) of a line from (0, 1) to (10, 0)
  int far = 0;
  for (int y = f.top + 5; y < f.bottom - 5; ++y) far += std::abs(y - ym) > 6 && viz::get_pixel(img, xm, y) == green;
  CHECK(far == 0);

  // Nice ticks for epochs 1..30 and losses 0.13..2.41.
  std::vector<double> ex, ey;
  for (int e = 1; e <= 30; ++e) ex.push_back(e), ey.push_back(0.13 + 2.28 * std::exp(-0.2 * (e - 1)));
  const auto f2 = viz::line_plot_frame({{"", ex, ey, green}});
  CHECK(f2.x_ticks == std::vector<double>{0, 5, 10, 15, 20, 25, 30});
  CHECK(f2.y_min == 0);
  CHECK(f2.y_max == doctest::Approx(2.5));

  // Log scale: 1 .. 1000 over three decades, the midpoint is 10^1.5.
  const std::vector<viz::series> l = {{"loss", {0, 1}, {1, 1000}, green}};
  const auto f3 = viz::line_plot_frame(l, true);
  CHECK(f3.y_min == 0);
  CHECK(f3.y_max == 3);
  CHECK(f3.py(std::pow(10.0, 1.5)) == doctest::Approx(0.5 * (f3.top + f3.bottom)));
  const auto img3 = viz::line_plot(l, "log", "x", "y", true);
  hit = false;
  const int ym3 = static_cast<int>(std::lround(0.5 * (f3.top + f3.bottom)));
  for (int dy = -1; dy <= 1; ++dy)
    hit = hit || viz::get_pixel(img3, static_cast<int>(std::lround(f3.px(0.5))), ym3 + dy) == green;
  CHECK(hit);

  CHECK_THROWS_AS(viz::line_plot({{"bad", {0, 1}, {0}, green}}, "", "", ""), protoseg::shape_error);
  CHECK_THROWS_AS(viz::line_plot(s, "", "", "", false, 100, 100), protoseg::value_error);
  CHECK(viz::line_plot({}, "empty", "x", "y").shape() == protoseg::shape{400, 640, 3});  // no data: a frame
}

TEST_CASE("pca_2d recovers a known plane") {
  // A symmetric grid on the plane: the sample covariance is exactly
  // diag(var a, var b) in the (u, v) basis, so the axes are exactly u and v.
  const int na = 21, nb = 11, n = na * nb, d = 6;
  Eigen::VectorXf u(d), v(d), offset(d);
  u << 0.5f, 0.5f, 0.5f, 0.5f, 0.f, 0.f;
  v << 0.f, 0.f, 0.f, 0.f, -0.6f, 0.8f;  // largest-|.| component positive: 0.8
  offset << 3, -1, 2, 0, 5, 7;
  Eigen::MatrixXf X(n, d);
  for (int i = 0; i < na; ++i)
    for (int j = 0; j < nb; ++j) {
      const float a = 0.6f * float(i - na / 2), b = 0.2f * float(j - nb / 2);
      X.row(i * nb + j) = (offset + a * u + b * v).transpose();
    }
  const Eigen::MatrixXf Y = viz::pca_2d(X);
  REQUIRE(Y.rows() == n);
  REQUIRE(Y.cols() == 2);
  Eigen::MatrixXf Xc = X.rowwise() - X.colwise().mean();
  // u has ties for its largest component; the sign rule takes the first, 0.5 > 0
  const Eigen::VectorXf expect0 = Xc * u, expect1 = Xc * v;
  CHECK((Y.col(0) - expect0).cwiseAbs().maxCoeff() < 1e-3f * expect0.cwiseAbs().maxCoeff());
  CHECK((Y.col(1) - expect1).cwiseAbs().maxCoeff() < 1e-3f * expect1.cwiseAbs().maxCoeff());
  // The sign does not depend on the data's sign: -X gives the same axes, so -Y.
  const Eigen::MatrixXf Yn = viz::pca_2d(-X);
  CHECK((Yn + Y).cwiseAbs().maxCoeff() < 1e-3f);
  // More dimensions than points: the Gram-matrix path gives the projections
  // of the covariance path (zero columns change nothing).
  Eigen::MatrixXf small(5, 3);
  small << 1, 2, 0, -3, 1, 1, 4, 0, -2, 0, -1, 3, 2, 5, 1;
  Eigen::MatrixXf Xwide = Eigen::MatrixXf::Zero(5, 300);
  Xwide.leftCols(3) = small;
  const Eigen::MatrixXf Yw = viz::pca_2d(Xwide), Yd = viz::pca_2d(small);
  CHECK((Yw - Yd).cwiseAbs().maxCoeff() < 1e-3f);

  Eigen::MatrixXf bad = X;
  bad(3, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(viz::pca_2d(bad), protoseg::value_error);
  CHECK_THROWS_AS(viz::pca_2d(Eigen::MatrixXf(0, 3)), protoseg::shape_error);
}

TEST_CASE("tsne_2d separates three clusters, deterministically") {
  std::vector<std::int64_t> labels;
  const Eigen::MatrixXf X = clusters(3, 50, 20, 1.0, 11, labels);
  const Eigen::MatrixXf Y = viz::tsne_2d(X, 20, 750, 7);
  REQUIRE(Y.rows() == 150);
  REQUIRE(Y.cols() == 2);
  CHECK(Y.allFinite());
  CHECK(nn_label_agreement(Y, labels) > 0.95);
  // Every between-cluster centre distance exceeds every cluster's mean spread.
  Eigen::MatrixXf centres = Eigen::MatrixXf::Zero(3, 2);
  for (int i = 0; i < 150; ++i) centres.row(labels[i]) += Y.row(i) / 50.0f;
  float within = 0;
  for (int i = 0; i < 150; ++i) within = std::max(within, (Y.row(i) - centres.row(labels[i])).norm());
  for (int a = 0; a < 3; ++a)
    for (int b = a + 1; b < 3; ++b) CHECK((centres.row(a) - centres.row(b)).norm() > 2 * within);
  // Same seed: same result; another seed: another layout.
  CHECK(viz::tsne_2d(X, 20, 750, 7) == Y);
  CHECK(viz::tsne_2d(X, 20, 750, 8) != Y);
  // Nor does the thread count change it.
  const int threads = protoseg::num_threads();
  protoseg::set_num_threads(threads == 1 ? 2 : 1);
  CHECK(viz::tsne_2d(X, 20, 750, 7) == Y);
  protoseg::set_num_threads(threads);
  // A mixed-up input gives no separation: the test can fail.
  std::vector<std::int64_t> shuffled = labels;
  protoseg::generator g(1);
  for (std::size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[g.below(i)]);
  CHECK(nn_label_agreement(Y, shuffled) < 0.6);
}

TEST_CASE("tsne_2d rejects bad input") {
  Eigen::MatrixXf two(2, 4);
  two.setRandom();
  CHECK_THROWS_AS(viz::tsne_2d(two, 1), protoseg::value_error);
  Eigen::MatrixXf X(10, 3);
  X.setRandom();
  CHECK_THROWS_AS(viz::tsne_2d(X, 10), protoseg::value_error);
  CHECK_THROWS_AS(viz::tsne_2d(X, 0), protoseg::value_error);
  CHECK_THROWS_AS(viz::tsne_2d(X, 3, -1), protoseg::value_error);
  X(4, 1) = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(viz::tsne_2d(X, 3), protoseg::value_error);
  X(4, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(viz::tsne_2d(X, 3), doctest::Contains("X(4, 1)"), protoseg::value_error);
  Eigen::MatrixXf ok(3, 2);
  ok << 0, 0, 1, 0, 0, 1;
  CHECK(viz::tsne_2d(ok, 1.5, 50).allFinite());
}

TEST_CASE("prediction_grid: size, errors drawn in red, written as PNG") {
  const auto pal = viz::make_palette(11);
  std::vector<std::string> names = {"background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal",     "Shirt",       "Sneaker", "Bag",      "Ankle boot"};
  std::vector<viz::prediction_row> rows;
  std::size_t wrong = 0;
  for (int r = 0; r < 3; ++r) {
    auto sc = make_scene(1 + r, 4 + r, 8 + r % 3, 100 + r, pal);
    auto pred = sc.truth.clone();
    std::size_t right = 0, valid = 0;
    for (std::int64_t i = 0; i < pred.numel(); ++i) {
      const std::int64_t y = i / 64, x = i % 64;
      auto& p = pred.data()[i];
      if (p == 255) p = 0;                                       // the model predicts everywhere
      if (x >= 30 && x < 40 && y >= 30 && y < 34) p = 7;        // a wrong block
      if (sc.truth.data()[i] != 255) {
        ++valid;
        right += p == sc.truth.data()[i];
        wrong += p != sc.truth.data()[i];
      }
    }
    rows.push_back({sc.image, sc.truth, pred,
                    "scene " + std::to_string(r) + ": pixel accuracy " +
                        viz::format_fixed(100.0 * double(right) / double(valid), 1) + "%"});
  }
  const auto img = viz::prediction_grid(rows, names, pal, "Fashion scenes: validation predictions", 3);
  CHECK(img.size(1) >= 4 * 64 * 3);
  CHECK(img.size(0) >= 3 * 64 * 3 + 100);
  CHECK(count_color(img, viz::error_red) >= 9 * wrong);  // each wrong pixel is a 3x3 red block
  for (std::size_t k = 1; k < pal.size(); ++k) CHECK(count_color(img, pal[k]) >= 16 * 16);  // legend swatches

  const auto path = picture_dir() / "prediction_grid.png";
  protoseg::data::write_png(path, img);
  CHECK(is_png_file(path));

  rows[1].prediction = label_map(2, 2, {0, 0, 0, 0});
  CHECK_THROWS_AS(viz::prediction_grid(rows, names, pal, "t", 3), protoseg::shape_error);
  CHECK_THROWS_AS(viz::prediction_grid({}, names, pal, "t", 3), protoseg::value_error);
  CHECK_THROWS_AS(viz::prediction_grid(rows, names, viz::make_palette(3), "t", 3), protoseg::value_error);
}

TEST_CASE("embedding_scatter: size, prototypes outlined, written as PNG") {
  std::vector<std::int64_t> labels;
  Eigen::MatrixXf X = clusters(4, 60, 16, 2.0, 5, labels);
  std::vector<bool> proto(labels.size(), false);
  // The prototypes: each class's mean, appended.
  const int base = static_cast<int>(X.rows());
  X.conservativeResize(base + 4, Eigen::NoChange);
  for (int c = 0; c < 4; ++c) {
    X.row(base + c) = X.middleRows(c * 60, 60).colwise().mean();
    labels.push_back(c);
    proto.push_back(true);
  }
  const auto Y = viz::pca_2d(X);
  const auto pal = viz::make_palette(5);
  const std::vector<std::string> names = {"background", "shirt", "trouser", "bag", "boot"};
  const auto img = viz::embedding_scatter(Y, labels, proto, names, pal, "PCA of pixel embeddings", 600);
  CHECK(img.size(0) == 600);
  CHECK(img.size(1) >= 600);
  CHECK(count_color(img, viz::black) > 4 * 30);  // outlines of 4 diamonds (and the legend's)
  for (int c = 0; c < 4; ++c) CHECK(count_color(img, pal[static_cast<std::size_t>(c)]) > 60 * 10);
  const auto path = picture_dir() / "embedding_scatter.png";
  protoseg::data::write_png(path, img);
  CHECK(is_png_file(path));

  labels[0] = 9;
  CHECK_THROWS_AS(viz::embedding_scatter(Y, labels, proto, names, pal, "t"), protoseg::value_error);
  labels.pop_back();
  CHECK_THROWS_AS(viz::embedding_scatter(Y, labels, proto, names, pal, "t"), protoseg::shape_error);
}

TEST_CASE("demo: the pictures a training run writes") {
  // Not a check of values: writes the pictures of a typical run so that a
  // person can look at them ($PROTOSEG_VIZ_LOOK_DIR or a temporary folder).
  const auto dir = picture_dir();
  const auto pal = viz::make_palette(11);
  std::vector<std::string> names = {"background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal",     "Shirt",       "Sneaker", "Bag",      "Ankle boot"};
  // Curves: a noisy decaying loss per iteration and mIoU every 5 epochs.
  protoseg::generator gen(2);
  viz::series train{"train loss", {}, {}, {31, 119, 180}}, val{"val loss", {}, {}, {255, 127, 14}};
  for (int it = 0; it <= 3000; it += 10) {
    train.x.push_back(it);
    train.y.push_back(0.08 + 2.3 * std::exp(-it / 600.0) * std::exp(0.12 * gen.normal()));
  }
  for (int it = 250; it <= 3000; it += 250) val.x.push_back(it), val.y.push_back(0.15 + 2.0 * std::exp(-it / 700.0));
  viz::series miou{"ProtoSeg", {}, {}, {44, 160, 44}}, base{"softmax baseline", {}, {}, {214, 39, 40}};
  for (int e = 0; e <= 30; e += 3) {
    miou.x.push_back(e), miou.y.push_back(0.72 * (1 - std::exp(-e / 6.0)));
    base.x.push_back(e), base.y.push_back(0.68 * (1 - std::exp(-e / 7.0)));
  }
  const auto loss = viz::line_plot({train, val}, "Loss", "iteration", "cross-entropy", true);
  const auto acc = viz::line_plot({miou, base}, "Validation mIoU", "epoch", "mIoU");
  protoseg::data::write_png(dir / "curves.png", viz::hstack({loss, acc}, 10));

  // A t-SNE picture like Fig. S1: 10 garment classes and the background,
  // each two sub-clusters with a 2-D latent spread, and 2 prototypes per
  // class at the sub-cluster centres.
  std::vector<std::int64_t> labels;
  std::vector<bool> proto;
  const int per = 50, d = 32;
  Eigen::MatrixXf X(11 * 2 * per + 22, d);
  {
    protoseg::generator g(9);
    std::vector<Eigen::VectorXf> subs;
    int r = 0;
    for (int c = 0; c < 11; ++c) {
      Eigen::VectorXf centre(d);
      for (int j = 0; j < d; ++j) centre(j) = static_cast<float>(10 * g.normal());
      for (int s = 0; s < 2; ++s) {
        Eigen::VectorXf sub = centre;
        for (int j = 0; j < d; ++j) sub(j) += static_cast<float>(8 * g.normal());
        Eigen::MatrixXf A(d, 2);
        for (int j = 0; j < d; ++j)
          for (int q = 0; q < 2; ++q) A(j, q) = static_cast<float>(30 * g.normal() / std::sqrt(double(d)));
        subs.push_back(sub);
        for (int i = 0; i < per; ++i) {
          Eigen::Vector2f z(static_cast<float>(g.normal()), static_cast<float>(g.normal()));
          Eigen::VectorXf x = sub + A * z;
          for (int j = 0; j < d; ++j) x(j) += static_cast<float>(2 * g.normal());
          X.row(r++) = x.transpose();
          labels.push_back(c);
          proto.push_back(false);
        }
      }
    }
    for (int q = 0; q < 22; ++q) {
      X.row(r++) = subs[static_cast<std::size_t>(q)].transpose();
      labels.push_back(q / 2);
      proto.push_back(true);
    }
  }
  const auto Y = viz::tsne_2d(X, 30, 750, 0);
  protoseg::data::write_png(dir / "tsne.png",
                            viz::embedding_scatter(Y, labels, proto, names, pal,
                                                   "t-SNE of pixel embeddings and prototypes (2 per class)"));
  protoseg::data::write_png(dir / "pca.png", viz::embedding_scatter(viz::pca_2d(X), labels, proto, names, pal,
                                                                     "PCA of pixel embeddings and prototypes"));
  // Overlay of one scene's truth on its image.
  const auto sc = make_scene(3, 6, 9, 77, pal);
  protoseg::data::write_png(dir / "overlay.png",
                            viz::upscale_nearest(viz::overlay(sc.image, viz::colorize(sc.truth, pal), 0.5), 4));
  // A confusion matrix of the 11 classes, and one of the 19 Cityscapes classes.
  std::vector<std::int64_t> cm(11 * 11, 0);
  for (int r = 0; r < 11; ++r)
    for (int c = 0; c < 11; ++c) cm[std::size_t(r) * 11 + c] = r == c ? 900 : int(gen.below(r == 6 ? 60 : 12));
  protoseg::data::write_png(dir / "confusion.png", viz::confusion_matrix_plot(cm, names, "Fashion scenes: pixels"));
  const auto cs = viz::cityscapes_class_names();
  std::vector<std::int64_t> cm19(19 * 19, 0);
  for (int r = 0; r < 19; ++r)
    for (int c = 0; c < 19; ++c) cm19[std::size_t(r) * 19 + c] = r == c ? 800 : int(gen.below(20));
  protoseg::data::write_png(dir / "confusion_cityscapes.png", viz::confusion_matrix_plot(cm19, cs, "Cityscapes val"));
  // Cityscapes colours on a scene with its labels (the grid of one row).
  auto city = make_scene(13, 11, 0, 5, viz::cityscapes_palette());
  for (std::int64_t i = 0; i < city.truth.numel(); ++i)
    if (city.truth.data()[i] == 0 && (i % 64) > 40) city.truth.data()[i] = 10;  // sky
  protoseg::data::write_png(dir / "grid_cityscapes.png",
                            viz::prediction_grid({{city.image, city.truth, city.truth, "perfect"}}, cs,
                                                 viz::cityscapes_palette(), "Cityscapes palette", 3));
  CHECK(std::filesystem::exists(dir / "curves.png"));
}
