// Single-threaded row-major GEMM for the CPU kernels. Each parallel_for task multiplies its own
// tile of points, so the BLAS call must not spawn threads of its own: inside an OpenMP parallel
// region MKL/OpenBLAS run on the calling thread. The Fortran symbols are exported by
// libtorch_cpu on x86 builds (MKL); they are weak here so that a torch without them still loads
// the extension and falls back to at::mm_out.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc) __attribute__((weak));
}

namespace aigc_engine {

// C[m, n] = A[m, k] @ B[k, n], all row-major with leading dimensions lda, ldb, ldc. A row-major
// product is the column-major product C^T = B^T A^T, hence the swapped operands.
// With trans_b, B points at B^T stored row-major as [n, k] (so C = A @ B^T).
template <typename scalar_t>
inline void gemm_rowmajor(int64_t m, int64_t n, int64_t k, const scalar_t* A, int64_t lda,
                          const scalar_t* B, int64_t ldb, scalar_t* C, int64_t ldc,
                          bool trans_b = false) {
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb), ildc = static_cast<int>(ldc);
  const scalar_t one = 1, zero = 0;
  const char no = 'N', tb = trans_b ? 'T' : 'N';
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (sgemm_ != nullptr) {
      sgemm_(&tb, &no, &in, &im, &ik, &one, B, &ildb, A, &ilda, &zero, C, &ildc);
      return;
    }
  } else {
    if (dgemm_ != nullptr) {
      dgemm_(&tb, &no, &in, &im, &ik, &one, B, &ildb, A, &ilda, &zero, C, &ildc);
      return;
    }
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  at::Tensor a = at::from_blob(const_cast<scalar_t*>(A), {m, k}, {lda, 1}, opts);
  at::Tensor b = trans_b ? at::from_blob(const_cast<scalar_t*>(B), {n, k}, {ldb, 1}, opts).t()
                         : at::from_blob(const_cast<scalar_t*>(B), {k, n}, {ldb, 1}, opts);
  at::Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, opts);
  at::mm_out(c, a, b);
}

}  // namespace aigc_engine
