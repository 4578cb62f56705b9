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
