import CLatheKernels

/// An n-dimensional array with reverse-mode autodiff.
///
/// `Tensor` is a value type: copies share storage until one is mutated (copy on write).
/// Shapes broadcast like NumPy. Movement ops (``reshaped(_:)``, ``permuted(_:)``,
/// ``transposed(_:_:)``, ``sliced(dim:start:end:step:)``, ``expanded(to:)``) return views
/// over the same storage where they can; ops that need dense input make it contiguous.
///
/// A tensor that ``requiresGrad`` records how it was computed, and ``backward(_:)`` fills
/// ``grad`` of the leaves it depends on. See `Autograd.swift`.
public struct Tensor: @unchecked Sendable {
    var storage: Storage
    /// Size of each dimension; `[]` for a scalar.
    public let shape: [Int]
    /// Step in elements between neighbours along each dimension (0 for a broadcast dim).
    public let strides: [Int]
    /// Offset in elements of the first element within the storage.
    let offset: Int
    public let dtype: DType
    /// The autodiff node: a leaf (parameter) or the op that produced this tensor.
    var node: GradNode?

    init(storage: Storage, shape: [Int], strides: [Int], offset: Int, dtype: DType, node: GradNode? = nil) {
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.dtype = dtype
        self.node = node
    }

    /// A new contiguous tensor with uninitialised memory.
    init(uninitializedShape shape: [Int], dtype: DType = .float32) {
        let count = Shape.count(shape)
        self.init(storage: Storage(byteCount: count * dtype.byteSize), shape: shape,
                  strides: Shape.contiguousStrides(shape), offset: 0, dtype: dtype)
    }

    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Number of elements.
    public var count: Int { Shape.count(shape) }
    /// True when the elements are laid out densely in row-major order from `offset`.
    public var isContiguous: Bool { Shape.isContiguous(shape: shape, strides: strides) }

    /// The size of dimension `dim` (negative counts from the end).
    public func size(_ dim: Int) -> Int { shape[Shape.axis(dim, rank: rank, op: "size")] }

    // MARK: - Raw access

    /// Pointer to the first element, typed. Read-only use.
    func pointer<T>(as type: T.Type) -> UnsafeMutablePointer<T> {
        (storage.pointer + offset * dtype.byteSize).assumingMemoryBound(to: T.self)
    }

    /// Float32 pointer to the first element (precondition: dtype float32).
    var floatPointer: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "expected a float32 tensor, got \(dtype)")
        return pointer(as: Float.self)
    }

    /// Gives mutable access to the contiguous float32 elements, copying the storage first
    /// if it is shared (copy on write) or the tensor is a view.
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        precondition(dtype == .float32, "withUnsafeMutableBufferPointer: tensor is \(dtype), not float32")
        makeUniqueContiguous()
        return try body(UnsafeMutableBufferPointer(start: floatPointer, count: count))
    }

    /// Read-only access to contiguous float32 elements (copies a view first if needed).
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition(dtype == .float32, "withUnsafeBufferPointer: tensor is \(dtype), not float32")
        let c = contiguousStorageView()
        return try body(UnsafeBufferPointer(start: c.floatPointer, count: c.count))
    }

    /// Makes this tensor own dense storage that no other tensor shares.
    mutating func makeUniqueContiguous() {
        if !isKnownUniquelyReferenced(&storage) || !isContiguous || storage.byteCount != count * dtype.byteSize {
            let copy = contiguousCopy()
            storage = copy.storage
            self = Tensor(storage: copy.storage, shape: shape, strides: copy.strides, offset: 0, dtype: dtype, node: node)
        }
    }

    /// This tensor if contiguous, else a dense copy; no autodiff.
    /// Whether `other` is the same view of the same buffer (same storage, offset, shape, strides
    /// and type): a cheap identity test for caches of values derived from a tensor.
    public func isSameView(as other: Tensor) -> Bool {
        storage === other.storage && offset == other.offset && shape == other.shape && strides == other.strides && dtype == other.dtype
    }

    func contiguousStorageView() -> Tensor {
        isContiguous ? self : contiguousCopy()
    }

    /// A dense copy of the elements (no autodiff).
    func contiguousCopy() -> Tensor {
        var out = Tensor(uninitializedShape: shape, dtype: dtype)
        out.node = nil
        StridedCopy.copy(from: self, into: out.storage.pointer)
        return out
    }

    // MARK: - Element access

    /// All elements as Float (converting from the tensor's dtype), in row-major order.
    public var scalars: [Float] {
        let c = to(.float32).contiguousStorageView()
        return Array(UnsafeBufferPointer(start: c.floatPointer, count: c.count))
    }

    /// All elements as Int (indices, labels), in row-major order.
    public var intScalars: [Int] {
        let c = contiguousStorageView()
        switch dtype {
        case .int64: return UnsafeBufferPointer(start: c.pointer(as: Int64.self), count: c.count).map { Int($0) }
        case .int32: return UnsafeBufferPointer(start: c.pointer(as: Int32.self), count: c.count).map { Int($0) }
        case .int8: return UnsafeBufferPointer(start: c.pointer(as: Int8.self), count: c.count).map { Int($0) }
        case .uint8, .bool: return UnsafeBufferPointer(start: c.pointer(as: UInt8.self), count: c.count).map { Int($0) }
        default: return scalars.map { Int($0) }
        }
    }

    /// The single element of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item: tensor of shape \(shape) has \(count) elements, not 1")
        return scalars[0]
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let values = count <= 64 ? (dtype.isFloatingPoint ? "\(scalars)" : "\(intScalars)") : "[\(count) elements]"
        return "Tensor(shape: \(shape), dtype: \(dtype), \(values)\(requiresGrad ? ", requiresGrad" : ""))"
    }
}
