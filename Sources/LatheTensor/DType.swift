/// The element type of a ``Tensor``.
///
/// Lathe computes in `float32`. `float16` and `bfloat16` are storage types for weights
/// (convert with ``Tensor/to(_:)``); `int32`/`int64` hold indices; `int8`/`uint8` hold
/// quantized data; `bool` holds masks (one byte per element, 0 or 1).
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible {
    case float32, float16, bfloat16, int64, int32, int8, uint8, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: 4
        case .float16, .bfloat16: 2
        case .int64: 8
        case .int8, .uint8, .bool: 1
        }
    }

    public var isFloatingPoint: Bool { self == .float32 || self == .float16 || self == .bfloat16 }

    public var description: String { rawValue }
}
