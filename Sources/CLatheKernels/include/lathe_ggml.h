// GGML block quantisation for writing GGUF files: the encoders of ggml's reference functions
// (`quantize_row_*_ref` in ggml's src/ggml-quants.c), reimplemented so that their blocks are
// byte-identical to ggml's (and, for the legacy 32-element types, to gguf-py's
// `gguf.quants.quantize`).
//
// Types are ggml's `ggml_type` ids. Every kernel here has a naive Swift twin in LatheIO
// (GGMLType+QuantizeReference.swift); the tests compare the two, and both against fixtures
// written by gguf-py and llama.cpp's llama-quantize.
#ifndef LATHE_GGML_H
#define LATHE_GGML_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// ggml type ids Lathe writes.
enum {
    LATHE_GGML_F32 = 0,
    LATHE_GGML_F16 = 1,
    LATHE_GGML_Q4_0 = 2,
    LATHE_GGML_Q4_1 = 3,
    LATHE_GGML_Q5_0 = 6,
    LATHE_GGML_Q5_1 = 7,
    LATHE_GGML_Q8_0 = 8,
    LATHE_GGML_Q4_K = 12,
    LATHE_GGML_Q5_K = 13,
    LATHE_GGML_Q6_K = 14,
    LATHE_GGML_BF16 = 30,
};

/// 1 if lathe_ggml_quantize writes `type`, else 0.
int lathe_ggml_can_quantize(int type);

/// Quantises one row x[n] into blocks of `type` at y (n a multiple of the block size: 1 for
/// F32/F16/BF16, 32 for Q4_0..Q8_0, 256 for the K types). Single-threaded. Returns the bytes
/// written, or 0 if the type is not supported or n is not a whole number of blocks.
size_t lathe_ggml_quantize_row(int type, const float *x, void *y, long n);

/// Quantises nrows rows of n_per_row floats (x, row-major, contiguous) into y, rows spread over
/// the thread pool (the bytes do not depend on the thread count). Returns the bytes written
/// (nrows * row bytes), or 0 as lathe_ggml_quantize_row does.
size_t lathe_ggml_quantize(int type, const float *x, void *y, long nrows, long n_per_row);

#ifdef __cplusplus
}
#endif
#endif
