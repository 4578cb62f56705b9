import CLatheKernels
import LatheTensor
import XCTest
import _LatheTestSupport

/// Fast C kernels against the naive Swift references, over awkward sizes, every ISA the
/// CPU has, and 1 and 2 threads.
final class KernelTests: XCTestCase {
    func testGEMMMatchesNaiveOnAwkwardShapes() {
        var rng = RandomGenerator(seed: 1)
        let sizes = [(1, 1, 1), (7, 17, 63), (17, 7, 129), (63, 129, 7), (129, 63, 17), (33, 65, 31), (1, 129, 64), (64, 1, 5),
                     (100, 70, 300), (2, 70, 37), (1, 300, 1000), (2, 5, 16),
                     (200, 8, 70), (300, 5, 600), (130, 16, 33)]  // the last three: few columns, computed as C^T
        forEachISAAndThreads { label in
            for (m, n, k) in sizes {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    for (alpha, beta) in [(Float(1), Float(0)), (0.5, 2)] {
                        let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2
                        let a = Tensor.normal([(ta ? k : m) * lda], generator: &rng).scalars
                        let b = Tensor.normal([(tb ? n : k) * ldb], generator: &rng).scalars
                        var c = Tensor.normal([m * ldc], generator: &rng).scalars
                        if beta == 0 { c = c.map { _ in .nan } }  // beta == 0 must not read C
                        var expected = c
                        ReferenceKernels.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
                                               ldb: ldb, beta: beta, c: &expected, ldc: ldc)
                        lathe_sgemm(ta ? 1 : 0, tb ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, &c, ldc)
                        for i in 0..<m {
                            for j in 0..<n {
                                let e = expected[i * ldc + j], v = c[i * ldc + j]
                                if !(Swift.abs(e - v) <= 1e-4 * Float(k).squareRoot() * (1 + Swift.abs(e))) {
                                    XCTFail("\(label) gemm \(m)x\(n)x\(k) ta \(ta) tb \(tb) alpha \(alpha) beta \(beta) at (\(i),\(j)): \(v) vs \(e)")
                                    return
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func testGEMMBitsDoNotDependOnThreadCount() {
        var rng = RandomGenerator(seed: 2)
        let a = Tensor.normal([300, 257], generator: &rng), b = Tensor.normal([257, 190], generator: &rng)
        let threads = ThreadPool.threadCount
        defer { ThreadPool.threadCount = threads }
        ThreadPool.threadCount = 1
        let one = a.matmul(b).scalars
        ThreadPool.threadCount = 2
        let two = a.matmul(b).scalars
        let again = a.matmul(b).scalars
        XCTAssertEqual(one, two)
        XCTAssertEqual(two, again)
    }

    /// A row of C gets the same bits however many rows the product has: the register tile is
    /// picked by the row count (on AVX-512, 12 rows for 128 or 8, 14 for 126 or 512), and the
    /// tiles must agree element by element, with a bias and several K blocks.
    func testGEMMRowBitsDoNotDependOnTheRowCount() {
        var rng = RandomGenerator(seed: 3)
        let (k, n) = (1100, 70)
        let a = Tensor.normal([512, k], generator: &rng).scalars, b = Tensor.normal([n, k], generator: &rng).scalars
        let bias = Tensor.normal([n], generator: &rng).scalars
        forEachISAAndThreads { label in
            var full = [Float](repeating: 0, count: 512 * n)
            lathe_sgemm_bias(0, 1, 512, n, k, 1, a, k, b, k, 0, &full, n, bias)
            for m in [3, 8, 12, 14, 126, 127, 128, 384] {  // (1 or 2 rows take the matrix-vector kernel)
                var part = [Float](repeating: 0, count: m * n)
                lathe_sgemm_bias(0, 1, m, n, k, 1, a, k, b, k, 0, &part, n, bias)
                XCTAssertEqual(part, Array(full[0..<(m * n)]), "\(label) rows 0..<\(m) of a 512-row product")
            }
        }
    }

    func testUnaryKernelsMatchReference() {
        var rng = RandomGenerator(seed: 3)
        forEachISAAndThreads { label in
            for n in [1, 7, 15, 16, 17, 63, 129, 1000] {
                let x = Tensor.normal([n], std: 3, generator: &rng)
                let pos = x.abs() + 0.1
                let ops: [(String, (Tensor) -> Tensor, Tensor)] = [
                    ("neg", { -$0 }, x), ("abs", { $0.abs() }, x), ("exp", { $0.exp() }, x), ("log", { $0.log() }, pos),
                    ("sqrt", { $0.sqrt() }, pos), ("rsqrt", { $0.rsqrt() }, pos), ("tanh", { $0.tanh() }, x),
                    ("sigmoid", { $0.sigmoid() }, x), ("relu", { $0.relu() }, x), ("gelu", { $0.gelu() }, x),
                    ("gelu_tanh", { $0.gelu(approximateTanh: true) }, x), ("silu", { $0.silu() }, x),
                    ("softplus", { $0.softplus() }, x * 10), ("erf", { $0.erf() }, x), ("sin", { $0.sin() }, x),
                    ("cos", { $0.cos() }, x), ("square", { $0.square() }, x), ("reciprocal", { $0.reciprocal() }, pos),
                ]
                for (name, f, input) in ops {
                    let ref = ReferenceKernels.unary[name]!
                    let expected = Tensor(input.scalars.map { Float(ref(Double($0))) }, shape: [n])
                    assertClose(f(input), expected, rtol: 4e-6, atol: 1e-6, "\(label) \(name) n=\(n)")
                }
            }
        }
    }

    func testReductionsAndSoftmaxMatchReference() {
        var rng = RandomGenerator(seed: 4)
        forEachISAAndThreads { label in
            for (rows, len) in [(1, 1), (3, 7), (5, 17), (2, 63), (4, 129), (1, 100_000), (7, 1000)] {
                let x = Tensor.normal([rows, len], generator: &rng)
                let sums = Tensor(ReferenceKernels.rowSums(x.scalars, rows: rows, len: len), shape: [rows])
                assertClose(x.sum(dim: 1), sums, rtol: 1e-5, atol: 1e-4 * Float(len).squareRoot(), "\(label) sum \(rows)x\(len)")
                assertClose(x.softmax(dim: 1), Tensor(ReferenceKernels.softmaxRows(x.scalars, rows: rows, len: len), shape: [rows, len]),
                            rtol: 1e-5, atol: 1e-7, "\(label) softmax \(rows)x\(len)")
                let column = x.transposed(0, 1).contiguous()  // reduce over the leading dim with inner > 1
                assertClose(column.sum(dim: 0), sums, rtol: 1e-5, atol: 1e-4 * Float(len).squareRoot(), "\(label) column sum")
                let (m, i) = x.max(dim: 1)
                let rowsData = x.scalars
                for r in 0..<rows {
                    let row = Array(rowsData[(r * len)..<((r + 1) * len)])
                    XCTAssertEqual(m.scalars[r], row.max()!, "\(label) max")
                    XCTAssertEqual(i.intScalars[r], row.firstIndex(of: row.max()!)!, "\(label) argmax")
                }
            }
        }
    }

    func testStridedAndBroadcastBinaryOps() {
        var rng = RandomGenerator(seed: 5)
        let a = Tensor.normal([7, 17], generator: &rng), b = Tensor.normal([17, 7], generator: &rng)
        let bt = b.transposed(0, 1)  // a strided view
        let sum = a + bt
        let av = a.scalars, bv = b.scalars
        var expected = [Float]()
        for i in 0..<7 { for j in 0..<17 { expected.append(av[i * 17 + j] + bv[j * 7 + i]) } }
        assertClose(sum, Tensor(expected, shape: [7, 17]), rtol: 0, atol: 0)
        let col = Tensor.normal([7, 1], generator: &rng)
        let cv = col.scalars
        let expectedProduct: [Float] = (0..<(7 * 17)).map { av[$0] * cv[$0 / 17] }
        assertClose(a * col, Tensor(expectedProduct, shape: [7, 17]), rtol: 0, atol: 0)
        let sliced = a.sliced(dim: 1, start: 1, step: 3)
        XCTAssertEqual(sliced.shape, [7, 6])
        var expectedSlice: [Float] = []
        for i in 0..<7 { for j in 0..<6 { expectedSlice.append(av[i * 17 + 1 + 3 * j] * 2) } }
        assertClose(sliced * 2, Tensor(expectedSlice, shape: [7, 6]), rtol: 0, atol: 0)
    }

    func testConv2dMatchesDirectReference() {
        var rng = RandomGenerator(seed: 6)
        // (n, c, h, w, o, kh, kw, stride, padding, dilation, groups)
        let cases = [(1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1), 1), (2, 3, 7, 9, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1),
                     (1, 4, 17, 13, 6, 3, 2, (2, 3), (1, 0), (2, 1), 2), (3, 6, 8, 8, 6, 3, 3, (1, 1), (1, 1), (1, 1), 6),
                     (2, 16, 12, 12, 32, 5, 5, (1, 1), (2, 2), (1, 1), 1), (1, 3, 63, 5, 7, 1, 1, (1, 1), (0, 0), (1, 1), 1)]
        forEachISAAndThreads { label in
            for (n, c, h, w, o, kh, kw, s, p, d, g) in cases {
                let x = Tensor.normal([n, c, h, w], generator: &rng), wt = Tensor.normal([o, c / g, kh, kw], generator: &rng)
                let bias = Tensor.normal([o], generator: &rng)
                let ref = ReferenceKernels.conv2d(x: x.scalars, n: n, c: c, h: h, w: w, weight: wt.scalars, o: o, kh: kh, kw: kw,
                                                  bias: bias.scalars, stride: s, padding: p, dilation: d, groups: g)
                let y = x.conv2d(weight: wt, bias: bias, stride: s, padding: p, dilation: d, groups: g)
                assertClose(y, Tensor(ref.values, shape: [n, o, ref.oh, ref.ow]), rtol: 1e-4, atol: 1e-4, "\(label) conv \(n)x\(c)x\(h)x\(w) k\(kh)x\(kw)")
            }
        }
    }

    func testWholeTrainingStepIsBitIdenticalAcrossThreadCounts() {
        func step() -> [Float] {
            var rng = RandomGenerator(seed: 9)
            let x = Tensor.normal([8, 3, 12, 12], generator: &rng)
            let w1 = Init.kaimingUniform([16, 3, 3, 3], generator: &rng).requiringGrad()
            let w2 = Init.kaimingUniform([10, 16 * 36], generator: &rng).requiringGrad()
            let h = x.conv2d(weight: w1, padding: (1, 1)).relu().maxPool2d(kernel: (2, 2)).flattened(from: 1)
            let logits = h.matmul(w2.T)
            let loss = -logits.logSoftmax(dim: 1).gathering(dim: 1, index: Tensor([1, 2, 3, 4, 5, 6, 7, 8], shape: [8, 1])).mean()
            loss.backward()
            return [loss.item] + w1.grad!.scalars + w2.grad!.scalars
        }
        let threads = ThreadPool.threadCount
        defer { ThreadPool.threadCount = threads }
        ThreadPool.threadCount = 1
        let one = step()
        ThreadPool.threadCount = 2
        XCTAssertEqual(one, step())
        XCTAssertEqual(one, step())
    }
}
