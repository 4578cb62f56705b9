// Private to CLatheKernels: the micro-kernel interface shared by gemm.c and the per-ISA files.
#ifndef LATHE_GEMM_INTERNAL_H
#define LATHE_GEMM_INTERNAL_H

/// Micro-kernel: C[mr,nr] = alpha * Ap[mr,kc] * Bp[kc,nr] + beta * C[mr,nr].
///   kc    : depth of this K block (>= 1)
///   a     : packed A micro-panel [kc][MR], element (i,k) at a[k*MR + i], zero-padded rows
///   b     : B micro-panel [kc][NR], element (k,j) at b[k*ldb + j] (packed: ldb == NR)
///   ldb   : row stride of b in floats
///   c     : C tile [mr,nr], row stride ldc
///   mr,nr : valid rows/cols of the tile (<= MR, NR); the rest of the registers are dropped
///   alpha : scale of the product
///   beta  : scale of C; beta == 0 means C is not read
/// Every tile (full or edge) is computed with the same arithmetic, element by element:
///   acc = sum over k in increasing order (one FMA chain per element), then
///   C = beta == 0 ? alpha*acc : fma(alpha, acc, beta*C).
typedef void (*lathe_ukr_fn)(long kc, const float *a, const float *b, long ldb, float *c, long ldc,
                             long mr, long nr, float alpha, float beta);

/// Optional ISA-specific packing (NULL = the generic C packing in gemm.c), same layout:
///   pack_a: op(A)[i0:i0+mc, k0:k0+kc] -> ceil(mc/MR) panels [kc][MR], zero rows past mc
///   pack_b: op(B)[k0:k0+kc, j0:j0+nc] -> ceil(nc/NR) panels [kc][NR], zero cols past nc
///           (dst 64-byte aligned)
typedef void (*lathe_pack_a_fn)(int transA, const float *A, long lda, long i0, long k0, long mc,
                                long kc, float *dst);
typedef void (*lathe_pack_b_fn)(int transB, const float *B, long ldb, long k0, long j0, long kc,
                                long nc, float *dst);

/// A micro-kernel with its register tile and the cache block sizes tuned for it.
typedef struct {
    int mr, nr;          // register tile (rows of A, cols of B)
    long kc, mc, nc;     // K block (L1), rows of packed A block (L2), cols of packed B block (L3)
    int ng;              // B micro-panels swept together by the A micro-panels (held in L2 with
                         // the A block); 0 or 1: one B micro-panel at a time
    lathe_ukr_fn ukr;
    lathe_pack_a_fn pack_a;  // may be NULL
    lathe_pack_b_fn pack_b;  // may be NULL
    const char *name;
} lathe_gemm_kernel;

#if defined(__x86_64__)
extern const lathe_gemm_kernel lathe_gemm_kernel_avx512;
extern const lathe_gemm_kernel lathe_gemm_kernel_avx512_12;  // same B panels, 12-row tile
extern const lathe_gemm_kernel lathe_gemm_kernel_avx2;
#endif
#if defined(__aarch64__)
extern const lathe_gemm_kernel lathe_gemm_kernel_neon;
#endif

#endif
