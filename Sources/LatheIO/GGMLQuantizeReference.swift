// The naive twin of CLatheKernels' GGML encoders (lathe_ggml.h): ggml's reference encoders
// (`quantize_row_*_ref` in ggml's src/ggml-quants.c) written out plainly in Swift, one block at
// a time. The tests compare the C kernels with these byte for byte. Swift never fuses a * b + c,
// so the float operations round as ggml's do.

/// Reference encoders, one plain function per type.
package enum GGMLQuantizeReference {
    /// `x` (a whole number of blocks) as blocks of `type`, or nil for a type Lathe does not write.
    package static func quantize(_ type: GGMLType, _ x: [Float]) -> [UInt8]? {
        guard x.count % type.blockSize == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(x.count / type.blockSize * type.bytesPerBlock)
        switch type {
        case .f32: for v in x { appendLE(&out, v.bitPattern) }
        case .f16: for v in x { appendLE(&out, halfBits(v)) }
        case .bf16: for v in x { appendLE(&out, bf16Bits(v)) }
        case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1:
            for b in stride(from: 0, to: x.count, by: 32) { out += legacyBlock(type, Array(x[b..<b + 32])) }
        case .q4_K, .q5_K:
            for b in stride(from: 0, to: x.count, by: 256) { out += kBlock(Array(x[b..<b + 256]), five: type == .q5_K) }
        case .q6_K:
            for b in stride(from: 0, to: x.count, by: 256) { out += q6KBlock(Array(x[b..<b + 256])) }
        default: return nil
        }
        return out
    }

    // MARK: - Number formats

    static func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    /// IEEE binary16 bits, round to nearest even (NaN: 0x7E00 with the sign, as ggml writes it).
    package static func halfBits(_ f: Float) -> UInt16 {
        let sign: UInt16 = f.sign == .minus ? 0x8000 : 0
        let a = abs(f)
        if a.isNaN { return sign | 0x7E00 }
        if a >= 65520 { return sign | 0x7C00 }  // 65520 is halfway to 65536 and rounds up (even)
        if a < 0x1p-14 {
            // Subnormal: a multiple of 2^-24, rounded to nearest even.
            return sign | UInt16((a * 0x1p24).rounded(.toNearestOrEven))
        }
        // Normal: 11 significant bits.
        let e = a.exponent  // -14 ... 15
        let scaled = (a * Float(sign: .plus, exponent: 10 - e, significand: 1)).rounded(.toNearestOrEven)  // 1024 ... 2048
        if scaled == 2048 { return sign | UInt16(e + 16) << 10 }
        return sign | UInt16(e + 15) << 10 | (UInt16(scaled) - 1024)
    }

    /// bfloat16 bits: the top 16 bits of binary32 rounded to nearest even (NaN kept quiet).
    static func bf16Bits(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        if f.isNaN { return UInt16(u >> 16) | 0x40 }
        return UInt16((UInt64(u) + 0x7FFF + UInt64((u >> 16) & 1)) >> 16)
    }

    static func halfValue(_ h: UInt16) -> Float { halfToFloat(h) }

    /// ggml's `nearest_int`: round half to even by adding 1.5 * 2^23 and reading the low
    /// mantissa bits (exact for |f| < 2^22; NaN gives 0, as in ggml, where scales overflow fp16).
    static func nearest(_ f: Float) -> Int { Int((f + 12_582_912).bitPattern & 0x007F_FFFF) - 0x0040_0000 }

    /// C's conversion of a float to an integer: toward zero.
    static func trunc(_ f: Float) -> Int { Int(f.rounded(.towardZero)) }

    // MARK: - 32-element blocks

    static func legacyBlock(_ type: GGMLType, _ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        switch type {
        case .q8_0:
            var amax: Float = 0
            for v in x where abs(v) > amax { amax = abs(v) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            appendLE(&out, halfBits(d))
            for v in x { out.append(UInt8(bitPattern: Int8((v * id).rounded(.toNearestOrAwayFromZero)))) }
        case .q4_0, .q5_0:
            let levels: Float = type == .q4_0 ? 8 : 16
            let top = type == .q4_0 ? 15 : 31
            var amax: Float = 0, max: Float = 0
            for v in x where abs(v) > amax { amax = abs(v); max = v }
            let d = max / -levels
            let id: Float = d != 0 ? 1 / d : 0
            let q = x.map { Swift.min(top, trunc($0 * id + (levels + 0.5))) }
            appendLE(&out, halfBits(d))
            if type == .q5_0 {
                var qh: UInt32 = 0
                for (j, v) in q.enumerated() where v & 16 != 0 { qh |= 1 << UInt32(j) }
                appendLE(&out, qh)
            }
            for j in 0..<16 { out.append(UInt8(q[j] & 15) | UInt8(q[j + 16] & 15) << 4) }
        case .q4_1, .q5_1:
            var min = Float.greatestFiniteMagnitude, max = -Float.greatestFiniteMagnitude
            for v in x {
                if v < min { min = v }
                if v > max { max = v }
            }
            let d = (max - min) / (type == .q4_1 ? 15 : 31)
            let id: Float = d != 0 ? 1 / d : 0
            let q = x.map { type == .q4_1 ? Swift.min(15, trunc(($0 - min) * id + 0.5)) : trunc(($0 - min) * id + 0.5) & 0xFF }
            appendLE(&out, halfBits(d))
            appendLE(&out, halfBits(min))
            if type == .q5_1 {
                var qh: UInt32 = 0
                for (j, v) in q.enumerated() where v & 16 != 0 { qh |= 1 << UInt32(j) }
                appendLE(&out, qh)
            }
            for j in 0..<16 { out.append(UInt8(q[j] & 15) | UInt8(q[j + 16] & 15) << 4) }
        default: fatalError("not a 32-element type: \(type)")
        }
        return out
    }

    // MARK: - K-quants

    /// ggml's make_qkx2_quants: codes in 0...nmax, the scale and minus the min.
    static func qkx2(_ x: [Float], _ w: [Float], nmax: Int, rmin: Float, rdelta: Float, steps: Int) -> (codes: [Int], scale: Float, negMin: Float) {
        let n = x.count
        var min = x[0], max = x[0]
        var sumW = w[0], sumX = w[0] * x[0]
        for i in 1..<n {
            if x[i] < min { min = x[i] }
            if x[i] > max { max = x[i] }
            sumW += w[i]
            sumX += w[i] * x[i]
        }
        if min > 0 { min = 0 }
        if max == min { return ([Int](repeating: 0, count: n), 0, -min) }
        func codes(_ iscale: Float, _ min: Float) -> [Int] {
            x.map { Swift.max(0, Swift.min(nmax, nearest(iscale * ($0 - min)))) }
        }
        func error(_ codes: [Int], _ scale: Float, _ min: Float) -> Float {
            var e: Float = 0
            for i in 0..<n {
                let diff = scale * Float(codes[i]) + min - x[i]
                e += w[i] * (diff * diff)
            }
            return e
        }
        var iscale = Float(nmax) / (max - min)
        var scale = 1 / iscale
        var best = codes(iscale, min)
        var bestError = error(best, scale, min)
        for step in 0...steps {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (max - min)
            let l = codes(iscale, min)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let li = Float(l[i])
                sumL += w[i] * li
                sumL2 += w[i] * li * li
                sumXL += w[i] * li * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            guard D > 0 else { continue }
            var thisScale = (sumW * sumXL - sumX * sumL) / D
            var thisMin = (sumL2 * sumX - sumL * sumXL) / D
            if thisMin > 0 {
                thisMin = 0
                thisScale = sumXL / sumL2
            }
            let e = error(l, thisScale, thisMin)
            if e < bestError {
                (best, bestError, scale, min) = (l, e, thisScale, thisMin)
            }
        }
        return (best, scale, -min)
    }

    /// Q4_K (five: false) and Q5_K (five: true) super-blocks.
    static func kBlock(_ x: [Float], five: Bool) -> [UInt8] {
        let nmax = five ? 31 : 15
        var L = [Int](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
        var maxScale: Float = 0, maxMin: Float = 0
        for j in 0..<8 {
            let xs = Array(x[32 * j..<32 * j + 32])
            var sumX2: Float = 0
            for v in xs { sumX2 += v * v }
            let av = (sumX2 / 32).squareRoot()
            let w = xs.map { av + abs($0) }
            let r = five ? qkx2(xs, w, nmax: 31, rmin: -0.5, rdelta: 0.1, steps: 15) : qkx2(xs, w, nmax: 15, rmin: -1, rdelta: 0.1, steps: 20)
            for i in 0..<32 { L[32 * j + i] = r.codes[i] }
            (scales[j], mins[j]) = (r.scale, r.negMin)
            if r.scale > maxScale { maxScale = r.scale }
            if r.negMin > maxMin { maxMin = r.negMin }
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        var ls = [Int](repeating: 0, count: 8), lm = [Int](repeating: 0, count: 8)
        for j in 0..<8 {
            ls[j] = Swift.min(63, nearest(invScale * scales[j]) & 0xFF)
            lm[j] = Swift.min(63, nearest(invMin * mins[j]) & 0xFF)
        }
        // Packing: scale and min of sub-blocks 0-3 in the low 6 bits of bytes 0-3 and 4-7; those
        // of 4-7 split into nibbles in bytes 8-11 and their top 2 bits on top of bytes 0-7.
        var sc = [UInt8](repeating: 0, count: 12)
        for j in 0..<4 {
            sc[j] = UInt8(ls[j] | (ls[j + 4] >> 4) << 6)
            sc[j + 4] = UInt8(lm[j] | (lm[j + 4] >> 4) << 6)
            sc[j + 8] = UInt8((ls[j + 4] & 15) | (lm[j + 4] & 15) << 4)
        }
        let dBits = halfBits(maxScale / 63), dminBits = halfBits(maxMin / 63)
        let dAll = halfValue(dBits), dminAll = halfValue(dminBits)
        for j in 0..<8 {
            let d = dAll * Float(ls[j])
            if d == 0 { continue }
            let dm = dminAll * Float(lm[j])
            for i in 0..<32 { L[32 * j + i] = Swift.max(0, Swift.min(nmax, nearest((x[32 * j + i] + dm) / d))) }
        }
        var out: [UInt8] = []
        appendLE(&out, dBits)
        appendLE(&out, dminBits)
        out += sc
        if five {
            var qh = [UInt8](repeating: 0, count: 32)
            for c in 0..<4 {
                for l in 0..<32 {
                    if L[64 * c + l] > 15 { qh[l] |= 1 << UInt8(2 * c) }
                    if L[64 * c + 32 + l] > 15 { qh[l] |= 1 << UInt8(2 * c + 1) }
                }
            }
            out += qh
        }
        for c in 0..<4 {
            for l in 0..<32 { out.append(UInt8(L[64 * c + l] & 15) | UInt8(L[64 * c + 32 + l] & 15) << 4) }
        }
        return out
    }

    /// ggml's make_qx_quants, rmse_type 1: codes l + nmax (l in -nmax...nmax-1) and the scale.
    static func qx(_ x: [Float], nmax: Int) -> (codes: [Int], scale: Float) {
        var amax: Float = 0, max: Float = 0
        for v in x where abs(v) > amax { amax = abs(v); max = v }
        if amax < 1e-15 { return ([Int](repeating: 0, count: x.count), 0) }
        func levels(_ iscale: Float) -> [Int] { x.map { Swift.max(-nmax, Swift.min(nmax - 1, nearest(iscale * $0))) } }
        func sums(_ l: [Int]) -> (Float, Float) {
            var sumLX: Float = 0, sumL2: Float = 0
            for (v, li) in zip(x, l) {
                let w = v * v
                sumLX += w * v * Float(li)
                sumL2 += w * Float(li) * Float(li)
            }
            return (sumLX, sumL2)
        }
        var l = levels(-Float(nmax) / max)
        var (sumLX, sumL2) = sums(l)
        var scale: Float = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for step in -9...9 where step != 0 {
            let candidate = levels(-(Float(nmax) + 0.1 * Float(step)) / max)
            (sumLX, sumL2) = sums(candidate)
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                l = candidate
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return (l.map { $0 + nmax }, scale)
    }

    /// Q6_K super-block: ql[128], qh[64], scales[16] (int8), d.
    static func q6KBlock(_ x: [Float]) -> [UInt8] {
        var L = [Int](repeating: 0, count: 256)
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0, maxAbs: Float = 0
        for ib in 0..<16 {
            let r = qx(Array(x[16 * ib..<16 * ib + 16]), nmax: 32)
            for i in 0..<16 { L[16 * ib + i] = r.codes[i] }
            scales[ib] = r.scale
            if abs(r.scale) > maxAbs { maxAbs = abs(r.scale); maxScale = r.scale }
        }
        if maxAbs < 1e-15 { return [UInt8](repeating: 0, count: 210) }
        let iscale = -128 / maxScale
        let dBits = halfBits(1 / iscale)
        let sc = scales.map { Int8(truncatingIfNeeded: Swift.min(127, nearest(iscale * $0))) }
        let dAll = halfValue(dBits)
        for j in 0..<16 {
            let d = dAll * Float(sc[j])
            if d == 0 { continue }
            for i in 0..<16 { L[16 * j + i] = Swift.max(-32, Swift.min(31, nearest(x[16 * j + i] / d))) + 32 }
        }
        var ql = [UInt8](repeating: 0, count: 128), qh = [UInt8](repeating: 0, count: 64)
        for half in 0..<2 {
            for l in 0..<32 {
                let q = (0..<4).map { L[128 * half + l + 32 * $0] }
                ql[64 * half + l] = UInt8(q[0] & 15) | UInt8(q[2] & 15) << 4
                ql[64 * half + l + 32] = UInt8(q[1] & 15) | UInt8(q[3] & 15) << 4
                qh[32 * half + l] = UInt8(q[0] >> 4) | UInt8(q[1] >> 4) << 2 | UInt8(q[2] >> 4) << 4 | UInt8(q[3] >> 4) << 6
            }
        }
        var out = ql + qh + sc.map { UInt8(bitPattern: $0) }
        appendLE(&out, dBits)
        return out
    }
}
