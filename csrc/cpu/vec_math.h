// Vectorised float32 maths shared by the CPU kernels (AVX2 builds only; other builds use
// at::vec's Sleef-backed functions).
#pragma once

#if defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>

namespace aigc_engine {

// float32 softplus/sigmoid in AVX2 without Sleef calls: exp by Cody-Waite reduction and the
// Cephes polynomial (relative error < 2e-7), log1p(e) for e in [0, 1] by the atanh series
// 2 s (1 + s^2/3 + ... + s^14/15), s = e / (2 + e) <= 1/3 (truncation < 2e-8). These two are
// where the time goes; Sleef's general-range versions are ~3x slower.
inline __m256 exp_nonpositive(__m256 y) {
  const __m256 lo = _mm256_set1_ps(-87.33f);
  const __m256 underflow = _mm256_cmp_ps(y, lo, _CMP_LT_OQ);
  y = _mm256_max_ps(lo, y);  // operand order: a nan y passes through (and gives nan)
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), y);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, p);  // exactly 0 below the float range, as std::exp
}

// float64 exp of lanes <= 0 (or nan): Cody-Waite reduction to |r| <= ln2/2 and the Taylor
// polynomial to degree 13 (truncation < 5e-18; a few ulp in all), 0 below -708 (no subnormal
// results). Sleef's general-range version is several times slower.
inline __m256d exp_nonpositive(__m256d y) {
  const __m256d lo = _mm256_set1_pd(-708.0);
  const __m256d underflow = _mm256_cmp_pd(y, lo, _CMP_LT_OQ);
  y = _mm256_max_pd(lo, y);  // operand order: a nan y passes through (and gives nan)
  const __m256d fx = _mm256_round_pd(_mm256_mul_pd(y, _mm256_set1_pd(1.4426950408889634)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(fx, _mm256_set1_pd(6.93145751953125e-1), y);
  r = _mm256_fnmadd_pd(fx, _mm256_set1_pd(1.42860682030941723212e-6), r);
  constexpr double inv_fact[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
                                 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
  __m256d p = _mm256_set1_pd(inv_fact[0]);
  for (int i = 1; i < 14; ++i) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(inv_fact[i]));
  const __m256i e = _mm256_slli_epi64(
      _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(fx)), _mm256_set1_epi64x(1023)), 52);
  p = _mm256_mul_pd(p, _mm256_castsi256_pd(e));
  return _mm256_andnot_pd(underflow, p);
}

// 1 / a for a in [1, 3]: the hardware estimate (12 bits) and one Newton step (~23 bits), a third
// of the cost of a division.
inline __m256 reciprocal_1_3(__m256 a) {
  const __m256 r = _mm256_rcp_ps(a);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(a, r, _mm256_set1_ps(2.0f)));
}

inline __m256 log1p_unit(__m256 e) {
  const __m256 s = _mm256_mul_ps(e, reciprocal_1_3(_mm256_add_ps(e, _mm256_set1_ps(2.0f))));
  const __m256 s2 = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(1.0f / 15);
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 13));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 11));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 9));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 7));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 5));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 3));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f));
  return _mm256_mul_ps(_mm256_add_ps(s, s), p);
}

// softplus(z) and sigmoid(z) of a float vector.
inline void softplus_sigmoid(__m256 z, __m256& softplus, __m256& sigmoid) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 abs_z = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
  const __m256 e = exp_nonpositive(_mm256_sub_ps(zero, abs_z));
  softplus = _mm256_add_ps(_mm256_max_ps(z, zero), log1p_unit(e));
  // a true division here: sigmoid(|z| large) must come out exactly 1 (grad exactly -1/N)
  const __m256 inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
  sigmoid = _mm256_blendv_ps(_mm256_mul_ps(e, inv), inv, _mm256_cmp_ps(z, zero, _CMP_GE_OQ));
}

}  // namespace aigc_engine

#endif
