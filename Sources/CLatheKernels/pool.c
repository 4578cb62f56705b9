// Max pooling without branches: each candidate replaces the best when it is larger or NaN
// (and the best is not NaN), chosen with selects the compiler turns into blends or cmovs.
#include "lathe_pool.h"
#include <string.h>

static inline void take(float v, int32_t i, float *best, int32_t *bi) {
    const int better = (v > *best) | ((v != v) & (*best == *best));
    *best = better ? v : *best;
    *bi = better ? i : *bi;
}

static inline float pick(float best, float v) {
    const int better = (v > best) | ((v != v) & (best == best));
    return better ? v : best;
}

void lathe_maxpool2x2_values_f32(const float *x, long h, long w, long p0, long p1, float *y) {
    const long oh = h / 2, ow = w / 2;
    for (long p = p0; p < p1; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * oh * ow;
        for (long oy = 0; oy < oh; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            for (long ox = 0; ox < ow; ox++) {
                // The same order of comparisons as with indices, so NaNs and ties give the same value.
                float best = r0[2 * ox];
                best = pick(best, r0[2 * ox + 1]);
                best = pick(best, r1[2 * ox]);
                dst[oy * ow + ox] = pick(best, r1[2 * ox + 1]);
            }
        }
    }
}

void lathe_maxpool2x2_f32(const float *x, long h, long w, long p0, long p1, float *y, int32_t *index) {
    const long oh = h / 2, ow = w / 2;
    for (long p = p0; p < p1; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * oh * ow;
        int32_t *idx = index + p * oh * ow;
        for (long oy = 0; oy < oh; oy++) {
            const float *r0 = src + 2 * oy * w, *r1 = r0 + w;
            const int32_t base = (int32_t)(2 * oy * w);
            for (long ox = 0; ox < ow; ox++) {
                float best = r0[2 * ox];
                int32_t bi = base + (int32_t)(2 * ox);
                take(r0[2 * ox + 1], bi + 1, &best, &bi);
                take(r1[2 * ox], base + (int32_t)(w + 2 * ox), &best, &bi);
                take(r1[2 * ox + 1], base + (int32_t)(w + 2 * ox + 1), &best, &bi);
                dst[oy * ow + ox] = best;
                idx[oy * ow + ox] = bi;
            }
        }
    }
}

void lathe_maxpool2x2_backward_f32(const float *g, const int32_t *index, long h, long w, long p0,
                                   long p1, float *dx) {
    const long n = (h / 2) * (w / 2);
    for (long p = p0; p < p1; p++) {
        float *plane = dx + p * h * w;
        memset(plane, 0, sizeof(float) * (size_t)(h * w));
        const float *gp = g + p * n;
        const int32_t *ip = index + p * n;
        for (long o = 0; o < n; o++) plane[ip[o]] += gp[o];
    }
}
