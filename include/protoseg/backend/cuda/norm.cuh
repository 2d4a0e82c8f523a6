#pragma once
/// \file norm.cuh
/// cuda normalisation kernels on Thrust: layer norm rows (one work item per
/// row); its parameter gradients and the batch-norm channel statistics as
/// two-stage reductions (partial sums over chunks of 256 rows / pixels, then
/// one item per column / channel), so that a GPU has enough work items.
/// Statistics accumulate in double.

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cmath>
#include <cstdint>

#include "protoseg/backend/cuda/traits.cuh"
#include "protoseg/backend/kernels/norm.hpp"
#include "protoseg/backend/primitives.hpp"
#include "protoseg/config.hpp"

namespace protoseg::backend {

namespace cuda_detail {
/// Rows per partial sum of the column reductions: enough work items to fill
/// a GPU, short loops per item.
inline constexpr std::int64_t norm_chunk = 256;

template <class T>
struct layer_norm_param_partial_fn {  // item (chunk, column)
  const T* g;
  const T* x;
  const T* mean;
  const T* rstd;
  double* part_g;
  double* part_h;
  std::int64_t rows, n;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t chunk = i / n, j = i % n;
    const std::int64_t r0 = chunk * norm_chunk, r1 = r0 + norm_chunk < rows ? r0 + norm_chunk : rows;
    double sg = 0, sh = 0;
    for (std::int64_t r = r0; r < r1; ++r) {
      const T gv = g[r * n + j];
      sg += gv;
      sh += double(gv * ((x[r * n + j] - mean[r]) * rstd[r]));
    }
    part_g[i] = sg;
    part_h[i] = sh;
  }
};
template <class T>
struct layer_norm_param_final_fn {  // item column
  const double* part_g;
  const double* part_h;
  T* ggamma;
  T* gbeta;
  std::int64_t chunks, n;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t j) const {
    double sg = 0, sh = 0;
    for (std::int64_t c = 0; c < chunks; ++c) {
      sg += part_g[c * n + j];
      sh += part_h[c * n + j];
    }
    if (ggamma) ggamma[j] = T(sh);
    if (gbeta) gbeta[j] = T(sg);
  }
};
/// Partial sums over the (n, c, hw) view: item (channel, sample, chunk of hw)
/// adds f(k) over its chunk into part_a (and part_b when the functor gives two).
template <class T>
struct channel_partial_fn {
  const T* a;       // x or g
  const T* b;       // x when two sums are wanted (grad sums), else null
  const T* center;  // per-channel value subtracted (mean), or null
  bool square;      // sum (a - center)^2 instead of a
  double* part_a;
  double* part_b;
  std::int64_t n, c, hw, chunks;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t ch = i / (n * chunks), rest = i % (n * chunks), s = rest / chunks, k = rest % chunks;
    const std::int64_t base = (s * c + ch) * hw;
    const std::int64_t j0 = k * norm_chunk, j1 = j0 + norm_chunk < hw ? j0 + norm_chunk : hw;
    const double m = center ? double(center[ch]) : 0.0;
    double sa = 0, sb = 0;
    for (std::int64_t j = j0; j < j1; ++j) {
      const double v = a[base + j];
      if (b) {
        sa += v;
        sb += v * double(b[base + j] - T(m));
      } else if (square) {
        sa += (v - m) * (v - m);
      } else {
        sa += v;
      }
    }
    part_a[i] = sa;
    if (part_b) part_b[i] = sb;
  }
};
/// out[ch] = scale * (sum of the channel's partials).
template <class T>
struct channel_final_fn {
  const double* part;
  T* out;
  std::int64_t per_channel;
  double scale;
  PROTOSEG_HOST_DEVICE void operator()(std::int64_t ch) const {
    double s = 0;
    for (std::int64_t k = 0; k < per_channel; ++k) s += part[ch * per_channel + k];
    out[ch] = T(s * scale);
  }
};
}  // namespace cuda_detail

template <>
struct norm<cuda> {
  /// Same contracts as norm<cpu> (see backend/cpu/norm.hpp).
  template <class T>
  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, std::int64_t rows,
                                 std::int64_t n, double eps) {
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(rows),
                     kernels::layer_norm_row_fn<T>{x, gamma, beta, y, mean, rstd, n, eps});
  }
  template <class T>
  static void layer_norm_backward(const T* g, const T* x, const T* gamma, const T* mean, const T* rstd, T* gx,
                                  std::int64_t rows, std::int64_t n) {
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(rows),
                     kernels::layer_norm_backward_row_fn<T>{g, x, gamma, mean, rstd, gx, n});
  }
  template <class T>
  static void layer_norm_param_grads(const T* g, const T* x, const T* mean, const T* rstd, T* ggamma, T* gbeta,
                                     std::int64_t rows, std::int64_t n) {
    if (n == 0) return;
    const std::int64_t chunks = rows > 0 ? (rows + cuda_detail::norm_chunk - 1) / cuda_detail::norm_chunk : 0;
    cuda_detail::scratch<double> pg(chunks * n), ph(chunks * n);
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(chunks * n),
                     cuda_detail::layer_norm_param_partial_fn<T>{g, x, mean, rstd, pg.get(),
                                                                 ph.get(), rows, n});
    thrust::for_each(cuda_detail::exec(), thrust::counting_iterator<std::int64_t>(0), thrust::counting_iterator<std::int64_t>(n),
                     cuda_detail::layer_norm_param_final_fn<T>{pg.get(),
                                                               ph.get(), ggamma, gbeta,
                                                               chunks, n});
  }
  template <class T>
  static void channel_moments(const T* x, T* mean, T* var, std::int64_t n, std::int64_t c, std::int64_t hw) {
    if (c == 0) return;
    const std::int64_t chunks = (hw + cuda_detail::norm_chunk - 1) / cuda_detail::norm_chunk;
    const std::int64_t per = n * chunks, items = c * per;
    const double inv = 1.0 / double(n * hw);
    cuda_detail::scratch<double> part(items);
    double* pp = part.get();
    auto first = thrust::counting_iterator<std::int64_t>(0);
    thrust::for_each(cuda_detail::exec(), first, first + items, cuda_detail::channel_partial_fn<T>{x, nullptr, nullptr, false, pp, nullptr, n, c, hw, chunks});
    thrust::for_each(cuda_detail::exec(), first, first + c, cuda_detail::channel_final_fn<T>{pp, mean, per, inv});
    thrust::for_each(cuda_detail::exec(), first, first + items, cuda_detail::channel_partial_fn<T>{x, nullptr, mean, true, pp, nullptr, n, c, hw, chunks});
    thrust::for_each(cuda_detail::exec(), first, first + c, cuda_detail::channel_final_fn<T>{pp, var, per, inv});
  }
  template <class T>
  static void channel_grad_sums(const T* g, const T* x, const T* mean, T* sum_g, T* sum_gx, std::int64_t n,
                                std::int64_t c, std::int64_t hw) {
    if (c == 0) return;
    const std::int64_t chunks = (hw + cuda_detail::norm_chunk - 1) / cuda_detail::norm_chunk;
    const std::int64_t per = n * chunks, items = c * per;
    cuda_detail::scratch<double> pa(items), pb(items);
    double* ppa = pa.get();
    double* ppb = pb.get();
    auto first = thrust::counting_iterator<std::int64_t>(0);
    thrust::for_each(cuda_detail::exec(), first, first + items, cuda_detail::channel_partial_fn<T>{g, x, mean, false, ppa, ppb, n, c, hw, chunks});
    thrust::for_each(cuda_detail::exec(), first, first + c, cuda_detail::channel_final_fn<T>{ppa, sum_g, per, 1.0});
    thrust::for_each(cuda_detail::exec(), first, first + c, cuda_detail::channel_final_fn<T>{ppb, sum_gx, per, 1.0});
  }
};

}  // namespace protoseg::backend
