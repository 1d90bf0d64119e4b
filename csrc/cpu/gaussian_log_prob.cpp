// CPU kernels of gaussian_log_prob, the fused EM E-step (gaussian_estep) and the fused EM pass
// (gaussian_em_stats: E-step + the M-step's sufficient statistics, see accumulate_tile_stats).
//
// Never materialises the N x K x D intermediate: the points are cut into tiles of T rows (T a
// multiple of 16, sized so the tile's scratch stays in L2), and each parallel_for task computes
// the Mahalanobis terms of its tile for every component, turns them into log-densities with the
// per-component constant c_k and, for the E-step, takes each point's logsumexp and normalises,
// all before the tile leaves the cache; the [T, K] block of the output is written once.
// Evaluation order per covariance type:
//   full       P_k upper triangular (scikit-learn's convention, so every EM call; float32 up to
//              D = 128) or D <= 4:
//              no BLAS call; y = x P_k - mu_k P_k and |y|^2 formed directly in registers, 16
//              points in vector lanes, over the triangle only (half the FMAs of a GEMM, and no
//              Y round trip through the cache). Otherwise Y^T = [P_1 ... P_K]^T @ X_tile^T
//              (one GEMM), maha_k = |Y_k - mu_k P_k|^2.
//   tied       Y^T = P^T @ X_tile^T (one small GEMM), maha_k = |y - mu_k P|^2
//              (D <= 4: the direct form of full, with P_k = P)
//              Points sit in vector lanes throughout (square-sums, max, sum of exp: no
//              horizontal reductions); the [K, T] result goes to the output through 8 x 8
//              register transposes.
//   diag       expansion trick as one GEMM: [x, x^2, 1] @ [-2 mu p^2; p^2; sum mu^2 p^2]^T
//   spherical  the same with [x, |x|^2, 1] @ [-2 mu_k p_k^2; p_k^2; p_k^2 |mu_k|^2]^T
//              (the GEMM writes the output block directly; the epilogue runs along rows)
// The expansion (as in scikit-learn) loses relative precision when x is much closer to mu_k than
// to the origin; full and tied use the difference form and do not.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/blas.h"
#include "cpu/vec_math.h"
#include "gaussian_common.h"

namespace {

using aigc_engine::CovType;
using at::Tensor;

// Everything the tile loop needs, prepared once per call in the dtype of x.
// Up to this D, full/tied skip the BLAS call (see run_tiles).
constexpr int64_t kDirectMaxD = 4;
// Triangular full covariances take the direct path up to this D in float32 (measured against
// the GEMM path on 2 AMD EPYC cores: 1.6x faster at D = 32, 1.14x at 128, 0.86x at 256) and at
// every D in float64 (2.3x - 3.2x faster for D = 32 ... 256).
constexpr int64_t kDirectMaxUpperD32 = 128;

struct Prepared {
  CovType type;
  int64_t N, K, D;
  Tensor W;  // full [K*D, D] = [P_1 ... P_K]^T; tied [D, D] = P^T; diag [2D+1, K]; spherical [D+2, K]
  Tensor b;  // full [K*D] = mu_k P_k; tied [K, D] = mu P; unused otherwise
  Tensor c;  // [K] = -D/2 log 2pi + log det P_k (+ log w_k)
  int64_t tile;
  bool direct = false;  // full/tied: y = x P - b in registers (direct_maha), no GEMM
  bool upper = false;   // ... over the upper triangle of P only
};

// stats_width: elements per point of the EM statistics' scratch (0 without statistics).
Prepared prepare(const Tensor& x, const Tensor& means, const Tensor& prec, CovType type,
                 const c10::optional<Tensor>& log_weights, int64_t stats_width = 0) {
  Prepared p;
  p.type = type;
  p.N = x.size(0);
  p.D = x.size(1);
  p.K = means.size(0);
  const auto dt = x.scalar_type();
  const int64_t K = p.K, D = p.D;
  Tensor mu = means.to(dt);
  Tensor P = prec.to(dt);
  p.c = aigc_engine::gaussian_constants(P, type, K, D, log_weights, dt);
  int64_t width = 0;  // floats per point in the tile's scratch
  switch (type) {
    case CovType::kFull:
      p.W = P.transpose(1, 2).reshape({K * D, D}).contiguous();
      p.b = at::einsum("kd,kde->ke", {mu, P}).reshape({K * D}).contiguous();
      p.upper = D > 1 && P.tril(-1).eq(0).all().item<bool>();
      p.direct = (p.upper && (D <= kDirectMaxUpperD32 || dt == at::kDouble)) || D <= kDirectMaxD;
      width = (p.direct ? D : K * D) + K + 2;
      break;
    case CovType::kTied:
      p.W = P.t().contiguous();
      p.b = at::matmul(mu, P).contiguous();
      p.direct = D <= kDirectMaxD;
      width = D + K + 2;
      break;
    case CovType::kDiag: {
      Tensor prec2 = P * P;
      p.W = at::cat({(-2.0 * mu * prec2).t(), prec2.t(), (mu * mu * prec2).sum(1).unsqueeze(0)}, 0)
                .contiguous();
      width = 2 * D + 1 + K;
      break;
    }
    case CovType::kSpherical: {
      Tensor prec2 = P * P;
      p.W = at::cat({(-2.0 * mu * prec2.unsqueeze(1)).t(), prec2.unsqueeze(0),
                     ((mu * mu).sum(1) * prec2).unsqueeze(0)}, 0)
                .contiguous();
      width = D + 2 + K;
      break;
    }
  }
  // ~128 KiB of float32 scratch per tile: the GEMM output stays in L2 while it is consumed.
  // T is a multiple of 16 so that the column loops run in whole vectors.
  constexpr int64_t kScratchElems = 1 << 15;
  constexpr int64_t kStatsScratchElems = 1 << 16;  // with the statistics: ~256 KiB of float32
  const int64_t budget = stats_width > 0 ? kStatsScratchElems : kScratchElems;
  p.tile = std::clamp<int64_t>(budget / std::max<int64_t>(width + stats_width, 1), 16, 1024) / 16 * 16;
  return p;
}

// acc[r] = sum_e (Y[e, r] - b[e])^2 for r < rows, Y row-major [D, ld]: vertical vector ops only.
template <typename scalar_t>
inline void column_squared_distances(const scalar_t* Y, int64_t ld, const scalar_t* b, int64_t D,
                                     int64_t rows, scalar_t* acc) {
  using Vec = at::vec::Vectorized<scalar_t>;
  std::fill(acc, acc + rows, scalar_t(0));
  for (int64_t e = 0; e < D; ++e) {
    const scalar_t* y = Y + e * ld;
    const Vec be(b[e]);
    int64_t r = 0;
    for (; r + Vec::size() <= rows; r += Vec::size()) {
      const Vec d = Vec::loadu(y + r) - be;
      at::vec::fmadd(d, d, Vec::loadu(acc + r)).store(acc + r);
    }
    for (; r < rows; ++r) {
      const scalar_t d = y[r] - b[e];
      acc[r] += d * d;
    }
  }
}

// exp of a vector whose lanes are <= 0 (or nan): the fast AVX2 exp (vec_math.h), Sleef otherwise.
template <typename scalar_t>
inline at::vec::Vectorized<scalar_t> exp_nonpositive(const at::vec::Vectorized<scalar_t>& d) {
#if defined(CPU_CAPABILITY_AVX2)
  return aigc_engine::exp_nonpositive(d);
#else
  return d.exp();
#endif
}

// row[k] = c[k] - row[k] / 2 (row holds maha on entry); for the E-step also normalise the row
// by its logsumexp and return it. With `resp` the row ends as the responsibilities
// exp(row - logsumexp) instead of their logarithms (one exp per entry).
template <typename scalar_t>
inline scalar_t finalize_row(scalar_t* row, const scalar_t* c, int64_t K, bool estep, bool resp = false) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const Vec half(scalar_t(0.5));
  int64_t k = 0;
  for (; k + Vec::size() <= K; k += Vec::size()) {
    (Vec::loadu(c + k) - half * Vec::loadu(row + k)).store(row + k);
  }
  for (; k < K; ++k) row[k] = c[k] - scalar_t(0.5) * row[k];
  if (!estep) return 0;
  k = 0;
  scalar_t m = -std::numeric_limits<scalar_t>::infinity();
  if (K >= Vec::size()) {
    Vec vm = Vec::loadu(row);
    for (k = Vec::size(); k + Vec::size() <= K; k += Vec::size()) vm = at::vec::maximum(vm, Vec::loadu(row + k));
    m = at::vec::vec_reduce_all<scalar_t>([](Vec& u, Vec& v) { return at::vec::maximum(u, v); }, vm);
  }
  for (; k < K; ++k) m = std::max(m, row[k]);
  // As torch.logsumexp: an infinite max is not subtracted (all -inf rows give -inf, not nan).
  const scalar_t shift = std::isinf(m) ? scalar_t(0) : m;
  Vec acc(scalar_t(0));
  const Vec vshift(shift);
  k = 0;
  for (; k + Vec::size() <= K; k += Vec::size()) {
    const Vec e = exp_nonpositive<scalar_t>(Vec::loadu(row + k) - vshift);
    if (resp) e.store(row + k);
    acc = acc + e;
  }
  scalar_t s = at::vec::vec_reduce_all<scalar_t>([](Vec& u, Vec& v) { return u + v; }, acc);
  for (; k < K; ++k) {
    const scalar_t e = std::exp(row[k] - shift);
    if (resp) row[k] = e;
    s += e;
  }
  const scalar_t lse = std::log(s) + shift;
  if (resp) {
    const Vec inv(scalar_t(1) / s);
    for (k = 0; k + Vec::size() <= K; k += Vec::size()) (Vec::loadu(row + k) * inv).store(row + k);
    for (; k < K; ++k) row[k] *= scalar_t(1) / s;
    return lse;
  }
  const Vec vlse(lse);
  k = 0;
  for (; k + Vec::size() <= K; k += Vec::size()) (Vec::loadu(row + k) - vlse).store(row + k);
  for (; k < K; ++k) row[k] -= lse;
  return lse;
}

// O[r * K + k] = M[k * T + r] for r < rows, k < K: 8 x 8 register transposes (AVX2 for
// float) for the whole blocks, scalar copies for the edges.
template <typename scalar_t>
inline void transpose_into(const scalar_t* M, int64_t T, int64_t rows, int64_t K, scalar_t* O) {
  const int64_t k8 = K / 8 * 8, r8 = rows / 8 * 8;
  for (int64_t k0 = 0; k0 < k8; k0 += 8) {
    for (int64_t r0 = 0; r0 < r8; r0 += 8)
      at::vec::transpose_mxn<scalar_t, 8, 8>(M + k0 * T + r0, T, O + r0 * K + k0, K);
    for (int64_t r = r8; r < rows; ++r)
      for (int64_t k = k0; k < k0 + 8; ++k) O[r * K + k] = M[k * T + r];
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = k8; k < K; ++k) O[r * K + k] = M[k * T + r];
}

// Column form of the tile's epilogue for full/tied, where component k's values sit in
// M[k * T + r] (points in vector lanes): adds c_k, takes each point's logsumexp over k without
// horizontal reductions, and writes the [rows, K] block of the output transposed. Without an
// output (O == nullptr, EM statistics) M ends as the responsibilities exp(M - logsumexp).
template <typename scalar_t>
void finalize_columns(scalar_t* M, int64_t T, int64_t rows, int64_t K, const scalar_t* c,
                      scalar_t* O, scalar_t* log_prob_norm, scalar_t* tmp) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const int64_t rv = rows / Vec::size() * Vec::size();
  const Vec half(scalar_t(0.5));
  for (int64_t k = 0; k < K; ++k) {
    scalar_t* m = M + k * T;
    const Vec ck(c[k]);
    int64_t r = 0;
    for (; r < rv; r += Vec::size()) (ck - half * Vec::loadu(m + r)).store(m + r);
    for (; r < rows; ++r) m[r] = c[k] - scalar_t(0.5) * m[r];
  }
  if (log_prob_norm == nullptr) {
    transpose_into(M, T, rows, K, O);
    return;
  }
  scalar_t* mx = tmp;       // per point: max over k, then the logsumexp
  scalar_t* sum = tmp + T;  // per point: sum of exp
  std::copy(M, M + rows, mx);
  for (int64_t k = 1; k < K; ++k) {
    const scalar_t* m = M + k * T;
    int64_t r = 0;
    for (; r < rv; r += Vec::size()) at::vec::maximum(Vec::loadu(mx + r), Vec::loadu(m + r)).store(mx + r);
    for (; r < rows; ++r) mx[r] = std::isnan(m[r]) ? m[r] : std::max(mx[r], m[r]);
  }
  // As torch.logsumexp: an infinite max is not subtracted (all -inf rows give -inf, not nan).
  for (int64_t r = 0; r < rows; ++r) {
    if (std::isinf(mx[r])) mx[r] = 0;
  }
  const bool resp = O == nullptr;
  std::fill(sum, sum + rows, scalar_t(0));
  for (int64_t k = 0; k < K; ++k) {
    scalar_t* m = M + k * T;
    int64_t r = 0;
    for (; r < rv; r += Vec::size()) {
      const Vec e = exp_nonpositive<scalar_t>(Vec::loadu(m + r) - Vec::loadu(mx + r));
      if (resp) e.store(m + r);
      (Vec::loadu(sum + r) + e).store(sum + r);
    }
    for (; r < rows; ++r) {
      const scalar_t e = std::exp(m[r] - mx[r]);
      if (resp) m[r] = e;
      sum[r] += e;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    log_prob_norm[r] = std::log(sum[r]) + mx[r];
    mx[r] = resp ? scalar_t(1) / sum[r] : log_prob_norm[r];
  }
  for (int64_t k = 0; k < K; ++k) {
    scalar_t* m = M + k * T;
    int64_t r = 0;
    if (resp) {
      for (; r < rv; r += Vec::size()) (Vec::loadu(m + r) * Vec::loadu(mx + r)).store(m + r);
      for (; r < rows; ++r) m[r] *= mx[r];
    } else {
      for (; r < rv; r += Vec::size()) (Vec::loadu(m + r) - Vec::loadu(mx + r)).store(m + r);
      for (; r < rows; ++r) m[r] -= mx[r];
    }
  }
  if (!resp) transpose_into(M, T, rows, K, O);
}

// M[k * T + r] = |x_r P_k - b_k|^2 for the points of a tile staged as XT [D, T] (zero-padded
// to T, a multiple of 16), 16 points per register block; W[k * w_stride + e * D + d] = P_k[d][e]
// (w_stride 0: one P for all components). With `upper` the sum over d stops at e.
template <typename scalar_t>
void direct_maha(const scalar_t* XT, int64_t T, int64_t rows, int64_t D, int64_t K, const scalar_t* W,
                 int64_t w_stride, const scalar_t* b, bool upper, scalar_t* M) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int NV = 16 / Vec::size();
  for (int64_t k = 0; k < K; ++k) {
    const scalar_t* Wk = W + k * w_stride;
    const scalar_t* bk = b + k * D;
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
      Vec acc[NV];
      for (int v = 0; v < NV; ++v) acc[v] = Vec(scalar_t(0));
      for (int64_t e = 0; e < D; ++e) {
        Vec y[NV];
        const Vec nb(-bk[e]);
        for (int v = 0; v < NV; ++v) y[v] = nb;
        const scalar_t* we = Wk + e * D;
        const int64_t lim = upper ? e + 1 : D;
        for (int64_t d = 0; d < lim; ++d) {
          const Vec w(we[d]);
          const scalar_t* xd = XT + d * T + r0;
          for (int v = 0; v < NV; ++v) y[v] = at::vec::fmadd(w, Vec::loadu(xd + v * Vec::size()), y[v]);
        }
        for (int v = 0; v < NV; ++v) acc[v] = at::vec::fmadd(y[v], y[v], acc[v]);
      }
      for (int v = 0; v < NV; ++v) acc[v].store(M + k * T + r0 + v * Vec::size());
    }
  }
}

// What a pass over the tiles produces.
enum class Mode {
  kLogProb,  // out [N, K] = weighted log-densities
  kEStep,    // out [N, K] = log responsibilities, log_prob_norm [N]
  kStats,    // per-thread sums of the EM sufficient statistics (below), nothing per point
};

// Sufficient statistics of the EM M-step, for gaussian_em_stats: with z = x - shift and
// r = exp(log_resp), row k of the [K, C] statistics is sum_n r_nk [1 | z_n | moments(z_n)],
// where moments are z_i z_j for i <= j in row-major upper-triangle order (full), z_d^2 (diag),
// |z|^2 (spherical) or nothing (tied). Each tile forms these C features with its points in
// vector lanes, F^T [C, T], and one GEMM R [K, T] @ F [T, C] adds the tile's share: the
// responsibilities never leave the cache and no N x K or N x C array is written.
// acc_t is the dtype of the features and the GEMM (float64 for float32 data whose second
// moments would lose too much to cancellation); the tile's sums go to float64 per-thread slots.
int64_t stats_moments(CovType type, int64_t D) {
  switch (type) {
    case CovType::kFull: return D * (D + 1) / 2;
    case CovType::kTied: return 0;
    case CovType::kDiag: return D;
    case CovType::kSpherical: return 1;
  }
  return 0;
}

struct StatsOut {
  double* slots;      // [threads, K * C + 1]: statistics, then the sum of log p(x_n)
  int64_t threads;    // rows of slots
  int64_t C;          // 1 + D + moments
  const void* shift;  // [D] in acc_t
};

template <typename acc_t, typename scalar_t>
void build_features(const scalar_t* X, int64_t rows, int64_t T, int64_t D, const acc_t* shift,
                    CovType type, acc_t* F) {
  using Vec = at::vec::Vectorized<acc_t>;
  std::fill(F, F + T, acc_t(1));
  acc_t* Z = F + T;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < D; ++d) Z[d * T + r] = static_cast<acc_t>(X[r * D + d]) - shift[d];
  for (int64_t d = 0; d < D; ++d) std::fill(Z + d * T + rows, Z + (d + 1) * T, acc_t(0));
  acc_t* out = Z + D * T;  // T is a multiple of 16: whole vectors only
  switch (type) {
    case CovType::kFull:
      for (int64_t i = 0; i < D; ++i) {
        const acc_t* zi = Z + i * T;
        for (int64_t j = i; j < D; ++j, out += T) {
          const acc_t* zj = Z + j * T;
          for (int64_t r = 0; r < T; r += Vec::size()) (Vec::loadu(zi + r) * Vec::loadu(zj + r)).store(out + r);
        }
      }
      break;
    case CovType::kDiag:
      for (int64_t i = 0; i < D; ++i, out += T) {
        const acc_t* zi = Z + i * T;
        for (int64_t r = 0; r < T; r += Vec::size()) {
          const Vec z = Vec::loadu(zi + r);
          (z * z).store(out + r);
        }
      }
      break;
    case CovType::kSpherical:
      std::fill(out, out + T, acc_t(0));
      for (int64_t i = 0; i < D; ++i) {
        const acc_t* zi = Z + i * T;
        for (int64_t r = 0; r < T; r += Vec::size()) {
          const Vec z = Vec::loadu(zi + r);
          at::vec::fmadd(z, z, Vec::loadu(out + r)).store(out + r);
        }
      }
      break;
    case CovType::kTied: break;
  }
}

// Adds one tile's statistics to a float64 slot. `resp` holds the tile's responsibilities, in
// column form resp[k * T + r] (full/tied) or row form resp[r * K + k] (diag/spherical). `acc` is
// acc_t scratch of (C + K) * T + K * C elements.
template <typename scalar_t, typename acc_t>
void accumulate_tile_stats(const scalar_t* resp, bool column_form, int64_t T, int64_t rows, int64_t K,
                           int64_t D, CovType type, const scalar_t* X, const scalar_t* lpn,
                           const StatsOut& so, double* slot, acc_t* acc) {
  const int64_t C = so.C;
  acc_t* F = acc;               // [C, T]
  acc_t* R = F + C * T;         // [K, T]: the responsibilities in acc_t, column form
  acc_t* G = R + K * T;         // [K, C]: the tile's statistics
  build_features<acc_t>(X, rows, T, D, static_cast<const acc_t*>(so.shift), type, F);
  const acc_t* Rk = R;
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    if (column_form) Rk = resp;
  }
  if (Rk == R) {  // convert and/or transpose: a plain [K, rows] operand is MKL's fastest layout
    for (int64_t k = 0; k < K; ++k)
      for (int64_t r = 0; r < rows; ++r)
        R[k * T + r] = static_cast<acc_t>(column_form ? resp[k * T + r] : resp[r * K + k]);
  }
  // G[K, C] = R [K, rows] @ F^T
  aigc_engine::gemm_rowmajor<acc_t>(K, C, rows, Rk, T, F, T, G, C, /*trans_b=*/true);
  for (int64_t i = 0; i < K * C; ++i) slot[i] += G[i];
  double ll = 0;
  for (int64_t r = 0; r < rows; ++r) ll += lpn[r];
  slot[K * C] += ll;
}

template <typename scalar_t, typename acc_t = scalar_t>
void run_tiles(const Prepared& p, const scalar_t* x, Mode mode, scalar_t* out,
               scalar_t* log_prob_norm, const StatsOut* so = nullptr) {
  const int64_t N = p.N, K = p.K, D = p.D, T = p.tile;
  const int64_t n_tiles = (N + T - 1) / T;
  const scalar_t* W = p.W.data_ptr<scalar_t>();
  const scalar_t* b = p.b.defined() ? p.b.data_ptr<scalar_t>() : nullptr;
  const scalar_t* c = p.c.data_ptr<scalar_t>();
  const bool estep = mode != Mode::kLogProb;
  const bool stats = mode == Mode::kStats;
  const int64_t C = stats ? so->C : 0;

  // At least ~2 MFLOP per task, so that small inputs do not pay for waking a second thread.
  const int64_t flops_per_tile = T * K * ((p.type == CovType::kFull || p.type == CovType::kTied ? D * D + D : 2 * D + 1) + C) * 2;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 21) / std::max<int64_t>(flops_per_tile, 1));
  at::parallel_for(0, n_tiles, grain, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> scratch;
    switch (p.type) {
      case CovType::kFull: scratch.resize(T * ((p.direct ? D : K * D) + K + 2)); break;
      case CovType::kTied: scratch.resize(T * (D + K + 2)); break;
      case CovType::kDiag: scratch.resize(T * (2 * D + 1)); break;
      case CovType::kSpherical: scratch.resize(T * (D + 2)); break;
    }
    std::vector<scalar_t> rowform;   // stats, diag/spherical: the tile's [T, K] block
    std::vector<scalar_t> tile_lpn;  // stats: the tile's log_prob_norm
    std::vector<acc_t> acc;          // stats: features, responsibilities, tile sums
    double* slot = nullptr;
    if (stats) {
      rowform.resize(T * K);
      tile_lpn.resize(T);
      acc.resize((C + K) * T + K * C);
      const int64_t t = at::get_thread_num();
      TORCH_INTERNAL_ASSERT(t < so->threads, "thread ", t, " beyond ", so->threads, " slots");
      slot = so->slots + t * (K * C + 1);
    }
    scalar_t* S = scratch.data();
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t r0 = tile * T;
      const int64_t rows = std::min(T, N - r0);
      const scalar_t* X = x + r0 * D;
      scalar_t* O = stats ? nullptr : out + r0 * K;
      scalar_t* lpn = stats ? tile_lpn.data() : (estep ? log_prob_norm + r0 : nullptr);
      switch (p.type) {
        case CovType::kFull:
        case CovType::kTied: {
          const bool full = p.type == CovType::kFull;
          const int64_t rowsY = full ? K * D : D;
          scalar_t* M;  // [K, T]
          if (p.direct) {
            scalar_t* XT = S;  // [D, T], zero beyond the tile's rows
            M = S + D * T;
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t d = 0; d < D; ++d) XT[d * T + r] = X[r * D + d];
            for (int64_t d = 0; d < D; ++d) std::fill(XT + d * T + rows, XT + (d + 1) * T, scalar_t(0));
            direct_maha(XT, T, rows, D, K, W, full ? D * D : 0, b, p.upper, M);
          } else {
            M = S + rowsY * T;
            aigc_engine::gemm_rowmajor<scalar_t>(rowsY, rows, D, W, D, X, D, S, T, /*trans_b=*/true);
            for (int64_t k = 0; k < K; ++k) {
              column_squared_distances(full ? S + k * D * T : S, T, b + k * D, D, rows, M + k * T);
            }
          }
          finalize_columns(M, T, rows, K, c, O, lpn, M + K * T);
          if (stats) accumulate_tile_stats<scalar_t, acc_t>(M, true, T, rows, K, D, p.type, X, lpn, *so, slot, acc.data());
          break;
        }
        case CovType::kDiag:
        case CovType::kSpherical: {
          const bool diag = p.type == CovType::kDiag;
          const int64_t A = diag ? 2 * D + 1 : D + 2;
          for (int64_t r = 0; r < rows; ++r) {
            const scalar_t* xr = X + r * D;
            scalar_t* a = S + r * A;
            scalar_t sq = 0;
            for (int64_t d = 0; d < D; ++d) {
              a[d] = xr[d];
              const scalar_t x2 = xr[d] * xr[d];
              if (diag) a[D + d] = x2;
              sq += x2;
            }
            if (diag) {
              a[2 * D] = 1;
            } else {
              a[D] = sq;
              a[D + 1] = 1;
            }
          }
          scalar_t* L = stats ? rowform.data() : O;
          aigc_engine::gemm_rowmajor<scalar_t>(rows, K, A, S, A, W, K, L, K);
          for (int64_t r = 0; r < rows; ++r) {
            const scalar_t lse = finalize_row(L + r * K, c, K, estep, stats);
            if (estep) lpn[r] = lse;
          }
          if (stats) accumulate_tile_stats<scalar_t, acc_t>(L, false, T, rows, K, D, p.type, X, lpn, *so, slot, acc.data());
          break;
        }
      }
    }
  });
}

// The checks every CPU entry point makes; returns the parsed covariance type.
CovType check_cpu_call(const Tensor& x, const Tensor& means, const Tensor& prec,
                       c10::string_view covariance_type, const c10::optional<Tensor>& log_weights) {
  const CovType type = aigc_engine::parse_covariance_type(std::string(covariance_type));
  aigc_engine::check_gaussian_shapes(x, means, prec, type, log_weights);
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                    "x must be float32 or float64 on CPU, got ", x.scalar_type());
  return type;
}

Tensor gaussian_log_prob_cpu(const Tensor& x, const Tensor& means, const Tensor& prec,
                             c10::string_view covariance_type,
                             const c10::optional<Tensor>& log_weights) {
  const CovType type = check_cpu_call(x, means, prec, covariance_type, log_weights);
  Tensor xc = x.contiguous();
  Prepared p = prepare(xc, means, prec, type, log_weights);
  Tensor out = at::empty({p.N, p.K}, xc.options());
  if (p.N == 0 || p.K == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "gaussian_log_prob_cpu", [&] {
    run_tiles<scalar_t>(p, xc.data_ptr<scalar_t>(), Mode::kLogProb, out.data_ptr<scalar_t>(), nullptr);
  });
  return out;
}

std::tuple<Tensor, Tensor> gaussian_estep_cpu(const Tensor& x, const Tensor& means,
                                              const Tensor& prec, c10::string_view covariance_type,
                                              const Tensor& log_weights) {
  c10::optional<Tensor> lw(log_weights);
  const CovType type = check_cpu_call(x, means, prec, covariance_type, lw);
  Tensor xc = x.contiguous();
  Prepared p = prepare(xc, means, prec, type, lw);
  Tensor log_resp = at::empty({p.N, p.K}, xc.options());
  Tensor log_prob_norm = at::empty({p.N}, xc.options());
  if (p.N == 0) return {log_prob_norm, log_resp};
  if (p.K == 0) return {log_prob_norm.fill_(-std::numeric_limits<double>::infinity()), log_resp};
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "gaussian_estep_cpu", [&] {
    run_tiles<scalar_t>(p, xc.data_ptr<scalar_t>(), Mode::kEStep, log_resp.data_ptr<scalar_t>(),
                        log_prob_norm.data_ptr<scalar_t>());
  });
  return {log_prob_norm, log_resp};
}

std::tuple<Tensor, Tensor> gaussian_em_stats_cpu(const Tensor& x, const Tensor& means,
                                                 const Tensor& prec, c10::string_view covariance_type,
                                                 const Tensor& log_weights, const Tensor& shift,
                                                 bool double_moments) {
  c10::optional<Tensor> lw(log_weights);
  const CovType type = check_cpu_call(x, means, prec, covariance_type, lw);
  TORCH_CHECK_VALUE(shift.dim() == 1 && shift.size(0) == x.size(1) && shift.device() == x.device(),
                    "shift must be [D] on the device of x, got ", shift.sizes());
  Tensor xc = x.contiguous();
  const int64_t K = means.size(0), C = 1 + x.size(1) + stats_moments(type, x.size(1));
  const bool dbl = double_moments || xc.scalar_type() == at::kDouble;
  // per point: features and responsibilities in acc_t (twice a float's size when float32 data
  // forms float64 products), the row-form block and log_prob_norm in scalar_t
  const int64_t acc_scale = dbl && xc.scalar_type() == at::kFloat ? 2 : 1;
  Prepared p = prepare(xc, means, prec, type, lw, (C + K) * acc_scale + K + 1);
  const int64_t threads = at::get_num_threads();
  Tensor slots = at::zeros({threads, K * C + 1}, xc.options().dtype(at::kDouble));
  if (p.N > 0 && K > 0) {
    Tensor shift_acc = shift.to(dbl ? at::kDouble : xc.scalar_type()).contiguous();
    StatsOut so{slots.data_ptr<double>(), threads, C, shift_acc.data_ptr()};
    if (xc.scalar_type() == at::kDouble) {
      run_tiles<double, double>(p, xc.data_ptr<double>(), Mode::kStats, nullptr, nullptr, &so);
    } else if (dbl) {
      run_tiles<float, double>(p, xc.data_ptr<float>(), Mode::kStats, nullptr, nullptr, &so);
    } else {
      run_tiles<float, float>(p, xc.data_ptr<float>(), Mode::kStats, nullptr, nullptr, &so);
    }
  }
  // slots summed in a fixed order; two separate outputs (the schema says they do not alias)
  Tensor stats = slots.narrow(1, 0, K * C).sum(0).view({K, C});
  Tensor ll = slots.select(1, K * C).sum();
  if (p.N > 0 && K == 0) ll.fill_(-std::numeric_limits<double>::infinity());  // as gaussian_estep
  return {stats, ll};
}

TORCH_LIBRARY_IMPL(aigc_engine, CPU, m) {
  m.impl("gaussian_log_prob", &gaussian_log_prob_cpu);
  m.impl("gaussian_estep", &gaussian_estep_cpu);
  m.impl("gaussian_em_stats", &gaussian_em_stats_cpu);
}

}  // namespace
