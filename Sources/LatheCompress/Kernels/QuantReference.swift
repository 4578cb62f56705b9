// Naive references for the quantized kernels of CLatheKernels (lathe_quant.h). The tests
// compare the fast kernels with these: bit for bit for the int8 GEMM and the dequantisation,
// within float rounding for the weight-only matmul (its sums run in another order).

/// Reference implementations, one plain loop each.
package enum QuantReference {
    /// `acc[m, n] = sum_k a[m, k] * w[n, k] - za * sum_k w[n, k]` (int32), a `[M, K]` u8,
    /// w `[N, K]` s8 row-major.
    package static func qgemmAccumulators(a: [UInt8], w: [Int8], m: Int, n: Int, k: Int, aZeroPoint: Int32) -> [Int32] {
        var out = [Int32](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var acc: Int32 = 0, rowSum: Int32 = 0
                for t in 0..<k {
                    acc += Int32(a[i * k + t]) * Int32(w[j * k + t])
                    rowSum += Int32(w[j * k + t])
                }
                out[i * n + j] = acc - aZeroPoint * rowSum
            }
        }
        return out
    }

    /// The epilogue: `out = fma(Float(acc), aScale * wScale[n], bias[n])`, ReLU, and
    /// `outQ = clamp(rint(clamp(out * outInvScale, ±2^24)) + outZeroPoint, 0, 255)`.
    package static func qgemmEpilogue(acc: [Int32], n: Int, aScale: Float, wScale: [Float], bias: [Float]?, relu: Bool,
                                     outInvScale: Float, outZeroPoint: Int32) -> (out: [Float], outQ: [UInt8]) {
        var out = [Float](repeating: 0, count: acc.count), outQ = [UInt8](repeating: 0, count: acc.count)
        for (i, v) in acc.enumerated() {
            let j = i % n
            let s = aScale * wScale[j]
            var f = (bias?[j] ?? 0).addingProduct(Float(v), s)
            if relu { f = f > 0 ? f : 0 }
            out[i] = f
            var t = f * outInvScale
            t = t < -16_777_216 ? -16_777_216 : (t > 16_777_216 ? 16_777_216 : t)
            let q = Int32(t.rounded(.toNearestOrEven)) + outZeroPoint
            outQ[i] = UInt8(max(0, min(255, q)))
        }
        return (out, outQ)
    }

    /// Dequantises group-wise weights element by element: `w = fma(u, s, c)`.
    package static func dequantize(_ g: GroupwiseWeights) -> [Float] {
        var out = [Float](repeating: 0, count: g.rows * g.cols)
        let gs = g.scheme.groupSize
        for r in 0..<g.rows {
            for k in 0..<g.cols {
                let (s, c) = g.scaleAndOffset(group: r * g.groups + k / gs)
                let byte = g.codes[r * g.rowBytes + (g.scheme.bits == 4 ? k / 2 : k)]
                let u: Float
                if g.scheme.bits == 4 { u = Float(k % 2 == 0 ? byte & 0xF : byte >> 4) }
                else { u = g.scheme.symmetric ? Float(Int8(bitPattern: byte)) : Float(byte) }
                out[r * g.cols + k] = c.addingProduct(u, s)
            }
        }
        return out
    }

    /// `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])` with W the reference dequantisation,
    /// summed in double.
    package static func weightOnlyMatmul(x: [Float], m: Int, weights g: GroupwiseWeights, bias: [Float]?) -> [Float] {
        let w = dequantize(g), n = g.rows, k = g.cols
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var acc = Double(bias?[j] ?? 0)
                for t in 0..<k { acc += Double(x[i * k + t]) * Double(w[j * k + t]) }
                y[i * n + j] = Float(acc)
            }
        }
        return y
    }

    /// Unfolds `x` `[B, C, H, W]` (u8) into `[B*OH*OW, C*KH*KW]`, `pad` outside the image.
    package static func im2col(_ x: [UInt8], b: Int, c: Int, h: Int, w: Int, kh: Int, kw: Int, stride: (Int, Int),
                              padding: (Int, Int), dilation: (Int, Int), pad: UInt8) -> (cols: [UInt8], oh: Int, ow: Int) {
        let oh = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
        let ow = (w + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
        var out: [UInt8] = []
        out.reserveCapacity(b * oh * ow * c * kh * kw)
        for bi in 0..<b { for oy in 0..<oh { for ox in 0..<ow { for ci in 0..<c { for i in 0..<kh { for j in 0..<kw {
            let iy = oy * stride.0 - padding.0 + i * dilation.0, ix = ox * stride.1 - padding.1 + j * dilation.1
            out.append(iy >= 0 && iy < h && ix >= 0 && ix < w ? x[((bi * c + ci) * h + iy) * w + ix] : pad)
        } } } } } }
        return (out, oh, ow)
    }
}
