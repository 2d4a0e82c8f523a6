#pragma once
/// \file tensor.hpp
/// `tensor<T, Policy>`: a dense, contiguous, row-major array of up to five
/// dimensions with shared storage. A reshape or a `select` along the first
/// dimension is a view of the same storage; `clone()` copies.

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "protoseg/backend/default.hpp"
#include "protoseg/error.hpp"
#include "protoseg/tensor/shape.hpp"

namespace protoseg {

/// Element types a tensor may hold.
template <class T>
concept tensor_element = std::is_same_v<T, float> || std::is_same_v<T, double> ||
                         std::is_same_v<T, std::int64_t> || std::is_same_v<T, std::int32_t> ||
                         std::is_same_v<T, std::uint8_t>;

template <class T, class Policy = cpu>
class tensor {
  static_assert(tensor_element<T>,
                "protoseg::tensor<T>: T must be float, double, int64_t, int32_t or uint8_t");
  static_assert(policy<Policy>, "protoseg::tensor<T, Policy>: Policy is not a protoseg policy type");

 public:
  using value_type = T;
  using policy_type = Policy;
  using traits = backend_traits<Policy>;

  /// An undefined tensor (no storage, rank 0, `defined()` is false).
  tensor() = default;

  /// A zero-filled tensor of the given shape.
  explicit tensor(const protoseg::shape& s) : tensor(empty(s)) { fill_zero(); }

  /// Uninitialised storage of the given shape (fill it before reading).
  static tensor empty(const protoseg::shape& s) {
    tensor t;
    t.shape_ = s;
    t.defined_ = true;
    auto [owner, ptr] = traits::template allocate<T>(static_cast<std::size_t>(s.numel()));
    t.owner_ = std::move(owner);
    t.data_ = ptr;
    return t;
  }

  /// Copies `values` (host memory, row-major) into a new tensor of shape s.
  static tensor from_vector(const std::vector<T>& values, const protoseg::shape& s) {
    if (static_cast<std::int64_t>(values.size()) != s.numel())
      detail::fail<shape_error>("tensor::from_vector: ", values.size(), " values given for shape ", s,
                                " which needs ", s.numel());
    return from_data(values.data(), s);
  }

  /// Copies s.numel() elements from host memory at p.
  static tensor from_data(const T* p, const protoseg::shape& s) {
    tensor t = empty(s);
    traits::copy_from_host(t.data_, p, static_cast<std::size_t>(s.numel()));
    return t;
  }

  /// Wraps memory the caller owns (device memory for a device policy)
  /// without copying. The memory must outlive every view of the result.
  static tensor wrap(T* p, const protoseg::shape& s) {
    tensor t;
    t.shape_ = s;
    t.defined_ = true;
    t.data_ = p;
    return t;
  }

  bool defined() const noexcept { return defined_; }
  const protoseg::shape& shape() const noexcept { return shape_; }
  int rank() const noexcept { return shape_.rank(); }
  /// Size of dimension d (negative d counts from the end).
  std::int64_t size(int d) const { return shape_[detail::normalize_axis(d, rank(), "tensor::size")]; }
  std::int64_t numel() const noexcept { return defined_ ? shape_.numel() : 0; }
  bool empty_tensor() const noexcept { return numel() == 0; }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  /// True when two tensors view the same memory.
  bool shares_storage_with(const tensor& o) const noexcept { return owner_ && owner_ == o.owner_; }
  /// True when this handle is the only one on its (owned) storage: no view,
  /// copy of the handle or other tensor can see a change made through it.
  bool sole_owner() const noexcept { return owner_ && owner_.use_count() == 1; }

  /// A view with another shape of the same number of elements; one
  /// dimension may be -1 and is then inferred.
  tensor reshape(std::vector<std::int64_t> dims) const {
    require_defined("reshape");
    std::int64_t known = 1;
    int infer = -1;
    for (std::size_t i = 0; i < dims.size(); ++i) {
      if (dims[i] == -1) {
        if (infer >= 0) detail::fail<shape_error>("reshape: more than one dimension is -1");
        infer = static_cast<int>(i);
      } else if (dims[i] < 0) {
        detail::fail<shape_error>("reshape: dimension ", i, " is ", dims[i], ", expected >= 0 or -1");
      } else {
        known *= dims[i];
      }
    }
    if (infer >= 0) {
      if (known == 0 || numel() % known != 0)
        detail::fail<shape_error>("reshape: cannot infer dimension ", infer, " of ", numel(),
                                  " elements from the others (product ", known, ")");
      dims[static_cast<std::size_t>(infer)] = numel() / known;
      known = numel();
    }
    if (known != numel())
      detail::fail<shape_error>("reshape: shape ", protoseg::shape(dims), " has ", known,
                                " elements, the tensor of shape ", shape_, " has ", numel());
    tensor t = *this;
    t.shape_ = protoseg::shape(dims);
    return t;
  }
  tensor reshape(std::initializer_list<std::int64_t> dims) const {
    return reshape(std::vector<std::int64_t>(dims));
  }
  tensor reshape(const protoseg::shape& s) const { return reshape(s.to_vector()); }
  /// The tensor as one dimension (a view).
  tensor flatten() const { return reshape({numel()}); }

  /// View of index i along dimension 0 (rank drops by one).
  tensor select(std::int64_t i) const {
    require_defined("select");
    if (rank() == 0) detail::fail<shape_error>("select: a rank-0 tensor has no dimension to index");
    if (i < 0) i += shape_[0];
    if (i < 0 || i >= shape_[0])
      detail::fail<value_error>("select: index ", i, " is out of range for dimension 0 of size ",
                                shape_[0]);
    tensor t = *this;
    t.shape_ = shape_.removed(0);
    t.data_ = data_ + i * t.shape_.numel();
    return t;
  }
  tensor operator[](std::int64_t i) const { return select(i); }

  /// View of rows [start, stop) along dimension 0.
  tensor narrow0(std::int64_t start, std::int64_t stop) const {
    require_defined("narrow0");
    if (rank() == 0 || start < 0 || stop < start || stop > shape_[0])
      detail::fail<value_error>("narrow0: range [", start, ", ", stop, ") is invalid for shape ", shape_);
    tensor t = *this;
    t.shape_[0] = stop - start;
    t.data_ = data_ + start * shape_.product(1, rank());
    return t;
  }

  /// A copy with its own storage.
  tensor clone() const {
    require_defined("clone");
    tensor t = empty(shape_);
    traits::copy_same(t.data_, data_, static_cast<std::size_t>(numel()));
    return t;
  }

  /// Copies the values of `src` (same shape) into this tensor's storage.
  void copy_(const tensor& src) {
    if (src.shape() != shape_)
      detail::fail<shape_error>("copy_: source shape ", src.shape(), " differs from ", shape_);
    traits::copy_same(data_, src.data_, static_cast<std::size_t>(numel()));
  }

  /// The values in row-major order, in host memory.
  std::vector<T> to_vector() const {
    std::vector<T> v(static_cast<std::size_t>(numel()));
    traits::copy_to_host(v.data(), data_, v.size());
    return v;
  }
  /// Copies the values into host memory at p (numel() elements).
  void copy_to(T* p) const { traits::copy_to_host(p, data_, static_cast<std::size_t>(numel())); }

  /// The only value of a one-element tensor.
  T item() const {
    if (numel() != 1)
      detail::fail<shape_error>("item: expected a tensor of one element, got shape ", shape_);
    return traits::read(data_);
  }

  /// Element access by index (host policies only).
  template <class... I>
    requires(host_accessible_v<Policy> && (std::is_integral_v<I> && ...))
  T& operator()(I... idx) {
    return data_[offset_of({static_cast<std::int64_t>(idx)...})];
  }
  template <class... I>
    requires(host_accessible_v<Policy> && (std::is_integral_v<I> && ...))
  const T& operator()(I... idx) const {
    return data_[offset_of({static_cast<std::int64_t>(idx)...})];
  }

  /// The same values under another policy (a copy through the host when the
  /// policies differ; a shallow copy when they are the same).
  template <class P2>
  tensor<T, P2> to() const {
    if constexpr (std::is_same_v<P2, Policy>) {
      return *this;
    } else {
      std::vector<T> host = to_vector();
      return tensor<T, P2>::from_data(host.data(), shape_);
    }
  }

  void require_defined(const char* what) const {
    if (!defined_) detail::fail<value_error>(what, ": the tensor is undefined (default-constructed)");
  }

 private:
  void fill_zero();
  std::int64_t offset_of(std::initializer_list<std::int64_t> idx) const {
    if (static_cast<int>(idx.size()) != rank())
      detail::fail<shape_error>("tensor(): ", idx.size(), " indices given for a tensor of rank ", rank());
    std::int64_t off = 0;
    int d = 0;
    for (std::int64_t i : idx) {
      if (i < 0 || i >= shape_[d])
        detail::fail<value_error>("tensor(): index ", i, " is out of range for dimension ", d,
                                  " of size ", shape_[d]);
      off = off * shape_[d] + i;
      ++d;
    }
    return off;
  }

  protoseg::shape shape_{};
  std::shared_ptr<void> owner_{};
  T* data_ = nullptr;
  bool defined_ = false;
};

}  // namespace protoseg

namespace protoseg {
template <class T, class Policy>
void tensor<T, Policy>::fill_zero() {
  backend::elementwise<Policy>::fill(data_, numel(), T(0));
}
}  // namespace protoseg
