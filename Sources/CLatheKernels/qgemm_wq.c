// Weight-only group-wise int8 / int4 kernels (lathe_quant.h): fused dequantise-and-dot for
// small batches, dequantise-a-block + lathe_sgemm for larger ones.
//
// Every path dequantises an element as w = fmaf(u, s, c) with u the code as float and (s, c)
// the group's scale and offset (c = 0, -8 s or the min), so the dequantised matrix is the
// same bits on every ISA; dot products differ across ISAs only in summation order.
#include "lathe_kernels.h"
#include "lathe_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define LATHE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LATHE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#endif

/// IEEE binary16 to binary32 (exact; subnormals, infinities and NaNs included).
static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: value = man * 2^-24
            float f = (float)man * 5.9604644775390625e-8f;
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else if (exp == 31) bits = sign | 0x7F800000 | (man << 13);
    else bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

typedef struct {
    long K, ng, row_bytes;
} wq_geom;

static wq_geom geom(const lathe_wq_matrix *w, long K) {
    wq_geom g = {.K = K, .ng = (K + w->group_size - 1) / w->group_size,
                 .row_bytes = w->bits == 4 ? (K + 1) / 2 : K};
    return g;
}

/// Scale and offset of group g of row n: w = fmaf(u, s, c).
static inline void group_sc(const lathe_wq_matrix *w, const wq_geom *g, long n, long gi, float *s,
                            float *c) {
    const long i = n * g->ng + gi;
    *s = w->scales_f32 ? w->scales_f32[i] : half_to_float(w->scales[i]);
    if (!w->symmetric) *c = w->scales_f32 ? w->mins_f32[i] : half_to_float(w->mins[i]);
    else *c = w->bits == 4 ? -8.0f * *s : 0.0f;
}

/// The code of element k of a row as float.
static inline float code_at(const lathe_wq_matrix *w, const uint8_t *row, long k) {
    if (w->bits == 4) return (float)((row[k >> 1] >> ((k & 1) * 4)) & 0xF);
    return w->symmetric ? (float)(int8_t)row[k] : (float)row[k];
}

// ---- Scalar ------------------------------------------------------------------------------------

static float row_dot_scalar(const lathe_wq_matrix *w, const wq_geom *g, long n, const float *x) {
    const uint8_t *row = w->q + n * g->row_bytes;
    float acc = 0.0f;
    for (long gi = 0; gi < g->ng; gi++) {
        float s, c;
        group_sc(w, g, n, gi, &s, &c);
        const long k1 = (gi + 1) * w->group_size < g->K ? (gi + 1) * w->group_size : g->K;
        for (long k = gi * w->group_size; k < k1; k++) acc = fmaf(fmaf(code_at(w, row, k), s, c), x[k], acc);
    }
    return acc;
}

static void deq_row_scalar(const lathe_wq_matrix *w, const wq_geom *g, long n, float *out) {
    const uint8_t *row = w->q + n * g->row_bytes;
    for (long gi = 0; gi < g->ng; gi++) {
        float s, c;
        group_sc(w, g, n, gi, &s, &c);
        const long k1 = (gi + 1) * w->group_size < g->K ? (gi + 1) * w->group_size : g->K;
        for (long k = gi * w->group_size; k < k1; k++) out[k] = fmaf(code_at(w, row, k), s, c);
    }
}

#if defined(__x86_64__)
// ---- AVX-512: 16 codes per vector ----------------------------------------------------------------

/// Codes k..k+15 of a row (k a multiple of 16) as 16 int32.
static inline LATHE_AVX512 __m512i codes16_avx512(const lathe_wq_matrix *w, const uint8_t *row, long k) {
    if (w->bits == 4) {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(row + k / 2));
        const __m128i m = _mm_set1_epi8(0x0F);
        const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
        return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
    }
    const __m128i b = _mm_loadu_si128((const __m128i *)(row + k));
    return w->symmetric ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
}

static LATHE_AVX512 float row_dot_avx512(const lathe_wq_matrix *w, const wq_geom *g, long n, const float *x) {
    const uint8_t *row = w->q + n * g->row_bytes;
    __m512 acc = _mm512_setzero_ps();
    float tail = 0.0f;
    for (long gi = 0; gi < g->ng; gi++) {
        float s, c;
        group_sc(w, g, n, gi, &s, &c);
        const __m512 vs = _mm512_set1_ps(s), vc = _mm512_set1_ps(c);
        const long k0 = gi * w->group_size;
        const long k1 = k0 + w->group_size < g->K ? k0 + w->group_size : g->K;
        long k = k0;
        for (; k + 16 <= k1; k += 16) {
            const __m512 wv = _mm512_fmadd_ps(_mm512_cvtepi32_ps(codes16_avx512(w, row, k)), vs, vc);
            acc = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + k), acc);
        }
        for (; k < k1; k++) tail = fmaf(fmaf(code_at(w, row, k), s, c), x[k], tail);
    }
    return _mm512_reduce_add_ps(acc) + tail;
}

static LATHE_AVX512 void deq_row_avx512(const lathe_wq_matrix *w, const wq_geom *g, long n, float *out) {
    const uint8_t *row = w->q + n * g->row_bytes;
    for (long gi = 0; gi < g->ng; gi++) {
        float s, c;
        group_sc(w, g, n, gi, &s, &c);
        const __m512 vs = _mm512_set1_ps(s), vc = _mm512_set1_ps(c);
        const long k0 = gi * w->group_size;
        const long k1 = k0 + w->group_size < g->K ? k0 + w->group_size : g->K;
        long k = k0;
        for (; k + 16 <= k1; k += 16)
            _mm512_storeu_ps(out + k, _mm512_fmadd_ps(_mm512_cvtepi32_ps(codes16_avx512(w, row, k)), vs, vc));
        for (; k < k1; k++) out[k] = fmaf(code_at(w, row, k), s, c);
    }
}

// ---- AVX2: 16 codes as two 8-lane vectors --------------------------------------------------------

static inline LATHE_AVX2 void codes16_avx2(const lathe_wq_matrix *w, const uint8_t *row, long k, __m256 *c0,
                                           __m256 *c1) {
    __m128i b;
    int sign = 0;
    if (w->bits == 4) {
        const __m128i raw = _mm_loadl_epi64((const __m128i *)(row + k / 2));
        const __m128i m = _mm_set1_epi8(0x0F);
        b = _mm_unpacklo_epi8(_mm_and_si128(raw, m), _mm_and_si128(_mm_srli_epi16(raw, 4), m));
    } else {
        b = _mm_loadu_si128((const __m128i *)(row + k));
        sign = w->symmetric;
    }
    const __m128i b8 = _mm_srli_si128(b, 8);
    *c0 = _mm256_cvtepi32_ps(sign ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b));
    *c1 = _mm256_cvtepi32_ps(sign ? _mm256_cvtepi8_epi32(b8) : _mm256_cvtepu8_epi32(b8));
}

static LATHE_AVX2 float row_dot_avx2(const lathe_wq_matrix *w, const wq_geom *g, long n, const float *x) {
    const uint8_t *row = w->q + n * g->row_bytes;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float tail = 0.0f;
    for (long gi = 0; gi < g->ng; gi++) {
        float s, c;
        group_sc(w, g, n, gi, &s, &c);
        const __m256 vs = _mm256_set1_ps(s), vc = _mm256_set1_ps(c);
        const long k0 = gi * w->group_size;
        const long k1 = k0 + w->group_size < g->K ? k0 + w->group_size : g->K;
        long k = k0;
        for (; k + 16 <= k1; k += 16) {
            __m256 u0, u1;
            codes16_avx2(w, row, k, &u0, &u1);
            acc0 = _mm256_fmadd_ps(_mm256_fmadd_ps(u0, vs, vc), _mm256_loadu_ps(x + k), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_fmadd_ps(u1, vs, vc), _mm256_loadu_ps(x + k + 8), acc1);
        }
        for (; k < k1; k++) tail = fmaf(fmaf(code_at(w, row, k), s, c), x[k], tail);
    }
    const __m256 a = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h) + tail;
}

static LATHE_AVX2 void deq_row_avx2(const lathe_wq_matrix *w, const wq_geom *g, long n, float *out) {
    const uint8_t *row = w->q + n * g->row_bytes;
    for (long gi = 0; gi < g->ng; gi++) {
        float s, c;
        group_sc(w, g, n, gi, &s, &c);
        const __m256 vs = _mm256_set1_ps(s), vc = _mm256_set1_ps(c);
        const long k0 = gi * w->group_size;
        const long k1 = k0 + w->group_size < g->K ? k0 + w->group_size : g->K;
        long k = k0;
        for (; k + 16 <= k1; k += 16) {
            __m256 u0, u1;
            codes16_avx2(w, row, k, &u0, &u1);
            _mm256_storeu_ps(out + k, _mm256_fmadd_ps(u0, vs, vc));
            _mm256_storeu_ps(out + k + 8, _mm256_fmadd_ps(u1, vs, vc));
        }
        for (; k < k1; k++) out[k] = fmaf(code_at(w, row, k), s, c);
    }
}
#endif

// ---- Dispatch and drivers ------------------------------------------------------------------------

typedef float (*row_dot_fn)(const lathe_wq_matrix *, const wq_geom *, long, const float *);
typedef void (*deq_row_fn)(const lathe_wq_matrix *, const wq_geom *, long, float *);

static void pick(row_dot_fn *dot, deq_row_fn *deq) {
    switch (lathe_active_isa()) {
#if defined(__x86_64__)
    case LATHE_ISA_AVX512: *dot = row_dot_avx512; *deq = deq_row_avx512; return;
    case LATHE_ISA_AVX2: *dot = row_dot_avx2; *deq = deq_row_avx2; return;
#endif
    default: *dot = row_dot_scalar; *deq = deq_row_scalar; return;
    }
}

enum { WQ_ROWS_PER_TASK = 16, WQ_GEMV_MAX_M = 4 };

typedef struct {
    const lathe_wq_matrix *w;
    wq_geom g;
    row_dot_fn dot;
    deq_row_fn deq;
    long M, N, n0, n1;
    const float *X, *bias;
    long ldx, ldy, ldo;
    float *Y, *out;
} wq_job;

static void gemv_task(void *ctx, long t) {
    const wq_job *j = (const wq_job *)ctx;
    const long r0 = t * WQ_ROWS_PER_TASK;
    const long r1 = r0 + WQ_ROWS_PER_TASK < j->N ? r0 + WQ_ROWS_PER_TASK : j->N;
    for (long m = 0; m < j->M; m++)
        for (long n = r0; n < r1; n++)
            j->Y[m * j->ldy + n] = j->dot(j->w, &j->g, n, j->X + m * j->ldx) + (j->bias ? j->bias[n] : 0.0f);
}

static void deq_task(void *ctx, long t) {
    const wq_job *j = (const wq_job *)ctx;
    const long r0 = j->n0 + t * WQ_ROWS_PER_TASK;
    const long r1 = r0 + WQ_ROWS_PER_TASK < j->n1 ? r0 + WQ_ROWS_PER_TASK : j->n1;
    for (long n = r0; n < r1; n++) j->deq(j->w, &j->g, n, j->out + (n - j->n0) * j->ldo);
}

static void run(long tasks, lathe_task_fn fn, void *ctx, double work) {
    if (tasks <= 1 || lathe_num_threads() <= 1 || work < 65536.0) {
        for (long t = 0; t < tasks; t++) fn(ctx, t);
    } else {
        lathe_parallel_for(tasks, fn, ctx);
    }
}

void lathe_wq_dequantize(const lathe_wq_matrix *w, long N, long K, long n0, long n1, float *out, long ldo) {
    (void)N;
    if (n1 <= n0 || K <= 0) return;
    wq_job j = {.w = w, .g = geom(w, K), .n0 = n0, .n1 = n1, .out = out, .ldo = ldo};
    pick(&j.dot, &j.deq);
    run((n1 - n0 + WQ_ROWS_PER_TASK - 1) / WQ_ROWS_PER_TASK, deq_task, &j, (double)(n1 - n0) * (double)K);
}

void lathe_wq_gemm(long M, long N, long K, const float *X /* [M,K] */, long ldx, const lathe_wq_matrix *w,
                   const float *bias /* [N] or NULL */, float *Y /* [M,N] */, long ldy) {
    if (M <= 0 || N <= 0) return;
    wq_job j = {.w = w, .g = geom(w, K), .M = M, .N = N, .X = X, .ldx = ldx, .bias = bias, .Y = Y, .ldy = ldy};
    pick(&j.dot, &j.deq);
    if (M <= WQ_GEMV_MAX_M || K <= 0) {
        run((N + WQ_ROWS_PER_TASK - 1) / WQ_ROWS_PER_TASK, gemv_task, &j, (double)M * (double)N * (double)K);
        return;
    }
    // Dequantise blocks of rows (about 1 MB of fp32 each) and multiply them with the fp32 GEMM.
    long rows = (1L << 18) / K;
    rows = rows < WQ_ROWS_PER_TASK ? WQ_ROWS_PER_TASK : rows / WQ_ROWS_PER_TASK * WQ_ROWS_PER_TASK;
    if (rows > N) rows = N;
    float *buf = (float *)aligned_alloc(64, ((size_t)(rows * K) * sizeof(float) + 63) & ~(size_t)63);
    if (!buf) {  // out of memory: the fused path needs no buffer
        run((N + WQ_ROWS_PER_TASK - 1) / WQ_ROWS_PER_TASK, gemv_task, &j, (double)M * (double)N * (double)K);
        return;
    }
    for (long n0 = 0; n0 < N; n0 += rows) {
        const long n1 = n0 + rows < N ? n0 + rows : N;
        lathe_wq_dequantize(w, N, K, n0, n1, buf, K);
        lathe_sgemm(0, 1, M, n1 - n0, K, 1.0f, X, ldx, buf, K, 0.0f, Y + n0, ldy);
    }
    free(buf);
    if (bias)
        for (long m = 0; m < M; m++)
            for (long n = 0; n < N; n++) Y[m * ldy + n] += bias[n];
}
