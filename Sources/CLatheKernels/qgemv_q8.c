// Group-32 weight-only GEMV with 8-bit activations (lathe_quant.h, lathe_wq_gemv_repacked): the
// decode path of quantized language models, as llama.cpp computes Q4_0/Q4_1/Q8_0 x Q8.
//
// Each 32-element block of x is quantized to int8 (d = amax / 127, q = roundf(x / d), as ggml's
// quantize_row_q8_0_ref). A weight is w = s * u + c with u its code read as unsigned (int4:
// 0..15; int8: the stored q plus 128) and c the block's offset (-8 s, the min, or -128 s), so
//   row . x = sum_b d_b * (s_b * dot(u_b, q_b) + c_b * sum(q_b)).
// The integer dot products are exact on every path (vpdpbusd on AVX-512 VNNI, maddubs on AVX2,
// plain C), and the float combination runs block by block for each row everywhere: every ISA
// gives the same bits, and the scalar path is the naive twin.
#include "lathe_elementwise.h"
#include "lathe_kernels.h"
#include "lathe_quant.h"
#include "qgemm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define Q8_AVX2 __attribute__((target("avx2,fma,f16c")))
#define Q8_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif

enum { QB = 32, Q8_ROWS_PER_TASK = 16 };

/// IEEE binary16 to binary32 (exact), for the scalar twin.
static float q8_half(uint16_t h) {
    float f;
    lathe_f16_to_f32(&h, &f, 1);
    return f;
}

/// The activations of one row, quantized per block.
typedef struct {
    int8_t *q;        // [nb * 32]
    float *d;         // [nb]
    int32_t *sum;     // [nb]: sum of the block's q
} q8_row;

static void quantize_x(const float *x, long nb, q8_row *r) {
    for (long b = 0; b < nb; b++) {
        const float *xb = x + b * QB;
        float amax = 0.0f;
        for (int j = 0; j < QB; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t s = 0;
        int8_t *q = r->q + b * QB;
        for (int j = 0; j < QB; j++) {
            const int v = (int)roundf(xb[j] * id);
            q[j] = (int8_t)v;
            s += v;
        }
        r->d[b] = d;
        r->sum[b] = s;
    }
}


// ---- Repacked decode layout: 16 rows per vector ----------------------------------------------------
//
// For each group of 16 rows and each 32-element block, the codes of the 16 rows are interleaved so
// that one 64-byte vector holds 4 consecutive k for each row (lane r = row r): vpdpbusd with the
// 4 matching activation bytes broadcast adds one row's 4 products into each lane, and a block's
// integer dot products end in the 16 lanes without any horizontal sum.
//   int4: per block 4 vectors; vector s, lane r, byte j: code(k = 8s + j) | code(k = 8s + 4 + j) << 4.
//   int8: per block 8 vectors; vector s, lane r, byte j: code(k = 4s + j) + 128.
// Scales (and mins) follow as fp16 [groups][blocks][16]. Rows past N are zero.

size_t lathe_wq_repacked_size(const lathe_wq_matrix *w, long N, long K) {
    const long g = (N + 15) / 16, nb = K / QB;
    const size_t codes = (size_t)g * nb * 16 * (w->bits == 4 ? 16 : 32);
    const size_t scales = (size_t)g * nb * 16 * 2 * (w->symmetric ? 1 : 2);
    return codes + scales;
}

void lathe_wq_repack(const lathe_wq_matrix *w, long N, long K, uint8_t *out) {
    const long groups = (N + 15) / 16, nb = K / QB, row_bytes = w->bits == 4 ? K / 2 : K;
    const long block_bytes = 16 * (w->bits == 4 ? 16 : 32);
    uint8_t *codes = out;
    uint16_t *scales = (uint16_t *)(out + (size_t)groups * nb * block_bytes);
    uint16_t *mins = scales + (size_t)groups * nb * 16;
    memset(out, 0, lathe_wq_repacked_size(w, N, K));
    for (long n = 0; n < N; n++) {
        const long g = n / 16, r = n % 16;
        const uint8_t *row = w->q + n * row_bytes;
        for (long b = 0; b < nb; b++) {
            uint8_t *blk = codes + (g * nb + b) * block_bytes;
            scales[(g * nb + b) * 16 + r] = w->scales[n * nb + b];
            if (!w->symmetric) mins[(g * nb + b) * 16 + r] = w->mins[n * nb + b];
            for (int kk = 0; kk < QB; kk++) {
                const long k = b * QB + kk;
                if (w->bits == 4) {
                    const uint8_t u = (row[k >> 1] >> ((k & 1) * 4)) & 0xF;
                    const int s = kk / 8, j = kk % 8;
                    blk[s * 64 + r * 4 + (j & 3)] |= (uint8_t)(j < 4 ? u : u << 4);
                } else {
                    const int s = kk / 4, j = kk % 4;
                    blk[s * 64 + r * 4 + j] = (uint8_t)((int)(int8_t)row[k] + 128);
                }
            }
        }
    }
}

typedef struct {
    const uint8_t *packed;
    int bits, symmetric;
    long N, nb, groups;
    const int8_t *q;      // natural order
    const float *d;
    const int32_t *sum;
    const float *bias;
    float *y;
} r16_job;

static inline const uint8_t *r16_codes(const r16_job *j, long g, long b) {
    return j->packed + (g * j->nb + b) * 16 * (j->bits == 4 ? 16 : 32);
}
static inline const uint16_t *r16_scales(const r16_job *j, long g, long b) {
    const uint16_t *s = (const uint16_t *)(j->packed + (size_t)j->groups * j->nb * 16 * (j->bits == 4 ? 16 : 32));
    return s + (g * j->nb + b) * 16;
}
static inline const uint16_t *r16_mins(const r16_job *j, long g, long b) {
    return r16_scales(j, g, b) + (size_t)j->groups * j->nb * 16;
}

/// The naive twin: per row, block by block, acc += isum * (s d), off += c * (d sum); y = acc + off.
static void r16_group_scalar(const r16_job *j, long g) {
    for (int r = 0; r < 16 && g * 16 + r < j->N; r++) {
        float acc = 0.0f, off = 0.0f;
        for (long b = 0; b < j->nb; b++) {
            const uint8_t *c = r16_codes(j, g, b);
            const int8_t *q = j->q + b * QB;
            int32_t isum = 0;
            for (int kk = 0; kk < QB; kk++) {
                int u;
                if (j->bits == 4) {
                    const int s = kk / 8, jj = kk % 8;
                    const uint8_t byte = c[s * 64 + r * 4 + (jj & 3)];
                    u = jj < 4 ? (byte & 0xF) : (byte >> 4);
                } else {
                    u = c[(kk / 4) * 64 + r * 4 + kk % 4];
                }
                isum += u * q[kk];
            }
            const float s = q8_half(r16_scales(j, g, b)[r]);
            const float cc = j->symmetric ? s * (j->bits == 4 ? -8.0f : -128.0f) : q8_half(r16_mins(j, g, b)[r]);
            acc = fmaf((float)isum, s * j->d[b], acc);
            off = fmaf(cc, j->d[b] * (float)j->sum[b], off);
        }
        const long n = g * 16 + r;
        j->y[n] = acc + off + (j->bias ? j->bias[n] : 0.0f);
    }
}

#if defined(__x86_64__)
static Q8_VNNI void r16_group_vnni(const r16_job *j, long g) {
    __m512 acc = _mm512_setzero_ps(), off = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0F);
    const __m512 k = _mm512_set1_ps(j->bits == 4 ? -8.0f : -128.0f);
    for (long b = 0; b < j->nb; b++) {
        const uint8_t *c = r16_codes(j, g, b);
        const int32_t *q = (const int32_t *)(j->q + b * QB);
        __m512i isum = _mm512_setzero_si512();
        if (j->bits == 4) {
            for (int s = 0; s < 4; s++) {
                const __m512i v = _mm512_loadu_si512(c + s * 64);
                isum = _mm512_dpbusd_epi32(isum, _mm512_and_si512(v, low), _mm512_set1_epi32(q[2 * s]));
                isum = _mm512_dpbusd_epi32(isum, _mm512_and_si512(_mm512_srli_epi16(v, 4), low), _mm512_set1_epi32(q[2 * s + 1]));
            }
        } else {
            for (int s = 0; s < 8; s++) isum = _mm512_dpbusd_epi32(isum, _mm512_loadu_si512(c + s * 64), _mm512_set1_epi32(q[s]));
        }
        const __m512 sc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)r16_scales(j, g, b)));
        const __m512 cc = j->symmetric ? _mm512_mul_ps(sc, k) : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)r16_mins(j, g, b)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(sc, _mm512_set1_ps(j->d[b])), acc);
        off = _mm512_fmadd_ps(cc, _mm512_set1_ps(j->d[b] * (float)j->sum[b]), off);
    }
    float y[16];
    _mm512_storeu_ps(y, _mm512_add_ps(acc, off));
    for (int r = 0; r < 16 && g * 16 + r < j->N; r++) j->y[g * 16 + r] = y[r] + (j->bias ? j->bias[g * 16 + r] : 0.0f);
}

/// AVX2: 8 rows per ymm (two halves of the 16-row group); maddubs + madd give each lane's 4
/// products (pairs <= 2 * 255 * 127 would overflow int16 for int8 codes, so int8 takes the
/// sign trick on the codes minus 128).
static Q8_AVX2 void r16_group_avx2(const r16_job *j, long g) {
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), bias128 = _mm256_set1_epi8((char)0x80);
    const __m256 k = _mm256_set1_ps(j->bits == 4 ? -8.0f : -128.0f);
    for (int h = 0; h < 2; h++) {
        __m256 acc = _mm256_setzero_ps(), off = _mm256_setzero_ps();
        for (long b = 0; b < j->nb; b++) {
            const uint8_t *c = r16_codes(j, g, b) + h * 32;
            const int32_t *q = (const int32_t *)(j->q + b * QB);
            __m256i isum = _mm256_setzero_si256();
            if (j->bits == 4) {
                for (int s = 0; s < 4; s++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(c + s * 64));
                    const __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(v, low), _mm256_set1_epi32(q[2 * s]));
                    const __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), _mm256_set1_epi32(q[2 * s + 1]));
                    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
                }
            } else {
                for (int s = 0; s < 8; s++) {
                    const __m256i sv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(c + s * 64)), bias128);  // the signed code
                    const __m256i xv = _mm256_set1_epi32(q[s]);
                    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(sv, sv), _mm256_sign_epi8(xv, sv));
                    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, ones));
                }
                isum = _mm256_add_epi32(isum, _mm256_set1_epi32(128 * j->sum[b]));
            }
            const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r16_scales(j, g, b) + h * 8)));
            const __m256 cc = j->symmetric ? _mm256_mul_ps(sc, k) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r16_mins(j, g, b) + h * 8)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(sc, _mm256_set1_ps(j->d[b])), acc);
            off = _mm256_fmadd_ps(cc, _mm256_set1_ps(j->d[b] * (float)j->sum[b]), off);
        }
        float y[8];
        _mm256_storeu_ps(y, _mm256_add_ps(acc, off));
        for (int r = 0; r < 8 && g * 16 + h * 8 + r < j->N; r++) {
            const long n = g * 16 + h * 8 + r;
            j->y[n] = y[r] + (j->bias ? j->bias[n] : 0.0f);
        }
    }
}
#endif

typedef void (*r16_fn)(const r16_job *, long);
typedef struct { const r16_job *j; r16_fn f; long per_task; } r16_ctx;

static void r16_task(void *ctx, long t) {
    const r16_ctx *c = (const r16_ctx *)ctx;
    const long g0 = t * c->per_task, g1 = g0 + c->per_task < c->j->groups ? g0 + c->per_task : c->j->groups;
    for (long g = g0; g < g1; g++) c->f(c->j, g);
}

const char *lathe_wq_gemv_variant(void) {
#if defined(__x86_64__)
    switch (lathe_active_isa()) {
    case LATHE_ISA_AVX512: return lathe_has_avx512_vnni() ? "avx512-vnni" : "avx2";
    case LATHE_ISA_AVX2: return "avx2";
    default: break;
    }
#endif
    return "scalar";
}

int lathe_wq_gemv_supported(const lathe_wq_matrix *w, long K) {
    return w->group_size == QB && K > 0 && K % QB == 0 && (w->bits == 4 || (w->bits == 8 && w->symmetric));
}

void lathe_wq_gemv_repacked(long M, long N, long K, const float *X, long ldx, const uint8_t *packed, int bits, int symmetric,
                            const float *bias, float *Y, long ldy) {
    if (M <= 0 || N <= 0 || K <= 0 || K % QB) return;
    const long nb = K / QB;
    int8_t *q = (int8_t *)aligned_alloc(64, ((size_t)K + 63) & ~(size_t)63);
    float *d = (float *)calloc((size_t)nb, sizeof(float));
    int32_t *s = (int32_t *)calloc((size_t)nb, sizeof(int32_t));
    if (!q || !d || !s) {
        free(q), free(d), free(s);
        return;
    }
    r16_fn f = r16_group_scalar;
#if defined(__x86_64__)
    switch (lathe_active_isa()) {
    case LATHE_ISA_AVX512: f = lathe_has_avx512_vnni() ? r16_group_vnni : r16_group_avx2; break;
    case LATHE_ISA_AVX2: f = r16_group_avx2; break;
    default: break;
    }
#endif
    q8_row x = {.q = q, .d = d, .sum = s};
    const long groups = (N + 15) / 16;
    for (long m = 0; m < M; m++) {
        quantize_x(X + m * ldx, nb, &x);
        r16_job j = {.packed = packed, .bits = bits, .symmetric = symmetric, .N = N, .nb = nb, .groups = groups,
                     .q = q, .d = d, .sum = s, .bias = bias, .y = Y + m * ldy};
        const int threads = lathe_num_threads();
        if (threads <= 1 || (double)N * (double)K < 65536.0) {
            for (long g = 0; g < groups; g++) f(&j, g);
        } else {
            // A few tasks per thread, so that an uneven split costs little.
            const long tasks = groups < 4L * threads ? groups : 4L * threads;
            r16_ctx c = {.j = &j, .f = f, .per_task = (groups + tasks - 1) / tasks};
            lathe_parallel_for((groups + c.per_task - 1) / c.per_task, r16_task, &c);
        }
    }
    free(q), free(d), free(s);
}
