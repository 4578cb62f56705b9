// Standalone test + benchmark for lathe_sgemm (no SwiftPM needed).
//
// Build (from the package root), either `make -C bench/c` or
//   S=Sources/CLatheKernels; clang -O2 -I $S/include -I $S $S/cpu.c $S/threadpool.c $S/gemm.c
//     $S/gemm_avx512.c $S/gemm_avx2.c $S/gemm_neon.c bench/c/gemm_bench.c -o /tmp/gemm_bench
//     -lpthread -lm
// Usage:
//   gemm_bench test                         correctness on awkward shapes, every ISA, + determinism
//   gemm_bench bench [--threads N] [--sizes 256,512,1024x128x512] [--trans nn,nt,tn,tt]
//                    [--reps R] [--isa avx512]
//   Prints one JSON line per case: {"m","n","k","transA","transB","threads","gflops","median"}
#define _POSIX_C_SOURCE 200809L
#include "lathe_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {  // uniform in [-1, 1)
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f;
}
static float *alloc_fill(long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++) p[i] = frand();
    return p;
}

// ---- correctness ------------------------------------------------------------------------------

static int g_fail = 0, g_cases = 0;

/// One case: compare lathe_sgemm with the naive kernel. Error is measured relative to
/// |alpha| * sum_k |a||b| + |beta c| (the natural scale of rounding error), per element.
static void check_case(int tA, int tB, long M, long N, long K, long pad, float alpha, float beta,
                       int nan_c) {
    long arows = tA ? K : M, acols = tA ? M : K;
    long brows = tB ? N : K, bcols = tB ? K : N;
    long lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
    float *A = alloc_fill(arows * lda), *B = alloc_fill(brows * ldb);
    float *C0 = alloc_fill(M * ldc);
    if (nan_c) for (long i = 0; i < M * ldc; i++) C0[i] = NAN;
    float *C1 = malloc((size_t)(M * ldc > 0 ? M * ldc : 1) * sizeof(float));
    float *C2 = malloc((size_t)(M * ldc > 0 ? M * ldc : 1) * sizeof(float));
    memcpy(C1, C0, (size_t)(M * ldc) * sizeof(float));
    memcpy(C2, C0, (size_t)(M * ldc) * sizeof(float));
    lathe_sgemm_naive(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
    lathe_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C2, ldc);
    double worst = 0;
    int bad = 0;
    for (long i = 0; i < M && !bad; i++)
        for (long j = 0; j < ldc; j++) {
            float got = C2[i * ldc + j];
            if (j >= N) {  // padding must be untouched (NaN compare via memcmp)
                if (memcmp(&got, &C0[i * ldc + j], 4)) { bad = 1; break; }
                continue;
            }
            double scale = 0;
            for (long k = 0; k < K; k++) {
                float a = tA ? A[k * lda + i] : A[i * lda + k];
                float b = tB ? B[j * ldb + k] : B[k * ldb + j];
                scale += fabs((double)a * b);
            }
            scale = fabs(alpha) * scale + (beta != 0 ? fabs(beta * C0[i * ldc + j]) : 0) + 1e-30;
            double e = fabs((double)got - C1[i * ldc + j]) / scale;
            if (!(e <= 2e-6 * (K + 4))) { bad = 1; worst = e; break; }  // also catches NaN
            if (e > worst) worst = e;
        }
    g_cases++;
    if (bad) {
        g_fail++;
        if (g_fail < 20)
            printf("FAIL isa=%s tA=%d tB=%d M=%ld N=%ld K=%ld pad=%ld alpha=%g beta=%g nanC=%d err=%g\n",
                   lathe_isa_name(lathe_active_isa()), tA, tB, M, N, K, pad, alpha, beta, nan_c,
                   worst);
    }
    free(A); free(B); free(C0); free(C1); free(C2);
}

/// Same inputs, different thread counts: the bits must match.
static void check_determinism(int tA, int tB, long M, long N, long K) {
    long lda = tA ? M : K, ldb = tB ? K : N;
    float *A = alloc_fill(M * K), *B = alloc_fill(K * N);
    float *ref = malloc((size_t)(M * N) * sizeof(float)), *C = malloc((size_t)(M * N) * sizeof(float));
    int counts[] = {1, 2, 3, 4, 7};
    for (int t = 0; t < 5; t++) {
        lathe_set_num_threads(counts[t]);
        float *dst = t == 0 ? ref : C;
        for (long i = 0; i < M * N; i++) dst[i] = 0.5f;
        lathe_sgemm(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, 0.7f, dst, N);
        if (t > 0 && memcmp(ref, C, (size_t)(M * N) * sizeof(float))) {
            g_fail++;
            printf("NONDETERMINISTIC isa=%s tA=%d tB=%d %ldx%ldx%ld threads=%d\n",
                   lathe_isa_name(lathe_active_isa()), tA, tB, M, N, K, counts[t]);
        }
    }
    g_cases++;
    free(A); free(B); free(ref); free(C);
}

// ---- thread pool --------------------------------------------------------------------------------

#include <pthread.h>
#include <stdatomic.h>

typedef struct { _Atomic long sum; _Atomic long hits[1000]; int nested; } pool_ctx;

static void inner_task(void *p, long i) { atomic_fetch_add(&((pool_ctx *)p)->sum, i); }
static void outer_task(void *p, long i) {
    pool_ctx *c = p;
    atomic_fetch_add(&c->hits[i], 1);
    if (c->nested) lathe_parallel_for(10, inner_task, c);  // nested: must run inline
    if (c->nested && i == 3) lathe_set_num_threads(2);     // resize from inside a task
}

static int pool_check(int n, int nested) {
    pool_ctx *c = calloc(1, sizeof *c);
    c->nested = nested;
    lathe_parallel_for(n, outer_task, c);
    int bad = 0;
    for (int i = 0; i < n; i++) bad |= atomic_load(&c->hits[i]) != 1;
    if (nested && atomic_load(&c->sum) != (long)n * 45) bad = 1;
    free(c);
    return bad;
}

static void *pool_thread(void *arg) {
    long bad = 0;
    for (int r = 0; r < 2000; r++) bad |= pool_check(1 + (r * 7 + (int)(long)arg) % 999, r & 1);
    return (void *)bad;
}

static void run_pool_tests(void) {
    int fails = 0;
    for (int t = 1; t <= 4; t++) {
        lathe_set_num_threads(t);
        for (int r = 0; r < 3000; r++) fails += pool_check(1 + r % 999, r & 1);
    }
    // Several external threads calling at once (second caller runs inline) + resizes.
    pthread_t th[3];
    for (long i = 0; i < 3; i++) pthread_create(&th[i], NULL, pool_thread, (void *)i);
    for (int r = 0; r < 50; r++) lathe_set_num_threads(1 + r % 3);
    for (int i = 0; i < 3; i++) { void *ret; pthread_join(th[i], &ret); fails += ret != NULL; }
    lathe_set_num_threads(2);
    g_cases++;
    g_fail += fails;
    printf("thread pool: %s\n", fails ? "FAILED" : "ok");
}

static int run_tests(void) {
    run_pool_tests();
    const long dims[] = {1, 2, 7, 13, 14, 15, 17, 31, 32, 33, 63, 129};
    const int nd = sizeof(dims) / sizeof(dims[0]);
    lathe_isa isas[] = {LATHE_ISA_SCALAR, LATHE_ISA_AVX2, LATHE_ISA_AVX512, LATHE_ISA_NEON};
    for (int s = 0; s < 4; s++) {
        if (lathe_set_isa(isas[s]) != 0) continue;
        int before = g_fail;
        for (int threads = 1; threads <= 2; threads++) {
            lathe_set_num_threads(threads);
            for (int tA = 0; tA < 2; tA++)
                for (int tB = 0; tB < 2; tB++) {
                    for (int a = 0; a < nd; a += 1)
                        for (int b = 0; b < nd; b += 2)
                            for (int c = (a + b) % 3; c < nd; c += 3)
                                check_case(tA, tB, dims[a], dims[b], dims[c], (a + c) % 3 == 0 ? 0 : 5,
                                           1.0f, 0.0f, (a + b) % 2);
                    // alpha / beta combos, beta == 0 with NaN C, K == 0, big K (several K blocks)
                    float ab[][2] = {{1, 0}, {1, 1}, {-0.5f, 2}, {2, -1}, {0, 0.5f}, {0.25f, 0}};
                    for (int q = 0; q < 6; q++) {
                        check_case(tA, tB, 37, 45, 29, 3, ab[q][0], ab[q][1], ab[q][1] == 0);
                        check_case(tA, tB, 5, 70, 0, 1, ab[q][0], ab[q][1], ab[q][1] == 0);
                        check_case(tA, tB, 100, 67, 700, 2, ab[q][0], ab[q][1], ab[q][1] == 0);
                    }
                    check_case(tA, tB, 300, 250, 530, 7, 1.0f, 0.0f, 1);
                    check_case(tA, tB, 64, 64, 128, 0, 1.0f, 1.0f, 0);
                    check_case(tA, tB, 1, 300, 300, 0, 1.0f, 0.0f, 1);
                    check_case(tA, tB, 300, 1, 300, 0, 1.0f, 0.0f, 1);
                    check_case(tA, tB, 257, 513, 65, 1, 1.5f, 0.5f, 0);
                }
        }
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++) {
                check_determinism(tA, tB, 333, 517, 600);
                check_determinism(tA, tB, 64, 64, 128);
                check_determinism(tA, tB, 1024, 128, 300);
            }
        printf("isa %-7s: %s\n", lathe_isa_name(isas[s]), g_fail == before ? "ok" : "FAILED");
    }
    printf("%d cases, %d failures\n", g_cases, g_fail);
    return g_fail != 0;
}

// ---- benchmark --------------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_case(long M, long N, long K, int tA, int tB, int threads, int reps) {
    long lda = tA ? M : K, ldb = tB ? K : N;
    float *A = alloc_fill(M * K), *B = alloc_fill(K * N), *C = alloc_fill(M * N);
    double flops = 2.0 * M * N * K;
    // Enough calls per sample for >= ~20 ms per sample.
    lathe_sgemm(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    double t0 = now();
    lathe_sgemm(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
    double one = now() - t0;
    long inner = one > 0.02 ? 1 : (long)(0.02 / (one + 1e-9)) + 1;
    double g[64];
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps; r++) {
        t0 = now();
        for (long i = 0; i < inner; i++)
            lathe_sgemm(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        g[r] = flops * inner / (now() - t0) * 1e-9;
    }
    qsort(g, reps, sizeof(double), cmp_double);
    printf("{\"impl\": \"lathe\", \"isa\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"transA\": %d, "
           "\"transB\": %d, \"threads\": %d, \"gflops\": %.1f, \"median\": %.1f}\n",
           lathe_isa_name(lathe_active_isa()), M, N, K, tA, tB, threads, g[reps - 1], g[reps / 2]);
    fflush(stdout);
    free(A); free(B); free(C);
}

static void nop_task(void *ctx, long i) { ((volatile long *)ctx)[i & 7] += i; }

/// Round-trip cost of lathe_parallel_for with trivial items.
static void bench_pool(int threads) {
    lathe_set_num_threads(threads);
    long sink[8] = {0};
    for (int rep = 0; rep < 3; rep++) {
        const long calls = 100000;
        double t0 = now();
        for (long c = 0; c < calls; c++) lathe_parallel_for(threads, nop_task, sink);
        printf("{\"pool\": %d, \"us_per_call\": %.3f}\n", threads, (now() - t0) / calls * 1e6);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s test|bench|pool [options]\n", argv[0]); return 2; }
    if (!strcmp(argv[1], "test")) return run_tests();
    if (!strcmp(argv[1], "pool")) { bench_pool(argc > 2 ? atoi(argv[2]) : 2); return 0; }
    int threads = 1, reps = 7;
    const char *sizes = "256,512,1024,2048,64x64x128,1024x128x512,1024x512x128";
    const char *trans = "nn";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sizes")) sizes = argv[i + 1];
        else if (!strcmp(argv[i], "--trans")) trans = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--isa")) {
            const char *s = argv[i + 1];
            lathe_isa isa = !strcmp(s, "scalar") ? LATHE_ISA_SCALAR : !strcmp(s, "avx2") ? LATHE_ISA_AVX2
                          : !strcmp(s, "neon") ? LATHE_ISA_NEON : LATHE_ISA_AVX512;
            if (lathe_set_isa(isa)) { fprintf(stderr, "isa %s unsupported\n", s); return 2; }
        }
    }
    lathe_set_num_threads(threads);
    char *sz = strdup(sizes);
    for (char *tok = strtok(sz, ","); tok; tok = strtok(NULL, ",")) {
        long m, n, k;
        if (sscanf(tok, "%ldx%ldx%ld", &m, &n, &k) != 3) m = n = k = atol(tok);
        for (const char *p = trans; *p;) {
            if (p[0] && p[1]) bench_case(m, n, k, p[0] == 't', p[1] == 't', threads, reps);
            p += 2;
            if (*p == ',') p++;
        }
    }
    free(sz);
    return 0;
}
