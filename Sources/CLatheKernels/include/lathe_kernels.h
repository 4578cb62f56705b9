// CLatheKernels: hot loops of Lathe, chosen at run time by CPU features.
//
// All matrices are row-major. Shapes are given in comments as [rows, cols].
// Every kernel here has a naive Swift reference in LatheTensor (Kernels/Reference.swift)
// and the tests compare the two.
#ifndef LATHE_KERNELS_H
#define LATHE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- CPU features -------------------------------------------------------------------------
typedef enum {
    LATHE_ISA_SCALAR = 0,
    LATHE_ISA_AVX2 = 1,    // AVX2 + FMA
    LATHE_ISA_AVX512 = 2,  // AVX-512 F
    LATHE_ISA_NEON = 3,
} lathe_isa;

/// The instruction set the kernels use (the best the CPU has, or LATHE_ISA env override:
/// "scalar", "avx2", "avx512", "neon").
lathe_isa lathe_active_isa(void);
/// Force an ISA (for tests comparing paths). Returns 0 on success, -1 if the CPU lacks it.
int lathe_set_isa(lathe_isa isa);
const char *lathe_isa_name(lathe_isa isa);

// ---- Thread pool ---------------------------------------------------------------------------
/// Threads in the pool: LATHE_NUM_THREADS if set, else the number of online cores.
int lathe_num_threads(void);
/// Change the pool size (1 = run everything on the caller).
void lathe_set_num_threads(int n);
/// Runs fn(ctx, i) for i in [0, n), spread over the pool; returns when all are done.
/// Work item i always runs the same computation whatever thread runs it, so results
/// depend only on how the caller splits work, never on scheduling.
typedef void (*lathe_task_fn)(void *ctx, long i);
void lathe_parallel_for(long n, lathe_task_fn fn, void *ctx);

// ---- GEMM ----------------------------------------------------------------------------------
/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N], row-major.
/// op(A) = A when transA == 0 (A is [M,K] with row stride lda), A^T when transA != 0 (A is [K,M]).
/// op(B) = B when transB == 0 (B is [K,N] with row stride ldb), B^T when transB != 0 (B is [N,K]).
/// When beta == 0, C is not read (NaNs in C do not propagate).
/// Multithreaded on the pool; the same thread count gives the same bits.
void lathe_sgemm(int transA, int transB, long M, long N, long K, float alpha,
                 const float *A, long lda, const float *B, long ldb, float beta,
                 float *C, long ldc);

/// lathe_sgemm, then C[i][j] += bias[j] (bias: N floats, or NULL for none), added to each
/// block of C while it is still in cache. The same bits as lathe_sgemm followed by a separate
/// bias add.
/// C[M,N] = A[M,K] B[N,K]^T (+ bias[N]) for M of 1 or 2 (lathe_sgemm_bias takes this path for
/// them when alpha is 1 and beta 0): dot products straight from B's rows, no packing.
void lathe_sgemv_rows(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *C, long ldc,
                      const float *bias);
void lathe_sgemm_bias(int transA, int transB, long M, long N, long K, float alpha,
                      const float *A, long lda, const float *B, long ldb, float beta,
                      float *C, long ldc, const float *bias);

/// op(B) ([K, N]: B, or B^T of a [N, K] B when transB) packed once in this CPU's micro-kernel
/// layout, for many products with it (a frozen weight): lathe_sgemm_packed_b_size(K, N) floats.
/// *nr and *kc receive the layout's panel width and K block, to give back to the product.
long lathe_sgemm_packed_b_size(long K, long N);
void lathe_sgemm_pack_b(int transB, long K, long N, const float *B, long ldb, float *dst, long *nr, long *kc);
/// lathe_sgemm_bias with op(B) pre-packed (transB does not apply); the same arithmetic.
/// Returns -1 (computing nothing) when the layout (nr, kc) is not the current kernel's for K,
/// or when lathe_sgemm_bias would not use the packed product (M <= 2, or few columns): then
/// call lathe_sgemm_bias with the unpacked matrix.
int lathe_sgemm_prepacked_bias(int transA, long M, long N, long K, float alpha, const float *A, long lda,
                               const float *Bp, long nr, long kc, float beta, float *C, long ldc, const float *bias);

/// Single-threaded, naive triple loop, for tests.
void lathe_sgemm_naive(int transA, int transB, long M, long N, long K, float alpha,
                       const float *A, long lda, const float *B, long ldb, float beta,
                       float *C, long ldc);

// ---- Heap ----------------------------------------------------------------------------------
/// With glibc: keeps freed memory in the heap between training steps (no trimming of the heap
/// top, mmap only for blocks above 16 MB) instead of faulting the same pages in every step.
/// Does nothing when MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_, MALLOC_TOP_PAD_ or
/// LATHE_DEFAULT_HEAP is set, or without glibc. Called once by LatheTensor's first allocation.
void lathe_tune_heap(void);
/// Tensor buffers: 64-byte aligned blocks of `bytes` (NULL when out of memory). Blocks of 256 KB
/// and more are mapped on their own and cached by size when freed (see alloc.c);
/// lathe_free must get the size given to lathe_alloc.
void *lathe_alloc(size_t bytes);
void lathe_free(void *p, size_t bytes);
/// Unmaps every cached free block; the cache's bound (what live blocks are below their
/// high-water mark) starts over from the blocks live now.
void lathe_alloc_release_cache(void);
/// Bytes of live tensor buffers, their peak since the last reset, and cached free bytes.
long lathe_alloc_live_bytes(void);
long lathe_alloc_peak_bytes(void);
long lathe_alloc_cached_bytes(void);
void lathe_alloc_reset_peak(void);

// ---- Grad mode (thread-local) ---------------------------------------------------------------
int lathe_grad_enabled(void);
void lathe_set_grad_enabled(int enabled);

#ifdef __cplusplus
}
#endif
#endif
