import CLatheKernels

/// Reference-counted, 64-byte-aligned raw memory behind one or more tensors.
///
/// Tensors share a `Storage` until one of them is mutated (copy on write, see
/// ``Tensor/withUnsafeMutablePointer(_:)``).
final class Storage: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    /// Heap settings for buffers freed and re-allocated every step (see `lathe_tune_heap`),
    /// applied once before the first allocation.
    private static let heapTuned: Bool = {
        lathe_tune_heap()
        return true
    }()

    /// Uninitialised storage of `byteCount` bytes.
    init(byteCount: Int) {
        _ = Storage.heapTuned
        self.byteCount = byteCount
        guard let p = lathe_alloc(byteCount) else {
            fatalError("out of memory: a tensor buffer of \(byteCount) bytes could not be allocated")
        }
        pointer = p
    }

    /// Zero-filled storage.
    convenience init(zeroedByteCount byteCount: Int) {
        self.init(byteCount: byteCount)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }

    deinit { lathe_free(pointer, byteCount) }
}

/// Memory held by tensor buffers (all tensors of the process; see `lathe_alloc` in alloc.c).
public enum TensorMemory {
    /// Bytes of live tensor buffers.
    public static var liveBytes: Int { lathe_alloc_live_bytes() }
    /// The most bytes live at once since the process started or ``resetPeak()``.
    public static var peakBytes: Int { lathe_alloc_peak_bytes() }
    /// Freed buffers kept for reuse (mapped, not returned to the system yet).
    public static var cachedBytes: Int { lathe_alloc_cached_bytes() }
    public static func resetPeak() { lathe_alloc_reset_peak() }
    /// Returns the cached free buffers to the system (and starts the cache's bound over from
    /// the buffers live now).
    public static func releaseCache() { lathe_alloc_release_cache() }
}
