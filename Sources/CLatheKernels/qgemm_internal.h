// Private to CLatheKernels: the int8 GEMM micro-kernel interface shared by qgemm*.c.
#ifndef LATHE_QGEMM_INTERNAL_H
#define LATHE_QGEMM_INTERNAL_H

#include "lathe_quant.h"

enum { QG_NBMAX = 4, QG_TILE_N = 64 };

/// Whether the CPU has AVX512_VNNI (vpdpbusd), read once from CPUID (0 off x86).
int lathe_has_avx512_vnni(void);  // up to 4 blocks of 16 output channels per tile

/// Raw int32 tile: tile[i*64 + j] = sum_{k<K} a[i*lda + k] * W[n0 + j, k] for i < mr (<= the
/// kernel's MR) and j < nb*16 (nb <= 4 blocks of the packed layout, starting at wp, each block
/// wstride bytes apart). Reads a only within [0, K) of each row.
typedef void (*lathe_qukr_fn)(long K, const uint8_t *a, long lda, long mr, const int8_t *wp,
                              long wstride, long nb, int32_t *tile);
/// Applies the epilogue to one row m of the tile: columns [n0, n0 + nn).
typedef void (*lathe_qepi_fn)(const int32_t *acc, long m, long n0, long nn, const int32_t *rowsum,
                              const lathe_qgemm_epilogue *ep);

typedef struct {
    int mr;
    lathe_qukr_fn ukr;
    lathe_qepi_fn epi;
    const char *name;
} lathe_qgemm_kernel;

#if defined(__x86_64__)
extern const lathe_qgemm_kernel lathe_qgemm_kernel_vnni;
extern const lathe_qgemm_kernel lathe_qgemm_kernel_qavx2;
#endif

/// The 4 bytes a[k..k+4) as a little-endian word, zero-filled past K (tail of a row).
static inline uint32_t lathe_q_load4(const uint8_t *a, long k, long K) {
    uint32_t v = 0;
    if (k + 4 <= K) {
        __builtin_memcpy(&v, a + k, 4);
    } else {
        for (long t = 0; k + t < K; t++) v |= (uint32_t)a[k + t] << (8 * t);
    }
    return v;
}

#endif
