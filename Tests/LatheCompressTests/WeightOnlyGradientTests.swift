import Foundation
import Lathe
import XCTest
import _LatheTestSupport

/// The input gradient of weight-only quantized layers (what QLoRA trains through): equal to the
/// float layer's on the dequantised weight, whatever the shapes, schemes, scale storage and panel
/// size, and in agreement with finite differences.
final class WeightOnlyGradientTests: XCTestCase {
    static let schemes = [GroupwiseScheme(bits: 4, groupSize: 16), GroupwiseScheme(bits: 4, groupSize: 32, symmetric: false),
                          GroupwiseScheme(bits: 8, groupSize: 16), GroupwiseScheme(bits: 8, groupSize: 64, symmetric: false)]

    /// Quantized weights of every scheme, plus float32 scales and mins (GGUF's K-quants).
    func weights(rows n: Int, cols k: Int, rng: inout TestRNG) -> [(String, GroupwiseWeights)] {
        var out = Self.schemes.map { ("\($0)", GroupwiseWeights(quantizing: rng.floats(n * k), rows: n, cols: k, scheme: $0)) }
        let s = GroupwiseScheme(bits: 4, groupSize: 32, symmetric: false), g = (k + 31) / 32
        let codes = (0..<(n * ((k + 1) / 2))).map { _ in UInt8(rng.int(0...255)) }
        out.append(("int4 g32 asym float32 scales", GroupwiseWeights(scheme: s, rows: n, cols: k, codes: codes,
                                                                   float32Scales: rng.floats(n * g, 0.001, 0.1), float32Mins: rng.floats(n * g, -0.8, 0))))
        return out
    }

    /// dX of the quantized layer equals dX of `Linear` with the dequantised weight (and the same
    /// bias) within 1e-5, for inputs of rank 2 and 3, odd sizes and a single row.
    func testInputGradientEqualsTheDequantisedLinear() {
        var rng = TestRNG(12)
        for (shape, n) in [([1, 1], 1), ([3, 37], 53), ([5, 200], 17), ([2, 3, 129], 33), ([4, 48], 70), ([1, 64], 300)] {
            let k = shape.last!
            for (name, w) in weights(rows: n, cols: k, rng: &rng) {
                let bias = rng.floats(n)
                let quantized = WeightOnlyLinear(weight: w, bias: bias)
                let dense = Linear(weight: Tensor(w.dequantized(), shape: [n, k]), bias: Tensor(bias))
                let x = Tensor(rng.floats(shape.reduce(1, *)), shape: shape)
                let seed = Tensor(rng.floats(shape.dropLast().reduce(1, *) * n), shape: Array(shape.dropLast()) + [n])
                func gradient(_ layer: Module) -> (Tensor, Tensor) {
                    let leaf = x.requiringGrad()
                    let y = layer(leaf)
                    (y * seed).sum().backward()
                    return (y.detached(), leaf.grad ?? Tensor.zeros([0]))
                }
                let (yq, dq) = gradient(quantized), (yd, dd) = gradient(dense)
                assertClose(yq, yd, rtol: 1e-5, atol: 1e-5, "\(name) \(shape)x\(n): forward")
                assertClose(dq, dd, rtol: 1e-5, atol: 1e-5, "\(name) \(shape)x\(n): dX")
                XCTAssertGreaterThan(dd.scalars.map(abs).max() ?? 0, 0.01, "\(name) \(shape)x\(n): a gradient worth comparing")
            }
        }
    }

    /// Panels of any height (1 row, 16, a partial last panel, the whole matrix) give the same dX,
    /// equal to dY · dequant(W) summed in double.
    func testPanelsGiveTheProduct() {
        var rng = TestRNG(5)
        let (m, n, k) = (6, 53, 37)
        for (name, w) in weights(rows: n, cols: k, rng: &rng) {
            let dy = rng.floats(m * n), deq = w.dequantized()
            var reference = [Float](repeating: 0, count: m * k)
            for i in 0..<m {
                for c in 0..<k {
                    var s = 0.0
                    for r in 0..<n { s += Double(dy[i * n + r]) * Double(deq[r * k + c]) }
                    reference[i * k + c] = Float(s)
                }
            }
            for panel in [1, 16, 20, 53, 64, nil] {
                var dx = [Float](repeating: .nan, count: m * k)
                dy.withUnsafeBufferPointer { g in dx.withUnsafeMutableBufferPointer { w.inputGradient(g.baseAddress!, rows: m, panelRows: panel, into: $0.baseAddress!) } }
                assertClose(Tensor(dx, shape: [m, k]), Tensor(reference, shape: [m, k]), rtol: 1e-5, atol: 1e-5, "\(name) panel \(panel.map(String.init) ?? "default")")
            }
        }
        let big = GroupwiseWeights(quantizing: rng.floats(4096 * 576), rows: 4096, cols: 576, scheme: GroupwiseScheme(bits: 4, groupSize: 32))
        XCTAssertEqual(big.gradientPanelRows() % 16, 0)
        XCTAssertLessThanOrEqual(big.gradientPanelRows() * 576, 1 << 18, "a panel stays near 1 MiB, not the whole matrix")
    }

    func testFiniteDifferences() {
        var rng = TestRNG(9)
        let w = GroupwiseWeights(quantizing: rng.floats(7 * 24), rows: 7, cols: 24, scheme: GroupwiseScheme(bits: 4, groupSize: 16))
        let layer = WeightOnlyLinear(weight: w, bias: rng.floats(7))
        assertGradientsMatchFiniteDifferences([Tensor(rng.floats(3 * 24), shape: [3, 24])], eps: 1e-2, rtol: 1e-2, atol: 1e-3) { xs in
            layer(xs[0]).tanh()
        }
    }

    /// With 8-bit activations on (as GGUF models decode), a recorded forward takes the float path,
    /// so its gradient is exact for it; without a gradient to record nothing is recorded.
    func testRecordingUsesTheFloatPathAndOnlyWhenAsked() {
        var rng = TestRNG(3)
        let w = GroupwiseWeights(quantizing: rng.floats(48 * 64), rows: 48, cols: 64, scheme: GroupwiseScheme(bits: 4, groupSize: 32))
        let layer = WeightOnlyLinear(weight: w, bias: nil)
        layer.int8Activations = true
        let x = Tensor(rng.floats(2 * 64), shape: [2, 64])
        let dense = noGrad { x.linear(weight: Tensor(w.dequantized(), shape: [48, 64])) }
        let decoded = layer(x)
        XCTAssertFalse(decoded.requiresGrad)
        XCTAssertGreaterThan(maxDifference(decoded, dense), 1e-5, "8-bit activations differ from the float path")
        let recorded = layer(x.requiringGrad())
        XCTAssertTrue(recorded.requiresGrad)
        assertClose(recorded.detached(), dense, rtol: 1e-5, atol: 1e-5)
        XCTAssertFalse(noGrad { layer(x.requiringGrad()) }.requiresGrad)
    }

    func maxDifference(_ a: Tensor, _ b: Tensor) -> Float { zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0 }

    /// The layer is what a LoRA adapter wraps: the adapter trains, the quantized base stays frozen.
    func testLoRAWrapsAQuantizedLayer() throws {
        var rng = TestRNG(4)
        let w = GroupwiseWeights(quantizing: rng.floats(32 * 48), rows: 32, cols: 48, scheme: GroupwiseScheme(bits: 4, groupSize: 16))
        let base = WeightOnlyLinear(weight: w, bias: rng.floats(32))
        XCTAssertEqual(base.denseWeight.scalars, w.dequantized())
        XCTAssertEqual(base.denseBias?.scalars, base.bias)
        for dora in [false, true] {
            let lora = LoRALinear(base: base, rank: 4, scaling: 2, dora: dora, initialization: .kaimingUniform(seed: 1))
            lora.loraB.weight.value = Tensor(rng.floats(32 * 4, -0.1, 0.1), shape: [32, 4])
            let floatTwin = LoRALinear(base: Linear(weight: base.denseWeight, bias: base.denseBias), rank: 4, scaling: 2, dora: dora,
                                       initialization: .kaimingUniform(seed: 1))
            floatTwin.loraB.weight.value = lora.loraB.weight.value
            let x = Tensor(rng.floats(5 * 48), shape: [5, 48])
            let seed = Tensor(rng.floats(5 * 32), shape: [5, 32])
            for layer in [lora, floatTwin] { (layer(x.requiringGrad()) * seed).sum().backward() }
            assertClose(lora.loraA.weight.grad!, floatTwin.loraA.weight.grad!, rtol: 1e-4, atol: 1e-5, "dora \(dora): A")
            assertClose(lora.loraB.weight.grad!, floatTwin.loraB.weight.grad!, rtol: 1e-4, atol: 1e-5, "dora \(dora): B")
        }
    }
}
