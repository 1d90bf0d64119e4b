// CPU kernels of the fused GAN losses: one pass over each side's logits computes the sum of the
// loss terms and (when asked) writes d mean / d logit, so autograd's backward is one multiply.
//
// Deterministic: the logits are cut into fixed chunks of kChunk elements whatever the thread
// count; each chunk sums in vector lanes of the accumulation type, the chunk sums are added in
// chunk order in double. softplus is evaluated as max(z, 0) + log1p(exp(-|z|)) and sigmoid from
// the same exp(-|z|), so |x| = 1e4 gives the exact loss and gradient (no overflow, no 0 * inf).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>
#include <vector>


#include "cpu/vec_math.h"
#include "gan_loss_common.h"

namespace {

using aigc_engine::GanTerm;
using at::Tensor;

constexpr int64_t kChunk = 1 << 14;
constexpr int64_t kMinTaskElems = 1 << 18;

template <typename T>
inline void term_scalar(GanTerm term, T x, T& loss, T& grad) {
  switch (term) {
    case GanTerm::kSoftplusNeg:
    case GanTerm::kSoftplusPos: {
      const T z = term == GanTerm::kSoftplusNeg ? -x : x;
      const T e = std::exp(-std::abs(z));
      loss = std::max(z, T(0)) + std::log1p(e);
      const T sig = z >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);  // sigmoid(z)
      grad = term == GanTerm::kSoftplusNeg ? -sig : sig;
      break;
    }
    case GanTerm::kHingeNeg: loss = std::max(T(1) - x, T(0)); grad = T(1) - x > 0 ? T(-1) : T(0); break;
    case GanTerm::kHingePos: loss = std::max(T(1) + x, T(0)); grad = T(1) + x > 0 ? T(1) : T(0); break;
    case GanTerm::kSquareOne: grad = x - T(1); loss = T(0.5) * grad * grad; break;
    case GanTerm::kSquareZero: grad = x; loss = T(0.5) * x * x; break;
    case GanTerm::kLinearNeg: loss = -x; grad = T(-1); break;
    case GanTerm::kLinearPos: loss = x; grad = T(1); break;
  }
}


template <typename T>
inline void term_vec(GanTerm term, const at::vec::Vectorized<T>& x, at::vec::Vectorized<T>& loss,
                     at::vec::Vectorized<T>& grad) {
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(T(0)), one(T(1)), half(T(0.5));
  switch (term) {
    case GanTerm::kSoftplusNeg:
    case GanTerm::kSoftplusPos: {
      const Vec z = term == GanTerm::kSoftplusNeg ? zero - x : x;
#if defined(CPU_CAPABILITY_AVX2)
      if constexpr (std::is_same_v<T, float>) {
        __m256 sp, sig;
        aigc_engine::softplus_sigmoid(z, sp, sig);
        loss = Vec(sp);
        grad = term == GanTerm::kSoftplusNeg ? zero - Vec(sig) : Vec(sig);
        break;
      }
#endif
      const Vec e = (zero - z.abs()).exp();
      loss = at::vec::maximum(z, zero) + e.log1p();
      const Vec inv = one / (one + e);
      const Vec sig = Vec::blendv(e * inv, inv, z >= zero);  // sigmoid(z)
      grad = term == GanTerm::kSoftplusNeg ? zero - sig : sig;
      break;
    }
    case GanTerm::kHingeNeg: {
      const Vec m = one - x;
      loss = at::vec::maximum(m, zero);
      grad = Vec::blendv(zero, zero - one, m > zero);
      break;
    }
    case GanTerm::kHingePos: {
      const Vec m = one + x;
      loss = at::vec::maximum(m, zero);
      grad = Vec::blendv(zero, one, m > zero);
      break;
    }
    case GanTerm::kSquareOne: grad = x - one; loss = half * grad * grad; break;
    case GanTerm::kSquareZero: grad = x; loss = half * x * x; break;
    case GanTerm::kLinearNeg: loss = zero - x; grad = zero - one; break;
    case GanTerm::kLinearPos: loss = x; grad = one; break;
  }
}

// Sum of the term over x (in double) and, when grad != nullptr, grad[i] = term'(x[i]) / n.
template <typename T>
double side_sum(GanTerm term, const T* x, T* grad, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(n_chunks, 0.0);
  const T inv_n = T(1) / static_cast<T>(n);
  // Each task gets at least kMinTaskElems: waking a second thread for less costs more than it
  // saves (and on a busy machine a sleeping worker can take a scheduler slice to wake).
  const int64_t grain = std::max<int64_t>(1, kMinTaskElems / kChunk);
  at::parallel_for(0, n_chunks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t lo = chunk * kChunk, hi = std::min(n, lo + kChunk);
      Vec acc(T(0)), loss, g;
      const Vec vinv(inv_n);
      int64_t i = lo;
      for (; i + Vec::size() <= hi; i += Vec::size()) {
        term_vec<T>(term, Vec::loadu(x + i), loss, g);
        acc = acc + loss;
        if (grad != nullptr) (g * vinv).store(grad + i);
      }
      double s = at::vec::vec_reduce_all<T>([](Vec& u, Vec& v) { return u + v; }, acc);
      for (; i < hi; ++i) {
        T l = 0, gs = 0;
        term_scalar<T>(term, x[i], l, gs);
        s += l;
        if (grad != nullptr) grad[i] = gs * inv_n;
      }
      partial[chunk] = s;
    }
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

void check_logits(const Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                    " must be float32 or float64 on CPU, got ", t.scalar_type());
}

// loss_sum / n as a 0-d tensor and the gradient (empty unless compute_grad) of one side.
std::pair<double, Tensor> one_side(GanTerm term, const Tensor& logits, bool compute_grad) {
  Tensor x = logits.contiguous();
  const int64_t n = x.numel();
  Tensor grad = compute_grad ? at::empty_like(x) : at::empty({0}, x.options());
  if (n == 0) return {std::nan(""), grad};
  double sum = 0.0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gan_loss_cpu", [&] {
    sum = side_sum<scalar_t>(term, x.data_ptr<scalar_t>(),
                             compute_grad ? grad.data_ptr<scalar_t>() : nullptr, n);
  });
  return {sum / static_cast<double>(n), grad};
}

std::tuple<Tensor, Tensor, Tensor> gan_d_loss_cpu(const Tensor& real, const Tensor& fake,
                                                  c10::string_view kind, bool compute_grad) {
  const auto terms = aigc_engine::d_loss_terms(std::string(kind));
  check_logits(real, "real_logits");
  check_logits(fake, "fake_logits");
  TORCH_CHECK_VALUE(real.scalar_type() == fake.scalar_type(),
                    "real_logits and fake_logits must have the same dtype, got ",
                    real.scalar_type(), " and ", fake.scalar_type());
  auto [lr, gr] = one_side(terms.first, real, compute_grad);
  auto [lf, gf] = one_side(terms.second, fake, compute_grad);
  Tensor loss = at::scalar_tensor(lr + lf, real.options());
  return {loss, gr, gf};
}

std::tuple<Tensor, Tensor> gan_g_loss_cpu(const Tensor& fake, c10::string_view kind,
                                          bool compute_grad) {
  const GanTerm term = aigc_engine::g_loss_term(std::string(kind));
  check_logits(fake, "fake_logits");
  auto [lf, gf] = one_side(term, fake, compute_grad);
  return {at::scalar_tensor(lf, fake.options()), gf};
}

TORCH_LIBRARY_IMPL(aigc_engine, CPU, m) {
  m.impl("gan_d_loss", &gan_d_loss_cpu);
  m.impl("gan_g_loss", &gan_g_loss_cpu);
}

}  // namespace
