// Optimiser update rules over contiguous float32 buffers (single-threaded; the caller splits).
#ifndef LATHE_OPTIM_H
#define LATHE_OPTIM_H

#ifdef __cplusplus
extern "C" {
#endif

/// One Adam/AdamW step over n elements:
///   g' = g + wd p (L2, when !decoupled); p *= 1 - lr wd (when decoupled);
///   m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
///   p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
/// with step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t) computed by the caller.
void lathe_adam_step_f32(long n, float *p, const float *g, float *m, float *v, float lr, float b1, float b2,
                         float eps, float wd, int decoupled, float step_size, float bc2_sqrt);

#ifdef __cplusplus
}
#endif
#endif
