#pragma once
/// \file mit.hpp
/// Mix Transformer encoders MiT-B0..B5 (Xie et al., SegFormer, NeurIPS 2021,
/// Sec. 3.1 and Table 6; NVlabs mix_transformer.py): four stages of
/// overlapping patch embedding, transformer blocks (efficient self-attention
/// with reduction ratios 8/4/2/1 and Mix-FFN), and a LayerNorm, giving
/// features at strides 4, 8, 16, 32. Parameter names are NVlabs' /
/// mmsegmentation 0.x's (`patch_embed1.proj.weight`, `block1.0.attn.q.weight`,
/// `block1.0.mlp.dwconv.dwconv.weight`, `norm1.weight`), without the
/// ImageNet classification head.

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protoseg/tensor/creation.hpp"
#include "protoseg/models/backbone.hpp"
#include "protoseg/nn/module_list.hpp"
#include "protoseg/nn/attention.hpp"
#include "protoseg/nn/dropout.hpp"
#include "protoseg/nn/mix_ffn.hpp"
#include "protoseg/nn/norm.hpp"
#include "protoseg/nn/patch_embed.hpp"

namespace protoseg::models {

/// Configuration of a Mix Transformer (NVlabs `MixVisionTransformer`
/// arguments). The defaults are MiT-B0's.
struct mit_options {
  std::array<std::int64_t, 4> embed_dims{32, 64, 160, 256};
  std::array<std::int64_t, 4> num_heads{1, 2, 5, 8};
  std::array<std::int64_t, 4> depths{2, 2, 2, 2};
  std::array<std::int64_t, 4> sr_ratios{8, 4, 2, 1};
  std::int64_t in_channels = 3;
  /// Hidden width of Mix-FFN = mlp_ratio * dim (4 in every published MiT).
  std::int64_t mlp_ratio = 4;
  bool qkv_bias = true;
  /// Dropout after attention projections and in Mix-FFN (0 published).
  double drop_rate = 0.0;
  double attn_drop_rate = 0.0;
  /// Stochastic depth: block i of n gets drop_path_rate * i / (n - 1)
  /// (torch.linspace(0, rate, n), SegFormer's 0.1).
  double drop_path_rate = 0.1;
  /// eps of the block and stage LayerNorms (partial(nn.LayerNorm, eps=1e-6));
  /// the patch-embedding and reduction norms keep nn.LayerNorm's 1e-5.
  double norm_eps = 1e-6;
  /// Seed of the initialisation and of the dropout / drop-path generators.
  std::uint64_t seed = 0;
  /// Re-initialise as NVlabs `_init_weights`; false keeps the layers'
  /// PyTorch defaults (cheaper when pretrained weights are loaded next).
  bool init_weights = true;
};

/// The published configuration of "mit_b0" ... "mit_b5" (value_error for
/// another name).
inline mit_options mit_config(std::string_view name) {
  mit_options o;
  if (name == "mit_b0") return o;
  o.embed_dims = {64, 128, 320, 512};
  if (name == "mit_b1") o.depths = {2, 2, 2, 2};
  else if (name == "mit_b2") o.depths = {3, 4, 6, 3};
  else if (name == "mit_b3") o.depths = {3, 4, 18, 3};
  else if (name == "mit_b4") o.depths = {3, 8, 27, 3};
  else if (name == "mit_b5") o.depths = {3, 6, 40, 3};
  else
    ::protoseg::detail::fail<value_error>("mit_config: name is '", name,
                                          "', expected one of mit_b0, mit_b1, mit_b2, mit_b3, mit_b4, mit_b5");
  return o;
}

/// One transformer block (NVlabs `Block`): x + DropPath(Attn(LN(x))), then
/// x + DropPath(MixFFN(LN(x))). Children norm1, attn, drop_path, norm2, mlp.
template <class T, class P = cpu>
class mit_block : public nn::module<T, P> {
 public:
  using variable_type = variable<T, P>;
  mit_block(std::int64_t dim, std::int64_t heads, std::int64_t sr, const mit_options& o, double drop_path_p,
            std::uint64_t seed, generator& gen) {
    norm1 = this->register_module("norm1", std::make_shared<nn::layer_norm<T, P>>(nn::layer_norm_options{dim, o.norm_eps}));
    attn = this->register_module(
        "attn", std::make_shared<nn::efficient_self_attention<T, P>>(
                    nn::attention_options{.dim = dim, .num_heads = heads, .qkv_bias = o.qkv_bias, .attn_drop = o.attn_drop_rate,
                                          .proj_drop = o.drop_rate, .sr_ratio = sr, .seed = seed},
                    gen));
    drop_path = this->register_module("drop_path",
                                      std::make_shared<nn::drop_path<T, P>>(nn::dropout_options{drop_path_p, seed + 2}));
    norm2 = this->register_module("norm2", std::make_shared<nn::layer_norm<T, P>>(nn::layer_norm_options{dim, o.norm_eps}));
    mlp = this->register_module(
        "mlp", std::make_shared<nn::mix_ffn<T, P>>(
                   nn::mix_ffn_options{.in_features = dim, .hidden_features = dim * o.mlp_ratio, .drop = o.drop_rate,
                                       .seed = seed + 3},
                   gen));
  }
  std::string type_name() const override { return "Block"; }
  /// x (B, H * W, dim) -> (B, H * W, dim).
  variable_type forward(const variable_type& x, std::int64_t h, std::int64_t w) {
    auto y = x + drop_path->forward(attn->forward(norm1->forward(x), h, w));
    return y + drop_path->forward(mlp->forward(norm2->forward(y), h, w));
  }

  std::shared_ptr<nn::layer_norm<T, P>> norm1, norm2;
  std::shared_ptr<nn::efficient_self_attention<T, P>> attn;
  std::shared_ptr<nn::drop_path<T, P>> drop_path;
  std::shared_ptr<nn::mix_ffn<T, P>> mlp;
};

/// The Mix Transformer encoder. Children patch_embed1..4, block1..4 (lists
/// of mit_block), norm1..4.
template <class T, class P = cpu>
class mix_transformer : public backbone<T, P> {
 public:
  using variable_type = variable<T, P>;

  /// Builds the encoder and initialises it as NVlabs `_init_weights`:
  /// Linear weights timm trunc_normal_(std=0.02) (cut at +-2 in absolute
  /// units, which in effect never cuts), biases 0;
  /// LayerNorm 1 / 0; Conv2d weights N(0, sqrt(2 / fan_out)), biases 0.
  explicit mix_transformer(const mit_options& o = {}) : opt_(o) {
    const char* who = "mix_transformer";
    nn::detail_init::require_positive(o.in_channels, who, "in_channels");
    nn::detail_init::require_positive(o.mlp_ratio, who, "mlp_ratio");
    for (int s = 0; s < 4; ++s) {
      nn::detail_init::require_positive(o.embed_dims[s], who, "embed_dims");
      nn::detail_init::require_positive(o.depths[s], who, "depths");
      nn::detail_init::require_positive(o.num_heads[s], who, "num_heads");
      nn::detail_init::require_positive(o.sr_ratios[s], who, "sr_ratios");
    }
    if (!(o.drop_path_rate >= 0 && o.drop_path_rate < 1))
      ::protoseg::detail::fail<value_error>(who, ": drop_path_rate is ", o.drop_path_rate, ", expected in [0, 1)");
    generator gen(o.seed);
    const std::int64_t total = o.depths[0] + o.depths[1] + o.depths[2] + o.depths[3];
    std::int64_t cur = 0;
    std::int64_t cin = o.in_channels;
    for (int s = 0; s < 4; ++s) {
      const std::string id = std::to_string(s + 1);
      const std::int64_t d = o.embed_dims[s];
      patch_embed[s] = this->register_module(
          "patch_embed" + id, std::make_shared<nn::overlap_patch_embed<T, P>>(
                                  nn::patch_embed_options{.patch_size = s == 0 ? 7 : 3, .stride = s == 0 ? 4 : 2,
                                                          .in_channels = cin, .embed_dim = d},
                                  gen));
      blocks[s] = this->register_module("block" + id, std::make_shared<nn::module_list<T, P>>());
      for (std::int64_t j = 0; j < o.depths[s]; ++j, ++cur) {
        const double p = total > 1 ? o.drop_path_rate * static_cast<double>(cur) / static_cast<double>(total - 1) : 0.0;
        block_ptrs[s].push_back(blocks[s]->push_back(std::make_shared<mit_block<T, P>>(
            d, o.num_heads[s], o.sr_ratios[s], o, p, o.seed + 16 * static_cast<std::uint64_t>(cur) + 1, gen)));
      }
      norm[s] = this->register_module("norm" + id,
                                      std::make_shared<nn::layer_norm<T, P>>(nn::layer_norm_options{d, o.norm_eps}));
      cin = d;
    }
    if (o.init_weights) init_weights(gen);
  }
  std::string type_name() const override { return "MixVisionTransformer"; }
  const mit_options& options() const noexcept { return opt_; }
  /// Channels of the four outputs.
  const std::array<std::int64_t, 4>& out_channels() const noexcept { return opt_.embed_dims; }

  /// x (B, in_channels, H, W) -> four features (B, embed_dims[s], H / 2^(s+2), W / 2^(s+2)).
  std::vector<variable_type> forward(const variable_type& x) {
    if (!x.defined() || x.rank() != 4 || x.shape()[1] != opt_.in_channels)
      ::protoseg::detail::fail<shape_error>("mix_transformer: x must be (B, ", opt_.in_channels, ", H, W), got ",
                                            x.defined() ? x.shape().str() : std::string("undefined"));
    std::vector<variable_type> outs;
    variable_type cur = x;
    for (int s = 0; s < 4; ++s) {
      auto tk = patch_embed[s]->forward(cur);
      auto t = tk.tokens;
      for (auto& b : block_ptrs[s]) t = b->forward(t, tk.h, tk.w);
      t = norm[s]->forward(t);
      const std::int64_t b = t.shape()[0];
      cur = permute(reshape(t, {b, tk.h, tk.w, opt_.embed_dims[s]}), {0, 3, 1, 2});
      outs.push_back(cur);
    }
    return outs;
  }
  std::vector<variable_type> operator()(const variable_type& x) { return forward(x); }
  std::vector<variable_type> features(const variable_type& x) override { return forward(x); }
  std::array<std::int64_t, 4> stage_channels() const override { return opt_.embed_dims; }

  std::array<std::shared_ptr<nn::overlap_patch_embed<T, P>>, 4> patch_embed;
  std::array<std::shared_ptr<nn::module_list<T, P>>, 4> blocks;
  std::array<std::vector<std::shared_ptr<mit_block<T, P>>>, 4> block_ptrs;
  std::array<std::shared_ptr<nn::layer_norm<T, P>>, 4> norm;

 private:
  void init_weights(generator& gen) {
    for (auto& [name, v] : this->named_parameters()) {
      auto& val = v.mutable_value();
      const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
      if (val.rank() == 2) {  // Linear weight
        // timm trunc_normal_(std=.02): the bounds a=-2, b=2 are absolute
        // values (100 std), not multiples of std.
        val.copy_(trunc_normal<T, P>(val.shape(), gen, T(0.02), T(-2), T(2)));
      } else if (val.rank() == 4) {  // Conv2d weight: fan_out = k_h k_w out / groups
        const std::int64_t out = val.shape()[0], kk = val.shape()[2] * val.shape()[3];
        const std::int64_t groups = val.shape()[1] == 1 && out > 1 && name.find("dwconv") != std::string::npos ? out : 1;
        const double sd = std::sqrt(2.0 / static_cast<double>(kk * out / groups));
        std::vector<T> w(static_cast<std::size_t>(val.numel()));
        for (auto& e : w) e = static_cast<T>(sd * gen.normal());
        val.copy_(tensor<T, P>::from_vector(w, val.shape()));
      } else if (is_bias) {
        val.copy_(zeros<T, P>(val.shape()));
      }
    }
  }

  mit_options opt_;
};

}  // namespace protoseg::models
