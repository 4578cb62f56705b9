// reduce.c: sum / max / min / sum-of-squares reductions, argmax/argmin, softmax and its
// backward on float32 (lathe_elementwise.h).
//
// Like elementwise.c this file includes itself to compile the kernel bodies (LM_BODY section)
// three times: portable (_gen), AVX2 (_avx2) and AVX-512 (_avx512).
//
// Determinism: contiguous sums use 64 lane accumulators (lane j adds elements 64k + j in
// order), combined by a fixed tree, with rows longer than 8192 split pairwise at fixed points.
// The lane structure does not depend on the vector width and products are never fused into
// the adds, so every ISA gives bit-identical sums, on every call.
#ifndef LM_BODY

#include "lathe_elementwise.h"
#include "mathfun.h"

#include <stdlib.h>
#include <string.h>

// 16-float vectors (GCC/Clang vector extension): four of them are the 64 lanes. On AVX-512
// one register each, on AVX2 two, on SSE/NEON four.
typedef float lm_v16f __attribute__((vector_size(64)));
typedef int32_t lm_v16i __attribute__((vector_size(64)));

#define SUM_LEAF 8192  // rows longer than this are summed pairwise (split at multiples of 64)
#define TILE 512       // columns per tile when reducing over a strided axis (inner > 1)
#define SM_BLOCK 1024  // log-softmax block (multiple of 64)

#define LM_SELF "reduce.c"
#include "multiversion.h"
#undef LM_SELF

void lathe_reduce_f32(int op, const float *x, long outer, long len, long inner, float *out) {
    if (outer <= 0 || inner <= 0) return;
    LM_DISPATCH(reduce_k, (op, x, outer, len, inner, out));
}

void lathe_argreduce_f32(int op, const float *x, long outer, long len, long inner, float *out,
                         int64_t *index) {
    if (outer <= 0 || inner <= 0) return;
    LM_DISPATCH(argreduce_k, (op, x, outer, len, inner, out, index));
}

void lathe_softmax_f32(const float *x, float *y, long rows, long len, int log) {
    if (rows <= 0 || len <= 0) return;
    LM_DISPATCH(softmax_k, (x, y, rows, len, log));
}

void lathe_softmax_backward_f32(const float *y, const float *dy, float *dx, long rows, long len,
                                int log) {
    if (rows <= 0 || len <= 0) return;
    LM_DISPATCH(softmax_bwd_k, (y, dy, dx, rows, len, log));
}

#else  // ======================= LM_BODY: compiled once per ISA ===============================

#define FN(name) LM_CAT(name, LM_SFX)

// ---- 64-lane accumulation -------------------------------------------------------------------
// mode 0: x, 1: x*x, 2: x*z (dot). acc[4] carries the lanes across calls; n must be a
// multiple of 64 except in the last call for a row (the tail is zero-padded).
LM_INLINE LM_ATTR void FN(acc64)(lm_v16f acc[4], const float *x, const float *z, long n,
                                 int mode) {
    lm_v16f a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    long i = 0;
    float tx[64], tz[64];
    for (;;) {
        const float *px = x + i, *pz = z ? z + i : NULL;
        long rem = n - i;
        if (rem <= 0) break;
        if (rem < 64) {  // zero-padded tail
            memset(tx, 0, sizeof tx);
            memcpy(tx, px, (size_t)rem * sizeof(float));
            px = tx;
            if (mode == 2) {
                memset(tz, 0, sizeof tz);
                memcpy(tz, pz, (size_t)rem * sizeof(float));
                pz = tz;
            }
        }
        lm_v16f v0, v1, v2, v3;
        __builtin_memcpy(&v0, px, 64); __builtin_memcpy(&v1, px + 16, 64);
        __builtin_memcpy(&v2, px + 32, 64); __builtin_memcpy(&v3, px + 48, 64);
        if (mode == 1) {
            v0 = v0 * v0; v1 = v1 * v1; v2 = v2 * v2; v3 = v3 * v3;
        } else if (mode == 2) {
            lm_v16f w0, w1, w2, w3;
            __builtin_memcpy(&w0, pz, 64); __builtin_memcpy(&w1, pz + 16, 64);
            __builtin_memcpy(&w2, pz + 32, 64); __builtin_memcpy(&w3, pz + 48, 64);
            v0 = v0 * w0; v1 = v1 * w1; v2 = v2 * w2; v3 = v3 * w3;
        }
        // separate statements: the products above are never contracted into these adds
        a0 = a0 + v0; a1 = a1 + v1; a2 = a2 + v2; a3 = a3 + v3;
        i += 64;
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}

// Fixed-order tree over the 64 lanes.
LM_INLINE LM_ATTR float FN(lanes_total)(const lm_v16f acc[4]) {
    lm_v16f s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    float t[16];
    __builtin_memcpy(t, &s, 64);
    for (int w = 8; w >= 1; w >>= 1)
        for (int j = 0; j < w; j++) t[j] = t[j] + t[j + w];
    return t[0];
}

// Deterministic sum of x[0..n) (mode as acc64), pairwise above SUM_LEAF.
static LM_ATTR float FN(sum_row)(const float *x, const float *z, long n, int mode) {
    if (n > SUM_LEAF) {
        long h = ((n / 2) + 63) & ~63L;
        return FN(sum_row)(x, z, h, mode) + FN(sum_row)(x + h, z ? z + h : NULL, n - h, mode);
    }
    lm_v16f acc[4] = {{0}, {0}, {0}, {0}};
    FN(acc64)(acc, x, z, n, mode);
    return FN(lanes_total)(acc);
}

// Max (is_max) or min of a contiguous row; NaN if any element is NaN; -inf/+inf if n == 0.
static LM_ATTR float FN(maxmin_row)(const float *x, long n, int is_max) {
    const float init = is_max ? -INFINITY : INFINITY;
    lm_v16f a[4], v[4];
    lm_v16i nan = {0};
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 16; j++) a[k][j] = init;
    float t[64];
    for (long i = 0; i < n; i += 64) {
        const float *p = x + i;
        if (n - i < 64) {
            for (int j = 0; j < 64; j++) t[j] = i + j < n ? p[j] : init;
            p = t;
        }
        for (int k = 0; k < 4; k++) {
            __builtin_memcpy(&v[k], p + 16 * k, 64);
            lm_v16i m = is_max ? (v[k] > a[k]) : (v[k] < a[k]);
            a[k] = (lm_v16f)(((lm_v16i)v[k] & m) | ((lm_v16i)a[k] & ~m));
            nan |= (v[k] != v[k]);
        }
    }
    float r = init;
    int anynan = 0;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 16; j++) {
            float e = a[k][j];
            r = is_max ? (e > r ? e : r) : (e < r ? e : r);
            anynan |= nan[j];
        }
    return anynan ? __builtin_nanf("") : r;
}

// out[o*inner + j] = reduce_l x[(o*len + l)*inner + j] (lathe_reduce_op).
static LM_ATTR void FN(reduce_k)(int op, const float *x, long outer, long len, long inner,
                                 float *out) {
    if (inner == 1) {
        for (long o = 0; o < outer; o++) {
            const float *row = x + o * len;
            float r;
            switch (op) {
            case LATHE_R_SUM: r = FN(sum_row)(row, NULL, len, 0); break;
            case LATHE_R_SUMSQ: r = FN(sum_row)(row, NULL, len, 1); break;
            case LATHE_R_MAX: r = FN(maxmin_row)(row, len, 1); break;
            case LATHE_R_MIN: r = FN(maxmin_row)(row, len, 0); break;
            default: r = 0.0f; break;
            }
            out[o] = r;
        }
        return;
    }
    // Strided axis: columns in tiles; rows of a tile are added with SIMD (acc row += x row).
    // Sums go in blocks of 64 rows (blk), then blocks into acc: error ~ (64 + len/64) eps.
    float acc[TILE], blk[TILE];
    for (long o = 0; o < outer; o++) {
        const float *xo = x + o * len * inner;
        float *oo = out + o * inner;
        for (long j0 = 0; j0 < inner; j0 += TILE) {
            long w = inner - j0 < TILE ? inner - j0 : TILE;
            if (len == 0) {
                float e = op == LATHE_R_MAX ? -INFINITY : op == LATHE_R_MIN ? INFINITY : 0.0f;
                for (long j = 0; j < w; j++) oo[j0 + j] = e;
                continue;
            }
            if (op == LATHE_R_MAX || op == LATHE_R_MIN) {
                const float *r0 = xo + j0;
                LM_VEC for (long j = 0; j < w; j++) acc[j] = r0[j];
                for (long l = 1; l < len; l++) {
                    const float *r = xo + l * inner + j0;
                    if (op == LATHE_R_MAX) {
                        LM_VEC for (long j = 0; j < w; j++) acc[j] = lm_maxf(r[j], acc[j]);
                    } else {
                        LM_VEC for (long j = 0; j < w; j++) acc[j] = lm_minf(r[j], acc[j]);
                    }
                }
            } else {
                int sq = op == LATHE_R_SUMSQ;
                for (long l0 = 0; l0 < len; l0 += 64) {
                    long l1 = len - l0 < 64 ? len : l0 + 64;
                    const float *r0 = xo + l0 * inner + j0;
                    if (sq) {
                        LM_VEC for (long j = 0; j < w; j++) blk[j] = r0[j] * r0[j];
                    } else {
                        LM_VEC for (long j = 0; j < w; j++) blk[j] = r0[j];
                    }
                    for (long l = l0 + 1; l < l1; l++) {
                        const float *r = xo + l * inner + j0;
                        if (sq) {
                            LM_VEC for (long j = 0; j < w; j++) {
                                float t = r[j] * r[j];
                                blk[j] = blk[j] + t;
                            }
                        } else {
                            LM_VEC for (long j = 0; j < w; j++) blk[j] = blk[j] + r[j];
                        }
                    }
                    if (l0 == 0) {
                        LM_VEC for (long j = 0; j < w; j++) acc[j] = blk[j];
                    } else {
                        LM_VEC for (long j = 0; j < w; j++) acc[j] = acc[j] + blk[j];
                    }
                }
            }
            memcpy(oo + j0, acc, (size_t)w * sizeof(float));
        }
    }
}

// Like reduce_k for MAX/MIN, also the index along len (first on ties; a NaN wins, the first).
static LM_ATTR void FN(argreduce_k)(int op, const float *x, long outer, long len, long inner,
                                    float *out, int64_t *index) {
    int is_max = op != LATHE_R_MIN;
    if (inner == 1) {
        for (long o = 0; o < outer; o++) {
            const float *row = x + o * len;
            float m = FN(maxmin_row)(row, len, is_max);
            long k = 0;
            if (m != m) {
                while (k < len && row[k] == row[k]) k++;
            } else {
                while (k < len && row[k] != m) k++;
            }
            out[o] = m;
            index[o] = k < len ? k : 0;
        }
        return;
    }
    for (long o = 0; o < outer; o++) {
        const float *xo = x + o * len * inner;
        float *bo = out + o * inner;
        int64_t *io = index + o * inner;
        if (len == 0) {
            for (long j = 0; j < inner; j++) { bo[j] = is_max ? -INFINITY : INFINITY; io[j] = 0; }
            continue;
        }
        LM_VEC for (long j = 0; j < inner; j++) { bo[j] = xo[j]; io[j] = 0; }
        for (long l = 1; l < len; l++) {
            const float *r = xo + l * inner;
            if (is_max) {
                LM_VEC for (long j = 0; j < inner; j++) {
                    float v = r[j], b = bo[j];
                    int upd = (v > b) | ((v != v) & (b == b));
                    bo[j] = upd ? v : b;
                    io[j] = upd ? (int64_t)l : io[j];
                }
            } else {
                LM_VEC for (long j = 0; j < inner; j++) {
                    float v = r[j], b = bo[j];
                    int upd = (v < b) | ((v != v) & (b == b));
                    bo[j] = upd ? v : b;
                    io[j] = upd ? (int64_t)l : io[j];
                }
            }
        }
    }
}

// Row softmax over [rows, len]: y = exp(x - max) / sum; log: y = x - max - log(sum).
// A row that is all -inf (or holds NaN / +inf) gives NaN, as in PyTorch. y may alias x.
static LM_ATTR void FN(softmax_k)(const float *x, float *y, long rows, long len, int log) {
    float tmp[SM_BLOCK];
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * len;
        float *yr = y + r * len;
        float m = FN(maxmin_row)(xr, len, 1);
        if (!log) {
            LM_VEC for (long i = 0; i < len; i++) yr[i] = lm_expf(xr[i] - m);
            float s = FN(sum_row)(yr, NULL, len, 0);
            LM_VEC for (long i = 0; i < len; i++) yr[i] = yr[i] / s;
        } else {
            lm_v16f acc[4] = {{0}, {0}, {0}, {0}};
            for (long i0 = 0; i0 < len; i0 += SM_BLOCK) {
                long w = len - i0 < SM_BLOCK ? len - i0 : SM_BLOCK;
                LM_VEC for (long i = 0; i < w; i++) tmp[i] = lm_expf(xr[i0 + i] - m);
                FN(acc64)(acc, tmp, NULL, w, 0);
            }
            float ls = lm_logf(FN(lanes_total)(acc));
            LM_VEC for (long i = 0; i < len; i++) yr[i] = (xr[i] - m) - ls;
        }
    }
}

// Softmax backward rows: dx = y (dy - sum(dy y)); log: dx = dy - exp(y) sum(dy).
static LM_ATTR void FN(softmax_bwd_k)(const float *y, const float *dy, float *dx, long rows,
                                      long len, int log) {
    for (long r = 0; r < rows; r++) {
        const float *yr = y + r * len, *gr = dy + r * len;
        float *dr = dx + r * len;
        if (!log) {
            float d = FN(sum_row)(gr, yr, len, 2);
            LM_VEC for (long i = 0; i < len; i++) dr[i] = yr[i] * (gr[i] - d);
        } else {
            float s = FN(sum_row)(gr, NULL, len, 0);
            LM_VEC for (long i = 0; i < len; i++) dr[i] = gr[i] - lm_expf(yr[i]) * s;
        }
    }
}

#undef FN
#endif  // LM_BODY
