import CLatheKernels

extension Tensor {
    /// A float32 tensor holding `values` in row-major order.
    public init(_ values: [Float], shape: [Int]? = nil) {
        let shape = shape ?? [values.count]
        precondition(Shape.count(shape) == values.count,
                     "Tensor(_:shape:): \(values.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape, dtype: .float32)
        values.withUnsafeBufferPointer { floatPointer.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A float32 scalar (shape `[]`).
    public init(_ value: Float) { self.init([value], shape: []) }

    /// An integer tensor (int64 by default; also int32, int8, uint8, bool) holding `values`.
    public init(_ values: [Int], shape: [Int]? = nil, dtype: DType = .int64) {
        let shape = shape ?? [values.count]
        precondition(Shape.count(shape) == values.count,
                     "Tensor(_:shape:dtype:): \(values.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape, dtype: dtype)
        switch dtype {
        case .int64: for (i, v) in values.enumerated() { pointer(as: Int64.self)[i] = Int64(v) }
        case .int32: for (i, v) in values.enumerated() { pointer(as: Int32.self)[i] = Int32(v) }
        case .int8: for (i, v) in values.enumerated() { pointer(as: Int8.self)[i] = Int8(v) }
        case .uint8: for (i, v) in values.enumerated() { pointer(as: UInt8.self)[i] = UInt8(v) }
        case .bool: for (i, v) in values.enumerated() { pointer(as: UInt8.self)[i] = v != 0 ? 1 : 0 }
        case .float32: for (i, v) in values.enumerated() { floatPointer[i] = Float(v) }
        case .float16, .bfloat16:
            self = Tensor(values.map { Float($0) }, shape: shape).to(dtype)
        }
    }

    /// A boolean mask.
    public init(_ values: [Bool], shape: [Int]? = nil) {
        self.init(values.map { $0 ? 1 : 0 }, shape: shape, dtype: .bool)
    }

    /// A tensor of `shape` with every element `value`.
    public static func full(_ shape: [Int], _ value: Float, dtype: DType = .float32) -> Tensor {
        var t = Tensor(uninitializedShape: shape, dtype: .float32)
        t.floatPointer.initialize(repeating: value, count: t.count)
        if dtype != .float32 { t = t.to(dtype) }
        return t
    }

    public static func zeros(_ shape: [Int], dtype: DType = .float32) -> Tensor {
        Tensor(storage: Storage(zeroedByteCount: Shape.count(shape) * dtype.byteSize), shape: shape,
               strides: Shape.contiguousStrides(shape), offset: 0, dtype: dtype)
    }

    public static func ones(_ shape: [Int], dtype: DType = .float32) -> Tensor { full(shape, 1, dtype: dtype) }

    public static func zeros(like t: Tensor) -> Tensor { zeros(t.shape, dtype: t.dtype) }
    public static func ones(like t: Tensor) -> Tensor { ones(t.shape, dtype: t.dtype) }

    /// `[start, start + step, ...]` up to but excluding `end`, as float32.
    public static func arange(_ start: Float, _ end: Float, step: Float = 1) -> Tensor {
        precondition(step != 0, "arange: step must not be 0")
        let n = Swift.max(0, Int((Double(end - start) / Double(step)).rounded(.up)))
        return Tensor((0..<n).map { start + Float($0) * step })
    }

    /// `[0, 1, ..., end - 1]` as int64.
    public static func arange(_ end: Int) -> Tensor { Tensor(Array(0..<end)) }

    /// `count` evenly spaced values from `start` to `end` inclusive.
    public static func linspace(_ start: Float, _ end: Float, count: Int) -> Tensor {
        precondition(count >= 0, "linspace: count must be >= 0")
        if count == 1 { return Tensor([start]) }
        let step = (Double(end) - Double(start)) / Double(count - 1)
        return Tensor((0..<count).map { i in i == count - 1 ? end : Float(Double(start) + Double(i) * step) })
    }

    /// The `n` x `m` identity (ones on the diagonal).
    public static func eye(_ n: Int, _ m: Int? = nil) -> Tensor {
        let m = m ?? n
        let t = zeros([n, m])
        for i in 0..<Swift.min(n, m) { t.floatPointer[i * m + i] = 1 }
        return t
    }
}
