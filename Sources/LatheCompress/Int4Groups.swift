import LatheIO

/// A matrix `[rows, cols]` quantized to 4 bits in groups of 32 along each row, in the two
/// formats of GGUF's legacy 4-bit blocks, with fp16 scales:
///
/// - symmetric (Q4_0): `w = d (u - 8)`, `u` in `[0, 15]`;
/// - asymmetric (Q4_1): `w = d u + m`.
///
/// The codes are computed against the fp16-rounded `d` and `m`, so the stored blocks give
/// back exactly ``dequantized()``: the same values as a GGUF Q4_0/Q4_1 block
/// (``ggufBlocks()``) and as Lathe's ``GroupwiseWeights`` (``groupwiseWeights()``).
public struct Int4Groups: Equatable, Sendable {
    /// Elements that share a scale (GGUF's block size).
    public static let groupSize = 32

    public let rows: Int, cols: Int
    public let symmetric: Bool
    /// One code per element, `[rows, cols]`, each in `[0, 15]`.
    public var codes: [UInt8]
    /// fp16 bits, `[rows, cols / 32]`.
    public var scales: [UInt16]
    /// fp16 bits, `[rows, cols / 32]`; empty when symmetric.
    public var mins: [UInt16]

    public var groups: Int { cols / Self.groupSize }

    /// Empty (all codes 0, scales 0) weights for `rows` by `cols` (a multiple of 32).
    public init(rows: Int, cols: Int, symmetric: Bool) {
        precondition(rows > 0 && cols > 0 && cols % Self.groupSize == 0, "Int4Groups: [\(rows), \(cols)] is not whole groups of 32")
        (self.rows, self.cols, self.symmetric) = (rows, cols, symmetric)
        codes = [UInt8](repeating: 0, count: rows * cols)
        scales = [UInt16](repeating: 0, count: rows * cols / Self.groupSize)
        mins = symmetric ? [] : [UInt16](repeating: 0, count: rows * cols / Self.groupSize)
    }

    /// Round-to-nearest of `w` `[rows, cols]` row-major: each group's grid from its own values
    /// (``Int4Grid/init(_:symmetric:)``).
    public init(roundingToNearest w: [Float], rows: Int, cols: Int, symmetric: Bool) {
        self.init(rows: rows, cols: cols, symmetric: symmetric)
        precondition(w.count == rows * cols, "Int4Groups: \(w.count) values are not [\(rows), \(cols)]")
        w.withUnsafeBufferPointer { p in
            for r in 0..<rows {
                for g in 0..<groups {
                    let start = r * cols + g * Self.groupSize
                    let grid = Int4Grid(UnsafeBufferPointer(rebasing: p[start..<start + Self.groupSize]), symmetric: symmetric)
                    set(grid, row: r, group: g)
                    for k in start..<start + Self.groupSize { codes[k] = grid.code(p[k]) }
                }
            }
        }
    }

    /// Stores `grid` as the scale (and min) of group `group` of row `row`.
    public mutating func set(_ grid: Int4Grid, row: Int, group: Int) {
        scales[row * groups + group] = grid.scaleBits
        if !symmetric { mins[row * groups + group] = grid.minBits ?? 0 }
    }

    /// The grid of group `group` of row `row`.
    public func grid(row: Int, group: Int) -> Int4Grid {
        Int4Grid(scaleBits: scales[row * groups + group], minBits: symmetric ? nil : mins[row * groups + group])
    }

    /// The weights the codes stand for, `[rows, cols]` row-major.
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for g in 0..<groups {
                let grid = self.grid(row: r, group: g), start = r * cols + g * Self.groupSize
                for k in start..<start + Self.groupSize { out[k] = grid.value(codes[k]) }
            }
        }
        return out
    }

    /// The GGUF type of ``ggufBlocks()``: Q4_0 or Q4_1.
    public var ggufType: GGMLType { symmetric ? .q4_0 : .q4_1 }

    /// GGUF blocks (Q4_0: fp16 `d` and 16 bytes; Q4_1: fp16 `d`, fp16 `m` and 16 bytes), row by
    /// row; element `j` of a block in the low nibble of byte `j`, element `j + 16` in its high
    /// nibble.
    public func ggufBlocks() -> [UInt8] {
        let blockBytes = symmetric ? 18 : 20
        var out = [UInt8](repeating: 0, count: rows * groups * blockBytes)
        for r in 0..<rows {
            for g in 0..<groups {
                var o = (r * groups + g) * blockBytes
                func put16(_ v: UInt16) { out[o] = UInt8(v & 0xFF); out[o + 1] = UInt8(v >> 8); o += 2 }
                put16(scales[r * groups + g])
                if !symmetric { put16(mins[r * groups + g]) }
                let start = r * cols + g * Self.groupSize
                for j in 0..<16 { out[o + j] = codes[start + j] | codes[start + j + 16] << 4 }
            }
        }
        return out
    }

    /// The same weights in Lathe's group-wise layout (two codes per byte, element `2j` in the
    /// low nibble of byte `j`), for ``WeightOnlyLinear``.
    public func groupwiseWeights() -> GroupwiseWeights {
        var packed = [UInt8](repeating: 0, count: rows * cols / 2)
        for i in 0..<packed.count { packed[i] = codes[2 * i] | codes[2 * i + 1] << 4 }
        return GroupwiseWeights(scheme: GroupwiseScheme(bits: 4, groupSize: Self.groupSize, symmetric: symmetric), rows: rows, cols: cols,
                                codes: packed, scales: scales, mins: mins)
    }
}

/// The 16 values one group of ``Int4Groups`` can take, with its fp16 scale (and min).
///
/// From a group's values (round-to-nearest, as ggml's reference encoders choose them):
/// - symmetric: `d = v / -8` with `v` the first value of largest magnitude, so that `v` is the
///   code 0 (`-8 d`) and the grid is `d (u - 8)`;
/// - asymmetric: `m = min`, `d = (max - min) / 15`.
/// `d` and `m` are rounded to fp16 first, and the codes are the nearest to the rounded grid.
public struct Int4Grid: Equatable, Sendable {
    public let scaleBits: UInt16
    /// nil when symmetric.
    public let minBits: UInt16?
    public let scale: Float, min: Float

    public init(scaleBits: UInt16, minBits: UInt16?) {
        (self.scaleBits, self.minBits) = (scaleBits, minBits)
        scale = QuantMath.float(fromFloat16Bits: scaleBits)
        min = minBits.map { QuantMath.float(fromFloat16Bits: $0) } ?? 0
    }

    public init(_ values: UnsafeBufferPointer<Float>, symmetric: Bool) {
        if symmetric {
            var v: Float = 0
            for x in values where abs(x) > abs(v) { v = x }
            self.init(scaleBits: QuantMath.float16Bits(v / -8), minBits: nil)
        } else {
            var lo = Float.infinity, hi = -Float.infinity
            for x in values { lo = Swift.min(lo, x); hi = Swift.max(hi, x) }
            self.init(scaleBits: QuantMath.float16Bits((hi - lo) / 15), minBits: QuantMath.float16Bits(lo))
        }
    }

    public var symmetric: Bool { minBits == nil }

    /// The code nearest `x` (ties away from zero on the code axis), clamped to `[0, 15]`.
    @inline(__always)
    public func code(_ x: Float) -> UInt8 {
        guard scale != 0 else { return symmetric ? 8 : 0 }
        let t = symmetric ? x / scale + 8 : (x - min) / scale
        return UInt8(Swift.max(0, Swift.min(15, (t + 0.5).rounded(.down))))
    }

    /// The value of code `u`: `d (u - 8)` or `d u + m`.
    @inline(__always)
    public func value(_ u: UInt8) -> Float {
        symmetric ? scale * Float(Int(u) - 8) : Float(u) * scale + min
    }
}
