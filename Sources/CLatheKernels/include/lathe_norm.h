// Fused normalisation kernels (forward and backward), used where the composed versions
// were too slow (training-step benchmarks). Each has a composed reference in the tests.
#ifndef LATHE_NORM_H
#define LATHE_NORM_H

#ifdef __cplusplus
extern "C" {
#endif

/// Batch norm with batch statistics over channels [c0, c1) of x [n, channels, hw]:
/// mean[c], var[c] (biased; var may be NULL), invstd[c] = 1/sqrt(var[c] + eps), and
/// y = (x - mean) * invstd * weight[c] + bias[c] (weight/bias may be NULL: 1 and 0).
void lathe_batchnorm_train_forward_f32(const float *x, long n, long channels, long hw, long c0, long c1,
                                       const float *weight, const float *bias, float eps,
                                       float *y, float *mean, float *invstd, float *var);
/// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c] for channels [c0, c1) (evaluation mode).
void lathe_batchnorm_apply_f32(const float *x, long n, long channels, long hw, long c0, long c1,
                               const float *mean, const float *invstd, const float *weight,
                               const float *bias, float *y);
/// Backward of the training-mode forward for channels [c0, c1):
/// dx = invstd * w * (dy - mean(dy) - xhat * mean(dy * xhat)), dweight = sum(dy * xhat),
/// dbias = sum(dy), sums over n and hw. dx, dweight, dbias may be NULL when not needed.
void lathe_batchnorm_train_backward_f32(const float *dy, const float *x, long n, long channels, long hw,
                                        long c0, long c1, const float *mean, const float *invstd,
                                        const float *weight, float *dx, float *dweight, float *dbias);

/// Layer norm over the last dim of rows [r0, r1) of x [rows, d]:
/// y = (x - mean) * rstd * weight + bias (weight/bias may be NULL), saving mean and rstd.
void lathe_layernorm_forward_f32(const float *x, long d, long r0, long r1, const float *weight,
                                 const float *bias, float eps, float *y, float *mean, float *rstd);
/// Backward for rows [r0, r1): dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with
/// g = dy * weight; adds sum over those rows of dy * xhat to dweight and of dy to dbias
/// (either may be NULL).
void lathe_layernorm_backward_f32(const float *dy, const float *x, long d, long r0, long r1,
                                  const float *mean, const float *rstd, const float *weight,
                                  float *dx, float *dweight, float *dbias);

#ifdef __cplusplus
}
#endif
#endif
