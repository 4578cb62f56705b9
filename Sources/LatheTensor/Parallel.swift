import CLatheKernels

/// The one thread pool (in CLatheKernels), sized to the cores; `LATHE_NUM_THREADS` overrides.
public enum ThreadPool {
    /// Threads the pool uses.
    public static var threadCount: Int {
        get { Int(lathe_num_threads()) }
        set { lathe_set_num_threads(Int32(newValue)) }
    }

    /// Runs `body(i)` for `i` in `0..<n` across the pool and waits for all.
    /// How the work is split must not depend on the thread count (determinism).
    public static func forEach(_ n: Int, _ body: (Int) -> Void) {
        if n <= 0 { return }
        if n == 1 || lathe_num_threads() <= 1 {
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var fn = escapable
            withUnsafeMutablePointer(to: &fn) { ptr in
                lathe_parallel_for(n, { ctx, i in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(i)
                }, ptr)
            }
        }
    }

    /// Splits `0..<n` into fixed chunks of `grain` and runs `body(range)` for each.
    public static func forChunks(_ n: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let chunks = (n + grain - 1) / grain
        if chunks <= 1 { if n > 0 { body(0..<n) }; return }
        forEach(chunks) { c in body(c * grain..<min(n, (c + 1) * grain)) }
    }
}
