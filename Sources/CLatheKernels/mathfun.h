// mathfun.h: internal to CLatheKernels (elementwise.c, reduce.c, convert.c).
//
// Branch-free scalar float math (exp, log, tanh, sigmoid, erf, erfc, sin, cos, ...) written so
// that the compiler's loop vectoriser turns a loop of calls into straight SIMD code: no
// branches, no libm calls, no float->int conversions of possibly-NaN values (integers are
// taken from the bits of a "magic number" sum instead), special cases chosen with ?: selects.
// The kernels call these from loops inside functions marked with per-function target
// attributes (AVX2+FMA, AVX-512), so plain -O2 builds get AVX2/AVX-512 code chosen at run
// time, and a baseline (SSE2 / NEON) build of the same source everywhere else.
//
// Accuracy (max ulp vs double libm over every 31st float bit pattern, all three ISA paths;
// bench/c/elementwise_test.c): exp 1.0, log 0.8, tanh 1.3, sigmoid 2.3, silu 3.2, softplus
// 1.9, erf 2.5, gelu_erf 5.6 (2.6 for x > -2.8; the rest is the tiny negative tail),
// gelu_tanh ~1.5 ulp per unit of the formula's condition number, sin/cos 1.9.
// libm semantics for +-inf, NaN, overflow/underflow, log(0) = -inf, log(<0) = NaN.
#ifndef LATHE_MATHFUN_H
#define LATHE_MATHFUN_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define LM_INLINE static inline __attribute__((always_inline))
#else
#define LM_INLINE static inline
#endif

#ifndef __has_builtin
#define __has_builtin(x) 0
#endif

// sqrtf() cannot be vectorised when errno is honoured (the default on Linux); the
// elementwise builtin is the IEEE square root without errno (NaN for negative input).
#if __has_builtin(__builtin_elementwise_sqrt)
#define LM_SQRT(x) __builtin_elementwise_sqrt(x)
#else
#define LM_SQRT(x) sqrtf(x)
#endif

// Loop pragma: iterations are independent (outputs may alias inputs only exactly, element
// for element), so the vectoriser needs no run-time overlap checks.
#if defined(__clang__)
#define LM_VEC _Pragma("clang loop vectorize(assume_safety) interleave(enable)")
#elif defined(__GNUC__)
#define LM_VEC _Pragma("GCC ivdep")
#else
#define LM_VEC
#endif

// x86-64 variants compiled with per-function target attributes.
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define LM_X86 1
#define LM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LM_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#else
#define LM_X86 0
#endif

// ---- ISA selection for the elementwise/reduce/convert kernels (defined in elementwise.c) ----
// 0 = portable, 1 = AVX2+FMA+F16C, 2 = AVX-512 (F/BW/VL/DQ). Same numbers as lathe_isa.
// Order: lathe_ew_force_isa() override (tests), else lathe_active_isa() when the cpu.c module
// is linked, else LATHE_ISA env ("scalar"/"avx2"/"avx512"), else the best the CPU has;
// always clamped to what the CPU supports.
int lathe_ew_isa(void);
/// Test hook: force an ISA (0/1/2) for these kernels, or -1 to go back to automatic.
/// Returns the ISA actually in effect (lower if the CPU lacks the requested one).
int lathe_ew_force_isa(int isa);
/// Best ISA this CPU supports for these kernels (0/1/2).
int lathe_ew_cpu_isa(void);

// Kernel bodies are compiled once per ISA with a name suffix (_gen, _avx2, _avx512);
// LM_DISPATCH(name, (args)) calls the variant for lathe_ew_isa().
#define LM_CAT2(a, b) a##b
#define LM_CAT(a, b) LM_CAT2(a, b)
#if LM_X86
#define LM_DISPATCH(name, args)                          \
    do {                                                 \
        int isa_ = lathe_ew_isa();                       \
        if (isa_ == 2) name##_avx512 args;               \
        else if (isa_ == 1) name##_avx2 args;            \
        else name##_gen args;                            \
    } while (0)
#else
#define LM_DISPATCH(name, args) name##_gen args
#endif

// ---- bit casts --------------------------------------------------------------------------
LM_INLINE uint32_t lm_asuint(float f) { uint32_t u; __builtin_memcpy(&u, &f, 4); return u; }
LM_INLINE float lm_asfloat(uint32_t u) { float f; __builtin_memcpy(&f, &u, 4); return f; }

#define LM_MAGIC 12582912.0f  // 1.5 * 2^23: x + MAGIC rounds x to an integer kept in the low bits

// ---- exp ----------------------------------------------------------------------------------
// exp(x) = 2^n * e^r, n = round(x/ln2), r = x - n*ln2 (two-part ln2, n*hi exact),
// e^r by a degree-7 polynomial (Cephes-style coefficients) on |r| <= ln2/2.
// The scale 2^n is applied as two factors 2^(n/2) * 2^(n-n/2), both normal floats, so
// overflow gives +inf and gradual underflow rounds once into the subnormal range.
// lm_expf_k(x, k) = exp(x) * 2^k for k in [0, 64] with a single rounding: lets callers keep
// full precision where exp(x) alone would be subnormal.
LM_INLINE float lm_expf_k(float x, int32_t k) {
    x = x > 100.0f ? 100.0f : x;     // NaN compares false and stays NaN
    x = x < -110.0f ? -110.0f : x;
    float t = x * 1.44269504088896341f + LM_MAGIC;
    float n = t - LM_MAGIC;
    int32_t ni = (int32_t)(lm_asuint(t) - 0x4b400000u);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = (p * r2 + r) + 1.0f;
    ni += k;
    int32_t h = ni / 2;
    float s1 = lm_asfloat((uint32_t)(h + 127) << 23);
    float s2 = lm_asfloat((uint32_t)(ni - h + 127) << 23);
    return (p * s1) * s2;
}
LM_INLINE float lm_expf(float x) { return lm_expf_k(x, 0); }

// ---- log ----------------------------------------------------------------------------------
// x = 2^k * m with m in [sqrt(1/2), sqrt(2)), log(x) = k*ln2 + log1p(f), f = m - 1,
// log1p(f) = f - f^2/2 + f^3 P(f) (Cephes-style minimax). Subnormals are scaled by 2^23.
LM_INLINE float lm_logf(float x) {
    int sub = x < 0x1p-126f;
    float xs = sub ? x * 0x1p23f : x;
    uint32_t ix = lm_asuint(xs) + (0x3f800000u - 0x3f3504f3u);
    int32_t k = (int32_t)(ix >> 23) - 0x7f - (sub ? 23 : 0);
    ix = (ix & 0x007fffffu) + 0x3f3504f3u;
    float f = lm_asfloat(ix) - 1.0f;
    float fk = (float)k;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = p * f * z;
    y = y + fk * -2.12194440e-4f;
    y = y - 0.5f * z;
    float r = f + y;
    r = r + fk * 0.693359375f;
    r = x < 0.0f ? __builtin_nanf("") : r;
    r = x == 0.0f ? -INFINITY : r;
    r = x == INFINITY ? INFINITY : r;
    r = x != x ? x : r;
    return r;
}

// log(1 + u) for u in [0, 1] (used by softplus): log(w) corrected for the rounding of w = 1+u.
LM_INLINE float lm_log1p_01(float u) {
    float w = 1.0f + u;
    float c = (u - (w - 1.0f)) / w;
    return lm_logf(w) + c;
}

// ---- tanh ---------------------------------------------------------------------------------
// |x| < 0.625: odd minimax polynomial; else sign(x) * (1 - 2/(e^{2|x|} + 1)), saturating to
// +-1 (e^{2|x|} overflows to inf for large |x|).
LM_INLINE float lm_tanhf(float x) {
    float ax = __builtin_fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = (p * z) * x + x;
    float e = lm_expf(2.0f * ax);
    float big = __builtin_copysignf(1.0f - 2.0f / (e + 1.0f), x);
    return ax < 0.625f ? small : big;
}

// ---- sigmoid family ----------------------------------------------------------------------
// sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) for x < 0, with e = exp(-|x|) in (0, 1]: no
// overflow, full relative accuracy in both tails.
LM_INLINE float lm_sigmoidf(float x) {
    float e = lm_expf(-__builtin_fabsf(x));
    float d = 1.0f + e;
    return x >= 0.0f ? 1.0f / d : e / d;
}
// silu(x) = x * sigmoid(x): x/(1+e) for x >= 0, x e/(1+e) for x < 0 with e scaled by 2^64
// so results down in the subnormal range (x < -87) are still rounded once.
LM_INLINE float lm_siluf(float x) {
    float e64 = lm_expf_k(-__builtin_fabsf(x), 64);
    float d = 1.0f + e64 * 0x1p-64f;
    float neg = x < -200.0f ? x * 0.0f : ((x * e64) / d) * 0x1p-64f;  // -inf gives NaN as torch
    return x >= 0.0f ? x / d : neg;
}
// silu'(x) = s (1 + x (1 - s)) with s = sigmoid(x), 1 - s = sigmoid(-x) computed directly.
LM_INLINE float lm_silu_gradf(float v) {
    float e = lm_expf(-__builtin_fabsf(v));
    float d = 1.0f + e;
    float s = v >= 0.0f ? 1.0f / d : e / d;
    float oms = v >= 0.0f ? e / d : 1.0f / d;
    return s * (1.0f + v * oms);
}
// softplus (beta 1, threshold 20 like PyTorch): x for x > 20 else log1p(exp(x)), computed as
// max(x, 0) + log1p(exp(-|x|)).
LM_INLINE float lm_softplusf(float x) {
    float e = lm_expf(-__builtin_fabsf(x));
    float r = (x > 0.0f ? x : 0.0f) + lm_log1p_01(e);
    r = x != x ? x : r;
    return x > 20.0f ? x : r;
}

// ---- erf / erfc ---------------------------------------------------------------------------
// |x| < 1: erf(x) = x P(x^2). |x| >= 1: erfc(z) = exp(-z^2) R(z), R(z) = erfc(z) e^{z^2} by
// one polynomial in z - 1.5 on [0.5, 2.5) and (1/z) Q(1/z) beyond. exp(-z^2) uses z^2 split
// exactly into hi + lo (Dekker), so erfc keeps its relative accuracy far into the tail.
LM_INLINE float lm_erf_small(float x) {  // |x| <= 1
    float z = x * x;
    float p = 7.885991362854838e-05f;
    p = p * z - 0.0008020474342629313f;
    p = p * z + 0.005189584102481604f;
    p = p * z - 0.026854541152715683f;
    p = p * z + 0.11283605545759201f;
    p = p * z - 0.3761262893676758f;
    p = p * z + 1.128379225730896f;
    return x * p;
}
// erfc(a * s) * 2^k for a * s >= 1/2, where sq = s*s must be exact (1 or 1/2); a is the
// unscaled value so that the exponent -(a^2 sq) is formed exactly. k = 64 keeps tiny results
// (in the subnormal range unscaled) accurate for the gelu tail.
LM_INLINE float lm_erfc_big_ke(float a, float s, float sq, int32_t k, float *exp_part);
LM_INLINE float lm_erfc_big_k(float a, float s, float sq, int32_t k) {
    float e;
    return lm_erfc_big_ke(a, s, sq, k, &e);
}
// The same, also giving exp(-min(a, 16)^2 sq) * 2^k (the Gaussian factor of erfc).
LM_INLINE float lm_erfc_big_ke(float a, float s, float sq, int32_t k, float *exp_part) {
    float z = a * s;
    a = a > 16.0f ? 16.0f : a;  // erfc is 0 in float there; avoids inf - inf (NaN stays NaN)
    // a^2 = hi + lo exactly (Dekker split; exact products whether or not FMA is contracted)
    float ah = lm_asfloat(lm_asuint(a) & 0xfffff000u);
    float al = a - ah;
    float hi = a * a;
    float lo = ((ah * ah - hi) + 2.0f * ah * al) + al * al;
    hi = hi * sq;
    lo = lo * sq;
    float e = lm_expf_k(-hi, k);
    e = e - e * lo;
    *exp_part = e;
    // R on [0.5, 2.5)
    float u = z - 1.5f;
    float r1 = -8.328191e-06f;
    r1 = r1 * u + 3.000552533e-05f;
    r1 = r1 * u - 7.221661508e-05f;
    r1 = r1 * u + 2.150375221e-04f;
    r1 = r1 * u - 6.612114375e-04f;
    r1 = r1 * u + 1.890412765e-03f;
    r1 = r1 * u - 5.146530923e-03f;
    r1 = r1 * u + 1.337636169e-02f;
    r1 = r1 * u - 3.293078020e-02f;
    r1 = r1 * u + 7.615111768e-02f;
    r1 = r1 * u - 1.636229306e-01f;
    r1 = r1 * u + 3.215854168e-01f;
    // R on [2.5, inf): (1/z) Q(1/z)
    float t = 1.0f / z;
    float r2 = 0.047243960201740265f;
    r2 = r2 * t + 0.2929830551147461f;
    r2 = r2 * t - 0.7782453894615173f;
    r2 = r2 * t + 0.6447597742080688f;
    r2 = r2 * t - 0.03682226687669754f;
    r2 = r2 * t - 0.27849215269088745f;
    r2 = r2 * t - 0.00019159000657964498f;
    r2 = r2 * t + 0.564193844795227f;
    r2 = r2 * t;
    float r = z < 2.5f ? r1 : r2;
    return e * r;
}
LM_INLINE float lm_erfc_big(float a, float s, float sq) { return lm_erfc_big_k(a, s, sq, 0); }
LM_INLINE float lm_erff(float x) {
    float ax = __builtin_fabsf(x);
    float s = lm_erf_small(x);
    float big = __builtin_copysignf(1.0f - lm_erfc_big(ax, 1.0f, 1.0f), x);
    return ax < 1.0f ? s : big;  // NaN: big is NaN
}
// gelu (erf form) = 0.5 x (1 + erf(x/sqrt2)); for x/sqrt2 outside (-1/2, 1) via erfc, so the negative tail
// (x * erfc, tiny) keeps its relative accuracy.
#define LM_SQRT1_2 0.70710678118654752f
LM_INLINE float lm_gelu_erff(float x) {
    float ax = __builtin_fabsf(x);
    float z = x * LM_SQRT1_2;
    float s = 1.0f + lm_erf_small(z);
    float c64 = lm_erfc_big_k(ax, LM_SQRT1_2, 0.5f, 64);  // erfc(|z|) * 2^64
    float pos = 0.5f * x * (2.0f - c64 * 0x1p-64f);
    float neg = ((0.5f * x) * c64) * 0x1p-64f;
    // 1 + erf(z): polynomial for -1/2 < z < 1, erfc form outside (no cancellation for z < 0)
    float big = x > 0.0f ? pos : neg;
    return (z > -0.5f && z < 1.0f) ? 0.5f * x * s : big;
}
// gelu (tanh form) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3)
#define LM_SQRT_2_PI 0.79788456080286536f
LM_INLINE float lm_gelu_tanhf(float x) {
    float u = LM_SQRT_2_PI * (x + 0.044715f * x * x * x);
    return x * lm_sigmoidf(2.0f * u);
}

// ---- sin / cos ----------------------------------------------------------------------------
// n = round(x * 2/pi), r = x - n pi/2 (two-part Cody-Waite in double), minimax sin/cos on
// |r| <= pi/4, quadrant by the low bits of n. Accurate for |x| <= LM_TRIG_MAX; kernels
// recompute larger |x| with libm sinf/cosf (Payne-Hanek reduction).
#define LM_TRIG_MAX 1.0e6f
LM_INLINE float lm_sincosf(float x, uint32_t cosq) {
    float t = x * 0.63661977236758134f + LM_MAGIC;
    float n = t - LM_MAGIC;
    uint32_t q = lm_asuint(t) + cosq;
    // reduction in double: pi/2 = hi (33 bits, so n*hi is exact for |n| < 2^20) + lo
    double nd = (double)n;
    float r = (float)(((double)x - nd * 1.5707963267341256) - nd * 6.077100506506192e-11);
    float r2 = r * r;
    float ps = -1.9515295891e-4f;
    ps = ps * r2 + 8.3321608736e-3f;
    ps = ps * r2 - 1.6666654611e-1f;
    float s = r + r * r2 * ps;
    float pc = 2.443315711809948e-5f;
    pc = pc * r2 - 1.388731625493765e-3f;
    pc = pc * r2 + 4.166664568298827e-2f;
    float c = (1.0f - 0.5f * r2) + r2 * r2 * pc;
    float v = (q & 1u) ? c : s;
    return lm_asfloat(lm_asuint(v) ^ ((q & 2u) << 30));
}
LM_INLINE float lm_sinf(float x) { return lm_sincosf(x, 0u); }
LM_INLINE float lm_cosf(float x) { return lm_sincosf(x, 1u); }

// ---- small helpers ------------------------------------------------------------------------
// NaN-propagating max/min (like torch.maximum / torch.minimum).
LM_INLINE float lm_maxf(float a, float b) { return (a > b || a != a) ? a : b; }
LM_INLINE float lm_minf(float a, float b) { return (a < b || a != a) ? a : b; }
LM_INLINE float lm_signf(float x) {
    float s = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    return x != x ? x : s;
}

#endif
