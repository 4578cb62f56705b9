// CPU feature detection, ISA override and the thread-local grad-mode flag.
//
// x86-64 features come from CPUID plus XGETBV (the OS must save the YMM/ZMM state).
// The active ISA is decided once (lazily, thread-safe) from what the CPU supports, lowered
// by the LATHE_ISA environment variable if set ("scalar", "avx2", "avx512", "neon"). The
// override can only go down to something the CPU really has; an unsupported request is
// ignored. lathe_set_isa() changes it later (used by tests comparing code paths).
#include "lathe_kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

// -1 = not decided yet. Private to this file (never visible through the header).
static _Atomic int g_active_isa = -1;

#if defined(__x86_64__)
#include <cpuid.h>

// Feature bits read straight from CPUID/XGETBV (no dependency on the compiler runtime's
// __cpu_model, which not every link line provides). 0 = not probed yet.
enum { X86_PROBED = 1, X86_AVX2 = 2, X86_AVX512 = 4 };
static _Atomic int g_x86_features = 0;

static int x86_features(void) {
    int f = atomic_load_explicit(&g_x86_features, memory_order_relaxed);
    if (f) return f;
    f = X86_PROBED;
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
        unsigned xcr0 = 0;
        if (osxsave) {
            unsigned lo, hi;
            __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = lo;
        }
        const int os_ymm = (xcr0 & 0x6) == 0x6;     // XMM + YMM state enabled by the OS
        const int os_zmm = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
        unsigned b7 = 0;
        if (__get_cpuid_count(7, 0, &a, &b7, &c, &d)) {
            const int avx2 = (b7 >> 5) & 1;
            const int f512 = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1,
                      vl = (b7 >> 31) & 1;
            if (avx && avx2 && fma && os_ymm) f |= X86_AVX2;
            if ((f & X86_AVX2) && f512 && dq && bw && vl && os_zmm) f |= X86_AVX512;
        }
    }
    atomic_store_explicit(&g_x86_features, f, memory_order_relaxed);
    return f;
}
#endif

/// Is `isa` usable on this CPU (and compiled into this binary)?
static int isa_supported(lathe_isa isa) {
    switch (isa) {
    case LATHE_ISA_SCALAR:
        return 1;
#if defined(__x86_64__)
    case LATHE_ISA_AVX2:
        return (x86_features() & X86_AVX2) != 0;
    case LATHE_ISA_AVX512:
        // The AVX-512 kernels use F, BW, VL and DQ (masks on all widths) plus FMA.
        return (x86_features() & X86_AVX512) != 0;
#endif
#if defined(__aarch64__)
    case LATHE_ISA_NEON:
        return 1;  // Advanced SIMD is mandatory on AArch64.
#endif
    default:
        return 0;
    }
}

/// Best ISA the CPU supports.
static lathe_isa best_isa(void) {
#if defined(__x86_64__)
    if (isa_supported(LATHE_ISA_AVX512)) return LATHE_ISA_AVX512;
    if (isa_supported(LATHE_ISA_AVX2)) return LATHE_ISA_AVX2;
    return LATHE_ISA_SCALAR;
#elif defined(__aarch64__)
    return LATHE_ISA_NEON;
#else
    return LATHE_ISA_SCALAR;
#endif
}

/// Ordering used for "downward only": scalar < avx2 < avx512 (x86), scalar < neon (arm).
static int isa_rank(lathe_isa isa) {
    switch (isa) {
    case LATHE_ISA_SCALAR: return 0;
    case LATHE_ISA_AVX2: return 1;
    case LATHE_ISA_AVX512: return 2;
    case LATHE_ISA_NEON: return 1;
    }
    return 0;
}

static lathe_isa decide_isa(void) {
    lathe_isa best = best_isa();
    const char *env = getenv("LATHE_ISA");
    if (env && *env) {
        lathe_isa want = best;
        if (!strcmp(env, "scalar")) want = LATHE_ISA_SCALAR;
        else if (!strcmp(env, "avx2")) want = LATHE_ISA_AVX2;
        else if (!strcmp(env, "avx512")) want = LATHE_ISA_AVX512;
        else if (!strcmp(env, "neon")) want = LATHE_ISA_NEON;
        if (isa_supported(want) && isa_rank(want) <= isa_rank(best)) return want;
    }
    return best;
}

lathe_isa lathe_active_isa(void) {
    int v = atomic_load_explicit(&g_active_isa, memory_order_acquire);
    if (v < 0) {
        // Racing first calls compute the same answer; whoever stores first wins.
        int expected = -1;
        int mine = (int)decide_isa();
        atomic_compare_exchange_strong(&g_active_isa, &expected, mine);
        v = atomic_load_explicit(&g_active_isa, memory_order_acquire);
    }
    return (lathe_isa)v;
}

int lathe_set_isa(lathe_isa isa) {
    if (!isa_supported(isa)) return -1;
    atomic_store_explicit(&g_active_isa, (int)isa, memory_order_release);
    return 0;
}

const char *lathe_isa_name(lathe_isa isa) {
    switch (isa) {
    case LATHE_ISA_SCALAR: return "scalar";
    case LATHE_ISA_AVX2: return "avx2";
    case LATHE_ISA_AVX512: return "avx512";
    case LATHE_ISA_NEON: return "neon";
    }
    return "unknown";
}

// ---- Grad mode ---------------------------------------------------------------------------------
// Per thread, enabled by default. Not in the header, so Swift never sees mutable global state.
static _Thread_local int t_grad_enabled = 1;

int lathe_grad_enabled(void) { return t_grad_enabled; }
void lathe_set_grad_enabled(int enabled) { t_grad_enabled = enabled ? 1 : 0; }
