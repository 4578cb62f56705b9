// A small pthreads pool behind lathe_parallel_for.
//
// Design
//  * Created lazily on the first parallel call; size = LATHE_NUM_THREADS (>= 1) if set, else the
//    number of online cores. The caller is one of the threads, so the pool owns size-1 workers.
//  * A job is published through one 64-bit atomic word: high 32 bits = job generation, low 32
//    bits = items not yet claimed. Threads claim an item by decrementing that count with a
//    compare-and-swap, so a claim only succeeds while the job it read is current and still has
//    items; whether an item is left is decided by the word alone. (An earlier version kept the
//    next item index in the word and compared it with `n`: a worker late from a finished job
//    could read the next job's larger `n` before that job's word was published, claim a phantom
//    item, and count it as done, so the caller returned while an item still ran.)
//  * The caller runs items too, then waits until `done` reaches n. It never waits for workers
//    that did not take part (one descheduled worker does not stall a call).
//  * Idle workers spin briefly (cheap back-to-back calls of small ops) and then sleep on a
//    condition variable. The caller only signals when someone is actually asleep.
//  * Calls from inside a task (nested) and calls from a second thread while the pool is busy
//    run inline on the calling thread: no deadlock, same results (items are independent).
#include "lathe_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax(void) { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax(void) { __asm__ __volatile__("yield" ::: "memory"); }
#else
static inline void cpu_relax(void) {}
#endif

enum {
    // One pause is ~25 ns on Zen 5 (~5-40 ns elsewhere).
    SPIN_WORKER = 4000,  // pause iterations an idle worker spins before sleeping (~100 us)
    SPIN_CALLER = 2000,  // pause iterations the caller spins before yielding its time slice
};

// All pool state is private to this file.
typedef struct {
    _Atomic uint64_t word;          // (generation << 32) | next item to claim
    _Atomic(lathe_task_fn) fn;      // current job
    _Atomic(void *) ctx;
    _Atomic long n;
    _Atomic long done;              // items of the current job finished
    _Atomic int sleepers;           // workers blocked on cv
    _Atomic int shutdown;           // workers exit when set
    pthread_mutex_t mu;             // protects sleeping on cv
    pthread_cond_t cv;
    pthread_mutex_t dispatch_mu;    // one job in flight at a time; also guards resize
    int nworkers;                   // workers currently running
    pthread_t *threads;
} lathe_pool;

static lathe_pool g_pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .dispatch_mu = PTHREAD_MUTEX_INITIALIZER,
};
static _Atomic int g_size = 0;       // configured size; 0 = not decided yet
static _Thread_local int t_in_pool;  // 1 inside a worker or while the caller runs items

static int default_size(void) {
    const char *env = getenv("LATHE_NUM_THREADS");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        if (v >= 1) return v > 1024 ? 1024 : (int)v;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c < 1) c = 1;
    return c > 1024 ? 1024 : (int)c;
}

int lathe_num_threads(void) {
    int s = atomic_load_explicit(&g_size, memory_order_acquire);
    if (s == 0) {
        int expected = 0;
        atomic_compare_exchange_strong(&g_size, &expected, default_size());
        s = atomic_load_explicit(&g_size, memory_order_acquire);
    }
    return s;
}

/// Claims and runs items of job `gen` until none are left (or the job changed).
static void run_items(uint32_t gen) {
    for (;;) {
        uint64_t w = atomic_load_explicit(&g_pool.word, memory_order_acquire);
        if ((uint32_t)(w >> 32) != gen) return;
        const long left = (long)(uint32_t)w;  // items of job `gen` not yet claimed
        if (left == 0) return;
        lathe_task_fn fn = atomic_load_explicit(&g_pool.fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&g_pool.ctx, memory_order_relaxed);
        long n = atomic_load_explicit(&g_pool.n, memory_order_relaxed);
        // Succeeds only if the word is still (gen, left): no item was claimed since we read it,
        // so job `gen` was current and unfinished all along (the caller cannot start the next
        // job before every item is claimed), and fn/ctx/n read above are its own.
        if (!atomic_compare_exchange_weak_explicit(&g_pool.word, &w, w - 1,
                                                   memory_order_acq_rel, memory_order_relaxed))
            continue;
        fn(ctx, n - left);
        atomic_fetch_add_explicit(&g_pool.done, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    uint32_t seen = (uint32_t)(uintptr_t)arg;  // generation current when we were created
    t_in_pool = 1;
    for (;;) {
        uint64_t w;
        int spins = 0;
        for (;;) {
            if (atomic_load_explicit(&g_pool.shutdown, memory_order_acquire)) return NULL;
            w = atomic_load_explicit(&g_pool.word, memory_order_acquire);
            if ((uint32_t)(w >> 32) != seen) break;
            if (++spins < SPIN_WORKER) { cpu_relax(); continue; }
            // Sleep. sleepers++ and the re-check are seq_cst, pairing with the caller's
            // seq_cst publish-then-read-sleepers, so a wake-up cannot be lost.
            pthread_mutex_lock(&g_pool.mu);
            atomic_fetch_add(&g_pool.sleepers, 1);
            while ((uint32_t)(atomic_load(&g_pool.word) >> 32) == seen &&
                   !atomic_load(&g_pool.shutdown))
                pthread_cond_wait(&g_pool.cv, &g_pool.mu);
            atomic_fetch_sub(&g_pool.sleepers, 1);
            pthread_mutex_unlock(&g_pool.mu);
            spins = 0;
        }
        seen = (uint32_t)(w >> 32);
        run_items(seen);
    }
}

/// Stops and joins all workers. Caller holds dispatch_mu.
static void stop_workers(void) {
    if (g_pool.nworkers == 0) return;
    pthread_mutex_lock(&g_pool.mu);
    atomic_store(&g_pool.shutdown, 1);
    pthread_cond_broadcast(&g_pool.cv);
    pthread_mutex_unlock(&g_pool.mu);
    for (int i = 0; i < g_pool.nworkers; i++) pthread_join(g_pool.threads[i], NULL);
    free(g_pool.threads);
    g_pool.threads = NULL;
    g_pool.nworkers = 0;
    atomic_store(&g_pool.shutdown, 0);
}

/// Makes sure size-1 workers run. Caller holds dispatch_mu.
static void ensure_workers(int size) {
    int want = size - 1;
    if (g_pool.nworkers == want) return;
    stop_workers();
    if (want <= 0) return;
    g_pool.threads = (pthread_t *)calloc((size_t)want, sizeof(pthread_t));
    if (!g_pool.threads) return;
    uint32_t gen = (uint32_t)(atomic_load(&g_pool.word) >> 32);
    for (int i = 0; i < want; i++) {
        if (pthread_create(&g_pool.threads[i], NULL, worker_main, (void *)(uintptr_t)gen) != 0)
            break;  // run with fewer workers; the caller still does all remaining items
        g_pool.nworkers++;
    }
}

void lathe_set_num_threads(int n) {
    if (n < 1) n = 1;
    if (n > 1024) n = 1024;
    atomic_store(&g_size, n);
    // From inside a task the pool is busy (and maybe held by this very thread): only record the
    // size; the next dispatch re-creates the workers. Otherwise resize now.
    if (t_in_pool) return;
    pthread_mutex_lock(&g_pool.dispatch_mu);
    if (g_pool.nworkers != n - 1) stop_workers();  // re-created lazily at the next call
    pthread_mutex_unlock(&g_pool.dispatch_mu);
}

static void run_inline(long n, lathe_task_fn fn, void *ctx) {
    for (long i = 0; i < n; i++) fn(ctx, i);
}

void lathe_parallel_for(long n, lathe_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (n == 1 || t_in_pool || lathe_num_threads() <= 1) { run_inline(n, fn, ctx); return; }
    // Another thread owns the pool right now: do the work ourselves rather than queue.
    if (pthread_mutex_trylock(&g_pool.dispatch_mu) != 0) { run_inline(n, fn, ctx); return; }
    ensure_workers(atomic_load(&g_size));
    if (g_pool.nworkers == 0) {
        pthread_mutex_unlock(&g_pool.dispatch_mu);
        run_inline(n, fn, ctx);
        return;
    }
    // Item indices live in the low 32 bits of the word; items past 2^31-1 (never expected in
    // practice) run inline afterwards, in order.
    const long round_max = 0x7fffffffL;
    long cnt = n < round_max ? n : round_max;
    atomic_store_explicit(&g_pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&g_pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&g_pool.n, cnt, memory_order_relaxed);
    atomic_store_explicit(&g_pool.done, 0, memory_order_relaxed);
    uint32_t gen = (uint32_t)(atomic_load(&g_pool.word) >> 32) + 1;
    atomic_store(&g_pool.word, ((uint64_t)gen << 32) | (uint64_t)cnt);  // seq_cst publish (release for fields)
    if (atomic_load(&g_pool.sleepers) > 0) {
        pthread_mutex_lock(&g_pool.mu);
        pthread_cond_broadcast(&g_pool.cv);
        pthread_mutex_unlock(&g_pool.mu);
    }
    t_in_pool = 1;
    run_items(gen);
    t_in_pool = 0;
    int spins = 0;
    while (atomic_load_explicit(&g_pool.done, memory_order_acquire) < cnt) {
        if (++spins < SPIN_CALLER) cpu_relax();
        else { sched_yield(); spins = 0; }
    }
    pthread_mutex_unlock(&g_pool.dispatch_mu);
    for (long i = cnt; i < n; i++) fn(ctx, i);
}
