#pragma once
/// \file image_read.hpp
/// Image and label-map decoding through stb_image (Debian `libstb-dev`):
/// PNG, JPEG, BMP, TGA, GIF (first frame), PSD, HDR, PIC and PNM. Files are
/// read into memory first and decoded from there, so every error names the
/// file and says what is wrong with it (missing, a directory, empty,
/// unreadable, or corrupt with stb_image's reason).

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "protoseg/error.hpp"
#include "protoseg/tensor/tensor.hpp"

// stb_image is compiled into every translation unit that includes this header,
// as `static` functions (STB_IMAGE_STATIC), for the reason given in
// image_write.hpp. A translation unit that has already included stb_image.h
// (with its own STB_IMAGE_IMPLEMENTATION, or linked against one) keeps its
// copy: the include guard STBI_INCLUDE_STB_IMAGE_H is honoured. Its warnings
// are not ours to fix, so they are silenced around the include.
#if !defined(STBI_INCLUDE_STB_IMAGE_H)
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
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#undef STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#define PROTOSEG_HAS_STB_IMAGE 1
#endif

namespace protoseg::data {

namespace data_detail {

struct stbi_deleter {
  void operator()(void* p) const noexcept { stbi_image_free(p); }
};

// stb_image's reason for the last failure on this thread. For a PNG chunk it
// does not know, stb writes the chunk's four type bytes into the reason, so a
// file cut inside a chunk header yields an empty or garbled reason.
inline std::string stbi_reason() {
  const char* r = stbi_failure_reason();
  const std::string reason = r ? std::string(r) : std::string();
  if (reason.empty()) return "unexpected end of data";
  if (reason.size() < 5) return "unknown or cut PNG chunk '" + reason + "'";
  return reason;
}

/// PNG colour type from the IHDR chunk, or -1 when `bytes` is not a PNG.
inline int png_color_type(std::string_view bytes) {
  static constexpr std::string_view sig("\x89PNG\r\n\x1a\n", 8);
  if (bytes.size() < 26 || bytes.substr(0, 8) != sig || bytes.substr(12, 4) != "IHDR") return -1;
  return static_cast<unsigned char>(bytes[25]);
}

inline int checked_length(std::string_view bytes, const std::string& name, const char* who) {
  if (bytes.empty()) ::protoseg::detail::fail<io_error>(who, ": '", name, "' is empty (0 bytes), not an image");
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    ::protoseg::detail::fail<io_error>(who, ": '", name, "' is ", bytes.size(),
                                       " bytes, more than stb_image can decode (2 GiB)");
  return static_cast<int>(bytes.size());
}

}  // namespace data_detail

/// Reads a whole file into memory. Throws `io_error` naming the file when it
/// does not exist, is a directory, cannot be opened or cannot be read.
inline std::string read_file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    ::protoseg::detail::fail<io_error>("cannot read '", path.string(), "': the file does not exist");
  if (std::filesystem::is_directory(status))
    ::protoseg::detail::fail<io_error>("cannot read '", path.string(), "': is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) ::protoseg::detail::fail<io_error>("cannot read '", path.string(), "': cannot be opened (no permission?)");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) ::protoseg::detail::fail<io_error>("cannot read '", path.string(), "': a read error occurred");
  return bytes;
}

/// Decodes an encoded image held in memory to uint8 RGB, shape (H, W, 3):
/// grey and palette images are expanded to RGB, an alpha channel is dropped,
/// 16-bit samples are reduced to 8 bits. `name` names the source in error
/// messages. Throws `io_error` for empty, corrupt or unsupported data.
inline tensor<std::uint8_t> decode_image(std::string_view bytes, const std::string& name = "<memory>") {
  const int len = data_detail::checked_length(bytes, name, "read_image");
  int w = 0, h = 0, channels = 0;
  std::unique_ptr<stbi_uc, data_detail::stbi_deleter> pixels(stbi_load_from_memory(
      reinterpret_cast<const stbi_uc*>(bytes.data()), len, &w, &h, &channels, 3));
  if (!pixels)
    ::protoseg::detail::fail<io_error>("read_image: cannot decode '", name, "': ", data_detail::stbi_reason(),
                                       " (corrupt or truncated file, or not a format stb_image reads)");
  return tensor<std::uint8_t>::from_data(pixels.get(), {std::int64_t{h}, std::int64_t{w}, 3});
}

/// Decodes an encoded label map held in memory to uint8, shape (H, W). The
/// data must be single-channel: 8-bit grey (grey + alpha keeps the grey), or
/// 16-bit grey whose values are all <= 255. Colour and palette images are
/// refused with `io_error` (stb_image expands a palette to RGB, which loses
/// the indices); 16-bit values above 255 with `value_error`. `name` names the
/// source in error messages.
inline tensor<std::uint8_t> decode_label_image(std::string_view bytes, const std::string& name = "<memory>") {
  const int len = data_detail::checked_length(bytes, name, "read_label_image");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &channels))
    ::protoseg::detail::fail<io_error>("read_label_image: cannot decode '", name, "': ", data_detail::stbi_reason(),
                                       " (corrupt or truncated file, or not a format stb_image reads)");
  if (data_detail::png_color_type(bytes) == 3)
    ::protoseg::detail::fail<io_error>(
        "read_label_image: '", name, "' is a palette (indexed-colour) PNG; a single-channel label PNG is expected "
        "(8-bit greyscale holding one class id per pixel). stb_image expands palettes to RGB, which loses the "
        "indices: convert the file to greyscale indices first (e.g. PIL: Image.fromarray(np.array(img)).save(...))");
  if (channels > 2)
    ::protoseg::detail::fail<io_error>("read_label_image: '", name, "' has ", channels, " channels (",
                                       channels == 3 ? "RGB" : "RGBA",
                                       "); a single-channel label PNG is expected (8-bit greyscale holding one "
                                       "class id per pixel), not a colour-coded label image");
  const shape s{std::int64_t{h}, std::int64_t{w}};
  if (stbi_is_16_bit_from_memory(data, len)) {
    std::unique_ptr<stbi_us, data_detail::stbi_deleter> pixels(
        stbi_load_16_from_memory(data, len, &w, &h, &channels, 1));
    if (!pixels)
      ::protoseg::detail::fail<io_error>("read_label_image: cannot decode '", name, "': ", data_detail::stbi_reason(),
                                         " (corrupt or truncated file)");
    tensor<std::uint8_t> out = tensor<std::uint8_t>::empty(s);
    const std::int64_t n = s.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      const stbi_us v = pixels.get()[i];
      if (v > 255)
        ::protoseg::detail::fail<value_error>("read_label_image: '", name, "' is a 16-bit label image holding the "
                                              "value ", v, " at pixel (row ", i / w, ", column ", i % w,
                                              "); label values must be in 0..255");
      out.data()[i] = static_cast<std::uint8_t>(v);
    }
    return out;
  }
  std::unique_ptr<stbi_uc, data_detail::stbi_deleter> pixels(stbi_load_from_memory(data, len, &w, &h, &channels, 1));
  if (!pixels)
    ::protoseg::detail::fail<io_error>("read_label_image: cannot decode '", name, "': ", data_detail::stbi_reason(),
                                       " (corrupt or truncated file)");
  return tensor<std::uint8_t>::from_data(pixels.get(), s);
}

/// Reads an image file (PNG, JPEG, BMP, ...; see `decode_image`) as uint8 RGB
/// (H, W, 3). Throws `io_error` naming the file when it is missing, empty,
/// unreadable or corrupt.
inline tensor<std::uint8_t> read_image(const std::filesystem::path& path) {
  return decode_image(read_file_bytes(path), path.string());
}

/// Reads a single-channel label file (8- or 16-bit greyscale PNG; see
/// `decode_label_image`) as uint8 (H, W) of raw label values. Throws
/// `io_error` naming the file when it is missing, empty, unreadable, corrupt,
/// colour or palette; `value_error` for 16-bit values above 255.
inline tensor<std::uint8_t> read_label_image(const std::filesystem::path& path) {
  return decode_label_image(read_file_bytes(path), path.string());
}

}  // namespace protoseg::data
