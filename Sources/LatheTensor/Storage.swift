import CLatheKernels

/// Reference-counted, 64-byte-aligned raw memory behind one or more tensors.
///
/// Tensors share a `Storage` until one of them is mutated (copy on write, see
/// ``Tensor/withUnsafeMutablePointer(_:)``).
final class Storage: @unchecked Sendable {
    static let alignment = 64
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
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: Storage.alignment)
    }

    /// Zero-filled storage.
    convenience init(zeroedByteCount byteCount: Int) {
        self.init(byteCount: byteCount)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }

    deinit { pointer.deallocate() }
}
