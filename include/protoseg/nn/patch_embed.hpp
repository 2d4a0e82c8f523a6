#pragma once
/// \file patch_embed.hpp
/// `nn::overlap_patch_embed`: SegFormer's overlapping patch merging (NVlabs
/// mix_transformer.py `OverlapPatchEmbed`): a conv with kernel K, stride S,
/// padding K / 2 (7/4/3 for the first stage, 3/2/1 after), flattened to a
/// token sequence and layer-normalised. Parameters `proj.*` and `norm.*`.

#include <cstdint>
#include <memory>
#include <string>

#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/module.hpp"
#include "protoseg/nn/norm.hpp"

namespace protoseg::nn {

/// Options of `overlap_patch_embed`.
struct patch_embed_options {
  std::int64_t patch_size = 7;
  std::int64_t stride = 4;
  std::int64_t in_channels = 3;
  std::int64_t embed_dim = 768;
  double norm_eps = 1e-5;  ///< nn.LayerNorm(embed_dim) default
};

/// Tokens (B, H' * W', C) and the grid size (H', W') they come from.
template <class T, class P>
struct patch_tokens {
  variable<T, P> tokens;
  std::int64_t h = 0, w = 0;
};

template <class T, class P = cpu>
class overlap_patch_embed : public module<T, P> {
 public:
  using variable_type = variable<T, P>;
  overlap_patch_embed(const patch_embed_options& opt, generator& gen) : opt_(opt) {
    detail_init::require_positive(opt.patch_size, "overlap_patch_embed", "patch_size");
    detail_init::require_positive(opt.stride, "overlap_patch_embed", "stride");
    proj = this->register_module(
        "proj", std::make_shared<conv2d<T, P>>(conv2d_options{.in_channels = opt.in_channels,
                                                              .out_channels = opt.embed_dim,
                                                              .kernel_size = opt.patch_size,
                                                              .stride = opt.stride,
                                                              .padding = opt.patch_size / 2},
                                               gen));
    norm = this->register_module("norm",
                                 std::make_shared<layer_norm<T, P>>(layer_norm_options{opt.embed_dim, opt.norm_eps}));
  }
  std::string type_name() const override { return "OverlapPatchEmbed"; }
  const patch_embed_options& options() const noexcept { return opt_; }

  /// x (B, in_channels, H, W) -> tokens (B, H' * W', embed_dim) and (H', W').
  patch_tokens<T, P> forward(const variable_type& x) const {
    auto y = proj->forward(x);
    const std::int64_t b = y.shape()[0], c = y.shape()[1], h = y.shape()[2], w = y.shape()[3];
    return {norm->forward(transpose(reshape(y, {b, c, h * w}), 1, 2)), h, w};
  }
  patch_tokens<T, P> operator()(const variable_type& x) const { return forward(x); }

  std::shared_ptr<conv2d<T, P>> proj;
  std::shared_ptr<layer_norm<T, P>> norm;

 private:
  patch_embed_options opt_;
};

}  // namespace protoseg::nn
