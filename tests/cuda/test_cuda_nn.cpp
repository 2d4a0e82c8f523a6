// The cuda policy against the cpu policy for every layer primitive (im2col /
// col2im, depthwise conv, layer norm, batch-norm statistics, resize, max
// pooling) through the differentiable layers that use them, forward and
// gradients, and for the SegFormer modules. Built twice, as test_cuda.cpp:
// with g++ on Thrust's OpenMP device system (runs without a GPU) and with
// nvcc (runs on a GPU).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <protoseg/backend/cuda/nn.cuh>
#include "parity.hpp"
#include <protoseg/nn/all.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace cuda_nn_parity {
using namespace cuda_parity_harness;
using protoseg::cuda;  // a using-declaration here: the directive alone leaves ::cuda ambiguous

namespace {

/// Two modules built from the same seed on each policy: outputs and every
/// parameter gradient agree.
template <class MC, class MG, class F>
void module_parity(MC& mc, MG& mg, F f, const tensor<float>& x, double rtol = model_rtol) {
  variable<float, cpu> xc(x.clone(), true);
  variable<float, cuda> xg(x.to<cuda>(), true);
  auto oc = f(mc, xc);
  auto og = f(mg, xg);
  REQUIRE(agree(og.value(), oc.value(), rtol));
  sum(oc).backward();
  sum(og).backward();
  CHECK(agree(xg.grad(), xc.grad(), rtol));
  auto pc = mc.named_parameters();
  auto pg = mg.named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (std::size_t i = 0; i < pc.size(); ++i) {
    CAPTURE(pc[i].first);
    CHECK(pc[i].first == pg[i].first);
    CHECK(agree(pg[i].second.grad(), pc[i].second.grad(), rtol));
  }
}

}  // namespace

TEST_CASE("cuda nn: conv2d (im2col / col2im + GEMM, pointwise, depthwise) forward and gradients") {
  struct conf {
    shape x, w;
    nn::conv2d_params p;
  };
  for (const conf& c : {conf{{2, 3, 7, 6}, {4, 3, 3, 3}, {.stride = 2, .padding = 1}},
                        conf{{1, 4, 6, 6}, {6, 2, 3, 3}, {.stride = 1, .padding = 2, .dilation = 2, .groups = 2}},
                        conf{{2, 5, 6, 5}, {5, 1, 3, 3}, {.stride = 1, .padding = 1, .groups = 5}},
                        conf{{2, 4, 7, 6}, {4, 1, 3, 3}, {.stride = 2, .padding = 1, .groups = 4}},
                        conf{{1, 2, 6, 7}, {2, 1, 3, 3}, {.stride = {2, 3}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 2}},
                        conf{{2, 3, 3, 4}, {2, 3, 1, 1}, {}},
                        conf{{1, 3, 9, 9}, {8, 3, 7, 7}, {.stride = 4, .padding = 3}}}) {
    CAPTURE(c.x);
    CAPTURE(c.w);
    const auto p = c.p;
    grad_parity([p](const auto& v) { return nn::functional::conv2d(v[0], v[1], v[2], p); },
                {rnd(c.x, 1), rnd(c.w, 2), rnd({c.w[0]}, 3)});
    grad_parity([p](const auto& v) { return nn::functional::conv2d(v[0], v[1], {}, p); }, {rnd(c.x, 4), rnd(c.w, 5)});
  }
}

TEST_CASE("cuda nn: linear, layer_norm and batch_norm (training and eval) forward and gradients") {
  grad_parity([](const auto& v) { return nn::functional::linear(v[0], v[1], v[2]); },
              {rnd({2, 3, 4}, 1), rnd({5, 4}, 2), rnd({5}, 3)});
  grad_parity([](const auto& v) { return nn::functional::layer_norm(v[0], v[1], v[2], 1e-6); },
              {rnd({4, 3, 70}, 4), rnd({70}, 5), rnd({70}, 6)});
  grad_parity([](const auto& v) { return nn::functional::layer_norm(v[0]); }, {rnd({5, 9}, 7)});
  // Batch norm in training updates running statistics on both policies alike.
  auto rm = rnd({3}, 8, -0.1, 0.1), rv = rnd({3}, 9, 0.5, 1.5);
  auto rmc = rm.clone(), rvc = rv.clone();
  auto rmg = rm.to<cuda>(), rvg = rv.to<cuda>();
  grad_parity(
      [&](const auto& v) {
        using P = typename std::decay_t<decltype(v[0])>::policy_type;
        if constexpr (std::is_same_v<P, cpu>) return nn::functional::batch_norm(v[0], rmc, rvc, v[1], v[2], true);
        else return nn::functional::batch_norm(v[0], rmg, rvg, v[1], v[2], true);
      },
      {rnd({3, 3, 4, 5}, 10, -2, 3), rnd({3}, 11), rnd({3}, 12)});
  CHECK(agree(rmg, rmc));
  CHECK(agree(rvg, rvc));
  grad_parity(
      [&](const auto& v) {
        using P = typename std::decay_t<decltype(v[0])>::policy_type;
        return nn::functional::batch_norm(v[0], rm.to<P>(), rv.to<P>(), v[1], v[2], false);
      },
      {rnd({2, 3, 3, 3}, 13), rnd({3}, 14), rnd({3}, 15)});
}

TEST_CASE("cuda nn: two-stage reductions over several chunks (layer-norm parameters, channel statistics, depthwise weights)") {
  grad_parity([](const auto& v) { return nn::functional::layer_norm(v[0], v[1], v[2]); },
              {rnd({3, 211, 5}, 1), rnd({5}, 2), rnd({5}, 3)});
  grad_parity([](const auto& v) {
    using P = typename std::decay_t<decltype(v[0])>::policy_type;
    return nn::functional::batch_norm(v[0], tensor<double, P>(), tensor<double, P>(), v[1], v[2], true);
  }, {rnd({2, 3, 33, 17}, 4, -1, 3), rnd({3}, 5), rnd({3}, 6)});
  grad_parity([](const auto& v) { return nn::functional::conv2d(v[0], v[1], v[2], {.padding = 1, .groups = 3}); },
              {rnd({2, 3, 21, 9}, 7), rnd({3, 1, 3, 3}, 8), rnd({3}, 9)});
}

TEST_CASE("cuda nn: bilinear and nearest resize, max pooling, dropout masks") {
  for (bool ac : {false, true})
    for (auto [oh, ow] : {std::pair<std::int64_t, std::int64_t>{11, 13}, {3, 2}, {5, 6}, {20, 24}}) {
      CAPTURE(ac);
      CAPTURE(oh);
      CAPTURE(ow);
      grad_parity([=](const auto& v) { return nn::functional::interpolate(v[0], oh, ow, {.align_corners = ac}); },
                  {rnd({2, 3, 5, 6}, 1)});
    }
  grad_parity([](const auto& v) {
    return nn::functional::interpolate(v[0], 9, 4, {.mode = backend::resize_mode::nearest});
  }, {rnd({2, 2, 5, 6}, 2)});
  grad_parity([](const auto& v) { return nn::functional::max_pool2d(v[0], {.kernel_size = 3, .stride = 2, .padding = 1}); },
              {rnd({2, 3, 9, 8}, 3)});
  grad_parity([](const auto& v) { return nn::functional::max_pool2d(v[0], {.kernel_size = {2, 3}, .stride = {2, 1}}); },
              {rnd({1, 2, 6, 7}, 4)});
  // Masks are drawn on the host from the same generator: identical on both.
  grad_parity([](const auto& v) {
    generator g(5);
    return nn::functional::dropout(v[0], 0.4, g);
  }, {rnd({6, 7}, 5)});
  grad_parity([](const auto& v) {
    generator g(6);
    return nn::functional::dropout2d(v[0], 0.4, g);
  }, {rnd({3, 4, 2, 2}, 6)});
  grad_parity([](const auto& v) {
    generator g(7);
    return nn::functional::drop_path(v[0], 0.4, g);
  }, {rnd({5, 3, 2}, 7)});
}

TEST_CASE("cuda nn: SegFormer attention, Mix-FFN and patch embedding modules") {
  generator gc(3), gg(3);
  nn::efficient_self_attention<float, cpu> ac({.dim = 8, .num_heads = 2, .qkv_bias = true, .sr_ratio = 2}, gc);
  nn::efficient_self_attention<float, cuda> ag({.dim = 8, .num_heads = 2, .qkv_bias = true, .sr_ratio = 2}, gg);
  generator gx(4);
  module_parity(ac, ag, [](auto& m, const auto& x) { return m(x, 4, 6); }, rand<float>({2, 24, 8}, gx, -1.f, 1.f));
  nn::mix_ffn<float, cpu> fc({.in_features = 8, .hidden_features = 32}, gc);
  nn::mix_ffn<float, cuda> fg({.in_features = 8, .hidden_features = 32}, gg);
  module_parity(fc, fg, [](auto& m, const auto& x) { return m(x, 4, 5); }, rand<float>({2, 20, 8}, gx, -1.f, 1.f));
  nn::overlap_patch_embed<float, cpu> pc({.patch_size = 7, .stride = 4, .in_channels = 3, .embed_dim = 16}, gc);
  nn::overlap_patch_embed<float, cuda> pg({.patch_size = 7, .stride = 4, .in_channels = 3, .embed_dim = 16}, gg);
  module_parity(pc, pg, [](auto& m, const auto& x) { return m(x).tokens; }, rand<float>({2, 3, 17, 15}, gx, -1.f, 1.f));
  nn::batch_norm2d<float, cpu> bc({.num_features = 4});
  nn::batch_norm2d<float, cuda> bg({.num_features = 4});
  module_parity(bc, bg, [](auto& m, const auto& x) { return m(x); }, rand<float>({2, 4, 3, 3}, gx, -1.f, 1.f));
  CHECK(agree(bg.running_var, bc.running_var));
  // A state saved from the cuda module loads into the cpu one.
  auto state = ag.state_dict();
  generator other(99);
  nn::efficient_self_attention<float, cpu> fresh({.dim = 8, .num_heads = 2, .qkv_bias = true, .sr_ratio = 2}, other);
  CHECK(fresh.load_state_dict(state).complete());
  auto fp = fresh.named_parameters(), cp = ac.named_parameters();
  for (std::size_t i = 0; i < fp.size(); ++i) CHECK(agree(fp[i].second.value(), cp[i].second.value(), 0.0));
}

}  // namespace cuda_nn_parity
