// Machine limits for the benchmarks: fp32 FMA peak and memory bandwidth, measured.
#ifndef LATHE_MACHINE_H
#define LATHE_MACHINE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// fp32 FMA throughput in GFLOP/s (one FMA = 2 FLOP) of `threads` threads (own pthreads,
/// not the pool), each running independent FMA chains for about `seconds`, with the widest
/// vectors of the ISA the kernels use (lathe_active_isa()). Returns the sum over threads.
double lathe_measure_fma_peak(double seconds, int threads);

/// The vector width, in floats, that lathe_measure_fma_peak used (16, 8, 4 or 1).
int lathe_fma_peak_lanes(void);

typedef enum {
    LATHE_STREAM_COPY = 0,   // c[i] = a[i]            (8 bytes per element)
    LATHE_STREAM_TRIAD = 1,  // a[i] = b[i] + s * c[i] (12 bytes per element)
} lathe_stream_kind;

/// STREAM-like bandwidth in GB/s (10^9 bytes, counted as STREAM does: bytes read plus bytes
/// written, no write-allocate traffic) over arrays of `bytes_per_array` bytes each, split over
/// `threads` pthreads, best of passes lasting about `seconds` in total. Returns -1 if the
/// arrays cannot be allocated.
double lathe_measure_bandwidth(int kind, size_t bytes_per_array, int threads, double seconds);

#ifdef __cplusplus
}
#endif
/// Makes stdout line-buffered (progress reaches a pipe or log file as it is printed).
void lathe_line_buffer_stdout(void);

#endif
