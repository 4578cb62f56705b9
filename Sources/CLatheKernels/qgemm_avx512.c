// AVX-512 VNNI int8 GEMM micro-kernel: up to 6 rows x 64 output channels (24 zmm accumulators).
//
// Per 4 k: 4 loads of packed weights (64 bytes = 16 channels x 4 k each), one 32-bit broadcast
// of A per row, and one VPDPBUSD (u8 x s8 -> int32, no saturation) per accumulator.
#include "qgemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define LATHE_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

void lathe_qepi_tail(const int32_t *acc, long m, long n0, long nn, const int32_t *rowsum,
                     const lathe_qgemm_epilogue *ep);

enum { MR = 6 };

ALWAYS_INLINE LATHE_VNNI void ukr_body(const int R, const int NB, long K, const uint8_t *a, long lda,
                                        const int8_t *wp, long wstride, int32_t *tile) {
    __m512i acc[MR][QG_NBMAX];
    for (int i = 0; i < R; i++)
        for (int b = 0; b < NB; b++) acc[i][b] = _mm512_setzero_si512();
    const long kfull = K / 4 * 4;
    long k = 0;
    for (; k < kfull; k += 4) {
        __m512i w[QG_NBMAX];
        for (int b = 0; b < NB; b++) w[b] = _mm512_loadu_si512((const void *)(wp + b * wstride + k * 16));
        for (int i = 0; i < R; i++) {
            int32_t a4;
            memcpy(&a4, a + i * lda + k, 4);
            const __m512i av = _mm512_set1_epi32(a4);
            for (int b = 0; b < NB; b++) acc[i][b] = _mm512_dpbusd_epi32(acc[i][b], av, w[b]);
        }
    }
    if (k < K) {
        __m512i w[QG_NBMAX];
        for (int b = 0; b < NB; b++) w[b] = _mm512_loadu_si512((const void *)(wp + b * wstride + k * 16));
        for (int i = 0; i < R; i++) {
            const __m512i av = _mm512_set1_epi32((int32_t)lathe_q_load4(a + i * lda, k, K));
            for (int b = 0; b < NB; b++) acc[i][b] = _mm512_dpbusd_epi32(acc[i][b], av, w[b]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int b = 0; b < NB; b++) _mm512_store_si512((void *)(tile + i * QG_TILE_N + b * 16), acc[i][b]);
}

#define UKR(R, NB)                                                                                 \
    static LATHE_VNNI void ukr_##R##_##NB(long K, const uint8_t *a, long lda, const int8_t *wp,     \
                                          long wstride, int32_t *tile) {                           \
        ukr_body(R, NB, K, a, lda, wp, wstride, tile);                                             \
    }
#define UKR_ROW(R) UKR(R, 1) UKR(R, 2) UKR(R, 3) UKR(R, 4)
UKR_ROW(1) UKR_ROW(2) UKR_ROW(3) UKR_ROW(4) UKR_ROW(5) UKR_ROW(6)

typedef void (*ukr_fixed)(long, const uint8_t *, long, const int8_t *, long, int32_t *);
#define ROW_TABLE(R) {ukr_##R##_1, ukr_##R##_2, ukr_##R##_3, ukr_##R##_4}
static const ukr_fixed k_table[MR][QG_NBMAX] = {ROW_TABLE(1), ROW_TABLE(2), ROW_TABLE(3),
                                                ROW_TABLE(4), ROW_TABLE(5), ROW_TABLE(6)};

static void qukr_vnni(long K, const uint8_t *a, long lda, long mr, const int8_t *wp, long wstride,
                      long nb, int32_t *tile) {
    k_table[mr - 1][nb - 1](K, a, lda, wp, wstride, tile);
}

static LATHE_VNNI void qepi_avx512(const int32_t *acc, long m, long n0, long nn,
                                   const int32_t *rowsum, const lathe_qgemm_epilogue *ep) {
    const __m512i za = _mm512_set1_epi32(ep->a_zero_point);
    const __m512 as = _mm512_set1_ps(ep->a_scale), zero = _mm512_setzero_ps();
    const __m512 inv = _mm512_set1_ps(ep->out_inv_scale);
    const __m512 lo = _mm512_set1_ps(-16777216.0f), hi = _mm512_set1_ps(16777216.0f);
    const __m512i ozp = _mm512_set1_epi32(ep->out_zero_point);
    const __m512i q0 = _mm512_setzero_si512(), q255 = _mm512_set1_epi32(255);
    long j = 0;
    for (; j + 16 <= nn; j += 16) {
        const long n = n0 + j;
        const __m512i v = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(acc + j)),
                                           _mm512_mullo_epi32(za, _mm512_loadu_si512((const void *)(rowsum + n))));
        if (ep->out_acc) _mm512_storeu_si512((void *)(ep->out_acc + m * ep->ld_acc + n), v);
        if (!ep->out && !ep->out_q) continue;
        const __m512 s = _mm512_mul_ps(as, _mm512_loadu_ps(ep->w_scale + n));
        const __m512 b = ep->bias ? _mm512_loadu_ps(ep->bias + n) : zero;
        __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), s, b);
        if (ep->relu) f = _mm512_max_ps(f, zero);
        if (ep->out) _mm512_storeu_ps(ep->out + m * ep->ld_out + n, f);
        if (ep->out_q) {
            const __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(f, inv), lo), hi);
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), ozp);
            q = _mm512_min_epi32(_mm512_max_epi32(q, q0), q255);
            _mm_storeu_si128((__m128i *)(ep->out_q + m * ep->ld_out_q + n), _mm512_cvtepi32_epi8(q));
        }
    }
    if (j < nn) lathe_qepi_tail(acc + j, m, n0 + j, nn - j, rowsum, ep);
}

const lathe_qgemm_kernel lathe_qgemm_kernel_vnni = {
    .mr = MR, .ukr = qukr_vnni, .epi = qepi_avx512, .name = "avx512-vnni",
};


/// lathe_quantize_u8 for 16 floats a step: the same clamp, round-to-nearest-even (the default
/// MXCSR mode that rintf also uses), zero point and saturation; the tail goes through a mask.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void lathe_quantize_u8_avx512(const float *x, long n, float inv_scale, int32_t zero_point, uint8_t *q) {
    const __m512 s = _mm512_set1_ps(inv_scale), lo = _mm512_set1_ps(-16777216.0f), hi = _mm512_set1_ps(16777216.0f);
    const __m512i zp = _mm512_set1_epi32(zero_point), zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(255);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), s);
        t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);  // NaN becomes -2^24, hence 0 like the scalar path
        __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(t), zp);
        v = _mm512_min_epi32(_mm512_max_epi32(v, zero), top);
        _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(v));
    }
}
#endif
