// Elementwise ops, reductions, softmax and dtype conversion on float32 buffers.
// Each kernel handles one innermost run of n elements; LatheTensor iterates the outer
// dimensions. Strides are in elements and may be 0 (broadcast), 1 (contiguous) or anything.
#ifndef LATHE_ELEMENTWISE_H
#define LATHE_ELEMENTWISE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LATHE_U_COPY = 0, LATHE_U_NEG, LATHE_U_ABS, LATHE_U_EXP, LATHE_U_LOG, LATHE_U_SQRT,
    LATHE_U_RSQRT, LATHE_U_TANH, LATHE_U_SIGMOID, LATHE_U_RELU, LATHE_U_GELU_ERF,
    LATHE_U_GELU_TANH, LATHE_U_SILU, LATHE_U_SOFTPLUS, LATHE_U_ERF, LATHE_U_SIGN,
    LATHE_U_RECIP, LATHE_U_SQUARE, LATHE_U_SIN, LATHE_U_COS,
} lathe_unary_op;

typedef enum {
    LATHE_B_ADD = 0, LATHE_B_SUB, LATHE_B_MUL, LATHE_B_DIV, LATHE_B_POW, LATHE_B_MAX, LATHE_B_MIN,
    // comparisons write 1.0f or 0.0f
    LATHE_B_EQ, LATHE_B_NE, LATHE_B_LT, LATHE_B_LE, LATHE_B_GT, LATHE_B_GE,
} lathe_binary_op;

/// y[i*sy] = f(x[i*sx]) for i in [0, n). y may alias x when sx == sy.
void lathe_unary_f32(int op, const float *x, long sx, float *y, long sy, long n);
/// dx[i] = dy[i] * f'(x[i]), all contiguous. y = f(x) is passed too (some derivatives use it).
/// gelu (erf form) of contiguous x into y, and its derivative into d (so that the backward
/// is dx = dy * d): y has the bits of lathe_unary_f32(LATHE_U_GELU_ERF, ...).
void lathe_gelu_erf_forward_f32(const float *x, float *y, float *d, long n);
/// SwiGLU's product y = silu(g) * u over n contiguous floats (the bits of silu, then multiply).
void lathe_swiglu_forward_f32(const float *g, const float *u, float *y, long n);
/// Its backward: dg = (dy * u) * silu'(g), du = dy * silu(g).
void lathe_swiglu_backward_f32(const float *g, const float *u, const float *dy, float *dg, float *du, long n);
void lathe_unary_backward_f32(int op, const float *x, const float *y, const float *dy,
                              float *dx, long n);
/// y[i*sy] = a[i*sa] (op) b[i*sb] for i in [0, n). sa or sb may be 0.
void lathe_binary_f32(int op, const float *a, long sa, const float *b, long sb,
                      float *y, long sy, long n);
/// y[i] = min(max(x[i], lo), hi), contiguous.
void lathe_clamp_f32(const float *x, float *y, long n, float lo, float hi);
/// y[i] += alpha * x[i], contiguous.
void lathe_axpy_f32(long n, float alpha, const float *x, float *y);
/// y[i] = alpha * x[i] + beta, contiguous. y may alias x.
void lathe_scale_shift_f32(long n, float alpha, float beta, const float *x, float *y);

typedef enum {
    LATHE_R_SUM = 0, LATHE_R_MAX, LATHE_R_MIN, LATHE_R_SUMSQ,
} lathe_reduce_op;

/// out[o*inner + j] = reduce over l in [0, len) of x[(o*len + l)*inner + j]; x contiguous
/// [outer, len, inner]. Sums use a fixed order (no dependence on threads). NaN propagates
/// through MAX/MIN.
void lathe_reduce_f32(int op, const float *x, long outer, long len, long inner, float *out);
/// Like lathe_reduce_f32 for MAX or MIN, also writing the index (first on ties) along len.
void lathe_argreduce_f32(int op, const float *x, long outer, long len, long inner,
                         float *out, int64_t *index);
/// Row-wise softmax (log_softmax when log != 0) over contiguous rows [rows, len].
void lathe_softmax_f32(const float *x, float *y, long rows, long len, int log);
/// Backward of softmax rows: dx = y * (dy - sum(dy*y)); for log: dx = dy - exp(y) * sum(dy).
void lathe_softmax_backward_f32(const float *y, const float *dy, float *dx, long rows,
                                long len, int log);

/// Conversions. f16 is IEEE binary16; bf16 is the top 16 bits of binary32.
/// Narrowing rounds to nearest even; NaN stays NaN, overflow goes to infinity.
void lathe_f32_to_f16(const float *x, uint16_t *y, long n);
void lathe_f16_to_f32(const uint16_t *x, float *y, long n);
void lathe_f32_to_bf16(const float *x, uint16_t *y, long n);
void lathe_bf16_to_f32(const uint16_t *x, float *y, long n);

#ifdef __cplusplus
}
#endif
#endif
