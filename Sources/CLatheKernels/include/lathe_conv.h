// im2col / col2im for 2-D convolution (row-major NCHW), the data movement around the GEMM.
#ifndef LATHE_CONV_H
#define LATHE_CONV_H

#ifdef __cplusplus
extern "C" {
#endif

/// Geometry of a window sliding over an input plane.
typedef struct {
    long in_h, in_w, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w;
} lathe_conv_geometry;

/// Unfolds rows [r0, r1) of the column matrix, row r = (channel, ki, kj) with channel
/// relative to c0: cols[r, b*L + oy*out_w + ox] = x[b, c0 + channel, iy, ix] or 0 outside,
/// where L = out_h*out_w. x is [n, c, in_h, in_w]; cols is [channels*kh*kw, n*L].
void lathe_im2col_f32(const float *x, long n, long c, long c0, const lathe_conv_geometry *g,
                      long r0, long r1, float *cols);

/// Adds the column matrix back into planes [p0, p1) of x, plane p = (b, channel):
/// the adjoint of lathe_im2col_f32 (x[b, c0 + channel] += sum of its taps).
void lathe_col2im_f32(const float *cols, long n, long c, long c0, long channels,
                      const lathe_conv_geometry *g, long p0, long p1, float *x);

#ifdef __cplusplus
}
#endif
#endif
