#pragma once
/// \file safetensors.hpp
/// The safetensors format (https://github.com/huggingface/safetensors): an
/// 8-byte little-endian header length N, N bytes of JSON that map each tensor
/// name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
/// to the byte buffer after the header) plus an optional "__metadata__"
/// string map, then the raw little-endian tensor bytes.
///
/// Reading checks everything a corrupt or hostile file can get wrong (header
/// length, JSON, dtypes, shapes, offsets out of range, overlapping or of the
/// wrong size) and throws `protoseg::io_error` naming the file and the
/// problem. Writing goes to a temporary file in the same directory that is
/// renamed over the target, so a failed write never destroys the old file.

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "protoseg/error.hpp"
#include "protoseg/io/json.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::io {

static_assert(std::endian::native == std::endian::little,
              "protoseg::io safetensors support assumes a little-endian host");

/// Element types of the safetensors format.
enum class safetensors_dtype { boolean, u8, i8, i16, u16, f16, bf16, i32, u32, f32, f64, i64, u64 };

/// The format's name of a dtype ("F32", "BF16", ...).
inline const char* safetensors_dtype_name(safetensors_dtype d) {
  switch (d) {
    case safetensors_dtype::boolean: return "BOOL";
    case safetensors_dtype::u8: return "U8";
    case safetensors_dtype::i8: return "I8";
    case safetensors_dtype::i16: return "I16";
    case safetensors_dtype::u16: return "U16";
    case safetensors_dtype::f16: return "F16";
    case safetensors_dtype::bf16: return "BF16";
    case safetensors_dtype::i32: return "I32";
    case safetensors_dtype::u32: return "U32";
    case safetensors_dtype::f32: return "F32";
    case safetensors_dtype::f64: return "F64";
    case safetensors_dtype::i64: return "I64";
    case safetensors_dtype::u64: return "U64";
  }
  return "?";
}

/// Bytes per element of a dtype.
inline std::size_t safetensors_itemsize(safetensors_dtype d) {
  switch (d) {
    case safetensors_dtype::boolean:
    case safetensors_dtype::u8:
    case safetensors_dtype::i8: return 1;
    case safetensors_dtype::i16:
    case safetensors_dtype::u16:
    case safetensors_dtype::f16:
    case safetensors_dtype::bf16: return 2;
    case safetensors_dtype::i32:
    case safetensors_dtype::u32:
    case safetensors_dtype::f32: return 4;
    default: return 8;
  }
}

/// The dtype that stores C++ type T exactly (float, double, int64, int32, uint8).
template <class T>
constexpr safetensors_dtype safetensors_dtype_of() {
  if constexpr (std::is_same_v<T, float>) return safetensors_dtype::f32;
  else if constexpr (std::is_same_v<T, double>) return safetensors_dtype::f64;
  else if constexpr (std::is_same_v<T, std::int64_t>) return safetensors_dtype::i64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return safetensors_dtype::i32;
  else {
    static_assert(std::is_same_v<T, std::uint8_t>,
                  "safetensors: T must be float, double, int64_t, int32_t or uint8_t");
    return safetensors_dtype::u8;
  }
}

namespace detail {

[[noreturn]] inline void safetensors_fail(const std::string& path, const std::string& what) {
  ::protoseg::detail::fail<io_error>("safetensors file '", path, "': ", what);
}

inline bool safetensors_parse_dtype(const std::string& s, safetensors_dtype& out) {
  static const std::pair<const char*, safetensors_dtype> table[] = {
      {"BOOL", safetensors_dtype::boolean}, {"U8", safetensors_dtype::u8},     {"I8", safetensors_dtype::i8},
      {"I16", safetensors_dtype::i16},      {"U16", safetensors_dtype::u16},   {"F16", safetensors_dtype::f16},
      {"BF16", safetensors_dtype::bf16},    {"I32", safetensors_dtype::i32},   {"U32", safetensors_dtype::u32},
      {"F32", safetensors_dtype::f32},      {"F64", safetensors_dtype::f64},   {"I64", safetensors_dtype::i64},
      {"U64", safetensors_dtype::u64}};
  for (const auto& [name, d] : table)
    if (s == name) {
      out = d;
      return true;
    }
  return false;
}

/// IEEE half to float (subnormals, infinities and NaN included).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        --exp;
      }
      man &= 0x3FF;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

/// bfloat16 to float (the upper half of a float's bits).
inline float bfloat16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }

}  // namespace detail

/// One tensor of a safetensors file: dtype, dimensions and raw bytes.
struct safetensors_tensor {
  safetensors_dtype dtype = safetensors_dtype::f32;
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> bytes;

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }

  /// The bytes of a tensor (copied to the host).
  template <class T, class P>
  static safetensors_tensor from(const tensor<T, P>& t) {
    t.require_defined("safetensors_tensor::from");
    safetensors_tensor s;
    s.dtype = safetensors_dtype_of<T>();
    s.dims = t.shape().to_vector();
    const std::vector<T> v = t.to_vector();
    s.bytes.resize(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(s.bytes.data(), v.data(), s.bytes.size());
    return s;
  }

  /// The values as a tensor<T, P>. The dtype must be T's, except that float
  /// also accepts F16 and BF16 (converted exactly). `name` is for messages.
  template <class T, class P = cpu>
  tensor<T, P> to_tensor(const std::string& name = "tensor") const {
    if (dims.size() > static_cast<std::size_t>(max_rank))
      ::protoseg::detail::fail<shape_error>("safetensors: '", name, "' has rank ", dims.size(),
                                            ", protoseg tensors have rank <= ", max_rank);
    const protoseg::shape s(dims);
    [[maybe_unused]] const bool half = dtype == safetensors_dtype::f16 || dtype == safetensors_dtype::bf16;
    if constexpr (std::is_same_v<T, float>) {
      if (half) {
        std::vector<float> v(static_cast<std::size_t>(numel()));
        for (std::size_t i = 0; i < v.size(); ++i) {
          std::uint16_t h;
          std::memcpy(&h, bytes.data() + 2 * i, 2);
          v[i] = dtype == safetensors_dtype::f16 ? detail::half_to_float(h) : detail::bfloat16_to_float(h);
        }
        return tensor<T, P>::from_vector(v, s);
      }
    }
    if (dtype != safetensors_dtype_of<T>())
      ::protoseg::detail::fail<value_error>("safetensors: '", name, "' has dtype ", safetensors_dtype_name(dtype),
                                            ", expected ", safetensors_dtype_name(safetensors_dtype_of<T>()));
    std::vector<T> v(static_cast<std::size_t>(numel()));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return tensor<T, P>::from_vector(v, s);
  }
};

/// The contents of a safetensors file: named tensors and string metadata.
struct safetensors_archive {
  std::map<std::string, safetensors_tensor> tensors;
  std::map<std::string, std::string> metadata;

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  /// Adds (or replaces) `name` with the values of `t`.
  template <class T, class P>
  void put(const std::string& name, const tensor<T, P>& t) {
    if (name.empty() || name == "__metadata__")
      ::protoseg::detail::fail<value_error>("safetensors: tensor name '", name, "' is reserved or empty");
    tensors[name] = safetensors_tensor::from(t);
  }
  /// The entry `name`; value_error listing nothing else when absent.
  const safetensors_tensor& at(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) ::protoseg::detail::fail<value_error>("safetensors: no tensor named '", name, "'");
    return it->second;
  }
  /// The tensor `name` converted as safetensors_tensor::to_tensor does.
  template <class T, class P = cpu>
  tensor<T, P> get(const std::string& name) const {
    return at(name).template to_tensor<T, P>(name);
  }
};

/// Reads a whole safetensors file; io_error on any malformed part.
inline safetensors_archive read_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) detail::safetensors_fail(path, "cannot open the file for reading");
  f.seekg(0, std::ios::end);
  const auto end = f.tellg();
  if (end < 0) detail::safetensors_fail(path, "cannot determine the file size");
  const std::uint64_t file_size = static_cast<std::uint64_t>(end);
  f.seekg(0);
  if (file_size < 8)
    detail::safetensors_fail(path, "truncated: " + std::to_string(file_size) + " bytes, the header length needs 8");
  std::uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  constexpr std::uint64_t max_header = 100u << 20;
  if (n > max_header)
    detail::safetensors_fail(path, "header length " + std::to_string(n) + " exceeds the limit of 100 MiB");
  if (n > file_size - 8)
    detail::safetensors_fail(path, "truncated: header length " + std::to_string(n) + " but only " +
                                       std::to_string(file_size - 8) + " bytes follow");
  std::string header(static_cast<std::size_t>(n), '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  if (!f) detail::safetensors_fail(path, "cannot read the header");
  if (header.empty() || header[0] != '{') detail::safetensors_fail(path, "the header does not start with '{'");
  json_value j;
  try {
    j = parse_json(header);
  } catch (const value_error& e) {
    detail::safetensors_fail(path, std::string("bad JSON header: ") + e.what());
  }
  if (!j.is_object()) detail::safetensors_fail(path, "the header is not a JSON object");

  const std::uint64_t data_size = file_size - 8 - n;
  safetensors_archive out;
  struct span {
    std::uint64_t begin, end;
    std::string name;
  };
  std::vector<span> spans;
  for (const auto& [name, v] : j.as_object()) {
    if (name == "__metadata__") {
      if (!v.is_object()) detail::safetensors_fail(path, "__metadata__ is not an object");
      for (const auto& [k, m] : v.as_object()) {
        if (!m.is_string()) detail::safetensors_fail(path, "__metadata__ value of '" + k + "' is not a string");
        out.metadata[k] = m.as_string();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object()) detail::safetensors_fail(path, where + "entry is not an object");
    const json_value* dt = v.find("dtype");
    const json_value* sh = v.find("shape");
    const json_value* off = v.find("data_offsets");
    if (!dt || !dt->is_string()) detail::safetensors_fail(path, where + "missing or non-string \"dtype\"");
    if (!sh || !sh->is_array()) detail::safetensors_fail(path, where + "missing or non-array \"shape\"");
    if (!off || !off->is_array() || off->as_array().size() != 2)
      detail::safetensors_fail(path, where + "\"data_offsets\" must be an array of two integers");
    safetensors_tensor t;
    if (!detail::safetensors_parse_dtype(dt->as_string(), t.dtype))
      detail::safetensors_fail(path, where + "unknown dtype \"" + dt->as_string() + "\"");
    std::uint64_t count = 1;
    for (const auto& d : sh->as_array()) {
      if (!d.is_integer() || d.as_integer() < 0)
        detail::safetensors_fail(path, where + "shape entries must be non-negative integers");
      const auto dim = static_cast<std::uint64_t>(d.as_integer());
      if (dim != 0 && count > (std::uint64_t(1) << 62) / dim)
        detail::safetensors_fail(path, where + "the shape has too many elements");
      count *= dim;
      t.dims.push_back(d.as_integer());
    }
    const auto& o = off->as_array();
    if (!o[0].is_integer() || !o[1].is_integer() || o[0].as_integer() < 0 || o[1].as_integer() < 0)
      detail::safetensors_fail(path, where + "\"data_offsets\" must be non-negative integers");
    const auto b = static_cast<std::uint64_t>(o[0].as_integer()), e = static_cast<std::uint64_t>(o[1].as_integer());
    if (b > e) detail::safetensors_fail(path, where + "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] are reversed");
    if (e > data_size)
      detail::safetensors_fail(path, where + "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                                         "] run past the end of the data (" + std::to_string(data_size) + " bytes)");
    const std::uint64_t want = count * safetensors_itemsize(t.dtype);
    if (e - b != want)
      detail::safetensors_fail(path, where + "data_offsets cover " + std::to_string(e - b) + " bytes, dtype and shape need " +
                                         std::to_string(want));
    spans.push_back({b, e, name});
    out.tensors.emplace(name, std::move(t));
  }
  std::sort(spans.begin(), spans.end(), [](const span& a, const span& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      detail::safetensors_fail(path, "tensors '" + spans[i - 1].name + "' and '" + spans[i].name +
                                         "' have overlapping data_offsets");
  for (const auto& s : spans) {
    auto& t = out.tensors[s.name];
    t.bytes.resize(static_cast<std::size_t>(s.end - s.begin));
    f.seekg(static_cast<std::streamoff>(8 + n + s.begin));
    if (!t.bytes.empty()) f.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    if (!f) detail::safetensors_fail(path, "tensor '" + s.name + "': cannot read its data");
  }
  return out;
}

/// Writes `archive` to `path` atomically (temporary file, then rename). The
/// header is padded with spaces so that the data starts 8-byte aligned, as
/// the reference writer does; tensors are stored in name order.
inline void write_safetensors(const std::string& path, const safetensors_archive& archive) {
  namespace fs = std::filesystem;
  json_value::object header;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : archive.tensors) {
    if (name == "__metadata__") detail::safetensors_fail(path, "'__metadata__' cannot name a tensor");
    const std::uint64_t want = static_cast<std::uint64_t>(t.numel()) * safetensors_itemsize(t.dtype);
    if (t.bytes.size() != want)
      detail::safetensors_fail(path, "tensor '" + name + "' holds " + std::to_string(t.bytes.size()) +
                                         " bytes, its dtype and shape need " + std::to_string(want));
    json_value::array dims;
    for (auto d : t.dims) dims.emplace_back(d);
    json_value::object entry;
    entry["dtype"] = json_value(safetensors_dtype_name(t.dtype));
    entry["shape"] = json_value(std::move(dims));
    entry["data_offsets"] = json_value(json_value::array{json_value(static_cast<std::int64_t>(offset)),
                                                         json_value(static_cast<std::int64_t>(offset + want))});
    header[name] = json_value(std::move(entry));
    offset += want;
  }
  if (!archive.metadata.empty()) {
    json_value::object meta;
    for (const auto& [k, v] : archive.metadata) meta[k] = json_value(v);
    header["__metadata__"] = json_value(std::move(meta));
  }
  std::string text = json_value(std::move(header)).dump();
  while (text.size() % 8 != 0) text += ' ';
  const std::uint64_t n = text.size();

  std::string tmp = path + ".tmp";
#if defined(__unix__) || defined(__APPLE__)
  tmp += '.' + std::to_string(::getpid());
#endif
  static std::atomic<unsigned> counter{0};
  tmp += '.' + std::to_string(counter.fetch_add(1));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) detail::safetensors_fail(path, "cannot open the temporary file " + tmp + " for writing");
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : archive.tensors)
      if (!t.bytes.empty()) f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    f.flush();
    if (!f) {
      f.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      detail::safetensors_fail(path, "writing the temporary file " + tmp + " failed");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove(tmp, ec2);
    detail::safetensors_fail(path, "cannot rename the temporary file into place: " + ec.message());
  }
}

}  // namespace protoseg::io
