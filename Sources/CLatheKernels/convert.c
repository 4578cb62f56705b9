// convert.c: float32 <-> float16 (IEEE binary16) and float32 <-> bfloat16 conversions.
//
// f16: F16C / AVX-512 vcvtps2ph / vcvtph2ps on x86 (round to nearest even, subnormals,
// inf, NaN kept as quiet NaN); elsewhere a branch-free bit routine that the compiler
// vectorises. bf16: integer rounding (nearest even on the top 16 bits, NaN forced quiet),
// vectorised by the compiler on every ISA. All functions take contiguous arrays of n.
#ifndef LM_BODY

#include "lathe_elementwise.h"
#include "mathfun.h"

#if LM_X86
#include <immintrin.h>
#endif

// ---- scalar reference routines (branch-free; used by the portable path and for tails) ----
// binary32 -> binary16, round to nearest even. NaN -> quiet NaN with the top payload bits.
LM_INLINE uint16_t lm_f32_to_f16_bits(float f) {
    uint32_t u = lm_asuint(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    // normal results: rebias, round to nearest even on bit 13
    uint32_t norm = (a - ((127u - 15u) << 23) + 0x0fffu + ((a >> 13) & 1u)) >> 13;
    // subnormal results (a < 2^-14): adding 0.5 (binary32) makes the FPU round the bits for us
    float sf = lm_asfloat(a) + 0.5f;
    uint32_t subn = lm_asuint(sf) - 0x3f000000u;
    uint32_t nan = 0x7e00u | ((a >> 13) & 0x03ffu);
    uint32_t r = a < 0x38800000u ? subn : norm;  // 0x38800000 = 2^-14
    r = a >= 0x477ff000u ? 0x7c00u : r;          // rounds to >= 65536: infinity
    r = a > 0x7f800000u ? nan : r;
    return (uint16_t)(r | sign);
}

// binary16 -> binary32 (exact).
LM_INLINE float lm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t a = h & 0x7fffu;
    uint32_t e = a & 0x7c00u;
    uint32_t norm = (a << 13) + ((127u - 15u) << 23);
    uint32_t infnan = (a << 13) | 0x7f800000u;
    // subnormal: value = mantissa * 2^-24, exact in binary32
    float sub = (float)a * 0x1p-24f;
    uint32_t r = e == 0x7c00u ? infnan : norm;
    r = e == 0 ? lm_asuint(sub) : r;
    return lm_asfloat(r | sign);
}

// binary32 -> bfloat16, round to nearest even; NaN stays NaN (quiet bit set).
LM_INLINE uint16_t lm_f32_to_bf16_bits(float f) {
    uint32_t u = lm_asuint(f);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x0040u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
}

#define LM_SELF "convert.c"
#include "multiversion.h"
#undef LM_SELF

void lathe_f32_to_f16(const float *x, uint16_t *y, long n) {
    if (n > 0) LM_DISPATCH(f32_to_f16_k, (x, y, n));
}
void lathe_f16_to_f32(const uint16_t *x, float *y, long n) {
    if (n > 0) LM_DISPATCH(f16_to_f32_k, (x, y, n));
}
void lathe_f32_to_bf16(const float *x, uint16_t *y, long n) {
    if (n > 0) LM_DISPATCH(f32_to_bf16_k, (x, y, n));
}
void lathe_bf16_to_f32(const uint16_t *x, float *y, long n) {
    if (n > 0) LM_DISPATCH(bf16_to_f32_k, (x, y, n));
}

#else  // ======================= LM_BODY: compiled once per ISA ===============================

#define FN(name) LM_CAT(name, LM_SFX)

// y[i] = f16(x[i])
static LM_ATTR void FN(f32_to_f16_k)(const float *x, uint16_t *y, long n) {
    long i = 0;
#if defined(LM_PASS_AVX512)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(y + i, k, h);
        i = n;
    }
#elif defined(LM_PASS_AVX2)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    LM_VEC for (long j = i; j < n; j++) y[j] = lm_f32_to_f16_bits(x[j]);
}

// y[i] = f32(x[i]) from f16 bits
static LM_ATTR void FN(f16_to_f32_k)(const uint16_t *x, float *y, long n) {
    long i = 0;
#if defined(LM_PASS_AVX512)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, x + i)));
        i = n;
    }
#elif defined(LM_PASS_AVX2)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
#endif
    LM_VEC for (long j = i; j < n; j++) y[j] = lm_f16_to_f32(x[j]);
}

// y[i] = bf16(x[i]), round to nearest even
static LM_ATTR void FN(f32_to_bf16_k)(const float *x, uint16_t *y, long n) {
    LM_VEC for (long i = 0; i < n; i++) y[i] = lm_f32_to_bf16_bits(x[i]);
}

// y[i] = f32(x[i]) from bf16 bits (exact)
static LM_ATTR void FN(bf16_to_f32_k)(const uint16_t *x, float *y, long n) {
    LM_VEC for (long i = 0; i < n; i++) y[i] = lm_asfloat((uint32_t)x[i] << 16);
}

#undef FN
#endif  // LM_BODY
