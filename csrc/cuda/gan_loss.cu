// CUDA kernels of the fused GAN losses.
//
// Stage 1 (one launch per side): a grid-stride loop with 16-byte vector loads and stores reads
// each logit once, writes term'(x) / n to the gradient and sums term(x) in the accumulation type
// (float for half/bfloat16/float, double for double); each block reduces its threads in a fixed
// tree (warp shuffles, then shared memory) and writes one partial sum (double).
// Stage 2 (one block): sums the partials of both sides in a fixed order and writes the loss.
// The grid size depends only on n, never on the device or timing, and no float atomics are used,
// so the result is bitwise reproducible. softplus/sigmoid as in the CPU kernel: stable for
// |x| = 1e4.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "gan_loss_common.h"

namespace {

using aigc_engine::GanTerm;
using at::Tensor;

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;

template <typename acc_t>
__device__ __forceinline__ void term(int kind, acc_t x, acc_t& loss, acc_t& grad) {
  switch (static_cast<GanTerm>(kind)) {
    case GanTerm::kSoftplusNeg:
    case GanTerm::kSoftplusPos: {
      const bool neg = static_cast<GanTerm>(kind) == GanTerm::kSoftplusNeg;
      const acc_t z = neg ? -x : x;
      const acc_t e = exp(-fabs(z));
      loss = fmax(z, acc_t(0)) + log1p(e);
      const acc_t inv = acc_t(1) / (acc_t(1) + e);
      const acc_t sig = z >= acc_t(0) ? inv : e * inv;  // sigmoid(z)
      grad = neg ? -sig : sig;
      break;
    }
    // not fmax, which returns 0 for a NaN x: NaN propagates as in F.relu and the CPU kernel
    case GanTerm::kHingeNeg: {
      const acc_t m = acc_t(1) - x;
      loss = m < acc_t(0) ? acc_t(0) : m;
      grad = m > acc_t(0) ? acc_t(-1) : acc_t(0);
      break;
    }
    case GanTerm::kHingePos: {
      const acc_t m = acc_t(1) + x;
      loss = m < acc_t(0) ? acc_t(0) : m;
      grad = m > acc_t(0) ? acc_t(1) : acc_t(0);
      break;
    }
    case GanTerm::kSquareOne: grad = x - acc_t(1); loss = acc_t(0.5) * grad * grad; break;
    case GanTerm::kSquareZero: grad = x; loss = acc_t(0.5) * x * x; break;
    case GanTerm::kLinearNeg: loss = -x; grad = acc_t(-1); break;
    case GanTerm::kLinearPos: loss = x; grad = acc_t(1); break;
  }
}

// Sum over the block in a fixed order; the result is valid in thread 0.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Pack {
  scalar_t v[VEC];
};

template <typename scalar_t, int VEC>
__global__ void side_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ grad, int64_t n,
                            int kind, double* __restrict__ partial) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t inv_n = acc_t(1) / static_cast<acc_t>(n);
  acc_t sum = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t n_vec = n / VEC;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_vec; i += stride) {
    const Pack<scalar_t, VEC> in = reinterpret_cast<const Pack<scalar_t, VEC>*>(x)[i];
    Pack<scalar_t, VEC> g;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      acc_t l, gj;
      term<acc_t>(kind, static_cast<acc_t>(in.v[j]), l, gj);
      sum += l;
      g.v[j] = static_cast<scalar_t>(gj * inv_n);
    }
    if (grad != nullptr) reinterpret_cast<Pack<scalar_t, VEC>*>(grad)[i] = g;
  }
  // the tail (< VEC elements) goes to the first threads of block 0
  if (blockIdx.x == 0 && threadIdx.x < n - n_vec * VEC) {
    const int64_t i = n_vec * VEC + threadIdx.x;
    acc_t l, gi;
    term<acc_t>(kind, static_cast<acc_t>(x[i]), l, gi);
    sum += l;
    if (grad != nullptr) grad[i] = static_cast<scalar_t>(gi * inv_n);
  }
  const double total = block_sum(static_cast<double>(sum));
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <typename scalar_t>
__global__ void finish_kernel(const double* __restrict__ partial_a, int blocks_a, int64_t n_a,
                              const double* __restrict__ partial_b, int blocks_b, int64_t n_b,
                              scalar_t* __restrict__ loss) {
  double a = 0, b = 0;
  for (int i = threadIdx.x; i < blocks_a; i += blockDim.x) a += partial_a[i];
  for (int i = threadIdx.x; i < blocks_b; i += blockDim.x) b += partial_b[i];
  a = block_sum(a);
  __syncthreads();  // block_sum's shared buffer is reused
  b = block_sum(b);
  if (threadIdx.x == 0) {
    double l = a / static_cast<double>(n_a);
    if (partial_b != nullptr) l += b / static_cast<double>(n_b);
    *loss = static_cast<scalar_t>(l);
  }
}

int blocks_for(int64_t n, int vec) {
  const int64_t work = (n / vec + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(work, kMaxBlocks)));
}

// Launches stage 1 for one side; returns the number of partials written.
template <typename scalar_t>
int launch_side(const Tensor& x, Tensor& grad, bool compute_grad, GanTerm kind, double* partial,
                cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  const int64_t n = x.numel();
  const scalar_t* xp = x.data_ptr<scalar_t>();
  scalar_t* gp = compute_grad ? grad.data_ptr<scalar_t>() : nullptr;
  const bool aligned = reinterpret_cast<std::uintptr_t>(xp) % 16 == 0 &&
                       (gp == nullptr || reinterpret_cast<std::uintptr_t>(gp) % 16 == 0);
  if (aligned) {
    const int blocks = blocks_for(n, kVec);
    side_kernel<scalar_t, kVec><<<blocks, kThreads, 0, stream>>>(xp, gp, n, static_cast<int>(kind), partial);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return blocks;
  }
  const int blocks = blocks_for(n, 1);
  side_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(xp, gp, n, static_cast<int>(kind), partial);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return blocks;
}

// loss (0-d), grads (empty unless compute_grad) of one or two sides.
std::tuple<Tensor, Tensor, Tensor> run(const Tensor& a_in, GanTerm ta, const Tensor* b_in,
                                       GanTerm tb, bool compute_grad) {
  const at::cuda::CUDAGuard guard(a_in.device());
  Tensor a = a_in.contiguous();
  Tensor b = b_in != nullptr ? b_in->contiguous() : Tensor();
  auto grad_of = [&](const Tensor& t) {
    return compute_grad ? at::empty_like(t) : at::empty({0}, t.options());
  };
  Tensor ga = grad_of(a), gb = b.defined() ? grad_of(b) : Tensor();
  Tensor loss = at::empty({}, a.options());
  Tensor partial = at::empty({2 * kMaxBlocks}, a.options().dtype(at::kDouble));
  double* pa = partial.data_ptr<double>();
  double* pb = pa + kMaxBlocks;
  // An empty side still leaves the other side's gradient to compute (term'(x) / n, as the CPU
  // kernel and the reference); the loss is then NaN (the mean over an empty side).
  const bool has_a = a.numel() > 0;
  const bool has_b = b.defined() && b.numel() > 0;
  const bool both = has_a && (!b.defined() || has_b);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "gan_loss_cuda", [&] {
    int blocks_a = 0, blocks_b = 0;
    if (has_a) blocks_a = launch_side<scalar_t>(a, ga, compute_grad, ta, pa, stream);
    if (has_b) blocks_b = launch_side<scalar_t>(b, gb, compute_grad, tb, pb, stream);
    if (both) {
      finish_kernel<scalar_t><<<1, kThreads, 0, stream>>>(pa, blocks_a, a.numel(),
                                                           b.defined() ? pb : nullptr, blocks_b,
                                                           b.defined() ? b.numel() : 1,
                                                           loss.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  if (!both) loss.fill_(std::nan(""));
  return {loss, ga, gb};
}

std::tuple<Tensor, Tensor, Tensor> gan_d_loss_cuda(const Tensor& real, const Tensor& fake,
                                                   c10::string_view kind, bool compute_grad) {
  const auto terms = aigc_engine::d_loss_terms(std::string(kind));
  TORCH_CHECK_VALUE(real.scalar_type() == fake.scalar_type(),
                    "real_logits and fake_logits must have the same dtype, got ",
                    real.scalar_type(), " and ", fake.scalar_type());
  TORCH_CHECK_VALUE(real.device() == fake.device(), "real_logits and fake_logits must be on one device");
  return run(real, terms.first, &fake, terms.second, compute_grad);
}

std::tuple<Tensor, Tensor> gan_g_loss_cuda(const Tensor& fake, c10::string_view kind,
                                           bool compute_grad) {
  const GanTerm term = aigc_engine::g_loss_term(std::string(kind));
  auto [loss, grad, unused] = run(fake, term, nullptr, term, compute_grad);
  return {loss, grad};
}

TORCH_LIBRARY_IMPL(aigc_engine, CUDA, m) {
  m.impl("gan_d_loss", &gan_d_loss_cuda);
  m.impl("gan_g_loss", &gan_g_loss_cuda);
}

}  // namespace
