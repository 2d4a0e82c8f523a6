#pragma once
/// \file idx.hpp
/// Reader for IDX files (the MNIST / Fashion-MNIST container format), plain
/// or gzip-compressed, through zlib. Every problem with a file (missing,
/// unreadable, corrupt gzip stream, bad magic, unsupported element type,
/// sizes that disagree with the file's length) throws `protoseg::io_error`
/// with a message that names the file and the problem.

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <ios>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "protoseg/error.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::data {

/// Element type codes of the IDX format (third byte of the magic number).
enum class idx_dtype : std::uint8_t {
  u8 = 0x08,   ///< unsigned byte
  i8 = 0x09,   ///< signed byte
  i16 = 0x0B,  ///< big-endian 16-bit integer
  i32 = 0x0C,  ///< big-endian 32-bit integer
  f32 = 0x0D,  ///< big-endian IEEE float
  f64 = 0x0E,  ///< big-endian IEEE double
};

/// Header of an IDX file: element type and dimensions.
struct idx_header {
  idx_dtype dtype = idx_dtype::u8;
  std::vector<std::int64_t> dims;
};

namespace data_detail {

inline const char* idx_dtype_name(std::uint8_t code) {
  switch (code) {
    case 0x08: return "unsigned byte (0x08)";
    case 0x09: return "signed byte (0x09)";
    case 0x0B: return "int16 (0x0B)";
    case 0x0C: return "int32 (0x0C)";
    case 0x0D: return "float32 (0x0D)";
    case 0x0E: return "float64 (0x0E)";
    default: return nullptr;
  }
}

/// A gzip (or plain) file opened through zlib, closed on scope exit.
class gz_file {
 public:
  explicit gz_file(const std::filesystem::path& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      detail::fail<io_error>("IDX file '", path.string(), "': the file does not exist");
    if (std::filesystem::is_directory(path, ec))
      detail::fail<io_error>("IDX file '", path.string(), "': is a directory, expected a file");
    f_ = gzopen(path.string().c_str(), "rb");
    if (!f_) detail::fail<io_error>("IDX file '", path.string(), "': cannot be opened for reading");
  }
  gz_file(const gz_file&) = delete;
  gz_file& operator=(const gz_file&) = delete;
  ~gz_file() {
    if (f_) gzclose(f_);
  }

  /// Reads up to n bytes; returns how many were read (fewer only at the end
  /// of the data). A corrupt or truncated compressed stream throws.
  std::size_t read(void* dst, std::size_t n) {
    auto* p = static_cast<unsigned char*>(dst);
    std::size_t done = 0;
    while (done < n) {
      const std::size_t chunk = std::min<std::size_t>(n - done, std::size_t(1) << 30);
      const int got = gzread(f_, p + done, static_cast<unsigned>(chunk));
      if (got < 0) fail_stream();
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    if (done < n) check_stream();  // a short read: end of data, or a truncated stream
    return done;
  }

  /// Throws when zlib reports an error (e.g. a gzip stream cut short).
  void check_stream() {
    int err = Z_OK;
    gzerror(f_, &err);
    if (err != Z_OK && err != Z_STREAM_END) fail_stream();
  }

  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  [[noreturn]] void fail_stream() {
    int err = Z_OK;
    const char* msg = gzerror(f_, &err);
    detail::fail<io_error>("IDX file '", path_.string(), "': corrupt or truncated gzip data (zlib: ",
                           msg ? msg : "unknown error", ")");
  }
  std::filesystem::path path_;
  gzFile f_ = nullptr;
};

inline idx_header read_idx_header(gz_file& f) {
  const std::string name = f.path().string();
  unsigned char magic[4];
  if (f.read(magic, 4) != 4)
    detail::fail<io_error>("IDX file '", name, "': shorter than the 4-byte IDX magic number (empty or truncated)");
  if (magic[0] != 0 || magic[1] != 0 || !idx_dtype_name(magic[2]))
    detail::fail<io_error>("IDX file '", name, "': bad magic number 0x", std::hex, (int(magic[0]) << 24) |
                           (int(magic[1]) << 16) | (int(magic[2]) << 8) | int(magic[3]),
                           std::dec, ", expected 0x0000TTRR (TT = element type 08..0E, RR = rank); not an IDX file");
  const int rank = magic[3];
  if (rank < 1 || rank > 5)
    detail::fail<io_error>("IDX file '", name, "': rank ", rank, " is not supported, expected 1 to 5");
  idx_header h;
  h.dtype = static_cast<idx_dtype>(magic[2]);
  for (int d = 0; d < rank; ++d) {
    unsigned char b[4];
    if (f.read(b, 4) != 4)
      detail::fail<io_error>("IDX file '", name, "': truncated header (dimension ", d, " of ", rank, " is missing)");
    const std::uint32_t v = (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) |
                            std::uint32_t(b[3]);
    h.dims.push_back(static_cast<std::int64_t>(v));
  }
  return h;
}

}  // namespace data_detail

/// Reads only the header (element type and dimensions) of an IDX file.
inline idx_header read_idx_header(const std::filesystem::path& path) {
  data_detail::gz_file f(path);
  return data_detail::read_idx_header(f);
}

/// Reads an IDX file of unsigned bytes (type 0x08) into a tensor whose shape
/// is the file's dimensions. `expected_rank` (when > 0) must match the file's.
/// The data must have exactly the length the dimensions imply.
inline tensor<std::uint8_t> read_idx_u8(const std::filesystem::path& path, int expected_rank = 0) {
  data_detail::gz_file f(path);
  const std::string name = path.string();
  const idx_header h = data_detail::read_idx_header(f);
  if (h.dtype != idx_dtype::u8)
    detail::fail<io_error>("IDX file '", name, "': element type is ",
                           data_detail::idx_dtype_name(static_cast<std::uint8_t>(h.dtype)),
                           ", expected unsigned byte (0x08)");
  if (expected_rank > 0 && static_cast<int>(h.dims.size()) != expected_rank)
    detail::fail<io_error>("IDX file '", name, "': rank ", h.dims.size(), ", expected ", expected_rank);
  std::int64_t n = 1;
  constexpr std::int64_t limit = std::int64_t(1) << 34;  // 16 GiB: anything larger is a corrupt header
  for (auto d : h.dims) {
    if (d > 0 && n > limit / d)
      detail::fail<io_error>("IDX file '", name, "': dimensions ", shape(h.dims), " claim more than 16 GiB of data");
    n *= d;
  }
  auto t = tensor<std::uint8_t>::empty(shape(h.dims));
  const std::size_t got = f.read(t.data(), static_cast<std::size_t>(n));
  if (got != static_cast<std::size_t>(n))
    detail::fail<io_error>("IDX file '", name, "': truncated: the header's dimensions ", shape(h.dims), " need ", n,
                           " bytes of data, the file has only ", got);
  unsigned char extra;
  if (f.read(&extra, 1) != 0)
    detail::fail<io_error>("IDX file '", name, "': more data than the header's dimensions ", shape(h.dims),
                           " describe (", n, " bytes): wrong header or concatenated files");
  return t;
}

}  // namespace protoseg::data
