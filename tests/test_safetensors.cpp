// safetensors reader and writer, and the JSON parser behind its header:
// round trips, a file written by Python the way the safetensors library lays
// it out (tools/gen_nn_fixtures.py), half-precision conversion, and the
// refusal of corrupt, truncated and inconsistent files.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "common.hpp"

#include <protoseg/io/json.hpp>
#include <protoseg/io/safetensors.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

using namespace protoseg;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("protoseg_st_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

/// Writes a file: 8-byte length, header text, then `data` bytes.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               std::uint64_t declared = ~std::uint64_t(0)) {
  std::ofstream f(path, std::ios::binary);
  const std::uint64_t n = declared == ~std::uint64_t(0) ? header.size() : declared;
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << data;
}

/// The io_error message of reading `path`, or "" when it reads fine.
std::string read_error(const std::string& path) {
  try {
    io::read_safetensors(path);
  } catch (const io_error& e) {
    return e.what();
  }
  return "";
}

void check_refused(const std::string& path, const std::string& what) {
  const std::string m = read_error(path);
  INFO(m);
  CHECK(m.find(path) != std::string::npos);
  CHECK(m.find(what) != std::string::npos);
}

}  // namespace

TEST_CASE("safetensors: round trip of every stored dtype, scalars, empty tensors and metadata") {
  temp_dir d;
  io::safetensors_archive a;
  generator g(1);
  a.put("w.f32", randn<float>({3, 4}, g));
  a.put("w.f64", randn<double>({2, 1, 3}, g));
  a.put("n.i64", tensor<std::int64_t>::from_vector({-5, 0, std::int64_t(1) << 50}, {3}));
  a.put("n.i32", tensor<std::int32_t>::from_vector({-7, 9}, {2}));
  a.put("n.u8", tensor<std::uint8_t>::from_vector({0, 255, 7}, {3}));
  a.put("scalar", full<float>({}, 1.5f));
  a.put("empty", zeros<float>({0, 4}));
  a.metadata = {{"format", "pt"}, {"quote\"and\\slash", "line\nbreak\ttab \x01"}};
  const auto path = d.file("a.safetensors");
  io::write_safetensors(path, a);
  auto b = io::read_safetensors(path);
  CHECK(b.metadata == a.metadata);
  REQUIRE(b.tensors.size() == a.tensors.size());
  for (const auto& [k, t] : a.tensors) {
    CAPTURE(k);
    CHECK(b.at(k).dtype == t.dtype);
    CHECK(b.at(k).dims == t.dims);
    CHECK(b.at(k).bytes == t.bytes);
  }
  CHECK(b.get<float>("w.f32").to_vector() == a.get<float>("w.f32").to_vector());
  CHECK(b.get<double>("w.f64").shape() == shape{2, 1, 3});
  CHECK(b.get<std::int64_t>("n.i64").to_vector()[2] == std::int64_t(1) << 50);
  CHECK(b.get<float>("scalar").rank() == 0);
  CHECK(b.get<float>("empty").shape() == shape{0, 4});
  // The layout: u64 header length, header padded to 8 bytes, data after it.
  std::ifstream f(path, std::ios::binary);
  std::uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  CHECK(n % 8 == 0);
  std::string header(n, '\0');
  f.read(header.data(), std::streamsize(n));
  CHECK(header.front() == '{');
  auto j = io::parse_json(header);
  CHECK(j.find("w.f32")->find("dtype")->as_string() == "F32");
  CHECK(j.find("__metadata__")->find("format")->as_string() == "pt");
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(d.path)) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("safetensors: a file laid out by Python (struct + json), with F16 and BF16 read as float") {
  const std::string dir = std::string(PROTOSEG_FIXTURE_DIR) + "/nn/";
  auto a = io::read_safetensors(dir + "python_written.safetensors");
  std::ifstream ej(dir + "python_written.expected.json");
  std::stringstream ss;
  ss << ej.rdbuf();
  auto expected = io::parse_json(ss.str());
  CHECK(a.metadata.at("format") == "pt");
  CHECK(a.metadata.at("note") == "q\"uote\\");
  CHECK(a.tensors.size() == expected.as_object().size());
  for (const auto& [k, e] : expected.as_object()) {
    CAPTURE(k);
    std::vector<std::int64_t> dims;
    for (const auto& d : e.find("shape")->as_array()) dims.push_back(d.as_integer());
    CHECK(a.at(k).dims == dims);
    std::vector<double> want;
    for (const auto& v : e.find("values")->as_array()) want.push_back(v.as_number());
    std::vector<double> got;
    switch (a.at(k).dtype) {
      case io::safetensors_dtype::f64:
        for (double v : a.get<double>(k).to_vector()) got.push_back(v);
        break;
      case io::safetensors_dtype::i64:
        for (auto v : a.get<std::int64_t>(k).to_vector()) got.push_back(double(v));
        break;
      default:  // F32, F16, BF16: through float, exactly
        for (float v : a.get<float>(k).to_vector()) got.push_back(v);
    }
    CHECK(got == want);
  }
  CHECK(a.at("d.f16").dtype == io::safetensors_dtype::f16);
  CHECK(a.at("e.bf16").dtype == io::safetensors_dtype::bf16);
  // A dtype that is not T's is refused (F16 only converts to float).
  CHECK_THROWS_AS(a.get<double>("a.f32"), value_error);
  CHECK_THROWS_AS(a.get<double>("d.f16"), value_error);
  CHECK_THROWS_AS(a.get<float>("c.i64"), value_error);
  CHECK_THROWS_AS(a.get<float>("no.such"), value_error);
}

TEST_CASE("safetensors: half-precision conversion covers subnormals, infinities and NaN") {
  CHECK(io::detail::half_to_float(0x3C00) == 1.0f);
  CHECK(io::detail::half_to_float(0xC000) == -2.0f);
  CHECK(io::detail::half_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(io::detail::half_to_float(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(std::isinf(io::detail::half_to_float(0x7C00)));
  CHECK(std::isnan(io::detail::half_to_float(0x7E00)));
  CHECK(std::signbit(io::detail::half_to_float(0x8000)));
  CHECK(io::detail::bfloat16_to_float(0x3F80) == 1.0f);
  CHECK(io::detail::bfloat16_to_float(0xC049) == -3.140625f);
}

TEST_CASE("safetensors: corrupt, truncated and inconsistent files are refused naming the file and the problem") {
  temp_dir d;
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data8(8, '\0');
  auto p = d.file("x.safetensors");

  SUBCASE("sanity: the well-formed file reads") {
    write_raw(p, "{" + ok_entry + "}", data8);
    CHECK(read_error(p).empty());
  }
  SUBCASE("missing file") { check_refused(d.file("absent.safetensors"), "cannot open"); }
  SUBCASE("shorter than the length field") {
    std::ofstream(p, std::ios::binary) << "abc";
    check_refused(p, "truncated");
  }
  SUBCASE("header length past the end of the file") {
    write_raw(p, "{" + ok_entry + "}", data8, 4096);
    check_refused(p, "truncated");
  }
  SUBCASE("absurd header length") {
    write_raw(p, "{}", "", std::uint64_t(1) << 40);
    check_refused(p, "exceeds the limit");
  }
  SUBCASE("data truncated") {
    write_raw(p, "{" + ok_entry + "}", "\0\0\0\0");
    check_refused(p, "run past the end");
  }
  SUBCASE("bad JSON") {
    write_raw(p, R"({"t":{"dtype":"F32",)", data8);
    check_refused(p, "bad JSON header");
  }
  SUBCASE("header is not an object") {
    write_raw(p, "[1,2]", "");
    check_refused(p, "does not start with '{'");
  }
  SUBCASE("unknown dtype") {
    write_raw(p, R"({"t":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", data8);
    check_refused(p, "unknown dtype \"F8\"");
  }
  SUBCASE("negative or fractional shape") {
    write_raw(p, R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8);
    check_refused(p, "non-negative integers");
    write_raw(p, R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", data8);
    check_refused(p, "non-negative integers");
  }
  SUBCASE("missing fields") {
    write_raw(p, R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", data8);
    check_refused(p, "\"shape\"");
    write_raw(p, R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8);
    check_refused(p, "data_offsets");
    write_raw(p, R"({"t":3})", data8);
    check_refused(p, "not an object");
  }
  SUBCASE("offsets reversed, out of range, of the wrong size, overlapping") {
    write_raw(p, R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8);
    check_refused(p, "reversed");
    write_raw(p, R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data8);
    check_refused(p, "run past the end");
    write_raw(p, R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8);
    check_refused(p, "need 12");
    write_raw(p,
              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              data8);
    check_refused(p, "overlapping");
  }
  SUBCASE("metadata that is not a string map") {
    write_raw(p, "{" + ok_entry + R"(,"__metadata__":{"k":1}})", data8);
    check_refused(p, "not a string");
  }
}

TEST_CASE("safetensors: writes are atomic and refuse what they cannot write") {
  temp_dir d;
  const auto path = d.file("m.safetensors");
  io::safetensors_archive a;
  a.put("x", ones<float>({2}));
  io::write_safetensors(path, a);
  // The target is a directory: the rename fails, the error names the file,
  // and no temporary file is left behind.
  const auto as_dir = d.file("dir.safetensors");
  fs::create_directories(as_dir + "/inner");
  CHECK_THROWS_AS(io::write_safetensors(as_dir, a), io_error);
  // A directory that does not exist.
  try {
    io::write_safetensors(d.file("no/such/dir/m.safetensors"), a);
    FAIL("expected an io_error");
  } catch (const io_error& e) {
    CHECK(std::string(e.what()).find("no/such/dir") != std::string::npos);
  }
  int tmp = 0;
  for (const auto& e : fs::directory_iterator(d.path)) tmp += e.path().string().find(".tmp") != std::string::npos;
  CHECK(tmp == 0);
  CHECK(io::read_safetensors(path).get<float>("x").to_vector() == std::vector<float>{1.f, 1.f});
  // Entries whose bytes do not match their dtype and shape are refused.
  a.tensors["x"].bytes.pop_back();
  CHECK_THROWS_AS(io::write_safetensors(path, a), io_error);
  CHECK(io::read_safetensors(path).get<float>("x").to_vector() == std::vector<float>{1.f, 1.f});
  CHECK_THROWS_AS(a.put("__metadata__", ones<float>({1})), value_error);
}

TEST_CASE("json: values, escapes, unicode and number forms round trip") {
  auto j = io::parse_json(R"( {"a": [1, -2, 3.5, 1e3, true, false, null], "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00",
                              "big": 9223372036854775807, "neg": -9223372036854775808, "o": {}} )");
  const auto& a = j.find("a")->as_array();
  CHECK(a[0].as_integer() == 1);
  CHECK(a[1].as_integer() == -2);
  CHECK(a[2].as_number() == 3.5);
  CHECK_FALSE(a[3].is_integer());
  CHECK(a[3].as_number() == 1000.0);
  CHECK(a[4].as_bool());
  CHECK(a[6].is_null());
  CHECK(j.find("s")->as_string() == "x\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(j.find("big")->as_integer() == INT64_MAX);
  CHECK(j.find("neg")->as_integer() == INT64_MIN);
  CHECK(j.find("o")->as_object().empty());
  CHECK(j.find("zz") == nullptr);
  auto again = io::parse_json(j.dump());
  CHECK(again.dump() == j.dump());
  CHECK_THROWS_AS(j.find("a")->as_string(), value_error);
}

TEST_CASE("json: malformed text is refused with the byte offset") {
  for (const char* bad : {"", "{", "{\"a\":}", "{\"a\":1,}", "[1,]", "{\"a\":1 \"b\":2}", "01", "1.", "-", "\"abc",
                          "\"\\x\"", "\"\\ud800\"", "{\"a\":1,\"a\":2}", "tru", "[1] x", "\"a\nb\"",
                          "99999999999999999999"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(io::parse_json(bad), value_error);
  }
  std::string deep(100, '[');
  CHECK_THROWS_AS(io::parse_json(deep), value_error);
  try {
    io::parse_json("{\"a\": x}");
  } catch (const value_error& e) {
    CHECK(std::string(e.what()).find("at byte 6") != std::string::npos);
  }
}
