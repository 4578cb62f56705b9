// Fused batch-norm and layer-norm kernels. Plain C loops over contiguous runs, which the
// compiler vectorises; sums accumulate in double so the result does not depend on how
// the caller splits channels or rows.
#include "lathe_norm.h"
#include <math.h>
#include <stddef.h>

void lathe_batchnorm_train_forward_f32(const float *x, long n, long channels, long hw, long c0, long c1,
                                       const float *weight, const float *bias, float eps,
                                       float *y, float *mean, float *invstd, float *var) {
    const double count = (double)n * (double)hw;
    for (long c = c0; c < c1; c++) {
        double s = 0;
        for (long b = 0; b < n; b++) {
            const float *p = x + (b * channels + c) * hw;
            float part = 0;
            for (long i = 0; i < hw; i++) part += p[i];
            s += part;
        }
        const float m = (float)(s / count);
        double v = 0;
        for (long b = 0; b < n; b++) {
            const float *p = x + (b * channels + c) * hw;
            float part = 0;
            for (long i = 0; i < hw; i++) { float d = p[i] - m; part += d * d; }
            v += part;
        }
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

void lathe_batchnorm_apply_f32(const float *x, long n, long channels, long hw, long c0, long c1,
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

void lathe_batchnorm_train_backward_f32(const float *dy, const float *x, long n, long channels, long hw,
                                        long c0, long c1, const float *mean, const float *invstd,
                                        const float *weight, float *dx, float *dweight, float *dbias) {
    const double count = (double)n * (double)hw;
    for (long c = c0; c < c1; c++) {
        const float m = mean[c], is = invstd[c];
        double sdy = 0, sdyx = 0;
        for (long b = 0; b < n; b++) {
            const float *g = dy + (b * channels + c) * hw, *p = x + (b * channels + c) * hw;
            float a = 0, bsum = 0;
            for (long i = 0; i < hw; i++) { a += g[i]; bsum += g[i] * (p[i] - m); }
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

void lathe_layernorm_forward_f32(const float *x, long d, long r0, long r1, const float *weight,
                                 const float *bias, float eps, float *y, float *mean, float *rstd) {
    for (long r = r0; r < r1; r++) {
        const float *p = x + r * d;
        float *q = y + r * d;
        float s = 0;
        for (long i = 0; i < d; i++) s += p[i];
        const float m = s / (float)d;
        float v = 0;
        for (long i = 0; i < d; i++) { float t = p[i] - m; v += t * t; }
        const float rs = 1.0f / sqrtf(v / (float)d + eps);
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

void lathe_layernorm_backward_f32(const float *dy, const float *x, long d, long r0, long r1,
                                  const float *mean, const float *rstd, const float *weight,
                                  float *dx, float *dweight, float *dbias) {
    for (long r = r0; r < r1; r++) {
        const float *g = dy + r * d, *p = x + r * d;
        const float m = mean[r], rs = rstd[r];
        float sg = 0, sgx = 0;
        for (long i = 0; i < d; i++) {
            const float gi = g[i] * (weight ? weight[i] : 1.0f);
            const float xhat = (p[i] - m) * rs;
            sg += gi;
            sgx += gi * xhat;
            if (dweight) dweight[i] += g[i] * xhat;
            if (dbias) dbias[i] += g[i];
        }
        if (!dx) continue;
        const float mg = sg / (float)d, mgx = sgx / (float)d;
        float *o = dx + r * d;
        for (long i = 0; i < d; i++) {
            const float gi = g[i] * (weight ? weight[i] : 1.0f);
            const float xhat = (p[i] - m) * rs;
            o[i] = rs * (gi - mg - xhat * mgx);
        }
    }
}
