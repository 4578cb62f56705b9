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
        t["layer_norm"] = { c, x in [LayerNorm.normalize(x[0], lastDims: c.ints("normalized_shape")!.count, eps: 1e-5) * x[1] + x[2]] }
        t["rms_norm"] = { c, x in [RMSNorm.normalize(x[0], eps: c.float("eps")) * x[1]] }
        t["batch_norm_train"] = { _, x in
            let bn = BatchNorm(x[0].shape[1], affine: false)
            var shape = [Int](repeating: 1, count: x[0].rank)
            shape[1] = x[0].shape[1]
            return [bn(x[0]) * x[1].reshaped(shape) + x[2].reshaped(shape)]
        }
        return t
    }()

    func testLossesAndNormsMatchPyTorch() throws {
        let cases = try loadOpCases().filter { Self.table[$0.op] != nil }
        XCTAssertEqual(Set(cases.map(\.op)).count, Self.table.count, "every mapped op has cases")
        checkGoldenCases(cases, table: Self.table)
    }
}
