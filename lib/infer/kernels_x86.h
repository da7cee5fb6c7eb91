/*
 * Small AVX-512 helpers shared by the AVX-512 kernel files (kernels_avx512.c,
 * kernels_avx512_act.c). Private to lib/infer; include only from files compiled for
 * x86-64 (each function carries its own target attribute).
 */
#ifndef LMP_KERNELS_X86_H
#define LMP_KERNELS_X86_H

#include <immintrin.h>

/* Sums of four vectors: out[r] = sum of the lanes of v[r] (a fixed order). */
__attribute__((target("avx512f,avx512dq,avx2"))) static inline void
lmp_hsum4_512(__m512 v0, __m512 v1, __m512 v2, __m512 v3, float *out)
{
#define LMP_HALF(v) _mm256_add_ps(_mm512_castps512_ps256(v), \
                                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
    const __m256 u01 = _mm256_hadd_ps(LMP_HALF(v0), LMP_HALF(v1));
    const __m256 u23 = _mm256_hadd_ps(LMP_HALF(v2), LMP_HALF(v3));
#undef LMP_HALF
    const __m256 w = _mm256_hadd_ps(u01, u23);
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps(w, 1)));
}

#endif
