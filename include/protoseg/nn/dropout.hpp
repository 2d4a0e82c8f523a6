#pragma once
/// \file dropout.hpp
/// `nn::dropout`, `nn::dropout2d` and `nn::drop_path` (stochastic depth, as
/// timm's DropPath): active in training, identity in eval. Each owns a
/// `generator` seeded from its options; `forward(x, gen)` draws from a
/// generator the caller passes instead.

#include <cstdint>
#include <string>

#include "protoseg/nn/functional.hpp"
#include "protoseg/nn/module.hpp"

namespace protoseg::nn {

/// Options of the dropout family: drop probability and the seed of the
/// module's own generator.
struct dropout_options {
  double p = 0.5;
  std::uint64_t seed = 0;
};

namespace detail_dropout {
enum class kind { element, channel, sample };

template <class T, class P, kind K>
class dropout_base : public module<T, P> {
 public:
  using variable_type = variable<T, P>;
  explicit dropout_base(const dropout_options& opt) : opt_(opt), gen_(opt.seed) {
    functional::detail_fn::check_probability(opt.p, K == kind::element ? "dropout"
                                                     : K == kind::channel ? "dropout2d"
                                                                          : "drop_path");
  }
  std::string type_name() const override {
    return K == kind::element ? "Dropout" : K == kind::channel ? "Dropout2d" : "DropPath";
  }
  const dropout_options& options() const noexcept { return opt_; }

  /// Draws the mask from the module's own generator.
  variable_type forward(const variable_type& x) { return forward(x, gen_); }
  /// Draws the mask from `gen`.
  variable_type forward(const variable_type& x, generator& gen) const {
    const bool t = this->is_training();
    if constexpr (K == kind::element) return functional::dropout(x, opt_.p, gen, t);
    else if constexpr (K == kind::channel) return functional::dropout2d(x, opt_.p, gen, t);
    else return functional::drop_path(x, opt_.p, gen, t);
  }
  variable_type operator()(const variable_type& x) { return forward(x); }
  /// The module's generator (to reseed it).
  generator& gen() noexcept { return gen_; }

 protected:
  void reseed_own(std::uint64_t seed) override { gen_.seed(seed); }

 private:
  dropout_options opt_;
  generator gen_;
};
}  // namespace detail_dropout

/// Element dropout (torch.nn.Dropout).
template <class T, class P = cpu>
class dropout : public detail_dropout::dropout_base<T, P, detail_dropout::kind::element> {
 public:
  using detail_dropout::dropout_base<T, P, detail_dropout::kind::element>::dropout_base;
};
/// Channel dropout (torch.nn.Dropout2d) of (N, C, ...) inputs.
template <class T, class P = cpu>
class dropout2d : public detail_dropout::dropout_base<T, P, detail_dropout::kind::channel> {
 public:
  using detail_dropout::dropout_base<T, P, detail_dropout::kind::channel>::dropout_base;
};
/// Per-sample drop-path / stochastic depth (timm DropPath, scale_by_keep).
template <class T, class P = cpu>
class drop_path : public detail_dropout::dropout_base<T, P, detail_dropout::kind::sample> {
 public:
  using detail_dropout::dropout_base<T, P, detail_dropout::kind::sample>::dropout_base;
};

}  // namespace protoseg::nn
