#pragma once
/// \file traits.hpp
/// `backend_traits<cpu>`: 64-byte aligned host buffers, plain memcpy copies.

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include "protoseg/backend/policy.hpp"

namespace protoseg {

/// An owning, 64-byte aligned host buffer (the storage of `tensor<T, cpu>`).
template <class T>
class aligned_buffer {
 public:
  static constexpr std::size_t alignment = 64;
  explicit aligned_buffer(std::size_t n)
      : size_(n),
        data_(n == 0 ? nullptr
                     : static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{alignment}))) {}
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  ~aligned_buffer() {
    if (data_) ::operator delete(data_, std::align_val_t{alignment});
  }
  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  std::size_t size_;
  T* data_;
};

template <>
struct backend_traits<cpu> {
  static constexpr bool host_accessible = true;
  template <class T>
  using storage = aligned_buffer<T>;

  /// Allocates n uninitialised elements: the owner keeps them alive.
  template <class T>
  static std::pair<std::shared_ptr<void>, T*> allocate(std::size_t n) {
    auto buf = std::make_shared<storage<T>>(n);
    T* p = buf->data();
    return {std::shared_ptr<void>(std::move(buf)), p};
  }
  template <class T>
  static void copy_from_host(T* dst, const T* src, std::size_t n) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  }
  template <class T>
  static void copy_to_host(T* dst, const T* src, std::size_t n) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  }
  template <class T>
  static void copy_same(T* dst, const T* src, std::size_t n) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  }
  /// Reads one element (for item() and printing).
  template <class T>
  static T read(const T* p) {
    return *p;
  }
};

}  // namespace protoseg
