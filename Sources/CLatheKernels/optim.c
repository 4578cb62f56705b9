// Optimiser update loops: plain C the compiler vectorises, with AVX2/AVX-512 clones chosen
// at run time through the same dispatch as the other kernels.
#include "lathe_optim.h"
#include "lathe_kernels.h"
#include <math.h>

// sqrtf() is not vectorised while errno is honoured (the Linux default); the elementwise
// builtin is the same correctly rounded square root without errno.
#if defined(__has_builtin)
#if __has_builtin(__builtin_elementwise_sqrt)
#define OPT_SQRT(x) __builtin_elementwise_sqrt(x)
#endif
#endif
#ifndef OPT_SQRT
#define OPT_SQRT(x) sqrtf(x)
#endif

#define ADAM_BODY                                                                  \
    for (long i = 0; i < n; i++) {                                                 \
        float gi = g[i];                                                           \
        float pi = p[i];                                                           \
        if (decoupled) pi *= 1.0f - lr * wd; else gi += wd * pi;                   \
        const float mi = b1 * m[i] + (1.0f - b1) * gi;                             \
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;                        \
        m[i] = mi;                                                                 \
        v[i] = vi;                                                                 \
        p[i] = pi - step_size * mi / (OPT_SQRT(vi) / bc2_sqrt + eps);                 \
    }

static void adam_portable(long n, float *restrict p, const float *restrict g, float *restrict m,
                          float *restrict v, float lr, float b1, float b2, float eps, float wd,
                          int decoupled, float step_size, float bc2_sqrt) {
    ADAM_BODY
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512vl,fma")))
static void adam_avx512(long n, float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, float lr, float b1, float b2, float eps, float wd,
                        int decoupled, float step_size, float bc2_sqrt) {
    ADAM_BODY
}

__attribute__((target("avx2,fma")))
static void adam_avx2(long n, float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, float lr, float b1, float b2, float eps, float wd,
                      int decoupled, float step_size, float bc2_sqrt) {
    ADAM_BODY
}
#endif

void lathe_adam_step_f32(long n, float *p, const float *g, float *m, float *v, float lr, float b1, float b2,
                         float eps, float wd, int decoupled, float step_size, float bc2_sqrt) {
#if defined(__x86_64__)
    switch (lathe_active_isa()) {
    case LATHE_ISA_AVX512: adam_avx512(n, p, g, m, v, lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt); return;
    case LATHE_ISA_AVX2: adam_avx2(n, p, g, m, v, lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt); return;
    default: break;
    }
#endif
    adam_portable(n, p, g, m, v, lr, b1, b2, eps, wd, decoupled, step_size, bc2_sqrt);
}
