#include "CKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* Products and sums rounded one at a time, as Swift rounds `s += x * y`; only the vector
   accumulators fuse (Swift's addProduct). */
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)

int kvstore_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

__attribute__((target("avx512f")))
void kvstore_dot4x4_avx512(const float *const a[4], const float *const b[4], long n, float out[16]) {
    /* Lanes 0-7 are dot's first accumulator (elements [16k, 16k + 8)), lanes 8-15 its second. */
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    long t = 0;
    for (; t + 16 <= n; t += 16) {
        __m512 x[4];
        for (int i = 0; i < 4; i++) x[i] = _mm512_loadu_ps(a[i] + t);
        for (int j = 0; j < 4; j++) {
            __m512 y = _mm512_loadu_ps(b[j] + t);
            for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(x[i], y, acc[i][j]);
        }
    }
    if (t + 8 <= n) {  /* a last 8 go to the first accumulator only */
        const __mmask16 low = 0x00FF;
        __m512 x[4];
        for (int i = 0; i < 4; i++) x[i] = _mm512_maskz_loadu_ps(low, a[i] + t);
        for (int j = 0; j < 4; j++) {
            __m512 y = _mm512_maskz_loadu_ps(low, b[j] + t);
            for (int i = 0; i < 4; i++) acc[i][j] = _mm512_mask3_fmadd_ps(x[i], y, acc[i][j], low);
        }
        t += 8;
    }
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++) {
            __m256 lo = _mm512_castps512_ps256(acc[i][j]);
            __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i][j]), 1));
            float lanes[8];
            _mm256_storeu_ps(lanes, _mm256_add_ps(lo, hi));
            float s = -0.0f;
            for (int k = 0; k < 8; k++) s += lanes[k];
            for (long r = t; r < n; r++) s += a[i][r] * b[j][r];
            out[4 * i + j] = s;
        }
    }
}

#else

int kvstore_has_avx512(void) { return 0; }

void kvstore_dot4x4_avx512(const float *const a[4], const float *const b[4], long n, float out[16]) {
    (void)a; (void)b; (void)n; (void)out;
    __builtin_trap();  /* never called where kvstore_has_avx512() is 0 */
}

#endif
