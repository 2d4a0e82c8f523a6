#pragma once
/// \file functional.hpp
/// Differentiable layer functions (`protoseg::nn::functional`), the
/// counterparts of torch.nn.functional: linear, conv2d (im2col + GEMM, and a
/// direct depthwise path), layer_norm, batch_norm, dropout, dropout2d,
/// drop_path, interpolate (bilinear / nearest), max_pool2d and
/// upsampled_cross_entropy. Modules in `nn/` hold the parameters and call
/// these. Each op lives, forward beside backward, in `ops/` (the one home of
/// differentiable operations) and the loss in `loss/`; this header gathers
/// them under the torch.nn.functional names.

#include "protoseg/loss/cross_entropy.hpp"
#include "protoseg/ops/conv.hpp"
#include "protoseg/ops/dropout.hpp"
#include "protoseg/ops/norm.hpp"
#include "protoseg/ops/pool.hpp"
#include "protoseg/ops/resize.hpp"

namespace protoseg::nn::functional {

/// cross_entropy(interpolate(logits, ...), labels) without the upsampled
/// logits; defined in loss/cross_entropy.hpp.
using ::protoseg::upsampled_cross_entropy;

}  // namespace protoseg::nn::functional
