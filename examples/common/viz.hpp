#pragma once
/// \file viz.hpp
/// Pictures for the example programs (protoseg-train, -eval, -infer): class
/// palettes, label colouring, text and shapes on RGB images, a prediction grid
/// (image | ground truth | prediction | errors), line plots of training
/// curves, PCA and exact t-SNE, and the embedding scatter of the paper's
/// Fig. S1 (pixel embeddings coloured by class, prototypes as diamonds).
///
/// Images are `protoseg::tensor<std::uint8_t>` of shape (H, W, 3), RGB, row
/// major; label maps are (H, W) with 255 meaning "ignore". Text is drawn with
/// stb_easy_font (Debian `libstb-dev`). Everything here is host code and
/// header-only; the functions check their inputs and throw `shape_error` /
/// `value_error` with a message that names the argument.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Dense>

#include <protoseg/data/dataset_info.hpp>

#include <protoseg/error.hpp>
#include <protoseg/tensor/random.hpp>
#include <protoseg/tensor/tensor.hpp>

// stb_easy_font is a set of `static` functions; its warnings are not ours.
#if !defined(INCLUDE_STB_EASY_FONT_H)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

namespace protoseg::viz {

/// An RGB colour.
using color = protoseg::data::rgb_color;  // std::array<std::uint8_t, 3>
/// One colour per class id.
using palette = std::vector<color>;
/// An (H, W, 3) RGB image.
using image = tensor<std::uint8_t>;

inline constexpr color white{255, 255, 255};
inline constexpr color black{0, 0, 0};
inline constexpr color ink{30, 30, 30};          ///< text
inline constexpr color soft_ink{95, 95, 95};     ///< secondary text
inline constexpr color frame_grey{150, 150, 150};
inline constexpr color grid_grey{232, 232, 232};
inline constexpr color error_red{225, 25, 25};

// ---- palettes ------------------------------------------------------------------

namespace detail {

/// HSV (h in degrees, s and v in [0, 1]) to RGB.
inline color hsv(double h, double s, double v) {
  h = std::fmod(std::fmod(h, 360.0) + 360.0, 360.0) / 60.0;
  const int i = static_cast<int>(h) % 6;
  const double f = h - std::floor(h);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (i) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
  auto u8 = [](double x) { return static_cast<std::uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255.0)); };
  return {u8(r), u8(g), u8(b)};
}

}  // namespace detail

/// A palette for `num_classes` classes: class 0 (background) dark grey, the
/// others evenly spaced hues with alternating brightness so that neighbours
/// differ (up to 12 classes after the background), beyond that golden-angle
/// hues cycling through three brightness levels. Deterministic.
inline palette make_palette(std::int64_t num_classes) {
  if (num_classes < 1 || num_classes > 4096)
    protoseg::detail::fail<value_error>("make_palette: num_classes must be in 1..4096, got ", num_classes);
  palette p(static_cast<std::size_t>(num_classes));
  p[0] = {68, 68, 68};
  const std::int64_t k = num_classes - 1;
  for (std::int64_t i = 1; i < num_classes; ++i) {
    const auto j = static_cast<double>(i - 1);
    if (k <= 12) {
      // Start at red, skip the muddy yellow-green band by a slight warp.
      const double h = 360.0 * j / static_cast<double>(k);
      p[static_cast<std::size_t>(i)] = detail::hsv(h, (i % 2) ? 0.80 : 0.70, (i % 2) ? 0.95 : 0.72);
    } else {
      const double h = std::fmod(j * 137.50776405, 360.0);
      static constexpr double vs[3] = {0.95, 0.72, 0.55};
      static constexpr double ss[3] = {0.75, 0.85, 0.65};
      const auto c = static_cast<std::size_t>(i - 1) % 3;
      p[static_cast<std::size_t>(i)] = detail::hsv(h, ss[c], vs[c]);
    }
  }
  return p;
}

/// The 19 Cityscapes train-id colours (data::cityscapes_palette_rgb).
inline palette cityscapes_palette() { return protoseg::data::palette_from(protoseg::data::cityscapes_palette_rgb); }

/// The 19 Cityscapes train-id class names (data::cityscapes_classes).
inline std::vector<std::string> cityscapes_class_names() {
  return {protoseg::data::cityscapes_classes.begin(), protoseg::data::cityscapes_classes.end()};
}

/// The 150 ADE20K colours by train id (data::ade20k_palette_rgb).
inline palette ade20k_palette() { return protoseg::data::palette_from(protoseg::data::ade20k_palette_rgb); }

/// The 150 ADE20K class names by train id (data::ade20k_classes).
inline std::vector<std::string> ade20k_class_names() {
  return {protoseg::data::ade20k_classes.begin(), protoseg::data::ade20k_classes.end()};
}

/// The palette pictures of a data set use: its published one when it has
/// one for all of its `num_classes` classes, else make_palette.
inline palette palette_for(const palette& published, std::int64_t num_classes) {
  if (static_cast<std::int64_t>(published.size()) == num_classes) return published;
  return make_palette(num_classes);
}

// ---- images --------------------------------------------------------------------

namespace detail {

inline void require_rgb(const image& img, const char* fn, const char* arg) {
  img.require_defined(fn);
  if (img.rank() != 3 || img.size(2) != 3 || img.size(0) < 1 || img.size(1) < 1)
    protoseg::detail::fail<shape_error>(fn, ": ", arg, " has shape ", img.shape(),
                                        ", expected an RGB image (H, W, 3) with H, W >= 1");
}

inline void require_label(const image& lbl, const char* fn, const char* arg) {
  lbl.require_defined(fn);
  if (lbl.rank() != 2 || lbl.size(0) < 1 || lbl.size(1) < 1)
    protoseg::detail::fail<shape_error>(fn, ": ", arg, " has shape ", lbl.shape(),
                                        ", expected a label map (H, W) with H, W >= 1");
}

inline int width_of(const image& img) { return static_cast<int>(img.size(1)); }
inline int height_of(const image& img) { return static_cast<int>(img.size(0)); }

inline std::uint8_t mix(std::uint8_t a, std::uint8_t b, double t) {
  return static_cast<std::uint8_t>(std::lround(a + (double(b) - double(a)) * t));
}

}  // namespace detail

/// A `width` x `height` image filled with `background`.
inline image blank(int width, int height, color background = white) {
  if (width < 1 || height < 1)
    protoseg::detail::fail<value_error>("blank: width and height must be >= 1, got ", width, " x ", height);
  auto img = image::empty({height, width, 3});
  std::uint8_t* p = img.data();
  for (std::int64_t i = 0, n = std::int64_t(width) * height; i < n; ++i, p += 3)
    p[0] = background[0], p[1] = background[1], p[2] = background[2];
  return img;
}

/// Sets pixel (x, y); outside the image nothing happens.
inline void put_pixel(image& img, int x, int y, color c) {
  if (x < 0 || y < 0 || x >= detail::width_of(img) || y >= detail::height_of(img)) return;
  std::uint8_t* p = img.data() + (std::int64_t(y) * img.size(1) + x) * 3;
  p[0] = c[0], p[1] = c[1], p[2] = c[2];
}

/// The colour of pixel (x, y), which must lie inside the image.
inline color get_pixel(const image& img, int x, int y) {
  if (x < 0 || y < 0 || x >= detail::width_of(img) || y >= detail::height_of(img))
    protoseg::detail::fail<value_error>("get_pixel: (", x, ", ", y, ") is outside the ", img.size(1), "x",
                                        img.size(0), " image");
  const std::uint8_t* p = img.data() + (std::int64_t(y) * img.size(1) + x) * 3;
  return {p[0], p[1], p[2]};
}

/// Fills the rectangle with top-left corner (x, y), `w` wide and `h` tall,
/// clipped to the image.
inline void fill_rect(image& img, int x, int y, int w, int h, color c) {
  const int x0 = std::max(0, x), y0 = std::max(0, y);
  const int x1 = std::min(detail::width_of(img), x + w), y1 = std::min(detail::height_of(img), y + h);
  for (int yy = y0; yy < y1; ++yy) {
    std::uint8_t* p = img.data() + (std::int64_t(yy) * img.size(1) + x0) * 3;
    for (int xx = x0; xx < x1; ++xx, p += 3) p[0] = c[0], p[1] = c[1], p[2] = c[2];
  }
}

/// The outline of a rectangle, `thickness` pixels wide, inside (x, y, w, h).
inline void draw_rect(image& img, int x, int y, int w, int h, color c, int thickness = 1) {
  fill_rect(img, x, y, w, thickness, c);
  fill_rect(img, x, y + h - thickness, w, thickness, c);
  fill_rect(img, x, y, thickness, h, c);
  fill_rect(img, x + w - thickness, y, thickness, h, c);
}

/// A straight line from (x0, y0) to (x1, y1) (Bresenham), `thickness` pixels
/// wide (a square brush); clipped to the image.
inline void draw_line(image& img, int x0, int y0, int x1, int y1, color c, int thickness = 1) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  const int lo = -(thickness - 1) / 2;
  // Lines far outside the image: nothing to draw, and no endless walk.
  const int w = detail::width_of(img), h = detail::height_of(img);
  if ((x0 < -thickness && x1 < -thickness) || (y0 < -thickness && y1 < -thickness) ||
      (x0 >= w + thickness && x1 >= w + thickness) || (y0 >= h + thickness && y1 >= h + thickness))
    return;
  int err = dx + dy;
  for (;;) {
    if (thickness <= 1) put_pixel(img, x0, y0, c);
    else fill_rect(img, x0 + lo, y0 + lo, thickness, thickness, c);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

/// Marker shapes for `draw_marker`.
enum class marker { circle, square, diamond, triangle, cross };

/// A marker centred on (x, y), `size` pixels across: filled with `fill` and
/// outlined `outline_width` pixels wide in `outline` (the cross is drawn in
/// `fill` only, over an `outline` halo).
inline void draw_marker(image& img, int x, int y, marker shape, int size, color fill, color outline,
                        int outline_width = 1) {
  if (size < 1) return;
  const double r = 0.5 * size;
  auto inside = [shape](double dx, double dy, double rr) {
    if (rr <= 0) return false;
    switch (shape) {
      case marker::circle: return dx * dx + dy * dy <= rr * rr;
      case marker::square: return std::max(std::abs(dx), std::abs(dy)) <= rr;
      case marker::diamond: return std::abs(dx) + std::abs(dy) <= rr * 1.25;
      case marker::triangle: {
        // Upward triangle, centroid at the centre.
        const double top = -rr, bottom = rr * 0.75;
        if (dy < top || dy > bottom) return false;
        return std::abs(dx) <= (dy - top) / (bottom - top) * rr * 1.1;
      }
      case marker::cross: {
        const double arm = std::max(0.9, rr * 0.3);
        return std::max(std::abs(dx), std::abs(dy)) <= rr &&
               (std::abs(dx - dy) <= arm * 1.2 || std::abs(dx + dy) <= arm * 1.2);
      }
    }
    return false;
  };
  const int ext = static_cast<int>(std::ceil(r * 1.3)) + 1;
  for (int v = -ext; v <= ext; ++v)
    for (int u = -ext; u <= ext; ++u) {
      // Pixel centres: an even size is centred between pixels.
      const double dx = u + (size % 2 == 0 ? 0.5 : 0.0), dy = v + (size % 2 == 0 ? 0.5 : 0.0);
      if (!inside(dx, dy, r)) continue;
      const bool core = inside(dx, dy, r - outline_width);
      put_pixel(img, x + u, y + v, core ? fill : outline);
    }
}

// ---- text ----------------------------------------------------------------------

namespace detail {

/// stb_easy_font knows the printable ASCII range only: the rest becomes '?'.
inline std::string printable(std::string_view s) {
  std::string t(s);
  for (char& ch : t)
    if (ch != '\n' && (static_cast<unsigned char>(ch) < 32 || static_cast<unsigned char>(ch) > 126)) ch = '?';
  return t;
}

/// Calls f(u0, v0, u1, v1) for every filled quad of the text at scale 1.
template <class F>
void for_each_glyph_quad(std::string_view text, F&& f) {
  std::string t = printable(text);
  if (t.empty()) return;
  std::vector<char> buf(t.size() * 1100 + 64);  // 64 bytes a quad, <= 16 quads a glyph
  unsigned char col[4] = {255, 255, 255, 255};
  const int quads = stb_easy_font_print(0, 0, t.data(), col, buf.data(), static_cast<int>(buf.size()));
  std::vector<float> v(static_cast<std::size_t>(quads) * 16);
  std::copy_n(buf.data(), v.size() * sizeof(float), reinterpret_cast<char*>(v.data()));
  for (int q = 0; q < quads; ++q) {
    const float* a = v.data() + q * 16;  // 4 vertices of (x, y, z, rgba)
    f(a[0], a[1], a[8], a[9]);
  }
}

}  // namespace detail

/// Width in pixels of `text` drawn at `scale` (the widest line).
inline int text_width(std::string_view text, int scale = 1) {
  std::string t = detail::printable(text);
  if (t.empty()) return 0;
  // stb counts one pixel of spacing after the last glyph.
  return std::max(0, stb_easy_font_width(t.data()) - 1) * scale;
}

/// Height in pixels of one line of text at `scale`, descenders included.
inline int text_height(int scale = 1) { return 9 * scale; }

/// Height of a line of text including the gap to the next (for layouts).
inline int line_height(int scale = 1) { return 12 * scale; }

/// Draws `text` (stb_easy_font, printable ASCII, '\n' starts a line) with
/// its top-left corner at (x, y), each font pixel a `scale` x `scale` block.
inline void draw_text(image& img, int x, int y, std::string_view text, color c, int scale = 1) {
  scale = std::max(1, scale);
  detail::for_each_glyph_quad(text, [&](float u0, float v0, float u1, float v1) {
    const int x0 = static_cast<int>(std::lround(u0 * scale)), x1 = static_cast<int>(std::lround(u1 * scale));
    const int y0 = static_cast<int>(std::lround(v0 * scale)), y1 = static_cast<int>(std::lround(v1 * scale));
    fill_rect(img, x + x0, y + y0, x1 - x0, y1 - y0, c);
  });
}

/// Text centred horizontally on `cx`, top at y.
inline void draw_text_centered(image& img, int cx, int y, std::string_view text, color c, int scale = 1) {
  draw_text(img, cx - text_width(text, scale) / 2, y, text, c, scale);
}

/// Text rotated a quarter turn counter-clockwise (reads bottom to top), the
/// rotated box's top-left corner at (x, y): it is text_height wide and
/// text_width tall.
inline void draw_text_vertical(image& img, int x, int y, std::string_view text, color c, int scale = 1) {
  scale = std::max(1, scale);
  const int w = text_width(text, scale);
  detail::for_each_glyph_quad(text, [&](float u0, float v0, float u1, float v1) {
    const int a0 = static_cast<int>(std::lround(u0 * scale)), a1 = static_cast<int>(std::lround(u1 * scale));
    const int b0 = static_cast<int>(std::lround(v0 * scale)), b1 = static_cast<int>(std::lround(v1 * scale));
    fill_rect(img, x + b0, y + w - a1, b1 - b0, a1 - a0, c);
  });
}

/// A number with `decimals` digits after the point ("-0" printed as "0").
inline std::string format_fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(decimals, 0, 12), v);
  std::string s = buf;
  if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);
  return s;
}

// ---- composing -----------------------------------------------------------------

/// Every pixel repeated `factor` x `factor` times; (H, W) and (H, W, C) inputs.
inline image upscale_nearest(const image& img, int factor) {
  img.require_defined("upscale_nearest");
  if (factor < 1 || factor > 64)
    protoseg::detail::fail<value_error>("upscale_nearest: factor must be in 1..64, got ", factor);
  if (img.rank() != 2 && img.rank() != 3)
    protoseg::detail::fail<shape_error>("upscale_nearest: image has shape ", img.shape(), ", expected (H, W) or (H, W, C)");
  const std::int64_t h = img.size(0), w = img.size(1), c = img.rank() == 3 ? img.size(2) : 1;
  auto out = img.rank() == 3 ? image::empty({h * factor, w * factor, c}) : image::empty({h * factor, w * factor});
  const std::uint8_t* src = img.data();
  std::uint8_t* dst = out.data();
  const std::int64_t ow = w * factor;
  for (std::int64_t y = 0; y < h * factor; ++y) {
    const std::uint8_t* row = src + (y / factor) * w * c;
    std::uint8_t* o = dst + y * ow * c;
    for (std::int64_t x = 0; x < ow; ++x)
      for (std::int64_t k = 0; k < c; ++k) o[x * c + k] = row[(x / factor) * c + k];
  }
  return out;
}

/// Copies `src` into `dst` with its top-left corner at (x, y), clipped.
inline void paste(image& dst, const image& src, int x, int y) {
  detail::require_rgb(dst, "paste", "dst");
  detail::require_rgb(src, "paste", "src");
  const int w = detail::width_of(src), h = detail::height_of(src);
  const int dw = detail::width_of(dst), dh = detail::height_of(dst);
  for (int r = std::max(0, -y); r < h && y + r < dh; ++r) {
    const int c0 = std::max(0, -x), c1 = std::min(w, dw - x);
    if (c1 <= c0) continue;
    std::copy_n(src.data() + (std::int64_t(r) * w + c0) * 3, (c1 - c0) * 3,
                dst.data() + (std::int64_t(y + r) * dw + x + c0) * 3);
  }
}

/// An (H, W) grey image as (H, W, 3) RGB.
inline image gray_to_rgb(const image& gray) {
  detail::require_label(gray, "gray_to_rgb", "gray");
  auto out = image::empty({gray.size(0), gray.size(1), 3});
  for (std::int64_t i = 0, n = gray.numel(); i < n; ++i)
    out.data()[3 * i] = out.data()[3 * i + 1] = out.data()[3 * i + 2] = gray.data()[i];
  return out;
}

/// Nearest-neighbour resize of an (H, W) or (H, W, C) image to `height` x
/// `width` (for example to shrink a 1024 x 2048 Cityscapes frame before
/// `prediction_grid`); label maps stay label maps.
inline image resize_nearest(const image& img, int width, int height) {
  img.require_defined("resize_nearest");
  if (img.rank() != 2 && img.rank() != 3)
    protoseg::detail::fail<shape_error>("resize_nearest: image has shape ", img.shape(), ", expected (H, W) or (H, W, C)");
  if (width < 1 || height < 1)
    protoseg::detail::fail<value_error>("resize_nearest: width and height must be >= 1, got ", width, " x ", height);
  const std::int64_t h = img.size(0), w = img.size(1), c = img.rank() == 3 ? img.size(2) : 1;
  auto out = img.rank() == 3 ? image::empty({height, width, c}) : image::empty({height, width});
  for (std::int64_t y = 0; y < height; ++y) {
    const std::int64_t sy = std::min(h - 1, (2 * y + 1) * h / (2 * std::int64_t(height)));
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t sx = std::min(w - 1, (2 * x + 1) * w / (2 * std::int64_t(width)));
      for (std::int64_t k = 0; k < c; ++k) out.data()[(y * width + x) * c + k] = img.data()[(sy * w + sx) * c + k];
    }
  }
  return out;
}

/// Images side by side, `gap` white pixels apart, each centred vertically
/// on a white background as tall as the tallest.
inline image hstack(const std::vector<image>& images, int gap = 10) {
  if (images.empty()) protoseg::detail::fail<value_error>("hstack: no images given");
  int w = 0, h = 0;
  for (const auto& im : images) {
    detail::require_rgb(im, "hstack", "an image");
    w += detail::width_of(im);
    h = std::max(h, detail::height_of(im));
  }
  w += std::max(0, gap) * static_cast<int>(images.size() - 1);
  image out = blank(w, h);
  int x = 0;
  for (const auto& im : images) {
    paste(out, im, x, (h - detail::height_of(im)) / 2);
    x += detail::width_of(im) + std::max(0, gap);
  }
  return out;
}

/// Images one below the other, `gap` white pixels apart, each centred
/// horizontally on a white background as wide as the widest.
inline image vstack(const std::vector<image>& images, int gap = 10) {
  if (images.empty()) protoseg::detail::fail<value_error>("vstack: no images given");
  int w = 0, h = 0;
  for (const auto& im : images) {
    detail::require_rgb(im, "vstack", "an image");
    h += detail::height_of(im);
    w = std::max(w, detail::width_of(im));
  }
  h += std::max(0, gap) * static_cast<int>(images.size() - 1);
  image out = blank(w, h);
  int y = 0;
  for (const auto& im : images) {
    paste(out, im, (w - detail::width_of(im)) / 2, y);
    y += detail::height_of(im) + std::max(0, gap);
  }
  return out;
}

// ---- labels --------------------------------------------------------------------

/// An (H, W) label map in colour: class k gets `pal[k]`, 255 (ignore) gets
/// `ignore_color`. Throws `value_error` for another value outside the palette.
inline image colorize(const image& label, const palette& pal, color ignore_color = white) {
  detail::require_label(label, "colorize", "label");
  const std::int64_t n = label.numel();
  auto out = image::empty({label.size(0), label.size(1), 3});
  const std::uint8_t* l = label.data();
  std::uint8_t* o = out.data();
  for (std::int64_t i = 0; i < n; ++i) {
    const unsigned v = l[i];
    color c;
    if (v == 255) c = ignore_color;
    else if (v < pal.size()) c = pal[v];
    else
      protoseg::detail::fail<value_error>("colorize: label value ", v, " at pixel (", i / label.size(1), ", ",
                                          i % label.size(1), ") is outside the palette of ", pal.size(),
                                          " colours (and is not the ignore value 255)");
    o[3 * i] = c[0], o[3 * i + 1] = c[1], o[3 * i + 2] = c[2];
  }
  return out;
}

/// (1 - alpha) * image + alpha * colored, rounded; both (H, W, 3), alpha in [0, 1].
inline image overlay(const image& img, const image& colored, double alpha = 0.5) {
  detail::require_rgb(img, "overlay", "image");
  detail::require_rgb(colored, "overlay", "colored");
  if (img.shape() != colored.shape())
    protoseg::detail::fail<shape_error>("overlay: image has shape ", img.shape(), " but colored has shape ",
                                        colored.shape());
  if (!(alpha >= 0 && alpha <= 1)) protoseg::detail::fail<value_error>("overlay: alpha must be in [0, 1], got ", alpha);
  auto out = image::empty(img.shape());
  for (std::int64_t i = 0, n = img.numel(); i < n; ++i)
    out.data()[i] = detail::mix(img.data()[i], colored.data()[i], alpha);
  return out;
}

/// The errors picture: the image in light grey, pixels where `prediction`
/// differs from `truth` in `error_red`, pixels whose truth is 255 (ignore) white.
inline image error_map(const image& img, const image& truth, const image& prediction) {
  detail::require_rgb(img, "error_map", "image");
  detail::require_label(truth, "error_map", "truth");
  detail::require_label(prediction, "error_map", "prediction");
  if (truth.shape() != prediction.shape() || truth.size(0) != img.size(0) || truth.size(1) != img.size(1))
    protoseg::detail::fail<shape_error>("error_map: image ", img.shape(), ", truth ", truth.shape(),
                                        " and prediction ", prediction.shape(), " must have the same H and W");
  auto out = image::empty(img.shape());
  for (std::int64_t i = 0, n = truth.numel(); i < n; ++i) {
    const std::uint8_t* p = img.data() + 3 * i;
    std::uint8_t* o = out.data() + 3 * i;
    color c;
    if (truth.data()[i] == 255) c = white;
    else if (truth.data()[i] != prediction.data()[i]) c = error_red;
    else {
      const double lum = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
      const auto g = static_cast<std::uint8_t>(std::lround(110.0 + lum * (120.0 / 255.0)));
      c = {g, g, g};
    }
    o[0] = c[0], o[1] = c[1], o[2] = c[2];
  }
  return out;
}

// ---- legends -------------------------------------------------------------------

/// One entry of a legend: a swatch (filled square), a marker or a line.
struct legend_entry {
  enum class kind { swatch, marker, line } what = kind::swatch;
  std::string name;
  color fill{};
  color outline = {60, 60, 60};
  marker shape = marker::circle;
};

namespace detail {

inline constexpr int legend_swatch = 16;
inline constexpr int legend_text_gap = 8;
inline constexpr int legend_pitch_y = 24;
inline constexpr int legend_column_gap = 24;

inline int legend_entry_width(const legend_entry& e, int scale) {
  const int sym = e.what == legend_entry::kind::line ? 28 : legend_swatch;
  return sym + legend_text_gap + text_width(e.name, scale);
}

inline void draw_legend_entry(image& img, int x, int y, const legend_entry& e, int scale) {
  const int s = legend_swatch;
  int sym = s;
  switch (e.what) {
    case legend_entry::kind::swatch:
      fill_rect(img, x, y, s, s, e.fill);
      draw_rect(img, x, y, s, s, e.outline);
      break;
    case legend_entry::kind::marker: draw_marker(img, x + s / 2, y + s / 2, e.shape, 13, e.fill, e.outline, 2); break;
    case legend_entry::kind::line:
      sym = 28;
      draw_line(img, x, y + s / 2, x + sym - 1, y + s / 2, e.fill, 3);
      break;
  }
  draw_text(img, x + sym + legend_text_gap, y + (s - text_height(scale)) / 2 + scale / 2, e.name, ink, scale);
}

/// Size of a legend laid out in `columns` columns, row by row.
struct legend_layout {
  int columns = 1, rows = 0, column_width = 0, width = 0, height = 0;
};

inline legend_layout layout_legend(const std::vector<legend_entry>& entries, int max_width, int scale) {
  legend_layout l;
  if (entries.empty()) return l;
  for (const auto& e : entries) l.column_width = std::max(l.column_width, legend_entry_width(e, scale));
  const int n = static_cast<int>(entries.size());
  l.columns = std::clamp((max_width + legend_column_gap) / (l.column_width + legend_column_gap), 1, n);
  l.rows = (n + l.columns - 1) / l.columns;
  l.columns = (n + l.rows - 1) / l.rows;  // balance: no half-empty last column
  l.width = l.columns * l.column_width + (l.columns - 1) * legend_column_gap;
  l.height = l.rows * legend_pitch_y - (legend_pitch_y - legend_swatch);
  return l;
}

/// Draws entries column by column (top to bottom, then the next column).
inline void draw_legend(image& img, int x, int y, const std::vector<legend_entry>& entries, const legend_layout& l,
                        int scale) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const int c = static_cast<int>(i) / l.rows, r = static_cast<int>(i) % l.rows;
    draw_legend_entry(img, x + c * (l.column_width + legend_column_gap), y + r * legend_pitch_y, entries[i], scale);
  }
}

}  // namespace detail

// ---- prediction grid -----------------------------------------------------------

/// One row of `prediction_grid`: an RGB image (H, W, 3), its ground-truth and
/// predicted label maps (H, W) (255 = ignore) and a caption (for example
/// the image's pixel accuracy).
struct prediction_row {
  tensor<std::uint8_t> image;
  tensor<std::uint8_t> truth;
  tensor<std::uint8_t> prediction;
  std::string caption;
};

/// A grid with one row per example and the columns image | ground truth |
/// prediction | errors (wrong pixels red over the greyed image, ignored pixels
/// white), each enlarged `upscale` times; column headers, the title, a caption
/// under each row and a legend with every class's colour and name (with more
/// than 40 classes: the classes that occur in a truth or a prediction).
inline image prediction_grid(const std::vector<prediction_row>& rows, const std::vector<std::string>& class_names,
                             const palette& pal, std::string_view title, int upscale = 3) {
  if (rows.empty()) protoseg::detail::fail<value_error>("prediction_grid: no rows given");
  if (upscale < 1 || upscale > 32)
    protoseg::detail::fail<value_error>("prediction_grid: upscale must be in 1..32, got ", upscale);
  if (pal.size() < class_names.size())
    protoseg::detail::fail<value_error>("prediction_grid: the palette has ", pal.size(), " colours for ",
                                        class_names.size(), " class names");
  int tile_w = 0;
  bool any_ignore = false;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    detail::require_rgb(r.image, "prediction_grid", "rows[i].image");
    detail::require_label(r.truth, "prediction_grid", "rows[i].truth");
    detail::require_label(r.prediction, "prediction_grid", "rows[i].prediction");
    if (r.truth.shape() != r.prediction.shape() || r.truth.size(0) != r.image.size(0) ||
        r.truth.size(1) != r.image.size(1))
      protoseg::detail::fail<shape_error>("prediction_grid: row ", i, ": image ", r.image.shape(), ", truth ",
                                          r.truth.shape(), " and prediction ", r.prediction.shape(),
                                          " must have the same H and W");
    tile_w = std::max(tile_w, detail::width_of(r.image) * upscale);
    for (std::int64_t k = 0; k < r.truth.numel() && !any_ignore; ++k) any_ignore = r.truth.data()[k] == 255;
  }
  const int margin = 24, col_gap = 16, text_scale = 2;
  const int grid_w = 4 * tile_w + 3 * col_gap;

  // Every class; with more than 40 (ADE20K) only those in a truth or a prediction.
  std::vector<char> present(class_names.size(), class_names.size() <= 40);
  if (class_names.size() > 40)
    for (const auto& r : rows)
      for (const auto* t : {&r.truth, &r.prediction})
        for (std::int64_t k = 0; k < t->numel(); ++k)
          if (t->data()[k] < present.size()) present[t->data()[k]] = 1;
  std::vector<legend_entry> legend;
  for (std::size_t k = 0; k < class_names.size(); ++k)
    if (present[k]) legend.push_back({legend_entry::kind::swatch, std::to_string(k) + " " + class_names[k], pal[k]});
  if (any_ignore) legend.push_back({legend_entry::kind::swatch, "ignored (255)", white});
  legend.push_back({legend_entry::kind::swatch, "wrong pixel", error_red});

  const int title_scale = text_width(title, 3) <= grid_w ? 3 : 2;
  int content_w = std::max({grid_w, text_width(title, title_scale)});
  for (const auto& r : rows) content_w = std::max(content_w, text_width(r.caption, text_scale));
  const auto lay = detail::layout_legend(legend, content_w, text_scale);
  const int width = margin * 2 + std::max(content_w, lay.width);

  const int title_y = margin, header_y = title_y + line_height(title_scale) + 12;
  const int rows_y = header_y + line_height(text_scale) + 2;
  const int caption_gap = 6, row_gap = 18;
  int height = rows_y;
  for (const auto& r : rows) {
    height += detail::height_of(r.image) * upscale;
    height += r.caption.empty() ? row_gap : caption_gap + line_height(text_scale) + row_gap - 6;
  }
  const int legend_y = height + 6;
  height = legend_y + lay.height + margin;

  image out = blank(width, height);
  const int x0 = margin + (width - 2 * margin - grid_w) / 2;
  draw_text_centered(out, width / 2, title_y, title, ink, title_scale);
  static constexpr std::array<std::string_view, 4> headers = {"image", "ground truth", "prediction", "errors"};
  for (int c = 0; c < 4; ++c)
    draw_text_centered(out, x0 + c * (tile_w + col_gap) + tile_w / 2, header_y, headers[static_cast<std::size_t>(c)],
                       soft_ink, text_scale);
  int y = rows_y;
  for (const auto& r : rows) {
    const std::array<image, 4> tiles = {r.image, colorize(r.truth, pal), colorize(r.prediction, pal),
                                        error_map(r.image, r.truth, r.prediction)};
    const int th = detail::height_of(r.image) * upscale, tw = detail::width_of(r.image) * upscale;
    for (int c = 0; c < 4; ++c) {
      const int tx = x0 + c * (tile_w + col_gap) + (tile_w - tw) / 2;
      paste(out, upscale_nearest(tiles[static_cast<std::size_t>(c)], upscale), tx, y);
      draw_rect(out, tx - 1, y - 1, tw + 2, th + 2, frame_grey);
    }
    y += th;
    if (!r.caption.empty()) {
      draw_text(out, x0, y + caption_gap, r.caption, soft_ink, text_scale);
      y += caption_gap + line_height(text_scale) + row_gap - 6;
    } else {
      y += row_gap;
    }
  }
  detail::draw_legend(out, margin + (width - 2 * margin - lay.width) / 2, legend_y, legend, lay, text_scale);
  return out;
}

// ---- confusion matrix ----------------------------------------------------------

/// A sequential white -> dark blue colour map for t in [0, 1].
inline color blues(double t) {
  static constexpr std::array<color, 6> stops = {color{247, 251, 255}, color{198, 219, 239}, color{107, 174, 214},
                                                 color{49, 130, 189},  color{8, 81, 156},    color{8, 38, 90}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * double(stops.size() - 1);
  const auto i = std::min<std::size_t>(static_cast<std::size_t>(t), stops.size() - 2);
  const double f = t - static_cast<double>(i);
  return {detail::mix(stops[i][0], stops[i + 1][0], f), detail::mix(stops[i][1], stops[i + 1][1], f),
          detail::mix(stops[i][2], stops[i + 1][2], f)};
}

/// A row-normalised confusion matrix: `counts` is C x C row major (row = true
/// class, column = predicted), each cell coloured by sqrt of its share of the
/// row (so that small confusions stay visible) and labelled with the
/// percentage when the cells are large enough; class names on the left and,
/// rotated, below; a colour bar on the right. Cells shrink with many classes.
inline image confusion_matrix_plot(const std::vector<std::int64_t>& counts, const std::vector<std::string>& class_names,
                                   std::string_view title,
                                   std::string_view subtitle = "rows: true class, columns: predicted class, cells: % of the row") {
  const auto c = static_cast<int>(class_names.size());
  if (c < 1 || counts.size() != std::size_t(c) * std::size_t(c))
    protoseg::detail::fail<shape_error>("confusion_matrix_plot: ", counts.size(), " counts for ", c,
                                        " classes, expected ", std::size_t(c) * std::size_t(c), " (C x C, row major)");
  for (std::size_t i = 0; i < counts.size(); ++i)
    if (counts[i] < 0)
      protoseg::detail::fail<value_error>("confusion_matrix_plot: counts[", i, "] = ", counts[i], " is negative");
  const int cell = std::clamp(640 / c, 8, 64);
  const int label_scale = cell >= 18 ? 2 : 1, cell_scale = cell >= 44 ? 2 : 1;
  int name_w = 0;
  for (const auto& n : class_names) name_w = std::max(name_w, text_width(n, label_scale));
  const int grid = cell * c, margin = 20;
  const int title_w = std::max(text_width(title, 2), text_width(subtitle, 2));
  const int left = margin + name_w + 12, top = margin + 2 * line_height(2) + 18;
  const int bar_x = left + grid + 30, bar_w = 24;
  const int width = std::max(bar_x + bar_w + 8 + text_width("100%", 2) + margin, left + grid / 2 + title_w / 2 + margin);
  const int height = top + grid + 10 + name_w + margin;
  image out = blank(std::max(width, title_w + 2 * margin), height);
  const int cx = std::max(left + grid / 2, margin + title_w / 2);
  draw_text_centered(out, cx, margin, title, ink, 2);
  draw_text_centered(out, cx, margin + line_height(2) + 4, subtitle, soft_ink, 2);
  auto percent = [](double f, int decimals) { return format_fixed(100.0 * f, decimals); };
  for (int r = 0; r < c; ++r) {
    std::int64_t row = 0;
    for (int q = 0; q < c; ++q) row += counts[std::size_t(r) * c + q];
    for (int q = 0; q < c; ++q) {
      const double f = row ? double(counts[std::size_t(r) * c + q]) / double(row) : 0.0;
      const int x = left + q * cell, y = top + r * cell;
      fill_rect(out, x, y, cell, cell, blues(std::sqrt(f)));
      if (f >= 0.0005 && cell >= 22) {
        const std::string s = f >= 0.995 ? "100" : percent(f, f >= 0.1 || cell < 44 ? 0 : 1);
        draw_text_centered(out, x + cell / 2, y + (cell - text_height(cell_scale)) / 2 + 1, s,
                           std::sqrt(f) > 0.55 ? white : ink, cell_scale);
      }
    }
    const std::string& name = class_names[std::size_t(r)];
    const int ty = top + r * cell + (cell - text_height(label_scale)) / 2 + 1;
    draw_text(out, left - 10 - text_width(name, label_scale), ty, name, ink, label_scale);
    draw_text_vertical(out, left + r * cell + (cell - text_height(label_scale)) / 2 + 1,
                       top + grid + 10, name, ink, label_scale);
  }
  if (c > 1)
    for (int i = 1; i < c; ++i) {
      fill_rect(out, left + i * cell, top, 1, grid, {230, 230, 230});
      fill_rect(out, left, top + i * cell, grid, 1, {230, 230, 230});
    }
  draw_rect(out, left - 1, top - 1, grid + 2, grid + 2, frame_grey);
  for (int y = 0; y < grid; ++y) fill_rect(out, bar_x, top + y, bar_w, 1, blues(std::sqrt(1.0 - double(y) / grid)));
  draw_rect(out, bar_x - 1, top - 1, bar_w + 2, grid + 2, frame_grey);
  for (double v : {1.0, 0.5, 0.2, 0.05, 0.0}) {
    const int y = top + static_cast<int>(std::lround((1.0 - std::sqrt(v)) * grid));
    fill_rect(out, bar_x + bar_w, y, 5, 1, ink);
    draw_text(out, bar_x + bar_w + 8, y - text_height(2) / 2, percent(v, 0) + "%", ink, 2);
  }
  return out;
}

// ---- line plots ----------------------------------------------------------------

/// One curve of `line_plot`: points (x[i], y[i]) joined in order; non-finite
/// points (and, on a log axis, y <= 0) break the line.
struct series {
  std::string name;
  std::vector<double> x, y;
  color rgb{31, 119, 180};
};

/// The data-to-pixel mapping of a plot: the plot area's frame (left <= x <=
/// right, top <= y <= bottom) and the axis ranges shown inside it, `pad`
/// pixels in from the frame so that points on the range's ends stay visible.
struct plot_frame {
  int left = 0, top = 0, right = 0, bottom = 0, pad = 8;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;  ///< y in log10 units when log_y
  bool log_y = false;
  std::vector<double> x_ticks, y_ticks;               ///< data values (y: not log10)
  double x_step = 1, y_step = 1;

  /// Pixel column of data x (not rounded): x_min at left + pad, x_max at right - pad.
  double px(double x) const { return left + pad + (x - x_min) / (x_max - x_min) * (right - left - 2 * pad); }
  /// Pixel row of data y (not rounded): y_min at bottom - pad, y_max at top + pad.
  double py(double y) const {
    const double v = log_y ? std::log10(y) : y;
    return bottom - pad - (v - y_min) / (y_max - y_min) * (bottom - top - 2 * pad);
  }
};

/// `text` cut to at most `max_width` pixels at `scale`, ending in "..." if cut.
inline std::string fit_text(std::string_view text, int max_width, int scale) {
  std::string t = detail::printable(text);
  if (text_width(t, scale) <= max_width) return t;
  while (!t.empty() && text_width(t + "...", scale) > max_width) t.pop_back();
  return t + "...";
}

/// Draws `text` centred on cx at the largest scale <= `scale` at which it
/// fits in `max_width` pixels (cut with "..." if it does not fit at 1).
inline void draw_text_fitted(image& img, int cx, int y, std::string_view text, color c, int scale, int max_width) {
  while (scale > 1 && text_width(text, scale) > max_width) --scale;
  const std::string t = fit_text(text, max_width, scale);
  draw_text_centered(img, cx, y, t, c, scale);
}

namespace detail {

/// A "nice" step (1, 2, 2.5 or 5 times a power of ten) for [lo, hi]: the one
/// whose tick count is closest to `target` intervals, preferring axes that
/// end close to the data.
inline double nice_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double best = 10 * mag, best_err = std::numeric_limits<double>::infinity();
  for (double m : {10.0, 5.0, 2.5, 2.0, 1.0}) {
    const double step = m * mag;
    const double intervals = std::ceil(hi / step - 1e-9) - std::floor(lo / step + 1e-9);
    // Closest count first; on a tie the axis that wastes the least room.
    const double err = std::abs(intervals - target) + 0.5 * (intervals * step - (hi - lo)) / (hi - lo);
    if (err < best_err) best = step, best_err = err;
  }
  return best;
}

/// Digits after the point that show multiples of `step` exactly.
inline int decimals_for(double step) {
  int d = 0;
  while (d < 10 && std::abs(step * std::pow(10.0, d) - std::round(step * std::pow(10.0, d))) > 1e-6 * step * std::pow(10.0, d))
    ++d;
  return d;
}

/// A tick label: fixed notation, large round values shortened to k / M.
inline std::string tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0;
  if (v == 0) return step >= 1000 ? "0" : format_fixed(0, decimals_for(step));
  if (step >= 1e6 && std::abs(std::fmod(step, 1e5)) < 1e-9) return format_fixed(v / 1e6, decimals_for(step / 1e6)) + "M";
  if (step >= 1000 && std::abs(std::fmod(step, 100)) < 1e-9) return format_fixed(v / 1e3, decimals_for(step / 1e3)) + "k";
  if (step < 1e-4 || std::abs(v) >= 1e7) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  return format_fixed(v, decimals_for(step));
}

/// A log-axis label for 10^e (or m * 10^e).
inline std::string log_label(double v) {
  char buf[32];
  if (v >= 1e-4 && v < 1e6) {
    std::snprintf(buf, sizeof buf, "%.10g", v);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.0e", v);
  return buf;
}

/// A linear axis with nice ticks covering [lo, hi].
inline void linear_axis(double lo, double hi, double& a, double& b, double& step, std::vector<double>& ticks) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  step = nice_step(lo, hi, 5);
  a = std::floor(lo / step + 1e-9) * step;
  b = std::ceil(hi / step - 1e-9) * step;
  ticks.clear();
  for (int i = 0; a + i * step <= b + step * 1e-6 && i < 64; ++i) ticks.push_back(a + i * step);
}

}  // namespace detail

/// Where `line_plot` puts its plot area and ticks for these series.
inline plot_frame line_plot_frame(const std::vector<series>& curves, bool log_y = false, int width = 640,
                                  int height = 400) {
  if (width < 240 || height < 160)
    protoseg::detail::fail<value_error>("line_plot: the size must be at least 240 x 160, got ", width, " x ", height);
  plot_frame f;
  f.log_y = log_y;
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (std::size_t s = 0; s < curves.size(); ++s) {
    const auto& c = curves[s];
    if (c.x.size() != c.y.size())
      protoseg::detail::fail<shape_error>("line_plot: series ", s, " ('", c.name, "') has ", c.x.size(),
                                          " x values and ", c.y.size(), " y values");
    for (std::size_t i = 0; i < c.x.size(); ++i) {
      const double x = c.x[i], y = c.y[i];
      if (!std::isfinite(x) || !std::isfinite(y) || (log_y && !(y > 0))) continue;
      xlo = std::min(xlo, x), xhi = std::max(xhi, x);
      const double v = log_y ? std::log10(y) : y;
      ylo = std::min(ylo, v), yhi = std::max(yhi, v);
    }
  }
  if (!(xlo <= xhi)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;  // no data: an empty unit frame
  detail::linear_axis(xlo, xhi, f.x_min, f.x_max, f.x_step, f.x_ticks);
  if (!log_y) {
    detail::linear_axis(ylo, yhi, f.y_min, f.y_max, f.y_step, f.y_ticks);
  } else {
    f.y_min = std::floor(ylo + 1e-9);
    f.y_max = std::ceil(yhi - 1e-9);
    if (f.y_max <= f.y_min) f.y_max = f.y_min + 1;
    const int decades = static_cast<int>(f.y_max - f.y_min);
    f.y_step = 1;
    for (int e = static_cast<int>(f.y_min); e <= static_cast<int>(f.y_max); ++e) {
      f.y_ticks.push_back(std::pow(10.0, e));
      if (decades <= 2 && e < static_cast<int>(f.y_max))
        for (double m : {2.0, 5.0}) f.y_ticks.push_back(m * std::pow(10.0, e));
    }
    std::sort(f.y_ticks.begin(), f.y_ticks.end());
  }
  int label_w = 0;
  for (double t : f.y_ticks)
    label_w = std::max(label_w, text_width(log_y ? detail::log_label(t) : detail::tick_label(t, f.y_step), 2));
  const int outer = 14;
  f.left = outer + text_height(2) + 12 + label_w + 10;
  f.right = width - outer - 14;
  f.top = outer + line_height(2) + 16;
  f.bottom = height - outer - text_height(2) - 12 - text_height(2) - 10;
  return f;
}

/// A line plot: white background, light grid, axes with round tick values,
/// the title above, axis labels, and a legend (in the emptiest corner) naming
/// every series with a non-empty name. Series with at most 40 points also get
/// a dot at each point. `log_y` puts y on a log scale (powers of ten).
inline image line_plot(const std::vector<series>& curves, std::string_view title, std::string_view xlabel,
                       std::string_view ylabel, bool log_y = false, int width = 640, int height = 400) {
  const plot_frame f = line_plot_frame(curves, log_y, width, height);
  image out = blank(width, height);
  const int scale = 2;
  // grid and ticks
  for (double t : f.x_ticks) {
    const int x = static_cast<int>(std::lround(f.px(t)));
    draw_line(out, x, f.top, x, f.bottom, grid_grey);
    draw_line(out, x, f.bottom, x, f.bottom + 5, frame_grey);
    draw_text_centered(out, x, f.bottom + 10, detail::tick_label(t, f.x_step), soft_ink, scale);
  }
  if (log_y)  // faint minor lines at 2..9 times each decade
    for (int e = static_cast<int>(f.y_min); e < static_cast<int>(f.y_max); ++e)
      for (int m = 2; m <= 9; ++m) {
        const int y = static_cast<int>(std::lround(f.py(m * std::pow(10.0, e))));
        draw_line(out, f.left, y, f.right, y, {244, 244, 244});
      }
  for (double t : f.y_ticks) {
    const int y = static_cast<int>(std::lround(f.py(t)));
    draw_line(out, f.left, y, f.right, y, grid_grey);
    draw_line(out, f.left - 5, y, f.left, y, frame_grey);
    const std::string s = log_y ? detail::log_label(t) : detail::tick_label(t, f.y_step);
    draw_text(out, f.left - 9 - text_width(s, scale), y - text_height(scale) / 2 + 1, s, soft_ink, scale);
  }
  // curves, clipped to the plot area
  image area = blank(f.right - f.left + 1, f.bottom - f.top + 1);
  for (int yy = 0; yy < detail::height_of(area); ++yy)  // the grid drawn so far
    std::copy_n(out.data() + (std::int64_t(f.top + yy) * width + f.left) * 3, detail::width_of(area) * 3,
                area.data() + std::int64_t(yy) * detail::width_of(area) * 3);
  std::vector<std::pair<double, double>> drawn;  // pixel positions, for placing the legend
  for (const auto& c : curves) {
    bool have_prev = false;
    int px0 = 0, py0 = 0;
    const bool dots = c.x.size() <= 40;
    for (std::size_t i = 0; i < c.x.size(); ++i) {
      const double x = c.x[i], y = c.y[i];
      if (!std::isfinite(x) || !std::isfinite(y) || (log_y && !(y > 0))) {
        have_prev = false;
        continue;
      }
      const double fx = f.px(x) - f.left, fy = f.py(y) - f.top;
      const int ix = static_cast<int>(std::lround(fx)), iy = static_cast<int>(std::lround(fy));
      if (have_prev) draw_line(area, px0, py0, ix, iy, c.rgb, 2);
      if (dots) draw_marker(area, ix, iy, marker::circle, 7, c.rgb, white, 1);
      drawn.emplace_back(fx, fy);
      if (have_prev) {  // also the middle of long segments
        for (int k = 1; k < 8; ++k)
          drawn.emplace_back(px0 + (ix - px0) * k / 8.0, py0 + (iy - py0) * k / 8.0);
      }
      have_prev = true, px0 = ix, py0 = iy;
    }
  }
  paste(out, area, f.left, f.top);
  draw_rect(out, f.left, f.top, f.right - f.left + 1, f.bottom - f.top + 1, frame_grey);
  // labels
  draw_text_fitted(out, width / 2, 14, title, ink, scale, width - 20);
  draw_text_fitted(out, (f.left + f.right) / 2, height - 14 - text_height(scale), xlabel, ink, scale, width - 20);
  const std::string ylab = fit_text(ylabel, f.bottom - f.top, scale);
  draw_text_vertical(out, 14, (f.top + f.bottom) / 2 - text_width(ylab, scale) / 2, ylab, ink, scale);
  if (curves.empty() || drawn.empty())
    draw_text_centered(out, (f.left + f.right) / 2, (f.top + f.bottom) / 2 - 7, "no data", soft_ink, scale);
  // legend: the corner of the plot area with the fewest curve points under it
  std::vector<legend_entry> entries;
  for (const auto& c : curves)
    if (!c.name.empty()) entries.push_back({legend_entry::kind::line, c.name, c.rgb});
  if (!entries.empty()) {
    const auto lay = detail::layout_legend(entries, 1, scale);  // one column
    const int pad = 8, bw = lay.width + 2 * pad, bh = lay.height + 2 * pad;
    const int aw = f.right - f.left, ah = f.bottom - f.top;
    const std::array<std::pair<int, int>, 4> corners = {
        std::pair{aw - bw - 6, 6}, std::pair{6, 6}, std::pair{aw - bw - 6, ah - bh - 6}, std::pair{6, ah - bh - 6}};
    std::size_t best = 0, best_count = std::numeric_limits<std::size_t>::max();
    for (std::size_t k = 0; k < corners.size(); ++k) {
      std::size_t count = 0;
      for (const auto& [dx, dy] : drawn)
        count += dx >= corners[k].first - 4 && dx <= corners[k].first + bw + 4 && dy >= corners[k].second - 4 &&
                 dy <= corners[k].second + bh + 4;
      if (count < best_count) best = k, best_count = count;
    }
    const int bx = f.left + corners[best].first, by = f.top + corners[best].second;
    fill_rect(out, bx, by, bw, bh, white);
    draw_rect(out, bx, by, bw, bh, {200, 200, 200});
    detail::draw_legend(out, bx + pad, by + pad, entries, lay, scale);
  }
  return out;
}

// ---- PCA and t-SNE -------------------------------------------------------------

namespace detail {

inline void require_finite_matrix(const Eigen::MatrixXf& X, const char* fn) {
  for (Eigen::Index j = 0; j < X.cols(); ++j)
    for (Eigen::Index i = 0; i < X.rows(); ++i)
      if (!std::isfinite(X(i, j)))
        protoseg::detail::fail<value_error>(fn, ": X(", i, ", ", j, ") is ", X(i, j), "; every value must be finite");
}

}  // namespace detail

/// The n x 2 projection of the rows of X (n x d) on its top two principal
/// axes: X is centred, the axes are the eigenvectors of the d x d covariance
/// with the two largest eigenvalues (SelfAdjointEigenSolver; when d > n the
/// same axes come from the n x n Gram matrix), each with the sign that makes
/// its largest-magnitude component positive. With d = 1 the second column is 0.
inline Eigen::MatrixXf pca_2d(const Eigen::MatrixXf& X) {
  if (X.rows() < 1 || X.cols() < 1)
    protoseg::detail::fail<shape_error>("pca_2d: X is ", X.rows(), " x ", X.cols(), ", expected n x d with n, d >= 1");
  detail::require_finite_matrix(X, "pca_2d");
  const Eigen::Index n = X.rows(), d = X.cols();
  Eigen::MatrixXd Xc = X.cast<double>();
  Xc.rowwise() -= Xc.colwise().mean();
  Eigen::MatrixXd axes = Eigen::MatrixXd::Zero(d, 2);
  const Eigen::Index k = std::min<Eigen::Index>(2, std::min(n, d));
  if (d <= n) {
    const Eigen::MatrixXd cov = (Xc.transpose() * Xc) / double(std::max<Eigen::Index>(1, n - 1));
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cov);
    for (Eigen::Index j = 0; j < k; ++j) axes.col(j) = es.eigenvectors().col(d - 1 - j);
  } else {
    const Eigen::MatrixXd gram = Xc * Xc.transpose();
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(gram);
    for (Eigen::Index j = 0; j < k; ++j) {
      Eigen::VectorXd v = Xc.transpose() * es.eigenvectors().col(n - 1 - j);
      const double norm = v.norm();
      if (norm > 0) axes.col(j) = v / norm;
    }
  }
  for (Eigen::Index j = 0; j < 2; ++j) {
    Eigen::Index arg = 0;
    axes.col(j).cwiseAbs().maxCoeff(&arg);
    if (axes(arg, j) < 0) axes.col(j) = -axes.col(j);
  }
  return (Xc * axes).cast<float>();
}

/// Exact t-SNE (van der Maaten and Hinton 2008) of the rows of X (n x d) to
/// 2-D: Gaussian conditionals P(j|i) with a per-point binary search on the
/// precision to match `perplexity`, symmetrised P, early exaggeration 12 for
/// the first 250 iterations, Student-t Q, gradient descent with momentum 0.5
/// (0.8 after iteration 250), adaptive gains and learning rate max(200, n/12).
/// Starts from Gaussian noise of std 1e-4 drawn from `generator(seed)`, so the
/// result depends on (X, perplexity, iterations, seed) only, not on the
/// thread count. O(n^2) time and memory: meant for n <= a few thousand.
inline Eigen::MatrixXf tsne_2d(const Eigen::MatrixXf& X, double perplexity = 30, int iterations = 750,
                               std::uint64_t seed = 0) {
  const Eigen::Index n64 = X.rows();
  if (n64 < 3 || X.cols() < 1)
    protoseg::detail::fail<value_error>("tsne_2d: X is ", X.rows(), " x ", X.cols(),
                                        ", expected n x d with n >= 3 points and d >= 1");
  if (n64 > 20000)
    protoseg::detail::fail<value_error>("tsne_2d: ", n64, " points is too many for exact t-SNE (at most 20000)");
  if (!(perplexity > 0) || !(perplexity < double(n64)))
    protoseg::detail::fail<value_error>("tsne_2d: perplexity must be in (0, n) = (0, ", n64, "), got ", perplexity);
  if (iterations < 0) protoseg::detail::fail<value_error>("tsne_2d: iterations must be >= 0, got ", iterations);
  detail::require_finite_matrix(X, "tsne_2d");
  const int n = static_cast<int>(n64);
  const auto nn = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);

  // Squared distances (double), then the conditional P row by row.
  Eigen::MatrixXd Xd = X.cast<double>();
  Xd.rowwise() -= Xd.colwise().mean();
  const Eigen::VectorXd sq = Xd.rowwise().squaredNorm();
  std::vector<float> P(nn);
  {
    Eigen::MatrixXd D = -2.0 * (Xd * Xd.transpose());
    D.colwise() += sq;
    D.rowwise() += sq.transpose();
    const double log_perp = std::log(std::min(perplexity, double(n - 1)));
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (int i = 0; i < n; ++i) {
      std::vector<double> d(static_cast<std::size_t>(n)), p(static_cast<std::size_t>(n));
      double dmin = std::numeric_limits<double>::infinity();
      for (int j = 0; j < n; ++j) {
        d[static_cast<std::size_t>(j)] = j == i ? 0.0 : std::max(0.0, D(i, j));
        if (j != i) dmin = std::min(dmin, d[static_cast<std::size_t>(j)]);
      }
      double beta = 1.0, lo = 0.0, hi = std::numeric_limits<double>::infinity();
      // Scale-free start: beta near 1 / (mean distance).
      double mean_d = 0;
      for (int j = 0; j < n; ++j) mean_d += d[static_cast<std::size_t>(j)] - (j == i ? 0 : dmin);
      mean_d /= double(n - 1);
      if (mean_d > 0) beta = 1.0 / mean_d;
      double sum = 0;
      for (int it = 0; it < 200; ++it) {
        sum = 0;
        double dot = 0;
        for (int j = 0; j < n; ++j) {
          const double e = j == i ? 0.0 : std::exp(-(d[static_cast<std::size_t>(j)] - dmin) * beta);
          p[static_cast<std::size_t>(j)] = e;
          sum += e;
          dot += e * (d[static_cast<std::size_t>(j)] - dmin);
        }
        const double h = std::log(sum) + beta * dot / sum;  // entropy in nats
        const double diff = h - log_perp;
        if (std::abs(diff) < 1e-5) break;
        if (diff > 0) {  // too flat: sharpen
          lo = beta;
          beta = std::isinf(hi) ? beta * 2 : 0.5 * (beta + hi);
        } else {
          hi = beta;
          beta = 0.5 * (beta + lo);
        }
      }
      for (int j = 0; j < n; ++j)
        P[static_cast<std::size_t>(i) * n + j] = static_cast<float>(p[static_cast<std::size_t>(j)] / sum);
    }
  }
  // Symmetrise: p_ij = (p(j|i) + p(i|j)) / 2n.
  {
    const double inv = 1.0 / (2.0 * n);
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j) {
        const std::size_t a = static_cast<std::size_t>(i) * n + j, b = static_cast<std::size_t>(j) * n + i;
        const float v = static_cast<float>(std::max((double(P[a]) + double(P[b])) * inv, 1e-12));
        P[a] = P[b] = v;
      }
    for (int i = 0; i < n; ++i) P[static_cast<std::size_t>(i) * n + i] = 0.0f;
  }

  // Coordinates as two arrays (x then y) so that the inner loop vectorises.
  const auto nz = static_cast<std::size_t>(n);
  std::vector<double> yx(nz), yy(nz), upd(2 * nz, 0.0), gains(2 * nz, 1.0), attract(2 * nz), repulse(2 * nz),
      zrow(nz);
  {
    generator gen(seed);
    for (std::size_t i = 0; i < nz; ++i) yx[i] = 1e-4 * gen.normal(), yy[i] = 1e-4 * gen.normal();
  }
  const double eta = std::max(200.0, double(n) / 12.0);
  const int exaggeration_iters = 250;
  for (int it = 0; it < iterations; ++it) {
    const double exaggeration = it < exaggeration_iters ? 12.0 : 1.0;
    const double momentum = it < exaggeration_iters ? 0.5 : 0.8;
    // dC/dy_i = 4 sum_j (ex p_ij - w_ij / Z) w_ij (y_i - y_j), w = 1 / (1 + |y_i - y_j|^2),
    // Z = sum_{k != l} w_kl. One pass per row gathers sum_j p w (y_i - y_j),
    // sum_j w^2 (y_i - y_j) and the row's part of Z; Z is summed in row order
    // afterwards so that the result does not depend on the thread count.
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (int i = 0; i < n; ++i) {
      const double xi = yx[static_cast<std::size_t>(i)], yi = yy[static_cast<std::size_t>(i)];
      const float* pi = P.data() + static_cast<std::size_t>(i) * n;
      const double* px = yx.data();
      const double* py = yy.data();
      double ax = 0, ay = 0, bx = 0, by = 0, z = 0;
#if defined(_OPENMP)
#pragma omp simd reduction(+ : ax, ay, bx, by, z)
#endif
      for (int j = 0; j < n; ++j) {
        const double dx = xi - px[j], dy = yi - py[j];
        const double w = 1.0 / (1.0 + dx * dx + dy * dy);
        const double pw = double(pi[j]) * w, ww = w * w;
        ax += pw * dx, ay += pw * dy;
        bx += ww * dx, by += ww * dy;  // j == i adds 0 (dx = dy = 0)
        z += w;
      }
      const auto k = static_cast<std::size_t>(i);
      attract[k] = ax, attract[k + nz] = ay;
      repulse[k] = bx, repulse[k + nz] = by;
      zrow[k] = z - 1.0;  // without w_ii = 1
    }
    double z = 0;
    for (double v : zrow) z += v;
    const double inv_z = 1.0 / std::max(z, 1e-300);
    for (std::size_t k = 0; k < 2 * nz; ++k) {
      const double g = 4.0 * (exaggeration * attract[k] - repulse[k] * inv_z);
      double& yk = k < nz ? yx[k] : yy[k - nz];
      gains[k] = (g > 0) != (upd[k] > 0) ? gains[k] + 0.2 : std::max(0.01, gains[k] * 0.8);
      upd[k] = momentum * upd[k] - eta * gains[k] * g;
      yk += upd[k];
    }
    double mx = 0, my = 0;
    for (std::size_t i = 0; i < nz; ++i) mx += yx[i], my += yy[i];
    mx /= n, my /= n;
    for (std::size_t i = 0; i < nz; ++i) yx[i] -= mx, yy[i] -= my;
  }
  Eigen::MatrixXf out(n, 2);
  for (int i = 0; i < n; ++i)
    out(i, 0) = static_cast<float>(yx[static_cast<std::size_t>(i)]),
    out(i, 1) = static_cast<float>(yy[static_cast<std::size_t>(i)]);
  return out;
}

// ---- embedding scatter ---------------------------------------------------------

/// The paper's Fig. S1 picture: 2-D points (n x 2, e.g. from `tsne_2d` or
/// `pca_2d`) as small dots coloured by class, the rows with `is_prototype`
/// as larger diamonds with a black outline, on equal x and y scales in a
/// framed square `size` pixels tall, the title above and a legend (the
/// classes that occur, and the prototype marker) to the right. The image is
/// `size` tall and at least `size` wide. `is_prototype` may be empty (no
/// prototypes); labels must index `pal` and `class_names`.
inline image embedding_scatter(const Eigen::MatrixXf& points2d, const std::vector<std::int64_t>& labels,
                               const std::vector<bool>& is_prototype, const std::vector<std::string>& class_names,
                               const palette& pal, std::string_view title, int size = 720) {
  const auto n = static_cast<std::size_t>(points2d.rows());
  if (points2d.cols() != 2)
    protoseg::detail::fail<shape_error>("embedding_scatter: points2d is ", points2d.rows(), " x ", points2d.cols(),
                                        ", expected n x 2");
  if (labels.size() != n)
    protoseg::detail::fail<shape_error>("embedding_scatter: ", labels.size(), " labels for ", n, " points");
  if (!is_prototype.empty() && is_prototype.size() != n)
    protoseg::detail::fail<shape_error>("embedding_scatter: is_prototype has ", is_prototype.size(),
                                        " entries for ", n, " points (give n, or none)");
  if (size < 200 || size > 8192)
    protoseg::detail::fail<value_error>("embedding_scatter: size must be in 200..8192, got ", size);
  const std::size_t num_classes = std::min(pal.size(), class_names.size());
  std::vector<char> present(num_classes, 0);
  for (std::size_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= num_classes)
      protoseg::detail::fail<value_error>("embedding_scatter: labels[", i, "] = ", labels[i],
                                          " is outside the ", num_classes, " classes (palette ", pal.size(),
                                          " colours, ", class_names.size(), " names)");
    if (!std::isfinite(points2d(Eigen::Index(i), 0)) || !std::isfinite(points2d(Eigen::Index(i), 1)))
      protoseg::detail::fail<value_error>("embedding_scatter: point ", i, " is not finite");
    present[static_cast<std::size_t>(labels[i])] = 1;
  }
  const bool any_proto = std::find(is_prototype.begin(), is_prototype.end(), true) != is_prototype.end();
  const int scale = 2, margin = 16;
  const int top = margin + line_height(scale) + 14, side = size - top - margin, left = margin;

  std::vector<legend_entry> entries;
  for (std::size_t k = 0; k < num_classes; ++k)
    if (present[k]) entries.push_back({legend_entry::kind::marker, class_names[k], pal[k], pal[k], marker::circle});
  if (any_proto)
    entries.push_back({legend_entry::kind::marker, "prototype", {200, 200, 200}, black, marker::diamond});
  detail::legend_layout lay;
  if (!entries.empty()) {
    for (const auto& e : entries) lay.column_width = std::max(lay.column_width, detail::legend_entry_width(e, scale));
    const int ne = static_cast<int>(entries.size());
    const int max_rows = std::max(1, (side + detail::legend_pitch_y - detail::legend_swatch) / detail::legend_pitch_y);
    lay.columns = (ne + max_rows - 1) / max_rows;
    lay.rows = (ne + lay.columns - 1) / lay.columns;
    lay.width = lay.columns * lay.column_width + (lay.columns - 1) * detail::legend_column_gap;
    lay.height = lay.rows * detail::legend_pitch_y - (detail::legend_pitch_y - detail::legend_swatch);
  }
  const int legend_x = left + side + 24;
  const int width = entries.empty() ? std::max(size, left + side + margin) : legend_x + lay.width + margin;
  image out = blank(std::max(width, text_width(title, scale) + 2 * margin), size);

  draw_text_centered(out, std::max(left + side / 2, margin + text_width(title, scale) / 2), margin, title, ink, scale);
  // Equal scales: the larger of the two ranges fills the square, with a border.
  double xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  if (n > 0) {
    xlo = points2d.col(0).minCoeff(), xhi = points2d.col(0).maxCoeff();
    ylo = points2d.col(1).minCoeff(), yhi = points2d.col(1).maxCoeff();
  }
  double range = std::max(xhi - xlo, yhi - ylo);
  if (!(range > 0)) range = 1;
  const double cx = 0.5 * (xlo + xhi), cy = 0.5 * (ylo + yhi);
  const double px_per_unit = (side - 2.0 * 18) / range;
  auto to_px = [&](std::size_t i) {
    const double x = left + side / 2.0 + (points2d(Eigen::Index(i), 0) - cx) * px_per_unit;
    const double y = top + side / 2.0 - (points2d(Eigen::Index(i), 1) - cy) * px_per_unit;  // y up
    return std::pair<int, int>(static_cast<int>(std::lround(x)), static_cast<int>(std::lround(y)));
  };
  // Dots in a fixed pseudo-random order, so that no class is always on top.
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < n; ++i)
    if (is_prototype.empty() || !is_prototype[i]) order.push_back(i);
  {
    generator gen(0x5ca77e7);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[gen.below(i)]);
  }
  const int dot = order.size() > 1500 ? 4 : order.size() > 300 ? 5 : 7;
  for (std::size_t i : order) {
    const auto [x, y] = to_px(i);
    const color c = pal[static_cast<std::size_t>(labels[i])];
    draw_marker(out, x, y, marker::circle, dot, c, c, 1);
  }
  for (std::size_t i = 0; i < n; ++i)
    if (!is_prototype.empty() && is_prototype[i]) {
      const auto [x, y] = to_px(i);
      draw_marker(out, x, y, marker::diamond, 19, pal[static_cast<std::size_t>(labels[i])], black, 2);
    }
  draw_rect(out, left, top, side, side, frame_grey);
  if (n == 0) draw_text_centered(out, left + side / 2, top + side / 2 - 7, "no points", soft_ink, scale);
  if (!entries.empty())
    detail::draw_legend(out, legend_x, top + std::max(0, (side - lay.height) / 2), entries, lay, scale);
  return out;
}

}  // namespace protoseg::viz
