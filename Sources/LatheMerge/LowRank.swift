import Foundation
import LatheTensor

/// A rank-r factorisation `Δ ≈ B A` of an m×n matrix from its singular value decomposition
/// `Δ = U S Vᵀ`: `B = U_r S_r` (m×r) and `A = V_rᵀ` (r×n), the split PEFT's
/// `add_weighted_adapter` uses (`lora_B = U[:, :r] @ diag(S[:r])`, `lora_A = Vh[:r]`). Columns of
/// `B` / rows of `A` past min(m, n) are zero.
public struct LowRankFactors: Sendable {
    public let rows: Int, columns: Int, rank: Int
    /// `B`, m×r, row-major.
    public var b: [Double]
    /// `A`, r×n, row-major.
    public var a: [Double]
    /// All min(m, n) singular values, largest first.
    public let singularValues: [Double]

    /// ‖Δ − B A‖_F of the best rank-r approximation: `sqrt(Σ_{i>r} σᵢ²)`.
    public var tailNorm: Double { singularValues.dropFirst(rank).reduce(0) { $0 + $1 * $1 }.squareRoot() }
}

/// Truncated SVD through the eigen-decomposition of the smaller Gram matrix, in double precision.
///
/// For m ≥ n: `ΔᵀΔ = V S² Vᵀ`, then `B = Δ V_r` (= U_r S_r), `A = V_rᵀ`. For m < n: `ΔΔᵀ = U S² Uᵀ`,
/// `Aʹ = U_rᵀ Δ` (= S_r V_rᵀ), σᵢ the norm of row i of Aʹ, `B = U_r S_r`, `A = S_r⁻¹ Aʹ` (rows with
/// σᵢ = 0 are zero). Either way `B A = Δ V_r V_rᵀ` (or `U_r U_rᵀ Δ`) with orthonormal `V_r`, so
/// at full rank `B A` reproduces Δ to about `n·ε·‖Δ‖` however ill-conditioned Δ is, and at rank r
/// it is the projection onto the leading r singular directions (Eckart–Young). Singular values
/// below about `sqrt(ε)·σ₁` carry an absolute error of about `ε·σ₁²/σᵢ` (squaring in the Gram
/// matrix), which moves neither reconstruction nor the best-approximation error measurably.
/// Cost: about `2·m·n·min(m, n) + 9·min(m, n)³` flops.
public enum LowRank {
    /// Factors the m×n row-major `x` at rank `rank` (≥ 1; past min(m, n) the factors are padded).
    public static func factor(_ x: [Double], rows m: Int, columns n: Int, rank: Int) throws -> LowRankFactors {
        precondition(x.count == m * n, "LowRank.factor: \(x.count) entries for \(m)x\(n)")
        guard rank >= 1 else { throw LowRankError("the rank must be at least 1, got \(rank)") }
        guard x.allSatisfy(\.isFinite) else { throw LowRankError("the matrix holds NaN or infinite values") }
        let k = min(m, n), r = rank, kept = min(r, k)
        var b = [Double](repeating: 0, count: m * r), a = [Double](repeating: 0, count: r * n)
        var sigma = [Double](repeating: 0, count: k)
        guard k > 0 else { return LowRankFactors(rows: m, columns: n, rank: r, b: b, a: a, singularValues: sigma) }
        if m >= n {
            let eig = try SymmetricEigen(symmetric: gram(x, rows: m, columns: n, transposeFirst: true), n: n)
            // bFull[i, j] = Σ_c x[i, c] v_j[c], all n directions (their norms are the σ's).
            var bFull = [Double](repeating: 0, count: m * n)
            x.withUnsafeBufferPointer { xp in
                eig.vectors.withUnsafeBufferPointer { vp in
                    bFull.withUnsafeMutableBufferPointer { bp in
                        let X = xp.baseAddress!, V = vp.baseAddress!, B = bp.baseAddress!
                        ThreadPool.forChunks(m, grain: max(1, 16_384 / max(1, n))) { range in
                            for i in range {
                                for j in 0..<n {
                                    var s = 0.0
                                    for c in 0..<n { s += X[i * n + c] * V[j * n + c] }
                                    B[i * n + j] = s
                                }
                            }
                        }
                    }
                }
            }
            for j in 0..<n {
                var s = 0.0
                for i in 0..<m { s += bFull[i * n + j] * bFull[i * n + j] }
                sigma[j] = s.squareRoot()
            }
            for i in 0..<m { for j in 0..<kept { b[i * r + j] = bFull[i * n + j] } }
            for j in 0..<kept { for c in 0..<n { a[j * n + c] = eig.vectors[j * n + c] } }
        } else {
            let eig = try SymmetricEigen(symmetric: gram(x, rows: m, columns: n, transposeFirst: false), n: m)
            // aFull[j, :] = Σ_i u_j[i] x[i, :]
            var aFull = [Double](repeating: 0, count: m * n)
            x.withUnsafeBufferPointer { xp in
                eig.vectors.withUnsafeBufferPointer { up in
                    aFull.withUnsafeMutableBufferPointer { ap in
                        let X = xp.baseAddress!, U = up.baseAddress!, A = ap.baseAddress!
                        ThreadPool.forChunks(m, grain: max(1, 16_384 / max(1, n))) { range in
                            for j in range {
                                let row = A + j * n
                                for i in 0..<m {
                                    let u = U[j * m + i]
                                    if u == 0 { continue }
                                    let xr = X + i * n
                                    for c in 0..<n { row[c] += u * xr[c] }
                                }
                            }
                        }
                    }
                }
            }
            for j in 0..<m {
                var s = 0.0
                for c in 0..<n { s += aFull[j * n + c] * aFull[j * n + c] }
                sigma[j] = s.squareRoot()
            }
            for j in 0..<kept where sigma[j] > 0 {
                let inv = 1 / sigma[j]
                for c in 0..<n { a[j * n + c] = aFull[j * n + c] * inv }
                for i in 0..<m { b[i * r + j] = eig.vectors[j * m + i] * sigma[j] }
            }
        }
        return LowRankFactors(rows: m, columns: n, rank: r, b: b, a: a, singularValues: sigma)
    }

    /// `xᵀx` (n×n) when `transposeFirst`, else `x xᵀ` (m×m), full symmetric storage.
    static func gram(_ x: [Double], rows m: Int, columns n: Int, transposeFirst: Bool) -> [Double] {
        // Dot products of rows: of xᵀ (a transposed copy) or of x.
        var rowsOf = x
        var (count, length) = (m, n)
        if transposeFirst {
            for i in 0..<m { for c in 0..<n { rowsOf[c * m + i] = x[i * n + c] } }
            (count, length) = (n, m)
        }
        var g = [Double](repeating: 0, count: count * count)
        rowsOf.withUnsafeBufferPointer { xp in
            g.withUnsafeMutableBufferPointer { gp in
                let X = xp.baseAddress!, G = gp.baseAddress!
                ThreadPool.forChunks(count, grain: max(1, 8_192 / max(1, length))) { range in
                    for p in range {
                        let xp = X + p * length
                        for q in 0...p {
                            let xq = X + q * length
                            var s = 0.0
                            for c in 0..<length { s += xp[c] * xq[c] }
                            G[p * count + q] = s
                            G[q * count + p] = s
                        }
                    }
                }
            }
        }
        return g
    }
}
