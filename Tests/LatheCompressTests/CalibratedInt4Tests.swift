import Lathe
import XCTest
import _LatheTestSupport

/// GPTQ, AWQ's scale search and the Q4_0/Q4_1-exact groups they produce.
final class CalibratedInt4Tests: XCTestCase {
    /// Calibration inputs `[t, k]` with correlated channels of very different sizes (as LLM
    /// activations have), and `H = X^T X`.
    func calibration(t: Int, k: Int, seed: UInt64) -> (x: [Float], h: [Float]) {
        var g = RandomGenerator(seed: seed)
        let z = Tensor.normal([t, k], generator: &g)
        let mix = Tensor.normal([k, k], generator: &g) * (1 / Float(k).squareRoot())
        let sizes: [Float] = (0..<k).map { (c: Int) -> Float in c % 7 == 0 ? 8 : Float(1 + c % 3) }
        let mixed: Tensor = z + z.matmul(mix) * 2
        let x: Tensor = mixed * Tensor(sizes, shape: [1, k])
        let h = x.transposed().matmul(x)
        return (x.contiguous().scalars, h.contiguous().scalars)
    }

    func randomWeight(rows: Int, cols: Int, seed: UInt64) -> [Float] {
        var g = RandomGenerator(seed: seed)
        return (Tensor.normal([rows, cols], generator: &g) * 0.05).scalars
    }

    func testGPTQLowersTheCalibrationOutputErrorBelowRoundToNearest() throws {
        let (rows, cols) = (24, 128)
        let (_, h) = calibration(t: 512, k: cols, seed: 1)
        let w = randomWeight(rows: rows, cols: cols, seed: 2)
        for symmetric in [true, false] {
            let rtn = Int4Groups(roundingToNearest: w, rows: rows, cols: cols, symmetric: symmetric)
            let rtnError = GPTQ.outputError(rtn.dequantized(), w, rows: rows, cols: cols, hessian: h)
            for actOrder in [false, true] {
                let q = try GPTQ.quantize(weight: w, rows: rows, cols: cols, hessian: h, options: .init(symmetric: symmetric, blockSize: 64, actOrder: actOrder))
                let error = GPTQ.outputError(q.dequantized(), w, rows: rows, cols: cols, hessian: h)
                XCTAssertLessThan(error, 0.8 * rtnError, "symmetric \(symmetric) act-order \(actOrder): GPTQ \(error) vs round-to-nearest \(rtnError)")
                XCTAssertTrue(q.codes.allSatisfy { $0 < 16 })
            }
        }
    }

    func testGPTQWithTheIdentityHessianIsRoundToNearest() throws {
        let (rows, cols) = (8, 96)
        let w = randomWeight(rows: rows, cols: cols, seed: 3)
        var identity = [Float](repeating: 0, count: cols * cols)
        for j in 0..<cols { identity[j * cols + j] = 3 }
        for symmetric in [true, false] {
            let rtn = Int4Groups(roundingToNearest: w, rows: rows, cols: cols, symmetric: symmetric)
            for actOrder in [false, true] {
                let q = try GPTQ.quantize(weight: w, rows: rows, cols: cols, hessian: identity, options: .init(symmetric: symmetric, actOrder: actOrder))
                XCTAssertEqual(q, rtn, "symmetric \(symmetric) act-order \(actOrder)")
            }
        }
    }

    func testInverseCholeskyUpperFactorsTheInverse() throws {
        let n = 40
        // A well-conditioned H (X^T X / t + I), so that float32 U is accurate to ~1e-6.
        var (_, h) = calibration(t: 200, k: n, seed: 4)
        for i in 0..<n * n { h[i] /= 200 }
        for i in 0..<n { h[i * n + i] += 1 }
        let u = try XCTUnwrap(GPTQ.inverseCholeskyUpper(h.map(Double.init), n: n))
        for i in 0..<n { for j in 0..<i { XCTAssertEqual(u[i * n + j], 0, "U is upper triangular") } }
        // U^T U H = I (in double precision; U is float32).
        var utu = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for t in 0..<n { utu[i * n + j] += Double(u[t * n + i]) * Double(u[t * n + j]) } } }
        for i in 0..<n {
            for j in 0..<n {
                var p = 0.0
                for t in 0..<n { p += utu[i * n + t] * Double(h[t * n + j]) }
                XCTAssertEqual(p, i == j ? 1 : 0, accuracy: 1e-5, "(\(i), \(j))")
            }
        }
        XCTAssertNil(GPTQ.inverseCholeskyUpper([1, 2, 2, 1], n: 2), "not positive definite")
    }

    func testGroupsAreExactQ4Blocks() throws {
        let (rows, cols) = (5, 64)
        var w = randomWeight(rows: rows, cols: cols, seed: 5)
        w[3] = 0.9  // a large outlier
        for i in 32..<64 { w[i] = 0 }  // an all-zero group
        let (_, h) = calibration(t: 256, k: cols, seed: 6)
        for symmetric in [true, false] {
            let q = try GPTQ.quantize(weight: w, rows: rows, cols: cols, hessian: h, options: .init(symmetric: symmetric))
            let blocks = q.ggufBlocks()
            XCTAssertEqual(q.ggufType, symmetric ? .q4_0 : .q4_1)
            XCTAssertEqual(blocks.count, q.ggufType.byteCount(elementCount: rows * cols))
            // ggml's dequantisation of the blocks gives the values GPTQ quantized to.
            let ggml = blocks.withUnsafeBytes { q.ggufType.dequantized($0, count: rows * cols) }
            let mine = q.dequantized()
            for i in 0..<mine.count { XCTAssertEqual(ggml[i], mine[i], accuracy: 1e-7 * max(1, abs(mine[i])), "element \(i)") }
            // So does Lathe's group-wise layout.
            let lathe = q.groupwiseWeights().dequantized()
            for i in 0..<mine.count { XCTAssertEqual(lathe[i], mine[i], accuracy: 1e-6, "element \(i)") }
            // Each block's first element: its code in the low nibble of byte 2 (4 for Q4_1) of the block.
            let offset = symmetric ? 2 : 4
            XCTAssertEqual(blocks[offset] & 0xF, q.codes[0])
            XCTAssertEqual(blocks[offset] >> 4, q.codes[16])
        }
        // Round-to-nearest with fp16-rounded scales: every value within half a step of its group's
        // grid, except those beyond -7/8 of the largest-magnitude value `v` (the grid runs from
        // -7d to 8d with d = |v| / 8 on v's side), within a step.
        let rtn = Int4Groups(roundingToNearest: w, rows: rows, cols: cols, symmetric: true)
        let deq = rtn.dequantized()
        for r in 0..<rows {
            for g in 0..<2 {
                let d = abs(rtn.grid(row: r, group: g).scale)
                let v = w[(r * cols + g * 32)..<(r * cols + g * 32 + 32)].max { abs($0) < abs($1) }!
                for k in g * 32..<g * 32 + 32 {
                    let x = w[r * cols + k], clamped = x * v < 0 && abs(x) > abs(v) * 7 / 8
                    XCTAssertLessThanOrEqual(abs(deq[r * cols + k] - x), (clamped ? d : d / 2) * 1.001 + 1e-7, "row \(r) element \(k)")
                }
            }
        }
        XCTAssertTrue(deq[32..<64].allSatisfy { $0 == 0 }, "a zero group stays zero")
    }

    func testAWQScalesOutlierChannelsUpAndNeverLosesToRoundToNearest() {
        let (rows, cols) = (16, 64)
        let (x, h) = calibration(t: 400, k: cols, seed: 7)
        var meanAbs = [Float](repeating: 0, count: cols)
        for t in 0..<400 { for c in 0..<cols { meanAbs[c] += abs(x[t * cols + c]) / 400 } }
        let w = randomWeight(rows: rows, cols: cols, seed: 8)
        let search = AWQ.searchScales(weights: [(w, rows)], cols: cols, meanAbs: meanAbs, hessian: h, symmetric: true)
        XCTAssertEqual(search.errors.count, 20)
        // α = 0 (all scales 1) is plain round-to-nearest; the search keeps the best.
        let rtnError = GPTQ.outputError(Int4Groups(roundingToNearest: w, rows: rows, cols: cols, symmetric: true).dequantized(), w,
                                        rows: rows, cols: cols, hessian: h)
        XCTAssertEqual(search.errors[0], rtnError, accuracy: 1e-9 * rtnError)
        XCTAssertEqual(search.errors.min(), search.errors[Int((search.alpha * 20).rounded())])
        XCTAssertGreaterThan(search.alpha, 0, "these activations have outlier channels")
        XCTAssertGreaterThan(search.scales[0], search.scales[1], "channel 0 (8x larger inputs) is scaled up")
        // scales(α) are mean|x|^α normalised by sqrt(max·min).
        let s = AWQ.scales(meanAbs: [1, 4, 16], alpha: 0.5)
        XCTAssertEqual(s[0], 0.5, accuracy: 1e-6)
        XCTAssertEqual(s[2], 2, accuracy: 1e-6)
    }
}
