#pragma once
/// \file shape.hpp
/// `shape`: the dimensions of a tensor (rank 0 to 5), axis normalisation and
/// broadcasting rules.

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "protoseg/config.hpp"
#include "protoseg/error.hpp"

namespace protoseg {

/// Dimensions of a dense row-major tensor, at most `max_rank` of them.
class shape {
 public:
  shape() = default;
  shape(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit shape(std::span<const std::int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit shape(const std::vector<std::int64_t>& dims) { assign(dims.begin(), dims.end()); }

  int rank() const noexcept { return rank_; }
  std::int64_t operator[](int d) const noexcept { return dims_[static_cast<std::size_t>(d)]; }
  std::int64_t& operator[](int d) noexcept { return dims_[static_cast<std::size_t>(d)]; }
  const std::int64_t* data() const noexcept { return dims_.data(); }
  const std::int64_t* begin() const noexcept { return dims_.data(); }
  const std::int64_t* end() const noexcept { return dims_.data() + rank_; }

  /// Number of elements (1 for rank 0).
  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (int d = 0; d < rank_; ++d) n *= dims_[static_cast<std::size_t>(d)];
    return n;
  }
  /// Product of the dimensions in [from, to).
  std::int64_t product(int from, int to) const noexcept {
    std::int64_t n = 1;
    for (int d = from; d < to; ++d) n *= dims_[static_cast<std::size_t>(d)];
    return n;
  }
  std::vector<std::int64_t> to_vector() const { return {begin(), end()}; }

  /// A copy with one more dimension at position `d`.
  shape inserted(int d, std::int64_t n) const {
    std::vector<std::int64_t> v = to_vector();
    v.insert(v.begin() + d, n);
    return shape(v);
  }
  /// A copy without dimension `d`.
  shape removed(int d) const {
    std::vector<std::int64_t> v = to_vector();
    v.erase(v.begin() + d);
    return shape(v);
  }
  /// A copy with dimension `d` set to n.
  shape with(int d, std::int64_t n) const {
    shape s = *this;
    s[d] = n;
    return s;
  }

  friend bool operator==(const shape& a, const shape& b) noexcept {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend std::ostream& operator<<(std::ostream& os, const shape& s) {
    os << '(';
    for (int d = 0; d < s.rank_; ++d) os << (d ? ", " : "") << s[d];
    if (s.rank_ == 1) os << ',';
    return os << ')';
  }
  std::string str() const {
    std::ostringstream os;
    os << *this;
    return os.str();
  }

 private:
  template <class It>
  void assign(It first, It last) {
    const auto n = std::distance(first, last);
    if (n > max_rank)
      detail::fail<shape_error>("shape: rank ", n, " exceeds the maximum rank ", max_rank);
    rank_ = static_cast<int>(n);
    int d = 0;
    for (; first != last; ++first, ++d) {
      if (*first < 0)
        detail::fail<shape_error>("shape: dimension ", d, " is ", *first, ", expected >= 0");
      dims_[static_cast<std::size_t>(d)] = *first;
    }
  }

  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

namespace detail {

/// Maps a possibly negative axis into [0, rank) or throws naming `what`.
inline int normalize_axis(int axis, int rank, const char* what) {
  if (axis < -rank || axis >= rank)
    fail<value_error>(what, ": axis ", axis, " is out of range for a tensor of rank ", rank,
                      " (expected in [", -rank, ", ", rank - 1, "])");
  return axis < 0 ? axis + rank : axis;
}

/// The numpy broadcast of two shapes, or a shape_error naming both.
inline shape broadcast_shapes(const shape& a, const shape& b, const char* what) {
  const int r = std::max(a.rank(), b.rank());
  std::vector<std::int64_t> out(static_cast<std::size_t>(r));
  for (int i = 0; i < r; ++i) {
    const int da = a.rank() - r + i, db = b.rank() - r + i;
    const std::int64_t x = da >= 0 ? a[da] : 1, y = db >= 0 ? b[db] : 1;
    if (x != y && x != 1 && y != 1)
      fail<shape_error>(what, ": shapes ", a, " and ", b, " cannot be broadcast (dimension ", i,
                        " is ", x, " vs ", y, ")");
    out[static_cast<std::size_t>(i)] = (x == 1) ? y : x;
  }
  return shape(out);
}

}  // namespace detail
}  // namespace protoseg
