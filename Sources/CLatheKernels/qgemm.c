// int8 GEMM driver: C = epilogue(A_u8[M,K] x W_s8[N,K]^T), weights packed once (lathe_quant.h).
//
// Structure: the output is cut into task tiles (up to 48 rows x 64 columns); each task walks
// its tile in micro-tiles of MR rows x 64 columns (4 packed blocks of 16 channels), computes
// the int32 sums over all of K in registers (the ISA micro-kernel), then applies the epilogue
// (zero-point correction, scales, bias, ReLU, requantisation) row by row. Integer sums are
// exact, so every ISA and thread count gives the same bits.
#include "lathe_kernels.h"
#include "qgemm_internal.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

// ---- Packing -------------------------------------------------------------------------------------

static long pad16(long n) { return (n + 15) / 16 * 16; }
static long pad4(long k) { return (k + 3) / 4 * 4; }

size_t lathe_qgemm_packed_size(long N, long K) { return (size_t)(pad16(N) * pad4(K)); }

void lathe_qgemm_pack_s8(long N, long K, const int8_t *W /* [N,K] */, long ldw,
                         int8_t *packed /* [Np/16][Kp/4][16][4] */, int32_t *rowsum /* [N] */) {
    const long kp = pad4(K), np = pad16(N);
    memset(packed, 0, (size_t)(np * kp));
    for (long n = 0; n < N; n++) {
        int32_t s = 0;
        int8_t *blk = packed + (n / 16) * kp * 16 + (n % 16) * 4;
        for (long k = 0; k < K; k++) {
            blk[(k / 4) * 64 + k % 4] = W[n * ldw + k];
            s += W[n * ldw + k];
        }
        rowsum[n] = s;
    }
}

void lathe_qgemm_unpack_s8(long N, long K, const int8_t *packed, int8_t *W /* [N,K] */, long ldw) {
    const long kp = pad4(K);
    for (long n = 0; n < N; n++) {
        const int8_t *blk = packed + (n / 16) * kp * 16 + (n % 16) * 4;
        for (long k = 0; k < K; k++) W[n * ldw + k] = blk[(k / 4) * 64 + k % 4];
    }
}

// ---- Scalar micro-kernel and epilogue ------------------------------------------------------------

enum { SC_MR = 4 };

static void qukr_scalar(long K, const uint8_t *a, long lda, long mr, const int8_t *wp, long wstride,
                        long nb, int32_t *tile) {
    for (long i = 0; i < mr; i++) {
        for (long b = 0; b < nb; b++) {
            int32_t acc[16] = {0};
            const int8_t *w = wp + b * wstride;
            for (long k = 0; k < K; k += 4) {
                const uint32_t a4 = lathe_q_load4(a + i * lda, k, K);
                const int8_t *wk = w + (k / 4) * 64;
                for (int j = 0; j < 16; j++) {
                    int32_t s = 0;
                    for (int t = 0; t < 4; t++) s += (int32_t)((a4 >> (8 * t)) & 0xFF) * wk[j * 4 + t];
                    acc[j] += s;
                }
            }
            memcpy(tile + i * QG_TILE_N + b * 16, acc, sizeof acc);
        }
    }
}

/// The epilogue of one element, shared by every variant's scalar code and the tails.
static inline void epi_one(int32_t acc, long m, long n, const int32_t *rowsum,
                           const lathe_qgemm_epilogue *ep) {
    const int32_t v = acc - ep->a_zero_point * rowsum[n];
    if (ep->out_acc) ep->out_acc[m * ep->ld_acc + n] = v;
    if (!ep->out && !ep->out_q) return;
    const float s = ep->a_scale * ep->w_scale[n];
    float f = fmaf((float)v, s, ep->bias ? ep->bias[n] : 0.0f);
    if (ep->relu) f = f > 0.0f ? f : 0.0f;
    if (ep->out) ep->out[m * ep->ld_out + n] = f;
    if (ep->out_q) {
        float t = f * ep->out_inv_scale;
        t = t < -16777216.0f ? -16777216.0f : (t > 16777216.0f ? 16777216.0f : t);
        int32_t q = (int32_t)rintf(t) + ep->out_zero_point;
        ep->out_q[m * ep->ld_out_q + n] = (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
    }
}

static void qepi_scalar(const int32_t *acc, long m, long n0, long nn, const int32_t *rowsum,
                        const lathe_qgemm_epilogue *ep) {
    for (long j = 0; j < nn; j++) epi_one(acc[j], m, n0 + j, rowsum, ep);
}

// Exported for the per-ISA epilogues' tails.
void lathe_qepi_tail(const int32_t *acc, long m, long n0, long nn, const int32_t *rowsum,
                     const lathe_qgemm_epilogue *ep) {
    qepi_scalar(acc, m, n0, nn, rowsum, ep);
}

static const lathe_qgemm_kernel k_qscalar = {
    .mr = SC_MR, .ukr = qukr_scalar, .epi = qepi_scalar, .name = "scalar",
};

// ---- Variant choice ----------------------------------------------------------------------------

int lathe_has_avx512_vnni(void) {
#if defined(__x86_64__)
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    unsigned a, b, c, d;
    v = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) v = (c >> 11) & 1;  // AVX512_VNNI
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
#else
    return 0;
#endif
}

static const lathe_qgemm_kernel *qkernel(void) {
    switch (lathe_active_isa()) {
#if defined(__x86_64__)
    case LATHE_ISA_AVX512:
        return lathe_has_avx512_vnni() ? &lathe_qgemm_kernel_vnni : &lathe_qgemm_kernel_qavx2;
    case LATHE_ISA_AVX2: return &lathe_qgemm_kernel_qavx2;
#endif
    default: return &k_qscalar;
    }
}

const char *lathe_qgemm_variant(void) { return qkernel()->name; }

// ---- Driver ------------------------------------------------------------------------------------

typedef struct {
    const lathe_qgemm_kernel *kd;
    long M, N, K, kp;
    const uint8_t *A;
    long lda;
    const int8_t *packed;
    const int32_t *rowsum;
    const lathe_qgemm_epilogue *ep;
    long tile_m, grid_n;  // task tile rows; task tiles along N (each QG_TILE_N wide)
} qgemm_job;

static void qgemm_task(void *ctx, long t) {
    const qgemm_job *j = (const qgemm_job *)ctx;
    const long m0 = (t / j->grid_n) * j->tile_m, n0 = (t % j->grid_n) * QG_TILE_N;
    const long m1 = m0 + j->tile_m < j->M ? m0 + j->tile_m : j->M;
    const long nn = j->N - n0 < QG_TILE_N ? j->N - n0 : QG_TILE_N;
    const long nb = (nn + 15) / 16, mr_max = j->kd->mr;
    const int8_t *wp = j->packed + (n0 / 16) * j->kp * 16;
    int32_t tile[8 * QG_TILE_N] __attribute__((aligned(64)));
    for (long m = m0; m < m1; m += mr_max) {
        const long mr = m1 - m < mr_max ? m1 - m : mr_max;
        j->kd->ukr(j->K, j->A + m * j->lda, j->lda, mr, wp, j->kp * 16, nb, tile);
        for (long i = 0; i < mr; i++) j->kd->epi(tile + i * QG_TILE_N, m + i, n0, nn, j->rowsum, j->ep);
    }
}

void lathe_qgemm_u8s8(long M, long N, long K, const uint8_t *A /* [M,K] */, long lda,
                      const int8_t *packed, const int32_t *rowsum /* [N] */,
                      const lathe_qgemm_epilogue *ep) {
    if (M <= 0 || N <= 0) return;
    qgemm_job j = {
        .kd = qkernel(), .M = M, .N = N, .K = K, .kp = pad4(K), .A = A, .lda = lda,
        .packed = packed, .rowsum = rowsum, .ep = ep,
    };
    j.grid_n = (N + QG_TILE_N - 1) / QG_TILE_N;
    // Rows per task: a multiple of MR, near 48, so tasks are a few microseconds at least.
    const long mr = j.kd->mr;
    j.tile_m = M <= 48 ? M : (48 + mr - 1) / mr * mr;
    const long tasks = ((M + j.tile_m - 1) / j.tile_m) * j.grid_n;
    const double macs = (double)M * (double)N * (double)K;
    // Below ~2M multiply-adds (a few microseconds with VNNI) waking the pool costs more than it saves.
    if (tasks == 1 || lathe_num_threads() <= 1 || macs < 2.0e6) {
        for (long t = 0; t < tasks; t++) qgemm_task(&j, t);
    } else {
        lathe_parallel_for(tasks, qgemm_task, &j);
    }
}

// ---- Activation helpers ------------------------------------------------------------------------

#if defined(__x86_64__)
void lathe_quantize_u8_avx512(const float *x, long n, float inv_scale, int32_t zero_point, uint8_t *q);
#endif

void lathe_quantize_u8(const float *x, long n, float inv_scale, int32_t zero_point, uint8_t *q) {
#if defined(__x86_64__)
    if (lathe_active_isa() == LATHE_ISA_AVX512) {
        lathe_quantize_u8_avx512(x, n, inv_scale, zero_point, q);
        return;
    }
#endif
    for (long i = 0; i < n; i++) {
        float t = x[i] * inv_scale;
        t = t != t ? -16777216.0f : t;  // NaN quantizes to 0, as in the vector paths
        t = t < -16777216.0f ? -16777216.0f : (t > 16777216.0f ? 16777216.0f : t);
        int32_t v = (int32_t)rintf(t) + zero_point;
        q[i] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
}

void lathe_minmax_f32(const float *x, long n, float *min_out, float *max_out) {
    float lo = INFINITY, hi = -INFINITY;
    int any = 0;
    for (long i = 0; i < n; i++) {
        const float v = x[i];
        if (v != v) continue;
        any = 1;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *min_out = any ? lo : NAN;
    *max_out = any ? hi : NAN;
}

void lathe_im2col_u8(const uint8_t *x, long B, long C, long H, long W, long KH, long KW, long SH,
                     long SW, long PH, long PW, long DH, long DW, long OH, long OW, uint8_t pad,
                     uint8_t *cols /* [B*OH*OW, C*KH*KW] */) {
    const long kdim = C * KH * KW;
    for (long b = 0; b < B; b++)
        for (long oy = 0; oy < OH; oy++)
            for (long ox = 0; ox < OW; ox++) {
                uint8_t *row = cols + ((b * OH + oy) * OW + ox) * kdim;
                for (long c = 0; c < C; c++) {
                    const uint8_t *plane = x + (b * C + c) * H * W;
                    for (long ki = 0; ki < KH; ki++) {
                        const long iy = oy * SH - PH + ki * DH;
                        for (long kj = 0; kj < KW; kj++) {
                            const long ix = ox * SW - PW + kj * DW;
                            *row++ = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? plane[iy * W + ix] : pad;
                        }
                    }
                }
            }
}

void lathe_im2col_nhwc_u8(const uint8_t *x, long B, long C, long H, long W, long KH, long KW, long SH,
                          long SW, long PH, long PW, long DH, long DW, long OH, long OW, uint8_t pad,
                          uint8_t *cols /* [B*OH*OW, KH*KW*C] */) {
    const long kdim = KH * KW * C;
    for (long b = 0; b < B; b++) {
        const uint8_t *img = x + b * H * W * C;
        for (long oy = 0; oy < OH; oy++)
            for (long ox = 0; ox < OW; ox++) {
                uint8_t *row = cols + ((b * OH + oy) * OW + ox) * kdim;
                for (long ki = 0; ki < KH; ki++) {
                    const long iy = oy * SH - PH + ki * DH;
                    for (long kj = 0; kj < KW; kj++, row += C) {
                        const long ix = ox * SW - PW + kj * DW;
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                            if (C == 1) *row = img[iy * W + ix];
                            else memcpy(row, img + (iy * W + ix) * C, (size_t)C);
                        } else {
                            if (C == 1) *row = pad;
                            else memset(row, pad, (size_t)C);
                        }
                    }
                }
            }
    }
}

#define TRANSPOSE_BLOCK 16
#define DEFINE_TRANSPOSE(name, T)                                                                  \
    void name(const T *src, long batches, long rows, long cols, T *dst) {                          \
        for (long b = 0; b < batches; b++) {                                                       \
            const T *s = src + b * rows * cols;                                                    \
            T *d = dst + b * rows * cols;                                                          \
            for (long r0 = 0; r0 < rows; r0 += TRANSPOSE_BLOCK)                                    \
                for (long c0 = 0; c0 < cols; c0 += TRANSPOSE_BLOCK) {                              \
                    const long r1 = r0 + TRANSPOSE_BLOCK < rows ? r0 + TRANSPOSE_BLOCK : rows;     \
                    const long c1 = c0 + TRANSPOSE_BLOCK < cols ? c0 + TRANSPOSE_BLOCK : cols;     \
                    for (long c = c0; c < c1; c++)                                                 \
                        for (long r = r0; r < r1; r++) d[c * rows + r] = s[r * cols + c];          \
                }                                                                                  \
        }                                                                                          \
    }
DEFINE_TRANSPOSE(lathe_transpose_u8, uint8_t)
DEFINE_TRANSPOSE(lathe_transpose_f32, float)
