import Lathe
import XCTest
import _LatheTestSupport

/// `linearCrossEntropy` (head and loss fused, a block of rows at a time) against the composed
/// `crossEntropy(x.linear(weight: W), targets)`: value and both gradients.
final class LinearCrossEntropyTests: XCTestCase {
    func testMatchesComposedHeadAndLoss() {
        var g = RandomGenerator(seed: 7)
        let (n, k, v) = (23, 16, 37)
        let x0 = Tensor.normal([n, k], generator: &g), w0 = Tensor.normal([v, k], std: 0.5, generator: &g)
        var targets = (0..<n).map { ($0 * 11) % v }
        targets[3] = -100; targets[n - 1] = -100
        // A frozen weight streams the vocabulary in chunks (online softmax): one chunk, several,
        // and a ragged last one.
        for (blockRows, chunk) in [(nil, nil), (1, 5), (5, 37), (64, 8), (7, 1)] as [(Int?, Int?)] {
            for trainWeight in [false, true] {
                let (x, w) = (x0.requiringGrad(), w0.requiringGrad(trainWeight))
                let fused = x.linearCrossEntropy(weight: w, targets: targets, blockRows: blockRows, vocabularyChunk: chunk)
                (fused * 3).backward()
                let (xr, wr) = (x0.requiringGrad(), w0.requiringGrad(trainWeight))
                let composed = Loss.crossEntropy(xr.linear(weight: wr), Tensor(targets, shape: [n]))
                (composed * 3).backward()
                let what = "blockRows \(String(describing: blockRows)), chunk \(String(describing: chunk)), weight trained: \(trainWeight)"
                assertClose(fused, composed, rtol: 1e-5, atol: 1e-6, what)
                assertClose(x.grad!, xr.grad!, rtol: 1e-4, atol: 1e-6, what)
                XCTAssertEqual(x.grad!.scalars[3 * k..<4 * k].allSatisfy { $0 == 0 }, true, "an ignored row gets no gradient")
                if trainWeight { assertClose(w.grad!, wr.grad!, rtol: 1e-4, atol: 1e-6, what) } else { XCTAssertNil(w.grad) }
            }
        }
    }

    /// Logits of a few hundred, their maximum rising from chunk to chunk: the running maximum
    /// keeps the streamed softmax finite and the rescaled sums exact enough.
    func testLargeLogitsStreamStably() {
        var g = RandomGenerator(seed: 8)
        let (n, k, v) = (9, 12, 50)
        let x0 = Tensor.normal([n, k], generator: &g) * 40
        let w0 = Tensor.normal([v, k], generator: &g) * Tensor((0..<v).map { Float($0 + 1) / Float(v) }, shape: [v, 1])
        let targets = (0..<n).map { ($0 * 7) % v }
        let x = x0.requiringGrad(), xr = x0.requiringGrad()
        let fused = x.linearCrossEntropy(weight: w0, targets: targets, vocabularyChunk: 6)
        fused.backward()
        let composed = Loss.crossEntropy(xr.linear(weight: w0), Tensor(targets, shape: [n]))
        composed.backward()
        XCTAssertTrue(fused.item.isFinite && fused.item > 10, "logits this large give a large, finite loss: \(fused.item)")
        assertClose(fused, composed, rtol: 1e-5, atol: 1e-4)
        assertClose(x.grad!, xr.grad!, rtol: 1e-4, atol: 1e-5)
    }

    /// A weight given by rows (a quantized head dequantised a chunk at a time) gives the bits of
    /// the same float weight given whole.
    func testWeightGivenByRowsMatchesTheDenseWeight() {
        var g = RandomGenerator(seed: 9)
        let (n, k, v) = (11, 20, 45)
        let x0 = Tensor.normal([n, k], generator: &g), w0 = Tensor.normal([v, k], generator: &g)
        let ws = w0.scalars
        var targets = (0..<n).map { ($0 * 13) % v }
        targets[2] = -100
        for chunk in [nil, 7, 45] as [Int?] {
            let x = x0.requiringGrad(), xr = x0.requiringGrad()
            let dense = x.linearCrossEntropy(weight: w0, targets: targets, vocabularyChunk: chunk)
            let rows = xr.linearCrossEntropy(vocabularySize: v, weightRows: { v0, count, dst in
                ws.withUnsafeBufferPointer { dst.update(from: $0.baseAddress! + v0 * k, count: count * k) }
            }, targets: targets, vocabularyChunk: chunk)
            dense.backward(); rows.backward()
            XCTAssertEqual(rows.item, dense.item, "chunk \(String(describing: chunk))")
            XCTAssertEqual(xr.grad!.scalars, x.grad!.scalars, "chunk \(String(describing: chunk))")
        }
    }

    func testAllIgnoredIsNaNAndNoGradIsPlain() {
        let x = Tensor.ones([2, 3]).requiringGrad(), w = Tensor.ones([4, 3])
        XCTAssertTrue(x.linearCrossEntropy(weight: w, targets: [-100, -100]).item.isNaN)
        let plain = noGrad { x.linearCrossEntropy(weight: w, targets: [1, 2]) }
        XCTAssertFalse(plain.requiresGrad)
        XCTAssertEqual(plain.item, 1.3862944, accuracy: 1e-6)  // equal logits: log V = log 4
    }
}
