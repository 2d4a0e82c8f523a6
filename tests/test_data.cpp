// Tests of protoseg::data (IDX reader, Fashion-MNIST, PNG writer, image
// reader, the ADE20K / Cityscapes / COCO-Stuff / folder data-set readers),
// protoseg::optim::sgd, and a short training run of the demo's model.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/data/datasets.hpp>
#include <protoseg/data/fashion_mnist.hpp>
#include <protoseg/data/idx.hpp>
#include <protoseg/data/image_read.hpp>  // also provides stb_image (stbi_load) to the tests
#include <protoseg/data/image_write.hpp>
#include <protoseg/optim/sgd.hpp>

#include <zlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <string>
#include <thread>
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

// ---- image reader ------------------------------------------------------------------------

namespace {

/// Runs f and returns the message of the E it throws (fails the test if none is thrown).
template <class E, class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("expected an exception of the requested type");
  return {};
}

ps::tensor<std::uint8_t> labels_of(std::int64_t h, std::int64_t w, const std::vector<std::uint8_t>& v) {
  return ps::tensor<std::uint8_t>::from_vector(v, {h, w});
}

/// An (h, w, 3) image of one colour (so that JPEG keeps it almost exactly).
ps::tensor<std::uint8_t> flat_rgb(std::int64_t h, std::int64_t w, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  std::vector<std::uint8_t> v;
  for (std::int64_t i = 0; i < h * w; ++i) {
    v.push_back(r);
    v.push_back(g);
    v.push_back(b);
  }
  return ps::tensor<std::uint8_t>::from_vector(v, {h, w, 3});
}

void write_jpg(const fs::path& p, const ps::tensor<std::uint8_t>& rgb) {
  std::string bytes;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
  };
  REQUIRE(stbi_write_jpg_to_func(sink, &bytes, int(rgb.size(1)), int(rgb.size(0)), 3, rgb.data(), 100) != 0);
  write_bytes(p, bytes);
}

/// A PNG chunk: length, type, data, CRC of type + data.
std::string png_chunk(const std::string& type, const std::string& data) {
  std::string out;
  auto be32 = [&](std::uint32_t v) {
    for (int shift : {24, 16, 8, 0}) out += static_cast<char>((v >> shift) & 0xff);
  };
  be32(static_cast<std::uint32_t>(data.size()));
  const std::string body = type + data;
  out += body;
  be32(static_cast<std::uint32_t>(::crc32(0L, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
  return out;
}

/// A greyscale PNG of bit depth 16 (colour type 0) or a palette PNG of bit
/// depth 8 (colour type 3, `samples` are indices into a 256-entry palette),
/// written by hand because stb_image_write writes neither.
std::string handmade_png(int w, int h, int color_type, const std::vector<std::uint16_t>& samples) {
  const int depth = color_type == 0 ? 16 : 8;
  std::string ihdr;
  for (std::uint32_t v : {std::uint32_t(w), std::uint32_t(h)})
    for (int shift : {24, 16, 8, 0}) ihdr += static_cast<char>((v >> shift) & 0xff);
  ihdr += {static_cast<char>(depth), static_cast<char>(color_type), 0, 0, 0};
  std::string raw;
  for (int y = 0; y < h; ++y) {
    raw += '\0';  // filter: none
    for (int x = 0; x < w; ++x) {
      const std::uint16_t s = samples[std::size_t(y * w + x)];
      if (depth == 16) raw += static_cast<char>(s >> 8);
      raw += static_cast<char>(s & 0xff);
    }
  }
  uLongf len = compressBound(uLong(raw.size()));
  std::string z(len, '\0');
  REQUIRE(compress2(reinterpret_cast<Bytef*>(z.data()), &len, reinterpret_cast<const Bytef*>(raw.data()),
                    uLong(raw.size()), 9) == Z_OK);
  z.resize(len);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  png += png_chunk("IHDR", ihdr);
  if (color_type == 3) {
    std::string plte;
    for (int i = 0; i < 256; ++i) plte += {static_cast<char>(i), static_cast<char>(255 - i), static_cast<char>(i / 2)};
    png += png_chunk("PLTE", plte);
  }
  png += png_chunk("IDAT", z);
  png += png_chunk("IEND", "");
  return png;
}

}  // namespace

TEST_CASE("read_image: PNG and JPEG decode to RGB (grey expanded, alpha dropped)") {
  temp_dir tmp;
  const auto rgb = test_image(5, 7, 3, 3);
  ps::data::write_png(tmp.path / "rgb.png", rgb);
  auto img = ps::data::read_image(tmp.path / "rgb.png");
  CHECK(img.shape() == ps::shape{5, 7, 3});
  CHECK(img.to_vector() == rgb.to_vector());

  const auto grey = test_image(4, 6, 1, 5);
  ps::data::write_png(tmp.path / "grey.png", grey);
  img = ps::data::read_image(tmp.path / "grey.png");
  REQUIRE(img.shape() == ps::shape{4, 6, 3});
  for (std::int64_t y = 0; y < 4; ++y)
    for (std::int64_t x = 0; x < 6; ++x)
      for (std::int64_t c = 0; c < 3; ++c) CHECK(img(y, x, c) == grey(y, x));

  const auto rgba = test_image(3, 2, 4, 9);
  ps::data::write_png(tmp.path / "rgba.png", rgba);
  img = ps::data::read_image(tmp.path / "rgba.png");
  REQUIRE(img.shape() == ps::shape{3, 2, 3});
  for (std::int64_t y = 0; y < 3; ++y)
    for (std::int64_t x = 0; x < 2; ++x)
      for (std::int64_t c = 0; c < 3; ++c) CHECK(img(y, x, c) == rgba(y, x, c));

  write_jpg(tmp.path / "flat.jpg", flat_rgb(16, 24, 200, 40, 90));
  img = ps::data::read_image(tmp.path / "flat.jpg");
  REQUIRE(img.shape() == ps::shape{16, 24, 3});
  for (std::int64_t c = 0; c < 3; ++c) CHECK(std::abs(int(img(8, 12, c)) - int(std::array{200, 40, 90}[c])) <= 3);

  // From memory, with our name in the message.
  const std::string png = read_bytes(tmp.path / "rgb.png");
  CHECK(ps::data::decode_image(png, "mem").to_vector() == rgb.to_vector());
}

TEST_CASE("read_label_image: single-channel 8- and 16-bit labels, colour and palette files are refused") {
  temp_dir tmp;
  const auto lab = labels_of(2, 3, {0, 1, 2, 150, 254, 255});
  ps::data::write_png(tmp.path / "l8.png", lab);
  auto got = ps::data::read_label_image(tmp.path / "l8.png");
  CHECK(got.shape() == ps::shape{2, 3});
  CHECK(got.to_vector() == lab.to_vector());

  // Grey + alpha keeps the grey.
  std::vector<std::uint8_t> ga;
  for (std::uint8_t v : {7, 8, 9, 10}) {
    ga.push_back(v);
    ga.push_back(std::uint8_t(255 - v));
  }
  ps::data::write_png(tmp.path / "ga.png", ps::tensor<std::uint8_t>::from_vector(ga, {2, 2, 2}));
  CHECK(ps::data::read_label_image(tmp.path / "ga.png").to_vector() == std::vector<std::uint8_t>{7, 8, 9, 10});

  // 16-bit grey: values up to 255 are fine, larger ones are refused.
  write_bytes(tmp.path / "l16.png", handmade_png(3, 1, 0, {0, 17, 255}));
  CHECK(ps::data::read_label_image(tmp.path / "l16.png").to_vector() == std::vector<std::uint8_t>{0, 17, 255});
  write_bytes(tmp.path / "l16big.png", handmade_png(3, 1, 0, {0, 300, 1}));
  std::string m = error_of<ps::value_error>([&] { (void)ps::data::read_label_image(tmp.path / "l16big.png"); });
  CHECK(contains(m, "l16big.png"));
  CHECK(contains(m, "16-bit"));
  CHECK(contains(m, "value 300"));

  // RGB and palette label files.
  ps::data::write_png(tmp.path / "rgb_label.png", test_image(2, 2, 3, 1));
  m = error_of<ps::io_error>([&] { (void)ps::data::read_label_image(tmp.path / "rgb_label.png"); });
  CHECK(contains(m, "rgb_label.png"));
  CHECK(contains(m, "3 channels"));
  CHECK(contains(m, "a single-channel label PNG is expected"));
  write_bytes(tmp.path / "palette.png", handmade_png(2, 2, 3, {0, 1, 2, 3}));
  {  // stb_image itself reads the hand-made palette file (as RGB).
    int w = 0, h = 0, c = 0;
    CHECK(read_png(tmp.path / "palette.png", w, h, c).size() == 12);
  }
  m = error_of<ps::io_error>([&] { (void)ps::data::read_label_image(tmp.path / "palette.png"); });
  CHECK(contains(m, "palette.png"));
  CHECK(contains(m, "palette"));
  CHECK(contains(m, "a single-channel label PNG is expected"));
}

TEST_CASE("read_image: missing, empty, truncated and corrupt files throw io_error naming the file") {
  temp_dir tmp;
  std::string m = error_of<ps::io_error>([&] { (void)ps::data::read_image(tmp.path / "nope.png"); });
  CHECK(contains(m, "nope.png"));
  CHECK(contains(m, "does not exist"));
  m = error_of<ps::io_error>([&] { (void)ps::data::read_label_image(tmp.path / "nope.png"); });
  CHECK(contains(m, "does not exist"));

  fs::create_directories(tmp.path / "dir.png");
  CHECK(contains(error_of<ps::io_error>([&] { (void)ps::data::read_image(tmp.path / "dir.png"); }), "is a directory"));

  write_bytes(tmp.path / "empty.png", "");
  m = error_of<ps::io_error>([&] { (void)ps::data::read_image(tmp.path / "empty.png"); });
  CHECK(contains(m, "empty.png"));
  CHECK(contains(m, "is empty"));
  CHECK(contains(error_of<ps::io_error>([&] { (void)ps::data::read_label_image(tmp.path / "empty.png"); }),
                 "is empty"));

  ps::data::write_png(tmp.path / "full.png", test_image(64, 64, 3, 1));
  const std::string png = read_bytes(tmp.path / "full.png");
  write_bytes(tmp.path / "cut.png", png.substr(0, png.size() / 2));
  m = error_of<ps::io_error>([&] { (void)ps::data::read_image(tmp.path / "cut.png"); });
  CHECK(contains(m, "cut.png"));
  CHECK(contains(m, "cannot decode"));
  CHECK(contains(m, "corrupt or truncated"));
  write_bytes(tmp.path / "head.png", png.substr(0, 30));  // cut inside the IHDR chunk
  m = error_of<ps::io_error>([&] { (void)ps::data::read_image(tmp.path / "head.png"); });
  CHECK(contains(m, "head.png"));
  CHECK(contains(m, "cannot decode"));

  write_jpg(tmp.path / "good.jpg", flat_rgb(16, 16, 1, 2, 3));
  std::string jpg = read_bytes(tmp.path / "good.jpg");
  jpg.replace(2, jpg.size() - 2, std::string(jpg.size() - 2, '\x11'));  // SOI, then garbage
  write_bytes(tmp.path / "bad.jpg", jpg);
  m = error_of<ps::io_error>([&] { (void)ps::data::read_image(tmp.path / "bad.jpg"); });
  CHECK(contains(m, "bad.jpg"));
  CHECK(contains(m, "cannot decode"));

  write_bytes(tmp.path / "text.png", "this is not an image");
  m = error_of<ps::io_error>([&] { (void)ps::data::read_label_image(tmp.path / "text.png"); });
  CHECK(contains(m, "text.png"));
  CHECK(contains(m, "cannot decode"));
}

// ---- data-set readers ----------------------------------------------------------------------

namespace {

void write_label(const fs::path& p, std::int64_t h, std::int64_t w, const std::vector<std::uint8_t>& v) {
  fs::create_directories(p.parent_path());
  ps::data::write_png(p, labels_of(h, w, v));
}

void write_rgb_png(const fs::path& p, const ps::tensor<std::uint8_t>& img) {
  fs::create_directories(p.parent_path());
  ps::data::write_png(p, img);
}

void write_rgb_jpg(const fs::path& p, const ps::tensor<std::uint8_t>& img) {
  fs::create_directories(p.parent_path());
  write_jpg(p, img);
}

/// ADE20K's layout under `base` (ADEChallengeData2016): two training and one validation sample.
void make_ade20k(const fs::path& base) {
  write_rgb_jpg(base / "images/training/ADE_train_00000002.jpg", flat_rgb(4, 6, 10, 200, 30));
  write_rgb_jpg(base / "images/training/ADE_train_00000001.jpg", flat_rgb(4, 6, 250, 20, 120));
  write_label(base / "annotations/training/ADE_train_00000001.png", 4, 6,
              {0, 1, 2, 150, 255, 5, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 149, 149, 149, 149, 149, 149});
  write_label(base / "annotations/training/ADE_train_00000002.png", 4, 6, std::vector<std::uint8_t>(24, 3));
  write_rgb_jpg(base / "images/validation/ADE_val_00000001.jpg", flat_rgb(2, 2, 0, 0, 0));
  write_label(base / "annotations/validation/ADE_val_00000001.png", 2, 2, {1, 2, 3, 4});
}

}  // namespace

TEST_CASE("ade20k_dataset: layout, reduce_zero_label, class names, order, root or its parent") {
  temp_dir tmp;
  const fs::path base = tmp.path / "ADEChallengeData2016";
  make_ade20k(base);
  for (const fs::path& root : {tmp.path, base})
    for (const char* split : {"training", "train"}) {
      ps::data::ade20k_dataset ds(root, split);
      CHECK(ds.root() == base);
      REQUIRE(ds.size() == 2);
      CHECK(ds.num_classes() == 150);
      CHECK(ds.class_names()[0] == "wall");
      CHECK(ds.class_names()[2] == "sky");
      CHECK(ds.class_names()[7] == "bed");
      CHECK(ds.class_names()[149] == "flag");
      // mmsegmentation's palette: one colour per class, wall (120, 120, 120), flag (92, 0, 255)
      const auto pal = ds.palette();
      REQUIRE(pal.size() == 150);
      CHECK(pal[0] == ps::data::rgb_color{120, 120, 120});
      CHECK(pal[149] == ps::data::rgb_color{92, 0, 255});
      CHECK(ps::data::palette_of_kind("ADE20K") == pal);
      CHECK(ds.description() == "ADE20K training: 2 images under " + base.string());
      CHECK(ds.image_path(0).filename() == "ADE_train_00000001.jpg");
      CHECK(ds.label_path(1) == base / "annotations/training/ADE_train_00000002.png");
      const auto s = ds.get(0);
      CHECK(s.name == "ADE_train_00000001");
      REQUIRE(s.image.shape() == ps::shape{4, 6, 3});
      CHECK(std::abs(int(s.image(2, 3, 0)) - 250) <= 3);
      CHECK(std::abs(int(s.image(2, 3, 1)) - 20) <= 3);
      CHECK(std::abs(int(s.image(2, 3, 2)) - 120) <= 3);
      REQUIRE(s.label.shape() == ps::shape{4, 6});
      const auto l = s.label.to_vector();
      CHECK(std::vector<std::uint8_t>(l.begin(), l.begin() + 7) == std::vector<std::uint8_t>{255, 0, 1, 149, 255, 4, 255});
      CHECK(l[12] == 0);
      CHECK(l[23] == 148);
      CHECK(ds.get(1).name == "ADE_train_00000002");
      CHECK(ds.get(1).label.to_vector() == std::vector<std::uint8_t>(24, 2));
    }
  const auto val = ps::data::open_dataset("ade20k", tmp.path, "val");
  REQUIRE(val->size() == 1);
  CHECK(val->description() == "ADE20K validation: 1 image under " + base.string());
  CHECK(val->get(0).label.to_vector() == std::vector<std::uint8_t>{0, 1, 2, 3});
  CHECK(contains(error_of<ps::value_error>([&] { (void)val->get(1); }), "index out of range"));
  CHECK(contains(error_of<ps::value_error>([&] { (void)val->get(-1); }), "index out of range"));
}

TEST_CASE("ade20k_dataset: missing root, split, images or labels, and bad files are reported by name") {
  temp_dir tmp;
  const fs::path base = tmp.path / "ADEChallengeData2016";
  std::string m = error_of<ps::io_error>([&] { ps::data::ade20k_dataset(tmp.path / "nowhere", "training"); });
  CHECK(contains(m, "nowhere"));
  CHECK(contains(m, "root directory"));
  CHECK(contains(m, "does not exist"));
  CHECK(contains(error_of<ps::value_error>([&] { ps::data::ade20k_dataset(tmp.path, "test"); }),
                 "unknown split 'test'"));

  make_ade20k(base);
  fs::remove_all(base / "images/validation");
  m = error_of<ps::io_error>([&] { ps::data::ade20k_dataset(tmp.path, "validation"); });
  CHECK(contains(m, (base / "images/validation").string()));
  CHECK(contains(m, "split directory"));
  CHECK(contains(m, "does not exist"));

  fs::create_directories(base / "images/validation");
  m = error_of<ps::io_error>([&] { ps::data::ade20k_dataset(tmp.path, "validation"); });
  CHECK(contains(m, "no .jpg images"));
  CHECK(contains(m, (base / "images/validation").string()));

  write_rgb_jpg(base / "images/validation/ADE_val_00000007.jpg", flat_rgb(2, 2, 0, 0, 0));
  m = error_of<ps::io_error>([&] { ps::data::ade20k_dataset(tmp.path, "validation"); });
  CHECK(contains(m, "ADE_val_00000007.jpg"));
  CHECK(contains(m, "has no label file"));
  CHECK(contains(m, (base / "annotations/validation/ADE_val_00000007.png").string()));

  // Wrong label size, label value out of range, corrupt JPEG, truncated label PNG.
  write_label(base / "annotations/validation/ADE_val_00000007.png", 3, 2, {1, 1, 1, 1, 1, 1});
  ps::data::ade20k_dataset ds(tmp.path, "validation");
  m = error_of<ps::value_error>([&] { (void)ds.get(0); });
  CHECK(contains(m, "ADE_val_00000007.png"));
  CHECK(contains(m, "ADE_val_00000007.jpg"));
  CHECK(contains(m, "is 2x3 (width x height)"));
  CHECK(contains(m, "is 2x2"));

  write_label(base / "annotations/validation/ADE_val_00000007.png", 2, 2, {1, 150, 151, 1});
  m = error_of<ps::value_error>([&] { (void)ds.get(0); });
  CHECK(contains(m, "ADE_val_00000007.png"));
  CHECK(contains(m, "value 151"));
  CHECK(contains(m, "row 1, column 0"));
  CHECK(contains(m, "1..150"));

  write_label(base / "annotations/validation/ADE_val_00000007.png", 2, 2, {1, 150, 150, 1});
  CHECK(ds.get(0).label.to_vector() == std::vector<std::uint8_t>{0, 149, 149, 0});
  write_bytes(base / "images/validation/ADE_val_00000007.jpg", std::string("\xff\xd8\xff\xe0 garbage", 12));
  m = error_of<ps::io_error>([&] { (void)ds.get(0); });
  CHECK(contains(m, "ADE_val_00000007.jpg"));
  CHECK(contains(m, "cannot decode"));

  write_rgb_jpg(base / "images/validation/ADE_val_00000007.jpg", flat_rgb(2, 2, 0, 0, 0));
  const std::string png = read_bytes(base / "annotations/validation/ADE_val_00000007.png");
  write_bytes(base / "annotations/validation/ADE_val_00000007.png", png.substr(0, png.size() - 20));
  m = error_of<ps::io_error>([&] { (void)ds.get(0); });
  CHECK(contains(m, "ADE_val_00000007.png"));
  CHECK(contains(m, "cannot decode"));

  fs::remove_all(base / "annotations/validation");
  m = error_of<ps::io_error>([&] { ps::data::ade20k_dataset(tmp.path, "val"); });
  CHECK(contains(m, "annotation directory"));
  CHECK(contains(m, (base / "annotations/validation").string()));
}

TEST_CASE("cityscapes_dataset: city folders, labelTrainIds used as is, labelIds mapped to train ids") {
  temp_dir tmp;
  const fs::path root = tmp.path / "cityscapes";
  const auto img_a = test_image(2, 4, 3, 1), img_b = test_image(2, 4, 3, 2);
  write_rgb_png(root / "leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png", img_b);
  write_rgb_png(root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", img_a);
  write_bytes(root / "leftImg8bit/train/aachen/README.txt", "not an image");
  write_label(root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png", 2, 4,
              {0, 1, 18, 255, 13, 5, 0, 0});
  write_label(root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", 2, 4, std::vector<std::uint8_t>(8, 0));
  // bochum has only label ids: road 7, sidewalk 8, car 26, bicycle 33, unlabeled 0, parking 9,
  // caravan 29, and 34 / 200 that are no Cityscapes id.
  write_label(root / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png", 2, 4,
              {7, 8, 26, 33, 0, 9, 29, 200});
  write_rgb_png(root / "gtFine/train/bochum/bochum_000000_000313_gtFine_color.png", test_image(2, 4, 3, 3));

  ps::data::cityscapes_dataset ds(root, "train");
  REQUIRE(ds.size() == 2);
  CHECK(ds.num_classes() == 19);
  CHECK(ds.class_names()[0] == "road");
  CHECK(ds.class_names()[18] == "bicycle");
  // cityscapesScripts' colours: road (128, 64, 128), bicycle (119, 11, 32)
  REQUIRE(ds.palette().size() == 19);
  CHECK(ds.palette()[0] == ps::data::rgb_color{128, 64, 128});
  CHECK(ds.palette()[18] == ps::data::rgb_color{119, 11, 32});
  CHECK(ps::data::palette_of_kind("cityscapes") == ds.palette());
  CHECK(ds.description() == "Cityscapes train: 2 images under " + root.string());
  auto a = ds.get(0), b = ds.get(1);
  CHECK(a.name == "aachen_000000_000019");
  CHECK(b.name == "bochum_000000_000313");
  CHECK(ds.label_path(0).filename() == "aachen_000000_000019_gtFine_labelTrainIds.png");
  CHECK(ds.label_path(1).filename() == "bochum_000000_000313_gtFine_labelIds.png");
  CHECK(a.image.to_vector() == img_a.to_vector());
  CHECK(b.image.to_vector() == img_b.to_vector());
  CHECK(a.label.to_vector() == std::vector<std::uint8_t>{0, 1, 18, 255, 13, 5, 0, 0});
  CHECK(b.label.to_vector() == std::vector<std::uint8_t>{0, 1, 13, 18, 255, 255, 255, 255});

  // The table itself (cityscapesScripts labels.py): the 19 evaluated ids, everything else 255.
  const std::vector<int> eval_ids{7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};
  for (int id = 0; id < 34; ++id) {
    const auto it = std::find(eval_ids.begin(), eval_ids.end(), id);
    const int want = it == eval_ids.end() ? 255 : int(it - eval_ids.begin());
    CHECK(int(ps::data::cityscapes_label_id_to_train_id[std::size_t(id)]) == want);
  }

  // A train-id file with a value that is no class.
  write_label(root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png", 2, 4,
              {0, 1, 19, 255, 13, 5, 0, 0});
  std::string m = error_of<ps::value_error>([&] { (void)ds.get(0); });
  CHECK(contains(m, "aachen_000000_000019_gtFine_labelTrainIds.png"));
  CHECK(contains(m, "value 19"));
  CHECK(contains(m, "0..18"));

  // A truncated image.
  const std::string png = read_bytes(root / "leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png");
  write_bytes(root / "leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png", png.substr(0, png.size() / 2));
  m = error_of<ps::io_error>([&] { (void)ds.get(1); });
  CHECK(contains(m, "bochum_000000_000313_leftImg8bit.png"));
  CHECK(contains(m, "cannot decode"));

  // An image with neither label file, a missing split, an unknown split, a missing root, no images.
  write_rgb_png(root / "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png", img_a);
  m = error_of<ps::io_error>([&] { ps::data::cityscapes_dataset(root, "train"); });
  CHECK(contains(m, "aachen_000001_000019_leftImg8bit.png"));
  CHECK(contains(m, "aachen_000001_000019_gtFine_labelTrainIds.png"));
  CHECK(contains(m, "aachen_000001_000019_gtFine_labelIds.png"));
  m = error_of<ps::io_error>([&] { ps::data::cityscapes_dataset(root, "val"); });
  CHECK(contains(m, (root / "leftImg8bit/val").string()));
  CHECK(contains(m, "does not exist"));
  CHECK(contains(error_of<ps::value_error>([&] { ps::data::cityscapes_dataset(root, "training"); }),
                 "expected train, val or test"));
  CHECK(contains(error_of<ps::io_error>([&] { ps::data::cityscapes_dataset(tmp.path / "gone", "train"); }), "gone"));
  fs::create_directories(root / "leftImg8bit/test/berlin");
  fs::create_directories(root / "gtFine/test/berlin");
  m = error_of<ps::io_error>([&] { ps::data::cityscapes_dataset(root, "test"); });
  CHECK(contains(m, "no *_leftImg8bit.png images"));
}

TEST_CASE("coco_stuff164k_dataset: converted train ids or raw stuff-thing maps mapped 182 -> 171") {
  temp_dir tmp;
  const fs::path root = tmp.path / "coco_stuff164k";
  write_rgb_jpg(root / "images/train2017/000000000025.jpg", flat_rgb(2, 3, 9, 9, 9));
  write_rgb_jpg(root / "images/train2017/000000000009.jpg", flat_rgb(2, 3, 90, 90, 90));
  write_label(root / "annotations/train2017/000000000009_labelTrainIds.png", 2, 3, {0, 170, 255, 80, 1, 2});
  write_label(root / "annotations/train2017/000000000009.png", 2, 3, std::vector<std::uint8_t>(6, 0));
  // Raw ids: person 0, stop sign 12, banner 92, wood 181, unlabeled 255, unused id 11.
  write_label(root / "annotations/train2017/000000000025.png", 2, 3, {0, 12, 92, 181, 255, 11});

  const auto ds = ps::data::open_dataset("coco-stuff", root, "train");
  REQUIRE(ds->size() == 2);
  CHECK(ds->num_classes() == 171);
  CHECK(ds->class_names()[0] == "person");
  CHECK(ds->class_names()[11] == "stop sign");
  CHECK(ds->class_names()[80] == "banner");
  CHECK(ds->class_names()[170] == "wood");
  CHECK(ds->description() == "COCO-Stuff 164k train2017: 2 images under " + root.string());
  CHECK(ds->get(0).name == "000000000009");
  CHECK(ds->get(0).label.to_vector() == std::vector<std::uint8_t>{0, 170, 255, 80, 1, 2});
  const auto s = ds->get(1);
  CHECK(s.name == "000000000025");
  CHECK(s.image.shape() == ps::shape{2, 3, 3});
  CHECK(s.label.to_vector() == std::vector<std::uint8_t>{0, 11, 81, 170, 255, 255});

  // mmsegmentation's table at the gaps.
  const auto& t = ps::data::coco_stuff_class_id_to_train_id;
  CHECK(t[10] == 10);
  CHECK(t[11] == 255);
  CHECK(t[12] == 11);
  CHECK(t[26] == 24);
  CHECK(t[30] == 26);
  CHECK(t[45] == 40);
  CHECK(t[66] == 60);
  CHECK(t[69] == 61);
  CHECK(t[71] == 62);
  CHECK(t[83] == 73);
  CHECK(t[91] == 80);
  CHECK(t[181] == 170);
  CHECK(std::count(t.begin(), t.end(), std::uint8_t{255}) == 11);

  // Raw values above 181 (other than 255) and converted values >= 171 are refused.
  write_label(root / "annotations/train2017/000000000025.png", 2, 3, {0, 12, 92, 182, 255, 11});
  std::string m = error_of<ps::value_error>([&] { (void)ds->get(1); });
  CHECK(contains(m, "000000000025.png"));
  CHECK(contains(m, "value 182"));
  CHECK(contains(m, "0..181"));
  write_label(root / "annotations/train2017/000000000009_labelTrainIds.png", 2, 3, {0, 171, 255, 80, 1, 2});
  m = error_of<ps::value_error>([&] { (void)ds->get(0); });
  CHECK(contains(m, "000000000009_labelTrainIds.png"));
  CHECK(contains(m, "value 171"));
  CHECK(contains(m, "0..170"));

  // Splits and layout errors.
  CHECK(contains(error_of<ps::value_error>([&] { ps::data::coco_stuff164k_dataset(root, "test2017"); }),
                 "expected train2017 (or train) or val2017 (or val)"));
  std::string mv = error_of<ps::io_error>([&] { ps::data::coco_stuff164k_dataset(root, "val"); });
  CHECK(contains(mv, (root / "images/val2017").string()));
  write_rgb_jpg(root / "images/train2017/000000000030.jpg", flat_rgb(2, 3, 9, 9, 9));
  m = error_of<ps::io_error>([&] { ps::data::coco_stuff164k_dataset(root, "train2017"); });
  CHECK(contains(m, "000000000030.jpg"));
  CHECK(contains(m, "000000000030_labelTrainIds.png"));
  CHECK(contains(m, "has no label file"));
}

TEST_CASE("folder_dataset and read_class_list: nested pairs, class lists, errors, thread-safe get") {
  temp_dir tmp;
  write_bytes(tmp.path / "classes.txt", "background\r\n\n  cat \ndog\n\n");
  CHECK(ps::data::read_class_list(tmp.path / "classes.txt") == std::vector<std::string>{"background", "cat", "dog"});
  write_bytes(tmp.path / "empty.txt", "\n \n");
  std::string m = error_of<ps::io_error>([&] { (void)ps::data::read_class_list(tmp.path / "empty.txt"); });
  CHECK(contains(m, "empty.txt"));
  CHECK(contains(m, "no class names"));
  CHECK(contains(error_of<ps::io_error>([&] { (void)ps::data::read_class_list(tmp.path / "none.txt"); }),
                 "does not exist"));

  const fs::path images = tmp.path / "images", labels = tmp.path / "labels";
  const auto img_z = test_image(3, 2, 3, 4), img_b = test_image(2, 2, 3, 5);
  write_rgb_png(images / "z.PNG", img_z);
  write_rgb_png(images / "sub/b.bmp.png", img_b);  // stem "b.bmp"
  write_rgb_jpg(images / "a.jpeg", flat_rgb(2, 2, 1, 2, 3));
  write_bytes(images / "notes.txt", "ignored");
  write_label(labels / "z.png", 3, 2, {0, 1, 2, 255, 2, 1});
  write_label(labels / "sub/b.bmp.png", 2, 2, {2, 2, 2, 2});
  write_label(labels / "a.png", 2, 2, {0, 0, 0, 0});
  const std::vector<std::string> classes{"background", "cat", "dog"};
  ps::data::folder_dataset ds(images, labels, classes);
  REQUIRE(ds.size() == 3);
  CHECK(ds.class_names() == classes);
  CHECK(ds.palette().empty());  // no published colours: pictures generate a palette
  CHECK(ps::data::palette_of_kind("folder").empty());
  CHECK(ds.get(0).name == "a");
  CHECK(ds.get(1).name == "sub/b.bmp");
  CHECK(ds.get(2).name == "z");
  CHECK(ds.get(2).image.to_vector() == img_z.to_vector());
  CHECK(ds.get(2).label.to_vector() == std::vector<std::uint8_t>{0, 1, 2, 255, 2, 1});
  CHECK(ds.get(1).label.to_vector() == std::vector<std::uint8_t>(4, 2));
  CHECK(contains(ds.description(), "3 images under " + images.string()));
  CHECK(contains(ds.description(), "3 classes"));

  // get from several threads at once gives the same samples.
  std::vector<std::vector<std::uint8_t>> seen(8);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < seen.size(); ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        const auto s = ds.get(std::int64_t(t % 3));
        seen[t] = s.label.to_vector();
      }
    });
  for (auto& th : threads) th.join();
  for (std::size_t t = 0; t < seen.size(); ++t) CHECK(seen[t] == ds.get(std::int64_t(t % 3)).label.to_vector());

  // Label suffix, value out of range, RGB label file.
  write_label(labels / "z_mask.png", 3, 2, {0, 1, 2, 3, 2, 1});
  fs::remove(images / "a.jpeg");
  fs::remove_all(images / "sub");
  ps::data::folder_dataset masked(images, labels, classes, "_mask.png");
  REQUIRE(masked.size() == 1);
  m = error_of<ps::value_error>([&] { (void)masked.get(0); });
  CHECK(contains(m, "z_mask.png"));
  CHECK(contains(m, "value 3"));
  CHECK(contains(m, "train ids 0..2 or the ignore label 255"));
  ps::data::write_png(labels / "z.png", test_image(3, 2, 3, 7));
  ps::data::folder_dataset rgb_labels(images, labels, classes);
  m = error_of<ps::io_error>([&] { (void)rgb_labels.get(0); });
  CHECK(contains(m, (labels / "z.png").string()));
  CHECK(contains(m, "a single-channel label PNG is expected"));

  // Layout errors.
  write_rgb_png(images / "lonely.png", img_b);
  m = error_of<ps::io_error>([&] { ps::data::folder_dataset(images, labels, classes); });
  CHECK(contains(m, "lonely.png"));
  CHECK(contains(m, "has no label file"));
  fs::remove(images / "lonely.png");
  write_rgb_jpg(images / "z.jpg", flat_rgb(3, 2, 0, 0, 0));
  CHECK(contains(error_of<ps::value_error>([&] { ps::data::folder_dataset(images, labels, classes); }),
                 "share the label file"));
  CHECK(contains(error_of<ps::value_error>([&] { ps::data::folder_dataset(images, labels, {}); }),
                 "0 class names given"));
  CHECK(contains(error_of<ps::io_error>([&] { ps::data::folder_dataset(tmp.path / "nope", labels, classes); }),
                 "nope"));
  fs::create_directories(tmp.path / "blank");
  m = error_of<ps::io_error>([&] { ps::data::folder_dataset(tmp.path / "blank", labels, classes); });
  CHECK(contains(m, "no images"));
  CHECK(contains(m, (tmp.path / "blank").string()));
}

TEST_CASE("open_dataset: folder layouts with and without split directories, unknown kinds") {
  temp_dir tmp;
  // Without split directories.
  fs::create_directories(tmp.path / "flat");
  fs::create_directories(tmp.path / "split");
  write_bytes(tmp.path / "flat/classes.txt", "a\nb\n");
  write_rgb_png(tmp.path / "flat/images/x.png", test_image(2, 2, 3, 1));
  write_label(tmp.path / "flat/labels/x.png", 2, 2, {0, 1, 1, 0});
  auto ds = ps::data::open_dataset("folder", tmp.path / "flat", "train");
  REQUIRE(ds->size() == 1);
  CHECK(ds->num_classes() == 2);
  CHECK(ds->get(0).label.to_vector() == std::vector<std::uint8_t>{0, 1, 1, 0});

  // With split directories.
  const fs::path root = tmp.path / "split";
  write_bytes(root / "classes.txt", "a\nb\nc\n");
  write_rgb_png(root / "images/train/t1.png", test_image(2, 2, 3, 1));
  write_rgb_png(root / "images/train/t2.png", test_image(2, 2, 3, 2));
  write_label(root / "labels/train/t1.png", 2, 2, {0, 1, 2, 0});
  write_label(root / "labels/train/t2.png", 2, 2, {2, 1, 2, 0});
  ds = ps::data::open_dataset("folder", root, "train");
  CHECK(ds->size() == 2);
  CHECK(ds->num_classes() == 3);
  CHECK(ds->get(1).name == "t2");
  std::string m = error_of<ps::io_error>([&] { (void)ps::data::open_dataset("folder", root, "val"); });
  CHECK(contains(m, (root / "images/val").string()));
  CHECK(contains(m, "does not exist"));
  fs::remove(root / "classes.txt");
  CHECK(contains(error_of<ps::io_error>([&] { (void)ps::data::open_dataset("folder", root, "train"); }),
                 "classes.txt"));

  m = error_of<ps::value_error>([&] { (void)ps::data::open_dataset("pascal-voc", root, "train"); });
  CHECK(contains(m, "unknown data set kind 'pascal-voc'"));
  CHECK(contains(m, "ade20k, cityscapes, coco-stuff, folder"));
  // the table: names, aliases in any case, one summary each
  CHECK(ps::data::dataset_kind_names() == std::vector<std::string>{"ade20k", "cityscapes", "coco-stuff", "folder"});
  for (const auto& k : ps::data::dataset_kinds()) {
    CAPTURE(k.name);
    CHECK(!k.summary.empty());
    CHECK(k.open);
  }
  // any case and the aliases reach the right reader (its own errors prove it)
  CHECK(contains(error_of<ps::io_error>([&] { (void)ps::data::open_dataset("FOLDER", root, "train"); }), "classes.txt"));
  CHECK(contains(error_of<ps::io_error>(
                     [&] { (void)ps::data::open_dataset("COCO_Stuff164k", tmp.path / "nowhere", "val"); }),
                 (tmp.path / "nowhere").string()));
  CHECK(contains(error_of<ps::io_error>([&] { (void)ps::data::open_dataset("cityscapes", tmp.path / "no", "val"); }),
                 "does not exist"));
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
