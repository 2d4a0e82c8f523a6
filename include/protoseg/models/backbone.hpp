#pragma once
/// \file backbone.hpp
/// `backbone<T, P>`: what a segmentation model needs of an encoder, the four
/// stage feature maps (strides 4, 8, 16, 32, or capped by a dilated
/// ResNet's output stride) and their widths. MiT and ResNet implement it;
/// a new encoder implements it in its own file and adds one row to
/// `backbone_table` (models/model.hpp).

#include <array>
#include <cstdint>
#include <vector>

#include "protoseg/autograd/variable.hpp"
#include "protoseg/nn/module.hpp"

namespace protoseg::models {

template <class T, class P = cpu>
class backbone : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  /// image (B, in_channels, H, W) -> the four stage features (B, C_s, H_s, W_s).
  virtual std::vector<variable_type> features(const variable_type& image) = 0;
  /// C_s of the four stages.
  virtual std::array<std::int64_t, 4> stage_channels() const = 0;
};

}  // namespace protoseg::models
