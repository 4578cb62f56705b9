// AVX2 + FMA fp32 GEMM micro-kernel: 6 x 16 register tile.
//
// 6 rows x 2 ymm = 12 accumulators, 2 ymm for the B row, 1 broadcast register: 15 of 16 ymm.
#include "gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define LATHE_AVX2 __attribute__((target("avx2,fma")))

enum { MR = 6, NR = 16 };

#define ROW_FMA(i, aoff)                                                          \
    {                                                                             \
        const __m256 ai = _mm256_broadcast_ss(a + (aoff) + (i));                  \
        c##i##_0 = _mm256_fmadd_ps(ai, b0, c##i##_0);                             \
        c##i##_1 = _mm256_fmadd_ps(ai, b1, c##i##_1);                             \
    }
#define K_STEP(aoff, boff)                                                        \
    do {                                                                          \
        const __m256 b0 = _mm256_loadu_ps(b + (boff));                            \
        const __m256 b1 = _mm256_loadu_ps(b + (boff) + 8);                        \
        ROW_FMA(0, aoff) ROW_FMA(1, aoff) ROW_FMA(2, aoff)                        \
        ROW_FMA(3, aoff) ROW_FMA(4, aoff) ROW_FMA(5, aoff)                        \
    } while (0)

/// Lane mask for the first n of 8 lanes (n may be <= 0 or >= 8).
LATHE_AVX2 static inline __m256i lane_mask(long n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int v = n < 0 ? 0 : (n > 8 ? 8 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), idx);
}

/// One row: C = beta == 0 ? alpha*acc : fma(alpha, acc, beta*C), masked to valid columns.
LATHE_AVX2 static inline void store_row(float *c, __m256 acc0, __m256 acc1, __m256 va, __m256 vb,
                                        int bz, int full, __m256i k0, __m256i k1) {
    if (full) {
        if (bz) {
            _mm256_storeu_ps(c, _mm256_mul_ps(va, acc0));
            _mm256_storeu_ps(c + 8, _mm256_mul_ps(va, acc1));
        } else {
            __m256 o0 = _mm256_mul_ps(vb, _mm256_loadu_ps(c));
            __m256 o1 = _mm256_mul_ps(vb, _mm256_loadu_ps(c + 8));
            _mm256_storeu_ps(c, _mm256_fmadd_ps(va, acc0, o0));
            _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(va, acc1, o1));
        }
    } else {
        if (bz) {
            _mm256_maskstore_ps(c, k0, _mm256_mul_ps(va, acc0));
            _mm256_maskstore_ps(c + 8, k1, _mm256_mul_ps(va, acc1));
        } else {
            __m256 o0 = _mm256_mul_ps(vb, _mm256_maskload_ps(c, k0));
            __m256 o1 = _mm256_mul_ps(vb, _mm256_maskload_ps(c + 8, k1));
            _mm256_maskstore_ps(c, k0, _mm256_fmadd_ps(va, acc0, o0));
            _mm256_maskstore_ps(c + 8, k1, _mm256_fmadd_ps(va, acc1, o1));
        }
    }
}

/// See lathe_ukr_fn. a: [kc][6] packed, b: [kc][16] with row stride ldb, c: [mr][nr] (ldc).
LATHE_AVX2 static void ukr_avx2_6x16(long kc, const float *a, const float *b, long ldb, float *c,
                                     long ldc, long mr, long nr, float alpha, float beta) {
    __m256 c0_0 = _mm256_setzero_ps(), c0_1 = _mm256_setzero_ps();
    __m256 c1_0 = _mm256_setzero_ps(), c1_1 = _mm256_setzero_ps();
    __m256 c2_0 = _mm256_setzero_ps(), c2_1 = _mm256_setzero_ps();
    __m256 c3_0 = _mm256_setzero_ps(), c3_1 = _mm256_setzero_ps();
    __m256 c4_0 = _mm256_setzero_ps(), c4_1 = _mm256_setzero_ps();
    __m256 c5_0 = _mm256_setzero_ps(), c5_1 = _mm256_setzero_ps();
    long k = 0;
    for (; k + 4 <= kc; k += 4) {
        _mm_prefetch((const char *)(a + 8 * MR), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + 8 * MR + 16), _MM_HINT_T0);
        K_STEP(0, 0);
        K_STEP(MR, ldb);
        K_STEP(2 * MR, 2 * ldb);
        K_STEP(3 * MR, 3 * ldb);
        a += 4 * MR;
        b += 4 * ldb;
    }
    for (; k < kc; k++) {
        K_STEP(0, 0);
        a += MR;
        b += ldb;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const int bz = (beta == 0.0f), full = (nr == NR);
    const __m256i k0 = lane_mask(nr), k1 = lane_mask(nr - 8);
#define ST(i) if (i < mr) store_row(c + (i) * ldc, c##i##_0, c##i##_1, va, vb, bz, full, k0, k1);
    ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
#undef ST
}

const lathe_gemm_kernel lathe_gemm_kernel_avx2 = {
    .mr = MR, .nr = NR, .kc = 256, .mc = 6 * 24, .nc = 2048,
    .ukr = ukr_avx2_6x16, .name = "avx2-6x16",
};

#endif  // __x86_64__
