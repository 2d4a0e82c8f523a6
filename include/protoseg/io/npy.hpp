#pragma once
/// \file npy.hpp
/// NumPy `.npy` files (format versions 1.0 and 2.0): read and write
/// float32, float64 and int64 arrays in C order. Fortran order, other dtypes,
/// big-endian data and truncated or corrupt files are rejected with a
/// `protoseg::io_error` that names the file and the problem. Writes go to a
/// temporary file in the same directory that is renamed over the target, so a
/// failed write never destroys the previous file.

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "protoseg/error.hpp"
#include "protoseg/tensor/shape.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::io {

static_assert(std::endian::native == std::endian::little, "protoseg::io npy support assumes a little-endian host");

/// Element types a `.npy` file may hold here.
enum class npy_dtype { float32, float64, int64 };

/// The parsed header of a `.npy` file.
struct npy_header {
  npy_dtype dtype = npy_dtype::float32;
  protoseg::shape dims{};
  int major_version = 1;
  std::uint64_t data_offset = 0;  ///< bytes before the array data
};

/// The numpy descriptor of a dtype ("<f4", "<f8", "<i8").
inline const char* npy_descr(npy_dtype d) {
  switch (d) {
    case npy_dtype::float32: return "<f4";
    case npy_dtype::float64: return "<f8";
    case npy_dtype::int64: return "<i8";
  }
  return "?";
}

inline std::size_t npy_itemsize(npy_dtype d) { return d == npy_dtype::float32 ? 4 : 8; }

/// The dtype that stores T (float, double or int64_t).
template <class T>
constexpr npy_dtype npy_dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t>,
                "protoseg::io npy: T must be float, double or std::int64_t");
  if constexpr (std::is_same_v<T, float>) return npy_dtype::float32;
  else if constexpr (std::is_same_v<T, double>) return npy_dtype::float64;
  else return npy_dtype::int64;
}

namespace detail {

[[noreturn]] inline void npy_fail(const std::string& path, const std::string& what) {
  protoseg::detail::fail<io_error>("npy: ", path, ": ", what);
}

inline void skip_space(std::string_view h, std::size_t& i) {
  while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) ++i;
}

/// Position just after `'key':` in the header dictionary, or npos.
inline std::size_t find_key(std::string_view h, std::string_view key) {
  for (char q : {'\'', '"'}) {
    std::string k;
    k += q;
    k += key;
    k += q;
    std::size_t p = h.find(k);
    if (p == std::string_view::npos) continue;
    p += k.size();
    skip_space(h, p);
    if (p < h.size() && h[p] == ':') return p + 1;
  }
  return std::string_view::npos;
}

/// Parses the header dictionary text of a `.npy` file.
inline void parse_header_dict(std::string_view h, const std::string& path, npy_header& out) {
  std::size_t i = 0;
  skip_space(h, i);
  if (i >= h.size() || h[i] != '{') npy_fail(path, "corrupt header: expected a Python dict literal starting with '{'");
  // descr
  std::size_t p = find_key(h, "descr");
  if (p == std::string_view::npos) npy_fail(path, "corrupt header: no 'descr' key");
  skip_space(h, p);
  if (p >= h.size() || (h[p] != '\'' && h[p] != '"')) npy_fail(path, "unsupported dtype: 'descr' is not a simple type string (structured arrays are not supported)");
  const char q = h[p];
  const std::size_t e = h.find(q, p + 1);
  if (e == std::string_view::npos) npy_fail(path, "corrupt header: unterminated 'descr' string");
  const std::string descr(h.substr(p + 1, e - p - 1));
  if (descr == "<f4" || descr == "=f4") out.dtype = npy_dtype::float32;
  else if (descr == "<f8" || descr == "=f8") out.dtype = npy_dtype::float64;
  else if (descr == "<i8" || descr == "=i8") out.dtype = npy_dtype::int64;
  else if (!descr.empty() && descr[0] == '>')
    npy_fail(path, "unsupported dtype '" + descr + "': big-endian data, expected little-endian <f4, <f8 or <i8");
  else
    npy_fail(path, "unsupported dtype '" + descr + "', expected float32 (<f4), float64 (<f8) or int64 (<i8)");
  // fortran_order
  p = find_key(h, "fortran_order");
  if (p == std::string_view::npos) npy_fail(path, "corrupt header: no 'fortran_order' key");
  skip_space(h, p);
  if (h.substr(p, 4) == "True") npy_fail(path, "unsupported layout: fortran_order is True, expected C order (use numpy.ascontiguousarray)");
  if (h.substr(p, 5) != "False") npy_fail(path, "corrupt header: 'fortran_order' is neither True nor False");
  // shape
  p = find_key(h, "shape");
  if (p == std::string_view::npos) npy_fail(path, "corrupt header: no 'shape' key");
  skip_space(h, p);
  if (p >= h.size() || h[p] != '(') npy_fail(path, "corrupt header: 'shape' is not a tuple");
  ++p;
  std::vector<std::int64_t> dims;
  for (;;) {
    skip_space(h, p);
    if (p >= h.size()) npy_fail(path, "corrupt header: unterminated 'shape' tuple");
    if (h[p] == ')') break;
    if (h[p] < '0' || h[p] > '9') npy_fail(path, "corrupt header: 'shape' holds a non-integer entry");
    std::int64_t v = 0;
    while (p < h.size() && h[p] >= '0' && h[p] <= '9') {
      if (v > (std::int64_t(1) << 50)) npy_fail(path, "corrupt header: a 'shape' entry is too large");
      v = v * 10 + (h[p] - '0');
      ++p;
    }
    dims.push_back(v);
    skip_space(h, p);
    if (p < h.size() && h[p] == ',') ++p;
    else if (p < h.size() && h[p] != ')') npy_fail(path, "corrupt header: malformed 'shape' tuple");
  }
  if (static_cast<int>(dims.size()) > protoseg::max_rank)
    npy_fail(path, "unsupported rank " + std::to_string(dims.size()) + ", expected at most " +
                       std::to_string(protoseg::max_rank) + " dimensions");
  out.dims = protoseg::shape(dims);
}

inline std::uint64_t file_size_of(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  if (ec) npy_fail(path, "cannot open: " + ec.message());
  return static_cast<std::uint64_t>(n);
}

}  // namespace detail

/// Reads and checks the header of a `.npy` file (dtype, shape, size).
inline npy_header read_npy_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) detail::npy_fail(path, "cannot open for reading");
  const std::uint64_t size = detail::file_size_of(path);
  unsigned char pre[10];
  if (size < 10 || !f.read(reinterpret_cast<char*>(pre), 10))
    detail::npy_fail(path, "truncated: " + std::to_string(size) + " bytes, too short for a .npy header");
  static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  for (int k = 0; k < 6; ++k)
    if (pre[k] != magic[k]) detail::npy_fail(path, "not a .npy file: bad magic string, expected \\x93NUMPY");
  npy_header h;
  h.major_version = pre[6];
  std::uint64_t hlen = 0, pre_len = 0;
  if (pre[6] == 1 && pre[7] == 0) {
    hlen = std::uint64_t(pre[8]) | (std::uint64_t(pre[9]) << 8);
    pre_len = 10;
  } else if (pre[6] == 2 && pre[7] == 0) {
    unsigned char more[2];
    if (!f.read(reinterpret_cast<char*>(more), 2)) detail::npy_fail(path, "truncated: the version 2.0 header length is cut off");
    hlen = std::uint64_t(pre[8]) | (std::uint64_t(pre[9]) << 8) | (std::uint64_t(more[0]) << 16) |
           (std::uint64_t(more[1]) << 24);
    pre_len = 12;
  } else {
    detail::npy_fail(path, "unsupported format version " + std::to_string(pre[6]) + "." + std::to_string(pre[7]) +
                               ", expected 1.0 or 2.0");
  }
  if (pre_len + hlen > size)
    detail::npy_fail(path, "truncated: the header claims " + std::to_string(hlen) + " bytes, the file has " +
                               std::to_string(size - pre_len) + " after the preamble");
  std::string text(static_cast<std::size_t>(hlen), '\0');
  if (!f.read(text.data(), static_cast<std::streamsize>(hlen))) detail::npy_fail(path, "truncated: cannot read the header");
  detail::parse_header_dict(text, path, h);
  h.data_offset = pre_len + hlen;
  std::uint64_t need = npy_itemsize(h.dtype);
  for (int d = 0; d < h.dims.rank(); ++d) {
    const std::uint64_t n = static_cast<std::uint64_t>(h.dims[d]);
    if (n != 0 && need > (std::uint64_t(1) << 62) / n) detail::npy_fail(path, "corrupt header: the shape is too large");
    need *= n;
  }
  const std::uint64_t have = size - h.data_offset;
  if (have < need)
    detail::npy_fail(path, "truncated: shape " + protoseg::detail::concat_message(h.dims) + " of " + npy_descr(h.dtype) +
                               " needs " + std::to_string(need) + " data bytes, the file has " + std::to_string(have));
  if (have > need)
    detail::npy_fail(path, "corrupt: " + std::to_string(have - need) + " unexpected bytes after the " +
                               std::to_string(need) + " data bytes of shape " +
                               protoseg::detail::concat_message(h.dims));
  return h;
}

/// Reads a `.npy` file whose dtype is exactly T's (float32 for float,
/// float64 for double, int64 for std::int64_t).
template <class T>
tensor<T> read_npy(const std::string& path) {
  const npy_header h = read_npy_header(path);
  if (h.dtype != npy_dtype_of<T>())
    detail::npy_fail(path, std::string("dtype ") + npy_descr(h.dtype) + " does not match the requested " +
                               npy_descr(npy_dtype_of<T>()));
  auto t = tensor<T>::empty(h.dims);
  std::ifstream f(path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(h.data_offset));
  if (t.numel() > 0 && !f.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.numel() * sizeof(T))))
    detail::npy_fail(path, "truncated: cannot read the array data");
  return t;
}

namespace detail {
template <class T, class U>
tensor<T> cast_npy(const tensor<U>& x) {
  auto t = tensor<T>::empty(x.shape());
  for (std::int64_t k = 0; k < x.numel(); ++k) t.data()[k] = static_cast<T>(x.data()[k]);
  return t;
}
}  // namespace detail

/// Reads a float32 or float64 `.npy` file into a tensor of T (float or
/// double), converting the precision; int64 files only into int64.
template <class T>
tensor<T> read_npy_as(const std::string& path) {
  const npy_header h = read_npy_header(path);
  if (h.dtype == npy_dtype_of<T>()) return read_npy<T>(path);
  if constexpr (std::is_floating_point_v<T>) {
    if (h.dtype == npy_dtype::float32) return detail::cast_npy<T>(read_npy<float>(path));
    if (h.dtype == npy_dtype::float64) return detail::cast_npy<T>(read_npy<double>(path));
  }
  detail::npy_fail(path, std::string("dtype ") + npy_descr(h.dtype) + " cannot be read as " + npy_descr(npy_dtype_of<T>()));
}

/// Writes t as a C-order `.npy` file (version 1.0 header, 2.0 when the header
/// needs it). Written to a temporary file and renamed over `path`.
template <class T>
void write_npy(const std::string& path, const tensor<T>& t) {
  constexpr npy_dtype dt = npy_dtype_of<T>();
  if (!t.defined()) detail::npy_fail(path, "cannot write an undefined tensor");
  std::string dict = std::string("{'descr': '") + npy_descr(dt) + "', 'fortran_order': False, 'shape': (";
  for (int d = 0; d < t.rank(); ++d) {
    dict += std::to_string(t.shape()[d]);
    if (t.rank() == 1 || d + 1 < t.rank()) dict += ",";
    if (d + 1 < t.rank()) dict += " ";
  }
  dict += "), }";
  int version = 1;
  std::size_t pre = 10;
  if (dict.size() + 1 + pre > 65535) version = 2, pre = 12;
  std::size_t total = pre + dict.size() + 1;
  const std::size_t pad = (64 - total % 64) % 64;
  dict.append(pad, ' ');
  dict += '\n';
  const std::uint64_t hlen = dict.size();
  std::string head = "\x93NUMPY";
  head += static_cast<char>(version);
  head += '\0';
  for (std::size_t k = 0; k < (version == 1 ? 2u : 4u); ++k) head += static_cast<char>((hlen >> (8 * k)) & 0xff);
  head += dict;

  namespace fs = std::filesystem;
  const fs::path target(path);
  std::string tmp = path + ".tmp";
#if defined(__unix__) || defined(__APPLE__)
  tmp += '.';
  tmp += std::to_string(::getpid());
#endif
  static std::atomic<unsigned> counter{0};  // distinct names for concurrent writers in one process
  tmp += '.';
  tmp += std::to_string(counter.fetch_add(1));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) detail::npy_fail(path, "cannot open the temporary file " + tmp + " for writing");
    f.write(head.data(), static_cast<std::streamsize>(head.size()));
    if (t.numel() > 0) {
      const std::vector<T> host = t.to_vector();
      f.write(reinterpret_cast<const char*>(host.data()), static_cast<std::streamsize>(host.size() * sizeof(T)));
    }
    f.flush();
    if (!f) {
      f.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      detail::npy_fail(path, "write failed (disk full or I/O error); the previous file is untouched");
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove(tmp, ec2);
    detail::npy_fail(path, "cannot rename the temporary file into place: " + ec.message());
  }
}

}  // namespace protoseg::io
