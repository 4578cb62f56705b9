import CLatheKernels

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

extension Tensor {
    /// A float32 tensor from little-endian float32, float16 or bfloat16 `bytes`, converted
    /// straight from them (no copy in the source dtype first: the bytes may be a mapped file).
    public init(float32From bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType) {
        precondition([.float32, .float16, .bfloat16].contains(dtype), "Tensor(float32From:): \(dtype) is not a float dtype")
        let count = Shape.count(shape)
        precondition(bytes.count == count * dtype.byteSize,
                     "Tensor(float32From:): \(bytes.count) bytes do not hold \(shape) of \(dtype) (\(count * dtype.byteSize) bytes)")
        self.init(uninitializedShape: shape, dtype: .float32)
        guard count > 0 else { return }
        let y = storage.pointer.assumingMemoryBound(to: Float.self)
        let base = bytes.baseAddress!
        if dtype == .float32 {
            y.withMemoryRebound(to: UInt8.self, capacity: bytes.count) { $0.update(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count) }
            return
        }
        // The kernels read aligned uint16; a file may place a tensor at an odd offset.
        let convert = dtype == .float16 ? lathe_f16_to_f32 : lathe_bf16_to_f32
        if Int(bitPattern: base) % 2 == 0 {
            convert(base.assumingMemoryBound(to: UInt16.self), y, count)
        } else {
            let aligned = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
            defer { aligned.deallocate() }
            aligned.copyMemory(from: base, byteCount: bytes.count)
            convert(aligned.assumingMemoryBound(to: UInt16.self), y, count)
        }
    }
}
