// Quantized inference kernels: int8 GEMM (u8 activations x s8 weights) with a fused
// requantisation epilogue, and weight-only int8/int4 group-wise GEMV/GEMM.
//
// All matrices are row-major; shapes are given in comments as [rows, cols]. Variants are
// chosen at run time from lathe_active_isa() (AVX-512 VNNI, AVX2, scalar). Each kernel has a
// naive Swift reference in LatheCompress (Kernels/QuantReference.swift); the tests compare the
// int8 paths bit for bit and the weight-only paths within float rounding.
#ifndef LATHE_QUANT_H
#define LATHE_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- int8 GEMM -------------------------------------------------------------------------------
//
//   acc[m,n] = sum_k A[m,k] * W[n,k] - za * rowsum_w[n]           (int32, exact)
//   out[m,n] = fmaf((float)acc[m,n], a_scale * w_scale[n], bias[n])  (bias 0 if none; relu)
//   out_q    = clamp(rint(clamp(out * out_inv_scale, +-2^24)) + out_zero_point, 0, 255)
//
// A is uint8 (affine, zero point za); int8 activations are uint8 with za + 128 (flip the top
// bit). W is int8, symmetric per output channel, packed once by lathe_qgemm_pack_s8 into
//   packed[((n/16) * Kp/4 + k/4) * 64 + (n%16) * 4 + k%4] = W[n,k]
// with N padded to Np = ceil(N/16)*16 and K to Kp = ceil(K/4)*4 (zeros): one 64-byte vector
// holds 4 consecutive k of 16 output channels, the operand of VPDPBUSD. The same layout serves
// every ISA. Accumulators are int32, so K <= 65536 (255 * 128 * 65536 < 2^31).
// Results are identical for every ISA and thread count (integer sums, same epilogue).

/// Bytes of the packed weight buffer for W [N,K].
size_t lathe_qgemm_packed_size(long N, long K);
/// Packs W [N,K] (row stride ldw) and computes rowsum[n] = sum_k W[n,k] ([N] int32).
void lathe_qgemm_pack_s8(long N, long K, const int8_t *W, long ldw, int8_t *packed,
                         int32_t *rowsum);
/// The inverse of the packing: W [N,K] (row stride ldw) from the packed buffer.
void lathe_qgemm_unpack_s8(long N, long K, const int8_t *packed, int8_t *W, long ldw);

/// What to do with the int32 accumulators (any output pointer may be NULL).
typedef struct {
    int32_t a_zero_point;     // za
    float a_scale;            // scale of A
    const float *w_scale;     // [N] per-channel weight scales
    const float *bias;        // [N] or NULL
    int relu;                 // clamp the float result at 0 before writing/requantising
    float *out;               // [M,N] float32, row stride ld_out
    long ld_out;
    uint8_t *out_q;           // [M,N] uint8 requantised, row stride ld_out_q
    long ld_out_q;
    float out_inv_scale;      // 1 / output scale
    int32_t out_zero_point;
    int32_t *out_acc;         // [M,N] corrected int32 accumulators (tests), row stride ld_acc
    long ld_acc;
} lathe_qgemm_epilogue;

/// C = epilogue(A[M,K] (u8, row stride lda) x W[N,K]^T (packed)). Multithreaded.
void lathe_qgemm_u8s8(long M, long N, long K, const uint8_t *A, long lda, const int8_t *packed,
                      const int32_t *rowsum, const lathe_qgemm_epilogue *ep);

/// Name of the int8 GEMM variant the active ISA uses ("avx512-vnni", "avx2", "scalar").
const char *lathe_qgemm_variant(void);

// ---- Activation helpers -------------------------------------------------------------------------

/// q[i] = clamp(rint(clamp(x[i] * inv_scale, +-2^24)) + zero_point, 0, 255).
void lathe_quantize_u8(const float *x, long n, float inv_scale, int32_t zero_point, uint8_t *q);
/// Smallest and largest of x[0..n) (n >= 1; NaNs are skipped unless all are NaN).
void lathe_minmax_f32(const float *x, long n, float *min_out, float *max_out);
/// Unfolds x [B, C, H, W] (uint8) into cols [B*OH*OW, C*KH*KW] (row per output pixel, column
/// (c, ki, kj) as in the weight [O, C, KH, KW]); taps outside the image read `pad` (the zero
/// point, so padding means 0.0).
void lathe_im2col_u8(const uint8_t *x, long B, long C, long H, long W, long KH, long KW,
                     long SH, long SW, long PH, long PW, long DH, long DW, long OH, long OW,
                     uint8_t pad, uint8_t *cols);
/// The channels-last form: x [B, H, W, C] (uint8) into cols [B*OH*OW, KH*KW*C], column
/// (ki, kj, c): each tap copies C contiguous bytes (or writes `pad`). Weights must be ordered
/// [O, KH, KW, C] to match.
void lathe_im2col_nhwc_u8(const uint8_t *x, long B, long C, long H, long W, long KH, long KW,
                          long SH, long SW, long PH, long PW, long DH, long DW, long OH, long OW,
                          uint8_t pad, uint8_t *cols);
/// dst[c * rows + r] = src[r * cols + c] for `batches` consecutive [rows, cols] matrices
/// (uint8 and float32), in cache blocks.
void lathe_transpose_u8(const uint8_t *src, long batches, long rows, long cols, uint8_t *dst);
void lathe_transpose_f32(const float *src, long batches, long rows, long cols, float *dst);

// ---- Weight-only group-wise int8 / int4 ---------------------------------------------------------
//
// W [N,K] is cut along K into groups of group_size (a multiple of 16; the last group of a row
// may be shorter). Group g of row n has a scale s and, when asymmetric, a min m, stored as fp16
// (scales, mins) or, when scales_f32 is set, as float32 (scales_f32, mins_f32: GGUF's K-quants,
// whose scales d * sc are not fp16 values):
//   symmetric int8 : q int8 in [-127, 127],         w = s * q
//   symmetric int4 : u in [0, 15] (q = u - 8),       w = fmaf(u, s, -8 s)
//   asymmetric     : u uint8 [0, 255] or u4 [0, 15], w = fmaf(u, s, m)
// (every path dequantises with these exact float operations.) int4 codes are packed two per
// byte, low nibble first: byte j of a row holds k = 2j (bits 0-3) and k = 2j+1 (bits 4-7);
// a row takes ceil(K/2) bytes. int8 rows take K bytes.
typedef struct {
    int bits;                 // 8 or 4
    int group_size;           // multiple of 16
    int symmetric;            // 1: no mins
    const uint8_t *q;         // codes, [N, K] bytes (int8) or [N, ceil(K/2)] (int4)
    const uint16_t *scales;   // fp16 [N, ceil(K/group_size)]
    const uint16_t *mins;     // fp16 [N, ceil(K/group_size)], asymmetric only
    const float *scales_f32;  // float32 [N, ceil(K/group_size)] instead of scales, or NULL
    const float *mins_f32;    // float32 instead of mins (asymmetric, with scales_f32)
} lathe_wq_matrix;

/// Dequantises rows [n0, n1) of W to out [n1-n0, K] float32 (row stride ldo).
void lathe_wq_dequantize(const lathe_wq_matrix *w, long N, long K, long n0, long n1, float *out,
                         long ldo);
/// Y[M,N] = X[M,K] W^T (+ bias[N]). Small M: fused dequantise-and-dot per row (GEMV);
/// larger M: W dequantised a block of rows at a time and multiplied with lathe_sgemm.
void lathe_wq_gemm(long M, long N, long K, const float *X, long ldx, const lathe_wq_matrix *w,
                   const float *bias, float *Y, long ldy);

/// Bytes of W (K a multiple of 32; group-32 int4 or int8, or group-16 int8) repacked for
/// lathe_wq_gemv_repacked: 16 rows interleaved per vector, then the scales (and mins) in W's
/// storage (fp16 or float32).
size_t lathe_wq_repacked_size(const lathe_wq_matrix *w, long N, long K);
void lathe_wq_repack(const lathe_wq_matrix *w, long N, long K, uint8_t *out);
/// Y[M,N] = X[M,K] W^T (+ bias) on a repacked W, with X quantized to int8 per 32-element block
/// (as llama.cpp's Q8 activations) and exact integer block dot products, 16 rows per vector (no
/// horizontal sums); the float part runs group by group per row on every ISA (the same bits
/// everywhere). The decode path of quantized language models. Each 16-row group of W is read once
/// for all M rows of X (batched decoding), and each row of Y has the bits it has with M = 1. `w`
/// gives the format only (bits, group size, symmetry, scale storage); its buffers are not read.
void lathe_wq_gemv_repacked(long M, long N, long K, const float *X, long ldx, const uint8_t *packed,
                            const lathe_wq_matrix *w, const float *bias, float *Y, long ldy);
/// lathe_wq_gemv_repacked for `count` (at most 8) matrices of the same K over the same X, in one
/// parallel loop (Y[i] = X W[i]^T + bias[i], row stride ldy[i]); the same bits as one call each.
void lathe_wq_gemv_repacked_many(int count, long M, const long *N, long K, const float *X, long ldx,
                                 const uint8_t *const *packed, const lathe_wq_matrix *const *w,
                                 const float *const *bias, float *const *Y, const long *ldy);
/// Whether W can be repacked for lathe_wq_gemv_repacked (K a multiple of 32; group size 32 with
/// int4 or int8, or group size 16 with int8).
int lathe_wq_gemv_supported(const lathe_wq_matrix *w, long K);
/// "avx512-vnni", "avx2" or "scalar": the path lathe_wq_gemv_repacked takes at the active ISA.
const char *lathe_wq_gemv_variant(void);

#ifdef __cplusplus
}
#endif
#endif
