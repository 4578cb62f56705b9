extension Tensor {
    /// A tensor that copies `bytes` (little-endian elements of `dtype`, row-major).
    /// Stops if the byte count does not match `shape` and `dtype`; check first when the bytes
    /// come from outside (files).
    public init(bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType) {
        let count = Shape.count(shape)
        precondition(bytes.count == count * dtype.byteSize,
                     "Tensor(bytes:): \(bytes.count) bytes do not hold \(shape) of \(dtype) (\(count * dtype.byteSize) bytes)")
        self.init(uninitializedShape: shape, dtype: dtype)
        if count > 0 { storage.pointer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
    }

    /// Calls `body` with the elements' bytes in row-major order (copying a view first).
    public func withUnsafeRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let c = contiguousStorageView()
        return try body(UnsafeRawBufferPointer(start: c.storage.pointer + c.offset * dtype.byteSize, count: c.count * dtype.byteSize))
    }

    /// Bytes the elements take (`count * dtype.byteSize`).
    public var byteCount: Int { count * dtype.byteSize }
}
