// attention.c: fused causal multi-head self-attention (lathe_attention.h).
//
// One (batch, head) item at a time: q and k of the head are copied out of the packed qkv rows,
// rotated (RoPE) and q scaled; v, dy and the v part of dqkv are used in place (row strides).
// The scores, P v and the four backward products are small GEMMs; the softmax (causal mask)
// and its backward run row by row. The backward recomputes the rotated q and k and uses the
// saved probabilities.
//
// Every item is computed the same way whatever range a call covers, so results do not depend
// on how the caller splits items over threads. Like reduce.c this file includes itself to
// compile the bodies for the portable, AVX2 and AVX-512 targets.
#ifndef LM_BODY

#include "lathe_attention.h"
#include "lathe_kernels.h"
#include "mathfun.h"

#include <stdlib.h>
#include <string.h>

#define LM_SELF "attention.c"
#include "multiversion.h"
#undef LM_SELF

int lathe_attention_forward_f32(const float *qkv, const float *cos, const float *sin, long B,
                                long T, long H, long hd, float scale, long i0, long i1, float *y,
                                float *p) {
    (void)B;
    if (i1 <= i0 || T <= 0 || hd <= 0) return 0;
    // qs, kr [T][hd]; one score row padded to whole vectors
    float *work = (float *)malloc((size_t)(2 * T * hd + T + 16) * sizeof(float));
    if (!work) return -1;
    LM_DISPATCH(attn_fwd, (qkv, cos, sin, T, H, hd, scale, i0, i1, y, p, work));
    free(work);
    return 0;
}

int lathe_attention_backward_f32(const float *dy, const float *qkv, const float *p,
                                 const float *cos, const float *sin, long B, long T, long H,
                                 long hd, float scale, long i0, long i1, float *dqkv) {
    (void)B;
    if (i1 <= i0 || T <= 0 || hd <= 0) return 0;
    // qs, kr, dq, dk [T][hd]; dS [T][T]
    float *work = (float *)malloc((size_t)(4 * T * hd + T * T + 16) * sizeof(float));
    if (!work) return -1;
    LM_DISPATCH(attn_bwd, (dy, qkv, p, cos, sin, T, H, hd, scale, i0, i1, dqkv, work));
    free(work);
    return 0;
}

#else  // ======================= LM_BODY: compiled once per ISA ===============================

#define FN(name) LM_CAT(name, LM_SFX)


// Prefetches the cache lines of p[0..n) (rows of q, k, v are far apart: the hardware
// prefetcher does not see them coming).
LM_INLINE LM_ATTR void FN(prefetch)(const float *p, long n) {
    for (long i = 0; i < n; i += 16) __builtin_prefetch(p + i);
    __builtin_prefetch(p + n - 1);
}

// dst[0..hd) = rope(src) * scale (cos/sin rows of length hd; NULL: no rotation), zero up to hdp.
LM_INLINE LM_ATTR void FN(rope_row)(float *restrict dst, const float *restrict src,
                                    const float *cs, const float *sn, long hd, long hdp,
                                    float scale) {
    if (cs) {
        const long half = hd / 2;
        for (long i = 0; i < half; i++)
            dst[i] = (src[i] * cs[i] - src[i + half] * sn[i]) * scale;
        for (long i = half; i < hd; i++)
            dst[i] = (src[i] * cs[i] + src[i - half] * sn[i]) * scale;
    } else {
        for (long i = 0; i < hd; i++) dst[i] = src[i] * scale;
    }
    for (long i = hd; i < hdp; i++) dst[i] = 0.0f;
}

// dst[0..hd) = rope^T(g) * scale: the gradient of rope_row's input.
LM_INLINE LM_ATTR void FN(unrope_row)(float *restrict dst, const float *restrict g,
                                      const float *cs, const float *sn, long hd, float scale) {
    if (cs) {
        const long half = hd / 2;
        for (long i = 0; i < half; i++)
            dst[i] = (g[i] * cs[i] + g[i + half] * sn[i + half]) * scale;
        for (long i = half; i < hd; i++)
            dst[i] = (g[i] * cs[i] - g[i - half] * sn[i - half]) * scale;
    } else {
        for (long i = 0; i < hd; i++) dst[i] = g[i] * scale;
    }
}

// Row softmax of s[0..n) in place; s[n .. round16(n)) is overwritten with 0. Max and sum
// with 16 lanes over whole vectors.
LM_INLINE LM_ATTR void FN(softmax_row)(float *s, long n) {
    const long n16 = (n + 15) & ~15L;
    for (long j = n; j < n16; j++) s[j] = -INFINITY;
    float mx[16];
    for (int l = 0; l < 16; l++) mx[l] = -INFINITY;
    for (long j = 0; j < n16; j += 16)
        for (int l = 0; l < 16; l++) mx[l] = s[j + l] > mx[l] ? s[j + l] : mx[l];
    float m = -INFINITY;
    for (int l = 0; l < 16; l++) m = mx[l] > m ? mx[l] : m;
    LM_VEC for (long i = 0; i < n16; i++) s[i] = lm_expf(s[i] - m);
    float acc[16] = {0};
    for (long j = 0; j < n16; j += 16)
        for (int l = 0; l < 16; l++) acc[l] += s[j + l];
    float t = 0;
    for (int l = 0; l < 16; l++) t += acc[l];
    const float inv = 1.0f / t;
    LM_VEC for (long i = 0; i < n16; i++) s[i] = s[i] * inv;
}

// The products are small GEMMs (lathe_sgemm, single-threaded at this size): computing the
// whole T x T square and masking costs less than a causal-only loop that the GEMM outruns.

static LM_ATTR void FN(attn_fwd)(const float *qkv, const float *cos, const float *sin, long T,
                                 long H, long hd, float scale, long i0, long i1, float *y,
                                 float *p, float *work) {
    const long D = H * hd, ld = 3 * D;
    float *qs = work, *kr = qs + T * hd, *s = kr + T * hd;
    for (long it = i0; it < i1; it++) {
        const long b = it / H, h = it % H;
        const float *base = qkv + b * T * ld + h * hd;
        for (long t = 0; t < T; t++) {
            const float *row = base + t * ld;
            if (t + 8 < T) {
                FN(prefetch)(row + 8 * ld, hd);
                FN(prefetch)(row + 8 * ld + D, hd);
                FN(prefetch)(row + 8 * ld + 2 * D, hd);
            }
            const float *cs = cos ? cos + t * hd : NULL, *sn = sin ? sin + t * hd : NULL;
            FN(rope_row)(qs + t * hd, row, cs, sn, hd, hd, scale);
            FN(rope_row)(kr + t * hd, row + D, cs, sn, hd, hd, 1.0f);
        }
        float *pi = p + it * T * T;
        // S = qs kr^T, then the causal softmax of each row in place (zeros above the diagonal).
        lathe_sgemm(0, 1, T, T, hd, 1.0f, qs, hd, kr, hd, 0.0f, pi, T);
        for (long i = 0; i < T; i++) {
            float *r = pi + i * T;
            memcpy(s, r, (size_t)(i + 1) * sizeof(float));
            FN(softmax_row)(s, i + 1);
            memcpy(r, s, (size_t)(i + 1) * sizeof(float));
            for (long j = i + 1; j < T; j++) r[j] = 0.0f;
        }
        // Y[b, :, h] = P v
        lathe_sgemm(0, 0, T, hd, T, 1.0f, pi, T, base + 2 * D, ld, 0.0f, y + b * T * D + h * hd, D);
    }
}

static LM_ATTR void FN(attn_bwd)(const float *dy, const float *qkv, const float *p,
                                 const float *cos, const float *sin, long T, long H, long hd,
                                 float scale, long i0, long i1, float *dqkv, float *work) {
    const long D = H * hd, ld = 3 * D;
    float *qs = work, *kr = qs + T * hd, *dq = kr + T * hd, *dk = dq + T * hd, *dS = dk + T * hd;
    for (long it = i0; it < i1; it++) {
        const long b = it / H, h = it % H;
        const float *base = qkv + b * T * ld + h * hd;
        const float *pb = p + it * T * T;
        const float *dO = dy + b * T * D + h * hd;  // rows D apart
        for (long t = 0; t < T; t++) {
            const float *r = base + t * ld;
            if (t + 8 < T) {
                FN(prefetch)(r + 8 * ld, hd);
                FN(prefetch)(r + 8 * ld + D, hd);
                FN(prefetch)(r + 8 * ld + 2 * D, hd);
                FN(prefetch)(dO + (t + 8) * D, hd);
            }
            const float *cs = cos ? cos + t * hd : NULL, *sn = sin ? sin + t * hd : NULL;
            FN(rope_row)(qs + t * hd, r, cs, sn, hd, hd, scale);
            FN(rope_row)(kr + t * hd, r + D, cs, sn, hd, hd, 1.0f);
        }
        // dP = dO v^T; dS = P * (dP - sum(P * dP)) row by row (zero above the diagonal).
        lathe_sgemm(0, 1, T, T, hd, 1.0f, dO, D, base + 2 * D, ld, 0.0f, dS, T);
        // Over whole rows, as the composed softmax backward does (P is 0 above the diagonal).
        for (long i = 0; i < T; i++) {
            const float *pi = pb + i * T;
            if (i + 4 < T) FN(prefetch)(pi + 4 * T, T);
            float *ds = dS + i * T;
            float acc[16] = {0};
            long j = 0;
            for (; j + 16 <= T; j += 16)
                for (int l = 0; l < 16; l++) acc[l] += pi[j + l] * ds[j + l];
            float dot = 0;
            for (int l = 0; l < 16; l++) dot += acc[l];
            for (; j < T; j++) dot += pi[j] * ds[j];
            LM_VEC for (long q = 0; q < T; q++) ds[q] = pi[q] * (ds[q] - dot);
        }
        float *g = dqkv + b * T * ld + h * hd;
        // dqs = dS kr, dkr = dS^T qs, dv = P^T dO (straight into dqkv).
        lathe_sgemm(0, 0, T, hd, T, 1.0f, dS, T, kr, hd, 0.0f, dq, hd);
        lathe_sgemm(1, 0, T, hd, T, 1.0f, dS, T, qs, hd, 0.0f, dk, hd);
        lathe_sgemm(1, 0, T, hd, T, 1.0f, pb, T, dO, D, 0.0f, g + 2 * D, ld);
        for (long t = 0; t < T; t++) {
            const float *cs = cos ? cos + t * hd : NULL, *sn = sin ? sin + t * hd : NULL;
            FN(unrope_row)(g + t * ld, dq + t * hd, cs, sn, hd, scale);
            FN(unrope_row)(g + t * ld + D, dk + t * hd, cs, sn, hd, 1.0f);
        }
    }
}

#undef FN
#endif  // LM_BODY
