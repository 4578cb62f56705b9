// Heap settings for tensor buffers (lathe_kernels.h).
//
// A training step frees and re-allocates the same large buffers (activations, gradients) every
// step. glibc's defaults give the top of the heap back to the OS whenever more than a few MB
// are free there, and serve blocks above a (dynamic) threshold with mmap, so every step
// faults the same pages in again: a quarter of the digits-CNN step was page faults and
// zeroing in the kernel. Keeping freed memory in the heap (no trimming, mmap only above
// 16 MB) removes that. The peak resident size stays the same (`lathe bench memory`: within
// noise of the defaults at 16 MB; a 32 MB threshold raised the checkpointed peak by ~15%
// through fragmentation), the memory is just not returned between steps.
#include "lathe_kernels.h"

#include <stdlib.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void lathe_tune_heap(void) {
#if defined(__GLIBC__)
    // A user's own glibc tuning (environment) or an explicit opt-out wins.
    if (getenv("MALLOC_TRIM_THRESHOLD_") || getenv("MALLOC_MMAP_THRESHOLD_") ||
        getenv("MALLOC_TOP_PAD_") || getenv("LATHE_DEFAULT_HEAP"))
        return;
    mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
#endif
}

// ---- Tensor buffers --------------------------------------------------------------------------
//
// Blocks of at least LARGE bytes are mapped on their own and, when freed, kept in a cache of
// exact page-rounded sizes for the next request of that size. A training step allocates the
// same sizes in the same order every step, so after the first step nearly every large block is
// a cached one: no page faults (as with the heap settings above) and none of the heap's
// fragmentation, which kept ~380 MB more resident than was live at the peak of a LoRA step of
// SmolLM2 (4 x 128 tokens: 1,727 MB resident against 1,301 MB of live tensors). The cache holds
// at most what the live large blocks are below their high-water mark (or CACHE_FLOOR), so
// live + cached stays within the most that was ever live: the blocks freed longest ago are
// unmapped past that. LATHE_NO_ALLOC_CACHE=1 serves every block from malloc.
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

enum { LARGE = 256 * 1024, PAGE = 4096, BUCKETS = 1024 };
static const size_t CACHE_FLOOR = 64u << 20;

typedef struct cached_block {
    void *p;
    size_t size;
    struct cached_block *next_same;           // bucket chain (same size class hash)
    struct cached_block *older, *newer;       // free order, for eviction
} cached_block;

static pthread_mutex_t g_alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static cached_block *g_buckets[BUCKETS];
static cached_block *g_oldest, *g_newest;
static size_t g_cached_bytes, g_live_large, g_high_large;
static long g_live_bytes, g_peak_bytes;
static int g_cache_mode = -1;  // -1 unknown, 0 off, 1 on

static void track(long delta) {
    long now = __atomic_add_fetch(&g_live_bytes, delta, __ATOMIC_RELAXED);
    long p = __atomic_load_n(&g_peak_bytes, __ATOMIC_RELAXED);
    while (now > p && !__atomic_compare_exchange_n(&g_peak_bytes, &p, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

static int cache_on(void) {
    int m = __atomic_load_n(&g_cache_mode, __ATOMIC_RELAXED);
    if (m < 0) {
        const char *e = getenv("LATHE_NO_ALLOC_CACHE");
        m = (e && *e && strcmp(e, "0") != 0) ? 0 : 1;
        __atomic_store_n(&g_cache_mode, m, __ATOMIC_RELAXED);
    }
    return m;
}

static void unlink_block(cached_block *b) {
    cached_block **q = &g_buckets[(b->size / PAGE) % BUCKETS];
    while (*q != b) q = &(*q)->next_same;
    *q = b->next_same;
    if (b->older) b->older->newer = b->newer; else g_oldest = b->newer;
    if (b->newer) b->newer->older = b->older; else g_newest = b->older;
    g_cached_bytes -= b->size;
}

void *lathe_alloc(size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes < LARGE || !cache_on()) {
        void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (p) track((long)bytes);
        return p;
    }
    size_t size = (bytes + PAGE - 1) & ~(size_t)(PAGE - 1);
    void *p = NULL;
    pthread_mutex_lock(&g_alloc_lock);
    // Chains are pushed at the head: the first match is the most recently freed block of this
    // size (its pages likeliest to be in the CPU's caches).
    cached_block *found = g_buckets[(size / PAGE) % BUCKETS];
    while (found && found->size != size) found = found->next_same;
    if (found) {
        unlink_block(found);
        p = found->p;
        free(found);
    }
    g_live_large += size;
    if (g_live_large > g_high_large) g_high_large = g_live_large;
    pthread_mutex_unlock(&g_alloc_lock);
    if (!p) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            pthread_mutex_lock(&g_alloc_lock);
            g_live_large -= size;
            pthread_mutex_unlock(&g_alloc_lock);
            return NULL;
        }
    }
    track((long)bytes);
    return p;
}

void lathe_free(void *p, size_t bytes) {
    if (!p) return;
    if (bytes == 0) bytes = 1;
    track(-(long)bytes);
    if (bytes < LARGE || !cache_on()) { free(p); return; }
    size_t size = (bytes + PAGE - 1) & ~(size_t)(PAGE - 1);
    cached_block *b = (cached_block *)malloc(sizeof(cached_block));
    pthread_mutex_lock(&g_alloc_lock);
    g_live_large -= size;
    if (!b) {
        pthread_mutex_unlock(&g_alloc_lock);
        munmap(p, size);
        return;
    }
    *b = (cached_block){.p = p, .size = size, .older = g_newest};
    cached_block **head = &g_buckets[(size / PAGE) % BUCKETS];
    b->next_same = *head;
    *head = b;
    if (g_newest) g_newest->newer = b; else g_oldest = b;
    g_newest = b;
    g_cached_bytes += size;
    // Beyond the bound, evict the blocks freed longest ago (unmapped outside the lock) that are
    // no larger than the excess, then the smallest block that covers what is left: never a
    // large block for a small excess. (The output head's logits buffer of a LoRA step of
    // SmolLM2, 25-33 MB freed early in the step and needed at the same point of the next one,
    // was unmapped every step for an excess of 128 KB: 6,000-8,000 page faults a step.)
    size_t room = g_high_large - g_live_large, limit = room > CACHE_FLOOR ? room : CACHE_FLOOR;
    cached_block *evicted = NULL;
    for (cached_block *o = g_oldest; o && g_cached_bytes > limit;) {
        cached_block *next = o->newer;
        if (o->size <= g_cached_bytes - limit) {
            unlink_block(o);
            o->next_same = evicted;
            evicted = o;
        }
        o = next;
    }
    while (g_cached_bytes > limit && g_oldest) {
        // The smallest block that covers the rest (the oldest of equals).
        const size_t excess = g_cached_bytes - limit;
        cached_block *o = NULL;
        for (cached_block *q = g_oldest; q; q = q->newer)
            if (q->size >= excess && (!o || q->size < o->size)) o = q;
        if (!o) o = g_oldest;
        unlink_block(o);
        o->next_same = evicted;
        evicted = o;
    }
    pthread_mutex_unlock(&g_alloc_lock);
    while (evicted) {
        cached_block *n = evicted->next_same;
        munmap(evicted->p, evicted->size);
        free(evicted);
        evicted = n;
    }
}

void lathe_alloc_release_cache(void) {
    pthread_mutex_lock(&g_alloc_lock);
    g_high_large = g_live_large;  // the cache's bound starts over from what is live now
    cached_block *all = g_oldest;
    memset(g_buckets, 0, sizeof g_buckets);
    g_oldest = g_newest = NULL;
    g_cached_bytes = 0;
    pthread_mutex_unlock(&g_alloc_lock);
    while (all) {
        cached_block *n = all->newer;
        munmap(all->p, all->size);
        free(all);
        all = n;
    }
}

long lathe_alloc_live_bytes(void) { return __atomic_load_n(&g_live_bytes, __ATOMIC_RELAXED); }
long lathe_alloc_peak_bytes(void) { return __atomic_load_n(&g_peak_bytes, __ATOMIC_RELAXED); }
long lathe_alloc_cached_bytes(void) {
    pthread_mutex_lock(&g_alloc_lock);
    long c = (long)g_cached_bytes;
    pthread_mutex_unlock(&g_alloc_lock);
    return c;
}
void lathe_alloc_reset_peak(void) { __atomic_store_n(&g_peak_bytes, __atomic_load_n(&g_live_bytes, __ATOMIC_RELAXED), __ATOMIC_RELAXED); }
