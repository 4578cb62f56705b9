// ggml_quant.c: GGML block encoders for writing GGUF files (see lathe_ggml.h).
//
// Each encoder does the float operations of ggml's reference encoder in the same order, with
// no fused multiply-adds (llama.cpp builds ggml-quants.c for baseline x86-64, where the
// compiler cannot contract a*b+c), so that the blocks are byte-identical to ggml's and
// gguf-py's. The rules, per type (d, m: fp16 scale and min; x: the 32 or 256 inputs):
//
//   Q8_0  d = max|x| / 127, q = roundf(x / d)                      (round half away from 0)
//   Q4_0  d = v / -8 with v the first x of largest |x|, q = min(15, trunc(x / d + 8.5))
//   Q5_0  d = v / -16, q = min(31, trunc(x / d + 16.5))
//   Q4_1  d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5))
//   Q5_1  d = (max - min) / 31, m = min, q = trunc((x - min) / d + 0.5)
//   ("/ d" is "* (1/d)", and 1/d is 0 when d is 0.)
//   Q4_K, Q5_K  per 32: weighted least-squares search over 21 (Q5_K: 16) candidate scales
//               for a scale and a min (ggml's make_qkx2_quants, weights sqrt(mean x^2) + |x|),
//               6-bit scales and mins relative to the block's largest, codes recomputed from
//               the rounded scales.
//   Q6_K  per 16: a scale chosen among 19 candidates by x^2-weighted least squares (ggml's
//               make_qx_quants, rmse_type 1), 8-bit scales relative to the largest.
//
// fp16 rounding is to nearest even (NaN becomes 0x7E00, as ggml's software conversion does).
#include "lathe_ggml.h"
#include "lathe_elementwise.h"
#include "lathe_kernels.h"

#include <math.h>
#include <string.h>

// Keep every a*b+c as two roundings, as ggml's reference build does.
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
#pragma STDC FP_CONTRACT OFF

static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/// binary32 -> binary16 bits, round to nearest even.
static inline uint16_t half_from(float f) {
    const uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        // NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);       // rounds to 65536 or more: inf
    if (a < 0x38800000u) {                                          // below 2^-14: subnormal or 0
        // |f| / 2^-24 is exact; rintf rounds it to the nearest even integer (0 ... 1024).
        return (uint16_t)(sign | (uint32_t)rintf(float_of(a) * 16777216.0f));
    }
    // Rebias the exponent (127 - 15) and round the 23-bit mantissa to 10 bits, to nearest even;
    // a carry out of the mantissa moves into the exponent, as it should.
    return (uint16_t)(sign | ((a - (112u << 23) + 0x0fffu + ((a >> 13) & 1u)) >> 13));
}

/// binary16 bits -> binary32 (exact).
static inline float half_to(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24
        return sign ? -v : v;
    }
    if (e == 0x1f) return float_of(sign | 0x7f800000u | (m << 13));
    return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

static inline void store_half(uint8_t *p, float f) {
    const uint16_t h = half_from(f);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static inline float load_half(const uint8_t *p) { return half_to((uint16_t)(p[0] | (p[1] << 8))); }

/// ggml's nearest_int: round to nearest, ties to even, by adding 1.5 * 2^23 (valid for
/// |f| < 2^22, which ggml asserts and its callers guarantee).
static inline int nearest_int(float f) {
    const float v = f + 12582912.f;
    return (int)(bits_of(v) & 0x007fffffu) - 0x00400000;
}

// ---- legacy 32-element blocks ----------------------------------------------------------------

/// The first element of largest magnitude (the sign matters for Q4_0 and Q5_0).
static inline float signed_absmax(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float a = fabsf(x[j]);
        if (amax < a) { amax = a; max = x[j]; }
    }
    return max;
}

static void row_q4_0(const float *x, uint8_t *y, long nb) {
    for (long b = 0; b < nb; b++, x += 32, y += 18) {
        const float d = signed_absmax(x) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(y, d);
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id, x1 = x[j + 16] * id;
            int q0 = (int8_t)(x0 + 8.5f), q1 = (int8_t)(x1 + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[2 + j] = (uint8_t)((uint8_t)q0 | ((uint8_t)q1 << 4));
        }
    }
}

static void row_q5_0(const float *x, uint8_t *y, long nb) {
    for (long b = 0; b < nb; b++, x += 32, y += 22) {
        const float d = signed_absmax(x) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(y, d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id, x1 = x[j + 16] * id;
            int q0 = (int8_t)(x0 + 16.5f), q1 = (int8_t)(x1 + 16.5f);
            q0 = q0 < 31 ? q0 : 31;
            q1 = q1 < 31 ? q1 : 31;
            const uint8_t u0 = (uint8_t)q0, u1 = (uint8_t)q1;
            y[6 + j] = (uint8_t)((u0 & 0x0f) | ((u1 & 0x0f) << 4));
            qh |= (uint32_t)((u0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((u1 & 0x10u) >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) y[2 + k] = (uint8_t)(qh >> (8 * k));
    }
}

/// Q4_1 (nmax 15, 20-byte blocks) and Q5_1 (nmax 31, 24-byte blocks).
static void row_q_1(const float *x, uint8_t *y, long nb, int five) {
    const int nmax = five ? 31 : 15;
    for (long b = 0; b < nb; b++, x += 32, y += five ? 24 : 20) {
        float min = 3.402823466e+38f, max = -3.402823466e+38f;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / nmax;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(y, d);
        store_half(y + 2, min);
        uint8_t *qs = y + (five ? 8 : 4);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[j + 16] - min) * id;
            uint8_t u0, u1;
            if (five) {
                u0 = (uint8_t)(x0 + 0.5f);
                u1 = (uint8_t)(x1 + 0.5f);
                qh |= (uint32_t)((u0 & 0x10u) >> 4) << j;
                qh |= (uint32_t)((u1 & 0x10u) >> 4) << (j + 16);
            } else {
                const int q0 = (int8_t)(x0 + 0.5f), q1 = (int8_t)(x1 + 0.5f);
                u0 = (uint8_t)(q0 < 15 ? q0 : 15);
                u1 = (uint8_t)(q1 < 15 ? q1 : 15);
            }
            qs[j] = (uint8_t)((u0 & 0x0f) | ((u1 & 0x0f) << 4));
        }
        if (five) for (int k = 0; k < 4; k++) y[4 + k] = (uint8_t)(qh >> (8 * k));
    }
}

static void row_q8_0(const float *x, uint8_t *y, long nb) {
    for (long b = 0; b < nb; b++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float a = fabsf(x[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_half(y, d);
        for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

// ---- K-quants: 256-element super-blocks --------------------------------------------------------

/// ggml's make_qkx2_quants: codes L[0..n) in 0...nmax and (returned) scale, *neg_min = -min,
/// minimising sum w * (scale * L + min - x)^2 over candidate inverse scales
/// (rmin + rdelta * is + nmax) / (max - min), is = 0...nstep. min is at most 0.
static float qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, uint8_t *Laux,
                  float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        const float diff = scale * L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/// Q4_K (144 bytes: d, dmin, scales[12], qs[128]) and Q5_K (176: d, dmin, scales[12], qh[32], qs[128]).
static void row_qk_k(const float *x, uint8_t *y, long nb, int five) {
    const int nmax = five ? 31 : 15;
    for (long b = 0; b < nb; b++, x += 256, y += five ? 176 : 144) {
        uint8_t L[256], Laux[32];
        float w[32], scales[8], mins[8];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
            scales[j] = five ? qkx2(32, 31, xs, w, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15)
                             : qkx2(32, 15, xs, w, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        uint8_t *sc = y + 4;
        memset(sc, 0, 12);
        for (int j = 0; j < 8; j++) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
                sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
                sc[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        store_half(y, max_scale / 63.f);
        store_half(y + 2, max_min / 63.f);
        const float d_all = load_half(y), dmin_all = load_half(y + 2);
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            if (j < 4) {
                s = sc[j] & 63;
                m = sc[j + 4] & 63;
            } else {
                s = (uint8_t)((sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4));
                m = (uint8_t)((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4));
            }
            const float d = d_all * s;
            if (d == 0.0f) continue;  // keep the codes of the search
            const float dm = dmin_all * m;
            for (int i = 0; i < 32; i++) {
                const int l = nearest_int((x[32 * j + i] + dm) / d);
                L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
            }
        }
        if (five) {
            uint8_t *qh = y + 16, *ql = y + 48;
            memset(qh, 0, 32);
            uint8_t m1 = 1, m2 = 2;
            for (int n = 0; n < 256; n += 64) {
                for (int j = 0; j < 32; j++) {
                    int l1 = L[n + j], l2 = L[n + j + 32];
                    if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                    if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                    ql[j] = (uint8_t)(l1 | (l2 << 4));
                }
                m1 = (uint8_t)(m1 << 2);
                m2 = (uint8_t)(m2 << 2);
                ql += 32;
            }
        } else {
            uint8_t *q = y + 16;
            for (int n = 0; n < 256; n += 64, q += 32)
                for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[n + l] | (L[n + l + 32] << 4));
        }
    }
}

/// ggml's make_qx_quants with rmse_type 1 (weights x^2) and no importance weights: codes
/// L = l + nmax with l in -nmax...nmax-1 and the scale, the best of 19 candidate inverse
/// scales -(nmax + 0.1 is) / v (v the first x of largest |x|) by weighted least squares.
static float qx(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) { amax = a; max = x[i]; }
    }
    if (amax < 1e-15f) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/// Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d).
static void row_q6_k(const float *x, uint8_t *y, long nb) {
    for (long b = 0; b < nb; b++, x += 256, y += 210) {
        int8_t L[256];
        float scales[16];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            const float scale = qx(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float a = fabsf(scale);
            if (a > max_abs_scale) { max_abs_scale = a; max_scale = scale; }
        }
        if (max_abs_scale < 1e-15f) {
            memset(y, 0, 210);
            continue;
        }
        const float iscale = -128.f / max_scale;
        store_half(y + 208, 1 / iscale);
        int8_t *sc = (int8_t *)(y + 192);
        for (int ib = 0; ib < 16; ib++) {
            const int s = nearest_int(iscale * scales[ib]);
            sc[ib] = (int8_t)(s < 127 ? s : 127);
        }
        const float d_all = load_half(y + 208);
        for (int j = 0; j < 16; j++) {
            const float d = d_all * sc[j];
            if (d == 0.0f) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                l = l < -32 ? -32 : l > 31 ? 31 : l;
                L[16 * j + i] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y, *qh = y + 128;
        for (int j = 0; j < 256; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = (uint8_t)L[j + l], q2 = (uint8_t)L[j + l + 32];
                const uint8_t q3 = (uint8_t)L[j + l + 64], q4 = (uint8_t)L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0x0f) | ((q3 & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0x0f) | ((q4 & 0x0f) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

// ---- dispatch ------------------------------------------------------------------------------

/// Elements per block and bytes per block of `type`, or 0 for types Lathe does not write.
static int block_shape(int type, long *bytes) {
    switch (type) {
    case LATHE_GGML_F32: *bytes = 4; return 1;
    case LATHE_GGML_F16: *bytes = 2; return 1;
    case LATHE_GGML_BF16: *bytes = 2; return 1;
    case LATHE_GGML_Q4_0: *bytes = 18; return 32;
    case LATHE_GGML_Q4_1: *bytes = 20; return 32;
    case LATHE_GGML_Q5_0: *bytes = 22; return 32;
    case LATHE_GGML_Q5_1: *bytes = 24; return 32;
    case LATHE_GGML_Q8_0: *bytes = 34; return 32;
    case LATHE_GGML_Q4_K: *bytes = 144; return 256;
    case LATHE_GGML_Q5_K: *bytes = 176; return 256;
    case LATHE_GGML_Q6_K: *bytes = 210; return 256;
    default: *bytes = 0; return 0;
    }
}

int lathe_ggml_can_quantize(int type) {
    long bytes;
    return block_shape(type, &bytes) != 0;
}

size_t lathe_ggml_quantize_row(int type, const float *x, void *out, long n) {
    long bytes;
    const int block = block_shape(type, &bytes);
    if (block == 0 || n < 0 || n % block != 0) return 0;
    const long nb = n / block;
    uint8_t *y = (uint8_t *)out;
    switch (type) {
    case LATHE_GGML_F32: memcpy(y, x, (size_t)n * 4); break;
    case LATHE_GGML_F16: lathe_f32_to_f16(x, (uint16_t *)out, n); break;
    case LATHE_GGML_BF16: lathe_f32_to_bf16(x, (uint16_t *)out, n); break;
    case LATHE_GGML_Q4_0: row_q4_0(x, y, nb); break;
    case LATHE_GGML_Q4_1: row_q_1(x, y, nb, 0); break;
    case LATHE_GGML_Q5_0: row_q5_0(x, y, nb); break;
    case LATHE_GGML_Q5_1: row_q_1(x, y, nb, 1); break;
    case LATHE_GGML_Q8_0: row_q8_0(x, y, nb); break;
    case LATHE_GGML_Q4_K: row_qk_k(x, y, nb, 0); break;
    case LATHE_GGML_Q5_K: row_qk_k(x, y, nb, 1); break;
    case LATHE_GGML_Q6_K: row_q6_k(x, y, nb); break;
    default: return 0;
    }
    return (size_t)(nb * bytes);
}

typedef struct {
    int type;
    const float *x;
    uint8_t *y;
    long nrows, n_per_row, rows_per_task;
    size_t row_bytes;
} quantize_job;

static void quantize_task(void *ctx, long t) {
    const quantize_job *job = (const quantize_job *)ctx;
    const long r0 = t * job->rows_per_task;
    long r1 = r0 + job->rows_per_task;
    if (r1 > job->nrows) r1 = job->nrows;
    if (r0 >= r1) return;
    // Consecutive rows are one contiguous run of blocks.
    lathe_ggml_quantize_row(job->type, job->x + r0 * job->n_per_row, job->y + (size_t)r0 * job->row_bytes,
                            (r1 - r0) * job->n_per_row);
}

size_t lathe_ggml_quantize(int type, const float *x, void *y, long nrows, long n_per_row) {
    long bytes;
    const int block = block_shape(type, &bytes);
    if (block == 0 || nrows < 0 || n_per_row < 0 || n_per_row % block != 0) return 0;
    const size_t row_bytes = (size_t)(n_per_row / block) * (size_t)bytes;
    if (nrows == 0 || n_per_row == 0) return 0;
    // About 64k elements per task: enough work to amortise a task, enough tasks to balance.
    long rows_per_task = 65536 / n_per_row;
    if (rows_per_task < 1) rows_per_task = 1;
    const long tasks = (nrows + rows_per_task - 1) / rows_per_task;
    quantize_job job = {type, x, (uint8_t *)y, nrows, n_per_row, rows_per_task, row_bytes};
    if (tasks == 1) quantize_task(&job, 0);
    else lathe_parallel_for(tasks, quantize_task, &job);
    return (size_t)nrows * row_bytes;
}
