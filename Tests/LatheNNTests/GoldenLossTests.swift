import CLatheKernels
import Lathe
import XCTest
import _LatheTestSupport

/// Losses and normalisation layers against PyTorch (cases in `Tests/Fixtures/ops.json`).
final class GoldenLossTests: XCTestCase {
    nonisolated(unsafe) static let table: [String: (OpCase, [Tensor]) -> [Tensor]] = {
        func reduction(_ c: OpCase) -> Reduction { Reduction(rawValue: c.string("reduction") ?? "mean")! }
        var t: [String: (OpCase, [Tensor]) -> [Tensor]] = [:]
        t["cross_entropy"] = { c, x in
            [Loss.crossEntropy(x[0], x[1], weight: x.count > 2 ? x[2] : nil, labelSmoothing: c.float("label_smoothing"),
                               ignoreIndex: c.int("ignore_index"), reduction: reduction(c))]
        }
        t["nll"] = { c, x in [Loss.nll(x[0], x[1], ignoreIndex: c.int("ignore_index"), reduction: reduction(c))] }
        t["mse"] = { c, x in [Loss.mse(x[0], x[1], reduction: reduction(c))] }
        t["l1"] = { c, x in [Loss.l1(x[0], x[1], reduction: reduction(c))] }
        t["huber"] = { c, x in [Loss.huber(x[0], x[1], delta: c.float("delta"), reduction: reduction(c))] }
        t["bce_with_logits"] = { c, x in
            [Loss.binaryCrossEntropyWithLogits(x[0], x[1], posWeight: x.count > 2 ? x[2] : nil, reduction: reduction(c))]
        }
        t["kl_div"] = { c, x in [Loss.klDivergence(x[0], x[1], logTarget: c.bool("log_target"))] }
        t["layer_norm"] = { _, x in [x[0].layerNorm(weight: x[1], bias: x[2], eps: 1e-5)] }
        t["rms_norm"] = { c, x in [RMSNorm.normalize(x[0], eps: c.float("eps")) * x[1]] }
        t["batch_norm_train"] = { _, x in [x[0].batchNormTraining(weight: x[1], bias: x[2], eps: 1e-5).output] }
        return t
    }()

    func testLossesAndNormsMatchPyTorch() throws {
        let cases = try loadOpCases().filter { Self.table[$0.op] != nil }
        XCTAssertEqual(Set(cases.map(\.op)).count, Self.table.count, "every mapped op has cases")
        checkGoldenCases(cases, table: Self.table)
    }

    /// The fused norm kernels against the same maths composed from primitive ops.
    /// On every ISA the CPU has (the norm kernels are compiled per ISA).
    func testFusedNormsMatchComposedOps() {
        forEachISA { checkFusedNorms($0) }
    }

    func checkFusedNorms(_ isa: String) {
        var rng = RandomGenerator(seed: 21)
        for shape in [[4, 3, 5, 5], [7, 6], [2, 17, 1, 9], [64, 32, 4, 4]] {
            let x = Tensor.normal(shape, generator: &rng), w = Tensor.normal([shape[1]], generator: &rng)
            let b = Tensor.normal([shape[1]], generator: &rng), seed = Tensor.normal(shape, generator: &rng)
            var stat = [Int](repeating: 1, count: shape.count)
            stat[1] = shape[1]
            let dims = [0] + Array(2..<shape.count)
            func composed(_ t: [Tensor]) -> Tensor {
                let c = t[0] - t[0].mean(dims: dims, keepDims: true)
                return c * (c.square().mean(dims: dims, keepDims: true) + 1e-5).rsqrt() * t[1].reshaped(stat) + t[2].reshaped(stat)
            }
            let a = [x, w, b].map { $0.requiringGrad() }, r = [x, w, b].map { $0.requiringGrad() }
            let fused = a[0].batchNormTraining(weight: a[1], bias: a[2], eps: 1e-5).output
            let reference = composed(r)
            assertClose(fused, reference, rtol: 1e-5, atol: 1e-5, "batch norm \(shape) \(isa)")
            fused.backward(seed)
            reference.backward(seed)
            for k in 0..<3 { assertClose(a[k].grad!, r[k].grad!, rtol: 1e-4, atol: 1e-5, "batch norm grad \(k) \(shape) \(isa)") }
        }
        for shape in [[3, 8], [2, 5, 33], [1, 1], [40, 128]] {
            let d = shape.last!
            let x = Tensor.normal(shape, generator: &rng), w = Tensor.normal([d], generator: &rng)
            let b = Tensor.normal([d], generator: &rng), seed = Tensor.normal(shape, generator: &rng)
            let a = [x, w, b].map { $0.requiringGrad() }, r = [x, w, b].map { $0.requiringGrad() }
            let fused = a[0].layerNorm(weight: a[1], bias: a[2], eps: 1e-5)
            let reference = LayerNorm.normalize(r[0], lastDims: 1, eps: 1e-5) * r[1] + r[2]
            assertClose(fused, reference, rtol: 1e-5, atol: 1e-5, "layer norm \(shape) \(isa)")
            fused.backward(seed)
            reference.backward(seed)
            for k in 0..<3 { assertClose(a[k].grad!, r[k].grad!, rtol: 1e-4, atol: 1e-5, "layer norm grad \(k) \(shape) \(isa)") }
        }
    }
}
