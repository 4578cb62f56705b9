// LatheCompress: quantization, pruning and distillation: model-level transforms and quantized layers.
import CLatheKernels
import LatheTensor

/// Affine uint8 quantization parameters: `x ≈ scale * (q - zeroPoint)`, `q` in `[0, 255]`.
public struct AffineParams: Equatable, Sendable {
    public var scale: Float
    public var zeroPoint: Int32

    public init(scale: Float, zeroPoint: Int32) {
        self.scale = scale
        self.zeroPoint = zeroPoint
    }

    /// Parameters whose grid covers `[min, max]` (widened to include 0, so that 0 is exact).
    ///
    /// Affine: `scale = (max - min) / 255`, `zeroPoint = clamp(round(-min / scale), 0, 255)`.
    /// Symmetric: `zeroPoint = 128`, `scale = max(|min|, |max|) / 127` (the grid is
    /// `[-128, 127] * scale`; int8 activations are these with the top bit flipped).
    /// A degenerate range gives `scale = 1`.
    public init(min: Float, max: Float, symmetric: Bool = false) {
        let lo = Swift.min(min, 0), hi = Swift.max(max, 0)
        if symmetric {
            let amax = Swift.max(-lo, hi)
            self.init(scale: amax > 0 && amax.isFinite ? amax / 127 : 1, zeroPoint: 128)
        } else {
            let range = hi - lo
            let scale: Float = range > 0 && range.isFinite ? range / 255 : 1
            let zp = (-lo / scale).rounded(.toNearestOrEven)
            self.init(scale: scale, zeroPoint: Int32(Swift.max(0, Swift.min(255, zp))))
        }
    }

    /// `clamp(rint(clamp(x / scale, ±2^24)) + zeroPoint, 0, 255)`, computed as the kernels do
    /// (multiplying by the float reciprocal of the scale); NaN gives 0.
    public func quantize(_ x: Float) -> UInt8 {
        var t = x * (1 / scale)
        if t.isNaN { return 0 }
        t = Swift.max(-16_777_216, Swift.min(16_777_216, t))
        let q = Int32(t.rounded(.toNearestOrEven)) + zeroPoint
        return UInt8(Swift.max(0, Swift.min(255, q)))
    }

    public func dequantize(_ q: UInt8) -> Float { scale * Float(Int32(q) - zeroPoint) }
}

/// Quantization math on plain arrays: the formulas the layers, the kernels' references and the
/// file format share. Rounding is to nearest, ties to even, everywhere.
public enum QuantMath {
    /// Quantizes `x` to uint8 with `params` (the C kernel `lathe_quantize_u8`).
    public static func quantizeU8(_ x: UnsafeBufferPointer<Float>, _ params: AffineParams) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: x.count) { buf, n in
            if x.count > 0 {
                lathe_quantize_u8(x.baseAddress!, x.count, 1 / params.scale, params.zeroPoint, buf.baseAddress!)
            }
            n = x.count
        }
    }

    /// Symmetric per-output-channel int8 weights: row `n` of `w` `[N, K]` gets
    /// `scale[n] = max|w[n, :]| / 127` rounded up to an fp16 value (files store scales as fp16)
    /// and `q = clamp(round(w / scale), -127, 127)`, so `|w - scale * q| <= scale / 2` (an
    /// all-zero row gets scale 0 and codes 0).
    public static func quantizePerChannel(_ w: [Float], rows n: Int, cols k: Int) -> (codes: [Int8], scales: [Float]) {
        precondition(w.count == n * k, "quantizePerChannel: \(w.count) values are not [\(n), \(k)]")
        var codes = [Int8](repeating: 0, count: n * k), scales = [Float](repeating: 0, count: n)
        for r in 0..<n {
            var amax: Float = 0
            for c in 0..<k { amax = Swift.max(amax, abs(w[r * k + c])) }
            precondition(amax.isFinite && amax / 127 <= 65504 && !w[(r * k)..<(r * k + k)].contains(where: \.isNaN),
                         "quantizePerChannel: row \(r) has NaN or |w| up to \(amax), beyond fp16 scales")
            let s = float(fromFloat16Bits: float16Bits(amax / 127, roundingUp: true))
            scales[r] = s
            guard s > 0 else { continue }
            for c in 0..<k { codes[r * k + c] = Int8(Swift.max(-127, Swift.min(127, (w[r * k + c] / s).rounded(.toNearestOrEven)))) }
        }
        return (codes, scales)
    }

    // MARK: fp16 helpers

    /// IEEE binary16 bits of `x` (round to nearest even).
    public static func float16Bits(_ x: Float) -> UInt16 {
        var v = x, h: UInt16 = 0
        lathe_f32_to_f16(&v, &h, 1)
        return h
    }

    public static func float(fromFloat16Bits h: UInt16) -> Float {
        var v = h, f: Float = 0
        lathe_f16_to_f32(&v, &f, 1)
        return f
    }

    /// The fp16 value nearest `x` from above (`up`) or below, as bits (finite `x`).
    static func float16Bits(_ x: Float, roundingUp up: Bool) -> UInt16 {
        var h = float16Bits(x)
        let f = float(fromFloat16Bits: h)
        if up, f < x { h = f >= 0 ? h + 1 : (h == 0x8000 ? 0x0001 : h - 1) }
        if !up, f > x { h = f > 0 ? h - 1 : (h == 0x0000 ? 0x8001 : h + 1) }
        return h
    }
}

/// How a group-wise weight is stored (see ``GroupwiseWeights``).
public struct GroupwiseScheme: Equatable, Sendable, CustomStringConvertible {
    /// 8 or 4.
    public var bits: Int
    /// Elements of a row that share a scale: a multiple of 16 (32, 64, 128 are usual).
    public var groupSize: Int
    /// Symmetric (scale only) or asymmetric (scale and min).
    public var symmetric: Bool

    public init(bits: Int, groupSize: Int = 64, symmetric: Bool = true) {
        precondition(bits == 8 || bits == 4, "GroupwiseScheme: bits must be 8 or 4, got \(bits)")
        precondition(groupSize > 0 && groupSize % 16 == 0, "GroupwiseScheme: group size must be a positive multiple of 16, got \(groupSize)")
        self.bits = bits
        self.groupSize = groupSize
        self.symmetric = symmetric
    }

    public var description: String { "int\(bits) g\(groupSize) \(symmetric ? "sym" : "asym")" }
}

/// A weight `[N, K]` quantized group-wise along K, in the layout of the `lathe_wq_*` kernels.
///
/// Group `g` of row `n` covers `k` in `[g G, min(K, (g+1) G))` and has an fp16 scale `s`
/// (and an fp16 min `m` when asymmetric). Dequantisation, with `u` the stored code:
/// - symmetric int8: `w = s * q`, `q` int8 in `[-127, 127]`
/// - symmetric int4: `w = fma(u, s, -8 s)`, `u` in `[0, 15]` (`q = u - 8` in `[-7, 7]`)
/// - asymmetric: `w = fma(u, s, m)`, `u` in `[0, 255]` or `[0, 15]`
/// int4 codes are two per byte, low nibble first; a row takes `ceil(K/2)` bytes.
/// Scales round up and mins round down to fp16, so the grid always covers the group's range
/// and `|w - deq(q(w))| <= s / 2` (plus float rounding).
///
/// Scales and mins may instead be float32 (``float32Scales``, ``float32Mins``): GGUF's K-quants
/// give each group a scale `d * sc` (fp16 times a 6- or 8-bit integer) that is exact in float32
/// but not in fp16.
public struct GroupwiseWeights: Equatable, Sendable {
    public let scheme: GroupwiseScheme
    public let rows: Int, cols: Int
    /// Codes, `rows * rowBytes` bytes.
    public let codes: [UInt8]
    /// fp16 bits, `[rows, groups]`; empty when the scales are float32.
    public let scales: [UInt16]
    /// fp16 bits, `[rows, groups]`; empty when symmetric or float32.
    public let mins: [UInt16]
    /// float32 scales `[rows, groups]` instead of ``scales``, or empty.
    public let float32Scales: [Float]
    /// float32 mins `[rows, groups]` instead of ``mins`` (asymmetric with float32 scales), or empty.
    public let float32Mins: [Float]

    public var groups: Int { (cols + scheme.groupSize - 1) / scheme.groupSize }
    public var rowBytes: Int { scheme.bits == 4 ? (cols + 1) / 2 : cols }
    public var hasFloat32Scales: Bool { !float32Scales.isEmpty }
    /// Bytes of codes, scales and mins.
    public var byteCount: Int { codes.count + 2 * (scales.count + mins.count) + 4 * (float32Scales.count + float32Mins.count) }

    public init(scheme: GroupwiseScheme, rows: Int, cols: Int, codes: [UInt8], scales: [UInt16], mins: [UInt16]) {
        (self.scheme, self.rows, self.cols, self.codes, self.scales, self.mins) = (scheme, rows, cols, codes, scales, mins)
        (float32Scales, float32Mins) = ([], [])
        precondition(codes.count == rows * rowBytes && scales.count == rows * groups
                        && mins.count == (scheme.symmetric ? 0 : rows * groups),
                     "GroupwiseWeights: buffer sizes do not match [\(rows), \(cols)] \(scheme)")
    }

    /// Weights with float32 scales (and mins when asymmetric).
    public init(scheme: GroupwiseScheme, rows: Int, cols: Int, codes: [UInt8], float32Scales: [Float], float32Mins: [Float]) {
        (self.scheme, self.rows, self.cols, self.codes, scales, mins) = (scheme, rows, cols, codes, [], [])
        (self.float32Scales, self.float32Mins) = (float32Scales, float32Mins)
        precondition(codes.count == rows * rowBytes && float32Scales.count == rows * groups
                        && float32Mins.count == (scheme.symmetric ? 0 : rows * groups),
                     "GroupwiseWeights: buffer sizes do not match [\(rows), \(cols)] \(scheme)")
    }

    /// The scale and offset of group `index` (`row * groups + group`): `w = fma(u, scale, offset)`
    /// with `u` the code as stored (int8 read as signed when symmetric).
    public func scaleAndOffset(group index: Int) -> (scale: Float, offset: Float) {
        let s = hasFloat32Scales ? float32Scales[index] : QuantMath.float(fromFloat16Bits: scales[index])
        if !scheme.symmetric { return (s, hasFloat32Scales ? float32Mins[index] : QuantMath.float(fromFloat16Bits: mins[index])) }
        return (s, scheme.bits == 4 ? -8 * s : 0)
    }

    /// Quantizes `w` `[rows, cols]` row-major.
    public init(quantizing w: [Float], rows: Int, cols: Int, scheme: GroupwiseScheme) {
        precondition(w.count == rows * cols, "GroupwiseWeights: \(w.count) values are not [\(rows), \(cols)]")
        let g = scheme.groupSize, ng = (cols + g - 1) / g
        let rowBytes = scheme.bits == 4 ? (cols + 1) / 2 : cols
        let qmax: Float = scheme.bits == 4 ? 15 : 255
        var codes = [UInt8](repeating: 0, count: rows * rowBytes)
        var scales = [UInt16](repeating: 0, count: rows * ng)
        var mins = [UInt16](repeating: 0, count: scheme.symmetric ? 0 : rows * ng)
        for r in 0..<rows {
            for gi in 0..<ng {
                let k0 = gi * g, k1 = Swift.min(cols, k0 + g)
                var lo = Float.infinity, hi = -Float.infinity
                for k in k0..<k1 { lo = Swift.min(lo, w[r * cols + k]); hi = Swift.max(hi, w[r * cols + k]) }
                var codeOf: (Float) -> Int
                if scheme.symmetric {
                    let qpos: Float = scheme.bits == 4 ? 7 : 127
                    let amax = Swift.max(abs(lo), abs(hi))
                    let sBits = QuantMath.float16Bits(amax / qpos, roundingUp: true)
                    let s = QuantMath.float(fromFloat16Bits: sBits)
                    scales[r * ng + gi] = sBits
                    let offset = scheme.bits == 4 ? 8 : 0
                    codeOf = { v in
                        guard s > 0 else { return offset }
                        return Int(Swift.max(-qpos, Swift.min(qpos, (v / s).rounded(.toNearestOrEven)))) + offset
                    }
                } else {
                    let mBits = QuantMath.float16Bits(lo, roundingUp: false)
                    let m = QuantMath.float(fromFloat16Bits: mBits)
                    let sBits = QuantMath.float16Bits((hi - m) / qmax, roundingUp: true)
                    let s = QuantMath.float(fromFloat16Bits: sBits)
                    scales[r * ng + gi] = sBits
                    mins[r * ng + gi] = mBits
                    codeOf = { v in
                        guard s > 0 else { return 0 }
                        return Int(Swift.max(0, Swift.min(qmax, ((v - m) / s).rounded(.toNearestOrEven))))
                    }
                }
                for k in k0..<k1 {
                    let c = codeOf(w[r * cols + k])
                    if scheme.bits == 4 {
                        codes[r * rowBytes + k / 2] |= UInt8(c & 0xF) << (k % 2 == 0 ? 0 : 4)
                    } else {
                        codes[r * rowBytes + k] = UInt8(truncatingIfNeeded: c)  // int8 two's complement when symmetric
                    }
                }
            }
        }
        self.init(scheme: scheme, rows: rows, cols: cols, codes: codes, scales: scales, mins: mins)
    }

    /// Calls `body` with the kernel's view of these weights.
    func withMatrix<R>(_ body: (UnsafePointer<lathe_wq_matrix>) -> R) -> R {
        codes.withUnsafeBufferPointer { q in
            scales.withUnsafeBufferPointer { s in
                mins.withUnsafeBufferPointer { m in
                    float32Scales.withUnsafeBufferPointer { s32 in
                        float32Mins.withUnsafeBufferPointer { m32 in
                            var mat = lathe_wq_matrix(bits: Int32(scheme.bits), group_size: Int32(scheme.groupSize),
                                                      symmetric: scheme.symmetric ? 1 : 0, q: q.baseAddress,
                                                      scales: hasFloat32Scales ? nil : s.baseAddress,
                                                      mins: scheme.symmetric || hasFloat32Scales ? nil : m.baseAddress,
                                                      scales_f32: hasFloat32Scales ? s32.baseAddress : nil,
                                                      mins_f32: hasFloat32Scales && !scheme.symmetric ? m32.baseAddress : nil)
                            return body(&mat)
                        }
                    }
                }
            }
        }
    }

    /// Whether the 8-bit-activation decode kernels take these weights (cols a multiple of 32;
    /// group size 32 with int4 or int8, or group size 16 with int8).
    public var supportsInt8Activations: Bool {
        withMatrix { lathe_wq_gemv_supported($0, cols) != 0 }
    }

    /// The dequantised weight `[rows, cols]` (the C kernel; bitwise equal to the reference).
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        guard rows > 0, cols > 0 else { return out }
        withMatrix { m in out.withUnsafeMutableBufferPointer { o in lathe_wq_dequantize(m, rows, cols, 0, rows, o.baseAddress!, cols) } }
        return out
    }
}

/// Per-channel int8 weights packed once for the int8 GEMM (`lathe_qgemm_pack_s8` layout).
public struct PackedInt8Weights: Sendable {
    public let rows: Int, cols: Int
    /// Per-output-channel scales `[rows]`.
    public let scales: [Float]
    let packed: [Int8]
    let rowSums: [Int32]

    /// Packs row-major codes `[rows, cols]`.
    public init(codes: [Int8], scales: [Float], rows: Int, cols: Int) {
        precondition(codes.count == rows * cols && scales.count == rows, "PackedInt8Weights: sizes do not match [\(rows), \(cols)]")
        precondition(cols <= 65536, "PackedInt8Weights: K = \(cols) > 65536 could overflow the int32 accumulators")
        self.rows = rows
        self.cols = cols
        self.scales = scales
        var sums = [Int32](repeating: 0, count: rows)
        packed = [Int8](unsafeUninitializedCapacity: lathe_qgemm_packed_size(rows, cols)) { buf, n in
            codes.withUnsafeBufferPointer { c in
                sums.withUnsafeMutableBufferPointer { s in lathe_qgemm_pack_s8(rows, cols, c.baseAddress, cols, buf.baseAddress, s.baseAddress) }
            }
            n = buf.count
        }
        rowSums = sums
    }

    /// Quantizes a float weight `[rows, cols]` symmetrically per channel and packs it.
    public init(quantizing w: [Float], rows: Int, cols: Int) {
        let (codes, scales) = QuantMath.quantizePerChannel(w, rows: rows, cols: cols)
        self.init(codes: codes, scales: scales, rows: rows, cols: cols)
    }

    /// The row-major codes `[rows, cols]` (what files store).
    public var codes: [Int8] {
        [Int8](unsafeUninitializedCapacity: rows * cols) { buf, n in
            packed.withUnsafeBufferPointer { p in lathe_qgemm_unpack_s8(rows, cols, p.baseAddress, buf.baseAddress, cols) }
            n = rows * cols
        }
    }

    /// Runs the int8 GEMM on `a` `[m, cols]` uint8 with `aParams`: returns float `[m, rows]`
    /// `= (a - za) W^T * aScale * scale[n] + bias[n]` (ReLU'd if asked).
    func matmul(_ a: UnsafePointer<UInt8>, m: Int, aParams: AffineParams, bias: [Float]?, relu: Bool = false,
                into out: UnsafeMutablePointer<Float>) {
        scales.withUnsafeBufferPointer { ws in
            (bias ?? []).withUnsafeBufferPointer { b in
                var ep = lathe_qgemm_epilogue()
                ep.a_zero_point = aParams.zeroPoint
                ep.a_scale = aParams.scale
                ep.w_scale = ws.baseAddress
                ep.bias = bias == nil ? nil : b.baseAddress
                ep.relu = relu ? 1 : 0
                ep.out = out
                ep.ld_out = rows
                packed.withUnsafeBufferPointer { p in
                    rowSums.withUnsafeBufferPointer { rs in lathe_qgemm_u8s8(m, rows, cols, a, cols, p.baseAddress, rs.baseAddress, &ep) }
                }
            }
        }
    }
}
