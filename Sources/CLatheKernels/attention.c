// attention.c: fused causal multi-head self-attention (lathe_attention.h).
//
// One (batch, head) item at a time: q, k, v of the head are copied out of the packed qkv rows
// into zero-padded scratch (rows padded to a multiple of 16 floats), rotated (RoPE) and q
// scaled, then each query row computes its scores against the keys at or before it, a softmax,
// and its output row; nothing above the diagonal is computed. The backward recomputes the
// rotated q and k and uses the saved probabilities. All the small products are "vector times
// matrix" sweeps (vecmat) with the accumulators in registers.
//
// Every item is computed the same way whatever range a call covers, so results do not depend
// on how the caller splits items over threads. Like reduce.c this file includes itself to
// compile the bodies for the portable, AVX2 and AVX-512 targets.
#ifndef LM_BODY

#include "lathe_attention.h"
#include "mathfun.h"

#include <stdlib.h>
#include <string.h>

typedef float lm_v16f __attribute__((vector_size(64)));

#define LM_SELF "attention.c"
#include "multiversion.h"
#undef LM_SELF

static long round16(long n) { return (n + 15) & ~15L; }

int lathe_attention_forward_f32(const float *qkv, const float *cos, const float *sin, long B,
                                long T, long H, long hd, float scale, long i0, long i1, float *y,
                                float *p) {
    (void)B;
    if (i1 <= i0 || T <= 0 || hd <= 0) return 0;
    const long hdp = round16(hd), tp = round16(T);
    // qs [T][hdp], kT [hdp][tp], v [T][hdp], s [tp]
    float *work = (float *)aligned_alloc(64, (size_t)(2 * T * hdp + hdp * tp + tp + 16) * sizeof(float));
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
    const long hdp = round16(hd), tp = round16(T);
    // qs, kr, dO, dq [T][hdp]; vT [hdp][tp]; dS, dST, PT [tp][tp]; row [hdp]; prow [tp]
    size_t n = (size_t)(4 * T * hdp + hdp * tp + 3 * tp * tp + hdp + tp + 16);
    float *work = (float *)aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!work) return -1;
    LM_DISPATCH(attn_bwd, (dy, qkv, p, cos, sin, T, H, hd, scale, i0, i1, dqkv, work));
    free(work);
    return 0;
}

#else  // ======================= LM_BODY: compiled once per ISA ===============================

#define FN(name) LM_CAT(name, LM_SFX)

// Unaligned 16-float loads and stores (macros: no vector-typed function arguments).
#define LD16(p) ({ lm_v16f v_; __builtin_memcpy(&v_, (p), 64); v_; })
#define ST16(p, v) do { lm_v16f w_ = (v); __builtin_memcpy((p), &w_, 64); } while (0)

// Prefetches the cache lines of p[0..n) (rows of q, k, v are far apart: the hardware
// prefetcher does not see them coming).
LM_INLINE LM_ATTR void FN(prefetch)(const float *p, long n) {
    for (long i = 0; i < n; i += 16) __builtin_prefetch(p + i);
    __builtin_prefetch(p + n - 1);
}

// out[0 .. 16*nb) = sum over r < R of coef[r] * m[r*ld + 0 .. 16*nb), r in increasing order
// (two interleaved partial sums, even and odd r, added at the end, when nb <= 2).
static LM_ATTR void FN(vecmat)(float *restrict out, const float *restrict coef,
                               const float *restrict m, long ld, long R, long nb) {
    long b = 0;
    for (; b + 4 <= nb; b += 4) {
        lm_v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        const float *mb = m + 16 * b;
        for (long r = 0; r < R; r++) {
            const float c = coef[r];
            const float *mr = mb + r * ld;
            a0 += c * LD16(mr);
            a1 += c * LD16(mr + 16);
            a2 += c * LD16(mr + 32);
            a3 += c * LD16(mr + 48);
        }
        ST16(out + 16 * b, a0); ST16(out + 16 * b + 16, a1);
        ST16(out + 16 * b + 32, a2); ST16(out + 16 * b + 48, a3);
    }
    for (; b + 2 <= nb; b += 2) {
        lm_v16f a0 = {0}, a1 = {0}, e0 = {0}, e1 = {0};
        const float *mb = m + 16 * b;
        long r = 0;
        for (; r + 2 <= R; r += 2) {
            const float c = coef[r], d = coef[r + 1];
            const float *mr = mb + r * ld;
            a0 += c * LD16(mr);
            a1 += c * LD16(mr + 16);
            e0 += d * LD16(mr + ld);
            e1 += d * LD16(mr + ld + 16);
        }
        if (r < R) {
            const float c = coef[r];
            const float *mr = mb + r * ld;
            a0 += c * LD16(mr);
            a1 += c * LD16(mr + 16);
        }
        ST16(out + 16 * b, a0 + e0); ST16(out + 16 * b + 16, a1 + e1);
    }
    for (; b < nb; b++) {
        lm_v16f a0 = {0}, e0 = {0};
        const float *mb = m + 16 * b;
        long r = 0;
        for (; r + 2 <= R; r += 2) {
            a0 += coef[r] * LD16(mb + r * ld);
            e0 += coef[r + 1] * LD16(mb + (r + 1) * ld);
        }
        if (r < R) a0 += coef[r] * LD16(mb + r * ld);
        ST16(out + 16 * b, a0 + e0);
    }
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

static LM_ATTR void FN(attn_fwd)(const float *qkv, const float *cos, const float *sin, long T,
                                 long H, long hd, float scale, long i0, long i1, float *y,
                                 float *p, float *work) {
    const long D = H * hd, ld = 3 * D, hdp = (hd + 15) & ~15L, tp = (T + 15) & ~15L;
    float *qs = work, *kT = qs + T * hdp, *v = kT + hdp * tp, *s = v + T * hdp;
    float krow[hdp];
    for (long it = i0; it < i1; it++) {
        const long b = it / H, h = it % H;
        const float *base = qkv + b * T * ld + h * hd;
        memset(kT, 0, (size_t)(hdp * tp) * sizeof(float));
        for (long t = 0; t < T; t++) {
            const float *row = base + t * ld;
            if (t + 4 < T) {
                FN(prefetch)(row + 4 * ld, hd);
                FN(prefetch)(row + 4 * ld + D, hd);
                FN(prefetch)(row + 4 * ld + 2 * D, hd);
            }
            const float *cs = cos ? cos + t * hd : NULL, *sn = sin ? sin + t * hd : NULL;
            FN(rope_row)(qs + t * hdp, row, cs, sn, hd, hdp, scale);
            FN(rope_row)(krow, row + D, cs, sn, hd, hdp, 1.0f);
            for (long c = 0; c < hd; c++) kT[c * tp + t] = krow[c];
            memcpy(v + t * hdp, row + 2 * D, (size_t)hd * sizeof(float));
            for (long c = hd; c < hdp; c++) v[t * hdp + c] = 0.0f;
        }
        float *pi = p + it * T * T;
        for (long i = 0; i < T; i++, pi += T) {
            const long n = i + 1;
            FN(vecmat)(s, qs + i * hdp, kT, tp, hd, (n + 15) / 16);
            FN(softmax_row)(s, n);
            memcpy(pi, s, (size_t)n * sizeof(float));
            for (long j = n; j < T; j++) pi[j] = 0.0f;
            float orow[hdp];
            FN(vecmat)(orow, s, v, hdp, n, hdp / 16);
            memcpy(y + (b * T + i) * D + h * hd, orow, (size_t)hd * sizeof(float));
        }
    }
}

static LM_ATTR void FN(attn_bwd)(const float *dy, const float *qkv, const float *p,
                                 const float *cos, const float *sin, long T, long H, long hd,
                                 float scale, long i0, long i1, float *dqkv, float *work) {
    const long D = H * hd, ld = 3 * D, hdp = (hd + 15) & ~15L, tp = (T + 15) & ~15L;
    float *qs = work, *kr = qs + T * hdp, *dO = kr + T * hdp, *dq = dO + T * hdp;
    float *vT = dq + T * hdp, *dS = vT + hdp * tp, *dST = dS + tp * tp, *PT = dST + tp * tp;
    float *row = PT + tp * tp, *prow = row + hdp;
    for (long it = i0; it < i1; it++) {
        const long b = it / H, h = it % H;
        const float *base = qkv + b * T * ld + h * hd;
        const float *pb = p + it * T * T;
        memset(vT, 0, (size_t)(hdp * tp) * sizeof(float));
        for (long t = 0; t < T; t++) {
            const float *r = base + t * ld;
            if (t + 4 < T) {
                FN(prefetch)(r + 4 * ld, hd);
                FN(prefetch)(r + 4 * ld + D, hd);
                FN(prefetch)(r + 4 * ld + 2 * D, hd);
                FN(prefetch)(dy + (b * T + t + 4) * D + h * hd, hd);
            }
            const float *cs = cos ? cos + t * hd : NULL, *sn = sin ? sin + t * hd : NULL;
            FN(rope_row)(qs + t * hdp, r, cs, sn, hd, hdp, scale);
            FN(rope_row)(kr + t * hdp, r + D, cs, sn, hd, hdp, 1.0f);
            for (long c = 0; c < hd; c++) vT[c * tp + t] = r[2 * D + c];
            memcpy(dO + t * hdp, dy + (b * T + t) * D + h * hd, (size_t)hd * sizeof(float));
            for (long c = hd; c < hdp; c++) dO[t * hdp + c] = 0.0f;
        }
        // Row by row: dP = dO v^T, dS = P * (dP - sum(P * dP)), dq = dS k.
        for (long i = 0; i < T; i++) {
            const long n = i + 1, n16 = (n + 15) & ~15L;
            if (i + 2 < T) FN(prefetch)(pb + (i + 2) * T, i + 3);
            // The probabilities row, and dP, zero-padded to whole vectors.
            memcpy(prow, pb + i * T, (size_t)n * sizeof(float));
            for (long j = n; j < n16; j++) prow[j] = 0.0f;
            float *ds = dS + i * tp;
            FN(vecmat)(ds, dO + i * hdp, vT, tp, hd, n16 / 16);
            for (long j = n; j < n16; j++) ds[j] = 0.0f;
            float acc[16] = {0};
            for (long j = 0; j < n16; j += 16)
                for (int l = 0; l < 16; l++) acc[l] += prow[j + l] * ds[j + l];
            float dot = 0;
            for (int l = 0; l < 16; l++) dot += acc[l];
            LM_VEC for (long q = 0; q < n16; q++) ds[q] = prow[q] * (ds[q] - dot);
            FN(vecmat)(dq + i * hdp, ds, kr, hdp, n, hdp / 16);
        }
        // Transposes (lower triangles only) for the key and value gradients.
        for (long i = 0; i < T; i++)
            for (long j = 0; j <= i; j++) {
                dST[j * tp + i] = dS[i * tp + j];
                PT[j * tp + i] = pb[i * T + j];
            }
        float *gq = dqkv + b * T * ld + h * hd;
        for (long t = 0; t < T; t++) {
            float *g = gq + t * ld;
            const float *cs = cos ? cos + t * hd : NULL, *sn = sin ? sin + t * hd : NULL;
            FN(unrope_row)(g, dq + t * hdp, cs, sn, hd, scale);
            // dk[t] = sum over i >= t of dS[i][t] qs[i]; dv[t] = sum over i >= t of P[i][t] dO[i].
            FN(vecmat)(row, dST + t * tp + t, qs + t * hdp, hdp, T - t, hdp / 16);
            FN(unrope_row)(g + D, row, cs, sn, hd, 1.0f);
            FN(vecmat)(row, PT + t * tp + t, dO + t * hdp, hdp, T - t, hdp / 16);
            memcpy(g + 2 * D, row, (size_t)hd * sizeof(float));
        }
    }
}

#undef FN
#undef LD16
#undef ST16
#endif  // LM_BODY
