import CLatheKernels
import Foundation

/// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
/// Pre-trained Transformers", https://arxiv.org/abs/2210.17323) to ``Int4Groups``.
///
/// For a layer `y = W x` and calibration inputs `X` (`[T, K]`), GPTQ quantizes `W` `[N, K]` one
/// input column at a time and spreads each column's rounding error over the columns not yet
/// quantized so as to minimise `||X W^T - X Q^T||^2`, using the Hessian `H = 2 X^T X` `[K, K]`:
///
/// 1. dead inputs (`H_jj = 0`) get `H_jj = 1` and a zero weight column; `H += λ I` with
///    `λ = damping · mean(diag H)`;
/// 2. `U`: the upper Cholesky factor of `H^{-1}` (`H^{-1} = U^T U`);
/// 3. for each column `j` in blocks of ``Options/blockSize``: `q = quant(w_j)`,
///    `e = (w_j - q) / U_jj`, `w_k -= e U_jk` for the block's later columns `k`; after the block,
///    all later columns at once (`W[:, i2:] -= E U[i1:i2, i2:]`, the lazy batch update).
///
/// Group grids (``Int4Grid``) are chosen when the column reaches a group's start, from the
/// group's weights as updated so far. With ``Options/actOrder`` columns go in order of
/// decreasing `H_jj` and the grids are fixed beforehand from the original weights (the
/// reference's "static groups"), so that each group is still 32 adjacent columns, as GGUF
/// blocks need.
public enum GPTQ {
    public struct Options: Sendable, Equatable {
        /// The fraction of the mean diagonal added to the Hessian's diagonal (the paper's 0.01).
        public var damping: Float
        /// Columns quantized before the lazy update of the rest (the paper's 128).
        public var blockSize: Int
        /// Quantize columns in order of decreasing Hessian diagonal ("act-order").
        public var actOrder: Bool
        public var symmetric: Bool

        public init(symmetric: Bool, damping: Float = 0.01, blockSize: Int = 128, actOrder: Bool = false) {
            (self.symmetric, self.damping, self.blockSize, self.actOrder) = (symmetric, damping, blockSize, actOrder)
        }
    }

    /// Quantizes `weight` `[rows, cols]` (row-major) with the Hessian `hessian` `[cols, cols]`
    /// (symmetric, positive semi-definite; `2 X^T X` or any multiple of it).
    /// Throws when the damped Hessian is not positive definite even with 100 times the damping.
    public static func quantize(weight: [Float], rows: Int, cols: Int, hessian: [Float], options: Options) throws -> Int4Groups {
        precondition(weight.count == rows * cols && hessian.count == cols * cols, "GPTQ.quantize: weight or Hessian size does not match [\(rows), \(cols)]")
        let gs = Int4Groups.groupSize, k = cols
        var result = Int4Groups(rows: rows, cols: cols, symmetric: options.symmetric)
        var w = weight
        var h = hessian.map(Double.init)
        for j in 0..<k where h[j * k + j] == 0 {
            h[j * k + j] = 1
            for r in 0..<rows { w[r * k + j] = 0 }
        }
        // Column order and static grids.
        var order = Array(0..<k)
        if options.actOrder {
            order.sort { (h[$0 * k + $0], $1) > (h[$1 * k + $1], $0) }
            for r in 0..<rows {
                for g in 0..<cols / gs {
                    w.withUnsafeBufferPointer { p in
                        result.set(Int4Grid(UnsafeBufferPointer(rebasing: p[r * k + g * gs..<r * k + g * gs + gs]), symmetric: options.symmetric), row: r, group: g)
                    }
                }
            }
            w = permutedColumns(w, rows: rows, cols: k, order: order)
            var hp = [Double](repeating: 0, count: k * k)
            for a in 0..<k { for b in 0..<k { hp[a * k + b] = h[order[a] * k + order[b]] } }
            h = hp
        }
        var mean = 0.0
        for j in 0..<k { mean += h[j * k + j] }
        mean /= Double(k)
        var u: [Float]?
        for attempt in 0..<3 {
            var damped = h
            let lambda = Double(options.damping) * mean * pow(10, Double(attempt))
            for j in 0..<k { damped[j * k + j] += lambda }
            if let factor = inverseCholeskyUpper(damped, n: k) { u = factor; break }
        }
        guard let u else {
            throw GPTQError("the damped Hessian [\(k), \(k)] is not positive definite (damping \(options.damping) to \(options.damping * 100))")
        }

        var grids = [Int4Grid](repeating: Int4Grid(scaleBits: 0, minBits: options.symmetric ? nil : 0), count: rows)
        let block = max(1, options.blockSize)
        var errors = [Float](repeating: 0, count: rows * block)
        w.withUnsafeMutableBufferPointer { wp in
            u.withUnsafeBufferPointer { up in
                for i1 in stride(from: 0, to: k, by: block) {
                    let i2 = min(i1 + block, k), width = i2 - i1
                    for j in i1..<i2 {
                        let column = order[j], group = column / gs
                        if !options.actOrder && j % gs == 0 {
                            for r in 0..<rows {
                                grids[r] = Int4Grid(UnsafeBufferPointer(rebasing: wp[r * k + j..<r * k + j + gs]), symmetric: options.symmetric)
                                result.set(grids[r], row: r, group: group)
                            }
                        }
                        let d = up[j * k + j]
                        for r in 0..<rows {
                            let grid = options.actOrder ? result.grid(row: r, group: group) : grids[r]
                            let x = wp[r * k + j], code = grid.code(x)
                            result.codes[r * cols + column] = code
                            let e = (x - grid.value(code)) / d
                            errors[r * width + j - i1] = e
                            let row = wp.baseAddress! + r * k, uRow = up.baseAddress! + j * k
                            for c in (j + 1)..<i2 { row[c] -= e * uRow[c] }
                        }
                    }
                    // W[:, i2:] -= E U[i1:i2, i2:]
                    if i2 < k {
                        errors.withUnsafeBufferPointer { ep in
                            lathe_sgemm(0, 0, rows, k - i2, width, -1, ep.baseAddress!, width, up.baseAddress! + i1 * k + i2, k, 1,
                                        wp.baseAddress! + i2, k)
                        }
                    }
                }
            }
        }
        return result
    }

    /// `w` `[rows, cols]` with its columns in `order` (column `j` of the result is `order[j]`).
    static func permutedColumns(_ w: [Float], rows: Int, cols: Int, order: [Int]) -> [Float] {
        var out = w
        for r in 0..<rows { for j in 0..<cols { out[r * cols + j] = w[r * cols + order[j]] } }
        return out
    }

    /// The upper-triangular `U` with `U^T U = A^{-1}` for a symmetric positive-definite `A`
    /// `[n, n]` (row-major), as float32; nil when `A` is not positive definite.
    ///
    /// With `J` the reversal permutation, the Cholesky factor `L` of `J A J` gives
    /// `A = R R^T` with `R = J L J` upper triangular, so `A^{-1} = R^{-T} R^{-1}` and
    /// `U = R^{-1} = J L^{-1} J`: one factorisation and one triangular inverse (`2n^3/3`
    /// flops), in double precision.
    public static func inverseCholeskyUpper(_ a: [Double], n: Int) -> [Float]? {
        precondition(a.count == n * n, "inverseCholeskyUpper: \(a.count) values are not [\(n), \(n)]")
        var l = [Double](repeating: 0, count: n * n)
        var m = [Double](repeating: 0, count: n * n)
        let ok = l.withUnsafeMutableBufferPointer { lp -> Bool in
            let L = lp.baseAddress!
            // L L^T = J A J: (J A J)[i][j] = A[n-1-i][n-1-j].
            for i in 0..<n {
                let li = L + i * n
                for j in 0...i {
                    let lj = L + j * n
                    var s = a[(n - 1 - i) * n + (n - 1 - j)]
                    for t in 0..<j { s -= li[t] * lj[t] }
                    if i == j {
                        guard s > 0, s.isFinite else { return false }
                        li[i] = s.squareRoot()
                    } else {
                        li[j] = s / lj[j]
                    }
                }
            }
            // M = L^{-1}, row by row: M[i, :] = (e_i - sum_{t<i} L[i][t] M[t, :]) / L[i][i].
            m.withUnsafeMutableBufferPointer { mp in
                let M = mp.baseAddress!
                for i in 0..<n {
                    let mi = M + i * n, li = L + i * n
                    mi[i] = 1
                    for t in 0..<i {
                        let f = li[t], mt = M + t * n
                        if f == 0 { continue }
                        for c in 0...t { mi[c] -= f * mt[c] }
                    }
                    let inv = 1 / li[i]
                    for c in 0...i { mi[c] *= inv }
                }
            }
            return true
        }
        guard ok else { return nil }
        var u = [Float](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { u[i * n + j] = Float(m[(n - 1 - i) * n + (n - 1 - j)]) } }
        return u
    }

    /// `sum_r d_r^T H d_r` with `d = deq - w` (rows of `[rows, cols]`): `T` times the mean
    /// squared output error on the calibration inputs when `H = X^T X`, or twice that for
    /// `H = 2 X^T X`.
    public static func outputError(_ deq: [Float], _ w: [Float], rows: Int, cols: Int, hessian: [Float]) -> Double {
        precondition(deq.count == rows * cols && w.count == rows * cols && hessian.count == cols * cols, "GPTQ.outputError: sizes do not match")
        var d = [Float](repeating: 0, count: rows * cols)
        for i in 0..<d.count { d[i] = deq[i] - w[i] }
        var dh = [Float](repeating: 0, count: rows * cols)
        d.withUnsafeBufferPointer { dp in
            hessian.withUnsafeBufferPointer { hp in
                dh.withUnsafeMutableBufferPointer { o in
                    lathe_sgemm(0, 0, rows, cols, cols, 1, dp.baseAddress!, cols, hp.baseAddress!, cols, 0, o.baseAddress!, cols)
                }
            }
        }
        var s = 0.0
        for i in 0..<d.count { s += Double(d[i]) * Double(dh[i]) }
        return s
    }
}

public struct GPTQError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}
