// protoseg-fashion-demo: ProtoSeg's prototype classifier on real Fashion-MNIST
// images, trained with the library's autograd, SGD and cross-entropy.
//
// An MLP embeds each 28x28 image (784 -> hidden -> GELU -> D); the embedding is
// L2-normalised and compared by cosine similarity with C x M non-learnable,
// L2-normalised class prototypes. A class's logit is the similarity to its
// nearest prototype divided by a temperature; the loss is cross-entropy. The
// prototypes are not trained by gradient: after each step they move towards
// the mean embedding of the correctly classified samples assigned to them
// (momentum gamma, ProtoSeg's prototype update). With M > 1 a sample is assigned to the
// nearest prototype of its class (the paper's Sinkhorn assignment lives in
// the segmentation trainer). `--head softmax` trains a learnable linear
// classifier on the same embedding network instead, for comparison.
//
// Outputs (written atomically into --out): metrics.json, confusion_matrix.png,
// prototypes.png.

#include <protoseg/data/fashion_mnist.hpp>
#include <protoseg/data/image_write.hpp>
#include <protoseg/optim/sgd.hpp>
#include <protoseg/protoseg.hpp>

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

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>


namespace ps = protoseg;
namespace fs = std::filesystem;
using tensor_f = ps::tensor<float>;
using var = ps::variable<float>;

namespace {

constexpr int num_classes = 10;
constexpr int image_side = 28;
constexpr int image_pixels = image_side * image_side;
// Fashion-MNIST training-set pixel mean and standard deviation (of x / 255).
constexpr float pixel_mean = 0.2860f;
constexpr float pixel_std = 0.3530f;

// ---- options -----------------------------------------------------------------

struct options {
  int epochs = 30;
  int batch = 128;
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::uint64_t seed = 0;
  // One thread by default: on a machine whose cores are shared (CI, a laptop
  // compiling), OpenMP's barriers make 2 threads several times slower than 1.
  int threads = 1;
  std::string head = "proto";
  std::int64_t train_limit = 0;  // 0: all 60000
  std::string data_dir;
  std::string out = "runs/fashion-demo";
  int hidden = 512;
  int dim = 64;
  int prototypes = 1;
  double gamma = 0.999;
  double temperature = 0.1;
  bool flip = true;
  double progress_s = 2.0;
};

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void print_help(std::ostream& os) {
  const options d;
  os << "Usage: protoseg-fashion-demo [options]\n"
        "Trains an MLP embedding with ProtoSeg's prototype classifier (or a softmax\n"
        "baseline) on Fashion-MNIST, evaluates it on the test set and writes\n"
        "metrics.json, confusion_matrix.png and prototypes.png into --out.\n\n"
        "Options (defaults in brackets):\n"
     << "  --epochs N          training epochs [" << d.epochs << "]\n"
     << "  --batch N           batch size [" << d.batch << "]\n"
     << "  --lr X              peak SGD learning rate, cosine decay to 0 [" << d.lr << "]\n"
     << "  --momentum X        SGD momentum (Nesterov) [" << d.momentum << "]\n"
     << "  --weight-decay X    SGD weight decay [" << d.weight_decay << "]\n"
     << "  --seed N            random seed (initialisation, shuffling) [" << d.seed << "]\n"
     << "  --threads N         CPU threads, 0 = all (OpenMP default); more than 1 helps\n"
     << "                      only on otherwise idle cores [" << d.threads << "]\n"
     << "  --head proto|softmax  prototype classifier or learnable linear classifier [" << d.head << "]\n"
     << "  --train-limit N     use only the first N training images, 0 = all [" << d.train_limit << "]\n"
     << "  --data-dir DIR      Fashion-MNIST directory [$" << ps::data::fashion_mnist_env << " or "
     << ps::data::fashion_mnist_default_dir << "]\n"
     << "  --out DIR           output directory [" << d.out << "]\n"
     << "  --hidden N          hidden width of the MLP [" << d.hidden << "]\n"
     << "  --dim N             embedding dimension D [" << d.dim << "]\n"
     << "  --prototypes M      prototypes per class (proto head); a sample goes to the nearest\n"
     << "                      of its class (no Sinkhorn balancing, so some may stay unused) [" << d.prototypes << "]\n"
     << "  --gamma X           prototype momentum, in [0, 1) [" << d.gamma << "]\n"
     << "  --temperature X     logit temperature of the proto head [" << d.temperature << "]\n"
     << "  --flip on|off       random horizontal flips of training images [" << (d.flip ? "on" : "off") << "]\n"
     << "  --progress-every S  seconds between progress lines [" << d.progress_s << "]\n"
     << "  --help              this text\n";
}

template <class N>
N parse_number(const std::string& flag, const std::string& text) {
  N value{};
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (text.empty() || ec != std::errc() || ptr != last)
    throw usage_error(flag + ": '" + text + "' is not a valid " +
                      (std::is_floating_point_v<N> ? "number" : "integer"));
  if constexpr (std::is_floating_point_v<N>)
    if (!std::isfinite(value)) throw usage_error(flag + ": '" + text + "' is not finite");
  return value;
}

options parse_args(int argc, char** argv, bool& help) {
  options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i], value;
    bool has_value = false;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    if (flag == "--help" || flag == "-h") {
      help = true;
      return o;
    }
    if (flag.rfind("--", 0) != 0) throw usage_error("unexpected argument '" + flag + "' (options start with --)");
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= args.size()) throw usage_error(flag + " needs a value");
      return args[++i];
    };
    auto positive = [&](int v) {
      if (v < 1) throw usage_error(flag + " must be >= 1, got " + std::to_string(v));
      return v;
    };
    if (flag == "--epochs") o.epochs = positive(parse_number<int>(flag, next()));
    else if (flag == "--batch") o.batch = positive(parse_number<int>(flag, next()));
    else if (flag == "--lr") o.lr = parse_number<double>(flag, next());
    else if (flag == "--momentum") o.momentum = parse_number<double>(flag, next());
    else if (flag == "--weight-decay") o.weight_decay = parse_number<double>(flag, next());
    else if (flag == "--seed") o.seed = parse_number<std::uint64_t>(flag, next());
    else if (flag == "--threads") o.threads = parse_number<int>(flag, next());
    else if (flag == "--head") o.head = next();
    else if (flag == "--train-limit") o.train_limit = parse_number<std::int64_t>(flag, next());
    else if (flag == "--data-dir") o.data_dir = next();
    else if (flag == "--out") o.out = next();
    else if (flag == "--hidden") o.hidden = positive(parse_number<int>(flag, next()));
    else if (flag == "--dim") o.dim = positive(parse_number<int>(flag, next()));
    else if (flag == "--prototypes") o.prototypes = positive(parse_number<int>(flag, next()));
    else if (flag == "--gamma") o.gamma = parse_number<double>(flag, next());
    else if (flag == "--temperature") o.temperature = parse_number<double>(flag, next());
    else if (flag == "--flip") {
      const std::string v = next();
      if (v != "on" && v != "off") throw usage_error("--flip must be 'on' or 'off', got '" + v + "'");
      o.flip = v == "on";
    } else if (flag == "--progress-every") o.progress_s = parse_number<double>(flag, next());
    else throw usage_error("unknown option '" + flag + "' (see --help)");
  }
  if (o.head != "proto" && o.head != "softmax")
    throw usage_error("--head must be 'proto' or 'softmax', got '" + o.head + "'");
  if (!(o.lr > 0)) throw usage_error("--lr must be > 0");
  if (o.momentum < 0 || o.momentum >= 1) throw usage_error("--momentum must be in [0, 1)");
  if (o.weight_decay < 0) throw usage_error("--weight-decay must be >= 0");
  if (o.threads < 0) throw usage_error("--threads must be >= 0");
  if (o.train_limit < 0) throw usage_error("--train-limit must be >= 0");
  if (o.gamma < 0 || o.gamma >= 1) throw usage_error("--gamma must be in [0, 1)");
  if (!(o.temperature > 0)) throw usage_error("--temperature must be > 0");
  if (!(o.progress_s > 0)) throw usage_error("--progress-every must be > 0");
  if (o.out.empty()) throw usage_error("--out must not be empty");
  return o;
}

// ---- model ---------------------------------------------------------------------

/// PyTorch's nn.Linear initialisation: U(-1/sqrt(in), 1/sqrt(in)) for both.
void init_linear(var& w, var& b, std::int64_t in, std::int64_t out, ps::generator& gen) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  w = var(ps::rand<float>({in, out}, gen, -bound, bound), true);
  b = var(ps::rand<float>({out}, gen, -bound, bound), true);
}

struct model {
  var w1, b1, w2, b2;  // embedding MLP: 784 -> hidden -> GELU -> dim
  var wc, bc;          // softmax head: dim -> classes
  tensor_f protos;     // proto head: (C * M, dim), rows L2-normalised, no gradient
  bool proto = true;
  int m = 1;
  float inv_temperature = 10.0f;

  model(const options& o, ps::generator& gen) : proto(o.head == "proto"), m(o.prototypes) {
    init_linear(w1, b1, image_pixels, o.hidden, gen);
    init_linear(w2, b2, o.hidden, o.dim, gen);
    inv_temperature = static_cast<float>(1.0 / o.temperature);
    if (proto) {
      // ProtoSeg initialises prototypes with trunc_normal(std 0.02) and normalises them.
      protos = ps::l2_normalize(ps::trunc_normal<float>({num_classes * m, o.dim}, gen, 0.02f, -2.0f, 2.0f), 1);
    } else {
      init_linear(wc, bc, o.dim, num_classes, gen);
    }
  }

  std::vector<var> parameters() const {
    std::vector<var> p{w1, b1, w2, b2};
    if (!proto) p.insert(p.end(), {wc, bc});
    return p;
  }

  struct output {
    var logits;        // (B, C)
    tensor_f embed;    // (B, D), L2-normalised (proto head)
    tensor_f scores;   // (B, C, M) cosine similarities (proto head); logits for softmax
  };

  output forward(const tensor_f& x) const {
    const var input(x, false);
    var h = ps::gelu(ps::matmul(input, w1) + b1);
    var e = ps::matmul(h, w2) + b2;
    output out;
    if (proto) {
      var z = ps::l2_normalize(e, 1);
      var s = ps::reshape(ps::matmul(z, var(protos, false), false, true), {x.size(0), num_classes, m});
      out.logits = ps::max(s, 2) * inv_temperature;
      out.embed = z.value();
      out.scores = s.value();
    } else {
      out.logits = ps::matmul(e, wc) + bc;
      out.scores = out.logits.value().reshape({x.size(0), num_classes, 1});
    }
    return out;
  }

  /// ProtoSeg's momentum update of the prototypes from the correctly classified
  /// samples of a batch: each goes to the nearest prototype of its class;
  /// p <- normalise(gamma p + (1 - gamma) normalise(sum of its embeddings)).
  void update_prototypes(const output& out, const ps::tensor<std::int64_t>& labels, double gamma) {
    const std::int64_t b = labels.numel(), d = out.embed.size(1);
    const auto pred = ps::argmax(out.logits.value(), 1);
    std::vector<float> sums(static_cast<std::size_t>(num_classes * m * d), 0.0f);
    std::vector<int> counts(static_cast<std::size_t>(num_classes * m), 0);
    const float* z = out.embed.data();
    const float* s = out.scores.data();
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int64_t c = labels.data()[i];
      if (pred.data()[i] != c) continue;
      const float* si = s + (i * num_classes + c) * m;
      const std::int64_t k = c * m + (std::max_element(si, si + m) - si);
      counts[static_cast<std::size_t>(k)]++;
      float* dst = sums.data() + k * d;
      for (std::int64_t j = 0; j < d; ++j) dst[j] += z[i * d + j];
    }
    float* p = protos.data();
    for (std::int64_t k = 0; k < num_classes * m; ++k) {
      if (!counts[static_cast<std::size_t>(k)]) continue;
      float* f = sums.data() + k * d;
      float* pk = p + k * d;
      double nf = 0;
      for (std::int64_t j = 0; j < d; ++j) nf += double(f[j]) * f[j];
      const float inv_f = nf > 0 ? static_cast<float>(1.0 / std::sqrt(nf)) : 0.0f;
      double np = 0;
      for (std::int64_t j = 0; j < d; ++j) {
        pk[j] = static_cast<float>(gamma * pk[j] + (1.0 - gamma) * f[j] * inv_f);
        np += double(pk[j]) * pk[j];
      }
      const float inv_p = np > 0 ? static_cast<float>(1.0 / std::sqrt(np)) : 0.0f;
      for (std::int64_t j = 0; j < d; ++j) pk[j] *= inv_p;
    }
  }
};

/// Normalised float batch (B, 784) of the images at `idx`; with `flip_gen`,
/// each image is mirrored left-right with probability 1/2.
tensor_f make_batch(const ps::tensor<std::uint8_t>& images, const std::int64_t* idx, std::int64_t n,
                    ps::generator* flip_gen = nullptr) {
  auto x = tensor_f::empty({n, image_pixels});
  float* dst = x.data();
  const std::uint8_t* src = images.data();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint8_t* img = src + idx[i] * image_pixels;
    const bool flip = flip_gen && flip_gen->below(2) == 1;
    for (int r = 0; r < image_side; ++r)
      for (int c = 0; c < image_side; ++c)
        dst[i * image_pixels + r * image_side + c] =
            (static_cast<float>(img[r * image_side + (flip ? image_side - 1 - c : c)]) * (1.0f / 255.0f) - pixel_mean) *
            (1.0f / pixel_std);
  }
  return x;
}

ps::tensor<std::int64_t> gather_labels(const ps::tensor<std::int64_t>& labels, const std::int64_t* idx, std::int64_t n) {
  auto y = ps::tensor<std::int64_t>::empty({n});
  for (std::int64_t i = 0; i < n; ++i) y.data()[i] = labels.data()[idx[i]];
  return y;
}

std::string format_duration(double s) {
  std::ostringstream os;
  const auto total = static_cast<long>(std::lround(std::max(0.0, s)));
  if (total >= 60) os << total / 60 << "m" << std::setw(2) << std::setfill('0') << total % 60 << "s";
  else os << total << "s";
  return os.str();
}

// ---- drawing ---------------------------------------------------------------------

struct rgb {
  std::uint8_t r, g, b;
};

/// An RGB canvas with filled rectangles, text (stb_easy_font) and scaled images.
struct canvas {
  int w, h;
  std::vector<std::uint8_t> px;
  canvas(int width, int height, rgb bg) : w(width), h(height), px(static_cast<std::size_t>(width * height * 3)) {
    fill(0, 0, w, h, bg);
  }
  void put(int x, int y, rgb c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    std::uint8_t* p = px.data() + (static_cast<std::size_t>(y) * w + x) * 3;
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  void fill(int x0, int y0, int x1, int y1, rgb c) {
    for (int y = std::max(0, y0); y < std::min(h, y1); ++y)
      for (int x = std::max(0, x0); x < std::min(w, x1); ++x) put(x, y, c);
  }
  void frame(int x0, int y0, int x1, int y1, int t, rgb c) {
    fill(x0, y0, x1, y0 + t, c), fill(x0, y1 - t, x1, y1, c), fill(x0, y0, x0 + t, y1, c), fill(x1 - t, y0, x1, y1, c);
  }
  static int text_width(const std::string& s, int scale) {
    return stb_easy_font_width(const_cast<char*>(s.c_str())) * scale;
  }
  /// Text with its top-left corner at (x, y); `vertical` reads bottom to top
  /// with (x, y) the bottom-left corner of the rotated text.
  void text(int x, int y, const std::string& s, int scale, rgb c, bool vertical = false) {
    std::vector<char> buf(s.size() * 1024 + 64);  // stb_easy_font: 64 bytes per quad, <= 16 quads a glyph
    unsigned char col[4] = {255, 255, 255, 255};
    const int quads =
        stb_easy_font_print(0, 0, const_cast<char*>(s.c_str()), col, buf.data(), static_cast<int>(buf.size()));
    const auto* v = reinterpret_cast<const float*>(buf.data());  // 4 floats (x, y, z, rgba) per vertex
    for (int q = 0; q < quads; ++q) {
      const float* a = v + q * 16;
      const float qx0 = a[0], qy0 = a[1], qx1 = a[8], qy1 = a[9];
      const int u0 = static_cast<int>(std::lround(qx0 * scale)), u1 = static_cast<int>(std::lround(qx1 * scale));
      const int v0 = static_cast<int>(std::lround(qy0 * scale)), v1 = static_cast<int>(std::lround(qy1 * scale));
      if (!vertical) fill(x + u0, y + v0, x + u1, y + v1, c);
      else fill(x + v0, y - u1, x + v1, y - u0, c);
    }
  }
  void text_centered(int cx, int y, const std::string& s, int scale, rgb c) {
    text(cx - text_width(s, scale) / 2, y, s, scale, c);
  }
  /// A 28x28 gray image scaled by an integer factor at (x, y).
  void image(int x, int y, const float* gray, int scale) {
    for (int r = 0; r < image_side; ++r)
      for (int q = 0; q < image_side; ++q) {
        const auto g = static_cast<std::uint8_t>(std::clamp(gray[r * image_side + q], 0.0f, 255.0f) + 0.5f);
        fill(x + q * scale, y + r * scale, x + (q + 1) * scale, y + (r + 1) * scale, {g, g, g});
      }
  }
  ps::tensor<std::uint8_t> to_tensor() const { return ps::tensor<std::uint8_t>::from_vector(px, {h, w, 3}); }
};

/// A sequential white -> blue colour map (ColorBrewer "Blues"-like).
rgb blues(double t) {
  static constexpr std::array<rgb, 6> stops = {
      rgb{247, 251, 255}, rgb{198, 219, 239}, rgb{107, 174, 214}, rgb{49, 130, 189}, rgb{8, 81, 156}, rgb{8, 38, 90}};
  t = std::clamp(t, 0.0, 1.0) * (stops.size() - 1);
  const auto i = std::min<std::size_t>(static_cast<std::size_t>(t), stops.size() - 2);
  const double f = t - static_cast<double>(i);
  auto mix = [&](std::uint8_t a, std::uint8_t b) { return static_cast<std::uint8_t>(std::lround(a + (b - a) * f)); };
  return {mix(stops[i].r, stops[i + 1].r), mix(stops[i].g, stops[i + 1].g), mix(stops[i].b, stops[i + 1].b)};
}

constexpr rgb ink{30, 30, 30};
constexpr rgb white{255, 255, 255};

std::string percent(double x, int decimals) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(decimals) << 100.0 * x;
  return os.str();
}

ps::tensor<std::uint8_t> draw_confusion(const std::vector<std::int64_t>& cm, const std::string& title) {
  const int cell = 64, left = 190, top = 80, right = 150, bottom = 150;
  const int grid = cell * num_classes;
  canvas cv(left + grid + right, top + grid + bottom, white);
  cv.text_centered(left + grid / 2, 20, title, 2, ink);
  cv.text_centered(left + grid / 2, 50, "rows: true class, columns: predicted class, cells: % of the row", 2,
                   {90, 90, 90});
  for (int r = 0; r < num_classes; ++r) {
    std::int64_t row = 0;
    for (int c = 0; c < num_classes; ++c) row += cm[static_cast<std::size_t>(r * num_classes + c)];
    for (int c = 0; c < num_classes; ++c) {
      const double f = row ? double(cm[static_cast<std::size_t>(r * num_classes + c)]) / double(row) : 0.0;
      const int x = left + c * cell, y = top + r * cell;
      cv.fill(x, y, x + cell, y + cell, blues(std::sqrt(f)));  // sqrt: small confusions stay visible
      if (f >= 0.0005) {
        const std::string s = f >= 0.995 ? "100" : percent(f, f >= 0.1 ? 0 : 1);
        cv.text_centered(x + cell / 2, y + cell / 2 - 7, s, 2, std::sqrt(f) > 0.55 ? white : ink);
      }
    }
    const std::string name(ps::data::fashion_mnist_classes[static_cast<std::size_t>(r)]);
    cv.text(left - 12 - canvas::text_width(name, 2), top + r * cell + cell / 2 - 7, name, 2, ink);
    cv.text(left + r * cell + cell / 2 - 7, top + grid + 10 + canvas::text_width(name, 2), name, 2, ink, true);
  }
  cv.frame(left - 1, top - 1, left + grid + 1, top + grid + 1, 1, {120, 120, 120});
  for (int i = 1; i < num_classes; ++i) {
    cv.fill(left + i * cell, top, left + i * cell + 1, top + grid, {230, 230, 230});
    cv.fill(left, top + i * cell, left + grid, top + i * cell + 1, {230, 230, 230});
  }
  // colour bar
  const int bx = left + grid + 30, bw = 24;
  for (int y = 0; y < grid; ++y) cv.fill(bx, top + y, bx + bw, top + y + 1, blues(std::sqrt(1.0 - double(y) / grid)));
  cv.frame(bx - 1, top - 1, bx + bw + 1, top + grid + 1, 1, {120, 120, 120});
  for (double v : {1.0, 0.5, 0.2, 0.05, 0.0}) {
    const int y = top + static_cast<int>(std::lround((1.0 - std::sqrt(v)) * grid));
    cv.fill(bx + bw, y, bx + bw + 5, y + 1, ink);
    cv.text(bx + bw + 8, y - 7, percent(v, 0) + "%", 2, ink);
  }
  return cv.to_tensor();
}

struct proto_picture {
  std::vector<double> mean_images;           // (C*M, 784) mean raw pixel values of the assigned train images
  std::vector<std::int64_t> mean_counts;     // (C*M)
  std::vector<std::vector<std::int64_t>> nearest;  // per prototype: test indices, best first
};

ps::tensor<std::uint8_t> draw_prototypes(const proto_picture& pic, const ps::tensor<std::uint8_t>& test_images,
                                         const ps::tensor<std::int64_t>& test_labels, int m, const std::string& title,
                                         const std::string& mean_caption, const std::string& nearest_caption) {
  const int rows = num_classes * m;
  auto row_name = [&](int r) {
    std::string name(ps::data::fashion_mnist_classes[static_cast<std::size_t>(r / m)]);
    return m > 1 ? name + " #" + std::to_string(r % m + 1) : name;
  };
  int label_width = 0;
  for (int r = 0; r < rows; ++r) label_width = std::max(label_width, canvas::text_width(row_name(r), 2));
  const int scale = 3, tile = image_side * scale, pad = 6, left = std::max(170, label_width + 34), top = 112;
  const int k = pic.nearest.empty() ? 0 : static_cast<int>(pic.nearest[0].size());
  const int x_nearest = left + tile + 40;
  canvas cv(x_nearest + k * (tile + pad) + 20, top + rows * (tile + pad) + 20, white);
  cv.text(20, 16, title, 3, ink);
  cv.text(20, 52, mean_caption, 2, {70, 70, 70});
  cv.text(20, 74, nearest_caption, 2, {70, 70, 70});
  std::vector<float> buf(image_pixels);
  for (int r = 0; r < rows; ++r) {
    const int y = top + r * (tile + pad);
    const int c = r / m;
    const std::string name = row_name(r);
    cv.text(left - 14 - canvas::text_width(name, 2), y + tile / 2 - 7, name, 2, ink);
    if (const auto n = pic.mean_counts[static_cast<std::size_t>(r)]) {
      for (int j = 0; j < image_pixels; ++j)
        buf[static_cast<std::size_t>(j)] = static_cast<float>(pic.mean_images[static_cast<std::size_t>(r) * image_pixels + j]);
      cv.image(left, y, buf.data(), scale);
    } else {  // no training image is assigned to this prototype
      cv.fill(left, y, left + tile, y + tile, {235, 235, 235});
      cv.text_centered(left + tile / 2, y + tile / 2 - 4, "unused", 1, {90, 90, 90});
    }
    cv.frame(left - 2, y - 2, left + tile + 2, y + tile + 2, 2, {40, 90, 170});
    for (int i = 0; i < k; ++i) {
      const std::int64_t t = pic.nearest[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)];
      const std::uint8_t* img = test_images.data() + t * image_pixels;
      for (int j = 0; j < image_pixels; ++j) buf[static_cast<std::size_t>(j)] = img[j];
      const int x = x_nearest + i * (tile + pad);
      cv.image(x, y, buf.data(), scale);
      const bool same = test_labels.data()[t] == c;
      cv.frame(x - 2, y - 2, x + tile + 2, y + tile + 2, 2, same ? rgb{40, 160, 60} : rgb{210, 40, 40});
    }
  }
  return cv.to_tensor();
}

// ---- JSON ------------------------------------------------------------------------

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\', o += ch;
    else if (static_cast<unsigned char>(ch) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", ch);
      o += b;
    } else o += ch;
  }
  return o + "\"";
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  std::ostringstream os;
  os << std::setprecision(6) << x;
  return os.str();
}

// ---- evaluation -------------------------------------------------------------------

struct eval_result {
  double loss = 0, accuracy = 0;
  std::vector<std::int64_t> confusion;  // (C, C): row = true, column = predicted
  std::vector<float> scores;            // (N, C*M)
};

eval_result evaluate(const model& net, const ps::data::fashion_mnist_data& data, std::int64_t batch) {
  ps::no_grad guard;
  eval_result r;
  const std::int64_t n = data.size(), cm = num_classes * net.m;
  r.confusion.assign(num_classes * num_classes, 0);
  r.scores.resize(static_cast<std::size_t>(n * cm));
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  double loss_sum = 0;
  std::int64_t correct = 0;
  for (std::int64_t s = 0; s < n; s += batch) {
    const std::int64_t b = std::min(batch, n - s);
    const auto x = make_batch(data.images, idx.data() + s, b);
    const auto y = gather_labels(data.labels, idx.data() + s, b);
    const auto out = net.forward(x);
    loss_sum += double(ps::cross_entropy(out.logits, y).value().item()) * double(b);
    const auto pred = ps::argmax(out.logits.value(), 1);
    for (std::int64_t i = 0; i < b; ++i) {
      const auto t = y.data()[i], p = pred.data()[i];
      correct += t == p;
      r.confusion[static_cast<std::size_t>(t * num_classes + p)]++;
    }
    std::copy(out.scores.data(), out.scores.data() + b * cm, r.scores.begin() + s * cm);
  }
  r.loss = loss_sum / double(n);
  r.accuracy = double(correct) / double(n);
  return r;
}

int run(const options& o) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };

  ps::set_num_threads(o.threads);
  const int threads = ps::num_threads();
  const fs::path out_dir(o.out);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir))
    ps::detail::fail<ps::io_error>("cannot create the output directory '", out_dir.string(), "'",
                                   ec ? ": " + ec.message() : std::string());

  const fs::path data_dir = ps::data::fashion_mnist_dir(o.data_dir);
  std::cout << "protoseg-fashion-demo: Fashion-MNIST from " << data_dir.string() << ", head " << o.head << ", "
            << threads << " thread(s), seed " << o.seed << "\n";
  auto train = ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::train, data_dir);
  const auto test = ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::test, data_dir);
  if (o.train_limit > 0 && o.train_limit < train.size()) {
    train.images = train.images.narrow0(0, o.train_limit);
    train.labels = train.labels.narrow0(0, o.train_limit);
  }
  const std::int64_t n_train = train.size();
  std::cout << "  " << n_train << " training images, " << test.size() << " test images, " << o.epochs
            << " epochs of batch " << o.batch << "\n";

  ps::generator gen(o.seed);
  model net(o, gen);
  ps::optim::sgd<float> opt(net.parameters(), {.lr = o.lr, .momentum = o.momentum,
                                               .weight_decay = o.weight_decay, .nesterov = o.momentum > 0});

  const std::int64_t iters_per_epoch = (n_train + o.batch - 1) / o.batch;
  const std::int64_t total_iters = iters_per_epoch * o.epochs;
  std::vector<std::int64_t> order(static_cast<std::size_t>(n_train));
  std::iota(order.begin(), order.end(), 0);
  const auto t_train = clock::now();
  auto t_print = t_train;
  std::int64_t iter = 0, seen = 0;
  double last_epoch_loss = 0, last_epoch_acc = 0;
  constexpr double pi = 3.14159265358979323846;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    for (std::int64_t i = n_train - 1; i > 0; --i)  // Fisher-Yates with the seeded generator
      std::swap(order[static_cast<std::size_t>(i)], order[gen.below(static_cast<std::uint64_t>(i + 1))]);
    double loss_sum = 0;
    std::int64_t correct = 0, count = 0;
    for (std::int64_t it = 0; it < iters_per_epoch; ++it, ++iter) {
      const std::int64_t s = it * o.batch, b = std::min<std::int64_t>(o.batch, n_train - s);
      const auto x = make_batch(train.images, order.data() + s, b, o.flip ? &gen : nullptr);
      const auto y = gather_labels(train.labels, order.data() + s, b);
      opt.set_lr(o.lr * 0.5 * (1.0 + std::cos(pi * double(iter) / double(total_iters))));
      auto out = net.forward(x);
      auto loss = ps::cross_entropy(out.logits, y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      if (net.proto) net.update_prototypes(out, y, o.gamma);
      const auto pred = ps::argmax(out.logits.value(), 1);
      for (std::int64_t j = 0; j < b; ++j) correct += pred.data()[j] == y.data()[j];
      const double l = loss.value().item();
      if (!std::isfinite(l))
        ps::detail::fail<ps::value_error>("training diverged: loss is ", l, " at epoch ", epoch + 1, " iteration ",
                                          it + 1, "; try a smaller --lr");
      loss_sum += l * double(b);
      count += b;
      seen += b;
      const bool last = it + 1 == iters_per_epoch;
      if (seconds_since(t_print) >= o.progress_s || last) {
        t_print = clock::now();
        const double el = seconds_since(t_train);
        const double left = el / double(iter + 1) * double(total_iters - iter - 1);
        std::cout << "epoch " << epoch + 1 << "/" << o.epochs << "  iter " << std::setw(5) << it + 1 << "/"
                  << iters_per_epoch << "  loss " << std::fixed << std::setprecision(4) << loss_sum / double(count)
                  << "  train acc " << std::setprecision(1) << 100.0 * double(correct) / double(count) << "%  "
                  << std::setprecision(0) << double(seen) / el << " samples/s  lr " << std::setprecision(4)
                  << opt.lr() << "  elapsed " << format_duration(el) << "  left " << format_duration(left)
                  << std::defaultfloat << std::endl;
      }
    }
    last_epoch_loss = loss_sum / double(count);
    last_epoch_acc = double(correct) / double(count);
  }
  const double train_s = seconds_since(t_train);

  const auto t_eval = clock::now();
  const std::int64_t eval_batch = 1000;
  const auto res = evaluate(net, test, eval_batch);
  const double eval_s = seconds_since(t_eval);
  std::vector<double> per_class(num_classes);
  for (int c = 0; c < num_classes; ++c) {
    std::int64_t row = 0;
    for (int p = 0; p < num_classes; ++p) row += res.confusion[static_cast<std::size_t>(c * num_classes + p)];
    per_class[static_cast<std::size_t>(c)] =
        row ? double(res.confusion[static_cast<std::size_t>(c * num_classes + c)]) / double(row) : 0.0;
  }
  std::cout << "test: accuracy " << std::fixed << std::setprecision(2) << 100.0 * res.accuracy << "%, mean loss "
            << std::setprecision(4) << res.loss << std::defaultfloat << " (training " << format_duration(train_s)
            << ", evaluation " << format_duration(eval_s) << ")\n";
  for (int c = 0; c < num_classes; ++c)
    std::cout << "  " << std::left << std::setw(12) << ps::data::fashion_mnist_classes[static_cast<std::size_t>(c)]
              << std::right << std::fixed << std::setprecision(1) << 100.0 * per_class[static_cast<std::size_t>(c)]
              << "%\n"
              << std::defaultfloat;

  // Prototype picture: mean of the training images assigned to each
  // prototype (correctly classified, nearest prototype of their class) and
  // the test images with the highest scores for it.
  const std::int64_t cm = num_classes * net.m;
  proto_picture pic;
  pic.mean_images.assign(static_cast<std::size_t>(cm * image_pixels), 0.0);
  pic.mean_counts.assign(static_cast<std::size_t>(cm), 0);
  {
    ps::no_grad guard;
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n_train));
    std::iota(idx.begin(), idx.end(), 0);
    for (std::int64_t s = 0; s < n_train; s += eval_batch) {
      const std::int64_t b = std::min(eval_batch, n_train - s);
      const auto out = net.forward(make_batch(train.images, idx.data() + s, b));
      const auto pred = ps::argmax(out.logits.value(), 1);
      for (std::int64_t i = 0; i < b; ++i) {
        const std::int64_t c = train.labels.data()[s + i];
        if (pred.data()[i] != c) continue;
        const float* si = out.scores.data() + (i * num_classes + c) * net.m;
        const std::int64_t k = c * net.m + (std::max_element(si, si + net.m) - si);
        pic.mean_counts[static_cast<std::size_t>(k)]++;
        const std::uint8_t* img = train.images.data() + (s + i) * image_pixels;
        double* dst = pic.mean_images.data() + k * image_pixels;
        for (int j = 0; j < image_pixels; ++j) dst[j] += img[j];
      }
    }
    for (std::int64_t k = 0; k < cm; ++k)
      if (const auto n = pic.mean_counts[static_cast<std::size_t>(k)])
        for (int j = 0; j < image_pixels; ++j) pic.mean_images[static_cast<std::size_t>(k * image_pixels + j)] /= double(n);
    const int nearest = 8;
    std::vector<std::int64_t> ids(static_cast<std::size_t>(test.size()));
    for (std::int64_t k = 0; k < cm; ++k) {
      std::iota(ids.begin(), ids.end(), 0);
      auto score = [&](std::int64_t t) { return res.scores[static_cast<std::size_t>(t * cm + k)]; };
      std::partial_sort(ids.begin(), ids.begin() + nearest, ids.end(), [&](std::int64_t a, std::int64_t b) {
        return score(a) > score(b) || (score(a) == score(b) && a < b);
      });
      pic.nearest.emplace_back(ids.begin(), ids.begin() + nearest);
    }
  }

  const std::string head_name = net.proto ? "prototype head (M=" + std::to_string(net.m) + ")" : "softmax head";
  const fs::path cm_png = out_dir / "confusion_matrix.png", proto_png = out_dir / "prototypes.png",
                 metrics_json = out_dir / "metrics.json";
  ps::data::write_png(cm_png, draw_confusion(res.confusion, "Fashion-MNIST test set, " + head_name + ": accuracy " +
                                                                percent(res.accuracy, 2) + "%"));
  ps::data::write_png(
      proto_png,
      draw_prototypes(pic, test.images, test.labels, net.m,
                      net.proto ? "Prototypes (momentum means, not trained by gradient)"
                                : "Softmax head (learnable linear classifier)",
                      net.proto ? "Blue: mean of the correctly classified training images assigned to it."
                                : "Blue: mean of the correctly classified training images of the class.",
                      net.proto ? "Then the 8 nearest test images (cosine); green = same class, red = other."
                                : "Then the 8 test images of highest logit; green = same class, red = other."));

  const double total_s = seconds_since(t_start);
  std::ostringstream js;
  js << "{\n  \"program\": \"protoseg-fashion-demo\",\n  \"dataset\": \"fashion-mnist\",\n"
     << "  \"head\": " << json_string(o.head) << ",\n"
     << "  \"test_accuracy\": " << json_number(res.accuracy) << ",\n"
     << "  \"test_mean_loss\": " << json_number(res.loss) << ",\n"
     << "  \"per_class_accuracy\": {";
  for (int c = 0; c < num_classes; ++c)
    js << (c ? ", " : "") << json_string(std::string(ps::data::fashion_mnist_classes[static_cast<std::size_t>(c)]))
       << ": " << json_number(per_class[static_cast<std::size_t>(c)]);
  js << "},\n  \"train_mean_loss_last_epoch\": " << json_number(last_epoch_loss) << ",\n"
     << "  \"train_accuracy_last_epoch\": " << json_number(last_epoch_acc) << ",\n"
     << "  \"train_time_s\": " << json_number(train_s) << ",\n"
     << "  \"eval_time_s\": " << json_number(eval_s) << ",\n"
     << "  \"total_time_s\": " << json_number(total_s) << ",\n"
     << "  \"train_samples_per_s\": " << json_number(double(seen) / train_s) << ",\n"
     << "  \"train_images\": " << n_train << ",\n  \"test_images\": " << test.size() << ",\n"
     << "  \"iterations\": " << total_iters << ",\n"
     << "  \"confusion_matrix\": [";
  for (int r = 0; r < num_classes; ++r) {
    js << (r ? ",\n    [" : "\n    [");
    for (int c = 0; c < num_classes; ++c) js << (c ? ", " : "") << res.confusion[static_cast<std::size_t>(r * num_classes + c)];
    js << "]";
  }
  js << "\n  ],\n  \"options\": {\"epochs\": " << o.epochs << ", \"batch\": " << o.batch
     << ", \"lr\": " << json_number(o.lr) << ", \"momentum\": " << json_number(o.momentum)
     << ", \"nesterov\": " << (o.momentum > 0 ? "true" : "false") << ", \"weight_decay\": " << json_number(o.weight_decay)
     << ", \"schedule\": \"cosine\", \"seed\": " << o.seed << ", \"threads\": " << threads
     << ", \"train_limit\": " << o.train_limit << ", \"hidden\": " << o.hidden << ", \"dim\": " << o.dim
     << ", \"prototypes\": " << o.prototypes << ", \"gamma\": " << json_number(o.gamma)
     << ", \"temperature\": " << json_number(o.temperature) << ", \"flip\": " << (o.flip ? "true" : "false") << ", \"data_dir\": " << json_string(data_dir.string())
     << "}\n}\n";
  ps::data::write_file_atomically(metrics_json, js.str());

  std::cout << "wrote " << metrics_json.string() << ", " << cm_png.string() << ", " << proto_png.string() << " ("
            << format_duration(total_s) << " in all)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool help = false;
  options o;
  try {
    o = parse_args(argc, argv, help);
  } catch (const usage_error& e) {
    std::cerr << "protoseg-fashion-demo: " << e.what() << "\n(run with --help for the options)\n";
    return 2;
  }
  if (help) {
    print_help(std::cout);
    return 0;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "protoseg-fashion-demo: error: " << e.what() << "\n";
    return 1;
  }
}
