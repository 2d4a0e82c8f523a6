#pragma once
/// \file fashion_mnist.hpp
/// Fashion-MNIST (Xiao et al. 2017) from the four gzip IDX files that Debian's
/// `dataset-fashion-mnist` package installs: images as uint8 (N, 28, 28),
/// labels as int64 (N) in [0, 10).

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "protoseg/data/idx.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/math.hpp"
#include "protoseg/tensor/tensor.hpp"

namespace protoseg::data {

/// The ten Fashion-MNIST class names, by label.
inline constexpr std::array<std::string_view, 10> fashion_mnist_classes = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
inline constexpr std::string_view fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

/// Environment variable that overrides the default directory.
inline constexpr std::string_view fashion_mnist_env = "PROTOSEG_FASHION_MNIST_DIR";

/// Which half of the data set.
enum class fashion_mnist_split { train, test };

/// One split of Fashion-MNIST.
struct fashion_mnist_data {
  tensor<std::uint8_t> images;  ///< (N, 28, 28), 0 = background, 255 = ink
  tensor<std::int64_t> labels;  ///< (N), class ids in [0, 10)
  std::int64_t size() const { return labels.numel(); }
};

/// The directory to read from: `override_dir` when not empty, else the
/// environment variable PROTOSEG_FASHION_MNIST_DIR when set and not empty,
/// else the Debian default.
inline std::filesystem::path fashion_mnist_dir(const std::filesystem::path& override_dir = {}) {
  if (!override_dir.empty()) return override_dir;
  if (const char* env = std::getenv(std::string(fashion_mnist_env).c_str()); env && *env)
    return std::filesystem::path(env);
  return std::filesystem::path(std::string(fashion_mnist_default_dir));
}

/// Loads one split from `dir` (files `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`).
/// A missing directory, missing files, inconsistent counts or labels out of
/// range throw `io_error`.
inline fashion_mnist_data load_fashion_mnist(fashion_mnist_split split,
                                             const std::filesystem::path& dir = fashion_mnist_dir()) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    detail::fail<io_error>("Fashion-MNIST: directory '", dir.string(), "' does not exist. On Debian, install it with "
                           "`apt-get install dataset-fashion-mnist` (it provides ", fashion_mnist_default_dir,
                           "), or point ", fashion_mnist_env, " (or --data-dir) at a directory holding "
                           "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                           "t10k-labels-idx1-ubyte.gz");
  const std::string prefix = split == fashion_mnist_split::train ? "train" : "t10k";
  const auto image_file = dir / (prefix + "-images-idx3-ubyte.gz");
  const auto label_file = dir / (prefix + "-labels-idx1-ubyte.gz");
  fashion_mnist_data out;
  out.images = read_idx_u8(image_file, 3);
  if (out.images.size(1) != 28 || out.images.size(2) != 28)
    detail::fail<io_error>("Fashion-MNIST: '", image_file.string(), "' holds images of ", out.images.size(1), "x",
                           out.images.size(2), " pixels, expected 28x28");
  const auto raw_labels = read_idx_u8(label_file, 1);
  if (raw_labels.numel() != out.images.size(0))
    detail::fail<io_error>("Fashion-MNIST: '", label_file.string(), "' has ", raw_labels.numel(), " labels but '",
                           image_file.string(), "' has ", out.images.size(0), " images");
  const std::uint8_t* l = raw_labels.data();
  for (std::int64_t i = 0; i < raw_labels.numel(); ++i)
    if (l[i] >= fashion_mnist_classes.size())
      detail::fail<io_error>("Fashion-MNIST: '", label_file.string(), "': label ", int(l[i]), " at index ", i,
                             " is out of range, expected 0 to 9");
  out.labels = cast<std::int64_t>(raw_labels);
  return out;
}

}  // namespace protoseg::data
