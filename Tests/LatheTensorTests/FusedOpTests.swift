import CLatheKernels
import LatheTensor
import XCTest
import _LatheTestSupport

/// Fused ops against the composed ops they replace, forward and backward, every ISA and 1
/// and 2 threads.
final class FusedOpTests: XCTestCase {
    func forEachISAAndThreads(_ body: (String) -> Void) {
        let original = lathe_active_isa(), threads = ThreadPool.threadCount
        defer { _ = lathe_set_isa(original); ThreadPool.threadCount = threads }
        for isa in [LATHE_ISA_SCALAR, LATHE_ISA_AVX2, LATHE_ISA_AVX512, LATHE_ISA_NEON] where lathe_set_isa(isa) == 0 {
            for t in [1, 2] {
                ThreadPool.threadCount = t
                body("\(String(cString: lathe_isa_name(isa))) threads \(t)")
            }
        }
    }

    /// lathe_sgemm_bias gives the bits of lathe_sgemm followed by a separate bias add.
    func testGEMMWithBiasIsGEMMThenBiasAdd() {
        var rng = RandomGenerator(seed: 2)
        forEachISAAndThreads { label in
            for (m, n, k) in [(1, 1, 1), (7, 17, 63), (129, 63, 17), (300, 70, 600), (64, 2100, 9), (5, 3, 0)] {
                for (ta, tb) in [(Int32(0), Int32(0)), (1, 0), (0, 1), (1, 1)] {
                    let a = Tensor.normal([m * Swift.max(k, 1)], generator: &rng).scalars
                    let b = Tensor.normal([n * Swift.max(k, 1)], generator: &rng).scalars
                    let bias = Tensor.normal([n], generator: &rng).scalars
                    let lda = ta == 1 ? m : k, ldb = tb == 1 ? k : n
                    var expected = [Float](repeating: 0, count: m * n), fused = [Float](repeating: .nan, count: m * n)
                    lathe_sgemm(ta, tb, m, n, k, 1, a, Swift.max(lda, 1), b, Swift.max(ldb, 1), 0, &expected, n)
                    for i in 0..<m { for j in 0..<n { expected[i * n + j] += bias[j] } }
                    lathe_sgemm_bias(ta, tb, m, n, k, 1, a, Swift.max(lda, 1), b, Swift.max(ldb, 1), 0, &fused, n, bias)
                    XCTAssertEqual(fused, expected, "\(label) \(m)x\(n)x\(k) ta \(ta) tb \(tb)")
                }
            }
        }
    }

    func testLinearMatchesMatmulPlusBias() {
        var rng = RandomGenerator(seed: 5)
        forEachISAAndThreads { label in
            for (m, k, n, withBias, transposedInput) in [(64, 64, 128, true, false), (3, 5, 7, false, false), (33, 17, 9, true, true),
                                                          (1, 130, 65, true, false), (200, 40, 30, false, true)] {
                let x0 = Tensor.normal(transposedInput ? [k, m] : [m, k], generator: &rng)
                let w0 = Tensor.normal([n, k], generator: &rng), b0 = Tensor.normal([n], generator: &rng)
                let seed = Tensor.normal([m, n], generator: &rng)
                func run(_ f: (Tensor, Tensor, Tensor?) -> Tensor) -> [Tensor] {
                    let x = x0.requiringGrad(), w = w0.requiringGrad(), b = b0.requiringGrad()
                    let input = transposedInput ? x.T : x
                    let y = f(input, w, withBias ? b : nil)
                    (y * seed).sum().backward()
                    return [y.detached(), x.grad!, w.grad!] + (withBias ? [b.grad!] : [])
                }
                let fused = run { $0.linear(weight: $1, bias: $2) }
                let composed = run { x, w, b in b.map { x.matmul(w.T) + $0 } ?? x.matmul(w.T) }
                let what = "\(label) m \(m) k \(k) n \(n) bias \(withBias) transposed \(transposedInput)"
                XCTAssertEqual(fused[0].scalars, composed[0].scalars, "output " + what)
                for (i, name) in ["output", "input grad", "weight grad", "bias grad"].enumerated() where i < fused.count {
                    assertClose(fused[i], composed[i], rtol: 1e-5, atol: 1e-5, name + " " + what)
                }
                XCTAssertTrue(fused[2].isContiguous, "weight grad is laid out as the weight")
            }
        }
    }
}
