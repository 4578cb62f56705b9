// AVX-512 fp32 GEMM micro-kernels: 14 x 32 and 12 x 32 register tiles.
//
// 14 rows x 2 zmm (32 floats) = 28 zmm accumulators, 2 zmm for the B row, and the A elements
// come in as embedded broadcasts ({1to16} memory operands of the FMA), so 30 of 32 registers.
// Per k: 2 B loads + 14 broadcast loads feed 28 FMAs; Zen 4/5 retire 2 zmm FMAs per cycle, so
// the loop is FMA-bound (14 cycles per k) with the loads well under the 2-3 per cycle limit.
// The 12-row tile is the same loop with two rows fewer: it serves products whose rows it fills
// better (128 rows: 11 tiles of 12 are 97% full, 10 of 14 only 91%), gemm.c picks per product.
// Both compute every element with the same FMA chain, so the choice never changes the bits.
#include "gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define LATHE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define ALWAYS_INLINE_512 static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

enum { NR = 32 };

// One k step: load B row (32 floats), broadcast MR A values, 2 MR FMAs (rows past MR are
// compiled out: MR is a constant in each instance).
#define K_STEP(aoff, boff)                                                        \
    do {                                                                          \
        const __m512 b0 = _mm512_loadu_ps(b + (boff));                            \
        const __m512 b1 = _mm512_loadu_ps(b + (boff) + 16);                       \
        ROWS_FMA(aoff)                                                            \
    } while (0)

#define ROW_FMA(i, aoff)                                                          \
    if (i < MR) {                                                                 \
        const __m512 ai = _mm512_set1_ps(a[(aoff) + (i)]);                        \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);                             \
        c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);                             \
    }
#define ROWS_FMA(aoff)                                                            \
    ROW_FMA(0, aoff) ROW_FMA(1, aoff) ROW_FMA(2, aoff) ROW_FMA(3, aoff)           \
    ROW_FMA(4, aoff) ROW_FMA(5, aoff) ROW_FMA(6, aoff) ROW_FMA(7, aoff)           \
    ROW_FMA(8, aoff) ROW_FMA(9, aoff) ROW_FMA(10, aoff) ROW_FMA(11, aoff)         \
    ROW_FMA(12, aoff) ROW_FMA(13, aoff)

/// Writes one row of the tile: C = beta == 0 ? alpha*acc : fma(alpha, acc, beta*C), masked to
/// the nr valid columns (m0: cols 0..15, m1: cols 16..31).
LATHE_AVX512 static inline void store_row(float *c, __m512 acc0, __m512 acc1, __m512 valpha,
                                          __m512 vbeta, int beta_zero, __mmask16 m0,
                                          __mmask16 m1) {
    if (beta_zero) {
        _mm512_mask_storeu_ps(c, m0, _mm512_mul_ps(valpha, acc0));
        _mm512_mask_storeu_ps(c + 16, m1, _mm512_mul_ps(valpha, acc1));
    } else {
        __m512 o0 = _mm512_mul_ps(vbeta, _mm512_maskz_loadu_ps(m0, c));
        __m512 o1 = _mm512_mul_ps(vbeta, _mm512_maskz_loadu_ps(m1, c + 16));
        _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(valpha, acc0, o0));
        _mm512_mask_storeu_ps(c + 16, m1, _mm512_fmadd_ps(valpha, acc1, o1));
    }
}

/// See lathe_ukr_fn in gemm_internal.h. a: [kc][MR] packed, b: [kc][32] with row stride ldb,
/// c: [mr][nr] with row stride ldc. MR is 14 or 12.
ALWAYS_INLINE_512 void ukr_avx512_rows(const int MR, long kc, const float *a, const float *b, long ldb,
                                       float *c, long ldc, long mr, long nr, float alpha, float beta) {
    __m512 c0_0 = _mm512_setzero_ps(), c0_1 = _mm512_setzero_ps();
    __m512 c1_0 = _mm512_setzero_ps(), c1_1 = _mm512_setzero_ps();
    __m512 c2_0 = _mm512_setzero_ps(), c2_1 = _mm512_setzero_ps();
    __m512 c3_0 = _mm512_setzero_ps(), c3_1 = _mm512_setzero_ps();
    __m512 c4_0 = _mm512_setzero_ps(), c4_1 = _mm512_setzero_ps();
    __m512 c5_0 = _mm512_setzero_ps(), c5_1 = _mm512_setzero_ps();
    __m512 c6_0 = _mm512_setzero_ps(), c6_1 = _mm512_setzero_ps();
    __m512 c7_0 = _mm512_setzero_ps(), c7_1 = _mm512_setzero_ps();
    __m512 c8_0 = _mm512_setzero_ps(), c8_1 = _mm512_setzero_ps();
    __m512 c9_0 = _mm512_setzero_ps(), c9_1 = _mm512_setzero_ps();
    __m512 c10_0 = _mm512_setzero_ps(), c10_1 = _mm512_setzero_ps();
    __m512 c11_0 = _mm512_setzero_ps(), c11_1 = _mm512_setzero_ps();
    __m512 c12_0 = _mm512_setzero_ps(), c12_1 = _mm512_setzero_ps();
    __m512 c13_0 = _mm512_setzero_ps(), c13_1 = _mm512_setzero_ps();

    // The C tile is read/written once, at the end. Ask for it in L2 now (the driver usually
    // has done so one call ahead; in L1 it would be evicted by the A and B streams), and in
    // L1 near the end of the loop (C_PF_K steps, ~900 cycles, before it is used).
    enum { C_PF_K = 64 };
    for (long i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T1);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T1);
    }

    long k = 0;
    // Unrolled by 4; prefetch the A stream (56 floats = 3.5 lines per step) ahead.
#define K_LOOP4(kend)                                                             \
    for (; k + 4 <= (kend); k += 4) {                                             \
        _mm_prefetch((const char *)(a + 8 * MR), _MM_HINT_T0);                    \
        _mm_prefetch((const char *)(a + 8 * MR + 16), _MM_HINT_T0);               \
        _mm_prefetch((const char *)(a + 8 * MR + 32), _MM_HINT_T0);               \
        _mm_prefetch((const char *)(a + 8 * MR + 48), _MM_HINT_T0);               \
        K_STEP(0, 0);                                                             \
        K_STEP(MR, ldb);                                                          \
        K_STEP(2 * MR, 2 * ldb);                                                  \
        K_STEP(3 * MR, 3 * ldb);                                                  \
        a += 4 * MR;                                                              \
        b += 4 * ldb;                                                             \
    }
    K_LOOP4(kc - C_PF_K)
    for (long i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
    K_LOOP4(kc)
#undef K_LOOP4
    for (; k < kc; k++) {
        K_STEP(0, 0);
        a += MR;
        b += ldb;
    }

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int bz = (beta == 0.0f);
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF
                                  : (nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0);
#define ST(i)                                                                     \
    if (i < MR && i < mr) store_row(c + (i) * ldc, c##i##_0, c##i##_1, va, vb, bz, m0, m1);
    ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7) ST(8) ST(9) ST(10) ST(11) ST(12) ST(13)
#undef ST
}

LATHE_AVX512 static void ukr_avx512_14x32(long kc, const float *a, const float *b, long ldb,
                                          float *c, long ldc, long mr, long nr, float alpha,
                                          float beta) {
    ukr_avx512_rows(14, kc, a, b, ldb, c, ldc, mr, nr, alpha, beta);
}

LATHE_AVX512 static void ukr_avx512_12x32(long kc, const float *a, const float *b, long ldb,
                                          float *c, long ldc, long mr, long nr, float alpha,
                                          float beta) {
    ukr_avx512_rows(12, kc, a, b, ldb, c, ldc, mr, nr, alpha, beta);
}

// ---- Packing ---------------------------------------------------------------------------------
// The transposing cases (op(A) = A with rows of A contiguous along k; op(B) = B^T) gather with
// 16 x 16 in-register transposes instead of scalar strided copies.

/// In-place transpose of a 16 x 16 block held as 16 rows r[0..15].
LATHE_AVX512 static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // After this, lane l (128-bit) of r[4i+c] holds column 4l+c of rows 4i..4i+3.
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    // Gather lane l of r[c], r[4+c], r[8+c], r[12+c] into output row 4l+c.
    __m512 o[16];
    for (int c = 0; c < 4; c++) {
        __m512 t0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
        __m512 t1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        __m512 t2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
        __m512 t3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        o[0 + c] = _mm512_shuffle_f32x4(t0, t2, 0x88);
        o[4 + c] = _mm512_shuffle_f32x4(t0, t2, 0xDD);
        o[8 + c] = _mm512_shuffle_f32x4(t1, t3, 0x88);
        o[12 + c] = _mm512_shuffle_f32x4(t1, t3, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = o[i];
}

static inline __mmask16 first_lanes(long n) {
    return n >= 16 ? (__mmask16)0xFFFF : (n <= 0 ? 0 : (__mmask16)((1u << n) - 1));
}

/// Packs op(A)[i0:i0+mc, k0:k0+kc] into ceil(mc/MR) panels [kc][MR], zero rows past mc.
/// A: [M,K] (transA == 0) or [K,M] (transA != 0), row stride lda.
ALWAYS_INLINE_512 void pack_a_rows(const int MR, int transA, const float *A, long lda, long i0, long k0,
                                   long mc, long kc, float *dst) {
    const __mmask16 mrows = (__mmask16)((1u << MR) - 1);  // the MR lanes of a packed k
    if (transA) {
        // The mc values of one k are contiguous: walk A row by row (one page stream), and
        // scatter each row over the panels.
        for (long k = 0; k < kc; k++) {
            const float *src = A + (k0 + k) * lda + i0;
            float *d = dst + k * MR;
            for (long p = 0; p < mc; p += MR, d += kc * MR) {
                const __mmask16 mm = first_lanes(mc - p < MR ? mc - p : MR);
                _mm512_mask_storeu_ps(d, mrows, _mm512_maskz_loadu_ps(mm, src + p));
            }
        }
        return;
    }
    for (long p = 0; p < mc; p += MR) {
        const long mr = mc - p < MR ? mc - p : MR;
        const float *src = A + (i0 + p) * lda + k0;
        for (long k = 0; k < kc; k += 16) {
            const long kk = kc - k < 16 ? kc - k : 16;
            const __mmask16 mk = first_lanes(kk);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < mr ? _mm512_maskz_loadu_ps(mk, src + i * lda + k) : _mm512_setzero_ps();
            transpose16(r);
            for (long t = 0; t < kk; t++) _mm512_mask_storeu_ps(dst + (k + t) * MR, mrows, r[t]);
        }
        dst += kc * MR;
    }
}

LATHE_AVX512 static void pack_a_avx512(int transA, const float *A, long lda, long i0, long k0,
                                       long mc, long kc, float *dst) {
    pack_a_rows(14, transA, A, lda, i0, k0, mc, kc, dst);
}

LATHE_AVX512 static void pack_a_avx512_12(int transA, const float *A, long lda, long i0, long k0,
                                          long mc, long kc, float *dst) {
    pack_a_rows(12, transA, A, lda, i0, k0, mc, kc, dst);
}

/// Packs op(B)[k0:k0+kc, j0:j0+nc] into ceil(nc/32) panels [kc][32], zero cols past nc.
/// B: [K,N] (transB == 0) or [N,K] (transB != 0), row stride ldb. dst is 64-byte aligned.
LATHE_AVX512 static void pack_b_avx512(int transB, const float *B, long ldb, long k0, long j0,
                                       long kc, long nc, float *dst) {
    if (!transB) {
        // Rows of B are contiguous along n. Blocks of PB_K rows, panel by panel: each panel
        // receives PB_K * 128 contiguous bytes at a time (rather than 128 bytes to every panel
        // in turn for each row, which keeps nc/32 write streams open and costs twice as much).
        enum { PB_K = 16 };
        for (long kb = 0; kb < kc; kb += PB_K) {
            const long ke = kc - kb < PB_K ? kc : kb + PB_K;
            float *dq = dst;
            for (long q = 0; q < nc; q += NR, dq += kc * NR) {
                const long nr = nc - q < NR ? nc - q : NR;
                const __mmask16 mq0 = first_lanes(nr), mq1 = first_lanes(nr - 16);
                const float *src = B + (k0 + kb) * ldb + j0 + q;
                float *d = dq + kb * NR;
                // B (a frozen weight in the backward) is usually cold: ask for the same columns
                // of the next PB_K rows while these are copied (PB_K row streams at once are
                // more than the hardware prefetcher follows).
                const float *nxt = src + PB_K * ldb;
                const long kn = ke + PB_K <= kc ? PB_K : kc - ke;
                for (long k = kb; k < ke; k++, src += ldb, d += NR) {
                    if (k - kb < kn) {
                        __builtin_prefetch(nxt, 0, 2);
                        __builtin_prefetch(nxt + 16, 0, 2);
                        nxt += ldb;
                    }
                    _mm512_store_ps(d, _mm512_maskz_loadu_ps(mq0, src));
                    _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(mq1, src + 16));
                }
            }
        }
        return;
    }
    for (long q = 0; q < nc; q += NR) {
        const long nr = nc - q < NR ? nc - q : NR;
        {
            for (int h = 0; h < 2; h++) {
                const long rows = nr - 16 * h;  // valid j in this half
                const float *src = B + (j0 + q + 16 * h) * ldb + k0;
                for (long k = 0; k < kc; k += 16) {
                    const long kk = kc - k < 16 ? kc - k : 16;
                    const __mmask16 mk = first_lanes(kk);
                    __m512 r[16];
                    for (int i = 0; i < 16; i++)
                        r[i] = i < rows ? _mm512_maskz_loadu_ps(mk, src + i * ldb + k)
                                        : _mm512_setzero_ps();
                    transpose16(r);
                    for (long t = 0; t < kk; t++) _mm512_store_ps(dst + (k + t) * NR + 16 * h, r[t]);
                }
            }
        }
        dst += kc * NR;
    }
}

const lathe_gemm_kernel lathe_gemm_kernel_avx512 = {
    .mr = 14, .nr = NR, .kc = 512, .mc = 14 * 8, .nc = 2048, .ng = 6,
    .ukr = ukr_avx512_14x32, .pack_a = pack_a_avx512, .pack_b = pack_b_avx512,
    .name = "avx512-14x32",
};

// The same panels of B (NR, kc) as the 14-row kernel: a pre-packed B serves both.
const lathe_gemm_kernel lathe_gemm_kernel_avx512_12 = {
    .mr = 12, .nr = NR, .kc = 512, .mc = 12 * 11, .nc = 2048, .ng = 6,
    .ukr = ukr_avx512_12x32, .pack_a = pack_a_avx512_12, .pack_b = pack_b_avx512,
    .name = "avx512-12x32",
};

#endif  // __x86_64__
