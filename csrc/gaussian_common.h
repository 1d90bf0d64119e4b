// Host-side pieces shared by the CPU and CUDA Gaussian kernels: the covariance-type names and
// the per-component constant c_k = -D/2 log(2 pi) + log det P_k (+ log w_k), computed with ATen
// so that it runs on whichever device the parameters live on.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string>

namespace aigc_engine {

enum class CovType { kFull, kTied, kDiag, kSpherical };

inline CovType parse_covariance_type(const std::string& name) {
  if (name == "full") return CovType::kFull;
  if (name == "tied") return CovType::kTied;
  if (name == "diag") return CovType::kDiag;
  if (name == "spherical") return CovType::kSpherical;
  TORCH_CHECK_VALUE(false, "covariance_type must be one of ('full', 'tied', 'diag', 'spherical'), got '",
                    name, "'");
}

inline void check_gaussian_shapes(const at::Tensor& x, const at::Tensor& means,
                                  const at::Tensor& prec, CovType type,
                                  const c10::optional<at::Tensor>& log_weights) {
  TORCH_CHECK_VALUE(x.dim() == 2, "x must be [N, D], got ", x.sizes());
  // the kernels read every input through raw pointers of x's device
  TORCH_CHECK_VALUE(means.device() == x.device(), "means must be on the device of x (", x.device(),
                    "), got ", means.device());
  TORCH_CHECK_VALUE(prec.device() == x.device(), "precisions_chol must be on the device of x (",
                    x.device(), "), got ", prec.device());
  TORCH_CHECK_VALUE(!log_weights.has_value() || log_weights->device() == x.device(),
                    "log_weights must be on the device of x (", x.device(), "), got ",
                    log_weights.has_value() ? log_weights->device() : x.device());
  TORCH_CHECK_VALUE(means.dim() == 2 && means.size(1) == x.size(1),
                    "means must be [K, D] with D = x.shape[1], got ", means.sizes());
  const int64_t K = means.size(0), D = x.size(1);
  switch (type) {
    case CovType::kFull:
      TORCH_CHECK_VALUE(prec.dim() == 3 && prec.size(0) == K && prec.size(1) == D && prec.size(2) == D,
                        "precisions_chol must be [K, D, D] for 'full', got ", prec.sizes());
      break;
    case CovType::kTied:
      TORCH_CHECK_VALUE(prec.dim() == 2 && prec.size(0) == D && prec.size(1) == D,
                        "precisions_chol must be [D, D] for 'tied', got ", prec.sizes());
      break;
    case CovType::kDiag:
      TORCH_CHECK_VALUE(prec.dim() == 2 && prec.size(0) == K && prec.size(1) == D,
                        "precisions_chol must be [K, D] for 'diag', got ", prec.sizes());
      break;
    case CovType::kSpherical:
      TORCH_CHECK_VALUE(prec.dim() == 1 && prec.size(0) == K,
                        "precisions_chol must be [K] for 'spherical', got ", prec.sizes());
      break;
  }
  if (log_weights.has_value()) {
    TORCH_CHECK_VALUE(log_weights->dim() == 1 && log_weights->size(0) == K,
                      "log_weights must be [K], got ", log_weights->sizes());
  }
}

// c_k = -D/2 log(2 pi) + log det P_k + log w_k, as a [K] tensor of `dtype`.
inline at::Tensor gaussian_constants(const at::Tensor& prec, CovType type, int64_t K, int64_t D,
                                     const c10::optional<at::Tensor>& log_weights,
                                     at::ScalarType dtype) {
  at::Tensor P = prec.to(dtype);
  at::Tensor log_det;
  switch (type) {
    case CovType::kFull: log_det = P.diagonal(0, -2, -1).log().sum(-1); break;
    case CovType::kTied: log_det = P.diagonal().log().sum().expand({K}); break;
    case CovType::kDiag: log_det = P.log().sum(-1); break;
    case CovType::kSpherical: log_det = P.log() * static_cast<double>(D); break;
  }
  at::Tensor c = log_det - 0.5 * static_cast<double>(D) * std::log(2.0 * M_PI);
  if (log_weights.has_value()) c = c + log_weights->to(dtype);
  return c.contiguous();
}

}  // namespace aigc_engine
