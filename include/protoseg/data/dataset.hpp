#pragma once
/// \file dataset.hpp
/// The segmentation data-set interface every reader implements (ADE20K,
/// Cityscapes, COCO-Stuff, a folder of pairs, the built-in Fashion-MNIST
/// scenes): a random-access list of samples, each an RGB image and a label
/// map of the same size, with the class names.
///
/// Conventions (those of mmsegmentation): images are uint8 (H, W, 3) in RGB
/// order; labels are uint8 (H, W) holding train ids 0 .. C-1, and
/// `ignore_label` (255) for pixels that take no part in training or
/// evaluation. Readers convert their on-disk label encodings to this form and
/// refuse ids that are neither a class nor the ignore label, naming the file.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "protoseg/tensor/tensor.hpp"

namespace protoseg::data {

/// The label value of pixels that are ignored (mmsegmentation's 255).
inline constexpr std::uint8_t ignore_label = 255;

/// One image with its label map.
struct sample {
  tensor<std::uint8_t> image;  ///< (H, W, 3), RGB
  tensor<std::uint8_t> label;  ///< (H, W), train ids or `ignore_label`
  std::string name;            ///< where it came from (a file stem or "scene 17")
};

/// A random-access segmentation data set. `get` must be safe to call from
/// several threads at once (the batch loader's workers do).
/// An RGB colour.
using rgb_color = std::array<std::uint8_t, 3>;

class segmentation_dataset {
 public:
  virtual ~segmentation_dataset() = default;
  /// Number of samples.
  virtual std::int64_t size() const = 0;
  /// Sample `i` in [0, size()); throws `value_error` out of range, and
  /// `io_error` / `value_error` naming the file for unreadable or invalid data.
  virtual sample get(std::int64_t i) const = 0;
  /// Class names, by train id; their count is the number of classes C.
  virtual const std::vector<std::string>& class_names() const = 0;
  /// A short description ("ADE20K training, 20210 images at /data/ade").
  virtual std::string description() const = 0;
  /// The colours of the classes by train id, as the data set's own tools
  /// draw them; empty when the data set has none (pictures then use a
  /// generated palette).
  virtual std::vector<rgb_color> palette() const { return {}; }

  std::int64_t num_classes() const { return static_cast<std::int64_t>(class_names().size()); }
};

}  // namespace protoseg::data
