// im2col / col2im. Interior runs with stride 1 are straight copies/adds the compiler
// vectorises; edges are handled by computing the valid ox range once per row.
#include "lathe_conv.h"
#include <string.h>

#define SMALL_PLANE 1024  // padded plane elements
#define SMALL_TAPS 4096   // taps * output positions

// Valid output columns [lo, hi) for tap offset `off` (= kj*dw - pw): 0 <= ox*sw + off < in_w.
static void valid_range(long off, long sw, long in_w, long out_w, long *lo, long *hi) {
    long a = off < 0 ? (-off + sw - 1) / sw : 0;
    long b = in_w - off <= 0 ? 0 : (in_w - off + sw - 1) / sw;
    if (b > out_w) b = out_w;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

void lathe_im2col_f32(const float *x, long n, long c, long c0, const lathe_conv_geometry *g,
                      long r0, long r1, float *cols) {
    const long L = g->out_h * g->out_w, NL = n * L;
    for (long r = r0; r < r1; r++) {
        const long ch = r / (g->kh * g->kw), ki = (r / g->kw) % g->kh, kj = r % g->kw;
        const long off = kj * g->dw - g->pw;
        long lo, hi;
        valid_range(off, g->sw, g->in_w, g->out_w, &lo, &hi);
        float *dst = cols + r * NL;
        for (long b = 0; b < n; b++) {
            const float *plane = x + ((b * c) + c0 + ch) * g->in_h * g->in_w;
            for (long oy = 0; oy < g->out_h; oy++) {
                float *d = dst + b * L + oy * g->out_w;
                const long iy = oy * g->sh - g->ph + ki * g->dh;
                if (iy < 0 || iy >= g->in_h) { memset(d, 0, sizeof(float) * g->out_w); continue; }
                const float *src = plane + iy * g->in_w + off;
                for (long ox = 0; ox < lo; ox++) d[ox] = 0;
                if (g->sw == 1) {
                    memcpy(d + lo, src + lo, sizeof(float) * (hi - lo));
                } else {
                    for (long ox = lo; ox < hi; ox++) d[ox] = src[ox * g->sw];
                }
                for (long ox = hi; ox < g->out_w; ox++) d[ox] = 0;
            }
        }
    }
}

void lathe_col2im_f32(const float *cols, long n, long c, long c0, long channels,
                      const lathe_conv_geometry *g, long p0, long p1, float *x) {
    const long L = g->out_h * g->out_w, NL = n * L;
    for (long p = p0; p < p1; p++) {
        const long b = p / channels, ch = p % channels;
        float *plane = x + ((b * c) + c0 + ch) * g->in_h * g->in_w;
        for (long ki = 0; ki < g->kh; ki++) {
            for (long kj = 0; kj < g->kw; kj++) {
                const long off = kj * g->dw - g->pw;
                long lo, hi;
                valid_range(off, g->sw, g->in_w, g->out_w, &lo, &hi);
                const float *src = cols + ((ch * g->kh + ki) * g->kw + kj) * NL + b * L;
                for (long oy = 0; oy < g->out_h; oy++) {
                    const long iy = oy * g->sh - g->ph + ki * g->dh;
                    if (iy < 0 || iy >= g->in_h) continue;
                    float *d = plane + iy * g->in_w + off;
                    const float *s = src + oy * g->out_w;
                    if (g->sw == 1) {
                        for (long ox = lo; ox < hi; ox++) d[ox] += s[ox];
                    } else {
                        for (long ox = lo; ox < hi; ox++) d[ox * g->sw] += s[ox];
                    }
                }
            }
        }
    }
}

// ---- Small planes: through a zero-padded copy of the plane ----------------------------------
// Padded plane (in_h + 2 ph) x (in_w + 2 pw); tap t = (ki, kj) of output l = (oy, ox) reads
// element off[t * L + l] = (oy sh + ki dh) * Wp + ox sw + kj dw, always in bounds.

int lathe_conv_small_ok(const lathe_conv_geometry *g) {
    const long hp = g->in_h + 2 * g->ph, wp = g->in_w + 2 * g->pw;
    const long taps = g->kh * g->kw, L = g->out_h * g->out_w;
    return hp * wp <= SMALL_PLANE && taps * L <= SMALL_TAPS && g->out_w <= 16;
}

static void small_offsets(const lathe_conv_geometry *g, int *off) {
    const long wp = g->in_w + 2 * g->pw, L = g->out_h * g->out_w;
    for (long ki = 0; ki < g->kh; ki++)
        for (long kj = 0; kj < g->kw; kj++) {
            int *o = off + (ki * g->kw + kj) * L;
            for (long oy = 0; oy < g->out_h; oy++)
                for (long ox = 0; ox < g->out_w; ox++)
                    o[oy * g->out_w + ox] = (int)((oy * g->sh + ki * g->dh) * wp + ox * g->sw + kj * g->dw);
        }
}

void lathe_im2col_small_f32(const float *x, long n, long c, long c0, long channels,
                            const lathe_conv_geometry *g, long p0, long p1, float *cols) {
    const long L = g->out_h * g->out_w, NL = n * L, taps = g->kh * g->kw;
    const long hp = g->in_h + 2 * g->ph, wp = g->in_w + 2 * g->pw;
    int off[SMALL_TAPS];
    float pad[SMALL_PLANE];
    small_offsets(g, off);
    memset(pad, 0, sizeof(float) * (size_t)(hp * wp));
    for (long p = p0; p < p1; p++) {
        const long b = p / channels, ch = p % channels;
        const float *plane = x + ((b * c) + c0 + ch) * g->in_h * g->in_w;
        for (long iy = 0; iy < g->in_h; iy++)
            memcpy(pad + (iy + g->ph) * wp + g->pw, plane + iy * g->in_w, sizeof(float) * (size_t)g->in_w);
        for (long t = 0; t < taps; t++) {
            float *d = cols + (ch * taps + t) * NL + b * L;
            const int *o = off + t * L;
            for (long l = 0; l < L; l++) d[l] = pad[o[l]];
        }
    }
}

void lathe_col2im_small_f32(const float *cols, long n, long c, long c0, long channels,
                            const lathe_conv_geometry *g, long p0, long p1, float *x) {
    const long L = g->out_h * g->out_w, NL = n * L, taps = g->kh * g->kw;
    const long hp = g->in_h + 2 * g->ph, wp = g->in_w + 2 * g->pw;
    int off[SMALL_TAPS];
    float pad[SMALL_PLANE];
    small_offsets(g, off);
    for (long p = p0; p < p1; p++) {
        const long b = p / channels, ch = p % channels;
        memset(pad, 0, sizeof(float) * (size_t)(hp * wp));
        for (long t = 0; t < taps; t++) {
            const float *s = cols + (ch * taps + t) * NL + b * L;
            const int *o = off + t * L;
            for (long l = 0; l < L; l++) pad[o[l]] += s[l];
        }
        float *plane = x + ((b * c) + c0 + ch) * g->in_h * g->in_w;
        for (long iy = 0; iy < g->in_h; iy++)
            memcpy(plane + iy * g->in_w, pad + (iy + g->ph) * wp + g->pw, sizeof(float) * (size_t)g->in_w);
    }
}

void lathe_swap01_f32(const float *src, long A, long B, long L, const float *bias, long b0,
                      long b1, float *dst) {
    for (long b = b0; b < b1; b++)
        for (long a = 0; a < A; a++) {
            const float *s = src + (a * B + b) * L;
            float *d = dst + (b * A + a) * L;
            if (bias) {
                const float v = bias[a];
                for (long l = 0; l < L; l++) d[l] = s[l] + v;
            } else {
                memcpy(d, s, sizeof(float) * (size_t)L);
            }
        }
}
