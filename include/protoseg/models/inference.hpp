#pragma once
/// \file inference.hpp
/// Test-time inference of a `segmentation_model`, as mmsegmentation's
/// EncoderDecoder does it: whole-image or sliding-window prediction, and
/// multi-scale plus horizontal-flip testing. Class probabilities (softmax of
/// the logits, resized bilinearly to the image) are averaged over windows,
/// scales and flips; the predicted label is their argmax.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "protoseg/autograd/grad_mode.hpp"
#include "protoseg/error.hpp"
#include "protoseg/models/model.hpp"
#include "protoseg/nn/functional.hpp"
#include "protoseg/tensor/math.hpp"

namespace protoseg::models {

/// How `predict` runs the model over an image.
struct inference_options {
  /// "whole": the whole (rescaled) image at once; "slide": crops of
  /// crop_h x crop_w every stride_h / stride_w pixels (mmseg mode='slide').
  std::string mode = "whole";
  std::int64_t crop_h = 512, crop_w = 512;
  std::int64_t stride_h = 341, stride_w = 341;
  /// Image scales (ratios of the input size); several give multi-scale testing.
  std::vector<double> scales{1.0};
  /// Also run the horizontally flipped image and average.
  bool flip = false;
  /// align_corners of the resizes (mmsegmentation: false).
  bool align_corners = false;
};

namespace detail_infer {

template <class T>
tensor<T> flip_last(const tensor<T>& x) {
  auto y = tensor<T>(x.shape());
  const std::int64_t w = x.shape()[x.rank() - 1], rows = x.numel() / w;
  const T* s = x.data();
  T* d = y.data();
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < w; ++j) d[r * w + j] = s[r * w + (w - 1 - j)];
  return y;
}

template <class T, class P>
tensor<T, P> resize(const tensor<T, P>& x, std::int64_t h, std::int64_t w, bool align_corners) {
  if (x.shape()[2] == h && x.shape()[3] == w) return x;
  nn::interpolate_options io;
  io.align_corners = align_corners;
  return nn::functional::interpolate(variable<T, P>(x), h, w, io).value();
}

// Class logits of the model for one (1, 3, h, w) host input, at the input
// size, on the host (the model runs on its own policy).
template <class T, class P>
tensor<T> logits_at_input(segmentation_model<T, P>& m, const tensor<T>& x, bool align_corners) {
  auto out = m.forward(variable<T, P>(x.template to<P>()));
  return resize(out.logits.value(), x.shape()[2], x.shape()[3], align_corners).template to<cpu>();
}

// Probabilities (1, C, h, w) for one scaled image, whole or sliding window.
template <class T, class P>
tensor<T> probabilities(segmentation_model<T, P>& m, const tensor<T>& x, std::int64_t C, const inference_options& o) {
  const std::int64_t h = x.shape()[2], w = x.shape()[3];
  if (o.mode == "whole") return softmax(logits_at_input(m, x, o.align_corners), 1);
  // Sliding window: windows cover the image; overlapping votes are averaged
  // (mmseg's slide_inference, with windows clipped to the image).
  const std::int64_t ch = std::min(o.crop_h, h), cw = std::min(o.crop_w, w);
  const std::int64_t gh = std::max<std::int64_t>(h - ch + o.stride_h - 1, 0) / o.stride_h + 1;
  const std::int64_t gw = std::max<std::int64_t>(w - cw + o.stride_w - 1, 0) / o.stride_w + 1;
  tensor<T> sum = zeros<T>({1, C, h, w});
  std::vector<T> count(static_cast<std::size_t>(h * w), T(0));
  for (std::int64_t i = 0; i < gh; ++i)
    for (std::int64_t j = 0; j < gw; ++j) {
      const std::int64_t y1 = std::min(i * o.stride_h, h - ch), x1 = std::min(j * o.stride_w, w - cw);
      auto crop = slice(slice(x, 2, y1, y1 + ch), 3, x1, x1 + cw);
      auto p = softmax(logits_at_input(m, crop, o.align_corners), 1);
      T* s = sum.data();
      const T* q = p.data();
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t yy = 0; yy < ch; ++yy)
          for (std::int64_t xx = 0; xx < cw; ++xx) s[(c * h + y1 + yy) * w + x1 + xx] += q[(c * ch + yy) * cw + xx];
      for (std::int64_t yy = 0; yy < ch; ++yy)
        for (std::int64_t xx = 0; xx < cw; ++xx) count[static_cast<std::size_t>((y1 + yy) * w + x1 + xx)] += T(1);
    }
  T* s = sum.data();
  for (std::int64_t c = 0; c < C; ++c)
    for (std::int64_t k = 0; k < h * w; ++k) s[c * h * w + k] /= count[static_cast<std::size_t>(k)];
  return sum;
}

}  // namespace detail_infer

/// Class probabilities (1, C, H, W) of a normalised image (1, 3, H, W),
/// averaged over the scales and flips of `opt`. Runs without gradients and
/// in eval mode (the model's mode is restored afterwards). The image and the
/// result are on the host; the model runs on its own policy (cpu or cuda).
template <class T, class P>
tensor<T> predict_probabilities(segmentation_model<T, P>& m, const tensor<T>& image, const inference_options& opt = {}) {
  image.require_defined("predict");
  if (image.rank() != 4 || image.shape()[0] != 1 || image.shape()[1] != m.options().in_channels)
    detail::fail<shape_error>("predict: image must be (1, ", m.options().in_channels, ", H, W), got ", image.shape());
  if (opt.mode != "whole" && opt.mode != "slide")
    detail::fail<value_error>("predict: mode is '", opt.mode, "', expected whole or slide");
  if (opt.mode == "slide" && (opt.crop_h < 1 || opt.crop_w < 1 || opt.stride_h < 1 || opt.stride_w < 1))
    detail::fail<value_error>("predict: sliding window crop (", opt.crop_h, ", ", opt.crop_w, ") and stride (",
                              opt.stride_h, ", ", opt.stride_w, ") must be positive");
  if (opt.scales.empty()) detail::fail<value_error>("predict: scales is empty");
  for (double s : opt.scales)
    if (!(s > 0) || !std::isfinite(s)) detail::fail<value_error>("predict: scale ", s, " must be positive");
  const std::int64_t H = image.shape()[2], W = image.shape()[3], C = m.options().num_classes;
  const bool was_training = m.is_training();
  m.eval();
  no_grad guard;
  tensor<T> total = zeros<T>({1, C, H, W});
  int runs = 0;
  for (double s : opt.scales) {
    const auto h = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::llround(H * s)));
    const auto w = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::llround(W * s)));
    const auto x = detail_infer::resize(image, h, w, opt.align_corners);
    for (int f = 0; f < (opt.flip ? 2 : 1); ++f) {
      auto p = detail_infer::probabilities(m, f ? detail_infer::flip_last(x) : x, C, opt);
      if (f) p = detail_infer::flip_last(p);
      total = total + detail_infer::resize(p, H, W, opt.align_corners);
      ++runs;
    }
  }
  m.train(was_training);
  return total * static_cast<T>(1.0 / runs);
}

/// Predicted labels (H, W) int64: the argmax over classes of
/// `predict_probabilities`.
template <class T, class P>
tensor<std::int64_t> predict(segmentation_model<T, P>& m, const tensor<T>& image, const inference_options& opt = {}) {
  const auto p = predict_probabilities(m, image, opt);
  const std::int64_t C = p.shape()[1], H = p.shape()[2], W = p.shape()[3];
  tensor<std::int64_t> out({H, W});
  const T* q = p.data();
  std::int64_t* o = out.data();
  for (std::int64_t k = 0; k < H * W; ++k) {
    std::int64_t best = 0;
    for (std::int64_t c = 1; c < C; ++c)
      if (q[c * H * W + k] > q[best * H * W + k]) best = c;
    o[k] = best;
  }
  return out;
}

}  // namespace protoseg::models
