import Foundation
import Lathe
import XCTest
import _LatheTestSupport

final class QATTests: XCTestCase {
    func testFakeQuantizeIsTheGridWithAStraightThroughGradient() {
        let fq = FakeQuantize(low: -1, high: 2)
        fq.eval()
        let p = fq.params
        var rng = TestRNG(80)
        let values = rng.floats(200, -2, 3)
        let x = Tensor(values).requiringGrad()
        let y = fq(x)
        XCTAssertEqual(y.detached().scalars, values.map { p.dequantize(p.quantize($0)) })
        y.sum().backward()
        let lo = p.dequantize(0), hi = p.dequantize(255)
        XCTAssertEqual(x.grad!.scalars, values.map { $0 >= lo && $0 <= hi ? 1 : 0 })
        XCTAssertTrue(values.contains { $0 < lo } && values.contains { $0 > hi } && values.contains { $0 > lo && $0 < hi })
    }

    func testEMARangesMoveOnlyInTraining() {
        let fq = FakeQuantize(low: -1, high: 1, learning: .ema(momentum: 0.25))
        let x = Tensor([-3, 0.5, 5])
        fq.eval()
        _ = fq(x)
        XCTAssertEqual(fq.low.value.item, -1)
        fq.train()
        _ = fq(x)
        XCTAssertEqual(fq.low.value.item, 0.75 * -1 + 0.25 * -3, accuracy: 1e-6)
        XCTAssertEqual(fq.high.value.item, 0.75 * 1 + 0.25 * 5, accuracy: 1e-6)
    }

    func testLearnedBoundsGetTheGradientOfTheValuesTheyClip() {
        let fq = FakeQuantize(low: -1, high: 2, learning: .learned)
        fq.train()
        let x = Tensor([-3, -0.5, 0.3, 1.9, 2.5, 4]).requiringGrad()
        fq(x).sum().backward()
        XCTAssertEqual(fq.high.value.grad!.item, 2)  // 2.5 and 4 are clipped at high
        XCTAssertEqual(fq.low.value.grad!.item, 1)   // -3 at low
        XCTAssertEqual(x.grad!.scalars, [0, 1, 1, 1, 0, 0])
    }

    func testPrepareTrainConvertGivesTheFakeQuantizedFunction() throws {
        let m = DigitsCNN(seed: 12)
        m.eval()
        try BatchNormFolding.fold(m)
        let batches = digitsBatches(3, batch: 16, seed: 81, image: true)
        let names = try QAT.prepare(m, calibrationBatches: batches)
        XCTAssertEqual(names, ["conv1", "conv2", "fc1", "fc2"])
        let keys = Set(m.stateDict().keys)
        XCTAssertTrue(keys.isSuperset(of: ["conv1.weight", "conv1.bias", "fc1.input_quant.low", "fc1.input_quant.high"]), "\(keys.sorted())")
        // A few steps of training move weights (the gradient reaches them through the fake quantization).
        m.train()
        let before = m.namedParameters.first { $0.0 == "fc1.weight" }!.1.value.scalars
        let opt = AdamW(m.namedParameters.filter { $0.1.requiresGrad }, learningRate: 1e-3)
        let labels = Tensor((0..<16).map { Float($0 % 10) }).to(.int64)
        for b in batches {
            opt.zeroGrad()
            Loss.crossEntropy(m(b), labels).backward()
            opt.step()
        }
        XCTAssertNotEqual(m.namedParameters.first { $0.0 == "fc1.weight" }!.1.value.scalars, before)
        m.eval()
        let x = digitsBatches(1, batch: 8, seed: 82, image: true)[0]
        let fake = noGrad { m(x) }
        XCTAssertEqual(try QAT.convert(m), names)
        XCTAssertTrue(m.namedModules.contains { $0.1 is QuantizedConv2d })
        assertClose(noGrad { m(x) }, fake, rtol: 1e-3, atol: 1e-4)
    }
}
