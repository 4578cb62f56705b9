// fp32 GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N], row-major.
//
// Structure (BLIS / GotoBLAS style), per task tile of C:
//   for jc in cols, step NC:                      B block  [KC, NC] packed (L3)
//     for pc in 0..K, step KC:                    fixed K blocking (depends on K only)
//       pack op(B)[pc:pc+KC, jc:jc+NC] into NR-wide panels [KC][NR]
//       for ic in rows, step MC:                  A block  [MC, KC] packed (L2)
//         pack op(A)[ic:ic+MC, pc:pc+KC] into MR-tall panels [KC][MR]
//         for jg step NG*NR:                      group of NG B micro-panels [KC][NR] (L2)
//           for ir step MR:                       A micro-panel, reused NG times
//             for jr in the group, step NR:       B micro-panel, reused MC/MR times
//               micro-kernel: C tile [MR,NR] (+)= Ap * Bp
// Packing does the transposes and zero-pads edge panels, so the micro-kernel sees one layout.
// AVX-512 (Zen 5 tuned): MR x NR = 14 x 32, KC = 512, MC = 112, NC = 2048, NG = 6. A large KC
// halves the read-modify-write passes over C, which cost more than the B micro-panel (64 KB)
// spilling from L1 to L2 (Zen's L2 easily feeds one 128-byte B row per 14 FMA cycles).
// The B groups (NG > 1) matter once C no longer fits in cache (n >= ~1500): with one B
// micro-panel at a time, each call updates C rows other than the previous call's (MC rows =
// 112 pages when a row is >= 4 KB), C lines arrive late and the C read + write costs ~10% of
// the time at n = 2048 (about nothing with 2 MB pages). Walking NG tiles along the same MR
// rows keeps their pages in the TLB, and the next tile is prefetched into L2 one call ahead.
//
// Threads: C is cut into a grid of task tiles (chosen from the thread count and the shape);
// each task packs what it needs into its thread's own buffers (allocated once, grown on
// demand, reused), so tasks never synchronise. Every C element is computed by exactly one task
// with the same K blocking and the same per-element FMA order, whatever the grid: results are
// bitwise identical for any thread count (for a given ISA).
//
// Small problems skip threading, and when op(B) is plain row-major and A is short (little
// reuse of packed B) or B is small, the micro-kernel reads B in place instead of packing it.
// alpha == 0 or K == 0 gives C = beta * C without reading A or B (BLAS convention).
#include "lathe_kernels.h"
#include "gemm_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// ---- Naive reference ---------------------------------------------------------------------------

void lathe_sgemm_naive(int transA, int transB, long M, long N, long K, float alpha,
                       const float *A /* [M,K] or [K,M] if transA */, long lda,
                       const float *B /* [K,N] or [N,K] if transB */, long ldb, float beta,
                       float *C /* [M,N] */, long ldc) {
    for (long i = 0; i < M; i++) {
        for (long j = 0; j < N; j++) {
            float acc = 0.0f;
            for (long k = 0; k < K; k++) {
                float a = transA ? A[k * lda + i] : A[i * lda + k];
                float b = transB ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
            }
            float *c = &C[i * ldc + j];
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
    }
}

// ---- Scalar micro-kernel (portable fallback) ---------------------------------------------------

enum { SC_MR = 4, SC_NR = 8 };

// Portable 4-lane vectors (GCC/Clang vector extension; SSE2 on x86-64, plain code elsewhere).
typedef float v4f __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/// See lathe_ukr_fn. a: [kc][4] packed, b: [kc][8] with row stride ldb, c: [mr][nr] (ldc).
static void ukr_scalar_4x8(long kc, const float *a, const float *b, long ldb, float *c, long ldc,
                           long mr, long nr, float alpha, float beta) {
    v4f acc[SC_MR][2];
    for (int i = 0; i < SC_MR; i++) acc[i][0] = acc[i][1] = (v4f){0, 0, 0, 0};
    for (long k = 0; k < kc; k++) {
        const v4f b0 = v4_load(b), b1 = v4_load(b + 4);
        for (int i = 0; i < SC_MR; i++) {
            const v4f ai = {a[i], a[i], a[i], a[i]};
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
        a += SC_MR;
        b += ldb;
    }
    for (long i = 0; i < mr; i++) {
        float row[SC_NR];
        memcpy(row, &acc[i][0], sizeof acc[i][0]);
        memcpy(row + 4, &acc[i][1], sizeof acc[i][1]);
        for (long j = 0; j < nr; j++) {
            float *cij = &c[i * ldc + j];
            *cij = beta == 0.0f ? alpha * row[j] : fmaf(alpha, row[j], beta * *cij);
        }
    }
}

static const lathe_gemm_kernel k_scalar = {
    .mr = SC_MR, .nr = SC_NR, .kc = 256, .mc = 64, .nc = 1024,
    .ukr = ukr_scalar_4x8, .name = "scalar-4x8",
};

static const lathe_gemm_kernel *kernel_for(lathe_isa isa) {
    switch (isa) {
#if defined(__x86_64__)
    case LATHE_ISA_AVX512: return &lathe_gemm_kernel_avx512;
    case LATHE_ISA_AVX2: return &lathe_gemm_kernel_avx2;
#endif
#if defined(__aarch64__)
    case LATHE_ISA_NEON: return &lathe_gemm_kernel_neon;
#endif
    default: return &k_scalar;
    }
}

/// The kernel for a product of M rows: `kd`, or a variant with the same B panels whose register
/// tile wastes clearly fewer rows on padding (AVX-512: 12 rows instead of 14 for M = 128, 127,
/// 384 or 8; 14 for M = 512). The same bits either way (gemm_internal.h).
static const lathe_gemm_kernel *kernel_for_rows(const lathe_gemm_kernel *kd, long M) {
#if defined(__x86_64__)
    if (kd == &lathe_gemm_kernel_avx512 && M > 0) {
        const lathe_gemm_kernel *alt = &lathe_gemm_kernel_avx512_12;
        const double fill = (double)M / (double)(((M + kd->mr - 1) / kd->mr) * kd->mr);
        const double fill_alt = (double)M / (double)(((M + alt->mr - 1) / alt->mr) * alt->mr);
        if (fill_alt > fill + 0.02) return alt;
    }
#endif
    return kd;
}

// ---- Packing ---------------------------------------------------------------------------------
// Written once, specialised on the constant MR / NR by always_inline + a switch, so the inner
// copies are fixed-length loops the compiler can vectorise.

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/// Packs op(A)[i0:i0+mc, k0:k0+kc] into ceil(mc/MR) panels [kc][MR] (rows past mc are zero).
ALWAYS_INLINE void pack_a_generic(int MR, int transA, const float *A, long lda, long i0, long k0,
                                  long mc, long kc, float *dst /* [ceil(mc/MR)][kc][MR] */) {
    for (long p = 0; p < mc; p += MR) {
        long mr = mc - p < MR ? mc - p : MR;
        if (!transA) {
            // opA(i,k) = A[i*lda + k]: row i of the panel is contiguous in memory.
            if (mr == MR) {
                const float *src = A + (i0 + p) * lda + k0;
                for (long k = 0; k < kc; k++)
                    for (int i = 0; i < MR; i++) dst[k * MR + i] = src[i * lda + k];
            } else {
                for (long k = 0; k < kc; k++)
                    for (int i = 0; i < MR; i++)
                        dst[k * MR + i] = i < mr ? A[(i0 + p + i) * lda + k0 + k] : 0.0f;
            }
        } else {
            // opA(i,k) = A[k*lda + i]: the MR values of one k are contiguous.
            for (long k = 0; k < kc; k++) {
                const float *src = A + (k0 + k) * lda + i0 + p;
                if (mr == MR) {
                    for (int i = 0; i < MR; i++) dst[k * MR + i] = src[i];
                } else {
                    for (int i = 0; i < MR; i++) dst[k * MR + i] = i < mr ? src[i] : 0.0f;
                }
            }
        }
        dst += kc * MR;
    }
}

/// Packs op(B)[k0:k0+kc, j0:j0+nc] into ceil(nc/NR) panels [kc][NR] (cols past nc are zero).
ALWAYS_INLINE void pack_b_generic(int NR, int transB, const float *B, long ldb, long k0, long j0,
                                  long kc, long nc, float *dst /* [ceil(nc/NR)][kc][NR] */) {
    for (long q = 0; q < nc; q += NR) {
        long nr = nc - q < NR ? nc - q : NR;
        if (!transB) {
            // opB(k,j) = B[k*ldb + j]: NR contiguous values per k.
            for (long k = 0; k < kc; k++) {
                const float *src = B + (k0 + k) * ldb + j0 + q;
                if (nr == NR) {
                    for (int j = 0; j < NR; j++) dst[k * NR + j] = src[j];
                } else {
                    for (int j = 0; j < NR; j++) dst[k * NR + j] = j < nr ? src[j] : 0.0f;
                }
            }
        } else {
            // opB(k,j) = B[j*ldb + k]: column j of the panel is contiguous in memory.
            if (nr == NR) {
                const float *src = B + (j0 + q) * ldb + k0;
                for (long k = 0; k < kc; k++)
                    for (int j = 0; j < NR; j++) dst[k * NR + j] = src[j * ldb + k];
            } else {
                for (long k = 0; k < kc; k++)
                    for (int j = 0; j < NR; j++)
                        dst[k * NR + j] = j < nr ? B[(j0 + q + j) * ldb + k0 + k] : 0.0f;
            }
        }
        dst += kc * NR;
    }
}

static void pack_a(const lathe_gemm_kernel *kd, int transA, const float *A, long lda, long i0,
                   long k0, long mc, long kc, float *dst) {
    if (kd->pack_a) { kd->pack_a(transA, A, lda, i0, k0, mc, kc, dst); return; }
    const int MR = kd->mr;
    switch (MR) {
    case 14: pack_a_generic(14, transA, A, lda, i0, k0, mc, kc, dst); break;
    case 6: pack_a_generic(6, transA, A, lda, i0, k0, mc, kc, dst); break;
    case 8: pack_a_generic(8, transA, A, lda, i0, k0, mc, kc, dst); break;
    case 4: pack_a_generic(4, transA, A, lda, i0, k0, mc, kc, dst); break;
    default: pack_a_generic(MR, transA, A, lda, i0, k0, mc, kc, dst); break;
    }
}

static void pack_b(const lathe_gemm_kernel *kd, int transB, const float *B, long ldb, long k0,
                   long j0, long kc, long nc, float *dst) {
    if (kd->pack_b) { kd->pack_b(transB, B, ldb, k0, j0, kc, nc, dst); return; }
    const int NR = kd->nr;
    switch (NR) {
    case 32: pack_b_generic(32, transB, B, ldb, k0, j0, kc, nc, dst); break;
    case 16: pack_b_generic(16, transB, B, ldb, k0, j0, kc, nc, dst); break;
    case 8: pack_b_generic(8, transB, B, ldb, k0, j0, kc, nc, dst); break;
    default: pack_b_generic(NR, transB, B, ldb, k0, j0, kc, nc, dst); break;
    }
}

// ---- Per-thread packing buffers ----------------------------------------------------------------
// Each thread (pool worker or caller) owns two 64-byte aligned buffers, grown on demand and
// reused by every later call; freed when the thread exits.

typedef struct {
    float *a, *b;
    size_t cap_a, cap_b;  // in floats
} pack_buffers;

static _Thread_local pack_buffers t_bufs;
static pthread_key_t g_bufs_key;
static pthread_once_t g_bufs_once = PTHREAD_ONCE_INIT;

static void bufs_destroy(void *p) {
    pack_buffers *b = (pack_buffers *)p;
    free(b->a);
    free(b->b);
    b->a = b->b = NULL;
    b->cap_a = b->cap_b = 0;
}
static void bufs_key_init(void) { pthread_key_create(&g_bufs_key, bufs_destroy); }

/// Makes *buf hold at least n floats (64-byte aligned). Returns NULL on allocation failure.
static float *grow(float **buf, size_t *cap, size_t n) {
    if (*cap >= n) return *buf;
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = (float *)aligned_alloc(64, bytes);
    if (!p) return NULL;
    free(*buf);
    *buf = p;
    *cap = bytes / sizeof(float);
    pthread_once(&g_bufs_once, bufs_key_init);
    pthread_setspecific(g_bufs_key, &t_bufs);
    return p;
}

// ---- Driver ------------------------------------------------------------------------------------

typedef struct {
    const lathe_gemm_kernel *kd;
    int transA, transB;
    long M, N, K;
    float alpha, beta;
    const float *A, *B;
    long lda, ldb, ldc;
    float *C;
    long kc;             // K block (fixed for the whole call; independent of threads)
    long tile_m, tile_n; // task tile
    long grid_n;         // task tiles along N
    int direct_b;        // micro-kernel reads op(B) = B in place (transB == 0), no B packing
    const float *packed_b;  // op(B) packed whole by lathe_sgemm_pack_b (no packing here), or NULL
    long packed_ld;         // its padded width (N rounded up to NR)
    const float *bias;   // [N] added to every row of C at the end, or NULL
} gemm_job;

/// C[ic:ic+mc, jc:jc+nc] += bias[jc:jc+nc] (rows of the block just finished).
static void add_bias(const gemm_job *j, long ic, long mc, long jc, long nc) {
    const float *b = j->bias + jc;
    for (long i = ic; i < ic + mc; i++) {
        float *c = j->C + i * j->ldc + jc;
        for (long q = 0; q < nc; q++) c[q] += b[q];
    }
}

/// Asks for the C tile [mr, nr] (row stride ldc) to be brought into L2.
static inline void prefetch_tile(const float *c, long ldc, long mr, long nr) {
    for (long i = 0; i < mr; i++, c += ldc) {
        for (long q = 0; q < nr; q += 16) __builtin_prefetch(c + q, 0, 2);
        __builtin_prefetch(c + nr - 1, 0, 2);
    }
}

static int pf_on(void) {
    static int v = -1;
    if (v < 0) v = getenv("LATHE_GEMM_NO_PF") == NULL;
    return v;
}

/// Walks the cache lines of memory the GEMM will read next, a few at a time: the next group of a
/// pre-packed B (one segment), or the source of the next B block to pack (contiguous segments
/// of op(B)'s memory: K rows of a B, N columns of a transposed one).
typedef struct {
    const char *base;
    long seg_stride, seg_bytes, nseg;  // segment s starts at base + s * seg_stride
    long s, off;                       // cursor
} pf_cursor;

/// Prefetches the next `lines` lines of the cursor into L2.
static inline void pf_advance(pf_cursor *c, long lines) {
    while (lines-- > 0 && c->s < c->nseg) {
        const char *p = c->base + c->s * c->seg_stride;
        __builtin_prefetch(p + c->off, 0, 2);
        c->off += 64;
        if (c->off >= c->seg_bytes) {
            __builtin_prefetch(p + c->seg_bytes - 1, 0, 2);  // a segment's last, partial line
            c->s++;
            c->off = 0;
        }
    }
}

/// Computes the C tile [m0:m1, n0:n1] completely (all of K).
static void gemm_tile(const gemm_job *j, long m0, long m1, long n0, long n1) {
    const lathe_gemm_kernel *kd = j->kd;
    const int MR = kd->mr, NR = kd->nr;
    const long MC = kd->mc, NC = kd->nc, KC = j->kc, NG = kd->ng > 1 ? kd->ng : 1;
    pack_buffers *bufs = &t_bufs;

    long mc_max = m1 - m0 < MC ? m1 - m0 : MC;
    mc_max = (mc_max + MR - 1) / MR * MR;
    long nc_max = n1 - n0 < NC ? n1 - n0 : NC;
    nc_max = (nc_max + NR - 1) / NR * NR;
    float *ap = grow(&bufs->a, &bufs->cap_a, (size_t)(mc_max * KC));
    // Direct-B mode still packs the one ragged edge panel.
    float *bp = grow(&bufs->b, &bufs->cap_b, (size_t)((j->direct_b ? NR : nc_max) * KC));
    if (!ap || !bp) {  // out of memory: fall back to the reference loop for this tile
        lathe_sgemm_naive(j->transA, j->transB, m1 - m0, n1 - n0, j->K, j->alpha,
                          j->transA ? j->A + m0 : j->A + m0 * j->lda, j->lda,
                          j->transB ? j->B + n0 * j->ldb : j->B + n0, j->ldb, j->beta,
                          j->C + m0 * j->ldc + n0, j->ldc);
        return;
    }

    for (long jc = n0; jc < n1; jc += NC) {
        const long nc = n1 - jc < NC ? n1 - jc : NC;
        const long n_full = j->direct_b ? nc / NR * NR : nc;  // cols read in place (direct)
        for (long pc = 0; pc < j->K; pc += KC) {
            const long kc = j->K - pc < KC ? j->K - pc : KC;
            const float beta = pc == 0 ? j->beta : 1.0f;
            const int c_read = beta != 0.0f;  // the micro-kernel reads C (else only writes it)
            // B packed here is read from memory by the packing, where a frozen weight is cold
            // (a backward's W, the output head's embedding): while this block is swept, the
            // source of the next block to pack is brought into the caches, a slice per
            // micro-kernel call of the first row block, so that its packing reads from cache.
            // (A pre-packed B uses the same cursor for its next group, below.)
            pf_cursor nb = {0};
            long nb_step = 0;
            if (j->packed_b) {
                // panels of this K block start at pc * packed_ld; panel of column c at c * kc
            } else if (!j->direct_b) {
                pack_b(kd, j->transB, j->B, j->ldb, pc, jc, kc, nc, bp);
                long npc = pc + kc, njc = jc;
                if (npc >= j->K) { npc = 0; njc = jc + NC; }
                if (njc < n1 && pf_on()) {
                    const long nkc = j->K - npc < KC ? j->K - npc : KC, nnc = n1 - njc < NC ? n1 - njc : NC;
                    if (!j->transB)
                        nb = (pf_cursor){(const char *)(j->B + npc * j->ldb + njc), j->ldb * 4, nnc * 4, nkc, 0, 0};
                    else
                        nb = (pf_cursor){(const char *)(j->B + njc * j->ldb + npc), j->ldb * 4, nkc * 4, nnc, 0, 0};
                    const long lines = nb.nseg * ((nb.seg_bytes + 63) / 64 + 1);
                    const long mc0 = m1 - m0 < MC ? m1 - m0 : MC;
                    const long calls = ((mc0 + MR - 1) / MR) * ((nc + NR - 1) / NR);
                    nb_step = (lines + calls - 1) / calls;
                }
            } else if (n_full < nc)
                pack_b(kd, 0, j->B, j->ldb, pc, jc + n_full, kc, nc - n_full, bp);

            for (long ic = m0; ic < m1; ic += MC) {
                const long mc = m1 - ic < MC ? m1 - ic : MC;
                pack_a(kd, j->transA, j->A, j->lda, ic, pc, mc, kc, ap);
                // Groups of NG B micro-panels: the A micro-panels sweep over a group (held in
                // L2) before the next one, so consecutive micro-kernel calls update C tiles in
                // the same MR rows (few pages, prefetchable: the next tile is warmed into L2
                // while the current one computes).
                for (long jg = 0; jg < nc; jg += NG * NR) {
                    const long jg_end = nc - jg < NG * NR ? nc : jg + NG * NR;
                    // A pre-packed B comes from memory cold (a frozen weight is read once per
                    // pass): while this group is swept, bring the next group's panels (the floats
                    // that follow it in the packed buffer) into L2, a slice per micro-kernel call.
                    if (j->packed_b && pf_on()) {
                        const float *next = j->packed_b + pc * j->packed_ld + (jc + jg_end) * kc;
                        nb = (pf_cursor){(const char *)next, 0, NG * NR * kc * (long)sizeof(float), 1, 0, 0};
                        const long calls = ((mc + MR - 1) / MR) * ((jg_end - jg + NR - 1) / NR);
                        nb_step = (nb.seg_bytes / 64 + calls - 1) / calls;
                    }
                    for (long ir = 0; ir < mc; ir += MR) {
                        const long mr = mc - ir < MR ? mc - ir : MR;
                        for (long jr = jg; jr < jg_end; jr += NR) {
                            const long nr = nc - jr < NR ? nc - jr : NR;
                            const float *b;
                            long ldb;
                            if (j->packed_b) { b = j->packed_b + pc * j->packed_ld + (jc + jr) * kc; ldb = NR; }
                            else if (!j->direct_b) { b = bp + jr * kc; ldb = NR; }
                            else if (jr < n_full) { b = j->B + pc * j->ldb + jc + jr; ldb = j->ldb; }
                            else { b = bp; ldb = NR; }
                            float *ct = j->C + (ic + ir) * j->ldc + jc + jr;
                            if (NG > 1 && jr + NR < jg_end && c_read) {
                                const long nr2 = nc - jr - NR < NR ? nc - jr - NR : NR;
                                prefetch_tile(ct + NR, j->ldc, mr, nr2);
                            }
                            if (nb_step) pf_advance(&nb, nb_step);
                            kd->ukr(kc, ap + ir * kc, b, ldb, ct, j->ldc, mr, nr, j->alpha, beta);
                        }
                    }
                }
                if (j->bias && pc + kc >= j->K) add_bias(j, ic, mc, jc, nc);
            }
        }
    }
}

static void gemm_task(void *ctx, long t) {
    const gemm_job *j = (const gemm_job *)ctx;
    long tm = t / j->grid_n, tn = t % j->grid_n;
    long m0 = tm * j->tile_m, n0 = tn * j->tile_n;
    long m1 = m0 + j->tile_m < j->M ? m0 + j->tile_m : j->M;
    long n1 = n0 + j->tile_n < j->N ? n0 + j->tile_n : j->N;
    gemm_tile(j, m0, m1, n0, n1);
}

/// Picks the task grid for `threads` threads: minimises an estimate of the slowest thread's
/// time = rounds * (compute of a tile + packing of its A and B), in units of one FMA row,
/// among grids with at least `min_tasks` tasks (when possible). More tasks than threads cost
/// some redundant packing but let a thread that shares its core with another process hand
/// work over to the others (items are claimed dynamically).
static void choose_grid(gemm_job *j, int threads, long min_tasks) {
    const long MR = j->kd->mr, NR = j->kd->nr;
    const long mt = (j->M + MR - 1) / MR, nt = (j->N + NR - 1) / NR;  // micro-tiles
    double best = -1.0;
    long best_m = mt, best_n = nt, best_tasks = 1;
    const long gmax = 4L * threads > min_tasks ? 4L * threads : min_tasks;
    for (long gm = 1; gm <= gmax && gm <= mt; gm++) {
        for (long gn = 1; gn <= gmax && gn <= nt; gn++) {
            long tm = (mt + gm - 1) / gm, tn = (nt + gn - 1) / gn;  // tile, in micro-tiles
            long tasks = ((mt + tm - 1) / tm) * ((nt + tn - 1) / tn);
            long rounds = (tasks + threads - 1) / threads;
            double rows = (double)tm * MR, cols = (double)tn * NR;
            // One (rows x cols) tile costs rows*cols/32 FMA-cycles per k (2 x 16-lane FMA per
            // cycle); packing costs ~1 cycle per element of A rows and B cols per k.
            double cost = (double)rounds * (rows * cols / 32.0 + rows + (j->direct_b || j->packed_b ? 0 : cols));
            int ok = tasks >= min_tasks, best_ok = best_tasks >= min_tasks;
            if (best < 0 || (ok && !best_ok) || (ok == best_ok && cost < best * 0.999)) {
                best = cost; best_m = tm; best_n = tn; best_tasks = tasks;
            }
        }
    }
    j->tile_m = best_m * MR;
    j->tile_n = best_n * NR;
    j->grid_n = (j->N + j->tile_n - 1) / j->tile_n;
}

/// C = beta * C (K == 0 or alpha == 0); beta == 0 writes zeros without reading C.
static void scale_c(long M, long N, float beta, float *C, long ldc) {
    for (long i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (long j = 0; j < N; j++) c[j] *= beta;
    }
}

/// Whether C^T = op(B)^T op(A)^T fills the micro-kernel's lanes much better than C = op(A) op(B):
/// N is at most half a register tile's width and M spans several (the rank-8 products of LoRA
/// adapters: N = 8 against NR = 32 uses a quarter of the lanes; as rows, 8 of MR = 14).
static int use_transposed(const lathe_gemm_kernel *kd, long M, long N) {
    static int disabled = -1;  // LATHE_GEMM_NO_TRANSPOSE=1 turns this off (A/B measurements)
    if (disabled < 0) disabled = getenv("LATHE_GEMM_NO_TRANSPOSE") != NULL;
    if (disabled) return 0;
    const long MR = kd->mr, NR = kd->nr;
    if (N * 2 > NR || M < 4 * NR) return 0;
    double eff = (double)M / (double)(((M + MR - 1) / MR) * MR) * (double)N / (double)(((N + NR - 1) / NR) * NR);
    double eff_t = (double)N / (double)(((N + MR - 1) / MR) * MR) * (double)M / (double)(((M + NR - 1) / NR) * NR);
    return eff_t > 1.5 * eff;
}

static void run_job(gemm_job *j);

void lathe_sgemm(int transA, int transB, long M, long N, long K, float alpha,
                 const float *A /* [M,K] or [K,M] if transA */, long lda,
                 const float *B /* [K,N] or [N,K] if transB */, long ldb, float beta,
                 float *C /* [M,N] */, long ldc) {
    lathe_sgemm_bias(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

void lathe_sgemm_bias(int transA, int transB, long M, long N, long K, float alpha,
                      const float *A, long lda, const float *B, long ldb, float beta,
                      float *C, long ldc, const float *bias) {
    if (M <= 0 || N <= 0) return;
    if (M <= 2 && !transA && transB && K > 0 && alpha == 1.0f && beta == 0.0f) {
        // One or two rows against a [N, K] matrix (decoding): packing B would cost more than the product.
        lathe_sgemv_rows(M, N, K, A, lda, B, ldb, C, ldc, bias);
        return;
    }
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        if (bias) {
            gemm_job j = {.C = C, .ldc = ldc, .bias = bias};
            add_bias(&j, 0, M, 0, N);
        }
        return;
    }

    const lathe_gemm_kernel *kd = kernel_for(lathe_active_isa());
    if (use_transposed(kd, M, N)) {
        // Few columns (LoRA's rank-8 products): C^T = op(B)^T op(A)^T puts the N on the
        // micro-kernel's row side, where far fewer of its lanes are padding. C^T is formed in a
        // scratch buffer (a copy of C^T when beta reads C) with the same per-element arithmetic
        // (the same K blocks, FMA chains, alpha and beta), then written back; bias as usual.
        float *t = (float *)malloc((size_t)M * (size_t)N * sizeof(float));
        if (t) {
            if (beta != 0.0f)
                for (long i = 0; i < M; i++)
                    for (long q = 0; q < N; q++) t[q * M + i] = C[i * ldc + q];
            lathe_sgemm_bias(!transB, !transA, N, M, K, alpha, B, ldb, A, lda, beta, t, M, NULL);
            for (long i = 0; i < M; i++) {
                float *c = C + i * ldc;
                for (long q = 0; q < N; q++) c[q] = t[q * M + i];
                if (bias)
                    for (long q = 0; q < N; q++) c[q] += bias[q];
            }
            free(t);
            return;
        }
    }

    kd = kernel_for_rows(kd, M);
    gemm_job j = {
        .kd = kd,
        .transA = transA != 0, .transB = transB != 0,
        .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta,
        .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C, .bias = bias,
    };
    // K blocks of (nearly) equal size, at most kd->kc: depends only on K.
    long nkb = (K + j.kd->kc - 1) / j.kd->kc;
    j.kc = (K + nkb - 1) / nkb;
    // Reading B in place pays off when packed B would be reused by few rows of A, or when all
    // of B is small enough to stay in L2 (then large power-of-two strides cannot thrash).
    j.direct_b = !j.transB && (M <= 4 * j.kd->mr || (M <= 160 && K * N <= 32768) ||
                               j.kc * N <= 65536);

    run_job(&j);
}

/// Splits the job into tasks on the thread pool (one thread for small products) and runs them.
static void run_job(gemm_job *j) {
    double flops = 2.0 * (double)j->M * (double)j->N * (double)j->K;
    int threads = lathe_num_threads();
    // Below ~10 us of work, threading costs more than it saves. (LoRA's rank-8 products of 128
    // rows, 1-3 MFLOP each and ~1,300 per step of SmolLM2, run on two threads: about 3% off a
    // 1 x 128 step at 2 threads.)
    if (flops < 1.0e6) threads = 1;
    // One task per thread. (Two per thread balances better when another process shares a
    // core, but the redundant packing costs 3-5% at 1024-2048 on a quiet machine.)
    choose_grid(j, threads, threads);
    long tasks = ((j->M + j->tile_m - 1) / j->tile_m) * j->grid_n;
    if (threads == 1 || tasks == 1) {
        for (long t = 0; t < tasks; t++) gemm_task(j, t);
    } else {
        lathe_parallel_for(tasks, gemm_task, j);
    }
}

// ---- Pre-packed B ----------------------------------------------------------------------------
// A matrix used as op(B) by many products (a frozen weight during adapter training) can be
// packed once into the micro-kernel's panel layout: for each K block of the driver (equal
// blocks of at most kd->kc rows, a function of K alone), the N columns (padded with zeros to a
// multiple of NR) as consecutive kc x NR panels. The products then skip packing B. The layout
// belongs to this CPU's kernel: lathe_sgemm_prepacked_bias refuses a buffer packed for another
// (NR, kc), and the caller falls back to lathe_sgemm_bias.

static long packed_kc(const lathe_gemm_kernel *kd, long K) {
    long nkb = (K + kd->kc - 1) / kd->kc;
    return (K + nkb - 1) / nkb;
}

long lathe_sgemm_packed_b_size(long K, long N) {
    const lathe_gemm_kernel *kd = kernel_for(lathe_active_isa());
    return K * ((N + kd->nr - 1) / kd->nr * kd->nr);
}

void lathe_sgemm_pack_b(int transB, long K, long N, const float *B, long ldb, float *dst, long *nr, long *kc) {
    const lathe_gemm_kernel *kd = kernel_for(lathe_active_isa());
    const long NR = kd->nr, KC = packed_kc(kd, K), ld = (N + NR - 1) / NR * NR;
    *nr = NR;
    *kc = KC;
    for (long pc = 0; pc < K; pc += KC) {
        const long kcur = K - pc < KC ? K - pc : KC;
        pack_b(kd, transB != 0, B, ldb, pc, 0, kcur, N, dst + pc * ld);
    }
}

int lathe_sgemm_prepacked_bias(int transA, long M, long N, long K, float alpha, const float *A, long lda,
                               const float *Bp, long nr, long kc, float beta, float *C, long ldc, const float *bias) {
    const lathe_gemm_kernel *kd = kernel_for(lathe_active_isa());
    if (nr != kd->nr || kc != packed_kc(kd, K)) return -1;
    // Where lathe_sgemm_bias takes another route (one or two rows by matrix-vector products; few
    // columns transposed), leave the product to it, so that the bits never depend on packing.
    if (M <= 2 || use_transposed(kd, M, N)) return -1;
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        if (bias) {
            gemm_job j = {.C = C, .ldc = ldc, .bias = bias};
            add_bias(&j, 0, M, 0, N);
        }
        return 0;
    }
    kd = kernel_for_rows(kd, M);
    gemm_job j = {
        .kd = kd,
        .transA = transA != 0, .transB = 0,
        .M = M, .N = N, .K = K, .alpha = alpha, .beta = beta,
        .A = A, .B = NULL, .lda = lda, .ldb = 0, .ldc = ldc, .C = C, .bias = bias,
        .kc = kc, .packed_b = Bp, .packed_ld = (N + kd->nr - 1) / kd->nr * kd->nr,
    };
    run_job(&j);
    return 0;
}
