// elementwise.c: unary / binary / clamp / axpy kernels on float32 (lathe_elementwise.h),
// plus the run-time ISA choice shared with reduce.c and convert.c.
//
// Each kernel body is written once (the LM_BODY section at the bottom) as plain loops over
// the branch-free functions of mathfun.h; this file includes itself three times to compile
// the body as a portable version (*_gen: SSE2 on x86-64, NEON on arm64 by auto-vectorisation),
// an AVX2+FMA version (*_avx2) and an AVX-512 version (*_avx512) with per-function target
// attributes. The public functions pick one at run time (lathe_ew_isa()).
#ifndef LM_BODY

#include "lathe_elementwise.h"
#include "lathe_kernels.h"
#include "mathfun.h"

#include <stdlib.h>
#include <string.h>

// ---- ISA choice -----------------------------------------------------------------------------
// lathe_active_isa() lives in cpu.c (another module). It is referenced weakly, so these
// kernels also link (and fall back to their own detection) without it, e.g. in the C tests.
#if defined(__GNUC__) || defined(__clang__)
#pragma weak lathe_active_isa
#endif

static int g_ew_cpu = -1;    // best ISA of this CPU, computed once
static int g_ew_force = -1;  // test override
static int g_ew_env = -2;    // LATHE_ISA env value (-1 = unset), computed once

int lathe_ew_cpu_isa(void) {
    int v = __atomic_load_n(&g_ew_cpu, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    v = 0;
#if LM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        v = 1;
    if (v == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        v = 2;
#endif
    __atomic_store_n(&g_ew_cpu, v, __ATOMIC_RELAXED);
    return v;
}

static int ew_env_isa(void) {
    int v = __atomic_load_n(&g_ew_env, __ATOMIC_RELAXED);
    if (v != -2) return v;
    const char *s = getenv("LATHE_ISA");
    v = -1;
    if (s) {
        if (!strcmp(s, "scalar") || !strcmp(s, "neon")) v = 0;
        else if (!strcmp(s, "avx2")) v = 1;
        else if (!strcmp(s, "avx512")) v = 2;
    }
    __atomic_store_n(&g_ew_env, v, __ATOMIC_RELAXED);
    return v;
}

int lathe_ew_isa(void) {
    int cpu = lathe_ew_cpu_isa();
    int want = __atomic_load_n(&g_ew_force, __ATOMIC_RELAXED);
    if (want < 0) {
        if (lathe_active_isa) {
            lathe_isa a = lathe_active_isa();
            want = a == LATHE_ISA_AVX512 ? 2 : a == LATHE_ISA_AVX2 ? 1 : 0;
        } else {
            want = ew_env_isa();
            if (want < 0) want = cpu;
        }
    }
    return want < cpu ? want : cpu;
}

int lathe_ew_force_isa(int isa) {
    __atomic_store_n(&g_ew_force, isa, __ATOMIC_RELAXED);
    return isa < 0 ? lathe_ew_isa() : (isa < lathe_ew_cpu_isa() ? isa : lathe_ew_cpu_isa());
}

// ---- the three compilations of the kernel bodies -------------------------------------------
#define LM_SELF "elementwise.c"
#include "multiversion.h"
#undef LM_SELF

// ---- public entry points ---------------------------------------------------------------------
#define CHUNK 256

void lathe_unary_f32(int op, const float *x, long sx, float *y, long sy, long n) {
    if (n <= 0) return;
    if (sx == 1 && sy == 1) {
        LM_DISPATCH(unary_contig, (op, x, y, n));
        return;
    }
    if (sx == 0) {  // broadcast input: one value
        float v = x[0], r;
        LM_DISPATCH(unary_contig, (op, &v, &r, 1));
        for (long i = 0; i < n; i++) y[i * sy] = r;
        return;
    }
    // general strides: gather a chunk, run the contiguous kernel, scatter
    float buf[CHUNK];
    for (long i0 = 0; i0 < n; i0 += CHUNK) {
        long m = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (long i = 0; i < m; i++) buf[i] = x[(i0 + i) * sx];
        LM_DISPATCH(unary_contig, (op, buf, buf, m));
        for (long i = 0; i < m; i++) y[(i0 + i) * sy] = buf[i];
    }
}

void lathe_unary_backward_f32(int op, const float *x, const float *y, const float *dy,
                              float *dx, long n) {
    if (n <= 0) return;
    LM_DISPATCH(unary_bwd, (op, x, y, dy, dx, n));
}

void lathe_gelu_erf_forward_f32(const float *x, float *y, float *d, long n) {
    if (n <= 0) return;
    LM_DISPATCH(gelu_erf_fwd, (x, y, d, n));
}

void lathe_swiglu_forward_f32(const float *g, const float *u, float *y, long n) {
    if (n <= 0) return;
    LM_DISPATCH(swiglu_fwd, (g, u, y, n));
}

void lathe_swiglu_backward_f32(const float *g, const float *u, const float *dy, float *dg, float *du, long n) {
    if (n <= 0) return;
    LM_DISPATCH(swiglu_bwd, (g, u, dy, dg, du, n));
}

void lathe_binary_f32(int op, const float *a, long sa, const float *b, long sb, float *y,
                      long sy, long n) {
    if (n <= 0) return;
    if (sy == 1) {
        if (sa == 1 && sb == 1) { LM_DISPATCH(binary_vv, (op, a, b, y, n)); return; }
        if (sa == 0 && sb == 1) { LM_DISPATCH(binary_sv, (op, a[0], b, y, n)); return; }
        if (sa == 1 && sb == 0) { LM_DISPATCH(binary_vs, (op, a, b[0], y, n)); return; }
    }
    if (sa == 0 && sb == 0) {
        float r;
        LM_DISPATCH(binary_vv, (op, a, b, &r, 1));
        for (long i = 0; i < n; i++) y[i * sy] = r;
        return;
    }
    // general strides (including a strided output): gather chunks, contiguous kernel, scatter
    float ba[CHUNK], bb[CHUNK];
    for (long i0 = 0; i0 < n; i0 += CHUNK) {
        long m = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (long i = 0; i < m; i++) ba[i] = a[(i0 + i) * sa];
        for (long i = 0; i < m; i++) bb[i] = b[(i0 + i) * sb];
        LM_DISPATCH(binary_vv, (op, ba, bb, ba, m));
        for (long i = 0; i < m; i++) y[(i0 + i) * sy] = ba[i];
    }
}

void lathe_clamp_f32(const float *x, float *y, long n, float lo, float hi) {
    if (n <= 0) return;
    LM_DISPATCH(clamp_k, (x, y, n, lo, hi));
}

void lathe_axpy_f32(long n, float alpha, const float *x, float *y) {
    if (n <= 0) return;
    LM_DISPATCH(axpy_k, (n, alpha, x, y));
}

void lathe_scale_shift_f32(long n, float alpha, float beta, const float *x, float *y) {
    if (n <= 0) return;
    LM_DISPATCH(scale_shift_k, (n, alpha, beta, x, y));
}

#else  // ======================= LM_BODY: compiled once per ISA ===============================

#define FN(name) LM_CAT(name, LM_SFX)
#define TRIG_BLOCK 256

// y[i] = sin or cos(x[i]) (cosq = 0 / 1), contiguous, y may alias x. Blocks of TRIG_BLOCK:
// vector polynomial into a local buffer, libm for the rare |x| > LM_TRIG_MAX, then store.
static LM_ATTR void FN(trig_contig)(uint32_t cosq, const float *x, float *y, long n) {
    float tmp[TRIG_BLOCK];
    for (long i0 = 0; i0 < n; i0 += TRIG_BLOCK) {
        long m = n - i0 < TRIG_BLOCK ? n - i0 : TRIG_BLOCK;
        const float *xb = x + i0;
        LM_VEC for (long j = 0; j < m; j++) tmp[j] = lm_sincosf(xb[j], cosq);
        for (long j = 0; j < m; j++)
            if (__builtin_fabsf(xb[j]) > LM_TRIG_MAX) tmp[j] = cosq ? cosf(xb[j]) : sinf(xb[j]);
        memcpy(y + i0, tmp, (size_t)m * sizeof(float));
    }
}

// y[i] = f(x[i]) over n contiguous floats (lathe_unary_op); y may alias x.
static LM_ATTR void FN(unary_contig)(int op, const float *x, float *y, long n) {
#define MAP(expr)                                             \
    do {                                                      \
        LM_VEC for (long i = 0; i < n; i++) {                 \
            float v = x[i];                                   \
            y[i] = (expr);                                    \
        }                                                     \
    } while (0)
    switch (op) {
    case LATHE_U_COPY: if (x != y) memmove(y, x, (size_t)n * sizeof(float)); break;
    case LATHE_U_NEG: MAP(-v); break;
    case LATHE_U_ABS: MAP(__builtin_fabsf(v)); break;
    case LATHE_U_EXP: MAP(lm_expf(v)); break;
    case LATHE_U_LOG: MAP(lm_logf(v)); break;
    case LATHE_U_SQRT: MAP(LM_SQRT(v)); break;
    case LATHE_U_RSQRT: MAP(1.0f / LM_SQRT(v)); break;
    case LATHE_U_TANH: MAP(lm_tanhf(v)); break;
    case LATHE_U_SIGMOID: MAP(lm_sigmoidf(v)); break;
    case LATHE_U_RELU: MAP(v > 0.0f ? v : (v != v ? v : 0.0f)); break;
    case LATHE_U_GELU_ERF: MAP(lm_gelu_erff(v)); break;
    case LATHE_U_GELU_TANH: MAP(lm_gelu_tanhf(v)); break;
    case LATHE_U_SILU: MAP(lm_siluf(v)); break;
    case LATHE_U_SOFTPLUS: MAP(lm_softplusf(v)); break;
    case LATHE_U_ERF: MAP(lm_erff(v)); break;
    case LATHE_U_SIGN: MAP(lm_signf(v)); break;
    case LATHE_U_RECIP: MAP(1.0f / v); break;
    case LATHE_U_SQUARE: MAP(v * v); break;
    case LATHE_U_SIN: FN(trig_contig)(0u, x, y, n); break;
    case LATHE_U_COS: FN(trig_contig)(1u, x, y, n); break;
    default: break;
    }
#undef MAP
}

// dx[i] = dy[i] * f'(x[i]) over n contiguous floats; y = f(x) is used where it is cheaper.
static LM_ATTR void FN(unary_bwd)(int op, const float *x, const float *y, const float *dy,
                                  float *dx, long n) {
#define BMAP(expr)                                            \
    do {                                                      \
        LM_VEC for (long i = 0; i < n; i++) {                 \
            float g = dy[i];                                  \
            dx[i] = (expr);                                   \
        }                                                     \
    } while (0)
#define XV x[i]
#define YV y[i]
    switch (op) {
    case LATHE_U_COPY: BMAP(g); break;
    case LATHE_U_NEG: BMAP(-g); break;
    case LATHE_U_ABS: BMAP(XV > 0.0f ? g : (XV < 0.0f ? -g : 0.0f)); break;
    case LATHE_U_EXP: BMAP(g * YV); break;
    case LATHE_U_LOG: BMAP(g / XV); break;
    case LATHE_U_SQRT: BMAP(g / (2.0f * YV)); break;
    case LATHE_U_RSQRT: BMAP(-0.5f * g * (YV * YV * YV)); break;
    case LATHE_U_TANH: BMAP(g * (1.0f - YV * YV)); break;
    case LATHE_U_SIGMOID: BMAP(g * ((1.0f - YV) * YV)); break;
    case LATHE_U_RELU: BMAP(XV > 0.0f ? g : 0.0f); break;
    case LATHE_U_GELU_ERF: {
        // d/dx [x Phi(x)] = Phi(x) + x phi(x)
        LM_VEC for (long i = 0; i < n; i++) {
            float v = x[i];
            float ax = __builtin_fabsf(v);
            float z = v * LM_SQRT1_2;
            float s = 1.0f + lm_erf_small(z);
            float c = lm_erfc_big(ax, LM_SQRT1_2, 0.5f);
            float big = v > 0.0f ? 2.0f - c : c;
            float cdf = 0.5f * ((z > -0.5f && z < 1.0f) ? s : big);
            float pdf = 0.3989422804014327f * lm_expf(-0.5f * v * v);
            dx[i] = dy[i] * (cdf + v * pdf);
        }
        break;
    }
    case LATHE_U_GELU_TANH: {
        // y = x s, s = sigmoid(2u): y' = s + 2 x s (1 - s) u', u' = sqrt(2/pi)(1 + 3c x^2)
        LM_VEC for (long i = 0; i < n; i++) {
            float v = x[i];
            float u2 = 2.0f * LM_SQRT_2_PI * (v + 0.044715f * v * v * v);
            float e = lm_expf(-__builtin_fabsf(u2));
            float d = 1.0f + e;
            float s = u2 >= 0.0f ? 1.0f / d : e / d;
            float s1s = e / (d * d);  // s (1 - s) without cancellation
            float du2 = 2.0f * LM_SQRT_2_PI * (1.0f + 3.0f * 0.044715f * v * v);
            dx[i] = dy[i] * (s + v * s1s * du2);
        }
        break;
    }
    case LATHE_U_SILU: LM_VEC for (long i = 0; i < n; i++) dx[i] = dy[i] * lm_silu_gradf(x[i]); break;
    case LATHE_U_SOFTPLUS: BMAP(XV > 20.0f ? g : g * lm_sigmoidf(XV)); break;
    case LATHE_U_ERF: BMAP(g * (1.1283791670955126f * lm_expf(-(XV * XV)))); break;
    case LATHE_U_SIGN: BMAP(g * 0.0f == 0.0f ? 0.0f : 0.0f); break;
    case LATHE_U_RECIP: BMAP(g * -(YV * YV)); break;
    case LATHE_U_SQUARE: BMAP(g * (2.0f * XV)); break;
    case LATHE_U_SIN:
    case LATHE_U_COS: {
        // sin' = cos, cos' = -sin: blocks through trig_contig so large |x| stays exact
        float tmp[TRIG_BLOCK];
        for (long i0 = 0; i0 < n; i0 += TRIG_BLOCK) {
            long m = n - i0 < TRIG_BLOCK ? n - i0 : TRIG_BLOCK;
            FN(trig_contig)(op == LATHE_U_SIN ? 1u : 0u, x + i0, tmp, m);
            float sg = op == LATHE_U_SIN ? 1.0f : -1.0f;
            LM_VEC for (long j = 0; j < m; j++) dx[i0 + j] = dy[i0 + j] * (sg * tmp[j]);
        }
        break;
    }
    default: break;
    }
#undef BMAP
#undef XV
#undef YV
}

// Binary op bodies; P is a's element, Q is b's element.
#define BIN_SWITCH(LOOP)                                                         \
    switch (op) {                                                                \
    case LATHE_B_ADD: LOOP(P + Q); break;                                        \
    case LATHE_B_SUB: LOOP(P - Q); break;                                        \
    case LATHE_B_MUL: LOOP(P * Q); break;                                        \
    case LATHE_B_DIV: LOOP(P / Q); break;                                        \
    case LATHE_B_MAX: LOOP(lm_maxf(P, Q)); break;                                \
    case LATHE_B_MIN: LOOP(lm_minf(P, Q)); break;                                \
    case LATHE_B_EQ: LOOP(P == Q ? 1.0f : 0.0f); break;                          \
    case LATHE_B_NE: LOOP(P != Q ? 1.0f : 0.0f); break;                          \
    case LATHE_B_LT: LOOP(P < Q ? 1.0f : 0.0f); break;                           \
    case LATHE_B_LE: LOOP(P <= Q ? 1.0f : 0.0f); break;                          \
    case LATHE_B_GT: LOOP(P > Q ? 1.0f : 0.0f); break;                           \
    case LATHE_B_GE: LOOP(P >= Q ? 1.0f : 0.0f); break;                          \
    case LATHE_B_POW: /* libm powf, not vectorised */                            \
        for (long i = 0; i < n; i++) y[i] = powf(PA, QB);                        \
        break;                                                                   \
    default: break;                                                              \
    }

#define BLOOP(expr)                                                              \
    do {                                                                         \
        LM_VEC for (long i = 0; i < n; i++) {                                    \
            float P = PA, Q = QB;                                                \
            (void)P, (void)Q;                                                    \
            y[i] = (expr);                                                       \
        }                                                                        \
    } while (0)

// y[i] = a[i] op b[i], contiguous; y may alias a or b.
static LM_ATTR void FN(binary_vv)(int op, const float *a, const float *b, float *y, long n) {
#define PA a[i]
#define QB b[i]
    BIN_SWITCH(BLOOP)
#undef PA
#undef QB
}

// y[i] = a op b[i] (a broadcast scalar), contiguous.
static LM_ATTR void FN(binary_sv)(int op, float a, const float *b, float *y, long n) {
#define PA a
#define QB b[i]
    BIN_SWITCH(BLOOP)
#undef PA
#undef QB
}

// y[i] = a[i] op b (b broadcast scalar), contiguous. pow with common scalar exponents avoids
// libm while keeping powf results (x^2 and x^-1 are correctly rounded either way).
static LM_ATTR void FN(binary_vs)(int op, const float *a, float b, float *y, long n) {
#define PA a[i]
#define QB b
    if (op == LATHE_B_POW) {
        if (b == 1.0f) { BLOOP(P); return; }
        if (b == 2.0f) { BLOOP(P * P); return; }
        if (b == -1.0f) { BLOOP(1.0f / P); return; }
        if (b == 0.0f) { BLOOP(1.0f); return; }
        if (b == 0.5f) {  // powf(-0, .5) = +0, powf(-inf, .5) = +inf, unlike sqrt
            BLOOP(P == -INFINITY ? INFINITY : LM_SQRT(P) + 0.0f);
            return;
        }
    }
    BIN_SWITCH(BLOOP)
#undef PA
#undef QB
}
#undef BLOOP
#undef BIN_SWITCH

// y[i] = min(max(x[i], lo), hi); NaN stays NaN.
static LM_ATTR void FN(clamp_k)(const float *x, float *y, long n, float lo, float hi) {
    LM_VEC for (long i = 0; i < n; i++) {
        float v = x[i];
        v = v < lo ? lo : v;
        y[i] = v > hi ? hi : v;
    }
}

// y[i] += alpha * x[i]
static LM_ATTR void FN(axpy_k)(long n, float alpha, const float *x, float *y) {
    LM_VEC for (long i = 0; i < n; i++) y[i] = y[i] + alpha * x[i];
}

// y[i] = alpha * x[i] + beta (y may alias x)
static LM_ATTR void FN(scale_shift_k)(long n, float alpha, float beta, const float *x, float *y) {
    LM_VEC for (long i = 0; i < n; i++) y[i] = alpha * x[i] + beta;
}

// SwiGLU: y = silu(g) u, with the arithmetic of silu followed by a multiplication.
static LM_ATTR void FN(swiglu_fwd)(const float *g, const float *u, float *y, long n) {
    LM_VEC for (long i = 0; i < n; i++) y[i] = lm_siluf(g[i]) * u[i];
}

// dg = (dy u) silu'(g) (silu' as the unary backward), du = dy silu(g).
static LM_ATTR void FN(swiglu_bwd)(const float *g, const float *u, const float *dy, float *dg, float *du, long n) {
    LM_VEC for (long i = 0; i < n; i++) {
        dg[i] = (dy[i] * u[i]) * lm_silu_gradf(g[i]);
        du[i] = dy[i] * lm_siluf(g[i]);
    }
}

// gelu (erf form) and its derivative in one pass: y as lm_gelu_erff, d = Phi(x) + x phi(x)
// (as the unary backward, up to rounding: phi comes from erfc's own exp(-x^2/2)).
static LM_ATTR void FN(gelu_erf_fwd)(const float *x, float *y, float *d, long n) {
    LM_VEC for (long i = 0; i < n; i++) {
        float v = x[i];
        float ax = __builtin_fabsf(v);
        float z = v * LM_SQRT1_2;
        float s = 1.0f + lm_erf_small(z);
        float e64;  // exp(-x^2/2) * 2^64 (|x| clamped at 16, where x phi(x) is 0 in float)
        float c64 = lm_erfc_big_ke(ax, LM_SQRT1_2, 0.5f, 64, &e64);  // erfc(|z|) * 2^64
        int inside = z > -0.5f && z < 1.0f;
        float pos = 0.5f * v * (2.0f - c64 * 0x1p-64f);
        float neg = ((0.5f * v) * c64) * 0x1p-64f;
        y[i] = inside ? 0.5f * v * s : (v > 0.0f ? pos : neg);
        float c = c64 * 0x1p-64f;
        float cdf = 0.5f * (inside ? s : (v > 0.0f ? 2.0f - c : c));
        float pdf = 0.3989422804014327f * (e64 * 0x1p-64f);
        d[i] = cdf + v * pdf;
    }
}

#undef FN
#undef TRIG_BLOCK
#endif  // LM_BODY
