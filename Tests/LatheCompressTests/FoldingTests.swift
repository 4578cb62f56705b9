import Foundation
import Lathe
import XCTest
import _LatheTestSupport

final class BatchNormFoldingTests: XCTestCase {
    /// Gives the norms of `m` non-trivial statistics and affine parameters (a fresh norm is an identity map).
    func randomizeNorms(_ m: Module, seed: UInt64) {
        var rng = TestRNG(seed)
        for (_, mod) in m.namedModules {
            guard let bn = mod as? BatchNorm else { continue }
            let c = bn.features
            bn.runningMean.value = Tensor(rng.floats(c, -1, 1))
            bn.runningVar.value = Tensor(rng.floats(c, 0.2, 3))
            bn.weight?.value = Tensor(rng.floats(c, 0.5, 2))
            bn.bias?.value = Tensor(rng.floats(c, -0.5, 0.5))
        }
    }

    func testFoldingKeepsTheEvalFunctionOfEachModel() throws {
        var g = RandomGenerator(seed: 3)
        let seq = Sequential(Linear(64, 32, bias: false, generator: &g), BatchNorm(32), Activation(.relu), Linear(32, 10, generator: &g))
        let cases: [(Module, Tensor, Int)] = [
            (DigitsCNN(seed: 2), digitsBatches(1, batch: 6, seed: 50, image: true)[0], 2),
            (SmallResNet(inChannels: 1, classes: 10, seed: 4), digitsBatches(1, batch: 4, seed: 51, image: true)[0], 6),
            (seq, digitsBatches(1, batch: 6, seed: 52, image: false)[0], 1),
        ]
        for (i, (m, x, pairs)) in cases.enumerated() {
            randomizeNorms(m, seed: UInt64(60 + i))
            m.eval()
            let before = noGrad { m(x) }
            let folded = try BatchNormFolding.fold(m)
            XCTAssertEqual(folded.count, pairs, "\(type(of: m))")
            XCTAssertFalse(m.namedModules.contains { $0.1 is BatchNorm }, "\(type(of: m)) still has a batch norm")
            XCTAssertFalse(m.stateDict().keys.contains { $0.contains("running_mean") })
            assertClose(noGrad { m(x) }, before, rtol: 1e-4, atol: 1e-5)
            XCTAssertTrue(BatchNormFolding.pairs(in: m).isEmpty, "folding twice")
        }
    }

    func testFoldedQuantizedFileReloadsIntoAFreshModel() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-fold-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // The ResNet's convolutions have no bias: folding adds one, and the reload must too.
        let m = SmallResNet(inChannels: 1, classes: 10, seed: 8)
        randomizeNorms(m, seed: 70)
        m.eval()
        let x = digitsBatches(2, batch: 4, seed: 53, image: true)
        try BatchNormFolding.fold(m)
        // conv1 stays float (with the bias folding gave it); the rest is int8.
        try quantize(model: m, config: QuantizationConfig(scheme: .staticInt8), calibrationBatches: x, filter: { n, _ in n != "conv1" })
        let url = dir.appendingPathComponent("q.safetensors")
        try QuantizedModelFile.save(m, to: url)
        let names = try SafeTensors.readHeader(contentsOf: url).entries.map(\.name)
        XCTAssertTrue(names.contains("conv1.bias"))
        XCTAssertFalse(names.contains { $0.hasPrefix("bn1.") || $0.contains(".bn2.") })
        let fresh = SmallResNet(inChannels: 1, classes: 10, seed: 1)
        fresh.eval()
        try QuantizedModelFile.load(into: fresh, from: url)
        XCTAssertEqual(noGrad { fresh(x[0]) }.scalars.map(\.bitPattern), noGrad { m(x[0]) }.scalars.map(\.bitPattern))

        // A file that fails to load leaves the model as it was: batch norms in place, no quantized layer.
        var file = try SafeTensors.read(contentsOf: url)
        var tensors = file.tensors
        tensors["fc.bias"] = nil
        try SafeTensors.write(tensors, metadata: file.metadata, to: url)
        file = try SafeTensors.read(contentsOf: url)
        let other = SmallResNet(inChannels: 1, classes: 10, seed: 1)
        let before = other.stateDict().keys.sorted()
        XCTAssertThrowsError(try QuantizedModelFile.load(into: other, from: url))
        XCTAssertEqual(other.stateDict().keys.sorted(), before)
        XCTAssertEqual(other.namedModules.filter { $0.1 is BatchNorm }.count, 6)
    }
}
