#pragma once
/// \file sinkhorn.hpp
/// cpu Sinkhorn-Knopp (supplementary Algorithm 1, Eq. 9): the dense solver
/// on a K x N score matrix and the segmented solver (every class's problem
/// in one call). The plain dense solver never materialises the intermediate
/// L of Algorithm 1: it keeps L = diag(u) exp(S / kappa) diag(v) as two
/// scaling vectors over E = exp(S / kappa) (stored in the output), so one
/// iteration is one fused pass over memory (the column normalisation of
/// round t and the row sums of round t + 1 share it). The global
/// `L /= sum(L)` of Algorithm 1 only rescales L and cancels in the first row
/// normalisation; it is not repeated. The segmented solver transposes each
/// class's block (read once, in cache) into Algorithm 1's prototype-major
/// layout and runs the dense kernel on it, one class per thread.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "protoseg/backend/host_math.hpp"
#include "protoseg/backend/parallel.hpp"
#include "protoseg/backend/primitives.hpp"

namespace protoseg::backend {

namespace cpu_detail {

using status = sinkhorn_status;

/// Team helpers for a parallel region whose threads share reductions.
inline int team_rank() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int team_size() {
#if defined(_OPENMP)
  return omp_get_num_threads();
#else
  return 1;
#endif
}
inline void team_barrier() {
#if defined(_OPENMP)
#pragma omp barrier
#endif
}


}  // namespace cpu_detail
}  // namespace protoseg::backend

#if defined(_OPENMP)
/// `#pragma omp simd reduction(op: var)` where OpenMP is on (lets the
/// compiler reorder a floating-point reduction into vector lanes).
#define PROTOSEG_CPU_SIMD_REDUCE(op, var) PROTOSEG_PRAGMA(omp simd reduction(op : var))
#define PROTOSEG_CPU_SIMD PROTOSEG_PRAGMA(omp simd)
/// A parallel region over `threads` threads when `cond` holds.
#define PROTOSEG_CPU_PARALLEL(cond, threads) PROTOSEG_PRAGMA(omp parallel if (cond) num_threads(threads))
#else
#define PROTOSEG_CPU_SIMD_REDUCE(op, var)
#define PROTOSEG_CPU_SIMD
#define PROTOSEG_CPU_PARALLEL(cond, threads)
#endif

namespace protoseg::backend {
namespace cpu_detail {

/// Columns per block of the fused passes (a K x block tile stays in L1).
inline constexpr std::int64_t column_block = 256;

/// Splits [0, n) evenly over a team; thread `t` of `nt` gets [begin, end).
inline void team_range(std::int64_t n, int t, int nt, std::int64_t& begin, std::int64_t& end) {
  begin = n * t / nt;
  end = n * (t + 1) / nt;
}

inline int team_threads(std::int64_t work) {
  const int nt = protoseg::num_threads();
  return work > backend::cpu_detail::parallel_grain ? nt : 1;
}

/// Buffers of the dense kernels, sized once by the caller (the segmented
/// solver keeps one per thread and reuses it for every class).
template <class T>
struct dense_workspace {
  std::vector<T> partial, u, rows, flags, a, m, lse, b;
  void prepare(std::int64_t K, std::int64_t N, int threads, bool log_domain) {
    const std::size_t ks = static_cast<std::size_t>(K), ts = static_cast<std::size_t>(threads);
    partial.resize(2 * ts * ks);  // double-buffered per-thread partial sums
    u.resize(ts * ks);
    rows.resize(ts * ks);
    flags.resize(2 * ts);
    if (log_domain) {
      a.resize(ks);
      m.resize(ks);
      lse.resize(ks);
      b.resize(static_cast<std::size_t>(N));
    }
  }
};

/// Plain-domain Algorithm 1 on scores S (K x N, row-major) into Q (which
/// may be S). Each thread owns a range of columns; the K row sums are
/// reduced through double-buffered per-thread partials, and every thread
/// merges them itself in the same order, so a round costs one barrier.
template <class T>
status dense_plain(const T* S, T* Q, std::int64_t K, std::int64_t N, const sinkhorn_settings& o, int threads,
                   dense_workspace<T>& ws, int& iters_used, double& err_out) {
  const T inv_kappa = T(1.0 / o.kappa);
  const T row_target = T(double(N) / double(K));  // row sums once columns sum to 1
  const std::size_t ks = static_cast<std::size_t>(K), ts = static_cast<std::size_t>(threads);
  status st_out = status::ok;
  int used_out = 0;
  double err_result = 0;
  auto body = [&](const int tid, const int nt) {
    std::int64_t j0, j1;
    team_range(N, tid, nt, j0, j1);
    T* u = ws.u.data() + static_cast<std::size_t>(tid) * ks;       // this thread's copy
    T* rows = ws.rows.data() + static_cast<std::size_t>(tid) * ks;  // merged row sums
    auto partial = [&](int buf, int t) { return ws.partial.data() + (static_cast<std::size_t>(buf) * ts + static_cast<std::size_t>(t)) * ks; };
    auto flag = [&](int buf, int t) -> T& { return ws.flags[static_cast<std::size_t>(buf) * ts + static_cast<std::size_t>(t)]; };
    int buf = 0;
    // Pass 0: E = exp(S / kappa) and its row sums (v = 1).
    {
      T* my = partial(buf, tid);
      for (std::int64_t i = 0; i < K; ++i) {
        const T* s = S + i * N + j0;
        T* q = Q + i * N + j0;
        // x * 0 is NaN iff the score is NaN or infinite, so the row sum is
        // NaN for a non-finite score and +inf only for an overflow of exp.
        my[i] = lane_sum<T>(j1 - j0, [&](std::int64_t j) {
          const T x = s[j];  // read before the write: q may alias s (in-place solve)
          const T e = fast_exp(x * inv_kappa);
          q[j] = e;
          return e + x * T(0);
        });
      }
    }
    if (nt > 1) team_barrier();
    status st = status::ok;
    for (std::int64_t i = 0; i < K && st == status::ok; ++i) {
      T r = 0;
      for (int t = 0; t < nt; ++t) r += partial(buf, t)[i];
      if (std::isnan(r)) st = status::non_finite_scores;
      else if (!(r > 0) || !std::isfinite(r)) st = status::out_of_range;
      else u[i] = row_target / r;
    }
    // One fused pass: column sums c_j = sum_i E_ij u_i, then either the row
    // sums sum_j E_ij / c_j of the column-normalised matrix (the next row
    // step) or, when `write`, the output Q_ij = E_ij u_i / c_j and its row sums.
    auto pass = [&](bool write) {
      buf ^= 1;
      T* my = partial(buf, tid);
      T c[column_block];
      for (std::int64_t i = 0; i < K; ++i) my[i] = 0;
      T chk = 0;
      for (std::int64_t jb = j0; jb < j1; jb += column_block) {
        const std::int64_t nb = std::min(column_block, j1 - jb);
        for (std::int64_t j = 0; j < nb; ++j) c[j] = 0;
        for (std::int64_t i = 0; i < K; ++i) {
          const T* q = Q + i * N + jb;
          const T ui = u[i];
          PROTOSEG_CPU_SIMD
          for (std::int64_t j = 0; j < nb; ++j) c[j] += q[j] * ui;
        }
        chk += lane_sum<T>(nb, [&](std::int64_t j) {
          const T w = T(1) / c[j];
          const T bad = c[j] * T(0) + w * T(0);  // NaN iff c is 0, infinite or NaN
          c[j] = w;
          return bad;
        });
        for (std::int64_t i = 0; i < K; ++i) {
          T* q = Q + i * N + jb;
          if (write) {
            const T ui = u[i];
            my[i] += lane_sum<T>(nb, [&](std::int64_t j) {
              const T x = q[j] * ui * c[j];
              q[j] = x;
              return x;
            });
          } else {
            my[i] += lane_sum<T>(nb, [&](std::int64_t j) { return q[j] * c[j]; });
          }
        }
      }
      flag(buf, tid) = chk;
      if (nt > 1) team_barrier();
    };
    // Every thread merges the partials in the same fixed order: identical
    // decisions everywhere, and results independent of the schedule beyond
    // the split of the sums.
    auto merge = [&](bool write, double& e) {
      for (int t = 0; t < nt; ++t)
        if (std::isnan(flag(buf, t))) st = status::out_of_range;
      e = 0;
      for (std::int64_t i = 0; i < K; ++i) {
        T r = 0;
        for (int t = 0; t < nt; ++t) r += partial(buf, t)[i];
        const T row = write ? r : u[i] * r;
        e = std::max(e, std::abs(double(row) / double(row_target) - 1.0));
        if (!write && (!(r > 0) || !std::isfinite(r))) st = status::out_of_range;
        rows[i] = r;
      }
    };
    int used = 0;
    double err = 0;
    for (int round = 1; round <= o.iterations && st == status::ok; ++round) {
      const bool fused_final = o.tolerance <= 0 && round == o.iterations;
      pass(fused_final);
      merge(fused_final, err);
      used = round;
      if (fused_final || st != status::ok) break;
      if ((o.tolerance > 0 && err <= o.tolerance) || round == o.iterations) {
        pass(true);  // stop: write Q with the current u
        merge(true, err);
        break;
      }
      for (std::int64_t i = 0; i < K; ++i) u[i] = row_target / rows[i];
    }
    if (tid == 0) {
      st_out = st;
      used_out = used;
      err_result = err;
    }
  };
  if (threads > 1) {
    PROTOSEG_CPU_PARALLEL(true, threads)
    body(team_rank(), team_size());
  } else {
    body(0, 1);
  }
  iters_used = used_out;
  err_out = err_result;
  return st_out;
}

/// Log-domain Algorithm 1: keeps log Q = S / kappa + a_i + b_j with the row
/// and column steps done by log-sum-exp, so nothing overflows. F = S / kappa
/// is kept in Q until the final write.
template <class T>
status dense_log(const T* S, T* Q, std::int64_t K, std::int64_t N, const sinkhorn_settings& o, int threads,
                 dense_workspace<T>& ws, int& iters_used, double& err_out) {
  const T inv_kappa = T(1.0 / o.kappa);
  const T log_row_target = T(std::log(double(N) / double(K)));
  const std::size_t ks = static_cast<std::size_t>(K);
  T* partial = ws.partial.data();
  T* a = ws.a.data();
  T* m = ws.m.data();
  T* lse = ws.lse.data();
  T* b = ws.b.data();
  T* smin = ws.flags.data();
  std::fill(b, b + N, T(0));
  status st = status::ok;
  bool done = false, stop = false;
  int used = 0;
  double err = 0;
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();

  auto body = [&](const int tid, const int nt) {
    auto sync = [nt]() {
      if (nt > 1) team_barrier();
    };
    std::int64_t j0, j1;
    team_range(N, tid, nt, j0, j1);
    T* my = partial + static_cast<std::size_t>(tid) * ks;
    // lse_i = log sum_j exp(F_ij + b_j), in two phases (max, then sum).
    auto row_lse = [&]() {
      for (std::int64_t i = 0; i < K; ++i) {
        const T* f = Q + i * N;
        T mx = neg_inf;
        PROTOSEG_CPU_SIMD_REDUCE(max, mx)
        for (std::int64_t j = j0; j < j1; ++j) mx = std::max(mx, f[j] + b[j]);
        my[i] = mx;
      }
      sync();
      if (tid == 0)
        for (std::int64_t i = 0; i < K; ++i) {
          T mx = neg_inf;
          for (int t = 0; t < nt; ++t) mx = std::max(mx, partial[static_cast<std::size_t>(t) * ks + static_cast<std::size_t>(i)]);
          m[i] = mx;
        }
      sync();
      for (std::int64_t i = 0; i < K; ++i) {
        const T* f = Q + i * N;
        const T mi = m[i];
        my[i] = lane_sum<T>(j1 - j0, [&](std::int64_t j) { return fast_exp(f[j0 + j] + b[j0 + j] - mi); });
      }
      sync();
      if (tid == 0)
        for (std::int64_t i = 0; i < K; ++i) {
          T sum = 0;
          for (int t = 0; t < nt; ++t) sum += partial[static_cast<std::size_t>(t) * ks + static_cast<std::size_t>(i)];
          lse[i] = m[i] + std::log(sum);
        }
    };
    T chk = 0;
    for (std::int64_t i = 0; i < K; ++i) {
      const T* s = S + i * N + j0;
      T* f = Q + i * N + j0;
      chk += lane_sum<T>(j1 - j0, [&](std::int64_t j) {
        const T x = s[j] * inv_kappa;
        f[j] = x;
        return x * T(0);  // NaN iff the score is NaN or infinite
      });
    }
    smin[tid] = chk;
    sync();
    if (tid == 0) {
      for (int t = 0; t < nt; ++t)
        if (std::isnan(smin[t])) st = status::non_finite_scores;
      done = st != status::ok;
    }
    sync();
    if (!done) {
      row_lse();
      if (tid == 0)
        for (std::int64_t i = 0; i < K; ++i)
          a[i] = log_row_target - lse[i];
      sync();
      T cm[column_block], cs[column_block];
      for (int round = 1; round <= o.iterations; ++round) {
        // Column step: b_j = -log sum_i exp(F_ij + a_i) (columns sum to 1).
        for (std::int64_t jb = j0; jb < j1; jb += column_block) {
          const std::int64_t nb = std::min(column_block, j1 - jb);
          for (std::int64_t j = 0; j < nb; ++j) {
            cm[j] = neg_inf;
            cs[j] = 0;
          }
          for (std::int64_t i = 0; i < K; ++i) {
            const T* f = Q + i * N + jb;
            const T ai = a[i];
            PROTOSEG_CPU_SIMD
            for (std::int64_t j = 0; j < nb; ++j) cm[j] = std::max(cm[j], f[j] + ai);
          }
          for (std::int64_t i = 0; i < K; ++i) {
            const T* f = Q + i * N + jb;
            const T ai = a[i];
            PROTOSEG_CPU_SIMD
            for (std::int64_t j = 0; j < nb; ++j) cs[j] += fast_exp(f[j] + ai - cm[j]);
          }
          for (std::int64_t j = 0; j < nb; ++j) b[jb + j] = -(cm[j] + std::log(cs[j]));
        }
        sync();
        // Row sums of the column-normalised Q are exp(a_i + lse_i): the error
        // of this round, and the next round's row step.
        row_lse();
        if (tid == 0) {
          double e = 0;
          for (std::int64_t i = 0; i < K; ++i) {
            const double row = std::exp(double(a[i] + lse[i]) -
                                        double(log_row_target));
            e = std::max(e, std::abs(row - 1.0));
          }
          err = e;
          used = round;
          stop = (o.tolerance > 0 && e <= o.tolerance) || round == o.iterations;
          if (!stop)
            for (std::int64_t i = 0; i < K; ++i)
              a[i] = log_row_target - lse[i];
        }
        sync();
        if (stop) break;
      }
      for (std::int64_t i = 0; i < K; ++i) {
        T* f = Q + i * N;
        const T ai = a[i];
        PROTOSEG_CPU_SIMD
        for (std::int64_t j = j0; j < j1; ++j) f[j] = fast_exp(f[j] + ai + b[j]);
      }
    }
  };
  if (threads > 1) {
    PROTOSEG_CPU_PARALLEL(true, threads)
    body(team_rank(), team_size());
  } else {
    body(0, 1);
  }
  iters_used = used;
  err_out = err;
  return st;
}

/// Copies an r x c row-major block into its c x r transpose (tiled so that
/// both sides stay in cache lines).
template <class T>
void transpose_block(const T* src, T* dst, std::int64_t r, std::int64_t c) {
  constexpr std::int64_t tile = 32;
  for (std::int64_t i0 = 0; i0 < r; i0 += tile) {
    const std::int64_t i1 = std::min(r, i0 + tile);
    for (std::int64_t j = 0; j < c; ++j) {
      PROTOSEG_CPU_SIMD
      for (std::int64_t i = i0; i < i1; ++i) dst[j * r + i] = src[i * c + j];
    }
  }
}

}  // namespace cpu_detail

template <>
struct sinkhorn<cpu> {
  /// Algorithm 1 on scores S (K x N, row-major) into Q (which may be S, not
  /// a partly overlapping view): Q = diag(u) exp(S / kappa) diag(v), columns
  /// summing to 1; the rounds run and the final marginal error go to
  /// `used` and `err`.
  template <class T>
  static sinkhorn_status dense(const T* S, T* Q, std::int64_t K, std::int64_t N, const sinkhorn_settings& o, int& used,
                               double& err) {
    const int threads = cpu_detail::team_threads(K * N);
    cpu_detail::dense_workspace<T> ws;
    ws.prepare(K, N, threads, o.log_domain);
    return o.log_domain ? cpu_detail::dense_log(S, Q, K, N, o, threads, ws, used, err)
                        : cpu_detail::dense_plain(S, Q, K, N, o, threads, ws, used, err);
  }

  /// Algorithm 1 for every class c (pixels [offsets[c], offsets[c + 1]) of
  /// the N x M pixel-major scores) into Q (may alias S); per class the
  /// rounds run, the marginal error and a status (sinkhorn_status codes).
  /// The offsets must be valid CSR offsets. `ws` (C x M) is not needed here.
  template <class T>
  static void segmented(const T* S, T* Q, const std::int64_t* off, std::int64_t C, std::int64_t M,
                        const sinkhorn_settings& o, T* /*ws*/, int* used, double* err, int* st) {
    if (C <= 0) return;
    const std::int64_t N = off[C];
    std::int64_t largest = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      largest = std::max(largest, off[c + 1] - off[c]);
      used[c] = 0;
      err[c] = 0.0;
      st[c] = static_cast<int>(sinkhorn_status::ok);
    }
    const bool par = N * M > cpu_detail::parallel_grain && C > 1;
    (void)par;  // read only by the OpenMP pragma
#if defined(_OPENMP)
#pragma omp parallel if (par)
#endif
    {
      // Per-thread buffers, sized once for the largest class: no allocation
      // per class. Each class block is transposed into the prototype-major
      // layout of Algorithm 1 (M x N_c, vectorised over pixels), solved in
      // place by the dense kernel on this thread, and transposed back.
      std::vector<T> block(static_cast<std::size_t>(largest * M));
      cpu_detail::dense_workspace<T> ws;
      ws.prepare(M, largest, 1, o.log_domain);
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t n = off[c + 1] - off[c];
        if (n == 0) continue;
        const std::size_t cs = static_cast<std::size_t>(c);
        cpu_detail::transpose_block(S + off[c] * M, block.data(), n, M);
        const sinkhorn_status sc =
            o.log_domain ? cpu_detail::dense_log(block.data(), block.data(), M, n, o, 1, ws, used[cs], err[cs])
                         : cpu_detail::dense_plain(block.data(), block.data(), M, n, o, 1, ws, used[cs], err[cs]);
        st[cs] = static_cast<int>(sc);
        if (sc == sinkhorn_status::ok) cpu_detail::transpose_block(block.data(), Q + off[c] * M, M, n);
      }
    }
  }
};

}  // namespace protoseg::backend
