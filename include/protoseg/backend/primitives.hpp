#pragma once
/// \file primitives.hpp
/// The backend primitives, declared once. Each primitive is a class template
/// over the policy type, specialised per backend, one file per primitive per
/// backend: `backend/cpu/<name>.hpp` (Eigen / OpenMP) and
/// `backend/cuda/<name>.cuh` (Thrust / CUDA). Shared code calls
/// `backend::<name><Policy>::...` and never tests the policy. Using a
/// primitive with a policy that has no specialisation fails with one readable
/// static_assert instead of a page of template errors. Besides the primary
/// templates this header holds only the plain geometry structs the
/// primitives take (they cross to device kernels by value), and includes
/// only the policy tags.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/backend/policy.hpp"

namespace protoseg::backend {

/// Geometry of a broadcasting binary operation, padded to rank 5 so that the
/// same plain struct can be passed to a device kernel.
struct broadcast_geometry {
  int rank = 0;
  std::int64_t out_shape[5] = {1, 1, 1, 1, 1};
  std::int64_t a_stride[5] = {0, 0, 0, 0, 0};
  std::int64_t b_stride[5] = {0, 0, 0, 0, 0};
  std::int64_t numel = 0;
};

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

/// The index and weight tables of one axis, computed as
/// torch.nn.functional.interpolate does when given an output size:
/// align_corners=false maps o to (o + 0.5) * in / out - 0.5 clamped at 0;
/// align_corners=true maps o to o * (in - 1) / (out - 1).
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

/// Scalars of one AdamW update of one parameter, computed in double as
/// PyTorch computes them in Python (the `optim` primitive's argument).
struct adamw_scalars {
  double decay;      // 1 - lr * wd
  double beta1, one_minus_beta1, beta2, one_minus_beta2;
  double bc2_sqrt;   // sqrt(1 - beta2^step)
  double eps;
  double neg_step_size;  // -lr / (1 - beta1^step)
};

/// What the `sinkhorn` primitive needs of ot::sinkhorn_options (the same
/// fields and meanings: rounds, kappa of Eq. 9, log-domain rounds, early-stop
/// tolerance on the prototype marginal).
struct sinkhorn_settings {
  int iterations = 3;
  double kappa = 0.05;
  bool log_domain = false;
  double tolerance = 0.0;
};

/// Outcome of a Sinkhorn kernel (kernels that run in a parallel region or on
/// the device report, the ot layer throws).
enum class sinkhorn_status : int { ok = 0, non_finite_scores = 1, out_of_range = 2 };

/// Declares the primary template of primitive NAME: a policy without a
/// specialisation fails to compile with a message naming the primitive and
/// the headers that specialise it.
#define PROTOSEG_PRIMITIVE(NAME)                                                          \
  template <class Policy>                                                                 \
  struct NAME {                                                                           \
    static_assert(::protoseg::detail::always_false<Policy>,                               \
                  "protoseg: primitive '" #NAME                                           \
                  "' has no specialisation for this policy. The cpu one is in "           \
                  "<protoseg/backend/cpu/" #NAME ".hpp> (included by every protoseg "     \
                  "header), the cuda one in <protoseg/backend/cuda/" #NAME ".cuh> "       \
                  "(include <protoseg/cuda.hpp>); a new policy specialises it in its "    \
                  "own backend folder.");                                                 \
  };

/// runs a per-item host/device body (backend/kernels/) over [0, n): an
/// OpenMP loop on cpu, thrust::for_each on cuda (Eigen's TensorExecutor).
PROTOSEG_PRIMITIVE(executor)
/// fill, iota, unary map, same-shape and broadcasting binary zip.
PROTOSEG_PRIMITIVE(elementwise)
/// reductions along one axis of an (outer, n, inner) view; argmax.
PROTOSEG_PRIMITIVE(reduction)
/// batched strided matrix products.
PROTOSEG_PRIMITIVE(gemm)
/// permutations and strided block copies (slice, concat).
PROTOSEG_PRIMITIVE(copy)
/// fused softmax / log-softmax along an axis and the cross-entropy gather.
PROTOSEG_PRIMITIVE(softmax)
/// im2col / col2im for convolution by GEMM, and the direct depthwise kernels.
PROTOSEG_PRIMITIVE(conv)
/// layer-norm forward/backward rows and batch-norm channel statistics.
PROTOSEG_PRIMITIVE(norm)
/// separable bilinear / nearest resize forward and (gather-form) backward.
PROTOSEG_PRIMITIVE(resize)
/// max pooling forward (with argmax indices) and backward.
PROTOSEG_PRIMITIVE(pool)
/// segmented Sinkhorn-Knopp: every class's clustering problem (supplementary
/// Algorithm 1) in one call.
PROTOSEG_PRIMITIVE(sinkhorn)
/// the ProtoSeg prototype step's kernels (grouping pixels by class, gathering
/// their own-class scores, hard assignment, the momentum update), the score
/// summary, PPD, nearest-label resizing and row normalisation.
PROTOSEG_PRIMITIVE(prototype)
/// optimiser updates on flat parameter arrays (AdamW).
PROTOSEG_PRIMITIVE(optim)

#undef PROTOSEG_PRIMITIVE

}  // namespace protoseg::backend
