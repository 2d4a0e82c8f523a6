#pragma once
/// \file module_list.hpp
/// `nn::module_list`: children named "0", "1", ... as torch.nn.ModuleList
/// and nn.Sequential name them, so that state keys such as `block1.0.attn.q`
/// or `proj_head.proj.1.0.weight` come out as in PyTorch. It only holds the
/// children; the owner calls them.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protoseg/nn/module.hpp"

namespace protoseg::nn {

template <class T, class P = cpu>
class module_list : public module<T, P> {
 public:
  std::string type_name() const override { return "ModuleList"; }
  /// Appends `child` under the next index and returns it.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> child) {
    auto c = this->register_module(std::to_string(size_), std::move(child));
    ++size_;
    return c;
  }
  std::int64_t size() const noexcept { return size_; }

 private:
  std::int64_t size_ = 0;
};

}  // namespace protoseg::nn
