import CLatheKernels

extension Tensor {
    /// The same values as `dtype`.
    ///
    /// Float to float16/bfloat16 rounds to nearest even (overflow gives infinity); float to
    /// an integer type truncates toward zero and wraps like a C cast for out-of-range values
    /// of int8/uint8; anything non-zero becomes `true` for bool. Gradients flow through
    /// conversions between float32 and float32 only (``to(_:)`` to another dtype detaches).
    public func to(_ target: DType) -> Tensor {
        if target == dtype { return self }
        let src = contiguousStorageView()
        let n = count
        if !dtype.isFloatingPoint && !target.isFloatingPoint {
            return src.integerConverted(to: target)  // exact: no Float32 round trip above 2^24
        }
        // To float32 first.
        let f: Tensor
        if dtype == .float32 {
            f = src
        } else {
            f = Tensor(uninitializedShape: shape, dtype: .float32)
            let y = f.floatPointer
            switch dtype {
            case .float16: lathe_f16_to_f32(src.pointer(as: UInt16.self), y, n)
            case .bfloat16: lathe_bf16_to_f32(src.pointer(as: UInt16.self), y, n)
            case .int64: let p = src.pointer(as: Int64.self); for i in 0..<n { y[i] = Float(p[i]) }
            case .int32: let p = src.pointer(as: Int32.self); for i in 0..<n { y[i] = Float(p[i]) }
            case .int8: let p = src.pointer(as: Int8.self); for i in 0..<n { y[i] = Float(p[i]) }
            case .uint8, .bool: let p = src.pointer(as: UInt8.self); for i in 0..<n { y[i] = Float(p[i]) }
            case .float32: break
            }
        }
        if target == .float32 { return f }
        let out = Tensor(uninitializedShape: shape, dtype: target)
        let x = f.floatPointer
        switch target {
        case .float16: lathe_f32_to_f16(x, out.pointer(as: UInt16.self), n)
        case .bfloat16: lathe_f32_to_bf16(x, out.pointer(as: UInt16.self), n)
        case .int64: let p = out.pointer(as: Int64.self); for i in 0..<n { p[i] = int64(x[i]) }
        case .int32: let p = out.pointer(as: Int32.self); for i in 0..<n { p[i] = Int32(clamping: int64(x[i])) }
        case .int8: let p = out.pointer(as: Int8.self); for i in 0..<n { p[i] = Int8(truncatingIfNeeded: int64(x[i])) }
        case .uint8: let p = out.pointer(as: UInt8.self); for i in 0..<n { p[i] = UInt8(truncatingIfNeeded: int64(x[i])) }
        case .bool: let p = out.pointer(as: UInt8.self); for i in 0..<n { p[i] = x[i] != 0 ? 1 : 0 }
        case .float32: break
        }
        return out
    }

    /// Integer-to-integer conversion through Int64 (C-cast wrapping for int8/uint8; bool is
    /// "not zero"). `self` is contiguous.
    private func integerConverted(to target: DType) -> Tensor {
        let n = count
        var values = [Int64](repeating: 0, count: n)
        switch dtype {
        case .int64: let p = pointer(as: Int64.self); for i in 0..<n { values[i] = p[i] }
        case .int32: let p = pointer(as: Int32.self); for i in 0..<n { values[i] = Int64(p[i]) }
        case .int8: let p = pointer(as: Int8.self); for i in 0..<n { values[i] = Int64(p[i]) }
        default: let p = pointer(as: UInt8.self); for i in 0..<n { values[i] = Int64(p[i]) }
        }
        let out = Tensor(uninitializedShape: shape, dtype: target)
        switch target {
        case .int64: let p = out.pointer(as: Int64.self); for i in 0..<n { p[i] = values[i] }
        case .int32: let p = out.pointer(as: Int32.self); for i in 0..<n { p[i] = Int32(truncatingIfNeeded: values[i]) }
        case .int8: let p = out.pointer(as: Int8.self); for i in 0..<n { p[i] = Int8(truncatingIfNeeded: values[i]) }
        case .bool: let p = out.pointer(as: UInt8.self); for i in 0..<n { p[i] = values[i] != 0 ? 1 : 0 }
        default: let p = out.pointer(as: UInt8.self); for i in 0..<n { p[i] = UInt8(truncatingIfNeeded: values[i]) }
        }
        return out
    }

    /// Raw 16-bit patterns of a float16 or bfloat16 tensor.
    public var bitPatterns16: [UInt16] {
        precondition(dtype.byteSize == 2, "bitPatterns16: tensor is \(dtype)")
        let c = contiguousStorageView()
        return Array(UnsafeBufferPointer(start: c.pointer(as: UInt16.self), count: count))
    }
}

/// Float to Int64 truncating toward zero; NaN and out-of-range values give 0 or the bound.
@inline(__always) func int64(_ x: Float) -> Int64 {
    if x.isNaN { return 0 }
    if x >= 9.2e18 { return .max }
    if x <= -9.2e18 { return .min }
    return Int64(x)
}
