#pragma once
/// \file print.hpp
/// `operator<<` for tensors: shape, policy and values (long dimensions are
/// shortened with "...").

#include <cstdint>
#include <iomanip>
#include <ostream>
#include <vector>

#include "protoseg/tensor/tensor.hpp"

namespace protoseg {

namespace detail {
template <class T>
void print_block(std::ostream& os, const std::vector<T>& v, const shape& s, int d, std::int64_t off, int indent) {
  const std::int64_t n = s[d];
  const std::int64_t edge = 3;
  const std::int64_t inner = s.product(d + 1, s.rank());
  os << '[';
  for (std::int64_t i = 0; i < n; ++i) {
    if (n > 2 * edge && i == edge) {
      os << (d + 1 == s.rank() ? "..., " : "...,\n" + std::string(static_cast<std::size_t>(indent + 1), ' '));
      i = n - edge - 1;
      continue;
    }
    if (d + 1 == s.rank()) {
      if constexpr (sizeof(T) == 1) os << int(v[static_cast<std::size_t>(off + i)]);
      else os << v[static_cast<std::size_t>(off + i)];
    } else {
      print_block(os, v, s, d + 1, off + i * inner, indent + 1);
    }
    if (i + 1 < n) os << (d + 1 == s.rank() ? ", " : ",\n" + std::string(static_cast<std::size_t>(indent + 1), ' '));
  }
  os << ']';
}
}  // namespace detail

template <class T, class P>
std::ostream& operator<<(std::ostream& os, const tensor<T, P>& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  const std::vector<T> v = t.to_vector();
  os << "tensor(";
  if (t.rank() == 0) {
    if constexpr (sizeof(T) == 1) os << int(v[0]);
    else os << v[0];
  } else if (t.numel() == 0) {
    os << "[]";
  } else {
    detail::print_block(os, v, t.shape(), 0, 0, 7);
  }
  return os << ", shape=" << t.shape() << ", policy=" << P::name << ')';
}

}  // namespace protoseg
