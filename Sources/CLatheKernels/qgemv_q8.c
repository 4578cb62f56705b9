// Group-32 weight-only GEMV with 8-bit activations (lathe_quant.h, lathe_wq_gemv_q8): the
// decode path of quantized language models, as llama.cpp computes Q4_0/Q4_1/Q8_0 x Q8.
//
// Each 32-element block of x is quantized to int8 (d = amax / 127, q = roundf(x / d), as ggml's
// quantize_row_q8_0_ref). A weight is w = s * u + c with u its code read as unsigned (int4:
// 0..15; int8: the stored q plus 128) and c the block's offset (-8 s, the min, or -128 s), so
//   row . x = sum_b d_b * (s_b * dot(u_b, q_b) + c_b * sum(q_b)).
// The integer dot products are exact on every path (vpdpbusd on AVX-512 VNNI, maddubs on AVX2,
// plain C), and the float combination runs in the same order everywhere (block b goes to lane
// b % 8 of two 8-lane accumulators, which are then summed by one fixed tree): every ISA gives the
// same bits, and the scalar path is the naive twin.
#include "lathe_kernels.h"
#include "lathe_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define Q8_AVX2 __attribute__((target("avx2,fma,f16c")))
#define Q8_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif

enum { QB = 32, Q8_ROWS_PER_TASK = 16 };

/// IEEE binary16 to binary32 (exact).
static float q8_half(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {
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

/// The activations of one row, quantized per block. For int4 weights each block's 32 values are
/// stored even positions first, then odd ones (a code byte holds elements 2j and 2j + 1).
typedef struct {
    int8_t *q;        // [nb * 32]
    float *d;         // [nb8]: nb rounded up to 8, zeros past nb
    int32_t *sum;     // [nb8]: sum of the block's q, zeros past nb
} q8_row;

static void quantize_x(const float *x, long nb, int interleave, q8_row *r) {
    for (long b = 0; b < nb; b++) {
        const float *xb = x + b * QB;
        float amax = 0.0f;
        for (int j = 0; j < QB; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t s = 0;
        int8_t *q = r->q + b * QB;
        for (int j = 0; j < QB; j++) {
            const int v = (int)roundf(xb[j] * id);
            const int at = interleave ? (j & 1) * 16 + j / 2 : j;
            q[at] = (int8_t)v;
            s += v;
        }
        r->d[b] = d;
        r->sum[b] = s;
    }
}

/// The float part of the scalar path: block b goes to lane b % 8 of `acc` and `off`, then the
/// fixed tree of tree8. `isum` has nb8 entries (zeros past nb).
static inline float tree8(const float *a) {
    const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
    return (t0 + t2) + (t1 + t3);
}

static float combine_scalar(const lathe_wq_matrix *w, long n, long nb, const int32_t *isum, const q8_row *x) {
    float acc[8] = {0}, off[8] = {0};
    const uint16_t *sc = w->scales + n * nb, *mn = w->mins ? w->mins + n * nb : NULL;
    for (long b = 0; b < nb; b++) {
        const float s = q8_half(sc[b]);
        const float c = w->symmetric ? s * (w->bits == 4 ? -8.0f : -128.0f) : q8_half(mn[b]);
        acc[b & 7] = fmaf((float)isum[b], s * x->d[b], acc[b & 7]);
        off[b & 7] = fmaf(c, x->d[b] * (float)x->sum[b], off[b & 7]);
    }
    // Lanes past nb hold 0 + 0 * ... = +0 in the vector paths too.
    return tree8(acc) + tree8(off);
}

// ---- Scalar (the naive twin) ----------------------------------------------------------------------

static void isums_scalar(const lathe_wq_matrix *w, const uint8_t *row, long nb, const q8_row *x, int32_t *isum) {
    for (long b = 0; b < nb; b++) {
        const int8_t *q = x->q + b * QB;
        int32_t s = 0;
        if (w->bits == 4) {
            const uint8_t *c = row + b * 16;
            for (int j = 0; j < 16; j++) s += (int32_t)(c[j] & 0xF) * q[j] + (int32_t)(c[j] >> 4) * q[16 + j];
        } else {
            const uint8_t *c = row + b * QB;
            for (int j = 0; j < QB; j++) s += ((int32_t)(int8_t)c[j] + 128) * q[j];
        }
        isum[b] = s;
    }
}

static float row_scalar(const lathe_wq_matrix *w, long n, long nb, const q8_row *x, int32_t *isum) {
    const long row_bytes = w->bits == 4 ? nb * 16 : nb * QB;
    isums_scalar(w, w->q + n * row_bytes, nb, x, isum);
    return combine_scalar(w, n, nb, isum, x);
}

#if defined(__x86_64__)
static inline Q8_AVX2 float tree8_avx2(__m256 v) {
    const __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // t_i = a_i + a_(i+4)
    const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));                                   // t0 + t2, t1 + t3
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

/// combine_scalar with 8 blocks per step (the same operations lane by lane).
static inline Q8_AVX2 float combine_avx2(const lathe_wq_matrix *w, long n, long nb, const int32_t *isum, const q8_row *x) {
    __m256 acc = _mm256_setzero_ps(), off = _mm256_setzero_ps();
    const uint16_t *sc = w->scales + n * nb, *mn = w->mins ? w->mins + n * nb : NULL;
    const __m256 k = _mm256_set1_ps(w->bits == 4 ? -8.0f : -128.0f);
    for (long b = 0; b < nb; b += 8) {
        __m128i sh, mh = _mm_setzero_si128();
        if (b + 8 <= nb) {
            sh = _mm_loadu_si128((const __m128i *)(sc + b));
            if (mn) mh = _mm_loadu_si128((const __m128i *)(mn + b));
        } else {
            uint16_t st[8] = {0}, mt[8] = {0};
            memcpy(st, sc + b, (size_t)(nb - b) * 2);
            if (mn) memcpy(mt, mn + b, (size_t)(nb - b) * 2);
            sh = _mm_loadu_si128((const __m128i *)st);
            mh = _mm_loadu_si128((const __m128i *)mt);
        }
        const __m256 s = _mm256_cvtph_ps(sh), d = _mm256_loadu_ps(x->d + b);
        const __m256 c = w->symmetric ? _mm256_mul_ps(s, k) : _mm256_cvtph_ps(mh);
        const __m256 is = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(isum + b)));
        const __m256 sm = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(x->sum + b)));
        acc = _mm256_fmadd_ps(is, _mm256_mul_ps(s, d), acc);
        off = _mm256_fmadd_ps(c, _mm256_mul_ps(d, sm), off);
    }
    return tree8_avx2(acc) + tree8_avx2(off);
}

/// Sums of the 8 lanes of a..h into one vector [sum a, ..., sum h].
static inline Q8_AVX2 __m256i hsum8x8(__m256i a, __m256i b, __m256i c, __m256i d, __m256i e, __m256i f, __m256i g,
                                      __m256i h) {
    const __m256i ab = _mm256_hadd_epi32(a, b), cd = _mm256_hadd_epi32(c, d);
    const __m256i ef = _mm256_hadd_epi32(e, f), gh = _mm256_hadd_epi32(g, h);
    const __m256i abcd = _mm256_hadd_epi32(ab, cd), efgh = _mm256_hadd_epi32(ef, gh);
    // abcd: lane 128-bit halves hold partial sums of a,b,c,d; add the halves.
    const __m256i lo = _mm256_permute2x128_si256(abcd, efgh, 0x20), hi = _mm256_permute2x128_si256(abcd, efgh, 0x31);
    return _mm256_add_epi32(lo, hi);
}

static inline Q8_AVX2 int32_t hsum8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/// The codes of block b as 32 unsigned bytes in the order of the quantized activations.
static inline Q8_AVX2 __m256i codes_u8(const lathe_wq_matrix *w, const uint8_t *row, long b) {
    if (w->bits == 4) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(row + b * 16)), m = _mm_set1_epi8(0x0F);
        return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
    }
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + b * QB)), _mm256_set1_epi8((char)0x80));
}

/// dot(u, q) as 8 int32 lanes, AVX2: maddubs is exact for int4 codes (pairs <= 2*15*127); int8
/// codes go through the sign trick on the signed q (pairs <= 2*128*127) plus 128 * sum(q).
static inline Q8_AVX2 __m256i dot_avx2(const lathe_wq_matrix *w, const uint8_t *row, long b, const q8_row *x) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->q + b * QB)), ones = _mm256_set1_epi16(1);
    if (w->bits == 4) return _mm256_madd_epi16(_mm256_maddubs_epi16(codes_u8(w, row, b), q), ones);
    const __m256i c = _mm256_loadu_si256((const __m256i *)(row + b * QB));
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(q, c)), ones);
    // + 128 * sum(q), spread over the lanes: lane 0 carries it.
    return _mm256_add_epi32(p, _mm256_setr_epi32(128 * x->sum[b], 0, 0, 0, 0, 0, 0, 0));
}

static Q8_AVX2 float row_avx2(const lathe_wq_matrix *w, long n, long nb, const q8_row *x, int32_t *isum) {
    const long row_bytes = w->bits == 4 ? nb * 16 : nb * QB;
    const uint8_t *row = w->q + n * row_bytes;
    long b = 0;
    for (; b + 8 <= nb; b += 8) {
        const __m256i s = hsum8x8(dot_avx2(w, row, b, x), dot_avx2(w, row, b + 1, x), dot_avx2(w, row, b + 2, x),
                                  dot_avx2(w, row, b + 3, x), dot_avx2(w, row, b + 4, x), dot_avx2(w, row, b + 5, x),
                                  dot_avx2(w, row, b + 6, x), dot_avx2(w, row, b + 7, x));
        _mm256_storeu_si256((__m256i *)(isum + b), s);
    }
    for (; b < nb; b++) isum[b] = hsum8(dot_avx2(w, row, b, x));
    for (; b % 8; b++) isum[b] = 0;
    return combine_avx2(w, n, nb, isum, x);
}

static inline Q8_VNNI __m256i dot_vnni(const lathe_wq_matrix *w, const uint8_t *row, long b, const q8_row *x) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->q + b * QB));
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), codes_u8(w, row, b), q);
}

static Q8_VNNI float row_vnni(const lathe_wq_matrix *w, long n, long nb, const q8_row *x, int32_t *isum) {
    const long row_bytes = w->bits == 4 ? nb * 16 : nb * QB;
    const uint8_t *row = w->q + n * row_bytes;
    long b = 0;
    for (; b + 8 <= nb; b += 8) {
        const __m256i s = hsum8x8(dot_vnni(w, row, b, x), dot_vnni(w, row, b + 1, x), dot_vnni(w, row, b + 2, x),
                                  dot_vnni(w, row, b + 3, x), dot_vnni(w, row, b + 4, x), dot_vnni(w, row, b + 5, x),
                                  dot_vnni(w, row, b + 6, x), dot_vnni(w, row, b + 7, x));
        _mm256_storeu_si256((__m256i *)(isum + b), s);
    }
    for (; b < nb; b++) isum[b] = hsum8(dot_vnni(w, row, b, x));
    for (; b % 8; b++) isum[b] = 0;
    return combine_avx2(w, n, nb, isum, x);
}

static int q8_has_vnni(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    unsigned a, b, c, d;
    v = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) v = (c >> 11) & 1;
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}
#endif

typedef float (*q8_row_fn)(const lathe_wq_matrix *, long, long, const q8_row *, int32_t *);

static q8_row_fn pick_row(void) {
    switch (lathe_active_isa()) {
#if defined(__x86_64__)
    case LATHE_ISA_AVX512: return q8_has_vnni() ? row_vnni : row_avx2;
    case LATHE_ISA_AVX2: return row_avx2;
#endif
    default: return row_scalar;
    }
}

const char *lathe_wq_gemv_q8_variant(void) {
    const q8_row_fn f = pick_row();
#if defined(__x86_64__)
    if (f == row_vnni) return "avx512-vnni";
    if (f == row_avx2) return "avx2";
#endif
    (void)f;
    return "scalar";
}

typedef struct {
    const lathe_wq_matrix *w;
    long N, nb;
    const q8_row *x;
    const float *bias;
    float *y;
    q8_row_fn row;
} q8_job;

static void q8_task(void *ctx, long t) {
    const q8_job *j = (const q8_job *)ctx;
    int32_t isum[256];
    const long nb8 = (j->nb + 7) / 8 * 8;
    int32_t *sums = nb8 <= 256 ? isum : (int32_t *)malloc((size_t)nb8 * sizeof(int32_t));
    if (!sums) return;
    const long r0 = t * Q8_ROWS_PER_TASK, r1 = r0 + Q8_ROWS_PER_TASK < j->N ? r0 + Q8_ROWS_PER_TASK : j->N;
    for (long n = r0; n < r1; n++) j->y[n] = j->row(j->w, n, j->nb, j->x, sums) + (j->bias ? j->bias[n] : 0.0f);
    if (sums != isum) free(sums);
}

int lathe_wq_gemv_q8_supported(const lathe_wq_matrix *w, long K) {
    return w->group_size == QB && K > 0 && K % QB == 0 && (w->bits == 4 || (w->bits == 8 && w->symmetric));
}

void lathe_wq_gemv_q8(long M, long N, long K, const float *X, long ldx, const lathe_wq_matrix *w, const float *bias,
                      float *Y, long ldy) {
    if (M <= 0 || N <= 0) return;
    if (!lathe_wq_gemv_q8_supported(w, K)) {
        lathe_wq_gemm(M, N, K, X, ldx, w, bias, Y, ldy);
        return;
    }
    const long nb = K / QB, nb8 = (nb + 7) / 8 * 8;
    int8_t *q = (int8_t *)aligned_alloc(64, ((size_t)K + 63) & ~(size_t)63);
    float *d = (float *)calloc((size_t)nb8, sizeof(float));
    int32_t *s = (int32_t *)calloc((size_t)nb8, sizeof(int32_t));
    if (!q || !d || !s) {  // out of memory: the float path needs no buffers
        free(q), free(d), free(s);
        lathe_wq_gemm(M, N, K, X, ldx, w, bias, Y, ldy);
        return;
    }
    q8_row x = {.q = q, .d = d, .sum = s};
    const q8_row_fn row = pick_row();
    const long tasks = (N + Q8_ROWS_PER_TASK - 1) / Q8_ROWS_PER_TASK;
    for (long m = 0; m < M; m++) {
        quantize_x(X + m * ldx, nb, w->bits == 4, &x);
        q8_job j = {.w = w, .N = N, .nb = nb, .x = &x, .bias = bias, .y = Y + m * ldy, .row = row};
        if (tasks <= 1 || lathe_num_threads() <= 1 || (double)N * (double)K < 65536.0) {
            for (long t = 0; t < tasks; t++) q8_task(&j, t);
        } else {
            lathe_parallel_for(tasks, q8_task, &j);
        }
    }
    free(q), free(d), free(s);
}
