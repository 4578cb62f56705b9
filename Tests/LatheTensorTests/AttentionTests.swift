import CLatheKernels
import LatheTensor
import XCTest
import _LatheTestSupport

/// The fused causal self-attention kernel against the same attention composed from primitive
/// ops, forward and backward, over awkward shapes, every ISA and 1 and 2 threads.
final class AttentionTests: XCTestCase {
    /// Split, rotate ("rotate half" with the given tables), masked softmax, weighted sum, join.
    static func composed(_ qkv: Tensor, heads: Int, cos: Tensor?, sin: Tensor?) -> Tensor {
        let (b, t, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
        let hd = d / heads
        let parts = qkv.split(size: d, dim: -1)
        func split(_ y: Tensor) -> Tensor { y.reshaped([b, t, heads, hd]).permuted([0, 2, 1, 3]) }
        func rotate(_ x: Tensor) -> Tensor {
            guard let cos, let sin else { return x }
            let x1 = x.sliced(dim: -1, end: hd / 2), x2 = x.sliced(dim: -1, start: hd / 2)
            return x * cos + Tensor.concatenated([-x2, x1], dim: -1) * sin
        }
        let q = rotate(split(parts[0])), k = rotate(split(parts[1])), v = split(parts[2])
        var m = [Float](repeating: 0, count: t * t)
        for i in 0..<t { for j in 0..<t where j > i { m[i * t + j] = -.infinity } }
        let scores = q.matmul(k.transposed(-1, -2)) * (1 / Float(hd).squareRoot()) + Tensor(m, shape: [t, t])
        return scores.softmax(dim: -1).matmul(v).permuted([0, 2, 1, 3]).reshaped([b, t, d])
    }

    /// (batch, length, heads, head dim, rotary)
    let cases: [(Int, Int, Int, Int, Bool)] = [(2, 5, 3, 4, true), (1, 17, 2, 6, true), (2, 33, 1, 20, false), (3, 1, 2, 2, true),
                                               (1, 64, 4, 32, true), (2, 40, 2, 16, false), (1, 19, 2, 48, true), (1, 3, 1, 70, false)]

    func testFusedAttentionMatchesComposedOps() {
        let original = lathe_active_isa(), threads = ThreadPool.threadCount
        defer { _ = lathe_set_isa(original); ThreadPool.threadCount = threads }
        for (b, t, h, hd, rope) in cases {
            var rng = RandomGenerator(seed: UInt64(b * 1000 + t * 10 + hd))
            let qkv = Tensor.normal([b, t, 3 * h * hd], generator: &rng)
            let cos = rope ? Tensor.uniform([t, hd], low: -1, high: 1, generator: &rng) : nil
            let sin = rope ? Tensor.uniform([t, hd], low: -1, high: 1, generator: &rng) : nil
            let seed = Tensor.normal([b, t, h * hd], generator: &rng)
            let leaf = qkv.requiringGrad()
            let expected = Self.composed(leaf, heads: h, cos: cos, sin: sin)
            (expected * seed).sum().backward()
            let expectedGrad = leaf.grad!
            var previous: (Tensor, Tensor)? = nil
            for isa in availableISAs() {
                _ = lathe_set_isa(isa)
                for threads in [1, 2] {
                    ThreadPool.threadCount = threads
                    let label = "b \(b) t \(t) heads \(h) hd \(hd) rope \(rope), \(String(cString: lathe_isa_name(isa))) threads \(threads)"
                    let x = qkv.requiringGrad()
                    let y = x.causalSelfAttention(heads: h, cos: cos, sin: sin)
                    (y * seed).sum().backward()
                    assertClose(y, expected.detached(), rtol: 1e-4, atol: 1e-5, label)
                    assertClose(x.grad!, expectedGrad, rtol: 1e-3, atol: 1e-4, label)
                    if threads == 2, let (py, pg) = previous {  // same ISA, 1 thread: the same bits
                        XCTAssertEqual(y.scalars, py.scalars, label)
                        XCTAssertEqual(x.grad!.scalars, pg.scalars, label)
                    }
                    previous = (y, x.grad!)
                }
            }
        }
    }

    func testFusedAttentionGradientMatchesFiniteDifferences() {
        var rng = RandomGenerator(seed: 3)
        let qkv = Tensor.normal([1, 6, 12], generator: &rng)
        let cos = Tensor.uniform([6, 2], low: -1, high: 1, generator: &rng)
        let sin = Tensor.uniform([6, 2], low: -1, high: 1, generator: &rng)
        assertGradientsMatchFiniteDifferences([qkv]) { $0[0].causalSelfAttention(heads: 2, cos: cos, sin: sin) }
        assertGradientsMatchFiniteDifferences([qkv]) { $0[0].causalSelfAttention(heads: 1) }
    }
}
