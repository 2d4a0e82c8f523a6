#pragma once
/// \file nn_primitives.hpp
/// Primary templates of the layer primitives (convolution helpers,
/// normalisation statistics, resizing, pooling) and the plain geometry
/// structs they take. Each backend specialises them in its own folder
/// (`backend/cpu/{conv,norm,resize,pool}.hpp`, `backend/cuda/*.cuh`). Like
/// primitives.hpp, this header includes only the policy tags.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/backend/policy.hpp"

namespace protoseg::backend {

/// Geometry of a 2-d convolution on one image (channels x height x width).
/// Output sizes follow PyTorch: (in + 2 pad - dilation (k - 1) - 1) / stride + 1.
struct conv_geometry {
  std::int64_t channels = 0, height = 0, width = 0;
  std::int64_t kernel_h = 1, kernel_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t out_h = 0, out_w = 0;
};

/// Geometry of a max pooling window over N*C planes of height x width.
struct pool_geometry {
  std::int64_t planes = 0, height = 0, width = 0;
  std::int64_t kernel_h = 1, kernel_w = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;
  std::int64_t out_h = 0, out_w = 0;
};

/// One axis of a separable resize: output index o reads input indices i0[o]
/// and i1[o] with weights w0[o] and w1[o]; input index i is read by the
/// outputs in [first[i], last[i]) (the ranges the gather-form backward uses).
template <class T>
struct resize_axis {
  std::int64_t in = 0, out = 0;
  std::vector<std::int64_t> i0, i1, first, last;
  std::vector<T> w0, w1;
};

/// Resize modes: bilinear (PyTorch's `bilinear`, with or without
/// align_corners) and nearest (PyTorch's legacy `nearest`: floor(o * in / out)).
enum class resize_mode { bilinear, nearest };

/// The index and weight tables of one axis, computed as
/// torch.nn.functional.interpolate does when given an output size:
/// align_corners=false maps o to (o + 0.5) * in / out - 0.5 clamped at 0;
/// align_corners=true maps o to o * (in - 1) / (out - 1).
namespace detail_nn_axis {
/// first[i], last[i]: the range of outputs that read input i (for the
/// gather-form backward).
template <class T>
void fill_reach(resize_axis<T>& a) {
  a.first.assign(static_cast<std::size_t>(a.in), 0);
  a.last.assign(static_cast<std::size_t>(a.in), 0);
  for (std::int64_t o = 0; o < a.out; ++o)
    for (std::int64_t i : {a.i0[o], a.i1[o]}) {
      if (a.last[i] == 0) a.first[i] = o;
      a.last[i] = o + 1;
    }
}
}  // namespace detail_nn_axis

template <class T>
resize_axis<T> make_resize_axis(std::int64_t in, std::int64_t out, resize_mode mode, bool align_corners) {
  resize_axis<T> a;
  a.in = in;
  a.out = out;
  a.i0.resize(out);
  a.i1.resize(out);
  a.w0.resize(out);
  a.w1.resize(out);
  // The scale is computed in the accumulation type, as ATen does (float for float).
  using acc = T;
  for (std::int64_t o = 0; o < out; ++o) {
    if (mode == resize_mode::nearest) {
      // ATen computes the nearest scale in float for every value type.
      const float scale = static_cast<float>(in) / static_cast<float>(out);
      std::int64_t i = static_cast<std::int64_t>(std::floor(static_cast<float>(o) * scale));
      i = std::min(i, in - 1);
      a.i0[o] = a.i1[o] = i;
      a.w0[o] = T(1);
      a.w1[o] = T(0);
      continue;
    }
    acc src;
    if (align_corners) {
      const acc scale = out > 1 ? static_cast<acc>(in - 1) / static_cast<acc>(out - 1) : acc(0);
      src = scale * static_cast<acc>(o);
    } else {
      const acc scale = static_cast<acc>(in) / static_cast<acc>(out);
      src = scale * (static_cast<acc>(o) + acc(0.5)) - acc(0.5);
      if (src < acc(0)) src = acc(0);
    }
    const std::int64_t i0 = static_cast<std::int64_t>(src);
    const std::int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
    const acc l1 = src - static_cast<acc>(i0);
    a.i0[o] = i0;
    a.i1[o] = i1;
    a.w0[o] = static_cast<T>(acc(1) - l1);
    a.w1[o] = static_cast<T>(l1);
  }
  detail_nn_axis::fill_reach(a);
  return a;
}

/// Output positions [o0, o1) of an axis, as an axis with o1 - o0 outputs
/// over the same input (resize a band of output rows; with the accumulating
/// backward, the bands' gradients add up to the whole axis').
template <class T>
resize_axis<T> resize_axis_band(const resize_axis<T>& a, std::int64_t o0, std::int64_t o1) {
  resize_axis<T> b;
  b.in = a.in;
  b.out = o1 - o0;
  b.i0.assign(a.i0.begin() + o0, a.i0.begin() + o1);
  b.i1.assign(a.i1.begin() + o0, a.i1.begin() + o1);
  b.w0.assign(a.w0.begin() + o0, a.w0.begin() + o1);
  b.w1.assign(a.w1.begin() + o0, a.w1.begin() + o1);
  detail_nn_axis::fill_reach(b);
  return b;
}

namespace detail_nn {
template <class>
inline constexpr bool always_false = false;
}

#define PROTOSEG_NN_PRIMARY_PRIMITIVE(NAME, HEADER)                                         \
  template <class Policy>                                                                  \
  struct NAME {                                                                            \
    static_assert(detail_nn::always_false<Policy>,                                         \
                  "protoseg: layer primitive '" #NAME                                      \
                  "' has no specialisation for this policy; include the backend header "   \
                  "(<protoseg/backend/cpu/" HEADER ".hpp> or <protoseg/backend/cuda/" HEADER \
                  ".cuh>)");                                                               \
  };

/// im2col / col2im for convolution by GEMM, and the direct depthwise kernels.
PROTOSEG_NN_PRIMARY_PRIMITIVE(conv, "conv")
/// layer-norm forward/backward rows and batch-norm channel statistics.
PROTOSEG_NN_PRIMARY_PRIMITIVE(norm, "norm")
/// separable bilinear / nearest resize forward and (gather-form) backward.
PROTOSEG_NN_PRIMARY_PRIMITIVE(resize, "resize")
/// max pooling forward (with argmax indices) and backward.
PROTOSEG_NN_PRIMARY_PRIMITIVE(pool, "pool")

#undef PROTOSEG_NN_PRIMARY_PRIMITIVE

}  // namespace protoseg::backend
