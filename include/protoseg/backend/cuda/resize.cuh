#pragma once
/// \file resize.cuh
/// cuda separable resize on Thrust: the axis tables are copied to the device
/// once per call; forward and the gather-form backward compute one element
/// per work item.

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/tabulate.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
/// Raw device pointers of a resize_axis whose vectors live on the device.
template <class T>
struct resize_axis_view {
  std::int64_t in, out;
  const std::int64_t* i0;
  const std::int64_t* i1;
  const std::int64_t* first;
  const std::int64_t* last;
  const T* w0;
  const T* w1;
};
/// The device copy of a host resize_axis: its six tables packed into one
/// buffer from the device cache, sent in one upload.
template <class T>
class resize_axis_device {
 public:
  explicit resize_axis_device(const resize_axis<T>& a)
      : in_(a.in), out_(a.out), sizes_{a.i0.size(), a.i1.size(), a.first.size(), a.last.size()} {
    std::size_t ints = 0;
    for (auto n : sizes_) ints += n;
    const std::size_t bytes = ints * sizeof(std::int64_t) + (a.w0.size() + a.w1.size()) * sizeof(T);
    host_.resize(bytes);
    char* p = host_.data();
    auto put = [&](const auto& v) {
      if (!v.empty()) std::memcpy(p, v.data(), v.size() * sizeof(v[0]));
      p += v.size() * sizeof(v[0]);
    };
    put(a.i0), put(a.i1), put(a.first), put(a.last), put(a.w0), put(a.w1);
    w_sizes_[0] = a.w0.size();
    w_sizes_[1] = a.w1.size();
    buf_ = std::make_unique<scratch<char>>(static_cast<std::int64_t>(bytes));
    upload(buf_->get(), host_.data(), bytes);
  }
  resize_axis_view<T> view() const {
    const auto* ip = reinterpret_cast<const std::int64_t*>(buf_->get());
    const std::int64_t* i0 = ip;
    const std::int64_t* i1 = i0 + sizes_[0];
    const std::int64_t* first = i1 + sizes_[1];
    const std::int64_t* last = first + sizes_[2];
    const T* w0 = reinterpret_cast<const T*>(last + sizes_[3]);
    const T* w1 = w0 + w_sizes_[0];
    return {in_, out_, i0, i1, first, last, w0, w1};
  }

 private:
  std::int64_t in_, out_;
  std::size_t sizes_[4];
  std::size_t w_sizes_[2] = {0, 0};
  std::vector<char> host_;
  std::unique_ptr<scratch<char>> buf_;
};
template <class T>
struct resize_forward_fn {
  const T* x;
  resize_axis_view<T> ah, aw;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    const std::int64_t ox = i % aw.out, oy = (i / aw.out) % ah.out, p = i / (aw.out * ah.out);
    const T* r0 = x + (p * ah.in + ah.i0[oy]) * aw.in;
    const T* r1 = x + (p * ah.in + ah.i1[oy]) * aw.in;
    const std::int64_t c0 = aw.i0[ox], c1 = aw.i1[ox];
    const T v0 = aw.w0[ox], v1 = aw.w1[ox];
    return ah.w0[oy] * (v0 * r0[c0] + v1 * r0[c1]) + ah.w1[oy] * (v0 * r1[c0] + v1 * r1[c1]);
  }
};
template <class T>
struct resize_backward_fn {
  const T* gy;
  resize_axis_view<T> ah, aw;
  PROTOSEG_HOST_DEVICE T operator()(std::int64_t i) const {
    const std::int64_t xx = i % aw.in, y = (i / aw.in) % ah.in, p = i / (aw.in * ah.in);
    T total = T(0);
    for (std::int64_t oy = ah.first[y]; oy < ah.last[y]; ++oy) {
      const T wy = (ah.i0[oy] == y ? ah.w0[oy] : T(0)) + (ah.i1[oy] == y ? ah.w1[oy] : T(0));
      if (wy == T(0)) continue;
      const T* grow = gy + (p * ah.out + oy) * aw.out;
      T acc = T(0);
      for (std::int64_t ox = aw.first[xx]; ox < aw.last[xx]; ++ox) {
        const T wx = (aw.i0[ox] == xx ? aw.w0[ox] : T(0)) + (aw.i1[ox] == xx ? aw.w1[ox] : T(0));
        acc += wx * grow[ox];
      }
      total += wy * acc;
    }
    return total;
  }
};
template <class T>
struct resize_backward_add_fn {  // gx[i] += the gather-form backward at i
  resize_backward_fn<T> f;
  T* gx;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const { gx[i] += f(i); }
};
}  // namespace cuda_detail

template <>
struct resize<cuda> {
  /// Same contracts as resize<cpu> (see backend/cpu/resize.hpp).
  template <class T>
  static void forward(const T* x, T* y, std::int64_t planes, const resize_axis<T>& ah, const resize_axis<T>& aw) {
    const std::int64_t total = planes * ah.out * aw.out;
    if (total == 0) return;
    const cuda_detail::resize_axis_device<T> dh(ah), dw(aw);
    thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(y), cuda_detail::dp(y) + total,
                     cuda_detail::resize_forward_fn<T>{x, dh.view(), dw.view()});
  }
  template <class T>
  static void backward(const T* gy, T* gx, std::int64_t planes, const resize_axis<T>& ah, const resize_axis<T>& aw,
                       bool accumulate = false) {
    const std::int64_t total = planes * ah.in * aw.in;
    if (total == 0) return;
    const cuda_detail::resize_axis_device<T> dh(ah), dw(aw);
    if (accumulate) {
      thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(total),
                       cuda_detail::resize_backward_add_fn<T>{{gy, dh.view(), dw.view()}, gx});
      return;
    }
    thrust::tabulate(cuda_detail::exec(), cuda_detail::dp(gx), cuda_detail::dp(gx) + total,
                     cuda_detail::resize_backward_fn<T>{gy, dh.view(), dw.view()});
  }
};

}  // namespace protoseg::backend
