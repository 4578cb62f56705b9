// Weight-only GEMV with 8-bit activations (lathe_quant.h, lathe_wq_gemv_repacked): the decode path
// of quantized language models, as llama.cpp computes Q4_0/Q4_1/Q8_0/Q4_K/Q6_K x Q8.
//
// Each 32-element block of x is quantized to int8 (d = amax / 127, q = roundf(x / d), as ggml's
// quantize_row_q8_0_ref). A weight is w = s * u + c with u its code read as unsigned (int4:
// 0..15; int8: the stored q plus 128 when symmetric, the stored u otherwise) and c its group's
// offset (-8 s, -128 s or the min), so for 32-element groups
//   row . x = sum_b d_b * (s_b * dot(u_b, q_b) + c_b * sum(q_b)),
// and 16-element groups (Q6_K) take the two halves of a block with their own s, c and sum(q).
// Scales are fp16 or float32 (K-quants: d * sc is not an fp16 value).
// The integer dot products are exact on every path (vpdpbusd on AVX-512 VNNI, maddubs on AVX2,
// plain C), and the float combination runs group by group for each row everywhere: every ISA
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
    int32_t *sum16;   // [2 nb]: sums of its two halves (for 16-element weight groups)
} q8_row;

static void quantize_x(const float *x, long nb, q8_row *r) {
    for (long b = 0; b < nb; b++) {
        const float *xb = x + b * QB;
        float amax = 0.0f;
        for (int j = 0; j < QB; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t s[2] = {0, 0};
        int8_t *q = r->q + b * QB;
        for (int j = 0; j < QB; j++) {
            const int v = (int)roundf(xb[j] * id);
            q[j] = (int8_t)v;
            s[j / 16] += v;
        }
        r->d[b] = d;
        r->sum[b] = s[0] + s[1];
        r->sum16[2 * b] = s[0], r->sum16[2 * b + 1] = s[1];
    }
}


// ---- Repacked decode layout: 16 rows per vector ----------------------------------------------------
//
// For each group of 16 rows and each 32-element block, the codes of the 16 rows are interleaved so
// that one 64-byte vector holds 4 consecutive k for each row (lane r = row r): vpdpbusd with the
// 4 matching activation bytes broadcast adds one row's 4 products into each lane, and a block's
// integer dot products end in the 16 lanes without any horizontal sum.
//   int4: per block 4 vectors; vector s, lane r, byte j: code(k = 8s + j) | code(k = 8s + 4 + j) << 4.
//   int8: per block 8 vectors; vector s, lane r, byte j: the unsigned code u of k = 4s + j (the
//         stored q + 128 when symmetric, so that w = s (u - 128); the stored u when asymmetric).
//   int5: int8 weights in 32-element groups whose codes fit in 5 bits (GGUF Q5_0 and Q5_K: q in
//         [-16, 15] when symmetric, u in [0, 31] otherwise) take 5 bits instead of 8: the int4
//         vectors of u5 (q + 16, or u) and then one vector of fifth bits, lane r byte j holding
//         bit 4 of code(k = 8s + j) in bit 2s and of code(k = 8s + 4 + j) in bit 2s + 1.
// Then the scales, [groups][blocks][sub][16] in W's storage (fp16 or float32; sub = 32 / group
// size: 2 for group-16 int8), and the mins after them in the same layout. Rows past N are zero.
// A 64-byte header in front records the code width (4, 5 or 8).

enum { R16_HEADER = 64 };

typedef struct {
    long groups, nb;
    int pbits;        // bits per packed code: 4, 5 or 8
    int sub;          // weight groups per 32-element block (1 or 2)
    size_t esz;       // bytes per scale: 2 (fp16) or 4 (float32)
    size_t code_bytes, block_bytes;
} r16_geom;

static r16_geom r16_layout(const lathe_wq_matrix *w, long N, long K, int pbits) {
    r16_geom g = {.groups = (N + 15) / 16, .nb = K / QB, .pbits = pbits, .sub = w->group_size == 16 ? 2 : 1,
                  .esz = w->scales_f32 ? 4 : 2, .block_bytes = 16 * (size_t)(pbits == 4 ? 16 : pbits == 5 ? 20 : 32)};
    g.code_bytes = R16_HEADER + (size_t)g.groups * g.nb * g.block_bytes;
    return g;
}

/// 5 when W is int8 in groups of 32 with every code in 5 bits, else W's own width.
static int r16_packed_bits(const lathe_wq_matrix *w, long N, long K) {
    if (w->bits == 4) return 4;
    if (w->group_size != QB) return 8;
    for (long i = 0; i < N * K; i++) {
        const int u = w->symmetric ? (int)(int8_t)w->q[i] + 16 : (int)w->q[i];
        if (u < 0 || u > 31) return 8;
    }
    return 5;
}

/// The unsigned code u of element k of row `row` in the packed width, and the offset factor
/// of a symmetric group (w = s (u + f)).
static inline int r16_code(const lathe_wq_matrix *w, const uint8_t *row, long k, int pbits) {
    if (w->bits == 4) return (row[k >> 1] >> ((k & 1) * 4)) & 0xF;
    if (!w->symmetric) return row[k];
    return (int)(int8_t)row[k] + (pbits == 5 ? 16 : 128);
}
static inline float r16_sym_offset(int pbits) { return pbits == 4 ? -8.0f : pbits == 5 ? -16.0f : -128.0f; }

size_t lathe_wq_repacked_size(const lathe_wq_matrix *w, long N, long K) {
    const r16_geom g = r16_layout(w, N, K, r16_packed_bits(w, N, K));
    return g.code_bytes + (size_t)g.groups * g.nb * g.sub * 16 * g.esz * (w->symmetric ? 1 : 2);
}

typedef struct {
    const lathe_wq_matrix *w;
    long N, K, ng, row_bytes, groups_per_task;
    int pbits;
    r16_geom geo;
    uint8_t *codes, *scales, *mins;
} r16_repack_ctx;

/// Repacks the row groups of task t (their code, scale and min ranges are contiguous and
/// disjoint from other tasks').
static void r16_repack_task(void *ctx, long t) {
    const r16_repack_ctx *c = (const r16_repack_ctx *)ctx;
    const lathe_wq_matrix *w = c->w;
    const r16_geom geo = c->geo;
    const long nb = geo.nb, g0 = t * c->groups_per_task;
    const long g1 = g0 + c->groups_per_task < geo.groups ? g0 + c->groups_per_task : geo.groups;
    const size_t scale_group = (size_t)nb * geo.sub * 16 * geo.esz;
    memset(c->codes + (size_t)g0 * nb * geo.block_bytes, 0, (size_t)(g1 - g0) * nb * geo.block_bytes);
    memset(c->scales + g0 * scale_group, 0, (size_t)(g1 - g0) * scale_group);
    if (!w->symmetric) memset(c->mins + g0 * scale_group, 0, (size_t)(g1 - g0) * scale_group);
    const long n1 = g1 * 16 < c->N ? g1 * 16 : c->N;
    for (long n = g0 * 16; n < n1; n++) {
        const long g = n / 16, r = n % 16;
        const uint8_t *row = w->q + n * c->row_bytes;
        for (long b = 0; b < nb; b++) {
            uint8_t *blk = c->codes + (g * nb + b) * geo.block_bytes;
            for (int h = 0; h < geo.sub; h++) {
                const long src = n * c->ng + b * geo.sub + h;
                const size_t dst = (((size_t)(g * nb + b) * geo.sub + h) * 16 + r) * geo.esz;
                if (w->scales_f32) {
                    memcpy(c->scales + dst, w->scales_f32 + src, 4);
                    if (!w->symmetric) memcpy(c->mins + dst, w->mins_f32 + src, 4);
                } else {
                    memcpy(c->scales + dst, w->scales + src, 2);
                    if (!w->symmetric) memcpy(c->mins + dst, w->mins + src, 2);
                }
            }
            if (c->pbits == 8) {
                const uint8_t flip = w->symmetric ? 0x80 : 0;  // q + 128 is q ^ 0x80 in two's complement
                for (int kk = 0; kk < QB; kk++) blk[(kk / 4) * 64 + r * 4 + kk % 4] = row[b * QB + kk] ^ flip;
            } else {
                for (int kk = 0; kk < QB; kk++) {
                    const int u = r16_code(w, row, b * QB + kk, c->pbits);
                    const int s = kk / 8, j = kk % 8;
                    blk[s * 64 + r * 4 + (j & 3)] |= (uint8_t)(j < 4 ? (u & 0xF) : (u & 0xF) << 4);
                    if (c->pbits == 5) blk[256 + r * 4 + (j & 3)] |= (uint8_t)(((u >> 4) & 1) << (2 * s + (j < 4 ? 0 : 1)));
                }
            }
        }
    }
}

void lathe_wq_repack(const lathe_wq_matrix *w, long N, long K, uint8_t *out) {
    const int pbits = r16_packed_bits(w, N, K);
    const r16_geom geo = r16_layout(w, N, K, pbits);
    r16_repack_ctx c = {.w = w, .N = N, .K = K, .ng = (K + w->group_size - 1) / w->group_size, .row_bytes = w->bits == 4 ? K / 2 : K,
                        .pbits = pbits, .geo = geo, .codes = out + R16_HEADER, .scales = out + geo.code_bytes};
    c.mins = c.scales + (size_t)geo.groups * geo.nb * geo.sub * 16 * geo.esz;
    memset(out, 0, R16_HEADER);
    const uint32_t header[2] = {0x3151574C /* "LWQ1" */, (uint32_t)pbits};
    memcpy(out, header, sizeof header);
    // About 64 row groups per task (a model loads many matrices; a large one uses every thread).
    c.groups_per_task = 64;
    const long tasks = (geo.groups + c.groups_per_task - 1) / c.groups_per_task;
    if (tasks > 1 && lathe_num_threads() > 1) lathe_parallel_for(tasks, r16_repack_task, &c);
    else
        for (long t = 0; t < tasks; t++) r16_repack_task(&c, t);
}

typedef struct {
    const uint8_t *packed;
    int symmetric;
    r16_geom geo;
    long N;
    const int8_t *q;      // natural order
    const float *d;
    const int32_t *sum, *sum16;
    const float *bias;
    float *y;
} r16_job;

static inline const uint8_t *r16_codes(const r16_job *j, long g, long b) {
    return j->packed + R16_HEADER + (g * j->geo.nb + b) * j->geo.block_bytes;
}
/// The 16 lanes of scales of weight group h of block b of row group g.
static inline const void *r16_scales(const r16_job *j, long g, long b, int h) {
    return j->packed + j->geo.code_bytes + (((size_t)(g * j->geo.nb + b) * j->geo.sub + h) * 16) * j->geo.esz;
}
static inline const void *r16_mins(const r16_job *j, long g, long b, int h) {
    return (const uint8_t *)r16_scales(j, g, b, h) + (size_t)j->geo.groups * j->geo.nb * j->geo.sub * 16 * j->geo.esz;
}
static inline float r16_lane(const r16_job *j, const void *p, int r) {
    return j->geo.esz == 4 ? ((const float *)p)[r] : q8_half(((const uint16_t *)p)[r]);
}
/// The activation sum that weight group h of block b multiplies.
static inline int32_t r16_xsum(const r16_job *j, long b, int h) { return j->geo.sub == 1 ? j->sum[b] : j->sum16[2 * b + h]; }

/// The naive twin: per row, group by group, acc += isum * (s d), off += c * (d sum); y = acc + off.
static void r16_group_scalar(const r16_job *j, long g) {
    const int sub = j->geo.sub, per = QB / sub;
    for (int r = 0; r < 16 && g * 16 + r < j->N; r++) {
        float acc = 0.0f, off = 0.0f;
        for (long b = 0; b < j->geo.nb; b++) {
            const uint8_t *c = r16_codes(j, g, b);
            const int8_t *q = j->q + b * QB;
            for (int h = 0; h < sub; h++) {
                int32_t isum = 0;
                for (int kk = h * per; kk < (h + 1) * per; kk++) {
                    int u;
                    if (j->geo.pbits == 8) {
                        u = c[(kk / 4) * 64 + r * 4 + kk % 4];
                    } else {
                        const int s = kk / 8, jj = kk % 8;
                        const uint8_t byte = c[s * 64 + r * 4 + (jj & 3)];
                        u = jj < 4 ? (byte & 0xF) : (byte >> 4);
                        if (j->geo.pbits == 5) u |= ((c[256 + r * 4 + (jj & 3)] >> (2 * s + (jj < 4 ? 0 : 1))) & 1) << 4;
                    }
                    isum += u * q[kk];
                }
                const float s = r16_lane(j, r16_scales(j, g, b, h), r);
                const float cc = j->symmetric ? s * r16_sym_offset(j->geo.pbits) : r16_lane(j, r16_mins(j, g, b, h), r);
                acc = fmaf((float)isum, s * j->d[b], acc);
                off = fmaf(cc, j->d[b] * (float)r16_xsum(j, b, h), off);
            }
        }
        const long n = g * 16 + r;
        j->y[n] = acc + off + (j->bias ? j->bias[n] : 0.0f);
    }
}

#if defined(__x86_64__)
static inline Q8_VNNI __m512 r16_load16(const r16_job *j, const void *p) {
    return j->geo.esz == 4 ? _mm512_loadu_ps(p) : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/// The fifth-bit vector shifted so that bit 4 - n of each byte lands on bit 4 (other bits are masked
/// off after; |n| <= 4 keeps bits of the neighbouring byte away from bit 4).
#define R16_FIFTH(shift, v, n) ((n) >= 0 ? shift##_slli_epi16((v), (n)) : shift##_srli_epi16((v), -(n)))

/// Integer dot products of one block of 16 rows with the block's 32 activation bytes, per code
/// width; two accumulators each (half-length vpdpbusd dependency chains). `ahead` is prefetched.
static inline Q8_VNNI __m512i r16_vnni4(const uint8_t *c, const int32_t *q) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    for (int s = 0; s < 4; s++) {
        const __m512i v = _mm512_loadu_si512(c + s * 64);
        a = _mm512_dpbusd_epi32(a, _mm512_and_si512(v, low), _mm512_set1_epi32(q[2 * s]));
        b = _mm512_dpbusd_epi32(b, _mm512_and_si512(_mm512_srli_epi16(v, 4), low), _mm512_set1_epi32(q[2 * s + 1]));
    }
    return _mm512_add_epi32(a, b);
}

static inline Q8_VNNI __m512i r16_vnni5(const uint8_t *c, const int32_t *q) {
    const __m512i low = _mm512_set1_epi8(0x0F), five = _mm512_set1_epi8(0x1F);
    const __m512i hv = _mm512_loadu_si512(c + 256);
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
#define R16_VNNI5(s)                                                                                                       \
    do {                                                                                                                   \
        const __m512i v = _mm512_loadu_si512(c + (s) * 64);                                                               \
        /* low ? v : fifth, then the 5 low bits */                                                                     \
        const __m512i lo = _mm512_ternarylogic_epi32(v, R16_FIFTH(_mm512, hv, 4 - 2 * (s)), low, 0xE4);                   \
        const __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), R16_FIFTH(_mm512, hv, 3 - 2 * (s)), low, 0xE4); \
        a = _mm512_dpbusd_epi32(a, _mm512_and_si512(lo, five), _mm512_set1_epi32(q[2 * (s)]));                             \
        b = _mm512_dpbusd_epi32(b, _mm512_and_si512(hi, five), _mm512_set1_epi32(q[2 * (s) + 1]));                         \
    } while (0)
    R16_VNNI5(0);
    R16_VNNI5(1);
    R16_VNNI5(2);
    R16_VNNI5(3);
#undef R16_VNNI5
    return _mm512_add_epi32(a, b);
}

/// int8: the two 16-element halves separately (group-16 scales) or summed.
static inline Q8_VNNI void r16_vnni8(const uint8_t *c, const int32_t *q, __m512i *first, __m512i *second) {
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512(), a2 = _mm512_setzero_si512(), b2 = _mm512_setzero_si512();
    for (int s = 0; s < 4; s += 2) {
        a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(c + s * 64), _mm512_set1_epi32(q[s]));
        a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(c + s * 64 + 64), _mm512_set1_epi32(q[s + 1]));
        b = _mm512_dpbusd_epi32(b, _mm512_loadu_si512(c + s * 64 + 256), _mm512_set1_epi32(q[s + 4]));
        b2 = _mm512_dpbusd_epi32(b2, _mm512_loadu_si512(c + s * 64 + 320), _mm512_set1_epi32(q[s + 5]));
    }
    *first = _mm512_add_epi32(a, a2), *second = _mm512_add_epi32(b, b2);
}

/// acc += isum (s d), off += c (d sum) for the 16 lanes of weight group h of block b.
static inline Q8_VNNI void r16_vnni_scale(const r16_job *j, long g, long b, int h, __m512i isum, __m512 *acc, __m512 *off) {
    const __m512 sc = r16_load16(j, r16_scales(j, g, b, h));
    const __m512 cc = j->symmetric ? _mm512_mul_ps(sc, _mm512_set1_ps(r16_sym_offset(j->geo.pbits))) : r16_load16(j, r16_mins(j, g, b, h));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(sc, _mm512_set1_ps(j->d[b])), *acc);
    *off = _mm512_fmadd_ps(cc, _mm512_set1_ps(j->d[b] * (float)r16_xsum(j, b, h)), *off);
}

/// Bytes ahead of the current block that each step prefetches (the rows of a group are one
/// sequential stream; the hardware prefetcher alone leaves one thread waiting on memory).
/// Measured on Gemma 3 270M / SmolLM2 decode at 1 thread: 2 KB 124 / 243 tokens/s, 4 KB 133 /
/// 262, 8 KB 97-113 / 275.
enum { R16_PREFETCH = 4096 };

static Q8_VNNI void r16_group_vnni(const r16_job *j, long g) {
    __m512 acc = _mm512_setzero_ps(), off = _mm512_setzero_ps();
    const long nb = j->geo.nb;
    const size_t bb = j->geo.block_bytes;
    const int32_t *q = (const int32_t *)j->q;
    const uint8_t *c = r16_codes(j, g, 0);
    switch (j->geo.pbits * 10 + j->geo.sub) {
    case 41:
        for (long b = 0; b < nb; b++, c += bb) {
            for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)c + R16_PREFETCH + o, _MM_HINT_T0);
            r16_vnni_scale(j, g, b, 0, r16_vnni4(c, q + 8 * b), &acc, &off);
        }
        break;
    case 51:
        for (long b = 0; b < nb; b++, c += bb) {
            for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)c + R16_PREFETCH + o, _MM_HINT_T0);
            r16_vnni_scale(j, g, b, 0, r16_vnni5(c, q + 8 * b), &acc, &off);
        }
        break;
    case 81:
        for (long b = 0; b < nb; b++, c += bb) {
            for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)c + R16_PREFETCH + o, _MM_HINT_T0);
            __m512i first, second;
            r16_vnni8(c, q + 8 * b, &first, &second);
            r16_vnni_scale(j, g, b, 0, _mm512_add_epi32(first, second), &acc, &off);
        }
        break;
    default:  // int8 in groups of 16
        for (long b = 0; b < nb; b++, c += bb) {
            for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)c + R16_PREFETCH + o, _MM_HINT_T0);
            __m512i first, second;
            r16_vnni8(c, q + 8 * b, &first, &second);
            r16_vnni_scale(j, g, b, 0, first, &acc, &off);
            r16_vnni_scale(j, g, b, 1, second, &acc, &off);
        }
        break;
    }
    float y[16];
    _mm512_storeu_ps(y, _mm512_add_ps(acc, off));
    for (int r = 0; r < 16 && g * 16 + r < j->N; r++) j->y[g * 16 + r] = y[r] + (j->bias ? j->bias[g * 16 + r] : 0.0f);
}

static inline Q8_AVX2 __m256 r16_load8(const r16_job *j, const void *p, int h) {
    return j->geo.esz == 4 ? _mm256_loadu_ps((const float *)p + 8 * h)
                           : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + 8 * h)));
}

/// AVX2: 8 rows per ymm (two halves of the 16-row group); maddubs + madd give each lane's 4
/// products (pairs <= 2 * 255 * 127 would overflow int16 for int8 codes, so int8 takes the
/// sign trick on the codes minus 128 and adds 128 * sum(q) back).
static Q8_AVX2 void r16_group_avx2(const r16_job *j, long g) {
    const __m256i low = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10), ones = _mm256_set1_epi16(1);
    const __m256i bias128 = _mm256_set1_epi8((char)0x80);
    const __m256 k = _mm256_set1_ps(r16_sym_offset(j->geo.pbits));
    const int sub = j->geo.sub, per_vectors = 8 / sub;
    for (int half = 0; half < 2; half++) {
        __m256 acc = _mm256_setzero_ps(), off = _mm256_setzero_ps();
        for (long b = 0; b < j->geo.nb; b++) {
            const uint8_t *c = r16_codes(j, g, b) + half * 32;
            if (half == 0)
                for (size_t o = 0; o < j->geo.block_bytes; o += 64) _mm_prefetch((const char *)c + R16_PREFETCH + o, _MM_HINT_T0);
            const int32_t *q = (const int32_t *)(j->q + b * QB);
            __m256i isum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            if (j->geo.pbits == 4) {
                for (int s = 0; s < 4; s++) {
                    const __m256i v = _mm256_loadu_si256((const __m256i *)(c + s * 64));
                    const __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(v, low), _mm256_set1_epi32(q[2 * s]));
                    const __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), _mm256_set1_epi32(q[2 * s + 1]));
                    isum[0] = _mm256_add_epi32(isum[0], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
                }
            } else if (j->geo.pbits == 5) {
                // Codes up to 31: pairs of products stay within int16 (2 * 31 * 127).
                const __m256i hv = _mm256_loadu_si256((const __m256i *)(c + 256));
#define R16_AVX2_5(s)                                                                                                     \
    do {                                                                                                                  \
        const __m256i v = _mm256_loadu_si256((const __m256i *)(c + (s) * 64));                                           \
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, low), _mm256_and_si256(R16_FIFTH(_mm256, hv, 4 - 2 * (s)), bit4)); \
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low),                             \
                                           _mm256_and_si256(R16_FIFTH(_mm256, hv, 3 - 2 * (s)), bit4));                   \
        const __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_set1_epi32(q[2 * (s)]));                                       \
        const __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_set1_epi32(q[2 * (s) + 1]));                                   \
        isum[0] = _mm256_add_epi32(isum[0], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));                           \
    } while (0)
                R16_AVX2_5(0);
                R16_AVX2_5(1);
                R16_AVX2_5(2);
                R16_AVX2_5(3);
#undef R16_AVX2_5
            } else {
                for (int s = 0; s < 8; s++) {
                    const __m256i sv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(c + s * 64)), bias128);  // u - 128
                    const __m256i xv = _mm256_set1_epi32(q[s]);
                    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(sv, sv), _mm256_sign_epi8(xv, sv));
                    isum[s / per_vectors] = _mm256_add_epi32(isum[s / per_vectors], _mm256_madd_epi16(p, ones));
                }
                for (int h = 0; h < sub; h++) isum[h] = _mm256_add_epi32(isum[h], _mm256_set1_epi32(128 * r16_xsum(j, b, h)));
            }
            for (int h = 0; h < sub; h++) {
                const __m256 sc = r16_load8(j, r16_scales(j, g, b, h), half);
                const __m256 cc = j->symmetric ? _mm256_mul_ps(sc, k) : r16_load8(j, r16_mins(j, g, b, h), half);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h]), _mm256_mul_ps(sc, _mm256_set1_ps(j->d[b])), acc);
                off = _mm256_fmadd_ps(cc, _mm256_set1_ps(j->d[b] * (float)r16_xsum(j, b, h)), off);
            }
        }
        float y[8];
        _mm256_storeu_ps(y, _mm256_add_ps(acc, off));
        for (int r = 0; r < 8 && g * 16 + half * 8 + r < j->N; r++) {
            const long n = g * 16 + half * 8 + r;
            j->y[n] = y[r] + (j->bias ? j->bias[n] : 0.0f);
        }
    }
}
#endif

typedef void (*r16_fn)(const r16_job *, long);
typedef struct { const r16_job *j; r16_fn f; long per_task; } r16_ctx;

static void r16_task(void *ctx, long t) {
    const r16_ctx *c = (const r16_ctx *)ctx;
    const long g0 = t * c->per_task, g1 = g0 + c->per_task < c->j->geo.groups ? g0 + c->per_task : c->j->geo.groups;
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
    if (K <= 0 || K % QB) return 0;
    if (w->group_size == QB) return w->bits == 4 || w->bits == 8;
    return w->group_size == 16 && w->bits == 8;
}

/// Several matrices over the same input in one parallel loop: the row groups of all of them are
/// one range of tasks (fused q/k/v and gate/up projections: one activation quantization and one
/// barrier instead of one per matrix). With M rows, each task runs a row group for every row of X
/// in turn, so the group's codes are read from memory once for all M rows (batched decoding) and
/// each row's result is the bits it has alone.
typedef struct { const r16_job *jobs; const long *first; int count; long rows; r16_fn f; long per_task, total; } r16_multi_ctx;

static void r16_multi_task(void *ctx, long t) {
    const r16_multi_ctx *c = (const r16_multi_ctx *)ctx;
    const long g0 = t * c->per_task, g1 = g0 + c->per_task < c->total ? g0 + c->per_task : c->total;
    int i = 0;
    for (long g = g0; g < g1; g++) {
        while (g >= c->first[i + 1]) i++;
        for (long m = 0; m < c->rows; m++) c->f(&c->jobs[(size_t)i * c->rows + m], g - c->first[i]);
    }
}

static r16_fn r16_pick(void) {
#if defined(__x86_64__)
    switch (lathe_active_isa()) {
    case LATHE_ISA_AVX512: return lathe_has_avx512_vnni() ? r16_group_vnni : r16_group_avx2;
    case LATHE_ISA_AVX2: return r16_group_avx2;
    default: break;
    }
#endif
    return r16_group_scalar;
}

void lathe_wq_gemv_repacked_many(int count, long M, const long *N, long K, const float *X, long ldx, const uint8_t *const *packed,
                                 const lathe_wq_matrix *const *w, const float *const *bias, float *const *Y, const long *ldy) {
    enum { MAX = 8 };
    if (count <= 0 || count > MAX || M <= 0 || K <= 0 || K % QB) return;
    for (int i = 0; i < count; i++)
        if (N[i] <= 0 || !lathe_wq_gemv_supported(w[i], K)) return;
    const long nb = K / QB;
    const size_t qbytes = ((size_t)K + 63) & ~(size_t)63;
    // The quantized rows of X: [M][K] codes, [M][nb] scales, [M][3 nb] sums.
    int8_t *q = (int8_t *)aligned_alloc(64, qbytes * (size_t)M);
    float *d = (float *)calloc((size_t)nb * (size_t)M, sizeof(float));
    int32_t *s = (int32_t *)calloc((size_t)nb * 3 * (size_t)M, sizeof(int32_t));
    r16_job *jobs = (r16_job *)malloc(sizeof(r16_job) * (size_t)count * (size_t)M);
    if (!q || !d || !s || !jobs) {
        free(q), free(d), free(s), free(jobs);
        return;
    }
    const r16_fn f = r16_pick();
    for (long m = 0; m < M; m++) {
        q8_row x = {.q = q + m * qbytes, .d = d + m * nb, .sum = s + m * 3 * nb, .sum16 = s + m * 3 * nb + nb};
        quantize_x(X + m * ldx, nb, &x);
    }
    long first[MAX + 1];
    first[0] = 0;
    double work = 0;
    for (int i = 0; i < count; i++) {
        uint32_t header[2];
        memcpy(header, packed[i], sizeof header);
        const r16_geom geo = r16_layout(w[i], N[i], K, (int)header[1]);
        for (long m = 0; m < M; m++)
            jobs[(size_t)i * M + m] = (r16_job){.packed = packed[i], .symmetric = w[i]->symmetric, .geo = geo, .N = N[i],
                                                .q = q + m * qbytes, .d = d + m * nb, .sum = s + m * 3 * nb,
                                                .sum16 = s + m * 3 * nb + nb, .bias = bias[i], .y = Y[i] + m * ldy[i]};
        first[i + 1] = first[i] + geo.groups;
        work += (double)N[i] * (double)K * (double)M;
    }
    const long total = first[count];
    const int threads = lathe_num_threads();
    r16_multi_ctx c = {.jobs = jobs, .first = first, .count = count, .rows = M, .f = f, .per_task = total, .total = total};
    if (threads <= 1 || work < 65536.0) {
        r16_multi_task(&c, 0);
    } else {
        const long tasks = total < 4L * threads ? total : 4L * threads;
        c.per_task = (total + tasks - 1) / tasks;
        lathe_parallel_for((total + c.per_task - 1) / c.per_task, r16_multi_task, &c);
    }
    free(q), free(d), free(s), free(jobs);
}

void lathe_wq_gemv_repacked(long M, long N, long K, const float *X, long ldx, const uint8_t *packed, const lathe_wq_matrix *w,
                            const float *bias, float *Y, long ldy) {
    lathe_wq_gemv_repacked_many(1, M, &N, K, X, ldx, &packed, &w, &bias, &Y, &ldy);
}
