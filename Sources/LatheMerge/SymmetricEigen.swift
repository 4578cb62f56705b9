import Foundation
import LatheTensor

/// Eigenvalues and eigenvectors of a real symmetric matrix, in double precision.
///
/// Householder reduction to tridiagonal form `Qᵀ S Q = T` (Golub & Van Loan, *Matrix
/// Computations*, §8.3.1), then implicit QL iterations with Wilkinson-type shifts on `T`, the
/// plane rotations accumulated into `Q` (§8.3.2; the QL variant of Bowdler, Martin, Reinsch and
/// Wilkinson 1968). About 9n³ flops for n×n with vectors. The eigenvectors come out orthonormal to
/// a few ulps whatever the spectrum (they are products of reflections and rotations), and each
/// eigenvalue is accurate to about `ε·‖S‖₂` (absolute).
public struct SymmetricEigen: Sendable {
    /// The eigenvalues, largest first.
    public let values: [Double]
    /// The eigenvectors as rows (`vectors[i*n ..< (i+1)*n]` belongs to `values[i]`), orthonormal.
    public let vectors: [Double]
    public let n: Int

    /// The eigenvector of `values[i]`.
    public func vector(_ i: Int) -> ArraySlice<Double> { vectors[i * n ..< (i + 1) * n] }

    /// Decomposes the symmetric `n`×`n` matrix `s` (row-major; only its lower triangle is read).
    /// Throws when the QL iteration does not converge in 60 sweeps for some eigenvalue (which
    /// needs NaN or infinite entries in practice).
    public init(symmetric s: [Double], n: Int) throws {
        precondition(s.count == n * n, "SymmetricEigen: \(s.count) entries for \(n)x\(n)")
        self.n = n
        guard n > 0 else { (values, vectors) = ([], []); return }
        guard s.allSatisfy(\.isFinite) else { throw LowRankError("the matrix holds NaN or infinite values") }
        var a = s
        // Full symmetric storage, from the lower triangle.
        for i in 0..<n { for j in 0..<i { a[j * n + i] = a[i * n + j] } }
        var d = [Double](repeating: 0, count: n), e = [Double](repeating: 0, count: n)
        // zt = Qᵀ (rows); rotations of QL then act on pairs of rows, which are contiguous.
        var zt = [Double](repeating: 0, count: n * n)
        for i in 0..<n { zt[i * n + i] = 1 }
        SymmetricEigen.tridiagonalize(&a, n: n, d: &d, e: &e, qt: &zt)
        try SymmetricEigen.ql(d: &d, e: &e, zt: &zt, n: n)
        let order = (0..<n).sorted { d[$0] > d[$1] }
        values = order.map { d[$0] }
        var v = [Double](repeating: 0, count: n * n)
        for (k, i) in order.enumerated() { for j in 0..<n { v[k * n + j] = zt[i * n + j] } }
        vectors = v
    }

    /// Reduces the full symmetric `a` to tridiagonal `T` (diagonal `d`, `e[i] = T[i, i+1]`,
    /// `e[n−1] = 0`) by reflections `H_k = I − β v vᵀ` acting on rows/columns `k+1..<n`, and
    /// left-multiplies `qt` by each, so that `qt` ends as `Qᵀ = H_{n−3}⋯H₀` with `Qᵀ a Q = T`.
    static func tridiagonalize(_ a: inout [Double], n: Int, d: inout [Double], e: inout [Double], qt: inout [Double]) {
        var v = [Double](repeating: 0, count: n), p = [Double](repeating: 0, count: n), u = [Double](repeating: 0, count: n)
        for k in 0..<max(0, n - 2) {
            let m = n - k - 1                       // length of the column below the diagonal
            var scale = 0.0
            for i in 0..<m { scale = max(scale, abs(a[(k + 1 + i) * n + k])) }
            if scale == 0 { e[k] = 0; continue }
            var norm2 = 0.0
            for i in 0..<m { let x = a[(k + 1 + i) * n + k] / scale; v[i] = x; norm2 += x * x }
            let x0 = v[0]
            let alpha = (x0 >= 0 ? -1.0 : 1.0) * norm2.squareRoot()
            v[0] = x0 - alpha                       // v = x − α e₁ (scaled), so H x = α e₁
            let beta = 2 / (2 * (norm2 - alpha * x0))  // 2 / vᵀv
            e[k] = alpha * scale
            // p = β A' v over the trailing block A' = a[k+1..., k+1...]
            a.withUnsafeMutableBufferPointer { ab in
                v.withUnsafeMutableBufferPointer { vb in
                    p.withUnsafeMutableBufferPointer { pb in
                        let A = ab.baseAddress!, V = vb.baseAddress!, P = pb.baseAddress!
                        let grain = max(1, 16_384 / m)
                        ThreadPool.forChunks(m, grain: grain) { rows in
                            for i in rows {
                                let row = A + (k + 1 + i) * n + (k + 1)
                                var s = 0.0
                                for j in 0..<m { s += row[j] * V[j] }
                                P[i] = beta * s
                            }
                        }
                        var pv = 0.0
                        for i in 0..<m { pv += P[i] * V[i] }
                        let kk = beta * pv / 2
                        for i in 0..<m { P[i] -= kk * V[i] }   // w = p − (β pᵀv / 2) v
                        // A' −= v wᵀ + w vᵀ
                        ThreadPool.forChunks(m, grain: grain) { rows in
                            for i in rows {
                                let row = A + (k + 1 + i) * n + (k + 1)
                                let vi = V[i], wi = P[i]
                                for j in 0..<m { row[j] -= vi * P[j] + wi * V[j] }
                            }
                        }
                    }
                }
            }
            // qt ← H_k qt on rows k+1..<n: u = vᵀ qt' by column blocks, then qt' −= β v uᵀ by rows.
            qt.withUnsafeMutableBufferPointer { qb in
                v.withUnsafeMutableBufferPointer { vb in
                    u.withUnsafeMutableBufferPointer { ub in
                        let Q = qb.baseAddress!, V = vb.baseAddress!, U = ub.baseAddress!
                        ThreadPool.forChunks(n, grain: 128) { columns in
                            for j in columns { U[j] = 0 }
                            for i in 0..<m {
                                let row = Q + (k + 1 + i) * n, vi = V[i]
                                if vi != 0 { for j in columns { U[j] += vi * row[j] } }
                            }
                        }
                        ThreadPool.forChunks(m, grain: max(1, 16_384 / n)) { rows in
                            for i in rows {
                                let row = Q + (k + 1 + i) * n, f = beta * V[i]
                                if f != 0 { for j in 0..<n { row[j] -= f * U[j] } }
                            }
                        }
                    }
                }
            }
        }
        for i in 0..<n { d[i] = a[i * n + i] }
        if n >= 2 { e[n - 2] = a[(n - 1) * n + (n - 2)] }
        e[n - 1] = 0
    }

    /// Diagonalises the tridiagonal (`d`, `e`) by implicit QL steps, applying each rotation of
    /// rows `i`, `i+1` to `zt`. On return `d` holds the eigenvalues and row `i` of `zt` the
    /// eigenvector of `d[i]`.
    static func ql(d: inout [Double], e: inout [Double], zt: inout [Double], n: Int) throws {
        let eps = Double.ulpOfOne
        // Off-diagonals below ε·‖T‖ are negligible (a test relative to the neighbouring diagonal
        // alone never passes among zero eigenvalues, as in a rank-deficient Gram matrix).
        var norm = 0.0
        for i in 0..<n { norm = max(norm, abs(d[i]) + abs(e[i])) }
        var rotations: [(Int, Double, Double)] = []
        rotations.reserveCapacity(n)
        for l in 0..<n {
            var iterations = 0
            while true {
                // The first negligible off-diagonal at or after l ends the unreduced block.
                var m = l
                while m < n - 1 {
                    let dd = abs(d[m]) + abs(d[m + 1])
                    if abs(e[m]) <= eps * max(dd, norm) { break }
                    m += 1
                }
                if m == l { break }
                iterations += 1
                if iterations > 60 { throw LowRankError("the eigenvalue iteration did not converge") }
                // Shift from the leading 2×2 block: the eigenvalue of it closer to d[l].
                var g = (d[l + 1] - d[l]) / (2 * e[l])
                var r = (g * g + 1).squareRoot()
                g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r))
                var s = 1.0, c = 1.0, p = 0.0
                var i = m - 1
                var deflated = false
                rotations.removeAll(keepingCapacity: true)
                while i >= l {
                    let f = s * e[i], b = c * e[i]
                    r = (f * f + g * g).squareRoot()
                    e[i + 1] = r
                    if r == 0 {                  // underflow: split here and start over
                        d[i + 1] -= p
                        e[m] = 0
                        deflated = true
                        break
                    }
                    s = f / r
                    c = g / r
                    g = d[i + 1] - p
                    r = (d[i] - g) * s + 2 * c * b
                    p = s * r
                    d[i + 1] = g + p
                    g = c * r - b
                    rotations.append((i, c, s))
                    i -= 1
                }
                // The step's rotations, in order, on rows i, i+1 of zt; columns are independent.
                rotations.withUnsafeBufferPointer { rb in
                    zt.withUnsafeMutableBufferPointer { zb in
                        let Z = zb.baseAddress!
                        ThreadPool.forChunks(n, grain: 64) { columns in
                            for (i, c, s) in rb {
                                let z0 = Z + i * n, z1 = z0 + n
                                for k in columns {
                                    let f1 = z1[k]
                                    z1[k] = s * z0[k] + c * f1
                                    z0[k] = c * z0[k] - s * f1
                                }
                            }
                        }
                    }
                }
                if deflated { continue }
                d[l] -= p
                e[l] = g
                e[m] = 0
            }
        }
    }
}

/// A matrix that cannot be factored, with why.
public struct LowRankError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
