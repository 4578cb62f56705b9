// Pooling kernels over NCHW planes.
#ifndef LATHE_POOL_H
#define LATHE_POOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 2x2 max pooling with stride 2 and no padding over planes [p0, p1) of x [planes, h, w]:
/// y [planes, h/2, w/2] (floor), index = flat position in the plane of the first maximum
/// (a NaN wins, like PyTorch). Branch-free, so random data costs no mispredictions.
void lathe_maxpool2x2_f32(const float *x, long h, long w, long p0, long p1, float *y, int32_t *index);

/// lathe_maxpool2x2_f32 without the indices (inference): the same values.
void lathe_maxpool2x2_values_f32(const float *x, long h, long w, long p0, long p1, float *y);

/// Backward of lathe_maxpool2x2_f32 for planes [p0, p1): dx [planes, h, w] gets g at each
/// window's index and 0 elsewhere (written, not added).
void lathe_maxpool2x2_backward_f32(const float *g, const int32_t *index, long h, long w, long p0,
                                   long p1, float *dx);

#ifdef __cplusplus
}
#endif
#endif
