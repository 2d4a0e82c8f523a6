#pragma once
// The one table of differentiable ops (as ggml's test-backend-ops): every op
// is listed here once, with its input shapes and value ranges. The gradient
// checks (tests/test_autograd.cpp: central differences in double on the cpu)
// and the cpu/cuda parity suite (tests/cuda/test_cuda.cpp: value and every
// input gradient, on both policies) both run over it, so an op added here is
// checked both ways. Tests of one op's special cases (ties, NaN, chunking,
// golden PyTorch values, errors) stay beside the op's area.
//
// for_each_op_case(visit) calls visit(name, inputs, f) per case: `inputs`
// are cpu tensors of double, `f` a generic callable from a
// std::vector<variable<double, P>> of those inputs (on any policy P) to the
// op's output variable.

#include <protoseg/protoseg.hpp>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace protoseg_test::op_table {

using namespace protoseg;

inline tensor<double> rnd(shape s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  generator g(seed);
  return rand<double>(s, g, lo, hi);
}

/// Distinct values (a permutation of i / scale) so that max-like ops have no
/// ties, whose gradient a central difference cannot check.
inline tensor<double> distinct(shape s, std::size_t stride, double scale) {
  const std::size_t n = static_cast<std::size_t>(s.numel());
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = double((i * stride) % n) / scale;
  return tensor<double>::from_vector(v, s);
}

template <class V>
using policy_of = typename std::decay_t<V>::policy_type;

template <class Visit>
void for_each_op_case(Visit&& visit) {
  using ins = std::vector<tensor<double>>;
  // ---- arithmetic with broadcasting, scalar forms --------------------------------------
  visit("add, broadcast", ins{rnd({2, 3}, 1), rnd({3}, 2)}, [](const auto& v) { return v[0] + v[1]; });
  visit("sub, broadcast both ways", ins{rnd({2, 1, 3}, 3), rnd({4, 1}, 4)}, [](const auto& v) { return v[0] - v[1]; });
  visit("mul, broadcast", ins{rnd({2, 3}, 5), rnd({2, 1}, 6)}, [](const auto& v) { return v[0] * v[1]; });
  visit("div, broadcast", ins{rnd({2, 3}, 7), rnd({3}, 8, 0.5, 2.0)}, [](const auto& v) { return v[0] / v[1]; });
  visit("mul of a variable by itself", ins{rnd({4}, 9)}, [](const auto& v) { return v[0] * v[0]; });
  visit("scalar mul and add", ins{rnd({3}, 1)}, [](const auto& v) { return v[0] * 3.0 + 2.0; });
  visit("scalar sub and div", ins{rnd({3}, 2)}, [](const auto& v) { return 2.0 - v[0] / 4.0; });
  visit("scalar divided by", ins{rnd({3}, 3, 0.5, 2.0)}, [](const auto& v) { return 1.5 / v[0]; });
  visit("negation", ins{rnd({3}, 4)}, [](const auto& v) { return -v[0] - 1.0; });
  // ---- matmul: transposed operands, batches, broadcast matrices --------------------------
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::string t = std::string(" ta=") + (ta ? "1" : "0") + " tb=" + (tb ? "1" : "0");
      const shape sa = ta ? shape{4, 3} : shape{3, 4}, sb = tb ? shape{5, 4} : shape{4, 5};
      const shape ba = ta ? shape{2, 4, 3} : shape{2, 3, 4}, bb = tb ? shape{2, 5, 4} : shape{2, 4, 5};
      auto f = [=](const auto& v) { return matmul(v[0], v[1], ta, tb); };
      visit("matmul" + t, ins{rnd(sa, 1), rnd(sb, 2)}, f);
      visit("matmul batched" + t, ins{rnd(ba, 3), rnd(bb, 4)}, f);
      visit("matmul batch by matrix" + t, ins{rnd(ba, 5), rnd(sb, 6)}, f);
      visit("matmul matrix by batch" + t, ins{rnd(sa, 7), rnd(bb, 8)}, f);
    }
  // ---- reductions ----------------------------------------------------------------------
  visit("sum", ins{rnd({2, 3}, 1)}, [](const auto& v) { return sum(v[0]); });
  visit("mean", ins{rnd({2, 3}, 2)}, [](const auto& v) { return mean(v[0]); });
  visit("sum along an axis", ins{rnd({2, 3, 4}, 3)}, [](const auto& v) { return sum(v[0], 1); });
  visit("sum along the last axis, kept", ins{rnd({2, 3, 4}, 4)}, [](const auto& v) { return sum(v[0], -1, true); });
  visit("mean along axis 0", ins{rnd({2, 3, 4}, 5)}, [](const auto& v) { return mean(v[0], 0); });
  visit("mean along axis 2, kept", ins{rnd({2, 3, 4}, 6)}, [](const auto& v) { return mean(v[0], 2, true); });
  {
    const auto x = distinct({2, 3, 2}, 5, 10.0);
    for (int axis : {0, 1, 2})
      visit("max along axis " + std::to_string(axis), ins{x}, [=](const auto& v) { return max(v[0], axis); });
    visit("max along an axis, kept", ins{x}, [](const auto& v) { return max(v[0], 1, true); });
  }
  // ---- unary functions -----------------------------------------------------------------
  visit("exp", ins{rnd({2, 3}, 1)}, [](const auto& v) { return exp(v[0]); });
  visit("log", ins{rnd({2, 3}, 2, 0.5, 2.0)}, [](const auto& v) { return log(v[0]); });
  visit("sqrt", ins{rnd({2, 3}, 3, 0.5, 2.0)}, [](const auto& v) { return sqrt(v[0]); });
  visit("pow 3", ins{rnd({2, 3}, 4)}, [](const auto& v) { return pow(v[0], 3.0); });
  visit("pow 0.5", ins{rnd({2, 3}, 5, 0.5, 2.0)}, [](const auto& v) { return pow(v[0], 0.5); });
  // relu inputs stay away from the kink at 0
  visit("relu", ins{rnd({3, 4}, 1, 0.1, 1.0) * tensor<double>::from_vector({1, -1, 1, -1}, {4})},
        [](const auto& v) { return relu(v[0]); });
  visit("gelu", ins{rnd({3, 4}, 2, -3.0, 3.0)}, [](const auto& v) { return gelu(v[0]); });
  visit("sigmoid", ins{rnd({3, 4}, 3, -3.0, 3.0)}, [](const auto& v) { return sigmoid(v[0]); });
  visit("tanh", ins{rnd({3, 4}, 4, -2.0, 2.0)}, [](const auto& v) { return tanh(v[0]); });
  // ---- softmax, normalisation ----------------------------------------------------------
  for (int axis : {0, 1, 2, -1}) {
    visit("softmax along axis " + std::to_string(axis), ins{rnd({2, 3, 4}, 1, -2.0, 2.0)},
          [=](const auto& v) { return softmax(v[0], axis); });
    visit("log_softmax along axis " + std::to_string(axis), ins{rnd({2, 3, 4}, 2, -2.0, 2.0)},
          [=](const auto& v) { return log_softmax(v[0], axis); });
  }
  visit("l2_normalize rows", ins{rnd({3, 4}, 1)}, [](const auto& v) { return l2_normalize(v[0], 1); });
  visit("l2_normalize along axis 0", ins{rnd({3, 4, 2}, 2)}, [](const auto& v) { return l2_normalize(v[0], 0); });
  // a row whose norm is below eps: the denominator is the constant eps
  visit("l2_normalize below eps", ins{tensor<double>::from_vector({1e-3, -2e-3, 0.5, 0.7}, {2, 2})},
        [](const auto& v) { return l2_normalize(v[0], 1, 1e-2); });
  // ---- layout --------------------------------------------------------------------------
  visit("reshape", ins{rnd({2, 3, 2}, 1), rnd({3, 4}, 2)}, [](const auto& v) { return reshape(v[0], {3, -1}) * v[1]; });
  visit("permute", ins{rnd({2, 3, 4}, 3), rnd({4, 2, 3}, 4)},
        [](const auto& v) { return permute(v[0], {2, 0, 1}) * v[1]; });
  visit("transpose", ins{rnd({2, 3}, 5), rnd({3, 2}, 6)}, [](const auto& v) { return transpose(v[0]) * v[1]; });
  visit("slice", ins{rnd({2, 4, 3}, 7)}, [](const auto& v) { return slice(v[0], 1, 1, 3); });
  visit("slice with negative bounds", ins{rnd({2, 4, 3}, 8)}, [](const auto& v) { return slice(v[0], -1, -2, 3); });
  visit("index", ins{rnd({2, 4}, 9)}, [](const auto& v) { return index(v[0], 0, 1); });
  visit("concat", ins{rnd({2, 2, 3}, 10), rnd({2, 1, 3}, 11)}, [](const auto& v) {
    using V = std::decay_t<decltype(v[0])>;
    return concat(std::vector<V>{v[0], v[1], v[0]}, 1);
  });
  // ---- losses --------------------------------------------------------------------------
  {
    const auto labels = tensor<std::int64_t>::from_vector({2, 0, 255, 1}, {4});
    visit("cross_entropy with an ignored label", ins{rnd({4, 3}, 1, -2.0, 2.0)}, [=](const auto& v) {
      return cross_entropy(v[0], labels.template to<policy_of<decltype(v[0])>>(), {.ignore_index = 255});
    });
    const auto labels4d = tensor<std::int64_t>::from_vector({0, 1, 2, -1, 2, 2, 1, 0, -1, 0, 1, 2}, {2, 2, 3});
    const auto w = tensor<double>::from_vector({0.5, 2.0, 1.0}, {3});
    visit("cross_entropy, spatial labels and class weights", ins{rnd({2, 3, 2, 3}, 2, -2.0, 2.0)},
          [=](const auto& v) {
            using P = policy_of<decltype(v[0])>;
            return cross_entropy(v[0], labels4d.template to<P>(),
                                 cross_entropy_options<double, P>{.ignore_index = -1, .class_weights = w.template to<P>()});
          });
    // bilinear upsampling inside the loss, in one band and in bands of 2 rows
    std::vector<std::int64_t> lv(2 * 7 * 9);
    for (std::size_t i = 0; i < lv.size(); ++i) lv[i] = i % 13 == 4 ? 255 : static_cast<std::int64_t>(i * 7 % 3);
    const auto up_labels = tensor<std::int64_t>::from_vector(lv, {2, 7, 9});
    for (std::int64_t scratch : {std::int64_t(16) << 20, std::int64_t(2 * 3 * 9 * sizeof(double))})
      for (bool ac : {false, true})
        visit(std::string("upsampled_cross_entropy, ") + (scratch > 1024 ? "one band" : "bands of 2 rows") +
                  (ac ? ", align_corners" : ""),
              ins{rnd({2, 3, 4, 5}, 4)}, [=](const auto& v) {
                using P = policy_of<decltype(v[0])>;
                return nn::functional::upsampled_cross_entropy(
                    v[0], up_labels.template to<P>(), ac, cross_entropy_options<double, P>{.ignore_index = 255},
                    scratch);
              });
  }
  // ---- layers (nn::functional) -----------------------------------------------------------
  visit("linear", ins{rnd({2, 3, 4}, 1), rnd({5, 4}, 2), rnd({5}, 3)},
        [](const auto& v) { return nn::functional::linear(v[0], v[1], v[2]); });
  struct conv_case {
    shape x, w;
    nn::conv2d_params p;
    const char* what;
  };
  for (const conv_case& c : {
           conv_case{{2, 3, 6, 5}, {4, 3, 3, 3}, {.stride = 2, .padding = 1}, "strided"},
           conv_case{{3, 3, 6, 5}, {4, 3, 3, 3}, {.stride = 1, .padding = 1}, "plain"},
           conv_case{{1, 4, 6, 6}, {6, 2, 3, 3}, {.stride = 1, .padding = 2, .dilation = 2, .groups = 2}, "dilated, grouped"},
           conv_case{{3, 4, 5, 5}, {6, 2, 3, 3}, {.stride = 2, .padding = 1, .groups = 2}, "strided, grouped"},
           conv_case{{2, 3, 5, 5}, {3, 1, 3, 3}, {.stride = 1, .padding = 1, .groups = 3}, "depthwise"},
           conv_case{{2, 4, 7, 6}, {4, 1, 3, 3}, {.stride = 2, .padding = 1, .groups = 4}, "depthwise, strided"},
           conv_case{{1, 2, 6, 7}, {2, 1, 3, 3}, {.stride = {2, 3}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 2},
                     "depthwise, rectangular stride and dilation"},
           conv_case{{2, 3, 3, 4}, {2, 3, 1, 1}, {}, "pointwise"},
           conv_case{{1, 2, 5, 4}, {3, 2, 2, 3}, {.stride = {1, 2}, .padding = {0, 1}}, "rectangular kernel"},
           conv_case{{1, 3, 9, 9}, {8, 3, 7, 7}, {.stride = 4, .padding = 3}, "7x7 stride 4 (patch embedding)"},
           // outputs 32 and more wide at stride 1: the row-copy im2col (narrower
           // or strided ones gather through a table)
           conv_case{{2, 2, 3, 34}, {3, 2, 3, 3}, {.stride = 1, .padding = 1}, "wide rows"},
           conv_case{{1, 2, 4, 36}, {2, 2, 3, 3}, {.stride = {2, 1}, .padding = 2, .dilation = 2}, "wide rows, dilated"}}) {
    const auto p = c.p;
    visit(std::string("conv2d ") + c.what, ins{rnd(c.x, 4), rnd(c.w, 5), rnd({c.w[0]}, 6)},
          [p](const auto& v) { return nn::functional::conv2d(v[0], v[1], v[2], p); });
    visit(std::string("conv2d without bias ") + c.what, ins{rnd(c.x, 7), rnd(c.w, 8)}, [p](const auto& v) {
      return nn::functional::conv2d(v[0], v[1], std::decay_t<decltype(v[0])>(), p);
    });
  }
  visit("layer_norm", ins{rnd({3, 4, 6}, 1), rnd({6}, 2), rnd({6}, 3)},
        [](const auto& v) { return nn::functional::layer_norm(v[0], v[1], v[2], 1e-5); });
  visit("layer_norm without affine", ins{rnd({5, 7}, 4)}, [](const auto& v) { return nn::functional::layer_norm(v[0]); });
  visit("batch_norm, training", ins{rnd({3, 2, 3, 2}, 5), rnd({2}, 6), rnd({2}, 7)}, [](const auto& v) {
    using P = policy_of<decltype(v[0])>;
    return nn::functional::batch_norm(v[0], tensor<double, P>(), tensor<double, P>(), v[1], v[2], true);
  });
  {
    const auto rm = rnd({2}, 8), rv = rnd({2}, 9, 0.5, 2.0);
    visit("batch_norm, eval (running statistics)", ins{rnd({2, 2, 3, 3}, 10), rnd({2}, 11), rnd({2}, 12)},
          [=](const auto& v) {
            using P = policy_of<decltype(v[0])>;
            return nn::functional::batch_norm(v[0], rm.template to<P>(), rv.template to<P>(), v[1], v[2], false);
          });
  }
  visit("batch_norm of (N, C) without affine", ins{rnd({4, 3}, 13)}, [](const auto& v) {
    using P = policy_of<decltype(v[0])>;
    return nn::functional::batch_norm(v[0], tensor<double, P>(), tensor<double, P>());
  });
  for (bool ac : {false, true}) {
    for (auto [oh, ow] : {std::pair<std::int64_t, std::int64_t>{7, 9}, {2, 3}, {4, 4}})
      visit("interpolate bilinear to " + std::to_string(oh) + "x" + std::to_string(ow) + (ac ? ", align_corners" : ""),
            ins{rnd({2, 1, 4, 5}, 1)},
            [=](const auto& v) { return nn::functional::interpolate(v[0], oh, ow, {.align_corners = ac}); });
    for (auto [oh, ow] : {std::pair<std::int64_t, std::int64_t>{11, 13}, {20, 24}})
      visit("interpolate bilinear, 3 channels, to " + std::to_string(oh) + "x" + std::to_string(ow) +
                (ac ? ", align_corners" : ""),
            ins{rnd({2, 3, 5, 6}, 1)},
            [=](const auto& v) { return nn::functional::interpolate(v[0], oh, ow, {.align_corners = ac}); });
  }
  visit("interpolate nearest", ins{rnd({1, 2, 4, 5}, 2)}, [](const auto& v) {
    return nn::functional::interpolate(v[0], 7, 3, {.mode = backend::resize_mode::nearest});
  });
  visit("max_pool2d 3x3 stride 2 padding 1", ins{distinct({2, 2, 7, 6}, 37, 10.0)},
        [](const auto& v) { return nn::functional::max_pool2d(v[0], {.kernel_size = 3, .stride = 2, .padding = 1}); });
  visit("max_pool2d 2x3 stride (2, 1)", ins{distinct({1, 2, 6, 7}, 29, 10.0)},
        [](const auto& v) { return nn::functional::max_pool2d(v[0], {.kernel_size = {2, 3}, .stride = {2, 1}}); });
  // masks come from a generator seeded inside f: the same on every call and policy
  visit("dropout", ins{rnd({4, 5}, 3)}, [](const auto& v) {
    generator g(5);
    return nn::functional::dropout(v[0], 0.3, g);
  });
  visit("dropout2d", ins{rnd({3, 4, 2, 2}, 6)}, [](const auto& v) {
    generator g(6);
    return nn::functional::dropout2d(v[0], 0.4, g);
  });
  visit("drop_path", ins{rnd({4, 2, 3}, 4)}, [](const auto& v) {
    generator g(6);
    return nn::functional::drop_path(v[0], 0.5, g);
  });
  // ---- ProtoSeg ------------------------------------------------------------------------
  visit("class_max over 3 prototypes per class", ins{distinct({3, 12}, 17, 7.0)},
        [](const auto& v) { return class_max(v[0], 3); });
}

}  // namespace protoseg_test::op_table
