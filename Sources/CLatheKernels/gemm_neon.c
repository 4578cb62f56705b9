// NEON (AArch64) fp32 GEMM micro-kernel: 8 x 8 register tile.
//
// 8 rows x 2 q-registers = 16 accumulators, 2 for the B row, 2 for 8 A values (used by lane):
// 20 of the 32 vector registers. Kept simple; not tuned (no AArch64 machine to measure on).
#include "gemm_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

enum { MR = 8, NR = 8 };

/// See lathe_ukr_fn. a: [kc][8] packed, b: [kc][8] with row stride ldb, c: [mr][nr] (ldc).
static void ukr_neon_8x8(long kc, const float *a, const float *b, long ldb, float *c, long ldc,
                         long mr, long nr, float alpha, float beta) {
    float32x4_t acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
    for (long k = 0; k < kc; k++) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
        const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        acc[0][0] = vfmaq_laneq_f32(acc[0][0], b0, a0, 0);
        acc[0][1] = vfmaq_laneq_f32(acc[0][1], b1, a0, 0);
        acc[1][0] = vfmaq_laneq_f32(acc[1][0], b0, a0, 1);
        acc[1][1] = vfmaq_laneq_f32(acc[1][1], b1, a0, 1);
        acc[2][0] = vfmaq_laneq_f32(acc[2][0], b0, a0, 2);
        acc[2][1] = vfmaq_laneq_f32(acc[2][1], b1, a0, 2);
        acc[3][0] = vfmaq_laneq_f32(acc[3][0], b0, a0, 3);
        acc[3][1] = vfmaq_laneq_f32(acc[3][1], b1, a0, 3);
        acc[4][0] = vfmaq_laneq_f32(acc[4][0], b0, a1, 0);
        acc[4][1] = vfmaq_laneq_f32(acc[4][1], b1, a1, 0);
        acc[5][0] = vfmaq_laneq_f32(acc[5][0], b0, a1, 1);
        acc[5][1] = vfmaq_laneq_f32(acc[5][1], b1, a1, 1);
        acc[6][0] = vfmaq_laneq_f32(acc[6][0], b0, a1, 2);
        acc[6][1] = vfmaq_laneq_f32(acc[6][1], b1, a1, 2);
        acc[7][0] = vfmaq_laneq_f32(acc[7][0], b0, a1, 3);
        acc[7][1] = vfmaq_laneq_f32(acc[7][1], b1, a1, 3);
        a += MR;
        b += ldb;
    }
    // Same per-element arithmetic for full and edge tiles (vector FMA == fmaf, both fused).
    const float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta);
    const int bz = (beta == 0.0f);
    for (long i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (nr == NR) {
            for (int h = 0; h < 2; h++) {
                float32x4_t r = bz ? vmulq_f32(va, acc[i][h])
                                   : vfmaq_f32(vmulq_f32(vb, vld1q_f32(ci + 4 * h)), va, acc[i][h]);
                vst1q_f32(ci + 4 * h, r);
            }
        } else {
            float tmp[NR];
            vst1q_f32(tmp, acc[i][0]);
            vst1q_f32(tmp + 4, acc[i][1]);
            for (long j = 0; j < nr; j++)
                ci[j] = bz ? alpha * tmp[j] : __builtin_fmaf(alpha, tmp[j], beta * ci[j]);
        }
    }
}

const lathe_gemm_kernel lathe_gemm_kernel_neon = {
    .mr = MR, .nr = NR, .kc = 256, .mc = 8 * 16, .nc = 2048,
    .ukr = ukr_neon_8x8, .name = "neon-8x8",
};

#endif  // __aarch64__
