#pragma once
/// \file attention.hpp
/// `nn::efficient_self_attention`: SegFormer's multi-head self-attention with
/// a spatial-reduction ratio R (Xie et al. 2021, Eq. 2; NVlabs
/// mix_transformer.py `Attention`). Keys and values come from the sequence
/// reduced by a conv with kernel = stride = R and a LayerNorm, so the cost is
/// N^2 / R^2. Parameter names: q, kv, sr, norm, proj (attn_drop, proj_drop
/// have none).

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "protoseg/nn/conv.hpp"
#include "protoseg/nn/dropout.hpp"
#include "protoseg/nn/linear.hpp"
#include "protoseg/nn/module.hpp"
#include "protoseg/nn/norm.hpp"
#include "protoseg/ops/softmax.hpp"

namespace protoseg::nn {

/// Options of `efficient_self_attention` (the `Attention` arguments).
struct attention_options {
  std::int64_t dim = 0;
  std::int64_t num_heads = 8;
  bool qkv_bias = false;
  double qk_scale = 0;  ///< 0: head_dim^-0.5
  double attn_drop = 0;
  double proj_drop = 0;
  std::int64_t sr_ratio = 1;
  double norm_eps = 1e-5;  ///< eps of the reduction LayerNorm (nn.LayerNorm default)
  std::uint64_t seed = 0;  ///< seed of the dropout generators
};

template <class T, class P = cpu>
class efficient_self_attention : public module<T, P> {
 public:
  using variable_type = variable<T, P>;

  efficient_self_attention(const attention_options& opt, generator& gen) : opt_(opt) {
    detail_init::require_positive(opt.dim, "efficient_self_attention", "dim");
    detail_init::require_positive(opt.num_heads, "efficient_self_attention", "num_heads");
    detail_init::require_positive(opt.sr_ratio, "efficient_self_attention", "sr_ratio");
    if (opt.dim % opt.num_heads != 0)
      ::protoseg::detail::fail<value_error>("efficient_self_attention: dim ", opt.dim,
                                            " must be divisible by num_heads ", opt.num_heads);
    head_dim_ = opt.dim / opt.num_heads;
    scale_ = opt.qk_scale > 0 ? opt.qk_scale : 1.0 / std::sqrt(static_cast<double>(head_dim_));
    q = this->register_module(
        "q", std::make_shared<linear<T, P>>(linear_options{opt.dim, opt.dim, opt.qkv_bias}, gen));
    kv = this->register_module(
        "kv", std::make_shared<linear<T, P>>(linear_options{opt.dim, 2 * opt.dim, opt.qkv_bias}, gen));
    attn_drop = this->register_module("attn_drop", std::make_shared<dropout<T, P>>(dropout_options{opt.attn_drop, opt.seed}));
    proj = this->register_module("proj", std::make_shared<linear<T, P>>(linear_options{opt.dim, opt.dim, true}, gen));
    proj_drop =
        this->register_module("proj_drop", std::make_shared<dropout<T, P>>(dropout_options{opt.proj_drop, opt.seed + 1}));
    if (opt.sr_ratio > 1) {
      sr = this->register_module(
          "sr", std::make_shared<conv2d<T, P>>(
                    conv2d_options{.in_channels = opt.dim, .out_channels = opt.dim, .kernel_size = opt.sr_ratio,
                                   .stride = opt.sr_ratio},
                    gen));
      norm = this->register_module("norm", std::make_shared<layer_norm<T, P>>(layer_norm_options{opt.dim, opt.norm_eps}));
    }
  }
  std::string type_name() const override { return "Attention"; }
  const attention_options& options() const noexcept { return opt_; }

  /// x (B, N = H * W, C) -> (B, N, C).
  variable_type forward(const variable_type& x, std::int64_t h, std::int64_t w) {
    if (!x.defined() || x.rank() != 3 || x.shape()[2] != opt_.dim)
      ::protoseg::detail::fail<shape_error>("efficient_self_attention: x must be (B, N, ", opt_.dim, "), got ",
                                            x.defined() ? x.shape().str() : std::string("undefined"));
    const std::int64_t b = x.shape()[0], n = x.shape()[1], c = opt_.dim, heads = opt_.num_heads;
    if (h * w != n)
      ::protoseg::detail::fail<shape_error>("efficient_self_attention: H * W = ", h, " * ", w, " = ", h * w,
                                            ", expected the sequence length ", n);
    auto qh = permute(reshape(q->forward(x), {b, n, heads, head_dim_}), {0, 2, 1, 3});  // (B, h, N, d)
    variable_type src = x;
    if (sr) {
      auto img = reshape(transpose(x, 1, 2), {b, c, h, w});
      auto red = sr->forward(img);  // (B, C, h', w')
      const std::int64_t m = red.shape()[2] * red.shape()[3];
      src = norm->forward(transpose(reshape(red, {b, c, m}), 1, 2));
    }
    const std::int64_t m = src.shape()[1];
    auto kvh = permute(reshape(kv->forward(src), {b, m, 2, heads, head_dim_}), {2, 0, 3, 1, 4});  // (2, B, h, M, d)
    auto k = index(kvh, 0, 0), v = index(kvh, 0, 1);
    auto attn = softmax(matmul(qh, k, false, true) * static_cast<T>(scale_), -1);
    attn = attn_drop->forward(attn);
    auto out = reshape(permute(matmul(attn, v), {0, 2, 1, 3}), {b, n, c});
    return proj_drop->forward(proj->forward(out));
  }
  variable_type operator()(const variable_type& x, std::int64_t h, std::int64_t w) { return forward(x, h, w); }

  std::shared_ptr<linear<T, P>> q, kv, proj;
  std::shared_ptr<dropout<T, P>> attn_drop, proj_drop;
  std::shared_ptr<conv2d<T, P>> sr;         ///< null when sr_ratio == 1
  std::shared_ptr<layer_norm<T, P>> norm;  ///< null when sr_ratio == 1

 private:
  attention_options opt_;
  std::int64_t head_dim_ = 0;
  double scale_ = 1;
};

}  // namespace protoseg::nn
