// AVX2 int8 GEMM micro-kernel: up to 3 rows x 16 output channels per pass over K.
//
// Exact: the u8 activations and s8 weights are widened to int16 and multiplied with
// VPMADDWD (int16 x int16, pairs summed into int32), never VPMADDUBSW, whose int16 pair sums
// saturate (255*127*2 > 32767). Per 4 k and 16 channels: 4 widening loads of 16 weight bytes,
// one madd + add per row each; the pair sums are folded with VPHADDD at the end.
#include "qgemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define LATHE_AVX2 __attribute__((target("avx2,fma")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

void lathe_qepi_tail(const int32_t *acc, long m, long n0, long nn, const int32_t *rowsum,
                     const lathe_qgemm_epilogue *ep);

enum { MR = 3 };

/// The 4 bytes of a4 widened to int16 and repeated 4 times: [a0 a1 a2 a3] x 4.
ALWAYS_INLINE LATHE_AVX2 __m256i widen_a4(uint32_t a4) {
    const __m128i t = _mm_cvtepu8_epi16(_mm_cvtsi32_si128((int)a4));
    return _mm256_set1_epi64x(_mm_cvtsi128_si64(t));
}

ALWAYS_INLINE LATHE_AVX2 void block_body(const int R, long K, const uint8_t *a, long lda,
                                          const int8_t *w, int32_t *tile) {
    __m256i acc[MR][4];
    for (int i = 0; i < R; i++)
        for (int q = 0; q < 4; q++) acc[i][q] = _mm256_setzero_si256();
    for (long k = 0; k < K; k += 4) {
        __m256i av[MR];
        if (k + 4 <= K) {
            for (int i = 0; i < R; i++) {
                uint32_t a4;
                memcpy(&a4, a + i * lda + k, 4);
                av[i] = widen_a4(a4);
            }
        } else {
            for (int i = 0; i < R; i++) av[i] = widen_a4(lathe_q_load4(a + i * lda, k, K));
        }
        const int8_t *wk = w + k * 16;
        for (int q = 0; q < 4; q++) {
            const __m256i wq = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wk + q * 16)));
            for (int i = 0; i < R; i++) acc[i][q] = _mm256_add_epi32(acc[i][q], _mm256_madd_epi16(wq, av[i]));
        }
    }
    for (int i = 0; i < R; i++) {
        // acc[q] = [n(4q) n(4q) n(4q+1) n(4q+1) | n(4q+2) .. n(4q+3)] pair sums.
        const __m256i h01 = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8);
        const __m256i h23 = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][2], acc[i][3]), 0xD8);
        _mm256_storeu_si256((__m256i *)(tile + i * QG_TILE_N), h01);
        _mm256_storeu_si256((__m256i *)(tile + i * QG_TILE_N + 8), h23);
    }
}

static LATHE_AVX2 void ukr_1(long K, const uint8_t *a, long lda, const int8_t *w, int32_t *t) { block_body(1, K, a, lda, w, t); }
static LATHE_AVX2 void ukr_2(long K, const uint8_t *a, long lda, const int8_t *w, int32_t *t) { block_body(2, K, a, lda, w, t); }
static LATHE_AVX2 void ukr_3(long K, const uint8_t *a, long lda, const int8_t *w, int32_t *t) { block_body(3, K, a, lda, w, t); }

static void qukr_avx2(long K, const uint8_t *a, long lda, long mr, const int8_t *wp, long wstride,
                      long nb, int32_t *tile) {
    for (long b = 0; b < nb; b++) {
        const int8_t *w = wp + b * wstride;
        int32_t *t = tile + b * 16;
        switch (mr) {
        case 1: ukr_1(K, a, lda, w, t); break;
        case 2: ukr_2(K, a, lda, w, t); break;
        default: ukr_3(K, a, lda, w, t); break;
        }
    }
}

static LATHE_AVX2 void qepi_avx2(const int32_t *acc, long m, long n0, long nn, const int32_t *rowsum,
                                 const lathe_qgemm_epilogue *ep) {
    const __m256i za = _mm256_set1_epi32(ep->a_zero_point);
    const __m256 as = _mm256_set1_ps(ep->a_scale), zero = _mm256_setzero_ps();
    const __m256 inv = _mm256_set1_ps(ep->out_inv_scale);
    const __m256 lo = _mm256_set1_ps(-16777216.0f), hi = _mm256_set1_ps(16777216.0f);
    const __m256i ozp = _mm256_set1_epi32(ep->out_zero_point);
    const __m256i q0 = _mm256_setzero_si256(), q255 = _mm256_set1_epi32(255);
    long j = 0;
    for (; j + 8 <= nn; j += 8) {
        const long n = n0 + j;
        const __m256i v = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(acc + j)),
                                           _mm256_mullo_epi32(za, _mm256_loadu_si256((const __m256i *)(rowsum + n))));
        if (ep->out_acc) _mm256_storeu_si256((__m256i *)(ep->out_acc + m * ep->ld_acc + n), v);
        if (!ep->out && !ep->out_q) continue;
        const __m256 s = _mm256_mul_ps(as, _mm256_loadu_ps(ep->w_scale + n));
        const __m256 b = ep->bias ? _mm256_loadu_ps(ep->bias + n) : zero;
        __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), s, b);
        if (ep->relu) f = _mm256_max_ps(f, zero);
        if (ep->out) _mm256_storeu_ps(ep->out + m * ep->ld_out + n, f);
        if (ep->out_q) {
            const __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(f, inv), lo), hi);
            __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), ozp);
            q = _mm256_min_epi32(_mm256_max_epi32(q, q0), q255);
            int32_t tmp[8];
            _mm256_storeu_si256((__m256i *)tmp, q);
            for (int t8 = 0; t8 < 8; t8++) ep->out_q[m * ep->ld_out_q + n + t8] = (uint8_t)tmp[t8];
        }
    }
    if (j < nn) lathe_qepi_tail(acc + j, m, n0 + j, nn - j, rowsum, ep);
}

const lathe_qgemm_kernel lathe_qgemm_kernel_qavx2 = {
    .mr = MR, .ukr = qukr_avx2, .epi = qepi_avx2, .name = "avx2",
};

#endif
