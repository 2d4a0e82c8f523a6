#pragma once
/// \file image_write.hpp
/// Atomic file writes and PNG output through stb_image_write (Debian
/// `libstb-dev`). A file is first written to `path.tmp` and then renamed
/// over `path`, so a previous good file is never left half-written: on any
/// error the old file stays as it was and `io_error` names the file.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "protoseg/error.hpp"
#include "protoseg/tensor/tensor.hpp"

// stb_image_write is compiled into every translation unit that includes this
// header, as `static` functions (STB_IMAGE_WRITE_STATIC): a header-only library
// cannot own the one translation unit that would hold a shared definition, and
// static copies cannot clash with a user's own stb_image_write implementation.
// Its warnings are not ours to fix, so they are silenced around the include.
#if !defined(INCLUDE_STB_IMAGE_WRITE_H)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#define PROTOSEG_HAS_STB_IMAGE_WRITE 1
#endif

namespace protoseg::data {

/// Writes `bytes` to `path` atomically: to `path.tmp` first, then renamed
/// over `path`. The parent directory must exist. Throws `io_error`; on
/// failure `path` keeps its old contents.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      detail::fail<io_error>("cannot write '", path.string(), "': cannot create the temporary file '", tmp.string(),
                             "' (missing directory, no permission, or a directory in the way)");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      out.close();
      std::error_code ignore;
      std::filesystem::remove(tmp, ignore);
      detail::fail<io_error>("cannot write '", path.string(), "': writing ", bytes.size(), " bytes to '",
                             tmp.string(), "' failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignore;
    std::filesystem::remove(tmp, ignore);
    detail::fail<io_error>("cannot write '", path.string(), "': renaming '", tmp.string(), "' failed: ", ec.message());
  }
}

/// PNG-encodes a uint8 image: shape (H, W) for gray, (H, W, C) with C = 1
/// (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). Throws `shape_error`
/// for another shape and `io_error` if encoding fails.
inline std::string encode_png(const tensor<std::uint8_t>& image) {
  image.require_defined("encode_png");
  const int rank = image.rank();
  const std::int64_t channels = rank == 3 ? image.size(2) : 1;
  if ((rank != 2 && rank != 3) || channels < 1 || channels > 4 || image.size(0) < 1 || image.size(1) < 1)
    detail::fail<shape_error>("encode_png: image has shape ", image.shape(),
                              ", expected (H, W) or (H, W, C) with H, W >= 1 and C in 1..4");
  const int h = static_cast<int>(image.size(0)), w = static_cast<int>(image.size(1)), c = static_cast<int>(channels);
  std::string png;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
  };
  if (!stbi_write_png_to_func(sink, &png, w, h, c, image.data(), w * c) || png.empty())
    detail::fail<io_error>("encode_png: stb_image_write failed to encode a ", w, "x", h, "x", c, " image");
  return png;
}

/// Writes a uint8 image (see `encode_png` for the shapes) as a PNG file,
/// atomically (see `write_file_atomically`).
inline void write_png(const std::filesystem::path& path, const tensor<std::uint8_t>& image) {
  write_file_atomically(path, encode_png(image));
}

}  // namespace protoseg::data
