import Foundation
import LatheMerge
import LatheTensor
import XCTest
import _LatheTestSupport

/// The symmetric eigensolver and the truncated SVD built on it, checked against matrices built
/// with known eigen/singular values (random orthogonal factors from Gram–Schmidt here, not from
/// the code under test).
final class LowRankTests: XCTestCase {
    struct Rng {
        var g: RandomGenerator
        init(_ seed: UInt64) { g = RandomGenerator(seed: seed) }
        mutating func normal(_ n: Int) -> [Double] { Tensor.normal([n], generator: &g).scalars.map(Double.init) }
    }

    /// A random m×k matrix with orthonormal columns (modified Gram–Schmidt, twice), row-major.
    func orthonormalColumns(_ m: Int, _ k: Int, _ rng: inout Rng) -> [Double] {
        var cols = (0..<k).map { _ in rng.normal(m) }
        for _ in 0..<2 {
            for j in 0..<k {
                for p in 0..<j {
                    let dot = zip(cols[j], cols[p]).reduce(0) { $0 + $1.0 * $1.1 }
                    for i in 0..<m { cols[j][i] -= dot * cols[p][i] }
                }
                let norm = cols[j].reduce(0) { $0 + $1 * $1 }.squareRoot()
                cols[j] = cols[j].map { $0 / norm }
            }
        }
        var out = [Double](repeating: 0, count: m * k)
        for i in 0..<m { for j in 0..<k { out[i * k + j] = cols[j][i] } }
        return out
    }

    /// U diag(s) Vᵀ for U m×k, V n×k.
    func compose(_ u: [Double], _ s: [Double], _ v: [Double], m: Int, n: Int) -> [Double] {
        let k = s.count
        var x = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { var t = 0.0; for c in 0..<k { t += u[i * k + c] * s[c] * v[j * k + c] }; x[i * n + j] = t } }
        return x
    }

    func product(_ f: LowRankFactors) -> [Double] {
        var x = [Double](repeating: 0, count: f.rows * f.columns)
        for i in 0..<f.rows { for j in 0..<f.columns { var t = 0.0; for c in 0..<f.rank { t += f.b[i * f.rank + c] * f.a[c * f.columns + j] }; x[i * f.columns + j] = t } }
        return x
    }

    func maxAbs(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    func testEigenDecomposesSymmetricMatrices() throws {
        var rng = Rng(1)
        // (n, eigenvalues): distinct, repeated, zero and negative ones, 1×1 and 2×2.
        let cases: [(Int, [Double])] = [
            (1, [3]), (2, [1, -1]), (5, [4, 4, 4, 1, 0]), (40, (0..<40).map { Double($0 % 7) - 2.5 }),
            (33, (0..<33).map { $0 < 3 ? Double(10 - $0) : 0 }), (64, (0..<64).map { pow(0.7, Double($0)) }),
        ]
        for (n, lambda) in cases {
            let q = orthonormalColumns(n, n, &rng)
            let s = compose(q, lambda, q, m: n, n: n)
            let eig = try SymmetricEigen(symmetric: s, n: n)
            let sorted = lambda.sorted(by: >)
            let valueError = zip(eig.values, sorted).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(valueError, 1e-12 * Double(n), "n \(n): eigenvalues")
            // V diag(λ) Vᵀ = S and V Vᵀ = I.
            var vt = [Double](repeating: 0, count: n * n)
            for i in 0..<n { for j in 0..<n { vt[j * n + i] = eig.vectors[i * n + j] } }
            let rebuilt = compose(vt, eig.values, vt, m: n, n: n)
            XCTAssertLessThan(maxAbs(rebuilt, s), 1e-12 * Double(n), "n \(n): reconstruction")
            let identity = (0..<n * n).map { $0 / n == $0 % n ? 1.0 : 0.0 }
            XCTAssertLessThan(maxAbs(compose(vt, [Double](repeating: 1, count: n), vt, m: n, n: n), identity), 1e-13 * Double(n), "n \(n): orthonormal")
        }
        XCTAssertThrowsError(try SymmetricEigen(symmetric: [1, .nan, .nan, 1], n: 2))
    }

    func testSVDReconstructsAtFullRankAndTruncatesOptimally() throws {
        var rng = Rng(2)
        // (m, n, singular values): tall, wide, square, rank-deficient both ways, graded, rank one.
        let cases: [(Int, Int, [Double])] = [
            (50, 20, (0..<20).map { 3 / Double($0 + 1) }), (20, 50, (0..<20).map { 3 / Double($0 + 1) }),
            (30, 30, (0..<30).map { pow(0.8, Double($0)) }), (40, 30, [5, 4, 3, 2, 1]), (12, 70, [2, 2, 1e-3]),
            (64, 96, (0..<64).map { pow(0.5, Double($0)) }), (7, 1, [1.5]), (1, 9, [0.25]),
        ]
        for (m, n, s) in cases {
            let k = s.count
            let x = compose(orthonormalColumns(m, k, &rng), s, orthonormalColumns(n, k, &rng), m: m, n: n)
            let scale = s.max()!
            let full = try LowRank.factor(x, rows: m, columns: n, rank: min(m, n))
            let fullError = maxAbs(product(full), x)
            XCTAssertLessThan(fullError, 1e-12 * scale, "\(m)x\(n): full-rank reconstruction")
            XCTAssertLessThan(zip(full.singularValues, s + [Double](repeating: 0, count: min(m, n) - k)).map { abs($0 - $1) }.max()!,
                              1e-7 * scale, "\(m)x\(n): singular values")
            // A = Vᵣᵀ has orthonormal rows and Bᵀ B = diag(σ²), for the σ the Gram matrix resolves
            // (a direction's error is about ε·σ₁²/σᵢ², so only σᵢ above about 1e-4·σ₁ are checked).
            let resolved = s.filter { $0 > 1e-4 * scale }.count
            for i in 0..<resolved {
                for j in 0..<resolved {
                    var aa = 0.0, bb = 0.0
                    for c in 0..<n { aa += full.a[i * n + c] * full.a[j * n + c] }
                    for r in 0..<m { bb += full.b[r * full.rank + i] * full.b[r * full.rank + j] }
                    XCTAssertEqual(aa, i == j ? 1 : 0, accuracy: 1e-6, "\(m)x\(n): A A^T [\(i), \(j)]")
                    XCTAssertEqual(bb, i == j ? s[i] * s[i] : 0, accuracy: 1e-9 * scale * scale, "\(m)x\(n): B^T B [\(i), \(j)]")
                }
            }
            // Rank r: the error is the tail of the spectrum (Eckart–Young).
            for r in Set([1, max(1, k / 2), k - 1].filter { $0 >= 1 && $0 < k }).sorted() {
                let f = try LowRank.factor(x, rows: m, columns: n, rank: r)
                let error = zip(product(f), x).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
                let tail = s.dropFirst(r).reduce(0) { $0 + $1 * $1 }.squareRoot()
                XCTAssertEqual(error, tail, accuracy: 1e-7 * scale, "\(m)x\(n) rank \(r)")
                XCTAssertEqual(f.tailNorm, tail, accuracy: 1e-7 * scale, "\(m)x\(n) rank \(r): reported tail")
            }
        }
        // Past min(m, n) the factors are padded with zeros; the zero matrix factors to zeros.
        let x = compose(orthonormalColumns(6, 2, &rng), [1, 0.5], orthonormalColumns(4, 2, &rng), m: 6, n: 4)
        let padded = try LowRank.factor(x, rows: 6, columns: 4, rank: 7)
        XCTAssertEqual(padded.b.count, 6 * 7)
        XCTAssertLessThan(maxAbs(product(padded), x), 1e-13)
        XCTAssertTrue((4..<7).allSatisfy { j in (0..<6).allSatisfy { padded.b[$0 * 7 + j] == 0 } })
        let zero = try LowRank.factor([Double](repeating: 0, count: 12), rows: 3, columns: 4, rank: 2)
        XCTAssertTrue(zero.a.allSatisfy { $0 == 0 } || zero.b.allSatisfy { $0 == 0 })
        XCTAssertEqual(zero.singularValues, [0, 0, 0])
        XCTAssertThrowsError(try LowRank.factor(x, rows: 6, columns: 4, rank: 0))
        XCTAssertThrowsError(try LowRank.factor([.infinity, 0, 0, 1], rows: 2, columns: 2, rank: 1))
    }

    /// SmolLM2's MLP shape, to keep an eye on the cost.
    func testSVDOfAnMLPSizedMatrix() throws {
        var rng = Rng(3)
        let (m, n) = (384, 144)
        let x = rng.normal(m * n)
        let t0 = Date()
        let f = try LowRank.factor(x, rows: m, columns: n, rank: n)
        let seconds = Date().timeIntervalSince(t0)
        let error = maxAbs(product(f), x)
        XCTAssertLessThan(error, 1e-11)
        print("LowRank.factor \(m)x\(n): \(String(format: "%.3f", seconds)) s, max reconstruction error \(error)")
    }
}
