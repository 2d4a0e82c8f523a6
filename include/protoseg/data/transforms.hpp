#pragma once
/// \file transforms.hpp
/// mmsegmentation's training pipeline on `sample`s: random resize with a
/// ratio range (keep ratio), random crop with a category-ratio limit,
/// horizontal flip, photometric distortion, padding, and normalisation to a
/// float (3, H, W) tensor. Randomness comes from an explicit `generator&`, so a
/// transform's result depends on the generator's state only. Every transform
/// returns new tensors and leaves its input untouched. See docs/pipeline.md.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/data/dataset.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/random.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::data {

/// ImageNet mean, RGB, in 0..255 units (mmsegmentation's img_norm_cfg).
inline constexpr std::array<float, 3> imagenet_mean{123.675f, 116.28f, 103.53f};
/// ImageNet standard deviation, RGB, in 0..255 units.
inline constexpr std::array<float, 3> imagenet_std{58.395f, 57.12f, 57.375f};

/// Throws `value_error` naming `who` unless the image is (H, W, 3) uint8 and
/// the label (H, W) with the same H, W (H, W >= 1).
inline void check_sample(const sample& s, const char* who) {
  if (!s.image.defined() || s.image.rank() != 3 || s.image.size(2) != 3)
    detail::fail<value_error>(who, ": sample '", s.name, "': image has shape ",
                              s.image.defined() ? s.image.shape() : shape{}, ", expected (H, W, 3)");
  if (!s.label.defined() || s.label.rank() != 2)
    detail::fail<value_error>(who, ": sample '", s.name, "': label has shape ",
                              s.label.defined() ? s.label.shape() : shape{}, ", expected (H, W)");
  if (s.image.size(0) != s.label.size(0) || s.image.size(1) != s.label.size(1))
    detail::fail<value_error>(who, ": sample '", s.name, "': image is ", s.image.size(0), "x", s.image.size(1),
                              " (HxW) but label is ", s.label.size(0), "x", s.label.size(1));
  if (s.image.size(0) < 1 || s.image.size(1) < 1)
    detail::fail<value_error>(who, ": sample '", s.name, "' is empty (", s.image.size(0), "x", s.image.size(1), ")");
}

/// Bilinear resize of a uint8 (H, W, C) image to (h, w, C), with OpenCV's
/// INTER_LINEAR geometry (pixel centres at +0.5, edges clamped), rounded.
inline tensor<std::uint8_t> resize_bilinear(const tensor<std::uint8_t>& image, std::int64_t h, std::int64_t w) {
  if (!image.defined() || image.rank() != 3)
    detail::fail<value_error>("resize_bilinear: image must be (H, W, C), got shape ",
                              image.defined() ? image.shape() : shape{});
  if (h < 1 || w < 1) detail::fail<value_error>("resize_bilinear: target size ", h, "x", w, " must be >= 1x1");
  const std::int64_t H = image.size(0), W = image.size(1), C = image.size(2);
  auto out = tensor<std::uint8_t>::empty(shape({h, w, C}));
  struct tap {
    std::int64_t i0, i1;
    float f;
  };
  auto taps = [](std::int64_t in, std::int64_t n) {
    std::vector<tap> t(static_cast<std::size_t>(n));
    const double scale = static_cast<double>(in) / static_cast<double>(n);
    for (std::int64_t d = 0; d < n; ++d) {
      double fx = (static_cast<double>(d) + 0.5) * scale - 0.5;
      auto s = static_cast<std::int64_t>(std::floor(fx));
      fx -= static_cast<double>(s);
      if (s < 0) s = 0, fx = 0;
      if (s >= in - 1) s = in - 1, fx = 0;
      t[static_cast<std::size_t>(d)] = {s, std::min(s + 1, in - 1), static_cast<float>(fx)};
    }
    return t;
  };
  const auto ty = taps(H, h), tx = taps(W, w);
  const std::uint8_t* src = image.data();
  std::uint8_t* dst = out.data();
  for (std::int64_t y = 0; y < h; ++y) {
    const tap& a = ty[static_cast<std::size_t>(y)];
    const std::uint8_t* r0 = src + a.i0 * W * C;
    const std::uint8_t* r1 = src + a.i1 * W * C;
    for (std::int64_t x = 0; x < w; ++x) {
      const tap& b = tx[static_cast<std::size_t>(x)];
      for (std::int64_t c = 0; c < C; ++c) {
        const float top = float(r0[b.i0 * C + c]) * (1 - b.f) + float(r0[b.i1 * C + c]) * b.f;
        const float bot = float(r1[b.i0 * C + c]) * (1 - b.f) + float(r1[b.i1 * C + c]) * b.f;
        const float v = top * (1 - a.f) + bot * a.f;
        dst[(y * w + x) * C + c] = static_cast<std::uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f));
      }
    }
  }
  return out;
}

/// Nearest-neighbour resize of a uint8 (H, W) label map to (h, w), OpenCV's
/// INTER_NEAREST: source index floor(d * H / h).
inline tensor<std::uint8_t> resize_nearest(const tensor<std::uint8_t>& label, std::int64_t h, std::int64_t w) {
  if (!label.defined() || label.rank() != 2)
    detail::fail<value_error>("resize_nearest: label must be (H, W), got shape ",
                              label.defined() ? label.shape() : shape{});
  if (h < 1 || w < 1) detail::fail<value_error>("resize_nearest: target size ", h, "x", w, " must be >= 1x1");
  const std::int64_t H = label.size(0), W = label.size(1);
  auto out = tensor<std::uint8_t>::empty(shape({h, w}));
  std::vector<std::int64_t> xs(static_cast<std::size_t>(w));
  for (std::int64_t x = 0; x < w; ++x)
    xs[static_cast<std::size_t>(x)] =
        std::min(W - 1, static_cast<std::int64_t>(std::floor(double(x) * double(W) / double(w))));
  const std::uint8_t* src = label.data();
  std::uint8_t* dst = out.data();
  for (std::int64_t y = 0; y < h; ++y) {
    const std::int64_t sy = std::min(H - 1, static_cast<std::int64_t>(std::floor(double(y) * double(H) / double(h))));
    for (std::int64_t x = 0; x < w; ++x) dst[y * w + x] = src[sy * W + xs[static_cast<std::size_t>(x)]];
  }
  return out;
}

/// Resizes a sample to h x w: bilinear for the image, nearest for the label.
inline sample resize(const sample& s, std::int64_t h, std::int64_t w) {
  check_sample(s, "resize");
  return sample{resize_bilinear(s.image, h, w), resize_nearest(s.label, h, w), s.name};
}

/// mmcv's `rescale_size` with a (W, H) scale: the size {h, w} that fits an
/// h x w image into the scale keeping its aspect ratio (long edge <= max(scale),
/// short edge <= min(scale)), factor = min(max(scale) / max(h, w),
/// min(scale) / min(h, w)), each side int(side * factor + 0.5).
inline std::array<std::int64_t, 2> rescale_size(std::int64_t h, std::int64_t w, std::array<std::int64_t, 2> scale) {
  if (h < 1 || w < 1) detail::fail<value_error>("rescale_size: image size ", h, "x", w, " must be >= 1x1");
  if (scale[0] < 1 || scale[1] < 1)
    detail::fail<value_error>("rescale_size: scale (W, H) = (", scale[0], ", ", scale[1], ") must be >= 1");
  const double long_edge = double(std::max(scale[0], scale[1])), short_edge = double(std::min(scale[0], scale[1]));
  const double f = std::min(long_edge / double(std::max(h, w)), short_edge / double(std::min(h, w)));
  return {std::max<std::int64_t>(1, static_cast<std::int64_t>(double(h) * f + 0.5)),
          std::max<std::int64_t>(1, static_cast<std::int64_t>(double(w) * f + 0.5))};
}

/// mmseg `Resize(img_scale=scale, ratio_range=ratio_range, keep_ratio=True)`:
/// ratio uniform in [ratio_range[0], ratio_range[1]), target scale
/// (int(W * ratio), int(H * ratio)) with `scale` = (W, H), then the image is
/// rescaled to fit it keeping its aspect ratio (`rescale_size`); bilinear for
/// the image, nearest for the label.
inline sample random_resize(const sample& s, generator& gen, std::array<std::int64_t, 2> scale,
                            std::array<double, 2> ratio_range) {
  check_sample(s, "random_resize");
  if (scale[0] < 1 || scale[1] < 1)
    detail::fail<value_error>("random_resize: scale (W, H) = (", scale[0], ", ", scale[1], ") must be >= 1");
  if (!(ratio_range[0] > 0) || !std::isfinite(ratio_range[1]))
    detail::fail<value_error>("random_resize: ratio_range = (", ratio_range[0], ", ", ratio_range[1],
                              "), expected 0 < min <= max");
  if (ratio_range[0] > ratio_range[1])
    detail::fail<value_error>("random_resize: ratio_range min ", ratio_range[0], " > max ", ratio_range[1]);
  const double ratio = gen.uniform() * (ratio_range[1] - ratio_range[0]) + ratio_range[0];
  const std::array<std::int64_t, 2> target{std::max<std::int64_t>(1, static_cast<std::int64_t>(double(scale[0]) * ratio)),
                                           std::max<std::int64_t>(1, static_cast<std::int64_t>(double(scale[1]) * ratio))};
  const auto hw = rescale_size(s.image.size(0), s.image.size(1), target);
  return resize(s, hw[0], hw[1]);
}

/// The region [y0, y0 + h) x [x0, x0 + w) of a sample (copied); the region
/// must lie inside the sample.
inline sample crop(const sample& s, std::int64_t y0, std::int64_t x0, std::int64_t h, std::int64_t w) {
  check_sample(s, "crop");
  const std::int64_t H = s.image.size(0), W = s.image.size(1);
  if (h < 1 || w < 1 || y0 < 0 || x0 < 0 || y0 + h > H || x0 + w > W)
    detail::fail<value_error>("crop: region y0 ", y0, ", x0 ", x0, ", ", h, "x", w, " is not inside the ", H, "x", W,
                              " sample '", s.name, "'");
  auto image = tensor<std::uint8_t>::empty(shape({h, w, 3}));
  auto label = tensor<std::uint8_t>::empty(shape({h, w}));
  for (std::int64_t y = 0; y < h; ++y) {
    std::copy_n(s.image.data() + ((y0 + y) * W + x0) * 3, w * 3, image.data() + y * w * 3);
    std::copy_n(s.label.data() + (y0 + y) * W + x0, w, label.data() + y * w);
  }
  return sample{image, label, s.name};
}

/// mmseg `RandomCrop(crop_size=(crop_h, crop_w), cat_max_ratio)`: a uniform
/// crop offset in [0, max(H - crop_h, 0)] x [0, max(W - crop_w, 0)], the crop
/// clipped to the image (a smaller image keeps its size along that side).
/// With cat_max_ratio < 1, up to 10 new offsets are drawn while the crop does
/// not hold at least two classes with the most frequent one under
/// cat_max_ratio of the non-ignored pixels; the last one drawn is kept.
inline sample random_crop(const sample& s, generator& gen, std::int64_t crop_h, std::int64_t crop_w,
                          double cat_max_ratio = 1.0) {
  check_sample(s, "random_crop");
  if (crop_h < 1 || crop_w < 1)
    detail::fail<value_error>("random_crop: crop size ", crop_h, "x", crop_w, " (HxW) must be >= 1x1");
  if (!(cat_max_ratio > 0 && cat_max_ratio <= 1))
    detail::fail<value_error>("random_crop: cat_max_ratio is ", cat_max_ratio, ", expected in (0, 1]");
  const std::int64_t H = s.image.size(0), W = s.image.size(1);
  const std::int64_t h = std::min(H, crop_h), w = std::min(W, crop_w);
  auto draw = [&] {
    const auto y0 = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(H - h + 1)));
    const auto x0 = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(W - w + 1)));
    return std::array<std::int64_t, 2>{y0, x0};
  };
  auto box = draw();
  if (cat_max_ratio < 1.0) {
    std::array<std::int64_t, 256> count{};
    for (int attempt = 0; attempt < 10; ++attempt) {
      count.fill(0);
      for (std::int64_t y = 0; y < h; ++y) {
        const std::uint8_t* row = s.label.data() + (box[0] + y) * W + box[1];
        for (std::int64_t x = 0; x < w; ++x) ++count[row[x]];
      }
      count[ignore_label] = 0;
      std::int64_t classes = 0, total = 0, most = 0;
      for (auto c : count) {
        classes += c > 0;
        total += c;
        most = std::max(most, c);
      }
      if (classes > 1 && double(most) / double(total) < cat_max_ratio) break;
      box = draw();
    }
  }
  return crop(s, box[0], box[1], h, w);
}

/// The sample mirrored left-right.
inline sample hflip(const sample& s) {
  check_sample(s, "hflip");
  const std::int64_t H = s.image.size(0), W = s.image.size(1);
  auto image = tensor<std::uint8_t>::empty(s.image.shape());
  auto label = tensor<std::uint8_t>::empty(s.label.shape());
  for (std::int64_t y = 0; y < H; ++y)
    for (std::int64_t x = 0; x < W; ++x) {
      const std::int64_t from = y * W + (W - 1 - x), to = y * W + x;
      for (int c = 0; c < 3; ++c) image.data()[to * 3 + c] = s.image.data()[from * 3 + c];
      label.data()[to] = s.label.data()[from];
    }
  return sample{image, label, s.name};
}

/// mmseg `RandomFlip(prob=p, direction='horizontal')`: mirrored when a uniform
/// draw is < p, else an unchanged copy.
inline sample random_flip(const sample& s, generator& gen, double p = 0.5) {
  check_sample(s, "random_flip");
  if (!(p >= 0 && p <= 1)) detail::fail<value_error>("random_flip: p is ", p, ", expected in [0, 1]");
  if (gen.uniform() < p) return hflip(s);
  return sample{s.image.clone(), s.label.clone(), s.name};
}

/// Settings of `photometric_distortion` (mmseg's defaults).
struct photometric_options {
  double brightness_delta = 32;                     ///< beta uniform in [-delta, delta)
  std::array<double, 2> contrast_range{0.5, 1.5};   ///< alpha for all channels
  std::array<double, 2> saturation_range{0.5, 1.5}; ///< alpha for S (OpenCV 8-bit HSV)
  int hue_delta = 18;                               ///< H shift in [-delta, delta), H in [0, 180)
};

}  // namespace protoseg::data

// Helpers live in protoseg::detail: a protoseg::data::detail would hide
// protoseg::detail::fail from the data headers included after this one.
namespace protoseg::detail {

/// mmseg `convert`: float(v) * alpha + beta, clipped to [0, 255], truncated.
inline std::uint8_t photometric_convert(std::uint8_t v, double alpha, double beta) {
  const float f = std::clamp(static_cast<float>(v) * static_cast<float>(alpha) + static_cast<float>(beta), 0.0f,
                             255.0f);
  return static_cast<std::uint8_t>(f);
}

/// OpenCV 8-bit RGB -> HSV: H in [0, 180) (degrees / 2), S and V in [0, 255].
inline void rgb_to_hsv8(const std::uint8_t* rgb, std::uint8_t* hsv) {
  const int r = rgb[0], g = rgb[1], b = rgb[2];
  const int v = std::max({r, g, b}), mn = std::min({r, g, b}), diff = v - mn;
  const int s = v == 0 ? 0 : static_cast<int>(std::lround(diff * 255.0 / v));
  double h = 0;
  if (diff != 0) {
    if (v == r)
      h = 60.0 * (g - b) / diff;
    else if (v == g)
      h = 120.0 + 60.0 * (b - r) / diff;
    else
      h = 240.0 + 60.0 * (r - g) / diff;
    if (h < 0) h += 360.0;
  }
  int hh = static_cast<int>(std::lround(h / 2.0));
  if (hh >= 180) hh -= 180;
  hsv[0] = static_cast<std::uint8_t>(hh);
  hsv[1] = static_cast<std::uint8_t>(s);
  hsv[2] = static_cast<std::uint8_t>(v);
}

/// OpenCV 8-bit HSV -> RGB (the inverse of rgb_to_hsv8 up to rounding).
inline void hsv8_to_rgb(const std::uint8_t* hsv, std::uint8_t* rgb) {
  const double s = hsv[1] / 255.0, v = hsv[2] / 255.0;
  double h = hsv[0] * 2.0 / 60.0;  // sector in [0, 6)
  if (h >= 6.0) h -= 6.0;
  const int i = static_cast<int>(std::floor(h));
  const double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (i) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
  rgb[0] = static_cast<std::uint8_t>(std::clamp(std::lround(r * 255.0), 0L, 255L));
  rgb[1] = static_cast<std::uint8_t>(std::clamp(std::lround(g * 255.0), 0L, 255L));
  rgb[2] = static_cast<std::uint8_t>(std::clamp(std::lround(b * 255.0), 0L, 255L));
}

}  // namespace protoseg::detail

namespace protoseg::data {

/// mmseg `PhotoMetricDistortion`, in its order: brightness; a coin for the
/// mode; contrast here when mode is 1; saturation; hue; contrast here when
/// mode is 0. Each of the four steps happens with probability 1/2, and each
/// rounds down to uint8 as mmseg does. The label is copied unchanged.
inline sample photometric_distortion(const sample& s, generator& gen, const photometric_options& o = {}) {
  check_sample(s, "photometric_distortion");
  if (!(o.brightness_delta >= 0) || !(o.contrast_range[0] >= 0 && o.contrast_range[0] <= o.contrast_range[1]) ||
      !(o.saturation_range[0] >= 0 && o.saturation_range[0] <= o.saturation_range[1]) || o.hue_delta < 0 ||
      o.hue_delta > 180)
    detail::fail<value_error>("photometric_distortion: invalid options: brightness_delta ", o.brightness_delta,
                              ", contrast_range (", o.contrast_range[0], ", ", o.contrast_range[1],
                              "), saturation_range (", o.saturation_range[0], ", ", o.saturation_range[1],
                              "), hue_delta ", o.hue_delta, "; expected deltas >= 0 (hue <= 180) and ranges 0 <= lo <= hi");
  auto image = s.image.clone();
  std::uint8_t* p = image.data();
  const std::int64_t n = image.numel() / 3;
  auto coin = [&] { return gen.below(2) == 1; };
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * gen.uniform(); };
  auto affine = [&](double alpha, double beta) {
    for (std::int64_t i = 0; i < n * 3; ++i) p[i] = detail::photometric_convert(p[i], alpha, beta);
  };
  auto contrast = [&] {
    if (coin()) affine(uniform(o.contrast_range[0], o.contrast_range[1]), 0.0);
  };
  if (coin()) affine(1.0, uniform(-o.brightness_delta, o.brightness_delta));
  const bool contrast_first = coin();
  if (contrast_first) contrast();
  if (coin()) {
    const double alpha = uniform(o.saturation_range[0], o.saturation_range[1]);
    for (std::int64_t i = 0; i < n; ++i) {
      std::uint8_t hsv[3];
      detail::rgb_to_hsv8(p + i * 3, hsv);
      hsv[1] = detail::photometric_convert(hsv[1], alpha, 0.0);
      detail::hsv8_to_rgb(hsv, p + i * 3);
    }
  }
  if (coin()) {
    const int shift = static_cast<int>(gen.below(static_cast<std::uint64_t>(2 * o.hue_delta))) - o.hue_delta;
    for (std::int64_t i = 0; i < n; ++i) {
      std::uint8_t hsv[3];
      detail::rgb_to_hsv8(p + i * 3, hsv);
      hsv[0] = static_cast<std::uint8_t>(((hsv[0] + shift) % 180 + 180) % 180);
      detail::hsv8_to_rgb(hsv, p + i * 3);
    }
  }
  if (!contrast_first) contrast();
  return sample{image, s.label.clone(), s.name};
}

/// Pads a sample at the bottom and right to at least h x w (mmseg `Pad` with
/// size = crop size): image with 0, label with `ignore_label`.
inline sample pad(const sample& s, std::int64_t h, std::int64_t w) {
  check_sample(s, "pad");
  if (h < 0 || w < 0) detail::fail<value_error>("pad: size ", h, "x", w, " (HxW) must be >= 0");
  const std::int64_t H = s.image.size(0), W = s.image.size(1);
  const std::int64_t oh = std::max(H, h), ow = std::max(W, w);
  auto image = tensor<std::uint8_t>(shape({oh, ow, 3}));
  auto label = tensor<std::uint8_t>::empty(shape({oh, ow}));
  std::fill(label.data(), label.data() + label.numel(), ignore_label);
  for (std::int64_t y = 0; y < H; ++y) {
    std::copy_n(s.image.data() + y * W * 3, W * 3, image.data() + y * ow * 3);
    std::copy_n(s.label.data() + y * W, W, label.data() + y * ow);
  }
  return sample{image, label, s.name};
}

/// (image - mean) / std per channel, as float (3, H, W) from a uint8
/// (H, W, 3) image; mean and std in 0..255 units, std > 0.
inline tensor<float> normalize(const tensor<std::uint8_t>& image, const std::array<float, 3>& mean = imagenet_mean,
                               const std::array<float, 3>& std = imagenet_std) {
  if (!image.defined() || image.rank() != 3 || image.size(2) != 3)
    detail::fail<value_error>("normalize: image has shape ", image.defined() ? image.shape() : shape{},
                              ", expected (H, W, 3)");
  for (int c = 0; c < 3; ++c)
    if (!(std[static_cast<std::size_t>(c)] > 0) || !std::isfinite(std[static_cast<std::size_t>(c)]) ||
        !std::isfinite(mean[static_cast<std::size_t>(c)]))
      detail::fail<value_error>("normalize: channel ", c, " has mean ", mean[static_cast<std::size_t>(c)], " and std ",
                                std[static_cast<std::size_t>(c)], ", expected finite values and std > 0");
  const std::int64_t H = image.size(0), W = image.size(1), n = H * W;
  auto out = tensor<float>::empty(shape({3, H, W}));
  const std::uint8_t* src = image.data();
  float* dst = out.data();
  for (int c = 0; c < 3; ++c) {
    const float m = mean[static_cast<std::size_t>(c)], inv = 1.0f / std[static_cast<std::size_t>(c)];
    float* d = dst + c * n;
    for (std::int64_t i = 0; i < n; ++i) d[i] = (static_cast<float>(src[i * 3 + c]) - m) * inv;
  }
  return out;
}

/// The training pipeline of mmsegmentation's configs (ADE20K / Cityscapes):
/// Resize(scale, ratio_range) -> RandomCrop(crop, cat_max_ratio) ->
/// RandomFlip(0.5) -> PhotoMetricDistortion -> Pad(crop). `mean`/`std` are
/// the Normalize step, which the batch loader applies when it stacks a batch
/// (`batch_loader_options::mean/std`; `make_train_loader` copies them).
struct train_pipeline_options {
  bool resize = true;                                 ///< random_resize first
  std::array<std::int64_t, 2> scale{2048, 512};       ///< (W, H) base scale
  std::array<double, 2> ratio_range{0.5, 2.0};        ///< scale ratio range
  std::int64_t crop_h = 512, crop_w = 512;            ///< crop, and pad target
  double cat_max_ratio = 0.75;                        ///< 1 disables the check
  bool flip = true;                                   ///< random horizontal flip, p = flip_prob
  double flip_prob = 0.5;                             ///< flip probability
  bool photometric = true;                            ///< photometric distortion
  photometric_options photometric_settings = {};      ///< its settings
  std::array<float, 3> mean = imagenet_mean;          ///< normalisation mean (0..255)
  std::array<float, 3> std = imagenet_std;            ///< normalisation std (0..255)
};

/// Runs the training pipeline on one sample; the result is exactly
/// crop_h x crop_w (uint8, not yet normalised).
inline sample apply_train_pipeline(const sample& s, generator& gen, const train_pipeline_options& o) {
  check_sample(s, "apply_train_pipeline");
  if (o.crop_h < 1 || o.crop_w < 1)
    detail::fail<value_error>("train_pipeline_options: crop ", o.crop_h, "x", o.crop_w, " (HxW) must be >= 1x1");
  sample out = o.resize ? random_resize(s, gen, o.scale, o.ratio_range) : s;
  out = random_crop(out, gen, o.crop_h, o.crop_w, o.cat_max_ratio);
  if (o.flip) out = random_flip(out, gen, o.flip_prob);
  if (o.photometric) out = photometric_distortion(out, gen, o.photometric_settings);
  return pad(out, o.crop_h, o.crop_w);
}

/// The evaluation pipeline: normalisation only (the image keeps its size).
struct eval_pipeline_options {
  std::array<float, 3> mean = imagenet_mean;  ///< normalisation mean (0..255)
  std::array<float, 3> std = imagenet_std;    ///< normalisation std (0..255)
};

/// The normalised (3, H, W) image of a sample for evaluation.
inline tensor<float> apply_eval_pipeline(const sample& s, const eval_pipeline_options& o = {}) {
  check_sample(s, "apply_eval_pipeline");
  return normalize(s.image, o.mean, o.std);
}

}  // namespace protoseg::data
