#pragma once
/// \file traits.hpp
/// `backend_traits<cpu>`: 64-byte aligned host buffers, plain memcpy copies.

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include "protoseg/backend/cpu/allocator.hpp"
#include "protoseg/backend/policy.hpp"

namespace protoseg {

/// An owning, 64-byte aligned host buffer (the storage of `tensor<T, cpu>`),
/// taken from and returned to the caching allocator.
template <class T>
class aligned_buffer {
 public:
  static constexpr std::size_t alignment = detail::host_block_cache::alignment;
  explicit aligned_buffer(std::size_t n)
      : size_(n),
        data_(n == 0 ? nullptr : static_cast<T*>(detail::host_block_cache::instance().allocate(n * sizeof(T)))) {}
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  ~aligned_buffer() {
    if (data_) detail::host_block_cache::instance().deallocate(data_, size_ * sizeof(T));
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
