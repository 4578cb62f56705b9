// One or two rows times a weight matrix stored [N, K] (C = A B^T + bias): the decode shape of a
// float linear layer. The general GEMM packs B into panels and runs a 14-row micro-kernel, which
// for one row of A costs a full copy of B per call and 14x the arithmetic; here each output is a
// dot product read straight from B's rows (4 rows at a time, so that A's vector is loaded once
// for them). Rows are split over the threads; the result does not depend on the thread count.
#include "lathe_kernels.h"

#include <math.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define GV_AVX2 __attribute__((target("avx2,fma")))
#define GV_AVX512 __attribute__((target("avx512f,avx512dq,fma")))
#endif

enum { GV_ROWS_PER_TASK = 64 };

typedef struct {
    long M, N, K;
    const float *A, *B, *bias;
    long lda, ldb, ldc;
    float *C;
} gv_job;

static void rows_scalar(const gv_job *j, long m, long n0, long n1) {
    const float *x = j->A + m * j->lda;
    for (long n = n0; n < n1; n++) {
        const float *w = j->B + n * j->ldb;
        float acc = 0.0f;
        for (long k = 0; k < j->K; k++) acc = fmaf(x[k], w[k], acc);
        j->C[m * j->ldc + n] = acc + (j->bias ? j->bias[n] : 0.0f);
    }
}

#if defined(__x86_64__)
static GV_AVX512 void rows_avx512(const gv_job *j, long m, long n0, long n1) {
    const float *x = j->A + m * j->lda;
    const long K = j->K, full = K / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (K - full)) - 1u);
    long n = n0;
    for (; n + 4 <= n1; n += 4) {
        const float *w0 = j->B + n * j->ldb, *w1 = w0 + j->ldb, *w2 = w1 + j->ldb, *w3 = w2 + j->ldb;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (long k = 0; k < full; k += 16) {
            const __m512 xv = _mm512_loadu_ps(x + k);
            a0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w0 + k), a0);
            a1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w1 + k), a1);
            a2 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w2 + k), a2);
            a3 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w3 + k), a3);
        }
        if (tail) {
            const __m512 xv = _mm512_maskz_loadu_ps(tail, x + full);
            a0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w0 + full), a0);
            a1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w1 + full), a1);
            a2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w2 + full), a2);
            a3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, w3 + full), a3);
        }
        const float s[4] = {_mm512_reduce_add_ps(a0), _mm512_reduce_add_ps(a1), _mm512_reduce_add_ps(a2), _mm512_reduce_add_ps(a3)};
        for (int r = 0; r < 4; r++) j->C[m * j->ldc + n + r] = s[r] + (j->bias ? j->bias[n + r] : 0.0f);
    }
    for (; n < n1; n++) {
        const float *w = j->B + n * j->ldb;
        __m512 a = _mm512_setzero_ps();
        for (long k = 0; k < full; k += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), _mm512_loadu_ps(w + k), a);
        if (tail) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, x + full), _mm512_maskz_loadu_ps(tail, w + full), a);
        j->C[m * j->ldc + n] = _mm512_reduce_add_ps(a) + (j->bias ? j->bias[n] : 0.0f);
    }
}

static inline GV_AVX2 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

static GV_AVX2 void rows_avx2(const gv_job *j, long m, long n0, long n1) {
    const float *x = j->A + m * j->lda;
    const long K = j->K, full = K / 8 * 8;
    for (long n = n0; n < n1; n++) {
        const float *w = j->B + n * j->ldb;
        __m256 a = _mm256_setzero_ps();
        for (long k = 0; k < full; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(w + k), a);
        float acc = hsum256(a);
        for (long k = full; k < K; k++) acc = fmaf(x[k], w[k], acc);
        j->C[m * j->ldc + n] = acc + (j->bias ? j->bias[n] : 0.0f);
    }
}
#endif

typedef void (*gv_fn)(const gv_job *, long, long, long);
typedef struct { const gv_job *j; gv_fn f; } gv_ctx;

static void gv_task(void *ctx, long t) {
    const gv_ctx *c = (const gv_ctx *)ctx;
    const long n0 = t * GV_ROWS_PER_TASK, n1 = n0 + GV_ROWS_PER_TASK < c->j->N ? n0 + GV_ROWS_PER_TASK : c->j->N;
    for (long m = 0; m < c->j->M; m++) c->f(c->j, m, n0, n1);
}

void lathe_sgemv_rows(long M, long N, long K, const float *A, long lda, const float *B, long ldb, float *C, long ldc,
                      const float *bias) {
    gv_job j = {.M = M, .N = N, .K = K, .A = A, .B = B, .bias = bias, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C};
    gv_fn f = rows_scalar;
#if defined(__x86_64__)
    switch (lathe_active_isa()) {
    case LATHE_ISA_AVX512: f = rows_avx512; break;
    case LATHE_ISA_AVX2: f = rows_avx2; break;
    default: break;
    }
#endif
    gv_ctx c = {.j = &j, .f = f};
    const long tasks = (N + GV_ROWS_PER_TASK - 1) / GV_ROWS_PER_TASK;
    if (tasks <= 1 || lathe_num_threads() <= 1 || (double)N * (double)K < 65536.0) {
        for (long t = 0; t < tasks; t++) gv_task(&c, t);
    } else {
        lathe_parallel_for(tasks, gv_task, &c);
    }
}
