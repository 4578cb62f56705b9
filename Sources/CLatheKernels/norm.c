// Fused batch-norm and layer-norm kernels. Plain C loops over contiguous runs, which the
// compiler vectorises (like reduce.c, this file includes itself to compile them for the
// portable, AVX2 and AVX-512 targets); sums accumulate in double so the result does not depend on how
// the caller splits channels or rows.
#ifndef LM_BODY

#include "lathe_norm.h"
#include "mathfun.h"
#include <math.h>
#include <stddef.h>

// Sums with 16 independent lanes (vectorisable without reassociation), combined in a fixed
// order, so results do not depend on how callers split the work.
#define LANES 16

#define LM_SELF "norm.c"
#include "multiversion.h"
#undef LM_SELF

void lathe_batchnorm_train_forward_f32(const float *x, long n, long channels, long hw, long c0, long c1,
                                       const float *weight, const float *bias, float eps,
                                       float *y, float *mean, float *invstd, float *var) {
    LM_DISPATCH(batchnorm_train_forward_k, (x, n, channels, hw, c0, c1, weight, bias, eps, y, mean, invstd, var));
}

void lathe_batchnorm_apply_f32(const float *x, long n, long channels, long hw, long c0, long c1,
                               const float *mean, const float *invstd, const float *weight,
                               const float *bias, float *y) {
    LM_DISPATCH(batchnorm_apply_k, (x, n, channels, hw, c0, c1, mean, invstd, weight, bias, y));
}

void lathe_batchnorm_train_backward_f32(const float *dy, const float *x, long n, long channels, long hw,
                                        long c0, long c1, const float *mean, const float *invstd,
                                        const float *weight, float *dx, float *dweight, float *dbias) {
    LM_DISPATCH(batchnorm_train_backward_k, (dy, x, n, channels, hw, c0, c1, mean, invstd, weight, dx, dweight, dbias));
}

void lathe_layernorm_forward_f32(const float *x, long d, long r0, long r1, const float *weight,
                                 const float *bias, float eps, float *y, float *mean, float *rstd) {
    LM_DISPATCH(layernorm_forward_k, (x, d, r0, r1, weight, bias, eps, y, mean, rstd));
}

void lathe_layernorm_backward_f32(const float *dy, const float *x, long d, long r0, long r1,
                                  const float *mean, const float *rstd, const float *weight,
                                  float *dx, float *dweight, float *dbias) {
    LM_DISPATCH(layernorm_backward_k, (dy, x, d, r0, r1, mean, rstd, weight, dx, dweight, dbias));
}

#else  // ======================= LM_BODY: compiled once per ISA ===============================

#define FN(name) LM_CAT(name, LM_SFX)


LM_INLINE LM_ATTR float FN(lanes_total)(const float acc[LANES]) {
    float t = 0;
    for (int j = 0; j < LANES; j++) t += acc[j];
    return t;
}

// sum of p[i]
LM_INLINE LM_ATTR float FN(sum_f32)(const float *restrict p, long n) {
    float acc[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += p[i + j];
    float t = FN(lanes_total)(acc);
    for (; i < n; i++) t += p[i];
    return t;
}

// sum of (p[i] - m)^2
LM_INLINE LM_ATTR float FN(sumsq_centered_f32)(const float *restrict p, long n, float m) {
    float acc[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) { const float d = p[i + j] - m; acc[j] += d * d; }
    float t = FN(lanes_total)(acc);
    for (; i < n; i++) { const float d = p[i] - m; t += d * d; }
    return t;
}

// sum of g[i] and of g[i] * (p[i] - m)
LM_INLINE LM_ATTR void FN(sum_and_dot_centered_f32)(const float *restrict g, const float *restrict p, long n, float m,
                                     float *sg, float *sgx) {
    float a[LANES] = {0}, b[LANES] = {0};
    long i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) { a[j] += g[i + j]; b[j] += g[i + j] * (p[i + j] - m); }
    float ta = FN(lanes_total)(a), tb = FN(lanes_total)(b);
    for (; i < n; i++) { ta += g[i]; tb += g[i] * (p[i] - m); }
    *sg = ta;
    *sgx = tb;
}

static LM_ATTR void FN(batchnorm_train_forward_k)(const float *x, long n, long channels, long hw, long c0, long c1,
                                       const float *weight, const float *bias, float eps,
                                       float *y, float *mean, float *invstd, float *var) {
    const double count = (double)n * (double)hw;
    for (long c = c0; c < c1; c++) {
        double s = 0;
        for (long b = 0; b < n; b++) s += FN(sum_f32)(x + (b * channels + c) * hw, hw);
        const float m = (float)(s / count);
        double v = 0;
        for (long b = 0; b < n; b++) v += FN(sumsq_centered_f32)(x + (b * channels + c) * hw, hw, m);
        const float is = 1.0f / sqrtf((float)(v / count) + eps);
        if (var) var[c] = (float)(v / count);
        mean[c] = m;
        invstd[c] = is;
        const float scale = is * (weight ? weight[c] : 1.0f), shift = (bias ? bias[c] : 0.0f) - m * scale;
        for (long b = 0; b < n; b++) {
            const float *p = x + (b * channels + c) * hw;
            float *q = y + (b * channels + c) * hw;
            for (long i = 0; i < hw; i++) q[i] = p[i] * scale + shift;
        }
    }
}

static LM_ATTR void FN(batchnorm_apply_k)(const float *x, long n, long channels, long hw, long c0, long c1,
                               const float *mean, const float *invstd, const float *weight,
                               const float *bias, float *y) {
    for (long c = c0; c < c1; c++) {
        const float scale = invstd[c] * (weight ? weight[c] : 1.0f);
        const float shift = (bias ? bias[c] : 0.0f) - mean[c] * scale;
        for (long b = 0; b < n; b++) {
            const float *p = x + (b * channels + c) * hw;
            float *q = y + (b * channels + c) * hw;
            for (long i = 0; i < hw; i++) q[i] = p[i] * scale + shift;
        }
    }
}

static LM_ATTR void FN(batchnorm_train_backward_k)(const float *dy, const float *x, long n, long channels, long hw,
                                        long c0, long c1, const float *mean, const float *invstd,
                                        const float *weight, float *dx, float *dweight, float *dbias) {
    const double count = (double)n * (double)hw;
    for (long c = c0; c < c1; c++) {
        const float m = mean[c], is = invstd[c];
        double sdy = 0, sdyx = 0;
        for (long b = 0; b < n; b++) {
            float a, bsum;
            FN(sum_and_dot_centered_f32)(dy + (b * channels + c) * hw, x + (b * channels + c) * hw, hw, m, &a, &bsum);
            sdy += a;
            sdyx += bsum;
        }
        const float sumXhat = (float)(sdyx * is);  // sum dy * xhat
        if (dweight) dweight[c] = sumXhat;
        if (dbias) dbias[c] = (float)sdy;
        if (!dx) continue;
        const float w = weight ? weight[c] : 1.0f;
        const float k = w * is;
        const float meanDy = (float)(sdy / count), meanDyXhat = (float)(sdyx * is / count);
        for (long b = 0; b < n; b++) {
            const float *g = dy + (b * channels + c) * hw, *p = x + (b * channels + c) * hw;
            float *d = dx + (b * channels + c) * hw;
            for (long i = 0; i < hw; i++) {
                const float xhat = (p[i] - m) * is;
                d[i] = k * (g[i] - meanDy - xhat * meanDyXhat);
            }
        }
    }
}

static LM_ATTR void FN(layernorm_forward_k)(const float *x, long d, long r0, long r1, const float *weight,
                                 const float *bias, float eps, float *y, float *mean, float *rstd) {
    for (long r = r0; r < r1; r++) {
        const float *p = x + r * d;
        float *q = y + r * d;
        const float m = FN(sum_f32)(p, d) / (float)d;
        const float rs = 1.0f / sqrtf(FN(sumsq_centered_f32)(p, d, m) / (float)d + eps);
        mean[r] = m;
        rstd[r] = rs;
        if (weight && bias) {
            for (long i = 0; i < d; i++) q[i] = (p[i] - m) * rs * weight[i] + bias[i];
        } else if (weight) {
            for (long i = 0; i < d; i++) q[i] = (p[i] - m) * rs * weight[i];
        } else {
            for (long i = 0; i < d; i++) q[i] = (p[i] - m) * rs + (bias ? bias[i] : 0.0f);
        }
    }
}

static LM_ATTR void FN(layernorm_backward_k)(const float *dy, const float *x, long d, long r0, long r1,
                                  const float *mean, const float *rstd, const float *weight,
                                  float *dx, float *dweight, float *dbias) {
    for (long r = r0; r < r1; r++) {
        const float *restrict g = dy + r * d, *restrict p = x + r * d;
        const float m = mean[r], rs = rstd[r];
        // sums of g*w and g*w*(x - m), in 16 lanes
        float a[LANES] = {0}, b[LANES] = {0};
        long i = 0;
        for (; i + LANES <= d; i += LANES)
            for (int j = 0; j < LANES; j++) {
                const float gi = g[i + j] * (weight ? weight[i + j] : 1.0f);
                a[j] += gi;
                b[j] += gi * (p[i + j] - m);
            }
        float sg = FN(lanes_total)(a), sgx = FN(lanes_total)(b);
        for (; i < d; i++) {
            const float gi = g[i] * (weight ? weight[i] : 1.0f);
            sg += gi;
            sgx += gi * (p[i] - m);
        }
        sgx *= rs;
        if (dweight) {
            float *restrict dw = dweight;
            for (long k = 0; k < d; k++) dw[k] += g[k] * (p[k] - m) * rs;
        }
        if (dbias) {
            float *restrict db = dbias;
            for (long k = 0; k < d; k++) db[k] += g[k];
        }
        if (!dx) continue;
        const float mg = sg / (float)d, mgx = sgx / (float)d;
        float *restrict o = dx + r * d;
        if (weight) {
            for (long k = 0; k < d; k++) o[k] = rs * (g[k] * weight[k] - mg - (p[k] - m) * rs * mgx);
        } else {
            for (long k = 0; k < d; k++) o[k] = rs * (g[k] - mg - (p[k] - m) * rs * mgx);
        }
    }
}

#undef FN
#endif  // LM_BODY
