// CUDA kernels of gaussian_log_prob and the fused EM E-step.
//
// One thread per point, a block per tile of points. The tile's points are staged in shared memory
// transposed (xs[d][t], so that the threads of a warp read consecutive banks) and converted to
// the accumulation type (float for half/bfloat16/float, double for double). The block then walks
// the components: the component's precision factor (full: P_k [D, D] and mu_k P_k; tied: P once,
// mu_k P per component; diag: mu_k and p_k; spherical: mu_k and p_k) is loaded into shared
// memory, every thread reads it as a broadcast and writes its log-density. For the E-step each
// thread then re-reads its own row (still in L1/L2), takes the logsumexp and normalises it, so the
// responsibilities cost no extra pass over N x K in global memory. Full/tied compute
// y = x P - mu P (mu_k P_k precomputed once per call, then one fma chain per output
// coordinate), which equals (x - mu) P up to rounding; diag/spherical use the difference form
// (x - mu) directly. None of them expands |y|^2 into |xP|^2 - 2 xP.muP + |muP|^2, so there is no
// catastrophic cancellation of squared norms.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "gaussian_common.h"

namespace {

using aigc_engine::CovType;
using at::Tensor;

template <typename scalar_t, typename acc_t>
__global__ void gaussian_tile_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ A,
                                     const acc_t* __restrict__ B, const acc_t* __restrict__ c,
                                     scalar_t* __restrict__ out, scalar_t* __restrict__ log_prob_norm,
                                     int64_t N, int D, int K, int cov) {
  // shared layout: xs [D][blockDim.x] | params of one component (size depends on cov)
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* xs = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* ps = xs + static_cast<int64_t>(D) * blockDim.x;
  const int t = threadIdx.x;
  const int T = blockDim.x;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * T;
  const int rows = static_cast<int>(min(static_cast<int64_t>(T), N - n0));

  // stage the tile: coalesced reads of x rows, transposed writes
  for (int i = t; i < rows * D; i += T) {
    const int r = i / D, d = i - r * D;
    xs[d * T + r] = static_cast<acc_t>(x[(n0 + r) * D + d]);
  }
  const bool full = cov == static_cast<int>(CovType::kFull);
  const bool tied = cov == static_cast<int>(CovType::kTied);
  const bool diag = cov == static_cast<int>(CovType::kDiag);
  // tied: P [D, D] stays for every component, mu_k P goes after it
  if (tied) {
    for (int i = t; i < D * D; i += T) ps[i] = A[i];
  }
  const int64_t n = n0 + t;
  const bool active = t < rows;
  for (int k = 0; k < K; ++k) {
    __syncthreads();  // previous component done with ps (and, for k = 0, xs staged)
    if (full) {
      for (int i = t; i < D * D; i += T) ps[i] = A[static_cast<int64_t>(k) * D * D + i];
      for (int i = t; i < D; i += T) ps[D * D + i] = B[static_cast<int64_t>(k) * D + i];
    } else if (tied) {
      for (int i = t; i < D; i += T) ps[D * D + i] = B[static_cast<int64_t>(k) * D + i];
    } else {
      for (int i = t; i < D; i += T) ps[i] = B[static_cast<int64_t>(k) * D + i];  // mu_k
      if (diag) {
        for (int i = t; i < D; i += T) ps[D + i] = A[static_cast<int64_t>(k) * D + i];  // p_k
      } else if (t == 0) {
        ps[D] = A[k];
      }
    }
    __syncthreads();
    if (!active) continue;
    acc_t maha = 0;
    if (full || tied) {
      const acc_t* P = ps;
      const acc_t* b = ps + D * D;
      for (int e = 0; e < D; ++e) {
        acc_t y = -b[e];
        for (int d = 0; d < D; ++d) y = fma(xs[d * T + t], P[d * D + e], y);
        maha = fma(y, y, maha);
      }
    } else if (diag) {
      for (int d = 0; d < D; ++d) {
        const acc_t y = (xs[d * T + t] - ps[d]) * ps[D + d];
        maha = fma(y, y, maha);
      }
    } else {
      for (int d = 0; d < D; ++d) {
        const acc_t y = xs[d * T + t] - ps[d];
        maha = fma(y, y, maha);
      }
      maha *= ps[D] * ps[D];
    }
    out[n * K + k] = static_cast<scalar_t>(c[k] - acc_t(0.5) * maha);
  }
  if (log_prob_norm == nullptr || !active) return;
  // E-step: normalise this thread's row. The row is re-read as stored (scalar_t) so that
  // log_resp = stored weighted - lse exactly.
  scalar_t* row = out + n * K;
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  for (int k = 0; k < K; ++k) m = max(m, static_cast<acc_t>(row[k]));
  const acc_t shift = isinf(m) ? acc_t(0) : m;  // as torch.logsumexp
  acc_t s = 0;
  for (int k = 0; k < K; ++k) s += exp(static_cast<acc_t>(row[k]) - shift);
  const acc_t lse = log(s) + shift;
  for (int k = 0; k < K; ++k) row[k] = static_cast<scalar_t>(static_cast<acc_t>(row[k]) - lse);
  log_prob_norm[n] = static_cast<scalar_t>(lse);
}

struct Launch {
  int threads;
  size_t smem;
};

// Largest block (128, 64 or 32 threads) whose shared memory fits; opts into more than 48 KiB
// where the device allows.
template <typename scalar_t, typename acc_t>
Launch pick_launch(int D, CovType type) {
  const size_t params = (type == CovType::kFull || type == CovType::kTied)
                            ? static_cast<size_t>(D) * D + D
                            : 2 * static_cast<size_t>(D) + 1;
  const auto* prop = at::cuda::getCurrentDeviceProperties();
  const size_t limit = prop->sharedMemPerBlockOptin;
  for (int threads : {128, 64, 32}) {
    const size_t smem = (static_cast<size_t>(D) * threads + params) * sizeof(acc_t);
    if (smem <= limit) {
      if (smem > 48 * 1024) {
        C10_CUDA_CHECK(cudaFuncSetAttribute(gaussian_tile_kernel<scalar_t, acc_t>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
      }
      return {threads, smem};
    }
  }
  TORCH_CHECK(false, "gaussian_log_prob on CUDA: D = ", D,
              " needs more shared memory than the device has; use the CPU or the reference");
}

void run(const Tensor& x, const Tensor& means, const Tensor& prec, CovType type,
         const c10::optional<Tensor>& log_weights, Tensor& out, Tensor* log_prob_norm) {
  const int64_t N = x.size(0);
  const int D = static_cast<int>(x.size(1));
  const int K = static_cast<int>(means.size(0));
  if (N == 0 || K == 0) return;
  const at::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gaussian_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
    Tensor mu = means.to(acc_dtype);
    Tensor P = prec.to(acc_dtype);
    Tensor c = aigc_engine::gaussian_constants(P, type, K, D, log_weights, acc_dtype);
    Tensor A, B;
    switch (type) {
      case CovType::kFull:
        A = P.contiguous();
        B = at::einsum("kd,kde->ke", {mu, P}).contiguous();
        break;
      case CovType::kTied:
        A = P.contiguous();
        B = at::matmul(mu, P).contiguous();
        break;
      default:
        A = P.contiguous();
        B = mu.contiguous();
        break;
    }
    const Launch l = pick_launch<scalar_t, acc_t>(D, type);
    const int64_t blocks = (N + l.threads - 1) / l.threads;
    TORCH_CHECK(blocks < (int64_t{1} << 31), "gaussian_log_prob on CUDA: too many points");
    gaussian_tile_kernel<scalar_t, acc_t>
        <<<static_cast<unsigned>(blocks), l.threads, l.smem, at::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), A.data_ptr<acc_t>(), B.data_ptr<acc_t>(), c.data_ptr<acc_t>(),
            out.data_ptr<scalar_t>(),
            log_prob_norm != nullptr ? log_prob_norm->data_ptr<scalar_t>() : nullptr, N, D, K,
            static_cast<int>(type));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

Tensor gaussian_log_prob_cuda(const Tensor& x, const Tensor& means, const Tensor& prec,
                              c10::string_view covariance_type,
                              const c10::optional<Tensor>& log_weights) {
  const CovType type = aigc_engine::parse_covariance_type(std::string(covariance_type));
  aigc_engine::check_gaussian_shapes(x, means, prec, type, log_weights);
  Tensor xc = x.contiguous();
  Tensor out = at::empty({x.size(0), means.size(0)}, xc.options());
  run(xc, means, prec, type, log_weights, out, nullptr);
  return out;
}

std::tuple<Tensor, Tensor> gaussian_estep_cuda(const Tensor& x, const Tensor& means,
                                               const Tensor& prec, c10::string_view covariance_type,
                                               const Tensor& log_weights) {
  const CovType type = aigc_engine::parse_covariance_type(std::string(covariance_type));
  c10::optional<Tensor> lw(log_weights);
  aigc_engine::check_gaussian_shapes(x, means, prec, type, lw);
  Tensor xc = x.contiguous();
  Tensor log_resp = at::empty({x.size(0), means.size(0)}, xc.options());
  Tensor log_prob_norm = at::empty({x.size(0)}, xc.options());
  if (means.size(0) == 0) {
    log_prob_norm.fill_(-std::numeric_limits<double>::infinity());
    return {log_prob_norm, log_resp};
  }
  run(xc, means, prec, type, lw, log_resp, &log_prob_norm);
  return {log_prob_norm, log_resp};
}

TORCH_LIBRARY_IMPL(aigc_engine, CUDA, m) {
  m.impl("gaussian_log_prob", &gaussian_log_prob_cuda);
  m.impl("gaussian_estep", &gaussian_estep_cuda);
}

}  // namespace
