import Foundation

/// Naive Swift references for the C kernels. They are slow and obviously right; the tests
/// compare every fast kernel against them (see `KernelTests`).
public enum ReferenceKernels {
    /// `C = alpha op(A) op(B) + beta C`, row-major, in Float64 accumulation.
    /// Shapes as in `lathe_sgemm`: op(A) is [m, k], op(B) is [k, n], C is [m, n].
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
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
    public static let unary: [String: @Sendable (Double) -> Double] = [
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
    public static func rowSums(_ x: [Float], rows: Int, len: Int) -> [Float] {
        (0..<rows).map { r in Float(x[(r * len)..<((r + 1) * len)].reduce(0.0) { $0 + Double($1) }) }
    }

    /// Softmax of each row, in Float64.
    public static func softmaxRows(_ x: [Float], rows: Int, len: Int) -> [Float] {
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
