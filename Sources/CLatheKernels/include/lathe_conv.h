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

/// Small planes (see lathe_conv_small_ok): the same unfolding as lathe_im2col_f32, but over
/// planes [p0, p1), plane p = (b, channel) of the group [c0, c0 + channels), through a
/// zero-padded copy of each plane (no edge cases, no short copies).
void lathe_im2col_small_f32(const float *x, long n, long c, long c0, long channels,
                            const lathe_conv_geometry *g, long p0, long p1, float *cols);

/// Small planes: writes (does not add) x[b, c0 + channel] = the sum of its taps for planes
/// [p0, p1), accumulating taps in the same order as lathe_col2im_f32 (the same bits as
/// lathe_col2im_f32 into zeros).
void lathe_col2im_small_f32(const float *cols, long n, long c, long c0, long channels,
                            const lathe_conv_geometry *g, long p0, long p1, float *x);

/// Whether the *_small kernels handle this geometry (planes of at most a few hundred
/// elements, where rows are too short for the row-run kernels).
int lathe_conv_small_ok(const lathe_conv_geometry *g);

/// dst[b][a][:] = src[a][b][:] + (bias ? bias[a] : 0) for b in [b0, b1): src [A, B, L],
/// dst [B, A, L]. Moves a convolution's [O, N, L] GEMM output to [N, O, L] with its bias,
/// and back for the gradient.
void lathe_swap01_f32(const float *src, long A, long B, long L, const float *bias, long b0,
                      long b1, float *dst);

#ifdef __cplusplus
}
#endif
#endif
