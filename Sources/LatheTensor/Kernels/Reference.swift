import Foundation

/// Naive Swift references for the C kernels. They are slow and obviously right; the tests
/// compare every fast kernel against them (see `KernelTests`).
package enum ReferenceKernels {
    /// `C = alpha op(A) op(B) + beta C`, row-major, in Float64 accumulation.
    /// Shapes as in `lathe_sgemm`: op(A) is [m, k], op(B) is [k, n], C is [m, n].
    package static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: [Float], lda: Int, b: [Float], ldb: Int, beta: Float, c: inout [Float], ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var acc = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    acc += Double(av) * Double(bv)
                }
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                c[i * ldc + j] = Float(Double(alpha) * acc + old)
            }
        }
    }

    /// The elementwise functions by name, in Float64.
    package static let unary: [String: @Sendable (Double) -> Double] = [
        "neg": { -$0 }, "abs": { Swift.abs($0) }, "exp": { Foundation.exp($0) }, "log": { Foundation.log($0) },
        "sqrt": { Foundation.sqrt($0) }, "rsqrt": { 1 / Foundation.sqrt($0) }, "tanh": { Foundation.tanh($0) },
        "sigmoid": { 1 / (1 + Foundation.exp(-$0)) }, "relu": { Swift.max($0, 0) },
        "gelu": { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) },
        "gelu_tanh": { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) },
        "silu": { $0 / (1 + Foundation.exp(-$0)) }, "softplus": { $0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0)) },
        "erf": { Foundation.erf($0) }, "sin": { Foundation.sin($0) }, "cos": { Foundation.cos($0) },
        "square": { $0 * $0 }, "reciprocal": { 1 / $0 },
    ]

    /// Sum of each row of a [rows, len] buffer, in Float64.
    package static func rowSums(_ x: [Float], rows: Int, len: Int) -> [Float] {
        (0..<rows).map { r in Float(x[(r * len)..<((r + 1) * len)].reduce(0.0) { $0 + Double($1) }) }
    }

    /// Softmax of each row, in Float64.
    package static func softmaxRows(_ x: [Float], rows: Int, len: Int) -> [Float] {
        var out: [Float] = []
        for r in 0..<rows {
            let row = x[(r * len)..<((r + 1) * len)].map(Double.init)
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let s = e.reduce(0, +)
            out += e.map { Float($0 / s) }
        }
        return out
    }
}

extension ReferenceKernels {
    /// Direct 2-D convolution by definition, in Float64: x [n, c, h, w], weight
    /// [o, c/groups, kh, kw], optional bias [o]; returns [n, o, oh, ow] flattened.
    package static func conv2d(x: [Float], n: Int, c: Int, h: Int, w: Int, weight: [Float], o: Int, kh: Int, kw: Int,
                              bias: [Float]?, stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int),
                              groups: Int) -> (values: [Float], oh: Int, ow: Int) {
        let oh = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
        let ow = (w + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
        let cg = c / groups, og = o / groups
        var out = [Float](repeating: 0, count: n * o * oh * ow)
        for b in 0..<n {
            for oc in 0..<o {
                let g = oc / og
                for y in 0..<oh {
                    for xx in 0..<ow {
                        var acc = Double(bias?[oc] ?? 0)
                        for ci in 0..<cg {
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let iy = y * stride.0 - padding.0 + i * dilation.0
                                    let ix = xx * stride.1 - padding.1 + j * dilation.1
                                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                    let xv = x[((b * c + g * cg + ci) * h + iy) * w + ix]
                                    let wv = weight[((oc * cg + ci) * kh + i) * kw + j]
                                    acc += Double(xv) * Double(wv)
                                }
                            }
                        }
                        out[((b * o + oc) * oh + y) * ow + xx] = Float(acc)
                    }
                }
            }
        }
        return (out, oh, ow)
    }
}
