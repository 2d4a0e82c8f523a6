// Tests of protoseg::data (IDX reader, Fashion-MNIST, PNG writer),
// protoseg::optim::sgd, and a short training run of the demo's model.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/data/fashion_mnist.hpp>
#include <protoseg/data/idx.hpp>
#include <protoseg/data/image_write.hpp>
#include <protoseg/optim/sgd.hpp>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <zlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace ps = protoseg;
using protoseg_test::close;

namespace {

/// A fresh directory under the system temporary directory, removed at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("protoseg_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void write_gz(const fs::path& p, const std::string& bytes) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

/// An IDX byte string: magic 0x0000 <dtype> <rank>, big-endian dimensions, payload.
std::string idx_bytes(std::uint8_t dtype, const std::vector<std::uint32_t>& dims, const std::string& payload) {
  std::string s{'\0', '\0', static_cast<char>(dtype), static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int shift : {24, 16, 8, 0}) s += static_cast<char>((d >> shift) & 0xff);
  return s + payload;
}

std::string pattern(std::size_t n, int mod = 251) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % static_cast<std::size_t>(mod));
  return s;
}

/// Runs f and returns the io_error message (fails the test if none is thrown).
template <class F>
std::string io_error_of(F f) {
  try {
    f();
  } catch (const ps::io_error& e) {
    return e.what();
  }
  FAIL("expected protoseg::io_error");
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---- IDX and Fashion-MNIST ------------------------------------------------------------

TEST_CASE("fashion_mnist: the real Debian files load with the documented shapes and labels") {
  const fs::path dir = ps::data::fashion_mnist_dir();
  INFO("Fashion-MNIST directory: ", dir.string(), " (Debian package dataset-fashion-mnist)");
  const auto train = ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::train, dir);
  CHECK(train.images.shape() == ps::shape{60000, 28, 28});
  CHECK(train.labels.shape() == ps::shape{60000});
  const auto l = train.labels.to_vector();
  CHECK(*std::min_element(l.begin(), l.end()) == 0);
  CHECK(*std::max_element(l.begin(), l.end()) == 9);
  CHECK(std::vector<std::int64_t>(l.begin(), l.begin() + 5) == std::vector<std::int64_t>{9, 0, 0, 3, 0});
  // 6000 images per class.
  for (std::int64_t c = 0; c < 10; ++c) CHECK(std::count(l.begin(), l.end(), c) == 6000);
  // Sum of the first image's pixels (checked against Python's gzip module).
  const auto first = train.images.select(0).to_vector();
  CHECK(std::accumulate(first.begin(), first.end(), std::int64_t{0}) == 76247);

  const auto test = ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::test, dir);
  CHECK(test.images.shape() == ps::shape{10000, 28, 28});
  CHECK(test.labels.to_vector()[1] == 2);
  CHECK(ps::data::fashion_mnist_classes[9] == "Ankle boot");
}

TEST_CASE("idx: reads plain and gzip files and checks the header against the data") {
  temp_dir tmp;
  const std::string payload = pattern(2 * 3 * 4);
  write_gz(tmp.path / "ok.gz", idx_bytes(0x08, {2, 3, 4}, payload));
  write_bytes(tmp.path / "plain.idx", idx_bytes(0x08, {2, 3, 4}, payload));
  for (const char* name : {"ok.gz", "plain.idx"}) {
    const auto t = ps::data::read_idx_u8(tmp.path / name);
    CHECK(t.shape() == ps::shape{2, 3, 4});
    const auto v = t.to_vector();
    CHECK(std::string(v.begin(), v.end()) == payload);
  }
  const auto h = ps::data::read_idx_header(tmp.path / "ok.gz");
  CHECK(h.dtype == ps::data::idx_dtype::u8);
  CHECK(h.dims == std::vector<std::int64_t>{2, 3, 4});
}

TEST_CASE("idx: missing, truncated and corrupt files throw io_error naming the file and the problem") {
  temp_dir tmp;
  auto msg = [&](const std::string& name, int rank = 0) {
    return io_error_of([&] { (void)ps::data::read_idx_u8(tmp.path / name, rank); });
  };

  std::string m = msg("missing.gz");
  CHECK(contains(m, "missing.gz"));
  CHECK(contains(m, "does not exist"));

  write_bytes(tmp.path / "empty.gz", "");
  m = msg("empty.gz");
  CHECK(contains(m, "empty.gz"));
  CHECK(contains(m, "shorter than the 4-byte IDX magic"));

  write_gz(tmp.path / "magic.gz", "\x12\x34\x56\x78 and more");
  m = msg("magic.gz");
  CHECK(contains(m, "magic.gz"));
  CHECK(contains(m, "bad magic number 0x12345678"));

  write_gz(tmp.path / "float.gz", idx_bytes(0x0D, {2}, std::string(8, '\0')));
  m = msg("float.gz");
  CHECK(contains(m, "element type is float32 (0x0D)"));

  write_gz(tmp.path / "rank.gz", idx_bytes(0x08, {4}, "abcd"));
  CHECK(contains(msg("rank.gz", 3), "rank 1, expected 3"));

  write_gz(tmp.path / "header.gz", idx_bytes(0x08, {10, 28, 28}, "").substr(0, 10));
  CHECK(contains(msg("header.gz"), "truncated header"));

  write_gz(tmp.path / "short.gz", idx_bytes(0x08, {10, 28, 28}, pattern(500)));
  m = msg("short.gz");
  CHECK(contains(m, "short.gz"));
  CHECK(contains(m, "truncated"));
  CHECK(contains(m, "need 7840 bytes"));
  CHECK(contains(m, "only 500"));

  write_gz(tmp.path / "long.gz", idx_bytes(0x08, {2, 2}, pattern(5)));
  CHECK(contains(msg("long.gz"), "more data than the header"));

  // A gzip stream cut in the middle, and one with damaged compressed bytes.
  const std::string big = idx_bytes(0x08, {64, 64, 64}, pattern(64 * 64 * 64, 239));
  write_gz(tmp.path / "full.gz", big);
  const std::string gz = read_bytes(tmp.path / "full.gz");
  REQUIRE(gz.size() > 200);
  write_bytes(tmp.path / "cut.gz", gz.substr(0, gz.size() / 2));
  m = msg("cut.gz");
  CHECK(contains(m, "cut.gz"));
  CHECK(contains(m, "corrupt or truncated gzip data"));
  std::string damaged = gz;
  for (std::size_t i = gz.size() / 3; i < gz.size() / 3 + 16; ++i) damaged[i] = static_cast<char>(damaged[i] ^ 0x5a);
  write_bytes(tmp.path / "damaged.gz", damaged);
  m = msg("damaged.gz");
  CHECK(contains(m, "damaged.gz"));
  CHECK((contains(m, "corrupt or truncated gzip data") || contains(m, "truncated") || contains(m, "more data")));

  fs::create_directories(tmp.path / "adir.gz");
  CHECK(contains(msg("adir.gz"), "is a directory"));
}

TEST_CASE("fashion_mnist: directory resolution and errors for missing or inconsistent files") {
  temp_dir tmp;
  // Argument beats the environment, the environment beats the Debian default.
  ::setenv("PROTOSEG_FASHION_MNIST_DIR", (tmp.path / "from-env").c_str(), 1);
  CHECK(ps::data::fashion_mnist_dir() == tmp.path / "from-env");
  CHECK(ps::data::fashion_mnist_dir("/some/where") == fs::path("/some/where"));
  ::unsetenv("PROTOSEG_FASHION_MNIST_DIR");
  CHECK(ps::data::fashion_mnist_dir() == fs::path("/usr/share/datasets/fashion-mnist"));

  std::string m = io_error_of([&] { (void)ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::train, tmp.path / "nope"); });
  CHECK(contains(m, "nope"));
  CHECK(contains(m, "dataset-fashion-mnist"));

  // Two images but three labels.
  write_gz(tmp.path / "train-images-idx3-ubyte.gz", idx_bytes(0x08, {2, 28, 28}, pattern(2 * 784)));
  write_gz(tmp.path / "train-labels-idx1-ubyte.gz", idx_bytes(0x08, {3}, std::string("\x01\x02\x03", 3)));
  m = io_error_of([&] { (void)ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::train, tmp.path); });
  CHECK(contains(m, "3 labels"));
  CHECK(contains(m, "2 images"));

  write_gz(tmp.path / "train-labels-idx1-ubyte.gz", idx_bytes(0x08, {2}, std::string("\x01\x0c", 2)));
  m = io_error_of([&] { (void)ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::train, tmp.path); });
  CHECK(contains(m, "label 12 at index 1 is out of range"));

  write_gz(tmp.path / "train-labels-idx1-ubyte.gz", idx_bytes(0x08, {2}, std::string("\x01\x09", 2)));
  const auto ok = ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::train, tmp.path);
  CHECK(ok.labels.to_vector() == std::vector<std::int64_t>{1, 9});

  m = io_error_of([&] { (void)ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::test, tmp.path); });
  CHECK(contains(m, "t10k-images-idx3-ubyte.gz"));
  CHECK(contains(m, "does not exist"));

  write_gz(tmp.path / "t10k-images-idx3-ubyte.gz", idx_bytes(0x08, {1, 14, 14}, pattern(196)));
  m = io_error_of([&] { (void)ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::test, tmp.path); });
  CHECK(contains(m, "14x14 pixels, expected 28x28"));
}

// ---- PNG writer --------------------------------------------------------------------------

namespace {
ps::tensor<std::uint8_t> test_image(std::int64_t h, std::int64_t w, std::int64_t c, int salt) {
  std::vector<std::uint8_t> v(static_cast<std::size_t>(h * w * c));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>((i * 37 + static_cast<std::size_t>(salt)) % 256);
  return c == 1 ? ps::tensor<std::uint8_t>::from_vector(v, {h, w}) : ps::tensor<std::uint8_t>::from_vector(v, {h, w, c});
}

std::vector<std::uint8_t> read_png(const fs::path& p, int& w, int& h, int& c) {
  unsigned char* data = stbi_load(p.string().c_str(), &w, &h, &c, 0);
  REQUIRE_MESSAGE(data != nullptr, "stb_image cannot read ", p.string());
  std::vector<std::uint8_t> v(data, data + static_cast<std::size_t>(w) * h * c);
  stbi_image_free(data);
  return v;
}
}  // namespace

TEST_CASE("write_png: RGB, RGBA and gray images read back identically") {
  temp_dir tmp;
  for (std::int64_t c : {1, 3, 4}) {
    const auto img = test_image(5, 7, c, int(c));
    const fs::path p = tmp.path / ("img" + std::to_string(c) + ".png");
    ps::data::write_png(p, img);
    CHECK_FALSE(fs::exists(p.string() + ".tmp"));
    int w = 0, h = 0, ch = 0;
    const auto back = read_png(p, w, h, ch);
    CHECK(w == 7);
    CHECK(h == 5);
    CHECK(ch == c);
    CHECK(back == img.to_vector());
  }
}

TEST_CASE("write_png: a failed write keeps the previous file and reports the path") {
  temp_dir tmp;
  const fs::path p = tmp.path / "keep.png";
  const auto first = test_image(4, 6, 3, 1);
  ps::data::write_png(p, first);
  const std::string before = read_bytes(p);

  // The temporary file cannot be created: a directory is in its way.
  fs::create_directories(tmp.path / "keep.png.tmp");
  const std::string m = io_error_of([&] { ps::data::write_png(p, test_image(8, 8, 3, 2)); });
  CHECK(contains(m, "keep.png"));
  CHECK(read_bytes(p) == before);
  int w = 0, h = 0, c = 0;
  CHECK(read_png(p, w, h, c) == first.to_vector());
  fs::remove(tmp.path / "keep.png.tmp");

  // A bad shape is refused before anything is written.
  CHECK_THROWS_AS(ps::data::write_png(p, ps::tensor<std::uint8_t>::from_vector(std::vector<std::uint8_t>(10, 0), {10})),
                  ps::shape_error);
  CHECK_THROWS_AS(ps::data::write_png(p, test_image(2, 2, 5, 0)), ps::shape_error);
  CHECK(read_bytes(p) == before);

  // A missing directory.
  CHECK(contains(io_error_of([&] { ps::data::write_png(tmp.path / "no" / "dir.png", first); }), "dir.png"));

  // A successful rewrite replaces the file and leaves no temporary behind.
  ps::data::write_png(p, test_image(3, 3, 3, 9));
  CHECK(read_png(p, w, h, c) == test_image(3, 3, 3, 9).to_vector());
  CHECK_FALSE(fs::exists(tmp.path / "keep.png.tmp"));
}

// ---- SGD -------------------------------------------------------------------------------

namespace {
/// Two steps of sgd on p0 = (1, -2) with loss sum(p * (0.5, 1)); returns p after each.
std::vector<std::vector<double>> sgd_two_steps(const ps::optim::sgd_options& o) {
  ps::variable<double> p(ps::tensor<double>::from_vector({1.0, -2.0}, {2}), true);
  const ps::variable<double> c(ps::tensor<double>::from_vector({0.5, 1.0}, {2}));
  ps::optim::sgd<double> opt({p}, o);
  std::vector<std::vector<double>> out;
  for (int i = 0; i < 2; ++i) {
    opt.zero_grad();
    ps::sum(p * c).backward();
    opt.step();
    out.push_back(p.value().to_vector());
  }
  return out;
}
void check_steps(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    for (std::size_t j = 0; j < 2; ++j) CHECK(got[i][j] == doctest::Approx(want[i][j]).epsilon(1e-12));
}
}  // namespace

// Expected values: torch.optim.SGD on the same problem (identical to the hand
// computation: d = g + wd p; b = d, then mu b + (1 - tau) d; d = d + mu b or b).
TEST_CASE("sgd: steps match PyTorch's rule") {
  check_steps(sgd_two_steps({.lr = 0.1}), {{0.95, -2.1}, {0.9, -2.2}});
  check_steps(sgd_two_steps({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1}), {{0.94, -2.08}, {0.8266, -2.2312}});
  check_steps(sgd_two_steps({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true}),
              {{0.886, -2.152}, {0.725566, -2.365912}});
  check_steps(sgd_two_steps({.lr = 0.1, .momentum = 0.9, .dampening = 0.5}), {{0.95, -2.1}, {0.88, -2.24}});
}

TEST_CASE("sgd: zero_grad, parameters without gradient, learning-rate changes and bad options") {
  ps::variable<float> a(ps::tensor<float>::from_vector({1.0f, 2.0f}, {2}), true);
  ps::variable<float> b(ps::tensor<float>::from_vector({3.0f}, {1}), true);
  ps::optim::sgd<float> opt({a, b}, {.lr = 0.5, .momentum = 0.9});
  ps::sum(a * a).backward();  // grad a = 2a, b has none
  CHECK(a.has_grad());
  CHECK_FALSE(b.has_grad());
  opt.step();
  CHECK(close(a.value(), std::vector<double>{0.0, 0.0}));
  CHECK(close(b.value(), std::vector<double>{3.0}));
  CHECK_FALSE(opt.momentum_buffer(1).defined());
  opt.zero_grad();
  CHECK_FALSE(a.has_grad());
  opt.set_lr(0.25);
  CHECK(opt.lr() == 0.25);
  CHECK_THROWS_AS(opt.set_lr(-1.0), ps::value_error);

  CHECK_THROWS_AS(ps::optim::sgd<float>({a}, {.lr = -0.1}), ps::value_error);
  CHECK_THROWS_AS(ps::optim::sgd<float>({a}, {.lr = 0.1, .nesterov = true}), ps::value_error);
  CHECK_THROWS_AS(ps::optim::sgd<float>({a}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                  ps::value_error);
  CHECK_THROWS_AS(ps::optim::sgd<float>({a}, {.lr = 0.1, .weight_decay = -1}), ps::value_error);
  CHECK_THROWS_AS(ps::optim::sgd<float>({ps::variable<float>()}, {.lr = 0.1}), ps::value_error);
}

// ---- a short demo-style training run ---------------------------------------------------------

TEST_CASE("a small MLP with the prototype head learns real Fashion-MNIST images") {
  const auto train = ps::data::load_fashion_mnist(ps::data::fashion_mnist_split::train);
  constexpr std::int64_t n = 384, batch = 32, d_in = 784, hidden = 64, dim = 16, classes = 10;
  std::vector<float> xs(static_cast<std::size_t>(n * d_in));
  const std::uint8_t* px = train.images.data();
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = (float(px[i]) / 255.0f - 0.286f) / 0.353f;
  const auto x_all = ps::tensor<float>::from_vector(xs, {n, d_in});
  const auto y_all = train.labels.narrow0(0, n);

  ps::generator gen(7);
  const float b1 = 1.0f / std::sqrt(float(d_in)), b2 = 1.0f / std::sqrt(float(hidden));
  ps::variable<float> w1(ps::rand<float>({d_in, hidden}, gen, -b1, b1), true), c1(ps::zeros<float>({hidden}), true);
  ps::variable<float> w2(ps::rand<float>({hidden, dim}, gen, -b2, b2), true), c2(ps::zeros<float>({dim}), true);
  auto protos = ps::l2_normalize(ps::randn<float>({classes, dim}, gen), 1);
  ps::optim::sgd<float> opt({w1, c1, w2, c2}, {.lr = 0.05, .momentum = 0.9, .nesterov = true});

  auto forward = [&](const ps::tensor<float>& x) {
    auto z = ps::l2_normalize(ps::matmul(ps::gelu(ps::matmul(ps::variable<float>(x), w1) + c1), w2) + c2, 1);
    auto logits = ps::matmul(z, ps::variable<float>(protos), false, true) * 10.0f;  // M = 1: max over one prototype
    return std::pair{z, logits};
  };
  auto full_loss = [&] {
    ps::no_grad guard;
    return double(ps::cross_entropy(forward(x_all).second, y_all).value().item());
  };

  const double before = full_loss();
  for (int epoch = 0; epoch < 40; ++epoch)
    for (std::int64_t s = 0; s < n; s += batch) {
      const auto x = x_all.narrow0(s, s + batch);
      const auto y = y_all.narrow0(s, s + batch);
      auto [z, logits] = forward(x);
      auto loss = ps::cross_entropy(logits, y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      // Momentum update of the prototypes from the correctly classified samples.
      const auto pred = ps::argmax(logits.value(), 1);
      for (std::int64_t i = 0; i < batch; ++i) {
        const std::int64_t c = y.data()[i];
        if (pred.data()[i] != c) continue;
        for (std::int64_t j = 0; j < dim; ++j)
          protos(c, j) = 0.99f * protos(c, j) + 0.01f * z.value()(i, j);
      }
      protos = ps::l2_normalize(protos, 1);
    }
  const double after = full_loss();
  INFO("loss before ", before, ", after ", after);
  CHECK(std::isfinite(after));
  CHECK(after < 0.3 * before);
  ps::no_grad guard;
  const auto pred = ps::argmax(forward(x_all).second.value(), 1).to_vector();
  const auto y = y_all.to_vector();
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < y.size(); ++i) correct += pred[i] == y[i];
  CHECK(double(correct) / double(n) > 0.6);  // chance is 0.1
}
