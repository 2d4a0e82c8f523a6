#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <protoseg/io/npy.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace protoseg;
namespace fs = std::filesystem;

namespace {

const std::string fixtures = std::string(PROTOSEG_FIXTURE_DIR) + "/npy/";

/// A fresh scratch directory under the system temporary directory.
fs::path scratch_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("protoseg_test_npy_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A version 1.0 file with the given header dictionary and data bytes.
std::string npy_bytes(const std::string& dict, const std::string& data, char major = 1) {
  std::string h = dict;
  const std::size_t pre = major == 1 ? 10 : 12;
  while ((pre + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY";
  out += major;
  out += '\0';
  const std::size_t n = h.size();
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (major != 1) out += std::string(2, '\0');
  return out + h + data;
}

std::size_t count_tmp_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos) ++n;
  return n;
}

}  // namespace

TEST_CASE("reads arrays that numpy wrote") {
  const auto a = io::read_npy<float>(fixtures + "f4_2x3.npy");
  CHECK(a.shape() == shape{2, 3});
  CHECK(a.to_vector() == std::vector<float>{0, 1.5f, -2, 3.25f, 4, -5.5f});

  const auto b = io::read_npy<double>(fixtures + "f8_4.npy");
  CHECK(b.shape() == shape{4});
  CHECK(b.to_vector() == std::vector<double>{0.1, -0.2, 1e300, -1e-300});

  const auto c = io::read_npy<std::int64_t>(fixtures + "i8_2x2x2.npy");
  CHECK(c.shape() == shape{2, 2, 2});
  CHECK(c.to_vector() == std::vector<std::int64_t>{-3, -2, -1, 0, 1, 2, 3, 4});

  const auto v2 = io::read_npy<float>(fixtures + "f4_v2.npy");  // version 2.0 header
  CHECK(io::read_npy_header(fixtures + "f4_v2.npy").major_version == 2);
  CHECK(v2.shape() == shape{3, 2});
  CHECK(v2.to_vector() == std::vector<float>{0, 1, 2, 3, 4, 5});

  const auto s = io::read_npy<double>(fixtures + "f8_scalar.npy");
  CHECK(s.rank() == 0);
  CHECK(s.item() == 2.5);

  const auto e = io::read_npy<float>(fixtures + "f4_empty.npy");
  CHECK(e.shape() == shape{0, 3});
  CHECK(e.numel() == 0);
}

TEST_CASE("read_npy_as converts float precision, read_npy demands the exact dtype") {
  const auto a = io::read_npy_as<double>(fixtures + "f4_2x3.npy");
  CHECK(a.to_vector() == std::vector<double>{0, 1.5, -2, 3.25, 4, -5.5});
  const auto b = io::read_npy_as<float>(fixtures + "f8_4.npy");
  CHECK(b.to_vector()[0] == 0.1f);
  CHECK_THROWS_WITH_AS(io::read_npy<float>(fixtures + "f8_4.npy"),
                       doctest::Contains("f8_4.npy: dtype <f8 does not match the requested <f4"), io_error);
  CHECK_THROWS_WITH_AS(io::read_npy_as<float>(fixtures + "i8_2x2x2.npy"),
                       doctest::Contains("i8_2x2x2.npy: dtype <i8 cannot be read as <f4"), io_error);
}

TEST_CASE("rejects what numpy can write but protoseg does not read") {
  using doctest::Contains;
  CHECK_THROWS_WITH_AS(io::read_npy<float>(fixtures + "f4_fortran.npy"),
                       Contains("f4_fortran.npy: unsupported layout: fortran_order is True, expected C order"), io_error);
  CHECK_THROWS_WITH_AS(io::read_npy<float>(fixtures + "f4_bigendian.npy"),
                       Contains("f4_bigendian.npy: unsupported dtype '>f4': big-endian"), io_error);
  CHECK_THROWS_WITH_AS(io::read_npy<float>(fixtures + "i4_3.npy"),
                       Contains("i4_3.npy: unsupported dtype '<i4', expected float32 (<f4), float64 (<f8) or int64"),
                       io_error);
  CHECK_THROWS_WITH_AS(io::read_npy<float>(fixtures + "does_not_exist.npy"),
                       Contains("does_not_exist.npy: cannot open"), io_error);
}

TEST_CASE("rejects truncated and corrupt files") {
  using doctest::Contains;
  const fs::path d = scratch_dir("corrupt");
  const std::string good = slurp(fixtures + "f4_2x3.npy");
  REQUIRE(good.size() == 128 + 24);
  struct bad_file {
    const char* name;
    std::string bytes;
    const char* message;
  };
  const std::string f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::vector<bad_file> cases = {
      {"empty.npy", "", "empty.npy: truncated: 0 bytes, too short for a .npy header"},
      {"short_data.npy", good.substr(0, good.size() - 5), "short_data.npy: truncated: shape (2, 3) of <f4 needs 24 data bytes, the file has 19"},
      {"short_header.npy", good.substr(0, 60), "short_header.npy: truncated: the header claims 118 bytes"},
      {"trailing.npy", good + "xyz", "trailing.npy: corrupt: 3 unexpected bytes after the 24 data bytes"},
      {"magic.npy", "\x93NUMPZ" + good.substr(6), "magic.npy: not a .npy file: bad magic string"},
      {"text.npy", std::string(200, 'a'), "text.npy: not a .npy file"},
      {"version3.npy", npy_bytes(f4, std::string(24, '\0'), 3), "version3.npy: unsupported format version 3.0, expected 1.0 or 2.0"},
      {"no_shape.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, }", ""), "no_shape.npy: corrupt header: no 'shape' key"},
      {"no_descr.npy", npy_bytes("{'fortran_order': False, 'shape': (2,), }", ""), "no_descr.npy: corrupt header: no 'descr' key"},
      {"bad_shape.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", ""), "bad_shape.npy: corrupt header: 'shape' holds a non-integer entry"},
      {"open_shape.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", ""), "open_shape.npy: corrupt header: unterminated 'shape' tuple"},
      {"not_dict.npy", npy_bytes("['descr', '<f4']", ""), "not_dict.npy: corrupt header: expected a Python dict literal"},
      {"fortran_junk.npy", npy_bytes("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", "abcd"), "fortran_junk.npy: corrupt header: 'fortran_order' is neither True nor False"},
      {"rank6.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1), }", "abcd"), "rank6.npy: unsupported rank 6, expected at most 5"},
      {"structured.npy", npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "abcd"), "structured.npy: unsupported dtype: 'descr' is not a simple type string"},
      {"huge.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 1000000000000), }", ""), "huge.npy: corrupt header: the shape is too large"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    spit(d / c.name, c.bytes);
    CHECK_THROWS_WITH_AS(io::read_npy<float>((d / c.name).string()), Contains(c.message), io_error);
  }
  fs::remove_all(d);
}

TEST_CASE("write then read round-trips float, double and int64 at every rank") {
  const fs::path d = scratch_dir("roundtrip");
  const auto f = tensor<float>::from_vector({1.5f, -2.25f, 3e-30f, 4e30f, 0.f, -0.f}, {2, 3});
  io::write_npy((d / "f.npy").string(), f);
  CHECK(io::read_npy<float>((d / "f.npy").string()).to_vector() == f.to_vector());
  const auto g = tensor<double>::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {2, 1, 2, 1, 2});
  io::write_npy((d / "g.npy").string(), g);
  const auto g2 = io::read_npy<double>((d / "g.npy").string());
  CHECK(g2.shape() == g.shape());
  CHECK(g2.to_vector() == g.to_vector());
  const auto i = tensor<std::int64_t>::from_vector({-1, 0, 1, std::int64_t(1) << 62}, {4});
  io::write_npy((d / "i.npy").string(), i);
  CHECK(io::read_npy<std::int64_t>((d / "i.npy").string()).to_vector() == i.to_vector());
  const auto s = tensor<double>::from_vector({7.0}, shape{});
  io::write_npy((d / "s.npy").string(), s);
  CHECK(io::read_npy<double>((d / "s.npy").string()).item() == 7.0);
  const auto e = tensor<float>::empty({0, 4});
  io::write_npy((d / "e.npy").string(), e);
  CHECK(io::read_npy<float>((d / "e.npy").string()).shape() == shape{0, 4});
  // The header is padded to a multiple of 64 bytes, as numpy writes it.
  const std::string bytes = slurp(d / "f.npy");
  CHECK((bytes.size() - 24) % 64 == 0);
  CHECK(bytes.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") != std::string::npos);
  CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(slurp(d / "i.npy").find("'shape': (4,)") != std::string::npos);
  CHECK(count_tmp_files(d) == 0);
  fs::remove_all(d);
}

TEST_CASE("writes are atomic: a failed write leaves the previous file and no temporary") {
  const fs::path d = scratch_dir("atomic");
  const std::string target = (d / "q.npy").string();
  io::write_npy(target, tensor<float>::from_vector({1, 2, 3}, {3}));
  io::write_npy(target, tensor<float>::from_vector({4, 5}, {2}));  // replaced in one step
  CHECK(io::read_npy<float>(target).to_vector() == std::vector<float>{4, 5});
  // The target is a non-empty directory: the rename fails, nothing is lost.
  fs::create_directories(d / "dir.npy");
  spit(d / "dir.npy" / "keep", "x");
  CHECK_THROWS_WITH_AS(io::write_npy((d / "dir.npy").string(), tensor<float>::from_vector({1}, {1})),
                       doctest::Contains("dir.npy: cannot rename the temporary file into place"), io_error);
  CHECK(fs::exists(d / "dir.npy" / "keep"));
  // A missing directory fails before anything is written.
  CHECK_THROWS_WITH_AS(io::write_npy((d / "missing" / "x.npy").string(), tensor<float>::from_vector({1}, {1})),
                       doctest::Contains("x.npy: cannot open the temporary file"), io_error);
  CHECK(count_tmp_files(d) == 0);
  CHECK(io::read_npy<float>(target).to_vector() == std::vector<float>{4, 5});
  CHECK_THROWS_WITH_AS(io::write_npy(target, tensor<float>{}), doctest::Contains("cannot write an undefined tensor"),
                       io_error);
  CHECK(io::read_npy<float>(target).to_vector() == std::vector<float>{4, 5});
  fs::remove_all(d);
}
