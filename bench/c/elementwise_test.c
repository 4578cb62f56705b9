// Standalone test + benchmark for the elementwise / reduce / softmax / convert kernels.
//
// Build (from the package root; compiles only these kernel files):
//   clang -O2 -I Sources/CLatheKernels/include -I Sources/CLatheKernels \
//     Sources/CLatheKernels/elementwise.c Sources/CLatheKernels/reduce.c \
//     Sources/CLatheKernels/convert.c bench/c/elementwise_test.c -lm -o /tmp/ew_test
// Run:  /tmp/ew_test            (tests every ISA path the CPU has, then benchmarks)
//       /tmp/ew_test quick      (smaller accuracy sweep, no benchmark)
//       /tmp/ew_test bench      (benchmark only)
//       /tmp/ew_test full       (f32->f16/bf16 over all 2^32 inputs on the portable and best
//                                paths, denser accuracy sweep; several minutes)
// Every path (portable, AVX2, AVX-512) is forced in turn with lathe_ew_force_isa().
// Exit status 0 when every check passes.
#include "lathe_elementwise.h"
#include "mathfun.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_fail = 0;
static const char *ISA_NAME[3] = {"portable", "avx2", "avx512"};
static int g_isa;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            if (g_fail < 60) {                                                \
                printf("FAIL [%s] ", ISA_NAME[g_isa]);                        \
                printf(__VA_ARGS__);                                          \
                printf("\n");                                                 \
            }                                                                 \
            g_fail++;                                                         \
        }                                                                     \
    } while (0)

// ---- random ----------------------------------------------------------------------------------
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return g_rng;
}
static float urand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd64() >> 40) * 0x1p-24); }

// ---- ulp error of a float result against a double reference ---------------------------------
static double ulp_err(float got, double ref) {
    if (isnan(ref)) return isnan(got) ? 0 : 1e30;
    if (isnan(got)) return 1e30;
    float rf = (float)ref;
    if (isinf(ref) || isinf(rf)) return (isinf(got) && (got > 0) == (ref > 0)) ? 0 : 1e30;
    if (isinf(got)) return 1e30;
    double a = fabs(ref), u;
    if (a < 0x1p-126) u = 0x1p-149;
    else { int e; frexp(a, &e); u = ldexp(1.0, e - 24); }
    return fabs((double)got - ref) / u;
}

// ---- double references -----------------------------------------------------------------------
static double r_sig(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }
static double r_unary(int op, double x) {
    switch (op) {
    case LATHE_U_COPY: return x;
    case LATHE_U_NEG: return -x;
    case LATHE_U_ABS: return fabs(x);
    case LATHE_U_EXP: return exp(x);
    case LATHE_U_LOG: return log(x);
    case LATHE_U_SQRT: return sqrt(x);
    case LATHE_U_RSQRT: return 1 / sqrt(x);
    case LATHE_U_TANH: return tanh(x);
    case LATHE_U_SIGMOID: return r_sig(x);
    case LATHE_U_RELU: return isnan(x) ? x : (x > 0 ? x : 0);
    case LATHE_U_GELU_ERF: return 0.5 * x * erfc(-x / sqrt(2.0));
    case LATHE_U_GELU_TANH: {
        double u = sqrt(2 / M_PI) * (x + 0.044715 * x * x * x);
        return x * r_sig(2 * u);
    }
    case LATHE_U_SILU: return x * r_sig(x);
    case LATHE_U_SOFTPLUS: return x > 20 ? x : (x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)));
    case LATHE_U_ERF: return erf(x);
    case LATHE_U_SIGN: return isnan(x) ? x : (x > 0 ? 1 : x < 0 ? -1 : 0);
    case LATHE_U_RECIP: return 1 / x;
    case LATHE_U_SQUARE: return x * x;
    case LATHE_U_SIN: return sin(x);
    case LATHE_U_COS: return cos(x);
    }
    return 0;
}
static double r_deriv(int op, double x) {
    switch (op) {
    case LATHE_U_COPY: return 1;
    case LATHE_U_NEG: return -1;
    case LATHE_U_ABS: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case LATHE_U_EXP: return exp(x);
    case LATHE_U_LOG: return 1 / x;
    case LATHE_U_SQRT: return 0.5 / sqrt(x);
    case LATHE_U_RSQRT: return -0.5 * pow(x, -1.5);
    case LATHE_U_TANH: { double t = tanh(x); return 1 - t * t; }
    case LATHE_U_SIGMOID: { double s = r_sig(x); return s * (1 - s); }
    case LATHE_U_RELU: return x > 0 ? 1 : 0;
    case LATHE_U_GELU_ERF:
        return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    case LATHE_U_GELU_TANH: {  // x sigmoid(2u) form, no cancellation in the tails
        double k = sqrt(2 / M_PI), u = k * (x + 0.044715 * x * x * x);
        double s = r_sig(2 * u), oms = r_sig(-2 * u);
        return s + 2 * x * s * oms * k * (1 + 3 * 0.044715 * x * x);
    }
    case LATHE_U_SILU: { double s = r_sig(x); return s * (1 + x * (1 - s)); }
    case LATHE_U_SOFTPLUS: return x > 20 ? 1 : r_sig(x);
    case LATHE_U_ERF: return 2 / sqrt(M_PI) * exp(-x * x);
    case LATHE_U_SIGN: return 0;
    case LATHE_U_RECIP: return -1 / (x * x);
    case LATHE_U_SQUARE: return 2 * x;
    case LATHE_U_SIN: return cos(x);
    case LATHE_U_COS: return -sin(x);
    }
    return 0;
}
static const char *UNAME[] = {"copy", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh",
                              "sigmoid", "relu", "gelu_erf", "gelu_tanh", "silu", "softplus",
                              "erf", "sign", "recip", "square", "sin", "cos"};
#define NUNARY 20
static const char *BNAME[] = {"add", "sub", "mul", "div", "pow", "max", "min",
                              "eq", "ne", "lt", "le", "gt", "ge"};
#define NBINARY 13

static const float SPECIALS[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1.0f, -1.0f, 0.5f, -0.5f, 2.0f, -2.0f,
    FLT_MIN, -FLT_MIN, 0x1p-149f, -0x1p-149f, 0x1.8p-140f, FLT_MAX, -FLT_MAX, 1e-30f, -1e-30f,
    20.0f, 20.000002f, 19.999998f, -20.0f, 88.72f, 88.73f, 89.0f, -87.3f, -103.0f, -104.0f,
    -110.0f, 100.0f, 3.9f, -3.9f, 4.0f, 10.0f, -10.0f, 0.625f, -0.625f, 1e7f, -1e7f,
    1e20f, 3.14159265f, 1.5707964f, 1e6f, 1.0000001e6f, 8388608.0f, 0.70710677f, 1.4142135f,
    1e-5f, -1e-5f, 7.0f, -7.0f, 14.0f, -14.0f, 1e-45f, 1e38f, -1e38f,
};
#define NSPEC ((int)(sizeof SPECIALS / sizeof SPECIALS[0]))

// test inputs: specials, then mixtures of ranges
static void fill_inputs(float *x, long n) {
    for (long i = 0; i < n; i++) {
        int k = (int)(rnd64() % 8);
        if (i < NSPEC) x[i] = SPECIALS[i];
        else if (k == 0) x[i] = urand(-1, 1);
        else if (k == 1) x[i] = urand(-10, 10);
        else if (k == 2) x[i] = urand(-100, 100);
        else if (k == 3) x[i] = lm_asfloat((uint32_t)rnd64());  // any bit pattern
        else if (k == 4) x[i] = (float)ldexp(urand(-1, 1), (int)(rnd64() % 60) - 30);
        else if (k == 5) x[i] = urand(-20.5f, 20.5f);
        else if (k == 6) x[i] = urand(0, 3);
        else x[i] = urand(-5, 5);
    }
}

static const long LENS[] = {0, 1, 7, 15, 16, 17, 63, 129, 1000};
#define NLENS ((int)(sizeof LENS / sizeof LENS[0]))

// ---- unary forward ---------------------------------------------------------------------------
static double g_unary_max[3][NUNARY];
static const double UNARY_TOL[NUNARY] = {0, 0, 0, 2, 2, 0.5, 1.5, 3, 3, 0, 6, 4, 3.5, 3, 3,
                                         0, 0.5, 0.5, 2.5, 2.5};

// relative condition number |x f'(x) / f(x)|, for ill-conditioned regions (gelu_tanh tail)
static double cond_of(int op, double x) {
    double f = r_unary(op, x);
    if (f == 0 || !isfinite(f) || !isfinite(x)) return 1;
    double c = fabs(x * r_deriv(op, x) / f);
    return c > 1 ? c : 1;
}

static void check_unary_values(int op, const float *x, const float *y, long n, const char *what) {
    for (long i = 0; i < n; i++) {
        double ref = r_unary(op, (double)x[i]);
        double e = ulp_err(y[i], ref);
        double tol = UNARY_TOL[op];
        if (op == LATHE_U_GELU_TANH) tol = 7 * cond_of(op, x[i]);  // see the note in main()
        if (e > g_unary_max[g_isa][op] && (op != LATHE_U_GELU_TANH || cond_of(op, x[i]) < 8))
            g_unary_max[g_isa][op] = e;
        CHECK(e <= tol, "%s %s x=%a got %a ref %a (%.2f ulp)", UNAME[op], what, x[i], y[i], ref, e);
        if (e > tol) break;
    }
}

static void test_unary(void) {
    enum { N = 4096 };
    static float x[N], y[N], y2[N], xs[3 * N], ys[3 * N];
    fill_inputs(x, N);
    for (int op = 0; op < NUNARY; op++) {
        // full array, contiguous
        lathe_unary_f32(op, x, 1, y, 1, N);
        check_unary_values(op, x, y, N, "contig");
        // awkward lengths at odd offsets, in place too
        for (int li = 0; li < NLENS; li++) {
            long n = LENS[li];
            for (int off = 0; off < 3; off++) {
                memcpy(y2, x + off, (size_t)n * 4);
                y2[n] = 12345.0f;
                lathe_unary_f32(op, y2, 1, y2, 1, n);  // in place
                for (long i = 0; i < n; i++)
                    CHECK(memcmp(&y2[i], &y[i + off], 4) == 0 || (isnan(y2[i]) && isnan(y[i + off])),
                          "%s in-place n=%ld off=%d i=%ld", UNAME[op], n, off, i);
                CHECK(y2[n] == 12345.0f, "%s wrote past n=%ld", UNAME[op], n);
            }
        }
        // strided input and output, negative stride, broadcast
        for (long i = 0; i < N; i++) xs[3 * i] = x[i];
        for (int li = 0; li < NLENS; li++) {
            long n = LENS[li];
            for (long i = 0; i < 3 * N; i++) ys[i] = -777.0f;
            lathe_unary_f32(op, xs, 3, ys, 2, n);
            for (long i = 0; i < n; i++)
                CHECK(memcmp(&ys[2 * i], &y[i], 4) == 0 || (isnan(ys[2 * i]) && isnan(y[i])),
                      "%s strided n=%ld i=%ld", UNAME[op], n, i);
            if (n) CHECK(ys[1] == -777.0f, "%s strided wrote gap", UNAME[op]);
            lathe_unary_f32(op, x + n - 1, -1, ys, 1, n);  // reversed input
            for (long i = 0; i < n; i++)
                CHECK(memcmp(&ys[i], &y[n - 1 - i], 4) == 0 || (isnan(ys[i]) && isnan(y[n - 1 - i])),
                      "%s negative stride n=%ld i=%ld", UNAME[op], n, i);
            lathe_unary_f32(op, x + 100, 0, ys, 1, n);  // broadcast
            for (long i = 0; i < n; i++)
                CHECK(memcmp(&ys[i], &y[100], 4) == 0 || (isnan(ys[i]) && isnan(y[100])),
                      "%s broadcast n=%ld", UNAME[op], n);
        }
    }
}

// Dense sweep over every `step`-th float bit pattern through the contiguous kernel.
static void sweep_unary(uint64_t step) {
    enum { C = 1 << 20 };
    float *x = malloc(C * 4), *y = malloc(C * 4);
    double *ref = malloc(C * sizeof(double));
    int cpu = lathe_ew_cpu_isa();
    for (int op = 3; op < NUNARY; op++) {
        if (op == LATHE_U_SIGN || op == LATHE_U_RELU) continue;
        uint64_t b = 0;
        while (b < 0x100000000ull) {
            long n = 0;
            for (; n < C && b < 0x100000000ull; b += step) x[n++] = lm_asfloat((uint32_t)b);
            for (long i = 0; i < n; i++) ref[i] = r_unary(op, x[i]);
            for (int isa = 0; isa <= cpu; isa++) {
                g_isa = lathe_ew_force_isa(isa);
                lathe_unary_f32(op, x, 1, y, 1, n);
                for (long i = 0; i < n; i++) {
                    double e = ulp_err(y[i], ref[i]);
                    double c = op == LATHE_U_GELU_TANH ? cond_of(op, x[i]) : 1;
                    if (c < 8 && e > g_unary_max[isa][op]) g_unary_max[isa][op] = e;
                    CHECK(e <= (op == LATHE_U_GELU_TANH ? 7 * c : UNARY_TOL[op]), "sweep %s x=%a got %a ref %a (%.2f ulp)",
                          UNAME[op], x[i], y[i], ref[i], e);
                }
            }
        }
    }
    lathe_ew_force_isa(-1);
    free(x); free(y); free(ref);
}

// ---- unary backward --------------------------------------------------------------------------
static double g_bwd_max[3][NUNARY];
static void test_unary_backward(void) {
    enum { N = 3000 };
    static float x[N], y[N], dy[N], dx[N], dx2[N];
    for (long i = 0; i < N; i++) {
        x[i] = i < 9 ? (float[]){0, -0.0f, 1, -1, 20, 21, -20, 5, -5}[i]
                     : (i % 3 ? urand(-6, 6) : urand(-30, 30));
        dy[i] = urand(-2, 2);
    }
    for (int op = 0; op < NUNARY; op++) {
        float xin[N];
        for (long i = 0; i < N; i++) {
            xin[i] = x[i];
            // keep domains: log/sqrt/rsqrt positive; avoid tiny |x| for recip/log
            if (op == LATHE_U_LOG || op == LATHE_U_SQRT || op == LATHE_U_RSQRT)
                xin[i] = fabsf(x[i]) + 0.01f;
            if (op == LATHE_U_RECIP && fabsf(xin[i]) < 0.01f) xin[i] = 0.5f;
        }
        lathe_unary_f32(op, xin, 1, y, 1, N);
        lathe_unary_backward_f32(op, xin, y, dy, dx, N);
        for (long i = 0; i < N; i++) {
            double ref = (double)dy[i] * r_deriv(op, xin[i]);
            double err = fabs(dx[i] - ref);
            // torch-like tolerance: rtol 1e-5, atol 1e-6 (scaled by |dy|)
            double tol = 1e-5 * fabs(ref) + 1e-6 * fabs(dy[i]);
            double used = err / (tol + 1e-38);  // fraction of the torch-like tolerance used
            if (used > g_bwd_max[g_isa][op]) g_bwd_max[g_isa][op] = used;
            CHECK(err <= tol, "backward %s x=%a dy=%a got %a ref %a", UNAME[op], xin[i], dy[i],
                  dx[i], ref);
            if (err > tol) break;
        }
        CHECK(op != LATHE_U_RELU || dx[0] == 0, "relu'(0) != 0");
        CHECK(op != LATHE_U_ABS || dx[0] == 0, "abs'(0) != 0");
        // lengths: no writes past n, same values
        for (int li = 0; li < NLENS; li++) {
            long n = LENS[li];
            dx2[n] = 999.0f;
            lathe_unary_backward_f32(op, xin + 1, y + 1, dy + 1, dx2, n);
            for (long i = 0; i < n; i++) CHECK(dx2[i] == dx[i + 1] || (isnan(dx2[i]) && isnan(dx[i + 1])),
                                               "backward %s n=%ld i=%ld", UNAME[op], n, i);
            CHECK(dx2[n] == 999.0f, "backward %s wrote past n", UNAME[op]);
        }
    }
}

// ---- binary ----------------------------------------------------------------------------------
static double r_binary(int op, double a, double b) {
    switch (op) {
    case LATHE_B_ADD: return a + b;
    case LATHE_B_SUB: return a - b;
    case LATHE_B_MUL: return a * b;
    case LATHE_B_DIV: return a / b;
    case LATHE_B_POW: return b == 0 ? 1 : powf((float)a, (float)b);  // powf (sNaN^0 = 1 too)
    case LATHE_B_MAX: return (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b);
    case LATHE_B_MIN: return (isnan(a) || isnan(b)) ? NAN : (a < b ? a : b);
    case LATHE_B_EQ: return a == b;
    case LATHE_B_NE: return a != b;
    case LATHE_B_LT: return a < b;
    case LATHE_B_LE: return a <= b;
    case LATHE_B_GT: return a > b;
    case LATHE_B_GE: return a >= b;
    }
    return 0;
}
static void check_bin(int op, float a, float b, float got, const char *what) {
    double ref = r_binary(op, a, b);
    float rf = (float)ref;
    int ok;
    if (op == LATHE_B_POW)  // fast paths: x*x, 1/x, sqrt; glibc gives NaN for 1^sNaN, sNaN^0
        ok = ulp_err(got, ref) <= 1.0 || (isnan(got) && (isnan(a) || isnan(b)));
    else ok = (isnan(rf) && isnan(got)) || (rf == got && signbit(rf) == signbit(got)) ||
              ((op == LATHE_B_MAX || op == LATHE_B_MIN) && rf == got);  // +-0 order free
    CHECK(ok, "%s %s a=%a b=%a got %a ref %a", BNAME[op], what, a, b, got, rf);
}
static void test_binary(void) {
    enum { N = 2048 };
    static float a[N], b[N], y[3 * N];
    fill_inputs(a, N);
    fill_inputs(b, N);
    for (long i = NSPEC; i < N; i += 5) b[i] = a[i];  // equal pairs for comparisons
    for (long i = 0; i < NSPEC; i++) b[i] = SPECIALS[(i * 7) % NSPEC];
    const float scal[] = {2.0f, 0.5f, -1.0f, 0.0f, 1.0f, 3.0f, -0.5f, NAN, -INFINITY, 1.5f};
    for (int op = 0; op < NBINARY; op++) {
        for (int li = 0; li < NLENS; li++) {
            long n = LENS[li];
            y[n] = 4242.0f;
            lathe_binary_f32(op, a, 1, b, 1, y, 1, n);
            for (long i = 0; i < n; i++) check_bin(op, a[i], b[i], y[i], "vv");
            CHECK(y[n] == 4242.0f, "%s wrote past n", BNAME[op]);
            for (int s = 0; s < (int)(sizeof scal / 4); s++) {
                lathe_binary_f32(op, &scal[s], 0, b, 1, y, 1, n);
                for (long i = 0; i < n; i++) check_bin(op, scal[s], b[i], y[i], "sv");
                lathe_binary_f32(op, a, 1, &scal[s], 0, y, 1, n);
                for (long i = 0; i < n; i++) check_bin(op, a[i], scal[s], y[i], "vs");
            }
            lathe_binary_f32(op, a + 3, 0, b + 5, 0, y, 2, n);
            for (long i = 0; i < n; i++) check_bin(op, a[3], b[5], y[2 * i], "ss strided");
            lathe_binary_f32(op, a, 2, b, 1, y, 3, n / 2);
            for (long i = 0; i < n / 2; i++) check_bin(op, a[2 * i], b[i], y[3 * i], "strided");
            lathe_binary_f32(op, a + 1, 0, b, 3, y, 1, n / 3);
            for (long i = 0; i < n / 3; i++) check_bin(op, a[1], b[3 * i], y[i], "s/strided");
            // in place: y aliases a
            float t[N];
            memcpy(t, a, (size_t)n * 4);
            lathe_binary_f32(op, t, 1, b, 1, t, 1, n);
            for (long i = 0; i < n; i++) check_bin(op, a[i], b[i], t[i], "in place");
        }
    }
    // clamp, axpy, scale_shift
    float lo = -1.5f, hi = 2.25f;
    lathe_clamp_f32(a, y, N, lo, hi);
    for (long i = 0; i < N; i++) {
        float r = isnan(a[i]) ? a[i] : (a[i] < lo ? lo : a[i] > hi ? hi : a[i]);
        CHECK(memcmp(&r, &y[i], 4) == 0 || (isnan(r) && isnan(y[i])), "clamp x=%a got %a", a[i], y[i]);
    }
    for (long i = 0; i < N; i++) { a[i] = urand(-3, 3); b[i] = urand(-3, 3); y[i] = b[i]; }
    lathe_axpy_f32(N - 1, 0.75f, a, y);
    for (long i = 0; i < N - 1; i++)
        CHECK(fabs(y[i] - (b[i] + 0.75 * (double)a[i])) <= 1e-6 * (fabs(b[i]) + 3), "axpy i=%ld", i);
    CHECK(y[N - 1] == b[N - 1], "axpy wrote past n");
    memcpy(y, a, sizeof(float) * N);
    lathe_scale_shift_f32(N - 1, -1.25f, 0.5f, y, y);  // in place
    for (long i = 0; i < N - 1; i++)
        CHECK(fabs(y[i] - (-1.25 * a[i] + 0.5)) <= 1e-6 * (fabs(1.25 * a[i]) + 0.5), "scale_shift i=%ld", i);
    CHECK(y[N - 1] == a[N - 1], "scale_shift wrote past n");
}

// ---- reductions ------------------------------------------------------------------------------
static void test_reduce(void) {
    const long lens[] = {0, 1, 7, 15, 16, 17, 63, 64, 65, 129, 1000, 8193, 20000};
    const long inners[] = {1, 3, 17, 600};
    float *x = malloc(sizeof(float) * 3 * 20000 * 600 / 8 + 1000000);
    float out[4 * 600 * 3], out2[4 * 600 * 3];
    int64_t idx[4 * 600 * 3];
    for (int li = 0; li < 13; li++)
        for (int ii = 0; ii < 4; ii++) {
            long len = lens[li], inner = inners[ii], outer = 3;
            if (len * inner > 200000) inner = 3;
            long tot = outer * len * inner;
            for (long i = 0; i < tot; i++) x[i] = urand(-2, 2) + (i % 11 == 0 ? 10.0f : 0.0f);
            // ties: duplicate the max in two places per row
            for (int op = 0; op < 4; op++) {
                lathe_reduce_f32(op, x, outer, len, inner, out);
                lathe_reduce_f32(op, x, outer, len, inner, out2);
                for (long o = 0; o < outer; o++)
                    for (long j = 0; j < inner; j++) {
                        double s = 0, sa = 0, mx = -INFINITY, mn = INFINITY;
                        for (long l = 0; l < len; l++) {
                            double v = x[(o * len + l) * inner + j];
                            s += op == LATHE_R_SUMSQ ? v * v : v;
                            sa += op == LATHE_R_SUMSQ ? v * v : fabs(v);
                            if (v > mx) mx = v;
                            if (v < mn) mn = v;
                        }
                        float g = out[o * inner + j];
                        CHECK(memcmp(&g, &out2[o * inner + j], 4) == 0, "reduce not repeatable");
                        // error bound: sequential runs of at most 64 (+ len/64 blocks) + tree
                        double steps = (len < 80 ? len : 64 + len / 64) + 8;
                        if (op == LATHE_R_SUM || op == LATHE_R_SUMSQ)
                            CHECK(fabs(g - s) <= steps * 6e-8 * sa + 1e-30, "reduce op %d len %ld inner %ld: %g vs %g",
                                  op, len, inner, g, s);
                        else
                            CHECK(g == (op == LATHE_R_MAX ? mx : mn), "reduce op %d len %ld inner %ld: %g vs %g",
                                  op, len, inner, g, op == LATHE_R_MAX ? mx : mn);
                    }
            }
            // argmax/argmin with ties: set a tie at two positions in each (o, j)
            if (len >= 3) {
                for (long o = 0; o < outer; o++)
                    for (long j = 0; j < inner; j++) {
                        x[(o * len + 1) * inner + j] = 50.0f;
                        x[(o * len + len - 1) * inner + j] = 50.0f;
                        x[(o * len + 2) * inner + j] = -50.0f;
                        x[(o * len + 0) * inner + j] = -50.0f;
                    }
            }
            for (int op = LATHE_R_MAX; op <= LATHE_R_MIN; op++) {
                lathe_argreduce_f32(op, x, outer, len, inner, out, idx);
                for (long o = 0; o < outer && len > 0; o++)
                    for (long j = 0; j < inner; j++) {
                        long best = 0;
                        for (long l = 1; l < len; l++) {
                            float v = x[(o * len + l) * inner + j], b = x[(o * len + best) * inner + j];
                            if (op == LATHE_R_MAX ? v > b : v < b) best = l;
                        }
                        CHECK(idx[o * inner + j] == best && out[o * inner + j] == x[(o * len + best) * inner + j],
                              "argreduce op %d len %ld inner %ld: idx %ld vs %ld", op, len, inner,
                              (long)idx[o * inner + j], best);
                    }
            }
            // NaN wins (first NaN) in max/min/argmax
            if (len >= 5) {
                for (long j = 0; j < inner; j++) {
                    x[(1 * len + 3) * inner + j] = NAN;
                    x[(1 * len + 4) * inner + j] = NAN;
                }
                for (int op = LATHE_R_MAX; op <= LATHE_R_MIN; op++) {
                    lathe_reduce_f32(op, x, outer, len, inner, out);
                    for (long j = 0; j < inner; j++) {
                        CHECK(isnan(out[inner + j]), "reduce NaN does not propagate");
                        CHECK(!isnan(out[j]), "reduce NaN leaks into other rows");
                    }
                    lathe_argreduce_f32(op, x, outer, len, inner, out, idx);
                    for (long j = 0; j < inner; j++)
                        CHECK(isnan(out[inner + j]) && idx[inner + j] == 3,
                              "argreduce NaN: idx %ld", (long)idx[inner + j]);
                }
            }
        }
    free(x);
}

// Sums are bit-identical across ISAs.
static void test_reduce_cross_isa(void) {
    enum { L = 100003 };
    float *x = malloc(L * 4);
    for (long i = 0; i < L; i++) x[i] = urand(-1, 1) * (i % 7 == 0 ? 1000.0f : 1.0f);
    float r[3][4], c[3][2 * 517];
    int cpu = lathe_ew_cpu_isa();
    for (int isa = 0; isa <= cpu; isa++) {
        lathe_ew_force_isa(isa);
        lathe_reduce_f32(LATHE_R_SUM, x, 1, L, 1, &r[isa][0]);
        lathe_reduce_f32(LATHE_R_SUMSQ, x, 1, L, 1, &r[isa][1]);
        lathe_reduce_f32(LATHE_R_SUM, x, 2, 96, 517, c[isa]);
    }
    for (int isa = 1; isa <= cpu; isa++) {
        g_isa = isa;
        CHECK(memcmp(r[isa], r[0], 8) == 0, "sum differs across ISAs: %a vs %a", r[isa][0], r[0][0]);
        CHECK(memcmp(c[isa], c[0], sizeof c[0]) == 0, "column sums differ across ISAs");
    }
    double s = 0;
    for (long i = 0; i < L; i++) s += x[i];
    printf("  sum of 100003 floats: rel err %.2e (vs double)\n", fabs(r[0][0] - s) / fabs(s));
    lathe_ew_force_isa(-1);
    free(x);
}

// ---- softmax ---------------------------------------------------------------------------------
static void test_softmax(void) {
    const long lens[] = {1, 7, 16, 17, 129, 1000, 3000};
    for (int li = 0; li < 7; li++) {
        long len = lens[li], rows = 4;
        float *x = malloc(sizeof(float) * rows * len), *y = malloc(sizeof(float) * rows * len);
        float *dy = malloc(sizeof(float) * rows * len), *dx = malloc(sizeof(float) * rows * len);
        for (long i = 0; i < rows * len; i++) { x[i] = urand(-8, 8); dy[i] = urand(-1, 1); }
        if (len >= 2) {
            for (long i = 0; i < len; i += 3) x[len + i] = -INFINITY;  // row 1 partially masked
            x[len + 1] = 0.5f;
        }
        for (long i = 0; i < len; i++) x[2 * len + i] = -INFINITY;  // row 2 fully masked
        for (int lg = 0; lg < 2; lg++) {
            lathe_softmax_f32(x, y, rows, len, lg);
            for (long r = 0; r < rows; r++) {
                const float *xr = x + r * len;
                double m = -INFINITY, s = 0;
                for (long i = 0; i < len; i++) m = xr[i] > m ? xr[i] : m;
                for (long i = 0; i < len; i++) s += exp(xr[i] - m);
                for (long i = 0; i < len; i++) {
                    float g = y[r * len + i];
                    if (r == 2) { CHECK(isnan(g), "softmax all -inf row should be NaN"); continue; }
                    double ref = lg ? (xr[i] - m) - log(s) : exp(xr[i] - m) / s;
                    double tol = lg ? 1e-6 * (fabs(ref) + 1) : 1e-5 * ref + 1e-7;
                    if (isinf(ref)) CHECK(g == ref, "log_softmax -inf");
                    else CHECK(fabs(g - ref) <= tol, "softmax log=%d len %ld: %g vs %g", lg, len, g, ref);
                }
            }
            // in place gives the same
            float *t = malloc(sizeof(float) * rows * len);
            memcpy(t, x, sizeof(float) * rows * len);
            lathe_softmax_f32(t, t, rows, len, lg);
            CHECK(memcmp(t, y, sizeof(float) * len) == 0, "softmax in place differs");
            free(t);
            // backward (rows 0, 1)
            lathe_softmax_backward_f32(y, dy, dx, 2, len, lg);
            for (long r = 0; r < 2; r++) {
                double d = 0;
                for (long i = 0; i < len; i++)
                    d += lg ? dy[r * len + i] : (double)dy[r * len + i] * y[r * len + i];
                for (long i = 0; i < len; i++) {
                    double yy = y[r * len + i], ref = lg ? dy[r * len + i] - exp(yy) * d
                                                         : yy * (dy[r * len + i] - d);
                    CHECK(fabs(dx[r * len + i] - ref) <= 1e-5 * fabs(ref) + 1e-6,
                          "softmax backward log=%d len %ld: %g vs %g", lg, len, dx[r * len + i], ref);
                }
            }
        }
        free(x); free(y); free(dy); free(dx);
    }
}

// ---- conversions -----------------------------------------------------------------------------
static uint16_t ref_f16(float f) { _Float16 h = (_Float16)f; uint16_t u; memcpy(&u, &h, 2); return u; }
static float ref_f16_to_f32(uint16_t u) { _Float16 h; memcpy(&h, &u, 2); return (float)h; }
// bf16 reference by exact double comparisons of the two candidates (no bit tricks)
static uint16_t ref_bf16(float f) {
    uint32_t u = lm_asuint(f);
    if (isnan(f)) return (uint16_t)((u >> 16) | 0x40);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    double dl = fabs((double)f - (double)lm_asfloat(lo));
    double vh = (hi & 0x7fffffffu) == 0x7f800000u ? copysign(0x1p128, f) : (double)lm_asfloat(hi);
    if (isinf(f)) return (uint16_t)(u >> 16);
    double dh = fabs(vh - (double)f);
    if (dl < dh) return (uint16_t)(lo >> 16);
    if (dh < dl) return (uint16_t)(hi >> 16);
    return (uint16_t)(((lo >> 16) & 1) ? hi >> 16 : lo >> 16);
}
static int f16_isnan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static int bf16_isnan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

static void test_convert(int exhaustive) {
    // f16 -> f32 -> f16 for all 65536 patterns
    static uint16_t h[65536], h2[65536];
    static float f[65536];
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    lathe_f16_to_f32(h, f, 65536);
    lathe_f32_to_f16(f, h2, 65536);
    for (int i = 0; i < 65536; i++) {
        if (f16_isnan(h[i])) {
            CHECK(isnan(f[i]) && f16_isnan(h2[i]) && (h2[i] & 0x8000) == (h[i] & 0x8000),
                  "f16 NaN %04x -> %a -> %04x", i, f[i], h2[i]);
        } else {
            float r = ref_f16_to_f32(h[i]);
            CHECK(memcmp(&r, &f[i], 4) == 0, "f16->f32 %04x: %a vs %a", i, f[i], r);
            CHECK(h2[i] == h[i], "f16 round trip %04x -> %04x", i, h2[i]);
        }
    }
    // f32 -> f16 and f32 -> bf16 over (a sample of / all) bit patterns vs _Float16 / __bf16 casts
    enum { C = 1 << 20 };
    float *x = malloc(C * 4);
    uint16_t *y = malloc(C * 2), *yb = malloc(C * 2);
    uint64_t step = exhaustive ? 1 : 61, b = 0;
    long bad16 = 0, badbf = 0;
    while (b < 0x100000000ull) {
        long n = 0;
        for (; n < C && b < 0x100000000ull; b += step) x[n++] = lm_asfloat((uint32_t)b);
        lathe_f32_to_f16(x, y, n - 3);  // odd lengths exercise the tails
        lathe_f32_to_f16(x + n - 3, y + n - 3, 3);
        lathe_f32_to_bf16(x, yb, n);
        for (long i = 0; i < n; i++) {
            uint16_t r = ref_f16(x[i]), rb = ref_bf16(x[i]);
            if (isnan(x[i])) {
                if (!(f16_isnan(y[i]) && (y[i] & 0x8000) == (r & 0x8000))) bad16++;
                if (!(bf16_isnan(yb[i]) && (yb[i] & 0x8000) == (rb & 0x8000))) badbf++;
            } else {
                if (y[i] != r) { if (bad16 < 5) printf("  f32->f16 %a: %04x vs %04x\n", x[i], y[i], r); bad16++; }
                if (yb[i] != rb) { if (badbf < 5) printf("  f32->bf16 %a: %04x vs %04x\n", x[i], yb[i], rb); badbf++; }
            }
        }
    }
    CHECK(bad16 == 0, "f32->f16: %ld mismatches", bad16);
    CHECK(badbf == 0, "f32->bf16: %ld mismatches", badbf);
    // bf16 -> f32 exact, all patterns
    lathe_bf16_to_f32(h, f, 65536);
    for (int i = 0; i < 65536; i++) {
        uint32_t u = lm_asuint(f[i]);
        CHECK(u == ((uint32_t)i << 16), "bf16->f32 %04x", i);
    }
    // lengths
    for (int li = 0; li < NLENS; li++) {
        long n = LENS[li];
        y[n] = 0xabcd;
        lathe_f32_to_f16(f, y, n);
        CHECK(y[n] == 0xabcd, "f32_to_f16 wrote past n=%ld", n);
        f[1000 + n] = 7.0f;
        lathe_f16_to_f32(h, f + 1000, n);
        CHECK(f[1000 + n] == 7.0f, "f16_to_f32 wrote past n=%ld", n);
    }
    free(x); free(y); free(yb);
}

// ---- benchmark -------------------------------------------------------------------------------
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static volatile float g_sink;
static float libm_ref(int op, float v) {
    switch (op) {
    case LATHE_U_EXP: return expf(v);
    case LATHE_U_LOG: return logf(v);
    case LATHE_U_TANH: return tanhf(v);
    case LATHE_U_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case LATHE_U_GELU_ERF: return 0.5f * v * (1.0f + erff(v * 0.70710678f));
    case LATHE_U_GELU_TANH: return 0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
    case LATHE_U_SILU: return v / (1.0f + expf(-v));
    case LATHE_U_SOFTPLUS: return v > 20 ? v : log1pf(expf(v));
    case LATHE_U_ERF: return erff(v);
    case LATHE_U_SIN: return sinf(v);
    case LATHE_U_COS: return cosf(v);
    case LATHE_U_SQRT: return sqrtf(v);
    }
    return v;
}
static void bench(void) {
    enum { N = 1 << 20 };
    float *x = malloc(N * 4), *y = malloc(N * 4), *z = malloc(N * 4);
    uint16_t *h = malloc(N * 2);
    for (long i = 0; i < N; i++) { x[i] = urand(-6, 6); z[i] = urand(0.1f, 4); }
    int cpu = lathe_ew_cpu_isa();
    printf("\nBenchmark: n = %d floats (4 MB), ns/element (lower is better); libm = plain scalar loop\n", N);
    printf("%-11s", "op");
    for (int isa = 0; isa <= cpu; isa++) printf(" %9s", ISA_NAME[isa]);
    printf(" %9s\n", "libm");
    const int ops[] = {LATHE_U_COPY, LATHE_U_NEG, LATHE_U_EXP, LATHE_U_LOG, LATHE_U_SQRT,
                       LATHE_U_TANH, LATHE_U_SIGMOID, LATHE_U_GELU_ERF, LATHE_U_GELU_TANH,
                       LATHE_U_SILU, LATHE_U_SOFTPLUS, LATHE_U_ERF, LATHE_U_SIN, LATHE_U_RELU};
    for (int k = 0; k < (int)(sizeof ops / sizeof ops[0]); k++) {
        int op = ops[k];
        const float *in = (op == LATHE_U_LOG || op == LATHE_U_SQRT) ? z : x;
        printf("%-11s", UNAME[op]);
        for (int isa = 0; isa <= cpu; isa++) {
            lathe_ew_force_isa(isa);
            double best = 1e9;
            for (int rep = 0; rep < 7; rep++) {
                double t0 = now();
                lathe_unary_f32(op, in, 1, y, 1, N);
                double t = now() - t0;
                if (t < best) best = t;
            }
            printf(" %9.3f", best * 1e9 / N);
        }
        double best = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            for (long i = 0; i < N; i++) y[i] = libm_ref(op, in[i]);
            double t = now() - t0;
            if (t < best) best = t;
        }
        g_sink = y[N / 2];
        printf(" %9.3f\n", best * 1e9 / N);
    }
    struct { const char *name; int kind; } other[] = {
        {"add", 0}, {"mul(bcast)", 1}, {"max", 2}, {"pow(x,2.5)", 3}, {"axpy", 4}, {"sum", 5},
        {"max-reduce", 6}, {"colsum", 7}, {"argmax", 8}, {"softmax", 9}, {"logsoftmax", 10},
        {"f32->f16", 11}, {"f16->f32", 12}, {"f32->bf16", 13}, {"gelu bwd", 14}, {"tanh bwd", 15}};
    for (int k = 0; k < (int)(sizeof other / sizeof other[0]); k++) {
        printf("%-11s", other[k].name);
        for (int isa = 0; isa <= cpu; isa++) {
            lathe_ew_force_isa(isa);
            double best = 1e9;
            float two5 = 2.5f, s = 1.5f, o[1024];
            int64_t ix[1024];
            for (int rep = 0; rep < 5; rep++) {
                double t0 = now();
                switch (other[k].kind) {
                case 0: lathe_binary_f32(LATHE_B_ADD, x, 1, z, 1, y, 1, N); break;
                case 1: lathe_binary_f32(LATHE_B_MUL, x, 1, &s, 0, y, 1, N); break;
                case 2: lathe_binary_f32(LATHE_B_MAX, x, 1, z, 1, y, 1, N); break;
                case 3: lathe_binary_f32(LATHE_B_POW, z, 1, &two5, 0, y, 1, N); break;
                case 4: lathe_axpy_f32(N, 0.5f, x, y); break;
                case 5: lathe_reduce_f32(LATHE_R_SUM, x, 1, N, 1, o); break;
                case 6: lathe_reduce_f32(LATHE_R_MAX, x, 1, N, 1, o); break;
                case 7: lathe_reduce_f32(LATHE_R_SUM, x, 1, 1024, 1024, o); break;
                case 8: lathe_argreduce_f32(LATHE_R_MAX, x, 1024, 1024, 1, o, ix); break;
                case 9: lathe_softmax_f32(x, y, 1024, 1024, 0); break;
                case 10: lathe_softmax_f32(x, y, 1024, 1024, 1); break;
                case 11: lathe_f32_to_f16(x, h, N); break;
                case 12: lathe_f16_to_f32(h, y, N); break;
                case 13: lathe_f32_to_bf16(x, h, N); break;
                case 14: lathe_unary_backward_f32(LATHE_U_GELU_ERF, x, z, z, y, N); break;
                case 15: lathe_unary_backward_f32(LATHE_U_TANH, x, z, z, y, N); break;
                }
                double t = now() - t0;
                if (t < best) best = t;
            }
            printf(" %9.3f", best * 1e9 / N);
        }
        printf("\n");
    }
    // large arrays: memory bound?
    enum { M = 1 << 24 };
    float *bx = malloc((size_t)M * 4), *by = malloc((size_t)M * 4);
    for (long i = 0; i < M; i++) { bx[i] = urand(-3, 3); by[i] = 0; }
    lathe_ew_force_isa(-1);
    const int bops[] = {LATHE_U_COPY, LATHE_U_NEG, LATHE_U_EXP, LATHE_U_GELU_ERF, LATHE_U_TANH};
    printf("\n16M floats (64 MB, %s): GB/s counted as read+write bytes\n", ISA_NAME[lathe_ew_isa()]);
    for (int k = 0; k < 5; k++) {
        double best = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            lathe_unary_f32(bops[k], bx, 1, by, 1, M);
            double t = now() - t0;
            if (t < best) best = t;
        }
        printf("  %-10s %6.2f GB/s  %.3f ns/elem\n", UNAME[bops[k]], 8.0 * M / best / 1e9, best * 1e9 / M);
    }
    free(bx); free(by); free(x); free(y); free(z); free(h);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    int bench_only = argc > 1 && !strcmp(argv[1], "bench");
    int exhaustive = argc > 1 && !strcmp(argv[1], "full");
    int cpu = lathe_ew_cpu_isa();
    printf("CPU best path: %s; automatic choice: %s\n", ISA_NAME[cpu], ISA_NAME[lathe_ew_isa()]);
    if (!bench_only) {
        for (int isa = 0; isa <= cpu; isa++) {
            g_isa = lathe_ew_force_isa(isa);
            printf("== path %s\n", ISA_NAME[g_isa]);
            test_unary();
            test_unary_backward();
            test_binary();
            test_reduce();
            test_softmax();
            test_convert(exhaustive && (isa == 0 || isa == cpu));
        }
        test_reduce_cross_isa();
        sweep_unary(quick ? 4099 : exhaustive ? 31 : 97);
        printf("\nMax ulp error vs double libm (tests + sweep of every %s-th float bit pattern):\n",
               quick ? "4099" : exhaustive ? "31" : "97");
        printf("%-11s", "op");
        for (int isa = 0; isa <= cpu; isa++) printf(" %9s", ISA_NAME[isa]);
        printf("   backward: max err / (1e-5|ref| + 1e-6|dy|)\n");
        for (int op = 0; op < NUNARY; op++) {
            printf("%-11s", UNAME[op]);
            for (int isa = 0; isa <= cpu; isa++) printf(" %9.3f", g_unary_max[isa][op]);
            printf("   ");
            for (int isa = 0; isa <= cpu; isa++) printf(" %8.2e", g_bwd_max[isa][op]);
            printf("\n");
        }
        printf("(gelu_tanh: max over inputs where the formula's condition number |x f'/f| < 8; it is\n"
               " checked everywhere against 7 ulp * condition number: below x ~ -3 the tanh formula\n"
               " itself is ill-conditioned, e.g. condition ~110 at x = -7.7)\n");
        printf("\n%s: %d failures\n", g_fail ? "FAILED" : "ALL PASSED", g_fail);
    }
    if (!quick) bench();
    return g_fail != 0;
}
