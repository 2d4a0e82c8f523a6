// Layers and modules: parity with PyTorch (golden fixtures written by
// tools/gen_nn_fixtures.py: forward, input and parameter gradients, in float
// within 1e-4 and in double within 1e-9), gradient checks in double, module
// naming, train/eval, state save/load, and the refusals of bad input.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/io/safetensors.hpp>
#include <protoseg/nn/all.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>

#include <unistd.h>

using namespace protoseg;
using protoseg_test::gradcheck_opts;

namespace {

constexpr double parity_rtol_float = 1e-4;   // float against the float64 PyTorch reference
constexpr double parity_rtol_double = 1e-9;  // double against the same

std::string fixture_path(const std::string& name) { return std::string(PROTOSEG_FIXTURE_DIR) + "/nn/" + name + ".safetensors"; }

/// |got - ref| <= rtol * max|ref| elementwise (relative to the tensor's scale,
/// so that entries that cancel to ~0 are not held to a relative bound).
template <class T>
bool agree(const tensor<T>& got, const tensor<double>& ref, double rtol, std::string* why = nullptr) {
  if (!(got.shape() == ref.shape())) {
    if (why) *why = "shape " + got.shape().str() + " vs " + ref.shape().str();
    return false;
  }
  const auto g = got.to_vector();
  const auto r = ref.to_vector();
  double scale = 0;
  for (double v : r) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(double(g[i]) - r[i]) <= rtol * std::max(scale, 1e-12))) {
      if (why) *why = "element " + std::to_string(i) + ": " + std::to_string(double(g[i])) + " vs " + std::to_string(r[i]);
      return false;
    }
  return true;
}

struct fixture {
  io::safetensors_archive a;
  explicit fixture(const std::string& name) : a(io::read_safetensors(fixture_path(name))) {}
  std::int64_t meta(const std::string& k) const { return std::stoll(a.metadata.at(k)); }
  tensor<double> ref(const std::string& k) const { return a.get<double>(k); }
  template <class T>
  tensor<T> input(const std::string& k) const {
    return cast<T>(a.get<double>("input." + k));
  }
  /// The "param." entries under their PyTorch names, as value type T.
  template <class T>
  io::safetensors_archive params() const {
    io::safetensors_archive out;
    for (const auto& [k, v] : a.tensors)
      if (k.rfind("param.", 0) == 0) out.put(k.substr(6), cast<T>(v.template to_tensor<double>(k)));
    return out;
  }
};

/// Loads the fixture's parameters into `m` (strictly: the names must match
/// PyTorch's exactly), runs `forward` on input x, back-propagates
/// sum(w * out) and compares output, input gradient and parameter gradients.
template <class T, class M>
void check_parity(const std::string& name, M& m, const std::function<variable<T>(M&, const variable<T>&)>& forward,
                  const io::safetensors_archive& buffers = {}) {
  const double rtol = sizeof(T) == 4 ? parity_rtol_float : parity_rtol_double;
  fixture f(name);
  auto state = f.params<T>();
  for (const auto& [k, v] : buffers.tensors) state.tensors[k] = v;
  auto rep = m.load_state_dict(state);
  CHECK(rep.complete());
  variable<T> x(f.input<T>("x"), true);
  auto out = forward(m, x);
  std::string why;
  INFO(name, " (", sizeof(T) == 4 ? "float" : "double", ")");
  CHECK_MESSAGE(agree(out.value(), f.ref("output"), rtol, &why), "output: ", why);
  auto w = cast<T>(f.ref("weight"));
  sum(out * variable<T>(w)).backward();
  REQUIRE(x.has_grad());
  CHECK_MESSAGE(agree(x.grad(), f.ref("grad.input.x"), rtol, &why), "grad x: ", why);
  int nparam = 0;
  for (const auto& [pn, p] : m.named_parameters()) {
    ++nparam;
    REQUIRE_MESSAGE(p.has_grad(), pn);
    CHECK_MESSAGE(agree(p.grad(), f.ref("grad.param." + pn), rtol, &why), "grad ", pn, ": ", why);
  }
  int expected = 0;
  for (const auto& [k, v] : f.a.tensors) expected += k.rfind("param.", 0) == 0;
  CHECK(nparam == expected);
}

tensor<double> rnd(shape s, std::uint64_t seed, double lo = -1, double hi = 1) {
  generator g(seed);
  return rand<double>(s, g, lo, hi);
}

using vars = std::vector<variable<double>>;

void check_grad(const std::function<variable<double>(const vars&)>& f, const std::vector<tensor<double>>& in) {
  auto r = gradcheck<cpu>(f, in, gradcheck_opts);
  INFO(r.message);
  CHECK(r.ok);
}

template <class T>
struct no_params : nn::module<T> {};

}  // namespace

// ---- parity with PyTorch ---------------------------------------------------------------

TEST_CASE_TEMPLATE("parity: linear", T, float, double) {
  for (const char* name : {"linear", "linear_nobias"}) {
    fixture f(name);
    generator g(1);
    nn::linear<T> m({.in_features = f.meta("in_features"), .out_features = f.meta("out_features"),
                     .bias = f.meta("bias") != 0},
                    g);
    check_parity<T, nn::linear<T>>(name, m, [](auto& mod, const auto& x) { return mod(x); });
  }
}

TEST_CASE_TEMPLATE("parity: conv2d plain, strided, grouped, dilated, depthwise, pointwise, rectangular", T, float,
                   double) {
  for (const char* name : {"conv2d_plain", "conv2d_grouped_dilated", "conv2d_depthwise", "conv2d_depthwise_strided",
                           "conv2d_pointwise", "conv2d_rect"}) {
    fixture f(name);
    generator g(1);
    nn::conv2d<T> m({.in_channels = f.meta("in_channels"),
                     .out_channels = f.meta("out_channels"),
                     .kernel_size = {f.meta("kernel_h"), f.meta("kernel_w")},
                     .stride = {f.meta("stride_h"), f.meta("stride_w")},
                     .padding = {f.meta("pad_h"), f.meta("pad_w")},
                     .dilation = f.meta("dilation"),
                     .groups = f.meta("groups"),
                     .bias = f.meta("bias") != 0},
                    g);
    check_parity<T, nn::conv2d<T>>(name, m, [](auto& mod, const auto& x) { return mod(x); });
  }
}

TEST_CASE_TEMPLATE("parity: layer_norm", T, float, double) {
  nn::layer_norm<T> m({.normalized_shape = 8, .eps = 1e-6});
  check_parity<T, nn::layer_norm<T>>("layer_norm", m, [](auto& mod, const auto& x) { return mod(x); });
}

TEST_CASE_TEMPLATE("parity: batch_norm2d in training updates the running statistics", T, float, double) {
  nn::batch_norm2d<T> m({.num_features = 4});
  // The running statistics before the call (the fixture's "buffer." entries are after it).
  auto start = io::read_safetensors(fixture_path("batch_norm_train_start"));
  io::safetensors_archive buffers;
  buffers.put("running_mean", cast<T>(start.get<double>("running_mean")));
  buffers.put("running_var", cast<T>(start.get<double>("running_var")));
  buffers.put("num_batches_tracked", zeros<std::int64_t>({}));
  check_parity<T, nn::batch_norm2d<T>>("batch_norm_train", m, [](auto& mod, const auto& x) { return mod(x); }, buffers);
  fixture f("batch_norm_train");
  const double rtol = sizeof(T) == 4 ? parity_rtol_float : parity_rtol_double;
  CHECK(agree(m.running_mean, f.ref("buffer.running_mean"), rtol));
  CHECK(agree(m.running_var, f.ref("buffer.running_var"), rtol));
  CHECK(m.num_batches_tracked.item() == T(1));
  CHECK(f.a.at("buffer.num_batches_tracked").dtype == io::safetensors_dtype::i64);
}

TEST_CASE_TEMPLATE("parity: batch_norm2d in eval uses the running statistics", T, float, double) {
  nn::batch_norm2d<T> m({.num_features = 3});
  fixture f("batch_norm_eval");
  io::safetensors_archive buffers;
  buffers.put("running_mean", cast<T>(f.ref("buffer.running_mean")));
  buffers.put("running_var", cast<T>(f.ref("buffer.running_var")));
  buffers.tensors["num_batches_tracked"] = f.a.at("buffer.num_batches_tracked");
  m.eval();
  check_parity<T, nn::batch_norm2d<T>>("batch_norm_eval", m, [](auto& mod, const auto& x) { return mod(x); }, buffers);
  CHECK(agree(m.running_mean, f.ref("buffer.running_mean"), 0.0));
  CHECK(m.num_batches_tracked.item() == T(0));
}

TEST_CASE_TEMPLATE("parity: bilinear and nearest resize, up and down, align_corners true and false", T, float, double) {
  for (const char* name : {"resize_bilinear_up", "resize_bilinear_down", "resize_bilinear_up_ac", "resize_bilinear_down_ac",
                           "resize_bilinear_x4", "resize_nearest_up", "resize_nearest_down"}) {
    fixture f(name);
    const std::string mode = f.a.metadata.at("mode");
    nn::interpolate_options o{mode == "nearest" ? backend::resize_mode::nearest : backend::resize_mode::bilinear,
                              f.meta("align_corners") != 0};
    const auto oh = f.meta("out_h"), ow = f.meta("out_w");
    no_params<T> m;
    check_parity<T, no_params<T>>(name, m, [&](auto&, const auto& x) { return nn::functional::interpolate(x, oh, ow, o); });
  }
}

TEST_CASE_TEMPLATE("parity: max_pool2d", T, float, double) {
  for (const char* name : {"max_pool_k3s2p1", "max_pool_k2s2"}) {
    fixture f(name);
    nn::max_pool2d<T> m({.kernel_size = f.meta("kernel"), .stride = f.meta("stride"), .padding = f.meta("padding")});
    check_parity<T, nn::max_pool2d<T>>(name, m, [](auto& mod, const auto& x) { return mod(x); });
  }
}

TEST_CASE_TEMPLATE("parity: efficient self-attention with and without spatial reduction", T, float, double) {
  for (const char* name : {"attention_sr2", "attention_sr1"}) {
    fixture f(name);
    generator g(1);
    nn::efficient_self_attention<T> m(
        {.dim = f.meta("dim"), .num_heads = f.meta("num_heads"), .qkv_bias = true, .sr_ratio = f.meta("sr_ratio")}, g);
    const auto h = f.meta("H"), w = f.meta("W");
    check_parity<T, nn::efficient_self_attention<T>>(name, m, [&](auto& mod, const auto& x) { return mod(x, h, w); });
  }
}

TEST_CASE_TEMPLATE("parity: Mix-FFN", T, float, double) {
  fixture f("mix_ffn");
  generator g(1);
  nn::mix_ffn<T> m({.in_features = 8, .hidden_features = 16}, g);
  check_parity<T, nn::mix_ffn<T>>("mix_ffn", m, [](auto& mod, const auto& x) { return mod(x, 4, 5); });
}

TEST_CASE_TEMPLATE("parity: overlapping patch embedding", T, float, double) {
  for (const char* name : {"patch_embed_k7s4", "patch_embed_k3s2"}) {
    fixture f(name);
    generator g(1);
    nn::overlap_patch_embed<T> m({.patch_size = f.meta("patch_size"), .stride = f.meta("stride"),
                                  .in_channels = f.meta("in_channels"), .embed_dim = f.meta("embed_dim")},
                                 g);
    check_parity<T, nn::overlap_patch_embed<T>>(name, m, [](auto& mod, const auto& x) { return mod(x).tokens; });
  }
}

// ---- gradient checks (double, central differences) ---------------------------------------

// The op table (tests/op_cases.hpp) checks every op once; here conv2d's
// gradients are checked again at every number of images per GEMM.
TEST_CASE("gradcheck: conv2d in every configuration at every number of images per GEMM") {
  struct conf {
    shape x, w;
    nn::conv2d_params p;
  };
  const std::int64_t saved = nn::functional::conv_gemm_columns;
  for (const conf& c : {conf{{2, 3, 6, 5}, {4, 3, 3, 3}, {.stride = 2, .padding = 1}},
                        conf{{3, 3, 6, 5}, {4, 3, 3, 3}, {.stride = 1, .padding = 1}},
                        conf{{1, 4, 6, 6}, {6, 2, 3, 3}, {.stride = 1, .padding = 2, .dilation = 2, .groups = 2}},
                        conf{{3, 4, 5, 5}, {6, 2, 3, 3}, {.stride = 2, .padding = 1, .groups = 2}},
                        conf{{2, 3, 5, 5}, {3, 1, 3, 3}, {.stride = 1, .padding = 1, .groups = 3}},
                        conf{{1, 2, 6, 7}, {2, 1, 3, 3}, {.stride = {2, 3}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 2}},
                        conf{{2, 3, 3, 4}, {2, 3, 1, 1}, {}},
                        conf{{3, 3, 3, 4}, {2, 3, 1, 1}, {}},
                        conf{{1, 2, 5, 4}, {3, 2, 2, 3}, {.stride = {1, 2}, .padding = {0, 1}}},
                        // outputs 32 and more wide at stride 1: the row-copy
                        // im2col (narrower or strided ones gather through a table)
                        conf{{2, 2, 3, 34}, {3, 2, 3, 3}, {.stride = 1, .padding = 1}},
                        conf{{1, 2, 4, 36}, {2, 2, 3, 3}, {.stride = {2, 1}, .padding = 2, .dilation = 2}}}) {
    // One image per GEMM, two (the last chunk short when the batch is odd),
    // and the whole batch in one GEMM.
    const std::int64_t L = nn::functional::conv_out_size(c.x[2], c.w[2], c.p.stride.h, c.p.padding.h, c.p.dilation.h) *
                           nn::functional::conv_out_size(c.x[3], c.w[3], c.p.stride.w, c.p.padding.w, c.p.dilation.w);
    for (const std::int64_t columns : {std::int64_t(1), 2 * L, std::int64_t(1) << 30}) {
      CAPTURE(c.x);
      CAPTURE(c.w);
      CAPTURE(columns);
      nn::functional::conv_gemm_columns = columns;
      const auto p = c.p;
      check_grad([p](const vars& v) { return nn::functional::conv2d(v[0], v[1], v[2], p); },
                 {rnd(c.x, 4), rnd(c.w, 5), rnd({c.w[0]}, 6)});
      check_grad([p](const vars& v) { return nn::functional::conv2d(v[0], v[1], variable<double>(), p); },
                 {rnd(c.x, 7), rnd(c.w, 8)});
    }
  }
  nn::functional::conv_gemm_columns = saved;
}

TEST_CASE("conv2d gives the same result whatever the number of images per GEMM") {
  // A batch of 5 with chunks of 1, 2 (+ a short last one) and 5 images.
  const std::int64_t saved = nn::functional::conv_gemm_columns;
  generator g(3);
  auto x = variable<float>(randn<float>({5, 6, 9, 8}, g), true);
  auto w = variable<float>(randn<float>({7, 6, 3, 3}, g), true);
  auto b = variable<float>(randn<float>({7}, g), true);
  std::vector<std::vector<float>> outs, gxs, gws;
  for (const std::int64_t columns : {std::int64_t(1), std::int64_t(2 * 5 * 4), std::int64_t(1) << 30}) {
    nn::functional::conv_gemm_columns = columns;
    x.zero_grad();
    w.zero_grad();
    auto y = nn::functional::conv2d(x, w, b, {.stride = 2, .padding = 1});
    REQUIRE(y.shape() == shape{5, 7, 5, 4});
    sum(y * y).backward();
    outs.emplace_back(y.value().data(), y.value().data() + y.numel());
    gxs.emplace_back(x.grad().data(), x.grad().data() + x.numel());
    gws.emplace_back(w.grad().data(), w.grad().data() + w.numel());
  }
  nn::functional::conv_gemm_columns = saved;
  for (std::size_t k = 1; k < outs.size(); ++k) {
    for (std::size_t i = 0; i < outs[0].size(); ++i) REQUIRE(outs[k][i] == doctest::Approx(outs[0][i]).epsilon(1e-5));
    for (std::size_t i = 0; i < gxs[0].size(); ++i) REQUIRE(gxs[k][i] == doctest::Approx(gxs[0][i]).epsilon(1e-4));
    for (std::size_t i = 0; i < gws[0].size(); ++i) REQUIRE(gws[k][i] == doctest::Approx(gws[0][i]).epsilon(1e-4));
  }
}

TEST_CASE("upsampled_cross_entropy equals interpolate + cross_entropy") {
  // Labels (2, 5, 7) with ignored pixels; class weights; both align_corners.
  generator g(21);
  auto labels = tensor<std::int64_t>::empty({2, 5, 7});
  for (std::int64_t i = 0; i < labels.numel(); ++i) labels.data()[i] = i % 11 == 3 ? 255 : std::int64_t(g.below(3));
  const auto w = tensor<double>::from_vector({0.5, 2.0, 1.0}, {3});
  // Scratch for 1 row, 2 rows (bands of 2, 2, 1) and the whole image (one band).
  const std::int64_t row = 3 * 7 * std::int64_t(sizeof(double));
  for (std::int64_t scratch : {std::int64_t(1), 2 * row + 5, std::int64_t(16) << 20})
    for (bool ac : {false, true}) {
      CAPTURE(ac);
      CAPTURE(scratch);
      const cross_entropy_options<double> opt{.ignore_index = 255, .class_weights = w};
      const variable<double> x(rnd({2, 3, 3, 4}, 5, -2.0, 2.0), true), y(x.value().clone(), true);
      auto fused = nn::functional::upsampled_cross_entropy(x, labels, ac, opt, scratch);
      auto ref =
          cross_entropy(nn::functional::interpolate(y, 5, 7, nn::interpolate_options{.align_corners = ac}), labels, opt);
      CHECK(fused.value().item() == doctest::Approx(ref.value().item()).epsilon(1e-12));
      fused.backward();
      ref.backward();
      CHECK(max_abs_diff(x.grad(), y.grad()) < 1e-12);
    }
  // Every label ignored: 0 with a zero gradient, as cross_entropy.
  auto ignored = tensor<std::int64_t>::empty({1, 4, 4});
  for (std::int64_t i = 0; i < ignored.numel(); ++i) ignored.data()[i] = 255;
  const variable<double> z(rnd({1, 3, 2, 2}, 7), true);
  auto l0 = nn::functional::upsampled_cross_entropy(z, ignored, false, cross_entropy_options<double>{.ignore_index = 255});
  CHECK(l0.value().item() == 0.0);
  l0.backward();
  CHECK(max_abs_diff(z.grad(), zeros<double>({1, 3, 2, 2})) == 0.0);
}

TEST_CASE("class_max: the maximum over each class's prototypes, and its gradient added in place") {
  // Distinct values so that no class has a tie.
  std::vector<double> vals(3 * 4 * 3);
  for (std::size_t i = 0; i < vals.size(); ++i) vals[i] = double((i * 17) % vals.size()) / 7.0;
  const auto s = tensor<double>::from_vector(vals, {3, 12});
  const variable<double> a(s.clone(), true), b(s.clone(), true);
  auto fa = proto::detail::class_max(a, 3);
  auto fb = max(reshape(b, {3, 4, 3}), 2);
  CHECK(max_abs_diff(fa.value(), fb.value()) == 0.0);
  // Summed with another consumer of the scores: add_into must equal the dense sum.
  const auto wgt = rnd({3, 4}, 4);
  auto la = sum(fa * variable<double>(wgt)) + sum(a * a);
  auto lb = sum(fb * variable<double>(wgt)) + sum(b * b);
  la.backward();
  lb.backward();
  CHECK(max_abs_diff(a.grad(), b.grad()) < 1e-14);
  CHECK_THROWS_WITH_AS(proto::detail::class_max(a, 5), doctest::Contains("class_max: scores must be (N, C * M) with M = 5"),
                       shape_error);
}

TEST_CASE("max_pool2d: NaN wins, ties go to the first tap, overlapping windows add their gradients") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> vals{1, 5, 5, 0, 2, nan, 3, 3, 7, 7, -1, -2, 0, 6, 4, 4};
  const std::vector<float> gy{1, 2, 3, 4};
  auto run = [&](const nn::max_pool2d_params& p, std::vector<float>& y, std::vector<float>& gx) {
    const variable<float> x(tensor<float>::from_vector(vals, {1, 1, 4, 4}), true);
    auto out = nn::functional::max_pool2d(x, p);
    REQUIRE(out.shape() == shape{1, 1, 2, 2});
    y = out.value().to_vector();
    sum(out * variable<float>(tensor<float>::from_vector(gy, {1, 1, 2, 2}))).backward();
    gx = x.grad().to_vector();
  };
  std::vector<float> y, gx;
  // 2x2 windows, stride 2: NaN at 5; 5 at 2 and 7 at 8 and 4 at 14 are the first of ties.
  run({.kernel_size = 2, .stride = 2}, y, gx);
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 5.0f);
  CHECK(y[2] == 7.0f);
  CHECK(y[3] == 4.0f);
  std::vector<float> want(16, 0.0f);
  want[5] = 1;
  want[2] = 2;
  want[8] = 3;
  want[14] = 4;
  CHECK(gx == want);
  // 3x3 windows, stride 2, padding 1: every window holds the NaN, so all
  // four gradients land on it.
  run({.kernel_size = 3, .stride = 2, .padding = 1}, y, gx);
  for (float v : y) CHECK(std::isnan(v));
  std::fill(want.begin(), want.end(), 0.0f);
  want[5] = 10;
  CHECK(gx == want);
}

TEST_CASE("gradcheck: attention, Mix-FFN and patch embedding modules (input gradients)") {
  // Parameter gradients of these modules are checked against PyTorch above;
  // those of their layers by the functional gradchecks.
  generator g(3);
  nn::efficient_self_attention<double> at({.dim = 4, .num_heads = 2, .qkv_bias = true, .sr_ratio = 2}, g);
  check_grad([&](const vars& v) { return at(v[0], 4, 4); }, {rnd({1, 16, 4}, 1)});
  nn::efficient_self_attention<double> at1({.dim = 4, .num_heads = 1, .sr_ratio = 1}, g);
  check_grad([&](const vars& v) { return at1(v[0], 2, 3); }, {rnd({2, 6, 4}, 4)});
  nn::mix_ffn<double> mf({.in_features = 3, .hidden_features = 6}, g);
  check_grad([&](const vars& v) { return mf(v[0], 2, 3); }, {rnd({2, 6, 3}, 2)});
  nn::overlap_patch_embed<double> pe({.patch_size = 3, .stride = 2, .in_channels = 2, .embed_dim = 4}, g);
  check_grad([&](const vars& v) { return pe(v[0]).tokens; }, {rnd({1, 2, 5, 4}, 3)});
}

// ---- dropout family ------------------------------------------------------------------

TEST_CASE("dropout: scaling, rate, seeds, eval identity, dropout2d and drop_path granularity") {
  variable<double> x(ones<double>({200, 50}), true);
  nn::dropout<double> d({.p = 0.2, .seed = 9});
  auto y = d(x);
  const auto v = y.value().to_vector();
  std::size_t zeros_n = 0;
  for (double e : v) {
    CHECK((e == 0.0 || std::abs(e - 1.25) < 1e-12));
    zeros_n += e == 0.0;
  }
  CHECK(std::abs(double(zeros_n) / double(v.size()) - 0.2) < 0.02);
  sum(y).backward();
  CHECK(x.grad().to_vector() == v);  // gradient is the mask
  nn::dropout<double> d2({.p = 0.2, .seed = 9});
  CHECK(d2(x).value().to_vector() == v);  // same seed, same mask
  generator other(10);
  CHECK(d2.forward(x, other).value().to_vector() != v);
  d.eval();
  CHECK(d(x).value().to_vector() == x.value().to_vector());
  generator g(1);
  CHECK(sum(nn::functional::dropout(x, 1.0, g)).value().item() == 0.0);

  nn::dropout2d<double> d2d({.p = 0.5, .seed = 3});
  auto z = d2d(variable<double>(ones<double>({4, 6, 3, 3}))).value();
  for (std::int64_t n = 0; n < 4; ++n)
    for (std::int64_t c = 0; c < 6; ++c) {
      const auto plane = z[n][c].to_vector();
      CHECK(std::all_of(plane.begin(), plane.end(), [&](double e) { return e == plane[0]; }));
    }
  nn::drop_path<double> dp({.p = 0.5, .seed = 4});
  auto zp = dp(variable<double>(ones<double>({8, 5, 2}))).value();
  int dropped = 0;
  for (std::int64_t n = 0; n < 8; ++n) {
    const auto s = zp[n].to_vector();
    CHECK(std::all_of(s.begin(), s.end(), [&](double e) { return e == s[0]; }));
    CHECK((s[0] == 0.0 || s[0] == 2.0));
    dropped += s[0] == 0.0;
  }
  CHECK(dropped > 0);
  CHECK(dropped < 8);
  dp.eval();
  CHECK(dp(variable<double>(ones<double>({8, 5, 2}))).value().to_vector() == std::vector<double>(80, 1.0));
}

// ---- module naming, modes, state -------------------------------------------------------

TEST_CASE("module: parameter names, buffers and counts match PyTorch's") {
  generator g(1);
  nn::efficient_self_attention<float> at({.dim = 8, .num_heads = 2, .qkv_bias = true, .sr_ratio = 2}, g);
  std::vector<std::string> names;
  for (const auto& [n, p] : at.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias",
                                          "sr.weight", "sr.bias", "norm.weight", "norm.bias"});
  // dim*dim + dim (q) + 2*dim*dim + 2*dim (kv) + dim*dim + dim (proj) + dim*dim*4 + dim (sr) + 2*dim (norm)
  CHECK(at.num_parameters() == 64 + 8 + 128 + 16 + 64 + 8 + 256 + 8 + 16);
  nn::efficient_self_attention<float> at1({.dim = 8, .num_heads = 2, .sr_ratio = 1}, g);
  names.clear();
  for (const auto& [n, p] : at1.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"q.weight", "kv.weight", "proj.weight", "proj.bias"});

  nn::mix_ffn<float> mf({.in_features = 4, .hidden_features = 16}, g);
  names.clear();
  for (const auto& [n, p] : mf.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"fc1.weight", "fc1.bias", "dwconv.dwconv.weight", "dwconv.dwconv.bias",
                                          "fc2.weight", "fc2.bias"});
  CHECK(mf.dwconv->dwconv->weight.shape() == shape{16, 1, 3, 3});

  nn::overlap_patch_embed<float> pe({.patch_size = 7, .stride = 4, .in_channels = 3, .embed_dim = 32}, g);
  names.clear();
  for (const auto& [n, p] : pe.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"proj.weight", "proj.bias", "norm.weight", "norm.bias"});
  CHECK(pe.num_parameters() == 32 * 3 * 49 + 32 + 64);

  nn::batch_norm2d<float> bn({.num_features = 5});
  names.clear();
  for (const auto& [n, b] : bn.named_buffers()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
  CHECK(bn.num_parameters() == 10);
  CHECK(bn.type_name() == "BatchNorm2d");

  // Nested: a container module with children under dotted prefixes.
  struct block : nn::module<float> {
    block(generator& g) {
      attn = register_module("attn", std::make_shared<nn::efficient_self_attention<float>>(
                                         nn::attention_options{.dim = 4, .num_heads = 1, .sr_ratio = 1}, g));
      bn = register_module("bn", std::make_shared<nn::batch_norm2d<float>>(nn::batch_norm_options{.num_features = 2}));
    }
    std::shared_ptr<nn::efficient_self_attention<float>> attn;
    std::shared_ptr<nn::batch_norm2d<float>> bn;
  };
  struct net : nn::module<float> {
    net(generator& g) { register_module("block1", std::make_shared<block>(g)); }
  };
  net n(g);
  names.clear();
  for (const auto& [nm, p] : n.named_parameters()) names.push_back(nm);
  CHECK(names.front() == "block1.attn.q.weight");
  CHECK(names.back() == "block1.bn.bias");
  names.clear();
  for (const auto& [nm, b] : n.named_buffers()) names.push_back(nm);
  CHECK(names == std::vector<std::string>{"block1.bn.running_mean", "block1.bn.running_var", "block1.bn.num_batches_tracked"});
  CHECK(n.named_parameters(false).empty());
  CHECK(n.child("block1") != nullptr);
  CHECK(n.child("block2") == nullptr);
}

TEST_CASE("module: train / eval reach every child, zero_grad clears every gradient") {
  generator g(2);
  nn::efficient_self_attention<double> at({.dim = 4, .num_heads = 2, .attn_drop = 0.5, .sr_ratio = 2}, g);
  CHECK(at.is_training());
  at.eval();
  CHECK_FALSE(at.is_training());
  CHECK_FALSE(at.attn_drop->is_training());
  CHECK_FALSE(at.sr->is_training());
  // In eval the attention dropout is the identity: two calls agree.
  variable<double> x(rnd({1, 16, 4}, 1), true);
  CHECK(at(x, 4, 4).value().to_vector() == at(x, 4, 4).value().to_vector());
  at.train();
  CHECK(at.attn_drop->is_training());
  sum(at(x, 4, 4)).backward();
  for (const auto& p : at.parameters()) CHECK(p.has_grad());
  at.zero_grad();
  for (const auto& p : at.parameters()) CHECK_FALSE(p.has_grad());
}

TEST_CASE("module: save and load round trip through a safetensors file") {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("protoseg_nn_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "attn.safetensors").string();
  generator g1(1), g2(2);
  nn::efficient_self_attention<float> a({.dim = 8, .num_heads = 2, .qkv_bias = true, .sr_ratio = 2}, g1);
  nn::efficient_self_attention<float> b({.dim = 8, .num_heads = 2, .qkv_bias = true, .sr_ratio = 2}, g2);
  variable<float> x(cast<float>(rnd({2, 16, 8}, 3)));
  CHECK(a(x, 4, 4).value().to_vector() != b(x, 4, 4).value().to_vector());
  a.save(path, {{"model", "attention"}});
  auto rep = b.load(path);
  CHECK(rep.complete());
  CHECK(rep.matched.size() == 10);
  CHECK(a(x, 4, 4).value().to_vector() == b(x, 4, 4).value().to_vector());
  CHECK(io::read_safetensors(path).metadata.at("model") == "attention");

  // Buffers too, with num_batches_tracked stored as I64.
  nn::batch_norm2d<double> bn({.num_features = 3}), bn2({.num_features = 3});
  bn(variable<double>(rnd({4, 3, 2, 2}, 4)));
  bn(variable<double>(rnd({4, 3, 2, 2}, 5)));
  const std::string bpath = (dir / "bn.safetensors").string();
  bn.save(bpath);
  auto st = io::read_safetensors(bpath);
  CHECK(st.at("num_batches_tracked").dtype == io::safetensors_dtype::i64);
  CHECK(st.get<std::int64_t>("num_batches_tracked").item() == 2);
  bn2.load(bpath);
  CHECK(bn2.running_mean.to_vector() == bn.running_mean.to_vector());
  CHECK(bn2.running_var.to_vector() == bn.running_var.to_vector());
  CHECK(bn2.num_batches_tracked.item() == 2.0);
  fs::remove_all(dir);
}

TEST_CASE("module: strict and non-strict loads report matched, missing and unexpected keys") {
  generator g(1);
  nn::linear<float> fc({.in_features = 3, .out_features = 2}, g);
  const auto before = fc.weight.value().to_vector();
  io::safetensors_archive s;
  s.put("weight", full<float>({2, 3}, 0.5f));
  s.put("extra.weight", zeros<float>({1}));
  // Strict: refused before anything is written, naming both keys.
  try {
    fc.load_state_dict(s);
    FAIL("expected a value_error");
  } catch (const value_error& e) {
    const std::string m = e.what();
    CHECK(m.find("'bias'") != std::string::npos);
    CHECK(m.find("'extra.weight'") != std::string::npos);
  }
  CHECK(fc.weight.value().to_vector() == before);
  // Non-strict: loads what matches and reports the rest.
  auto rep = fc.load_state_dict(s, {.strict = false});
  CHECK(rep.matched == std::vector<std::string>{"weight"});
  CHECK(rep.missing == std::vector<std::string>{"bias"});
  CHECK(rep.unexpected == std::vector<std::string>{"extra.weight"});
  CHECK_FALSE(rep.complete());
  CHECK(fc.weight.value().to_vector() == std::vector<float>(6, 0.5f));
}

TEST_CASE("module: shape and dtype mismatches are refused with the key and both values") {
  generator g(1);
  nn::linear<float> fc({.in_features = 3, .out_features = 2}, g);
  io::safetensors_archive s;
  s.put("weight", zeros<float>({3, 2}));
  s.put("bias", zeros<float>({2}));
  try {
    fc.load_state_dict(s, {.strict = false});
    FAIL("expected a shape_error");
  } catch (const shape_error& e) {
    const std::string m = e.what();
    CHECK(m.find("'weight'") != std::string::npos);
    CHECK(m.find("(3, 2)") != std::string::npos);
    CHECK(m.find("(2, 3)") != std::string::npos);
  }
  io::safetensors_archive d;
  d.put("weight", zeros<double>({2, 3}));
  d.put("bias", ones<double>({2}));
  CHECK_THROWS_AS(fc.load_state_dict(d), value_error);
  try {
    fc.load_state_dict(d);
  } catch (const value_error& e) {
    CHECK(std::string(e.what()).find("F64") != std::string::npos);
  }
  auto rep = fc.load_state_dict(d, {.convert_dtype = true});
  CHECK(rep.complete());
  CHECK(fc.bias.value().to_vector() == std::vector<float>{1.f, 1.f});
  io::safetensors_archive i;
  i.put("weight", zeros<std::int64_t>({2, 3}));
  i.put("bias", zeros<std::int64_t>({2}));
  CHECK_THROWS_AS(fc.load_state_dict(i, {.convert_dtype = true}), value_error);
}

TEST_CASE("module: registration refuses duplicate, dotted and empty names") {
  struct m : nn::module<float> {
    void run() {
      register_parameter("w", zeros<float>({1}));
      CHECK_THROWS_AS(register_parameter("w", zeros<float>({1})), value_error);
      CHECK_THROWS_AS(register_buffer("w", zeros<float>({1})), value_error);
      CHECK_THROWS_AS(register_parameter("a.b", zeros<float>({1})), value_error);
      CHECK_THROWS_AS(register_parameter("", zeros<float>({1})), value_error);
      CHECK_THROWS_AS(register_module("c", std::shared_ptr<nn::module<float>>()), value_error);
      CHECK_THROWS_AS(register_buffer("i", zeros<float>({1}), io::safetensors_dtype::f16), value_error);
      CHECK_THROWS_AS(register_parameter("u", tensor<float>()), value_error);
    }
  } x;
  x.run();
  CHECK(x.num_parameters() == 1);
}

// ---- refusals of bad input -----------------------------------------------------------

TEST_CASE("layers refuse bad options and shapes with the argument named") {
  generator g(1);
  auto msg_has = [](auto&& f, const std::string& what) {
    try {
      f();
    } catch (const error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(what) != std::string::npos);
      return;
    }
    FAIL("no error thrown, expected one mentioning " << what);
  };
  msg_has([&] { nn::linear<float>({.in_features = 0, .out_features = 2}, g); }, "in_features");
  msg_has([&] { nn::linear<float>({.in_features = 2, .out_features = -1}, g); }, "out_features");
  msg_has([&] { nn::conv2d<float>({.in_channels = 3, .out_channels = 4, .groups = 2}, g); }, "groups");
  msg_has([&] { nn::conv2d<float>({.in_channels = 3, .out_channels = 4, .kernel_size = 0}, g); }, "kernel_size");
  msg_has([&] { nn::layer_norm<float>({.normalized_shape = 4, .eps = 0}); }, "eps");
  msg_has([&] { nn::batch_norm2d<float>({.num_features = 0}); }, "num_features");
  msg_has([&] { nn::batch_norm2d<float>({.num_features = 2, .momentum = 1.5}); }, "momentum");
  msg_has([&] { nn::dropout<float>({.p = 1.5}); }, "p is 1.5");
  msg_has([&] { nn::drop_path<float>({.p = -0.1}); }, "drop_path");
  msg_has([&] { nn::efficient_self_attention<float>({.dim = 6, .num_heads = 4}, g); }, "num_heads");
  msg_has([&] { nn::max_pool2d<float>({.kernel_size = 0}); }, "kernel_size");

  using nn::functional::conv2d;
  variable<float> x(zeros<float>({1, 4, 5, 5}));
  variable<float> w(zeros<float>({6, 2, 3, 3}));
  msg_has([&] { conv2d(variable<float>(zeros<float>({4, 5, 5})), w); }, "x must have rank 4");
  msg_has([&] { conv2d(x, w); }, "input channels");
  msg_has([&] { conv2d(x, w, {}, {.groups = 3}); }, "groups 3");
  msg_has([&] { conv2d(x, w, variable<float>(zeros<float>({5})), {.groups = 2}); }, "bias has shape (5,)");
  msg_has([&] { conv2d(x, variable<float>(zeros<float>({6, 4, 7, 7}))); }, "smaller than the dilated kernel");
  msg_has([&] { conv2d(x, w, {}, {.stride = 0, .groups = 2}); }, "stride");
  msg_has([&] { nn::functional::linear(x, variable<float>(zeros<float>({3, 4}))); }, "expected last dimension 4");
  msg_has([&] { nn::functional::linear(variable<float>(zeros<float>({2, 4})), variable<float>(zeros<float>({3, 4})),
                                       variable<float>(zeros<float>({4}))); },
          "bias has shape (4,)");
  msg_has([&] { nn::functional::layer_norm(x, variable<float>(zeros<float>({4}))); }, "weight has shape (4,)");
  msg_has([&] { nn::layer_norm<float>({.normalized_shape = 4})(x); }, "expected last dimension 4");
  msg_has([&] { nn::functional::batch_norm(variable<float>(zeros<float>({1, 3})), tensor<float>(), tensor<float>()); },
          "more than 1 value per channel");
  msg_has([&] { nn::batch_norm2d<float>({.num_features = 3})(x); }, "channels, expected 3");
  msg_has([&] { nn::functional::interpolate(x, 0, 3); }, "output size");
  msg_has([&] { nn::functional::interpolate(variable<float>(zeros<float>({4, 5})), 2, 3); }, "rank >= 3");
  msg_has([&] {
    nn::functional::interpolate(x, 2, 3, {.mode = backend::resize_mode::nearest, .align_corners = true});
  }, "align_corners");
  msg_has([&] {
    nn::functional::upsampled_cross_entropy(variable<float>(zeros<float>({2, 3, 4, 4})), zeros<std::int64_t>({2, 8}), false);
  }, "labels (B, H, W)");
  msg_has([&] {
    nn::functional::upsampled_cross_entropy(variable<float>(zeros<float>({2, 3, 4, 4})), zeros<std::int64_t>({1, 8, 8}), false);
  }, "labels have shape (1, 8, 8), expected (2, 8, 8)");
  msg_has([&] {
    auto bad = zeros<std::int64_t>({1, 8, 8});
    bad.data()[5] = 3;
    nn::functional::upsampled_cross_entropy(variable<float>(zeros<float>({1, 3, 4, 4})), bad, false);
  }, "label 3 at flat position 5 is out of range");
  msg_has([&] { nn::functional::max_pool2d(x, {.kernel_size = 2, .padding = 2}); }, "padding");
  msg_has([&] { nn::functional::max_pool2d(x, {.kernel_size = 7}); }, "smaller than the kernel");
  msg_has([&] { nn::functional::dropout2d(variable<float>(zeros<float>({3})), 0.5, g); }, "rank >= 2");
  nn::efficient_self_attention<float> at({.dim = 4, .num_heads = 2}, g);
  msg_has([&] { at(variable<float>(zeros<float>({1, 6, 4})), 2, 2); }, "H * W");
  msg_has([&] { at(variable<float>(zeros<float>({1, 4, 3})), 2, 2); }, "x must be (B, N, 4)");
  nn::mix_ffn<float> mf({.in_features = 4}, g);
  msg_has([&] { mf(variable<float>(zeros<float>({1, 5, 4})), 2, 2); }, "dw_conv");
}
