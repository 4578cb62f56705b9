// TEMPORARY naive scaffold; replaced by elementwise.c/reduce.c/convert.c.
#include "lathe_elementwise.h"
#include <math.h>
#include <string.h>
static float uf(int op, float x) {
    switch (op) {
    case LATHE_U_COPY: return x; case LATHE_U_NEG: return -x; case LATHE_U_ABS: return fabsf(x);
    case LATHE_U_EXP: return expf(x); case LATHE_U_LOG: return logf(x); case LATHE_U_SQRT: return sqrtf(x);
    case LATHE_U_RSQRT: return 1.0f / sqrtf(x); case LATHE_U_TANH: return tanhf(x);
    case LATHE_U_SIGMOID: return 1.0f / (1.0f + expf(-x)); case LATHE_U_RELU: return x > 0 ? x : 0;
    case LATHE_U_GELU_ERF: return 0.5f * x * (1 + erff(x * 0.70710678f));
    case LATHE_U_GELU_TANH: return 0.5f * x * (1 + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
    case LATHE_U_SILU: return x / (1 + expf(-x)); case LATHE_U_SOFTPLUS: return x > 20 ? x : log1pf(expf(x));
    case LATHE_U_ERF: return erff(x); case LATHE_U_SIGN: return (x > 0) - (x < 0);
    case LATHE_U_RECIP: return 1.0f / x; case LATHE_U_SQUARE: return x * x; case LATHE_U_SIN: return sinf(x);
    case LATHE_U_COS: return cosf(x);
    }
    return 0;
}
static float ud(int op, float x, float y) {
    switch (op) {
    case LATHE_U_COPY: return 1; case LATHE_U_NEG: return -1; case LATHE_U_ABS: return (x > 0) - (x < 0);
    case LATHE_U_EXP: return y; case LATHE_U_LOG: return 1 / x; case LATHE_U_SQRT: return 0.5f / y;
    case LATHE_U_RSQRT: return -0.5f * y * y * y; case LATHE_U_TANH: return 1 - y * y;
    case LATHE_U_SIGMOID: return y * (1 - y); case LATHE_U_RELU: return x > 0;
    case LATHE_U_GELU_ERF: return 0.5f * (1 + erff(x * 0.70710678f)) + x * 0.39894228f * expf(-0.5f * x * x);
    case LATHE_U_GELU_TANH: { float k = 0.7978845608f, u = k * (x + 0.044715f * x * x * x), t = tanhf(u);
        return 0.5f * (1 + t) + 0.5f * x * (1 - t * t) * k * (1 + 3 * 0.044715f * x * x); }
    case LATHE_U_SILU: { float s = 1 / (1 + expf(-x)); return s * (1 + x * (1 - s)); }
    case LATHE_U_SOFTPLUS: return x > 20 ? 1 : 1 / (1 + expf(-x));
    case LATHE_U_ERF: return 1.1283791671f * expf(-x * x); case LATHE_U_SIGN: return 0;
    case LATHE_U_RECIP: return -y * y; case LATHE_U_SQUARE: return 2 * x; case LATHE_U_SIN: return cosf(x);
    case LATHE_U_COS: return -sinf(x);
    }
    return 0;
}
void lathe_unary_f32(int op, const float *x, long sx, float *y, long sy, long n) { for (long i = 0; i < n; i++) y[i*sy] = uf(op, x[i*sx]); }
void lathe_unary_backward_f32(int op, const float *x, const float *y, const float *dy, float *dx, long n) { for (long i = 0; i < n; i++) dx[i] = dy[i] * ud(op, x[i], y[i]); }
void lathe_binary_f32(int op, const float *a, long sa, const float *b, long sb, float *y, long sy, long n) {
    for (long i = 0; i < n; i++) { float p = a[i*sa], q = b[i*sb], r = 0;
        switch (op) { case LATHE_B_ADD: r = p + q; break; case LATHE_B_SUB: r = p - q; break; case LATHE_B_MUL: r = p * q; break;
        case LATHE_B_DIV: r = p / q; break; case LATHE_B_POW: r = powf(p, q); break;
        case LATHE_B_MAX: r = (p != p || q != q) ? NAN : (p > q ? p : q); break; case LATHE_B_MIN: r = (p != p || q != q) ? NAN : (p < q ? p : q); break;
        case LATHE_B_EQ: r = p == q; break; case LATHE_B_NE: r = p != q; break; case LATHE_B_LT: r = p < q; break;
        case LATHE_B_LE: r = p <= q; break; case LATHE_B_GT: r = p > q; break; case LATHE_B_GE: r = p >= q; break; }
        y[i*sy] = r; }
}
void lathe_clamp_f32(const float *x, float *y, long n, float lo, float hi) { for (long i = 0; i < n; i++) { float v = x[i] < lo ? lo : x[i]; y[i] = v > hi ? hi : v; } }
void lathe_axpy_f32(long n, float alpha, const float *x, float *y) { for (long i = 0; i < n; i++) y[i] += alpha * x[i]; }
void lathe_scale_shift_f32(long n, float alpha, float beta, const float *x, float *y) { for (long i = 0; i < n; i++) y[i] = alpha * x[i] + beta; }
void lathe_reduce_f32(int op, const float *x, long outer, long len, long inner, float *out) {
    for (long o = 0; o < outer; o++) for (long j = 0; j < inner; j++) {
        float acc = (op == LATHE_R_MAX) ? -INFINITY : (op == LATHE_R_MIN ? INFINITY : 0);
        for (long l = 0; l < len; l++) { float v = x[(o*len+l)*inner+j];
            if (op == LATHE_R_SUM) acc += v; else if (op == LATHE_R_SUMSQ) acc += v*v;
            else if (op == LATHE_R_MAX) acc = (v != v || v > acc) ? v : acc; else acc = (v != v || v < acc) ? v : acc; }
        out[o*inner+j] = acc; }
}
void lathe_argreduce_f32(int op, const float *x, long outer, long len, long inner, float *out, int64_t *index) {
    for (long o = 0; o < outer; o++) for (long j = 0; j < inner; j++) {
        float best = x[o*len*inner+j]; long bi = 0;
        for (long l = 1; l < len; l++) { float v = x[(o*len+l)*inner+j]; if (best != best) break;
            if (v != v || (op == LATHE_R_MAX ? v > best : v < best)) { best = v; bi = l; } }
        out[o*inner+j] = best; index[o*inner+j] = bi; }
}
void lathe_softmax_f32(const float *x, float *y, long rows, long len, int log) {
    for (long r = 0; r < rows; r++) { const float *p = x + r*len; float *q = y + r*len; float m = -INFINITY;
        for (long i = 0; i < len; i++) if (p[i] > m) m = p[i]; float s = 0;
        for (long i = 0; i < len; i++) s += expf(p[i] - m);
        for (long i = 0; i < len; i++) q[i] = log ? p[i] - m - logf(s) : expf(p[i] - m) / s; }
}
void lathe_softmax_backward_f32(const float *y, const float *dy, float *dx, long rows, long len, int log) {
    for (long r = 0; r < rows; r++) { const float *p = y + r*len, *g = dy + r*len; float *d = dx + r*len; float s = 0;
        if (log) { for (long i = 0; i < len; i++) s += g[i]; for (long i = 0; i < len; i++) d[i] = g[i] - expf(p[i]) * s; }
        else { for (long i = 0; i < len; i++) s += g[i]*p[i]; for (long i = 0; i < len; i++) d[i] = p[i] * (g[i] - s); } }
}
void lathe_f32_to_f16(const float *x, uint16_t *y, long n) { for (long i = 0; i < n; i++) { _Float16 h = (_Float16)x[i]; memcpy(&y[i], &h, 2); } }
void lathe_f16_to_f32(const uint16_t *x, float *y, long n) { for (long i = 0; i < n; i++) { _Float16 h; memcpy(&h, &x[i], 2); y[i] = (float)h; } }
void lathe_f32_to_bf16(const float *x, uint16_t *y, long n) { for (long i = 0; i < n; i++) { uint32_t u; memcpy(&u, &x[i], 4);
    if ((u & 0x7fffffff) > 0x7f800000) { y[i] = (uint16_t)((u >> 16) | 0x40); continue; }
    u += 0x7fff + ((u >> 16) & 1); y[i] = (uint16_t)(u >> 16); } }
void lathe_bf16_to_f32(const uint16_t *x, float *y, long n) { for (long i = 0; i < n; i++) { uint32_t u = (uint32_t)x[i] << 16; memcpy(&y[i], &u, 4); } }
