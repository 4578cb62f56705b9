// Max pooling without branches: each candidate replaces the best when it is larger or NaN
// (and the best is not NaN), chosen with selects the compiler turns into blends or cmovs.
#include "lathe_pool.h"
#include "lathe_kernels.h"
#include <string.h>

static inline void take(float v, int32_t i, float *best, int32_t *bi) {
    const int better = (v > *best) | ((v != v) & (*best == *best));
    *best = better ? v : *best;
    *bi = better ? i : *bi;
}

static inline float pick(float best, float v) {
    const int better = (v > best) | ((v != v) & (best == best));
    return better ? v : best;
}

#if defined(__x86_64__)
#include <immintrin.h>

// pick() on 16 lanes: MAXPS(v, best) is `v > best ? v : best` (best when either is NaN or they are
// equal), then a NaN v replaces a best that is not NaN.
__attribute__((target("avx512f"))) static inline __m512 pick16(__m512 best, __m512 v) {
    const __m512 r = _mm512_max_ps(v, best);
    const __mmask16 take_nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
    return _mm512_mask_mov_ps(r, take_nan, v);
}

// 16 outputs a step: each pair of rows is split into its even and odd columns (two
// permutes per row), then the four candidates are compared in the scalar order, so the values,
// NaN payloads and signed zeros are those of the scalar kernel. Rows end in masked loads that
// read no column past 2 * ow.
__attribute__((target("avx512f"))) static void maxpool2x2_values_avx512(const float *x, long h, long w, long p0, long p1, float *y) {
    const long oh = h / 2, ow = w / 2;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (long p = p0; p < p1; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * oh * ow;
        for (long oy = 0; oy < oh; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            for (long ox = 0; ox < ow; ox += 16) {
                const long in = 2 * (ow - ox);  // input columns left in this row pair
                const __mmask16 klo = in >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << in) - 1);
                const __mmask16 khi = in >= 32 ? (__mmask16)0xFFFF : in <= 16 ? 0 : (__mmask16)((1u << (in - 16)) - 1);
                const __mmask16 kout = ow - ox >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (ow - ox)) - 1);
                const __m512 a0 = _mm512_maskz_loadu_ps(klo, r0 + 2 * ox), a1 = _mm512_maskz_loadu_ps(khi, r0 + 2 * ox + 16);
                const __m512 b0 = _mm512_maskz_loadu_ps(klo, r1 + 2 * ox), b1 = _mm512_maskz_loadu_ps(khi, r1 + 2 * ox + 16);
                __m512 best = _mm512_permutex2var_ps(a0, even, a1);
                best = pick16(best, _mm512_permutex2var_ps(a0, odd, a1));
                best = pick16(best, _mm512_permutex2var_ps(b0, even, b1));
                best = pick16(best, _mm512_permutex2var_ps(b0, odd, b1));
                _mm512_mask_storeu_ps(dst + oy * ow + ox, kout, best);
            }
        }
    }
}
#endif

void lathe_maxpool2x2_values_f32(const float *x, long h, long w, long p0, long p1, float *y) {
    const long oh = h / 2, ow = w / 2;
#if defined(__x86_64__)
    if (lathe_active_isa() == LATHE_ISA_AVX512) {
        maxpool2x2_values_avx512(x, h, w, p0, p1, y);
        return;
    }
#endif
    for (long p = p0; p < p1; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * oh * ow;
        for (long oy = 0; oy < oh; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            for (long ox = 0; ox < ow; ox++) {
                // The same order of comparisons as with indices, so NaNs and ties give the same value.
                float best = r0[2 * ox];
                best = pick(best, r0[2 * ox + 1]);
                best = pick(best, r1[2 * ox]);
                dst[oy * ow + ox] = pick(best, r1[2 * ox + 1]);
            }
        }
    }
}

void lathe_maxpool2x2_f32(const float *x, long h, long w, long p0, long p1, float *y, int32_t *index) {
    const long oh = h / 2, ow = w / 2;
    for (long p = p0; p < p1; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * oh * ow;
        int32_t *idx = index + p * oh * ow;
        for (long oy = 0; oy < oh; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            const int32_t base = (int32_t)(2 * oy * w);
            for (long ox = 0; ox < ow; ox++) {
                float best = r0[2 * ox];
                int32_t bi = base + (int32_t)(2 * ox);
                take(r0[2 * ox + 1], bi + 1, &best, &bi);
                take(r1[2 * ox], base + (int32_t)(w + 2 * ox), &best, &bi);
                take(r1[2 * ox + 1], base + (int32_t)(w + 2 * ox + 1), &best, &bi);
                dst[oy * ow + ox] = best;
                idx[oy * ow + ox] = bi;
            }
        }
    }
}

void lathe_maxpool2x2_backward_f32(const float *g, const int32_t *index, long h, long w, long p0,
                                   long p1, float *dx) {
    const long n = (h / 2) * (w / 2);
    for (long p = p0; p < p1; p++) {
        float *plane = dx + p * h * w;
        memset(plane, 0, sizeof(float) * (size_t)(h * w));
        const float *gp = g + p * n;
        const int32_t *ip = index + p * n;
        for (long o = 0; o < n; o++) plane[ip[o]] += gp[o];
    }
}
