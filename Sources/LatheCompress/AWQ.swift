import Foundation

/// The scale search of AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for
/// LLM Compression and Acceleration", https://arxiv.org/abs/2306.00978).
///
/// Layers that read the same input `x` (`[K]`) are scaled per input channel: `W' = W diag(s)`
/// and `x' = x / s`, which leaves the float output `W' x'` unchanged when `1/s` is folded into
/// the op that produces `x` (a norm's weight, or the rows of a previous projection). Channels
/// with large activations then get a finer share of the 4-bit grid. The scales are
/// `s = mean|x|^α`, normalised by `sqrt(max s · min s)`, with `α` the grid point of
/// `{0, 1/n, ..., (n-1)/n}` whose quantized layers give the smallest output error on the
/// calibration inputs, `Σ_layers tr(D H D^T)` with `D = Q(W diag s) diag(1/s) - W` and
/// `H = X^T X` (so `α = 0`, plain round-to-nearest, is among the candidates).
public enum AWQ {
    /// The result of ``searchScales(weights:cols:meanAbs:hessian:symmetric:gridSize:)``.
    public struct Search: Sendable {
        public var alpha: Float
        /// Per input channel, `[K]`: multiply the weight columns, divide the input.
        public var scales: [Float]
        /// The output error of each grid point, in order.
        public var errors: [Double]
    }

    /// The scales `mean|x|^α`, clamped to at least 1e-4 and normalised by `sqrt(max · min)`.
    public static func scales(meanAbs: [Float], alpha: Float) -> [Float] {
        var s = meanAbs.map { Swift.max(powf(Swift.max($0, 1e-8), alpha), 1e-4) }
        let norm = (s.max()! * s.min()!).squareRoot()
        if norm > 0, norm.isFinite { s = s.map { $0 / norm } }
        return s
    }

    /// Searches `α` for the layers `weights` (each `[rows, cols]` row-major, all reading the
    /// same input) given the input's per-channel mean magnitude `meanAbs` `[cols]` and its
    /// `hessian` `X^T X` `[cols, cols]`.
    public static func searchScales(weights: [(values: [Float], rows: Int)], cols: Int, meanAbs: [Float], hessian: [Float],
                                    symmetric: Bool, gridSize: Int = 20) -> Search {
        precondition(meanAbs.count == cols && hessian.count == cols * cols && gridSize >= 1, "AWQ.searchScales: sizes do not match")
        var best = Search(alpha: 0, scales: [Float](repeating: 1, count: cols), errors: [])
        var bestError = Double.infinity
        for i in 0..<gridSize {
            let alpha = Float(i) / Float(gridSize)
            let s = scales(meanAbs: meanAbs, alpha: alpha)
            var error = 0.0
            for (w, rows) in weights {
                let q = quantizedEffective(w, rows: rows, cols: cols, scales: s, symmetric: symmetric)
                error += GPTQ.outputError(q, w, rows: rows, cols: cols, hessian: hessian)
            }
            best.errors.append(error)
            if error < bestError {
                bestError = error
                (best.alpha, best.scales) = (alpha, s)
            }
        }
        return best
    }

    /// `Q(W diag s) diag(1/s)`: the weight the scaled, quantized layer applies to the unscaled input.
    public static func quantizedEffective(_ w: [Float], rows: Int, cols: Int, scales s: [Float], symmetric: Bool) -> [Float] {
        var scaled = w
        for r in 0..<rows { for c in 0..<cols { scaled[r * cols + c] *= s[c] } }
        var q = Int4Groups(roundingToNearest: scaled, rows: rows, cols: cols, symmetric: symmetric).dequantized()
        for r in 0..<rows { for c in 0..<cols { q[r * cols + c] /= s[c] } }
        return q
    }
}
