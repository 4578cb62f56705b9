// Dequantisation of GGML blocks to float32, as ggml's reference `dequantize_row_*` functions in
// `src/ggml-quants.c` do it (block layouts in `src/ggml-common.h`). Scalar code: the same
// operations in the same order as the reference, so the results are bit-identical to it and to
// gguf-py's `gguf.quants.dequantize` (which Tests/LatheIOTests/GGUFTests.swift checks). Swift does
// not contract `a * b + c` into a fused multiply-add, and neither does NumPy; a C build of ggml
// with `-ffp-contract=fast` may (Q4_1, Q5_1: `d * q + m`), differing in the last bit.

extension GGMLType {
    /// Converts `count` elements stored as `self` in `source` to float32 in `destination`.
    ///
    /// Preconditions: ``isDequantizable``; `count` a multiple of ``blockSize``; `source` holds at
    /// least `count / blockSize * bytesPerBlock` bytes and `destination` at least `count` floats.
    /// Non-finite scales give non-finite values (no check, no trap).
    public func dequantize(_ source: UnsafeRawBufferPointer, count: Int, into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(isDequantizable, "GGMLType.dequantize: Lathe cannot dequantize \(name)")
        precondition(count >= 0 && count % blockSize == 0, "GGMLType.dequantize: \(count) is not a whole number of \(name) blocks")
        let blocks = count / blockSize
        precondition(source.count >= blocks * bytesPerBlock, "GGMLType.dequantize: \(source.count) bytes hold fewer than \(count) \(name) elements")
        precondition(destination.count >= count, "GGMLType.dequantize: room for \(destination.count) floats, need \(count)")
        guard count > 0, let x = source.baseAddress, let y = destination.baseAddress else { return }
        switch self {
        case .f32:
            for i in 0..<count { y[i] = Float(bitPattern: loadU32(x, 4 * i)) }
        case .f16:
            for i in 0..<count { y[i] = halfToFloat(loadU16(x, 2 * i)) }
        case .bf16:
            for i in 0..<count { y[i] = Float(bitPattern: UInt32(loadU16(x, 2 * i)) << 16) }
        case .q4_0: dequantizeRowQ4_0(x, y, blocks: blocks)
        case .q4_1: dequantizeRowQ4_1(x, y, blocks: blocks)
        case .q5_0: dequantizeRowQ5_0(x, y, blocks: blocks)
        case .q5_1: dequantizeRowQ5_1(x, y, blocks: blocks)
        case .q8_0: dequantizeRowQ8_0(x, y, blocks: blocks)
        case .q2_K: dequantizeRowQ2_K(x, y, blocks: blocks)
        case .q3_K: dequantizeRowQ3_K(x, y, blocks: blocks)
        case .q4_K: dequantizeRowQ4_K(x, y, blocks: blocks)
        case .q5_K: dequantizeRowQ5_K(x, y, blocks: blocks)
        case .q6_K: dequantizeRowQ6_K(x, y, blocks: blocks)
        case .q8_K: dequantizeRowQ8_K(x, y, blocks: blocks)
        default: preconditionFailure("unreachable: \(name) is not dequantizable")
        }
    }

    /// `count` elements stored as `self` in `source`, as float32 (see
    /// ``dequantize(_:count:into:)`` for the preconditions).
    public func dequantized(_ source: UnsafeRawBufferPointer, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            dequantize(source, count: count, into: buffer)
            initialized = count
        }
    }
}

// MARK: - Loads

@inline(__always) private func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
    p.load(fromByteOffset: offset, as: UInt8.self)
}

@inline(__always) private func loadU16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
    UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

@inline(__always) private func loadU32(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

@inline(__always) private func loadHalf(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    halfToFloat(loadU16(p, offset))
}

/// IEEE binary16 bits to Float, exactly (subnormals, infinities; NaN payloads kept, as NumPy and
/// ggml's `GGML_FP16_TO_FP32` on CPUs without F16C do). Written out because `Float16` is not
/// available on every platform Lathe builds for (macOS on Intel).
@inline(__always) func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    let mantissa = UInt32(h & 0x03FF)
    if exponent == 0 {
        // Zero or subnormal: mantissa * 2^-24, exact in Float.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

// MARK: - Legacy 32-element blocks
// x: the blocks, y: blocks * 32 floats.

/// Q4_0 (18 bytes): d (half), qs[16]; `y[j] = d * ((qs[j] & 15) - 8)`, `y[j+16] = d * ((qs[j] >> 4) - 8)`.
func dequantizeRowQ4_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 18, out = y + i * 32
        let d = loadHalf(b, 0)
        for j in 0..<16 {
            let q = byte(b, 2 + j)
            out[j] = Float(Int32(q & 0x0F) - 8) * d
            out[j + 16] = Float(Int32(q >> 4) - 8) * d
        }
    }
}

/// Q4_1 (20 bytes): d, m (half), qs[16]; `y = d * q + m` with the same nibbles as Q4_0, no offset.
func dequantizeRowQ4_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 20, out = y + i * 32
        let d = loadHalf(b, 0), m = loadHalf(b, 2)
        for j in 0..<16 {
            let q = byte(b, 4 + j)
            out[j] = Float(q & 0x0F) * d + m
            out[j + 16] = Float(q >> 4) * d + m
        }
    }
}

/// Q5_0 (22 bytes): d (half), qh (u32: bit j is the fifth bit of element j), qs[16];
/// `y = d * (q5 - 16)`.
func dequantizeRowQ5_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 22, out = y + i * 32
        let d = loadHalf(b, 0)
        let qh = loadU32(b, 2)
        for j in 0..<16 {
            let q = byte(b, 6 + j)
            let h0 = ((qh >> UInt32(j)) << 4) & 0x10
            let h1 = (qh >> UInt32(j + 12)) & 0x10
            out[j] = Float(Int32(UInt32(q & 0x0F) | h0) - 16) * d
            out[j + 16] = Float(Int32(UInt32(q >> 4) | h1) - 16) * d
        }
    }
}

/// Q5_1 (24 bytes): d, m (half), qh (u32), qs[16]; `y = d * q5 + m`.
func dequantizeRowQ5_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 24, out = y + i * 32
        let d = loadHalf(b, 0), m = loadHalf(b, 2)
        let qh = loadU32(b, 4)
        for j in 0..<16 {
            let q = byte(b, 8 + j)
            let h0 = ((qh >> UInt32(j)) << 4) & 0x10
            let h1 = (qh >> UInt32(j + 12)) & 0x10
            out[j] = Float(UInt32(q & 0x0F) | h0) * d + m
            out[j + 16] = Float(UInt32(q >> 4) | h1) * d + m
        }
    }
}

/// Q8_0 (34 bytes): d (half), qs[32] (int8); `y = d * qs`.
func dequantizeRowQ8_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 34, out = y + i * 32
        let d = loadHalf(b, 0)
        for j in 0..<32 { out[j] = Float(Int8(bitPattern: byte(b, 2 + j))) * d }
    }
}

// MARK: - K-quants: 256-element super-blocks
// x: the blocks, y: blocks * 256 floats.

/// Q2_K (84 bytes): scales[16] (low nibble scale, high nibble min, one per 16 elements), qs[64]
/// (2 bits each), d, dmin (half). Each 128-element half reads 32 bytes of qs four times (shift 0,
/// 2, 4, 6); each pass covers two 16-element sub-blocks:
/// `y = d * (sc & 15) * q - dmin * (sc >> 4)`.
func dequantizeRowQ2_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 84
        var out = y + i * 256
        let d = loadHalf(b, 80), dmin = loadHalf(b, 82)
        var sub = 0
        for half in 0..<2 {
            let q = b + 16 + 32 * half
            var shift: UInt8 = 0
            for _ in 0..<4 {
                var sc = byte(b, sub); sub += 1
                var dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
                for l in 0..<16 { out[l] = dl * Float((byte(q, l) >> shift) & 3) - ml }
                out += 16
                sc = byte(b, sub); sub += 1
                dl = d * Float(sc & 0x0F); ml = dmin * Float(sc >> 4)
                for l in 0..<16 { out[l] = dl * Float((byte(q, l + 16) >> shift) & 3) - ml }
                out += 16
                shift += 2
            }
        }
    }
}

/// Q3_K (110 bytes): hmask[32] (third bit, one bit plane per pass), qs[64] (low 2 bits),
/// scales[12] (16 six-bit scales), d (half). Same walk as Q2_K:
/// `y = d * (scale - 32) * (q2 - (hmask bit ? 0 : 4))`.
func dequantizeRowQ3_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    let low: UInt32 = 0x0F0F_0F0F, high: UInt32 = 0x0303_0303
    for i in 0..<blocks {
        let b = x + i * 110
        var out = y + i * 256
        let dAll = loadHalf(b, 108)
        // Scales 0-3 in the low nibbles of bytes 0-3, 4-7 of bytes 4-7, 8-11 in the high nibbles
        // of bytes 0-3, 12-15 of bytes 4-7; their top two bits in bytes 8-11, two bits per scale.
        let a0 = loadU32(b, 96), a1 = loadU32(b, 100), a2 = loadU32(b, 104)
        let packed = SIMD4<UInt32>(
            (a0 & low) | (((a2 >> 0) & high) << 4),
            (a1 & low) | (((a2 >> 2) & high) << 4),
            ((a0 >> 4) & low) | (((a2 >> 4) & high) << 4),
            ((a1 >> 4) & low) | (((a2 >> 6) & high) << 4))
        @inline(__always) func scale(_ k: Int) -> Int32 { Int32((packed[k >> 2] >> UInt32(8 * (k & 3))) & 0xFF) - 32 }
        let hm = b
        var m: UInt8 = 1
        var sub = 0
        for half in 0..<2 {
            let q = b + 32 + 32 * half
            var shift: UInt8 = 0
            for _ in 0..<4 {
                var dl = dAll * Float(scale(sub)); sub += 1
                for l in 0..<16 {
                    out[l] = dl * Float(Int32((byte(q, l) >> shift) & 3) - (byte(hm, l) & m != 0 ? 0 : 4))
                }
                out += 16
                dl = dAll * Float(scale(sub)); sub += 1
                for l in 0..<16 {
                    out[l] = dl * Float(Int32((byte(q, l + 16) >> shift) & 3) - (byte(hm, l + 16) & m != 0 ? 0 : 4))
                }
                out += 16
                shift += 2
                m <<= 1
            }
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..<8) of a Q4_K/Q5_K block's 12 scale bytes at `q`
/// (ggml's `get_scale_min_k4`).
@inline(__always) private func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (scale: UInt8, min: UInt8) {
    if j < 4 { return (byte(q, j) & 63, byte(q, j + 4) & 63) }
    return ((byte(q, j + 4) & 0x0F) | ((byte(q, j - 4) >> 6) << 4), (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4))
}

/// Q4_K (144 bytes): d, dmin (half), scales[12] (eight 6-bit scale/min pairs), qs[128]. Four
/// chunks of 64: `y[l] = d * sc * (qs[l] & 15) - dmin * m` for the first 32 with pair 2c,
/// `qs[l] >> 4` with pair 2c + 1 for the next 32.
func dequantizeRowQ4_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 144, out = y + i * 256
        let d = loadHalf(b, 0), dmin = loadHalf(b, 2)
        let scales = b + 4
        for c in 0..<4 {
            let q = b + 16 + 32 * c, o = out + 64 * c
            let (sc1, m1) = scaleMinK4(2 * c, scales), (sc2, m2) = scaleMinK4(2 * c + 1, scales)
            let d1 = d * Float(sc1), min1 = dmin * Float(m1)
            let d2 = d * Float(sc2), min2 = dmin * Float(m2)
            for l in 0..<32 { o[l] = d1 * Float(byte(q, l) & 0x0F) - min1 }
            for l in 0..<32 { o[32 + l] = d2 * Float(byte(q, l) >> 4) - min2 }
        }
    }
}

/// Q5_K (176 bytes): d, dmin (half), scales[12], qh[32] (fifth bits: bit 2c of qh[l] for the first
/// 32 of chunk c, bit 2c + 1 for the next 32), qs[128]; otherwise as Q4_K.
func dequantizeRowQ5_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 176, out = y + i * 256
        let d = loadHalf(b, 0), dmin = loadHalf(b, 2)
        let scales = b + 4, qh = b + 16
        var u1: UInt8 = 1, u2: UInt8 = 2
        for c in 0..<4 {
            let ql = b + 48 + 32 * c, o = out + 64 * c
            let (sc1, m1) = scaleMinK4(2 * c, scales), (sc2, m2) = scaleMinK4(2 * c + 1, scales)
            let d1 = d * Float(sc1), min1 = dmin * Float(m1)
            let d2 = d * Float(sc2), min2 = dmin * Float(m2)
            for l in 0..<32 { o[l] = d1 * Float((byte(ql, l) & 0x0F) + (byte(qh, l) & u1 != 0 ? 16 : 0)) - min1 }
            for l in 0..<32 { o[32 + l] = d2 * Float((byte(ql, l) >> 4) + (byte(qh, l) & u2 != 0 ? 16 : 0)) - min2 }
            u1 <<= 2
            u2 <<= 2
        }
    }
}

/// Q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8, one per 16
/// elements), d (half). Per 128-element half, l = 0..<32:
/// `y[l + 32k] = d * scales[l / 16 + 2k] * (q6 - 32)` for k = 0..<4.
func dequantizeRowQ6_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 210
        let d = loadHalf(b, 208)
        for half in 0..<2 {
            let ql = b + 64 * half, qh = b + 128 + 32 * half, sc = b + 192 + 8 * half
            let out = y + i * 256 + 128 * half
            @inline(__always) func s(_ k: Int) -> Float { Float(Int8(bitPattern: byte(sc, k))) }
            for l in 0..<32 {
                let sub = l / 16
                let h = byte(qh, l), lo = byte(ql, l), hi = byte(ql, l + 32)
                let q1 = Int32((lo & 0x0F) | ((h & 3) << 4)) - 32
                let q2 = Int32((hi & 0x0F) | (((h >> 2) & 3) << 4)) - 32
                let q3 = Int32((lo >> 4) | (((h >> 4) & 3) << 4)) - 32
                let q4 = Int32((hi >> 4) | (((h >> 6) & 3) << 4)) - 32
                out[l] = d * s(sub) * Float(q1)
                out[l + 32] = d * s(sub + 2) * Float(q2)
                out[l + 64] = d * s(sub + 4) * Float(q3)
                out[l + 96] = d * s(sub + 6) * Float(q4)
            }
        }
    }
}

/// Q8_K (292 bytes): d (float32), qs[256] (int8), bsums[16] (int16, unused here); `y = d * qs`.
func dequantizeRowQ8_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, blocks: Int) {
    for i in 0..<blocks {
        let b = x + i * 292, out = y + i * 256
        let d = Float(bitPattern: loadU32(b, 0))
        for j in 0..<256 { out[j] = d * Float(Int8(bitPattern: byte(b, 4 + j))) }
    }
}

/// K-quant blocks as group-wise codes with float32 scales, the form in which Lathe keeps them
/// quantized at run time. Per 256-element block:
/// - Q4_K, Q5_K: eight 32-element groups, `w = fma(u, scale, min)` with `u` in `0..<16` or
///   `0..<32`, `scale = d * sc` and `min = -(dmin * m)` (both exact in float32);
/// - Q6_K: sixteen 16-element groups, `w = scale * q` with `q = q6 - 32` in `-32..<32` (stored as
///   an int8 bit pattern) and `scale = d * sc`.
/// `codes` receives one byte per element (`blocks * 256`), `scales` and `mins` one float per group
/// (`mins` is not written for Q6_K).
public func decodeKQuantGroups(_ type: GGMLType, _ x: UnsafeRawPointer, blocks: Int, codes: UnsafeMutablePointer<UInt8>,
                               scales: UnsafeMutablePointer<Float>, mins: UnsafeMutablePointer<Float>) {
    switch type {
    case .q4_K, .q5_K:
        let blockBytes = type == .q4_K ? 144 : 176
        for i in 0..<blocks {
            let b = x + i * blockBytes, out = codes + i * 256
            let d = loadHalf(b, 0), dmin = loadHalf(b, 2), sc = b + 4
            for g in 0..<8 {
                let (s, m) = scaleMinK4(g, sc)
                scales[i * 8 + g] = d * Float(s)
                mins[i * 8 + g] = -(dmin * Float(m))
            }
            for c in 0..<4 {
                let o = out + 64 * c
                if type == .q4_K {
                    let q = b + 16 + 32 * c
                    for l in 0..<32 { o[l] = byte(q, l) & 0x0F; o[32 + l] = byte(q, l) >> 4 }
                } else {
                    let ql = b + 48 + 32 * c, qh = b + 16
                    let u1 = UInt8(1) << UInt8(2 * c), u2 = UInt8(2) << UInt8(2 * c)
                    for l in 0..<32 {
                        o[l] = (byte(ql, l) & 0x0F) | (byte(qh, l) & u1 != 0 ? 16 : 0)
                        o[32 + l] = (byte(ql, l) >> 4) | (byte(qh, l) & u2 != 0 ? 16 : 0)
                    }
                }
            }
        }
    case .q6_K:
        for i in 0..<blocks {
            let b = x + i * 210
            let d = loadHalf(b, 208)
            for g in 0..<16 { scales[i * 16 + g] = d * Float(Int8(bitPattern: byte(b, 192 + g))) }
            for half in 0..<2 {
                let ql = b + 64 * half, qh = b + 128 + 32 * half, out = codes + i * 256 + 128 * half
                for l in 0..<32 {
                    let h = byte(qh, l), lo = byte(ql, l), hi = byte(ql, l + 32)
                    out[l] = UInt8(bitPattern: Int8((lo & 0x0F) | ((h & 3) << 4)) - 32)
                    out[l + 32] = UInt8(bitPattern: Int8((hi & 0x0F) | (((h >> 2) & 3) << 4)) - 32)
                    out[l + 64] = UInt8(bitPattern: Int8((lo >> 4) | (((h >> 4) & 3) << 4)) - 32)
                    out[l + 96] = UInt8(bitPattern: Int8((hi >> 4) | (((h >> 6) & 3) << 4)) - 32)
                }
            }
        }
    default:
        preconditionFailure("decodeKQuantGroups: \(type) is not Q4_K, Q5_K or Q6_K")
    }
}
